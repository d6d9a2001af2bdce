/*
 * test_redis_fork.c - a handle survives fork() (src/fork.h): what a pre-forking server
 * (gunicorn, uWSGI) does with a cache opened before it forks its workers, against a real
 * redis-server.
 *
 * Children report through their exit status: 0 when every check held, else the number of the
 * check that failed. Each child arms alarm() first, so one that hangs (a lock held by a thread
 * that does not exist in it, a grace period waiting for one) dies of SIGALRM and fails the test
 * instead of hanging it. Children end with _exit: they own copies of the parent's memory, which
 * is the parent's to free.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "corral/corral.h"
#include "redis_server.h"

#define CHILDREN    4
#define ROUNDS      2000
#define ALARM_S     60
#define DEADLINE_NS (20ull * 1000000000ull)

/* Sets and reads back ROUNDS keys of its own ("<who>:<i>" = "<who>=<i>"). 0, or a failed step. */
static int own_keys(corral *c, const char *who) {
    for (int i = 0; i < ROUNDS; i++) {
        char k[64], v[64], got[64];
        int kn = snprintf(k, sizeof k, "%s:%d", who, i),
            vn = snprintf(v, sizeof v, "%s=%d", who, i);
        size_t len = 0;
        if (corral_set(c, k, (size_t)kn, v, (size_t)vn, 60000, NULL) != CORRAL_OK) return 10;
        if (corral_get_into(c, k, (size_t)kn, NULL, got, sizeof got, &len) != CORRAL_OK) return 11;
        if (len != (size_t)vn || memcmp(got, v, len) != 0) return 12; /* another one's reply */
    }
    return 0;
}

static void wait_ok(pid_t pid) {
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) fail_msg("child %d died of signal %d", (int)pid, WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("child %d failed check %d", (int)pid, WEXITSTATUS(status));
}

/* A child of a handle whose pool was connected: it starts with no connection of its own (the
 * parent's are closed in it), opens its own, and the parent and several children then use the
 * handle at once without ever reading one another's replies. */
static void test_fork_children_use_their_own_connections_concurrently(void **state) {
    (void)state;
    corral *c = redis_fx_open(&srv, "?key_prefix=f&pool=2");
    assert_int_equal(corral_set(c, "shared", 6, "parent", 6, 60000, NULL), CORRAL_OK);
    assert_true(redis_fx_metric(c, "connections") >= 1);
    pid_t kids[CHILDREN];
    for (int k = 0; k < CHILDREN; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(ALARM_S);
            if (redis_fx_metric(c, "connections") != 0) _exit(1);
            char who[16], got[16];
            snprintf(who, sizeof who, "child%d", k);
            size_t len = 0;
            if (corral_get_into(c, "shared", 6, NULL, got, sizeof got, &len) != CORRAL_OK ||
                len != 6 || memcmp(got, "parent", 6) != 0)
                _exit(2);
            int rc = own_keys(c, who);
            if (rc) _exit(rc);
            corral_close(c);
            _exit(0);
        }
        kids[k] = pid;
    }
    assert_int_equal(own_keys(c, "parent"), 0);
    for (int k = 0; k < CHILDREN; k++)
        wait_ok(kids[k]);
    /* The children closed their copies of the descriptors, never the parent's sockets. */
    char got[16];
    size_t len = 0;
    assert_int_equal(corral_get_into(c, "shared", 6, NULL, got, sizeof got, &len), CORRAL_OK);
    assert_memory_equal(got, "parent", 6);
    assert_int_equal(redis_fx_metric(c, "reconnects_total"), 0);
    corral_close(c);
}

/* The near cache: a child does not serve what the parent's L1 held when the key changed after
 * the fork, and it gets invalidations of its own afterwards (a tracker of its own). */
static void test_fork_child_near_cache_forgets_the_parents_and_tracks_its_own(void **state) {
    (void)state;
    corral *c = redis_fx_open(&srv, "?key_prefix=n&near_cache=1MB");
    assert_int_equal(corral_set(c, "k", 1, "v1", 2, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (redis_fx_metric(c, "near_live") != 1 || redis_fx_metric(c, "near_hits_total") < 1) {
        corral_value *v = NULL;
        (void)corral_get(c, "k", 1, NULL, &v); /* starts the tracker, then fills L1 and hits */
        corral_value_unref(v);
        if (redis_fx_now_ns() > deadline) fail_msg("the parent's near cache never served a hit");
    }
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(ALARM_S);
        char b;
        if (read(go[0], &b, 1) != 1) _exit(1);
        char got[8];
        size_t len = 0;
        if (corral_get_into(c, "k", 1, NULL, got, sizeof got, &len) != CORRAL_OK) _exit(2);
        if (len != 2 || memcmp(got, "v2", 2) != 0) _exit(3); /* the parent's L1 served v1 */
        redisReply *r = redis_server_cmd(&srv, "SET n:1:k v3");
        if (!r) _exit(4);
        freeReplyObject(r);
        /* Its own tracker: the change reaches its L1, which serves hits of its own. */
        for (;;) {
            if (corral_get_into(c, "k", 1, NULL, got, sizeof got, &len) == CORRAL_OK && len == 2 &&
                memcmp(got, "v3", 2) == 0 && redis_fx_metric(c, "near_live") == 1)
                break;
        }
        long long hits = redis_fx_metric(c, "near_hits_total");
        for (int i = 0; i < 100; i++)
            if (corral_get_into(c, "k", 1, NULL, got, sizeof got, &len) != CORRAL_OK) _exit(5);
        if (redis_fx_metric(c, "near_hits_total") <= hits) _exit(6);
        corral_close(c);
        _exit(0);
    }
    /* Written after the fork, through another connection: only the child's own tracker can tell
     * the child. The parent's tracker tells the parent. */
    redis_server_ok(&srv, "SET n:1:k v2");
    assert_int_equal(write(go[1], "x", 1), 1);
    wait_ok(pid);
    assert_int_equal(close(go[0]), 0);
    assert_int_equal(close(go[1]), 0);
    /* The parent's tracker still runs: the child never touched its pipe or connection. */
    deadline = redis_fx_now_ns() + DEADLINE_NS;
    for (;;) {
        char got[8];
        size_t len = 0;
        if (corral_get_into(c, "k", 1, NULL, got, sizeof got, &len) == CORRAL_OK && len == 2 &&
            memcmp(got, "v3", 2) == 0)
            break;
        if (redis_fx_now_ns() > deadline) fail_msg("the parent never saw the child's write");
    }
    assert_int_equal(redis_fx_metric(c, "near_live"), 1);
    corral_close(c);
}

/* ---- A flight led by a thread that is not in the child ---- */

typedef struct {
    corral *c;
    int entered[2]; /* the producer writes a byte when it runs */
    int release[2]; /* then waits for one */
} slow_ctx;

static int slow_producer(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    slow_ctx *s = arg;
    char b = 0;
    if (write(s->entered[1], "x", 1) != 1 || read(s->release[0], &b, 1) != 1) return CORRAL_EINVAL;
    return corral_result_set(out, "parent", 6);
}

static int child_producer(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)arg;
    (void)key;
    (void)key_len;
    return corral_result_set(out, "child", 5);
}

static void *lead_flight(void *arg) {
    slow_ctx *s = arg;
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.lease_ttl_ms = 200; /* the child's copy of it (memory store), or Redis's, expires soon */
    corral_value *v = NULL;
    int rc = corral_get_or_set(s->c, "hot", 3, slow_producer, s, &o, &v);
    corral_value_unref(v);
    return (void *)(intptr_t)rc;
}

/* The parent forks while one of its threads leads the flight of a key: in the child that thread
 * does not exist, and a caller there makes the value itself rather than wait for it. The memory
 * store's frees (liburcu's call_rcu thread, restarted in the child) still run: closing the
 * handle in the child waits for them. */
static void test_fork_child_does_not_wait_for_a_parent_threads_flight(void **state) {
    (void)state;
    for (int mem = 0; mem < 2; mem++) {
        corral *c = NULL;
        if (mem)
            assert_int_equal(corral_open(&c, "mem://?max_memory=8MB", NULL), CORRAL_OK);
        else
            c = redis_fx_open(&srv, "?key_prefix=g");
        slow_ctx s = { .c = c };
        assert_int_equal(pipe(s.entered), 0);
        assert_int_equal(pipe(s.release), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, lead_flight, &s), 0);
        char b;
        assert_int_equal(read(s.entered[0], &b, 1), 1); /* the thread leads the flight */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            alarm(ALARM_S);
            corral_load_opts o;
            corral_load_opts_init(&o);
            o.wait_timeout_ms = 3600 * 1000; /* waiting on the dead leader would hang: SIGALRM */
            corral_value *v = NULL;
            int rc = corral_get_or_set(c, "hot", 3, child_producer, NULL, &o, &v);
            if (rc != CORRAL_OK || corral_value_len(v) != 5) _exit(1);
            corral_value_unref(v);
            for (int i = 0; i < 10000; i++) /* overwrites: frees go through call_rcu */
                if (corral_set(c, "churn", 5, &i, sizeof i, 60000, NULL) != CORRAL_OK) _exit(2);
            corral_close(c);
            _exit(0);
        }
        wait_ok(pid);
        assert_int_equal(write(s.release[1], "x", 1), 1);
        void *rc;
        assert_int_equal(pthread_join(t, &rc), 0);
        assert_int_equal((int)(intptr_t)rc, CORRAL_OK);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(close(s.entered[i]), 0);
            assert_int_equal(close(s.release[i]), 0);
        }
        corral_close(c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_children_use_their_own_connections_concurrently),
        cmocka_unit_test(test_fork_child_near_cache_forgets_the_parents_and_tracks_its_own),
        cmocka_unit_test(test_fork_child_does_not_wait_for_a_parent_threads_flight),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
