/* The router reads the published view (include/gridgate/backend.h): a heap array with BPF off and the mmapped
 * `backends` map with BPF on, through one code path. Checks that picks follow what control publishes (state, weight)
 * and what the data plane counts (in-flight), that the in-flight count is the map's own field when BPF is on (read
 * back through the bpf(2) syscall), and prints the cost of a pick with its in-flight inc/dec in both modes (a
 * measurement, not asserted). The BPF part needs root and says so when it skips. */
#include <bpf/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "gridgate/bpf.h"
#include "gridgate/config.h"
#include "gridgate/log.h"
#include "gridgate/router.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t xrand(void *ctx)
{
    (void)ctx;
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t all[GG_BACKEND_WORDS];

static void setup(int n)
{
    gg_backends_reset();
    memset(all, 0, sizeof(all));
    for (int i = 0; i < n; i++) {
        char name[32], url[64];
        snprintf(name, sizeof(name), "r%d", i);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", 1000 + i);
        int slot = gg_backend_add(name, url, GG_ENGINE_OLLAMA, 1, 4);
        CHECK_EQ_INT(slot, i);
        gg_backend_set_state(&gg_backends[slot], GG_BACKEND_UP);
        all[slot / 64] |= 1ull << (slot % 64);
    }
}

static int pick(void)
{
    gg_route_req_t r = {.served = all, .loaded = all};
    return gg_route_pick(&r, xrand, NULL);
}

/* What the router decides on: published state and weight, counted in-flight. */
static void check_routing(void)
{
    setup(2);
    /* r0 has 3 of its 4 slots busy: power of two choices over two backends always takes r1 */
    for (int i = 0; i < 3; i++)
        gg_backend_inflight_add(0, 1);
    CHECK_EQ_INT(gg_backend_view[0].inflight, 3);
    int to1 = 0;
    for (int i = 0; i < 200; i++)
        to1 += pick() == 1;
    CHECK_EQ_INT(to1, 200);
    for (int i = 0; i < 3; i++)
        gg_backend_inflight_add(0, -1);
    CHECK_EQ_INT(gg_backend_inflight(0), 0);

    /* a state change is published at once: DOWN takes r1 out of the next pick */
    gg_backend_set_state(&gg_backends[1], GG_BACKEND_DOWN);
    CHECK_EQ_INT(gg_backend_view[1].state, GG_BACKEND_DOWN);
    int to0 = 0;
    for (int i = 0; i < 100; i++)
        to0 += pick() == 0;
    CHECK_EQ_INT(to0, 100);

    /* the registry alone does not route: a weight stored there counts once it is published */
    gg_backend_set_state(&gg_backends[1], GG_BACKEND_UP);
    atomic_store(&gg_backends[1].weight, 7);
    CHECK_EQ_INT(gg_backend_view[1].weight, 1);
    uint32_t seq = gg_backend_view[1].seq;
    gg_backends_publish(1);
    CHECK_EQ_INT(gg_backend_view[1].weight, 7);
    CHECK_EQ_INT(gg_backend_view[1].seq, seq + 2);
    gg_backends_publish(1); /* unchanged: no new generation */
    CHECK_EQ_INT(gg_backend_view[1].seq, seq + 2);

    /* control's publication never overwrites the data plane's in-flight count */
    gg_backend_inflight_add(1, 1);
    atomic_store(&gg_backends[1].weight, 2);
    gg_backends_publish_all();
    CHECK_EQ_INT(gg_backend_inflight(1), 1);
    gg_backend_inflight_add(1, -1);

    /* a removed backend is FREE in the view and never picked */
    CHECK_EQ_INT(gg_backend_remove("r0"), 0);
    CHECK_EQ_INT(gg_backend_view[0].state, GG_BACKEND_FREE);
    CHECK_EQ_INT(gg_backend_view[0].name[0], 0);
    for (int i = 0; i < 50; i++)
        CHECK_EQ_INT(pick(), 1);
}

static double ns_per_pick(int n_backends)
{
    setup(n_backends);
    enum { N = 2000000 };
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < N; i++) {
        int s = pick();
        gg_backend_inflight_add(s, 1);
        gg_backend_inflight_add(s, -1);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / N;
}

static void bench(const char *mode)
{
    printf("router bench (%s view): %.1f ns/pick with inc/dec over 2 backends, %.1f over 8, %.1f over 64\n", mode, ns_per_pick(2),
           ns_per_pick(8), ns_per_pick(64));
}

static void test_heap_view(void)
{
    gg_log_level = GG_LOG_WARN;
    CHECK(!gg_bpf_enabled());
    check_routing();
    bench("heap");
}

static void test_mmap_view(void)
{
    char pin[64];
    snprintf(pin, sizeof(pin), "/sys/fs/bpf/gg-unit-router-%d", (int)getpid());
    setup(3);
    gg_backend_inflight_add(2, 5);
    if (gg_bpf_init(GG_BPF_AUTO, pin) != 0 || !gg_bpf_enabled()) {
        printf("dataplane_router: SKIPPED the BPF (mmapped view) part: the kernel assist needs root\n");
        gg_backend_inflight_add(2, -5);
        return;
    }
    /* the move into the map carried in-flight over and republished every slot */
    CHECK_EQ_INT(gg_backend_inflight(2), 5);
    CHECK_EQ_INT(gg_backend_view[1].state, GG_BACKEND_UP);
    char path[128];
    snprintf(path, sizeof(path), "%s/backends", pin);
    int fd = bpf_obj_get(path);
    CHECK(fd >= 0);
    /* atomics through the mmap are what the map holds: the syscall sees the data plane's count */
    gg_backend_inflight_add(2, 2);
    uint32_t key = 2;
    struct gg_bpf_backend v = {0};
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &key, &v), 0);
    CHECK_EQ_INT(v.inflight, 7);
    CHECK_EQ_STR(v.name, "r2");
    CHECK_EQ_INT(v.state, GG_BACKEND_UP);
    gg_backend_inflight_add(2, -7);
    check_routing();
    key = 0;
    CHECK_EQ_INT(bpf_map_lookup_elem(fd, &key, &v), 0);
    CHECK_EQ_INT(v.state, GG_BACKEND_FREE);
    close(fd);
    bench("mmapped BPF map");
    gg_backend_inflight_add(1, 4);
    gg_bpf_shutdown();
    /* back on the heap, counts intact */
    CHECK_EQ_INT(gg_backend_inflight(1), 4);
    gg_backend_inflight_add(1, -4);
    CHECK_EQ_INT(gg_bpf_remove_pins(pin), 0);
}

TEST_MAIN(test_heap_view, test_mmap_view)
