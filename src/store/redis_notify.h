/*
 * redis_notify.h - lease releases across processes (store.h: lease_watch): the Redis store's
 * subscriber. See redis_notify.c for the model, docs/redis.md ("Lease wake-ups") for why Pub/Sub.
 *
 * The announcing side is the lease release script (redis.c), which PUBLISHes "<key> <token>" (the
 * released key and the lease's token) on the store's channel in the same round trip; this file
 * is the listening side. On a Redis Cluster a PUBLISH reaches every node, so the subscriber's one
 * connection may be to any node (the `connect` of notify_new).
 *
 * Every function but counters_of accepts NULL and does nothing with it (watch returns
 * CORRAL_ENOTSUP, unwatch false, channel NULL).
 *
 * Threads: every function is thread-safe, except that free must be the last call.
 */
#ifndef CORRAL_STORE_REDIS_NOTIFY_H
#define CORRAL_STORE_REDIS_NOTIFY_H

#include "redis_pool.h"
#include "store.h"

/* The store's channel: "<KEY_PREFIX>:lease-released" ("lease-released" for an empty prefix). */
#define CORRAL__REDIS_NOTIFY_SUFFIX "lease-released"

typedef struct corral__redis_notify corral__redis_notify;

typedef struct corral__redis_notify_counters {
    _Atomic uint64_t messages;   /* releases heard on the channel */
    _Atomic uint64_t wakeups;    /* watches woken by a release of their key */
    _Atomic uint64_t subscribes; /* times the subscriber subscribed */
} corral__redis_notify_counters;

/* The subscriber's connection, opened by its thread: to the server, or to a node of a cluster
 * (redis_internal.h: corral__redis_notify_connect). NULL when none could be opened. */
typedef redisContext *corral__redis_notify_connect_fn(void *arg);

/* Creates the subscriber on the channel of `key_prefix`, connecting with `connect(arg)` (`arg`
 * borrowed: it outlives the notifier). Connects nothing: the thread starts with the first watch.
 * CORRAL_OK or CORRAL_ENOMEM. */
int corral__redis_notify_new(corral__redis_notify **out, corral__redis_notify_connect_fn *connect,
                             void *arg, const char *key_prefix, size_t key_prefix_len,
                             const corral__allocator *a);
/* Stops the thread and frees. No watch may be registered. Accepts NULL. */
void corral__redis_notify_free(corral__redis_notify *n);

/* The channel's name (NUL-terminated) and length, for the release script's PUBLISH. */
const char *corral__redis_notify_channel(const corral__redis_notify *n, size_t *len);

/* lease_watch and lease_unwatch (store.h). */
int corral__redis_notify_watch(corral__redis_notify *n, const corral__skey *k,
                               corral__lease_watch *w);
bool corral__redis_notify_unwatch(corral__redis_notify *n, corral__lease_watch *w);

corral__redis_notify_counters *corral__redis_notify_counters_of(corral__redis_notify *n);

/* The hash of the key a message's payload announces ("<key> <token>", split at the last space:
 * a binary key may hold spaces; "<key>" alone, without a space, is read too), as watches are
 * matched: corral__hash_bytes of the key's bytes. */
uint64_t corral__redis_notify_key_hash(const char *payload, size_t len);

/* The near cache's tracker carries the channel instead of a connection of ours (tiered.c): no
 * thread is started; the tracker hands in the releases it hears (deliver, by key hash) and
 * whether it is subscribed (set_live). Called once, at the near cache's open, before any watch. */
void corral__redis_notify_attach(corral__redis_notify *n);
void corral__redis_notify_deliver(corral__redis_notify *n, uint64_t key_hash);
void corral__redis_notify_set_live(corral__redis_notify *n, bool live);

#endif /* CORRAL_STORE_REDIS_NOTIFY_H */
