/* Parsers of the admin API's request bodies (see gridgate/admin_body.h): shape, types and bounds only. Whatever
 * needs the live registry or tenant table (a name already taken, a key owned by another tenant) is the
 * handler's check, after the parse. */
#include "gridgate/admin_body.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/backend.h"

static int fail(gg_body_err_t *err, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(gg_body_err_t *err, const char *field, const char *fmt, ...)
{
    va_list ap;
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static json_t *load_object(const char *body, size_t len, gg_body_err_t *err)
{
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", body ? len : 0, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        fail(err, "body", "body: expected a JSON object");
        return NULL;
    }
    return j;
}

/* An optional integer field within bounds: 1 present (and *out set), 0 absent, -EINVAL after filling err. */
static int int_field(json_t *o, const char *key, long long lo, long long hi, uint32_t *out, gg_body_err_t *err)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return fail(err, key, "%s: expected an integer %lld..%lld", key, lo, hi);
    *out = (uint32_t)json_integer_value(v);
    return 1;
}

/* The limits in o; adding also allows the tenant's name and keys. */
static int parse_limits(json_t *o, int adding, gg_admin_limits_t *l, gg_body_err_t *err)
{
    static const char *const known[] = {"weight",         "priority", "max_inflight",   "max_queue",
                                        "requests_per_s", "burst",    "tokens_per_min", NULL};
    static const struct {
        const char *key;
        unsigned bit;
        long long lo, hi;
        size_t off;
    } ints[] = {
        {"weight", GG_LIM_WEIGHT, 1, 10000, offsetof(gg_admin_limits_t, weight)},
        {"priority", GG_LIM_PRIORITY, 0, 9, offsetof(gg_admin_limits_t, priority)},
        {"max_inflight", GG_LIM_MAX_INFLIGHT, 0, 1000000, offsetof(gg_admin_limits_t, max_inflight)},
        {"max_queue", GG_LIM_MAX_QUEUE, 0, 1000000, offsetof(gg_admin_limits_t, max_queue)},
        {"burst", GG_LIM_BURST, 0, 1000000, offsetof(gg_admin_limits_t, burst)},
        {"tokens_per_min", GG_LIM_TPM, 0, 4000000000LL, offsetof(gg_admin_limits_t, tokens_per_min)},
    };
    const char *k;
    json_t *v;
    memset(l, 0, sizeof(*l));
    json_object_foreach(o, k, v)
    {
        int ok = adding && (strcmp(k, "name") == 0 || strcmp(k, "keys") == 0);
        for (int i = 0; known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        /* An empty key still needs a name in the answer's param and message. */
        const char *label = k[0] ? k : "\"\"";
        if (!ok)
            return fail(err, label,
                        "%s: unknown tenant setting (weight, priority, max_inflight, max_queue, requests_per_s, burst, "
                        "tokens_per_min)",
                        label);
    }
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        int r = int_field(o, ints[i].key, ints[i].lo, ints[i].hi, (uint32_t *)((char *)l + ints[i].off), err);
        if (r < 0)
            return r;
        if (r > 0)
            l->has |= ints[i].bit;
    }
    json_t *jr = json_object_get(o, "requests_per_s");
    if (jr != NULL) {
        if (!json_is_number(jr) || !(json_number_value(jr) >= 0 && json_number_value(jr) <= 1e6))
            return fail(err, "requests_per_s", "requests_per_s: expected a number 0..1000000 (0: unlimited)");
        l->requests_per_s = json_number_value(jr);
        l->has |= GG_LIM_RPS;
    }
    return 0;
}

/* A key as it may be added: a non-empty string, and "sha256:" keys with their 64 hex digits. */
static int key_shape(json_t *k, const char *field, gg_body_err_t *err)
{
    const char *s = json_string_value(k);
    if (s == NULL || s[0] == '\0')
        return fail(err, field, "%s: expected a non-empty string (the key, or \"sha256:\" + 64 hex digits)", field);
    if (strlen(s) != json_string_length(k))
        return fail(err, field, "%s: a key cannot contain NUL", field);
    if (strncmp(s, "sha256:", 7) == 0 && strlen(s) != 71)
        return fail(err, field, "%s: \"sha256:\" needs 64 hex digits", field);
    return 0;
}

int gg_admin_parse_backend_add(const char *body, size_t len, gg_admin_backend_add_t *out, gg_body_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_t *o = load_object(body, len, err);
    if (o == NULL)
        return -EINVAL;
    json_t *jurl = json_object_get(o, "url"), *jname = json_object_get(o, "name"), *jkind = json_object_get(o, "kind");
    const char *url = json_string_value(jurl), *name = json_string_value(jname);
    int kind = GG_ENGINE_UNKNOWN, rc = 0;
    uint32_t weight = 1, maxin = 0;
    if (url == NULL || strncmp(url, "http://", 7) != 0 || strlen(url) != json_string_length(jurl))
        rc = fail(err, "url", "url: required, http://HOST:PORT[/prefix]");
    else if (jname != NULL && (name == NULL || name[0] == '\0' || strlen(name) >= sizeof(gg_backends[0].name)))
        rc = fail(err, "name", "name: expected a non-empty string under %zu bytes", sizeof(gg_backends[0].name));
    else if (jkind != NULL && (!json_is_string(jkind) || (kind = gg_engine_kind_parse(json_string_value(jkind))) < 0))
        rc = fail(err, "kind", "kind: expected one of auto|ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui");
    else if (int_field(o, "weight", 1, 1000, &weight, err) < 0 || int_field(o, "max_inflight", 0, 100000, &maxin, err) < 0)
        rc = -EINVAL;
    if (rc != 0) {
        json_decref(o);
        return rc;
    }
    *out = (gg_admin_backend_add_t){.doc = o, .url = url, .name = name, .kind = kind, .weight = weight, .max_inflight = maxin};
    return 0;
}

void gg_admin_backend_add_free(gg_admin_backend_add_t *b)
{
    json_decref(b->doc);
    memset(b, 0, sizeof(*b));
}

int gg_admin_parse_weight(const char *body, size_t len, uint32_t *weight, gg_body_err_t *err)
{
    json_t *o = load_object(body, len, err);
    if (o == NULL)
        return -EINVAL;
    int r = int_field(o, "weight", 1, 1000, weight, err);
    json_decref(o);
    if (r == 0)
        return fail(err, "weight", "weight: required, an integer 1..1000");
    return r < 0 ? r : 0;
}

int gg_admin_parse_tenant_add(const char *body, size_t len, gg_admin_tenant_add_t *out, gg_body_err_t *err)
{
    memset(out, 0, sizeof(*out));
    json_t *o = load_object(body, len, err);
    if (o == NULL)
        return -EINVAL;
    out->doc = o;
    json_t *keys = json_object_get(o, "keys"), *k;
    size_t i;
    char field[32];
    out->name = json_string_value(json_object_get(o, "name"));
    if (out->name == NULL) {
        fail(err, "name", "name: required, a string");
        goto bad;
    }
    if (keys != NULL && !json_is_array(keys)) {
        fail(err, "keys", "keys: expected an array of strings");
        goto bad;
    }
    out->keys = calloc(json_array_size(keys) + 1, sizeof(*out->keys));
    json_array_foreach(keys, i, k)
    {
        snprintf(field, sizeof(field), "keys[%zu]", i);
        if (key_shape(k, field, err) != 0)
            goto bad;
        out->keys[out->n_keys++] = json_string_value(k);
    }
    if (parse_limits(o, 1, &out->limits, err) != 0)
        goto bad;
    return 0;
bad:
    gg_admin_tenant_add_free(out);
    return -EINVAL;
}

void gg_admin_tenant_add_free(gg_admin_tenant_add_t *t)
{
    free(t->keys);
    json_decref(t->doc);
    memset(t, 0, sizeof(*t));
}

int gg_admin_parse_tenant_update(const char *body, size_t len, gg_admin_limits_t *out, gg_body_err_t *err)
{
    json_t *o = load_object(body, len, err);
    if (o == NULL)
        return -EINVAL;
    int rc = parse_limits(o, 0, out, err);
    json_decref(o);
    return rc;
}

int gg_admin_parse_tenant_key(const char *body, size_t len, int adding, char *out, size_t outlen, gg_body_err_t *err)
{
    json_t *o = load_object(body, len, err);
    if (o == NULL)
        return -EINVAL;
    json_t *k = json_object_get(o, "key");
    int rc = 0;
    if (adding)
        rc = key_shape(k, "key", err);
    else if (!json_is_string(k) || strlen(json_string_value(k)) != json_string_length(k))
        rc = fail(err, "key", "key: expected the key as a string (or \"sha256:\" + 64 hex digits)");
    if (rc == 0 && json_string_length(k) >= outlen)
        rc = fail(err, "key", "key: at most %zu bytes", outlen - 1);
    if (rc == 0)
        memcpy(out, json_string_value(k), json_string_length(k) + 1);
    json_decref(o);
    return rc;
}

int gg_admin_parse_guard(const char *body, size_t len, int with_seconds, char *prefix, size_t prefixlen, uint32_t *seconds,
                         gg_body_err_t *err)
{
    json_t *o = load_object(body, len, err);
    if (o == NULL)
        return -EINVAL;
    json_t *p = json_object_get(o, "prefix");
    int rc = 0;
    *seconds = 0;
    if (!json_is_string(p) || strlen(json_string_value(p)) != json_string_length(p))
        rc = fail(err, "prefix", "prefix: required, a string ADDR or ADDR/LEN");
    else if (json_string_length(p) >= prefixlen)
        rc = fail(err, "prefix", "prefix: at most %zu bytes", prefixlen - 1);
    else if (with_seconds && int_field(o, "seconds", 0, 31536000, seconds, err) < 0)
        rc = -EINVAL;
    if (rc == 0)
        memcpy(prefix, json_string_value(p), json_string_length(p) + 1);
    json_decref(o);
    return rc;
}
