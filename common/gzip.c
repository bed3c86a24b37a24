/* gzip: Accept-Encoding negotiation, whole-buffer and flushed-stream deflate, and the bounded inflater
 * that guards request bodies (and upstream answers) against zip bombs. */
#include "gridgate/gzip.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How much output one inflate call may produce: the granularity of the limit checks. */
#define STEP (64 * 1024)
/* windowBits for zlib: 15 plus 16 selects the gzip wrapper. */
#define GZIP_WBITS (15 + 16)

gg_gzip_config_t gg_gzip_config = {.min_bytes = 1024, .level = 1, .stream = 0, .max_inflated_bytes = 8 << 20, .max_ratio = 100};

/* --- Accept-Encoding ---------------------------------------------------------------------------- */

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* A q-value of zero ("0", "0.", "0.000") refuses the coding. */
static int q_is_zero(const char *p, const char *end)
{
    while (p < end && is_space(*p))
        p++;
    if (p == end || *p != '0')
        return 0;
    for (p++; p < end && !is_space(*p); p++)
        if (*p != '.' && *p != '0')
            return 0;
    return 1;
}

int gg_gzip_accepted(const char *v, size_t len)
{
    int gzip = -1, star = -1; /* -1 not named, 0 refused, 1 accepted */
    const char *end = v + len;
    while (v < end) {
        const char *item_end = memchr(v, ',', end - v);
        if (item_end == NULL)
            item_end = end;
        const char *t = v;
        while (t < item_end && is_space(*t))
            t++;
        const char *te = t;
        while (te < item_end && *te != ';' && !is_space(*te))
            te++;
        int ok = 1;
        for (const char *p = te; p < item_end; p++) {
            if (*p != ';')
                continue;
            const char *q = p + 1;
            while (q < item_end && is_space(*q))
                q++;
            if (item_end - q >= 2 && (q[0] == 'q' || q[0] == 'Q') && q[1] == '=' && q_is_zero(q + 2, item_end))
                ok = 0;
        }
        size_t tl = te - t;
        if ((tl == 4 && strncasecmp(t, "gzip", 4) == 0) || (tl == 6 && strncasecmp(t, "x-gzip", 6) == 0))
            gzip = gzip == 1 ? 1 : ok;
        else if (tl == 1 && *t == '*')
            star = ok;
        v = item_end + (item_end < end);
    }
    return gzip >= 0 ? gzip : star == 1;
}

/* --- deflate ------------------------------------------------------------------------------------ */

/* One compressor per thread, reset between answers: a fresh deflateInit2 allocates ~300 KiB, which glibc maps
 * and unmaps each time in a worker thread's arena; the page faults and TLB shootdowns cost gridgate several
 * times the compression itself (measured with tools/bench/compression.sh). */
struct tls_deflate {
    z_stream z;
    int level;
};
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
    struct tls_deflate *t = p;
    deflateEnd(&t->z);
    free(t);
}

static void tls_init(void)
{
    pthread_key_create(&tls_key, tls_free);
}

static z_stream *thread_deflater(int level)
{
    pthread_once(&tls_once, tls_init);
    struct tls_deflate *t = pthread_getspecific(tls_key);
    if (t != NULL && t->level == level && deflateReset(&t->z) == Z_OK)
        return &t->z;
    if (t != NULL) {
        pthread_setspecific(tls_key, NULL);
        tls_free(t);
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        abort();
    if (deflateInit2(&t->z, level, Z_DEFLATED, GZIP_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(t);
        return NULL;
    }
    t->level = level;
    pthread_setspecific(tls_key, t);
    return &t->z;
}

int gg_gzip_compress(const void *in, size_t len, int level, gg_buf_t *out)
{
    if (level < 0 || level > 9)
        return -EINVAL;
    z_stream *z = thread_deflater(level);
    if (z == NULL)
        return -ENOMEM;
    size_t bound = deflateBound(z, len);
    gg_buf_reserve(out, bound);
    z->next_in = (Bytef *)in;
    z->avail_in = len;
    z->next_out = (Bytef *)out->base + out->len;
    z->avail_out = bound;
    int rc = deflate(z, Z_FINISH);
    out->len += bound - z->avail_out;
    out->base[out->len] = '\0';
    z->next_in = z->next_out = NULL; /* nothing of the caller's stays reachable from the cached stream */
    return rc == Z_STREAM_END ? 0 : -EIO;
}

int gg_deflater_init(gg_deflater_t *d, int level)
{
    memset(d, 0, sizeof(*d));
    if (level < 0 || level > 9)
        return -EINVAL;
    if (deflateInit2(&d->z, level, Z_DEFLATED, GZIP_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    d->live = 1;
    return 0;
}

int gg_deflater_feed(gg_deflater_t *d, const void *in, size_t len, int finish, gg_buf_t *out)
{
    if (!d->live)
        return -EINVAL;
    d->z.next_in = (Bytef *)in;
    d->z.avail_in = len;
    int rc;
    do {
        /* A sync flush adds 5 bytes; the bound covers the rest. */
        size_t room = deflateBound(&d->z, d->z.avail_in) + 16;
        gg_buf_reserve(out, room);
        d->z.next_out = (Bytef *)out->base + out->len;
        d->z.avail_out = room;
        rc = deflate(&d->z, finish ? Z_FINISH : Z_SYNC_FLUSH);
        out->len += room - d->z.avail_out;
        out->base[out->len] = '\0';
        if (rc == Z_STREAM_ERROR)
            return -EIO;
    } while (d->z.avail_out == 0 || (finish && rc != Z_STREAM_END));
    return 0;
}

void gg_deflater_dispose(gg_deflater_t *d)
{
    if (d->live)
        deflateEnd(&d->z);
    d->live = 0;
}

/* --- bounded inflate ---------------------------------------------------------------------------- */

void gg_inflater_init(gg_inflater_t *f, uint64_t max_out, uint32_t max_ratio)
{
    memset(f, 0, sizeof(*f));
    f->max_out = max_out;
    f->max_ratio = max_ratio;
    /* inflateInit2 allocates only the state; the window is allocated on first use. */
    f->live = inflateInit2(&f->z, GZIP_WBITS) == Z_OK;
    if (!f->live)
        f->failed = -ENOMEM;
}

static int fail(gg_inflater_t *f, int err)
{
    f->failed = err;
    return err;
}

int gg_inflater_feed(gg_inflater_t *f, const void *in, size_t len, gg_buf_t *out)
{
    if (f->failed)
        return f->failed;
    /* Feed at most 1 GiB per call so avail_in (a uInt) never truncates; the loop takes the rest. */
    const unsigned char *p = in, *end = p + len;
    int more = 0; /* the last call filled its output: zlib may hold more without new input */
    f->z.avail_in = 0;
    for (;;) {
        if (f->z.avail_in == 0 && p < end) {
            size_t n = end - p > (1u << 30) ? (1u << 30) : (size_t)(end - p);
            f->z.next_in = (Bytef *)p;
            f->z.avail_in = n;
            p += n;
        }
        if (f->z.avail_in == 0 && !more)
            return 0;
        if (f->member_done) {
            /* Bytes after a member must be another member; garbage fails its header check. */
            inflateReset(&f->z);
            f->member_done = 0;
        }
        size_t step = STEP;
        if (f->max_out && f->max_out - f->out_total + 1 < step)
            step = f->max_out - f->out_total + 1; /* one byte past the limit is enough to refuse */
        gg_buf_reserve(out, step);
        f->z.next_out = (Bytef *)out->base + out->len;
        f->z.avail_out = step;
        uInt in_before = f->z.avail_in;
        int rc = inflate(&f->z, Z_NO_FLUSH);
        size_t produced = step - f->z.avail_out;
        out->len += produced;
        out->base[out->len] = '\0';
        f->in_total += in_before - f->z.avail_in;
        f->out_total += produced;
        if (f->max_out && f->out_total > f->max_out)
            return fail(f, GG_INFLATE_TOO_LARGE);
        if (f->max_ratio && f->out_total > GG_INFLATE_RATIO_FLOOR && f->out_total > (uint64_t)f->max_ratio * f->in_total)
            return fail(f, GG_INFLATE_RATIO);
        more = f->z.avail_out == 0;
        if (rc == Z_STREAM_END) {
            f->member_done = 1;
            more = 0;
        } else if (rc == Z_BUF_ERROR) {
            /* No progress was possible: fine when zlib simply wants more input. */
            if (f->z.avail_in != 0)
                return fail(f, GG_INFLATE_CORRUPT);
            more = 0;
        } else if (rc != Z_OK) {
            return fail(f, rc == Z_MEM_ERROR ? -ENOMEM : GG_INFLATE_CORRUPT);
        }
    }
}

int gg_inflater_finish(gg_inflater_t *f)
{
    if (f->failed)
        return f->failed;
    return f->member_done ? 0 : GG_INFLATE_CORRUPT;
}

void gg_inflater_dispose(gg_inflater_t *f)
{
    if (f->live)
        inflateEnd(&f->z);
    f->live = 0;
}

int gg_gunzip(const void *in, size_t len, uint64_t max_out, uint32_t max_ratio, gg_buf_t *out)
{
    gg_inflater_t f;
    gg_inflater_init(&f, max_out, max_ratio);
    int rc = gg_inflater_feed(&f, in, len, out);
    if (rc == 0)
        rc = gg_inflater_finish(&f);
    gg_inflater_dispose(&f);
    return rc;
}
