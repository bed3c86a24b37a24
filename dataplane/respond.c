/* Complete small responses and errors in the caller's dialect, gzipped for clients that accept it. */
#include "gridgate/respond.h"

#include <stdio.h>
#include <stdlib.h>

#include "gridgate/dialect.h"
#include "gridgate/gzip.h"

const char *gg_status_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

int gg_client_accepts_gzip(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    return i != -1 && gg_gzip_accepted(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

static void send_copy(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = gg_status_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    char *copy = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(copy, body, len);
    h2o_send_inline(req, copy, len);
}

void gg_respond_gzipped(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    send_copy(req, status, content_type, body, len);
}

/* Compressed here, whole, rather than by h2o's compress filter: the answer keeps its Content-Length (h2o 2.2.5
 * chunks only 200s, so a chunked error would close the connection) and the access log sees real bytes. */
void gg_respond(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    if (gg_gzip_config.level > 0 && len >= gg_gzip_config.min_bytes &&
        h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_ENCODING, -1) == -1) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
        gg_buf_t z = GG_BUF_INIT;
        if (gg_client_accepts_gzip(req) && gg_gzip_compress(body, len, gg_gzip_config.level, &z) == 0) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, H2O_STRLIT("gzip"));
            send_copy(req, status, content_type, z.base, z.len);
            gg_buf_free(&z);
            return;
        }
        gg_buf_free(&z);
    }
    send_copy(req, status, content_type, body, len);
}

static void respond_error(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type, const char *code,
                          int retry_after)
{
    size_t len;
    char *body = gg_dialect_error_body(d, message, type, code, NULL, &len);
    if (retry_after >= 0) {
        char *v = h2o_mem_alloc_pool(&req->pool, 16);
        int n = snprintf(v, 16, "%d", retry_after);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v, n);
    }
    gg_respond(req, status, "application/json", body, len);
    free(body);
}

void gg_respond_error(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type, const char *code)
{
    respond_error(req, d, status, message, type, code, -1);
}

void gg_respond_error_retry(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type, const char *code,
                            unsigned retry_after_s)
{
    respond_error(req, d, status, message, type, code, (int)retry_after_s);
}

enum gg_dialect gg_dialect_of_path(const h2o_iovec_t path)
{
    return path.len >= 5 && memcmp(path.base, "/api/", 5) == 0 ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
}
