/* Complete small responses and errors in the caller's dialect. */
#include "gridgate/respond.h"

#include <stdio.h>
#include <stdlib.h>

#include "gridgate/dialect.h"

const char *gg_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

void gg_respond(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = gg_status_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    char *copy = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(copy, body, len);
    h2o_send_inline(req, copy, len);
}

static void respond_error(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type,
                          const char *code, int retry_after)
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

void gg_respond_error_retry(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type,
                            const char *code, unsigned retry_after_s)
{
    respond_error(req, d, status, message, type, code, (int)retry_after_s);
}

enum gg_dialect gg_dialect_of_path(const h2o_iovec_t path)
{
    return path.len >= 5 && memcmp(path.base, "/api/", 5) == 0 ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
}
