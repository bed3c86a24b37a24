/* Token buckets (requests/s and tokens/min) per tenant; see ratelimit.h. */
#include "gridgate/ratelimit.h"

#include <math.h>

/* Levels are doubles refilled in small steps; this much rounding error never decides a request. */
#define EPS 1e-6

static void bucket_init(gg_bucket_t *b, double per_s, double size, uint64_t now_us)
{
    b->rate_per_us = per_s / 1e6;
    b->size = size;
    b->level = size;
    b->t_us = now_us;
}

static void refill(gg_bucket_t *b, uint64_t now_us)
{
    if (now_us > b->t_us) {
        b->level += (now_us - b->t_us) * b->rate_per_us;
        if (b->level > b->size)
            b->level = b->size;
    }
    /* A clock that went back (another worker's older timestamp) never takes tokens away. */
    if (now_us > b->t_us)
        b->t_us = now_us;
}

/* When `b` will hold `want`. */
static uint64_t wait_us(const gg_bucket_t *b, double want)
{
    if (want > b->size)
        return UINT64_MAX;
    double us = ceil((want - b->level) / b->rate_per_us - EPS);
    return us < 1 ? 1 : (uint64_t)us;
}

void gg_ratelimit_init(gg_ratelimit_t *rl, double requests_per_s, uint32_t burst, uint64_t tokens_per_min, uint64_t now_us)
{
    pthread_mutex_init(&rl->mu, NULL);
    double rburst = burst ? burst : (requests_per_s > 1 ? requests_per_s : 1);
    bucket_init(&rl->req, requests_per_s, requests_per_s > 0 ? rburst : 0, now_us);
    bucket_init(&rl->tok, tokens_per_min / 60.0, (double)tokens_per_min, now_us);
}

void gg_ratelimit_dispose(gg_ratelimit_t *rl)
{
    pthread_mutex_destroy(&rl->mu);
}

int gg_ratelimit_take(gg_ratelimit_t *rl, uint64_t tokens, uint64_t now_us, uint64_t *retry_us)
{
    int rc = GG_RL_OK;
    pthread_mutex_lock(&rl->mu);
    int has_req = rl->req.rate_per_us > 0, has_tok = rl->tok.rate_per_us > 0;
    if (has_req)
        refill(&rl->req, now_us);
    if (has_tok)
        refill(&rl->tok, now_us);
    if (has_req && rl->req.level < 1 - EPS) {
        *retry_us = wait_us(&rl->req, 1);
        rc = GG_RL_REQUESTS;
    } else if (has_tok && rl->tok.level < (double)tokens - EPS) {
        *retry_us = wait_us(&rl->tok, (double)tokens);
        rc = GG_RL_TOKENS;
    } else {
        if (has_req)
            rl->req.level -= 1;
        if (has_tok)
            rl->tok.level -= (double)tokens;
    }
    pthread_mutex_unlock(&rl->mu);
    return rc;
}

void gg_ratelimit_correct(gg_ratelimit_t *rl, int64_t delta_tokens, uint64_t now_us)
{
    if (rl->tok.rate_per_us <= 0 || delta_tokens == 0)
        return;
    pthread_mutex_lock(&rl->mu);
    refill(&rl->tok, now_us);
    rl->tok.level -= (double)delta_tokens;
    if (rl->tok.level > rl->tok.size)
        rl->tok.level = rl->tok.size;
    pthread_mutex_unlock(&rl->mu);
}

double gg_ratelimit_level(gg_ratelimit_t *rl, int tokens, uint64_t now_us)
{
    pthread_mutex_lock(&rl->mu);
    gg_bucket_t *b = tokens ? &rl->tok : &rl->req;
    if (b->rate_per_us > 0)
        refill(b, now_us);
    double v = b->level;
    pthread_mutex_unlock(&rl->mu);
    return v;
}

unsigned gg_retry_after_s(uint64_t us)
{
    if (us >= 86400ull * 1000000)
        return 86400;
    uint64_t s = (us + 999999) / 1000000;
    return s < 1 ? 1 : (unsigned)s;
}
