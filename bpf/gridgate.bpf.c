// SPDX-License-Identifier: GPL-2.0
/* gridgate's kernel side: the maps control publishes (backends, models, tenants, meta), the per-flow table and
 * per-CPU counters, and the sockhash whose sk_skb verdict splices spliced socket pairs in-kernel. Types come from
 * include/gridgate/bpf_abi.h, never from here. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "gridgate/bpf_abi.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gg_bpf_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GG_BPF_MAX_BACKENDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct gg_bpf_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GG_BPF_MAX_MODELS);
	__type(key, struct gg_bpf_model_key);
	__type(value, struct gg_bpf_model);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} models SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, GG_BPF_MAX_TENANTS);
	__type(key, struct gg_bpf_tenant_key);
	__type(value, struct gg_bpf_tenant);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tenants SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GG_BPF_MAX_FLOWS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct gg_bpf_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GG_BPF_STAT_COUNT);
	__type(key, __u32);
	__type(value, struct gg_bpf_stat_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

/* Not pinned: sockets and their ends belong to the running process. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * GG_BPF_MAX_FLOWS);
	__type(key, __u64);
	__type(value, struct gg_bpf_end);
} ends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * GG_BPF_MAX_FLOWS);
	__type(key, __u64);
	__type(value, __u64);
} socks SEC(".maps");

/* Clients of spliced streams: only ever a redirect target, so no program is attached to this map and their own
 * receive path (the next keep-alive request) stays the kernel's normal one. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2 * GG_BPF_MAX_FLOWS);
	__type(key, __u64);
	__type(value, __u64);
} targets SEC(".maps");

static __always_inline void count(__u32 reason, __u64 n)
{
	__u32 key = reason;
	struct gg_bpf_stat_val *v = bpf_map_lookup_elem(&stats, &key);

	if (v)
		v->value += n;
}

/* Bytes redirected to the peer (tp) that the kernel has not yet queued on it. */
static __always_inline __u32 peer_backlog(struct gg_bpf_flow *f, __u32 d, struct tcp_sock *tp)
{
	__u32 p = (d & 1) ^ 1;
	__u32 seq = tp->write_seq;
	__u32 queued, owed, pending;

	if (!f->based[p]) {
		/* userspace writes before the first redirect are already in write_seq */
		f->base_seq[p] = seq - (__u32)f->user_bytes[d & 1];
		f->based[p] = 1;
	}
	queued = seq - f->base_seq[p];
	owed = (__u32)f->bytes[d & 1] + (__u32)f->user_bytes[d & 1];
	pending = owed - queued;
	return (__s32)pending < 0 ? 0 : pending;
}

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

/* tcp_read_skb() hands the verdict whole skbs from the receive queue, and two kinds of skb there start before the
 * next unread byte: a retransmit that overlaps bytes already received (TCP queues it whole, seq before rcv_nxt; with
 * loopback drops under bulk load, about one 100 MB transfer in a thousand meets one), and one userspace had partly
 * read before the socket joined. A normal read skips what was read; the verdict must do so itself, or those bytes go
 * out twice. Cuts the repeat off the head (bpf_skb_adjust_room pops at most 0xfff bytes a call), which also
 * keeps copied_seq right, since the kernel advances it by the skb's length after the verdict.
 * After the socket's first skb every byte userspace reads has come through here, so copied_seq is never past
 * next_seq: if it is, some byte was consumed twice or behind the verdict's back, and cutting by it would take new
 * bytes. Nothing later on that flow can be vouched for. Returns 0 to go on, REPEAT_ONLY for an skb with nothing new
 * in it (dropped), or an enum gg_bpf_desync. */
#define REPEAT_ONLY (-1)
static __always_inline int drop_repeat(struct gg_bpf_end *end, struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)kskb->cb;
	__u32 seq = cb->seq, len = skb->len, next, cut, n;
	struct bpf_sock *sk = skb->sk;
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : NULL;
	__s32 over;

	if (!end->seq_known) {
		/* the first skb: what userspace read before the socket joined is behind copied_seq */
		next = tp ? tp->copied_seq : seq;
		end->seq_known = 1;
		end->next_seq = next;
	} else {
		next = end->next_seq;
		if (tp && (__s32)(tp->copied_seq - next) > 0) {
			count(GG_BPF_STAT_SEQ_AHEAD, 1);
			return GG_BPF_DESYNC_SEQ_AHEAD;
		}
	}
	over = (__s32)(next - seq);
	if (over <= 0) {
		end->next_seq = seq + len;
		return 0;
	}
	if ((__u32)over > len)
		over = len;
	cut = over;
	for (int i = 0; i < 64 && cut > 0; i++) {
		n = cut > 0xfff ? 0xfff : cut;
		if (bpf_skb_adjust_room(skb, -(__s32)n, 0, 0) != 0)
			break;
		cut -= n;
	}
	if (cut > 0) {
		count(GG_BPF_STAT_REPEAT_FAIL, 1);
		return GG_BPF_DESYNC_CUT_FAILED;
	}
	count(GG_BPF_STAT_REPEAT_BYTES, over);
	if ((__u32)over == len)
		return REPEAT_ONLY;
	end->next_seq = seq + len;
	return 0;
}

static __always_inline int pass(struct gg_bpf_flow *f, __u32 d, struct __sk_buff *skb, __u32 reason)
{
	__sync_fetch_and_add(&f->pass_bytes[d & 1], skb->len);
	count(reason, 1);
	return SK_PASS;
}

static __always_inline int is_stream(struct gg_bpf_flow *f)
{
	return f->kind == GG_BPF_FLOW_SSE || f->kind == GG_BPF_FLOW_NDJSON;
}

/* Appends the skb's last GG_BPF_TAIL bytes to the flow's tail ring and says whether the stream now ends with its end
 * marker (none while framing is 0: a member between streams). One or two bpf_skb_load_bytes per skb: no per-byte work, so events are counted per skb. */
static __always_inline int stream_end(struct gg_bpf_flow *f, struct __sk_buff *skb)
{
	__u32 len = skb->len, n, off, pos, a, b;
	__u64 t, w = 0;
	__u8 c;

	if (len == 0)
		return 0;
	n = len > GG_BPF_TAIL ? GG_BPF_TAIL : len;
	off = len - n;
	pos = f->tail_len & (GG_BPF_TAIL - 1);
	a = GG_BPF_TAIL - pos;
	if (a > n)
		a = n;
	b = n - a;
	if (a == 0 || a > GG_BPF_TAIL || pos >= GG_BPF_TAIL)
		return 0;
	if (bpf_skb_load_bytes(skb, off, &f->tail[pos], a) != 0)
		return 0;
	if (b > 0) {
		/* b is in [1, GG_BPF_TAIL - 1]; say so in a form the verifier keeps for the size argument */
		b -= 1;
		asm volatile("" : "+r"(b));
		b = (b & (GG_BPF_TAIL - 1)) + 1;
		if (bpf_skb_load_bytes(skb, off + a, &f->tail[0], b) != 0)
			return 0;
	}
	t = f->tail_len + n;
	f->tail_len = t;
	if (t < 8)
		return 0;
	/* the last 8 bytes, oldest first, as a big-endian word */
#pragma unroll
	for (int i = 0; i < 8; i++) {
		c = f->tail[(t - 8 + i) & (GG_BPF_TAIL - 1)];
		w = (w << 8) | c;
	}
	if (f->framing == GG_BPF_FRAMING_CHUNKED)
		return w == 0x0a0d0a300d0a0d0aULL; /* "\n\r\n0\r\n\r\n" */
	if (f->framing == GG_BPF_FRAMING_CLOSE)
		return w == 0x5b444f4e455d0a0aULL; /* "[DONE]\n\n" */
	return 0;
}

SEC("sk_skb")
int gg_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct gg_bpf_end *end = bpf_map_lookup_elem(&ends, &cookie);
	struct gg_bpf_flow *f;
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	__u32 d, mode, backlog = 0;
	__u64 peer;
	int stream, desync, peer_full = 0;

	if (!end) {
		count(GG_BPF_STAT_PASS_NO_FLOW, 1);
		return SK_PASS;
	}
	d = end->dir & 1;
	f = bpf_map_lookup_elem(&flows, &end->flow);
	if (!f) {
		count(GG_BPF_STAT_PASS_NO_FLOW, 1);
		return SK_PASS;
	}
	if (f->desync)
		return pass(f, d, skb, GG_BPF_STAT_PASS_MODE);
	desync = drop_repeat(end, skb);
	if (desync == REPEAT_ONLY)
		return SK_DROP;
	if (desync) {
		/* Userspace wakes on this skb, sees the mark and resets both connections. */
		f->desync = desync;
		return pass(f, d, skb, GG_BPF_STAT_PASS_MODE);
	}
	stream = is_stream(f);
	/* Members keep the tail too, so a stream handed over mid-flight has its whole end in it. */
	if ((stream || f->kind == GG_BPF_FLOW_MEMBER) && !f->ended && stream_end(f, skb) && stream) {
		/* The end goes through userspace, which wakes on it, drains and takes both connections back. */
		f->ended = 1;
		f->mode[d] = GG_BPF_FLOW_PASS;
		return pass(f, d, skb, GG_BPF_STAT_STREAM_END);
	}
	mode = f->mode[d];
	/* ARMED redirects only once every byte passed so far is written out by userspace: no reordering. */
	if (mode == GG_BPF_FLOW_PASS || (mode == GG_BPF_FLOW_ARMED && f->arm_base[d] + f->user_bytes[d] != f->pass_bytes[d]))
		return pass(f, d, skb, GG_BPF_STAT_PASS_MODE);
	peer = f->cookie[d ^ 1];
	if (stream)
		sk = bpf_map_lookup_elem(&targets, &peer);
	else
		sk = bpf_map_lookup_elem(&socks, &peer);
	if (!sk) {
		/* The peer has not joined yet (or has left): a redirect would drop the bytes, so userspace relays them
		 * and the direction re-arms behind them. */
		f->mode[d] = GG_BPF_FLOW_ARMED;
		return pass(f, d, skb, GG_BPF_STAT_NO_PEER);
	}
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp) {
		backlog = peer_backlog(f, d, tp);
		peer_full = tp->inet_conn.icsk_inet.sk.sk_wmem_queued >= tp->inet_conn.icsk_inet.sk.sk_sndbuf;
	}
	bpf_sk_release(sk);
	if (backlog > GG_BPF_BACKLOG_MAX || (backlog > GG_BPF_STALL_LIMIT && peer_full)) {
		/* The peer does not keep up: hand this direction to userspace, whose relay has back-pressure, until it has
		 * caught up and re-arms it. */
		f->mode[d] = GG_BPF_FLOW_PASS;
		f->stalls[d]++;
		return pass(f, d, skb, GG_BPF_STAT_STALL);
	}
	if (mode == GG_BPF_FLOW_ARMED)
		f->mode[d] = GG_BPF_FLOW_REDIRECT;
	__sync_fetch_and_add(&f->bytes[d], skb->len);
	__sync_fetch_and_add(&f->events[d], 1);
	count(GG_BPF_STAT_REDIRECT, 1);
	count(GG_BPF_STAT_REDIRECT_BYTES, skb->len);
	if (stream)
		return bpf_sk_redirect_hash(skb, &targets, &peer, 0);
	return bpf_sk_redirect_hash(skb, &socks, &peer, 0);
}

/* gridgate's own writes on member sockets (userspace relay after a fallback, heads): accounting only. */
SEC("sk_msg")
int gg_msg(struct sk_msg_md *msg)
{
	count(GG_BPF_STAT_MSG_BYTES, msg->size);
	return SK_PASS;
}
