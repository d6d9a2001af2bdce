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

#define MEM_WRITE_SCAN     4u  /* entries of each queue a write examines for expiry */
#define MEM_RECLAIM_FACTOR 8u  /* corral__mem_reclaim examines at most budget x this */
#define MEM_LOCK_BATCH     64u /* entries examined or removed per lock hold (reclaim, clear) */
#define MEM_S3_FREQ_MAX    3u  /* S3-FIFO: frequencies saturate here (2 bits) */
#define MEM_S3_PROMOTE     1u  /* S3-FIFO: hits in the small queue that earn the main queue */
/* A shard's table grows only while the doubled table costs at most this share of its budget:
 * a table of one head an entry is 4 bytes an entry (mem_ref), at most a twelfth of the
 * smallest entry's (a 48-byte slot). */
#define MEM_TABLE_SHARE 8u
/* A write frees the limbo itself once it holds more than max_bytes / MEM_LIMBO_DIV, at least
 * MEM_LIMBO_MIN (memory_rcu.c): RSS the bound does not count, a small share of its slack. */
#define MEM_LIMBO_DIV 32u
#define MEM_LIMBO_MIN ((size_t)1 << 20)

/* ---- Small helpers ---- */

/* An entry's size: its header, key, value and NUL (corral__mem_entry_bytes adds a far entry's
 * prefix), inline for the write path. */
static inline size_t mem_entry_bytes(size_t key_len, size_t val_len) {
    size_t n = offsetof(mem_entry, key);
    if (key_len > SIZE_MAX - n) return SIZE_MAX;
    n += key_len;
    if (val_len >= SIZE_MAX - n) return SIZE_MAX;
    n += val_len + 1;
    return CORRAL_MAX(n, offsetof(mem_entry, key) + MEM_KEY_LOAD); /* see hot_key_equal */
}

/* The bytes of a far entry's block (memory_read.h, mem_far) for an entry of `n` bytes
 * (mem_entry_bytes). SIZE_MAX: too large. */
static inline size_t far_block_bytes(size_t n) {
    return n > SIZE_MAX - MEM_FAR_HDR ? SIZE_MAX : n + MEM_FAR_HDR;
}

/* The size of `e` (mem_entry_bytes). Under the shard lock, or once `e` is DEAD (an overwrite in
 * place rewrites the lengths). */
static inline size_t entry_block_bytes(const mem_entry *e) {
    return mem_entry_bytes(mem_klen(e), (size_t)e->val.hdr_len + e->val.len);
}

/* What `e` accounts for: what its block costs in `b` (memory_block.h), its size with allocator
 * hooks: a slot's share of its slab, or a far entry's block, prefix included. */
static inline size_t entry_bytes(const corral__mem_blocks *b, const mem_entry *e) {
    size_t n = entry_block_bytes(e);
    if (corral__mem_in_region(e)) return corral__mem_slab_cost(corral__mem_slab_class_of(n));
    return corral__mem_heap_cost(b, far_block_bytes(n));
}

/* The entries of `e`'s queue next to it, under the shard lock. */
static inline mem_entry *q_newer(const mem_entry *e) {
    return mem_deref(e->u.q.newer);
}

static inline mem_entry *q_older(const mem_entry *e) {
    return mem_deref(e->u.q.older);
}

/* How many entries of `sh` have an expiry: exact under its lock, a hint without it. */
static inline size_t shard_expiring(const mem_shard *sh) {
    return atomic_load_explicit(&sh->expiring, memory_order_relaxed);
}

/* Counts `plus` entries with an expiry into shard `sh` and `minus` out of it. */
static inline void shard_expiring_add_locked(mem_shard *sh, size_t plus, size_t minus) {
    CORRAL_ASSERT_HELD(&sh->lock);
    size_t n = shard_expiring(sh);
    assert(n + plus >= minus);
    atomic_store_explicit(&sh->expiring, n + plus - minus, memory_order_relaxed);
}

/* True when `e`, an entry of shard `sh`, has expired at the store's time `now` (clock_now). */
static inline bool is_expired(const mem_shard *sh, const mem_entry *e, uint64_t now) {
    return mem_exp_passed(sh, mem_exp_load(e), now);
}

/* The expiry, in the shard's current parity, of the store's time `at` (MEM_NEVER: never). */
static inline uint32_t mem_exp_of_locked(mem_shard *sh, uint64_t at) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return mem_exp_encode(at, sh->exp_cur,
                          atomic_load_explicit(&sh->exp_base[sh->exp_cur], memory_order_relaxed));
}

/* Sets the expiry of `e`, an entry of shard `sh`, to the store's time `at` (MEM_NEVER: never).
 * Release: a reader that loads it sees the base of its parity. */
static inline void mem_exp_set_locked(mem_shard *sh, mem_entry *e, uint64_t at) {
    CORRAL_ASSERT_HELD(&sh->lock);
    atomic_store_explicit(&e->expiry, mem_exp_of_locked(sh, at), memory_order_release);
}

/* Re-encodes the expiry of `e` in the shard's current parity if it has the other one: the
 * time is kept exactly (both bases are whole seconds, so a count of either unit moves by a
 * whole number of its units), unless the time is before the current base, which becomes the
 * base (it was at least MEM_EXP_MARGIN ago then: expired). */
static inline void mem_exp_current_locked(mem_shard *sh, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    uint32_t x = atomic_load_explicit(&e->expiry, memory_order_relaxed);
    if (x == MEM_EXP_NEVER || mem_exp_parity(x) == sh->exp_cur) return;
    mem_exp_set_locked(sh, e, mem_exp_ns(sh, x));
}

/* True while a rebase's walk runs in shard `sh`: exact under its lock, a hint without it. */
static inline bool shard_walking(const mem_shard *sh) {
    return atomic_load_explicit(&sh->exp_walk_q, memory_order_relaxed) != MEM_QUEUES;
}

/* True when shard `sh`'s current base is more than MEM_EXP_REBASE_AFTER old at the store's
 * time `now`: a rebase is due (it may still wait for a walk: memory.c, "Expiry epochs"). */
static inline bool epoch_due(const mem_shard *sh, uint64_t now) {
    return now > atomic_load_explicit(&sh->exp_base[sh->exp_cur], memory_order_relaxed) +
                     MEM_EXP_REBASE_AFTER;
}

/* mem_epoch_tick_locked's work: the rebase, or a step of the walk (memory.c). */
void corral__mem_epoch_step_locked(mem_shard *sh, uint64_t now);

/* Under the shard lock of a write, with the store's time `now` (0 when the write did not read
 * the clock): starts a rebase when the current base is more than MEM_EXP_REBASE_AFTER old, or
 * re-encodes a few entries of the walk under way (memory.c, "Expiry epochs"). */
static inline void mem_epoch_tick_locked(mem_shard *sh, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    if (shard_walking(sh) || epoch_due(sh, now)) corral__mem_epoch_step_locked(sh, now);
}

/* True when `e` has an expiry. */
static inline bool has_expiry(const mem_entry *e) {
    return atomic_load_explicit(&e->expiry, memory_order_relaxed) != MEM_EXP_NEVER;
}

/* A writer's lock: spin.h's, one locked instruction to take it and none to give it back. */
static inline void shard_lock(mem_shard *sh) {
    corral__spin_lock(&sh->lock);
}

static inline void shard_unlock(mem_shard *sh) {
    corral__spin_unlock(&sh->lock);
}

/* The bytes of a table of 2^bits heads on the heap: its header, then the heads. */
static inline size_t mem_table_bytes(unsigned bits) {
    return sizeof(mem_table) + ((size_t)1 << bits) * sizeof(mem_link);
}

/* The shard's current table. Under its lock, the only place it changes. */
static inline mem_table *table_locked(mem_shard *sh) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return atomic_load_explicit(&sh->table, memory_order_relaxed);
}

/* The hash of `e`'s key, the one its callers gave with it (corral__mem_config.key_hash): for
 * an entry reached without its key. Its key never changes, so anywhere `e` may be read. */
static inline uint64_t mem_entry_hash(const mem_store *s, const mem_entry *e) {
    const corral__keyscheme *ks = s->hot_ks;
    size_t klen = mem_klen(e);
    /* A key of the hot scheme's own header: corral__key_hash's value (the header's seed, then
     * the rest), without its search for the header's end. */
    if (ks && klen >= ks->hdr_len && hot_hdr_equal(ks, e->key))
        return XXH3_64bits_withSeed(e->key + ks->hdr_len, klen - ks->hdr_len, ks->hdr_seed);
    return s->key_hash(s->key_hash_ctx, e->key, klen);
}

/* The entry of `k` in keyspace `kind` on the chain from `e`, or NULL. The key's length and
 * kind are compared first (the entry's first slot): a chain's other entries of other lengths
 * cost one load each. */
static inline mem_entry *chain_find(mem_entry *e, const corral__skey *k, uint8_t kind) {
    for (; e; e = mem_next_rcu(e)) {
        if ((mem_kw(e) & (MEM_KLEN_MAX | MEM_KW_LEASE)) ==
                (k->len | (kind == MEM_LEASE ? MEM_KW_LEASE : 0)) &&
            key_equal(e->key, k->data, k->len)) {
            CORRAL_CHECK_OBJ(&e->val, CORRAL_VALUE_MAGIC);
            return e;
        }
    }
    return NULL;
}

/* Looks `k` up in keyspace `kind`. Call inside a read-side section; the entry stays readable
 * until the section ends. A walk that finds nothing while a resize moves the shard's entries
 * walks again (mem_chain_retry). Under the key's shard lock, lookup_locked is the same. */
static inline mem_entry *lookup_rcu(const mem_store *s, const corral__skey *k, uint8_t kind) {
    mem_shard *sh = shard_of(s, k->hash);
    for (unsigned i = 0;; i++) {
        uint32_t rs;
        mem_entry *e = chain_find(mem_chain_rcu(sh, k->hash, &rs), k, kind);
        if (e || !mem_chain_retry(sh, rs)) return e;
        mem_spin(i);
    }
}

/* lookup_rcu's first walk alone, in the key's shard `sh`: it may miss a present key while a
 * resize moves entries. For a writer that looks again under the lock when it finds nothing
 * (a miss here costs no retry check). Call inside a read-side section. */
static inline mem_entry *lookup_hint_rcu(mem_shard *sh, const corral__skey *k, uint8_t kind) {
    uint32_t rs;
    return chain_find(mem_chain_rcu(sh, k->hash, &rs), k, kind);
}

/* The table a resize of shard `sh` moves its chains into, or NULL. Under its lock. */
static inline mem_table *grow_locked(mem_shard *sh) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return atomic_load_explicit(&sh->grow, memory_order_relaxed);
}

/* The head of the chain of `hash` in shard `sh` (mem_head). Under its lock. */
static inline mem_link *head_locked(mem_shard *sh, uint64_t hash) {
    mem_table *to = grow_locked(sh);
    size_t moved = to ? atomic_load_explicit(&sh->moved, memory_order_relaxed) : 0;
    return mem_head(table_locked(sh), to, moved, hash);
}

/* lookup_rcu under the lock of the key's shard `sh`, where no entry moves: one walk answers,
 * and a found entry is LIVE. Call inside a read-side section. */
static inline mem_entry *lookup_locked(mem_shard *sh, const corral__skey *k, uint8_t kind) {
    return chain_find(
        mem_deref(atomic_load_explicit(head_locked(sh, k->hash), memory_order_acquire)), k, kind);
}

/* lookup_hint_rcu of the store key "<ks->hdr><key>" of a hot scheme's user key (hashed to
 * `hash` by corral__key_hash_hot_inline) in keyspace MEM_VALUE of its shard `sh`, without that
 * key built: the header is compared as two masked words, the user key's bytes where the caller
 * has them. One walk: a writer's first look, which looks again under the lock when it finds
 * nothing. Call inside a read-side section. */
static inline mem_entry *hot_lookup_hint_rcu(mem_shard *sh, const corral__keyscheme *ks,
                                             const void *key, size_t key_len, uint64_t hash) {
    uint32_t rs;
    mem_entry *e = hot_chain_find(mem_chain_rcu(sh, hash, &rs), ks, key, key_len);
    if (e) CORRAL_CHECK_OBJ(&e->val, CORRAL_VALUE_MAGIC);
    return e;
}

/* pthread calls on our own initialised objects fail only on a bug. */
static inline void pthread_ok(int rc) {
    assert(rc == 0);
    (void)rc;
}

/* ---- memory.c: entries, the table, queues, accounting and removal ---- */

/* The expiry, in the store's time, of a TTL (> 0 or CORRAL__NO_EXPIRY) read at the store's
 * time `now` (clock_now), saturating; mem_exp_set_locked keeps it in an entry. */
uint64_t corral__mem_expiry_at(uint64_t now, int64_t ttl_ms);
/* A new, unpublished entry that never expires (the caller sets its expiry under the shard
 * lock: mem_exp_set_locked); NULL when the allocator fails. The caller has checked the size. */
mem_entry *corral__mem_entry_new(mem_store *s, const corral__skey *k, uint8_t kind, const void *val,
                                 size_t len);
/* Frees an entry that was never published. Accepts NULL. */
void corral__mem_entry_discard(mem_entry *e);
/* Frees the block of `e`, no longer anyone's: into its slab, or its far name and its block. */
void corral__mem_entry_free(mem_entry *e);
/* CORRAL_ETOOBIG when an entry of this size can never be held, CORRAL_OK otherwise. */
int corral__mem_check_size(const mem_store *s, const mem_shard *sh, size_t klen, size_t vlen,
                           uint8_t kind);
/* Links the filled entry `e`, of key hash `hash`, at the head of its chain: readers see all of
 * it or nothing. */
void corral__mem_table_insert_locked(mem_store *s, mem_shard *sh, mem_entry *e, uint64_t hash);
/* Puts the filled entry `e` where `old` is (both of key hash `hash`), in one store: a reader
 * finds one or the other. */
void corral__mem_table_replace_locked(mem_store *s, mem_shard *sh, mem_entry *old, mem_entry *e,
                                      uint64_t hash);
/* Counts `e` in (ADDED) or out (any other change) of the shard and reports it. */
void corral__mem_account_locked(mem_store *s, mem_shard *sh, mem_entry *e, corral__change why);

void corral__mem_queue_push_locked(mem_shard *sh, unsigned qi, mem_entry *e);
/* Takes `e` out of its queue; the SIEVE hand and the expiry cursor move to its newer
 * neighbour, a rebase's walk to its older one. */
void corral__mem_queue_unlink_locked(mem_shard *sh, mem_entry *e);
/* Puts `e` (not in a queue) in `old`'s place in its queue, `old` out of it; the SIEVE hand,
 * the expiry cursor and a rebase's walk that pointed at `old` point at `e`. Both push and
 * replace re-encode the entry's expiry in the shard's current parity (memory.c). */
void corral__mem_queue_replace_locked(mem_shard *sh, mem_entry *old, mem_entry *e);
size_t corral__mem_shard_count_locked(mem_shard *sh);
/* Removes a LIVE entry of shard `sh`, of key hash `hash` (mem_entry_hash when the caller has no
 * key): table, queue, bytes, event, RCU. */
void corral__mem_remove_locked(mem_store *s, mem_shard *sh, mem_entry *e, uint64_t hash,
                               corral__change why);
/* Starts doubling shard `sh`'s table to 2^bits heads if it still has 2^(bits - 1) and no
 * resize runs, evicting what the larger table's charge needs, and takes the resize's first
 * step. Allocates the table before it takes the lock (no allocator under a shard lock); not
 * inside a read-side section. An allocation that fails leaves the table as it was: its chains
 * grow longer until a later write grows it. */
void corral__mem_table_grow(mem_store *s, mem_shard *sh, unsigned bits);
/* Moves the next MEM_RESIZE_STEP buckets of the resize running in shard `sh` (grow_locked is
 * not NULL) into the new table; the step that moves the last publishes it and retires the old
 * one. Call inside a read-side section. */
void corral__mem_table_step_locked(mem_store *s, mem_shard *sh);
/* Sends shard `sh`, which holds no entry (clear, or eviction that found no victim), back to its
 * `home` table and retires its tables on the heap (a resize that runs ends there): no chain to
 * move, so a short hold of the lock. Returns false when it had only `home` already. Call
 * inside a read-side section. */
bool corral__mem_table_home_locked(mem_store *s, mem_shard *sh);

/* A write's share of a running resize: one step, if one runs. Under the lock of `sh`, inside
 * a read-side section. */
static inline void table_step_locked(mem_store *s, mem_shard *sh) {
    if (__builtin_expect(grow_locked(sh) != NULL, 0)) corral__mem_table_step_locked(s, sh);
}

/* The bits of the table shard `sh` should grow to, or 0: no resize runs, it holds more
 * entries than heads, and the doubled table costs at most a MEM_TABLE_SHARE-th of its
 * budget. Inline: every write that adds an entry asks. */
static inline unsigned table_grow_bits_locked(const mem_store *s, mem_shard *sh) {
    const mem_table *t = table_locked(sh);
    if (sh->q[MEM_MAIN].count + sh->q[MEM_SMALL].count <= t->mask + 1 ||
        t->bits >= MEM_MAX_BUCKET_BITS || grow_locked(sh))
        return 0;
    size_t cost = corral__mem_block_cost_most(&s->blocks, mem_table_bytes(t->bits + 1));
    return cost <= sh->budget / MEM_TABLE_SHARE ? t->bits + 1 : 0;
}

/* ---- memory_write.c: the writes (the vtable's set, del, touch, incr and leases) ---- */

int corral__mem_op_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
                       int64_t ttl_ms, corral__set_mode mode, unsigned flags);
int corral__mem_op_del(corral__store *base, const corral__skey *k);
int corral__mem_op_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms);
int corral__mem_op_incr(corral__store *base, const corral__skey *k, int64_t delta, int64_t *out);
int corral__mem_op_lease_acquire(corral__store *base, const corral__skey *k, const void *token,
                                 size_t token_len, int64_t ttl_ms);
int corral__mem_op_lease_release(corral__store *base, const corral__skey *k, const void *token,
                                 size_t token_len);

/* ---- memory_evict.c: expiry and eviction ---- */

/* Examines up to `n` entries of each queue for expiry and removes the expired ones, at most
 * `max_remove`; adds the entries examined to `*examined` and returns how many it removed. */
size_t corral__mem_scan_locked(mem_store *s, mem_shard *sh, uint64_t now, size_t n,
                               size_t max_remove, size_t *examined);
/* A reader found `e`, the entry of key hash `hash`, expired: removes it if the shard's lock is
 * free. Call inside the read-side section that found `e`. */
void corral__mem_reap_rcu(mem_store *s, mem_entry *e, uint64_t hash, uint64_t now);
/* Evicts until `need` more bytes fit the shard's budget (need <= budget). */
void corral__mem_make_room_locked(mem_store *s, mem_shard *sh, size_t need, uint64_t now);
/* S3-FIFO: true (and the slot cleared) when the key of `hash` was evicted from the small queue
 * lately. */
bool corral__mem_ghost_take_locked(mem_shard *sh, uint64_t hash);
/* LRU: a hit moves the entry `e` of shard `sh` to the head when the shard's lock is free. */
void corral__mem_lru_touch_rcu(mem_shard *sh, mem_entry *e);

/* ---- memory_rcu.c: freeing removed entries ---- */

/* Hands an entry already out of the table to the limbo. Call inside a read-side section. */
void corral__mem_entry_retire(mem_store *s, mem_entry *e);
/* Frees a table on the heap that a resize replaced, after a grace period. Call under the
 * shard's lock, after the new table is published. */
void corral__mem_table_retire(mem_store *s, mem_table *t);
/* Waits until every callback this store queued has run. Not inside a read-side section. */
void corral__mem_wait_rcu_idle(mem_store *s);
/* corral_value's release function of an entry: frees its block. */
void corral__mem_entry_release(corral_value *v);
/* Takes the limbo whole, waits for a grace period and releases its entries: a writer's share
 * of the frees (limbo_check). Not inside a read-side section, no lock held. */
void corral__mem_limbo_help(mem_store *s);

/* After a write that may have retired entries: frees the limbo when it holds more than
 * `limbo_max` bytes. Not inside a read-side section, no lock held. */
static inline void limbo_check(mem_store *s) {
    if (__builtin_expect(atomic_load_explicit(&s->limbo_bytes, memory_order_relaxed) > s->limbo_max,
                         0))
        corral__mem_limbo_help(s);
}

#endif /* CORRAL_STORE_MEMORY_INTERNAL_H */
