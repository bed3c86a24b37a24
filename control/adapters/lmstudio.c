/* LM Studio adapter: its REST API /api/v0/models lists every downloaded model with "state"
 * ("loaded" | "not-loaded"); all are served (LM Studio loads on demand). No load metrics. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

int gg_lmstudio_parse_models(const char *body, gg_engine_status_t *st)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        json_decref(root);
        return -EPROTO;
    }
    size_t i;
    json_t *e;
    int n = 0;
    json_array_foreach(data, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id == NULL || id[0] == '\0')
            continue;
        const char *state = json_string_value(json_object_get(e, "state"));
        gg_backend_model_t *m = gg_engine_status_add_model(st, id, state != NULL && strcmp(state, "loaded") == 0);
        if (m->meta == NULL)
            m->meta = json_incref(e);
        n++;
    }
    json_decref(root);
    return n;
}

static int detect(const char *url, int timeout_ms)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/api/v0/models", timeout_ms, &res);
    if (r < 0)
        return r;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    int yes = json_is_array(json_object_get(v, "data"));
    json_decref(v);
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    gg_httpc_response_t res = {0};
    int r = gg_adapter_get(url, "/api/v0/models", timeout_ms, &res, st);
    if (r < 0)
        return r;
    r = gg_lmstudio_parse_models(res.body, st);
    gg_httpc_response_free(&res);
    if (r < 0) {
        snprintf(st->reason, sizeof(st->reason), "bad JSON from /api/v0/models");
        return r;
    }
    st->reason[0] = '\0';
    return 0;
}

const gg_adapter_t gg_adapter_lmstudio = {
    .name = "lmstudio", .kind = GG_ENGINE_LMSTUDIO, .detect = detect, .poll = poll_engine, .default_capacity = 1};
