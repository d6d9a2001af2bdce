/*
 * metrics_list.h - every per-prefix metric, declared once.
 *
 * X(name, TYPE, help): `name` is the Prometheus name without the "corral_" prefix; TYPE is
 * COUNTER or GAUGE. The counter enum, the stripes, the Prometheus HELP/TYPE lines and the
 * stats snapshot are all generated from these rows. Every series carries a `prefix` label.
 */
#define CORRAL__PREFIX_METRICS(X)                                             \
    X(cache_hits_total, COUNTER, "Lookups that found a live entry")           \
    X(cache_misses_total, COUNTER, "Lookups that found no live entry")        \
    X(cache_sets_total, COUNTER, "Values written (set, add, set_many, incr)") \
    X(cache_deletes_total, COUNTER, "Entries removed by delete or clear")     \
    X(cache_evictions_total, COUNTER, "Entries evicted to make room")         \
    X(cache_expirations_total, COUNTER, "Entries removed after their expiry") \
    X(cache_items, GAUGE, "Live entries held in the store")                   \
    X(cache_bytes, GAUGE, "Bytes held in the store: keys, values and per-entry overhead")
