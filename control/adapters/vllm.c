/* vLLM adapter: detected by /version plus `vllm:` metrics; models from /v1/models (all loaded), load
 * from /metrics (num_requests_running/waiting, kv_cache_usage_perc or the older gpu_cache_usage_perc). */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int gg_vllm_parse_metrics(const char *body, gg_engine_status_t *st)
{
    double run, wait, kv;
    if (gg_prom_value(body, "vllm:num_requests_running", &run) != 0)
        return -ENOENT;
    if (gg_prom_value(body, "vllm:num_requests_waiting", &wait) != 0)
        wait = 0;
    if (gg_prom_value(body, "vllm:kv_cache_usage_perc", &kv) != 0 && gg_prom_value(body, "vllm:gpu_cache_usage_perc", &kv) != 0)
        kv = 0;
    st->has_load = 1;
    st->running = (uint32_t)(run < 0 ? 0 : run);
    st->waiting = (uint32_t)(wait < 0 ? 0 : wait);
    st->kv_permille = (uint32_t)(kv <= 0 ? 0 : kv >= 1 ? 1000 : kv * 1000 + 0.5);
    return 0;
}

static int detect(const char *url, int timeout_ms)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/version", timeout_ms, &res);
    if (r < 0)
        return r;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    int yes = json_is_string(json_object_get(v, "version"));
    json_decref(v);
    gg_httpc_response_free(&res);
    if (!yes || gg_httpc_get(url, "/metrics", timeout_ms, &res) < 0)
        return 0;
    yes = res.status == 200 && strstr(res.body, "vllm:") != NULL;
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    return gg_adapter_poll_openai(url, timeout_ms, st, gg_vllm_parse_metrics);
}

const gg_adapter_t gg_adapter_vllm = {
    .name = "vllm", .kind = GG_ENGINE_VLLM, .detect = detect, .poll = poll_engine, .default_capacity = 8};
