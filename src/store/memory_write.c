/*
 * memory_write.c - the memory store's writes: set, add, the guarded set of the near cache,
 * delete, touch, incr and the leases. memory.c holds the entries, the table and the queues they
 * change; memory.c's top comment states the invariants and the locking they keep.
 *
 * A write builds its entry outside the lock and decides under the lock of the key's shard,
 * except an overwrite in place: a set of a key whose entry is live, unexpired and of a block
 * the size the new entry's would be, and whose value only the table holds,
 * rewrites that entry's value under the lock instead (overwrite_locked). No allocation, no
 * grace period, no free. Readers see the old value or the new one: a get waits for the write
 * to end before it takes a reference, a get_into copies again if the value's generation
 * moved (memory_read.h); a value handed out is never rewritten, since a reference held refuses the
 * write, which then takes the allocating path. docs/memory-store.md has the measurements.
 *
 * corral_set on a hot key scheme writes through corral__mem_set_hot: the same path, given the
 * user key as the caller has it, so that an overwrite in place neither builds nor checks the
 * store key (docs/memory-density.md, "The set path above the store").
 */
#include "memory_internal.h"
#include "../envelope.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MEM_RETRY 100 /* internal outcome of incr: the key changed, try again */
/* Values up to this many bytes may be overwritten in place: readers wait for the copy. */
#define MEM_INPLACE_MAX 4096u

/* ---- Writes ---- */

/* An overwrite of a live entry is an access to its key: the hit mark `old` hands on, raised by
 * one as a hit raises it (note_hit_rcu). */
static uint8_t overwritten_hits(const mem_store *s, const mem_entry *old) {
    uint8_t h = mem_hits(old);
    return h < s->hit_max ? (uint8_t)(h + 1) : h;
}

/* Puts the new entry `e` of key hash `hash` in the table and a queue in place of `old` (the
 * key's entry; NULL when absent), after evicting what it needs. `old` is reported REPLACED when
 * live, EXPIRED otherwise. A live `old` hands `e` its hit mark, raised by one, and its place in its
 * queue, as an overwrite in place keeps it; but under LRU, or when `e` is the larger and eviction
 * may need to run, `e` goes to the head of `old`'s queue. Then examines a few entries for expiry.
 * Call inside a read-side section; cannot fail. */
static void publish_locked(mem_store *s, mem_shard *sh, mem_entry *e, mem_entry *old, uint64_t hash,
                           uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    unsigned qi = MEM_MAIN;
    bool live = old && !is_expired(sh, old, now);
    bool in_place = live && s->policy != CORRAL_EVICT_LRU &&
                    entry_bytes(&s->blocks, e) <= entry_bytes(&s->blocks, old);
    if (live) {
        qi = mem_queue_of(old);
        mem_set_hits(e, overwritten_hits(s, old));
    } else if (s->policy == CORRAL_EVICT_S3FIFO) {
        qi = corral__mem_ghost_take_locked(sh, hash) ? MEM_MAIN : MEM_SMALL;
    }
    if (in_place) {
        /* `e` fits where `old` was: nothing to evict. */
        corral__mem_queue_replace_locked(sh, old, e);
        corral__mem_account_locked(s, sh, old, CORRAL__REPLACED);
    } else if (old) {
        /* Out of its queue first, so eviction cannot pick it; out of the table last, in one
         * step with the insertion, so readers never miss the key. */
        corral__mem_queue_unlink_locked(sh, old);
        corral__mem_account_locked(s, sh, old, live ? CORRAL__REPLACED : CORRAL__EXPIRED);
    }
    if (!in_place) corral__mem_make_room_locked(s, sh, entry_bytes(&s->blocks, e), now);

    /* Eviction may have changed the chain: the link to `old` is found now. The lock keeps
     * other writers of the key out. */
    mem_kw_set(e, MEM_KW_LIVE, MEM_KW_LIVE);
    if (old) {
        corral__mem_table_replace_locked(s, sh, old, e, hash);
        corral__mem_entry_retire(s, old);
    } else {
        corral__mem_table_insert_locked(s, sh, e, hash);
    }
    if (!in_place) corral__mem_queue_push_locked(sh, qi, e);
    corral__mem_account_locked(s, sh, e, CORRAL__ADDED);

    size_t examined = 0;
    corral__mem_scan_locked(s, sh, now, MEM_WRITE_SCAN, SIZE_MAX, &examined);
}

/* ---- Overwrites in place ---- */

/* memcpy into a value that get_into readers may be copying (memory_read.h, mem_copy_out). */
static void copy_in(unsigned char *dst, const void *src, size_t n) {
#ifdef MEM_TSAN
    const unsigned char *q = src;
    for (size_t i = 0; i < n; i++) /* release: after the swap of refs to 0 */
        __atomic_store_n(&dst[i], q[i], __ATOMIC_RELEASE);
#else
    memcpy(dst, src, n);
#endif
}

/* True when a value of `len` bytes under a key of class `cls` may replace the value of `e`,
 * the key's entry, whose key and value hold `have` bytes, in `e`'s block: the same metrics
 * class (the events name it), a small value (readers wait for the copy), and a block of the
 * same size, so the accounting and the block's free are what they would have been. (A block
 * of the same cost would hold it with glibc, but not with an allocator that gives the bytes
 * asked, as the sanitizers' do, and the size the block is freed with must be the size it was
 * allocated with.) */
static bool fits_in_place(const mem_entry *e, size_t have, uint16_t cls, size_t len) {
    /* mem_entry_bytes(klen, have) == mem_entry_bytes(klen, len), without its overflow checks
     * (both are small): the same bytes, or both within the padding of a short key's block. */
    return e->cls == cls && len <= MEM_INPLACE_MAX &&
           (have == len || mem_klen(e) + CORRAL_MAX(have, len) < MEM_KEY_LOAD);
}

/* The accounting of an overwrite in place of `e`, whose expiry was `had_expiry` and is now
 * `at`: its bytes stay (fits_in_place), so only the shard's count of entries with an expiry
 * may move, and the events callback hears one OVERWRITTEN (store.h) for the REPLACED and ADDED
 * of a replacing set. */
static void account_overwrite_locked(mem_store *s, mem_shard *sh, const mem_entry *e,
                                     bool had_expiry, uint64_t at) {
    CORRAL_ASSERT_HELD(&sh->lock);
    shard_expiring_add_locked(sh, at != MEM_NEVER, had_expiry);
    if (s->env.events.changed)
        s->env.events.changed(s->env.events.ctx, e->cls, CORRAL__OVERWRITTEN,
                              entry_bytes(&s->blocks, e));
}

/* Rewrites the value of `e` (LIVE, unexpired, fits_in_place) with `len` bytes at `val`,
 * expiring at `at`, if the table holds the only reference to it and its generation is not the
 * last (memory_read.h, "Overwrites in place"); returns false, having changed nothing,
 * otherwise: the write then allocates a new entry, whose generations start again. The queue sees
 * what a replacing set does: `e` keeps its place and its hit mark is raised; the events hear one
 * OVERWRITTEN (account_overwrite_locked). */
static bool overwrite_locked(mem_store *s, mem_shard *sh, mem_entry *e, const void *val, size_t len,
                             uint64_t at, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    uint32_t r = atomic_load_explicit(&e->val.refs, memory_order_relaxed);
    if ((r & CORRAL__REFS_COUNT) != 1 || (r & ~CORRAL__REFS_COUNT) == MEM_GEN_LAST) return false;
    /* A count of 0 keeps gets out until the write ends (tryref refuses it) and tells readers
     * without a reference one runs; acquire: the last holder's reads are done. */
    if (!atomic_compare_exchange_strong_explicit(&e->val.refs, &r, r - 1, memory_order_acquire,
                                                 memory_order_relaxed))
        return false;
    /* The entry keeps its place (LRU: goes to the head) and counts the overwrite as a hit:
     * publish_locked does the same for an entry it replaces. */
    bool to_head = s->policy == CORRAL_EVICT_LRU;
    if (to_head) corral__mem_queue_unlink_locked(sh, e);
    mem_set_hits(e, overwritten_hits(s, e));
    bool had_expiry = has_expiry(e);

    size_t hdr = corral__env_hdr_len(val, len);
    unsigned char *data = e->key + mem_klen(e);
#ifndef MEM_TSAN
    atomic_thread_fence(memory_order_release); /* the count of 0 before the bytes change */
#endif
    copy_in(data, val, len);
    copy_in(data + len, "", 1);
    /* Readers without a reference load the lengths atomically (mem_dlen, mem_hlen); holders
     * of a reference (corral__value_data reads hdr_len plainly) are none now. */
    __atomic_store_n(&e->val.len, (uint32_t)(len - hdr), __ATOMIC_RELAXED);
    __atomic_store_n(&e->val.hdr_len, (uint16_t)hdr, __ATOMIC_RELAXED);
    mem_exp_set_locked(sh, e, at);
    /* the table's reference back, at the next generation */
    atomic_store_explicit(&e->val.refs, r + CORRAL__REFS_GEN_ONE, memory_order_release);

    if (to_head) corral__mem_queue_push_locked(sh, mem_queue_of(e), e);
    account_overwrite_locked(s, sh, e, had_expiry, at);
    size_t examined = 0;
    corral__mem_scan_locked(s, sh, now, MEM_WRITE_SCAN, SIZE_MAX, &examined);
    return true;
}

/* ---- The time of a write ----
 * A write needs the time only to compare it with expiries: the key's old entry's (is it
 * live?), those of the entries the write scan examines, and eviction's, which takes an expired
 * entry first. So a write reads the clock (about 28 ns of clock_gettime on a guest) only when
 * it gives a TTL or when its shard holds an entry with an expiry: with none (the shard's
 * `expiring` 0 under its lock) and no TTL, every entry it may examine is unexpired at any
 * time, so its decisions are those of any time and 0 stands in for it. */

typedef struct write_time {
    uint64_t now; /* the clock's time once is_read; 0 before */
    bool is_read;
} write_time;

/* Before the shard lock: the time of a write with a TTL (ttl_ms not CORRAL__NO_EXPIRY), or
 * of one into a shard that holds an entry with an expiry (a peek, without the lock:
 * shard_lock_timed looks again under it); else nothing is read yet. Reading the clock here
 * keeps it out of the critical section (and the hook out from under the lock). */
static inline write_time write_time_begin(const mem_store *s, const mem_shard *sh, int64_t ttl_ms) {
    if (ttl_ms != CORRAL__NO_EXPIRY || shard_expiring(sh) != 0 || shard_walking(sh))
        return (write_time){ .now = clock_now(s), .is_read = true };
    return (write_time){ .now = 0, .is_read = false };
}

/* Takes the lock of shard `sh` for a write, with the time it decides with in t->now. If an
 * entry with an expiry came into the shard since write_time_begin looked, the clock is read
 * with the lock released (the clock hook is never called under a shard lock:
 * docs/threads.md) and the lock taken again; what the caller read before the lock it checks
 * again under it, as it does anyway. Under the lock, the write then does its share of the
 * shard's expiry epochs (mem_epoch_tick_locked, memory.c "Expiry epochs"). */
static void shard_lock_timed(const mem_store *s, mem_shard *sh, write_time *t) {
    shard_lock(sh);
    if (!t->is_read && (shard_expiring(sh) != 0 || shard_walking(sh))) {
        shard_unlock(sh);
        *t = (write_time){ .now = clock_now(s), .is_read = true };
        shard_lock(sh);
    }
    mem_epoch_tick_locked(sh, t->now);
}

/* Takes the lock of shard `sh` for a write that read the clock before it (`now`), and does
 * the write's share of the shard's expiry epochs, as shard_lock_timed does. */
static void shard_lock_at(mem_shard *sh, uint64_t now) {
    shard_lock(sh);
    mem_epoch_tick_locked(sh, now);
}

/* set and add of a value, in place when they can: `e` is the key's entry in keyspace MEM_VALUE
 * as a lookup in the caller's read-side section found it (NULL: none), `cls` the key's class.
 * True when it decided the write (*rc its outcome), false when the allocating path must (no
 * live entry of the key, a block of another size, a reference held on the value). Inline in
 * both callers: a call cost the overwrite a frame for its twelve arguments, most of them
 * constants in corral__mem_set_hot. */
static inline __attribute__((always_inline)) bool
write_in_place_rcu(mem_store *s, mem_shard *sh, mem_entry *e, uint16_t cls, const void *val,
                   size_t len, uint64_t at, corral__set_mode mode, corral__mem_guard_fn still,
                   void *still_ctx, write_time *t, int *rc) {
    /* A first look without the lock, at lengths that may be changing: a size that cannot fit
     * does not take the lock twice. */
    if (!e || !fits_in_place(e, (size_t)mem_dlen(e) + mem_hlen(e), cls, len)) return false;
    bool done = false;
    shard_lock_timed(s, sh, t);
    uint64_t now = t->now;
    if (mem_live(e) && !is_expired(sh, e, now) &&
        fits_in_place(e, (size_t)e->val.hdr_len + e->val.len, cls, len)) {
        done = true;
        if (still && !still(still_ctx))
            *rc = CORRAL_MISS; /* corral__mem_set_guarded: refused, nothing changes */
        else if (mode == CORRAL__SET_NX)
            *rc = CORRAL_EXISTS;
        else if (overwrite_locked(s, sh, e, val, len, at, now))
            *rc = CORRAL_OK;
        else
            done = false;
    }
    shard_unlock(sh);
    return done;
}

/* True when a value of `len` bytes under a key of `klen` bytes may be tried in place
 * (write_in_place_rcu) before corral__mem_check_size: a value only the key's entry's block
 * would hold. That block passed the size check with a value of the same entry size, so of the
 * check only the value bound is left (a short key's padding holds a longer value than the one
 * before), and the key's length, so that the lookup compares only lengths an entry can have. */
static inline bool may_write_in_place(const mem_store *s, size_t klen, uint8_t kind, size_t len) {
    return kind == MEM_VALUE && len <= MEM_INPLACE_MAX && klen <= MEM_KLEN_MAX &&
           (s->max_value_bytes == 0 || len <= s->max_value_bytes);
}

static inline uint64_t expiry_of(const write_time *t, int64_t ttl_ms) {
    return ttl_ms == CORRAL__NO_EXPIRY ? MEM_NEVER : corral__mem_expiry_at(t->now, ttl_ms);
}

/* ---- Writes that allocate ---- */

/* The allocating half of write_entry: checks the size, builds the entry outside the lock, then
 * decides under the shard lock. */
static int write_new(mem_store *s, mem_shard *sh, const corral__skey *k, uint8_t kind,
                     const void *val, size_t len, uint64_t at, corral__set_mode mode,
                     corral__mem_guard_fn still, void *still_ctx, write_time *t) {
    int rc = corral__mem_check_size(s, sh, k->len, len, kind);
    if (rc != CORRAL_OK) return rc;
    mem_entry *e = corral__mem_entry_new(s, k, kind, val, len);
    if (!e) return CORRAL_ENOMEM;

    read_lock(s);
    /* Looked up before the lock, so the chain is in the cache while we hold it. Under the
     * lock, an entry still LIVE is still in the table, so still the key's entry. */
    mem_entry *old = lookup_hint_rcu(sh, k, kind);
    shard_lock_timed(s, sh, t);
    uint64_t now = t->now;
    if (!old || !mem_live(old)) old = lookup_locked(sh, k, kind);
    mem_exp_set_locked(sh, e, at); /* against the base the tick above may have moved */
    bool live = old && !is_expired(sh, old, now);
    if (still && !still(still_ctx)) {
        rc = CORRAL_MISS; /* corral__mem_set_guarded: refused, nothing changes */
    } else if (mode == CORRAL__SET_NX && live) {
        rc = CORRAL_EXISTS;
    } else if (mode == CORRAL__SET_XX && !live) {
        if (old) corral__mem_remove_locked(s, sh, old, k->hash, CORRAL__EXPIRED);
        rc = CORRAL_MISS;
    } else {
        publish_locked(s, sh, e, old, k->hash, now);
        e = NULL;
        rc = CORRAL_OK;
    }
    table_step_locked(s, sh);
    unsigned grow = table_grow_bits_locked(s, sh);
    shard_unlock(sh);
    read_unlock(s);
    corral__mem_entry_discard(e);
    if (grow) corral__mem_table_grow(s, sh, grow);
    limbo_check(s);
    return rc;
}

/* The write path of set, add and lease_acquire: an overwrite in place when it can be, tried
 * before the size check (may_write_in_place); else write_new. */
static int write_entry(mem_store *s, const corral__skey *k, uint8_t kind, const void *val,
                       size_t len, int64_t ttl_ms, corral__set_mode mode,
                       corral__mem_guard_fn still, void *still_ctx) {
    mem_shard *sh = shard_of(s, k->hash);
    write_time t = write_time_begin(s, sh, ttl_ms);
    uint64_t at = expiry_of(&t, ttl_ms);
    if (may_write_in_place(s, k->len, kind, len)) {
        int rc;
        read_lock(s);
        bool done = write_in_place_rcu(s, sh, lookup_hint_rcu(sh, k, MEM_VALUE), k->cls, val, len,
                                       at, mode, still, still_ctx, &t, &rc);
        read_unlock(s);
        if (done) return rc;
    }
    return write_new(s, sh, k, kind, val, len, at, mode, still, still_ctx, &t);
}

/* memory.h. write_entry's way for a key of a hot scheme, given as the caller has it: hashed
 * where it is, looked up by the header's words and its bytes (hot_lookup_hint_rcu), and built into
 * a store key only when the write allocates. A key that an entry of the table holds passed
 * the byte check when it was stored (the read path's argument, memory_read.h, hot_end), so an
 * overwrite in place does without it. */
int corral__mem_set_hot(corral__store *base, const corral__keyscheme *ks, const void *key,
                        size_t key_len, uint16_t cls, const void *val, size_t len, int64_t ttl_ms) {
    mem_store *s = store_of(base);
    uint64_t hash;
    if (!corral__key_hash_hot_inline(ks, key, key_len, &hash)) return CORRAL_EBADKEY;
    mem_shard *sh = shard_of(s, hash);
    write_time t = write_time_begin(s, sh, ttl_ms);
    uint64_t at = expiry_of(&t, ttl_ms);
    int rc;
    if (may_write_in_place(s, ks->hdr_len + key_len, MEM_VALUE, len)) {
        read_lock(s);
        bool done = write_in_place_rcu(s, sh, hot_lookup_hint_rcu(sh, ks, key, key_len, hash), cls,
                                       val, len, at, CORRAL__SET_ALWAYS, NULL, NULL, &t, &rc);
        read_unlock(s);
        if (done) return rc;
    }
    char buf[CORRAL__KEYBUF];
    corral__skey sk = { .data = buf, .hash = hash, .cls = cls };
    rc = corral__key_copy_hot_inline(ks, key, key_len, buf, &sk.len);
    if (rc != CORRAL_OK) return rc;
    return write_new(s, sh, &sk, MEM_VALUE, val, len, at, CORRAL__SET_ALWAYS, NULL, NULL, &t);
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
    shard_lock_at(sh, now);
    mem_entry *e = lookup_locked(sh, k, kind);
    if (e && is_expired(sh, e, now)) {
        corral__mem_remove_locked(s, sh, e, k->hash, CORRAL__EXPIRED);
    } else if (e && (!token || (e->val.len == token_len &&
                                (token_len == 0 ||
                                 memcmp(corral__value_data(&e->val), token, token_len) == 0)))) {
        corral__mem_remove_locked(s, sh, e, k->hash, CORRAL__DELETED);
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

/* No write flag means anything to the memory store: `flags` is ignored (store.h). */
int corral__mem_op_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
                       int64_t ttl_ms, corral__set_mode mode, unsigned flags) {
    (void)flags;
    mem_store *s = store_of(base);
    if (ttl_ms <= 0) return CORRAL_EINVAL; /* the layer above turns TTL 0 into a delete */
    return write_entry(s, k, MEM_VALUE, val, len, ttl_ms, mode, NULL, NULL);
}

int corral__mem_set_guarded(corral__store *base, const corral__skey *k, const void *val, size_t len,
                            int64_t ttl_ms, corral__mem_guard_fn still, void *ctx) {
    return write_entry(store_of(base), k, MEM_VALUE, val, len, ttl_ms, CORRAL__SET_ALWAYS, still,
                       ctx);
}

int corral__mem_op_del(corral__store *base, const corral__skey *k) {
    return remove_key(store_of(base), k, MEM_VALUE, NULL, 0);
}

int corral__mem_op_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms) {
    mem_store *s = store_of(base);
    if (ttl_ms <= 0) return CORRAL_EINVAL;
    mem_shard *sh = shard_of(s, k->hash);
    uint64_t now = clock_now(s);
    int rc = CORRAL_MISS;
    read_lock(s);
    shard_lock_at(sh, now);
    mem_entry *e = lookup_locked(sh, k, MEM_VALUE);
    if (e && is_expired(sh, e, now)) {
        corral__mem_remove_locked(s, sh, e, k->hash, CORRAL__EXPIRED);
    } else if (e) {
        uint64_t at = corral__mem_expiry_at(now, ttl_ms);
        shard_expiring_add_locked(sh, at != MEM_NEVER, has_expiry(e));
        mem_exp_set_locked(sh, e, at);
        rc = CORRAL_OK;
    }
    shard_unlock(sh);
    read_unlock(s);
    return rc;
}

/* incr reads the counter and allocates the new entry without the lock, then publishes it
 * only if the entry it read is still the key's entry with the value it read (the entry cannot
 * be freed and reused within one read-side section, and an overwrite in place moves its
 * value's generation); otherwise it tries again. */
int corral__mem_op_incr(corral__store *base, const corral__skey *k, int64_t delta, int64_t *out) {
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
        if (!e || is_expired(sh, e, now)) {
            if (e) corral__mem_reap_rcu(s, e, k->hash, now);
            rc = CORRAL_MISS;
            goto done;
        }
        /* A value with an envelope (tags, times) is not a plain integer. Read as get_into
         * reads: an overwrite in place may be rewriting it. */
        unsigned char digits[20];
        uint32_t gen = mem_gen_begin(e);
        size_t dl = mem_dlen(e);
        bool plain = mem_hlen(e) == 0 && dl <= sizeof digits;
        if (plain) mem_copy_out(digits, e->key + mem_klen(e), dl);
        if (mem_gen_retry(e, gen)) {
            rc = MEM_RETRY;
            goto done;
        }
        rc = plain ? parse_int64(digits, dl, &cur) : CORRAL_ENOTINT;
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
        rc = corral__mem_check_size(s, sh, k->len, (size_t)n, MEM_VALUE);
        if (rc != CORRAL_OK) goto done;
        ne = corral__mem_entry_new(s, k, MEM_VALUE, text, (size_t)n);
        if (!ne) {
            rc = CORRAL_ENOMEM;
            goto done;
        }
        shard_lock_at(sh, now);
        if (lookup_locked(sh, k, MEM_VALUE) == e && !is_expired(sh, e, now) &&
            (atomic_load_explicit(&e->val.refs, memory_order_relaxed) & ~CORRAL__REFS_COUNT) ==
                gen) {
            /* `e`'s expiry, in its parity: publish_locked re-encodes it if a rebase moved on */
            atomic_store_explicit(&ne->expiry,
                                  atomic_load_explicit(&e->expiry, memory_order_relaxed),
                                  memory_order_relaxed);
            publish_locked(s, sh, ne, e, k->hash, now);
            ne = NULL;
        } else {
            rc = MEM_RETRY;
        }
        shard_unlock(sh);
    done:
        read_unlock(s);
        corral__mem_entry_discard(ne);
        if (rc == MEM_RETRY) continue; /* another writer got there first */
        if (rc == CORRAL_OK && out) *out = next;
        limbo_check(s);
        return rc;
    }
}

int corral__mem_op_lease_acquire(corral__store *base, const corral__skey *k, const void *token,
                                 size_t token_len, int64_t ttl_ms) {
    mem_store *s = store_of(base);
    if (ttl_ms <= 0 || ttl_ms == CORRAL__NO_EXPIRY) return CORRAL_EINVAL; /* leases expire */
    return write_entry(s, k, MEM_LEASE, token, token_len, ttl_ms, CORRAL__SET_NX, NULL, NULL);
}

int corral__mem_op_lease_release(corral__store *base, const corral__skey *k, const void *token,
                                 size_t token_len) {
    static const char none[1];
    return remove_key(store_of(base), k, MEM_LEASE, token ? token : none, token_len);
}
