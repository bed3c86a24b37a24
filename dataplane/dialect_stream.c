/* The streaming-response translator: one upstream event in (an OpenAI SSE data payload or an Ollama
 * NDJSON line), client-dialect bytes out. Content chunks, the hot path, are formatted straight into
 * the output buffer; only the rare shapes (tool calls, errors) go through jansson's encoder. */
#include "gridgate/dialect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/dialect_internal.h"
#include "gridgate/stream.h"

void gg_xlate_init(gg_xlate_t *x, enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, const char *model,
                   int include_usage)
{
    struct timespec ts;
    memset(x, 0, sizeof(*x));
    x->from = from;
    x->to = to;
    x->ep = ep;
    x->include_usage = include_usage;
    x->created = (long)time(NULL);
    x->prompt_tokens = x->completion_tokens = -1;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x->t0.sec = ts.tv_sec;
    x->t0.nsec = ts.tv_nsec;
    gg__dialect_new_id(x->id, sizeof(x->id), ep == GG_EP_CHAT ? "chatcmpl-" : "cmpl-");
    if (model == NULL)
        model = "";
    gg_buf_append_json_str(&x->model_json, model, strlen(model));
}

void gg_xlate_dispose(gg_xlate_t *x)
{
    gg_buf_free(&x->model_json);
    json_decref(x->tool_calls);
    x->tool_calls = NULL;
}

static int dump_to_buf(const char *s, size_t n, void *data)
{
    gg_buf_append(data, s, n);
    return 0;
}

static void append_json(gg_buf_t *out, json_t *j)
{
    json_dump_callback(j, dump_to_buf, out, GG_JSON_DUMP_FLAGS);
}

static void append_jstr(gg_buf_t *out, json_t *s)
{
    gg_buf_append_json_str(out, json_string_value(s), json_string_length(s));
}

static int nonempty(json_t *s)
{
    return json_is_string(s) && json_string_length(s) != 0;
}

/* The message of an upstream error: {"error":{"message":...}}, {"error":"..."} or vLLM's
 * {"object":"error","message":...}. NULL when the event is not an error. */
static const char *upstream_error(json_t *root)
{
    json_t *e = json_object_get(root, "error");
    if (json_is_string(e))
        return json_string_value(e);
    if (json_is_object(e))
        return json_is_string(json_object_get(e, "message")) ? json_string_value(json_object_get(e, "message")) : "upstream error";
    const char *obj = json_string_value(json_object_get(root, "object"));
    if (obj != NULL && strcmp(obj, "error") == 0)
        return json_is_string(json_object_get(root, "message")) ? json_string_value(json_object_get(root, "message"))
                                                                : "upstream error";
    return NULL;
}

/* --- OpenAI client ------------------------------------------------------------------------------ */

static void chunk_open(gg_xlate_t *x, gg_buf_t *out)
{
    gg_buf_appendf(out, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", x->id,
                   x->ep == GG_EP_CHAT ? "chat.completion.chunk" : "text_completion", x->created);
    gg_buf_append(out, x->model_json.base, x->model_json.len);
    gg_buf_append_str(out, ",\"choices\":[{\"index\":0,");
}

static void chunk_close(gg_buf_t *out, const char *finish_reason)
{
    if (finish_reason != NULL)
        gg_buf_appendf(out, ",\"logprobs\":null,\"finish_reason\":\"%s\"}]}\n\n", finish_reason);
    else
        gg_buf_append_str(out, ",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
}

/* A chunk whose delta (chat) or text (completion) is one string field. */
static void chunk_text(gg_xlate_t *x, gg_buf_t *out, const char *field, json_t *text)
{
    chunk_open(x, out);
    if (x->ep == GG_EP_CHAT) {
        gg_buf_appendf(out, "\"delta\":{\"%s\":", field);
        append_jstr(out, text);
        gg_buf_append_char(out, '}');
    } else {
        gg_buf_append_str(out, "\"text\":");
        append_jstr(out, text);
    }
    chunk_close(out, NULL);
}

static void openai_finish(gg_xlate_t *x, gg_buf_t *out, const char *reason)
{
    chunk_open(x, out);
    gg_buf_append_str(out, x->ep == GG_EP_CHAT ? "\"delta\":{}" : "\"text\":\"\"");
    chunk_close(out, reason);
    if (x->include_usage) {
        long p = x->prompt_tokens < 0 ? 0 : x->prompt_tokens, c = x->completion_tokens < 0 ? 0 : x->completion_tokens;
        gg_buf_appendf(out, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", x->id,
                       x->ep == GG_EP_CHAT ? "chat.completion.chunk" : "text_completion", x->created);
        gg_buf_append(out, x->model_json.base, x->model_json.len);
        gg_buf_appendf(out, ",\"choices\":[],\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}\n\n",
                       p, c, p + c);
    }
    gg_buf_append_str(out, "data: [DONE]\n\n");
    x->finished = 1;
}

static int ollama_to_openai(gg_xlate_t *x, json_t *root, gg_buf_t *out)
{
    const char *emsg = upstream_error(root);
    if (emsg != NULL)
        return gg_xlate_error(x, emsg, out);
    if (x->ep == GG_EP_CHAT) {
        json_t *msg = json_object_get(root, "message"), *calls = json_object_get(msg, "tool_calls"), *call;
        if (!x->started) {
            chunk_open(x, out);
            gg_buf_append_str(out, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}");
            chunk_close(out, NULL);
            x->started = 1;
        }
        if (nonempty(json_object_get(msg, "thinking")))
            chunk_text(x, out, "reasoning_content", json_object_get(msg, "thinking"));
        if (nonempty(json_object_get(msg, "content")))
            chunk_text(x, out, "content", json_object_get(msg, "content"));
        if (json_array_size(calls) != 0) {
            json_t *ocalls = json_array();
            size_t i;
            json_array_foreach(calls, i, call)
            {
                json_t *fn = json_object_get(call, "function"), *name = json_object_get(fn, "name");
                char id[32];
                snprintf(id, sizeof(id), "call_%d", x->saw_tool_calls + (int)i);
                json_array_append_new(ocalls,
                                      json_pack("{s:I,s:s,s:s,s:{s:o,s:o}}", "index", (json_int_t)(x->saw_tool_calls + (int)i),
                                                "id", id, "type", "function", "function", "name",
                                                json_is_string(name) ? json_incref(name) : json_string(""), "arguments",
                                                gg__dialect_args_to_string(json_object_get(fn, "arguments"))));
            }
            x->saw_tool_calls += (int)json_array_size(calls);
            chunk_open(x, out);
            gg_buf_append_str(out, "\"delta\":{\"tool_calls\":");
            append_json(out, ocalls);
            gg_buf_append_char(out, '}');
            chunk_close(out, NULL);
            json_decref(ocalls);
        }
    } else if (nonempty(json_object_get(root, "response"))) {
        chunk_text(x, out, "text", json_object_get(root, "response"));
    }
    if (json_is_true(json_object_get(root, "done"))) {
        json_t *pe = json_object_get(root, "prompt_eval_count"), *ec = json_object_get(root, "eval_count");
        if (json_is_integer(pe))
            x->prompt_tokens = (long)json_integer_value(pe);
        if (json_is_integer(ec))
            x->completion_tokens = (long)json_integer_value(ec);
        openai_finish(x, out,
                      gg__dialect_finish_to_openai(json_string_value(json_object_get(root, "done_reason")), x->saw_tool_calls));
    }
    return 0;
}

/* --- Ollama client ------------------------------------------------------------------------------ */

static void line_open(gg_xlate_t *x, gg_buf_t *out)
{
    char created[40];
    gg__dialect_rfc3339_now(created, sizeof(created));
    gg_buf_append_str(out, "{\"model\":");
    gg_buf_append(out, x->model_json.base, x->model_json.len);
    gg_buf_appendf(out, ",\"created_at\":\"%s\",", created);
}

/* Tool-call fragments of an OpenAI stream, merged by index: the name comes once, arguments in pieces. */
static void merge_tool_calls(gg_xlate_t *x, json_t *calls)
{
    json_t *call;
    size_t i;
    if (x->tool_calls == NULL)
        x->tool_calls = json_array();
    json_array_foreach(calls, i, call)
    {
        json_t *jidx = json_object_get(call, "index"), *fn = json_object_get(call, "function");
        size_t idx = json_is_integer(jidx) ? (size_t)json_integer_value(jidx) : i;
        if (idx > 1024) /* an index no real model produces; refuse to allocate for it */
            continue;
        while (json_array_size(x->tool_calls) <= idx)
            json_array_append_new(x->tool_calls, json_pack("{s:s,s:s}", "name", "", "arguments", ""));
        json_t *acc = json_array_get(x->tool_calls, idx), *name = json_object_get(fn, "name"),
               *args = json_object_get(fn, "arguments");
        if (nonempty(name))
            json_object_set(acc, "name", name);
        if (json_is_string(args)) {
            json_t *prev = json_object_get(acc, "arguments");
            gg_buf_t b = GG_BUF_INIT;
            gg_buf_append(&b, json_string_value(prev), json_string_length(prev));
            gg_buf_append(&b, json_string_value(args), json_string_length(args));
            json_object_set_new(acc, "arguments", json_stringn(b.base, b.len));
            gg_buf_free(&b);
        }
    }
}

static void ollama_final(gg_xlate_t *x, gg_buf_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = (long long)(ts.tv_sec - x->t0.sec) * 1000000000LL + (ts.tv_nsec - x->t0.nsec);

    if (x->ep == GG_EP_CHAT && json_array_size(x->tool_calls) != 0) {
        /* Ollama sends complete tool calls in a message of their own before the final line. */
        json_t *calls = json_array(), *acc;
        size_t i;
        json_array_foreach(x->tool_calls, i, acc)
        {
            json_array_append_new(calls, json_pack("{s:{s:O,s:o}}", "function", "name", json_object_get(acc, "name"), "arguments",
                                                   gg__dialect_args_to_object(json_object_get(acc, "arguments"))));
        }
        line_open(x, out);
        gg_buf_append_str(out, "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":");
        append_json(out, calls);
        gg_buf_append_str(out, "},\"done\":false}\n");
        json_decref(calls);
    }
    line_open(x, out);
    gg_buf_append_str(out, x->ep == GG_EP_CHAT ? "\"message\":{\"role\":\"assistant\",\"content\":\"\"}" : "\"response\":\"\"");
    gg_buf_appendf(out, ",\"done_reason\":\"%s\",\"done\":true,\"total_duration\":%lld,\"load_duration\":0",
                   gg__dialect_finish_to_ollama(x->finish_reason), ns);
    if (x->prompt_tokens >= 0)
        gg_buf_appendf(out, ",\"prompt_eval_count\":%ld,\"prompt_eval_duration\":0", x->prompt_tokens);
    /* Without a usage report, one content chunk is one token on every engine we front. */
    gg_buf_appendf(out, ",\"eval_count\":%ld,\"eval_duration\":%lld}\n",
                   x->completion_tokens >= 0 ? x->completion_tokens : x->content_chunks, ns);
    x->finished = 1;
}

static int openai_to_ollama(gg_xlate_t *x, json_t *root, gg_buf_t *out)
{
    const char *emsg = upstream_error(root);
    json_t *choice, *usage = json_object_get(root, "usage");
    size_t i;

    if (emsg != NULL)
        return gg_xlate_error(x, emsg, out);
    json_array_foreach(json_object_get(root, "choices"), i, choice)
    {
        json_t *jidx = json_object_get(choice, "index"), *delta = json_object_get(choice, "delta"), *fr;
        if (json_is_integer(jidx) && json_integer_value(jidx) != 0)
            continue; /* Ollama has no n > 1 */
        json_t *text = x->ep == GG_EP_CHAT ? json_object_get(delta, "content") : json_object_get(choice, "text");
        json_t *thinking = json_object_get(delta, "reasoning_content");
        if (!nonempty(thinking))
            thinking = json_object_get(delta, "reasoning");
        if (nonempty(text) || (x->ep == GG_EP_CHAT && nonempty(thinking))) {
            line_open(x, out);
            if (x->ep == GG_EP_CHAT) {
                gg_buf_append_str(out, "\"message\":{\"role\":\"assistant\",\"content\":");
                if (nonempty(text))
                    append_jstr(out, text);
                else
                    gg_buf_append_str(out, "\"\"");
                if (nonempty(thinking)) {
                    gg_buf_append_str(out, ",\"thinking\":");
                    append_jstr(out, thinking);
                }
                gg_buf_append_char(out, '}');
            } else {
                gg_buf_append_str(out, "\"response\":");
                append_jstr(out, text);
            }
            gg_buf_append_str(out, ",\"done\":false}\n");
            x->content_chunks++;
        }
        if (json_is_array(json_object_get(delta, "tool_calls")))
            merge_tool_calls(x, json_object_get(delta, "tool_calls"));
        if (json_is_string(fr = json_object_get(choice, "finish_reason"))) {
            strncpy(x->finish_reason, json_string_value(fr), sizeof(x->finish_reason) - 1);
            x->finish_reason[sizeof(x->finish_reason) - 1] = '\0';
        }
    }
    if (json_is_object(usage)) {
        json_t *pt = json_object_get(usage, "prompt_tokens"), *ct = json_object_get(usage, "completion_tokens");
        if (json_is_integer(pt))
            x->prompt_tokens = (long)json_integer_value(pt);
        if (json_is_integer(ct))
            x->completion_tokens = (long)json_integer_value(ct);
    }
    return 0;
}

/* --- entry points ------------------------------------------------------------------------------- */

static int passthrough(gg_xlate_t *x, const char *data, size_t len, gg_buf_t *out)
{
    gg_usage_t u;
    gg_usage_init(&u);
    int ev = gg_usage_observe(&u, x->from, data, len);
    if (ev & GG_USAGE_EV_INVALID)
        return -EINVAL;
    if ((ev & GG_USAGE_EV_USAGE_ONLY) && !x->include_usage)
        return 0;
    if (x->to == GG_DIALECT_OPENAI) {
        gg_buf_append_str(out, "data: ");
        gg_buf_append(out, data, len);
        gg_buf_append_str(out, "\n\n");
    } else {
        gg_buf_append(out, data, len);
        gg_buf_append_char(out, '\n');
    }
    if ((ev & GG_USAGE_EV_DONE) || u.error)
        x->finished = 1;
    return 0;
}

int gg_xlate_event(gg_xlate_t *x, const char *data, size_t len, gg_buf_t *out)
{
    json_t *root;
    int ret;

    if (x->finished)
        return 0;
    if (x->from == x->to)
        return passthrough(x, data, len, out);
    if (x->from == GG_DIALECT_OPENAI && len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        ollama_final(x, out);
        return 0;
    }
    if ((root = json_loadb(data, len, 0, NULL)) == NULL || !json_is_object(root)) {
        json_decref(root);
        return -EINVAL;
    }
    ret = x->from == GG_DIALECT_OLLAMA ? ollama_to_openai(x, root, out) : openai_to_ollama(x, root, out);
    json_decref(root);
    return ret;
}

int gg_xlate_error(gg_xlate_t *x, const char *message, gg_buf_t *out)
{
    if (x->finished)
        return 0;
    json_t *msg = json_string(message != NULL ? message : "upstream error");
    if (msg == NULL)
        msg = json_string("upstream error");
    if (x->to == GG_DIALECT_OPENAI) {
        chunk_open(x, out);
        gg_buf_append_str(out, x->ep == GG_EP_CHAT ? "\"delta\":{}" : "\"text\":\"\"");
        gg_buf_append_str(out, ",\"logprobs\":null,\"finish_reason\":\"error\"}],\"error\":{\"message\":");
        append_jstr(out, msg);
        gg_buf_append_str(out, ",\"type\":\"upstream_error\",\"param\":null,\"code\":null}}\n\ndata: [DONE]\n\n");
    } else {
        gg_buf_append_str(out, "{\"error\":");
        append_jstr(out, msg);
        gg_buf_append_str(out, "}\n");
    }
    json_decref(msg);
    x->finished = 1;
    return 0;
}
