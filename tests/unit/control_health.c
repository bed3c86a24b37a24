/* Tests control/health.c: every transition of the state machine on a virtual clock, then the probe threads
 * against real enginesim processes (detection, models, load, passive ejection, fault -> down -> up). */
#include "gridgate/adapter.h"
#include "gridgate/health.h"
#include "gridgate/httpc.h"
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const gg_health_params_t P = {.fail_threshold = 3, .recover_threshold = 2, .cooldown_ms = 1000, .max_cooldown_ms = 5000};

static gg_health_sm_t up_machine(void)
{
    gg_health_sm_t sm;
    gg_health_sm_init(&sm);
    const gg_health_params_t p1 = {.fail_threshold = 3, .recover_threshold = 1, .cooldown_ms = 1000, .max_cooldown_ms = 5000};
    gg_health_step(&sm, &p1, GG_HEV_PROBE_OK, 0);
    return sm;
}

static void test_new_backend(void)
{
    gg_health_sm_t sm;
    gg_health_sm_init(&sm);
    CHECK_EQ_INT(gg_health_published(&sm), GG_BACKEND_DOWN);
    /* its cooldown is already over: the first probe is the half_open trial */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_TICK, 0), GG_BACKEND_HALF_OPEN);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 1), GG_BACKEND_HALF_OPEN); /* recover_threshold 2 */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 2), GG_BACKEND_UP);
    /* a first probe that fails: down with a doubled cooldown (a failed trial) */
    gg_health_sm_init(&sm);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 100), GG_BACKEND_DOWN);
    CHECK_EQ_INT(sm.down_until, 2100);
}

static void test_up_to_down(void)
{
    /* fail_threshold probe failures */
    gg_health_sm_t sm = up_machine();
    CHECK_EQ_INT(sm.state, GG_BACKEND_UP);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 10), GG_BACKEND_UP);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 20), GG_BACKEND_UP);
    CHECK_EQ_INT(sm.fails, 2);
    /* a success in between resets the count */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 30), GG_BACKEND_UP);
    CHECK_EQ_INT(sm.fails, 0);
    gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 40);
    gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 50);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 60), GG_BACKEND_DOWN);
    CHECK_EQ_INT(sm.down_until, 1060);
    /* the first passive failure is enough */
    sm = up_machine();
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 500), GG_BACKEND_DOWN);
    CHECK_EQ_INT(sm.down_until, 1500);
    /* a passive success in up changes nothing */
    sm = up_machine();
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_OK, 1), GG_BACKEND_UP);
}

static void test_down_half_open_up(void)
{
    gg_health_sm_t sm = up_machine();
    gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 0); /* down until 1000 */
    /* during the cooldown nothing moves it: ticks, probes, requests */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_TICK, 999), GG_BACKEND_DOWN);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 999), GG_BACKEND_DOWN);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_OK, 999), GG_BACKEND_DOWN);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 999), GG_BACKEND_DOWN);
    CHECK_EQ_INT(sm.down_until, 1000); /* a failure while down does not extend it */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_TICK, 1000), GG_BACKEND_HALF_OPEN);
    /* recover_threshold successes: probe and real request both count */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 1001), GG_BACKEND_HALF_OPEN);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_OK, 1002), GG_BACKEND_UP);
    CHECK_EQ_INT(sm.trips, 0);
}

static void test_half_open_backoff(void)
{
    gg_health_sm_t sm = up_machine();
    gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 0);
    uint64_t now = 0;
    uint64_t expect[] = {2000, 4000, 5000, 5000}; /* doubled, capped at max_cooldown_ms */
    for (int i = 0; i < 4; i++) {
        now = sm.down_until;
        CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_TICK, now), GG_BACKEND_HALF_OPEN);
        CHECK_EQ_INT(gg_health_step(&sm, &P, i % 2 ? GG_HEV_PASSIVE_FAIL : GG_HEV_PROBE_FAIL, now), GG_BACKEND_DOWN);
        CHECK_EQ_INT(sm.down_until - now, expect[i]);
    }
    /* one good trial fails after a partial recovery: back down, longer */
    now = sm.down_until;
    gg_health_step(&sm, &P, GG_HEV_TICK, now);
    gg_health_step(&sm, &P, GG_HEV_PROBE_OK, now);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, now), GG_BACKEND_DOWN);
    /* full recovery resets the backoff */
    now = sm.down_until;
    gg_health_step(&sm, &P, GG_HEV_PROBE_OK, now); /* DOWN past cooldown: counts as the trial */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, now + 1), GG_BACKEND_UP);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, now + 2), GG_BACKEND_DOWN);
    CHECK_EQ_INT(sm.down_until - (now + 2), 1000);
}

static void test_loading(void)
{
    gg_health_sm_t sm = up_machine();
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_LOADING, 1), GG_BACKEND_LOADING);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_LOADING, 2), GG_BACKEND_LOADING);
    /* passive failures do not count while loading (the engine rejects by design) */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 3), GG_BACKEND_LOADING);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 4), GG_BACKEND_UP);
    /* loading -> down after fail_threshold failed probes */
    gg_health_step(&sm, &P, GG_HEV_PROBE_LOADING, 5);
    gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 6);
    gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 7);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_FAIL, 8), GG_BACKEND_DOWN);
    /* half_open -> loading */
    uint64_t t = sm.down_until;
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_LOADING, t), GG_BACKEND_LOADING);
    /* a real request completing means it loaded */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_OK, t + 1), GG_BACKEND_UP);
    /* down in cooldown ignores "loading" */
    gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, t + 2);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_LOADING, t + 3), GG_BACKEND_DOWN);
}

static void test_draining(void)
{
    gg_health_sm_t sm = up_machine();
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_DRAIN, 1), GG_BACKEND_DRAINING);
    /* health goes on underneath and the drain sticks */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 2), GG_BACKEND_DRAINING);
    CHECK_EQ_INT(sm.state, GG_BACKEND_DOWN);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_TICK, 2000), GG_BACKEND_DRAINING);
    CHECK_EQ_INT(sm.state, GG_BACKEND_HALF_OPEN);
    gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 2001);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_PROBE_OK, 2002), GG_BACKEND_DRAINING);
    CHECK_EQ_INT(sm.state, GG_BACKEND_UP);
    /* undrain shows the health state */
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_UNDRAIN, 2003), GG_BACKEND_UP);
    gg_health_step(&sm, &P, GG_HEV_DRAIN, 2004);
    gg_health_step(&sm, &P, GG_HEV_PASSIVE_FAIL, 2005);
    CHECK_EQ_INT(gg_health_step(&sm, &P, GG_HEV_UNDRAIN, 2006), GG_BACKEND_DOWN);
}

/* --- live, against enginesim ---------------------------------------------------------------------- */
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
            snprintf(url, urllen, "%.*s", (int)strcspn(p, " \n"), p);
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

static void set_fault(const char *url, const char *json)
{
    gg_httpc_response_t res = {0};
    int r = gg_httpc_request(url, "POST", "/_sim/fault", "Content-Type: application/json\r\n", json, strlen(json), 2000, &res);
    CHECK_EQ_INT(r, 0);
    if (r == 0)
        gg_httpc_response_free(&res);
}

/* Polls (bounded) until the backend reaches the state; the machine is noisy, so no timing is asserted. */
static int wait_state(gg_backend_t *b, uint32_t state, int max_ms)
{
    for (int i = 0; i < max_ms / 10; i++) {
        if (atomic_load(&b->state) == state)
            return 1;
        usleep(10000);
    }
    return atomic_load(&b->state) == state;
}

static void test_live(void)
{
    if (access("build/enginesim", X_OK) != 0) {
        fprintf(stderr, "control_health: build/enginesim not built; live tests not run\n");
        return;
    }
    char u1[128], u2[128];
    pid_t p1 = spawn_sim("vllm", "m-shared:latest,m-vllm", u1, sizeof(u1));
    pid_t p2 = spawn_sim("ollama", "m-shared,m-ollama", u2, sizeof(u2));
    CHECK(p1 > 0 && p2 > 0);
    if (p1 <= 0 || p2 <= 0)
        return;
    gg_backends_reset();
    gg_config_t cfg;
    gg_config_init(&cfg);
    char err[256], spec[200];
    snprintf(spec, sizeof(spec), "%s#name=v", u1);
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, spec, err, sizeof(err)), 0);
    snprintf(spec, sizeof(spec), "%s#name=o#max_inflight=3", u2);
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, spec, err, sizeof(err)), 0);
    CHECK_EQ_INT(gg_config_add_backend_url(&cfg, "http://127.0.0.1:1#name=dead#kind=vllm", err, sizeof(err)), 0);
    cfg.health.interval_ms = 60000; /* probes only when the test asks */
    cfg.health.fail_threshold = 2;
    cfg.health.cooldown_ms = 50;
    cfg.health.max_cooldown_ms = 50;
    CHECK_EQ_INT(gg_health_start(&cfg), 0);
    CHECK_EQ_INT(gg_health_probe_all(10000), 0);

    gg_backend_t *v = gg_backend_find("v"), *o = gg_backend_find("o"), *dead = gg_backend_find("dead");
    CHECK(v != NULL && o != NULL && dead != NULL);
    if (v == NULL || o == NULL || dead == NULL)
        goto out;
    CHECK_EQ_INT(v->state, GG_BACKEND_UP);
    CHECK_EQ_INT(v->kind, GG_ENGINE_VLLM);
    CHECK_EQ_INT(o->state, GG_BACKEND_UP);
    CHECK_EQ_INT(o->kind, GG_ENGINE_OLLAMA);
    /* down, or already half-open once the 50 ms cooldown passed (valgrind is that slow) */
    CHECK(dead->state == GG_BACKEND_DOWN || dead->state == GG_BACKEND_HALF_OPEN);
    CHECK_EQ_INT(v->capacity, 8);
    CHECK_EQ_INT(o->capacity, 3);
    const gg_model_table_t *t = gg_models_current();
    const gg_model_entry_t *e = gg_models_find(t, "m-shared");
    CHECK(e != NULL && gg_model_bit(e->served, gg_backend_index(v)) && gg_model_bit(e->served, gg_backend_index(o)));
    CHECK(gg_models_find(t, "m-vllm") != NULL && gg_models_find(t, "m-ollama:latest") != NULL);
    json_t *list = gg_models_list_json();
    CHECK_EQ_INT(json_array_size(list), 3);
    /* listed under the name without Ollama's implicit tag; the engine's own entry keeps it */
    json_t *mo = json_array_get(list, 0);
    CHECK_EQ_STR(json_string_value(json_object_get(mo, "name")), "m-ollama");
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(mo, "meta"), "name")), "m-ollama:latest");
    json_t *ms = json_array_get(list, 1);
    CHECK_EQ_STR(json_string_value(json_object_get(ms, "name")), "m-shared");
    CHECK_EQ_INT(json_array_size(json_object_get(ms, "served_by")), 2);
    CHECK(json_is_object(json_object_get(mo, "meta")));
    json_decref(list);

    /* passive failure: down at once, then after the cooldown the trial probe brings it back */
    gg_backend_report_failure(o);
    CHECK(wait_state(o, GG_BACKEND_UP, 5000));
    CHECK(atomic_load(&o->failures) == 1);

    /* engine answers 500 to everything: fail_threshold probes take it down */
    set_fault(u1, "{\"mode\":\"status\",\"status\":500}");
    CHECK_EQ_INT(gg_health_probe_all(5000), 0);
    CHECK_EQ_INT(v->state, GG_BACKEND_UP);
    CHECK_EQ_INT(v->consecutive_failures, 1);
    gg_health_probe_all(5000);
    CHECK(wait_state(v, GG_BACKEND_DOWN, 5000) || atomic_load(&v->state) == GG_BACKEND_HALF_OPEN);
    set_fault(u1, "{\"mode\":\"none\"}");
    for (int i = 0; i < 50 && atomic_load(&v->state) != GG_BACKEND_UP; i++) {
        gg_health_probe_all(2000);
        usleep(20000);
    }
    CHECK_EQ_INT(v->state, GG_BACKEND_UP);

    /* drain sticks through probes */
    CHECK_EQ_INT(gg_backend_drain("v", 1), 0);
    gg_health_probe_all(5000);
    CHECK_EQ_INT(v->state, GG_BACKEND_DRAINING);
    CHECK_EQ_INT(gg_backend_drain("v", 0), 0);
    CHECK_EQ_INT(v->state, GG_BACKEND_UP);

    /* the engine dies: passive report, down, and it stays down */
    kill(p2, SIGKILL);
    waitpid(p2, NULL, 0);
    p2 = -1;
    gg_backend_report_failure(o);
    CHECK(wait_state(o, GG_BACKEND_DOWN, 5000) || atomic_load(&o->state) == GG_BACKEND_HALF_OPEN);
    gg_health_probe_all(5000);
    CHECK(atomic_load(&o->state) != GG_BACKEND_UP);
    /* and its models leave the listing */
    list = gg_models_list_json();
    CHECK_EQ_INT(json_array_size(list), 2);
    json_decref(list);

    /* backends added at run time are picked up */
    CHECK(gg_backend_add("late", u1, GG_ENGINE_UNKNOWN, 1, 0) >= 0);
    gg_health_probe_all(5000);
    gg_backend_t *late = gg_backend_find("late");
    CHECK(late != NULL && late->state == GG_BACKEND_UP && late->kind == GG_ENGINE_VLLM);
out:
    gg_health_stop();
    gg_config_free(&cfg);
    gg_backends_reset();
    kill(p1, SIGTERM);
    waitpid(p1, NULL, 0);
    if (p2 > 0) {
        kill(p2, SIGTERM);
        waitpid(p2, NULL, 0);
    }
}

TEST_MAIN(test_new_backend, test_up_to_down, test_down_half_open_up, test_half_open_backoff, test_loading, test_draining, test_live)
