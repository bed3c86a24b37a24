/* The backend registry (fixed slots), the published view the router reads (seqlocked slots, in the mmapped BPF map
 * when the kernel assist is on) and the published model table (immutable snapshots swapped atomically, freed after
 * a grace period). See backend.h for the read/write contract. */
#include "gridgate/backend.h"
#include "gridgate/buf.h"
#include "gridgate/httpc.h"
#include "gridgate/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

gg_backend_t gg_backends[GG_MAX_BACKENDS];
_Atomic uint32_t gg_backends_hwm;
static struct gg_bpf_backend heap_view[GG_MAX_BACKENDS];
struct gg_bpf_backend *gg_backend_view = heap_view;
_Static_assert(GG_BPF_MAX_BACKENDS == GG_MAX_BACKENDS, "the view mirrors the registry slot for slot");
void (*gg_backend_wake_hook)(void);

/* Control-private per-slot data. */
struct slot_priv {
    gg_backend_model_t *models;
    size_t n_models;
    int64_t freed_at_ms; /* when the slot was freed (reuse waits GG_BACKEND_REUSE_MS) */
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot_priv priv[GG_MAX_BACKENDS];
static uint32_t next_id = 1;

static const gg_model_table_t empty_table = {0};
static _Atomic(const gg_model_table_t *) current_table = &empty_table;
static uint64_t table_version;
struct retired {
    gg_model_table_t *t;
    int64_t at_ms;
    struct retired *next;
};
static struct retired *retired_list;

static const char *const kind_names[GG_ENGINE_KIND_COUNT] = {"unknown",  "ollama",   "vllm", "sglang",
                                                             "llamacpp", "lmstudio", "mlx",  "comfyui"};
static const char *const state_names[GG_BACKEND_STATE_COUNT] = {"free", "up", "down", "draining", "loading", "half_open"};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *gg_engine_kind_name(enum gg_engine_kind k)
{
    return (unsigned)k < GG_ENGINE_KIND_COUNT ? kind_names[k] : "unknown";
}

int gg_engine_kind_parse(const char *name)
{
    if (name == NULL || name[0] == '\0' || strcmp(name, "auto") == 0)
        return GG_ENGINE_UNKNOWN;
    if (strcmp(name, "llama.cpp") == 0 || strcmp(name, "llama-cpp") == 0)
        return GG_ENGINE_LLAMACPP;
    for (int i = 1; i < GG_ENGINE_KIND_COUNT; i++)
        if (strcmp(name, kind_names[i]) == 0)
            return i;
    return -EINVAL;
}

const char *gg_backend_state_name(enum gg_backend_state s)
{
    return (unsigned)s < GG_BACKEND_STATE_COUNT ? state_names[s] : "?";
}

static int live(const gg_backend_t *b)
{
    return atomic_load_explicit(&b->state, memory_order_acquire) != GG_BACKEND_FREE;
}

static gg_backend_t *find_locked(const char *name)
{
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    for (uint32_t i = 0; i < hwm; i++)
        if (live(&gg_backends[i]) && strcmp(gg_backends[i].name, name) == 0)
            return &gg_backends[i];
    return NULL;
}

gg_backend_t *gg_backend_find(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    gg_backend_t *b = find_locked(name);
    pthread_mutex_unlock(&reg_lock);
    return b;
}

static void free_models(gg_backend_model_t *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(m[i].meta);
        json_decref(m[i].ps);
    }
    free(m);
}

/* --- model table ------------------------------------------------------------------------------- */

/* Ollama's implicit tag: "llama3" and "llama3:latest" name the same model, and other engines list the
 * plain name. The table and the listings use the name without ":latest", so both merge into one entry. */
static void canonical_name(const char *in, char out[GG_MODEL_NAME_MAX])
{
    size_t len = strnlen(in, GG_MODEL_NAME_MAX - 1);
    if (len > 7 && memcmp(in + len - 7, ":latest", 7) == 0)
        len -= 7;
    memcpy(out, in, len);
    out[len] = '\0';
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const gg_model_entry_t *)a)->name, ((const gg_model_entry_t *)b)->name);
}

static void publish_locked(void)
{
    size_t total = 0;
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    for (uint32_t i = 0; i < hwm; i++)
        if (live(&gg_backends[i]))
            total += priv[i].n_models;
    gg_model_table_t *t = calloc(1, sizeof(*t) + total * sizeof(t->e[0]));
    if (t == NULL)
        abort();
    /* Collect (name, slot) pairs, sort, then merge equal names. */
    size_t n = 0;
    for (uint32_t i = 0; i < hwm; i++) {
        if (!live(&gg_backends[i]))
            continue;
        for (size_t j = 0; j < priv[i].n_models; j++) {
            gg_model_entry_t *e = &t->e[n++];
            canonical_name(priv[i].models[j].name, e->name);
            e->served[i >> 6] |= 1ull << (i & 63);
            if (priv[i].models[j].loaded)
                e->loaded[i >> 6] |= 1ull << (i & 63);
        }
    }
    qsort(t->e, n, sizeof(t->e[0]), cmp_entry);
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (w > 0 && strcmp(t->e[w - 1].name, t->e[r].name) == 0) {
            for (int k = 0; k < GG_BACKEND_WORDS; k++) {
                t->e[w - 1].served[k] |= t->e[r].served[k];
                t->e[w - 1].loaded[k] |= t->e[r].loaded[k];
            }
        } else {
            if (w != r)
                t->e[w] = t->e[r];
            w++;
        }
    }
    t->n = w;
    t->version = ++table_version;
    const gg_model_table_t *old = atomic_exchange_explicit(&current_table, t, memory_order_acq_rel);
    if (old != &empty_table) {
        struct retired *r = malloc(sizeof(*r));
        if (r == NULL)
            abort();
        r->t = (gg_model_table_t *)old;
        r->at_ms = mono_ms();
        r->next = retired_list;
        retired_list = r;
    }
}

const gg_model_table_t *gg_models_current(void)
{
    return atomic_load_explicit(&current_table, memory_order_acquire);
}

static const gg_model_entry_t *find_exact(const gg_model_table_t *t, const char *name)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, t->e[mid].name);
        if (c == 0)
            return &t->e[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const gg_model_entry_t *gg_models_find(const gg_model_table_t *t, const char *name)
{
    char canon[GG_MODEL_NAME_MAX];
    canonical_name(name, canon);
    return find_exact(t, canon);
}

void gg_models_reclaim(void)
{
    int64_t now = mono_ms();
    pthread_mutex_lock(&reg_lock);
    struct retired **pp = &retired_list;
    while (*pp != NULL) {
        struct retired *r = *pp;
        if (now - r->at_ms >= GG_MODELS_GRACE_MS) {
            *pp = r->next;
            free(r->t);
            free(r);
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

static int same_models(const gg_backend_model_t *a, size_t na, const gg_backend_model_t *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].name, b[i].name) != 0 || !a[i].loaded != !b[i].loaded)
            return 0;
    return 1;
}

int gg_backend_set_models(gg_backend_t *b, gg_backend_model_t *models, size_t n)
{
    int i = gg_backend_index(b);
    pthread_mutex_lock(&reg_lock);
    if (!live(b)) {
        pthread_mutex_unlock(&reg_lock);
        free_models(models, n);
        return -ENOENT;
    }
    int changed = !same_models(priv[i].models, priv[i].n_models, models, n);
    free_models(priv[i].models, priv[i].n_models);
    priv[i].models = models;
    priv[i].n_models = n;
    if (changed) {
        publish_locked();
        atomic_fetch_add(&b->generation, 1);
    }
    pthread_mutex_unlock(&reg_lock);
    return changed;
}

/* --- the published view ------------------------------------------------------------------------ */
static pthread_mutex_t pub_lock = PTHREAD_MUTEX_INITIALIZER; /* writers only; the router never locks */
static struct gg_bpf_backend shadow[GG_MAX_BACKENDS];        /* what each slot last published (seq, inflight unused) */

static void fill(struct gg_bpf_backend *v, const gg_backend_t *b)
{
    memset(v, 0, sizeof(*v));
    v->state = atomic_load(&b->state);
    if (v->state == GG_BACKEND_FREE)
        return;
    v->id = b->id;
    v->kind = atomic_load(&b->kind);
    v->weight = atomic_load(&b->weight);
    v->capacity = atomic_load(&b->capacity);
    v->engine_running = atomic_load(&b->engine_running);
    v->engine_waiting = atomic_load(&b->engine_waiting);
    v->kv_permille = atomic_load(&b->kv_permille);
    v->ttft_ewma_us = atomic_load(&b->ttft_ewma_us);
    v->tokens_per_s = atomic_load(&b->tokens_per_s);
    v->consecutive_failures = atomic_load(&b->consecutive_failures);
    v->port = b->port;
    memcpy(v->name, b->name, strnlen(b->name, sizeof(v->name) - 1));
}

/* The 32-bit words between seq and name, written one atomic store each so a router's relaxed load never tears; the
 * in-flight word is the data plane's and is skipped. */
#define WORD_FIRST (offsetof(struct gg_bpf_backend, id) / 4)
#define WORD_END (offsetof(struct gg_bpf_backend, name) / 4)
#define WORD_INFLIGHT (offsetof(struct gg_bpf_backend, inflight) / 4)
_Static_assert(offsetof(struct gg_bpf_backend, name) % 4 == 0, "published words are 32-bit");

static void publish_slot_locked(int i, int force)
{
    struct gg_bpf_backend v;
    fill(&v, &gg_backends[i]);
    if (!force && memcmp((char *)&v + 4 * WORD_FIRST, (char *)&shadow[i] + 4 * WORD_FIRST, sizeof(v) - 4 * WORD_FIRST) == 0)
        return;
    shadow[i] = v;
    struct gg_bpf_backend *slot = &gg_backend_view[i];
    uint32_t seq = __atomic_load_n(&slot->seq, __ATOMIC_RELAXED);
    /* seqlock: odd while the slot is rewritten; a reader wanting a consistent copy retries on odd or changed. */
    __atomic_store_n(&slot->seq, seq | 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    uint32_t *dst = (uint32_t *)slot;
    const uint32_t *src = (const uint32_t *)&v;
    for (size_t w = WORD_FIRST; w < WORD_END; w++)
        if (w != WORD_INFLIGHT)
            __atomic_store_n(&dst[w], src[w], __ATOMIC_RELAXED);
    memcpy(slot->name, v.name, sizeof(v.name));
    __atomic_store_n(&slot->seq, (seq | 1) + 1, __ATOMIC_RELEASE);
}

void gg_backends_publish(int slot)
{
    if (slot < 0 || slot >= GG_MAX_BACKENDS)
        return;
    pthread_mutex_lock(&pub_lock);
    publish_slot_locked(slot, 0);
    pthread_mutex_unlock(&pub_lock);
}

void gg_backends_publish_all(void)
{
    pthread_mutex_lock(&pub_lock);
    for (int i = 0; i < GG_MAX_BACKENDS; i++)
        publish_slot_locked(i, 0);
    pthread_mutex_unlock(&pub_lock);
}

void gg_backend_view_move(struct gg_bpf_backend *mem)
{
    struct gg_bpf_backend *to = mem != NULL ? mem : heap_view;
    pthread_mutex_lock(&pub_lock);
    if (to != gg_backend_view) {
        for (int i = 0; i < GG_MAX_BACKENDS; i++) {
            memset(&to[i], 0, sizeof(to[i]));
            to[i].seq = __atomic_load_n(&gg_backend_view[i].seq, __ATOMIC_RELAXED) & ~1u;
            to[i].inflight = __atomic_load_n(&gg_backend_view[i].inflight, __ATOMIC_RELAXED);
        }
        gg_backend_view = to;
        for (int i = 0; i < GG_MAX_BACKENDS; i++)
            publish_slot_locked(i, 1);
    }
    pthread_mutex_unlock(&pub_lock);
}

/* --- slots -------------------------------------------------------------------------------------- */
int gg_backend_add(const char *name, const char *url, enum gg_engine_kind kind, uint32_t weight, uint32_t max_inflight)
{
    char host[256], prefix[256], defname[300];
    unsigned port;
    int is_unix;
    if (url == NULL || (unsigned)kind >= GG_ENGINE_KIND_COUNT)
        return -EINVAL;
    int r = gg_httpc_parse_target(url, host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix);
    if (r < 0 || is_unix)
        return -EINVAL;
    if (name == NULL || name[0] == '\0') {
        snprintf(defname, sizeof(defname), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
        name = defname;
    }
    size_t ul = strlen(url);
    while (ul > 0 && url[ul - 1] == '/')
        ul--;
    if (strlen(name) >= sizeof(gg_backends[0].name) || ul >= sizeof(gg_backends[0].url))
        return -EINVAL;

    pthread_mutex_lock(&reg_lock);
    if (find_locked(name) != NULL) {
        pthread_mutex_unlock(&reg_lock);
        return -EEXIST;
    }
    /* Prefer never-used slots; reuse a freed one only when nothing can still point at it. */
    int slot = -1;
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    if (hwm < GG_MAX_BACKENDS) {
        slot = (int)hwm;
    } else {
        int64_t now = mono_ms();
        for (uint32_t i = 0; i < hwm && slot < 0; i++) {
            gg_backend_t *c = &gg_backends[i];
            if (!live(c) && gg_backend_inflight((int)i) == 0 && now - priv[i].freed_at_ms >= GG_BACKEND_REUSE_MS)
                slot = (int)i;
        }
    }
    if (slot < 0) {
        pthread_mutex_unlock(&reg_lock);
        return -ENOSPC;
    }
    gg_backend_t *b = &gg_backends[slot];
    uint32_t gen = atomic_load(&b->generation);
    memset(b->name, 0, sizeof(b->name));
    memset(b->url, 0, sizeof(b->url));
    memset(b->host, 0, sizeof(b->host));
    strcpy(b->name, name);
    memcpy(b->url, url, ul);
    snprintf(b->host, sizeof(b->host), "%s", host);
    b->port = (uint16_t)port;
    b->id = next_id++;
    atomic_store(&b->kind, kind);
    atomic_store(&b->weight, weight ? weight : 1);
    atomic_store(&b->max_inflight, max_inflight);
    atomic_store(&b->capacity, max_inflight ? max_inflight : 1);
    atomic_store(&b->engine_running, 0);
    atomic_store(&b->engine_waiting, 0);
    atomic_store(&b->kv_permille, 0);
    atomic_store(&b->ttft_ewma_us, 0);
    atomic_store(&b->tokens_per_s, 0);
    atomic_store(&b->consecutive_failures, 0);
    atomic_store(&b->requests, 0);
    atomic_store(&b->failures, 0);
    atomic_store(&b->successes, 0);
    atomic_store(&b->ttft_sum_us, 0);
    atomic_store(&b->ttft_obs, 0);
    atomic_store(&b->tokens_out, 0);
    atomic_store(&b->generation, gen + 1);
    atomic_store_explicit(&b->state, GG_BACKEND_DOWN, memory_order_release);
    if ((uint32_t)slot >= hwm)
        atomic_store_explicit(&gg_backends_hwm, slot + 1, memory_order_release);
    gg_backends_publish(slot);
    pthread_mutex_unlock(&reg_lock);
    gg_info("backend %s: added %s (%s) in slot %d", name, b->url, gg_engine_kind_name(kind), slot);
    if (gg_backend_wake_hook != NULL)
        gg_backend_wake_hook();
    return slot;
}

int gg_backend_remove(const char *name)
{
    pthread_mutex_lock(&reg_lock);
    gg_backend_t *b = find_locked(name);
    if (b == NULL) {
        pthread_mutex_unlock(&reg_lock);
        return -ENOENT;
    }
    int i = gg_backend_index(b);
    atomic_store_explicit(&b->state, GG_BACKEND_FREE, memory_order_release);
    atomic_fetch_add(&b->generation, 1);
    priv[i].freed_at_ms = mono_ms();
    int had_models = priv[i].n_models > 0;
    free_models(priv[i].models, priv[i].n_models);
    priv[i].models = NULL;
    priv[i].n_models = 0;
    if (had_models)
        publish_locked();
    gg_backends_publish(i);
    pthread_mutex_unlock(&reg_lock);
    gg_info("backend %s: removed", name);
    return 0;
}

int gg_backend_set_state(gg_backend_t *b, enum gg_backend_state state)
{
    if (state == GG_BACKEND_FREE || (unsigned)state >= GG_BACKEND_STATE_COUNT)
        return -EINVAL;
    pthread_mutex_lock(&reg_lock);
    int ok = live(b);
    if (ok && atomic_load(&b->state) != (uint32_t)state) {
        atomic_store_explicit(&b->state, state, memory_order_release);
        atomic_fetch_add(&b->generation, 1);
        gg_backends_publish(gg_backend_index(b));
    }
    pthread_mutex_unlock(&reg_lock);
    return ok ? 0 : -ENOENT;
}

/* Drain requests are handed to health (it owns the state machine) through this hook. */
int (*gg_backend_drain_hook)(gg_backend_t *b, int drain);

int gg_backend_drain(const char *name, int drain)
{
    gg_backend_t *b = gg_backend_find(name);
    if (b == NULL)
        return -ENOENT;
    if (gg_backend_drain_hook != NULL)
        return gg_backend_drain_hook(b, drain);
    return gg_backend_set_state(b, drain ? GG_BACKEND_DRAINING : GG_BACKEND_UP);
}

void gg_backends_reset(void)
{
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < GG_MAX_BACKENDS; i++) {
        free_models(priv[i].models, priv[i].n_models);
        memset(&priv[i], 0, sizeof(priv[i]));
        memset(&gg_backends[i], 0, sizeof(gg_backends[i]));
    }
    pthread_mutex_lock(&pub_lock);
    memset(gg_backend_view, 0, sizeof(heap_view));
    memset(shadow, 0, sizeof(shadow));
    pthread_mutex_unlock(&pub_lock);
    atomic_store(&gg_backends_hwm, 0);
    const gg_model_table_t *old = atomic_exchange(&current_table, &empty_table);
    if (old != &empty_table)
        free((void *)old);
    while (retired_list != NULL) {
        struct retired *r = retired_list;
        retired_list = r->next;
        free(r->t);
        free(r);
    }
    pthread_mutex_unlock(&reg_lock);
}

/* --- data plane signals ------------------------------------------------------------------------- */
void gg_backend_report_failure(gg_backend_t *b)
{
    atomic_fetch_add_explicit(&b->failures, 1, memory_order_relaxed);
    if (gg_backend_wake_hook != NULL)
        gg_backend_wake_hook();
}

void gg_backend_report_success(gg_backend_t *b)
{
    atomic_fetch_add_explicit(&b->successes, 1, memory_order_relaxed);
    /* Only a half-open backend is waiting on this; keep the common path free of syscalls. */
    if (atomic_load_explicit(&b->state, memory_order_relaxed) == GG_BACKEND_HALF_OPEN && gg_backend_wake_hook != NULL)
        gg_backend_wake_hook();
}

void gg_backend_observe(gg_backend_t *b, uint32_t ttft_us, uint32_t tokens_out)
{
    if (ttft_us) {
        atomic_fetch_add_explicit(&b->ttft_sum_us, ttft_us, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->ttft_obs, 1, memory_order_relaxed);
    }
    if (tokens_out)
        atomic_fetch_add_explicit(&b->tokens_out, tokens_out, memory_order_relaxed);
}

/* --- listings ----------------------------------------------------------------------------------- */
static int listed_state(uint32_t s)
{
    return s == GG_BACKEND_UP || s == GG_BACKEND_HALF_OPEN || s == GG_BACKEND_LOADING || s == GG_BACKEND_DRAINING;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *gg_models_list_json(void)
{
    json_t *byname = json_object();
    pthread_mutex_lock(&reg_lock);
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        gg_backend_t *b = &gg_backends[i];
        if (!listed_state(atomic_load(&b->state)))
            continue;
        const char *kname = gg_engine_kind_name(atomic_load(&b->kind));
        for (size_t j = 0; j < priv[i].n_models; j++) {
            const gg_backend_model_t *m = &priv[i].models[j];
            char canon[GG_MODEL_NAME_MAX];
            canonical_name(m->name, canon);
            json_t *o = json_object_get(byname, canon);
            if (o == NULL) {
                o = json_pack("{s:s, s:[], s:[], s:[], s:I, s:I, s:n, s:n}", "name", canon, "served_by", "loaded_on", "kinds",
                              "size", (json_int_t)0, "expires_at", (json_int_t)0, "meta", "ps");
                json_object_set_new(byname, canon, o);
            }
            json_array_append_new(json_object_get(o, "served_by"), json_string(b->name));
            if (m->loaded)
                json_array_append_new(json_object_get(o, "loaded_on"), json_string(b->name));
            json_t *kinds = json_object_get(o, "kinds");
            int seen = 0;
            for (size_t k = 0; k < json_array_size(kinds); k++)
                seen |= strcmp(json_string_value(json_array_get(kinds, k)), kname) == 0;
            if (!seen)
                json_array_append_new(kinds, json_string(kname));
            if (m->size && json_integer_value(json_object_get(o, "size")) == 0)
                json_object_set_new(o, "size", json_integer((json_int_t)m->size));
            if (m->expires_at > json_integer_value(json_object_get(o, "expires_at")))
                json_object_set_new(o, "expires_at", json_integer(m->expires_at));
            if (m->meta != NULL && json_is_null(json_object_get(o, "meta")))
                json_object_set(o, "meta", m->meta);
            if (m->ps != NULL && json_is_null(json_object_get(o, "ps")))
                json_object_set(o, "ps", m->ps);
        }
    }
    pthread_mutex_unlock(&reg_lock);
    size_t n = json_object_size(byname);
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    if (keys == NULL)
        abort();
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(byname, key, val) keys[k++] = key;
    qsort(keys, n, sizeof(*keys), cmp_str);
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(out, json_object_get(byname, keys[i]));
    free(keys);
    json_decref(byname);
    return out;
}

json_t *gg_backends_list_json(void)
{
    json_t *out = json_array();
    pthread_mutex_lock(&reg_lock);
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        gg_backend_t *b = &gg_backends[i];
        if (!live(b))
            continue;
        json_t *models = json_array();
        for (size_t j = 0; j < priv[i].n_models; j++)
            json_array_append_new(models,
                                  json_pack("{s:s, s:b}", "name", priv[i].models[j].name, "loaded", priv[i].models[j].loaded));
        json_array_append_new(
            out, json_pack("{s:i, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:o}", "slot", (int)i,
                           "name", b->name, "url", b->url, "kind", gg_engine_kind_name(atomic_load(&b->kind)), "state",
                           gg_backend_state_name(atomic_load(&b->state)), "weight", (int)atomic_load(&b->weight), "capacity",
                           (int)atomic_load(&b->capacity), "inflight", (int)gg_backend_inflight((int)i), "engine_running",
                           (int)atomic_load(&b->engine_running), "engine_waiting", (int)atomic_load(&b->engine_waiting),
                           "kv_permille", (int)atomic_load(&b->kv_permille), "ttft_ewma_us", (int)atomic_load(&b->ttft_ewma_us),
                           "tokens_per_s", (int)atomic_load(&b->tokens_per_s), "consecutive_failures",
                           (int)atomic_load(&b->consecutive_failures), "requests", (json_int_t)atomic_load(&b->requests),
                           "failures", (json_int_t)atomic_load(&b->failures), "models", models));
    }
    pthread_mutex_unlock(&reg_lock);
    return out;
}

/* Prometheus gauges of every live backend, rendered at scrape time from the published fields. */
void gg_backends_render_metrics(gg_buf_t *out)
{
    static const struct {
        const char *name, *help;
        size_t offset; /* in gg_backend_t, or in the view when SIZE_MAX */
    } gauges[] = {
        {"gridgate_backend_inflight", "Requests gridgate has in flight on the backend.", SIZE_MAX},
        {"gridgate_backend_capacity", "Concurrent requests the backend takes (configured or derived).",
         offsetof(gg_backend_t, capacity)},
        {"gridgate_backend_engine_running", "Requests the engine reports running.", offsetof(gg_backend_t, engine_running)},
        {"gridgate_backend_engine_waiting", "Requests the engine reports queued.", offsetof(gg_backend_t, engine_waiting)},
        {"gridgate_backend_kv_permille", "KV-cache use the engine reports, per mille.", offsetof(gg_backend_t, kv_permille)},
        {"gridgate_backend_ttft_ewma_us", "Moving average of time to first token, microseconds.",
         offsetof(gg_backend_t, ttft_ewma_us)},
    };
    gg_buf_appendf(out, "# HELP gridgate_backend_up Whether the backend takes new requests (state up or half_open).\n"
                        "# TYPE gridgate_backend_up gauge\n");
    pthread_mutex_lock(&reg_lock);
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        gg_backend_t *b = &gg_backends[i];
        if (!live(b))
            continue;
        uint32_t st = atomic_load(&b->state);
        gg_buf_appendf(out, "gridgate_backend_up{backend=");
        gg_buf_append_json_str(out, b->name, strlen(b->name));
        gg_buf_appendf(out, ",kind=\"%s\",state=\"%s\"} %d\n", gg_engine_kind_name(atomic_load(&b->kind)),
                       gg_backend_state_name(st), st == GG_BACKEND_UP || st == GG_BACKEND_HALF_OPEN);
    }
    for (size_t g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
        gg_buf_appendf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help, gauges[g].name);
        for (uint32_t i = 0; i < hwm; i++) {
            gg_backend_t *b = &gg_backends[i];
            if (!live(b))
                continue;
            gg_buf_appendf(out, "%s{backend=", gauges[g].name);
            gg_buf_append_json_str(out, b->name, strlen(b->name));
            gg_buf_appendf(out, "} %u\n",
                           gauges[g].offset == SIZE_MAX ? gg_backend_inflight((int)i)
                                                        : atomic_load((_Atomic uint32_t *)((char *)b + gauges[g].offset)));
        }
    }
    pthread_mutex_unlock(&reg_lock);
}
