/* Tests dataplane/dialect.c and dialect_stream.c: every request and response mapping both ways,
 * streaming translation checked by re-parsing the produced bytes, base64 embeddings bit-exact, and
 * the error shapes of both dialects. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "gridgate/dialect.h"
#include "gridgate/stream.h"
#include "test.h"

static char err[256], path[64];

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (j == NULL)
        fprintf(stderr, "bad test JSON: %s: %s\n", s, e.text);
    return j;
}

/* Compact serialization of j (static buffer), for whole-shape comparisons. */
static const char *S(json_t *j)
{
    static char out[8192];
    char *s = j != NULL ? json_dumps(j, GG_JSON_DUMP_FLAGS) : NULL;
    snprintf(out, sizeof(out), "%s", s != NULL ? s : "(null)");
    free(s);
    return out;
}

static json_t *req(enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, const char *body)
{
    json_t *b = J(body);
    err[0] = path[0] = '\0';
    json_t *r = gg_dialect_request(from, to, ep, b, path, sizeof(path), err, sizeof(err));
    json_decref(b);
    return r;
}

static void test_paths(void)
{
    enum gg_dialect d;
    enum gg_endpoint ep;
    CHECK_EQ_STR(gg_endpoint_path(GG_DIALECT_OPENAI, GG_EP_CHAT), "/v1/chat/completions");
    CHECK_EQ_STR(gg_endpoint_path(GG_DIALECT_OLLAMA, GG_EP_COMPLETION), "/api/generate");
    CHECK(gg_endpoint_path(GG_DIALECT_OPENAI, GG_EP_SHOW) == NULL);
    CHECK_EQ_INT(gg_endpoint_lookup("/api/embeddings", 15, &d, &ep), 0);
    CHECK(d == GG_DIALECT_OLLAMA && ep == GG_EP_EMBED_LEGACY);
    CHECK_EQ_INT(gg_endpoint_lookup("/v1/completions", 15, &d, &ep), 0);
    CHECK(d == GG_DIALECT_OPENAI && ep == GG_EP_COMPLETION);
    CHECK_EQ_INT(gg_endpoint_lookup("/v1/completionsX", 16, &d, &ep), -ENOENT);
    /* the request mapping picks the upstream path for every endpoint */
    struct {
        enum gg_dialect from;
        enum gg_endpoint ep;
        const char *body, *path;
    } cases[] = {
        {GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[]}", "/v1/chat/completions"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\"}", "/v1/completions"},
        {GG_DIALECT_OLLAMA, GG_EP_EMBED, "{\"model\":\"m\",\"input\":\"x\"}", "/v1/embeddings"},
        {GG_DIALECT_OLLAMA, GG_EP_EMBED_LEGACY, "{\"model\":\"m\",\"prompt\":\"x\"}", "/v1/embeddings"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[]}", "/api/chat"},
        {GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\"}", "/api/generate"},
        {GG_DIALECT_OPENAI, GG_EP_EMBED, "{\"model\":\"m\",\"input\":\"x\"}", "/api/embed"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum gg_dialect to = cases[i].from == GG_DIALECT_OPENAI ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
        json_t *r = req(cases[i].from, to, cases[i].ep, cases[i].body);
        CHECK(r != NULL);
        CHECK_EQ_STR(path, cases[i].path);
        json_decref(r);
    }
    /* same dialect: the body itself, native path */
    json_t *b = J("{\"model\":\"m\",\"messages\":[]}");
    json_t *r = gg_dialect_request(GG_DIALECT_OLLAMA, GG_DIALECT_OLLAMA, GG_EP_CHAT, b, path, sizeof(path), err, sizeof(err));
    CHECK(r == b);
    CHECK_EQ_STR(path, "/api/chat");
    json_decref(r);
    json_decref(b);
    /* /api/show has no OpenAI counterpart */
    CHECK(req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_SHOW, "{\"model\":\"m\"}") == NULL);
    CHECK(err[0] != '\0');
}

static void test_request_ollama_to_openai(void)
{
    json_t *r = req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT,
                    "{\"model\":\"llava\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\","
                    "\"content\":\"what is this\",\"images\":[\"iVBORw0KGgo=\",\"/9j/4AAQ\"]}],\"options\":{\"temperature\":0.2,"
                    "\"top_p\":0.9,\"top_k\":40,\"seed\":7,\"stop\":[\"\\n\\n\"],\"num_predict\":128,\"num_ctx\":8192},"
                    "\"format\":\"json\",\"keep_alive\":\"5m\"}");
    CHECK_EQ_STR(S(r), "{\"model\":\"llava\",\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\","
                       "\"content\":[{\"type\":\"text\",\"text\":\"what is this\"},{\"type\":\"image_url\",\"image_url\":{"
                       "\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":"
                       "\"data:image/jpeg;base64,/9j/4AAQ\"}}]}],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                       "\"temperature\":0.2,\"top_p\":0.9,\"top_k\":40,\"seed\":7,\"stop\":[\"\\n\\n\"],\"max_tokens\":128,"
                       "\"response_format\":{\"type\":\"json_object\"}}");
    json_decref(r);

    /* stream:false stays false with no stream_options; schema format; tool round trip */
    r = req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT,
            "{\"model\":\"m\",\"stream\":false,\"format\":{\"type\":\"object\"},\"tools\":[{\"type\":\"function\",\"function\":"
            "{\"name\":\"get_weather\",\"parameters\":{}}}],\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":"
            "\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":"
            "\"Paris\"}}}]},{\"role\":\"tool\",\"content\":\"20C\",\"tool_name\":\"get_weather\"}]}");
    CHECK_EQ_STR(S(r), "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\","
                       "\"content\":\"\",\"tool_calls\":[{\"id\":\"call_0\",\"type\":\"function\",\"function\":{\"name\":"
                       "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"content\":"
                       "\"20C\",\"tool_call_id\":\"call_0\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
                       "\"get_weather\",\"parameters\":{}}}],\"stream\":false,\"response_format\":{\"type\":\"json_schema\","
                       "\"json_schema\":{\"name\":\"response\",\"schema\":{\"type\":\"object\"}}}}");
    json_decref(r);

    /* generate: system goes in front of the prompt; suffix kept */
    r = req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_COMPLETION,
            "{\"model\":\"m\",\"prompt\":\"def f(\",\"suffix\":\"return x\",\"system\":\"You write Python.\",\"stream\":false,"
            "\"options\":{\"num_predict\":-1}}");
    CHECK_EQ_STR(S(r), "{\"model\":\"m\",\"prompt\":\"You write Python.\\n\\ndef f(\",\"suffix\":\"return x\",\"stream\":false}");
    json_decref(r);
    CHECK(req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"x\",\"images\":[\"a\"]}") ==
          NULL);

    r = req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_EMBED, "{\"model\":\"e\",\"input\":[\"a\",\"b\"],\"truncate\":true}");
    CHECK_EQ_STR(S(r), "{\"model\":\"e\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"float\"}");
    json_decref(r);
    r = req(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_EMBED_LEGACY, "{\"model\":\"e\",\"prompt\":\"hello\"}");
    CHECK_EQ_STR(S(r), "{\"model\":\"e\",\"input\":\"hello\",\"encoding_format\":\"float\"}");
    json_decref(r);
}

static void test_request_openai_to_ollama(void)
{
    json_t *r = req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT,
                    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":"
                    "\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBOR\"}},{\"type\":\"text\",\"text\":\"b\"}]}],"
                    "\"max_tokens\":50,\"temperature\":1,\"stop\":\"END\",\"response_format\":{\"type\":\"json_object\"},"
                    "\"n\":1}");
    CHECK_EQ_STR(S(r), "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\nb\",\"images\":[\"iVBOR\"]}],"
                       "\"stream\":false,\"options\":{\"temperature\":1,\"stop\":[\"END\"],\"num_predict\":50},\"format\":"
                       "\"json\"}");
    json_decref(r);

    /* tools: arguments string -> object, tool result gets the function name */
    r = req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT,
            "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
            "\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"add\",\"arguments\":\"{\\\"a\\\":1}\"}}]},{\"role\":"
            "\"tool\",\"tool_call_id\":\"call_9\",\"content\":\"2\"}],\"response_format\":{\"type\":\"json_schema\","
            "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":\"object\"}}}}");
    CHECK_EQ_STR(S(r), "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":"
                       "{\"name\":\"add\",\"arguments\":{\"a\":1}}}]},{\"role\":\"tool\",\"content\":\"2\",\"tool_name\":"
                       "\"add\"}],\"stream\":true,\"format\":{\"type\":\"object\"}}");
    json_decref(r);

    /* remote image URLs cannot be fetched by Ollama: a precise error */
    CHECK(req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
              "\"https://example.com/cat.png\"}}]}]}") == NULL);
    CHECK(strstr(err, "messages[0].content[0].image_url") != NULL);

    r = req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_COMPLETION,
            "{\"model\":\"m\",\"prompt\":[\"once upon\"],\"max_completion_tokens\":9,\"stream\":true,\"seed\":1}");
    CHECK_EQ_STR(S(r), "{\"model\":\"m\",\"prompt\":\"once upon\",\"stream\":true,\"options\":{\"seed\":1,\"num_predict\":9}}");
    json_decref(r);
    CHECK(req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}") == NULL);

    r = req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_EMBED,
            "{\"model\":\"e\",\"input\":[\"x\",\"y\"],\"encoding_format\":\"base64\",\"dimensions\":8}");
    CHECK_EQ_STR(S(r), "{\"model\":\"e\",\"input\":[\"x\",\"y\"],\"dimensions\":8}");
    json_decref(r);
    CHECK(req(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_EMBED, "{\"model\":\"e\",\"input\":[[1,2]]}") == NULL);
}

static void test_response_chat(void)
{
    json_t *up = J("{\"id\":\"x\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"up\",\"choices\":[{\"index\":0,"
                   "\"message\":{\"role\":\"assistant\",\"content\":\"Hello!\"},\"finish_reason\":\"length\"}],\"usage\":{"
                   "\"prompt_tokens\":9,\"completion_tokens\":12,\"total_tokens\":21}}");
    json_t *r = gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT, up, "alias", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "model")), "alias");
    CHECK_EQ_STR(S(json_object_get(r, "message")), "{\"role\":\"assistant\",\"content\":\"Hello!\"}");
    CHECK(json_is_true(json_object_get(r, "done")));
    CHECK_EQ_STR(json_string_value(json_object_get(r, "done_reason")), "length");
    CHECK_EQ_INT(json_integer_value(json_object_get(r, "prompt_eval_count")), 9);
    CHECK_EQ_INT(json_integer_value(json_object_get(r, "eval_count")), 12);
    CHECK(strlen(json_string_value(json_object_get(r, "created_at"))) == 30);
    json_decref(r);
    json_decref(up);

    up = J("{\"model\":\"llama3\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\","
           "\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]},\"done_reason\":\"stop\",\"done\":true,"
           "\"prompt_eval_count\":5,\"eval_count\":7}");
    r = gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT, up, "llama3", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "object")), "chat.completion");
    CHECK(strncmp(json_string_value(json_object_get(r, "id")), "chatcmpl-", 9) == 0);
    CHECK(json_is_integer(json_object_get(r, "created")));
    json_t *c0 = json_array_get(json_object_get(r, "choices"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(c0, "finish_reason")), "tool_calls");
    CHECK_EQ_STR(S(json_object_get(c0, "message")), "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":"
                                                    "\"call_0\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                                                    "\"arguments\":\"{\\\"x\\\":1}\"}}]}");
    CHECK_EQ_STR(S(json_object_get(r, "usage")), "{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}");
    json_decref(r);
    json_decref(up);

    /* wrong shapes give NULL, not a half-built body */
    up = J("{\"choices\":[]}");
    CHECK(gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT, up, "m", 0) == NULL);
    json_decref(up);
    up = J("{\"done\":true}");
    CHECK(gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT, up, "m", 0) == NULL);
    json_decref(up);
}

static void test_response_completion(void)
{
    json_t *up = J("{\"model\":\"m\",\"response\":\"The sky\",\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":3,"
                   "\"eval_count\":2}");
    json_t *r = gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_COMPLETION, up, "m", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "object")), "text_completion");
    CHECK_EQ_STR(S(json_object_get(r, "choices")), "[{\"text\":\"The sky\",\"index\":0,\"logprobs\":null,\"finish_reason\":"
                                                   "\"length\"}]");
    json_decref(r);
    json_decref(up);
    up = J("{\"object\":\"text_completion\",\"choices\":[{\"text\":\" is blue\",\"index\":0,\"finish_reason\":\"stop\"}],"
           "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3}}");
    r = gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_COMPLETION, up, "m", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "response")), " is blue");
    CHECK_EQ_STR(json_string_value(json_object_get(r, "done_reason")), "stop");
    CHECK_EQ_INT(json_integer_value(json_object_get(r, "eval_count")), 3);
    json_decref(r);
    json_decref(up);
}

static int floats_bit_equal(json_t *a, json_t *b)
{
    if (json_array_size(a) != json_array_size(b) || json_array_size(a) == 0)
        return 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        float x = (float)json_number_value(json_array_get(a, i)), y = (float)json_number_value(json_array_get(b, i));
        uint32_t ux, uy;
        memcpy(&ux, &x, 4);
        memcpy(&uy, &y, 4);
        if (ux != uy)
            return 0;
    }
    return 1;
}

static void test_embeddings(void)
{
    /* values chosen to exercise sign, subnormal, large exponent and every base64 padding length */
    json_t *up = J("{\"model\":\"e\",\"embeddings\":[[0.1,-2.5,1e-40,3.4028234663852886e38],[0.0,-0.0]],\"prompt_eval_count\":"
                   "6}");
    json_t *r = gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_EMBED, up, "e", 0);
    CHECK_EQ_STR(json_string_value(json_object_get(r, "object")), "list");
    json_t *d1 = json_array_get(json_object_get(r, "data"), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(d1, "object")), "embedding");
    CHECK_EQ_INT(json_integer_value(json_object_get(d1, "index")), 1);
    CHECK_EQ_STR(S(json_object_get(r, "usage")), "{\"prompt_tokens\":6,\"total_tokens\":6}");
    json_decref(r);

    /* base64: known encoding of 1.0f (0x3f800000 little-endian = 00 00 80 3f) */
    json_t *one = J("{\"embeddings\":[[1.0]]}");
    r = gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_EMBED, one, "e", 1);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(r, "data"), 0), "embedding")), "AACAPw==");
    json_decref(r);
    json_decref(one);

    /* round trip: Ollama floats -> OpenAI base64 -> Ollama floats, bit-exact as float32 */
    r = gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_EMBED, up, "e", 1);
    CHECK(json_is_string(json_object_get(json_array_get(json_object_get(r, "data"), 0), "embedding")));
    json_t *back = gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_EMBED, r, "e", 0);
    json_t *orig = json_object_get(up, "embeddings"), *got = json_object_get(back, "embeddings");
    CHECK(floats_bit_equal(json_array_get(orig, 0), json_array_get(got, 0)));
    CHECK(floats_bit_equal(json_array_get(orig, 1), json_array_get(got, 1)));
    CHECK_EQ_INT(json_integer_value(json_object_get(back, "prompt_eval_count")), 6);
    json_decref(back);
    /* legacy endpoint shape */
    back = gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_EMBED_LEGACY, r, "e", 0);
    CHECK(floats_bit_equal(json_array_get(orig, 0), json_object_get(back, "embedding")));
    CHECK_EQ_INT(json_object_size(back), 1);
    json_decref(back);
    json_decref(r);
    json_decref(up);

    /* legacy Ollama response to an OpenAI client */
    up = J("{\"embedding\":[0.5,0.25]}");
    r = gg_dialect_response(GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_EMBED_LEGACY, up, "e", 0);
    CHECK_EQ_STR(S(json_object_get(json_array_get(json_object_get(r, "data"), 0), "embedding")), "[0.5,0.25]");
    json_decref(r);
    json_decref(up);

    /* in-place encoding of an OpenAI response, and same-dialect base64 */
    up = J("{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[1.0]}]}");
    r = gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OPENAI, GG_EP_EMBED, up, "e", 1);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(r, "data"), 0), "embedding")), "AACAPw==");
    CHECK(json_is_array(json_object_get(json_array_get(json_object_get(up, "data"), 0), "embedding"))); /* not modified */
    json_decref(r);
    CHECK_EQ_INT(gg_dialect_embedding_encode_base64(up), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(up, "data"), 0), "embedding")), "AACAPw==");
    json_decref(up);
    up = J("{\"data\":{}}");
    CHECK_EQ_INT(gg_dialect_embedding_encode_base64(up), -EINVAL);
    json_decref(up);
    /* bad base64 from an upstream is refused */
    up = J("{\"data\":[{\"embedding\":\"!!!!\"}]}");
    CHECK(gg_dialect_response(GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_EMBED, up, "e", 0) == NULL);
    json_decref(up);
}

static void test_error_body(void)
{
    size_t len;
    char *s = gg_dialect_error_body(GG_DIALECT_OPENAI, "bad \"model\"\n", "invalid_request_error", NULL, "model", &len);
    CHECK_EQ_STR(s, "{\"error\":{\"message\":\"bad \\\"model\\\"\\n\",\"type\":\"invalid_request_error\",\"param\":\"model\","
                    "\"code\":null}}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    s = gg_dialect_error_body(GG_DIALECT_OPENAI, "x", NULL, "rate_limit_exceeded", NULL, &len);
    CHECK_EQ_STR(s, "{\"error\":{\"message\":\"x\",\"type\":null,\"param\":null,\"code\":\"rate_limit_exceeded\"}}");
    free(s);
    s = gg_dialect_error_body(GG_DIALECT_OLLAMA, "model 'x' not found", "not_found", NULL, NULL, &len);
    CHECK_EQ_STR(s, "{\"error\":\"model 'x' not found\"}");
    free(s);
    s = gg_dialect_error_body(GG_DIALECT_OLLAMA, "\xff\xfe", NULL, NULL, NULL, &len); /* never emits invalid UTF-8 */
    json_t *j = json_loads(s, 0, NULL);
    CHECK(json_is_string(json_object_get(j, "error")));
    json_decref(j);
    free(s);
}

/* --- streaming -------------------------------------------------------------------------------- */

static void on_event(void *ctx, const char *data, size_t len)
{
    json_array_append_new(ctx, json_stringn(data, len));
}

/* Splits produced bytes back into events with the real stream parser. */
static json_t *reparse(gg_buf_t *out, enum gg_stream_kind kind)
{
    json_t *evs = json_array();
    gg_stream_parser_t p;
    gg_stream_init(&p, kind, 1 << 20);
    gg_stream_feed(&p, out->base, out->len, on_event, evs);
    gg_stream_finish(&p, on_event, evs);
    gg_stream_dispose(&p);
    return evs;
}

static json_t *ev_json(json_t *evs, size_t i)
{
    return json_loads(json_string_value(json_array_get(evs, i)), 0, NULL);
}

static void feed(gg_xlate_t *x, const char *const *evs, size_t n, gg_buf_t *out)
{
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(gg_xlate_event(x, evs[i], strlen(evs[i]), out), 0);
}

static void test_stream_ollama_to_openai(void)
{
    const char *up[] = {
        "{\"model\":\"llama3\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}",
        "{\"model\":\"llama3\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":false}",
        "{\"model\":\"llama3\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"lo \\\"w\\\"\\n\"},"
        "\"done\":false}",
        "{\"model\":\"llama3\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":"
        "\"length\",\"done\":true,\"total_duration\":1,\"prompt_eval_count\":11,\"eval_count\":2}",
        "{\"model\":\"llama3\",\"message\":{\"content\":\"after the end\"},\"done\":false}",
    };
    gg_xlate_t x;
    gg_buf_t out = GG_BUF_INIT;
    gg_xlate_init(&x, GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT, "alias", 1);
    feed(&x, up, 5, &out);
    json_t *evs = reparse(&out, GG_STREAM_SSE);
    /* role, "Hel", "lo...", finish, usage, [DONE]; the empty delta and the line after done produce nothing */
    CHECK_EQ_INT(json_array_size(evs), 6);
    json_t *e0 = ev_json(evs, 0), *e1 = ev_json(evs, 1), *e2 = ev_json(evs, 2), *e3 = ev_json(evs, 3), *e4 = ev_json(evs, 4);
    CHECK_EQ_STR(json_string_value(json_object_get(e0, "object")), "chat.completion.chunk");
    CHECK_EQ_STR(json_string_value(json_object_get(e0, "model")), "alias");
    CHECK_EQ_STR(S(json_object_get(json_array_get(json_object_get(e0, "choices"), 0), "delta")),
                 "{\"role\":\"assistant\",\"content\":\"\"}");
    CHECK_EQ_STR(S(json_object_get(json_array_get(json_object_get(e1, "choices"), 0), "delta")), "{\"content\":\"Hel\"}");
    CHECK_EQ_STR(S(json_object_get(json_array_get(json_object_get(e2, "choices"), 0), "delta")),
                 "{\"content\":\"lo \\\"w\\\"\\n\"}");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(e3, "choices"), 0), "finish_reason")), "length");
    CHECK_EQ_INT(json_array_size(json_object_get(e4, "choices")), 0);
    CHECK_EQ_STR(S(json_object_get(e4, "usage")), "{\"prompt_tokens\":11,\"completion_tokens\":2,\"total_tokens\":13}");
    CHECK_EQ_STR(json_string_value(json_array_get(evs, 5)), "[DONE]");
    /* one id for the whole stream */
    CHECK_EQ_STR(json_string_value(json_object_get(e0, "id")), json_string_value(json_object_get(e4, "id")));
    /* the produced stream is counted correctly by the usage observer */
    gg_usage_t u;
    gg_usage_init(&u);
    for (size_t i = 0; i < json_array_size(evs); i++)
        gg_usage_observe(&u, GG_DIALECT_OPENAI, json_string_value(json_array_get(evs, i)),
                         json_string_length(json_array_get(evs, i)));
    CHECK_EQ_INT(u.content_events, 2);
    CHECK_EQ_INT(u.completion_tokens, 2);
    CHECK(u.done);
    json_decref(e0), json_decref(e1), json_decref(e2), json_decref(e3), json_decref(e4), json_decref(evs);
    gg_xlate_dispose(&x);

    /* without include_usage: no usage chunk; generate -> text_completion chunks, no role chunk */
    const char *gen[] = {"{\"model\":\"m\",\"response\":\"Hi\",\"done\":false}",
                         "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":1}"};
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_COMPLETION, "m", 0);
    feed(&x, gen, 2, &out);
    evs = reparse(&out, GG_STREAM_SSE);
    CHECK_EQ_INT(json_array_size(evs), 3);
    e0 = ev_json(evs, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(e0, "object")), "text_completion");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(e0, "choices"), 0), "text")), "Hi");
    e1 = ev_json(evs, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(e1, "choices"), 0), "finish_reason")), "stop");
    CHECK_EQ_STR(json_string_value(json_array_get(evs, 2)), "[DONE]");
    json_decref(e0), json_decref(e1), json_decref(evs);
    gg_xlate_dispose(&x);

    /* tool calls from Ollama become a tool_calls delta and finish_reason tool_calls */
    const char *tools[] = {"{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":"
                           "\"f\",\"arguments\":{\"a\":1}}}]},\"done\":false}",
                           "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\"}"};
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT, "m", 0);
    feed(&x, tools, 2, &out);
    evs = reparse(&out, GG_STREAM_SSE);
    CHECK_EQ_INT(json_array_size(evs), 4);
    e1 = ev_json(evs, 1);
    CHECK_EQ_STR(S(json_object_get(json_array_get(json_object_get(e1, "choices"), 0), "delta")),
                 "{\"tool_calls\":[{\"index\":0,\"id\":\"call_0\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                 "\"arguments\":\"{\\\"a\\\":1}\"}}]}");
    e2 = ev_json(evs, 2);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(e2, "choices"), 0), "finish_reason")),
                 "tool_calls");
    json_decref(e1), json_decref(e2), json_decref(evs);
    gg_xlate_dispose(&x);
    gg_buf_free(&out);
}

static void test_stream_openai_to_ollama(void)
{
    const char *up[] = {
        "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
        "\"content\":\"\"},\"finish_reason\":null}]}",
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bon\"},\"finish_reason\":null}]}",
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jour\"},\"finish_reason\":null}]}",
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
        "{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":2,\"total_tokens\":22}}",
        "[DONE]",
    };
    gg_xlate_t x;
    gg_buf_t out = GG_BUF_INIT;
    gg_xlate_init(&x, GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT, "llama3:8b", 0);
    feed(&x, up, 6, &out);
    json_t *evs = reparse(&out, GG_STREAM_NDJSON);
    CHECK_EQ_INT(json_array_size(evs), 3);
    json_t *l0 = ev_json(evs, 0), *l1 = ev_json(evs, 1), *l2 = ev_json(evs, 2);
    CHECK_EQ_STR(json_string_value(json_object_get(l0, "model")), "llama3:8b");
    CHECK(json_is_string(json_object_get(l0, "created_at")));
    CHECK_EQ_STR(S(json_object_get(l0, "message")), "{\"role\":\"assistant\",\"content\":\"Bon\"}");
    CHECK(json_is_false(json_object_get(l0, "done")));
    CHECK_EQ_STR(S(json_object_get(l1, "message")), "{\"role\":\"assistant\",\"content\":\"jour\"}");
    CHECK(json_is_true(json_object_get(l2, "done")));
    CHECK_EQ_STR(json_string_value(json_object_get(l2, "done_reason")), "length");
    CHECK_EQ_INT(json_integer_value(json_object_get(l2, "prompt_eval_count")), 20);
    CHECK_EQ_INT(json_integer_value(json_object_get(l2, "eval_count")), 2);
    CHECK(json_integer_value(json_object_get(l2, "total_duration")) >= 0);
    CHECK(json_is_integer(json_object_get(l2, "eval_duration")));
    gg_usage_t u;
    gg_usage_init(&u);
    for (size_t i = 0; i < json_array_size(evs); i++)
        gg_usage_observe(&u, GG_DIALECT_OLLAMA, json_string_value(json_array_get(evs, i)),
                         json_string_length(json_array_get(evs, i)));
    CHECK_EQ_INT(u.content_events, 2);
    CHECK_EQ_INT(u.prompt_tokens, 20);
    CHECK(u.done);
    json_decref(l0), json_decref(l1), json_decref(l2), json_decref(evs);
    /* nothing after the end */
    size_t before = out.len;
    CHECK_EQ_INT(gg_xlate_event(&x, up[1], strlen(up[1]), &out), 0);
    CHECK_EQ_INT(gg_xlate_error(&x, "late", &out), 0);
    CHECK_EQ_INT(out.len, before);
    gg_xlate_dispose(&x);

    /* tool call fragments merge into one Ollama tool call; completion stream -> response lines */
    const char *tools[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]},"
        "\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Oslo\\\"}\"}}]},"
        "\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
        "[DONE]",
    };
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT, "m", 0);
    feed(&x, tools, 5, &out);
    evs = reparse(&out, GG_STREAM_NDJSON);
    CHECK_EQ_INT(json_array_size(evs), 2);
    l0 = ev_json(evs, 0);
    CHECK_EQ_STR(S(json_object_get(json_object_get(l0, "message"), "tool_calls")),
                 "[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}}]");
    l1 = ev_json(evs, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(l1, "done_reason")), "stop");
    CHECK(json_object_get(l1, "prompt_eval_count") == NULL); /* no usage reported: not invented */
    CHECK_EQ_INT(json_integer_value(json_object_get(l1, "eval_count")), 0);
    json_decref(l0), json_decref(l1), json_decref(evs);
    gg_xlate_dispose(&x);

    const char *comp[] = {"{\"object\":\"text_completion\",\"choices\":[{\"text\":\"4\",\"index\":0,\"finish_reason\":null}]}",
                          "[DONE]"};
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "m", 0);
    feed(&x, comp, 2, &out);
    evs = reparse(&out, GG_STREAM_NDJSON);
    CHECK_EQ_INT(json_array_size(evs), 2);
    l0 = ev_json(evs, 0);
    l1 = ev_json(evs, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(l0, "response")), "4");
    CHECK_EQ_STR(json_string_value(json_object_get(l1, "response")), "");
    CHECK_EQ_INT(json_integer_value(json_object_get(l1, "eval_count")), 1); /* one content chunk, no usage */
    json_decref(l0), json_decref(l1), json_decref(evs);
    gg_xlate_dispose(&x);
    gg_buf_free(&out);
}

static void test_stream_errors(void)
{
    gg_xlate_t x;
    gg_buf_t out = GG_BUF_INIT;

    /* not JSON: -EINVAL, then the caller ends the stream in the client's dialect */
    gg_xlate_init(&x, GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_CHAT, "m", 0);
    CHECK_EQ_INT(gg_xlate_event(&x, "{\"message\":", 11, &out), -EINVAL);
    CHECK_EQ_INT(gg_xlate_error(&x, "upstream \"broke\"", &out), 0);
    json_t *evs = reparse(&out, GG_STREAM_SSE);
    CHECK_EQ_INT(json_array_size(evs), 2);
    json_t *e0 = ev_json(evs, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(e0, "choices"), 0), "finish_reason")), "error");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(e0, "error"), "message")), "upstream \"broke\"");
    CHECK_EQ_STR(json_string_value(json_array_get(evs, 1)), "[DONE]");
    json_decref(e0), json_decref(evs);
    gg_xlate_dispose(&x);

    /* an upstream error object mid-stream ends an Ollama client's stream with an error line */
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT, "m", 0);
    const char *e = "{\"error\":{\"message\":\"CUDA out of memory\",\"type\":\"InternalServerError\"}}";
    CHECK_EQ_INT(gg_xlate_event(&x, e, strlen(e), &out), 0);
    CHECK_EQ_STR(out.base, "{\"error\":\"CUDA out of memory\"}\n");
    CHECK(x.finished);
    gg_xlate_dispose(&x);

    /* Ollama error line to an OpenAI client */
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OLLAMA, GG_DIALECT_OPENAI, GG_EP_COMPLETION, "m", 0);
    e = "{\"error\":\"model requires more system memory\"}";
    CHECK_EQ_INT(gg_xlate_event(&x, e, strlen(e), &out), 0);
    evs = reparse(&out, GG_STREAM_SSE);
    e0 = ev_json(evs, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(e0, "error"), "message")), "model requires more system memory");
    json_decref(e0), json_decref(evs);
    gg_xlate_dispose(&x);

    /* same dialect: re-framed unchanged, a forced usage chunk dropped, invalid JSON still reported */
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OPENAI, GG_DIALECT_OPENAI, GG_EP_CHAT, "m", 0);
    const char *c = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}";
    const char *usage = "{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}";
    CHECK_EQ_INT(gg_xlate_event(&x, c, strlen(c), &out), 0);
    CHECK_EQ_INT(gg_xlate_event(&x, usage, strlen(usage), &out), 0);
    CHECK_EQ_INT(gg_xlate_event(&x, "[DONE]", 6, &out), 0);
    CHECK_EQ_STR(out.base, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n");
    gg_xlate_dispose(&x);
    gg_buf_reset(&out);
    gg_xlate_init(&x, GG_DIALECT_OLLAMA, GG_DIALECT_OLLAMA, GG_EP_CHAT, "m", 0);
    CHECK_EQ_INT(gg_xlate_event(&x, "{\"done\":tru", 11, &out), -EINVAL);
    CHECK_EQ_INT(gg_xlate_error(&x, "bad upstream", &out), 0);
    CHECK_EQ_STR(out.base, "{\"error\":\"bad upstream\"}\n");
    gg_xlate_dispose(&x);
    gg_buf_free(&out);
}

/* Byte-by-byte framing through the parser into the translator gives the same bytes as whole events,
 * modulo timestamps: compare event counts and contents. */
static void test_stream_split_feed(void)
{
    const char *sse = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\r\n\r\n: ping\n\ndata: {\"choices\":"
                      "[{\"index\":0,\"delta\":{\"content\":\"y\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                      "\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
    json_t *events = json_array();
    gg_stream_parser_t p;
    gg_stream_init(&p, GG_STREAM_SSE, 4096);
    for (size_t i = 0; i < strlen(sse); i++)
        gg_stream_feed(&p, sse + i, 1, on_event, events);
    gg_stream_dispose(&p);
    CHECK_EQ_INT(json_array_size(events), 4);
    gg_xlate_t x;
    gg_buf_t out = GG_BUF_INIT;
    gg_xlate_init(&x, GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA, GG_EP_CHAT, "m", 0);
    for (size_t i = 0; i < json_array_size(events); i++)
        CHECK_EQ_INT(
            gg_xlate_event(&x, json_string_value(json_array_get(events, i)), json_string_length(json_array_get(events, i)), &out),
            0);
    json_t *lines = reparse(&out, GG_STREAM_NDJSON);
    CHECK_EQ_INT(json_array_size(lines), 3);
    json_t *last = ev_json(lines, 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(last, "eval_count")), 2);
    CHECK_EQ_INT(json_integer_value(json_object_get(last, "prompt_eval_count")), 3);
    json_decref(last), json_decref(lines), json_decref(events);
    gg_xlate_dispose(&x);
    gg_buf_free(&out);
}

TEST_MAIN(test_paths, test_request_ollama_to_openai, test_request_openai_to_ollama, test_response_chat, test_response_completion,
          test_embeddings, test_error_body, test_stream_ollama_to_openai, test_stream_openai_to_ollama, test_stream_errors,
          test_stream_split_feed)
