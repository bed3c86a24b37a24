/* Proxying one inference request to a backend: route, retry before the first byte reaches the client,
 * stream with back-pressure, translate dialects, count tokens, and end broken streams with an error in
 * the client's dialect. */
#ifndef GG_PROXY_H
#define GG_PROXY_H

#include <h2o.h>

#include "gridgate/reqinfo.h"

struct gg_tenant;

typedef struct gg_proxy_config {
    uint32_t connect_ms, first_byte_ms, idle_ms;
    unsigned max_attempts;     /* backends tried per request before giving up */
    int affinity;              /* hash X-Session-ID / OpenAI user to a preferred backend */
    int prefer_loaded;         /* prefer backends that have the model loaded */
    size_t max_response_bytes; /* non-streaming bodies are buffered (to translate or count); beyond: 502 */
} gg_proxy_config_t;

extern gg_proxy_config_t gg_proxy_config;

/** Registers the proxy's metrics. Call once before serving. */
void gg_proxy_init(void);
/**
 * Takes over `req`, a parsed inference request for `model` (alias already resolved), and answers it,
 * always. `tenant` is who sends it (its rate limits and admission apply). `ri` is moved into the proxy.
 * `served`/`loaded` are the model's backend masks. `body_edited`:
 * ri->root was changed, so the client's bytes cannot be forwarded as they are.
 */
void gg_proxy_start(h2o_req_t *req, struct gg_tenant *tenant, gg_reqinfo_t *ri, const char *client_path, const char *model,
                    const uint64_t *served, const uint64_t *loaded, int body_edited);
#endif
