/* Tests dataplane/admission.c without workers (grants run inline on the releasing thread): DRR order and
 * weights in estimated tokens, strict priority, per-tenant max_inflight (work-conserving), queue bounds and
 * their answers, burst slots for under-share tenants on batching engines, cancel, and Retry-After. */
#include "gridgate/admission.h"
#include "gridgate/backend.h"
#include "gridgate/config.h"
#include "test.h"

static char order[256];
static size_t norder;

static void on_grant(void *ctx, const gg_admit_result_t *r)
{
    if (r->reject == GG_REJECT_NONE && norder < sizeof(order) - 1)
        order[norder++] = *(const char *)ctx;
    order[norder] = '\0';
}

/* Tenants from JSON; one backend in slot 0 of `kind` with capacity `cap`. */
static void setup(const char *tenants_json, enum gg_engine_kind kind, uint32_t cap, uint32_t max_queue)
{
    char text[2048], err[256];
    snprintf(text, sizeof(text), "{\"tenants\": %s}", tenants_json);
    gg_config_t cfg;
    int rc = gg_config_parse_string(text, strlen(text), "t.json", &cfg, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "config: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(gg_tenants_init(&cfg, err, sizeof(err)), 0);
    gg_config_free(&cfg);
    gg_admission_config_t ac = {.queue_ms = 1000, .max_queue = max_queue, .quantum = 64};
    gg_admission_init(&ac);
    gg_backends_reset();
    CHECK_EQ_INT(gg_backend_add("b", "http://127.0.0.1:1", kind, 1, cap), 0);
    atomic_store(&gg_backends[0].kind, kind);
    atomic_store(&gg_backends[0].capacity, cap);
    __atomic_store_n(&gg_backend_view[0].inflight, 0, __ATOMIC_RELAXED);
    norder = 0;
    order[0] = '\0';
}

/* Queues one request of tenant `name` (tag = its letter in `order`). Returns gg_admit's value. */
static int submit(const char *name, const char *tag, uint32_t cost, gg_admit_result_t *r, gg_admit_waiter_t **wt)
{
    gg_admit_waiter_t *w;
    gg_admit_result_t rr;
    int rc = gg_admit(NULL, 0, gg_tenant_find(name), cost, on_grant, (void *)tag, wt ? wt : &w, r ? r : &rr);
    return rc;
}

static void release_n(const char *name, int n)
{
    for (int i = 0; i < n; i++)
        gg_admit_release(0, gg_tenant_find(name), 0);
}

static void test_drr_equal_weights(void)
{
    setup("[{\"name\":\"a\"},{\"name\":\"b\"}]", GG_ENGINE_OLLAMA, 1, 100);
    gg_admit_result_t r;
    CHECK_EQ_INT(submit("a", "A", 80, &r, NULL), 0); /* the free slot: admitted at once */
    CHECK_EQ_INT(r.reject, GG_REJECT_NONE);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(submit("a", "A", 80, NULL, NULL), 1);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(submit("b", "B", 80, NULL, NULL), 1);
    CHECK_EQ_INT(gg_admission_queue_depth(0), 8);
    /* FIFO would give AAAABBBB; DRR gives one each per round although all of a's requests came first
     * (which of the two goes first in a round follows the round-robin position). */
    release_n("a", 1);
    for (size_t i = 1; i < 8; i++)
        release_n(order[i - 1] == 'A' ? "a" : "b", 1);
    CHECK_EQ_INT(norder, 8);
    for (size_t i = 0; i + 1 < 8; i += 2)
        CHECK(order[i] != order[i + 1]);
    CHECK_EQ_STR(order, "ABBAABBA");
    CHECK_EQ_INT(gg_admission_queue_depth(0), 0);
}

static void test_drr_weights(void)
{
    setup("[{\"name\":\"a\",\"weight\":3},{\"name\":\"b\",\"weight\":1}]", GG_ENGINE_OLLAMA, 1, 100);
    CHECK_EQ_INT(submit("b", "B", 64, NULL, NULL), 0);
    for (int i = 0; i < 12; i++) {
        submit("a", "A", 64, NULL, NULL);
        submit("b", "B", 64, NULL, NULL);
    }
    release_n("b", 1);
    for (size_t i = 1; i < 16; i++)
        release_n(order[i - 1] == 'A' ? "a" : "b", 1);
    int a = 0;
    for (size_t i = 0; i < 16; i++)
        a += order[i] == 'A';
    CHECK_EQ_INT(norder, 16);
    CHECK_EQ_INT(a, 12); /* 3:1 */
}

static void test_drr_counts_tokens(void)
{
    /* Equal weights, but a's requests are 4x as large: b gets 4 requests for each of a's. */
    setup("[{\"name\":\"a\"},{\"name\":\"b\"}]", GG_ENGINE_OLLAMA, 1, 100);
    CHECK_EQ_INT(submit("a", "A", 400, NULL, NULL), 0);
    for (int i = 0; i < 10; i++) {
        submit("a", "A", 400, NULL, NULL);
        submit("b", "B", 100, NULL, NULL);
    }
    release_n("a", 1);
    for (size_t i = 1; i < 10; i++)
        release_n(order[i - 1] == 'A' ? "a" : "b", 1);
    int a = 0;
    for (size_t i = 0; i < 10; i++)
        a += order[i] == 'A';
    CHECK_EQ_INT(a, 2);
}

static void test_priority(void)
{
    setup("[{\"name\":\"lo\"},{\"name\":\"hi\",\"priority\":5}]", GG_ENGINE_OLLAMA, 1, 100);
    CHECK_EQ_INT(submit("lo", "L", 10, NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        submit("lo", "L", 10, NULL, NULL);
    submit("hi", "H", 1000, NULL, NULL);
    submit("hi", "H", 1000, NULL, NULL);
    release_n("lo", 1);
    release_n("hi", 1);
    release_n("hi", 1);
    release_n("lo", 1);
    CHECK_EQ_STR(order, "HHLL");
}

static void test_max_inflight_work_conserving(void)
{
    /* cap 2; a may hold only 1: its second request waits while b uses the other slot. */
    setup("[{\"name\":\"a\",\"max_inflight\":1},{\"name\":\"b\"}]", GG_ENGINE_OLLAMA, 2, 100);
    CHECK_EQ_INT(submit("a", "A", 10, NULL, NULL), 0);
    CHECK_EQ_INT(submit("a", "A", 10, NULL, NULL), 1);
    CHECK_EQ_INT(submit("b", "B", 10, NULL, NULL), 0); /* not behind a's blocked request */
    CHECK_EQ_INT(submit("b", "B", 10, NULL, NULL), 1);
    release_n("b", 1); /* the slot goes to b: a is still at its limit */
    CHECK_EQ_STR(order, "B");
    release_n("a", 1);
    CHECK_EQ_STR(order, "BA");
}

static void test_queue_bounds(void)
{
    setup("[{\"name\":\"a\",\"max_queue\":2},{\"name\":\"b\"}]", GG_ENGINE_OLLAMA, 1, 3);
    gg_admit_result_t r;
    CHECK_EQ_INT(submit("a", "A", 10, &r, NULL), 0);
    CHECK_EQ_INT(submit("a", "A", 10, &r, NULL), 1);
    CHECK_EQ_INT(submit("a", "A", 10, &r, NULL), 1);
    CHECK_EQ_INT(submit("a", "A", 10, &r, NULL), 0);
    CHECK_EQ_INT(r.reject, GG_REJECT_QUEUE_FULL); /* the tenant's own bound: 429 */
    CHECK(r.retry_after_s >= 1);
    CHECK_EQ_INT(submit("b", "B", 10, &r, NULL), 1);
    CHECK_EQ_INT(submit("b", "B", 10, &r, NULL), 0);
    CHECK_EQ_INT(r.reject, GG_REJECT_OVERLOADED); /* the gateway's bound (3 waiting): 503 */
    /* the Retry-After of the overload: 3 waiting + 1 through 1 slot at the default 1 s each */
    CHECK_EQ_INT(r.retry_after_s, 4);
    release_n("a", 3);
    CHECK_EQ_INT(norder, 3);
}

static void test_cancel(void)
{
    setup("[{\"name\":\"a\"},{\"name\":\"b\"}]", GG_ENGINE_OLLAMA, 1, 100);
    gg_admit_waiter_t *w1, *w2;
    CHECK_EQ_INT(submit("a", "A", 10, NULL, NULL), 0);
    CHECK_EQ_INT(submit("b", "X", 10, NULL, &w1), 1);
    CHECK_EQ_INT(submit("b", "B", 10, NULL, &w2), 1);
    gg_admit_cancel(w1);
    CHECK_EQ_INT(gg_admission_queue_depth(0), 1);
    CHECK_EQ_INT(atomic_load(&gg_tenant_find("b")->queued), 1);
    release_n("a", 1);
    CHECK_EQ_STR(order, "B");
    CHECK_EQ_INT(gg_backend_inflight(0), 1);
}

static void test_burst_for_under_share(void)
{
    /* vLLM, cap 4 -> 2 burst slots. The flooder fills the cap and queues; the quiet tenant, under its share,
     * gets a burst slot at once; the flooder never does. */
    setup("[{\"name\":\"flood\"},{\"name\":\"quiet\"}]", GG_ENGINE_VLLM, 4, 100);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(submit("flood", "F", 80, NULL, NULL), 0);
    CHECK_EQ_INT(submit("flood", "F", 80, NULL, NULL), 1);
    CHECK_EQ_INT(submit("quiet", "Q", 80, NULL, NULL), 0);
    CHECK_EQ_INT(submit("quiet", "Q", 80, NULL, NULL), 0);
    CHECK_EQ_INT(gg_backend_inflight(0), 6);
    CHECK_EQ_INT(submit("quiet", "Q", 80, NULL, NULL), 1); /* only two burst slots */
    release_n("quiet", 1);                                 /* the burst slot goes to quiet again, not to the flooder */
    CHECK_EQ_STR(order, "Q");
    release_n("quiet", 2); /* in-flight 4 = cap: the flooder, over its share, may not take a burst slot */
    CHECK_EQ_STR(order, "Q");
    release_n("flood", 1); /* below the cap: work-conserving, the flooder's queued request goes */
    CHECK_EQ_STR(order, "QF");
    /* Ollama (a hard one-at-a-time engine) gets no burst */
    setup("[{\"name\":\"flood\"},{\"name\":\"quiet\"}]", GG_ENGINE_OLLAMA, 1, 100);
    CHECK_EQ_INT(submit("flood", "F", 80, NULL, NULL), 0);
    CHECK_EQ_INT(submit("quiet", "Q", 80, NULL, NULL), 1);
    release_n("flood", 1);
    CHECK_EQ_STR(order, "Q");
}

static void test_retry_after(void)
{
    CHECK_EQ_INT(gg_admission_retry_after(0, 1, 500000), 1);
    CHECK_EQ_INT(gg_admission_retry_after(9, 8, 1000000), 2);  /* 10 requests through 8 slots of 1 s */
    CHECK_EQ_INT(gg_admission_retry_after(15, 4, 2000000), 8); /* 16 * 2 s / 4 */
    CHECK_EQ_INT(gg_admission_retry_after(0, 0, 3000000), 3);  /* no slots counts as one */
    CHECK_EQ_INT(gg_admission_retry_after(1000000, 1, 1000000), 86400);
}

TEST_MAIN(test_drr_equal_weights, test_drr_weights, test_drr_counts_tokens, test_priority, test_max_inflight_work_conserving,
          test_queue_bounds, test_cancel, test_burst_for_under_share, test_retry_after)
