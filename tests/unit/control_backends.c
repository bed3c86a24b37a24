/* Tests control/backends.c: add/remove/find, slot stability and reuse rules, state publication, model
 * table snapshots (sorted, merged bitmaps, bsearch, swap on change only) and the JSON listings. */
#include "gridgate/backend.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

static gg_backend_model_t *models(int n, const char *const *names, const int *loaded)
{
    gg_backend_model_t *m = calloc(n ? n : 1, sizeof(*m));
    for (int i = 0; i < n; i++) {
        snprintf(m[i].name, sizeof(m[i].name), "%s", names[i]);
        m[i].loaded = loaded ? loaded[i] : 0;
    }
    return m;
}

static void test_add_find_remove(void)
{
    gg_backends_reset();
    int a = gg_backend_add("a", "http://127.0.0.1:1/", GG_ENGINE_VLLM, 0, 0);
    int b = gg_backend_add(NULL, "http://127.0.0.1:2", GG_ENGINE_UNKNOWN, 5, 4);
    int c = gg_backend_add("", "[::1]:3", GG_ENGINE_OLLAMA, 1, 0);
    CHECK_EQ_INT(a, 0);
    CHECK_EQ_INT(b, 1);
    CHECK_EQ_INT(c, 2);
    CHECK_EQ_INT(gg_backends_hwm, 3);
    gg_backend_t *ba = gg_backend_find("a");
    CHECK(ba == &gg_backends[0]);
    CHECK_EQ_STR(ba->url, "http://127.0.0.1:1");
    CHECK_EQ_STR(ba->host, "127.0.0.1");
    CHECK_EQ_INT(ba->port, 1);
    CHECK_EQ_INT(ba->weight, 1);
    CHECK_EQ_INT(ba->kind, GG_ENGINE_VLLM);
    CHECK_EQ_INT(ba->state, GG_BACKEND_DOWN);
    CHECK(gg_backend_find("127.0.0.1:2") == &gg_backends[1]);
    CHECK_EQ_INT(gg_backends[1].capacity, 4);
    CHECK_EQ_INT(gg_backends[1].weight, 5);
    CHECK(gg_backend_find("[::1]:3") == &gg_backends[2]);
    CHECK_EQ_STR(gg_backends[2].host, "::1");
    CHECK(gg_backends[0].id != gg_backends[1].id);

    CHECK_EQ_INT(gg_backend_add("a", "http://127.0.0.1:9", GG_ENGINE_VLLM, 1, 0), -EEXIST);
    CHECK_EQ_INT(gg_backend_add("x", "https://127.0.0.1:9", GG_ENGINE_VLLM, 1, 0), -EINVAL);
    CHECK_EQ_INT(gg_backend_add("x", "unix:/tmp/s", GG_ENGINE_VLLM, 1, 0), -EINVAL);
    CHECK_EQ_INT(gg_backend_add("x", "http://127.0.0.1:9", (enum gg_engine_kind)99, 1, 0), -EINVAL);
    CHECK_EQ_INT(gg_backend_add("0123456789012345678901234567890123456789012345678901234567890123456789", "http://127.0.0.1:9",
                                GG_ENGINE_VLLM, 1, 0),
                 -EINVAL);

    /* remove: the slot is freed, never renumbered; a new backend takes a never-used slot */
    uint32_t gen = gg_backends[1].generation;
    CHECK_EQ_INT(gg_backend_remove("127.0.0.1:2"), 0);
    CHECK_EQ_INT(gg_backends[1].state, GG_BACKEND_FREE);
    CHECK(gg_backends[1].generation != gen);
    CHECK(gg_backend_find("127.0.0.1:2") == NULL);
    CHECK_EQ_INT(gg_backend_remove("127.0.0.1:2"), -ENOENT);
    CHECK(gg_backend_find("[::1]:3") == &gg_backends[2]);
    CHECK_EQ_INT(gg_backend_add("d", "http://127.0.0.1:4", GG_ENGINE_SGLANG, 1, 0), 3);
    /* the name is free again */
    CHECK_EQ_INT(gg_backend_add("127.0.0.1:2", "http://127.0.0.1:2", GG_ENGINE_SGLANG, 1, 0), 4);

    /* states */
    CHECK_EQ_INT(gg_backend_set_state(ba, GG_BACKEND_UP), 0);
    CHECK_EQ_INT(ba->state, GG_BACKEND_UP);
    CHECK_EQ_INT(gg_backend_set_state(ba, GG_BACKEND_FREE), -EINVAL);
    CHECK_EQ_INT(gg_backend_set_state(&gg_backends[1], GG_BACKEND_UP), -ENOENT);
    CHECK_EQ_INT(gg_backend_drain("a", 1), 0);
    CHECK_EQ_INT(ba->state, GG_BACKEND_DRAINING);
    CHECK_EQ_INT(gg_backend_drain("nope", 1), -ENOENT);

    /* data plane counters */
    gg_backend_report_failure(ba);
    gg_backend_report_success(ba);
    gg_backend_observe(ba, 1500, 10);
    gg_backend_observe(ba, 0, 5);
    CHECK_EQ_INT(ba->failures, 1);
    CHECK_EQ_INT(ba->successes, 1);
    CHECK_EQ_INT(ba->ttft_obs, 1);
    CHECK_EQ_INT(ba->ttft_sum_us, 1500);
    CHECK_EQ_INT(ba->tokens_out, 15);

    CHECK_EQ_INT(gg_engine_kind_parse("llama.cpp"), GG_ENGINE_LLAMACPP);
    CHECK_EQ_INT(gg_engine_kind_parse("auto"), GG_ENGINE_UNKNOWN);
    CHECK_EQ_INT(gg_engine_kind_parse("comfyui"), GG_ENGINE_COMFYUI);
    CHECK_EQ_INT(gg_engine_kind_parse("tgi"), -EINVAL);
    CHECK_EQ_STR(gg_backend_state_name(GG_BACKEND_HALF_OPEN), "half_open");
    gg_backends_reset();
}

static void test_full_registry(void)
{
    gg_backends_reset();
    char name[32];
    for (int i = 0; i < GG_MAX_BACKENDS; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        CHECK_EQ_INT(gg_backend_add(name, "http://127.0.0.1:9", GG_ENGINE_VLLM, 1, 0), i);
    }
    CHECK_EQ_INT(gg_backend_add("more", "http://127.0.0.1:9", GG_ENGINE_VLLM, 1, 0), -ENOSPC);
    /* A just-freed slot is not reused (a request may still hold it). */
    CHECK_EQ_INT(gg_backend_remove("b7"), 0);
    CHECK_EQ_INT(gg_backend_add("more", "http://127.0.0.1:9", GG_ENGINE_VLLM, 1, 0), -ENOSPC);
    gg_backends_reset();
}

static void test_model_table(void)
{
    gg_backends_reset();
    const gg_model_table_t *t0 = gg_models_current();
    CHECK(t0 != NULL);
    CHECK_EQ_INT(t0->n, 0);
    CHECK(gg_models_find(t0, "x") == NULL);

    gg_backend_add("a", "http://127.0.0.1:1", GG_ENGINE_OLLAMA, 1, 0);
    gg_backend_add("b", "http://127.0.0.1:2", GG_ENGINE_VLLM, 1, 0);
    const char *na[] = {"zeta", "alpha", "mid"};
    int la[] = {0, 1, 0};
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[0], models(3, na, la), 3), 1);
    const gg_model_table_t *t1 = gg_models_current();
    CHECK(t1 != t0);
    CHECK_EQ_INT(t1->n, 3);
    CHECK_EQ_STR(t1->e[0].name, "alpha");
    CHECK_EQ_STR(t1->e[1].name, "mid");
    CHECK_EQ_STR(t1->e[2].name, "zeta");
    const char *nb[] = {"mid", "beta"};
    int lb[] = {1, 1};
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[1], models(2, nb, lb), 2), 1);
    const gg_model_table_t *t2 = gg_models_current();
    CHECK(t2->version > t1->version);
    CHECK_EQ_INT(t2->n, 4);
    const gg_model_entry_t *mid = gg_models_find(t2, "mid");
    CHECK(mid != NULL);
    CHECK_EQ_INT(gg_model_bit(mid->served, 0), 1);
    CHECK_EQ_INT(gg_model_bit(mid->served, 1), 1);
    CHECK_EQ_INT(gg_model_bit(mid->loaded, 0), 0);
    CHECK_EQ_INT(gg_model_bit(mid->loaded, 1), 1);
    const gg_model_entry_t *alpha = gg_models_find(t2, "alpha");
    CHECK(alpha != NULL && gg_model_bit(alpha->loaded, 0) && !gg_model_bit(alpha->served, 1));
    CHECK(gg_models_find(t2, "beta") != NULL);
    CHECK(gg_models_find(t2, "gamma") == NULL);
    CHECK(gg_models_find(t2, "") == NULL);
    CHECK(gg_models_find(t2, "beta:latest") == gg_models_find(t2, "beta"));
    CHECK(gg_models_find(t2, "mid:7b") == NULL);
    /* The old snapshot stays readable (grace period) after the swap. */
    CHECK_EQ_STR(t1->e[0].name, "alpha");

    /* Same list again: no new snapshot. */
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[1], models(2, nb, lb), 2), 0);
    CHECK(gg_models_current() == t2);
    /* loaded flag flips: new snapshot */
    int lb2[] = {0, 1};
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[1], models(2, nb, lb2), 2), 1);
    CHECK(!gg_model_bit(gg_models_find(gg_models_current(), "mid")->loaded, 1));

    /* listings: only live (up/half_open/loading/draining) backends count */
    json_t *l = gg_models_list_json();
    CHECK_EQ_INT(json_array_size(l), 0);
    json_decref(l);
    gg_backend_set_state(&gg_backends[0], GG_BACKEND_UP);
    gg_backend_set_state(&gg_backends[1], GG_BACKEND_UP);
    l = gg_models_list_json();
    CHECK_EQ_INT(json_array_size(l), 4);
    json_t *m = json_array_get(l, 2); /* alpha beta mid zeta */
    CHECK_EQ_STR(json_string_value(json_object_get(m, "name")), "mid");
    CHECK_EQ_INT(json_array_size(json_object_get(m, "served_by")), 2);
    CHECK_EQ_INT(json_array_size(json_object_get(m, "loaded_on")), 0);
    CHECK_EQ_INT(json_array_size(json_object_get(m, "kinds")), 2);
    CHECK_EQ_STR(json_string_value(json_array_get(json_object_get(json_array_get(l, 0), "loaded_on"), 0)), "a");
    json_decref(l);
    l = gg_backends_list_json();
    CHECK_EQ_INT(json_array_size(l), 2);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(l, 1), "kind")), "vllm");
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(l, 1), "state")), "up");
    CHECK_EQ_INT(json_array_size(json_object_get(json_array_get(l, 0), "models")), 3);
    json_decref(l);

    /* removing a backend drops its bits */
    CHECK_EQ_INT(gg_backend_remove("a"), 0);
    const gg_model_table_t *t3 = gg_models_current();
    CHECK_EQ_INT(t3->n, 2);
    CHECK(gg_models_find(t3, "alpha") == NULL);
    CHECK(!gg_model_bit(gg_models_find(t3, "mid")->served, 0));
    /* set_models on a free slot is refused (and frees the list) */
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[0], models(1, na, NULL), 1), -ENOENT);
    gg_models_reclaim(); /* nothing is old enough yet: still safe to read t1 */
    CHECK_EQ_STR(t1->e[2].name, "zeta");
    gg_backends_reset();
}

static void test_many_models(void)
{
    gg_backends_reset();
    /* backends in the second bitmap word */
    char name[32];
    for (int i = 0; i < 70; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        gg_backend_add(name, "http://127.0.0.1:9", GG_ENGINE_VLLM, 1, 0);
    }
    const char *tagged[] = {"llama3:latest"};
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[1], models(1, tagged, NULL), 1), 1);
    CHECK(gg_models_find(gg_models_current(), "llama3") != NULL);
    CHECK(gg_models_find(gg_models_current(), "llama3:8b") == NULL);
    const char *n1[] = {"shared"};
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[69], models(1, n1, NULL), 1), 1);
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[3], models(1, n1, NULL), 1), 1);
    const gg_model_entry_t *e = gg_models_find(gg_models_current(), "shared");
    CHECK(e != NULL && gg_model_bit(e->served, 69) && gg_model_bit(e->served, 3) && !gg_model_bit(e->served, 68));
    /* 1000 models on one backend: all findable */
    gg_backend_model_t *m = calloc(1000, sizeof(*m));
    for (int i = 0; i < 1000; i++)
        snprintf(m[i].name, sizeof(m[i].name), "model-%04d", 999 - i);
    CHECK_EQ_INT(gg_backend_set_models(&gg_backends[0], m, 1000), 1);
    const gg_model_table_t *t = gg_models_current();
    CHECK_EQ_INT(t->n, 1002);
    int ok = 1;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "model-%04d", i);
        const gg_model_entry_t *f = gg_models_find(t, name);
        ok &= f != NULL && strcmp(f->name, name) == 0;
    }
    CHECK(ok);
    gg_backends_reset();
}

TEST_MAIN(test_add_find_remove, test_full_registry, test_model_table, test_many_models)
