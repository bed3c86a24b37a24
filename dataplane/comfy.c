/* ComfyUI routing (see comfy.h).
 *
 * A ComfyUI server keeps its queue, its history and its output files to itself, and sends a prompt's progress only
 * to the WebSocket of the client that posted it. So every request that names a prompt, a client or a file goes to
 * the backend that owns it, found in the sticky table; the table learns from what passes through: POST /prompt
 * (prompt_id and client_id), the WebSocket's clientId, and the outputs listed by /history and /queue answers.
 * Requests that name nothing go to the least loaded backend (POST /prompt, /system_stats), to every backend in turn
 * until one knows the answer (/view, /history/{id} after a restart of gridgate), or to all of them with the answers
 * merged (/history, /queue) or broadcast (POST /interrupt without a target, POST /queue, POST /history, uploads).
 *
 * Responses are buffered: they are small JSON documents or single images. The WebSocket is answered only once the
 * backend accepted it (101), then both sockets leave HTTP and become a gg_tunnel. */
#include "gridgate/comfy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <h2o/http1.h>
#include <jansson.h>

#include "gridgate/accesslog.h"
#include "gridgate/backend.h"
#include "gridgate/buf.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "gridgate/proxy.h"
#include "gridgate/reqinfo.h"
#include "gridgate/respond.h"
#include "gridgate/router.h"
#include "gridgate/server.h"
#include "gridgate/tunnel.h"
#include "gridgate/upstream.h"

/* ---------------------------------------------------------------------------------------------------------------------
 * Sticky table
 * ------------------------------------------------------------------------------------------------------------------- */

#define STICKY_KEY_MAX 512

typedef struct sticky_entry {
    struct sticky_entry *hnext;               /* hash chain */
    struct sticky_entry *lru_prev, *lru_next; /* most recently used first */
    uint64_t hash, last_ms;
    uint32_t backend_id; /* tells a removed backend from the one that later took its slot */
    int slot;
    uint8_t kind;
    uint16_t len;
    char key[];
} sticky_entry_t;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One table for all workers behind one mutex: a lookup is a hash and a few compares, far below the cost of the
 * upstream request it routes, and a per-worker table could not see what another worker learnt. */
static struct {
    pthread_mutex_t lock;
    sticky_entry_t **buckets;
    size_t nbuckets, n, max;
    uint64_t idle_ms;
    uint64_t (*now_ms)(void);
} st = {.lock = PTHREAD_MUTEX_INITIALIZER, .max = GG_COMFY_STICKY_MAX, .idle_ms = GG_COMFY_STICKY_IDLE_MS, .now_ms = mono_ms};
/* The LRU list's sentinel, under st.lock; outside st because its type ends in a flexible array. */
static sticky_entry_t lru;

static uint64_t key_hash(enum gg_comfy_key kind, const char *key, size_t len)
{
    return gg_route_hash(key, len) ^ ((uint64_t)kind + 1) * 0x9E3779B97F4A7C15ULL;
}

static void lru_unlink(sticky_entry_t *e)
{
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
}

static void lru_push_front(sticky_entry_t *e)
{
    e->lru_next = lru.lru_next;
    e->lru_prev = &lru;
    lru.lru_next->lru_prev = e;
    lru.lru_next = e;
}

/* Called with the lock held. */
static void ensure_table(void)
{
    if (st.buckets != NULL)
        return;
    st.nbuckets = 64;
    while (st.nbuckets < st.max)
        st.nbuckets *= 2;
    st.buckets = calloc(st.nbuckets, sizeof(*st.buckets));
    if (st.buckets == NULL)
        h2o_fatal("no memory");
    lru.lru_next = lru.lru_prev = &lru;
}

static sticky_entry_t **find_link(enum gg_comfy_key kind, const char *key, size_t len, uint64_t h)
{
    sticky_entry_t **p = &st.buckets[h & (st.nbuckets - 1)];
    for (; *p != NULL; p = &(*p)->hnext)
        if ((*p)->hash == h && (*p)->kind == kind && (*p)->len == len && memcmp((*p)->key, key, len) == 0)
            return p;
    return p;
}

static void remove_entry(sticky_entry_t *e)
{
    sticky_entry_t **p = find_link(e->kind, e->key, e->len, e->hash);
    *p = e->hnext;
    lru_unlink(e);
    st.n--;
    free(e);
}

/* Drops entries idle for too long, oldest first. */
static void expire(uint64_t now)
{
    while (lru.lru_prev != &lru && lru.lru_prev->last_ms + st.idle_ms <= now)
        remove_entry(lru.lru_prev);
}

void gg_comfy_sticky_put(enum gg_comfy_key kind, const char *key, size_t len, int slot)
{
    if (len == 0 || len > STICKY_KEY_MAX || slot < 0 || slot >= GG_MAX_BACKENDS)
        return;
    uint64_t h = key_hash(kind, key, len);
    pthread_mutex_lock(&st.lock);
    ensure_table();
    uint64_t now = st.now_ms();
    expire(now);
    sticky_entry_t **p = find_link(kind, key, len, h), *e = *p;
    if (e == NULL) {
        if (st.n >= st.max) {
            remove_entry(lru.lru_prev);
            p = find_link(kind, key, len, h); /* the removal may have changed the chain */
        }
        e = malloc(sizeof(*e) + len);
        if (e == NULL)
            h2o_fatal("no memory");
        e->hash = h;
        e->kind = kind;
        e->len = (uint16_t)len;
        memcpy(e->key, key, len);
        e->hnext = NULL;
        *p = e;
        st.n++;
    } else {
        lru_unlink(e);
    }
    lru_push_front(e);
    e->slot = slot;
    e->backend_id = gg_backends[slot].id;
    e->last_ms = now;
    pthread_mutex_unlock(&st.lock);
}

int gg_comfy_sticky_get(enum gg_comfy_key kind, const char *key, size_t len)
{
    if (len == 0 || len > STICKY_KEY_MAX)
        return -1;
    uint64_t h = key_hash(kind, key, len);
    int slot = -1;
    pthread_mutex_lock(&st.lock);
    ensure_table();
    uint64_t now = st.now_ms();
    expire(now);
    sticky_entry_t *e = *find_link(kind, key, len, h);
    if (e != NULL) {
        const gg_backend_t *b = &gg_backends[e->slot];
        if (atomic_load_explicit(&b->state, memory_order_acquire) == GG_BACKEND_FREE || b->id != e->backend_id) {
            remove_entry(e);
        } else {
            slot = e->slot;
            e->last_ms = now;
            lru_unlink(e);
            lru_push_front(e);
        }
    }
    pthread_mutex_unlock(&st.lock);
    return slot;
}

size_t gg_comfy_sticky_size(void)
{
    pthread_mutex_lock(&st.lock);
    size_t n = st.n;
    pthread_mutex_unlock(&st.lock);
    return n;
}

void gg_comfy_sticky_configure(size_t max_entries, uint64_t idle_ms)
{
    pthread_mutex_lock(&st.lock);
    if (st.buckets != NULL) {
        while (lru.lru_next != &lru)
            remove_entry(lru.lru_next);
        free(st.buckets);
        st.buckets = NULL;
    }
    st.max = max_entries ? max_entries : 1;
    st.idle_ms = idle_ms;
    pthread_mutex_unlock(&st.lock);
}

/* ---------------------------------------------------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------------------------------------------------- */

static gg_metric_t *m_requests;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void collect(gg_buf_t *out)
{
    gg_buf_appendf(out,
                   "# HELP gridgate_tunnels_total Upgraded connections (WebSocket) relayed since start.\n"
                   "# TYPE gridgate_tunnels_total counter\ngridgate_tunnels_total %llu\n"
                   "# HELP gridgate_tunnels_active Upgraded connections being relayed now.\n"
                   "# TYPE gridgate_tunnels_active gauge\ngridgate_tunnels_active %llu\n"
                   "# HELP gridgate_comfy_sticky_entries Prompts, clients and files pinned to a ComfyUI backend.\n"
                   "# TYPE gridgate_comfy_sticky_entries gauge\ngridgate_comfy_sticky_entries %zu\n",
                   (unsigned long long)gg_tunnels_opened(), (unsigned long long)gg_tunnels_active(), gg_comfy_sticky_size());
}

static void do_init(void)
{
    m_requests = gg_metric_counter("gridgate_requests_total", "Requests answered, by model, backend and status code.");
    gg_metrics_add_collector(collect);
}

void gg_comfy_init(void)
{
    pthread_once(&init_once, do_init);
}

/* ---------------------------------------------------------------------------------------------------------------------
 * Routes
 * ------------------------------------------------------------------------------------------------------------------- */

enum route {
    RT_NONE,
    RT_PROMPT,
    RT_HISTORY,
    RT_HISTORY_ID,
    RT_VIEW,
    RT_QUEUE,
    RT_SYSTEM_STATS,
    RT_INTERRUPT,
    RT_WS,
    RT_OBJECT_INFO,
    RT_UPLOAD
};

/* How the backends of one request are chosen. */
enum mode {
    M_ANY,   /* one backend, the least loaded (or `preferred`); another one if it cannot be reached */
    M_ONE,   /* the backend that owns what the request names, and no other */
    M_PROBE, /* each backend in turn until one has it */
    M_MERGE  /* every backend; JSON answers merged, other answers: the first success */
};

static int prefix_is(h2o_iovec_t p, const char *s, h2o_iovec_t *rest)
{
    size_t n = strlen(s);
    if (p.len < n || memcmp(p.base, s, n) != 0)
        return 0;
    *rest = h2o_iovec_init(p.base + n, p.len - n);
    return 1;
}

static enum route route_of(h2o_iovec_t path, h2o_iovec_t *id)
{
    h2o_iovec_t rest;
    *id = h2o_iovec_init(NULL, 0);
    if (prefix_is(path, "/api/", &rest)) /* ComfyUI serves every route under /api too */
        path = h2o_iovec_init(rest.base - 1, rest.len + 1);
    static const struct {
        const char *path;
        enum route rt;
    } exact[] = {{"/prompt", RT_PROMPT},
                 {"/history", RT_HISTORY},
                 {"/view", RT_VIEW},
                 {"/queue", RT_QUEUE},
                 {"/system_stats", RT_SYSTEM_STATS},
                 {"/interrupt", RT_INTERRUPT},
                 {"/ws", RT_WS},
                 {"/object_info", RT_OBJECT_INFO},
                 {"/upload/image", RT_UPLOAD},
                 {"/upload/mask", RT_UPLOAD}};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (h2o_memis(path.base, path.len, exact[i].path, strlen(exact[i].path)))
            return exact[i].rt;
    if (prefix_is(path, "/history/", &rest) && rest.len != 0 && memchr(rest.base, '/', rest.len) == NULL) {
        *id = rest;
        return RT_HISTORY_ID;
    }
    if (prefix_is(path, "/object_info/", &rest) && rest.len != 0)
        return RT_OBJECT_INFO;
    return RT_NONE;
}

int gg_comfy_match(h2o_iovec_t path)
{
    h2o_iovec_t id;
    return route_of(path, &id) != RT_NONE;
}

/* ---------------------------------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------------------------------- */

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The URL-decoded value of query parameter `name` in `out`; its length, or -1 when absent or too long. */
static ssize_t query_param(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    if (req->query_at == SIZE_MAX)
        return -1;
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nlen = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', end - p), *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', stop - p);
        if (eq != NULL && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
            size_t n = 0;
            for (const char *s = eq + 1; s < stop; s++) {
                int c = *s;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && stop - s >= 3 && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
                    c = hexval(s[1]) * 16 + hexval(s[2]);
                    s += 2;
                }
                if (n + 1 >= cap)
                    return -1;
                out[n++] = (char)c;
            }
            out[n] = '\0';
            return (ssize_t)n;
        }
        p = stop + 1;
    }
    return -1;
}

static void file_key(gg_buf_t *k, const char *type, const char *subfolder, const char *filename)
{
    gg_buf_reset(k);
    gg_buf_appendf(k, "%s/%s/%s", type && *type ? type : "output", subfolder ? subfolder : "", filename);
}

static int is_comfy(const gg_backend_t *b)
{
    return atomic_load_explicit(&b->state, memory_order_acquire) != GG_BACKEND_FREE &&
           atomic_load_explicit(&b->kind, memory_order_relaxed) == GG_ENGINE_COMFYUI;
}

static int usable_comfy(int slot)
{
    return slot >= 0 && is_comfy(&gg_backends[slot]) && gg_route_usable(&gg_backends[slot]);
}

/* Errors in ComfyUI's own shape, so its front ends show them. */
static void respond_comfy_error(h2o_req_t *req, int status, const char *type, const char *message, int retry_after)
{
    json_t *j = json_pack("{s:{s:s, s:s, s:s, s:{}}, s:{}}", "error", "type", type, "message", message, "details", "", "extra_info",
                          "node_errors");
    char *s = json_dumps(j, GG_JSON_DUMP_FLAGS);
    if (retry_after >= 0) {
        char *v = h2o_mem_alloc_pool(&req->pool, 16);
        int n = snprintf(v, 16, "%d", retry_after);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v, n);
    }
    gg_respond(req, status, "application/json", s, strlen(s));
    free(s);
    json_decref(j);
}

/* ---------------------------------------------------------------------------------------------------------------------
 * Learning from answers
 * ------------------------------------------------------------------------------------------------------------------- */

/* outputs: {node: {images: [{filename, subfolder, type}], gifs: [...], ...}} */
static void learn_outputs(json_t *outputs, int slot)
{
    const char *node, *kind;
    json_t *out, *list, *item;
    size_t i;
    gg_buf_t k = GG_BUF_INIT;
    json_object_foreach(outputs, node, out)
    {
        json_object_foreach(out, kind, list)
        {
            json_array_foreach(list, i, item)
            {
                const char *fn = json_string_value(json_object_get(item, "filename"));
                if (fn == NULL)
                    continue;
                file_key(&k, json_string_value(json_object_get(item, "type")),
                         json_string_value(json_object_get(item, "subfolder")), fn);
                gg_comfy_sticky_put(GG_COMFY_FILE, k.base, k.len, slot);
            }
        }
    }
    gg_buf_free(&k);
}

/* /history answers: {prompt_id: {prompt, outputs, status}} */
static void learn_history(json_t *h, int slot)
{
    const char *id;
    json_t *entry;
    json_object_foreach(h, id, entry)
    {
        gg_comfy_sticky_put(GG_COMFY_PROMPT, id, strlen(id), slot);
        learn_outputs(json_object_get(entry, "outputs"), slot);
    }
}

/* /queue answers: {queue_running: [[number, prompt_id, prompt, extra_data, outputs]], queue_pending: [...]} */
static void learn_queue(json_t *q, int slot)
{
    static const char *const lists[] = {"queue_running", "queue_pending"};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(q, lists[l]), i, item)
        {
            const char *id = json_string_value(json_array_get(item, 1));
            if (id != NULL)
                gg_comfy_sticky_put(GG_COMFY_PROMPT, id, strlen(id), slot);
            const char *client = json_string_value(json_object_get(json_array_get(item, 3), "client_id"));
            if (client != NULL)
                gg_comfy_sticky_put(GG_COMFY_CLIENT, client, strlen(client), slot);
        }
    }
}

/* ---------------------------------------------------------------------------------------------------------------------
 * One request towards the ComfyUI backends
 * ------------------------------------------------------------------------------------------------------------------- */

typedef struct call {
    h2o_req_t *req;
    gg_worker_t *w;
    enum route rt;
    enum mode mode;
    int post;
    int slot;      /* backend of the current attempt (M_ONE: the owner), -1 before the first */
    int preferred; /* M_ANY: try this one first when usable */
    int dispatched;
    unsigned attempts;
    uint64_t tried[GG_BACKEND_WORDS];
    gg_upstream_req_t *up;
    h2o_iovec_t up_path, body;
    char client_id[128]; /* the client this request belongs to, for the sticky table ("" = none) */
    /* the answer being received */
    int status;
    h2o_iovec_t ctype, disposition, cache_control, ws_accept, ws_protocol, ws_extensions;
    gg_buf_t resp;
    /* M_PROBE / M_MERGE: what to answer when nothing better comes */
    int kept_status;
    h2o_iovec_t kept_ctype;
    gg_buf_t kept;
    json_t *merged;
    const char *error;
    uint64_t t_start;
    size_t bytes_out;
    unsigned responded : 1, tunnelled : 1;
} call_t;

/* The WebSocket once the client's socket is handed over: it must outlive the request's pool. */
typedef struct ws_link {
    h2o_socket_t *up;
    int slot;
    uint32_t backend_id;
    char client_id[128];
} ws_link_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t rand_cb(void *w)
{
    return gg_worker_rand(w);
}

static void release_backend(call_t *c, int failed)
{
    if (!c->dispatched)
        return;
    c->dispatched = 0;
    gg_backend_t *b = &gg_backends[c->slot];
    gg_backend_inflight_add(c->slot, -1);
    if (failed)
        gg_backend_report_failure(b);
    else
        gg_backend_report_success(b);
}

static int tried(const call_t *c, int slot)
{
    return (c->tried[slot / 64] >> (slot % 64)) & 1;
}

/* The next backend for this request, or -1. */
static int choose(call_t *c)
{
    if (c->mode == M_ONE)
        return c->attempts == 0 && usable_comfy(c->slot) ? c->slot : -1;
    if (c->mode == M_ANY) {
        if (c->preferred >= 0 && !tried(c, c->preferred) && usable_comfy(c->preferred))
            return c->preferred;
        uint64_t mask[GG_BACKEND_WORDS] = {0};
        uint32_t hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
        for (uint32_t s = 0; s < hwm; s++)
            if (is_comfy(&gg_backends[s]))
                mask[s / 64] |= 1ull << (s % 64);
        gg_route_req_t r = {.served = mask, .loaded = mask, .exclude = c->tried};
        return gg_route_pick(&r, rand_cb, c->w);
    }
    uint32_t hwm = atomic_load_explicit(&gg_backends_hwm, memory_order_acquire);
    for (uint32_t s = 0; s < hwm; s++)
        if (!tried(c, (int)s) && usable_comfy((int)s))
            return (int)s;
    return -1;
}

static const gg_upstream_callbacks_t upstream_cb;
static void next(call_t *c);

static void send_to(call_t *c, int slot)
{
    gg_backend_t *b = &gg_backends[slot];
    h2o_req_t *req = c->req;
    c->tried[slot / 64] |= 1ull << (slot % 64);
    c->attempts++;
    c->slot = slot;
    c->status = 0;
    c->ctype = c->disposition = c->cache_control = h2o_iovec_init(NULL, 0);
    gg_buf_reset(&c->resp);

    gg_buf_t head = GG_BUF_INIT;
    gg_buf_appendf(&head, "%s %.*s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: gridgate\r\n", c->post ? "POST" : "GET",
                   (int)c->up_path.len, c->up_path.base, b->host, b->port);
    if (c->post) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
        if (i != -1)
            gg_buf_appendf(&head, "Content-Type: %.*s\r\n", (int)req->headers.entries[i].value.len,
                           req->headers.entries[i].value.base);
        gg_buf_appendf(&head, "Content-Length: %zu\r\n", c->body.len);
    }
    /* Origin is not forwarded: ComfyUI refuses requests whose Origin differs from their Host, which is now ours. */
    static const char *const fwd[] = {
        "comfy-user", "accept", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions"};
    for (size_t f = 0; f < sizeof(fwd) / sizeof(fwd[0]); f++) {
        if (c->rt != RT_WS && strncmp(fwd[f], "sec-", 4) == 0)
            continue;
        ssize_t i = h2o_find_header_by_str(&req->headers, fwd[f], strlen(fwd[f]), -1);
        if (i != -1)
            gg_buf_appendf(&head, "%s: %.*s\r\n", fwd[f], (int)req->headers.entries[i].value.len,
                           req->headers.entries[i].value.base);
    }
    if (c->rt == RT_WS)
        gg_buf_append_str(&head, "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    gg_buf_append_str(&head, "\r\n");

    gg_backend_inflight_add(gg_backend_index(b), 1);
    atomic_fetch_add_explicit(&b->requests, 1, memory_order_relaxed);
    c->dispatched = 1;
    /* A 101 comes at once or not at all; other answers may wait for a large image. */
    gg_upstream_timeouts_t t = {gg_proxy_config.connect_ms, c->rt == RT_WS ? 10000 : gg_proxy_config.first_byte_ms,
                                gg_proxy_config.idle_ms};
    gg_upstream_pool_t *pool = gg_worker_pool(c->w, slot);
    if (pool == NULL) { /* the backend's host name does not resolve */
        gg_buf_free(&head);
        release_backend(c, 1);
        c->error = gg_upstream_err_refused;
        next(c);
        return;
    }
    c->up = gg_upstream_send(pool, h2o_iovec_init(head.base, head.len), c->body, &t, &upstream_cb, c);
    gg_buf_free(&head);
}

static void respond_with(call_t *c, int status, h2o_iovec_t ctype, const gg_buf_t *body)
{
    h2o_req_t *req = c->req;
    if (c->disposition.base != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL, c->disposition.base, c->disposition.len);
    if (c->cache_control.base != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, c->cache_control.base, c->cache_control.len);
    const char *ct = ctype.base != NULL ? h2o_strdup(&req->pool, ctype.base, ctype.len).base : "application/json";
    c->bytes_out = body->len;
    c->responded = 1;
    gg_respond(req, status, ct, body->base ? body->base : "", body->len);
}

static void respond_error(call_t *c, int status, const char *type, const char *message, int retry_after)
{
    c->responded = 1;
    respond_comfy_error(c->req, status, type, message, retry_after);
}

/* No backend left to try: the final answer from what was gathered. */
static void conclude(call_t *c)
{
    if (c->mode == M_MERGE && c->merged != NULL) {
        char *s = json_dumps(c->merged, GG_JSON_DUMP_FLAGS);
        gg_buf_t b = {s, strlen(s), strlen(s) + 1};
        c->disposition = c->cache_control = h2o_iovec_init(NULL, 0);
        respond_with(c, 200, h2o_iovec_init(H2O_STRLIT("application/json")), &b);
        free(s);
        return;
    }
    if ((c->mode == M_MERGE || c->mode == M_PROBE) && c->kept_status != 0) {
        respond_with(c, c->kept_status, c->kept_ctype, &c->kept);
        return;
    }
    if (c->attempts == 0) {
        respond_error(c, 503, "no_backend", "no ComfyUI backend is available right now", 1);
        return;
    }
    int timeout = c->error == gg_upstream_err_first_byte_timeout || c->error == gg_upstream_err_idle_timeout;
    char msg[160];
    snprintf(msg, sizeof(msg), "the ComfyUI backend failed: %s", c->error ? c->error : "no answer");
    respond_error(c, timeout ? 504 : 502, "backend_error", msg, -1);
}

static void next(call_t *c)
{
    int slot = choose(c);
    if (slot < 0) {
        conclude(c);
        return;
    }
    if (c->rt == RT_WS && c->client_id[0] != '\0')
        gg_comfy_sticky_put(GG_COMFY_CLIENT, c->client_id, strlen(c->client_id), slot);
    send_to(c, slot);
}

/* Keeps the current answer as the fallback of a probe or merge. */
static void keep_current(call_t *c)
{
    gg_buf_t t = c->kept;
    c->kept = c->resp;
    c->resp = t;
    gg_buf_reset(&c->resp);
    c->kept_status = c->status;
    c->kept_ctype = c->ctype;
}

static json_t *parse_json(const gg_buf_t *b)
{
    return b->len != 0 ? json_loadb(b->base, b->len, 0, NULL) : NULL;
}

static void merge_into(call_t *c, json_t *j)
{
    if (c->merged == NULL) {
        c->merged = json_incref(j);
        return;
    }
    if (c->rt == RT_QUEUE) {
        static const char *const lists[] = {"queue_running", "queue_pending"};
        for (size_t l = 0; l < 2; l++) {
            json_t *dst = json_object_get(c->merged, lists[l]), *src = json_object_get(j, lists[l]);
            if (json_is_array(dst) && json_is_array(src))
                json_array_extend(dst, src);
        }
        return;
    }
    json_object_update(c->merged, j);
}

static void on_end(void *ctx)
{
    call_t *c = ctx;
    c->up = NULL;
    release_backend(c, 0);
    json_t *j = NULL;
    if (c->status == 200 && !c->post && (c->rt == RT_HISTORY || c->rt == RT_HISTORY_ID || c->rt == RT_QUEUE)) {
        j = parse_json(&c->resp);
        if (json_is_object(j))
            (c->rt == RT_QUEUE ? learn_queue : learn_history)(j, c->slot);
    }
    if (c->rt == RT_PROMPT && c->post && c->status == 200) {
        j = parse_json(&c->resp);
        const char *id = json_string_value(json_object_get(j, "prompt_id"));
        if (id != NULL)
            gg_comfy_sticky_put(GG_COMFY_PROMPT, id, strlen(id), c->slot);
        if (c->client_id[0] != '\0')
            gg_comfy_sticky_put(GG_COMFY_CLIENT, c->client_id, strlen(c->client_id), c->slot);
    }

    switch (c->mode) {
    case M_ONE:
        if (c->rt == RT_VIEW && c->status == 404) {
            /* The file table can be wrong when two backends wrote the same file name: ask the others. */
            c->mode = M_PROBE;
            keep_current(c);
            next(c);
            break;
        }
        /* fallthrough */
    case M_ANY:
        respond_with(c, c->status, c->ctype, &c->resp);
        break;
    case M_PROBE: {
        int hit = c->status == 200;
        if (hit && c->rt == RT_HISTORY_ID) {
            if (j == NULL)
                j = parse_json(&c->resp);
            hit = json_is_object(j) && json_object_size(j) != 0; /* ComfyUI answers {} for prompts it does not know */
        }
        if (hit) {
            respond_with(c, c->status, c->ctype, &c->resp);
            break;
        }
        keep_current(c);
        next(c);
        break;
    }
    case M_MERGE:
        if (!c->post && c->status == 200) {
            if (j == NULL)
                j = parse_json(&c->resp);
            if (json_is_object(j))
                merge_into(c, j);
        }
        if (c->kept_status == 0 || (c->status / 100 == 2 && c->kept_status / 100 != 2))
            keep_current(c);
        next(c);
        break;
    }
    json_decref(j);
}

static void on_error(void *ctx, const char *err, enum gg_upstream_phase phase)
{
    call_t *c = ctx;
    c->up = NULL;
    c->error = err;
    release_backend(c, err != gg_upstream_err_pool_full);
    gg_debug("comfy: %s on %s (phase %d)", err, gg_backends[c->slot].name, (int)phase);
    /* A POST may have been queued by the backend unless the connection never came up. */
    int may_retry = !c->post || phase == GG_UP_CONNECT || c->mode == M_MERGE;
    if (c->mode == M_ONE || !may_retry) {
        conclude(c);
        return;
    }
    next(c);
}

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize);

static h2o_iovec_t dup_header(h2o_req_t *req, const struct phr_header *h)
{
    return h2o_strdup(&req->pool, h->value, h->value_len);
}

static int on_head(void *ctx, int status, int minor, const struct phr_header *h, size_t n)
{
    call_t *c = ctx;
    h2o_req_t *req = c->req;
    c->status = status;
    for (size_t i = 0; i < n; i++) {
        h2o_iovec_t *dst = NULL;
        if (h2o_lcstris(h[i].name, h[i].name_len, H2O_STRLIT("content-type")))
            dst = &c->ctype;
        else if (h2o_lcstris(h[i].name, h[i].name_len, H2O_STRLIT("content-disposition")))
            dst = &c->disposition;
        else if (h2o_lcstris(h[i].name, h[i].name_len, H2O_STRLIT("cache-control")))
            dst = &c->cache_control;
        else if (h2o_lcstris(h[i].name, h[i].name_len, H2O_STRLIT("sec-websocket-accept")))
            dst = &c->ws_accept;
        else if (h2o_lcstris(h[i].name, h[i].name_len, H2O_STRLIT("sec-websocket-protocol")))
            dst = &c->ws_protocol;
        else if (h2o_lcstris(h[i].name, h[i].name_len, H2O_STRLIT("sec-websocket-extensions")))
            dst = &c->ws_extensions;
        if (dst != NULL)
            *dst = dup_header(req, &h[i]);
    }
    if (status != 101)
        return 0;
    if (c->rt != RT_WS) {
        c->up = NULL; /* returning -1 cancels it */
        release_backend(c, 0);
        c->error = "unexpected 101";
        respond_error(c, 502, "backend_error", "the ComfyUI backend switched protocols unasked", -1);
        return -1;
    }

    h2o_iovec_t pending;
    h2o_socket_t *up = gg_upstream_take_socket(c->up, &pending);
    if (up == NULL) {
        c->up = NULL; /* returning -1 cancels it */
        release_backend(c, 1);
        c->error = gg_upstream_err_bad_response;
        respond_error(c, 502, "backend_error", "the ComfyUI backend's upgrade could not be taken over", -1);
        return -1;
    }
    c->up = NULL;
    release_backend(c, 0);
    ws_link_t *ws = calloc(1, sizeof(*ws));
    if (ws == NULL)
        h2o_fatal("no memory");
    ws->up = up;
    ws->slot = c->slot;
    ws->backend_id = gg_backends[c->slot].id;
    snprintf(ws->client_id, sizeof(ws->client_id), "%s", c->client_id);

    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    if (c->ws_accept.base != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, c->ws_accept.base,
                              c->ws_accept.len);
    if (c->ws_protocol.base != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-protocol"), 0, NULL, c->ws_protocol.base,
                              c->ws_protocol.len);
    if (c->ws_extensions.base != NULL)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-extensions"), 0, NULL, c->ws_extensions.base,
                              c->ws_extensions.len);
    c->responded = 1;
    c->tunnelled = 1;
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, ws);
    return 0;
}

static int on_body(void *ctx, const char *buf, size_t len)
{
    call_t *c = ctx;
    if (c->resp.len + len > gg_proxy_config.max_response_bytes) {
        c->up = NULL; /* returning -1 cancels it */
        release_backend(c, 0);
        c->error = "response too large";
        respond_error(c, 502, "backend_error", "the ComfyUI backend's response is too large", -1);
        return -1;
    }
    gg_buf_append(&c->resp, buf, len);
    return 0;
}

static const gg_upstream_callbacks_t upstream_cb = {on_head, on_body, on_end, on_error};

/* --- the WebSocket after the upgrade ----------------------------------------------------------------------------- */

static void on_tunnel_close(void *ctx, const gg_tunnel_stats_t *s)
{
    ws_link_t *ws = ctx;
    gg_debug("comfy: websocket of client %s on %s ended (%s; %llu bytes up, %llu down)", ws->client_id, gg_backends[ws->slot].name,
             s->reason, (unsigned long long)s->bytes[0], (unsigned long long)s->bytes[1]);
    free(ws);
}

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
    ws_link_t *ws = data;
    if (sock == NULL) { /* the client left before the 101 reached it */
        h2o_socket_close(ws->up);
        free(ws);
        return;
    }
    /* What follows the request head in the client's buffer is already WebSocket traffic. */
    h2o_buffer_consume(&sock->input, reqsize);
    gg_tunnel_start(sock, ws->up, on_tunnel_close, ws);
}

/* --- request lifetime --------------------------------------------------------------------------------------------- */

static void on_dispose(void *p)
{
    call_t *c = p;
    if (c->up != NULL) {
        gg_upstream_cancel(c->up);
        c->up = NULL;
        if (c->error == NULL)
            c->error = "client went away";
    }
    release_backend(c, 0);
    const char *backend = c->slot >= 0 ? gg_backends[c->slot].name : "";
    int status = c->req->res.status;
    gg_buf_t l = GG_BUF_INIT;
    char code[8];
    snprintf(code, sizeof(code), "%d", status);
    gg_metrics_label(&l, "model", "comfyui");
    gg_metrics_label(&l, "backend", backend);
    gg_metrics_label(&l, "code", code);
    gg_metric_add(m_requests, l.base, 1);
    gg_buf_free(&l);
    gg_accesslog_entry_t e = {.req = c->req,
                              .model = "comfyui",
                              .backend = backend,
                              .status = status,
                              .duration_us = (now_ns() - c->t_start) / 1000,
                              .bytes_out = c->bytes_out,
                              .attempts = c->attempts,
                              .error = c->error};
    gg_accesslog_write(&e);
    gg_buf_free(&c->resp);
    gg_buf_free(&c->kept);
    json_decref(c->merged);
    atomic_fetch_sub_explicit(&c->w->inflight, 1, memory_order_relaxed);
}

static int method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* The sticky owner of a key in the request's query or body (prompt_id, then clientId / client_id), or -1. */
static int owner_named(call_t *c, json_t *body)
{
    char v[256];
    const char *prompt = json_string_value(json_object_get(body, "prompt_id"));
    if (prompt == NULL && query_param(c->req, "prompt_id", v, sizeof(v)) > 0)
        prompt = v;
    if (prompt != NULL) {
        int s = gg_comfy_sticky_get(GG_COMFY_PROMPT, prompt, strlen(prompt));
        if (s >= 0)
            return s;
    }
    if (c->client_id[0] != '\0')
        return gg_comfy_sticky_get(GG_COMFY_CLIENT, c->client_id, strlen(c->client_id));
    return -1;
}

/* Requests refused before any backend is involved: logged like every other answer. */
static void log_refusal(h2o_req_t *req)
{
    gg_accesslog_entry_t e = {.req = req, .model = "comfyui", .status = req->res.status, .bytes_out = req->res.content_length};
    gg_accesslog_write(&e);
}

void gg_comfy_handle(h2o_req_t *req)
{
    gg_comfy_init();
    h2o_iovec_t id;
    enum route rt = route_of(req->path_normalized, &id);
    int get = method_is(req, "GET") || method_is(req, "HEAD"), post = method_is(req, "POST");
    int allowed = rt == RT_PROMPT || rt == RT_HISTORY || rt == RT_QUEUE ? get || post
                  : rt == RT_INTERRUPT || rt == RT_UPLOAD               ? post
                                                                        : get;
    if (!allowed) {
        respond_comfy_error(req, 405, "method_not_allowed", "method not allowed on this ComfyUI route", -1);
        log_refusal(req);
        return;
    }
    if (rt == RT_WS && (req->version >= 0x200 || req->upgrade.base == NULL ||
                        !h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket")))) {
        respond_comfy_error(req, 400, "bad_request", "/ws expects a WebSocket upgrade over HTTP/1.1", -1);
        log_refusal(req);
        return;
    }

    call_t *c = h2o_mem_alloc_shared(&req->pool, sizeof(*c), on_dispose);
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->w = gg_worker_of(req);
    c->rt = rt;
    c->post = post;
    c->slot = c->preferred = -1;
    c->t_start = now_ns();
    c->up_path = req->path;
    c->mode = M_ANY;
    atomic_fetch_add_explicit(&c->w->inflight, 1, memory_order_relaxed);
    if (post && req->entity.base != NULL)
        c->body = h2o_strdup(&req->pool, req->entity.base, req->entity.len);

    json_t *body = post ? json_loadb(c->body.base ? c->body.base : "", c->body.len, 0, NULL) : NULL;
    const char *cid = json_string_value(json_object_get(body, "client_id"));
    if (cid != NULL)
        snprintf(c->client_id, sizeof(c->client_id), "%s", cid);
    else if (query_param(req, "clientId", c->client_id, sizeof(c->client_id)) < 0 &&
             query_param(req, "client_id", c->client_id, sizeof(c->client_id)) < 0)
        c->client_id[0] = '\0';

    int owner;
    switch (rt) {
    case RT_PROMPT:
        if (post && c->client_id[0] != '\0') /* where the client's WebSocket listens */
            c->preferred = gg_comfy_sticky_get(GG_COMFY_CLIENT, c->client_id, strlen(c->client_id));
        break;
    case RT_WS:
        if (c->client_id[0] == '\0') {
            /* Without a clientId ComfyUI would make one up that we never see; make it here, so the prompts the client
             * later posts with it find this backend. The server tells the client its id in the first status message. */
            uint64_t r1 = gg_worker_rand(c->w), r2 = gg_worker_rand(c->w);
            snprintf(c->client_id, sizeof(c->client_id), "%016llx%016llx", (unsigned long long)r1, (unsigned long long)r2);
            char *p = h2o_mem_alloc_pool(&req->pool, req->path.len + 64);
            int n = snprintf(p, req->path.len + 64, "%.*s%cclientId=%s", (int)req->path.len, req->path.base,
                             req->query_at == SIZE_MAX ? '?' : '&', c->client_id);
            c->up_path = h2o_iovec_init(p, n);
        } else {
            c->preferred = gg_comfy_sticky_get(GG_COMFY_CLIENT, c->client_id, strlen(c->client_id));
        }
        break;
    case RT_HISTORY_ID:
        owner = gg_comfy_sticky_get(GG_COMFY_PROMPT, id.base, id.len);
        c->mode = owner >= 0 ? M_ONE : M_PROBE;
        c->slot = owner;
        break;
    case RT_VIEW: {
        owner = owner_named(c, NULL);
        if (owner < 0) {
            char fn[1024], sub[512] = "", type[64] = "";
            if (query_param(req, "filename", fn, sizeof(fn)) > 0) {
                query_param(req, "subfolder", sub, sizeof(sub));
                query_param(req, "type", type, sizeof(type));
                gg_buf_t k = GG_BUF_INIT;
                file_key(&k, type, sub, fn);
                owner = gg_comfy_sticky_get(GG_COMFY_FILE, k.base, k.len);
                gg_buf_free(&k);
            }
        }
        c->mode = owner >= 0 ? M_ONE : M_PROBE;
        c->slot = owner;
        break;
    }
    case RT_HISTORY:
    case RT_QUEUE:
        c->mode = M_MERGE;
        break;
    case RT_UPLOAD:
        /* An upload names no client, and the prompt that uses the file may run on any backend: every one gets it. */
        c->mode = M_MERGE;
        break;
    case RT_INTERRUPT:
        owner = owner_named(c, body);
        c->mode = owner >= 0 ? M_ONE : M_MERGE;
        c->slot = owner;
        break;
    default:
        break;
    }
    json_decref(body);

    if (c->mode == M_ONE && !usable_comfy(c->slot)) {
        respond_error(c, 503, "backend_unavailable", "the ComfyUI backend that holds this is unavailable right now", 1);
        return;
    }
    next(c);
}
