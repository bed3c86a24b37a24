/* Tests common/gzip.c: Accept-Encoding negotiation, round trips, flushed streams, and the inflater's limits
 * against a real 10 GB bomb built from repeated deflate blocks. */
#include <stdlib.h>

#include "gridgate/gzip.h"
#include "test.h"

static int accepted(const char *v)
{
    return gg_gzip_accepted(v, strlen(v));
}

static void test_accept_encoding(void)
{
    CHECK(accepted("gzip"));
    CHECK(accepted("gzip, deflate, br"));
    CHECK(accepted("deflate, GZIP;q=1.0"));
    CHECK(accepted("br;q=1.0, gzip;q=0.8, *;q=0.1"));
    CHECK(accepted("x-gzip"));
    CHECK(accepted("*"));
    CHECK(!accepted(""));
    CHECK(!accepted("identity"));
    CHECK(!accepted("deflate, br"));
    CHECK(!accepted("gzip;q=0"));
    CHECK(!accepted("gzip; q=0.000"));
    CHECK(!accepted("gzip;q=0, *"));
    CHECK(!accepted("*;q=0"));
    CHECK(accepted("gzip;q=0.5"));
    CHECK(!accepted("gzipx, xgzip"));
}

static void test_round_trip(void)
{
    gg_buf_t plain = GG_BUF_INIT;
    for (int i = 0; i < 1536; i++)
        gg_buf_appendf(&plain, "%s%.9f", i ? "," : "[", (double)(i * 7919 % 1000) / 1000.0 - 0.5);
    gg_buf_append_str(&plain, "]");
    for (int level = 0; level <= 9; level++) {
        gg_buf_t z = GG_BUF_INIT, back = GG_BUF_INIT;
        CHECK_EQ_INT(gg_gzip_compress(plain.base, plain.len, level, &z), 0);
        CHECK(z.len > 18 && (unsigned char)z.base[0] == 0x1f && (unsigned char)z.base[1] == 0x8b);
        if (level > 0)
            CHECK(z.len < plain.len);
        CHECK_EQ_INT(gg_gunzip(z.base, z.len, plain.len, 100, &back), 0);
        CHECK(back.len == plain.len && memcmp(back.base, plain.base, plain.len) == 0);
        gg_buf_free(&z);
        gg_buf_free(&back);
    }
    gg_buf_t z = GG_BUF_INIT;
    CHECK_EQ_INT(gg_gzip_compress("x", 1, 10, &z), -EINVAL);
    /* One byte at a time gives the same bytes. */
    CHECK_EQ_INT(gg_gzip_compress(plain.base, plain.len, 6, &z), 0);
    gg_inflater_t f;
    gg_buf_t back = GG_BUF_INIT;
    gg_inflater_init(&f, 0, 0);
    int rc = 0;
    for (size_t i = 0; i < z.len && rc == 0; i++)
        rc = gg_inflater_feed(&f, z.base + i, 1, &back);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(gg_inflater_finish(&f), 0);
    CHECK(back.len == plain.len && memcmp(back.base, plain.base, plain.len) == 0);
    gg_inflater_dispose(&f);
    gg_buf_free(&back);
    gg_buf_free(&z);
    gg_buf_free(&plain);
}

static void test_members_and_corruption(void)
{
    gg_buf_t z = GG_BUF_INIT, out = GG_BUF_INIT;
    gg_gzip_compress("hello ", 6, 6, &z);
    gg_gzip_compress("world", 5, 1, &z);
    CHECK_EQ_INT(gg_gunzip(z.base, z.len, 0, 0, &out), 0);
    CHECK_EQ_STR(out.base, "hello world");

    /* Cut short: the feed is fine, the end is not. */
    gg_buf_reset(&out);
    CHECK_EQ_INT(gg_gunzip(z.base, z.len - 3, 0, 0, &out), GG_INFLATE_CORRUPT);
    /* Trailing garbage after a member. */
    gg_buf_t g = GG_BUF_INIT;
    gg_gzip_compress("hello", 5, 6, &g);
    gg_buf_append_str(&g, "garbage!");
    gg_buf_reset(&out);
    CHECK_EQ_INT(gg_gunzip(g.base, g.len, 0, 0, &out), GG_INFLATE_CORRUPT);
    /* A flipped CRC byte. */
    gg_buf_reset(&g);
    gg_gzip_compress("hello hello hello", 17, 6, &g);
    g.base[g.len - 6] ^= 0x55;
    gg_buf_reset(&out);
    CHECK_EQ_INT(gg_gunzip(g.base, g.len, 0, 0, &out), GG_INFLATE_CORRUPT);
    /* Not gzip at all, and nothing at all. */
    gg_buf_reset(&out);
    CHECK_EQ_INT(gg_gunzip("{\"model\":\"m\"}", 13, 0, 0, &out), GG_INFLATE_CORRUPT);
    gg_buf_reset(&out);
    CHECK_EQ_INT(gg_gunzip("", 0, 0, 0, &out), GG_INFLATE_CORRUPT);
    /* The error is sticky. */
    gg_inflater_t f;
    gg_inflater_init(&f, 0, 0);
    CHECK_EQ_INT(gg_inflater_feed(&f, "nope", 4, &out), GG_INFLATE_CORRUPT);
    CHECK_EQ_INT(gg_inflater_feed(&f, z.base, z.len, &out), GG_INFLATE_CORRUPT);
    gg_inflater_dispose(&f);
    gg_buf_free(&g);
    gg_buf_free(&z);
    gg_buf_free(&out);
}

/* Each flushed event can be decoded on its own as soon as it arrives: nothing waits in the compressor. */
static void test_flushed_stream(void)
{
    gg_deflater_t d;
    gg_inflater_t f;
    CHECK_EQ_INT(gg_deflater_init(&d, 6), 0);
    gg_inflater_init(&f, 0, 0);
    gg_buf_t wire = GG_BUF_INIT, out = GG_BUF_INIT;
    for (int i = 0; i < 5; i++) {
        char ev[64];
        int n = snprintf(ev, sizeof(ev), "data: {\"i\":%d}\n\n", i);
        gg_buf_reset(&wire);
        gg_buf_reset(&out);
        CHECK_EQ_INT(gg_deflater_feed(&d, ev, n, 0, &wire), 0);
        CHECK(wire.len > 0);
        CHECK_EQ_INT(gg_inflater_feed(&f, wire.base, wire.len, &out), 0);
        CHECK(out.len == (size_t)n && memcmp(out.base, ev, n) == 0);
    }
    gg_buf_reset(&wire);
    CHECK_EQ_INT(gg_deflater_feed(&d, NULL, 0, 1, &wire), 0);
    CHECK_EQ_INT(gg_inflater_feed(&f, wire.base, wire.len, &out), 0);
    CHECK_EQ_INT(gg_inflater_finish(&f), 0);
    gg_deflater_dispose(&d);
    gg_inflater_dispose(&f);
    gg_buf_free(&wire);
    gg_buf_free(&out);
}

/* A gzip stream claiming `gib` GiB of zeros: a header block, then one flushed 1 MiB block of zeros repeated.
 * Each repeat refers only to zeros before it, so the stream is valid for as long as it goes on. */
static void make_bomb(gg_buf_t *bomb, unsigned gib)
{
    gg_deflater_t d;
    char *zeros = calloc(1, 1 << 20);
    gg_buf_t block = GG_BUF_INIT;
    gg_deflater_init(&d, 9);
    gg_deflater_feed(&d, zeros, 1, 0, bomb);
    gg_deflater_feed(&d, zeros, 1 << 20, 0, &block);
    for (unsigned i = 0; i < gib * 1024u; i++)
        gg_buf_append(bomb, block.base, block.len);
    gg_deflater_dispose(&d);
    gg_buf_free(&block);
    free(zeros);
}

static void test_bomb(void)
{
    gg_buf_t bomb = GG_BUF_INIT, out = GG_BUF_INIT;
    make_bomb(&bomb, 10);
    CHECK(bomb.len < 16u << 20); /* 10 GiB in about 10 MB */

    /* The ratio limit fires first, as soon as the output passes the floor. */
    gg_inflater_t f;
    gg_inflater_init(&f, 8 << 20, 100);
    CHECK_EQ_INT(gg_inflater_feed(&f, bomb.base, bomb.len, &out), GG_INFLATE_RATIO);
    CHECK(out.len <= GG_INFLATE_RATIO_FLOOR + 64 * 1024);
    CHECK(f.in_total < 64 * 1024);
    gg_inflater_dispose(&f);

    /* Without a ratio limit the size limit stops it one byte past the limit, in flat memory. */
    gg_buf_free(&out);
    gg_inflater_init(&f, 8 << 20, 0);
    CHECK_EQ_INT(gg_inflater_feed(&f, bomb.base, bomb.len, &out), GG_INFLATE_TOO_LARGE);
    CHECK_EQ_INT(out.len, (8 << 20) + 1);
    CHECK(out.cap <= (16u << 20) + 64 * 1024); /* the buffer doubles: at most twice the limit */
    gg_inflater_dispose(&f);

    /* Exactly at the limit is fine. */
    gg_buf_t z = GG_BUF_INIT;
    char *zeros = calloc(1, 2 << 20);
    gg_gzip_compress(zeros, 2 << 20, 6, &z);
    gg_buf_free(&out);
    CHECK_EQ_INT(gg_gunzip(z.base, z.len, 2 << 20, 0, &out), 0);
    gg_buf_free(&out);
    CHECK_EQ_INT(gg_gunzip(z.base, z.len, (2 << 20) - 1, 0, &out), GG_INFLATE_TOO_LARGE);
    /* 2 MiB of zeros is ~1000:1, over a ratio of 100 once past the floor; a small body of zeros is not. */
    gg_buf_free(&out);
    CHECK_EQ_INT(gg_gunzip(z.base, z.len, 0, 100, &out), GG_INFLATE_RATIO);
    gg_buf_reset(&z);
    gg_buf_free(&out);
    gg_gzip_compress(zeros, 512 << 10, 6, &z);
    CHECK_EQ_INT(gg_gunzip(z.base, z.len, 0, 100, &out), 0);
    CHECK_EQ_INT(out.len, 512 << 10);
    free(zeros);
    gg_buf_free(&z);
    gg_buf_free(&out);
    gg_buf_free(&bomb);
}

TEST_MAIN(test_accept_encoding, test_round_trip, test_members_and_corruption, test_flushed_stream, test_bomb)
