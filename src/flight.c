/*
 * flight.c - the single-flight table: one leader per physical key, however many callers join.
 *
 * Data model: FLIGHT_SHARDS shards of FLIGHT_BUCKETS chained buckets, keyed by the physical key.
 * A flight exists from the first join of a key (its leader) until the leader finishes it; every
 * later join appends a waiter (a callback, corral_flight_join) or joins the flight's group (a
 * blocked caller, corral__flight_join_blocking). Finishing unlinks the flight and detaches its
 * waiters under the shard lock, then publishes the result to the group with one broadcast and
 * calls the waiters' callbacks with no lock held (HOUSE_STYLE: no user code under our locks).
 * Waiter, flight and group memory is allocated before the lock is taken, so the allocator hook
 * never runs under it either.
 *
 * Locks (docs/threads.md): each shard's `lock` guards its buckets, the waiter lists of its
 * flights and which group a flight has; a group's own mutex guards the group and is taken
 * under the shard lock only to count a reference. Neither is held while calling a callback, the
 * store or the allocator.
 *
 * Threads: everything here is thread-safe. Callbacks run on the finishing thread.
 */
#include "flight.h"
#include "access.h"
#include "fork.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define FLIGHT_MAGIC   0xf1196a7eu
#define FLIGHTS_MAGIC  0xf1195e75u
#define FLIGHT_SHARDS  16
#define FLIGHT_BUCKETS 64

/* ---- The single-flight table ---- */

typedef struct waiter {
    corral_flight_cb cb;
    void *arg;
    struct waiter *next;
} waiter;

typedef corral__flight_group flight_group;
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
    corral__fork_hook fork_hook; /* flights_after_fork, in a forked child */
};

/* In a forked child (fork.h): the threads that led or waited on a flight are gone. Forget their
 * flights (their memory is the parent's copy, left as it is: freeing a waiter could release what
 * a dead thread was using): a new flight starts on the next miss. */
static void flights_after_fork(void *arg) {
    corral__flights *f = arg;
    for (size_t i = 0; i < FLIGHT_SHARDS; i++) {
        memset(f->shards[i].buckets, 0, sizeof f->shards[i].buckets);
        CORRAL_MUST(corral__mutex_init(&f->shards[i].lock) == CORRAL_OK);
    }
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
    f->magic = FLIGHTS_MAGIC;
    c->flights = f;
    f->fork_hook.child = flights_after_fork;
    f->fork_hook.arg = f;
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

int corral__flight_try_lead(corral *c, const corral__skey *sk, corral_flight **lead) {
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
struct corral__flight_group {
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

int corral__flight_join_blocking(corral *c, const corral__skey *sk, corral_flight **lead,
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

int corral__flight_wait(corral *c, flight_group *g, int64_t timeout_ms, corral_value **v) {
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

void corral__flights_free(corral *c) {
    corral__flights *f = c->flights;
    if (!f) return;
    CORRAL_CHECK_OBJ(f, FLIGHTS_MAGIC);
    corral__fork_hook_remove(&f->fork_hook);
    for (size_t i = 0; i < FLIGHT_SHARDS; i++) {
        /* A flight still here is led by a thread that outlived the handle: a caller's bug.
         * Release its waiters rather than leak them. */
        for (size_t b = 0; b < FLIGHT_BUCKETS; b++) {
            while (f->shards[i].buckets[b])
                corral_flight_finish(c, f->shards[i].buckets[b], CORRAL_ETIMEDOUT, NULL);
        }
        corral__mutex_deinit(&f->shards[i].lock);
    }
    f->magic = 0;
    corral__free(&c->alloc, f, sizeof *f);
    c->flights = NULL;
}
