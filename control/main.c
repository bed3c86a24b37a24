/* gridgate: flags and config, then the control plane (registry, health) and the data plane (workers). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gridgate/accesslog.h"
#include "gridgate/admin.h"
#include "gridgate/api.h"
#include "gridgate/backend.h"
#include "gridgate/bpf.h"
#include "gridgate/splice.h"
#include "gridgate/config.h"
#include "gridgate/guard.h"
#include "gridgate/health.h"
#include "gridgate/log.h"
#include "gridgate/proxy.h"
#include "gridgate/registration.h"
#include "gridgate/server.h"
#include "gridgate/tunnel.h"

#define GG_VERSION "0.1.0"

static const char usage[] = "usage: gridgate [options]\n"
                            "\n"
                            "One OpenAI (/v1) and Ollama (/api) endpoint in front of many LLM engines.\n"
                            "\n"
                            "  --config FILE          JSON config (see --help-config for every key)\n"
                            "  --listen HOST:PORT     client listener, repeatable (default 127.0.0.1:8080; port 0 picks one)\n"
                            "  --backend URL          engine URL, repeatable; kind detected by probing, or forced: URL#kind=vllm\n"
                            "                         (also #name=N #weight=W #max_inflight=M)\n"
                            "  --admin HOST:PORT|unix:PATH  admin API and status page (default " GG_ADMIN_DEFAULT ", mode 0600;\n"
                            "                         TCP requires admin.token in the config)\n"
                            "  --threads N            worker threads (default: number of CPUs)\n"
                            "  --bpf auto|on|off      kernel assist (default auto)\n"
                            "  --pin-path DIR         where BPF maps are pinned (default /sys/fs/bpf/gridgate)\n"
                            "  --access-log PATH|-    JSON-lines access log (default off; - is stderr)\n"
                            "  --log-level LEVEL      error|warn|info|debug (default info)\n"
                            "  --help-config          print the config file reference\n"
                            "  --help, --version\n";

static gg_config_t cfg;
static const char *config_path;

static int apply_backends(const gg_config_t *c)
{
    for (size_t i = 0; i < c->n_backends; i++) {
        const gg_config_backend_t *b = &c->backends[i];
        int rc = gg_backend_add(b->name, b->url, b->kind, b->weight, b->max_inflight);
        if (rc < 0 && rc != -EEXIST) {
            gg_error("backend %s: cannot add: %s", b->url, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

static int same_backend(const gg_config_backend_t *cb, const gg_backend_t *b)
{
    if (cb->name != NULL)
        return strcmp(cb->name, b->name) == 0;
    size_t n = strlen(b->url);
    return strncmp(cb->url, b->url, n) == 0 && (cb->url[n] == '\0' || cb->url[n] == '/');
}

/* SIGHUP: re-read the file and bring the backends it lists in line with it. Backends from the command line
 * or the admin API are not the file's to remove; connections stay up either way. */
static gg_config_t file_cfg;

static void reload(void)
{
    if (config_path == NULL) {
        gg_warn("SIGHUP: no --config file to reload");
        return;
    }
    gg_config_t next;
    char err[512];
    if (gg_config_load(config_path, &next, err, sizeof(err)) != 0 || gg_config_finish(&next, err, sizeof(err)) != 0) {
        gg_error("reload: %s (keeping the running config)", err);
        return;
    }
    unsigned hwm = atomic_load(&gg_backends_hwm);
    for (unsigned s = 0; s < hwm; s++) {
        gg_backend_t *b = &gg_backends[s];
        if (atomic_load(&b->state) == GG_BACKEND_FREE)
            continue;
        int was = 0, is = 0;
        for (size_t i = 0; i < file_cfg.n_backends; i++)
            was |= same_backend(&file_cfg.backends[i], b);
        for (size_t i = 0; i < next.n_backends; i++)
            is |= same_backend(&next.backends[i], b);
        if (was && !is) {
            gg_info("reload: removing backend %s", b->name);
            gg_backend_remove(b->name);
        }
    }
    apply_backends(&next);
    gg_info("reload: %s applied (%zu backends in the file)", config_path, next.n_backends);
    gg_config_free(&file_cfg);
    file_cfg = next;
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload();
            continue;
        }
        gg_info("%s: draining (%u requests in flight, grace %u ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT", gg_server_inflight(),
                gg_server_opts.grace_ms);
        gg_server_stop();
        return NULL;
    }
}

static int parse_hostport(const char *s, gg_listen_addr_t *a)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return -EINVAL;
    const char *h = s, *he = colon;
    if (*h == '[' && he > h && he[-1] == ']')
        h++, he--;
    if ((size_t)(he - h) >= sizeof(a->host))
        return -EINVAL;
    memcpy(a->host, h, he - h);
    a->host[he - h] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535)
        return -EINVAL;
    a->port = (uint16_t)p;
    return 0;
}

/* The guard learns the listeners, and the workers count their connections where its reuseport pick reads them. */
static int start_guard(void)
{
    static gg_guard_listeners_t l;
    gg_server_listeners(&l);
    if (gg_guard_start(&l) != 0)
        return -1;
    if (gg_guard_conn_counts() != NULL)
        gg_server_share_conn_counts(gg_guard_conn_counts());
    return 0;
}

int main(int argc, char **argv)
{
    enum {
        OPT_CONFIG = 256,
        OPT_LISTEN,
        OPT_BACKEND,
        OPT_ADMIN,
        OPT_THREADS,
        OPT_BPF,
        OPT_PIN,
        OPT_LOGLEVEL,
        OPT_ACCESSLOG,
        OPT_HELPCONFIG,
        OPT_VERSION
    };
    static const struct option opts[] = {{"config", required_argument, NULL, OPT_CONFIG},
                                         {"listen", required_argument, NULL, OPT_LISTEN},
                                         {"backend", required_argument, NULL, OPT_BACKEND},
                                         {"admin", required_argument, NULL, OPT_ADMIN},
                                         {"threads", required_argument, NULL, OPT_THREADS},
                                         {"bpf", required_argument, NULL, OPT_BPF},
                                         {"pin-path", required_argument, NULL, OPT_PIN},
                                         {"log-level", required_argument, NULL, OPT_LOGLEVEL},
                                         {"access-log", required_argument, NULL, OPT_ACCESSLOG},
                                         {"help-config", no_argument, NULL, OPT_HELPCONFIG},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, OPT_VERSION},
                                         {NULL, 0, NULL, 0}};
    char err[512];
    gg_log_prog = "gridgate";

    /* The config file comes first, whatever its place among the flags: flags override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config_path = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            config_path = argv[i] + 9;
    }
    if (config_path != NULL) {
        if (gg_config_load(config_path, &cfg, err, sizeof(err)) != 0 ||
            gg_config_load(config_path, &file_cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "gridgate: %s\n", err);
            return 2;
        }
    } else {
        gg_config_init(&cfg);
    }

    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case OPT_CONFIG:
            break;
        case OPT_LISTEN:
            rc = gg_config_add_listen(&cfg, optarg, err, sizeof(err));
            break;
        case OPT_BACKEND:
            rc = gg_config_add_backend_url(&cfg, optarg, err, sizeof(err));
            break;
        case OPT_ADMIN:
            rc = gg_config_set(&cfg, "admin", optarg, err, sizeof(err));
            break;
        case OPT_THREADS:
            rc = gg_config_set(&cfg, "threads", optarg, err, sizeof(err));
            break;
        case OPT_BPF:
            rc = gg_config_set(&cfg, "bpf.mode", optarg, err, sizeof(err));
            break;
        case OPT_PIN:
            rc = gg_config_set(&cfg, "bpf.pin_path", optarg, err, sizeof(err));
            break;
        case OPT_LOGLEVEL:
            rc = gg_config_set(&cfg, "log_level", optarg, err, sizeof(err));
            break;
        case OPT_ACCESSLOG:
            rc = gg_config_set(&cfg, "access_log", optarg, err, sizeof(err));
            break;
        case OPT_HELPCONFIG:
            gg_config_print_doc(stdout);
            return 0;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case OPT_VERSION:
            printf("gridgate %s (libh2o %s)\n", GG_VERSION, H2O_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "gridgate: %s\n", err);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gridgate: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    if (gg_config_finish(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "gridgate: %s\n", err);
        return 2;
    }
    if (cfg.log_level)
        gg_log_set_level(cfg.log_level);
    if (gg_accesslog_open(cfg.access_log) != 0) {
        fprintf(stderr, "gridgate: access log %s: %s\n", cfg.access_log, strerror(errno));
        return 1;
    }

    gg_server_opts_t so = {.threads = cfg.threads,
                           .max_body_bytes = cfg.limits.max_body_bytes,
                           .tls_cert = cfg.tls_cert,
                           .tls_key = cfg.tls_key,
                           .grace_ms = 30000};
    for (size_t i = 0; i < cfg.n_listen && so.num_listen < GG_MAX_LISTEN; i++) {
        if (parse_hostport(cfg.listen[i], &so.listen[so.num_listen]) != 0) {
            fprintf(stderr, "gridgate: --listen %s: expected HOST:PORT\n", cfg.listen[i]);
            return 2;
        }
        so.num_listen++;
    }
    gg_proxy_config.connect_ms = cfg.timeouts.connect_ms;
    gg_proxy_config.first_byte_ms = cfg.timeouts.first_byte_ms;
    gg_proxy_config.idle_ms = cfg.timeouts.idle_ms;
    gg_proxy_config.max_attempts = cfg.routing.retries + 1;
    gg_proxy_config.affinity = cfg.routing.affinity;
    gg_proxy_config.prefer_loaded = cfg.routing.prefer_loaded;

    /* Signals go to one thread that waits for them; workers never see them. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    gg_guard_configure(&cfg);
    if (gg_bpf_init(cfg.bpf.mode, cfg.bpf.pin_path) != 0)
        return 1;
    gg_splice_set_streams(cfg.bpf.splice_streams);
    gg_tunnel_set_splice(cfg.bpf.splice_tunnels);
    gg_splice_set_paths(cfg.bpf.splice_paths);

    gg_api_init(&cfg);
    if (gg_server_init(&so, gg_api_on_req) != 0 || start_guard() != 0)
        return 1;
    if (apply_backends(&cfg) != 0)
        return 1;
    if (gg_health_start(&cfg) != 0) {
        gg_error("cannot start health checks");
        return 1;
    }
    if (gg_registration_start(&cfg) != 0 || gg_admin_start(&cfg, config_path) != 0)
        return 1;
    pthread_t sig;
    pthread_create(&sig, NULL, signal_thread, &set);
    pthread_detach(sig);

    gg_server_run();
    gg_admin_stop();
    gg_registration_stop();
    gg_health_stop();
    gg_bpf_shutdown();
    gg_info("stopped");
    return 0;
}
