/*
 * redis_slots.h - Redis Cluster's key space: the hash slot of a key, the slot map a CLUSTER
 * SLOTS reply describes, and the MOVED and ASK redirections. Pure: no I/O, no locks, no
 * allocation; redis_cluster.c routes the store's commands with it.
 *
 * A cluster splits its keys into 16384 hash slots: a key's slot is CRC16 (XMODEM: polynomial
 * 0x1021, initial value 0, no reflection) of the key, modulo 16384. When the key holds a '{'
 * followed later by a '}' with at least one byte between them, only the bytes between the first
 * '{' and the first '}' after it are hashed (a hash tag), so "{user1}:a" and "{user1}:b" share a
 * slot. Every slot is served by one shard: a primary and its replicas.
 *
 * Threads: every function is pure and thread-safe.
 */
#ifndef CORRAL_STORE_REDIS_SLOTS_H
#define CORRAL_STORE_REDIS_SLOTS_H

#include "redis_pool.h"

#include <hiredis/hiredis.h>

#define CORRAL__REDIS_SLOTS        16384
#define CORRAL__REDIS_MAX_SHARDS   64 /* primaries a slot map holds */
#define CORRAL__REDIS_MAX_REPLICAS 4  /* replicas kept per primary; more are ignored */
#define CORRAL__REDIS_NO_SHARD     UINT16_MAX

/* CRC16-XMODEM of `len` bytes: the checksum Redis Cluster hashes keys with. */
uint16_t corral__redis_crc16(const void *data, size_t len);

/* The hash slot of a key, hash tags included: 0 to 16383. */
uint16_t corral__redis_key_slot(const void *key, size_t len);

/* One primary and its replicas. */
typedef struct corral__redis_shard {
    corral__redis_addr primary;
    corral__redis_addr replicas[CORRAL__REDIS_MAX_REPLICAS];
    unsigned n_replicas;
} corral__redis_shard;

/* Which shard serves each slot. About 70 KB: allocate it, do not put it on a stack. */
typedef struct corral__redis_slot_map {
    size_t n_shards;
    corral__redis_shard shards[CORRAL__REDIS_MAX_SHARDS];
    uint16_t shard_of[CORRAL__REDIS_SLOTS]; /* an index into shards, or CORRAL__REDIS_NO_SHARD */
} corral__redis_slot_map;

/* Reads a CLUSTER SLOTS reply (RESP2: an array of [start, end, [host, port, id, ...] of the
 * primary, then one such array per replica]) into `out`. A node whose host is empty or nil is
 * on the host that answered, `asked_host`; a replica whose endpoint is unknown ("?") is left
 * out. Slots no range names stay CORRAL__REDIS_NO_SHARD (a cluster that lost a shard still
 * serves the others). Returns CORRAL_OK, or CORRAL_EFORMAT with `err` saying what is wrong: not
 * that shape, a slot outside 0-16383 or a range backwards, two ranges that overlap, a bad host or
 * port, a primary whose endpoint is unknown, more than CORRAL__REDIS_MAX_SHARDS primaries. `out` is
 * then unspecified. */
int corral__redis_slots_parse(const redisReply *r, const char *asked_host,
                              corral__redis_slot_map *out, corral_error *err);

/* An error reply that redirects: "MOVED <slot> <host>:<port>" (the slot has moved: ask there,
 * and refresh the map) or "ASK <slot> <host>:<port>" (the slot is migrating: send ASKING and the
 * command there, once). The host may be an IPv6 address without brackets (the port follows
 * the last ':'); an empty host means the node that answered, `asked_host`. Returns
 * CORRAL_OK with `*is_ask`, `*slot` and `*to` filled; CORRAL_MISS when the reply is another
 * error; CORRAL_EFORMAT when it begins with MOVED or ASK but does not parse. */
int corral__redis_parse_redirect(const char *s, size_t len, const char *asked_host, bool *is_ask,
                                 uint16_t *slot, corral__redis_addr *to);

#endif /* CORRAL_STORE_REDIS_SLOTS_H */
