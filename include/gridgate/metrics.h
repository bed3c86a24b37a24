/* The Prometheus registry: labelled counters and histograms, written from any thread, rendered as text
 * exposition on GET /metrics. Gauges that already live elsewhere (backend state, in-flight) are rendered
 * by collectors at scrape time instead of being copied here. */
#ifndef GG_METRICS_H
#define GG_METRICS_H

#include <stdint.h>

#include "gridgate/buf.h"

typedef struct gg_metric gg_metric_t;

/** Declares a counter or histogram family once at start-up. `buckets` (histograms) end with a 0. */
gg_metric_t *gg_metric_counter(const char *name, const char *help);
gg_metric_t *gg_metric_histogram(const char *name, const char *help, const double *buckets);

/**
 * `labels` is the rendered label set without braces, e.g. `model="llama3",code="200"`; use
 * gg_metrics_label() for values that came from outside. Series are created on first use.
 */
void gg_metric_add(gg_metric_t *m, const char *labels, uint64_t v);
void gg_metric_observe(gg_metric_t *m, const char *labels, double v);

/** Appends `name="value"` with Prometheus escaping; prefixes a comma when buf is not empty. */
void gg_metrics_label(gg_buf_t *b, const char *name, const char *value);

/** Renders every family and then every collector. */
void gg_metrics_render(gg_buf_t *out);
void gg_metrics_add_collector(void (*collect)(gg_buf_t *out));

/** Common latency buckets in seconds. */
extern const double gg_metrics_latency_buckets[];
#endif
