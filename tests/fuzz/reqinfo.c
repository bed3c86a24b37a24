/* Fuzzes dataplane/reqinfo.c and the request half of dataplane/dialect.c: byte 0 picks the dialect
 * and endpoint, the rest is the body.
 * Differential: whenever the one-pass scanner decides a body (does not hand it to jansson), the jansson
 * path must reach the same verdict, the same message and the same fields.
 * A body that parses must survive the gateway's edits, serialize to JSON that parses again with the
 * same model, and translate to the other dialect or fail cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/dialect.h"
#include "gridgate/jscan.h"
#include "gridgate/reqinfo.h"

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void differential(enum gg_dialect d, enum gg_endpoint ep, const char *body, size_t len)
{
    gg_reqinfo_t a, b;
    char ea[256] = "", eb[256] = "";
    json_t *j = json_loadb(body, len, 0, NULL);
    if (gg_json_check(body, len) != (j != NULL)) /* the scanner vouched for what jansson refuses */
        abort();
    json_decref(j);
    int ra = gg_reqinfo_parse_scan(&a, d, ep, body, len, ea, sizeof(ea));
    int rb = gg_reqinfo_parse_tree(&b, d, ep, body, len, eb, sizeof(eb));
    if (ra != 1) {
        if (ra != rb || strcmp(ea, eb) != 0)
            abort();
        if (ra == 0 && (!same_str(a.model, b.model) || !same_str(a.user, b.user) || a.stream != b.stream ||
                        a.include_usage != b.include_usage || a.max_tokens != b.max_tokens ||
                        a.prompt_tokens_est != b.prompt_tokens_est || a.is_load_unload != b.is_load_unload ||
                        a.is_unload != b.is_unload || a.encoding_base64 != b.encoding_base64 || a.root != NULL))
            abort();
        /* the lazily built tree is the reference tree */
        if (ra == 0 && !json_equal(gg_reqinfo_root(&a), b.root))
            abort();
    }
    if (ra == 0)
        gg_reqinfo_dispose(&a);
    if (rb == 0)
        gg_reqinfo_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum gg_dialect d = data[0] & 1 ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
    enum gg_endpoint ep = (enum gg_endpoint)((data[0] >> 1) % 5);
    gg_reqinfo_t ri, moved;
    char err[256];

    differential(d, ep, (const char *)data + 1, size - 1);
    if (gg_reqinfo_parse(&ri, d, ep, (const char *)data + 1, size - 1, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || ri.root != NULL)
            abort();
        gg_reqinfo_dispose(&ri);
        return 0;
    }
    gg_reqinfo_move(&moved, &ri);
    if (moved.model == NULL || gg_reqinfo_root(&moved) == NULL)
        abort();

    char path[64];
    enum gg_dialect other = d == GG_DIALECT_OPENAI ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
    json_t *up = gg_dialect_request(d, other, ep, gg_reqinfo_root(&moved), path, sizeof(path), err, sizeof(err));
    if (up != NULL) {
        /* the translated body may be fed back as if it were the upstream's answer */
        json_t *resp = gg_dialect_response(other, d, ep, up, moved.model, data[0] >> 7);
        json_decref(resp);
        char *s = json_dumps(up, GG_JSON_DUMP_FLAGS);
        if (s == NULL)
            abort();
        free(s);
        json_decref(up);
    }

    gg_reqinfo_set_model(&moved, "fuzz-model");
    gg_reqinfo_force_include_usage(&moved);
    size_t len;
    char *s = gg_reqinfo_serialize(&moved, &len);
    gg_reqinfo_t again;
    if (gg_reqinfo_parse(&again, d, ep, s, len, err, sizeof(err)) != 0 || strcmp(again.model, "fuzz-model") != 0)
        abort();
    gg_reqinfo_dispose(&again);
    free(s);
    gg_reqinfo_dispose(&moved);
    return 0;
}
