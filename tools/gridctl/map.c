/* gridctl map: the pinned BPF maps gridgate publishes (/sys/fs/bpf/gridgate by default), listed and dumped with
 * libbpf. Keys and values are decoded with the map's BTF, as bpftool does: integers, char arrays as strings, other
 * arrays, nested structs and unions by member name; a map without BTF is dumped as hex bytes. */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gridctl.h"

#define DEFAULT_PIN "/sys/fs/bpf/gridgate"

static int help(int argc, char **argv)
{
    printf("Usage: gridctl map { list [pin DIR] | dump NAME [pin DIR] | help }\n"
           "       DIR defaults to $GRIDCTL_PIN_PATH, else " DEFAULT_PIN " (gridgate --pin-path)\n");
    return EXIT_OK;
}

static const char *pin_dir(int *argc, char **argv)
{
    const char *dir = getenv("GRIDCTL_PIN_PATH") ? getenv("GRIDCTL_PIN_PATH") : DEFAULT_PIN;
    for (int i = 0; i + 1 < *argc; i++)
        if (is_prefix(argv[i], "pin")) {
            dir = argv[i + 1];
            memmove(argv + i, argv + i + 2, (*argc - i - 2) * sizeof(char *));
            *argc -= 2;
            break;
        }
    return dir;
}

static const char *type_name(__u32 t)
{
    switch (t) {
    case BPF_MAP_TYPE_HASH:
        return "hash";
    case BPF_MAP_TYPE_ARRAY:
        return "array";
    case BPF_MAP_TYPE_PERCPU_HASH:
        return "percpu_hash";
    case BPF_MAP_TYPE_PERCPU_ARRAY:
        return "percpu_array";
    case BPF_MAP_TYPE_LRU_HASH:
        return "lru_hash";
    case BPF_MAP_TYPE_SOCKMAP:
        return "sockmap";
    case BPF_MAP_TYPE_SOCKHASH:
        return "sockhash";
    case BPF_MAP_TYPE_RINGBUF:
        return "ringbuf";
    default:
        return "other";
    }
}

static int open_map(const char *dir, const char *name, struct bpf_map_info *info)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = bpf_obj_get(path);
    if (fd < 0)
        return -errno;
    __u32 len = sizeof(*info);
    memset(info, 0, sizeof(*info));
    if (bpf_obj_get_info_by_fd(fd, info, &len) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int list(int argc, char **argv)
{
    const char *dir = pin_dir(&argc, argv);
    DIR *d = opendir(dir);
    if (d == NULL)
        return fail(EXIT_NOT_FOUND, "no pinned maps: %s: %s (is gridgate running with --bpf on or auto?)", dir, strerror(errno));
    json_t *out = json_array();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        struct bpf_map_info info;
        int fd = open_map(dir, e->d_name, &info);
        if (fd < 0)
            continue; /* a pinned program or link, not a map */
        json_array_append_new(out, json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "name", e->d_name, "type", type_name(info.type),
                                             "id", (int)info.id, "key_size", (int)info.key_size, "value_size", (int)info.value_size,
                                             "max_entries", (int)info.max_entries));
        close(fd);
    }
    closedir(d);
    if (opts.json) {
        print_json(out);
        return EXIT_OK;
    }
    static const char *const h[] = {"MAP", "TYPE", "ID", "KEY", "VALUE", "MAX_ENTRIES"};
    static const int r[] = {0, 0, 1, 1, 1, 1};
    struct table t;
    table_init(&t, 6, h, r);
    size_t i;
    json_t *m;
    json_array_foreach(out, i, m)
    {
        char c[4][16];
        snprintf(c[0], 16, "%lld", json_integer_value(json_object_get(m, "id")));
        snprintf(c[1], 16, "%lld", json_integer_value(json_object_get(m, "key_size")));
        snprintf(c[2], 16, "%lld", json_integer_value(json_object_get(m, "value_size")));
        snprintf(c[3], 16, "%lld", json_integer_value(json_object_get(m, "max_entries")));
        table_add(&t, json_string_value(json_object_get(m, "name")), json_string_value(json_object_get(m, "type")), c[0], c[1],
                  c[2], c[3]);
    }
    table_print(&t);
    json_decref(out);
    return EXIT_OK;
}

static json_t *hex_bytes(const unsigned char *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char b[8];
        snprintf(b, sizeof(b), "0x%02x", p[i]);
        json_array_append_new(a, json_string(b));
    }
    return a;
}

static void print_hex(const char *label, const unsigned char *p, size_t n)
{
    printf("%s:", label);
    for (size_t i = 0; i < n; i++)
        printf("%s%02x", i % 16 == 0 && i ? "\n       " : " ", p[i]);
    putchar('\n');
}

/* --- BTF decoding ---------------------------------------------------------------------------- */

#define BTF_MAX_DEPTH 16

static const struct btf_type *resolve(const struct btf *btf, __u32 *id)
{
    const struct btf_type *t = btf__type_by_id(btf, *id);
    for (int hops = 0; t != NULL && hops < 32; hops++) {
        __u16 k = btf_kind(t);
        if (k != BTF_KIND_TYPEDEF && k != BTF_KIND_VOLATILE && k != BTF_KIND_CONST && k != BTF_KIND_RESTRICT &&
            k != BTF_KIND_TYPE_TAG)
            return t;
        *id = t->type;
        t = btf__type_by_id(btf, *id);
    }
    return NULL;
}

/* An integer of `bits` bits at bit offset `off` into p (little-endian, as the kernel stores them here). */
static json_t *int_at(const unsigned char *p, size_t size, __u32 off, __u32 bits, int is_signed)
{
    if (bits == 0 || bits > 64 || (off + bits + 7) / 8 > size)
        return json_null();
    unsigned __int128 raw = 0;
    size_t first = off / 8, last = (off + bits - 1) / 8;
    for (size_t i = last + 1; i-- > first;)
        raw = raw << 8 | p[i];
    raw >>= off % 8;
    uint64_t v = bits == 64 ? (uint64_t)raw : (uint64_t)raw & ((1ull << bits) - 1);
    if (is_signed && bits < 64 && (v >> (bits - 1)) & 1)
        v |= ~0ull << bits;
    if (is_signed)
        return json_integer((json_int_t)v);
    /* JSON integers here are signed 64-bit: larger unsigned values are printed as strings, exactly */
    if (v > (uint64_t)INT64_MAX) {
        char b[24];
        snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
        return json_string(b);
    }
    return json_integer((json_int_t)v);
}

static int is_char(const struct btf *btf, __u32 id)
{
    const struct btf_type *t = resolve(btf, &id);
    if (t == NULL || !btf_is_int(t) || t->size != 1)
        return 0;
    const char *n = btf__name_by_offset(btf, t->name_off);
    return (btf_int_encoding(t) & BTF_INT_CHAR) || (n != NULL && strcmp(n, "char") == 0);
}

/* Bounds one decoded key or value: overlapping union members and zero-sized types let a few bytes of a hostile BTF
 * fan out into billions of JSON nodes; a real map value is far below this. */
#define BTF_MAX_NODES 65536

static json_t *decode_at(const struct btf *btf, __u32 id, const unsigned char *p, size_t size, int depth, size_t *nodes);

static void decode_members(const struct btf *btf, const struct btf_type *t, const unsigned char *p, size_t size, int depth,
                           size_t *nodes, json_t *obj)
{
    const struct btf_member *m = btf_members(t);
    for (__u16 i = 0; i < btf_vlen(t); i++, m++) {
        __u32 off = btf_member_bit_offset(t, i), bits = btf_member_bitfield_size(t, i);
        const char *name = btf__name_by_offset(btf, m->name_off);
        __u32 mid = m->type;
        const struct btf_type *mt = resolve(btf, &mid);
        if (mt == NULL)
            continue;
        json_t *v;
        if (bits != 0) { /* bitfield: only integers and enums can be one */
            v = int_at(p, size, off, bits, btf_is_int(mt) && (btf_int_encoding(mt) & BTF_INT_SIGNED));
        } else {
            if (off % 8 != 0 || off / 8 > size)
                continue;
            v = decode_at(btf, m->type, p + off / 8, size - off / 8, depth + 1, nodes);
        }
        if (name == NULL || name[0] == '\0') {
            /* an anonymous struct or union: its members read as the parent's, as in C */
            if (json_is_object(v))
                json_object_update(obj, v);
            json_decref(v);
        } else {
            json_object_set_new(obj, name, v);
        }
    }
}

static json_t *decode_at(const struct btf *btf, __u32 id, const unsigned char *p, size_t size, int depth, size_t *nodes)
{
    const struct btf_type *t = resolve(btf, &id);
    if (t == NULL || depth > BTF_MAX_DEPTH || *nodes == 0)
        return json_null();
    --*nodes;
    __s64 tsz = btf__resolve_size(btf, id);
    if (tsz < 0 || (size_t)tsz > size)
        return json_null();
    switch (btf_kind(t)) {
    case BTF_KIND_INT:
        if (btf_int_encoding(t) & BTF_INT_BOOL)
            return tsz > 0 ? json_boolean(p[0] != 0) : json_null(); /* a zero-sized bool owns no byte to read */
        return int_at(p, size, btf_int_offset(t), btf_int_bits(t), btf_int_encoding(t) & BTF_INT_SIGNED);
    case BTF_KIND_ENUM:
        return int_at(p, size, 0, t->size * 8, btf_kflag(t));
    case BTF_KIND_PTR:
        return int_at(p, size, 0, (__u32)tsz * 8, 0);
    case BTF_KIND_ARRAY: {
        const struct btf_array *a = btf_array(t);
        if (is_char(btf, a->type)) {
            size_t n = strnlen((const char *)p, a->nelems);
            json_t *str = json_stringn((const char *)p, n); /* NULL when not UTF-8: then the bytes as numbers */
            if (str != NULL)
                return str;
        }
        __s64 esz = btf__resolve_size(btf, a->type);
        json_t *arr = json_array();
        for (__u32 i = 0; esz > 0 && i < a->nelems; i++)
            json_array_append_new(arr, decode_at(btf, a->type, p + i * esz, size - i * esz, depth + 1, nodes));
        return arr;
    }
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION: {
        json_t *obj = json_object();
        decode_members(btf, t, p, (size_t)tsz, depth, nodes, obj);
        return obj;
    }
    default:
        return hex_bytes(p, (size_t)tsz);
    }
}

static json_t *decode(const struct btf *btf, __u32 id, const unsigned char *p, size_t size)
{
    size_t nodes = BTF_MAX_NODES;
    return decode_at(btf, id, p, size, 0, &nodes);
}

/* Text form of a decoded value: scalars and arrays of scalars on one line, structs as indented "name: value" lines. */
static void print_value(const char *label, json_t *v, int indent)
{
    if (json_is_object(v)) {
        printf("%*s%s:\n", indent, "", label);
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m) print_value(k, m, indent + 4);
        return;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        int flat = 1;
        json_array_foreach(v, i, e) flat &= !json_is_object(e) && !json_is_array(e);
        if (!flat) {
            printf("%*s%s:\n", indent, "", label);
            json_array_foreach(v, i, e)
            {
                char idx[24];
                snprintf(idx, sizeof(idx), "[%zu]", i);
                print_value(idx, e, indent + 4);
            }
            return;
        }
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    printf("%*s%s: %s\n", indent, "", label, s ? s : "null");
    free(s);
}

static void print_entry(json_t *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(e, k, v) print_value(k, v, 0);
    putchar('\n');
}

static int dump(int argc, char **argv)
{
    const char *dir = pin_dir(&argc, argv);
    if (argc != 1)
        return fail(EXIT_USAGE, "usage: gridctl map dump NAME [pin DIR]");
    struct bpf_map_info info;
    int fd = open_map(dir, argv[0], &info);
    if (fd == -ENOENT)
        return fail(EXIT_NOT_FOUND, "map %s is not pinned under %s (is gridgate running with --bpf on or auto?)", argv[0], dir);
    if (fd < 0)
        return fail(fd == -EPERM || fd == -EACCES ? EXIT_AUTH : EXIT_FAIL, "map %s/%s: %s", dir, argv[0], strerror(-fd));
    if (info.type == BPF_MAP_TYPE_SOCKMAP || info.type == BPF_MAP_TYPE_SOCKHASH || info.type == BPF_MAP_TYPE_RINGBUF) {
        close(fd);
        return fail(EXIT_FAIL, "map %s is a %s: its values cannot be read from userspace", argv[0], type_name(info.type));
    }
    /* With BTF (the map carries the ids of its key and value types) fields are named; without, hex as bpftool. */
    struct btf *btf = NULL;
    if (info.btf_id != 0 && info.btf_value_type_id != 0) {
        btf = btf__load_from_kernel_by_id(info.btf_id);
        if (btf == NULL || btf__type_by_id(btf, info.btf_value_type_id) == NULL ||
            (info.btf_key_type_id != 0 && btf__type_by_id(btf, info.btf_key_type_id) == NULL)) {
            btf__free(btf);
            btf = NULL;
        }
    }
    /* Per-CPU maps hand back one value per possible CPU, each rounded up to 8 bytes. */
    int percpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH;
    int ncpu = percpu ? libbpf_num_possible_cpus() : 1;
    if (ncpu < 1)
        ncpu = 1;
    size_t stride = percpu ? ((info.value_size + 7) & ~7u) : info.value_size;
    size_t vsz = stride * (size_t)ncpu;
    unsigned char *key = calloc(1, info.key_size ? info.key_size : 1), *next = calloc(1, info.key_size ? info.key_size : 1);
    unsigned char *val = calloc(1, vsz ? vsz : 1);
    json_t *out = json_array();
    int first = 1, n = 0;
    while (n < 1000000 && bpf_map_get_next_key(fd, first ? NULL : key, next) == 0) {
        first = 0;
        memcpy(key, next, info.key_size);
        if (bpf_map_lookup_elem(fd, key, val) != 0)
            continue;
        n++;
        json_t *e;
        if (btf == NULL) {
            e = json_pack("{s:o, s:o}", "key", hex_bytes(key, info.key_size), "value", hex_bytes(val, vsz));
        } else {
            json_t *k =
                info.btf_key_type_id ? decode(btf, info.btf_key_type_id, key, info.key_size) : hex_bytes(key, info.key_size);
            if (percpu) {
                json_t *vals = json_array();
                for (int c = 0; c < ncpu; c++)
                    json_array_append_new(vals, json_pack("{s:i, s:o}", "cpu", c, "value",
                                                          decode(btf, info.btf_value_type_id, val + c * stride, stride)));
                e = json_pack("{s:o, s:o}", "key", k, "values", vals);
            } else {
                e = json_pack("{s:o, s:o}", "key", k, "value", decode(btf, info.btf_value_type_id, val, info.value_size));
            }
        }
        if (opts.json) {
            json_array_append_new(out, e);
        } else if (btf == NULL) {
            print_hex("key", key, info.key_size);
            print_hex("value", val, vsz);
            json_decref(e);
        } else {
            print_entry(e);
            json_decref(e);
        }
    }
    if (opts.json)
        print_json(out);
    else {
        json_decref(out);
        printf("Found %d element%s\n", n, n == 1 ? "" : "s");
    }
    btf__free(btf);
    free(key);
    free(next);
    free(val);
    close(fd);
    return EXIT_OK;
}

static const struct cmd cmds[] = {{"list", list}, {"dump", dump}, {"help", help}, {NULL, NULL}};

int do_map(int argc, char **argv)
{
    return cmd_dispatch(argc, argv, cmds, help, "map");
}
