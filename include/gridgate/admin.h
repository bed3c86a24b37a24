/* The admin API: its own thread, evloop and h2o context (operator calls never compete with the data plane),
 * on a unix socket (mode 0600) or a TCP address (which requires the admin token). JSON over HTTP under
 * /admin/v1 (backends, models, tenants, stats, health, config, registrations) and the embedded status page
 * at / and /ui, which polls /admin/v1/status. */
#ifndef GG_ADMIN_H
#define GG_ADMIN_H
#include <h2o.h>

#include "gridgate/config.h"

/* Where the admin API listens when neither --admin nor the config names a place. */
#define GG_ADMIN_DEFAULT "unix:/run/gridgate/admin.sock"

/**
 * Binds cfg->admin_listen (GG_ADMIN_DEFAULT when NULL) and starts the admin thread. config_path (may be NULL) is
 * what `config reload` re-reads. An explicit address that cannot be bound is an error (-errno); the default one
 * only logs a warning (another gridgate may own it) and returns 0 without an admin API.
 */
int gg_admin_start(const gg_config_t *cfg, const char *config_path);
/**
 * Main-listener side of the status page when config status_page.main_listener is on: answers GET /ui (the page)
 * and GET /admin/v1/status (the JSON the admin thread renders once a second; workers only copy it). Returns 1
 * when it answered, 0 when the request is not for it (or the option is off).
 */
int gg_admin_public_status(h2o_req_t *req);
/** Stops the thread and removes the unix socket. */
void gg_admin_stop(void);
#endif
