/* The ingress guard (control side of bpf/ingress.bpf.c): loads and pins its maps next to the kernel assist's, attaches
 * the XDP SYN guard to the configured interfaces (native, else generic), fills the listen ports, installs the
 * sk_reuseport least-loaded worker pick, manages the deny and allow prefixes, and turns repeated authentication
 * failures of one source into a timed deny. Everything is a no-op when BPF is off or unavailable. */
#ifndef GG_GUARD_H
#define GG_GUARD_H

#include <jansson.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gridgate/config.h"
#include "gridgate/ingress_abi.h"

/** Keeps the settings the guard needs (copied; call before gg_bpf_init). */
void gg_guard_configure(const gg_config_t *cfg);
/** Loads bpf/ingress.bpf.o and pins its maps under pin_path (gg_bpf_init calls it once the kernel assist is up).
 * 0 or -errno; a failure leaves the guard off and logs why. */
int gg_guard_load(const char *pin_path);
/** The data plane's listeners, as gg_server_listeners() describes them. */
typedef struct gg_guard_listeners {
    unsigned workers;
    size_t groups; /* listen addresses; each has one SO_REUSEPORT listener per worker */
    uint16_t port[GG_GUARD_MAX_LISTEN];
    int fd[GG_GUARD_MAX_LISTEN][GG_GUARD_MAX_WORKERS];
} gg_guard_listeners_t;

/** After the listeners exist: publishes their ports, installs the reuseport pick (bpf.reuseport) and attaches XDP to
 * bpf.xdp.interfaces. -errno only when an interface cannot be attached and bpf.mode is on. */
int gg_guard_start(const gg_guard_listeners_t *l);
/** The mmapped per-worker open-connection counts the reuseport pick reads ([GG_GUARD_MAX_WORKERS], atomic adds), or
 * NULL when the guard is not loaded. Valid until gg_guard_shutdown, which must come after the workers stopped. */
uint64_t *gg_guard_conn_counts(void);
/** Detaches XDP and reuseport, unloads (pinned maps stay). */
void gg_guard_shutdown(void);
/** 1 when the guard's maps are loaded. */
int gg_guard_loaded(void);

/** "ADDR" or "ADDR/LEN", IPv4 or IPv6, into a trie key (IPv4 v4-mapped, host bits cleared). 0 or -EINVAL. */
int gg_guard_parse_prefix(const char *s, struct gg_guard_prefix *out);
/** Formats a trie key back as the operator wrote it ("10.0.0.0/24", "2001:db8::/32", a bare address for /32 and /128). */
void gg_guard_format_prefix(const struct gg_guard_prefix *p, char *out, size_t outlen);

/** Drops SYNs from prefix for `seconds` (0: until removed). 0, -EINVAL (bad prefix, message in err), -ENOTSUP (guard
 * off), -ENOSPC or another -errno. */
int gg_guard_deny(const char *prefix, uint32_t seconds, char *err, size_t errlen);
/** Lets SYNs from prefix through every rule. */
int gg_guard_allow(const char *prefix, char *err, size_t errlen);
/** Removes prefix from the deny and allow lists; -ENOENT when it was in neither. */
int gg_guard_remove(const char *prefix, char *err, size_t errlen);
/** {"enabled", "deny": [{prefix, seconds_left|null}], "allow": [{prefix}]} */
json_t *gg_guard_list_json(void);
/** {"enabled", "interfaces": [{name, mode}], "reuseport", "counters": {reason: n}, "workers": [conns]} */
json_t *gg_guard_stats_json(void);

/** Data plane: a request from sa failed authentication. After bpf.xdp.auth_fail_limit of them within
 * auth_fail_window_s the source is denied for deny_seconds. Only this failure path takes a (striped) lock. */
void gg_guard_auth_failed(const struct sockaddr *sa);
#endif
