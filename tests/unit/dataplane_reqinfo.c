/* Tests dataplane/reqinfo.c: field extraction per dialect and endpoint, every error message a client
 * can get, limits, and the edits the gateway makes before forwarding. */
#include <errno.h>
#include <stdlib.h>

#include "gridgate/reqinfo.h"
#include "test.h"

static char err[256];

static int parse(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body)
{
    err[0] = '\0';
    return gg_reqinfo_parse(ri, d, ep, body, strlen(body), err, sizeof(err));
}

/* Parses a body that must fail and checks the message contains `want`. */
static void check_error(enum gg_dialect d, enum gg_endpoint ep, const char *body, const char *want)
{
    gg_reqinfo_t ri;
    int r = parse(&ri, d, ep, body);
    CHECK_EQ_INT(r, -EINVAL);
    if (strstr(err, want) == NULL) {
        fprintf(stderr, "body %.60s: error '%s' lacks '%s'\n", body, err, want);
        CHECK(0);
    }
    CHECK(ri.root == NULL);
    gg_reqinfo_dispose(&ri);
}

static void test_openai_chat(void)
{
    gg_reqinfo_t ri;
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT,
                       "{\"model\":\"llama3\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\","
                       "\"content\":[{\"type\":\"text\",\"text\":\"What is in this picture?\"},{\"type\":\"image_url\","
                       "\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}],\"stream\":true,\"stream_options\":{"
                       "\"include_usage\":true},\"max_tokens\":64,\"user\":\"alice\"}"),
                 0);
    CHECK_EQ_STR(ri.model, "llama3");
    CHECK_EQ_INT(ri.stream, 1);
    CHECK_EQ_INT(ri.include_usage, 1);
    CHECK_EQ_INT(ri.max_tokens, 64);
    CHECK_EQ_STR(ri.user, "alice");
    CHECK_EQ_INT(ri.is_load_unload, 0);
    /* "Be brief." 9 + "What is in this picture?" 24 = 33 chars -> 9, + 2 messages * 4 + 1 image */
    CHECK_EQ_INT(ri.prompt_tokens_est, 9 + 8 + GG_REQINFO_IMAGE_TOKENS);
    gg_reqinfo_dispose(&ri);

    /* defaults; max_completion_tokens wins over max_tokens */
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT,
                       "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"héllo wörld\"}],\"max_tokens\":5,"
                       "\"max_completion_tokens\":7}"),
                 0);
    CHECK_EQ_INT(ri.stream, 0);
    CHECK_EQ_INT(ri.include_usage, 0);
    CHECK_EQ_INT(ri.max_tokens, 7);
    CHECK(ri.user == NULL);
    CHECK_EQ_INT(ri.prompt_tokens_est, 3 + 4); /* 11 code points, not 13 bytes */
    gg_reqinfo_dispose(&ri);
}

static void test_ollama(void)
{
    gg_reqinfo_t ri;
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_CHAT,
                       "{\"model\":\"llava\",\"messages\":[{\"role\":\"user\",\"content\":\"describe\",\"images\":[\"iVBOR\","
                       "\"iVBOR\"]}],\"options\":{\"num_predict\":100,\"num_ctx\":4096}}"),
                 0);
    CHECK_EQ_INT(ri.stream, 1); /* Ollama streams by default */
    CHECK_EQ_INT(ri.max_tokens, 100);
    CHECK_EQ_INT(ri.prompt_tokens_est, 2 + 4 + 2 * GG_REQINFO_IMAGE_TOKENS);
    CHECK_EQ_INT(ri.is_load_unload, 0);
    gg_reqinfo_dispose(&ri);

    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_COMPLETION,
                       "{\"model\":\"m\",\"prompt\":\"Why is the sky blue?\",\"system\":\"be short\",\"stream\":false,"
                       "\"options\":{\"num_predict\":-1}}"),
                 0);
    CHECK_EQ_INT(ri.stream, 0);
    CHECK_EQ_INT(ri.max_tokens, -1); /* -1 = unbounded */
    CHECK_EQ_INT(ri.prompt_tokens_est, (20 + 8 + 3) / 4);
    gg_reqinfo_dispose(&ri);

    /* load and unload requests */
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\"}"), 0);
    CHECK_EQ_INT(ri.is_load_unload, 1);
    CHECK_EQ_INT(ri.is_unload, 0);
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"keep_alive\":0}"), 0);
    CHECK_EQ_INT(ri.is_load_unload, 1);
    CHECK_EQ_INT(ri.is_unload, 1);
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"\",\"keep_alive\":\"0s\"}"), 0);
    CHECK_EQ_INT(ri.is_unload, 1);
    gg_reqinfo_dispose(&ri);
    /* keep_alive 0 with a prompt generates, then unloads: a real request */
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"hi\",\"keep_alive\":0}"), 0);
    CHECK_EQ_INT(ri.is_load_unload, 0);
    CHECK_EQ_INT(ri.is_unload, 0);
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"keep_alive\":\"5m\"}"), 0);
    CHECK_EQ_INT(ri.is_unload, 0);
    gg_reqinfo_dispose(&ri);

    /* embed and show never stream */
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_EMBED, "{\"model\":\"e\",\"input\":[\"abcd\",\"efgh\"]}"), 0);
    CHECK_EQ_INT(ri.stream, 0);
    CHECK_EQ_INT(ri.prompt_tokens_est, 2);
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_SHOW, "{\"name\":\"llama3\"}"), 0);
    CHECK_EQ_STR(ri.model, "llama3");
    CHECK_EQ_INT(ri.stream, 0);
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OLLAMA, GG_EP_EMBED_LEGACY, "{\"model\":\"e\",\"prompt\":\"12345678\"}"), 0);
    CHECK_EQ_INT(ri.prompt_tokens_est, 2);
    gg_reqinfo_dispose(&ri);
}

static void test_openai_other(void)
{
    gg_reqinfo_t ri;
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_EMBED, "{\"model\":\"e\",\"input\":[[1,2,3],[4,5]]}"), 0);
    CHECK_EQ_INT(ri.prompt_tokens_est, 5); /* token ids count one each */
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"abcdefgh\",\"stream\":true}"), 0);
    CHECK_EQ_INT(ri.stream, 1);
    CHECK_EQ_INT(ri.prompt_tokens_est, 2);
    gg_reqinfo_dispose(&ri);
}

static void test_errors(void)
{
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[1,2,}", "invalid JSON at line 1 column 30");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\n\"messages\" [] }", "invalid JSON at line 2 column");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "", "empty");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "[1,2]", "must be a JSON object");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[]} trailing", "invalid JSON");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"\xc3\x28\",\"messages\":[]}", "not valid UTF-8");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"messages\":[]}", "'model' is required");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":7,\"messages\":[]}", "'model' must be a string");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"\",\"messages\":[]}", "'model' must not be empty");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\"}", "'messages' is required");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":{}}", "'messages' must be an array");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[\"hi\"]}", "'messages[0]' must be an object");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{}]}",
                "'messages[1].role' must be a string");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}",
                "'messages[0].content' must be a string or an array");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream\":\"yes\"}",
                "'stream' must be a boolean");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"max_tokens\":1.5}",
                "'max_tokens' must be an integer");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"temperature\":\"hot\"}",
                "'temperature' must be a number");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream_options\":true}",
                "'stream_options' must be an object");
    check_error(GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\"}", "'prompt' is required");
    check_error(GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":{}}", "'prompt' must be a string or an array");
    check_error(GG_DIALECT_OPENAI, GG_EP_EMBED, "{\"model\":\"m\"}", "'input' is required");
    check_error(GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
                "'messages[0].content' must be a string");
    check_error(GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"images\":\"x\"}]}",
                "'messages[0].images' must be an array");
    check_error(GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\"]}", "'prompt' must be a string");
    check_error(GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"options\":{\"num_predict\":\"ten\"}}",
                "'options.num_predict' must be an integer");
    check_error(GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"options\":[]}", "'options' must be an object");
    check_error(GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"keep_alive\":[]}", "'keep_alive' must be");
    check_error(GG_DIALECT_OLLAMA, GG_EP_SHOW, "{}", "'model' is required");
}

static void test_limits(void)
{
    /* nesting: one level over the bound fails, the bound itself passes */
    size_t depth = GG_REQINFO_MAX_DEPTH;
    char *b = malloc(2 * depth + 64);
    size_t n = (size_t)sprintf(b, "{\"model\":\"m\",\"messages\":[],\"x\":");
    for (size_t i = 0; i < depth - 1; i++)
        b[n++] = '[';
    for (size_t i = 0; i < depth - 1; i++)
        b[n++] = ']';
    b[n++] = '}';
    b[n] = '\0';
    gg_reqinfo_t ri;
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, b), 0);
    gg_reqinfo_dispose(&ri);
    n = (size_t)sprintf(b, "{\"model\":\"m\",\"messages\":[],\"x\":");
    for (size_t i = 0; i < depth; i++)
        b[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        b[n++] = ']';
    b[n++] = '}';
    b[n] = '\0';
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, b, "nesting deeper than");
    /* brackets inside strings are not nesting */
    n = (size_t)sprintf(b, "{\"model\":\"m\",\"messages\":[],\"x\":\"");
    for (size_t i = 0; i < depth + 5; i++)
        b[n++] = '[';
    n += (size_t)sprintf(b + n, "\\\"\"}");
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, b), 0);
    gg_reqinfo_dispose(&ri);
    free(b);

    /* message count */
    size_t count = GG_REQINFO_MAX_MESSAGES + 1;
    char *m = malloc(count * 32 + 64);
    n = (size_t)sprintf(m, "{\"model\":\"m\",\"messages\":[");
    for (size_t i = 0; i < count; i++)
        n += (size_t)sprintf(m + n, "%s{\"role\":\"user\"}", i ? "," : "");
    sprintf(m + n, "]}");
    check_error(GG_DIALECT_OPENAI, GG_EP_CHAT, m, "at most 100000");
    free(m);
}

static void test_edits(void)
{
    gg_reqinfo_t ri;
    size_t len;
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT,
                       "{\"model\":\"alias\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.7,"
                       "\"stream\":true}"),
                 0);
    gg_reqinfo_set_model(&ri, "llama3.1:8b");
    CHECK_EQ_STR(ri.model, "llama3.1:8b");
    CHECK_EQ_INT(gg_reqinfo_force_include_usage(&ri), 1);
    char *s = gg_reqinfo_serialize(&ri, &len);
    CHECK_EQ_STR(s, "{\"model\":\"llama3.1:8b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.7,"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    CHECK_EQ_INT(len, strlen(s));
    free(s);
    gg_reqinfo_dispose(&ri);

    /* already asked for: nothing to strip later; not streaming: nothing to do */
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT,
                       "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"stream_options\":{\"include_usage\":true}}"),
                 0);
    CHECK_EQ_INT(gg_reqinfo_force_include_usage(&ri), 0);
    gg_reqinfo_dispose(&ri);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[]}"), 0);
    CHECK_EQ_INT(gg_reqinfo_force_include_usage(&ri), 0);
    s = gg_reqinfo_serialize(&ri, &len);
    CHECK(strstr(s, "stream_options") == NULL);
    free(s);
    gg_reqinfo_dispose(&ri);
    /* stream_options present without include_usage keeps its other keys */
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_COMPLETION,
                       "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":false}}"),
                 0);
    CHECK_EQ_INT(gg_reqinfo_force_include_usage(&ri), 1);
    s = gg_reqinfo_serialize(&ri, &len);
    CHECK(strstr(s, "{\"continuous_usage_stats\":false,\"include_usage\":true}") != NULL);
    free(s);
    gg_reqinfo_dispose(&ri);
}

/* The scanner decides these bodies itself (no jansson), with the jansson path's verdict, message and fields. */
static void test_scan_matches_tree(void)
{
    static const struct {
        enum gg_dialect d;
        enum gg_endpoint ep;
        const char *body;
    } cases[] = {
        {GG_DIALECT_OPENAI, GG_EP_CHAT,
         "{\"model\":\"llama3\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
         "[{\"type\":\"text\",\"text\":\"What \\u00e9?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}],"
         "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":64,\"user\":\"alice\",\"temperature\":0.7}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hÃ©llo\"}],"
         "\"max_tokens\":5,\"max_completion_tokens\":null}"},
        {GG_DIALECT_OLLAMA, GG_EP_CHAT,
         "{\"model\":\"llava\",\"messages\":[{\"role\":\"user\",\"content\":\"d\",\"images\":"
         "[\"a\",\"b\"]}],\"options\":{\"num_predict\":100,\"num_ctx\":4096}}"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":\"\",\"keep_alive\":\"0s\"}"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"keep_alive\":0.0}"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION,
         "{\"model\":\"m\",\"prompt\":\"x\",\"system\":\"s\",\"suffix\":\"t\",\"images\":[1]}"},
        {GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"abcd\",[1,2],3,4.5]}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"prompt\":[\"not counted for chat\"],\"messages\":[]}"},
        {GG_DIALECT_OPENAI, GG_EP_EMBED, "{\"model\":\"e\",\"input\":[[1,2,3],[4,5]],\"encoding_format\":\"base64\"}"},
        {GG_DIALECT_OLLAMA, GG_EP_SHOW, "{\"name\":\"llama3\"}"},
        {GG_DIALECT_OLLAMA, GG_EP_SHOW, "{\"model\":null,\"name\":\"llama3\"}"},
        {GG_DIALECT_OLLAMA, GG_EP_EMBED_LEGACY, "{\"model\":\"e\",\"prompt\":\"12345678\"}"},
        /* errors, in the order the jansson path checks */
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"messages\":[]}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":7,\"messages\":[]}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"\",\"messages\":[]}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\"}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":{}}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"u\"},\"hi\",{}]}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"u\",\"content\":5}],\"stream\":1}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"u\",\"content\":5}]}"},
        {GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[],\"max_tokens\":1.5,\"temperature\":\"hot\"}"},
        {GG_DIALECT_OPENAI, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":{}}"},
        {GG_DIALECT_OPENAI, GG_EP_EMBED, "{\"model\":\"m\"}"},
        {GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"u\",\"content\":[],\"images\":1}]}"},
        {GG_DIALECT_OLLAMA, GG_EP_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"u\",\"images\":\"x\"}]}"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\"]}"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"options\":{\"num_predict\":\"ten\"}}"},
        {GG_DIALECT_OLLAMA, GG_EP_COMPLETION, "{\"model\":\"m\",\"keep_alive\":[]}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gg_reqinfo_t a, b;
        char ea[256] = "", eb[256] = "";
        const char *body = cases[i].body;
        int ra = gg_reqinfo_parse_scan(&a, cases[i].d, cases[i].ep, body, strlen(body), ea, sizeof(ea));
        int rb = gg_reqinfo_parse_tree(&b, cases[i].d, cases[i].ep, body, strlen(body), eb, sizeof(eb));
        CHECK_EQ_INT(ra, rb);
        CHECK_EQ_STR(ea, eb);
        if (ra == 0 && rb == 0) {
            CHECK(a.root == NULL); /* no tree until something needs one */
            CHECK_EQ_STR(a.model, b.model);
            CHECK_EQ_STR(a.user ? a.user : "-", b.user ? b.user : "-");
            CHECK_EQ_INT(a.stream, b.stream);
            CHECK_EQ_INT(a.include_usage, b.include_usage);
            CHECK_EQ_INT(a.max_tokens, b.max_tokens);
            CHECK_EQ_INT(a.prompt_tokens_est, b.prompt_tokens_est);
            CHECK_EQ_INT(a.is_load_unload, b.is_load_unload);
            CHECK_EQ_INT(a.is_unload, b.is_unload);
            CHECK_EQ_INT(a.encoding_base64, b.encoding_base64);
            CHECK(json_equal(gg_reqinfo_root(&a), b.root));
            gg_reqinfo_dispose(&a);
            gg_reqinfo_dispose(&b);
        }
    }
    /* what the scanner leaves to jansson: malformed JSON, escaped keys, duplicate keys it reads */
    gg_reqinfo_t ri;
    CHECK_EQ_INT(gg_reqinfo_parse_scan(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, "{\"model\":\"m\",", 12, err, sizeof(err)), 1);
    const char *esc = "{\"mod\\u0065l\":\"m\",\"messages\":[]}";
    CHECK_EQ_INT(gg_reqinfo_parse_scan(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, esc, strlen(esc), err, sizeof(err)), 1);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, esc), 0);
    CHECK_EQ_STR(ri.model, "m");
    gg_reqinfo_dispose(&ri);
    const char *dup = "{\"model\":\"a\",\"model\":\"b\",\"messages\":[]}";
    CHECK_EQ_INT(gg_reqinfo_parse_scan(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, dup, strlen(dup), err, sizeof(err)), 1);
    CHECK_EQ_INT(parse(&ri, GG_DIALECT_OPENAI, GG_EP_CHAT, dup), 0);
    CHECK_EQ_STR(ri.model, "b"); /* jansson: the last one wins */
    gg_reqinfo_dispose(&ri);
}

/* A reqinfo handed on with gg_reqinfo_move keeps its names, though they live inside the struct. */
static void test_move(void)
{
    gg_reqinfo_t *src = malloc(sizeof(*src)), dst;
    const char *body = "{\"model\":\"m1\",\"messages\":[],\"user\":\"bob\"}";
    CHECK_EQ_INT(gg_reqinfo_parse(src, GG_DIALECT_OPENAI, GG_EP_CHAT, body, strlen(body), err, sizeof(err)), 0);
    gg_reqinfo_move(&dst, src);
    memset(src, 0x55, sizeof(*src));
    free(src);
    CHECK_EQ_STR(dst.model, "m1");
    CHECK_EQ_STR(dst.user, "bob");
    gg_reqinfo_set_model(&dst, "m2");
    size_t len;
    char *s = gg_reqinfo_serialize(&dst, &len);
    CHECK_EQ_STR(s, "{\"model\":\"m2\",\"messages\":[],\"user\":\"bob\"}");
    free(s);
    gg_reqinfo_dispose(&dst);
}

TEST_MAIN(test_openai_chat, test_ollama, test_openai_other, test_errors, test_limits, test_edits, test_scan_matches_tree, test_move)
