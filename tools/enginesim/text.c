/* enginesim text: the growable buffer, JSON/base64 encoding, and the deterministic content (tokens,
 * embeddings, PNG images) derived from a hash of (model, prompt, seed). */
#include "sim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static void sb_reserve(struct sbuf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL)
        abort(); /* out of memory: nothing sensible to do in a simulator */
    b->p = p;
    b->cap = cap;
}

void sb_add(struct sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void sb_puts(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->p == NULL || (size_t)n >= b->cap - b->len) {
        sb_reserve(b, n);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += n;
}

void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n + 2);
    sb_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_add(b, s + start, i - start);
        switch (c) {
        case '"':
            sb_add(b, "\\\"", 2);
            break;
        case '\\':
            sb_add(b, "\\\\", 2);
            break;
        case '\n':
            sb_add(b, "\\n", 2);
            break;
        case '\r':
            sb_add(b, "\\r", 2);
            break;
        case '\t':
            sb_add(b, "\\t", 2);
            break;
        default:
            sb_printf(b, "\\u%04x", c);
        }
        start = i + 1;
    }
    sb_add(b, s + start, n - start);
    sb_add(b, "\"", 1);
}

void sb_base64(struct sbuf *b, const void *data, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    sb_reserve(b, (n + 2) / 3 * 4);
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = p[i] << 16 | p[i + 1] << 8 | p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (i < n) {
        unsigned v = p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = o - b->p;
    b->p[b->len] = '\0';
}

void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    if (h == 0)
        h = 0xcbf29ce484222325ULL; /* FNV-1a offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser: spreads every input bit over the output */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Each word comes in its first-token form and its following-token form (leading space). */
static const char *const words[][2] = {
    {"The", " the"},       {"A", " a"},           {"Model", " model"},     {"Engine", " engine"},     {"Token", " token"},
    {"Quick", " quick"},   {"Brown", " brown"},   {"Fox", " fox"},         {"Jumps", " jumps"},       {"Over", " over"},
    {"Lazy", " lazy"},     {"Dog", " dog"},       {"Gateway", " gateway"}, {"Stream", " stream"},     {"Of", " of"},
    {"Light", " light"},   {"River", " river"},   {"Stone", " stone"},     {"Cloud", " cloud"},       {"Green", " green"},
    {"Signal", " signal"}, {"Packet", " packet"}, {"Kernel", " kernel"},   {"Socket", " socket"},     {"Batch", " batch"},
    {"Queue", " queue"},   {"And", " and"},       {"Then", " then"},       {"With", " with"},         {"Under", " under"},
    {"Bright", " bright"}, {"Silent", " silent"}, {"Answer", " answer"},   {"Question", " question"}, {"Every", " every"},
    {"Small", " small"},   {"Large", " large"},   {"Fast", " fast"},       {"Slow", " slow"},         {"Is", " is"},
    {"Was", " was"},       {"Will", " will"},     {"Can", " can"},         {"Not", " not"},           {"Here", " here"},
    {"There", " there"},   {"Now", " now"},       {"Again", " again"},     {"Word", " word"},         {"Line", " line"},
    {"Graph", " graph"},   {"Tree", " tree"},     {"Field", " field"},     {"Order", " order"},       {"Value", " value"},
    {"Number", " number"}, {"Point", " point"},   {"Shape", " shape"},     {"Sound", " sound"},       {"Time", " time"},
    {"Space", " space"},   {"Path", " path"},     {"Door", " door"},       {"Key", " key"},
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

const char *token_text(uint64_t h, unsigned i, size_t *len)
{
    const char *w = words[mix64(h + i) % NWORDS][i == 0 ? 0 : 1];
    *len = strlen(w);
    return w;
}

unsigned estimate_tokens(size_t chars)
{
    size_t t = (chars + 3) / 4;
    return t < 1 ? 1 : (unsigned)t;
}

void embedding(uint64_t h, float *out, unsigned dim)
{
    double sum = 0;
    for (unsigned j = 0; j < dim; j++) {
        double v = (double)(mix64(h ^ ((uint64_t)j * 0x9e37)) >> 11) / (double)(1ULL << 53) * 2.0 - 1.0;
        out[j] = (float)v;
        sum += v * v;
    }
    double norm = sqrt(sum);
    if (norm > 0)
        for (unsigned j = 0; j < dim; j++)
            out[j] = (float)(out[j] / norm);
}

void sb_embedding_floats(struct sbuf *b, const float *v, unsigned dim)
{
    sb_add(b, "[", 1);
    for (unsigned j = 0; j < dim; j++)
        sb_printf(b, j ? ",%.9g" : "%.9g", (double)v[j]); /* 9 digits round-trip a float32 exactly */
    sb_add(b, "]", 1);
}

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void sb_rfc3339(struct sbuf *b, uint64_t unix_ns)
{
    time_t sec = unix_ns / 1000000000ULL;
    struct tm tm;
    gmtime_r(&sec, &tm);
    sb_printf(b, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
              tm.tm_sec, (unsigned)(unix_ns % 1000000000ULL));
}

static void png_chunk(struct sbuf *b, const char *type, const unsigned char *data, size_t n)
{
    unsigned char hdr[8] = {n >> 24, n >> 16, n >> 8, n, type[0], type[1], type[2], type[3]};
    sb_add(b, (const char *)hdr, 8);
    sb_add(b, (const char *)data, n);
    uLong crc = crc32(0, hdr + 4, 4);
    crc = crc32(crc, data, n);
    unsigned char c[4] = {crc >> 24, crc >> 16, crc >> 8, crc};
    sb_add(b, (const char *)c, 4);
}

void make_png(struct sbuf *b, uint64_t seed)
{
    enum { W = 16, H = 16 };
    unsigned char raw[H * (1 + W * 3)];
    uint64_t c = mix64(seed);
    for (int y = 0; y < H; y++) {
        unsigned char *row = raw + y * (1 + W * 3);
        row[0] = 0; /* filter: none */
        for (int x = 0; x < W; x++) {
            row[1 + x * 3] = (unsigned char)(c + x * 8);
            row[2 + x * 3] = (unsigned char)((c >> 8) + y * 8);
            row[3 + x * 3] = (unsigned char)(c >> 16);
        }
    }
    unsigned char z[sizeof(raw) + 64];
    uLongf zlen = sizeof(z);
    compress(z, &zlen, raw, sizeof(raw));
    sb_add(b, "\x89PNG\r\n\x1a\n", 8);
    unsigned char ihdr[13] = {0, 0, 0, W, 0, 0, 0, H, 8, 2, 0, 0, 0};
    png_chunk(b, "IHDR", ihdr, sizeof(ihdr));
    png_chunk(b, "IDAT", z, zlen);
    png_chunk(b, "IEND", (const unsigned char *)"", 0);
}
