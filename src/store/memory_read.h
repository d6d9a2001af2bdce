/*
 * memory_read.h - the memory store's read path, inline: the layout of its table and entries,
 * and corral__mem_get_into_hot and corral__mem_get_hot, which corral.c compiles into
 * corral_get_into and corral_get. memory*.c (the rest of the store) include it for the types.
 *
 * Why a header: a get's instruction count decides how many gets the CPU overlaps while each
 * waits for memory (docs/eviction.md, "What bounds a get"). As a call from corral.c into
 * memory.c, the read path paid two frames, eight arguments and a third call for the metrics;
 * inline, the handle's checks, the lookup, the copy and the hit's count are one function.
 */
#ifndef CORRAL_STORE_MEMORY_READ_H
#define CORRAL_STORE_MEMORY_READ_H

#include "store.h"
#include "memory_block.h"
#include "reader.h"
#include "../key_hot.h"
#include "../spin.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <urcu-bp.h> /* call_rcu's struct rcu_head, in mem_entry */

#if defined(__SANITIZE_THREAD__)
#define MEM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MEM_TSAN 1
#endif
#endif
#ifdef MEM_TSAN
#include <sanitizer/tsan_interface.h>
#define MEM_TSAN_RELEASE(p) __tsan_release(p)
#define MEM_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define MEM_TSAN_RELEASE(p) ((void)(p))
#define MEM_TSAN_ACQUIRE(p) ((void)(p))
#endif

#define MEM_STORE_MAGIC 0x3e3057a5u
#define MEM_NEVER       UINT64_MAX /* the expiry, in the store's ns, of what never expires */

/* ---- Types ---- */

enum { MEM_VALUE = 0, MEM_LEASE = 1 }; /* an entry's kind: the two keyspaces */
enum { MEM_MAIN = 0, MEM_SMALL = 1, MEM_QUEUES = 2 };

/* mem_entry.kw: the key's length and kind (immutable), the queue and whether the entry is in the
 * table (both under the shard lock). One word, so the header stays small and a lookup
 * compares the length and the kind at once. */
#define MEM_KLEN_MAX CORRAL__MEM_KLEN_MASK /* keys are at most 4 KiB (key.h); longer: refused */
#define MEM_KW_LEASE 0x2000u               /* kind MEM_LEASE */
#define MEM_KW_SMALL 0x4000u               /* in queue MEM_SMALL, else MEM_MAIN */
/* In the table: set when published, cleared when removed (before it, and after, the entry is
 * no reader's concern: not yet findable, or waiting for a grace period). */
#define MEM_KW_LIVE 0x8000u

typedef struct mem_store mem_store;

/* ---- Expiry: 32 bits an entry ----
 * The store keeps its own time: ns since its epoch, MEM_EXP_MARGIN before the env clock's time
 * at corral__mem_open (clock_now). The margin keeps a clock stepped back by less than a day
 * after the open (NTP) reading correct times; one stepped back further reads 0 until it is
 * past the epoch again.
 *
 * An entry's expiry (mem_entry.expiry) is 32 bits relative to one of its shard's two epoch
 * bases (mem_shard.exp_base, whole seconds of the store's time): bit 31 the parity p that
 * picks base[p], bit 30 the unit, bits 0..29 the count past base[p], always rounded up. Whole
 * ms while the expiry is under 2^30 ms (12.4 days) past the base, whole seconds beyond (up to
 * MEM_EXP_COUNT_LAST s, 34 years): an entry expires when asked or up to one unit later, never
 * earlier. A shard's writes keep its newer base about MEM_EXP_REBASE_AFTER (2^29 ms, 6.2
 * days) old (memory.c, "Expiry epochs"), so an expiry up to 6.2 days away is exact to the ms,
 * and only one further away may be rounded up to the second; in a shard with too few writes
 * for its rebase to come on time, that horizon shrinks while it waits. An expiry
 * beyond the last count is stored as the last count, the one case that expires early: a TTL
 * of more than 34 years. MEM_EXP_NEVER is no count of either parity. */
#define MEM_EXP_NEVER      UINT32_MAX          /* mem_entry.expiry of an entry that never expires */
#define MEM_EXP_PARITY     0x80000000u         /* the base the count is relative to: exp_base[1] */
#define MEM_EXP_SECS       0x40000000u         /* the count is of seconds, not ms */
#define MEM_EXP_COUNT      0x3fffffffu         /* the count's bits */
#define MEM_EXP_COUNT_LAST (MEM_EXP_COUNT - 1) /* the furthest count of either unit */
#define MEM_MS             UINT64_C(1000000)
#define MEM_SEC            UINT64_C(1000000000)
/* A write that finds its shard's newer base older than this starts a rebase (memory.c). */
#define MEM_EXP_REBASE_AFTER (((uint64_t)1 << 29) * MEM_MS)
#define MEM_EXP_MARGIN       (UINT64_C(86400) * MEM_SEC) /* the epoch before the open; bases */

/* The parity (0 or 1) of the expiry `x` (not MEM_EXP_NEVER). */
static inline unsigned mem_exp_parity(uint32_t x) {
    return x >> 31;
}

/* The time, in the store's ns, of the expiry `x` (not MEM_EXP_NEVER) against `base`, the base
 * of its parity. */
static inline uint64_t mem_exp_decode(uint32_t x, uint64_t base) {
    uint64_t n = x & MEM_EXP_COUNT;
    return base + n * ((x & MEM_EXP_SECS) ? MEM_SEC : MEM_MS);
}

/* The expiry of the store's time `at` (MEM_NEVER: MEM_EXP_NEVER) with parity `p` against
 * `base`, the base of that parity, rounded up to its unit. A time before the base is the
 * base's. */
static inline uint32_t mem_exp_encode(uint64_t at, unsigned p, uint64_t base) {
    if (at == MEM_NEVER) return MEM_EXP_NEVER;
    uint64_t d = at > base ? at - base : 0;
    uint32_t x = p ? MEM_EXP_PARITY : 0;
    if (d <= MEM_EXP_COUNT_LAST * MEM_MS) return x | (uint32_t)((d + MEM_MS - 1) / MEM_MS);
    uint64_t n = (d + MEM_SEC - 1) / MEM_SEC;
    return x | MEM_EXP_SECS | (uint32_t)CORRAL_MIN(n, (uint64_t)MEM_EXP_COUNT_LAST);
}

/* An entry's name in 32 bits, for the links of chains, bucket heads, queues and the limbo: 0 is
 * none (a region's offset 0 is a slab's header, never a slot); an entry in a slot
 * (memory_block.h, the region) is its offset in the region over 8; any other (a larger entry,
 * an entry of a store without slabs, or one the region had no room for) has MEM_REF_FAR and its
 * name in the far table, which its block's mem_far prefix holds. A link is 4 bytes: the header
 * is 32 and a bucket head 4 (docs/memory-density.md). */
typedef uint32_t mem_ref;
#define MEM_REF_FAR 0x80000000u
_Static_assert(CORRAL__MEM_REGION_BYTES / 8 <= MEM_REF_FAR, "a slot's offset over 8 fits 31 bits");
_Static_assert((uint64_t)CORRAL__MEM_FAR_PAGE *CORRAL__MEM_FAR_PAGES <= MEM_REF_FAR,
               "a far name fits 31 bits");

/* 32 bytes before the key in release builds, 36 in debug builds, where the embedded value keeps
 * its magic (value.h); docs/memory-density.md counts them. The first 12 bytes hold what a
 * chain walk reads of every entry it passes (`next`, and `kw`, the key's length and kind, which
 * it compares first) and what a hit reads next (the class, the expiry). Writers and
 * reclamation use `u`; the read path reads from `val` to the end of the value, one contiguous
 * run.
 *
 * The entry keeps no hash of its key. A lookup compares `kw` and then the key's bytes; whoever
 * needs the hash of an entry it did not look up by key (a resize moving its chain, eviction
 * and expiry finding its chain, the S3-FIFO ghost) recomputes it from the key's bytes with the
 * store's key hash (mem_entry_hash), the function its callers hash their keys with. */
typedef struct mem_entry {
    /* The next entry of the chain. Changed under the shard lock with release stores, loaded
     * with acquire by readers; left as it is when the entry is unlinked. */
    _Atomic mem_ref next;
    /* The key's length (MEM_KLEN_MAX bits) and the MEM_KW_* flags above. Written under the
     * shard lock, loaded relaxed: mem_klen and the others below. */
    _Atomic uint16_t kw;
    /* Metrics class of the key, reported with every event; immutable. Read by a hit, which
     * counts under it. */
    uint16_t cls;
    /* The expiry (mem_exp_encode against the shard's base of its parity), or MEM_EXP_NEVER.
     * Rewritten under the shard lock (touch, an overwrite, a rebase's walk) with release
     * stores; readers load it with acquire, so they see the base of its parity (mem_exp_ns). */
    _Atomic uint32_t expiry;
    union {
        /* Queue links while live, under the shard lock. `newer` points toward the head. */
        struct {
            mem_ref newer, older;
        } q;
        /* Once removed (memory_rcu.c): the next entry waiting for its grace period. */
        struct {
            mem_ref next;
        } dead;
    } u;
    /* The embedded value (CORRAL__RELEASE_MEM_ENTRY): its bytes follow the key and the
     * envelope header, found from `kw` (corral__value_data; value.h has the offsets, asserted
     * below). val.owner is the hit mark: SIEVE's visited bit, S3-FIFO's frequency
     * 0..MEM_S3_FREQ_MAX; raised by readers with relaxed stores, lowered by the evictor under
     * the shard lock; unused by LRU. The generation in val.refs is the seqlock of an overwrite
     * in place (see "Overwrites in place" below). */
    corral_value val;
    unsigned char key[]; /* klen key bytes, the envelope header, the value bytes, then a NUL */
} mem_entry;

/* Before an entry outside the region, in its block: its far name, and the blocks that free it
 * (a slot's slab knows its own). */
typedef struct mem_far {
    uint32_t name;
    corral__mem_blocks *blocks;
} mem_far;
#define MEM_FAR_HDR sizeof(mem_far)

/* The entry named `r`, or NULL. Wherever the name was read with acquire from where its
 * publisher stored it with release (a chain's link, under the shard lock a queue's). */
static inline mem_entry *mem_deref(mem_ref r) {
    if (__builtin_expect(r & MEM_REF_FAR, 0)) return corral__mem_far_get(r & ~MEM_REF_FAR);
    return r ? (mem_entry *)(corral__mem_region_base() + ((uintptr_t)r << 3)) : NULL;
}

/* The name of `e` (NULL: 0). */
static inline mem_ref mem_ref_of(const mem_entry *e) {
    if (!e) return 0;
    uintptr_t off = (uintptr_t)e - corral__mem_region_base();
    if (off < CORRAL__MEM_REGION_BYTES) return (mem_ref)(off >> 3);
    return MEM_REF_FAR | ((const mem_far *)(const void *)((const char *)e - MEM_FAR_HDR))->name;
}

static inline unsigned mem_kw(const mem_entry *e) {
    return atomic_load_explicit(&e->kw, memory_order_relaxed);
}

static inline size_t mem_klen(const mem_entry *e) {
    return mem_kw(e) & MEM_KLEN_MAX;
}

static inline unsigned mem_queue_of(const mem_entry *e) {
    return (mem_kw(e) & MEM_KW_SMALL) ? MEM_SMALL : MEM_MAIN;
}

static inline bool mem_live(const mem_entry *e) {
    return mem_kw(e) & MEM_KW_LIVE;
}

/* Sets the `mask` bits of kw to `bits`. Under the shard lock, or before the entry is
 * published: the lock orders the writers, readers only load. */
static inline void mem_kw_set(mem_entry *e, unsigned mask, unsigned bits) {
    atomic_store_explicit(&e->kw, (uint16_t)((mem_kw(e) & ~mask) | bits), memory_order_relaxed);
}

/* The hit mark (val.owner). */
static inline uint8_t mem_hits(const mem_entry *e) {
    return atomic_load_explicit(&e->val.owner, memory_order_relaxed);
}

static inline void mem_set_hits(mem_entry *e, uint8_t h) {
    atomic_store_explicit(&e->val.owner, h, memory_order_relaxed);
}

/* A FIFO of entries: pushed at the head (newest), taken from the tail (oldest). */
typedef struct mem_queue {
    mem_entry *head, *tail;
    mem_entry *hand; /* SIEVE: next entry the hand examines; NULL: start at the tail */
    mem_entry *scan; /* expiry cursor: next entry examined; NULL: start at the tail */
    mem_entry *walk; /* a rebase's cursor: next entry re-encoded; NULL: past the tail */
    size_t bytes;
    size_t count;
} mem_queue;

typedef _Atomic mem_ref mem_link; /* a bucket head, or an entry's `next` */

/* The shards: at most 2^MEM_SHARD_BITS. A key's shard is picked by the top MEM_SHARD_BITS of
 * the low 32 bits of its hash, its bucket by the low bits (at most MEM_MAX_BUCKET_BITS):
 * disjoint bits, so a shard's table uses all of its heads, and a resize moves every entry to a
 * bucket of the same shard. */
#define MEM_MAX_SHARDS      1024u
#define MEM_SHARD_BITS      10u
#define MEM_HOME_BITS       4u  /* a shard's table starts at 2^4 heads, in the shard itself */
#define MEM_MAX_BUCKET_BITS 22u /* 4M heads a shard: past it, chains grow */
#define MEM_RESIZE_STEP     64u /* buckets of a running resize a write moves */
_Static_assert(MEM_RESIZE_STEP >= (1u << MEM_HOME_BITS),
               "a resize from the home table ends in its first step");
_Static_assert(MEM_MAX_SHARDS <= (1u << MEM_SHARD_BITS), "the shard bits pick every shard");
_Static_assert(MEM_SHARD_BITS + MEM_MAX_BUCKET_BITS <= 32,
               "the hash's low 32 bits hold the shard and the bucket index apart");

/* A shard's hash table: 2^bits chain heads. The shard publishes its current table through
 * `mem_shard.table`. A resize (memory.c) publishes a table twice as large in `mem_shard.grow`,
 * and writes move the old table's chains into it, MEM_RESIZE_STEP at a time under the shard's
 * lock, in bucket order; the last step publishes it as `table` and frees the old one after a
 * grace period. A table starts as the shard's `home` table (never freed) and doubles on the
 * heap as the shard's entries pass its heads. Immutable but for its heads, which change under
 * the shard's lock. */
typedef struct mem_table {
    mem_link *heads; /* 2^bits heads: the shard's `home_heads`, or just after this header */
    uint64_t mask;   /* 2^bits - 1 */
    unsigned bits;
    mem_store *store;    /* a table on the heap: the store that frees it after a grace period */
    struct rcu_head rcu; /* that free's call_rcu head */
} mem_table;

typedef struct mem_shard {
    /* Loaded by lookups and written only by a resize or a rebase: on a line of their own,
     * apart from the fields every write changes. The table's are stored under `lock` (with
     * release, but for the odd `resize_seq`: the link stores after it carry the release) and
     * loaded with acquire. `table` is the current table; `grow` the table a resize moves its
     * chains into, NULL when none runs, and `moved` how many of `table`'s buckets, from the
     * first, are in `grow` (mem_head). `resize_seq` is even, odd while a step of a resize
     * moves entries: a lookup that finds nothing walks again if it moved (mem_chain_retry). */
    _Atomic(mem_table *) table;
    _Atomic(mem_table *) grow;
    _Atomic size_t moved;
    /* Expiry epochs: the bases, in the store's ns (whole seconds), that entries' expiries
     * count from, picked by their parity (mem_exp_decode). Here because a hit decodes its
     * entry's expiry right after it loaded `table`. Written under `lock` (relaxed), only the
     * base of the parity no entry of the shard carries (see exp_cur); loaded relaxed after
     * an acquire load of the expiry. */
    _Atomic uint64_t exp_base[2];
    _Atomic uint32_t resize_seq;
    char pad_read[64 - 2 * sizeof(void *) - sizeof(size_t) - 2 * sizeof(uint64_t) -
                  sizeof(uint32_t)];
    corral__spin lock; /* spin.h: waiters spin, then yield; docs/threads.md */
    /* Under `lock`. The parity new expiries are encoded with; and the queue a rebase's walk is
     * re-encoding the other parity's entries of (through its `walk` cursor), MEM_QUEUES when
     * none: every entry of the shard then carries exp_cur (memory.c, "Expiry epochs"). */
    uint8_t exp_cur;
    /* Written under `lock`; a writer peeks at it before, to read the clock (shard_walking). */
    _Atomic uint8_t exp_walk_q;
    /* Under `lock`: the store's time the last walk ended (or the last rebase that needed
     * none; MEM_NEVER: at a clock stepped back past the epoch, until a due write has the time).
     * The next rebase waits MEM_EXP_MARGIN past it (memory.c, "Expiry epochs"). */
    uint64_t exp_walk_end;
    mem_queue q[MEM_QUEUES]; /* SIEVE and LRU use MEM_MAIN only */
    _Atomic size_t used;     /* accounted bytes; written under `lock`, read anywhere */
    /* Entries with an expiry: no scan when 0. Written under `lock` (load and store, no
     * read-modify-write); a writer peeks at it before taking `lock` (memory_write.c). */
    _Atomic size_t expiring;
    size_t budget;                    /* bound on `used`; immutable */
    const corral__mem_blocks *blocks; /* the store's, for what an entry costs; immutable */
    size_t small_budget;              /* S3-FIFO: the small queue's share; immutable */
    /* S3-FIFO ghost: fingerprints of keys evicted from the small queue without a hit,
     * direct-mapped by hash (a newer key overwrites an older one in its slot). Under `lock`. */
    uint32_t *ghost;
    size_t ghost_mask;
    /* Whether the ghost ever held a key: false until the small queue first evicts, so a shard
     * that never evicted skips the ghost's cache miss on every insert. Under `lock`. */
    bool ghost_used;
    /* What its tables on the heap cost (memory_block.h; both while a resize runs), counted in
     * `used`; 0 while it has only `home`. Written under `lock`, read anywhere
     * (corral__mem_table_bytes). */
    _Atomic size_t table_bytes;
    mem_table home;                           /* the first table, part of the shard */
    mem_link home_heads[1u << MEM_HOME_BITS]; /* its heads */
    char pad[64]; /* keeps neighbouring shards' locks off one cache line */
} mem_shard;
_Static_assert(offsetof(mem_shard, lock) == 64, "the fields a lookup loads fill one line");

struct mem_store {
    corral__store base; /* first: the vtable header every store begins with */
    uint32_t magic;
    corral__store_env env; /* a copy; what it points to outlives the store */
    /* The hash every caller puts in corral__skey.hash, of a key's bytes: the store recomputes
     * it for an entry it reached without its key (mem_entry_hash). Immutable. */
    corral__key_hash_fn key_hash;
    const void *key_hash_ctx;
    /* key_hash_ctx when key_hash is a hot scheme's own (corral__key_hash_of): mem_entry_hash
     * then hashes a key of that scheme's header inline, as the read path does. Immutable. */
    const corral__keyscheme *hot_ks;
    uint64_t epoch_ns;         /* the store's time 0 (clock_now): MEM_EXP_MARGIN before the open */
    corral__mem_blocks blocks; /* the entries' blocks and what each costs (memory_block.h) */
    corral_eviction policy;    /* never CORRAL_EVICT_DEFAULT */
    uint8_t hit_max; /* saturation of the hit mark (mem_hits): 1 (SIEVE), 3 (S3-FIFO), 0 (LRU) */
    size_t max_bytes;
    size_t max_value_bytes; /* 0: only the shard budget bounds a value */
    unsigned nshards;
    mem_shard *shards;
    _Atomic unsigned reclaim_next; /* shard where corral__mem_reclaim starts next */
    /* Entries retired and not yet released, plus the flush while it is queued. Raised by
     * writers (under a shard lock) and by the flush, lowered on the call_rcu thread once they
     * are released (memory_rcu.c, release_after_grace): without a lock while it stays above
     * zero, under `rcu_lock` to zero, which broadcasts `rcu_idle`. */
    _Atomic size_t rcu_pending;
    pthread_mutex_t rcu_lock; /* guards only the last decrement of rcu_pending */
    pthread_cond_t rcu_idle;
    /* Entries removed and waiting for a grace period, named by the top one (mem_ref) and linked
     * through u.dead.next: a stack that writers push and the flush takes whole (memory_rcu.c);
     * and the call_rcu head of that flush, queued while `flush_queued` is set. */
    _Atomic mem_ref limbo;
    /* What the limbo's entries cost (entry_bytes): memory the budget no longer counts and the
     * process still holds. A write that finds more than `limbo_max` frees the limbo itself
     * (corral__mem_limbo_help), so RSS stays within the bound however far liburcu's call_rcu
     * thread lags (it sleeps 10 ms between batches). */
    _Atomic size_t limbo_bytes;
    size_t limbo_max;
    _Atomic bool limbo_helping; /* a write is freeing the limbo: the others go on */
    _Atomic size_t limbo_helps; /* writes that freed the limbo (tests) */
    _Atomic bool flush_queued;
    struct rcu_head flush_head;
    char tsan_gp; /* TSan only: the sync object that models grace periods */
};

/* ---- The read side ---- */

/* Readers that wait for an overwrite in place (a short copy under the shard lock) pause this
 * many times before they yield the CPU to a writer that may have been preempted. */
#define MEM_SPIN_YIELD 256u

static inline mem_store *store_of(corral__store *base) {
    mem_store *s = (mem_store *)base;
    CORRAL_CHECK_OBJ(s, MEM_STORE_MAGIC);
    return s;
}

/* The shard of `hash`: the top MEM_SHARD_BITS of its low 32 bits, scaled to the shards. */
static inline mem_shard *shard_of(const mem_store *s, uint64_t hash) {
    return &s->shards[(((uint32_t)hash >> MEM_MAX_BUCKET_BITS) * s->nshards) >> MEM_SHARD_BITS];
}

/* The head of `hash`'s chain, in table `t` or, during a resize, in `to` when the bucket of `t`
 * it had is one of the `moved` buckets already moved there. */
static inline mem_link *mem_head(const mem_table *t, const mem_table *to, size_t moved,
                                 uint64_t hash) {
    if (__builtin_expect(to != NULL, 0) && (hash & t->mask) < moved) t = to;
    return &t->heads[hash & t->mask];
}

/* The first entry of the chain of `hash` in the tables of its shard `sh`, with in *rs the
 * resize sequence the walk starts at (for mem_chain_retry). Call inside a read-side section:
 * a resize frees the old table after a grace period. */
static inline mem_entry *mem_chain_rcu(mem_shard *sh, uint64_t hash, uint32_t *rs) {
    *rs = atomic_load_explicit(&sh->resize_seq, memory_order_acquire);
    const mem_table *t = atomic_load_explicit(&sh->table, memory_order_acquire);
    const mem_table *to = atomic_load_explicit(&sh->grow, memory_order_acquire);
    size_t moved = to ? atomic_load_explicit(&sh->moved, memory_order_acquire) : 0;
    return mem_deref(atomic_load_explicit(mem_head(t, to, moved, hash), memory_order_acquire));
}

/* The entry after `e` on its chain, or NULL. Call inside a read-side section. */
static inline mem_entry *mem_next_rcu(const mem_entry *e) {
    return mem_deref(atomic_load_explicit(&e->next, memory_order_acquire));
}

/* True when a walk that began at resize sequence `rs` and found nothing may have missed its
 * key: a step of a resize was moving entries (odd) or moved them since (every step, and the
 * last one's switch of tables, runs at an odd sequence; the start of a resize moves nothing,
 * and publishes `grow` after `moved` is 0). A walk that saw any link a
 * resize changed (acquire loads of its release stores) sees the sequence it made odd, so a
 * walk this lets stand read the chain as it was before any move: a key it did not find was
 * not there. A hit needs no check: the key was compared. */
static inline bool mem_chain_retry(mem_shard *sh, uint32_t rs) {
    return (rs & 1u) || atomic_load_explicit(&sh->resize_seq, memory_order_acquire) != rs;
}

/* The store's time: ns since its epoch (MEM_EXP_MARGIN before the open); 0 while the env
 * clock is behind it. */
static inline uint64_t clock_now(const mem_store *s) {
    uint64_t t = s->env.now_ns(s->env.clock_ctx);
    return t > s->epoch_ns ? t - s->epoch_ns : 0;
}

/* The time, in the store's ns, of the expiry `x` (not MEM_EXP_NEVER) of an entry of shard
 * `sh`, loaded with acquire (mem_exp_load). */
static inline uint64_t mem_exp_ns(const mem_shard *sh, uint32_t x) {
    return mem_exp_decode(
        x, atomic_load_explicit(&sh->exp_base[mem_exp_parity(x)], memory_order_relaxed));
}

/* The expiry of `e`: acquire, so that the base of its parity is seen as it was stored. */
static inline uint32_t mem_exp_load(const mem_entry *e) {
    return atomic_load_explicit(&e->expiry, memory_order_acquire);
}

/* True when the expiry `x` of an entry of shard `sh` has come at the store's time `now`. */
static inline bool mem_exp_passed(const mem_shard *sh, uint32_t x, uint64_t now) {
    return x != MEM_EXP_NEVER && now >= mem_exp_ns(sh, x);
}

static inline void read_lock(mem_store *s) {
    (void)s;
    corral__reader_enter();
}

static inline void read_unlock(mem_store *s) {
    MEM_TSAN_RELEASE(&s->tsan_gp);
    corral__reader_leave();
}

static inline uint64_t load64(const void *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint16_t load16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t load32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* memcmp(a, b, n) == 0 without a library call for the short keys a cache mostly holds: whole
 * words, the last one overlapping the one before. A get's instruction count decides how many
 * gets the CPU overlaps while each waits for memory (docs/eviction.md), so this matters. */
static inline bool key_equal(const unsigned char *a, const void *b, size_t n) {
    const unsigned char *q = b;
    if (n > 32) return memcmp(a, q, n) == 0;
    if (n >= 8) { /* the last word first: keys of one length differ most often at the end */
        if (load64(a + n - 8) != load64(q + n - 8)) return false;
        for (size_t i = 0; i + 8 < n; i += 8)
            if (load64(a + i) != load64(q + i)) return false;
        return true;
    }
    if (n >= 4) return load32(a) == load32(q) && load32(a + n - 4) == load32(q + n - 4);
    if (n >= 2) return load16(a) == load16(q) && a[n - 1] == q[n - 1]; /* ":1:" is 3 bytes */
    return n == 0 || a[0] == q[0];
}

/* ---- Overwrites in place: what readers do about them ----
 * An overwrite in place (memory_write.c) rewrites an entry's value when only the table holds
 * it: it swaps the value's refs from a count of 1 to 0, which corral__value_tryref refuses,
 * writes, and stores a count of 1 with the next generation (the bits of refs above
 * CORRAL__REFS_COUNT, value.h). A get that takes a reference therefore waits until the count
 * is not 0 (mem_value_ref_rcu): inside a read-side section it is 0 only during such a write,
 * since the table's reference is dropped after a grace period. A get_into copies without a
 * reference, so it loads refs before and after the copy and copies again if the count was 0
 * or the generation moved: the seqlock of Linux's seqcount_t (Boehm, "Can seqlocks get along
 * with programming language memory models?", MSPC 2012), a count of 0 standing for an odd
 * sequence. An entry's generation only grows: at MEM_GEN_LAST the next write allocates a new
 * entry instead, and this one is never rewritten, so no generation comes back while a reader
 * may stand on it, however long it stops. The bytes are copied with memcpy; under
 * ThreadSanitizer, byte by byte with atomic loads and stores, which it checks.
 *
 * Ordering: the writer's swap to 0 comes before a release fence and the bytes after it; the
 * reader's copy comes before an acquire fence and its second load after it. So a copy that
 * read a byte of a write sees that write's 0 or a later refs (a later count of 0, or a later
 * generation: no other change happens during the write, whose count 0 admits no reference).
 * The writer's last store is a release and the reader's first load an acquire: a copy that
 * begins after a write sees all of it.
 *
 * Such a copy must stay inside the entry's block even when it is torn. An overwrite in place
 * keeps the block, so every version's hdr_len + len fits it (fits_in_place, memory_write.c),
 * but a reader's two loads of the lengths may come from two versions. Copying `len` bytes from
 * the end of the key (the read path, incr) is safe with any version's `len`. Copying them from
 * `hdr_len` bytes further (the general get_into) is not: a plain value of 200 bytes and one
 * with a header of 100 and 100 bytes after it give 100 + 200. So that reader checks refs
 * between the loads of the lengths and the copy, and copies only with lengths of one version. */

/* The last generation of an entry's value: an entry takes MEM_GEN_LAST / CORRAL__REFS_GEN_ONE
 * overwrites in place, and the write after them allocates (overwrite_locked). */
#define MEM_GEN_LAST (~(uint32_t)CORRAL__REFS_COUNT)

static inline void mem_spin(unsigned i) {
    if (i < MEM_SPIN_YIELD)
        caa_cpu_relax();
    else
        sched_yield();
}

/* The generation of `e`'s value (its refs without the count) before a copy of it, once no
 * overwrite in place runs. Call inside a read-side section. */
static inline uint32_t mem_gen_begin(const mem_entry *e) {
    uint32_t r;
    for (unsigned i = 0;
         !((r = atomic_load_explicit(&e->val.refs, memory_order_acquire)) & CORRAL__REFS_COUNT);
         i++)
        mem_spin(i);
    return r & ~CORRAL__REFS_COUNT;
}

/* True when the value copied since mem_gen_begin returned `gen` may be torn: copy again. */
static inline bool mem_gen_retry(const mem_entry *e, uint32_t gen) {
#ifndef MEM_TSAN
    atomic_thread_fence(memory_order_acquire); /* the copy's loads before the check */
#endif
    uint32_t r = atomic_load_explicit(&e->val.refs, memory_order_relaxed);
    return !(r & CORRAL__REFS_COUNT) || (r & ~CORRAL__REFS_COUNT) != gen;
}

/* memcpy from a value an overwrite in place may be rewriting (see above). */
static inline void mem_copy_out(void *dst, const unsigned char *src, size_t n) {
#ifdef MEM_TSAN
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) /* acquire: the loads stay before mem_gen_retry's */
        d[i] = __atomic_load_n(&src[i], __ATOMIC_ACQUIRE);
#else
    memcpy(dst, src, n);
#endif
}

corral_value *corral__mem_value_copy_rcu(mem_store *s, mem_entry *e);

/* A reference on `e`'s value, waiting out an overwrite in place; a copy of it when its count
 * is full (value.h), NULL if that copy's allocation fails. Call inside the read-side section
 * that found `e` in the table. */
static inline corral_value *mem_value_ref_rcu(mem_store *s, mem_entry *e) {
    for (unsigned i = 0;; i++) {
        corral__ref r = corral__value_tryref(&e->val);
        if (__builtin_expect(r == CORRAL__REF_TAKEN, 1)) return &e->val;
        if (r == CORRAL__REF_FULL) return corral__mem_value_copy_rcu(s, e);
        mem_spin(i);
    }
}

/* The value's lengths, which an overwrite in place rewrites (with atomic stores) at count 0:
 * read with atomic loads by readers that hold no reference. Under ThreadSanitizer, which has no
 * fences, acquire keeps them before a mem_gen_retry that checks them, as mem_copy_out's. */
#ifdef MEM_TSAN
#define MEM_LEN_ORDER __ATOMIC_ACQUIRE
#else
#define MEM_LEN_ORDER __ATOMIC_RELAXED
#endif

static inline uint32_t mem_dlen(const mem_entry *e) {
    return __atomic_load_n(&e->val.len, MEM_LEN_ORDER);
}

static inline uint32_t mem_hlen(const mem_entry *e) {
    return __atomic_load_n(&e->val.hdr_len, MEM_LEN_ORDER);
}

/* What the read path leaves to the general one: CORRAL__MEM_HOT_SLOW. */
#define CORRAL__MEM_HOT_SLOW 100

/* Bytes from an entry's `key` that every entry's block holds (corral__mem_entry_bytes pads a
 * short one): hot_key_equal loads the first 16 whatever the key's length. */
#define MEM_KEY_LOAD 16u
_Static_assert(CORRAL__HOT_HDR <= MEM_KEY_LOAD, "a hot header fits the two words compared");
#ifdef NDEBUG
_Static_assert(offsetof(mem_entry, key) == 32, "the entry header docs/memory-density.md counts");
#else
_Static_assert(offsetof(mem_entry, key) == 36, "32 and the value's debug magic");
#endif
_Static_assert(offsetof(mem_entry, next) == 0 && offsetof(mem_entry, kw) == 4 &&
                   offsetof(mem_entry, expiry) == 8,
               "a chain walk reads the first 12 bytes of an entry");
_Static_assert(offsetof(mem_entry, val) - offsetof(mem_entry, kw) == CORRAL__MEM_KW_TO_VAL &&
                   offsetof(mem_entry, key) - offsetof(mem_entry, val) == CORRAL__MEM_VAL_TO_KEY,
               "corral__value_data finds the key's length and the bytes from the value");
_Static_assert(CORRAL__MAX_BINARY_KEY <= MEM_KLEN_MAX, "every physical key fits mem_entry.kw");

/* load64 of a stored key's first 16 bytes, which reach into the value when the key is
 * shorter: an overwrite in place may be writing those bytes, which the masks then discard.
 * Under ThreadSanitizer the bytes are loaded one by one with atomic loads, so that it sees no
 * race on bytes the comparison does not use. */
static inline uint64_t load64_key(const unsigned char *p) {
#ifdef MEM_TSAN
    unsigned char b[8];
    for (unsigned i = 0; i < 8; i++)
        b[i] = __atomic_load_n(&p[i], __ATOMIC_RELAXED);
    return load64(b);
#else
    return load64(p);
#endif
}

/* True when the stored key at `k` begins with the hot scheme's header (at most 16 bytes),
 * compared as two masked words: the entry's block holds 16 bytes there (MEM_KEY_LOAD). */
static inline bool hot_hdr_equal(const corral__keyscheme *ks, const unsigned char *k) {
    return (((load64_key(k) ^ ks->hdr_word[0]) & ks->hdr_mask[0]) |
            ((load64_key(k + 8) ^ ks->hdr_word[1]) & ks->hdr_mask[1])) == 0;
}

/* True when `e` holds the value of "<ks->hdr><key>": the header (at most 16 bytes in a hot
 * scheme) compared as two masked words, then the caller's bytes in place. */
static inline bool hot_key_equal(const mem_entry *e, const corral__keyscheme *ks, const void *key,
                                 size_t key_len) {
    /* the length and the kind (MEM_VALUE: no flag) in one compare */
    if ((mem_kw(e) & (MEM_KLEN_MAX | MEM_KW_LEASE)) != ks->hdr_len + key_len) return false;
    /* the caller's bytes first: the chain's other keys of the scheme share its header */
    if (!key_equal(e->key + ks->hdr_len, key, key_len)) return false;
    return hot_hdr_equal(ks, e->key);
}

/* The entry of "<ks->hdr><key>" on the chain from `e`, or NULL: the walk of hot_find's slow
 * cases and of the writers' first look (hot_lookup_hint_rcu). */
static inline mem_entry *hot_chain_find(mem_entry *e, const corral__keyscheme *ks, const void *key,
                                        size_t key_len) {
    for (; e; e = mem_next_rcu(e))
        if (hot_key_equal(e, ks, key, key_len)) return e;
    return NULL;
}

/* hot_find's walk past the chain's first entry, which was not the key's: out of line, so the
 * common case (the first entry is the key's) keeps few registers live. */
static __attribute__((noinline, unused)) mem_entry *
hot_find_after(mem_entry *e, const corral__keyscheme *ks, const void *key, size_t key_len) {
    return hot_chain_find(mem_next_rcu(e), ks, key, key_len);
}

/* hot_find's walk again after a miss that a resize of shard `sh` may have caused
 * (mem_chain_retry), until a walk finds the entry or no resize moved entries during it. */
static __attribute__((noinline, unused)) mem_entry *hot_find_again(mem_shard *sh,
                                                                   const corral__keyscheme *ks,
                                                                   const void *key, size_t key_len,
                                                                   uint64_t hash) {
    for (unsigned i = 0;; i++) {
        mem_spin(i);
        uint32_t rs;
        mem_entry *e = hot_chain_find(mem_chain_rcu(sh, hash, &rs), ks, key, key_len);
        if (e || !mem_chain_retry(sh, rs)) return e;
    }
}

/* The read path's start (corral__mem_get_into_hot, corral__mem_get_hot): hashes the key into
 * *hash and enters the read-side section, returning CORRAL_OK; or returns the answer, having
 * entered nothing: CORRAL_EBADKEY (its length), CORRAL__MEM_HOT_SLOW (LRU: a hit moves the
 * entry, which the general path does). */
static inline int hot_begin(mem_store *s, const corral__keyscheme *ks, const void *key,
                            size_t key_len, uint64_t *hash) {
    if (!corral__key_hash_hot_inline(ks, key, key_len, hash)) return CORRAL_EBADKEY;
    if (s->policy == CORRAL_EVICT_LRU) return CORRAL__MEM_HOT_SLOW;
    read_lock(s);
    return CORRAL_OK;
}

/* The read path's lookup, inside the section hot_begin entered: the entry of "<ks->hdr><key>"
 * (hash `hash`), its hit marked; or NULL with *rc CORRAL_MISS, or CORRAL__MEM_HOT_SLOW when the
 * entry is there but the general path must answer (expired). The caller sends an entry with an
 * envelope header to the general path too. */
static inline mem_entry *hot_find(mem_store *s, const corral__keyscheme *ks, const void *key,
                                  size_t key_len, uint64_t hash, int *rc) {
    mem_shard *sh = shard_of(s, hash);
    uint32_t rs;
    mem_entry *e = mem_chain_rcu(sh, hash, &rs);
    if (e && !hot_key_equal(e, ks, key, key_len)) e = hot_find_after(e, ks, key, key_len);
    if (!e && mem_chain_retry(sh, rs)) e = hot_find_again(sh, ks, key, key_len, hash);
    *rc = CORRAL_MISS;
    if (!e) return NULL;
    uint32_t x = mem_exp_load(e);
    if (x != MEM_EXP_NEVER && clock_now(s) >= mem_exp_ns(sh, x)) {
        *rc = CORRAL__MEM_HOT_SLOW;
        return NULL;
    }
    uint8_t h = mem_hits(e);
    if (h < s->hit_max) mem_set_hits(e, (uint8_t)(h + 1));
    return e;
}

/* The read path's end: leaves the section and returns `rc`, but for a key it did not find:
 * CORRAL_MISS, or CORRAL_EBADKEY when a byte of the key is refused. A key it finds needs no such
 * check: it passed the same check, under the same scheme, when it was stored (only keys built
 * by corral__key_build enter the table as values, and a hot scheme's physical key splits into
 * header and user key one way only: the version is an integer). Checking only here takes the
 * check off every hit. */
static inline int hot_end(mem_store *s, int rc, const void *key, size_t key_len) {
    read_unlock(s);
    if (rc != CORRAL_MISS) return rc;
    return corral__key_bytes_ok_inline(key, key_len) ? CORRAL_MISS : CORRAL_EBADKEY;
}

/* corral_get_into's read path on a memory store (corral.c): hashes the user key of a hot key
 * scheme (key_hot.h), finds "<ks->hdr><key>" and copies its value into buf. CORRAL_OK or
 * CORRAL_ENOSPC (*len the value's length, *cls the class its entry was stored with),
 * CORRAL_MISS, CORRAL_EBADKEY; or CORRAL__MEM_HOT_SLOW when the general get_into must answer:
 * the entry has an envelope header or has expired (the general path reaps it), or the policy
 * is LRU. */
static inline int corral__mem_get_into_hot(corral__store *base, const corral__keyscheme *ks,
                                           const void *key, size_t key_len, void *buf, size_t cap,
                                           size_t *len, uint16_t *cls) {
    mem_store *s = store_of(base);
    uint64_t hash;
    *len = 0;
    int rc = hot_begin(s, ks, key, key_len, &hash);
    if (rc != CORRAL_OK) return rc;
    const mem_entry *e = hot_find(s, ks, key, key_len, hash, &rc);
    if (e) {
        *cls = e->cls;
        uint32_t gen;
        size_t n;
        do { /* `len` from the key's end: in the block whatever version it is (see above) */
            gen = mem_gen_begin(e);
            n = mem_dlen(e);
            rc = mem_hlen(e) ? CORRAL__MEM_HOT_SLOW : n > cap ? CORRAL_ENOSPC : CORRAL_OK;
            if (rc == CORRAL_OK && n) mem_copy_out(buf, e->key + ks->hdr_len + key_len, n);
        } while (mem_gen_retry(e, gen));
        *len = rc == CORRAL__MEM_HOT_SLOW ? 0 : n;
    }
    return hot_end(s, rc, key, key_len);
}

/* corral_get's read path, the same way: CORRAL_OK with a new reference in *out and *cls the
 * entry's class, CORRAL_MISS, CORRAL_EBADKEY or CORRAL__MEM_HOT_SLOW. */
static inline int corral__mem_get_hot(corral__store *base, const corral__keyscheme *ks,
                                      const void *key, size_t key_len, corral_value **out,
                                      uint16_t *cls) {
    mem_store *s = store_of(base);
    uint64_t hash;
    *out = NULL;
    int rc = hot_begin(s, ks, key, key_len, &hash);
    if (rc != CORRAL_OK) return rc;
    mem_entry *e = hot_find(s, ks, key, key_len, hash, &rc);
    if (e && mem_hlen(e)) {
        rc = CORRAL__MEM_HOT_SLOW;
    } else if (e) {
        corral_value *v = mem_value_ref_rcu(s, e);
        if (!v || v->hdr_len) { /* an envelope: the general path reads it (our reference is not
                                  the last, or it is a copy's); a failed copy: the general path
                                  answers CORRAL_ENOMEM */
            corral_value_unref(v);
            rc = CORRAL__MEM_HOT_SLOW;
        } else {
            *out = v;
            *cls = e->cls;
            rc = CORRAL_OK;
        }
    }
    return hot_end(s, rc, key, key_len);
}

#endif /* CORRAL_STORE_MEMORY_READ_H */
