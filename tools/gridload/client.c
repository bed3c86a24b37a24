/* gridload's event loop: schedules arrivals (Poisson per flow, or closed loop), runs HTTP/1.1 keep-alive
 * connections on non-blocking sockets with one epoll set, parses responses with picohttpparser, timestamps
 * the first content token of each stream, and records one sample per finished request.
 *
 * Open loop: an arrival is issued at its scheduled time whatever the server is doing, and latencies are
 * measured from the scheduled time, so a slow loop iteration or a slow server shows up in the numbers
 * instead of silently thinning the load (coordinated omission). Each arrival takes the most recently idle
 * keep-alive connection or opens a new one. */
#include "gridload.h"
#include "gridgate/log.h"
#include "gridgate/picohttpparser.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum conn_state { C_CONNECTING, C_WRITING, C_READING, C_IDLE };
enum body_mode { B_NONE, B_LENGTH, B_CHUNKED, B_CLOSE };

#define MAX_BODY (16u << 20) /* non-streaming bodies kept for the scan; longer ones are counted, not kept */
#define EV_READ (EPOLLIN | EPOLLRDHUP)

struct conn {
    int fd;
    enum conn_state state;
    uint32_t events; /* what epoll currently watches, to skip needless epoll_ctl calls */
    int served;      /* requests completed on this connection: an early close on a reused one is retried */
    struct gl_flow *flow;
    int64_t start, deadline, ttft;
    int tokens, usage, error, got_bytes;
    size_t woff;
    /* response head, then partial lines or a whole non-streaming body */
    char *head;
    size_t hlen, hcap;
    char *body;
    size_t blen, bcap;
    int head_done, status, keepalive;
    enum body_mode mode;
    int64_t remaining;
    struct phr_chunked_decoder dec;
    struct conn *tprev, *tnext; /* outstanding requests in deadline order (one --timeout for all) */
    struct conn *iprev, *inext; /* idle keep-alive connections */
};

struct loop {
    struct gl_config *cfg;
    int ep;
    struct timespec t0;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t timeout_ns;
    int outstanding;
    struct conn *thead, *ttail;
    struct conn *idle;
    int nidle;
    uint64_t opened, retried; /* connections opened; requests moved off a closed keep-alive one */
};

static volatile sig_atomic_t interrupted;
static char rbuf[65536];

static void on_signal(int sig)
{
    interrupted = 1;
}

static int64_t now_ns(struct loop *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (ts.tv_sec - l->t0.tv_sec) * NS_PER_SEC + (ts.tv_nsec - l->t0.tv_nsec);
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t exp_gap(struct gl_flow *f)
{
    double u = (splitmix(&f->rng) >> 11) * (1.0 / 9007199254740992.0); /* [0, 1) */
    return (int64_t)(-log1p(-u) / f->rate * NS_PER_SEC);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL) {
        gg_error("out of memory");
        abort();
    }
    return p;
}

static void append(char **buf, size_t *len, size_t *cap, const char *src, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n)
            c *= 2;
        *buf = xrealloc(*buf, c);
        *cap = c;
    }
    memcpy(*buf + *len, src, n);
    *len += n;
}

static void count_per_sec(uint64_t **arr, size_t *n, int64_t t, uint64_t v)
{
    size_t s = t < 0 ? 0 : (size_t)(t / NS_PER_SEC);
    if (s >= *n) {
        size_t m = *n ? *n : 16;
        while (m <= s)
            m *= 2;
        *arr = xrealloc(*arr, m * sizeof(**arr));
        memset(*arr + *n, 0, (m - *n) * sizeof(**arr));
        *n = m;
    }
    (*arr)[s] += v;
}

static void record(struct gl_flow *f, const struct gl_sample *s)
{
    if (f->nsamples == f->cap_samples) {
        f->cap_samples = f->cap_samples ? f->cap_samples * 2 : 1024;
        f->samples = xrealloc(f->samples, f->cap_samples * sizeof(*f->samples));
    }
    f->samples[f->nsamples++] = *s;
}

/* --- connection bookkeeping ------------------------------------------------------------------ */

static int watch(struct loop *l, struct conn *c, uint32_t ev)
{
    if (c->events == ev)
        return 0;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    int op = c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(l->ep, op, c->fd, &e) == -1)
        return -errno;
    c->events = ev;
    return 0;
}

static void idle_unlink(struct loop *l, struct conn *c)
{
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        l->idle = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    c->iprev = c->inext = NULL;
    l->nidle--;
}

static void timeout_unlink(struct loop *l, struct conn *c)
{
    if (c->tprev)
        c->tprev->tnext = c->tnext;
    else
        l->thead = c->tnext;
    if (c->tnext)
        c->tnext->tprev = c->tprev;
    else
        l->ttail = c->tprev;
    c->tprev = c->tnext = NULL;
}

/* Arrivals of several flows are issued flow by flow, so deadlines can come slightly out of order: walk
 * back from the tail (rarely more than a step) to keep the list sorted. */
static void timeout_insert(struct loop *l, struct conn *c)
{
    struct conn *p = l->ttail;
    while (p != NULL && p->deadline > c->deadline)
        p = p->tprev;
    c->tprev = p;
    c->tnext = p ? p->tnext : l->thead;
    if (c->tnext)
        c->tnext->tprev = c;
    else
        l->ttail = c;
    if (p)
        p->tnext = c;
    else
        l->thead = c;
}

static void conn_free(struct loop *l, struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    free(c->head);
    free(c->body);
    free(c);
}

static struct conn *conn_open(struct loop *l, int *err)
{
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        *err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        gg_error("out of memory");
        abort();
    }
    c->fd = fd;
    l->opened++;
    if (connect(fd, (struct sockaddr *)&l->addr, l->addrlen) == 0) {
        c->state = C_WRITING;
    } else if (errno == EINPROGRESS) {
        c->state = C_CONNECTING;
    } else {
        *err = -errno;
        conn_free(l, c);
        return NULL;
    }
    return c;
}

/* --- requests ---------------------------------------------------------------------------------- */

static void reset_response(struct conn *c)
{
    c->hlen = c->blen = 0;
    c->woff = 0;
    c->head_done = c->status = c->keepalive = 0;
    c->mode = B_NONE;
    c->remaining = 0;
    memset(&c->dec, 0, sizeof(c->dec));
    c->dec.consume_trailer = 1;
    c->ttft = -1;
    c->tokens = 0;
    c->usage = -1;
    c->error = 0;
    c->got_bytes = 0;
}

static void send_request(struct loop *l, struct conn *c);

/* Takes the request of c onto a fresh connection (after a reused one turned out to be closed). */
static int move_to_fresh(struct loop *l, struct conn *c)
{
    int err;
    struct conn *n = conn_open(l, &err);
    if (n == NULL)
        return err;
    n->flow = c->flow;
    n->start = c->start;
    n->deadline = c->deadline;
    reset_response(n);
    /* n takes c's place in the deadline list */
    n->tprev = c->tprev;
    n->tnext = c->tnext;
    if (n->tprev)
        n->tprev->tnext = n;
    else
        l->thead = n;
    if (n->tnext)
        n->tnext->tprev = n;
    else
        l->ttail = n;
    conn_free(l, c);
    if (n->state == C_CONNECTING) {
        if (watch(l, n, EPOLLOUT) != 0)
            return -EIO; /* cannot happen for a fresh fd; n stays in the list and times out */
    } else {
        send_request(l, n);
    }
    return 0;
}

/* Ends the request on c; status is the HTTP status or 0 with fail set. */
static void finish(struct loop *l, struct conn *c, int status, enum gl_fail fail)
{
    struct gl_flow *f = c->flow;
    int64_t now = now_ns(l);
    struct gl_sample s = {.start = c->start, .e2e = now - c->start, .status = (int16_t)status, .fail = (int8_t)fail};
    s.warmup = c->start < (int64_t)(f->warmup * NS_PER_SEC);
    int ok = fail == GL_FAIL_NONE && status >= 200 && status < 300;
    if (ok && !f->stream) {
        struct gl_scan sc = {.usage = -1};
        gl_scan_json(c->body, c->blen, &sc);
        c->error = sc.error;
        c->usage = sc.usage;
        c->tokens = sc.content;
        c->ttft = now - c->start;
    }
    if (ok && c->error) {
        s.fail = GL_FAIL_STREAM;
        s.status = 0;
        ok = 0;
    }
    s.ttft = c->ttft;
    s.tokens = c->tokens;
    if (c->usage >= 0 && ok) {
        /* The engine's own count beats counting events (an event may carry several tokens). */
        if (c->usage > c->tokens || !f->stream)
            count_per_sec(&f->tok_per_sec, &f->ntok_sec, now, (uint64_t)(c->usage - (f->stream ? c->tokens : 0)));
        s.tokens = c->usage;
    } else if (ok && !f->stream) {
        count_per_sec(&f->tok_per_sec, &f->ntok_sec, now, (uint64_t)c->tokens);
    }
    record(f, &s);

    timeout_unlink(l, c);
    f->inflight--;
    l->outstanding--;
    c->flow = NULL;
    if (fail == GL_FAIL_NONE && c->keepalive && l->nidle < l->cfg->max_outstanding) {
        c->served++;
        c->state = C_IDLE;
        if (watch(l, c, EV_READ) != 0) {
            conn_free(l, c);
            return;
        }
        c->iprev = NULL;
        c->inext = l->idle;
        if (l->idle)
            l->idle->iprev = c;
        l->idle = c;
        l->nidle++;
    } else {
        conn_free(l, c);
    }
    if (f->conc > 0 && fail == GL_FAIL_CONNECT)
        f->next_arrival = now + 10 * NS_PER_MS; /* closed loop against a dead target: do not spin */
}

/* Early EOF / reset / EPIPE before any response byte on a connection that served before: the server
 * closed it while idle, so the request was never seen. Retry once on a fresh connection. */
static void fail_io(struct loop *l, struct conn *c, int retryable)
{
    if (retryable && c->served > 0 && !c->got_bytes && move_to_fresh(l, c) == 0) {
        l->retried++;
        return;
    }
    finish(l, c, 0, GL_FAIL_IO);
}

static void send_request(struct loop *l, struct conn *c)
{
    struct gl_flow *f = c->flow;
    c->state = C_WRITING;
    while (c->woff < f->req_len) {
        ssize_t n = send(c->fd, f->req + c->woff, f->req_len - c->woff, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (watch(l, c, EPOLLOUT) != 0)
                    finish(l, c, 0, GL_FAIL_IO);
                return;
            }
            fail_io(l, c, 1);
            return;
        }
        c->woff += (size_t)n;
    }
    c->state = C_READING;
    if (watch(l, c, EV_READ) != 0)
        finish(l, c, 0, GL_FAIL_IO);
}

static void issue(struct loop *l, struct gl_flow *f, int64_t start)
{
    if (l->outstanding >= l->cfg->max_outstanding) {
        if (start < (int64_t)(f->warmup * NS_PER_SEC))
            f->dropped_warmup++;
        else
            f->dropped++;
        count_per_sec(&f->drop_per_sec, &f->ndrop_sec, start, 1);
        return;
    }
    struct conn *c = l->idle;
    int err = 0;
    if (c != NULL)
        idle_unlink(l, c);
    else
        c = conn_open(l, &err);
    f->inflight++;
    l->outstanding++;
    if (c == NULL) {
        /* Refused at once (or out of fds): still a request that failed to connect. An fd-less conn
         * lets finish() do the accounting as for any other request. */
        gg_debug("connect: %s", strerror(-err));
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            gg_error("out of memory");
            abort();
        }
        c->fd = -1;
        c->flow = f;
        c->start = start;
        c->deadline = start + l->timeout_ns;
        reset_response(c);
        timeout_insert(l, c);
        finish(l, c, 0, GL_FAIL_CONNECT);
        return;
    }
    c->flow = f;
    c->start = start;
    c->deadline = start + l->timeout_ns;
    reset_response(c);
    timeout_insert(l, c);
    if (c->state == C_CONNECTING) {
        if (watch(l, c, EPOLLOUT) != 0)
            finish(l, c, 0, GL_FAIL_CONNECT);
        return;
    }
    send_request(l, c);
}

/* --- response parsing ---------------------------------------------------------------------------- */

static void on_payload(struct loop *l, struct conn *c, const char *s, size_t n)
{
    struct gl_scan sc = {.usage = -1};
    gl_scan_json(s, n, &sc);
    if (sc.content) {
        int64_t now = now_ns(l);
        if (c->ttft < 0)
            c->ttft = now - c->start;
        c->tokens++;
        count_per_sec(&c->flow->tok_per_sec, &c->flow->ntok_sec, now, 1);
    }
    if (sc.usage >= 0)
        c->usage = sc.usage;
    if (sc.error)
        c->error = 1;
}

/* One line of an SSE ("data: {...}") or NDJSON ("{...}") stream. */
static void on_line(struct loop *l, struct conn *c, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n >= 5 && memcmp(s, "data:", 5) == 0) {
        s += 5;
        n -= 5;
        if (n > 0 && *s == ' ')
            s++, n--;
        if (n == 6 && memcmp(s, "[DONE]", 6) == 0)
            return;
        on_payload(l, c, s, n);
    } else if (n > 0 && *s == '{') {
        on_payload(l, c, s, n);
    }
}

/* Decoded body bytes. Complete lines are scanned where they lie; only a partial tail is copied. */
static void on_content(struct loop *l, struct conn *c, const char *s, size_t n)
{
    if (c->status < 200 || c->status >= 300)
        return;
    if (!c->flow->stream) {
        if (c->blen + n <= MAX_BODY)
            append(&c->body, &c->blen, &c->bcap, s, n);
        return;
    }
    while (n > 0) {
        const char *nl = memchr(s, '\n', n);
        if (nl == NULL) {
            append(&c->body, &c->blen, &c->bcap, s, n);
            return;
        }
        size_t k = (size_t)(nl - s);
        if (c->blen > 0) {
            append(&c->body, &c->blen, &c->bcap, s, k);
            on_line(l, c, c->body, c->blen);
            c->blen = 0;
        } else {
            on_line(l, c, s, k);
        }
        s += k + 1;
        n -= k + 1;
    }
}

/* Raw body bytes (still chunk-encoded if chunked); returns 1 when the response is complete, -1 on error. */
static int on_body(struct loop *l, struct conn *c, char *s, size_t n)
{
    switch (c->mode) {
    case B_NONE:
        if (n > 0)
            c->keepalive = 0;
        return 1;
    case B_LENGTH: {
        size_t take = (int64_t)n < c->remaining ? n : (size_t)c->remaining;
        on_content(l, c, s, take);
        c->remaining -= (int64_t)take;
        if (take < n)
            c->keepalive = 0; /* bytes beyond the body: the stream is out of sync */
        return c->remaining == 0;
    }
    case B_CHUNKED: {
        size_t sz = n;
        ssize_t r = phr_decode_chunked(&c->dec, s, &sz);
        if (r == -1)
            return -1;
        on_content(l, c, s, sz);
        if (r >= 0) {
            if (r > 0)
                c->keepalive = 0;
            return 1;
        }
        return 0;
    }
    case B_CLOSE:
        on_content(l, c, s, n);
        return 0;
    }
    return -1;
}

/* Returns 1 when the head is complete (body bytes already fed), 0 for more, -1 on a bad response. */
static int parse_head(struct loop *l, struct conn *c)
{
    struct phr_header hdrs[64];
    size_t nh = sizeof(hdrs) / sizeof(hdrs[0]);
    int minor, status;
    const char *msg;
    size_t msg_len;
    int r = phr_parse_response(c->head, c->hlen, &minor, &status, &msg, &msg_len, hdrs, &nh, 0);
    if (r == -2)
        return c->hlen > (64u << 10) ? -1 : 0;
    if (r < 0)
        return -1;
    if (status >= 100 && status < 200) {
        /* interim response: drop it and parse what follows */
        memmove(c->head, c->head + r, c->hlen - (size_t)r);
        c->hlen -= (size_t)r;
        return c->hlen ? parse_head(l, c) : 0;
    }
    c->status = status;
    c->head_done = 1;
    c->keepalive = minor >= 1;
    int64_t clen = -1;
    int chunked = 0;
    for (size_t i = 0; i < nh; i++) {
        const struct phr_header *h = &hdrs[i];
        if (h->name_len == 14 && strncasecmp(h->name, "content-length", 14) == 0) {
            clen = strtoll(h->value, NULL, 10);
        } else if (h->name_len == 17 && strncasecmp(h->name, "transfer-encoding", 17) == 0) {
            chunked = h->value_len >= 7 && strncasecmp(h->value + h->value_len - 7, "chunked", 7) == 0;
        } else if (h->name_len == 10 && strncasecmp(h->name, "connection", 10) == 0) {
            if (h->value_len == 5 && strncasecmp(h->value, "close", 5) == 0)
                c->keepalive = 0;
            else if (h->value_len == 10 && strncasecmp(h->value, "keep-alive", 10) == 0)
                c->keepalive = 1;
        }
    }
    if (status == 204 || status == 304) {
        c->mode = B_NONE;
    } else if (chunked) {
        c->mode = B_CHUNKED;
    } else if (clen >= 0) {
        c->mode = B_LENGTH;
        c->remaining = clen;
    } else {
        c->mode = B_CLOSE;
        c->keepalive = 0;
    }
    if (c->mode == B_LENGTH && clen == 0)
        c->mode = B_NONE;
    size_t rest = c->hlen - (size_t)r;
    int done = on_body(l, c, c->head + r, rest);
    c->hlen = 0;
    return done < 0 ? -1 : done == 1 ? 2 : 1;
}

static void on_readable(struct loop *l, struct conn *c)
{
    ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);
    if (n == -1) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        fail_io(l, c, errno == ECONNRESET || errno == EPIPE);
        return;
    }
    if (n == 0) {
        if (c->head_done && c->mode == B_CLOSE)
            finish(l, c, c->status, GL_FAIL_NONE);
        else
            fail_io(l, c, 1);
        return;
    }
    c->got_bytes = 1;
    int r;
    if (!c->head_done) {
        append(&c->head, &c->hlen, &c->hcap, rbuf, (size_t)n);
        r = parse_head(l, c);
        if (r == 0 || r == 1)
            return;
        if (r == 2)
            r = 1;
    } else {
        r = on_body(l, c, rbuf, (size_t)n);
    }
    if (r < 0)
        finish(l, c, 0, GL_FAIL_IO);
    else if (r == 1)
        finish(l, c, c->status, GL_FAIL_NONE);
}

static void on_event(struct loop *l, struct conn *c, uint32_t ev)
{
    switch (c->state) {
    case C_IDLE:
        /* the server closed (or wrote to) an idle connection: it cannot carry a request any more */
        idle_unlink(l, c);
        conn_free(l, c);
        return;
    case C_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
            err = errno;
        if (err != 0) {
            gg_debug("connect: %s", strerror(err));
            finish(l, c, 0, GL_FAIL_CONNECT);
            return;
        }
        send_request(l, c);
        return;
    }
    case C_WRITING:
        send_request(l, c);
        return;
    case C_READING:
        on_readable(l, c);
        return;
    }
}

/* --- the run ------------------------------------------------------------------------------------- */

static int resolve(struct loop *l)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int r = getaddrinfo(l->cfg->host, l->cfg->port, &hints, &res);
    if (r != 0) {
        gg_error("cannot resolve %s:%s: %s", l->cfg->host, l->cfg->port, gai_strerror(r));
        return -EHOSTUNREACH;
    }
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    l->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int gl_run(struct gl_config *cfg)
{
    struct loop l = {.cfg = cfg, .timeout_ns = (int64_t)(cfg->timeout * NS_PER_SEC)};
    int err = resolve(&l);
    if (err != 0)
        return err;
    raise_nofile();
    l.ep = epoll_create1(EPOLL_CLOEXEC);
    if (l.ep == -1)
        return -errno;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (size_t i = 0; i < cfg->nflows; i++) {
        struct gl_flow *f = &cfg->flows[i];
        f->rng = cfg->seed * 0x9e3779b97f4a7c15ULL + i + 1;
        f->end = (int64_t)((f->warmup + f->duration) * NS_PER_SEC);
        f->next_arrival = f->conc > 0 ? 0 : exp_gap(f);
    }
    clock_gettime(CLOCK_MONOTONIC, &l.t0);

    struct epoll_event evs[256];
    for (;;) {
        int64_t now = now_ns(&l);
        int arriving = 0;
        int64_t next = INT64_MAX;
        for (size_t i = 0; i < cfg->nflows && !interrupted; i++) {
            struct gl_flow *f = &cfg->flows[i];
            if (f->conc > 0) {
                /* Closed loop: refill to conc in flight; requests start when they are sent. */
                if (now >= f->end)
                    continue;
                arriving = 1;
                if (now < f->next_arrival) {
                    next = next < f->next_arrival ? next : f->next_arrival;
                    continue;
                }
                while (f->inflight < f->conc && l.outstanding < cfg->max_outstanding && now_ns(&l) >= f->next_arrival)
                    issue(&l, f, now_ns(&l));
                continue;
            }
            while (f->next_arrival < f->end && f->next_arrival <= now) {
                issue(&l, f, f->next_arrival);
                f->next_arrival += exp_gap(f);
            }
            if (f->next_arrival < f->end) {
                arriving = 1;
                next = next < f->next_arrival ? next : f->next_arrival;
            }
        }
        now = now_ns(&l);
        while (l.thead != NULL && l.thead->deadline <= now)
            finish(&l, l.thead, 0, GL_FAIL_TIMEOUT);
        if (interrupted || (!arriving && l.outstanding == 0))
            break;
        if (l.thead != NULL && l.thead->deadline < next)
            next = l.thead->deadline;
        struct timespec ts, *tsp = NULL;
        if (next != INT64_MAX) {
            int64_t d = next - now;
            if (d < 0)
                d = 0;
            ts.tv_sec = d / NS_PER_SEC;
            ts.tv_nsec = d % NS_PER_SEC;
            tsp = &ts;
        }
        int n = epoll_pwait2(l.ep, evs, sizeof(evs) / sizeof(evs[0]), tsp, NULL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        for (int i = 0; i < n; i++)
            on_event(&l, evs[i].data.ptr, evs[i].events);
    }
    int64_t run_ns = now_ns(&l);
    gg_info("run over after %.3f s: %llu connections opened, %llu requests retried on a fresh connection",
            (double)run_ns / NS_PER_SEC, (unsigned long long)l.opened, (unsigned long long)l.retried);
    if (interrupted) {
        gg_warn("interrupted: %d requests still in flight are left out", l.outstanding);
        /* the measured window ends at the interrupt: tok/s and the windows must not count the rest */
        for (size_t i = 0; i < cfg->nflows; i++) {
            struct gl_flow *f = &cfg->flows[i];
            double ran = (double)run_ns / NS_PER_SEC - f->warmup;
            if (ran < f->duration)
                f->duration = ran > 0 ? ran : 0;
        }
    }
    /* Requests cut off by an interrupt are not recorded: their outcome is unknown. */
    while (l.thead != NULL) {
        struct conn *c = l.thead;
        timeout_unlink(&l, c);
        conn_free(&l, c);
    }
    while (l.idle != NULL) {
        struct conn *c = l.idle;
        idle_unlink(&l, c);
        conn_free(&l, c);
    }
    close(l.ep);
    if (err != 0)
        return err;
    return gl_report(cfg, run_ns);
}
