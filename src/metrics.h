/*
 * metrics.h - per-prefix counters, summed at scrape, and their Prometheus text.
 *
 * A prefix maps to a class (uint16_t): 0 is "other" (prefixes past the bound), 1..max are the
 * first prefixes seen. Counters live in stripes, each laid out [class][metric] and cache-line
 * aligned: the first CORRAL__METRICS_OWNED belong to one thread each, whose adds are a plain
 * load and store of a relaxed atomic; threads beyond them share the rest with atomic adds. A
 * read sums the stripes.
 *
 * Threads: everything is thread-safe. The prefix table is read without locks (slots are
 * published once, with release stores, and never change); inserting a new prefix takes `lock`.
 */
#ifndef CORRAL_METRICS_H
#define CORRAL_METRICS_H

#include "common.h"
#include "metrics_list.h"

#include <stdatomic.h>

enum {
#define X(name, type, help) CORRAL__M_##name,
    CORRAL__PREFIX_METRICS(X)
#undef X
        CORRAL__M_COUNT
};

enum {
#define H(name, help) CORRAL__H_##name,
    CORRAL__PREFIX_HISTOGRAMS(H)
#undef H
        CORRAL__H_COUNT
};

/* A histogram's cells: one per bucket (+Inf last), then the count, then the sum in ns. */
#define CORRAL__H_CELLS (CORRAL__HIST_NBOUNDS + 3)
/* Cells of one class: the counters, then the histograms. */
#define CORRAL__ROW (CORRAL__M_COUNT + CORRAL__H_COUNT * CORRAL__H_CELLS)

/* Stripes of cells: the first CORRAL__METRICS_OWNED each belong to one thread, which adds to
 * its cells with a plain load and store; threads beyond them share the rest, with atomic adds
 * (metrics.c). */
#define CORRAL__METRICS_OWNED     16
#define CORRAL__METRICS_SHARED    4
#define CORRAL__METRICS_STRIPES   (CORRAL__METRICS_OWNED + CORRAL__METRICS_SHARED)
#define CORRAL__METRICS_OTHER     0
#define CORRAL__METRICS_LABEL_MAX 63

typedef struct corral__metrics corral__metrics;

/* Creates the metrics of a handle with room for `max_prefixes` named prefixes. */
int corral__metrics_new(corral__metrics **out, const corral__allocator *a, size_t max_prefixes);
void corral__metrics_free(corral__metrics *m);

/* Returns the class of a metrics prefix, adding it when there is room; CORRAL__METRICS_OTHER when
 * the table is full (or an allocation failed). Lock-free when the prefix is known. */
uint16_t corral__metrics_class(corral__metrics *m, const void *prefix, size_t len);

/* The class of corral's own keys (tag versions, namespace generations): outside the bound,
 * reported as "corral.internal" when used. */
uint16_t corral__metrics_internal_class(corral__metrics *m);

/* Adds `delta` to metric `metric` of class `cls`, on the calling thread's stripe. */
void corral__metrics_add(corral__metrics *m, uint16_t cls, int metric, int64_t delta);

/* A metrics table's id: unique in the process for its lifetime and after (never reused), so
 * that a thread's cached stripe (below) cannot be taken for a stripe of a table made later at
 * the same address. */
uint64_t corral__metrics_id(const corral__metrics *m);

/* The calling thread's cache of the stripe it owns in one metrics table, kept by metrics.c:
 * the table's id, the stripe's index and its first cell. Owned stripes are never released, so
 * the cache holds while the table lives. Initial-exec TLS: no call to reach it. */
typedef struct corral__stripe_cache {
    uint64_t id; /* corral__metrics_id; 0: none */
    size_t stripe;
    _Atomic int64_t *cells;
} corral__stripe_cache;
extern _Thread_local corral__stripe_cache corral__stripe_cached
    __attribute__((tls_model("initial-exec")));

/* corral__metrics_add when the thread has no cached stripe of `m` (metrics.c). */
void corral__metrics_add_slow(corral__metrics *m, uint16_t cls, int metric, int64_t delta);

/* corral__metrics_add, inline, for a caller that keeps the table's id (`id`, which is
 * corral__metrics_id(m)): in the common case, the thread's cached stripe is a stripe of `m`,
 * and the add is a plain load and store. The read path calls it. */
static inline void corral__metrics_add_inline(corral__metrics *m, uint64_t id, uint16_t cls,
                                              int metric, int64_t delta) {
    if (__builtin_expect(corral__stripe_cached.id != id, 0)) {
        corral__metrics_add_slow(m, cls, metric, delta);
        return;
    }
    _Atomic int64_t *cell =
        &corral__stripe_cached.cells[(size_t)cls * CORRAL__ROW + (size_t)metric];
    atomic_store_explicit(cell, atomic_load_explicit(cell, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

/* Records one observation of `ns` nanoseconds in histogram `hist` of class `cls`. */
void corral__metrics_observe(corral__metrics *m, uint16_t cls, int hist, uint64_t ns);

/* Sums the stripes into a snapshot (allocated with `a`, freed with corral__metrics_snapshot_free).
 */
int corral__metrics_snapshot(corral__metrics *m, corral_stats_snapshot **out);
void corral__metrics_snapshot_free(corral__metrics *m, corral_stats_snapshot *s);

/* Appends the Prometheus text of every per-prefix metric, then `extra` (gauges of the store,
 * already formatted; may be NULL), into a new buffer from `a`, size-prefixed for corral_free.
 * See corral_metrics_write. */
int corral__metrics_prometheus(corral__metrics *m, const char *extra, char **out, size_t *out_len);

#endif /* CORRAL_METRICS_H */
