/* ComfyUI adapter: detected by /system_stats; it serves workflows rather than named models, published
 * as the one model "comfyui"; load from /queue (queue_running, queue_pending). */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int gg_comfyui_parse_queue(const char *body, gg_engine_status_t *st)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *run = json_object_get(root, "queue_running"), *pend = json_object_get(root, "queue_pending");
    if (!json_is_array(run) || !json_is_array(pend)) {
        json_decref(root);
        return -EPROTO;
    }
    st->has_load = 1;
    st->running = (uint32_t)json_array_size(run);
    st->waiting = (uint32_t)json_array_size(pend);
    json_decref(root);
    return 0;
}

static int detect(const char *url, int timeout_ms)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/system_stats", timeout_ms, &res);
    if (r < 0)
        return r;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    int yes = json_is_object(json_object_get(v, "system"));
    json_decref(v);
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    gg_httpc_response_t res = {0};
    int r = gg_adapter_get(url, "/system_stats", timeout_ms, &res, st);
    if (r < 0)
        return r;
    json_t *v = json_loads(res.body, 0, NULL);
    const char *ver = json_string_value(json_object_get(json_object_get(v, "system"), "comfyui_version"));
    if (ver != NULL)
        snprintf(st->version, sizeof(st->version), "%s", ver);
    int ok = json_is_object(json_object_get(v, "system"));
    json_decref(v);
    gg_httpc_response_free(&res);
    if (!ok) {
        snprintf(st->reason, sizeof(st->reason), "bad JSON from /system_stats");
        return -EPROTO;
    }
    gg_engine_status_add_model(st, "comfyui", 1);
    if (gg_adapter_get(url, "/queue", timeout_ms, &res, st) == 0) {
        gg_comfyui_parse_queue(res.body, st);
        gg_httpc_response_free(&res);
    }
    st->reason[0] = '\0';
    return 0;
}

const gg_adapter_t gg_adapter_comfyui = {
    .name = "comfyui", .kind = GG_ENGINE_COMFYUI, .detect = detect, .poll = poll_engine, .default_capacity = 1};
