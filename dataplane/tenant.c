/* The tenant table and request identification; see tenant.h. */
#include "gridgate/tenant.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gridgate/guard.h"
#include "gridgate/metrics.h"
#include "gridgate/respond.h"

/* Every key of every tenant, one immutable snapshot: workers scan it whole, the admin thread swaps it. */
struct keyset {
    size_t n;
    struct keyent {
        uint8_t d[32]; /* SHA-256 of the key */
        uint32_t tenant;
    } e[];
};
struct retired {
    struct keyset *ks;
    uint64_t at_us;
    struct retired *next;
};
static const struct keyset empty_keys = {0};
static _Atomic(const struct keyset *) keys = &empty_keys;
static struct retired *retired_list;
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER; /* writers only; readers never lock */

static gg_tenant_t *tenants; /* GG_MAX_TENANTS slots, never moved while running */
static _Atomic size_t n_tenants;
static gg_tenant_t *default_tenant;
static _Atomic int require_key;
static int trust_header;
static gg_cidr_t *trusted;
static size_t n_trusted;

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sha256(const void *p, size_t len, uint8_t out[32])
{
    unsigned n = 32;
    EVP_Digest(p, len, out, &n, EVP_sha256(), NULL);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A configured key: "sha256:<64 hex>" is a digest, anything else the key itself. */
static int key_digest(const char *key, uint8_t out[32])
{
    if (strncmp(key, "sha256:", 7) != 0) {
        sha256(key, strlen(key), out);
        return 0;
    }
    const char *h = key + 7;
    if (strlen(h) != 64)
        return -EINVAL;
    for (int i = 0; i < 32; i++) {
        int a = hexval(h[2 * i]), b = hexval(h[2 * i + 1]);
        if (a < 0 || b < 0)
            return -EINVAL;
        out[i] = (uint8_t)(a << 4 | b);
    }
    return 0;
}

static void fill(gg_tenant_t *t, unsigned idx, const char *name, uint32_t weight, uint32_t priority, uint32_t max_inflight,
                 uint32_t max_queue)
{
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->idx = idx;
    t->weight = weight ? weight : 1;
    t->priority = priority;
    t->max_inflight = max_inflight;
    t->max_queue = max_queue;
}

static void retire(const struct keyset *old)
{
    if (old == &empty_keys)
        return;
    struct retired *r = malloc(sizeof(*r));
    if (r == NULL)
        abort(); /* freeing now could pull the table from under a worker */
    r->ks = (struct keyset *)old;
    r->at_us = mono_us();
    r->next = retired_list;
    retired_list = r;
}

/* Frees snapshots replaced more than the grace period ago (write_mu held); all of them when force. */
static void reclaim(int force)
{
    uint64_t now = mono_us();
    struct retired **pp = &retired_list;
    while (*pp != NULL) {
        struct retired *r = *pp;
        if (force || now - r->at_us >= (uint64_t)GG_TENANT_KEYS_GRACE_MS * 1000) {
            *pp = r->next;
            free(r->ks);
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* Publishes ks as the key table (write_mu held) and recounts each tenant's keys. */
static void publish(struct keyset *ks)
{
    size_t n = atomic_load(&n_tenants);
    for (size_t i = 0; i < n; i++) {
        size_t c = 0;
        for (size_t k = 0; k < ks->n; k++)
            c += ks->e[k].tenant == i;
        atomic_store(&tenants[i].n_keys, c);
    }
    if (ks->n > 0)
        atomic_store(&require_key, 1);
    retire(atomic_exchange_explicit(&keys, ks, memory_order_acq_rel));
    reclaim(0);
}

int gg_tenants_init(const gg_config_t *cfg, char *err, size_t errlen)
{
    gg_tenants_free();
    size_t n = cfg->n_tenants, has_default = 0, total_keys = 0;
    for (size_t i = 0; i < n; i++) {
        has_default |= strcmp(cfg->tenants[i].name, "default") == 0;
        total_keys += cfg->tenants[i].n_keys;
    }
    if (n + !has_default > GG_MAX_TENANTS) {
        snprintf(err, errlen, "tenants: more than %d", GG_MAX_TENANTS);
        return -EINVAL;
    }
    tenants = calloc(GG_MAX_TENANTS, sizeof(*tenants));
    struct keyset *ks = calloc(1, sizeof(*ks) + (total_keys ? total_keys : 1) * sizeof(ks->e[0]));
    if (tenants == NULL || ks == NULL) {
        free(tenants), free(ks);
        tenants = NULL;
        return -ENOMEM;
    }
    uint64_t now = mono_us();
    for (size_t i = 0; i < n; i++) {
        const gg_config_tenant_t *ct = &cfg->tenants[i];
        gg_tenant_t *t = &tenants[i];
        fill(t, (unsigned)i, ct->name, ct->weight, ct->priority, ct->max_inflight, ct->max_queue);
        gg_ratelimit_init(&t->rl, ct->rate_requests_per_s, ct->rate_burst, ct->rate_tokens_per_min, now);
        atomic_store(&n_tenants, i + 1);
        for (size_t k = 0; k < ct->n_keys; k++) {
            if (key_digest(ct->keys[k], ks->e[ks->n].d) != 0) {
                snprintf(err, errlen, "tenants[%zu].keys[%zu]: \"sha256:\" needs 64 hex digits", i, k);
                free(ks);
                gg_tenants_free();
                return -EINVAL;
            }
            ks->e[ks->n++].tenant = (uint32_t)i;
        }
        if (strcmp(ct->name, "default") == 0)
            default_tenant = t;
    }
    if (!has_default) {
        gg_tenant_t *t = &tenants[n];
        fill(t, (unsigned)n, "default", 1, 0, 0, 256);
        gg_ratelimit_init(&t->rl, 0, 0, 0, now);
        default_tenant = t;
        atomic_store(&n_tenants, n + 1);
    }
    pthread_mutex_lock(&write_mu);
    publish(ks);
    pthread_mutex_unlock(&write_mu);
    trust_header = cfg->trust_tenant_header;
    if (cfg->n_trust_tenant_cidrs) {
        trusted = calloc(cfg->n_trust_tenant_cidrs, sizeof(*trusted));
        for (size_t i = 0; i < cfg->n_trust_tenant_cidrs; i++) {
            if (gg_cidr_parse(cfg->trust_tenant_cidrs[i], &trusted[i]) != 0) {
                snprintf(err, errlen, "trust_tenant_header[%zu]: \"%s\" is not an address or CIDR", i, cfg->trust_tenant_cidrs[i]);
                gg_tenants_free();
                return -EINVAL;
            }
        }
        n_trusted = cfg->n_trust_tenant_cidrs;
    }
    return 0;
}

void gg_tenants_free(void)
{
    size_t n = atomic_load(&n_tenants);
    for (size_t i = 0; i < n; i++)
        gg_ratelimit_dispose(&tenants[i].rl);
    pthread_mutex_lock(&write_mu);
    retire(atomic_exchange(&keys, &empty_keys));
    reclaim(1);
    pthread_mutex_unlock(&write_mu);
    free(tenants);
    free(trusted);
    tenants = NULL;
    trusted = NULL;
    atomic_store(&n_tenants, 0);
    n_trusted = 0;
    default_tenant = NULL;
    atomic_store(&require_key, 0);
    trust_header = 0;
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= GG_TENANT_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int gg_tenant_add(const char *name, uint32_t weight, uint32_t priority, uint32_t max_inflight, uint32_t max_queue,
                  double requests_per_s, uint32_t burst, uint64_t tokens_per_min, gg_tenant_t **out)
{
    if (!valid_name(name))
        return -EINVAL;
    pthread_mutex_lock(&write_mu);
    int rc = 0;
    size_t n = atomic_load(&n_tenants);
    if (gg_tenant_find(name) != NULL) {
        rc = -EEXIST;
    } else if (tenants == NULL || n >= GG_MAX_TENANTS) {
        rc = -ENOSPC;
    } else {
        gg_tenant_t *t = &tenants[n];
        memset(t, 0, sizeof(*t));
        fill(t, (unsigned)n, name, weight, priority, max_inflight, max_queue);
        gg_ratelimit_init(&t->rl, requests_per_s, burst, tokens_per_min, mono_us());
        /* The slot is complete before the count that makes workers see it. */
        atomic_store_explicit(&n_tenants, n + 1, memory_order_release);
        if (out != NULL)
            *out = t;
    }
    pthread_mutex_unlock(&write_mu);
    return rc;
}

int gg_tenant_key_add(gg_tenant_t *t, const char *key)
{
    uint8_t d[32];
    if (key_digest(key, d) != 0)
        return -EINVAL;
    pthread_mutex_lock(&write_mu);
    const struct keyset *old = atomic_load(&keys);
    int rc = 0;
    for (size_t k = 0; k < old->n && rc == 0; k++)
        if (memcmp(old->e[k].d, d, 32) == 0)
            rc = -EEXIST;
    struct keyset *ks = rc ? NULL : malloc(sizeof(*ks) + (old->n + 1) * sizeof(ks->e[0]));
    if (rc == 0 && ks == NULL)
        rc = -ENOMEM;
    if (rc == 0) {
        ks->n = old->n + 1;
        memcpy(ks->e, old->e, old->n * sizeof(ks->e[0]));
        memcpy(ks->e[old->n].d, d, 32);
        ks->e[old->n].tenant = t->idx;
        publish(ks);
    }
    pthread_mutex_unlock(&write_mu);
    return rc;
}

int gg_tenant_key_remove(gg_tenant_t *t, const char *key)
{
    uint8_t d[32];
    if (key_digest(key, d) != 0)
        return -ENOENT;
    pthread_mutex_lock(&write_mu);
    const struct keyset *old = atomic_load(&keys);
    size_t at = SIZE_MAX;
    for (size_t k = 0; k < old->n; k++)
        if (old->e[k].tenant == t->idx && memcmp(old->e[k].d, d, 32) == 0)
            at = k;
    int rc = at == SIZE_MAX ? -ENOENT : 0;
    struct keyset *ks = rc ? NULL : malloc(sizeof(*ks) + (old->n ? old->n : 1) * sizeof(ks->e[0]));
    if (rc == 0 && ks == NULL)
        rc = -ENOMEM;
    if (rc == 0) {
        ks->n = 0;
        for (size_t k = 0; k < old->n; k++)
            if (k != at)
                ks->e[ks->n++] = old->e[k];
        publish(ks);
    }
    pthread_mutex_unlock(&write_mu);
    return rc;
}

size_t gg_tenants_count(void)
{
    return atomic_load_explicit(&n_tenants, memory_order_acquire);
}

gg_tenant_t *gg_tenant_at(size_t i)
{
    return i < gg_tenants_count() ? &tenants[i] : NULL;
}

gg_tenant_t *gg_tenant_find(const char *name)
{
    size_t n = gg_tenants_count();
    for (size_t i = 0; i < n; i++)
        if (strcmp(tenants[i].name, name) == 0)
            return &tenants[i];
    return NULL;
}

int gg_tenants_require_key(void)
{
    return atomic_load_explicit(&require_key, memory_order_relaxed);
}

gg_tenant_t *gg_tenant_by_key(const char *key, size_t len)
{
    uint8_t d[32];
    sha256(key, len, d);
    /* Every digest is compared, whatever matched earlier, so the time says nothing about which key is close. */
    const struct keyset *ks = atomic_load_explicit(&keys, memory_order_acquire);
    size_t found = SIZE_MAX;
    for (size_t k = 0; k < ks->n; k++) {
        int eq = CRYPTO_memcmp(d, ks->e[k].d, 32) == 0;
        size_t mask = (size_t)0 - (size_t)eq;
        found = (found & ~mask) | ((size_t)ks->e[k].tenant & mask);
    }
    /* A key's tenant was published before the key, so its slot is complete. */
    return found == SIZE_MAX ? NULL : &tenants[found];
}

static int peer_trusted(h2o_req_t *req)
{
    if (!trust_header)
        return 0;
    if (n_trusted == 0)
        return 1;
    struct sockaddr_storage ss;
    if (req->conn->callbacks->get_peername == NULL || req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) == 0)
        return 0;
    for (size_t i = 0; i < n_trusted; i++)
        if (gg_cidr_match(&trusted[i], (struct sockaddr *)&ss))
            return 1;
    return 0;
}

gg_tenant_t *gg_tenant_identify(h2o_req_t *req)
{
    if (peer_trusted(req)) {
        ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-tenant-id"), -1);
        if (i != -1) {
            h2o_iovec_t v = req->headers.entries[i].value;
            char name[GG_TENANT_NAME_MAX];
            if (v.len < sizeof(name)) {
                memcpy(name, v.base, v.len);
                name[v.len] = '\0';
                gg_tenant_t *t = gg_tenant_find(name);
                /* The trusted front end authenticated the caller; a name we do not know shares "default". */
                return t ? t : default_tenant;
            }
        }
    }
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (v.len > 7 && strncasecmp(v.base, "bearer ", 7) == 0) {
            size_t s = 7;
            while (s < v.len && v.base[s] == ' ')
                s++;
            gg_tenant_t *t = gg_tenant_by_key(v.base + s, v.len - s);
            if (t != NULL)
                return t;
        }
    }
    return gg_tenants_require_key() ? NULL : default_tenant;
}

void gg_tenant_respond_unauthorized(h2o_req_t *req, enum gg_dialect d)
{
    /* Repeated failures from one source end in an XDP deny (a no-op unless the guard is attached). */
    struct sockaddr_storage ss;
    if (gg_guard_loaded() && req->conn->callbacks->get_peername != NULL &&
        req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) != 0)
        gg_guard_auth_failed((struct sockaddr *)&ss);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
    if (d == GG_DIALECT_OPENAI)
        gg_respond_error(req, d, 401, "Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.",
                         "invalid_request_error", "invalid_api_key");
    else
        gg_respond_error(req, d, 401, "unauthorized", NULL, NULL);
}

const char *gg_reject_name(enum gg_reject r)
{
    static const char *names[GG_REJECT_COUNT] = {"none", "rate_limit", "quota", "queue_full", "over_share", "overloaded"};
    return r < GG_REJECT_COUNT ? names[r] : "unknown";
}

void gg_tenant_respond_reject(h2o_req_t *req, enum gg_dialect d, enum gg_reject r, unsigned retry_s)
{
    switch (r) {
    case GG_REJECT_QUOTA:
        /* Retrying soon cannot help: the OpenAI SDKs read this header and stop their automatic retries. */
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-should-retry"), 0, NULL, H2O_STRLIT("false"));
        gg_respond_error_retry(req, d, 429, "You exceeded your token quota; it refills over time (see Retry-After).",
                               "insufficient_quota", "insufficient_quota", retry_s);
        break;
    case GG_REJECT_RATE:
        gg_respond_error_retry(req, d, 429, "Rate limit reached for requests; retry after the time in Retry-After.", "requests",
                               "rate_limit_exceeded", retry_s);
        break;
    case GG_REJECT_QUEUE_FULL:
    case GG_REJECT_SHARE:
        gg_respond_error_retry(req, d, 429,
                               r == GG_REJECT_QUEUE_FULL
                                   ? "Too many of your requests are waiting; retry after the time in Retry-After."
                                   : "Your requests use more than your share of this model's capacity; retry "
                                     "after the time in Retry-After.",
                               "requests", "rate_limit_exceeded", retry_s);
        break;
    default:
        gg_respond_error_retry(req, d, 503, "The gateway is overloaded; retry after the time in Retry-After.",
                               "service_unavailable", "overloaded", retry_s);
        break;
    }
}

int gg_cidr_parse(const char *s, gg_cidr_t *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    unsigned max;
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -EINVAL;
    }
    out->prefix = max;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || p < 0 || p > (long)max)
            return -EINVAL;
        out->prefix = (unsigned)p;
    }
    return 0;
}

static int prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & m) == (b[bytes] & m);
}

int gg_cidr_match(const gg_cidr_t *c, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        return c->family == AF_INET && prefix_eq(a, c->addr, c->prefix);
    }
    if (sa->sa_family != AF_INET6)
        return 0;
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (c->family == AF_INET6)
        return prefix_eq(a, c->addr, c->prefix);
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, mapped, 12) == 0 && prefix_eq(a + 12, c->addr, c->prefix);
}

static gg_metric_t *m_requests, *m_rejected, *m_wait, *m_ttft, *m_tokens;

void gg_tenant_metrics_init(void)
{
    if (m_requests != NULL)
        return;
    m_requests = gg_metric_counter("gridgate_tenant_requests_total", "Inference requests by tenant and outcome "
                                                                     "(ok, error, rejected, cancelled).");
    m_rejected = gg_metric_counter("gridgate_tenant_rejected_total", "Requests refused at admission, by tenant and reason.");
    m_wait = gg_metric_histogram("gridgate_tenant_queue_wait_seconds", "Time admitted requests waited for a backend slot.",
                                 gg_metrics_latency_buckets);
    m_ttft = gg_metric_histogram("gridgate_tenant_ttft_seconds", "Time to first token of streamed responses, by tenant.",
                                 gg_metrics_latency_buckets);
    m_tokens = gg_metric_counter("gridgate_tenant_tokens_total", "Tokens in and out, by tenant and direction.");
}

void gg_tenant_record(const gg_tenant_t *t, int status, enum gg_reject rj, uint64_t queue_wait_us, uint64_t ttft_us, long tin,
                      long tout)
{
    /* Once per request: cached series, no formatting or locking (see gg_metric_series_of). */
    static const char *const n_t[] = {"tenant"}, *const n_to[] = {"tenant", "outcome"}, *const n_tr[] = {"tenant", "reason"},
                             *const n_td[] = {"tenant", "direction"};
    if (m_requests == NULL || t == NULL)
        return;
    gg_tenant_t *c = (gg_tenant_t *)t; /* its counters are the only part a record changes */
    atomic_fetch_add_explicit(&c->n_requests, 1, memory_order_relaxed);
    if (rj != GG_REJECT_NONE) {
        atomic_fetch_add_explicit(&c->n_rejected[rj], 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&c->n_admitted, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->n_tokens_in, tin > 0 ? (uint64_t)tin : 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->n_tokens_out, tout > 0 ? (uint64_t)tout : 0, memory_order_relaxed);
    }
    const char *outcome = rj != GG_REJECT_NONE ? "rejected" : status == 499 ? "cancelled" : status < 400 ? "ok" : "error";
    const char *v_t[] = {t->name}, *v_to[] = {t->name, outcome};
    gg_series_add(gg_metric_series_of(m_requests, n_to, v_to, 2), 1);
    if (rj != GG_REJECT_NONE) {
        const char *v_tr[] = {t->name, gg_reject_name(rj)};
        gg_series_add(gg_metric_series_of(m_rejected, n_tr, v_tr, 2), 1);
    } else {
        gg_series_observe(gg_metric_series_of(m_wait, n_t, v_t, 1), queue_wait_us / 1e6);
    }
    if (ttft_us)
        gg_series_observe(gg_metric_series_of(m_ttft, n_t, v_t, 1), ttft_us / 1e6);
    const char *v_in[] = {t->name, "in"}, *v_out[] = {t->name, "out"};
    gg_series_add(gg_metric_series_of(m_tokens, n_td, v_in, 2), tin > 0 ? (uint64_t)tin : 0);
    gg_series_add(gg_metric_series_of(m_tokens, n_td, v_out, 2), tout > 0 ? (uint64_t)tout : 0);
}

_Static_assert(GG_REJECT_COUNT <= sizeof(((gg_tenant_t *)0)->n_rejected) / sizeof(uint64_t), "a counter per reject reason");

void gg_tenant_counts(gg_tenant_t *t, gg_tenant_counts_t *out)
{
    memset(out, 0, sizeof(*out));
    out->requests = atomic_load_explicit(&t->n_requests, memory_order_relaxed);
    out->admitted = atomic_load_explicit(&t->n_admitted, memory_order_relaxed);
    for (int r = 0; r < GG_REJECT_COUNT; r++)
        out->rejected[r] = atomic_load_explicit(&t->n_rejected[r], memory_order_relaxed);
    out->tokens_in = atomic_load_explicit(&t->n_tokens_in, memory_order_relaxed);
    out->tokens_out = atomic_load_explicit(&t->n_tokens_out, memory_order_relaxed);
    pthread_mutex_lock(&t->rl.mu);
    out->request_limited = t->rl.req.rate_per_us > 0;
    out->token_limited = t->rl.tok.rate_per_us > 0;
    pthread_mutex_unlock(&t->rl.mu);
    uint64_t now = mono_us();
    out->request_level = out->request_limited ? gg_ratelimit_level(&t->rl, 0, now) : 0;
    out->token_level = out->token_limited ? gg_ratelimit_level(&t->rl, 1, now) : 0;
}

uint32_t gg_tenant_cost(const gg_reqinfo_t *ri)
{
    long in = ri->prompt_tokens_est > 0 ? ri->prompt_tokens_est : 1;
    long out = 0;
    if (ri->ep == GG_EP_CHAT || ri->ep == GG_EP_COMPLETION)
        out = ri->max_tokens > 0 ? ri->max_tokens : GG_TENANT_DEFAULT_MAX_TOKENS;
    long c = in + out;
    return c > (long)UINT32_MAX ? UINT32_MAX : (uint32_t)c;
}
