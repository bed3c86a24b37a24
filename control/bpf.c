/* The BPF loader and map publisher (see bpf.h): libbpf-bootstrap lifecycle (open -> load -> attach -> destroy),
 * pinning by name under --pin-path with an ABI check through the `meta` map, the registry mirror into `backends`
 * (the router's view, mmapped, seqlocked per slot; control/backends.c writes it), `models` and `tenants`, and the flow table
 * operations used by the splice hand-off. */
#include "gridgate/bpf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <pthread.h>
#include <stdarg.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "gridgate/backend.h"
#include "gridgate/buf.h"
#include "gridgate/config.h"
#include "gridgate/guard.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "gridgate/tenant.h"
#include "gridgate.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

_Static_assert(GG_BPF_MAX_BACKENDS == GG_MAX_BACKENDS, "backends map mirrors the registry slot for slot");
_Static_assert(GG_BPF_MODEL_NAME_MAX == GG_MODEL_NAME_MAX, "model keys hold registry names");

static const char *const pinned_maps[] = {"meta", "backends", "models", "tenants", "flows", "stats"};

static struct gridgate *skel;
static struct gg_bpf_backend *view; /* the mmapped `backends` array */
static size_t view_len;
static struct gg_bpf_flow *flow_tab; /* the mmapped `flows` array */
static size_t flow_len;
static pthread_mutex_t flow_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t flow_free[GG_BPF_MAX_FLOWS], n_free; /* free slots, a stack */
static int fd_pin_dir = -1;                          /* flock'ed: one gridgate per pin path, or two would share one flows table */
static int fd_flows = -1, fd_ends = -1, fd_socks = -1, fd_models = -1, fd_tenants = -1, fd_targets = -1;
static _Atomic int splice_on;
static int msg_attached;
static _Atomic uint64_t spliced_streams, spliced_bytes, desyncs;
static uint64_t models_version = UINT64_MAX;
static struct gg_bpf_tenant tenants_last[GG_MAX_TENANTS]; /* what each tenant slot last wrote into `tenants` */
static int tenants_written[GG_MAX_TENANTS];

int gg_bpf_enabled(void)
{
    return skel != NULL;
}

int gg_bpf_splice_ready(void)
{
    return skel != NULL && atomic_load_explicit(&splice_on, memory_order_relaxed);
}

void gg_bpf_set_splice(int on)
{
    atomic_store(&splice_on, on && skel != NULL);
}

uint64_t gg_bpf_spliced_streams(void)
{
    return atomic_load_explicit(&spliced_streams, memory_order_relaxed);
}

uint64_t gg_bpf_spliced_bytes(void)
{
    return atomic_load_explicit(&spliced_bytes, memory_order_relaxed);
}

uint64_t gg_bpf_desyncs(void)
{
    return atomic_load_explicit(&desyncs, memory_order_relaxed);
}

static void render_metrics(gg_buf_t *out)
{
    gg_buf_appendf(out,
                   "# HELP gridgate_spliced_streams_total Connections whose bytes were relayed in-kernel (sockmap).\n"
                   "# TYPE gridgate_spliced_streams_total counter\ngridgate_spliced_streams_total %llu\n"
                   "# HELP gridgate_spliced_bytes_total Bytes relayed in-kernel by spliced connections (both ways).\n"
                   "# TYPE gridgate_spliced_bytes_total counter\ngridgate_spliced_bytes_total %llu\n"
                   "# HELP gridgate_splice_desyncs_total Spliced connection pairs reset because the kernel's byte accounting and "
                   "gridgate's disagreed.\n"
                   "# TYPE gridgate_splice_desyncs_total counter\ngridgate_splice_desyncs_total %llu\n"
                   "# HELP gridgate_bpf_enabled 1 when the kernel assist is loaded.\n"
                   "# TYPE gridgate_bpf_enabled gauge\ngridgate_bpf_enabled %d\n",
                   (unsigned long long)gg_bpf_spliced_streams(), (unsigned long long)gg_bpf_spliced_bytes(),
                   (unsigned long long)gg_bpf_desyncs(), gg_bpf_enabled());
}

static int is_bpffs(const char *path)
{
    struct statfs st;
    return statfs(path, &st) == 0 && (uint32_t)st.f_type == BPF_FS_MAGIC;
}

/* The pin directory's parent must be a bpffs; mount one there when it is not (a fresh machine has none). */
static int ensure_pin_dir(const char *pin_path)
{
    char parent[512];
    if (snprintf(parent, sizeof(parent), "%s", pin_path) >= (int)sizeof(parent))
        return -ENAMETOOLONG;
    char *slash = strrchr(parent, '/');
    if (slash == NULL || slash == parent)
        return -EINVAL;
    *slash = '\0';
    if (!is_bpffs(parent)) {
        mkdir(parent, 0700);
        if (mount("bpf", parent, "bpf", 0, "mode=0700") == -1)
            return -errno;
        gg_info("bpf: mounted bpffs on %s", parent);
    }
    if (mkdir(pin_path, 0700) == -1 && errno != EEXIST)
        return -errno;
    return 0;
}

int gg_bpf_check_pins(const char *pin_path, const char *version_map, uint32_t version, const char *const *maps, size_t n)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", pin_path, version_map);
    int fd = bpf_obj_get(p);
    if (fd < 0)
        return 0;
    uint64_t value[64] = {0}; /* the version map's value starts with its __u32 abi_version */
    struct bpf_map_info info = {0};
    uint32_t key = 0, info_len = sizeof(info), found = 0;
    int rc = bpf_obj_get_info_by_fd(fd, &info, &info_len);
    if (rc == 0 && info.key_size == sizeof(key) && info.value_size >= sizeof(found) && info.value_size <= sizeof(value))
        rc = bpf_map_lookup_elem(fd, &key, value);
    else
        rc = -1;
    close(fd);
    memcpy(&found, value, sizeof(found));
    if (rc == 0 && found == version)
        return 1;
    gg_warn("bpf: pinned maps in %s have ABI version %u, this build uses %u: recreating them", pin_path, rc == 0 ? found : 0,
            version);
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "%s/%s", pin_path, maps[i]);
        if (unlink(p) == -1 && errno != ENOENT)
            return -errno;
    }
    return 0;
}

static int load(const char *pin_path, const char **what)
{
    int rc = ensure_pin_dir(pin_path);
    if (rc != 0) {
        *what = "bpffs";
        return rc;
    }
    fd_pin_dir = open(pin_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_pin_dir == -1 || flock(fd_pin_dir, LOCK_EX | LOCK_NB) == -1) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        *what = "pin path in use by another gridgate";
        if (fd_pin_dir != -1)
            close(fd_pin_dir);
        fd_pin_dir = -1;
        return rc;
    }
    int reused = gg_bpf_check_pins(pin_path, "meta", GG_BPF_ABI_VERSION, pinned_maps, sizeof(pinned_maps) / sizeof(pinned_maps[0]));
    if (reused < 0) {
        *what = "removing stale pinned maps";
        return reused;
    }
    LIBBPF_OPTS(bpf_object_open_opts, oo, .pin_root_path = pin_path);
    skel = gridgate__open_opts(&oo);
    if (skel == NULL) {
        *what = "open";
        return -errno;
    }
    rc = gridgate__load(skel);
    if (rc != 0) {
        *what = "load";
        goto cleanup;
    }
    int fd_meta = bpf_map__fd(skel->maps.meta);
    uint32_t key = 0;
    if (!reused) {
        struct gg_bpf_meta m = {.abi_version = GG_BPF_ABI_VERSION, .created_unix_s = (uint64_t)time(NULL)};
        bpf_map_update_elem(fd_meta, &key, &m, BPF_ANY);
    }
    fd_flows = bpf_map__fd(skel->maps.flows);
    fd_ends = bpf_map__fd(skel->maps.ends);
    fd_socks = bpf_map__fd(skel->maps.socks);
    fd_targets = bpf_map__fd(skel->maps.targets);
    fd_models = bpf_map__fd(skel->maps.models);
    fd_tenants = bpf_map__fd(skel->maps.tenants);
    /* Programs are attached to the sockhash before any socket joins it: a later attach never applies to members. The
     * sk_msg accounting program costs ~30% more machine CPU per spliced 100-byte event (measured with bench-splice)
     * and adds nothing the flows map does not already count (user_bytes), so it is attached only when
     * GRIDGATE_SK_MSG=1 asks for it. */
    msg_attached = getenv("GRIDGATE_SK_MSG") != NULL && strcmp(getenv("GRIDGATE_SK_MSG"), "1") == 0;
    if (bpf_prog_attach(bpf_program__fd(skel->progs.gg_verdict), fd_socks, BPF_SK_SKB_VERDICT, 0) != 0 ||
        (msg_attached && bpf_prog_attach(bpf_program__fd(skel->progs.gg_msg), fd_socks, BPF_SK_MSG_VERDICT, 0) != 0)) {
        rc = -errno;
        *what = "attach";
        goto cleanup;
    }
    view_len = (sizeof(struct gg_bpf_backend) * GG_BPF_MAX_BACKENDS + 4095) & ~(size_t)4095;
    view = mmap(NULL, view_len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel->maps.backends), 0);
    if (view == MAP_FAILED) {
        view = NULL;
        rc = -errno;
        *what = "mmap backends";
        goto cleanup;
    }
    flow_len = (sizeof(struct gg_bpf_flow) * GG_BPF_MAX_FLOWS + 4095) & ~(size_t)4095;
    flow_tab = mmap(NULL, flow_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_flows, 0);
    if (flow_tab == MAP_FAILED) {
        flow_tab = NULL;
        rc = -errno;
        *what = "mmap flows";
        goto cleanup;
    }
    /* A previous run's flows describe nothing that exists now; the view move rewrites every backend slot. */
    memset(flow_tab, 0, sizeof(struct gg_bpf_flow) * GG_BPF_MAX_FLOWS);
    gg_backend_view_move(view);
    memset(tenants_written, 0, sizeof(tenants_written));
    n_free = 0;
    for (uint32_t i = GG_BPF_MAX_FLOWS; i-- > 0;)
        flow_free[n_free++] = i;
    gg_info("bpf: kernel assist on: maps %s %s (ABI %u), sockmap splice ready", reused ? "reused from" : "pinned in", pin_path,
            GG_BPF_ABI_VERSION);
    return 0;
cleanup:
    if (fd_pin_dir != -1)
        close(fd_pin_dir);
    fd_pin_dir = -1;
    if (view != NULL)
        munmap(view, view_len);
    view = NULL;
    gridgate__destroy(skel);
    skel = NULL;
    return rc < 0 ? rc : -EINVAL;
}

static int silent_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_WARN && gg_log_level >= GG_LOG_DEBUG)
        return vfprintf(stderr, fmt, ap);
    return 0;
}

int gg_bpf_init(int mode, const char *pin_path)
{
    static int collector;
    if (!collector) {
        collector = 1;
        gg_metrics_add_collector(render_metrics);
    }
    if (mode == GG_BPF_OFF) {
        gg_info("bpf: off (--bpf off); the data plane runs in userspace");
        return 0;
    }
    libbpf_set_print(silent_print);
    const char *what = "";
    int rc = load(pin_path ? pin_path : "/sys/fs/bpf/gridgate", &what);
    if (rc != 0 && fd_pin_dir != -1) {
        close(fd_pin_dir);
        fd_pin_dir = -1;
    }
    if (rc != 0) {
        if (mode == GG_BPF_ON) {
            gg_error("bpf: --bpf on but the kernel assist cannot load (%s: %s)", what, strerror(-rc));
            return rc;
        }
        gg_info("bpf: kernel assist unavailable (%s: %s); the data plane runs in userspace", what, strerror(-rc));
        return 0;
    }
    atomic_store(&splice_on, 1);
    gg_bpf_sync();
    gg_guard_load(pin_path ? pin_path : "/sys/fs/bpf/gridgate"); /* its own object and maps; failing leaves it off */
    return 0;
}

int gg_bpf_remove_pins(const char *pin_path)
{
    DIR *d = opendir(pin_path);
    if (d == NULL)
        return -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    return rmdir(pin_path) == 0 ? 0 : -errno;
}

void gg_bpf_shutdown(void)
{
    if (skel == NULL)
        return;
    gg_guard_shutdown();
    atomic_store(&splice_on, 0);
    bpf_prog_detach2(bpf_program__fd(skel->progs.gg_verdict), fd_socks, BPF_SK_SKB_VERDICT);
    if (msg_attached)
        bpf_prog_detach2(bpf_program__fd(skel->progs.gg_msg), fd_socks, BPF_SK_MSG_VERDICT);
    gg_backend_view_move(NULL);
    if (view != NULL)
        munmap(view, view_len);
    if (flow_tab != NULL)
        munmap(flow_tab, flow_len);
    view = NULL;
    flow_tab = NULL;
    gridgate__destroy(skel);
    skel = NULL;
    if (fd_pin_dir != -1)
        close(fd_pin_dir);
    fd_pin_dir = -1;
    fd_flows = fd_ends = fd_socks = fd_models = fd_tenants = fd_targets = -1;
}

/* --- publishing --------------------------------------------------------------------------------- */

static void sync_models(void)
{
    const gg_model_table_t *t = gg_models_current();
    if (t->version == models_version)
        return;
    models_version = t->version;
    struct gg_bpf_model_key k, next;
    /* Drop names the table no longer has, then write every entry. */
    for (int more = bpf_map_get_next_key(fd_models, NULL, &k) == 0; more;) {
        more = bpf_map_get_next_key(fd_models, &k, &next) == 0;
        if (gg_models_find(t, k.name) == NULL)
            bpf_map_delete_elem(fd_models, &k);
        k = next;
    }
    for (size_t i = 0; i < t->n; i++) {
        struct gg_bpf_model_key key = {0};
        struct gg_bpf_model v = {0};
        memcpy(key.name, t->e[i].name, strnlen(t->e[i].name, sizeof(key.name) - 1));
        for (int w = 0; w < GG_BPF_BACKEND_WORDS; w++) {
            v.served[w] = t->e[i].served[w];
            v.loaded[w] = t->e[i].loaded[w];
            v.n_served += __builtin_popcountll(v.served[w]);
            v.n_loaded += __builtin_popcountll(v.loaded[w]);
        }
        bpf_map_update_elem(fd_models, &key, &v, BPF_ANY);
    }
}

static double milli(double v)
{
    return v * 1000 + (v < 0 ? -0.5 : 0.5);
}

/* One entry per tenant, rewritten when it changed since the last round (tenants are never removed while running). */
static void sync_tenants(void)
{
    size_t n = gg_tenants_count();
    for (size_t i = 0; i < n && i < GG_MAX_TENANTS; i++) {
        gg_tenant_t *t = gg_tenant_at(i);
        gg_tenant_counts_t c;
        gg_tenant_counts(t, &c);
        struct gg_bpf_tenant v = {
            .request_bucket_milli = (__s64)milli(c.request_level),
            .token_bucket_milli = (__s64)milli(c.token_level),
            .limits = (c.request_limited ? GG_BPF_TENANT_REQUEST_LIMIT : 0) | (c.token_limited ? GG_BPF_TENANT_TOKEN_LIMIT : 0),
            .weight = __atomic_load_n(&t->weight, __ATOMIC_RELAXED),
            .inflight = atomic_load_explicit(&t->inflight, memory_order_relaxed),
            .queued = atomic_load_explicit(&t->queued, memory_order_relaxed),
            .requests = c.requests,
            .admitted = c.admitted,
            .rejected_rate = c.rejected[GG_REJECT_RATE],
            .rejected_quota = c.rejected[GG_REJECT_QUOTA],
            .rejected_queue_full = c.rejected[GG_REJECT_QUEUE_FULL],
            .rejected_over_share = c.rejected[GG_REJECT_SHARE],
            .rejected_overloaded = c.rejected[GG_REJECT_OVERLOADED],
            .tokens_in = c.tokens_in,
            .tokens_out = c.tokens_out,
        };
        if (tenants_written[i] && memcmp(&v, &tenants_last[i], sizeof(v)) == 0)
            continue;
        struct gg_bpf_tenant_key key = {0};
        memcpy(key.name, t->name, strnlen(t->name, sizeof(key.name) - 1));
        if (bpf_map_update_elem(fd_tenants, &key, &v, BPF_ANY) == 0) {
            tenants_last[i] = v;
            tenants_written[i] = 1;
        }
    }
}

void gg_bpf_sync(void)
{
    /* The backends view is the router's table whether or not BPF is on (in the mmapped map when it is). */
    gg_backends_publish_all();
    if (view == NULL)
        return;
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&lock);
    sync_models();
    sync_tenants();
    pthread_mutex_unlock(&lock);
}

int gg_bpf_backend_read(uint32_t slot, struct gg_bpf_backend *out)
{
    if (view == NULL || slot >= GG_BPF_MAX_BACKENDS)
        return -ENOENT;
    for (int tries = 0; tries < 100; tries++) {
        uint32_t s0 = __atomic_load_n(&view[slot].seq, __ATOMIC_ACQUIRE);
        if (s0 & 1)
            continue;
        memcpy(out, &view[slot], sizeof(*out));
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&view[slot].seq, __ATOMIC_RELAXED) == s0) {
            out->seq = s0;
            return 0;
        }
    }
    return -EAGAIN;
}

/* --- flows --------------------------------------------------------------------------------------- */

static int cookie_of(int fd, __u64 *c)
{
    socklen_t len = sizeof(*c);
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, c, &len) == -1 ? -errno : 0;
}

int64_t gg_bpf_queued(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int outq = 0;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1 || ioctl(fd, SIOCOUTQ, &outq) == -1)
        return -errno;
    return (int64_t)ti.tcpi_bytes_acked + outq;
}

struct gg_bpf_flow *gg_bpf_flow_at(uint32_t flow)
{
    return flow_tab != NULL && flow < GG_BPF_MAX_FLOWS ? &flow_tab[flow] : NULL;
}

static void release_slot(uint32_t slot)
{
    memset(&flow_tab[slot], 0, sizeof(flow_tab[slot]));
    pthread_mutex_lock(&flow_lock);
    flow_free[n_free++] = slot;
    pthread_mutex_unlock(&flow_lock);
}

/* A free `flows` slot, or UINT32_MAX when all are taken. */
static uint32_t take_flow_slot(void)
{
    pthread_mutex_lock(&flow_lock);
    uint32_t slot = n_free ? flow_free[--n_free] : UINT32_MAX;
    pthread_mutex_unlock(&flow_lock);
    return slot;
}

int gg_bpf_splice_add(int fd_a, int fd_b, uint32_t kind, uint32_t *flow)
{
    if (!gg_bpf_splice_ready() || flow_tab == NULL)
        return -ENOTSUP;
    __u64 cookie[2];
    int rc;
    if ((rc = cookie_of(fd_a, &cookie[0])) != 0 || (rc = cookie_of(fd_b, &cookie[1])) != 0)
        return rc;
    uint32_t slot = take_flow_slot();
    if (slot == UINT32_MAX)
        return -ENOSPC;
    struct gg_bpf_flow *f = &flow_tab[slot];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    memset(f, 0, sizeof(*f));
    f->cookie[0] = cookie[0];
    f->cookie[1] = cookie[1];
    f->kind = kind;
    f->start_ns = (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
    f->mode[0] = f->mode[1] = GG_BPF_FLOW_REDIRECT;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    struct gg_bpf_end ea = {.flow = slot, .dir = 0}, eb = {.flow = slot, .dir = 1};
    /* The flow and its ends exist before the sockets join, so the verdict finds them from the first byte. */
    if (bpf_map_update_elem(fd_ends, &cookie[0], &ea, BPF_ANY) != 0 || bpf_map_update_elem(fd_ends, &cookie[1], &eb, BPF_ANY) != 0)
        goto fail;
    __u64 fa = (__u64)fd_a, fb = (__u64)fd_b; /* the sockhash value is 8 bytes wide */
    if (bpf_map_update_elem(fd_socks, &cookie[0], &fa, BPF_NOEXIST) != 0)
        goto fail;
    if (bpf_map_update_elem(fd_socks, &cookie[1], &fb, BPF_NOEXIST) != 0) {
        /* a is a member now and must stay one until it closes (deleting a live member can lose its bytes); with no
         * ends entry its verdict passes everything, so the userspace relay works on it as before. */
        goto fail;
    }
    /* Bytes that reached a socket before it joined sit unseen until the next segment; re-setting the receive
     * watermark runs the (new) data_ready over them now. */
    int one = 1;
    setsockopt(fd_a, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    setsockopt(fd_b, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
    *flow = slot;
    return 0;
fail:
    rc = -errno;
    bpf_map_delete_elem(fd_ends, &cookie[0]);
    bpf_map_delete_elem(fd_ends, &cookie[1]);
    release_slot(slot);
    return rc ? rc : -EIO;
}

void gg_bpf_splice_del(uint32_t flow, uint64_t bytes)
{
    struct gg_bpf_flow *f = gg_bpf_flow_at(flow);
    if (f == NULL || f->cookie[0] == 0)
        return;
    __u64 c0 = f->cookie[0], c1 = f->cookie[1];
    bpf_map_delete_elem(fd_ends, &c0);
    bpf_map_delete_elem(fd_ends, &c1);
    release_slot(flow);
    atomic_fetch_add_explicit(&spliced_streams, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&spliced_bytes, bytes, memory_order_relaxed);
}

const char *gg_bpf_desync_reason(const struct gg_bpf_flow *f, int d, uint64_t read)
{
    switch (__atomic_load_n(&f->desync, __ATOMIC_ACQUIRE)) {
    case GG_BPF_DESYNC_NONE:
        break;
    case GG_BPF_DESYNC_SEQ_AHEAD:
        return "splice desync: the socket's copied_seq passed what the verdict handed on";
    default:
        return "splice desync: a repeated head could not be cut off";
    }
    if (read > __atomic_load_n(&f->pass_bytes[d & 1], __ATOMIC_ACQUIRE))
        return "splice desync: read more than the verdict passed";
    return NULL;
}

int gg_bpf_flow_desynced(uint32_t flow)
{
    struct gg_bpf_flow *f = gg_bpf_flow_at(flow);
    return f != NULL && __atomic_load_n(&f->desync, __ATOMIC_ACQUIRE) != GG_BPF_DESYNC_NONE;
}

void gg_bpf_desync_reset(int fd_a, int fd_b)
{
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    int fds[2] = {fd_a, fd_b};
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    atomic_fetch_add_explicit(&desyncs, 1, memory_order_relaxed);
    gg_warn("splice: a spliced pair desynced and was reset (gridgate_splice_desyncs_total)");
}

/* --- streams (SSE/NDJSON responses spliced backend -> client) ------------------------------------ */

int gg_bpf_stream_join(int fd, uint32_t *flow)
{
    if (!gg_bpf_splice_ready() || flow_tab == NULL)
        return -ENOTSUP;
    __u64 cookie;
    int rc = cookie_of(fd, &cookie);
    if (rc != 0)
        return rc;
    uint32_t slot = take_flow_slot();
    if (slot == UINT32_MAX)
        return -ENOSPC;
    struct gg_bpf_flow *f = &flow_tab[slot];
    memset(f, 0, sizeof(*f));
    f->cookie[1] = cookie;
    f->kind = GG_BPF_FLOW_MEMBER;
    f->mode[0] = f->mode[1] = GG_BPF_FLOW_PASS;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    /* The end exists before the socket joins, so every byte it ever receives is counted in pass_bytes[1]. */
    struct gg_bpf_end e = {.flow = slot, .dir = 1};
    __u64 v = (__u64)fd;
    if (bpf_map_update_elem(fd_ends, &cookie, &e, BPF_ANY) != 0)
        goto fail;
    if (bpf_map_update_elem(fd_socks, &cookie, &v, BPF_NOEXIST) != 0) {
        rc = -errno;
        bpf_map_delete_elem(fd_ends, &cookie);
        release_slot(slot);
        return rc ? rc : -EIO;
    }
    *flow = slot;
    return 0;
fail:
    rc = -errno;
    release_slot(slot);
    return rc ? rc : -EIO;
}

void gg_bpf_stream_leave(uint32_t flow)
{
    struct gg_bpf_flow *f = gg_bpf_flow_at(flow);
    if (f == NULL || f->cookie[1] == 0)
        return;
    __u64 c = f->cookie[1];
    bpf_map_delete_elem(fd_ends, &c);
    release_slot(flow);
}

int gg_bpf_stream_start(uint32_t flow, int client_fd, uint32_t kind, uint32_t framing, uint64_t arm_base)
{
    struct gg_bpf_flow *f = gg_bpf_flow_at(flow);
    if (f == NULL || f->kind != GG_BPF_FLOW_MEMBER || !gg_bpf_splice_ready())
        return -ENOTSUP;
    __u64 cookie;
    int rc = cookie_of(client_fd, &cookie);
    if (rc != 0)
        return rc;
    __u64 v = (__u64)client_fd;
    /* A keep-alive client already joined for an earlier stream; it stays a member until it closes. */
    if (bpf_map_update_elem(fd_targets, &cookie, &v, BPF_NOEXIST) != 0 && errno != EEXIST)
        return -errno;
    f->cookie[0] = cookie;
    f->bytes[1] = 0;
    f->user_bytes[1] = 0;
    f->events[1] = 0;
    f->based[0] = 0;
    f->stalls[1] = 0;
    f->ended = 0;
    f->framing = framing;
    f->arm_base[1] = arm_base;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    f->start_ns = (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
    __atomic_store_n(&f->kind, kind, __ATOMIC_RELEASE);
    __atomic_store_n(&f->mode[1], GG_BPF_FLOW_ARMED, __ATOMIC_RELEASE);
    return 0;
}

size_t gg_bpf_stream_tail(uint32_t flow, char *out, size_t cap)
{
    struct gg_bpf_flow *f = gg_bpf_flow_at(flow);
    if (f == NULL)
        return 0;
    uint64_t t = __atomic_load_n(&f->tail_len, __ATOMIC_ACQUIRE);
    size_t n = t < GG_BPF_TAIL ? (size_t)t : GG_BPF_TAIL;
    if (n > cap)
        n = cap;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)f->tail[(t - n + i) & (GG_BPF_TAIL - 1)];
    return n;
}

int gg_bpf_stream_tail_ends(const char *tail, size_t n, uint32_t framing)
{
    if (n < 8)
        return 0;
    if (framing == GG_BPF_FRAMING_CHUNKED)
        return memcmp(tail + n - 8, "\n\r\n0\r\n\r\n", 8) == 0;
    return framing == GG_BPF_FRAMING_CLOSE && memcmp(tail + n - 8, "[DONE]\n\n", 8) == 0;
}

void gg_bpf_stream_stop(uint32_t flow, uint64_t bytes)
{
    struct gg_bpf_flow *f = gg_bpf_flow_at(flow);
    if (f == NULL)
        return;
    __atomic_store_n(&f->mode[1], GG_BPF_FLOW_PASS, __ATOMIC_RELEASE);
    __atomic_store_n(&f->kind, GG_BPF_FLOW_MEMBER, __ATOMIC_RELEASE);
    f->cookie[0] = 0;
    f->framing = 0;
    __atomic_store_n(&f->ended, 0, __ATOMIC_RELEASE); /* the tail follows the connection's bytes again */
    atomic_fetch_add_explicit(&spliced_streams, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&spliced_bytes, bytes, memory_order_relaxed);
}
