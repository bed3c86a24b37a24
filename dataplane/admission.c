/* Per-backend admission queues: strict priority, then weighted deficit round robin across tenants in
 * estimated tokens; cross-worker hand-off of freed slots. See admission.h. */
#include "gridgate/admission.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "gridgate/backend.h"
#include "gridgate/metrics.h"
#include "gridgate/server.h"

#define PRIORITIES 10
#define DEFAULT_SERVICE_US 1000000

enum { W_QUEUED, W_GRANTED };

struct gg_admit_waiter {
    h2o_multithread_message_t msg; /* first: the receiver hands back the message */
    h2o_timeout_entry_t timer;
    h2o_linklist_t link; /* in its tenant's queue at the backend, while W_QUEUED */
    struct gg_worker *w;
    int slot;
    int state; /* changed under the backend's lock */
    gg_tenant_t *t;
    uint32_t cost;
    uint64_t t_enq_us;
    gg_admit_cb cb; /* NULL once cancelled after the grant: the receiver gives the slot back */
    void *ctx;
};

/* One tenant at one backend. */
struct tq {
    h2o_linklist_t queue;
    uint32_t queued, inflight;
    uint64_t deficit;
};

struct bq {
    pthread_mutex_t mu;
    struct tq *tq; /* [GG_MAX_TENANTS]: the admin API may add tenants while running */
    uint32_t queued;
    uint32_t cur[PRIORITIES]; /* DRR position per priority level */
    uint64_t avg_service_us;  /* EWMA of slot hold times */
};

static struct bq bqs[GG_MAX_BACKENDS];
static gg_admission_config_t conf = {.queue_ms = 30000, .max_queue = 4096, .quantum = 64};
static _Atomic uint32_t total_queued;

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void render(gg_buf_t *out);
static void on_timeout(h2o_timeout_entry_t *e);
static gg_admit_waiter_t *head_of(struct tq *tq);

void gg_admission_init(const gg_admission_config_t *cfg)
{
    static int collector;
    gg_admission_free();
    if (cfg != NULL)
        conf = *cfg;
    if (conf.quantum == 0)
        conf.quantum = 64;
    for (int s = 0; s < GG_MAX_BACKENDS; s++) {
        struct bq *q = &bqs[s];
        pthread_mutex_init(&q->mu, NULL);
        q->tq = calloc(GG_MAX_TENANTS, sizeof(*q->tq));
        if (q->tq == NULL)
            abort();
        for (size_t i = 0; i < GG_MAX_TENANTS; i++)
            h2o_linklist_init_anchor(&q->tq[i].queue);
        q->avg_service_us = DEFAULT_SERVICE_US;
    }
    if (!collector) {
        collector = 1;
        gg_metrics_add_collector(render);
    }
}

void gg_admission_free(void)
{
    for (int s = 0; s < GG_MAX_BACKENDS; s++) {
        if (bqs[s].tq == NULL)
            continue;
        /* Waiters still queued belong to the queue (shutdown, tests): nobody will resume them. */
        for (size_t i = 0; i < GG_MAX_TENANTS; i++)
            while (!h2o_linklist_is_empty(&bqs[s].tq[i].queue)) {
                gg_admit_waiter_t *wt = head_of(&bqs[s].tq[i]);
                h2o_linklist_unlink(&wt->link);
                free(wt);
            }
        pthread_mutex_destroy(&bqs[s].mu);
        free(bqs[s].tq);
        memset(&bqs[s], 0, sizeof(bqs[s]));
    }
    atomic_store(&total_queued, 0);
}

/* The admin API may change a tenant's settings while workers read them. */
static uint32_t weight_of(const gg_tenant_t *t)
{
    uint32_t w = __atomic_load_n(&t->weight, __ATOMIC_RELAXED);
    return w ? w : 1;
}

static unsigned level_of(const gg_tenant_t *t)
{
    uint32_t p = __atomic_load_n(&t->priority, __ATOMIC_RELAXED);
    return p < PRIORITIES ? p : PRIORITIES - 1;
}

/* --- the scheduling decision (backend lock held) ---------------------------------------------------- */

static uint32_t cap_of(int slot)
{
    uint32_t c = atomic_load_explicit(&gg_backends[slot].capacity, memory_order_relaxed);
    return c ? c : 1;
}

/* Slots beyond the cap that tenants under their share may use: only where the cap is a latency knee. */
static uint32_t burst_of(int slot, uint32_t cap)
{
    uint32_t k = atomic_load_explicit(&gg_backends[slot].kind, memory_order_relaxed);
    if (k != GG_ENGINE_VLLM && k != GG_ENGINE_SGLANG)
        return 0;
    return cap >= 2 ? cap / 2 : 1;
}

/* Sum of the weights of tenants that queue or run at this backend, counting `also` as one of them. */
static uint64_t active_weight(struct bq *q, size_t also)
{
    uint64_t w = 0, nt = gg_tenants_count();
    for (size_t i = 0; i < nt; i++)
        if (i == also || q->tq[i].queued || q->tq[i].inflight)
            w += weight_of(gg_tenant_at(i));
    return w ? w : 1;
}

/* Whether tenant i holds less than cap * weight / active weight of this backend. */
static int under_share(struct bq *q, size_t i, uint32_t cap)
{
    return (uint64_t)q->tq[i].inflight * active_weight(q, i) < (uint64_t)cap * weight_of(gg_tenant_at(i));
}

/* Whether tenant i may take a slot at this backend now (its queue aside). */
static int may_take(struct bq *q, int slot, size_t i)
{
    gg_tenant_t *t = gg_tenant_at(i);
    uint32_t max = __atomic_load_n(&t->max_inflight, __ATOMIC_RELAXED);
    if (max && atomic_load_explicit(&t->inflight, memory_order_relaxed) >= max)
        return 0;
    uint32_t cap = cap_of(slot), in = gg_backend_inflight(slot);
    if (in < cap)
        return 1;
    return in < cap + burst_of(slot, cap) && under_share(q, i, cap);
}

static gg_admit_waiter_t *head_of(struct tq *tq)
{
    return H2O_STRUCT_FROM_MEMBER(gg_admit_waiter_t, link, tq->queue.next);
}

/* Removes a queued waiter and updates the counters. */
static void dequeue(struct bq *q, gg_admit_waiter_t *wt)
{
    struct tq *tq = &q->tq[wt->t->idx];
    h2o_linklist_unlink(&wt->link);
    tq->queued--;
    q->queued--;
    atomic_fetch_sub_explicit(&wt->t->queued, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&total_queued, 1, memory_order_relaxed);
    if (tq->queued == 0) {
        /* DRR: a tenant that leaves the active set keeps no credit. */
        tq->deficit = 0;
        unsigned p = level_of(wt->t);
        if (q->cur[p] == wt->t->idx)
            q->cur[p] = (uint32_t)((wt->t->idx + 1) % gg_tenants_count());
    }
}

static void take_slot(struct bq *q, int slot, gg_tenant_t *t)
{
    gg_backend_inflight_add(slot, 1);
    atomic_fetch_add_explicit(&t->inflight, 1, memory_order_relaxed);
    q->tq[t->idx].inflight++;
}

/* The next waiter to admit: the highest priority level with an eligible tenant, then DRR among that
 * level's eligible tenants. Charges the DRR deficit; does not dequeue. NULL when nobody may go. */
static gg_admit_waiter_t *pick(struct bq *q, int slot)
{
    size_t nt = gg_tenants_count(); /* tenants added meanwhile have empty queues here */
    for (int p = PRIORITIES - 1; p >= 0; p--) {
        for (int pass = 0; pass < 2; pass++) {
            uint64_t rounds = UINT64_MAX;
            for (size_t k = 0; k < nt; k++) {
                size_t i = (q->cur[p] + k) % nt;
                gg_tenant_t *t = gg_tenant_at(i);
                struct tq *tq = &q->tq[i];
                if (level_of(t) != (unsigned)p || tq->queued == 0 || !may_take(q, slot, i))
                    continue;
                gg_admit_waiter_t *h = head_of(tq);
                if (tq->deficit >= h->cost) {
                    tq->deficit -= h->cost;
                    q->cur[p] = (uint32_t)i;
                    return h;
                }
                uint64_t per_round = (uint64_t)conf.quantum * weight_of(t);
                uint64_t need = (h->cost - tq->deficit + per_round - 1) / per_round;
                if (need < rounds)
                    rounds = need;
            }
            if (rounds == UINT64_MAX)
                break; /* nobody eligible at this level */
            /* Nobody could pay: give every eligible tenant as many quanta as the closest one needs, at once
             * (the same order as visiting round after round, without the loop). */
            for (size_t i = 0; i < nt; i++) {
                gg_tenant_t *t = gg_tenant_at(i);
                if (level_of(t) == (unsigned)p && q->tq[i].queued && may_take(q, slot, i))
                    q->tq[i].deficit += rounds * conf.quantum * weight_of(t);
            }
        }
    }
    return NULL;
}

/* Grants every slot that can be granted; the granted waiters are appended to `out`. */
static void pump(struct bq *q, int slot, h2o_linklist_t *out)
{
    gg_admit_waiter_t *wt;
    while (q->queued && (wt = pick(q, slot)) != NULL) {
        dequeue(q, wt);
        take_slot(q, slot, wt->t);
        wt->state = W_GRANTED;
        h2o_linklist_insert(out, &wt->link);
    }
}

/* Outside the lock: hands each granted waiter to its worker (or, without one, runs it here). */
static void deliver(h2o_linklist_t *granted, gg_admit_waiter_t *self)
{
    while (!h2o_linklist_is_empty(granted)) {
        gg_admit_waiter_t *wt = H2O_STRUCT_FROM_MEMBER(gg_admit_waiter_t, link, granted->next);
        h2o_linklist_unlink(&wt->link);
        if (wt == self)
            continue;
        if (wt->w != NULL) {
            h2o_multithread_send_message(&wt->w->admit_receiver, &wt->msg);
            continue;
        }
        gg_admit_result_t r = {.reject = GG_REJECT_NONE, .waited_us = mono_us() - wt->t_enq_us};
        wt->cb(wt->ctx, &r);
        free(wt);
    }
}

unsigned gg_admission_retry_after(unsigned ahead, unsigned slots, uint64_t avg_service_us)
{
    if (slots == 0)
        slots = 1;
    uint64_t us = ((uint64_t)ahead + 1) * avg_service_us / slots;
    return gg_retry_after_s(us);
}

/* Why a request that cannot wait (any more) is refused, and when to come back. queue_full: 1 the tenant's
 * own bound, 2 the gateway's. Lock held. */
static void refusal(struct bq *q, int slot, gg_tenant_t *t, int queue_full, gg_admit_result_t *r)
{
    uint32_t cap = cap_of(slot);
    if (queue_full == 1 || (queue_full == 0 && !under_share(q, t->idx, cap))) {
        /* Over its share: its own queue drains through its share of the slots. */
        uint32_t share = (uint32_t)((uint64_t)cap * weight_of(t) / active_weight(q, t->idx));
        r->reject = queue_full ? GG_REJECT_QUEUE_FULL : GG_REJECT_SHARE;
        r->retry_after_s = gg_admission_retry_after(q->tq[t->idx].queued, share ? share : 1, q->avg_service_us);
        return;
    }
    r->reject = GG_REJECT_OVERLOADED;
    r->retry_after_s = gg_admission_retry_after(q->queued, cap, q->avg_service_us);
}

int gg_admit(struct gg_worker *w, int slot, gg_tenant_t *t, uint32_t cost, gg_admit_cb cb, void *ctx, gg_admit_waiter_t **wp,
             gg_admit_result_t *r)
{
    struct bq *q = &bqs[slot];
    struct tq *tq = &q->tq[t->idx];
    *r = (gg_admit_result_t){GG_REJECT_NONE, 0, 0};
    *wp = NULL;
    pthread_mutex_lock(&q->mu);
    if (q->queued == 0 && may_take(q, slot, t->idx)) {
        take_slot(q, slot, t);
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    int full = 0;
    if (atomic_load_explicit(&t->queued, memory_order_relaxed) >= __atomic_load_n(&t->max_queue, __ATOMIC_RELAXED))
        full = 1;
    else if (atomic_load_explicit(&total_queued, memory_order_relaxed) >= conf.max_queue)
        full = 2;
    if (full || conf.queue_ms == 0) {
        refusal(q, slot, t, full, r);
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    gg_admit_waiter_t *wt = calloc(1, sizeof(*wt));
    wt->w = w;
    wt->slot = slot;
    wt->t = t;
    wt->cost = cost ? cost : 1;
    wt->cb = cb;
    wt->ctx = ctx;
    wt->timer.cb = on_timeout;
    wt->t_enq_us = mono_us();
    wt->state = W_QUEUED;
    h2o_linklist_insert(&tq->queue, &wt->link);
    tq->queued++;
    q->queued++;
    atomic_fetch_add_explicit(&t->queued, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&total_queued, 1, memory_order_relaxed);
    h2o_linklist_t granted;
    h2o_linklist_init_anchor(&granted);
    /* Whoever waits here may be blocked by its own tenant's limit while the newcomer is not. */
    pump(q, slot, &granted);
    int self = wt->state == W_GRANTED;
    pthread_mutex_unlock(&q->mu);
    deliver(&granted, wt);
    if (self) {
        free(wt);
        return 0;
    }
    if (w != NULL)
        h2o_timeout_link(w->loop, &w->admit_timeout, &wt->timer);
    *wp = wt;
    return 1;
}

void gg_admit_release(int slot, gg_tenant_t *t, uint64_t held_us)
{
    struct bq *q = &bqs[slot];
    h2o_linklist_t granted;
    h2o_linklist_init_anchor(&granted);
    pthread_mutex_lock(&q->mu);
    gg_backend_inflight_add(slot, -1);
    atomic_fetch_sub_explicit(&t->inflight, 1, memory_order_relaxed);
    q->tq[t->idx].inflight--;
    if (held_us)
        q->avg_service_us = (q->avg_service_us * 7 + held_us) / 8;
    pump(q, slot, &granted);
    int others = __atomic_load_n(&t->max_inflight, __ATOMIC_RELAXED) &&
                 atomic_load_explicit(&t->queued, memory_order_relaxed) > q->tq[t->idx].queued;
    pthread_mutex_unlock(&q->mu);
    deliver(&granted, NULL);
    if (!others)
        return;
    /* The tenant was at its own max_inflight and has requests waiting at other backends: they may go now. */
    unsigned hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
    for (unsigned s = 0; s < hwm; s++) {
        if ((int)s == slot || bqs[s].tq == NULL || bqs[s].tq[t->idx].queued == 0)
            continue;
        pthread_mutex_lock(&bqs[s].mu);
        pump(&bqs[s], (int)s, &granted);
        pthread_mutex_unlock(&bqs[s].mu);
        deliver(&granted, NULL);
    }
}

void gg_admit_cancel(gg_admit_waiter_t *wt)
{
    struct bq *q = &bqs[wt->slot];
    if (h2o_timeout_is_linked(&wt->timer))
        h2o_timeout_unlink(&wt->timer);
    pthread_mutex_lock(&q->mu);
    if (wt->state == W_QUEUED) {
        dequeue(q, wt);
        pthread_mutex_unlock(&q->mu);
        free(wt);
        return;
    }
    /* Granted, and the message is on its way to this very worker: the receiver gives the slot back. */
    wt->cb = NULL;
    pthread_mutex_unlock(&q->mu);
}

/* --- the worker side --------------------------------------------------------------------------------- */

static void on_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    uint64_t now = mono_us();
    while (!h2o_linklist_is_empty(messages)) {
        gg_admit_waiter_t *wt = H2O_STRUCT_FROM_MEMBER(gg_admit_waiter_t, msg.link, messages->next);
        h2o_linklist_unlink(&wt->msg.link);
        if (h2o_timeout_is_linked(&wt->timer))
            h2o_timeout_unlink(&wt->timer);
        if (wt->cb == NULL) {
            gg_admit_release(wt->slot, wt->t, 0);
        } else {
            gg_admit_result_t r = {.reject = GG_REJECT_NONE, .waited_us = now - wt->t_enq_us};
            wt->cb(wt->ctx, &r);
        }
        free(wt);
    }
}

static void on_timeout(h2o_timeout_entry_t *e)
{
    gg_admit_waiter_t *wt = H2O_STRUCT_FROM_MEMBER(gg_admit_waiter_t, timer, e);
    struct bq *q = &bqs[wt->slot];
    gg_admit_result_t r = {.reject = GG_REJECT_NONE};
    pthread_mutex_lock(&q->mu);
    if (wt->state != W_QUEUED) {
        pthread_mutex_unlock(&q->mu); /* granted just now: the message resumes it */
        return;
    }
    dequeue(q, wt);
    refusal(q, wt->slot, wt->t, 0, &r);
    pthread_mutex_unlock(&q->mu);
    r.waited_us = mono_us() - wt->t_enq_us;
    wt->cb(wt->ctx, &r);
    free(wt);
}

void gg_admission_worker_start(struct gg_worker *w)
{
    h2o_multithread_register_receiver(w->ctx.queue, &w->admit_receiver, on_messages);
    h2o_timeout_init(w->loop, &w->admit_timeout, conf.queue_ms);
}

void gg_admission_worker_stop(struct gg_worker *w)
{
    h2o_multithread_unregister_receiver(w->ctx.queue, &w->admit_receiver);
}

unsigned gg_admission_queue_depth(int slot)
{
    if (slot < 0 || slot >= GG_MAX_BACKENDS || bqs[slot].tq == NULL)
        return 0;
    pthread_mutex_lock(&bqs[slot].mu);
    unsigned n = bqs[slot].queued;
    pthread_mutex_unlock(&bqs[slot].mu);
    return n;
}

static void render(gg_buf_t *out)
{
    gg_buf_t l = GG_BUF_INIT;
    gg_buf_appendf(out, "# HELP gridgate_queue_depth Requests waiting for a slot of the backend.\n"
                        "# TYPE gridgate_queue_depth gauge\n");
    unsigned hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
    for (unsigned s = 0; s < hwm; s++) {
        if (atomic_load(&gg_backends[s].state) == GG_BACKEND_FREE)
            continue;
        gg_buf_reset(&l);
        gg_metrics_label(&l, "backend", gg_backends[s].name);
        gg_buf_appendf(out, "gridgate_queue_depth{%s} %u\n", l.base, gg_admission_queue_depth((int)s));
    }
    gg_buf_appendf(out, "# HELP gridgate_tenant_inflight Requests of the tenant holding a backend slot.\n"
                        "# TYPE gridgate_tenant_inflight gauge\n");
    for (size_t i = 0; i < gg_tenants_count(); i++) {
        gg_buf_reset(&l);
        gg_metrics_label(&l, "tenant", gg_tenant_at(i)->name);
        gg_buf_appendf(out, "gridgate_tenant_inflight{%s} %u\n", l.base, atomic_load(&gg_tenant_at(i)->inflight));
    }
    gg_buf_appendf(out, "# HELP gridgate_tenant_queued Requests of the tenant waiting for admission.\n"
                        "# TYPE gridgate_tenant_queued gauge\n");
    for (size_t i = 0; i < gg_tenants_count(); i++) {
        gg_buf_reset(&l);
        gg_metrics_label(&l, "tenant", gg_tenant_at(i)->name);
        gg_buf_appendf(out, "gridgate_tenant_queued{%s} %u\n", l.base, atomic_load(&gg_tenant_at(i)->queued));
    }
    gg_buf_free(&l);
}
