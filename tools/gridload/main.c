/* gridload's command line: parses the target, the global defaults and the --flow specs into a gl_config,
 * prepares each flow's request bytes once, runs the load and picks the exit code. */
#include "gridload.h"
#include "gridgate/log.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRIDLOAD_VERSION "0.1"

static const char usage_text[] =
    "usage: gridload --target http://HOST:PORT[/PREFIX] --flow NAME:KEY:RATE[,OPT=V...] [--flow ...] [options]\n"
    "\n"
    "Open-loop load generator for LLM endpoints. Each flow sends Poisson arrivals at RATE requests/s (or keeps\n"
    "conc=N requests in flight) with its API key, and is measured separately: TTFT (first non-empty content\n"
    "token), TPOT ((e2e - ttft) / (tokens - 1)), end-to-end latency, tokens/s and errors by status.\n"
    "\n"
    "Flows:\n"
    "  --flow NAME:KEY:RATE[,OPT=V...]  repeatable. KEY goes into 'Authorization: Bearer KEY' (empty: no\n"
    "                        header). RATE is in requests/s. OPTs override the global options for this flow:\n"
    "                        stream=0|1, max_tokens=N, api=openai|ollama|generate, model=NAME,\n"
    "                        prompt_tokens=N, conc=N, duration=S, warmup=S ('-' works for '_')\n"
    "                        conc=N: closed loop, N requests always in flight (a new one is sent as one\n"
    "                        ends, timed from its send), RATE ignored.\n"
    "  The run ends when every flow's arrivals are over and its requests have finished or timed out.\n"
    "Global options (defaults for every flow):\n"
    "  --target URL          server to load (default http://127.0.0.1:8080)\n"
    "  --model NAME          model name in the request (default llama3)\n"
    "  --api openai|ollama|generate\n"
    "                        openai: POST /v1/chat/completions (SSE when streaming); ollama: POST /api/chat\n"
    "                        (NDJSON); generate: POST /api/generate (NDJSON). Default openai.\n"
    "  --stream 0|1          streaming responses (default 1); without streaming TTFT = end-to-end latency\n"
    "  --max-tokens N        max_tokens / options.num_predict (default 32)\n"
    "  --prompt-tokens N     prompt size in words, about one token each (default 16)\n"
    "  --duration S          measured seconds per flow, after the warm-up (default 10)\n"
    "  --warmup S            warm-up seconds before the measured window (default 0). Arrivals run for\n"
    "                        warmup + duration; requests that start in the warm-up are left out of the\n"
    "                        summary (the JSON windows still show them, marked \"warmup\": true).\n"
    "  --timeout S           per-request limit from its scheduled start to the last byte (default 30); a\n"
    "                        request past it counts as a timeout. The run drains in-flight requests after\n"
    "                        the last arrival, so it lasts at most warmup + duration + timeout.\n"
    "  --max-outstanding N   cap on requests in flight over all flows (default 4096); an arrival beyond it\n"
    "                        is not sent and counts as 'dropped' (dropped at the client)\n"
    "  --seed N              seed of the arrival processes (default 1): same seed, same schedule\n"
    "  --json FILE           write the JSON report to FILE\n"
    "  --quiet               no table on stdout\n"
    "  --log-level L         error|warn|info|debug (default warn)\n"
    "  --help, --version\n"
    "\n"
    "Measures (per flow, over the requests that started after the warm-up):\n"
    "  sent, ok (2xx); errors by HTTP status and by class: connect (refused/unreachable), timeout, io (reset,\n"
    "  early close, bad response), stream (2xx whose body carried an error object), dropped (client cap).\n"
    "  ttft: time from the scheduled start to the first SSE event with non-empty choices[0].delta.content,\n"
    "  or the first NDJSON line with non-empty message.content / response. tokens: the usage count\n"
    "  (usage.completion_tokens, eval_count) when the server sends one, else the number of content events.\n"
    "  tok/s = tokens of ok requests / duration. Latencies and tokens are over ok requests only.\n"
    "\n"
    "Output: a table on stdout (ms): flow, sent, ok, ttft p50/p90/p99, tpot p50, e2e p50/p99, tok/s, errors.\n"
    "JSON (--json): {target, seed, timeout_s, max_outstanding, run_s, flows: [{name, api, stream, ..., sent,\n"
    "ok, errors: {total, status: {CODE: n}, connect, timeout, io, stream, dropped}, ttft_ms/tpot_ms/e2e_ms:\n"
    "{n, p50, p90, p99, mean, min, max}, tokens, tokens_per_s, warmup: {sent, ok, errors, dropped},\n"
    "windows: [{t, warmup, sent, ok, errors, dropped, ttft_p50_ms, ttft_p99_ms, tokens}]}]}. Window t covers\n"
    "second [t, t+1) of the run: sent/ok/errors/ttft are over the requests that started in it, tokens are\n"
    "the tokens received in it.\n"
    "\n"
    "Exit status: 0 when the run completed (HTTP errors and timeouts included); 1 on a fatal error (target\n"
    "cannot be resolved, JSON file cannot be written) or when every measured request failed to connect\n"
    "(the report is still printed); 2 on a usage error.\n";

struct defaults {
    int stream, max_tokens, prompt_tokens;
    enum gl_api api;
    const char *model;
    double duration, warmup;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "gridload: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see gridload --help)\n");
    return 2;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    double v;
    if (parse_double(s, lo, hi, &v) != 0 || v != (int)v)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

static int parse_api(const char *s, enum gl_api *out)
{
    if (strcmp(s, "openai") == 0)
        *out = GL_API_OPENAI;
    else if (strcmp(s, "ollama") == 0)
        *out = GL_API_OLLAMA;
    else if (strcmp(s, "generate") == 0)
        *out = GL_API_GENERATE;
    else
        return -EINVAL;
    return 0;
}

static int parse_target(struct gl_config *cfg, const char *url)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EINVAL;
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hp_len = slash ? (size_t)(slash - h) : strlen(h);
    if (hp_len == 0)
        return -EINVAL;
    cfg->hostport = strndup(h, hp_len);
    const char *colon = NULL;
    if (h[0] == '[') {
        const char *rb = memchr(h, ']', hp_len);
        if (rb == NULL)
            return -EINVAL;
        cfg->host = strndup(h + 1, (size_t)(rb - h - 1));
        colon = rb + 1 < h + hp_len && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(h, ':', hp_len);
        cfg->host = strndup(h, colon ? (size_t)(colon - h) : hp_len);
    }
    cfg->port = colon ? strndup(colon + 1, (size_t)(h + hp_len - colon - 1)) : strdup("80");
    size_t plen = slash ? strlen(slash) : 0;
    while (plen > 0 && slash[plen - 1] == '/')
        plen--;
    cfg->prefix = strndup(slash ? slash : "", plen);
    return cfg->host[0] && cfg->port[0] ? 0 : -EINVAL;
}

/* NAME:KEY:RATE[,opt=v...]; returns 0 or 2 (usage error, already reported). */
static int parse_flow(const char *spec, const struct defaults *d, struct gl_flow *f)
{
    char *s = strdup(spec);
    char *opts = strchr(s, ',');
    if (opts)
        *opts++ = '\0';
    char *c1 = strchr(s, ':'), *c2 = strrchr(s, ':');
    if (c1 == NULL || c2 == c1) {
        free(s);
        return usage_error("--flow %s: expected NAME:KEY:RATE", spec);
    }
    *c1 = *c2 = '\0';
    f->name = strdup(s);
    f->key = strdup(c1 + 1);
    f->stream = d->stream;
    f->max_tokens = d->max_tokens;
    f->prompt_tokens = d->prompt_tokens;
    f->api = d->api;
    f->model = strdup(d->model);
    f->duration = d->duration;
    f->warmup = d->warmup;
    int rc = 0;
    if (f->name[0] == '\0')
        rc = usage_error("--flow %s: empty name", spec);
    else if (strpbrk(f->key, "\r\n") != NULL || strpbrk(f->name, "\r\n\"") != NULL)
        rc = usage_error("--flow %s: no CR, LF or quote in a name or key", spec);
    else if (parse_double(c2 + 1, 0, 1e6, &f->rate) != 0)
        rc = usage_error("--flow %s: bad rate", spec);
    for (char *save = NULL, *o = opts ? strtok_r(opts, ",", &save) : NULL; o && !rc; o = strtok_r(NULL, ",", &save)) {
        char *v = strchr(o, '=');
        if (v == NULL) {
            rc = usage_error("--flow option %s: expected OPT=VALUE", o);
            break;
        }
        *v++ = '\0';
        for (char *p = o; *p; p++)
            if (*p == '-')
                *p = '_'; /* max-tokens as well as max_tokens, like the global flags */
        int bad;
        if (strcmp(o, "stream") == 0)
            bad = parse_int(v, 0, 1, &f->stream);
        else if (strcmp(o, "max_tokens") == 0)
            bad = parse_int(v, 1, 1000000, &f->max_tokens);
        else if (strcmp(o, "prompt_tokens") == 0)
            bad = parse_int(v, 1, 1000000, &f->prompt_tokens);
        else if (strcmp(o, "conc") == 0)
            bad = parse_int(v, 0, 100000, &f->conc);
        else if (strcmp(o, "api") == 0)
            bad = parse_api(v, &f->api);
        else if (strcmp(o, "duration") == 0)
            bad = parse_double(v, 0, 1e6, &f->duration);
        else if (strcmp(o, "warmup") == 0)
            bad = parse_double(v, 0, 1e6, &f->warmup);
        else if (strcmp(o, "model") == 0) {
            free(f->model);
            f->model = strdup(v);
            bad = 0;
        } else {
            rc = usage_error("--flow: unknown option %s", o);
            break;
        }
        if (bad)
            rc = usage_error("--flow: bad value for %s", o);
    }
    if (!rc && f->conc == 0 && !(f->rate > 0))
        rc = usage_error("--flow %s: needs a rate > 0 or conc=N", spec);
    free(s);
    return rc;
}

static void build_request(const struct gl_config *cfg, struct gl_flow *f)
{
    static const char *const words[] = {"the", "quick", "brown", "fox", "jumps", "over", "a",  "lazy",
                                        "dog", "while", "seven", "red", "birds", "sing", "in", "rain"};
    size_t plen = 0;
    char *prompt = malloc((size_t)f->prompt_tokens * 8 + 1);
    for (int i = 0; i < f->prompt_tokens; i++)
        plen += (size_t)sprintf(prompt + plen, "%s%s", i ? " " : "", words[(i * 7) % 16]);
    prompt[plen] = '\0';

    json_t *body;
    const char *path;
    if (f->api == GL_API_OPENAI) {
        path = "/v1/chat/completions";
        body = json_pack("{s:s, s:[{s:s, s:s}], s:i, s:b}", "model", f->model, "messages", "role", "user", "content", prompt,
                         "max_tokens", f->max_tokens, "stream", f->stream);
        if (f->stream)
            json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    } else if (f->api == GL_API_OLLAMA) {
        path = "/api/chat";
        body = json_pack("{s:s, s:[{s:s, s:s}], s:b, s:{s:i}}", "model", f->model, "messages", "role", "user", "content", prompt,
                         "stream", f->stream, "options", "num_predict", f->max_tokens);
    } else {
        path = "/api/generate";
        body = json_pack("{s:s, s:s, s:b, s:{s:i}}", "model", f->model, "prompt", prompt, "stream", f->stream, "options",
                         "num_predict", f->max_tokens);
    }
    char *b = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    free(prompt);
    size_t alen = strlen(f->key) + 32;
    char *auth = malloc(alen);
    auth[0] = '\0';
    if (f->key[0])
        snprintf(auth, alen, "Authorization: Bearer %s\r\n", f->key);
    const char *accept = f->stream ? (f->api == GL_API_OPENAI ? "text/event-stream" : "application/x-ndjson") : "application/json";
    size_t blen = strlen(b);
    size_t cap = blen + strlen(auth) + strlen(cfg->prefix) + strlen(cfg->hostport) + 256;
    f->req = malloc(cap);
    f->req_len = (size_t)snprintf(f->req, cap,
                                  "POST %s%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gridload/" GRIDLOAD_VERSION
                                  "\r\nContent-Type: application/json\r\nAccept: %s\r\n%sContent-Length: %zu\r\n\r\n%s",
                                  cfg->prefix, path, cfg->hostport, accept, auth, blen, b);
    free(auth);
    free(b);
}

static void config_free(struct gl_config *cfg)
{
    for (size_t i = 0; i < cfg->nflows; i++) {
        struct gl_flow *f = &cfg->flows[i];
        free(f->name);
        free(f->key);
        free(f->model);
        free(f->req);
        free(f->samples);
        free(f->tok_per_sec);
        free(f->drop_per_sec);
    }
    free(cfg->flows);
    free(cfg->host);
    free(cfg->port);
    free(cfg->prefix);
    free(cfg->hostport);
}

int main(int argc, char **argv)
{
    gg_log_prog = "gridload";
    gg_log_level = GG_LOG_WARN;
    struct gl_config cfg = {.target = "http://127.0.0.1:8080", .timeout = 30, .max_outstanding = 4096, .seed = 1};
    struct defaults d = {
        .stream = 1, .max_tokens = 32, .prompt_tokens = 16, .api = GL_API_OPENAI, .model = "llama3", .duration = 10, .warmup = 0};
    const char **specs = calloc((size_t)argc, sizeof(*specs));
    size_t nspecs = 0;
    enum {
        O_TARGET = 256,
        O_MODEL,
        O_API,
        O_STREAM,
        O_MAXTOK,
        O_PROMPT,
        O_DURATION,
        O_WARMUP,
        O_TIMEOUT,
        O_MAXOUT,
        O_SEED,
        O_JSON,
        O_FLOW,
        O_QUIET,
        O_LOGLEVEL,
        O_HELP,
        O_VERSION
    };
    static const struct option longopts[] = {{"target", required_argument, NULL, O_TARGET},
                                             {"model", required_argument, NULL, O_MODEL},
                                             {"api", required_argument, NULL, O_API},
                                             {"stream", required_argument, NULL, O_STREAM},
                                             {"max-tokens", required_argument, NULL, O_MAXTOK},
                                             {"prompt-tokens", required_argument, NULL, O_PROMPT},
                                             {"duration", required_argument, NULL, O_DURATION},
                                             {"warmup", required_argument, NULL, O_WARMUP},
                                             {"timeout", required_argument, NULL, O_TIMEOUT},
                                             {"max-outstanding", required_argument, NULL, O_MAXOUT},
                                             {"seed", required_argument, NULL, O_SEED},
                                             {"json", required_argument, NULL, O_JSON},
                                             {"flow", required_argument, NULL, O_FLOW},
                                             {"quiet", no_argument, NULL, O_QUIET},
                                             {"log-level", required_argument, NULL, O_LOGLEVEL},
                                             {"help", no_argument, NULL, O_HELP},
                                             {"version", no_argument, NULL, O_VERSION},
                                             {NULL, 0, NULL, 0}};
    int rc = 0, opt;
    double seed;
    while (rc == 0 && (opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case O_TARGET:
            cfg.target = optarg;
            break;
        case O_MODEL:
            d.model = optarg;
            break;
        case O_API:
            if (parse_api(optarg, &d.api) != 0)
                rc = usage_error("--api %s: expected openai, ollama or generate", optarg);
            break;
        case O_STREAM:
            if (parse_int(optarg, 0, 1, &d.stream) != 0)
                rc = usage_error("--stream %s: expected 0 or 1", optarg);
            break;
        case O_MAXTOK:
            if (parse_int(optarg, 1, 1000000, &d.max_tokens) != 0)
                rc = usage_error("--max-tokens %s: expected 1..1000000", optarg);
            break;
        case O_PROMPT:
            if (parse_int(optarg, 1, 1000000, &d.prompt_tokens) != 0)
                rc = usage_error("--prompt-tokens %s: expected 1..1000000", optarg);
            break;
        case O_DURATION:
            if (parse_double(optarg, 0, 1e6, &d.duration) != 0)
                rc = usage_error("--duration %s: expected seconds", optarg);
            break;
        case O_WARMUP:
            if (parse_double(optarg, 0, 1e6, &d.warmup) != 0)
                rc = usage_error("--warmup %s: expected seconds", optarg);
            break;
        case O_TIMEOUT:
            if (parse_double(optarg, 0.001, 1e6, &cfg.timeout) != 0)
                rc = usage_error("--timeout %s: expected seconds > 0", optarg);
            break;
        case O_MAXOUT:
            if (parse_int(optarg, 1, 1000000, &cfg.max_outstanding) != 0)
                rc = usage_error("--max-outstanding %s: expected 1..1000000", optarg);
            break;
        case O_SEED:
            if (parse_double(optarg, 0, 9007199254740992.0, &seed) != 0 || seed != (double)(uint64_t)seed)
                rc = usage_error("--seed %s: expected a non-negative integer", optarg);
            else
                cfg.seed = (uint64_t)seed;
            break;
        case O_JSON:
            cfg.json_path = optarg;
            break;
        case O_FLOW:
            specs[nspecs++] = optarg;
            break;
        case O_QUIET:
            cfg.quiet = 1;
            break;
        case O_LOGLEVEL:
            if (gg_log_set_level(optarg) != 0)
                rc = usage_error("--log-level %s: expected error, warn, info or debug", optarg);
            break;
        case O_HELP:
            fputs(usage_text, stdout);
            free(specs);
            return 0;
        case O_VERSION:
            printf("gridload " GRIDLOAD_VERSION "\n");
            free(specs);
            return 0;
        default:
            rc = 2;
        }
    }
    if (rc == 0 && optind < argc)
        rc = usage_error("unexpected argument %s", argv[optind]);
    if (rc == 0 && nspecs == 0)
        rc = usage_error("%s", "at least one --flow is needed");
    if (rc == 0 && parse_target(&cfg, cfg.target) != 0)
        rc = usage_error("--target %s: expected http://HOST:PORT[/PREFIX]", cfg.target);
    if (rc == 0) {
        cfg.flows = calloc(nspecs, sizeof(*cfg.flows));
        for (size_t i = 0; i < nspecs && rc == 0; i++) {
            rc = parse_flow(specs[i], &d, &cfg.flows[i]);
            cfg.nflows = i + 1;
            for (size_t j = 0; j < i && rc == 0; j++)
                if (strcmp(cfg.flows[j].name, cfg.flows[i].name) == 0)
                    rc = usage_error("--flow %s: duplicate flow name", cfg.flows[i].name);
        }
    }
    free(specs);
    if (rc != 0) {
        config_free(&cfg);
        return rc;
    }
    for (size_t i = 0; i < cfg.nflows; i++)
        build_request(&cfg, &cfg.flows[i]);

    int err = gl_run(&cfg);
    if (err == 0) {
        /* every measured request failed to connect: nothing was measured, say so in the exit code */
        uint64_t measured = 0, refused = 0;
        for (size_t i = 0; i < cfg.nflows; i++) {
            for (size_t k = 0; k < cfg.flows[i].nsamples; k++) {
                const struct gl_sample *s = &cfg.flows[i].samples[k];
                if (s->warmup)
                    continue;
                measured++;
                refused += s->fail == GL_FAIL_CONNECT;
            }
        }
        if (measured > 0 && refused == measured) {
            gg_error("target %s unreachable: all %llu requests failed to connect", cfg.target, (unsigned long long)measured);
            err = -ECONNREFUSED;
        }
    } else {
        gg_error("run failed: %s", strerror(-err));
    }
    config_free(&cfg);
    return err == 0 ? 0 : 1;
}
