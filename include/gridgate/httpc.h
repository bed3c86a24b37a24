/* A small BLOCKING HTTP/1.1 client with one overall deadline, for health probes, gridctl and the agent.
 * Not for the request path: it blocks the calling thread. One request per connection (it sends
 * `Connection: close`), so bodies may be Content-Length, chunked or close-delimited. */
#ifndef GG_HTTPC_H
#define GG_HTTPC_H
#include <stddef.h>

/* Body cap when the caller leaves res->max_body at 0. */
#define GG_HTTPC_DEFAULT_MAX_BODY (16u << 20)

typedef struct gg_httpc_response {
    /* in: 0 picks GG_HTTPC_DEFAULT_MAX_BODY; a larger body fails the request with -EMSGSIZE */
    size_t max_body;
    /* out */
    int status;
    char *head; /* status line + header lines as received, NUL-terminated (malloc'd) */
    size_t head_len;
    char *body; /* decoded body, NUL-terminated (malloc'd; "" when empty) */
    size_t body_len;
} gg_httpc_response_t;

/**
 * Sends one request and reads the whole response within timeout_ms (connect + send + receive).
 * target: "http://HOST:PORT[/prefix]", "HOST:PORT" or "unix:/path/to.sock"; a URL prefix is prepended to path.
 * headers: extra header lines, each ending in "\r\n" (or NULL). Host, Connection and Content-Length
 * (when body != NULL) are added. Returns 0 with *res filled (any status), or -errno: -EINVAL bad target,
 * -EPROTONOSUPPORT https, -ECONNREFUSED etc. from connect, -ETIMEDOUT, -EPROTO malformed response,
 * -EMSGSIZE body over the cap. Names are resolved with getaddrinfo (not bounded by the deadline).
 * On error *res holds nothing to free; on success free it with gg_httpc_response_free.
 */
int gg_httpc_request(const char *target, const char *method, const char *path, const char *headers, const char *body,
                     size_t body_len, int timeout_ms, gg_httpc_response_t *res);
/** Shorthand for a GET without extra headers. */
int gg_httpc_get(const char *target, const char *path, int timeout_ms, gg_httpc_response_t *res);
void gg_httpc_response_free(gg_httpc_response_t *res);
/** Value of the first header called name (case-insensitive), copied into buf; returns its length or -ENOENT. */
int gg_httpc_header(const gg_httpc_response_t *res, const char *name, char *buf, size_t buflen);

/** Splits a target as gg_httpc_request accepts it. host gets the host (no brackets) or the unix path.
 * Returns 0 or -EINVAL / -EPROTONOSUPPORT. *is_unix is set for "unix:" targets; prefix is "" or "/x". */
int gg_httpc_parse_target(const char *target, char *host, size_t hostlen, unsigned *port, char *prefix, size_t prefixlen,
                          int *is_unix);
/** A short description of a gg_httpc_request error ("connect refused", "timeout", ...). */
const char *gg_httpc_strerror(int err);
#endif
