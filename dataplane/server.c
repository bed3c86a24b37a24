/* Worker threads, listeners, TLS and graceful shutdown of the client-facing side. */
#include "gridgate/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gridgate/admission.h"
#include "gridgate/backend.h"
#include "gridgate/framing.h"
#include "gridgate/guard.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "gridgate/upstream.h"

gg_server_opts_t gg_server_opts;
h2o_globalconf_t gg_globalconf;

static gg_worker_t workers[GG_MAX_WORKERS];
static int listen_fds[GG_MAX_WORKERS][GG_MAX_LISTEN];
static SSL_CTX *ssl_ctx;
static atomic_int stopping;
/* Open client connections per worker: the sk_reuseport pick reads them, so they live in the mmapped `worker_load` map
 * when the guard shares it (gg_server_share_conn_counts), else here. */
_Static_assert(GG_GUARD_MAX_WORKERS == GG_MAX_WORKERS && GG_GUARD_MAX_LISTEN == GG_MAX_LISTEN, "the guard maps every listener");
static uint64_t local_conns[GG_MAX_WORKERS];
static uint64_t *conns = local_conns;
static void render_conns(gg_buf_t *out);

static int open_listener(const gg_listen_addr_t *a, uint16_t *bound_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", a->port);
    int rc = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, &res);
    if (rc != 0) {
        gg_error("listen %s:%u: %s", a->host, a->port, gai_strerror(rc));
        return -EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
    if (fd == -1) {
        rc = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One listener per worker on the same port: the kernel spreads connections across them. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 4096) == -1) {
        rc = -errno;
        gg_error("listen %s:%u: %s", a->host, a->port, strerror(errno));
        close(fd);
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    rc = fd;
out:
    freeaddrinfo(res);
    return rc;
}

static int setup_tls(const gg_server_opts_t *o)
{
    ssl_ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ssl_ctx, o->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ssl_ctx, o->tls_key, SSL_FILETYPE_PEM) != 1) {
        gg_error("tls: cannot load %s / %s: %s", o->tls_cert, o->tls_key, ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ssl_ctx);
        ssl_ctx = NULL;
        return -EINVAL;
    }
    /* h2o's own list names only h2; http/1.1 is added so clients that offer just it see it confirmed. */
    static const h2o_iovec_t alpn[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL, 0}};
    h2o_ssl_register_alpn_protocols(ssl_ctx, alpn);
    return 0;
}

int gg_server_init(gg_server_opts_t *o, int (*on_req)(h2o_handler_t *, h2o_req_t *))
{
    gg_server_opts = *o;
    o = &gg_server_opts;
    if (o->threads == 0 || o->threads > GG_MAX_WORKERS)
        o->threads = o->threads == 0 ? (unsigned)sysconf(_SC_NPROCESSORS_ONLN) : GG_MAX_WORKERS;
    if (o->threads == 0)
        o->threads = 1;

    h2o_config_init(&gg_globalconf);
    gg_globalconf.max_request_entity_size = o->max_body_bytes;
    gg_globalconf.server_name = h2o_iovec_init(H2O_STRLIT("gridgate"));
    h2o_hostconf_t *host = h2o_config_register_host(&gg_globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h));
    h->on_req = on_req;
    gg_framing_register(host);

    if (o->tls_cert && o->tls_key && setup_tls(o) != 0)
        return -EINVAL;

    static int collector;
    if (!collector++)
        gg_metrics_add_collector(render_conns);
    /* Bind every address for every worker now, so a port of 0 is resolved once and shared. */
    for (size_t i = 0; i < o->num_listen; i++) {
        for (unsigned t = 0; t < o->threads; t++) {
            uint16_t port = 0;
            int fd = open_listener(&o->listen[i], &port);
            if (fd < 0)
                return fd;
            o->listen[i].port = port;
            listen_fds[t][i] = fd;
        }
        const char *h = o->listen[i].host[0] ? o->listen[i].host : "0.0.0.0";
        int v6 = strchr(h, ':') != NULL;
        gg_info("listening on %s://%s%s%s:%u (%u workers)", ssl_ctx ? "https" : "http", v6 ? "[" : "", h, v6 ? "]" : "",
                o->listen[i].port, o->threads);
    }
    return 0;
}

static void on_conn_close(void *data)
{
    __atomic_fetch_sub(&conns[(uintptr_t)data], 1, __ATOMIC_RELAXED);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    gg_worker_t *w = listener->data;
    if (err != NULL)
        return;
    /* Accept a batch per wake-up; the listener is level-triggered, so leftovers come back next turn. */
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        __atomic_fetch_add(&conns[w->id], 1, __ATOMIC_RELAXED);
        sock->on_close.cb = on_conn_close;
        sock->on_close.data = (void *)(uintptr_t)w->id;
        gg_framing_accept(&w->accept_ctx, sock);
    }
}

static void render_conns(gg_buf_t *out)
{
    gg_buf_appendf(out, "# HELP gridgate_worker_connections Client connections each worker thread holds open.\n"
                        "# TYPE gridgate_worker_connections gauge\n");
    for (unsigned t = 0; t < gg_server_opts.threads; t++)
        gg_buf_appendf(out, "gridgate_worker_connections{worker=\"%u\"} %llu\n", t,
                       (unsigned long long)__atomic_load_n(&conns[t], __ATOMIC_RELAXED));
}

void gg_server_listeners(gg_guard_listeners_t *out)
{
    memset(out, 0, sizeof(*out));
    out->workers = gg_server_opts.threads;
    out->groups = gg_server_opts.num_listen;
    for (size_t i = 0; i < gg_server_opts.num_listen; i++) {
        out->port[i] = gg_server_opts.listen[i].port;
        for (unsigned t = 0; t < gg_server_opts.threads; t++)
            out->fd[i][t] = listen_fds[t][i];
    }
}

void gg_server_share_conn_counts(uint64_t *shared)
{
    for (unsigned t = 0; t < GG_MAX_WORKERS; t++)
        shared[t] = local_conns[t];
    conns = shared;
}

gg_upstream_pool_t *gg_worker_pool(gg_worker_t *w, int slot)
{
    gg_backend_t *b = &gg_backends[slot];
    if (w->pools[slot] != NULL && w->pool_backend_id[slot] == b->id)
        return w->pools[slot];
    /* A slot reused by another backend: the old pool's connections lead elsewhere. Idle ones are closed;
     * requests still using them keep their own connections until they end. */
    if (w->pools[slot] != NULL)
        gg_upstream_pool_destroy(w->pools[slot]);
    w->pools[slot] = gg_upstream_pool_create(w->loop, b->host, b->port, 64, 0);
    w->pool_backend_id[slot] = b->id;
    return w->pools[slot];
}

uint64_t gg_worker_rand(gg_worker_t *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void *worker_main(void *arg)
{
    gg_worker_t *w = arg;
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &gg_globalconf);
    gg_admission_worker_start(w);
    w->accept_ctx = (h2o_accept_ctx_t){.ctx = &w->ctx, .hosts = gg_globalconf.hosts, .ssl_ctx = ssl_ctx};
    w->pools = calloc(GG_MAX_BACKENDS, sizeof(*w->pools));
    w->pool_backend_id = calloc(GG_MAX_BACKENDS, sizeof(*w->pool_backend_id));
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    w->rng = ((uint64_t)ts.tv_nsec << 16) ^ (w->id + 1) * 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < gg_server_opts.num_listen; i++) {
        w->listeners[i] = h2o_evloop_socket_create(w->loop, listen_fds[w->id][i], H2O_SOCKET_FLAG_DONT_READ);
        w->listeners[i]->data = w;
        h2o_socket_read_start(w->listeners[i], on_accept);
    }

    while (!atomic_load(&stopping))
        h2o_evloop_run(w->loop, 100);

    /* Drain: no new connections; in-flight requests get up to grace_ms to finish. */
    for (size_t i = 0; i < gg_server_opts.num_listen; i++) {
        h2o_socket_read_stop(w->listeners[i]);
        h2o_socket_close(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    h2o_context_request_shutdown(&w->ctx);
    uint64_t deadline = h2o_now(w->loop) + gg_server_opts.grace_ms;
    while (atomic_load(&w->inflight) != 0 && h2o_now(w->loop) < deadline)
        h2o_evloop_run(w->loop, 50);
    if (atomic_load(&w->inflight) != 0)
        gg_warn("worker %u: grace period over with %u requests in flight", w->id, atomic_load(&w->inflight));
    gg_admission_worker_stop(w);
    return NULL;
}

void gg_server_run(void)
{
    for (unsigned t = 0; t < gg_server_opts.threads; t++) {
        workers[t].id = t;
        pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
    }
    for (unsigned t = 0; t < gg_server_opts.threads; t++)
        pthread_join(workers[t].thread, NULL);
}

void gg_server_stop(void)
{
    atomic_store(&stopping, 1);
}

unsigned gg_server_inflight(void)
{
    unsigned n = 0;
    for (unsigned t = 0; t < gg_server_opts.threads; t++)
        n += atomic_load(&workers[t].inflight);
    return n;
}
