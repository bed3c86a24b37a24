/* libFuzzer target for gridctl's BTF value decoder (tools/gridctl/map.c): input = 2-byte little-endian BTF length,
 * raw BTF (parsed and checked by libbpf), one byte choosing the type, then the value bytes to decode with it.
 * The few gridctl helpers map.c links against are defined below with no output, since the harness never reaches
 * them; only the decoder and the text printer run. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/gridctl/map.c"

struct gridctl_opts opts;
int fail(int code, const char *fmt, ...)
{
    (void)fmt;
    return code;
}
void print_json(json_t *j)
{
    json_decref(j);
}
int cmd_dispatch(int argc, char **argv, const struct cmd *c, int (*h)(int, char **), const char *noun)
{
    (void)argc, (void)argv, (void)c, (void)h, (void)noun;
    return 0;
}
int is_prefix(const char *arg, const char *full)
{
    return arg[0] && strncmp(arg, full, strlen(arg)) == 0;
}
void table_init(struct table *t, size_t ncols, const char *const *headers, const int *right)
{
    (void)t, (void)ncols, (void)headers, (void)right;
}
void table_add(struct table *t, ...)
{
    (void)t;
}
void table_print(struct table *t)
{
    (void)t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        quiet = 1;
        libbpf_set_print(NULL);
        if (freopen("/dev/null", "w", stdout) == NULL)
            return 0;
    }
    if (size < 3)
        return 0;
    size_t n = data[0] | (size_t)data[1] << 8;
    if (n > size - 3)
        return 0;
    struct btf *btf = btf__new(data + 2, n);
    if (btf == NULL)
        return 0;
    __u32 cnt = btf__type_cnt(btf);
    __u32 id = cnt > 1 ? 1 + data[2 + n] % (cnt - 1) : 0;
    const unsigned char *val = data + 3 + n;
    size_t vlen = size - 3 - n;
    /* the map's value_size is the type's size: decode only what the buffer holds, as dump() does */
    /* decode()'s cap is BTF_MAX_NODES; a smaller one here reaches the same cut-off paths at a fraction of the cost
     * (256: allocating JSON nodes was most of a run's time at 2,048, 1,500 execs/s against 3,800) */
    size_t nodes = 256;
    json_t *v = decode_at(btf, id, val, vlen, 0, &nodes);
    print_value("value", v, 0);
    json_decref(v);
    btf__free(btf);
    return 0;
}
