/*
 * loader.c - corral_get_or_set: one producer per key however many callers wait, with a lease in
 * the store across processes, XFetch early refresh, grace (stale-while-revalidate),
 * stale-if-error and TTL jitter; the single-flight table it stands on (corral_flight_*); and the
 * refresh workers that run background refreshes.
 *
 * Data model:
 * - Flights: a table of `corral__flights`, FLIGHT_SHARDS shards of FLIGHT_BUCKETS chained
 *   buckets, keyed by the physical key. A flight exists from the first join of a key (its
 *   leader) until the leader finishes it; every later join appends a waiter. Finishing unlinks
 *   the flight and detaches its waiters under the shard lock, then calls the waiters' callbacks
 *   with no lock held (HOUSE_STYLE: no user code under our locks). Waiter and flight memory is
 *   allocated before the lock is taken, so the allocator hook never runs under it either.
 * - Values made by a producer carry an envelope (envelope.h) with their logical expiry and how
 *   long the producer took (delta, for XFetch), plus their tags' versions, read before the
 *   producer runs so a bust during the run leaves the value already invalid. The store keeps the
 *   value for its TTL plus the longer of its grace and stale-if-error windows. A store that
 *   cannot carry the envelope (CORRAL__STORE_NO_ENVELOPE: Django's wire format) gets the bare
 *   value for its TTL alone: no XFetch, no grace, no stale-if-error, and tags are refused.
 * - Reads go through corral__get_checked, so a store that validates tags in the read's round trip
 *   (Redis) does.
 * - Leases: the leader takes the store's lease on the key with a random token before running the
 *   producer, and releases it (owner-only) after. A leader that finds the lease held by another
 *   process polls the store with backoff (1 ms doubling to 50 ms) until the value appears or
 *   `wait_timeout_ms` passes, then computes itself (counted). Those sleeps wait on another
 *   process, which gives no signal; everything in-process waits on condition variables.
 * - Workers: `refresh_workers` threads, started by the first background refresh, take jobs from
 *   a FIFO. A job owns the flight its submitter led, so exactly one refresh runs per key.
 *
 * Locks (docs/threads.md): each flight shard's `lock` guards its buckets and the waiter lists of
 * its flights; `workers->lock` guards the job queue and the worker state. Neither is held while
 * calling a producer, a callback, the store or the allocator, and neither is taken while holding
 * the other. A blocking waiter's own mutex is a leaf.
 *
 * Threads: everything here is thread-safe. A producer runs on the caller's thread (foreground)
 * or on a worker (background). Flight callbacks run on the finishing thread.
 */
#include "handle.h"
#include "fork.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define FLIGHT_MAGIC   0xf1196a7eu
#define FLIGHTS_MAGIC  0xf1195e75u
#define WORKERS_MAGIC  0x30b5e7a1u
#define FLIGHT_SHARDS  16
#define FLIGHT_BUCKETS 64
#define TOKEN_LEN      32

#define DEFAULT_WAIT_MS  10000
#define DEFAULT_LEASE_MS 30000

/* ---- The single-flight table ---- */

typedef struct waiter {
    corral_flight_cb cb;
    void *arg;
    struct waiter *next;
} waiter;

typedef struct flight_group flight_group;
static void group_finish(corral *c, flight_group *g, int rc, corral_value *v);

struct corral_flight {
    uint32_t magic;
    struct corral_flight *next; /* bucket chain */
    uint64_t hash;
    waiter *head, **tail; /* FIFO of callback waiters, under the shard lock */
    flight_group *group;  /* the blocked callers, or NULL; set under the shard lock */
    size_t key_len;
    size_t bytes; /* of this allocation */
    char key[];   /* the physical key */
};

typedef struct flight_shard {
    corral__mutex lock;
    corral_flight *buckets[FLIGHT_BUCKETS];
} flight_shard;

struct corral__flights {
    uint32_t magic;
    flight_shard shards[FLIGHT_SHARDS];
    corral__mutex workers_lock;  /* makes starting the workers happen once; a leaf */
    corral__fork_hook fork_hook; /* flights_after_fork, in a forked child */
};

/* ---- The refresh workers ---- */

typedef struct job {
    struct job *next;
    corral_flight *lead;
    corral__skey sk; /* data points into `mem` */
    const void *key; /* the user key, into `mem` */
    size_t key_len;
    corral_producer producer;
    void *arg;
    corral_load_opts opts;   /* call.tags points into `mem`; call.ns is not needed (in sk) */
    corral_value *stale;     /* for stale-if-error, or NULL */
    uint64_t seen_expiry_ms; /* the expiry of the value the submitter saw */
    uint64_t stale_expiry_ms;
    void *mem;
    size_t mem_bytes;
} job;

struct corral__workers {
    uint32_t magic;
    size_t bytes; /* of this allocation */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    job *head, *tail;
    bool stopping;
    unsigned n_started;
    pthread_t threads[];
};

/* In a forked child (fork.h): the refresh workers, and the threads that led or waited on a
 * flight, are gone. Forget them (their memory is the parent's copy, left as it is: freeing a
 * job or a waiter could release what a dead thread was using): a new flight starts on the next
 * miss, new workers on the next background refresh. */
static void flights_after_fork(void *arg) {
    corral *c = arg;
    corral__flights *f = c->flights;
    for (size_t i = 0; i < FLIGHT_SHARDS; i++) {
        memset(f->shards[i].buckets, 0, sizeof f->shards[i].buckets);
        CORRAL_MUST(corral__mutex_init(&f->shards[i].lock) == CORRAL_OK);
    }
    CORRAL_MUST(corral__mutex_init(&f->workers_lock) == CORRAL_OK);
    c->workers = NULL;
}

int corral__flights_new(corral *c) {
    corral__flights *f = corral__calloc(&c->alloc, 1, sizeof *f);
    if (!f) return CORRAL_ENOMEM;
    for (size_t i = 0; i < FLIGHT_SHARDS; i++) {
        if (corral__mutex_init(&f->shards[i].lock) != CORRAL_OK) {
            while (i--)
                corral__mutex_deinit(&f->shards[i].lock);
            corral__free(&c->alloc, f, sizeof *f);
            return CORRAL_ENOMEM;
        }
    }
    if (corral__mutex_init(&f->workers_lock) != CORRAL_OK) {
        for (size_t i = 0; i < FLIGHT_SHARDS; i++)
            corral__mutex_deinit(&f->shards[i].lock);
        corral__free(&c->alloc, f, sizeof *f);
        return CORRAL_ENOMEM;
    }
    f->magic = FLIGHTS_MAGIC;
    c->flights = f;
    f->fork_hook.child = flights_after_fork;
    f->fork_hook.arg = c;
    corral__fork_hook_add(&f->fork_hook);
    return CORRAL_OK;
}

static flight_shard *shard_of(corral *c, uint64_t hash) {
    return &c->flights->shards[(hash >> 32) % FLIGHT_SHARDS];
}

static corral_flight **bucket_of(flight_shard *sh, uint64_t hash) {
    return &sh->buckets[hash % FLIGHT_BUCKETS];
}

static corral_flight *find_locked(flight_shard *sh, const corral__skey *sk) {
    CORRAL_ASSERT_HELD(&sh->lock);
    for (corral_flight *f = *bucket_of(sh, sk->hash); f; f = f->next) {
        if (f->hash == sk->hash && f->key_len == sk->len && memcmp(f->key, sk->data, sk->len) == 0)
            return f;
    }
    return NULL;
}

/* Makes `nf` (a block of `bytes` from the allocator) the flight of `sk`: the caller leads. */
static void link_flight_locked(flight_shard *sh, corral_flight *nf, size_t bytes,
                               const corral__skey *sk) {
    CORRAL_ASSERT_HELD(&sh->lock);
    nf->magic = FLIGHT_MAGIC;
    nf->hash = sk->hash;
    nf->head = NULL;
    nf->tail = &nf->head;
    nf->group = NULL;
    nf->key_len = sk->len;
    nf->bytes = bytes;
    memcpy(nf->key, sk->data, sk->len);
    corral_flight **b = bucket_of(sh, sk->hash);
    nf->next = *b;
    *b = nf;
}

static void flight_free(corral *c, corral_flight *f) {
    if (!f) return;
    f->magic = 0;
    corral__free(&c->alloc, f, f->bytes);
}

/* Joins the flight of a built key. See corral_flight_join. */
static int join_sk(corral *c, const corral__skey *sk, corral_flight_cb cb, void *arg,
                   corral_flight **lead) {
    *lead = NULL;
    /* Both allocations happen before the lock; the one not needed is freed after. */
    waiter *w = corral__alloc(&c->alloc, sizeof *w);
    size_t bytes = sizeof(corral_flight) + sk->len;
    corral_flight *nf = corral__alloc(&c->alloc, bytes);
    if (!w || !nf) {
        corral__free(&c->alloc, w, sizeof *w);
        corral__free(&c->alloc, nf, bytes);
        return CORRAL_ENOMEM;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = NULL;
    flight_shard *sh = shard_of(c, sk->hash);
    corral__mutex_lock(&sh->lock);
    corral_flight *f = find_locked(sh, sk);
    if (f) {
        *f->tail = w;
        f->tail = &w->next;
        corral__mutex_unlock(&sh->lock);
        corral__free(&c->alloc, nf, bytes);
        corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_load_waiters_total, 1);
        return CORRAL_WAITING;
    }
    link_flight_locked(sh, nf, bytes, sk);
    corral__mutex_unlock(&sh->lock);
    corral__free(&c->alloc, w, sizeof *w);
    *lead = nf;
    return CORRAL_OK;
}

/* Leads the flight of a built key only if there is none: CORRAL_OK with `*lead`, or
 * CORRAL_EXISTS when another caller leads (nothing queued). */
static int try_lead(corral *c, const corral__skey *sk, corral_flight **lead) {
    *lead = NULL;
    size_t bytes = sizeof(corral_flight) + sk->len;
    corral_flight *nf = corral__alloc(&c->alloc, bytes);
    if (!nf) return CORRAL_ENOMEM;
    flight_shard *sh = shard_of(c, sk->hash);
    corral__mutex_lock(&sh->lock);
    if (find_locked(sh, sk)) {
        corral__mutex_unlock(&sh->lock);
        corral__free(&c->alloc, nf, bytes);
        return CORRAL_EXISTS;
    }
    link_flight_locked(sh, nf, bytes, sk);
    corral__mutex_unlock(&sh->lock);
    *lead = nf;
    return CORRAL_OK;
}

int corral_flight_join(corral *c, const void *key, size_t key_len, const corral_call *call,
                       corral_flight_cb cb, void *arg, corral_flight **lead) {
    if (lead) *lead = NULL;
    if (!c || !cb || !lead) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    return join_sk(c, &sk, cb, arg, lead);
}

size_t corral_flight_finish(corral *c, corral_flight *f, int rc, corral_value *v) {
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    CORRAL_CHECK_OBJ(f, FLIGHT_MAGIC);
    flight_shard *sh = shard_of(c, f->hash);
    corral__mutex_lock(&sh->lock);
    corral_flight **pp = bucket_of(sh, f->hash);
    while (*pp != f)
        pp = &(*pp)->next;
    *pp = f->next;
    waiter *w = f->head;
    flight_group *g = f->group;
    corral__mutex_unlock(&sh->lock);
    flight_free(c, f);
    group_finish(c, g, rc, v); /* one broadcast for every blocked caller */
    size_t n = 0;
    while (w) {
        waiter *next = w->next;
        w->cb(w->arg, rc, v ? corral_value_ref(v) : NULL);
        corral__free(&c->alloc, w, sizeof *w);
        w = next;
        n++;
    }
    return n;
}

int corral_flight_cancel(corral *c, const void *key, size_t key_len, const corral_call *call,
                         corral_flight_cb cb, void *arg) {
    if (!c || !cb) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    flight_shard *sh = shard_of(c, sk.hash);
    waiter *found = NULL;
    corral__mutex_lock(&sh->lock);
    corral_flight *f = find_locked(sh, &sk);
    if (f) {
        for (waiter **pp = &f->head; *pp; pp = &(*pp)->next) {
            if ((*pp)->cb == cb && (*pp)->arg == arg) {
                found = *pp;
                *pp = found->next;
                if (f->tail == &found->next) f->tail = pp;
                break;
            }
        }
    }
    corral__mutex_unlock(&sh->lock);
    if (!found) return CORRAL_MISS;
    found->cb(found->arg, CORRAL_ETIMEDOUT, NULL);
    corral__free(&c->alloc, found, sizeof *found);
    return CORRAL_OK;
}

/* ---- Blocking waits ----
 *
 * Every caller blocked on one flight waits on one group: the leader publishes its result once
 * and wakes them all with one broadcast, instead of waking them one by one (with 64 waiters on
 * 2 cores, one-by-one wake-ups let the last waiter out hundreds of milliseconds after the
 * producer returned). The group is counted: the flight holds one reference until it finishes,
 * each waiter one until it leaves; the last one frees it. `m` guards everything in it.
 */
struct flight_group {
    pthread_mutex_t m;
    pthread_cond_t cv;
    unsigned refs;
    bool done;
    int rc;
    corral_value *v; /* the group's reference to the result, or NULL */
};

static flight_group *group_new(corral *c) {
    flight_group *g = corral__alloc(&c->alloc, sizeof *g);
    if (!g) return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) goto fail;
    int ok =
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(&g->cv, &ca) == 0;
    CORRAL_MUST(pthread_condattr_destroy(&ca) == 0);
    if (!ok) goto fail;
    if (pthread_mutex_init(&g->m, NULL) != 0) {
        CORRAL_MUST(pthread_cond_destroy(&g->cv) == 0);
        goto fail;
    }
    g->refs = 1; /* the flight's */
    g->done = false;
    g->rc = CORRAL_ETIMEDOUT;
    g->v = NULL;
    return g;
fail:
    corral__free(&c->alloc, g, sizeof *g);
    return NULL;
}

static void group_free(corral *c, flight_group *g) {
    if (!g) return;
    CORRAL_MUST(pthread_cond_destroy(&g->cv) == 0);
    CORRAL_MUST(pthread_mutex_destroy(&g->m) == 0);
    corral_value_unref(g->v);
    corral__free(&c->alloc, g, sizeof *g);
}

/* Drops one reference, with `g->m` held (it is released here). */
static void group_put_locked(corral *c, flight_group *g) {
    bool last = --g->refs == 0;
    CORRAL_MUST(pthread_mutex_unlock(&g->m) == 0);
    if (last) group_free(c, g);
}

/* Publishes the leader's result to the blocked callers and drops the flight's reference. */
static void group_finish(corral *c, flight_group *g, int rc, corral_value *v) {
    if (!g) return;
    CORRAL_MUST(pthread_mutex_lock(&g->m) == 0);
    g->done = true;
    g->rc = rc;
    g->v = v ? corral_value_ref(v) : NULL;
    CORRAL_MUST(pthread_cond_broadcast(&g->cv) == 0);
    group_put_locked(c, g);
}

/* Joins the flight of `sk` as a blocked caller. Returns CORRAL_OK with `*lead` when the caller
 * leads, CORRAL_WAITING with `*group` (a reference the caller drops in group_wait) when another
 * caller does, or CORRAL_ENOMEM. Allocations happen before the shard lock. */
static int join_blocking(corral *c, const corral__skey *sk, corral_flight **lead,
                         flight_group **group) {
    *lead = NULL;
    *group = NULL;
    size_t bytes = sizeof(corral_flight) + sk->len;
    corral_flight *nf = corral__alloc(&c->alloc, bytes);
    flight_group *ng = group_new(c);
    if (!nf || !ng) {
        corral__free(&c->alloc, nf, bytes);
        group_free(c, ng);
        return CORRAL_ENOMEM;
    }
    flight_shard *sh = shard_of(c, sk->hash);
    corral__mutex_lock(&sh->lock);
    corral_flight *f = find_locked(sh, sk);
    if (f) {
        if (!f->group) {
            f->group = ng;
            ng = NULL;
        }
        flight_group *g = f->group;
        /* The group outlives the flight while we hold a reference; taken under the shard lock,
         * so the flight cannot finish in between. */
        CORRAL_MUST(pthread_mutex_lock(&g->m) == 0);
        g->refs++;
        CORRAL_MUST(pthread_mutex_unlock(&g->m) == 0);
        corral__mutex_unlock(&sh->lock);
        corral__free(&c->alloc, nf, bytes);
        group_free(c, ng);
        corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_load_waiters_total, 1);
        *group = g;
        return CORRAL_WAITING;
    }
    link_flight_locked(sh, nf, bytes, sk);
    corral__mutex_unlock(&sh->lock);
    group_free(c, ng);
    *lead = nf;
    return CORRAL_OK;
}

/* Waits on a group until its flight finishes or `timeout_ms` of real time passes. Returns the
 * leader's code with `*v` a new reference (NULL on error), or CORRAL_ETIMEDOUT. Drops the
 * caller's reference to the group. */
static int group_wait(corral *c, flight_group *g, int64_t timeout_ms, corral_value **v) {
    *v = NULL;
    struct timespec dl;
    CORRAL_MUST(clock_gettime(CLOCK_MONOTONIC, &dl) == 0);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    CORRAL_MUST(pthread_mutex_lock(&g->m) == 0);
    int e = 0;
    while (!g->done && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&g->cv, &g->m, &dl);
    int rc = CORRAL_ETIMEDOUT;
    if (g->done) {
        rc = g->rc;
        *v = g->v ? corral_value_ref(g->v) : NULL;
    }
    group_put_locked(c, g);
    return rc;
}

/* ---- Producing a value ---- */

struct corral_result {
    corral *c;
    unsigned char *data;
    size_t len;
    bool is_set;
    bool has_ttl;
    int64_t ttl_ms;
};

int corral_result_set(corral_result *r, const void *data, size_t len) {
    if (!r || (!data && len)) return CORRAL_EINVAL;
    if (len > r->c->max_value_bytes) return CORRAL_ETOOBIG;
    unsigned char *p = corral__alloc(&r->c->alloc, len ? len : 1);
    if (!p) return CORRAL_ENOMEM;
    if (len) memcpy(p, data, len);
    if (r->is_set) corral__free(&r->c->alloc, r->data, r->len ? r->len : 1);
    r->data = p;
    r->len = len;
    r->is_set = true;
    return CORRAL_OK;
}

void corral_result_set_ttl(corral_result *r, int64_t ttl_ms) {
    if (!r || (ttl_ms < 0 && ttl_ms != CORRAL_TTL_FOREVER)) return;
    r->has_ttl = true;
    r->ttl_ms = ttl_ms;
}

void corral_load_opts_init(corral_load_opts *o) {
    memset(o, 0, sizeof *o);
    o->ttl_ms = CORRAL_TTL_DEFAULT;
    o->beta = 1.0;
    o->wait_timeout_ms = DEFAULT_WAIT_MS;
    o->lease_ttl_ms = DEFAULT_LEASE_MS;
    o->call.version = CORRAL_VERSION_DEFAULT;
}

/* A uniform double in (0, 1]. */
static double rand_unit(corral *c) {
    return (double)((corral__rand64(c) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

/* XFetch's lead for a value about to be written: delta * beta * -ln(rand), drawn once per value
 * (see envelope.h: every reader then agrees on one refresh point), at most the TTL. */
static uint32_t xfetch_lead(corral *c, const corral_load_opts *o, uint64_t delta_ms,
                            int64_t ttl_ms) {
    if (o->beta <= 0 || delta_ms == 0) return 0;
    double lead = -(double)delta_ms * o->beta * log(rand_unit(c));
    if (lead > (double)ttl_ms) lead = (double)ttl_ms;
    return lead >= UINT32_MAX ? UINT32_MAX : (uint32_t)lead;
}

/* XFetch: a reader with beta > 0 refreshes once now + lead reaches the expiry. */
static bool xfetch_due(const corral_load_opts *o, uint64_t now_ms, const corral__env *env) {
    if (o->beta <= 0 || env->early_ms == 0 || env->expiry_ms == 0) return false;
    return now_ms + env->early_ms >= env->expiry_ms;
}

static void sleep_ms(uint64_t ms) {
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    CORRAL_MUST(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Reads the value under `sk` and returns CORRAL_OK with a reference when it is fresh and valid
 * (its envelope parsed into `env` when it has one), CORRAL_MISS otherwise. */
static int read_fresh(corral *c, const corral__skey *sk, uint64_t now_ms, corral_value **out) {
    *out = NULL;
    corral_value *v = NULL;
    int rc = corral__get_checked(c, sk, &v);
    if (rc != CORRAL_OK) return rc < 0 ? CORRAL_MISS : rc;
    if (corral__value_fresh(v->data - v->hdr_len, v->hdr_len, now_ms) != CORRAL_OK) {
        corral_value_unref(v);
        return CORRAL_MISS;
    }
    *out = v;
    return CORRAL_OK;
}

/* Reads the value under `sk` if it is valid and fresh at `now_ms`: CORRAL_OK with a reference
 * and its logical expiry (0: none), CORRAL_MISS otherwise. */
static int read_current(corral *c, const corral__skey *sk, uint64_t now_ms, corral_value **out,
                        uint64_t *expiry_ms) {
    *out = NULL;
    *expiry_ms = 0;
    corral_value *v = NULL;
    if (corral__get_checked(c, sk, &v) != CORRAL_OK) return CORRAL_MISS; /* tags checked */
    corral__env env;
    memset(&env, 0, offsetof(corral__env, tags));
    bool ok = true;
    if (v->hdr_len) {
        ok = corral__env_parse(v->data - v->hdr_len, v->hdr_len, &env) == CORRAL_OK;
        if (ok && (env.flags & CORRAL__ENV_TIMES) && env.expiry_ms && now_ms >= env.expiry_ms)
            ok = false;
    }
    if (!ok) {
        corral_value_unref(v);
        return CORRAL_MISS;
    }
    *out = v;
    *expiry_ms = (env.flags & CORRAL__ENV_TIMES) ? env.expiry_ms : 0;
    return CORRAL_OK;
}

/* What a leader saw before it led: nothing (a miss). */
#define SAW_NOTHING UINT64_MAX

/* Runs the producer as the key's leader and stores what it made. Returns CORRAL_OK with the new
 * value, CORRAL_STALE with `stale` (a reference taken) when the producer failed inside the
 * stale-if-error window, or the producer's error. Never holds a lock. */
static int load(corral *c, const corral__skey *sk, const void *key, size_t key_len,
                corral_producer producer, void *arg, const corral_load_opts *o,
                uint64_t seen_expiry_ms, corral_value *stale, uint64_t stale_expiry_ms,
                corral_value **out) {
    *out = NULL;
    /* Another process may be making this value: the lease decides. */
    char token[TOKEN_LEN];
    for (size_t i = 0; i < TOKEN_LEN; i += 16) {
        static const char hex[] = "0123456789abcdef";
        uint64_t r = corral__rand64(c);
        for (size_t k = 0; k < 16; k++, r >>= 4)
            token[i + k] = hex[r & 15];
    }
    int64_t lease_ttl = o->lease_ttl_ms > 0 ? o->lease_ttl_ms : DEFAULT_LEASE_MS;
    int lrc = c->store->ops->lease_acquire(c->store, sk, token, TOKEN_LEN, lease_ttl);
    bool have_lease = lrc == CORRAL_OK;
    if (lrc == CORRAL_EXISTS && seen_expiry_ms != SAW_NOTHING && stale) {
        /* Another process is refreshing a value this caller still has (early refresh, or in
         * grace): keep serving it rather than wait for that process. */
        *out = corral_value_ref(stale);
        return CORRAL_STALE;
    }
    if (lrc == CORRAL_EXISTS) {
        uint64_t deadline = mono_ms() + (uint64_t)(o->wait_timeout_ms > 0 ? o->wait_timeout_ms : 0);
        uint64_t pause = 1;
        for (;;) {
            corral_value *v;
            if (read_fresh(c, sk, corral__now_ms(c), &v) == CORRAL_OK) {
                *out = v;
                return CORRAL_OK;
            }
            lrc = c->store->ops->lease_acquire(c->store, sk, token, TOKEN_LEN, lease_ttl);
            if (lrc == CORRAL_OK) {
                have_lease = true;
                break;
            }
            if (lrc != CORRAL_EXISTS || mono_ms() >= deadline) {
                if (lrc == CORRAL_EXISTS)
                    corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_lease_timeouts_total,
                                        1);
                break; /* compute ourselves */
            }
            sleep_ms(pause);
            pause = pause * 2 > 50 ? 50 : pause * 2;
        }
    }

    /* The caller decided from what it saw before it led: a leader that finished in between
     * (here or in another process) may already have made the value. Then there is nothing to
     * do. `seen_expiry_ms` tells that value apart from the one the caller saw. */
    corral_value *cur;
    uint64_t cur_expiry;
    if (read_current(c, sk, corral__now_ms(c), &cur, &cur_expiry) == CORRAL_OK) {
        if (seen_expiry_ms == SAW_NOTHING || cur_expiry != seen_expiry_ms) {
            if (have_lease) c->store->ops->lease_release(c->store, sk, token, TOKEN_LEN);
            *out = cur;
            return CORRAL_OK;
        }
        corral_value_unref(cur);
    }

    /* Tag versions are read before the producer runs: a bust during the run wins. */
    corral__env env;
    memset(&env, 0, offsetof(corral__env, tags));
    char vbuf[CORRAL__ENV_MAX_TAGS * 24];
    int rc = CORRAL_OK;
    if (o->call.n_tags)
        rc = o->call.tags
                 ? corral__tags_read(c, o->call.tags, o->call.n_tags, &env, vbuf, sizeof vbuf)
                 : CORRAL_EINVAL;
    corral_result r = { .c = c };
    uint64_t t0 = c->now_ns(c->clock_ctx);
    if (rc == CORRAL_OK) {
        rc = producer(arg, key, key_len, &r);
        if (rc >= 0 && !r.is_set) rc = CORRAL_EINVAL; /* a producer must hand back a value */
    }
    uint64_t t1 = c->now_ns(c->clock_ctx);
    uint64_t took_ns = t1 > t0 ? t1 - t0 : 0;
    corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_loads_total, 1);
    corral__metrics_observe(c->metrics, sk->cls, CORRAL__H_cache_load_duration_seconds, took_ns);

    if (rc < 0) {
        corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_load_errors_total, 1);
        if (r.is_set) corral__free(&c->alloc, r.data, r.len ? r.len : 1);
        if (have_lease) c->store->ops->lease_release(c->store, sk, token, TOKEN_LEN);
        uint64_t now_ms = t1 / 1000000u;
        if (stale && o->stale_if_error_ms > 0 &&
            now_ms < stale_expiry_ms + (uint64_t)o->stale_if_error_ms) {
            corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_stale_served_total, 1);
            *out = corral_value_ref(stale);
            return CORRAL_STALE;
        }
        return rc;
    }

    corral_value *v = corral__value_new(&c->alloc, r.data, r.len);
    int64_t ttl = r.has_ttl ? r.ttl_ms : o->ttl_ms;
    int64_t store_ttl = 0;
    int trc = corral__resolve_ttl(c, ttl, &store_ttl);
    if (v && trc == CORRAL_OK) {
        uint64_t now_ms = t1 / 1000000u;
        env.flags |= CORRAL__ENV_TIMES;
        env.delta_ms = (uint32_t)CORRAL_MIN(took_ns / 1000000u, UINT32_MAX);
        int64_t phys = CORRAL__NO_EXPIRY;
        if (store_ttl != CORRAL__NO_EXPIRY) {
            double jitter = o->ttl_jitter > 0 ? CORRAL_MIN(o->ttl_jitter, 1.0) : 0;
            int64_t eff = store_ttl - (int64_t)((double)store_ttl * jitter * rand_unit(c));
            if (eff < 1) eff = 1;
            env.expiry_ms = now_ms + (uint64_t)eff;
            env.early_ms = xfetch_lead(c, o, env.delta_ms, eff);
            /* Grace and stale-if-error need the logical expiry in the envelope: a bare value
             * would read as fresh past it. */
            int64_t extra = (c->store->caps & CORRAL__STORE_NO_ENVELOPE)
                                ? 0
                                : CORRAL_MAX(o->stale_ttl_ms, o->stale_if_error_ms);
            phys = eff + CORRAL_MAX(extra, 0);
        }
        int src = corral__store_set_env_flags(c, sk, &env, r.data, r.len, phys, CORRAL__SET_ALWAYS,
                                              corral__write_flags(&o->call));
        if (src == CORRAL_OK)
            corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_sets_total, 1);
        /* A value the store refused (too big, store down) still goes to every caller. */
    }
    corral__free(&c->alloc, r.data, r.len ? r.len : 1);
    if (have_lease) c->store->ops->lease_release(c->store, sk, token, TOKEN_LEN);
    if (!v) return CORRAL_ENOMEM;
    if (trc < 0) {
        corral_value_unref(v);
        return trc;
    }
    *out = v;
    return CORRAL_OK;
}

/* ---- Workers ---- */

static void job_free(corral *c, job *j) {
    corral_value_unref(j->stale);
    corral__free(&c->alloc, j->mem, j->mem_bytes);
    corral__free(&c->alloc, j, sizeof *j);
}

static void *worker_main(void *arg) {
    corral *c = arg;
    corral__workers *w = c->workers;
    for (;;) {
        CORRAL_MUST(pthread_mutex_lock(&w->lock) == 0);
        while (!w->head && !w->stopping)
            CORRAL_MUST(pthread_cond_wait(&w->wake, &w->lock) == 0);
        job *j = w->head;
        if (j) {
            w->head = j->next;
            if (!w->head) w->tail = NULL;
        }
        CORRAL_MUST(pthread_mutex_unlock(&w->lock) == 0);
        if (!j) return NULL; /* stopping and nothing queued */
        corral_value *v = NULL;
        int rc = load(c, &j->sk, j->key, j->key_len, j->producer, j->arg, &j->opts,
                      j->seen_expiry_ms, j->stale, j->stale_expiry_ms, &v);
        corral_flight_finish(c, j->lead, rc, v);
        corral_value_unref(v);
        job_free(c, j);
    }
}

/* Starts the workers on first use, once. Returns CORRAL_OK when at least one runs. The block is
 * allocated before the lock and freed after it when another caller won, so the allocator hook
 * never runs under it. */
static int workers_start(corral *c) {
    corral__mutex *once = &c->flights->workers_lock;
    corral__mutex_lock(once);
    bool started = c->workers != NULL;
    corral__mutex_unlock(once);
    if (started) return CORRAL_OK;
    unsigned n = c->refresh_workers ? c->refresh_workers : 1;
    size_t bytes = sizeof(corral__workers) + n * sizeof(pthread_t);
    corral__workers *w = corral__calloc(&c->alloc, 1, bytes);
    if (!w) return CORRAL_ENOMEM;
    w->bytes = bytes;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        corral__free(&c->alloc, w, bytes);
        return CORRAL_ENOMEM;
    }
    if (pthread_cond_init(&w->wake, NULL) != 0) {
        CORRAL_MUST(pthread_mutex_destroy(&w->lock) == 0);
        corral__free(&c->alloc, w, bytes);
        return CORRAL_ENOMEM;
    }
    w->magic = WORKERS_MAGIC;
    int rc = CORRAL_OK;
    corral__mutex_lock(once);
    if (c->workers) {
        started = true;
    } else {
        c->workers = w; /* before the threads start: they read it */
        for (unsigned i = 0; i < n; i++) {
            if (pthread_create(&w->threads[i], NULL, worker_main, c) != 0) break;
            w->n_started++;
        }
        if (w->n_started == 0) {
            c->workers = NULL;
            rc = CORRAL_ENOMEM;
        }
    }
    corral__mutex_unlock(once);
    if (started || rc != CORRAL_OK) {
        CORRAL_MUST(pthread_cond_destroy(&w->wake) == 0);
        CORRAL_MUST(pthread_mutex_destroy(&w->lock) == 0);
        corral__free(&c->alloc, w, bytes);
    }
    return rc;
}

/* Hands a refresh the caller leads to the workers. On failure the caller still leads. */
static int submit_refresh(corral *c, corral_flight *lead, const corral__skey *sk, const void *key,
                          size_t key_len, corral_producer producer, void *arg,
                          const corral_load_opts *o, corral_value *stale,
                          uint64_t stale_expiry_ms) {
    /* One block for the keys and the tags, so the job outlives the caller's arguments. */
    size_t n_tags = o->call.tags ? o->call.n_tags : 0;
    size_t bytes = sk->len + 1 + key_len + 1 + n_tags * sizeof(char *);
    for (size_t i = 0; i < n_tags; i++)
        bytes += strlen(o->call.tags[i]) + 1;
    job *j = corral__calloc(&c->alloc, 1, sizeof *j);
    char *mem = corral__alloc(&c->alloc, bytes);
    if (!j || !mem) {
        corral__free(&c->alloc, j, sizeof *j);
        corral__free(&c->alloc, mem, bytes);
        return CORRAL_ENOMEM;
    }
    char **tags = (char **)(void *)mem;
    char *p = mem + n_tags * sizeof(char *);
    memcpy(p, sk->data, sk->len);
    p[sk->len] = '\0';
    j->sk = *sk;
    j->sk.data = p;
    p += sk->len + 1;
    if (key_len) memcpy(p, key, key_len);
    p[key_len] = '\0';
    j->key = p;
    j->key_len = key_len;
    p += key_len + 1;
    for (size_t i = 0; i < n_tags; i++) {
        size_t n = strlen(o->call.tags[i]);
        memcpy(p, o->call.tags[i], n + 1);
        tags[i] = p;
        p += n + 1;
    }
    j->opts = *o;
    j->opts.call.ns = NULL;
    j->opts.call.tags = (const char *const *)tags;
    j->opts.call.n_tags = n_tags;
    j->lead = lead;
    j->producer = producer;
    j->arg = arg;
    j->stale = stale ? corral_value_ref(stale) : NULL;
    j->seen_expiry_ms = stale_expiry_ms;
    j->stale_expiry_ms = stale_expiry_ms;
    j->mem = mem;
    j->mem_bytes = bytes;

    int rc = workers_start(c);
    if (rc != CORRAL_OK) {
        job_free(c, j);
        return rc;
    }
    corral__mutex_lock(&c->flights->workers_lock);
    corral__workers *w = c->workers;
    corral__mutex_unlock(&c->flights->workers_lock);
    CORRAL_MUST(pthread_mutex_lock(&w->lock) == 0);
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    CORRAL_MUST(pthread_cond_signal(&w->wake) == 0);
    CORRAL_MUST(pthread_mutex_unlock(&w->lock) == 0);
    return CORRAL_OK;
}

void corral__loader_close(corral *c) {
    if (c->flights) corral__fork_hook_remove(&c->flights->fork_hook);
    corral__workers *w = c->workers;
    if (w) {
        CORRAL_CHECK_OBJ(w, WORKERS_MAGIC);
        CORRAL_MUST(pthread_mutex_lock(&w->lock) == 0);
        w->stopping = true;
        CORRAL_MUST(pthread_cond_broadcast(&w->wake) == 0);
        CORRAL_MUST(pthread_mutex_unlock(&w->lock) == 0);
        /* Workers finish the queue before they stop: every flight is finished. */
        for (unsigned i = 0; i < w->n_started; i++)
            CORRAL_MUST(pthread_join(w->threads[i], NULL) == 0);
        CORRAL_MUST(pthread_cond_destroy(&w->wake) == 0);
        CORRAL_MUST(pthread_mutex_destroy(&w->lock) == 0);
        w->magic = 0;
        c->workers = NULL;
        corral__free(&c->alloc, w, w->bytes);
    }
    corral__flights *f = c->flights;
    if (!f) return;
    for (size_t i = 0; i < FLIGHT_SHARDS; i++) {
        /* A flight still here is led by a thread that outlived the handle: a caller's bug.
         * Release its waiters rather than leak them. */
        for (size_t b = 0; b < FLIGHT_BUCKETS; b++) {
            while (f->shards[i].buckets[b])
                corral_flight_finish(c, f->shards[i].buckets[b], CORRAL_ETIMEDOUT, NULL);
        }
        corral__mutex_deinit(&f->shards[i].lock);
    }
    corral__mutex_deinit(&f->workers_lock);
    f->magic = 0;
    corral__free(&c->alloc, f, sizeof *f);
    c->flights = NULL;
}

/* ---- get_or_set ---- */

/* Refreshes a value the caller still has (early refresh, or grace) if nobody else is: in the
 * background, or now on this thread. Returns CORRAL_OK with `*fresh` set when it refreshed in
 * the foreground, CORRAL_MISS when the refresh is elsewhere (another leader, or a worker). */
static int refresh(corral *c, const corral__skey *sk, const void *key, size_t key_len,
                   corral_producer producer, void *arg, const corral_load_opts *o,
                   corral_value *current, uint64_t expiry_ms, bool early, corral_value **fresh) {
    *fresh = NULL;
    corral_flight *lead;
    if (try_lead(c, sk, &lead) != CORRAL_OK) return CORRAL_MISS; /* someone else refreshes */
    if (early) corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_early_refreshes_total, 1);
    if (o->background && submit_refresh(c, lead, sk, key, key_len, producer, arg, o, current,
                                        expiry_ms) == CORRAL_OK)
        return CORRAL_MISS;
    int rc = load(c, sk, key, key_len, producer, arg, o, expiry_ms, current, expiry_ms, fresh);
    corral_flight_finish(c, lead, rc, *fresh);
    if (rc != CORRAL_OK) {
        corral_value_unref(*fresh);
        *fresh = NULL;
        return CORRAL_MISS;
    }
    return CORRAL_OK;
}

int corral_get_or_set(corral *c, const void *key, size_t key_len, corral_producer producer,
                      void *arg, const corral_load_opts *opts, corral_value **out) {
    if (out) *out = NULL;
    if (!c || !producer || !out) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral_load_opts defaults;
    if (!opts) {
        corral_load_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts->call.n_tags && (c->store->caps & CORRAL__STORE_NO_ENVELOPE))
        return CORRAL_ENOTSUP; /* the store cannot keep tags with the value */
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey(c, key, key_len, &opts->call, buf, &sk);
    if (rc != CORRAL_OK) return rc;

    uint64_t now_ms = corral__now_ms(c);
    corral_value *v = NULL;
    corral_value *stale = NULL; /* past expiry, kept for stale-if-error */
    uint64_t stale_expiry = 0;
    if (corral__get_checked(c, &sk, &v) == CORRAL_OK) { /* tags checked */
        corral__env env;
        bool ok = true;
        memset(&env, 0, offsetof(corral__env, tags));
        if (v->hdr_len) ok = corral__env_parse(v->data - v->hdr_len, v->hdr_len, &env) == CORRAL_OK;
        if (!ok) {
            corral_value_unref(v);
            v = NULL;
        } else if (!(env.flags & CORRAL__ENV_TIMES) || env.expiry_ms == 0 ||
                   now_ms < env.expiry_ms) {
            /* Fresh. XFetch may start a refresh; this caller keeps the value it has unless it
             * refreshed in the foreground. */
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_hits_total, 1);
            if ((env.flags & CORRAL__ENV_TIMES) && xfetch_due(opts, now_ms, &env)) {
                corral_value *fresh;
                if (refresh(c, &sk, key, key_len, producer, arg, opts, v, env.expiry_ms, true,
                            &fresh) == CORRAL_OK) {
                    corral_value_unref(v);
                    v = fresh;
                }
            }
            *out = v;
            return CORRAL_OK;
        } else if (now_ms < env.expiry_ms + (uint64_t)CORRAL_MAX(opts->stale_ttl_ms, 0)) {
            /* In grace: serve it while exactly one caller refreshes. */
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_hits_total, 1);
            corral_value *fresh;
            if (refresh(c, &sk, key, key_len, producer, arg, opts, v, env.expiry_ms, false,
                        &fresh) == CORRAL_OK) {
                corral_value_unref(v);
                *out = fresh;
                return CORRAL_OK;
            }
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_stale_served_total, 1);
            *out = v;
            return CORRAL_STALE;
        } else if (now_ms < env.expiry_ms + (uint64_t)CORRAL_MAX(opts->stale_if_error_ms, 0)) {
            stale = v;
            stale_expiry = env.expiry_ms;
            v = NULL;
        } else {
            corral_value_unref(v);
            v = NULL;
        }
    }
    corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_misses_total, 1);

    /* A miss: lead the flight, or wait for its leader. */
    corral_flight *lead = NULL;
    flight_group *group = NULL;
    rc = join_blocking(c, &sk, &lead, &group);
    if (rc == CORRAL_WAITING) {
        corral_value *got = NULL;
        int64_t timeout = opts->wait_timeout_ms > 0 ? opts->wait_timeout_ms : 0;
        rc = group_wait(c, group, timeout, &got);
        if (rc < 0 && stale && opts->stale_if_error_ms > 0) {
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_stale_served_total, 1);
            *out = stale;
            corral_value_unref(got);
            return CORRAL_STALE;
        }
        corral_value_unref(stale);
        if (rc < 0) {
            corral_value_unref(got);
            return rc;
        }
        *out = got;
        return rc;
    }
    if (rc != CORRAL_OK) {
        corral_value_unref(stale);
        return rc;
    }
    rc = load(c, &sk, key, key_len, producer, arg, opts, SAW_NOTHING, stale, stale_expiry, &v);
    corral_flight_finish(c, lead, rc, v);
    corral_value_unref(stale);
    if (rc < 0) return rc;
    *out = v;
    return rc;
}
