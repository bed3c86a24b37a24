/* gridgate's configuration. Every option is one row of one table (key, type, offset, bounds, default, doc);
 * the same rows drive JSON parsing, defaults, `gg_config_set` from the command line, freeing and the
 * generated reference. Nested objects are rows of type T_OBJ (same base struct), arrays of objects T_OBJLIST
 * (each element its own struct, with its own rows). */
#include "gridgate/config.h"
#include "gridgate/guard.h"
#include "gridgate/splice.h"
#include "gridgate/backend.h"
#include "gridgate/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ctype { T_BOOL, T_U32, T_U64, T_DOUBLE, T_STR, T_ENUM, T_STRLIST, T_OBJ, T_OBJLIST, T_STRMAP, T_CUSTOM };

#define F_REQUIRED 1u  /* must be present (in an array element) */
#define F_SCALAR_OK 2u /* T_STRLIST: a single string is a one-element list */
#define F_HOSTPORT 4u  /* T_STR/T_STRLIST: each value is HOST:PORT */
#define F_NONEMPTY 8u  /* T_STR/T_STRLIST: no empty strings */

struct opt;
struct ctx;
typedef int (*custom_fn)(const struct opt *o, json_t *v, void *base, struct ctx *c);

struct schema {
    const struct opt *opts;
    size_t n;
};

struct opt {
    const char *key;
    enum ctype type;
    size_t off;       /* of the value (or of the list pointer) in the base struct */
    size_t count_off; /* lists: of the size_t count */
    double min, max;  /* numbers: bounds */
    const char *def;  /* default, as a command-line string would give it (NULL: none) */
    const char *doc;
    const char *const *choices; /* T_ENUM / T_STR: allowed values (NULL-terminated) */
    const struct schema *sub;   /* T_OBJ / T_OBJLIST */
    size_t elem_size;           /* T_OBJLIST */
    custom_fn parse;            /* T_CUSTOM */
    void (*free_fn)(void *base);
    const char *type_doc; /* T_CUSTOM: how the doc names the type */
    unsigned flags;
};

/* A path stack: key names (or array indexes) from the root to the value being parsed. */
#define MAX_DEPTH 8
struct ctx {
    const char *file;
    const char *text; /* NULL when there is no JSON text (command line) */
    size_t text_len;
    const char *key[MAX_DEPTH];
    int idx[MAX_DEPTH]; /* -1 for a key component */
    int depth;
    char *err;
    size_t errlen;
};

static int set_error(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- locating a key's line in valid JSON text ------------------------------------------------------ */
struct scan {
    const char *p, *end;
    int line;
};

static void scan_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n')) {
        if (*s->p == '\n')
            s->line++;
        s->p++;
    }
}

/* Skips a string starting at '"'; returns its raw contents through k/klen. */
static void scan_string(struct scan *s, const char **k, size_t *klen)
{
    s->p++;
    *k = s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' && s->p + 1 < s->end)
            s->p++;
        s->p++;
    }
    *klen = s->p - *k;
    if (s->p < s->end)
        s->p++;
}

static void scan_value(struct scan *s)
{
    scan_ws(s);
    if (s->p >= s->end)
        return;
    if (*s->p == '"') {
        const char *k;
        size_t kl;
        scan_string(s, &k, &kl);
        return;
    }
    if (*s->p == '{' || *s->p == '[') {
        int depth = 0;
        while (s->p < s->end) {
            char ch = *s->p;
            if (ch == '"') {
                const char *k;
                size_t kl;
                scan_string(s, &k, &kl);
                continue;
            }
            if (ch == '\n')
                s->line++;
            s->p++;
            if (ch == '{' || ch == '[')
                depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0)
                return;
        }
        return;
    }
    while (s->p < s->end && strchr(",}] \t\r\n", *s->p) == NULL)
        s->p++;
}

/* Line of the path's last component (the key, or the array element), or 0 when not found. */
static int locate_line(const struct ctx *c, int depth)
{
    if (c->text == NULL)
        return 0;
    struct scan s = {c->text, c->text + c->text_len, 1};
    int line = 1;
    for (int d = 0; d < depth; d++) {
        scan_ws(&s);
        if (s.p >= s.end)
            return 0;
        if (c->idx[d] < 0) {
            if (*s.p != '{')
                return line;
            s.p++;
            int found = 0;
            for (;;) {
                scan_ws(&s);
                if (s.p >= s.end || *s.p != '"')
                    return line;
                int kline = s.line;
                const char *k;
                size_t kl;
                scan_string(&s, &k, &kl);
                scan_ws(&s);
                if (s.p < s.end && *s.p == ':')
                    s.p++;
                if (kl == strlen(c->key[d]) && memcmp(k, c->key[d], kl) == 0) {
                    line = kline;
                    found = 1;
                    break;
                }
                scan_value(&s);
                scan_ws(&s);
                if (s.p < s.end && *s.p == ',')
                    s.p++;
                else
                    return line;
            }
            if (!found)
                return line;
        } else {
            if (*s.p != '[')
                return line;
            s.p++;
            for (int i = 0;; i++) {
                scan_ws(&s);
                if (s.p >= s.end || *s.p == ']')
                    return line;
                if (i == c->idx[d]) {
                    line = s.line;
                    break;
                }
                scan_value(&s);
                scan_ws(&s);
                if (s.p < s.end && *s.p == ',')
                    s.p++;
                else
                    return line;
            }
        }
    }
    return line;
}

static void path_string(const struct ctx *c, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int d = 0; d < c->depth && n < len; d++) {
        int w;
        if (c->idx[d] >= 0)
            w = snprintf(buf + n, len - n, "[%d]", c->idx[d]);
        else
            w = snprintf(buf + n, len - n, "%s%s", d ? "." : "", c->key[d]);
        if (w < 0)
            break;
        n += w;
    }
}

static int set_error(struct ctx *c, const char *fmt, ...)
{
    char path[256], reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    path_string(c, path, sizeof(path));
    int line = locate_line(c, c->depth);
    if (c->text != NULL)
        snprintf(c->err, c->errlen, "%s:%d: %s: %s", c->file, line, path[0] ? path : "(top)", reason);
    else
        snprintf(c->err, c->errlen, "%s: %s: %s", c->file, path[0] ? path : "(top)", reason);
    return -EINVAL;
}

static void push_key(struct ctx *c, const char *k)
{
    c->key[c->depth] = k;
    c->idx[c->depth] = -1;
    c->depth++;
}

static void push_idx(struct ctx *c, int i)
{
    c->key[c->depth] = NULL;
    c->idx[c->depth] = i;
    c->depth++;
}

/* --- the table ------------------------------------------------------------------------------------- */
static const char *const bpf_modes[] = {"auto", "on", "off", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

static int parse_kind(const struct opt *o, json_t *v, void *base, struct ctx *c);
static int parse_url(const struct opt *o, json_t *v, void *base, struct ctx *c);
static int parse_admin(const struct opt *o, json_t *v, void *base, struct ctx *c);
static void free_admin(void *base);
static int parse_trust(const struct opt *o, json_t *v, void *base, struct ctx *c);
static int parse_approve(const struct opt *o, json_t *v, void *base, struct ctx *c);
static int parse_splice_paths(const struct opt *o, json_t *v, void *base, struct ctx *c);
static void free_trust(void *base);

#define CFG(f) offsetof(gg_config_t, f)
#define BE(f) offsetof(gg_config_backend_t, f)
#define TN(f) offsetof(gg_config_tenant_t, f)

static const struct opt backend_opts[] = {
    {"name", T_STR, BE(name), .doc = "Unique name (default HOST:PORT of the url)."},
    {"url", T_CUSTOM, BE(url), .parse = parse_url, .type_doc = "url", .flags = F_REQUIRED,
     .doc = "http://HOST:PORT[/prefix] of the engine."},
    {"kind", T_CUSTOM, BE(kind), .parse = parse_kind, .type_doc = "kind", .def = "auto",
     .doc = "auto|ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui (auto: detected by probing)."},
    {"weight", T_U32, BE(weight), .min = 1, .max = 1000, .def = "1", .doc = "Relative share of traffic."},
    {"max_inflight", T_U32, BE(max_inflight), .min = 0, .max = 100000, .def = "0",
     .doc = "Max concurrent requests (0: derived from the engine)."},
};
static const struct schema backend_schema = {backend_opts, sizeof(backend_opts) / sizeof(backend_opts[0])};

static const struct opt rate_opts[] = {
    {"requests_per_s", T_DOUBLE, TN(rate_requests_per_s), .min = 0, .max = 1e6, .def = "0",
     .doc = "Sustained request rate (0: unlimited)."},
    {"burst", T_U32, TN(rate_burst), .min = 0, .max = 1000000, .def = "0",
     .doc = "Requests allowed above the rate at once (0: max(1, requests_per_s))."},
    {"tokens_per_min", T_U64, TN(rate_tokens_per_min), .min = 0, .max = 1e15, .def = "0",
     .doc = "Tokens per minute, prompt + output (0: unlimited); charged prompt estimate + max_tokens, settled from usage."},
};
static const struct schema rate_schema = {rate_opts, sizeof(rate_opts) / sizeof(rate_opts[0])};

static const struct opt tenant_opts[] = {
    {"name", T_STR, TN(name), .flags = F_REQUIRED | F_NONEMPTY, .doc = "Unique tenant name."},
    {"keys", T_STRLIST, TN(keys), TN(n_keys), .flags = F_NONEMPTY, .doc = "API keys (Authorization: Bearer KEY)."},
    {"weight", T_U32, TN(weight), .min = 1, .max = 10000, .def = "1", .doc = "Fair share among tenants of a priority."},
    {"priority", T_U32, TN(priority), .min = 0, .max = 9, .def = "0", .doc = "Higher is served first (0..9)."},
    {"rate", T_OBJ, 0, .sub = &rate_schema, .doc = "Rate limits."},
    {"max_inflight", T_U32, TN(max_inflight), .min = 0, .max = 1000000, .def = "0", .doc = "Concurrent requests (0: unlimited)."},
    {"max_queue", T_U32, TN(max_queue), .min = 0, .max = 1000000, .def = "256",
     .doc = "Requests waiting for admission before 429."},
};
static const struct schema tenant_schema = {tenant_opts, sizeof(tenant_opts) / sizeof(tenant_opts[0])};

static const struct opt routing_opts[] = {
    {"aliases", T_STRMAP, CFG(routing.aliases), CFG(routing.n_aliases), .doc = "{\"alias\": \"model\"} renames."},
    {"affinity", T_BOOL, CFG(routing.affinity), .def = "true",
     .doc = "Session affinity: the same X-Session-ID (or OpenAI user) goes to the same backend while it has room."},
    {"prefer_loaded", T_BOOL, CFG(routing.prefer_loaded), .def = "true", .doc = "Prefer backends that have the model in memory."},
    {"retries", T_U32, CFG(routing.retries), .min = 0, .max = 10, .def = "1",
     .doc = "Retries on another backend before the first byte."},
    {"queue_ms", T_U32, CFG(routing.queue_ms), .min = 0, .max = 600000, .def = "30000",
     .doc = "How long a request may wait for a free backend."},
};
static const struct schema routing_schema = {routing_opts, sizeof(routing_opts) / sizeof(routing_opts[0])};

static const struct opt health_opts[] = {
    {"interval_ms", T_U32, CFG(health.interval_ms), .min = 50, .max = 3600000, .def = "2000",
     .doc = "Probe period per backend (+-10% jitter)."},
    {"timeout_ms", T_U32, CFG(health.timeout_ms), .min = 10, .max = 600000, .def = "1000", .doc = "Probe timeout."},
    {"fail_threshold", T_U32, CFG(health.fail_threshold), .min = 1, .max = 100, .def = "2",
     .doc = "Failed probes in a row that take a backend down."},
    {"recover_threshold", T_U32, CFG(health.recover_threshold), .min = 1, .max = 100, .def = "1",
     .doc = "Successful trials in half_open that bring it back up."},
    {"cooldown_ms", T_U32, CFG(health.cooldown_ms), .min = 10, .max = 3600000, .def = "1000",
     .doc = "Time down before a half_open trial (doubles on each failed trial)."},
    {"max_cooldown_ms", T_U32, CFG(health.max_cooldown_ms), .min = 10, .max = 3600000, .def = "30000",
     .doc = "Cap of the doubling cooldown."},
};
static const struct schema health_schema = {health_opts, sizeof(health_opts) / sizeof(health_opts[0])};

static const struct opt status_page_opts[] = {
    {"main_listener", T_BOOL, CFG(status_page.main_listener), .def = "false",
     .doc = "Also serve the status page at /ui on the client listeners, with its read-only JSON (no secrets, no token)."},
};
static const struct schema status_page_schema = {status_page_opts, sizeof(status_page_opts) / sizeof(status_page_opts[0])};

static const struct opt timeouts_opts[] = {
    {"connect_ms", T_U32, CFG(timeouts.connect_ms), .min = 1, .max = 600000, .def = "2000", .doc = "Upstream connect."},
    {"first_byte_ms", T_U32, CFG(timeouts.first_byte_ms), .min = 1, .max = 3600000, .def = "300000",
     .doc = "Upstream response head (model loads can be slow)."},
    {"idle_ms", T_U32, CFG(timeouts.idle_ms), .min = 1, .max = 3600000, .def = "120000", .doc = "Gap between streamed chunks."},
};
static const struct schema timeouts_schema = {timeouts_opts, sizeof(timeouts_opts) / sizeof(timeouts_opts[0])};

static const struct opt limits_opts[] = {
    {"max_body_bytes", T_U64, CFG(limits.max_body_bytes), .min = 1024, .max = 1073741824.0, .def = "8388608",
     .doc = "Largest request body (413 above)."},
    {"max_connections", T_U32, CFG(limits.max_connections), .min = 1, .max = 1000000, .def = "10000",
     .doc = "Client connections per process."},
    {"max_queue", T_U32, CFG(limits.max_queue), .min = 0, .max = 1000000, .def = "4096",
     .doc = "Requests waiting for admission, all tenants."},
};
static const struct schema limits_schema = {limits_opts, sizeof(limits_opts) / sizeof(limits_opts[0])};

static const struct opt tls_opts[] = {
    {"cert", T_STR, CFG(tls_cert), .flags = F_NONEMPTY, .doc = "PEM certificate chain for the listeners."},
    {"key", T_STR, CFG(tls_key), .flags = F_NONEMPTY, .doc = "PEM private key."},
};
static const struct schema tls_schema = {tls_opts, sizeof(tls_opts) / sizeof(tls_opts[0])};

static const struct opt xdp_opts[] = {
    {"interfaces", T_STRLIST, CFG(bpf.xdp.interfaces), CFG(bpf.xdp.n_interfaces), .flags = F_SCALAR_OK | F_NONEMPTY,
     .doc = "Network interfaces the XDP SYN guard attaches to (native mode, else generic; none: not attached)."},
    {"syn_rate", T_DOUBLE, CFG(bpf.xdp.syn_rate), .min = 0, .max = 1e6, .def = "100",
     .doc = "New connections (SYNs) per second one source address may open to the listen ports (0: no limit)."},
    {"syn_burst", T_U32, CFG(bpf.xdp.syn_burst), .min = 1, .max = 1000000, .def = "200",
     .doc = "SYNs a source may send at once above the rate."},
    {"auth_fail_limit", T_U32, CFG(bpf.xdp.auth_fail_limit), .min = 0, .max = 1000000, .def = "20",
     .doc = "Authentication failures (401) of one source within auth_fail_window_s that get it denied (0: never)."},
    {"auth_fail_window_s", T_U32, CFG(bpf.xdp.auth_fail_window_s), .min = 1, .max = 86400, .def = "60",
     .doc = "Window in which auth_fail_limit failures are counted."},
    {"deny_seconds", T_U32, CFG(bpf.xdp.deny_seconds), .min = 1, .max = 31536000, .def = "600",
     .doc = "How long a source that failed authentication too often is denied."},
};
static const struct schema xdp_schema = {xdp_opts, sizeof(xdp_opts) / sizeof(xdp_opts[0])};

static const struct opt bpf_opts[] = {
    {"mode", T_ENUM, CFG(bpf.mode), .choices = bpf_modes, .def = "auto",
     .doc = "auto: use eBPF when permitted; on: fail without it; off."},
    {"pin_path", T_STR, CFG(bpf.pin_path), .flags = F_NONEMPTY, .def = "/sys/fs/bpf/gridgate",
     .doc = "bpffs directory for pinned maps."},
    {"xdp", T_OBJ, 0, .sub = &xdp_schema, .doc = "XDP ingress guard: drops SYNs from denied prefixes and sources over their rate."},
    {"reuseport", T_BOOL, CFG(bpf.reuseport), .def = "true",
     .doc = "Hand each new connection to the worker thread holding the fewest (sk_reuseport; off: the kernel's hash)."},
    {"splice_tunnels", T_BOOL, CFG(bpf.splice_tunnels), .def = "false",
     .doc = "Splice upgraded connections (WebSocket, any 101) both ways in-kernel once both sides switched protocols."},
    {"splice_streams", T_BOOL, CFG(bpf.splice_streams), .def = "false",
     .doc = "Splice plain HTTP/1.1 SSE/NDJSON responses backend->client in-kernel (backend connections join the sockmap)."},
    {"splice_paths", T_CUSTOM, CFG(bpf.splice_paths), .parse = parse_splice_paths, .type_doc = "[path]",
     .doc = "Only streams of these routes are spliced (/v1/chat/completions, /v1/completions, /api/chat, /api/generate); "
            "default: all four."},
};
static const struct schema bpf_schema = {bpf_opts, sizeof(bpf_opts) / sizeof(bpf_opts[0])};

static const struct opt registration_opts[] = {
    {"token", T_STR, CFG(registration.token), .flags = F_NONEMPTY,
     .doc = "Shared secret agents present to register backends (unset: registration off)."},
    {"approve", T_CUSTOM, CFG(registration.approve), .parse = parse_approve, .type_doc = "auto|manual", .def = "manual",
     .doc = "auto: registered backends join at once; manual: they wait for `gridctl backend approve` (true/false too)."},
    {"heartbeat_ms", T_U32, CFG(registration.heartbeat_ms), .min = 50, .max = 3600000, .def = "5000",
     .doc = "Heartbeat period the gateway asks agents for."},
    {"missed_beats", T_U32, CFG(registration.missed_beats), .min = 1, .max = 1000, .def = "3",
     .doc = "Missed heartbeats after which a registered backend is marked down."},
    {"ttl_ms", T_U32, CFG(registration.ttl_ms), .min = 100, .max = 86400000, .def = "300000",
     .doc = "Time without heartbeats after which a registered backend is removed."},
};
static const struct schema registration_schema = {registration_opts, sizeof(registration_opts) / sizeof(registration_opts[0])};

static const struct opt compression_opts[] = {
    {"min_bytes", T_U32, CFG(compression.min_bytes), .min = 0, .max = 1073741824.0, .def = "1024",
     .doc = "Responses of at least this many bytes are gzipped for clients that accept it."},
    {"level", T_U32, CFG(compression.level), .min = 0, .max = 9, .def = "1",
     .doc = "zlib level for responses (0: never compress)."},
    {"stream", T_BOOL, CFG(compression.stream), .def = "false",
     .doc = "Also gzip SSE/NDJSON streams (each event is still flushed at once)."},
    {"max_inflated_bytes", T_U64, CFG(compression.max_inflated_bytes), .min = 1024, .max = 1073741824.0, .def = "8388608",
     .doc = "gzip request bodies: largest decompressed size (413 above)."},
    {"max_ratio", T_U32, CFG(compression.max_ratio), .min = 0, .max = 1000000, .def = "100",
     .doc = "gzip request bodies: largest decompressed/compressed ratio past 1 MiB (413 above; 0: no limit)."},
};
static const struct schema compression_schema = {compression_opts, sizeof(compression_opts) / sizeof(compression_opts[0])};

static const struct opt root_opts[] = {
    {"listen", T_STRLIST, CFG(listen), CFG(n_listen), .flags = F_SCALAR_OK | F_HOSTPORT, .def = "127.0.0.1:8080",
     .doc = "Client listeners: \"HOST:PORT\" or a list of them."},
    {"admin", T_CUSTOM, 0, .parse = parse_admin, .free_fn = free_admin, .type_doc = "admin",
     .doc = "Admin API: \"HOST:PORT\", \"unix:PATH\" or {\"listen\": ..., \"token\": ...} (unset: off)."},
    {"threads", T_U32, CFG(threads), .min = 0, .max = 256, .def = "0", .doc = "Worker threads (0: one per CPU)."},
    {"backends", T_OBJLIST, CFG(backends), CFG(n_backends), .sub = &backend_schema, .elem_size = sizeof(gg_config_backend_t),
     .doc = "Inference engines."},
    {"tenants", T_OBJLIST, CFG(tenants), CFG(n_tenants), .sub = &tenant_schema, .elem_size = sizeof(gg_config_tenant_t),
     .doc = "Clients by API key (others are tenant \"default\")."},
    {"routing", T_OBJ, 0, .sub = &routing_schema, .doc = "Backend selection."},
    {"health", T_OBJ, 0, .sub = &health_schema, .doc = "Active probes and passive ejection."},
    {"status_page", T_OBJ, 0, .sub = &status_page_schema, .doc = "Where the status page is served besides the admin API."},
    {"timeouts", T_OBJ, 0, .sub = &timeouts_schema, .doc = "Upstream timeouts."},
    {"limits", T_OBJ, 0, .sub = &limits_schema, .doc = "Resource limits."},
    {"require_models", T_STRLIST, CFG(require_models), CFG(n_require_models), .flags = F_NONEMPTY,
     .doc = "GET /health is 503 until every one of these models is served."},
    {"tls", T_OBJ, 0, .sub = &tls_schema, .doc = "TLS for the client listeners (cert and key together)."},
    {"access_log", T_STR, CFG(access_log), .flags = F_NONEMPTY, .doc = "JSON-lines access log: a path, or \"-\" for stderr."},
    {"log_level", T_STR, CFG(log_level), .choices = log_levels, .def = "info", .doc = "error|warn|info|debug."},
    {"trust_tenant_header", T_CUSTOM, 0, .parse = parse_trust, .free_fn = free_trust, .type_doc = "bool|[cidr]", .def = "false",
     .doc = "Honour X-Tenant-ID: true, false, or from these source CIDRs only."},
    {"bpf", T_OBJ, 0, .sub = &bpf_schema, .doc = "eBPF acceleration."},
    {"registration", T_OBJ, 0, .sub = &registration_schema, .doc = "Backend self-registration by agents."},
    {"compression", T_OBJ, 0, .sub = &compression_schema, .doc = "gzip on the client leg, both ways."},
};
static const struct schema root_schema = {root_opts, sizeof(root_opts) / sizeof(root_opts[0])};

/* --- value setters ------------------------------------------------------------------------------- */
static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static void *xrealloc(void *p, size_t n)
{
    void *r = realloc(p, n ? n : 1);
    if (r == NULL)
        abort();
    return r;
}

#define AT(base, off, type) ((type *)((char *)(base) + (off)))

static const char *json_type_name(json_t *v)
{
    if (v == NULL)
        return "nothing";
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

int gg_config_check_hostport(const char *s)
{
    char host[256], prefix[8];
    unsigned port;
    int is_unix;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0' || strchr(s, '/') != NULL)
        return -EINVAL;
    /* Port 0 is allowed here (tests bind :0); gg_httpc_parse_target rejects it, so check it first. */
    if (strcmp(colon, ":0") == 0) {
        char tmp[300];
        if ((size_t)(colon - s) + 3 > sizeof(tmp))
            return -EINVAL;
        snprintf(tmp, sizeof(tmp), "%.*s:1", (int)(colon - s), s);
        return gg_httpc_parse_target(tmp, host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix) == 0 && !is_unix ? 0
                                                                                                                        : -EINVAL;
    }
    return gg_httpc_parse_target(s, host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix) == 0 && !is_unix ? 0 : -EINVAL;
}

static int check_string(const struct opt *o, const char *s, struct ctx *c)
{
    if ((o->flags & F_NONEMPTY) && s[0] == '\0')
        return set_error(c, "must not be empty");
    if ((o->flags & F_HOSTPORT) && gg_config_check_hostport(s) != 0)
        return set_error(c, "\"%s\" is not HOST:PORT", s);
    if (o->choices != NULL) {
        for (int i = 0; o->choices[i] != NULL; i++)
            if (strcmp(s, o->choices[i]) == 0)
                return i;
        char list[128] = "";
        for (int i = 0; o->choices[i] != NULL; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "|" : "", o->choices[i]);
        return set_error(c, "\"%s\" is not one of %s", s, list);
    }
    return 0;
}

static int parse_object(const struct schema *sc, json_t *obj, void *base, struct ctx *c);
static void apply_defaults(const struct schema *sc, void *base);
static void free_schema(const struct schema *sc, void *base);

static int set_value(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    switch (o->type) {
    case T_BOOL:
        if (!json_is_boolean(v))
            return set_error(c, "expected a boolean, got %s", json_type_name(v));
        *AT(base, o->off, int) = json_is_true(v);
        return 0;
    case T_U32:
    case T_U64: {
        if (!json_is_integer(v))
            return set_error(c, "expected an integer, got %s", json_type_name(v));
        json_int_t n = json_integer_value(v);
        if ((double)n < o->min || (double)n > o->max)
            return set_error(c, "%lld is out of range %.0f..%.0f", (long long)n, o->min, o->max);
        if (o->type == T_U32)
            *AT(base, o->off, uint32_t) = (uint32_t)n;
        else
            *AT(base, o->off, uint64_t) = (uint64_t)n;
        return 0;
    }
    case T_DOUBLE: {
        if (!json_is_number(v))
            return set_error(c, "expected a number, got %s", json_type_name(v));
        double d = json_number_value(v);
        if (!isfinite(d) || d < o->min || d > o->max)
            return set_error(c, "%g is out of range %g..%g", d, o->min, o->max);
        *AT(base, o->off, double) = d;
        return 0;
    }
    case T_STR:
    case T_ENUM: {
        if (!json_is_string(v))
            return set_error(c, "expected a string, got %s", json_type_name(v));
        const char *s = json_string_value(v);
        if (strlen(s) != json_string_length(v))
            return set_error(c, "must not contain NUL");
        int r = check_string(o, s, c);
        if (r < 0)
            return r;
        if (o->type == T_ENUM) {
            *AT(base, o->off, int) = r;
        } else {
            free(*AT(base, o->off, char *));
            *AT(base, o->off, char *) = xstrdup(s);
        }
        return 0;
    }
    case T_STRLIST: {
        if (!json_is_array(v) && !(json_is_string(v) && (o->flags & F_SCALAR_OK)))
            return set_error(c, "expected %s, got %s",
                             (o->flags & F_SCALAR_OK) ? "a string or an array of strings" : "an array of strings",
                             json_type_name(v));
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        char **list = xrealloc(NULL, n * sizeof(char *));
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
            int r = 0;
            if (json_is_array(v))
                push_idx(c, (int)i);
            if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e))
                r = set_error(c, "expected a string, got %s", json_type_name(e));
            else
                r = check_string(o, json_string_value(e), c);
            if (json_is_array(v))
                c->depth--;
            if (r < 0) {
                for (size_t j = 0; j < i; j++)
                    free(list[j]);
                free(list);
                return r;
            }
            list[i] = xstrdup(json_string_value(e));
        }
        char ***dst = AT(base, o->off, char **);
        size_t *cnt = AT(base, o->count_off, size_t);
        for (size_t j = 0; j < *cnt; j++)
            free((*dst)[j]);
        free(*dst);
        *dst = list;
        *cnt = n;
        return 0;
    }
    case T_OBJ:
        if (!json_is_object(v))
            return set_error(c, "expected an object, got %s", json_type_name(v));
        return parse_object(o->sub, v, base, c);
    case T_OBJLIST: {
        if (!json_is_array(v))
            return set_error(c, "expected an array of objects, got %s", json_type_name(v));
        void **dst = AT(base, o->off, void *);
        size_t *cnt = AT(base, o->count_off, size_t);
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            push_idx(c, (int)(*cnt));
            if (!json_is_object(e)) {
                int r = set_error(c, "expected an object, got %s", json_type_name(e));
                c->depth--;
                return r;
            }
            *dst = xrealloc(*dst, (*cnt + 1) * o->elem_size);
            void *elem = (char *)*dst + *cnt * o->elem_size;
            memset(elem, 0, o->elem_size);
            (*cnt)++;
            apply_defaults(o->sub, elem);
            int r = parse_object(o->sub, e, elem, c);
            c->depth--;
            if (r < 0)
                return r;
        }
        return 0;
    }
    case T_STRMAP: {
        if (!json_is_object(v))
            return set_error(c, "expected an object of strings, got %s", json_type_name(v));
        gg_config_alias_t **dst = AT(base, o->off, gg_config_alias_t *);
        size_t *cnt = AT(base, o->count_off, size_t);
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            push_key(c, k);
            if (!json_is_string(e) || json_string_value(e)[0] == '\0' || strlen(json_string_value(e)) != json_string_length(e)) {
                int r = set_error(c, "expected a model name, got %s", json_is_string(e) ? "\"\"" : json_type_name(e));
                c->depth--;
                return r;
            }
            if (k[0] == '\0') {
                int r = set_error(c, "alias must not be empty");
                c->depth--;
                return r;
            }
            c->depth--;
            *dst = xrealloc(*dst, (*cnt + 1) * sizeof(**dst));
            (*dst)[*cnt].alias = xstrdup(k);
            (*dst)[*cnt].model = xstrdup(json_string_value(e));
            (*cnt)++;
        }
        return 0;
    }
    case T_CUSTOM:
        return o->parse(o, v, base, c);
    }
    return set_error(c, "unsupported option type");
}

/* Edit distance, for "did you mean"; keys are short. */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    int d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

static int parse_object(const struct schema *sc, json_t *obj, void *base, struct ctx *c)
{
    const char *k;
    json_t *v;
    if (c->depth >= MAX_DEPTH - 2)
        return set_error(c, "nested too deeply");
    json_object_foreach(obj, k, v)
    {
        push_key(c, k);
        const struct opt *o = NULL;
        for (size_t i = 0; i < sc->n && o == NULL; i++)
            if (strcmp(sc->opts[i].key, k) == 0)
                o = &sc->opts[i];
        if (o == NULL) {
            const char *best = NULL;
            int bestd = 3;
            for (size_t i = 0; i < sc->n; i++) {
                int d = distance(k, sc->opts[i].key);
                if (d < bestd)
                    bestd = d, best = sc->opts[i].key;
            }
            int r = best ? set_error(c, "unknown key (did you mean \"%s\"?)", best) : set_error(c, "unknown key");
            c->depth--;
            return r;
        }
        int r = set_value(o, v, base, c);
        c->depth--;
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < sc->n; i++) {
        if ((sc->opts[i].flags & F_REQUIRED) && json_object_get(obj, sc->opts[i].key) == NULL) {
            push_key(c, sc->opts[i].key);
            /* Point at the object itself: the key is absent. */
            c->depth--;
            char path[256];
            path_string(c, path, sizeof(path));
            int line = locate_line(c, c->depth);
            if (c->text != NULL)
                snprintf(c->err, c->errlen, "%s:%d: %s%s%s: required", c->file, line, path, path[0] ? "." : "", sc->opts[i].key);
            else
                snprintf(c->err, c->errlen, "%s: %s%s%s: required", c->file, path, path[0] ? "." : "", sc->opts[i].key);
            return -EINVAL;
        }
    }
    return 0;
}

/* Defaults go through the same setters as a command-line string would. */
static int set_from_string(const struct opt *o, const char *s, void *base, struct ctx *c);

static void apply_defaults(const struct schema *sc, void *base)
{
    char err[256];
    struct ctx c = {.file = "default", .err = err, .errlen = sizeof(err)};
    for (size_t i = 0; i < sc->n; i++) {
        const struct opt *o = &sc->opts[i];
        if (o->type == T_OBJ) {
            apply_defaults(o->sub, base);
        } else if (o->def != NULL) {
            push_key(&c, o->key);
            if (set_from_string(o, o->def, base, &c) < 0)
                abort(); /* a bad default in the table is a programming error */
            c.depth--;
        }
    }
}

static void free_schema(const struct schema *sc, void *base)
{
    for (size_t i = 0; i < sc->n; i++) {
        const struct opt *o = &sc->opts[i];
        switch (o->type) {
        case T_STR: {
            char **p = AT(base, o->off, char *);
            free(*p);
            *p = NULL;
            break;
        }
        case T_STRLIST: {
            char ***p = AT(base, o->off, char **);
            size_t *cnt = AT(base, o->count_off, size_t);
            for (size_t j = 0; j < *cnt; j++)
                free((*p)[j]);
            free(*p);
            *p = NULL;
            *cnt = 0;
            break;
        }
        case T_OBJ:
            free_schema(o->sub, base);
            break;
        case T_OBJLIST: {
            void **p = AT(base, o->off, void *);
            size_t *cnt = AT(base, o->count_off, size_t);
            for (size_t j = 0; j < *cnt; j++)
                free_schema(o->sub, (char *)*p + j * o->elem_size);
            free(*p);
            *p = NULL;
            *cnt = 0;
            break;
        }
        case T_STRMAP: {
            gg_config_alias_t **p = AT(base, o->off, gg_config_alias_t *);
            size_t *cnt = AT(base, o->count_off, size_t);
            for (size_t j = 0; j < *cnt; j++) {
                free((*p)[j].alias);
                free((*p)[j].model);
            }
            free(*p);
            *p = NULL;
            *cnt = 0;
            break;
        }
        case T_CUSTOM:
            if (o->free_fn != NULL)
                o->free_fn(base);
            else if (o->parse == parse_url) {
                char **p = AT(base, o->off, char *);
                free(*p);
                *p = NULL;
            }
            break;
        default:
            break;
        }
    }
}

static int set_from_string(const struct opt *o, const char *s, void *base, struct ctx *c)
{
    json_t *v = NULL;
    switch (o->type) {
    case T_BOOL:
        if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "on") == 0 || strcmp(s, "yes") == 0)
            v = json_true();
        else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcmp(s, "off") == 0 || strcmp(s, "no") == 0)
            v = json_false();
        else
            return set_error(c, "\"%s\" is not a boolean", s);
        break;
    case T_U32:
    case T_U64: {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (s[0] == '\0' || *end != '\0' || errno != 0)
            return set_error(c, "\"%s\" is not an integer", s);
        v = json_integer(n);
        break;
    }
    case T_DOUBLE: {
        char *end;
        double d = strtod(s, &end);
        if (s[0] == '\0' || *end != '\0')
            return set_error(c, "\"%s\" is not a number", s);
        v = json_real(isfinite(d) ? d : -1);
        break;
    }
    case T_CUSTOM:
        /* Custom options (trust_tenant_header) may take a boolean from the command line too. */
        if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)
            v = strcmp(s, "true") == 0 ? json_true() : json_false();
        else
            v = json_string(s);
        break;
    case T_STR:
    case T_ENUM:
    case T_STRLIST:
        v = json_string(s);
        break;
    default:
        return set_error(c, "cannot be set from the command line");
    }
    if (v == NULL)
        return set_error(c, "invalid value");
    int r = set_value(o, v, base, c);
    json_decref(v);
    return r;
}

/* --- custom options ------------------------------------------------------------------------------ */
static int parse_kind(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    if (!json_is_string(v))
        return set_error(c, "expected a string, got %s", json_type_name(v));
    int k = gg_engine_kind_parse(json_string_value(v));
    if (k < 0)
        return set_error(c, "\"%s\" is not one of auto|ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui", json_string_value(v));
    *AT(base, o->off, int) = k;
    return 0;
}

static int parse_url(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    char host[256], prefix[256];
    unsigned port;
    int is_unix;
    if (!json_is_string(v))
        return set_error(c, "expected a string, got %s", json_type_name(v));
    const char *s = json_string_value(v);
    int r = gg_httpc_parse_target(s, host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix);
    if (r == -EPROTONOSUPPORT)
        return set_error(c, "\"%s\": https backends are not supported", s);
    if (r < 0 || is_unix || strlen(s) >= sizeof(((gg_backend_t *)0)->url))
        return set_error(c, "\"%s\" is not http://HOST:PORT[/prefix]", s);
    char **dst = AT(base, o->off, char *);
    free(*dst);
    *dst = xstrdup(s);
    return 0;
}

static int check_admin_listen(const char *s)
{
    if (strncmp(s, "unix:", 5) == 0)
        return s[5] != '\0' && strlen(s + 5) < 108 ? 0 : -EINVAL;
    return gg_config_check_hostport(s);
}

static int parse_admin(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    gg_config_t *cfg = base;
    json_t *listen = v, *token = NULL;
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            if (strcmp(k, "listen") != 0 && strcmp(k, "token") != 0) {
                push_key(c, k);
                int r = set_error(c, "unknown key (admin takes \"listen\" and \"token\")");
                c->depth--;
                return r;
            }
        }
        listen = json_object_get(v, "listen");
        token = json_object_get(v, "token");
        if (listen == NULL) {
            push_key(c, "listen");
            int r = set_error(c, "required");
            c->depth--;
            return r;
        }
        if (token != NULL && (!json_is_string(token) || json_string_length(token) == 0)) {
            push_key(c, "token");
            int r = set_error(c, "expected a non-empty string");
            c->depth--;
            return r;
        }
        if (json_is_object(v))
            push_key(c, "listen");
    }
    int r = 0;
    if (!json_is_string(listen))
        r = set_error(c, "expected \"HOST:PORT\", \"unix:PATH\" or an object, got %s", json_type_name(listen));
    else if (check_admin_listen(json_string_value(listen)) != 0)
        r = set_error(c, "\"%s\" is not HOST:PORT or unix:PATH", json_string_value(listen));
    if (json_is_object(v))
        c->depth--;
    if (r < 0)
        return r;
    free(cfg->admin_listen);
    cfg->admin_listen = xstrdup(json_string_value(listen));
    if (token != NULL) {
        free(cfg->admin_token);
        cfg->admin_token = xstrdup(json_string_value(token));
    }
    return 0;
}

static void free_admin(void *base)
{
    gg_config_t *cfg = base;
    free(cfg->admin_listen);
    free(cfg->admin_token);
    cfg->admin_listen = cfg->admin_token = NULL;
}

static int parse_approve(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    const char *s = json_string_value(v);
    if (json_is_boolean(v) || (s != NULL && (strcmp(s, "auto") == 0 || strcmp(s, "manual") == 0))) {
        *AT(base, o->off, int) = json_is_true(v) || (s != NULL && strcmp(s, "auto") == 0);
        return 0;
    }
    return set_error(c, "expected \"auto\" or \"manual\"");
}

static int parse_splice_paths(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    uint32_t mask = 0;
    size_t i;
    json_t *e;
    if (json_is_string(v)) /* one path, from the command line */
        v = json_pack("[O]", v);
    else
        json_incref(v);
    if (!json_is_array(v) || json_array_size(v) == 0) {
        json_decref(v);
        return set_error(c, "expected a non-empty list of paths (to splice nothing, set bpf.splice_streams to false)");
    }
    json_array_foreach(v, i, e)
    {
        int k = json_is_string(e) ? gg_splice_path_index(json_string_value(e), json_string_length(e)) : -1;
        if (k < 0) {
            json_decref(v);
            return set_error(c, "[%zu]: not a streaming route (/v1/chat/completions, /v1/completions, /api/chat, /api/generate)",
                             i);
        }
        mask |= 1u << k;
    }
    json_decref(v);
    *AT(base, o->off, uint32_t) = mask;
    return 0;
}

static int parse_trust(const struct opt *o, json_t *v, void *base, struct ctx *c)
{
    gg_config_t *cfg = base;
    if (json_is_boolean(v)) {
        free_trust(base);
        cfg->trust_tenant_header = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) {
        /* From the command line a single CIDR arrives as a string. */
        json_t *arr = json_pack("[O]", v);
        int r = parse_trust(o, arr, base, c);
        json_decref(arr);
        return r;
    }
    if (!json_is_array(v))
        return set_error(c, "expected a boolean or an array of CIDRs, got %s", json_type_name(v));
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e) || gg_guard_parse_prefix(json_string_value(e), &(struct gg_guard_prefix){0}) != 0) {
            push_idx(c, (int)i);
            int r = json_is_string(e) ? set_error(c, "\"%s\" is not a CIDR (A.B.C.D/N or IPv6/N)", json_string_value(e))
                                      : set_error(c, "expected a CIDR string, got %s", json_type_name(e));
            c->depth--;
            return r;
        }
    }
    free_trust(base);
    cfg->n_trust_tenant_cidrs = json_array_size(v);
    cfg->trust_tenant_cidrs = xrealloc(NULL, cfg->n_trust_tenant_cidrs * sizeof(char *));
    for (size_t i = 0; i < cfg->n_trust_tenant_cidrs; i++)
        cfg->trust_tenant_cidrs[i] = xstrdup(json_string_value(json_array_get(v, i)));
    cfg->trust_tenant_header = cfg->n_trust_tenant_cidrs > 0;
    return 0;
}

static void free_trust(void *base)
{
    gg_config_t *cfg = base;
    for (size_t i = 0; i < cfg->n_trust_tenant_cidrs; i++)
        free(cfg->trust_tenant_cidrs[i]);
    free(cfg->trust_tenant_cidrs);
    cfg->trust_tenant_cidrs = NULL;
    cfg->n_trust_tenant_cidrs = 0;
    cfg->trust_tenant_header = 0;
}

/* --- cross-field validation ---------------------------------------------------------------------- */
static int err_at(struct ctx *c, const char *k1, int i1, const char *k2, int i2, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Error at path k1[i1].k2[i2] (i < 0: no index; k2 NULL: stop). */
static int err_at(struct ctx *c, const char *k1, int i1, const char *k2, int i2, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    c->depth = 0;
    push_key(c, k1);
    if (i1 >= 0)
        push_idx(c, i1);
    if (k2 != NULL) {
        push_key(c, k2);
        if (i2 >= 0)
            push_idx(c, i2);
    }
    return set_error(c, "%s", reason);
}

static int validate(gg_config_t *cfg, struct ctx *c)
{
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const char *ni = cfg->backends[i].name;
        if (ni != NULL && (ni[0] == '\0' || strlen(ni) >= sizeof(((gg_backend_t *)0)->name)))
            return err_at(c, "backends", (int)i, "name", -1, "must be 1..63 characters");
        for (size_t j = 0; j < i && ni != NULL; j++)
            if (cfg->backends[j].name != NULL && strcmp(cfg->backends[j].name, ni) == 0)
                return err_at(c, "backends", (int)i, "name", -1, "duplicate backend name \"%s\"", ni);
    }
    if (cfg->n_backends > GG_MAX_BACKENDS)
        return err_at(c, "backends", GG_MAX_BACKENDS, NULL, -1, "more than %d backends", GG_MAX_BACKENDS);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        gg_config_tenant_t *t = &cfg->tenants[i];
        if (strcmp(t->name, "default") == 0 && t->n_keys > 0)
            return err_at(c, "tenants", (int)i, "keys", -1, "tenant \"default\" takes no keys (it is the keyless tenant)");
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->tenants[j].name, t->name) == 0)
                return err_at(c, "tenants", (int)i, "name", -1, "duplicate tenant name \"%s\"", t->name);
        for (size_t k = 0; k < t->n_keys; k++)
            for (size_t j = 0; j <= i; j++)
                for (size_t l = 0; l < cfg->tenants[j].n_keys && (j < i || l < k); l++)
                    if (strcmp(cfg->tenants[j].keys[l], t->keys[k]) == 0)
                        return err_at(c, "tenants", (int)i, "keys", (int)k, "key already belongs to tenant \"%s\"",
                                      cfg->tenants[j].name);
    }
    for (size_t i = 0; i < cfg->n_listen; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->listen[i], cfg->listen[j]) == 0 && !cfg->listen_from_cli_)
                return err_at(c, "listen", c->text && cfg->n_listen > 1 ? (int)i : -1, NULL, -1, "duplicate \"%s\"",
                              cfg->listen[i]);
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        return err_at(c, "tls", -1, cfg->tls_cert ? "cert" : "key", -1, "tls needs both \"cert\" and \"key\"");
    for (size_t i = 0; i < cfg->routing.n_aliases; i++)
        if (strcmp(cfg->routing.aliases[i].alias, cfg->routing.aliases[i].model) == 0)
            return err_at(c, "routing", -1, "aliases", -1, "alias \"%s\" names itself", cfg->routing.aliases[i].alias);
    if (cfg->health.timeout_ms > cfg->health.interval_ms * 10)
        return err_at(c, "health", -1, "timeout_ms", -1, "%u is more than 10x interval_ms (%u)", cfg->health.timeout_ms,
                      cfg->health.interval_ms);
    if (cfg->health.max_cooldown_ms < cfg->health.cooldown_ms)
        cfg->health.max_cooldown_ms = cfg->health.cooldown_ms;
    for (size_t i = 0; i < cfg->bpf.xdp.n_interfaces; i++) {
        const char *n = cfg->bpf.xdp.interfaces[i];
        /* The kernel's own rule for interface names (dev_valid_name): 1..15 bytes, no '/', ':' or white space. */
        int bad = strlen(n) >= 16 || strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strpbrk(n, "/: \t\n\r\v\f") != NULL;
        for (size_t j = 0; j < i && !bad; j++)
            bad = strcmp(cfg->bpf.xdp.interfaces[j], n) == 0 ? 2 : 0;
        if (bad) {
            c->depth = 0;
            push_key(c, "bpf");
            push_key(c, "xdp");
            push_key(c, "interfaces");
            if (cfg->bpf.xdp.n_interfaces > 1 && c->text != NULL)
                push_idx(c, (int)i);
            return set_error(c,
                             bad == 2 ? "duplicate interface \"%s\""
                                      : "\"%s\" is not an interface name (1..15 characters, no '/', ':' or spaces)",
                             n);
        }
    }
    if (cfg->bpf.xdp.n_interfaces > GG_GUARD_MAX_IFACES) {
        c->depth = 0;
        push_key(c, "bpf");
        push_key(c, "xdp");
        push_key(c, "interfaces");
        return set_error(c, "more than %d interfaces", GG_GUARD_MAX_IFACES);
    }
    return 0;
}

/* --- public API ---------------------------------------------------------------------------------- */
void gg_config_init(gg_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    apply_defaults(&root_schema, cfg);
}

void gg_config_free(gg_config_t *cfg)
{
    free_schema(&root_schema, cfg);
    memset(cfg, 0, sizeof(*cfg));
}

int gg_config_parse_string(const char *text, size_t len, const char *name, gg_config_t *out, char *err, size_t errlen)
{
    struct ctx c = {.file = name ? name : "<string>", .text = text, .text_len = len, .err = err, .errlen = errlen};
    gg_config_init(out);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s:%d: (syntax): %s", c.file, jerr.line > 0 ? jerr.line : 1, jerr.text);
        gg_config_free(out);
        return -EINVAL;
    }
    int r;
    if (!json_is_object(root))
        r = set_error(&c, "expected an object, got %s", json_type_name(root));
    else
        r = parse_object(&root_schema, root, out, &c);
    if (r == 0)
        r = validate(out, &c);
    json_decref(root);
    if (r < 0)
        gg_config_free(out);
    return r;
}

int gg_config_load(const char *path, gg_config_t *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20)) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "%s: larger than 64 MiB", path);
                return -EFBIG;
            }
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        snprintf(err, errlen, "%s: read error", path);
        return -EIO;
    }
    int r = gg_config_parse_string(buf, len, path, out, err, errlen);
    free(buf);
    return r;
}

int gg_config_add_listen(gg_config_t *cfg, const char *hostport, char *err, size_t errlen)
{
    if (gg_config_check_hostport(hostport) != 0) {
        snprintf(err, errlen, "--listen: \"%s\" is not HOST:PORT", hostport);
        return -EINVAL;
    }
    if (!cfg->listen_from_cli_) {
        for (size_t i = 0; i < cfg->n_listen; i++)
            free(cfg->listen[i]);
        cfg->n_listen = 0;
        cfg->listen_from_cli_ = 1;
    }
    cfg->listen = xrealloc(cfg->listen, (cfg->n_listen + 1) * sizeof(char *));
    cfg->listen[cfg->n_listen++] = xstrdup(hostport);
    return 0;
}

int gg_config_add_backend_url(gg_config_t *cfg, const char *spec, char *err, size_t errlen)
{
    char *s = xstrdup(spec);
    char *frag = strchr(s, '#');
    if (frag != NULL)
        *frag++ = '\0';
    struct ctx c = {.file = "--backend", .err = err, .errlen = errlen};
    push_key(&c, spec);
    gg_config_backend_t b = {0};
    apply_defaults(&backend_schema, &b);
    json_t *u = json_string(s); /* NULL for text that is not UTF-8 */
    int r = u != NULL ? parse_url(&backend_opts[1], u, &b, &c) : set_error(&c, "the URL is not valid UTF-8");
    json_decref(u);
    /* Fragments are ';' or '#' separated key=value pairs naming backend options. */
    for (char *save = NULL, *kv = frag ? strtok_r(frag, "#;,", &save) : NULL; r == 0 && kv != NULL;
         kv = strtok_r(NULL, "#;,", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            r = set_error(&c, "\"%s\" is not KEY=VALUE", kv);
            break;
        }
        *eq = '\0';
        const struct opt *o = NULL;
        for (size_t i = 0; i < backend_schema.n; i++)
            if (strcmp(backend_opts[i].key, kv) == 0 && strcmp(kv, "url") != 0)
                o = &backend_opts[i];
        if (o == NULL) {
            r = set_error(&c, "unknown option \"%s\" (kind, name, weight, max_inflight)", kv);
            break;
        }
        r = set_from_string(o, eq + 1, &b, &c);
    }
    free(s);
    if (r < 0) {
        free_schema(&backend_schema, &b);
        return r;
    }
    cfg->backends = xrealloc(cfg->backends, (cfg->n_backends + 1) * sizeof(b));
    cfg->backends[cfg->n_backends++] = b;
    return 0;
}

static const struct opt *find_opt(const struct schema *sc, const char *key)
{
    const char *dot = strchr(key, '.');
    size_t kl = dot ? (size_t)(dot - key) : strlen(key);
    for (size_t i = 0; i < sc->n; i++) {
        const struct opt *o = &sc->opts[i];
        if (strlen(o->key) != kl || strncmp(o->key, key, kl) != 0)
            continue;
        if (dot == NULL)
            return o->type == T_OBJ ? NULL : o;
        return o->type == T_OBJ ? find_opt(o->sub, dot + 1) : NULL;
    }
    return NULL;
}

int gg_config_set(gg_config_t *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    struct ctx c = {.file = "command line", .err = err, .errlen = errlen};
    push_key(&c, key);
    const struct opt *o = find_opt(&root_schema, key);
    if (o == NULL)
        return set_error(&c, "unknown option");
    if (o->type == T_STRLIST && (o->flags & F_HOSTPORT) && o->off == CFG(listen))
        cfg->listen_from_cli_ = 1;
    return set_from_string(o, value, cfg, &c);
}

int gg_config_finish(gg_config_t *cfg, char *err, size_t errlen)
{
    struct ctx c = {.file = "config", .err = err, .errlen = errlen};
    if (cfg->n_listen == 0) {
        snprintf(err, errlen, "config: listen: at least one listener is needed");
        return -EINVAL;
    }
    return validate(cfg, &c);
}

/* --- generated reference ------------------------------------------------------------------------- */
static const char *type_name(const struct opt *o)
{
    switch (o->type) {
    case T_BOOL:
        return "bool";
    case T_U32:
    case T_U64:
        return "integer";
    case T_DOUBLE:
        return "number";
    case T_STR:
        return "string";
    case T_ENUM:
        return "enum";
    case T_STRLIST:
        return (o->flags & F_SCALAR_OK) ? "string|[string]" : "[string]";
    case T_OBJ:
        return "object";
    case T_OBJLIST:
        return "[object]";
    case T_STRMAP:
        return "{string:string}";
    case T_CUSTOM:
        return o->type_doc;
    }
    return "?";
}

static void print_schema(FILE *out, const struct schema *sc, const char *prefix)
{
    for (size_t i = 0; i < sc->n; i++) {
        const struct opt *o = &sc->opts[i];
        char key[128], extra[96] = "";
        snprintf(key, sizeof(key), "%s%s%s", prefix, o->key, o->type == T_OBJLIST ? "[]" : "");
        if (o->type == T_U32 || o->type == T_U64 || o->type == T_DOUBLE)
            snprintf(extra, sizeof(extra), " [%g..%g]", o->min, o->max);
        if (o->def != NULL)
            snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " default %s", o->def);
        if (o->flags & F_REQUIRED)
            snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " required");
        fprintf(out, "  %-34s %-16s %s%s\n", key, type_name(o), o->doc, extra);
        if (o->type == T_OBJ || o->type == T_OBJLIST) {
            char sub[160];
            snprintf(sub, sizeof(sub), "%s.", key);
            print_schema(out, o->sub, sub);
        }
    }
}

void gg_config_print_doc(FILE *out)
{
    fprintf(out, "Config file keys (JSON; unknown keys are errors):\n");
    print_schema(out, &root_schema, "");
}
