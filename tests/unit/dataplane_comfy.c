/* Tests dataplane/comfy.c: the sticky table (lookup, refresh, kinds kept apart, idle expiry, LRU eviction, a removed
 * backend's entries, concurrent writers), route matching and query parsing. */
#include "../../dataplane/comfy.c"

#include "test.h"

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static void setup(size_t max, uint64_t idle)
{
    gg_comfy_sticky_configure(max, idle);
    st.now_ms = fake_clock;
    fake_now = 1000;
    for (int s = 0; s < 4; s++) {
        atomic_store(&gg_backends[s].state, GG_BACKEND_UP);
        gg_backends[s].id = 100 + s;
    }
}

static void test_put_get(void)
{
    setup(16, 60000);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_PROMPT, "p1", 2), -1);
    gg_comfy_sticky_put(GG_COMFY_PROMPT, "p1", 2, 1);
    gg_comfy_sticky_put(GG_COMFY_CLIENT, "p1", 2, 2); /* same text, other kind */
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_PROMPT, "p1", 2), 1);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_CLIENT, "p1", 2), 2);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "p1", 2), -1);
    gg_comfy_sticky_put(GG_COMFY_PROMPT, "p1", 2, 3); /* moves */
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_PROMPT, "p1", 2), 3);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 2);
    gg_comfy_sticky_put(GG_COMFY_PROMPT, "", 0, 1); /* empty keys are not kept */
    CHECK_EQ_INT(gg_comfy_sticky_size(), 2);
}

static void test_expiry(void)
{
    setup(16, 1000);
    gg_comfy_sticky_put(GG_COMFY_CLIENT, "a", 1, 0);
    gg_comfy_sticky_put(GG_COMFY_CLIENT, "b", 1, 1);
    fake_now += 600;
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_CLIENT, "a", 1), 0); /* use refreshes a */
    fake_now += 600;                                               /* b idle 1200 ms, a 600 ms */
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_CLIENT, "b", 1), -1);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_CLIENT, "a", 1), 0);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 1);
    fake_now += 5000;
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_CLIENT, "a", 1), -1);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 0);
}

static void test_lru(void)
{
    setup(3, 60000);
    gg_comfy_sticky_put(GG_COMFY_FILE, "f1", 2, 0);
    gg_comfy_sticky_put(GG_COMFY_FILE, "f2", 2, 1);
    gg_comfy_sticky_put(GG_COMFY_FILE, "f3", 2, 2);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "f1", 2), 0); /* f2 is now the least recently used */
    gg_comfy_sticky_put(GG_COMFY_FILE, "f4", 2, 3);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 3);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "f2", 2), -1);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "f1", 2), 0);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "f3", 2), 2);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "f4", 2), 3);
    /* many more than fit: the table stays bounded and keeps the newest */
    char k[16];
    for (int i = 0; i < 1000; i++)
        gg_comfy_sticky_put(GG_COMFY_FILE, k, snprintf(k, sizeof(k), "x%d", i), i % 4);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 3);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "x999", 4), 999 % 4);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_FILE, "x996", 4), -1);
}

static void test_removed_backend(void)
{
    setup(16, 60000);
    gg_comfy_sticky_put(GG_COMFY_PROMPT, "p", 1, 2);
    gg_comfy_sticky_put(GG_COMFY_PROMPT, "q", 1, 3);
    gg_backends[2].id = 900; /* slot 2 now holds another backend */
    atomic_store(&gg_backends[3].state, GG_BACKEND_FREE);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_PROMPT, "p", 1), -1);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_PROMPT, "q", 1), -1);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 0);
    /* a DOWN backend keeps its entries: it may come back with its history */
    gg_comfy_sticky_put(GG_COMFY_PROMPT, "r", 1, 1);
    atomic_store(&gg_backends[1].state, GG_BACKEND_DOWN);
    CHECK_EQ_INT(gg_comfy_sticky_get(GG_COMFY_PROMPT, "r", 1), 1);
}

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    char k[32];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(k, sizeof(k), "t%d-%d", t, i % 700);
        gg_comfy_sticky_put(GG_COMFY_CLIENT, k, n, t);
        if (gg_comfy_sticky_get(GG_COMFY_CLIENT, k, n) != t)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void)
{
    setup(4096, 60000); /* room for every key: each read after its own put must see it */
    st.now_ms = mono_ms;
    pthread_t th[4];
    for (int t = 0; t < 4; t++)
        pthread_create(&th[t], NULL, writer, (void *)(intptr_t)t);
    int bad = 0;
    for (int t = 0; t < 4; t++) {
        void *r;
        pthread_join(th[t], &r);
        bad += r != NULL;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(gg_comfy_sticky_size(), 4 * 700);
}

static void test_routes(void)
{
    h2o_iovec_t id;
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/prompt")), &id), RT_PROMPT);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/api/prompt")), &id), RT_PROMPT);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/api/history/abc-1")), &id), RT_HISTORY_ID);
    CHECK(id.len == 5 && memcmp(id.base, "abc-1", 5) == 0);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/history")), &id), RT_HISTORY);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/history/")), &id), RT_NONE);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/ws")), &id), RT_WS);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/api/ws")), &id), RT_WS);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/view")), &id), RT_VIEW);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/object_info/KSampler")), &id), RT_OBJECT_INFO);
    CHECK_EQ_INT(route_of(h2o_iovec_init(H2O_STRLIT("/api/upload/image")), &id), RT_UPLOAD);
    /* Ollama's and OpenAI's paths are not ComfyUI's */
    CHECK(!gg_comfy_match(h2o_iovec_init(H2O_STRLIT("/api/tags"))));
    CHECK(!gg_comfy_match(h2o_iovec_init(H2O_STRLIT("/api/embeddings"))));
    CHECK(!gg_comfy_match(h2o_iovec_init(H2O_STRLIT("/v1/models"))));
    CHECK(!gg_comfy_match(h2o_iovec_init(H2O_STRLIT("/prompts"))));
    CHECK(!gg_comfy_match(h2o_iovec_init(H2O_STRLIT("/api"))));
}

static void test_query(void)
{
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    char out[32];
    req.path = h2o_iovec_init(H2O_STRLIT("/view?filename=a%20b+c.png&subfolder=&type=output&x"));
    req.query_at = 5;
    CHECK_EQ_INT(query_param(&req, "filename", out, sizeof(out)), 9);
    CHECK_EQ_STR(out, "a b c.png");
    CHECK_EQ_INT(query_param(&req, "subfolder", out, sizeof(out)), 0);
    CHECK_EQ_INT(query_param(&req, "type", out, sizeof(out)), 6);
    CHECK_EQ_INT(query_param(&req, "x", out, sizeof(out)), -1);
    CHECK_EQ_INT(query_param(&req, "file", out, sizeof(out)), -1);
    CHECK_EQ_INT(query_param(&req, "filename", out, 4), -1); /* too long for the buffer */
    req.query_at = SIZE_MAX;
    CHECK_EQ_INT(query_param(&req, "filename", out, sizeof(out)), -1);
}

TEST_MAIN(test_put_get, test_expiry, test_lru, test_removed_backend, test_threads, test_routes, test_query)
