/*
 * redis_internal.h - what the two files of the Redis store share: the store's struct and the
 * helpers redis.c (single-key operations, scripts, open) and redis_many.c (batches and
 * clear_prefix) both call. Not for use outside src/store/redis*.c.
 */
#ifndef CORRAL_STORE_REDIS_INTERNAL_H
#define CORRAL_STORE_REDIS_INTERNAL_H

#include "redis.h"
#include "redis_pool.h"
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
    corral__redis_pool *pool;
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

/* The length of the envelope header a stored value begins with: 0 for none, and always 0 in
 * Django's format, whose values carry no envelope. */
static inline size_t header_len(const redis_store *s, const char *bytes, size_t len) {
    return s->django ? 0 : corral__env_hdr_len(bytes, len);
}

/* A value holding a copy of a reply's bytes (decoded in Django's format), its envelope header
 * (if any) before `data`. CORRAL_OK, CORRAL_ENOMEM or CORRAL_EFORMAT. */
int corral__redis_make_value(redis_store *s, const redisReply *r, corral_value **out);
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

#endif /* CORRAL_STORE_REDIS_INTERNAL_H */
