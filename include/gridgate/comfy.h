/* ComfyUI behind gridgate: routing of the ComfyUI HTTP API and its WebSocket over the ComfyUI backends, with a
 * sticky table that keeps a client's prompts, their history, their output files and the client's WebSocket on the
 * one backend that owns them (a ComfyUI server knows only its own prompts and only talks to its own sockets). */
#ifndef GG_COMFY_H
#define GG_COMFY_H

#include <stdint.h>

#include <h2o.h>

/** Whether `path` (normalized, without query) is a ComfyUI route, with or without the /api prefix. */
int gg_comfy_match(h2o_iovec_t path);
/** Answers a request whose path gg_comfy_match accepted, always. */
void gg_comfy_handle(h2o_req_t *req);
/** Registers the metrics; idempotent, thread-safe (gg_comfy_handle calls it too). */
void gg_comfy_init(void);

/* --- sticky table: key -> backend, shared by all workers (a client's POST and its WebSocket may land on different
 * threads), bounded with LRU eviction and an idle expiry. Exposed for tests and the admin side. */

enum gg_comfy_key { GG_COMFY_PROMPT, GG_COMFY_CLIENT, GG_COMFY_FILE };

#define GG_COMFY_STICKY_MAX 65536
#define GG_COMFY_STICKY_IDLE_MS (3600 * 1000)

/** Remembers that `key` lives on backend `slot`; refreshes an existing entry. */
void gg_comfy_sticky_put(enum gg_comfy_key kind, const char *key, size_t len, int slot);
/** The slot of `key`, or -1 when unknown, expired or when its backend was removed (the slot then holds another). */
int gg_comfy_sticky_get(enum gg_comfy_key kind, const char *key, size_t len);
/** Entries held now. */
size_t gg_comfy_sticky_size(void);
/** Changes the bounds (tests); drops every entry. */
void gg_comfy_sticky_configure(size_t max_entries, uint64_t idle_ms);

#endif
