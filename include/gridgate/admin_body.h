/* The JSON bodies the admin API accepts, parsed by pure functions (no registry, no tenant table, no request):
 * the admin handlers call these and then apply what parsed, and tests/fuzz/admin_body.c calls the same ones.
 * Each parse returns 0 with *out filled (release it with the matching _free), or -EINVAL with err naming the
 * offending field ("body" when the body is not a JSON object) and a message for the 400. */
#ifndef GG_ADMIN_BODY_H
#define GG_ADMIN_BODY_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char field[32];
    char msg[256];
} gg_body_err_t;

/* Bits of gg_admin_limits_t.has: which limits the body set. */
enum {
    GG_LIM_WEIGHT = 1 << 0,
    GG_LIM_PRIORITY = 1 << 1,
    GG_LIM_MAX_INFLIGHT = 1 << 2,
    GG_LIM_MAX_QUEUE = 1 << 3,
    GG_LIM_RPS = 1 << 4,
    GG_LIM_BURST = 1 << 5,
    GG_LIM_TPM = 1 << 6,
};

/* A tenant's limits as a body sets them; only the fields in `has` were present. */
typedef struct {
    unsigned has;
    uint32_t weight, priority, max_inflight, max_queue, burst, tokens_per_min;
    double requests_per_s;
} gg_admin_limits_t;

/* POST /admin/v1/backends {url, name?, kind?, weight?, max_inflight?}. Strings point into doc. */
typedef struct {
    json_t *doc;
    const char *url, *name; /* name NULL: derived from the url by the registry */
    int kind;               /* enum gg_engine_kind (GG_ENGINE_UNKNOWN: probe) */
    uint32_t weight, max_inflight;
} gg_admin_backend_add_t;

/* POST /admin/v1/tenants {name, keys?, limits...}. Strings point into doc. */
typedef struct {
    json_t *doc;
    const char *name;
    const char **keys;
    size_t n_keys;
    gg_admin_limits_t limits;
} gg_admin_tenant_add_t;

int gg_admin_parse_backend_add(const char *body, size_t len, gg_admin_backend_add_t *out, gg_body_err_t *err);
void gg_admin_backend_add_free(gg_admin_backend_add_t *b);
/** POST /admin/v1/backends/NAME/weight {weight}: 1..1000, required. */
int gg_admin_parse_weight(const char *body, size_t len, uint32_t *weight, gg_body_err_t *err);
int gg_admin_parse_tenant_add(const char *body, size_t len, gg_admin_tenant_add_t *out, gg_body_err_t *err);
void gg_admin_tenant_add_free(gg_admin_tenant_add_t *t);
/** POST|PATCH /admin/v1/tenants/NAME {limits...}: unknown fields are refused. */
int gg_admin_parse_tenant_update(const char *body, size_t len, gg_admin_limits_t *out, gg_body_err_t *err);
/**
 * POST|DELETE /admin/v1/tenants/NAME/keys {key}: copies the key into out (outlen bytes). Adding needs a non-empty
 * key, and a "sha256:" key needs 64 hex digits; removing takes any string.
 */
int gg_admin_parse_tenant_key(const char *body, size_t len, int adding, char *out, size_t outlen, gg_body_err_t *err);
/**
 * POST /admin/v1/guard/{deny,allow,remove} {prefix, seconds?}: copies the prefix string (ADDR or ADDR/LEN; the guard
 * parses it) into prefix (prefixlen bytes). With_seconds (deny) also takes seconds 0..31536000 (0: until removed).
 */
int gg_admin_parse_guard(const char *body, size_t len, int with_seconds, char *prefix, size_t prefixlen, uint32_t *seconds,
                         gg_body_err_t *err);
#endif
