/* Backend health: the pure state machine (gg_health_step) and the probe threads that drive it with real
 * probes, passive reports from the data plane and the monotonic clock. Also turns the data plane's
 * counters into published load figures (TTFT EWMA, tokens/s) and keeps the model table current. */
#include "gridgate/health.h"
#include "gridgate/adapter.h"
#include "gridgate/bpf.h"
#include "gridgate/capacity.h"
#include "gridgate/httpc.h"
#include "gridgate/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --- the pure state machine ---------------------------------------------------------------------- */
void gg_health_sm_init(gg_health_sm_t *sm)
{
    memset(sm, 0, sizeof(*sm));
    sm->state = GG_BACKEND_DOWN;
}

static void go_down(gg_health_sm_t *sm, const gg_health_params_t *p, uint64_t now)
{
    uint64_t cd = p->cooldown_ms;
    uint64_t cap = p->max_cooldown_ms > p->cooldown_ms ? p->max_cooldown_ms : p->cooldown_ms;
    cd <<= sm->trips < 20 ? sm->trips : 20;
    if (cd > cap)
        cd = cap;
    sm->state = GG_BACKEND_DOWN;
    sm->fails = sm->oks = 0;
    sm->down_until = now + cd;
}

static void trial_ok(gg_health_sm_t *sm, const gg_health_params_t *p)
{
    if (++sm->oks >= (p->recover_threshold ? p->recover_threshold : 1)) {
        sm->state = GG_BACKEND_UP;
        sm->fails = sm->oks = sm->trips = 0;
    }
}

uint32_t gg_health_step(gg_health_sm_t *sm, const gg_health_params_t *p, enum gg_health_event ev, uint64_t now)
{
    /* A DOWN machine whose cooldown is over is in its trial, whatever event brings the news. */
    if (sm->state == GG_BACKEND_DOWN && now >= sm->down_until && ev != GG_HEV_DRAIN && ev != GG_HEV_UNDRAIN) {
        sm->state = GG_BACKEND_HALF_OPEN;
        sm->oks = 0;
    }
    switch (ev) {
    case GG_HEV_TICK:
        break;
    case GG_HEV_DRAIN:
        sm->draining = 1;
        break;
    case GG_HEV_UNDRAIN:
        sm->draining = 0;
        break;
    case GG_HEV_PROBE_OK:
    case GG_HEV_PASSIVE_OK:
        if (sm->state == GG_BACKEND_HALF_OPEN)
            trial_ok(sm, p);
        else if (sm->state == GG_BACKEND_LOADING)
            sm->state = GG_BACKEND_UP, sm->fails = sm->trips = 0;
        else if (sm->state == GG_BACKEND_UP && ev == GG_HEV_PROBE_OK)
            sm->fails = 0;
        break;
    case GG_HEV_PROBE_FAIL:
    case GG_HEV_PASSIVE_FAIL:
        if (sm->state == GG_BACKEND_HALF_OPEN) {
            sm->trips++;
            go_down(sm, p, now);
        } else if (sm->state == GG_BACKEND_UP) {
            if (ev == GG_HEV_PASSIVE_FAIL || ++sm->fails >= (p->fail_threshold ? p->fail_threshold : 1))
                go_down(sm, p, now);
        } else if (sm->state == GG_BACKEND_LOADING && ev == GG_HEV_PROBE_FAIL) {
            /* A loading engine rejects requests by design: only probes count against it. */
            if (++sm->fails >= (p->fail_threshold ? p->fail_threshold : 1))
                go_down(sm, p, now);
        }
        break;
    case GG_HEV_PROBE_LOADING:
        if (sm->state != GG_BACKEND_DOWN) {
            sm->state = GG_BACKEND_LOADING;
            sm->fails = sm->oks = 0;
        }
        break;
    }
    return gg_health_published(sm);
}

/* --- the probe threads --------------------------------------------------------------------------- */
#define N_THREADS 4

struct hrec {
    uint32_t id; /* backend id this record follows (0: none) */
    gg_health_sm_t sm;
    int64_t next_probe; /* mono ms */
    int busy;           /* a thread is probing it */
    uint64_t probed_round;
    uint64_t seen_failures, seen_successes;
    uint64_t last_ttft_sum, last_ttft_obs, last_tokens;
    int64_t last_load_ms;
    uint32_t max_running_seen;
    int cap_live;                        /* cap holds the derived-capacity estimator (batching engines) */
    uint64_t cap_ttft_sum, cap_ttft_obs; /* TTFT counters as the estimator last saw them */
    gg_cap_state_t cap;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t round_cond = PTHREAD_COND_INITIALIZER;
static struct hrec recs[GG_MAX_BACKENDS];
static pthread_t threads[N_THREADS];
static int n_threads, running, woken;
int (*gg_health_hold_hook)(const gg_backend_t *b, char *why, size_t whylen);
static uint64_t round_seq;
static gg_health_params_t params;
static uint32_t interval_ms = 2000, timeout_ms = 1000;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next probe time with +-10% jitter so probes of many backends spread out. Called under lock. */
static int64_t next_due(int64_t now)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    int64_t span = interval_ms / 5;
    return now + interval_ms - interval_ms / 10 + (span ? (int64_t)(rng % (uint64_t)(span + 1)) : 0);
}

/* Publishes the machine's state; logs one line when it changed. Under lock. */
static void publish(gg_backend_t *b, struct hrec *h, const char *why)
{
    uint32_t old = atomic_load(&b->state), now_state = gg_health_published(&h->sm);
    if (old == GG_BACKEND_FREE || old == now_state)
        return;
    gg_backend_set_state(b, now_state);
    /* Counters seen before the change must not count for the new state (e.g. old successes promoting a
     * fresh half_open). */
    h->seen_failures = atomic_load(&b->failures);
    h->seen_successes = atomic_load(&b->successes);
    /* The down <-> half_open cycle of a dead backend repeats every cooldown: keep it out of the info log. */
    if ((old == GG_BACKEND_DOWN && now_state == GG_BACKEND_HALF_OPEN) ||
        (old == GG_BACKEND_HALF_OPEN && now_state == GG_BACKEND_DOWN))
        gg_debug("backend %s: %s -> %s (%s)", b->name, gg_backend_state_name(old), gg_backend_state_name(now_state), why);
    else
        gg_info("backend %s: %s -> %s (%s)", b->name, gg_backend_state_name(old), gg_backend_state_name(now_state), why);
}

/* Makes recs[i] follow the backend now in slot i. Under lock. */
static struct hrec *rec_for(int i)
{
    gg_backend_t *b = &gg_backends[i];
    struct hrec *h = &recs[i];
    if (h->id != b->id) {
        memset(h, 0, sizeof(*h));
        h->id = b->id;
        gg_health_sm_init(&h->sm);
        h->seen_failures = atomic_load(&b->failures);
        h->seen_successes = atomic_load(&b->successes);
        h->last_load_ms = mono_ms();
    }
    return h;
}

/* Feeds the data plane's passive reports into the machines. Under lock. */
static void scan_passive(int64_t now)
{
    uint32_t hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
    for (uint32_t i = 0; i < hwm; i++) {
        gg_backend_t *b = &gg_backends[i];
        if (atomic_load_explicit(&b->state, memory_order_acquire) == GG_BACKEND_FREE)
            continue;
        struct hrec *h = rec_for((int)i);
        uint64_t f = atomic_load(&b->failures), s = atomic_load(&b->successes);
        if (f != h->seen_failures) {
            h->seen_failures = f;
            gg_health_step(&h->sm, &params, GG_HEV_PASSIVE_FAIL, (uint64_t)now);
            publish(b, h, "passive failure");
        }
        if (s != h->seen_successes) {
            h->seen_successes = s;
            if (h->sm.state == GG_BACKEND_HALF_OPEN) {
                gg_health_step(&h->sm, &params, GG_HEV_PASSIVE_OK, (uint64_t)now);
                publish(b, h, "request ok");
            }
        }
        if (h->sm.state == GG_BACKEND_DOWN && (uint64_t)now >= h->sm.down_until && h->sm.down_until != 0) {
            gg_health_step(&h->sm, &params, GG_HEV_TICK, (uint64_t)now);
            publish(b, h, "cooldown over");
            h->next_probe = now; /* the trial */
        }
    }
}

/* Turns the data plane's TTFT and token counters into published figures. Under lock. */
static void update_load(gg_backend_t *b, struct hrec *h, int64_t now)
{
    uint64_t sum = atomic_load(&b->ttft_sum_us), obs = atomic_load(&b->ttft_obs), tok = atomic_load(&b->tokens_out);
    if (obs > h->last_ttft_obs) {
        uint64_t avg = (sum - h->last_ttft_sum) / (obs - h->last_ttft_obs);
        uint32_t old = atomic_load(&b->ttft_ewma_us);
        uint64_t ewma = old ? (old * 7ull + avg * 3ull) / 10 : avg;
        atomic_store(&b->ttft_ewma_us, ewma > UINT32_MAX ? UINT32_MAX : (uint32_t)ewma);
    }
    int64_t dt = now - h->last_load_ms;
    if (dt >= 100) {
        uint64_t rate = (tok - h->last_tokens) * 1000 / (uint64_t)dt;
        atomic_store(&b->tokens_per_s, rate > UINT32_MAX ? UINT32_MAX : (uint32_t)rate);
        h->last_tokens = tok;
        h->last_load_ms = now;
    }
    h->last_ttft_sum = sum;
    h->last_ttft_obs = obs;
}

/* Batching engines keep their own FIFO queue; the estimator finds the concurrency where it starts to form or
 * TTFT starts to rise (include/gridgate/capacity.h). Defaults: 2x TTFT, 2 bad polls, +1 per 3 good ones. */
static const gg_cap_params_t cap_params = {.min_cap = 1, .max_cap = GG_CAP_LEVELS};

static uint32_t derive_batching_cap(gg_backend_t *b, struct hrec *h, const gg_engine_status_t *st, uint32_t initial, int64_t now)
{
    uint64_t sum = atomic_load(&b->ttft_sum_us), obs = atomic_load(&b->ttft_obs);
    if (!h->cap_live) {
        gg_cap_init(&h->cap, &cap_params, initial);
        h->cap_live = 1;
        h->cap_ttft_sum = sum;
        h->cap_ttft_obs = obs;
    }
    gg_cap_sample_t x = {.inflight = gg_backend_inflight(gg_backend_index(b)),
                         .has_load = st->has_load,
                         .running = st->running,
                         .waiting = st->waiting,
                         .ttft_sum_us = sum - h->cap_ttft_sum,
                         .ttft_obs = obs - h->cap_ttft_obs > UINT32_MAX ? UINT32_MAX : (uint32_t)(obs - h->cap_ttft_obs)};
    h->cap_ttft_sum = sum;
    h->cap_ttft_obs = obs;
    uint32_t old = h->cap.cap, cap = gg_cap_step(&h->cap, &cap_params, &x, (uint64_t)now);
    if (cap != old)
        gg_info("backend %s: derived capacity %u -> %u (running %u, waiting %u, in flight %u)", b->name, old, cap, x.running,
                x.waiting, x.inflight);
    return cap;
}

static void apply_status(gg_backend_t *b, struct hrec *h, const gg_adapter_t *ad, gg_engine_status_t *st, int64_t now)
{
    if (st->has_load) {
        atomic_store(&b->engine_running, st->running);
        atomic_store(&b->engine_waiting, st->waiting);
        atomic_store(&b->kv_permille, st->kv_permille);
        if (st->running > h->max_running_seen)
            h->max_running_seen = st->running;
    }
    uint32_t cap = atomic_load(&b->max_inflight);
    if (cap == 0)
        cap = st->capacity;
    if (cap == 0 && ad != NULL) {
        cap = ad->default_capacity;
        /* Batching servers: start from at least what they were seen running at once, then adapt. */
        if (ad->kind == GG_ENGINE_VLLM || ad->kind == GG_ENGINE_SGLANG)
            cap = derive_batching_cap(b, h, st, h->max_running_seen > cap ? h->max_running_seen : cap, now);
    }
    if (cap == 0)
        cap = 1;
    if (atomic_load(&b->capacity) != cap) {
        atomic_store(&b->capacity, cap);
        atomic_fetch_add(&b->generation, 1);
    }
}

/* One probe of slot i, without the lock held. Returns the event to apply. */
static enum gg_health_event probe(gg_backend_t *b, struct hrec *h, gg_engine_status_t *st, char *why, size_t whylen)
{
    uint32_t kind = atomic_load(&b->kind);
    if (kind == GG_ENGINE_UNKNOWN) {
        int k = gg_adapter_detect(b->url, (int)timeout_ms);
        if (k < 0) {
            snprintf(why, whylen, "%s", gg_httpc_strerror(k));
            return GG_HEV_PROBE_FAIL;
        }
        if (k == GG_ENGINE_UNKNOWN) {
            snprintf(why, whylen, "unrecognised engine");
            return GG_HEV_PROBE_FAIL;
        }
        atomic_store(&b->kind, (uint32_t)k);
        atomic_fetch_add(&b->generation, 1);
        gg_info("backend %s: detected %s", b->name, gg_engine_kind_name(k));
        kind = k;
    }
    const gg_adapter_t *ad = gg_adapter_for(kind);
    int r = ad->poll(b->url, (int)timeout_ms, st);
    snprintf(why, whylen, "%s", st->reason[0] ? st->reason : r == 0 ? "probe ok" : gg_httpc_strerror(r));
    if (r == 0)
        return GG_HEV_PROBE_OK;
    return r == -EBUSY ? GG_HEV_PROBE_LOADING : GG_HEV_PROBE_FAIL;
}

static void *worker(void *arg)
{
    pthread_mutex_lock(&lock);
    while (running) {
        int64_t now = mono_ms();
        woken = 0;
        scan_passive(now);
        gg_bpf_sync(); /* every round, so the pinned maps trail the registry by less than one interval */
        /* Pick the most overdue idle backend that is not cooling down. */
        int pick = -1;
        int64_t wake = now + 1000;
        uint32_t hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
        for (uint32_t i = 0; i < hwm; i++) {
            gg_backend_t *b = &gg_backends[i];
            if (atomic_load_explicit(&b->state, memory_order_acquire) == GG_BACKEND_FREE)
                continue;
            struct hrec *h = rec_for((int)i);
            if (h->busy)
                continue;
            int64_t due = h->next_probe;
            if (h->sm.state == GG_BACKEND_DOWN && (int64_t)h->sm.down_until > due)
                due = (int64_t)h->sm.down_until;
            if (due <= now && (pick < 0 || due < recs[pick].next_probe))
                pick = (int)i;
            else if (due > now && due < wake)
                wake = due;
        }
        if (pick < 0) {
            if (woken)
                continue;
            /* The condvar runs on CLOCK_REALTIME; a wall clock jump only shifts one wait. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ms = wake - now;
            ts.tv_sec += ms / 1000;
            ts.tv_nsec += (ms % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000)
                ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&cond, &lock, &ts);
            pthread_mutex_unlock(&lock);
            gg_models_reclaim();
            pthread_mutex_lock(&lock);
            continue;
        }
        gg_backend_t *b = &gg_backends[pick];
        struct hrec *h = &recs[pick];
        uint32_t id = h->id;
        uint64_t round = round_seq;
        h->busy = 1;
        pthread_mutex_unlock(&lock);

        gg_engine_status_t st;
        gg_engine_status_init(&st);
        char why[160];
        enum gg_health_event ev = probe(b, h, &st, why, sizeof(why));
        if (ev != GG_HEV_PROBE_FAIL && gg_health_hold_hook != NULL && gg_health_hold_hook(b, why, sizeof(why)))
            ev = GG_HEV_PROBE_FAIL;
        int models_changed = 0;
        size_t n_models = st.n_models;
        if (ev == GG_HEV_PROBE_OK) {
            models_changed = gg_backend_set_models(b, st.models, st.n_models) > 0;
            st.models = NULL;
            st.n_models = 0;
        }

        pthread_mutex_lock(&lock);
        h->busy = 0;
        if (h->id != id || b->id != id || atomic_load(&b->state) == GG_BACKEND_FREE) {
            gg_engine_status_free(&st);
            pthread_cond_broadcast(&round_cond);
            continue; /* removed (or replaced) while we probed */
        }
        now = mono_ms();
        if (ev == GG_HEV_PROBE_OK)
            apply_status(b, h, gg_adapter_for(atomic_load(&b->kind)), &st, now);
        gg_health_step(&h->sm, &params, ev, (uint64_t)now);
        atomic_store(&b->consecutive_failures, h->sm.fails);
        publish(b, h, why);
        if (models_changed)
            gg_debug("backend %s: model list changed (%zu models)", b->name, n_models);
        update_load(b, h, now);
        /* A round asked for while this probe ran needs a fresh one. */
        h->next_probe = round < round_seq ? now : next_due(now);
        if (h->probed_round < round)
            h->probed_round = round;
        gg_engine_status_free(&st);
        pthread_cond_broadcast(&round_cond);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void on_wake(void)
{
    pthread_mutex_lock(&lock);
    woken = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static int on_drain(gg_backend_t *b, int drain)
{
    pthread_mutex_lock(&lock);
    if (atomic_load(&b->state) == GG_BACKEND_FREE) {
        pthread_mutex_unlock(&lock);
        return -ENOENT;
    }
    struct hrec *h = rec_for(gg_backend_index(b));
    gg_health_step(&h->sm, &params, drain ? GG_HEV_DRAIN : GG_HEV_UNDRAIN, (uint64_t)mono_ms());
    publish(b, h, drain ? "drained by operator" : "undrained by operator");
    pthread_mutex_unlock(&lock);
    return 0;
}

int gg_health_start(const gg_config_t *cfg)
{
    if (running)
        return -EALREADY;
    params.fail_threshold = cfg->health.fail_threshold;
    params.recover_threshold = cfg->health.recover_threshold;
    params.cooldown_ms = cfg->health.cooldown_ms;
    params.max_cooldown_ms = cfg->health.max_cooldown_ms;
    interval_ms = cfg->health.interval_ms ? cfg->health.interval_ms : 2000;
    timeout_ms = cfg->health.timeout_ms ? cfg->health.timeout_ms : 1000;
    rng ^= (uint64_t)mono_ms();
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const gg_config_backend_t *cb = &cfg->backends[i];
        int r = gg_backend_add(cb->name, cb->url, cb->kind, cb->weight, cb->max_inflight);
        if (r < 0 && r != -EEXIST) {
            gg_error("backend %s: cannot add: %s", cb->name ? cb->name : cb->url, strerror(-r));
            return r;
        }
    }
    pthread_mutex_lock(&lock);
    running = 1;
    pthread_mutex_unlock(&lock);
    gg_backend_wake_hook = on_wake;
    gg_backend_drain_hook = on_drain;
    for (n_threads = 0; n_threads < N_THREADS; n_threads++) {
        int r = pthread_create(&threads[n_threads], NULL, worker, NULL);
        if (r != 0) {
            gg_health_stop();
            return -r;
        }
    }
    return 0;
}

void gg_health_stop(void)
{
    pthread_mutex_lock(&lock);
    running = 0;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_threads; i++)
        pthread_join(threads[i], NULL);
    n_threads = 0;
    gg_backend_wake_hook = NULL;
    gg_backend_drain_hook = NULL;
    memset(recs, 0, sizeof(recs));
}

void gg_health_kick(void)
{
    pthread_mutex_lock(&lock);
    int64_t now = mono_ms();
    for (int i = 0; i < GG_MAX_BACKENDS; i++)
        if (recs[i].id != 0 && recs[i].next_probe > now)
            recs[i].next_probe = now;
    woken = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

int gg_health_probe_all(int timeout)
{
    pthread_mutex_lock(&lock);
    if (!running) {
        pthread_mutex_unlock(&lock);
        return -ESRCH;
    }
    uint64_t round = ++round_seq;
    int64_t now = mono_ms(), deadline = now + timeout;
    uint32_t hwm = atomic_load(&gg_backends_hwm);
    for (uint32_t i = 0; i < hwm; i++) {
        if (atomic_load(&gg_backends[i].state) == GG_BACKEND_FREE)
            continue;
        struct hrec *h = rec_for((int)i);
        h->next_probe = now;
    }
    woken = 1;
    pthread_cond_broadcast(&cond);
    int r = 0;
    for (;;) {
        int pending = 0;
        now = mono_ms();
        for (uint32_t i = 0; i < hwm; i++) {
            struct hrec *h = &recs[i];
            if (atomic_load(&gg_backends[i].state) == GG_BACKEND_FREE || h->id != gg_backends[i].id)
                continue;
            int cooling = h->sm.state == GG_BACKEND_DOWN && (int64_t)h->sm.down_until > now;
            if (!cooling && h->probed_round < round)
                pending++;
        }
        if (pending == 0)
            break;
        if (now >= deadline) {
            r = -ETIMEDOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ms = deadline - now < 50 ? deadline - now : 50;
        ts.tv_nsec += ms * 1000000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&round_cond, &lock, &ts);
    }
    pthread_mutex_unlock(&lock);
    return r;
}
