/* enginesim OpenAI surface: /v1/models, /v1/chat/completions, /v1/completions and /v1/embeddings as vLLM,
 * SGLang, llama.cpp, LM Studio, MLX and Ollama's shims serve them: request validation, SSE chunk framing
 * (role chunk, content chunks, finish chunk, optional usage chunk, [DONE]) and the non-stream bodies. */
#include "sim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *owned_by(void)
{
    switch (G.flavor) {
    case FL_OLLAMA:
        return "library";
    case FL_LMSTUDIO:
        return "organization_owner";
    case FL_MLX:
        return "system";
    default:
        return G.flavor_name;
    }
}

static const char *model_id(const struct model *m)
{
    return G.flavor == FL_OLLAMA ? m->tagged : m->name;
}

static long created_s(void)
{
    return (long)(time(NULL) - (now_ms() - G.started_ms) / 1000);
}

static void sb_model_obj(struct sbuf *b, const struct model *m)
{
    sb_printf(b, "{\"id\":\"%s\",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"%s\"", model_id(m), created_s(), owned_by());
    if (G.flavor == FL_VLLM)
        sb_printf(b, ",\"root\":\"%s\",\"parent\":null,\"max_model_len\":%u,\"permission\":[]", m->name, G.kv_tokens);
    sb_puts(b, "}");
}

void oai_models(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    sb_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (unsigned i = 0; i < G.nmodels; i++) {
        if (i)
            sb_puts(&b, ",");
        sb_model_obj(&b, &G.models[i]);
    }
    sb_puts(&b, "]}");
    send_json(req, 200, &b);
}

static void model_not_found(h2o_req_t *req, int dialect, const char *name)
{
    char msg[300];
    if (dialect == DIA_OLLAMA)
        snprintf(msg, sizeof(msg), "model \"%.200s\" not found, try pulling it first", name);
    else
        snprintf(msg, sizeof(msg), "The model `%.200s` does not exist.", name);
    send_error(req, dialect, 404, dialect == DIA_OLLAMA ? "not_found" : "invalid_request_error", "model_not_found", msg);
}

void oai_model_one(h2o_req_t *req, int dialect, const struct fault *f)
{
    char name[MODEL_NAME_MAX];
    size_t n = req->path_normalized.len - strlen("/v1/models/");
    if (n >= sizeof(name))
        n = sizeof(name) - 1;
    memcpy(name, req->path_normalized.base + strlen("/v1/models/"), n);
    name[n] = '\0';
    struct model *m = model_find(name);
    if (m == NULL) {
        model_not_found(req, dialect, name);
        return;
    }
    struct sbuf b = {0};
    sb_model_obj(&b, m);
    send_json(req, 200, &b);
}

/* ---- shared by both dialects ------------------------------------------------------------------- */

/** Resolves the "model" field; answers 400/404 itself and returns NULL on failure. */
struct model *resolve_model(h2o_req_t *req, int dialect, json_t *body, const char *field, const char **name)
{
    json_t *v = json_object_get(body, field);
    if (v == NULL && G.flavor != FL_OLLAMA && G.nmodels > 0) {
        *name = G.models[0].name; /* vLLM and friends serve their one model when none is named */
        return &G.models[0];
    }
    if (!json_is_string(v) || json_string_length(v) == 0) {
        send_error(req, dialect, 400, "invalid_request_error", NULL,
                   dialect == DIA_OLLAMA ? "model is required" : "'model' must be a non-empty string");
        return NULL;
    }
    *name = json_string_value(v);
    struct model *m = model_find(*name);
    if (m == NULL)
        model_not_found(req, dialect, *name);
    return m;
}

/** Queues s, answering 503 when the engine queue is full. */
void submit_seq(struct seq *s)
{
    if (sched_submit(s) == -EBUSY) {
        s->final_sent = 1;
        h2o_add_header(&s->req->pool, &s->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_error(s->req, s->dialect, 503, "server_error", "server_busy",
                   "server busy, please try again.  maximum pending requests exceeded");
    }
}

/** Hashes and measures chat messages; returns -1 (and answers 400) when they are malformed. */
int chat_prompt(h2o_req_t *req, int dialect, json_t *msgs, uint64_t *h, size_t *chars)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(role)) {
            send_error(req, dialect, 400, "invalid_request_error", NULL, "each message needs a string 'role'");
            return -1;
        }
        *h = hash_bytes(*h, json_string_value(role), json_string_length(role));
        if (json_is_string(content)) {
            *h = hash_bytes(*h, json_string_value(content), json_string_length(content));
            *chars += json_string_length(content);
        } else if (json_is_array(content)) {
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part)
            {
                json_t *t = json_object_get(part, "text");
                if (json_is_string(t)) {
                    *h = hash_bytes(*h, json_string_value(t), json_string_length(t));
                    *chars += json_string_length(t);
                }
            }
        } else if (content != NULL && !json_is_null(content)) {
            send_error(req, dialect, 400, "invalid_request_error", NULL, "message 'content' must be a string or an array of parts");
            return -1;
        }
    }
    return 0;
}

/** Sets s->target and s->finish_length from a client limit (-1 = none). */
void set_target(struct seq *s, long long limit, int ignore_eos)
{
    s->target = G.default_tokens;
    if (limit >= 0 && (ignore_eos || (unsigned long long)limit < s->target)) {
        s->target = (unsigned)limit;
        s->finish_length = 1;
    }
}

/* ---- chat and text completions ----------------------------------------------------------------- */

static void sb_chunk_head(struct sbuf *b, struct seq *s, const char *object)
{
    sb_printf(b, "data: {\"id\":\"%s-%llx\",\"object\":\"%s\",\"created\":%ld,\"model\":", s->kind == K_CHAT ? "chatcmpl" : "cmpl",
              (unsigned long long)s->id, object, (long)(s->t_arrive / 1000000000ULL));
    sb_json_str(b, s->reqmodel, strlen(s->reqmodel));
}

static void oai_on_token(struct seq *s, const char *tok, size_t len)
{
    if (!s->stream) {
        sb_add(&s->text, tok, len);
        return;
    }
    struct sbuf *b = &s->out[s->cur];
    if (s->kind == K_CHAT) {
        if (s->generated == 1) {
            sb_chunk_head(b, s, "chat.completion.chunk");
            sb_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                       "\"finish_reason\":null}]}\n\n");
        }
        sb_chunk_head(b, s, "chat.completion.chunk");
        sb_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{\"content\":");
    } else {
        sb_chunk_head(b, s, "text_completion");
        sb_puts(b, ",\"choices\":[{\"index\":0,\"text\":");
    }
    sb_json_str(b, tok, len);
    sb_puts(b, s->kind == K_CHAT ? "},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                                 : ",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
}

static void sb_usage(struct sbuf *b, struct seq *s)
{
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%u,\"completion_tokens\":%u,\"total_tokens\":%u}", s->prompt_tokens, s->generated,
              s->prompt_tokens + s->generated);
}

static void oai_on_finish(struct seq *s)
{
    struct sbuf *b = &s->out[s->cur];
    const char *reason = s->finish_length ? "length" : "stop";
    if (s->stream) {
        if (s->kind == K_CHAT) {
            sb_chunk_head(b, s, "chat.completion.chunk");
            sb_printf(b, ",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n", reason);
        } else {
            sb_chunk_head(b, s, "text_completion");
            sb_printf(b, ",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n", reason);
        }
        if (s->include_usage) {
            sb_chunk_head(b, s, s->kind == K_CHAT ? "chat.completion.chunk" : "text_completion");
            sb_puts(b, ",\"choices\":[],");
            sb_usage(b, s);
            sb_puts(b, "}\n\n");
        }
        sb_puts(b, "data: [DONE]\n\n");
        return;
    }
    sb_printf(b, "{\"id\":\"%s-%llx\",\"object\":\"%s\",\"created\":%ld,\"model\":", s->kind == K_CHAT ? "chatcmpl" : "cmpl",
              (unsigned long long)s->id, s->kind == K_CHAT ? "chat.completion" : "text_completion",
              (long)(s->t_arrive / 1000000000ULL));
    sb_json_str(b, s->reqmodel, strlen(s->reqmodel));
    if (s->kind == K_CHAT) {
        sb_puts(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(b, s->text.p ? s->text.p : "", s->text.len);
        sb_printf(b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],", reason);
    } else {
        sb_puts(b, ",\"choices\":[{\"index\":0,\"text\":");
        sb_json_str(b, s->text.p ? s->text.p : "", s->text.len);
        sb_printf(b, ",\"logprobs\":null,\"finish_reason\":\"%s\"}],", reason);
    }
    sb_usage(b, s);
    sb_puts(b, "}");
}

static const struct seq_ops oai_ops = {oai_on_token, oai_on_finish};

/* Common validation of the generation knobs; returns -1 after answering 400. */
static int gen_params(h2o_req_t *req, json_t *body, struct seq *s, long long *limit, int *ignore_eos)
{
    json_t *v = json_object_get(body, "stream");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        send_error(req, DIA_OPENAI, 400, "invalid_request_error", NULL, "'stream' must be a boolean");
        return -1;
    }
    s->stream = json_is_true(v);
    s->include_usage = json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    *limit = -1;
    const char *keys[] = {"max_completion_tokens", "max_tokens"};
    for (int i = 0; i < 2 && *limit < 0; i++) {
        v = json_object_get(body, keys[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            send_error(req, DIA_OPENAI, 400, "invalid_request_error", NULL, "'max_tokens' must be an integer >= 1");
            return -1;
        }
        *limit = json_integer_value(v);
    }
    *ignore_eos = json_is_true(json_object_get(body, "ignore_eos"));
    v = json_object_get(body, "seed");
    if (json_is_integer(v)) {
        json_int_t seed = json_integer_value(v);
        s->h = hash_bytes(s->h, &seed, sizeof(seed));
    }
    return 0;
}

void apply_fault(struct seq *s, const struct fault *f)
{
    if (f->mode == FAULT_RESET_AFTER)
        s->reset_after = f->after_tokens;
    else if (f->mode == FAULT_SLOW)
        s->slow = f->factor;
}

static void completion(h2o_req_t *req, int dialect, const struct fault *f, int kind)
{
    json_t *body = parse_body(req, dialect);
    if (body == NULL)
        return;
    const char *name;
    struct model *m = resolve_model(req, dialect, body, "model", &name);
    if (m == NULL)
        goto out;
    uint64_t h = hash_bytes(0, m->name, strlen(m->name) + 1);
    size_t chars = 0;
    if (kind == K_CHAT) {
        json_t *msgs = json_object_get(body, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            send_error(req, dialect, 400, "invalid_request_error", NULL, "'messages' must be a non-empty array");
            goto out;
        }
        if (chat_prompt(req, dialect, msgs, &h, &chars) < 0)
            goto out;
    } else {
        json_t *p = json_object_get(body, "prompt");
        if (json_is_string(p)) {
            h = hash_bytes(h, json_string_value(p), json_string_length(p));
            chars = json_string_length(p);
        } else if (json_is_array(p) && json_array_size(p) > 0) {
            size_t i;
            json_t *e;
            json_array_foreach(p, i, e)
            {
                if (json_is_string(e)) {
                    h = hash_bytes(h, json_string_value(e), json_string_length(e));
                    chars += json_string_length(e);
                } else if (json_is_integer(e)) {
                    json_int_t t = json_integer_value(e);
                    h = hash_bytes(h, &t, sizeof(t));
                    chars += 4; /* a token id is one token */
                } else {
                    send_error(req, dialect, 400, "invalid_request_error", NULL, "'prompt' must be a string or an array");
                    goto out;
                }
            }
        } else {
            send_error(req, dialect, 400, "invalid_request_error", NULL, "'prompt' must be a string or an array");
            goto out;
        }
    }
    struct seq *s = seq_new(req, &oai_ops, m, name);
    s->kind = kind;
    s->dialect = dialect;
    s->h = h;
    long long limit;
    int ignore_eos;
    if (gen_params(req, body, s, &limit, &ignore_eos) < 0)
        goto out;
    s->prompt_tokens = estimate_tokens(chars);
    set_target(s, limit, ignore_eos);
    s->ctype = s->stream ? "text/event-stream; charset=utf-8" : "application/json";
    apply_fault(s, f);
    submit_seq(s);
out:
    json_decref(body);
}

void oai_chat(h2o_req_t *req, int dialect, const struct fault *f)
{
    completion(req, DIA_OPENAI, f, K_CHAT);
}

void oai_completions(h2o_req_t *req, int dialect, const struct fault *f)
{
    completion(req, DIA_OPENAI, f, K_COMPLETION);
}

/* ---- embeddings -------------------------------------------------------------------------------- */

/** The text of one embedding input for hashing and counting (token arrays count one token each). */
void input_measure(json_t *e, uint64_t *h, size_t *chars)
{
    if (json_is_string(e)) {
        *h = hash_bytes(*h, json_string_value(e), json_string_length(e));
        *chars += json_string_length(e);
    } else if (json_is_array(e)) {
        size_t i;
        json_t *t;
        json_array_foreach(e, i, t)
        {
            json_int_t v = json_integer_value(t);
            *h = hash_bytes(*h, &v, sizeof(v));
            *chars += 4;
        }
    }
}

static void emb_on_token(struct seq *s, const char *tok, size_t len)
{
}

static void emb_on_finish(struct seq *s)
{
    struct sbuf *b = &s->out[s->cur];
    float *v = malloc(sizeof(float) * s->dim);
    sb_puts(b, "{\"object\":\"list\",\"data\":[");
    size_t i;
    json_t *e;
    json_array_foreach(s->inputs, i, e)
    {
        uint64_t h = hash_bytes(0, s->model->name, strlen(s->model->name) + 1);
        size_t chars = 0;
        input_measure(e, &h, &chars);
        embedding(h, v, s->dim);
        sb_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (s->base64) {
            sb_puts(b, "\"");
            sb_base64(b, v, sizeof(float) * s->dim); /* x86 is little-endian, as the wire format wants */
            sb_puts(b, "\"");
        } else {
            sb_embedding_floats(b, v, s->dim);
        }
        sb_puts(b, "}");
    }
    free(v);
    sb_puts(b, "],\"model\":");
    sb_json_str(b, s->reqmodel, strlen(s->reqmodel));
    sb_printf(b, ",\"usage\":{\"prompt_tokens\":%u,\"total_tokens\":%u}}", s->prompt_tokens, s->prompt_tokens);
}

static const struct seq_ops emb_ops = {emb_on_token, emb_on_finish};

void oai_embeddings(h2o_req_t *req, int dialect, const struct fault *f)
{
    json_t *body = parse_body(req, DIA_OPENAI);
    if (body == NULL)
        return;
    const char *name;
    struct model *m = resolve_model(req, DIA_OPENAI, body, "model", &name);
    if (m == NULL)
        goto out;
    json_t *input = json_object_get(body, "input");
    json_t *inputs;
    if (json_is_string(input) ||
        (json_is_array(input) && json_array_size(input) > 0 && json_is_integer(json_array_get(input, 0)))) {
        inputs = json_array();
        json_array_append(inputs, input);
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        inputs = json_incref(input);
    } else {
        send_error(req, DIA_OPENAI, 400, "invalid_request_error", NULL, "'input' must be a string or a non-empty array");
        goto out;
    }
    json_t *fmt = json_object_get(body, "encoding_format");
    int base64 = 0;
    if (fmt && !json_is_null(fmt)) {
        if (json_is_string(fmt) && strcmp(json_string_value(fmt), "base64") == 0)
            base64 = 1;
        else if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "float") != 0) {
            json_decref(inputs);
            send_error(req, DIA_OPENAI, 400, "invalid_request_error", NULL, "'encoding_format' must be 'float' or 'base64'");
            goto out;
        }
    }
    json_t *dims = json_object_get(body, "dimensions");
    struct seq *s = seq_new(req, &emb_ops, m, name);
    s->kind = K_EMBED;
    s->dialect = DIA_OPENAI;
    s->inputs = inputs;
    s->base64 = base64;
    s->dim = json_is_integer(dims) && json_integer_value(dims) > 0 && json_integer_value(dims) <= 65536 ? json_integer_value(dims)
                                                                                                        : G.embed_dim;
    size_t chars = 0, i;
    json_t *e;
    uint64_t h = 0;
    json_array_foreach(inputs, i, e)
    {
        input_measure(e, &h, &chars);
    }
    s->prompt_tokens = estimate_tokens(chars);
    s->target = 0;
    s->ctype = "application/json";
    apply_fault(s, f);
    submit_seq(s);
out:
    json_decref(body);
}
