/* Fuzzes dataplane/reqinfo.c and the request half of dataplane/dialect.c: byte 0 picks the dialect
 * and endpoint, the rest is the body. A body that parses must survive the gateway's edits, serialize
 * to JSON that parses again with the same model, and translate to the other dialect or fail cleanly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/dialect.h"
#include "gridgate/reqinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum gg_dialect d = data[0] & 1 ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
    enum gg_endpoint ep = (enum gg_endpoint)((data[0] >> 1) % 5);
    gg_reqinfo_t ri;
    char err[256];

    if (gg_reqinfo_parse(&ri, d, ep, (const char *)data + 1, size - 1, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || ri.root != NULL)
            abort();
        gg_reqinfo_dispose(&ri);
        return 0;
    }
    if (ri.model == NULL || ri.root == NULL)
        abort();

    char path[64];
    enum gg_dialect other = d == GG_DIALECT_OPENAI ? GG_DIALECT_OLLAMA : GG_DIALECT_OPENAI;
    json_t *up = gg_dialect_request(d, other, ep, ri.root, path, sizeof(path), err, sizeof(err));
    if (up != NULL) {
        /* the translated body may be fed back as if it were the upstream's answer */
        json_t *resp = gg_dialect_response(other, d, ep, up, ri.model, data[0] >> 7);
        json_decref(resp);
        char *s = json_dumps(up, GG_JSON_DUMP_FLAGS);
        if (s == NULL)
            abort();
        free(s);
        json_decref(up);
    }

    gg_reqinfo_set_model(&ri, "fuzz-model");
    gg_reqinfo_force_include_usage(&ri);
    size_t len;
    char *s = gg_reqinfo_serialize(&ri, &len);
    gg_reqinfo_t again;
    if (gg_reqinfo_parse(&again, d, ep, s, len, err, sizeof(err)) != 0 || strcmp(again.model, "fuzz-model") != 0)
        abort();
    gg_reqinfo_dispose(&again);
    free(s);
    gg_reqinfo_dispose(&ri);
    return 0;
}
