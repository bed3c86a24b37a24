/* Backend selection. Order of preference: backends that have the model loaded; among them the least
 * loaded by power-of-two-choices weighted by `weight`, with a random tie-break; an affine backend (session
 * hashing, so engine prefix caches are reused) wins unless it is saturated. When no backend has the model
 * loaded, one with free capacity is chosen, so a cold load lands on an idle engine.
 *
 * Everything a pick reads comes from the published view (gg_backend_view: the mmapped BPF `backends` array when the
 * kernel assist is on, a heap array otherwise): relaxed loads of single 32-bit fields, no syscall and no lock. The
 * per-slot generation counter is not checked: each field is whole, and a decision made on a mix of two adjacent
 * publications is as good as one made a moment earlier or later. */
#include "gridgate/router.h"

#include <stddef.h>

#define LOAD(v, field) __atomic_load_n(&(v)->field, __ATOMIC_RELAXED)

static int usable(const struct gg_bpf_backend *v)
{
    uint32_t s = LOAD(v, state);
    return s == GG_BACKEND_UP || s == GG_BACKEND_HALF_OPEN;
}

static uint32_t load_of(const struct gg_bpf_backend *v)
{
    uint32_t cap = LOAD(v, capacity);
    uint32_t busy = LOAD(v, inflight) + LOAD(v, engine_waiting);
    return busy * 1000 / (cap ? cap : 1) + LOAD(v, kv_permille) / 4;
}

static int has_room(const struct gg_bpf_backend *v)
{
    uint32_t cap = LOAD(v, capacity);
    return cap == 0 || LOAD(v, inflight) < cap;
}

int gg_route_usable(const gg_backend_t *b)
{
    return usable(&gg_backend_view[gg_backend_index(b)]);
}

uint32_t gg_route_load(const gg_backend_t *b)
{
    return load_of(&gg_backend_view[gg_backend_index(b)]);
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
static size_t collect(const struct gg_bpf_backend *view, const gg_route_req_t *r, const uint64_t *mask, int need_room, int *out,
                      uint32_t *weights, uint64_t *total_weight)
{
    size_t n = 0;
    *total_weight = 0;
    for (size_t w = 0; w < GG_BACKEND_WORDS; w++) {
        uint64_t bits = mask[w] & ~(r->exclude ? r->exclude[w] : 0);
        while (bits) {
            int slot = (int)(w * 64 + __builtin_ctzll(bits));
            bits &= bits - 1;
            const struct gg_bpf_backend *v = &view[slot];
            if (!usable(v) || (need_room && !has_room(v)))
                continue;
            uint32_t wt = LOAD(v, weight);
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
    const struct gg_bpf_backend *view = gg_backend_view;
    size_t n = r->loaded ? collect(view, r, r->loaded, 0, cand, weights, &total) : 0;
    if (n == 0) /* nobody has it loaded: prefer engines with room, so the cold load does not queue */
        n = collect(view, r, r->served, 1, cand, weights, &total);
    if (n == 0)
        n = collect(view, r, r->served, 0, cand, weights, &total);
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
        if (has_room(&view[cand[best]]))
            return cand[best];
    }

    size_t a = weighted_index(weights, n, total, rand(rand_ctx));
    size_t b = weighted_index(weights, n, total, rand(rand_ctx));
    if (a == b)
        b = (a + 1 + rand(rand_ctx) % (n - 1)) % n;
    uint32_t la = load_of(&view[cand[a]]), lb = load_of(&view[cand[b]]);
    if (la != lb)
        return la < lb ? cand[a] : cand[b];
    return rand(rand_ctx) & 1 ? cand[a] : cand[b];
}
