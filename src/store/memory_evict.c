/*
 * memory_evict.c - what leaves the memory store, and when: expiry and eviction. Everything here
 * runs under the lock of the shard it works on (the `_locked` functions) or takes it with a
 * trylock from a read-side section (the `_rcu` ones); removal itself is memory.c's
 * (corral__mem_remove_locked).
 *
 * Expiry: an expired entry is never returned. Its memory is reclaimed incrementally, never by a
 * scan of a whole shard in one call: each write examines MEM_WRITE_SCAN entries of each queue at
 * a per-queue cursor, eviction takes the expired entries it meets first, a read that finds an
 * expired entry removes it when the shard's lock is free, and corral__mem_reclaim does bounded
 * work on demand.
 *
 * Eviction: a write makes room in its shard before it publishes. SIEVE keeps one queue and a
 * hand; S3-FIFO a small queue, a main queue and a ghost table of key hashes; LRU, kept for
 * comparison, moves a hit to the head. docs/eviction.md describes and measures them.
 *
 * References: SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI '24); S3-FIFO (Yang et al.,
 * "FIFO Queues are All You Need for Cache Eviction", SOSP '23).
 */
#include "memory_internal.h"

/* ---- Expiry ---- */

/* Examines up to `n` entries of queue `qi` at its cursor, oldest first and wrapping, and
 * removes the expired ones, at most `max_remove`. Adds the entries examined to `*examined`;
 * returns how many it removed. */
static size_t scan_queue_locked(mem_store *s, mem_shard *sh, unsigned qi, uint64_t now, size_t n,
                                size_t max_remove, size_t *examined) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[qi];
    size_t removed = 0;
    n = CORRAL_MIN(n, q->count); /* one lap at most */
    for (size_t i = 0; i < n && removed < max_remove && q->count; i++) {
        mem_entry *e = q->scan ? q->scan : q->tail;
        q->scan = q_newer(e);
        (*examined)++;
        if (is_expired(sh, e, now)) {
            corral__mem_remove_locked(s, sh, e, mem_entry_hash(s, e), CORRAL__EXPIRED);
            removed++;
        }
    }
    return removed;
}

size_t corral__mem_scan_locked(mem_store *s, mem_shard *sh, uint64_t now, size_t n,
                               size_t max_remove, size_t *examined) {
    CORRAL_ASSERT_HELD(&sh->lock);
    size_t removed = 0;
    if (shard_expiring(sh) == 0) return 0; /* examines nothing: the caller moves on */
    for (unsigned qi = 0; qi < MEM_QUEUES && removed < max_remove; qi++)
        removed += scan_queue_locked(s, sh, qi, now, n, max_remove - removed, examined);
    return removed;
}

/* A reader found `e` expired: removes it if the shard's lock is free, otherwise leaves it to
 * the writers' cursors. Call inside the read-side section that found `e`. */
void corral__mem_reap_rcu(mem_store *s, mem_entry *e, uint64_t hash, uint64_t now) {
    mem_shard *sh = shard_of(s, hash);
    if (!corral__spin_trylock(&sh->lock)) return;
    if (mem_live(e) && is_expired(sh, e, now))
        corral__mem_remove_locked(s, sh, e, hash, CORRAL__EXPIRED);
    shard_unlock(sh);
}

/* ---- Eviction ---- */

/* SIEVE: the hand walks from the tail toward the head, clearing visited bits, and stops at the
 * first unvisited (or expired) entry; it wraps to the tail past the head. */
static mem_entry *sieve_victim_locked(mem_shard *sh, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[MEM_MAIN];
    mem_entry *e = q->hand ? q->hand : q->tail;
    /* Two laps clear every bit; readers setting bits again behind the hand cannot hold it
     * longer than that. */
    for (size_t seen = 0; seen <= 2 * q->count; seen++) {
        if (is_expired(sh, e, now) || !mem_hits(e)) break;
        mem_set_hits(e, 0);
        mem_entry *newer = q_newer(e);
        e = newer ? newer : q->tail;
    }
    q->hand = e; /* removal moves it on to the newer neighbour */
    return e;
}

/* A ghost slot is picked by a multiplicative hash of the low 32 bits of the key's hash (their
 * low bits pick the bucket and their top bits the shard, so they alone would use a shard's
 * share of the slots); it holds those bits, never 0. */
static uint32_t *ghost_slot_locked(mem_shard *sh, uint32_t hash) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return &sh->ghost[((uint64_t)hash * 0x9e3779b97f4a7c15u >> 32) & sh->ghost_mask];
}

bool corral__mem_ghost_take_locked(mem_shard *sh, uint64_t hash) {
    if (!sh->ghost_used) return false;
    uint32_t *slot = ghost_slot_locked(sh, (uint32_t)hash);
    if (*slot != ((uint32_t)hash | 1u)) return false;
    *slot = 0;
    return true;
}

static void ghost_put_locked(mem_shard *sh, uint64_t hash) {
    *ghost_slot_locked(sh, (uint32_t)hash) = (uint32_t)hash | 1u;
    sh->ghost_used = true;
}

/* S3-FIFO: while the small queue holds more than its share, its tail either earns the main
 * queue (it was hit) or leaves, remembered in the ghost by its key's hash; otherwise the main
 * queue's tail is reinserted while it has frequency left (one less each time) or leaves. The
 * victim's hash in *hash. */
static mem_entry *s3fifo_victim_locked(mem_store *s, mem_shard *sh, uint64_t now, uint64_t *hash) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *small = &sh->q[MEM_SMALL], *mainq = &sh->q[MEM_MAIN];
    /* Each entry moves at most MEM_S3_FREQ_MAX + 1 times unless readers keep raising its
     * frequency; past this bound the tail goes regardless. */
    size_t moves = (MEM_S3_FREQ_MAX + 2) * (small->count + mainq->count);
    mem_entry *e;
    for (;;) {
        bool from_small = small->count && (small->bytes > sh->small_budget || !mainq->count);
        e = from_small ? small->tail : mainq->tail;
        if (is_expired(sh, e, now) || moves-- == 0) break;
        uint8_t f = mem_hits(e);
        if (from_small && f < MEM_S3_PROMOTE) {
            *hash = mem_entry_hash(s, e);
            ghost_put_locked(sh, *hash);
            return e;
        }
        if (!from_small && f == 0) break;
        corral__mem_queue_unlink_locked(sh, e);
        mem_set_hits(e, from_small ? 0 : (uint8_t)(f - 1));
        corral__mem_queue_push_locked(sh, MEM_MAIN, e);
    }
    *hash = mem_entry_hash(s, e);
    return e;
}

/* The entry eviction removes next, or NULL when the shard holds none; with its key's hash in
 * *hash. */
static mem_entry *victim_locked(mem_store *s, mem_shard *sh, uint64_t now, uint64_t *hash) {
    if (corral__mem_shard_count_locked(sh) == 0) return NULL;
    mem_entry *e;
    switch (s->policy) {
    case CORRAL_EVICT_S3FIFO: return s3fifo_victim_locked(s, sh, now, hash);
    case CORRAL_EVICT_LRU: e = sh->q[MEM_MAIN].tail; break;
    default: e = sieve_victim_locked(sh, now); break;
    }
    *hash = mem_entry_hash(s, e);
    return e;
}

/* Evicts until `need` more bytes fit the shard's budget. need <= budget (check_size). With
 * no entry left, the shard's table on the heap goes too (back to its home table), so what
 * check_size lets through always fits. */
void corral__mem_make_room_locked(mem_store *s, mem_shard *sh, size_t need, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    assert(need <= sh->budget);
    while (atomic_load_explicit(&sh->used, memory_order_relaxed) > sh->budget - need) {
        uint64_t hash;
        mem_entry *v = victim_locked(s, sh, now, &hash);
        if (v == NULL && corral__mem_table_home_locked(s, sh)) continue;
        if (CORRAL_NEVER(v == NULL)) break;
        corral__mem_remove_locked(s, sh, v, hash,
                                  is_expired(sh, v, now) ? CORRAL__EXPIRED : CORRAL__EVICTED);
    }
}

/* ---- Hits (LRU) and reclaim ---- */

/* LRU: a hit moves the entry to the head when the shard's lock is free. */
void corral__mem_lru_touch_rcu(mem_shard *sh, mem_entry *e) {
    if (!corral__spin_trylock(&sh->lock)) return;
    if (mem_live(e) && sh->q[MEM_MAIN].head != e) {
        corral__mem_queue_unlink_locked(sh, e);
        corral__mem_queue_push_locked(sh, MEM_MAIN, e);
    }
    shard_unlock(sh);
}

size_t corral__mem_reclaim(corral__store *base, size_t budget) {
    mem_store *s = store_of(base);
    if (budget == 0) return 0;
    uint64_t now = clock_now(s);
    size_t examine =
        budget > SIZE_MAX / MEM_RECLAIM_FACTOR ? SIZE_MAX : budget * MEM_RECLAIM_FACTOR;
    size_t removed = 0;
    unsigned start = atomic_fetch_add_explicit(&s->reclaim_next, 1, memory_order_relaxed);
    for (unsigned i = 0; i < s->nshards && removed < budget && examine; i++) {
        mem_shard *sh = &s->shards[(start + i) % s->nshards];
        size_t lap = SIZE_MAX; /* one lap of the shard at most */
        while (lap && removed < budget && examine) {
            size_t examined = 0;
            read_lock(s);
            shard_lock(sh);
            if (lap == SIZE_MAX) lap = corral__mem_shard_count_locked(sh);
            size_t n = CORRAL_MIN(CORRAL_MIN(lap, examine), (size_t)MEM_LOCK_BATCH);
            removed += corral__mem_scan_locked(s, sh, now, n, budget - removed, &examined);
            shard_unlock(sh);
            read_unlock(s);
            if (examined == 0) break;
            lap -= CORRAL_MIN(lap, examined);
            examine -= CORRAL_MIN(examine, examined);
        }
    }
    return removed;
}
