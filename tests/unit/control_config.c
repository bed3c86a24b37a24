/* Tests control/config.c: defaults, every key family, every error shape (FILE:LINE: KEY: REASON),
 * command-line overrides and the generated reference. */
#include "gridgate/backend.h"
#include "gridgate/config.h"
#include "gridgate/splice.h"
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static char err[512];

static int parse(const char *text, gg_config_t *cfg)
{
    err[0] = '\0';
    return gg_config_parse_string(text, strlen(text), "t.json", cfg, err, sizeof(err));
}

/* Expects a parse failure whose message is exactly want. */
static void expect_error(const char *text, const char *want)
{
    gg_config_t cfg;
    int r = parse(text, &cfg);
    CHECK_EQ_INT(r, -EINVAL);
    CHECK_EQ_STR(err, want);
}

static void test_defaults(void)
{
    gg_config_t cfg;
    CHECK_EQ_INT(parse("{}", &cfg), 0);
    CHECK_EQ_INT(cfg.n_listen, 1);
    CHECK_EQ_STR(cfg.listen[0], "127.0.0.1:8080");
    CHECK_EQ_INT(cfg.health.interval_ms, 2000);
    CHECK_EQ_INT(cfg.health.fail_threshold, 2);
    CHECK_EQ_INT(cfg.limits.max_body_bytes, 8u << 20);
    CHECK_EQ_INT(cfg.bpf.mode, GG_BPF_AUTO);
    CHECK_EQ_STR(cfg.bpf.pin_path, "/sys/fs/bpf/gridgate");
    CHECK_EQ_STR(cfg.log_level, "info");
    CHECK(cfg.admin_listen == NULL);
    CHECK_EQ_INT(cfg.trust_tenant_header, 0);
    CHECK_EQ_INT(cfg.routing.affinity, 1);
    CHECK_EQ_INT(cfg.n_backends, 0);
    gg_config_free(&cfg);
}

static void test_full(void)
{
    const char *text = "{\n"
                       "  \"listen\": [\"127.0.0.1:0\", \"[::1]:9000\"],\n"
                       "  \"admin\": {\"listen\": \"unix:/tmp/gg.sock\", \"token\": \"s3cret\"},\n"
                       "  \"threads\": 4,\n"
                       "  \"backends\": [\n"
                       "    {\"name\": \"gpu1\", \"url\": \"http://10.0.0.5:11434\", \"kind\": \"ollama\", \"weight\": 3},\n"
                       "    {\"url\": \"http://127.0.0.1:8000/prefix\", \"max_inflight\": 16}\n"
                       "  ],\n"
                       "  \"tenants\": [{\"name\": \"alice\", \"keys\": [\"k1\", \"k2\"], \"priority\": 2,\n"
                       "                \"rate\": {\"requests_per_s\": 2.5, \"burst\": 5, \"tokens_per_min\": 10000},\n"
                       "                \"max_inflight\": 3, \"max_queue\": 7}],\n"
                       "  \"routing\": {\"aliases\": {\"gpt-4\": \"llama3:8b\"}, \"affinity\": false},\n"
                       "  \"health\": {\"interval_ms\": 500, \"timeout_ms\": 200, \"cooldown_ms\": 100},\n"
                       "  \"timeouts\": {\"connect_ms\": 100, \"first_byte_ms\": 1000, \"idle_ms\": 1000},\n"
                       "  \"limits\": {\"max_body_bytes\": 65536},\n"
                       "  \"require_models\": [\"llama3:8b\"],\n"
                       "  \"tls\": {\"cert\": \"c.pem\", \"key\": \"k.pem\"},\n"
                       "  \"access_log\": \"-\", \"log_level\": \"debug\",\n"
                       "  \"trust_tenant_header\": [\"127.0.0.0/8\", \"::1/128\"],\n"
                       "  \"bpf\": {\"mode\": \"off\", \"pin_path\": \"/sys/fs/bpf/x\"},\n"
                       "  \"registration\": {\"token\": \"reg\", \"approve\": true}\n"
                       "}\n";
    gg_config_t cfg;
    CHECK_EQ_INT(parse(text, &cfg), 0);
    if (err[0])
        fprintf(stderr, "%s\n", err);
    CHECK_EQ_INT(cfg.n_listen, 2);
    CHECK_EQ_STR(cfg.listen[1], "[::1]:9000");
    CHECK_EQ_STR(cfg.admin_listen, "unix:/tmp/gg.sock");
    CHECK_EQ_STR(cfg.admin_token, "s3cret");
    CHECK_EQ_INT(cfg.threads, 4);
    CHECK_EQ_INT(cfg.n_backends, 2);
    CHECK_EQ_STR(cfg.backends[0].name, "gpu1");
    CHECK_EQ_INT(cfg.backends[0].kind, GG_ENGINE_OLLAMA);
    CHECK_EQ_INT(cfg.backends[0].weight, 3);
    CHECK(cfg.backends[1].name == NULL);
    CHECK_EQ_INT(cfg.backends[1].kind, GG_ENGINE_UNKNOWN);
    CHECK_EQ_INT(cfg.backends[1].weight, 1);
    CHECK_EQ_INT(cfg.backends[1].max_inflight, 16);
    CHECK_EQ_STR(cfg.backends[1].url, "http://127.0.0.1:8000/prefix");
    CHECK_EQ_INT(cfg.n_tenants, 1);
    CHECK_EQ_STR(cfg.tenants[0].keys[1], "k2");
    CHECK_EQ_INT(cfg.tenants[0].priority, 2);
    CHECK_EQ_INT(cfg.tenants[0].weight, 1);
    CHECK(cfg.tenants[0].rate_requests_per_s == 2.5);
    CHECK_EQ_INT(cfg.tenants[0].rate_burst, 5);
    CHECK_EQ_INT(cfg.tenants[0].rate_tokens_per_min, 10000);
    CHECK_EQ_INT(cfg.tenants[0].max_queue, 7);
    CHECK_EQ_INT(cfg.routing.n_aliases, 1);
    CHECK_EQ_STR(cfg.routing.aliases[0].alias, "gpt-4");
    CHECK_EQ_STR(cfg.routing.aliases[0].model, "llama3:8b");
    CHECK_EQ_INT(cfg.routing.affinity, 0);
    CHECK_EQ_INT(cfg.health.interval_ms, 500);
    CHECK_EQ_INT(cfg.health.max_cooldown_ms, 30000);
    CHECK_EQ_INT(cfg.timeouts.connect_ms, 100);
    CHECK_EQ_INT(cfg.limits.max_body_bytes, 65536);
    CHECK_EQ_STR(cfg.require_models[0], "llama3:8b");
    CHECK_EQ_STR(cfg.tls_key, "k.pem");
    CHECK_EQ_STR(cfg.access_log, "-");
    CHECK_EQ_STR(cfg.log_level, "debug");
    CHECK_EQ_INT(cfg.trust_tenant_header, 1);
    CHECK_EQ_INT(cfg.n_trust_tenant_cidrs, 2);
    CHECK_EQ_INT(cfg.bpf.mode, GG_BPF_OFF);
    CHECK_EQ_STR(cfg.bpf.pin_path, "/sys/fs/bpf/x");
    CHECK_EQ_STR(cfg.registration.token, "reg");
    CHECK_EQ_INT(cfg.registration.approve, 1);
    gg_config_free(&cfg);

    /* listen as one string; admin as a string; trust as a bool */
    CHECK_EQ_INT(parse("{\"listen\": \"0.0.0.0:80\", \"admin\": \"127.0.0.1:9\", \"trust_tenant_header\": true}", &cfg), 0);
    CHECK_EQ_INT(cfg.n_listen, 1);
    CHECK_EQ_STR(cfg.listen[0], "0.0.0.0:80");
    CHECK_EQ_STR(cfg.admin_listen, "127.0.0.1:9");
    CHECK(cfg.admin_token == NULL);
    CHECK_EQ_INT(cfg.trust_tenant_header, 1);
    CHECK_EQ_INT(cfg.n_trust_tenant_cidrs, 0);
    gg_config_free(&cfg);
}

static void test_errors(void)
{
    /* syntax: jansson's line */
    expect_error("{\n  \"threads\": 4,\n  oops\n}", "t.json:3: (syntax): string or '}' expected near 'oops'");
    expect_error("{\"a\": 1, \"a\": 2}", "t.json:1: (syntax): duplicate object key near '\"a\"'");
    expect_error("[1]", "t.json:1: (top): expected an object, got an array");
    /* unknown keys, with and without a suggestion */
    expect_error("{\n\"health\": {\n  \"intervl_ms\": 5\n}}",
                 "t.json:3: health.intervl_ms: unknown key (did you mean \"interval_ms\"?)");
    expect_error("{\"zzzzzzzzz\": 1}", "t.json:1: zzzzzzzzz: unknown key");
    expect_error("{\n\n\"backends\": [{\"url\": \"http://a:1\"},\n  {\"url\": \"http://b:1\", \"wieght\": 2}]}",
                 "t.json:4: backends[1].wieght: unknown key (did you mean \"weight\"?)");
    /* wrong types */
    expect_error("{\"threads\": \"4\"}", "t.json:1: threads: expected an integer, got a string");
    expect_error("{\"threads\": 1.5}", "t.json:1: threads: expected an integer, got a number");
    expect_error("{\n \"routing\": {\"affinity\": 1}}", "t.json:2: routing.affinity: expected a boolean, got an integer");
    expect_error("{\"health\": []}", "t.json:1: health: expected an object, got an array");
    expect_error("{\"backends\": {}}", "t.json:1: backends: expected an array of objects, got an object");
    expect_error("{\"backends\": [1]}", "t.json:1: backends[0]: expected an object, got an integer");
    expect_error("{\"listen\": 80}", "t.json:1: listen: expected a string or an array of strings, got an integer");
    expect_error("{\"listen\": [\n\"127.0.0.1:1\",\n 5]}", "t.json:3: listen[1]: expected a string, got an integer");
    expect_error("{\"tenants\": [{\"name\": \"a\", \"rate\": {\"requests_per_s\": \"x\"}}]}",
                 "t.json:1: tenants[0].rate.requests_per_s: expected a number, got a string");
    expect_error("{\"routing\": {\"aliases\": {\"a\": 3}}}", "t.json:1: routing.aliases.a: expected a model name, got an integer");
    expect_error("{\"admin\": 5}", "t.json:1: admin: expected \"HOST:PORT\", \"unix:PATH\" or an object, got an integer");
    expect_error("{\"trust_tenant_header\": \"yes\"}",
                 "t.json:1: trust_tenant_header[0]: \"yes\" is not a CIDR (A.B.C.D/N or IPv6/N)");
    expect_error("{\"trust_tenant_header\": [\"10.0.0.0/33\"]}",
                 "t.json:1: trust_tenant_header[0]: \"10.0.0.0/33\" is not a CIDR (A.B.C.D/N or IPv6/N)");
    /* bounds and values */
    expect_error("{\"threads\": 1000}", "t.json:1: threads: 1000 is out of range 0..256");
    expect_error("{\"health\": {\"interval_ms\": -1}}", "t.json:1: health.interval_ms: -1 is out of range 50..3600000");
    expect_error("{\"backends\": [{\"url\": \"http://a:1\", \"weight\": 0}]}",
                 "t.json:1: backends[0].weight: 0 is out of range 1..1000");
    expect_error("{\"bpf\": {\"mode\": \"maybe\"}}", "t.json:1: bpf.mode: \"maybe\" is not one of auto|on|off");
    expect_error("{\"log_level\": \"loud\"}", "t.json:1: log_level: \"loud\" is not one of error|warn|info|debug");
    expect_error("{\"backends\": [{\"url\": \"http://a:1\", \"kind\": \"tgi\"}]}",
                 "t.json:1: backends[0].kind: \"tgi\" is not one of auto|ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui");
    expect_error("{\"backends\": [{\"url\": \"https://a:1\"}]}",
                 "t.json:1: backends[0].url: \"https://a:1\": https backends are not supported");
    expect_error("{\"backends\": [{\"url\": \"http://a:99999\"}]}",
                 "t.json:1: backends[0].url: \"http://a:99999\" is not http://HOST:PORT[/prefix]");
    expect_error("{\"listen\": [\"nohost\"]}", "t.json:1: listen[0]: \"nohost\" is not HOST:PORT");
    expect_error("{\"admin\": \"unix:\"}", "t.json:1: admin: \"unix:\" is not HOST:PORT or unix:PATH");
    expect_error("{\"admin\": {\"token\": \"x\"}}", "t.json:1: admin.listen: required");
    expect_error("{\"access_log\": \"\"}", "t.json:1: access_log: must not be empty");
    /* required */
    expect_error("{\"backends\": [\n {\"name\": \"x\"}]}", "t.json:2: backends[0].url: required");
    expect_error("{\"tenants\": [{\"keys\": [\"a\"]}]}", "t.json:1: tenants[0].name: required");
    /* cross-field */
    expect_error("{\"backends\": [{\"name\": \"a\", \"url\": \"http://a:1\"},\n {\"name\": \"a\", \"url\": \"http://b:1\"}]}",
                 "t.json:2: backends[1].name: duplicate backend name \"a\"");
    expect_error("{\"tenants\": [{\"name\": \"a\", \"keys\": [\"k\"]},\n{\"name\": \"b\", \"keys\": [\"j\", \"k\"]}]}",
                 "t.json:2: tenants[1].keys[1]: key already belongs to tenant \"a\"");
    expect_error("{\"tenants\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}", "t.json:1: tenants[1].name: duplicate tenant name \"a\"");
    expect_error("{\n\"tls\": {\"cert\": \"c\"}}", "t.json:2: tls.cert: tls needs both \"cert\" and \"key\"");
    expect_error("{\"routing\": {\"aliases\": {\"m\": \"m\"}}}", "t.json:1: routing.aliases: alias \"m\" names itself");
}

static void test_line_finding(void)
{
    /* The same key name in two places: the error names the one on the path. */
    const char *text = "{\n"
                       "  \"backends\": [\n"
                       "    {\"url\": \"http://a:1\", \"weight\": 2},\n"
                       "    {\n"
                       "      \"url\": \"http://b:1\",\n"
                       "      \"name\": \"x\\\"y\",\n"
                       "      \"weight\": 5000\n"
                       "    }\n"
                       "  ]\n"
                       "}\n";
    expect_error(text, "t.json:7: backends[1].weight: 5000 is out of range 1..1000");
}

static void test_file(void)
{
    char path[] = "/tmp/gg-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *text = "{\n  \"threads\": 2,\n  \"health\": {\"fail_threshold\": 0}\n}\n";
    CHECK_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    gg_config_t cfg;
    CHECK_EQ_INT(gg_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: health.fail_threshold: 0 is out of range 1..100", path);
    CHECK_EQ_STR(err, want);
    unlink(path);
    CHECK_EQ_INT(gg_config_load("/nonexistent/x.json", &cfg, err, sizeof(err)), -ENOENT);
    CHECK_EQ_STR(err, "/nonexistent/x.json: No such file or directory");
}

static void test_command_line(void)
{
    gg_config_t cfg;
    CHECK_EQ_INT(parse("{\"listen\": [\"127.0.0.1:1\"], \"backends\": [{\"url\": \"http://a:1\"}]}", &cfg), 0);
    /* --listen replaces the file's list, then appends */
    CHECK_EQ_INT(gg_config_add_listen(&cfg, "127.0.0.1:0", err, sizeof(err)), 0);
    CHECK_EQ_INT(gg_config_add_listen(&cfg, "127.0.0.1:5", err, sizeof(err)), 0);
    CHECK_EQ_INT(cfg.n_listen, 2);
    CHECK_EQ_STR(cfg.listen[0], "127.0.0.1:0");
    CHECK_EQ_INT(gg_config_add_listen(&cfg, "bad", err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "--listen: \"bad\" is not HOST:PORT");
    /* --backend appends, with fragments */
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://127.0.0.1:8000#kind=vllm", err, sizeof(err)), 0);
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://127.0.0.1:8001/#kind=llama.cpp#name=l#max_inflight=4", err, sizeof(err)),
                 0);
    CHECK_EQ_INT(cfg.n_backends, 3);
    CHECK_EQ_INT(cfg.backends[1].kind, GG_ENGINE_VLLM);
    CHECK_EQ_STR(cfg.backends[1].url, "http://127.0.0.1:8000");
    CHECK_EQ_INT(cfg.backends[2].kind, GG_ENGINE_LLAMACPP);
    CHECK_EQ_STR(cfg.backends[2].name, "l");
    CHECK_EQ_INT(cfg.backends[2].max_inflight, 4);
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://x:1#kind=tgi", err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "--backend: http://x:1#kind=tgi: \"tgi\" is not one of "
                      "auto|ollama|vllm|sglang|llamacpp|lmstudio|mlx|comfyui");
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://x:1#color=red", err, sizeof(err)), -EINVAL);
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "ftp//", err, sizeof(err)), -EINVAL);
    /* found by fuzzing: a URL that is not UTF-8 is an error, not a crash */
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://l/\xd1", err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "not valid UTF-8") != NULL);
    CHECK_EQ_INT(cfg.n_backends, 3);
    /* scalar setters through the table */
    CHECK_EQ_INT(gg_config_set(&cfg, "threads", "3", err, sizeof(err)), 0);
    CHECK_EQ_INT(cfg.threads, 3);
    CHECK_EQ_INT(gg_config_set(&cfg, "bpf.mode", "on", err, sizeof(err)), 0);
    CHECK_EQ_INT(cfg.bpf.mode, GG_BPF_ON);
    CHECK_EQ_INT(gg_config_set(&cfg, "bpf.pin_path", "/sys/fs/bpf/t", err, sizeof(err)), 0);
    CHECK_EQ_STR(cfg.bpf.pin_path, "/sys/fs/bpf/t");
    CHECK_EQ_INT(gg_config_set(&cfg, "admin", "unix:/tmp/a.sock", err, sizeof(err)), 0);
    CHECK_EQ_STR(cfg.admin_listen, "unix:/tmp/a.sock");
    CHECK_EQ_INT(gg_config_set(&cfg, "log_level", "warn", err, sizeof(err)), 0);
    CHECK_EQ_INT(gg_config_set(&cfg, "routing.affinity", "off", err, sizeof(err)), 0);
    CHECK_EQ_INT(cfg.routing.affinity, 0);
    CHECK_EQ_INT(gg_config_set(&cfg, "threads", "x", err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "command line: threads: \"x\" is not an integer");
    CHECK_EQ_INT(gg_config_set(&cfg, "threads", "999", err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "command line: threads: 999 is out of range 0..256");
    CHECK_EQ_INT(gg_config_set(&cfg, "bpf.mode", "x", err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "command line: bpf.mode: \"x\" is not one of auto|on|off");
    CHECK_EQ_INT(gg_config_set(&cfg, "nope", "1", err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "command line: nope: unknown option");
    CHECK_EQ_INT(gg_config_set(&cfg, "health", "1", err, sizeof(err)), -EINVAL);
    CHECK_EQ_INT(gg_config_finish(&cfg, err, sizeof(err)), 0);
    /* finish catches what the command line broke */
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://127.0.0.1:9#name=l", err, sizeof(err)), 0);
    CHECK_EQ_INT(gg_config_finish(&cfg, err, sizeof(err)), -EINVAL);
    CHECK_EQ_STR(err, "config: backends[3].name: duplicate backend name \"l\"");
    gg_config_free(&cfg);
}

static void test_doc(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    gg_config_print_doc(f);
    fclose(f);
    CHECK(strstr(buf, "health.interval_ms") != NULL);
    CHECK(strstr(buf, "default 2000") != NULL);
    CHECK(strstr(buf, "backends[].url") != NULL);
    CHECK(strstr(buf, "tenants[].rate.tokens_per_min") != NULL);
    CHECK(strstr(buf, "limits.max_body_bytes") != NULL);
    CHECK(strstr(buf, "registration.approve") != NULL);
    free(buf);
}

static void test_splice_paths(void)
{
    gg_config_t cfg;
    CHECK_EQ_INT(parse("{}", &cfg), 0);
    CHECK_EQ_INT(cfg.bpf.splice_paths, 0); /* all four streaming routes */
    CHECK_EQ_INT(cfg.bpf.splice_streams, 0);
    CHECK_EQ_INT(cfg.bpf.splice_tunnels, 0); /* both opt-in */
    gg_config_free(&cfg);
    CHECK_EQ_INT(parse("{\"bpf\": {\"splice_tunnels\": true}}", &cfg), 0);
    CHECK_EQ_INT(cfg.bpf.splice_tunnels, 1);
    gg_config_free(&cfg);
    expect_error("{\"bpf\": {\"splice_tunnels\": 1}}", "t.json:1: bpf.splice_tunnels: expected a boolean, got an integer");
    CHECK_EQ_INT(parse("{\"bpf\": {\"splice_streams\": true, \"splice_paths\": [\"/api/chat\", \"/v1/chat/completions\"]}}", &cfg),
                 0);
    CHECK_EQ_INT(cfg.bpf.splice_paths, (1u << gg_splice_path_index("/api/chat", 9)) | 1u);
    gg_config_free(&cfg);
    expect_error("{\"bpf\": {\"splice_paths\": [\"/v1/embeddings\"]}}",
                 "t.json:1: bpf.splice_paths: [0]: not a streaming route (/v1/chat/completions, /v1/completions, /api/chat, "
                 "/api/generate)");
    expect_error("{\"bpf\": {\"splice_paths\": []}}",
                 "t.json:1: bpf.splice_paths: expected a non-empty list of paths (to splice nothing, set bpf.splice_streams to "
                 "false)");
    expect_error("{\"bpf\": {\"splice_paths\": [\"/api/chat\", 7]}}",
                 "t.json:1: bpf.splice_paths: [1]: not a streaming route (/v1/chat/completions, /v1/completions, /api/chat, "
                 "/api/generate)");
}

TEST_MAIN(test_defaults, test_full, test_errors, test_line_finding, test_file, test_command_line, test_doc, test_splice_paths)
