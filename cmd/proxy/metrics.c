/*
 * metrics.c - corral-proxy's Prometheus metrics: per-route counters (PX_COUNTERS in proxy.h,
 * one row each, from which the struct, the HELP lines and docs/proxy.md's table come), the
 * origin latency histogram, gauges, objects and bytes per route (from libcorral's per-prefix
 * stats: every key of a route starts with the route's name), then libcorral's own text.
 *
 * Data model: each worker has a px_metrics block and is its only writer (the admin listener
 * has its own); the scrape on the main thread sums the blocks. Counters are relaxed atomics
 * written with a plain load and store (one writer, so no lock prefix on the hot path) and read
 * with relaxed loads: a scrape sees each counter whole, maybe a few increments behind.
 * Cardinality is bounded: routes get one of PX_METRIC_SLOTS slots by name, for the life of the
 * process (a reload that renames routes keeps the old series), and the rest share "other".
 *
 * Threads: px_metrics_add / _latency on the block owner's thread; px_metrics_slot and
 * px_metrics_text on the main thread.
 */
#include "proxy.h"
#include "../../src/prom.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds of the latency buckets, microseconds (the last bucket is +Inf). */
static const uint64_t bucket_us[PX_LATENCY_BUCKETS] = { 1000,   2500,    5000,    10000,
                                                        25000,  50000,   100000,  250000,
                                                        500000, 1000000, 2500000, 5000000 };

static const char *const bucket_le[PX_LATENCY_BUCKETS] = { "0.001", "0.0025", "0.005", "0.01",
                                                           "0.025", "0.05",   "0.1",   "0.25",
                                                           "0.5",   "1",      "2.5",   "5" };

unsigned px_metrics_slot(px_slots *s, const char *name) {
    unsigned n = atomic_load_explicit(&s->n, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        if (strcmp(s->names[i], name) == 0) return i;
    }
    if (n == PX_METRIC_SLOTS) return PX_METRIC_SLOTS;
    size_t len = strlen(name);
    if (len > PX_ROUTE_NAME_MAX) len = PX_ROUTE_NAME_MAX;
    memcpy(s->names[n], name, len);
    s->names[n][len] = '\0';
    atomic_store_explicit(&s->n, n + 1, memory_order_release);
    return n;
}

static void bump(atomic_uint_fast64_t *c, uint64_t n) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void px_metrics_add(px_metrics *m, unsigned slot, unsigned counter, uint64_t n) {
    if (slot > PX_METRIC_SLOTS || counter >= PX_M_COUNT || n == 0) return;
    bump(&m->c[slot][counter], n);
}

void px_metrics_latency(px_metrics *m, unsigned slot, uint64_t us) {
    if (slot > PX_METRIC_SLOTS) return;
    unsigned b = 0;
    while (b < PX_LATENCY_BUCKETS && us > bucket_us[b])
        b++;
    bump(&m->lat[slot][b], 1);
    bump(&m->lat_sum_us[slot], us);
}

/* ---- Text ---- */

/* The text being written; `rc` is the first failure (PX_ENOMEM, PX_EINVAL), after which nothing
 * more is written. */
typedef struct text {
    char *p;
    size_t len, cap;
    int rc;
} text;

static void put(text *t, const char *fmt, ...) {
    if (t->rc < 0) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->rc = PX_EINVAL;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->rc = PX_ENOMEM;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* A family's HELP and TYPE lines, from the library's one writer (src/prom.h). */
static void family(text *t, const char *name, const char *type, const char *help) {
    char head[CORRAL__PROM_HEAD_MAX];
    const char *h = corral__prom_head(head, "corral_proxy_", name, type, help);
    if (h)
        put(t, "%s", h);
    else if (t->rc == PX_OK)
        t->rc = PX_EINVAL; /* a name or help text past CORRAL__PROM_HEAD_MAX */
}

static uint64_t sum_counter(px_proxy *px, unsigned slot, unsigned counter) {
    uint64_t s = 0;
    for (unsigned w = 0; w < px->n_workers; w++)
        s += atomic_load_explicit(&px->metrics[w].c[slot][counter], memory_order_relaxed);
    s += atomic_load_explicit(&px->admin_metrics->c[slot][counter], memory_order_relaxed);
    return s;
}

static const char *slot_name(px_proxy *px, unsigned slot) {
    return slot == PX_METRIC_SLOTS ? "other" : px->slots.names[slot];
}

int px_metrics_text(px_proxy *px, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    text t = { .cap = 16384, .rc = PX_OK };
    t.p = malloc(t.cap);
    if (!t.p) return PX_ENOMEM;
    t.p[0] = '\0';
    unsigned nslots = atomic_load_explicit(&px->slots.n, memory_order_acquire);
    static const struct {
        const char *name, *help;
    } counters[] = {
#define PX_ROW(name, help) { #name, help },
        PX_COUNTERS(PX_ROW)
#undef PX_ROW
    };
    for (unsigned k = 0; k < PX_M_COUNT; k++) {
        family(&t, counters[k].name, "counter", counters[k].help);
        for (unsigned s = 0; s <= PX_METRIC_SLOTS; s++) {
            if (s >= nslots && s != PX_METRIC_SLOTS) continue;
            uint64_t v = sum_counter(px, s, k);
            if (s == PX_METRIC_SLOTS && v == 0) continue;
            put(&t, "corral_proxy_%s{route=\"%s\"} %" PRIu64 "\n", counters[k].name,
                slot_name(px, s), v);
        }
    }
    family(&t, "origin_latency_seconds", "histogram",
           "Time from sending a request to the origin to receiving its response head");
    for (unsigned s = 0; s <= PX_METRIC_SLOTS; s++) {
        if (s >= nslots && s != PX_METRIC_SLOTS) continue;
        uint64_t cum = 0, sum_us = 0;
        uint64_t b[PX_LATENCY_BUCKETS + 1] = { 0 };
        for (unsigned w = 0; w < px->n_workers; w++) {
            for (unsigned i = 0; i <= PX_LATENCY_BUCKETS; i++)
                b[i] += atomic_load_explicit(&px->metrics[w].lat[s][i], memory_order_relaxed);
            sum_us += atomic_load_explicit(&px->metrics[w].lat_sum_us[s], memory_order_relaxed);
        }
        uint64_t total = 0;
        for (unsigned i = 0; i <= PX_LATENCY_BUCKETS; i++)
            total += b[i];
        if (s == PX_METRIC_SLOTS && total == 0) continue;
        const char *name = slot_name(px, s);
        for (unsigned i = 0; i < PX_LATENCY_BUCKETS; i++) {
            cum += b[i];
            put(&t,
                "corral_proxy_origin_latency_seconds_bucket{route=\"%s\",le=\"%s\"} %" PRIu64 "\n",
                name, bucket_le[i], cum);
        }
        put(&t,
            "corral_proxy_origin_latency_seconds_bucket{route=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
            name, total);
        put(&t, "corral_proxy_origin_latency_seconds_sum{route=\"%s\"} %" PRIu64 ".%06" PRIu64 "\n",
            name, sum_us / 1000000, sum_us % 1000000);
        put(&t, "corral_proxy_origin_latency_seconds_count{route=\"%s\"} %" PRIu64 "\n", name,
            total);
    }
    int64_t conns = 0, oconns = 0;
    uint64_t purges[3] = { 0, 0, 0 }, rejected = 0;
    int64_t bufs = 0;
    for (unsigned w = 0; w < px->n_workers; w++) {
        bufs += atomic_load_explicit(&px->metrics[w].buffer_bytes, memory_order_relaxed);
        conns += atomic_load_explicit(&px->metrics[w].connections, memory_order_relaxed);
        rejected += atomic_load_explicit(&px->metrics[w].rejected, memory_order_relaxed);
        oconns += atomic_load_explicit(&px->metrics[w].origin_connections, memory_order_relaxed);
    }
    for (unsigned k = 0; k < 3; k++)
        purges[k] =
            atomic_load_explicit(&px->admin_metrics->purge_requests[k], memory_order_relaxed);
    family(&t, "connections", "gauge", "Open client connections");
    put(&t, "corral_proxy_connections %" PRId64 "\n", conns);
    family(&t, "connections_rejected_total", "counter",
           "Client connections answered 503 and closed: over max_connections or "
           "max_worker_connections");
    put(&t, "corral_proxy_connections_rejected_total %" PRIu64 "\n", rejected);
    family(&t, "client_buffer_bytes", "gauge",
           "Client connection buffers allocated: held by connections reading or handling a "
           "request (idle ones hold none), and each worker's spares");
    put(&t, "corral_proxy_client_buffer_bytes %" PRId64 "\n", bufs);
    family(&t, "origin_connections", "gauge", "Open origin connections (busy and pooled)");
    put(&t, "corral_proxy_origin_connections %" PRId64 "\n", oconns);
    family(&t, "access_log_dropped_lines_total", "counter",
           "Access log lines dropped: its writer was 4 MiB behind (a log that blocks), or a write "
           "failed");
    put(&t, "corral_proxy_access_log_dropped_lines_total %" PRIu64 "\n", px_alog_dropped(px->alog));
    family(&t, "purge_requests_total", "counter", "Admin purge requests by kind");
    put(&t,
        "corral_proxy_purge_requests_total{kind=\"url\"} %" PRIu64 "\n"
        "corral_proxy_purge_requests_total{kind=\"surrogate_key\"} %" PRIu64 "\n"
        "corral_proxy_purge_requests_total{kind=\"prefix\"} %" PRIu64 "\n",
        purges[0], purges[1], purges[2]);
    corral_stats_snapshot *snap = NULL;
    if (corral_stats(px->cache, &snap) == CORRAL_OK) {
        family(&t, "objects", "gauge",
               "Entries the store holds for the route (variants, plus one vary record per URL)");
        for (size_t i = 0; i < snap->n_prefixes; i++) {
            for (unsigned s = 0; s < nslots; s++) {
                if (strcmp(snap->prefixes[i].prefix, px->slots.names[s]) == 0)
                    put(&t, "corral_proxy_objects{route=\"%s\"} %" PRId64 "\n", px->slots.names[s],
                        snap->prefixes[i].items);
            }
        }
        family(&t, "bytes", "gauge", "Bytes the store holds for the route");
        for (size_t i = 0; i < snap->n_prefixes; i++) {
            for (unsigned s = 0; s < nslots; s++) {
                if (strcmp(snap->prefixes[i].prefix, px->slots.names[s]) == 0)
                    put(&t, "corral_proxy_bytes{route=\"%s\"} %" PRId64 "\n", px->slots.names[s],
                        snap->prefixes[i].bytes);
            }
        }
        corral_stats_free(px->cache, snap);
    }
    char *lib = NULL;
    size_t lib_len = 0;
    if (corral_metrics_write(px->cache, &lib, &lib_len) == CORRAL_OK) {
        put(&t, "%.*s", (int)lib_len, lib);
        corral_free(px->cache, lib);
    }
    if (t.rc < 0) {
        free(t.p);
        return t.rc;
    }
    *out = t.p;
    *len = t.len;
    return PX_OK;
}
