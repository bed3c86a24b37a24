/* Request body reader: validates an OpenAI or Ollama request body in one pass, extracts what
 * admission, routing and accounting need, and builds a jansson tree only when an edit or a dialect
 * translation needs one. The jansson path (parse_tree) is the reference: the scanner hands it every
 * body it does not vouch for, so messages stay exactly jansson's. */
#include "gridgate/reqinfo.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/jscan.h"

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

int gg_reqinfo_parse_tree(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
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
    ri->body = body;
    ri->body_len = len;
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
    v = json_object_get(root, "encoding_format");
    ri->encoding_base64 = json_is_string(v) && strcmp(json_string_value(v), "base64") == 0;
    return 0;

Error:
    json_decref(root);
    memset(ri, 0, sizeof(*ri));
    ri->max_tokens = -1;
    return ret;
}

/* --- the one-pass scanner ------------------------------------------------------------------------ */

/* Top-level keys the checks look at. A key seen twice, or spelled with escapes, is left to jansson
 * (its last-one-wins and decoding rules are not worth copying). */
enum key {
    K_MODEL,
    K_NAME,
    K_STREAM,
    K_OPTIONS,
    K_STREAM_OPTIONS,
    K_USER,
    K_MAX_TOKENS,
    K_MAX_COMPLETION_TOKENS,
    K_TEMPERATURE,
    K_TOOLS,
    K_KEEP_ALIVE,
    K_IMAGES,
    K_SYSTEM,
    K_MESSAGES,
    K_PROMPT,
    K_SUFFIX,
    K_INPUT,
    K_ENCODING_FORMAT,
    K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "model",       "name",           "stream",     "options", "stream_options", "user",     "max_tokens", "max_completion_tokens",
    "temperature", "tools",          "keep_alive", "images",  "system",         "messages", "prompt",     "suffix",
    "input",       "encoding_format"};

#define BAIL 1

typedef struct field {
    int seen;
    gg_jval_t v;
    size_t count;      /* arrays: elements */
    struct estimate e; /* prompt/input arrays: what their items add to the estimate */
} field_t;

typedef struct scan {
    gg_jscan_t js;
    enum gg_dialect d;
    enum gg_endpoint ep;
    field_t f[K_COUNT];
    field_t num_predict, include_usage;
    struct estimate e;
    long msg_err_index; /* first message that fails its checks, -1 if none */
    const char *msg_err_fmt;
} scan_t;

static int key_of(const gg_jstr_t *k)
{
    for (int i = 0; i < K_COUNT; i++)
        if (k->len == strlen(key_names[i]) && memcmp(k->raw, key_names[i], k->len) == 0)
            return i;
    return -1;
}

/* Counts the elements of the array just opened, skipping them. */
static int count_elems(gg_jscan_t *js, size_t *n)
{
    gg_jval_t v;
    int r;
    *n = 0;
    while ((r = gg_jscan_elem(js)) == 1) {
        if (gg_jscan_value(js, &v) != 0 || gg_jscan_drop(js, &v) != 0)
            return -1;
        (*n)++;
    }
    return r;
}

/* An object just opened: reads only `want` (into *out), skips the rest. */
static int one_key(gg_jscan_t *js, const char *want, field_t *out)
{
    gg_jstr_t k;
    gg_jval_t v;
    int r;
    while ((r = gg_jscan_key(js, &k)) == 1) {
        if (k.escaped)
            return -1;
        if (gg_jscan_value(js, &v) != 0)
            return -1;
        if (gg_jstr_is(&k, want)) {
            if (out->seen)
                return -1;
            out->seen = 1;
            out->v = v;
        }
        if (gg_jscan_drop(js, &v) != 0)
            return -1;
    }
    return r;
}

/* OpenAI content parts: {"type":"text","text":...} counts its text, image_url parts a tile budget. */
static int scan_parts(scan_t *sc, struct estimate *e)
{
    gg_jscan_t *js = &sc->js;
    gg_jval_t v;
    gg_jstr_t k;
    int r;
    while ((r = gg_jscan_elem(js)) == 1) {
        if (gg_jscan_value(js, &v) != 0)
            return -1;
        if (v.type != GG_JOBJECT) {
            if (gg_jscan_drop(js, &v) != 0)
                return -1;
            continue;
        }
        field_t type = {0}, text = {0};
        while ((r = gg_jscan_key(js, &k)) == 1) {
            if (k.escaped || gg_jscan_value(js, &v) != 0)
                return -1;
            field_t *f = gg_jstr_is(&k, "type") ? &type : gg_jstr_is(&k, "text") ? &text : NULL;
            if (f != NULL) {
                if (f->seen)
                    return -1;
                f->seen = 1;
                f->v = v;
            }
            if (gg_jscan_drop(js, &v) != 0)
                return -1;
        }
        if (r < 0)
            return -1;
        if (type.seen && type.v.type == GG_JSTRING) {
            if (type.v.s.escaped)
                return -1;
            if (gg_jstr_is(&type.v.s, "text")) {
                if (text.seen && text.v.type == GG_JSTRING)
                    e->chars += text.v.s.cps;
            } else if (gg_jstr_is(&type.v.s, "image_url")) {
                e->extra += GG_REQINFO_IMAGE_TOKENS;
            }
        }
    }
    return r;
}

static void msg_error(scan_t *sc, long i, const char *fmt)
{
    if (sc->msg_err_index < 0) {
        sc->msg_err_index = i;
        sc->msg_err_fmt = fmt;
    }
}

/* One element of "messages", already read into *v: same checks and estimate as check_messages. */
static int scan_message(scan_t *sc, long i, gg_jval_t *v)
{
    gg_jscan_t *js = &sc->js;
    gg_jstr_t k;
    gg_jval_t kv;
    int r;
    if (v->type != GG_JOBJECT) {
        msg_error(sc, i, "'messages[%zu]' must be an object");
        return gg_jscan_drop(js, v);
    }
    field_t role = {0}, content = {0}, images = {0};
    struct estimate e = {0, 0};
    while ((r = gg_jscan_key(js, &k)) == 1) {
        if (k.escaped || gg_jscan_value(js, &kv) != 0)
            return -1;
        field_t *f = gg_jstr_is(&k, "role")      ? &role
                     : gg_jstr_is(&k, "content") ? &content
                     : gg_jstr_is(&k, "images")  ? &images
                                                 : NULL;
        if (f != NULL) {
            if (f->seen)
                return -1;
            f->seen = 1;
            f->v = kv;
        }
        if (f == &content && kv.type == GG_JARRAY && sc->d == GG_DIALECT_OPENAI) {
            if (scan_parts(sc, &e) != 0)
                return -1;
        } else if (f == &images && kv.type == GG_JARRAY) {
            if (count_elems(js, &images.count) != 0)
                return -1;
        } else if (gg_jscan_drop(js, &kv) != 0) {
            return -1;
        }
    }
    if (r < 0)
        return -1;
    enum gg_jtype ct = content.seen ? content.v.type : GG_JNULL;
    if (!role.seen || role.v.type != GG_JSTRING) {
        msg_error(sc, i, "'messages[%zu].role' must be a string");
    } else if (sc->d == GG_DIALECT_OLLAMA) {
        if (ct != GG_JSTRING && ct != GG_JNULL)
            msg_error(sc, i, "'messages[%zu].content' must be a string");
        else if (images.seen && images.v.type != GG_JARRAY && images.v.type != GG_JNULL)
            msg_error(sc, i, "'messages[%zu].images' must be an array");
        if (images.seen && images.v.type == GG_JARRAY)
            e.extra += (long)images.count * GG_REQINFO_IMAGE_TOKENS;
    } else if (ct != GG_JSTRING && ct != GG_JARRAY && ct != GG_JNULL) {
        msg_error(sc, i, "'messages[%zu].content' must be a string or an array");
    }
    if (ct == GG_JSTRING)
        e.chars += content.v.s.cps;
    sc->e.chars += e.chars;
    sc->e.extra += e.extra + 4;
    return 0;
}

/* A prompt or input array: strings count their text, token ids one each, arrays of ids their length. */
static int scan_input_array(scan_t *sc, field_t *f)
{
    gg_jscan_t *js = &sc->js;
    gg_jval_t v;
    int r;
    while ((r = gg_jscan_elem(js)) == 1) {
        if (gg_jscan_value(js, &v) != 0)
            return -1;
        f->count++;
        if (v.type == GG_JSTRING) {
            f->e.chars += v.s.cps;
        } else if (v.type == GG_JINT) {
            f->e.extra++;
        } else if (v.type == GG_JARRAY) {
            size_t n;
            if (count_elems(js, &n) != 0)
                return -1;
            f->e.extra += (long)n;
        } else if (gg_jscan_drop(js, &v) != 0) {
            return -1;
        }
    }
    return r;
}

static int scan_body(scan_t *sc)
{
    gg_jscan_t *js = &sc->js;
    gg_jstr_t k;
    gg_jval_t v;
    int r;
    if (gg_jscan_value(js, &v) != 0 || v.type != GG_JOBJECT)
        return -1;
    while ((r = gg_jscan_key(js, &k)) == 1) {
        if (k.escaped)
            return -1;
        int id = key_of(&k);
        if (gg_jscan_value(js, &v) != 0)
            return -1;
        if (id < 0) {
            if (gg_jscan_drop(js, &v) != 0)
                return -1;
            continue;
        }
        field_t *f = &sc->f[id];
        if (f->seen)
            return -1;
        f->seen = 1;
        f->v = v;
        if (v.type == GG_JOBJECT && id == K_OPTIONS)
            r = one_key(js, "num_predict", &sc->num_predict);
        else if (v.type == GG_JOBJECT && id == K_STREAM_OPTIONS)
            r = one_key(js, "include_usage", &sc->include_usage);
        else if (v.type == GG_JARRAY && id == K_MESSAGES && sc->ep == GG_EP_CHAT) {
            while ((r = gg_jscan_elem(js)) == 1) {
                gg_jval_t m;
                if (gg_jscan_value(js, &m) != 0 || scan_message(sc, (long)f->count, &m) != 0)
                    return -1;
                f->count++;
            }
        } else if (v.type == GG_JARRAY && (id == K_PROMPT || id == K_INPUT))
            r = scan_input_array(sc, f);
        else if (v.type == GG_JARRAY && id == K_IMAGES)
            r = count_elems(js, &f->count);
        else
            r = gg_jscan_drop(js, &v);
        if (r != 0)
            return -1;
    }
    if (r != 0)
        return -1;
    return gg_jscan_finish(js);
}

/* json_object_get(...) != NULL && !json_is_null(...) */
static int given(const field_t *f)
{
    return f->seen && f->v.type != GG_JNULL;
}

static enum gg_jtype type_of(const field_t *f)
{
    return f->seen ? f->v.type : GG_JNULL;
}

static int want_type(const scan_t *sc, enum key k, unsigned types, const char *what, char *err, size_t errlen)
{
    const field_t *f = &sc->f[k];
    if (!given(f) || (types & (1u << f->v.type)))
        return 0;
    return fail(err, errlen, "'%s' must be %s", key_names[k], what);
}

#define T(t) (1u << (t))

/* Copies a string the scanner read into the inline room; BAIL when it has escapes or no room. */
static int keep_name(gg_reqinfo_t *ri, size_t *used, const gg_jstr_t *s, const char **out)
{
    if (s->escaped || *used + s->len + 1 > sizeof(ri->inline_names))
        return BAIL;
    char *p = ri->inline_names + *used;
    memcpy(p, s->raw, s->len);
    p[s->len] = '\0';
    *used += s->len + 1;
    *out = p;
    return 0;
}

/* A JSON number token that is zero (0, -0, 0.0, 0e5 ...): the mantissa has no other digit than 0. */
static int number_is_zero(const gg_jstr_t *t)
{
    for (size_t i = 0; i < t->len; i++) {
        char c = t->raw[i];
        if (c == 'e' || c == 'E')
            break;
        if (c >= '1' && c <= '9')
            return 0;
    }
    return 1;
}

static int scan_keep_alive_zero(const field_t *f)
{
    if (!f->seen)
        return 0;
    if (f->v.type == GG_JINT || f->v.type == GG_JREAL)
        return number_is_zero(&f->v.s);
    if (f->v.type == GG_JSTRING) {
        const gg_jstr_t *s = &f->v.s;
        return s->len >= 1 && s->raw[0] == '0' &&
               (s->len == 1 || (s->len == 2 && (s->raw[1] == 's' || s->raw[1] == 'm' || s->raw[1] == 'h')));
    }
    return 0;
}

int gg_reqinfo_parse_scan(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
                          size_t errlen)
{
    scan_t sc;
    size_t used = 0;
    int ret;

    memset(ri, 0, sizeof(*ri));
    ri->max_tokens = -1;
    if (len == 0)
        return fail(err, errlen, "request body is empty; a JSON object is expected");
    memset(sc.f, 0, sizeof(sc.f));
    memset(&sc.num_predict, 0, sizeof(sc.num_predict));
    memset(&sc.include_usage, 0, sizeof(sc.include_usage));
    sc.d = d;
    sc.ep = ep;
    sc.e = (struct estimate){0, 0};
    sc.msg_err_index = -1;
    sc.msg_err_fmt = NULL;
    gg_jscan_init(&sc.js, body, len);
    if (scan_body(&sc) != 0)
        return BAIL;

    field_t *model = &sc.f[K_MODEL];
    if (!model->seen && d == GG_DIALECT_OLLAMA && ep == GG_EP_SHOW)
        model = &sc.f[K_NAME];
    if (!given(model))
        return fail(err, errlen, "'model' is required");
    if (model->v.type != GG_JSTRING)
        return fail(err, errlen, "'model' must be a string");
    if (model->v.s.len == 0)
        return fail(err, errlen, "'model' must not be empty");

    if ((ret = want_type(&sc, K_STREAM, T(GG_JTRUE) | T(GG_JFALSE), "a boolean", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_OPTIONS, T(GG_JOBJECT), "an object", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_STREAM_OPTIONS, T(GG_JOBJECT), "an object", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_USER, T(GG_JSTRING), "a string", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_MAX_TOKENS, T(GG_JINT), "an integer", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_MAX_COMPLETION_TOKENS, T(GG_JINT), "an integer", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_TEMPERATURE, T(GG_JINT) | T(GG_JREAL), "a number", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_TOOLS, T(GG_JARRAY), "an array", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_KEEP_ALIVE, T(GG_JSTRING) | T(GG_JINT) | T(GG_JREAL), "a duration string or a number", err,
                         errlen)) != 0 ||
        (ret = want_type(&sc, K_IMAGES, T(GG_JARRAY), "an array", err, errlen)) != 0 ||
        (ret = want_type(&sc, K_SYSTEM, T(GG_JSTRING), "a string", err, errlen)) != 0)
        return ret;

    const field_t *msgs = &sc.f[K_MESSAGES], *prompt = &sc.f[K_PROMPT], *images = &sc.f[K_IMAGES];
    int has_input = 0;
    switch (ep) {
    case GG_EP_CHAT:
        if (!given(msgs)) {
            if (d == GG_DIALECT_OPENAI)
                return fail(err, errlen, "'messages' is required");
        } else if (msgs->v.type != GG_JARRAY) {
            return fail(err, errlen, "'messages' must be an array");
        } else {
            if (msgs->count > GG_REQINFO_MAX_MESSAGES)
                return fail(err, errlen, "'messages' has %zu entries; at most %d are accepted", msgs->count,
                            GG_REQINFO_MAX_MESSAGES);
            if (sc.msg_err_index >= 0) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                if (errlen != 0)
                    snprintf(err, errlen, sc.msg_err_fmt, (size_t)sc.msg_err_index);
#pragma GCC diagnostic pop
                return -EINVAL;
            }
        }
        has_input = type_of(msgs) == GG_JARRAY && msgs->count != 0;
        break;
    case GG_EP_COMPLETION:
        if ((ret = want_type(&sc, K_PROMPT, T(GG_JSTRING) | T(GG_JARRAY), "a string or an array", err, errlen)) != 0)
            return ret;
        if (d == GG_DIALECT_OPENAI && !prompt->seen)
            return fail(err, errlen, "'prompt' is required");
        if (d == GG_DIALECT_OLLAMA && type_of(prompt) == GG_JARRAY)
            return fail(err, errlen, "'prompt' must be a string");
        if (type_of(prompt) == GG_JSTRING)
            sc.e.chars += prompt->v.s.cps;
        sc.e.chars += prompt->e.chars;
        sc.e.extra += prompt->e.extra;
        if (type_of(&sc.f[K_SYSTEM]) == GG_JSTRING)
            sc.e.chars += sc.f[K_SYSTEM].v.s.cps;
        if (type_of(&sc.f[K_SUFFIX]) == GG_JSTRING)
            sc.e.chars += sc.f[K_SUFFIX].v.s.cps;
        if (type_of(images) == GG_JARRAY)
            sc.e.extra += (long)images->count * GG_REQINFO_IMAGE_TOKENS;
        has_input = (type_of(prompt) == GG_JSTRING && prompt->v.s.len != 0) ||
                    (type_of(prompt) == GG_JARRAY && prompt->count != 0) || (type_of(images) == GG_JARRAY && images->count != 0);
        break;
    case GG_EP_EMBED:
        if (!sc.f[K_INPUT].seen && d == GG_DIALECT_OPENAI)
            return fail(err, errlen, "'input' is required");
        if ((ret = want_type(&sc, K_INPUT, T(GG_JSTRING) | T(GG_JARRAY), "a string or an array", err, errlen)) != 0)
            return ret;
        if (type_of(&sc.f[K_INPUT]) == GG_JSTRING)
            sc.e.chars += sc.f[K_INPUT].v.s.cps;
        sc.e.chars += sc.f[K_INPUT].e.chars;
        sc.e.extra += sc.f[K_INPUT].e.extra;
        break;
    case GG_EP_EMBED_LEGACY:
        if ((ret = want_type(&sc, K_PROMPT, T(GG_JSTRING), "a string", err, errlen)) != 0)
            return ret;
        if (type_of(prompt) == GG_JSTRING)
            sc.e.chars += prompt->v.s.cps;
        break;
    case GG_EP_SHOW:
        break;
    }
    const field_t *stream = &sc.f[K_STREAM], *np = NULL, *mt = NULL;
    if (type_of(stream) == GG_JTRUE || type_of(stream) == GG_JFALSE)
        ri->stream = stream->v.type == GG_JTRUE;
    else
        ri->stream = d == GG_DIALECT_OLLAMA && (ep == GG_EP_CHAT || ep == GG_EP_COMPLETION);
    if (ep != GG_EP_CHAT && ep != GG_EP_COMPLETION)
        ri->stream = 0;
    ri->include_usage = type_of(&sc.f[K_STREAM_OPTIONS]) == GG_JOBJECT && type_of(&sc.include_usage) == GG_JTRUE;

    if (d == GG_DIALECT_OPENAI) {
        mt = given(&sc.f[K_MAX_COMPLETION_TOKENS]) ? &sc.f[K_MAX_COMPLETION_TOKENS] : &sc.f[K_MAX_TOKENS];
        if (type_of(&sc.f[K_USER]) == GG_JSTRING && keep_name(ri, &used, &sc.f[K_USER].v.s, &ri->user) != 0)
            return BAIL;
    } else {
        if (type_of(&sc.f[K_OPTIONS]) == GG_JOBJECT)
            np = &sc.num_predict;
        if (np != NULL && given(np) && np->v.type != GG_JINT)
            return fail(err, errlen, "'options.num_predict' must be an integer");
        mt = np;
        if (ep == GG_EP_CHAT || ep == GG_EP_COMPLETION) {
            ri->is_load_unload = !has_input;
            if (!has_input && type_of(&sc.f[K_KEEP_ALIVE]) == GG_JSTRING && sc.f[K_KEEP_ALIVE].v.s.escaped)
                return BAIL;
            ri->is_unload = !has_input && scan_keep_alive_zero(&sc.f[K_KEEP_ALIVE]);
        }
    }
    if (mt != NULL && type_of(mt) == GG_JINT && mt->v.i >= 0)
        ri->max_tokens = (long)mt->v.i;
    const field_t *ef = &sc.f[K_ENCODING_FORMAT];
    if (type_of(ef) == GG_JSTRING) {
        if (ef->v.s.escaped)
            return BAIL;
        ri->encoding_base64 = gg_jstr_is(&ef->v.s, "base64");
    }
    if (keep_name(ri, &used, &model->v.s, &ri->model) != 0)
        return BAIL;
    ri->prompt_tokens_est = (long)((sc.e.chars + 3) / 4) + sc.e.extra;
    ri->body = body;
    ri->body_len = len;
    ri->dialect = d;
    ri->ep = ep;
    return 0;
}

int gg_reqinfo_parse(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
                     size_t errlen)
{
    int r = gg_reqinfo_parse_scan(ri, d, ep, body, len, err, errlen);
    if (r != 1)
        return r;
    return gg_reqinfo_parse_tree(ri, d, ep, body, len, err, errlen);
}

json_t *gg_reqinfo_root(gg_reqinfo_t *ri)
{
    if (ri->root == NULL && ri->body != NULL)
        ri->root = json_loadb(ri->body, ri->body_len, 0, NULL);
    return ri->root;
}

static const char *rebase(const char *p, const gg_reqinfo_t *from, gg_reqinfo_t *to)
{
    if (p >= from->inline_names && p < from->inline_names + sizeof(from->inline_names))
        return to->inline_names + (p - from->inline_names);
    return p;
}

void gg_reqinfo_move(gg_reqinfo_t *dst, gg_reqinfo_t *src)
{
    *dst = *src;
    dst->model = rebase(src->model, src, dst);
    dst->user = rebase(src->user, src, dst);
    memset(src, 0, sizeof(*src));
    src->max_tokens = -1;
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
    if (gg_reqinfo_root(ri) == NULL)
        return;
    json_t *s = json_string(model);
    if (s == NULL) /* not UTF-8: keep the name the client sent */
        return;
    json_object_set_new(ri->root, "model", s);
    ri->model = json_string_value(s);
}

int gg_reqinfo_force_include_usage(gg_reqinfo_t *ri)
{
    if (ri->dialect != GG_DIALECT_OPENAI || !ri->stream || ri->include_usage ||
        (ri->ep != GG_EP_CHAT && ri->ep != GG_EP_COMPLETION) || gg_reqinfo_root(ri) == NULL)
        return 0;
    json_t *so = json_object_get(ri->root, "stream_options");
    if (!json_is_object(so)) {
        so = json_object();
        json_object_set_new(ri->root, "stream_options", so);
    }
    json_object_set_new(so, "include_usage", json_true());
    return 1;
}

char *gg_reqinfo_serialize(gg_reqinfo_t *ri, size_t *len)
{
    char *s = json_dumps(gg_reqinfo_root(ri), GG_JSON_DUMP_FLAGS);
    if (s == NULL)
        abort();
    *len = strlen(s);
    return s;
}
