/* Admission: the queue in front of every backend.
 *
 * A backend takes at most `capacity` requests at once (configured, or derived by control from the engine).
 * A request that finds no free slot waits in that backend's queue. Freed slots go to waiting requests by
 * strict priority first, then deficit round robin across tenants with the quantum counted in estimated
 * tokens (prompt estimate + max_tokens), weighted by the tenant's weight. The scheduler is work-conserving:
 * a slot is never left idle while anyone eligible waits, whoever that is.
 *
 * The queue is per backend, not per model: capacity and the engine's own FIFO belong to a backend, and all
 * models on it compete for the same slots, so fairness across tenants must be decided there. The router
 * picks the backend first (least loaded of those serving the model); a request then waits for that one.
 *
 * On batching engines (vLLM, SGLang) the cap is a latency knee, not a hard limit: a tenant below its
 * weighted share may take up to cap/2 (at least 1) slots beyond it, so a quiet tenant does not wait for a
 * flooder's stream to end. Engines whose cap is a hard slot count (llama.cpp, Ollama, ...) get no such burst.
 *
 * Threads: any worker may free a slot. The request chosen to take it is resumed on its own worker through
 * that worker's multithread receiver. Each backend queue has one mutex, held for list and counter updates
 * only; nothing is sent, allocated or logged under it. */
#ifndef GG_ADMISSION_H
#define GG_ADMISSION_H

#include <h2o.h>
#include <stdint.h>

#include "gridgate/tenant.h"

struct gg_worker;

typedef struct gg_admit_result {
    enum gg_reject reject; /* GG_REJECT_NONE: admitted, the slot is held */
    unsigned retry_after_s;
    uint64_t waited_us;
} gg_admit_result_t;

typedef void (*gg_admit_cb)(void *ctx, const gg_admit_result_t *r);
typedef struct gg_admit_waiter gg_admit_waiter_t;

typedef struct gg_admission_config {
    uint32_t queue_ms;  /* longest wait in a queue (0: never wait) */
    uint32_t max_queue; /* requests waiting over all backends and tenants */
    uint32_t quantum;   /* DRR quantum in estimated tokens per unit of weight */
} gg_admission_config_t;

/** Call once after gg_tenants_init and before the workers start. */
void gg_admission_init(const gg_admission_config_t *cfg);
void gg_admission_free(void);
/** Per worker: the receiver for resumed requests and the queue timer. Called by the server. */
void gg_admission_worker_start(struct gg_worker *w);
void gg_admission_worker_stop(struct gg_worker *w);

/**
 * Asks for a slot on backend `slot` for tenant `t`, charging `cost` estimated tokens to its DRR deficit.
 * Returns 0 with r filled: admitted now (r->reject NONE; the slot is held), or refused (r->reject set).
 * Returns 1 when the request waits: *wp is its ticket and `cb(ctx, result)` is called later on worker `w`'s
 * loop, exactly once, unless gg_admit_cancel() is called first. w NULL (tests): cb runs on whichever thread
 * frees the slot, and there is no queue timer.
 */
int gg_admit(struct gg_worker *w, int slot, gg_tenant_t *t, uint32_t cost, gg_admit_cb cb, void *ctx, gg_admit_waiter_t **wp,
             gg_admit_result_t *r);
/** The waiting request is gone (client left): it leaves the queue, or gives back a slot it was just granted.
 * Must be called on the waiter's worker. cb is not called afterwards. */
void gg_admit_cancel(gg_admit_waiter_t *wt);
/** Gives back a slot taken through gg_admit after holding it held_us (0: unknown; feeds the Retry-After
 * estimate); the next waiting request (if any) gets it. */
void gg_admit_release(int slot, gg_tenant_t *t, uint64_t held_us);

/** Requests waiting for a backend (metrics, tests). */
unsigned gg_admission_queue_depth(int slot);
/** Retry-After for a request refused at a queue: the time for `ahead + 1` requests to pass through
 * `slots` slots when one takes avg_service_us: ceil((ahead + 1) * avg / slots), in whole seconds, >= 1. */
unsigned gg_admission_retry_after(unsigned ahead, unsigned slots, uint64_t avg_service_us);
#endif
