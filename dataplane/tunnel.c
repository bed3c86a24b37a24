/* The byte tunnel between two sockets (see tunnel.h). Each direction alternates between reading its source and writing
 * what it read to its destination, never both: the bytes in flight are the source's own input buffer, which h2o leaves
 * alone while the source is not reading, so nothing is copied and a slow reader stops the fast writer after at most
 * one socket read of data. */
#include "gridgate/tunnel.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "gridgate/log.h"

struct gg_tunnel {
    h2o_socket_t *sock[2];
    size_t inflight[2]; /* bytes of sock[i]->input being written to sock[1 - i] */
    uint8_t eof[2];     /* sock[i] will deliver no more bytes */
    uint8_t closed;
    gg_tunnel_stats_t stats;
    gg_tunnel_on_close_cb on_close;
    void *ctx;
};

static _Atomic uint64_t active, opened;

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

/* Moves direction i forward: writes what sock[i] has buffered, else reads more, else ends the tunnel at EOF.
 * Returns 1 when the tunnel is gone. */
static int pump(gg_tunnel_t *t, int i)
{
    static const char *const eof_reason[2] = {"closed by a", "closed by b"};
    h2o_socket_t *src = t->sock[i];

    if (t->inflight[i] != 0)
        return 0;
    if (src->input->size == 0) {
        if (t->eof[i]) {
            finish(t, eof_reason[i]);
            return 1;
        }
        h2o_socket_read_start(src, on_read);
        return 0;
    }
    h2o_socket_read_stop(src);
    t->inflight[i] = src->input->size;
    h2o_iovec_t buf = h2o_iovec_init(src->input->bytes, src->input->size);
    h2o_socket_write(t->sock[1 - i], &buf, 1, on_write_done);
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
    t->inflight[i] = 0;
    pump(t, i);
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
    /* Neither call can end the tunnel: EOF is only ever learnt from a read, which comes later. */
    pump(t, 0);
    pump(t, 1);
    return t;
}

void gg_tunnel_close(gg_tunnel_t *t)
{
    finish(t, "closed");
}
