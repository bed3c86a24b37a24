/* JSON-lines access log. Each line is built in memory and written with one write(2) on an O_APPEND
 * descriptor, so lines from several workers never interleave. */
#include "gridgate/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "gridgate/buf.h"

static int log_fd = -1;

int gg_accesslog_open(const char *path)
{
    if (path == NULL || *path == '\0') {
        log_fd = -1;
        return 0;
    }
    if (strcmp(path, "-") == 0) {
        log_fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd == -1)
        return -errno;
    log_fd = fd;
    return 0;
}

static void append_kv_str(gg_buf_t *b, const char *k, const char *v, size_t len)
{
    gg_buf_appendf(b, ",\"%s\":", k);
    gg_buf_append_json_str(b, v, len);
}

void gg_accesslog_write(const gg_accesslog_entry_t *e)
{
    if (log_fd == -1)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    gg_buf_t b = GG_BUF_INIT;
    gg_buf_appendf(&b, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    h2o_iovec_t method = e->req != NULL ? e->req->method : e->method, path = e->req != NULL ? e->req->path : e->path;
    append_kv_str(&b, "method", method.base, method.len);
    size_t plen = path.len;
    for (size_t i = 0; i < path.len; i++)
        if (path.base[i] == '?') {
            plen = i;
            break;
        }
    append_kv_str(&b, "path", path.base, plen);
    gg_buf_appendf(&b, ",\"status\":%d", e->status);
    append_kv_str(&b, "tenant", e->tenant ? e->tenant : "default", strlen(e->tenant ? e->tenant : "default"));
    append_kv_str(&b, "model", e->model ? e->model : "", strlen(e->model ? e->model : ""));
    append_kv_str(&b, "backend", e->backend ? e->backend : "", strlen(e->backend ? e->backend : ""));
    gg_buf_appendf(&b,
                   ",\"ttft_ms\":%.3f,\"duration_ms\":%.3f,\"tokens_in\":%ld,\"tokens_out\":%ld,\"bytes_out\":%llu,"
                   "\"attempts\":%u,\"stream\":%s,\"spliced\":%s,\"spliced_bytes\":%llu",
                   e->ttft_us / 1000.0, e->duration_us / 1000.0, e->tokens_in, e->tokens_out, (unsigned long long)e->bytes_out,
                   e->attempts, e->stream ? "true" : "false", e->spliced ? "true" : "false", (unsigned long long)e->spliced_bytes);
    if (e->error)
        append_kv_str(&b, "error", e->error, strlen(e->error));
    gg_buf_append(&b, "}\n", 2);
    ssize_t rc = write(log_fd, b.base, b.len);
    (void)rc;
    gg_buf_free(&b);
}
