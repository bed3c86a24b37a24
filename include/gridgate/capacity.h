/* The derived concurrency cap of a batching engine (vLLM, SGLang) that has no configured max_inflight.
 *
 * A pure function on a virtual clock (gg_cap_step), fed once per health poll with what control can see:
 * the gateway's in-flight count to the backend, the engine's running/waiting counts and the TTFT the data
 * plane observed since the previous poll (dispatch to first token). TTFT is kept per concurrency level
 * (EWMA buckets); the baseline is the lowest TTFT of a level below the one being judged.
 *   - decrease: the engine's own queue forms (waiting > 0) -> cap = what it runs at once; or TTFT at level L
 *     reaches rise x baseline -> cap = min(cap, L) - 1. Either needs `confirm` bad windows in a row, and sets
 *     a ceiling (the bad level) that is not probed again for hold_ms (doubling on each failed re-probe).
 *   - increase: +1 after `grow_after` good windows in a row during which the cap was binding (the gateway
 *     had cap requests in flight), i.e. TTFT stayed flat where the cap limited the traffic.
 * Bounded to [min_cap, max_cap]; a window with too few TTFT observations gives no TTFT verdict. */
#ifndef GG_CAPACITY_H
#define GG_CAPACITY_H
#include <stdint.h>

#define GG_CAP_LEVELS 256 /* concurrency levels with their own TTFT bucket (higher levels share the last) */

typedef struct gg_cap_params {
    uint32_t min_cap, max_cap;     /* bounds (0 -> 1 and GG_CAP_LEVELS) */
    uint32_t min_obs;              /* TTFT observations a window needs for a verdict (0 -> 3) */
    uint32_t rise_permille;        /* TTFT this far above the baseline is a rise (0 -> 2000, i.e. 2x) */
    uint32_t min_rise_us;          /* ...and at least this much higher (0 -> 25 ms): below it is host noise */
    uint32_t confirm;              /* bad windows in a row before a decrease (0 -> 2) */
    uint32_t grow_after;           /* good binding windows in a row before an increase (0 -> 3) */
    uint32_t hold_ms, max_hold_ms; /* ceiling hold after a decrease, doubled per failed re-probe (0 -> 10 s, 160 s) */
} gg_cap_params_t;

/** What one health poll saw. */
typedef struct gg_cap_sample {
    uint32_t inflight;         /* gateway requests in flight to the backend at the poll */
    int has_load;              /* running/waiting are known */
    uint32_t running, waiting; /* the engine's report */
    uint64_t ttft_sum_us;      /* TTFT observed since the previous sample */
    uint32_t ttft_obs;
} gg_cap_sample_t;

typedef struct gg_cap_state {
    uint32_t cap;
    uint32_t ceiling;          /* lowest level found bad (0 = none) */
    uint64_t ceiling_until_ms; /* no probing at or above the ceiling before this */
    uint32_t hold_ms;          /* current hold (doubles on a failed re-probe) */
    uint32_t good, bad;        /* windows in a row */
    uint32_t level;            /* highest concurrency seen in the open window */
    uint64_t acc_sum_us;       /* TTFT of the open window */
    uint32_t acc_obs;
    struct {
        uint32_t ewma_us, n;
    } bucket[GG_CAP_LEVELS + 1]; /* index = concurrency level (1..GG_CAP_LEVELS) */
} gg_cap_state_t;

/** A fresh estimator starting at `initial` (clamped to the bounds). */
void gg_cap_init(gg_cap_state_t *s, const gg_cap_params_t *p, uint32_t initial);
/** Feeds one poll at virtual time now_ms; returns the cap to publish. */
uint32_t gg_cap_step(gg_cap_state_t *s, const gg_cap_params_t *p, const gg_cap_sample_t *x, uint64_t now_ms);
#endif
