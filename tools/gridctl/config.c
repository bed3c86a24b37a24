/* gridctl config: show what the daemon runs with, reload its config file (validated first). */
#include <stdio.h>
#include <stdlib.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl config { show | reload | help }\n"
           "       reload validates the file and applies it live (like SIGHUP); errors name FILE:LINE: KEY\n");
    return EXIT_OK;
}

static int show(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/config", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        char *s = json_dumps(v, JSON_ENCODE_ANY | (json_is_object(v) ? JSON_INDENT(2) : JSON_COMPACT));
        printf("%-20s %s\n", key, s);
        free(s);
    }
    json_decref(j);
    return EXIT_OK;
}

static int reload(int argc, char **argv)
{
    json_t *j;
    int rc = admin_call("POST", "/admin/v1/config/reload", NULL, &j);
    if (rc != EXIT_OK)
        return rc;
    if (opts.json)
        print_json(j);
    else {
        printf("reloading %s\n", json_string_value(json_object_get(j, "path")));
        json_decref(j);
    }
    return EXIT_OK;
}

static const struct cmd cmds[] = {{"show", show}, {"reload", reload}, {"help", help}, {NULL, NULL}};

int do_config(int argc, char **argv)
{
    return cmd_dispatch(argc, argv, cmds, help, "config");
}
