/* SSE and NDJSON stream parsers, and the usage observer that turns event payloads into token counts.
 * The parsers copy nothing when an event arrives whole inside one slice; the observer decides most
 * chunks with one byte scan, reads the few that carry usage, a finish or an error (and whole
 * non-stream bodies) with the validating scanner, and builds a jansson tree only for what that scanner
 * does not vouch for. */
#include "gridgate/stream.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "gridgate/jscan.h"

/* An SSE line carries "data: " (or another field name) in front of the payload. */
#define SSE_LINE_SLACK 64

void gg_stream_init(gg_stream_parser_t *p, enum gg_stream_kind kind, size_t max_event)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->max_event = max_event;
}

void gg_stream_dispose(gg_stream_parser_t *p)
{
    gg_buf_free(&p->line);
    gg_buf_free(&p->data);
    p->ref = NULL;
}

static size_t line_limit(const gg_stream_parser_t *p)
{
    return p->kind == GG_STREAM_SSE ? p->max_event + SSE_LINE_SLACK : p->max_event;
}

static void sse_dispatch(gg_stream_parser_t *p, gg_stream_on_event cb, void *ctx)
{
    if (p->has_data) {
        if (p->ref != NULL)
            cb(ctx, p->ref, p->ref_len);
        else
            cb(ctx, p->data.base != NULL ? p->data.base : "", p->data.len);
    }
    p->has_data = 0;
    p->ref = NULL;
    gg_buf_reset(&p->data);
}

/* `stable`: the line lives in the caller's slice, so a lone data line may be reported from there. */
static int sse_line(gg_stream_parser_t *p, const char *s, size_t n, int stable, gg_stream_on_event cb, void *ctx)
{
    if (n == 0) {
        sse_dispatch(p, cb, ctx);
        return 0;
    }
    if (n < 4 || memcmp(s, "data", 4) != 0 || (n > 4 && s[4] != ':'))
        return 0; /* comments (":...") and fields other than data */
    const char *v = s + 4;
    size_t vn = n - 4;
    if (vn > 0) { /* skip the colon and one optional space */
        v++, vn--;
        if (vn > 0 && *v == ' ')
            v++, vn--;
    }
    if (!p->has_data) {
        p->has_data = 1;
        if (stable) {
            p->ref = v;
            p->ref_len = vn;
        } else {
            gg_buf_append(&p->data, v, vn);
        }
    } else {
        if (p->ref != NULL) {
            gg_buf_append(&p->data, p->ref, p->ref_len);
            p->ref = NULL;
        }
        gg_buf_append_char(&p->data, '\n');
        gg_buf_append(&p->data, v, vn);
    }
    if ((p->ref != NULL ? p->ref_len : p->data.len) > p->max_event)
        return -E2BIG;
    return 0;
}

static void ndjson_line(const char *s, size_t n, gg_stream_on_event cb, void *ctx)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n > 0)
        cb(ctx, s, n);
}

static int on_line(gg_stream_parser_t *p, const char *s, size_t n, int stable, gg_stream_on_event cb, void *ctx)
{
    if (n > line_limit(p))
        return -E2BIG;
    if (p->kind == GG_STREAM_SSE)
        return sse_line(p, s, n, stable, cb, ctx);
    ndjson_line(s, n, cb, ctx);
    return 0;
}

static const char *find_eol(const gg_stream_parser_t *p, const char *s, const char *end)
{
    const char *nl = memchr(s, '\n', end - s);
    if (p->kind == GG_STREAM_NDJSON)
        return nl;
    const char *cr = memchr(s, '\r', (nl != NULL ? nl : end) - s);
    return cr != NULL ? cr : nl;
}

int gg_stream_feed(gg_stream_parser_t *p, const char *buf, size_t len, gg_stream_on_event cb, void *ctx)
{
    const char *s = buf, *end = buf + len;
    int ret = 0;

    if (p->error)
        return p->error;
    if (len == 0)
        return 0;
    if (p->skip_lf && *s == '\n')
        s++;
    p->skip_lf = 0;
    while (s < end) {
        const char *eol = find_eol(p, s, end);
        if (eol == NULL) {
            if (p->line.len + (size_t)(end - s) > line_limit(p)) {
                ret = -E2BIG;
                goto Exit;
            }
            gg_buf_append(&p->line, s, end - s);
            break;
        }
        if (p->line.len != 0) {
            gg_buf_append(&p->line, s, eol - s);
            ret = on_line(p, p->line.base, p->line.len, 0, cb, ctx);
            gg_buf_reset(&p->line);
        } else {
            ret = on_line(p, s, eol - s, 1, cb, ctx);
        }
        if (ret != 0)
            goto Exit;
        if (*eol == '\r') {
            if (eol + 1 == end)
                p->skip_lf = 1;
            else if (eol[1] == '\n')
                eol++;
        }
        s = eol + 1;
    }
Exit:
    /* A data line still pointing into the caller's slice must be kept before the slice goes away. */
    if (p->ref != NULL) {
        gg_buf_append(&p->data, p->ref, p->ref_len);
        p->ref = NULL;
    }
    if (ret != 0)
        p->error = ret;
    return ret;
}

int gg_stream_finish(gg_stream_parser_t *p, gg_stream_on_event cb, void *ctx)
{
    if (p->error)
        return p->error;
    if (p->kind == GG_STREAM_NDJSON && p->line.len != 0)
        ndjson_line(p->line.base, p->line.len, cb, ctx);
    gg_buf_reset(&p->line);
    gg_buf_reset(&p->data);
    p->has_data = 0;
    p->skip_lf = 0;
    return 0;
}

/* --- usage observer ------------------------------------------------------------------------- */

void gg_usage_init(gg_usage_t *u)
{
    memset(u, 0, sizeof(*u));
    u->prompt_tokens = -1;
    u->completion_tokens = -1;
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int key_is(const char *k, size_t kn, const char *lit)
{
    size_t n = strlen(lit);
    return kn == n && memcmp(k, lit, n) == 0;
}

static int value_is(const char *v, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(end - v) >= n && memcmp(v, lit, n) == 0;
}

/* The closing quote of the string whose opening quote is at s[-1], or NULL. */
static const char *string_end(const char *s, const char *end)
{
    while (s < end) {
        const char *q = memchr(s, '"', end - s);
        if (q == NULL)
            return NULL;
        size_t bs = 0;
        for (const char *b = q; b > s && b[-1] == '\\'; b--)
            bs++;
        if (bs % 2 == 0)
            return q;
        s = q + 1;
    }
    return NULL;
}

/*
 * One pass over the bytes, tracking nesting depth and recognising object keys (a string followed by a
 * colon; inside strings quotes are escaped, so a key match is a real key). Sets *content when the
 * dialect's text field at its exact place (choices[].delta.content, choices[].text, message.content,
 * response) holds a non-empty string; returns 1 when the chunk needs a
 * full parse (usage, a finish, an error, or bytes the scan cannot follow).
 */
static int fast_scan(enum gg_dialect d, const char *s, size_t len, int *content)
{
    const char *p = s, *end = s + len;
    int depth = 0, in_parent = 0;

    *content = 0;
    while (p < end) {
        char c = *p;
        if (c == '{' || c == '[') {
            depth++, p++;
            continue;
        }
        if (c == '}' || c == ']') {
            depth--, p++;
            continue;
        }
        if (c != '"') {
            p++;
            continue;
        }
        const char *k = p + 1, *q = string_end(k, end);
        if (q == NULL)
            return 1;
        size_t kn = q - k;
        const char *v = q + 1;
        while (v < end && is_ws(*v))
            v++;
        if (v == end || *v != ':') {
            p = q + 1;
            continue;
        }
        v++;
        while (v < end && is_ws(*v))
            v++;
        int nonempty_str = v + 1 < end && v[0] == '"' && v[1] != '"';
        if (key_is(k, kn, "error"))
            return 1;
        /* An object at depth N+1 is the value of the last key seen at depth N. */
        if (d == GG_DIALECT_OPENAI && depth == 3)
            in_parent = key_is(k, kn, "delta");
        else if (d == GG_DIALECT_OLLAMA && depth == 1)
            in_parent = key_is(k, kn, "message");
        if (d == GG_DIALECT_OPENAI) {
            if ((depth == 4 && in_parent && key_is(k, kn, "content")) || (depth == 3 && key_is(k, kn, "text"))) {
                *content |= nonempty_str;
            } else if (key_is(k, kn, "usage") || key_is(k, kn, "finish_reason")) {
                if (!value_is(v, end, "null"))
                    return 1;
            }
        } else {
            if ((depth == 2 && in_parent && key_is(k, kn, "content")) || (depth == 1 && key_is(k, kn, "response"))) {
                *content |= nonempty_str;
            } else if (key_is(k, kn, "done")) {
                if (!value_is(v, end, "false"))
                    return 1;
            }
        }
        p = v;
    }
    return depth != 0;
}

static int nonempty_string(json_t *j)
{
    return json_is_string(j) && json_string_length(j) > 0;
}

static void copy_reason(gg_usage_t *u, json_t *j)
{
    if (json_is_string(j)) {
        strncpy(u->finish_reason, json_string_value(j), sizeof(u->finish_reason) - 1);
        u->finish_reason[sizeof(u->finish_reason) - 1] = '\0';
    }
}

static int observe_full(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len)
{
    json_t *root = json_loadb(data, len, 0, NULL);
    int ev = 0;

    if (!json_is_object(root)) {
        json_decref(root);
        return GG_USAGE_EV_INVALID;
    }
    if (json_object_get(root, "error") != NULL && !json_is_null(json_object_get(root, "error")))
        u->error = 1;
    if (d == GG_DIALECT_OPENAI) {
        json_t *choices = json_object_get(root, "choices"), *choice, *usage = json_object_get(root, "usage");
        size_t i;
        json_array_foreach(choices, i, choice)
        {
            json_t *delta = json_object_get(choice, "delta");
            if (nonempty_string(json_object_get(delta, "content")) || nonempty_string(json_object_get(choice, "text")))
                ev |= GG_USAGE_EV_CONTENT;
            copy_reason(u, json_object_get(choice, "finish_reason"));
        }
        if (json_is_object(usage)) {
            json_t *pt = json_object_get(usage, "prompt_tokens"), *ct = json_object_get(usage, "completion_tokens");
            if (json_is_integer(pt))
                u->prompt_tokens = (long)json_integer_value(pt);
            if (json_is_integer(ct))
                u->completion_tokens = (long)json_integer_value(ct);
            if (json_is_array(choices) && json_array_size(choices) == 0)
                ev |= GG_USAGE_EV_USAGE_ONLY;
        }
    } else {
        json_t *pe = json_object_get(root, "prompt_eval_count"), *ec = json_object_get(root, "eval_count");
        if (nonempty_string(json_object_get(json_object_get(root, "message"), "content")) ||
            nonempty_string(json_object_get(root, "response")))
            ev |= GG_USAGE_EV_CONTENT;
        if (json_is_integer(pe))
            u->prompt_tokens = (long)json_integer_value(pe);
        if (json_is_integer(ec))
            u->completion_tokens = (long)json_integer_value(ec);
        if (json_is_true(json_object_get(root, "done"))) {
            ev |= GG_USAGE_EV_DONE;
            u->done = 1;
            copy_reason(u, json_object_get(root, "done_reason"));
        }
    }
    json_decref(root);
    return ev;
}

/* --- the same reading without a tree: one validating pass (jscan) ------------------------------ */

typedef struct seen {
    int n;
    gg_jval_t v;
} seen_t;

/* Reads `key`'s value into one of the wanted slots; a wanted key seen twice is left to jansson. */
static int take(gg_jscan_t *js, const gg_jstr_t *k, const char *const *names, seen_t *slots, size_t n, seen_t **hit)
{
    gg_jval_t v;
    *hit = NULL;
    if (k->escaped || gg_jscan_value(js, &v) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (gg_jstr_is(k, names[i])) {
            if (slots[i].n++)
                return -1;
            slots[i].v = v;
            *hit = &slots[i];
            return 0;
        }
    }
    return gg_jscan_drop(js, &v);
}

/* An object just opened: fills the wanted slots (scalars; nested values are validated and skipped). */
static int read_object(gg_jscan_t *js, const char *const *names, seen_t *slots, size_t n)
{
    gg_jstr_t k;
    seen_t *hit;
    int r;
    while ((r = gg_jscan_key(js, &k)) == 1) {
        if (take(js, &k, names, slots, n, &hit) != 0)
            return -1;
        if (hit != NULL && gg_jscan_drop(js, &hit->v) != 0)
            return -1;
    }
    return r;
}

static int is_nonempty(const seen_t *s)
{
    return s->n && s->v.type == GG_JSTRING && s->v.s.len > 0;
}

/* A reason to copy: a string without escapes (escaped ones go to jansson for decoding). */
static int reason_ok(const seen_t *s)
{
    return !(s->n && s->v.type == GG_JSTRING && s->v.s.escaped);
}

static void set_reason(gg_usage_t *u, const gg_jstr_t *s)
{
    size_t n = s->len < sizeof(u->finish_reason) - 1 ? s->len : sizeof(u->finish_reason) - 1;
    memcpy(u->finish_reason, s->raw, n);
    memset(u->finish_reason + n, 0, sizeof(u->finish_reason) - n); /* as strncpy pads */
}

/* OpenAI: returns the event bits, or -1 to hand the payload to jansson. */
static int scan_openai(gg_usage_t *u, gg_jscan_t *js)
{
    static const char *const top[] = {"error", "choices", "usage"};
    static const char *const ch[] = {"delta", "text", "finish_reason"};
    static const char *const us[] = {"prompt_tokens", "completion_tokens"};
    seen_t t[3] = {{0}}, ut[2] = {{0}};
    gg_jstr_t k, reason = {0};
    seen_t *hit;
    int r, ev = 0, have_reason = 0;
    size_t nchoices = 0;
    while ((r = gg_jscan_key(js, &k)) == 1) {
        if (take(js, &k, top, t, 3, &hit) != 0)
            return -1;
        if (hit == &t[1] && hit->v.type == GG_JARRAY) {
            while ((r = gg_jscan_elem(js)) == 1) {
                gg_jval_t c;
                seen_t cs[3] = {{0}}, content = {0};
                nchoices++;
                if (gg_jscan_value(js, &c) != 0)
                    return -1;
                if (c.type != GG_JOBJECT) {
                    if (gg_jscan_drop(js, &c) != 0)
                        return -1;
                    continue;
                }
                while ((r = gg_jscan_key(js, &k)) == 1) {
                    if (take(js, &k, ch, cs, 3, &hit) != 0)
                        return -1;
                    if (hit == &cs[0] && hit->v.type == GG_JOBJECT) {
                        static const char *const dn[] = {"content"};
                        if (read_object(js, dn, &content, 1) != 0)
                            return -1;
                    } else if (hit != NULL && gg_jscan_drop(js, &hit->v) != 0) {
                        return -1;
                    }
                }
                if (r != 0 || !reason_ok(&cs[2]))
                    return -1;
                if (is_nonempty(&content) || is_nonempty(&cs[1]))
                    ev |= GG_USAGE_EV_CONTENT;
                if (cs[2].n && cs[2].v.type == GG_JSTRING) {
                    reason = cs[2].v.s;
                    have_reason = 1;
                }
            }
            if (r != 0)
                return -1;
        } else if (hit == &t[2] && hit->v.type == GG_JOBJECT) {
            if (read_object(js, us, ut, 2) != 0)
                return -1;
        } else if (hit != NULL && gg_jscan_drop(js, &hit->v) != 0) {
            return -1;
        }
    }
    if (r != 0 || gg_jscan_finish(js) != 0)
        return -1;
    if (t[0].n && t[0].v.type != GG_JNULL)
        u->error = 1;
    if (have_reason)
        set_reason(u, &reason);
    if (t[2].n && t[2].v.type == GG_JOBJECT) {
        if (ut[0].n && ut[0].v.type == GG_JINT)
            u->prompt_tokens = (long)ut[0].v.i;
        if (ut[1].n && ut[1].v.type == GG_JINT)
            u->completion_tokens = (long)ut[1].v.i;
        if (t[1].n && t[1].v.type == GG_JARRAY && nchoices == 0)
            ev |= GG_USAGE_EV_USAGE_ONLY;
    }
    return ev;
}

static int scan_ollama(gg_usage_t *u, gg_jscan_t *js)
{
    static const char *const top[] = {"error", "prompt_eval_count", "eval_count", "message", "response", "done", "done_reason"};
    static const char *const mn[] = {"content"};
    seen_t t[7] = {{0}}, content = {0};
    gg_jstr_t k;
    seen_t *hit;
    int r, ev = 0;
    while ((r = gg_jscan_key(js, &k)) == 1) {
        if (take(js, &k, top, t, 7, &hit) != 0)
            return -1;
        if (hit == &t[3] && hit->v.type == GG_JOBJECT) {
            if (read_object(js, mn, &content, 1) != 0)
                return -1;
        } else if (hit != NULL && gg_jscan_drop(js, &hit->v) != 0) {
            return -1;
        }
    }
    if (r != 0 || gg_jscan_finish(js) != 0 || !reason_ok(&t[6]))
        return -1;
    if (t[0].n && t[0].v.type != GG_JNULL)
        u->error = 1;
    if (is_nonempty(&content) || is_nonempty(&t[4]))
        ev |= GG_USAGE_EV_CONTENT;
    if (t[1].n && t[1].v.type == GG_JINT)
        u->prompt_tokens = (long)t[1].v.i;
    if (t[2].n && t[2].v.type == GG_JINT)
        u->completion_tokens = (long)t[2].v.i;
    if (t[5].n && t[5].v.type == GG_JTRUE) {
        ev |= GG_USAGE_EV_DONE;
        u->done = 1;
        if (t[6].n && t[6].v.type == GG_JSTRING)
            set_reason(u, &t[6].v.s);
    }
    return ev;
}

int gg_usage_observe_scan(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len)
{
    gg_jscan_t js;
    gg_jval_t v;
    gg_usage_t t = *u;
    gg_jscan_init(&js, data, len);
    if (gg_jscan_value(&js, &v) != 0 || v.type != GG_JOBJECT)
        return -1;
    int ev = d == GG_DIALECT_OPENAI ? scan_openai(&t, &js) : scan_ollama(&t, &js);
    if (ev >= 0)
        *u = t;
    return ev;
}

int gg_usage_observe_tree(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len)
{
    return observe_full(u, d, data, len);
}

/* A payload the byte scan could not decide: the validating scan, and jansson for what it leaves
 * (invalid JSON among it, which jansson then reports as such). */
static int observe_scan(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len)
{
    int ev = gg_usage_observe_scan(u, d, data, len);
    return ev >= 0 ? ev : observe_full(u, d, data, len);
}

int gg_usage_observe(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len)
{
    int content, ev;

    if (d == GG_DIALECT_OPENAI && len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        u->done = 1;
        return GG_USAGE_EV_DONE;
    }
    if (fast_scan(d, data, len, &content))
        ev = observe_scan(u, d, data, len);
    else
        ev = content ? GG_USAGE_EV_CONTENT : 0;
    if (ev & GG_USAGE_EV_CONTENT)
        u->content_events++;
    return ev;
}
