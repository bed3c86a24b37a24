/* Tests common/stream.c: SSE and NDJSON framing fed whole, byte by byte and at every split point,
 * line endings, limits, and the usage observer (fast scan agrees with the full parse). */
#include "common/stream.c"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "test.h"

/* Events are collected as "<payload>|" so order, count and exact bytes are all compared at once. */
static void collect(void *ctx, const char *data, size_t len)
{
    gg_buf_append(ctx, data, len);
    gg_buf_append_char(ctx, '|');
}

static char got[65536];

/* Feeds `in` in slices of `step` bytes (0 = whole) and returns the collected events. */
static const char *run(enum gg_stream_kind kind, const char *in, size_t step, size_t max, int *ret)
{
    gg_stream_parser_t p;
    gg_buf_t out = GG_BUF_INIT;
    size_t len = strlen(in);
    int r = 0;
    gg_stream_init(&p, kind, max);
    if (step == 0)
        step = len;
    for (size_t off = 0; off < len && r == 0; off += step)
        r = gg_stream_feed(&p, in + off, off + step > len ? len - off : step, collect, &out);
    if (r == 0)
        r = gg_stream_finish(&p, collect, &out);
    if (ret != NULL)
        *ret = r;
    snprintf(got, sizeof(got), "%s", out.base != NULL ? out.base : "");
    gg_buf_free(&out);
    gg_stream_dispose(&p);
    return got;
}

/* Every slicing of `in` must produce `want`. */
static void check_all_splits(enum gg_stream_kind kind, const char *in, const char *want)
{
    size_t len = strlen(in);
    int ok = 1;
    for (size_t step = 1; step <= len; step++) {
        int r;
        if (strcmp(run(kind, in, step, 1 << 20, &r), want) != 0 || r != 0) {
            fprintf(stderr, "step %zu: got '%s' want '%s'\n", step, got, want);
            ok = 0;
        }
    }
    CHECK(ok);
}

static void test_sse_basic(void)
{
    CHECK_EQ_STR(run(GG_STREAM_SSE, "data: {\"a\":1}\n\ndata: [DONE]\n\n", 0, 1024, NULL), "{\"a\":1}|[DONE]|");
    /* no space after the colon, and only one space is stripped */
    CHECK_EQ_STR(run(GG_STREAM_SSE, "data:x\n\ndata:  y\n\n", 0, 1024, NULL), "x| y|");
    /* multi-line data joined with \n, comments and other fields ignored */
    CHECK_EQ_STR(run(GG_STREAM_SSE, ": keep-alive\nevent: message\nid: 7\ndata: a\ndata: b\nretry: 5\n\n", 0, 1024, NULL), "a\nb|");
    /* an event with no data lines is not reported; an empty data line is an empty event */
    CHECK_EQ_STR(run(GG_STREAM_SSE, "event: ping\n\ndata\n\ndata:\n\n", 0, 1024, NULL), "||");
    /* a field merely starting with "data" is a different field */
    CHECK_EQ_STR(run(GG_STREAM_SSE, "datax: no\ndata: yes\n\n", 0, 1024, NULL), "yes|");
    /* unterminated final event is dropped (SSE spec) */
    CHECK_EQ_STR(run(GG_STREAM_SSE, "data: a\n\ndata: partial\n", 0, 1024, NULL), "a|");
    /* extra blank lines dispatch nothing */
    CHECK_EQ_STR(run(GG_STREAM_SSE, "\n\n\ndata: a\n\n\n\n", 0, 1024, NULL), "a|");
}

static void test_sse_line_endings(void)
{
    CHECK_EQ_STR(run(GG_STREAM_SSE, "data: a\r\n\r\ndata: b\r\rdata: c\n\n", 0, 1024, NULL), "a|b|c|");
    CHECK_EQ_STR(run(GG_STREAM_SSE, "data: a\r\ndata: b\r\n\r\n", 0, 1024, NULL), "a\nb|");
    check_all_splits(GG_STREAM_SSE, "data: a\r\n\r\ndata: b\r\rdata: c\n\n", "a|b|c|");
    check_all_splits(GG_STREAM_SSE, "data: one\r\ndata: two\r\n\r\n: c\r\ndata: {\"x\":\"y\"}\n\ndata: [DONE]\n\n",
                     "one\ntwo|{\"x\":\"y\"}|[DONE]|");
    /* CR at the end of a slice followed by LF at the start of the next is one line ending, not two */
    gg_stream_parser_t p;
    gg_buf_t out = GG_BUF_INIT;
    gg_stream_init(&p, GG_STREAM_SSE, 100);
    gg_stream_feed(&p, "data: a\r", 8, collect, &out);
    gg_stream_feed(&p, "\ndata: b\r", 9, collect, &out);
    gg_stream_feed(&p, "\n\r", 2, collect, &out);
    gg_stream_feed(&p, "\n", 1, collect, &out);
    CHECK_EQ_STR(out.base, "a\nb|");
    gg_buf_free(&out);
    gg_stream_dispose(&p);
}

static void test_sse_limits(void)
{
    char big[400];
    int r;
    memset(big, 'x', sizeof(big));
    snprintf(big, sizeof(big), "data: %0200d\n\n", 7);
    CHECK_EQ_STR(run(GG_STREAM_SSE, big, 0, 199, &r), "");
    CHECK_EQ_INT(r, -E2BIG);
    run(GG_STREAM_SSE, big, 0, 200, &r); /* "%0200d" -> 200 digits, fits exactly */
    CHECK_EQ_INT(r, 0);
    /* split byte by byte the limit still applies, and several lines adding up count too */
    run(GG_STREAM_SSE, big, 1, 199, &r);
    CHECK_EQ_INT(r, -E2BIG);
    run(GG_STREAM_SSE, "data: 12345\ndata: 12345\ndata: 12345\n\n", 0, 12, &r);
    CHECK_EQ_INT(r, -E2BIG);
    /* the error is sticky */
    gg_stream_parser_t p;
    gg_buf_t out = GG_BUF_INIT;
    gg_stream_init(&p, GG_STREAM_SSE, 4);
    CHECK_EQ_INT(gg_stream_feed(&p, "data: 123456\n\n", 14, collect, &out), -E2BIG);
    CHECK_EQ_INT(gg_stream_feed(&p, "data: 1\n\n", 9, collect, &out), -E2BIG);
    CHECK_EQ_INT(gg_stream_finish(&p, collect, &out), -E2BIG);
    CHECK(out.len == 0);
    gg_buf_free(&out);
    gg_stream_dispose(&p);
    /* a 1 MB event assembled from 1000 slices */
    size_t n = 1 << 20;
    char *huge = malloc(n + 16);
    memcpy(huge, "data: ", 6);
    memset(huge + 6, 'z', n);
    memcpy(huge + 6 + n, "\n\n", 3);
    gg_stream_init(&p, GG_STREAM_SSE, n);
    size_t total = n + 8, count = 0;
    for (size_t off = 0; off < total; off += 1049)
        CHECK_EQ_INT(gg_stream_feed(&p, huge + off, off + 1049 > total ? total - off : 1049, collect, &out), 0);
    for (size_t i = 0; i < out.len; i++)
        count += out.base[i] == 'z';
    CHECK_EQ_INT(count, n);
    CHECK_EQ_INT(out.len, n + 1);
    gg_buf_free(&out);
    gg_stream_dispose(&p);
    free(huge);
}

static void test_ndjson(void)
{
    int r;
    CHECK_EQ_STR(run(GG_STREAM_NDJSON, "{\"a\":1}\n{\"b\":2}\n", 0, 1024, NULL), "{\"a\":1}|{\"b\":2}|");
    CHECK_EQ_STR(run(GG_STREAM_NDJSON, "{\"a\":1}\r\n\n\r\n{\"b\":2}", 0, 1024, NULL), "{\"a\":1}|{\"b\":2}|");
    check_all_splits(GG_STREAM_NDJSON, "{\"a\":\"x\\ny\"}\r\n\n{\"b\":2}\n{\"c\":3}", "{\"a\":\"x\\ny\"}|{\"b\":2}|{\"c\":3}|");
    run(GG_STREAM_NDJSON, "{\"a\":\"0123456789\"}\n", 0, 10, &r);
    CHECK_EQ_INT(r, -E2BIG);
    run(GG_STREAM_NDJSON, "{\"a\":\"0123456789\"}\n", 3, 10, &r);
    CHECK_EQ_INT(r, -E2BIG);
    /* exactly at the limit */
    run(GG_STREAM_NDJSON, "0123456789\n", 0, 10, &r);
    CHECK_EQ_INT(r, 0);
}

/* --- usage ----------------------------------------------------------------------------------- */

static const char *const openai_stream[] = {
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}",
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{"
    "\"content\":\"Hel\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
    /* whitespace like Python's json.dumps, and a content string that mentions keys */
    "{\"id\": \"c1\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"\\\"usage\\\":{\\\"content\\\":1}\"}, "
    "\"finish_reason\": null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"logprobs\":{\"content\":[{\"token\":\"x\"}]},"
    "\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}",
    "[DONE]",
};

static void test_usage_openai(void)
{
    gg_usage_t u;
    int evs[7];
    gg_usage_init(&u);
    for (int i = 0; i < 7; i++)
        evs[i] = gg_usage_observe(&u, GG_DIALECT_OPENAI, openai_stream[i], strlen(openai_stream[i]));
    CHECK_EQ_INT(evs[0], 0);
    CHECK_EQ_INT(evs[1], GG_USAGE_EV_CONTENT);
    CHECK_EQ_INT(evs[2], GG_USAGE_EV_CONTENT);
    CHECK_EQ_INT(evs[3], GG_USAGE_EV_CONTENT);
    CHECK_EQ_INT(evs[4], 0);
    CHECK_EQ_INT(evs[5], GG_USAGE_EV_USAGE_ONLY);
    CHECK_EQ_INT(evs[6], GG_USAGE_EV_DONE);
    CHECK_EQ_INT(u.content_events, 3);
    CHECK_EQ_INT(u.prompt_tokens, 12);
    CHECK_EQ_INT(u.completion_tokens, 3);
    CHECK_EQ_STR(u.finish_reason, "length");
    CHECK(u.done);
    CHECK(!u.error);

    /* completions use choices[].text */
    gg_usage_init(&u);
    const char *c1 = "{\"object\":\"text_completion\",\"choices\":[{\"text\":\" world\",\"index\":0,\"finish_reason\":null}]}";
    const char *c2 = "{\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":2,"
                     "\"completion_tokens\":1}}";
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OPENAI, c1, strlen(c1)), GG_USAGE_EV_CONTENT);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OPENAI, c2, strlen(c2)), 0);
    CHECK_EQ_STR(u.finish_reason, "stop");
    CHECK_EQ_INT(u.completion_tokens, 1);
    /* errors and garbage */
    const char *e = "{\"error\":{\"message\":\"boom\",\"type\":\"x\"}}";
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OPENAI, e, strlen(e)), 0);
    CHECK(u.error);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OPENAI, "{\"choices\":[{\"finish_reason\":\"st", 31), GG_USAGE_EV_INVALID);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OPENAI, "not json", 8), 0); /* no keys: nothing to count */
}

static void test_usage_ollama(void)
{
    const char *lines[] = {
        "{\"model\":\"m\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
        "\"done\":false}",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":false}",
        "{\"model\":\"m\",\"response\":\"there\",\"done\": false}",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"length\",\"done\":true,"
        "\"total_duration\":5,\"prompt_eval_count\":26,\"eval_count\":298}",
    };
    gg_usage_t u;
    gg_usage_init(&u);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OLLAMA, lines[0], strlen(lines[0])), GG_USAGE_EV_CONTENT);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OLLAMA, lines[1], strlen(lines[1])), 0);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OLLAMA, lines[2], strlen(lines[2])), GG_USAGE_EV_CONTENT);
    CHECK(!u.done);
    CHECK_EQ_INT(gg_usage_observe(&u, GG_DIALECT_OLLAMA, lines[3], strlen(lines[3])), GG_USAGE_EV_DONE);
    CHECK(u.done);
    CHECK_EQ_INT(u.content_events, 2);
    CHECK_EQ_INT(u.prompt_tokens, 26);
    CHECK_EQ_INT(u.completion_tokens, 298);
    CHECK_EQ_STR(u.finish_reason, "length");
    const char *e = "{\"error\":\"model 'x' not found\"}";
    gg_usage_observe(&u, GG_DIALECT_OLLAMA, e, strlen(e));
    CHECK(u.error);
}

/* The fast scan must agree with the full parse on realistic chunks from every engine we front. */
static void test_usage_fast_matches_full(void)
{
    const char *openai[] = {
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
        "\"delta\":{\"content\":\"a\\\"b\"},\"logprobs\":null,\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":null,\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"{\\\"content\\\":\\\"x\\\"}\"}}]},\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"},\"finish_reason\":null}]}",
        "{\"choices\": [ { \"index\": 0, \"delta\": { \"content\" : \"\\\\\" } } ] }",
        "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"no delta here\"}}]}",
    };
    const char *ollama[] = {
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\\\\\"},\"done\":false}",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"x\"},\"done\":false}",
        "{\"model\":\"m\",\"response\":\"\",\"context\":[1,2],\"done\":false}",
        "{\"response\":\"ok\",\"extra\":{\"response\":\"\"},\"done\":false}",
    };
    for (size_t i = 0; i < sizeof(openai) / sizeof(openai[0]); i++) {
        gg_usage_t a, b;
        gg_usage_init(&a);
        gg_usage_init(&b);
        int fast = gg_usage_observe(&a, GG_DIALECT_OPENAI, openai[i], strlen(openai[i]));
        int full = observe_full(&b, GG_DIALECT_OPENAI, openai[i], strlen(openai[i]));
        if (fast != full)
            fprintf(stderr, "openai[%zu]: fast %d full %d\n", i, fast, full);
        CHECK_EQ_INT(fast, full);
    }
    for (size_t i = 0; i < sizeof(ollama) / sizeof(ollama[0]); i++) {
        gg_usage_t a, b;
        gg_usage_init(&a);
        gg_usage_init(&b);
        int fast = gg_usage_observe(&a, GG_DIALECT_OLLAMA, ollama[i], strlen(ollama[i]));
        int full = observe_full(&b, GG_DIALECT_OLLAMA, ollama[i], strlen(ollama[i]));
        if (fast != full)
            fprintf(stderr, "ollama[%zu]: fast %d full %d\n", i, fast, full);
        CHECK_EQ_INT(fast, full);
    }
}

/* Not an assertion (timing is never asserted): prints ns per event of the hot path vs a full parse,
 * so a regression shows in the test log. */
static void bench_usage(void)
{
    const char *chunk = openai_stream[1];
    size_t len = strlen(chunk);
    enum { N = 200000 };
    struct timespec a, b, c;
    gg_usage_t u;
    gg_usage_init(&u);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < N; i++)
        gg_usage_observe(&u, GG_DIALECT_OPENAI, chunk, len);
    clock_gettime(CLOCK_MONOTONIC, &b);
    for (int i = 0; i < N / 10; i++)
        observe_full(&u, GG_DIALECT_OPENAI, chunk, len);
    clock_gettime(CLOCK_MONOTONIC, &c);
    double fast = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / N;
    double full = ((c.tv_sec - b.tv_sec) * 1e9 + (c.tv_nsec - b.tv_nsec)) / (N / 10);
    printf("usage observe: %.0f ns/event fast path, %.0f ns/event full parse (%zu-byte chunk)\n", fast, full, len);
    CHECK_EQ_INT(u.content_events, N); /* only the fast-path calls count content */

    /* SSE framing of a realistic stream */
    gg_buf_t in = GG_BUF_INIT, out = GG_BUF_INIT;
    for (int i = 0; i < 1000; i++) {
        gg_buf_append_str(&in, "data: ");
        gg_buf_append_str(&in, chunk);
        gg_buf_append_str(&in, "\n\n");
    }
    gg_stream_parser_t p;
    gg_stream_init(&p, GG_STREAM_SSE, 1 << 20);
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int r = 0; r < 100; r++)
        for (size_t off = 0; off < in.len; off += 4096)
            gg_stream_feed(&p, in.base + off, off + 4096 > in.len ? in.len - off : 4096, collect, (gg_buf_reset(&out), &out));
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("sse parse: %.0f ns/event (4 KB slices)\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 100000);
    gg_stream_dispose(&p);
    gg_buf_free(&in);
    gg_buf_free(&out);
}

TEST_MAIN(test_sse_basic, test_sse_line_endings, test_sse_limits, test_ndjson, test_usage_openai, test_usage_ollama,
          test_usage_fast_matches_full, bench_usage)
