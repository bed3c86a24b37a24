/* gridctl tenant: tenants with their keys, limits and live counters; limit updates apply live. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl tenant { list | show NAME | add NAME [LIMIT VALUE]... | update NAME [LIMIT VALUE]...\n"
           "                      | key add NAME KEY | key remove NAME KEY | help }\n"
           "       LIMIT := { weight | priority | max_inflight | max_queue | requests_per_s | burst | tokens_per_min }\n");
    return EXIT_OK;
}

static const char *num(char *buf, size_t len, json_t *v)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", json_integer_value(v));
    else if (json_is_number(v))
        snprintf(buf, len, "%g", json_number_value(v));
    else
        snprintf(buf, len, "-");
    return buf;
}

static int list(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/tenants", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    static const char *const h[] = {"TENANT",     "KEYS",         "PRIORITY", "WEIGHT", "REQ/S LIMIT",
                                    "TOKENS/MIN", "MAX_INFLIGHT", "INFLIGHT", "QUEUED"};
    static const int r[] = {0, 1, 1, 1, 1, 1, 1, 1, 1};
    struct table t;
    table_init(&t, 9, h, r);
    size_t i;
    json_t *e;
    json_array_foreach(j, i, e)
    {
        char c[9][32];
        table_add(&t, json_string_value(json_object_get(e, "name")), num(c[1], 32, json_object_get(e, "keys")),
                  num(c[2], 32, json_object_get(e, "priority")), num(c[3], 32, json_object_get(e, "weight")),
                  num(c[4], 32, json_object_get(e, "requests_per_s_limit")),
                  num(c[5], 32, json_object_get(e, "tokens_per_min_limit")), num(c[6], 32, json_object_get(e, "max_inflight")),
                  num(c[7], 32, json_object_get(e, "inflight")), num(c[8], 32, json_object_get(e, "queued")));
    }
    table_print(&t);
    json_decref(j);
    return EXIT_OK;
}

static int show(int argc, char **argv)
{
    if (argc != 1)
        return fail(EXIT_USAGE, "usage: gridctl tenant show NAME");
    json_t *j;
    int rc = admin_call("GET", "/admin/v1/tenants", NULL, &j);
    if (rc != EXIT_OK)
        return rc;
    size_t i;
    json_t *e, *found = NULL;
    json_array_foreach(j, i, e) if (strcmp(json_string_value(json_object_get(e, "name")), argv[0]) == 0) found = json_incref(e);
    json_decref(j);
    if (found == NULL)
        return fail(EXIT_NOT_FOUND, "tenant %s not found", argv[0]);
    if (opts.json) {
        print_json(found);
        return EXIT_OK;
    }
    const char *k;
    json_t *v;
    json_object_foreach(found, k, v)
    {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        printf("%-28s %s\n", k, s);
        free(s);
    }
    json_decref(found);
    return EXIT_OK;
}

/* "LIMIT VALUE..." into a JSON object; numbers stay numbers. */
static int limits(int argc, char **argv, json_t *body)
{
    static const char *const keys[] = {"weight",         "priority", "max_inflight",   "max_queue",
                                       "requests_per_s", "burst",    "tokens_per_min", NULL};
    if (argc % 2 != 0)
        return fail(EXIT_USAGE, "expected LIMIT VALUE pairs (see 'gridctl tenant help')");
    for (int i = 0; i < argc; i += 2) {
        const char *key = NULL;
        for (int k = 0; keys[k]; k++)
            if (strcmp(argv[i], keys[k]) == 0 || (key == NULL && is_prefix(argv[i], keys[k])))
                key = keys[k];
        char *end;
        double v = strtod(argv[i + 1], &end);
        if (key == NULL)
            return fail(EXIT_USAGE, "unknown limit '%s' (see 'gridctl tenant help')", argv[i]);
        if (argv[i + 1][0] == '\0' || *end != '\0')
            return fail(EXIT_USAGE, "%s: '%s' is not a number", key, argv[i + 1]);
        json_object_set_new(body, key, v == (json_int_t)v ? json_integer((json_int_t)v) : json_real(v));
    }
    return EXIT_OK;
}

static int send(const char *method, const char *path, json_t *body, const char *done)
{
    json_t *j;
    int rc = admin_call(method, path, body, &j);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        puts(done);
        json_decref(j);
    }
    return EXIT_OK;
}

static int add(int argc, char **argv)
{
    if (argc < 1)
        return fail(EXIT_USAGE, "usage: gridctl tenant add NAME [LIMIT VALUE]...");
    json_t *body = json_pack("{s:s}", "name", argv[0]);
    int rc = limits(argc - 1, argv + 1, body);
    if (rc != EXIT_OK) {
        json_decref(body);
        return rc;
    }
    return send("POST", "/admin/v1/tenants", body, "tenant added");
}

static int update(int argc, char **argv)
{
    if (argc < 3)
        return fail(EXIT_USAGE, "usage: gridctl tenant update NAME LIMIT VALUE [LIMIT VALUE]...");
    json_t *body = json_object();
    int rc = limits(argc - 1, argv + 1, body);
    if (rc != EXIT_OK) {
        json_decref(body);
        return rc;
    }
    char path[256];
    snprintf(path, sizeof(path), "/admin/v1/tenants/%s", argv[0]);
    return send("POST", path, body, "tenant updated (live)");
}

static int key(int argc, char **argv)
{
    if (argc != 3 || (!is_prefix(argv[0], "add") && !is_prefix(argv[0], "remove")))
        return fail(EXIT_USAGE, "usage: gridctl tenant key { add | remove } NAME KEY");
    char path[256];
    int adding = argv[0][0] == 'a';
    snprintf(path, sizeof(path), "/admin/v1/tenants/%s/keys", argv[1]);
    return send(adding ? "POST" : "DELETE", path, json_pack("{s:s}", "key", argv[2]), adding ? "key added" : "key removed");
}

static const struct cmd cmds[] = {{"list", list}, {"show", show}, {"add", add}, {"update", update},
                                  {"key", key},   {"help", help}, {NULL, NULL}};

int do_tenant(int argc, char **argv)
{
    return cmd_dispatch(argc, argv, cmds, help, "tenant");
}
