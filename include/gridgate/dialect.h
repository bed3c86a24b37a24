/* Translation between the OpenAI and Ollama dialects, so any client can use any engine: request
 * bodies and paths, non-streaming responses (chat, completion, embeddings), a streaming-response
 * translator fed one upstream event at a time, and the error bodies of both dialects. Pure
 * functions and state machines, no I/O. */
#ifndef GG_DIALECT_H
#define GG_DIALECT_H
#include <jansson.h>
#include <stddef.h>

#include "gridgate/buf.h"
#include "gridgate/reqinfo.h"

/** The path of `ep` in dialect `d` ("/v1/chat/completions", "/api/chat", ...), or NULL if `d` has none. */
const char *gg_endpoint_path(enum gg_dialect d, enum gg_endpoint ep);
/** The dialect and endpoint of a request path (no query string); 0 or -ENOENT. */
int gg_endpoint_lookup(const char *path, size_t len, enum gg_dialect *d, enum gg_endpoint *ep);

/**
 * A new request body for an upstream speaking `to`, from a client body in `from` (a new reference;
 * when from == to it is `body` itself with one more reference). The upstream path goes to `path_out`.
 * Maps model, messages (Ollama images <-> OpenAI image_url data URLs; tool calls and tool results),
 * system prompt, options (temperature, top_p, top_k, min_p, seed, stop, penalties, num_predict <->
 * max_tokens; num_ctx dropped), stream (Ollama default true, OpenAI default false; a streaming OpenAI
 * upstream is always asked for stream_options.include_usage), format "json"/schema <-> response_format,
 * tools, and embeddings (always floats from the upstream). Returns NULL with `err` set when the body
 * cannot be expressed upstream (an image by remote URL for Ollama, token-id prompts, ...).
 */
json_t *gg_dialect_request(enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, json_t *body, char *path_out,
                           size_t path_len, char *err, size_t errlen);

/**
 * A client-dialect (`to`) body from a non-streaming upstream response in `from` (a new reference).
 * `model` is the name reported to the client. `want_base64`: an OpenAI client asked for
 * encoding_format "base64" (little-endian float32). Returns NULL when the upstream body is not
 * the expected shape.
 */
json_t *gg_dialect_response(enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, json_t *upstream_body, const char *model,
                            int want_base64);
/** Rewrites an OpenAI embeddings response's float arrays into base64 float32 strings in place; 0 or -EINVAL. */
int gg_dialect_embedding_encode_base64(json_t *openai_embeddings_response);

/**
 * An error body in dialect `d`, malloc'd, length in *len. OpenAI: {"error":{"message","type","param",
 * "code"}} with null for absent fields; Ollama: {"error":"message"}.
 */
char *gg_dialect_error_body(enum gg_dialect d, const char *message, const char *type, const char *code, const char *param,
                            size_t *len);

/** Streaming-response translator: state across the events of one response. */
typedef struct gg_xlate {
    enum gg_dialect from, to;
    enum gg_endpoint ep;
    int include_usage;
    int started;  /* OpenAI client: the role chunk went out */
    int finished; /* the client-dialect end of stream went out; later events are ignored */
    long created;
    long prompt_tokens, completion_tokens;
    int saw_tool_calls;
    long content_chunks; /* OpenAI upstream: content lines written, the eval_count when usage never came */
    char finish_reason[32];
    char id[40];
    struct {
        long sec, nsec;
    } t0;
    gg_buf_t model_json; /* the model name as a quoted JSON string */
    json_t *tool_calls;  /* OpenAI upstream: tool call fragments, merged by index until the finish */
} gg_xlate_t;

/**
 * `from`: the upstream dialect, `to`: the client's. `model`: the name reported to the client.
 * `include_usage`: an OpenAI client asked for the usage chunk. When from == to events are re-framed
 * unchanged (SSE "data: ...\n\n" or one NDJSON line), except that an OpenAI usage-only chunk is
 * dropped when the client did not ask for usage (the gateway forced it upstream to count tokens).
 */
void gg_xlate_init(gg_xlate_t *x, enum gg_dialect from, enum gg_dialect to, enum gg_endpoint ep, const char *model,
                   int include_usage);
/**
 * One upstream event payload (as reported by the stream parser) in, client-dialect bytes appended to
 * `out`. OpenAI SSE -> Ollama NDJSON: each content delta becomes a done:false line; the done:true line
 * (done_reason, prompt_eval_count, eval_count, durations in ns) goes out at [DONE]. Ollama NDJSON ->
 * OpenAI SSE: a role chunk first, content chunks, then at done:true a finish chunk, the usage chunk
 * (choices:[]) if include_usage, and "data: [DONE]". An upstream error object ends the stream with
 * gg_xlate_error's shape. Returns 0, or -EINVAL for an event that is not JSON (the caller then ends the
 * stream with gg_xlate_error).
 */
int gg_xlate_event(gg_xlate_t *x, const char *data, size_t len, gg_buf_t *out);
/**
 * Ends a broken stream in the client's dialect. OpenAI: a chunk with finish_reason "error" and an
 * "error" object (the SDKs raise it), then [DONE]; Ollama: an {"error":"..."} line. No-op once finished.
 */
int gg_xlate_error(gg_xlate_t *x, const char *message, gg_buf_t *out);
void gg_xlate_dispose(gg_xlate_t *x);

#endif
