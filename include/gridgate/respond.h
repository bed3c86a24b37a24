/* Small complete responses: JSON bodies and errors in the caller's dialect. Every response here has a
 * Content-Length, because h2o 2.2.5 chunks only status 200 and closes the connection otherwise. */
#ifndef GG_RESPOND_H
#define GG_RESPOND_H

#include <h2o.h>

#include "gridgate/reqinfo.h"

/** Sends `body` (copied into the request's pool) with the given status and content type; gzipped when the
 *  client accepts it and the body reaches compression.min_bytes. */
void gg_respond(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);
/** Sends a body that is already gzip-compressed, unchanged (Content-Encoding: gzip). */
void gg_respond_gzipped(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);
/** Whether the client's Accept-Encoding admits gzip. */
int gg_client_accepts_gzip(h2o_req_t *req);
/** Sends an error in dialect `d`: OpenAI {"error":{message,type,param,code}} or Ollama {"error":message}. */
void gg_respond_error(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type, const char *code);
/** The same with a Retry-After header (seconds), for answers where retrying helps. */
void gg_respond_error_retry(h2o_req_t *req, enum gg_dialect d, int status, const char *message, const char *type, const char *code,
                            unsigned retry_after_s);
/** The dialect a path belongs to: /api/... is Ollama, everything else OpenAI. */
enum gg_dialect gg_dialect_of_path(const h2o_iovec_t path);
/** The reason phrase for a status. */
const char *gg_status_reason(int status);
#endif
