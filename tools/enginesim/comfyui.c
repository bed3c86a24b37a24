/* enginesim ComfyUI surface: POST /prompt validates a workflow and queues it; prompts run one at a time,
 * the sampler node taking one --decode-ms tick per step; the prompt's client gets the WebSocket messages
 * status, execution_start, execution_cached, executing, progress, executed and execution_success on
 * /ws?clientId=; finished prompts appear in /history and their PNGs in /view. Also /queue, /system_stats
 * and /interrupt. main.c strips the /api prefix, so every route also answers under /api/. */
#include "sim.h"
#include "gridgate/log.h"

#include <h2o/websocket.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HISTORY 256

struct cprompt {
    h2o_linklist_t link; /* pending queue, or none */
    char id[40];
    char client_id[128];
    unsigned number;
    json_t *prompt, *outputs, *messages;
    const char **nodes; /* node ids in execution order (keys of prompt) */
    size_t nnodes, node_i;
    unsigned step, announced, done, success;
};

struct wsclient {
    h2o_linklist_t link;
    h2o_websocket_conn_t *conn;
    char client_id[128];
};

static h2o_linklist_t pending = {&pending, &pending}, clients = {&clients, &clients};
static struct cprompt *running;
static struct cprompt *history[MAX_HISTORY];
static unsigned nhistory, next_number, image_counter;
static struct {
    char name[48];
    uint64_t seed;
} images[MAX_HISTORY];
static unsigned nimages;
static h2o_timeout_entry_t tick;

static unsigned queue_remaining(void)
{
    unsigned n = running ? 1 : 0;
    for (h2o_linklist_t *l = pending.next; l != &pending; l = l->next)
        n++;
    return n;
}

static void ws_send_to(struct wsclient *c, const char *text, size_t len)
{
    struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
    wslay_event_queue_msg(c->conn->ws_ctx, &msg);
    if (c->conn->sock != NULL)
        h2o_websocket_proceed(c->conn);
}

/* Sends {"type":type,"data":data} to the prompt's client, or to everyone when client_id is NULL. */
static void ws_send(const char *client_id, const char *type, json_t *data)
{
    json_t *msg = json_pack("{s:s,s:O}", "type", type, "data", data);
    char *text = json_dumps(msg, JSON_COMPACT);
    for (h2o_linklist_t *l = clients.next, *next; l != &clients; l = next) {
        next = l->next;
        struct wsclient *c = H2O_STRUCT_FROM_MEMBER(struct wsclient, link, l);
        if (client_id == NULL || strcmp(client_id, c->client_id) == 0)
            ws_send_to(c, text, strlen(text));
    }
    free(text);
    json_decref(msg);
}

static void broadcast_status(const char *sid_for)
{
    json_t *d = json_pack("{s:{s:{s:i}}}", "status", "exec_info", "queue_remaining", (int)queue_remaining());
    if (sid_for)
        json_object_set_new(d, "sid", json_string(sid_for));
    ws_send(NULL, "status", d);
    json_decref(d);
}

static json_int_t ts_ms(void)
{
    return (json_int_t)(now_ns() / 1000000ULL);
}

/* Sends to the prompt's client and records the message in its history, as ComfyUI does. */
static void prompt_event(struct cprompt *p, const char *type, json_t *data, int record)
{
    ws_send(p->client_id[0] ? p->client_id : NULL, type, data);
    if (record)
        json_array_append_new(p->messages, json_pack("[s,O]", type, data));
    json_decref(data);
}

static unsigned node_steps(json_t *node)
{
    json_t *steps = json_object_get(json_object_get(node, "inputs"), "steps");
    return json_is_integer(steps) && json_integer_value(steps) > 0 ? (unsigned)json_integer_value(steps) : 0;
}

static int is_output(json_t *node)
{
    const char *ct = json_string_value(json_object_get(node, "class_type"));
    return ct && (strcmp(ct, "SaveImage") == 0 || strcmp(ct, "PreviewImage") == 0);
}

static void start_next(void);

static void retire(struct cprompt *p)
{
    if (nhistory == MAX_HISTORY) {
        struct cprompt *old = history[0];
        memmove(history, history + 1, sizeof(history[0]) * (MAX_HISTORY - 1));
        nhistory--;
        json_decref(old->prompt);
        json_decref(old->outputs);
        json_decref(old->messages);
        free(old->nodes);
        free(old);
    }
    history[nhistory++] = p;
}

static void finish_running(int success)
{
    struct cprompt *p = running;
    p->done = 1;
    p->success = success;
    if (success) {
        prompt_event(p, "execution_success", json_pack("{s:s,s:I}", "prompt_id", p->id, "timestamp", ts_ms()), 1);
        prompt_event(p, "executing", json_pack("{s:n,s:n,s:s}", "node", "display_node", "prompt_id", p->id), 0);
        G.completed++;
    }
    running = NULL;
    G.nrunning = 0;
    retire(p);
    start_next();
    broadcast_status(NULL);
}

static void advance(void)
{
    struct cprompt *p = running;
    uint64_t step_ms = (uint64_t)(G.decode_ms + 0.5);
    while (p->node_i < p->nnodes) {
        const char *id = p->nodes[p->node_i];
        json_t *node = json_object_get(p->prompt, id);
        if (!p->announced) {
            p->announced = 1;
            prompt_event(p, "executing", json_pack("{s:s,s:s,s:s}", "node", id, "display_node", id, "prompt_id", p->id), 0);
        }
        unsigned steps = node_steps(node);
        if (p->step < steps) {
            p->step++;
            prompt_event(p, "progress",
                         json_pack("{s:i,s:i,s:s,s:s}", "value", p->step, "max", steps, "prompt_id", p->id, "node", id), 0);
            timer_link(&tick, step_ms);
            return;
        }
        if (is_output(node)) {
            json_t *imgs = json_array();
            json_t *batch = json_object_get(json_object_get(node, "inputs"), "batch_size");
            unsigned n = json_is_integer(batch) && json_integer_value(batch) > 1 && json_integer_value(batch) <= 8
                             ? json_integer_value(batch)
                             : 1;
            for (unsigned k = 0; k < n; k++) {
                unsigned slot = nimages++ % MAX_HISTORY;
                snprintf(images[slot].name, sizeof(images[slot].name), "ComfyUI_%05u_.png", ++image_counter);
                images[slot].seed = hash_bytes(0, p->id, strlen(p->id)) + k;
                json_array_append_new(
                    imgs,
                    json_pack("{s:s,s:s,s:s}", "filename", images[slot].name, "subfolder", "", "type",
                              strcmp(json_string_value(json_object_get(node, "class_type")), "SaveImage") ? "temp" : "output"));
            }
            json_t *out = json_pack("{s:o}", "images", imgs);
            json_object_set(p->outputs, id, out);
            prompt_event(p, "executed",
                         json_pack("{s:s,s:s,s:o,s:s}", "node", id, "display_node", id, "output", out, "prompt_id", p->id), 0);
        }
        p->node_i++;
        p->announced = 0;
        p->step = 0;
    }
    finish_running(1);
}

static void on_tick(h2o_timeout_entry_t *e)
{
    if (running)
        advance();
}

static void start_next(void)
{
    if (running || h2o_linklist_is_empty(&pending))
        return;
    struct cprompt *p = H2O_STRUCT_FROM_MEMBER(struct cprompt, link, pending.next);
    h2o_linklist_unlink(&p->link);
    G.nwaiting--;
    running = p;
    G.nrunning = 1;
    broadcast_status(NULL);
    prompt_event(p, "execution_start", json_pack("{s:s,s:I}", "prompt_id", p->id, "timestamp", ts_ms()), 1);
    prompt_event(p, "execution_cached", json_pack("{s:[],s:s,s:I}", "nodes", "prompt_id", p->id, "timestamp", ts_ms()), 1);
    timer_link(&tick, 0);
}

void comfy_init(void)
{
    tick.cb = on_tick;
}

/* ---- routes ------------------------------------------------------------------------------------ */

static void bad_prompt(h2o_req_t *req, const char *type, const char *msg, const char *details, json_t *node_errors)
{
    json_t *o = json_pack("{s:{s:s,s:s,s:s,s:{}},s:o}", "error", "type", type, "message", msg, "details", details, "extra_info",
                          "node_errors", node_errors ? node_errors : json_object());
    char *text = json_dumps(o, JSON_COMPACT);
    send_body(req, 400, "application/json; charset=utf-8", text, strlen(text));
    free(text);
    json_decref(o);
}

static void make_uuid(char *out, uint64_t seed)
{
    uint64_t a = mix64(seed), b = mix64(seed ^ 0x5bd1e995);
    snprintf(out, 37, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)), (unsigned long long)(b & 0xffffffffffffULL));
}

void comfy_prompt(h2o_req_t *req, int dialect, const struct fault *f)
{
    json_t *body = parse_body(req, DIA_COMFY);
    if (body == NULL)
        return;
    json_t *prompt = json_object_get(body, "prompt");
    if (!json_is_object(prompt) || json_object_size(prompt) == 0) {
        bad_prompt(req, "invalid_prompt", "Cannot execute because the prompt is missing or empty.", "", NULL);
        goto out;
    }
    const char *key;
    json_t *node;
    int outputs = 0;
    json_t *node_errors = json_object();
    json_object_foreach(prompt, key, node)
    {
        json_t *ct = json_object_get(node, "class_type");
        if (!json_is_object(node) || !json_is_string(ct) || !json_is_object(json_object_get(node, "inputs"))) {
            json_object_set_new(node_errors, key,
                                json_pack("{s:[{s:s,s:s,s:s,s:{}}],s:[],s:s}", "errors", "type", "missing_class_type", "message",
                                          "Node is missing the class_type or inputs property", "details", key, "extra_info",
                                          "dependent_outputs", "class_type", json_is_string(ct) ? json_string_value(ct) : ""));
            continue;
        }
        outputs += is_output(node);
    }
    if (json_object_size(node_errors) > 0) {
        bad_prompt(req, "prompt_outputs_failed_validation", "Prompt outputs failed validation", "", node_errors);
        goto out;
    }
    json_decref(node_errors);
    if (outputs == 0) {
        bad_prompt(req, "prompt_no_outputs", "Prompt has no outputs", "", NULL);
        goto out;
    }
    struct cprompt *p = calloc(1, sizeof(*p));
    make_uuid(p->id, ++G.next_id ^ now_ns());
    json_t *cid = json_object_get(body, "client_id");
    snprintf(p->client_id, sizeof(p->client_id), "%s", json_is_string(cid) ? json_string_value(cid) : "");
    p->number = next_number++;
    p->prompt = json_incref(prompt);
    p->outputs = json_object();
    p->messages = json_array();
    p->nnodes = json_object_size(prompt);
    p->nodes = calloc(p->nnodes, sizeof(*p->nodes));
    size_t i = 0;
    json_object_foreach(prompt, key, node) p->nodes[i++] = key; /* keys live as long as p->prompt */
    h2o_linklist_insert(&pending, &p->link);
    G.nwaiting++;
    char resp[160];
    int n = snprintf(resp, sizeof(resp), "{\"prompt_id\":\"%s\",\"number\":%u,\"node_errors\":{}}", p->id, p->number);
    send_body(req, 200, "application/json; charset=utf-8", resp, n);
    broadcast_status(NULL);
    start_next();
out:
    json_decref(body);
}

static json_t *queue_item(struct cprompt *p)
{
    json_t *outs = json_array();
    for (size_t i = 0; i < p->nnodes; i++)
        if (is_output(json_object_get(p->prompt, p->nodes[i])))
            json_array_append_new(outs, json_string(p->nodes[i]));
    return json_pack("[i,s,O,{s:s},o]", p->number, p->id, p->prompt, "client_id", p->client_id, outs);
}

static json_t *history_item(struct cprompt *p)
{
    json_t *meta = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(p->outputs, k, v) json_object_set_new(
        meta, k, json_pack("{s:s,s:s,s:n,s:s}", "node_id", k, "display_node", k, "parent_node", "real_node_id", k));
    return json_pack("{s:o,s:O,s:{s:s,s:b,s:O},s:o}", "prompt", queue_item(p), "outputs", p->outputs, "status", "status_str",
                     p->success ? "success" : "error", "completed", p->success, "messages", p->messages, "meta", meta);
}

static void send_jansson(h2o_req_t *req, json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    send_body(req, 200, "application/json; charset=utf-8", text, strlen(text));
    free(text);
    json_decref(o);
}

void comfy_history(h2o_req_t *req, int dialect, const struct fault *f)
{
    const char *path = req->path_normalized.base;
    size_t plen = req->path_normalized.len;
    if (plen >= 4 && memcmp(path, "/api", 4) == 0) /* the same route under /api/ */
        path += 4, plen -= 4;
    /* path is now "/history" or "/history/{id}" */
    const char *id = plen > 9 ? path + 9 : NULL;
    size_t idlen = id ? plen - 9 : 0;
    json_t *o = json_object();
    for (unsigned i = 0; i < nhistory; i++) {
        struct cprompt *p = history[i];
        if (id == NULL || (strlen(p->id) == idlen && memcmp(p->id, id, idlen) == 0))
            json_object_set_new(o, p->id, history_item(p));
    }
    send_jansson(req, o);
}

static int query_param(h2o_req_t *req, const char *name, char *out, size_t outlen)
{
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nlen = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', end - q);
        if (amp == NULL)
            amp = end;
        if ((size_t)(amp - q) > nlen && memcmp(q, name, nlen) == 0 && q[nlen] == '=') {
            size_t o = 0;
            for (const char *s = q + nlen + 1; s < amp && o + 1 < outlen; s++) {
                if (*s == '%' && amp - s > 2) {
                    char hex[3] = {s[1], s[2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    s += 2;
                } else {
                    out[o++] = *s == '+' ? ' ' : *s;
                }
            }
            out[o] = '\0';
            return 1;
        }
        q = amp + 1;
    }
    return 0;
}

void comfy_view(h2o_req_t *req, int dialect, const struct fault *f)
{
    char name[64];
    if (!query_param(req, "filename", name, sizeof(name))) {
        send_body(req, 400, "text/plain; charset=utf-8", H2O_STRLIT("400: filename is required"));
        return;
    }
    for (unsigned i = 0; i < MAX_HISTORY && i < nimages; i++)
        if (strcmp(images[i].name, name) == 0) {
            struct sbuf b = {0};
            make_png(&b, images[i].seed);
            send_body(req, 200, "image/png", b.p, b.len);
            sb_free(&b);
            return;
        }
    send_body(req, 404, "text/plain; charset=utf-8", H2O_STRLIT("404: Not Found"));
}

void comfy_queue(h2o_req_t *req, int dialect, const struct fault *f)
{
    if (h2o_memis(req->path_normalized.base + req->path_normalized.len - 7, 7, H2O_STRLIT("/prompt"))) {
        send_jansson(req, json_pack("{s:{s:i}}", "exec_info", "queue_remaining", (int)queue_remaining()));
        return;
    }
    json_t *run = json_array(), *pend = json_array();
    if (running)
        json_array_append_new(run, queue_item(running));
    for (h2o_linklist_t *l = pending.next; l != &pending; l = l->next)
        json_array_append_new(pend, queue_item(H2O_STRUCT_FROM_MEMBER(struct cprompt, link, l)));
    send_jansson(req, json_pack("{s:o,s:o}", "queue_running", run, "queue_pending", pend));
}

void comfy_system_stats(h2o_req_t *req, int dialect, const struct fault *f)
{
    json_int_t vram = (json_int_t)(G.vram_mb ? G.vram_mb : 24576) << 20;
    send_jansson(req, json_pack("{s:{s:s,s:I,s:I,s:s,s:s,s:s,s:b,s:[s]},s:[{s:s,s:s,s:i,s:I,s:I,s:I,s:I}]}", "system", "os",
                                "posix", "ram_total", (json_int_t)64 << 30, "ram_free", (json_int_t)48 << 30, "comfyui_version",
                                "0.3.40", "python_version", "3.12.3", "pytorch_version", "2.7.0+cu126", "embedded_python", 0,
                                "argv", "main.py", "devices", "name", "cuda:0 enginesim GPU", "type", "cuda", "index", 0,
                                "vram_total", vram, "vram_free", vram / 2, "torch_vram_total", vram, "torch_vram_free", vram / 2));
}

void comfy_interrupt(h2o_req_t *req, int dialect, const struct fault *f)
{
    if (running) {
        struct cprompt *p = running;
        const char *node = p->node_i < p->nnodes ? p->nodes[p->node_i] : "";
        if (h2o_timeout_is_linked(&tick))
            h2o_timeout_unlink(&tick);
        prompt_event(p, "execution_interrupted",
                     json_pack("{s:s,s:s,s:s,s:[],s:I}", "prompt_id", p->id, "node_id", node, "node_type",
                               json_string_value(json_object_get(json_object_get(p->prompt, node), "class_type")) ?: "", "executed",
                               "timestamp", ts_ms()),
                     1);
        G.cancelled++;
        finish_running(0);
    }
    send_body(req, 200, "application/json", "", 0);
}

static void on_ws_message(h2o_websocket_conn_t *conn, const struct wslay_event_on_msg_recv_arg *arg)
{
    if (arg != NULL)
        return; /* ComfyUI ignores what clients send */
    struct wsclient *c = conn->data;
    h2o_linklist_unlink(&c->link);
    free(c);
    h2o_websocket_close(conn);
}

void comfy_ws(h2o_req_t *req, int dialect, const struct fault *f)
{
    const char *key;
    if (h2o_is_websocket_handshake(req, &key) != 0 || key == NULL) {
        send_body(req, 400, "text/plain; charset=utf-8", H2O_STRLIT("400: expected a WebSocket upgrade"));
        return;
    }
    struct wsclient *c = calloc(1, sizeof(*c));
    if (!query_param(req, "clientId", c->client_id, sizeof(c->client_id)) || c->client_id[0] == '\0')
        make_uuid(c->client_id, ++G.next_id ^ now_ns());
    c->conn = h2o_upgrade_to_websocket(req, key, c, on_ws_message);
    h2o_linklist_insert(&clients, &c->link);
    json_t *d =
        json_pack("{s:{s:{s:i}},s:s}", "status", "exec_info", "queue_remaining", (int)queue_remaining(), "sid", c->client_id);
    json_t *msg = json_pack("{s:s,s:o}", "type", "status", "data", d);
    char *text = json_dumps(msg, JSON_COMPACT);
    ws_send_to(c, text, strlen(text));
    free(text);
    json_decref(msg);
}
