/* Prometheus registry. Series live in one open-addressing table per family, guarded by a mutex: a
 * request touches a few series once, at its end, so contention is negligible next to the proxying. */
#include "gridgate/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 64
#define MAX_COLLECTORS 16
#define MAX_BUCKETS 16

typedef struct series {
    char *labels;
    uint64_t count; /* counter value, or histogram observation count */
    double sum;
    uint64_t buckets[MAX_BUCKETS];
} series_t;

struct gg_metric {
    const char *name, *help;
    int is_histogram;
    double bounds[MAX_BUCKETS];
    size_t num_bounds;
    pthread_mutex_t lock;
    series_t *series;
    size_t num_series, cap;
};

const double gg_metrics_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 0};

static gg_metric_t families[MAX_FAMILIES];
static size_t num_families;
static void (*collectors[MAX_COLLECTORS])(gg_buf_t *);
static size_t num_collectors;

static gg_metric_t *declare(const char *name, const char *help, int hist, const double *buckets)
{
    for (size_t i = 0; i < num_families; i++)
        if (strcmp(families[i].name, name) == 0)
            return &families[i];
    if (num_families == MAX_FAMILIES)
        abort();
    gg_metric_t *m = &families[num_families++];
    *m = (gg_metric_t){.name = name, .help = help, .is_histogram = hist};
    pthread_mutex_init(&m->lock, NULL);
    for (; hist && buckets[m->num_bounds] != 0 && m->num_bounds < MAX_BUCKETS; m->num_bounds++)
        m->bounds[m->num_bounds] = buckets[m->num_bounds];
    return m;
}

gg_metric_t *gg_metric_counter(const char *name, const char *help)
{
    return declare(name, help, 0, NULL);
}

gg_metric_t *gg_metric_histogram(const char *name, const char *help, const double *buckets)
{
    return declare(name, help, 1, buckets);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Called with the lock held. */
static series_t *lookup(gg_metric_t *m, const char *labels)
{
    if (m->num_series * 2 >= m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        series_t *n = calloc(ncap, sizeof(*n));
        if (n == NULL)
            abort();
        for (size_t i = 0; i < m->cap; i++) {
            if (m->series[i].labels == NULL)
                continue;
            size_t j = hash(m->series[i].labels) & (ncap - 1);
            while (n[j].labels != NULL)
                j = (j + 1) & (ncap - 1);
            n[j] = m->series[i];
        }
        free(m->series);
        m->series = n;
        m->cap = ncap;
    }
    size_t j = hash(labels) & (m->cap - 1);
    while (m->series[j].labels != NULL) {
        if (strcmp(m->series[j].labels, labels) == 0)
            return &m->series[j];
        j = (j + 1) & (m->cap - 1);
    }
    m->series[j].labels = strdup(labels);
    if (m->series[j].labels == NULL)
        abort();
    m->num_series++;
    return &m->series[j];
}

void gg_metric_add(gg_metric_t *m, const char *labels, uint64_t v)
{
    pthread_mutex_lock(&m->lock);
    lookup(m, labels)->count += v;
    pthread_mutex_unlock(&m->lock);
}

void gg_metric_observe(gg_metric_t *m, const char *labels, double v)
{
    pthread_mutex_lock(&m->lock);
    series_t *s = lookup(m, labels);
    s->count++;
    s->sum += v;
    for (size_t i = 0; i < m->num_bounds; i++)
        if (v <= m->bounds[i])
            s->buckets[i]++;
    pthread_mutex_unlock(&m->lock);
}

void gg_metrics_label(gg_buf_t *b, const char *name, const char *value)
{
    if (b->len != 0)
        gg_buf_append_char(b, ',');
    gg_buf_append_str(b, name);
    gg_buf_append(b, "=\"", 2);
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\\' || *p == '"')
            gg_buf_append_char(b, '\\');
        if (*p == '\n') {
            gg_buf_append(b, "\\n", 2);
            continue;
        }
        gg_buf_append_char(b, *p);
    }
    gg_buf_append_char(b, '"');
}

void gg_metrics_add_collector(void (*collect)(gg_buf_t *out))
{
    if (num_collectors < MAX_COLLECTORS)
        collectors[num_collectors++] = collect;
}

static void render_series(gg_buf_t *out, const char *name, const char *suffix, const char *labels, const char *extra)
{
    int has = labels[0] != '\0' || extra != NULL;
    gg_buf_appendf(out, "%s%s%s%s%s%s%s", name, suffix, has ? "{" : "", labels, labels[0] && extra ? "," : "",
                   extra ? extra : "", has ? "}" : "");
}

void gg_metrics_render(gg_buf_t *out)
{
    for (size_t f = 0; f < num_families; f++) {
        gg_metric_t *m = &families[f];
        gg_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->is_histogram ? "histogram" : "counter");
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->cap; i++) {
            series_t *s = &m->series[i];
            if (s->labels == NULL)
                continue;
            if (!m->is_histogram) {
                render_series(out, m->name, "", s->labels, NULL);
                gg_buf_appendf(out, " %llu\n", (unsigned long long)s->count);
                continue;
            }
            char le[48];
            for (size_t b = 0; b < m->num_bounds; b++) {
                snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[b]);
                render_series(out, m->name, "_bucket", s->labels, le);
                gg_buf_appendf(out, " %llu\n", (unsigned long long)s->buckets[b]);
            }
            render_series(out, m->name, "_bucket", s->labels, "le=\"+Inf\"");
            gg_buf_appendf(out, " %llu\n", (unsigned long long)s->count);
            render_series(out, m->name, "_sum", s->labels, NULL);
            gg_buf_appendf(out, " %.6f\n", s->sum);
            render_series(out, m->name, "_count", s->labels, NULL);
            gg_buf_appendf(out, " %llu\n", (unsigned long long)s->count);
        }
        pthread_mutex_unlock(&m->lock);
    }
    for (size_t i = 0; i < num_collectors; i++)
        collectors[i](out);
}
