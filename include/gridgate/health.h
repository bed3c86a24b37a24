/* Backend health: control threads probe every backend every interval_ms (+-10% jitter) through its adapter
 * (liveness + models + load in one poll), detect unknown kinds on the first answer, publish state, load and
 * the model table, and react within milliseconds to the data plane's passive failure reports.
 *
 * The state machine is a pure function on a virtual clock (gg_health_step):
 *   up --(passive failure, or fail_threshold failed probes)--> down
 *   down --(cooldown elapsed)--> half_open
 *   half_open --(recover_threshold successes: probe or real request)--> up
 *   half_open --(failure)--> down, cooldown doubled (capped by max_cooldown_ms)
 *   any --(engine says it is loading)--> loading --(probe ok)--> up, (fail_threshold failures)--> down
 *   draining is the operator's: it hides the health state until undrained; probes go on underneath.
 * A new backend starts down with its cooldown already elapsed, so its first probe is the half_open trial. */
#ifndef GG_HEALTH_H
#define GG_HEALTH_H
#include <stddef.h>
#include <stdint.h>

#include "gridgate/backend.h"
#include "gridgate/config.h"

typedef struct gg_health_params {
    uint32_t fail_threshold, recover_threshold, cooldown_ms, max_cooldown_ms;
} gg_health_params_t;

enum gg_health_event {
    GG_HEV_TICK,          /* time passed (checks the cooldown) */
    GG_HEV_PROBE_OK,      /* active probe answered */
    GG_HEV_PROBE_FAIL,    /* active probe failed */
    GG_HEV_PROBE_LOADING, /* engine answered "loading" */
    GG_HEV_PASSIVE_FAIL,  /* data plane saw a backend fault */
    GG_HEV_PASSIVE_OK,    /* data plane completed a request */
    GG_HEV_DRAIN,
    GG_HEV_UNDRAIN,
};

typedef struct gg_health_sm {
    uint32_t state;      /* health state: UP, DOWN, HALF_OPEN or LOADING */
    uint32_t draining;   /* operator drain on top */
    uint32_t fails;      /* consecutive failed probes */
    uint32_t oks;        /* consecutive successes in half_open */
    uint32_t trips;      /* failed half_open trials in a row (cooldown exponent) */
    uint64_t down_until; /* virtual ms when the cooldown ends */
} gg_health_sm_t;

/** A new backend's machine (DOWN, cooldown already over). */
void gg_health_sm_init(gg_health_sm_t *sm);
/** Applies one event at virtual time now_ms; returns the published state (DRAINING while drained). */
uint32_t gg_health_step(gg_health_sm_t *sm, const gg_health_params_t *p, enum gg_health_event ev, uint64_t now_ms);
/** The published state of a machine. */
static inline uint32_t gg_health_published(const gg_health_sm_t *sm)
{
    return sm->draining ? GG_BACKEND_DRAINING : sm->state;
}

/** Set by an owner outside health (registration): returns 1 while backend b must stay down whatever its probes
 * say (its agent stopped beating), writing why. Probes of a held backend count as failures. */
extern int (*gg_health_hold_hook)(const gg_backend_t *b, char *why, size_t whylen);

/** Starts the probe threads for the registry (adds cfg->backends first if not already present). 0 or -errno. */
int gg_health_start(const gg_config_t *cfg);
void gg_health_stop(void);
/** Wakes the threads to probe everything due now and re-check passive reports (tests, admin API). */
void gg_health_kick(void);
/** Probes every backend now (ignoring intervals, not cooldowns) and returns when that round is done or
 * timeout_ms passed. Returns 0, or -ETIMEDOUT. main() may call it before announcing it listens. */
int gg_health_probe_all(int timeout_ms);
#endif
