/* Kernel assist: loading gridgate's BPF object, pinning and publishing its maps, and the flow operations the data plane
 * uses to splice socket pairs in-kernel. Everything here is a no-op (or -ENOTSUP) when BPF is off or unavailable, so
 * callers never need to know which mode they run in beyond gg_bpf_splice_ready(). */
#ifndef GG_BPF_H
#define GG_BPF_H

#include <stddef.h>
#include <stdint.h>

#include "gridgate/bpf_abi.h"

/**
 * Loads and attaches the BPF object, pinning its maps under pin_path (bpffs is mounted there if needed). Pinned maps
 * of the same ABI version are reused; others are removed and created afresh (one log line says which). mode is enum
 * gg_bpf_mode: OFF logs one line and returns 0; AUTO falls back to userspace with one log line when the kernel or the
 * privileges do not allow it; ON returns -errno instead. Not thread-safe: call once at start-up.
 */
int gg_bpf_init(int mode, const char *pin_path);
/**
 * Whether the maps pinned under pin_path are of this build: 1 when `version_map` (an array whose value starts with a
 * __u32 ABI version) holds `version`; 0 when there is none, or when it holds another version, after removing the
 * `maps` pins (with one warning line) so libbpf creates them afresh; -errno when a pin cannot be removed.
 */
int gg_bpf_check_pins(const char *pin_path, const char *version_map, uint32_t version, const char *const *maps, size_t n);
/** Detaches and unloads (pinned maps stay). */
void gg_bpf_shutdown(void);
/** Unpins everything pinned in the directory pin_path and removes it: for tests and benches that pin under a private
 * directory. 0 or -errno. */
int gg_bpf_remove_pins(const char *pin_path);
/** 1 when the maps are loaded and published. */
int gg_bpf_enabled(void);
/** 1 when new socket pairs may be spliced (loaded, and splicing not switched off with gg_bpf_set_splice). */
int gg_bpf_splice_ready(void);
void gg_bpf_set_splice(int on);

/** Control only: mirrors the backend registry and the model table into the `backends` and `models` maps. Cheap when
 * nothing changed; the health thread calls it every round. */
void gg_bpf_sync(void);
/** A consistent copy of one `backends` slot read through the mmapped array (no syscall). 0, or -EAGAIN/-ENOENT. */
int gg_bpf_backend_read(uint32_t slot, struct gg_bpf_backend *out);

/**
 * Data plane: splices the TCP sockets fd_a and fd_b both ways. The caller has written out everything it read from
 * either and stopped reading them. Returns 0 with *flow set, or -errno (then nothing changed and the caller relays
 * in userspace).
 */
int gg_bpf_splice_add(int fd_a, int fd_b, uint32_t kind, uint32_t *flow);
/** The flow's entry in the mmapped `flows` array, shared live with the verdict: read counters and mode[] with atomic
 * loads; userspace writes only user_bytes[] (after its write returned) and mode[] (PASS -> ARMED). */
struct gg_bpf_flow *gg_bpf_flow_at(uint32_t flow);
/** Forgets a flow; call it before closing its sockets (close() itself takes them out of the sockhash). `bytes` is what
 * it relayed in-kernel, for the totals. */
void gg_bpf_splice_del(uint32_t flow, uint64_t bytes);
/**
 * Why a spliced flow's bytes can no longer be vouched for, or NULL: the verdict marked it (enum gg_bpf_desync), or
 * userspace has read more of direction d (`read`, counted from when the socket joined) than the verdict passed it.
 * Either would put wrong bytes on the wire, so the caller resets both connections (gg_bpf_desync_reset).
 */
const char *gg_bpf_desync_reason(const struct gg_bpf_flow *f, int d, uint64_t read);
/** 1 when the verdict marked the flow desynced: its connection must not be reused. */
int gg_bpf_flow_desynced(uint32_t flow);
/** Makes the next close() of fd_a and fd_b (-1 for none) a reset, so neither peer takes a cut stream for complete, and
 * counts the pair in gridgate_splice_desyncs_total. */
void gg_bpf_desync_reset(int fd_a, int fd_b);
/** Bytes ever queued for sending on fd (acknowledged + still in the send queue): the drain rule compares it with what
 * was written and redirected. Returns -errno on failure. */
int64_t gg_bpf_queued(int fd);

/**
 * Streams (SSE/NDJSON responses spliced backend -> client). A backend connection joins at connect, before it can have
 * received a byte: it gets a flow slot of kind MEMBER whose verdict passes everything and counts it in pass_bytes[1].
 * Returns 0 with *flow set, or -errno (the connection then stays in userspace for good).
 */
int gg_bpf_stream_join(int fd, uint32_t *flow);
/** Before the joined socket closes: forgets its flow (close() takes it out of the sockhash). */
void gg_bpf_stream_leave(uint32_t flow);
/**
 * Hands the backend of `flow` to the kernel towards client_fd: the client joins the program-less `targets` map and
 * direction 1 is ARMED behind `arm_base` (every byte userspace read from the backend so far, all dealt with). The tail
 * ring already holds the connection's last bytes (the verdict keeps it for members too); from now on the verdict also
 * looks for the end marker in it, so the caller checks once whether the end had already arrived. kind is GG_BPF_FLOW_SSE/NDJSON,
 * framing enum gg_bpf_framing.
 */
int gg_bpf_stream_start(uint32_t flow, int client_fd, uint32_t kind, uint32_t framing, uint64_t arm_base);
/** Copies the stream's last min(cap, GG_BPF_TAIL) bytes (oldest first); returns how many. */
size_t gg_bpf_stream_tail(uint32_t flow, char *out, size_t cap);
/** 1 when the tail (oldest first, as gg_bpf_stream_tail) ends with the end marker of `framing`. */
int gg_bpf_stream_tail_ends(const char *tail, size_t n, uint32_t framing);
/** The stream is over (drained): the flow goes back to MEMBER/PASS and `bytes` spliced count in the totals. */
void gg_bpf_stream_stop(uint32_t flow, uint64_t bytes);

/** Totals since start (the metrics collector renders them). */
uint64_t gg_bpf_spliced_streams(void);
uint64_t gg_bpf_spliced_bytes(void);
uint64_t gg_bpf_desyncs(void);
#endif
