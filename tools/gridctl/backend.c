/* gridctl backend: list, show, add, remove, drain, undrain, weight, approve (admin API /admin/v1/backends). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl backend { list | show NAME | add URL [name NAME] [kind KIND] [weight N] [max_inflight N]\n"
           "                       | remove NAME | drain NAME | undrain NAME | weight NAME N | approve NAME | help }\n"
           "       KIND := { auto | ollama | vllm | sglang | llamacpp | lmstudio | mlx | comfyui }\n"
           "drain: no new requests go to NAME, requests in flight finish; approve admits a pending agent.\n");
    return EXIT_OK;
}

static void models_str(json_t *models, char *out, size_t len)
{
    size_t i, o = 0;
    json_t *m;
    out[0] = '\0';
    json_array_foreach(models, i, m)
    {
        if (o + 2 >= len)
            break;
        o += snprintf(out + o, len - o, "%s%s%s", i ? "," : "", json_string_value(json_object_get(m, "name")),
                      json_is_true(json_object_get(m, "loaded")) ? "*" : "");
        if (o >= len)
            break;
    }
}

static int list(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/backends", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    static const char *const h[] = {"NAME",     "STATE", "KIND",    "SOURCE", "WEIGHT",
                                    "INFLIGHT", "QUEUE", "TTFT_MS", "URL",    "MODELS (*loaded)"};
    static const int r[] = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0};
    struct table t;
    table_init(&t, 10, h, r);
    size_t i;
    json_t *b;
    json_array_foreach(j, i, b)
    {
        char w[16], in[32], q[16], tt[32], ms[512];
        snprintf(w, sizeof(w), "%lld", json_integer_value(json_object_get(b, "weight")));
        snprintf(in, sizeof(in), "%lld/%lld", json_integer_value(json_object_get(b, "inflight")),
                 json_integer_value(json_object_get(b, "capacity")));
        snprintf(q, sizeof(q), "%lld", json_integer_value(json_object_get(b, "engine_waiting")));
        snprintf(tt, sizeof(tt), "%.1f", json_number_value(json_object_get(b, "ttft_ms")));
        models_str(json_object_get(b, "models"), ms, sizeof(ms));
        table_add(&t, json_string_value(json_object_get(b, "name")), json_string_value(json_object_get(b, "state")),
                  json_string_value(json_object_get(b, "kind")), json_string_value(json_object_get(b, "source")), w, in, q, tt,
                  json_string_value(json_object_get(b, "url")), ms);
    }
    table_print(&t);
    json_decref(j);
    return EXIT_OK;
}

static int need_name(int argc, char **argv, const char *verb)
{
    if (argc != 1)
        return fail(EXIT_USAGE, "usage: gridctl backend %s NAME", verb);
    return EXIT_OK;
}

static void path_for(char *out, size_t len, const char *name, const char *verb)
{
    /* Names are HOST:PORT or plain words; percent-encode anything else that would break the path. */
    size_t o = snprintf(out, len, "/admin/v1/backends/");
    for (const char *p = name; *p && o + 4 < len; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~:@", *p))
            out[o++] = *p;
        else
            o += snprintf(out + o, len - o, "%%%02X", (unsigned char)*p);
    }
    out[o] = '\0';
    if (verb != NULL)
        snprintf(out + o, len - o, "/%s", verb);
}

static int show(int argc, char **argv)
{
    int rc = need_name(argc, argv, "show");
    if (rc != EXIT_OK)
        return rc;
    char path[512];
    path_for(path, sizeof(path), argv[0], NULL);
    json_t *j;
    if ((rc = admin_show(path, &j)) != EXIT_OK || j == NULL)
        return rc;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        char *s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%-22s %s\n", key, s);
        free(s);
    }
    json_decref(j);
    return EXIT_OK;
}

static int simple_verb(int argc, char **argv, const char *verb, const char *done)
{
    int rc = need_name(argc, argv, verb);
    if (rc != EXIT_OK)
        return rc;
    char path[512];
    path_for(path, sizeof(path), argv[0], verb);
    json_t *j;
    if ((rc = admin_call("POST", path, NULL, &j)) != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        printf("backend %s %s (state %s)\n", argv[0], done, json_string_value(json_object_get(j, "state")));
        json_decref(j);
    }
    return EXIT_OK;
}

static int drain(int argc, char **argv)
{
    return simple_verb(argc, argv, "drain", "draining: in-flight requests finish, new ones go elsewhere");
}
static int undrain(int argc, char **argv)
{
    return simple_verb(argc, argv, "undrain", "takes new requests again");
}
static int approve(int argc, char **argv)
{
    return simple_verb(argc, argv, "approve", "approved");
}

static int remove_(int argc, char **argv)
{
    int rc = need_name(argc, argv, "remove");
    if (rc != EXIT_OK)
        return rc;
    char path[512];
    path_for(path, sizeof(path), argv[0], NULL);
    json_t *j;
    if ((rc = admin_call("DELETE", path, NULL, &j)) != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        printf("backend %s removed\n", argv[0]);
        json_decref(j);
    }
    return EXIT_OK;
}

static int parse_uint(const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int add(int argc, char **argv)
{
    if (argc < 1 || argc % 2 == 0)
        return fail(EXIT_USAGE, "usage: gridctl backend add URL [name NAME] [kind KIND] [weight N] [max_inflight N]");
    json_t *body = json_pack("{s:s}", "url", argv[0]);
    for (int i = 1; i + 1 < argc; i += 2) {
        long n;
        if (is_prefix(argv[i], "name") || is_prefix(argv[i], "kind")) {
            json_object_set_new(body, argv[i][0] == 'n' ? "name" : "kind", json_string(argv[i + 1]));
        } else if (is_prefix(argv[i], "weight") || is_prefix(argv[i], "max_inflight")) {
            if (parse_uint(argv[i + 1], &n) != 0) {
                json_decref(body);
                return fail(EXIT_USAGE, "%s: '%s' is not a number", argv[i], argv[i + 1]);
            }
            json_object_set_new(body, argv[i][0] == 'w' ? "weight" : "max_inflight", json_integer(n));
        } else {
            json_decref(body);
            return fail(EXIT_USAGE, "backend add: unknown keyword '%s' (name, kind, weight, max_inflight)", argv[i]);
        }
    }
    json_t *j;
    int rc = admin_call("POST", "/admin/v1/backends", body, &j);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        printf("backend %s added (slot %lld); health checks bring it up\n", json_string_value(json_object_get(j, "name")),
               json_integer_value(json_object_get(j, "slot")));
        json_decref(j);
    }
    return EXIT_OK;
}

static int weight(int argc, char **argv)
{
    long n;
    if (argc != 2 || parse_uint(argv[1], &n) != 0)
        return fail(EXIT_USAGE, "usage: gridctl backend weight NAME N (1..1000)");
    char path[512];
    path_for(path, sizeof(path), argv[0], "weight");
    json_t *body = json_pack("{s:I}", "weight", (json_int_t)n), *j;
    int rc = admin_call("POST", path, body, &j);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        printf("backend %s weight %ld\n", argv[0], n);
        json_decref(j);
    }
    return EXIT_OK;
}

static const struct cmd cmds[] = {
    {"list", list},       {"show", show},     {"add", add},         {"remove", remove_}, {"drain", drain},
    {"undrain", undrain}, {"weight", weight}, {"approve", approve}, {"help", help},      {NULL, NULL},
};

int do_backend(int argc, char **argv)
{
    return cmd_dispatch(argc, argv, cmds, help, "backend");
}
