/* gzip on the client leg (and the upstream leg): zlib deflate of whole buffers and of flushed streams, and a
 * bounded inflater that refuses zip bombs early.
 *
 * The inflater stops as soon as its output passes the size limit, or passes max_ratio times the compressed
 * bytes consumed so far (once the output is over GG_INFLATE_RATIO_FLOOR, so small bodies that compress well
 * are not refused). It produces output in 64 KiB steps, so a 10 GB bomb costs at most the limit in memory
 * and about limit/64 KiB calls into zlib before it is refused. */
#ifndef GG_GZIP_H
#define GG_GZIP_H
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "gridgate/buf.h"

/* Errors of the inflater; callers map them to HTTP: 413, 413, 400. */
#define GG_INFLATE_TOO_LARGE (-EFBIG)
#define GG_INFLATE_RATIO (-ERANGE)
#define GG_INFLATE_CORRUPT (-EBADMSG)

/* The ratio limit applies only beyond this much output. */
#define GG_INFLATE_RATIO_FLOOR (1u << 20)

/** The `compression` block of the config, copied here at start so common code can reach it. */
typedef struct gg_gzip_config {
    uint32_t min_bytes;          /* compress responses of at least this many bytes */
    int level;                   /* zlib level 1..9; 0 turns response compression off */
    int stream;                  /* also compress SSE/NDJSON streams (each event still flushed) */
    uint64_t max_inflated_bytes; /* gzip request bodies: decompressed-size limit */
    uint32_t max_ratio;          /* gzip request bodies: decompressed/compressed limit; 0 = none */
} gg_gzip_config_t;

extern gg_gzip_config_t gg_gzip_config;

/** Whether an Accept-Encoding value admits gzip ("gzip", "x-gzip" or "*", not with q=0). */
int gg_gzip_accepted(const char *value, size_t len);

/** Appends the gzip (RFC 1952) form of `in` to `out`. Returns 0 or -EINVAL for a bad level. */
int gg_gzip_compress(const void *in, size_t len, int level, gg_buf_t *out);

/** A gzip stream whose every feed ends on a byte boundary the client can decode at once (Z_SYNC_FLUSH). */
typedef struct gg_deflater {
    z_stream z;
    int live;
} gg_deflater_t;

int gg_deflater_init(gg_deflater_t *d, int level);
/** Compresses `in` and appends what it yields to `out`; `finish` writes the gzip trailer. */
int gg_deflater_feed(gg_deflater_t *d, const void *in, size_t len, int finish, gg_buf_t *out);
void gg_deflater_dispose(gg_deflater_t *d);

/** A bounded streaming gunzip. Concatenated gzip members are one stream (RFC 1952 section 2.2). */
typedef struct gg_inflater {
    z_stream z;
    uint64_t max_out;   /* 0 = no size limit */
    uint32_t max_ratio; /* 0 = no ratio limit */
    uint64_t in_total, out_total;
    int live;
    int member_done; /* the last member ended; more bytes must start another one */
    int failed;      /* sticky error */
} gg_inflater_t;

void gg_inflater_init(gg_inflater_t *f, uint64_t max_out, uint32_t max_ratio);
/** Inflates `in`, appending to `out`. Returns 0 or GG_INFLATE_* (sticky: later feeds return it too). */
int gg_inflater_feed(gg_inflater_t *f, const void *in, size_t len, gg_buf_t *out);
/** At the end of input: 0 when the gzip stream ended cleanly, GG_INFLATE_CORRUPT when it was cut short. */
int gg_inflater_finish(gg_inflater_t *f);
void gg_inflater_dispose(gg_inflater_t *f);

/** One-shot form: the whole of `in` must be a complete gzip stream. */
int gg_gunzip(const void *in, size_t len, uint64_t max_out, uint32_t max_ratio, gg_buf_t *out);
#endif
