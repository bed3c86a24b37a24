/* llama.cpp server adapter: detected by /props; liveness from /health (503 "Loading model" = loading);
 * models from /v1/models (else /props model_path); capacity = /props total_slots; load from /slots, or from
 * /metrics (llamacpp:requests_processing, requests_deferred, kv_cache_usage_ratio) when /slots is off. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int gg_llamacpp_parse_props(const char *body, gg_engine_status_t *st)
{
    json_t *root = json_loads(body, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return -EPROTO;
    }
    json_int_t slots = json_integer_value(json_object_get(root, "total_slots"));
    if (slots > 0 && slots < 100000)
        st->capacity = (uint32_t)slots;
    const char *path = json_string_value(json_object_get(root, "model_path"));
    if (path != NULL && path[0] != '\0' && st->n_models == 0) {
        /* No /v1/models: name the model after its file, as llama.cpp's own /v1/models does. */
        gg_engine_status_add_model(st, path, 1);
    }
    json_decref(root);
    return 0;
}

int gg_llamacpp_parse_slots(const char *body, gg_engine_status_t *st)
{
    json_t *root = json_loads(body, 0, NULL);
    if (!json_is_array(root)) {
        json_decref(root);
        return -EPROTO;
    }
    size_t i;
    json_t *e;
    uint32_t busy = 0;
    json_array_foreach(root, i, e)
    {
        json_t *p = json_object_get(e, "is_processing");
        /* Older servers report "state": 0 idle, 1 processing. */
        if (json_is_true(p) || (p == NULL && json_integer_value(json_object_get(e, "state")) != 0))
            busy++;
    }
    st->has_load = 1;
    st->running = busy;
    st->waiting = 0;
    if (st->capacity == 0)
        st->capacity = (uint32_t)json_array_size(root);
    json_decref(root);
    return 0;
}

int gg_llamacpp_parse_metrics(const char *body, gg_engine_status_t *st)
{
    double run, wait, kv;
    if (gg_prom_value(body, "llamacpp:requests_processing", &run) != 0)
        return -ENOENT;
    if (gg_prom_value(body, "llamacpp:requests_deferred", &wait) != 0)
        wait = 0;
    if (gg_prom_value(body, "llamacpp:kv_cache_usage_ratio", &kv) != 0)
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
    int r = gg_httpc_get(url, "/props", timeout_ms, &res);
    if (r < 0)
        return r;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    int yes = json_object_get(v, "total_slots") != NULL || json_object_get(v, "default_generation_settings") != NULL;
    json_decref(v);
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/health", timeout_ms, &res);
    if (r < 0) {
        snprintf(st->reason, sizeof(st->reason), "%s on /health", gg_httpc_strerror(r));
        return r;
    }
    if (res.status == 503 && strstr(res.body, "oading") != NULL) {
        st->loading = 1;
        snprintf(st->reason, sizeof(st->reason), "loading model");
        gg_httpc_response_free(&res);
        return -EBUSY;
    }
    if (res.status != 200) {
        snprintf(st->reason, sizeof(st->reason), "HTTP %d on /health", res.status);
        gg_httpc_response_free(&res);
        return -EIO;
    }
    gg_httpc_response_free(&res);
    if (gg_adapter_get(url, "/v1/models", timeout_ms, &res, st) == 0) {
        gg_parse_openai_models(res.body, 1, st);
        gg_httpc_response_free(&res);
    }
    if (gg_adapter_get(url, "/props", timeout_ms, &res, st) == 0) {
        gg_llamacpp_parse_props(res.body, st);
        gg_httpc_response_free(&res);
    }
    int have_load = 0;
    if (gg_adapter_get(url, "/slots", timeout_ms, &res, st) == 0) {
        have_load = gg_llamacpp_parse_slots(res.body, st) == 0;
        gg_httpc_response_free(&res);
    }
    if (!have_load && gg_adapter_get(url, "/metrics", timeout_ms, &res, st) == 0) {
        gg_llamacpp_parse_metrics(res.body, st);
        gg_httpc_response_free(&res);
    }
    st->reason[0] = '\0';
    return 0;
}

const gg_adapter_t gg_adapter_llamacpp = {
    .name = "llamacpp", .kind = GG_ENGINE_LLAMACPP, .detect = detect, .poll = poll_engine, .default_capacity = 1};
