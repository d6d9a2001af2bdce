/*
 * redis.h - the Redis store: corral's distributed engine, over hiredis 0.14 (RESP2).
 * See redis.c for the data model and the commands, redis_pool.c for connections and failures.
 *
 * Every process that opens the same Redis (and database) shares one cache. The store keeps
 * values as plain Redis strings under their physical keys, byte for byte, so redis-cli and a
 * Django site see what corral wrote. It reports no events to the layer above (store.h): Redis
 * evicts and expires on its own, so the per-prefix item and byte gauges stay at 0, and the
 * store's own counters come through metrics_text.
 *
 * Threads: every function is thread-safe, except that close must be the last call.
 */
#ifndef CORRAL_STORE_REDIS_H
#define CORRAL_STORE_REDIS_H

#include "store.h"

/* The largest value the store accepts: Redis's default proto-max-bulk-len (512 MB). */
#define CORRAL__REDIS_MAX_VALUE ((size_t)512 * 1024 * 1024)

/* Opens a Redis store from the handle's Redis options (corral.h): validates them (the host list,
 * timeouts, pool size), computes the script digests, and creates the connection pools. It does
 * not connect: the first call does, so a handle opens while Redis is down and its calls miss
 * until Redis is up. Values above `max_value_bytes` (at most CORRAL__REDIS_MAX_VALUE) are refused
 * with CORRAL_ETOOBIG. `env` is copied (its key_prefix too: get_checked builds the tag keys
 * from it); its allocator must outlive the store. With serializer=django the store has
 * CORRAL__STORE_NO_ENVELOPE (store.h). Returns CORRAL_OK,
 * CORRAL_EBADURL or CORRAL_EINVAL (with `err` naming the option), or CORRAL_ENOMEM; `*out` is NULL
 * on failure. */
int corral__redis_open(corral__store **out, const corral_redis_options *o, size_t max_value_bytes,
                       const corral__store_env *env, corral_error *err);

/* For the near cache (tiered.c). */
struct redisContext;

/* Reads `k` from the primary with its remaining TTL in one round trip (GET and PTTL, pipelined):
 * CORRAL_OK with `*out` and `*ttl_ms` (> 0, CORRAL__NO_EXPIRY, or 0 when the key was about to
 * go or went right after the GET, or its cluster slot was moving: read again through the
 * redirection), CORRAL_MISS (absent, or Redis failed: counted as a failed read), or
 * CORRAL_ENOMEM. Thread-safe. */
int corral__redis_get_ttl(corral__store *s, const corral__skey *k, corral_value **out,
                          int64_t *ttl_ms);

/* Reads `n` keys from the primary with their remaining TTLs in one round trip (MGET, then a PTTL
 * per key, pipelined): `out[i]` a new reference or NULL, `ttl_ms[i]` as corral__redis_get_ttl
 * gives it (meaningless for a miss). Returns what get_many returns: CORRAL_OK (a failed read is
 * all misses, counted), CORRAL_ENOMEM or CORRAL_EFORMAT, with every `out[i]` NULL on error.
 * Thread-safe. */
int corral__redis_get_many_ttl(corral__store *s, const corral__skey *ks, size_t n,
                               corral_value **out, int64_t *ttl_ms);

/* The server's identity for this process's near caches (near_peers.h): "<primary>:<port>/<db>"
 * or "unix:<path>/<db>", borrowed for the store's life, `*len` bytes. */
const char *corral__redis_server_id(corral__store *s, size_t *len);

/* Opens a connection outside the pools to every primary: the server's one, or each of a
 * cluster's (corral__redis_pool_connect). Returns their count, or 0 when one could not be
 * opened or there are more than `cap` (none is then left open). redis_cluster_many.c. */
size_t corral__redis_connect_primaries(corral__store *s, struct redisContext **out, size_t cap);

/* A number that changes when the store's set of primaries changes (a cluster's failover or
 * resharding onto a new node); always 0 on a standalone server. redis_cluster_many.c. */
uint64_t corral__redis_topology(corral__store *s);

/* The near cache's tracker carries the lease channel (redis_notify.h: attach, deliver,
 * set_live): lease_attach returns the channel's name (borrowed for the store's life) for the
 * tracker's SUBSCRIBE, or NULL (`*len` 0) when the store has no notifier;
 * heard and live then do nothing. lease_key_hash is the hash of the key a message's payload
 * announces, which heard takes: the tracker of a cluster hands a release in once every
 * primary's connection brought it (tiered.c). */
const char *corral__redis_lease_attach(corral__store *s, size_t *len);
uint64_t corral__redis_lease_key_hash(const char *payload, size_t len);
void corral__redis_lease_heard(corral__store *s, uint64_t key_hash);
void corral__redis_lease_live(corral__store *s, bool live);

/* Validates a host list ("host[:port][,host[:port]...]") as corral__redis_open would: CORRAL_OK
 * or CORRAL_EBADURL with `err` naming the bad host. For the URL parser. Thread-safe. */
int corral__redis_check_hosts(const char *list, corral_error *err);

#endif /* CORRAL_STORE_REDIS_H */
