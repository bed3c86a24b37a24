/* libFuzzer target for control/admin_body.c: every input goes through each admin API body parser (backend add,
 * backend weight, tenant add, tenant update, tenant key add and remove, guard deny/allow/remove), the same functions the admin
 * handlers call. Checks: a failure names a field and says why; a success holds only values the handlers may apply. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gridgate/admin_body.h"
#include "gridgate/backend.h"

static void failed(int rc, const gg_body_err_t *e)
{
    if (rc != -EINVAL || e->field[0] == '\0' || e->msg[0] == '\0')
        abort();
}

static void limits_ok(const gg_admin_limits_t *l)
{
    if ((l->has & GG_LIM_WEIGHT) && (l->weight < 1 || l->weight > 10000))
        abort();
    if ((l->has & GG_LIM_PRIORITY) && l->priority > 9)
        abort();
    if ((l->has & GG_LIM_RPS) && !(l->requests_per_s >= 0 && l->requests_per_s <= 1e6))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    gg_body_err_t e;
    int rc;

    gg_admin_backend_add_t b;
    memset(&e, 0, sizeof(e));
    if ((rc = gg_admin_parse_backend_add(body, size, &b, &e)) == 0) {
        if (b.url == NULL || strncmp(b.url, "http://", 7) != 0 || b.weight < 1 || b.weight > 1000 || b.max_inflight > 100000 ||
            (b.name != NULL && (b.name[0] == '\0' || strlen(b.name) >= sizeof(gg_backends[0].name))))
            abort();
        gg_admin_backend_add_free(&b);
    } else
        failed(rc, &e);

    uint32_t w = 0;
    memset(&e, 0, sizeof(e));
    if ((rc = gg_admin_parse_weight(body, size, &w, &e)) == 0) {
        if (w < 1 || w > 1000)
            abort();
    } else
        failed(rc, &e);

    gg_admin_tenant_add_t t;
    memset(&e, 0, sizeof(e));
    if ((rc = gg_admin_parse_tenant_add(body, size, &t, &e)) == 0) {
        if (t.name == NULL || (t.n_keys > 0 && t.keys == NULL))
            abort();
        for (size_t i = 0; i < t.n_keys; i++)
            if (t.keys[i] == NULL || t.keys[i][0] == '\0' || (strncmp(t.keys[i], "sha256:", 7) == 0 && strlen(t.keys[i]) != 71))
                abort();
        limits_ok(&t.limits);
        gg_admin_tenant_add_free(&t);
    } else
        failed(rc, &e);

    gg_admin_limits_t l;
    memset(&e, 0, sizeof(e));
    if ((rc = gg_admin_parse_tenant_update(body, size, &l, &e)) == 0)
        limits_ok(&l);
    else
        failed(rc, &e);

    char key[64];
    for (int adding = 0; adding < 2; adding++) {
        memset(&e, 0, sizeof(e));
        if ((rc = gg_admin_parse_tenant_key(body, size, adding, key, sizeof(key), &e)) == 0) {
            if (strlen(key) >= sizeof(key) || (adding && key[0] == '\0'))
                abort();
        } else
            failed(rc, &e);
    }

    char prefix[128];
    uint32_t secs;
    for (int deny = 0; deny < 2; deny++) {
        memset(&e, 0, sizeof(e));
        if ((rc = gg_admin_parse_guard(body, size, deny, prefix, sizeof(prefix), &secs, &e)) == 0) {
            if (strlen(prefix) >= sizeof(prefix) || secs > 31536000 || (!deny && secs != 0))
                abort();
        } else
            failed(rc, &e);
    }
    return 0;
}
