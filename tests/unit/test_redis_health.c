/*
 * test_redis_health.c - why the Redis store fails (corral_store_status) and the state callback
 * (corral_options.on_store_state), issue 12: a dead port, a wrong password, a database that
 * does not exist, a stopped server, a full one and a replica each give their own reason, and the
 * callback hears once that a server went down and once that it came back, however many calls
 * failed in between.
 *
 * Each test starts its own redis-server (redis_server.c), configured for the failure it needs,
 * and stops it. Nothing sleeps: a stopped server (SIGSTOP) fails calls by the command deadline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral/corral.h"
#include "redis_server.h"

/* A server that requires a password. Set after the start: the fixture's readiness PING sends
 * none. */
static int setup_password_server(void **state) {
    if (redis_fx_setup(state) != 0) return -1;
    redis_server_ok(*state, "CONFIG SET requirepass right-pw");
    return 0;
}

static int setup_full_server(void **state) {
    static const char *const full[] = { "--maxmemory", "4mb", "--maxmemory-policy", "noeviction",
                                        NULL };
    return redis_fx_setup_args(state, full);
}

/* What the state callback heard, in order. */
typedef struct heard {
    pthread_mutex_t m;
    int n;
    bool is_down[16];
    corral_store_reason reason[16];
    char server[16][272];
} heard;

static void on_state(void *ctx, const corral_server_status *st) {
    heard *h = ctx;
    assert_int_equal(pthread_mutex_lock(&h->m), 0);
    if (h->n < 16) {
        h->is_down[h->n] = st->is_down;
        h->reason[h->n] = st->reason;
        snprintf(h->server[h->n], sizeof h->server[0], "%s", st->server);
    }
    h->n++;
    assert_int_equal(pthread_mutex_unlock(&h->m), 0);
}

static int heard_count(heard *h) {
    assert_int_equal(pthread_mutex_lock(&h->m), 0);
    int n = h->n;
    assert_int_equal(pthread_mutex_unlock(&h->m), 0);
    return n;
}

/* Opens a handle on `s` (`query` appended to the URL; `userinfo` before the host, or ""), told
 * of state changes into `h` when not NULL. Short deadlines: a failing call returns quickly. */
static corral *open_on(const redis_server *s, const char *userinfo, const char *query, heard *h) {
    char url[256], buf[256];
    int n = snprintf(url, sizeof url, "redis://%s%s?connect_timeout=0.5&command_timeout=200ms%s",
                     userinfo, s->hosts, query);
    assert_true(n > 0 && n < (int)sizeof url);
    corral_options o;
    corral_options_init(&o);
    corral_error err = { 0 };
    if (corral_options_parse_url(&o, url, buf, sizeof buf, &err) != CORRAL_OK)
        fail_msg("%s: %s", url, err.msg);
    o.on_store_state = h ? on_state : NULL;
    o.store_state_ctx = h;
    corral *c = NULL;
    if (corral_open_opts(&c, &o, &err) != CORRAL_OK) fail_msg("open %s: %s", url, err.msg);
    return c;
}

static corral_server_status status_of(corral *c) {
    corral_server_status st;
    assert_int_equal(corral_store_status(c, 0, &st), CORRAL_OK);
    return st;
}

/* A write fails with `want_rc` and the server reads as down for `reason`, its text holding
 * `text`. */
static void expect_down(corral *c, int want_rc, corral_store_reason reason, const char *text) {
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), want_rc);
    corral_server_status st = status_of(c);
    if (!st.is_down || st.reason != reason || !strstr(st.msg, text))
        fail_msg("want down, %s, '%s'; got is_down %d, %s, '%s'", corral_store_reason_name(reason),
                 text, st.is_down, corral_store_reason_name(st.reason), st.msg);
    assert_true(st.failures >= 1);
}

/* ---- One reason per failure ---- */

static void test_health_dead_port_is_refused(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "", NULL);
    corral_server_status st = status_of(c);
    assert_false(st.is_down); /* opening does no I/O: nothing known yet */
    assert_int_equal(st.reason, CORRAL_REASON_NONE);
    assert_string_equal(st.server, s->hosts);
    redis_server_signal(s, SIGKILL);
    expect_down(c, CORRAL_ESTORE, CORRAL_REASON_REFUSED, "connection refused");
    corral_value *v = NULL; /* a read misses, and the reason stays */
    assert_int_equal(corral_get(c, "k", 1, NULL, &v), CORRAL_MISS);
    assert_int_equal(status_of(c).reason, CORRAL_REASON_REFUSED);
    corral_close(c);
}

static void test_health_wrong_password_is_auth(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, ":wrong-pw@", "", NULL);
    expect_down(c, CORRAL_ESTORE, CORRAL_REASON_AUTH, "WRONGPASS");
    assert_null(strstr(status_of(c).msg, "wrong-pw")); /* never the credential */
    corral_close(c);
}

static void test_health_missing_password_is_auth(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "", NULL);
    expect_down(c, CORRAL_ESTORE, CORRAL_REASON_AUTH, "NOAUTH");
    corral_close(c);
}

static void test_health_database_that_does_not_exist_is_bad_db(void **state) {
    redis_server *s = *state; /* 16 databases, the default */
    corral *c = open_on(s, "", "&db=99", NULL);
    expect_down(c, CORRAL_ESTORE, CORRAL_REASON_BAD_DB, "DB index is out of range");
    corral_close(c);
}

static void test_health_stopped_server_is_a_timeout(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "", NULL);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_signal(s, SIGSTOP);
    expect_down(c, CORRAL_ETIMEDOUT, CORRAL_REASON_TIMEOUT, "command timeout (200 ms)");
    redis_server_signal(s, SIGCONT);
    corral_close(c);
}

/* OOM refuses writes and serves reads: a read does not end the state, an accepted write does. */
static void test_health_full_server_is_oom_until_a_write_is_accepted(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "", NULL);
    assert_int_equal(corral_set(c, "small", 5, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    static char big[256 * 1024];
    memset(big, 'x', sizeof big);
    int rc = CORRAL_OK;
    for (int i = 0; i < 64 && rc == CORRAL_OK; i++) {
        char key[16];
        int n = snprintf(key, sizeof key, "big%d", i);
        rc = corral_set(c, key, (size_t)n, big, sizeof big, CORRAL_TTL_FOREVER, NULL);
    }
    assert_int_equal(rc, CORRAL_ENOMEM);
    corral_server_status st = status_of(c);
    assert_true(st.is_down);
    assert_int_equal(st.reason, CORRAL_REASON_OOM);
    assert_non_null(strstr(st.msg, "OOM"));
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, "small", 5, NULL, &v), CORRAL_OK);
    corral_value_unref(v);
    assert_true(status_of(c).is_down);
    /* A delete and a touch are accepted at maxmemory (they do not grow it): not a sign that the
     * server takes writes again. */
    assert_int_equal(corral_delete(c, "nokey", 5, NULL), CORRAL_MISS);
    assert_int_equal(corral_touch(c, "small", 5, 60000, NULL), CORRAL_OK);
    assert_true(status_of(c).is_down);
    redis_server_ok(s, "CONFIG SET maxmemory 0");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_false(status_of(c).is_down);
    assert_int_equal(status_of(c).reason, CORRAL_REASON_OOM); /* the latest failure's, still */
    corral_close(c);
}

static void test_health_replica_is_readonly(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "", NULL);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    /* A replica of a primary that is not there: it keeps its data and refuses writes. */
    redis_server_ok(s, "REPLICAOF 127.0.0.1 1");
    expect_down(c, CORRAL_ESTORE, CORRAL_REASON_READONLY, "READONLY");
    redis_server_ok(s, "REPLICAOF NO ONE");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    assert_false(status_of(c).is_down);
    corral_close(c);
}

/* A key holding what corral did not write fails one command, not the server. */
static void test_health_error_reply_to_one_command_is_not_a_down_server(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "&key_prefix=h", NULL);
    redis_server_ok(s, "RPUSH h:1:list x");
    assert_int_equal(corral_incr(c, "list", 4, 1, NULL, NULL), CORRAL_ENOTINT);
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, "list", 4, NULL, &v), CORRAL_MISS); /* WRONGTYPE */
    corral_server_status st = status_of(c);
    assert_false(st.is_down);
    assert_int_equal(st.reason, CORRAL_REASON_REPLY);
    assert_non_null(strstr(st.msg, "WRONGTYPE"));
    corral_close(c);
}

static void test_health_status_of_servers_that_are_not_there(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "", NULL);
    corral_server_status st;
    assert_int_equal(corral_store_status(c, 1, &st), CORRAL_MISS);
    assert_int_equal(st.server[0], '\0');
    assert_int_equal(corral_store_status(NULL, 0, &st), CORRAL_EINVAL);
    assert_int_equal(corral_store_status(c, 0, NULL), CORRAL_EINVAL);
    corral_close(c);
    assert_int_equal(corral_open(&c, "mem://", NULL), CORRAL_OK);
    assert_int_equal(corral_store_status(c, 0, &st), CORRAL_ENOTSUP);
    corral_close(c);
    assert_string_equal(corral_store_reason_name(CORRAL_REASON_BAD_DB), "bad_db");
    assert_string_equal(corral_store_reason_name((corral_store_reason)99), "unknown");
}

/* ---- The state callback ---- */

/* Many failing calls, one "down"; many answered calls after the restart, one "up". */
static void test_health_callback_hears_each_change_of_state_once(void **state) {
    redis_server *s = *state;
    heard h = { .m = PTHREAD_MUTEX_INITIALIZER };
    corral *c = open_on(s, "", "", &h);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    assert_int_equal(heard_count(&h), 0); /* up from the start: nothing to tell */
    redis_server_signal(s, SIGKILL);
    for (int i = 0; i < 20; i++) {
        assert_true(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL) < 0);
        corral_value *v = NULL;
        assert_int_equal(corral_get(c, "k", 1, NULL, &v), CORRAL_MISS);
    }
    assert_int_equal(heard_count(&h), 1);
    assert_true(h.is_down[0]);
    /* The idle connection's failure came first (closed, reset), the refused connects after. */
    assert_true(h.reason[0] == CORRAL_REASON_IO || h.reason[0] == CORRAL_REASON_REFUSED);
    assert_int_equal(status_of(c).reason, CORRAL_REASON_REFUSED);
    assert_string_equal(h.server[0], s->hosts);

    assert_int_equal(redis_server_restart(s), 0);
    int rc; /* until the backoff lets a call through */
    while ((rc = corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL)) != CORRAL_OK)
        assert_int_equal(rc, CORRAL_ESTORE);
    for (int i = 0; i < 20; i++)
        assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    assert_int_equal(heard_count(&h), 2);
    assert_false(h.is_down[1]);
    corral_close(c);
}

/* ---- The breaker: a stopped server stalls one call at a time ---- */

typedef struct reader {
    corral *c;
    pthread_barrier_t *go;
    int rc;
} reader;

static void *read_once(void *arg) {
    reader *r = arg;
    int b = pthread_barrier_wait(r->go);
    assert_true(b == 0 || b == PTHREAD_BARRIER_SERIAL_THREAD);
    corral_value *v = NULL;
    r->rc = corral_get(r->c, "k", 1, NULL, &v);
    corral_value_unref(v);
    return NULL;
}

/* After the first timeout of a stopped server, four callers at once: one probes it (and times
 * out), the other three fail fast. Before the breaker all four connected (the kernel accepts for
 * a stopped process) and each waited its command timeout. */
static void test_health_stopped_server_is_probed_by_one_call_at_a_time(void **state) {
    redis_server *s = *state;
    corral *c = open_on(s, "", "&pool=4", NULL);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    redis_server_signal(s, SIGSTOP);
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, "k", 1, NULL, &v), CORRAL_MISS); /* the first timeout */
    unsigned long long timeouts = redis_fx_counter(c, "timeouts_total");
    unsigned long long fast = redis_fx_counter(c, "backoff_rejections_total");

    enum { N = 4 };
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, N), 0);
    reader r[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        r[i] = (reader){ .c = c, .go = &go };
        assert_int_equal(pthread_create(&t[i], NULL, read_once, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(r[i].rc, CORRAL_MISS);
    }
    assert_int_equal(pthread_barrier_destroy(&go), 0);
    assert_true(redis_fx_counter(c, "timeouts_total") - timeouts <= 1);
    assert_true(redis_fx_counter(c, "backoff_rejections_total") - fast >= N - 1);
    /* A write fails as fast, with the reason of the last real failure. */
    int rc = corral_set(c, "k", 1, "v", 1, CORRAL_TTL_FOREVER, NULL);
    assert_true(rc == CORRAL_ESTORE || rc == CORRAL_ETIMEDOUT);
    assert_int_equal(status_of(c).reason, CORRAL_REASON_TIMEOUT);

    redis_server_signal(s, SIGCONT); /* the next probe closes the breaker */
    uint64_t deadline = redis_fx_now_ns() + 15000000000ull;
    while ((rc = corral_set(c, "k", 1, "v2", 2, CORRAL_TTL_FOREVER, NULL)) != CORRAL_OK) {
        assert_true(rc == CORRAL_ESTORE || rc == CORRAL_ETIMEDOUT);
        if (redis_fx_now_ns() > deadline) fail_msg("the handle never came back");
    }
    assert_false(status_of(c).is_down);
    corral_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_dead_port_is_refused, redis_fx_setup,
                                        redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_wrong_password_is_auth, setup_password_server,
                                        redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_missing_password_is_auth, setup_password_server,
                                        redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_database_that_does_not_exist_is_bad_db,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_stopped_server_is_a_timeout, redis_fx_setup,
                                        redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_full_server_is_oom_until_a_write_is_accepted,
                                        setup_full_server, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_replica_is_readonly, redis_fx_setup,
                                        redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_error_reply_to_one_command_is_not_a_down_server,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_status_of_servers_that_are_not_there,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_callback_hears_each_change_of_state_once,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_health_stopped_server_is_probed_by_one_call_at_a_time,
                                        redis_fx_setup, redis_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
