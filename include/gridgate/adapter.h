/* Engine adapters: one per engine kind (control/adapters/<kind>.c), each a const gg_adapter_t that can
 * detect its engine, and poll it (liveness + models + load) with the blocking HTTP client.
 * Every body parser is a pure function (body text in, gg_engine_status_t out) so unit tests feed it
 * fixture bodies; the network part of each adapter only fetches and calls them. */
#ifndef GG_ADAPTER_H
#define GG_ADAPTER_H
#include <stddef.h>
#include <stdint.h>

#include "gridgate/backend.h"

/* What one poll learnt about an engine. Models are appended with gg_engine_status_add_model. */
typedef struct gg_engine_status {
    gg_backend_model_t *models; /* malloc'd; ownership moves to the registry (gg_backend_set_models) */
    size_t n_models, cap_models;
    int has_load;         /* the fields below were read */
    uint32_t running;     /* requests being processed */
    uint32_t waiting;     /* queued inside the engine */
    uint32_t kv_permille; /* KV cache use, 0..1000 */
    uint32_t capacity;    /* parallel slots the engine reports (0 = unknown) */
    int loading;          /* the engine is up but loading a model (503 "Loading model") */
    char version[64];     /* engine version when known */
    char reason[128];     /* why a poll failed ("connect refused", "HTTP 500 on /api/tags") */
} gg_engine_status_t;

typedef struct gg_adapter {
    const char *name;
    enum gg_engine_kind kind;
    /** 1: this engine answers at base_url, 0: something else answers, <0: -errno (unreachable). */
    int (*detect)(const char *base_url, int timeout_ms);
    /** 0: up, st filled (models, load); -EBUSY: up but loading; other -errno: down (st->reason says why). */
    int (*poll)(const char *base_url, int timeout_ms, gg_engine_status_t *st);
    /** Capacity to assume when neither the config nor the engine gives one. */
    uint32_t default_capacity;
} gg_adapter_t;

extern const gg_adapter_t gg_adapter_ollama, gg_adapter_vllm, gg_adapter_sglang, gg_adapter_llamacpp, gg_adapter_lmstudio,
    gg_adapter_mlx, gg_adapter_comfyui;

/** The adapter of a kind (NULL for UNKNOWN). */
const gg_adapter_t *gg_adapter_for(enum gg_engine_kind kind);
/** Probes in detection order (ollama, comfyui, lmstudio, sglang, vllm, llamacpp, mlx: the generic MLX probe
 * last). Returns the kind, GG_ENGINE_UNKNOWN when reachable but unrecognised, or -errno when unreachable. */
int gg_adapter_detect(const char *base_url, int timeout_ms);

/* --- shared helpers (control/adapters/adapter.c) ------------------------------------------------ */
void gg_engine_status_init(gg_engine_status_t *st);
void gg_engine_status_free(gg_engine_status_t *st); /* frees models not handed over */
/** Appends (or, if present, updates `loaded`) a model; returns it (meta/ps may be set by the caller). */
gg_backend_model_t *gg_engine_status_add_model(gg_engine_status_t *st, const char *name, int loaded);
/** Prometheus text: sum of all samples of metric `name` (any labels). Returns 0 or -ENOENT. */
int gg_prom_value(const char *text, const char *name, double *out);
/** OpenAI GET /v1/models body: every id becomes a model with the given loaded flag. Returns count or -EPROTO. */
int gg_parse_openai_models(const char *body, int loaded, gg_engine_status_t *st);
/** GET with a status check; on failure fills st->reason and returns -errno (-EIO for a non-2xx status). */
struct gg_httpc_response;
int gg_adapter_get(const char *base_url, const char *path, int timeout_ms, struct gg_httpc_response *res, gg_engine_status_t *st);

/** GET /health: 2xx 0; 503 -EBUSY (loading; vLLM, SGLang, MLX and llama.cpp answer 503 while loading);
 * other statuses -EIO; transport errors -errno. Fills st->reason on failure. */
int gg_adapter_check_health(const char *base_url, int timeout_ms, gg_engine_status_t *st);
/** The poll of an engine that serves the OpenAI routes and lists only loaded models (vLLM, SGLang, MLX): its
 * health route, /v1/models, and /metrics through `parse_metrics` when that is not NULL. 0 or -errno. */
int gg_adapter_poll_openai(const char *url, int timeout_ms, gg_engine_status_t *st,
                           int (*parse_metrics)(const char *body, gg_engine_status_t *st));

/* --- pure parsers per engine (fixtures in tests/unit/control_adapters.c) ------------------------- */
int gg_ollama_parse_tags(const char *body, gg_engine_status_t *st); /* /api/tags */
int gg_ollama_parse_ps(const char *body, gg_engine_status_t *st);   /* /api/ps: marks loaded, running = count */
int gg_vllm_parse_metrics(const char *body, gg_engine_status_t *st);
int gg_sglang_parse_metrics(const char *body, gg_engine_status_t *st);
int gg_llamacpp_parse_props(const char *body, gg_engine_status_t *st); /* total_slots, model */
int gg_llamacpp_parse_slots(const char *body, gg_engine_status_t *st); /* /slots: running = is_processing */
int gg_llamacpp_parse_metrics(const char *body, gg_engine_status_t *st);
int gg_lmstudio_parse_models(const char *body, gg_engine_status_t *st); /* /api/v0/models: state=loaded */
int gg_comfyui_parse_queue(const char *body, gg_engine_status_t *st);   /* /queue */
#endif
