/* Tests control/admin_body.c: every admin API body parser on the bodies gridctl and the tests send, each error
 * shape (field + message), and the fuzz regressions (tests/fuzz/corpus/admin_body/regress-*). */
#include "gridgate/admin_body.h"
#include "gridgate/backend.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>

static gg_body_err_t e;

#define S(lit) lit, sizeof(lit) - 1

static void test_backend_add(void)
{
    gg_admin_backend_add_t b;
    CHECK_EQ_INT(
        gg_admin_parse_backend_add(S("{\"url\":\"http://10.0.0.2:8000/v1\",\"name\":\"gpu2\",\"kind\":\"vllm\",\"weight\":3,"
                                     "\"max_inflight\":8}"),
                                   &b, &e),
        0);
    CHECK_EQ_STR(b.url, "http://10.0.0.2:8000/v1");
    CHECK_EQ_STR(b.name, "gpu2");
    CHECK_EQ_INT(b.kind, GG_ENGINE_VLLM);
    CHECK_EQ_INT(b.weight, 3);
    CHECK_EQ_INT(b.max_inflight, 8);
    gg_admin_backend_add_free(&b);
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("{\"url\":\"http://h:1\"}"), &b, &e), 0);
    CHECK(b.name == NULL);
    CHECK_EQ_INT(b.kind, GG_ENGINE_UNKNOWN);
    CHECK_EQ_INT(b.weight, 1);
    gg_admin_backend_add_free(&b);
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("[1]"), &b, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "body");
    CHECK_EQ_INT(gg_admin_parse_backend_add(NULL, 0, &b, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "body");
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("{\"url\":\"ftp://x\"}"), &b, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "url");
    /* A NUL inside the url would hide the rest of it from the registry. */
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("{\"url\":\"http://a\\u0000b\"}"), &b, &e), -EINVAL);
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("{\"url\":\"http://h:1\",\"kind\":\"tpu\"}"), &b, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "kind");
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("{\"url\":\"http://h:1\",\"weight\":0}"), &b, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "weight: expected an integer 1..1000");
    CHECK_EQ_INT(gg_admin_parse_backend_add(S("{\"url\":\"http://h:1\",\"name\":\"\"}"), &b, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "name");
}

static void test_weight(void)
{
    uint32_t w = 0;
    CHECK_EQ_INT(gg_admin_parse_weight(S("{\"weight\":5}"), &w, &e), 0);
    CHECK_EQ_INT(w, 5);
    CHECK_EQ_INT(gg_admin_parse_weight(S("{}"), &w, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "weight: required, an integer 1..1000");
    CHECK_EQ_INT(gg_admin_parse_weight(S("{\"weight\":1001}"), &w, &e), -EINVAL);
    CHECK_EQ_INT(gg_admin_parse_weight(S("{\"weight\":\"5\"}"), &w, &e), -EINVAL);
}

static void test_tenant_add(void)
{
    gg_admin_tenant_add_t t;
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"name\":\"bob\",\"keys\":[\"k1\",\"k2\"],\"requests_per_s\":2,\"burst\":3,"
                                             "\"priority\":1}"),
                                           &t, &e),
                 0);
    CHECK_EQ_STR(t.name, "bob");
    CHECK_EQ_INT(t.n_keys, 2);
    CHECK_EQ_STR(t.keys[1], "k2");
    CHECK_EQ_INT(t.limits.has, GG_LIM_RPS | GG_LIM_BURST | GG_LIM_PRIORITY);
    CHECK(t.limits.requests_per_s == 2.0);
    CHECK_EQ_INT(t.limits.burst, 3);
    gg_admin_tenant_add_free(&t);
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"keys\":[]}"), &t, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "name: required, a string");
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"name\":\"b\",\"keys\":\"k\"}"), &t, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "keys");
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"name\":\"b\",\"keys\":[\"ok\",\"sha256:ab\"]}"), &t, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "keys[1]");
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"name\":\"b\",\"keys\":[\"\"]}"), &t, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "keys[0]");
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"name\":\"b\",\"colour\":1}"), &t, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "colour");
    /* Fuzz regression (regress-empty-field-name): an unknown field named "" left the error without a param. */
    CHECK_EQ_INT(gg_admin_parse_tenant_add(S("{\"\":\"x\",\"name\":\"b\"}"), &t, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "\"\"");
    CHECK(e.msg[0] == '"');
}

static void test_tenant_update(void)
{
    gg_admin_limits_t l;
    CHECK_EQ_INT(gg_admin_parse_tenant_update(S("{\"requests_per_s\":0.5,\"tokens_per_min\":4000000000}"), &l, &e), 0);
    CHECK_EQ_INT(l.has, GG_LIM_RPS | GG_LIM_TPM);
    CHECK_EQ_INT(l.tokens_per_min, 4000000000u);
    CHECK_EQ_INT(gg_admin_parse_tenant_update(S("{\"name\":\"x\"}"), &l, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "name");
    CHECK_EQ_INT(gg_admin_parse_tenant_update(S("{\"requests_per_s\":-1}"), &l, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "requests_per_s");
    CHECK_EQ_INT(gg_admin_parse_tenant_update(S("{\"weight\":0}"), &l, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "weight: expected an integer 1..10000");
    CHECK_EQ_INT(gg_admin_parse_tenant_update(S("{\"priority\":10}"), &l, &e), -EINVAL);
    CHECK_EQ_INT(gg_admin_parse_tenant_update(S("{}"), &l, &e), 0);
    CHECK_EQ_INT(l.has, 0);
}

static void test_tenant_key(void)
{
    char k[16];
    CHECK_EQ_INT(gg_admin_parse_tenant_key(S("{\"key\":\"abc\"}"), 1, k, sizeof(k), &e), 0);
    CHECK_EQ_STR(k, "abc");
    CHECK_EQ_INT(gg_admin_parse_tenant_key(S("{\"key\":\"\"}"), 1, k, sizeof(k), &e), -EINVAL);
    CHECK_EQ_INT(gg_admin_parse_tenant_key(S("{\"key\":\"\"}"), 0, k, sizeof(k), &e), 0);
    CHECK_EQ_INT(gg_admin_parse_tenant_key(S("{\"key\":5}"), 0, k, sizeof(k), &e), -EINVAL);
    CHECK_EQ_INT(gg_admin_parse_tenant_key(S("{\"key\":\"0123456789abcdef\"}"), 1, k, sizeof(k), &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "key: at most 15 bytes");
    CHECK_EQ_INT(gg_admin_parse_tenant_key(S("{\"key\":\"a\\u0000b\"}"), 1, k, sizeof(k), &e), -EINVAL);
}

static void test_guard(void)
{
    char p[32];
    uint32_t secs = 7;
    CHECK_EQ_INT(gg_admin_parse_guard(S("{\"prefix\":\"10.0.0.0/24\",\"seconds\":60}"), 1, p, sizeof(p), &secs, &e), 0);
    CHECK_EQ_STR(p, "10.0.0.0/24");
    CHECK_EQ_INT(secs, 60);
    /* allow and remove take no seconds: the field is not read. */
    CHECK_EQ_INT(gg_admin_parse_guard(S("{\"prefix\":\"::1\",\"seconds\":\"x\"}"), 0, p, sizeof(p), &secs, &e), 0);
    CHECK_EQ_INT(secs, 0);
    CHECK_EQ_INT(gg_admin_parse_guard(S("{\"prefix\":\"10.0.0.1\",\"seconds\":-1}"), 1, p, sizeof(p), &secs, &e), -EINVAL);
    CHECK_EQ_STR(e.field, "seconds");
    CHECK_EQ_INT(gg_admin_parse_guard(S("{\"seconds\":5}"), 1, p, sizeof(p), &secs, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "prefix: required, a string ADDR or ADDR/LEN");
    CHECK_EQ_INT(gg_admin_parse_guard(S("{\"prefix\":\"0123456789012345678901234567890123\"}"), 0, p, sizeof(p), &secs, &e),
                 -EINVAL);
    CHECK_EQ_STR(e.msg, "prefix: at most 31 bytes");
}

TEST_MAIN(test_guard, test_backend_add, test_weight, test_tenant_add, test_tenant_update, test_tenant_key)
