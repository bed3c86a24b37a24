/* The ingress guard's control side (see guard.h): the libbpf-bootstrap lifecycle of bpf/ingress.bpf.c (open ->
 * load -> attach -> destroy) with its maps pinned by name beside the kernel assist's, the deny/allow tries, the
 * XDP links (bpf_link: they go away with the process, so a crash never leaves a guard attached), the sk_reuseport
 * program on each listen group, and the per-source authentication failure counts that end in a timed deny. */
#include "gridgate/guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "gridgate/bpf.h"
#include "gridgate/buf.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "ingress.skel.h"

static const char *const pinned_maps[] = {"guard_deny",  "guard_allow", "guard_bucket", "guard_cfg",
                                          "guard_ports", "guard_stats", "worker_load"};
static const char *const stat_names[GG_GUARD_STAT_COUNT] = {"passed", "not_syn",      "not_ours", "allowed",
                                                            "denied", "rate_limited", "malformed"};

static struct {
    int mode; /* enum gg_bpf_mode */
    char ifaces[GG_GUARD_MAX_IFACES][IF_NAMESIZE];
    size_t n_ifaces;
    double syn_rate;
    uint32_t syn_burst, auth_fail_limit, auth_fail_window_s, deny_seconds;
    int reuseport;
} conf;

static struct ingress *skel;
static int fd_deny = -1, fd_allow = -1;
static struct {
    int ifindex, link_fd;
    const char *mode;
} xdp[GG_GUARD_MAX_IFACES];
static size_t n_xdp;
static uint64_t *load_view; /* the mmapped worker_load array */
static size_t load_len;
static int reuseport_on;
static unsigned n_workers;

void gg_guard_configure(const gg_config_t *cfg)
{
    conf.mode = cfg->bpf.mode;
    conf.n_ifaces = 0;
    for (size_t i = 0; i < cfg->bpf.xdp.n_interfaces && i < GG_GUARD_MAX_IFACES; i++)
        snprintf(conf.ifaces[conf.n_ifaces++], IF_NAMESIZE, "%s", cfg->bpf.xdp.interfaces[i]);
    conf.syn_rate = cfg->bpf.xdp.syn_rate;
    conf.syn_burst = cfg->bpf.xdp.syn_burst ? cfg->bpf.xdp.syn_burst : 1;
    conf.auth_fail_limit = cfg->bpf.xdp.auth_fail_limit;
    conf.auth_fail_window_s = cfg->bpf.xdp.auth_fail_window_s ? cfg->bpf.xdp.auth_fail_window_s : 60;
    conf.deny_seconds = cfg->bpf.xdp.deny_seconds;
    conf.reuseport = cfg->bpf.reuseport;
}

int gg_guard_loaded(void)
{
    return skel != NULL;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- metrics ------------------------------------------------------------------------------------- */

static int read_stats(uint64_t out[GG_GUARD_STAT_COUNT])
{
    memset(out, 0, sizeof(uint64_t) * GG_GUARD_STAT_COUNT);
    if (skel == NULL)
        return -ENOTSUP;
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0)
        return -EIO;
    uint64_t *per = calloc((size_t)ncpu, sizeof(uint64_t));
    if (per == NULL)
        abort();
    for (uint32_t k = 0; k < GG_GUARD_STAT_COUNT; k++) {
        if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.guard_stats), &k, per) != 0)
            continue;
        for (int c = 0; c < ncpu; c++)
            out[k] += per[c];
    }
    free(per);
    return 0;
}

static void render_metrics(gg_buf_t *out)
{
    if (skel == NULL)
        return;
    uint64_t s[GG_GUARD_STAT_COUNT];
    read_stats(s);
    gg_buf_appendf(out,
                   "# HELP gridgate_guard_drops_total SYNs the XDP guard dropped, by reason.\n"
                   "# TYPE gridgate_guard_drops_total counter\n"
                   "gridgate_guard_drops_total{reason=\"denied\"} %llu\n"
                   "gridgate_guard_drops_total{reason=\"rate_limited\"} %llu\n",
                   (unsigned long long)s[GG_GUARD_DENIED], (unsigned long long)s[GG_GUARD_RATE_LIMITED]);
    gg_buf_appendf(out, "# HELP gridgate_guard_packets_total Packets the XDP guard saw, by what it decided.\n"
                        "# TYPE gridgate_guard_packets_total counter\n");
    for (int k = 0; k < GG_GUARD_STAT_COUNT; k++)
        gg_buf_appendf(out, "gridgate_guard_packets_total{reason=\"%s\"} %llu\n", stat_names[k], (unsigned long long)s[k]);
}

/* --- loading ------------------------------------------------------------------------------------- */

static void write_cfg(void)
{
    struct gg_guard_cfg c = {.abi_version = GG_GUARD_ABI_VERSION, .syn_burst = conf.syn_burst};
    if (conf.syn_rate > 0) {
        double iv = 1e9 / conf.syn_rate;
        c.interval_ns = iv < 1 ? 1 : (uint64_t)iv;
        c.tolerance_ns = (uint64_t)(conf.syn_burst - 1) * c.interval_ns;
        c.syn_rate = conf.syn_rate < 1 ? 1 : (uint32_t)conf.syn_rate;
    }
    c.n_workers = reuseport_on ? n_workers : 0;
    uint32_t key = 0;
    bpf_map_update_elem(bpf_map__fd(skel->maps.guard_cfg), &key, &c, BPF_ANY);
}

int gg_guard_load(const char *pin_path)
{
    static int collector;
    if (!collector++)
        gg_metrics_add_collector(render_metrics);
    const char *what = "removing stale pinned maps";
    /* Pinned guard maps of another ABI are removed so libbpf creates them afresh. */
    int rc =
        gg_bpf_check_pins(pin_path, "guard_cfg", GG_GUARD_ABI_VERSION, pinned_maps, sizeof(pinned_maps) / sizeof(pinned_maps[0]));
    if (rc < 0)
        goto fail;
    int reused = rc;
    LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_path);
    skel = ingress__open_opts(&oo);
    if (skel == NULL) {
        rc = -errno;
        what = "open";
        goto fail;
    }
    if ((rc = ingress__load(skel)) != 0) {
        what = "load";
        goto cleanup;
    }
    load_len = (sizeof(struct gg_guard_load) * GG_GUARD_MAX_WORKERS + 4095) & ~(size_t)4095;
    load_view = mmap(NULL, load_len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel->maps.worker_load), 0);
    if (load_view == MAP_FAILED) {
        load_view = NULL;
        rc = -errno;
        what = "mmap worker_load";
        goto cleanup;
    }
    fd_deny = bpf_map__fd(skel->maps.guard_deny);
    fd_allow = bpf_map__fd(skel->maps.guard_allow);
    /* Ports and loads describe the previous run's listeners and workers; deny, allow and buckets stay. */
    int fd_ports = bpf_map__fd(skel->maps.guard_ports);
    uint32_t k, next;
    for (int more = bpf_map_get_next_key(fd_ports, NULL, &k) == 0; more; k = next) {
        more = bpf_map_get_next_key(fd_ports, &k, &next) == 0;
        bpf_map_delete_elem(fd_ports, &k);
    }
    memset(load_view, 0, sizeof(struct gg_guard_load) * GG_GUARD_MAX_WORKERS);
    /* Buckets keep a source's debt across a restart, unless the rate or burst they were measured against changed. */
    struct gg_guard_cfg old = {0};
    uint32_t zero = 0;
    bpf_map_lookup_elem(bpf_map__fd(skel->maps.guard_cfg), &zero, &old);
    write_cfg();
    struct gg_guard_cfg cur = {0};
    bpf_map_lookup_elem(bpf_map__fd(skel->maps.guard_cfg), &zero, &cur);
    if (old.interval_ns != cur.interval_ns || old.tolerance_ns != cur.tolerance_ns) {
        struct gg_guard_src a;
        int fd_b = bpf_map__fd(skel->maps.guard_bucket);
        for (int i = 0; i < GG_GUARD_MAX_SOURCES && bpf_map_get_next_key(fd_b, NULL, &a) == 0; i++)
            bpf_map_delete_elem(fd_b, &a);
    }
    gg_info("guard: ingress maps %s %s (ABI %u)", reused ? "reused from" : "pinned in", pin_path, GG_GUARD_ABI_VERSION);
    return 0;
cleanup:
    ingress__destroy(skel);
    skel = NULL;
fail:
    gg_warn("guard: cannot load the ingress guard (%s: %s); XDP guard and reuseport pick off", what, strerror(-rc));
    return rc < 0 ? rc : -EINVAL;
}

/* The reuseport group of every listen address gets the pick; any failure leaves the kernel's hash in charge. */
static int start_reuseport(const gg_guard_listeners_t *l)
{
    int prog = bpf_program__fd(skel->progs.gg_pick_worker);
    int fd_socks = bpf_map__fd(skel->maps.listeners), fd_grp = bpf_map__fd(skel->maps.listener_grp);
    for (size_t g = 0; g < l->groups; g++) {
        int fd0 = l->fd[g][0];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (fd0 < 0 || getsockname(fd0, (struct sockaddr *)&ss, &sl) == -1)
            return -EINVAL;
        uint32_t key = (uint32_t)ss.ss_family << 16 | l->port[g], gi = (uint32_t)g;
        if (bpf_map_update_elem(fd_grp, &key, &gi, BPF_NOEXIST) != 0)
            return -errno; /* two listen addresses with one family and port: the kernel's hash serves them */
        for (unsigned w = 0; w < l->workers; w++) {
            uint32_t idx = (uint32_t)g * GG_GUARD_MAX_WORKERS + w;
            uint64_t fd = (uint64_t)l->fd[g][w];
            if (bpf_map_update_elem(fd_socks, &idx, &fd, BPF_ANY) != 0)
                return -errno;
        }
        if (setsockopt(fd0, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)) == -1)
            return -errno;
    }
    return 0;
}

static int attach_xdp(const char *name)
{
    int ifindex = (int)if_nametoindex(name);
    if (ifindex == 0) {
        gg_warn("guard: interface %s: %s", name, strerror(errno));
        return -ENODEV;
    }
    int prog = bpf_program__fd(skel->progs.gg_guard);
    LIBBPF_OPTS(bpf_link_create_opts, native, .flags = XDP_FLAGS_DRV_MODE);
    int fd = bpf_link_create(prog, ifindex, BPF_XDP, &native);
    const char *mode = "native";
    int native_err = fd < 0 ? errno : 0;
    if (fd < 0) {
        LIBBPF_OPTS(bpf_link_create_opts, generic, .flags = XDP_FLAGS_SKB_MODE);
        fd = bpf_link_create(prog, ifindex, BPF_XDP, &generic);
        mode = "generic";
    }
    if (fd < 0) {
        int e = errno;
        gg_warn("guard: cannot attach XDP to %s: %s", name, strerror(e));
        return -e;
    }
    xdp[n_xdp].ifindex = ifindex;
    xdp[n_xdp].link_fd = fd;
    xdp[n_xdp].mode = mode;
    n_xdp++;
    if (native_err)
        gg_info("guard: XDP on %s in generic mode (native: %s)", name, strerror(native_err));
    else
        gg_info("guard: XDP on %s in native mode", name);
    return 0;
}

uint64_t *gg_guard_conn_counts(void)
{
    return load_view;
}

int gg_guard_start(const gg_guard_listeners_t *l)
{
    if (skel == NULL)
        return 0;
    if (l->workers > GG_GUARD_MAX_WORKERS || l->groups > GG_GUARD_MAX_LISTEN)
        return -EINVAL;
    n_workers = l->workers;
    int fd_ports = bpf_map__fd(skel->maps.guard_ports);
    for (size_t g = 0; g < l->groups; g++) {
        uint32_t port = l->port[g], one = 1;
        bpf_map_update_elem(fd_ports, &port, &one, BPF_ANY);
    }
    if (conf.reuseport && l->workers > 1) {
        int rc = start_reuseport(l);
        reuseport_on = rc == 0;
        if (rc != 0)
            gg_warn("guard: reuseport pick not installed (%s); the kernel's hash spreads connections", strerror(-rc));
        else
            gg_info("guard: new connections go to the least-loaded of %u workers (sk_reuseport)", l->workers);
    }
    write_cfg();
    for (size_t i = 0; i < conf.n_ifaces; i++) {
        int rc = attach_xdp(conf.ifaces[i]);
        if (rc != 0 && conf.mode == GG_BPF_ON) {
            gg_error("guard: --bpf on but XDP cannot attach to %s", conf.ifaces[i]);
            return rc;
        }
    }
    return 0;
}

void gg_guard_shutdown(void)
{
    if (skel == NULL)
        return;
    for (size_t i = 0; i < n_xdp; i++)
        close(xdp[i].link_fd);
    n_xdp = 0;
    /* The workers' loops have stopped, so no connection count changes after the unmap. */
    if (load_view != NULL)
        munmap(load_view, load_len);
    load_view = NULL;
    ingress__destroy(skel);
    skel = NULL;
    fd_deny = fd_allow = -1;
}

/* --- prefixes ------------------------------------------------------------------------------------ */

int gg_guard_parse_prefix(const char *s, struct gg_guard_prefix *out)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(out, 0, sizeof(*out));
    unsigned max;
    if (inet_pton(AF_INET, addr, &out->addr[12]) == 1) {
        out->addr[10] = out->addr[11] = 0xff;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        max = 128;
    } else {
        return -EINVAL;
    }
    unsigned len = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return -EINVAL;
        len = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -EINVAL;
            len = len * 10 + (unsigned)(*p - '0');
        }
        if (len > max)
            return -EINVAL;
    }
    out->prefixlen = len + (128 - max);
    /* Host bits are cleared so one prefix has one key however it was written. */
    for (unsigned b = out->prefixlen; b < 128; b++)
        out->addr[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
    return 0;
}

void gg_guard_format_prefix(const struct gg_guard_prefix *p, char *out, size_t outlen)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char a[INET6_ADDRSTRLEN];
    int v4 = p->prefixlen >= 96 && memcmp(p->addr, mapped, 12) == 0;
    unsigned len = v4 ? p->prefixlen - 96 : p->prefixlen;
    inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? &p->addr[12] : p->addr, a, sizeof(a));
    if (len == (v4 ? 32u : 128u))
        snprintf(out, outlen, "%s", a);
    else
        snprintf(out, outlen, "%s/%u", a, len);
}

static int prefix_arg(const char *s, struct gg_guard_prefix *k, char *err, size_t errlen)
{
    if (skel == NULL) {
        snprintf(err, errlen, "the ingress guard is not loaded (needs BPF: --bpf auto|on as root)");
        return -ENOTSUP;
    }
    if (s == NULL || gg_guard_parse_prefix(s, k) != 0) {
        snprintf(err, errlen, "prefix: expected ADDR or ADDR/LEN (IPv4 or IPv6), got \"%.64s\"", s ? s : "");
        return -EINVAL;
    }
    return 0;
}

/* Removes deny entries whose time has passed (the program already ignores them; this frees their room). */
static void prune_expired(void)
{
    uint64_t now = mono_ns();
    struct gg_guard_prefix k, next;
    for (int more = bpf_map_get_next_key(fd_deny, NULL, &k) == 0; more; k = next) {
        more = bpf_map_get_next_key(fd_deny, &k, &next) == 0;
        struct gg_guard_deny v;
        if (bpf_map_lookup_elem(fd_deny, &k, &v) == 0 && v.until_ns != 0 && v.until_ns <= now)
            bpf_map_delete_elem(fd_deny, &k);
    }
}

static int deny_key(const struct gg_guard_prefix *k, uint32_t seconds)
{
    uint64_t now = mono_ns();
    struct gg_guard_deny v = {.until_ns = seconds ? now + (uint64_t)seconds * 1000000000ull : 0, .added_ns = now};
    if (bpf_map_update_elem(fd_deny, k, &v, BPF_ANY) == 0)
        return 0;
    if (errno != ENOSPC && errno != E2BIG)
        return -errno;
    /* Full: timed denies (most of them from authentication failures) may have run out since the last listing. */
    prune_expired();
    return bpf_map_update_elem(fd_deny, k, &v, BPF_ANY) == 0 ? 0 : -errno;
}

int gg_guard_deny(const char *prefix, uint32_t seconds, char *err, size_t errlen)
{
    struct gg_guard_prefix k;
    int rc = prefix_arg(prefix, &k, err, errlen);
    if (rc == 0 && (rc = deny_key(&k, seconds)) != 0)
        snprintf(err, errlen, "guard_deny: %s", strerror(-rc));
    return rc;
}

int gg_guard_allow(const char *prefix, char *err, size_t errlen)
{
    struct gg_guard_prefix k;
    int rc = prefix_arg(prefix, &k, err, errlen);
    if (rc != 0)
        return rc;
    struct gg_guard_allow v = {.added_ns = mono_ns()};
    if (bpf_map_update_elem(fd_allow, &k, &v, BPF_ANY) != 0) {
        rc = -errno;
        snprintf(err, errlen, "guard_allow: %s", strerror(-rc));
    }
    return rc;
}

int gg_guard_remove(const char *prefix, char *err, size_t errlen)
{
    struct gg_guard_prefix k;
    int rc = prefix_arg(prefix, &k, err, errlen);
    if (rc != 0)
        return rc;
    int a = bpf_map_delete_elem(fd_deny, &k) == 0, b = bpf_map_delete_elem(fd_allow, &k) == 0;
    if (!a && !b) {
        snprintf(err, errlen, "%s is on neither the deny nor the allow list", prefix);
        return -ENOENT;
    }
    return 0;
}

json_t *gg_guard_list_json(void)
{
    json_t *deny = json_array(), *allow = json_array();
    if (skel != NULL) {
        prune_expired();
        uint64_t now = mono_ns();
        struct gg_guard_prefix k, next;
        char s[64];
        for (int more = bpf_map_get_next_key(fd_deny, NULL, &k) == 0; more; k = next) {
            more = bpf_map_get_next_key(fd_deny, &k, &next) == 0;
            struct gg_guard_deny v;
            if (bpf_map_lookup_elem(fd_deny, &k, &v) != 0)
                continue;
            if (v.until_ns != 0 && v.until_ns <= now)
                continue; /* expired: pruned below */
            gg_guard_format_prefix(&k, s, sizeof(s));
            json_array_append_new(
                deny,
                json_pack("{s:s, s:o}", "prefix", s, "seconds_left",
                          v.until_ns ? json_integer((json_int_t)((v.until_ns - now + 999999999) / 1000000000)) : json_null()));
        }
        for (int more = bpf_map_get_next_key(fd_allow, NULL, &k) == 0; more; k = next) {
            more = bpf_map_get_next_key(fd_allow, &k, &next) == 0;
            gg_guard_format_prefix(&k, s, sizeof(s));
            json_array_append_new(allow, json_pack("{s:s}", "prefix", s));
        }
    }
    return json_pack("{s:b, s:o, s:o}", "enabled", skel != NULL, "deny", deny, "allow", allow);
}

json_t *gg_guard_stats_json(void)
{
    json_t *counters = json_object(), *ifs = json_array(), *workers = json_array();
    uint64_t s[GG_GUARD_STAT_COUNT];
    if (read_stats(s) == 0)
        for (int k = 0; k < GG_GUARD_STAT_COUNT; k++)
            json_object_set_new(counters, stat_names[k], json_integer((json_int_t)s[k]));
    for (size_t i = 0; i < n_xdp; i++) {
        char name[IF_NAMESIZE] = "?";
        if_indextoname((unsigned)xdp[i].ifindex, name);
        json_array_append_new(ifs, json_pack("{s:s, s:s}", "name", name, "mode", xdp[i].mode));
    }
    for (unsigned w = 0; load_view != NULL && w < n_workers; w++)
        json_array_append_new(workers, json_integer((json_int_t)__atomic_load_n(&load_view[w], __ATOMIC_RELAXED)));
    return json_pack("{s:b, s:o, s:b, s:f, s:i, s:o, s:o}", "enabled", skel != NULL, "interfaces", ifs, "reuseport", reuseport_on,
                     "syn_rate", conf.syn_rate, "syn_burst", (int)conf.syn_burst, "counters", counters, "worker_connections",
                     workers);
}

/* --- authentication failures --------------------------------------------------------------------- */

/* A direct-mapped table of recent failing sources: a colliding source takes over a slot whose window has passed, or
 * else shares the newer one's count for this window (an overcount only for sources that are failing anyway). */
#define AFAIL_SLOTS 4096
#define AFAIL_STRIPES 64
static struct afail {
    uint8_t addr[16];
    uint64_t window_start_ns;
    uint32_t count;
} afail[AFAIL_SLOTS];
static pthread_mutex_t afail_lock[AFAIL_STRIPES] = {[0 ... AFAIL_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

void gg_guard_auth_failed(const struct sockaddr *sa)
{
    /* A deny only acts through an attached XDP program; without one, counting would deny nothing. */
    if (skel == NULL || n_xdp == 0 || conf.auth_fail_limit == 0 || sa == NULL)
        return;
    struct gg_guard_prefix k = {.prefixlen = 128};
    if (sa->sa_family == AF_INET) {
        k.addr[10] = k.addr[11] = 0xff;
        memcpy(&k.addr[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(k.addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return;
    }
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ k.addr[i]) * 1099511628211ull;
    size_t slot = (size_t)(h % AFAIL_SLOTS);
    uint64_t now = mono_ns(), window = (uint64_t)conf.auth_fail_window_s * 1000000000ull;
    int deny = 0;
    pthread_mutex_t *mu = &afail_lock[slot % AFAIL_STRIPES];
    pthread_mutex_lock(mu);
    struct afail *a = &afail[slot];
    if (a->count == 0 || now - a->window_start_ns >= window) {
        memcpy(a->addr, k.addr, 16);
        a->window_start_ns = now;
        a->count = 0;
    }
    if (++a->count >= conf.auth_fail_limit && memcmp(a->addr, k.addr, 16) == 0) {
        deny = 1;
        a->count = 0;
    }
    pthread_mutex_unlock(mu);
    if (!deny)
        return;
    char s[64];
    gg_guard_format_prefix(&k, s, sizeof(s));
    int rc = deny_key(&k, conf.deny_seconds);
    if (rc == 0)
        gg_warn("guard: %s denied for %u s after %u authentication failures within %u s", s, conf.deny_seconds,
                conf.auth_fail_limit, conf.auth_fail_window_s);
    else
        gg_warn("guard: cannot deny %s: %s", s, strerror(-rc));
}
