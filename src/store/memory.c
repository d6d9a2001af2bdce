/*
 * memory.c - the embedded memory store: a bounded, sharded cache in process whose reads take no
 * lock.
 *
 * Data model
 * - One entry per key: a single block (memory_block.h) of corral__mem_entry_bytes(klen, vlen)
 *   bytes that holds the header (mem_entry), the key, the value and a NUL after the value. The
 *   entry accounts for what that block costs (memory.h, "Accounting"). The value is a
 *   corral_value embedded in the header, so a hit hands out the stored bytes without a copy.
 * - One hash table indexes every entry of the store: a fixed array of 2^n bucket heads, sized at
 *   open from max_bytes (one bucket per 128 to 256 bytes of the bound, between 2^10 and 2^26
 *   buckets; docs/eviction.md counts its bytes), each the head of a chain linked through the
 *   entries' `next`. The array never grows: the byte bound bounds the number of entries, so the
 *   load factor stays below ~2 even when every entry is as small as an entry can be. Values and
 *   leases are separate keyspaces: the lookup compares the entry's kind as well as its hash and
 *   key, so a lease never shows up as a value and a value never blocks a lease.
 * - The store is split into shards. A shard owns a contiguous range of buckets (the top bits of
 *   the bucket index pick it), so a chain belongs to exactly one shard and only that shard's
 *   writers change it. A shard also owns a byte budget (max_bytes / shards) and the eviction
 *   queues of its entries: one queue for SIEVE and LRU; a small queue, a main queue and a ghost
 *   table of key hashes for S3-FIFO. docs/eviction.md explains the policies.
 * - The header is laid out for the read path: the fields a lookup reads (chain link, hash,
 *   expiry, key, value and header lengths, hit mark, kind) come last, just before the key, and
 *   the value follows the key, so a get_into reads one contiguous run of bytes from the chain
 *   link to the value's end. The fields only writers, reclamation and a get's reference use
 *   (the embedded corral_value among them) come first.
 * - corral__mem_get_into_hot (memory_read.h, inline in corral_get_into) is the read path: the
 *   hash, lookup and copy, comparing the entry's key with the handle's "prefix:version:"
 *   header and the caller's bytes where they are, without building the key. The key's bytes
 *   are checked only when it is not found: a key in the table passed that check when stored.
 *
 * Why our own table: liburcu's rculfhash (used before) is a split-ordered list, so a lookup
 * walks dummy bucket nodes as well as entries, and its automatic resize, which a table created
 * small depends on, left chains of about 1,000 entries in 4 of 6 runs of 1M inserts (measured:
 * docs/eviction.md). A fixed array sized from the byte bound needs no resize, and a chain walk
 * reads only entries. Read-side sections are ours (store/reader.h: liburcu-bp's read lock cost
 * a get 34 of its 217 instructions); liburcu's call_rcu still queues and runs the frees.
 *
 * Invariants (under the shard's mutex)
 * - An entry is in the table (reachable from its bucket) iff it is in exactly one queue of its
 *   shard iff state == LIVE. While a set replaces an entry, the old one leaves its queue first
 *   and the table last, in the same store that links the new one.
 * - shard.used is the sum of the bytes of the shard's queued entries and never exceeds
 *   shard.budget; used_bytes() is the sum over shards, so it never exceeds max_bytes.
 * - Every change of `used` is reported through the events callback with the same byte count:
 *   the sum of ADDED bytes minus the bytes of every other change equals used_bytes.
 * - An entry's key, value, kind, hash and size never change after it is published. set and
 *   incr publish a new entry that replaces the old one in its chain in one atomic store, so a
 *   concurrent reader sees the old value or the new one, never a miss.
 *
 * Locking and references
 * - Readers (get, get_into) run inside a read-side section (store/reader.h) and take no lock.
 *   They walk a chain with acquire loads and compare the stored hash before the key. A hit
 *   marks the entry with a relaxed atomic store (SIEVE's visited bit, S3-FIFO's frequency),
 *   written only when it changes so a hot entry's cache line is not written on every hit. get
 *   takes a reference on the embedded value; get_into copies the bytes and takes none. Readers
 *   call the clock only for an entry that has an expiry. A reader that finds an expired entry
 *   removes it only when the shard's mutex is free (trylock). LRU, kept for comparison, moves a
 *   hit to the head under a trylock of the shard mutex.
 * - Writers enter a read-side section, look their key up without the lock (which brings its
 *   chain into the cache), then lock their shard's mutex, spinning briefly before they block.
 *   The mutex serialises the writers of that shard and guards its chains, queues, SIEVE hand,
 *   expiry cursors, ghost table and `used` (written under the mutex, read with relaxed loads
 *   anywhere). No thread holds two shard mutexes. The allocator and clock hooks are never
 *   called with a shard mutex held: writers read the clock and allocate the new entry before
 *   locking. The events callback is called with the shard mutex held, as store.h allows.
 * - Chains change only under the shard mutex, by release stores: insertion links a filled
 *   entry at the head of its bucket; replacement sets new->next = old->next, then stores new
 *   where old was linked; removal stores old->next where old was linked. An unlinked entry's
 *   `next` is left as it was, so a reader standing on it still reaches the rest of the chain.
 * - The table holds one reference on each entry's value (refs = 1 at publication); each get
 *   adds one. Removing an entry unlinks it from its chain and its queue and queues
 *   mem_entry_free_rcu with call_rcu. When frees are sparse, that callback waits for a grace
 *   period of our read-side sections (corral__reader_sync) and drops the table's reference.
 *   Otherwise it puts the entry in the store's limbo and, unless one is queued, queues a flush
 *   of the limbo (mem_limbo_flush_rcu, one more call_rcu), which takes the limbo, waits for a
 *   grace period, which begins after every entry it took was unlinked, and drops the table's
 *   reference on each: one grace period per batch. The last reference frees the block
 *   (mem_entry_release). call_rcu batches on its own: it enqueues without a lock, and liburcu's
 *   worker thread, once woken, sleeps 10 ms between batches, so a stream of sets wakes it once
 *   per batch rather than once per entry. The store counts the entries it has retired and not
 *   yet released, and the flush queued (`rcu_pending`); corral__mem_quiesce and close wait on
 *   `rcu_idle` until none is left. We do not use liburcu's rcu_barrier: it waits for every
 *   callback in the process, and it allocates on the caller's thread what the call_rcu thread
 *   frees, a race ThreadSanitizer reports inside liburcu where no suppression can name it (the
 *   library is stripped).
 * - Publication: an entry is filled, then linked with a release store; readers load every link
 *   with acquire, so they see the entry's fields as they were filled. These are C11 atomics,
 *   which ThreadSanitizer sees. ThreadSanitizer does not see membarrier, on which the grace
 *   period relies, nor liburcu, which is not instrumented, so two annotations model them: every
 *   read-side section ends with a release on the store's `tsan_gp`, which the flush acquires
 *   (the grace period: a free by the last holder of a value is ordered after every reader that
 *   saw the entry), and call_rcu is preceded by a release on the entry, which the callback
 *   acquires first. With them our code needs no TSan suppression (scripts/tsan.supp is empty on
 *   purpose).
 * - Lock order: docs/threads.md.
 *
 * Expiry: an expired entry is never returned. Its memory is reclaimed incrementally, never by a
 * scan of a whole shard in one call: each write examines MEM_WRITE_SCAN entries of each queue
 * at a per-queue cursor, eviction takes expired entries it meets first, a read that finds an
 * expired entry removes it when it can, and corral__mem_reclaim does bounded work on demand.
 *
 * References: SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI '24); S3-FIFO (Yang et
 * al., "FIFO Queues are All You Need for Cache Eviction", SOSP '23); userspace RCU (Desnoyers
 * et al., "User-Level Implementations of Read-Copy Update", IEEE TPDS 2012); RCU-protected
 * hash chains as in McKenney, "Is Parallel Programming Hard" (section 10.2). DESIGN.md left
 * reclamation to liburcu; its read side is now ours for the cost measured in store/reader.h,
 * which also says why Concurrency Kit's epochs were not taken (a fence on every section).
 */
#include "memory.h"
#include "memory_read.h"
#include "../envelope.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MEM_ENTRY_MAGIC 0x3e3e7a7eu

#define MEM_DEFAULT_POLICY  CORRAL_EVICT_S3FIFO /* measured best: docs/eviction.md */
#define MEM_MAX_SHARDS      1024u
#define MEM_AUTO_SHARDS     16u
#define MEM_MIN_SHARD_BYTES ((size_t)1 << 20) /* automatic sharding keeps shards at least this */
#define MEM_SHARD_VALUES    4u   /* ... and able to hold this many of the largest values */
#define MEM_WRITE_SCAN      4u   /* entries of each queue a write examines for expiry */
#define MEM_RECLAIM_FACTOR  8u   /* corral__mem_reclaim examines at most budget x this */
#define MEM_LOCK_BATCH      64u  /* entries examined or removed per mutex hold (reclaim, clear) */
#define MEM_SMALL_PERCENT   10u  /* S3-FIFO: the small queue's share of a shard's budget */
#define MEM_S3_FREQ_MAX     3u   /* S3-FIFO: frequencies saturate here (2 bits) */
#define MEM_S3_PROMOTE      1u   /* S3-FIFO: hits in the small queue that earn the main queue */
#define MEM_GHOST_BYTES     512u /* S3-FIFO: one ghost slot per this many budget bytes */
#define MEM_GHOST_MIN       64u
#define MEM_GHOST_MAX       ((size_t)1 << 20)
/* A free waits for a grace period of its own when the last began this long ago (by default;
 * corral__mem_config.gp_spacing_ns); closer together, frees wait in limbo for one a batch. */
#define MEM_GP_SPACING_NS 1000000u
/* The bucket array: 2^n heads with 2^n >= max_bytes / MEM_BUCKET_BYTES, so one bucket per 128
 * to 256 bytes of the bound. The smallest entry is about 120 bytes, so chains average at most
 * ~2 entries, and under 1 for entries of 256 bytes and more. The floor gives every one of up
 * to MEM_MAX_SHARDS shards a bucket; past the cap (max_bytes of 16 GiB), chains grow. */
#define MEM_BUCKET_BYTES    256u
#define MEM_MIN_BUCKET_BITS 10u /* 2^10 == MEM_MAX_SHARDS */
#define MEM_MAX_BUCKET_BITS 26u
/* Writers try the shard mutex this many times, pausing between tries, before they sleep on it:
 * a shard's critical section is shorter than a futex sleep and wake-up. */
#define MEM_LOCK_SPINS 64u
#define MEM_RETRY      100 /* internal outcome of incr: the key changed, try again */

/* ---- Types ---- */

/* ---- Small helpers ---- */

size_t corral__mem_entry_bytes(size_t key_len, size_t val_len) {
    size_t n = offsetof(mem_entry, key);
    if (key_len > SIZE_MAX - n) return SIZE_MAX;
    n += key_len;
    if (val_len >= SIZE_MAX - n) return SIZE_MAX;
    n += val_len + 1;
    return CORRAL_MAX(n, offsetof(mem_entry, key) + MEM_KEY_LOAD); /* see hot_key_equal */
}

/* The size of `e`'s block. */
static size_t entry_block_bytes(const mem_entry *e) {
    return corral__mem_entry_bytes(e->klen, (size_t)e->val.hdr_len + e->val.len);
}

/* What `e` accounts for: what its block costs (memory_block.h), its size with allocator hooks. */
static size_t entry_bytes(const mem_entry *e) {
    return corral__mem_block_cost(&e->store->blocks, entry_block_bytes(e));
}

/* The shard that owns the bucket of `hash`: the top bits of the bucket index, so each shard
 * owns a contiguous range of buckets. The S3-FIFO ghost uses the hash's high half. */
static mem_shard *shard_of(const mem_store *s, uint64_t hash) {
    return &s->shards[((hash & s->bucket_mask) * s->nshards) >> s->bucket_bits];
}

/* The absolute expiry of a TTL (> 0 or CORRAL__NO_EXPIRY) read at `now`, saturating. */
static uint64_t expiry_at(uint64_t now, int64_t ttl_ms) {
    if (ttl_ms == CORRAL__NO_EXPIRY) return MEM_NEVER;
    uint64_t d, at;
    if (__builtin_mul_overflow((uint64_t)ttl_ms, (uint64_t)1000000, &d) ||
        __builtin_add_overflow(now, d, &at) || at == MEM_NEVER)
        return MEM_NEVER - 1;
    return at;
}

static bool is_expired(const mem_entry *e, uint64_t now) {
    uint64_t at = atomic_load_explicit(&e->expires_ns, memory_order_relaxed);
    return at != MEM_NEVER && now >= at;
}

/* The reader's test: reads the clock only when `e` has an expiry, and then stores the time
 * read in `*now` for the caller's later use. */
static bool is_expired_lazy(const mem_store *s, const mem_entry *e, uint64_t *now) {
    uint64_t at = atomic_load_explicit(&e->expires_ns, memory_order_relaxed);
    if (at == MEM_NEVER) return false;
    *now = clock_now(s);
    return *now >= at;
}

static uint8_t load_state(const mem_entry *e) {
    return atomic_load_explicit(&e->state, memory_order_relaxed);
}

/* A writer's lock: a shard's critical section is short, so a writer that finds the mutex taken
 * tries again a few times before it sleeps on it. */
static void shard_lock(mem_shard *sh) {
    for (unsigned i = 0; i < MEM_LOCK_SPINS; i++) {
        if (corral__mutex_trylock(&sh->lock) == 0) return;
        caa_cpu_relax();
    }
    corral__mutex_lock(&sh->lock);
}

static void shard_unlock(mem_shard *sh) {
    corral__mutex_unlock(&sh->lock);
}

/* pthread calls on our own initialised objects fail only on a bug. */
static void pthread_ok(int rc) {
    assert(rc == 0);
    (void)rc;
}

static void report(const mem_store *s, const mem_entry *e, corral__change why) {
    if (s->env.events.changed)
        s->env.events.changed(s->env.events.ctx, e->cls, why, entry_bytes(e));
}

/* ---- Entries ---- */

/* Frees the block of an entry whose last reference is gone. Called by corral_value_unref. */
static void mem_entry_release(corral_value *v) {
    mem_entry *e = CORRAL_CONTAINER_OF(v, mem_entry, val);
    CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
    assert(load_state(e) == MEM_DEAD);
    mem_store *s = e->store;
    size_t bytes = entry_block_bytes(e);
    e->magic = 0;
    v->magic = 0;
    corral__mem_block_free(&s->blocks, e, bytes);
}

/* Counts `n` of the store's pending frees done (rcu_pending). A count that stays above zero
 * wakes nobody and needs no lock. The last one is taken under the lock, so a waiter that sees
 * zero cannot free the store before we let go. */
static void pending_done(mem_store *s, size_t n) {
    size_t have = atomic_load_explicit(&s->rcu_pending, memory_order_relaxed);
    while (have > n)
        if (atomic_compare_exchange_weak_explicit(&s->rcu_pending, &have, have - n,
                                                  memory_order_release, memory_order_relaxed))
            return;
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    if (atomic_fetch_sub_explicit(&s->rcu_pending, n, memory_order_release) == n)
        pthread_ok(pthread_cond_broadcast(&s->rcu_idle));
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
}

/* Waits for a grace period of our read-side sections (reader.h), which begins after every
 * entry of `list` (linked through u.q.older) was unlinked, drops the table's reference on each,
 * and counts them, and `also` more, among the store's pending frees done. */
static void release_after_grace(mem_store *s, mem_entry *list, size_t also) {
    corral__reader_sync();
    size_t n = also;
    while (list) {
        mem_entry *next = list->u.q.older;
        MEM_TSAN_ACQUIRE(&s->tsan_gp);  /* every read-side section that saw it has ended */
        corral_value_unref(&list->val); /* may free it */
        list = next;
        n++;
    }
    corral__mem_blocks_trim(&s->blocks); /* on the call_rcu thread: no request waits */
    pending_done(s, n);
}

/* Runs on liburcu's call_rcu thread: takes the entries in limbo, waits for a grace period of
 * our read-side sections (reader.h), which began after every one of them was unlinked, and
 * drops the table's reference on each. One grace period frees a batch. */
static void mem_limbo_flush_rcu(struct rcu_head *head) {
    mem_store *s = CORRAL_CONTAINER_OF(head, mem_store, flush_head);
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    mem_entry *e = s->limbo;
    s->limbo = NULL;
    s->flush_queued = false;
    s->last_gp_ns = corral__monotonic_ns();
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
    release_after_grace(s, e, 1); /* and this callback */
}

/* Runs on liburcu's call_rcu thread after one of its grace periods, which the store's readers
 * do not take part in. When frees are sparse (no grace period of ours for gp_spacing_ns,
 * nothing in limbo), waits for one of ours and drops the table's reference now: a delete then
 * close costs one call_rcu round, not two. Otherwise puts the entry in the store's limbo, and
 * queues a flush of the limbo (another call_rcu) when none is queued: under a stream of
 * removals, one grace period frees a batch. */
static void mem_entry_free_rcu(struct rcu_head *head) {
    mem_entry *e = CORRAL_CONTAINER_OF(head, mem_entry, u.rcu);
    MEM_TSAN_ACQUIRE(e); /* call_rcu happened before: see entry_retire */
    CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
    mem_store *s = e->store;
    uint64_t now = corral__monotonic_ns();
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    bool now_alone = !s->flush_queued && !s->limbo && now - s->last_gp_ns >= s->gp_spacing_ns;
    bool queue = false;
    e->u.q.older = NULL; /* the rcu_head is spent: the union's links are free */
    if (now_alone) {
        s->last_gp_ns = now;
    } else {
        e->u.q.older = s->limbo;
        s->limbo = e;
        queue = !s->flush_queued;
        if (queue) {
            s->flush_queued = true;
            atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
        }
    }
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
    if (now_alone)
        release_after_grace(s, e, 0);
    else if (queue)
        call_rcu(&s->flush_head, mem_limbo_flush_rcu);
}

/* Waits until every callback this store queued has run. Not inside a read-side section. */
static void wait_rcu_idle(mem_store *s) {
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    while (atomic_load_explicit(&s->rcu_pending, memory_order_acquire) != 0)
        pthread_ok(pthread_cond_wait(&s->rcu_idle, &s->rcu_lock));
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
}

/* Hands an entry already out of the table to RCU. Call inside a read-side section. */
static void entry_retire(mem_store *s, mem_entry *e) {
    atomic_store_explicit(&e->state, MEM_DEAD, memory_order_release);
    atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
    MEM_TSAN_RELEASE(e); /* shows TSan that call_rcu happens before the callback */
    call_rcu(&e->u.rcu, mem_entry_free_rcu);
}

/* A new, unpublished entry; NULL when the allocator fails. The caller has checked the size. */
static mem_entry *entry_new(mem_store *s, const corral__skey *k, uint8_t kind, const void *val,
                            size_t len, uint64_t expires_ns) {
    size_t bytes = corral__mem_entry_bytes(k->len, len);
    mem_entry *e = corral__mem_block_alloc(&s->blocks, bytes);
    if (!e) return NULL;
    e->magic = MEM_ENTRY_MAGIC;
    e->cls = k->cls;
    e->queue = MEM_MAIN;
    atomic_init(&e->state, MEM_NEW);
    e->store = s;
    e->u.q.newer = e->u.q.older = NULL;
    atomic_init(&e->next, NULL);
    e->hash = k->hash;
    atomic_init(&e->expires_ns, expires_ns);
    e->klen = (uint32_t)k->len;
    atomic_init(&e->hits, 0);
    e->kind = kind;
    if (k->len) memcpy(e->key, k->data, k->len);
    unsigned char *data = e->key + k->len;
    if (len) memcpy(data, val, len);
    data[len] = '\0';
    /* A value's envelope header sits before the bytes handed out; leases are raw. */
    size_t hdr = kind == MEM_VALUE ? corral__env_hdr_len(data, len) : 0;
    corral__value_init(&e->val, data + hdr, len - hdr, mem_entry_release);
    e->val.hdr_len = (uint32_t)hdr;
    e->dlen = (uint32_t)(len - hdr);
    e->hlen = (uint32_t)hdr;
    return e;
}

/* Frees an entry that was never published. Accepts NULL. */
static void entry_discard(mem_store *s, mem_entry *e) {
    if (!e) return;
    CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
    assert(load_state(e) == MEM_NEW);
    size_t bytes = entry_block_bytes(e);
    e->magic = 0;
    e->val.magic = 0;
    corral__mem_block_free(&s->blocks, e, bytes);
}

/* CORRAL_ETOOBIG when an entry of this size can never be held, CORRAL_OK otherwise. */
static int check_size(const mem_store *s, const mem_shard *sh, size_t klen, size_t vlen,
                      uint8_t kind) {
    if (kind == MEM_VALUE && s->max_value_bytes && vlen > s->max_value_bytes) return CORRAL_ETOOBIG;
    /* mem_entry.klen, dlen and hlen are 32 bits; keys are far shorter. */
    if (klen > UINT32_MAX || vlen > UINT32_MAX) return CORRAL_ETOOBIG;
    size_t cost = corral__mem_block_cost(&s->blocks, corral__mem_entry_bytes(klen, vlen));
    return cost > sh->budget ? CORRAL_ETOOBIG : CORRAL_OK;
}

/* ---- The table ---- */

/* Looks `k` up in keyspace `kind`. Call inside a read-side section; the entry stays readable
 * until the section ends. Under the key's shard mutex, a found entry is LIVE. The stored hash
 * is compared first: a chain's other entries then cost one load each. */
static inline mem_entry *lookup_rcu(const mem_store *s, const corral__skey *k, uint8_t kind) {
    mem_entry *e = atomic_load_explicit(bucket_of(s, k->hash), memory_order_acquire);
    for (; e; e = atomic_load_explicit(&e->next, memory_order_acquire)) {
        if (e->hash == k->hash && e->klen == k->len && e->kind == kind &&
            key_equal(e->key, k->data, k->len)) {
            CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
            return e;
        }
    }
    return NULL;
}

/* The link (bucket head or an entry's `next`) that points at the LIVE entry `e`; NULL only if
 * `e` is not in its chain, which the invariants exclude. */
static mem_link *link_of_locked(const mem_store *s, mem_shard *sh, const mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    (void)sh;
    mem_link *link = bucket_of(s, e->hash);
    for (;;) {
        mem_entry *cur = atomic_load_explicit(link, memory_order_relaxed);
        if (CORRAL_NEVER(cur == NULL)) return NULL;
        if (cur == e) return link;
        link = &cur->next;
    }
}

/* Links the filled entry `e` at the head of its chain: readers see all of it or nothing. */
static void table_insert_locked(mem_store *s, mem_shard *sh, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    (void)sh;
    mem_link *head = bucket_of(s, e->hash);
    atomic_store_explicit(&e->next, atomic_load_explicit(head, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(head, e, memory_order_release);
}

/* Puts the filled entry `e` where `old` is, in one store: a reader finds one or the other. */
static void table_replace_locked(mem_store *s, mem_shard *sh, mem_entry *old, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_link *link = link_of_locked(s, sh, old);
    if (CORRAL_NEVER(link == NULL)) {
        table_insert_locked(s, sh, e);
        return;
    }
    atomic_store_explicit(&e->next, atomic_load_explicit(&old->next, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(link, e, memory_order_release);
}

/* Unlinks `e`. Its own `next` stays, for readers standing on it. */
static void table_remove_locked(mem_store *s, mem_shard *sh, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_link *link = link_of_locked(s, sh, e);
    if (CORRAL_NEVER(link == NULL)) return;
    atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed),
                          memory_order_release);
}

/* ---- Queues ---- */

static void queue_push_locked(mem_shard *sh, unsigned qi, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[qi];
    e->queue = (uint8_t)qi;
    e->u.q.newer = NULL;
    e->u.q.older = q->head;
    if (q->head)
        q->head->u.q.newer = e;
    else
        q->tail = e;
    q->head = e;
    q->bytes += entry_bytes(e);
    q->count++;
}

/* Takes `e` out of its queue. The SIEVE hand and the expiry cursor that pointed at it move to
 * its newer neighbour, as they would have next. */
static void queue_unlink_locked(mem_shard *sh, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[e->queue];
    if (q->hand == e) q->hand = e->u.q.newer;
    if (q->scan == e) q->scan = e->u.q.newer;
    if (e->u.q.newer)
        e->u.q.newer->u.q.older = e->u.q.older;
    else
        q->head = e->u.q.older;
    if (e->u.q.older)
        e->u.q.older->u.q.newer = e->u.q.newer;
    else
        q->tail = e->u.q.newer;
    e->u.q.newer = e->u.q.older = NULL;
    size_t bytes = entry_bytes(e);
    assert(q->bytes >= bytes && q->count > 0);
    q->bytes -= bytes;
    q->count--;
}

static size_t shard_count_locked(mem_shard *sh) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return sh->q[MEM_MAIN].count + sh->q[MEM_SMALL].count;
}

/* ---- Accounting and removal ---- */

/* Counts `e` in (ADDED) or out (any other change) of the shard and reports it. */
static void account_locked(mem_store *s, mem_shard *sh, mem_entry *e, corral__change why) {
    CORRAL_ASSERT_HELD(&sh->lock);
    size_t used = atomic_load_explicit(&sh->used, memory_order_relaxed);
    size_t bytes = entry_bytes(e);
    bool expires = atomic_load_explicit(&e->expires_ns, memory_order_relaxed) != MEM_NEVER;
    if (why == CORRAL__ADDED) {
        used += bytes;
        sh->expiring += expires;
        assert(used <= sh->budget);
    } else {
        assert(used >= bytes && sh->expiring >= expires);
        used -= bytes;
        sh->expiring -= expires;
    }
    atomic_store_explicit(&sh->used, used, memory_order_relaxed);
    report(s, e, why);
}

/* Removes a LIVE entry of shard `sh`: table, queue, bytes, event, RCU. */
static void remove_locked(mem_store *s, mem_shard *sh, mem_entry *e, corral__change why) {
    CORRAL_ASSERT_HELD(&sh->lock);
    CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
    assert(load_state(e) == MEM_LIVE);
    table_remove_locked(s, sh, e);
    queue_unlink_locked(sh, e);
    account_locked(s, sh, e, why);
    entry_retire(s, e);
}

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
        q->scan = e->u.q.newer;
        (*examined)++;
        if (is_expired(e, now)) {
            remove_locked(s, sh, e, CORRAL__EXPIRED);
            removed++;
        }
    }
    return removed;
}

static size_t scan_locked(mem_store *s, mem_shard *sh, uint64_t now, size_t n, size_t max_remove,
                          size_t *examined) {
    CORRAL_ASSERT_HELD(&sh->lock);
    size_t removed = 0;
    if (sh->expiring == 0) return 0; /* examines nothing: the caller moves on */
    for (unsigned qi = 0; qi < MEM_QUEUES && removed < max_remove; qi++)
        removed += scan_queue_locked(s, sh, qi, now, n, max_remove - removed, examined);
    return removed;
}

/* A reader found `e` expired: removes it if the shard's mutex is free, otherwise leaves it to
 * the writers' cursors. Call inside the read-side section that found `e`. */
static void reap_rcu(mem_store *s, mem_entry *e, uint64_t now) {
    mem_shard *sh = shard_of(s, e->hash);
    if (corral__mutex_trylock(&sh->lock) != 0) return;
    if (load_state(e) == MEM_LIVE && is_expired(e, now)) remove_locked(s, sh, e, CORRAL__EXPIRED);
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
        if (is_expired(e, now) || !atomic_load_explicit(&e->hits, memory_order_relaxed)) break;
        atomic_store_explicit(&e->hits, 0, memory_order_relaxed);
        e = e->u.q.newer ? e->u.q.newer : q->tail;
    }
    q->hand = e; /* removal moves it on to the newer neighbour */
    return e;
}

/* A ghost slot is picked by the hash's high half and holds its low half (never 0): the low
 * bits also pick the shard, so they would use only a shard's share of the slots. */
static uint32_t *ghost_slot_locked(mem_shard *sh, uint64_t hash) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return &sh->ghost[(hash >> 32) & sh->ghost_mask];
}

static bool ghost_take_locked(mem_shard *sh, uint64_t hash) {
    uint32_t *slot = ghost_slot_locked(sh, hash);
    if (*slot != ((uint32_t)hash | 1u)) return false;
    *slot = 0;
    return true;
}

static void ghost_put_locked(mem_shard *sh, uint64_t hash) {
    *ghost_slot_locked(sh, hash) = (uint32_t)hash | 1u;
}

/* S3-FIFO: while the small queue holds more than its share, its tail either earns the main
 * queue (it was hit) or leaves, remembered in the ghost; otherwise the main queue's tail is
 * reinserted while it has frequency left (one less each time) or leaves. */
static mem_entry *s3fifo_victim_locked(mem_shard *sh, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *small = &sh->q[MEM_SMALL], *mainq = &sh->q[MEM_MAIN];
    /* Each entry moves at most MEM_S3_FREQ_MAX + 1 times unless readers keep raising its
     * frequency; past this bound the tail goes regardless. */
    size_t moves = (MEM_S3_FREQ_MAX + 2) * (small->count + mainq->count);
    for (;;) {
        bool from_small = small->count && (small->bytes > sh->small_budget || !mainq->count);
        mem_entry *e = from_small ? small->tail : mainq->tail;
        if (is_expired(e, now) || moves-- == 0) return e;
        uint8_t f = atomic_load_explicit(&e->hits, memory_order_relaxed);
        if (from_small && f < MEM_S3_PROMOTE) {
            ghost_put_locked(sh, e->hash);
            return e;
        }
        if (!from_small && f == 0) return e;
        queue_unlink_locked(sh, e);
        atomic_store_explicit(&e->hits, from_small ? 0 : (uint8_t)(f - 1), memory_order_relaxed);
        queue_push_locked(sh, MEM_MAIN, e);
    }
}

static mem_entry *victim_locked(mem_store *s, mem_shard *sh, uint64_t now) {
    if (shard_count_locked(sh) == 0) return NULL;
    switch (s->policy) {
    case CORRAL_EVICT_S3FIFO: return s3fifo_victim_locked(sh, now);
    case CORRAL_EVICT_LRU: return sh->q[MEM_MAIN].tail;
    default: return sieve_victim_locked(sh, now);
    }
}

/* Evicts until `need` more bytes fit the shard's budget. need <= budget (check_size). */
static void make_room_locked(mem_store *s, mem_shard *sh, size_t need, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    assert(need <= sh->budget);
    while (atomic_load_explicit(&sh->used, memory_order_relaxed) > sh->budget - need) {
        mem_entry *v = victim_locked(s, sh, now);
        if (CORRAL_NEVER(v == NULL)) break;
        remove_locked(s, sh, v, is_expired(v, now) ? CORRAL__EXPIRED : CORRAL__EVICTED);
    }
}

/* ---- Hits ---- */

/* LRU: a hit moves the entry to the head when the shard's mutex is free. */
static void lru_touch_rcu(mem_store *s, mem_entry *e) {
    mem_shard *sh = shard_of(s, e->hash);
    if (corral__mutex_trylock(&sh->lock) != 0) return;
    if (load_state(e) == MEM_LIVE && sh->q[MEM_MAIN].head != e) {
        queue_unlink_locked(sh, e);
        queue_push_locked(sh, MEM_MAIN, e);
    }
    shard_unlock(sh);
}

/* Marks a hit without a lock: SIEVE's visited bit (hit_max 1) or S3-FIFO's frequency (hit_max
 * 3). The store happens only when the mark changes, so a hot entry's line is written once or
 * three times per pass of the evictor, not on every hit. Inline: it is on every hit's path. */
static inline void note_hit_rcu(mem_store *s, mem_entry *e) {
    if (s->policy == CORRAL_EVICT_LRU) {
        lru_touch_rcu(s, e);
        return;
    }
    uint8_t h = atomic_load_explicit(&e->hits, memory_order_relaxed);
    if (h < s->hit_max) atomic_store_explicit(&e->hits, (uint8_t)(h + 1), memory_order_relaxed);
}

/* ---- Writes ---- */

/* Puts the new entry `e` in the table and a queue in place of `old` (NULL when absent), after
 * evicting what it needs. `old` is reported REPLACED when live, EXPIRED otherwise; a live
 * `old` hands its queue and hit mark to `e`. Then examines a few entries for expiry. Call
 * inside a read-side section; cannot fail. */
static void publish_locked(mem_store *s, mem_shard *sh, mem_entry *e, mem_entry *old,
                           uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    unsigned qi = MEM_MAIN;
    bool live = old && !is_expired(old, now);
    if (live) {
        qi = old->queue;
        atomic_store_explicit(&e->hits, atomic_load_explicit(&old->hits, memory_order_relaxed),
                              memory_order_relaxed);
    } else if (s->policy == CORRAL_EVICT_S3FIFO) {
        qi = ghost_take_locked(sh, e->hash) ? MEM_MAIN : MEM_SMALL;
    }
    if (old) {
        /* Out of its queue first, so eviction cannot pick it; out of the table last, in one
         * step with the insertion, so readers never miss the key. */
        queue_unlink_locked(sh, old);
        account_locked(s, sh, old, live ? CORRAL__REPLACED : CORRAL__EXPIRED);
    }
    make_room_locked(s, sh, entry_bytes(e), now);

    /* Eviction may have changed the chain: the link to `old` is found now. The mutex keeps
     * other writers of the key out. */
    atomic_store_explicit(&e->state, MEM_LIVE, memory_order_relaxed);
    if (old) {
        table_replace_locked(s, sh, old, e);
        entry_retire(s, old);
    } else {
        table_insert_locked(s, sh, e);
    }
    queue_push_locked(sh, qi, e);
    account_locked(s, sh, e, CORRAL__ADDED);

    size_t examined = 0;
    scan_locked(s, sh, now, MEM_WRITE_SCAN, SIZE_MAX, &examined);
}

/* The write path of set, add and lease_acquire: builds the entry outside the lock, then
 * decides under the shard mutex. */
static int write_entry(mem_store *s, const corral__skey *k, uint8_t kind, const void *val,
                       size_t len, int64_t ttl_ms, corral__set_mode mode,
                       corral__mem_guard_fn still, void *still_ctx) {
    mem_shard *sh = shard_of(s, k->hash);
    int rc = check_size(s, sh, k->len, len, kind);
    if (rc != CORRAL_OK) return rc;
    uint64_t now = clock_now(s);
    mem_entry *e = entry_new(s, k, kind, val, len, expiry_at(now, ttl_ms));
    if (!e) return CORRAL_ENOMEM;

    read_lock(s);
    /* Looked up before the mutex, so the chain is in the cache while we hold it. Under the
     * mutex, an entry still LIVE is still in the table, so still the key's entry. */
    mem_entry *old = lookup_rcu(s, k, kind);
    shard_lock(sh);
    if (!old || load_state(old) != MEM_LIVE) old = lookup_rcu(s, k, kind);
    bool live = old && !is_expired(old, now);
    if (still && !still(still_ctx)) {
        rc = CORRAL_MISS; /* corral__mem_set_guarded: refused, nothing changes */
    } else if (mode == CORRAL__SET_NX && live) {
        rc = CORRAL_EXISTS;
    } else if (mode == CORRAL__SET_XX && !live) {
        if (old) remove_locked(s, sh, old, CORRAL__EXPIRED);
        rc = CORRAL_MISS;
    } else {
        publish_locked(s, sh, e, old, now);
        e = NULL;
        rc = CORRAL_OK;
    }
    shard_unlock(sh);
    read_unlock(s);
    entry_discard(s, e);
    return rc;
}

/* Removes the live entry `k` of keyspace `kind` if `token` is NULL or equals its value (a
 * lease's owner); an expired one goes as EXPIRED. CORRAL_OK when a live entry was removed,
 * CORRAL_MISS otherwise. */
static int remove_key(mem_store *s, const corral__skey *k, uint8_t kind, const void *token,
                      size_t token_len) {
    mem_shard *sh = shard_of(s, k->hash);
    uint64_t now = clock_now(s);
    int rc = CORRAL_MISS;
    read_lock(s);
    shard_lock(sh);
    mem_entry *e = lookup_rcu(s, k, kind);
    if (e && is_expired(e, now)) {
        remove_locked(s, sh, e, CORRAL__EXPIRED);
    } else if (e && (!token || (e->val.len == token_len &&
                                (token_len == 0 || memcmp(e->val.data, token, token_len) == 0)))) {
        remove_locked(s, sh, e, CORRAL__DELETED);
        rc = CORRAL_OK;
    }
    shard_unlock(sh);
    read_unlock(s);
    return rc;
}

/* Parses a stored counter: optional '-', then 1 to 19 digits. CORRAL_ENOTINT when the text is
 * not of that form, CORRAL_ERANGE when it is but does not fit an int64. */
static int parse_int64(const unsigned char *p, size_t n, int64_t *out) {
    size_t i = (n && p[0] == '-') ? 1 : 0;
    if (i == n || n - i > 19) return CORRAL_ENOTINT;
    uint64_t v = 0; /* 19 digits fit: 10^19 - 1 < 2^64 */
    for (size_t j = i; j < n; j++) {
        if (p[j] < '0' || p[j] > '9') return CORRAL_ENOTINT;
        v = v * 10 + (uint64_t)(p[j] - '0');
    }
    if (i) {
        if (v > (uint64_t)INT64_MAX + 1) return CORRAL_ERANGE;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return CORRAL_ERANGE;
        *out = (int64_t)v;
    }
    return CORRAL_OK;
}

/* ---- The vtable ---- */

/* get inside a read-side section the caller holds (mem_get, mem_get_many). */
static int get_rcu(mem_store *s, const corral__skey *k, corral_value **out) {
    *out = NULL;
    uint64_t now = 0;
    mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
    if (e && is_expired_lazy(s, e, &now)) {
        reap_rcu(s, e, now);
    } else if (e && CORRAL_ALWAYS(corral__value_tryref(&e->val))) {
        /* The table's reference cannot go before this section ends, so tryref succeeds. */
        note_hit_rcu(s, e);
        *out = &e->val;
        return CORRAL_OK;
    }
    return CORRAL_MISS;
}

static int mem_get(corral__store *base, const corral__skey *k, corral_value **out) {
    mem_store *s = store_of(base);
    read_lock(s);
    int rc = get_rcu(s, k, out);
    read_unlock(s);
    return rc;
}

/* Keys whose cache misses get_many puts in flight together. */
#define MEM_PREFETCH_GROUP 16u

/* get_many overlaps its keys' cache misses: for each group of keys it prefetches their
 * buckets, then the first entry of each chain, then reads them as get does. A lone get waits
 * for its bucket, then for its entry; here a group's misses are in flight at once. One
 * read-side section covers the batch. */
static int mem_get_many(corral__store *base, const corral__skey *ks, size_t n, corral_value **out) {
    mem_store *s = store_of(base);
    read_lock(s);
    for (size_t i = 0; i < n; i += MEM_PREFETCH_GROUP) {
        size_t m = CORRAL_MIN(n - i, (size_t)MEM_PREFETCH_GROUP);
        for (size_t j = 0; j < m; j++)
            __builtin_prefetch(bucket_of(s, ks[i + j].hash));
        for (size_t j = 0; j < m; j++) {
            const mem_entry *e =
                atomic_load_explicit(bucket_of(s, ks[i + j].hash), memory_order_acquire);
            if (!e) continue;
            __builtin_prefetch(&e->next); /* the start of what a lookup reads */
            __builtin_prefetch(&e->val);  /* the reference a hit takes */
        }
        for (size_t j = 0; j < m; j++)
            (void)get_rcu(s, &ks[i + j], &out[i + j]);
    }
    read_unlock(s);
    return CORRAL_OK;
}

static int mem_get_into(corral__store *base, const corral__skey *k, void *buf, size_t cap,
                        size_t *len, void *hdr, size_t hdr_cap, size_t *hdr_len) {
    mem_store *s = store_of(base);
    uint64_t now = 0;
    size_t n = 0, h = 0;
    int rc = CORRAL_MISS;
    read_lock(s);
    mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
    if (e && is_expired_lazy(s, e, &now)) {
        reap_rcu(s, e, now);
    } else if (e) {
        note_hit_rcu(s, e);
        n = e->dlen;
        h = e->hlen;
        const unsigned char *data = e->key + e->klen + h; /* == e->val.data */
        if (h && h <= hdr_cap) memcpy(hdr, data - h, h);
        rc = n > cap ? CORRAL_ENOSPC : CORRAL_OK;
        if (rc == CORRAL_OK && n) memcpy(buf, data, n);
    }
    read_unlock(s);
    *len = n;
    *hdr_len = h;
    return rc;
}

static int mem_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
                   int64_t ttl_ms, corral__set_mode mode) {
    mem_store *s = store_of(base);
    if (ttl_ms <= 0) return CORRAL_EINVAL; /* the layer above turns TTL 0 into a delete */
    return write_entry(s, k, MEM_VALUE, val, len, ttl_ms, mode, NULL, NULL);
}

int corral__mem_set_guarded(corral__store *base, const corral__skey *k, const void *val, size_t len,
                            int64_t ttl_ms, corral__mem_guard_fn still, void *ctx) {
    return write_entry(store_of(base), k, MEM_VALUE, val, len, ttl_ms, CORRAL__SET_ALWAYS, still,
                       ctx);
}

static int mem_del(corral__store *base, const corral__skey *k) {
    return remove_key(store_of(base), k, MEM_VALUE, NULL, 0);
}

static int mem_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms) {
    mem_store *s = store_of(base);
    if (ttl_ms <= 0) return CORRAL_EINVAL;
    mem_shard *sh = shard_of(s, k->hash);
    uint64_t now = clock_now(s);
    int rc = CORRAL_MISS;
    read_lock(s);
    shard_lock(sh);
    mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
    if (e && is_expired(e, now)) {
        remove_locked(s, sh, e, CORRAL__EXPIRED);
    } else if (e) {
        uint64_t at = expiry_at(now, ttl_ms);
        sh->expiring -= atomic_load_explicit(&e->expires_ns, memory_order_relaxed) != MEM_NEVER;
        sh->expiring += at != MEM_NEVER;
        atomic_store_explicit(&e->expires_ns, at, memory_order_relaxed);
        rc = CORRAL_OK;
    }
    shard_unlock(sh);
    read_unlock(s);
    return rc;
}

/* incr reads the counter and allocates the new entry without the mutex, then publishes it
 * only if the entry it read is still the key's entry (values are immutable, and the entry
 * cannot be freed and reused within one read-side section); otherwise it tries again. */
static int mem_incr(corral__store *base, const corral__skey *k, int64_t delta, int64_t *out) {
    mem_store *s = store_of(base);
    mem_shard *sh = shard_of(s, k->hash);
    if (out) *out = 0;
    for (;;) {
        uint64_t now = clock_now(s);
        int rc = CORRAL_OK;
        int64_t cur = 0, next = 0;
        char text[24];
        mem_entry *ne = NULL;
        read_lock(s);
        mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
        if (!e || is_expired(e, now)) {
            if (e) reap_rcu(s, e, now);
            rc = CORRAL_MISS;
            goto done;
        }
        /* A value with an envelope (tags, times) is not a plain integer. */
        rc = e->val.hdr_len ? CORRAL_ENOTINT : parse_int64(e->val.data, e->val.len, &cur);
        if (rc != CORRAL_OK) goto done;
        if (__builtin_add_overflow(cur, delta, &next)) {
            rc = CORRAL_ERANGE;
            goto done;
        }
        int n = snprintf(text, sizeof text, "%" PRId64, next);
        if (CORRAL_NEVER(n < 0 || (size_t)n >= sizeof text)) {
            rc = CORRAL_ERANGE;
            goto done;
        }
        rc = check_size(s, sh, k->len, (size_t)n, MEM_VALUE);
        if (rc != CORRAL_OK) goto done;
        ne = entry_new(s, k, MEM_VALUE, text, (size_t)n, MEM_NEVER);
        if (!ne) {
            rc = CORRAL_ENOMEM;
            goto done;
        }
        shard_lock(sh);
        if (lookup_rcu(s, k, MEM_VALUE) == e && !is_expired(e, now)) {
            atomic_store_explicit(&ne->expires_ns,
                                  atomic_load_explicit(&e->expires_ns, memory_order_relaxed),
                                  memory_order_relaxed);
            publish_locked(s, sh, ne, e, now);
            ne = NULL;
        } else {
            rc = MEM_RETRY;
        }
        shard_unlock(sh);
    done:
        read_unlock(s);
        entry_discard(s, ne);
        if (rc == MEM_RETRY) continue; /* another writer got there first */
        if (rc == CORRAL_OK && out) *out = next;
        return rc;
    }
}

static int mem_clear(corral__store *base) {
    mem_store *s = store_of(base);
    for (unsigned i = 0; i < s->nshards; i++) {
        mem_shard *sh = &s->shards[i];
        /* Bounded work per mutex hold; entries written while clear runs may survive it. */
        size_t todo = SIZE_MAX;
        while (todo) {
            size_t n = 0;
            read_lock(s);
            shard_lock(sh);
            if (todo == SIZE_MAX) todo = shard_count_locked(sh);
            for (unsigned qi = 0; qi < MEM_QUEUES; qi++) {
                while (n < MEM_LOCK_BATCH && n < todo && sh->q[qi].tail) {
                    remove_locked(s, sh, sh->q[qi].tail, CORRAL__DELETED);
                    n++;
                }
            }
            shard_unlock(sh);
            read_unlock(s);
            todo = n ? todo - n : 0;
        }
    }
    return CORRAL_OK;
}

static int mem_lease_acquire(corral__store *base, const corral__skey *k, const void *token,
                             size_t token_len, int64_t ttl_ms) {
    mem_store *s = store_of(base);
    if (ttl_ms <= 0 || ttl_ms == CORRAL__NO_EXPIRY) return CORRAL_EINVAL; /* leases expire */
    return write_entry(s, k, MEM_LEASE, token, token_len, ttl_ms, CORRAL__SET_NX, NULL, NULL);
}

static int mem_lease_release(corral__store *base, const corral__skey *k, const void *token,
                             size_t token_len) {
    static const char none[1];
    return remove_key(store_of(base), k, MEM_LEASE, token ? token : none, token_len);
}

static size_t mem_used_bytes(corral__store *base) {
    mem_store *s = store_of(base);
    size_t used = 0;
    for (unsigned i = 0; i < s->nshards; i++)
        used += atomic_load_explicit(&s->shards[i].used, memory_order_relaxed);
    return used;
}

static size_t mem_max_bytes(corral__store *base) {
    return store_of(base)->max_bytes;
}

static void store_free(mem_store *s, unsigned shards_inited, bool sync_inited) {
    const corral__allocator *a = s->env.alloc;
    if (sync_inited) {
        pthread_ok(pthread_cond_destroy(&s->rcu_idle));
        pthread_ok(pthread_mutex_destroy(&s->rcu_lock));
    }
    corral__free(a, s->buckets, ((size_t)1 << s->bucket_bits) * sizeof *s->buckets);
    for (unsigned i = 0; i < shards_inited; i++) {
        mem_shard *sh = &s->shards[i];
        corral__free(a, sh->ghost, (sh->ghost_mask + 1) * sizeof *sh->ghost);
        corral__mutex_deinit(&sh->lock);
    }
    corral__free(a, s->shards, (size_t)s->nshards * sizeof *s->shards);
    s->magic = 0;
    corral__free(a, s, sizeof *s);
}

static void mem_close(corral__store *base) {
    if (!base) return;
    mem_store *s = store_of(base);
    /* No other thread uses the store now and every handed-out value has been released, so no
     * reader can see an entry: each live one (each is in a queue) drops the table's reference
     * at once, without a grace period. Close reports no events: the handle's gauges die with
     * it. */
    for (unsigned i = 0; i < s->nshards; i++) {
        for (unsigned qi = 0; qi < MEM_QUEUES; qi++) {
            mem_entry *e = s->shards[i].q[qi].head;
            while (e) {
                CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
                mem_entry *older = e->u.q.older;
                atomic_store_explicit(&e->state, MEM_DEAD, memory_order_relaxed);
                corral_value_unref(&e->val); /* frees `e` */
                e = older;
            }
        }
    }
    wait_rcu_idle(s); /* entries removed before close are freed after this */
    store_free(s, s->nshards, true);
}

static const corral__store_ops mem_ops = {
    .name = "mem",
    .get = mem_get,
    .get_into = mem_get_into,
    .set = mem_set,
    .del = mem_del,
    .touch = mem_touch,
    .incr = mem_incr,
    .clear = mem_clear,
    .get_many = mem_get_many,
    .set_many = corral__store_set_many,
    .del_many = corral__store_del_many,
    .lease_acquire = mem_lease_acquire,
    .lease_release = mem_lease_release,
    .used_bytes = mem_used_bytes,
    .max_bytes = mem_max_bytes,
    .close = mem_close,
};

/* ---- Open, reclaim, quiesce ---- */

static unsigned choose_shards(const corral__mem_config *cfg) {
    if (cfg->shards) return CORRAL_MIN(cfg->shards, MEM_MAX_SHARDS);
    unsigned n = MEM_AUTO_SHARDS;
    while (n > 1 &&
           (cfg->max_bytes / n < MEM_MIN_SHARD_BYTES ||
            (cfg->max_value_bytes && cfg->max_bytes / n / MEM_SHARD_VALUES < cfg->max_value_bytes)))
        n /= 2;
    return n;
}

/* log2 of the bucket count: one bucket per MEM_BUCKET_BYTES of max_bytes, rounded up to a
 * power of two, within [2^MEM_MIN_BUCKET_BITS, 2^MEM_MAX_BUCKET_BITS]. */
static unsigned choose_bucket_bits(size_t max_bytes) {
    size_t want = max_bytes / MEM_BUCKET_BYTES;
    unsigned bits = MEM_MIN_BUCKET_BITS;
    while (bits < MEM_MAX_BUCKET_BITS && ((size_t)1 << bits) < want)
        bits++;
    return bits;
}

/* Where a hit mark saturates: SIEVE's visited bit, S3-FIFO's 2-bit frequency. LRU moves entries
 * instead of marking them. */
static uint8_t hit_max_of(corral_eviction policy) {
    switch (policy) {
    case CORRAL_EVICT_S3FIFO: return MEM_S3_FREQ_MAX;
    case CORRAL_EVICT_SIEVE: return 1;
    default: return 0;
    }
}

static size_t ghost_slots(size_t budget) {
    size_t want = CORRAL_MAX(budget / MEM_GHOST_BYTES, (size_t)MEM_GHOST_MIN);
    size_t n = MEM_GHOST_MIN;
    while (n < want && n < MEM_GHOST_MAX)
        n *= 2;
    return n;
}

/* Each shard's budget: max_bytes / nshards, less, when the store bounds what the process holds
 * (libc's allocator: memory_block.h), a share of the store's fixed structures (the bucket array,
 * the ghost tables, the shards), at most half of max_bytes in all (only stores of a few KiB
 * reach that cap). With allocator hooks, the budgets bound the entries' bytes alone. */
static size_t shard_budget(const mem_store *s, size_t max_bytes, unsigned nshards,
                           corral_eviction policy) {
    if (!s->blocks.real_cost) return max_bytes / nshards;
    size_t ghost =
        policy == CORRAL_EVICT_S3FIFO ? ghost_slots(max_bytes / nshards) * sizeof(uint32_t) : 0;
    size_t fixed =
        corral__mem_block_cost(&s->blocks, ((size_t)1 << s->bucket_bits) * sizeof(mem_link)) +
        (size_t)nshards * corral__mem_block_cost(&s->blocks, ghost) +
        corral__mem_block_cost(&s->blocks, (size_t)nshards * sizeof(mem_shard)) +
        corral__mem_block_cost(&s->blocks, sizeof(mem_store));
    return (max_bytes - CORRAL_MIN(fixed, max_bytes / 2)) / nshards;
}

int corral__mem_open(corral__store **out, const corral__mem_config *cfg,
                     const corral__store_env *env) {
    if (out) *out = NULL;
    if (!out || !cfg || !env || !env->alloc || !env->now_ns || cfg->max_bytes == 0)
        return CORRAL_EINVAL;
    corral_eviction policy =
        cfg->eviction == CORRAL_EVICT_DEFAULT ? MEM_DEFAULT_POLICY : cfg->eviction;
    if (policy != CORRAL_EVICT_SIEVE && policy != CORRAL_EVICT_S3FIFO && policy != CORRAL_EVICT_LRU)
        return CORRAL_EINVAL;
    unsigned nshards = choose_shards(cfg);
    if (cfg->max_bytes / nshards == 0) return CORRAL_EINVAL;

    unsigned inited = 0;
    bool sync_inited = false;
    mem_store *s = corral__calloc(env->alloc, 1, sizeof *s);
    if (!s) return CORRAL_ENOMEM;
    s->base.ops = &mem_ops;
    s->magic = MEM_STORE_MAGIC;
    s->env = *env;
    s->policy = policy;
    s->hit_max = hit_max_of(policy);
    s->max_bytes = cfg->max_bytes;
    s->max_value_bytes = cfg->max_value_bytes;
    s->gp_spacing_ns = cfg->gp_spacing_ns ? cfg->gp_spacing_ns : MEM_GP_SPACING_NS;
    s->nshards = nshards;
    s->bucket_bits = choose_bucket_bits(cfg->max_bytes);
    s->bucket_mask = ((uint64_t)1 << s->bucket_bits) - 1;
    corral__mem_blocks_init(&s->blocks, env->alloc, cfg->max_bytes);
    size_t budget = shard_budget(s, cfg->max_bytes, nshards, policy);
    atomic_init(&s->reclaim_next, 0);
    atomic_init(&s->rcu_pending, 0);
    if (pthread_mutex_init(&s->rcu_lock, NULL) != 0) goto fail;
    if (pthread_cond_init(&s->rcu_idle, NULL) != 0) {
        pthread_ok(pthread_mutex_destroy(&s->rcu_lock));
        goto fail;
    }
    sync_inited = true;
    s->shards = corral__calloc(env->alloc, nshards, sizeof *s->shards);
    if (!s->shards) goto fail;
    for (; inited < nshards; inited++) {
        mem_shard *sh = &s->shards[inited];
        sh->budget = budget;
        sh->small_budget = sh->budget / 100 * MEM_SMALL_PERCENT;
        atomic_init(&sh->used, 0);
        if (policy == CORRAL_EVICT_S3FIFO) {
            size_t slots = ghost_slots(sh->budget);
            sh->ghost = corral__calloc(env->alloc, slots, sizeof *sh->ghost);
            if (!sh->ghost) goto fail;
            sh->ghost_mask = slots - 1;
        }
        if (corral__mutex_init(&sh->lock) != CORRAL_OK) {
            corral__free(env->alloc, sh->ghost, (sh->ghost_mask + 1) * sizeof *sh->ghost);
            goto fail;
        }
    }
    /* Zeroed memory is an array of NULL heads on every platform we build on (C11 leaves the
     * representation of an atomic pointer open; we rely on it being the plain pointer's). */
    s->buckets = corral__calloc(env->alloc, (size_t)1 << s->bucket_bits, sizeof *s->buckets);
    if (!s->buckets) goto fail;
    *out = &s->base;
    return CORRAL_OK;
fail:
    store_free(s, inited, sync_inited);
    return CORRAL_ENOMEM;
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
            if (lap == SIZE_MAX) lap = shard_count_locked(sh);
            size_t n = CORRAL_MIN(CORRAL_MIN(lap, examine), (size_t)MEM_LOCK_BATCH);
            removed += scan_locked(s, sh, now, n, budget - removed, &examined);
            shard_unlock(sh);
            read_unlock(s);
            if (examined == 0) break;
            lap -= CORRAL_MIN(lap, examined);
            examine -= CORRAL_MIN(examine, examined);
        }
    }
    return removed;
}

void corral__mem_quiesce(corral__store *base) {
    wait_rcu_idle(store_of(base));
}
