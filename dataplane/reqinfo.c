/* Request body reader: parses and validates an OpenAI or Ollama request body once, extracts what
 * admission, routing and accounting need, and serializes it again after the gateway's edits. */
#include "gridgate/reqinfo.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Rejects deep nesting before jansson builds anything; also finds where it happens. */
static int check_depth(const char *s, size_t len, size_t *line, size_t *col)
{
    int depth = 0, in_str = 0;
    size_t ln = 1, lstart = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            break;
        case '{':
        case '[':
            if (++depth > GG_REQINFO_MAX_DEPTH) {
                *line = ln;
                *col = i - lstart + 1;
                return -1;
            }
            break;
        case '}':
        case ']':
            depth--;
            break;
        case '\n':
            ln++;
            lstart = i + 1;
            break;
        }
    }
    return 0;
}

/* Unicode code points of a UTF-8 string (jansson has validated it): the unit of the estimate. */
static size_t code_points(const char *s, size_t n)
{
    size_t cp = 0;
    for (size_t i = 0; i < n; i++)
        cp += ((unsigned char)s[i] & 0xc0) != 0x80;
    return cp;
}

struct estimate {
    size_t chars;
    long extra;
};

static void est_text(struct estimate *e, json_t *j)
{
    if (json_is_string(j))
        e->chars += code_points(json_string_value(j), json_string_length(j));
}

/* OpenAI content: a string or an array of parts (text / image_url / input_audio ...). */
static void est_openai_content(struct estimate *e, json_t *content)
{
    size_t i;
    json_t *part;
    if (json_is_string(content)) {
        est_text(e, content);
        return;
    }
    json_array_foreach(content, i, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (type != NULL && strcmp(type, "text") == 0)
            est_text(e, json_object_get(part, "text"));
        else if (type != NULL && strcmp(type, "image_url") == 0)
            e->extra += GG_REQINFO_IMAGE_TOKENS;
    }
}

/* Prompt input of completion/embedding calls: a string, strings, token ids, or arrays of token ids. */
static void est_input(struct estimate *e, json_t *in)
{
    size_t i;
    json_t *item;
    if (json_is_string(in)) {
        est_text(e, in);
        return;
    }
    json_array_foreach(in, i, item)
    {
        if (json_is_string(item))
            est_text(e, item);
        else if (json_is_integer(item))
            e->extra++;
        else if (json_is_array(item))
            e->extra += (long)json_array_size(item);
    }
}

static void est_images(struct estimate *e, json_t *images)
{
    if (json_is_array(images))
        e->extra += (long)json_array_size(images) * GG_REQINFO_IMAGE_TOKENS;
}

/* Type checks that name the field, so a client learns exactly what to fix. */
static int want(json_t *root, const char *key, int (*pred)(const json_t *), const char *what, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v) || pred(v))
        return 0;
    return fail(err, errlen, "'%s' must be %s", key, what);
}

static int is_object(const json_t *j)
{
    return json_is_object(j);
}
static int is_array(const json_t *j)
{
    return json_is_array(j);
}
static int is_string(const json_t *j)
{
    return json_is_string(j);
}
static int is_bool(const json_t *j)
{
    return json_is_boolean(j);
}
static int is_integer(const json_t *j)
{
    return json_is_integer(j);
}
static int is_number(const json_t *j)
{
    return json_is_number(j);
}
static int is_string_or_array(const json_t *j)
{
    return json_is_string(j) || json_is_array(j);
}
static int is_keep_alive(const json_t *j)
{
    return json_is_string(j) || json_is_number(j);
}

static int keep_alive_zero(json_t *ka)
{
    if (json_is_number(ka))
        return json_number_value(ka) == 0;
    if (json_is_string(ka)) {
        const char *s = json_string_value(ka);
        /* Go durations: "0", "0s", "0m", "0h" all mean unload now. */
        return s[0] == '0' && (s[1] == '\0' || (strchr("smh", s[1]) != NULL && s[2] == '\0'));
    }
    return 0;
}

static int check_messages(json_t *messages, enum gg_dialect d, struct estimate *e, char *err, size_t errlen)
{
    size_t i;
    json_t *m;
    if (json_array_size(messages) > GG_REQINFO_MAX_MESSAGES)
        return fail(err, errlen, "'messages' has %zu entries; at most %d are accepted", json_array_size(messages),
                    GG_REQINFO_MAX_MESSAGES);
    json_array_foreach(messages, i, m)
    {
        if (!json_is_object(m))
            return fail(err, errlen, "'messages[%zu]' must be an object", i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role))
            return fail(err, errlen, "'messages[%zu].role' must be a string", i);
        if (d == GG_DIALECT_OLLAMA) {
            if (content != NULL && !json_is_string(content) && !json_is_null(content))
                return fail(err, errlen, "'messages[%zu].content' must be a string", i);
            json_t *images = json_object_get(m, "images");
            if (images != NULL && !json_is_array(images) && !json_is_null(images))
                return fail(err, errlen, "'messages[%zu].images' must be an array", i);
            est_images(e, images);
            est_text(e, content);
        } else {
            if (content != NULL && !json_is_string(content) && !json_is_array(content) && !json_is_null(content))
                return fail(err, errlen, "'messages[%zu].content' must be a string or an array", i);
            est_openai_content(e, content);
        }
        e->extra += 4; /* role and separator tokens of the chat template */
    }
    return 0;
}

int gg_reqinfo_parse(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
                     size_t errlen)
{
    json_error_t jerr;
    struct estimate e = {0, 0};
    size_t line, col;
    json_t *root, *v;
    int ret;

    memset(ri, 0, sizeof(*ri));
    ri->max_tokens = -1;
    if (len == 0)
        return fail(err, errlen, "request body is empty; a JSON object is expected");
    if (check_depth(body, len, &line, &col) != 0)
        return fail(err, errlen, "invalid JSON at line %zu column %zu: nesting deeper than %d levels", line, col,
                    GG_REQINFO_MAX_DEPTH);
    if ((root = json_loadb(body, len, 0, &jerr)) == NULL) {
        if (json_error_code(&jerr) == json_error_invalid_utf8)
            return fail(err, errlen, "request body is not valid UTF-8 (line %d column %d)", jerr.line, jerr.column);
        return fail(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    }
    ri->root = root;
    ri->dialect = d;
    ri->ep = ep;
    if (!json_is_object(root)) {
        ret = fail(err, errlen, "request body must be a JSON object");
        goto Error;
    }

    v = json_object_get(root, "model");
    if (v == NULL && d == GG_DIALECT_OLLAMA && ep == GG_EP_SHOW)
        v = json_object_get(root, "name"); /* /api/show's older spelling */
    if (v == NULL || json_is_null(v)) {
        ret = fail(err, errlen, "'model' is required");
        goto Error;
    }
    if (!json_is_string(v)) {
        ret = fail(err, errlen, "'model' must be a string");
        goto Error;
    }
    if (json_string_length(v) == 0) {
        ret = fail(err, errlen, "'model' must not be empty");
        goto Error;
    }
    ri->model = json_string_value(v);

    if ((ret = want(root, "stream", is_bool, "a boolean", err, errlen)) != 0 ||
        (ret = want(root, "options", is_object, "an object", err, errlen)) != 0 ||
        (ret = want(root, "stream_options", is_object, "an object", err, errlen)) != 0 ||
        (ret = want(root, "user", is_string, "a string", err, errlen)) != 0 ||
        (ret = want(root, "max_tokens", is_integer, "an integer", err, errlen)) != 0 ||
        (ret = want(root, "max_completion_tokens", is_integer, "an integer", err, errlen)) != 0 ||
        (ret = want(root, "temperature", is_number, "a number", err, errlen)) != 0 ||
        (ret = want(root, "tools", is_array, "an array", err, errlen)) != 0 ||
        (ret = want(root, "keep_alive", is_keep_alive, "a duration string or a number", err, errlen)) != 0 ||
        (ret = want(root, "images", is_array, "an array", err, errlen)) != 0 ||
        (ret = want(root, "system", is_string, "a string", err, errlen)) != 0)
        goto Error;

    json_t *messages = json_object_get(root, "messages");
    int has_input = 0;
    switch (ep) {
    case GG_EP_CHAT:
        if (messages == NULL || json_is_null(messages)) {
            if (d == GG_DIALECT_OPENAI) {
                ret = fail(err, errlen, "'messages' is required");
                goto Error;
            }
        } else if (!json_is_array(messages)) {
            ret = fail(err, errlen, "'messages' must be an array");
            goto Error;
        } else if ((ret = check_messages(messages, d, &e, err, errlen)) != 0) {
            goto Error;
        }
        has_input = json_array_size(messages) != 0;
        break;
    case GG_EP_COMPLETION:
        if ((ret = want(root, "prompt", is_string_or_array, "a string or an array", err, errlen)) != 0)
            goto Error;
        if (d == GG_DIALECT_OPENAI && json_object_get(root, "prompt") == NULL) {
            ret = fail(err, errlen, "'prompt' is required");
            goto Error;
        }
        if (d == GG_DIALECT_OLLAMA && json_is_array(json_object_get(root, "prompt"))) {
            ret = fail(err, errlen, "'prompt' must be a string");
            goto Error;
        }
        v = json_object_get(root, "prompt");
        est_input(&e, v);
        est_text(&e, json_object_get(root, "system"));
        est_text(&e, json_object_get(root, "suffix"));
        est_images(&e, json_object_get(root, "images"));
        has_input = (json_is_string(v) && json_string_length(v) != 0) || json_array_size(v) != 0 ||
                    json_array_size(json_object_get(root, "images")) != 0;
        break;
    case GG_EP_EMBED:
        v = json_object_get(root, "input");
        if (v == NULL && d == GG_DIALECT_OPENAI) { /* Ollama loads the model when there is no input */
            ret = fail(err, errlen, "'input' is required");
            goto Error;
        }
        if ((ret = want(root, "input", is_string_or_array, "a string or an array", err, errlen)) != 0)
            goto Error;
        est_input(&e, v);
        break;
    case GG_EP_EMBED_LEGACY:
        if ((ret = want(root, "prompt", is_string, "a string", err, errlen)) != 0)
            goto Error;
        est_text(&e, json_object_get(root, "prompt"));
        break;
    case GG_EP_SHOW:
        break;
    }
    ri->prompt_tokens_est = (long)((e.chars + 3) / 4) + e.extra;

    if ((v = json_object_get(root, "stream")) != NULL && json_is_boolean(v))
        ri->stream = json_is_true(v);
    else
        ri->stream = d == GG_DIALECT_OLLAMA && (ep == GG_EP_CHAT || ep == GG_EP_COMPLETION);
    if (ep != GG_EP_CHAT && ep != GG_EP_COMPLETION)
        ri->stream = 0;
    ri->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));

    if (d == GG_DIALECT_OPENAI) {
        if ((v = json_object_get(root, "max_completion_tokens")) == NULL || json_is_null(v))
            v = json_object_get(root, "max_tokens");
        ri->user = json_string_value(json_object_get(root, "user"));
    } else {
        v = json_object_get(json_object_get(root, "options"), "num_predict");
        if (v != NULL && !json_is_null(v) && !json_is_integer(v)) {
            ret = fail(err, errlen, "'options.num_predict' must be an integer");
            goto Error;
        }
        if (ep == GG_EP_CHAT || ep == GG_EP_COMPLETION) {
            ri->is_load_unload = !has_input;
            ri->is_unload = !has_input && keep_alive_zero(json_object_get(root, "keep_alive"));
        }
    }
    /* Ollama's -1 (unbounded) and -2 (fill the context) are no limit the gateway can account for. */
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        ri->max_tokens = (long)json_integer_value(v);
    return 0;

Error:
    json_decref(root);
    memset(ri, 0, sizeof(*ri));
    ri->max_tokens = -1;
    return ret;
}

void gg_reqinfo_dispose(gg_reqinfo_t *ri)
{
    json_decref(ri->root);
    ri->root = NULL;
    ri->model = NULL;
    ri->user = NULL;
}

void gg_reqinfo_set_model(gg_reqinfo_t *ri, const char *model)
{
    json_t *s = json_string(model);
    if (s == NULL) /* not UTF-8: keep the name the client sent */
        return;
    json_object_set_new(ri->root, "model", s);
    ri->model = json_string_value(s);
}

int gg_reqinfo_force_include_usage(gg_reqinfo_t *ri)
{
    if (ri->dialect != GG_DIALECT_OPENAI || !ri->stream || ri->include_usage ||
        (ri->ep != GG_EP_CHAT && ri->ep != GG_EP_COMPLETION))
        return 0;
    json_t *so = json_object_get(ri->root, "stream_options");
    if (!json_is_object(so)) {
        so = json_object();
        json_object_set_new(ri->root, "stream_options", so);
    }
    json_object_set_new(so, "include_usage", json_true());
    return 1;
}

char *gg_reqinfo_serialize(const gg_reqinfo_t *ri, size_t *len)
{
    char *s = json_dumps(ri->root, GG_JSON_DUMP_FLAGS);
    if (s == NULL)
        abort();
    *len = strlen(s);
    return s;
}
