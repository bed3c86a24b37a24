/* Tenants: who a request belongs to, from `Authorization: Bearer KEY` (keys kept as SHA-256 digests and
 * compared in constant time), or from `X-Tenant-ID` where the config trusts it, else tenant "default".
 * The table is built from the config before the workers start; the admin API may add tenants and add or
 * remove keys while workers read it without locks. Tenants live in GG_MAX_TENANTS fixed slots that are
 * never moved or freed while running (a slot is filled, then published by a release-store of the count);
 * the keys are one immutable snapshot swapped atomically, a replaced one freed GG_TENANT_KEYS_GRACE_MS
 * later. Only one thread (the admin thread) changes the table at a time. */
#ifndef GG_TENANT_H
#define GG_TENANT_H

#include <h2o.h>
#include <stdatomic.h>
#include <stdint.h>

#include "gridgate/config.h"
#include "gridgate/ratelimit.h"
#include "gridgate/reqinfo.h"

#define GG_TENANT_NAME_MAX 64
#define GG_MAX_TENANTS 256
/* Output tokens charged at admission when the request sets no max_tokens. */
#define GG_TENANT_DEFAULT_MAX_TOKENS 256
/* A worker holds a key snapshot only inside gg_tenant_by_key(); this is far longer than that. */
#define GG_TENANT_KEYS_GRACE_MS 5000

typedef struct gg_tenant {
    char name[GG_TENANT_NAME_MAX];
    unsigned idx;
    uint32_t weight, priority, max_inflight, max_queue;
    _Atomic size_t n_keys; /* how many keys of the current snapshot are this tenant's */
    gg_ratelimit_t rl;
    _Atomic uint32_t inflight; /* holding a backend slot, over all backends */
    _Atomic uint32_t queued;   /* waiting for admission, over all backends */
    /* counted by gg_tenant_record, once per finished request (the `tenants` BPF map publishes them) */
    _Atomic uint64_t n_requests, n_admitted, n_rejected[8] /* by enum gg_reject */, n_tokens_in, n_tokens_out;
} gg_tenant_t;

/** Builds the table from cfg->tenants (plus "default" when the config has none of that name).
 * Keys are "sha256:HEX" (64 hex digits) or the key itself. 0 or -EINVAL (bad digest) / -ENOMEM. */
int gg_tenants_init(const gg_config_t *cfg, char *err, size_t errlen);
void gg_tenants_free(void);
size_t gg_tenants_count(void);
gg_tenant_t *gg_tenant_at(size_t i);
gg_tenant_t *gg_tenant_find(const char *name);
/** Whether any tenant has (or had, since start) keys: then requests without a known key are refused.
 * Removing the last key does not open the gateway to anonymous callers. */
int gg_tenants_require_key(void);

/** Adds a tenant live (admin thread). 0, -EEXIST (name taken), -ENOSPC (GG_MAX_TENANTS), -EINVAL (name
 * empty, too long or not [A-Za-z0-9._-]). *out is the new tenant. */
int gg_tenant_add(const char *name, uint32_t weight, uint32_t priority, uint32_t max_inflight, uint32_t max_queue,
                  double requests_per_s, uint32_t burst, uint64_t tokens_per_min, gg_tenant_t **out);
/** Adds key (plain or "sha256:HEX") to tenant t live: it authenticates on the next request.
 * 0, -EEXIST (some tenant has it), -EINVAL (bad digest), -ENOMEM. */
int gg_tenant_key_add(gg_tenant_t *t, const char *key);
/** Removes key from tenant t live: 0 or -ENOENT (t has no such key). */
int gg_tenant_key_remove(gg_tenant_t *t, const char *key);

/** Finds the tenant for a bearer key (constant time over every key of every tenant); NULL if unknown. */
gg_tenant_t *gg_tenant_by_key(const char *key, size_t len);
/**
 * Who sends `req`. Returns the tenant, or NULL when the request must be refused with 401 (a key is
 * required and missing or unknown).
 */
gg_tenant_t *gg_tenant_identify(h2o_req_t *req);
/** Answers 401 in dialect d (OpenAI invalid_api_key / Ollama {"error"}), with WWW-Authenticate. */
void gg_tenant_respond_unauthorized(h2o_req_t *req, enum gg_dialect d);

/** Why an admission was refused. */
enum gg_reject {
    GG_REJECT_NONE,
    GG_REJECT_RATE,       /* request bucket empty: 429 rate_limit_exceeded */
    GG_REJECT_QUOTA,      /* token bucket cannot pay: 429 insufficient_quota, x-should-retry: false */
    GG_REJECT_QUEUE_FULL, /* the tenant's own queue bound: 429 rate_limit_exceeded */
    GG_REJECT_SHARE,      /* queue wait timed out while the tenant is over its share: 429 */
    GG_REJECT_OVERLOADED, /* gateway-wide queue bound, or timed out within its share: 503 */
    GG_REJECT_COUNT
};
const char *gg_reject_name(enum gg_reject r); /* "rate_limit", "quota", "queue_full", "over_share", "overloaded" */
/** Answers a refused admission in dialect d with its status, body and headers (Retry-After = retry_s). */
void gg_tenant_respond_reject(h2o_req_t *req, enum gg_dialect d, enum gg_reject r, unsigned retry_s);

/** Registers the per-tenant metrics families (once). */
void gg_tenant_metrics_init(void);
/** Counts one finished request of tenant t: outcome from status/reject, queue wait (if it waited), TTFT
 * (0: none), tokens in and out. */
void gg_tenant_record(const gg_tenant_t *t, int status, enum gg_reject rj, uint64_t queue_wait_us, uint64_t ttft_us, long tin,
                      long tout);
/** A tenant's counters and bucket levels at one moment (control publishes them into the `tenants` map). */
typedef struct gg_tenant_counts {
    uint64_t requests, admitted, rejected[GG_REJECT_COUNT], tokens_in, tokens_out;
    double request_level, token_level; /* what each bucket holds now; 0 when it is off */
    int request_limited, token_limited;
} gg_tenant_counts_t;
void gg_tenant_counts(gg_tenant_t *t, gg_tenant_counts_t *out);
/** Estimated tokens a request costs at admission: prompt estimate + max_tokens (or the default). */
uint32_t gg_tenant_cost(const gg_reqinfo_t *ri);

/** Parses "A.B.C.D/N", "IPv6/N" or a bare address into a network + prefix; 0 or -EINVAL. */
typedef struct gg_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
} gg_cidr_t;
int gg_cidr_parse(const char *s, gg_cidr_t *out);
/** Whether sa (IPv4, IPv6 or v4-mapped IPv6) is inside c. */
int gg_cidr_match(const gg_cidr_t *c, const struct sockaddr *sa);
#endif
