/* The JSON-lines access log: one line per answered request. */
#ifndef GG_ACCESSLOG_H
#define GG_ACCESSLOG_H

#include <h2o.h>
#include <stdint.h>

typedef struct gg_accesslog_entry {
    h2o_req_t *req; /* or NULL, then method and path say what it was (a spliced stream outlives its req) */
    h2o_iovec_t method, path;
    const char *model, *backend, *tenant, *error;
    int status;
    uint64_t ttft_us, duration_us, bytes_out, spliced_bytes;
    long tokens_in, tokens_out;
    unsigned attempts;
    int stream, spliced;
} gg_accesslog_entry_t;

/** Opens the log: a path (appended to), "-" for stderr, or NULL/"" for none. 0 or -errno. */
int gg_accesslog_open(const char *path);
/** Writes one line. The query string is never logged: keys sometimes travel there. */
void gg_accesslog_write(const gg_accesslog_entry_t *e);
#endif
