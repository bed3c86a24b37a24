// SPDX-License-Identifier: GPL-2.0
/* gridgate's ingress: the XDP guard that drops abusive connection attempts (denied prefixes, sources over their SYN
 * rate) before the TCP stack sees them, and the sk_reuseport program that hands each new connection to the worker
 * holding the fewest. Kept apart from gridgate.bpf.c so the splice object and this one load, pin and change
 * independently. Types come from include/gridgate/ingress_abi.h. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "gridgate/ingress_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_TCP_ 6
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define TCPF_SYN 0x02
#define TCPF_ACK 0x10

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GG_GUARD_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gg_guard_prefix);
	__type(value, struct gg_guard_deny);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, GG_GUARD_MAX_PREFIXES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gg_guard_prefix);
	__type(value, struct gg_guard_allow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, GG_GUARD_MAX_SOURCES);
	__type(key, struct gg_guard_src);
	__type(value, struct gg_guard_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_bucket SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_guard_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GG_GUARD_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GG_GUARD_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GG_GUARD_MAX_WORKERS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct gg_guard_load);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} worker_load SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GG_GUARD_MAX_LISTEN);
	__type(key, __u32);
	__type(value, __u32);
} listener_grp SEC(".maps");

/* Sockets die with the process, so this one is not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, GG_GUARD_MAX_LISTEN * GG_GUARD_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} listeners SEC(".maps");

static __always_inline int count(__u32 reason, int verdict)
{
	__u64 *v = bpf_map_lookup_elem(&guard_stats, &reason);

	if (v)
		*v += 1;
	return verdict;
}

/* Parses down to the TCP header. Returns 0 with src (v4-mapped for IPv4) and tcp set, or the stat that explains
 * why this packet is none of the guard's business. */
static __always_inline int parse(struct xdp_md *ctx, struct gg_guard_src *src, struct tcphdr **tcp)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return GG_GUARD_MALFORMED;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > end)
			return GG_GUARD_MALFORMED;
		proto = vh->h_vlan_encapsulated_proto;
		l3 = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		__u32 ihl;

		if ((void *)(ip + 1) > end)
			return GG_GUARD_MALFORMED;
		ihl = ip->ihl * 4;
		if (ip->version != 4 || ihl < sizeof(*ip))
			return GG_GUARD_MALFORMED;
		if (ip->protocol != IPPROTO_TCP_)
			return GG_GUARD_NOT_OURS;
		/* A non-first fragment has no TCP header; a first one with MF set is not how any stack sends a SYN. */
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return GG_GUARD_MALFORMED;
		__builtin_memset(src, 0, sizeof(*src));
		src->addr[10] = 0xff;
		src->addr[11] = 0xff;
		__builtin_memcpy(&src->addr[12], &ip->saddr, 4);
		*tcp = l3 + ihl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return GG_GUARD_MALFORMED;
		if (ip6->version != 6)
			return GG_GUARD_MALFORMED;
		/* Extension headers before TCP are left to the stack: SYNs carry none in practice. */
		if (ip6->nexthdr != IPPROTO_TCP_)
			return GG_GUARD_NOT_OURS;
		__builtin_memcpy(src->addr, &ip6->saddr, 16);
		*tcp = (void *)(ip6 + 1);
	} else {
		return GG_GUARD_NOT_OURS;
	}
	if ((void *)(*tcp + 1) > end)
		return GG_GUARD_MALFORMED;
	if ((*tcp)->doff < 5)
		return GG_GUARD_MALFORMED;
	return 0;
}

/* GCRA: pass while the source's theoretical arrival time is within the burst tolerance of now. */
static __always_inline int over_rate(struct gg_guard_src *src, const struct gg_guard_cfg *cfg, __u64 now)
{
	struct gg_guard_bucket *b = bpf_map_lookup_elem(&guard_bucket, src);

	if (!b) {
		struct gg_guard_bucket nb = { .tat_ns = now + cfg->interval_ns, .passed = 1 };

		bpf_map_update_elem(&guard_bucket, src, &nb, BPF_ANY);
		return 0;
	}
	__u64 tat = b->tat_ns > now ? b->tat_ns : now;

	if (tat - now > cfg->tolerance_ns) {
		__sync_fetch_and_add(&b->dropped, 1);
		return 1;
	}
	b->tat_ns = tat + cfg->interval_ns;
	__sync_fetch_and_add(&b->passed, 1);
	return 0;
}

SEC("xdp")
int gg_guard(struct xdp_md *ctx)
{
	struct gg_guard_src src;
	struct tcphdr *tcp;
	int rc = parse(ctx, &src, &tcp);

	if (rc != 0)
		return count(rc, XDP_PASS);
	/* flags live in byte 13 of the TCP header; the bound was checked by parse() */
	__u8 flags = ((__u8 *)tcp)[13];

	if ((flags & (TCPF_SYN | TCPF_ACK)) != TCPF_SYN)
		return count(GG_GUARD_NOT_SYN, XDP_PASS);
	__u32 port = bpf_ntohs(tcp->dest);

	if (!bpf_map_lookup_elem(&guard_ports, &port))
		return count(GG_GUARD_NOT_OURS, XDP_PASS);

	struct gg_guard_prefix key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, src.addr, 16);
	if (bpf_map_lookup_elem(&guard_allow, &key))
		return count(GG_GUARD_ALLOWED, XDP_PASS);

	__u64 now = bpf_ktime_get_ns();
	struct gg_guard_deny *d = bpf_map_lookup_elem(&guard_deny, &key);

	if (d && (d->until_ns == 0 || now < d->until_ns))
		return count(GG_GUARD_DENIED, XDP_DROP);

	__u32 zero = 0;
	struct gg_guard_cfg *cfg = bpf_map_lookup_elem(&guard_cfg, &zero);

	if (cfg && cfg->interval_ns != 0 && over_rate(&src, cfg, now))
		return count(GG_GUARD_RATE_LIMITED, XDP_DROP);
	return count(GG_GUARD_PASSED, XDP_PASS);
}

/* Picks the listener of the worker holding the fewest connections. Ties go to the first one from the kernel's own
 * hash onwards, so equal loads spread as without the program. Any failure leaves the kernel's default choice. */
SEC("sk_reuseport")
int gg_pick_worker(struct sk_reuseport_md *md)
{
	struct bpf_sock *sk = md->sk;
	__u32 zero = 0;

	if (!sk)
		return SK_PASS;
	__u32 gkey = (sk->family << 16) | (sk->src_port & 0xffff);
	__u32 *grp = bpf_map_lookup_elem(&listener_grp, &gkey);
	struct gg_guard_cfg *cfg = bpf_map_lookup_elem(&guard_cfg, &zero);

	if (!grp || !cfg || cfg->n_workers == 0 || cfg->n_workers > GG_GUARD_MAX_WORKERS || *grp >= GG_GUARD_MAX_LISTEN)
		return SK_PASS;
	__u32 n = cfg->n_workers;
	__u32 start = md->hash % n, pick = start;
	__u64 best_load = ~0ULL;

	for (__u32 i = 0; i < GG_GUARD_MAX_WORKERS; i++) {
		if (i >= n)
			break;
		__u32 w = start + i;

		if (w >= n)
			w -= n;
		__u32 k = w;
		struct gg_guard_load *l = bpf_map_lookup_elem(&worker_load, &k);

		if (l && l->conns < best_load) {
			best_load = l->conns;
			pick = w;
		}
	}
	__u32 idx = *grp * GG_GUARD_MAX_WORKERS + pick;

	bpf_sk_select_reuseport(md, &listeners, &idx, 0);
	return SK_PASS;
}
