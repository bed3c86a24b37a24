/* Tests control/capacity.c: the derived cap of a batching engine on a virtual clock — the engine's queue
 * pulls the cap down to what it runs, a TTFT rise pulls it below the rising level, flat TTFT while binding
 * raises it, the ceiling hold and its backoff, noise and thin windows, and the bounds. */
#include "gridgate/capacity.h"
#include "test.h"

static const gg_cap_params_t P = {.min_cap = 1,
                                  .max_cap = 16,
                                  .min_obs = 3,
                                  .rise_permille = 2000,
                                  .confirm = 2,
                                  .grow_after = 3,
                                  .hold_ms = 10000,
                                  .max_hold_ms = 40000};

/* One poll with `n` TTFT observations of `ttft_us` each. */
static uint32_t poll(gg_cap_state_t *s, uint32_t inflight, uint32_t running, uint32_t waiting, uint32_t n, uint32_t ttft_us,
                     uint64_t now)
{
    gg_cap_sample_t x = {.inflight = inflight,
                         .has_load = 1,
                         .running = running,
                         .waiting = waiting,
                         .ttft_sum_us = (uint64_t)n * ttft_us,
                         .ttft_obs = n};
    return gg_cap_step(s, &P, &x, now);
}

/* A simulated engine that runs `seqs` at once: TTFT is flat below that and jumps once requests queue. */
static uint32_t engine_poll(gg_cap_state_t *s, uint32_t seqs, uint32_t offered, uint32_t noise, uint64_t now)
{
    uint32_t sent = offered < s->cap ? offered : s->cap;
    uint32_t run = sent < seqs ? sent : seqs, wait = sent - run;
    uint32_t ttft = 50000 + noise + (wait ? 400000 : 0);
    return poll(s, sent, run, wait, 5, ttft, now);
}

static void test_init_and_bounds(void)
{
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 0);
    CHECK_EQ_INT(s.cap, 1);
    gg_cap_init(&s, &P, 100);
    CHECK_EQ_INT(s.cap, 16);
    /* defaults for zeroed params */
    gg_cap_params_t z = {0};
    gg_cap_init(&s, &z, 8);
    CHECK_EQ_INT(s.cap, 8);
    gg_cap_init(&s, &z, 1000);
    CHECK_EQ_INT(s.cap, GG_CAP_LEVELS);
}

static void test_queue_pulls_cap_to_running(void)
{
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 8);
    /* one poll with a queue is not enough (transient) */
    CHECK_EQ_INT(poll(&s, 8, 4, 4, 0, 0, 0), 8);
    /* a good poll in between resets the count: still 8 */
    CHECK_EQ_INT(poll(&s, 8, 4, 0, 5, 50000, 100), 8);
    CHECK_EQ_INT(poll(&s, 8, 4, 4, 0, 0, 200), 8);
    /* the second in a row: down to what the engine runs at once */
    CHECK_EQ_INT(poll(&s, 8, 4, 4, 0, 0, 300), 4);
    CHECK_EQ_INT(s.ceiling, 5);
}

static void test_ttft_rise_without_engine_metrics(void)
{
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 6);
    gg_cap_sample_t x = {.inflight = 2, .ttft_sum_us = 3 * 40000, .ttft_obs = 3};
    CHECK_EQ_INT(gg_cap_step(&s, &P, &x, 0), 6); /* baseline at level 2, not binding */
    x.inflight = 6;
    x.ttft_sum_us = 3 * 70000; /* 1.75x: below the 2x rise */
    CHECK_EQ_INT(gg_cap_step(&s, &P, &x, 100), 6);
    x.ttft_sum_us = 3 * 100000; /* 2.5x: one bad window */
    CHECK_EQ_INT(gg_cap_step(&s, &P, &x, 200), 6);
    CHECK_EQ_INT(gg_cap_step(&s, &P, &x, 300), 5); /* confirmed: below the rising level */
    CHECK_EQ_INT(s.ceiling, 6);
}

static void test_small_ttft_noise_is_not_a_rise(void)
{
    /* found by the 30-minute soak: a 1 ms TTFT that triples on a busy host pulled a 32-seq engine's cap to 1 */
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 8);
    gg_cap_sample_t x = {.inflight = 2, .ttft_sum_us = 3 * 1000, .ttft_obs = 3};
    gg_cap_step(&s, &P, &x, 0);
    x.inflight = 8;
    x.ttft_sum_us = 3 * 4000; /* 4x, but only 3 ms more: flat and binding, so it may only grow */
    for (int i = 1; i <= 10; i++)
        CHECK(gg_cap_step(&s, &P, &x, (uint64_t)i * 100) >= 8);
    x.ttft_sum_us = 3 * 40000; /* 40x and 39 ms more: a rise */
    gg_cap_step(&s, &P, &x, 1100);
    CHECK_EQ_INT(gg_cap_step(&s, &P, &x, 1200), 7);
}

static void test_thin_windows_accumulate(void)
{
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 4);
    /* fewer than min_obs per poll: no verdict until three have been seen */
    CHECK_EQ_INT(poll(&s, 1, 1, 0, 1, 50000, 0), 4);
    CHECK_EQ_INT(s.bucket[1].n, 0);
    poll(&s, 1, 1, 0, 1, 50000, 100);
    poll(&s, 1, 1, 0, 1, 50000, 200);
    CHECK_EQ_INT(s.bucket[1].n, 1);
    CHECK_EQ_INT(s.bucket[1].ewma_us, 50000);
}

static void test_grows_while_flat_and_binding(void)
{
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 2);
    /* not binding (1 in flight of 2): never grows */
    for (int i = 0; i < 10; i++)
        poll(&s, 1, 1, 0, 5, 50000, (uint64_t)i * 100);
    CHECK_EQ_INT(s.cap, 2);
    /* binding and flat: +1 every grow_after windows, up to the bound */
    uint64_t t = 1000;
    for (int i = 0; i < 3; i++)
        poll(&s, s.cap, s.cap, 0, 5, 50000, t += 100);
    CHECK_EQ_INT(s.cap, 3);
    for (int i = 0; i < 100; i++)
        poll(&s, s.cap, s.cap, 0, 5, 50000, t += 100);
    CHECK_EQ_INT(s.cap, 16);
}

static void test_settles_at_engine_seqs_under_noise(void)
{
    /* From above and from below, with +-20% TTFT noise, a 4-sequence engine under a heavy offered load. */
    uint32_t starts[] = {1, 8, 16};
    for (int k = 0; k < 3; k++) {
        gg_cap_state_t s;
        gg_cap_init(&s, &P, starts[k]);
        uint64_t rng = 12345 + (uint64_t)k, t = 0;
        int at4 = 0, above5 = 0, below3 = 0;
        for (int i = 0; i < 2000; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t noise = (uint32_t)((rng >> 33) % 20000);
            engine_poll(&s, 4, 32, noise, t += 200);
            if (i >= 200) {
                at4 += s.cap == 4;
                above5 += s.cap > 5;
                below3 += s.cap < 3;
            }
        }
        CHECK_EQ_INT(above5, 0);
        CHECK_EQ_INT(below3, 0);
        CHECK(at4 > 1800 * 9 / 10); /* probes of 5 are short and back off */
        CHECK_EQ_INT(s.cap, 4);
    }
}

static void test_ceiling_hold_and_backoff(void)
{
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 5);
    uint64_t t = 0;
    engine_poll(&s, 4, 32, 0, t += 100);
    engine_poll(&s, 4, 32, 0, t += 100);
    CHECK_EQ_INT(s.cap, 4);
    CHECK_EQ_INT(s.hold_ms, 10000);
    uint64_t first_drop = t;
    /* flat at 4, but 5 is not re-probed before the hold is over */
    while (t < first_drop + 9900)
        engine_poll(&s, 4, 32, 0, t += 100);
    CHECK_EQ_INT(s.cap, 4);
    /* the engine's count running a poll ahead of the gateway's (5 seen, 4 let through) is no successful re-probe */
    poll(&s, 4, 4, 1, 5, 50000, t += 100);
    poll(&s, 4, 4, 0, 5, 50000, t += 100);
    CHECK_EQ_INT(s.ceiling, 5);
    CHECK_EQ_INT(s.cap, 4);
    /* after it: probe 5, bad again -> back to 4 with a doubled hold */
    while (s.cap == 4 && t < first_drop + 20000)
        engine_poll(&s, 4, 32, 0, t += 100);
    CHECK_EQ_INT(s.cap, 5);
    while (s.cap == 5 && t < first_drop + 30000)
        engine_poll(&s, 4, 32, 0, t += 100);
    CHECK_EQ_INT(s.cap, 4);
    CHECK_EQ_INT(s.hold_ms, 20000);
    /* the engine got bigger: the next re-probe holds and the cap climbs past the old ceiling */
    while (t < first_drop + 200000 && s.cap < 8)
        engine_poll(&s, 8, 32, 0, t += 100);
    CHECK_EQ_INT(s.cap, 8);
    CHECK_EQ_INT(s.ceiling, 0);
    /* the hold never exceeds max_hold_ms */
    gg_cap_init(&s, &P, 5);
    for (int i = 0; i < 2000; i++)
        engine_poll(&s, 4, 32, 0, t += 100);
    CHECK(s.hold_ms <= 40000);
    CHECK_EQ_INT(s.cap, 4);
}

static void test_light_load_keeps_cap(void)
{
    /* fewer requests than the cap, TTFT flat: nothing to learn, nothing changes */
    gg_cap_state_t s;
    gg_cap_init(&s, &P, 8);
    for (int i = 0; i < 100; i++)
        engine_poll(&s, 4, 2, 0, (uint64_t)i * 100);
    CHECK_EQ_INT(s.cap, 8);
}

TEST_MAIN(test_init_and_bounds, test_queue_pulls_cap_to_running, test_ttft_rise_without_engine_metrics,
          test_small_ttft_noise_is_not_a_rise, test_thin_windows_accumulate, test_grows_while_flat_and_binding,
          test_settles_at_engine_seqs_under_noise, test_ceiling_hold_and_backoff, test_light_load_keeps_cap)
