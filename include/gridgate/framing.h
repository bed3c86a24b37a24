/* What libh2o 2.2.5 decides on its own before gridgate's handler runs, put right: a request head whose body
 * framing is ambiguous (h2o silently prefers Transfer-Encoding over Content-Length, and the first of two
 * Content-Lengths), and the plain-text errors h2o answers itself (413, 400 on broken framing, 417), which are
 * rewritten into the caller's dialect on /v1/ and /api/ paths. */
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
#endif
