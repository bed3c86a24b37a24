/* Framing checks on raw HTTP/1 request heads, and the output filter that puts h2o's own error answers into the
 * caller's dialect (see gridgate/framing.h). */
#include "gridgate/framing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gridgate/dialect.h"
#include "gridgate/picohttpparser.h"
#include "gridgate/respond.h"

/* The header's value with surrounding blanks removed, when line starts with name followed by ':'. */
static int header_value(const char *line, size_t len, const char *name, const char **v, size_t *vlen)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return 0;
    const char *p = line + n + 1, *e = line + len;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *v = p, *vlen = (size_t)(e - p);
    return 1;
}

const char *gg_http1_framing_conflict(const char *head, size_t len)
{
    const char *p = head, *end = head + len, *cl = NULL, *v;
    size_t cl_len = 0, vlen;
    int te = 0;
    const char *nl = memchr(p, '\n', len); /* the request line names no headers */
    p = nl ? nl + 1 : end;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = (size_t)((nl ? nl : end) - p);
        if (header_value(p, ll, "transfer-encoding", &v, &vlen)) {
            te = 1;
        } else if (header_value(p, ll, "content-length", &v, &vlen)) {
            if (cl != NULL && (vlen != cl_len || memcmp(v, cl, vlen) != 0))
                return "two Content-Length headers with different values";
            cl = v, cl_len = vlen;
        }
        p = nl ? nl + 1 : end;
    }
    if (te && cl != NULL)
        return "both Content-Length and Transfer-Encoding are present (ambiguous request framing)";
    return NULL;
}

const char *gg_framing_check_request(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->entity.base == NULL)
        return NULL;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->input == NULL)
        return NULL;
    /* h2o reads the body in place behind the head (a chunked body is decoded in place too) and consumes the
     * previous request before parsing the next, so the head is [input->bytes, entity.base). */
    const char *start = sock->input->bytes;
    if (req->entity.base < start || req->entity.base > start + sock->input->size)
        return NULL;
    return gg_http1_framing_conflict(start, (size_t)(req->entity.base - start));
}

/* --- h2o's own error answers -------------------------------------------------------------------------- */
typedef struct {
    h2o_ostream_t super;
    h2o_iovec_t body;
} dialect_ostream_t;

static void on_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    dialect_ostream_t *o = (dialect_ostream_t *)self;
    /* h2o's body (one buffer, or none for HEAD) is replaced by ours in a single final send. */
    if (!h2o_send_state_is_in_progress(state) && bufcnt != 0) {
        h2o_ostream_send_next(self, req, &o->body, 1, state);
        return;
    }
    h2o_ostream_send_next(self, req, NULL, 0, state);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2o_iovec_t path = req->input.path;
    int ollama = path.len >= 5 && memcmp(path.base, "/api/", 5) == 0;
    int openai = path.len >= 4 && memcmp(path.base, "/v1/", 4) == 0;
    if (req->res.status < 400 || !(ollama || openai)) {
        h2o_setup_next_ostream(req, slot);
        return;
    }
    char msg[160];
    const char *code = "invalid_request";
    switch (req->res.status) {
    case 413:
        snprintf(msg, sizeof(msg), "request body is larger than the limit of %zu bytes",
                 req->conn->ctx->globalconf->max_request_entity_size);
        code = "request_too_large";
        break;
    case 417:
        snprintf(msg, sizeof(msg), "unknown Expect header: only 100-continue is supported");
        code = "expectation_failed";
        break;
    default:
        snprintf(msg, sizeof(msg), "invalid request framing: broken chunked encoding, Content-Length or Transfer-Encoding");
        code = "invalid_framing";
        break;
    }
    size_t len;
    char *json =
        gg_dialect_error_body(ollama ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI, msg, "invalid_request_error", code, NULL, &len);
    dialect_ostream_t *o = (void *)h2o_add_ostream(req, sizeof(*o), slot);
    o->super.do_send = on_send;
    o->body = h2o_strdup(&req->pool, json, len);
    free(json);
    req->res.reason = gg_status_reason(req->res.status);
    req->res.content_length = len;
    memset(&req->res.headers, 0, sizeof(req->res.headers));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_setup_next_ostream(req, &o->super.next);
}

void gg_framing_register(h2o_hostconf_t *host)
{
    h2o_filter_t *f = h2o_create_filter(&host->fallback_path, sizeof(*f));
    f->on_setup_ostream = on_setup_ostream;
}

/* --- a connection's first request head, read before h2o parses it ------------------------------------- */

/* The request line's path when it has one: the second space-separated word, if it starts with '/'. */
static h2o_iovec_t request_path(const char *buf, size_t len)
{
    const char *eol = memchr(buf, '\n', len), *end = eol ? eol : buf + len;
    const char *p = memchr(buf, ' ', (size_t)(end - buf));
    if (p == NULL || p + 1 >= end || p[1] != '/')
        return h2o_iovec_init(NULL, 0);
    const char *e = ++p;
    while (e < end && *e != ' ' && *e != '\r')
        e++;
    return h2o_iovec_init(p, (size_t)(e - p));
}

/* Header lines received so far: complete lines after the request line, up to the blank line that ends the head.
 * picohttpparser fails on the 101st header line even before the head has ended. */
static long header_lines(const char *buf, size_t len)
{
    const char *p = memchr(buf, '\n', len), *end = buf + len;
    long n = 0;
    while (p != NULL && ++p < end) {
        if (*p == '\n' || (*p == '\r' && p + 1 < end && p[1] == '\n'))
            break;
        p = memchr(p, '\n', (size_t)(end - p));
        n += p != NULL;
    }
    return n;
}

int gg_http1_head_check(const char *buf, size_t len, gg_head_refusal_t *r)
{
    const char *method, *path;
    size_t method_len, path_len, num_headers = H2O_MAX_HEADERS;
    int minor;
    struct phr_header headers[H2O_MAX_HEADERS];
    size_t inreqlen = len < H2O_MAX_REQLEN ? len : H2O_MAX_REQLEN; /* all h2o looks at, as in its lib/http1.c */
    int rc = phr_parse_request(buf, inreqlen, &method, &method_len, &path, &path_len, &minor, headers, &num_headers, 0);
    if (rc > 0)
        return 1;
    if (rc == -2 && inreqlen < H2O_MAX_REQLEN)
        return 0;
    r->path = request_path(buf, inreqlen);
    if (rc == -2) {
        r->status = 431;
        r->message = "request head too large: at most 417,792 bytes of request line and headers";
    } else if (header_lines(buf, inreqlen) > H2O_MAX_HEADERS) {
        r->status = 431;
        r->message = "too many header fields: at most 100";
    } else {
        r->status = 400;
        r->message = "malformed request head: the request line or a header line does not parse";
    }
    return -1;
}

typedef struct {
    h2o_accept_ctx_t *accept_ctx;
    h2o_socket_t *sock;
    h2o_timeout_entry_t timeout;
    char *answer; /* a refusal being written */
} first_head_t;

static void first_head_end(first_head_t *fh, int close)
{
    h2o_socket_t *sock = fh->sock;
    if (h2o_timeout_is_linked(&fh->timeout))
        h2o_timeout_unlink(&fh->timeout);
    sock->data = NULL;
    free(fh->answer);
    free(fh);
    if (close)
        h2o_socket_close(sock);
}

static void on_first_head_timeout(h2o_timeout_entry_t *e)
{
    first_head_end(H2O_STRUCT_FROM_MEMBER(first_head_t, timeout, e), 1);
}

static void on_refusal_written(h2o_socket_t *sock, const char *err)
{
    (void)err;
    first_head_end(sock->data, 1);
}

static void on_first_head_read(h2o_socket_t *sock, const char *err)
{
    first_head_t *fh = sock->data;
    if (err != NULL) {
        first_head_end(fh, 1);
        return;
    }
    gg_head_refusal_t r;
    int verdict = gg_http1_head_check(sock->input->bytes, sock->input->size, &r);
    if (verdict == 0)
        return;
    if (verdict == 1) {
        /* h2o parses what is already in the input buffer at once, as it does a pipelined request */
        h2o_accept_ctx_t *ctx = fh->accept_ctx;
        h2o_socket_read_stop(sock);
        first_head_end(fh, 0);
        h2o_accept(ctx, sock);
        return;
    }
    h2o_socket_read_stop(sock);
    size_t blen;
    char *body = gg_dialect_error_body(gg_dialect_of_path(r.path), r.message, "invalid_request_error",
                                       r.status == 431 ? "request_header_fields_too_large" : "invalid_request", NULL, &blen);
    size_t cap = blen + 200;
    fh->answer = malloc(cap);
    if (fh->answer == NULL)
        h2o_fatal("no memory");
    int n = snprintf(fh->answer, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     r.status, gg_status_reason(r.status), blen, body);
    free(body);
    h2o_iovec_t buf = h2o_iovec_init(fh->answer, (size_t)n);
    h2o_socket_write(sock, &buf, 1, on_refusal_written);
}

void gg_framing_accept(h2o_accept_ctx_t *ctx, h2o_socket_t *sock)
{
    if (ctx->ssl_ctx != NULL || ctx->expect_proxy_line) {
        h2o_accept(ctx, sock);
        return;
    }
    first_head_t *fh = calloc(1, sizeof(*fh));
    if (fh == NULL)
        h2o_fatal("no memory");
    fh->accept_ctx = ctx;
    fh->sock = sock;
    fh->timeout.cb = on_first_head_timeout;
    sock->data = fh;
    h2o_timeout_link(ctx->ctx->loop, &ctx->ctx->http1.req_timeout, &fh->timeout);
    h2o_socket_read_start(sock, on_first_head_read);
}
