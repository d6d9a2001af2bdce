/*
 * test_threads.c - one handle shared by several threads, through the public API: threads are
 * released together by a barrier (no sleeps), hammer shared keys with set/get/incr/add, and after
 * the join the results are exact: no lost increment, no torn value, one add winner per key, and
 * every get counted once in the metrics. Also run under ThreadSanitizer (`make tsan`).
 *
 * Worker threads never call cmocka's asserts (they are not thread-safe); they count failures,
 * which the main thread checks after the join.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/corral.h"
#include "prefix_stats.h"

#define T0_NS ((uint64_t)1767225600 * 1000000000u)

/* The fake clock: set before the threads start, only read while they run. */
static uint64_t fake_now(void *ctx) {
    return *(const uint64_t *)ctx;
}

typedef struct fixture {
    uint64_t now_ns;
    corral *c;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->now_ns = T0_NS;
    corral_options o;
    corral_options_init(&o);
    o.max_memory_bytes = 16000000;
    o.now_ns = fake_now;
    o.clock_ctx = &f->now_ns;
    if (corral_open_opts(&f->c, &o, NULL) != CORRAL_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    corral_close(f->c);
    free(f);
    return 0;
}

static void expect_str(corral *c, const char *key, const char *want) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != CORRAL_OK) fail_msg("get '%s': rc %d, want OK", key, rc);
    assert_int_equal(corral_value_len(v), strlen(want));
    assert_memory_equal(corral_value_data(v), want, strlen(want));
    corral_value_unref(v);
}

#define N_THREADS 4
#define N_ITERS   2000
#define VAL_LEN   64

typedef struct worker {
    corral *c;
    pthread_barrier_t *go;
    int id;
    int failures; /* unexpected return codes or torn values; checked after join */
    int wins;     /* corral_add calls that returned CORRAL_OK */
} worker;

static void *mixed_worker(void *arg) {
    worker *w = arg;
    int rc = pthread_barrier_wait(w->go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) w->failures++;
    char mine[VAL_LEN];
    memset(mine, 'a' + w->id, sizeof mine);
    for (int i = 0; i < N_ITERS; i++) {
        if (corral_incr(w->c, "ctr", 3, 1, NULL, NULL) != CORRAL_OK) w->failures++;
        if (corral_set(w->c, "shared", 6, mine, sizeof mine, CORRAL_TTL_DEFAULT, NULL) != CORRAL_OK)
            w->failures++;
        corral_value *v = NULL;
        if (corral_get(w->c, "shared", 6, NULL, &v) != CORRAL_OK) {
            w->failures++;
            continue;
        }
        const unsigned char *d = corral_value_data(v);
        if (corral_value_len(v) != VAL_LEN || d[0] < 'a' || d[0] >= 'a' + N_THREADS) w->failures++;
        for (size_t j = 1; j < VAL_LEN; j++)
            if (d[j] != d[0]) w->failures++; /* a torn value */
        corral_value_unref(v);
    }
    return NULL;
}

static void *add_worker(void *arg) {
    worker *w = arg;
    int rc = pthread_barrier_wait(w->go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) w->failures++;
    for (int i = 0; i < N_ITERS; i++) {
        char key[32];
        int n = snprintf(key, sizeof key, "lock:%d", i);
        rc = corral_add(w->c, key, (size_t)n, "1", 1, CORRAL_TTL_DEFAULT, NULL);
        if (rc == CORRAL_OK)
            w->wins++;
        else if (rc != CORRAL_EXISTS)
            w->failures++;
    }
    return NULL;
}

/* Starts N_THREADS running `fn` together (released by one barrier) and joins them. */
static void run_workers(corral *c, void *(*fn)(void *), worker *ws) {
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, N_THREADS), 0);
    pthread_t tids[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        ws[i] = (worker){ .c = c, .go = &go, .id = i };
        assert_int_equal(pthread_create(&tids[i], NULL, fn, &ws[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&go), 0);
}

static void test_concurrent_incr_set_get_lose_nothing(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_set(f->c, "ctr", 3, "0", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    worker ws[N_THREADS];
    run_workers(f->c, mixed_worker, ws);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(ws[i].failures, 0);
    char want[32];
    snprintf(want, sizeof want, "%d", N_THREADS * N_ITERS);
    expect_str(f->c, "ctr", want);
}

static void test_concurrent_add_has_exactly_one_winner_per_key(void **state) {
    fixture *f = *state;
    worker ws[N_THREADS];
    run_workers(f->c, add_worker, ws);
    int wins = 0;
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(ws[i].failures, 0);
        wins += ws[i].wins;
    }
    assert_int_equal(wins, N_ITERS);
}

static void *get_worker(void *arg) {
    worker *w = arg;
    int rc = pthread_barrier_wait(w->go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) w->failures++;
    char buf[16];
    size_t len = 0;
    for (int i = 0; i < N_ITERS; i++) {
        corral_value *v = NULL;
        if (corral_get(w->c, "g:hit", 5, NULL, &v) != CORRAL_OK) w->failures++;
        corral_value_unref(v);
        if (corral_get_into(w->c, "g:miss", 6, NULL, buf, sizeof buf, &len) != CORRAL_MISS)
            w->failures++;
    }
    return NULL;
}

static void test_concurrent_gets_are_each_counted_once(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_set(f->c, "g:hit", 5, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    worker ws[N_THREADS];
    run_workers(f->c, get_worker, ws);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(ws[i].failures, 0);
    corral_stats_snapshot *s = NULL;
    assert_int_equal(corral_stats(f->c, &s), CORRAL_OK);
    const corral_prefix_stats *g = NULL;
    for (size_t i = 0; i < s->n_prefixes; i++)
        if (strcmp(s->prefixes[i].prefix, "g") == 0) g = &s->prefixes[i];
    assert_non_null(g);
    assert_int_equal(g->hits, N_THREADS * N_ITERS);
    assert_int_equal(g->misses, N_THREADS * N_ITERS);
    assert_int_equal(s->total.hits + s->total.misses, 2 * N_THREADS * N_ITERS);
    corral_stats_free(f->c, s);
}

/* More threads than the stripes threads own (metrics.c: 16), so some count on the shared,
 * atomic stripes; each thread alternates between two handles, whose stripes it owns apart. */
#define MANY_THREADS 24

typedef struct two_worker {
    corral *a, *b;
    pthread_barrier_t *go;
    int failures;
} two_worker;

static void *two_handles_worker(void *arg) {
    two_worker *w = arg;
    int rc = pthread_barrier_wait(w->go);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) w->failures++;
    char buf[16];
    size_t len = 0;
    for (int i = 0; i < N_ITERS; i++) {
        if (corral_get_into(w->a, "g:hit", 5, NULL, buf, sizeof buf, &len) != CORRAL_OK)
            w->failures++;
        if (corral_get_into(w->b, "g:hit", 5, NULL, buf, sizeof buf, &len) != CORRAL_MISS)
            w->failures++;
        corral_value *v = NULL;
        if (corral_get(w->b, "h:hit", 5, NULL, &v) != CORRAL_OK) w->failures++;
        corral_value_unref(v);
        if (corral_get_into(w->a, "h:hit", 5, NULL, buf, sizeof buf, &len) != CORRAL_MISS)
            w->failures++;
    }
    return NULL;
}

static void test_counts_are_exact_with_more_threads_than_owned_stripes(void **state) {
    fixture *f = *state;
    corral *b = NULL;
    assert_int_equal(corral_open(&b, "mem://?max_memory=1MB", NULL), CORRAL_OK);
    assert_int_equal(corral_set(f->c, "g:hit", 5, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    assert_int_equal(corral_set(b, "h:hit", 5, "w", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, MANY_THREADS), 0);
    pthread_t tids[MANY_THREADS];
    two_worker ws[MANY_THREADS];
    for (int i = 0; i < MANY_THREADS; i++) {
        ws[i] = (two_worker){ .a = f->c, .b = b, .go = &go };
        assert_int_equal(pthread_create(&tids[i], NULL, two_handles_worker, &ws[i]), 0);
    }
    for (int i = 0; i < MANY_THREADS; i++) {
        assert_int_equal(pthread_join(tids[i], NULL), 0);
        assert_int_equal(ws[i].failures, 0);
    }
    assert_int_equal(pthread_barrier_destroy(&go), 0);
    const uint64_t n = (uint64_t)MANY_THREADS * N_ITERS;
    expect_prefix_counts(f->c, "g", n, 0);
    expect_prefix_counts(f->c, "h", 0, n);
    expect_prefix_counts(b, "g", 0, n);
    expect_prefix_counts(b, "h", n, 0);
    corral_close(b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_concurrent_incr_set_get_lose_nothing),
        T(test_concurrent_add_has_exactly_one_winner_per_key),
        T(test_concurrent_gets_are_each_counted_once),
        T(test_counts_are_exact_with_more_threads_than_owned_stripes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
