/*
 * redis_internal.h - what the two files of the Redis store share: the store's struct and the
 * helpers redis.c (single-key operations, scripts, open) and redis_many.c (batches and
 * clear_prefix) both call. Not for use outside src/store/redis*.c.
 */
#ifndef CORRAL_STORE_REDIS_INTERNAL_H
#define CORRAL_STORE_REDIS_INTERNAL_H

#include "redis.h"
#include "redis_cluster.h"
#include "redis_pool.h"
#include "redis_slots.h"
#include "../envelope.h"

#include <stdatomic.h>

#define REDIS_STORE_MAGIC 0x3ed15ea5u
#define TTL_DIGITS        24
#define TAGGED_WORDS      ((UINT16_MAX + 1) / 64) /* a bit per metrics class */

typedef struct rscript {
    const char *src;
    size_t src_len;
    char sha[41]; /* hex SHA-1 of src, what EVALSHA names it by */
} rscript;

typedef struct redis_store {
    corral__store base;
    uint32_t magic;
    const corral__allocator *alloc;
    corral__redis_pool *pool;       /* a standalone server (and its replicas); NULL on a cluster */
    corral__redis_cluster *cluster; /* a Redis Cluster (redis_cluster.h); NULL otherwise */
    struct corral__redis_notify *notify; /* lease wake-ups (redis_notify.c) */
    size_t max_value_bytes;
    bool django;      /* serializer=django or bare: values carry no envelope */
    bool pickles;     /* serializer=django: values go through redis_django.c */
    char *tag_prefix; /* "<KEY_PREFIX>:tag:", ARGV[1] of CHECKED; owned */
    size_t tag_prefix_len;
    /* Bit `cls` set: values under metrics class `cls` carry tags, and get_checked reads them with
     * the script. A hint (relaxed atomics): a stale bit costs a round trip, never correctness. */
    _Atomic uint64_t tagged_cls[TAGGED_WORDS];
    rscript incr, touch_forever, lease_release, checked;
    char *server_id; /* the server's identity for this process's near caches (near_peers.h) */
    size_t server_id_len;
} redis_store;

static inline redis_store *store_of(corral__store *base) {
    redis_store *s = CORRAL_CONTAINER_OF(base, redis_store, base);
    CORRAL_CHECK_OBJ(s, REDIS_STORE_MAGIC);
    return s;
}

/* Begins a call for the key `key` (`len` bytes): on the server, or on the cluster node of its
 * slot. As corral__redis_begin. */
static inline int corral__redis_begin_key(redis_store *s, corral__redis_role role, const char *key,
                                          size_t len, corral__redis_call *c) {
    if (!s->cluster) return corral__redis_begin(s->pool, role, c);
    return corral__redis_cluster_begin(s->cluster, role, corral__redis_key_slot(key, len), c);
}

/* Runs a command of a call begun with corral__redis_begin_key: on a cluster, redirections are
 * followed (corral__redis_cluster_command). As corral__redis_command. */
static inline redisReply *corral__redis_cmd(redis_store *s, corral__redis_call *c, int argc,
                                            const char **argv, const size_t *lens) {
    if (!s->cluster) return corral__redis_command(c, argc, argv, lens);
    return corral__redis_cluster_command(s->cluster, c, argc, argv, lens);
}

/* The nodes a command for the whole store runs on (FLUSHDB, SCAN): the standalone server (one,
 * written -1) or every primary of a cluster (0 when its map cannot be loaded). `nodes` has room
 * for CORRAL__REDIS_MAX_NODES. */
static inline size_t corral__redis_primaries(redis_store *s, int *nodes) {
    if (s->cluster) return corral__redis_cluster_primaries(s->cluster, nodes);
    nodes[0] = -1;
    return 1;
}

/* Begins a call on one of those nodes. As corral__redis_begin. */
static inline int corral__redis_begin_on(redis_store *s, int node, corral__redis_role role,
                                         corral__redis_call *c) {
    if (!s->cluster) return corral__redis_begin(s->pool, role, c);
    return corral__redis_cluster_begin_node(s->cluster, node, role, c);
}

/* The lease subscriber's connection (redis_notify.h: connect_fn; `store` a redis_store): to the
 * server's primary, or to a primary of the cluster (corral__redis_cluster_connect_any). */
struct redisContext *corral__redis_notify_connect(void *store);

/* The length of the envelope header a stored value begins with: 0 for none, and always 0 in
 * Django's format, whose values carry no envelope. */
static inline size_t header_len(const redis_store *s, const char *bytes, size_t len) {
    return s->django ? 0 : corral__env_hdr_len(bytes, len);
}

/* A value holding a copy of a reply's bytes (decoded in Django's format), its envelope header
 * (if any) before its bytes (corral__value_data). CORRAL_OK, CORRAL_ENOMEM or CORRAL_EFORMAT. */
int corral__redis_make_value(redis_store *s, const redisReply *r, corral_value **out);
/* A GET of `k` through a connection of `role` (on a cluster: on its slot's node, following
 * redirections): the store's get with READ, the near cache's read of a moving slot with
 * READ_PRIMARY. */
int corral__redis_get_role(redis_store *s, corral__redis_role role, const corral__skey *k,
                           corral_value **out);
/* Formats `v` in decimal into `buf` (TTL_DIGITS bytes); returns its length. */
size_t corral__redis_fmt_i64(char *buf, int64_t v);
/* The remaining TTL a PTTL reply gives, as corral__redis_get_ttl reports it. */
int64_t corral__redis_ttl_of(const redisReply *t);

/* Tells this process's other near caches on the server that `n` keys of `ks` changed (NULL:
 * every key), after a write (near_peers.h). */
void corral__redis_wrote(redis_store *s, const corral__skey *ks, size_t n);

/* redis_many.c: the vtable's many-ops and clear_prefix (store.h). */
int corral__redis_get_many(corral__store *base, const corral__skey *ks, size_t n,
                           corral_value **out);
int corral__redis_set_many(corral__store *base, const corral__skey *ks, const corral_buf *vals,
                           size_t n, int64_t ttl_ms, unsigned flags);
int corral__redis_del_many(corral__store *base, const corral__skey *ks, size_t n, size_t *deleted);
int corral__redis_clear_prefix(corral__store *base, const char *prefix, size_t len);

/* redis_cluster_many.c: the many-ops and get_checked on a cluster (s->cluster set), called by
 * the functions above and by redis.c's get_checked; contracts as store.h's. */
int corral__redis_cluster_get_many(redis_store *s, const corral__skey *ks, size_t n,
                                   corral_value **out, int64_t *ttls);
int corral__redis_cluster_set_many(redis_store *s, const corral__skey *ks, const corral_buf *vals,
                                   size_t n, int64_t ttl_ms, unsigned flags);
int corral__redis_cluster_del_many(redis_store *s, const corral__skey *ks, size_t n,
                                   size_t *deleted);
int corral__redis_cluster_get_checked(redis_store *s, const corral__skey *k, corral_value **out);

#endif /* CORRAL_STORE_REDIS_INTERNAL_H */
