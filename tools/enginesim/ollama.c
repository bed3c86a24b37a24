/* enginesim Ollama surface: "/", /api/version, /api/tags, /api/ps, /api/show, /api/pull, and the NDJSON
 * generation routes /api/chat and /api/generate (stream by default, load on an empty prompt, unload on
 * keep_alive 0) plus /api/embed and /api/embeddings, with Ollama's field names and nanosecond durations. */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

#define OLLAMA_VERSION "0.11.4"
#define OL_JSON "application/json; charset=utf-8"

void ol_root(h2o_req_t *req, int dialect, const struct fault *f)
{
    send_body(req, 200, "text/plain; charset=utf-8", H2O_STRLIT("Ollama is running"));
}

void ol_version(h2o_req_t *req, int dialect, const struct fault *f)
{
    send_body(req, 200, OL_JSON, H2O_STRLIT("{\"version\":\"" OLLAMA_VERSION "\"}"));
}

static void sb_digest(struct sbuf *b, const struct model *m)
{
    uint64_t h = hash_bytes(0, m->name, strlen(m->name));
    for (int i = 0; i < 4; i++)
        sb_printf(b, "%016llx", (unsigned long long)mix64(h + i));
}

static void sb_details(struct sbuf *b, const struct model *m)
{
    sb_printf(b,
              "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"llama\",\"families\":[\"llama\"],"
              "\"parameter_size\":\"%.1fB\",\"quantization_level\":\"Q4_K_M\"}",
              m->size_mb / 550.0);
}

void ol_tags(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    sb_puts(&b, "{\"models\":[");
    for (unsigned i = 0; i < G.nmodels; i++) {
        struct model *m = &G.models[i];
        sb_printf(&b, "%s{\"name\":\"%s\",\"model\":\"%s\",\"modified_at\":\"", i ? "," : "", m->tagged, m->tagged);
        sb_rfc3339(&b, now_ns() - (now_ms() - G.started_ms) * 1000000ULL - 86400ULL * 1000000000ULL);
        sb_printf(&b, "\",\"size\":%llu,\"digest\":\"", (unsigned long long)m->size_mb * 1000000ULL);
        sb_digest(&b, m);
        sb_puts(&b, "\",");
        sb_details(&b, m);
        sb_puts(&b, "}");
    }
    sb_puts(&b, "]}");
    send_body(req, 200, OL_JSON, b.p, b.len);
    sb_free(&b);
}

void ol_ps(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    sb_puts(&b, "{\"models\":[");
    int first = 1;
    for (unsigned i = 0; i < G.nmodels; i++) {
        struct model *m = &G.models[i];
        if (m->state != M_LOADED)
            continue;
        sb_printf(&b, "%s{\"name\":\"%s\",\"model\":\"%s\",\"size\":%llu,\"digest\":\"", first ? "" : ",", m->tagged, m->tagged,
                  (unsigned long long)m->size_mb * 1000000ULL);
        first = 0;
        sb_digest(&b, m);
        sb_puts(&b, "\",");
        sb_details(&b, m);
        sb_puts(&b, ",\"expires_at\":\"");
        /* keep_alive forever shows as a far-future date, as Ollama does */
        int64_t left_ms = m->expires_at_ms < 0 ? 100LL * 365 * 86400 * 1000 : m->expires_at_ms - (int64_t)now_ms();
        sb_rfc3339(&b, now_ns() + (left_ms > 0 ? left_ms : 0) * 1000000ULL);
        sb_printf(&b, "\",\"size_vram\":%llu,\"context_length\":%u}", (unsigned long long)m->size_mb * 1000000ULL, G.kv_tokens);
    }
    sb_puts(&b, "]}");
    send_body(req, 200, OL_JSON, b.p, b.len);
    sb_free(&b);
}

/* ---- generation -------------------------------------------------------------------------------- */

static void sb_line_head(struct sbuf *b, struct seq *s)
{
    sb_puts(b, "{\"model\":");
    sb_json_str(b, s->reqmodel, strlen(s->reqmodel));
    sb_puts(b, ",\"created_at\":\"");
    sb_rfc3339(b, now_ns());
    sb_puts(b, "\",");
}

static void ol_on_token(struct seq *s, const char *tok, size_t len)
{
    if (!s->stream) {
        sb_add(&s->text, tok, len);
        return;
    }
    struct sbuf *b = &s->out[s->cur];
    sb_line_head(b, s);
    sb_puts(b, s->kind == K_OL_CHAT ? "\"message\":{\"role\":\"assistant\",\"content\":" : "\"response\":");
    sb_json_str(b, tok, len);
    sb_puts(b, s->kind == K_OL_CHAT ? "},\"done\":false}\n" : ",\"done\":false}\n");
}

static void ol_on_finish(struct seq *s)
{
    struct sbuf *b = &s->out[s->cur];
    sb_line_head(b, s);
    const char *text = s->stream || s->text.p == NULL ? "" : s->text.p;
    size_t tlen = s->stream ? 0 : s->text.len;
    if (s->kind == K_OL_CHAT) {
        sb_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(b, text, tlen);
        sb_puts(b, "},");
    } else {
        sb_puts(b, "\"response\":");
        sb_json_str(b, text, tlen);
        sb_puts(b, ",");
    }
    if (s->target == 0) { /* an empty prompt only loads the model */
        sb_puts(b, "\"done_reason\":\"load\",\"done\":true}");
        return;
    }
    sb_printf(b, "\"done\":true,\"done_reason\":\"%s\",", s->finish_length ? "length" : "stop");
    if (s->kind == K_OL_GENERATE) {
        sb_puts(b, "\"context\":[");
        for (unsigned i = 0; i < s->prompt_tokens + s->generated && i < 64; i++)
            sb_printf(b, i ? ",%u" : "%u", (unsigned)(mix64(s->h + i) % 128000));
        sb_puts(b, "],");
    }
    sb_printf(b,
              "\"total_duration\":%llu,\"load_duration\":%llu,\"prompt_eval_count\":%u,\"prompt_eval_duration\":%llu,"
              "\"eval_count\":%u,\"eval_duration\":%llu}%s",
              (unsigned long long)(s->t_end - s->t_arrive), (unsigned long long)(s->t_prefill - s->t_admit), s->prompt_tokens,
              (unsigned long long)(s->t_first - s->t_prefill), s->generated, (unsigned long long)(s->t_end - s->t_first),
              s->stream ? "\n" : "");
}

static const struct seq_ops ol_ops = {ol_on_token, ol_on_finish};

/* The immediate answer to keep_alive 0 with an empty prompt. */
static void unload_answer(h2o_req_t *req, struct model *m, const char *name, int chat)
{
    m->expires_at_ms = (int64_t)now_ms(); /* unloaded now if idle, else as soon as it is */
    model_unload(m);
    struct sbuf b = {0};
    sb_puts(&b, "{\"model\":");
    sb_json_str(&b, name, strlen(name));
    sb_puts(&b, ",\"created_at\":\"");
    sb_rfc3339(&b, now_ns());
    sb_puts(&b, chat ? "\",\"message\":{\"role\":\"assistant\",\"content\":\"\"}," : "\",\"response\":\"\",");
    sb_puts(&b, "\"done_reason\":\"unload\",\"done\":true}");
    send_body(req, 200, OL_JSON, b.p, b.len);
    sb_free(&b);
}

static void generate(h2o_req_t *req, const struct fault *f, int kind)
{
    json_t *body = parse_body(req, DIA_OLLAMA);
    if (body == NULL)
        return;
    const char *name;
    struct model *m = resolve_model(req, DIA_OLLAMA, body, "model", &name);
    if (m == NULL)
        goto out;
    json_t *v = json_object_get(body, "stream");
    if (v && !json_is_boolean(v) && !json_is_null(v)) {
        send_error(req, DIA_OLLAMA, 400, "", NULL, "stream must be a boolean");
        goto out;
    }
    int64_t keep_alive = parse_keep_alive(json_object_get(body, "keep_alive"));
    uint64_t h = hash_bytes(0, m->name, strlen(m->name) + 1);
    size_t chars = 0;
    int empty;
    if (kind == K_OL_CHAT) {
        json_t *msgs = json_object_get(body, "messages");
        if (msgs && !json_is_array(msgs) && !json_is_null(msgs)) {
            send_error(req, DIA_OLLAMA, 400, "", NULL, "messages must be an array");
            goto out;
        }
        empty = json_array_size(msgs) == 0;
        if (!empty && chat_prompt(req, DIA_OLLAMA, msgs, &h, &chars) < 0)
            goto out;
    } else {
        json_t *p = json_object_get(body, "prompt"), *sys = json_object_get(body, "system");
        if (p && !json_is_string(p) && !json_is_null(p)) {
            send_error(req, DIA_OLLAMA, 400, "", NULL, "prompt must be a string");
            goto out;
        }
        empty = json_string_length(p) == 0;
        h = hash_bytes(h, json_string_value(p) ? json_string_value(p) : "", json_string_length(p));
        chars = json_string_length(p);
        if (json_is_string(sys)) {
            h = hash_bytes(h, json_string_value(sys), json_string_length(sys));
            chars += json_string_length(sys);
        }
    }
    if (empty && keep_alive == 0) {
        unload_answer(req, m, name, kind == K_OL_CHAT);
        goto out;
    }
    json_t *opts = json_object_get(body, "options");
    long long limit = -1;
    json_t *np = json_object_get(opts, "num_predict");
    if (json_is_integer(np) && json_integer_value(np) > 0)
        limit = json_integer_value(np);
    json_t *seed = json_object_get(opts, "seed");
    if (json_is_integer(seed)) {
        json_int_t sv = json_integer_value(seed);
        h = hash_bytes(h, &sv, sizeof(sv));
    }
    struct seq *s = seq_new(req, &ol_ops, m, name);
    s->kind = kind;
    s->dialect = DIA_OLLAMA;
    s->h = h;
    s->keep_alive_ms = keep_alive;
    s->stream = !empty && !json_is_false(v);
    s->ctype = s->stream ? "application/x-ndjson" : OL_JSON;
    if (empty) {
        s->target = 0;
        s->prompt_tokens = 0;
    } else {
        s->prompt_tokens = estimate_tokens(chars);
        set_target(s, limit, 0);
    }
    apply_fault(s, f);
    submit_seq(s);
out:
    json_decref(body);
}

void ol_chat(h2o_req_t *req, int dialect, const struct fault *f)
{
    generate(req, f, K_OL_CHAT);
}

void ol_generate(h2o_req_t *req, int dialect, const struct fault *f)
{
    generate(req, f, K_OL_GENERATE);
}

/* ---- embeddings -------------------------------------------------------------------------------- */

static void ol_emb_on_token(struct seq *s, const char *tok, size_t len)
{
}

static void ol_emb_on_finish(struct seq *s)
{
    struct sbuf *b = &s->out[s->cur];
    float *v = malloc(sizeof(float) * s->dim);
    size_t i;
    json_t *e;
    if (s->kind == K_OL_EMBED) {
        sb_puts(b, "{\"model\":");
        sb_json_str(b, s->reqmodel, strlen(s->reqmodel));
        sb_puts(b, ",\"embeddings\":[");
    } else {
        sb_puts(b, "{\"embedding\":");
    }
    json_array_foreach(s->inputs, i, e)
    {
        uint64_t h = hash_bytes(0, s->model->name, strlen(s->model->name) + 1);
        size_t chars = 0;
        input_measure(e, &h, &chars);
        embedding(h, v, s->dim);
        if (i)
            sb_puts(b, ",");
        sb_embedding_floats(b, v, s->dim);
    }
    if (s->kind == K_OL_EMBEDDINGS && json_array_size(s->inputs) == 0)
        sb_puts(b, "[]");
    free(v);
    if (s->kind == K_OL_EMBED)
        sb_printf(b, "],\"total_duration\":%llu,\"load_duration\":%llu,\"prompt_eval_count\":%u}",
                  (unsigned long long)(s->t_end - s->t_arrive), (unsigned long long)(s->t_prefill - s->t_admit), s->prompt_tokens);
    else
        sb_puts(b, "}");
}

static const struct seq_ops ol_emb_ops = {ol_emb_on_token, ol_emb_on_finish};

static void embed(h2o_req_t *req, const struct fault *f, int kind)
{
    json_t *body = parse_body(req, DIA_OLLAMA);
    if (body == NULL)
        return;
    const char *name;
    struct model *m = resolve_model(req, DIA_OLLAMA, body, "model", &name);
    if (m == NULL)
        goto out;
    json_t *in = json_object_get(body, kind == K_OL_EMBED ? "input" : "prompt");
    json_t *inputs;
    if (json_is_string(in)) {
        inputs = json_array();
        if (kind == K_OL_EMBED || json_string_length(in) > 0)
            json_array_append(inputs, in);
    } else if (kind == K_OL_EMBED && json_is_array(in)) {
        inputs = json_incref(in);
    } else if (in == NULL || json_is_null(in)) {
        inputs = json_array(); /* Ollama answers an empty list (and loads the model) */
    } else {
        send_error(req, DIA_OLLAMA, 400, "", NULL, kind == K_OL_EMBED ? "invalid input type" : "prompt must be a string");
        goto out;
    }
    struct seq *s = seq_new(req, &ol_emb_ops, m, name);
    s->kind = kind;
    s->dialect = DIA_OLLAMA;
    s->inputs = inputs;
    json_t *dims = json_object_get(body, "dimensions");
    s->dim = json_is_integer(dims) && json_integer_value(dims) > 0 && json_integer_value(dims) <= 65536 ? json_integer_value(dims)
                                                                                                        : G.embed_dim;
    s->keep_alive_ms = parse_keep_alive(json_object_get(body, "keep_alive"));
    size_t chars = 0, i;
    json_t *e;
    uint64_t h = 0;
    json_array_foreach(inputs, i, e)
    {
        input_measure(e, &h, &chars);
    }
    s->prompt_tokens = chars ? estimate_tokens(chars) : 0;
    s->target = 0;
    s->ctype = OL_JSON;
    apply_fault(s, f);
    submit_seq(s);
out:
    json_decref(body);
}

void ol_embed(h2o_req_t *req, int dialect, const struct fault *f)
{
    embed(req, f, K_OL_EMBED);
}

void ol_embeddings(h2o_req_t *req, int dialect, const struct fault *f)
{
    embed(req, f, K_OL_EMBEDDINGS);
}

/* ---- show and pull ----------------------------------------------------------------------------- */

static const char *model_field(json_t *body)
{
    json_t *v = json_object_get(body, "model");
    if (!json_is_string(v))
        v = json_object_get(body, "name");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void ol_show(h2o_req_t *req, int dialect, const struct fault *f)
{
    json_t *body = parse_body(req, DIA_OLLAMA);
    if (body == NULL)
        return;
    const char *name = model_field(body);
    struct model *m = name ? model_find(name) : NULL;
    if (name == NULL) {
        send_error(req, DIA_OLLAMA, 400, "", NULL, "model is required");
    } else if (m == NULL) {
        char msg[300];
        snprintf(msg, sizeof(msg), "model '%.200s' not found", name);
        send_error(req, DIA_OLLAMA, 404, "", NULL, msg);
    } else {
        struct sbuf b = {0};
        sb_printf(&b,
                  "{\"license\":\"\",\"modelfile\":\"# Modelfile generated by enginesim\\nFROM %s\\n\",\"parameters\":\"\","
                  "\"template\":\"{{ .Prompt }}\",",
                  m->tagged);
        sb_details(&b, m);
        sb_printf(&b,
                  ",\"model_info\":{\"general.architecture\":\"llama\",\"general.parameter_count\":%llu,"
                  "\"llama.context_length\":%u,\"llama.embedding_length\":%u},\"capabilities\":[\"completion\",\"embedding\"],"
                  "\"modified_at\":\"",
                  (unsigned long long)m->size_mb * 1818182ULL, G.kv_tokens, G.embed_dim);
        sb_rfc3339(&b, now_ns() - 86400ULL * 1000000000ULL);
        sb_puts(&b, "\"}");
        send_body(req, 200, OL_JSON, b.p, b.len);
        sb_free(&b);
    }
    json_decref(body);
}

void ol_pull(h2o_req_t *req, int dialect, const struct fault *f)
{
    json_t *body = parse_body(req, DIA_OLLAMA);
    if (body == NULL)
        return;
    const char *name = model_field(body);
    struct model *m = name ? model_find(name) : NULL;
    if (name == NULL) {
        send_error(req, DIA_OLLAMA, 400, "", NULL, "model is required");
        goto out;
    }
    if (m == NULL && (m = model_add(name, 0)) == NULL) {
        send_error(req, DIA_OLLAMA, 500, "", NULL, "pull model manifest: invalid model name or model table full");
        goto out;
    }
    if (json_is_false(json_object_get(body, "stream"))) {
        send_body(req, 200, OL_JSON, H2O_STRLIT("{\"status\":\"success\"}"));
        goto out;
    }
    struct sbuf b = {0}, d = {0};
    sb_digest(&d, m);
    unsigned long long total = (unsigned long long)m->size_mb * 1000000ULL;
    sb_puts(&b, "{\"status\":\"pulling manifest\"}\n");
    for (int i = 0; i <= 4; i++)
        sb_printf(&b, "{\"status\":\"pulling %.12s\",\"digest\":\"sha256:%s\",\"total\":%llu,\"completed\":%llu}\n", d.p, d.p,
                  total, total * i / 4);
    sb_puts(&b, "{\"status\":\"verifying sha256 digest\"}\n{\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n");
    send_body(req, 200, "application/x-ndjson", b.p, b.len);
    sb_free(&b);
    sb_free(&d);
out:
    json_decref(body);
}
