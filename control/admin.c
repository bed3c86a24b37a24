/* The admin API: one thread with its own evloop, h2o context and listener (unix socket 0600 or TCP with a token),
 * the /admin/v1 JSON routes that change the registry live, a 1 s sampler that turns counters into rates and a
 * short history for the status page, and the page itself (control/status_page.html, embedded with .incbin). */
#include "gridgate/admin.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>

#include "gridgate/admin_body.h"
#include "gridgate/admission.h"
#include "gridgate/backend.h"
#include "gridgate/bpf.h"
#include "gridgate/buf.h"
#include "gridgate/guard.h"
#include "gridgate/health.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "gridgate/registration.h"
#include "gridgate/respond.h"
#include "gridgate/server.h"
#include "gridgate/tenant.h"

#define GG_VERSION "0.1.0"
#define HISTORY 120 /* samples of 1 s kept for the page's charts */

/* The page, embedded at build time (the Makefile makes admin.o depend on the html file). */
__asm__(".section .rodata\n"
        ".global gg_status_page_html\n"
        ".type gg_status_page_html, @object\n"
        ".balign 16\n"
        "gg_status_page_html:\n"
        ".incbin \"control/status_page.html\"\n"
        ".global gg_status_page_html_end\n"
        "gg_status_page_html_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char gg_status_page_html[], gg_status_page_html_end[];

struct sample {
    int64_t t_ms;
    uint64_t requests, tokens;
};

static struct {
    const gg_config_t *cfg;
    char *config_path, *token;
    char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd, started;
    h2o_globalconf_t conf;
    h2o_context_t ctx;
    h2o_evloop_t *loop;
    h2o_accept_ctx_t accept;
    h2o_socket_t *listener;
    h2o_timeout_t tick;
    h2o_timeout_entry_t tick_entry;
    pthread_t thread;
    atomic_int stop;
    int64_t started_ms;
    /* sampler (admin thread only) */
    struct sample hist[HISTORY];
    unsigned n_hist, next_hist;
    uint32_t last_id[GG_MAX_BACKENDS];
    uint64_t last_req[GG_MAX_BACKENDS], last_tok[GG_MAX_BACKENDS];
    int64_t last_ms;
    double rps[GG_MAX_BACKENDS], tps[GG_MAX_BACKENDS];
    double total_rps, total_tps;
    json_t *tenant_prev, *tenant_rates; /* {tenant: {family: total}}, {tenant: {requests_per_s, ...}} */
} A = {.fd = -1};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- sampler ------------------------------------------------------------------------------------- */
static json_t *tenants_json(void);

/* Per-tenant rates from the tenant metric families (requests, rejections, tokens) between two samples. */
static void sample_tenants(double dt)
{
    static const char *const fams[][2] = {
        {"requests_total", "requests_per_s"}, {"rejected_total", "rejected_per_s"}, {"tokens_total", "tokens_per_s"}};
    json_t *now = json_object(), *rates = json_object(), *list = tenants_json(), *t;
    size_t i;
    json_array_foreach(list, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        json_t *m = json_object_get(t, "metrics"), *prev = json_object_get(A.tenant_prev, name), *r = json_object();
        for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
            double v = json_number_value(json_object_get(m, fams[f][0])), pv = json_number_value(json_object_get(prev, fams[f][0]));
            json_object_set_new(r, fams[f][1], json_real(prev != NULL && dt > 0 && v >= pv ? (v - pv) / dt : 0));
        }
        json_object_set(now, name, m);
        json_object_set_new(rates, name, r);
    }
    json_decref(list);
    json_decref(A.tenant_prev);
    json_decref(A.tenant_rates);
    A.tenant_prev = now, A.tenant_rates = rates;
}

static void sample(void)
{
    int64_t now = mono_ms();
    double dt = A.last_ms ? (now - A.last_ms) / 1000.0 : 0;
    uint64_t treq = 0, ttok = 0;
    double trps = 0, ttps = 0;
    uint32_t hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
    for (uint32_t i = 0; i < hwm; i++) {
        gg_backend_t *b = &gg_backends[i];
        if (atomic_load(&b->state) == GG_BACKEND_FREE) {
            A.last_id[i] = 0;
            A.rps[i] = A.tps[i] = 0;
            continue;
        }
        uint64_t r = atomic_load(&b->requests), t = atomic_load(&b->tokens_out);
        treq += r, ttok += t;
        if (A.last_id[i] == b->id && dt > 0) {
            A.rps[i] = (r - A.last_req[i]) / dt;
            A.tps[i] = (t - A.last_tok[i]) / dt;
            trps += A.rps[i], ttps += A.tps[i];
        } else {
            A.rps[i] = A.tps[i] = 0;
        }
        A.last_id[i] = b->id, A.last_req[i] = r, A.last_tok[i] = t;
    }
    A.total_rps = trps, A.total_tps = ttps;
    A.last_ms = now;
    sample_tenants(dt);
    A.hist[A.next_hist] = (struct sample){now, treq, ttok};
    A.next_hist = (A.next_hist + 1) % HISTORY;
    if (A.n_hist < HISTORY)
        A.n_hist++;
}

/* The status JSON for the main listener: rendered here (admin-thread state), copied by workers. */
static pthread_mutex_t pub_mu = PTHREAD_MUTEX_INITIALIZER;
static char *pub_json;
static _Atomic int pub_on;
static json_t *status_json(void);

static void publish_status(void)
{
    json_t *j = status_json();
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    pthread_mutex_lock(&pub_mu);
    free(pub_json);
    pub_json = s;
    pthread_mutex_unlock(&pub_mu);
}

static void on_tick(h2o_timeout_entry_t *e)
{
    sample();
    if (atomic_load(&pub_on))
        publish_status();
    h2o_timeout_link(A.loop, &A.tick, &A.tick_entry);
}

/* --- responses ----------------------------------------------------------------------------------- */
static void reply(h2o_req_t *req, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    gg_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(j);
}

/* Errors: {"error": {"message", "code", "field"}}; validation errors name the field. */
static void error(h2o_req_t *req, int status, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void error(h2o_req_t *req, int status, const char *code, const char *field, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s}", "message", msg, "code", code);
    if (field != NULL)
        json_object_set_new(e, "field", json_string(field));
    reply(req, status, json_pack("{s:o}", "error", e));
}

static void errno_error(h2o_req_t *req, int rc, const char *what, const char *name)
{
    if (rc == -ENOENT)
        error(req, 404, "not_found", NULL, "%s %s not found", what, name);
    else if (rc == -EEXIST)
        error(req, 409, "exists", "name", "name: %s %s already exists", what, name);
    else if (rc == -EALREADY)
        error(req, 409, "already", NULL, "%s %s: already done", what, name);
    else if (rc == -ENOSPC)
        error(req, 507, "no_space", NULL, "no free %s slot", what);
    else
        error(req, 400, "invalid", NULL, "%s %s: %s", what, name, strerror(-rc));
}

/* --- listings ------------------------------------------------------------------------------------ */
static int in_config(const gg_backend_t *b)
{
    for (size_t i = 0; i < A.cfg->n_backends; i++) {
        const gg_config_backend_t *cb = &A.cfg->backends[i];
        if (cb->name != NULL ? strcmp(cb->name, b->name) == 0 : strncmp(cb->url, b->url, strlen(b->url)) == 0)
            return 1;
    }
    return 0;
}

/* The registry's listing plus where each backend came from, its live rates and its agent (if registered). */
static json_t *backends_json(void)
{
    json_t *list = gg_backends_list_json(), *e;
    size_t i;
    json_array_foreach(list, i, e)
    {
        int slot = (int)json_integer_value(json_object_get(e, "slot"));
        const char *name = json_string_value(json_object_get(e, "name"));
        json_t *agent = gg_registration_info(name);
        const char *source = agent != NULL ? "registered" : in_config(&gg_backends[slot]) ? "config" : "admin";
        json_object_set_new(e, "source", json_string(source));
        json_object_set_new(e, "agent", agent ? agent : json_null());
        json_object_set_new(e, "requests_per_s", json_real(A.rps[slot]));
        json_object_set_new(e, "gateway_queue", json_integer(gg_admission_queue_depth(slot)));
        json_object_set_new(e, "generated_tokens_per_s", json_real(A.tps[slot]));
        json_object_set_new(e, "ttft_ms", json_real(json_integer_value(json_object_get(e, "ttft_ewma_us")) / 1000.0));
    }
    return list;
}

/* Metric samples whose family name contains `part`: {"name{labels}": value}. Lets the page show counters other
 * modules register (splicing, tenants) without this file knowing them. */
static json_t *metrics_matching(const char *part)
{
    gg_buf_t b = GG_BUF_INIT;
    gg_metrics_render(&b);
    json_t *out = json_object();
    char *save = NULL, *text = b.base ? b.base : "";
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char *sp = strrchr(line, ' ');
        if (sp == NULL)
            continue;
        *sp = '\0';
        size_t fam = strcspn(line, "{");
        char famname[128];
        snprintf(famname, sizeof(famname), "%.*s", (int)(fam < sizeof(famname) ? fam : sizeof(famname) - 1), line);
        if (strstr(famname, part) != NULL && strstr(famname, "_bucket") == NULL)
            json_object_set_new(out, line, json_real(strtod(sp + 1, NULL)));
    }
    gg_buf_free(&b);
    return out;
}

/* The label value of `key` in "name{a=\"x\",key=\"v\"}", copied into out. */
static int label_of(const char *series, const char *key, char *out, size_t outlen)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=\"", key);
    const char *p = strstr(series, pat);
    if (p == NULL)
        return -ENOENT;
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    snprintf(out, outlen, "%.*s", (int)n, p);
    return 0;
}

/* Tenants: the live table of the fairness module (limits as they are now, in-flight and queued counts) with the
 * tenant-labelled metric families summed per tenant under "metrics" (requests, rejections, tokens, waits). */
static json_t *tenant_json(gg_tenant_t *t)
{
    pthread_mutex_lock(&t->rl.mu);
    double rps = t->rl.req.rate_per_us * 1e6, burst = t->rl.req.size, tpm = t->rl.tok.rate_per_us * 60e6;
    pthread_mutex_unlock(&t->rl.mu);
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:i, s:I, s:i, s:i, s:o}", "name", t->name, "keys", (int)t->n_keys,
                     "weight", (int)__atomic_load_n(&t->weight, __ATOMIC_RELAXED), "priority",
                     (int)__atomic_load_n(&t->priority, __ATOMIC_RELAXED), "max_inflight",
                     (int)__atomic_load_n(&t->max_inflight, __ATOMIC_RELAXED), "max_queue",
                     (int)__atomic_load_n(&t->max_queue, __ATOMIC_RELAXED), "requests_per_s_limit", rps, "burst",
                     (int)(rps > 0 ? burst : 0), "tokens_per_min_limit", (json_int_t)(tpm + 0.5), "inflight",
                     (int)atomic_load(&t->inflight), "queued", (int)atomic_load(&t->queued), "metrics", json_object());
}

static json_t *tenants_json(void)
{
    json_t *byname = json_object(), *v;
    for (size_t i = 0; i < gg_tenants_count(); i++) {
        gg_tenant_t *t = gg_tenant_at(i);
        json_object_set_new(byname, t->name, tenant_json(t));
    }
    json_t *m = metrics_matching("gridgate_tenant_");
    const char *series;
    json_object_foreach(m, series, v)
    {
        char tenant[128];
        json_t *t;
        if (label_of(series, "tenant", tenant, sizeof(tenant)) != 0 || (t = json_object_get(byname, tenant)) == NULL)
            continue;
        json_t *mt = json_object_get(t, "metrics");
        size_t fam = strcspn(series, "{");
        char key[128];
        snprintf(key, sizeof(key), "%.*s", (int)(fam > 16 ? fam - 16 : 0), series + 16); /* without "gridgate_tenant_" */
        json_object_set_new(mt, key, json_real(json_real_value(json_object_get(mt, key)) + json_real_value(v)));
    }
    json_decref(m);
    json_t *out = json_array();
    for (size_t i = 0; i < gg_tenants_count(); i++) {
        json_t *t = json_object_get(byname, gg_tenant_at(i)->name);
        json_t *r = json_object_get(A.tenant_rates, gg_tenant_at(i)->name);
        json_object_set_new(t, "requests_per_s", json_real(json_number_value(json_object_get(r, "requests_per_s"))));
        json_object_set_new(t, "rejected_per_s", json_real(json_number_value(json_object_get(r, "rejected_per_s"))));
        json_object_set_new(t, "tokens_per_s", json_real(json_number_value(json_object_get(r, "tokens_per_s"))));
        json_array_append(out, t);
    }
    json_decref(byname);
    return out;
}

/* Answers the 400 of a body that did not parse. */
static void body_error(h2o_req_t *req, const gg_body_err_t *e)
{
    error(req, 400, strcmp(e->field, "body") == 0 ? "invalid_body" : "invalid_field", e->field, "%s", e->msg);
}

/* Applies parsed limits to t, live: absent fields keep t's values. */
static void tenant_apply(gg_tenant_t *t, const gg_admin_limits_t *l)
{
    if (l->has & GG_LIM_WEIGHT)
        __atomic_store_n(&t->weight, l->weight, __ATOMIC_RELAXED);
    if (l->has & GG_LIM_PRIORITY)
        __atomic_store_n(&t->priority, l->priority, __ATOMIC_RELAXED);
    if (l->has & GG_LIM_MAX_INFLIGHT)
        __atomic_store_n(&t->max_inflight, l->max_inflight, __ATOMIC_RELAXED);
    if (l->has & GG_LIM_MAX_QUEUE)
        __atomic_store_n(&t->max_queue, l->max_queue, __ATOMIC_RELAXED);
    if (!(l->has & (GG_LIM_RPS | GG_LIM_BURST | GG_LIM_TPM)))
        return;
    pthread_mutex_lock(&t->rl.mu);
    gg_bucket_t *b = &t->rl.req;
    double rps = (l->has & GG_LIM_RPS) ? l->requests_per_s : b->rate_per_us * 1e6;
    uint32_t burst = (l->has & GG_LIM_BURST) ? l->burst : 0;
    if (!(l->has & (GG_LIM_BURST | GG_LIM_RPS)))
        burst = (uint32_t)b->size;
    double size = rps > 0 ? (burst ? burst : (rps > 1 ? rps : 1)) : 0;
    int was_off = b->rate_per_us <= 0;
    b->rate_per_us = rps / 1e6, b->size = size;
    if (was_off || b->level > size)
        b->level = size;
    if (l->has & GG_LIM_TPM) {
        gg_bucket_t *k2 = &t->rl.tok;
        was_off = k2->rate_per_us <= 0;
        k2->rate_per_us = l->tokens_per_min / 60e6, k2->size = l->tokens_per_min;
        if (was_off || k2->level > k2->size)
            k2->level = k2->size;
    }
    pthread_mutex_unlock(&t->rl.mu);
}

/* POST /admin/v1/tenants/NAME {limits}: applied live (the next admission sees it). */
static void tenant_update(h2o_req_t *req, const char *name)
{
    gg_tenant_t *t = gg_tenant_find(name);
    if (t == NULL) {
        errno_error(req, -ENOENT, "tenant", name);
        return;
    }
    gg_admin_limits_t l;
    gg_body_err_t e;
    if (gg_admin_parse_tenant_update(req->entity.base, req->entity.len, &l, &e) != 0) {
        body_error(req, &e);
        return;
    }
    tenant_apply(t, &l);
    gg_info("admin: tenant %s updated", name);
    gg_bpf_sync(); /* the `tenants` map shows the new limits now, not at the next health round */
    reply(req, 200, tenant_json(t));
}

/* POST /admin/v1/tenants {name, keys?, limits...}: a new tenant, live (its keys authenticate at once). */
static void tenant_add(h2o_req_t *req)
{
    gg_admin_tenant_add_t a;
    gg_body_err_t e;
    gg_tenant_t *t = NULL;
    if (gg_admin_parse_tenant_add(req->entity.base, req->entity.len, &a, &e) != 0) {
        body_error(req, &e);
        return;
    }
    if (gg_tenant_find(a.name) != NULL) {
        errno_error(req, -EEXIST, "tenant", a.name);
        goto out;
    }
    for (size_t i = 0; i < a.n_keys; i++)
        if (gg_tenant_by_key(a.keys[i], strlen(a.keys[i])) != NULL) {
            error(req, 409, "exists", "keys", "keys[%zu]: this key already belongs to a tenant", i);
            goto out;
        }
    int rc = gg_tenant_add(a.name, 1, 0, 0, 256, 0, 0, 0, &t);
    if (rc == -EINVAL) {
        error(req, 400, "invalid_field", "name", "name: 1..%d characters of A-Z a-z 0-9 . _ -", GG_TENANT_NAME_MAX - 1);
        goto out;
    }
    if (rc != 0) {
        errno_error(req, rc, "tenant", a.name);
        goto out;
    }
    tenant_apply(t, &a.limits);
    for (size_t i = 0; i < a.n_keys; i++) {
        rc = gg_tenant_key_add(t, a.keys[i]);
        if (rc != 0)
            gg_warn("admin: tenant %s: keys[%zu] not added: %s", a.name, i, strerror(-rc));
    }
    gg_info("admin: tenant %s added with %zu keys", a.name, a.n_keys);
    gg_bpf_sync();
    reply(req, 201, tenant_json(t));
out:
    gg_admin_tenant_add_free(&a);
}

/* POST|DELETE /admin/v1/tenants/NAME/keys {key}: adds or removes one key, live. */
static void tenant_key(h2o_req_t *req, const char *name, int adding)
{
    gg_tenant_t *t = gg_tenant_find(name);
    if (t == NULL) {
        errno_error(req, -ENOENT, "tenant", name);
        return;
    }
    char key[1024];
    gg_body_err_t e;
    if (gg_admin_parse_tenant_key(req->entity.base, req->entity.len, adding, key, sizeof(key), &e) != 0) {
        body_error(req, &e);
        return;
    }
    int rc = adding ? gg_tenant_key_add(t, key) : gg_tenant_key_remove(t, key);
    if (rc == -ENOENT)
        error(req, 404, "not_found", "key", "key: tenant %s has no such key", name);
    else if (rc == -EEXIST)
        error(req, 409, "exists", "key", "key: this key already belongs to a tenant");
    else if (rc != 0)
        error(req, 400, "invalid_field", "key", "key: expected the key as a string (or \"sha256:\" + 64 hex digits)");
    else {
        gg_info("admin: tenant %s: key %s", name, adding ? "added" : "removed");
        reply(req, 200, json_pack("{s:s, s:i}", "name", name, "keys", (int)t->n_keys));
    }
}

static json_t *history_json(void)
{
    json_t *t = json_array(), *r = json_array(), *k = json_array();
    unsigned start = (A.next_hist + HISTORY - A.n_hist) % HISTORY;
    for (unsigned i = 1; i < A.n_hist; i++) {
        const struct sample *a = &A.hist[(start + i - 1) % HISTORY], *b = &A.hist[(start + i) % HISTORY];
        double dt = (b->t_ms - a->t_ms) / 1000.0;
        if (dt <= 0)
            continue;
        json_array_append_new(t, json_integer((b->t_ms - A.started_ms) / 1000));
        json_array_append_new(r, json_real(b->requests >= a->requests ? (b->requests - a->requests) / dt : 0));
        json_array_append_new(k, json_real(b->tokens >= a->tokens ? (b->tokens - a->tokens) / dt : 0));
    }
    return json_pack("{s:o, s:o, s:o}", "t", t, "requests_per_s", r, "tokens_per_s", k);
}

static json_t *health_json(int *ok)
{
    json_t *list = gg_backends_list_json(), *e, *out = json_array();
    size_t i;
    int up = 0;
    json_array_foreach(list, i, e)
    {
        const char *st = json_string_value(json_object_get(e, "state"));
        up += strcmp(st, "up") == 0 || strcmp(st, "half_open") == 0;
        json_array_append_new(out, json_pack("{s:O, s:O, s:O, s:O}", "name", json_object_get(e, "name"), "state",
                                             json_object_get(e, "state"), "kind", json_object_get(e, "kind"),
                                             "consecutive_failures", json_object_get(e, "consecutive_failures")));
    }
    int total = (int)json_array_size(list);
    json_decref(list);
    *ok = up > 0;
    return json_pack("{s:s, s:i, s:i, s:o}", "status",
                     up > 0  ? "ok"
                     : total ? "degraded"
                             : "empty",
                     "backends_up", up, "backends_total", total, "backends", out);
}

static json_t *stats_json(void)
{
    json_t *bl = backends_json(), *e, *bs = json_array();
    size_t i;
    json_array_foreach(bl, i, e)
    {
        json_array_append_new(bs,
                              json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "gateway_queue",
                                        json_object_get(e, "gateway_queue"), "name", json_object_get(e, "name"), "state",
                                        json_object_get(e, "state"), "inflight", json_object_get(e, "inflight"), "capacity",
                                        json_object_get(e, "capacity"), "queue", json_object_get(e, "engine_waiting"), "requests",
                                        json_object_get(e, "requests"), "failures", json_object_get(e, "failures"),
                                        "requests_per_s", json_object_get(e, "requests_per_s"), "tokens_per_s",
                                        json_object_get(e, "generated_tokens_per_s"), "ttft_ms", json_object_get(e, "ttft_ms")));
    }
    json_decref(bl);
    return json_pack("{s:I, s:i, s:f, s:f, s:o, s:o}", "uptime_s", (json_int_t)((mono_ms() - A.started_ms) / 1000), "inflight",
                     (int)gg_server_inflight(), "requests_per_s", A.total_rps, "tokens_per_s", A.total_tps, "backends", bs,
                     "tenants", tenants_json());
}

static json_t *status_json(void)
{
    int ok;
    json_t *s = stats_json();
    json_object_set_new(s, "version", json_string(GG_VERSION));
    json_object_set_new(s, "backends", backends_json());
    json_object_set_new(s, "models", gg_models_list_json());
    json_object_set_new(s, "history", history_json());
    json_object_set_new(s, "splice", metrics_matching("splice"));
    json_object_set_new(s, "registrations", gg_registration_list_json());
    json_object_set_new(s, "health", health_json(&ok));
    return s;
}

/* --- backend verbs ------------------------------------------------------------------------------- */
static void backend_add(h2o_req_t *req)
{
    gg_admin_backend_add_t a;
    gg_body_err_t e;
    if (gg_admin_parse_backend_add(req->entity.base, req->entity.len, &a, &e) != 0) {
        body_error(req, &e);
        return;
    }
    int slot = gg_backend_add(a.name, a.url, (enum gg_engine_kind)a.kind, a.weight, a.max_inflight);
    if (slot == -EINVAL)
        error(req, 400, "invalid_field", "url", "url: %s is not a usable engine address", a.url);
    else if (slot < 0)
        errno_error(req, slot, "backend", a.name ? a.name : a.url);
    else {
        gg_health_kick();
        reply(req, 201, json_pack("{s:s, s:i, s:s}", "name", gg_backends[slot].name, "slot", slot, "state", "down"));
    }
    gg_admin_backend_add_free(&a);
}

static void backend_weight(h2o_req_t *req, const char *name)
{
    uint32_t w = 0;
    gg_body_err_t e;
    if (gg_admin_parse_weight(req->entity.base, req->entity.len, &w, &e) != 0) {
        body_error(req, &e);
        return;
    }
    gg_backend_t *b = gg_backend_find(name);
    if (b == NULL)
        errno_error(req, -ENOENT, "backend", name);
    else {
        /* The router reads weight on every choice; no generation bump, so pools and streams are untouched. */
        atomic_store(&b->weight, w);
        gg_backends_publish(gg_backend_index(b));
        reply(req, 200, json_pack("{s:s, s:i}", "name", name, "weight", (int)w));
    }
}

/* POST /admin/v1/guard/{deny,allow,remove} {"prefix": "10.0.0.0/24", "seconds": N}: prefixes hold a '/', so they
 * travel in the body rather than the path. */
static void guard_verb(h2o_req_t *req, const char *verb)
{
    if (strcmp(verb, "deny") != 0 && strcmp(verb, "allow") != 0 && strcmp(verb, "remove") != 0) {
        error(req, 404, "not_found", NULL, "no such guard verb: %s (deny, allow, remove)", verb);
        return;
    }
    char prefix[128], err[256];
    uint32_t seconds = 0;
    gg_body_err_t e;
    int rc;
    if (gg_admin_parse_guard(req->entity.base, req->entity.len, verb[0] == 'd', prefix, sizeof(prefix), &seconds, &e) != 0)
        body_error(req, &e);
    else if ((rc = verb[0] == 'd'   ? gg_guard_deny(prefix, seconds, err, sizeof(err))
                   : verb[0] == 'a' ? gg_guard_allow(prefix, err, sizeof(err))
                                    : gg_guard_remove(prefix, err, sizeof(err))) != 0) {
        if (rc == -EINVAL)
            error(req, 400, "invalid_field", "prefix", "%s", err);
        else if (rc == -ENOENT)
            error(req, 404, "not_found", NULL, "%s", err);
        else
            error(req, rc == -ENOTSUP ? 503 : 500, rc == -ENOTSUP ? "unavailable" : "failed", NULL, "%s", err);
    } else {
        json_t *r = json_pack("{s:s, s:s}", "prefix", prefix, "done", verb);
        if (verb[0] == 'd')
            json_object_set_new(r, "seconds", seconds ? json_integer(seconds) : json_null());
        reply(req, 200, r);
    }
}

static void backend_verb(h2o_req_t *req, const char *name, const char *verb)
{
    int rc;
    if (strcmp(verb, "drain") == 0 || strcmp(verb, "undrain") == 0)
        rc = gg_backend_drain(name, verb[0] == 'd');
    else if (strcmp(verb, "approve") == 0)
        rc = gg_registration_approve(name);
    else {
        error(req, 404, "not_found", NULL, "no such backend verb: %s", verb);
        return;
    }
    if (rc != 0) {
        errno_error(req, rc, strcmp(verb, "approve") == 0 ? "pending registration" : "backend", name);
        return;
    }
    if (strcmp(verb, "approve") == 0)
        gg_health_kick();
    gg_backend_t *b = gg_backend_find(name);
    reply(req, 200, json_pack("{s:s, s:s}", "name", name, "state", b ? gg_backend_state_name(atomic_load(&b->state)) : "?"));
}

/* --- config -------------------------------------------------------------------------------------- */
/* Secrets (tokens, tenant keys) never leave through the API, even to an authorized caller's terminal. */
static void redact(json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_array(j))
        json_array_foreach(j, i, v) redact(v);
    if (!json_is_object(j))
        return;
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "token") == 0 || strcmp(k, "keys") == 0)
            json_object_set_new(j, k, json_string("(hidden)"));
        else
            redact(v);
    }
}

static void config_show(h2o_req_t *req)
{
    json_t *file = NULL;
    if (A.config_path != NULL) {
        json_error_t je;
        file = json_load_file(A.config_path, 0, &je);
        redact(file);
    }
    reply(req, 200,
          json_pack("{s:s?, s:o, s:s?, s:b, s:s, s:i, s:i, s:i, s:i}", "path", A.config_path, "file", file ? file : json_null(),
                    "admin", A.cfg->admin_listen ? A.cfg->admin_listen : GG_ADMIN_DEFAULT, "registration_open",
                    A.cfg->registration.token != NULL, "approve", A.cfg->registration.approve ? "auto" : "manual", "heartbeat_ms",
                    (int)A.cfg->registration.heartbeat_ms, "missed_beats", (int)A.cfg->registration.missed_beats, "ttl_ms",
                    (int)A.cfg->registration.ttl_ms, "health_interval_ms", (int)A.cfg->health.interval_ms));
}

/* Validates the file here (so the caller sees the error) and hands the reload to main's SIGHUP path. */
static void config_reload(h2o_req_t *req)
{
    if (A.config_path == NULL) {
        error(req, 409, "no_config_file", NULL, "gridgate was started without --config: nothing to reload");
        return;
    }
    gg_config_t next;
    char err[512];
    int rc = gg_config_load(A.config_path, &next, err, sizeof(err));
    if (rc == 0)
        rc = gg_config_finish(&next, err, sizeof(err));
    gg_config_free(&next);
    if (rc != 0) {
        error(req, 400, "invalid_config", "config", "%s", err);
        return;
    }
    kill(getpid(), SIGHUP);
    reply(req, 202, json_pack("{s:s, s:s}", "path", A.config_path, "status", "reloading"));
}

/* --- dispatch ------------------------------------------------------------------------------------ */
static int authorized(h2o_req_t *req)
{
    if (A.token == NULL)
        return 1;
    size_t tl = strlen(A.token);
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len == 7 + tl && strncasecmp(v.base, "Bearer ", 7) == 0 && CRYPTO_memcmp(v.base + 7, A.token, tl) == 0)
            return 1;
    }
    /* The status page is opened in a browser, which cannot add a header: ?token=T works too. */
    if (req->query_at != SIZE_MAX) {
        const char *q = req->path.base + req->query_at + 1;
        size_t ql = req->path.len - req->query_at - 1;
        for (size_t p = 0; p < ql;) {
            size_t e = p;
            while (e < ql && q[e] != '&')
                e++;
            if (e - p == 6 + tl && memcmp(q + p, "token=", 6) == 0 && CRYPTO_memcmp(q + p + 6, A.token, tl) == 0)
                return 1;
            p = e + 1;
        }
    }
    return 0;
}

static int method_is(h2o_req_t *req, const char *m)
{
    return req->method.len == strlen(m) && memcmp(req->method.base, m, req->method.len) == 0;
}

/* Splits "/admin/v1/a/b/c" after the prefix into at most 3 segments (NUL-terminated copies). */
static int segments(h2o_iovec_t path, char seg[3][128])
{
    static const char prefix[] = "/admin/v1/";
    size_t pl = sizeof(prefix) - 1;
    if (path.len < pl || memcmp(path.base, prefix, pl) != 0)
        return -1;
    int n = 0;
    size_t p = pl;
    while (p < path.len) {
        size_t e = p;
        while (e < path.len && path.base[e] != '/')
            e++;
        if (e > p) {
            if (n == 3 || e - p >= 128)
                return -1;
            memcpy(seg[n], path.base + p, e - p);
            seg[n][e - p] = '\0';
            n++;
        }
        p = e + 1;
    }
    return n;
}

static void route(h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    int get = method_is(req, "GET") || method_is(req, "HEAD"), post = method_is(req, "POST"), del = method_is(req, "DELETE");
    if (get && ((path.len == 1 && path.base[0] == '/') || h2o_memis(path.base, path.len, H2O_STRLIT("/ui")))) {
        gg_respond(req, 200, "text/html; charset=utf-8", gg_status_page_html,
                   (size_t)(gg_status_page_html_end - gg_status_page_html));
        return;
    }
    char seg[3][128];
    int n = segments(path, seg);
    if (n < 1) {
        error(req, 404, "not_found", NULL, "no such admin endpoint (see /admin/v1/status)");
        return;
    }
    const char *noun = seg[0];
    int ok = 0;
    if (strcmp(noun, "backends") == 0) {
        if (n == 1 && get)
            reply(req, 200, backends_json()), ok = 1;
        else if (n == 1 && post)
            backend_add(req), ok = 1;
        else if (n == 2 && get) {
            json_t *l = backends_json(), *e, *found = NULL;
            size_t i;
            json_array_foreach(l, i, e) if (strcmp(json_string_value(json_object_get(e, "name")), seg[1]) == 0) found = e;
            if (found != NULL)
                reply(req, 200, json_incref(found));
            else
                errno_error(req, -ENOENT, "backend", seg[1]);
            json_decref(l);
            ok = 1;
        } else if (n == 2 && del) {
            int rc = gg_backend_remove(seg[1]);
            if (rc != 0)
                errno_error(req, rc, "backend", seg[1]);
            else
                reply(req, 200, json_pack("{s:s, s:b}", "name", seg[1], "removed", 1));
            ok = 1;
        } else if (n == 3 && post && strcmp(seg[2], "weight") == 0)
            backend_weight(req, seg[1]), ok = 1;
        else if (n == 3 && post)
            backend_verb(req, seg[1], seg[2]), ok = 1;
    } else if (strcmp(noun, "models") == 0 && n == 1 && get) {
        reply(req, 200, gg_models_list_json()), ok = 1;
    } else if (strcmp(noun, "tenants") == 0 && n == 1 && get) {
        reply(req, 200, tenants_json()), ok = 1;
    } else if (strcmp(noun, "tenants") == 0 && n == 2 && (post || method_is(req, "PATCH"))) {
        tenant_update(req, seg[1]), ok = 1;
    } else if (strcmp(noun, "tenants") == 0 && n == 1 && post) {
        tenant_add(req), ok = 1;
    } else if (strcmp(noun, "tenants") == 0 && n == 3 && (post || del) && strcmp(seg[2], "keys") == 0) {
        tenant_key(req, seg[1], post), ok = 1;
    } else if (strcmp(noun, "tenants") == 0 && n == 2 && del) {
        /* Slots are never freed while workers may hold a tenant; removing its keys locks it out instead. */
        error(req, 501, "not_supported", NULL,
              "tenants cannot be removed while running: remove their keys (gridctl tenant key remove), or drop them from the "
              "config and restart"),
            ok = 1;
    } else if (strcmp(noun, "guard") == 0 && n == 1 && get) {
        reply(req, 200, gg_guard_list_json()), ok = 1;
    } else if (strcmp(noun, "guard") == 0 && n == 2 && get && strcmp(seg[1], "stats") == 0) {
        reply(req, 200, gg_guard_stats_json()), ok = 1;
    } else if (strcmp(noun, "guard") == 0 && n == 2 && post) {
        guard_verb(req, seg[1]), ok = 1;
    } else if (strcmp(noun, "stats") == 0 && n == 1 && get) {
        reply(req, 200, stats_json()), ok = 1;
    } else if (strcmp(noun, "status") == 0 && n == 1 && get) {
        reply(req, 200, status_json()), ok = 1;
    } else if (strcmp(noun, "health") == 0 && n == 1 && get) {
        int up;
        json_t *h = health_json(&up);
        reply(req, 200, h), ok = 1;
    } else if (strcmp(noun, "registrations") == 0 && n == 1 && get) {
        reply(req, 200, gg_registration_list_json()), ok = 1;
    } else if (strcmp(noun, "config") == 0 && n == 1 && get) {
        config_show(req), ok = 1;
    } else if (strcmp(noun, "config") == 0 && n == 2 && post && strcmp(seg[1], "reload") == 0) {
        config_reload(req), ok = 1;
    }
    if (!ok)
        error(req, get || post || del ? 404 : 405, "not_found", NULL, "no such admin endpoint: %.*s %.*s", (int)req->method.len,
              req->method.base, (int)path.len, path.base);
}

int gg_admin_public_status(h2o_req_t *req)
{
    if (!atomic_load(&pub_on) || !(method_is(req, "GET") || method_is(req, "HEAD")))
        return 0;
    h2o_iovec_t path = req->path_normalized;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/ui"))) {
        gg_respond(req, 200, "text/html; charset=utf-8", gg_status_page_html,
                   (size_t)(gg_status_page_html_end - gg_status_page_html));
        return 1;
    }
    if (!h2o_memis(path.base, path.len, H2O_STRLIT("/admin/v1/status")))
        return 0;
    pthread_mutex_lock(&pub_mu);
    h2o_iovec_t body = pub_json ? h2o_strdup(&req->pool, pub_json, SIZE_MAX) : h2o_iovec_init(NULL, 0);
    pthread_mutex_unlock(&pub_mu);
    if (body.base == NULL)
        gg_respond(req, 503, "application/json",
                   H2O_STRLIT("{\"error\":{\"message\":\"status not rendered yet (it needs the admin "
                              "API running)\",\"code\":\"unavailable\"}}"));
    else
        gg_respond(req, 200, "application/json", body.base, body.len);
    return 1;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    if (!authorized(req)) {
        error(req, 401, "unauthorized", NULL, "admin token missing or wrong: send Authorization: Bearer <admin token>");
        return 0;
    }
    route(req);
    return 0;
}

/* --- the thread and its listener ----------------------------------------------------------------- */
static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        h2o_accept(&A.accept, sock);
    }
}

static void *admin_main(void *arg)
{
    A.listener = h2o_evloop_socket_create(A.loop, A.fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(A.listener, on_accept);
    sample();
    while (!atomic_load(&A.stop))
        h2o_evloop_run(A.loop, 100);
    h2o_socket_read_stop(A.listener);
    h2o_socket_close(A.listener);
    A.listener = NULL;
    return NULL;
}

static int bind_unix(const char *path, int is_default)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    /* Create the parent (e.g. /run/gridgate) when it is missing; only the last component. */
    char dir[sizeof(sa.sun_path)];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) == -1 && errno != EEXIST)
            return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd == -1)
        return -errno;
    /* A socket file left by a dead gridgate is removed; one a live gridgate answers on is not ours to take. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe != -1) {
        int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(probe);
        if (live) {
            close(fd);
            return -EADDRINUSE;
        }
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
        int e = -errno;
        close(fd);
        return e;
    }
    /* Before listen(), so nobody can connect while the mode is still the umask's. */
    if (chmod(path, 0600) == -1 || listen(fd, 128) == -1) {
        int e = -errno;
        close(fd);
        unlink(path);
        return e;
    }
    snprintf(A.unix_path, sizeof(A.unix_path), "%s", path);
    (void)is_default;
    return fd;
}

static int bind_tcp(const char *hostport, char *shown, size_t shownlen)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL)
        return -EINVAL;
    const char *h = hostport, *he = colon;
    if (*h == '[' && he > h && he[-1] == ']')
        h++, he--;
    snprintf(host, sizeof(host), "%.*s", (int)(he - h), h);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
    if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res) != 0)
        return -EINVAL;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1, rc;
    if (fd == -1) {
        rc = -errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 128) == -1) {
        rc = -errno;
        close(fd);
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    char hs[64], ps[8];
    getnameinfo((struct sockaddr *)&ss, sl, hs, sizeof(hs), ps, sizeof(ps), NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(shown, shownlen, strchr(hs, ':') ? "http://[%s]:%s" : "http://%s:%s", hs, ps);
    rc = fd;
out:
    freeaddrinfo(res);
    return rc;
}

int gg_admin_start(const gg_config_t *cfg, const char *config_path)
{
    const char *where = cfg->admin_listen ? cfg->admin_listen : GG_ADMIN_DEFAULT;
    int is_default = cfg->admin_listen == NULL, fd;
    char shown[300];
    A.cfg = cfg;
    if (strncmp(where, "unix:", 5) == 0) {
        fd = bind_unix(where + 5, is_default);
        snprintf(shown, sizeof(shown), "%s", where);
    } else {
        if (cfg->admin_token == NULL) {
            gg_error("admin: a TCP admin listener (%s) requires admin.token; use unix:PATH for a local socket", where);
            return -EPERM;
        }
        fd = bind_tcp(where, shown, sizeof(shown));
    }
    if (fd < 0) {
        if (is_default) {
            gg_warn("admin: %s: %s; running without the admin API (set --admin)", where, strerror(-fd));
            return 0;
        }
        gg_error("admin: cannot listen on %s: %s", where, strerror(-fd));
        return fd;
    }
    A.fd = fd;
    /* Only the rendered status goes out there: no admin verbs, no config, no secrets. */
    atomic_store(&pub_on, cfg->status_page.main_listener);
    A.token = cfg->admin_token ? strdup(cfg->admin_token) : NULL;
    A.config_path = config_path ? strdup(config_path) : NULL;
    A.started_ms = mono_ms();
    h2o_config_init(&A.conf);
    A.conf.max_request_entity_size = 1 << 20;
    A.conf.server_name = h2o_iovec_init(H2O_STRLIT("gridgate-admin"));
    h2o_hostconf_t *host = h2o_config_register_host(&A.conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = on_req;
    A.loop = h2o_evloop_create();
    h2o_context_init(&A.ctx, A.loop, &A.conf);
    A.accept = (h2o_accept_ctx_t){.ctx = &A.ctx, .hosts = A.conf.hosts};
    h2o_timeout_init(A.loop, &A.tick, 1000);
    memset(&A.tick_entry, 0, sizeof(A.tick_entry));
    A.tick_entry.cb = on_tick;
    h2o_timeout_link(A.loop, &A.tick, &A.tick_entry);
    int rc = pthread_create(&A.thread, NULL, admin_main, NULL);
    if (rc != 0)
        return -rc;
    A.started = 1;
    gg_info("admin API on %s%s", shown, A.token ? " (token required)" : "");
    return 0;
}

void gg_admin_stop(void)
{
    if (!A.started)
        return;
    atomic_store(&A.stop, 1);
    pthread_join(A.thread, NULL);
    A.started = 0;
    atomic_store(&pub_on, 0);
    pthread_mutex_lock(&pub_mu);
    free(pub_json);
    pub_json = NULL;
    pthread_mutex_unlock(&pub_mu);
    if (A.unix_path[0] != '\0')
        unlink(A.unix_path);
}
