/* A byte tunnel between two h2o sockets on one worker's loop: what an upgraded connection (WebSocket, any 101) becomes
 * once both ends are out of HTTP. It relays in both directions until either side closes or fails, then closes both.
 * The interface is deliberately "two sockets, relay until done": when tunnel splicing is on, the kernel assist is loaded
 * and both are plain TCP sockets, the relay becomes the kernel's (sockmap) once the bytes already read are flushed,
 * without the callers knowing.
 */
#ifndef GG_TUNNEL_H
#define GG_TUNNEL_H

#include <stdint.h>

#include <h2o/socket.h>

typedef struct gg_tunnel gg_tunnel_t;

typedef struct gg_tunnel_stats {
    uint64_t bytes[2];      /* bytes[0]: relayed from side a to side b; bytes[1]: from b to a (userspace + kernel) */
    uint64_t spliced_bytes; /* of those, relayed in-kernel (sockmap) */
    int spliced;            /* the pair was handed to the kernel */
    const char *reason;     /* why it ended: "closed by a", "closed by b", "error on a", ... (static string) */
} gg_tunnel_stats_t;

/** Called once when the tunnel ends, after both sockets are closed. */
typedef void (*gg_tunnel_on_close_cb)(void *ctx, const gg_tunnel_stats_t *stats);

/**
 * Takes ownership of `a` and `b` (both on the calling thread's loop, neither reading, `data` free for the tunnel) and
 * relays bytes between them. Bytes already sitting in a socket's `input` buffer are pending: they are sent to the other
 * side first. A direction reads its source only while nothing is being written to its destination (back-pressure).
 * When one side reaches EOF or fails, what it already sent is flushed to the other side, then both are closed and
 * `on_close` (may be NULL) runs. Never fails; the tunnel frees itself.
 */
gg_tunnel_t *gg_tunnel_start(h2o_socket_t *a, h2o_socket_t *b, gg_tunnel_on_close_cb on_close, void *ctx);
/** Ends a tunnel now (both sockets closed, on_close runs). */
void gg_tunnel_close(gg_tunnel_t *t);

/** bpf.splice_tunnels: tunnels between plain TCP sockets go in-kernel (sockmap) when the kernel assist is loaded. */
void gg_tunnel_set_splice(int on);

/** Tunnels open right now over all threads, and opened since start. */
uint64_t gg_tunnels_active(void);
uint64_t gg_tunnels_opened(void);

#endif
