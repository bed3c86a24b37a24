/* libFuzzer target for the stream-tail readers of dataplane/splice.c and control/bpf.c: any bytes as a spliced stream's
 * last bytes (framed, cut anywhere by the ring) through gg_splice_tail_events (each line it hands on lies inside the
 * input and is non-empty) and into gg_usage_observe for both dialects, as the proxy does; and gg_bpf_stream_tail_ends. */
#include "gridgate/bpf.h"
#include "gridgate/splice.h"
#include "gridgate/stream.h"

#include <stdint.h>
#include <string.h>

struct ctx {
    const char *base;
    size_t len;
    gg_usage_t u[2];
};

static void on_line(void *p, const char *s, size_t n)
{
    struct ctx *c = p;
    if (n == 0 || s < c->base || s + n > c->base + c->len)
        __builtin_trap();
    gg_usage_observe(&c->u[0], GG_DIALECT_OPENAI, s, n);
    gg_usage_observe(&c->u[1], GG_DIALECT_OLLAMA, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {(const char *)data, size};
    gg_usage_init(&c.u[0]);
    gg_usage_init(&c.u[1]);
    gg_splice_tail_events((const char *)data, size, 0, on_line, &c);
    gg_splice_tail_events((const char *)data, size, 1, on_line, &c);
    for (uint32_t f = 0; f < 4; f++)
        gg_bpf_stream_tail_ends((const char *)data, size, f);
    return 0;
}
