/* gridctl: shared plumbing of the nouns (command tables with prefix matching, global options, the admin API
 * call, JSON/table output and exit codes). Each noun lives in its own file with its own table and help. */
#ifndef GRIDCTL_H
#define GRIDCTL_H
#include <jansson.h>
#include <stddef.h>

/* Exit codes (documented in `gridctl help`). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* the daemon refused (400, 5xx) or the answer says "not healthy" */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_NOT_FOUND = 3,   /* no such backend/tenant/map (404, or not pinned) */
    EXIT_AUTH = 4,        /* token missing or wrong (401/403) */
    EXIT_UNREACHABLE = 5, /* the admin API (or gateway) cannot be reached */
    EXIT_CONFLICT = 6,    /* already exists / already done (409) */
};

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
};

struct gridctl_opts {
    int json, pretty;
    const char *admin, *token;
};
extern struct gridctl_opts opts;

/** Runs argv[0] from the table (exact name, else a unique prefix); "help" or nothing runs help_fn. */
int cmd_dispatch(int argc, char **argv, const struct cmd *cmds, int (*help_fn)(int, char **), const char *noun);
/** Prints an error (JSON {"error": {...}} on stdout with -j, else "gridctl: ..." on stderr); returns code. */
int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Prints a JSON value in the -j/-p style and drops the reference. */
void print_json(json_t *j);

/**
 * Calls the admin API: method + path (+ JSON body or NULL). On a 2xx answer returns EXIT_OK with *out set
 * (new reference, may be NULL for an empty body); otherwise prints the error and returns its exit code.
 */
int admin_call(const char *method, const char *path, json_t *body, json_t **out);
/**
 * GETs an admin resource to show it: with -j prints its JSON and leaves *out NULL; otherwise sets *out (new reference)
 * for the caller's text form. Returns EXIT_OK, or the failed call's exit code.
 */
int admin_show(const char *path, json_t **out);
/** Maps an HTTP status to an exit code. */
int exit_for_status(int status);

/* A plain text table: add rows of strings, then print with aligned columns. */
struct table {
    size_t ncols, nrows;
    char **cells; /* nrows * ncols */
    int *right;   /* per column: right-align */
};
void table_init(struct table *t, size_t ncols, const char *const *headers, const int *right);
void table_add(struct table *t, ...); /* ncols const char * */
void table_print(struct table *t);

/** Whether arg is a non-empty prefix of full (bpftool's matching). */
int is_prefix(const char *arg, const char *full);

int do_backend(int argc, char **argv);
int do_model(int argc, char **argv);
int do_tenant(int argc, char **argv);
int do_stats(int argc, char **argv);
int do_top(int argc, char **argv);
int do_map(int argc, char **argv);
int do_health(int argc, char **argv);
int do_config(int argc, char **argv);
int do_agent(int argc, char **argv);
int do_guard(int argc, char **argv);
#endif
