/* libFuzzer target for dataplane/framing.c's raw HTTP/1 request head readers: gg_http1_framing_conflict, the scan for
 * ambiguous body framing (differential: a plain reference, lower-cased copy, one line at a time, sscanf-free, must
 * reach the same verdict on every input), and gg_http1_head_check, the first-head check (invariants). */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/framing.h"

/* 0 clean, 1 CL + TE, 2 two different CLs. */
static int reference(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)tolower(d[i]);
    s[n] = '\0';
    int te = 0, verdict = 0;
    char *cl = NULL, *p = memchr(s, '\n', n);
    size_t cll = 0;
    p = p ? p + 1 : s + n;
    while (p < s + n && verdict == 0) {
        char *e = memchr(p, '\n', (size_t)(s + n - p));
        if (e == NULL)
            e = s + n;
        size_t ll = (size_t)(e - p);
        const char *name = NULL;
        if (ll > 17 && memcmp(p, "transfer-encoding:", 18) == 0)
            te = 1;
        else if (ll > 14 && memcmp(p, "content-length:", 15) == 0)
            name = p + 15;
        if (name != NULL) {
            const char *a = name, *b = e;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
                b--;
            /* Values are compared as sent: map back to the original bytes. */
            const char *orig = (const char *)d + (a - s);
            if (cl != NULL && ((size_t)(b - a) != cll || memcmp(cl, orig, cll) != 0))
                verdict = 2;
            cl = (char *)orig, cll = (size_t)(b - a);
        }
        p = e + 1;
    }
    if (verdict == 0 && te && cl != NULL)
        verdict = 1;
    free(s);
    return verdict;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *m = gg_http1_framing_conflict((const char *)data, size);
    int want = reference(data, size);
    if ((m == NULL) != (want == 0))
        abort();
    if (m != NULL && (want == 2) != (strstr(m, "two Content-Length") != NULL))
        abort();
    /* The first-head check: a verdict of the three, a refusal that names a path inside the input, and the same
     * verdict for a prefix one byte shorter unless that one still needs more (more bytes never change a verdict). */
    gg_head_refusal_t r;
    int v = gg_http1_head_check((const char *)data, size, &r);
    if (v < -1 || v > 1)
        abort();
    if (v == -1 &&
        ((r.status != 400 && r.status != 431) || r.message == NULL ||
         (r.path.len != 0 && (r.path.base < (const char *)data || r.path.base + r.path.len > (const char *)data + size))))
        abort();
    if (v != 0 && size > 0) {
        gg_head_refusal_t r2;
        int v2 = gg_http1_head_check((const char *)data, size - 1, &r2);
        if (v2 != 0 && v2 != v)
            abort();
    }
    return 0;
}
