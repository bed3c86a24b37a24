/* Fuzzes the streaming translator (dataplane/dialect_stream.c) both ways and the response mapping:
 * byte 0 picks upstream dialect, client dialect, endpoint and include_usage; the rest is split on
 * newlines into upstream events. Whatever comes in, every byte written for the client must frame
 * into events that are valid JSON (or [DONE]), and the stream must end properly after an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/dialect.h"
#include "gridgate/stream.h"

static void check_event(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return;
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j))
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum gg_dialect from = data[0] & 1 ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
    enum gg_dialect to = data[0] & 2 ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
    enum gg_endpoint ep = data[0] & 4 ? GG_EP_COMPLETION : GG_EP_CHAT;
    int include_usage = (data[0] >> 3) & 1;
    const char *s = (const char *)data + 1, *end = (const char *)data + size;
    gg_xlate_t x;
    gg_buf_t out = GG_BUF_INIT;

    gg_xlate_init(&x, from, to, ep, "fuzz", include_usage);
    while (s < end) {
        const char *nl = memchr(s, '\n', end - s);
        size_t n = (nl != NULL ? nl : end) - s;
        if (gg_xlate_event(&x, s, n, &out) != 0)
            gg_xlate_error(&x, "upstream sent invalid JSON", &out);
        /* non-streaming mapping of the same event, as if it were a whole upstream body */
        json_t *j = json_loadb(s, n, 0, NULL);
        if (j != NULL) {
            json_t *r = gg_dialect_response(from, to, (enum gg_endpoint)(data[0] >> 4) % 4, j, "fuzz", include_usage);
            json_decref(r);
            json_decref(j);
        }
        s += n + 1;
    }
    gg_xlate_error(&x, "end", &out);
    if (!x.finished)
        abort();
    gg_stream_parser_t p;
    gg_stream_init(&p, to == GG_DIALECT_OPENAI ? GG_STREAM_SSE : GG_STREAM_NDJSON, 1 << 24);
    /* same-dialect passthrough forwards upstream bytes as they are, so only translated output is checked */
    if (from != to) {
        gg_stream_feed(&p, out.base != NULL ? out.base : "", out.len, check_event, NULL);
        gg_stream_finish(&p, check_event, NULL);
    }
    gg_stream_dispose(&p);
    gg_buf_free(&out);
    gg_xlate_dispose(&x);
    return 0;
}
