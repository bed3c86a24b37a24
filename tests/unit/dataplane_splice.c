/* Tests the pure parts of dataplane/splice.c and the end-marker check it shares with the verdict: the stream tail is cut
 * into event payloads (SSE "data:" stripped, chunk-size lines and a line the ring cut skipped), the usage found in them,
 * and end markers for both framings. Without the kernel assist stream splicing is off and nothing joins. (The kernel
 * side is tested as root in tests/integration/splice_stream.test.mjs.) */
#include <errno.h>

#include "gridgate/bpf.h"
#include "gridgate/splice.h"
#include "gridgate/stream.h"
#include "test.h"

struct lines {
    int n;
    char got[8][160];
    gg_usage_t u;
    enum gg_dialect d;
};

static void on_line(void *p, const char *s, size_t n)
{
    struct lines *l = p;
    if (l->n < 8)
        snprintf(l->got[l->n], sizeof(l->got[0]), "%.*s", (int)n, s);
    l->n++;
    gg_usage_observe(&l->u, l->d, s, n);
}

static void tail_openai(void)
{
    static const char t[] =
        "pad\":\"x\"}\n\n\r\n5b\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":7,"
        "\"total_tokens\":10}}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    struct lines l = {.d = GG_DIALECT_OPENAI};
    gg_usage_init(&l.u);
    gg_splice_tail_events(t, sizeof(t) - 1, 1, on_line, &l);
    CHECK_EQ_INT(l.n, 2);
    CHECK(strncmp(l.got[0], "{\"choices\":[]", 13) == 0);
    CHECK_EQ_STR(l.got[1], "[DONE]");
    CHECK_EQ_INT(l.u.prompt_tokens, 3);
    CHECK_EQ_INT(l.u.completion_tokens, 7);
    CHECK(l.u.done);
    CHECK(gg_bpf_stream_tail_ends(t, sizeof(t) - 1, GG_BPF_FRAMING_CHUNKED));
    CHECK(!gg_bpf_stream_tail_ends(t, sizeof(t) - 1, GG_BPF_FRAMING_CLOSE));
    CHECK(!gg_bpf_stream_tail_ends(t, sizeof(t) - 1, 0));
    /* the same tail without its last byte has not ended */
    CHECK(!gg_bpf_stream_tail_ends(t, sizeof(t) - 2, GG_BPF_FRAMING_CHUNKED));
}

static void tail_ollama(void)
{
    /* not cut by the ring: the first line counts too */
    static const char t[] =
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"a\"},\"done\":false}\n\r\n6c\r\n"
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":2,"
        "\"eval_count\":9}\n\r\n0\r\n\r\n";
    struct lines l = {.d = GG_DIALECT_OLLAMA};
    gg_usage_init(&l.u);
    gg_splice_tail_events(t, sizeof(t) - 1, 0, on_line, &l);
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_INT(l.u.prompt_tokens, 2);
    CHECK_EQ_INT(l.u.completion_tokens, 9);
    CHECK(l.u.done);
}

static void tail_odd(void)
{
    struct lines l = {.d = GG_DIALECT_OPENAI};
    gg_usage_init(&l.u);
    gg_splice_tail_events("", 0, 1, on_line, &l);
    gg_splice_tail_events("no newline at all", 17, 1, on_line, &l);
    gg_splice_tail_events("{\"unterminated\":1}", 18, 0, on_line, &l);
    gg_splice_tail_events("\n\n\r\n\r\n", 6, 0, on_line, &l);
    CHECK_EQ_INT(l.n, 0);
    /* close-delimited: [DONE] ends it, chunked markers do not */
    CHECK(gg_bpf_stream_tail_ends("data: [DONE]\n\n", 14, GG_BPF_FRAMING_CLOSE));
    CHECK(!gg_bpf_stream_tail_ends("data: [DONE]\n\n", 14, GG_BPF_FRAMING_CHUNKED));
    CHECK(!gg_bpf_stream_tail_ends("0\r\n\r\n", 5, GG_BPF_FRAMING_CHUNKED)); /* too short to be sure */
}

static void off_without_bpf(void)
{
    uint32_t flow;
    gg_splice_set_streams(1);
    CHECK(!gg_splice_streams()); /* not loaded */
    CHECK_EQ_INT(gg_splice_join(0, &flow), -ENOTSUP);
    CHECK_EQ_INT(gg_bpf_stream_join(0, &flow), -ENOTSUP);
    CHECK_EQ_INT(gg_splice_active(), 0);
}

static void route_switch(void)
{
    /* bpf.splice_paths: none named means every streaming route; otherwise only those named */
    gg_splice_set_paths(0);
    CHECK(gg_splice_path_allowed("/v1/chat/completions", 20) && gg_splice_path_allowed("/api/generate", 13));
    CHECK(!gg_splice_path_allowed("/v1/embeddings", 14) && !gg_splice_path_allowed("/v1/chat/completionsX", 21));
    gg_splice_set_paths(1u << gg_splice_path_index("/api/chat", 9));
    CHECK(gg_splice_path_allowed("/api/chat", 9));
    CHECK(!gg_splice_path_allowed("/v1/chat/completions", 20) && !gg_splice_path_allowed("/api/generate", 13));
    gg_splice_set_paths(0);
}

TEST_MAIN(tail_openai, tail_ollama, tail_odd, off_without_bpf, route_switch)
