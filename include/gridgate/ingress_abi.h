/* The ingress ABI: keys and values of the maps bpf/ingress.bpf.c shares with control/guard.c (the XDP SYN guard and
 * the sk_reuseport worker pick), defined once. Same rules as bpf_abi.h: fixed-width fields, explicit padding, a size
 * assert on each, and GG_GUARD_ABI_VERSION (kept in `guard_cfg`) bumped with any change so a newer binary recreates
 * stale pinned maps. Addresses are IPv6, IPv4 as v4-mapped (::ffff:a.b.c.d), so one trie holds both families. */
#ifndef GG_INGRESS_ABI_H
#define GG_INGRESS_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GG_GUARD_ABI_VERSION 1

#define GG_GUARD_MAX_PREFIXES 16384 /* deny and allow tries */
#define GG_GUARD_MAX_SOURCES 65536  /* token buckets (LRU: the oldest idle source is forgotten first) */
#define GG_GUARD_MAX_PORTS 64
#define GG_GUARD_MAX_WORKERS 64 /* == GG_MAX_WORKERS */
#define GG_GUARD_MAX_LISTEN 8   /* == GG_MAX_LISTEN */

/* guard_deny / guard_allow (LPM_TRIE): prefixlen counts from the start of the 128-bit address (v4 /n is 96+n). */
struct gg_guard_prefix {
    __u32 prefixlen;
    __u8 addr[16];
};
/* guard_deny value: dropped until `until_ns` (bpf_ktime_get_ns clock, CLOCK_MONOTONIC); 0 = until removed. */
struct gg_guard_deny {
    __u64 until_ns;
    __u64 added_ns;
};
/* guard_allow value */
struct gg_guard_allow {
    __u64 added_ns;
};

/* guard_bucket (LRU_HASH): source address -> its SYN bucket, kept as GCRA's theoretical arrival time: a SYN at `now`
 * passes when tat - now <= (burst - 1) * interval, and then moves tat one interval on. No division in the program. */
struct gg_guard_src {
    __u8 addr[16];
};
struct gg_guard_bucket {
    __u64 tat_ns;
    __u64 passed;
    __u64 dropped;
};

/* guard_cfg (ARRAY, 1 entry): written by control at start-up. */
struct gg_guard_cfg {
    __u32 abi_version;
    __u32 n_workers;    /* sk_reuseport: listeners per group in `listeners` */
    __u64 interval_ns;  /* 1e9 / syn_rate; 0 = no per-source bucket */
    __u64 tolerance_ns; /* (syn_burst - 1) * interval_ns */
    __u32 syn_rate;     /* for operators reading the dump */
    __u32 syn_burst;
};

/* guard_ports (HASH): TCP destination port (host order) -> 1 */

/* guard_stats (PERCPU_ARRAY): the fate of every packet XDP saw, key = enum gg_guard_stat */
enum gg_guard_stat {
    GG_GUARD_PASSED,       /* a SYN to a listen port that no rule dropped */
    GG_GUARD_NOT_SYN,      /* TCP but not a connection attempt (incl. SYN-ACK) */
    GG_GUARD_NOT_OURS,     /* not TCP over IPv4/IPv6, or not to a listen port */
    GG_GUARD_ALLOWED,      /* source in guard_allow: passed without further checks */
    GG_GUARD_DENIED,       /* source in guard_deny: dropped */
    GG_GUARD_RATE_LIMITED, /* over the per-source SYN rate: dropped */
    GG_GUARD_MALFORMED,    /* truncated or fragmented headers: passed for the stack to judge */
    GG_GUARD_STAT_COUNT
};

/* listener_grp (HASH): (family << 16 | local port) of a listen address -> its group index g; the worker w's listener
 * of group g sits at listeners[g * GG_GUARD_MAX_WORKERS + w] (REUSEPORT_SOCKARRAY). */

/* worker_load (ARRAY, mmapable, key = worker id): connections the worker holds open, inc on accept, dec on close. */
struct gg_guard_load {
    __u64 conns;
};

_Static_assert(sizeof(struct gg_guard_prefix) == 20, "prefix ABI");
_Static_assert(sizeof(struct gg_guard_deny) == 16, "deny ABI");
_Static_assert(sizeof(struct gg_guard_allow) == 8, "allow ABI");
_Static_assert(sizeof(struct gg_guard_src) == 16, "src ABI");
_Static_assert(sizeof(struct gg_guard_bucket) == 24, "bucket ABI");
_Static_assert(sizeof(struct gg_guard_cfg) == 32, "cfg ABI");
_Static_assert(sizeof(struct gg_guard_load) == 8, "mmapped array values must be 8-byte multiples");
#endif
