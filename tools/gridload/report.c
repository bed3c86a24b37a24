/* gridload's report: turns the recorded samples into per-flow summaries (percentiles from the sorted
 * samples, errors by status and by class) and per-second windows, prints the human table and writes the
 * JSON file. Requests that started during a flow's warm-up are left out of the summary; the windows cover
 * the whole run and mark the warm-up seconds. */
#include "gridload.h"
#include "gridgate/log.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fail_names[GL_FAIL__COUNT] = {"", "connect", "timeout", "io", "stream"};
static const char *const api_names[] = {"openai", "ollama", "generate"};

struct dist {
    int64_t *v;
    size_t n;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_start(const void *a, const void *b)
{
    const struct gl_sample *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Nearest-rank percentile of a sorted distribution, in ms; -1 when empty. */
static double pct(const struct dist *d, double p)
{
    if (d->n == 0)
        return -1;
    size_t rank = (size_t)(p / 100.0 * (double)d->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > d->n)
        rank = d->n;
    return (double)d->v[rank - 1] / NS_PER_MS;
}

static void dist_sort(struct dist *d)
{
    qsort(d->v, d->n, sizeof(*d->v), cmp_i64);
}

static json_t *jnum(double v)
{
    return v < 0 ? json_null() : json_real((double)(int64_t)(v * 1000 + 0.5) / 1000);
}

static json_t *dist_json(const struct dist *d)
{
    double sum = 0;
    for (size_t i = 0; i < d->n; i++)
        sum += (double)d->v[i];
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o}", "n", (json_int_t)d->n, "p50", jnum(pct(d, 50)), "p90", jnum(pct(d, 90)),
                     "p99", jnum(pct(d, 99)), "mean", jnum(d->n ? sum / (double)d->n / NS_PER_MS : -1), "min",
                     jnum(d->n ? (double)d->v[0] / NS_PER_MS : -1), "max", jnum(d->n ? (double)d->v[d->n - 1] / NS_PER_MS : -1));
}

static int sample_ok(const struct gl_sample *s)
{
    return s->fail == GL_FAIL_NONE && s->status >= 200 && s->status < 300;
}

struct summary {
    uint64_t sent, ok, errors, fails[GL_FAIL__COUNT];
    uint64_t status[600];
    uint64_t tokens;
    uint64_t warm_sent, warm_ok, warm_errors;
    struct dist ttft, tpot, e2e;
};

static void summarize(const struct gl_flow *f, struct summary *m)
{
    memset(m, 0, sizeof(*m));
    m->ttft.v = calloc(f->nsamples + 1, sizeof(int64_t));
    m->tpot.v = calloc(f->nsamples + 1, sizeof(int64_t));
    m->e2e.v = calloc(f->nsamples + 1, sizeof(int64_t));
    if (!m->ttft.v || !m->tpot.v || !m->e2e.v) {
        gg_error("out of memory");
        abort();
    }
    for (size_t i = 0; i < f->nsamples; i++) {
        const struct gl_sample *s = &f->samples[i];
        int ok = sample_ok(s);
        if (s->warmup) {
            m->warm_sent++;
            if (ok)
                m->warm_ok++;
            else
                m->warm_errors++;
            continue;
        }
        m->sent++;
        if (!ok) {
            m->errors++;
            if (s->fail != GL_FAIL_NONE)
                m->fails[s->fail]++;
            else if (s->status >= 0 && s->status < 600)
                m->status[s->status]++;
            continue;
        }
        m->ok++;
        m->tokens += (uint64_t)s->tokens;
        m->e2e.v[m->e2e.n++] = s->e2e;
        if (s->ttft >= 0) {
            m->ttft.v[m->ttft.n++] = s->ttft;
            /* (e2e - ttft) / (tokens - 1): the decode time per token after the first */
            if (f->stream && s->tokens > 1)
                m->tpot.v[m->tpot.n++] = (s->e2e - s->ttft) / (s->tokens - 1);
        }
    }
    dist_sort(&m->ttft);
    dist_sort(&m->tpot);
    dist_sort(&m->e2e);
}

static void summary_free(struct summary *m)
{
    free(m->ttft.v);
    free(m->tpot.v);
    free(m->e2e.v);
}

static void errors_text(const struct gl_flow *f, const struct summary *m, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int st = 0; st < 600 && off < len; st++)
        if (m->status[st])
            off += snprintf(buf + off, len - off, "%s%d:%llu", off ? " " : "", st, (unsigned long long)m->status[st]);
    for (int k = 1; k < GL_FAIL__COUNT && off < len; k++)
        if (m->fails[k])
            off += snprintf(buf + off, len - off, "%s%s:%llu", off ? " " : "", fail_names[k], (unsigned long long)m->fails[k]);
    if (f->dropped && off < len)
        off += snprintf(buf + off, len - off, "%sdropped:%llu", off ? " " : "", (unsigned long long)f->dropped);
    if (off == 0)
        snprintf(buf, len, "-");
}

static void fmt_ms(char *buf, size_t len, double v)
{
    if (v < 0)
        snprintf(buf, len, "-");
    else if (v < 10)
        snprintf(buf, len, "%.2f", v);
    else
        snprintf(buf, len, "%.1f", v);
}

static void print_table(const struct gl_config *cfg, struct summary *ms)
{
    printf("%-12s %7s %7s %9s %9s %9s %9s %9s %9s %9s  %s\n", "flow", "sent", "ok", "ttft_p50", "ttft_p90", "ttft_p99", "tpot_p50",
           "e2e_p50", "e2e_p99", "tok/s", "errors");
    for (size_t i = 0; i < cfg->nflows; i++) {
        const struct gl_flow *f = &cfg->flows[i];
        struct summary *m = &ms[i];
        char a[32], b[32], c[32], d[32], e[32], g[32], err[512];
        fmt_ms(a, sizeof(a), pct(&m->ttft, 50));
        fmt_ms(b, sizeof(b), pct(&m->ttft, 90));
        fmt_ms(c, sizeof(c), pct(&m->ttft, 99));
        fmt_ms(d, sizeof(d), pct(&m->tpot, 50));
        fmt_ms(e, sizeof(e), pct(&m->e2e, 50));
        fmt_ms(g, sizeof(g), pct(&m->e2e, 99));
        errors_text(f, m, err, sizeof(err));
        printf("%-12s %7llu %7llu %9s %9s %9s %9s %9s %9s %9.1f  %s\n", f->name, (unsigned long long)m->sent,
               (unsigned long long)m->ok, a, b, c, d, e, g, f->duration > 0 ? (double)m->tokens / f->duration : 0.0, err);
    }
    printf("(times in ms; requests started in the warm-up are left out)\n");
    fflush(stdout);
}

static json_t *windows_json(const struct gl_flow *f, size_t nwin)
{
    json_t *arr = json_array();
    struct gl_sample *sorted = malloc((f->nsamples + 1) * sizeof(*sorted));
    struct dist d = {.v = malloc((f->nsamples + 1) * sizeof(int64_t))};
    if (!sorted || !d.v) {
        gg_error("out of memory");
        abort();
    }
    memcpy(sorted, f->samples, f->nsamples * sizeof(*sorted));
    qsort(sorted, f->nsamples, sizeof(*sorted), cmp_start);
    size_t j = 0;
    for (size_t t = 0; t < nwin; t++) {
        int64_t lim = (int64_t)(t + 1) * NS_PER_SEC;
        uint64_t sent = 0, ok = 0, errors = 0;
        d.n = 0;
        for (; j < f->nsamples && sorted[j].start < lim; j++) {
            const struct gl_sample *s = &sorted[j];
            sent++;
            if (!sample_ok(s)) {
                errors++;
                continue;
            }
            ok++;
            if (s->ttft >= 0)
                d.v[d.n++] = s->ttft;
        }
        dist_sort(&d);
        json_array_append_new(arr, json_pack("{s:I, s:b, s:I, s:I, s:I, s:I, s:o, s:o, s:I}", "t", (json_int_t)t, "warmup",
                                             (double)t < f->warmup, "sent", (json_int_t)sent, "ok", (json_int_t)ok, "errors",
                                             (json_int_t)errors, "dropped", (json_int_t)(t < f->ndrop_sec ? f->drop_per_sec[t] : 0),
                                             "ttft_p50_ms", jnum(pct(&d, 50)), "ttft_p99_ms", jnum(pct(&d, 99)), "tokens",
                                             (json_int_t)(t < f->ntok_sec ? f->tok_per_sec[t] : 0)));
    }
    free(sorted);
    free(d.v);
    return arr;
}

static json_t *flow_json(const struct gl_config *cfg, const struct gl_flow *f, const struct summary *m, size_t nwin)
{
    json_t *by_status = json_object();
    for (int st = 0; st < 600; st++) {
        if (m->status[st]) {
            char k[8];
            snprintf(k, sizeof(k), "%d", st);
            json_object_set_new(by_status, k, json_integer((json_int_t)m->status[st]));
        }
    }
    json_t *errors = json_pack("{s:I, s:o}", "total", (json_int_t)(m->errors + f->dropped), "status", by_status);
    for (int k = 1; k < GL_FAIL__COUNT; k++)
        json_object_set_new(errors, fail_names[k], json_integer((json_int_t)m->fails[k]));
    json_object_set_new(errors, "dropped", json_integer((json_int_t)f->dropped));

    json_t *o = json_pack("{s:s, s:s, s:b, s:i, s:i, s:s, s:f, s:i, s:f, s:f}", "name", f->name, "api", api_names[f->api], "stream",
                          f->stream, "max_tokens", f->max_tokens, "prompt_tokens", f->prompt_tokens, "model", f->model, "rate",
                          f->rate, "conc", f->conc, "warmup_s", f->warmup, "duration_s", f->duration);
    json_object_set_new(o, "sent", json_integer((json_int_t)m->sent));
    json_object_set_new(o, "ok", json_integer((json_int_t)m->ok));
    json_object_set_new(o, "errors", errors);
    json_object_set_new(o, "ttft_ms", dist_json(&m->ttft));
    json_object_set_new(o, "tpot_ms", dist_json(&m->tpot));
    json_object_set_new(o, "e2e_ms", dist_json(&m->e2e));
    json_object_set_new(o, "tokens", json_integer((json_int_t)m->tokens));
    json_object_set_new(o, "tokens_per_s", jnum(f->duration > 0 ? (double)m->tokens / f->duration : 0));
    json_object_set_new(o, "warmup",
                        json_pack("{s:I, s:I, s:I, s:I}", "sent", (json_int_t)m->warm_sent, "ok", (json_int_t)m->warm_ok, "errors",
                                  (json_int_t)m->warm_errors, "dropped", (json_int_t)f->dropped_warmup));
    json_object_set_new(o, "windows", windows_json(f, nwin));
    return o;
}

int gl_report(struct gl_config *cfg, int64_t run_ns)
{
    struct summary *ms = calloc(cfg->nflows, sizeof(*ms));
    if (ms == NULL)
        return -ENOMEM;
    int64_t last = run_ns;
    for (size_t i = 0; i < cfg->nflows; i++) {
        summarize(&cfg->flows[i], &ms[i]);
        int64_t end = (int64_t)((cfg->flows[i].warmup + cfg->flows[i].duration) * NS_PER_SEC);
        if (end > last)
            last = end;
    }
    if (!cfg->quiet)
        print_table(cfg, ms);

    int err = 0;
    if (cfg->json_path != NULL) {
        size_t nwin = (size_t)((last + NS_PER_SEC - 1) / NS_PER_SEC);
        json_t *flows = json_array();
        for (size_t i = 0; i < cfg->nflows; i++)
            json_array_append_new(flows, flow_json(cfg, &cfg->flows[i], &ms[i], nwin));
        json_t *root = json_pack("{s:s, s:I, s:f, s:I, s:f, s:o}", "target", cfg->target, "seed", (json_int_t)cfg->seed,
                                 "timeout_s", cfg->timeout, "max_outstanding", (json_int_t)cfg->max_outstanding, "run_s",
                                 (double)run_ns / NS_PER_SEC, "flows", flows);
        if (root == NULL || json_dump_file(root, cfg->json_path, JSON_INDENT(1)) != 0) {
            gg_error("cannot write %s", cfg->json_path);
            err = -EIO;
        }
        json_decref(root);
    }
    for (size_t i = 0; i < cfg->nflows; i++)
        summary_free(&ms[i]);
    free(ms);
    return err;
}
