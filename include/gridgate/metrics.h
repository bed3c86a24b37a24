/* The Prometheus registry: labelled counters and histograms, written from any thread, rendered as text
 * exposition on GET /metrics. Gauges that already live elsewhere (backend state, in-flight) are rendered
 * by collectors at scrape time instead of being copied here. */
#ifndef GG_METRICS_H
#define GG_METRICS_H

#include <stdint.h>

#include "gridgate/buf.h"

typedef struct gg_metric gg_metric_t;
/** One labelled series of a family; lives as long as the process. */
typedef struct gg_series gg_series_t;

/** Declares a counter or histogram family once at start-up. `buckets` (histograms) end with a 0. */
gg_metric_t *gg_metric_counter(const char *name, const char *help);
gg_metric_t *gg_metric_histogram(const char *name, const char *help, const double *buckets);

/**
 * `labels` is the rendered label set without braces, e.g. `model="llama3",code="200"`; use
 * gg_metrics_label() for values that came from outside. Series are created on first use.
 */
void gg_metric_add(gg_metric_t *m, const char *labels, uint64_t v);
void gg_metric_observe(gg_metric_t *m, const char *labels, double v);

/** The series for `labels` (created on first use); the pointer stays valid. Takes the family lock. */
gg_series_t *gg_metric_series(gg_metric_t *m, const char *labels);
/**
 * The series with labels names[i]="values[i]" (escaped; NULL values render as ""). A per-thread cache
 * keyed by (m, the `names` array's address, the values) answers repeated label sets without formatting
 * or locking, so `names` must be a static array per call site.
 */
gg_series_t *gg_metric_series_of(gg_metric_t *m, const char *const names[], const char *const values[], size_t n);
/** Lock-free updates (relaxed atomics). */
void gg_series_add(gg_series_t *s, uint64_t v);
void gg_series_observe(gg_series_t *s, double v);

/** Appends `name="value"` with Prometheus escaping; prefixes a comma when buf is not empty. */
void gg_metrics_label(gg_buf_t *b, const char *name, const char *value);

/** Renders every family and then every collector. */
void gg_metrics_render(gg_buf_t *out);
void gg_metrics_add_collector(void (*collect)(gg_buf_t *out));

/** Common latency buckets in seconds. */
extern const double gg_metrics_latency_buckets[];
#endif
