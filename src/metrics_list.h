/*
 * metrics_list.h - every per-prefix metric, declared once.
 *
 * X(name, TYPE, help): `name` is the Prometheus name without the "corral_" prefix; TYPE is
 * COUNTER or GAUGE. The counter enum, the stripes, the Prometheus HELP/TYPE lines and the
 * stats snapshot are all generated from these rows. Every series carries a `prefix` label.
 * docs/metrics.md describes every metric; add a row there with each row here (a test in
 * tests/unit/test_metrics.c fails when one is missing).
 */
#define CORRAL__PREFIX_METRICS(X)                                                            \
    X(cache_hits_total, COUNTER, "Lookups that found a live entry")                          \
    X(cache_misses_total, COUNTER, "Lookups that found no live entry")                       \
    X(cache_sets_total, COUNTER, "Values written (set, add, set_many, incr)")                \
    X(cache_deletes_total, COUNTER, "Entries removed by delete or clear")                    \
    X(cache_evictions_total, COUNTER, "Entries evicted to make room")                        \
    X(cache_expirations_total, COUNTER, "Entries removed after their expiry")                \
    X(cache_loads_total, COUNTER, "Producer runs of get_or_set")                             \
    X(cache_load_errors_total, COUNTER, "Producer runs that failed")                         \
    X(cache_load_waiters_total, COUNTER, "Callers that waited on another caller's producer") \
    X(cache_early_refreshes_total, COUNTER, "Refreshes started early by XFetch")             \
    X(cache_stale_served_total, COUNTER, "Expired values served in their grace window")      \
    X(cache_lease_timeouts_total, COUNTER,                                                   \
      "Callers that gave up waiting on another process's lease")                             \
    X(cache_items, GAUGE, "Live entries held in the store")                                  \
    X(cache_bytes, GAUGE, "Bytes held in the store: keys, values and per-entry overhead")

/* H(name, help): per-prefix histograms, in seconds, over CORRAL__HIST_BOUNDS_NS. */
#define CORRAL__PREFIX_HISTOGRAMS(H) \
    H(cache_load_duration_seconds, "Time get_or_set producers took")

/* Upper bounds of the histogram buckets in nanoseconds (then +Inf). */
#define CORRAL__HIST_BOUNDS_NS                                                           \
    {                                                                                    \
        1000000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000, \
            1000000000, 2500000000, 5000000000, 10000000000                              \
    }
#define CORRAL__HIST_NBOUNDS 12
