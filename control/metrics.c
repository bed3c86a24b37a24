/* Prometheus registry. Series live in one open-addressing table per family, guarded by a mutex that
 * only creation and scrapes take; values are atomics. Hot paths reach a series through a per-thread
 * cache keyed by the raw label values (gg_metric_series_of), so a request's metrics cost no formatting,
 * no lock and no allocation once its label set was seen. */
#include "gridgate/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 64
#define MAX_COLLECTORS 16
#define MAX_BUCKETS 16

struct gg_series {
    char *labels;
    const struct gg_metric *family;
    _Atomic uint64_t count; /* counter value, or histogram observation count */
    _Atomic uint64_t sum;   /* histograms: the bits of a double */
    _Atomic uint64_t buckets[MAX_BUCKETS];
};
typedef struct gg_series series_t;

struct gg_metric {
    const char *name, *help;
    int is_histogram;
    double bounds[MAX_BUCKETS];
    size_t num_bounds;
    pthread_mutex_t lock;
    series_t **series; /* nodes never move, so pointers to them stay valid */
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
        series_t **n = calloc(ncap, sizeof(*n));
        if (n == NULL)
            abort();
        for (size_t i = 0; i < m->cap; i++) {
            if (m->series[i] == NULL)
                continue;
            size_t j = hash(m->series[i]->labels) & (ncap - 1);
            while (n[j] != NULL)
                j = (j + 1) & (ncap - 1);
            n[j] = m->series[i];
        }
        free(m->series);
        m->series = n;
        m->cap = ncap;
    }
    size_t j = hash(labels) & (m->cap - 1);
    while (m->series[j] != NULL) {
        if (strcmp(m->series[j]->labels, labels) == 0)
            return m->series[j];
        j = (j + 1) & (m->cap - 1);
    }
    series_t *n = calloc(1, sizeof(*n));
    if (n == NULL || (n->labels = strdup(labels)) == NULL)
        abort();
    n->family = m;
    m->series[j] = n;
    m->num_series++;
    return n;
}

gg_series_t *gg_metric_series(gg_metric_t *m, const char *labels)
{
    pthread_mutex_lock(&m->lock);
    series_t *s = lookup(m, labels);
    pthread_mutex_unlock(&m->lock);
    return s;
}

void gg_series_add(gg_series_t *s, uint64_t v)
{
    atomic_fetch_add_explicit(&s->count, v, memory_order_relaxed);
}

void gg_series_observe(gg_series_t *s, double v)
{
    const gg_metric_t *m = s->family;
    for (size_t i = 0; i < m->num_bounds; i++)
        if (v <= m->bounds[i])
            atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&s->sum, memory_order_relaxed), nw;
    do {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        memcpy(&nw, &d, sizeof(nw));
    } while (!atomic_compare_exchange_weak_explicit(&s->sum, &old, nw, memory_order_relaxed, memory_order_relaxed));
    /* count last: a scrape never sees more observations than bucket increments */
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
}

void gg_metric_add(gg_metric_t *m, const char *labels, uint64_t v)
{
    gg_series_add(gg_metric_series(m, labels), v);
}

void gg_metric_observe(gg_metric_t *m, const char *labels, double v)
{
    gg_series_observe(gg_metric_series(m, labels), v);
}

/* --- per-thread cache: label values -> series ----------------------------------------------------- */

#define CACHE_SLOTS 128
#define CACHE_KEY_MAX 200

typedef struct cache_entry {
    const gg_metric_t *m;
    const char *const *names;
    series_t *s;
    size_t keylen;
    char key[CACHE_KEY_MAX]; /* the values, each with its NUL */
} cache_entry_t;

static __thread cache_entry_t tcache[CACHE_SLOTS]; /* static TLS: nothing to free when a thread ends */

gg_series_t *gg_metric_series_of(gg_metric_t *m, const char *const names[], const char *const values[], size_t n)
{
    uint64_t h = (uint64_t)(uintptr_t)m * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)names;
    size_t keylen = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = values[i] ? values[i] : "";
        for (; *v; v++, keylen++)
            h = (h ^ (unsigned char)*v) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL;
        keylen++;
    }
    cache_entry_t *e = keylen <= CACHE_KEY_MAX ? &tcache[(h ^ h >> 29) & (CACHE_SLOTS - 1)] : NULL;
    if (e != NULL && e->m == m && e->names == names && e->keylen == keylen) {
        const char *k = e->key;
        size_t i;
        for (i = 0; i < n; i++) {
            const char *v = values[i] ? values[i] : "";
            size_t vl = strlen(v);
            if (memcmp(k, v, vl + 1) != 0)
                break;
            k += vl + 1;
        }
        if (i == n)
            return e->s;
    }
    gg_buf_t l = GG_BUF_INIT;
    for (size_t i = 0; i < n; i++)
        gg_metrics_label(&l, names[i], values[i]);
    series_t *s = gg_metric_series(m, l.base ? l.base : "");
    gg_buf_free(&l);
    if (e != NULL) {
        char *k = e->key;
        for (size_t i = 0; i < n; i++) {
            const char *v = values[i] ? values[i] : "";
            size_t vl = strlen(v);
            memcpy(k, v, vl + 1);
            k += vl + 1;
        }
        e->m = m;
        e->names = names;
        e->keylen = keylen;
        e->s = s;
    }
    return s;
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
    gg_buf_appendf(out, "%s%s%s%s%s%s%s", name, suffix, has ? "{" : "", labels, labels[0] && extra ? "," : "", extra ? extra : "",
                   has ? "}" : "");
}

void gg_metrics_render(gg_buf_t *out)
{
    for (size_t f = 0; f < num_families; f++) {
        gg_metric_t *m = &families[f];
        gg_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->is_histogram ? "histogram" : "counter");
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->cap; i++) {
            series_t *s = m->series[i];
            if (s == NULL)
                continue;
            uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
            if (!m->is_histogram) {
                render_series(out, m->name, "", s->labels, NULL);
                gg_buf_appendf(out, " %llu\n", (unsigned long long)count);
                continue;
            }
            char le[48];
            for (size_t b = 0; b < m->num_bounds; b++) {
                uint64_t n = atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
                snprintf(le, sizeof(le), "le=\"%g\"", m->bounds[b]);
                render_series(out, m->name, "_bucket", s->labels, le);
                gg_buf_appendf(out, " %llu\n", (unsigned long long)(n < count ? n : count));
            }
            uint64_t sb = atomic_load_explicit(&s->sum, memory_order_relaxed);
            double sum;
            memcpy(&sum, &sb, sizeof(sum));
            render_series(out, m->name, "_bucket", s->labels, "le=\"+Inf\"");
            gg_buf_appendf(out, " %llu\n", (unsigned long long)count);
            render_series(out, m->name, "_sum", s->labels, NULL);
            gg_buf_appendf(out, " %.6f\n", sum);
            render_series(out, m->name, "_count", s->labels, NULL);
            gg_buf_appendf(out, " %llu\n", (unsigned long long)count);
        }
        pthread_mutex_unlock(&m->lock);
    }
    for (size_t i = 0; i < num_collectors; i++)
        collectors[i](out);
}
