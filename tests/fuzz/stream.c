/* Fuzzes common/stream.c: SSE and NDJSON framing plus the usage observer. Input byte 0 picks the
 * framing and the event limit, byte 1 the slice size. Checks that any slicing yields exactly the
 * events of a whole feed, and that the fast usage scan never crashes on what the parser reports.
 * Differential: every payload (and the whole input as one non-stream body) read by the validating
 * usage scanner gives the same events and usage as the jansson reading whenever the scanner decides. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/stream.h"

struct events {
    gg_buf_t all;
    gg_usage_t u[2];
};

static void differential(const char *data, size_t len)
{
    for (int d = 0; d < 2; d++) {
        gg_usage_t a, b;
        gg_usage_init(&a);
        gg_usage_init(&b);
        int ea = gg_usage_observe_scan(&a, (enum gg_dialect)d, data, len);
        int eb = gg_usage_observe_tree(&b, (enum gg_dialect)d, data, len);
        if (ea >= 0 && (ea != eb || memcmp(&a, &b, sizeof(a)) != 0))
            abort();
    }
}

static void on_event(void *ctx, const char *data, size_t len)
{
    struct events *e = ctx;
    differential(data, len);
    gg_buf_appendf(&e->all, "%zu:", len);
    gg_buf_append(&e->all, data, len);
    gg_usage_observe(&e->u[0], GG_DIALECT_OPENAI, data, len);
    gg_usage_observe(&e->u[1], GG_DIALECT_OLLAMA, data, len);
}

static int run(enum gg_stream_kind kind, size_t max, const uint8_t *data, size_t size, size_t step, struct events *e)
{
    gg_stream_parser_t p;
    int r = 0;
    gg_stream_init(&p, kind, max);
    memset(e, 0, sizeof(*e));
    gg_usage_init(&e->u[0]);
    gg_usage_init(&e->u[1]);
    for (size_t off = 0; off < size && r == 0; off += step)
        r = gg_stream_feed(&p, (const char *)data + off, off + step > size ? size - off : step, on_event, e);
    if (r == 0)
        r = gg_stream_finish(&p, on_event, e);
    gg_stream_dispose(&p);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum gg_stream_kind kind = data[0] & 1 ? GG_STREAM_NDJSON : GG_STREAM_SSE;
    size_t max = (data[0] & 0x80) ? 1 << 20 : (size_t)(data[0] >> 1) + 1;
    size_t step = data[1] % 17 + 1;
    differential((const char *)data + 2, size - 2);
    struct events whole, split;
    int r1 = run(kind, max, data + 2, size - 2, size, &whole);
    int r2 = run(kind, max, data + 2, size - 2, step, &split);
    if (r1 != r2 || whole.all.len != split.all.len ||
        (whole.all.len != 0 && memcmp(whole.all.base, split.all.base, whole.all.len) != 0))
        abort();
    if (memcmp(&whole.u, &split.u, sizeof(whole.u)) != 0)
        abort();
    gg_buf_free(&whole.all);
    gg_buf_free(&split.all);
    return 0;
}
