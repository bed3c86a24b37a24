/* Tests common/jscan.c: every document the scanner accepts is one jansson (flags 0) accepts, the
 * documents jansson refuses are refused, code points and integers are read right, and the walk API
 * (keys, elements, skip) visits what is there. */
#include <jansson.h>
#include <stdlib.h>

#include "gridgate/jscan.h"
#include "test.h"

/* Scans a whole document: 0 when the scanner vouches for it. */
static int scan_all(const char *doc, size_t len)
{
    gg_jscan_t s;
    gg_jval_t v;
    gg_jscan_init(&s, doc, len);
    if (gg_jscan_value(&s, &v) != 0 || gg_jscan_drop(&s, &v) != 0)
        return -1;
    return gg_jscan_finish(&s);
}

static int jansson_ok(const char *doc, size_t len)
{
    json_t *j = json_loadb(doc, len, 0, NULL);
    json_decref(j);
    return j != NULL;
}

static void test_accepts_what_jansson_accepts(void)
{
    static const char *ok[] = {
        "{}",
        "[]",
        " {\"a\" : [1, -0, 0.5, -1.25e+10, 3E-7, true, false, null, \"x\"]}\r\n",
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
        "{\"u\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}",
        "[[[[]]],{\"a\":{\"b\":{}}}]",
        "{\"a\":1,\"a\":2}",
        "[123456789012345678]",
        "[\"\x7f\"]",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK(jansson_ok(ok[i], strlen(ok[i])));
        CHECK_EQ_INT(scan_all(ok[i], strlen(ok[i])), 0);
        CHECK_EQ_INT(gg_json_check(ok[i], strlen(ok[i])), 1);
    }
}

static void test_refuses_what_jansson_refuses(void)
{
    static const char *bad[] = {
        "",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "[1,]",
        "[01]",
        "[1.]",
        "[.5]",
        "[+1]",
        "[1e]",
        "[-]",
        "[tru]",
        "[truex]",
        "[nul]",
        "{\"a\":1} x",
        "{} {}",
        "[\"\\x\"]",
        "[\"\\u12\"]",
        "[\"\\u0000\"]",
        "[\"\\ud800\"]",
        "[\"\\udc00\"]",
        "[\"\\ud800\\u0041\"]",
        "[\"a\tb\"]",
        "[\"\xc3\x28\"]",
        "[\"\xc0\xaf\"]",
        "[\"\xed\xa0\x80\"]",
        "[\"\xf4\x90\x80\x80\"]",
        "[\"\xe2\x82\"]",
        "[\"abc",
        "{1:2}",
        "[\xc3\xa9]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!jansson_ok(bad[i], strlen(bad[i])));
        CHECK_EQ_INT(scan_all(bad[i], strlen(bad[i])), -1);
        CHECK_EQ_INT(gg_json_check(bad[i], strlen(bad[i])), 0);
    }
    /* NUL bytes inside and outside strings */
    CHECK_EQ_INT(scan_all("[\"a\0b\"]", 7), -1);
    CHECK_EQ_INT(scan_all("[1]\0", 4), -1);
    /* a scalar is JSON but not a document jansson loads without JSON_DECODE_ANY */
    CHECK_EQ_INT(gg_json_check("1", 1), 0);
    CHECK_EQ_INT(gg_json_check("\"s\"", 3), 0);
}

static void test_gives_up_near_limits(void)
{
    /* valid for jansson, but past what the scanner checks: it gives up, gg_json_check asks jansson */
    static const char *hard[] = {"[1234567890123456789]", "[1e100]", "[-99999999999999999999]"};
    for (size_t i = 0; i < sizeof(hard) / sizeof(hard[0]); i++) {
        CHECK_EQ_INT(scan_all(hard[i], strlen(hard[i])), -1);
        CHECK_EQ_INT(gg_json_check(hard[i], strlen(hard[i])), jansson_ok(hard[i], strlen(hard[i])));
    }
    CHECK_EQ_INT(gg_json_check("[1e400]", 7), 0); /* jansson: real number overflow */
    /* nesting: the bound itself passes, one more level gives up */
    char *b = malloc(2 * GG_JSCAN_MAX_DEPTH + 4);
    size_t n = 0;
    for (int i = 0; i < GG_JSCAN_MAX_DEPTH; i++)
        b[n++] = '[';
    for (int i = 0; i < GG_JSCAN_MAX_DEPTH; i++)
        b[n++] = ']';
    CHECK_EQ_INT(scan_all(b, n), 0);
    n = 0;
    for (int i = 0; i <= GG_JSCAN_MAX_DEPTH; i++)
        b[n++] = '[';
    for (int i = 0; i <= GG_JSCAN_MAX_DEPTH; i++)
        b[n++] = ']';
    CHECK_EQ_INT(scan_all(b, n), -1);
    CHECK_EQ_INT(gg_json_check(b, n), 1);
    free(b);
}

static void test_walk(void)
{
    const char *doc =
        "{\"model\":\"m\\u00e9\",\"n\":-42,\"skip\":{\"x\":[1,{\"y\":\"z\"}]},\"arr\":[\"ab\",\"\xc3\xa9\xc3\xa9\"],\"e\":\"\"}";
    gg_jscan_t s;
    gg_jval_t v;
    gg_jstr_t k;
    gg_jscan_init(&s, doc, strlen(doc));
    CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
    CHECK_EQ_INT(v.type, GG_JOBJECT);

    CHECK_EQ_INT(gg_jscan_key(&s, &k), 1);
    CHECK(gg_jstr_is(&k, "model"));
    CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
    CHECK_EQ_INT(v.type, GG_JSTRING);
    CHECK_EQ_INT(v.s.escaped, 1);
    CHECK_EQ_INT(v.s.cps, 2);              /* "m" and U+00E9 */
    CHECK(!gg_jstr_is(&v.s, "m\xc3\xa9")); /* escaped strings never compare equal */

    CHECK_EQ_INT(gg_jscan_key(&s, &k), 1);
    CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
    CHECK_EQ_INT(v.type, GG_JINT);
    CHECK_EQ_INT(v.i, -42);

    CHECK_EQ_INT(gg_jscan_key(&s, &k), 1);
    CHECK(gg_jstr_is(&k, "skip"));
    CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
    CHECK_EQ_INT(gg_jscan_drop(&s, &v), 0);

    CHECK_EQ_INT(gg_jscan_key(&s, &k), 1);
    CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
    CHECK_EQ_INT(v.type, GG_JARRAY);
    size_t cps[2], i = 0;
    while (gg_jscan_elem(&s) == 1 && i < 2) {
        CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
        cps[i++] = v.s.cps;
    }
    CHECK_EQ_INT(i, 2);
    CHECK_EQ_INT(cps[0], 2);
    CHECK_EQ_INT(cps[1], 2);

    CHECK_EQ_INT(gg_jscan_key(&s, &k), 1);
    CHECK_EQ_INT(gg_jscan_value(&s, &v), 0);
    CHECK_EQ_INT(v.s.len, 0);
    CHECK_EQ_INT(gg_jscan_key(&s, &k), 0);
    CHECK_EQ_INT(gg_jscan_finish(&s), 0);
}

TEST_MAIN(test_accepts_what_jansson_accepts, test_refuses_what_jansson_refuses, test_gives_up_near_limits, test_walk)
