/* enginesim fault injection: the current fault (set by --fault or POST /_sim/fault), how many requests it
 * still applies to, and the answers of the modes that need no generated tokens (hang, status, garbage,
 * malformed, close_after_headers, redirect). reset_after and slow ride on the sequence (sched.c); refuse
 * acts at accept time (main.c). */
#include "sim.h"
#include "gridgate/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const mode_names[] = {
    "none", "refuse", "hang", "status", "reset_after", "malformed", "slow", "garbage", "close_after_headers", "redirect"};
#define NMODES (sizeof(mode_names) / sizeof(mode_names[0]))

static void consume(void)
{
    if (G.fault.count > 0 && --G.fault.count == 0) {
        gg_info("fault %s used up", mode_names[G.fault.mode]);
        G.fault.mode = FAULT_NONE;
        G.fault.count = -1;
    }
}

struct fault fault_take(void)
{
    struct fault f = G.fault;
    if (f.mode == FAULT_NONE || f.mode == FAULT_REFUSE) {
        f.mode = FAULT_NONE;
        return f;
    }
    consume();
    return f;
}

int fault_take_refuse(void)
{
    if (G.fault.mode != FAULT_REFUSE)
        return 0;
    consume();
    return 1;
}

int fault_set_json(json_t *o, char *err, size_t errlen)
{
    struct fault f = {FAULT_NONE, 503, 0, -1, 4, ""};
    json_t *v = json_object_get(o, "mode");
    if (v != NULL) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "mode must be a string");
            return -EINVAL;
        }
        unsigned i = 0;
        while (i < NMODES && strcmp(mode_names[i], json_string_value(v)) != 0)
            i++;
        if (i == NMODES) {
            snprintf(err, errlen, "unknown mode '%s'", json_string_value(v));
            return -EINVAL;
        }
        f.mode = i;
    }
    if ((v = json_object_get(o, "status")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 599) {
            snprintf(err, errlen, "status must be an HTTP status");
            return -EINVAL;
        }
        f.status = json_integer_value(v);
    }
    if ((v = json_object_get(o, "after_tokens")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            snprintf(err, errlen, "after_tokens must be an integer >= 0");
            return -EINVAL;
        }
        f.after_tokens = json_integer_value(v);
    }
    if ((v = json_object_get(o, "factor")) != NULL) {
        if (!json_is_number(v) || json_number_value(v) < 1 || json_number_value(v) > 100000) {
            snprintf(err, errlen, "factor must be a number >= 1");
            return -EINVAL;
        }
        f.factor = (unsigned)json_number_value(v);
    }
    if ((v = json_object_get(o, "count")) != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            snprintf(err, errlen, "count must be an integer >= 1");
            return -EINVAL;
        }
        f.count = json_integer_value(v);
    }
    if ((v = json_object_get(o, "location")) != NULL) {
        if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof(f.location)) {
            snprintf(err, errlen, "location must be a URL string");
            return -EINVAL;
        }
        snprintf(f.location, sizeof(f.location), "%s", json_string_value(v));
    }
    if (f.location[0] == '\0')
        snprintf(f.location, sizeof(f.location), "http://127.0.0.2:9/");
    G.fault = f;
    gg_info("fault set: %s", mode_names[f.mode]);
    return 0;
}

void sb_fault_json(struct sbuf *b)
{
    const struct fault *f = &G.fault;
    sb_printf(b, "{\"mode\":\"%s\",\"status\":%d,\"after_tokens\":%d,\"factor\":%u,\"count\":", mode_names[f->mode], f->status,
              f->after_tokens, f->factor);
    if (f->count < 0)
        sb_puts(b, "null");
    else
        sb_printf(b, "%d", f->count);
    sb_puts(b, ",\"location\":");
    sb_json_str(b, f->location, strlen(f->location));
    sb_puts(b, "}");
}

static int req_fd(h2o_req_t *req)
{
    if (req->conn->callbacks->get_socket == NULL)
        return -1;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    return sock ? h2o_socket_get_fd(sock) : -1;
}

void abort_connection(h2o_req_t *req)
{
    int fd = req_fd(req);
    if (fd < 0)
        return;
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    /* connect(AF_UNSPEC) disconnects a TCP socket at once with an RST; h2o then fails its next write and
     * frees the connection itself, so the fd is never closed behind its back. */
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    connect(fd, &sa, sizeof(sa));
}

static void on_cah_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
}

static void on_cah_stop(h2o_generator_t *gen, h2o_req_t *req)
{
}

int fault_answer(h2o_req_t *req, const struct fault *f, int dialect, int stream)
{
    switch (f->mode) {
    case FAULT_HANG:
        watch_req(req, 1);
        return 1;
    case FAULT_STATUS: {
        const char *msg = f->status == 503 ? "service unavailable (injected)" : "injected failure";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_error(req, dialect, f->status, f->status >= 500 ? "server_error" : "invalid_request_error", "injected", msg);
        return 1;
    }
    case FAULT_GARBAGE: {
        int fd = req_fd(req);
        static const char junk[] = "\x16\x03\x01\xff\xfe GARBAGE \x00\x01\x02 not http at all\r\n\r\n\xde\xad\xbe\xef";
        if (fd >= 0) {
            ssize_t r = write(fd, junk, sizeof(junk) - 1);
            (void)r;
            shutdown(fd, SHUT_WR);
        }
        send_error(req, dialect, 500, "server_error", "garbage", "garbage");
        return 1;
    }
    case FAULT_MALFORMED:
        if (stream && dialect == DIA_OLLAMA) {
            static const char body[] = "{\"model\":\"x\",\"created_at\":\"2024-01-01T00:00:00Z\",\"message\":{\"role\":\"assis\n";
            send_body(req, 200, "application/x-ndjson", body, sizeof(body) - 1);
        } else if (stream) {
            static const char body[] =
                "data: {\"id\":\"chatcmpl-broken\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":\n\n"
                "data: not json at all\n\n";
            send_body(req, 200, "text/event-stream; charset=utf-8", body, sizeof(body) - 1);
        } else {
            static const char body[] =
                "{\"id\":\"chatcmpl-broken\",\"object\":\"chat.completion\",\"choices\":[{\"message\":{\"content";
            send_body(req, 200, "application/json", body, sizeof(body) - 1);
        }
        return 1;
    case FAULT_CLOSE_AFTER_HEADERS: {
        h2o_generator_t *gen = h2o_mem_alloc_pool(&req->pool, sizeof(*gen));
        gen->proceed = on_cah_proceed;
        gen->stop = on_cah_stop;
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       stream ? "text/event-stream" : "application/json", stream ? 17 : 16);
        req->res.content_length = 4096; /* promise a body that never comes */
        h2o_start_response(req, gen);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
        return 1;
    }
    case FAULT_REDIRECT: {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, f->location, strlen(f->location));
        send_body(req, 302, "text/plain", "redirect\n", 9);
        return 1;
    }
    default:
        return 0;
    }
}
