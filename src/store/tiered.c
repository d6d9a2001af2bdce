/*
 * tiered.c - the near cache: a memory store (L1, in process) in front of the Redis store (L2),
 * invalidated by Redis client-side caching. docs/near-cache.md has the full model, the races
 * and how they were found.
 *
 * Model
 * - Reads look in L1 first; a miss reads Redis from the primary (GET and PTTL in one round trip:
 *   a replica may still hold what the primary just invalidated) and fills L1 with the value and
 *   its remaining TTL. get_many serves what L1 holds and reads the rest in one round trip.
 * - Tags: no get_checked (store.h). A tag's version key is a near hit like any other once warm.
 * - Writes go to Redis, then drop the key from L1, so a writer reads its own writes at once.
 *   Leases are Redis's only. Without envelopes (Django's format), a value that begins like one
 *   is not kept near: L1 would split it.
 * - Coherence: a tracker thread holds one connection to the primary (to every primary of a
 *   Redis Cluster) with `CLIENT TRACKING on REDIRECT <its own id> BCAST PREFIX <key_prefix>:`
 *   and `SUBSCRIBE __redis__:invalidate`, and drops each key Redis reports from L1, or
 *   everything for a nil payload (FLUSHDB/FLUSHALL). On a cluster each primary reports the
 *   keys of its own slots; a failover or a reshard that changes the set of primaries
 *   (corral__redis_topology) ends the subscriptions: L1 is flushed and the tracker subscribes
 *   to the new primaries.
 *   Writes made through other handles of this process on the same server do not wait for that
 *   report: the writer drops the keys from L1 before its write returns (near_peers.h).
 * - Liveness: L1 is used only while the tracker is subscribed (`live`, every connection). When
 *   one of its connections breaks or goes silent (a PING after ping_interval, lost after
 * ping_timeout more), `live` falls, L1 is flushed and the tracker reconnects with backoff; reads go
 * to Redis meanwhile.
 *
 * The in-flight read race: a read that fetched v1 must not fill L1 after an invalidation of the
 * key has passed. Every invalidation first increments its key's slot generation (`gen`), then
 * drops the key; every flush first increments `epoch`, then clears L1. A read notes both before
 * its fetch and fills only if neither moved (and `live` held), checked under the mutex of the
 * key's L1 shard as the value is stored (corral__mem_set_guarded). An invalidation after that
 * check drops the entry itself: its increment precedes its drop, which takes the same mutex.
 * Writes of this process increment the slot too.
 *
 * Not covered (docs/near-cache.md): another process's write until its invalidation arrives.
 *
 * Locking: the store's fields are written at open and read-only afterwards, but for `gen`,
 * `epoch`, `live` and `stopping` (sequentially consistent atomics: the race argument needs the
 * total order between a read's look and an invalidation's increment) and the counters
 * (relaxed). L1 and L2 do their own locking. The tracker thread owns its connections and the
 * table of releases pending (`rel`, release_heard); close wakes it through a pipe and joins it. No
 * lock is held across I/O; docs/threads.md.
 */
#include "tiered.h"
#include "../prom.h"
#include "memory.h"
#include "near_peers.h"
#include "redis.h"
#include "redis_pool.h"
#include "../envelope.h"
#include "../fork.h"
#include "../key.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TIERED_MAGIC       0x71e5edc4u
#define GEN_SLOTS          1024 /* invalidation generations, by key hash; a power of two */
#define INVALIDATE_CHANNEL "__redis__:invalidate"
#define PING_INTERVAL_MS   1000 /* defaults of corral__tiered_config */
#define PING_TIMEOUT_MS    1000
#define TRACK_MAX          64  /* tracked primaries: a cluster's, at most (redis_slots.h) */
#define REL_PENDING        256 /* releases heard on some primaries' connections, not all yet */
#define REL_MAX_AGE_NS     1000000000ull /* ... given up after a second: their waiters poll */

typedef struct tiered_counters {
    _Atomic uint64_t near_hits;     /* reads served by L1 */
    _Atomic uint64_t near_misses;   /* reads that went to Redis */
    _Atomic uint64_t fills;         /* values put in L1 */
    _Atomic uint64_t fills_dropped; /* values not put in L1: invalidated while in flight */
    _Atomic uint64_t invalidations; /* keys Redis reported changed, and database flushes */
    _Atomic uint64_t flushes;       /* L1 emptied: connection lost, FLUSHDB, clear */
    _Atomic uint64_t subscribes;    /* times the tracker subscribed */
    _Atomic uint64_t pings;         /* PINGs the tracker sent on a quiet connection */
    _Atomic uint64_t ping_timeouts; /* ... left unanswered past the deadline: connection lost */
    _Atomic uint64_t rel_dropped;   /* lease releases not heard on every primary in time */
} tiered_counters;

/* A lease release heard on some of a cluster's primaries' connections (release_heard). */
typedef struct rel_pending {
    uint64_t id;       /* hash of the message: the released key and the lease's token */
    uint64_t key_hash; /* what the Redis store's watches are matched by */
    uint64_t heard;    /* a bit per connection that brought it */
    uint64_t first_ns; /* when the first did */
} rel_pending;

typedef struct tiered_store {
    corral__store base;
    uint32_t magic;
    const corral__allocator *alloc;
    corral__store *near;         /* memory store */
    corral__store *redis;        /* the Redis store */
    char *track;                 /* "<key_prefix>:", or NULL to track every key; owned */
    const corral__keyscheme *ks; /* the handle's, to hash reported keys (corral__key_hash) */
    size_t track_len;
    _Atomic uint64_t gen[GEN_SLOTS];
    _Atomic uint64_t epoch;
    _Atomic bool live;     /* the tracker is subscribed: L1 may be read and filled */
    _Atomic bool stopping; /* close has begun */
    _Atomic int started;   /* 0: no tracker yet; 1: being started or running */
    _Atomic bool has_thread;
    /* fork.h: the tracker's connection while it has one (the child closes its copy), and
     * whether the next tracker must empty L1 first (set in a forked child: L1 is the parent's). */
    _Atomic(redisContext *) tracker_ctx[TRACK_MAX];
    _Atomic bool flush_first;
    corral__fork_hook fork_hook;
    corral__near_peer peer; /* in this process's list of near caches (near_peers.h) */
    int wake[2];            /* pipe: close writes, the tracker polls */
    pthread_t thread;
    void (*after_fetch)(void *ctx, const corral__skey *k);
    void *after_fetch_ctx;
    uint64_t ping_interval_ns; /* quiet time on the tracker connection before a PING */
    uint64_t ping_timeout_ns;  /* silence after a PING that counts as a lost connection */
    tiered_counters ctr;
    const char *lease_ch; /* the Redis store's lease channel, which the tracker carries */
    size_t lease_ch_len;
    rel_pending rel[REL_PENDING]; /* the tracker thread's: releases not heard on every primary */
    size_t n_rel;
} tiered_store;

static tiered_store *store_of(corral__store *base) {
    tiered_store *t = CORRAL_CONTAINER_OF(base, tiered_store, base);
    CORRAL_CHECK_OBJ(t, TIERED_MAGIC);
    return t;
}

static void count(_Atomic uint64_t *c) {
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static _Atomic uint64_t *slot_of(tiered_store *t, uint64_t hash) {
    return &t->gen[hash & (GEN_SLOTS - 1)];
}

/* ---- Invalidation (tracker thread, and this process's writes) ---- */

/* Drops `k` from L1 after bumping its slot: see the race argument at the top. */
static void forget(tiered_store *t, const corral__skey *k) {
    atomic_fetch_add(slot_of(t, k->hash), 1);
    (void)t->near->ops->del(t->near, k);
}

/* Empties L1 after bumping the epoch. */
static void flush(tiered_store *t) {
    atomic_fetch_add(&t->epoch, 1);
    (void)t->near->ops->clear(t->near);
    count(&t->ctr.flushes);
}

/* forget() for a key known by name only (reported by Redis, or by another handle of this
 * process), hashed as the handle hashes its keys. */
static void forget_named(tiered_store *t, const char *key, size_t len) {
    corral__skey sk = { .data = key, .len = len, .hash = corral__key_hash_of(t->ks, key, len) };
    forget(t, &sk);
}

/* Another handle of this process wrote to the same server (near_peers.h): `key`, or every key
 * when NULL, changed. */
static void peer_forget(void *ctx, const char *key, size_t len) {
    tiered_store *t = ctx;
    if (key)
        forget_named(t, key, len);
    else
        flush(t);
}

/* ---- Reads ---- */

static void *tracker_main(void *arg);

/* Starts the tracker on the first read: opening a handle does no I/O. Should the thread not
 * start, the near cache stays bypassed and the next read tries again. */
static void ensure_tracker(tiered_store *t) {
    if (atomic_load(&t->started)) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&t->started, &expected, 1)) return;
    if (pthread_create(&t->thread, NULL, tracker_main, t) == 0)
        atomic_store(&t->has_thread, true);
    else
        atomic_store(&t->started, 0);
}

/* What a fill checks under L1's shard lock, just before it stores: nothing has invalidated the
 * key's slot or flushed L1 since the read was sent, and the tracker is still subscribed. */
typedef struct fill_guard {
    tiered_store *t;
    _Atomic uint64_t *slot;
    uint64_t g0, e0;
} fill_guard;

static bool fill_still_valid(void *ctx) {
    const fill_guard *g = ctx;
    return atomic_load(g->slot) == g->g0 && atomic_load(&g->t->epoch) == g->e0 &&
           atomic_load(&g->t->live);
}

/* Fills L1 with `v`, read from Redis with `ttl_ms` left (0: not worth keeping), unless an
 * invalidation of its slot or a flush overtook the read: `g0` and `e0` are the slot's generation
 * and the epoch noted before the read was sent (see the race argument at the top). The check is
 * made under L1's shard lock as it stores (corral__mem_set_guarded), so an overtaken value is
 * never in L1, not even for the moment another reader could have found it there. */
static void keep(tiered_store *t, const corral__skey *k, const corral_value *v, int64_t ttl_ms,
                 uint64_t g0, uint64_t e0) {
    if (ttl_ms == 0) return;
    /* L1 (the memory store) splits an envelope off whatever begins with one; a store without
     * envelopes hands such a value out whole, so it is served but not kept near. */
    if ((t->base.caps & CORRAL__STORE_NO_ENVELOPE) &&
        corral__env_hdr_len(corral__value_data(v), v->len))
        return;
    if (t->after_fetch) t->after_fetch(t->after_fetch_ctx, k);
    fill_guard g = { .t = t, .slot = slot_of(t, k->hash), .g0 = g0, .e0 = e0 };
    /* The bytes as Redis holds them, envelope header included, so L1 splits it the same. */
    int rc = corral__mem_set_guarded(t->near, k, corral__value_hdr(v), v->len + v->hdr_len, ttl_ms,
                                     fill_still_valid, &g);
    if (rc == CORRAL_OK)
        count(&t->ctr.fills);
    else if (rc == CORRAL_MISS)
        count(&t->ctr.fills_dropped);
    /* Otherwise too big for L1, or no memory: served, not kept. */
}

/* Reads `k` from Redis and fills L1 unless an invalidation or a flush overtook the read. */
static int fetch(tiered_store *t, const corral__skey *k, corral_value **out) {
    /* The epoch before liveness: a connection lost and found again between the two loads has
     * moved the epoch, so the fill is refused (its invalidations may have been lost). */
    uint64_t g0 = atomic_load(slot_of(t, k->hash)), e0 = atomic_load(&t->epoch);
    bool fill = atomic_load(&t->live);
    count(&t->ctr.near_misses);
    int64_t ttl_ms = 0;
    int rc = corral__redis_get_ttl(t->redis, k, out, &ttl_ms);
    if (rc == CORRAL_OK && fill) keep(t, k, *out, ttl_ms, g0, e0);
    return rc;
}

static int t_get(corral__store *base, const corral__skey *k, corral_value **out) {
    tiered_store *t = store_of(base);
    *out = NULL;
    ensure_tracker(t);
    if (atomic_load(&t->live) && t->near->ops->get(t->near, k, out) == CORRAL_OK) {
        count(&t->ctr.near_hits);
        return CORRAL_OK;
    }
    return fetch(t, k, out);
}

static int t_get_into(corral__store *base, const corral__skey *k, void *buf, size_t cap,
                      size_t *len, void *hdr, size_t hdr_cap, size_t *hdr_len) {
    tiered_store *t = store_of(base);
    *len = 0;
    *hdr_len = 0;
    ensure_tracker(t);
    if (atomic_load(&t->live)) {
        int rc = t->near->ops->get_into(t->near, k, buf, cap, len, hdr, hdr_cap, hdr_len);
        if (rc == CORRAL_OK || rc == CORRAL_ENOSPC) {
            count(&t->ctr.near_hits);
            return rc;
        }
    }
    corral_value *v = NULL;
    int rc = fetch(t, k, &v);
    if (rc != CORRAL_OK) return rc;
    *len = v->len;
    *hdr_len = v->hdr_len;
    if (v->hdr_len && v->hdr_len <= hdr_cap) memcpy(hdr, corral__value_hdr(v), v->hdr_len);
    if (v->len > cap) {
        rc = CORRAL_ENOSPC;
    } else if (v->len) {
        memcpy(buf, corral__value_data(v), v->len);
    }
    corral_value_unref(v);
    return rc;
}

/* One key of a get_many that L1 did not hold. */
typedef struct pending {
    size_t idx;  /* its place in the caller's arrays */
    uint64_t g0; /* its slot's generation before the read */
} pending;

static int t_get_many(corral__store *base, const corral__skey *ks, size_t n, corral_value **out) {
    tiered_store *t = store_of(base);
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (n == 0) return CORRAL_OK;
    ensure_tracker(t);
    pending *pend = corral__alloc3(t->alloc, n, sizeof *pend, 0);
    corral__skey *miss = corral__alloc3(t->alloc, n, sizeof *miss, 0);
    corral_value **got = corral__alloc3(t->alloc, n, sizeof *got, 0);
    int64_t *ttls = corral__alloc3(t->alloc, n, sizeof *ttls, 0);
    int rc = CORRAL_ENOMEM;
    if (!pend || !miss || !got || !ttls) goto done;
    size_t m = 0;
    uint64_t e0 = atomic_load(&t->epoch); /* before liveness, as in fetch */
    bool live = atomic_load(&t->live);
    for (size_t i = 0; i < n; i++) {
        if (live && t->near->ops->get(t->near, &ks[i], &out[i]) == CORRAL_OK) {
            count(&t->ctr.near_hits);
            continue;
        }
        count(&t->ctr.near_misses);
        pend[m] = (pending){ .idx = i, .g0 = atomic_load(slot_of(t, ks[i].hash)) };
        miss[m++] = ks[i];
    }
    rc = CORRAL_OK;
    if (m && live) /* from the primary, with TTLs, to fill L1 */
        rc = corral__redis_get_many_ttl(t->redis, miss, m, got, ttls);
    else if (m)
        rc = t->redis->ops->get_many(t->redis, miss, m, got);
    if (rc == CORRAL_OK) {
        for (size_t j = 0; j < m; j++) {
            if (live && got[j]) keep(t, &miss[j], got[j], ttls[j], pend[j].g0, e0);
            out[pend[j].idx] = got[j];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            corral_value_unref(out[i]);
            out[i] = NULL;
        }
    }
done:
    corral__free(t->alloc, pend, n * sizeof *pend);
    corral__free(t->alloc, miss, n * sizeof *miss);
    corral__free(t->alloc, got, n * sizeof *got);
    corral__free(t->alloc, ttls, n * sizeof *ttls);
    return rc;
}

/* ---- Writes: Redis first, then forget the key here ---- */

static int t_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
                 int64_t ttl_ms, corral__set_mode mode, unsigned flags) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->set(t->redis, k, val, len, ttl_ms, mode, flags);
    forget(t, k); /* even on error: a write whose reply was lost may have been applied */
    return rc;
}

static int t_del(corral__store *base, const corral__skey *k) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->del(t->redis, k);
    forget(t, k);
    return rc;
}

static int t_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->touch(t->redis, k, ttl_ms);
    forget(t, k); /* L1 holds the old expiry */
    return rc;
}

/* Redis holds the truth: the near cache keeps a copy of the expiry at most. */
static int t_ttl(corral__store *base, const corral__skey *k, int64_t *ttl_ms) {
    tiered_store *t = store_of(base);
    return t->redis->ops->ttl(t->redis, k, ttl_ms);
}

static int t_incr(corral__store *base, const corral__skey *k, int64_t delta, int64_t *out) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->incr(t->redis, k, delta, out);
    forget(t, k);
    return rc;
}

static int t_set_many(corral__store *base, const corral__skey *ks, const corral_buf *vals, size_t n,
                      int64_t ttl_ms, unsigned flags) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->set_many(t->redis, ks, vals, n, ttl_ms, flags);
    for (size_t i = 0; i < n; i++)
        forget(t, &ks[i]);
    return rc;
}

static int t_del_many(corral__store *base, const corral__skey *ks, size_t n, size_t *deleted) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->del_many(t->redis, ks, n, deleted);
    for (size_t i = 0; i < n; i++)
        forget(t, &ks[i]);
    return rc;
}

static int t_clear(corral__store *base) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->clear(t->redis);
    flush(t);
    return rc;
}

static int t_clear_prefix(corral__store *base, const char *prefix, size_t len) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->clear_prefix(t->redis, prefix, len);
    flush(t);
    return rc;
}

static int t_lease_acquire(corral__store *base, const corral__skey *k, const void *token,
                           size_t token_len, int64_t ttl_ms) {
    tiered_store *t = store_of(base);
    return t->redis->ops->lease_acquire(t->redis, k, token, token_len, ttl_ms);
}

static int t_lease_release(corral__store *base, const corral__skey *k, const void *token,
                           size_t token_len) {
    tiered_store *t = store_of(base);
    return t->redis->ops->lease_release(t->redis, k, token, token_len);
}

static int t_lease_watch(corral__store *base, const corral__skey *k, corral__lease_watch *w) {
    tiered_store *t = store_of(base);
    ensure_tracker(t); /* it carries the lease channel */
    return t->redis->ops->lease_watch(t->redis, k, w);
}

static bool t_lease_unwatch(corral__store *base, corral__lease_watch *w) {
    tiered_store *t = store_of(base);
    return t->redis->ops->lease_unwatch(t->redis, w);
}

static size_t t_used_bytes(corral__store *base) {
    tiered_store *t = store_of(base);
    return t->near->ops->used_bytes(t->near);
}

static size_t t_max_bytes(corral__store *base) {
    tiered_store *t = store_of(base);
    return t->near->ops->max_bytes(t->near);
}

static int t_metrics_text(corral__store *base, char *buf, size_t cap) {
    tiered_store *t = store_of(base);
    int rc = t->redis->ops->metrics_text(t->redis, buf, cap);
    if (rc != CORRAL_OK) return rc;
    size_t used = strlen(buf);
    const corral__prom_row rows[] = {
#define LOAD(x) atomic_load_explicit(&t->ctr.x, memory_order_relaxed)
        { "near_hits_total", "counter",
          "Reads served by the near cache (the rest of corral_cache_hits_total came from Redis).",
          LOAD(near_hits) },
        { "near_misses_total", "counter", "Reads the near cache sent to Redis.",
          LOAD(near_misses) },
        { "near_fills_total", "counter", "Values kept in the near cache.", LOAD(fills) },
        { "near_fills_dropped_total", "counter",
          "Values read from Redis and not kept near: invalidated while being read.",
          LOAD(fills_dropped) },
        { "near_invalidations_total", "counter",
          "Keys Redis reported changed (own writes included), and database flushes.",
          LOAD(invalidations) },
        { "near_flushes_total", "counter",
          "Times the near cache was emptied: tracking connection lost, FLUSHDB, clear.",
          LOAD(flushes) },
        { "near_subscribes_total", "counter", "Times the tracker subscribed to invalidations.",
          LOAD(subscribes) },
        { "near_pings_total", "counter", "PINGs the tracker sent on a quiet connection.",
          LOAD(pings) },
        { "near_ping_timeouts_total", "counter",
          "Tracker connections given up because a PING went unanswered past its deadline.",
          LOAD(ping_timeouts) },
        { "near_lease_releases_dropped_total", "counter",
          "Lease releases not heard on every primary of a cluster in time: their waiters poll.",
          LOAD(rel_dropped) },
        { "near_live", "gauge", "1 while invalidations flow and the near cache is used.",
          atomic_load(&t->live) ? 1u : 0u },
#undef LOAD
    };
    return corral__prom_rows(buf, cap, &used, "corral_redis_", rows, sizeof rows / sizeof rows[0]);
}

static int t_status(corral__store *base, size_t i, corral_server_status *out) {
    tiered_store *t = store_of(base);
    return t->redis->ops->status(t->redis, i, out);
}

/* ---- The tracker thread ---- */

static bool is_str(const redisReply *r, const char *s) {
    size_t n = strlen(s);
    return r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, s, n) == 0;
}

size_t corral__near_apply_reply(const struct redisReply *r,
                                void (*drop)(void *ctx, const char *key, size_t len), void *ctx) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !is_str(r->element[0], "message") ||
        !is_str(r->element[1], INVALIDATE_CHANNEL))
        return 0;
    const redisReply *keys = r->element[2];
    bool named = keys->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; named && i < keys->elements; i++)
        named = keys->element[i]->type == REDIS_REPLY_STRING;
    if (!named) { /* nil: FLUSHDB or FLUSHALL; anything else names no key we could drop */
        drop(ctx, NULL, 0);
        return 1;
    }
    for (size_t i = 0; i < keys->elements; i++)
        drop(ctx, keys->element[i]->str, keys->element[i]->len);
    return keys->elements;
}

/* A lease release (the channel's message `msg`) heard on connection `conn` of `n`: handed to the
 * Redis store's waiters once every connection brought it. On a cluster the leader's writes may
 * be on any primary, and each primary sends its invalidations of them before the release (which
 * reaches it over the cluster bus after the writes were acknowledged): so once every primary's
 * connection brought the release, L1 has dropped everything the leader wrote. A release not
 * heard on every connection within REL_MAX_AGE_NS, or with REL_PENDING others pending, is given
 * up: its waiters find the value on their next poll. */
static void release_heard(tiered_store *t, size_t conn, size_t n, const char *msg, size_t len) {
    uint64_t key_hash = corral__redis_lease_key_hash(msg, len);
    if (n == 1) {
        corral__redis_lease_heard(t->redis, key_hash);
        return;
    }
    uint64_t id = corral__hash_bytes(msg, len), now = corral__monotonic_ns();
    uint64_t all = n == 64 ? UINT64_MAX : (1ull << n) - 1;
    size_t kept = 0, hit = SIZE_MAX;
    for (size_t i = 0; i < t->n_rel; i++) {
        if (now - t->rel[i].first_ns > REL_MAX_AGE_NS) {
            count(&t->ctr.rel_dropped);
            continue;
        }
        t->rel[kept] = t->rel[i];
        if (t->rel[kept].id == id && hit == SIZE_MAX) hit = kept;
        kept++;
    }
    t->n_rel = kept;
    if (hit == SIZE_MAX) {
        if (t->n_rel == REL_PENDING) {
            count(&t->ctr.rel_dropped);
            return;
        }
        hit = t->n_rel++;
        t->rel[hit] = (rel_pending){ .id = id, .key_hash = key_hash, .first_ns = now };
    }
    t->rel[hit].heard |= 1ull << conn;
    if (t->rel[hit].heard != all) return;
    t->rel[hit] = t->rel[--t->n_rel];
    corral__redis_lease_heard(t->redis, key_hash);
}

/* Applies one reply of the tracker's connection `conn` (of `n`): a message of the lease channel
 * goes to the Redis store's waiters (release_heard), any other to L1. A release drops nothing
 * from L1: the leader's writes were announced by the invalidations before it, applied already.
 * So a release takes no L1 shard lock on this thread, in any process that hears it (one more
 * chance to hold one while the application forks: fork.h, "Not covered"). */
static void on_message(tiered_store *t, const redisReply *r, size_t conn, size_t n) {
    if (t->lease_ch && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        is_str(r->element[0], "message")) {
        const redisReply *ch = r->element[1], *released = r->element[2];
        if (ch->type == REDIS_REPLY_STRING && ch->len == t->lease_ch_len &&
            memcmp(ch->str, t->lease_ch, t->lease_ch_len) == 0) {
            if (released->type == REDIS_REPLY_STRING)
                release_heard(t, conn, n, released->str, released->len);
            return;
        }
    }
    size_t keys = corral__near_apply_reply(r, peer_forget, t);
    if (keys) atomic_fetch_add_explicit(&t->ctr.invalidations, keys, memory_order_relaxed);
}

/* CLIENT ID, CLIENT TRACKING ... REDIRECT <id> BCAST [PREFIX p], SUBSCRIBE. 0 or -1. */
static int subscribe(tiered_store *t, redisContext *ctx) {
    redisReply *r = redisCommand(ctx, "CLIENT ID");
    if (!r || r->type != REDIS_REPLY_INTEGER) goto fail;
    long long id = r->integer;
    freeReplyObject(r);
    r = t->track ? redisCommand(ctx, "CLIENT TRACKING on REDIRECT %lld BCAST PREFIX %b", id,
                                t->track, t->track_len)
                 : redisCommand(ctx, "CLIENT TRACKING on REDIRECT %lld BCAST", id);
    if (!r || r->type != REDIS_REPLY_STATUS) goto fail;
    freeReplyObject(r);
    r = redisCommand(ctx, "SUBSCRIBE %s", INVALIDATE_CHANNEL);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !is_str(r->element[0], "subscribe"))
        goto fail;
    freeReplyObject(r);
    if (!t->lease_ch) return 0; /* the store has no notifier (redis.h) */
    r = redisCommand(ctx, "SUBSCRIBE %b", t->lease_ch, t->lease_ch_len);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !is_str(r->element[0], "subscribe"))
        goto fail;
    freeReplyObject(r);
    return 0;
fail:
    if (r) freeReplyObject(r);
    return -1;
}

/* Sends a PING on the subscribed connection. 0 or -1. A PING is a few bytes on a connection
 * that sends nothing else, so the write does not block (and SO_SNDTIMEO bounds it if it did). */
static int send_ping(redisContext *ctx) {
    if (redisAppendCommand(ctx, "PING") != REDIS_OK) return -1;
    int done = 0;
    do {
        if (redisBufferWrite(ctx, &done) != REDIS_OK) return -1;
    } while (!done);
    return 0;
}

/* One subscribed connection's liveness. */
typedef struct tracked {
    redisContext *ctx;
    uint64_t heard_ns; /* when bytes last arrived (or the subscription began) */
    uint64_t ping_ns;  /* when the PING now unanswered went out; 0: none */
} tracked;

/* Applies messages until a connection fails or goes silent past a PING's deadline, the store's
 * set of primaries changes (corral__redis_topology moved from `topo`), or close wakes the
 * thread. Every connection counts: a node whose invalidations stop may hold keys L1 keeps. */
static void listen_invalidations(tiered_store *t, tracked *tr, size_t n, uint64_t topo) {
    struct pollfd pf[TRACK_MAX + 1];
    for (;;) {
        uint64_t now = corral__monotonic_ns(), due = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
            void *reply = NULL;
            while (redisGetReplyFromReader(tr[i].ctx, &reply) == REDIS_OK && reply) {
                on_message(t, reply, i, n); /* a PING's ["pong", ""]: not a message, ignored */
                freeReplyObject(reply);
                reply = NULL;
            }
            if (tr[i].ctx->err) return;
            if (tr[i].ping_ns) {
                if (now >= tr[i].ping_ns + t->ping_timeout_ns) {
                    count(&t->ctr.ping_timeouts);
                    return;
                }
                due = CORRAL_MIN(due, tr[i].ping_ns + t->ping_timeout_ns);
            } else if (now >= tr[i].heard_ns + t->ping_interval_ns) {
                if (send_ping(tr[i].ctx) != 0) return;
                count(&t->ctr.pings);
                tr[i].ping_ns = now;
                due = CORRAL_MIN(due, now + t->ping_timeout_ns);
            } else {
                due = CORRAL_MIN(due, tr[i].heard_ns + t->ping_interval_ns);
            }
            pf[i] = (struct pollfd){ .fd = tr[i].ctx->fd, .events = POLLIN };
        }
        /* A failover or a reshard onto another node: the new primaries are not tracked yet. */
        if (corral__redis_topology(t->redis) != topo) return;
        pf[n] = (struct pollfd){ .fd = t->wake[0], .events = POLLIN };
        uint64_t wait_ms = due > now ? (due - now + 999999u) / 1000000u : 0;
        int got = poll(pf, (nfds_t)(n + 1), (int)CORRAL_MIN(wait_ms, (uint64_t)INT32_MAX));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 || pf[n].revents || atomic_load(&t->stopping)) return;
        for (size_t i = 0; i < n; i++) {
            if (!pf[i].revents) continue;
            if (redisBufferRead(tr[i].ctx) != REDIS_OK) return; /* EOF, reset */
            /* The connection carries bytes: it is alive. */
            tr[i].heard_ns = corral__monotonic_ns();
            tr[i].ping_ns = 0;
        }
    }
}

/* Waits up to `ms` for close; true when closing. */
static bool wait_or_stop(tiered_store *t, uint64_t ms) {
    if (atomic_load(&t->stopping)) return true;
    struct pollfd pf = { .fd = t->wake[0], .events = POLLIN };
    int n = poll(&pf, 1, (int)CORRAL_MIN(ms, (uint64_t)INT32_MAX));
    return (n > 0 && pf.revents) || atomic_load(&t->stopping);
}

static void *tracker_main(void *arg) {
    tiered_store *t = arg;
    /* Our own thread: a write to a dead server must not kill the process. */
    sigset_t set;
    if (sigemptyset(&set) == 0 && sigaddset(&set, SIGPIPE) == 0)
        (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
    unsigned fails = 0;
    uint64_t rng = (uint64_t)(uintptr_t)t ^ 0x5deece66dull;
    if (atomic_exchange(&t->flush_first, false)) flush(t);
    while (!atomic_load(&t->stopping)) {
        /* The topology before the connections: a change after it is seen by the listener. */
        uint64_t topo = corral__redis_topology(t->redis);
        redisContext *ctxs[TRACK_MAX];
        tracked tr[TRACK_MAX];
        size_t n = corral__redis_connect_primaries(t->redis, ctxs, TRACK_MAX);
        if (n > 0 && corral__redis_topology(t->redis) != topo) {
            /* The map changed while connecting (its first load does): connect to its primaries
             * at once, rather than go live and end at the listener's first look. */
            for (size_t i = 0; i < n; i++)
                redisFree(ctxs[i]);
            continue;
        }
        bool subscribed = n > 0;
        t->n_rel = 0;
        for (size_t i = 0; i < n; i++) {
            atomic_store(&t->tracker_ctx[i], ctxs[i]);
            subscribed = subscribed && subscribe(t, ctxs[i]) == 0;
            tr[i] = (tracked){ .ctx = ctxs[i], .heard_ns = corral__monotonic_ns() };
        }
        if (subscribed) {
            fails = 0;
            count(&t->ctr.subscribes);
            atomic_store(&t->live, true); /* L1 is empty: it was flushed when the last one went */
            corral__redis_lease_live(t->redis, true);
            listen_invalidations(t, tr, n, topo);
            atomic_store(&t->live, false);
            corral__redis_lease_live(t->redis, false);
            flush(t); /* invalidations may have been lost */
        }
        for (size_t i = 0; i < n; i++) {
            /* Before the free: a child never frees it twice. */
            atomic_store(&t->tracker_ctx[i], NULL);
            redisFree(ctxs[i]);
        }
        if (fails < UINT32_MAX) fails++;
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        if (wait_or_stop(t, corral__redis_backoff_ms(fails, rng >> 11))) break;
    }
    return NULL;
}

/* ---- Open and close ---- */

/* In a forked child (fork.h): the tracker thread is gone, its connection and the wake-up pipe
 * are the parent's (a write to the pipe would stop the parent's tracker), and L1 holds what the
 * parent knew. The next read starts a tracker of the child's own, which empties L1 before it
 * makes it live. A pipe that cannot be made again leaves the near cache bypassed. */
static void tiered_after_fork(void *arg) {
    tiered_store *t = arg;
    /* The child's copy of the descriptor; the parent's stays open. The tracker may have been
     * halfway through a read, so the context's memory is left as it is. */
    for (size_t i = 0; i < TRACK_MAX; i++) {
        redisContext *ctx = atomic_exchange(&t->tracker_ctx[i], NULL);
        if (ctx && ctx->fd >= 0) (void)close(ctx->fd);
    }
    atomic_store(&t->live, false);
    atomic_fetch_add(&t->epoch, 1); /* fills begun before the fork are not kept */
    atomic_store(&t->flush_first, true);
    atomic_store(&t->has_thread, false);
    for (int i = 0; i < 2; i++)
        if (t->wake[i] >= 0) (void)close(t->wake[i]);
    atomic_store(&t->started, corral__cloexec_pipe(t->wake) == 0 ? 0 : 1);
}

static void t_close(corral__store *base) {
    tiered_store *t = store_of(base);
    corral__near_peer_remove(&t->peer); /* no other handle's write reaches L1 from here on */
    corral__fork_hook_remove(&t->fork_hook);
    if (atomic_load(&t->has_thread)) {
        atomic_store(&t->stopping, true);
        (void)corral__pipe_poke(t->wake[1]);
        int rc = pthread_join(t->thread, NULL);
        assert(rc == 0);
        (void)rc;
    }
    for (int i = 0; i < 2; i++) {
        if (t->wake[i] < 0) continue;
        int crc = close(t->wake[i]);
        assert(crc == 0);
        (void)crc;
    }
    if (t->near) t->near->ops->close(t->near);
    if (t->redis) t->redis->ops->close(t->redis);
    corral__free(t->alloc, t->track, t->track_len + 1);
    t->magic = 0;
    corral__free(t->alloc, t, sizeof *t);
}

static const corral__store_ops tiered_ops = {
    .name = "redis+near",
    .get = t_get,
    .get_into = t_get_into,
    .set = t_set,
    .del = t_del,
    .touch = t_touch,
    .ttl = t_ttl,
    .incr = t_incr,
    .clear = t_clear,
    .clear_prefix = t_clear_prefix,
    .get_many = t_get_many,
    .set_many = t_set_many,
    .del_many = t_del_many,
    .lease_acquire = t_lease_acquire,
    .lease_release = t_lease_release,
    .lease_watch = t_lease_watch,
    .lease_unwatch = t_lease_unwatch,
    .used_bytes = t_used_bytes,
    .max_bytes = t_max_bytes,
    .metrics_text = t_metrics_text,
    .status = t_status,
    .close = t_close,
};

int corral__tiered_open_take(corral__store **out, corral__store *redis,
                             const corral__tiered_config *cfg, const corral__store_env *env,
                             corral_error *err) {
    *out = NULL;
    if (cfg->near_bytes == 0) {
        redis->ops->close(redis);
        return corral__seterr(err, CORRAL_EINVAL, "near_cache: must be more than 0");
    }
    tiered_store *t = corral__calloc(env->alloc, 1, sizeof *t);
    if (!t) {
        redis->ops->close(redis);
        return corral__seterr(err, CORRAL_ENOMEM, "near cache: out of memory");
    }
    t->base.ops = &tiered_ops;
    t->base.caps = redis->caps;
    t->magic = TIERED_MAGIC;
    t->alloc = env->alloc;
    t->redis = redis;
    t->wake[0] = t->wake[1] = -1;
    t->after_fetch = cfg->after_fetch;
    t->after_fetch_ctx = cfg->after_fetch_ctx;
    t->ping_interval_ns =
        (uint64_t)(cfg->ping_interval_ms > 0 ? cfg->ping_interval_ms : PING_INTERVAL_MS) * 1000000u;
    t->ping_timeout_ns =
        (uint64_t)(cfg->ping_timeout_ms > 0 ? cfg->ping_timeout_ms : PING_TIMEOUT_MS) * 1000000u;
    for (size_t i = 0; i < GEN_SLOTS; i++)
        atomic_init(&t->gen[i], 0);
    atomic_init(&t->epoch, 0);
    atomic_init(&t->live, false);
    atomic_init(&t->stopping, false);
    atomic_init(&t->started, 0);
    atomic_init(&t->has_thread, false);
    for (size_t i = 0; i < TRACK_MAX; i++)
        atomic_init(&t->tracker_ctx[i], NULL);
    atomic_init(&t->flush_first, false);
    t->ks = cfg->ks;
    int rc = CORRAL_ENOMEM;
    if (!cfg->track_all) {
        t->track_len = cfg->key_prefix_len + 1;
        t->track = corral__alloc(env->alloc, t->track_len + 1);
        if (!t->track) goto fail;
        if (cfg->key_prefix_len) memcpy(t->track, cfg->key_prefix, cfg->key_prefix_len);
        t->track[cfg->key_prefix_len] = ':';
        t->track[t->track_len] = '\0';
    }
    /* L1's keys are hashed as forget_named hashes them: corral__key_hash_of(t->ks) */
    corral__mem_config mc = { .max_bytes = cfg->near_bytes,
                              .eviction = CORRAL_EVICT_DEFAULT,
                              .key_hash_ctx = t->ks };
    corral__store_env near_env = *env;
    near_env.events = (corral__store_events){ 0 }; /* L1 is a cache of a cache: no gauges */
    rc = corral__mem_open(&t->near, &mc, &near_env);
    if (rc != CORRAL_OK) goto fail;
    rc = CORRAL_ENOMEM;
    if (corral__cloexec_pipe(t->wake) != 0) goto fail;
    t->fork_hook.child = tiered_after_fork;
    t->fork_hook.arg = t;
    corral__fork_hook_add(&t->fork_hook);
    t->peer.server = corral__redis_server_id(redis, &t->peer.server_len);
    t->peer.owner = redis;
    t->peer.forget = peer_forget;
    t->peer.ctx = t;
    corral__near_peer_add(&t->peer);
    t->lease_ch = corral__redis_lease_attach(redis, &t->lease_ch_len);
    *out = &t->base;
    return CORRAL_OK;
fail:
    t_close(&t->base);
    return corral__seterr(err, rc, "near cache: %s", corral_strerror(rc));
}
