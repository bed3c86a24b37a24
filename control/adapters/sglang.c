/* SGLang adapter: detected by /get_model_info; models from /v1/models (all loaded), load from /metrics
 * (sglang:num_running_reqs, num_queue_reqs, token_usage) when the server runs with --enable-metrics. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int gg_sglang_parse_metrics(const char *body, gg_engine_status_t *st)
{
    double run, wait, usage;
    if (gg_prom_value(body, "sglang:num_running_reqs", &run) != 0)
        return -ENOENT;
    if (gg_prom_value(body, "sglang:num_queue_reqs", &wait) != 0)
        wait = 0;
    if (gg_prom_value(body, "sglang:token_usage", &usage) != 0)
        usage = 0;
    st->has_load = 1;
    st->running = (uint32_t)(run < 0 ? 0 : run);
    st->waiting = (uint32_t)(wait < 0 ? 0 : wait);
    st->kv_permille = (uint32_t)(usage <= 0 ? 0 : usage >= 1 ? 1000 : usage * 1000 + 0.5);
    return 0;
}

static int detect(const char *url, int timeout_ms)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/get_model_info", timeout_ms, &res);
    if (r < 0)
        return r;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    int yes = json_is_string(json_object_get(v, "model_path"));
    json_decref(v);
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    return gg_adapter_poll_openai(url, timeout_ms, st, gg_sglang_parse_metrics);
}

const gg_adapter_t gg_adapter_sglang = {
    .name = "sglang", .kind = GG_ENGINE_SGLANG, .detect = detect, .poll = poll_engine, .default_capacity = 8};
