/* gridctl model: the merged model table with where each model is served and loaded. */
#include <stdio.h>
#include <string.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl model { list | help }\n");
    return EXIT_OK;
}

static void join(json_t *a, char *out, size_t len)
{
    size_t i, o = 0;
    json_t *v;
    out[0] = '\0';
    json_array_foreach(a, i, v)
    {
        if (o + 2 >= len)
            break;
        o += snprintf(out + o, len - o, "%s%s", i ? "," : "", json_string_value(v));
    }
    if (o == 0)
        snprintf(out, len, "-");
}

static int list(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/models", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    static const char *const h[] = {"MODEL", "KINDS", "SERVED BY", "LOADED ON"};
    struct table t;
    table_init(&t, 4, h, NULL);
    size_t i;
    json_t *m;
    json_array_foreach(j, i, m)
    {
        char k[128], s[512], l[512];
        join(json_object_get(m, "kinds"), k, sizeof(k));
        join(json_object_get(m, "served_by"), s, sizeof(s));
        join(json_object_get(m, "loaded_on"), l, sizeof(l));
        table_add(&t, json_string_value(json_object_get(m, "name")), k, s, l);
    }
    table_print(&t);
    json_decref(j);
    return EXIT_OK;
}

static const struct cmd cmds[] = {{"list", list}, {"help", help}, {NULL, NULL}};

int do_model(int argc, char **argv)
{
    return cmd_dispatch(argc, argv, cmds, help, "model");
}
