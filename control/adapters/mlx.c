/* MLX (mlx_lm.server) adapter: /health plus an OpenAI /v1/models. That probe matches many OpenAI-style
 * servers, so detection tries it last. Models listed are served and counted as loaded. */
#include "gridgate/adapter.h"
#include "gridgate/httpc.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int detect(const char *url, int timeout_ms)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_get(url, "/health", timeout_ms, &res);
    if (r < 0)
        return r;
    int yes = res.status == 200;
    gg_httpc_response_free(&res);
    if (!yes || gg_httpc_get(url, "/v1/models", timeout_ms, &res) < 0)
        return 0;
    json_t *v = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    yes = json_is_array(json_object_get(v, "data"));
    json_decref(v);
    gg_httpc_response_free(&res);
    return yes;
}

static int poll_engine(const char *url, int timeout_ms, gg_engine_status_t *st)
{
    return gg_adapter_poll_openai(url, timeout_ms, st, NULL);
}

const gg_adapter_t gg_adapter_mlx = {
    .name = "mlx", .kind = GG_ENGINE_MLX, .detect = detect, .poll = poll_engine, .default_capacity = 1};
