/* gridgate's own HTTP/1.1 client towards inference engines: a per-(thread, backend) keep-alive pool on h2o
 * evloop sockets (dataplane/upstream.c) and the pure incremental response parser it uses
 * (dataplane/upstream_parse.c). h2o's http1client/socketpool are not used: they export and re-import every
 * pooled socket, have one timeout for all phases and no back-pressure (see H2O-NOTES.md). */
#ifndef GG_UPSTREAM_H
#define GG_UPSTREAM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <h2o/socket.h>
#include "gridgate/picohttpparser.h"

/* ---------------------------------------------------------------------------------------------------------------------
 * Response parser (pure: no sockets, no allocation; fuzzed by tests/fuzz/upstream_parse.c)
 * ------------------------------------------------------------------------------------------------------------------- */

/** Heads larger than this, or with more headers than GG_UPSTREAM_MAX_HEADERS, are a bad response. */
#define GG_UPSTREAM_MAX_HEAD_SIZE (64 * 1024)
#define GG_UPSTREAM_MAX_HEADERS 100

enum gg_upstream_parse_state {
    GG_UP_PARSE_HEAD,         /* waiting for (the rest of) a status line and headers */
    GG_UP_PARSE_BODY_LENGTH,  /* Content-Length body */
    GG_UP_PARSE_BODY_CHUNKED, /* chunked body, decoded in place */
    GG_UP_PARSE_BODY_EOF,     /* body delimited by the server closing the connection */
    GG_UP_PARSE_DONE,         /* whole message seen; bytes after it are not part of it */
    GG_UP_PARSE_UPGRADED,     /* 101 seen; bytes after the head belong to the new protocol */
    GG_UP_PARSE_ERROR
};

/** Return values of gg_upstream_parse_feed besides a byte count. */
#define GG_UP_PARSE_BAD (-1)     /* malformed or oversized response */
#define GG_UP_PARSE_STOPPED (-2) /* a callback returned < 0 */

typedef struct gg_upstream_parse_callbacks {
    /** Final (non-1xx, or 101) response head. Return 0 to go on, 1 to make feed return right after this event, <0 to
     * abort (feed returns GG_UP_PARSE_STOPPED). Headers point into the fed buffer. */
    int (*on_head)(void *ctx, int status, int minor_version, const struct phr_header *headers, size_t num_headers);
    /** De-chunked body bytes. Same return convention as on_head. */
    int (*on_body)(void *ctx, const char *buf, size_t len);
} gg_upstream_parse_callbacks_t;

typedef struct gg_upstream_parser {
    enum gg_upstream_parse_state state;
    uint8_t head_request; /* the request was HEAD: no body whatever the headers say */
    uint8_t keepalive;    /* valid from on_head: the server lets us reuse the connection after this message */
    int status, minor_version;
    size_t last_len;         /* bytes phr_parse_response already looked at (incremental head parsing) */
    size_t head_end;         /* offset in the buffer being fed right after the final head (valid in on_head) */
    uint64_t content_length; /* bytes of body left in GG_UP_PARSE_BODY_LENGTH */
    struct phr_chunked_decoder chunked;
} gg_upstream_parser_t;

/** Prepares a parser for one response; `head_request` is nonzero when the request method was HEAD. */
void gg_upstream_parser_init(gg_upstream_parser_t *p, int head_request);
/**
 * Feeds `len` bytes that follow whatever was consumed before. Bytes of an incomplete head are not consumed: feed them
 * again, with more appended, next time. `buf` is modified (chunked bodies are decoded in place).
 * Returns the number of bytes consumed (the message's bytes; anything after a complete message stays at buf+ret),
 * GG_UP_PARSE_BAD or GG_UP_PARSE_STOPPED. Check `state` for GG_UP_PARSE_DONE / GG_UP_PARSE_UPGRADED afterwards.
 */
ssize_t gg_upstream_parse_feed(gg_upstream_parser_t *p, char *buf, size_t len, const gg_upstream_parse_callbacks_t *cb, void *ctx);
/** The server closed the connection: returns 0 if that completes the message (close-delimited body), else -1. */
int gg_upstream_parse_eof(gg_upstream_parser_t *p);

/* ---------------------------------------------------------------------------------------------------------------------
 * Connection pool and requests
 * ------------------------------------------------------------------------------------------------------------------- */

/** One per (worker thread, backend); not thread-safe; create, use and destroy it on the thread running `loop`. */
typedef struct gg_upstream_pool gg_upstream_pool_t;

/** SO_RCVBUF set on every upstream socket unless changed with gg_upstream_pool_set_rcvbuf: small enough that pausing
 * a stream stops the engine within ~this many bytes, large enough not to cost throughput on a LAN. */
#define GG_UPSTREAM_DEFAULT_RCVBUF (128 * 1024)

/**
 * `host` is an IPv4/IPv6 literal or a name, resolved once here (blocking getaddrinfo). `max_idle` keep-alive
 * connections are kept; `max_conns` caps every connection open at once (0 = unlimited): a request that would need one
 * more fails with gg_upstream_err_pool_full. Returns NULL with errno set (ENOENT: name not resolved).
 */
gg_upstream_pool_t *gg_upstream_pool_create(h2o_loop_t *loop, const char *host, uint16_t port, size_t max_idle, size_t max_conns);
/** Closes the idle connections. Requests still in flight go on to their end on their own connections, which are then
 * closed, and the pool's memory goes with the last of them. No request may be sent on it afterwards. */
void gg_upstream_pool_destroy(gg_upstream_pool_t *pool);
/** SO_RCVBUF for connections opened from now on; 0 leaves the kernel's autotuning. */
void gg_upstream_pool_set_rcvbuf(gg_upstream_pool_t *pool, int bytes);

typedef struct gg_upstream_pool_stats {
    size_t conns;     /* open: connecting, busy or idle */
    size_t idle;      /* idle keep-alive connections */
    uint64_t opened;  /* connections opened so far */
    uint64_t reused;  /* requests sent on a kept-alive connection */
    uint64_t retried; /* requests retried on a fresh connection after a stale keep-alive one failed */
} gg_upstream_pool_stats_t;
void gg_upstream_pool_get_stats(gg_upstream_pool_t *pool, gg_upstream_pool_stats_t *stats);

/** Per-phase limits in milliseconds; 0 disables that one. */
typedef struct gg_upstream_timeouts {
    uint32_t connect_ms;    /* connect() to established */
    uint32_t first_byte_ms; /* request written to the first response byte (also bounds the write itself) */
    uint32_t idle_ms;       /* gap between two reads once the response has started */
} gg_upstream_timeouts_t;

/** How far a failed request got. Before GG_UP_BODY the caller has not seen on_head, so nothing reached its client. */
enum gg_upstream_phase { GG_UP_CONNECT, GG_UP_WRITE, GG_UP_HEAD, GG_UP_BODY };

/* Interned error strings, compared by pointer (h2o style). */
extern const char gg_upstream_err_refused[]; /* connect failed (refused, unreachable) */
extern const char gg_upstream_err_connect_timeout[];
extern const char gg_upstream_err_first_byte_timeout[];
extern const char gg_upstream_err_idle_timeout[];
extern const char gg_upstream_err_reset[];        /* I/O error: connection reset, broken pipe */
extern const char gg_upstream_err_closed[];       /* EOF before the message was complete */
extern const char gg_upstream_err_bad_response[]; /* unparsable, oversized head, bad chunk */
extern const char gg_upstream_err_pool_full[];

typedef struct gg_upstream_callbacks {
    /** Final response head (1xx other than 101 are skipped); headers are valid only during the call.
     * Return 0 to go on, -1 to cancel (as gg_upstream_cancel: the connection is closed, no further callback). */
    int (*on_head)(void *ctx, int status, int minor_version, const struct phr_header *headers, size_t num_headers);
    /** De-chunked body bytes, valid only during the call. Return 0, or -1 to cancel. */
    int (*on_body)(void *ctx, const char *buf, size_t len);
    /** Whole response received; the connection already went back to the pool (or was closed). The req is freed. */
    void (*on_end)(void *ctx);
    /** Failure; `phase` says how far it got. The req is freed. */
    void (*on_error)(void *ctx, const char *err, enum gg_upstream_phase phase);
} gg_upstream_callbacks_t;

typedef struct gg_upstream_req gg_upstream_req_t;

/**
 * Sends one request. `head` is the full request head built by the caller ("POST /v1/chat/completions HTTP/1.1\r\n
 * Host: ..\r\nContent-Length: N\r\n\r\n") and is copied. `body` (may be empty) is NOT copied: it must stay valid until
 * on_end/on_error or gg_upstream_cancel (a retry may send it again). `t` is copied; `cb` must outlive the request.
 * Callbacks are never called from inside gg_upstream_send (errors found here are delivered on the next loop turn).
 *
 * A kept-alive connection that the server closed while idle is noticed by the read event it raises and dropped. If the
 * server closes one just as it is reused, the request fails on it with 0 response bytes read; then, and only then, it
 * is sent once more on a fresh connection: a server closing an idle connection does so without processing a request
 * on it, and with 0 bytes back nothing can have reached our caller. Timeouts are never retried (the engine may be
 * working on the request).
 *
 * Callbacks may call gg_upstream_pause/resume/cancel/take_socket on their own req (not from on_end/on_error: the req
 * is gone by then). As in any h2o program, SIGPIPE must be ignored: h2o's writes do not use MSG_NOSIGNAL.
 */
gg_upstream_req_t *gg_upstream_send(gg_upstream_pool_t *pool, h2o_iovec_t head, h2o_iovec_t body, const gg_upstream_timeouts_t *t,
                                    const gg_upstream_callbacks_t *cb, void *ctx);
/** Stops reading from the engine (back-pressure from a slow client); the idle timeout is suspended meanwhile. */
void gg_upstream_pause(gg_upstream_req_t *req);
/** Starts reading again; bytes already buffered are delivered from the loop, never from inside this call. */
void gg_upstream_resume(gg_upstream_req_t *req);
/** Closes the connection now (the engine sees EOF and can stop generating) and frees the req; no callback after. */
void gg_upstream_cancel(gg_upstream_req_t *req);
/**
 * After on_head reported 101 (from inside on_head or later): takes the raw socket out of the client for a tunnel.
 * The socket is not reading, its `data` is NULL, and the pool no longer counts it. `*pending` receives the bytes
 * already read past the head: they are `sock->input`'s current contents (consume them from there once used).
 * The req is finished (freed; no more callbacks). Returns NULL if the response was not a 101.
 */
h2o_socket_t *gg_upstream_take_socket(gg_upstream_req_t *req, h2o_iovec_t *pending);

/* ---------------------------------------------------------------------------------------------------------------------
 * Splicing a streamed response (dataplane/splice.c)
 * ------------------------------------------------------------------------------------------------------------------- */

/** A pooled connection lent out while its response body is relayed by someone else (the kernel). */
typedef struct gg_upstream_conn gg_upstream_conn_t;

typedef struct gg_upstream_detached {
    h2o_socket_t *sock; /* not reading, data NULL; sock->input holds the raw (still framed) body bytes after the head */
    uint32_t flow;      /* its BPF flow slot (it joined the sockhash at connect) */
    uint64_t rx_total;  /* bytes read from it so far, head and input included */
    int chunked;        /* the body is chunked (else delimited by the server's close) */
    int keepalive;      /* the connection may be reused once the body has fully arrived */
} gg_upstream_detached_t;

/**
 * From inside on_head only, for a connection that joined the sockhash and a chunked or close-delimited body: takes the
 * connection out of the req (which ends: no more callbacks, freed once on_head returns; return 0 from on_head). The
 * pool still counts the connection until gg_upstream_conn_release. NULL when not possible (nothing changed).
 */
gg_upstream_conn_t *gg_upstream_detach(gg_upstream_req_t *req, gg_upstream_detached_t *out);
/** 1 when gg_upstream_detach would succeed now. */
int gg_upstream_detachable(gg_upstream_req_t *req);
/** The borrower read n more bytes from the socket (keeps the arm base exact for a later splice on it). */
void gg_upstream_conn_read(gg_upstream_conn_t *conn, size_t n);
/** Gives the connection back: kept alive when `reuse` (the whole body arrived, nothing extra buffered), else closed. */
void gg_upstream_conn_release(gg_upstream_conn_t *conn, int reuse);

#endif
