/* Tests dataplane/ratelimit.c on a virtual clock: request and token bucket arithmetic, all-or-nothing
 * charges, usage correction, Retry-After rounding, and that concurrent takers never overshoot a bucket. */
#include "gridgate/ratelimit.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>

static void test_request_bucket(void)
{
    gg_ratelimit_t rl;
    uint64_t retry = 0, t = 1000000;
    gg_ratelimit_init(&rl, 2, 3, 0, t); /* 2/s, burst 3 */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(gg_ratelimit_take(&rl, 1000000, t, &retry), GG_RL_OK); /* no token limit: any charge */
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 1, t, &retry), GG_RL_REQUESTS);
    CHECK_EQ_INT(retry, 500000); /* one request refills in 1/2 s */
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 1, t + 499999, &retry), GG_RL_REQUESTS);
    CHECK_EQ_INT(retry, 1);
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 1, t + 500000, &retry), GG_RL_OK);
    /* a long pause refills only up to the burst */
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 0, t + 100000000), 3);
    /* a clock that goes back does not take anything away nor give */
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 0, t), 3);
    gg_ratelimit_dispose(&rl);

    gg_ratelimit_init(&rl, 0.5, 0, 0, t); /* burst 0 means max(1, rate) */
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 1, t, &retry), GG_RL_OK);
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 1, t, &retry), GG_RL_REQUESTS);
    CHECK_EQ_INT(retry, 2000000);
    gg_ratelimit_dispose(&rl);

    gg_ratelimit_init(&rl, 0, 0, 0, t); /* unlimited */
    for (int i = 0; i < 1000; i++)
        CHECK_EQ_INT(gg_ratelimit_take(&rl, 1 << 20, t, &retry), GG_RL_OK);
    gg_ratelimit_dispose(&rl);
}

static void test_token_bucket(void)
{
    gg_ratelimit_t rl;
    uint64_t retry = 0, t = 0;
    gg_ratelimit_init(&rl, 0, 0, 600, t); /* 600 tokens/min = 10/s, holds 600 */
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 500, t, &retry), GG_RL_OK);
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 200, t, &retry), GG_RL_TOKENS);
    CHECK_EQ_INT(retry, 10000000); /* 100 missing at 10/s */
    CHECK_EQ_INT(gg_retry_after_s(retry), 10);
    /* the estimate was 500, the request used 120: 380 come back */
    gg_ratelimit_correct(&rl, 120 - 500, t);
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 1, t), 480);
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 200, t, &retry), GG_RL_OK);
    /* used more than charged: the bucket goes below zero and takes that long to recover */
    gg_ratelimit_correct(&rl, 380, t);
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 1, t), -100);
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 1, t, &retry), GG_RL_TOKENS);
    CHECK_EQ_INT(retry, 10100000);
    /* refunds never fill above the size */
    gg_ratelimit_correct(&rl, -100000, t);
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 1, t), 600);
    /* a charge larger than the bucket can never pass */
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 601, t, &retry), GG_RL_TOKENS);
    CHECK(retry == UINT64_MAX);
    CHECK_EQ_INT(gg_retry_after_s(retry), 86400);
    gg_ratelimit_dispose(&rl);
}

static void test_both_or_neither(void)
{
    gg_ratelimit_t rl;
    uint64_t retry = 0;
    gg_ratelimit_init(&rl, 1, 2, 60, 0); /* 2 requests; 60 tokens */
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 100, 0, &retry), GG_RL_TOKENS);
    /* the refused request took no request from its bucket */
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 0, 0), 2);
    CHECK_EQ_INT(gg_ratelimit_take(&rl, 50, 0, &retry), GG_RL_OK);
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 0, 0), 1);
    CHECK_EQ_INT((int)gg_ratelimit_level(&rl, 1, 0), 10);
    gg_ratelimit_dispose(&rl);
}

static void test_retry_after_rounding(void)
{
    CHECK_EQ_INT(gg_retry_after_s(0), 1);
    CHECK_EQ_INT(gg_retry_after_s(1), 1);
    CHECK_EQ_INT(gg_retry_after_s(1000000), 1);
    CHECK_EQ_INT(gg_retry_after_s(1000001), 2);
    CHECK_EQ_INT(gg_retry_after_s(59500000), 60);
}

static gg_ratelimit_t shared;
static atomic_int admitted;

static void *taker(void *arg)
{
    uint64_t retry;
    for (int i = 0; i < 5000; i++)
        if (gg_ratelimit_take(&shared, 3, 0, &retry) == GG_RL_OK)
            atomic_fetch_add(&admitted, 1);
    return NULL;
}

static void test_concurrent_no_overshoot(void)
{
    /* 4 threads x 5000 tries against 100 requests and 270 tokens (90 requests of 3): exactly 90 pass. */
    gg_ratelimit_init(&shared, 0.000001, 100, 270, 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, taker, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(atomic_load(&admitted), 90);
    gg_ratelimit_dispose(&shared);
}

TEST_MAIN(test_request_bucket, test_token_bucket, test_both_or_neither, test_retry_after_rounding, test_concurrent_no_overshoot)
