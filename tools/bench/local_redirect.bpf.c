// SPDX-License-Identifier: GPL-2.0
/* make bench-local_redirect: the measurement behind "redirect straight into same-host engines".
 * A sockops program (attached to one cgroup) puts both ends of every connection to an engine port into a
 * sockhash; an sk_msg program on that sockhash hands each write straight to the peer socket's receive queue
 * (BPF_F_INGRESS), so proxy <-> engine bytes skip loopback TCP. Bench only: gridgate does not ship this. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct lr_key {
    __u32 local_ip4, remote_ip4, local_port, remote_port; /* ports in host order */
};

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, struct lr_key);
    __type(value, __u64);
} lr_socks SEC(".maps");

/* engine ports to accelerate (key: port in host order); filled by the bench script */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u32);
} lr_ports SEC(".maps");

/* 0: sockets inserted, 1: writes redirected, 2: writes passed to TCP */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u64);
} lr_counts SEC(".maps");

static __always_inline void count(__u32 i)
{
    __u64 *v = bpf_map_lookup_elem(&lr_counts, &i);
    if (v)
        __sync_fetch_and_add(v, 1);
}

/* remote_port is network order; older kernels put it in the upper 16 bits */
static __always_inline __u32 remote_port(__u32 raw)
{
    if ((raw & 0xffff) == 0)
        raw >>= 16;
    return bpf_ntohs((__u16)raw);
}

SEC("sockops")
int lr_sockops(struct bpf_sock_ops *ops)
{
    if (ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
        return 1;
    struct lr_key k = {ops->local_ip4, ops->remote_ip4, ops->local_port, remote_port(ops->remote_port)};
    __u32 lp = k.local_port, rp = k.remote_port;
    if (!bpf_map_lookup_elem(&lr_ports, &lp) && !bpf_map_lookup_elem(&lr_ports, &rp))
        return 1;
    if (bpf_sock_hash_update(ops, &lr_socks, &k, BPF_NOEXIST) == 0)
        count(0);
    return 1;
}

SEC("sk_msg")
int lr_msg(struct sk_msg_md *msg)
{
    /* the peer's key: its local end is our remote end */
    struct lr_key peer = {msg->remote_ip4, msg->local_ip4, remote_port(msg->remote_port), msg->local_port};
    long verdict = bpf_msg_redirect_hash(msg, &lr_socks, &peer, BPF_F_INGRESS);
    count(verdict == SK_PASS ? 1 : 2);
    return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
