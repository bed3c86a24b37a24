/* Fuzzes the bounded inflater of common/gzip.c. Byte 0 picks the slice size, byte 1 the limits. Checks that any
 * slicing gives the same verdict and bytes as one feed (the ratio verdict may move with the slicing), that the output never passes
 * the size limit by more than one byte, and that whatever inflates cleanly survives a deflate round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/gzip.h"

static int run(const uint8_t *data, size_t size, size_t step, uint64_t max, uint32_t ratio, gg_buf_t *out)
{
    gg_inflater_t f;
    int r = 0;
    gg_inflater_init(&f, max, ratio);
    for (size_t off = 0; off < size && r == 0; off += step)
        r = gg_inflater_feed(&f, data + off, off + step > size ? size - off : step, out);
    if (r == 0)
        r = gg_inflater_finish(&f);
    gg_inflater_dispose(&f);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = 1 + data[0] % 64;
    /* Small limits keep a bomb cheap (buffers stay in ASan's fast allocator); one input in four gets a limit of a few
     * inflate steps (STEP is 64 KiB), so the multi-step path runs too. */
    uint64_t max = !(data[1] & 1) ? 8u << 10 : data[1] & 4 ? 256u << 10 : 48u << 10;
    uint32_t ratio = data[1] & 2 ? 100 : 0;
    data += 2;
    size -= 2;
    gg_buf_t whole = GG_BUF_INIT, sliced = GG_BUF_INIT;
    int r1 = run(data, size, size ? size : 1, max, ratio, &whole);
    int r2 = run(data, size, step, max, ratio, &sliced);
    /* The ratio check sees how much input zlib has taken, which depends on the slicing near the boundary. */
    if (r1 != r2 && r1 != GG_INFLATE_RATIO && r2 != GG_INFLATE_RATIO)
        abort();
    if (r1 == 0 && r2 == 0 && (whole.len != sliced.len || (whole.len && memcmp(whole.base, sliced.base, whole.len) != 0)))
        abort();
    if (sliced.len > max + 1)
        abort();
    if (whole.len > max + 1)
        abort();
    if (r1 == 0) {
        gg_buf_t z = GG_BUF_INIT, back = GG_BUF_INIT;
        if (gg_gzip_compress(whole.base, whole.len, 1, &z) != 0 || gg_gunzip(z.base, z.len, 0, 0, &back) != 0 ||
            back.len != whole.len || (whole.len && memcmp(back.base, whole.base, whole.len) != 0))
            abort();
        gg_buf_free(&z);
        gg_buf_free(&back);
    }
    gg_buf_free(&whole);
    gg_buf_free(&sliced);
    return 0;
}
