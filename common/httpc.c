/* The blocking HTTP/1.1 client (see httpc.h): non-blocking connect + poll under one deadline, response
 * framing by Content-Length, chunked (picohttpparser's decoder) or connection close. */
#include "gridgate/httpc.h"
#include "gridgate/picohttpparser.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (64 * 1024)

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

int gg_httpc_parse_target(const char *target, char *host, size_t hostlen, unsigned *port, char *prefix, size_t prefixlen,
                          int *is_unix)
{
    *is_unix = 0;
    *port = 80;
    if (prefixlen)
        prefix[0] = '\0';
    if (strncmp(target, "unix:", 5) == 0) {
        const char *p = target + 5;
        if (*p == '\0' || strlen(p) >= hostlen || strlen(p) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return -EINVAL;
        strcpy(host, p);
        *is_unix = 1;
        return 0;
    }
    const char *p = target;
    if (strncasecmp(p, "https://", 8) == 0)
        return -EPROTONOSUPPORT;
    int scheme = strncasecmp(p, "http://", 7) == 0;
    if (scheme)
        p += 7;
    const char *end = p + strcspn(p, "/?#");
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', end - hs);
        if (he == NULL)
            return -EINVAL;
        p = he + 1;
    } else {
        he = memchr(p, ':', end - p);
        if (he == NULL)
            he = end;
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= hostlen)
        return -EINVAL;
    memcpy(host, hs, he - hs);
    host[he - hs] = '\0';
    if (p < end) {
        if (*p != ':' || p + 1 == end)
            return -EINVAL;
        unsigned long v = 0;
        for (p++; p < end; p++) {
            if (*p < '0' || *p > '9')
                return -EINVAL;
            v = v * 10 + (*p - '0');
            if (v > 65535)
                return -EINVAL;
        }
        if (v == 0)
            return -EINVAL;
        *port = (unsigned)v;
    } else if (!scheme) {
        return -EINVAL; /* a bare HOST needs its :PORT */
    }
    /* Keep the path prefix without a trailing slash so prefix + "/v1/models" stays well-formed. */
    size_t plen = strcspn(end, "?#");
    while (plen > 0 && end[plen - 1] == '/')
        plen--;
    if (plen >= prefixlen)
        return -EINVAL;
    if (prefixlen) {
        memcpy(prefix, end, plen);
        prefix[plen] = '\0';
    }
    return 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = events};
        int t = remaining(deadline);
        if (t == 0)
            return -ETIMEDOUT;
        int r = poll(&pfd, 1, t);
        if (r == -1) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ETIMEDOUT;
        return 0;
    }
}

static int connect_addr(const struct sockaddr *sa, socklen_t salen, int family, int64_t deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    if (connect(fd, sa, salen) == -1) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            int e = -errno;
            close(fd);
            return e;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        if (r < 0) {
            close(fd);
            return r;
        }
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == -1 || soerr != 0) {
            close(fd);
            return soerr ? -soerr : -EIO;
        }
    }
    return fd;
}

static int open_conn(const char *host, unsigned port, int is_unix, int64_t deadline)
{
    if (is_unix) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        size_t l = strlen(host);
        if (l >= sizeof(sun.sun_path))
            return -EINVAL;
        memcpy(sun.sun_path, host, l + 1);
        return connect_addr((struct sockaddr *)&sun, sizeof(sun), AF_UNIX, deadline);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int gr = getaddrinfo(host, portstr, &hints, &ai);
    if (gr != 0)
        return gr == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    int fd = -EHOSTUNREACH;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        fd = connect_addr(a->ai_addr, a->ai_addrlen, a->ai_family, deadline);
        if (fd >= 0 || fd == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= n;
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        return n == -1 ? -errno : -EIO;
    }
    return 0;
}

/* Reads more bytes into the growable buffer; returns bytes read, 0 at EOF, or -errno. */
static ssize_t read_more(int fd, char **buf, size_t *len, size_t *cap, size_t limit, int64_t deadline)
{
    if (*cap - *len < 4096) {
        if (*cap >= limit + 4096)
            return -EMSGSIZE;
        size_t ncap = *cap ? *cap * 2 : 8192;
        if (ncap > limit + 8192)
            ncap = limit + 8192;
        char *n = realloc(*buf, ncap);
        if (n == NULL)
            abort();
        *buf = n;
        *cap = ncap;
    }
    for (;;) {
        ssize_t n = recv(fd, *buf + *len, *cap - *len - 1, 0);
        if (n >= 0) {
            *len += n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int r = wait_fd(fd, POLLIN, deadline);
        if (r < 0)
            return r;
    }
}

static int header_value(const char *head, size_t head_len, const char *name, const char **val, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *p = memchr(head, '\n', head_len); /* skip the status line */
    const char *end = head + head_len;
    while (p != NULL && p + 1 < end) {
        p++;
        const char *eol = memchr(p, '\n', end - p);
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *val = v;
            *vlen = ve - v;
            return 0;
        }
        p = eol;
    }
    return -ENOENT;
}

int gg_httpc_header(const gg_httpc_response_t *res, const char *name, char *buf, size_t buflen)
{
    const char *v;
    size_t vl;
    if (res->head == NULL || header_value(res->head, res->head_len, name, &v, &vl) != 0)
        return -ENOENT;
    if (buflen) {
        size_t c = vl < buflen - 1 ? vl : buflen - 1;
        memcpy(buf, v, c);
        buf[c] = '\0';
    }
    return (int)vl;
}

static int read_response(int fd, const char *method, int64_t deadline, gg_httpc_response_t *res)
{
    size_t limit = res->max_body ? res->max_body : GG_HTTPC_DEFAULT_MAX_BODY;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int minor, status, ret;
    size_t hlen;
    for (;;) {
        ssize_t n = read_more(fd, &buf, &len, &cap, MAX_HEAD, deadline);
        if (n < 0) {
            ret = n == -EMSGSIZE ? -EPROTO : (int)n;
            goto fail;
        }
        const char *msg;
        size_t msg_len, nh = 64;
        struct phr_header hdrs[64];
        int pr = len ? phr_parse_response(buf, len, &minor, &status, &msg, &msg_len, hdrs, &nh, 0) : -2;
        if (pr > 0) {
            hlen = pr;
            if (status >= 100 && status < 200 && status != 101) {
                /* Skip interim responses (100 Continue). */
                memmove(buf, buf + pr, len - pr);
                len -= pr;
                continue;
            }
            break;
        }
        if (pr == -1 || n == 0) {
            ret = -EPROTO;
            goto fail;
        }
    }
    res->status = status;
    res->head = malloc(hlen + 1);
    if (res->head == NULL)
        abort();
    memcpy(res->head, buf, hlen);
    res->head[hlen] = '\0';
    res->head_len = hlen;
    memmove(buf, buf + hlen, len - hlen);
    len -= hlen;

    const char *v;
    size_t vl;
    int chunked =
        header_value(res->head, hlen, "transfer-encoding", &v, &vl) == 0 && vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0;
    long long clen = -1;
    if (!chunked && header_value(res->head, hlen, "content-length", &v, &vl) == 0) {
        char tmp[24];
        if (vl == 0 || vl >= sizeof(tmp)) {
            ret = -EPROTO;
            goto fail;
        }
        memcpy(tmp, v, vl);
        tmp[vl] = '\0';
        char *e;
        clen = strtoll(tmp, &e, 10);
        if (*e != '\0' || clen < 0) {
            ret = -EPROTO;
            goto fail;
        }
    }
    if (strcasecmp(method, "HEAD") == 0 || status == 204 || status == 304)
        clen = 0, chunked = 0;
    if (clen > (long long)limit) {
        ret = -EMSGSIZE;
        goto fail;
    }

    if (chunked) {
        struct phr_chunked_decoder dec = {0};
        size_t decoded = 0; /* bytes at the start of buf already decoded */
        for (;;) {
            size_t sz = len - decoded;
            ssize_t r = phr_decode_chunked(&dec, buf + decoded, &sz);
            decoded += sz;
            len = decoded;
            if (r >= 0)
                break;
            if (r == -1) {
                ret = -EPROTO;
                goto fail;
            }
            if (decoded > limit) {
                ret = -EMSGSIZE;
                goto fail;
            }
            ssize_t n = read_more(fd, &buf, &len, &cap, limit + 4096, deadline);
            if (n < 0) {
                ret = (int)n;
                goto fail;
            }
            if (n == 0) {
                ret = -EPROTO;
                goto fail;
            }
        }
        if (len > limit) {
            ret = -EMSGSIZE;
            goto fail;
        }
    } else if (clen >= 0) {
        while (len < (size_t)clen) {
            ssize_t n = read_more(fd, &buf, &len, &cap, limit, deadline);
            if (n < 0) {
                ret = (int)n;
                goto fail;
            }
            if (n == 0) {
                ret = -EPROTO;
                goto fail;
            }
        }
        len = clen;
    } else {
        for (;;) {
            if (len > limit) {
                ret = -EMSGSIZE;
                goto fail;
            }
            ssize_t n = read_more(fd, &buf, &len, &cap, limit, deadline);
            if (n < 0) {
                ret = (int)n;
                goto fail;
            }
            if (n == 0)
                break;
        }
    }
    if (buf == NULL || cap < len + 1) {
        char *nb = realloc(buf, len + 1);
        if (nb == NULL)
            abort();
        buf = nb;
    }
    buf[len] = '\0';
    res->body = buf;
    res->body_len = len;
    return 0;

fail:
    free(buf);
    free(res->head);
    res->head = NULL;
    res->head_len = 0;
    return ret;
}

int gg_httpc_request(const char *target, const char *method, const char *path, const char *headers, const char *body,
                     size_t body_len, int timeout_ms, gg_httpc_response_t *res)
{
    char host[256], prefix[256];
    unsigned port;
    int is_unix;
    size_t max_body = res->max_body;
    memset(res, 0, sizeof(*res));
    res->max_body = max_body;
    int r = gg_httpc_parse_target(target, host, sizeof(host), &port, prefix, sizeof(prefix), &is_unix);
    if (r < 0)
        return r;
    if (path == NULL || path[0] != '/')
        return -EINVAL;
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 1);

    /* Bracket IPv6 literals in Host; the unix socket path means nothing to the server. */
    char hosthdr[300];
    if (is_unix)
        snprintf(hosthdr, sizeof(hosthdr), "localhost");
    else if (strchr(host, ':') != NULL)
        snprintf(hosthdr, sizeof(hosthdr), "[%s]:%u", host, port);
    else
        snprintf(hosthdr, sizeof(hosthdr), "%s:%u", host, port);
    char clen[64] = "";
    if (body != NULL)
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", body_len);
    char *req = NULL;
    int reqlen = asprintf(&req, "%s %s%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s\r\n", method, prefix, path, hosthdr,
                          clen, headers ? headers : "");
    if (reqlen < 0)
        abort();

    int fd = open_conn(host, port, is_unix, deadline);
    if (fd < 0) {
        free(req);
        return fd;
    }
    r = send_all(fd, req, reqlen, deadline);
    free(req);
    if (r == 0 && body != NULL && body_len > 0)
        r = send_all(fd, body, body_len, deadline);
    /* A server may answer (e.g. 413) and close before reading the whole body: still read its answer. */
    int rr = read_response(fd, method, deadline, res);
    close(fd);
    if (rr < 0)
        return r < 0 ? r : rr;
    return 0;
}

int gg_httpc_get(const char *target, const char *path, int timeout_ms, gg_httpc_response_t *res)
{
    return gg_httpc_request(target, "GET", path, NULL, NULL, 0, timeout_ms, res);
}

void gg_httpc_response_free(gg_httpc_response_t *res)
{
    free(res->head);
    free(res->body);
    res->head = res->body = NULL;
    res->head_len = res->body_len = 0;
}

const char *gg_httpc_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case -ETIMEDOUT:
        return "timeout";
    case -ECONNREFUSED:
        return "connect refused";
    case -ECONNRESET:
        return "connection reset";
    case -EPROTO:
        return "malformed response";
    case -EMSGSIZE:
        return "response too large";
    case -EINVAL:
        return "bad target";
    case -EPROTONOSUPPORT:
        return "https not supported";
    case -EHOSTUNREACH:
        return "host unreachable";
    case -ENETUNREACH:
        return "network unreachable";
    case -ENOENT:
        return "no such socket";
    default:
        return strerror(-err);
    }
}
