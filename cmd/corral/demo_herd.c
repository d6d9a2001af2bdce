/*
 * demo_herd.c - the 14:00 stampede of the guide, in `corral demo`: 32 requests miss the same
 * key at once. Naive get-then-set sends every one of them to the database; get_or_set sends one
 * and hands its value to the others.
 *
 * The 32 threads wait at a gate (a mutex and a condition) that opens once all have arrived, so
 * they miss together. Unlike a barrier, the gate can also be cancelled: when a thread cannot be
 * started, those already waiting are sent home and joined, and the demo says why.
 */
#include "cli.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HERD_THREADS 32

enum { GATE_CLOSED, GATE_OPEN, GATE_CANCELLED };

typedef struct herd {
    corral *c;
    pthread_mutex_t lock; /* arrived, gate */
    pthread_cond_t cond;  /* arrived went up, or the gate changed */
    int arrived;          /* threads waiting at the gate */
    int gate;             /* GATE_* */
    _Atomic unsigned queries;
    bool use_get_or_set;
    _Atomic int failures;
} herd;

/* The expensive query: 20 ms of "database". */
static int bestsellers(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    herd *h = arg;
    atomic_fetch_add(&h->queries, 1);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    return corral_result_set(out, "[7,3,12,1]", 10);
}

/* Waits at the gate; returns false when the herd was cancelled. */
static bool at_gate(herd *h) {
    pthread_mutex_lock(&h->lock);
    h->arrived++;
    pthread_cond_broadcast(&h->cond);
    while (h->gate == GATE_CLOSED)
        pthread_cond_wait(&h->cond, &h->lock);
    bool go = h->gate == GATE_OPEN;
    pthread_mutex_unlock(&h->lock);
    return go;
}

/* Opens the gate once `n` threads wait at it, or cancels it. */
static void set_gate(herd *h, int n, int gate) {
    pthread_mutex_lock(&h->lock);
    while (gate == GATE_OPEN && h->arrived < n)
        pthread_cond_wait(&h->cond, &h->lock);
    h->gate = gate;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

static void *request(void *arg) {
    herd *h = arg;
    if (!at_gate(h)) return NULL;
    int rc;
    if (h->use_get_or_set) {
        corral_value *v = NULL;
        rc = corral_get_or_set(h->c, "bestsellers:v1", 14, bestsellers, h, NULL, &v);
        corral_value_unref(v);
    } else {
        /* Django's get_or_set: get, and on a miss compute and set. */
        char buf[64];
        size_t len;
        rc = corral_get_into(h->c, "bestsellers:v1", 14, NULL, buf, sizeof buf, &len);
        if (rc == CORRAL_MISS) {
            atomic_fetch_add(&h->queries, 1);
            struct timespec ts = { 0, 20 * 1000 * 1000 };
            nanosleep(&ts, NULL);
            rc = corral_set(h->c, "bestsellers:v1", 14, "[7,3,12,1]", 10, 60000, NULL);
        }
    }
    if (rc < 0) atomic_fetch_add(&h->failures, 1);
    return NULL;
}

/* Runs one herd; returns the number of database queries, or -1 after printing why. Every
 * thread it started has ended when it returns. */
static int run_herd(corral *c, bool use_get_or_set) {
    herd h = { .c = c, .use_get_or_set = use_get_or_set, .gate = GATE_CLOSED };
    atomic_init(&h.queries, 0);
    atomic_init(&h.failures, 0);
    int rc = corral_delete(c, "bestsellers:v1", 14, NULL);
    if (rc < 0) {
        fprintf(stderr, "corral demo: the herd: %s\n", corral_strerror(rc));
        return -1;
    }
    if ((rc = pthread_mutex_init(&h.lock, NULL)) != 0) goto no_sync;
    if ((rc = pthread_cond_init(&h.cond, NULL)) != 0) {
        pthread_mutex_destroy(&h.lock);
        goto no_sync;
    }
    pthread_t t[HERD_THREADS];
    int started = 0;
    for (; started < HERD_THREADS; started++)
        if ((rc = pthread_create(&t[started], NULL, request, &h)) != 0) break;
    set_gate(&h, started, started == HERD_THREADS ? GATE_OPEN : GATE_CANCELLED);
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    pthread_cond_destroy(&h.cond);
    pthread_mutex_destroy(&h.lock);
    if (started < HERD_THREADS) {
        fprintf(stderr, "corral demo: the herd: cannot start thread %d of %d: %s\n", started + 1,
                HERD_THREADS, strerror(rc));
        return -1;
    }
    if (atomic_load(&h.failures)) {
        fprintf(stderr, "corral demo: the herd: %d of %d requests failed\n",
                atomic_load(&h.failures), HERD_THREADS);
        return -1;
    }
    return (int)atomic_load(&h.queries);
no_sync:
    fprintf(stderr, "corral demo: the herd: %s\n", strerror(rc));
    return -1;
}

int demo_herd(corral *c) {
    int naive = run_herd(c, false);
    int once = naive < 0 ? -1 : run_herd(c, true);
    if (naive < 0 || once < 0) return 1;
    printf("4. the 14:00 herd: %d requests miss bestsellers:v1 at once (a 20 ms query)\n"
           "   naive get-then-set asked the database %d times; corral_get_or_set asked it %d %s\n",
           HERD_THREADS, naive, once, once == 1 ? "time" : "times");
    return 0;
}

/* Product pages tagged with their category: renaming a category busts its tag, and only that
 * category's pages are made again. */
static int page(void *arg, const void *key, size_t key_len, corral_result *out) {
    atomic_fetch_add((_Atomic unsigned *)arg, 1);
    char html[96];
    int n = snprintf(html, sizeof html, "<h1>%.*s</h1>", (int)key_len, (const char *)key);
    if (n < 0 || (size_t)n >= sizeof html) return CORRAL_ENOSPC;
    return corral_result_set(out, html, (size_t)n);
}

static int view_pages(corral *c, _Atomic unsigned *made) {
    for (int id = 1; id <= 50; id++) {
        char key[32], cat[32];
        snprintf(key, sizeof key, "product_page:%d", id);
        snprintf(cat, sizeof cat, "category:%d", id % 5);
        const char *tags[] = { cat };
        corral_load_opts o;
        corral_load_opts_init(&o);
        o.ttl_ms = 600000;
        o.call.tags = tags;
        o.call.n_tags = 1;
        corral_value *v = NULL;
        int rc = corral_get_or_set(c, key, strlen(key), page, (void *)made, &o, &v);
        corral_value_unref(v);
        if (rc < 0) return rc;
    }
    return CORRAL_OK;
}

int demo_tags(corral *c) {
    _Atomic unsigned made;
    atomic_init(&made, 0);
    int rc = view_pages(c, &made);
    unsigned first = atomic_load(&made);
    if (rc == CORRAL_OK) rc = corral_tag_bust(c, "category:3");
    if (rc == CORRAL_OK) rc = view_pages(c, &made);
    if (rc < 0) {
        fprintf(stderr, "corral demo: the tagged pages: %s\n", corral_strerror(rc));
        return 1;
    }
    printf("5. 50 product pages tagged with their category (%u made); category 3 renamed:\n"
           "   corral_tag_bust(\"category:3\") in O(1), and viewing all 50 again made %u\n",
           first, atomic_load(&made) - first);
    return 0;
}
