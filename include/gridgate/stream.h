/* Incremental parsers for the two streaming framings engines use, SSE (text/event-stream, OpenAI
 * dialect) and NDJSON (application/x-ndjson, Ollama dialect), and the token-usage observer that
 * reads one event payload of either dialect for accounting. Pure state machines, no I/O. */
#ifndef GG_STREAM_H
#define GG_STREAM_H
#include <stddef.h>

#include "gridgate/buf.h"
#include "gridgate/reqinfo.h"

enum gg_stream_kind { GG_STREAM_SSE, GG_STREAM_NDJSON };

/**
 * Called once per complete event. SSE: the data payload (several data: lines joined with \n; comments
 * and other fields ignored; an event without data: lines is not reported). NDJSON: one line without
 * its line ending; empty lines are skipped. `data` is valid only during the call.
 */
typedef void (*gg_stream_on_event)(void *ctx, const char *data, size_t len);

typedef struct gg_stream_parser {
    enum gg_stream_kind kind;
    size_t max_event;
    int error;       /* -E2BIG once an event was too long; sticky */
    int skip_lf;     /* the last byte fed was CR, so a leading LF in the next slice ends nothing */
    int has_data;    /* SSE: the event being assembled has at least one data: line */
    gg_buf_t line;   /* an incomplete line carried over between feeds */
    gg_buf_t data;   /* SSE: the data of the event being assembled */
    const char *ref; /* SSE: a single data line still inside the caller's slice (not yet copied) */
    size_t ref_len;
} gg_stream_parser_t;

/** `max_event`: an event (SSE data or NDJSON line) longer than this makes feed fail with -E2BIG. */
void gg_stream_init(gg_stream_parser_t *p, enum gg_stream_kind kind, size_t max_event);
/** Feeds any slice of the stream. Returns 0, or -E2BIG (and stays in error: later feeds return it too). */
int gg_stream_feed(gg_stream_parser_t *p, const char *buf, size_t len, gg_stream_on_event cb, void *ctx);
/** End of stream: NDJSON reports a last line that had no newline; SSE drops an unterminated event (per spec). */
int gg_stream_finish(gg_stream_parser_t *p, gg_stream_on_event cb, void *ctx);
void gg_stream_dispose(gg_stream_parser_t *p);

/** Token usage observed on a response stream (or a whole non-streaming body). */
typedef struct gg_usage {
    long prompt_tokens;     /* -1 unknown */
    long completion_tokens; /* -1 unknown */
    int content_events;     /* events that carried non-empty generated text */
    int done;               /* saw [DONE] (OpenAI) or "done":true (Ollama) */
    int error;              /* the upstream sent an error object */
    char finish_reason[32]; /* OpenAI finish_reason or Ollama done_reason; "" until seen */
} gg_usage_t;

/** What gg_usage_observe saw in one event (bit set). */
enum {
    GG_USAGE_EV_CONTENT = 1,    /* carried generated text */
    GG_USAGE_EV_USAGE_ONLY = 2, /* an OpenAI usage chunk with "choices":[]: drop it if the client did not ask */
    GG_USAGE_EV_DONE = 4,       /* end of stream marker */
    GG_USAGE_EV_INVALID = 8,    /* not JSON (and not [DONE]) */
};

void gg_usage_init(gg_usage_t *u);
/**
 * Reads one event payload. OpenAI: counts chunks with non-empty choices[].delta.content (or .text for
 * completions), reads usage{prompt_tokens,completion_tokens} and finish_reason, and "[DONE]". Ollama:
 * counts lines with non-empty message.content or response, reads prompt_eval_count / eval_count and
 * done / done_reason. Most chunks are decided by one scan of the bytes; chunks that mention usage, a
 * finish or an error (and whole non-stream bodies) get a validating scan, and a jansson parse only
 * when that scan does not vouch for them. Returns GG_USAGE_EV_* bits.
 */
int gg_usage_observe(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len);
/**
 * The two readings gg_usage_observe picks between for payloads that need more than its byte scan,
 * exported for the differential fuzzer: the validating scanner (no allocation; -1 and `u` untouched
 * for what it does not vouch for) and the jansson reference. Same results whenever the scanner decides.
 */
int gg_usage_observe_scan(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len);
int gg_usage_observe_tree(gg_usage_t *u, enum gg_dialect d, const char *data, size_t len);

#endif
