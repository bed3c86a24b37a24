/* The data plane's threads: one h2o evloop + context per worker, each with its own SO_REUSEPORT listener
 * for every listen address, sharing one h2o_globalconf_t. */
#ifndef GG_SERVER_H
#define GG_SERVER_H

#include <h2o.h>
#include <stdatomic.h>
#include <stdint.h>

#define GG_MAX_LISTEN 8
#define GG_MAX_WORKERS 64

struct gg_upstream_pool;

typedef struct gg_listen_addr {
    char host[64];
    uint16_t port; /* 0 = pick one; after start-up, the port all workers share */
} gg_listen_addr_t;

typedef struct gg_server_opts {
    gg_listen_addr_t listen[GG_MAX_LISTEN];
    size_t num_listen;
    unsigned threads;
    size_t max_body_bytes;
    const char *tls_cert, *tls_key; /* both set: TLS with ALPN h2 + http/1.1 */
    uint32_t grace_ms;              /* SIGTERM: how long in-flight requests may take to finish */
} gg_server_opts_t;

typedef struct gg_worker {
    h2o_context_t ctx; /* first, so a request's conn->ctx leads back to its worker */
    unsigned id;
    h2o_evloop_t *loop;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listeners[GG_MAX_LISTEN];
    pthread_t thread;
    uint64_t rng;                              /* xorshift state for routing choices */
    atomic_uint inflight;                      /* requests started and not finished on this worker */
    struct gg_upstream_pool **pools;           /* [GG_MAX_BACKENDS], created on first use, keyed by backend slot */
    uint32_t *pool_backend_id;                 /* the backend (gg_backend_t.id) each pool leads to */
    h2o_multithread_receiver_t admit_receiver; /* queued requests granted a slot by another worker resume here */
    h2o_timeout_t admit_timeout;               /* how long a request may wait for admission */
} gg_worker_t;

static inline gg_worker_t *gg_worker_of(h2o_req_t *req)
{
    return (gg_worker_t *)req->conn->ctx;
}

/** Binds every listen address (so a port of 0 becomes a real one) and prepares the workers. 0 or -errno. */
int gg_server_init(gg_server_opts_t *opts, int (*on_req)(h2o_handler_t *, h2o_req_t *));
/** Runs the workers until gg_server_stop(); returns after they all finished. */
void gg_server_run(void);
/** Stops accepting, lets in-flight requests finish for up to grace_ms, then ends gg_server_run. Signal-safe. */
void gg_server_stop(void);
/** Total requests in flight over all workers. */
unsigned gg_server_inflight(void);
/**
 * The worker's keep-alive pool to backend `slot`, made on first use, and made anew when the slot now holds
 * another backend. NULL when the backend's host name does not resolve.
 */
struct gg_upstream_pool *gg_worker_pool(gg_worker_t *w, int slot);
struct gg_guard_listeners;
/** Describes the listeners (after gg_server_init) for the ingress guard's reuseport pick. */
void gg_server_listeners(struct gg_guard_listeners *out);
/** Before gg_server_run: count open connections per worker in shared[GG_MAX_WORKERS] (atomic adds) from now on. */
void gg_server_share_conn_counts(uint64_t *shared);
/** Per-worker random 64-bit number (xorshift64*). */
uint64_t gg_worker_rand(gg_worker_t *w);

extern gg_server_opts_t gg_server_opts;
extern h2o_globalconf_t gg_globalconf;

#endif
