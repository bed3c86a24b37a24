/* libFuzzer target for control/config.c: any bytes through gg_config_parse_string (JSON syntax, the option
 * table, the line locator, cross-field validation), then the command-line setters on what parsed. */
#include "gridgate/config.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    gg_config_t cfg;
    if (gg_config_parse_string((const char *)data, size, "fuzz.json", &cfg, err, sizeof(err)) != 0) {
        /* Every failure names the file. */
        if (strncmp(err, "fuzz.json:", 10) != 0)
            __builtin_trap();
        return 0;
    }
    /* Exercise the setters with a value taken from the input. */
    char val[64];
    size_t n = size < sizeof(val) - 1 ? size : sizeof(val) - 1;
    memcpy(val, data, n);
    val[n] = '\0';
    gg_config_set(&cfg, "threads", val, err, sizeof(err));
    gg_config_set(&cfg, "trust_tenant_header", val, err, sizeof(err));
    gg_config_add_backend_url(&cfg, val, err, sizeof(err));
    gg_config_add_listen(&cfg, val, err, sizeof(err));
    gg_config_finish(&cfg, err, sizeof(err));
    gg_config_free(&cfg);
    return 0;
}
