/* Micro benchmark of the upstream client alone (dataplane/upstream.c): N sequential keep-alive requests on one pool,
 * the process's CPU time per request from getrusage, and the number of body callbacks (stream chunks).
 * Built and run by tools/bench/upstream_micro.sh; not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <h2o/socket.h>
#include "gridgate/upstream.h"

struct state {
    int done, failed, status;
    uint64_t body_calls, body_bytes;
};

static int on_head(void *ctx, int status, int minor, const struct phr_header *h, size_t n)
{
    ((struct state *)ctx)->status = status;
    return 0;
}

static int on_body(void *ctx, const char *buf, size_t len)
{
    struct state *s = ctx;
    s->body_calls++;
    s->body_bytes += len;
    return 0;
}

static void on_end(void *ctx)
{
    ((struct state *)ctx)->done = 1;
}

static void on_error(void *ctx, const char *err, enum gg_upstream_phase phase)
{
    struct state *s = ctx;
    fprintf(stderr, "upstream_micro: %s (phase %d)\n", err, (int)phase);
    s->done = s->failed = 1;
}

static double wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double user_us, sys_us;

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    user_us = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec;
    sys_us = ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
    return user_us + sys_us;
}

/* The floor to compare with: the same requests on one blocking socket, send() and recv() only, same parser. */
static int raw_loop(const char *host, int port, long n, const char *head, size_t hl, const char *body)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(fd, (void *)&sin, sizeof(sin)) != 0)
        return 1;
    static char buf[1 << 16];
    struct state s;
    static const gg_upstream_parse_callbacks_t pcb = {on_head, on_body};
    double c0 = 0, w0 = 0;
    for (long i = -1; i != n; ++i) {
        if (i == 0) {
            c0 = cpu_us();
            w0 = wall_us();
        }
        struct iovec iov[2] = {{(void *)head, hl}, {(void *)body, strlen(body)}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = *body ? 2 : 1};
        if (sendmsg(fd, &msg, MSG_NOSIGNAL) <= 0)
            return 1;
        gg_upstream_parser_t p;
        gg_upstream_parser_init(&p, 0);
        size_t len = 0;
        s = (struct state){0};
        while (p.state != GG_UP_PARSE_DONE) {
            ssize_t r = recv(fd, buf + len, sizeof(buf) - len, 0);
            if (r <= 0)
                return 1;
            len += (size_t)r;
            ssize_t c = gg_upstream_parse_feed(&p, buf, len, &pcb, &s);
            if (c < 0)
                return 1;
            memmove(buf, buf + c, len - (size_t)c);
            len -= (size_t)c;
        }
    }
    double c1 = cpu_us(), w1 = wall_us();
    printf("raw blocking floor: cpu_us_per_req=%.2f wall_us_per_req=%.2f\n", (c1 - c0) / n, (w1 - w0) / n);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: upstream_micro HOST PORT N PATH [JSON_BODY] [RCVBUF]\n"
                        "  N sequential keep-alive requests (POST when a body is given); prints CPU-us per request\n");
        return 2;
    }
    const char *host = argv[1], *path = argv[4], *body = argc > 5 ? argv[5] : "";
    int port = atoi(argv[2]);
    long n = atol(argv[3]);
    char head[1024];
    int hl = *body != '\0' ? snprintf(head, sizeof(head),
                                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                                      "Content-Length: %zu\r\n\r\n",
                                      path, host, port, strlen(body))
                           : snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, host, port);
    if (getenv("UPSTREAM_MICRO_RAW") != NULL)
        return raw_loop(host, port, n, head, (size_t)hl, body);
    h2o_loop_t *loop = h2o_evloop_create();
    gg_upstream_pool_t *pool = gg_upstream_pool_create(loop, host, (uint16_t)port, 4, 0);
    if (pool == NULL) {
        perror("upstream_micro: pool");
        return 1;
    }
    if (argc > 6)
        gg_upstream_pool_set_rcvbuf(pool, atoi(argv[6]));
    static const gg_upstream_callbacks_t cbs = {on_head, on_body, on_end, on_error};
    static const gg_upstream_timeouts_t t = {2000, 10000, 10000};
    struct state s = {0};
    uint64_t calls = 0, bytes = 0;

    /* one warm-up request opens the connection */
    gg_upstream_send(pool, h2o_iovec_init(head, (size_t)hl), h2o_iovec_init(body, strlen(body)), &t, &cbs, &s);
    while (!s.done)
        h2o_evloop_run(loop, INT32_MAX);
    if (s.failed || s.status != 200) {
        fprintf(stderr, "upstream_micro: warm-up got status %d\n", s.status);
        return 1;
    }
    double c0 = cpu_us(), w0 = wall_us(), u0 = user_us, s0 = sys_us;
    for (long i = 0; i != n; ++i) {
        s = (struct state){0};
        gg_upstream_send(pool, h2o_iovec_init(head, (size_t)hl), h2o_iovec_init(body, strlen(body)), &t, &cbs, &s);
        while (!s.done)
            h2o_evloop_run(loop, INT32_MAX);
        if (s.failed)
            return 1;
        calls += s.body_calls;
        bytes += s.body_bytes;
    }
    double c1 = cpu_us(), w1 = wall_us();
    gg_upstream_pool_stats_t st;
    double u = (user_us - u0) / n, sy = (sys_us - s0) / n;
    gg_upstream_pool_get_stats(pool, &st);
    printf("requests=%ld connections=%llu cpu_us_per_req=%.2f (user %.2f sys %.2f) wall_us_per_req=%.2f "
           "body_calls_per_req=%.1f cpu_us_per_body_call=%.3f bytes_per_req=%.0f\n",
           n, (unsigned long long)st.opened, (c1 - c0) / n, u, sy, (w1 - w0) / n, (double)calls / n,
           calls != 0 ? (c1 - c0) / calls : 0.0, (double)bytes / n);
    gg_upstream_pool_destroy(pool);
    h2o_evloop_run(loop, 0);
    h2o_evloop_destroy(loop);
    return 0;
}
