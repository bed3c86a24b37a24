/* Tests bpf/ingress.bpf.c as root: the XDP guard through bpf_prog_test_run_opts fixtures (a denied SYN is dropped,
 * allowed and other SYNs pass, non-SYNs and other ports pass, every truncation of a SYN passes without harm, IPv6
 * and VLAN, the bucket admits its burst then drops, allow bypasses deny and bucket) with the per-reason counters, and
 * the sk_reuseport pick with real loopback listeners (a connection lands on the least-loaded worker's listener). Maps
 * are not pinned. Without privileges it says so and skips. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "gridgate/guard.h"
#include "gridgate/ingress_abi.h"
#include "ingress.skel.h"
#include "test.h"

#define PORT 8080

static struct ingress *sk;
static int prog;

enum { V4, V6, VLAN4 };

/* A packet buffer whose IP header (after 14 bytes of Ethernet) is 4-byte aligned, as a driver would place it. */
#define PKT(p)                                                                                                                     \
    _Alignas(8) uint8_t p##_raw[136];                                                                                              \
    uint8_t *p = p##_raw + 2

/* A TCP segment from src to PORT (or dport) with the given flags, behind Ethernet (and an 802.1Q tag for VLAN4). */
static size_t build(uint8_t *p, int kind, const char *src, uint16_t dport, uint8_t flags)
{
    memset(p, 0, 128);
    size_t off = 12;
    if (kind == VLAN4) {
        p[off++] = 0x81, p[off++] = 0x00, p[off++] = 0x00, p[off++] = 0x05;
    }
    int v6 = kind == V6;
    p[off++] = v6 ? 0x86 : 0x08, p[off++] = v6 ? 0xdd : 0x00;
    if (v6) {
        struct ipv6hdr *ip = (struct ipv6hdr *)(p + off);
        ip->version = 6;
        ip->nexthdr = IPPROTO_TCP;
        ip->payload_len = htons(20);
        ip->hop_limit = 64;
        inet_pton(AF_INET6, src, &ip->saddr);
        inet_pton(AF_INET6, "2001:db8:ffff::1", &ip->daddr);
        off += sizeof(*ip);
    } else {
        struct iphdr *ip = (struct iphdr *)(p + off);
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->protocol = IPPROTO_TCP;
        ip->tot_len = htons(40);
        inet_pton(AF_INET, src, &ip->saddr);
        inet_pton(AF_INET, "192.0.2.1", &ip->daddr);
        off += sizeof(*ip);
    }
    struct tcphdr *t = (struct tcphdr *)(p + off);
    t->source = htons(40000);
    t->dest = htons(dport);
    t->doff = 5;
    ((uint8_t *)t)[13] = flags;
    return off + sizeof(*t);
}

static int run(const uint8_t *pkt, size_t len)
{
    uint8_t out[256];
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = (uint32_t)len, .data_out = out, .data_size_out = sizeof(out),
                .repeat = 1);
    if (bpf_prog_test_run_opts(prog, &o) != 0)
        return -errno;
    return (int)o.retval;
}

static int syn(int kind, const char *src)
{
    PKT(p);
    return run(p, build(p, kind, src, PORT, 0x02));
}

static uint64_t stat(enum gg_guard_stat k)
{
    int n = libbpf_num_possible_cpus();
    uint64_t v[n > 0 ? n : 1], sum = 0;
    uint32_t key = k;
    memset(v, 0, sizeof(v)); /* valgrind's model of bpf(2) marks one CPU's value written, not all of them */
    if (bpf_map_lookup_elem(bpf_map__fd(sk->maps.guard_stats), &key, v) != 0)
        return UINT64_MAX;
    for (int i = 0; i < n; i++)
        sum += v[i];
    return sum;
}

static void put(int fd, const char *prefix, uint64_t until)
{
    struct gg_guard_prefix k;
    CHECK_EQ_INT(gg_guard_parse_prefix(prefix, &k), 0);
    struct gg_guard_deny v = {.until_ns = until};
    CHECK_EQ_INT(bpf_map_update_elem(fd, &k, &v, BPF_ANY), 0); /* allow values are a prefix of deny values */
}

static void del(int fd, const char *prefix)
{
    struct gg_guard_prefix k;
    gg_guard_parse_prefix(prefix, &k);
    bpf_map_delete_elem(fd, &k);
}

static void set_bucket(uint32_t burst, uint64_t interval_ns)
{
    struct gg_guard_cfg c = {.abi_version = GG_GUARD_ABI_VERSION,
                             .interval_ns = interval_ns,
                             .tolerance_ns = (uint64_t)(burst - 1) * interval_ns,
                             .syn_burst = burst};
    uint32_t key = 0;
    CHECK_EQ_INT(bpf_map_update_elem(bpf_map__fd(sk->maps.guard_cfg), &key, &c, BPF_ANY), 0);
}

static void test_ports_and_flags(void)
{
    PKT(p);
    uint64_t ours = stat(GG_GUARD_NOT_OURS), notsyn = stat(GG_GUARD_NOT_SYN), passed = stat(GG_GUARD_PASSED);
    CHECK_EQ_INT(run(p, build(p, V4, "10.0.0.5", 9999, 0x02)), XDP_PASS);
    CHECK_EQ_INT(stat(GG_GUARD_NOT_OURS), ours + 1);
    CHECK_EQ_INT(syn(V4, "10.0.0.5"), XDP_PASS);
    CHECK_EQ_INT(stat(GG_GUARD_PASSED), passed + 1);
    /* a denied source's established traffic (ACK, SYN-ACK, FIN, RST) is never the guard's to drop */
    put(bpf_map__fd(sk->maps.guard_deny), "10.0.0.0/24", 0);
    static const uint8_t other[] = {0x10, 0x12, 0x18, 0x11, 0x04, 0x00};
    for (size_t i = 0; i < sizeof(other); i++)
        CHECK_EQ_INT(run(p, build(p, V4, "10.0.0.5", PORT, other[i])), XDP_PASS);
    CHECK_EQ_INT(stat(GG_GUARD_NOT_SYN), notsyn + sizeof(other));
    /* ARP is not ours */
    memset(p, 0, 64);
    p[12] = 0x08, p[13] = 0x06;
    CHECK_EQ_INT(run(p, 60), XDP_PASS);
    del(bpf_map__fd(sk->maps.guard_deny), "10.0.0.0/24");
}

static void test_deny_allow_v4(void)
{
    int fd_deny = bpf_map__fd(sk->maps.guard_deny), fd_allow = bpf_map__fd(sk->maps.guard_allow);
    uint64_t denied = stat(GG_GUARD_DENIED), allowed = stat(GG_GUARD_ALLOWED);
    put(fd_deny, "10.0.0.0/24", 0);
    CHECK_EQ_INT(syn(V4, "10.0.0.5"), XDP_DROP);
    CHECK_EQ_INT(syn(VLAN4, "10.0.0.77"), XDP_DROP);
    CHECK_EQ_INT(syn(V4, "10.0.1.5"), XDP_PASS);
    CHECK_EQ_INT(stat(GG_GUARD_DENIED), denied + 2);
    /* the allow list bypasses the deny list */
    put(fd_allow, "10.0.0.5", 0);
    CHECK_EQ_INT(syn(V4, "10.0.0.5"), XDP_PASS);
    CHECK_EQ_INT(syn(V4, "10.0.0.6"), XDP_DROP);
    CHECK_EQ_INT(stat(GG_GUARD_ALLOWED), allowed + 1);
    del(fd_allow, "10.0.0.5");
    CHECK_EQ_INT(syn(V4, "10.0.0.5"), XDP_DROP);
    /* a deny whose time has passed no longer drops (until_ns is in the past of the monotonic clock) */
    put(fd_deny, "10.0.0.0/24", 1);
    CHECK_EQ_INT(syn(V4, "10.0.0.5"), XDP_PASS);
    del(fd_deny, "10.0.0.0/24");
    CHECK_EQ_INT(syn(V4, "10.0.0.5"), XDP_PASS);
}

static void test_v6(void)
{
    int fd_deny = bpf_map__fd(sk->maps.guard_deny), fd_allow = bpf_map__fd(sk->maps.guard_allow);
    put(fd_deny, "2001:db8::/32", 0);
    CHECK_EQ_INT(syn(V6, "2001:db8:1::9"), XDP_DROP);
    CHECK_EQ_INT(syn(V6, "2001:db9::1"), XDP_PASS);
    /* a v4 source whose mapped form would not match a v6 prefix, and the other way round */
    CHECK_EQ_INT(syn(V4, "32.1.13.184"), XDP_PASS);
    put(fd_allow, "2001:db8:1::9/128", 0);
    CHECK_EQ_INT(syn(V6, "2001:db8:1::9"), XDP_PASS);
    CHECK_EQ_INT(syn(V6, "2001:db8:1::a"), XDP_DROP);
    del(fd_allow, "2001:db8:1::9");
    del(fd_deny, "2001:db8::/32");
    CHECK_EQ_INT(syn(V6, "2001:db8:1::9"), XDP_PASS);
}

/* Every length from the smallest frame test_run accepts (an Ethernet header) to one byte short of a whole SYN, from a
 * denied source: passed, counted malformed, never dropped. Then header fields that lie. */
static void test_truncated_and_malformed(void)
{
    int fd_deny = bpf_map__fd(sk->maps.guard_deny);
    put(fd_deny, "10.0.0.0/8", 0);
    put(fd_deny, "2001:db8::/32", 0);
    static const struct {
        int kind;
        const char *src;
    } shapes[] = {{V4, "10.1.2.3"}, {V6, "2001:db8::1"}, {VLAN4, "10.1.2.3"}};
    for (size_t s = 0; s < 3; s++) {
        PKT(p);
        size_t full = build(p, shapes[s].kind, shapes[s].src, PORT, 0x02);
        int bad = 0;
        uint64_t mal = stat(GG_GUARD_MALFORMED);
        for (size_t len = ETH_HLEN; len < full; len++)
            bad += run(p, len) != XDP_PASS;
        CHECK_EQ_INT(bad, 0);
        /* a frame cut inside the VLAN tag or ether type reads as another protocol: not ours, not malformed */
        CHECK(stat(GG_GUARD_MALFORMED) - mal >= full - ETH_HLEN - (shapes[s].kind == VLAN4 ? 4 : 0));
        CHECK_EQ_INT(run(p, full), XDP_DROP);
    }
    PKT(p);
    size_t n = build(p, V4, "10.1.2.3", PORT, 0x02);
    struct iphdr *ip = (struct iphdr *)(p + 14);
    struct tcphdr *t = (struct tcphdr *)(p + 34);
    uint64_t mal = stat(GG_GUARD_MALFORMED);
    ip->ihl = 4; /* shorter than an IPv4 header */
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    ip->ihl = 15; /* options running past the frame */
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    ip->ihl = 5;
    ip->version = 6; /* an IPv4 ether type with another version */
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    ip->version = 4;
    ip->frag_off = htons(0x2000); /* first fragment */
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    ip->frag_off = htons(100); /* later fragment */
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    ip->frag_off = 0;
    t->doff = 2;
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    CHECK_EQ_INT(stat(GG_GUARD_MALFORMED), mal + 6);
    t->doff = 5;
    /* IPv4 options (ihl 6) shift the TCP header; the SYN is still found */
    uint8_t q[128];
    memcpy(q, p, 34);
    q[14] = 0x46;
    memset(q + 34, 1, 4);
    memcpy(q + 38, p + 34, 20);
    CHECK_EQ_INT(run(q, n + 4), XDP_DROP);
    /* IPv6 with a hop-by-hop header before TCP: left to the stack */
    n = build(p, V6, "2001:db8::1", PORT, 0x02);
    p[20] = 0;
    CHECK_EQ_INT(run(p, n), XDP_PASS);
    del(fd_deny, "10.0.0.0/8");
    del(fd_deny, "2001:db8::/32");
}

static void test_bucket(void)
{
    uint64_t limited = stat(GG_GUARD_RATE_LIMITED);
    set_bucket(3, 3600ull * 1000000000ull); /* a burst of 3, then one an hour: nothing refills during the test */
    int pass = 0;
    for (int i = 0; i < 5; i++)
        pass += syn(V4, "198.51.100.7") == XDP_PASS;
    CHECK_EQ_INT(pass, 3);
    CHECK_EQ_INT(stat(GG_GUARD_RATE_LIMITED), limited + 2);
    /* sources have their own buckets */
    CHECK_EQ_INT(syn(V4, "198.51.100.8"), XDP_PASS);
    CHECK_EQ_INT(syn(V6, "2001:db8::7"), XDP_PASS);
    /* an allowed source is never limited */
    put(bpf_map__fd(sk->maps.guard_allow), "198.51.100.7", 0);
    CHECK_EQ_INT(syn(V4, "198.51.100.7"), XDP_PASS);
    del(bpf_map__fd(sk->maps.guard_allow), "198.51.100.7");
    CHECK_EQ_INT(syn(V4, "198.51.100.7"), XDP_DROP);
    /* the bucket's own counts */
    struct gg_guard_src src = {.addr = {[10] = 0xff, [11] = 0xff, [12] = 198, [13] = 51, [14] = 100, [15] = 7}};
    struct gg_guard_bucket b;
    CHECK_EQ_INT(bpf_map_lookup_elem(bpf_map__fd(sk->maps.guard_bucket), &src, &b), 0);
    CHECK_EQ_INT(b.passed, 3);
    CHECK_EQ_INT(b.dropped, 3);
    /* a fast rate refills: with a 1 ns interval and no burst, back-to-back SYNs of a new source all pass */
    set_bucket(1, 1);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(syn(V4, "198.51.100.9"), XDP_PASS);
    set_bucket(1, 0); /* interval 0: no bucket at all */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(syn(V4, "198.51.100.7"), XDP_PASS);
}

/* Three listeners in one reuseport group; loads 5, 0, 5: every new connection goes to listener 1, and once its load
 * is the highest, to another. */
static void test_reuseport(void)
{
    int l[3], one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    for (int i = 0; i < 3; i++) {
        l[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        setsockopt(l[i], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        CHECK_EQ_INT(bind(l[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        if (i == 0)
            getsockname(l[0], (struct sockaddr *)&sa, &sl);
        CHECK_EQ_INT(listen(l[i], 64), 0);
        uint32_t idx = 2 * GG_GUARD_MAX_WORKERS + (uint32_t)i; /* group 2 */
        uint64_t fd = (uint64_t)l[i];
        CHECK_EQ_INT(bpf_map_update_elem(bpf_map__fd(sk->maps.listeners), &idx, &fd, BPF_ANY), 0);
    }
    uint32_t gkey = (uint32_t)AF_INET << 16 | ntohs(sa.sin_port), g = 2;
    CHECK_EQ_INT(bpf_map_update_elem(bpf_map__fd(sk->maps.listener_grp), &gkey, &g, BPF_ANY), 0);
    struct gg_guard_cfg c = {.abi_version = GG_GUARD_ABI_VERSION, .n_workers = 3};
    uint32_t zero = 0;
    bpf_map_update_elem(bpf_map__fd(sk->maps.guard_cfg), &zero, &c, BPF_ANY);
    int pfd = bpf_program__fd(sk->progs.gg_pick_worker);
    CHECK_EQ_INT(setsockopt(l[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &pfd, sizeof(pfd)), 0);
    uint64_t load[3] = {5, 0, 5};
    int landed[3] = {0, 0, 0};
    for (int round = 0; round < 8; round++) {
        for (uint32_t w = 0; w < 3; w++) {
            struct gg_guard_load v = {load[w]};
            bpf_map_update_elem(bpf_map__fd(sk->maps.worker_load), &w, &v, BPF_ANY);
        }
        int c = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_EQ_INT(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
        int got = -1;
        for (int tries = 0; tries < 100 && got < 0; tries++) {
            for (int i = 0; i < 3 && got < 0; i++) {
                int a = accept(l[i], NULL, NULL);
                if (a >= 0) {
                    close(a);
                    got = i;
                }
            }
            if (got < 0)
                poll(NULL, 0, 10);
        }
        close(c);
        if (got >= 0) {
            landed[got]++;
            load[got]++; /* as the worker would count it */
        }
    }
    /* loads 5,0,5: five go to worker 1 (reaching 5,5,5), then three more spread one each at most */
    CHECK(landed[1] >= 5);
    CHECK_EQ_INT(landed[0] + landed[1] + landed[2], 8);
    CHECK(load[0] <= 6 && load[1] <= 6 && load[2] <= 6);
    for (int i = 0; i < 3; i++)
        close(l[i]);
}

static void test_prefix_parser(void)
{
    struct gg_guard_prefix k;
    char s[64];
    static const char *const good[][2] = {{"10.0.0.1", "10.0.0.1"},
                                          {"10.0.0.7/24", "10.0.0.0/24"},
                                          {"0.0.0.0/0", "0.0.0.0/0"},
                                          {"2001:db8::1/32", "2001:db8::/32"},
                                          {"::1", "::1"},
                                          {"::/0", "::/0"},
                                          {"::ffff:10.0.0.1", "10.0.0.1"}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK_EQ_INT(gg_guard_parse_prefix(good[i][0], &k), 0);
        gg_guard_format_prefix(&k, s, sizeof(s));
        CHECK_EQ_STR(s, good[i][1]);
    }
    static const char *const bad[] = {
        "",          "/",           "10.0.0.1/",     "10.0.0.1/33", "10.0.0.1/-1", "10.0.0.1/2x", "10.0.0.1/ 8",
        "10.0.0/8",  "::1/129",     "10.0.0.1/0008", "host",        "10.0.0.1//8", "1.2.3.4.5",   "::1/12/3",
        " 10.0.0.1", "10.0.0.1/+8", "2001:db8:::1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(gg_guard_parse_prefix(bad[i], &k), -EINVAL);
    char longs[300];
    memset(longs, '1', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    CHECK_EQ_INT(gg_guard_parse_prefix(longs, &k), -EINVAL);
}

int main(void)
{
    test_prefix_parser();
    if (geteuid() != 0) {
        printf("bpf_ingress: SKIPPED the XDP and reuseport fixtures: needs root (CAP_BPF, CAP_NET_ADMIN)\n");
        printf("%d passed, %d failed\n", gg_test_passed, gg_test_failed);
        return gg_test_failed != 0;
    }
    sk = ingress__open();
    CHECK(sk != NULL);
    if (sk == NULL)
        return 1;
    struct bpf_map *m;
    bpf_object__for_each_map(m, sk->obj) bpf_map__set_pin_path(m, NULL); /* unit fixtures pin nothing */
    CHECK_EQ_INT(ingress__load(sk), 0);
    prog = bpf_program__fd(sk->progs.gg_guard);
    uint32_t port = PORT, one = 1;
    CHECK_EQ_INT(bpf_map_update_elem(bpf_map__fd(sk->maps.guard_ports), &port, &one, BPF_ANY), 0);
    set_bucket(1, 0);
    test_ports_and_flags();
    test_deny_allow_v4();
    test_v6();
    test_truncated_and_malformed();
    test_bucket();
    test_reuseport();
    ingress__destroy(sk);
    printf("%d passed, %d failed\n", gg_test_passed, gg_test_failed);
    return gg_test_failed != 0;
}
