/* Fuzzes the upstream response parser (dataplane/upstream_parse.c) differentially: byte 0 says whether the request
 * was HEAD and seeds how the rest is cut into reads. The same bytes fed whole and fed in pieces (the unconsumed tail
 * kept in front of the next piece, as the socket layer does) must give the same outcome, head and body (except for a
 * malformed head that never ends, see below); consumed
 * counts must stay within what was fed, and a finished message must consume nothing more. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "gridgate/upstream.h"

struct outcome {
    int heads, status;
    uint64_t body_len, body_hash;
    ssize_t rc;
    enum gg_upstream_parse_state state;
    size_t leftover;
    int eof_rc;
};

static int on_head(void *ctx, int status, int minor, const struct phr_header *h, size_t n)
{
    struct outcome *o = ctx;
    o->heads++;
    o->status = status;
    for (size_t i = 0; i != n; ++i) /* touch every byte: ASan checks they are inside the buffer */
        for (size_t j = 0; j != h[i].name_len; ++j)
            o->body_hash += (uint8_t)h[i].name[j];
    return 0;
}

static int on_body(void *ctx, const char *buf, size_t len)
{
    struct outcome *o = ctx;
    for (size_t i = 0; i != len; ++i)
        o->body_hash = o->body_hash * 31 + (uint8_t)buf[i];
    o->body_len += len;
    return 0;
}

static const gg_upstream_parse_callbacks_t cbs = {on_head, on_body};

static void run(const uint8_t *src, size_t len, int head_req, uint32_t seed, struct outcome *o)
{
    char *win = malloc(len + 1);
    size_t wlen = 0, fed = 0;
    gg_upstream_parser_t p;

    memset(o, 0, sizeof(*o));
    gg_upstream_parser_init(&p, head_req);
    for (;;) {
        size_t add = len - fed;
        if (seed != 0) {
            seed = seed * 1103515245 + 12345;
            size_t piece = 1 + (seed >> 16) % 97;
            if (piece < add)
                add = piece;
        }
        memcpy(win + wlen, src + fed, add);
        wlen += add;
        fed += add;
        ssize_t n = gg_upstream_parse_feed(&p, win, wlen, &cbs, o);
        if (n < 0) {
            o->rc = n;
            break;
        }
        if ((size_t)n > wlen)
            abort();
        memmove(win, win + n, wlen - (size_t)n);
        wlen -= (size_t)n;
        if (p.state == GG_UP_PARSE_DONE || p.state == GG_UP_PARSE_UPGRADED) {
            if (gg_upstream_parse_feed(&p, win, wlen, &cbs, o) != 0)
                abort();
            break;
        }
        if (fed == len && n == 0)
            break;
    }
    o->state = p.state;
    o->leftover = wlen + (len - fed);
    if (o->rc == 0)
        o->eof_rc = gg_upstream_parse_eof(&p);
    free(win);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int head_req = data[0] & 1;
    uint32_t seed = data[0] | 0x100;
    struct outcome whole, pieces;

    run(data + 1, size - 1, head_req, 0, &whole);
    run(data + 1, size - 1, head_req, seed, &pieces);
    /* phr_parse_response, given last_len, only looks for the end of the head before parsing it, so a malformed head
     * that never ends may be refused by one run and still awaited by the other: both are right */
    if (whole.heads == 0 && pieces.heads == 0 &&
        ((whole.rc == GG_UP_PARSE_BAD && pieces.rc == 0 && pieces.state == GG_UP_PARSE_HEAD) ||
         (pieces.rc == GG_UP_PARSE_BAD && whole.rc == 0 && whole.state == GG_UP_PARSE_HEAD)))
        return 0;
    if (whole.rc != pieces.rc || whole.heads != pieces.heads || whole.status != pieces.status || whole.state != pieces.state ||
        whole.eof_rc != pieces.eof_rc)
        abort();
    if (whole.rc == 0 &&
        (whole.body_len != pieces.body_len || whole.body_hash != pieces.body_hash || whole.leftover != pieces.leftover))
        abort();
    if (whole.body_len > size)
        abort();
    return 0;
}
