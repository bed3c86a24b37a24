/* The derived concurrency cap of batching engines: a pure AIMD-like estimator on a virtual clock (see
 * include/gridgate/capacity.h). Health feeds it once per poll and publishes what it returns. */
#include "gridgate/capacity.h"

#include <string.h>

static uint32_t or_default(uint32_t v, uint32_t d)
{
    return v ? v : d;
}

static uint32_t max_cap(const gg_cap_params_t *p)
{
    uint32_t m = or_default(p->max_cap, GG_CAP_LEVELS);
    return m < or_default(p->min_cap, 1) ? or_default(p->min_cap, 1) : m;
}

static uint32_t clamp(const gg_cap_params_t *p, uint32_t v)
{
    uint32_t lo = or_default(p->min_cap, 1), hi = max_cap(p);
    return v < lo ? lo : v > hi ? hi : v;
}

void gg_cap_init(gg_cap_state_t *s, const gg_cap_params_t *p, uint32_t initial)
{
    memset(s, 0, sizeof(*s));
    s->cap = clamp(p, initial);
}

/* The lowest TTFT of a level below `level` (0 = none known): TTFT cannot fall as concurrency grows, so the
 * minimum over lower levels is the least noisy "unloaded" reference. */
static uint64_t baseline(const gg_cap_state_t *s, uint32_t level)
{
    uint64_t best = 0;
    for (uint32_t l = 1; l < level && l <= GG_CAP_LEVELS; l++)
        if (s->bucket[l].n > 0 && (best == 0 || s->bucket[l].ewma_us < best))
            best = s->bucket[l].ewma_us;
    return best;
}

static void decrease(gg_cap_state_t *s, const gg_cap_params_t *p, uint32_t to, uint64_t now)
{
    uint32_t base = or_default(p->hold_ms, 10000), top = or_default(p->max_hold_ms, 160000);
    to = clamp(p, to);
    /* Bad again at the level we were re-probing: wait longer before the next try. */
    if (s->ceiling == to + 1 && s->hold_ms)
        s->hold_ms = s->hold_ms * 2 > top ? top : s->hold_ms * 2;
    else
        s->hold_ms = base;
    s->ceiling = to + 1;
    s->ceiling_until_ms = now + s->hold_ms;
    s->cap = to;
    s->good = s->bad = 0;
}

uint32_t gg_cap_step(gg_cap_state_t *s, const gg_cap_params_t *p, const gg_cap_sample_t *x, uint64_t now)
{
    uint32_t level = x->inflight;
    if (x->has_load && x->running + x->waiting > level)
        level = x->running + x->waiting;
    if (level > s->level)
        s->level = level;
    s->acc_sum_us += x->ttft_sum_us;
    s->acc_obs += x->ttft_obs;

    int queued = x->has_load && x->waiting > 0, high = 0, judged = 0;
    uint32_t at = s->level < 1 ? 1 : s->level > GG_CAP_LEVELS ? GG_CAP_LEVELS : s->level;
    if (s->acc_obs >= or_default(p->min_obs, 3)) {
        uint64_t avg = s->acc_sum_us / s->acc_obs, base = baseline(s, at);
        /* Doubling a 1 ms TTFT takes only a busy host; a batching engine's queue costs a decode step or more. */
        high =
            base > 0 && avg * 1000 >= base * or_default(p->rise_permille, 2000) && avg >= base + or_default(p->min_rise_us, 25000);
        judged = 1;
        uint32_t old = s->bucket[at].ewma_us;
        uint64_t e = s->bucket[at].n ? (old * 3ull + avg) / 4 : avg;
        s->bucket[at].ewma_us = e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
        s->bucket[at].n++;
        s->acc_sum_us = 0;
        s->acc_obs = 0;
        s->level = 0;
    }
    if (queued || high) {
        s->good = 0;
        if (++s->bad >= or_default(p->confirm, 2)) {
            uint32_t to = (s->cap < at ? s->cap : at) - 1;
            /* The engine's queue says how many it really runs at once: go there in one step. */
            if (queued && x->running > 0 && x->running < to)
                to = x->running;
            if (queued && x->running > 0 && x->running >= s->cap)
                to = s->cap - 1;
            decrease(s, p, to, now);
        }
        return s->cap;
    }
    if (!judged)
        return s->cap;
    s->bad = 0;
    if (at < s->cap) { /* not binding: no evidence the cap limits anything */
        s->good = 0;
        return s->cap;
    }
    /* The re-probe of the ceiling held: forget it. (Only when the cap let that many through: the engine's count
     * can run a poll ahead of the gateway's, e.g. a finished request it has not dropped yet.) */
    if (s->ceiling && s->cap >= s->ceiling && at >= s->ceiling) {
        s->ceiling = 0;
        s->hold_ms = 0;
    }
    if (++s->good >= or_default(p->grow_after, 3) && s->cap < max_cap(p)) {
        if (s->ceiling && s->cap + 1 >= s->ceiling && now < s->ceiling_until_ms)
            return s->cap;
        s->cap++;
        s->good = 0;
    }
    return s->cap;
}
