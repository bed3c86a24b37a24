/* Token buckets for one tenant: requests per second with a burst, and tokens per minute. Both buckets are
 * checked and charged together under one small lock, so concurrent requests can never take more than the
 * buckets hold (no check-then-charge race). Time is passed in by the caller (microseconds, any monotonic
 * origin), so the arithmetic is testable on a virtual clock. */
#ifndef GG_RATELIMIT_H
#define GG_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

typedef struct gg_bucket {
    double rate_per_us; /* refill; 0 = this bucket is off (unlimited) */
    double size;        /* the most it holds */
    double level;       /* what it holds now; may go below 0 after a usage correction */
    uint64_t t_us;      /* when level was last brought up to date */
} gg_bucket_t;

typedef struct gg_ratelimit {
    pthread_mutex_t mu;
    gg_bucket_t req, tok;
} gg_ratelimit_t;

enum {
    GG_RL_OK = 0,
    GG_RL_REQUESTS = 1, /* the request bucket is empty: 429 rate_limit_exceeded */
    GG_RL_TOKENS = 2,   /* the token bucket cannot pay the charge: 429 insufficient_quota */
};

/** requests_per_s 0 = no request limit; burst 0 = max(1, requests_per_s); tokens_per_min 0 = no token limit
 * (the token bucket holds one minute's worth). Both buckets start full. */
void gg_ratelimit_init(gg_ratelimit_t *rl, double requests_per_s, uint32_t burst, uint64_t tokens_per_min, uint64_t now_us);
void gg_ratelimit_dispose(gg_ratelimit_t *rl);
/** Takes one request and `tokens` tokens, both or neither. Returns GG_RL_OK, or GG_RL_REQUESTS / GG_RL_TOKENS
 * with *retry_us set to when the bucket that said no will hold enough (UINT64_MAX: never, the charge is
 * larger than the bucket). */
int gg_ratelimit_take(gg_ratelimit_t *rl, uint64_t tokens, uint64_t now_us, uint64_t *retry_us);
/** Corrects the token charge once the real usage is known: delta > 0 takes more, < 0 gives back (never above
 * the bucket's size). */
void gg_ratelimit_correct(gg_ratelimit_t *rl, int64_t delta_tokens, uint64_t now_us);
/** What a bucket holds at now_us (tests, metrics). */
double gg_ratelimit_level(gg_ratelimit_t *rl, int tokens, uint64_t now_us);
/** Whole seconds for a Retry-After header: ceil(us / 1e6), at least 1, at most 86400. */
unsigned gg_retry_after_s(uint64_t us);
#endif
