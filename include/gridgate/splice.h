/* Splicing a plain HTTP/1.1 streamed response (SSE or NDJSON) backend -> client in-kernel (issue 5, part 3b).
 *
 * gridgate sends the response head itself (h2o_http1_upgrade writes it from req->res and hands the client socket over),
 * with the backend's own framing passed through (`transfer-encoding: chunked`, or close-delimited), writes the body bytes
 * it already read, and arms the backend's flow: from then on the sockhash verdict redirects backend -> client bytes in
 * the kernel. The verdict keeps the stream's last bytes and passes the skb that ends it to userspace, which applies the
 * drain rule, writes that last piece, gives the backend connection back to its pool and the client connection back to
 * h2o for its next keep-alive request. A close-delimited body ends at the backend's FIN: drain, then close the client. */
#ifndef GG_SPLICE_H
#define GG_SPLICE_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "gridgate/bpf_abi.h"
#include "gridgate/upstream.h"

/** bpf.splice_streams: backend connections join the sockhash at connect and eligible streams are spliced. */
void gg_splice_set_streams(int on);
/** The streaming client paths (/v1/chat/completions, /v1/completions, /api/chat, /api/generate): the index of `path`,
 * or -1. bpf.splice_paths names a subset of them as a bit mask of these indexes. */
int gg_splice_path_index(const char *path, size_t len);
/** bpf.splice_paths: the paths whose streams may be spliced (bit i: path index i; 0: all of them). */
void gg_splice_set_paths(uint32_t mask);
/** 1 when streams of this client path may be spliced. */
int gg_splice_path_allowed(const char *path, size_t len);
/** 1 when the switch is on and the kernel assist is loaded. */
int gg_splice_streams(void);
/** upstream.c at connect: joins the sockhash when stream splicing is on. 0, or -errno (stays in userspace). */
int gg_splice_join(int fd, uint32_t *flow);

typedef struct gg_splice_result {
    uint64_t kernel_bytes; /* body bytes redirected in-kernel */
    uint64_t user_bytes;   /* body bytes gridgate wrote itself (what it held at the hand-off, catch-up, the end) */
    uint64_t skbs;         /* skbs redirected (the verdict counts events per skb) */
    const char *error;     /* NULL for a complete stream; else why it broke off (static string) */
    int backend_failed;    /* the backend broke the stream (reset, FIN mid-body, idle) */
    int spliced;           /* the kernel relayed part of it (the flow was armed) */
    size_t tail_len;
    char tail[GG_BPF_TAIL]; /* the stream's last bytes, still framed: the final usage chunk is usually in there */
} gg_splice_result_t;

typedef void (*gg_splice_done_cb)(void *ctx, const gg_splice_result_t *r);

/** From inside the upstream on_head: 1 when this response can be spliced (the connection joined, chunked or
 * close-delimited body, kernel assist ready). Nothing is changed. */
int gg_splice_possible(gg_upstream_req_t *up);
/**
 * From inside the upstream on_head, after gg_splice_possible said 1 and req->res holds status and headers (the caller
 * set content-type etc.; transfer-encoding is added here when the backend chunks): takes the backend connection from
 * `up` (which ends without further callbacks) and the client connection from h2o. `done` runs exactly once, later, when
 * the stream is over and both connections went back (or were closed). `kind` is GG_BPF_FLOW_SSE or NDJSON.
 */
void gg_splice_stream(h2o_req_t *req, gg_upstream_req_t *up, h2o_accept_ctx_t *accept_ctx, uint32_t kind, uint32_t idle_ms,
                      gg_splice_done_cb done, void *ctx);
/** Calls `cb` with each complete line of a stream tail that may be an event payload ("data: " stripped), skipping a
 * first line cut by the ring when `truncated`. */
void gg_splice_tail_events(const char *tail, size_t len, int truncated, void (*cb)(void *ctx, const char *p, size_t n), void *ctx);

/** Streams spliced right now on all threads. */
uint64_t gg_splice_active(void);
#endif
