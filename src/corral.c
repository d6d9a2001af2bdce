/*
 * corral.c - the handle: options, Django's cache operations over the store vtable, and the
 * wiring of metrics.
 *
 * Every keyed operation is: build and validate the physical key (key.c) into a stack buffer,
 * find the metrics class of the user key's prefix (metrics.c), call the store, count. The store
 * reports what it holds (added, replaced, deleted, evicted, expired) through the events
 * callback, which keeps the per-prefix gauges and the eviction/expiration counters.
 *
 * Threads: the handle's fields are written by corral_open_opts only and read-only afterwards;
 * the store and the metrics do their own locking. No lock is held here.
 */
#include "common.h"
#include "key.h"
#include "metrics.h"
#include "value.h"
#include "store/memory.h"
#include "store/store.h"

#include <stdio.h>
#include <string.h>

#define CORRAL_MAGIC 0xc0441a1du
#define STR2(x)      #x
#define STR(x)       STR2(x)

struct corral {
    uint32_t magic;
    corral__allocator alloc;
    corral_clock_fn now_ns;
    void *clock_ctx;
    char *key_prefix; /* owned copy */
    size_t key_prefix_len;
    corral__keyscheme ks;
    int64_t default_ttl_ms; /* > 0, 0 (store nothing) or CORRAL_TTL_FOREVER */
    size_t max_value_bytes;
    size_t max_key_bytes; /* the longest physical key validation accepts */
    corral__store *store;
    corral__metrics *metrics;
};

/* ---- Codes ---- */

const char *corral_strerror(int rc) {
    switch (rc) {
    case CORRAL_OK: return "success";
    case CORRAL_MISS: return "key not found";
    case CORRAL_EXISTS: return "key already exists";
    case CORRAL_EINVAL: return "invalid argument";
    case CORRAL_ENOMEM: return "out of memory";
    case CORRAL_EBADKEY: return "invalid key (over 250 bytes, or a control or space byte)";
    case CORRAL_ETOOBIG: return "value too large for the store";
    case CORRAL_ENOTINT: return "value is not a decimal integer";
    case CORRAL_ERANGE: return "integer overflow";
    case CORRAL_ENOSPC: return "buffer too small";
    case CORRAL_EBADURL: return "malformed URL or option";
    case CORRAL_ESTORE: return "store failure";
    case CORRAL_ENOTSUP: return "operation not supported by the store";
    case CORRAL_ETIMEDOUT: return "timed out";
    default: return "unknown error code";
    }
}

const char *corral_version(void) {
    return STR(CORRAL_VERSION_MAJOR) "." STR(CORRAL_VERSION_MINOR) "." STR(CORRAL_VERSION_PATCH);
}

/* ---- Store events -> metrics ---- */

static void on_store_change(void *ctx, uint16_t cls, corral__change why, size_t bytes) {
    corral *c = ctx;
    int64_t b = (int64_t)bytes;
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

int corral_open_opts(corral **out, const corral_options *o, corral_error *err) {
    if (out) *out = NULL;
    if (!out || !o) return corral__seterr(err, CORRAL_EINVAL, "corral_open: NULL argument");
    if (o->store && strcmp(o->store, "mem") != 0)
        return corral__seterr(err, CORRAL_EBADURL, "store: unknown store '%.32s' (known: mem)",
                              o->store);
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
    c->default_ttl_ms = o->default_ttl_ms;
    c->max_value_bytes = o->max_value_bytes ? o->max_value_bytes : o->max_memory_bytes / 16;
    c->max_key_bytes = o->allow_binary_keys ? CORRAL__MAX_BINARY_KEY : CORRAL__MAX_KEY;
    c->key_prefix = corral__strndup(&c->alloc, prefix, prefix_len);
    c->key_prefix_len = prefix_len;
    if (!c->key_prefix) goto nomem;
    corral__keyscheme_init(&c->ks, c->key_prefix, prefix_len, o->version, o->allow_binary_keys,
                           o->key_fn, o->key_fn_ctx);
    if (corral__metrics_new(&c->metrics, &c->alloc, o->max_prefixes) != CORRAL_OK) goto nomem;

    corral__mem_config mc = { .max_bytes = o->max_memory_bytes,
                              .max_value_bytes = c->max_value_bytes,
                              .eviction = o->eviction,
                              .shards = o->shards };
    corral__store_env env = { .alloc = &c->alloc,
                              .now_ns = c->now_ns,
                              .clock_ctx = c->clock_ctx,
                              .events = { .ctx = c, .changed = on_store_change } };
    int rc = corral__mem_open(&c->store, &mc, &env);
    if (rc != CORRAL_OK) {
        corral__metrics_free(c->metrics);
        corral__free(&c->alloc, c->key_prefix, prefix_len + 1);
        corral__free(&a, c, sizeof *c);
        return corral__seterr(err, rc, "memory store: %s", corral_strerror(rc));
    }
    c->magic = CORRAL_MAGIC;
    *out = c;
    return CORRAL_OK;
nomem:
    corral__metrics_free(c->metrics);
    corral__free(&c->alloc, c->key_prefix, prefix_len + 1);
    corral__free(&a, c, sizeof *c);
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

void corral_close(corral *c) {
    if (!c) return;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__allocator a = c->alloc;
    c->store->ops->close(c->store);
    corral__metrics_free(c->metrics);
    corral__free(&a, c->key_prefix, c->key_prefix_len + 1);
    c->magic = 0;
    corral__free(&a, c, sizeof *c);
}

void corral_free(corral *c, void *p) {
    if (!p) return;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__user_free(&c->alloc, p);
}

/* ---- Keys ---- */

static int64_t call_version(const corral_call *call) {
    return call ? call->version : CORRAL_VERSION_DEFAULT;
}

/* Builds the store key of a user key into `buf` (CORRAL__KEYBUF bytes). */
static int make_skey(corral *c, const void *key, size_t key_len, int64_t version, char *buf,
                     corral__skey *sk) {
    size_t len;
    int rc = corral__key_build(&c->ks, version, key, key_len, buf, CORRAL__KEYBUF, &len);
    if (rc != CORRAL_OK) return rc;
    sk->data = buf;
    sk->len = len;
    sk->hash = corral__key_hash(buf, len);
    sk->cls = corral__metrics_class(c->metrics, key, corral__key_metric_prefix(key, key_len));
    return CORRAL_OK;
}

int corral_make_key(corral *c, const void *key, size_t key_len, const corral_call *call, char *out,
                    size_t cap, size_t *out_len) {
    if (out_len) *out_len = 0;
    if (!c || !out_len || (!out && cap)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    size_t len;
    int rc = corral__key_build(&c->ks, call_version(call), key, key_len, buf, sizeof buf, &len);
    if (rc != CORRAL_OK) return rc;
    *out_len = len;
    if (cap < len + 1) return CORRAL_ENOSPC;
    memcpy(out, buf, len + 1);
    return CORRAL_OK;
}

/* Resolves a call's TTL: CORRAL_OK with `*store_ttl` for the store (> 0 or CORRAL__NO_EXPIRY),
 * CORRAL_MISS when the TTL is 0 (store nothing), CORRAL_EINVAL for other negatives. */
static int resolve_ttl(const corral *c, int64_t ttl_ms, int64_t *store_ttl) {
    if (ttl_ms == CORRAL_TTL_DEFAULT) ttl_ms = c->default_ttl_ms;
    if (ttl_ms == CORRAL_TTL_FOREVER) {
        *store_ttl = CORRAL__NO_EXPIRY;
        return CORRAL_OK;
    }
    if (ttl_ms < 0) return CORRAL_EINVAL;
    if (ttl_ms == 0) return CORRAL_MISS;
    *store_ttl = ttl_ms;
    return CORRAL_OK;
}

static void count(corral *c, uint16_t cls, int metric) {
    corral__metrics_add(c->metrics, cls, metric, 1);
}

/* ---- Single-key operations ---- */

int corral_get(corral *c, const void *key, size_t key_len, const corral_call *call,
               corral_value **out) {
    if (out) *out = NULL;
    if (!c || !out) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call_version(call), buf, &sk);
    if (rc != CORRAL_OK) return rc;
    rc = c->store->ops->get(c->store, &sk, out);
    if (rc == CORRAL_OK)
        count(c, sk.cls, CORRAL__M_cache_hits_total);
    else if (rc == CORRAL_MISS)
        count(c, sk.cls, CORRAL__M_cache_misses_total);
    return rc;
}

int corral_get_into(corral *c, const void *key, size_t key_len, const corral_call *call, void *buf,
                    size_t cap, size_t *out_len) {
    if (out_len) *out_len = 0;
    if (!c || !out_len || (!buf && cap)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call_version(call), kbuf, &sk);
    if (rc != CORRAL_OK) return rc;
    rc = c->store->ops->get_into(c->store, &sk, buf, cap, out_len);
    /* A value too big for the caller's buffer was found: it counts as a hit. */
    if (rc == CORRAL_OK || rc == CORRAL_ENOSPC)
        count(c, sk.cls, CORRAL__M_cache_hits_total);
    else if (rc == CORRAL_MISS)
        count(c, sk.cls, CORRAL__M_cache_misses_total);
    return rc;
}

/* set and add share everything but the mode. */
static int do_set(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
                  int64_t ttl_ms, const corral_call *call, corral__set_mode mode) {
    if (!c || (!val && val_len)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call_version(call), buf, &sk);
    if (rc != CORRAL_OK) return rc;
    if (val_len > c->max_value_bytes) return CORRAL_ETOOBIG;
    int64_t store_ttl;
    rc = resolve_ttl(c, ttl_ms, &store_ttl);
    if (rc < 0) return rc;
    if (rc == CORRAL_MISS) {
        /* TTL 0: store nothing. A set removes the old value; an add reports whether one is
         * there (Django's redis backend: SET NX then DEL). */
        if (mode == CORRAL__SET_NX) {
            corral_value *v = NULL;
            rc = c->store->ops->get(c->store, &sk, &v);
            corral_value_unref(v);
            return rc == CORRAL_OK ? CORRAL_EXISTS : rc == CORRAL_MISS ? CORRAL_OK : rc;
        }
        rc = c->store->ops->del(c->store, &sk);
        return rc < 0 ? rc : CORRAL_OK;
    }
    rc = c->store->ops->set(c->store, &sk, val, val_len, store_ttl, mode);
    if (rc == CORRAL_OK) count(c, sk.cls, CORRAL__M_cache_sets_total);
    return rc;
}

int corral_set(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
               int64_t ttl_ms, const corral_call *call) {
    return do_set(c, key, key_len, val, val_len, ttl_ms, call, CORRAL__SET_ALWAYS);
}

int corral_add(corral *c, const void *key, size_t key_len, const void *val, size_t val_len,
               int64_t ttl_ms, const corral_call *call) {
    return do_set(c, key, key_len, val, val_len, ttl_ms, call, CORRAL__SET_NX);
}

int corral_delete(corral *c, const void *key, size_t key_len, const corral_call *call) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call_version(call), buf, &sk);
    if (rc != CORRAL_OK) return rc;
    return c->store->ops->del(c->store, &sk);
}

int corral_touch(corral *c, const void *key, size_t key_len, int64_t ttl_ms,
                 const corral_call *call) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call_version(call), buf, &sk);
    if (rc != CORRAL_OK) return rc;
    int64_t store_ttl;
    rc = resolve_ttl(c, ttl_ms, &store_ttl);
    if (rc < 0) return rc;
    if (rc == CORRAL_MISS) return c->store->ops->del(c->store, &sk); /* touch(0): expire now */
    return c->store->ops->touch(c->store, &sk, store_ttl);
}

int corral_incr(corral *c, const void *key, size_t key_len, int64_t delta, const corral_call *call,
                int64_t *out) {
    if (out) *out = 0;
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call_version(call), buf, &sk);
    if (rc != CORRAL_OK) return rc;
    int64_t v = 0;
    rc = c->store->ops->incr(c->store, &sk, delta, &v);
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
    char tmp[CORRAL__KEYBUF];
    for (size_t i = 0; i < n; i++) {
        int rc = make_skey(c, keys[i].data, keys[i].len, call_version(call), tmp, &b->keys[i]);
        if (rc != CORRAL_OK) {
            batch_free(c, b);
            return rc;
        }
        char *dst = b->bytes + i * b->stride;
        memcpy(dst, tmp, b->keys[i].len + 1);
        b->keys[i].data = dst;
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
    rc = n ? c->store->ops->get_many(c->store, b.keys, n, out) : CORRAL_OK;
    if (rc == CORRAL_OK) {
        size_t hits = 0;
        for (size_t i = 0; i < n; i++) {
            hits += out[i] != NULL;
            count(c, b.keys[i].cls,
                  out[i] ? CORRAL__M_cache_hits_total : CORRAL__M_cache_misses_total);
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
    int64_t store_ttl = 0;
    int ttl_rc = resolve_ttl(c, ttl_ms, &store_ttl);
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
        rc = c->store->ops->del_many(c->store, b.keys, n, &d);
    } else {
        rc = c->store->ops->set_many(c->store, b.keys, vals, n, store_ttl);
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
    rc = c->store->ops->del_many(c->store, b.keys, n, &d);
    if (deleted) *deleted = d;
    batch_free(c, &b);
    return rc;
}

int corral_clear(corral *c) {
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    return c->store->ops->clear(c->store);
}

/* ---- Versions ---- */

int corral_incr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                        const corral_call *call, int64_t *new_version) {
    if (new_version) *new_version = 0;
    if (!c || delta == 0) return CORRAL_EINVAL; /* 0 would set, then delete, the same key */
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    int64_t v = call_version(call);
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
    char extra[512];
    int n = snprintf(extra, sizeof extra,
                     "# HELP corral_store_used_bytes Bytes the store accounts for now.\n"
                     "# TYPE corral_store_used_bytes gauge\n"
                     "corral_store_used_bytes{store=\"%s\"} %zu\n"
                     "# HELP corral_store_max_bytes The store's bound in bytes (0: none).\n"
                     "# TYPE corral_store_max_bytes gauge\n"
                     "corral_store_max_bytes{store=\"%s\"} %zu\n",
                     c->store->ops->name, c->store->ops->used_bytes(c->store), c->store->ops->name,
                     c->store->ops->max_bytes(c->store));
    if (n < 0 || (size_t)n >= sizeof extra) return CORRAL_EINVAL;
    return corral__metrics_prometheus(c->metrics, extra, out, out_len);
}
