/* The incremental HTTP/1.1 response parser of the upstream client: heads through phr_parse_response, bodies framed by
 * Content-Length, chunked (decoded in place by phr_decode_chunked) or the connection's end; 1xx interim responses
 * skipped; HEAD/204/304 without body; 101 ends the message. Pure: it only sees the bytes it is fed. */
#include <string.h>
#include <strings.h>
#include "gridgate/upstream.h"

void gg_upstream_parser_init(gg_upstream_parser_t *p, int head_request)
{
    memset(p, 0, sizeof(*p));
    p->state = GG_UP_PARSE_HEAD;
    p->head_request = head_request != 0;
}

static int name_is(const struct phr_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len != 0 && (**s == ' ' || **s == '\t')) {
        ++*s;
        --*len;
    }
    while (*len != 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        --*len;
}

/* Calls fn on each comma-separated, trimmed token of a header value. */
static void for_each_token(const char *s, size_t len, void (*fn)(void *arg, const char *tok, size_t toklen), void *arg)
{
    while (len != 0) {
        const char *comma = memchr(s, ',', len);
        size_t toklen = comma != NULL ? (size_t)(comma - s) : len;
        const char *tok = s;
        size_t tl = toklen;
        trim(&tok, &tl);
        fn(arg, tok, tl);
        if (comma == NULL)
            break;
        s = comma + 1;
        len -= toklen + 1;
    }
}

struct conn_tokens {
    int close, keepalive;
};

static void on_conn_token(void *arg, const char *tok, size_t len)
{
    struct conn_tokens *ct = arg;
    if (len == 5 && strncasecmp(tok, "close", 5) == 0)
        ct->close = 1;
    else if (len == 10 && strncasecmp(tok, "keep-alive", 10) == 0)
        ct->keepalive = 1;
}

static void on_te_token(void *arg, const char *tok, size_t len)
{
    /* only the final coding matters: chunked must be last for the body to be chunk-framed */
    *(int *)arg = len == 7 && strncasecmp(tok, "chunked", 7) == 0;
}

/* Strict: digits only (after trimming), at most 18 of them so it cannot overflow. */
static int parse_length(const char *s, size_t len, uint64_t *out)
{
    trim(&s, &len);
    if (len == 0 || len > 18)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i != len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Decides framing and keep-alive from a final response head; returns 0 or -1 when the head is unusable. */
static int on_final_head(gg_upstream_parser_t *p, const struct phr_header *h, size_t n)
{
    struct conn_tokens ct = {0, 0};
    int has_te = 0, te_chunked = 0, has_cl = 0;
    uint64_t cl = 0;

    for (size_t i = 0; i != n; ++i) {
        if (name_is(&h[i], "content-length", 14)) {
            uint64_t v;
            if (parse_length(h[i].value, h[i].value_len, &v) != 0)
                return -1;
            if (has_cl && v != cl)
                return -1; /* conflicting lengths: no safe framing */
            has_cl = 1;
            cl = v;
        } else if (name_is(&h[i], "transfer-encoding", 17)) {
            has_te = 1;
            for_each_token(h[i].value, h[i].value_len, on_te_token, &te_chunked);
        } else if (name_is(&h[i], "connection", 10)) {
            for_each_token(h[i].value, h[i].value_len, on_conn_token, &ct);
        }
    }

    p->keepalive = p->minor_version >= 1 ? !ct.close : (ct.keepalive && !ct.close);
    if (p->status == 101) {
        p->keepalive = 0;
        p->state = GG_UP_PARSE_UPGRADED;
    } else if (p->head_request || p->status == 204 || p->status == 304) {
        p->state = GG_UP_PARSE_DONE;
    } else if (has_te) {
        /* RFC 9112 6.3: Transfer-Encoding overrides Content-Length; a message carrying both is a smuggling smell, so
         * the connection is not reused after it */
        if (has_cl)
            p->keepalive = 0;
        if (te_chunked) {
            memset(&p->chunked, 0, sizeof(p->chunked));
            p->chunked.consume_trailer = 1;
            p->state = GG_UP_PARSE_BODY_CHUNKED;
        } else {
            p->keepalive = 0;
            p->state = GG_UP_PARSE_BODY_EOF;
        }
    } else if (has_cl) {
        p->content_length = cl;
        p->state = cl == 0 ? GG_UP_PARSE_DONE : GG_UP_PARSE_BODY_LENGTH;
    } else {
        p->keepalive = 0;
        p->state = GG_UP_PARSE_BODY_EOF;
    }
    return 0;
}

ssize_t gg_upstream_parse_feed(gg_upstream_parser_t *p, char *buf, size_t len, const gg_upstream_parse_callbacks_t *cb, void *ctx)
{
    size_t off = 0;
    int r = 0;

    for (;;) {
        switch (p->state) {
        case GG_UP_PARSE_HEAD: {
            if (off == len)
                return off;
            struct phr_header headers[GG_UPSTREAM_MAX_HEADERS];
            size_t num_headers = GG_UPSTREAM_MAX_HEADERS;
            const char *msg;
            size_t msg_len;
            int n = phr_parse_response(buf + off, len - off, &p->minor_version, &p->status, &msg, &msg_len, headers, &num_headers,
                                       p->last_len);
            if (n == -2) {
                if (len - off >= GG_UPSTREAM_MAX_HEAD_SIZE)
                    goto Bad;
                p->last_len = len - off;
                return off;
            }
            if (n < 0 || n > GG_UPSTREAM_MAX_HEAD_SIZE || p->status < 100)
                goto Bad;
            p->last_len = 0;
            off += n;
            if (p->status < 200 && p->status != 101)
                break; /* interim response (100 Continue, 103 Early Hints): the final one follows */
            if (on_final_head(p, headers, num_headers) != 0)
                goto Bad;
            p->head_end = off;
            r = cb->on_head(ctx, p->status, p->minor_version, headers, num_headers);
            break;
        }
        case GG_UP_PARSE_BODY_LENGTH: {
            if (off == len)
                return off;
            size_t n = len - off;
            if (n > p->content_length)
                n = (size_t)p->content_length;
            p->content_length -= n;
            if (p->content_length == 0)
                p->state = GG_UP_PARSE_DONE;
            r = cb->on_body(ctx, buf + off, n);
            off += n;
            break;
        }
        case GG_UP_PARSE_BODY_CHUNKED: {
            if (off == len)
                return off;
            size_t avail = len - off, decoded = avail;
            ssize_t left = phr_decode_chunked(&p->chunked, buf + off, &decoded);
            if (left == -1)
                goto Bad;
            size_t used = avail;
            if (left >= 0) {
                /* phr moved the bytes after the last chunk right behind the decoded data; put them back where an
                 * unconsumed byte is expected to be: at buf + the returned count */
                used = avail - (size_t)left;
                memmove(buf + off + used, buf + off + decoded, (size_t)left);
                p->state = GG_UP_PARSE_DONE;
            }
            r = decoded != 0 ? cb->on_body(ctx, buf + off, decoded) : 0;
            off += used;
            break;
        }
        case GG_UP_PARSE_BODY_EOF:
            if (off == len)
                return off;
            r = cb->on_body(ctx, buf + off, len - off);
            off = len;
            break;
        case GG_UP_PARSE_DONE:
        case GG_UP_PARSE_UPGRADED:
            return off;
        case GG_UP_PARSE_ERROR:
            return GG_UP_PARSE_BAD;
        }
        if (r < 0)
            return GG_UP_PARSE_STOPPED;
        if (r > 0)
            return off;
    }

Bad:
    p->state = GG_UP_PARSE_ERROR;
    return GG_UP_PARSE_BAD;
}

int gg_upstream_parse_eof(gg_upstream_parser_t *p)
{
    if (p->state == GG_UP_PARSE_BODY_EOF) {
        p->state = GG_UP_PARSE_DONE;
        return 0;
    }
    return p->state == GG_UP_PARSE_DONE || p->state == GG_UP_PARSE_UPGRADED ? 0 : -1;
}
