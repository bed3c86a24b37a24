/* enginesim introspection: /health, /version, Prometheus /metrics for vLLM, SGLang and llama.cpp, llama.cpp's
 * /props and /slots, SGLang's /get_model_info and /get_server_info, LM Studio's /api/v0/models. Everything
 * reports the load model's true state (running, waiting, KV use, observed TTFTs). */
#include "sim.h"

#include <string.h>

static int any_loading(void)
{
    for (unsigned i = 0; i < G.nmodels; i++)
        if (G.models[i].state == M_LOADING)
            return 1;
    return 0;
}

static uint64_t kv_used(void)
{
    uint64_t used = 0;
    for (h2o_linklist_t *l = G.running.next; l != &G.running; l = l->next) {
        struct seq *s = H2O_STRUCT_FROM_MEMBER(struct seq, link, l);
        used += s->prompt_tokens + s->generated;
    }
    return used;
}

static double kv_ratio(void)
{
    double r = (double)kv_used() / (double)G.kv_tokens;
    return r > 1 ? 1 : r;
}

void info_health(h2o_req_t *req, int dialect, const struct fault *f)
{
    int loading = any_loading();
    switch (G.flavor) {
    case FL_LLAMACPP:
        if (loading)
            send_body(req, 503, "application/json; charset=utf-8",
                      H2O_STRLIT("{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}"));
        else
            send_body(req, 200, "application/json; charset=utf-8", H2O_STRLIT("{\"status\":\"ok\"}"));
        break;
    case FL_MLX:
        send_body(req, loading ? 503 : 200, "application/json", loading ? "{\"status\":\"loading\"}" : "{\"status\":\"ok\"}",
                  loading ? 20 : 15);
        break;
    default: /* vLLM and SGLang answer an empty 200 */
        send_body(req, loading ? 503 : 200, "application/json", "", 0);
    }
}

void info_version(h2o_req_t *req, int dialect, const struct fault *f)
{
    send_body(req, 200, "application/json", H2O_STRLIT("{\"version\":\"0.10.1.1\"}"));
}

static void metric(struct sbuf *b, const char *name, const char *type, const char *help, const char *labels, double v)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{%s} %.17g\n", name, help, name, type, name, labels, v);
}

static void ttft_histogram(struct sbuf *b, const char *name, const char *labels)
{
    sb_printf(b, "# HELP %s Histogram of time to first token in seconds.\n# TYPE %s histogram\n", name, name);
    uint64_t cum = 0;
    for (unsigned i = 0; i < TTFT_BUCKETS; i++) {
        cum += G.ttft_counts[i];
        if (i == TTFT_BUCKETS - 1)
            sb_printf(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
        else
            sb_printf(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, ttft_bounds[i], (unsigned long long)cum);
    }
    sb_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, labels, G.ttft_sum, name, labels, (unsigned long long)G.ttft_n);
}

void info_metrics(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    char labels[MODEL_NAME_MAX + 40];
    const char *model = G.nmodels ? G.models[0].name : "";
    switch (G.flavor) {
    case FL_VLLM:
        snprintf(labels, sizeof(labels), "engine=\"0\",model_name=\"%s\"", model);
        metric(&b, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", labels, G.nrunning);
        metric(&b, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", labels, G.nwaiting);
        metric(&b, "vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", labels, kv_ratio());
        metric(&b, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", labels, G.prompt_tokens_total);
        metric(&b, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", labels, G.gen_tokens_total);
        metric(&b, "vllm:request_success_total", "counter", "Count of successfully processed requests.", labels, G.completed);
        ttft_histogram(&b, "vllm:time_to_first_token_seconds", labels);
        break;
    case FL_SGLANG:
        snprintf(labels, sizeof(labels), "model_name=\"%s\"", model);
        metric(&b, "sglang:num_running_reqs", "gauge", "The number of running requests.", labels, G.nrunning);
        metric(&b, "sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue.", labels, G.nwaiting);
        metric(&b, "sglang:token_usage", "gauge", "The token usage.", labels, kv_ratio());
        metric(&b, "sglang:num_used_tokens", "gauge", "The number of used tokens.", labels, kv_used());
        metric(&b, "sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", labels, G.prompt_tokens_total);
        metric(&b, "sglang:generation_tokens_total", "counter", "Number of generation tokens processed.", labels,
               G.gen_tokens_total);
        ttft_histogram(&b, "sglang:time_to_first_token_seconds", labels);
        break;
    default:
        snprintf(labels, sizeof(labels), "model=\"%s\"", model);
        /* llama.cpp prints no labels; an empty label set keeps one printer */
        metric(&b, "llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.", "", G.prompt_tokens_total);
        metric(&b, "llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.", "", G.gen_tokens_total);
        metric(&b, "llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.", "", kv_ratio());
        metric(&b, "llamacpp:kv_cache_tokens", "gauge", "KV-cache tokens.", "", kv_used());
        metric(&b, "llamacpp:requests_processing", "gauge", "Number of requests processing.", "", G.nrunning);
        metric(&b, "llamacpp:requests_deferred", "gauge", "Number of requests deferred.", "", G.nwaiting);
        ttft_histogram(&b, "llamacpp:time_to_first_token_seconds", labels);
    }
    send_body(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    sb_free(&b);
}

void info_props(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    const char *model = G.nmodels ? G.models[0].name : "";
    sb_printf(&b,
              "{\"default_generation_settings\":{\"n_ctx\":%u,\"params\":{\"n_predict\":-1,\"temperature\":0.8,\"top_k\":40,"
              "\"top_p\":0.95}},\"total_slots\":%u,\"model_path\":\"/models/%s.gguf\",\"chat_template\":\"{{ messages }}\","
              "\"modalities\":{\"vision\":false,\"audio\":false},\"build_info\":\"b6000-enginesim\",\"is_loading\":%s}",
              G.kv_tokens / G.max_seqs, G.max_seqs, model, any_loading() ? "true" : "false");
    send_body(req, 200, "application/json; charset=utf-8", b.p, b.len);
    sb_free(&b);
}

void info_slots(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    sb_puts(&b, "[");
    for (unsigned i = 0; i < G.max_seqs; i++) {
        struct seq *s = G.slots[i];
        sb_printf(
            &b,
            "%s{\"id\":%u,\"id_task\":%lld,\"n_ctx\":%u,\"speculative\":false,\"is_processing\":%s,\"params\":{\"n_predict\":%d},"
            "\"next_token\":{\"has_next_token\":%s,\"has_new_line\":false,\"n_remain\":%d,\"n_decoded\":%u,\"stopping_word\":\"\"}",
            i ? "," : "", i, s ? (long long)s->id : -1LL, G.kv_tokens / G.max_seqs, s ? "true" : "false", s ? (int)s->target : -1,
            s ? "true" : "false", s ? (int)(s->target - s->generated) : -1, s ? s->generated : 0);
        if (s)
            sb_printf(&b, ",\"model\":\"%s\",\"state\":\"%s\"", s->model->name,
                      s->state == S_LOADING   ? "loading"
                      : s->state == S_PREFILL ? "prefill"
                                              : "decode");
        sb_puts(&b, "}");
    }
    sb_puts(&b, "]");
    send_body(req, 200, "application/json; charset=utf-8", b.p, b.len);
    sb_free(&b);
}

void info_model_info(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    const char *model = G.nmodels ? G.models[0].name : "";
    sb_printf(&b,
              "{\"model_path\":\"%s\",\"tokenizer_path\":\"%s\",\"is_generation\":true,\"preferred_sampling_params\":null,"
              "\"weight_version\":\"default\"}",
              model, model);
    send_json(req, 200, &b);
}

void info_server_info(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    const char *model = G.nmodels ? G.models[0].name : "";
    sb_printf(&b,
              "{\"model_path\":\"%s\",\"served_model_name\":\"%s\",\"tp_size\":1,\"dp_size\":1,\"max_running_requests\":%u,"
              "\"max_total_num_tokens\":%u,\"chunked_prefill_size\":8192,\"version\":\"0.4.9\",\"internal_states\":[{"
              "\"last_gen_throughput\":0.0,\"num_running_reqs\":%u,\"num_queue_reqs\":%u,\"token_usage\":%.6f}]}",
              model, model, G.max_seqs, G.kv_tokens, G.nrunning, G.nwaiting, kv_ratio());
    send_json(req, 200, &b);
}

void info_lms_models(h2o_req_t *req, int dialect, const struct fault *f)
{
    struct sbuf b = {0};
    sb_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (unsigned i = 0; i < G.nmodels; i++) {
        struct model *m = &G.models[i];
        sb_printf(&b,
                  "%s{\"id\":\"%s\",\"object\":\"model\",\"type\":\"llm\",\"publisher\":\"enginesim\",\"arch\":\"llama\","
                  "\"compatibility_type\":\"gguf\",\"quantization\":\"Q4_K_M\",\"state\":\"%s\",\"max_context_length\":%u}",
                  i ? "," : "", m->name, m->state == M_LOADED ? "loaded" : "not-loaded", G.kv_tokens);
    }
    sb_puts(&b, "]}");
    send_json(req, 200, &b);
}
