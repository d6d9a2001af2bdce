/*
 * calls.h - the tests' count of callbacks (a lease's call-back, a wake-up) and the lease watches
 * that make them: `called` is the callback, `count_of` reads the count, `called_after` waits for
 * the next one; watch_try makes a watch whose call-back counts, watch_end ends it, and
 * watches_teardown ends every watch a test left.
 *
 *     calls *k = calls_new();
 *     assert_int_equal(watch_try(waiter, "k", 1, k, &watch), CORRAL_EXISTS);
 *     ... assert_int_equal(called_after(k, 0), 1); ...
 *     assert_int_equal(watch_end(waiter, watch), CORRAL_MISS);
 *     cmocka_unit_test_teardown(test_..., watches_teardown)   (in main's list)
 *
 * Why: cmocka reports a failed assertion (and skip()) by a longjmp out of the test function to
 * its runner, so the rest of the test, with its corral_lease_end and corral_close, never runs. A
 * watch left registered on the open handle would call back later, when a later test's failover
 * restarts or loses the handle's announcements, into memory the failed test no longer owns. So
 * the counters live here, in static storage, not in a test's frame; and the tests that make
 * watches run with watches_teardown as their teardown, which cmocka runs after a failed test
 * too: it ends the watches still registered (corral_lease_end: no call-back after it returns).
 * The handle itself stays open, with no watch left to call back.
 *
 * Threads: calls_new, watch_try, watch_end and watches_teardown on the test's thread only; the
 * call-back (`called`) on any. Include after <cmocka.h>.
 */
#ifndef CORRAL_TEST_CALLS_H
#define CORRAL_TEST_CALLS_H

#include "corral/corral.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>

typedef struct calls {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int n;
} calls;

static inline void called(void *arg) {
    calls *k = arg;
    pthread_mutex_lock(&k->m);
    k->n++;
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->m);
}

static inline int count_of(calls *k) {
    pthread_mutex_lock(&k->m);
    int n = k->n;
    pthread_mutex_unlock(&k->m);
    return n;
}

/* Waits (20 s at most) until `k` was called more than `n` times; returns the count. */
static inline int called_after(calls *k, int n) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&k->m);
    while (k->n <= n && pthread_cond_timedwait(&k->cv, &k->m, &dl) == 0) {
    }
    int got = k->n;
    pthread_mutex_unlock(&k->m);
    return got;
}

/* ---- Watches that outlive a failed test ---- */

#define WATCHES_MAX 16

static struct {
    calls k[WATCHES_MAX]; /* handed out by calls_new since the last teardown */
    size_t n_calls;
    struct {
        corral *c;
        corral_lease *l;
    } w[WATCHES_MAX]; /* made by watch_try, not yet ended */
    size_t n_watches;
} watches;

/* A counter at 0, valid until the test's watches_teardown. */
static inline calls *calls_new(void) {
    if (watches.n_calls == WATCHES_MAX) fail_msg("calls.h: more than %d counters", WATCHES_MAX);
    calls *k = &watches.k[watches.n_calls++];
    *k = (calls){ PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    return k;
}

/* corral_lease_try of `key` on `c` for 60 s, whose call-back counts in `k` (NULL: none).
 * Returns its result; a watch (CORRAL_EXISTS) is ended by watch_end, or by watches_teardown
 * if the test fails first. */
static inline int watch_try(corral *c, const void *key, size_t len, calls *k, corral_lease **out) {
    int rc = corral_lease_try(c, key, len, NULL, 60000, k ? called : NULL, k, out);
    if (rc != CORRAL_EXISTS) return rc;
    if (watches.n_watches == WATCHES_MAX) {
        (void)corral_lease_end(c, *out);
        *out = NULL;
        fail_msg("calls.h: more than %d watches", WATCHES_MAX);
    }
    watches.w[watches.n_watches].c = c;
    watches.w[watches.n_watches++].l = *out;
    return rc;
}

/* Ends a watch of watch_try: corral_lease_end's result. */
static inline int watch_end(corral *c, corral_lease *l) {
    for (size_t i = 0; i < watches.n_watches; i++) {
        if (watches.w[i].l == l) {
            watches.w[i] = watches.w[--watches.n_watches];
            break;
        }
    }
    return corral_lease_end(c, l);
}

/* The teardown of a test that makes watches: ends those it left (it failed before it ended
 * them), so none calls back later, and takes back its counters. Returns 0. */
static inline int watches_teardown(void **state) {
    (void)state;
    if (watches.n_watches)
        print_message("calls.h: ending %zu watch(es) the test left\n", watches.n_watches);
    while (watches.n_watches) {
        watches.n_watches--;
        (void)corral_lease_end(watches.w[watches.n_watches].c, watches.w[watches.n_watches].l);
    }
    watches.n_calls = 0;
    return 0;
}

#endif
