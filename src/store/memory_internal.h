/*
 * memory_internal.h - what the files of the memory store share beyond memory_read.h's types:
 * the constants, small helpers and functions that memory.c, memory_evict.c and memory_rcu.c
 * call in one another. Not for use outside src/store/memory*.c.
 */
#ifndef CORRAL_STORE_MEMORY_INTERNAL_H
#define CORRAL_STORE_MEMORY_INTERNAL_H

#include "memory.h"
#include "memory_read.h"

#include <stdatomic.h>

#define MEM_ENTRY_MAGIC 0x3e3e7a7eu

#define MEM_WRITE_SCAN     4u  /* entries of each queue a write examines for expiry */
#define MEM_RECLAIM_FACTOR 8u  /* corral__mem_reclaim examines at most budget x this */
#define MEM_LOCK_BATCH     64u /* entries examined or removed per mutex hold (reclaim, clear) */
#define MEM_S3_FREQ_MAX    3u  /* S3-FIFO: frequencies saturate here (2 bits) */
#define MEM_S3_PROMOTE     1u  /* S3-FIFO: hits in the small queue that earn the main queue */
/* Writers try the shard mutex this many times, pausing between tries, before they sleep on it:
 * a shard's critical section is shorter than a futex sleep and wake-up. */
#define MEM_LOCK_SPINS 64u

/* ---- Small helpers ---- */

/* The size of `e`'s block. */
static inline size_t entry_block_bytes(const mem_entry *e) {
    return corral__mem_entry_bytes(e->klen, (size_t)e->val.hdr_len + e->val.len);
}

/* What `e` accounts for: what its block costs (memory_block.h), its size with allocator hooks. */
static inline size_t entry_bytes(const mem_entry *e) {
    return corral__mem_block_cost(&e->store->blocks, entry_block_bytes(e));
}

/* The shard that owns the bucket of `hash`: the top bits of the bucket index, so each shard
 * owns a contiguous range of buckets. The S3-FIFO ghost uses the hash's high half. */
static inline mem_shard *shard_of(const mem_store *s, uint64_t hash) {
    return &s->shards[((hash & s->bucket_mask) * s->nshards) >> s->bucket_bits];
}

static inline bool is_expired(const mem_entry *e, uint64_t now) {
    uint64_t at = atomic_load_explicit(&e->expires_ns, memory_order_relaxed);
    return at != MEM_NEVER && now >= at;
}

static inline uint8_t load_state(const mem_entry *e) {
    return atomic_load_explicit(&e->state, memory_order_relaxed);
}

/* A writer's lock: a shard's critical section is short, so a writer that finds the mutex taken
 * tries again a few times before it sleeps on it. */
static inline void shard_lock(mem_shard *sh) {
    for (unsigned i = 0; i < MEM_LOCK_SPINS; i++) {
        if (corral__mutex_trylock(&sh->lock) == 0) return;
        caa_cpu_relax();
    }
    corral__mutex_lock(&sh->lock);
}

static inline void shard_unlock(mem_shard *sh) {
    corral__mutex_unlock(&sh->lock);
}

/* pthread calls on our own initialised objects fail only on a bug. */
static inline void pthread_ok(int rc) {
    assert(rc == 0);
    (void)rc;
}

/* ---- memory.c: queues and removal (the shard's mutex held) ---- */

void corral__mem_queue_push_locked(mem_shard *sh, unsigned qi, mem_entry *e);
/* Takes `e` out of its queue; the SIEVE hand and the expiry cursor move to its newer
 * neighbour. */
void corral__mem_queue_unlink_locked(mem_shard *sh, mem_entry *e);
size_t corral__mem_shard_count_locked(mem_shard *sh);
/* Removes a LIVE entry of shard `sh`: table, queue, bytes, event, RCU. */
void corral__mem_remove_locked(mem_store *s, mem_shard *sh, mem_entry *e, corral__change why);

/* ---- memory_evict.c: expiry and eviction ---- */

/* Examines up to `n` entries of each queue for expiry and removes the expired ones, at most
 * `max_remove`; adds the entries examined to `*examined` and returns how many it removed. */
size_t corral__mem_scan_locked(mem_store *s, mem_shard *sh, uint64_t now, size_t n,
                               size_t max_remove, size_t *examined);
/* A reader found `e` expired: removes it if the shard's mutex is free. Call inside the
 * read-side section that found `e`. */
void corral__mem_reap_rcu(mem_store *s, mem_entry *e, uint64_t now);
/* Evicts until `need` more bytes fit the shard's budget (need <= budget). */
void corral__mem_make_room_locked(mem_store *s, mem_shard *sh, size_t need, uint64_t now);
/* S3-FIFO: true (and the slot cleared) when `hash` was evicted from the small queue lately. */
bool corral__mem_ghost_take_locked(mem_shard *sh, uint64_t hash);
/* LRU: a hit moves the entry to the head when the shard's mutex is free. */
void corral__mem_lru_touch_rcu(mem_store *s, mem_entry *e);

/* ---- memory_rcu.c: freeing removed entries ---- */

/* Hands an entry already out of the table to RCU. Call inside a read-side section. */
void corral__mem_entry_retire(mem_store *s, mem_entry *e);
/* Waits until every callback this store queued has run. Not inside a read-side section. */
void corral__mem_wait_rcu_idle(mem_store *s);
/* corral_value's release function of an entry: frees its block. */
void corral__mem_entry_release(corral_value *v);

#endif /* CORRAL_STORE_MEMORY_INTERNAL_H */
