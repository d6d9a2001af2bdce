/*
 * test_reader.c - the memory store's read-side sections and grace periods (src/store/reader.c).
 *
 * A reader thread stands inside a section while another thread runs a grace period; the test
 * knows the grace period has found the section (corral__reader_waits counts grace periods that
 * waited) and checks it has not returned, then lets the reader leave and checks that it does.
 * The same runs with readers that fence (the path taken where membarrier is unavailable).
 * Threads meet at barriers and poll counters; nothing sleeps. Worker threads never call
 * cmocka's asserts; they record what they saw, which the main thread checks after the join.
 * Also run under ThreadSanitizer (`make tsan`).
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

#include "store/reader.h"

typedef struct standing {
    pthread_barrier_t in;  /* the reader is inside its section */
    pthread_barrier_t out; /* the main thread lets it leave */
} standing;

static void *stand_in_section(void *p) {
    standing *st = p;
    corral__reader_enter();
    pthread_barrier_wait(&st->in);
    pthread_barrier_wait(&st->out);
    corral__reader_leave();
    return NULL;
}

typedef struct syncer {
    _Atomic bool done;
} syncer;

static void *run_sync(void *p) {
    syncer *sy = p;
    corral__reader_sync();
    atomic_store(&sy->done, true);
    return NULL;
}

/* Polls until a grace period has waited since `before`, or `sy`'s has returned. */
static void wait_for_a_waiting_sync(uint64_t before, const syncer *sy) {
    while (corral__reader_waits() == before && !atomic_load(&sy->done))
        sched_yield();
}

static void *enter_and_leave(void *p) {
    (void)p;
    corral__reader_enter();
    corral__reader_leave();
    return NULL;
}

/* Stands a reader in a section, starts a grace period and sees it wait; runs `meanwhile` (when
 * set) while it waits; then lets the reader leave and sees the grace period return. */
static void sync_beside_a_section(void (*meanwhile)(void)) {
    standing st;
    assert_int_equal(pthread_barrier_init(&st.in, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&st.out, NULL, 2), 0);
    pthread_t reader, sync_thread;
    assert_int_equal(pthread_create(&reader, NULL, stand_in_section, &st), 0);
    pthread_barrier_wait(&st.in);
    uint64_t before = corral__reader_waits();
    syncer sy = { false };
    assert_int_equal(pthread_create(&sync_thread, NULL, run_sync, &sy), 0);
    wait_for_a_waiting_sync(before, &sy);
    assert_false(atomic_load(&sy.done)); /* it found the section and waits */
    if (meanwhile) meanwhile();
    assert_false(atomic_load(&sy.done));
    pthread_barrier_wait(&st.out);
    assert_int_equal(pthread_join(sync_thread, NULL), 0);
    assert_true(atomic_load(&sy.done));
    assert_int_equal(pthread_join(reader, NULL), 0);
    pthread_barrier_destroy(&st.in);
    pthread_barrier_destroy(&st.out);
}

static void test_reader_sync_waits_for_a_section_that_began_before_it(void **state) {
    (void)state;
    sync_beside_a_section(NULL);
}

static void test_reader_sync_waits_when_readers_fence(void **state) {
    (void)state;
    corral__reader_force_fences(true);
    sync_beside_a_section(NULL);
    corral__reader_force_fences(false);
}

/* A new thread registers, reads once and exits. */
static void a_new_thread_reads(void) {
    size_t registered = corral__reader_count();
    pthread_t newcomer;
    assert_int_equal(pthread_create(&newcomer, NULL, enter_and_leave, NULL), 0);
    assert_int_equal(pthread_join(newcomer, NULL), 0); /* hangs if registration waited */
    assert_int_equal(corral__reader_count(), registered);
}

/* A grace period waits for sections without the registry's mutex: a thread's first section
 * (its registration) goes ahead while a grace period waits for a section elsewhere. */
static void test_reader_new_threads_read_while_a_sync_waits(void **state) {
    (void)state;
    sync_beside_a_section(a_new_thread_reads);
}

static void test_reader_sync_without_sections_does_not_wait(void **state) {
    (void)state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, enter_and_leave, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    corral__reader_enter(); /* the main thread registers, and is outside a section after */
    corral__reader_leave();
    uint64_t before = corral__reader_waits();
    corral__reader_sync();
    assert_int_equal(corral__reader_waits(), before);
}

/* A thread that reads once and exits, each step when the main thread has looked. */
typedef struct registrant {
    pthread_barrier_t step;
} registrant;

static void *register_then_wait(void *p) {
    registrant *r = p;
    pthread_barrier_wait(&r->step); /* started, has not read */
    pthread_barrier_wait(&r->step); /* the main thread has counted */
    corral__reader_enter();
    corral__reader_leave();
    pthread_barrier_wait(&r->step); /* has read */
    pthread_barrier_wait(&r->step); /* the main thread has counted */
    return NULL;
}

static void test_reader_threads_register_on_first_section_and_leave_at_exit(void **state) {
    (void)state;
    registrant r;
    assert_int_equal(pthread_barrier_init(&r.step, NULL, 2), 0);
    size_t base = corral__reader_count();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, register_then_wait, &r), 0);
    pthread_barrier_wait(&r.step);
    assert_int_equal(corral__reader_count(), base);
    pthread_barrier_wait(&r.step);
    pthread_barrier_wait(&r.step);
    assert_int_equal(corral__reader_count(), base + 1);
    pthread_barrier_wait(&r.step);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(corral__reader_count(), base);
    corral__reader_sync(); /* scans the registry without the thread that left */
    pthread_barrier_destroy(&r.step);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_sync_waits_for_a_section_that_began_before_it),
        cmocka_unit_test(test_reader_sync_waits_when_readers_fence),
        cmocka_unit_test(test_reader_new_threads_read_while_a_sync_waits),
        cmocka_unit_test(test_reader_sync_without_sections_does_not_wait),
        cmocka_unit_test(test_reader_threads_register_on_first_section_and_leave_at_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
