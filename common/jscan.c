/* Validating, allocation-free JSON pull scanner (see jscan.h). The grammar is jansson 2.14's with
 * flags 0: strict RFC 8259 numbers and literals, strict UTF-8 (no overlongs, surrogates or code points
 * past U+10FFFF), escapes checked with surrogate pairs, no \u0000. Where jansson would need more than
 * this scanner checks (integers past 18 digits, reals that could overflow) it gives up instead. */
#include "gridgate/jscan.h"

#include <jansson.h>
#include <string.h>

void gg_jscan_init(gg_jscan_t *s, const char *buf, size_t len)
{
    s->p = buf;
    s->end = buf + len;
    s->depth = 0;
    s->first[0] = 1;
    s->in_obj[0] = 0;
}

static void skip_ws(gg_jscan_t *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long hex4(const char *p, const char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* One UTF-8 sequence starting at p (first byte >= 0x80); returns its length or 0 when invalid. */
static int utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], n, v;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, v = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, v = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, v = c & 0x07;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (unsigned i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    return (int)n;
}

/* s->p is just past the opening quote. */
static int scan_string(gg_jscan_t *s, gg_jstr_t *out)
{
    const unsigned char *p = (const unsigned char *)s->p, *end = (const unsigned char *)s->end;
    size_t cps = 0;
    int escaped = 0;
    out->raw = s->p;
    for (;;) {
        /* the common run: printable ASCII without quote or backslash */
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++, cps++;
        if (p == end)
            return -1;
        unsigned c = *p;
        if (c == '"')
            break;
        if (c < 0x20)
            return -1;
        if (c >= 0x80) {
            int n = utf8_seq(p, end);
            if (n == 0)
                return -1;
            p += n, cps++;
            continue;
        }
        /* backslash */
        escaped = 1;
        if (end - p < 2)
            return -1;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            p += 2, cps++;
            continue;
        case 'u':
            break;
        default:
            return -1;
        }
        long u = hex4((const char *)p + 2, (const char *)end);
        if (u <= 0 || (u >= 0xdc00 && u <= 0xdfff))
            return -1; /* \u0000 (jansson refuses it without JSON_ALLOW_NUL), a lone low surrogate, bad hex */
        p += 6;
        if (u >= 0xd800 && u <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return -1;
            long lo = hex4((const char *)p + 2, (const char *)end);
            if (lo < 0xdc00 || lo > 0xdfff)
                return -1;
            p += 6;
        }
        cps++;
    }
    out->len = (size_t)((const char *)p - out->raw);
    out->cps = cps;
    out->escaped = escaped;
    s->p = (const char *)p + 1;
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int scan_number(gg_jscan_t *s, gg_jval_t *v)
{
    const char *p = s->p, *end = s->end;
    int neg = 0, real = 0;
    size_t digits = 0;
    unsigned long long acc = 0;
    if (p < end && *p == '-')
        neg = 1, p++;
    if (p == end || !is_digit(*p))
        return -1;
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p))
            return -1;
        digits = 1;
    } else {
        while (p < end && is_digit(*p)) {
            acc = acc * 10 + (unsigned)(*p - '0');
            p++, digits++;
            if (digits > 18)
                return -1; /* past what is surely in range (or exact as a double); jansson decides */
        }
    }
    if (p < end && *p == '.') {
        real = 1, p++;
        if (p == end || !is_digit(*p))
            return -1;
        while (p < end && is_digit(*p))
            p++, digits++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1, p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return -1;
        size_t ed = 0;
        while (p < end && is_digit(*p))
            p++, ed++;
        if (ed > 2)
            return -1; /* exponents of 100 and more might overflow a double */
    }
    if (real && digits > 200)
        return -1; /* so many digits might round to zero or overflow: jansson decides */
    v->s.raw = s->p;
    v->s.len = (size_t)(p - s->p);
    v->s.escaped = 0;
    s->p = p;
    if (real) {
        v->type = GG_JREAL;
    } else {
        v->type = GG_JINT;
        v->i = neg ? -(long long)acc : (long long)acc;
    }
    return 0;
}

static int literal(gg_jscan_t *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    s->p += n;
    /* jansson reads a whole run of letters as one token: "truex" is invalid */
    if (s->p < s->end && ((*s->p >= 'a' && *s->p <= 'z') || (*s->p >= 'A' && *s->p <= 'Z')))
        return -1;
    return 0;
}

static int open_container(gg_jscan_t *s, int obj)
{
    if (s->depth >= GG_JSCAN_MAX_DEPTH)
        return -1;
    s->depth++;
    s->first[s->depth] = 1;
    s->in_obj[s->depth] = (uint8_t)obj;
    s->p++;
    return 0;
}

int gg_jscan_value(gg_jscan_t *s, gg_jval_t *v)
{
    skip_ws(s);
    if (s->p == s->end)
        return -1;
    switch (*s->p) {
    case '{':
        v->type = GG_JOBJECT;
        return open_container(s, 1);
    case '[':
        v->type = GG_JARRAY;
        return open_container(s, 0);
    case '"':
        v->type = GG_JSTRING;
        s->p++;
        return scan_string(s, &v->s);
    case 't':
        v->type = GG_JTRUE;
        return literal(s, "true", 4);
    case 'f':
        v->type = GG_JFALSE;
        return literal(s, "false", 5);
    case 'n':
        v->type = GG_JNULL;
        return literal(s, "null", 4);
    default:
        return scan_number(s, v);
    }
}

/* Past the separator before the next member, or past the closer: 1 member follows, 0 closed, -1. */
static int next_member(gg_jscan_t *s, char closer)
{
    if (s->depth == 0)
        return -1;
    skip_ws(s);
    if (s->p == s->end)
        return -1;
    if (*s->p == closer) {
        s->p++;
        s->depth--;
        return 0;
    }
    if (!s->first[s->depth]) {
        if (*s->p != ',')
            return -1;
        s->p++;
    }
    s->first[s->depth] = 0;
    return 1;
}

int gg_jscan_key(gg_jscan_t *s, gg_jstr_t *key)
{
    if (!s->in_obj[s->depth])
        return -1;
    int r = next_member(s, '}');
    if (r <= 0)
        return r;
    skip_ws(s);
    if (s->p == s->end || *s->p != '"')
        return -1;
    s->p++;
    if (scan_string(s, key) != 0)
        return -1;
    skip_ws(s);
    if (s->p == s->end || *s->p != ':')
        return -1;
    s->p++;
    return 1;
}

int gg_jscan_elem(gg_jscan_t *s)
{
    if (s->in_obj[s->depth])
        return -1;
    return next_member(s, ']');
}

int gg_jscan_skip(gg_jscan_t *s)
{
    int base = s->depth;
    gg_jval_t v;
    gg_jstr_t k;
    if (base == 0)
        return -1;
    while (s->depth >= base) {
        int r = s->in_obj[s->depth] ? gg_jscan_key(s, &k) : gg_jscan_elem(s);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        if (gg_jscan_value(s, &v) != 0)
            return -1;
    }
    return 0;
}

int gg_jscan_drop(gg_jscan_t *s, const gg_jval_t *v)
{
    if (v->type == GG_JOBJECT || v->type == GG_JARRAY)
        return gg_jscan_skip(s);
    return 0;
}

int gg_jscan_finish(gg_jscan_t *s)
{
    skip_ws(s);
    return s->depth == 0 && s->p == s->end ? 0 : -1;
}

int gg_jstr_is(const gg_jstr_t *s, const char *lit)
{
    size_t n = strlen(lit);
    return !s->escaped && s->len == n && memcmp(s->raw, lit, n) == 0;
}

int gg_json_check(const char *buf, size_t len)
{
    gg_jscan_t s;
    gg_jval_t v;
    gg_jscan_init(&s, buf, len);
    if (gg_jscan_value(&s, &v) == 0 && (v.type == GG_JOBJECT || v.type == GG_JARRAY) && gg_jscan_skip(&s) == 0 &&
        gg_jscan_finish(&s) == 0)
        return 1;
    json_t *j = json_loadb(buf, len, 0, NULL);
    json_decref(j);
    return j != NULL;
}
