/* Self-registration: the heartbeat endpoint (POST /gridgate/v1/register on the main listener), one record per
 * agent, and the sweeper thread that turns missing heartbeats into "down" (through health's hold hook) and,
 * after the TTL, into removal. Lock order: never call into the registry or health while holding `lock`,
 * because health calls our hold hook with its own lock held. */
#include "gridgate/registration.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gridgate/backend.h"
#include "gridgate/health.h"
#include "gridgate/httpc.h"
#include "gridgate/log.h"
#include "gridgate/respond.h"

#define MAX_AGENTS GG_MAX_BACKENDS

struct agent {
    int used;
    char name[64], url[256], host[128]; /* host: the agent's own hostname, as it reports it */
    int kind;
    int active;          /* admitted into the registry (backend_id is valid) */
    int held;            /* heartbeats missing: health keeps the backend down */
    uint32_t backend_id; /* gg_backend_t.id of the backend this agent added */
    int64_t first_ms, last_ms;
    uint64_t beats;
    json_t *models, *gpu; /* as the last heartbeat reported them */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct agent agents[MAX_AGENTS];
static char *token;
static int approve_auto, running;
static uint32_t heartbeat_ms = 5000, missed_beats = 3, ttl_ms = 300000;
static pthread_t sweeper;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct agent *find_locked(const char *name)
{
    for (int i = 0; i < MAX_AGENTS; i++)
        if (agents[i].used && strcmp(agents[i].name, name) == 0)
            return &agents[i];
    return NULL;
}

static void forget_locked(struct agent *a)
{
    json_decref(a->models);
    json_decref(a->gpu);
    memset(a, 0, sizeof(*a));
}

static int hold_hook(const gg_backend_t *b, char *why, size_t whylen)
{
    int held = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_AGENTS; i++) {
        struct agent *a = &agents[i];
        if (a->used && a->active && a->held && a->backend_id == b->id) {
            snprintf(why, whylen, "no heartbeat for %lld ms", (long long)(mono_ms() - a->last_ms));
            held = 1;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return held;
}

/* The backend this agent added, if it is still the same one (an operator may have removed it). */
static gg_backend_t *backend_of(const char *name, uint32_t id)
{
    gg_backend_t *b = gg_backend_find(name);
    return b != NULL && b->id == id ? b : NULL;
}

struct todo {
    char name[64];
    uint32_t id;
    int64_t silent_ms;
};

static void *sweep(void *arg)
{
    static struct todo down[MAX_AGENTS], gone[MAX_AGENTS];
    pthread_mutex_lock(&lock);
    while (running) {
        int64_t now = mono_ms();
        int nd = 0, ng = 0;
        for (int i = 0; i < MAX_AGENTS; i++) {
            struct agent *a = &agents[i];
            if (!a->used)
                continue;
            int64_t silent = now - a->last_ms;
            if (silent > (int64_t)ttl_ms) {
                gg_info("registration: %s: no heartbeat for %lld ms (ttl): removed", a->name, (long long)silent);
                if (a->active) {
                    gone[ng] = (struct todo){.id = a->backend_id, .silent_ms = silent};
                    snprintf(gone[ng].name, sizeof(gone[0].name), "%s", a->name);
                    ng++;
                }
                forget_locked(a);
            } else if (a->active && !a->held && silent > (int64_t)heartbeat_ms * missed_beats) {
                a->held = 1;
                down[nd] = (struct todo){.id = a->backend_id, .silent_ms = silent};
                snprintf(down[nd].name, sizeof(down[0].name), "%s", a->name);
                nd++;
            }
        }
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < nd; i++) {
            gg_backend_t *b = backend_of(down[i].name, down[i].id);
            gg_warn("registration: %s: %u heartbeats missed (%lld ms): marking it down", down[i].name, missed_beats,
                    (long long)down[i].silent_ms);
            if (b != NULL)
                gg_backend_report_failure(b); /* health takes it down now; the hold hook keeps it there */
        }
        for (int i = 0; i < ng; i++)
            if (backend_of(gone[i].name, gone[i].id) != NULL)
                gg_backend_remove(gone[i].name);
        pthread_mutex_lock(&lock);
        uint32_t tick = heartbeat_ms / 4 < 200 ? heartbeat_ms / 4 : 200;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(tick ? tick : 1) * 1000000;
        while (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        if (running)
            pthread_cond_timedwait(&cond, &lock, &ts);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int gg_registration_start(const gg_config_t *cfg)
{
    if (cfg->registration.token == NULL)
        return 0;
    token = strdup(cfg->registration.token);
    approve_auto = cfg->registration.approve;
    heartbeat_ms = cfg->registration.heartbeat_ms ? cfg->registration.heartbeat_ms : 5000;
    missed_beats = cfg->registration.missed_beats ? cfg->registration.missed_beats : 3;
    ttl_ms = cfg->registration.ttl_ms ? cfg->registration.ttl_ms : 300000;
    gg_health_hold_hook = hold_hook;
    running = 1;
    int r = pthread_create(&sweeper, NULL, sweep, NULL);
    if (r != 0) {
        running = 0;
        return -r;
    }
    gg_info("registration: open at %s (approve %s, heartbeat %u ms, down after %u missed, ttl %u ms)", GG_REGISTER_PATH,
            approve_auto ? "auto" : "manual", heartbeat_ms, missed_beats, ttl_ms);
    return 0;
}

void gg_registration_stop(void)
{
    pthread_mutex_lock(&lock);
    int was = running;
    running = 0;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    if (was)
        pthread_join(sweeper, NULL);
    gg_health_hold_hook = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_AGENTS; i++)
        if (agents[i].used)
            forget_locked(&agents[i]);
    pthread_mutex_unlock(&lock);
    free(token);
    token = NULL;
}

/* --- the endpoint -------------------------------------------------------------------------------- */
static void reply(h2o_req_t *req, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    gg_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(j);
}

static void fail(h2o_req_t *req, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(h2o_req_t *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gg_respond_error(req, GG_DIALECT_OPENAI, status, msg, status == 401 ? "authentication_error" : "invalid_request_error", code);
}

static int token_ok(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t tl = strlen(token);
    if (v.len != 7 + tl || strncasecmp(v.base, "Bearer ", 7) != 0)
        return 0;
    return CRYPTO_memcmp(v.base + 7, token, tl) == 0;
}

/* The models list as the agent sent it, checked: [{"name": string, "loaded": bool}]. NULL + field on error. */
static json_t *check_models(json_t *m, char *field, size_t fl)
{
    if (m == NULL)
        return json_array();
    if (!json_is_array(m)) {
        snprintf(field, fl, "models");
        return NULL;
    }
    json_t *out = json_array(), *e;
    size_t i;
    json_array_foreach(m, i, e)
    {
        json_t *name = json_object_get(e, "name"), *loaded = json_object_get(e, "loaded");
        if (!json_is_string(name) || json_string_length(name) == 0 || json_string_length(name) >= GG_MODEL_NAME_MAX ||
            (loaded != NULL && !json_is_boolean(loaded))) {
            snprintf(field, fl, "models[%zu]", i);
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_pack("{s:O, s:b}", "name", name, "loaded", json_is_true(loaded)));
    }
    return out;
}

int gg_registration_parse(const char *body, size_t len, gg_registration_beat_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, 0, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "body: expected a JSON object (%s)", jerr.text);
        return -EBADMSG;
    }
    json_t *jurl = json_object_get(j, "url"), *jname = json_object_get(j, "name");
    const char *url = json_string_value(jurl), *name = json_string_value(jname);
    const char *kname = json_string_value(json_object_get(j, "kind"));
    const char *host = json_string_value(json_object_get(j, "agent"));
    char field[64] = "", hostname[256], prefix[256];
    unsigned port;
    int is_unix, kind = GG_ENGINE_UNKNOWN;
    json_t *models = NULL, *gpu = json_object_get(j, "gpu");
    if (url == NULL || strlen(url) != json_string_length(jurl) || strlen(url) >= sizeof(out->url) ||
        strncmp(url, "http://", 7) != 0 ||
        gg_httpc_parse_target(url, hostname, sizeof(hostname), &port, prefix, sizeof(prefix), &is_unix) != 0 || is_unix)
        snprintf(field, sizeof(field), "url");
    else if (jname != NULL &&
             (name == NULL || name[0] == '\0' || strlen(name) != json_string_length(jname) || strlen(name) >= sizeof(out->name)))
        snprintf(field, sizeof(field), "name");
    else if (json_object_get(j, "kind") != NULL && (kname == NULL || (kind = gg_engine_kind_parse(kname)) < 0))
        snprintf(field, sizeof(field), "kind");
    else if (gpu != NULL && !json_is_object(gpu) && !json_is_null(gpu))
        snprintf(field, sizeof(field), "gpu");
    else
        models = check_models(json_object_get(j, "models"), field, sizeof(field));
    if (field[0] == '\0' && name == NULL &&
        (size_t)snprintf(out->name, sizeof(out->name), "%s:%u", hostname, port) >= sizeof(out->name))
        snprintf(field, sizeof(field), "url");
    if (field[0] != '\0') {
        snprintf(err, errlen,
                 "%s: invalid or missing (expected {\"url\": \"http://HOST:PORT\", \"name\", \"kind\", "
                 "\"models\": [{\"name\", \"loaded\"}], \"gpu\": {...}})",
                 field);
        json_decref(models);
        json_decref(j);
        memset(out, 0, sizeof(*out));
        return -EINVAL;
    }
    if (name != NULL)
        snprintf(out->name, sizeof(out->name), "%s", name);
    snprintf(out->url, sizeof(out->url), "%s", url);
    snprintf(out->host, sizeof(out->host), "%s", host ? host : "");
    out->kind = kind;
    out->models = models;
    out->gpu = json_is_object(gpu) ? json_incref(gpu) : NULL;
    json_decref(j);
    return 0;
}

void gg_registration_beat_free(gg_registration_beat_t *b)
{
    json_decref(b->models);
    json_decref(b->gpu);
    memset(b, 0, sizeof(*b));
}

void gg_registration_handle(h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        fail(req, 405, "method_not_allowed", "use POST for %s", GG_REGISTER_PATH);
        return;
    }
    if (token == NULL) {
        fail(req, 403, "registration_disabled", "registration is disabled on this gateway (no registration.token in its config)");
        return;
    }
    if (!token_ok(req)) {
        fail(req, 401, "invalid_registration_token",
             "registration token missing or wrong: send Authorization: Bearer <registration.token>");
        return;
    }
    gg_registration_beat_t beat;
    char msg[512];
    int rc = gg_registration_parse(req->entity.base, req->entity.len, &beat, msg, sizeof(msg));
    if (rc != 0) {
        fail(req, 400, rc == -EBADMSG ? "invalid_body" : "invalid_field", "%s", msg);
        return;
    }
    const char *name = beat.name, *url = beat.url;
    int kind = beat.kind;

    /* Record the beat. */
    pthread_mutex_lock(&lock);
    struct agent *a = find_locked(name);
    if (a != NULL && strcmp(a->url, url) != 0) {
        pthread_mutex_unlock(&lock);
        fail(req, 409, "name_taken", "name: %s is registered with another url (%s)", name, a->url);
        gg_registration_beat_free(&beat);
        return;
    }
    if (a == NULL) {
        for (int i = 0; i < MAX_AGENTS && a == NULL; i++)
            if (!agents[i].used)
                a = &agents[i];
        if (a == NULL) {
            pthread_mutex_unlock(&lock);
            fail(req, 503, "too_many_agents", "no room for another agent (%d registered)", MAX_AGENTS);
            gg_registration_beat_free(&beat);
            return;
        }
        memset(a, 0, sizeof(*a));
        a->used = 1;
        snprintf(a->name, sizeof(a->name), "%s", name);
        snprintf(a->url, sizeof(a->url), "%s", url);
        a->first_ms = mono_ms();
        gg_info("registration: %s (%s) %s", name, url, approve_auto ? "registered" : "waits for approval");
    }
    a->kind = kind;
    snprintf(a->host, sizeof(a->host), "%s", beat.host);
    a->last_ms = mono_ms();
    a->beats++;
    /* The record takes over the beat's models and gpu. */
    json_decref(a->models);
    a->models = beat.models, beat.models = NULL;
    json_decref(a->gpu);
    a->gpu = beat.gpu, beat.gpu = NULL;
    int was_held = a->held, active = a->active;
    uint32_t id = a->backend_id;
    a->held = 0;
    pthread_mutex_unlock(&lock);

    /* An operator may have removed the backend this agent added: it joins again like a new one. */
    if (active && backend_of(name, id) == NULL)
        active = 0;
    if (!active && approve_auto) {
        int slot = gg_backend_add(name, url, (enum gg_engine_kind)kind, 1, 0);
        if (slot < 0) {
            pthread_mutex_lock(&lock);
            a = find_locked(name);
            if (a != NULL)
                a->active = 0;
            pthread_mutex_unlock(&lock);
            if (slot == -EEXIST)
                fail(req, 409, "name_taken", "name: %s is already a backend of this gateway; pick another --name", name);
            else
                fail(req, 400, "invalid_field", "url: cannot add backend: %s", strerror(-slot));
            return;
        }
        pthread_mutex_lock(&lock);
        a = find_locked(name);
        if (a != NULL) {
            a->active = 1;
            a->backend_id = gg_backends[slot].id;
        }
        pthread_mutex_unlock(&lock);
        active = 1;
    } else if (!active) {
        pthread_mutex_lock(&lock);
        a = find_locked(name);
        if (a != NULL)
            a->active = 0;
        pthread_mutex_unlock(&lock);
    }
    if (was_held) {
        gg_info("registration: %s: heartbeats are back", name);
        gg_health_kick();
    }
    reply(req, 200,
          json_pack("{s:s, s:s, s:i, s:i, s:i}", "name", name, "state", active ? "active" : "pending", "heartbeat_ms",
                    (int)heartbeat_ms, "missed_beats", (int)missed_beats, "ttl_ms", (int)ttl_ms));
}

int gg_registration_approve(const char *name)
{
    char url[256];
    int kind;
    pthread_mutex_lock(&lock);
    struct agent *a = find_locked(name);
    if (a == NULL) {
        pthread_mutex_unlock(&lock);
        return -ENOENT;
    }
    int active = a->active;
    uint32_t id = a->backend_id;
    snprintf(url, sizeof(url), "%s", a->url);
    kind = a->kind;
    pthread_mutex_unlock(&lock);
    if (active && backend_of(name, id) != NULL)
        return -EALREADY;
    int slot = gg_backend_add(name, url, (enum gg_engine_kind)kind, 1, 0);
    if (slot < 0)
        return slot;
    pthread_mutex_lock(&lock);
    a = find_locked(name);
    if (a != NULL) {
        a->active = 1;
        a->backend_id = gg_backends[slot].id;
    }
    pthread_mutex_unlock(&lock);
    gg_info("registration: %s approved", name);
    return 0;
}

static json_t *agent_json(const struct agent *a, int64_t now)
{
    const char *state = !a->active ? "pending" : a->held ? "missing" : "active";
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:O, s:O}", "name", a->name, "url", a->url, "kind",
                     gg_engine_kind_name(a->kind), "state", state, "agent", a->host, "beats", (json_int_t)a->beats,
                     "last_beat_ms_ago", (json_int_t)(now - a->last_ms), "registered_ms_ago", (json_int_t)(now - a->first_ms),
                     "models", a->models ? a->models : json_null(), "gpu", a->gpu ? a->gpu : json_null());
}

json_t *gg_registration_list_json(void)
{
    json_t *out = json_array();
    int64_t now = mono_ms();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_AGENTS; i++)
        if (agents[i].used)
            json_array_append_new(out, agent_json(&agents[i], now));
    pthread_mutex_unlock(&lock);
    return out;
}

json_t *gg_registration_info(const char *backend_name)
{
    json_t *out = NULL;
    pthread_mutex_lock(&lock);
    struct agent *a = find_locked(backend_name);
    if (a != NULL && a->active)
        out = agent_json(a, mono_ms());
    pthread_mutex_unlock(&lock);
    return out;
}
