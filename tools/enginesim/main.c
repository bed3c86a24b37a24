/* enginesim main: flags, the HTTP server on one h2o event loop, the route table of every flavour, the
 * shared response helpers, and the /_sim/ control routes (stats and fault injection). */
#include "sim.h"
#include "gridgate/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct sim G;

const double ttft_bounds[TTFT_BUCKETS] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,   0.25,  0.5,    0.75, 1.0,
                                          2.5,   5.0,   7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0, 1e300};

static const char *const flavor_names[FL__COUNT] = {"ollama", "vllm", "sglang", "llamacpp", "lmstudio", "mlx", "comfyui"};

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- response helpers --------------------------------------------------------------------------- */

static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 302:
        return "Found";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status < 400 ? "OK" : "Error";
    }
}

void send_body(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason_of(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
}

void send_json(h2o_req_t *req, int status, struct sbuf *b)
{
    send_body(req, status, "application/json", b->p ? b->p : "", b->len);
    sb_free(b);
}

void send_error(h2o_req_t *req, int dialect, int status, const char *type, const char *code, const char *msg)
{
    struct sbuf b = {0};
    switch (dialect) {
    case DIA_OLLAMA:
        sb_puts(&b, "{\"error\":");
        sb_json_str(&b, msg, strlen(msg));
        sb_puts(&b, "}");
        break;
    case DIA_COMFY:
        sb_printf(&b, "{\"error\":{\"type\":\"%s\",\"message\":", type);
        sb_json_str(&b, msg, strlen(msg));
        sb_puts(&b, ",\"details\":\"\",\"extra_info\":{}},\"node_errors\":{}}");
        break;
    default:
        sb_puts(&b, "{\"error\":{\"message\":");
        sb_json_str(&b, msg, strlen(msg));
        sb_printf(&b, ",\"type\":\"%s\",\"param\":null,\"code\":", type);
        if (code)
            sb_printf(&b, "\"%s\"", code);
        else
            sb_printf(&b, "%d", status);
        sb_puts(&b, "}}");
    }
    send_json(req, status, &b);
}

int method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

json_t *parse_body(h2o_req_t *req, int dialect)
{
    json_error_t e;
    if (req->entity.base == NULL || req->entity.len == 0) {
        send_error(req, dialect, 400, "invalid_request_error", NULL, "missing request body");
        return NULL;
    }
    json_t *o = json_loadb(req->entity.base, req->entity.len, 0, &e);
    if (o == NULL || !json_is_object(o)) {
        char msg[300];
        if (o == NULL)
            snprintf(msg, sizeof(msg), "invalid JSON body: %s (line %d, column %d)", e.text, e.line, e.column);
        else
            snprintf(msg, sizeof(msg), "request body must be a JSON object");
        json_decref(o);
        send_error(req, dialect, 400, "invalid_request_error", NULL, msg);
        return NULL;
    }
    return o;
}

/* ---- /_sim/ ------------------------------------------------------------------------------------- */

void sim_stats(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    sb_printf(&b,
              "{\"flavor\":\"%s\",\"requests_total\":%llu,\"running\":%u,\"waiting\":%u,\"completed\":%llu,\"cancelled\":%llu,"
              "\"rejected\":%llu,\"prompt_tokens_total\":%llu,\"generation_tokens_total\":%llu,\"paths\":{",
              G.flavor_name, (unsigned long long)G.requests_total, G.nrunning, G.nwaiting, (unsigned long long)G.completed,
              (unsigned long long)G.cancelled, (unsigned long long)G.rejected, (unsigned long long)G.prompt_tokens_total,
              (unsigned long long)G.gen_tokens_total);
    for (unsigned i = 0; i < G.npaths; i++) {
        if (i)
            sb_puts(&b, ",");
        sb_json_str(&b, G.paths[i].path, strlen(G.paths[i].path));
        sb_printf(&b, ":%llu", (unsigned long long)G.paths[i].n);
    }
    sb_puts(&b, "},\"loaded_models\":[");
    int first = 1;
    for (unsigned i = 0; i < G.nmodels; i++)
        if (G.models[i].state == M_LOADED) {
            sb_printf(&b, "%s\"%s\"", first ? "" : ",", G.models[i].name);
            first = 0;
        }
    sb_puts(&b, "],\"loading_models\":[");
    first = 1;
    for (unsigned i = 0; i < G.nmodels; i++)
        if (G.models[i].state == M_LOADING) {
            sb_printf(&b, "%s\"%s\"", first ? "" : ",", G.models[i].name);
            first = 0;
        }
    sb_puts(&b, "],\"fault\":");
    sb_fault_json(&b);
    sb_puts(&b, "}");
    send_json(req, 200, &b);
}

void sim_fault(h2o_req_t *req, int dialect, const struct fault *f)
{
    if (method_is(req, "POST")) {
        json_t *o = parse_body(req, DIA_OPENAI);
        if (o == NULL)
            return;
        char err[200];
        int r = fault_set_json(o, err, sizeof(err));
        json_decref(o);
        if (r < 0) {
            send_error(req, DIA_OPENAI, 400, "invalid_request_error", NULL, err);
            return;
        }
    }
    struct sbuf b = {0};
    sb_fault_json(&b);
    send_json(req, 200, &b);
}

/* ---- routing ------------------------------------------------------------------------------------ */

#define F(x) (1u << (x))
#define OAI (F(FL_OLLAMA) | F(FL_VLLM) | F(FL_SGLANG) | F(FL_LLAMACPP) | F(FL_LMSTUDIO) | F(FL_MLX))
#define ALL (OAI | F(FL_COMFYUI))
enum { INFER_NO, INFER_OAI, INFER_OLLAMA };

static const struct route {
    const char *method, *path;
    int prefix, infer;
    unsigned flavors;
    handler_fn fn;
} routes[] = {
    {"GET", "/", 0, 0, F(FL_OLLAMA), ol_root},
    {"HEAD", "/", 0, 0, F(FL_OLLAMA), ol_root},
    {"GET", "/api/version", 0, 0, F(FL_OLLAMA), ol_version},
    {"GET", "/api/tags", 0, 0, F(FL_OLLAMA), ol_tags},
    {"GET", "/api/ps", 0, 0, F(FL_OLLAMA), ol_ps},
    {"POST", "/api/chat", 0, INFER_OLLAMA, F(FL_OLLAMA), ol_chat},
    {"POST", "/api/generate", 0, INFER_OLLAMA, F(FL_OLLAMA), ol_generate},
    {"POST", "/api/embed", 0, 0, F(FL_OLLAMA), ol_embed},
    {"POST", "/api/embeddings", 0, 0, F(FL_OLLAMA), ol_embeddings},
    {"POST", "/api/show", 0, 0, F(FL_OLLAMA), ol_show},
    {"POST", "/api/pull", 0, INFER_OLLAMA, F(FL_OLLAMA), ol_pull},
    {"GET", "/v1/models", 0, 0, OAI, oai_models},
    {"GET", "/v1/models/", 1, 0, OAI, oai_model_one},
    {"POST", "/v1/chat/completions", 0, INFER_OAI, OAI, oai_chat},
    {"POST", "/v1/completions", 0, INFER_OAI, OAI, oai_completions},
    {"POST", "/v1/embeddings", 0, 0, OAI & ~F(FL_MLX), oai_embeddings},
    {"GET", "/health", 0, 0, F(FL_VLLM) | F(FL_SGLANG) | F(FL_LLAMACPP) | F(FL_MLX), info_health},
    {"GET", "/version", 0, 0, F(FL_VLLM), info_version},
    {"GET", "/metrics", 0, 0, F(FL_VLLM) | F(FL_SGLANG) | F(FL_LLAMACPP), info_metrics},
    {"GET", "/props", 0, 0, F(FL_LLAMACPP), info_props},
    {"GET", "/slots", 0, 0, F(FL_LLAMACPP), info_slots},
    {"GET", "/get_model_info", 0, 0, F(FL_SGLANG), info_model_info},
    {"GET", "/get_server_info", 0, 0, F(FL_SGLANG), info_server_info},
    {"GET", "/server_info", 0, 0, F(FL_SGLANG), info_server_info},
    {"GET", "/api/v0/models", 0, 0, F(FL_LMSTUDIO), info_lms_models},
    {"POST", "/prompt", 0, 0, F(FL_COMFYUI), comfy_prompt},
    {"GET", "/prompt", 0, 0, F(FL_COMFYUI), comfy_queue},
    {"GET", "/history", 0, 0, F(FL_COMFYUI), comfy_history},
    {"GET", "/history/", 1, 0, F(FL_COMFYUI), comfy_history},
    {"GET", "/view", 0, 0, F(FL_COMFYUI), comfy_view},
    {"GET", "/queue", 0, 0, F(FL_COMFYUI), comfy_queue},
    {"GET", "/system_stats", 0, 0, F(FL_COMFYUI), comfy_system_stats},
    {"POST", "/interrupt", 0, 0, F(FL_COMFYUI), comfy_interrupt},
    {"GET", "/ws", 0, 0, F(FL_COMFYUI), comfy_ws},
    {"GET", "/_sim/stats", 0, 0, ALL, sim_stats},
    {"GET", "/_sim/fault", 0, 0, ALL, sim_fault},
    {"POST", "/_sim/fault", 0, 0, ALL, sim_fault},
};

static void count_path(const char *path, size_t len)
{
    if (len >= sizeof(G.paths[0].path))
        len = sizeof(G.paths[0].path) - 1;
    for (unsigned i = 0; i < G.npaths; i++)
        if (strlen(G.paths[i].path) == len && memcmp(G.paths[i].path, path, len) == 0) {
            G.paths[i].n++;
            return;
        }
    if (G.npaths == MAX_PATHS) {
        path = "(other)";
        len = 7;
        for (unsigned i = 0; i < G.npaths; i++)
            if (strcmp(G.paths[i].path, path) == 0) {
                G.paths[i].n++;
                return;
            }
        G.npaths--; /* the last row becomes the overflow row */
    }
    memcpy(G.paths[G.npaths].path, path, len);
    G.paths[G.npaths].path[len] = '\0';
    G.paths[G.npaths++].n = 1;
}

/* Whether a request body asks for streaming; only the fault path needs to know before the handler. */
static int wants_stream(h2o_req_t *req, int infer)
{
    json_t *o = json_loadb(req->entity.base ? req->entity.base : "", req->entity.len, 0, NULL);
    json_t *v = json_object_get(o, "stream");
    int stream = infer == INFER_OLLAMA ? !json_is_false(v) : json_is_true(v);
    json_decref(o);
    return stream;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    const char *path = req->path_normalized.base;
    size_t plen = req->path_normalized.len;
    if (G.flavor == FL_COMFYUI && plen > 4 && memcmp(path, "/api/", 5) == 0) {
        path += 4;
        plen -= 4;
    }
    int is_sim = plen >= 6 && memcmp(path, "/_sim/", 6) == 0;
    int dialect = G.flavor == FL_COMFYUI                                                ? DIA_COMFY
                  : G.flavor == FL_OLLAMA && plen >= 5 && memcmp(path, "/api/", 5) == 0 ? DIA_OLLAMA
                                                                                        : DIA_OPENAI;

    const struct route *found = NULL;
    int wrong_method = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        size_t rl = strlen(r->path);
        if (!(r->flavors & F(G.flavor)))
            continue;
        if (r->prefix ? !(plen > rl && memcmp(path, r->path, rl) == 0) : !(plen == rl && memcmp(path, r->path, rl) == 0))
            continue;
        if (method_is(req, r->method)) {
            found = r;
            break;
        }
        wrong_method = 1;
    }
    if (!is_sim) {
        G.requests_total++;
        if (G.crash_after && G.requests_total > G.crash_after) {
            gg_error("--crash-after %llu reached: exiting like a crash", (unsigned long long)G.crash_after);
            _exit(1);
        }
        if (found)
            count_path(found->prefix ? found->path : path, found->prefix ? strlen(found->path) : plen);
        else
            count_path("(unknown)", 9);
    }
    if (found == NULL) {
        if (wrong_method)
            send_error(req, dialect, 405, "invalid_request_error", "method_not_allowed", "method not allowed");
        else
            send_error(req, dialect, 404, "invalid_request_error", "not_found", "not found");
        return 0;
    }
    struct fault f = {FAULT_NONE};
    if (!is_sim) {
        f = fault_take();
        if (f.mode == FAULT_RESET_AFTER && !found->infer) {
            abort_connection(req);
            send_error(req, dialect, 500, "server_error", NULL, "reset");
            return 0;
        }
        if (f.mode != FAULT_NONE && fault_answer(req, &f, dialect, found->infer ? wants_stream(req, found->infer) : 0))
            return 0;
    }
    found->fn(req, dialect, &f);
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) {
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        if (fault_take_refuse()) {
            struct linger lg = {1, 0};
            setsockopt(h2o_socket_get_fd(sock), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            h2o_socket_close(sock);
            continue;
        }
        h2o_accept(&G.accept_ctx, sock);
    }
}

/* ---- flags -------------------------------------------------------------------------------------- */

static char opt_listen[128];
static const char *opt_models;
static const char *opt_fault;
static long long opt_max_seqs = -1, opt_max_queue = -1, opt_default_tokens = 16, opt_embed_dim = 384, opt_kv_tokens = 65536,
                 opt_load_ms = 0, opt_vram_mb = 0, opt_crash_after = 0, opt_max_body_mb = 8, opt_default_size = 4000;
static double opt_prefill_tps = 100000, opt_decode_ms = 2;

enum opt_type { O_STR, O_INT, O_DBL, O_LOG, O_FLAVOR };
static const struct option_row {
    const char *name;
    int type;
    void *ptr;
    long long min, max;
    const char *doc;
} options[] = {
    {"listen", O_STR, opt_listen, 0, 0, "HOST:PORT to bind (default 127.0.0.1:11434 ollama, :8188 comfyui, :8000 others)"},
    {"flavor", O_FLAVOR, NULL, 0, 0, "engine to imitate: ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui (default vllm)"},
    {"models", O_STR, &opt_models, 0, 0, "models served: name[:SIZE_MB],... (a last ':' part of digits is a size in MB)"},
    {"max-seqs", O_INT, &opt_max_seqs, 1, 4096, "sequences decoded at once (default 1 ollama/comfyui, 8 others)"},
    {"max-queue", O_INT, &opt_max_queue, 0, 10000000,
     "waiting requests beyond which new ones get 503 (default 512 ollama, 0=unbounded)"},
    {"prefill-tps", O_DBL, &opt_prefill_tps, 0, 0, "prompt tokens prefilled per second (default 100000; 0 = instant)"},
    {"decode-ms", O_DBL, &opt_decode_ms, 0, 0,
     "ms per decode step of the batch; a step takes decode_ms*(1+0.05*(batch-1)) (default 2; 0 = back-to-back)"},
    {"load-ms", O_INT, &opt_load_ms, 0, 3600000, "time to load a model on first use (default 0)"},
    {"vram-mb", O_INT, &opt_vram_mb, 0, 1LL << 40,
     "VRAM for loaded models; loading evicts idle models LRU-first (default 0 = unlimited)"},
    {"default-size-mb", O_INT, &opt_default_size, 1, 1LL << 30, "size of a model named without a size (default 4000)"},
    {"kv-tokens", O_INT, &opt_kv_tokens, 1, 1LL << 40, "KV cache capacity in tokens, for the kv usage metrics (default 65536)"},
    {"default-tokens", O_INT, &opt_default_tokens, 1, 1000000,
     "natural completion length (default 16); a smaller max_tokens/num_predict cuts it (finish \"length\"), "
     "ignore_eos:true makes max_tokens the exact length"},
    {"embed-dim", O_INT, &opt_embed_dim, 1, 65536, "embedding dimensions (default 384)"},
    {"max-body-mb", O_INT, &opt_max_body_mb, 1, 1024, "largest request body; beyond it 413 (default 8)"},
    {"crash-after", O_INT, &opt_crash_after, 0, 1LL << 40,
     "serve N requests, then _exit(1) when the next one arrives (default 0 = never)"},
    {"fault", O_STR, &opt_fault, 0, 0, "initial fault as JSON, as for POST /_sim/fault"},
    {"log-level", O_LOG, NULL, 0, 0, "error|warn|info|debug (default info)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: enginesim [options]\n"
                 "Simulates an LLM inference engine's HTTP API and load behaviour for tests and benchmarks.\n\n");
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        fprintf(out, "  --%-16s %s\n", options[i].name, options[i].doc);
    fprintf(out, "  --%-16s %s\n\n", "help", "this text");
    fprintf(out, "Fault injection at run time: POST /_sim/fault with\n"
                 "  {\"mode\":\"none|refuse|hang|status|reset_after|malformed|slow|garbage|close_after_headers|redirect\",\n"
                 "   \"status\":503, \"after_tokens\":5, \"factor\":4, \"count\":N, \"location\":\"http://...\"}\n"
                 "  refuse: accept and reset new connections; hang: never answer; status: answer that status;\n"
                 "  reset_after: RST after after_tokens tokens; malformed: broken JSON/SSE/NDJSON; slow: decode and\n"
                 "  prefill factor times slower; garbage: non-HTTP bytes then close; close_after_headers: head then close;\n"
                 "  redirect: 302 to location. count: the next N requests (connections for refuse), absent = until changed.\n"
                 "GET /_sim/stats: counters (requests_total, paths, running, waiting, completed, cancelled, ...).\n");
}

static int parse_flavor(const char *s)
{
    for (int i = 0; i < FL__COUNT; i++)
        if (strcmp(s, flavor_names[i]) == 0)
            return i;
    return -1;
}

static int parse_args(int argc, char **argv)
{
    G.flavor = FL_VLLM;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0)
            goto bad;
        a += 2;
        const char *val = strchr(a, '=');
        size_t nlen = val ? (size_t)(val - a) : strlen(a);
        const struct option_row *o = NULL;
        for (size_t k = 0; k < sizeof(options) / sizeof(options[0]); k++)
            if (strlen(options[k].name) == nlen && memcmp(options[k].name, a, nlen) == 0)
                o = &options[k];
        if (o == NULL)
            goto bad;
        if (val)
            val++;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(stderr, "enginesim: --%s needs a value\n", o->name);
            return -EINVAL;
        }
        char *end;
        switch (o->type) {
        case O_STR:
            if (o->ptr == opt_listen)
                snprintf(opt_listen, sizeof(opt_listen), "%s", val);
            else
                *(const char **)o->ptr = val;
            break;
        case O_INT: {
            long long v = strtoll(val, &end, 10);
            if (*end || v < o->min || v > o->max) {
                fprintf(stderr, "enginesim: --%s: '%s' is not an integer in [%lld, %lld]\n", o->name, val, o->min, o->max);
                return -EINVAL;
            }
            *(long long *)o->ptr = v;
            break;
        }
        case O_DBL: {
            double v = strtod(val, &end);
            if (*end || v < 0) {
                fprintf(stderr, "enginesim: --%s: '%s' is not a number >= 0\n", o->name, val);
                return -EINVAL;
            }
            *(double *)o->ptr = v;
            break;
        }
        case O_LOG:
            if (gg_log_set_level(val) < 0) {
                fprintf(stderr, "enginesim: --log-level: '%s' is not error|warn|info|debug\n", val);
                return -EINVAL;
            }
            break;
        case O_FLAVOR:
            if ((G.flavor = parse_flavor(val)) < 0) {
                fprintf(stderr, "enginesim: --flavor: unknown flavour '%s'\n", val);
                return -EINVAL;
            }
            break;
        }
        continue;
    bad:
        fprintf(stderr, "enginesim: unknown argument '%s' (see --help)\n", argv[i]);
        return -EINVAL;
    }
    return 0;
}

static int add_models(const char *list)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned size = 0;
        char *colon = strrchr(tok, ':');
        if (colon && colon[1] && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
            size = (unsigned)strtoul(colon + 1, NULL, 10);
            *colon = '\0';
        }
        if (model_find(tok) == NULL && model_add(tok, size) == NULL) {
            fprintf(stderr, "enginesim: --models: bad or too many models at '%s'\n", tok);
            return -EINVAL;
        }
    }
    return 0;
}

static int open_listener(const char *spec, struct sockaddr_in *out)
{
    char host[128];
    snprintf(host, sizeof(host), "%s", spec);
    char *colon = strrchr(host, ':');
    if (colon == NULL) {
        fprintf(stderr, "enginesim: --listen: expected HOST:PORT, got '%s'\n", spec);
        return -EINVAL;
    }
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &sa.sin_addr) != 1) {
        fprintf(stderr, "enginesim: --listen: bad IPv4 address '%s'\n", host);
        return -EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 || listen(fd, 4096) == -1) {
        int e = errno;
        fprintf(stderr, "enginesim: cannot listen on %s: %s\n", spec, strerror(e));
        close(fd);
        return -e;
    }
    socklen_t sl = sizeof(*out);
    getsockname(fd, (struct sockaddr *)out, &sl);
    return fd;
}

static void on_signal(int sig)
{
    _exit(0);
}

int main(int argc, char **argv)
{
    gg_log_prog = "enginesim";
    if (parse_args(argc, argv) < 0)
        return 2;
    G.flavor_name = flavor_names[G.flavor];
    int one_at_a_time = G.flavor == FL_OLLAMA || G.flavor == FL_COMFYUI;
    G.max_seqs = opt_max_seqs > 0 ? opt_max_seqs : one_at_a_time ? 1 : 8;
    G.max_queue = opt_max_queue >= 0 ? opt_max_queue : G.flavor == FL_OLLAMA ? 512 : 0;
    G.default_tokens = opt_default_tokens;
    G.embed_dim = opt_embed_dim;
    G.kv_tokens = opt_kv_tokens;
    G.prefill_tps = opt_prefill_tps;
    G.decode_ms = opt_decode_ms;
    G.load_ms = opt_load_ms;
    G.vram_mb = opt_vram_mb;
    G.crash_after = opt_crash_after;
    G.max_body = (uint64_t)opt_max_body_mb << 20;
    G.default_size_mb = opt_default_size;
    G.lazy_load = G.flavor == FL_OLLAMA || G.flavor == FL_LMSTUDIO;
    G.started_ms = now_ms();
    G.fault = (struct fault){FAULT_NONE, 503, 0, -1, 4, "http://127.0.0.2:9/"};
    if (add_models(opt_models ? opt_models : G.flavor == FL_COMFYUI ? "sd_xl_base_1.0.safetensors" : "llama3") < 0)
        return 2;
    if (opt_fault) {
        json_t *o = json_loads(opt_fault, 0, NULL);
        char err[200] = "not a JSON object";
        if (o == NULL || !json_is_object(o) || fault_set_json(o, err, sizeof(err)) < 0) {
            fprintf(stderr, "enginesim: --fault: %s\n", err);
            return 2;
        }
        json_decref(o);
    }
    if (opt_listen[0] == '\0')
        snprintf(opt_listen, sizeof(opt_listen), "127.0.0.1:%d",
                 G.flavor == FL_OLLAMA    ? 11434
                 : G.flavor == FL_COMFYUI ? 8188
                                          : 8000);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    h2o_config_init(&G.config);
    G.config.max_request_entity_size = G.max_body;
    G.config.server_name = h2o_iovec_init(G.flavor_name, strlen(G.flavor_name));
    h2o_hostconf_t *host = h2o_config_register_host(&G.config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof(*h));
    h->on_req = on_req;

    G.loop = h2o_evloop_create();
    h2o_context_init(&G.ctx, G.loop, &G.config);
    G.accept_ctx.ctx = &G.ctx;
    G.accept_ctx.hosts = G.config.hosts;

    struct sockaddr_in bound;
    int fd = open_listener(opt_listen, &bound);
    if (fd < 0)
        return 1;
    sched_init();
    if (G.flavor == FL_COMFYUI)
        comfy_init();
    G.listener = h2o_evloop_socket_create(G.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(G.listener, on_accept);

    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &bound.sin_addr, addr, sizeof(addr));
    gg_info("%s flavour, %u models, max-seqs %u, decode %.3g ms, listening on http://%s:%u", G.flavor_name, G.nmodels, G.max_seqs,
            G.decode_ms, addr, ntohs(bound.sin_port));
    /* -1 only means epoll_wait was interrupted (SIGSTOP/SIGCONT, a debugger): keep serving. */
    for (;;)
        h2o_evloop_run(G.loop, INT32_MAX);
}
