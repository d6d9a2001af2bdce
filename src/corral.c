/*
 * corral.c - the handle: open and close, Django's cache operations, and the wiring of metrics.
 * The top of the library's one-way house (handle.h): it calls the loader, invalidate.c and the
 * access layer, and nothing below calls it.
 *
 * Every keyed operation is: build and validate the physical key into a stack buffer (access.h,
 * which also finds the metrics class of the user key's prefix), reach the store through the
 * access layer (its reads and writes for values, its pass-throughs for the store's own verbs:
 * delete, touch, ttl, incr, clear), count. The handle calls the store vtable itself only to open
 * and close it and to read its gauges, counters and servers' status, and it inlines the memory
 * store's read path (get_hot, get_into_hot). The store reports what it holds (added, replaced,
 * deleted, evicted, expired) through the events callback, which keeps the per-prefix gauges and the
 * eviction/expiration counters.
 *
 * Threads: the handle's fields are written by corral_open_opts only and read-only afterwards;
 * the store and the metrics do their own locking. No lock is held here.
 */
#include "access.h"
#include "store/memory.h"
#include "store/memory_read.h"
#include "store/redis.h"
#include "store/tiered.h"
#include "prom.h"

#include <stdio.h>
#include <string.h>

/* ---- Store events -> metrics ---- */

static void on_store_change(void *ctx, uint16_t cls, corral__change why, size_t bytes) {
    corral *c = ctx;
    int64_t b = (int64_t)bytes;
    if (why == CORRAL__OVERWRITTEN) return; /* the same item, the same bytes: nothing moves */
    if (why == CORRAL__ADDED) {
        corral__metrics_add(c->metrics, cls, CORRAL__M_cache_items, 1);
        corral__metrics_add(c->metrics, cls, CORRAL__M_cache_bytes, b);
        return;
    }
    corral__metrics_add(c->metrics, cls, CORRAL__M_cache_items, -1);
    corral__metrics_add(c->metrics, cls, CORRAL__M_cache_bytes, -b);
    if (why == CORRAL__EVICTED)
        corral__metrics_add(c->metrics, cls, CORRAL__M_cache_evictions_total, 1);
    if (why == CORRAL__EXPIRED)
        corral__metrics_add(c->metrics, cls, CORRAL__M_cache_expirations_total, 1);
    if (why == CORRAL__DELETED)
        corral__metrics_add(c->metrics, cls, CORRAL__M_cache_deletes_total, 1);
}

/* ---- Open and close ---- */

/* Frees a handle whose open failed part way; every part accepts "never made". */
static void open_undo(corral *c) {
    corral__allocator a = c->alloc;
    corral__loader_close(c);
    corral__rules_free(c);
    corral__metrics_free(c->metrics);
    corral__free(&a, c->key_prefix, c->key_prefix_len + 1);
    corral__free(&a, c, sizeof *c);
}

int corral_open_opts(corral **out, const corral_options *o, corral_error *err) {
    if (out) *out = NULL;
    if (!out || !o) return corral__seterr(err, CORRAL_EINVAL, "corral_open: NULL argument");
    bool is_redis = o->store && strcmp(o->store, "redis") == 0;
    if (o->store && strcmp(o->store, "mem") != 0 && !is_redis)
        return corral__seterr(err, CORRAL_EBADURL,
                              "store: unknown store '%.32s' (known: mem, redis)", o->store);
    if (o->max_memory_bytes == 0)
        return corral__seterr(err, CORRAL_EINVAL, "max_memory: must be more than 0");
    if (o->default_ttl_ms < 0 && o->default_ttl_ms != CORRAL_TTL_FOREVER)
        return corral__seterr(err, CORRAL_EINVAL, "timeout: must be >= 0 or none");
    if (o->version == CORRAL_VERSION_DEFAULT)
        return corral__seterr(err, CORRAL_EINVAL, "version: INT64_MIN is reserved");
    if (o->max_prefixes > 65000)
        return corral__seterr(err, CORRAL_EINVAL, "max_prefixes: at most 65000");
    if ((o->allocator.alloc || o->allocator.realloc || o->allocator.free) &&
        !(o->allocator.alloc && o->allocator.realloc && o->allocator.free))
        return corral__seterr(err, CORRAL_EINVAL, "allocator: set all three hooks or none");
    const char *prefix = o->key_prefix ? o->key_prefix : "";
    size_t prefix_len = strlen(prefix);
    if (prefix_len > CORRAL__MAX_KEY)
        return corral__seterr(err, CORRAL_EBADKEY, "key_prefix: longer than 250 bytes");

    corral__allocator a;
    corral__allocator_init(&a, &o->allocator);
    corral *c = corral__calloc(&a, 1, sizeof *c);
    if (!c) return corral__seterr(err, CORRAL_ENOMEM, "corral_open: out of memory");
    c->alloc = a;
    c->now_ns = o->now_ns ? o->now_ns : corral__realtime_ns;
    c->clock_ctx = o->now_ns ? o->clock_ctx : NULL;
    c->rand64 = o->rand64;
    c->rand_ctx = o->rand_ctx;
    /* The default generator's seed: the clock and the handle's address, so two handles (and two
     * processes) differ. */
    atomic_init(&c->rng, corral__realtime_ns(NULL) ^ ((uint64_t)(uintptr_t)c << 16));
    c->refresh_workers = o->refresh_workers ? o->refresh_workers : 2;
    c->default_ttl_ms = o->default_ttl_ms;
    c->max_value_bytes = o->max_value_bytes ? o->max_value_bytes : o->max_memory_bytes / 16;
    c->max_key_bytes = o->allow_binary_keys ? CORRAL__MAX_BINARY_KEY : CORRAL__MAX_KEY;
    c->key_prefix = corral__strndup(&c->alloc, prefix, prefix_len);
    c->key_prefix_len = prefix_len;
    if (!c->key_prefix) goto nomem;
    corral__keyscheme_init(&c->ks, c->key_prefix, prefix_len, o->version, o->allow_binary_keys,
                           o->key_fn, o->key_fn_ctx);
    if (corral__metrics_new(&c->metrics, &c->alloc, o->max_prefixes) != CORRAL_OK) goto nomem;
    c->metrics_id = corral__metrics_id(c->metrics);
    c->cls_internal = corral__metrics_internal_class(c->metrics);
    if (corral__rules_new(c) != CORRAL_OK) goto nomem;
    if (corral__loader_new(c) != CORRAL_OK) goto nomem;

    corral__mem_config mc = { .max_bytes = o->max_memory_bytes,
                              .max_value_bytes = c->max_value_bytes,
                              .eviction = o->eviction,
                              .shards = o->shards,
                              .key_hash_ctx = &c->ks }; /* corral__key_hash_of */
    corral__store_env env = { .alloc = &c->alloc,
                              .now_ns = c->now_ns,
                              .clock_ctx = c->clock_ctx,
                              .events = { .ctx = c, .changed = on_store_change },
                              .key_prefix = c->key_prefix,
                              .key_prefix_len = c->key_prefix_len,
                              .on_state = o->on_store_state,
                              .state_ctx = o->store_state_ctx };
    int rc = is_redis ? corral__redis_open(&c->store, &o->redis, c->max_value_bytes, &env, err)
                      : corral__mem_open(&c->store, &mc, &env);
    if (rc == CORRAL_OK && is_redis && o->redis.near_cache_bytes) {
        corral__tiered_config tc = { .near_bytes = o->redis.near_cache_bytes,
                                     .key_prefix = c->key_prefix,
                                     .key_prefix_len = c->key_prefix_len,
                                     .track_all = o->key_fn != NULL,
                                     .ks = &c->ks,
                                     .ping_timeout_ms = o->redis.command_timeout_ms };
        corral__store *redis = c->store;
        c->store = NULL;
        rc = corral__tiered_open_take(&c->store, redis, &tc, &env, err);
    }
    if (rc != CORRAL_OK) {
        open_undo(c);
        if (is_redis) return rc; /* the Redis store explained in `err` */
        return corral__seterr(err, rc, "memory store: %s", corral_strerror(rc));
    }
    c->hot_reads = c->ks.hot && !is_redis;
    c->magic = CORRAL_MAGIC;
    *out = c;
    return CORRAL_OK;
nomem:
    open_undo(c);
    return corral__seterr(err, CORRAL_ENOMEM, "corral_open: out of memory");
}

int corral_open(corral **out, const char *url, corral_error *err) {
    if (out) *out = NULL;
    if (!out) return corral__seterr(err, CORRAL_EINVAL, "corral_open: NULL argument");
    corral_options o;
    corral_options_init(&o);
    size_t cap = url ? strlen(url) + 1 : 1;
    char small[512];
    corral__allocator a;
    corral__allocator_init(&a, NULL);
    char *buf = cap <= sizeof small ? small : corral__alloc(&a, cap);
    if (!buf) return corral__seterr(err, CORRAL_ENOMEM, "corral_open: out of memory");
    int rc = corral_options_parse_url(&o, url, buf, cap, err);
    if (rc == CORRAL_OK) rc = corral_open_opts(out, &o, err);
    if (buf != small) corral__free(&a, buf, cap);
    return rc;
}

void corral_release_memory(void) {
    corral__mem_depot_drain();
}

void corral_close(corral *c) {
    if (!c) return;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__allocator a = c->alloc;
    corral__loader_close(c); /* refresh workers may still use the store */
    corral__rules_free(c);
    c->store->ops->close(c->store);
    corral__metrics_free(c->metrics);
    corral__free(&a, c->key_prefix, c->key_prefix_len + 1);
    c->magic = 0;
    corral__free(&a, c, sizeof *c);
}

int corral_store_status(corral *c, size_t i, corral_server_status *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!c || !out) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    if (!c->store->ops->status) return CORRAL_ENOTSUP;
    int rc = c->store->ops->status(c->store, i, out);
    if (rc != CORRAL_OK) memset(out, 0, sizeof *out);
    return rc;
}

void corral_free(corral *c, void *p) {
    if (!p) return;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__user_free(&c->alloc, p);
}

/* corral_make_key and corral_make_key_read: `create` makes a namespace's missing generation. */
static int make_key(corral *c, const void *key, size_t key_len, const corral_call *call,
                    bool create, char *out, size_t cap, size_t *out_len) {
    if (out_len) *out_len = 0;
    if (!c || !out_len || (!out && cap)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = create ? corral__make_skey(c, key, key_len, call, buf, &sk)
                    : corral__make_skey_read(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    size_t len = sk.len;
    *out_len = len;
    if (cap < len + 1) return CORRAL_ENOSPC;
    memcpy(out, buf, len + 1);
    return CORRAL_OK;
}

int corral_make_key(corral *c, const void *key, size_t key_len, const corral_call *call, char *out,
                    size_t cap, size_t *out_len) {
    return make_key(c, key, key_len, call, true, out, cap, out_len);
}

int corral_make_key_read(corral *c, const void *key, size_t key_len, const corral_call *call,
                         char *out, size_t cap, size_t *out_len) {
    return make_key(c, key, key_len, call, false, out, cap, out_len);
}

static void count(corral *c, uint16_t cls, int metric) {
    corral__metrics_add_inline(c->metrics, c->metrics_id, cls, metric, 1);
}

/* ---- Single-key operations ---- */

/* noinline: corral_get is flattened (below) and this is not its fast path. */
static __attribute__((noinline)) int get_general(corral *c, const void *key, size_t key_len,
                                                 const corral_call *call, corral_value **out);

/* Counts an answer of the read path (get_hot, get_into_hot): a hit under the class the store
 * reported, a miss under the key's class. False when the general path must answer instead. */
static inline bool hot_answered(corral *c, int rc, uint16_t cls, const void *key, size_t key_len) {
    if (rc == CORRAL_OK || rc == CORRAL_ENOSPC)
        corral__metrics_add_inline(c->metrics, c->metrics_id, cls, CORRAL__M_cache_hits_total, 1);
    else if (rc == CORRAL_MISS)
        count(c, corral__key_class(c, key, key_len, NULL), CORRAL__M_cache_misses_total);
    return rc != CORRAL__MEM_HOT_SLOW;
}

/* get without a call on a handle with hot_reads: get_into_hot's way (below), with a reference
 * instead of a copy. */
static int get_hot(corral *c, const void *key, size_t key_len, corral_value **out) {
    uint16_t cls = 0;
    int rc = corral__mem_get_hot(c->store, &c->ks, key, key_len, out, &cls);
    return hot_answered(c, rc, cls, key, key_len) ? rc : get_general(c, key, key_len, NULL, out);
}

/* flatten: the read path (get_hot, the memory store's inline read, XXH3) is one function; a get's
 * instruction count bounds it (docs/eviction.md). */
__attribute__((flatten)) int corral_get(corral *c, const void *key, size_t key_len,
                                        const corral_call *call, corral_value **out) {
    if (out) *out = NULL;
    if (!c || !out) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    if (!call && c->hot_reads) return get_hot(c, key, key_len, out);
    return get_general(c, key, key_len, call, out);
}

static int get_general(corral *c, const void *key, size_t key_len, const corral_call *call,
                       corral_value **out) {
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey_read(c, key, key_len, call, buf, &sk);
    if (rc < 0) return rc;
    if (rc == CORRAL_OK) rc = corral__read_fresh(c, &sk, corral__now_ms(c), out);
    if (rc == CORRAL_OK)
        count(c, sk.cls, CORRAL__M_cache_hits_total);
    else if (rc == CORRAL_MISS)
        count(c, sk.cls, CORRAL__M_cache_misses_total);
    return rc;
}

/* get_into without a call on a handle with hot_reads: the memory store's read path, inline
 * (store/memory_read.h), hashes the key where the caller has it and copies the value out, and
 * a hit counts under the class its entry was stored with, so the class table is read only on a
 * miss. What it leaves (an enveloped or expired entry, LRU) takes the general path below.
 * Same results and counters either way. */
/* noinline: corral_get_into is flattened (below) and this is not its fast path. */
static __attribute__((noinline)) int get_into_general(corral *c, const void *key, size_t key_len,
                                                      const corral_call *call, void *buf,
                                                      size_t cap, size_t *out_len);

static int get_into_hot(corral *c, const void *key, size_t key_len, void *buf, size_t cap,
                        size_t *out_len) {
    uint16_t cls = 0;
    int rc = corral__mem_get_into_hot(c->store, &c->ks, key, key_len, buf, cap, out_len, &cls);
    if (hot_answered(c, rc, cls, key, key_len)) return rc;
    *out_len = 0;
    return get_into_general(c, key, key_len, NULL, buf, cap, out_len);
}

/* flatten: as corral_get. */
__attribute__((flatten)) int corral_get_into(corral *c, const void *key, size_t key_len,
                                             const corral_call *call, void *buf, size_t cap,
                                             size_t *out_len) {
    if (out_len) *out_len = 0;
    if (!c || !out_len || (!buf && cap)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    if (!call && c->hot_reads) return get_into_hot(c, key, key_len, buf, cap, out_len);
    return get_into_general(c, key, key_len, call, buf, cap, out_len);
}

static int get_into_general(corral *c, const void *key, size_t key_len, const corral_call *call,
                            void *buf, size_t cap, size_t *out_len) {
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey_read(c, key, key_len, call, kbuf, &sk);
    if (rc < 0) return rc;
    if (rc == CORRAL_OK) rc = corral__read_fresh_into(c, &sk, buf, cap, out_len);
    /* A value too big for the caller's buffer was found: it counts as a hit. */
    if (rc == CORRAL_OK || rc == CORRAL_ENOSPC)
        count(c, sk.cls, CORRAL__M_cache_hits_total);
    else if (rc == CORRAL_MISS)
        count(c, sk.cls, CORRAL__M_cache_misses_total);
    return rc;
}

/* The envelope of a plain set: the call's tags, with their versions read now. `vbuf` holds the
 * versions. Returns CORRAL_OK with env->flags 0 when the call has no tags. */
static int set_env(corral *c, const corral_call *call, corral__env *env, char *vbuf, size_t cap) {
    memset(env, 0, offsetof(corral__env, tags));
    if (!call || call->n_tags == 0) return CORRAL_OK;
    if (!call->tags) return CORRAL_EINVAL;
    return corral__tags_read(c, call->tags, call->n_tags, env, vbuf, cap);
}

#define TAG_VBUF (CORRAL__ENV_MAX_TAGS * 24)

/* set and add share everything but the mode. */
static int do_set(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
                  int64_t ttl_ms, const corral_call *call, corral__set_mode mode) {
    if (!c || (!val && val_len)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    if (call && call->n_tags && !corral__has_envelopes(c))
        return CORRAL_ENOTSUP; /* before anything is written (a namespace's generation) */
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    if (val_len > c->max_value_bytes) return CORRAL_ETOOBIG;
    int64_t store_ttl;
    rc = corral__resolve_ttl(c, ttl_ms, &store_ttl);
    if (rc < 0) return rc;
    if (rc == CORRAL_MISS) {
        /* TTL 0: store nothing. A set removes the old value; an add reports whether one is
         * there (Django's redis backend: SET NX then DEL). */
        if (mode == CORRAL__SET_NX) {
            corral_value *v = NULL;
            rc = corral__read_fresh(c, &sk, corral__now_ms(c), &v);
            corral_value_unref(v);
            return rc == CORRAL_OK ? CORRAL_EXISTS : rc == CORRAL_MISS ? CORRAL_OK : rc;
        }
        rc = corral__del(c, &sk);
        return rc < 0 ? rc : CORRAL_OK;
    }
    corral__env env;
    char vbuf[TAG_VBUF];
    rc = set_env(c, call, &env, vbuf, sizeof vbuf);
    if (rc != CORRAL_OK) return rc;
    unsigned flags = corral__write_flags(call);
    rc = corral__store_set_env_flags(c, &sk, &env, val, val_len, store_ttl, mode, flags);
    if (rc == CORRAL_EXISTS) {
        /* An add over a value that reads as a miss (busted tags, logically expired) replaces it,
         * as Django's add over an expired key does. Best effort: a concurrent add may win. */
        corral_value *v = NULL;
        int got = corral__read_fresh(c, &sk, corral__now_ms(c), &v);
        corral_value_unref(v);
        if (got == CORRAL_MISS)
            rc = corral__store_set_env_flags(c, &sk, &env, val, val_len, store_ttl,
                                             CORRAL__SET_ALWAYS, flags);
    }
    if (rc == CORRAL_OK) count(c, sk.cls, CORRAL__M_cache_sets_total);
    return rc;
}

/* set without a call on a handle with hot_reads (a memory store, a hot key scheme) of a raw
 * value that it stores: the memory store takes the user key and its class as the caller has
 * them (corral__mem_set_hot), so the key is hashed where it is and an overwrite in place
 * neither builds nor checks the store key. What it leaves (a call, TTL 0 or an invalid one, a
 * value over the bound, one that needs an envelope) takes do_set. Same results and counters
 * either way. */
static int set_hot(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
                   int64_t store_ttl) {
    if (!key && key_len) return CORRAL_EBADKEY;
    uint16_t cls = corral__key_class(c, key, key_len, NULL);
    int rc = corral__mem_set_hot(c->store, &c->ks, key, key_len, cls, val, val_len, store_ttl);
    if (rc == CORRAL_OK) count(c, cls, CORRAL__M_cache_sets_total);
    return rc;
}

int corral_set(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
               int64_t ttl_ms, const corral_call *call) {
    if (c && !call && (val || !val_len)) {
        CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
        int64_t store_ttl;
        if (c->hot_reads && val_len <= c->max_value_bytes &&
            corral__resolve_ttl(c, ttl_ms, &store_ttl) == CORRAL_OK &&
            !corral__env_needed_for_raw(val, val_len))
            return set_hot(c, key, key_len, val, val_len, store_ttl);
    }
    return do_set(c, key, key_len, val, val_len, ttl_ms, call, CORRAL__SET_ALWAYS);
}

int corral_add(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
               int64_t ttl_ms, const corral_call *call) {
    return do_set(c, key, key_len, val, val_len, ttl_ms, call, CORRAL__SET_NX);
}

int corral_delete(corral *c, const void *key, size_t key_len, const corral_call *call) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    return corral__delete_key(c, key, key_len, call);
}

int corral_touch(corral *c, const void *key, size_t key_len, int64_t ttl_ms,
                 const corral_call *call) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey_read(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    int64_t store_ttl;
    rc = corral__resolve_ttl(c, ttl_ms, &store_ttl);
    if (rc < 0) return rc;
    if (rc == CORRAL_MISS) return corral__del(c, &sk); /* touch(0): expire now */
    return corral__touch(c, &sk, store_ttl);
}

int corral_ttl(corral *c, const void *key, size_t key_len, const corral_call *call,
               int64_t *ttl_ms) {
    if (ttl_ms) *ttl_ms = 0;
    if (!c || !ttl_ms) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey_read(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    int64_t left = 0;
    rc = corral__ttl(c, &sk, &left);
    if (rc == CORRAL_OK) *ttl_ms = left == CORRAL__NO_EXPIRY ? CORRAL_TTL_FOREVER : left;
    return rc;
}

int corral_incr(corral *c, const void *key, size_t key_len, int64_t delta, const corral_call *call,
                int64_t *out) {
    if (out) *out = 0;
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__make_skey_read(c, key, key_len, call, buf, &sk);
    if (rc != CORRAL_OK) return rc;
    int64_t v = 0;
    rc = corral__incr(c, &sk, delta, &v);
    if (rc == CORRAL_OK) {
        count(c, sk.cls, CORRAL__M_cache_sets_total);
        if (out) *out = v;
    }
    return rc;
}

int corral_has(corral *c, const void *key, size_t key_len, const corral_call *call) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, key_len, call, &v);
    corral_value_unref(v);
    return rc;
}

/* ---- Many-ops ---- */

/* Physical keys of a batch: one block holding every key, so validation of all comes first. */
typedef struct batch {
    corral__skey *keys;
    char *bytes;
    size_t n, stride;
} batch;

static void batch_free(corral *c, batch *b) {
    corral__free(&c->alloc, b->keys, b->n * sizeof *b->keys);
    corral__free(&c->alloc, b->bytes, b->n * b->stride);
}

static int batch_build(corral *c, const corral_buf *keys, size_t n, const corral_call *call,
                       batch *b) {
    memset(b, 0, sizeof *b);
    if (n == 0) return CORRAL_OK;
    if (!keys) return CORRAL_EINVAL;
    b->stride = c->max_key_bytes + 1;
    b->keys = corral__alloc3(&c->alloc, n, sizeof *b->keys, 0);
    b->bytes = corral__alloc3(&c->alloc, n, b->stride, 0);
    b->n = n;
    if (!b->keys || !b->bytes) {
        batch_free(c, b);
        return CORRAL_ENOMEM;
    }
    /* Each key is built in place: a physical key never exceeds max_key_bytes + 1 (the stride). */
    corral__prefix_cache pc = { 0 };
    for (size_t i = 0; i < n; i++) {
        char *dst = b->bytes + i * b->stride;
        int rc = corral__make_skey_batch(c, keys[i].data, keys[i].len, call, dst, &b->keys[i], &pc);
        if (rc != CORRAL_OK) {
            batch_free(c, b);
            return rc;
        }
    }
    return CORRAL_OK;
}

int corral_get_many(corral *c, const corral_buf *keys, size_t n, const corral_call *call,
                    corral_value **out, size_t *found) {
    if (found) *found = 0;
    if (!c || (!out && n)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    batch b;
    int rc = batch_build(c, keys, n, call, &b);
    if (rc != CORRAL_OK) return rc;
    rc = n ? corral__read_many_fresh(c, b.keys, n, out) : CORRAL_OK;
    if (rc == CORRAL_OK) {
        /* Counted once per run of keys of one class: a batch's keys mostly share a prefix. */
        size_t hits = 0, run_hits = 0, run_misses = 0;
        for (size_t i = 0; i < n; i++) {
            hits += out[i] != NULL;
            run_hits += out[i] != NULL;
            run_misses += out[i] == NULL;
            if (i + 1 == n || b.keys[i + 1].cls != b.keys[i].cls) {
                uint16_t cls = b.keys[i].cls;
                if (run_hits)
                    corral__metrics_add(c->metrics, cls, CORRAL__M_cache_hits_total,
                                        (int64_t)run_hits);
                if (run_misses)
                    corral__metrics_add(c->metrics, cls, CORRAL__M_cache_misses_total,
                                        (int64_t)run_misses);
                run_hits = run_misses = 0;
            }
        }
        if (found) *found = hits;
    }
    batch_free(c, &b);
    return rc;
}

int corral_set_many(corral *c, const corral_buf *keys, const corral_buf *vals, size_t n,
                    int64_t ttl_ms, const corral_call *call) {
    if (!c || (!vals && n)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    if (call && call->n_tags && !corral__has_envelopes(c)) return CORRAL_ENOTSUP;
    int64_t store_ttl = 0;
    int ttl_rc = corral__resolve_ttl(c, ttl_ms, &store_ttl);
    if (ttl_rc < 0) return ttl_rc;
    for (size_t i = 0; i < n; i++) {
        if (!vals[i].data && vals[i].len) return CORRAL_EINVAL;
        if (vals[i].len > c->max_value_bytes) return CORRAL_ETOOBIG;
    }
    batch b;
    int rc = batch_build(c, keys, n, call, &b);
    if (rc != CORRAL_OK || n == 0) return rc;
    if (ttl_rc == CORRAL_MISS) {
        size_t d;
        rc = corral__del_many(c, b.keys, n, &d);
    } else {
        corral__env env;
        char vbuf[TAG_VBUF];
        rc = set_env(c, call, &env, vbuf, sizeof vbuf);
        if (rc == CORRAL_OK)
            rc = corral__set_many_env(c, b.keys, vals, n, &env, store_ttl,
                                      corral__write_flags(call));
        if (rc == CORRAL_OK) {
            for (size_t i = 0; i < n; i++)
                count(c, b.keys[i].cls, CORRAL__M_cache_sets_total);
        }
    }
    batch_free(c, &b);
    return rc < 0 ? rc : CORRAL_OK;
}

int corral_delete_many(corral *c, const corral_buf *keys, size_t n, const corral_call *call,
                       size_t *deleted) {
    if (deleted) *deleted = 0;
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    batch b;
    int rc = batch_build(c, keys, n, call, &b);
    if (rc != CORRAL_OK || n == 0) return rc;
    size_t d = 0;
    rc = corral__del_many(c, b.keys, n, &d);
    if (deleted) *deleted = d;
    batch_free(c, &b);
    return rc;
}

int corral_clear(corral *c) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    return corral__clear(c);
}

int corral_clear_prefix(corral *c) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    return corral__clear_prefix(c);
}

/* ---- Versions ---- */

int corral_incr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                        const corral_call *call, int64_t *new_version) {
    if (new_version) *new_version = 0;
    if (!c || delta == 0) return CORRAL_EINVAL; /* 0 would set, then delete, the same key */
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    int64_t v = call ? call->version : CORRAL_VERSION_DEFAULT;
    if (v == CORRAL_VERSION_DEFAULT) v = c->ks.version;
    if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN + 1 - delta))
        return CORRAL_ERANGE;
    int64_t nv = v + delta;
    corral_call from = { .version = v }, to = { .version = nv };
    /* Validate the destination key before touching anything. */
    char buf[CORRAL__KEYBUF];
    size_t len;
    int rc = corral__key_build(&c->ks, nv, key, key_len, buf, sizeof buf, &len);
    if (rc != CORRAL_OK) return rc;
    corral_value *val = NULL;
    rc = corral_get(c, key, key_len, &from, &val);
    if (rc != CORRAL_OK) return rc;
    rc = corral_set(c, key, key_len, corral_value_data(val), corral_value_len(val),
                    CORRAL_TTL_DEFAULT, &to);
    corral_value_unref(val);
    if (rc != CORRAL_OK) return rc;
    rc = corral_delete(c, key, key_len, &from);
    if (rc < 0) return rc;
    if (new_version) *new_version = nv;
    return CORRAL_OK;
}

int corral_decr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                        const corral_call *call, int64_t *new_version) {
    if (delta == INT64_MIN) {
        if (new_version) *new_version = 0;
        return CORRAL_ERANGE;
    }
    return corral_incr_version(c, key, key_len, -delta, call, new_version);
}

/* ---- Metrics ---- */

int corral_stats(corral *c, corral_stats_snapshot **out) {
    if (out) *out = NULL;
    if (!c || !out) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    int rc = corral__metrics_snapshot(c->metrics, out);
    if (rc != CORRAL_OK) return rc;
    (*out)->max_memory_bytes = c->store->ops->max_bytes(c->store);
    (*out)->used_bytes = c->store->ops->used_bytes(c->store);
    return CORRAL_OK;
}

void corral_stats_free(corral *c, corral_stats_snapshot *s) {
    if (!s) return;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__metrics_snapshot_free(c->metrics, s);
}

int corral_metrics_write(corral *c, char **out, size_t *out_len) {
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!c || !out || !out_len) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char extra[8192]; /* the store's gauges and rows: redis+near passes 4 KB, a cluster more */
    const struct {
        const char *name, *help;
        size_t v;
    } gauges[] = {
        { "used_bytes", "Bytes the store accounts for now.", c->store->ops->used_bytes(c->store) },
        { "max_bytes", "The store's bound in bytes (0: none).",
          c->store->ops->max_bytes(c->store) },
    };
    int n = 0;
    for (size_t i = 0; i < 2; i++) {
        int h = corral__prom_family(extra + n, sizeof extra - (size_t)n, "corral_store_",
                                    gauges[i].name, "gauge", gauges[i].help);
        if (h < 0 || (size_t)h >= sizeof extra - (size_t)n) return CORRAL_EINVAL;
        n += h;
        h = snprintf(extra + n, sizeof extra - (size_t)n, "corral_store_%s{store=\"%s\"} %zu\n",
                     gauges[i].name, c->store->ops->name, gauges[i].v);
        if (h < 0 || (size_t)h >= sizeof extra - (size_t)n) return CORRAL_EINVAL;
        n += h;
    }
    /* The store's own counters (Redis: errors, timeouts, reconnects, ...) follow its gauges. */
    if (c->store->ops->metrics_text &&
        c->store->ops->metrics_text(c->store, extra + n, sizeof extra - (size_t)n) != CORRAL_OK)
        return CORRAL_EINVAL;
    return corral__metrics_prometheus(c->metrics, extra, out, out_len);
}
