/*
 * memory.h - the embedded memory store: a bounded, sharded, lock-free-read cache in process.
 * See memory.c for the data model (memory_evict.c, memory_rcu.c for the rest), docs/eviction.md for
 * the policies and docs/threads.md for the locks.
 *
 * Accounting: every entry accounts for what its block costs (memory_block.h): with the
 * application's allocator hooks, exactly the corral__mem_entry_bytes(key, value) bytes its one
 * allocation asks the hooks for; with libc's malloc, what the process holds for it (its slab
 * slot's share of the slab, glibc's size word and rounding, or its own page-rounded mapping).
 * Leases (lease_acquire) are entries too: they count in used_bytes, are reported through the events
 * callback under their key's class like values, and may be evicted. Each shard's hash table, once
 * it grows past the 16 heads inside the shard, counts in used_bytes too (corral__mem_table_bytes),
 * at most 4 bytes an entry (12 while a resize holds the old table and the new), but is reported by
 * no event. The store's fixed structures (shards, the S3-FIFO ghost table: docs/eviction.md) come
 * from the same allocator, at open; with libc's malloc they are charged to the budget (each shard's
 * budget is max_bytes less their cost, over the shards), with hooks they are not.
 *
 * Threads: every function is thread-safe, except that close must be the last call.
 */
#ifndef CORRAL_STORE_MEM_H
#define CORRAL_STORE_MEM_H

#include "store.h"
#include "../key.h"

typedef struct corral__mem_config {
    size_t max_bytes;       /* bound on accounted bytes (keys, values, per-entry overhead) */
    size_t max_value_bytes; /* larger values are refused with CORRAL_ETOOBIG; 0 = no limit but
                               the shard's budget (max_bytes / shards) */
    corral_eviction eviction;
    unsigned shards; /* write shards, at most 1024; 0 = automatic: up to 16, keeping each shard
                        at least 1 MiB and able to hold 4 values of max_value_bytes */
    /* The hash every caller of the store puts in corral__skey.hash: key_hash(key_hash_ctx,
     * bytes, len) of the key's bytes, for every key, of either keyspace. The store recomputes it
     * from an entry's key (its entries keep none: memory_read.h), so a key stored under another
     * hash is lost at the next resize of its shard. NULL: corral__key_hash_of (ctx a
     * corral__keyscheme, or NULL for corral__hash_bytes). The context must outlive the store. */
    corral__key_hash_fn key_hash;
    const void *key_hash_ctx;
} corral__mem_config;

/* Opens a memory store. `env` is copied; what it points to (allocator, clock context, events
 * context) must outlive the store. Returns CORRAL_OK, CORRAL_EINVAL (max_bytes 0, fewer bytes
 * than shards, an unknown policy, or a NULL allocator or clock) or CORRAL_ENOMEM; `*out` NULL
 * on failure. An entry larger than max_bytes / shards is refused with CORRAL_ETOOBIG. */
int corral__mem_open(corral__store **out, const corral__mem_config *cfg,
                     const corral__store_env *env);

/* Reclaims up to `budget` expired entries (bounded work, for maintenance and tests); returns how
 * many were reclaimed. Examines at most 8 x budget entries, and at most one lap of each shard,
 * holding a shard lock for 64 entries at a time. Thread-safe. */
size_t corral__mem_reclaim(corral__store *s, size_t budget);

/* Waits until every entry this store removed so far has dropped the store's reference after
 * its RCU grace period, so that entries no caller still holds are freed and a test can compare
 * the allocator's numbers with the store's accounting. Waits for this store's callbacks only.
 * Must not be called inside a read-side critical section; thread-safe otherwise. */
void corral__mem_quiesce(corral__store *s);

/* A set (CORRAL__SET_ALWAYS) that stores only if `still(ctx)` holds when it would publish.
 * `still` runs with the lock of the key's shard held, the lock every write and delete of the
 * key takes; it must be quick and take no lock of this store. The near cache fills with it
 * (tiered.c): its `still` checks that no invalidation of the key began since the value was
 * read, and an invalidation counts itself before it deletes, so either the fill sees it and
 * stores nothing, or the delete comes after the fill and removes it. Another reader never sees
 * an overtaken value in between. Returns CORRAL_OK, CORRAL_MISS when `still` said no (nothing
 * changed), or the errors of set. */
typedef bool (*corral__mem_guard_fn)(void *ctx);
int corral__mem_set_guarded(corral__store *s, const corral__skey *k, const void *val, size_t len,
                            int64_t ttl_ms, corral__mem_guard_fn still, void *ctx);

/* Bytes the shards' hash tables on the heap account for now: a part of used_bytes, which
 * the events callback does not report (it reports entries). A shard's first table (16 heads)
 * is part of the shard and counts for nothing; a table on the heap costs what its block costs
 * (memory_block.h). Thread-safe. */
size_t corral__mem_table_bytes(corral__store *s);

/* corral_set's write on a handle whose key scheme is hot (key.h): the set (CORRAL__SET_ALWAYS)
 * of `val` under the store key "<ks->hdr><key>" of class `cls` (corral__key_class of `key`),
 * given the user key as the caller has it, so that an overwrite in place neither builds nor
 * checks the store key (memory_write.c). `val` is written as it is: the caller has checked it
 * needs no envelope. `ttl_ms` is > 0 or CORRAL__NO_EXPIRY. Returns what the store's set of the
 * built key returns, or CORRAL_EBADKEY when corral__key_build would refuse the key. */
int corral__mem_set_hot(corral__store *s, const corral__keyscheme *ks, const void *key,
                        size_t key_len, uint16_t cls, const void *val, size_t len, int64_t ttl_ms);

/* The bytes of the block of an entry with these key and value lengths that is no slab slot (a
 * store with allocator hooks has none): what its one allocation asks the hooks for, and what
 * it accounts for with them. */
size_t corral__mem_entry_bytes(size_t key_len, size_t val_len);

#endif /* CORRAL_STORE_MEM_H */
