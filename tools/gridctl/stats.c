/* gridctl stats / top: per-backend and per-tenant rates, queue depths and TTFT, once or refreshed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gridctl.h"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl stats [ show | watch [interval SECONDS] [count N] | help ]\n"
           "       gridctl stats --watch      same as 'stats watch'\n"
           "       gridctl top [interval SECONDS] [count N]\n"
           "watch refreshes the tables every interval (default 1 s) until interrupted or N refreshes;\n"
           "with -j it prints one JSON object per refresh.\n");
    return EXIT_OK;
}

static const char *num(char *buf, size_t len, json_t *v, int decimals)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", json_integer_value(v));
    else if (json_is_number(v))
        snprintf(buf, len, "%.*f", decimals, json_number_value(v));
    else
        snprintf(buf, len, "-");
    return buf;
}

static double metric(json_t *t, const char *family)
{
    return json_number_value(json_object_get(json_object_get(t, "metrics"), family));
}

static void print_tables(json_t *j)
{
    char a[32], b[32];
    printf("uptime %s s   in flight %s   requests/s %s   tokens/s %s\n\n", num(a, sizeof(a), json_object_get(j, "uptime_s"), 0),
           num(b, sizeof(b), json_object_get(j, "inflight"), 0), num((char[32]){0}, 32, json_object_get(j, "requests_per_s"), 1),
           num((char[32]){0}, 32, json_object_get(j, "tokens_per_s"), 1));
    static const char *const bh[] = {"BACKEND", "STATE", "INFLIGHT", "QUEUE",    "ENGINE_QUEUE",
                                     "REQ/S",   "TOK/S", "TTFT_MS",  "REQUESTS", "FAILURES"};
    static const int br[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    struct table t;
    table_init(&t, 10, bh, br);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "backends"), i, e)
    {
        char in[32], gq[16], q[16], r[32], tk[32], tt[32], rq[32], f[32];
        snprintf(in, sizeof(in), "%lld/%lld", json_integer_value(json_object_get(e, "inflight")),
                 json_integer_value(json_object_get(e, "capacity")));
        table_add(&t, json_string_value(json_object_get(e, "name")), json_string_value(json_object_get(e, "state")), in,
                  num(gq, sizeof(gq), json_object_get(e, "gateway_queue"), 0), num(q, sizeof(q), json_object_get(e, "queue"), 0),
                  num(r, sizeof(r), json_object_get(e, "requests_per_s"), 1),
                  num(tk, sizeof(tk), json_object_get(e, "tokens_per_s"), 1), num(tt, sizeof(tt), json_object_get(e, "ttft_ms"), 1),
                  num(rq, sizeof(rq), json_object_get(e, "requests"), 0), num(f, sizeof(f), json_object_get(e, "failures"), 0));
    }
    table_print(&t);
    putchar('\n');
    static const char *const th[] = {"TENANT", "PRIORITY", "WEIGHT", "INFLIGHT", "QUEUED",
                                     "REQ/S",  "REJ/S",    "TOK/S",  "REQUESTS", "REJECTED"};
    static const int tr[] = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    table_init(&t, 10, th, tr);
    json_array_foreach(json_object_get(j, "tenants"), i, e)
    {
        char p[16], w[16], in[32], q[32], r1[32], r2[32], r3[32], rq[32], rj[32];
        snprintf(rq, sizeof(rq), "%.0f", metric(e, "requests_total"));
        snprintf(rj, sizeof(rj), "%.0f", metric(e, "rejected_total"));
        table_add(&t, json_string_value(json_object_get(e, "name")), num(p, sizeof(p), json_object_get(e, "priority"), 0),
                  num(w, sizeof(w), json_object_get(e, "weight"), 0), num(in, sizeof(in), json_object_get(e, "inflight"), 0),
                  num(q, sizeof(q), json_object_get(e, "queued"), 0), num(r1, sizeof(r1), json_object_get(e, "requests_per_s"), 1),
                  num(r2, sizeof(r2), json_object_get(e, "rejected_per_s"), 1),
                  num(r3, sizeof(r3), json_object_get(e, "tokens_per_s"), 1), rq, rj);
    }
    table_print(&t);
}

static int show(int argc, char **argv)
{
    json_t *j;
    int rc = admin_show("/admin/v1/stats", &j);
    if (rc != EXIT_OK || j == NULL)
        return rc;
    print_tables(j);
    json_decref(j);
    return EXIT_OK;
}

static volatile sig_atomic_t stop;
static void on_sigint(int sig)
{
    stop = 1;
}

static int watch(int argc, char **argv)
{
    double interval = 1;
    long count = 0;
    for (int i = 0; i < argc; i++) {
        if ((is_prefix(argv[i], "interval") || strcmp(argv[i], "--interval") == 0) && i + 1 < argc)
            interval = atof(argv[++i]);
        else if ((is_prefix(argv[i], "count") || strcmp(argv[i], "--count") == 0) && i + 1 < argc)
            count = atol(argv[++i]);
        else if (strcmp(argv[i], "--watch") != 0 && strcmp(argv[i], "watch") != 0)
            return fail(EXIT_USAGE, "stats watch: unknown argument '%s' (interval SECONDS, count N)", argv[i]);
    }
    if (interval < 0.1)
        interval = 0.1;
    signal(SIGINT, on_sigint);
    int tty = isatty(STDOUT_FILENO);
    for (long n = 0; !stop && (count == 0 || n < count); n++) {
        if (n > 0) {
            struct timespec ts = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)};
            nanosleep(&ts, NULL);
            if (stop)
                break;
        }
        json_t *j;
        int rc = admin_call("GET", "/admin/v1/stats", NULL, &j);
        if (rc != EXIT_OK)
            return rc;
        if (opts.json) {
            print_json(j);
        } else {
            if (tty)
                fputs("\033[H\033[2J", stdout);
            print_tables(j);
            json_decref(j);
        }
        fflush(stdout);
    }
    return EXIT_OK;
}

static const struct cmd cmds[] = {{"show", show}, {"watch", watch}, {"help", help}, {NULL, NULL}};

int do_stats(int argc, char **argv)
{
    if (argc == 0)
        return show(0, argv);
    if (strcmp(argv[0], "--watch") == 0 || strcmp(argv[0], "-w") == 0)
        return watch(argc - 1, argv + 1);
    return cmd_dispatch(argc, argv, cmds, help, "stats");
}

int do_top(int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "help") == 0)
        return help(0, NULL);
    return watch(argc, argv);
}
