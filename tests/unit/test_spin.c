/*
 * test_spin.c - spin.h's lock: it excludes (threads released together by a barrier add to a
 * plain counter under it, and no increment is lost; under ThreadSanitizer a lock that did not
 * order them would be a reported race), trylock fails while another thread holds it, and the
 * debug owner follows the holder so CORRAL_ASSERT_HELD works.
 *
 * Worker threads never call cmocka's asserts; they count failures for the main thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "spin.h"

#define THREADS 4
#define ROUNDS  20000

typedef struct shared {
    corral__spin lock;
    pthread_barrier_t start;
    unsigned long counter; /* plain: only the lock orders its writers */
    atomic_int failures;
} shared;

static void *adder(void *arg) {
    shared *sh = arg;
    pthread_barrier_wait(&sh->start);
    for (unsigned i = 0; i < ROUNDS; i++) {
        corral__spin_lock(&sh->lock);
        unsigned long n = sh->counter;
        if (i % 64 == 0) sched_yield(); /* hold it across a yield now and then: waiters wait */
        sh->counter = n + 1;
        corral__spin_unlock(&sh->lock);
    }
    return NULL;
}

static void test_spin_lock_loses_no_increment_between_threads(void **state) {
    (void)state;
    shared sh = { .counter = 0 };
    corral__spin_init(&sh.lock);
    assert_int_equal(pthread_barrier_init(&sh.start, NULL, THREADS), 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, adder, &sh), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(sh.counter, (unsigned long)THREADS * ROUNDS);
    assert_int_equal(pthread_barrier_destroy(&sh.start), 0);
    corral__spin_deinit(&sh.lock);
}

static void *try_it(void *arg) {
    shared *sh = arg;
    if (corral__spin_trylock(&sh->lock)) {
        atomic_fetch_add(&sh->failures, 1);
        corral__spin_unlock(&sh->lock);
    }
#ifndef NDEBUG
    if (corral__spin_held(&sh->lock)) atomic_fetch_add(&sh->failures, 1);
#endif
    return NULL;
}

static void test_spin_trylock_fails_while_another_thread_holds_it(void **state) {
    (void)state;
    shared sh = { .counter = 0 };
    corral__spin_init(&sh.lock);
    atomic_init(&sh.failures, 0);
    corral__spin_lock(&sh.lock);
    CORRAL_ASSERT_HELD(&sh.lock);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, try_it, &sh), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(atomic_load(&sh.failures), 0);
    corral__spin_unlock(&sh.lock);
#ifndef NDEBUG
    assert_false(corral__spin_held(&sh.lock));
#endif
    assert_true(corral__spin_trylock(&sh.lock));
    corral__spin_unlock(&sh.lock);
    corral__spin_deinit(&sh.lock);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spin_lock_loses_no_increment_between_threads),
        cmocka_unit_test(test_spin_trylock_fails_while_another_thread_holds_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
