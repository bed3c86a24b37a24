/* enginesim: the types and module interfaces shared by the simulator's files. All state lives on the one
 * h2o event loop thread, so nothing here is locked. */
#ifndef ENGINESIM_SIM_H
#define ENGINESIM_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <h2o.h>

enum flavor { FL_OLLAMA, FL_VLLM, FL_SGLANG, FL_LLAMACPP, FL_LMSTUDIO, FL_MLX, FL_COMFYUI, FL__COUNT };
enum dialect { DIA_OPENAI, DIA_OLLAMA, DIA_COMFY };

/* ---- growable byte buffer (text.c) ---------------------------------------------------------------- */
struct sbuf {
    char *p;
    size_t len, cap;
};
void sb_add(struct sbuf *b, const char *s, size_t n);
void sb_puts(struct sbuf *b, const char *s);
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Appends s as a quoted, escaped JSON string. */
void sb_json_str(struct sbuf *b, const char *s, size_t n);
void sb_base64(struct sbuf *b, const void *data, size_t n);
void sb_free(struct sbuf *b);

/* ---- deterministic content (text.c) ---------------------------------------------------------------- */
uint64_t hash_bytes(uint64_t h, const void *p, size_t n);
uint64_t mix64(uint64_t x);
/** The i-th token of the output stream seeded by h ("Word" first, then " word"). */
const char *token_text(uint64_t h, unsigned i, size_t *len);
/** Honest prompt-size estimate: chars/4 rounded up, at least 1. */
unsigned estimate_tokens(size_t chars);
/** Unit-length embedding of dim float32s derived from h. */
void embedding(uint64_t h, float *out, unsigned dim);
void sb_embedding_floats(struct sbuf *b, const float *v, unsigned dim);
/** RFC 3339 UTC time with nanoseconds, as Ollama prints it. */
void sb_rfc3339(struct sbuf *b, uint64_t unix_ns);
uint64_t now_ns(void);
/** A tiny valid PNG whose colour depends on seed. */
void make_png(struct sbuf *b, uint64_t seed);

/* ---- models and the load model (sched.c) ------------------------------------------------------------ */
enum model_state { M_UNLOADED, M_LOADING, M_LOADED };
#define MAX_MODELS 64
#define MODEL_NAME_MAX 128

struct model {
    char name[MODEL_NAME_MAX];       /* as configured, e.g. "llama3" or "qwen2:7b" */
    char tagged[MODEL_NAME_MAX + 8]; /* Ollama form with a tag, e.g. "llama3:latest" */
    unsigned size_mb;
    int state;
    int running;           /* sequences using it */
    uint64_t last_used_ms; /* for LRU */
    int64_t expires_at_ms; /* Ollama keep_alive; -1 = never */
    uint64_t load_done_ms;
    h2o_timeout_entry_t load_timer;
};

enum seq_kind { K_CHAT, K_COMPLETION, K_EMBED, K_OL_CHAT, K_OL_GENERATE, K_OL_EMBED, K_OL_EMBEDDINGS };
enum seq_state { S_NEW, S_WAITING, S_LOADING, S_PREFILL, S_DECODE, S_DONE };

struct seq;
/** How a sequence turns tokens into bytes; one table per wire format. */
struct seq_ops {
    void (*on_token)(struct seq *s, const char *tok, size_t len); /* append a streamed token event */
    void (*on_finish)(struct seq *s);                             /* append the final events / whole body */
};

struct seq {
    h2o_generator_t gen; /* first: h2o hands it back to proceed/stop */
    h2o_req_t *req;      /* NULL once h2o has let the request go */
    const struct seq_ops *ops;
    struct model *model;
    char reqmodel[MODEL_NAME_MAX]; /* the name the client used, echoed back */
    int kind, dialect, stream, include_usage, state, slot;
    const char *ctype;
    uint64_t h; /* content seed */
    unsigned prompt_tokens, target, generated;
    int finish_length;     /* cut by max_tokens */
    int64_t keep_alive_ms; /* Ollama: -2 = not given */
    json_t *inputs;        /* embeddings: array of inputs */
    int base64;            /* embeddings encoding */
    unsigned dim;
    uint64_t id;
    /* fault applied to this request */
    int reset_after; /* -1 = none */
    unsigned slow;   /* 1 = normal */
    /* timing, ns, for Ollama's durations and TTFT */
    uint64_t t_arrive, t_admit, t_load, t_prefill, t_first, t_end;
    h2o_linklist_t link; /* waiting queue or running list */
    h2o_timeout_entry_t timer;
    /* output: tokens pile up in out[cur] while out[!cur] is being written */
    struct sbuf out[2], text;
    int cur, inflight, started, want_final, final_sent, stopped, aborted, reset_pending;
};

/** Allocates a sequence in req's pool (freed with the request). */
struct seq *seq_new(h2o_req_t *req, const struct seq_ops *ops, struct model *m, const char *reqmodel);
/** Queues s; returns 0, or -EBUSY when the queue is full (the caller answers 503). */
int sched_submit(struct seq *s);
/** The wire formats call this to push what they appended; final ends the response. */
void seq_flush(struct seq *s, int final);
void sched_init(void);
struct model *model_find(const char *name);
struct model *model_add(const char *name, unsigned size_mb);
/** Starts loading m if needed (Ollama's empty-prompt load); returns 0 or -errno. */
int model_touch(struct model *m, int64_t keep_alive_ms);
void model_unload(struct model *m);
int64_t parse_keep_alive(json_t *v); /* -2 when absent, -1 forever, else ms */
/** Links e to fire after ms (any duration; timeouts are made per duration on demand). */
void timer_link(h2o_timeout_entry_t *e, uint64_t ms);
/** Watches h2o requests that have no response yet for a client that went away. */
void watch_req(h2o_req_t *req, int hang);

/* ---- run-time state (main.c) ------------------------------------------------------------------------ */
struct fault {
    int mode;                        /* FAULT_* */
    int status, after_tokens, count; /* count: -1 = until changed */
    unsigned factor;
    char location[256];
};
enum {
    FAULT_NONE,
    FAULT_REFUSE,
    FAULT_HANG,
    FAULT_STATUS,
    FAULT_RESET_AFTER,
    FAULT_MALFORMED,
    FAULT_SLOW,
    FAULT_GARBAGE,
    FAULT_CLOSE_AFTER_HEADERS,
    FAULT_REDIRECT
};

#define MAX_PATHS 64
#define TTFT_BUCKETS 23
struct sim {
    int flavor;
    const char *flavor_name;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_evloop_t *loop;
    h2o_socket_t *listener;
    /* knobs */
    unsigned max_seqs, max_queue, default_tokens, embed_dim, kv_tokens, default_size_mb;
    double prefill_tps, decode_ms;
    uint64_t load_ms, vram_mb, crash_after, max_body;
    int lazy_load;
    /* models */
    struct model models[MAX_MODELS];
    unsigned nmodels;
    /* load state */
    h2o_linklist_t waiting, running;
    unsigned nwaiting, nrunning;
    struct seq **slots;
    /* counters */
    uint64_t requests_total, completed, cancelled, rejected, prompt_tokens_total, gen_tokens_total, next_id;
    struct {
        char path[64];
        uint64_t n;
    } paths[MAX_PATHS];
    unsigned npaths;
    uint64_t ttft_counts[TTFT_BUCKETS];
    double ttft_sum;
    uint64_t ttft_n;
    uint64_t started_ms;
    struct fault fault;
};
extern struct sim G;
extern const double ttft_bounds[TTFT_BUCKETS];

/* ---- HTTP helpers (main.c) -------------------------------------------------------------------------- */
/** Sends body with a Content-Length and the given type. */
void send_body(h2o_req_t *req, int status, const char *ctype, const char *body, size_t len);
void send_json(h2o_req_t *req, int status, struct sbuf *b); /* frees b */
/** An error in the dialect: OpenAI {"error":{...}}, Ollama {"error":"..."}. */
void send_error(h2o_req_t *req, int dialect, int status, const char *type, const char *code, const char *msg);
int method_is(h2o_req_t *req, const char *m);
/** Parses the request body as a JSON object; on failure answers 400 and returns NULL. */
json_t *parse_body(h2o_req_t *req, int dialect);
uint64_t now_ms(void);

/* ---- fault injection (fault.c) ---------------------------------------------------------------------- */
/** Takes the fault that applies to the next request (consuming one of its count). */
struct fault fault_take(void);
int fault_take_refuse(void);
int fault_set_json(json_t *o, char *err, size_t errlen);
void sb_fault_json(struct sbuf *b);
/** Answers req according to f for modes that need no sequence; returns 1 if it answered. */
int fault_answer(h2o_req_t *req, const struct fault *f, int dialect, int stream);
/** Kills the connection under req with an RST. */
void abort_connection(h2o_req_t *req);

/* ---- shared by the OpenAI and Ollama surfaces (openai.c) ------------------------------------------- */
/** Resolves the model named by body[field]; answers 400/404 itself and returns NULL on failure. */
struct model *resolve_model(h2o_req_t *req, int dialect, json_t *body, const char *field, const char **name);
/** Queues s, answering 503 (with Retry-After) when the engine queue is full. */
void submit_seq(struct seq *s);
/** Hashes and measures chat messages into h/chars; returns -1 after answering 400. */
int chat_prompt(h2o_req_t *req, int dialect, json_t *msgs, uint64_t *h, size_t *chars);
/** Sets s->target and s->finish_length from a client limit (-1 = none). */
void set_target(struct seq *s, long long limit, int ignore_eos);
void input_measure(json_t *e, uint64_t *h, size_t *chars);
void apply_fault(struct seq *s, const struct fault *f);

/* ---- handlers --------------------------------------------------------------------------------------- */
typedef void (*handler_fn)(h2o_req_t *req, int dialect, const struct fault *f);
void oai_models(h2o_req_t *req, int dialect, const struct fault *f);
void oai_model_one(h2o_req_t *req, int dialect, const struct fault *f);
void oai_chat(h2o_req_t *req, int dialect, const struct fault *f);
void oai_completions(h2o_req_t *req, int dialect, const struct fault *f);
void oai_embeddings(h2o_req_t *req, int dialect, const struct fault *f);
void ol_root(h2o_req_t *req, int dialect, const struct fault *f);
void ol_version(h2o_req_t *req, int dialect, const struct fault *f);
void ol_tags(h2o_req_t *req, int dialect, const struct fault *f);
void ol_ps(h2o_req_t *req, int dialect, const struct fault *f);
void ol_chat(h2o_req_t *req, int dialect, const struct fault *f);
void ol_generate(h2o_req_t *req, int dialect, const struct fault *f);
void ol_embed(h2o_req_t *req, int dialect, const struct fault *f);
void ol_embeddings(h2o_req_t *req, int dialect, const struct fault *f);
void ol_show(h2o_req_t *req, int dialect, const struct fault *f);
void ol_pull(h2o_req_t *req, int dialect, const struct fault *f);
/* info.c: health, metrics and each flavour's introspection routes */
void info_health(h2o_req_t *req, int dialect, const struct fault *f);
void info_version(h2o_req_t *req, int dialect, const struct fault *f);
void info_metrics(h2o_req_t *req, int dialect, const struct fault *f);
void info_props(h2o_req_t *req, int dialect, const struct fault *f);
void info_slots(h2o_req_t *req, int dialect, const struct fault *f);
void info_model_info(h2o_req_t *req, int dialect, const struct fault *f);
void info_server_info(h2o_req_t *req, int dialect, const struct fault *f);
void info_lms_models(h2o_req_t *req, int dialect, const struct fault *f);
void sim_stats(h2o_req_t *req, int dialect, const struct fault *f);
void sim_fault(h2o_req_t *req, int dialect, const struct fault *f);
/* comfyui.c */
void comfy_init(void);
void comfy_prompt(h2o_req_t *req, int dialect, const struct fault *f);
void comfy_history(h2o_req_t *req, int dialect, const struct fault *f);
void comfy_view(h2o_req_t *req, int dialect, const struct fault *f);
void comfy_queue(h2o_req_t *req, int dialect, const struct fault *f);
void comfy_system_stats(h2o_req_t *req, int dialect, const struct fault *f);
void comfy_interrupt(h2o_req_t *req, int dialect, const struct fault *f);
void comfy_ws(h2o_req_t *req, int dialect, const struct fault *f);

#endif
