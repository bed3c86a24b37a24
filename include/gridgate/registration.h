/* Self-registration of backends by agents (`gridctl agent`): the endpoint on the main listener, the record of
 * every agent that beats, and the sweeper that marks silent backends down and removes them after a TTL.
 *
 * A registered backend is an ordinary registry backend (health probes it like any other); registration only
 * adds it, holds it down while its heartbeats are missing (gg_health_hold_hook) and removes it at the TTL.
 * With approve "manual" an agent's first beat only records it as pending until gg_registration_approve. */
#ifndef GG_REGISTRATION_H
#define GG_REGISTRATION_H
#include <h2o.h>
#include <jansson.h>

#include "gridgate/config.h"

#define GG_REGISTER_PATH "/gridgate/v1/register"

/** Keeps the registration settings and starts the sweeper (a no-op when no token is configured). 0 or -errno. */
int gg_registration_start(const gg_config_t *cfg);
void gg_registration_stop(void);
/** Main-listener handler of POST GG_REGISTER_PATH (one heartbeat); answers every request itself. */
void gg_registration_handle(h2o_req_t *req);
/** Admits a pending registration into the registry. 0, -ENOENT (no such pending agent), -EEXIST, -EINVAL. */
int gg_registration_approve(const char *name);
/** Every agent: [{"name","url","kind","state":"pending|active|missing","last_beat_ms_ago","beats","gpu","models",...}]. */
json_t *gg_registration_list_json(void);
/** The agent record of a registered backend (new reference), or NULL for a backend that was not registered. */
json_t *gg_registration_info(const char *backend_name);
#endif
