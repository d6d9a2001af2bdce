/*
 * calls.h - the tests' count of callbacks (a lease's call-back, a wake-up): `called` is the
 * callback, `count_of` reads the count, `called_after` waits for the next one.
 */
#ifndef CORRAL_TEST_CALLS_H
#define CORRAL_TEST_CALLS_H

#include <pthread.h>
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

#endif
