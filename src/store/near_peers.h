/*
 * near_peers.h - the near caches of this process, by Redis server, so that a write made through
 * any handle of the process reaches every near cache of the process before the write returns.
 *
 * Redis reports a change to a near cache one network hop after it was made (tiered.c): within
 * that hop another handle's near cache may still serve the old value, and a tag bust made
 * through one handle was not yet seen by another handle's near cache of the same process (196
 * of 200 trials in issue 12). Within a process we need not wait for Redis: each near cache joins
 * this list under its server's identity, and the Redis store tells the list after every write
 * which keys changed (or that everything did: FLUSHDB, clear_prefix). The window then remains
 * only between processes (docs/near-cache.md).
 *
 * A server's identity is its primary's address as the URL names it and the database
 * ("127.0.0.1:6379/0", "unix:/run/redis.sock/2"): two handles that name one server differently
 * (localhost and 127.0.0.1, TCP and its unix socket) are not known to share it, and keep the
 * one-hop window between them.
 *
 * The list is the process's, as fork's hooks are (fork.h): it holds no handle state, only links
 * to the near caches, each of which adds itself at open and removes itself at close.
 *
 * Threads: every function is thread-safe. `changed` runs each peer's `forget` with the list's
 * read lock held, on the writer's thread: forget must be quick and take no lock but the near
 * cache's own (L1's shard locks). Lock order (docs/threads.md): the list's lock, then L1's.
 */
#ifndef CORRAL_STORE_NEAR_PEERS_H
#define CORRAL_STORE_NEAR_PEERS_H

#include "store.h"

typedef struct corral__near_peer {
    const char *server; /* the identity of its Redis server; outlives the peer */
    size_t server_len;
    const void *owner; /* its own Redis store: the near cache forgets its own writes itself */
    /* Drops `key` (NULL: every key) from the near cache. */
    void (*forget)(void *ctx, const char *key, size_t len);
    void *ctx;
    struct corral__near_peer *prev, *next; /* the list, under its lock */
} corral__near_peer;

/* Adds `p` (fields above set) / removes it. remove accepts a peer never added (links NULL and
 * not the head). After remove returns, `forget` is no longer running for `p` on any thread. */
void corral__near_peer_add(corral__near_peer *p);
void corral__near_peer_remove(corral__near_peer *p);

/* A Redis store wrote `n` keys of `ks` (`ks` NULL: it cleared the database or its key prefix)
 * on `server`: every near cache of that server but the one over `owner` forgets them. Costs one
 * atomic load when the process has no near cache. */
void corral__near_peers_changed(const char *server, size_t server_len, const void *owner,
                                const corral__skey *ks, size_t n);

#endif /* CORRAL_STORE_NEAR_PEERS_H */
