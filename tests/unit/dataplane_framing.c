/* Tests dataplane/framing.c's head scan: which raw HTTP/1 request heads have ambiguous body framing. The h2o side
 * (the 400 and the dialect filter) is tested against the running daemon in tests/integration/bad_input.test.mjs. */
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

TEST_MAIN(test_framing)
