/* A streamed response spliced backend -> client in-kernel (see splice.h).
 *
 * Invariants, from KERNEL-NOTES.md:
 * - The backend joined the sockhash at connect (upstream.c), so every byte it ever received went through the verdict
 *   and is counted in pass_bytes[1]; userspace counts what it read (rx_total). Arming behind rx_total therefore
 *   redirects only once everything passed so far has been written out: no reordering at the hand-off.
 * - The client only joins `targets`, a sockhash with no program: it is a redirect target, its own receive path (the
 *   next pipelined or keep-alive request) is the kernel's normal one, and it never leaves the map while open.
 * - Before every userspace write to the client the drain rule holds: bytes queued on it (acked + send queue) >= what
 *   was queued at the hand-off + redirected + written by us since. Polled every millisecond (no kernel event).
 * - The verdict passes the skb that completes the end marker (and everything after it), so userspace wakes on the end
 *   by itself: no ringbuf and no polling while the stream runs. */
#include "gridgate/splice.h"

#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <h2o/http1.h>
#include <h2o/timeout.h>

#include "gridgate/bpf.h"
#include "gridgate/log.h"

#define DRAIN_POLL_MS 1
#define DRAIN_MAX_MS 30000           /* a client that never reads what was redirected to it does not hold both sockets forever */
#define CLIENT_INPUT_MAX (64 * 1024) /* pipelined request bytes buffered while the stream runs */
#define IDLE_TICK_MS 1000

static _Atomic int streams_on;
static _Atomic uint32_t paths_mask;
static _Atomic uint64_t active;

void gg_splice_set_streams(int on)
{
    atomic_store(&streams_on, on != 0);
}

int gg_splice_path_index(const char *path, size_t len)
{
    static const char *const paths[] = {"/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"};
    for (int i = 0; i < (int)(sizeof(paths) / sizeof(paths[0])); i++)
        if (strlen(paths[i]) == len && memcmp(paths[i], path, len) == 0)
            return i;
    return -1;
}

void gg_splice_set_paths(uint32_t mask)
{
    atomic_store(&paths_mask, mask);
}

int gg_splice_path_allowed(const char *path, size_t len)
{
    uint32_t mask = atomic_load_explicit(&paths_mask, memory_order_relaxed);
    int i = gg_splice_path_index(path, len);
    return i >= 0 && (mask == 0 || (mask >> i) & 1);
}

int gg_splice_streams(void)
{
    return atomic_load_explicit(&streams_on, memory_order_relaxed) && gg_bpf_splice_ready();
}

int gg_splice_join(int fd, uint32_t *flow)
{
    if (!gg_splice_streams())
        return -ENOTSUP;
    return gg_bpf_stream_join(fd, flow);
}

uint64_t gg_splice_active(void)
{
    return atomic_load_explicit(&active, memory_order_relaxed);
}

typedef struct splice {
    h2o_loop_t *loop;
    h2o_accept_ctx_t *accept_ctx;
    gg_upstream_conn_t *conn;
    h2o_socket_t *bsock, *csock;
    uint32_t flow, kind;
    struct gg_bpf_flow *f;
    int chunked, keepalive, keepalive_client;
    uint64_t rx;       /* bytes ever read from the backend socket (== its conn's rx_total) */
    size_t reqsize;    /* the request's bytes still at the front of csock->input (h2o did not consume them) */
    size_t head_body;  /* body bytes written together with the head */
    size_t b_seen;     /* bsock->input->size already counted as read */
    size_t writing;    /* bytes of bsock->input being written to the client */
    uint64_t user;     /* body bytes written by us since the hand-off (excluding head_body): user_bytes[1] */
    int64_t base;      /* gg_bpf_queued(client) at the hand-off, head and head_body included */
    int armed;         /* the flow was armed (the kernel may redirect) */
    int ended_early;   /* the end had already reached the verdict before the flow became a stream */
    int b_eof;         /* the backend will send nothing more (FIN or error) */
    const char *b_err; /* set with b_eof when it was an error */
    int ending;        /* finishing: waiting for the drain, then closing */
    const char *end_error;
    int end_backend_failed;
    uint64_t drain_polls;
    uint64_t idle_mark, idle_ticks;
    uint32_t idle_ms;
    char last[GG_BPF_TAIL]; /* the last bytes we wrote: the end and the usage when the flow never armed */
    size_t last_len;
    h2o_timeout_entry_t poll, idle;
    gg_splice_done_cb done;
    void *ctx;
} splice_t;

static __thread struct {
    h2o_loop_t *loop;
    h2o_timeout_t drain, idle;
} lists;

static void on_b_read(h2o_socket_t *sock, const char *err);
static void on_c_read(h2o_socket_t *sock, const char *err);
static void pump(splice_t *s);

static int fd_of(h2o_socket_t *sock)
{
    return h2o_socket_get_fd(sock);
}

static void init_lists(h2o_loop_t *loop)
{
    if (lists.loop == loop)
        return;
    /* one pair of lists per loop, never disposed: an entry may end inside the list's own run */
    h2o_timeout_init(loop, &lists.drain, DRAIN_POLL_MS);
    h2o_timeout_init(loop, &lists.idle, IDLE_TICK_MS);
    lists.loop = loop;
}

static void arm_poll(splice_t *s)
{
    if (!h2o_timeout_is_linked(&s->poll))
        h2o_timeout_link(s->loop, &lists.drain, &s->poll);
}

static uint64_t redirected(splice_t *s)
{
    return s->armed ? __atomic_load_n(&s->f->bytes[1], __ATOMIC_ACQUIRE) : 0;
}

/* Everything redirected to the client and everything we wrote is queued on it (or it is gone). */
static int drained(splice_t *s)
{
    if (!s->armed)
        return 1;
    int64_t q = gg_bpf_queued(fd_of(s->csock));
    if (q < 0)
        return 1;
    if ((uint64_t)q >= (uint64_t)s->base + redirected(s) + s->user)
        return 1;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(fd_of(s->csock), IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE;
}

static void remember_last(splice_t *s, const char *p, size_t n)
{
    if (n == 0)
        return;
    char buf[GG_BPF_TAIL];
    size_t keep = s->last_len + n > GG_BPF_TAIL ? GG_BPF_TAIL : s->last_len + n;
    size_t from_old = keep > n ? keep - n : 0;
    memcpy(buf, s->last + s->last_len - from_old, from_old);
    memcpy(buf + from_old, p + n - (keep - from_old), keep - from_old);
    memcpy(s->last, buf, keep);
    s->last_len = keep;
}

/* The stream is over (ok or not) and drained when it matters: both connections go back or close, `done` runs. */
static void finish(splice_t *s, int reuse)
{
    gg_splice_result_t r = {0};
    if (h2o_timeout_is_linked(&s->poll))
        h2o_timeout_unlink(&s->poll);
    if (h2o_timeout_is_linked(&s->idle))
        h2o_timeout_unlink(&s->idle);
    r.kernel_bytes = redirected(s);
    r.user_bytes = s->head_body + s->user;
    r.skbs = s->armed ? __atomic_load_n(&s->f->events[1], __ATOMIC_ACQUIRE) : 0;
    r.error = s->end_error;
    r.backend_failed = s->end_backend_failed;
    r.spliced = s->armed;
    if (s->armed) {
        r.tail_len = gg_bpf_stream_tail(s->flow, r.tail, sizeof(r.tail));
        gg_bpf_stream_stop(s->flow, r.kernel_bytes);
    } else {
        memcpy(r.tail, s->last, s->last_len);
        r.tail_len = s->last_len;
    }
    gg_debug("splice: flow %u done: %s, kernel %llu, user %llu, reuse %d/%d/%d", s->flow, s->end_error ? s->end_error : "complete",
             (unsigned long long)r.kernel_bytes, (unsigned long long)r.user_bytes, reuse, s->keepalive, s->keepalive_client);
    h2o_socket_t *c = s->csock;
    int next = c != NULL && s->end_error == NULL && s->chunked && s->keepalive_client;
    if (c != NULL) {
        h2o_socket_read_stop(c);
        c->data = NULL;
        if (!next)
            h2o_socket_close(c); /* first: a write still pending on it points into the backend's input buffer */
    }
    gg_upstream_conn_release(s->conn, reuse && s->keepalive && s->end_error == NULL && s->bsock->input->size == 0);
    if (next) {
        /* the next request on this connection is h2o's again; what arrived meanwhile is still in its input */
        h2o_buffer_consume(&c->input, s->reqsize);
        struct timeval now;
        gettimeofday(&now, NULL);
        h2o_http1_accept(s->accept_ctx, c, now);
    }
    atomic_fetch_sub_explicit(&active, 1, memory_order_relaxed);
    s->done(s->ctx, &r);
    free(s);
}

static void check_end(splice_t *s)
{
    if (s->writing != 0)
        return; /* the write's completion comes back here */
    if (drained(s)) {
        finish(s, 1);
        return;
    }
    if (++s->drain_polls > DRAIN_MAX_MS / DRAIN_POLL_MS) {
        if (s->end_error == NULL)
            s->end_error = "client did not read the stream (drain timed out)";
        finish(s, 0);
        return;
    }
    arm_poll(s);
}

static void begin_end(splice_t *s, const char *error, int backend_failed)
{
    if (s->ending)
        return;
    s->ending = 1;
    s->end_error = error;
    s->end_backend_failed = backend_failed;
    h2o_socket_read_stop(s->bsock);
    if (s->csock != NULL)
        h2o_socket_read_stop(s->csock);
    check_end(s);
}

/* The client left: nothing is owed to it, and closing the backend is how the engine learns to stop. */
static void client_gone(splice_t *s)
{
    s->ending = 1;
    s->end_error = "client went away";
    s->writing = 0;
    finish(s, 0);
}

static void on_c_write(h2o_socket_t *sock, const char *err)
{
    splice_t *s = sock->data;
    if (err != NULL) {
        client_gone(s);
        return;
    }
    h2o_buffer_consume(&s->bsock->input, s->writing);
    s->b_seen -= s->writing;
    s->user += s->writing;
    if (s->armed) /* published only now that write() returned: the verdict re-arms on arm_base + user_bytes == pass_bytes */
        __atomic_store_n(&s->f->user_bytes[1], s->user, __ATOMIC_RELEASE);
    s->writing = 0;
    pump(s);
}

static int stream_ended(splice_t *s)
{
    if (!s->chunked)
        return 0; /* close-delimited: the backend's FIN is the end */
    if (!s->armed)
        return s->last_len >= 8 && memcmp(s->last + s->last_len - 8, "\n\r\n0\r\n\r\n", 8) == 0;
    /* the verdict saw the end and passed that skb: over once we have read all it passed */
    return (s->ended_early || __atomic_load_n(&s->f->ended, __ATOMIC_ACQUIRE)) &&
           s->rx == __atomic_load_n(&s->f->pass_bytes[1], __ATOMIC_ACQUIRE);
}

/* What we read from the backend is all the verdict may have passed us; a flow the verdict marked, or one where we read
 * more, cannot be vouched for: both connections are reset, so the client sees a broken stream, not a short one. */
static int reset_if_desynced(splice_t *s)
{
    const char *why = s->armed ? gg_bpf_desync_reason(s->f, 1, s->rx) : NULL;
    if (why == NULL)
        return 0;
    gg_bpf_desync_reset(s->csock != NULL ? fd_of(s->csock) : -1, fd_of(s->bsock));
    s->ending = 1;
    s->end_error = why;
    s->end_backend_failed = 0;
    s->writing = 0;
    finish(s, 0);
    return 1;
}

static void pump(splice_t *s)
{
    if (reset_if_desynced(s))
        return;
    if (s->ending) {
        check_end(s);
        return;
    }
    if (s->writing != 0)
        return;
    h2o_socket_t *b = s->bsock;
    if (b->input->size != 0) {
        /* bytes the verdict gave us (catch-up, a stall, the end): they go out only behind what it redirected */
        h2o_socket_read_stop(b);
        if (!drained(s)) {
            if (++s->drain_polls > DRAIN_MAX_MS / DRAIN_POLL_MS) {
                s->end_error = "client did not read the stream (drain timed out)";
                s->ending = 1;
                finish(s, 0);
                return;
            }
            arm_poll(s);
            return;
        }
        s->drain_polls = 0;
        s->writing = b->input->size;
        remember_last(s, b->input->bytes, b->input->size);
        h2o_iovec_t v = h2o_iovec_init(b->input->bytes, b->input->size);
        h2o_socket_write(s->csock, &v, 1, on_c_write);
        return;
    }
    if (stream_ended(s)) {
        begin_end(s, NULL, 0);
        return;
    }
    if (s->b_eof) {
        if (s->chunked)
            begin_end(s, s->b_err != NULL ? "upstream connection reset" : "upstream closed the connection mid-response", 1);
        else
            begin_end(s, s->b_err != NULL ? "upstream connection reset" : NULL, s->b_err != NULL);
        return;
    }
    /* Caught up after a stall: let the verdict take the stream back once all it passed is written out. */
    if (s->armed && __atomic_load_n(&s->f->mode[1], __ATOMIC_ACQUIRE) == GG_BPF_FLOW_PASS &&
        !__atomic_load_n(&s->f->ended, __ATOMIC_ACQUIRE))
        __atomic_store_n(&s->f->mode[1], GG_BPF_FLOW_ARMED, __ATOMIC_RELEASE);
    h2o_socket_read_start(b, on_b_read);
}

static void on_b_read(h2o_socket_t *sock, const char *err)
{
    splice_t *s = sock->data;
    size_t n = sock->input->size - s->b_seen;
    s->b_seen = sock->input->size;
    s->rx += n;
    gg_upstream_conn_read(s->conn, n);
    if (err != NULL) {
        s->b_eof = 1;
        s->b_err = err == h2o_socket_error_closed ? NULL : err;
        h2o_socket_read_stop(sock);
    }
    pump(s);
}

static void on_c_read(h2o_socket_t *sock, const char *err)
{
    splice_t *s = sock->data;
    if (err != NULL) {
        client_gone(s);
        return;
    }
    /* a pipelined request waits in the input for h2o; stop reading a client that sends too much of it */
    if (sock->input->size > s->reqsize + CLIENT_INPUT_MAX)
        h2o_socket_read_stop(sock);
}

static void on_poll(h2o_timeout_entry_t *e)
{
    pump(H2O_STRUCT_FROM_MEMBER(splice_t, poll, e));
}

/* The backend's idle timeout, which userspace no longer sees byte by byte: progress is bytes redirected or read. */
static void on_idle(h2o_timeout_entry_t *e)
{
    splice_t *s = H2O_STRUCT_FROM_MEMBER(splice_t, idle, e);
    uint64_t mark = redirected(s) + s->rx;
    int waiting_on_client = s->writing != 0 || s->bsock->input->size != 0;
    if (mark != s->idle_mark || waiting_on_client || s->ending) {
        s->idle_mark = mark;
        s->idle_ticks = 0;
    } else if (s->idle_ms != 0 && ++s->idle_ticks * IDLE_TICK_MS >= s->idle_ms) {
        begin_end(s, "upstream idle timeout", 1);
        return;
    }
    h2o_timeout_link(s->loop, &lists.idle, &s->idle);
}

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
    splice_t *s = data;
    h2o_socket_t *b = s->bsock;
    if (sock == NULL) { /* the head did not go out: the client is gone (h2o closed it) */
        s->end_error = "client went away";
        finish(s, 0);
        return;
    }
    s->csock = sock;
    sock->data = s;
    s->reqsize = reqsize;
    b->data = s;
    remember_last(s, b->input->bytes, s->head_body);
    if (!(s->chunked && stream_ended(s))) {
        s->base = gg_bpf_queued(fd_of(sock));
        uint32_t framing = s->chunked ? GG_BPF_FRAMING_CHUNKED : GG_BPF_FRAMING_CLOSE;
        if (s->base >= 0 && gg_bpf_stream_start(s->flow, fd_of(sock), s->kind, framing, s->rx) == 0) {
            s->armed = 1;
            /* Bytes that came between the head and now went through the verdict as a member's: its tail has them but
             * it did not look for the end in them. Once a stream, it looks at every later skb itself. */
            char t[16];
            size_t n = gg_bpf_stream_tail(s->flow, t, sizeof(t));
            s->ended_early = gg_bpf_stream_tail_ends(t, n, framing);
        } else
            gg_debug("splice: stream not armed; relaying it in userspace");
    }
    h2o_buffer_consume(&b->input, s->head_body);
    s->b_seen = b->input->size;
    h2o_socket_read_start(sock, on_c_read);
    s->idle_mark = s->rx;
    h2o_timeout_link(s->loop, &lists.idle, &s->idle);
    pump(s);
}

int gg_splice_possible(gg_upstream_req_t *up)
{
    return gg_splice_streams() && gg_upstream_detachable(up);
}

void gg_splice_stream(h2o_req_t *req, gg_upstream_req_t *up, h2o_accept_ctx_t *accept_ctx, uint32_t kind, uint32_t idle_ms,
                      gg_splice_done_cb done, void *ctx)
{
    splice_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        h2o_fatal("no memory");
    gg_upstream_detached_t d;
    s->conn = gg_upstream_detach(up, &d);
    if (s->conn == NULL)
        h2o_fatal("gg_splice_stream without gg_splice_possible");
    s->loop = h2o_socket_get_loop(d.sock);
    init_lists(s->loop);
    s->accept_ctx = accept_ctx;
    s->bsock = d.sock;
    s->flow = d.flow;
    s->f = gg_bpf_flow_at(d.flow);
    s->kind = kind;
    s->chunked = d.chunked;
    s->keepalive = d.keepalive;
    s->keepalive_client = req->http1_is_persistent;
    s->rx = d.rx_total;
    s->idle_ms = idle_ms;
    s->done = done;
    s->ctx = ctx;
    s->poll.cb = on_poll;
    s->idle.cb = on_idle;
    atomic_fetch_add_explicit(&active, 1, memory_order_relaxed);
    if (s->chunked)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_TRANSFER_ENCODING, NULL, H2O_STRLIT("chunked"));
    req->res.content_length = SIZE_MAX;
    /* the body bytes already read go out with the head, in one write */
    s->head_body = d.sock->input->size;
    h2o_iovec_t body = h2o_iovec_init(d.sock->input->bytes, d.sock->input->size);
    h2o_http1_upgrade(req, &body, body.len != 0 ? 1 : 0, on_upgraded, s);
}

void gg_splice_tail_events(const char *tail, size_t len, int truncated, void (*cb)(void *ctx, const char *p, size_t n), void *ctx)
{
    size_t at = 0;
    if (truncated) {
        const char *nl = memchr(tail, '\n', len);
        if (nl == NULL)
            return;
        at = (size_t)(nl - tail) + 1;
    }
    while (at < len) {
        const char *nl = memchr(tail + at, '\n', len - at);
        if (nl == NULL)
            return; /* an unterminated last line is no complete event */
        const char *p = tail + at;
        size_t n = (size_t)(nl - p);
        at += n + 1;
        if (n != 0 && p[n - 1] == '\r')
            n--;
        if (n >= 5 && memcmp(p, "data:", 5) == 0) {
            p += 5;
            n -= 5;
            if (n != 0 && *p == ' ') {
                p++;
                n--;
            }
        }
        if (n != 0 && (*p == '{' || *p == '['))
            cb(ctx, p, n);
    }
}
