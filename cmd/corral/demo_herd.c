/*
 * demo_herd.c - the 14:00 stampede of the guide, in `corral demo`: 32 requests miss the same
 * key at once. Naive get-then-set sends every one of them to the database; get_or_set sends one
 * and hands its value to the others.
 */
#include "cli.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HERD_THREADS 32

typedef struct herd {
    corral *c;
    pthread_barrier_t go;
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

static void *request(void *arg) {
    herd *h = arg;
    pthread_barrier_wait(&h->go);
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

/* Runs one herd; returns the number of database queries, or -1 on failure. */
static int run_herd(corral *c, bool use_get_or_set) {
    herd h = { .c = c, .use_get_or_set = use_get_or_set };
    atomic_init(&h.queries, 0);
    atomic_init(&h.failures, 0);
    if (corral_delete(c, "bestsellers:v1", 14, NULL) < 0) return -1;
    if (pthread_barrier_init(&h.go, NULL, HERD_THREADS) != 0) return -1;
    pthread_t t[HERD_THREADS];
    int started = 0;
    for (; started < HERD_THREADS; started++) {
        if (pthread_create(&t[started], NULL, request, &h) != 0) break;
    }
    if (started < HERD_THREADS) {
        /* The barrier cannot open with fewer threads: give up before anyone waits on it. */
        fprintf(stderr, "corral demo: could not start the herd's threads\n");
        return -1;
    }
    for (int i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&h.go);
    return atomic_load(&h.failures) ? -1 : (int)atomic_load(&h.queries);
}

int demo_herd(corral *c) {
    int naive = run_herd(c, false);
    int once = run_herd(c, true);
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
    if (rc < 0) return 1;
    printf("5. 50 product pages tagged with their category (%u made); category 3 renamed:\n"
           "   corral_tag_bust(\"category:3\") in O(1), and viewing all 50 again made %u\n",
           first, atomic_load(&made) - first);
    return 0;
}
