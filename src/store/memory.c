/*
 * memory.c - the embedded memory store: a bounded, sharded cache in process whose reads take no
 * lock. This file holds the entries, the table, the queues, the reads and the vtable;
 * memory_write.c the writes, memory_evict.c decides what leaves (expiry, eviction),
 * memory_rcu.c frees what left once no reader can see it, and memory_read.h is the read path,
 * inline. Design and measurements: docs/memory-store.md; eviction policies: docs/eviction.md.
 *
 * Data model
 * - One entry per key: one block (memory_block.h) holding the header (mem_entry, with the
 *   value's corral_value embedded, so a hit hands out the stored bytes), the key, the value
 *   and a NUL; it accounts for what that block costs (memory.h).
 * - Shards: the top bits of the low 32 bits of a key's hash pick its shard (shard_of). A
 *   shard owns a table of 2^n chain heads (the hash's low bits), a byte budget and the
 *   eviction queues of its entries. The table starts as the 16 heads inside the shard and
 *   doubles on the heap when the shard holds more entries than heads (docs/memory-store.md,
 *   "Tables that grow"). Values and leases are separate keyspaces: the lookup compares the
 *   entry's kind too. Entries keep no hash: code that reaches one without its key (a resize,
 *   eviction, expiry, clear) recomputes it from the stored key with the hash the store was
 *   opened with (mem_entry_hash, corral__mem_config.key_hash).
 *
 * Invariants (under the shard's lock)
 * - An entry is reachable from its bucket iff it is in exactly one queue of its shard iff it
 *   is MEM_KW_LIVE. A set that replaces an entry takes the old one out of its queue first and
 *   out of the table last, in the same store that links the new one.
 * - shard.used is the bytes of its queued entries and of its tables on the heap, never over
 *   shard.budget. Every change of the entries' part is reported through the events callback
 *   with the same byte count; the table's is not.
 * - An entry's key, kind and size never change once published. Its value changes only by an
 *   overwrite in place (memory_write.c, memory_read.h) while the table holds its only
 *   reference; otherwise a write publishes a new entry in one atomic store. A reader sees the
 *   old value or the new one, and a value handed out never changes.
 *
 * Locking and references
 * - Readers take no lock, inside a read-side section (reader.h): acquire loads down a chain,
 *   each entry's key length and kind compared before its key's bytes. One that finds nothing
 *   while a step of a resize moves entries of its shard walks again (mem_chain_retry), so a
 *   present key is never missed.
 * - Writers look their key up without the lock, then take their shard's (spin.h). It guards
 *   the chains, queues, cursors, ghost table, `used`, `expiring` and the expiry epochs (the
 *   bases' writes, the parity, the rebase's walk: "Expiry epochs" below). No thread holds two;
 *   the allocator and clock hooks are never called under one (docs/threads.md).
 * - Chains change only under the shard lock, by release stores; an unlinked entry keeps its
 *   `next`. A replaced table and a removed entry are freed after a grace period
 *   (memory_rcu.c), which drops the table's reference on the entry's value.
 */
#include "memory.h"
#include "memory_internal.h"
#include "../envelope.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MEM_DEFAULT_POLICY  CORRAL_EVICT_S3FIFO /* measured best: docs/eviction.md */
#define MEM_AUTO_SHARDS     16u
#define MEM_MIN_SHARD_BYTES ((size_t)1 << 20) /* automatic sharding keeps shards at least this */
#define MEM_SHARD_VALUES    4u   /* ... and able to hold this many of the largest values */
#define MEM_SMALL_PERCENT   10u  /* S3-FIFO: the small queue's share of a shard's budget */
#define MEM_MOVE_AHEAD      8u   /* a resize prefetches the chain this many heads on */
#define MEM_GHOST_BYTES     512u /* S3-FIFO: one ghost slot per this many budget bytes */
#define MEM_GHOST_MIN       64u
#define MEM_GHOST_MAX       ((size_t)1 << 20)

/* ---- Small helpers ---- */

size_t corral__mem_entry_bytes(size_t key_len, size_t val_len) {
    size_t n = mem_entry_bytes(key_len, val_len);
    return n > SIZE_MAX - MEM_FAR_HDR ? SIZE_MAX : n + MEM_FAR_HDR;
}

uint64_t corral__mem_expiry_at(uint64_t now, int64_t ttl_ms) {
    if (ttl_ms == CORRAL__NO_EXPIRY) return MEM_NEVER;
    uint64_t d, at;
    if (__builtin_mul_overflow((uint64_t)ttl_ms, (uint64_t)1000000, &d) ||
        __builtin_add_overflow(now, d, &at) || at == MEM_NEVER)
        return MEM_NEVER - 1;
    return at;
}

/* The reader's test of `e`, an entry of shard `sh`: reads the clock only when `e` has an
 * expiry, and then stores the time read in `*now` for the caller's later use. */
static bool is_expired_lazy(const mem_store *s, const mem_shard *sh, const mem_entry *e,
                            uint64_t *now) {
    uint32_t x = mem_exp_load(e);
    if (x == MEM_EXP_NEVER) return false;
    *now = clock_now(s);
    return mem_exp_passed(sh, x, *now);
}

static void report(const mem_store *s, const mem_entry *e, corral__change why, size_t bytes) {
    if (s->env.events.changed) s->env.events.changed(s->env.events.ctx, e->cls, why, bytes);
}

/* ---- Entries ---- */

/* A block for an entry of `n` bytes (mem_entry_bytes): a slot if it may be one and the region
 * has room, else a block of the heap whose mem_far names it. NULL when the allocator or the far
 * table refuses. */
static mem_entry *entry_alloc(mem_store *s, size_t n) {
    if (n <= s->blocks.slab_max) {
        mem_entry *e = corral__mem_slot_alloc(&s->blocks, n);
        if (e) return e; /* a slot: the region names it */
    }
    size_t a = far_block_bytes(n);
    char *p = a == SIZE_MAX ? NULL : corral__mem_heap_alloc(&s->blocks, a);
    if (!p) return NULL;
    mem_entry *e = (mem_entry *)(p + MEM_FAR_HDR);
    mem_far *f = (mem_far *)p;
    f->blocks = &s->blocks;
    f->name = corral__mem_far_new(e);
    if (!f->name) {
        corral__mem_heap_free(&s->blocks, p, a);
        return NULL;
    }
    return e;
}

void corral__mem_entry_free(mem_entry *e) {
    size_t n = entry_block_bytes(e);
    corral__value_kill(&e->val);
    if (corral__mem_in_region(e)) {
        corral__mem_slot_free(e, n);
        return;
    }
    mem_far *f = (mem_far *)(void *)((char *)e - MEM_FAR_HDR);
    corral__mem_far_free(f->name);
    corral__mem_heap_free(f->blocks, f, far_block_bytes(n));
}

mem_entry *corral__mem_entry_new(mem_store *s, const corral__skey *k, uint8_t kind, const void *val,
                                 size_t len) {
    mem_entry *e = entry_alloc(s, mem_entry_bytes(k->len, len));
    if (!e) return NULL;
    e->cls = k->cls;
    atomic_init(&e->kw, (uint16_t)(k->len | (kind == MEM_LEASE ? MEM_KW_LEASE : 0)));
    e->u.q.newer = e->u.q.older = 0;
    atomic_init(&e->next, 0);
    atomic_init(&e->expiry, MEM_EXP_NEVER);
    if (k->len) memcpy(e->key, k->data, k->len);
    unsigned char *data = e->key + k->len;
    if (len) memcpy(data, val, len);
    data[len] = '\0';
    /* A value's envelope header sits before the bytes handed out; leases are raw. */
    size_t hdr = kind == MEM_VALUE ? corral__env_hdr_len(data, len) : 0;
    corral__value_init(&e->val, len - hdr, CORRAL__RELEASE_MEM_ENTRY);
    e->val.hdr_len = (uint16_t)hdr; /* the envelope's length field is 16 bits */
    /* The store finds the entry's chain again by this hash (mem_entry_hash): the caller's must
     * be it. */
    assert(mem_entry_hash(s, e) == k->hash);
    return e;
}

/* Frees an entry that was never published. Accepts NULL. */
void corral__mem_entry_discard(mem_entry *e) {
    if (!e) return;
    CORRAL_CHECK_OBJ(&e->val, CORRAL_VALUE_MAGIC);
    assert(!mem_live(e));
    corral__mem_entry_free(e);
}

/* CORRAL_ETOOBIG when an entry of this size can never be held, CORRAL_OK otherwise. */
int corral__mem_check_size(const mem_store *s, const mem_shard *sh, size_t klen, size_t vlen,
                           uint8_t kind) {
    if (kind == MEM_VALUE && s->max_value_bytes && vlen > s->max_value_bytes) return CORRAL_ETOOBIG;
    /* mem_entry.kw holds 13 bits of key length, corral_value.len 32; keys are far shorter. */
    if (klen > MEM_KLEN_MAX || vlen > UINT32_MAX) return CORRAL_ETOOBIG;
    /* a slot's cost, or a far block's if the region has no room for it */
    size_t n = mem_entry_bytes(klen, vlen);
    size_t cost = corral__mem_heap_cost(&s->blocks, far_block_bytes(n));
    if (n <= s->blocks.slab_max)
        cost = CORRAL_MAX(cost, corral__mem_slab_cost(corral__mem_slab_class_of(n)));
    return cost > sh->budget ? CORRAL_ETOOBIG : CORRAL_OK;
}

/* ---- The table ---- */

/* The link to `e` in any chain of shard `sh`: the grown table's, then the unmoved buckets of the
 * current one. For an entry that is not in the chain of the hash it was reached by, which only
 * a caller that broke the hash's contract (store.h, skey.hash) makes: it is unlinked before it
 * is freed all the same, slowly. NULL when no chain holds it. */
static mem_link *link_scan_locked(mem_shard *sh, const mem_entry *e) {
    mem_table *to = grow_locked(sh), *t = table_locked(sh);
    size_t moved = to ? atomic_load_explicit(&sh->moved, memory_order_relaxed) : 0;
    const mem_table *tables[2] = { to, t };
    for (int i = 0; i < 2; i++) {
        if (!tables[i]) continue;
        for (uint64_t b = tables[i] == t ? moved : 0; b <= tables[i]->mask; b++) {
            for (mem_link *link = &tables[i]->heads[b];;) {
                mem_entry *cur = mem_deref(atomic_load_explicit(link, memory_order_relaxed));
                if (!cur) break;
                if (cur == e) return link;
                link = &cur->next;
            }
        }
    }
    return NULL;
}

/* The link (bucket head or an entry's `next`) that points at the LIVE entry `e` of key hash
 * `hash`: in its chain, or wherever link_scan_locked finds it; NULL when no chain holds it,
 * which the invariants exclude. */
static mem_link *link_of_locked(mem_shard *sh, const mem_entry *e, uint64_t hash) {
    mem_link *link = head_locked(sh, hash);
    for (;;) {
        mem_entry *cur = mem_deref(atomic_load_explicit(link, memory_order_relaxed));
        if (CORRAL_NEVER(cur == NULL)) return link_scan_locked(sh, e);
        if (cur == e) return link;
        link = &cur->next;
    }
}

/* Links the filled entry `e` at the head of its chain: readers see all of it or nothing. */
void corral__mem_table_insert_locked(mem_store *s, mem_shard *sh, mem_entry *e, uint64_t hash) {
    (void)s;
    mem_link *head = head_locked(sh, hash);
    atomic_store_explicit(&e->next, atomic_load_explicit(head, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(head, mem_ref_of(e), memory_order_release);
}

/* Puts the filled entry `e` where `old` is, in one store: a reader finds one or the other. */
void corral__mem_table_replace_locked(mem_store *s, mem_shard *sh, mem_entry *old, mem_entry *e,
                                      uint64_t hash) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_link *link = link_of_locked(sh, old, hash);
    if (CORRAL_NEVER(link == NULL)) {
        corral__mem_table_insert_locked(s, sh, e, hash);
        return;
    }
    atomic_store_explicit(&e->next, atomic_load_explicit(&old->next, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(link, mem_ref_of(e), memory_order_release);
}

/* Unlinks `e`, of key hash `hash`. Its own `next` stays, for readers standing on it. */
static void table_remove_locked(mem_shard *sh, mem_entry *e, uint64_t hash) {
    mem_link *link = link_of_locked(sh, e, hash);
    if (CORRAL_NEVER(link == NULL)) return;
    atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed),
                          memory_order_release);
}

/* ---- Resizes ---- */

/* Sets up `t` as an empty table of 2^bits heads at `heads`. Zeroed memory is an array of empty
 * heads (name 0) on every platform we build on (C11 leaves the representation of an atomic
 * integer open; we rely on it being the plain integer's). */
static void table_init(mem_table *t, mem_link *heads, unsigned bits) {
    t->heads = heads;
    t->mask = ((uint64_t)1 << bits) - 1;
    t->bits = bits;
    t->store = NULL;
    memset(heads, 0, ((size_t)1 << bits) * sizeof *heads);
}

/* Makes the resize sequence of `sh` odd, for a move of entries that readers may miss a key
 * during (mem_chain_retry); returns the even value it had. */
static uint32_t resize_begin_locked(mem_shard *sh) {
    CORRAL_ASSERT_HELD(&sh->lock);
    uint32_t rs = atomic_load_explicit(&sh->resize_seq, memory_order_relaxed);
    assert(!(rs & 1u));
    atomic_store_explicit(&sh->resize_seq, rs + 1, memory_order_relaxed);
    return rs;
}

static void resize_end_locked(mem_shard *sh, uint32_t rs) {
    atomic_store_explicit(&sh->resize_seq, rs + 2, memory_order_release);
}

/* Moves the entries of buckets [first, until) of table `src` onto their chains in `dst`, each
 * by its key's hash, recomputed (mem_entry_hash). Each entry is unlinked from its old head and
 * pushed onto its new chain, so a reader standing on any entry follows an acyclic chain, of
 * the old table or the new one, and ends. Every link store is a release, so a reader that sees
 * one sees the odd sequence of the move. Under the shard's lock, inside resize_begin_locked
 * and resize_end_locked. */
static void chains_move_locked(const mem_store *s, mem_table *src, size_t first, size_t until,
                               mem_table *dst) {
    for (size_t i = first; i < until; i++) {
        /* The entries are cold: the chain a few heads on is fetched while this one moves (the
         * move reads an entry's `next`, its first slot, and its key, which the hash needs). */
        if (i + MEM_MOVE_AHEAD < until) {
            mem_entry *ahead = mem_deref(
                atomic_load_explicit(&src->heads[i + MEM_MOVE_AHEAD], memory_order_relaxed));
            if (ahead) {
                __builtin_prefetch(&ahead->next, 1);
                __builtin_prefetch(ahead->key);
            }
        }
        mem_link *head = &src->heads[i];
        mem_ref r;
        while ((r = atomic_load_explicit(head, memory_order_relaxed))) {
            mem_entry *e = mem_deref(r);
            mem_link *to = &dst->heads[mem_entry_hash(s, e) & dst->mask];
            atomic_store_explicit(head, atomic_load_explicit(&e->next, memory_order_relaxed),
                                  memory_order_release);
            atomic_store_explicit(&e->next, atomic_load_explicit(to, memory_order_relaxed),
                                  memory_order_release);
            atomic_store_explicit(to, r, memory_order_release);
        }
    }
}

/* Charges the shard for its tables' new cost `cost` (0: the home table alone) in place of the
 * old. */
static void table_charge_locked(mem_shard *sh, size_t cost) {
    CORRAL_ASSERT_HELD(&sh->lock);
    size_t had = atomic_load_explicit(&sh->table_bytes, memory_order_relaxed);
    size_t used = atomic_load_explicit(&sh->used, memory_order_relaxed);
    assert(used >= had);
    used = used - had + cost;
    assert(used <= sh->budget);
    atomic_store_explicit(&sh->used, used, memory_order_relaxed);
    atomic_store_explicit(&sh->table_bytes, cost, memory_order_relaxed);
}

/* What table `t` costs the shard: nothing for its home table. */
static size_t table_cost(const mem_store *s, const mem_shard *sh, const mem_table *t) {
    return t == &sh->home ? 0 : corral__mem_block_cost_at(&s->blocks, t, mem_table_bytes(t->bits));
}

/* Ends the resize of `sh` whose every bucket moved (inside its odd sequence): `grow` becomes
 * the table, the old one is retired and leaves the charge. `moved` goes back to 0 in the same
 * window, so a reader never pairs `grow == NULL` with a count of another resize. */
static void resize_finish_locked(mem_store *s, mem_shard *sh) {
    mem_table *old = table_locked(sh), *t = grow_locked(sh);
    atomic_store_explicit(&sh->table, t, memory_order_release);
    atomic_store_explicit(&sh->grow, NULL, memory_order_release);
    atomic_store_explicit(&sh->moved, 0, memory_order_release);
    table_charge_locked(sh, table_cost(s, sh, t));
    if (old != &sh->home) corral__mem_table_retire(s, old);
}

void corral__mem_table_step_locked(mem_store *s, mem_shard *sh) {
    mem_table *t = table_locked(sh), *to = grow_locked(sh);
    assert(to != NULL);
    size_t first = atomic_load_explicit(&sh->moved, memory_order_relaxed);
    size_t until = CORRAL_MIN(first + MEM_RESIZE_STEP, (size_t)t->mask + 1);
    uint32_t rs = resize_begin_locked(sh);
    chains_move_locked(s, t, first, until, to);
    atomic_store_explicit(&sh->moved, until, memory_order_release);
    if (until == t->mask + 1) resize_finish_locked(s, sh);
    resize_end_locked(sh, rs);
}

void corral__mem_table_grow(mem_store *s, mem_shard *sh, unsigned bits) {
    size_t bytes = mem_table_bytes(bits);
    mem_table *to = corral__mem_block_alloc(&s->blocks, bytes);
    if (!to) return;
    table_init(to, (mem_link *)(to + 1), bits);
    uint64_t now = clock_now(s);
    read_lock(s);
    shard_lock(sh);
    size_t cost = corral__mem_block_cost_at(&s->blocks, to, bytes);
    mem_table *from = table_locked(sh);
    bool start = from->bits + 1 == bits && !grow_locked(sh); /* no other writer grew it first */
    if (start) corral__mem_make_room_locked(s, sh, cost, now);
    /* and eviction did not send it home (it starts no resize): both tables are charged while
     * the resize runs */
    if (start && table_locked(sh) == from) {
        table_charge_locked(sh, table_cost(s, sh, from) + cost);
        /* No entry moves yet, so no odd sequence: a reader that sees `grow` sees `moved` at 0
         * (0 since the last resize ended; acquire of `grow`, then of `moved`) and walks the
         * old table, where every chain still is. */
        assert(atomic_load_explicit(&sh->moved, memory_order_relaxed) == 0);
        atomic_store_explicit(&sh->grow, to, memory_order_release);
        corral__mem_table_step_locked(s, sh);
        to = NULL;
    }
    shard_unlock(sh);
    read_unlock(s);
    corral__mem_block_free_unkept(&s->blocks, to, bytes);
}

bool corral__mem_table_home_locked(mem_store *s, mem_shard *sh) {
    mem_table *from = table_locked(sh), *to = grow_locked(sh);
    if (from == &sh->home && !to) return false;
    /* Every entry in a table is in a queue: with none queued, every chain is empty and there
     * is nothing to move (the home table's heads are NULL too). */
    assert(corral__mem_shard_count_locked(sh) == 0);
    uint32_t rs = resize_begin_locked(sh);
    atomic_store_explicit(&sh->table, &sh->home, memory_order_release);
    atomic_store_explicit(&sh->grow, NULL, memory_order_release);
    atomic_store_explicit(&sh->moved, 0, memory_order_release);
    table_charge_locked(sh, 0);
    resize_end_locked(sh, rs);
    if (from != &sh->home) corral__mem_table_retire(s, from);
    if (to) corral__mem_table_retire(s, to);
    return true;
}

size_t corral__mem_table_bytes(corral__store *base) {
    mem_store *s = store_of(base);
    size_t n = 0;
    for (unsigned i = 0; i < s->nshards; i++)
        n += atomic_load_explicit(&s->shards[i].table_bytes, memory_order_relaxed);
    return n;
}

/* ---- Expiry epochs ----
 * A shard's expiries count from one of its two bases (memory_read.h, "Expiry"); new ones from
 * exp_cur's. A write under the shard lock that finds that base more than MEM_EXP_REBASE_AFTER
 * old starts a rebase: the other base becomes the time MEM_EXP_MARGIN before now (whole
 * seconds), exp_cur flips, and a walk re-encodes every entry that still carries the old parity
 * (mem_exp_current_locked: exact, the bases are whole seconds apart). The walk goes through
 * each queue from its head to its tail by the queue's `walk` cursor, which an unlink or a
 * replace keeps valid as they keep `scan`; each later write under the lock re-encodes
 * MEM_EXP_WALK_STEP entries of it (MEM_LOCK_BATCH once the next rebase is due), so no write
 * pays for the shard's entries. An entry pushed into a queue meanwhile (a new one, an LRU hit,
 * an S3-FIFO promotion or reinsertion) is re-encoded as it goes in and lands at the head,
 * behind the cursor: the walk misses no queued entry, and what it has left only shrinks, so it
 * ends after the shard's entries at its start / MEM_EXP_WALK_STEP writes, however many hits
 * move entries meanwhile. While a walk runs, every write reads the clock (memory_write.c), so
 * its end has a time.
 *
 * A base is overwritten only when no entry can still be decoded against it: the next rebase
 * waits until the walk has ended and MEM_EXP_MARGIN (a day) has passed since (exp_walk_end).
 * An entry that left the queues before the walk reached it (removed, in the limbo) or an
 * expiry a reader loaded before the walk re-encoded it keeps the old parity; a day later its
 * grace period has long ended and the reader has long decoded it, since no read-side section
 * lasts a day. A rebase that waits leaves new expiries counted from an older base: past 12.4
 * days of it they are rounded up to the second (never early), until the rebase comes. It is on
 * time when the walk ends within about four days of its start (a 16th of the shard's entries
 * in writes by then).
 *
 * Per shard, not per store: the walk runs under the shard's lock on its queues, so one rebase
 * for the store would need the writes of any shard to drive every shard's walk, taking other
 * shards' locks (and a store-wide flag each write checks). Per shard, each shard's writes
 * drive its own walk, a shard without expiring entries rebases without one, and a hit finds the
 * bases on the line it loaded for the shard's table. */
#define MEM_EXP_WALK_STEP 16u /* entries a write re-encodes of a walk under way */

/* Re-encodes up to `n` entries of the walk under way in shard `sh`; ends it at the last. */
static void epoch_walk_locked(mem_shard *sh, size_t n) {
    CORRAL_ASSERT_HELD(&sh->lock);
    unsigned qi = atomic_load_explicit(&sh->exp_walk_q, memory_order_relaxed);
    while (n && qi < MEM_QUEUES) {
        mem_queue *q = &sh->q[qi];
        mem_entry *e = q->walk;
        if (!e) { /* past the tail: the next queue, from its head */
            if (++qi < MEM_QUEUES) sh->q[qi].walk = sh->q[qi].head;
            atomic_store_explicit(&sh->exp_walk_q, (uint8_t)qi, memory_order_relaxed);
            continue;
        }
        q->walk = q_older(e);
        mem_exp_current_locked(sh, e);
        n--;
    }
}

void corral__mem_epoch_step_locked(mem_shard *sh, uint64_t now) {
    CORRAL_ASSERT_HELD(&sh->lock);
    unsigned cur = sh->exp_cur;
    bool due = epoch_due(sh, now);
    if (shard_walking(sh)) {
        /* Every write reads the clock while a walk runs (memory_write.c), so its end has a
         * time, but for a clock stepped back past the epoch (clock_now 0): MEM_NEVER, which
         * the next due write replaces with its time, a day before the rebase. */
        epoch_walk_locked(sh, due ? MEM_LOCK_BATCH : MEM_EXP_WALK_STEP);
        if (!shard_walking(sh)) sh->exp_walk_end = now ? now : MEM_NEVER;
        return;
    }
    if (!due) return;
    if (sh->exp_walk_end == MEM_NEVER) {
        sh->exp_walk_end = now;
        return;
    }
    if (now < sh->exp_walk_end || now - sh->exp_walk_end < MEM_EXP_MARGIN) return;
    /* now > MEM_EXP_REBASE_AFTER > MEM_EXP_MARGIN: no wrap */
    uint64_t base = now / MEM_SEC * MEM_SEC - MEM_EXP_MARGIN;
    atomic_store_explicit(&sh->exp_base[!cur], base, memory_order_relaxed);
    sh->exp_cur = (uint8_t)!cur;
    if (shard_expiring(sh) == 0) { /* no queued entry carries a parity */
        sh->exp_walk_end = now;
        return;
    }
    sh->q[0].walk = sh->q[0].head;
    atomic_store_explicit(&sh->exp_walk_q, 0, memory_order_relaxed);
}

/* ---- Queues ---- */

void corral__mem_queue_push_locked(mem_shard *sh, unsigned qi, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[qi];
    mem_kw_set(e, MEM_KW_SMALL, qi == MEM_SMALL ? MEM_KW_SMALL : 0);
    mem_exp_current_locked(sh, e); /* where a rebase's walk may have passed (memory.c) */
    e->u.q.newer = 0;
    e->u.q.older = mem_ref_of(q->head);
    if (q->head)
        q->head->u.q.newer = mem_ref_of(e);
    else
        q->tail = e;
    q->head = e;
    q->bytes += entry_bytes(sh->blocks, e);
    q->count++;
}

/* Takes `e` out of its queue. The SIEVE hand and the expiry cursor that pointed at it move to
 * its newer neighbour, a rebase's walk to its older one, as each would have next. */
void corral__mem_queue_unlink_locked(mem_shard *sh, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[mem_queue_of(e)];
    mem_entry *newer = q_newer(e), *older = q_older(e);
    if (q->hand == e) q->hand = newer;
    if (q->scan == e) q->scan = newer;
    if (q->walk == e) q->walk = older;
    if (newer)
        newer->u.q.older = e->u.q.older;
    else
        q->head = older;
    if (older)
        older->u.q.newer = e->u.q.newer;
    else
        q->tail = newer;
    e->u.q.newer = e->u.q.older = 0;
    size_t bytes = entry_bytes(sh->blocks, e);
    assert(q->bytes >= bytes && q->count > 0);
    q->bytes -= bytes;
    q->count--;
}

void corral__mem_queue_replace_locked(mem_shard *sh, mem_entry *old, mem_entry *e) {
    CORRAL_ASSERT_HELD(&sh->lock);
    mem_queue *q = &sh->q[mem_queue_of(old)];
    mem_kw_set(e, MEM_KW_SMALL, mem_kw(old) & MEM_KW_SMALL);
    mem_exp_current_locked(sh, e);
    mem_entry *newer = q_newer(old), *older = q_older(old);
    mem_ref r = mem_ref_of(e);
    e->u.q.newer = old->u.q.newer;
    e->u.q.older = old->u.q.older;
    if (newer)
        newer->u.q.older = r;
    else
        q->head = e;
    if (older)
        older->u.q.newer = r;
    else
        q->tail = e;
    if (q->hand == old) q->hand = e;
    if (q->scan == old) q->scan = e;
    if (q->walk == old) q->walk = e;
    old->u.q.newer = old->u.q.older = 0;
    size_t bytes = entry_bytes(sh->blocks, old);
    assert(q->bytes >= bytes);
    q->bytes = q->bytes - bytes + entry_bytes(sh->blocks, e);
}

size_t corral__mem_shard_count_locked(mem_shard *sh) {
    CORRAL_ASSERT_HELD(&sh->lock);
    return sh->q[MEM_MAIN].count + sh->q[MEM_SMALL].count;
}

/* ---- Accounting and removal ---- */

/* Counts `e` in (ADDED) or out (any other change) of the shard and reports it. */
void corral__mem_account_locked(mem_store *s, mem_shard *sh, mem_entry *e, corral__change why) {
    CORRAL_ASSERT_HELD(&sh->lock);
    size_t used = atomic_load_explicit(&sh->used, memory_order_relaxed);
    size_t bytes = entry_bytes(sh->blocks, e);
    bool expires = has_expiry(e);
    if (why == CORRAL__ADDED) {
        used += bytes;
        shard_expiring_add_locked(sh, expires, 0);
        assert(used <= sh->budget);
    } else {
        assert(used >= bytes);
        used -= bytes;
        shard_expiring_add_locked(sh, 0, expires);
    }
    atomic_store_explicit(&sh->used, used, memory_order_relaxed);
    report(s, e, why, bytes);
}

/* Removes a LIVE entry of shard `sh`, of key hash `hash`: table, queue, bytes, event, RCU. */
void corral__mem_remove_locked(mem_store *s, mem_shard *sh, mem_entry *e, uint64_t hash,
                               corral__change why) {
    CORRAL_ASSERT_HELD(&sh->lock);
    CORRAL_CHECK_OBJ(&e->val, CORRAL_VALUE_MAGIC);
    assert(mem_live(e));
    table_remove_locked(sh, e, hash);
    corral__mem_queue_unlink_locked(sh, e);
    corral__mem_account_locked(s, sh, e, why);
    corral__mem_entry_retire(s, e);
}

/* ---- Hits ---- */

/* Marks a hit on `e`, an entry of shard `sh`, without a lock: SIEVE's visited bit (hit_max 1)
 * or S3-FIFO's frequency (hit_max 3). The store happens only when the mark changes, so a hot
 * entry's line is written once or three times per pass of the evictor, not on every hit.
 * Inline: it is on every hit's path. */
static inline void note_hit_rcu(mem_store *s, mem_shard *sh, mem_entry *e) {
    if (s->policy == CORRAL_EVICT_LRU) {
        corral__mem_lru_touch_rcu(sh, e);
        return;
    }
    uint8_t h = mem_hits(e);
    if (h < s->hit_max) mem_set_hits(e, (uint8_t)(h + 1));
}

/* mem_value_ref_rcu's copy of a value whose count is full: its lengths and bytes read between
 * two looks at its generation, as a get_into copies them (memory_read.h, "Overwrites in
 * place"), then made a standalone value. Rare: 16 million references held on one value. */
corral_value *corral__mem_value_copy_rcu(mem_store *s, mem_entry *e) {
    const corral__allocator *a = s->env.alloc;
    for (unsigned i = 0;; i++) {
        uint32_t gen = mem_gen_begin(e);
        size_t hdr = mem_hlen(e), n = hdr + mem_dlen(e);
        if (mem_gen_retry(e, gen)) continue; /* lengths of two versions */
        unsigned char *buf = corral__alloc(a, n ? n : 1);
        if (!buf) return NULL;
        mem_copy_out(buf, e->key + mem_klen(e), n);
        bool torn = mem_gen_retry(e, gen);
        corral_value *v = torn ? NULL : corral__value_new_env(a, buf, hdr, n - hdr);
        corral__free(a, buf, n ? n : 1);
        if (torn) {
            mem_spin(i);
            continue;
        }
        return v; /* NULL: the allocator failed */
    }
}

/* ---- The vtable ---- */

/* get inside a read-side section the caller holds (mem_get, mem_get_many). */
static int get_rcu(mem_store *s, const corral__skey *k, corral_value **out) {
    *out = NULL;
    uint64_t now = 0;
    mem_shard *sh = shard_of(s, k->hash);
    mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
    if (e && is_expired_lazy(s, sh, e, &now)) {
        corral__mem_reap_rcu(s, e, k->hash, now);
    } else if (e) {
        note_hit_rcu(s, sh, e);
        *out = mem_value_ref_rcu(s, e);
        return *out ? CORRAL_OK : CORRAL_ENOMEM;
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
 * read-side section covers the batch, so the tables it prefetches from stay allocated. */
static int mem_get_many(corral__store *base, const corral__skey *ks, size_t n, corral_value **out) {
    mem_store *s = store_of(base);
    read_lock(s);
    for (size_t i = 0; i < n; i += MEM_PREFETCH_GROUP) {
        size_t m = CORRAL_MIN(n - i, (size_t)MEM_PREFETCH_GROUP);
        for (size_t j = 0; j < m; j++) {
            const mem_table *t =
                atomic_load_explicit(&shard_of(s, ks[i + j].hash)->table, memory_order_acquire);
            __builtin_prefetch(&t->heads[ks[i + j].hash & t->mask]);
        }
        for (size_t j = 0; j < m; j++) {
            uint32_t rs;
            const mem_entry *e = mem_chain_rcu(shard_of(s, ks[i + j].hash), ks[i + j].hash, &rs);
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
    mem_shard *sh = shard_of(s, k->hash);
    mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
    if (e && is_expired_lazy(s, sh, e, &now)) {
        corral__mem_reap_rcu(s, e, k->hash, now);
    } else if (e) {
        note_hit_rcu(s, sh, e);
        /* Copied again if an overwrite in place ran (memory_read.h). Checked twice: after the
         * lengths, since the payload starts h bytes in and h of one version with n of another
         * can reach past the block; and after the copy, as any seqlock. */
        for (;;) {
            uint32_t gen = mem_gen_begin(e);
            n = mem_dlen(e);
            h = mem_hlen(e);
            if (mem_gen_retry(e, gen)) continue;
            /* corral__value_data, from the lengths of one version */
            const unsigned char *data = e->key + mem_klen(e) + h;
            if (h && h <= hdr_cap) mem_copy_out(hdr, data - h, h);
            rc = n > cap ? CORRAL_ENOSPC : CORRAL_OK;
            if (rc == CORRAL_OK && n) mem_copy_out(buf, data, n);
            if (!mem_gen_retry(e, gen)) break;
        }
    }
    read_unlock(s);
    *len = n;
    *hdr_len = h;
    return rc;
}

static int mem_clear(corral__store *base) {
    mem_store *s = store_of(base);
    for (unsigned i = 0; i < s->nshards; i++) {
        mem_shard *sh = &s->shards[i];
        /* Bounded work per lock hold; entries written while clear runs may survive it. */
        size_t todo = SIZE_MAX;
        while (todo) {
            size_t n = 0;
            read_lock(s);
            shard_lock(sh);
            if (todo == SIZE_MAX) todo = corral__mem_shard_count_locked(sh);
            for (unsigned qi = 0; qi < MEM_QUEUES; qi++) {
                while (n < MEM_LOCK_BATCH && n < todo && sh->q[qi].tail) {
                    mem_entry *e = sh->q[qi].tail;
                    corral__mem_remove_locked(s, sh, e, mem_entry_hash(s, e), CORRAL__DELETED);
                    n++;
                }
            }
            shard_unlock(sh);
            read_unlock(s);
            todo = n ? todo - n : 0;
        }
        /* An emptied shard gives its table's bytes back. */
        read_lock(s);
        shard_lock(sh);
        if (corral__mem_shard_count_locked(sh) == 0) corral__mem_table_home_locked(s, sh);
        shard_unlock(sh);
        read_unlock(s);
    }
    return CORRAL_OK;
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
    for (unsigned i = 0; i < shards_inited; i++) {
        mem_shard *sh = &s->shards[i];
        mem_table *t = atomic_load_explicit(&sh->table, memory_order_relaxed);
        if (t != &sh->home) corral__mem_block_free_unkept(&s->blocks, t, mem_table_bytes(t->bits));
        t = atomic_load_explicit(&sh->grow, memory_order_relaxed);
        if (t) corral__mem_block_free_unkept(&s->blocks, t, mem_table_bytes(t->bits));
        corral__free(a, sh->ghost, (sh->ghost_mask + 1) * sizeof *sh->ghost);
        corral__spin_deinit(&sh->lock);
    }
    corral__free(a, s->shards, (size_t)s->nshards * sizeof *s->shards);
    corral__mem_blocks_destroy(&s->blocks);
    s->magic = 0;
    corral__free(a, s, sizeof *s);
}

static void mem_close(corral__store *base) {
    if (!base) return;
    mem_store *s = store_of(base);
    /* Slabs emptied by the close stay resident, for the depot (memory_block.c). */
    corral__mem_blocks_keep_emptied(&s->blocks);
    /* No other thread uses the store now and every handed-out value has been released, so no
     * reader can see an entry: each live one (each is in a queue) drops the table's reference
     * at once, without a grace period. Close reports no events: the handle's gauges die with
     * it. */
    for (unsigned i = 0; i < s->nshards; i++) {
        for (unsigned qi = 0; qi < MEM_QUEUES; qi++) {
            mem_entry *e = s->shards[i].q[qi].head;
            while (e) {
                CORRAL_CHECK_OBJ(&e->val, CORRAL_VALUE_MAGIC);
                mem_entry *older = q_older(e);
                mem_kw_set(e, MEM_KW_LIVE, 0);
                corral_value_unref(&e->val); /* frees `e` */
                e = older;
            }
        }
    }
    corral__mem_wait_rcu_idle(s); /* entries removed before close are freed after this */
    store_free(s, s->nshards, true);
}

/* The store's expiry of a key: the ms left, or CORRAL__NO_EXPIRY (store.h). Rounded down, at
 * least 1: the expiry was rounded up to its unit (memory_read.h), so right after a set of an
 * expiry in ms this is the TTL set, never more. */
static int mem_ttl(corral__store *base, const corral__skey *k, int64_t *ttl_ms) {
    mem_store *s = store_of(base);
    uint64_t now = clock_now(s);
    int rc = CORRAL_MISS;
    read_lock(s);
    const mem_entry *e = lookup_rcu(s, k, MEM_VALUE);
    const mem_shard *sh = shard_of(s, k->hash);
    uint32_t x = e ? mem_exp_load(e) : MEM_EXP_NEVER;
    uint64_t at = e && x != MEM_EXP_NEVER ? mem_exp_ns(sh, x) : MEM_NEVER;
    if (e && now < at) {
        *ttl_ms = at == MEM_NEVER ? CORRAL__NO_EXPIRY
                                  : (int64_t)CORRAL_MAX((at - now) / MEM_MS, (uint64_t)1);
        rc = CORRAL_OK;
    }
    read_unlock(s);
    return rc;
}

static const corral__store_ops mem_ops = {
    .name = "mem",
    .get = mem_get,
    .get_into = mem_get_into,
    .set = corral__mem_op_set,
    .del = corral__mem_op_del,
    .touch = corral__mem_op_touch,
    .ttl = mem_ttl,
    .incr = corral__mem_op_incr,
    .clear = mem_clear,
    .get_many = mem_get_many,
    .set_many = corral__store_set_many,
    .del_many = corral__store_del_many,
    .lease_acquire = corral__mem_op_lease_acquire,
    .lease_release = corral__mem_op_lease_release,
    .used_bytes = mem_used_bytes,
    .max_bytes = mem_max_bytes,
    .close = mem_close,
};

/* ---- Open ---- */

static unsigned choose_shards(const corral__mem_config *cfg) {
    if (cfg->shards) return CORRAL_MIN(cfg->shards, MEM_MAX_SHARDS);
    unsigned n = MEM_AUTO_SHARDS;
    while (n > 1 &&
           (cfg->max_bytes / n < MEM_MIN_SHARD_BYTES ||
            (cfg->max_value_bytes && cfg->max_bytes / n / MEM_SHARD_VALUES < cfg->max_value_bytes)))
        n /= 2;
    return n;
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
 * (libc's allocator: memory_block.h), a share of the store's fixed structures (the ghost
 * tables, the shards with their home tables), at most half of max_bytes in all (only stores of
 * a few KiB reach that cap). With allocator hooks, the budgets bound the entries' bytes and the
 * tables on the heap alone; either way a shard's table on the heap counts in its `used`. */
static size_t shard_budget(const mem_store *s, size_t max_bytes, unsigned nshards,
                           corral_eviction policy) {
    if (!s->blocks.real_cost) return max_bytes / nshards;
    size_t ghost =
        policy == CORRAL_EVICT_S3FIFO ? ghost_slots(max_bytes / nshards) * sizeof(uint32_t) : 0;
    size_t fixed = (size_t)nshards * corral__mem_heap_cost(&s->blocks, ghost) +
                   corral__mem_heap_cost(&s->blocks, (size_t)nshards * sizeof(mem_shard)) +
                   corral__mem_heap_cost(&s->blocks, sizeof(mem_store));
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
    s->key_hash = cfg->key_hash ? cfg->key_hash : corral__key_hash_of;
    s->key_hash_ctx = cfg->key_hash_ctx;
    const corral__keyscheme *ks = cfg->key_hash_ctx;
    s->hot_ks = s->key_hash == corral__key_hash_of && ks && ks->hot ? ks : NULL;
    uint64_t opened = env->now_ns(env->clock_ctx);
    s->epoch_ns = opened > MEM_EXP_MARGIN ? opened - MEM_EXP_MARGIN : 0;
    s->policy = policy;
    s->hit_max = hit_max_of(policy);
    s->max_bytes = cfg->max_bytes;
    s->max_value_bytes = cfg->max_value_bytes;
    s->nshards = nshards;
    corral__mem_blocks_init(&s->blocks, env->alloc, cfg->max_bytes);
    size_t budget = shard_budget(s, cfg->max_bytes, nshards, policy);
    atomic_init(&s->reclaim_next, 0);
    atomic_init(&s->rcu_pending, 0);
    atomic_init(&s->limbo, 0);
    atomic_init(&s->limbo_bytes, 0);
    atomic_init(&s->limbo_helping, false);
    atomic_init(&s->limbo_helps, 0);
    s->limbo_max = CORRAL_MAX(cfg->max_bytes / MEM_LIMBO_DIV, MEM_LIMBO_MIN);
    atomic_init(&s->flush_queued, false);
    /* liburcu's call_rcu thread, which its first call_rcu would create under a shard lock. */
    (void)get_default_call_rcu_data();
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
        sh->blocks = &s->blocks;
        sh->small_budget = sh->budget / 100 * MEM_SMALL_PERCENT;
        atomic_init(&sh->used, 0);
        atomic_init(&sh->table_bytes, 0);
        atomic_init(&sh->expiring, 0);
        atomic_init(&sh->resize_seq, 0);
        atomic_init(&sh->exp_base[0], 0); /* the epoch: every expiry is after it */
        atomic_init(&sh->exp_base[1], 0);
        sh->exp_cur = 0;
        atomic_init(&sh->exp_walk_q, MEM_QUEUES);
        sh->exp_walk_end = 0;
        table_init(&sh->home, sh->home_heads, MEM_HOME_BITS);
        atomic_init(&sh->table, &sh->home);
        atomic_init(&sh->grow, NULL);
        atomic_init(&sh->moved, 0);
        if (policy == CORRAL_EVICT_S3FIFO) {
            size_t slots = ghost_slots(sh->budget);
            sh->ghost = corral__calloc(env->alloc, slots, sizeof *sh->ghost);
            if (!sh->ghost) goto fail;
            sh->ghost_mask = slots - 1;
        }
        corral__spin_init(&sh->lock);
    }
    *out = &s->base;
    return CORRAL_OK;
fail:
    store_free(s, inited, sync_inited);
    return CORRAL_ENOMEM;
}
