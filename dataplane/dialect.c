/* Dialect translation for whole bodies: endpoint paths, request bodies, non-streaming responses
 * (chat, completion, embeddings), base64 embeddings and error bodies. The streaming-response
 * translator is in dialect_stream.c. */
#include "gridgate/dialect.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/dialect_internal.h"

/* --- paths ---------------------------------------------------------------------------------- */

static const struct {
    const char *path;
    enum gg_dialect d;
    enum gg_endpoint ep;
} paths[] = {
    {"/v1/chat/completions", GG_DIALECT_OPENAI, GG_EP_CHAT},    {"/v1/completions", GG_DIALECT_OPENAI, GG_EP_COMPLETION},
    {"/v1/embeddings", GG_DIALECT_OPENAI, GG_EP_EMBED},         {"/api/chat", GG_DIALECT_OLLAMA, GG_EP_CHAT},
    {"/api/generate", GG_DIALECT_OLLAMA, GG_EP_COMPLETION},     {"/api/embed", GG_DIALECT_OLLAMA, GG_EP_EMBED},
    {"/api/embeddings", GG_DIALECT_OLLAMA, GG_EP_EMBED_LEGACY}, {"/api/show", GG_DIALECT_OLLAMA, GG_EP_SHOW},
};

const char *gg_endpoint_path(enum gg_dialect d, enum gg_endpoint ep)
{
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (paths[i].d == d && paths[i].ep == ep)
            return paths[i].path;
    return NULL;
}

int gg_endpoint_lookup(const char *path, size_t len, enum gg_dialect *d, enum gg_endpoint *ep)
{
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (strlen(paths[i].path) == len && memcmp(paths[i].path, path, len) == 0) {
            *d = paths[i].d;
            *ep = paths[i].ep;
            return 0;
        }
    }
    return -ENOENT;
}

/* --- small helpers shared with dialect_stream.c ---------------------------------------------- */

void gg__dialect_rfc3339_now(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
             tm.tm_sec, ts.tv_nsec);
}

const char *gg__dialect_finish_to_openai(const char *done_reason, int tool_calls)
{
    if (tool_calls)
        return "tool_calls";
    return done_reason != NULL && strcmp(done_reason, "length") == 0 ? "length" : "stop";
}

const char *gg__dialect_finish_to_ollama(const char *finish_reason)
{
    return finish_reason != NULL && strcmp(finish_reason, "length") == 0 ? "length" : "stop";
}

/* OpenAI carries tool-call arguments as a JSON string, Ollama as an object. */
json_t *gg__dialect_args_to_object(json_t *args)
{
    if (json_is_object(args))
        return json_incref(args);
    if (json_is_string(args)) {
        json_t *o = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (json_is_object(o))
            return o;
        json_decref(o);
    }
    return json_object();
}

json_t *gg__dialect_args_to_string(json_t *args)
{
    if (json_is_string(args))
        return json_incref(args);
    if (!json_is_object(args))
        return json_string("{}");
    char *s = json_dumps(args, GG_JSON_DUMP_FLAGS);
    if (s == NULL)
        abort();
    json_t *r = json_string(s);
    free(s);
    return r;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen != 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* A string member as a new reference, "" when absent or not a string. */
static json_t *str_or_empty(json_t *j)
{
    return json_is_string(j) ? json_incref(j) : json_string("");
}

static void copy_key(json_t *dst, const char *dkey, json_t *src, const char *skey)
{
    json_t *v = json_object_get(src, skey);
    if (v != NULL && !json_is_null(v))
        json_object_set(dst, dkey, v);
}

/* --- base64 ---------------------------------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *in, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* Returns the decoded length, or -1 on a character outside the alphabet. `out` holds n/4*3 bytes. */
static long b64_decode(const char *in, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long len = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            break;
        const char *p = memchr(b64chars, in[i], 64);
        if (p == NULL || in[i] == '\0')
            return -1;
        acc = acc << 6 | (uint32_t)(p - b64chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (unsigned char)(acc >> bits);
        }
    }
    return len;
}

/* Floats -> little-endian float32 bytes -> base64, the OpenAI encoding_format "base64". */
static json_t *floats_to_base64(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    unsigned char *bytes = malloc(n * 4 + 1);
    json_t *v;
    if (bytes == NULL)
        abort();
    json_array_foreach(arr, i, v)
    {
        float f = (float)json_number_value(v);
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int b = 0; b < 4; b++)
            bytes[i * 4 + b] = (unsigned char)(u >> (8 * b));
    }
    char *s = b64_encode(bytes, n * 4);
    json_t *r = json_string(s);
    free(s);
    free(bytes);
    return r;
}

static json_t *base64_to_floats(json_t *str)
{
    size_t n = json_string_length(str);
    unsigned char *bytes = malloc(n / 4 * 3 + 3);
    if (bytes == NULL)
        abort();
    long len = b64_decode(json_string_value(str), n, bytes);
    json_t *arr = NULL;
    if (len >= 0 && len % 4 == 0) {
        arr = json_array();
        for (long i = 0; i < len; i += 4) {
            uint32_t u =
                (uint32_t)bytes[i] | (uint32_t)bytes[i + 1] << 8 | (uint32_t)bytes[i + 2] << 16 | (uint32_t)bytes[i + 3] << 24;
            float f;
            memcpy(&f, &u, 4);
            json_array_append_new(arr, json_real(f));
        }
    }
    free(bytes);
    return arr;
}

/* An embedding vector in either encoding as a float array (new reference), or NULL. */
static json_t *embedding_floats(json_t *e)
{
    if (json_is_array(e))
        return json_incref(e);
    if (json_is_string(e))
        return base64_to_floats(e);
    return NULL;
}

int gg_dialect_embedding_encode_base64(json_t *resp)
{
    json_t *data = json_object_get(resp, "data"), *item;
    size_t i;
    if (!json_is_array(data))
        return -EINVAL;
    json_array_foreach(data, i, item)
    {
        json_t *e = json_object_get(item, "embedding");
        if (json_is_array(e))
            json_object_set_new(item, "embedding", floats_to_base64(e));
        else if (!json_is_string(e))
            return -EINVAL;
    }
    return 0;
}

/* --- requests -------------------------------------------------------------------------------- */

static const char *image_mime(const char *b64)
{
    if (strncmp(b64, "/9j/", 4) == 0)
        return "image/jpeg";
    if (strncmp(b64, "R0lGOD", 6) == 0)
        return "image/gif";
    if (strncmp(b64, "UklGR", 5) == 0)
        return "image/webp";
    return "image/png";
}

static json_t *messages_ollama_to_openai(json_t *messages)
{
    json_t *out = json_array(), *m, *pending = json_array(); /* tool call ids not yet answered */
    size_t i, j;
    int ncalls = 0;
    json_array_foreach(messages, i, m)
    {
        json_t *om = json_object(), *images = json_object_get(m, "images"), *content = json_object_get(m, "content");
        const char *role = json_string_value(json_object_get(m, "role"));
        copy_key(om, "role", m, "role");
        if (json_array_size(images) != 0) {
            json_t *parts = json_array(), *img;
            if (json_is_string(content) && json_string_length(content) != 0)
                json_array_append_new(parts, json_pack("{s:s,s:O}", "type", "text", "text", content));
            json_array_foreach(images, j, img)
            {
                if (!json_is_string(img))
                    continue;
                char *url;
                if (asprintf(&url, "data:%s;base64,%s", image_mime(json_string_value(img)), json_string_value(img)) < 0)
                    abort();
                json_array_append_new(parts, json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url", url));
                free(url);
            }
            json_object_set_new(om, "content", parts);
        } else {
            json_object_set_new(om, "content", json_is_string(content) ? json_incref(content) : json_string(""));
        }
        json_t *calls = json_object_get(m, "tool_calls"), *call;
        if (json_array_size(calls) != 0) {
            json_t *ocalls = json_array();
            json_array_foreach(calls, j, call)
            {
                json_t *fn = json_object_get(call, "function");
                char id[32];
                snprintf(id, sizeof(id), "call_%d", ncalls++);
                json_t *name = json_object_get(fn, "name");
                json_array_append_new(ocalls, json_pack("{s:s,s:s,s:{s:o,s:o}}", "id", id, "type", "function", "function", "name",
                                                        str_or_empty(name), "arguments",
                                                        gg__dialect_args_to_string(json_object_get(fn, "arguments"))));
                json_array_append_new(pending, json_pack("{s:s,s:o}", "id", id, "name", str_or_empty(name)));
            }
            json_object_set_new(om, "tool_calls", ocalls);
        }
        if (role != NULL && strcmp(role, "tool") == 0) {
            json_t *id = json_object_get(m, "tool_call_id");
            if (!json_is_string(id)) {
                /* Ollama names the tool instead of the call: answer the oldest open call of that name. */
                const char *tname = json_string_value(json_object_get(m, "tool_name"));
                size_t pick = 0;
                json_t *p;
                json_array_foreach(pending, j, p)
                {
                    if (tname != NULL && strcmp(json_string_value(json_object_get(p, "name")), tname) == 0) {
                        pick = j;
                        break;
                    }
                }
                id = json_object_get(json_array_get(pending, pick), "id");
                json_object_set_new(om, "tool_call_id", json_is_string(id) ? json_incref(id) : json_string("call_0"));
                json_array_remove(pending, pick);
            } else {
                json_object_set(om, "tool_call_id", id);
            }
        }
        json_array_append_new(out, om);
    }
    json_decref(pending);
    return out;
}

static int messages_openai_to_ollama(json_t *messages, json_t **out_, char *err, size_t errlen)
{
    json_t *out = json_array(), *m, *names = json_object(); /* tool call id -> function name */
    size_t i, j;
    json_array_foreach(messages, i, m)
    {
        json_t *om = json_object(), *content = json_object_get(m, "content"), *part;
        const char *role = json_string_value(json_object_get(m, "role"));
        copy_key(om, "role", m, "role");
        if (json_is_array(content)) {
            gg_buf_t text = GG_BUF_INIT;
            json_t *images = json_array();
            json_array_foreach(content, j, part)
            {
                const char *type = json_string_value(json_object_get(part, "type"));
                if (type != NULL && strcmp(type, "text") == 0 && json_is_string(json_object_get(part, "text"))) {
                    if (text.len != 0)
                        gg_buf_append_char(&text, '\n');
                    json_t *t = json_object_get(part, "text");
                    gg_buf_append(&text, json_string_value(t), json_string_length(t));
                } else if (type != NULL && strcmp(type, "image_url") == 0) {
                    json_t *u = json_object_get(part, "image_url");
                    const char *url = json_string_value(json_is_object(u) ? json_object_get(u, "url") : u);
                    const char *comma = url != NULL ? strstr(url, ";base64,") : NULL;
                    if (url == NULL || strncmp(url, "data:", 5) != 0 || comma == NULL) {
                        gg_buf_free(&text);
                        json_decref(images);
                        json_decref(om);
                        json_decref(out);
                        json_decref(names);
                        return fail(err, errlen, "'messages[%zu].content[%zu].image_url' must be a base64 data: URL for this model",
                                    i, j);
                    }
                    json_array_append_new(images, json_string(comma + 8));
                }
            }
            json_object_set_new(om, "content", json_stringn(text.base != NULL ? text.base : "", text.len));
            gg_buf_free(&text);
            if (json_array_size(images) != 0)
                json_object_set(om, "images", images);
            json_decref(images);
        } else {
            json_object_set_new(om, "content", json_is_string(content) ? json_incref(content) : json_string(""));
        }
        json_t *calls = json_object_get(m, "tool_calls"), *call;
        if (json_array_size(calls) != 0) {
            json_t *ocalls = json_array();
            json_array_foreach(calls, j, call)
            {
                json_t *fn = json_object_get(call, "function"), *name = json_object_get(fn, "name");
                json_array_append_new(ocalls, json_pack("{s:{s:o,s:o}}", "function", "name", str_or_empty(name), "arguments",
                                                        gg__dialect_args_to_object(json_object_get(fn, "arguments"))));
                if (json_is_string(json_object_get(call, "id")) && json_is_string(name))
                    json_object_set(names, json_string_value(json_object_get(call, "id")), name);
            }
            json_object_set_new(om, "tool_calls", ocalls);
        }
        if (role != NULL && strcmp(role, "tool") == 0) {
            const char *id = json_string_value(json_object_get(m, "tool_call_id"));
            json_t *name = id != NULL ? json_object_get(names, id) : NULL;
            if (name != NULL)
                json_object_set(om, "tool_name", name);
        }
        json_array_append_new(out, om);
    }
    json_decref(names);
    *out_ = out;
    return 0;
}

/* Sampling options with the same name and meaning on both sides. */
static const char *const shared_options[] = {"temperature",       "top_p",           "top_k", "min_p", "seed",
                                             "frequency_penalty", "presence_penalty"};

static void stop_to_array(json_t *dst, const char *key, json_t *stop)
{
    if (json_is_string(stop))
        json_object_set_new(dst, key, json_pack("[O]", stop));
    else if (json_is_array(stop))
        json_object_set(dst, key, stop);
}

static int req_ollama_to_openai(enum gg_endpoint ep, json_t *body, json_t *out, char *err, size_t errlen)
{
    json_t *opts = json_object_get(body, "options"), *v;

    switch (ep) {
    case GG_EP_CHAT:
        json_object_set_new(out, "messages", messages_ollama_to_openai(json_object_get(body, "messages")));
        copy_key(out, "tools", body, "tools");
        break;
    case GG_EP_COMPLETION: {
        json_t *prompt = json_object_get(body, "prompt"), *system = json_object_get(body, "system");
        if (json_array_size(json_object_get(body, "images")) != 0)
            return fail(err, errlen, "'images' on /api/generate are not supported for this model; use /api/chat");
        if (json_is_string(system) && json_string_length(system) != 0) {
            /* /v1/completions has no system prompt: it goes in front of the prompt. */
            char *s;
            if (asprintf(&s, "%s\n\n%s", json_string_value(system), json_is_string(prompt) ? json_string_value(prompt) : "") < 0)
                abort();
            json_object_set_new(out, "prompt", json_string(s));
            free(s);
        } else {
            json_object_set_new(out, "prompt", json_is_string(prompt) ? json_incref(prompt) : json_string(""));
        }
        copy_key(out, "suffix", body, "suffix");
        break;
    }
    case GG_EP_EMBED:
    case GG_EP_EMBED_LEGACY:
        copy_key(out, "input", body, ep == GG_EP_EMBED ? "input" : "prompt");
        copy_key(out, "dimensions", body, "dimensions");
        json_object_set_new(out, "encoding_format", json_string("float"));
        return 0;
    case GG_EP_SHOW:
        return fail(err, errlen, "/api/show is not available for this model");
    }

    v = json_object_get(body, "stream");
    int stream = v == NULL || json_is_null(v) || json_is_true(v);
    json_object_set_new(out, "stream", json_boolean(stream));
    if (stream)
        json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
    for (size_t i = 0; i < sizeof(shared_options) / sizeof(shared_options[0]); i++)
        copy_key(out, shared_options[i], opts, shared_options[i]);
    stop_to_array(out, "stop", json_object_get(opts, "stop"));
    v = json_object_get(opts, "num_predict");
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        json_object_set(out, "max_tokens", v);
    v = json_object_get(body, "format");
    if (json_is_string(v) && strcmp(json_string_value(v), "json") == 0)
        json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
    else if (json_is_object(v))
        json_object_set_new(out, "response_format",
                            json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema", "json_schema", "name", "response", "schema", v));
    return 0;
}

static int req_openai_to_ollama(enum gg_endpoint ep, json_t *body, json_t *out, char *err, size_t errlen)
{
    json_t *opts, *v;
    int ret;

    switch (ep) {
    case GG_EP_CHAT: {
        json_t *msgs = NULL;
        if ((ret = messages_openai_to_ollama(json_object_get(body, "messages"), &msgs, err, errlen)) != 0)
            return ret;
        json_object_set_new(out, "messages", msgs);
        copy_key(out, "tools", body, "tools");
        break;
    }
    case GG_EP_COMPLETION:
        v = json_object_get(body, "prompt");
        if (json_is_array(v) && json_array_size(v) == 1)
            v = json_array_get(v, 0);
        if (!json_is_string(v))
            return fail(err, errlen, "'prompt' must be a single string for this model");
        json_object_set(out, "prompt", v);
        copy_key(out, "suffix", body, "suffix");
        break;
    case GG_EP_EMBED: {
        json_t *item;
        size_t i;
        v = json_object_get(body, "input");
        int ok = json_is_string(v) || json_is_array(v);
        json_array_foreach(v, i, item) ok &= json_is_string(item);
        if (!ok)
            return fail(err, errlen, "'input' must be a string or an array of strings for this model");
        json_object_set(out, "input", v);
        copy_key(out, "dimensions", body, "dimensions");
        return 0;
    }
    case GG_EP_EMBED_LEGACY:
    case GG_EP_SHOW:
        return fail(err, errlen, "this endpoint has no OpenAI equivalent");
    }

    /* Ollama streams unless told otherwise; OpenAI does not. */
    json_object_set_new(out, "stream", json_boolean(json_is_true(json_object_get(body, "stream"))));
    opts = json_object();
    for (size_t i = 0; i < sizeof(shared_options) / sizeof(shared_options[0]); i++)
        copy_key(opts, shared_options[i], body, shared_options[i]);
    stop_to_array(opts, "stop", json_object_get(body, "stop"));
    if ((v = json_object_get(body, "max_completion_tokens")) == NULL || json_is_null(v))
        v = json_object_get(body, "max_tokens");
    if (json_is_integer(v))
        json_object_set(opts, "num_predict", v);
    if (json_object_size(opts) != 0)
        json_object_set(out, "options", opts);
    json_decref(opts);
    v = json_object_get(body, "response_format");
    const char *type = json_string_value(json_object_get(v, "type"));
    if (type != NULL && strcmp(type, "json_object") == 0)
        json_object_set_new(out, "format", json_string("json"));
    else if (type != NULL && strcmp(type, "json_schema") == 0)
        copy_key(out, "format", json_object_get(v, "json_schema"), "schema");
    return 0;
}

json_t *gg_dialect_request(enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, json_t *body, char *path_out,
                           size_t path_len, char *err, size_t errlen)
{
    /* OpenAI has one embeddings endpoint for both of Ollama's */
    const char *path = gg_endpoint_path(to, to == GG_DIALECT_OPENAI && ep == GG_EP_EMBED_LEGACY ? GG_EP_EMBED : ep);
    json_t *out;
    int ret;

    if (!json_is_object(body)) {
        fail(err, errlen, "request body must be a JSON object");
        return NULL;
    }
    if (path == NULL) {
        fail(err, errlen, "this endpoint has no equivalent for this model's engine");
        return NULL;
    }
    snprintf(path_out, path_len, "%s", path);
    if (from == to)
        return json_incref(body);
    out = json_object();
    copy_key(out, "model", body, "model");
    ret = from == GG_DIALECT_OLLAMA ? req_ollama_to_openai(ep, body, out, err, errlen)
                                    : req_openai_to_ollama(ep, body, out, err, errlen);
    if (ret != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* --- non-streaming responses ------------------------------------------------------------------ */

static json_t *usage_object(long prompt, long completion)
{
    if (prompt < 0)
        prompt = 0;
    if (completion < 0)
        completion = 0;
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)prompt, "completion_tokens", (json_int_t)completion,
                     "total_tokens", (json_int_t)(prompt + completion));
}

static long int_or(json_t *j, long dflt)
{
    return json_is_integer(j) ? (long)json_integer_value(j) : dflt;
}

void gg__dialect_new_id(char *out, size_t len, const char *prefix)
{
    static uint64_t counter;
    uint64_t n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Unique per process and very likely across restarts; clients only compare ids within a response. */
    snprintf(out, len, "%s%08llx%016llx", prefix, (unsigned long long)(ts.tv_sec & 0xffffffff),
             (unsigned long long)(n * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_nsec));
}

static json_t *resp_ollama_to_openai(enum gg_endpoint ep, json_t *up, const char *model, int want_base64)
{
    json_t *out = NULL, *v;
    size_t i;
    char id[48];

    long prompt = int_or(json_object_get(up, "prompt_eval_count"), 0);
    switch (ep) {
    case GG_EP_CHAT: {
        json_t *msg = json_object_get(up, "message"), *calls = json_object_get(msg, "tool_calls"), *call;
        if (!json_is_object(msg))
            return NULL;
        json_t *om = json_pack("{s:s,s:O}", "role", "assistant", "content",
                               json_is_string(json_object_get(msg, "content")) ? json_object_get(msg, "content") : json_null());
        copy_key(om, "reasoning_content", msg, "thinking");
        if (json_array_size(calls) != 0) {
            json_t *ocalls = json_array();
            json_array_foreach(calls, i, call)
            {
                json_t *fn = json_object_get(call, "function"), *name = json_object_get(fn, "name");
                char cid[32];
                snprintf(cid, sizeof(cid), "call_%zu", i);
                json_array_append_new(ocalls, json_pack("{s:s,s:s,s:{s:o,s:o}}", "id", cid, "type", "function", "function", "name",
                                                        str_or_empty(name), "arguments",
                                                        gg__dialect_args_to_string(json_object_get(fn, "arguments"))));
            }
            json_object_set_new(om, "tool_calls", ocalls);
        }
        gg__dialect_new_id(id, sizeof(id), "chatcmpl-");
        out = json_pack(
            "{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s}],s:o}", "id", id, "object", "chat.completion", "created", (json_int_t)time(NULL),
            "model", model, "choices", "index", 0, "message", om, "logprobs", "finish_reason",
            gg__dialect_finish_to_openai(json_string_value(json_object_get(up, "done_reason")), json_array_size(calls) != 0),
            "usage", usage_object(prompt, int_or(json_object_get(up, "eval_count"), 0)));
        break;
    }
    case GG_EP_COMPLETION:
        v = json_object_get(up, "response");
        if (!json_is_string(v))
            return NULL;
        gg__dialect_new_id(id, sizeof(id), "cmpl-");
        out = json_pack("{s:s,s:s,s:I,s:s,s:[{s:O,s:i,s:n,s:s}],s:o}", "id", id, "object", "text_completion", "created",
                        (json_int_t)time(NULL), "model", model, "choices", "text", v, "index", 0, "logprobs", "finish_reason",
                        gg__dialect_finish_to_openai(json_string_value(json_object_get(up, "done_reason")), 0), "usage",
                        usage_object(prompt, int_or(json_object_get(up, "eval_count"), 0)));
        break;
    case GG_EP_EMBED:
    case GG_EP_EMBED_LEGACY: {
        json_t *embs = json_object_get(up, "embeddings"), *e, *data = json_array();
        if (json_is_array(json_object_get(up, "embedding")))
            embs = json_pack("[O]", json_object_get(up, "embedding"));
        else if (json_is_array(embs))
            json_incref(embs);
        else {
            json_decref(data);
            return NULL;
        }
        json_array_foreach(embs, i, e)
        {
            json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding", "index", (json_int_t)i, "embedding",
                                                  want_base64 ? floats_to_base64(e) : json_incref(e)));
        }
        json_decref(embs);
        out = json_pack("{s:s,s:o,s:s,s:o}", "object", "list", "data", data, "model", model, "usage",
                        json_pack("{s:I,s:I}", "prompt_tokens", (json_int_t)prompt, "total_tokens", (json_int_t)prompt));
        break;
    }
    case GG_EP_SHOW:
        return NULL;
    }
    return out;
}

static json_t *resp_openai_to_ollama(enum gg_endpoint ep, json_t *up, const char *model)
{
    json_t *choice = json_array_get(json_object_get(up, "choices"), 0), *usage = json_object_get(up, "usage"), *out, *v;
    long prompt = int_or(json_object_get(usage, "prompt_tokens"), 0);
    long completion = int_or(json_object_get(usage, "completion_tokens"), 0);
    char created[40];
    size_t i;

    gg__dialect_rfc3339_now(created, sizeof(created));
    switch (ep) {
    case GG_EP_CHAT:
    case GG_EP_COMPLETION: {
        if (!json_is_object(choice))
            return NULL;
        const char *reason = gg__dialect_finish_to_ollama(json_string_value(json_object_get(choice, "finish_reason")));
        if (ep == GG_EP_CHAT) {
            json_t *msg = json_object_get(choice, "message"), *calls = json_object_get(msg, "tool_calls"), *call;
            if (!json_is_object(msg))
                return NULL;
            v = json_object_get(msg, "content");
            json_t *om = json_pack("{s:s,s:o}", "role", "assistant", "content", str_or_empty(v));
            copy_key(om, "thinking", msg, "reasoning_content");
            if (json_array_size(calls) != 0) {
                json_t *ocalls = json_array();
                json_array_foreach(calls, i, call)
                {
                    json_t *fn = json_object_get(call, "function"), *name = json_object_get(fn, "name");
                    json_array_append_new(ocalls, json_pack("{s:{s:o,s:o}}", "function", "name", str_or_empty(name), "arguments",
                                                            gg__dialect_args_to_object(json_object_get(fn, "arguments"))));
                }
                json_object_set_new(om, "tool_calls", ocalls);
            }
            out = json_pack("{s:s,s:s,s:o}", "model", model, "created_at", created, "message", om);
        } else {
            v = json_object_get(choice, "text");
            out = json_pack("{s:s,s:s,s:o}", "model", model, "created_at", created, "response", str_or_empty(v));
        }
        json_object_set_new(out, "done", json_true());
        json_object_set_new(out, "done_reason", json_string(reason));
        json_object_set_new(out, "prompt_eval_count", json_integer(prompt));
        json_object_set_new(out, "eval_count", json_integer(completion));
        return out;
    }
    case GG_EP_EMBED:
    case GG_EP_EMBED_LEGACY: {
        json_t *data = json_object_get(up, "data"), *item, *embs = json_array();
        if (!json_is_array(data)) {
            json_decref(embs);
            return NULL;
        }
        json_array_foreach(data, i, item)
        {
            json_t *f = embedding_floats(json_object_get(item, "embedding"));
            if (f == NULL) {
                json_decref(embs);
                return NULL;
            }
            json_array_append_new(embs, f);
        }
        if (ep == GG_EP_EMBED_LEGACY) {
            out = json_pack("{s:O}", "embedding", json_array_size(embs) != 0 ? json_array_get(embs, 0) : embs);
            json_decref(embs);
            return out;
        }
        return json_pack("{s:s,s:o,s:I}", "model", model, "embeddings", embs, "prompt_eval_count", (json_int_t)prompt);
    }
    case GG_EP_SHOW:
        break;
    }
    return NULL;
}

json_t *gg_dialect_response(enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, json_t *upstream_body, const char *model,
                            int want_base64)
{
    if (!json_is_object(upstream_body))
        return NULL;
    if (model == NULL && (model = json_string_value(json_object_get(upstream_body, "model"))) == NULL)
        model = "";
    if (from == to) {
        if (to == GG_DIALECT_OPENAI && want_base64 && ep == GG_EP_EMBED) {
            json_t *copy = json_deep_copy(upstream_body);
            if (gg_dialect_embedding_encode_base64(copy) != 0) {
                json_decref(copy);
                return NULL;
            }
            return copy;
        }
        return json_incref(upstream_body);
    }
    return from == GG_DIALECT_OLLAMA ? resp_ollama_to_openai(ep, upstream_body, model, want_base64)
                                     : resp_openai_to_ollama(ep, upstream_body, model);
}

/* --- errors ------------------------------------------------------------------------------------ */

static json_t *str_or_null(const char *s)
{
    json_t *j = s != NULL ? json_string(s) : NULL;
    return j != NULL ? j : json_null();
}

char *gg_dialect_error_body(enum gg_dialect d, const char *message, const char *type, const char *code, const char *param,
                            size_t *len)
{
    json_t *msg = message != NULL ? json_string(message) : NULL, *body;
    if (msg == NULL) /* not UTF-8: say something rather than nothing */
        msg = json_string(message != NULL ? "error (message not valid UTF-8)" : "error");
    if (d == GG_DIALECT_OPENAI)
        body = json_pack("{s:{s:o,s:o,s:o,s:o}}", "error", "message", msg, "type", str_or_null(type), "param", str_or_null(param),
                         "code", str_or_null(code));
    else
        body = json_pack("{s:o}", "error", msg);
    char *s = body != NULL ? json_dumps(body, GG_JSON_DUMP_FLAGS) : NULL;
    if (s == NULL)
        abort();
    json_decref(body);
    *len = strlen(s);
    return s;
}
