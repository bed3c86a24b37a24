/* gridload's shared types: the run configuration (target, flows), the per-request samples a run records,
 * and the entry points of its three parts (the event loop in client.c, the body scanner in scan.c, the
 * report in report.c). main.c parses the command line into these. */
#ifndef GRIDLOAD_H
#define GRIDLOAD_H

#include <stddef.h>
#include <stdint.h>

#define NS_PER_SEC 1000000000LL
#define NS_PER_MS 1000000LL

enum gl_api { GL_API_OPENAI, GL_API_OLLAMA, GL_API_GENERATE };

/* Failures that have no HTTP status of their own. */
enum gl_fail {
    GL_FAIL_NONE,
    GL_FAIL_CONNECT, /* connect refused / unreachable */
    GL_FAIL_TIMEOUT, /* --timeout expired (connect, head or body) */
    GL_FAIL_IO,      /* reset, early close, unparsable response */
    GL_FAIL_STREAM,  /* 2xx whose body carried an error object */
    GL_FAIL__COUNT
};

/* One finished request. Times are ns since the run started; ttft < 0 when no content arrived. */
struct gl_sample {
    int64_t start;
    int64_t ttft;
    int64_t e2e;
    int32_t tokens;
    int16_t status; /* HTTP status, 0 when fail != NONE */
    int8_t fail;
    int8_t warmup; /* started during the flow's warm-up: kept for the windows, left out of the summary */
};

struct gl_flow {
    /* configuration */
    char *name;
    char *key;
    double rate; /* Poisson arrivals per second (open loop) */
    int conc;    /* > 0: closed loop with this many requests in flight, rate ignored */
    int stream;
    int max_tokens;
    int prompt_tokens;
    enum gl_api api;
    char *model;
    double duration; /* measured seconds, after the warm-up */
    double warmup;
    /* prepared request bytes (head + body), shared by every request of the flow */
    char *req;
    size_t req_len;
    /* run state */
    uint64_t rng;
    int64_t next_arrival; /* ns since start */
    int64_t end;          /* no arrival at or after this (ns since start) */
    int inflight;
    uint64_t dropped, dropped_warmup;
    struct gl_sample *samples;
    size_t nsamples, cap_samples;
    /* tokens received per second of the run, indexed by second */
    uint64_t *tok_per_sec;
    size_t ntok_sec;
    uint64_t *drop_per_sec;
    size_t ndrop_sec;
};

struct gl_config {
    const char *target;
    char *host; /* from --target */
    char *port;
    char *prefix; /* path prefix, without trailing '/' */
    char *hostport;
    double timeout;
    int max_outstanding;
    uint64_t seed;
    struct gl_flow *flows;
    size_t nflows;
    const char *json_path;
    int quiet;
};

/* What a body scan found; a scanner is fed one SSE/NDJSON payload (or a whole JSON body) at a time. */
struct gl_scan {
    int content; /* a non-empty content / response string was seen */
    int usage;   /* completion token count from usage.completion_tokens or eval_count; -1 if absent */
    int error;   /* a top-level "error" key */
    int done;    /* Ollama "done": true */
};

/* Scans one JSON text for the keys gridload cares about, at any depth, without building a tree. */
void gl_scan_json(const char *s, size_t len, struct gl_scan *out);

/* Runs the whole load; returns 0 or -errno on a fatal setup error. */
int gl_run(struct gl_config *cfg);

/* Prints the table to stdout and, if cfg->json_path, writes the JSON report. Returns 0 or -errno. */
int gl_report(struct gl_config *cfg, int64_t run_ns);

#endif
