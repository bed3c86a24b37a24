/* Tests dataplane/tenant.c: the tenant table from the config (implicit "default"), keys as plain text or
 * "sha256:HEX", lookup by bearer key, identification of real h2o requests (Bearer, trusted X-Tenant-ID with
 * and without CIDRs, 401 once any tenant has keys), CIDR matching, and the admission cost estimate. */
#include "gridgate/tenant.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>

/* sha256("s3cret") */
#define S3CRET_SHA "sha256:1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"

static int load(const char *json)
{
    gg_config_t cfg;
    char err[256];
    int rc = gg_config_parse_string(json, strlen(json), "t.json", &cfg, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "config: %s\n", err);
        return rc;
    }
    rc = gg_tenants_init(&cfg, err, sizeof(err));
    gg_config_free(&cfg);
    return rc;
}

static struct sockaddr_in peer;

static socklen_t get_peer(h2o_conn_t *conn, struct sockaddr *sa)
{
    memcpy(sa, &peer, sizeof(peer));
    return sizeof(peer);
}

static const h2o_conn_callbacks_t conn_cb = {.get_peername = get_peer};

/* A request with the given Authorization and X-Tenant-ID (NULL: absent) from peer address `ip`. */
static gg_tenant_t *identify(const char *auth, const char *tenant_hdr, const char *ip)
{
    h2o_conn_t conn = {.callbacks = &conn_cb};
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    req.conn = &conn;
    h2o_mem_init_pool(&req.pool);
    peer.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &peer.sin_addr);
    if (auth)
        h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_AUTHORIZATION, NULL, auth, strlen(auth));
    if (tenant_hdr)
        h2o_add_header_by_str(&req.pool, &req.headers, H2O_STRLIT("x-tenant-id"), 0, NULL, tenant_hdr, strlen(tenant_hdr));
    gg_tenant_t *t = gg_tenant_identify(&req);
    h2o_mem_clear_pool(&req.pool);
    return t;
}

static const char *name_of(gg_tenant_t *t)
{
    return t ? t->name : "(401)";
}

static void test_table(void)
{
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"a\",\"keys\":[\"k1\",\"" S3CRET_SHA "\"],\"weight\":3,\"priority\":2,"
                      "\"max_inflight\":4,\"max_queue\":9,\"rate\":{\"requests_per_s\":5}}]}"),
                 0);
    CHECK_EQ_INT(gg_tenants_count(), 2);
    gg_tenant_t *a = gg_tenant_find("a");
    CHECK(a != NULL && a->weight == 3 && a->priority == 2 && a->max_inflight == 4 && a->max_queue == 9);
    CHECK_EQ_STR(gg_tenant_at(1)->name, "default");
    CHECK(gg_tenants_require_key());
    CHECK(gg_tenant_by_key("k1", 2) == a);
    CHECK(gg_tenant_by_key("s3cret", 6) == a);                       /* stored only as its digest */
    CHECK(gg_tenant_by_key(S3CRET_SHA, strlen(S3CRET_SHA)) == NULL); /* the digest itself is not a key */
    CHECK(gg_tenant_by_key("k2", 2) == NULL);
    CHECK(gg_tenant_by_key("", 0) == NULL);
    /* a bad digest is refused at start-up */
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"a\",\"keys\":[\"sha256:abc\"]}]}"), -EINVAL);
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"a\",\"keys\":[\"sha256:"
                      "zzc1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0\"]}]}"),
                 -EINVAL);
    /* a configured default keeps its settings and no second one is added */
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"default\",\"weight\":7}]}"), 0);
    CHECK_EQ_INT(gg_tenants_count(), 1);
    CHECK_EQ_INT(gg_tenant_find("default")->weight, 7);
    CHECK(!gg_tenants_require_key());
}

static void test_identify(void)
{
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"a\",\"keys\":[\"k1\"]},{\"name\":\"b\",\"keys\":[\"k2\"]}]}"), 0);
    CHECK_EQ_STR(name_of(identify("Bearer k1", NULL, "127.0.0.1")), "a");
    CHECK_EQ_STR(name_of(identify("bearer  k2", NULL, "127.0.0.1")), "b");
    CHECK_EQ_STR(name_of(identify("Bearer nope", NULL, "127.0.0.1")), "(401)");
    CHECK_EQ_STR(name_of(identify(NULL, NULL, "127.0.0.1")), "(401)");
    CHECK_EQ_STR(name_of(identify("Basic azE=", NULL, "127.0.0.1")), "(401)");
    /* not trusted: the header is ignored */
    CHECK_EQ_STR(name_of(identify(NULL, "a", "127.0.0.1")), "(401)");
    CHECK_EQ_STR(name_of(identify("Bearer k2", "a", "127.0.0.1")), "b");

    /* no keys anywhere: everyone is default, whatever key they send */
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"a\"}]}"), 0);
    CHECK_EQ_STR(name_of(identify(NULL, NULL, "127.0.0.1")), "default");
    CHECK_EQ_STR(name_of(identify("Bearer whatever", "a", "127.0.0.1")), "default");

    /* trusted everywhere */
    CHECK_EQ_INT(load("{\"trust_tenant_header\":true,\"tenants\":[{\"name\":\"a\",\"keys\":[\"k1\"]},{\"name\":\"b\"}]}"), 0);
    CHECK_EQ_STR(name_of(identify(NULL, "b", "10.0.0.1")), "b");
    CHECK_EQ_STR(name_of(identify(NULL, "unknown", "10.0.0.1")), "default");
    CHECK_EQ_STR(name_of(identify(NULL, NULL, "10.0.0.1")), "(401)");
    /* trusted only from 127.0.0.0/8 */
    CHECK_EQ_INT(
        load("{\"trust_tenant_header\":[\"127.0.0.0/8\"],\"tenants\":[{\"name\":\"a\",\"keys\":[\"k1\"]},{\"name\":\"b\"}]}"), 0);
    CHECK_EQ_STR(name_of(identify(NULL, "b", "127.0.0.9")), "b");
    CHECK_EQ_STR(name_of(identify(NULL, "b", "10.0.0.1")), "(401)");
    CHECK_EQ_STR(name_of(identify("Bearer k1", "b", "10.0.0.1")), "a");
}

static void test_cidr(void)
{
    gg_cidr_t c;
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    CHECK_EQ_INT(gg_cidr_parse("192.168.1.0/24", &c), 0);
    inet_pton(AF_INET, "192.168.1.77", &a4.sin_addr);
    CHECK(gg_cidr_match(&c, (struct sockaddr *)&a4));
    inet_pton(AF_INET, "192.168.2.1", &a4.sin_addr);
    CHECK(!gg_cidr_match(&c, (struct sockaddr *)&a4));
    inet_pton(AF_INET6, "::ffff:192.168.1.5", &a6.sin6_addr); /* v4-mapped */
    CHECK(gg_cidr_match(&c, (struct sockaddr *)&a6));
    CHECK_EQ_INT(gg_cidr_parse("10.1.2.3", &c), 0);
    CHECK_EQ_INT(c.prefix, 32);
    CHECK_EQ_INT(gg_cidr_parse("fd00::/12", &c), 0);
    inet_pton(AF_INET6, "fd0f::1", &a6.sin6_addr);
    CHECK(gg_cidr_match(&c, (struct sockaddr *)&a6));
    inet_pton(AF_INET6, "fd10::1", &a6.sin6_addr);
    CHECK(!gg_cidr_match(&c, (struct sockaddr *)&a6));
    CHECK_EQ_INT(gg_cidr_parse("10.0.0.0/33", &c), -EINVAL);
    CHECK_EQ_INT(gg_cidr_parse("10.0.0.0/", &c), -EINVAL);
    CHECK_EQ_INT(gg_cidr_parse("host/8", &c), -EINVAL);
    CHECK_EQ_INT(gg_cidr_parse("", &c), -EINVAL);
}

static void test_cost(void)
{
    gg_reqinfo_t ri = {.ep = GG_EP_CHAT, .prompt_tokens_est = 20, .max_tokens = 64};
    CHECK_EQ_INT(gg_tenant_cost(&ri), 84);
    ri.max_tokens = -1;
    CHECK_EQ_INT(gg_tenant_cost(&ri), 20 + GG_TENANT_DEFAULT_MAX_TOKENS);
    ri.ep = GG_EP_EMBED;
    CHECK_EQ_INT(gg_tenant_cost(&ri), 20);
    ri.prompt_tokens_est = 0;
    CHECK_EQ_INT(gg_tenant_cost(&ri), 1);
}

static void test_reject_names(void)
{
    CHECK_EQ_STR(gg_reject_name(GG_REJECT_RATE), "rate_limit");
    CHECK_EQ_STR(gg_reject_name(GG_REJECT_QUOTA), "quota");
    CHECK_EQ_STR(gg_reject_name(GG_REJECT_OVERLOADED), "overloaded");
}

/* The admin API's live changes: a new tenant and its keys authenticate at once, removed keys do not, and
 * removing the last key keeps keys required. */
static void test_live(void)
{
    CHECK_EQ_INT(load("{\"tenants\":[{\"name\":\"a\",\"keys\":[\"k1\"]}]}"), 0);
    gg_tenant_t *a = gg_tenant_find("a"), *b = NULL, *dup = NULL;
    CHECK_EQ_INT(gg_tenant_add("b", 3, 1, 0, 10, 2.0, 2, 0, &b), 0);
    CHECK(b != NULL && gg_tenant_find("b") == b);
    CHECK_EQ_INT(gg_tenants_count(), 3);
    CHECK_EQ_INT(b->weight, 3);
    CHECK_EQ_INT(gg_tenant_add("b", 1, 0, 0, 0, 0, 0, 0, &dup), -EEXIST);
    CHECK_EQ_INT(gg_tenant_add("bad name", 1, 0, 0, 0, 0, 0, 0, &dup), -EINVAL);
    CHECK_EQ_INT(gg_tenant_add("", 1, 0, 0, 0, 0, 0, 0, &dup), -EINVAL);
    CHECK(gg_tenant_by_key("k2", 2) == NULL);
    CHECK_EQ_INT(gg_tenant_key_add(b, "k2"), 0);
    CHECK_EQ_INT(gg_tenant_key_add(b, "sha256:"
                                      "5f0b5b2d8c5c1f2a8d3f1e6e1c3a8f3c1b2e3d4f5a6b7c8d9e0f1a2b3c4d5e6f"),
                 0);
    CHECK_EQ_INT(gg_tenant_key_add(b, "sha256:xyz"), -EINVAL);
    CHECK_EQ_INT(gg_tenant_key_add(b, "k1"), -EEXIST); /* a's key: one key, one tenant */
    CHECK_EQ_INT((int)b->n_keys, 2);
    CHECK(gg_tenant_by_key("k2", 2) == b);
    CHECK(gg_tenant_by_key("k1", 2) == a);
    CHECK_EQ_STR(name_of(identify("Bearer k2", NULL, "127.0.0.1")), "b");
    CHECK_EQ_INT(gg_tenant_key_remove(a, "k2"), -ENOENT); /* not a's */
    CHECK_EQ_INT(gg_tenant_key_remove(b, "k2"), 0);
    CHECK_EQ_INT(gg_tenant_key_remove(b, "k2"), -ENOENT);
    CHECK(gg_tenant_by_key("k2", 2) == NULL);
    CHECK_EQ_STR(name_of(identify("Bearer k2", NULL, "127.0.0.1")), "(401)");
    CHECK_EQ_INT(gg_tenant_key_remove(a, "k1"), 0);
    CHECK(gg_tenants_require_key());
    CHECK_EQ_STR(name_of(identify(NULL, NULL, "127.0.0.1")), "(401)");

    /* Without keys at start, the first key added makes keys required. */
    CHECK_EQ_INT(load("{}"), 0);
    CHECK(!gg_tenants_require_key());
    CHECK_EQ_INT(gg_tenant_add("c", 1, 0, 0, 0, 0, 0, 0, &b), 0);
    CHECK_EQ_INT(gg_tenant_key_add(b, "kc"), 0);
    CHECK(gg_tenants_require_key());
    CHECK_EQ_STR(name_of(identify("Bearer kc", NULL, "127.0.0.1")), "c");
    CHECK_EQ_STR(name_of(identify(NULL, NULL, "127.0.0.1")), "(401)");

    /* The table fills up to GG_MAX_TENANTS and no further. */
    char name[16];
    int rc = 0;
    for (size_t i = gg_tenants_count(); i < GG_MAX_TENANTS && rc == 0; i++) {
        snprintf(name, sizeof(name), "t%zu", i);
        rc = gg_tenant_add(name, 1, 0, 0, 0, 0, 0, 0, NULL);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(gg_tenants_count(), GG_MAX_TENANTS);
    CHECK_EQ_INT(gg_tenant_add("one-more", 1, 0, 0, 0, 0, 0, 0, NULL), -ENOSPC);
    gg_tenants_free();
}

TEST_MAIN(test_table, test_identify, test_cidr, test_cost, test_reject_names, test_live)
