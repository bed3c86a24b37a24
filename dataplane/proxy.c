/* One inference request on its way through a backend.
 *
 * The client's response head is held back until the first body byte arrives from the backend, so a
 * backend that refuses, resets, answers 503 or closes before sending anything can be replaced by another
 * one without the client noticing. After the first byte reaches the client there is no retry: a stream
 * that breaks ends with an error event in the client's dialect.
 *
 * Streams pass through a double buffer: one half is being written to the client (h2o owns it until
 * proceed), the other collects what the backend sends meanwhile. When that half grows past HIGH_WATER
 * the backend socket is paused, which is the back-pressure a slow client exerts on the engine. */
#include "gridgate/proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gridgate/accesslog.h"
#include "gridgate/admission.h"
#include "gridgate/backend.h"
#include "gridgate/dialect.h"
#include "gridgate/jscan.h"
#include "gridgate/gzip.h"
#include "gridgate/log.h"
#include "gridgate/metrics.h"
#include "gridgate/respond.h"
#include "gridgate/router.h"
#include "gridgate/server.h"
#include "gridgate/splice.h"
#include "gridgate/stream.h"
#include "gridgate/tenant.h"
#include "gridgate/upstream.h"

#define HIGH_WATER (256 * 1024)
#define MAX_EVENT (4 * 1024 * 1024)
enum { BAD_EVENT_INVALID = 1, BAD_EVENT_TOO_LARGE };

gg_proxy_config_t gg_proxy_config = {.connect_ms = 3000,
                                     .first_byte_ms = 120000,
                                     .idle_ms = 60000,
                                     .max_attempts = 3,
                                     .affinity = 1,
                                     .prefer_loaded = 1,
                                     .max_response_bytes = 64 << 20};

static gg_metric_t *m_requests, *m_ttft, *m_duration, *m_retries, *m_failovers, *m_tokens, *m_stream_errors;

void gg_proxy_init(void)
{
    m_requests = gg_metric_counter("gridgate_requests_total", "Requests answered, by model, backend and status code.");
    m_ttft = gg_metric_histogram("gridgate_ttft_seconds", "Time to first generated token of streamed responses.",
                                 gg_metrics_latency_buckets);
    m_duration = gg_metric_histogram("gridgate_request_duration_seconds", "Time from request to the end of its response.",
                                     gg_metrics_latency_buckets);
    m_retries = gg_metric_counter("gridgate_retries_total", "Attempts repeated on another backend, by reason.");
    m_failovers = gg_metric_counter("gridgate_failovers_total", "Requests that were answered by a backend other than the first.");
    m_tokens = gg_metric_counter("gridgate_tokens_total", "Tokens in and out, by model and direction.");
    m_stream_errors = gg_metric_counter("gridgate_stream_errors_total", "Streams cut short by gridgate, by reason.");
}

typedef struct call {
    h2o_generator_t gen; /* first: h2o hands the generator back to proceed/stop */
    h2o_req_t *req;
    gg_worker_t *w;
    gg_reqinfo_t ri;
    const char *client_path;
    char model[128];
    uint64_t served[GG_BACKEND_WORDS], loaded[GG_BACKEND_WORDS], tried[GG_BACKEND_WORDS];
    unsigned attempts;
    int slot;       /* backend of the current attempt, -1 before the first */
    int first_slot; /* backend of the first attempt, for the failover count */
    int dispatched; /* counted in the backend's in-flight */
    gg_upstream_req_t *up;
    const char *body[2]; /* upstream body per upstream dialect, made on first need */
    size_t body_len[2];
    unsigned body_owned : 2;  /* bit d: body[d] was malloc'd (else it is the client's own body) */
    unsigned body_edited : 1; /* the gateway changed the parsed body (alias), so it must be re-serialized */
    enum gg_dialect up_dialect;
    int up_status;
    int streaming; /* the upstream answers SSE or NDJSON */
    int translate; /* the upstream speaks another dialect than the client */
    int drop_usage_chunk;
    gg_stream_parser_t parser;
    gg_xlate_t xlate;
    gg_usage_t usage;
    gg_buf_t pending, inflight;
    gg_buf_t held; /* pass-through: bytes of an event not yet complete, relayed once it parsed */
    int bad_event; /* BAD_EVENT_*: the stream is cut there; nothing from that event on is relayed */
    unsigned head_sent : 1, sending : 1, final_queued : 1, final_sent : 1, paused : 1, parser_live : 1, xlate_live : 1;
    const char *error; /* what went wrong, for the log */
    /* gzip: up_gz the engine's answer is gzip; gz_pass it goes to the client as is (a buffered answer, a client
     * that takes gzip, nothing translated; a copy is inflated to count tokens); gz_out gridgate compresses the
     * stream. A gzip stream is always inflated: its events are read, and an error event may have to be added. */
    unsigned up_gz : 1, gz_pass : 1, up_inflate_live : 1, gz_out_live : 1;
    gg_inflater_t up_inflate;
    gg_deflater_t gz_out;
    gg_buf_t plain;        /* inflated bytes of the current upstream chunk */
    h2o_socket_t *watched; /* HTTP/1 client socket watched for a hang-up until the response starts */
    void *watched_data;    /* its sock->data, which h2o's HTTP/1 code owns and gets back */
    uint64_t t_start, t_first_token;
    size_t bytes_out;
    gg_tenant_t *tenant;
    gg_admit_waiter_t *waiter; /* waiting for a slot of backend `slot` */
    uint32_t cost;             /* estimated tokens charged at admission */
    unsigned rl_charged : 1, ever_dispatched : 1;
    enum gg_reject reject; /* why admission refused it */
    uint64_t t_slot, queue_wait_us;
    /* spliced: the response went to the kernel (dataplane/splice.c); the req is gone before the stream ends, so what
     * the access log needs of it is kept here */
    unsigned spliced : 1, spliced_kernel : 1;
    h2o_iovec_t saved_method, saved_path;
    uint64_t spliced_bytes;
} call_t;

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

static void try_next(call_t *c);
static void on_admitted(void *ctx, const gg_admit_result_t *ar);

/* --- backend accounting ------------------------------------------------------------------------- */

static void release_backend(call_t *c, int failed)
{
    if (!c->dispatched)
        return;
    c->dispatched = 0;
    gg_backend_t *b = &gg_backends[c->slot];
    gg_admit_release(c->slot, c->tenant, (now_ns() - c->t_slot) / 1000);
    if (failed)
        gg_backend_report_failure(b);
    else
        gg_backend_report_success(b);
}

/* --- noticing a client that leaves before the response starts ------------------------------------ */

/* h2o's HTTP/1 code does not read from a client while its request is handled, so a client that hangs up
 * while the engine is still queueing or prefilling would go unnoticed until the first write, and the
 * engine would keep working for nobody. Until the response starts, the proxy reads the socket itself:
 * EOF or an error means the client is gone, and the upstream request is cancelled at once. */
static void unwatch(call_t *c)
{
    if (c->watched == NULL)
        return;
    h2o_socket_read_stop(c->watched);
    c->watched->data = c->watched_data;
    c->watched = NULL;
}

static void on_client_readable(h2o_socket_t *sock, const char *err)
{
    call_t *c = sock->data;
    unwatch(c);
    if (err == NULL)
        return; /* pipelined bytes: they stay in sock->input for h2o; stop watching */
    if (c->waiter != NULL) {
        gg_admit_cancel(c->waiter);
        c->waiter = NULL;
    }
    if (c->up != NULL) {
        gg_upstream_cancel(c->up);
        c->up = NULL;
        release_backend(c, 0);
    }
    c->error = "client went away";
    /* The write fails and h2o closes the connection and disposes of the request. */
    gg_respond_error(c->req, c->ri.dialect, 499, "client closed the request", "client_closed", NULL);
    c->final_sent = 1;
}

static void watch(call_t *c)
{
    h2o_req_t *req = c->req;
    if (c->head_sent || c->final_sent)
        return;
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL)
        return;
    /* h2o keeps an HTTP/1 body inside the socket's input buffer, which a read may move: keep a copy. */
    if (req->entity.base != NULL && req->entity.len != 0) {
        char *copy = h2o_mem_alloc_pool(&req->pool, req->entity.len);
        memcpy(copy, req->entity.base, req->entity.len);
        for (int d = 0; d < 2; d++)
            if (c->body[d] == req->entity.base)
                c->body[d] = copy;
        if (c->ri.body == req->entity.base)
            c->ri.body = copy;
        req->entity.base = copy;
    }
    c->watched = sock;
    c->watched_data = sock->data;
    sock->data = c;
    h2o_socket_read_start(sock, on_client_readable);
}

/* --- sending to the client ---------------------------------------------------------------------- */

static void flush(call_t *c)
{
    if (!c->head_sent || c->sending || c->final_sent)
        return;
    if (c->pending.len == 0 && !c->final_queued)
        return;
    gg_buf_t t = c->inflight;
    c->inflight = c->pending;
    c->pending = t;
    gg_buf_reset(&c->pending);
    if (c->gz_out_live) {
        /* Each flush is a sync flush: the client can decode every event the moment it arrives. */
        gg_deflater_feed(&c->gz_out, c->inflight.base, c->inflight.len, c->final_queued, &c->pending);
        t = c->inflight;
        c->inflight = c->pending;
        c->pending = t;
        gg_buf_reset(&c->pending);
    }
    c->sending = 1;
    c->bytes_out += c->inflight.len;
    h2o_iovec_t v = h2o_iovec_init(c->inflight.base, c->inflight.len);
    if (c->final_queued)
        c->final_sent = 1;
    h2o_send(c->req, &v, v.len ? 1 : 0, c->final_queued ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    call_t *c = (call_t *)gen;
    c->sending = 0;
    gg_buf_reset(&c->inflight);
    if (c->paused && c->up != NULL && c->pending.len < HIGH_WATER) {
        c->paused = 0;
        gg_upstream_resume(c->up);
    }
    flush(c);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    call_t *c = (call_t *)gen;
    if (c->up != NULL) {
        /* The client left: closing the upstream connection is how the engine learns to stop. */
        gg_upstream_cancel(c->up);
        c->up = NULL;
        c->error = "client went away";
        release_backend(c, 0);
    }
}

/* The head of a streamed answer in the client's dialect: 200 with SSE or NDJSON. */
static void set_stream_head(call_t *c)
{
    h2o_req_t *req = c->req;
    unwatch(c);
    req->res.status = 200;
    req->res.reason = "OK";
    if (c->ri.dialect == GG_DIALECT_OPENAI) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    } else {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/x-ndjson"));
    }
}

static void start_stream_response(call_t *c)
{
    h2o_req_t *req = c->req;
    set_stream_head(c);
    if (!c->gz_pass && gg_gzip_config.stream && gg_gzip_config.level > 0 && gg_client_accepts_gzip(req) &&
        gg_deflater_init(&c->gz_out, gg_gzip_config.level) == 0)
        c->gz_out_live = 1;
    if (c->gz_pass || c->gz_out_live)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
    c->gen.proceed = on_proceed;
    c->gen.stop = on_stop;
    h2o_start_response(req, &c->gen);
    c->head_sent = 1;
}

/* Ends a stream that broke after it started, in the client's dialect. */
static void end_stream_with_error(call_t *c, const char *message)
{
    if (!c->xlate_live) {
        gg_xlate_init(&c->xlate, c->ri.dialect, c->ri.dialect, c->ri.ep, c->model, c->ri.include_usage);
        c->xlate_live = 1;
    }
    gg_xlate_error(&c->xlate, message, &c->pending);
    c->final_queued = 1;
    flush(c);
}

/* --- answering without a stream ------------------------------------------------------------------- */

static void respond_upstream_error(call_t *c, int status, const char *message)
{
    unwatch(c);
    const char *type = status == 504 ? "timeout_error" : status == 503 ? "service_unavailable" : "upstream_error";
    if (status == 503)
        gg_respond_error_retry(c->req, c->ri.dialect, status, message, type, NULL, 1);
    else
        gg_respond_error(c->req, c->ri.dialect, status, message, type, NULL);
    c->final_sent = 1;
}

/* The upstream's error body, re-said in the client's dialect with the upstream's status. */
static void respond_translated_error(call_t *c)
{
    unwatch(c);
    char msg[512] = "upstream error";
    json_error_t jerr;
    json_t *j = json_loadb(c->pending.base, c->pending.len, 0, &jerr);
    json_t *e = j ? json_object_get(j, "error") : NULL;
    if (json_is_string(e))
        snprintf(msg, sizeof(msg), "%s", json_string_value(e));
    else if (json_is_object(e) && json_is_string(json_object_get(e, "message")))
        snprintf(msg, sizeof(msg), "%s", json_string_value(json_object_get(e, "message")));
    else if (c->pending.len)
        snprintf(msg, sizeof(msg), "%.*s", (int)(c->pending.len < 400 ? c->pending.len : 400), c->pending.base);
    json_decref(j);
    int status = c->up_status;
    const char *code = status == 404 ? "model_not_found" : NULL;
    const char *type = status == 404 ? "invalid_request_error" : status < 500 ? "invalid_request_error" : "upstream_error";
    gg_respond_error(c->req, c->ri.dialect, status, msg, type, code);
    c->final_sent = 1;
}

static void respond_buffered(call_t *c)
{
    unwatch(c);
    gg_buf_t raw = GG_BUF_INIT;
    if (c->up_gz) {
        /* Inflated to count tokens or to translate; the compressed bytes are kept when they go out as they are. */
        gg_buf_t plain = GG_BUF_INIT;
        if (gg_gunzip(c->pending.base, c->pending.len, gg_proxy_config.max_response_bytes, 0, &plain) != 0) {
            gg_buf_free(&plain);
            c->error = "corrupt gzip from backend";
            respond_upstream_error(c, 502, "the backend answered with a gzip body that does not inflate");
            return;
        }
        raw = c->pending;
        c->pending = plain;
    }
    /* From here on, raw.base is non-NULL only when the engine's gzip bytes may go out as they came. */
    if (!c->gz_pass || c->up_status < 200 || c->up_status >= 300)
        gg_buf_free(&raw);
    if (c->up_status >= 300 && c->up_status < 400) {
        /* A backend must not send clients (or the gateway) elsewhere: that is a broken backend. */
        char msg[96];
        snprintf(msg, sizeof(msg), "the backend answered with a redirect (%d), which gridgate does not follow", c->up_status);
        c->error = "backend redirect";
        respond_upstream_error(c, 502, msg);
        return;
    }
    if (c->up_status < 200 || c->up_status >= 300) {
        respond_translated_error(c);
        return;
    }
    gg_usage_observe(&c->usage, c->up_dialect, c->pending.base, c->pending.len);
    int want_base64 = c->ri.ep == GG_EP_EMBED && c->ri.dialect == GG_DIALECT_OPENAI && c->ri.encoding_base64;
    if (!c->translate) {
        /* Passed through as it came, but never a broken body under a 200. */
        if (!gg_json_check(c->pending.base, c->pending.len)) {
            c->error = "invalid JSON from backend";
            respond_upstream_error(c, 502, "the backend answered with a body that is not valid JSON");
            gg_buf_free(&raw);
            return;
        }
        if (raw.base != NULL)
            gg_respond_gzipped(c->req, c->up_status, "application/json", raw.base, raw.len);
        else
            gg_respond(c->req, c->up_status, "application/json", c->pending.base, c->pending.len);
        gg_buf_free(&raw);
        c->final_sent = 1;
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb(c->pending.base, c->pending.len, 0, &jerr);
    json_t *out = in ? gg_dialect_response(c->up_dialect, c->ri.dialect, c->ri.ep, in, c->model, want_base64) : NULL;
    json_decref(in);
    if (out == NULL) {
        c->error = "invalid JSON from backend";
        respond_upstream_error(c, 502, "the backend answered with a body that is not valid JSON");
        return;
    }
    char *s = json_dumps(out, GG_JSON_DUMP_FLAGS);
    json_decref(out);
    gg_respond(c->req, 200, "application/json", s, strlen(s));
    free(s);
    c->final_sent = 1;
}

/* --- upstream callbacks --------------------------------------------------------------------------- */

static int is_content_type(const struct phr_header *h, size_t n, const char *want)
{
    size_t wl = strlen(want);
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == 12 && strncasecmp(h[i].name, "content-type", 12) == 0)
            return h[i].value_len >= wl && strncasecmp(h[i].value, want, wl) == 0;
    return 0;
}

static void on_event(void *ctx, const char *data, size_t len)
{
    call_t *c = ctx;
    int ev = gg_usage_observe(&c->usage, c->up_dialect, data, len);
    if ((ev & GG_USAGE_EV_CONTENT) && c->t_first_token == 0)
        c->t_first_token = now_ns();
    if (c->bad_event)
        return;
    if (c->translate ? gg_xlate_event(&c->xlate, data, len, &c->pending) != 0 : (ev & GG_USAGE_EV_INVALID) != 0) {
        c->error = "invalid event from backend";
        c->bad_event = BAD_EVENT_INVALID;
    }
}

static void end_stream_with_error(call_t *c, const char *message);
static void start_stream_response(call_t *c);

static void end_stream_at_bad_event(call_t *c)
{
    int invalid = c->bad_event == BAD_EVENT_INVALID;
    gg_metric_add(m_stream_errors, invalid ? "reason=\"invalid_event\"" : "reason=\"event_too_large\"", 1);
    if (!c->head_sent)
        start_stream_response(c);
    end_stream_with_error(c, invalid ? "the backend sent an event that is not valid JSON; the stream stops there"
                                     : "the backend sent an event larger than 4 MiB; the stream stops there");
}

/* Pass-through relays the engine's bytes unchanged, but only whole events that parsed: each line goes through
 * the parser first and waits in `held` until its event is complete (NDJSON: the line; SSE: the blank line that
 * ends it, so comments and keep-alives travel too). A malformed event is never relayed. */
static void relay_passthrough(call_t *c, const char *buf, size_t len)
{
    const char *s = buf, *end = buf + len;
    while (s < end && !c->bad_event) {
        const char *nl = memchr(s, '\n', (size_t)(end - s)), *e = nl ? nl + 1 : end;
        if (gg_stream_feed(&c->parser, s, (size_t)(e - s), on_event, c) != 0 || c->held.len + (size_t)(e - s) > MAX_EVENT) {
            c->error = "event too large";
            c->bad_event = BAD_EVENT_TOO_LARGE;
        }
        if (c->bad_event)
            break;
        gg_buf_append(&c->held, s, (size_t)(e - s));
        int blank = nl != NULL && (nl == s || (nl == s + 1 && *s == '\r'));
        if (nl != NULL && (c->parser.kind == GG_STREAM_NDJSON || blank)) {
            gg_buf_append(&c->pending, c->held.base, c->held.len);
            gg_buf_reset(&c->held);
        }
        s = e;
    }
}

static int on_head(void *ctx, int status, int minor, const struct phr_header *headers, size_t n)
{
    call_t *c = ctx;
    c->up_status = status;
    if (status == 503) {
        /* A full engine queue: someone else may have room. Nothing reached the client yet. */
        return -1;
    }
    c->streaming =
        status == 200 && (is_content_type(headers, n, "text/event-stream") || is_content_type(headers, n, "application/x-ndjson"));
    c->up_gz = 0;
    for (size_t i = 0; i < n; i++)
        if (headers[i].name_len == 16 && strncasecmp(headers[i].name, "content-encoding", 16) == 0)
            c->up_gz = (headers[i].value_len == 4 && strncasecmp(headers[i].value, "gzip", 4) == 0) ||
                       (headers[i].value_len == 6 && strncasecmp(headers[i].value, "x-gzip", 6) == 0);
    c->gz_pass = c->up_gz && !c->streaming && !c->translate && status >= 200 && status < 300 && gg_client_accepts_gzip(c->req);
    if (c->up_inflate_live)
        gg_inflater_dispose(&c->up_inflate);
    c->up_inflate_live = 0;
    if (c->up_gz && c->streaming) {
        gg_inflater_init(&c->up_inflate, 0, 0);
        c->up_inflate_live = 1;
    }
    if (c->streaming) {
        gg_stream_init(&c->parser, c->up_dialect == GG_DIALECT_OPENAI ? GG_STREAM_SSE : GG_STREAM_NDJSON, MAX_EVENT);
        c->parser_live = 1;
        gg_buf_reset(&c->held);
        c->bad_event = 0;
        if (c->translate) {
            gg_xlate_init(&c->xlate, c->up_dialect, c->ri.dialect, c->ri.ep, c->model, c->ri.include_usage);
            c->xlate_live = 1;
        }
    }
    return 0;
}

static int on_body(void *ctx, const char *buf, size_t len)
{
    call_t *c = ctx;
    if (!c->streaming) {
        if (c->pending.len + len > gg_proxy_config.max_response_bytes) {
            c->error = "response too large";
            return -1;
        }
        gg_buf_append(&c->pending, buf, len);
        return 0;
    }
    if (c->up_gz) {
        gg_buf_reset(&c->plain);
        if (gg_inflater_feed(&c->up_inflate, buf, len, &c->plain) != 0) {
            c->error = "corrupt gzip from backend";
            return -1;
        }
        buf = c->plain.base ? c->plain.base : "";
        len = c->plain.len;
    }
    if (!c->translate)
        relay_passthrough(c, buf, len);
    else if (gg_stream_feed(&c->parser, buf, len, on_event, c) != 0)
        c->error = "event too large";
    if (c->bad_event) {
        /* Stop reading the engine; the client gets the whole events before the bad one, then the error event. */
        gg_upstream_cancel(c->up);
        c->up = NULL;
        release_backend(c, 0);
        end_stream_at_bad_event(c);
        return 0;
    }
    if (!c->head_sent && c->pending.len != 0)
        start_stream_response(c);
    flush(c);
    if (c->pending.len >= HIGH_WATER && !c->paused) {
        c->paused = 1;
        gg_upstream_pause(c->up);
    }
    return 0;
}

static void on_end(void *ctx)
{
    call_t *c = ctx;
    c->up = NULL;
    release_backend(c, 0);
    if (!c->streaming) {
        respond_buffered(c);
        return;
    }
    gg_stream_finish(&c->parser, on_event, c);
    if (!c->bad_event) /* an unterminated last event that parsed (NDJSON without a final newline) */
        gg_buf_append(&c->pending, c->held.base, c->held.len);
    gg_buf_reset(&c->held);
    if (!c->head_sent)
        start_stream_response(c);
    if (c->bad_event) {
        end_stream_at_bad_event(c);
        return;
    }
    if (!c->usage.done) {
        end_stream_with_error(c, "the backend ended the stream before it was complete");
        return;
    }
    c->final_queued = 1;
    flush(c);
}

static void on_error(void *ctx, const char *err, enum gg_upstream_phase phase)
{
    call_t *c = ctx;
    c->up = NULL;
    c->error = err;
    int backend_fault = err != gg_upstream_err_pool_full;
    release_backend(c, backend_fault);
    if (c->head_sent) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the backend failed mid-stream: %s", err);
        end_stream_with_error(c, msg);
        return;
    }
    int timeout =
        err == gg_upstream_err_first_byte_timeout || err == gg_upstream_err_idle_timeout || err == gg_upstream_err_connect_timeout;
    if (!timeout && c->up_status != 0 && c->up_status != 503 && !c->streaming) {
        /* The backend answered and then broke while we buffered: a bad response, not a refusal. */
        respond_upstream_error(c, 502, "the backend's response broke off");
        return;
    }
    if (timeout && err != gg_upstream_err_connect_timeout) {
        respond_upstream_error(c, 504, "the backend did not answer in time");
        return;
    }
    gg_metric_add(m_retries, err == gg_upstream_err_refused ? "reason=\"refused\"" : "reason=\"failed\"", 1);
    try_next(c);
}

static void on_tail_event(void *ctx, const char *p, size_t n)
{
    call_t *c = ctx;
    gg_usage_observe(&c->usage, c->up_dialect, p, n);
}

static void on_spliced(void *ctx, const gg_splice_result_t *r)
{
    call_t *c = ctx;
    c->bytes_out += r->kernel_bytes + r->user_bytes;
    c->spliced_kernel = r->spliced;
    c->spliced_bytes = r->kernel_bytes;
    if (r->error != NULL)
        c->error = r->error;
    /* Usage from the engine's final chunk when it is in the stream's tail; else tokens out are estimated from the
     * skbs the verdict redirected (one per event unless the engine's writes coalesced). */
    gg_splice_tail_events(r->tail, r->tail_len, r->tail_len >= GG_BPF_TAIL, on_tail_event, c);
    if (c->usage.completion_tokens < 0 && r->skbs > (uint64_t)c->usage.content_events)
        c->usage.content_events = r->skbs > INT32_MAX ? INT32_MAX : (int)r->skbs;
    release_backend(c, r->backend_failed);
    h2o_mem_release_shared(c);
}

/* A passed-through stream (no translation, no compression either way) to a cleartext HTTP/1.1 client. */
static int splice_eligible(call_t *c)
{
    h2o_req_t *req = c->req;
    if (!c->streaming || c->translate || c->up_gz || c->head_sent || c->final_sent || req->version != 0x101 ||
        req->conn->callbacks->get_socket == NULL)
        return 0;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->ssl != NULL)
        return 0;
    if (gg_gzip_config.stream && gg_gzip_config.level > 0 && gg_client_accepts_gzip(req))
        return 0;
    if (!gg_splice_path_allowed(req->path_normalized.base, req->path_normalized.len))
        return 0;
    return gg_splice_possible(c->up);
}

static void splice_response(call_t *c)
{
    h2o_req_t *req = c->req;
    set_stream_head(c);
    c->head_sent = 1;
    c->final_sent = 1;
    c->spliced = 1;
    if (c->t_first_token == 0)
        c->t_first_token = now_ns(); /* the first body bytes: the events themselves are not read here */
    c->saved_method = h2o_strdup(NULL, req->method.base, req->method.len);
    c->saved_path = h2o_strdup(NULL, req->path.base, req->path.len);
    h2o_mem_addref_shared(c); /* outlives the req: released by on_spliced */
    gg_upstream_req_t *up = c->up;
    c->up = NULL;
    gg_splice_stream(req, up, &c->w->accept_ctx, c->ri.dialect == GG_DIALECT_OPENAI ? GG_BPF_FLOW_SSE : GG_BPF_FLOW_NDJSON,
                     gg_proxy_config.idle_ms, on_spliced, c);
}

static int on_head_cb(void *ctx, int status, int minor, const struct phr_header *h, size_t n)
{
    call_t *c = ctx;
    if (on_head(ctx, status, minor, h, n) == 0) {
        if (splice_eligible(c))
            splice_response(c);
        return 0;
    }
    /* 503: give the attempt back and move on. */
    c->up = NULL;
    c->error = "backend queue full";
    release_backend(c, 0);
    gg_metric_add(m_retries, "reason=\"503\"", 1);
    try_next(c);
    return -1;
}

static const gg_upstream_callbacks_t upstream_cb = {on_head_cb, on_body, on_end, on_error};

/* --- attempts ------------------------------------------------------------------------------------- */

static enum gg_dialect dialect_of(const gg_backend_t *b)
{
    return atomic_load_explicit(&b->kind, memory_order_relaxed) == GG_ENGINE_OLLAMA ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
}

/* The body and path for an upstream of dialect `d`; serialized once per dialect. */
static const char *prepare_body(call_t *c, enum gg_dialect d, char *path, size_t pathlen)
{
    if (d == c->ri.dialect) {
        snprintf(path, pathlen, "%s", c->client_path);
        if (c->body[d] == NULL && !c->body_edited) {
            /* Unchanged: forward the client's bytes as they came (no re-serialization). */
            c->body[d] = c->req->entity.base;
            c->body_len[d] = c->req->entity.len;
        } else if (c->body[d] == NULL) {
            c->body[d] = gg_reqinfo_serialize(&c->ri, &c->body_len[d]);
            c->body_owned |= 1u << d;
        }
        return c->body[d];
    }
    char err[160];
    json_t *j = gg_dialect_request(c->ri.dialect, d, c->ri.ep, gg_reqinfo_root(&c->ri), path, pathlen, err, sizeof(err));
    if (j == NULL) {
        gg_debug("cannot translate for %s: %s", c->model, err);
        return NULL;
    }
    if (c->body[d] == NULL) {
        c->body[d] = json_dumps(j, GG_JSON_DUMP_FLAGS);
        c->body_len[d] = c->body[d] ? strlen(c->body[d]) : 0;
        c->body_owned |= 1u << d;
    }
    json_decref(j);
    return c->body[d];
}

static void try_next(call_t *c)
{
    if (c->attempts >= gg_proxy_config.max_attempts) {
        respond_upstream_error(c, 502, "every backend tried for this request failed");
        return;
    }
    gg_route_req_t r = {.served = c->served, .loaded = gg_proxy_config.prefer_loaded ? c->loaded : NULL, .exclude = c->tried};
    if (gg_proxy_config.affinity) {
        ssize_t hi = h2o_find_header_by_str(&c->req->headers, H2O_STRLIT("x-session-id"), -1);
        if (hi != -1)
            r.affinity = gg_route_hash(c->req->headers.entries[hi].value.base, c->req->headers.entries[hi].value.len);
        else if (c->ri.user != NULL && c->ri.user[0] != '\0')
            r.affinity = gg_route_hash(c->ri.user, strlen(c->ri.user));
    }
    int slot = gg_route_pick(&r, rand_cb, c->w);
    if (slot < 0) {
        unwatch(c);
        if (c->attempts == 0)
            gg_respond_error_retry(c->req, c->ri.dialect, 503, "no healthy backend serves this model right now",
                                   "service_unavailable", "no_healthy_backend", 1);
        else if (c->up_status == 503)
            gg_respond_error_retry(c->req, c->ri.dialect, 503, "every backend that serves this model is full",
                                   "service_unavailable", "backends_full", 1);
        else
            respond_upstream_error(c, 502, "every backend tried for this request failed");
        c->final_sent = 1;
        return;
    }
    c->tried[slot / 64] |= 1ull << (slot % 64);
    c->attempts++;
    c->slot = slot;
    if (c->first_slot < 0)
        c->first_slot = slot;
    gg_admit_result_t ar;
    if (gg_admit(c->w, slot, c->tenant, c->cost, on_admitted, c, &c->waiter, &ar) == 1)
        return; /* waits in the backend's queue; on_admitted goes on */
    on_admitted(c, &ar);
}

/* A slot of backend c->slot was granted (or refused): send the attempt. */
static void on_admitted(void *ctx, const gg_admit_result_t *ar)
{
    call_t *c = ctx;
    c->waiter = NULL;
    c->queue_wait_us += ar->waited_us;
    if (ar->reject != GG_REJECT_NONE) {
        unwatch(c);
        c->reject = ar->reject;
        c->error = "refused at admission";
        gg_tenant_respond_reject(c->req, c->ri.dialect, ar->reject, ar->retry_after_s);
        c->final_sent = 1;
        return;
    }
    int slot = c->slot;
    gg_backend_t *b = &gg_backends[slot];
    c->dispatched = 1;
    c->ever_dispatched = 1;
    c->t_slot = now_ns();
    c->up_dialect = dialect_of(b);
    c->translate = c->up_dialect != c->ri.dialect;
    c->up_status = 0;
    c->streaming = 0;
    if (c->parser_live) {
        gg_stream_dispose(&c->parser);
        c->parser_live = 0;
    }
    if (c->xlate_live) {
        gg_xlate_dispose(&c->xlate);
        c->xlate_live = 0;
    }
    gg_buf_reset(&c->pending);
    gg_usage_init(&c->usage);

    char path[64];
    const char *body = prepare_body(c, c->up_dialect, path, sizeof(path));
    if (body == NULL) {
        unwatch(c);
        gg_respond_error(c->req, c->ri.dialect, 400, "this request cannot be translated for the backend that serves the model",
                         "invalid_request_error", NULL);
        c->final_sent = 1;
        return;
    }
    /* gzip from the engine only where it can reach the client unchanged: a buffered answer in the same dialect
     * for a client that takes it. */
    int ask_gzip = !c->translate && !c->ri.stream && gg_client_accepts_gzip(c->req);
    char *head = h2o_mem_alloc_pool(&c->req->pool, 512 + sizeof(path));
    int hl = snprintf(head, 512 + sizeof(path),
                      "POST %s HTTP/1.1\r\nHost: %s:%u\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                      "User-Agent: gridgate\r\nAccept: */*\r\n%s\r\n",
                      path, b->host, b->port, c->body_len[c->up_dialect], ask_gzip ? "Accept-Encoding: gzip\r\n" : "");
    atomic_fetch_add_explicit(&b->requests, 1, memory_order_relaxed);
    gg_upstream_timeouts_t t = {gg_proxy_config.connect_ms, gg_proxy_config.first_byte_ms, gg_proxy_config.idle_ms};
    gg_upstream_pool_t *pool = gg_worker_pool(c->w, slot);
    if (pool == NULL) { /* the backend's host name does not resolve: as good as refused */
        on_error(c, gg_upstream_err_refused, GG_UP_CONNECT);
        return;
    }
    c->up = gg_upstream_send(pool, h2o_iovec_init(head, hl), h2o_iovec_init(body, c->body_len[c->up_dialect]), &t, &upstream_cb, c);
}

/* --- lifetime ------------------------------------------------------------------------------------- */

static void on_dispose(void *p)
{
    call_t *c = p;
    unwatch(c);
    if (c->waiter != NULL) {
        gg_admit_cancel(c->waiter);
        c->waiter = NULL;
    }
    if (c->up != NULL) {
        gg_upstream_cancel(c->up);
        c->up = NULL;
        if (c->error == NULL)
            c->error = "client went away";
    }
    release_backend(c, 0);
    uint64_t end = now_ns();
    const char *backend = c->ever_dispatched ? gg_backends[c->slot].name : ""; /* refused at admission: none */
    int status = c->spliced ? 200 : c->req->res.status;

    /* Series through the per-thread cache: no formatting or locking per request. */
    static const char *const n_mbc[] = {"model", "backend", "code"}, *const n_m[] = {"model"},
                             *const n_md[] = {"model", "direction"};
    char code[12] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10), '\0'};
    if (status < 100 || status > 999)
        snprintf(code, sizeof(code), "%d", status);
    const char *v_mbc[] = {c->model, backend, code}, *v_m[] = {c->model}, *v_in[] = {c->model, "in"}, *v_out[] = {c->model, "out"};
    gg_series_add(gg_metric_series_of(m_requests, n_mbc, v_mbc, 3), 1);
    gg_series_observe(gg_metric_series_of(m_duration, n_m, v_m, 1), (end - c->t_start) / 1e9);
    if (c->t_first_token)
        gg_series_observe(gg_metric_series_of(m_ttft, n_m, v_m, 1), (c->t_first_token - c->t_start) / 1e9);
    long tin = c->usage.prompt_tokens >= 0 ? c->usage.prompt_tokens : c->ri.prompt_tokens_est;
    long tout = c->usage.completion_tokens >= 0 ? c->usage.completion_tokens : c->usage.content_events;
    /* The engine's own TTFT (dispatch to first token, no gateway queue) feeds its derived capacity. */
    if (c->ever_dispatched && c->t_first_token > c->t_slot && (c->t_first_token - c->t_slot) / 1000 < UINT32_MAX)
        gg_backend_observe(&gg_backends[c->slot], (uint32_t)((c->t_first_token - c->t_slot) / 1000), tout > 0 ? (uint32_t)tout : 0);
    gg_series_add(gg_metric_series_of(m_tokens, n_md, v_in, 2), tin > 0 ? tin : 0);
    gg_series_add(gg_metric_series_of(m_tokens, n_md, v_out, 2), tout > 0 ? tout : 0);
    if (c->first_slot >= 0 && c->slot != c->first_slot && status < 500)
        gg_metric_add(m_failovers, "", 1);
    if (c->rl_charged) /* the charge was an estimate: settle it with what was used */
        gg_ratelimit_correct(&c->tenant->rl, (c->ever_dispatched ? tin + tout : 0) - (int64_t)c->cost, end / 1000);
    gg_tenant_record(c->tenant, status, c->reject, c->queue_wait_us, c->t_first_token ? (c->t_first_token - c->t_start) / 1000 : 0,
                     tin, tout);

    /* A buffered answer (or error) went out in one piece through gg_respond, which set its length; streams count theirs. */
    uint64_t bytes_out = c->bytes_out;
    if (bytes_out == 0 && !c->spliced && c->req != NULL && c->req->res.content_length != SIZE_MAX)
        bytes_out = c->req->res.content_length;
    gg_accesslog_entry_t e = {.req = c->spliced ? NULL : c->req,
                              .method = c->saved_method,
                              .path = c->saved_path,
                              .spliced = c->spliced_kernel,
                              .spliced_bytes = c->spliced_bytes,
                              .model = c->model,
                              .backend = backend,
                              .tenant = c->tenant->name,
                              .status = status,
                              .ttft_us = c->t_first_token ? (c->t_first_token - c->t_start) / 1000 : 0,
                              .duration_us = (end - c->t_start) / 1000,
                              .tokens_in = tin,
                              .tokens_out = tout,
                              .bytes_out = bytes_out,
                              .attempts = c->attempts,
                              .stream = c->streaming,
                              .error = c->error};
    gg_accesslog_write(&e);

    if (c->parser_live)
        gg_stream_dispose(&c->parser);
    if (c->xlate_live)
        gg_xlate_dispose(&c->xlate);
    gg_buf_free(&c->pending);
    gg_buf_free(&c->held);
    gg_buf_free(&c->inflight);
    gg_buf_free(&c->plain);
    if (c->up_inflate_live)
        gg_inflater_dispose(&c->up_inflate);
    if (c->gz_out_live)
        gg_deflater_dispose(&c->gz_out);
    for (int d = 0; d < 2; d++)
        if (c->body_owned & (1u << d))
            free((char *)c->body[d]);
    gg_reqinfo_dispose(&c->ri);
    free(c->saved_method.base);
    free(c->saved_path.base);
    atomic_fetch_sub_explicit(&c->w->inflight, 1, memory_order_relaxed);
}

void gg_proxy_start(h2o_req_t *req, gg_tenant_t *tenant, gg_reqinfo_t *ri, const char *client_path, const char *model,
                    const uint64_t *served, const uint64_t *loaded, int body_edited)
{
    call_t *c = h2o_mem_alloc_shared(&req->pool, sizeof(*c), on_dispose);
    memset(c, 0, sizeof(*c));
    c->body_edited = body_edited != 0;
    c->req = req;
    c->w = gg_worker_of(req);
    gg_reqinfo_move(&c->ri, ri);
    c->client_path = client_path;
    snprintf(c->model, sizeof(c->model), "%s", model);
    memcpy(c->served, served, sizeof(c->served));
    memcpy(c->loaded, loaded, sizeof(c->loaded));
    c->slot = c->first_slot = -1;
    c->t_start = now_ns();
    gg_usage_init(&c->usage);
    atomic_fetch_add_explicit(&c->w->inflight, 1, memory_order_relaxed);
    c->tenant = tenant;
    c->cost = gg_tenant_cost(&c->ri);
    uint64_t retry_us;
    int rl = gg_ratelimit_take(&tenant->rl, c->cost, c->t_start / 1000, &retry_us);
    if (rl != GG_RL_OK) {
        c->reject = rl == GG_RL_REQUESTS ? GG_REJECT_RATE : GG_REJECT_QUOTA;
        c->error = "rate limited";
        gg_tenant_respond_reject(req, c->ri.dialect, c->reject, gg_retry_after_s(retry_us));
        c->final_sent = 1;
        return;
    }
    c->rl_charged = 1;
    try_next(c);
    /* Watched from the start: h2o's HTTP/1 code stops reading the client in this loop iteration and starts
     * again in the one that completes the response, so keeping the socket readable across the wait saves
     * that epoll_ctl pair (two syscalls per request) and notices a hang-up at once. */
    if (!c->final_sent && !c->head_sent)
        watch(c);
}
