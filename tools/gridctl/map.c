/* gridctl map: the pinned BPF maps gridgate publishes (/sys/fs/bpf/gridgate by default), listed and dumped
 * with libbpf: keys and values as hex bytes, as bpftool prints maps without BTF. */
#include <bpf/bpf.h>
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
    /* Per-CPU maps hand back one value per possible CPU, each rounded up to 8 bytes. */
    int percpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH;
    long ncpu = percpu ? sysconf(_SC_NPROCESSORS_CONF) : 1;
    size_t vsz = percpu ? ((info.value_size + 7) & ~7u) * (size_t)ncpu : info.value_size;
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
        if (opts.json)
            json_array_append_new(out, json_pack("{s:o, s:o}", "key", hex_bytes(key, info.key_size), "value", hex_bytes(val, vsz)));
        else {
            print_hex("key", key, info.key_size);
            print_hex("value", val, vsz);
        }
    }
    if (opts.json)
        print_json(out);
    else {
        json_decref(out);
        printf("Found %d element%s\n", n, n == 1 ? "" : "s");
    }
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
