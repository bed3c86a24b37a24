/* The client-facing API surface: path dispatch, listings, /health and /metrics. */
#ifndef GG_API_H
#define GG_API_H

#include <h2o.h>

#include "gridgate/config.h"

/** Keeps `cfg` (aliases, require_models) and registers the API's metrics. */
void gg_api_init(const gg_config_t *cfg);
/** The one h2o handler of the main listener. */
int gg_api_on_req(h2o_handler_t *self, h2o_req_t *req);
#endif
