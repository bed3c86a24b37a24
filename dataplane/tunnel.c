/* The byte tunnel between two sockets (see tunnel.h). Each direction alternates between reading its source and writing
 * what it read to its destination, never both: the bytes in flight are the source's own input buffer, which h2o leaves
 * alone while the source is not reading, so nothing is copied and a slow reader stops the fast writer after at most
 * one socket read of data.
 *
 * Spliced mode (bpf.splice_tunnels on, kernel assist loaded, both sockets plain TCP): the tunnel first writes out what
 * h2o already read, then hands the pair to the sockhash, whose verdict redirects each direction to the other socket
 * in-kernel. Userspace keeps reading both only to learn EOF and to relay a direction the verdict gave back (its reader
 * stalled past GG_BPF_STALL_LIMIT). Before any userspace write into a socket, and before closing, the drain rule holds:
 * everything redirected into that socket is queued on it (bytes acked + send queue >= base + redirected + written),
 * polled every millisecond because the kernel has no event for it. A flow whose byte accounting stops adding up
 * (gg_bpf_desync_reason) has both sockets reset: the peers see a broken tunnel, never a wrong byte. */
#include "gridgate/tunnel.h"

#include <h2o/timeout.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#include "gridgate/bpf.h"
#include "gridgate/log.h"

#define DRAIN_POLL_MS 1
#define DRAIN_MAX_MS 10000 /* a peer that never reads what was redirected to it does not hold the tunnel forever */

enum { RELAY, SPLICE_PENDING, SPLICED };

struct gg_tunnel {
    h2o_socket_t *sock[2];
    size_t inflight[2]; /* bytes of sock[i]->input being written to sock[1 - i] */
    uint8_t eof[2];     /* sock[i] will deliver no more bytes */
    uint8_t closed;
    uint8_t mode;   /* RELAY, SPLICE_PENDING, SPLICED */
    uint8_t ending; /* spliced: an end was seen; closing once the drain rule holds */
    gg_tunnel_stats_t stats;
    gg_tunnel_on_close_cb on_close;
    void *ctx;
    /* spliced mode */
    uint32_t flow;
    struct gg_bpf_flow *f; /* the flow's slot in the mmapped `flows` array */
    int64_t base[2];       /* gg_bpf_queued(sock[i]) when the pair was spliced */
    uint64_t user[2];      /* bytes userspace wrote from sock[i] to sock[1 - i] after splicing */
    const char *end_reason;
    uint64_t drain_polls;
    h2o_loop_t *loop;
    h2o_timeout_entry_t poll;
};

static _Atomic uint64_t active, opened;
static _Atomic int splice_on;

void gg_tunnel_set_splice(int on)
{
    atomic_store_explicit(&splice_on, on != 0, memory_order_relaxed);
}

uint64_t gg_tunnels_active(void)
{
    return atomic_load_explicit(&active, memory_order_relaxed);
}

uint64_t gg_tunnels_opened(void)
{
    return atomic_load_explicit(&opened, memory_order_relaxed);
}

static void finish(gg_tunnel_t *t, const char *reason)
{
    if (t->closed)
        return;
    t->closed = 1;
    t->stats.reason = reason;
    if (t->mode == SPLICED) {
        if (h2o_timeout_is_linked(&t->poll))
            h2o_timeout_unlink(&t->poll);
        uint64_t k0 = __atomic_load_n(&t->f->bytes[0], __ATOMIC_ACQUIRE), k1 = __atomic_load_n(&t->f->bytes[1], __ATOMIC_ACQUIRE);
        t->stats.bytes[0] += k0;
        t->stats.bytes[1] += k1;
        t->stats.spliced_bytes = k0 + k1;
        t->stats.spliced = 1;
        /* Forget the flow before the close takes the sockets out of the sockhash: a last skb then just passes. */
        gg_bpf_splice_del(t->flow, t->stats.spliced_bytes);
    }
    /* Closing a socket with a write in flight is fine: h2o drops a disposed socket's pending callbacks. */
    for (int i = 0; i < 2; i++) {
        t->sock[i]->data = NULL;
        h2o_socket_close(t->sock[i]);
    }
    atomic_fetch_sub_explicit(&active, 1, memory_order_relaxed);
    if (t->on_close != NULL)
        t->on_close(t->ctx, &t->stats);
    free(t);
}

static int side_of(gg_tunnel_t *t, h2o_socket_t *sock)
{
    return sock == t->sock[1];
}

static void on_read(h2o_socket_t *sock, const char *err);
static void on_write_done(h2o_socket_t *sock, const char *err);
static int try_splice(gg_tunnel_t *t);
static int pump_spliced(gg_tunnel_t *t, int i);

/* Moves direction i forward: writes what sock[i] has buffered, else reads more, else ends the tunnel at EOF.
 * Returns 1 when the tunnel is gone. */
/* Writes what sock[i] read to the other socket, not reading sock[i] meanwhile (its input buffer is what is in flight). */
static void relay(gg_tunnel_t *t, int i)
{
    h2o_socket_t *src = t->sock[i];
    h2o_socket_read_stop(src);
    t->inflight[i] = src->input->size;
    h2o_iovec_t buf = h2o_iovec_init(src->input->bytes, src->input->size);
    h2o_socket_write(t->sock[1 - i], &buf, 1, on_write_done);
}

static int reset_if_desynced(gg_tunnel_t *t);

static int pump(gg_tunnel_t *t, int i)
{
    static const char *const eof_reason[2] = {"closed by a", "closed by b"};
    h2o_socket_t *src = t->sock[i];

    if (t->mode == SPLICED)
        return reset_if_desynced(t) || pump_spliced(t, i);
    if (t->inflight[i] != 0)
        return 0;
    if (src->input->size == 0) {
        if (t->eof[i]) {
            finish(t, eof_reason[i]);
            return 1;
        }
        if (t->mode == SPLICE_PENDING)
            return try_splice(t);
        h2o_socket_read_start(src, on_read);
        return 0;
    }
    relay(t, i);
    return 0;
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    gg_tunnel_t *t = sock->data;
    int i = side_of(t, sock);
    if (err != NULL) {
        /* h2o reports EOF or an error only for a read that brought nothing; what came before still goes out. */
        t->eof[i] = 1;
        h2o_socket_read_stop(sock);
    }
    pump(t, i);
}

static void on_write_done(h2o_socket_t *sock, const char *err)
{
    static const char *const write_reason[2] = {"write to b failed", "write to a failed"};
    gg_tunnel_t *t = sock->data;
    int i = 1 - side_of(t, sock); /* the direction that writes into sock */
    if (err != NULL) {
        finish(t, write_reason[i]);
        return;
    }
    h2o_buffer_consume(&t->sock[i]->input, t->inflight[i]);
    t->stats.bytes[i] += t->inflight[i];
    if (t->mode == SPLICED) {
        /* published only now that write() returned: the verdict re-arms on user_bytes == pass_bytes */
        t->user[i] += t->inflight[i];
        __atomic_store_n(&t->f->user_bytes[i], t->user[i], __ATOMIC_RELEASE);
    }
    t->inflight[i] = 0;
    pump(t, i);
}

/* --- spliced mode ------------------------------------------------------------------------------- */

static int fd_of(h2o_socket_t *s)
{
    return h2o_socket_get_fd(s);
}

static int plain_tcp(h2o_socket_t *s)
{
    int proto = 0;
    socklen_t len = sizeof(proto);
    return s->ssl == NULL && getsockopt(fd_of(s), SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP;
}

/* The drain rule for direction i: everything redirected from sock[i] and written by us is queued on sock[1 - i]
 * (or that socket is closed and nothing more will be). */
static int drained(gg_tunnel_t *t, int i)
{
    uint64_t redirected = __atomic_load_n(&t->f->bytes[i], __ATOMIC_ACQUIRE);
    int fd = fd_of(t->sock[1 - i]);
    int64_t q = gg_bpf_queued(fd);
    if (q < 0)
        return 1;
    if ((uint64_t)q >= (uint64_t)t->base[1 - i] + redirected + t->user[i])
        return 1;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE;
}

/* One drain-poll list per loop, shared by its tunnels and never disposed: a tunnel that ends inside the list's own
 * run must not free the list being walked. */
static __thread struct {
    h2o_loop_t *loop;
    h2o_timeout_t list;
} drain_poll;

static void arm_poll(gg_tunnel_t *t)
{
    if (drain_poll.loop != t->loop) {
        h2o_timeout_init(t->loop, &drain_poll.list, DRAIN_POLL_MS);
        drain_poll.loop = t->loop;
    }
    if (!h2o_timeout_is_linked(&t->poll))
        h2o_timeout_link(t->loop, &drain_poll.list, &t->poll);
}

/* Which side ended it: a sockmap error can surface on the socket opposite the one that closed, so ask both. */
static const char *end_reason(gg_tunnel_t *t)
{
    static const char *const closed_by[2] = {"closed by a", "closed by b"};
    for (int k = 0; k < 2; k++) {
        char c;
        if (recv(fd_of(t->sock[k]), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
            return closed_by[k];
    }
    return t->end_reason;
}

/* Spliced end: both directions drain (what either side sent reaches the other) before both close. Returns 1 when the
 * tunnel is gone. */
static int check_end(gg_tunnel_t *t)
{
    int done = 1;
    for (int k = 0; k < 2; k++) {
        if (t->inflight[k] != 0) {
            done = 0;
        } else if (t->sock[k]->input->size != 0) {
            done = 0;
            pump_spliced(t, k); /* while ending it only writes, never ends the tunnel */
        } else if (!drained(t, k)) {
            done = 0;
        }
    }
    if (done) {
        finish(t, end_reason(t));
        return 1;
    }
    if (++t->drain_polls > DRAIN_MAX_MS / DRAIN_POLL_MS) {
        finish(t, "drain timed out");
        return 1;
    }
    arm_poll(t);
    return 0;
}

static int begin_end(gg_tunnel_t *t, const char *reason)
{
    if (t->ending)
        return 0;
    t->ending = 1;
    t->end_reason = reason;
    for (int k = 0; k < 2; k++)
        h2o_socket_read_stop(t->sock[k]);
    return check_end(t);
}

static int pump_spliced(gg_tunnel_t *t, int i)
{
    static const char *const eof_reason[2] = {"closed by a", "closed by b"};
    h2o_socket_t *src = t->sock[i];
    if (t->inflight[i] != 0)
        return 0;
    if (src->input->size == 0) {
        if (t->ending)
            return 0; /* check_end polls */
        if (t->eof[i])
            return begin_end(t, eof_reason[i]);
        /* Caught up after a stall: let the verdict take the direction back once all it passed is written out. */
        if (__atomic_load_n(&t->f->mode[i], __ATOMIC_ACQUIRE) == GG_BPF_FLOW_PASS)
            __atomic_store_n(&t->f->mode[i], GG_BPF_FLOW_ARMED, __ATOMIC_RELEASE);
        h2o_socket_read_start(src, on_read);
        return 0;
    }
    /* The verdict gave this direction back to us: its bytes go out only after what it redirected is queued. */
    if (!drained(t, i)) {
        h2o_socket_read_stop(src);
        arm_poll(t);
        return 0;
    }
    relay(t, i);
    return 0;
}

/* What we read from sock[i] since the splice (written out or still in its input) is all the verdict may have passed
 * us; a flow the verdict marked, or one where we read more, gets both sides reset. Returns 1 when the tunnel is gone. */
static int reset_if_desynced(gg_tunnel_t *t)
{
    const char *why = NULL;
    for (int i = 0; i < 2 && why == NULL; i++)
        why = gg_bpf_desync_reason(t->f, i, t->user[i] + t->sock[i]->input->size);
    if (why == NULL)
        return 0;
    gg_bpf_desync_reset(fd_of(t->sock[0]), fd_of(t->sock[1]));
    finish(t, why);
    return 1;
}

static void on_poll(h2o_timeout_entry_t *e)
{
    gg_tunnel_t *t = H2O_STRUCT_FROM_MEMBER(gg_tunnel_t, poll, e);
    if (reset_if_desynced(t))
        return;
    if (t->ending) {
        check_end(t);
        return;
    }
    if (pump_spliced(t, 0) == 0)
        pump_spliced(t, 1);
}

/* Both input buffers are flushed and neither socket is being read: hand the pair to the kernel. Returns 1 when the
 * tunnel is gone. */
static int try_splice(gg_tunnel_t *t)
{
    if (t->inflight[0] || t->inflight[1] || t->sock[0]->input->size || t->sock[1]->input->size)
        return 0;
    /* Bytes already in a receive queue are relayed by us first, so the kick in gg_bpf_splice_add is there only for the
     * few that land between this check and the insertion. */
    int pending = 0;
    for (int i = 0; i < 2; i++) {
        int inq = 0;
        if (ioctl(fd_of(t->sock[i]), SIOCINQ, &inq) == 0 && inq > 0) {
            h2o_socket_read_start(t->sock[i], on_read);
            pending = 1;
        }
    }
    if (pending)
        return 0;
    int64_t q0 = gg_bpf_queued(fd_of(t->sock[0])), q1 = gg_bpf_queued(fd_of(t->sock[1]));
    int rc = q0 < 0   ? (int)q0
             : q1 < 0 ? (int)q1
                      : gg_bpf_splice_add(fd_of(t->sock[0]), fd_of(t->sock[1]), GG_BPF_FLOW_TUNNEL, &t->flow);
    if (rc != 0) {
        gg_debug("tunnel: not spliced (%d); relaying in userspace", rc);
        t->mode = RELAY;
    } else {
        t->mode = SPLICED;
        t->f = gg_bpf_flow_at(t->flow);
        t->base[0] = q0;
        t->base[1] = q1;
        t->loop = h2o_socket_get_loop(t->sock[0]);
        t->poll.cb = on_poll;
    }
    for (int i = 0; i < 2; i++)
        if (pump(t, i))
            return 1;
    return 0;
}

gg_tunnel_t *gg_tunnel_start(h2o_socket_t *a, h2o_socket_t *b, gg_tunnel_on_close_cb on_close, void *ctx)
{
    gg_tunnel_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        h2o_fatal("no memory");
    t->sock[0] = a;
    t->sock[1] = b;
    t->on_close = on_close;
    t->ctx = ctx;
    a->data = t;
    b->data = t;
    atomic_fetch_add_explicit(&active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&opened, 1, memory_order_relaxed);
    if (atomic_load_explicit(&splice_on, memory_order_relaxed) && gg_bpf_splice_ready() && plain_tcp(a) && plain_tcp(b)) {
        t->mode = SPLICE_PENDING;
        h2o_socket_read_stop(a);
        h2o_socket_read_stop(b);
    }
    /* Neither call can end the tunnel: EOF is only ever learnt from a read, which comes later. */
    if (pump(t, 0) == 0)
        pump(t, 1);
    return t;
}

void gg_tunnel_close(gg_tunnel_t *t)
{
    finish(t, "closed");
}
