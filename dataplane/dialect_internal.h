/* Helpers shared by dialect.c and dialect_stream.c; not part of the public API. */
#ifndef GG_DIALECT_INTERNAL_H
#define GG_DIALECT_INTERNAL_H
#include <jansson.h>
#include <stddef.h>

/** Ollama's created_at: RFC 3339 UTC with nanoseconds. */
void gg__dialect_rfc3339_now(char *out, size_t len);
const char *gg__dialect_finish_to_openai(const char *done_reason, int tool_calls);
const char *gg__dialect_finish_to_ollama(const char *finish_reason);
/** Tool-call arguments: OpenAI's JSON string <-> Ollama's object (new references). */
json_t *gg__dialect_args_to_object(json_t *args);
json_t *gg__dialect_args_to_string(json_t *args);
/** A fresh response id: prefix + 24 hex digits. */
void gg__dialect_new_id(char *out, size_t len, const char *prefix);
#endif
