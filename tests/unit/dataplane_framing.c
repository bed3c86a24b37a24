/* Tests dataplane/framing.c's head scans: which raw HTTP/1 request heads have ambiguous body framing, and which
 * first heads h2o would refuse with its fixed 400. The h2o side (the 400, the dialect filter, the first-head answer)
 * is tested against the running daemon in tests/integration/bad_input.test.mjs. */
#include <stdlib.h>

#include "gridgate/framing.h"
#include "test.h"

#define H(lit) lit, sizeof(lit) - 1

static void test_framing(void)
{
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")) == NULL);
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")) == NULL);
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")) != NULL);
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\nCONTENT-LENGTH: 5\r\n\r\n")) != NULL);
    /* Bare LF line ends, as picohttpparser accepts them. */
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n")) != NULL);
    /* Two Content-Lengths: the same value (blanks aside) is harmless, different ones are not. */
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length:5 \r\n\r\n")) == NULL);
    const char *m = gg_http1_framing_conflict(H("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n"));
    CHECK(m != NULL && strstr(m, "two Content-Length") != NULL);
    /* Names only count at the start of a header line, and the request line is not a header. */
    CHECK(gg_http1_framing_conflict(
              H("POST /content-length:1 HTTP/1.1\r\nX-Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")) == NULL);
    CHECK(gg_http1_framing_conflict(H("POST / HTTP/1.1\r\nX: Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")) == NULL);
    CHECK(gg_http1_framing_conflict("", 0) == NULL);
    CHECK(gg_http1_framing_conflict(H("Content-Length: 5\r\nTransfer-Encoding: chunked")) == NULL);
}

/* n header lines after a request line for path */
static char *head_with(const char *path, int n, size_t *len)
{
    size_t cap = 64 + strlen(path) + (size_t)n * 16;
    char *h = malloc(cap);
    size_t o = (size_t)snprintf(h, cap, "GET %s HTTP/1.1\r\n", path);
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(h + o, cap - o, "X-H%d: a\r\n", i);
    o += (size_t)snprintf(h + o, cap - o, "\r\n");
    *len = o;
    return h;
}

static void test_first_head(void)
{
    gg_head_refusal_t r;
    CHECK_EQ_INT(gg_http1_head_check(H("GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"), &r), 1);
    CHECK_EQ_INT(gg_http1_head_check(H("GET /v1/models HTTP/1.1\r\nHost: x\r\n"), &r), 0); /* not ended yet */
    CHECK_EQ_INT(gg_http1_head_check("", 0, &r), 0);
    CHECK_EQ_INT(gg_http1_head_check(H("POST /api/chat HTTP/1.1\nContent-Length: 2\n\n{}"), &r), 1); /* bare LF */
    size_t len;
    char *h = head_with("/api/chat", 100, &len); /* h2o's limit exactly */
    CHECK_EQ_INT(gg_http1_head_check(h, len, &r), 1);
    free(h);
    h = head_with("/api/chat", 101, &len);
    CHECK_EQ_INT(gg_http1_head_check(h, len, &r), -1);
    CHECK_EQ_INT(r.status, 431);
    CHECK(r.path.len == 9 && memcmp(r.path.base, "/api/chat", 9) == 0);
    free(h);
    h = head_with("/api/chat", 150, &len); /* refused at the 101st line, before the head has ended */
    CHECK_EQ_INT(gg_http1_head_check(h, len - 2, &r), -1);
    CHECK_EQ_INT(r.status, 431);
    free(h);
    CHECK_EQ_INT(gg_http1_head_check(H("GET /v1/x HTTP/1.1\r\nno colon\r\n\r\n"), &r), -1);
    CHECK_EQ_INT(r.status, 400);
    CHECK(r.path.len == 5 && memcmp(r.path.base, "/v1/x", 5) == 0);
    CHECK_EQ_INT(gg_http1_head_check(H("\x01 garbage\r\n\r\n"), &r), -1);
    CHECK_EQ_INT(r.status, 400);
    CHECK_EQ_INT(r.path.len, 0);
    /* a head still incomplete at h2o's size limit: too large */
    size_t big = H2O_MAX_REQLEN + 10;
    char *b = malloc(big);
    static const char start[] = "GET /v1/models HTTP/1.1\r\nX-Big: ";
    memcpy(b, start, sizeof(start) - 1);
    memset(b + sizeof(start) - 1, 'a', big - (sizeof(start) - 1));
    CHECK_EQ_INT(gg_http1_head_check(b, H2O_MAX_REQLEN - 1, &r), 0);
    CHECK_EQ_INT(gg_http1_head_check(b, big, &r), -1);
    CHECK_EQ_INT(r.status, 431);
    free(b);
}

TEST_MAIN(test_framing, test_first_head)
