/* Tests gg_registration_parse (control/registration.c): the heartbeat bodies `gridctl agent` and the tests send,
 * the default name, and each error kind (not an object, or the named field). */
#include "gridgate/backend.h"
#include "gridgate/registration.h"
#include "test.h"

#include <errno.h>

static char err[512];

#define S(lit) lit, sizeof(lit) - 1

static void test_beats(void)
{
    gg_registration_beat_t b;
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"http://127.0.0.1:40000\",\"kind\":\"ollama\",\"agent\":\"box1\","
                                         "\"models\":[{\"name\":\"llama3:latest\",\"loaded\":true},{\"name\":\"qwen\"}],"
                                         "\"gpu\":{\"gpus\":1}}"),
                                       &b, err, sizeof(err)),
                 0);
    CHECK_EQ_STR(b.name, "127.0.0.1:40000");
    CHECK_EQ_STR(b.url, "http://127.0.0.1:40000");
    CHECK_EQ_STR(b.host, "box1");
    CHECK_EQ_INT(b.kind, GG_ENGINE_OLLAMA);
    CHECK_EQ_INT(json_array_size(b.models), 2);
    CHECK(json_is_false(json_object_get(json_array_get(b.models, 1), "loaded")));
    CHECK(json_is_object(b.gpu));
    gg_registration_beat_free(&b);
    CHECK_EQ_INT(
        gg_registration_parse(S("{\"url\":\"http://10.0.0.12:8000\",\"name\":\"gpu2\",\"gpu\":null}"), &b, err, sizeof(err)), 0);
    CHECK_EQ_STR(b.name, "gpu2");
    CHECK(b.gpu == NULL);
    CHECK_EQ_INT(json_array_size(b.models), 0);
    gg_registration_beat_free(&b);
}

static void test_errors(void)
{
    gg_registration_beat_t b;
    CHECK_EQ_INT(gg_registration_parse(S("[1]"), &b, err, sizeof(err)), -EBADMSG);
    CHECK(strncmp(err, "body: expected a JSON object", 28) == 0);
    CHECK_EQ_INT(gg_registration_parse(NULL, 0, &b, err, sizeof(err)), -EBADMSG);
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"ftp://x\"}"), &b, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "url: ", 5) == 0);
    /* jansson refuses a NUL escape inside a string: a NUL never reaches the url. */
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"http://h:1\\u0000x\"}"), &b, err, sizeof(err)), -EBADMSG);
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"http://h:1\",\"kind\":\"tpu\"}"), &b, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "kind: ", 6) == 0);
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"http://h:1\",\"name\":\"\"}"), &b, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "name: ", 6) == 0);
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"http://h:1\",\"gpu\":5}"), &b, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "gpu: ", 5) == 0);
    CHECK_EQ_INT(gg_registration_parse(S("{\"url\":\"http://h:1\",\"models\":[{\"loaded\":true}]}"), &b, err, sizeof(err)),
                 -EINVAL);
    CHECK(strncmp(err, "models[0]: ", 11) == 0);
    CHECK_EQ_INT(
        gg_registration_parse(S("{\"url\":\"http://h:1\",\"models\":[{\"name\":\"m\",\"loaded\":1}]}"), &b, err, sizeof(err)),
        -EINVAL);
}

TEST_MAIN(test_beats, test_errors)
