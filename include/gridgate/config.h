/* gridgate's configuration: one table of options (key path, type, bounds, default, doc) in control/config.c
 * drives JSON parsing, defaults, validation and the generated reference (gg_config_print_doc).
 *
 * Errors are "FILE:LINE: KEY: REASON" (KEY is the full path, e.g. "backends[1].kind"). Syntax errors take
 * jansson's line; for semantic errors the line is found by walking the (already valid) JSON text along the
 * key's path, so it is the line of the offending key (or array element). Only the first error is reported.
 *
 * Order of use in main(): gg_config_init (defaults) or gg_config_load (defaults + file), then the command
 * line through gg_config_add_listen / gg_config_add_backend_url / gg_config_set, then gg_config_finish. */
#ifndef GG_CONFIG_H
#define GG_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct gg_config_backend {
    char *name; /* may be NULL: the registry names it HOST:PORT */
    char *url;
    int kind; /* enum gg_engine_kind; GG_ENGINE_UNKNOWN = detect */
    uint32_t weight;
    uint32_t max_inflight; /* 0 = derive from the engine */
} gg_config_backend_t;

typedef struct gg_config_tenant {
    char *name;
    char **keys;
    size_t n_keys;
    uint32_t weight;
    uint32_t priority;
    double rate_requests_per_s; /* 0 = unlimited */
    uint32_t rate_burst;
    uint64_t rate_tokens_per_min; /* 0 = unlimited */
    uint32_t max_inflight;        /* 0 = unlimited */
    uint32_t max_queue;
} gg_config_tenant_t;

typedef struct gg_config_alias {
    char *alias;
    char *model;
} gg_config_alias_t;

enum gg_bpf_mode { GG_BPF_AUTO, GG_BPF_ON, GG_BPF_OFF };
#define GG_GUARD_MAX_IFACES 8 /* bpf.xdp.interfaces */

typedef struct gg_config {
    char **listen; /* "HOST:PORT" */
    size_t n_listen;
    char *admin_listen; /* "HOST:PORT" or "unix:PATH"; NULL = no admin listener */
    char *admin_token;  /* NULL = no token required */
    uint32_t threads;   /* 0 = number of CPUs */

    gg_config_backend_t *backends;
    size_t n_backends;
    gg_config_tenant_t *tenants;
    size_t n_tenants;

    struct {
        gg_config_alias_t *aliases;
        size_t n_aliases;
        int affinity;      /* prefer the backend that served the tenant/prefix before */
        int prefer_loaded; /* prefer backends that have the model in memory */
        uint32_t retries;  /* retries on another backend before the first byte */
        uint32_t queue_ms; /* how long a request may wait for capacity */
    } routing;
    struct {
        uint32_t interval_ms, timeout_ms, fail_threshold, recover_threshold, cooldown_ms, max_cooldown_ms;
    } health;
    struct {
        int main_listener; /* also serve /ui and its read-only status JSON on the client listeners */
    } status_page;
    struct {
        uint32_t connect_ms, first_byte_ms, idle_ms;
    } timeouts;
    struct {
        uint64_t max_body_bytes;
        uint32_t max_connections;
        uint32_t max_queue; /* global queued requests */
    } limits;
    char **require_models;
    size_t n_require_models;
    char *tls_cert, *tls_key;
    char *access_log; /* path, "-" for stderr, NULL = off */
    char *log_level;  /* error|warn|info|debug */
    int trust_tenant_header;
    char **trust_tenant_cidrs; /* when trust_tenant_header was a list: trusted only from these */
    size_t n_trust_tenant_cidrs;
    struct {
        int mode;              /* enum gg_bpf_mode */
        int splice_streams;    /* splice SSE/NDJSON responses in-kernel (backend connections join the sockmap) */
        int splice_tunnels;    /* splice upgraded connections (WebSocket, any 101) in-kernel */
        uint32_t splice_paths; /* ...of these client paths (bit i: gg_splice_path_index i; 0: all) */
        char *pin_path;
        struct {
            char **interfaces; /* XDP guard attached here (none: not attached) */
            size_t n_interfaces;
            double syn_rate;    /* SYNs per second per source (0: no bucket) */
            uint32_t syn_burst; /* SYNs a source may send at once */
            /* auth_fail_limit failures within auth_fail_window_s: denied for deny_seconds (limit 0: off) */
            uint32_t auth_fail_limit, auth_fail_window_s, deny_seconds;
        } xdp;
        int reuseport; /* least-loaded worker pick for new connections */
    } bpf;
    struct {
        char *token; /* NULL = registration disabled */
        int approve; /* auto-approve registered agents */
        uint32_t heartbeat_ms, missed_beats, ttl_ms;
    } registration;
    struct {
        uint32_t min_bytes, level; /* response compression: threshold and zlib level (0 = off) */
        int stream;                /* compress SSE/NDJSON streams too */
        uint64_t max_inflated_bytes;
        uint32_t max_ratio; /* gzip request bodies: limits (0 = no ratio limit) */
    } compression;

    int listen_from_cli_; /* internal: the first gg_config_add_listen replaces file/default values */
} gg_config_t;

/** Fills defaults (listen 127.0.0.1:8080 etc.). */
void gg_config_init(gg_config_t *cfg);
/** init + parse the JSON file + validate. Returns 0 or -errno with "FILE:LINE: KEY: REASON" in err. */
int gg_config_load(const char *path, gg_config_t *out, char *err, size_t errlen);
/** Same from a string; name is used as FILE in messages. */
int gg_config_parse_string(const char *text, size_t len, const char *name, gg_config_t *out, char *err, size_t errlen);
void gg_config_free(gg_config_t *cfg);

/** --listen: the first call replaces the listen list from the file or defaults, later calls append. */
int gg_config_add_listen(gg_config_t *cfg, const char *hostport, char *err, size_t errlen);
/** --backend URL[#kind=K][#name=N][#weight=W][#max_inflight=M]: appends a backend. */
int gg_config_add_backend_url(gg_config_t *cfg, const char *spec, char *err, size_t errlen);
/** Sets one scalar option by key path from a string, validated by the table:
 *  gg_config_set(cfg, "threads", "4"), ("bpf.mode", "off"), ("bpf.pin_path", ...), ("log_level", ...),
 *  ("admin", "unix:/run/gg.sock"), ("health.interval_ms", "500"). Returns 0 or -EINVAL with "KEY: REASON". */
int gg_config_set(gg_config_t *cfg, const char *key, const char *value, char *err, size_t errlen);
/** Cross-field checks after the command line (duplicate names/keys, tls cert without key, ...). */
int gg_config_finish(gg_config_t *cfg, char *err, size_t errlen);

/** Prints the option reference (key, type, default, bounds, doc), generated from the table. */
void gg_config_print_doc(FILE *out);
/** Checks "HOST:PORT" (IPv4, [IPv6] or a name; port 0..65535). Returns 0 or -EINVAL. */
int gg_config_check_hostport(const char *s);
#endif
