/* Tests control/guard.c without privileges: the bpf.xdp / bpf.reuseport config keys (defaults, bounds, interface
 * names, errors that name the key), the prefix parser and formatter on good and bad input, and that the guard's
 * entry points are clean no-ops while it is not loaded. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "gridgate/config.h"
#include "gridgate/guard.h"
#include "test.h"

static char err[512];

static int parse(const char *text, gg_config_t *cfg)
{
    err[0] = '\0';
    return gg_config_parse_string(text, strlen(text), "t.json", cfg, err, sizeof(err));
}

static void test_config_defaults(void)
{
    gg_config_t c;
    CHECK_EQ_INT(parse("{}", &c), 0);
    CHECK_EQ_INT(c.bpf.xdp.n_interfaces, 0);
    CHECK(c.bpf.xdp.syn_rate == 100);
    CHECK_EQ_INT(c.bpf.xdp.syn_burst, 200);
    CHECK_EQ_INT(c.bpf.xdp.auth_fail_limit, 20);
    CHECK_EQ_INT(c.bpf.xdp.auth_fail_window_s, 60);
    CHECK_EQ_INT(c.bpf.xdp.deny_seconds, 600);
    CHECK_EQ_INT(c.bpf.reuseport, 1);
    gg_config_free(&c);
    CHECK_EQ_INT(parse("{\"bpf\": {\"reuseport\": false, \"xdp\": {\"interfaces\": \"eth0\", \"syn_rate\": 0.5, \"syn_burst\": 3,"
                       " \"auth_fail_limit\": 0, \"deny_seconds\": 1}}}",
                       &c),
                 0);
    CHECK_EQ_INT(c.bpf.reuseport, 0);
    CHECK_EQ_INT(c.bpf.xdp.n_interfaces, 1);
    CHECK_EQ_STR(c.bpf.xdp.interfaces[0], "eth0");
    CHECK(c.bpf.xdp.syn_rate == 0.5);
    CHECK_EQ_INT(c.bpf.xdp.syn_burst, 3);
    CHECK_EQ_INT(c.bpf.xdp.auth_fail_limit, 0);
    gg_config_free(&c);
    CHECK_EQ_INT(parse("{}", &c), 0);
    CHECK_EQ_INT(gg_config_set(&c, "bpf.xdp.syn_burst", "7", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.bpf.xdp.syn_burst, 7);
    CHECK_EQ_INT(gg_config_set(&c, "bpf.xdp.syn_burst", "0", err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "bpf.xdp.syn_burst") != NULL);
    gg_config_free(&c);
}

static void test_config_errors(void)
{
    static const struct {
        const char *json, *key;
    } bad[] = {
        {"{\"bpf\": {\"xdp\": {\"syn_rate\": -1}}}", "bpf.xdp.syn_rate"},
        {"{\"bpf\": {\"xdp\": {\"syn_rate\": \"fast\"}}}", "bpf.xdp.syn_rate"},
        {"{\"bpf\": {\"xdp\": {\"syn_burst\": 0}}}", "bpf.xdp.syn_burst"},
        {"{\"bpf\": {\"xdp\": {\"syn_burst\": 1.5}}}", "bpf.xdp.syn_burst"},
        {"{\"bpf\": {\"xdp\": {\"auth_fail_window_s\": 0}}}", "bpf.xdp.auth_fail_window_s"},
        {"{\"bpf\": {\"xdp\": {\"deny_seconds\": 0}}}", "bpf.xdp.deny_seconds"},
        {"{\"bpf\": {\"xdp\": {\"deny_seconds\": 99999999999}}}", "bpf.xdp.deny_seconds"},
        {"{\"bpf\": {\"xdp\": {\"interfaces\": \"\"}}}", "bpf.xdp.interfaces"},
        {"{\"bpf\": {\"xdp\": {\"interfaces\": [\"a-very-long-interface-name\"]}}}", "bpf.xdp.interfaces"},
        {"{\"bpf\": {\"xdp\": {\"interfaces\": [\"eth0\", \"eth/1\"]}}}", "bpf.xdp.interfaces[1]"},
        {"{\"bpf\": {\"xdp\": {\"interfaces\": [\"eth0\", \"eth0\"]}}}", "bpf.xdp.interfaces[1]"},
        {"{\"bpf\": {\"xdp\": {\"interfaces\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}}}", "bpf.xdp.interfaces"},
        {"{\"bpf\": {\"xdp\": {\"interfaces\": [1]}}}", "bpf.xdp.interfaces"},
        {"{\"bpf\": {\"xdp\": {\"nope\": 1}}}", "bpf.xdp.nope"},
        {"{\"bpf\": {\"xdp\": []}}", "bpf.xdp"},
        {"{\"bpf\": {\"reuseport\": \"yes\"}}", "bpf.reuseport"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gg_config_t c;
        int rc = parse(bad[i].json, &c);
        CHECK_EQ_INT(rc, -EINVAL);
        if (rc == 0)
            gg_config_free(&c);
        if (strstr(err, bad[i].key) == NULL)
            fprintf(stderr, "%s: error does not name %s: %s\n", bad[i].json, bad[i].key, err);
        CHECK(strstr(err, bad[i].key) != NULL);
        CHECK(strncmp(err, "t.json:", 7) == 0);
    }
}

static void test_prefixes(void)
{
    struct gg_guard_prefix k;
    char s[64];
    CHECK_EQ_INT(gg_guard_parse_prefix("192.168.7.9/16", &k), 0);
    CHECK_EQ_INT(k.prefixlen, 96 + 16);
    CHECK_EQ_INT(k.addr[10], 0xff);
    CHECK_EQ_INT(k.addr[12], 192);
    CHECK_EQ_INT(k.addr[14], 0);
    gg_guard_format_prefix(&k, s, sizeof(s));
    CHECK_EQ_STR(s, "192.168.0.0/16");
    CHECK_EQ_INT(gg_guard_parse_prefix("2001:db8:aaaa::1/33", &k), 0);
    gg_guard_format_prefix(&k, s, sizeof(s));
    CHECK_EQ_STR(s, "2001:db8:8000::/33");
    CHECK_EQ_INT(gg_guard_parse_prefix("10.0.0.0/8\n", &k), -EINVAL);
    CHECK_EQ_INT(gg_guard_parse_prefix("10.0.0.0\0/8", &k), 0); /* a C string ends at its NUL */
}

static void test_not_loaded(void)
{
    CHECK(!gg_guard_loaded());
    CHECK_EQ_INT(gg_guard_deny("10.0.0.1", 0, err, sizeof(err)), -ENOTSUP);
    CHECK(strstr(err, "not loaded") != NULL);
    CHECK_EQ_INT(gg_guard_allow("10.0.0.1", err, sizeof(err)), -ENOTSUP);
    CHECK_EQ_INT(gg_guard_remove("10.0.0.1", err, sizeof(err)), -ENOTSUP);
    json_t *l = gg_guard_list_json(), *st = gg_guard_stats_json();
    CHECK(json_is_false(json_object_get(l, "enabled")));
    CHECK_EQ_INT(json_array_size(json_object_get(l, "deny")), 0);
    CHECK(json_is_false(json_object_get(st, "enabled")));
    json_decref(l);
    json_decref(st);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    for (int i = 0; i < 100; i++)
        gg_guard_auth_failed((struct sockaddr *)&sa); /* counts nothing, denies nothing */
    gg_guard_auth_failed(NULL);
    gg_guard_listeners_t ls = {.workers = 2, .groups = 1};
    CHECK_EQ_INT(gg_guard_start(&ls), 0);
    CHECK(gg_guard_conn_counts() == NULL);
    gg_guard_shutdown();
}

TEST_MAIN(test_config_defaults, test_config_errors, test_prefixes, test_not_loaded)
