/*
 * stats.h - what `corral stats` and `corral top` share: targets, and tables of per-prefix (or
 * per-route) counters read from them.
 *
 * A target is a Prometheus endpoint of a corral process (http://host:port[/path]; the path
 * defaults to /metrics) or a redis:// or redis+cluster:// URL. From Prometheus text a row is made
 * per `prefix` label of the corral_cache_* series (libcorral) and per `route` label of the
 * corral_proxy_* series (corral-proxy, whose cache prefixes are its route names): for a route the
 * HTTP counters (requests, hits, misses, origin fetches as loads, stale served) take the place of
 * the library's, and evictions, items and bytes come from the library's series of the same
 * name. From Redis, items and bytes per prefix are sampled (collect.c).
 *
 * Several targets are summed row by row into one fleet table. Counters are totals since each
 * process started; `top` turns two readings into rates.
 */
#ifndef CORRAL_CLI_STATS_H
#define CORRAL_CLI_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct stat_row {
    char name[64];
    bool is_route;  /* a corral-proxy route (else a library prefix) */
    bool internal;  /* corral's own keys (corral.internal, the proxy's ~purge stamps) */
    bool estimated; /* items/bytes scaled up from a partial Redis sample */
    double requests, hits, misses, loads, stale, evictions; /* counters */
    double items, bytes;                                    /* gauges */
} stat_row;

typedef struct stat_table {
    stat_row *rows;
    size_t n, cap;
} stat_table;

enum { TARGET_HTTP, TARGET_REDIS, TARGET_CLUSTER };

typedef struct target {
    const char *spec;  /* as given */
    char shown[1024];  /* spec with its credentials hidden (corral_url_redact): what is printed */
    const char *token; /* the admin bearer token, for the http targets it was asked for (--token-to,
                        * or the only http target); "" for none */
    int kind;
    bool ok;
    bool partial;   /* ok, but some of a cluster's primaries failed: `why` names them */
    char why[256];  /* when !ok or partial: one line, "connection refused", "line 1: bad metric
                     * name", "primary 127.0.0.1:7002: connection refused" */
    char note[512]; /* when ok, about a Redis sample: "sampled 1000 of 5000 keys (scaled)" */
    stat_table t;
} target;

/* Reads one target into t->t (replacing what it held). `timeout_ms` bounds each network
 * exchange, `sample_ms` a Redis sample. Sets ok, why and note. Returns 0 or -1 (t->why set). */
int target_fetch(target *t, int timeout_ms, int sample_ms);
/* Classifies a spec; returns -1 for one that is neither http:// nor redis://, redis+unix:// or
 * redis+cluster://. */
int target_kind(const char *spec);

/* Parses Prometheus text into rows (exposed for tests). Returns 0, or -1 with `why`: a parse
 * error, or text without any corral series ("no corral metrics"). */
int table_from_prometheus(stat_table *t, const char *text, size_t len, char *why, size_t cap);

stat_row *table_row(stat_table *t, const char *name); /* finds or adds; NULL on no memory */
void table_clear(stat_table *t);
void table_free(stat_table *t);
/* Adds src's rows into dst by name. Returns 0 or -1 (no memory). */
int table_add(stat_table *dst, const stat_table *src);
/* dst = (cur - prev) / secs for counters, cur for gauges; rows absent from prev count from 0,
 * a counter that went down (a restart) counts from 0. Returns 0 or -1. */
int table_rates(stat_table *dst, const stat_table *cur, const stat_table *prev, double secs);

/* Sort keys of table_sort. */
enum { SORT_REQUESTS, SORT_HITRATE, SORT_MISSES, SORT_NAME };
void table_sort(stat_table *t, int key);

/* Hit rate in percent, or a negative number when the row saw no hit and no miss. */
double row_hit_rate(const stat_row *r);

/* Writes the table: one line per row (internal rows only with `all`), a total line, flags on
 * rows under 90%. `rates`: counters are per second. `width` 0: no limit. */
void table_print(FILE *f, const stat_table *t, bool all, bool rates);
void table_json(FILE *f, const stat_table *t, bool all);

/* Parses the options and targets of stats and top (stats.c). Returns CLI_OK with `*out` an
 * array of `*n_out` targets (free()), or CLI_USAGE after printing why. */
typedef struct stats_opts {
    bool json, all;
    int sample_ms;   /* --sample-ms: a Redis sample's bound */
    int interval_ms; /* --interval (top) */
    int timeout_ms;  /* --timeout: each network exchange with a target */
    long count;      /* --count (top): tables to show, 0 for no end */
} stats_opts;

int stats_parse(int argc, char **argv, const char *cmd, target **out, size_t *n_out, stats_opts *o);

#endif /* CORRAL_CLI_STATS_H */
