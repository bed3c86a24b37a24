/* gridctl health: backends up / total; exits 1 when no backend is up. */
#include <stdio.h>
#include <string.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl health [ show | help ]\n       exit code 0 when at least one backend is up, else 1\n");
    return EXIT_OK;
}

static int show(int argc, char **argv)
{
    json_t *j;
    int rc = admin_call("GET", "/admin/v1/health", NULL, &j);
    if (rc != EXIT_OK)
        return rc;
    int ok = strcmp(json_string_value(json_object_get(j, "status")), "ok") == 0;
    if (opts.json) {
        print_json(j);
        return ok ? EXIT_OK : EXIT_FAIL;
    }
    printf("status %s: %lld of %lld backends up\n", json_string_value(json_object_get(j, "status")),
           json_integer_value(json_object_get(j, "backends_up")), json_integer_value(json_object_get(j, "backends_total")));
    static const char *const h[] = {"BACKEND", "STATE", "KIND", "FAILED PROBES"};
    static const int r[] = {0, 0, 0, 1};
    struct table t;
    table_init(&t, 4, h, r);
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(j, "backends"), i, b)
    {
        char f[16];
        snprintf(f, sizeof(f), "%lld", json_integer_value(json_object_get(b, "consecutive_failures")));
        table_add(&t, json_string_value(json_object_get(b, "name")), json_string_value(json_object_get(b, "state")),
                  json_string_value(json_object_get(b, "kind")), f);
    }
    table_print(&t);
    json_decref(j);
    return ok ? EXIT_OK : EXIT_FAIL;
}

static const struct cmd cmds[] = {{"show", show}, {"help", help}, {NULL, NULL}};

int do_health(int argc, char **argv)
{
    if (argc == 0)
        return show(0, argv);
    return cmd_dispatch(argc, argv, cmds, help, "health");
}
