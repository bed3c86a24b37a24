/* Tests the engine adapters (control/adapters/): every body parser on fixture bodies shaped like the real engines' answers
 * (Ollama docs/api.md, vLLM and SGLang /metrics, llama.cpp server README, LM Studio REST API, ComfyUI),
 * then detection and polling of each enginesim flavour over real HTTP when build/enginesim exists. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ollama_tags =
    "{\"models\":[{\"name\":\"codellama:13b\",\"model\":\"codellama:13b\",\"modified_at\":\"2023-11-04T14:56:49.277302595-07:00\","
    "\"size\":7365960935,\"digest\":\"9f438cb9cd581fc025612d27f7c1a6669ff83a8bb0ed86c94fcf4c5440555697\","
    "\"details\":{\"format\":\"gguf\",\"family\":\"llama\",\"families\":null,\"parameter_size\":\"13B\","
    "\"quantization_level\":\"Q4_0\"}},{\"name\":\"llama3:latest\",\"model\":\"llama3:latest\","
    "\"modified_at\":\"2023-12-07T09:32:18.757212583-08:00\",\"size\":3825819519,\"digest\":\"fe938a\","
    "\"details\":{\"format\":\"gguf\",\"family\":\"llama\",\"parameter_size\":\"7B\",\"quantization_level\":\"Q4_0\"}}]}";
static const char *ollama_ps =
    "{\"models\":[{\"name\":\"llama3:latest\",\"model\":\"llama3:latest\",\"size\":5137025024,\"digest\":\"fe938a\","
    "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"llama\",\"parameter_size\":\"7.2B\","
    "\"quantization_level\":\"Q4_0\"},\"expires_at\":\"2024-06-04T14:38:31.83753-07:00\",\"size_vram\":5137025024}]}";

static void test_ollama(void)
{
    gg_engine_status_t st;
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_ollama_parse_tags(ollama_tags, &st), 2);
    CHECK_EQ_INT(gg_ollama_parse_ps(ollama_ps, &st), 1);
    CHECK_EQ_INT(st.n_models, 2);
    CHECK_EQ_STR(st.models[0].name, "codellama:13b");
    CHECK_EQ_INT(st.models[0].loaded, 0);
    CHECK_EQ_INT(st.models[0].size, 7365960935ll);
    CHECK_EQ_STR(json_string_value(json_object_get(st.models[0].meta, "digest")),
                 "9f438cb9cd581fc025612d27f7c1a6669ff83a8bb0ed86c94fcf4c5440555697");
    CHECK_EQ_STR(st.models[1].name, "llama3:latest");
    CHECK_EQ_INT(st.models[1].loaded, 1);
    /* 2024-06-04T14:38:31-07:00 = 2024-06-04T21:38:31Z */
    CHECK_EQ_INT(st.models[1].expires_at, 1717537111);
    CHECK(st.models[1].ps != NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(st.models[1].ps, "size_vram")), 5137025024ll);
    gg_engine_status_free(&st);
    /* a model only in /api/ps still counts */
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_ollama_parse_ps(ollama_ps, &st), 1);
    CHECK_EQ_INT(st.models[0].loaded, 1);
    CHECK_EQ_INT(gg_ollama_parse_tags("{\"error\":\"x\"}", &st), -EPROTO);
    CHECK_EQ_INT(gg_ollama_parse_tags("not json", &st), -EPROTO);
    CHECK_EQ_INT(gg_ollama_parse_tags("{\"models\":[{\"size\":1},{\"name\":\"\"},7]}", &st), 0);
    gg_engine_status_free(&st);
}

static const char *vllm_metrics = "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                                  "# TYPE vllm:num_requests_running gauge\n"
                                  "vllm:num_requests_running{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 3.0\n"
                                  "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                                  "# TYPE vllm:num_requests_waiting gauge\n"
                                  "vllm:num_requests_waiting{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 5.0\n"
                                  "vllm:num_requests_waiting_by_reason{engine=\"0\",reason=\"capacity\"} 99.0\n"
                                  "# TYPE vllm:kv_cache_usage_perc gauge\n"
                                  "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"} 0.4567\n"
                                  "vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\"} 1234.0\n";

static void test_prometheus(void)
{
    double v;
    CHECK_EQ_INT(gg_prom_value(vllm_metrics, "vllm:num_requests_running", &v), 0);
    CHECK(v == 3.0);
    /* a longer metric sharing the prefix is not the metric */
    CHECK_EQ_INT(gg_prom_value(vllm_metrics, "vllm:num_requests_waiting", &v), 0);
    CHECK(v == 5.0);
    CHECK_EQ_INT(gg_prom_value(vllm_metrics, "vllm:num_requests", &v), -ENOENT);
    CHECK_EQ_INT(gg_prom_value("", "x", &v), -ENOENT);
    /* samples of several label sets add up; '}' inside a label value; no labels; timestamps */
    const char *t = "x{a=\"1\"} 2\nx{a=\"}\\\"\"} 3 1700000000000\nx 4\n# x 100\ny 7\nx{a=\"2\"} NaN\n";
    CHECK_EQ_INT(gg_prom_value(t, "x", &v), 0);
    CHECK(v == 9.0);
    CHECK_EQ_INT(gg_prom_value(t, "y", &v), 0);
    CHECK(v == 7.0);
}

static void test_vllm_sglang(void)
{
    gg_engine_status_t st;
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_vllm_parse_metrics(vllm_metrics, &st), 0);
    CHECK_EQ_INT(st.has_load, 1);
    CHECK_EQ_INT(st.running, 3);
    CHECK_EQ_INT(st.waiting, 5);
    CHECK_EQ_INT(st.kv_permille, 457);
    /* vLLM V0 named the KV gauge gpu_cache_usage_perc */
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_vllm_parse_metrics("vllm:num_requests_running 1\nvllm:gpu_cache_usage_perc 1.5\n", &st), 0);
    CHECK_EQ_INT(st.kv_permille, 1000);
    CHECK_EQ_INT(st.waiting, 0);
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_vllm_parse_metrics("python_gc_objects_collected_total 3\n", &st), -ENOENT);
    CHECK_EQ_INT(st.has_load, 0);

    const char *sg = "# HELP sglang:num_running_reqs The number of running requests.\n"
                     "# TYPE sglang:num_running_reqs gauge\n"
                     "sglang:num_running_reqs{model_name=\"Qwen/Qwen2.5-7B\",tp_rank=\"0\"} 2.0\n"
                     "sglang:num_queue_reqs{model_name=\"Qwen/Qwen2.5-7B\",tp_rank=\"0\"} 7.0\n"
                     "sglang:token_usage{model_name=\"Qwen/Qwen2.5-7B\",tp_rank=\"0\"} 0.25\n";
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_sglang_parse_metrics(sg, &st), 0);
    CHECK_EQ_INT(st.running, 2);
    CHECK_EQ_INT(st.waiting, 7);
    CHECK_EQ_INT(st.kv_permille, 250);

    const char *models = "{\"object\":\"list\",\"data\":[{\"id\":\"meta-llama/Llama-3.1-8B-Instruct\",\"object\":\"model\","
                         "\"created\":1715000000,\"owned_by\":\"vllm\",\"root\":\"meta-llama/Llama-3.1-8B-Instruct\","
                         "\"max_model_len\":8192},{\"id\":\"lora-a\",\"object\":\"model\"},{\"object\":\"model\"}]}";
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_parse_openai_models(models, 1, &st), 2);
    CHECK_EQ_INT(st.n_models, 2);
    CHECK_EQ_STR(st.models[0].name, "meta-llama/Llama-3.1-8B-Instruct");
    CHECK_EQ_INT(st.models[0].loaded, 1);
    CHECK_EQ_INT(json_integer_value(json_object_get(st.models[0].meta, "max_model_len")), 8192);
    CHECK_EQ_INT(gg_parse_openai_models("{\"data\":{}}", 1, &st), -EPROTO);
    CHECK_EQ_INT(gg_parse_openai_models("", 1, &st), -EPROTO);
    gg_engine_status_free(&st);
}

static void test_llamacpp(void)
{
    gg_engine_status_t st;
    gg_engine_status_init(&st);
    const char *props = "{\"default_generation_settings\":{\"n_ctx\":4096,\"params\":{}},\"total_slots\":4,"
                        "\"model_path\":\"/models/qwen2.5-7b-q4_k_m.gguf\",\"chat_template\":\"...\"}";
    CHECK_EQ_INT(gg_llamacpp_parse_props(props, &st), 0);
    CHECK_EQ_INT(st.capacity, 4);
    CHECK_EQ_INT(st.n_models, 1);
    CHECK_EQ_STR(st.models[0].name, "/models/qwen2.5-7b-q4_k_m.gguf");
    gg_engine_status_free(&st);
    /* /v1/models came first: props adds no second name */
    gg_engine_status_init(&st);
    gg_engine_status_add_model(&st, "qwen", 1);
    CHECK_EQ_INT(gg_llamacpp_parse_props(props, &st), 0);
    CHECK_EQ_INT(st.n_models, 1);
    CHECK_EQ_INT(gg_llamacpp_parse_props("[]", &st), -EPROTO);
    gg_engine_status_free(&st);

    const char *slots = "[{\"id\":0,\"id_task\":12,\"n_ctx\":1024,\"is_processing\":true,\"params\":{}},"
                        "{\"id\":1,\"id_task\":-1,\"n_ctx\":1024,\"is_processing\":false},"
                        "{\"id\":2,\"is_processing\":true}]";
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_llamacpp_parse_slots(slots, &st), 0);
    CHECK_EQ_INT(st.running, 2);
    CHECK_EQ_INT(st.capacity, 3);
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_llamacpp_parse_slots("[{\"id\":0,\"state\":1},{\"id\":1,\"state\":0}]", &st), 0);
    CHECK_EQ_INT(st.running, 1);
    CHECK_EQ_INT(gg_llamacpp_parse_slots("{\"error\":{\"code\":501}}", &st), -EPROTO);

    const char *metrics = "# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.\n"
                          "# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.125\n"
                          "llamacpp:requests_processing 1\nllamacpp:requests_deferred 4\n";
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_llamacpp_parse_metrics(metrics, &st), 0);
    CHECK_EQ_INT(st.running, 1);
    CHECK_EQ_INT(st.waiting, 4);
    CHECK_EQ_INT(st.kv_permille, 125);
}

static void test_lmstudio_comfyui(void)
{
    const char *lms =
        "{\"object\":\"list\",\"data\":[{\"id\":\"qwen2-vl-7b-instruct\",\"object\":\"model\",\"type\":\"vlm\","
        "\"publisher\":\"mlx-community\",\"arch\":\"qwen2_vl\",\"compatibility_type\":\"mlx\","
        "\"quantization\":\"4bit\",\"state\":\"not-loaded\",\"max_context_length\":32768},"
        "{\"id\":\"meta-llama-3.1-8b-instruct\",\"object\":\"model\",\"type\":\"llm\",\"publisher\":\"lmstudio-community\","
        "\"arch\":\"llama\",\"compatibility_type\":\"gguf\",\"quantization\":\"Q4_K_M\",\"state\":\"loaded\","
        "\"max_context_length\":131072}]}";
    gg_engine_status_t st;
    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_lmstudio_parse_models(lms, &st), 2);
    CHECK_EQ_INT(st.models[0].loaded, 0);
    CHECK_EQ_INT(st.models[1].loaded, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(st.models[1].meta, "quantization")), "Q4_K_M");
    CHECK_EQ_INT(gg_lmstudio_parse_models("{}", &st), -EPROTO);
    gg_engine_status_free(&st);

    gg_engine_status_init(&st);
    CHECK_EQ_INT(gg_comfyui_parse_queue("{\"queue_running\":[[0,\"id\",{},{},[]]],\"queue_pending\":[[1],[2]]}", &st), 0);
    CHECK_EQ_INT(st.running, 1);
    CHECK_EQ_INT(st.waiting, 2);
    CHECK_EQ_INT(gg_comfyui_parse_queue("{\"queue_running\":[]}", &st), -EPROTO);
}

static void test_status_helpers(void)
{
    gg_engine_status_t st;
    gg_engine_status_init(&st);
    char name[32];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        gg_engine_status_add_model(&st, name, i % 2);
    }
    gg_engine_status_add_model(&st, "m0", 1); /* duplicate name: marks loaded, no second entry */
    CHECK_EQ_INT(st.n_models, 40);
    CHECK_EQ_INT(st.models[0].loaded, 1);
    CHECK_EQ_STR(st.models[39].name, "m39");
    gg_engine_status_free(&st);
    CHECK(gg_adapter_for(GG_ENGINE_UNKNOWN) == NULL);
    for (int k = GG_ENGINE_OLLAMA; k < GG_ENGINE_KIND_COUNT; k++) {
        CHECK(gg_adapter_for(k) != NULL && gg_adapter_for(k)->kind == (enum gg_engine_kind)k);
        CHECK_EQ_STR(gg_adapter_for(k)->name, gg_engine_kind_name(k));
    }
}

/* --- against enginesim ------------------------------------------------------------------------- */
static pid_t spawn_sim(const char *flavor, const char *models, char *url, size_t urllen)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        execl("build/enginesim", "enginesim", "--listen", "127.0.0.1:0", "--flavor", flavor, "--models", models, NULL);
        _exit(127);
    }
    close(pfd[1]);
    /* Read stderr until the "listening on http://..." line. */
    char buf[4096];
    size_t len = 0;
    url[0] = '\0';
    while (len < sizeof(buf) - 1) {
        ssize_t n = read(pfd[0], buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += n;
        buf[len] = '\0';
        char *p = strstr(buf, "listening on http://");
        if (p != NULL && strchr(p, '\n') != NULL) {
            p += strlen("listening on ");
            size_t l = strcspn(p, " \n");
            snprintf(url, urllen, "%.*s", (int)l, p);
            break;
        }
    }
    close(pfd[0]);
    if (url[0] == '\0') {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

static void test_enginesim(void)
{
    if (access("build/enginesim", X_OK) != 0) {
        fprintf(stderr, "control_adapters: build/enginesim not built; detection against it not run\n");
        return;
    }
    static const struct {
        const char *flavor;
        int kind;
        const char *models;
        const char *expect_model;
    } cases[] = {
        {"ollama", GG_ENGINE_OLLAMA, "llama3:8b,qwen2:7b", "qwen2:7b"},
        {"vllm", GG_ENGINE_VLLM, "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B"},
        {"sglang", GG_ENGINE_SGLANG, "qwen", "qwen"},
        {"llamacpp", GG_ENGINE_LLAMACPP, "tiny", "tiny"},
        {"lmstudio", GG_ENGINE_LMSTUDIO, "a,b", "b"},
        {"mlx", GG_ENGINE_MLX, "mlx-community/m", "mlx-community/m"},
        {"comfyui", GG_ENGINE_COMFYUI, "sd", "comfyui"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char url[128];
        pid_t pid = spawn_sim(cases[i].flavor, cases[i].models, url, sizeof(url));
        CHECK(pid > 0);
        if (pid <= 0)
            continue;
        int k = gg_adapter_detect(url, 2000);
        if (k != cases[i].kind)
            fprintf(stderr, "flavor %s detected as %d\n", cases[i].flavor, k);
        CHECK_EQ_INT(k, cases[i].kind);
        gg_engine_status_t st;
        gg_engine_status_init(&st);
        int r = gg_adapter_for(cases[i].kind)->poll(url, 2000, &st);
        if (r != 0)
            fprintf(stderr, "flavor %s poll: %d %s\n", cases[i].flavor, r, st.reason);
        CHECK_EQ_INT(r, 0);
        int found = 0;
        for (size_t j = 0; j < st.n_models; j++)
            found |= strcmp(st.models[j].name, cases[i].expect_model) == 0;
        CHECK(found);
        if (cases[i].kind == GG_ENGINE_VLLM || cases[i].kind == GG_ENGINE_SGLANG || cases[i].kind == GG_ENGINE_LLAMACPP ||
            cases[i].kind == GG_ENGINE_COMFYUI)
            CHECK_EQ_INT(st.has_load, 1);
        if (cases[i].kind == GG_ENGINE_LLAMACPP)
            CHECK_EQ_INT(st.capacity, 8);
        gg_engine_status_free(&st);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        /* Gone: detection reports the connect error. */
        CHECK_EQ_INT(gg_adapter_detect(url, 1000), -ECONNREFUSED);
    }
}

TEST_MAIN(test_ollama, test_prometheus, test_vllm_sglang, test_llamacpp, test_lmstudio_comfyui, test_status_helpers, test_enginesim)
