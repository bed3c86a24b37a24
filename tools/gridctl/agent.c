/* gridctl agent: runs next to an engine and heartbeats it into a gateway's registration endpoint (on the main
 * listener): the engine's URL and kind, its models and which are loaded, and GPU memory where nvidia-smi or
 * /sys (amdgpu) tells. Keeps beating through gateway restarts; a refused token ends it (exit 4). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gridgate/adapter.h"
#include "gridgate/backend.h"
#include "gridgate/httpc.h"
#include "gridgate/registration.h"
#include "gridctl.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: gridctl agent --engine URL --gateway URL --token TOKEN [--name NAME] [--kind KIND]\n"
               "                     [--interval-ms MS] [--once]\n"
               "  --engine URL       the engine next to this agent, as the gateway reaches it (http://HOST:PORT)\n"
               "  --gateway URL      gridgate's main listener (http://HOST:PORT); env GRIDCTL_GATEWAY\n"
               "  --token TOKEN      the gateway's registration.token; env GRIDCTL_REGISTRATION_TOKEN\n"
               "  --name NAME        backend name (default HOST:PORT of the engine)\n"
               "  --kind KIND        engine kind (default: detected by probing)\n"
               "  --interval-ms MS   heartbeat period (default: what the gateway asks for)\n"
               "  --once             one heartbeat, then exit with its result\n"
               "Exit codes: 0 stopped by a signal (or --once ok), 2 usage, 4 token refused, 1 other refusal.\n");
}

/* GPU memory in MB: nvidia-smi when it is installed, else amdgpu's sysfs counters; NULL when neither tells. */
static json_t *gpu_memory(void)
{
    if (access("/usr/bin/nvidia-smi", X_OK) == 0 || access("/usr/local/bin/nvidia-smi", X_OK) == 0) {
        FILE *p = popen("timeout 3 nvidia-smi --query-gpu=memory.total,memory.used --format=csv,noheader,nounits 2>/dev/null", "r");
        if (p != NULL) {
            double total = 0, used = 0, t, u;
            int gpus = 0;
            while (fscanf(p, " %lf , %lf", &t, &u) == 2)
                total += t, used += u, gpus++;
            pclose(p);
            if (gpus > 0)
                return json_pack("{s:s, s:i, s:f, s:f}", "source", "nvidia-smi", "gpus", gpus, "total_mb", total, "used_mb", used);
        }
    }
    DIR *d = opendir("/sys/class/drm");
    if (d == NULL)
        return NULL;
    double total = 0, used = 0;
    int gpus = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "card", 4) != 0 || strchr(e->d_name, '-') != NULL)
            continue;
        char path[512];
        unsigned long long t = 0, u = 0;
        snprintf(path, sizeof(path), "/sys/class/drm/%s/device/mem_info_vram_total", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        int ok = fscanf(f, "%llu", &t) == 1;
        fclose(f);
        snprintf(path, sizeof(path), "/sys/class/drm/%s/device/mem_info_vram_used", e->d_name);
        if ((f = fopen(path, "r")) != NULL) {
            ok &= fscanf(f, "%llu", &u) == 1;
            fclose(f);
        }
        if (ok)
            total += t / 1048576.0, used += u / 1048576.0, gpus++;
    }
    closedir(d);
    return gpus ? json_pack("{s:s, s:i, s:f, s:f}", "source", "sysfs", "gpus", gpus, "total_mb", total, "used_mb", used) : NULL;
}

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (!stop && nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int do_agent(int argc, char **argv)
{
    enum { O_ENGINE = 256, O_GATEWAY, O_TOKEN, O_NAME, O_KIND, O_INTERVAL, O_ONCE, O_HELP };
    static const struct option lo[] = {{"engine", required_argument, NULL, O_ENGINE},
                                       {"gateway", required_argument, NULL, O_GATEWAY},
                                       {"token", required_argument, NULL, O_TOKEN},
                                       {"name", required_argument, NULL, O_NAME},
                                       {"kind", required_argument, NULL, O_KIND},
                                       {"interval-ms", required_argument, NULL, O_INTERVAL},
                                       {"once", no_argument, NULL, O_ONCE},
                                       {"help", no_argument, NULL, O_HELP},
                                       {NULL, 0, NULL, 0}};
    const char *engine = NULL, *gateway = getenv("GRIDCTL_GATEWAY"), *token = getenv("GRIDCTL_REGISTRATION_TOKEN");
    const char *name = NULL, *kind_name = NULL;
    long interval = 0;
    int once = 0, c;
    if (argc > 0 && strcmp(argv[0], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    /* getopt wants the program name at argv[0]. */
    char **av = calloc((size_t)argc + 2, sizeof(char *));
    av[0] = "gridctl agent";
    memcpy(av + 1, argv, (size_t)argc * sizeof(char *));
    optind = 1;
    while ((c = getopt_long(argc + 1, av, "jp", lo, NULL)) != -1) {
        switch (c) {
        case O_ENGINE:
            engine = optarg;
            break;
        case O_GATEWAY:
            gateway = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_NAME:
            name = optarg;
            break;
        case O_KIND:
            kind_name = optarg;
            break;
        case O_INTERVAL:
            interval = atol(optarg);
            break;
        case O_ONCE:
            once = 1;
            break;
        case 'j':
            opts.json = 1;
            break;
        case 'p':
            opts.json = opts.pretty = 1;
            break;
        case O_HELP:
            usage(stdout);
            free(av);
            return EXIT_OK;
        default:
            usage(stderr);
            free(av);
            return EXIT_USAGE;
        }
    }
    free(av);
    if (engine == NULL || gateway == NULL || token == NULL) {
        usage(stderr);
        return fail(EXIT_USAGE, "agent: --engine, --gateway and --token are required");
    }
    int kind = gg_engine_kind_parse(kind_name);
    if (kind < 0)
        return fail(EXIT_USAGE, "agent: --kind %s: not one of ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui", kind_name);
    if (strlen(token) > 400)
        return fail(EXIT_USAGE, "agent: --token is too long");
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char headers[512];
    snprintf(headers, sizeof(headers), "Authorization: Bearer %s\r\nContent-Type: application/json\r\n", token);

    long period = interval > 0 ? interval : 5000;
    int registered = 0, last_err = 0;
    while (!stop) {
        /* What the engine says now; an engine that does not answer is still reported (the gateway's own
         * health checks decide whether it takes traffic). */
        if (kind == GG_ENGINE_UNKNOWN) {
            int k = gg_adapter_detect(engine, 2000);
            if (k > 0)
                kind = k;
        }
        json_t *models = json_array();
        if (kind != GG_ENGINE_UNKNOWN) {
            gg_engine_status_t st;
            gg_engine_status_init(&st);
            if (gg_adapter_for(kind)->poll(engine, 2000, &st) == 0)
                for (size_t i = 0; i < st.n_models; i++)
                    json_array_append_new(models,
                                          json_pack("{s:s, s:b}", "name", st.models[i].name, "loaded", st.models[i].loaded));
            gg_engine_status_free(&st);
        }
        json_t *gpu = gpu_memory();
        json_t *beat = json_pack("{s:s, s:s, s:s, s:o, s:o}", "url", engine, "kind", gg_engine_kind_name(kind), "agent", host,
                                 "models", models, "gpu", gpu ? gpu : json_null());
        if (kind == GG_ENGINE_UNKNOWN)
            json_object_del(beat, "kind");
        if (name != NULL)
            json_object_set_new(beat, "name", json_string(name));
        char *body = json_dumps(beat, JSON_COMPACT);
        json_decref(beat);
        gg_httpc_response_t res = {0};
        int rc = gg_httpc_request(gateway, "POST", GG_REGISTER_PATH, headers, body, strlen(body), 5000, &res);
        free(body);
        if (rc != 0) {
            if (last_err != rc)
                fprintf(stderr, "gridctl agent: cannot reach the gateway at %s: %s (retrying)\n", gateway, gg_httpc_strerror(rc));
            last_err = rc;
            if (once)
                return fail(EXIT_UNREACHABLE, "agent: cannot reach the gateway at %s: %s", gateway, gg_httpc_strerror(rc));
            msleep(period);
            continue;
        }
        last_err = 0;
        json_error_t je;
        json_t *j = json_loadb(res.body, res.body_len, 0, &je);
        int status = res.status, code = exit_for_status(status);
        if (code != EXIT_OK) {
            const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
            rc = fail(code, "agent: the gateway refused the registration (HTTP %d): %s", res.status, msg ? msg : res.body);
            json_decref(j);
            gg_httpc_response_free(&res);
            if (code == EXIT_AUTH || once || status == 400 || status == 409)
                return rc;
            msleep(period);
            continue;
        }
        if (interval <= 0 && json_integer_value(json_object_get(j, "heartbeat_ms")) > 0)
            period = (long)json_integer_value(json_object_get(j, "heartbeat_ms"));
        const char *state = json_string_value(json_object_get(j, "state"));
        if (!registered || once) {
            if (opts.json)
                print_json(json_incref(j));
            else
                printf("registered %s with %s: %s, heartbeat every %ld ms\n", json_string_value(json_object_get(j, "name")),
                       gateway, state ? state : "?", period);
            fflush(stdout);
            registered = 1;
        }
        json_decref(j);
        gg_httpc_response_free(&res);
        if (once)
            return EXIT_OK;
        msleep(period);
    }
    return EXIT_OK;
}
