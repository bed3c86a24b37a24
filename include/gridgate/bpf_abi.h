/* The BPF ABI: every key and value that crosses between bpf/ programs and userspace, defined once.
 * Fixed-width fields, explicit padding, no pointers or bools; each size is asserted so a change that moves a field
 * is a compile error, and GG_BPF_ABI_VERSION (stored in the one-entry `meta` map) must be bumped with it so a newer
 * binary recreates stale pinned maps instead of misreading them. Mmapped array values are multiples of 8 bytes:
 * the kernel spaces mmapped elements round_up(value_size, 8) apart. */
#ifndef GG_BPF_ABI_H
#define GG_BPF_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define GG_BPF_ABI_VERSION 6

#define GG_BPF_MAX_BACKENDS 256 /* == GG_MAX_BACKENDS; the slot index is the key */
#define GG_BPF_MAX_MODELS 1024
#define GG_BPF_MAX_TENANTS 1024
#define GG_BPF_MAX_FLOWS 4096
#define GG_BPF_NAME_MAX 64
#define GG_BPF_MODEL_NAME_MAX 128
#define GG_BPF_BACKEND_WORDS (GG_BPF_MAX_BACKENDS / 64)

/* Redirected bytes the kernel has not yet queued on the peer socket wait in its psock, with no back-pressure. A
 * direction falls back to the userspace relay, which has back-pressure, once more than GG_BPF_STALL_LIMIT wait and
 * the peer's send buffer is full (its reader does not keep up), or once more than GG_BPF_BACKLOG_MAX wait whatever
 * the peer: a backlog with room on the peer is only the redirect worker not yet run, which catches up by itself. */
#define GG_BPF_STALL_LIMIT (16u << 20)
#define GG_BPF_BACKLOG_MAX (64u << 20)

/* A spliced stream keeps its last GG_BPF_TAIL bytes (a ring) for end-of-stream detection and for the final usage
 * chunk; the array is twice that so the verifier can bound a write at any ring offset. A power of two. */
#define GG_BPF_TAIL 512

/* meta (ARRAY, 1 entry) */
struct gg_bpf_meta {
    __u32 abi_version;
    __u32 pad;
    __u64 created_unix_s; /* when these pinned maps were created */
};

/* backends (ARRAY, mmapable, key = registry slot). `seq` is a generation counter: odd while control rewrites the
 * slot, so a reader that sees the same even value before and after copying has a consistent slot. */
struct gg_bpf_backend {
    __u32 seq;
    __u32 id;    /* registry id, unique per add: tells a reused slot from its previous backend */
    __u32 state; /* enum gg_backend_state: 0 free, 1 up, 2 down, 3 draining, 4 loading, 5 half_open */
    __u32 kind;  /* enum gg_engine_kind */
    __u32 weight;
    __u32 inflight;
    __u32 capacity;
    __u32 engine_running;
    __u32 engine_waiting; /* engine queue depth */
    __u32 kv_permille;
    __u32 ttft_ewma_us;
    __u32 tokens_per_s;
    __u32 consecutive_failures;
    __u16 port;
    __u16 pad;
    char name[GG_BPF_NAME_MAX];
};

/* models (HASH): model name -> the backends that list it and those that have it loaded (bit i = slot i) */
struct gg_bpf_model_key {
    char name[GG_BPF_MODEL_NAME_MAX];
};
struct gg_bpf_model {
    __u64 served[GG_BPF_BACKEND_WORDS];
    __u64 loaded[GG_BPF_BACKEND_WORDS];
    __u32 n_served;
    __u32 n_loaded;
};

/* tenants (HASH): tenant name -> fairness state and counters since start. Written by control from the data plane's
 * lock-free counters every health round and on a tenant add or update, never per request. */
struct gg_bpf_tenant_key {
    char name[GG_BPF_NAME_MAX];
};
enum gg_bpf_tenant_limit {
    GG_BPF_TENANT_REQUEST_LIMIT = 1, /* the request bucket is on (requests_per_s) */
    GG_BPF_TENANT_TOKEN_LIMIT = 2,   /* the token bucket is on (tokens_per_min) */
};
struct gg_bpf_tenant {
    __s64 request_bucket_milli; /* what the request bucket holds, thousandths of a request */
    __s64 token_bucket_milli;   /* what the token bucket holds, thousandths of a token (below 0 after a correction) */
    __u32 limits;               /* enum gg_bpf_tenant_limit bits; a bucket that is off holds 0 */
    __u32 weight;
    __u32 inflight; /* holding a backend slot now */
    __u32 queued;   /* waiting for admission now */
    __u64 requests; /* finished, any outcome */
    __u64 admitted;
    __u64 rejected_rate;  /* 429: request bucket empty */
    __u64 rejected_quota; /* 429: token bucket cannot pay */
    __u64 rejected_queue_full;
    __u64 rejected_over_share;
    __u64 rejected_overloaded; /* 503 */
    __u64 tokens_in;           /* prompt tokens of admitted requests (what the token bucket was charged, with tokens_out) */
    __u64 tokens_out;
};

/* flows (ARRAY, mmapable, key = flow slot): one entry per spliced pair, free when cookie[0] is 0. Direction 0 is
 * a -> b, 1 is b -> a. Userspace and the verdict share it through the mmap: counters are atomic adds; mode[d] moves
 * REDIRECT -> PASS (verdict, peer stalled), PASS -> ARMED (userspace, caught up), ARMED -> REDIRECT (verdict, once
 * user_bytes[d] == pass_bytes[d], i.e. everything it passed has been written out by userspace). */
enum gg_bpf_flow_mode {
    GG_BPF_FLOW_PASS = 0,     /* the verdict passes bytes to userspace */
    GG_BPF_FLOW_REDIRECT = 1, /* the verdict redirects bytes to the peer socket */
    GG_BPF_FLOW_ARMED = 2,    /* passing until userspace has written out all it was passed, then redirecting */
};
enum gg_bpf_flow_kind {
    GG_BPF_FLOW_TUNNEL = 1, /* upgraded connection (WebSocket, any 101) */
    GG_BPF_FLOW_SSE = 2,
    GG_BPF_FLOW_NDJSON = 3,
    GG_BPF_FLOW_MEMBER = 4, /* a backend connection that may be spliced: joined at connect, passing until a stream starts */
};
/* How a spliced stream's body is delimited, which decides the end marker the verdict looks for. */
enum gg_bpf_framing {
    GG_BPF_FRAMING_CHUNKED = 1, /* ends with "\n" + "\r\n0\r\n\r\n" (the last event's newline, last chunk) */
    GG_BPF_FRAMING_CLOSE = 2,   /* ends at the backend's FIN; "[DONE]\n\n" flips to userspace early */
};
/* Why the verdict stopped trusting a flow's byte accounting. It then passes every later skb, and userspace resets both
 * connections instead of relaying: a reset the client sees beats bytes it cannot tell are wrong. */
enum gg_bpf_desync {
    GG_BPF_DESYNC_NONE = 0,
    GG_BPF_DESYNC_SEQ_AHEAD = 1,  /* the socket's copied_seq ran past the last byte the verdict handed on */
    GG_BPF_DESYNC_CUT_FAILED = 2, /* an skb's repeated head could not be cut off */
};
struct gg_bpf_flow {
    __u64 cookie[2];     /* socket cookies of side a and side b */
    __u64 start_ns;      /* bpf_ktime_get_ns() clock (CLOCK_MONOTONIC) */
    __u64 bytes[2];      /* redirected in-kernel, per direction */
    __u64 pass_bytes[2]; /* passed to userspace after insertion, per direction */
    __u64 user_bytes[2]; /* written by userspace to the destination after insertion (published by userspace) */
    __u64 events[2];     /* skbs redirected (tunnels) or events seen (SSE/NDJSON) */
    __u32 mode[2];       /* enum gg_bpf_flow_mode, per direction */
    __u32 base_seq[2];   /* write_seq of socket [i] when the first byte was redirected to it */
    __u32 based[2];      /* base_seq[i] is valid */
    __u32 kind;          /* enum gg_bpf_flow_kind */
    __u16 stalls[2];     /* times direction d fell back to userspace because its reader stalled */
    /* streams (SSE/NDJSON, backend -> client is direction 1): the backend joined at connect, so pass_bytes counts from
     * there; arm_base[d] is what userspace read before the stream was handed over (earlier responses, the head), and
     * ARMED redirects once arm_base + user_bytes == pass_bytes. */
    __u64 arm_base[2];
    __u32 framing; /* enum gg_bpf_framing */
    __u32 ended;   /* the verdict saw the end marker: it passed that skb and every later one */
    __u32 desync;  /* enum gg_bpf_desync: set once by the verdict, never cleared while the flow lives */
    __u32 pad;
    __u64 tail_len; /* stream bytes ever put in tail (ring position = tail_len % GG_BPF_TAIL) */
    __u8 tail[2 * GG_BPF_TAIL];
};

/* ends (HASH, internal): socket cookie -> its flow slot and direction (the direction it sends in), and the TCP
 * sequence number just past the last byte the verdict has handed on from this socket (see drop_repeat()) */
struct gg_bpf_end {
    __u32 flow;
    __u32 dir;
    __u32 next_seq;
    __u32 seq_known; /* next_seq is set; 0 in a new entry: the first skb takes it from the socket's copied_seq */
};

/* stats (PERCPU_ARRAY): counters by reason, key = enum gg_bpf_stat */
enum gg_bpf_stat {
    GG_BPF_STAT_PASS_NO_FLOW,   /* skb on a socket that is in no flow */
    GG_BPF_STAT_PASS_MODE,      /* skb passed because its direction is in PASS mode */
    GG_BPF_STAT_REDIRECT,       /* skbs redirected */
    GG_BPF_STAT_REDIRECT_BYTES, /* bytes redirected */
    GG_BPF_STAT_STALL,          /* a direction's peer stalled (see GG_BPF_STALL_LIMIT): it fell back to userspace */
    GG_BPF_STAT_NO_PEER,        /* the peer socket was gone from the sockhash: passed */
    GG_BPF_STAT_MSG_BYTES,      /* bytes gridgate itself sent on member sockets (sk_msg) */
    GG_BPF_STAT_STREAM_END,     /* a spliced stream's end marker seen: that skb went to userspace */
    GG_BPF_STAT_REPEAT_BYTES,   /* bytes cut off the head of an skb that repeated bytes already handed on */
    GG_BPF_STAT_REPEAT_FAIL,    /* an skb whose repeated head could not be cut off: its flow desynced */
    GG_BPF_STAT_SEQ_AHEAD,      /* an skb on a socket whose copied_seq was past the verdict's next byte: desynced */
    GG_BPF_STAT_COUNT
};
struct gg_bpf_stat_val {
    __u64 value;
};

_Static_assert(sizeof(struct gg_bpf_meta) == 16, "meta ABI");
_Static_assert(sizeof(struct gg_bpf_backend) == 120, "backend ABI");
_Static_assert(sizeof(struct gg_bpf_backend) % 8 == 0, "mmapped array values must be 8-byte multiples");
_Static_assert(sizeof(struct gg_bpf_model) == 72, "model ABI");
_Static_assert(sizeof(struct gg_bpf_tenant) == 104, "tenant ABI");
_Static_assert(sizeof(struct gg_bpf_flow) == 160 + 2 * GG_BPF_TAIL, "flow ABI");
_Static_assert(sizeof(struct gg_bpf_end) == 16, "end ABI");
_Static_assert(sizeof(struct gg_bpf_flow) % 8 == 0, "mmapped array values must be 8-byte multiples");
#endif
