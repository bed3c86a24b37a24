/* Tests control/bpf.c and the spliced mode of dataplane/tunnel.c as root on loopback TCP: pinned maps survive a
 * reload and are recreated on an ABI mismatch; a spliced pair is byte-exact both ways in bulk (also over a lossy
 * loopback, where retransmits overlap what was received) and in many small chunks, bytes queued before the splice
 * are not stuck, an skb partly read before it goes on without the read part, counters equal the bytes sent, either
 * side's close or reset ends the tunnel after the drain, and a stalled reader bounds what the kernel holds (then
 * still gets every byte in order). Without privileges it says so and checks that the fallback is clean. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <h2o.h>

#include "gridgate/backend.h"
#include "gridgate/bpf.h"
#include "gridgate/config.h"
#include "gridgate/guard.h"
#include "gridgate/tunnel.h"
#include "test.h"

static h2o_evloop_t *loop;
static char pin[128];
static int listener = -1;

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

struct end {
    int outer;          /* the test's end */
    int inner;          /* the tunnel's end (fd) */
    h2o_socket_t *sock; /* the tunnel's end */
};

static struct end make_end(void)
{
    struct end e = {-1, -1, NULL};
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    getsockname(listener, (struct sockaddr *)&sa, &len);
    e.outer = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(e.outer, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return e;
    e.inner = accept(listener, NULL, NULL);
    fcntl(e.inner, F_SETFL, O_NONBLOCK);
    return e;
}

static void wrap(struct end *e)
{
    e->sock = h2o_evloop_socket_create(loop, e->inner, 0);
}

static int map_fd(const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", pin, name);
    return bpf_obj_get(p);
}

/* A counter of the per-CPU `stats` map, summed over CPUs. */
static uint64_t stat_sum(uint32_t reason)
{
    int fd = map_fd("stats"), ncpu = libbpf_num_possible_cpus();
    uint64_t sum = 0;
    struct gg_bpf_stat_val *v = calloc((size_t)ncpu, sizeof(*v));
    if (fd >= 0 && v != NULL && bpf_map_lookup_elem(fd, &reason, v) == 0)
        for (int i = 0; i < ncpu; i++)
            sum += v[i].value;
    free(v);
    if (fd >= 0)
        close(fd);
    return sum;
}

static void spin(int n)
{
    for (int i = 0; i < n; i++)
        h2o_evloop_run(loop, 1);
}

/* Two connected ends handed to a new tunnel, whose close is recorded in *cl. */
static void start_tunnel(struct end *a, struct end *b, struct closed *cl)
{
    *a = make_end();
    *b = make_end();
    wrap(a);
    wrap(b);
    *cl = (struct closed){0};
    gg_tunnel_start(a->sock, b->sock, on_close, cl);
}

/* One recv of up to len bytes from the test's end fd, running the loop until something comes (about 2 s at most). */
static ssize_t recv_spinning(int fd, char *buf, size_t len)
{
    ssize_t n = 0;
    for (int i = 0; i < 2000 && n <= 0; i++) {
        n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n <= 0)
            h2o_evloop_run(loop, 1);
    }
    return n;
}

/* Runs the loop until the tunnel has closed, for at most about ms milliseconds. */
static void wait_closed(const struct closed *cl, int ms)
{
    for (int i = 0; i < ms && cl->calls == 0; i++)
        h2o_evloop_run(loop, 1);
}

static uint8_t pattern(uint64_t k, int dir)
{
    return (uint8_t)((k * 2654435761u >> 11) + dir * 77);
}

struct xfer {
    int fd, dir;
    uint64_t total;
    size_t chunk;
    uint64_t done;
    int bad;         /* reader: first mismatch seen */
    uint64_t bad_at; /* reader: its offset */
    int64_t shift;   /* reader: where the bytes there came from, relative to it (0: not found nearby) */
    unsigned lag_us; /* reader: pause after each read */
    _Atomic int finished;
};

/* Where the len bytes received at offset at were sent from: the offset difference, searched within 4 MB either way
 * over the first 16 bytes; 0 if not found. Tells a repeat (negative) from a skip (positive) from garbage. */
static int64_t find_shift(const uint8_t *got, size_t len, uint64_t at, int dir)
{
    size_t n = len < 16 ? len : 16;
    for (int64_t d = 1; d < (4 << 20); d++)
        for (int sign = -1; sign <= 1; sign += 2) {
            int64_t from = (int64_t)at + sign * d;
            size_t k = 0;
            while (from >= 0 && k < n && got[k] == pattern((uint64_t)from + k, dir))
                k++;
            if (from >= 0 && k == n)
                return sign * d;
        }
    return 0;
}

static void *writer(void *arg)
{
    struct xfer *x = arg;
    uint8_t *buf = malloc(x->chunk);
    while (x->done < x->total) {
        size_t n = x->total - x->done < x->chunk ? x->total - x->done : x->chunk;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(x->done + i, x->dir);
        ssize_t w = write(x->fd, buf, n);
        if (w <= 0)
            break;
        x->done += w;
    }
    free(buf);
    atomic_store(&x->finished, 1);
    return NULL;
}

static void *reader(void *arg)
{
    struct xfer *x = arg;
    uint8_t *buf = malloc(1 << 16);
    while (x->done < x->total) {
        ssize_t r = read(x->fd, buf, 1 << 16);
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r && !x->bad; i++)
            if (buf[i] != pattern(x->done + i, x->dir)) {
                x->bad = 1;
                x->bad_at = x->done + i;
                x->shift = find_shift(buf + i, (size_t)(r - i), x->bad_at, x->dir);
            }
        x->done += r;
        if (x->lag_us)
            usleep(x->lag_us);
    }
    free(buf);
    atomic_store(&x->finished, 1);
    return NULL;
}

/* Runs the loop until every reader has finished, or none has moved for STALL_S seconds: then it says how far each got
 * and shuts the test's ends, so the blocked threads return and the checks that follow fail instead of hanging. */
#define STALL_S 20
static void run_until_read(struct xfer *const *readers, int n)
{
    uint64_t last = UINT64_MAX;
    time_t moved = time(NULL);
    for (;;) {
        uint64_t sum = 0;
        int finished = 1;
        for (int k = 0; k < n; k++) {
            sum += readers[k]->done;
            finished &= readers[k]->finished;
        }
        if (finished)
            return;
        if (sum != last) {
            last = sum;
            moved = time(NULL);
        } else if (time(NULL) - moved > STALL_S) {
            for (int k = 0; k < n; k++) {
                fprintf(stderr, "stalled: reader %d has %llu of %llu B\n", k, (unsigned long long)readers[k]->done,
                        (unsigned long long)readers[k]->total);
                shutdown(readers[k]->fd, SHUT_RDWR);
            }
            for (uint32_t r = 0; r < GG_BPF_STAT_COUNT; r++)
                fprintf(stderr, "stats[%u] = %llu\n", r, (unsigned long long)stat_sum(r));
            return;
        }
        h2o_evloop_run(loop, 10);
    }
}

/* A reader's mismatch, if any: where, and where those bytes were sent from. */
static void report_bad(const char *name, const struct xfer *x)
{
    if (!x->bad)
        return;
    const char *where = x->shift < 0 ? "earlier" : x->shift > 0 ? "later" : "nowhere nearby";
    fprintf(stderr, "%s: first wrong byte at %llu; it came from %lld B %s\n", name, (unsigned long long)x->bad_at,
            (long long)llabs(x->shift), where);
}

/* Both directions at once through a spliced tunnel; returns the closed record after a closes. */
static void run_both_ways(uint64_t total, size_t chunk)
{
    struct end a = make_end(), b = make_end();
    uint64_t cut_before = stat_sum(GG_BPF_STAT_REPEAT_BYTES);
    /* bytes that arrive before the splice must not be stuck in the receive queue */
    CHECK_EQ_INT(write(a.outer, "early", 5), 5);
    usleep(20000);
    wrap(&a);
    wrap(&b);
    struct closed cl = {0};
    gg_tunnel_start(a.sock, b.sock, on_close, &cl);
    char early[5] = {0};
    ssize_t got = -1;
    for (int i = 0; i < 5 && got <= 0; i++) /* over the lossy loopback a resend can wait out a 3 s RTO */
        got = recv_spinning(b.outer, early, 5);
    CHECK_EQ_INT(got, 5);
    CHECK(memcmp(early, "early", 5) == 0);

    struct xfer xs[4] = {
        {a.outer, 0, total, chunk}, {b.outer, 0, total, 1 << 16}, {b.outer, 1, total, chunk}, {a.outer, 1, total, 1 << 16}};
    pthread_t th[4];
    pthread_create(&th[0], NULL, writer, &xs[0]);
    pthread_create(&th[1], NULL, reader, &xs[1]);
    pthread_create(&th[2], NULL, writer, &xs[2]);
    pthread_create(&th[3], NULL, reader, &xs[3]);
    run_until_read((struct xfer *const[]){&xs[1], &xs[3]}, 2);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    report_bad("a to b", &xs[1]);
    report_bad("b to a", &xs[3]);
    CHECK_EQ_INT(xs[1].done, total);
    CHECK_EQ_INT(xs[3].done, total);
    CHECK_EQ_INT(xs[1].bad, 0);
    CHECK_EQ_INT(xs[3].bad, 0);
    close(a.outer);
    wait_closed(&cl, 5000);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK_EQ_INT(cl.stats.spliced, 1);
    CHECK_EQ_STR(cl.stats.reason, "closed by a");
    /* counters equal the bytes sent (the 5 early ones crossed too); part went in-kernel, the rest through the
     * userspace fallback after a reader lagged more than GG_BPF_STALL_LIMIT behind */
    CHECK_EQ_INT(cl.stats.bytes[0], total + 5);
    CHECK_EQ_INT(cl.stats.bytes[1], total);
    CHECK(cl.stats.spliced_bytes > 0);
    CHECK(cl.stats.spliced_bytes <= 2 * total + 5);
    fprintf(stderr, "%llu B both ways in %zu B writes: %.1f%% in-kernel, %llu repeated bytes cut\n", (unsigned long long)total,
            chunk, 100.0 * cl.stats.spliced_bytes / (2 * total + 5),
            (unsigned long long)(stat_sum(GG_BPF_STAT_REPEAT_BYTES) - cut_before));
    char c;
    CHECK_EQ_INT(read(b.outer, &c, 1), 0);
    close(b.outer);
}

static void test_bulk(void)
{
    uint64_t before = gg_bpf_spliced_streams();
    run_both_ways(100u << 20, 1 << 16);
    CHECK_EQ_INT(gg_bpf_spliced_streams(), before + 1);
}

/* A listener on 127.0.0.1, any port, in the process's current network namespace. */
static int listen_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    listen(fd, 256);
    return fd;
}

/* TCP's RetransSegs counter in the current network namespace (/proc/net/snmp), or -1. */
static long tcp_retrans_segs(void)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    char names[1024], values[1024];
    long v = -1;
    while (f != NULL && fgets(names, sizeof(names), f) != NULL && fgets(values, sizeof(values), f) != NULL) {
        if (strncmp(names, "Tcp:", 4) != 0)
            continue;
        char *np, *vp, *n = strtok_r(names, " \n", &np), *x = strtok_r(values, " \n", &vp);
        for (; n != NULL && x != NULL; n = strtok_r(NULL, " \n", &np), x = strtok_r(NULL, " \n", &vp))
            if (strcmp(n, "RetransSegs") == 0)
                v = atol(x);
    }
    if (f != NULL)
        fclose(f);
    return v;
}

/* The bulk transfer again over a loopback that drops one TCP segment in LOSSY_ONE_IN (an nftables rule in a network
 * namespace of the process's own). Senders retransmit, and retransmits that overlap bytes already received reach the
 * verdict whole: drop_repeat() must cut them, or bytes go out twice. Every byte still arrives once, in order. */
#define LOSSY_ONE_IN 20
static void test_bulk_lossy(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "ip link set lo up && nft add table inet gg_lossy && "
             "nft add chain inet gg_lossy in '{ type filter hook input priority 0; }' && "
             "nft add rule inet gg_lossy in meta l4proto tcp numgen random mod %d 0 drop",
             LOSSY_ONE_IN);
    CHECK_EQ_INT(unshare(CLONE_NEWNET), 0);
    CHECK_EQ_INT(system(cmd), 0);
    close(listener);
    listener = listen_loopback();
    run_both_ways(100u << 20, 1 << 16);
    long retrans = tcp_retrans_segs();
    fprintf(stderr, "lossy loopback: %ld segments retransmitted\n", retrans);
    CHECK(retrans > 0); /* the loss was real */
}

static void test_small_chunks(void)
{
    run_both_ways(200000u * 100, 100);
}

/* Bytes read off an skb before the splice must not go out again. The tunnel reads a receive queue empty before it
 * splices, but gg_bpf_splice_add() promises no more than "everything read was written out": with an skb partly read,
 * the kernel hands the verdict that skb whole, and the verdict cuts off the part already read (drop_repeat() in
 * bpf/gridgate.bpf.c). The same cut handles a retransmit that overlaps bytes already received, which a test cannot
 * make happen on demand. */
static void test_partly_read_skb(void)
{
    struct end a = make_end(), b = make_end();
    char out[2000], in[2000];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)(i * 7 % 251);
    CHECK_EQ_INT(write(a.outer, out, 1000), 1000);
    usleep(20000);
    /* one skb of 1000 bytes is queued; read 400 of it, as a relay does whose buffer was smaller */
    CHECK_EQ_INT(recv(a.inner, in, 400, 0), 400);
    CHECK(memcmp(in, out, 400) == 0);
    uint64_t cut_before = stat_sum(GG_BPF_STAT_REPEAT_BYTES);
    uint32_t flow;
    CHECK_EQ_INT(gg_bpf_splice_add(a.inner, b.inner, GG_BPF_FLOW_TUNNEL, &flow), 0);
    CHECK_EQ_INT(write(a.outer, out + 1000, 1000), 1000);
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(in) && (n = recv_spinning(b.outer, in + got, sizeof(in) - got)) > 0)
        got += (size_t)n;
    CHECK_EQ_INT(got, 1600);
    CHECK(memcmp(in, out + 400, 1600) == 0);
    CHECK_EQ_INT(stat_sum(GG_BPF_STAT_REPEAT_BYTES) - cut_before, 400);
    gg_bpf_splice_del(flow, 0);
    close(a.inner);
    close(b.inner);
    close(a.outer);
    close(b.outer);
}

/* bpf.splice_tunnels off: the kernel assist is loaded, yet the tunnel relays in userspace */
static void test_splice_switch(void)
{
    gg_tunnel_set_splice(0);
    struct end a, b;
    struct closed cl;
    start_tunnel(&a, &b, &cl);
    CHECK_EQ_INT(write(a.outer, "ping", 4), 4);
    char got[4] = {0};
    CHECK_EQ_INT(recv_spinning(b.outer, got, 4), 4);
    close(a.outer);
    wait_closed(&cl, 2000);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK_EQ_INT(cl.stats.spliced, 0);
    CHECK_EQ_INT(cl.stats.bytes[0], 4);
    close(b.outer);
    gg_tunnel_set_splice(1);
}

/* One way, a writer far faster than its reader, which pauses after every read: the redirect target's send buffer
 * fills again and again and the direction falls back to userspace mid-stream. Every byte arrives once, in order. */
static void test_lagging_reader(void)
{
    struct end a, b;
    struct closed cl;
    start_tunnel(&a, &b, &cl);
    uint64_t total = 48u << 20;
    struct xfer xs[2] = {{a.outer, 0, total, 1 << 16}, {b.outer, 0, total, 0}};
    xs[1].lag_us = 30;
    pthread_t th[2];
    pthread_create(&th[0], NULL, writer, &xs[0]);
    pthread_create(&th[1], NULL, reader, &xs[1]);
    run_until_read((struct xfer *const[]){&xs[1]}, 1);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    report_bad("a to b", &xs[1]);
    CHECK_EQ_INT(xs[1].done, total);
    CHECK_EQ_INT(xs[1].bad, 0);
    close(a.outer);
    wait_closed(&cl, 5000);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK_EQ_INT(cl.stats.bytes[0], total);
    fprintf(stderr, "lagging reader: %.1f%% in-kernel\n", 100.0 * cl.stats.spliced_bytes / total);
    char c;
    CHECK_EQ_INT(read(b.outer, &c, 1), 0);
    close(b.outer);
}

/* a sends, then resets (or closes) while b has not read yet: b still gets every byte a sent before, then EOF */
static void test_abort(int reset_side_b)
{
    struct end a, b;
    struct closed cl;
    start_tunnel(&a, &b, &cl);
    spin(3);
    static char big[1 << 20];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = pattern(i, 0);
    if (reset_side_b) {
        /* the backend side resets mid-splice: the client sees the tunnel end */
        struct linger lg = {1, 0};
        setsockopt(b.outer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(b.outer);
        wait_closed(&cl, 5000);
        CHECK_EQ_INT(cl.calls, 1);
        char c;
        ssize_t r = read(a.outer, &c, 1);
        CHECK(r <= 0);
        close(a.outer);
        return;
    }
    size_t sent = 0;
    while (sent < sizeof(big)) {
        ssize_t w = write(a.outer, big + sent, sizeof(big) - sent);
        if (w <= 0)
            break;
        sent += w;
    }
    close(a.outer); /* FIN with data still queued in-kernel toward b */
    static char got[1 << 20];
    size_t n = 0;
    int eof = 0;
    for (int i = 0; i < 20000 && !eof; i++) {
        h2o_evloop_run(loop, 1);
        ssize_t r = recv(b.outer, got + n, sizeof(got) - n, MSG_DONTWAIT);
        if (r == 0)
            eof = 1;
        else if (r > 0)
            n += r;
    }
    CHECK(eof);
    CHECK_EQ_INT(n, sent);
    CHECK(memcmp(got, big, n) == 0);
    CHECK_EQ_INT(cl.calls, 1);
    close(b.outer);
}

static void test_client_abort(void)
{
    test_abort(0);
}

static void test_backend_reset(void)
{
    test_abort(1);
}

/* b never reads: what a can push into the pair stays bounded; once b reads, every byte arrives in order */
static uint64_t cookie_of(int fd)
{
    uint64_t c = 0;
    socklen_t len = sizeof(c);
    getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len);
    return c;
}

/* The flow slot whose side a is the socket with this cookie. */
static struct gg_bpf_flow *flow_of(uint64_t cookie)
{
    for (uint32_t i = 0; i < GG_BPF_MAX_FLOWS; i++) {
        struct gg_bpf_flow *f = gg_bpf_flow_at(i);
        if (f != NULL && f->cookie[0] == cookie)
            return f;
    }
    return NULL;
}

/* This process's `ends` map (not pinned): the map of that name that holds the cookie. */
static int ends_fd_for(uint64_t cookie)
{
    uint32_t id = 0;
    while (bpf_map_get_next_id(id, &id) == 0) {
        int fd = bpf_map_get_fd_by_id(id);
        if (fd < 0)
            continue;
        struct bpf_map_info info = {0};
        uint32_t len = sizeof(info);
        struct gg_bpf_end e;
        if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && strcmp(info.name, "ends") == 0 &&
            bpf_map_lookup_elem(fd, &cookie, &e) == 0)
            return fd;
        close(fd);
    }
    return -1;
}

/* A spliced tunnel a -> b carries "hello" in-kernel; then `desync` breaks its accounting and 100 more bytes are sent.
 * None of them reaches b: both ends get a reset, the tunnel's reason names the desync, and it is counted. */
static void check_desync_reset(void (*desync)(struct end *a), const char *reason)
{
    struct end a, b;
    struct closed cl;
    start_tunnel(&a, &b, &cl);
    spin(3);
    uint64_t redirects = stat_sum(GG_BPF_STAT_REDIRECT), resets = gg_bpf_desyncs();
    CHECK_EQ_INT(write(a.outer, "hello", 5), 5);
    char got[128];
    CHECK_EQ_INT(recv_spinning(b.outer, got, sizeof(got)), 5);
    CHECK(stat_sum(GG_BPF_STAT_REDIRECT) > redirects);
    desync(&a);
    char more[100];
    memset(more, 'x', sizeof(more));
    CHECK_EQ_INT(write(a.outer, more, sizeof(more)), (ssize_t)sizeof(more));
    wait_closed(&cl, 5000);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK(cl.stats.reason != NULL && strncmp(cl.stats.reason, reason, strlen(reason)) == 0);
    CHECK_EQ_INT(gg_bpf_desyncs() - resets, 1);
    /* b may first read what userspace relayed before the desync; then the reset, and never an 'x' */
    struct timeval limit = {.tv_sec = 2};
    setsockopt(a.outer, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    setsockopt(b.outer, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    ssize_t n;
    int xs = 0;
    errno = 0;
    while ((n = recv(b.outer, got, sizeof(got), 0)) > 0)
        xs += memchr(got, 'x', (size_t)n) != NULL;
    CHECK(n < 0 && errno == ECONNRESET);
    CHECK_EQ_INT(xs, 0);
    errno = 0;
    n = recv(a.outer, got, sizeof(got), 0);
    CHECK(n < 0 && errno == ECONNRESET);
    close(a.outer);
    close(b.outer);
}

/* The socket's copied_seq passes the verdict's next byte (as if something had read 1000 bytes behind its back). */
static void seq_ahead(struct end *a)
{
    uint64_t c = cookie_of(a->inner);
    int fd = ends_fd_for(c);
    struct gg_bpf_end e;
    CHECK(fd >= 0 && bpf_map_lookup_elem(fd, &c, &e) == 0 && e.seq_known);
    e.next_seq -= 1000;
    CHECK_EQ_INT(bpf_map_update_elem(fd, &c, &e, BPF_EXIST), 0);
    close(fd);
}

static void test_desync_seq_ahead(void)
{
    uint64_t before = stat_sum(GG_BPF_STAT_SEQ_AHEAD);
    check_desync_reset(seq_ahead, "splice desync: the socket's copied_seq");
    CHECK_EQ_INT(stat_sum(GG_BPF_STAT_SEQ_AHEAD) - before, 1);
}

/* Userspace relays direction 0 for a while, then the verdict's count of what it passed falls behind what was read. */
static void read_more(struct end *a)
{
    struct gg_bpf_flow *f = flow_of(cookie_of(a->inner));
    CHECK(f != NULL);
    if (f == NULL)
        return;
    __atomic_store_n(&f->mode[0], GG_BPF_FLOW_PASS, __ATOMIC_RELEASE);
    char buf[1000];
    memset(buf, 'p', sizeof(buf));
    CHECK_EQ_INT(write(a->outer, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    for (int i = 0; i < 2000 && __atomic_load_n(&f->user_bytes[0], __ATOMIC_ACQUIRE) < sizeof(buf); i++)
        h2o_evloop_run(loop, 1);
    CHECK_EQ_INT(f->user_bytes[0], sizeof(buf));
    __atomic_fetch_sub(&f->pass_bytes[0], 500, __ATOMIC_ACQ_REL);
}

static void test_desync_read_more(void)
{
    check_desync_reset(read_more, "splice desync: read more than the verdict passed");
}

static void test_stalled_reader(void)
{
    struct end a, b;
    struct closed cl;
    start_tunnel(&a, &b, &cl);
    fcntl(a.outer, F_SETFL, O_NONBLOCK);
    size_t chunk = 1 << 16, sent = 0;
    uint8_t *buf = malloc(chunk);
    int idle = 0;
    for (int i = 0; i < 200000 && idle < 300; i++) {
        for (size_t k = 0; k < chunk; k++)
            buf[k] = pattern(sent + k, 0);
        ssize_t w = write(a.outer, buf, chunk);
        if (w > 0) {
            sent += w;
            idle = 0;
        } else {
            idle++;
        }
        h2o_evloop_run(loop, w > 0 ? 0 : 1);
    }
    fprintf(stderr, "stalled reader: the writer got %zu bytes in before back-pressure\n", sent);
    CHECK(sent < (64u << 20)); /* bounded: the stall limit plus socket buffers, not gigabytes */
    CHECK(sent > GG_BPF_STALL_LIMIT);
    free(buf);
    struct xfer x = {b.outer, 0, sent, 0};
    pthread_t th;
    pthread_create(&th, NULL, reader, &x);
    run_until_read((struct xfer *const[]){&x}, 1);
    pthread_join(th, NULL);
    report_bad("a to b", &x);
    CHECK_EQ_INT(x.done, sent);
    CHECK_EQ_INT(x.bad, 0);
    close(a.outer);
    wait_closed(&cl, 5000);
    CHECK_EQ_INT(cl.calls, 1);
    CHECK_EQ_INT(cl.stats.bytes[0], sent);
    CHECK(cl.stats.spliced_bytes < sent); /* part went through the userspace fallback */
    close(b.outer);
}

/* Many short spliced tunnels at once under parallel loopback load, each byte-exact both ways, each closed by a random
 * side, every other one with bytes sent just before the hand-off (in flight while its sockets join the sockhash): the
 * proof the hand-off is right is a count of thousands, not one run. GG_STRESS_RUNS=N changes the count. */
#define STRESS_PAIRS 48
#define STRESS_RUNS 2000
struct pair {
    struct end a, b;
    struct closed cl;
    uint64_t len[2], sent[2], got[2];
    int bad, closing, seed, done;
    int64_t bad_at[2];
};

static void pair_start(struct pair *p, int seed)
{
    memset(p, 0, sizeof(*p));
    p->seed = seed;
    p->a = make_end();
    p->b = make_end();
    fcntl(p->a.outer, F_SETFL, O_NONBLOCK);
    fcntl(p->b.outer, F_SETFL, O_NONBLOCK);
    uint64_t r = (uint64_t)seed * 6364136223846793005ull + 1442695040888963407ull;
    p->len[0] = 1 + (r >> 33) % (256 << 10);
    p->len[1] = 1 + (r >> 13) % (64 << 10);
    /* some bytes before the splice, as a WebSocket client would send right after the 101 */
    if (seed & 1) {
        uint8_t buf[100];
        size_t n = p->len[0] < sizeof(buf) ? p->len[0] : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(i, seed & 7);
        p->sent[0] = write(p->a.outer, buf, n);
    }
    wrap(&p->a);
    wrap(&p->b);
    gg_tunnel_start(p->a.sock, p->b.sock, on_close, &p->cl);
}

/* Moves one pair forward without blocking; returns 1 when it is finished (verified and closed). */
static int pair_step(struct pair *p)
{
    int out[2] = {p->a.outer, p->b.outer};
    uint8_t buf[16384];
    for (int d = 0; d < 2 && !p->closing; d++) {
        if (p->sent[d] < p->len[d]) {
            /* random write sizes: 1 byte to 16 KB */
            size_t n = 1 + ((p->sent[d] * 2654435761u + p->seed) % sizeof(buf));
            if (n > p->len[d] - p->sent[d])
                n = p->len[d] - p->sent[d];
            for (size_t i = 0; i < n; i++)
                buf[i] = pattern(p->sent[d] + i, d * 8 + (p->seed & 7));
            ssize_t w = write(out[d], buf, n);
            if (w > 0)
                p->sent[d] += w;
        }
        ssize_t r = recv(out[1 - d], buf, sizeof(buf), MSG_DONTWAIT);
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pattern(p->got[d] + i, d * 8 + (p->seed & 7)) && !p->bad) {
                p->bad = 1;
                p->bad_at[d] = p->got[d] + i;
            }
        if (r > 0)
            p->got[d] += r;
    }
    if (!p->closing && p->got[0] == p->len[0] && p->got[1] == p->len[1]) {
        /* the struct forgets the fd it closes: its number is soon another pair's */
        p->closing = 1;
        int *fd = p->seed % 3 == 0 ? &p->b.outer : &p->a.outer;
        close(*fd);
        *fd = -1;
    }
    if (p->closing && p->cl.calls) {
        close(p->a.outer >= 0 ? p->a.outer : p->b.outer);
        p->a.outer = p->b.outer = -1;
        return 1;
    }
    return 0;
}

static void test_stress(void)
{
    static struct pair pairs[STRESS_PAIRS];
    int started = 0, finished = 0, bad = 0, spliced = 0, lost = 0;
    const char *env = getenv("GG_STRESS_RUNS");
    int runs = env ? atoi(env) : STRESS_RUNS;
    uint64_t desyncs = gg_bpf_desyncs();
    for (int i = 0; i < STRESS_PAIRS; i++)
        pair_start(&pairs[i], started++);
    long idle = 0;
    for (long iter = 0; iter < 50000000 && finished < runs && idle < 200000; iter++) {
        int before = finished;
        for (int i = 0; i < STRESS_PAIRS; i++) {
            struct pair *p = &pairs[i];
            if (p->done)
                continue;
            if (pair_step(p)) {
                finished++;
                bad += p->bad;
                if (p->bad)
                    fprintf(stderr, "corrupted seed %d at %lld/%lld len %llu/%llu\n", p->seed, (long long)p->bad_at[0],
                            (long long)p->bad_at[1], (unsigned long long)p->len[0], (unsigned long long)p->len[1]);
                spliced += p->cl.stats.spliced;
                lost += p->cl.stats.bytes[0] != p->len[0] || p->cl.stats.bytes[1] != p->len[1];
                if (started < runs)
                    pair_start(p, started++);
                else
                    p->done = 1;
            }
        }
        h2o_evloop_run(loop, 0);
        idle = finished == before ? idle + 1 : 0;
    }
    for (int i = 0; i < STRESS_PAIRS; i++)
        if (!pairs[i].done)
            fprintf(stderr,
                    "stuck pair bad %d at %lld/%lld seed %d: len %llu/%llu sent %llu/%llu got %llu/%llu closing %d closed %d\n",
                    pairs[i].bad, (long long)pairs[i].bad_at[0], (long long)pairs[i].bad_at[1], pairs[i].seed,
                    (unsigned long long)pairs[i].len[0], (unsigned long long)pairs[i].len[1], (unsigned long long)pairs[i].sent[0],
                    (unsigned long long)pairs[i].sent[1], (unsigned long long)pairs[i].got[0], (unsigned long long)pairs[i].got[1],
                    pairs[i].closing, pairs[i].cl.calls);
    for (int i = 0; i < STRESS_PAIRS; i++) {
        if (pairs[i].done)
            continue;
        int inq = -1;
        ioctl(pairs[i].a.inner, FIONREAD, &inq);
        struct sockaddr_in pa, pb;
        socklen_t la = sizeof(pa), lb = sizeof(pb);
        getsockname(pairs[i].b.outer, (struct sockaddr *)&pa, &la);
        getpeername(pairs[i].b.inner, (struct sockaddr *)&pb, &lb);
        fprintf(stderr, "  b.outer port %d, b.inner's peer port %d\n", ntohs(pa.sin_port), ntohs(pb.sin_port));
        int outq = -1, binq = -1;
        ioctl(pairs[i].b.inner, SIOCOUTQ, &outq);
        ioctl(pairs[i].b.outer, FIONREAD, &binq);
        fprintf(stderr, "  a.inner inq %d h2o input %zu b.inner queued %lld outq %d b.outer inq %d\n", inq,
                pairs[i].a.sock->input->size, (long long)gg_bpf_queued(pairs[i].b.inner), outq, binq);
        struct gg_bpf_flow *f = flow_of(cookie_of(pairs[i].a.inner));
        if (f != NULL)
            fprintf(stderr, "  flow: mode %u/%u bytes %llu/%llu pass %llu/%llu user %llu/%llu stalls %u/%u\n", f->mode[0],
                    f->mode[1], f->bytes[0], f->bytes[1], f->pass_bytes[0], f->pass_bytes[1], f->user_bytes[0], f->user_bytes[1],
                    f->stalls[0], f->stalls[1]);
    }
    fprintf(stderr, "stress: %d tunnels finished, %d spliced, %d corrupted, %d miscounted\n", finished, spliced, bad, lost);
    CHECK_EQ_INT(finished, runs);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(lost, 0);
    CHECK_EQ_INT(spliced, runs);
    CHECK_EQ_INT(gg_bpf_desyncs() - desyncs, 0);
}

/* the registry mirror: a slot's fields and state reach the mmapped `backends` array, its seq moves by 2 per change */
static void test_backends_mirror(void)
{
    int slot = gg_backend_add("mirror-1", "http://127.0.0.1:9", GG_ENGINE_VLLM, 3, 7);
    CHECK(slot >= 0);
    gg_bpf_sync();
    struct gg_bpf_backend v;
    CHECK_EQ_INT(gg_bpf_backend_read(slot, &v), 0);
    CHECK_EQ_STR(v.name, "mirror-1");
    CHECK_EQ_INT(v.state, GG_BACKEND_DOWN);
    CHECK_EQ_INT(v.weight, 3);
    CHECK_EQ_INT(v.port, 9);
    CHECK_EQ_INT(v.seq % 2, 0);
    uint32_t seq = v.seq;
    gg_bpf_sync(); /* nothing changed: seq stays */
    CHECK_EQ_INT(gg_bpf_backend_read(slot, &v), 0);
    CHECK_EQ_INT(v.seq, seq);
    gg_backend_set_state(&gg_backends[slot], GG_BACKEND_UP);
    gg_bpf_sync();
    CHECK_EQ_INT(gg_bpf_backend_read(slot, &v), 0);
    CHECK_EQ_INT(v.state, GG_BACKEND_UP);
    CHECK_EQ_INT(v.seq, seq + 2);
    gg_backend_remove("mirror-1");
    gg_bpf_sync();
    CHECK_EQ_INT(gg_bpf_backend_read(slot, &v), 0);
    CHECK_EQ_INT(v.state, GG_BACKEND_FREE);
    CHECK_EQ_INT(v.name[0], 0);
}

static void test_pinned_reuse_and_abi(void)
{
    /* a tenant entry written now must survive a reload with the same ABI */
    int fd = map_fd("tenants");
    CHECK(fd >= 0);
    struct gg_bpf_tenant_key k = {"marker"};
    struct gg_bpf_tenant v = {.requests = 42};
    CHECK_EQ_INT(bpf_map_update_elem(fd, &k, &v, BPF_ANY), 0);
    close(fd);
    gg_bpf_shutdown();
    CHECK_EQ_INT(gg_bpf_init(GG_BPF_ON, pin), 0);
    fd = map_fd("tenants");
    struct gg_bpf_tenant got = {0};
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &k, &got), 0);
    CHECK_EQ_INT(got.requests, 42);
    close(fd);
    /* a different ABI version in meta: the maps are recreated (the marker is gone, meta carries this ABI) */
    fd = map_fd("meta");
    uint32_t zero = 0;
    struct gg_bpf_meta m = {.abi_version = 999};
    CHECK_EQ_INT(bpf_map_update_elem(fd, &zero, &m, BPF_ANY), 0);
    close(fd);
    gg_bpf_shutdown();
    CHECK_EQ_INT(gg_bpf_init(GG_BPF_ON, pin), 0);
    fd = map_fd("tenants");
    CHECK(bpf_map_lookup_elem(fd, &k, &got) != 0);
    close(fd);
    fd = map_fd("meta");
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &zero, &m), 0);
    CHECK_EQ_INT(m.abi_version, GG_BPF_ABI_VERSION);
    close(fd);

    /* the guard's maps the same way: a deny entry survives a restart, and another ABI in guard_cfg recreates them */
    struct gg_guard_prefix gk;
    CHECK_EQ_INT(gg_guard_parse_prefix("192.0.2.0/24", &gk), 0);
    struct gg_guard_deny gv = {.until_ns = 0}, gg = {0};
    fd = map_fd("guard_deny");
    CHECK(fd >= 0);
    CHECK_EQ_INT(bpf_map_update_elem(fd, &gk, &gv, BPF_ANY), 0);
    close(fd);
    gg_bpf_shutdown();
    CHECK_EQ_INT(gg_bpf_init(GG_BPF_ON, pin), 0);
    fd = map_fd("guard_deny");
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &gk, &gg), 0);
    close(fd);
    fd = map_fd("guard_cfg");
    struct gg_guard_cfg gc = {0};
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &zero, &gc), 0);
    CHECK_EQ_INT(gc.abi_version, GG_GUARD_ABI_VERSION);
    gc.abi_version = 999;
    CHECK_EQ_INT(bpf_map_update_elem(fd, &zero, &gc, BPF_ANY), 0);
    close(fd);
    gg_bpf_shutdown();
    CHECK_EQ_INT(gg_bpf_init(GG_BPF_ON, pin), 0);
    fd = map_fd("guard_deny");
    CHECK(bpf_map_lookup_elem(fd, &gk, &gg) != 0);
    close(fd);
    fd = map_fd("guard_cfg");
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &zero, &gc), 0);
    CHECK_EQ_INT(gc.abi_version, GG_GUARD_ABI_VERSION);
    close(fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a stalled transfer's ends are shut under its writers */
    snprintf(pin, sizeof(pin), "/sys/fs/bpf/gg-unit-%d", (int)getpid());
    if (gg_bpf_init(GG_BPF_AUTO, pin) != 0 || !gg_bpf_enabled()) {
        /* no privileges: auto falls back cleanly and nothing is spliced */
        CHECK(!gg_bpf_splice_ready());
        printf("control_bpf: kernel assist unavailable here (needs root); splice tests skipped\n");
        printf("%d passed, %d failed\n", gg_test_passed, gg_test_failed);
        return gg_test_failed != 0;
    }
    CHECK(gg_bpf_splice_ready());
    gg_tunnel_set_splice(1);
    loop = h2o_evloop_create();
    listener = listen_loopback();
    /* test_bulk_lossy last: it moves the process into a network namespace of its own */
    void (*tests[])(void) = {test_bulk,
                             test_small_chunks,
                             test_partly_read_skb,
                             test_lagging_reader,
                             test_splice_switch,
                             test_client_abort,
                             test_backend_reset,
                             test_stalled_reader,
                             test_stress,
                             test_backends_mirror,
                             test_pinned_reuse_and_abi,
                             test_desync_seq_ahead,
                             test_desync_read_more,
                             test_bulk_lossy};
    /* GG_BPF_TEST=N runs only the Nth test: for running one of them many times over */
    const char *only = getenv("GG_BPF_TEST");
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
        if (only == NULL || (size_t)atoi(only) == i)
            tests[i]();
    CHECK_EQ_INT(gg_tunnels_active(), 0);
    gg_bpf_shutdown();
    CHECK_EQ_INT(gg_bpf_remove_pins(pin), 0);
    close(listener);
    printf("%d passed, %d failed\n", gg_test_passed, gg_test_failed);
    return gg_test_failed != 0;
}
