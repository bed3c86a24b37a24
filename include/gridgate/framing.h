/* What libh2o 2.2.5 decides on its own before gridgate's handler runs, put right: a request head whose body
 * framing is ambiguous (h2o silently prefers Transfer-Encoding over Content-Length, and the first of two
 * Content-Lengths), the plain-text errors h2o answers itself (413, 400 on broken framing, 417), which are
 * rewritten into the caller's dialect on /v1/ and /api/ paths, and the fixed 400 h2o writes straight to the socket
 * for a head it cannot parse, which gridgate answers first on a connection's first request. */
#ifndef GG_FRAMING_H
#define GG_FRAMING_H

#include <h2o.h>
#include <stddef.h>

/**
 * Scans a raw HTTP/1 request head (request line, header lines, up to and including the blank line) for framing
 * that two HTTP parsers could read differently: Content-Length together with Transfer-Encoding, or two
 * Content-Length headers with different values. Returns NULL when the framing is unambiguous, else a static
 * message for the 400.
 */
const char *gg_http1_framing_conflict(const char *head, size_t len);
/**
 * The same for a request h2o has parsed: for an HTTP/1 request with a body, the head is still at the start of
 * the client socket's input buffer, right before the body. NULL when clean (or not HTTP/1, or no body).
 */
const char *gg_framing_check_request(h2o_req_t *req);
/** Registers the filter that rewrites h2o's own error answers (host's fallback path) into the caller's dialect. */
void gg_framing_register(h2o_hostconf_t *host);

/** What gg_http1_head_check says of the bytes a connection has sent so far. */
typedef struct gg_head_refusal {
    int status;          /* 431 (too many header lines, or the head over h2o's size limit) or 400 (does not parse) */
    const char *message; /* static */
    h2o_iovec_t path;    /* the request line's path, for the dialect (empty when there is none) */
} gg_head_refusal_t;
/**
 * Checks the start of a connection's input the way h2o 2.2.5 will parse it (picohttpparser, at most
 * H2O_MAX_HEADERS header lines, at most H2O_MAX_REQLEN bytes). Returns 1 when the head is complete and h2o can parse
 * it, 0 when more bytes are needed, -1 when h2o would answer it with its fixed plain-text 400 (then `r` says what
 * to answer instead).
 */
int gg_http1_head_check(const char *buf, size_t len, gg_head_refusal_t *r);
/**
 * h2o_accept, except that on a cleartext connection gridgate first reads the first request head itself, within h2o's
 * request timeout, and answers a head h2o would refuse (gg_http1_head_check) in the caller's dialect. A later
 * request on the same connection is h2o's alone.
 */
void gg_framing_accept(h2o_accept_ctx_t *ctx, h2o_socket_t *sock);
#endif
