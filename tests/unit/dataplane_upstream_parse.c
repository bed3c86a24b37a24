/* Tests dataplane/upstream_parse.c: framing (Content-Length, chunked, close-delimited), interim and bodiless
 * responses, keep-alive decisions, limits, leftovers, and that every split of the input gives the same result. */
#include <stdlib.h>
#include "gridgate/upstream.h"
#include "test.h"

struct run {
    int status, minor, heads, body_calls;
    char body[8192];
    size_t body_len;
    char hdr_x[64]; /* value of an "X-Test" header, if any */
    int head_ret;   /* what on_head returns */
    ssize_t rc;     /* last negative feed result, or 0 */
    gg_upstream_parser_t p;
    char leftover[256];
    size_t leftover_len;
    int eof_rc;
};

static int on_head(void *ctx, int status, int minor, const struct phr_header *h, size_t n)
{
    struct run *r = ctx;
    r->status = status;
    r->minor = minor;
    r->heads++;
    for (size_t i = 0; i != n; ++i)
        if (h[i].name_len == 6 && memcmp(h[i].name, "X-Test", 6) == 0 && h[i].value_len < sizeof(r->hdr_x))
            memcpy(r->hdr_x, h[i].value, h[i].value_len);
    return r->head_ret;
}

static int on_body(void *ctx, const char *buf, size_t len)
{
    struct run *r = ctx;
    r->body_calls++;
    if (r->body_len + len <= sizeof(r->body)) {
        memcpy(r->body + r->body_len, buf, len);
        r->body_len += len;
    }
    return 0;
}

static const gg_upstream_parse_callbacks_t cbs = {on_head, on_body};

/* Feeds `src` `step` bytes at a time the way the socket layer does (unconsumed bytes stay at the window's start),
 * then signals EOF if asked and the message is still open. */
static void run_feed(struct run *r, const char *src, size_t len, size_t step, int head_req, int eof)
{
    char *win = malloc(len + 1);
    size_t wlen = 0, fed = 0;
    int head_ret = r->head_ret;

    memset(r, 0, sizeof(*r));
    r->head_ret = head_ret;
    gg_upstream_parser_init(&r->p, head_req);
    for (;;) {
        size_t add = len - fed < step ? len - fed : step;
        memcpy(win + wlen, src + fed, add);
        wlen += add;
        fed += add;
        ssize_t n = gg_upstream_parse_feed(&r->p, win, wlen, &cbs, r);
        if (n < 0) {
            r->rc = n;
            break;
        }
        memmove(win, win + n, wlen - (size_t)n);
        wlen -= (size_t)n;
        if (r->p.state == GG_UP_PARSE_DONE || r->p.state == GG_UP_PARSE_UPGRADED)
            break;
        if (fed == len && n == 0)
            break;
    }
    memcpy(win + wlen, src + fed, len - fed);
    wlen += len - fed;
    if (wlen <= sizeof(r->leftover)) {
        memcpy(r->leftover, win, wlen);
        r->leftover_len = wlen;
    }
    if (eof && r->rc == 0)
        r->eof_rc = gg_upstream_parse_eof(&r->p);
    free(win);
}

/* Runs every split size from 1 to len and checks each gives `body`, `status` and the final state. */
static void check_all_splits(const char *src, int head_req, int eof, int status, const char *body,
                             enum gg_upstream_parse_state state, int keepalive)
{
    size_t len = strlen(src);
    int bad = 0;
    for (size_t step = 1; step <= len; ++step) {
        struct run r = {0};
        run_feed(&r, src, len, step, head_req, eof);
        if (r.rc != 0 || r.status != status || r.heads != 1 || r.body_len != strlen(body) ||
            memcmp(r.body, body, r.body_len) != 0 || r.p.state != state || r.p.keepalive != keepalive || r.leftover_len != 0) {
            if (bad++ == 0)
                fprintf(stderr, "split %zu: rc=%zd status=%d heads=%d body=%.*s state=%d ka=%d left=%zu\n", step, r.rc, r.status,
                        r.heads, (int)r.body_len, r.body, r.p.state, r.p.keepalive, r.leftover_len);
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_content_length(void)
{
    check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\nhello", 0, 0, 200, "hello", GG_UP_PARSE_DONE, 1);
    struct run r = {0};
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: yes\r\n\r\nhel";
    run_feed(&r, s, strlen(s), 1000, 0, 1);
    CHECK_EQ_STR(r.hdr_x, "yes");
    CHECK_EQ_INT(r.p.state, GG_UP_PARSE_BODY_LENGTH);
    CHECK_EQ_INT(r.eof_rc, -1); /* EOF mid-body is an error */
    check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, 200, "", GG_UP_PARSE_DONE, 1);
}

static void test_chunked(void)
{
    const char *s =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n";
    check_all_splits(s, 0, 0, 200, "hello world0123456789", GG_UP_PARSE_DONE, 1);
    /* split byte by byte, the body is delivered as it arrives, not at the end */
    struct run r = {0};
    run_feed(&r, s, strlen(s), 1, 0, 0);
    CHECK(r.body_calls >= 10);
    /* trailers are consumed */
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", 0, 0,
                     200, "abc", GG_UP_PARSE_DONE, 1);
    /* the final coding decides */
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0, 0, 200, "abc",
                     GG_UP_PARSE_DONE, 1);
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw", 0, 1, 200, "raw", GG_UP_PARSE_DONE, 0);
    /* Transfer-Encoding wins over Content-Length, and such a connection is not reused */
    check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 0, 0, 200,
                     "ok", GG_UP_PARSE_DONE, 0);
}

static void test_close_delimited(void)
{
    check_all_splits("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 0, 1, 200, "until the end",
                     GG_UP_PARSE_DONE, 0);
    struct run r = {0};
    const char *s = "HTTP/1.1 200 OK\r\n\r\nabc";
    run_feed(&r, s, strlen(s), 3, 0, 0);
    CHECK_EQ_INT(r.p.state, GG_UP_PARSE_BODY_EOF);
    CHECK_EQ_INT(gg_upstream_parse_eof(&r.p), 0);
    CHECK_EQ_INT(r.p.state, GG_UP_PARSE_DONE);
}

static void test_keepalive(void)
{
    check_all_splits("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", 0, 0, 200, "ok", GG_UP_PARSE_DONE, 0);
    check_all_splits("HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\nContent-Length: 2\r\n\r\nok", 0, 0, 200, "ok",
                     GG_UP_PARSE_DONE, 0);
    check_all_splits("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, 0, 200, "ok", GG_UP_PARSE_DONE, 0);
    check_all_splits("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", 0, 0, 200, "ok", GG_UP_PARSE_DONE,
                     1);
}

static void test_interim_and_bodiless(void)
{
    check_all_splits("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                     0, 0, 200, "ok", GG_UP_PARSE_DONE, 1);
    check_all_splits("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 0, 0, 204, "", GG_UP_PARSE_DONE, 1);
    check_all_splits("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, 304, "", GG_UP_PARSE_DONE, 1);
    check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 1, 0, 200, "", GG_UP_PARSE_DONE, 1);
}

static void test_upgrade(void)
{
    const char *head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    char s[256];
    snprintf(s, sizeof(s), "%sRAW", head);
    struct run r = {0};
    run_feed(&r, s, strlen(s), strlen(s), 0, 0);
    CHECK_EQ_INT(r.status, 101);
    CHECK_EQ_INT(r.p.state, GG_UP_PARSE_UPGRADED);
    CHECK_EQ_INT(r.p.keepalive, 0);
    CHECK_EQ_INT(r.p.head_end, strlen(head));
    CHECK_EQ_INT(r.leftover_len, 3);
    CHECK(memcmp(r.leftover, "RAW", 3) == 0);
}

static void test_leftovers(void)
{
    const char *extra = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX";
    const char *msgs[] = {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"};
    for (size_t i = 0; i != sizeof(msgs) / sizeof(msgs[0]); ++i) {
        char s[512];
        snprintf(s, sizeof(s), "%s%s", msgs[i], extra);
        for (size_t step = 1; step <= strlen(s); step += 7) {
            struct run r = {0};
            run_feed(&r, s, strlen(s), step, 0, 0);
            CHECK_EQ_INT(r.p.state, GG_UP_PARSE_DONE);
            CHECK_EQ_INT(r.body_len, 3);
            CHECK_EQ_INT(r.leftover_len, strlen(extra));
            CHECK(r.leftover_len == strlen(extra) && memcmp(r.leftover, extra, r.leftover_len) == 0);
        }
    }
}

static void expect_bad(const char *s, size_t len, size_t step)
{
    struct run r = {0};
    run_feed(&r, s, len, step, 0, 0);
    if (r.rc != GG_UP_PARSE_BAD)
        fprintf(stderr, "expected bad: %.40s (rc %zd, state %d)\n", s, r.rc, r.p.state);
    CHECK_EQ_INT(r.rc, GG_UP_PARSE_BAD);
    CHECK_EQ_INT(r.p.state, GG_UP_PARSE_ERROR);
}

static void test_malformed(void)
{
    const char *bad[] = {
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "FOO 200 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        expect_bad(bad[i], strlen(bad[i]), strlen(bad[i]));
        expect_bad(bad[i], strlen(bad[i]), 1);
    }
}

static void test_limits(void)
{
    /* a head over 64 KB, fed whole and in 4 KB reads, is refused without waiting for its end */
    size_t cap = 80 * 1024;
    char *s = malloc(cap);
    size_t n = (size_t)snprintf(s, cap, "HTTP/1.1 200 OK\r\n");
    while (n < 70 * 1024)
        n += (size_t)snprintf(s + n, cap - n, "X-Filler: %0100d\r\n", 0);
    expect_bad(s, n, n);
    expect_bad(s, n, 4096);
    /* more headers than GG_UPSTREAM_MAX_HEADERS */
    n = (size_t)snprintf(s, cap, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i != GG_UPSTREAM_MAX_HEADERS + 1; ++i)
        n += (size_t)snprintf(s + n, cap - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(s + n, cap - n, "Content-Length: 0\r\n\r\n");
    expect_bad(s, n, n);
    /* exactly the maximum number is fine */
    n = (size_t)snprintf(s, cap, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i != GG_UPSTREAM_MAX_HEADERS - 1; ++i)
        n += (size_t)snprintf(s + n, cap - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(s + n, cap - n, "Content-Length: 0\r\n\r\n");
    struct run r = {0};
    run_feed(&r, s, n, n, 0, 0);
    CHECK_EQ_INT(r.p.state, GG_UP_PARSE_DONE);
    free(s);
}

static void test_callback_control(void)
{
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct run r = {.head_ret = -1};
    run_feed(&r, s, strlen(s), strlen(s), 0, 0);
    CHECK_EQ_INT(r.rc, GG_UP_PARSE_STOPPED);
    CHECK_EQ_INT(r.body_len, 0);

    /* returning 1 stops right after the event; the rest is consumed by the next feed */
    gg_upstream_parser_t p;
    char buf[64];
    strcpy(buf, s);
    struct run r2 = {.head_ret = 1};
    gg_upstream_parser_init(&p, 0);
    ssize_t n = gg_upstream_parse_feed(&p, buf, strlen(buf), &cbs, &r2);
    CHECK_EQ_INT(n, strlen(s) - 2);
    CHECK_EQ_INT(r2.body_len, 0);
    n = gg_upstream_parse_feed(&p, buf + n, 2, &cbs, &r2);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(r2.body_len, 2);
    CHECK_EQ_INT(p.state, GG_UP_PARSE_DONE);
}

TEST_MAIN(test_content_length, test_chunked, test_close_delimited, test_keepalive, test_interim_and_bodiless, test_upgrade,
          test_leftovers, test_malformed, test_limits, test_callback_control)
