/* gg_buf_t: the growable byte buffer every response builder writes into. */
#include "gridgate/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gg_buf_reserve(gg_buf_t *b, size_t extra)
{
    if (b->cap - b->len > extra && b->base != NULL)
        return;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap - b->len <= extra) {
        if (cap > ((size_t)-1) / 2)
            abort();
        cap *= 2;
    }
    char *p = realloc(b->base, cap);
    if (p == NULL)
        abort();
    b->base = p;
    b->cap = cap;
}

void gg_buf_append(gg_buf_t *b, const void *data, size_t len)
{
    gg_buf_reserve(b, len);
    if (len != 0)
        memcpy(b->base + b->len, data, len);
    b->len += len;
    b->base[b->len] = '\0';
}

void gg_buf_appendf(gg_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    gg_buf_reserve(b, 64);
    va_start(ap, fmt);
    int n = vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    if ((size_t)n >= b->cap - b->len) {
        gg_buf_reserve(b, (size_t)n);
        va_start(ap, fmt);
        vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void gg_buf_append_json_str(gg_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    gg_buf_reserve(b, len * 6 + 2);
    char *o = b->base + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->base);
    b->base[b->len] = '\0';
}

void gg_buf_reset(gg_buf_t *b)
{
    b->len = 0;
    if (b->base != NULL)
        b->base[0] = '\0';
}

void gg_buf_free(gg_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}
