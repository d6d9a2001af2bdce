/*
 * counting_alloc.h - the tests' allocator hooks: they count every block and byte handed out
 * and returned, check that free and realloc get the size the block was made with, and fail the
 * k-th call on demand (the allocation-failure sweeps of HOUSE_STYLE.md section 9).
 *
 *     counting a = { 0 };
 *     o.allocator = counting_allocator(&a);
 *     arm(&a, k);            // the k-th alloc/realloc from now fails
 *     ... rc = call(); ...
 *     long injected = disarm(&a);
 *     assert_balanced(&a);   // after close: every block returned, with the right sizes
 *
 * Thread-safe: the counters are atomics. Include after <cmocka.h>.
 */
#ifndef CORRAL_TEST_COUNTING_ALLOC_H
#define CORRAL_TEST_COUNTING_ALLOC_H

#include "corral/corral.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define BLOCK_LIVE 0x11feb10cu

typedef union block_hdr {
    struct {
        size_t n;
        unsigned magic;
    } h;
    max_align_t align;
} block_hdr;

typedef struct counting {
    atomic_size_t allocs, frees; /* blocks handed out / returned */
    atomic_size_t bytes_in, bytes_out;
    atomic_size_t mismatches; /* free/realloc given a size other than the block's */
    atomic_long calls;        /* alloc and realloc calls since arm() */
    atomic_long fail_at;      /* the call that fails, 0 for none */
    atomic_long failed;       /* failures injected since arm() */
} counting;

static inline bool should_fail(counting *a) {
    long k = atomic_fetch_add(&a->calls, 1) + 1;
    if (k != atomic_load(&a->fail_at)) return false;
    atomic_fetch_add(&a->failed, 1);
    return true;
}

static inline void *count_alloc(void *ctx, size_t n) {
    counting *a = ctx;
    if (should_fail(a)) return NULL;
    block_hdr *b = malloc(sizeof *b + n);
    if (!b) return NULL;
    b->h.n = n;
    b->h.magic = BLOCK_LIVE;
    atomic_fetch_add(&a->allocs, 1);
    atomic_fetch_add(&a->bytes_in, n);
    return b + 1;
}

static inline void count_free(void *ctx, void *p, size_t n) {
    counting *a = ctx;
    if (!p) return;
    block_hdr *b = (block_hdr *)p - 1;
    if (b->h.magic != BLOCK_LIVE || b->h.n != n) atomic_fetch_add(&a->mismatches, 1);
    atomic_fetch_add(&a->frees, 1);
    atomic_fetch_add(&a->bytes_out, b->h.n);
    b->h.magic = 0;
    free(b);
}

static inline void *count_realloc(void *ctx, void *p, size_t old_n, size_t new_n) {
    counting *a = ctx;
    if (!p) return count_alloc(ctx, new_n);
    if (should_fail(a)) return NULL;
    block_hdr *b = (block_hdr *)p - 1;
    if (b->h.magic != BLOCK_LIVE || b->h.n != old_n) atomic_fetch_add(&a->mismatches, 1);
    size_t was = b->h.n;
    block_hdr *nb = realloc(b, sizeof *nb + new_n);
    if (!nb) return NULL;
    nb->h.n = new_n;
    atomic_fetch_add(&a->bytes_out, was);
    atomic_fetch_add(&a->bytes_in, new_n);
    return nb + 1;
}

static inline corral_allocator counting_allocator(counting *a) {
    return (corral_allocator){ count_alloc, count_realloc, count_free, a };
}

/* Makes the k-th alloc/realloc call from now fail (0: none). */
static inline void arm(counting *a, long k) {
    atomic_store(&a->calls, 0);
    atomic_store(&a->failed, 0);
    atomic_store(&a->fail_at, k);
}

/* Stops failing; returns how many failures were injected since arm(). */
static inline long disarm(counting *a) {
    atomic_store(&a->fail_at, 0);
    return atomic_load(&a->failed);
}

/* Bytes handed out and not yet returned. */
static inline size_t outstanding(counting *a) {
    return atomic_load(&a->bytes_in) - atomic_load(&a->bytes_out);
}

/* Every block came back, each with the size it was made with. */
static inline void assert_balanced(counting *a) {
    assert_int_equal(atomic_load(&a->mismatches), 0);
    assert_int_equal(atomic_load(&a->allocs), atomic_load(&a->frees));
    assert_int_equal(atomic_load(&a->bytes_in), atomic_load(&a->bytes_out));
}

#endif /* CORRAL_TEST_COUNTING_ALLOC_H */
