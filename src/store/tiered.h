/*
 * tiered.h - the near cache: an in-process memory store in front of the Redis store, kept
 * coherent by Redis client-side caching (CLIENT TRACKING ... BCAST). See tiered.c.
 *
 * Threads: every function is thread-safe, except that close must be the last call. The store
 * runs one thread of its own, the tracker, which listens for invalidations.
 */
#ifndef CORRAL_STORE_TIERED_H
#define CORRAL_STORE_TIERED_H

#include "store.h"
#include "../key.h"

typedef struct corral__tiered_config {
    size_t near_bytes; /* the near cache's bound, > 0 */
    /* Keys whose changes Redis reports: those beginning "<key_prefix>:" (what the default key
     * function makes), or every key with `track_all` (a custom key function). */
    const char *key_prefix;
    size_t key_prefix_len;
    bool track_all;
    /* The handle's key scheme, to hash the keys Redis reports as the handle hashed them; NULL
     * hashes them whole (corral__hash_bytes), for tests that drive the store directly. */
    const corral__keyscheme *ks;
    /* The tracker's liveness check (tiered.c): a PING after `ping_interval_ms` with nothing
     * received, and the connection counts as lost when nothing answers within
     * `ping_timeout_ms`. 0: 1000 ms each. */
    int64_t ping_interval_ms;
    int64_t ping_timeout_ms;
    /* Test seam, NULL in production: called by a read between its fetch from Redis and its
     * fill of the near cache. */
    void (*after_fetch)(void *ctx, const corral__skey *k);
    void *after_fetch_ctx;
} corral__tiered_config;

/* Opens the near cache in front of `redis` (a store from corral__redis_open), which it takes:
 * on every return path `redis` belongs to the tiered store or has been closed. Does no I/O: the
 * first read starts the tracker thread, and until it has subscribed, reads go to Redis and
 * nothing is kept near. Returns CORRAL_OK, CORRAL_EINVAL (near_bytes 0, or too small for the
 * memory store) or CORRAL_ENOMEM (memory or a pipe), with `err` filled; `*out` NULL on
 * failure. */
int corral__tiered_open_take(corral__store **out, corral__store *redis,
                             const corral__tiered_config *cfg, const corral__store_env *env,
                             corral_error *err);

/* Applies one reply read on the tracker's connection (hiredis's redisReply): a message of the
 * invalidation channel calls `drop` for each key it names, or once with `key` NULL (drop every
 * key) when its payload is nil (FLUSHDB, FLUSHALL) or holds anything but strings (a change we
 * cannot name must not leave a stale value near). Any other reply (subscribe confirmations, a
 * PING's answer, other channels, errors) changes nothing. Returns the invalidations applied:
 * the keys named, 1 for a drop of everything, 0 for no change. Pure but for `drop`; the
 * tracker's code, given its own name for fuzz/fuzz_near_invalidation.c. */
struct redisReply;
size_t corral__near_apply_reply(const struct redisReply *r,
                                void (*drop)(void *ctx, const char *key, size_t len), void *ctx);

#endif /* CORRAL_STORE_TIERED_H */
