/* The client-facing API: one h2o handler that dispatches by path to the listings, health, metrics and
 * the proxy. Every answer is in the dialect of the path that was called. */
#include "gridgate/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gridgate/accesslog.h"
#include "gridgate/admin.h"
#include "gridgate/admission.h"
#include "gridgate/backend.h"
#include "gridgate/comfy.h"
#include "gridgate/dialect.h"
#include "gridgate/framing.h"
#include "gridgate/gzip.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "gridgate/proxy.h"
#include "gridgate/registration.h"
#include "gridgate/respond.h"
#include "gridgate/server.h"
#include "gridgate/tenant.h"

#define GG_VERSION "0.1.0"
/* The Ollama version reported on /api/version: clients gate features on it. */
#define OLLAMA_COMPAT_VERSION "0.12.0"

static const gg_config_t *cfg;

static void render_inflight(gg_buf_t *out)
{
    gg_buf_appendf(out,
                   "# HELP gridgate_inflight Requests in flight over all workers.\n# TYPE gridgate_inflight gauge\n"
                   "gridgate_inflight %u\n",
                   gg_server_inflight());
}

void gg_api_init(const gg_config_t *config)
{
    cfg = config;
    gg_gzip_config = (gg_gzip_config_t){config->compression.min_bytes, (int)config->compression.level, config->compression.stream,
                                        config->compression.max_inflated_bytes, config->compression.max_ratio};
    char err[256];
    if (gg_tenants_init(config, err, sizeof(err)) != 0) {
        gg_error("%s", err);
        exit(2);
    }
    gg_admission_config_t ac = {.queue_ms = config->routing.queue_ms, .max_queue = config->limits.max_queue};
    gg_admission_init(&ac);
    gg_tenant_metrics_init();
    gg_proxy_init();
    gg_comfy_init();
    gg_metrics_add_collector(gg_backends_render_metrics);
    gg_metrics_add_collector(render_inflight);
}

static int path_is(h2o_iovec_t path, const char *s)
{
    size_t n = strlen(s);
    return path.len == n && memcmp(path.base, s, n) == 0;
}

static void respond_json(h2o_req_t *req, int status, json_t *j)
{
    char *s = json_dumps(j, GG_JSON_DUMP_FLAGS);
    gg_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(j);
}

static const char *resolve_alias(const char *model)
{
    for (size_t i = 0; i < cfg->routing.n_aliases; i++)
        if (strcmp(cfg->routing.aliases[i].alias, model) == 0)
            return cfg->routing.aliases[i].model;
    return model;
}

static int model_available(const gg_model_table_t *t, const char *name)
{
    const gg_model_entry_t *e = gg_models_find(t, resolve_alias(name));
    if (e == NULL)
        return 0;
    for (int s = 0; s < GG_MAX_BACKENDS; s++) {
        if (!gg_model_bit(e->served, s))
            continue;
        uint32_t st = atomic_load(&gg_backends[s].state);
        if (st == GG_BACKEND_UP || st == GG_BACKEND_HALF_OPEN)
            return 1;
    }
    return 0;
}

/* --- GET endpoints ------------------------------------------------------------------------------- */

static void on_health(h2o_req_t *req)
{
    const gg_model_table_t *t = gg_models_current();
    json_t *missing = json_array();
    for (size_t i = 0; i < cfg->n_require_models; i++)
        if (!model_available(t, cfg->require_models[i]))
            json_array_append_new(missing, json_string(cfg->require_models[i]));
    unsigned up = 0, total = 0, hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
    for (unsigned s = 0; s < hwm; s++) {
        uint32_t st = atomic_load(&gg_backends[s].state);
        total += st != GG_BACKEND_FREE;
        up += st == GG_BACKEND_UP || st == GG_BACKEND_HALF_OPEN;
    }
    int ok = json_array_size(missing) == 0;
    json_t *j = json_pack("{s:s, s:i, s:i, s:o}", "status", ok ? "ok" : "loading", "backends_up", up, "backends", total,
                          "missing_models", missing);
    respond_json(req, ok ? 200 : 503, j);
}

static void on_metrics(h2o_req_t *req)
{
    gg_buf_t b = GG_BUF_INIT;
    gg_metrics_render(&b);
    gg_respond(req, 200, "text/plain; version=0.0.4", b.base ? b.base : "", b.len);
    gg_buf_free(&b);
}

static json_t *names_of(json_t *m, const char *key)
{
    json_t *a = json_object_get(m, key);
    return a ? json_incref(a) : json_array();
}

static void on_openai_models(h2o_req_t *req)
{
    json_t *list = gg_models_list_json(), *data = json_array(), *m;
    size_t i;
    json_array_foreach(list, i, m)
    {
        json_array_append_new(data, json_pack("{s:O, s:s, s:i, s:s, s:o, s:o}", "id", json_object_get(m, "name"), "object", "model",
                                              "created", 0, "owned_by", "gridgate", "served_by", names_of(m, "served_by"),
                                              "loaded_on", names_of(m, "loaded_on")));
    }
    json_decref(list);
    respond_json(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* An Ollama model entry: the engine's own when an Ollama backend reported one, else one in its shape. */
static json_t *ollama_entry(json_t *m, const char *own_key)
{
    json_t *own = json_object_get(m, own_key);
    json_t *e = json_is_object(own) ? json_deep_copy(own) : json_object();
    /* The merged name (without Ollama's implicit ":latest"), so every listing names a model the same way. */
    json_t *name = json_object_get(m, "name");
    json_object_set(e, "name", name);
    json_object_set(e, "model", name);
    if (!json_object_get(e, "size"))
        json_object_set(e, "size", json_object_get(m, "size") ? json_object_get(m, "size") : json_integer(0));
    if (!json_object_get(e, "digest"))
        json_object_set_new(e, "digest", json_string(""));
    if (!json_object_get(e, "details"))
        json_object_set_new(e, "details",
                            json_pack("{s:s, s:s, s:[], s:s, s:s}", "format", "", "family", "", "families", "parameter_size", "",
                                      "quantization_level", ""));
    json_object_set_new(e, "served_by", names_of(m, "served_by"));
    return e;
}

static void on_ollama_tags(h2o_req_t *req, int loaded_only)
{
    json_t *list = gg_models_list_json(), *models = json_array(), *m;
    size_t i;
    json_array_foreach(list, i, m)
    {
        if (loaded_only && json_array_size(json_object_get(m, "loaded_on")) == 0)
            continue;
        json_t *e = ollama_entry(m, loaded_only ? "ps" : "meta");
        if (!loaded_only && !json_object_get(e, "modified_at"))
            json_object_set_new(e, "modified_at", json_string("1970-01-01T00:00:00Z"));
        if (loaded_only && !json_object_get(e, "size_vram"))
            json_object_set(e, "size_vram", json_object_get(e, "size"));
        if (loaded_only && !json_object_get(e, "expires_at")) {
            char ts[32] = "0001-01-01T00:00:00Z";
            json_int_t exp = json_integer_value(json_object_get(m, "expires_at"));
            if (exp > 0) {
                time_t t = (time_t)exp;
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
            }
            json_object_set_new(e, "expires_at", json_string(ts));
        }
        json_array_append_new(models, e);
    }
    json_decref(list);
    respond_json(req, 200, json_pack("{s:o}", "models", models));
}

/* Everything answered here (not by the proxy) is logged here, in the same format; model and tenant may be NULL. */
static void log_answer_of(h2o_req_t *req, const char *model, const gg_tenant_t *tenant)
{
    gg_accesslog_entry_t e = {.req = req,
                              .status = req->res.status,
                              .bytes_out = req->res.content_length,
                              .model = model,
                              .tenant = tenant != NULL ? tenant->name : NULL};
    gg_accesslog_write(&e);
}

static void log_answer(h2o_req_t *req)
{
    log_answer_of(req, NULL, NULL);
}

/* --- inference ------------------------------------------------------------------------------------ */

static void free_inflated(void *p)
{
    free(*(char **)p);
}

/* A gzip body is inflated within the compression limits before anything reads it; the proxy then forwards
 * the plain bytes (upstream requests carry no Content-Encoding). Returns 0, or -1 after answering. */
static int inflate_body(h2o_req_t *req, enum gg_dialect d)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_ENCODING, -1);
    if (i == -1)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (h2o_lcstris(v.base, v.len, H2O_STRLIT("identity")))
        return 0;
    if (!h2o_lcstris(v.base, v.len, H2O_STRLIT("gzip")) && !h2o_lcstris(v.base, v.len, H2O_STRLIT("x-gzip"))) {
        gg_respond_error(req, d, 415, "unsupported Content-Encoding: only gzip is accepted", "invalid_request_error",
                         "unsupported_content_encoding");
        return -1;
    }
    gg_buf_t out = GG_BUF_INIT;
    int rc = gg_gunzip(req->entity.base, req->entity.len, gg_gzip_config.max_inflated_bytes, gg_gzip_config.max_ratio, &out);
    if (rc != 0) {
        gg_buf_free(&out);
        char msg[160];
        if (rc == GG_INFLATE_TOO_LARGE)
            snprintf(msg, sizeof(msg), "the gzip request body inflates past %llu bytes",
                     (unsigned long long)gg_gzip_config.max_inflated_bytes);
        else if (rc == GG_INFLATE_RATIO)
            snprintf(msg, sizeof(msg), "the gzip request body expands more than %u times", gg_gzip_config.max_ratio);
        else
            snprintf(msg, sizeof(msg), "the request body is not valid gzip");
        int too_big = rc == GG_INFLATE_TOO_LARGE || rc == GG_INFLATE_RATIO;
        gg_respond_error(req, d, too_big ? 413 : 400, msg, "invalid_request_error", too_big ? "request_too_large" : "invalid_gzip");
        return -1;
    }
    char **owner = h2o_mem_alloc_shared(&req->pool, sizeof(*owner), free_inflated);
    *owner = out.base;
    req->entity = h2o_iovec_init(out.base ? out.base : "", out.len);
    return 0;
}

/* Answers or hands to the proxy, which logs what it answers; everything answered here is logged here. */
static void on_inference(h2o_req_t *req, enum gg_dialect d, enum gg_endpoint ep, const char *path)
{
    gg_tenant_t *tenant = gg_tenant_identify(req);
    if (tenant == NULL) {
        gg_tenant_respond_unauthorized(req, d);
        log_answer(req);
        return;
    }
    gg_reqinfo_t ri;
    char err[256];
    if (inflate_body(req, d) != 0) {
        log_answer_of(req, NULL, tenant);
        return;
    }
    if (gg_reqinfo_parse(&ri, d, ep, req->entity.base ? req->entity.base : "", req->entity.len, err, sizeof(err)) != 0) {
        gg_respond_error(req, d, 400, err, "invalid_request_error", NULL);
        log_answer_of(req, NULL, tenant);
        return;
    }
    const char *model = resolve_alias(ri.model);
    const gg_model_table_t *t = gg_models_current();
    const gg_model_entry_t *e = gg_models_find(t, model);
    if (e == NULL) {
        char msg[GG_MODEL_NAME_MAX + 96];
        if (d == GG_DIALECT_OPENAI)
            snprintf(msg, sizeof(msg), "The model `%s` does not exist or you do not have access to it.", ri.model);
        else
            snprintf(msg, sizeof(msg), "model '%s' not found", ri.model);
        gg_respond_error(req, d, 404, msg, "invalid_request_error", "model_not_found");
        log_answer_of(req, ri.model, tenant);
        gg_reqinfo_dispose(&ri);
        return;
    }
    char name[GG_MODEL_NAME_MAX];
    snprintf(name, sizeof(name), "%s", model);
    int edited = model != ri.model;
    if (edited)
        gg_reqinfo_set_model(&ri, name);
    gg_proxy_start(req, tenant, &ri, path, name, e->served, e->loaded, edited);
}

static void dispatch(h2o_req_t *req);

int gg_api_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dispatch(req);
    return 0;
}

static void dispatch(h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
              h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    enum gg_dialect d;
    enum gg_endpoint ep;
    const char *framing = gg_framing_check_request(req);

    if (framing != NULL) {
        /* h2o already chose one reading of the body; a front proxy may have chosen the other, so neither this
         * request nor anything after it on the connection can be trusted (RFC 9112 6.1): refuse and close. */
        req->http1_is_persistent = 0;
        gg_respond_error(req, gg_dialect_of_path(path), 400, framing, "invalid_request_error", "ambiguous_framing");
        log_answer(req);
        return;
    }
    if (gg_endpoint_lookup(path.base, path.len, &d, &ep) == 0) {
        if (!post) {
            gg_respond_error(req, d, 405, "use POST for this endpoint", "invalid_request_error", "method_not_allowed");
            log_answer(req);
            return;
        }
        on_inference(req, d, ep, gg_endpoint_path(d, ep));
        return;
    }
    if (path_is(path, GG_REGISTER_PATH)) {
        gg_registration_handle(req), log_answer(req);
        return;
    }
    if (gg_comfy_match(path)) {
        gg_comfy_handle(req);
        return;
    }
    if (gg_admin_public_status(req)) {
        log_answer(req);
        return;
    }
    d = gg_dialect_of_path(path);
    if (get) {
        if (path_is(path, "/health"))
            on_health(req);
        else if (path_is(path, "/metrics"))
            on_metrics(req);
        else if (path_is(path, "/v1/models"))
            on_openai_models(req);
        else if (path_is(path, "/api/tags"))
            on_ollama_tags(req, 0);
        else if (path_is(path, "/api/ps"))
            on_ollama_tags(req, 1);
        else if (path_is(path, "/api/version"))
            respond_json(req, 200, json_pack("{s:s, s:s}", "version", OLLAMA_COMPAT_VERSION, "gridgate", GG_VERSION));
        else if (path_is(path, "/"))
            gg_respond(req, 200, "text/plain; charset=utf-8", H2O_STRLIT("gridgate is running (OpenAI /v1 and Ollama /api)"));
        else
            goto not_found;
        log_answer(req);
        return;
    }
not_found:
    gg_respond_error(req, d, 404, "no such endpoint", "invalid_request_error", "not_found");
    log_answer(req);
}
