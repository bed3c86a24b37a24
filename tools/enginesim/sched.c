/* enginesim load model: a continuous-batching engine. Up to --max-seqs sequences run at once; the rest wait
 * in FIFO order (Ollama: a bounded queue, 503 beyond). A running sequence first waits for its model to load
 * (--load-ms, evicting idle models LRU-first to fit --vram-mb), then prefills at --prefill-tps and emits its
 * first token, then gets one token per decode step. One step for the whole batch takes
 *     decode_ms * (1 + 0.05 * (batch - 1))
 * so a bigger batch decodes each sequence a little slower, as on a GPU. A sequence under the "slow" fault
 * runs on its own timer at factor times that. This file also owns the response streaming of a sequence
 * (double buffer + h2o proceed) and the watch for clients that leave before their answer. */
#include "sim.h"
#include "gridgate/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define TMAX 65536
static h2o_timeout_t *timeouts[TMAX];

void timer_link(h2o_timeout_entry_t *e, uint64_t ms)
{
    if (ms >= TMAX)
        ms = TMAX - 1;
    if (timeouts[ms] == NULL) {
        timeouts[ms] = calloc(1, sizeof(h2o_timeout_t));
        h2o_timeout_init(G.ctx.loop, timeouts[ms], ms);
    }
    if (h2o_timeout_is_linked(e))
        h2o_timeout_unlink(e);
    h2o_timeout_link(G.ctx.loop, timeouts[ms], e);
}

static void try_admit(void);
static void on_step(h2o_timeout_entry_t *e);
static h2o_timeout_entry_t step_timer = {0, on_step};
static uint64_t step_carry_us;
static unsigned ndecode; /* sequences in S_DECODE that ride the shared step */

static double batch_factor(void)
{
    return 1.0 + 0.05 * (G.nrunning > 0 ? G.nrunning - 1 : 0);
}

static void schedule_step(void)
{
    if (ndecode == 0 || h2o_timeout_is_linked(&step_timer))
        return;
    step_carry_us += (uint64_t)(G.decode_ms * 1000.0 * batch_factor());
    uint64_t ms = step_carry_us / 1000;
    step_carry_us -= ms * 1000;
    timer_link(&step_timer, ms);
}

/* ---- models ------------------------------------------------------------------------------------- */

struct model *model_find(const char *name)
{
    for (unsigned i = 0; i < G.nmodels; i++) {
        struct model *m = &G.models[i];
        if (strcmp(m->name, name) == 0 || strcmp(m->tagged, name) == 0)
            return m;
    }
    /* "llama3:latest" names the plain "llama3" */
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ":latest") == 0)
        for (unsigned i = 0; i < G.nmodels; i++)
            if (strlen(G.models[i].name) == n - 7 && memcmp(G.models[i].name, name, n - 7) == 0)
                return &G.models[i];
    return NULL;
}

static void on_load_done(h2o_timeout_entry_t *e);

struct model *model_add(const char *name, unsigned size_mb)
{
    if (G.nmodels == MAX_MODELS || strlen(name) == 0 || strlen(name) >= MODEL_NAME_MAX)
        return NULL;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
            return NULL; /* names go into JSON and metric labels unescaped */
    struct model *m = &G.models[G.nmodels++];
    memset(m, 0, sizeof(*m));
    strcpy(m->name, name);
    snprintf(m->tagged, sizeof(m->tagged), strchr(name, ':') ? "%s" : "%s:latest", name);
    m->size_mb = size_mb ? size_mb : G.default_size_mb;
    m->expires_at_ms = -1;
    m->load_timer.cb = on_load_done;
    return m;
}

static uint64_t vram_used(void)
{
    uint64_t used = 0;
    for (unsigned i = 0; i < G.nmodels; i++)
        if (G.models[i].state != M_UNLOADED)
            used += G.models[i].size_mb;
    return used;
}

void model_unload(struct model *m)
{
    if (m->state == M_UNLOADED || m->running > 0)
        return;
    if (h2o_timeout_is_linked(&m->load_timer))
        h2o_timeout_unlink(&m->load_timer);
    m->state = M_UNLOADED;
    m->expires_at_ms = -1;
    gg_info("unloaded model %s", m->name);
}

/* Returns 0 when m is loaded or loading, -EAGAIN when busy models fill the VRAM, -E2BIG when it can never fit. */
static int model_load(struct model *m)
{
    if (m->state != M_UNLOADED)
        return 0;
    if (G.vram_mb) {
        if (m->size_mb > G.vram_mb)
            return -E2BIG;
        while (vram_used() + m->size_mb > G.vram_mb) {
            struct model *victim = NULL;
            for (unsigned i = 0; i < G.nmodels; i++) {
                struct model *c = &G.models[i];
                if (c != m && c->state == M_LOADED && c->running == 0 && (victim == NULL || c->last_used_ms < victim->last_used_ms))
                    victim = c;
            }
            if (victim == NULL)
                return -EAGAIN;
            gg_info("evicting model %s to fit %s", victim->name, m->name);
            model_unload(victim);
        }
    }
    m->state = M_LOADING;
    m->last_used_ms = now_ms();
    gg_info("loading model %s (%u MB, %llu ms)", m->name, m->size_mb, (unsigned long long)G.load_ms);
    timer_link(&m->load_timer, G.load_ms);
    return 0;
}

int model_touch(struct model *m, int64_t keep_alive_ms)
{
    int r = model_load(m);
    if (r == 0 && keep_alive_ms != -2)
        m->expires_at_ms = keep_alive_ms < 0 ? -1 : (int64_t)(now_ms() + keep_alive_ms);
    return r;
}

int64_t parse_keep_alive(json_t *v)
{
    if (v == NULL || json_is_null(v))
        return -2;
    if (json_is_number(v)) {
        double s = json_number_value(v);
        return s < 0 ? -1 : (int64_t)(s * 1000);
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        double x = strtod(s, &end);
        if (end == s)
            return -2;
        if (x < 0)
            return -1;
        double mult = 1000; /* a bare number is seconds */
        if (strcmp(end, "ms") == 0)
            mult = 1;
        else if (strcmp(end, "m") == 0)
            mult = 60000;
        else if (strcmp(end, "h") == 0)
            mult = 3600000;
        return (int64_t)(x * mult);
    }
    return -2;
}

/* ---- sequences ---------------------------------------------------------------------------------- */

static void release(struct seq *s)
{
    if (s->state == S_WAITING) {
        h2o_linklist_unlink(&s->link);
        G.nwaiting--;
    } else if (s->state >= S_LOADING && s->state <= S_DECODE) {
        if (s->state == S_DECODE && s->slow <= 1)
            ndecode--;
        h2o_linklist_unlink(&s->link);
        G.nrunning--;
        if (s->slot >= 0)
            G.slots[s->slot] = NULL;
        s->slot = -1;
        struct model *m = s->model;
        m->running--;
        m->last_used_ms = now_ms();
        int64_t ka = s->keep_alive_ms;
        if (ka == -2)
            ka = G.flavor == FL_OLLAMA ? 300000 : -1;
        m->expires_at_ms = ka < 0 ? -1 : (int64_t)(now_ms() + ka);
        if (ka == 0 && m->running == 0)
            model_unload(m);
    }
    if (h2o_timeout_is_linked(&s->timer))
        h2o_timeout_unlink(&s->timer);
    s->state = S_DONE;
}

static void cancel(struct seq *s)
{
    if (s->state == S_DONE)
        return;
    release(s);
    G.cancelled++;
    gg_debug("request %llu cancelled: client went away", (unsigned long long)s->id);
    try_admit();
}

static void on_seq_dispose(void *p)
{
    struct seq *s = p;
    if (s->state != S_DONE && s->state != S_NEW)
        cancel(s);
    sb_free(&s->out[0]);
    sb_free(&s->out[1]);
    sb_free(&s->text);
    if (s->inputs)
        json_decref(s->inputs);
}

static void do_reset(struct seq *s)
{
    h2o_req_t *req = s->req;
    s->reset_pending = 0;
    s->final_sent = 1;
    if (s->state != S_DONE)
        release(s);
    abort_connection(req);
    if (!s->started) {
        s->started = 1;
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_start_response(req, &s->gen);
    }
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
    try_admit();
}

void seq_flush(struct seq *s, int final)
{
    if (s->stopped || s->final_sent || s->req == NULL)
        return;
    if (final)
        s->want_final = 1;
    if (s->inflight)
        return;
    h2o_req_t *req = s->req;
    if (s->aborted) {
        s->final_sent = 1;
        if (!s->started) {
            send_error(req, s->dialect, 499, "client_closed", "client_closed", "client closed the connection");
            return;
        }
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    struct sbuf *b = &s->out[s->cur];
    if (s->reset_pending && (b->len == 0 || !s->stream)) {
        do_reset(s);
        return;
    }
    if (!s->want_final && b->len == 0)
        return;
    if (!s->started) {
        s->started = 1;
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, s->ctype, strlen(s->ctype));
        if (s->stream)
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
        else if (s->want_final)
            req->res.content_length = b->len;
        h2o_start_response(req, &s->gen);
    }
    int fin = s->want_final && !s->reset_pending;
    h2o_iovec_t iov = h2o_iovec_init(b->p, b->len);
    s->cur ^= 1;
    s->inflight = 1;
    if (fin)
        s->final_sent = 1;
    h2o_send(req, &iov, iov.len ? 1 : 0, fin ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    struct seq *s = (struct seq *)gen;
    s->inflight = 0;
    s->out[s->cur ^ 1].len = 0;
    if (s->aborted || s->reset_pending || s->out[s->cur].len || s->want_final)
        seq_flush(s, 0);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    struct seq *s = (struct seq *)gen;
    s->stopped = 1;
    s->req = NULL;
    cancel(s);
}

struct seq *seq_new(h2o_req_t *req, const struct seq_ops *ops, struct model *m, const char *reqmodel)
{
    struct seq *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), on_seq_dispose);
    memset(s, 0, sizeof(*s));
    s->gen.proceed = on_proceed;
    s->gen.stop = on_stop;
    s->req = req;
    s->ops = ops;
    s->model = m;
    snprintf(s->reqmodel, sizeof(s->reqmodel), "%s", reqmodel);
    s->slot = -1;
    s->reset_after = -1;
    s->slow = 1;
    s->keep_alive_ms = -2;
    s->id = ++G.next_id;
    s->t_arrive = now_ns();
    return s;
}

static void finish(struct seq *s)
{
    release(s);
    s->t_end = now_ns();
    G.completed++;
    G.prompt_tokens_total += s->prompt_tokens;
    s->ops->on_finish(s);
    seq_flush(s, 1);
    try_admit();
}

static void record_ttft(struct seq *s)
{
    double t = (double)(s->t_first - s->t_arrive) / 1e9;
    unsigned i = 0;
    while (i < TTFT_BUCKETS - 1 && t > ttft_bounds[i])
        i++;
    G.ttft_counts[i]++;
    G.ttft_sum += t;
    G.ttft_n++;
}

/* One token for s; returns 1 if s finished (or was reset) and left the running list. */
static int emit_token(struct seq *s)
{
    size_t len;
    const char *t = token_text(s->h, s->generated, &len);
    if (s->generated == 0) {
        s->t_first = now_ns();
        record_ttft(s);
    }
    s->generated++;
    G.gen_tokens_total++;
    s->ops->on_token(s, t, len);
    if (s->reset_after >= 0 && s->generated >= (unsigned)s->reset_after) {
        release(s);
        s->reset_pending = 1;
        seq_flush(s, 0);
        try_admit();
        return 1;
    }
    if (s->generated >= s->target) {
        finish(s);
        return 1;
    }
    seq_flush(s, 0);
    return 0;
}

static uint64_t slow_ms(struct seq *s)
{
    double base = G.decode_ms > 0 ? G.decode_ms : 1.0;
    return (uint64_t)(base * s->slow * batch_factor() + 0.5);
}

static void on_slow_tick(h2o_timeout_entry_t *e)
{
    struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, timer, e);
    if (!emit_token(s))
        timer_link(&s->timer, slow_ms(s));
}

static void on_prefill_done(h2o_timeout_entry_t *e)
{
    struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, timer, e);
    if (s->target == 0) {
        finish(s);
        return;
    }
    /* the prefill pass yields the first token */
    if (s->reset_after == 0) {
        release(s);
        s->reset_pending = 1;
        seq_flush(s, 0);
        try_admit();
        return;
    }
    if (emit_token(s))
        return;
    s->state = S_DECODE;
    if (s->slow > 1) {
        s->timer.cb = on_slow_tick;
        timer_link(&s->timer, slow_ms(s));
    } else {
        ndecode++;
        schedule_step();
    }
}

static void start_prefill(struct seq *s)
{
    s->state = S_PREFILL;
    s->t_prefill = now_ns();
    uint64_t ms = 0;
    if (G.prefill_tps > 0)
        ms = (uint64_t)(s->prompt_tokens * 1000.0 / G.prefill_tps * s->slow);
    s->timer.cb = on_prefill_done;
    timer_link(&s->timer, ms);
}

static void on_load_done(h2o_timeout_entry_t *e)
{
    struct model *m = H2O_STRUCT_FROM_MEMBER(struct model, load_timer, e);
    m->state = M_LOADED;
    m->load_done_ms = now_ms();
    m->last_used_ms = now_ms();
    gg_info("model %s loaded", m->name);
    for (h2o_linklist_t *l = G.running.next, *next; l != &G.running; l = next) {
        next = l->next;
        struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, link, l);
        if (s->state == S_LOADING && s->model == m)
            start_prefill(s);
    }
}

static void on_step(h2o_timeout_entry_t *e)
{
    for (h2o_linklist_t *l = G.running.next, *next; l != &G.running; l = next) {
        next = l->next;
        struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, link, l);
        if (s->state == S_DECODE && s->slow <= 1)
            emit_token(s);
    }
    schedule_step();
}

static void fail(struct seq *s, int status, const char *msg)
{
    release(s);
    s->final_sent = 1;
    send_error(s->req, s->dialect, status, "server_error", "server_error", msg);
}

static void try_admit(void)
{
    while (!h2o_linklist_is_empty(&G.waiting) && G.nrunning < G.max_seqs) {
        struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, link, G.waiting.next);
        int r = model_load(s->model);
        if (r == -EAGAIN)
            break; /* head of line waits for a busy model to go idle */
        if (r < 0) {
            fail(s, 500, "model requires more memory than the engine has");
            continue;
        }
        h2o_linklist_unlink(&s->link);
        G.nwaiting--;
        h2o_linklist_insert(&G.running, &s->link);
        G.nrunning++;
        for (unsigned i = 0; i < G.max_seqs; i++)
            if (G.slots[i] == NULL) {
                G.slots[i] = s;
                s->slot = i;
                break;
            }
        s->model->running++;
        s->t_admit = now_ns();
        if (s->model->state == M_LOADED) {
            start_prefill(s);
        } else {
            s->state = S_LOADING;
        }
    }
}

int sched_submit(struct seq *s)
{
    if (G.max_queue && G.nwaiting >= G.max_queue && (G.nrunning >= G.max_seqs || G.nwaiting > 0)) {
        G.rejected++;
        return -EBUSY;
    }
    s->state = S_WAITING;
    h2o_linklist_insert(&G.waiting, &s->link);
    G.nwaiting++;
    try_admit();
    return 0;
}

/* ---- clients that go away before their answer -------------------------------------------------- */

struct hung {
    h2o_linklist_t link;
    h2o_req_t *req;
};
static h2o_linklist_t hung_reqs = {&hung_reqs, &hung_reqs};

static int client_gone(h2o_req_t *req)
{
    if (req == NULL || req->conn->callbacks->get_socket == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL)
        return 0;
    char c;
    ssize_t r = recv(h2o_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void on_hung_dispose(void *p)
{
    struct hung *h = p;
    if (h2o_linklist_is_linked(&h->link))
        h2o_linklist_unlink(&h->link);
}

void watch_req(h2o_req_t *req, int hang)
{
    struct hung *h = h2o_mem_alloc_shared(&req->pool, sizeof(*h), on_hung_dispose);
    *h = (struct hung){.req = req}; /* pool memory is not zeroed, and linking asserts the link is clear */
    h2o_linklist_insert(&hung_reqs, &h->link);
}

static void reap_list(h2o_linklist_t *anchor)
{
restart:
    for (h2o_linklist_t *l = anchor->next; l != anchor; l = l->next) {
        struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, link, l);
        if (!client_gone(s->req))
            continue;
        /* cancelling admits waiters, which reshapes both lists: start over */
        cancel(s);
        s->aborted = 1;
        seq_flush(s, 0);
        goto restart;
    }
}

static void on_reap(h2o_timeout_entry_t *e)
{
    reap_list(&G.waiting);
    reap_list(&G.running);
    for (h2o_linklist_t *l = hung_reqs.next, *next; l != &hung_reqs; l = next) {
        next = l->next;
        struct hung *h = H2O_STRUCT_FROM_MEMBER(struct hung, link, l);
        if (client_gone(h->req)) {
            h2o_linklist_unlink(&h->link);
            /* the peer is gone; answering lets h2o notice and free the connection */
            send_error(h->req, DIA_OPENAI, 499, "client_closed", "client_closed", "client closed the connection");
        }
    }
    uint64_t now = now_ms();
    for (unsigned i = 0; i < G.nmodels; i++) {
        struct model *m = &G.models[i];
        if (m->state == M_LOADED && m->running == 0 && m->expires_at_ms >= 0 && (uint64_t)m->expires_at_ms <= now)
            model_unload(m);
    }
    timer_link(e, 50);
}
static h2o_timeout_entry_t reap_timer = {0, on_reap};

void sched_init(void)
{
    h2o_linklist_init_anchor(&G.waiting);
    h2o_linklist_init_anchor(&G.running);
    G.slots = calloc(G.max_seqs, sizeof(*G.slots));
    timer_link(&reap_timer, 50);
    if (!G.lazy_load)
        for (unsigned i = 0; i < G.nmodels; i++)
            model_load(&G.models[i]);
}
