/*
 * store.h - the store vtable: the one seam between policy and storage.
 *
 * Everything above the store (key scheme, validation, single flight, tags, namespaces, metrics)
 * is written once in src/ and works on every store. A store only keeps bytes under physical
 * keys, with an optional expiry. Stores: memory.c (embedded, the default), redis.c (shared by
 * every process that opens the same Redis), tiered.c (a memory store in front of redis.c, kept
 * coherent by Redis client-side caching). The vtable below is the way into a store; the few
 * other ways in are listed at the end of this file, so that this header names them all.
 *
 * Contracts common to every operation:
 * - Keys arrive already built and validated (corral__skey: physical key, its 64-bit hash, and
 *   the metrics class of its prefix). Stores may ignore `hash` and `cls`.
 * - TTLs are relative milliseconds, > 0, or CORRAL__NO_EXPIRY. A TTL of 0 never reaches a store:
 *   the layer above turns it into a delete.
 * - Return codes are corral.h's. Outcomes: CORRAL_MISS for absent or expired keys,
 *   CORRAL_EXISTS for an add on a present key or a lease held by another owner.
 * - An expired entry is never returned by any operation.
 * - Values are bytes. A value that begins with a valid envelope header (envelope.h) is handed out
 *   with its bytes (corral__value_data) and `len` covering the payload after it, `hdr_len` the
 *   header's length: stores find the header with corral__env_hdr_len and otherwise ignore it.
 *   Leases are raw. A store with CORRAL__STORE_NO_ENVELOPE hands every value out whole.
 * - Every operation is thread-safe; the store does its own locking.
 * - A store that knows every change of what it holds reports it through `events` (set at open),
 *   so the layer above keeps per-prefix item, byte, eviction and expiration counters without
 *   asking. The callback is called with store locks held: it must be quick and must not call the
 *   store. Which stores report what:
 *     memory: every event (ADDED, REPLACED, DELETED, EVICTED, EXPIRED, OVERWRITTEN), leases
 *             included;
 *     redis:  none. Redis evicts and expires on its own and other clients write the same keys,
 *             so nothing it could report would be complete; its gauges stay 0 and its own
 *             counters come through metrics_text.
 *     tiered: none (its near cache is a cache of a cache; its counters are in metrics_text).
 * - Failures of a remote store (redis): a read that cannot reach the server is CORRAL_MISS
 *   (counted by the store); a write is CORRAL_ESTORE, CORRAL_ETIMEDOUT past a deadline, or
 *   CORRAL_ENOMEM when the server refuses it for memory. Unlike a local failure, a write whose
 *   reply was lost (timeout, connection reset) may have been applied: "nothing changed" holds for
 *   errors reported before the command was sent, not after.
 */
#ifndef CORRAL_STORE_H
#define CORRAL_STORE_H

#include "../common.h"
#include "../value.h"

#define CORRAL__NO_EXPIRY INT64_MAX

typedef struct corral__skey {
    const char *data; /* the physical key, e.g. "djzen:1:featured_products:v3" */
    size_t len;
    /* corral__key_hash of the key's bytes under the handle's scheme: the memory store
     * recomputes it from a stored key with the same function (corral__mem_config.key_hash), and
     * a caller whose hash differs leaves its entry in a chain it does not look in. */
    uint64_t hash;
    uint16_t cls; /* metrics class (prefix slot) of the key, recorded with the entry */
} corral__skey;

/* Why an entry stopped (or started) being held, for the events callback. */
typedef enum corral__change {
    CORRAL__ADDED,    /* a new entry (set/add/incr on an absent key) */
    CORRAL__REPLACED, /* old entry replaced by a set: reported as removal of the old */
    CORRAL__DELETED,  /* removed by delete, touch with 0, clear */
    CORRAL__EVICTED,  /* removed to make room */
    CORRAL__EXPIRED,  /* removed after its expiry */
    /* A set rewrote a live entry's value in place (memory_write.c): the entry stays, with its
     * class and its bytes. It stands for a REPLACED and an ADDED of the same bytes, in one
     * report, so the counters above have nothing to change; `bytes` is what the entry accounts
     * for, before and after. */
    CORRAL__OVERWRITTEN
} corral__change;

typedef struct corral__store_events {
    void *ctx;
    /* `bytes` is what the entry accounts for (key + value + overhead). For CORRAL__ADDED it is
     * counted in, for CORRAL__OVERWRITTEN neither in nor out, for every other change out. */
    void (*changed)(void *ctx, uint16_t cls, corral__change why, size_t bytes);
} corral__store_events;

/* Write flags of set and set_many. */
/* serializer=django (redis): write the value as pickled bytes even when it is valid UTF-8 or a
 * decimal integer, so Django reads bytes (corral_call.is_binary). */
#define CORRAL__SETF_BINARY 0x01u

/* How a set writes. */
typedef enum corral__set_mode {
    CORRAL__SET_ALWAYS, /* set */
    CORRAL__SET_NX,     /* add: only when absent or expired (CORRAL_EXISTS otherwise) */
    CORRAL__SET_XX      /* only when present (CORRAL_MISS otherwise) */
} corral__set_mode;

typedef struct corral__store corral__store;

/* A watch on a lease (lease_watch): the caller's memory; `woken` and `arg` are the caller's,
 * the rest the store's. */
typedef struct corral__lease_watch {
    void (*woken)(struct corral__lease_watch *w);
    void *arg;
    uint64_t hash; /* corral__hash_bytes of the key */
    struct corral__lease_watch *next, **pprev;
} corral__lease_watch;

typedef struct corral__store_ops {
    const char *name;

    /* Returns CORRAL_OK and a new reference in `*out`, or CORRAL_MISS with `*out` NULL. */
    int (*get)(corral__store *s, const corral__skey *k, corral_value **out);
    /* Copies the value's payload into buf and its envelope header (envelope.h; none for a raw
     * value) into hdr when it fits hdr_cap. *hdr_len is the header's length either way (0: no
     * envelope); a header longer than hdr_cap is not copied. CORRAL_OK, CORRAL_MISS, or
     * CORRAL_ENOSPC with *len the payload's length (nothing copied). */
    int (*get_into)(corral__store *s, const corral__skey *k, void *buf, size_t cap, size_t *len,
                    void *hdr, size_t hdr_cap, size_t *hdr_len);
    /* Optional: get, with the value's tags validated by the store, in the read's own round trip
     * (redis: once it has seen tagged values under the key's prefix; see redis.c). When
     * the value carries an envelope with tags (envelope.h), the store reads the current version
     * of each tag under "<key_prefix>:tag:<name>" (key_prefix from corral__store_env) and
     * compares it with the version the envelope carries. Returns CORRAL_OK with a new reference
     * in `*out` when the value has no tags or every tag still has its version; CORRAL_MISS with
     * `*out` NULL when the key is absent, a tag was busted or its version vanished, or the
     * envelope is malformed (a busted value is never needed: grace and stale-if-error apply to
     * expiry, not to busts). The logical expiry (the times block) is the caller's to check.
     * NULL: the handle reads with get and then each tag version with a store read
     * (corral__tags_valid). redis has it; memory and tiered (whose near cache keeps the tag
     * versions too, so the generic path reads them from memory) do not. */
    int (*get_checked)(corral__store *s, const corral__skey *k, corral_value **out);
    /* Stores a copy of the value. `flags` are write flags (CORRAL__SETF_*); a store with no use
     * for a flag ignores it (only redis with serializer=django honours one). CORRAL_OK,
     * CORRAL_EXISTS (NX), CORRAL_MISS (XX), CORRAL_ETOOBIG, CORRAL_ENOMEM. */
    int (*set)(corral__store *s, const corral__skey *k, const void *val, size_t len, int64_t ttl_ms,
               corral__set_mode mode, unsigned flags);
    /* CORRAL_OK when a live entry was removed, CORRAL_MISS otherwise. */
    int (*del)(corral__store *s, const corral__skey *k);
    /* Sets a new expiry (CORRAL__NO_EXPIRY to persist). CORRAL_OK or CORRAL_MISS. */
    int (*touch)(corral__store *s, const corral__skey *k, int64_t ttl_ms);
    /* The time the store keeps `k`: CORRAL_OK with `*ttl_ms` > 0 (rounded up) or
     * CORRAL__NO_EXPIRY, or CORRAL_MISS (absent, expired; a remote read that failed). Reads
     * nothing else and changes nothing, not even the entry's standing for eviction. */
    int (*ttl)(corral__store *s, const corral__skey *k, int64_t *ttl_ms);
    /* Atomic add on a decimal integer value, keeping the expiry. CORRAL_OK, CORRAL_MISS,
     * CORRAL_ENOTINT, CORRAL_ERANGE, CORRAL_ENOMEM. */
    int (*incr)(corral__store *s, const corral__skey *k, int64_t delta, int64_t *out);
    /* Removes every entry. */
    int (*clear)(corral__store *s);
    /* Removes every entry whose physical key begins with `prefix` followed by ':' (the handle's
     * KEY_PREFIX), leases included. Optional: NULL for a store private to its handle (memory),
     * where corral_clear_prefix calls clear instead. A remote store may do it in batches, so a
     * failure can leave it partly done. */
    int (*clear_prefix)(corral__store *s, const char *prefix, size_t len);

    /* Many-ops. A store without them gets the loop over the single ops (store.c). */
    int (*get_many)(corral__store *s, const corral__skey *ks, size_t n, corral_value **out);
    int (*set_many)(corral__store *s, const corral__skey *ks, const corral_buf *vals, size_t n,
                    int64_t ttl_ms, unsigned flags);
    int (*del_many)(corral__store *s, const corral__skey *ks, size_t n, size_t *deleted);

    /* The lease primitive for single flight across processes: take the lease on `k` with the
     * owner's `token` for `ttl_ms` (a lease always expires). CORRAL_OK when taken, CORRAL_EXISTS
     * when another owner holds it. Release removes it only if `token` still owns it: CORRAL_OK
     * when released, CORRAL_MISS when it is not (or no longer) ours. */
    int (*lease_acquire)(corral__store *s, const corral__skey *k, const void *token,
                         size_t token_len, int64_t ttl_ms);
    int (*lease_release)(corral__store *s, const corral__skey *k, const void *token,
                         size_t token_len);
    /* Optional: wake-ups across processes for a lease's waiters (NULL: a store private to its
     * process, memory, whose waiters are the flight table's). A store that has them announces
     * every release by the owner (lease_release) to every process's watches of the key.
     * lease_watch registers `w` on `k`; `w->woken(w)` is then called once, on the store's own
     * thread with its lock held (quick, no store call): when a release of `k`'s lease is
     * announced, or when the store's notifications (re)start or are lost (a release may have
     * been missed). Returns CORRAL_OK when notifications are live (a release wakes `w`),
     * CORRAL_WAITING when they are not yet (the caller polls meanwhile; `w` wakes once they
     * are), CORRAL_ENOTSUP when this store announces no releases (the caller polls) or
     * CORRAL_ENOMEM (nothing registered in either case). No I/O. lease_unwatch removes
     * `w`: true when it was still registered (woken is never called), false when woken was called
     * (and has returned). Every registered watch is unwatched before the store closes. */
    int (*lease_watch)(corral__store *s, const corral__skey *k, corral__lease_watch *w);
    bool (*lease_unwatch)(corral__store *s, corral__lease_watch *w);

    /* Bytes the store accounts for now, and its bound (0 when it has none). */
    size_t (*used_bytes)(corral__store *s);
    size_t (*max_bytes)(corral__store *s);

    /* Writes the store's own metrics (Prometheus text 0.0.4: # HELP, # TYPE and samples, names
     * beginning "corral_<store>_") into `buf`, NUL-terminated. Returns CORRAL_OK, or
     * CORRAL_ENOSPC when `cap` is too small (buf then holds whole lines only). Optional: NULL
     * for a store with nothing to add (memory). Thread-safe; no I/O. */
    int (*metrics_text)(corral__store *s, char *buf, size_t cap);

    /* The state of server `i` (corral_store_status, corral.h): CORRAL_OK with `*out` filled, or
     * CORRAL_MISS when there is no server `i`. Optional: NULL for a store without servers
     * (memory). Thread-safe; no I/O. */
    int (*status)(corral__store *s, size_t i, corral_server_status *out);

    /* Frees the store. Every value it handed out must have been released. */
    void (*close)(corral__store *s);
} corral__store_ops;

/* Capabilities of a store instance (corral__store.caps; 0, the default, for none). */
/* The store cannot carry corral's envelope: what it is given is what other clients read, and a
 * value's bytes are never split into an envelope and a payload (redis with serializer=django,
 * whose values a Django site reads). The handle then writes values bare: no logical expiry, no
 * XFetch lead, no tags (a write with tags is CORRAL_ENOTSUP), and reads them as they are. */
#define CORRAL__STORE_NO_ENVELOPE 0x01u

/* Every store begins with this header. */
struct corral__store {
    const corral__store_ops *ops;
    unsigned caps; /* CORRAL__STORE_*, set at open and read-only afterwards */
};

/* What a store needs from the handle at open. Everything pointed to outlives the store. */
typedef struct corral__store_env {
    const corral__allocator *alloc;
    corral_clock_fn now_ns;
    void *clock_ctx;
    corral__store_events events;
    /* The handle's KEY_PREFIX (not NUL-terminated; may be empty), for a store that builds
     * corral's internal keys itself (get_checked: "<key_prefix>:tag:<name>"). */
    const char *key_prefix;
    size_t key_prefix_len;
    /* Told when a server of a remote store goes down or comes back (corral_store_state_fn,
     * corral.h); NULL: nobody. */
    corral_store_state_fn on_state;
    void *state_ctx;
} corral__store_env;

/* ---- Other ways into a store ----
 *
 * Besides the vtable, a store is entered these ways and only these; each store's struct is
 * private to its own files.
 * - Open: corral__mem_open (memory.h), corral__redis_open (redis.h) and
 *   corral__tiered_open_take (tiered.h), called by corral_open (corral.c); the tiered store
 *   opens its memory store itself and takes the Redis store it is given.
 * - The memory store's inline read path: corral__mem_get_hot and corral__mem_get_into_hot
 *   (memory_read.h), compiled into corral_get and corral_get_into (corral.c) for a call with no
 *   corral_call, on a handle whose store is memory and whose key scheme is hot (handle.h,
 *   `hot_reads`). They answer as get and get_into do for a raw, unexpired value of a SIEVE or
 *   S3-FIFO store, and return CORRAL__MEM_HOT_SLOW for anything else (an envelope, an expired
 *   entry, LRU), which the caller then reads through the vtable. Why inline: memory_read.h and
 *   docs/eviction.md ("What bounds a get").
 * - The tiered store's private calls into the two stores it is made of (tiered.c):
 *     corral__mem_set_guarded (memory.h): a set that stores only while a guard holds, checked
 *       under the key's shard lock: the near cache's fill, which must not keep a value an
 *       invalidation has overtaken;
 *     corral__redis_get_ttl and corral__redis_get_many_ttl (redis.h): reads from the primary
 *       that also return the remaining TTL, which the near cache keeps;
 *     corral__redis_connect_primaries and corral__redis_topology (redis.h): connections outside
 *       the pools to every primary, the tracker's, and when to open them again;
 *     corral__redis_lease_attach, _heard and _live (redis.h): the tracker carries the store's
 *       lease channel on its own connection, after the invalidations that came before (not on
 *       a cluster, which has no lease channel);
 *     corral__redis_server_id (redis.h): the server's identity, under which the near cache
 *       joins this process's list of near caches (near_peers.h), which every Redis store's
 *       writes walk.
 * - Maintenance and tests: corral__mem_reclaim and corral__mem_quiesce (memory.h).
 */

/* Generic many-ops over the single ops, for stores that have no batch form. */
int corral__store_get_many(corral__store *s, const corral__skey *ks, size_t n, corral_value **out);
int corral__store_set_many(corral__store *s, const corral__skey *ks, const corral_buf *vals,
                           size_t n, int64_t ttl_ms, unsigned flags);
int corral__store_del_many(corral__store *s, const corral__skey *ks, size_t n, size_t *deleted);

#endif /* CORRAL_STORE_H */
