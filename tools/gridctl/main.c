/* gridctl: global options, the top-level command table, and the plumbing every noun shares (admin API calls
 * through the blocking client, JSON and table output, exit codes). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/admin.h"
#include "gridgate/httpc.h"
#include "gridgate/log.h"
#include "gridctl.h"

#define GRIDCTL_VERSION "0.1.0"

struct gridctl_opts opts;

int is_prefix(const char *arg, const char *full)
{
    size_t n = strlen(arg);
    return n > 0 && strncmp(arg, full, n) == 0;
}

int fail(int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (opts.json) {
        json_t *j = json_pack("{s:{s:s, s:i}}", "error", "message", msg, "exit_code", code);
        print_json(j);
    } else {
        fprintf(stderr, "gridctl: %s\n", msg);
    }
    return code;
}

void print_json(json_t *j)
{
    char *s = json_dumps(j, (opts.pretty ? JSON_INDENT(2) : JSON_COMPACT) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(6));
    puts(s ? s : "null");
    free(s);
    json_decref(j);
}

int cmd_dispatch(int argc, char **argv, const struct cmd *cmds, int (*help_fn)(int, char **), const char *noun)
{
    if (argc < 1 || strcmp(argv[0], "help") == 0)
        return help_fn(argc, argv);
    const struct cmd *hit = NULL;
    int n = 0;
    for (const struct cmd *c = cmds; c->name != NULL; c++) {
        if (strcmp(argv[0], c->name) == 0) {
            hit = c, n = 1;
            break;
        }
        if (is_prefix(argv[0], c->name))
            hit = c, n++;
    }
    if (n == 0) {
        return fail(EXIT_USAGE, "'%s' is not a command (see 'gridctl %s%shelp')", argv[0], noun, noun[0] ? " " : "");
    }
    if (n > 1)
        return fail(EXIT_USAGE, "'%s' is ambiguous (see 'gridctl %s%shelp')", argv[0], noun, noun[0] ? " " : "");
    return hit->fn(argc - 1, argv + 1);
}

int exit_for_status(int status)
{
    if (status >= 200 && status < 300)
        return EXIT_OK;
    if (status == 404)
        return EXIT_NOT_FOUND;
    if (status == 401 || status == 403)
        return EXIT_AUTH;
    if (status == 409)
        return EXIT_CONFLICT;
    return EXIT_FAIL;
}

int admin_show(const char *path, json_t **out)
{
    int rc = admin_call("GET", path, NULL, out);
    if (rc == EXIT_OK && opts.json) {
        print_json(*out);
        *out = NULL;
    }
    return rc;
}

int admin_call(const char *method, const char *path, json_t *body, json_t **out)
{
    char headers[600] = "Accept: application/json\r\n", *b = NULL;
    if (opts.token != NULL)
        snprintf(headers + strlen(headers), sizeof(headers) - strlen(headers), "Authorization: Bearer %s\r\n", opts.token);
    if (body != NULL) {
        b = json_dumps(body, JSON_COMPACT);
        strncat(headers, "Content-Type: application/json\r\n", sizeof(headers) - strlen(headers) - 1);
    }
    gg_httpc_response_t res = {0};
    int rc = gg_httpc_request(opts.admin, method, path, headers, b, b ? strlen(b) : 0, 10000, &res);
    free(b);
    if (out != NULL)
        *out = NULL;
    if (rc != 0)
        return fail(EXIT_UNREACHABLE, "cannot reach the admin API at %s: %s", opts.admin, gg_httpc_strerror(rc));
    json_error_t je;
    json_t *j = res.body_len ? json_loadb(res.body, res.body_len, 0, &je) : NULL;
    int code = exit_for_status(res.status);
    if (code != EXIT_OK) {
        const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        if (opts.json && j != NULL) {
            json_t *e = json_object_get(j, "error");
            if (json_is_object(e)) {
                json_object_set_new(e, "status", json_integer(res.status));
                json_object_set_new(e, "exit_code", json_integer(code));
            }
            print_json(j);
            j = NULL;
        } else {
            fail(code, "%s (HTTP %d)", msg ? msg : res.body, res.status);
        }
        json_decref(j);
        gg_httpc_response_free(&res);
        return code;
    }
    gg_httpc_response_free(&res);
    if (out != NULL)
        *out = j;
    else
        json_decref(j);
    return EXIT_OK;
}

/* --- tables -------------------------------------------------------------------------------------- */
void table_init(struct table *t, size_t ncols, const char *const *headers, const int *right)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->right = calloc(ncols, sizeof(int));
    t->cells = malloc(ncols * sizeof(char *));
    for (size_t c = 0; c < ncols; c++) {
        t->cells[c] = strdup(headers[c]);
        t->right[c] = right ? right[c] : 0;
    }
    t->nrows = 1;
}

void table_add(struct table *t, ...)
{
    va_list ap;
    va_start(ap, t);
    t->cells = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    for (size_t c = 0; c < t->ncols; c++) {
        const char *s = va_arg(ap, const char *);
        t->cells[t->nrows * t->ncols + c] = strdup(s ? s : "-");
    }
    t->nrows++;
    va_end(ap);
}

void table_print(struct table *t)
{
    size_t *w = calloc(t->ncols, sizeof(size_t));
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t l = strlen(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            int last = c + 1 == t->ncols;
            if (t->right[c])
                printf("%*s%s", (int)w[c], s, last ? "" : "  ");
            else
                printf("%-*s%s", last ? 0 : (int)w[c], s, last ? "" : "  ");
        }
        putchar('\n');
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(w);
}

/* --- top level ----------------------------------------------------------------------------------- */
static int do_help(int argc, char **argv)
{
    fprintf(argc >= 0 ? stdout : stderr,
            "Usage: gridctl [OPTIONS] OBJECT { COMMAND | help }\n"
            "       gridctl agent --engine URL --gateway URL --token T [--name N] [--kind K]\n"
            "       OBJECT := { backend | model | tenant | stats | top | map | health | config | agent | guard }\n"
            "       OPTIONS := { -j|--json | -p|--pretty | --admin HOST:PORT|unix:PATH | --token TOKEN | -V|--version }\n"
            "\n"
            "Objects and commands may be abbreviated to any unique prefix (gridctl b l = gridctl backend list).\n"
            "--admin defaults to $GRIDCTL_ADMIN, else %s; --token to $GRIDCTL_TOKEN.\n"
            "\n"
            "Exit codes: 0 ok, 1 refused or unhealthy, 2 usage, 3 not found, 4 unauthorized,\n"
            "            5 unreachable, 6 already exists / already done.\n",
            GG_ADMIN_DEFAULT);
    return EXIT_OK;
}

static const struct cmd top_cmds[] = {
    {"backend", do_backend}, {"model", do_model},   {"tenant", do_tenant}, {"stats", do_stats}, {"top", do_top},   {"map", do_map},
    {"health", do_health},   {"config", do_config}, {"agent", do_agent},   {"guard", do_guard}, {"help", do_help}, {NULL, NULL},
};

int main(int argc, char **argv)
{
    gg_log_prog = "gridctl";
    opts.admin = getenv("GRIDCTL_ADMIN") ? getenv("GRIDCTL_ADMIN") : GG_ADMIN_DEFAULT;
    opts.token = getenv("GRIDCTL_TOKEN");
    /* Global options come before the object; -j and -p are also taken anywhere after it. */
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-j") == 0 || strcmp(a, "--json") == 0)
            opts.json = 1;
        else if (strcmp(a, "-p") == 0 || strcmp(a, "--pretty") == 0)
            opts.json = opts.pretty = 1;
        else if ((strcmp(a, "--admin") == 0 || strcmp(a, "--token") == 0) && i + 1 < argc)
            *(a[2] == 'a' ? &opts.admin : &opts.token) = argv[++i];
        else if (strncmp(a, "--admin=", 8) == 0)
            opts.admin = a + 8;
        else if (strncmp(a, "--token=", 8) == 0)
            opts.token = a + 8;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return do_help(0, NULL);
        else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("gridctl %s\n", GRIDCTL_VERSION);
            return EXIT_OK;
        } else {
            do_help(-1, NULL);
            return fail(EXIT_USAGE, "unknown option '%s'", a);
        }
    }
    /* -j / -p after the object (not for the agent, whose flags are its own). */
    int n = 0;
    char **rest = argv + i;
    int rc_args = argc - i;
    if (rc_args > 0 && !is_prefix(rest[0], "agent")) {
        for (int k = 0; k < rc_args; k++) {
            if (strcmp(rest[k], "-j") == 0 || strcmp(rest[k], "--json") == 0)
                opts.json = 1;
            else if (strcmp(rest[k], "-p") == 0 || strcmp(rest[k], "--pretty") == 0)
                opts.json = opts.pretty = 1;
            else
                rest[n++] = rest[k];
        }
        rc_args = n;
    }
    if (rc_args == 0) {
        do_help(0, NULL);
        return EXIT_USAGE;
    }
    return cmd_dispatch(rc_args, rest, top_cmds, do_help, "");
}
