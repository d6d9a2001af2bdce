/*
 * collect.c - reading targets into tables (stats.h): Prometheus text of corral processes, and
 * samples of a Redis database.
 *
 * Redis: SCAN (never KEYS, which blocks the server for the whole keyspace) in batches of 1000,
 * MEMORY USAGE of each key under the URL's "KEY_PREFIX:" pipelined per batch, until the scan
 * ends or `sample_ms` passes (or a million keys were seen). A partial sample is scaled up by
 * DBSIZE / keys seen, and its rows say they are estimates. Each physical key is classified as
 * the library counts it (src/key.c, corral__key_metric_prefix): after "KEY_PREFIX:VERSION:"
 * (and a namespace's "<ns>.<generation>:"), the user key up to its first ':', or
 * "template.cache.<name>" for a fragment key; tag and namespace versions
 * ("KEY_PREFIX:tag:...", "KEY_PREFIX:ns:...") are corral.internal.
 *
 * A Redis Cluster (redis+cluster://) spreads the keys over its primaries by slot, so every
 * primary (CLUSTER SLOTS from the first seed that answers) is sampled and the rows summed;
 * replicas hold copies and are not read.
 */
#include "stats.h"
#include "net.h"
#include "prom_parse.h"

#include "corral/corral.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SCAN_BATCH     "1000"
#define SAMPLE_MAX_KEY 1000000

/* ---- Tables ---- */

stat_row *table_row(stat_table *t, const char *name) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->rows[i].name, name) == 0) return &t->rows[i];
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        stat_row *nr = realloc(t->rows, ncap * sizeof *nr);
        if (!nr) return NULL;
        t->rows = nr;
        t->cap = ncap;
    }
    stat_row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->internal = strcmp(name, "corral.internal") == 0 || name[0] == '~';
    return r;
}

void table_clear(stat_table *t) {
    t->n = 0;
}

void table_free(stat_table *t) {
    free(t->rows);
    *t = (stat_table){ 0 };
}

int table_add(stat_table *dst, const stat_table *src) {
    for (size_t i = 0; i < src->n; i++) {
        const stat_row *s = &src->rows[i];
        stat_row *d = table_row(dst, s->name);
        if (!d) return -1;
        d->is_route |= s->is_route;
        d->estimated |= s->estimated;
        d->requests += s->requests;
        d->hits += s->hits;
        d->misses += s->misses;
        d->loads += s->loads;
        d->stale += s->stale;
        d->evictions += s->evictions;
        d->items += s->items;
        d->bytes += s->bytes;
    }
    return 0;
}

static double rate(double cur, double prev, double secs) {
    return (cur >= prev ? cur - prev : cur) / secs;
}

int table_rates(stat_table *dst, const stat_table *cur, const stat_table *prev, double secs) {
    table_clear(dst);
    for (size_t i = 0; i < cur->n; i++) {
        const stat_row *c = &cur->rows[i];
        stat_row zero = { 0 }, *p = &zero;
        for (size_t j = 0; j < prev->n; j++)
            if (strcmp(prev->rows[j].name, c->name) == 0) p = &prev->rows[j];
        stat_row *d = table_row(dst, c->name);
        if (!d) return -1;
        *d = *c;
        d->requests = rate(c->requests, p->requests, secs);
        d->hits = rate(c->hits, p->hits, secs);
        d->misses = rate(c->misses, p->misses, secs);
        d->loads = rate(c->loads, p->loads, secs);
        d->stale = rate(c->stale, p->stale, secs);
        d->evictions = rate(c->evictions, p->evictions, secs);
    }
    return 0;
}

double row_hit_rate(const stat_row *r) {
    double n = r->hits + r->misses;
    return n > 0 ? 100.0 * r->hits / n : -1.0;
}

static int cmp_requests(const void *a, const void *b) {
    const stat_row *x = a, *y = b;
    if (x->requests != y->requests) return x->requests < y->requests ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int cmp_hitrate(const void *a, const void *b) {
    /* Lowest first: the rows to look at. Rows without traffic last. */
    double x = row_hit_rate(a), y = row_hit_rate(b);
    if (x < 0) x = 1000;
    if (y < 0) y = 1000;
    if (x != y) return x < y ? -1 : 1;
    return cmp_requests(a, b);
}

static int cmp_misses(const void *a, const void *b) {
    const stat_row *x = a, *y = b;
    if (x->misses != y->misses) return x->misses < y->misses ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const stat_row *)a)->name, ((const stat_row *)b)->name);
}

void table_sort(stat_table *t, int key) {
    int (*cmp)(const void *, const void *) = key == SORT_HITRATE  ? cmp_hitrate
                                             : key == SORT_MISSES ? cmp_misses
                                             : key == SORT_NAME   ? cmp_name
                                                                  : cmp_requests;
    if (t->n) qsort(t->rows, t->n, sizeof *t->rows, cmp);
}

/* ---- Prometheus ---- */

typedef struct prom_ctx {
    stat_table cache, proxy;
    bool corral_seen;
    bool nomem;
} prom_ctx;

/* Where a series goes: its field in a row, or NULL. */
static double *cache_field(stat_row *r, const char *name) {
    static const char p[] = "corral_cache_";
    if (strncmp(name, p, sizeof p - 1) != 0) return NULL;
    name += sizeof p - 1;
    if (!strcmp(name, "hits_total")) return &r->hits;
    if (!strcmp(name, "misses_total")) return &r->misses;
    if (!strcmp(name, "loads_total")) return &r->loads;
    if (!strcmp(name, "stale_served_total")) return &r->stale;
    if (!strcmp(name, "evictions_total")) return &r->evictions;
    if (!strcmp(name, "items")) return &r->items;
    if (!strcmp(name, "bytes")) return &r->bytes;
    return NULL;
}

static double *proxy_field(stat_row *r, const char *name) {
    static const char p[] = "corral_proxy_";
    if (strncmp(name, p, sizeof p - 1) != 0) return NULL;
    name += sizeof p - 1;
    if (!strcmp(name, "requests_total")) return &r->requests;
    if (!strcmp(name, "hits_total")) return &r->hits;
    if (!strcmp(name, "misses_total")) return &r->misses;
    if (!strcmp(name, "origin_fetches_total")) return &r->loads;
    if (!strcmp(name, "stale_total")) return &r->stale;
    if (!strcmp(name, "objects")) return &r->items;
    if (!strcmp(name, "bytes")) return &r->bytes;
    return NULL;
}

static int on_sample(void *arg, const prom_sample *s) {
    prom_ctx *pc = arg;
    if (strncmp(s->name, "corral_", 7) == 0) pc->corral_seen = true;
    const char *prefix = prom_label_get(s, "prefix");
    const char *route = prom_label_get(s, "route");
    stat_row probe;
    if (prefix && cache_field(&probe, s->name)) {
        stat_row *r = table_row(&pc->cache, prefix);
        if (!r) goto nomem;
        *cache_field(r, s->name) += s->value;
    } else if (route && proxy_field(&probe, s->name)) {
        stat_row *r = table_row(&pc->proxy, route);
        if (!r) goto nomem;
        r->is_route = true;
        *proxy_field(r, s->name) += s->value;
    }
    return 0;
nomem:
    pc->nomem = true;
    return 1;
}

int table_from_prometheus(stat_table *t, const char *text, size_t len, char *why, size_t cap) {
    prom_ctx pc = { 0 };
    char perr[200] = "";
    int rc = prom_parse(text, len, on_sample, &pc, perr, sizeof perr);
    if (rc < 0 && !pc.nomem) snprintf(why, cap, "not Prometheus text: %s", perr);
    table_clear(t);
    if (rc == 0 && !pc.corral_seen) {
        snprintf(why, cap, "no corral metrics in the answer");
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < pc.proxy.n; i++) {
        stat_row *r = table_row(t, pc.proxy.rows[i].name);
        if (!r) break;
        *r = pc.proxy.rows[i];
        /* Evictions are the library's: the proxy's cache prefixes are its route names. */
        for (size_t j = 0; j < pc.cache.n; j++)
            if (strcmp(pc.cache.rows[j].name, r->name) == 0)
                r->evictions = pc.cache.rows[j].evictions;
    }
    for (size_t i = 0; rc == 0 && i < pc.cache.n; i++) {
        stat_row *c = &pc.cache.rows[i];
        bool routed = false;
        for (size_t j = 0; j < pc.proxy.n; j++)
            routed |= strcmp(pc.proxy.rows[j].name, c->name) == 0;
        if (routed) continue;
        stat_row *r = table_row(t, c->name);
        if (!r) break;
        *r = *c;
        r->requests = c->hits + c->misses;
    }
    if (pc.nomem || (rc == 0 && t->n < pc.proxy.n)) {
        snprintf(why, cap, "out of memory");
        rc = -1;
    }
    table_free(&pc.cache);
    table_free(&pc.proxy);
    return rc < 0 ? -1 : 0;
}

/* ---- Redis ---- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The metrics prefix of the user part of a physical key (after "KEY_PREFIX:"), into out. */
static void classify(const char *rest, size_t len, char *out, size_t cap) {
    size_t i = 0;
    if (i < len && rest[i] == '-') i++;
    size_t digits = i;
    while (i < len && rest[i] >= '0' && rest[i] <= '9')
        i++;
    if (i == digits || i == len || rest[i] != ':') {
        bool internal =
            (len > 4 && memcmp(rest, "tag:", 4) == 0) || (len > 3 && memcmp(rest, "ns:", 3) == 0);
        snprintf(out, cap, "%s", internal ? "corral.internal" : "other");
        return;
    }
    const char *k = rest + i + 1;
    size_t kl = len - i - 1;
    /* A namespace's "<ns>.<generation>:" before the user key. */
    const char *colon = memchr(k, ':', kl);
    if (colon) {
        const char *dot = memchr(k, '.', (size_t)(colon - k));
        bool gen = dot && dot + 1 < colon;
        for (const char *p = dot ? dot + 1 : colon; gen && p < colon; p++)
            gen = *p >= '0' && *p <= '9';
        if (gen) {
            kl -= (size_t)(colon + 1 - k);
            k = colon + 1;
        }
    }
    static const char frag[] = "template.cache.";
    size_t n;
    if (kl > sizeof frag - 1 && memcmp(k, frag, sizeof frag - 1) == 0) {
        n = kl;
        while (n > sizeof frag - 1 && k[n - 1] != '.')
            n--;
        n = n > sizeof frag - 1 ? n - 1 : kl;
    } else {
        const char *c = memchr(k, ':', kl);
        n = c ? (size_t)(c - k) : kl;
    }
    if (n >= cap) n = cap - 1;
    memcpy(out, k, n);
    out[n] = '\0';
}

/* The URL's key_prefix, into out. */
static int url_key_prefix(const char *url, char *out, size_t cap) {
    corral_options o;
    corral_options_init(&o);
    size_t bcap = strlen(url) + 1;
    char *buf = malloc(bcap);
    int rc = buf ? corral_options_parse_url(&o, url, buf, bcap, NULL) : CORRAL_ENOMEM;
    if (rc == CORRAL_OK) snprintf(out, cap, "%s", o.key_prefix ? o.key_prefix : "");
    free(buf);
    return rc;
}

/* What a sample of one server saw. */
typedef struct sample_count {
    long long dbsize, seen, matched;
    bool complete;
} sample_count;

static bool ours(const redisReply *k, const char *kp, size_t kpl) {
    return k->type == REDIS_REPLY_STRING && k->len > kpl && memcmp(k->str, kp, kpl) == 0 &&
           k->str[kpl] == ':';
}

/* Samples one server into `out` (cleared first) until `deadline` (at least one SCAN batch):
 * items and MEMORY USAGE bytes per prefix of the keys under "kp:", scaled up to the server's
 * DBSIZE when the SCAN did not finish. Returns 0, or -1 with `why`. */
static int sample_server(redisContext *ctx, const char *kp, int64_t deadline, stat_table *out,
                         sample_count *cnt, char *why, size_t why_cap) {
    size_t kpl = strlen(kp);
    char cursor[32] = "0";
    int ret = -1;
    *cnt = (sample_count){ 0 };
    table_clear(out);
    redisReply *r = redisCommand(ctx, "DBSIZE");
    if (!r || r->type != REDIS_REPLY_INTEGER) goto fail;
    cnt->dbsize = r->integer;
    freeReplyObject(r);
    r = NULL;
    for (bool first = true;
         !cnt->complete && (first || (now_ms() < deadline && cnt->seen < SAMPLE_MAX_KEY));
         first = false) {
        const char *av[4] = { "SCAN", cursor, "COUNT", SCAN_BATCH };
        r = redisCommandArgv(ctx, 4, av, NULL);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY)
            goto fail;
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        cnt->complete = strcmp(cursor, "0") == 0;
        redisReply *keys = r->element[1];
        size_t n = 0;
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *k = keys->element[i];
            cnt->seen++;
            if (!ours(k, kp, kpl)) continue;
            const char *mav[3] = { "MEMORY", "USAGE", k->str };
            size_t mlen[3] = { 6, 5, k->len };
            if (redisAppendCommandArgv(ctx, 3, mav, mlen) != REDIS_OK) goto fail;
            n++;
        }
        for (size_t i = 0, j = 0; i < keys->elements && j < n; i++) {
            redisReply *k = keys->element[i];
            if (!ours(k, kp, kpl)) continue;
            j++;
            redisReply *mu;
            if (redisGetReply(ctx, (void **)&mu) != REDIS_OK || !mu) goto fail;
            char name[64];
            classify(k->str + kpl + 1, k->len - kpl - 1, name, sizeof name);
            stat_row *row = table_row(out, name);
            if (!row) {
                freeReplyObject(mu);
                goto fail;
            }
            row->items += 1;
            if (mu->type == REDIS_REPLY_INTEGER) row->bytes += (double)mu->integer;
            freeReplyObject(mu);
            cnt->matched++;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (!cnt->complete && cnt->seen > 0 && cnt->dbsize > cnt->seen) {
        double scale = (double)cnt->dbsize / (double)cnt->seen;
        for (size_t i = 0; i < out->n; i++) {
            out->rows[i].items *= scale;
            out->rows[i].bytes *= scale;
            out->rows[i].estimated = true;
        }
    } else {
        cnt->complete = true; /* every key seen (or more than DBSIZE said) */
    }
    ret = 0;
fail:
    if (ret < 0) {
        if (ctx->err)
            snprintf(why, why_cap, "%s", ctx->errstr);
        else if (r && r->type == REDIS_REPLY_ERROR)
            snprintf(why, why_cap, "%s", r->str);
        else
            snprintf(why, why_cap, "unexpected reply to SCAN or MEMORY USAGE");
    }
    if (r) freeReplyObject(r);
    return ret;
}

/* The note of a sample: what was seen, and whether it was scaled. */
static void sample_note(target *t, const sample_count *c, int sample_ms, const char *kp,
                        const char *where) {
    if (!c->complete)
        snprintf(t->note, sizeof t->note,
                 "%ssampled %lld of %lld keys in %d ms (%lld under \"%s:\"), scaled", where,
                 c->seen, c->dbsize, sample_ms, c->matched, kp);
    else
        snprintf(t->note, sizeof t->note, "%s%lld keys, %lld under \"%s:\"", where, c->seen,
                 c->matched, kp);
}

static int sample_redis(target *t, int timeout_ms, int sample_ms) {
    char kp[256];
    if (url_key_prefix(t->spec, kp, sizeof kp) != CORRAL_OK) {
        snprintf(t->why, sizeof t->why, "bad cache URL");
        return -1;
    }
    redisContext *ctx = cli_redis_connect(t->spec, timeout_ms, t->why, sizeof t->why);
    if (!ctx) return -1;
    sample_count c;
    int rc = sample_server(ctx, kp, now_ms() + sample_ms, &t->t, &c, t->why, sizeof t->why);
    if (rc == 0) sample_note(t, &c, sample_ms, kp, "");
    redisFree(ctx);
    return rc;
}

/* A Redis Cluster: every primary sampled in turn (the keys are spread over them by slot), each
 * within its share of --sample-ms (time a primary leaves goes to the next), each scaled by its
 * own DBSIZE. A primary that fails is named in `why` and the others are still summed
 * (t->partial): a primary down loses its keys' rows, not the table. */
static int sample_cluster(target *t, int timeout_ms, int sample_ms) {
    char kp[256];
    if (url_key_prefix(t->spec, kp, sizeof kp) != CORRAL_OK) {
        snprintf(t->why, sizeof t->why, "bad cache URL");
        return -1;
    }
    cli_node nodes[64];
    int n = cli_cluster_primaries(t->spec, timeout_ms, nodes, 64, t->why, sizeof t->why);
    if (n < 0) return -1;
    table_clear(&t->t);
    stat_table one = { 0 };
    sample_count sum = { .complete = true };
    int64_t start = now_ms();
    int ok = 0;
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        char why[200];
        sample_count c;
        redisContext *ctx = cli_redis_connect_node(t->spec, nodes[i], timeout_ms, why, sizeof why);
        int rc = ctx ? sample_server(ctx, kp, start + (int64_t)sample_ms * (i + 1) / n, &one, &c,
                                     why, sizeof why)
                     : -1;
        if (ctx) redisFree(ctx);
        if (rc == 0 && table_add(&t->t, &one) < 0) {
            snprintf(why, sizeof why, "out of memory");
            rc = -1;
        }
        if (rc < 0) {
            if (used < sizeof t->why)
                used += (size_t)snprintf(t->why + used, sizeof t->why - used, "%sprimary %s: %s",
                                         used ? "; " : "", nodes[i], why);
            continue;
        }
        ok++;
        sum.dbsize += c.dbsize;
        sum.seen += c.seen;
        sum.matched += c.matched;
        sum.complete &= c.complete;
    }
    table_free(&one);
    if (ok == 0) return -1;
    char where[64];
    snprintf(where, sizeof where, "%d of %d primaries: ", ok, n);
    if (ok == n) snprintf(where, sizeof where, "%d primaries: ", n);
    sample_note(t, &sum, sample_ms, kp, where);
    t->partial = ok < n;
    return 0;
}

/* ---- Targets ---- */

int target_kind(const char *spec) {
    if (strncmp(spec, "http://", 7) == 0) return TARGET_HTTP;
    if (strncmp(spec, "redis://", 8) == 0 || strncmp(spec, "redis+unix://", 13) == 0)
        return TARGET_REDIS;
    if (strncmp(spec, "redis+cluster://", 16) == 0) return TARGET_CLUSTER;
    return -1;
}

int target_fetch(target *t, int timeout_ms, int sample_ms) {
    t->ok = t->partial = false;
    t->why[0] = t->note[0] = '\0';
    if (t->kind == TARGET_REDIS || t->kind == TARGET_CLUSTER) {
        int rc = t->kind == TARGET_REDIS ? sample_redis(t, timeout_ms, sample_ms)
                                         : sample_cluster(t, timeout_ms, sample_ms);
        t->ok = rc == 0;
        return rc;
    }
    http_url u;
    if (http_url_parse(t->spec, &u, t->why, sizeof t->why) < 0) return -1;
    if (strcmp(u.path, "/") == 0) strcpy(u.path, "/metrics");
    http_response r;
    if (http_request(&u, "GET", u.path, t->token, timeout_ms, &r, t->why, sizeof t->why) < 0)
        return -1;
    if (r.status != 200) {
        /* A token goes only where it was asked for (stats.c): say so when one was missed. */
        snprintf(t->why, sizeof t->why, "HTTP %u %s%s", r.status, r.reason,
                 r.status == 401 && !t->token[0] ? " (no admin token sent here: --token-to)" : "");
        http_response_free(&r);
        return -1;
    }
    int rc = table_from_prometheus(&t->t, r.body, r.body_len, t->why, sizeof t->why);
    http_response_free(&r);
    if (rc < 0) return -1;
    t->ok = true;
    return 0;
}
