/* Tests dataplane/tunnel.c over real socket pairs on an h2o evloop: pending bytes go first, both directions relay,
 * a large transfer through a slow reader arrives intact, and either side closing closes the other and reports. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <h2o.h>

#include "gridgate/tunnel.h"
#include "test.h"

static h2o_evloop_t *loop;

struct end {
    int outer;          /* the test's end of the pair */
    h2o_socket_t *sock; /* the tunnel's end */
};

struct closed {
    int calls;
    gg_tunnel_stats_t stats;
};

static void on_close(void *ctx, const gg_tunnel_stats_t *s)
{
    struct closed *c = ctx;
    c->calls++;
    c->stats = *s;
}

static struct end make_end(void)
{
    int fds[2];
    struct end e = {-1, NULL};
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        return e;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    e.outer = fds[0];
    e.sock = h2o_evloop_socket_create(loop, fds[1], 0);
    return e;
}

static void spin(int n)
{
    for (int i = 0; i < n; i++)
        h2o_evloop_run(loop, 1);
}

/* Reads what is available from fd into buf (appending at *len) while running the loop, until `want` bytes or EOF. */
static int read_until(int fd, char *buf, size_t *len, size_t want, int *eof)
{
    for (int i = 0; i < 2000 && *len < want && !*eof; i++) {
        h2o_evloop_run(loop, 1);
        ssize_t r = read(fd, buf + *len, want - *len);
        if (r == 0)
            *eof = 1;
        else if (r > 0)
            *len += r;
    }
    return *len == want;
}

static void test_relay_and_pending(void)
{
    struct end a = make_end(), b = make_end();
    struct closed cl = {0};
    /* bytes the caller already read from b (e.g. after a 101 head) */
    h2o_iovec_t room = h2o_buffer_reserve(&b.sock->input, 5);
    memcpy(room.base, "early", 5);
    b.sock->input->size += 5;

    gg_tunnel_t *t = gg_tunnel_start(a.sock, b.sock, on_close, &cl);
    CHECK(t != NULL);
    CHECK_EQ_INT(gg_tunnels_active(), 1);
    char buf[64] = {0};
    size_t len = 0;
    int eof = 0;
    CHECK(read_until(a.outer, buf, &len, 5, &eof));
    CHECK(memcmp(buf, "early", 5) == 0);

    CHECK_EQ_INT(write(a.outer, "ping", 4), 4);
    len = 0;
    CHECK(read_until(b.outer, buf, &len, 4, &eof));
    CHECK(memcmp(buf, "ping", 4) == 0);
    CHECK_EQ_INT(write(b.outer, "pong!", 5), 5);
    len = 0;
    CHECK(read_until(a.outer, buf, &len, 5, &eof));
    CHECK(memcmp(buf, "pong!", 5) == 0);

    /* a closes: what it sent last still arrives, then b sees EOF */
    CHECK_EQ_INT(write(a.outer, "bye", 3), 3);
    close(a.outer);
    len = 0;
    CHECK(read_until(b.outer, buf, &len, sizeof(buf), &eof) == 0);
    CHECK_EQ_INT(len, 3);
    CHECK(eof);
    spin(5);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK_EQ_STR(cl.stats.reason, "closed by a");
    CHECK_EQ_INT(cl.stats.bytes[0], 7);
    CHECK_EQ_INT(cl.stats.bytes[1], 10);
    CHECK_EQ_INT(gg_tunnels_active(), 0);
    close(b.outer);
}

static void test_large_slow_reader(void)
{
    struct end a = make_end(), b = make_end();
    struct closed cl = {0};
    gg_tunnel_start(a.sock, b.sock, on_close, &cl);
    size_t total = 8 << 20, sent = 0, got = 0;
    char *src = malloc(total), *dst = malloc(total);
    for (size_t i = 0; i < total; i++)
        src[i] = (char)(i * 2654435761u >> 13);
    /* b's reader takes at most 4 KB per turn: the writer must be held back, not the bytes lost or reordered */
    for (int i = 0; i < 200000 && got < total; i++) {
        if (sent < total) {
            ssize_t w = write(a.outer, src + sent, total - sent);
            if (w > 0)
                sent += w;
        }
        h2o_evloop_run(loop, 0);
        ssize_t r = read(b.outer, dst + got, 4096 < total - got ? 4096 : total - got);
        if (r > 0)
            got += r;
    }
    CHECK_EQ_INT(got, total);
    CHECK(memcmp(src, dst, total) == 0);
    free(src);
    free(dst);
    /* b closes this time */
    close(b.outer);
    spin(20);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK_EQ_STR(cl.stats.reason, "closed by b");
    char c;
    int eof = 0;
    size_t len = 0;
    read_until(a.outer, &c, &len, 1, &eof);
    CHECK(eof);
    close(a.outer);
    CHECK_EQ_INT(gg_tunnels_opened(), 2);
}

static void test_close_api(void)
{
    struct end a = make_end(), b = make_end();
    struct closed cl = {0};
    gg_tunnel_t *t = gg_tunnel_start(a.sock, b.sock, on_close, &cl);
    spin(2);
    gg_tunnel_close(t);
    CHECK_EQ_INT(cl.calls, 1);
    int eof_a = 0, eof_b = 0;
    char c;
    size_t la = 0, lb = 0;
    read_until(a.outer, &c, &la, 1, &eof_a);
    read_until(b.outer, &c, &lb, 1, &eof_b);
    CHECK(eof_a && eof_b);
    close(a.outer);
    close(b.outer);
    CHECK_EQ_INT(gg_tunnels_active(), 0);
}

static void setup(void)
{
    loop = h2o_evloop_create();
}

TEST_MAIN(setup, test_relay_and_pending, test_large_slow_reader, test_close_api)
