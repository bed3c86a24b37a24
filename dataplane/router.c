/* Backend selection. Order of preference: backends that have the model loaded; among them the least
 * loaded by power-of-two-choices weighted by `weight`, with a random tie-break; an affine backend (session
 * hashing, so engine prefix caches are reused) wins unless it is saturated. When no backend has the model
 * loaded, one with free capacity is chosen, so a cold load lands on an idle engine. */
#include "gridgate/router.h"

#include <stddef.h>

int gg_route_usable(const gg_backend_t *b)
{
    uint32_t s = atomic_load_explicit(&b->state, memory_order_relaxed);
    return s == GG_BACKEND_UP || s == GG_BACKEND_HALF_OPEN;
}

uint32_t gg_route_load(const gg_backend_t *b)
{
    uint32_t cap = atomic_load_explicit(&b->capacity, memory_order_relaxed);
    uint32_t busy =
        atomic_load_explicit(&b->inflight, memory_order_relaxed) + atomic_load_explicit(&b->engine_waiting, memory_order_relaxed);
    return busy * 1000 / (cap ? cap : 1) + atomic_load_explicit(&b->kv_permille, memory_order_relaxed) / 4;
}

static int has_room(const gg_backend_t *b)
{
    uint32_t cap = atomic_load_explicit(&b->capacity, memory_order_relaxed);
    return cap == 0 || atomic_load_explicit(&b->inflight, memory_order_relaxed) < cap;
}

uint64_t gg_route_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Collects candidate slots; returns how many. */
static size_t collect(const gg_route_req_t *r, const uint64_t *mask, int need_room, int *out, uint32_t *weights,
                      uint64_t *total_weight)
{
    size_t n = 0;
    *total_weight = 0;
    for (size_t w = 0; w < GG_BACKEND_WORDS; w++) {
        uint64_t bits = mask[w] & ~(r->exclude ? r->exclude[w] : 0);
        while (bits) {
            int slot = (int)(w * 64 + __builtin_ctzll(bits));
            bits &= bits - 1;
            const gg_backend_t *b = &gg_backends[slot];
            if (!gg_route_usable(b) || (need_room && !has_room(b)))
                continue;
            uint32_t wt = atomic_load_explicit(&b->weight, memory_order_relaxed);
            weights[n] = wt ? wt : 1;
            *total_weight += weights[n];
            out[n++] = slot;
        }
    }
    return n;
}

static size_t weighted_index(const uint32_t *weights, size_t n, uint64_t total, uint64_t rnd)
{
    uint64_t x = rnd % total;
    for (size_t i = 0; i < n; i++) {
        if (x < weights[i])
            return i;
        x -= weights[i];
    }
    return n - 1;
}

int gg_route_pick(const gg_route_req_t *r, uint64_t (*rand)(void *), void *rand_ctx)
{
    int cand[GG_MAX_BACKENDS];
    uint32_t weights[GG_MAX_BACKENDS];
    uint64_t total;
    size_t n = r->loaded ? collect(r, r->loaded, 0, cand, weights, &total) : 0;
    if (n == 0) /* nobody has it loaded: prefer engines with room, so the cold load does not queue */
        n = collect(r, r->served, 1, cand, weights, &total);
    if (n == 0)
        n = collect(r, r->served, 0, cand, weights, &total);
    if (n == 0)
        return -1;
    if (n == 1)
        return cand[0];

    if (r->affinity != 0) {
        /* Rendezvous hashing: the same key keeps its backend while the set changes little. */
        size_t best = 0;
        uint64_t best_score = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t s = mix(r->affinity ^ mix((uint64_t)cand[i] + 1)) / 1024 * weights[i];
            if (s >= best_score) {
                best_score = s;
                best = i;
            }
        }
        if (has_room(&gg_backends[cand[best]]))
            return cand[best];
    }

    size_t a = weighted_index(weights, n, total, rand(rand_ctx));
    size_t b = weighted_index(weights, n, total, rand(rand_ctx));
    if (a == b)
        b = (a + 1 + rand(rand_ctx) % (n - 1)) % n;
    uint32_t la = gg_route_load(&gg_backends[cand[a]]), lb = gg_route_load(&gg_backends[cand[b]]);
    if (la != lb)
        return la < lb ? cand[a] : cand[b];
    return rand(rand_ctx) & 1 ? cand[a] : cand[b];
}
