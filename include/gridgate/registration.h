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

/* One heartbeat body as parsed (the agent's claims, checked for shape only). models and gpu are owned. */
typedef struct {
    char name[64], url[256], host[128]; /* name: the body's, or HOST:PORT of the url */
    int kind;                           /* enum gg_engine_kind */
    json_t *models;                     /* [{"name", "loaded"}], normalized */
    json_t *gpu;                        /* an object, or NULL */
} gg_registration_beat_t;

/**
 * Parses a heartbeat body {url, name?, kind?, agent?, models?, gpu?}: a pure function (no agent table, no
 * registry), the one the endpoint and tests/fuzz/registration.c call. 0, -EBADMSG (not a JSON object) or -EINVAL
 * (a field; err starts with its name); err gets the message for the 400.
 */
int gg_registration_parse(const char *body, size_t len, gg_registration_beat_t *out, char *err, size_t errlen);
void gg_registration_beat_free(gg_registration_beat_t *b);
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
