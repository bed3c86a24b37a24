/* libFuzzer target for the registration heartbeat body: any bytes through gg_registration_parse, the function
 * POST /gridgate/v1/register calls. Checks: a failure says which kind (not an object, or a named field); a
 * success has a name, an http:// url, a known kind and a normalized models list that survives a dump. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/backend.h"
#include "gridgate/registration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gg_registration_beat_t b;
    char err[512] = "";
    int rc = gg_registration_parse((const char *)data, size, &b, err, sizeof(err));
    if (rc != 0) {
        if ((rc != -EINVAL && rc != -EBADMSG) || err[0] == '\0')
            abort();
        if (rc == -EBADMSG && strncmp(err, "body: ", 6) != 0)
            abort();
        return 0;
    }
    if (b.name[0] == '\0' || strncmp(b.url, "http://", 7) != 0 || b.kind < 0 || !json_is_array(b.models) ||
        (b.gpu != NULL && !json_is_object(b.gpu)) || gg_engine_kind_name(b.kind) == NULL)
        abort();
    size_t i;
    json_t *m;
    json_array_foreach(b.models, i, m)
    {
        const char *n = json_string_value(json_object_get(m, "name"));
        if (n == NULL || n[0] == '\0' || strlen(n) >= GG_MODEL_NAME_MAX || !json_is_boolean(json_object_get(m, "loaded")))
            abort();
    }
    char *dump = json_dumps(b.models, JSON_COMPACT);
    if (dump == NULL)
        abort();
    free(dump);
    gg_registration_beat_free(&b);
    return 0;
}
