/* The response-body scanner: finds, in one JSON text (an SSE data payload, an NDJSON line or a whole
 * non-streaming body), whether it carries non-empty content, a completion token count, a top-level error
 * or Ollama's done flag. It tokenizes strings and nesting only, so it costs one pass and no allocation:
 * at ~2000 req/s with dozens of events each, building a jansson tree per event would make the load
 * generator the bottleneck. */
#include "gridload.h"

#include <string.h>

static size_t skip_ws(const char *s, size_t i, size_t len)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    return i;
}

static int key_is(const char *k, size_t klen, const char *lit)
{
    size_t n = strlen(lit);
    return klen == n && memcmp(k, lit, n) == 0;
}

static int parse_count(const char *s, size_t i, size_t len)
{
    long v = 0;
    int any = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9' && v < 1000000000L) {
        v = v * 10 + (s[i++] - '0');
        any = 1;
    }
    return any ? (int)v : -1;
}

void gl_scan_json(const char *s, size_t len, struct gl_scan *out)
{
    int depth = 0;
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == '{' || c == '[') {
            depth++;
            i++;
            continue;
        }
        if (c == '}' || c == ']') {
            depth--;
            i++;
            continue;
        }
        if (c != '"') {
            i++;
            continue;
        }
        size_t b = ++i;
        while (i < len && s[i] != '"')
            i += s[i] == '\\' ? 2 : 1;
        if (i >= len)
            return;
        const char *k = s + b;
        size_t klen = i - b;
        i = skip_ws(s, i + 1, len);
        if (i >= len || s[i] != ':')
            continue; /* a string value, not a key */
        i = skip_ws(s, i + 1, len);
        if (i >= len)
            return;
        /* Ollama /api/chat puts text in message.content, /api/generate in response; OpenAI in
         * choices[0].delta.content (stream) or choices[0].message.content. */
        if (key_is(k, klen, "content") || key_is(k, klen, "response")) {
            if (s[i] == '"' && i + 1 < len && s[i + 1] != '"')
                out->content = 1;
        } else if (key_is(k, klen, "completion_tokens") || key_is(k, klen, "eval_count")) {
            int v = parse_count(s, i, len);
            if (v >= 0)
                out->usage = v;
        } else if (key_is(k, klen, "error")) {
            if (depth == 1 && s[i] != 'n')
                out->error = 1;
        } else if (key_is(k, klen, "done")) {
            if (s[i] == 't')
                out->done = 1;
        }
    }
}
