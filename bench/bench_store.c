/*
 * bench_store.c - corral's memory store beside the tables a C developer would write instead,
 * in one process, and its eviction policies beside LRU.
 *
 * What is measured:
 * 1. Get hits. 1,000,000 keys "key:<id>" with 100-byte values; keys drawn from Zipf(0.99)
 *    over a random permutation of the ids (hot keys are scattered in memory). Every get must
 *    hit and return the value written for that id, and the value is read (copied to a stack
 *    buffer and a byte folded into a checksum). Contestants, at 1 and 2 threads:
 *    - corral_get_into on a `mem://` handle (copy into a stack buffer); the handle has
 *      max_memory 1 GiB (room for every key), key_prefix "", no TTL, the default policy, so
 *      its physical keys are ":1:key:<id>", built and validated by corral on every call;
 *    - corral_get (zero-copy refcounted value: copy the bytes out, then unref);
 *    - corral_get_many with 16 keys a call, each value handled as corral_get's (information:
 *      the memory store prefetches a batch's buckets and entries; ns/op is per key);
 *    - a chained hash table under one global pthread mutex (XXH3, the hash family corral
 *      uses; the hash is computed outside the lock, the value copied out under it);
 *    - the same table read with no lock at all: the ceiling of an unsynchronised read.
 * 2. Set throughput, at 1 and 2 threads against the mutex table: overwrites of present keys
 *    (same key streams; the mutex table overwrites the value in place under its lock) by
 *    corral_set and by corral_set_many (16 keys a call; ns/op is per key); and inserts: every
 *    key written once into an empty store (a new handle, max_memory 1 GiB, and a new table for
 *    every run), thread t of n writing ids t, t + n, ... Targets of issue 15 on corral_set:
 *    >= 0.5x the mutex table at 1 thread, >= 1.0x at 2, for overwrites and for inserts.
 * 3. Hit ratio of corral's policies (SIEVE, S3-FIFO) against LRU on the same store, on
 *    Zipf(0.8), Zipf(0.99), and Zipf(0.99) polluted by bursts of never-repeated keys (scans), at
 *    caches of 1% and 10% of the key space. Single-threaded: get_into, and on a miss set.
 *
 * How: key sequences are generated before timing (xoshiro256** with a fixed, printed seed), one
 * per thread, and replayed cyclically; keys are rendered once into a shared array that every
 * contestant reads. Throughput runs last a fixed window; threads start together on a barrier
 * and stop on an atomic flag raised by the main thread. Contestants and thread counts are
 * interleaved, three rounds, and the best round is reported (the machine is shared and noisy;
 * the spread column shows (best - worst) / best). The cache size of a hit-ratio run is set in
 * bytes: items x the bytes per entry measured on the 1M-key store (corral_stats used_bytes /
 * items), so every policy gets the same budget. The first SIM_WARMUP requests of a trace warm
 * the cache and are not counted.
 *
 * Columns: ops/s sums the threads; ns/op is the time one thread spends per operation
 * (threads x 1e9 / ops/s); "vs mutex" is the ratio to the mutex table at the same thread count.
 * Targets of the issue (PASS/MISS, on corral_get_into; the corral_get row shows the same checks
 * for information): at 2 threads >= 4x the mutex table and >= 0.8x the no-lock table; at 1
 * thread >= the mutex table. A MISS does not fail the run; a get that misses or returns a wrong
 * value, or a failed set, does (exit status 1).
 *
 * Usage: bench_store [-q] [-v] [-s SEED] [-p PHASES]; -q is a quick run (short windows, one
 * round, short traces), -v prints every round, PHASES is any of "g" (gets), "w" (sets), "h" (hit
 * ratio), default "gwh".
 */
#include "bench_common.h"

#include "corral/corral.h"

#include <xxhash.h>

#define N_KEYS        1000000u
#define VAL_LEN       100u
#define VAL_CAP       128u
#define SEQ_LEN       (1u << 22) /* ids per thread, replayed cyclically */
#define SEQ_MASK      (SEQ_LEN - 1)
#define MAX_THREADS   2u
#define BATCH         64 /* operations between two looks at the stop flag */
#define DEFAULT_SEED  0x5eed2024c0a1u
#define THROUGHPUT_MB 1024u /* max_memory of the throughput handle: holds all 1M keys */

/* Hit-ratio traces. */
#define SIM_WARMUP   500000u
#define SIM_MEASURED 2000000u
#define SCAN_EVERY   200000u /* Zipf requests between two scans */
#define SCAN_LEN     50000u  /* never-repeated keys per scan */

/* Targets of the issue, on the get-hit table. */
#define TARGET_2T_VS_MUTEX  4.0
#define TARGET_2T_VS_NOLOCK 0.8
#define TARGET_1T_VS_MUTEX  1.0
/* Targets of issue 15, on the sets table. */
#define TARGET_SET_1T 0.5
#define TARGET_SET_2T 1.0

typedef struct config {
    uint64_t seed;
    uint64_t get_window_ns;
    uint64_t set_window_ns;
    unsigned rounds;
    size_t sim_warmup;
    size_t sim_measured;
    bool run_gets, run_sets, run_hits;
    bool verbose; /* print the rate of every round */
    bool quick;   /* -q: a smoke run, not a measurement */
} config;

/* ---- Values: 100 bytes, the id in the first 4, a fixed filler after ---- */

static void value_make(unsigned char *buf, uint32_t id) {
    for (unsigned i = 0; i < VAL_LEN; i++)
        buf[i] = (unsigned char)('a' + i % 26);
    memcpy(buf, &id, sizeof id);
}

/* True when a get returned the value written for `id`. */
static inline bool value_ok(int rc, const unsigned char *buf, size_t len, uint32_t id) {
    if (rc != CORRAL_OK || len != VAL_LEN) return false;
    uint32_t got;
    memcpy(&got, buf, sizeof got);
    return got == id;
}

/* ---- The peer: a chained hash table, as a C developer writes it ---- */

typedef struct peer_node {
    struct peer_node *next;
    uint64_t hash;
    uint32_t key_len;
    uint32_t val_len; /* bytes at val; also its capacity (overwrites of equal size go in place) */
    char key[16];
    unsigned char val[];
} peer_node;

typedef struct peer_table {
    peer_node **buckets;
    size_t mask; /* buckets - 1, a power of two minus one */
    pthread_mutex_t lock;
} peer_table;

static void peer_init(peer_table *t, size_t n_hint) {
    size_t n = 1;
    while (n < n_hint)
        n <<= 1;
    t->buckets = calloc(n, sizeof *t->buckets);
    if (!t->buckets) bench_die("peer: out of memory");
    t->mask = n - 1;
    if (pthread_mutex_init(&t->lock, NULL) != 0) bench_die("pthread_mutex_init");
}

static void peer_deinit(peer_table *t) {
    for (size_t b = 0; b <= t->mask; b++) {
        peer_node *n = t->buckets[b];
        while (n) {
            peer_node *next = n->next;
            free(n);
            n = next;
        }
    }
    free(t->buckets);
    if (pthread_mutex_destroy(&t->lock) != 0) bench_die("pthread_mutex_destroy");
}

static inline peer_node *peer_find(const peer_table *t, const char *key, size_t len, uint64_t h) {
    for (peer_node *n = t->buckets[h & t->mask]; n; n = n->next)
        if (n->hash == h && n->key_len == len && memcmp(n->key, key, len) == 0) return n;
    return NULL;
}

/* Copies the value of `key` into buf; returns its length, or 0 when absent. Takes the lock
 * when `locked`. */
static inline size_t peer_get(peer_table *t, const char *key, size_t len, unsigned char *buf,
                              bool locked) {
    uint64_t h = XXH3_64bits(key, len);
    size_t out = 0;
    if (locked && pthread_mutex_lock(&t->lock) != 0) bench_die("pthread_mutex_lock");
    peer_node *n = peer_find(t, key, len, h);
    if (n) {
        memcpy(buf, n->val, n->val_len);
        out = n->val_len;
    }
    if (locked && pthread_mutex_unlock(&t->lock) != 0) bench_die("pthread_mutex_unlock");
    return out;
}

static inline void peer_set(peer_table *t, const char *key, size_t len, const void *val,
                            size_t val_len) {
    if (len > sizeof((peer_node *)0)->key) bench_die("peer: key too long");
    uint64_t h = XXH3_64bits(key, len);
    if (pthread_mutex_lock(&t->lock) != 0) bench_die("pthread_mutex_lock");
    peer_node *n = peer_find(t, key, len, h);
    if (n && n->val_len == val_len) {
        memcpy(n->val, val, val_len);
    } else {
        peer_node *fresh = malloc(sizeof *fresh + val_len);
        if (!fresh) bench_die("peer: out of memory");
        fresh->hash = h;
        fresh->key_len = (uint32_t)len;
        fresh->val_len = (uint32_t)val_len;
        memcpy(fresh->key, key, len);
        memcpy(fresh->val, val, val_len);
        peer_node **pp = &t->buckets[h & t->mask];
        if (n) { /* unlink the old node of another size */
            while (*pp != n)
                pp = &(*pp)->next;
            *pp = n->next;
            free(n);
            pp = &t->buckets[h & t->mask];
        }
        fresh->next = *pp;
        *pp = fresh;
    }
    if (pthread_mutex_unlock(&t->lock) != 0) bench_die("pthread_mutex_unlock");
}

/* ---- Throughput workers ---- */

typedef struct worker {
    const uint32_t *seq; /* SEQ_LEN key ids of this thread */
    size_t pos;          /* next index into seq; kept from run to run */
    const bench_key *keys;
    corral *c;
    peer_table *t;
    uint32_t stride; /* inserts: the thread count (run_insert) */
    uint64_t bad;    /* gets that missed or returned a wrong value; sets that failed */
    uint64_t sink;   /* folds one byte per value read, so no read is optimised away */
} worker;

/* A get run's end: keeps the worker's place in its key sequence for the next run and adds up
 * its bad answers and checksum. Returns `ops`. */
static uint64_t worker_done(worker *w, size_t pos, uint64_t bad, uint64_t sink, uint64_t ops) {
    w->pos = pos;
    w->bad += bad;
    w->sink += sink;
    return ops;
}

static uint64_t run_get_corral_into(void *p, const atomic_bool *stop) {
    worker *w = p;
    uint64_t ops = 0, bad = 0, sink = 0;
    size_t pos = w->pos;
    unsigned char buf[VAL_CAP] = { 0 };
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j++) {
            uint32_t id = w->seq[pos];
            pos = (pos + 1) & SEQ_MASK;
            const bench_key *k = &w->keys[id];
            size_t len;
            int rc = corral_get_into(w->c, k->s, k->len, NULL, buf, sizeof buf, &len);
            bad += !value_ok(rc, buf, len, id);
            sink += buf[VAL_LEN - 1];
        }
        ops += BATCH;
    }
    return worker_done(w, pos, bad, sink, ops);
}

/* A value read by reference (corral_get, corral_get_many), or NULL: copies its bytes into buf
 * (VAL_CAP bytes) and drops the reference. Returns its length, 0 for NULL. */
static size_t take_value(corral_value *v, unsigned char *buf) {
    if (!v) return 0;
    size_t len = corral_value_len(v);
    memcpy(buf, corral_value_data(v), len <= VAL_CAP ? len : VAL_CAP);
    corral_value_unref(v);
    return len;
}

static uint64_t run_get_corral_ref(void *p, const atomic_bool *stop) {
    worker *w = p;
    uint64_t ops = 0, bad = 0, sink = 0;
    size_t pos = w->pos;
    unsigned char buf[VAL_CAP] = { 0 };
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j++) {
            uint32_t id = w->seq[pos];
            pos = (pos + 1) & SEQ_MASK;
            const bench_key *k = &w->keys[id];
            corral_value *v = NULL;
            int rc = corral_get(w->c, k->s, k->len, NULL, &v);
            size_t len = take_value(rc == CORRAL_OK ? v : NULL, buf);
            bad += !value_ok(rc, buf, len, id);
            sink += buf[VAL_LEN - 1];
        }
        ops += BATCH;
    }
    return worker_done(w, pos, bad, sink, ops);
}

/* corral_get_many in batches of MANY keys: zero-copy values, each copied out and unreffed as
 * the corral_get row does. ns/op is per key. */
#define MANY 16

static uint64_t run_get_corral_many(void *p, const atomic_bool *stop) {
    worker *w = p;
    uint64_t ops = 0, bad = 0, sink = 0;
    size_t pos = w->pos;
    unsigned char buf[VAL_CAP] = { 0 };
    corral_buf keys[MANY];
    uint32_t ids[MANY];
    corral_value *out[MANY];
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j += MANY) {
            for (int m = 0; m < MANY; m++) {
                ids[m] = w->seq[pos];
                pos = (pos + 1) & SEQ_MASK;
                const bench_key *k = &w->keys[ids[m]];
                keys[m] = (corral_buf){ k->s, k->len };
            }
            int rc = corral_get_many(w->c, keys, MANY, NULL, out, NULL);
            for (int m = 0; m < MANY; m++) {
                int got = rc == CORRAL_OK && out[m] ? CORRAL_OK : CORRAL_MISS;
                size_t len = take_value(got == CORRAL_OK ? out[m] : NULL, buf);
                bad += !value_ok(got, buf, len, ids[m]);
                sink += buf[VAL_LEN - 1];
            }
        }
        ops += BATCH;
    }
    return worker_done(w, pos, bad, sink, ops);
}

static inline uint64_t run_get_peer(worker *w, const atomic_bool *stop, bool locked) {
    uint64_t ops = 0, bad = 0, sink = 0;
    size_t pos = w->pos;
    unsigned char buf[VAL_CAP] = { 0 };
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j++) {
            uint32_t id = w->seq[pos];
            pos = (pos + 1) & SEQ_MASK;
            const bench_key *k = &w->keys[id];
            size_t len = peer_get(w->t, k->s, k->len, buf, locked);
            bad += !value_ok(len ? CORRAL_OK : CORRAL_MISS, buf, len, id);
            sink += buf[VAL_LEN - 1];
        }
        ops += BATCH;
    }
    return worker_done(w, pos, bad, sink, ops);
}

static uint64_t run_get_mutex(void *p, const atomic_bool *stop) {
    return run_get_peer(p, stop, true);
}

static uint64_t run_get_nolock(void *p, const atomic_bool *stop) {
    return run_get_peer(p, stop, false);
}

static uint64_t run_set_corral(void *p, const atomic_bool *stop) {
    worker *w = p;
    uint64_t ops = 0, bad = 0;
    size_t pos = w->pos;
    unsigned char val[VAL_LEN];
    value_make(val, 0);
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j++) {
            uint32_t id = w->seq[pos];
            pos = (pos + 1) & SEQ_MASK;
            const bench_key *k = &w->keys[id];
            memcpy(val, &id, sizeof id);
            bad += corral_set(w->c, k->s, k->len, val, VAL_LEN, CORRAL_TTL_FOREVER, NULL) != 0;
        }
        ops += BATCH;
    }
    w->pos = pos;
    w->bad += bad;
    return ops;
}

static uint64_t run_set_mutex(void *p, const atomic_bool *stop) {
    worker *w = p;
    uint64_t ops = 0;
    size_t pos = w->pos;
    unsigned char val[VAL_LEN];
    value_make(val, 0);
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j++) {
            uint32_t id = w->seq[pos];
            pos = (pos + 1) & SEQ_MASK;
            const bench_key *k = &w->keys[id];
            memcpy(val, &id, sizeof id);
            peer_set(w->t, k->s, k->len, val, VAL_LEN);
        }
        ops += BATCH;
    }
    w->pos = pos;
    return ops;
}

/* corral_set_many in batches of MANY overwrites; ns/op is per key. */
static uint64_t run_set_corral_many(void *p, const atomic_bool *stop) {
    worker *w = p;
    uint64_t ops = 0, bad = 0;
    size_t pos = w->pos;
    unsigned char vals[MANY][VAL_LEN];
    corral_buf keys[MANY], bufs[MANY];
    for (int m = 0; m < MANY; m++) {
        value_make(vals[m], 0);
        bufs[m] = (corral_buf){ vals[m], VAL_LEN };
    }
    while (!atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH; j += MANY) {
            for (int m = 0; m < MANY; m++) {
                uint32_t id = w->seq[pos];
                pos = (pos + 1) & SEQ_MASK;
                const bench_key *k = &w->keys[id];
                keys[m] = (corral_buf){ k->s, k->len };
                memcpy(vals[m], &id, sizeof id);
            }
            bad += corral_set_many(w->c, keys, bufs, MANY, CORRAL_TTL_FOREVER, NULL) != 0;
        }
        ops += BATCH;
    }
    w->pos = pos;
    w->bad += bad;
    return ops;
}

/* Inserts: the worker writes ids first, first + stride, ... below N_KEYS, each once, into an
 * empty store, and stops there (or at the stop flag). `pos` is its first id, `stride` the
 * thread count. */
static uint64_t run_insert(worker *w, const atomic_bool *stop, bool is_corral) {
    uint64_t ops = 0, bad = 0;
    unsigned char val[VAL_LEN];
    value_make(val, 0);
    uint32_t id = (uint32_t)w->pos;
    while (id < N_KEYS && !atomic_load_explicit(stop, memory_order_relaxed)) {
        for (int j = 0; j < BATCH && id < N_KEYS; j++, id += w->stride) {
            const bench_key *k = &w->keys[id];
            memcpy(val, &id, sizeof id);
            if (is_corral)
                bad += corral_set(w->c, k->s, k->len, val, VAL_LEN, CORRAL_TTL_FOREVER, NULL) != 0;
            else
                peer_set(w->t, k->s, k->len, val, VAL_LEN);
            ops++;
        }
    }
    w->bad += bad;
    return ops;
}

static uint64_t run_insert_corral(void *p, const atomic_bool *stop) {
    return run_insert(p, stop, true);
}

static uint64_t run_insert_mutex(void *p, const atomic_bool *stop) {
    return run_insert(p, stop, false);
}

/* ---- Contestants and result rows ---- */

typedef struct contestant {
    const char *name;
    bench_worker_fn fn;
} contestant;

enum { GET_INTO, GET_REF, GET_MANY, GET_MUTEX, GET_NOLOCK, N_GETS };
static const contestant get_contestants[N_GETS] = {
    { "corral_get_into (mem://)", run_get_corral_into },
    { "corral_get + value_unref", run_get_corral_ref },
    { "corral_get_many, 16 keys", run_get_corral_many },
    { "hash table, global mutex", run_get_mutex },
    { "hash table, no lock", run_get_nolock },
};

enum { SET_CORRAL, SET_MANY, SET_MUTEX, N_SETS };
static const contestant set_contestants[N_SETS] = {
    { "corral_set (mem://)", run_set_corral },
    { "corral_set_many, 16 keys", run_set_corral_many },
    { "hash table, global mutex", run_set_mutex },
};

enum { INS_CORRAL, INS_MUTEX, N_INS };
static const contestant ins_contestants[N_INS] = {
    { "corral_set (mem://)", run_insert_corral },
    { "hash table, global mutex", run_insert_mutex },
};

#define MAX_ROUNDS 8

typedef struct result {
    double rate[MAX_ROUNDS]; /* ops/s of each round */
    double best;
    double spread; /* (best - worst) / best */
} result;

static void result_close(result *r, unsigned rounds) {
    r->best = bench_max(r->rate, rounds);
    r->spread = r->best > 0 ? (r->best - bench_min(r->rate, rounds)) / r->best : 0;
}

/* With -v, prints the rate of every round after a row. */
static void print_rounds(const config *cfg, const result *r) {
    if (!cfg->verbose) return;
    printf("      rounds:");
    for (unsigned i = 0; i < cfg->rounds; i++) {
        char rate[32];
        printf(" %s", bench_fmt_rate(rate, sizeof rate, r->rate[i]));
    }
    printf("\n");
}

/* Runs every contestant at 1 and 2 threads, interleaved, `rounds` times; fills res[t][i]. */
static void measure(const config *cfg, const contestant *cs, size_t n_cs, worker *workers,
                    uint64_t window_ns, bool is_get, result res[MAX_THREADS][N_GETS]) {
    for (unsigned r = 0; r < cfg->rounds; r++) {
        for (unsigned nt = 1; nt <= MAX_THREADS; nt++) {
            for (size_t i = 0; i < n_cs; i++) {
                void *args[MAX_THREADS];
                for (unsigned t = 0; t < nt; t++) {
                    workers[t].bad = 0;
                    args[t] = &workers[t];
                }
                double rate = bench_run_threads(nt, cs[i].fn, args, window_ns);
                uint64_t bad = 0;
                for (unsigned t = 0; t < nt; t++)
                    bad += workers[t].bad;
                if (bad)
                    bench_die("%s at %u thread(s): %llu %s", cs[i].name, nt,
                              (unsigned long long)bad,
                              is_get ? "gets missed or returned a wrong value" : "sets failed");
                res[nt - 1][i].rate[r] = rate;
            }
        }
    }
    for (unsigned nt = 1; nt <= MAX_THREADS; nt++)
        for (size_t i = 0; i < n_cs; i++)
            result_close(&res[nt - 1][i], cfg->rounds);
}

/* Target verdicts, collected for the summary at the end. */
typedef struct verdicts {
    char line[12][160];
    int n;
    int missed;
} verdicts;

__attribute__((format(printf, 3, 4))) static void verdict_add(verdicts *v, bool pass,
                                                              const char *fmt, ...) {
    if (v->n >= (int)(sizeof v->line / sizeof v->line[0])) bench_die("too many verdicts");
    char text[140];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof text) bench_die("verdict text too long");
    n = snprintf(v->line[v->n], sizeof v->line[0], "%s  %s", pass ? "PASS" : "MISS", text);
    if (n < 0 || (size_t)n >= sizeof v->line[0]) bench_die("verdict line too long");
    v->n++;
    v->missed += !pass;
}

static void print_gets(const config *cfg, result res[MAX_THREADS][N_GETS], verdicts *v) {
    printf("\nGET HITS  %u keys, %u-byte values, Zipf(0.99); best of %u x %.1f s; "
           "ns/op is per thread\n",
           N_KEYS, VAL_LEN, cfg->rounds, (double)cfg->get_window_ns / 1e9);
    const int width = 112;
    bench_rule(width);
    printf("%-3s %-26s %10s %8s %7s %8s  %s\n", "thr", "contestant", "ops/s", "ns/op", "spread",
           "vs mutex", "target");
    bench_rule(width);
    for (unsigned nt = 1; nt <= MAX_THREADS; nt++) {
        double mutex = res[nt - 1][GET_MUTEX].best;
        double nolock = res[nt - 1][GET_NOLOCK].best;
        for (int i = 0; i < N_GETS; i++) {
            const result *r = &res[nt - 1][i];
            char rate[32], target[96] = "";
            double vs_mutex = r->best / mutex;
            double vs_nolock = r->best / nolock;
            int n = 0;
            if (i == GET_INTO || i == GET_REF) {
                const char *tag = i == GET_INTO ? "" : " (info)";
                if (nt == 1) {
                    bool ok = vs_mutex >= TARGET_1T_VS_MUTEX;
                    n = snprintf(target, sizeof target, ">=%.1fx mutex %s%s", TARGET_1T_VS_MUTEX,
                                 ok ? "PASS" : "MISS", tag);
                    if (i == GET_INTO)
                        verdict_add(v, ok,
                                    "1 thread: corral_get_into %.2fx the mutex table "
                                    "(target >= %.1fx)",
                                    vs_mutex, TARGET_1T_VS_MUTEX);
                } else {
                    bool ok_m = vs_mutex >= TARGET_2T_VS_MUTEX;
                    bool ok_n = vs_nolock >= TARGET_2T_VS_NOLOCK;
                    n = snprintf(target, sizeof target,
                                 ">=%.1fx mutex %s, >=%.1fx no-lock "
                                 "(%.2fx) %s%s",
                                 TARGET_2T_VS_MUTEX, ok_m ? "PASS" : "MISS", TARGET_2T_VS_NOLOCK,
                                 vs_nolock, ok_n ? "PASS" : "MISS", tag);
                    if (i == GET_INTO) {
                        verdict_add(v, ok_m,
                                    "2 threads: corral_get_into %.2fx the mutex table "
                                    "(target >= %.1fx)",
                                    vs_mutex, TARGET_2T_VS_MUTEX);
                        verdict_add(v, ok_n,
                                    "2 threads: corral_get_into %.2fx the no-lock table "
                                    "(target >= %.1fx)",
                                    vs_nolock, TARGET_2T_VS_NOLOCK);
                    }
                }
            }
            if (n < 0 || (size_t)n >= sizeof target) bench_die("target text too long");
            printf("%-3u %-26s %10s %8.1f %6.1f%% %7.2fx  %s\n", nt, get_contestants[i].name,
                   bench_fmt_rate(rate, sizeof rate, r->best), nt * 1e9 / r->best, r->spread * 100,
                   vs_mutex, target);
            print_rounds(cfg, r);
        }
    }
    bench_rule(width);
}

/* The sets table's target cell for corral_set at `nt` threads, `vs` the mutex table; adds the
 * verdict. */
static void set_target(char *out, size_t cap, verdicts *v, const char *what, unsigned nt,
                       double vs) {
    double want = nt == 1 ? TARGET_SET_1T : TARGET_SET_2T;
    bool ok = vs >= want;
    int n = snprintf(out, cap, ">=%.1fx mutex %s", want, ok ? "PASS" : "MISS");
    if (n < 0 || (size_t)n >= cap) bench_die("target text too long");
    verdict_add(v, ok, "%u thread%s: corral_set %s %.2fx the mutex table (target >= %.1fx)", nt,
                nt == 1 ? "" : "s", what, vs, want);
}

static void print_set_rows(const config *cfg, const contestant *cs, int n_cs, int corral_row,
                           int mutex_row, const char *what, result res[MAX_THREADS][N_GETS],
                           verdicts *v) {
    for (unsigned nt = 1; nt <= MAX_THREADS; nt++) {
        double mutex = res[nt - 1][mutex_row].best;
        for (int i = 0; i < n_cs; i++) {
            const result *r = &res[nt - 1][i];
            char rate[32], target[48] = "";
            if (i == corral_row) set_target(target, sizeof target, v, what, nt, r->best / mutex);
            printf("%-3u %-9s %-26s %10s %8.1f %6.1f%% %7.2fx  %s\n", nt, what, cs[i].name,
                   bench_fmt_rate(rate, sizeof rate, r->best), nt * 1e9 / r->best, r->spread * 100,
                   r->best / mutex, target);
            print_rounds(cfg, r);
        }
    }
}

static void print_sets(const config *cfg, result over[MAX_THREADS][N_GETS],
                       result ins[MAX_THREADS][N_GETS], verdicts *v) {
    printf("\nSETS  %u-byte values; overwrites of present keys, Zipf(0.99), best of %u x %.1f s; "
           "inserts of\n%u keys into an empty store, best of %u; ns/op is per thread\n",
           VAL_LEN, cfg->rounds, (double)cfg->set_window_ns / 1e9, N_KEYS, cfg->rounds);
    const int width = 96;
    bench_rule(width);
    printf("%-3s %-9s %-26s %10s %8s %7s %8s  %s\n", "thr", "kind", "contestant", "ops/s", "ns/op",
           "spread", "vs mutex", "target");
    bench_rule(width);
    print_set_rows(cfg, set_contestants, N_SETS, SET_CORRAL, SET_MUTEX, "overwrite", over, v);
    if (ins) print_set_rows(cfg, ins_contestants, N_INS, INS_CORRAL, INS_MUTEX, "insert", ins, v);
    bench_rule(width);
}

/* ---- Setup ---- */

static corral *open_mem(size_t max_bytes, corral_eviction ev, int *rc_out) {
    corral_options o;
    corral_options_init(&o);
    o.store = "mem";
    o.key_prefix = "";
    o.default_ttl_ms = CORRAL_TTL_FOREVER;
    o.max_memory_bytes = max_bytes;
    o.eviction = ev;
    corral *c;
    corral_error err;
    int rc = corral_open_opts(&c, &o, &err);
    if (rc_out) *rc_out = rc;
    if (rc < 0) {
        if (!rc_out) bench_die("corral_open_opts: %s (%s)", corral_strerror(rc), err.msg);
        return NULL;
    }
    return c;
}

/* Reads items and used bytes of a handle. */
static void store_usage(corral *c, uint64_t *items, size_t *used_bytes) {
    corral_stats_snapshot *s;
    int rc = corral_stats(c, &s);
    if (rc < 0) bench_die("corral_stats: %s", corral_strerror(rc));
    *items = s->total.items > 0 ? (uint64_t)s->total.items : 0;
    *used_bytes = s->used_bytes;
    corral_stats_free(c, s);
}

/* Runs the insert contestants at 1 and 2 threads, interleaved, `rounds` times, each on a new,
 * empty store; fills res[t][i]. A run ends when its threads have written every key. */
static void measure_inserts(const config *cfg, const bench_key *keys,
                            result res[MAX_THREADS][N_GETS]) {
    const uint64_t cap_ns = 60ull * 1000000000u; /* a run that takes longer is cut */
    for (unsigned r = 0; r < cfg->rounds; r++) {
        for (unsigned nt = 1; nt <= MAX_THREADS; nt++) {
            for (int i = 0; i < N_INS; i++) {
                corral *c = NULL;
                peer_table table;
                if (i == INS_CORRAL)
                    c = open_mem((size_t)THROUGHPUT_MB << 20, CORRAL_EVICT_DEFAULT, NULL);
                else
                    peer_init(&table, N_KEYS);
                worker w[MAX_THREADS];
                void *args[MAX_THREADS];
                for (unsigned t = 0; t < nt; t++) {
                    w[t] = (worker){ .pos = t, .stride = nt, .keys = keys, .c = c, .t = &table };
                    args[t] = &w[t];
                }
                double rate = bench_run_threads_until(nt, ins_contestants[i].fn, args, cap_ns);
                uint64_t bad = 0;
                for (unsigned t = 0; t < nt; t++)
                    bad += w[t].bad;
                if (bad)
                    bench_die("%s inserts at %u thread(s): %llu sets failed",
                              ins_contestants[i].name, nt, (unsigned long long)bad);
                if (c) {
                    uint64_t items;
                    size_t used;
                    store_usage(c, &items, &used);
                    if (items != N_KEYS)
                        bench_die("inserts: corral holds %llu of %u keys",
                                  (unsigned long long)items, N_KEYS);
                    corral_close(c);
                } else {
                    peer_deinit(&table);
                }
                res[nt - 1][i].rate[r] = rate;
            }
        }
    }
    for (unsigned nt = 1; nt <= MAX_THREADS; nt++)
        for (int i = 0; i < N_INS; i++)
            result_close(&res[nt - 1][i], cfg->rounds);
}

/* ---- Hit ratio ---- */

typedef struct workload {
    const char *name;
    double theta;
    bool scans;
} workload;

static const workload workloads[] = {
    { "Zipf(0.8)", 0.8, false },
    { "Zipf(0.99)", 0.99, false },
    { "Zipf(0.99)+scans", 0.99, true },
};

#define N_WORKLOADS (sizeof workloads / sizeof workloads[0])

static const struct {
    const char *name;
    corral_eviction ev;
} policies[] = {
    { "SIEVE", CORRAL_EVICT_SIEVE },
    { "S3FIFO", CORRAL_EVICT_S3FIFO },
    { "LRU", CORRAL_EVICT_LRU },
};

enum { POL_SIEVE, POL_S3FIFO, POL_LRU, N_POLICIES };

/* Fills trace[0..len) with key ids: Zipf ranks through `perm`, and with `scans`, every
 * SCAN_EVERY Zipf requests a burst of SCAN_LEN ids never used before (ids from N_KEYS up). */
static void trace_make(uint32_t *trace, size_t len, const bench_zipf *z, const uint32_t *perm,
                       bool scans, bench_rng *rng) {
    uint32_t fresh = N_KEYS;
    size_t since_scan = 0;
    for (size_t i = 0; i < len;) {
        if (scans && since_scan == SCAN_EVERY) {
            for (size_t j = 0; j < SCAN_LEN && i < len; j++)
                trace[i++] = fresh++;
            since_scan = 0;
            continue;
        }
        trace[i++] = perm[bench_zipf_next(z, rng)];
        since_scan++;
    }
}

typedef struct sim_result {
    bool supported;
    double miss_ratio; /* misses / measured requests */
    uint64_t items;    /* entries held at the end: checks the byte budget */
} sim_result;

static sim_result sim_run(const uint32_t *trace, size_t warmup, size_t measured, corral_eviction ev,
                          size_t max_bytes) {
    sim_result res = { 0 };
    int rc;
    corral *c = open_mem(max_bytes, ev, &rc);
    if (!c) return res; /* the store does not offer this policy */
    res.supported = true;
    unsigned char val[VAL_LEN], buf[VAL_CAP];
    value_make(val, 0);
    uint64_t misses = 0;
    for (size_t i = 0; i < warmup + measured; i++) {
        char key[16];
        uint32_t id = trace[i];
        size_t klen = bench_render_key(key, "key:", 4, id);
        size_t len;
        rc = corral_get_into(c, key, klen, NULL, buf, sizeof buf, &len);
        if (rc == CORRAL_OK) {
            if (!value_ok(rc, buf, len, id)) bench_die("hit ratio: wrong value for key:%u", id);
            continue;
        }
        if (rc != CORRAL_MISS) bench_die("corral_get_into: %s", corral_strerror(rc));
        misses += i >= warmup;
        memcpy(val, &id, sizeof id);
        rc = corral_set(c, key, klen, val, VAL_LEN, CORRAL_TTL_FOREVER, NULL);
        if (rc < 0) bench_die("corral_set: %s", corral_strerror(rc));
    }
    size_t used;
    store_usage(c, &res.items, &used);
    corral_close(c);
    res.miss_ratio = (double)misses / (double)measured;
    return res;
}

static void fmt_vs_lru(char *out, size_t cap, const sim_result *p, const sim_result *lru,
                       bool *better) {
    int n;
    *better = false;
    if (!p->supported || !lru->supported) {
        n = snprintf(out, cap, "n/a");
    } else {
        *better = p->miss_ratio < lru->miss_ratio;
        n = snprintf(out, cap, "%+.1f%% %s", (p->miss_ratio / lru->miss_ratio - 1) * 100,
                     *better ? "yes" : "NO");
    }
    if (n < 0 || (size_t)n >= cap) bench_die("fmt_vs_lru: buffer too small");
}

static void fmt_miss(char *out, size_t cap, const sim_result *r) {
    int n = r->supported ? snprintf(out, cap, "%.4f", r->miss_ratio) : snprintf(out, cap, "n/a");
    if (n < 0 || (size_t)n >= cap) bench_die("fmt_miss: buffer too small");
}

static void run_hit_ratio(const config *cfg, double bytes_per_entry, bench_rng *rng) {
    size_t len = cfg->sim_warmup + cfg->sim_measured;
    uint32_t *trace = bench_xmalloc(sizeof *trace * len);
    uint32_t *perm = bench_xmalloc(sizeof *perm * N_KEYS);
    const double fractions[] = { 0.01, 0.10 };
    printf("\nHIT RATIO  miss ratio (lower is better) over %zu requests after %zu warm-up; "
           "%u keys;\n",
           cfg->sim_measured, cfg->sim_warmup, N_KEYS);
    printf("cache = items x %.1f bytes/entry (measured); scans: %u never-repeated keys every "
           "%u Zipf requests\n",
           bytes_per_entry, SCAN_LEN, SCAN_EVERY);
    const int width = 104;
    bench_rule(width);
    printf("%-17s %5s %7s %8s %8s %8s  %-14s %-14s %s\n", "workload", "cache", "items", "SIEVE",
           "S3FIFO", "LRU", "SIEVE vs LRU", "S3FIFO vs LRU", "held");
    bench_rule(width);
    uint64_t t0 = bench_now_ns();
    for (size_t w = 0; w < N_WORKLOADS; w++) {
        bench_zipf z;
        bench_zipf_init(&z, N_KEYS, workloads[w].theta);
        bench_permute(perm, N_KEYS, rng);
        trace_make(trace, len, &z, perm, workloads[w].scans, rng);
        bench_zipf_deinit(&z);
        for (size_t f = 0; f < sizeof fractions / sizeof fractions[0]; f++) {
            size_t items = (size_t)(N_KEYS * fractions[f] + 0.5);
            size_t max_bytes = (size_t)(items * bytes_per_entry + 0.5);
            sim_result r[N_POLICIES];
            for (int p = 0; p < N_POLICIES; p++)
                r[p] =
                    sim_run(trace, cfg->sim_warmup, cfg->sim_measured, policies[p].ev, max_bytes);
            char miss[N_POLICIES][16], vs[2][32], held[32];
            for (int p = 0; p < N_POLICIES; p++)
                fmt_miss(miss[p], sizeof miss[p], &r[p]);
            bool better[2];
            fmt_vs_lru(vs[0], sizeof vs[0], &r[POL_SIEVE], &r[POL_LRU], &better[0]);
            fmt_vs_lru(vs[1], sizeof vs[1], &r[POL_S3FIFO], &r[POL_LRU], &better[1]);
            int n = snprintf(held, sizeof held, "%llu", (unsigned long long)r[POL_LRU].items);
            if (n < 0 || (size_t)n >= sizeof held) bench_die("held: buffer too small");
            printf("%-17s %4.0f%% %7zu %8s %8s %8s  %-14s %-14s %s\n", workloads[w].name,
                   fractions[f] * 100, items, miss[POL_SIEVE], miss[POL_S3FIFO], miss[POL_LRU],
                   vs[0], vs[1], held);
        }
    }
    bench_rule(width);
    printf("(held: entries in the LRU store at the end, against the items column; "
           "%.1f s for the table)\n",
           (double)(bench_now_ns() - t0) / 1e9);
    if (cfg->quick)
        printf("(-q: the warm-up is too short to fill the 10%% caches; smoke test only)\n");
    free(perm);
    free(trace);
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr,
            "usage: bench_store [-q] [-v] [-s SEED] [-p PHASES]\n"
            "  -q         quick run: short windows, one round, short traces\n"
            "  -v         print the rate of every round\n"
            "  -s SEED    seed of every random stream (default 0x%llx)\n"
            "  -p PHASES  any of g (gets), w (sets), h (hit ratio); default gwh\n",
            (unsigned long long)DEFAULT_SEED);
    exit(2);
}

static config parse_args(int argc, char **argv) {
    config cfg = {
        .seed = DEFAULT_SEED,
        .get_window_ns = 1200000000u,
        .set_window_ns = 800000000u,
        .rounds = 3,
        .sim_warmup = SIM_WARMUP,
        .sim_measured = SIM_MEASURED,
        .run_gets = true,
        .run_sets = true,
        .run_hits = true,
    };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-q") == 0) {
            cfg.quick = true;
            cfg.get_window_ns = cfg.set_window_ns = 200000000u;
            cfg.rounds = 1;
            cfg.sim_warmup = SIM_WARMUP / 4;
            cfg.sim_measured = SIM_MEASURED / 10;
        } else if (strcmp(argv[i], "-v") == 0) {
            cfg.verbose = true;
        } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
            char *end;
            cfg.seed = strtoull(argv[++i], &end, 0);
            if (*end) usage();
        } else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            const char *ph = argv[++i];
            cfg.run_gets = strchr(ph, 'g') != NULL;
            cfg.run_sets = strchr(ph, 'w') != NULL;
            cfg.run_hits = strchr(ph, 'h') != NULL;
        } else {
            usage();
        }
    }
    return cfg;
}

int main(int argc, char **argv) {
    config cfg = parse_args(argc, argv);
    uint64_t t_start = bench_now_ns();
    bench_rng rng;
    bench_rng_seed(&rng, cfg.seed);
    printf("bench_store: corral %s, seed 0x%llx, %u keys, %u-byte values\n", corral_version(),
           (unsigned long long)cfg.seed, N_KEYS, VAL_LEN);

    /* Keys, the rank-to-id permutation and one Zipf(0.99) id stream per thread. */
    bench_key *keys = bench_xmalloc(sizeof *keys * N_KEYS);
    for (uint32_t id = 0; id < N_KEYS; id++)
        keys[id].len = (uint8_t)bench_render_key(keys[id].s, "key:", 4, id);
    uint32_t *perm = bench_xmalloc(sizeof *perm * N_KEYS);
    bench_permute(perm, N_KEYS, &rng);
    uint32_t *seqs[MAX_THREADS];
    {
        bench_zipf z;
        bench_zipf_init(&z, N_KEYS, 0.99);
        for (unsigned t = 0; t < MAX_THREADS; t++) {
            seqs[t] = bench_xmalloc(sizeof *seqs[t] * SEQ_LEN);
            for (size_t i = 0; i < SEQ_LEN; i++)
                seqs[t][i] = perm[bench_zipf_next(&z, &rng)];
        }
        bench_zipf_deinit(&z);
    }

    /* corral's handle and the peer table, both holding every key. */
    corral *c = open_mem((size_t)THROUGHPUT_MB << 20, CORRAL_EVICT_DEFAULT, NULL);
    peer_table table;
    peer_init(&table, N_KEYS);
    uint64_t t0 = bench_now_ns();
    unsigned char val[VAL_LEN], buf[VAL_CAP];
    for (uint32_t id = 0; id < N_KEYS; id++) {
        value_make(val, id);
        int rc = corral_set(c, keys[id].s, keys[id].len, val, VAL_LEN, CORRAL_TTL_FOREVER, NULL);
        if (rc < 0) bench_die("fill: corral_set key:%u: %s", id, corral_strerror(rc));
    }
    double fill_corral_s = (double)(bench_now_ns() - t0) / 1e9;
    t0 = bench_now_ns();
    for (uint32_t id = 0; id < N_KEYS; id++) {
        value_make(val, id);
        peer_set(&table, keys[id].s, keys[id].len, val, VAL_LEN);
    }
    double fill_peer_s = (double)(bench_now_ns() - t0) / 1e9;
    for (uint32_t id = 0; id < N_KEYS; id++) {
        size_t len;
        int rc = corral_get_into(c, keys[id].s, keys[id].len, NULL, buf, sizeof buf, &len);
        if (!value_ok(rc, buf, len, id))
            bench_die("fill check: key:%u not read back from corral (%s)", id, corral_strerror(rc));
        len = peer_get(&table, keys[id].s, keys[id].len, buf, false);
        if (!value_ok(len ? CORRAL_OK : CORRAL_MISS, buf, len, id))
            bench_die("fill check: key:%u not read back from the peer table", id);
    }
    uint64_t items;
    size_t used;
    store_usage(c, &items, &used);
    if (items != N_KEYS)
        bench_die("corral holds %llu items after filling %u keys", (unsigned long long)items,
                  N_KEYS);
    double bytes_per_entry = (double)used / (double)items;
    printf("fill: corral %.2f s, mutex table %.2f s; corral accounts %.1f MB = %.1f bytes/entry\n",
           fill_corral_s, fill_peer_s, (double)used / 1e6, bytes_per_entry);

    worker workers[MAX_THREADS];
    for (unsigned t = 0; t < MAX_THREADS; t++)
        workers[t] = (worker){ .seq = seqs[t], .pos = 0, .keys = keys, .c = c, .t = &table };
    verdicts v = { .n = 0 };
    static result get_res[MAX_THREADS][N_GETS], set_res[MAX_THREADS][N_GETS],
        ins_res[MAX_THREADS][N_GETS];
    if (cfg.run_gets) {
        measure(&cfg, get_contestants, N_GETS, workers, cfg.get_window_ns, true, get_res);
        print_gets(&cfg, get_res, &v);
    }
    if (cfg.run_sets) {
        measure(&cfg, set_contestants, N_SETS, workers, cfg.set_window_ns, false, set_res);
        measure_inserts(&cfg, keys, ins_res);
        print_sets(&cfg, set_res, ins_res, &v);
    }
    uint64_t sink = 0;
    for (unsigned t = 0; t < MAX_THREADS; t++)
        sink += workers[t].sink;
    corral_close(c);
    peer_deinit(&table);
    for (unsigned t = 0; t < MAX_THREADS; t++)
        free(seqs[t]);
    free(perm);
    free(keys);

    if (cfg.run_hits) run_hit_ratio(&cfg, bytes_per_entry, &rng);

    if (v.n) {
        printf("\nTARGETS  %d of %d met\n", v.n - v.missed, v.n);
        for (int i = 0; i < v.n; i++)
            printf("  %s\n", v.line[i]);
    }
    printf("\ntotal %.1f s (checksum %llu)\n", (double)(bench_now_ns() - t_start) / 1e9,
           (unsigned long long)sink);
    return 0;
}
