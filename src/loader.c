/*
 * loader.c - corral_get_or_set: one producer per key however many callers wait, with a lease in
 * the store across processes, XFetch early refresh, grace (stale-while-revalidate),
 * stale-if-error and TTL jitter; and the refresh workers that run background refreshes. It
 * stands on the single-flight table (flight.c) and on the access layer (access.c).
 *
 * Data model:
 * - Values made by a producer carry an envelope (envelope.h) with their logical expiry and how
 *   long the producer took (delta, for XFetch), plus their tags' versions, read before the
 *   producer runs so a bust during the run leaves the value already invalid. The store keeps the
 *   value for its TTL plus the longer of its grace and stale-if-error windows. A store that
 *   cannot carry the envelope (CORRAL__STORE_NO_ENVELOPE: Django's wire format) gets the bare
 *   value for its TTL alone: no XFetch, no grace, no stale-if-error, and tags are refused.
 * - Reads go through corral__read (access.h), which classifies a value once: fresh, early
 *   (XFetch), in grace, kept for stale-if-error, expired or busted. A store that validates tags
 *   in the read's round trip (Redis) does.
 * - Leases: the leader takes the store's lease on the key with a random token before running the
 *   producer, and releases it (owner-only) after. A leader that finds the lease held by another
 *   process waits until the value appears, the lease is free, or `wait_timeout_ms` passes (then
 *   it computes itself, counted): woken by the store's announcement of the release (Redis:
 *   redis_notify.c) and polling only as a fallback (a quarter of the lease TTL, 10 ms to 1 s),
 *   or, when the store has no announcements or they are down, polling with backoff (1 ms
 *   doubling to 50 ms). Everything in-process waits on condition variables.
 * - Workers: `refresh_workers` threads, started by the first background refresh, take jobs from
 *   a FIFO. A job owns the flight its submitter led, so exactly one refresh runs per key.
 *
 * Locks (docs/threads.md): `workers->lock` guards the job queue and the worker state. It is not
 * held while calling a producer, a callback, the store or the allocator, and no flight lock
 * (flight.c) is taken while holding it.
 *
 * Threads: everything here is thread-safe. A producer runs on the caller's thread (foreground)
 * or on a worker (background).
 */
#include "flight.h"
#include "access.h"
#include "fork.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define WORKERS_MAGIC 0x30b5e7a1u
#define TOKEN_LEN     32

#define DEFAULT_WAIT_MS  10000
#define DEFAULT_LEASE_MS 30000
#define NOT_LIVE_POLL_MS 50 /* wait_lease while the store's announcements are not live */

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
    unsigned n_threads;          /* room in `threads` */
    unsigned n_started;          /* threads running, under `lock` */
    corral__fork_hook fork_hook; /* workers_after_fork, in a forked child */
    pthread_t threads[];
};

/* In a forked child (fork.h): the refresh workers are gone, and one may have held `lock`. Forget
 * them and their queue (the jobs are the parent's copy, left as they are: their flights are
 * forgotten too, flight.c); new workers start on the next background refresh. */
static void workers_after_fork(void *arg) {
    corral__workers *w = arg;
    memset(&w->lock, 0, sizeof w->lock);
    memset(&w->wake, 0, sizeof w->wake);
    CORRAL_MUST(pthread_mutex_init(&w->lock, NULL) == 0);
    CORRAL_MUST(pthread_cond_init(&w->wake, NULL) == 0);
    w->head = w->tail = NULL;
    w->n_started = 0;
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

static void sleep_ms(uint64_t ms) {
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Reads the value under `sk` if it is valid and fresh at `now_ms`: CORRAL_OK with a reference
 * and its logical expiry (0: none), CORRAL_MISS otherwise (a store error too). */
static int read_current(corral *c, const corral__skey *sk, uint64_t now_ms, corral_value **out,
                        uint64_t *expiry_ms) {
    corral__view view;
    *expiry_ms = 0;
    if (corral__read(c, sk, now_ms, NULL, out, &view) != CORRAL_OK) return CORRAL_MISS;
    if (view.verdict != CORRAL__V_FRESH) {
        corral_value_unref(*out);
        *out = NULL;
        return CORRAL_MISS;
    }
    *expiry_ms = view.expiry_ms;
    return CORRAL_OK;
}

/* A caller waiting on another process's lease (wait_lease): the store's watch wakes it. */
typedef struct lease_waiter {
    corral__lease_watch w;
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool woken;
} lease_waiter;

/* The store's thread, under the store's lock: the waiter cannot be gone yet (it unwatches,
 * which takes that lock, before it goes). */
static void lease_woken(corral__lease_watch *w) {
    lease_waiter *lw = CORRAL_CONTAINER_OF(w, lease_waiter, w);
    CORRAL_MUST(pthread_mutex_lock(&lw->m) == 0);
    lw->woken = true;
    CORRAL_MUST(pthread_cond_signal(&lw->cv) == 0);
    CORRAL_MUST(pthread_mutex_unlock(&lw->m) == 0);
}

/* Waits until `lw` is woken or the monotonic clock reaches `until_ns`. */
static void lease_sleep(lease_waiter *lw, uint64_t until_ns) {
    struct timespec dl = { .tv_sec = (time_t)(until_ns / 1000000000u),
                           .tv_nsec = (long)(until_ns % 1000000000u) };
    CORRAL_MUST(pthread_mutex_lock(&lw->m) == 0);
    while (!lw->woken) {
        int e = pthread_cond_timedwait(&lw->cv, &lw->m, &dl);
        if (e == ETIMEDOUT) break;
        CORRAL_MUST(e == 0 || e == EINTR);
    }
    CORRAL_MUST(pthread_mutex_unlock(&lw->m) == 0);
}

/* How long a waiter whose store announces releases sleeps when none comes: the announcement
 * wakes it before; this bounds a lost one, and finds a lease that expired (its leader died). */
static uint64_t fallback_poll_ms(int64_t lease_ttl_ms) {
    return (uint64_t)CORRAL_MAX(CORRAL_MIN(lease_ttl_ms / 4, 1000), 10);
}

/* Waits for another process's leader: until the value lands (CORRAL_MISS, `*out` set), this
 * caller takes the lease (CORRAL_OK), or `wait_timeout_ms` passes or the store fails
 * (CORRAL_EXISTS or the error: the caller computes without the lease). Woken by the store's
 * announcement of the lease's release when it has them (store.h: lease_watch), polled with
 * backoff (1 ms doubling to 50 ms) when it has not or they are down. */
static int wait_lease(corral *c, const corral__skey *sk, const char *token, int64_t lease_ttl,
                      int64_t wait_timeout_ms, corral_value **out) {
    uint64_t wait_ms = (uint64_t)(wait_timeout_ms > 0 ? wait_timeout_ms : 0);
    uint64_t deadline_ns =
        corral__monotonic_ns() + CORRAL_MIN(wait_ms, (uint64_t)INT64_MAX / 2000000u) * 1000000u;
    corral__store *s = c->store;
    lease_waiter lw = { .w = { .woken = lease_woken } };
    pthread_condattr_t ca;
    bool can_watch = s->ops->lease_watch && pthread_condattr_init(&ca) == 0;
    if (can_watch) {
        can_watch = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                    pthread_cond_init(&lw.cv, &ca) == 0;
        CORRAL_MUST(pthread_condattr_destroy(&ca) == 0);
        if (can_watch && pthread_mutex_init(&lw.m, NULL) != 0) {
            CORRAL_MUST(pthread_cond_destroy(&lw.cv) == 0);
            can_watch = false;
        }
    }
    uint64_t pause = 1;
    int lrc;
    for (;;) {
        /* Watch first, then look: a release between the look and the sleep wakes the sleep. */
        int wrc = CORRAL_ENOTSUP;
        if (can_watch) {
            lw.woken = false;
            wrc = s->ops->lease_watch(s, sk, &lw.w);
        }
        bool armed = wrc == CORRAL_OK || wrc == CORRAL_WAITING;
        corral_value *v;
        uint64_t expiry_ms;
        if (read_current(c, sk, corral__now_ms(c), &v, &expiry_ms) == CORRAL_OK) {
            *out = v;
            lrc = CORRAL_MISS;
        } else {
            lrc = corral__lease_acquire(c, sk, token, TOKEN_LEN, lease_ttl);
        }
        uint64_t now_ns = corral__monotonic_ns();
        if (lrc != CORRAL_EXISTS || now_ns >= deadline_ns) {
            if (armed) (void)s->ops->lease_unwatch(s, &lw.w);
            if (lrc == CORRAL_EXISTS)
                corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_lease_timeouts_total, 1);
            break;
        }
        /* Not live yet (CORRAL_WAITING): the subscription's start wakes the watch. */
        uint64_t nap_ms = wrc == CORRAL_OK        ? fallback_poll_ms(lease_ttl)
                          : wrc == CORRAL_WAITING ? NOT_LIVE_POLL_MS
                                                  : pause;
        uint64_t until_ns = CORRAL_MIN(now_ns + nap_ms * 1000000u, deadline_ns);
        if (armed) {
            lease_sleep(&lw, until_ns);
            (void)s->ops->lease_unwatch(s, &lw.w);
        } else {
            sleep_ms((until_ns - now_ns + 999999u) / 1000000u);
        }
        if (!armed) pause = pause * 2 > 50 ? 50 : pause * 2;
    }
    if (can_watch) {
        CORRAL_MUST(pthread_cond_destroy(&lw.cv) == 0);
        CORRAL_MUST(pthread_mutex_destroy(&lw.m) == 0);
    }
    return lrc;
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
    int lrc = corral__lease_acquire(c, sk, token, TOKEN_LEN, lease_ttl);
    bool have_lease = lrc == CORRAL_OK;
    if (lrc == CORRAL_EXISTS && seen_expiry_ms != SAW_NOTHING && stale) {
        /* Another process is refreshing a value this caller still has (early refresh, or in
         * grace): keep serving it rather than wait for that process. */
        *out = corral_value_ref(stale);
        return CORRAL_STALE;
    }
    if (lrc == CORRAL_EXISTS) {
        lrc = wait_lease(c, sk, token, lease_ttl, o->wait_timeout_ms, out);
        if (lrc == CORRAL_MISS) return CORRAL_OK; /* the value landed: `*out` */
        have_lease = lrc == CORRAL_OK;
    }

    /* The caller decided from what it saw before it led: a leader that finished in between
     * (here or in another process) may already have made the value. Then there is nothing to
     * do. `seen_expiry_ms` tells that value apart from the one the caller saw. */
    corral_value *cur;
    uint64_t cur_expiry;
    if (read_current(c, sk, corral__now_ms(c), &cur, &cur_expiry) == CORRAL_OK) {
        if (seen_expiry_ms == SAW_NOTHING || cur_expiry != seen_expiry_ms) {
            if (have_lease) corral__lease_release(c, sk, token, TOKEN_LEN);
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
        if (have_lease) corral__lease_release(c, sk, token, TOKEN_LEN);
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
            int64_t extra =
                corral__has_envelopes(c) ? CORRAL_MAX(o->stale_ttl_ms, o->stale_if_error_ms) : 0;
            phys = eff + CORRAL_MAX(extra, 0);
        }
        int src = corral__store_set_env_flags(c, sk, &env, r.data, r.len, phys, CORRAL__SET_ALWAYS,
                                              corral__write_flags(&o->call));
        if (src == CORRAL_OK)
            corral__metrics_add(c->metrics, sk->cls, CORRAL__M_cache_sets_total, 1);
        /* A value the store refused (too big, store down) still goes to every caller. */
    }
    corral__free(&c->alloc, r.data, r.len ? r.len : 1);
    if (have_lease) corral__lease_release(c, sk, token, TOKEN_LEN);
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

int corral__loader_new(corral *c) {
    int rc = corral__flights_new(c);
    if (rc != CORRAL_OK) return rc;
    unsigned n = c->refresh_workers ? c->refresh_workers : 1;
    size_t bytes = sizeof(corral__workers) + n * sizeof(pthread_t);
    corral__workers *w = corral__calloc(&c->alloc, 1, bytes);
    if (!w) return CORRAL_ENOMEM;
    w->bytes = bytes;
    w->n_threads = n;
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
    c->workers = w;
    w->fork_hook.child = workers_after_fork;
    w->fork_hook.arg = w;
    corral__fork_hook_add(&w->fork_hook);
    return CORRAL_OK;
}

/* Starts the workers on first use, once (a start where no thread could be created is tried
 * again by the next submit). Returns CORRAL_OK when at least one runs. The threads are created
 * under `w->lock`, which they take first, so none runs a job before the start is recorded. */
static int workers_start(corral__workers *w, corral *c) {
    CORRAL_MUST(pthread_mutex_lock(&w->lock) == 0);
    if (w->n_started == 0) {
        for (unsigned i = 0; i < w->n_threads; i++) {
            if (pthread_create(&w->threads[i], NULL, worker_main, c) != 0) break;
            w->n_started++;
        }
    }
    bool running = w->n_started > 0;
    CORRAL_MUST(pthread_mutex_unlock(&w->lock) == 0);
    return running ? CORRAL_OK : CORRAL_ENOMEM;
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

    corral__workers *w = c->workers;
    int rc = workers_start(w, c);
    if (rc != CORRAL_OK) {
        job_free(c, j);
        return rc;
    }
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
    corral__workers *w = c->workers;
    if (w) {
        CORRAL_CHECK_OBJ(w, WORKERS_MAGIC);
        corral__fork_hook_remove(&w->fork_hook);
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
    corral__flights_free(c);
}

/* ---- get_or_set ---- */

/* A waiter got CORRAL_STALE and `v` from the flight's leader, which served it under its own
 * windows. Returns true, with `*rc` this caller's code, when the caller's own windows allow it
 * too: CORRAL_OK while it has not expired (the leader refreshed it early), CORRAL_STALE within
 * the caller's grace (counted as served stale). Not under its stale-if-error window: the leader
 * may have kept the value for another reason than a failed producer (another process held the
 * lease), and a caller that leads runs the producer and applies that window itself. */
static bool served_by_own_windows(corral *c, uint16_t cls, const corral_value *v,
                                  const corral__windows *w, int *rc) {
    if (!v) return false;
    corral__view view;
    corral__verdict verdict =
        corral__freshness(corral__value_hdr(v), v->hdr_len, corral__now_ms(c), w, &view);
    if (verdict == CORRAL__V_FRESH || verdict == CORRAL__V_EARLY) {
        *rc = CORRAL_OK;
        return true;
    }
    if (verdict == CORRAL__V_GRACE) {
        corral__metrics_add(c->metrics, cls, CORRAL__M_cache_stale_served_total, 1);
        *rc = CORRAL_STALE;
        return true;
    }
    return false;
}

/* Refreshes a value the caller still has (early refresh, or grace) if nobody else is: in the
 * background, or now on this thread. Returns CORRAL_OK with `*fresh` set when it refreshed in
 * the foreground, CORRAL_MISS when the refresh is elsewhere (another leader, or a worker). */
static int refresh(corral *c, const corral__skey *sk, const void *key, size_t key_len,
                   corral_producer producer, void *arg, const corral_load_opts *o,
                   corral_value *current, uint64_t expiry_ms, bool early, corral_value **fresh) {
    *fresh = NULL;
    corral_flight *lead;
    if (corral__flight_try_lead(c, sk, &lead) != CORRAL_OK)
        return CORRAL_MISS; /* someone else refreshes */
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
    if (opts->call.n_tags && !corral__has_envelopes(c))
        return CORRAL_ENOTSUP; /* the store cannot keep tags with the value */
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey(c, key, key_len, &opts->call, buf, &sk);
    if (rc != CORRAL_OK) return rc;

    uint64_t now_ms = corral__now_ms(c);
    corral_value *v = NULL;
    corral_value *stale = NULL; /* past expiry, kept for stale-if-error */
    uint64_t stale_expiry = 0;
    corral__windows w = { .beta = opts->beta,
                          .grace_ms = opts->stale_ttl_ms,
                          .stale_if_error_ms = opts->stale_if_error_ms };
    corral__view view;
    if (corral__read(c, &sk, now_ms, &w, &v, &view) == CORRAL_OK) {
        corral_value *fresh;
        switch (view.verdict) {
        case CORRAL__V_FRESH:
        case CORRAL__V_EARLY:
            /* XFetch may start a refresh; this caller keeps the value it has unless it
             * refreshed in the foreground. */
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_hits_total, 1);
            if (view.verdict == CORRAL__V_EARLY &&
                refresh(c, &sk, key, key_len, producer, arg, opts, v, view.expiry_ms, true,
                        &fresh) == CORRAL_OK) {
                corral_value_unref(v);
                v = fresh;
            }
            *out = v;
            return CORRAL_OK;
        case CORRAL__V_GRACE:
            /* Serve it while exactly one caller refreshes. */
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_hits_total, 1);
            if (refresh(c, &sk, key, key_len, producer, arg, opts, v, view.expiry_ms, false,
                        &fresh) == CORRAL_OK) {
                corral_value_unref(v);
                *out = fresh;
                return CORRAL_OK;
            }
            corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_stale_served_total, 1);
            *out = v;
            return CORRAL_STALE;
        case CORRAL__V_STALE_IF_ERROR: /* kept in case the producer fails */
            stale = v;
            stale_expiry = view.expiry_ms;
            v = NULL;
            break;
        case CORRAL__V_EXPIRED:
        case CORRAL__V_BUSTED: /* corral__read returns no BUSTED value */
            corral_value_unref(v);
            v = NULL;
            break;
        }
    }
    corral__metrics_add(c->metrics, sk.cls, CORRAL__M_cache_misses_total, 1);

    /* A miss: lead the flight, or wait for its leader. */
    int64_t timeout = opts->wait_timeout_ms > 0 ? opts->wait_timeout_ms : 0;
    uint64_t deadline_ns = corral__monotonic_ns() + (uint64_t)timeout * 1000000u;
    corral_flight *lead = NULL;
    for (;;) {
        corral__flight_group *group = NULL;
        rc = corral__flight_join_blocking(c, &sk, &lead, &group);
        if (rc == CORRAL_OK) break;
        if (rc != CORRAL_WAITING) {
            corral_value_unref(stale);
            return rc;
        }
        uint64_t now_ns = corral__monotonic_ns();
        int64_t left_ms = now_ns < deadline_ns ? (int64_t)((deadline_ns - now_ns) / 1000000u) : 0;
        corral_value *got = NULL;
        rc = corral__flight_wait(c, group, left_ms, &got);
        if (rc == CORRAL_STALE && !served_by_own_windows(c, sk.cls, got, &w, &rc)) {
            /* The leader kept an old value under its own windows (an early refresh or grace
             * while another process held the lease, or its stale-if-error) that this caller's do
             * not allow. Wait for the fresh value: join again, leading or waiting on the next
             * leader, until the caller's wait_timeout_ms. */
            corral_value_unref(got);
            if (corral__monotonic_ns() < deadline_ns) continue;
            rc = CORRAL_ETIMEDOUT;
            got = NULL;
        }
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
    rc = load(c, &sk, key, key_len, producer, arg, opts, SAW_NOTHING, stale, stale_expiry, &v);
    corral_flight_finish(c, lead, rc, v);
    corral_value_unref(stale);
    if (rc < 0) return rc;
    *out = v;
    return rc;
}
