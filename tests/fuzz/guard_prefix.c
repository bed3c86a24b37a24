/* libFuzzer target for the guard's prefix parser (control/guard.c): any bytes as a PREFIX argument; whatever parses
 * must format back to a prefix that parses to the same key (one key per prefix, host bits cleared). */
#include "gridgate/guard.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[128];
    size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    struct gg_guard_prefix k, k2;
    if (gg_guard_parse_prefix(s, &k) != 0)
        return 0;
    if (k.prefixlen > 128)
        __builtin_trap();
    char out[64];
    gg_guard_format_prefix(&k, out, sizeof(out));
    if (gg_guard_parse_prefix(out, &k2) != 0 || memcmp(&k, &k2, sizeof(k)) != 0)
        __builtin_trap();
    return 0;
}
