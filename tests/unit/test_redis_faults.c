/*
 * test_redis_faults.c - the Redis store when Redis fails: killed, restarted, asleep (DEBUG
 * SLEEP), paused (CLIENT PAUSE), full (maxmemory), or its pool exhausted. Every failure must be a
 * miss (reads) or an error code (writes), returned promptly, never a crash or a hang, and the
 * handle must recover once Redis is back.
 *
 * Each test starts its own redis-server (redis_server.c) and stops it. "Promptly" is asserted as
 * "the call returned": never a duration. Waiting for recovery polls with a deadline; nothing
 * sleeps as synchronisation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral/corral.h"
#include "store/redis_pool.h"
#include "redis_server.h"

#define RECOVERY_DEADLINE_NS (15ull * 1000000000ull)

static int setup_full_server(void **state) {
    static const char *const full[] = { "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru",
                                        NULL };
    return redis_fx_setup_args(state, full);
}

/* Opens a handle on `s` with short deadlines: 100 ms per command, as the fault tests want. */
static corral *open_fast(const redis_server *s, const char *extra) {
    return redis_fx_open(s, "?connect_timeout=0.5&command_timeout=100ms%s", extra);
}

/* A pool of `size` connections to `s` (a 1 s connect deadline). */
static corral__redis_pool *open_pool(const redis_server *s, int64_t command_timeout_ms,
                                     unsigned size) {
    corral__redis_addr addr = { .port = s->port };
    strcpy(addr.name, "127.0.0.1");
    corral__redis_pool_config cfg = { .addrs = &addr,
                                      .n_addrs = 1,
                                      .connect_timeout_ms = 1000,
                                      .command_timeout_ms = command_timeout_ms,
                                      .pool = size };
    corral__allocator a; /* the pool keeps a copy, and copies the addresses */
    corral__allocator_init(&a, NULL);
    corral__redis_pool *p = NULL;
    assert_int_equal(corral__redis_pool_new(&p, &cfg, &a), CORRAL_OK);
    return p;
}

/* Polls `set` until the handle writes again, or fails the test at the deadline. */
static void wait_recovered(corral *c) {
    uint64_t deadline = redis_fx_now_ns() + RECOVERY_DEADLINE_NS;
    int rc;
    while ((rc = corral_set(c, "probe", 5, "1", 1, CORRAL_TTL_DEFAULT, NULL)) != CORRAL_OK) {
        assert_true(rc == CORRAL_ESTORE || rc == CORRAL_ETIMEDOUT);
        if (redis_fx_now_ns() > deadline) fail_msg("the handle did not recover: rc %d", rc);
    }
}

static void expect_cached(corral *c, const char *key, const char *want) {
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, key, strlen(key), NULL, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), want);
    corral_value_unref(v);
}

/* ---- A dead server ---- */

static void test_faults_dead_server_turns_reads_into_misses_and_writes_into_errors(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_signal(s, SIGKILL);

    corral_value *v = (corral_value *)&c;
    assert_int_equal(corral_get(c, "k", 1, NULL, &v), CORRAL_MISS);
    assert_null(v);
    char buf[8];
    size_t len = 9;
    assert_int_equal(corral_get_into(c, "k", 1, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    assert_int_equal(len, 0);
    assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
    corral_buf keys[2] = { { "k", 1 }, { "j", 1 } }, vals[2] = { { "1", 1 }, { "2", 1 } };
    corral_value *out[2];
    size_t found = 9;
    assert_int_equal(corral_get_many(c, keys, 2, NULL, out, &found), CORRAL_OK);
    assert_int_equal(found, 0);

    assert_int_equal(corral_set(c, "k", 1, "w", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    assert_int_equal(corral_add(c, "k", 1, "w", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    assert_int_equal(corral_incr(c, "k", 1, 1, NULL, NULL), CORRAL_ESTORE);
    assert_int_equal(corral_touch(c, "k", 1, 1000, NULL), CORRAL_ESTORE);
    assert_int_equal(corral_delete(c, "k", 1, NULL), CORRAL_ESTORE);
    assert_int_equal(corral_set_many(c, keys, vals, 2, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    size_t deleted = 9;
    assert_int_equal(corral_delete_many(c, keys, 2, NULL, &deleted), CORRAL_ESTORE);
    assert_int_equal(deleted, 0);
    assert_int_equal(corral_clear(c), CORRAL_ESTORE);
    assert_int_equal(corral_clear_prefix(c), CORRAL_ESTORE);

    assert_int_equal(redis_fx_counter(c, "failed_reads_total"), 4);
    assert_int_equal(redis_fx_counter(c, "failed_writes_total"), 9);
    assert_int_equal(redis_fx_counter(c, "errors_total"), 13);
    corral_close(c);
}

static void test_faults_handle_recovers_after_a_restart(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    assert_int_equal(corral_set(c, "before", 6, "1", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_signal(s, SIGKILL);
    assert_int_equal(corral_has(c, "before", 6, NULL), CORRAL_MISS);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    assert_int_equal(redis_server_restart(s), 0);
    wait_recovered(c);
    assert_int_equal(corral_set(c, "after", 5, "2", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    expect_cached(c, "after", "2");
    assert_int_equal(corral_has(c, "before", 6, NULL), CORRAL_MISS); /* the restart lost it */
    assert_true(redis_fx_counter(c, "reconnects_total") >= 1);
    assert_int_equal(redis_fx_counter(c, "connections"), 1);
    corral_close(c);
}

static void test_faults_backoff_fails_fast_without_touching_the_network(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_signal(s, SIGKILL);
    for (int i = 0; i < 50; i++)
        assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
    /* Connection attempts back off exponentially: most calls never reached the network. */
    assert_true(redis_fx_counter(c, "backoff_rejections_total") > 0);
    assert_true(redis_fx_counter(c, "connect_failures_total") < 25);
    assert_int_equal(redis_fx_counter(c, "failed_reads_total"), 50);
    corral_close(c);
}

/* After a restart every pooled connection is stale; only the first one used costs a failure. */
static void test_faults_stale_pool_connections_cost_one_failure(void **state) {
    redis_server *s = *state;
    corral__redis_pool *p = open_pool(s, 2000, 4);
    const char *ping[1] = { "PING" };
    size_t ping_len[1] = { 4 };
    corral__redis_call calls[4];
    for (int i = 0; i < 4; i++) /* all four slots connected */
        assert_int_equal(corral__redis_begin(p, CORRAL__REDIS_WRITE, &calls[i]), CORRAL_OK);
    for (int i = 3; i >= 0; i--)
        corral__redis_end(&calls[i]);
    assert_int_equal(atomic_load(&corral__redis_pool_counters(p)->open), 4);
    assert_int_equal(redis_server_restart(s), 0);
    int failed = 0;
    for (int i = 0; i < 8; i++) {
        corral__redis_call c;
        assert_int_equal(corral__redis_begin(p, CORRAL__REDIS_WRITE, &c), CORRAL_OK);
        redisReply *r = corral__redis_command(&c, 1, ping, ping_len);
        if (!r)
            failed += corral__redis_failed(&c) == CORRAL_ESTORE;
        else
            freeReplyObject(r);
        corral__redis_end(&c);
    }
    assert_int_equal(failed, 1);
    assert_int_equal(atomic_load(&corral__redis_pool_counters(p)->errors), 1);
    corral__redis_pool_free(p);
}

/* ---- A server that does not answer ---- */

/* Sends `cmd` on a connection of its own without waiting for the reply; returns the connection,
 * whose reply the caller reads later. */
static redisContext *send_only(const redis_server *s, const char *cmd) {
    struct timeval tv = { 5, 0 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    assert_non_null(ctx);
    assert_int_equal(ctx->err, 0);
    assert_int_equal(redisSetTimeout(ctx, tv), REDIS_OK);
    assert_int_equal(redisAppendCommand(ctx, cmd), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(ctx, &done), REDIS_OK);
    return ctx;
}

/* Polls until a PING on a new connection goes unanswered for 50 ms: the server is asleep. */
static void wait_unresponsive(const redis_server *s) {
    uint64_t deadline = redis_fx_now_ns() + RECOVERY_DEADLINE_NS;
    for (;;) {
        struct timeval tv = { 0, 50000 };
        redisContext *ctx = redisConnectWithTimeout("127.0.0.1", s->port, tv);
        assert_non_null(ctx);
        redisReply *r = NULL;
        if (!ctx->err && redisSetTimeout(ctx, tv) == REDIS_OK) r = redisCommand(ctx, "PING");
        bool answered = r != NULL;
        if (r) freeReplyObject(r);
        redisFree(ctx);
        if (!answered) return;
        if (redis_fx_now_ns() > deadline) fail_msg("the server kept answering");
    }
}

static void test_faults_debug_sleep_times_out_instead_of_hanging(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redisContext *sleeper = send_only(s, "DEBUG SLEEP 2");
    wait_unresponsive(s);
    assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
    int rc = corral_set(c, "k", 1, "w", 1, CORRAL_TTL_DEFAULT, NULL);
    assert_true(rc == CORRAL_ETIMEDOUT || rc == CORRAL_ESTORE);
    assert_true(redis_fx_counter(c, "timeouts_total") >= 1);
    void *reply = NULL;
    assert_int_equal(redisGetReply(sleeper, &reply), REDIS_OK); /* the sleep is over */
    freeReplyObject(reply);
    redisFree(sleeper);
    wait_recovered(c);
    expect_cached(c, "k", rc == CORRAL_ETIMEDOUT ? "w" : "v"); /* a timed-out SET was applied */
    corral_close(c);
}

static void test_faults_client_pause_times_out_instead_of_hanging(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_ok(s, "CLIENT PAUSE 2000");
    assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
    int rc = corral_set(c, "k", 1, "w", 1, CORRAL_TTL_DEFAULT, NULL);
    assert_true(rc == CORRAL_ETIMEDOUT || rc == CORRAL_ESTORE);
    int64_t out = 0;
    rc = corral_incr(c, "n", 1, 1, NULL, &out);
    assert_true(rc == CORRAL_ETIMEDOUT || rc == CORRAL_ESTORE);
    assert_true(redis_fx_counter(c, "timeouts_total") >= 1);
    wait_recovered(c); /* the pause ends by itself */
    assert_int_equal(corral_set(c, "k", 1, "x", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    expect_cached(c, "k", "x");
    corral_close(c);
}

/* A stopped process: the kernel still completes handshakes, nothing ever answers. */
static void test_faults_stopped_server_never_hangs_a_call(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_signal(s, SIGSTOP);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
        int rc = corral_set(c, "k", 1, "w", 1, CORRAL_TTL_DEFAULT, NULL);
        assert_true(rc == CORRAL_ETIMEDOUT || rc == CORRAL_ESTORE);
    }
    redis_server_signal(s, SIGCONT);
    wait_recovered(c);
    corral_close(c);
}

/* get_or_set keeps working on a dead Redis: the producer runs, nothing is cached. */
static void test_faults_get_or_set_runs_the_producer_when_redis_is_dead(void **state) {
    redis_server *s = *state;
    corral *c = open_fast(s, "");
    redis_server_signal(s, SIGKILL);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.wait_timeout_ms = 100;
    int runs = 0;
    for (int i = 0; i < 3; i++) {
        corral_value *v = NULL;
        assert_int_equal(corral_get_or_set(c, "page", 4, redis_fx_produce, &runs, &o, &v),
                         CORRAL_OK);
        assert_string_equal(corral_value_data(v), "made");
        corral_value_unref(v);
    }
    assert_int_equal(runs, 3); /* nothing could be cached */
    corral_close(c);
}

/* ---- The pool ---- */

static void test_faults_pool_wait_is_bounded_by_the_command_timeout(void **state) {
    redis_server *s = *state;
    corral__redis_pool *p = open_pool(s, 100, 1);
    corral__redis_call held, waiting;
    assert_int_equal(corral__redis_begin(p, CORRAL__REDIS_WRITE, &held), CORRAL_OK);
    /* The only connection is taken: a write waits the command timeout, then gives up. */
    assert_int_equal(corral__redis_begin(p, CORRAL__REDIS_WRITE, &waiting), CORRAL_ETIMEDOUT);
    assert_int_equal(corral__redis_begin(p, CORRAL__REDIS_READ, &waiting), CORRAL_MISS);
    assert_int_equal(atomic_load(&corral__redis_pool_counters(p)->pool_timeouts), 2);
    corral__redis_end(&held);
    assert_int_equal(corral__redis_begin(p, CORRAL__REDIS_WRITE, &waiting), CORRAL_OK);
    corral__redis_end(&waiting);
    corral__redis_pool_free(p);
}

/* ---- SIGPIPE ---- */

static void test_faults_writes_to_a_dead_server_never_raise_sigpipe(void **state) {
    redis_server *s = *state;
    void (*old)(int) = signal(SIGPIPE, SIG_DFL); /* what a program that never thought of it has */
    assert_true(old != SIG_ERR);
    corral *c = open_fast(s, "&pool=1");
    static char big[64 * 1024];
    memset(big, 'x', sizeof big);
    corral_buf keys[16], vals[16];
    char names[16][8];
    for (int i = 0; i < 16; i++) {
        snprintf(names[i], sizeof names[i], "big%d", i);
        keys[i] = (corral_buf){ names[i], strlen(names[i]) };
        vals[i] = (corral_buf){ big, sizeof big };
    }
    assert_int_equal(corral_set_many(c, keys, vals, 16, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redis_server_signal(s, SIGKILL);
    /* A megabyte into a socket the peer has closed: the writes after its RST raise SIGPIPE. */
    assert_int_equal(corral_set_many(c, keys, vals, 16, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    sigset_t pending, mask;
    assert_int_equal(sigpending(&pending), 0);
    assert_int_equal(sigismember(&pending, SIGPIPE), 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
    assert_int_equal(sigismember(&mask, SIGPIPE), 0); /* the mask is restored */
    corral_close(c);
    assert_true(signal(SIGPIPE, old) != SIG_ERR);
}

/* ---- A full server ---- */

static void test_faults_full_server_evicts_or_refuses_writes_cleanly(void **state) {
    redis_server *s = *state;
    corral *c = redis_fx_open(s, "?command_timeout=5");
    static char val[4096];
    char key[32];
    int ok = 0;
    for (int i = 0; i < 3000; i++) { /* 12 MB into 4 MB with allkeys-lru */
        memset(val, 'a' + i % 26, sizeof val);
        int n = snprintf(key, sizeof key, "fill:%d", i);
        int rc = corral_set(c, key, (size_t)n, val, sizeof val, CORRAL_TTL_DEFAULT, NULL);
        assert_true(rc == CORRAL_OK || rc == CORRAL_ENOMEM);
        ok += rc == CORRAL_OK;
    }
    assert_true(ok > 0);
    int hits = 0;
    for (int i = 0; i < 3000; i++) { /* an evicted key misses; a kept one is whole */
        int n = snprintf(key, sizeof key, "fill:%d", i);
        corral_value *v = NULL;
        int rc = corral_get(c, key, (size_t)n, NULL, &v);
        assert_true(rc == CORRAL_OK || rc == CORRAL_MISS);
        if (rc != CORRAL_OK) continue;
        hits++;
        assert_int_equal(corral_value_len(v), sizeof val);
        const char *p = corral_value_data(v);
        for (size_t j = 0; j < sizeof val; j++)
            assert_int_equal(p[j], 'a' + i % 26);
        corral_value_unref(v);
    }
    assert_true(hits > 0 && hits < 3000);
    /* A deleted key never comes back, however full the server. */
    assert_int_equal(corral_set(c, "gone", 4, "old", 3, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_delete(c, "gone", 4, NULL), CORRAL_OK);
    assert_int_equal(corral_has(c, "gone", 4, NULL), CORRAL_MISS);

    /* Without eviction, writes are refused with ENOMEM, whole; reads go on. */
    redis_server_ok(s, "CONFIG SET maxmemory-policy noeviction");
    int refused = 0;
    for (int i = 3000; i < 6000 && !refused; i++) {
        int n = snprintf(key, sizeof key, "fill:%d", i);
        int rc = corral_set(c, key, (size_t)n, val, sizeof val, CORRAL_TTL_DEFAULT, NULL);
        assert_true(rc == CORRAL_OK || rc == CORRAL_ENOMEM);
        refused = rc == CORRAL_ENOMEM;
    }
    assert_true(refused);
    corral_buf keys[2] = { { "m1", 2 }, { "m2", 2 } },
               vals[2] = { { val, sizeof val }, { val, sizeof val } };
    assert_int_equal(corral_set_many(c, keys, vals, 2, CORRAL_TTL_DEFAULT, NULL), CORRAL_ENOMEM);
    assert_int_equal(corral_has(c, "m1", 2, NULL), CORRAL_MISS); /* all or nothing */
    assert_int_equal(corral_has(c, "m2", 2, NULL), CORRAL_MISS);
    assert_int_equal(corral_has(c, "gone", 4, NULL), CORRAL_MISS);
    assert_int_equal(corral_delete(c, "fill:2999", 9, NULL) >= 0, 1); /* deletes still work */
    corral_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_faults_dead_server_turns_reads_into_misses_and_writes_into_errors, redis_fx_setup,
            redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_handle_recovers_after_a_restart, redis_fx_setup,
                                        redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_backoff_fails_fast_without_touching_the_network,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_stale_pool_connections_cost_one_failure,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_debug_sleep_times_out_instead_of_hanging,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_client_pause_times_out_instead_of_hanging,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_stopped_server_never_hangs_a_call,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_get_or_set_runs_the_producer_when_redis_is_dead,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_pool_wait_is_bounded_by_the_command_timeout,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_writes_to_a_dead_server_never_raise_sigpipe,
                                        redis_fx_setup, redis_fx_teardown),
        cmocka_unit_test_setup_teardown(test_faults_full_server_evicts_or_refuses_writes_cleanly,
                                        setup_full_server, redis_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
