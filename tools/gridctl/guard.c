/* gridctl guard: the XDP ingress guard's deny and allow lists and its counters (admin /admin/v1/guard). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl guard { deny PREFIX [--for SECONDS] | allow PREFIX | remove PREFIX | list | stats | help }\n"
           "       PREFIX := ADDR | ADDR/LEN (IPv4 or IPv6)\n"
           "\n"
           "  deny     drop new connections (SYNs) from PREFIX at XDP, for SECONDS or until removed\n"
           "  allow    let PREFIX through the deny list and the per-source SYN rate\n"
           "  remove   take PREFIX off the deny and allow lists\n"
           "  list     the deny list (with time left) and the allow list\n"
           "  stats    packets the guard saw by reason, interfaces, and connections per worker\n");
    return EXIT_OK;
}

static int verb(const char *name, int argc, char **argv)
{
    const char *prefix = NULL;
    long seconds = -1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(name, "deny") == 0 && strcmp(argv[i], "--for") == 0 && i + 1 < argc) {
            char *end;
            seconds = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || seconds < 0 || seconds > 31536000)
                return fail(EXIT_USAGE, "--for: expected seconds 0..31536000, got '%s'", argv[i]);
        } else if (prefix == NULL && argv[i][0] != '-') {
            prefix = argv[i];
        } else {
            return fail(EXIT_USAGE, "guard %s: unexpected argument '%s' (see 'gridctl guard help')", name, argv[i]);
        }
    }
    if (prefix == NULL)
        return fail(EXIT_USAGE, "guard %s: PREFIX is required (see 'gridctl guard help')", name);
    json_t *body = json_pack("{s:s}", "prefix", prefix), *j;
    if (seconds > 0)
        json_object_set_new(body, "seconds", json_integer(seconds));
    char path[64];
    snprintf(path, sizeof(path), "/admin/v1/guard/%s", name);
    int rc = admin_call("POST", path, body, &j);
    json_decref(body);
    if (rc != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        if (strcmp(name, "deny") == 0 && seconds > 0)
            printf("denied %s for %ld s\n", prefix, seconds);
        else
            printf("%s %s\n", strcmp(name, "deny") == 0 ? "denied" : strcmp(name, "allow") == 0 ? "allowed" : "removed", prefix);
        json_decref(j);
    }
    return EXIT_OK;
}

static int deny(int argc, char **argv)
{
    return verb("deny", argc, argv);
}

static int allow(int argc, char **argv)
{
    return verb("allow", argc, argv);
}

static int remove_(int argc, char **argv)
{
    return verb("remove", argc, argv);
}

static int list(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/guard", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    if (!json_is_true(json_object_get(j, "enabled")))
        printf("guard not loaded (needs BPF)\n");
    static const char *const h[] = {"LIST", "PREFIX", "SECONDS LEFT"};
    static const int r[] = {0, 0, 1};
    struct table t;
    table_init(&t, 3, h, r);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "deny"), i, e)
    {
        char left[24] = "forever";
        json_t *s = json_object_get(e, "seconds_left");
        if (json_is_integer(s))
            snprintf(left, sizeof(left), "%lld", json_integer_value(s));
        table_add(&t, "deny", json_string_value(json_object_get(e, "prefix")), left);
    }
    json_array_foreach(json_object_get(j, "allow"), i, e)
        table_add(&t, "allow", json_string_value(json_object_get(e, "prefix")), "");
    table_print(&t);
    json_decref(j);
    return EXIT_OK;
}

static int stats(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/guard/stats", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    if (!json_is_true(json_object_get(j, "enabled"))) {
        printf("guard not loaded (needs BPF)\n");
        json_decref(j);
        return EXIT_OK;
    }
    size_t i;
    json_t *e;
    printf("xdp:");
    if (json_array_size(json_object_get(j, "interfaces")) == 0)
        printf(" not attached (bpf.xdp.interfaces is empty)");
    json_array_foreach(json_object_get(j, "interfaces"), i, e)
        printf(" %s (%s)", json_string_value(json_object_get(e, "name")), json_string_value(json_object_get(e, "mode")));
    printf("\nsyn rate per source: %g/s, burst %lld\nreuseport pick: %s\n", json_number_value(json_object_get(j, "syn_rate")),
           json_integer_value(json_object_get(j, "syn_burst")),
           json_is_true(json_object_get(j, "reuseport")) ? "least-loaded" : "kernel hash");
    static const char *const h[] = {"REASON", "PACKETS"};
    static const int r[] = {0, 1};
    struct table t;
    table_init(&t, 2, h, r);
    const char *k;
    json_object_foreach(json_object_get(j, "counters"), k, e)
    {
        char n[24];
        snprintf(n, sizeof(n), "%lld", json_integer_value(e));
        table_add(&t, k, n);
    }
    table_print(&t);
    printf("connections per worker:");
    json_array_foreach(json_object_get(j, "worker_connections"), i, e) printf(" %lld", json_integer_value(e));
    printf("\n");
    json_decref(j);
    return EXIT_OK;
}

static const struct cmd cmds[] = {{"deny", deny},   {"allow", allow}, {"remove", remove_}, {"list", list},
                                  {"stats", stats}, {"help", help},   {NULL, NULL}};

int do_guard(int argc, char **argv)
{
    if (argc == 0)
        return list(0, argv);
    return cmd_dispatch(argc, argv, cmds, help, "guard");
}
