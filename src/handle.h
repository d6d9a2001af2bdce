/*
 * handle.h - the layout of `struct corral` and the calls that open and close its modules. The
 * house is one-way: corral.c (public operations, open and close) calls loader.c (get_or_set,
 * refresh workers; on flight.c, the single-flight table) and invalidate.c (events, busts); all
 * of them reach the store through the access layer (access.h: keys, versions, envelopes, the
 * tag-checked read, and the store's own verbs passed through), the only caller of the store
 * vtable (store/store.h) for keys and clears. corral.c opens and closes the store, reads its
 * gauges and counters, and inlines the memory store's read path.
 *
 * Threads: the plain fields are written by corral_open_opts only and read-only afterwards. The
 * modules' own state (flights, workers, rules) carries its own locks, described in each module
 * and in docs/threads.md.
 */
#ifndef CORRAL_HANDLE_H
#define CORRAL_HANDLE_H

#include "common.h"
#include "envelope.h"
#include "key.h"
#include "metrics.h"
#include "value.h"
#include "store/store.h"

#include <stdatomic.h>

#define CORRAL_MAGIC 0xc0441a1du

typedef struct corral__flights corral__flights; /* flight.c */
typedef struct corral__workers corral__workers; /* loader.c */
typedef struct corral__rules corral__rules;     /* invalidate.c */

struct corral {
    uint32_t magic;
    corral__allocator alloc;
    corral_clock_fn now_ns;
    void *clock_ctx;
    uint64_t (*rand64)(void *ctx); /* NULL: the handle's own generator (`rng`) */
    void *rand_ctx;
    _Atomic uint64_t rng; /* splitmix64 state of the handle's own generator */
    char *key_prefix;     /* owned copy */
    size_t key_prefix_len;
    corral__keyscheme ks;
    /* A read without a call takes the read path (corral.c get_into_hot and get_hot, inline from
     * store/memory_read.h): the key scheme is hot and the store is the memory store. */
    bool hot_reads;
    int64_t default_ttl_ms; /* > 0, 0 (store nothing) or CORRAL_TTL_FOREVER */
    size_t max_value_bytes;
    size_t max_key_bytes; /* the longest physical key validation accepts */
    corral__store *store;
    corral__metrics *metrics;
    uint64_t metrics_id;   /* corral__metrics_id(metrics): the read path's count checks it */
    uint16_t cls_internal; /* metrics class of corral's own keys (tag versions, generations) */
    unsigned refresh_workers;
    corral__flights *flights;
    corral__workers *workers; /* threads started by the first background refresh */
    corral__rules *rules;
};

/* The handle's clock in ms. */
static inline uint64_t corral__now_ms(corral *c) {
    return c->now_ns(c->clock_ctx) / 1000000u;
}

/* ---- invalidate.c ---- */

/* Creates the event rules of a handle (none registered) / frees them. */
int corral__rules_new(corral *c);
void corral__rules_free(corral *c);

/* ---- loader.c ---- */

/* Creates the loader's state of a handle: the single-flight table (flight.h) and the refresh
 * workers' queue (no thread yet). corral__loader_close stops the workers (they finish the
 * queue), then frees the table (flights still led are finished with CORRAL_ETIMEDOUT first); it
 * accepts a handle whose corral__loader_new failed part way. */
int corral__loader_new(corral *c);
void corral__loader_close(corral *c);

#endif /* CORRAL_HANDLE_H */
