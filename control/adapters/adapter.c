/* What the engine adapters share: the detection order, the status/model list helpers, the one Prometheus
 * text parser and the OpenAI /v1/models parser. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const gg_adapter_t *gg_adapter_for(enum gg_engine_kind kind)
{
    switch (kind) {
    case GG_ENGINE_OLLAMA:
        return &gg_adapter_ollama;
    case GG_ENGINE_VLLM:
        return &gg_adapter_vllm;
    case GG_ENGINE_SGLANG:
        return &gg_adapter_sglang;
    case GG_ENGINE_LLAMACPP:
        return &gg_adapter_llamacpp;
    case GG_ENGINE_LMSTUDIO:
        return &gg_adapter_lmstudio;
    case GG_ENGINE_MLX:
        return &gg_adapter_mlx;
    case GG_ENGINE_COMFYUI:
        return &gg_adapter_comfyui;
    default:
        return NULL;
    }
}

int gg_adapter_detect(const char *base_url, int timeout_ms)
{
    /* Specific probes first: SGLang before vLLM (both are OpenAI servers with /metrics), MLX's
     * /health + /v1/models would match almost anything, so it goes last. */
    static const gg_adapter_t *const order[] = {&gg_adapter_ollama, &gg_adapter_comfyui,  &gg_adapter_lmstudio, &gg_adapter_sglang,
                                                &gg_adapter_vllm,   &gg_adapter_llamacpp, &gg_adapter_mlx};
    int reachable = 0, last_err = -EHOSTUNREACH;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        int r = order[i]->detect(base_url, timeout_ms);
        if (r == 1)
            return order[i]->kind;
        if (r == 0) {
            reachable = 1;
        } else {
            last_err = r;
            /* Nothing listens: the other probes would fail the same way. */
            if (!reachable && (r == -ECONNREFUSED || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ENETUNREACH))
                return r;
        }
    }
    return reachable ? GG_ENGINE_UNKNOWN : last_err;
}

void gg_engine_status_init(gg_engine_status_t *st)
{
    memset(st, 0, sizeof(*st));
}

void gg_engine_status_free(gg_engine_status_t *st)
{
    for (size_t i = 0; i < st->n_models; i++) {
        json_decref(st->models[i].meta);
        json_decref(st->models[i].ps);
    }
    free(st->models);
    st->models = NULL;
    st->n_models = st->cap_models = 0;
}

gg_backend_model_t *gg_engine_status_add_model(gg_engine_status_t *st, const char *name, int loaded)
{
    for (size_t i = 0; i < st->n_models; i++) {
        if (strcmp(st->models[i].name, name) == 0) {
            st->models[i].loaded |= loaded;
            return &st->models[i];
        }
    }
    if (st->n_models == st->cap_models) {
        st->cap_models = st->cap_models ? st->cap_models * 2 : 8;
        st->models = realloc(st->models, st->cap_models * sizeof(*st->models));
        if (st->models == NULL)
            abort();
    }
    gg_backend_model_t *m = &st->models[st->n_models++];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->loaded = loaded;
    return m;
}

int gg_prom_value(const char *text, const char *name, double *out)
{
    size_t nl = strlen(name);
    int found = 0;
    double sum = 0;
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *eol = strchr(p, '\n');
        if (*p != '#' && strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ' || p[nl] == '\t')) {
            const char *v = p + nl;
            if (*v == '{') {
                /* Skip the label set; label values may hold '}' inside quotes. */
                int inq = 0;
                for (v++; *v != '\0' && *v != '\n' && (inq || *v != '}'); v++) {
                    if (*v == '\\' && inq && v[1] != '\0')
                        v++;
                    else if (*v == '"')
                        inq = !inq;
                }
                if (*v == '}')
                    v++;
            }
            char *end;
            double d = strtod(v, &end);
            if (end != v && isfinite(d)) {
                sum += d;
                found = 1;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    if (!found)
        return -ENOENT;
    *out = sum;
    return 0;
}

int gg_parse_openai_models(const char *body, int loaded, gg_engine_status_t *st)
{
    json_t *root = json_loads(body, 0, NULL);
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        json_decref(root);
        return -EPROTO;
    }
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(data, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        if (id == NULL || id[0] == '\0')
            continue;
        gg_backend_model_t *m = gg_engine_status_add_model(st, id, loaded);
        if (m->meta == NULL)
            m->meta = json_incref(e);
        n++;
    }
    json_decref(root);
    return n;
}

int gg_adapter_get(const char *base_url, const char *path, int timeout_ms, struct gg_httpc_response *res, gg_engine_status_t *st)
{
    res->max_body = 0;
    int r = gg_httpc_get(base_url, path, timeout_ms, res);
    if (r < 0) {
        snprintf(st->reason, sizeof(st->reason), "%s on %s", gg_httpc_strerror(r), path);
        return r;
    }
    if (res->status < 200 || res->status > 299) {
        snprintf(st->reason, sizeof(st->reason), "HTTP %d on %s", res->status, path);
        gg_httpc_response_free(res);
        return -EIO;
    }
    return 0;
}

int gg_adapter_check_health(const char *base_url, int timeout_ms, gg_engine_status_t *st)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(base_url, "/health", timeout_ms, &res);
    if (r < 0) {
        snprintf(st->reason, sizeof(st->reason), "%s on /health", gg_httpc_strerror(r));
        return r;
    }
    int status = res.status;
    gg_httpc_response_free(&res);
    if (status == 503) {
        st->loading = 1;
        snprintf(st->reason, sizeof(st->reason), "loading model");
        return -EBUSY;
    }
    if (status < 200 || status > 299) {
        snprintf(st->reason, sizeof(st->reason), "HTTP %d on /health", status);
        return -EIO;
    }
    return 0;
}

int gg_adapter_poll_openai(const char *url, int timeout_ms, gg_engine_status_t *st,
                           int (*parse_metrics)(const char *body, gg_engine_status_t *st))
{
    gg_httpc_response_t res = {0};
    int r = gg_adapter_check_health(url, timeout_ms, st);
    if (r < 0)
        return r;
    r = gg_adapter_get(url, "/v1/models", timeout_ms, &res, st);
    if (r < 0)
        return r;
    r = gg_parse_openai_models(res.body, 1, st);
    gg_httpc_response_free(&res);
    if (r < 0) {
        snprintf(st->reason, sizeof(st->reason), "bad JSON from /v1/models");
        return r;
    }
    if (parse_metrics != NULL && gg_adapter_get(url, "/metrics", timeout_ms, &res, st) == 0) {
        parse_metrics(res.body, st);
        gg_httpc_response_free(&res);
    }
    st->reason[0] = '\0';
    return 0;
}
