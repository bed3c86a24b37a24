/* The backend registry and the published model table.
 *
 * Backends live in a fixed array of GG_MAX_BACKENDS slots; a slot's index never changes while its backend
 * exists (it will be mirrored into a BPF array, hence the fixed-width integer fields). Control writes the
 * identity fields once before it publishes a slot (a release store of `state` != FREE), and the atomics
 * of the "published" block afterwards. The data plane reads those and writes only the "counted" block.
 * A removed slot is not reused while its inflight is non-zero nor within GG_BACKEND_REUSE_MS of its removal,
 * so a request that still holds a pointer to it never sees another backend's identity.
 *
 * What the router reads is the published view: one struct gg_bpf_backend per slot, the BPF_F_MMAPABLE `backends`
 * map when the kernel assist is on and a plain array otherwise (one code path either way). Control copies the
 * published fields into it (gg_backends_publish) under a per-slot generation counter; the data plane's in-flight
 * count lives only there (atomic inc/dec through the mmap, so bpftool shows it live) and control never writes it.
 *
 * The model table is an immutable snapshot swapped atomically. Readers take gg_models_current() for one
 * routing decision and must not keep it longer: a replaced snapshot is freed GG_MODELS_GRACE_MS (5 s) after
 * it was replaced (grace period, no reader-side cost). */
#ifndef GG_BACKEND_H
#define GG_BACKEND_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "gridgate/bpf_abi.h"

#define GG_MAX_BACKENDS 256
#define GG_MODELS_GRACE_MS 5000
#define GG_BACKEND_REUSE_MS 5000

enum gg_engine_kind {
    GG_ENGINE_UNKNOWN,
    GG_ENGINE_OLLAMA,
    GG_ENGINE_VLLM,
    GG_ENGINE_SGLANG,
    GG_ENGINE_LLAMACPP,
    GG_ENGINE_LMSTUDIO,
    GG_ENGINE_MLX,
    GG_ENGINE_COMFYUI,
    GG_ENGINE_KIND_COUNT
};
enum gg_backend_state {
    GG_BACKEND_FREE,
    GG_BACKEND_UP,
    GG_BACKEND_DOWN,
    GG_BACKEND_DRAINING,
    GG_BACKEND_LOADING,
    GG_BACKEND_HALF_OPEN,
    GG_BACKEND_STATE_COUNT
};

typedef struct gg_backend {
    /* identity, written once by control before the slot is published */
    char name[64], url[256], host[256]; /* url without a trailing '/'; host without brackets */
    uint16_t port;
    uint32_t id; /* unique per add (never reused), tells a reused slot from its previous backend */
    /* published by control (atomics; the data plane reads) */
    _Atomic uint32_t kind; /* enum gg_engine_kind: UNKNOWN until the first probe detects it */
    _Atomic uint32_t state, weight;
    _Atomic uint32_t capacity; /* max concurrent: configured max_inflight, else derived from the engine
                                  (llama.cpp total_slots, ollama 1, vllm/sglang control/capacity.c, others 1) */
    _Atomic uint32_t engine_running, engine_waiting, kv_permille, ttft_ewma_us, tokens_per_s, consecutive_failures;
    _Atomic uint32_t max_inflight; /* configured (0 = derive capacity) */
    _Atomic uint32_t generation;   /* bumped on every change of the slot */
    /* counted by the data plane (control never writes these while the slot is live); in-flight is in the view */
    _Atomic uint64_t requests, failures /* passive: connect error, timeout, 5xx not the model's fault */;
    _Atomic uint64_t successes;             /* completed without a backend fault (see report_success) */
    _Atomic uint64_t ttft_sum_us, ttft_obs; /* gg_backend_observe: control turns them into ttft_ewma_us */
    _Atomic uint64_t tokens_out;            /* output tokens: control turns them into tokens_per_s */
} gg_backend_t;

/** The slots; iterate 0..gg_backends_hwm and skip state FREE. */
extern gg_backend_t gg_backends[GG_MAX_BACKENDS];
/** One past the highest slot ever used (acquire-load it before scanning). */
extern _Atomic uint32_t gg_backends_hwm;

const char *gg_engine_kind_name(enum gg_engine_kind k); /* "ollama", ..., "unknown" */
/** Parses a kind name ("auto" and "" mean UNKNOWN); returns the kind or -EINVAL. */
int gg_engine_kind_parse(const char *name);
const char *gg_backend_state_name(enum gg_backend_state s); /* "up", "down", ... */

/**
 * Adds a backend in state DOWN (health probes it at once and publishes it UP once it answers).
 * name may be NULL or "" (then "HOST:PORT" of the url). weight 0 means 1. Returns the slot index,
 * -EEXIST (name taken), -EINVAL (bad url/name), -ENOSPC (no free slot).
 */
int gg_backend_add(const char *name, const char *url, enum gg_engine_kind kind, uint32_t weight, uint32_t max_inflight);
/** Frees the slot and drops its models from the table. Returns 0 or -ENOENT. */
int gg_backend_remove(const char *name);
/** Control only: publishes a new state (bumps generation). Returns 0 or -EINVAL. */
int gg_backend_set_state(gg_backend_t *b, enum gg_backend_state state);
/** Operator drain: the backend gets no new requests until undrained; health keeps probing it. */
int gg_backend_drain(const char *name, int drain);
gg_backend_t *gg_backend_find(const char *name);
static inline int gg_backend_index(const gg_backend_t *b)
{
    return (int)(b - gg_backends);
}
/** Frees every slot and snapshot (tests, shutdown). Not safe while other threads use the registry. */
void gg_backends_reset(void);

/* --- the published view --------------------------------------------------------------------- */
/** GG_MAX_BACKENDS slots, read lock-free by the router (relaxed loads of single fields). */
extern struct gg_bpf_backend *gg_backend_view;
/** Requests gridgate has in flight on slot i (the data plane's counter, in the view). */
static inline uint32_t gg_backend_inflight(int slot)
{
    return __atomic_load_n(&gg_backend_view[slot].inflight, __ATOMIC_RELAXED);
}
/** Data plane: +1 at dispatch, -1 at the end of a request on slot i. */
static inline void gg_backend_inflight_add(int slot, int delta)
{
    __atomic_fetch_add(&gg_backend_view[slot].inflight, (uint32_t)delta, __ATOMIC_RELAXED);
}
/** Control: copies slot i's published fields into the view (no-op when unchanged; the slot's seq moves by 2 on a
 * change). gg_backend_add/remove/set_state publish their slot themselves. */
void gg_backends_publish(int slot);
/** Control: publishes every slot (the health thread calls it every round, through gg_bpf_sync). */
void gg_backends_publish_all(void);
/** Moves the view into `mem` (the mmapped `backends` map), or back into the process heap when mem is NULL, carrying
 * the in-flight counts over and republishing every slot. Only while no data-plane thread runs (start-up, shutdown). */
void gg_backend_view_move(struct gg_bpf_backend *mem);

/** Data plane: passive ejection signal (connect error, timeout, 5xx that is not the model's fault).
 * Wakes the health thread so the state flips to DOWN within milliseconds. */
void gg_backend_report_failure(gg_backend_t *b);
/** Data plane: a request completed fine; a backend in HALF_OPEN is promoted by it. */
void gg_backend_report_success(gg_backend_t *b);
/** Data plane: one observation of time to first token and tokens produced (either may be 0). */
void gg_backend_observe(gg_backend_t *b, uint32_t ttft_us, uint32_t tokens_out);
/** Set by the health module: called (from any thread) by report_failure/report_success. */
extern void (*gg_backend_wake_hook)(void);
/** Set by the health module so drains go through its state machine (else drain just sets the state). */
extern int (*gg_backend_drain_hook)(gg_backend_t *b, int drain);

/* --- models ------------------------------------------------------------------------------------- */
#define GG_MODEL_NAME_MAX 128
#define GG_BACKEND_WORDS (GG_MAX_BACKENDS / 64)

typedef struct gg_model_entry {
    char name[GG_MODEL_NAME_MAX];
    uint64_t served[GG_BACKEND_WORDS]; /* bit i: slot i lists the model */
    uint64_t loaded[GG_BACKEND_WORDS]; /* bit i: slot i has it in memory now */
} gg_model_entry_t;

typedef struct gg_model_table {
    uint64_t version; /* increases with every publication */
    size_t n;
    gg_model_entry_t e[]; /* sorted by name (strcmp) */
} gg_model_table_t;

static inline int gg_model_bit(const uint64_t *set, int slot)
{
    return (int)((set[slot >> 6] >> (slot & 63)) & 1);
}

/** The current snapshot (never NULL). Hold it for one routing decision only. */
const gg_model_table_t *gg_models_current(void);
/** Binary search by name; NULL when absent. Names are kept without Ollama's implicit ":latest" tag, so "llama3"
 * and "llama3:latest" find the same entry (which every engine listing either name contributes to). */
const gg_model_entry_t *gg_models_find(const gg_model_table_t *t, const char *name);

/** One model as an engine reported it (control side; see gg_backend_set_models). */
typedef struct gg_backend_model {
    char name[GG_MODEL_NAME_MAX];
    int loaded;
    uint64_t size;      /* bytes, 0 if unknown */
    int64_t expires_at; /* unix seconds when an idle engine unloads it (ollama), 0 if unknown */
    json_t *meta;       /* engine's own description (ollama /api/tags entry, ...), owned, may be NULL */
    json_t *ps;         /* engine's own "loaded" description (ollama /api/ps entry), owned, may be NULL */
} gg_backend_model_t;

/**
 * Control only: replaces a backend's model list (takes ownership of models[] and their json; the array
 * must be malloc'd). Republishes the table when names or loaded flags changed. Returns 1 when it
 * republished, 0 when nothing changed, -ENOENT when the slot is free.
 */
int gg_backend_set_models(gg_backend_t *b, gg_backend_model_t *models, size_t n);
/** Frees snapshots replaced more than GG_MODELS_GRACE_MS ago (health calls it every tick). */
void gg_models_reclaim(void);

/**
 * The merged listing for /v1/models, /api/tags, /api/ps (new reference; caller json_decref's it):
 * [{"name", "served_by":[backend names], "loaded_on":[...], "kinds":[...], "size", "expires_at" (unix s),
 *   "meta": engine's own entry (e.g. ollama tags entry) or null, "ps": ollama /api/ps entry or null}]
 * sorted by name; only backends in state UP, HALF_OPEN, LOADING or DRAINING contribute.
 */
json_t *gg_models_list_json(void);
/** Prometheus gauges of every live backend (gridgate_backend_up{backend,kind,state}, in-flight, capacity,
 * engine load, TTFT average), for the /metrics collector. */
struct gg_buf;
void gg_backends_render_metrics(struct gg_buf *out);
/** Registry as JSON for the admin API / gridctl: [{"slot","name","url","kind","state",...}]. */
json_t *gg_backends_list_json(void);
#endif
