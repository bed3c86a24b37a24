/* The upstream client's I/O: a keep-alive pool per (thread, backend) of h2o evloop sockets, one request at a time per
 * connection, per-phase timeouts, back-pressure by stopping reads, a transparent retry when a reused connection turns
 * out to be stale, and hand-over of the raw socket after a 101. The bytes are framed by dataplane/upstream_parse.c.
 *
 * Cost per keep-alive request is what this file is about: an idle connection stays in epoll, reading, so reusing it
 * costs no epoll_ctl; the head and body go out in one sendmsg; h2o reads until a short read. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <h2o/timeout.h>
#include "gridgate/bpf.h"
#include "gridgate/splice.h"
#include "gridgate/upstream.h"

const char gg_upstream_err_refused[] = "upstream connect failed";
const char gg_upstream_err_connect_timeout[] = "upstream connect timeout";
const char gg_upstream_err_first_byte_timeout[] = "upstream first byte timeout";
const char gg_upstream_err_idle_timeout[] = "upstream idle timeout";
const char gg_upstream_err_reset[] = "upstream connection reset";
const char gg_upstream_err_closed[] = "upstream closed the connection mid-response";
const char gg_upstream_err_bad_response[] = "upstream sent a bad response";
const char gg_upstream_err_pool_full[] = "upstream pool full";

/* ---- timeout lists, shared by every pool of a loop ----------------------------------------------------------------
 * An h2o_timeout_t has one fixed duration and the loop walks every list on each turn, so lists are shared per loop
 * and per duration instead of per pool. Pools live on their loop's thread, hence __thread. */
struct timeout_slot {
    struct timeout_slot *next;
    uint32_t ms;
    h2o_timeout_t timeout;
};

struct loop_timeouts {
    struct loop_timeouts *next;
    h2o_loop_t *loop;
    size_t refs;
    struct timeout_slot *slots;
};

static __thread struct loop_timeouts *all_loop_timeouts;

static struct loop_timeouts *loop_timeouts_acquire(h2o_loop_t *loop)
{
    struct loop_timeouts *lt;
    for (lt = all_loop_timeouts; lt != NULL; lt = lt->next)
        if (lt->loop == loop)
            break;
    if (lt == NULL) {
        lt = h2o_mem_alloc(sizeof(*lt));
        *lt = (struct loop_timeouts){all_loop_timeouts, loop, 0, NULL};
        all_loop_timeouts = lt;
    }
    ++lt->refs;
    return lt;
}

static void loop_timeouts_release(struct loop_timeouts *lt)
{
    if (--lt->refs != 0)
        return;
    while (lt->slots != NULL) {
        struct timeout_slot *s = lt->slots;
        lt->slots = s->next;
        h2o_timeout_dispose(lt->loop, &s->timeout);
        free(s);
    }
    struct loop_timeouts **p = &all_loop_timeouts;
    while (*p != lt)
        p = &(*p)->next;
    *p = lt->next;
    free(lt);
}

static h2o_timeout_t *loop_timeouts_get(struct loop_timeouts *lt, uint32_t ms)
{
    struct timeout_slot *s;
    for (s = lt->slots; s != NULL; s = s->next)
        if (s->ms == ms)
            return &s->timeout;
    s = h2o_mem_alloc(sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->ms = ms;
    h2o_timeout_init(lt->loop, &s->timeout, ms);
    s->next = lt->slots;
    lt->slots = s;
    return &s->timeout;
}

/* ---- types ---------------------------------------------------------------------------------------------------------- */

struct conn {
    gg_upstream_pool_t *pool;
    h2o_socket_t *sock;
    gg_upstream_req_t *req; /* NULL while idle */
    h2o_linklist_t link;    /* in pool->idle while idle */
    uint64_t rx_total;      /* bytes ever read from the socket: the splice's arm base */
    uint32_t flow;          /* its slot in the BPF flows table, when joined */
    uint8_t joined;         /* in the sockhash since connect (stream splicing on): it may be spliced */
};

struct gg_upstream_pool {
    h2o_loop_t *loop;
    struct loop_timeouts *timeouts;
    h2o_timeout_t *defer; /* 0 ms: delivers what must not be delivered from inside gg_upstream_send */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t max_idle, max_conns;
    int rcvbuf;
    h2o_linklist_t idle; /* most recently used first: the warmest and least likely to have been closed */
    gg_upstream_pool_stats_t stats;
    size_t inflight; /* requests not yet finished, failed, cancelled or taken */
    int destroyed;   /* gg_upstream_pool_destroy was called: freed when the last request is gone */
    /* most requests of a pool carry the same timeouts: remember the last lists looked up */
    gg_upstream_timeouts_t last_t;
    h2o_timeout_t *last_lists[3];
    int have_last_t;
};

enum req_deferred { DEFERRED_NONE, DEFERRED_ERROR, DEFERRED_RESUME };

struct gg_upstream_req {
    gg_upstream_pool_t *pool;
    struct conn *conn;
    const gg_upstream_callbacks_t *cb;
    void *ctx;
    h2o_timeout_t *t_connect, *t_first_byte, *t_idle;
    h2o_timeout_entry_t timer; /* the one timer of the current phase, or a deferred event on pool->defer */
    enum req_deferred deferred;
    const char *deferred_err;
    const char *read_err; /* EOF or error seen while paused with bytes still buffered */
    gg_upstream_parser_t parser;
    enum gg_upstream_phase phase;
    size_t resp_bytes;    /* response bytes read so far on the current connection */
    size_t input_left;    /* sock->input->size after the last parse: what h2o appends beyond it is new */
    h2o_iovec_t bufs[2];  /* head copy and caller's body */
    h2o_iovec_t wbufs[2]; /* what is left to write */
    size_t nbufs, wbuf_at;
    unsigned reused : 1, retried : 1, write_done : 1, paused : 1, in_cb : 1, cancel_in_cb : 1;
    char head[];
};

static void on_read(h2o_socket_t *sock, const char *err);
static void on_idle_read(h2o_socket_t *sock, const char *err);

/* ---- small helpers ---------------------------------------------------------------------------------------------------- */

static void set_timer(gg_upstream_req_t *req, h2o_timeout_t *list)
{
    if (h2o_timeout_is_linked(&req->timer))
        h2o_timeout_unlink(&req->timer);
    if (list != NULL)
        h2o_timeout_link(req->pool->loop, list, &req->timer);
}

static void close_conn(struct conn *conn)
{
    gg_upstream_pool_t *pool = conn->pool;
    if (h2o_linklist_is_linked(&conn->link)) {
        h2o_linklist_unlink(&conn->link);
        --pool->stats.idle;
    }
    if (conn->joined)
        gg_bpf_stream_leave(conn->flow); /* before the close takes it out of the sockhash */
    h2o_socket_close(conn->sock);
    --pool->stats.conns;
    free(conn);
}

static void pool_free_if_done(gg_upstream_pool_t *pool)
{
    if (!pool->destroyed || pool->inflight != 0 || pool->stats.conns != 0)
        return;
    loop_timeouts_release(pool->timeouts);
    free(pool);
}

static void free_req(gg_upstream_req_t *req)
{
    gg_upstream_pool_t *pool = req->pool;
    if (h2o_timeout_is_linked(&req->timer))
        h2o_timeout_unlink(&req->timer);
    free(req);
    --pool->inflight;
    pool_free_if_done(pool);
}

static void fail(gg_upstream_req_t *req, const char *err)
{
    if (req->conn != NULL) {
        close_conn(req->conn);
        req->conn = NULL;
    }
    if (h2o_timeout_is_linked(&req->timer))
        h2o_timeout_unlink(&req->timer);
    req->cb->on_error(req->ctx, err, req->phase);
    free_req(req);
}

static void defer(gg_upstream_req_t *req, enum req_deferred what, const char *err)
{
    req->deferred = what;
    req->deferred_err = err;
    set_timer(req, req->pool->defer);
}

/* ---- connecting and writing --------------------------------------------------------------------------------------- */

static void on_writable(h2o_socket_t *sock, const char *err);

/* Writes what is left of the request. The writes are ours, not h2o_socket_write's: h2o 2.2 reports even an
 * immediately complete write through EPOLLOUT (an epoll_ctl and an extra epoll_wait per request), and its pending
 * write would keep pointing into the caller's body after on_end. h2o only tells us when the socket is writable. */
static void write_more(gg_upstream_req_t *req)
{
    h2o_socket_t *sock = req->conn->sock;
    h2o_iovec_t *rest = req->wbufs + req->wbuf_at;
    struct msghdr msg = {.msg_iov = (struct iovec *)rest, .msg_iovlen = req->nbufs - req->wbuf_at};
    ssize_t w;

    while ((w = sendmsg(h2o_socket_get_fd(sock), &msg, MSG_NOSIGNAL)) == -1 && errno == EINTR)
        ;
    if (w == -1) {
        if (errno == EAGAIN)
            h2o_socket_notify_write(sock, on_writable);
        /* else the connection is dead or the engine stopped reading, maybe after answering early (413 to a big
         * body): its answer, EOF or RST reaches the reads, which decide (and retry only when nothing came back) */
        return;
    }
    while (req->wbuf_at != req->nbufs && (size_t)w >= rest->len) {
        w -= (ssize_t)rest->len;
        ++rest;
        ++req->wbuf_at;
    }
    if (req->wbuf_at != req->nbufs) {
        rest->base += w;
        rest->len -= (size_t)w;
        h2o_socket_notify_write(sock, on_writable);
        return;
    }
    req->write_done = 1;
    if (req->phase == GG_UP_WRITE) {
        req->phase = GG_UP_HEAD;
        if (req->resp_bytes == 0)
            set_timer(req, req->t_first_byte); /* the first-byte wait counts from the request written */
    }
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    write_more(((struct conn *)sock->data)->req);
}

static void start_write(gg_upstream_req_t *req)
{
    h2o_socket_t *sock = req->conn->sock;
    req->phase = GG_UP_WRITE;
    req->write_done = 0;
    req->resp_bytes = 0;
    req->input_left = sock->input->size;
    memcpy(req->wbufs, req->bufs, sizeof(req->bufs));
    req->wbuf_at = 0;
    if (!req->paused)
        h2o_socket_read_start(sock, on_read);
    set_timer(req, req->t_first_byte);
    write_more(req);
}

static int can_retry(gg_upstream_req_t *req)
{
    return req->reused && !req->retried && req->resp_bytes == 0;
}

static int open_conn(gg_upstream_req_t *req);

/* The reused connection was stale (closed by the server while idle): try once more on a fresh one. */
static void retry(gg_upstream_req_t *req)
{
    gg_upstream_pool_t *pool = req->pool;
    close_conn(req->conn);
    req->conn = NULL;
    req->retried = 1;
    req->reused = 0;
    ++pool->stats.retried;
    gg_upstream_parser_init(&req->parser, req->parser.head_request);
    req->phase = GG_UP_CONNECT;
    if (open_conn(req) != 0)
        fail(req, gg_upstream_err_refused);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    struct conn *conn = sock->data;
    gg_upstream_req_t *req = conn->req;

    if (err != NULL) {
        fail(req, gg_upstream_err_refused);
        return;
    }
    /* Joining now, before the request goes out, means no response byte can have arrived unseen by the verdict. */
    conn->joined = gg_splice_join(h2o_socket_get_fd(sock), &conn->flow) == 0;
    start_write(req);
}

static int open_conn(gg_upstream_req_t *req)
{
    gg_upstream_pool_t *pool = req->pool;
    int fd, on = 1;

    if ((fd = socket(pool->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
        return -errno;
    /* before connect(), so the window scale offered in the SYN matches the small buffer */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (pool->rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &pool->rcvbuf, sizeof(pool->rcvbuf));
    if (connect(fd, (struct sockaddr *)&pool->addr, pool->addrlen) == -1 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }

    struct conn *conn = h2o_mem_alloc(sizeof(*conn));
    *conn = (struct conn){.pool = pool, .req = req};
    /* the same as h2o_socket_connect does, but on a socket we could configure before connect() */
    conn->sock = h2o_evloop_socket_create(pool->loop, fd, H2O_SOCKET_FLAG_IS_CONNECTING);
    conn->sock->data = conn;
    req->conn = conn;
    req->phase = GG_UP_CONNECT;
    ++pool->stats.conns;
    ++pool->stats.opened;
    h2o_socket_notify_write(conn->sock, on_connect);
    set_timer(req, req->t_connect);
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------------------------------- */

static void make_idle(struct conn *conn)
{
    gg_upstream_pool_t *pool = conn->pool;
    if (pool->destroyed || (conn->joined && gg_bpf_flow_desynced(conn->flow))) {
        close_conn(conn);
        return;
    }
    h2o_linklist_insert(pool->idle.next, &conn->link);
    ++pool->stats.idle;
    /* reading an idle connection is how a close by the server (or garbage) is noticed */
    h2o_socket_read_start(conn->sock, on_idle_read);
}

static void finish(gg_upstream_req_t *req)
{
    gg_upstream_pool_t *pool = req->pool;
    struct conn *conn = req->conn;

    if (h2o_timeout_is_linked(&req->timer))
        h2o_timeout_unlink(&req->timer);
    /* leftover bytes after a complete response would be a response to nothing: the connection is out of step */
    /* a response complete before the request is (an engine refusing a body early) leaves the stream out of step too */
    if (req->parser.keepalive && req->write_done && conn->sock->input->size == 0 && pool->stats.idle < pool->max_idle) {
        conn->req = NULL;
        make_idle(conn);
    } else {
        close_conn(conn);
    }
    req->conn = NULL;
    req->cb->on_end(req->ctx);
    free_req(req);
}

static int parse_on_head(void *ctx, int status, int minor_version, const struct phr_header *headers, size_t num_headers)
{
    gg_upstream_req_t *req = ctx;
    req->phase = GG_UP_BODY;
    if (req->cb->on_head(req->ctx, status, minor_version, headers, num_headers) != 0 || req->cancel_in_cb || req->conn == NULL)
        return -1;
    return req->paused ? 1 : 0;
}

static int parse_on_body(void *ctx, const char *buf, size_t len)
{
    gg_upstream_req_t *req = ctx;
    if (req->cb->on_body(req->ctx, buf, len) != 0 || req->cancel_in_cb || req->conn == NULL)
        return -1;
    return req->paused ? 1 : 0;
}

static const gg_upstream_parse_callbacks_t parse_callbacks = {parse_on_head, parse_on_body};

/* Feeds what sock->input holds to the parser. Returns 1 when the req is gone (finished, failed, cancelled, taken) or
 * waits for gg_upstream_take_socket, 0 when more bytes are needed or the req is paused. */
static int process_input(gg_upstream_req_t *req)
{
    h2o_socket_t *sock = req->conn->sock;

    while (sock->input->size != 0 && !req->paused) {
        req->in_cb = 1;
        ssize_t n = gg_upstream_parse_feed(&req->parser, sock->input->bytes, sock->input->size, &parse_callbacks, req);
        req->in_cb = 0;
        if (req->conn == NULL) { /* gg_upstream_take_socket from inside on_head */
            free_req(req);
            return 1;
        }
        if (n == GG_UP_PARSE_STOPPED) { /* a callback returned -1 or called gg_upstream_cancel */
            close_conn(req->conn);
            free_req(req);
            return 1;
        }
        if (n == GG_UP_PARSE_BAD) {
            fail(req, gg_upstream_err_bad_response);
            return 1;
        }
        h2o_buffer_consume(&sock->input, (size_t)n);
        if (req->parser.state == GG_UP_PARSE_DONE) {
            finish(req);
            return 1;
        }
        if (req->parser.state == GG_UP_PARSE_UPGRADED) {
            /* the bytes after the head belong to whoever takes the socket */
            h2o_socket_read_stop(sock);
            set_timer(req, NULL);
            return 1;
        }
        if (n == 0)
            break; /* incomplete head */
    }
    req->input_left = sock->input->size;
    return 0;
}

static void on_read_error(gg_upstream_req_t *req, const char *err)
{
    if (err == h2o_socket_error_closed && gg_upstream_parse_eof(&req->parser) == 0) {
        finish(req); /* close-delimited body */
    } else if (can_retry(req)) {
        retry(req);
    } else {
        fail(req, err == h2o_socket_error_closed ? gg_upstream_err_closed : gg_upstream_err_reset);
    }
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    struct conn *conn = sock->data;
    gg_upstream_req_t *req = conn->req;

    /* sock->bytes_read means "this read" in h2o 2.2 but "in total" later: count from the buffer instead */
    req->resp_bytes += sock->input->size - req->input_left;
    conn->rx_total += sock->input->size - req->input_left;
    if (req->phase == GG_UP_WRITE && req->resp_bytes != 0)
        req->phase = GG_UP_HEAD;
    /* h2o reports an error only for a read that brought nothing, but bytes from earlier reads may be waiting */
    if (process_input(req))
        return;
    if (err != NULL) {
        if (req->paused) {
            /* bytes before the end are still buffered for a paused reader: the end waits for them */
            h2o_socket_read_stop(sock);
            req->read_err = err;
        } else {
            on_read_error(req, err);
        }
        return;
    }
    if (!req->paused && req->resp_bytes != 0)
        set_timer(req, req->t_idle);
}

static void on_idle_read(h2o_socket_t *sock, const char *err)
{
    /* an idle keep-alive connection has nothing to say: this is a close by the server, or garbage */
    close_conn(sock->data);
}

static void on_timer(h2o_timeout_entry_t *entry)
{
    gg_upstream_req_t *req = H2O_STRUCT_FROM_MEMBER(gg_upstream_req_t, timer, entry);
    enum req_deferred deferred = req->deferred;

    req->deferred = DEFERRED_NONE;
    switch (deferred) {
    case DEFERRED_ERROR:
        fail(req, req->deferred_err);
        return;
    case DEFERRED_RESUME:
        if (process_input(req) || req->paused)
            return;
        if (req->read_err != NULL) {
            on_read_error(req, req->read_err);
            return;
        }
        h2o_socket_read_start(req->conn->sock, on_read);
        if (req->phase == GG_UP_BODY)
            set_timer(req, req->t_idle);
        return;
    case DEFERRED_NONE:
        break;
    }
    switch (req->phase) {
    case GG_UP_CONNECT:
        fail(req, gg_upstream_err_connect_timeout);
        break;
    case GG_UP_WRITE:
    case GG_UP_HEAD:
        fail(req, req->resp_bytes == 0 ? gg_upstream_err_first_byte_timeout : gg_upstream_err_idle_timeout);
        break;
    case GG_UP_BODY:
        fail(req, gg_upstream_err_idle_timeout);
        break;
    }
}

/* ---- public API ----------------------------------------------------------------------------------------------------- */

gg_upstream_pool_t *gg_upstream_pool_create(h2o_loop_t *loop, const char *host, uint16_t port, size_t max_idle, size_t max_conns)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG}, *res;
    char service[8];
    int ret;

    snprintf(service, sizeof(service), "%u", (unsigned)port);
    if ((ret = getaddrinfo(host, service, &hints, &res)) != 0) {
        /* AI_ADDRCONFIG hides loopback literals on a host without other addresses; ask again without it */
        hints.ai_flags = 0;
        if ((ret = getaddrinfo(host, service, &hints, &res)) != 0) {
            errno = ret == EAI_SYSTEM ? errno : ENOENT;
            return NULL;
        }
    }
    gg_upstream_pool_t *pool = h2o_mem_alloc(sizeof(*pool));
    memset(pool, 0, sizeof(*pool));
    memcpy(&pool->addr, res->ai_addr, res->ai_addrlen);
    pool->addrlen = res->ai_addrlen;
    freeaddrinfo(res);

    pool->loop = loop;
    pool->timeouts = loop_timeouts_acquire(loop);
    pool->defer = loop_timeouts_get(pool->timeouts, 0);
    pool->max_idle = max_idle;
    pool->max_conns = max_conns;
    pool->rcvbuf = GG_UPSTREAM_DEFAULT_RCVBUF;
    h2o_linklist_init_anchor(&pool->idle);
    return pool;
}

void gg_upstream_pool_destroy(gg_upstream_pool_t *pool)
{
    pool->destroyed = 1;
    while (!h2o_linklist_is_empty(&pool->idle))
        close_conn(H2O_STRUCT_FROM_MEMBER(struct conn, link, pool->idle.next));
    pool_free_if_done(pool);
}

void gg_upstream_pool_set_rcvbuf(gg_upstream_pool_t *pool, int bytes)
{
    pool->rcvbuf = bytes;
}

void gg_upstream_pool_get_stats(gg_upstream_pool_t *pool, gg_upstream_pool_stats_t *stats)
{
    *stats = pool->stats;
}

static h2o_timeout_t *list_for(gg_upstream_pool_t *pool, uint32_t ms)
{
    return ms != 0 ? loop_timeouts_get(pool->timeouts, ms) : NULL;
}

gg_upstream_req_t *gg_upstream_send(gg_upstream_pool_t *pool, h2o_iovec_t head, h2o_iovec_t body, const gg_upstream_timeouts_t *t,
                                    const gg_upstream_callbacks_t *cb, void *ctx)
{
    gg_upstream_req_t *req = h2o_mem_alloc(offsetof(gg_upstream_req_t, head) + head.len);
    memset(req, 0, sizeof(*req));
    req->pool = pool;
    ++pool->inflight;
    req->cb = cb;
    req->ctx = ctx;
    req->timer.cb = on_timer;
    memcpy(req->head, head.base, head.len);
    req->bufs[0] = h2o_iovec_init(req->head, head.len);
    req->bufs[1] = body;
    req->nbufs = body.len != 0 ? 2 : 1;
    gg_upstream_parser_init(&req->parser, head.len >= 5 && memcmp(head.base, "HEAD ", 5) == 0);

    if (!pool->have_last_t || memcmp(&pool->last_t, t, sizeof(*t)) != 0) {
        pool->last_t = *t;
        pool->have_last_t = 1;
        pool->last_lists[0] = list_for(pool, t->connect_ms);
        pool->last_lists[1] = list_for(pool, t->first_byte_ms);
        pool->last_lists[2] = list_for(pool, t->idle_ms);
    }
    req->t_connect = pool->last_lists[0];
    req->t_first_byte = pool->last_lists[1];
    req->t_idle = pool->last_lists[2];

    if (!h2o_linklist_is_empty(&pool->idle)) {
        struct conn *conn = H2O_STRUCT_FROM_MEMBER(struct conn, link, pool->idle.next);
        h2o_linklist_unlink(&conn->link);
        --pool->stats.idle;
        ++pool->stats.reused;
        conn->req = req;
        req->conn = conn;
        req->reused = 1;
        start_write(req); /* h2o reports the write's outcome from the loop, never from here */
    } else if (pool->max_conns != 0 && pool->stats.conns >= pool->max_conns) {
        defer(req, DEFERRED_ERROR, gg_upstream_err_pool_full);
    } else if (open_conn(req) != 0) {
        defer(req, DEFERRED_ERROR, gg_upstream_err_refused);
    }
    return req;
}

void gg_upstream_pause(gg_upstream_req_t *req)
{
    if (req->paused)
        return;
    req->paused = 1;
    if (req->deferred == DEFERRED_RESUME) {
        req->deferred = DEFERRED_NONE;
        set_timer(req, NULL);
    }
    if (req->conn == NULL || req->phase == GG_UP_CONNECT || req->deferred != DEFERRED_NONE)
        return; /* start_write does not start reading a paused req */
    h2o_socket_read_stop(req->conn->sock);
    /* a slow client is not the engine's fault: no idle timeout while paused (the first-byte one keeps running) */
    if (req->phase == GG_UP_BODY)
        set_timer(req, NULL);
}

void gg_upstream_resume(gg_upstream_req_t *req)
{
    if (!req->paused)
        return;
    req->paused = 0;
    if (req->conn == NULL || req->phase == GG_UP_CONNECT || req->deferred != DEFERRED_NONE ||
        req->parser.state == GG_UP_PARSE_UPGRADED)
        return;
    if (req->in_cb) {
        /* process_input goes on with the buffered bytes once the callback returns */
        h2o_socket_read_start(req->conn->sock, on_read);
    } else if (req->conn->sock->input->size != 0 || req->read_err != NULL) {
        defer(req, DEFERRED_RESUME, NULL);
    } else {
        h2o_socket_read_start(req->conn->sock, on_read);
        if (req->phase == GG_UP_BODY)
            set_timer(req, req->t_idle);
    }
}

void gg_upstream_cancel(gg_upstream_req_t *req)
{
    if (req->in_cb) {
        /* the parser is still walking the socket's buffer: process_input closes once the callback has returned */
        req->cancel_in_cb = 1;
        return;
    }
    if (req->conn != NULL)
        close_conn(req->conn);
    free_req(req);
}

h2o_socket_t *gg_upstream_take_socket(gg_upstream_req_t *req, h2o_iovec_t *pending)
{
    if (req->conn == NULL || req->parser.state != GG_UP_PARSE_UPGRADED)
        return NULL;
    struct conn *conn = req->conn;
    h2o_socket_t *sock = conn->sock;

    if (req->in_cb) /* from inside on_head the head is still in the buffer */
        h2o_buffer_consume(&sock->input, req->parser.head_end);
    h2o_socket_read_stop(sock);
    sock->data = NULL;
    --req->pool->stats.conns;
    free(conn);
    req->conn = NULL;
    *pending = h2o_iovec_init(sock->input->bytes, sock->input->size);
    if (!req->in_cb)
        free_req(req);
    return sock;
}

/* ---- splicing a streamed response ----------------------------------------------------------------------------------- */

int gg_upstream_detachable(gg_upstream_req_t *req)
{
    return req->conn != NULL && req->in_cb && req->conn->joined &&
           (req->parser.state == GG_UP_PARSE_BODY_CHUNKED || req->parser.state == GG_UP_PARSE_BODY_EOF);
}

gg_upstream_conn_t *gg_upstream_detach(gg_upstream_req_t *req, gg_upstream_detached_t *out)
{
    struct conn *conn = req->conn;
    if (!gg_upstream_detachable(req))
        return NULL;
    h2o_socket_t *sock = conn->sock;
    h2o_buffer_consume(&sock->input, req->parser.head_end); /* the head is still in the buffer from inside on_head */
    h2o_socket_read_stop(sock);
    if (h2o_timeout_is_linked(&req->timer))
        h2o_timeout_unlink(&req->timer);
    sock->data = NULL;
    conn->req = NULL;
    req->conn = NULL; /* process_input frees the req once on_head returns */
    *out = (gg_upstream_detached_t){.sock = sock,
                                    .flow = conn->flow,
                                    .rx_total = conn->rx_total,
                                    .chunked = req->parser.state == GG_UP_PARSE_BODY_CHUNKED,
                                    .keepalive = req->parser.keepalive && req->write_done};
    return (gg_upstream_conn_t *)conn;
}

void gg_upstream_conn_read(gg_upstream_conn_t *handle, size_t n)
{
    ((struct conn *)handle)->rx_total += n;
}

void gg_upstream_conn_release(gg_upstream_conn_t *handle, int reuse)
{
    struct conn *conn = (struct conn *)handle;
    gg_upstream_pool_t *pool = conn->pool;
    h2o_socket_read_stop(conn->sock);
    conn->sock->data = conn;
    if (reuse && conn->sock->input->size == 0 && pool->stats.idle < pool->max_idle) {
        make_idle(conn); /* closes it instead when the pool is being destroyed */
    } else {
        close_conn(conn);
    }
    pool_free_if_done(pool);
}
