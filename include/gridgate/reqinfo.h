/* What the gateway needs to know about a client request body: the API dialect and endpoint, the
 * model, streaming, token limits and a prompt-size estimate, with client-facing messages for every
 * way a body can be wrong. Also the few edits the gateway makes before forwarding (model alias,
 * forced usage reporting). Pure functions, no I/O. */
#ifndef GG_REQINFO_H
#define GG_REQINFO_H
#include <jansson.h>
#include <stddef.h>

/** The API family a client speaks or an engine serves. */
enum gg_dialect { GG_DIALECT_OPENAI, GG_DIALECT_OLLAMA };

/** Which call, independent of dialect. */
enum gg_endpoint {
    GG_EP_CHAT,         /* /v1/chat/completions, /api/chat */
    GG_EP_COMPLETION,   /* /v1/completions, /api/generate */
    GG_EP_EMBED,        /* /v1/embeddings, /api/embed */
    GG_EP_EMBED_LEGACY, /* /api/embeddings (Ollama only) */
    GG_EP_SHOW,         /* /api/show (Ollama only) */
};

/** Bounds on what a request body may contain. */
#define GG_REQINFO_MAX_DEPTH 128
#define GG_REQINFO_MAX_MESSAGES 100000
/** Prompt-token estimate charged per image (a typical vision encoder's tile budget). */
#define GG_REQINFO_IMAGE_TOKENS 1000
/** Room inside gg_reqinfo_t for the model and user names the scanner copies out of the body. */
#define GG_REQINFO_INLINE_MAX 256
/** How every JSON body leaving the gateway is serialized: compact, and 0.7 stays "0.7". */
#define GG_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Not copyable by value (model and user may point into it): hand it on with gg_reqinfo_move. */
typedef struct gg_reqinfo {
    json_t *root;     /* the parsed body, built on first need by gg_reqinfo_root (owned) */
    const char *body; /* the bytes parsed; must outlive the reqinfo (the request's entity) */
    size_t body_len;
    enum gg_dialect dialect;
    enum gg_endpoint ep;
    const char *model;      /* points into root; never NULL after a successful parse */
    int stream;             /* effective: OpenAI default 0, Ollama chat/generate default 1, embed/show 0 */
    int include_usage;      /* OpenAI stream_options.include_usage */
    long max_tokens;        /* max_completion_tokens | max_tokens | options.num_predict; -1 if absent or unbounded */
    long prompt_tokens_est; /* ceil(code points / 4) of all prompt text, +4 per message, +1000 per image */
    const char *user;       /* OpenAI "user" field or NULL */
    int is_load_unload;     /* Ollama chat/generate with nothing to generate from: a model load (or unload) */
    int is_unload;          /* ... and keep_alive is 0: the client asks to unload the model */
    int encoding_base64;    /* "encoding_format" is "base64" (OpenAI embeddings) */
    char inline_names[GG_REQINFO_INLINE_MAX];
} gg_reqinfo_t;

/**
 * Parses and validates a request body. Returns 0, or -EINVAL with `err` set to a message fit for the
 * client: where the JSON broke ("invalid JSON at line 1 column 17: ..."), invalid UTF-8, which field
 * has the wrong type ("'messages' must be an array"), "'model' is required", or which bound was
 * exceeded. On error `ri` holds nothing to dispose (disposing it anyway is harmless).
 */
int gg_reqinfo_parse(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
                     size_t errlen);
void gg_reqinfo_dispose(gg_reqinfo_t *ri);
/** Moves a parsed reqinfo (fixing its inner pointers); `src` is left empty. */
void gg_reqinfo_move(gg_reqinfo_t *dst, gg_reqinfo_t *src);
/** The body as a jansson tree, parsed on first call (NULL only if the body bytes changed since). */
json_t *gg_reqinfo_root(gg_reqinfo_t *ri);

/*
 * gg_reqinfo_parse is the two functions below: the one-pass scanner (no allocation, no tree) decides
 * almost every body; it returns 1 for what it does not vouch for (malformed JSON, escaped keys, numbers
 * near the limits, deep nesting), and the jansson path then gives the answer and the exact message.
 * Both are exported for the differential fuzzer, which holds them to the same results.
 */
int gg_reqinfo_parse_scan(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
                          size_t errlen);
int gg_reqinfo_parse_tree(gg_reqinfo_t *ri, enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len, char *err,
                          size_t errlen);

/** Replaces the model name (alias resolution); `ri->model` then points at the new name. */
void gg_reqinfo_set_model(gg_reqinfo_t *ri, const char *model);
/**
 * For an OpenAI streaming request: makes the upstream report usage in its final chunk
 * (stream_options.include_usage = true). Returns 1 if the client had not asked for it, so the
 * gateway must drop the usage-only chunk (see GG_USAGE_EV_USAGE_ONLY) before it reaches the client;
 * 0 if nothing changed or nothing applies.
 */
int gg_reqinfo_force_include_usage(gg_reqinfo_t *ri);
/** The body as compact JSON (malloc'd, NUL-terminated, length in *len); reflects edits to ri->root. */
char *gg_reqinfo_serialize(gg_reqinfo_t *ri, size_t *len);

#endif
