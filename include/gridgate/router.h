/* Backend selection: which backend serves this request. Reads the published backend table and model
 * table lock-free; never writes them. */
#ifndef GG_ROUTER_H
#define GG_ROUTER_H

#include <stdint.h>

#include "gridgate/backend.h"

typedef struct gg_route_req {
    const uint64_t *served;  /* backends that serve the model [GG_BACKEND_WORDS] */
    const uint64_t *loaded;  /* ... and of those, which have it loaded now (NULL: do not prefer loaded ones) */
    const uint64_t *exclude; /* already tried for this request, or NULL */
    uint64_t affinity;       /* hash of X-Session-ID / OpenAI user; 0 = none */
} gg_route_req_t;

enum gg_route_result {
    GG_ROUTE_OK,
    GG_ROUTE_NO_BACKEND, /* the model is served somewhere, but no such backend is usable now */
};

/** Picks a backend slot for `r`; `rand` supplies the random numbers. Returns the slot or -1. */
int gg_route_pick(const gg_route_req_t *r, uint64_t (*rand)(void *), void *rand_ctx);

/** Load score of a backend (lower is better): occupancy of its capacity in per-mille plus KV pressure. */
uint32_t gg_route_load(const gg_backend_t *b);

/** Whether a backend in this state may take new requests. */
int gg_route_usable(const gg_backend_t *b);

/** 64-bit FNV-1a of a string, for affinity keys. */
uint64_t gg_route_hash(const char *s, size_t len);
#endif
