/*
 * test_demo_herd.c - the herd of `corral demo` (cmd/corral/demo_herd.c) when a thread cannot be
 * started. The test binary is linked with --wrap=pthread_create (CMakeLists.txt), so the k-th
 * pthread_create of the herd can be made to fail with EAGAIN; every thread that did start is
 * counted while it lives. The herd must then fail with its reason and leave no thread behind
 * (it used to return with the started threads waiting forever on a barrier on its stack).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cli.h"

#define HERD 32 /* the herd's threads per run (demo_herd.c) */

int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

static _Atomic int calls; /* pthread_create calls since the test reset it */
static int fail_at;       /* the call that fails with EAGAIN; 0: none */
static _Atomic int alive; /* started threads that have not returned */

typedef struct start {
    void *(*fn)(void *);
    void *arg;
} start;

static void *counted(void *p) {
    start s = *(start *)p;
    free(p);
    void *r = s.fn(s.arg);
    atomic_fetch_sub(&alive, 1);
    return r;
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                          void *arg) {
    if (atomic_fetch_add(&calls, 1) + 1 == fail_at) return EAGAIN;
    start *s = malloc(sizeof *s);
    if (!s) return ENOMEM;
    *s = (start){ fn, arg };
    atomic_fetch_add(&alive, 1);
    int rc = __real_pthread_create(t, attr, counted, s);
    if (rc != 0) {
        atomic_fetch_sub(&alive, 1);
        free(s);
    }
    return rc;
}

static corral *open_mem(void) {
    corral *c = NULL;
    assert_int_equal(corral_open(&c, "mem://?key_prefix=shop", NULL), CORRAL_OK);
    return c;
}

static void test_issue_13_herd_runs_two_herds_of_32_threads(void **state) {
    (void)state;
    corral *c = open_mem();
    atomic_store(&calls, 0);
    fail_at = 0;
    assert_int_equal(demo_herd(c), 0);
    assert_int_equal(atomic_load(&calls), 2 * HERD); /* what the failures below count on */
    assert_int_equal(atomic_load(&alive), 0);
    corral_close(c);
}

static void test_issue_13_herd_that_cannot_start_a_thread_fails_and_joins_the_rest(void **state) {
    (void)state;
    /* The first and the last thread of each herd, and one in the middle of the first. */
    static const int ks[] = { 1, 2, HERD / 2, HERD, HERD + 1, 2 * HERD };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        int k = ks[i];
        corral *c = open_mem();
        atomic_store(&calls, 0);
        fail_at = k;
        int rc = demo_herd(c);
        fail_at = 0;
        if (rc != 1) fail_msg("thread %d failed to start: demo_herd returned %d", k, rc);
        if (atomic_load(&alive) != 0)
            fail_msg("thread %d failed to start: %d started threads left", k, atomic_load(&alive));
        corral_close(c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_13_herd_runs_two_herds_of_32_threads),
        cmocka_unit_test(test_issue_13_herd_that_cannot_start_a_thread_fails_and_joins_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
