/* A growable byte buffer for building response bytes (SSE/NDJSON frames, JSON bodies).
 * Out-of-memory aborts, h2o style, so callers never check for allocation failure. */
#ifndef GG_BUF_H
#define GG_BUF_H
#include <stddef.h>

typedef struct gg_buf {
    char *base;
    size_t len;
    size_t cap;
} gg_buf_t;

#define GG_BUF_INIT                                                                                                                \
    {                                                                                                                              \
        NULL, 0, 0                                                                                                                 \
    }

/** Makes room for `extra` more bytes (plus a NUL the buffer always keeps after `len`). */
void gg_buf_reserve(gg_buf_t *b, size_t extra);
void gg_buf_append(gg_buf_t *b, const void *data, size_t len);
void gg_buf_appendf(gg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Appends `s` as a quoted JSON string; `s` must be UTF-8 (control characters, quote and backslash escaped). */
void gg_buf_append_json_str(gg_buf_t *b, const char *s, size_t len);
/** Forgets the contents and keeps the memory. */
void gg_buf_reset(gg_buf_t *b);
void gg_buf_free(gg_buf_t *b);

static inline void gg_buf_append_str(gg_buf_t *b, const char *s);
static inline void gg_buf_append_char(gg_buf_t *b, char c);

#include <string.h>
static inline void gg_buf_append_str(gg_buf_t *b, const char *s)
{
    gg_buf_append(b, s, strlen(s));
}
static inline void gg_buf_append_char(gg_buf_t *b, char c)
{
    if (b->len + 1 >= b->cap)
        gg_buf_reserve(b, 1);
    b->base[b->len++] = c;
    b->base[b->len] = '\0';
}
#endif
