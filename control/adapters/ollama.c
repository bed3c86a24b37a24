/* Ollama adapter: detected by `GET /` ("Ollama is running") or /api/version + /api/tags; models from
 * /api/tags (all served, pulled on demand), loaded ones from /api/ps. Ollama exposes no queue depth. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* RFC 3339 ("2024-06-04T14:38:31.83753-07:00" or "...Z") to unix seconds; 0 when unparsable. */
static int64_t parse_rfc3339(const char *s)
{
    struct tm tm = {0};
    int n = 0;
    if (s == NULL ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t t = (int64_t)timegm(&tm);
    const char *p = s + n;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    int oh, om;
    if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2) {
        int off = (oh * 60 + om) * 60;
        t -= *p == '+' ? off : -off;
    }
    return t;
}

static json_t *models_array(const char *body, json_t **root)
{
    *root = json_loads(body, 0, NULL);
    json_t *models = json_object_get(*root, "models");
    return json_is_array(models) ? models : NULL;
}

int gg_ollama_parse_tags(const char *body, gg_engine_status_t *st)
{
    json_t *root, *models = models_array(body, &root), *e;
    if (models == NULL) {
        json_decref(root);
        return -EPROTO;
    }
    size_t i;
    int n = 0;
    json_array_foreach(models, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name == NULL)
            name = json_string_value(json_object_get(e, "model"));
        if (name == NULL || name[0] == '\0')
            continue;
        gg_backend_model_t *m = gg_engine_status_add_model(st, name, 0);
        m->size = (uint64_t)json_integer_value(json_object_get(e, "size"));
        if (m->meta == NULL)
            m->meta = json_incref(e);
        n++;
    }
    json_decref(root);
    return n;
}

int gg_ollama_parse_ps(const char *body, gg_engine_status_t *st)
{
    json_t *root, *models = models_array(body, &root), *e;
    if (models == NULL) {
        json_decref(root);
        return -EPROTO;
    }
    size_t i;
    int n = 0;
    json_array_foreach(models, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name == NULL)
            name = json_string_value(json_object_get(e, "model"));
        if (name == NULL || name[0] == '\0')
            continue;
        gg_backend_model_t *m = gg_engine_status_add_model(st, name, 1);
        if (m->size == 0)
            m->size = (uint64_t)json_integer_value(json_object_get(e, "size"));
        m->expires_at = parse_rfc3339(json_string_value(json_object_get(e, "expires_at")));
        json_decref(m->ps);
        m->ps = json_incref(e);
        n++;
    }
    json_decref(root);
    return n;
}

static int detect(const char *url, int timeout_ms)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/", timeout_ms, &res);
    if (r < 0)
        return r;
    int yes = res.status == 200 && strstr(res.body, "Ollama is running") != NULL;
    gg_httpc_response_free(&res);
    if (yes)
        return 1;
    /* A proxy in front may answer `/` itself: /api/version plus /api/tags is Ollama's API too. */
    if (gg_httpc_get(url, "/api/version", timeout_ms, &res) < 0)
        return 0;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    yes = json_is_string(json_object_get(v, "version"));
    json_decref(v);
    gg_httpc_response_free(&res);
    if (!yes || gg_httpc_get(url, "/api/tags", timeout_ms, &res) < 0)
        return 0;
    v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    yes = json_is_array(json_object_get(v, "models"));
    json_decref(v);
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    gg_httpc_response_t res = {0};
    int r = gg_adapter_get(url, "/api/tags", timeout_ms, &res, st);
    if (r < 0)
        return r;
    r = gg_ollama_parse_tags(res.body, st);
    gg_httpc_response_free(&res);
    if (r < 0) {
        snprintf(st->reason, sizeof(st->reason), "bad JSON from /api/tags");
        return r;
    }
    if (gg_adapter_get(url, "/api/ps", timeout_ms, &res, st) == 0) {
        gg_ollama_parse_ps(res.body, st);
        gg_httpc_response_free(&res);
    }
    st->reason[0] = '\0';
    return 0;
}

const gg_adapter_t gg_adapter_ollama = {
    .name = "ollama", .kind = GG_ENGINE_OLLAMA, .detect = detect, .poll = poll_engine, .default_capacity = 1};
