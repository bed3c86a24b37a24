/* Tests common/httpc.c against a scripted server thread on loopback (TCP and a unix socket): framing by
 * Content-Length, chunked (split at awkward places) and close, interim 100, HEAD/204, caps, timeouts,
 * refused connections, malformed answers, and what the request looks like on the wire. */
#include "gridgate/httpc.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* One connection's script: the response is written in the given pieces; hang keeps it open unanswered. */
struct script {
    const char *pieces[8];
    int hang;
};

static struct script cur;
static char last_request[8192];
static size_t last_request_len;
static int listen_fd, unix_fd;
static pthread_t srv;
static volatile int stop;

static void serve_one(int c)
{
    /* Read the head and, when there is one, the Content-Length body. */
    size_t len = 0;
    last_request[0] = '\0';
    for (;;) {
        ssize_t n = read(c, last_request + len, sizeof(last_request) - 1 - len);
        if (n <= 0)
            break;
        len += n;
        last_request[len] = '\0';
        char *end = strstr(last_request, "\r\n\r\n");
        if (end != NULL) {
            char *cl = strstr(last_request, "Content-Length: ");
            size_t want = (size_t)(end + 4 - last_request) + (cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0);
            if (len >= want)
                break;
        }
    }
    last_request_len = len;
    if (cur.hang) {
        usleep(400 * 1000);
        return;
    }
    for (int i = 0; i < 8 && cur.pieces[i] != NULL; i++) {
        if (send(c, cur.pieces[i], strlen(cur.pieces[i]), MSG_NOSIGNAL) < 0)
            break;
        usleep(2000); /* separate reads on the client */
    }
}

static void *server(void *arg)
{
    while (!stop) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        fd_set rf;
        FD_ZERO(&rf);
        FD_SET(listen_fd, &rf);
        FD_SET(unix_fd, &rf);
        struct timeval tv = {0, 50000};
        int mx = listen_fd > unix_fd ? listen_fd : unix_fd;
        if (select(mx + 1, &rf, NULL, NULL, &tv) <= 0)
            continue;
        int lfd = FD_ISSET(listen_fd, &rf) ? listen_fd : unix_fd;
        int c = accept(lfd, (struct sockaddr *)&ss, &sl);
        if (c < 0)
            continue;
        serve_one(c);
        close(c);
    }
    return NULL;
}

static char target[64];
static char unix_path[108];

static void start_server(void)
{
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin));
    listen(listen_fd, 16);
    socklen_t sl = sizeof(sin);
    getsockname(listen_fd, (struct sockaddr *)&sin, &sl);
    snprintf(target, sizeof(target), "http://127.0.0.1:%u", ntohs(sin.sin_port));

    snprintf(unix_path, sizeof(unix_path), "/tmp/gg-httpc-%d.sock", (int)getpid());
    unlink(unix_path);
    unix_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", unix_path);
    bind(unix_fd, (struct sockaddr *)&sun, sizeof(sun));
    listen(unix_fd, 16);
    pthread_create(&srv, NULL, server, NULL);
}

static void stop_server(void)
{
    stop = 1;
    pthread_join(srv, NULL);
    close(listen_fd);
    close(unix_fd);
    unlink(unix_path);
}

static void script(const char *a, const char *b, const char *c, const char *d)
{
    memset(&cur, 0, sizeof(cur));
    cur.pieces[0] = a;
    cur.pieces[1] = b;
    cur.pieces[2] = c;
    cur.pieces[3] = d;
}

static void test_content_length(void)
{
    gg_httpc_response_t res = {0};
    script("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Multi:  a b  \r\nContent-Length: 9\r\n\r\n{\"a\":", "123}",
           "TRAILING-GARBAGE", NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/v1/models", 2000, &res), 0);
    CHECK_EQ_INT(res.status, 200);
    CHECK_EQ_INT(res.body_len, 9);
    CHECK_EQ_STR(res.body, "{\"a\":123}"); /* NUL-terminated, bytes after the body dropped */
    char v[64];
    CHECK_EQ_INT(gg_httpc_header(&res, "content-type", v, sizeof(v)), 16);
    CHECK_EQ_STR(v, "application/json");
    CHECK_EQ_INT(gg_httpc_header(&res, "x-multi", v, sizeof(v)), 3);
    CHECK_EQ_STR(v, "a b");
    CHECK_EQ_INT(gg_httpc_header(&res, "x-none", v, sizeof(v)), -ENOENT);
    gg_httpc_response_free(&res);
    /* the request on the wire */
    CHECK(strncmp(last_request, "GET /v1/models HTTP/1.1\r\n", 25) == 0);
    CHECK(strstr(last_request, "\r\nHost: 127.0.0.1:") != NULL);
    CHECK(strstr(last_request, "\r\nConnection: close\r\n") != NULL);
    CHECK(strstr(last_request, "Content-Length") == NULL);
}

static void test_exact_body(void)
{
    gg_httpc_response_t res = {0};
    script("HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nhello", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/x", 2000, &res), 0);
    CHECK_EQ_INT(res.status, 404);
    CHECK_EQ_STR(res.body, "hello");
    gg_httpc_response_free(&res);
    /* a URL prefix is prepended to the path */
    char t2[128];
    snprintf(t2, sizeof(t2), "%s/base/", target);
    script("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(t2, "/health", 2000, &res), 0);
    CHECK_EQ_STR(res.body, "");
    CHECK(strncmp(last_request, "GET /base/health HTTP/1.1\r\n", 27) == 0);
    gg_httpc_response_free(&res);
}

static void test_chunked(void)
{
    gg_httpc_response_t res = {0};
    /* chunk sizes and CRLFs split across writes, an extension, a trailer */
    script("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "lo\r\n6;ext=1\r\n wor", "ld\r\n0\r\nX-T: 1\r\n",
           "\r\n");
    CHECK_EQ_INT(gg_httpc_get(target, "/c", 2000, &res), 0);
    CHECK_EQ_INT(res.status, 200);
    CHECK_EQ_INT(res.body_len, 11);
    CHECK_EQ_STR(res.body, "hello world");
    gg_httpc_response_free(&res);
    /* broken chunk size */
    script("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/c", 2000, &res), -EPROTO);
    /* ends before the last chunk */
    script("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/c", 2000, &res), -EPROTO);
}

static void test_close_delimited(void)
{
    gg_httpc_response_t res = {0};
    script("HTTP/1.0 200 OK\r\n\r\nline one\n", "line two\n", NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), 0);
    CHECK_EQ_STR(res.body, "line one\nline two\n");
    gg_httpc_response_free(&res);
    /* short Content-Length body */
    script("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EPROTO);
}

static void test_interim_head_204(void)
{
    gg_httpc_response_t res = {0};
    script("HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", NULL, NULL);
    const char *body = "{\"mode\":\"none\"}";
    CHECK_EQ_INT(
        gg_httpc_request(target, "POST", "/p", "Content-Type: application/json\r\nX-A: b\r\n", body, strlen(body), 2000, &res), 0);
    CHECK_EQ_INT(res.status, 201);
    CHECK_EQ_STR(res.body, "ok");
    gg_httpc_response_free(&res);
    CHECK(strncmp(last_request, "POST /p HTTP/1.1\r\n", 18) == 0);
    CHECK(strstr(last_request, "\r\nContent-Length: 15\r\n") != NULL);
    CHECK(strstr(last_request, "\r\nX-A: b\r\n\r\n{\"mode\":\"none\"}") != NULL);
    /* HEAD and 204 have no body whatever the headers say */
    script("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_request(target, "HEAD", "/", NULL, NULL, 0, 2000, &res), 0);
    CHECK_EQ_INT(res.body_len, 0);
    gg_httpc_response_free(&res);
    script("HTTP/1.1 204 No Content\r\n\r\n", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), 0);
    CHECK_EQ_INT(res.status, 204);
    gg_httpc_response_free(&res);
}

static void test_errors(void)
{
    gg_httpc_response_t res = {0};
    /* body over the cap, by Content-Length, by chunks and by close */
    script("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", NULL, NULL, NULL);
    res.max_body = 10;
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EMSGSIZE);
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    script("HTTP/1.1 200 OK\r\n\r\n", big, NULL, NULL);
    res.max_body = 1000;
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EMSGSIZE);
    script("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4e20\r\n", big, big, NULL);
    res.max_body = 1000;
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EMSGSIZE);
    /* not HTTP */
    res.max_body = 0;
    script("SSH-2.0-OpenSSH\r\n\r\n", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EPROTO);
    script("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EPROTO);
    /* closes without a byte */
    script(NULL, NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(target, "/", 2000, &res), -EPROTO);
    /* never answers */
    memset(&cur, 0, sizeof(cur));
    cur.hang = 1;
    CHECK_EQ_INT(gg_httpc_get(target, "/", 100, &res), -ETIMEDOUT);
    usleep(450 * 1000);
    /* nobody listens: port 1 on loopback */
    CHECK_EQ_INT(gg_httpc_get("127.0.0.1:1", "/", 1000, &res), -ECONNREFUSED);
    CHECK_EQ_STR(gg_httpc_strerror(-ECONNREFUSED), "connect refused");
    CHECK_EQ_INT(gg_httpc_get("https://127.0.0.1:1", "/", 1000, &res), -EPROTONOSUPPORT);
    CHECK_EQ_INT(gg_httpc_get(target, "no-slash", 1000, &res), -EINVAL);
    CHECK_EQ_INT(gg_httpc_get("unix:/nonexistent/sock", "/", 1000, &res), -ENOENT);
}

static void test_unix(void)
{
    gg_httpc_response_t res = {0};
    char t[160];
    snprintf(t, sizeof(t), "unix:%s", unix_path);
    script("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[ok]", NULL, NULL, NULL);
    CHECK_EQ_INT(gg_httpc_get(t, "/backends", 2000, &res), 0);
    CHECK_EQ_STR(res.body, "[ok]");
    CHECK(strstr(last_request, "\r\nHost: localhost\r\n") != NULL);
    gg_httpc_response_free(&res);
}

static void test_parse_target(void)
{
    char host[64], prefix[64];
    unsigned port;
    int is_unix;
    CHECK_EQ_INT(gg_httpc_parse_target("http://10.0.0.1:8000/v1/", host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix), 0);
    CHECK_EQ_STR(host, "10.0.0.1");
    CHECK_EQ_INT(port, 8000);
    CHECK_EQ_STR(prefix, "/v1");
    CHECK_EQ_INT(gg_httpc_parse_target("http://gpu-box", host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix), 0);
    CHECK_EQ_INT(port, 80);
    CHECK_EQ_INT(gg_httpc_parse_target("[::1]:11434", host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix), 0);
    CHECK_EQ_STR(host, "::1");
    CHECK_EQ_INT(port, 11434);
    CHECK_EQ_INT(gg_httpc_parse_target("unix:/run/gg.sock", host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix), 0);
    CHECK_EQ_INT(is_unix, 1);
    CHECK_EQ_STR(host, "/run/gg.sock");
    const char *bad[] = {"gpu-box",     "http://:80", "http://h:", "http://h:0", "http://h:65536",
                         "http://h:8a", "[::1",       "unix:",     "h:1x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = gg_httpc_parse_target(bad[i], host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix);
        if (r != -EINVAL)
            fprintf(stderr, "accepted %s\n", bad[i]);
        CHECK_EQ_INT(r, -EINVAL);
    }
}

static void test_all(void)
{
    start_server();
    test_content_length();
    test_exact_body();
    test_chunked();
    test_close_delimited();
    test_interim_head_204();
    test_errors();
    test_unix();
    stop_server();
}

TEST_MAIN(test_all, test_parse_target)
