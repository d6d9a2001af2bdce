/*
 * corral.h - libcorral, an embeddable cache: Django's cache framework done in C.
 *
 * A `corral` handle is a cache over one store: the embedded memory store (`mem://`, the
 * default) or, in later versions, Redis. Keys follow Django's scheme exactly: the physical key
 * of user key `k` is `KEY_PREFIX:VERSION:k` (so `:1:k` with the defaults). Values are
 * binary-safe bytes; a hit hands out an immutable, refcounted `corral_value`.
 *
 * Threads: every `corral *` handle is thread-safe; any thread may call any function on it at
 * any time, except `corral_close`, which must be the last call. Objects obtained from a
 * handle (values, stats snapshots, metrics text) belong to the calling thread until released,
 * and may be handed to another thread; a value is immutable, so several threads may read one
 * value at once, and `corral_value_ref`/`corral_value_unref` are thread-safe.
 *
 * Return codes: `CORRAL_OK` (0) is success, negative `CORRAL_E*` values are errors (so
 * `if (rc < 0)` is the only test a caller needs), and small positive values are documented
 * non-error outcomes (`CORRAL_MISS`, `CORRAL_EXISTS`). `corral_strerror(rc)` names any code.
 * On error nothing changed, unless a function's comment says exactly what did. Out-parameters
 * are set on every path (NULL or 0 when there is nothing to return).
 *
 * Ownership: arguments are borrowed for the duration of the call; the library copies what it
 * keeps. Memory the library allocates for the caller is released with `corral_free()` (or the
 * named release function), never with `free()`.
 *
 * Usage:
 *     corral *c;
 *     corral_error err;
 *     if (corral_open(&c, "mem://?max_memory=64MB&key_prefix=shop", &err) < 0)
 *         fprintf(stderr, "corral: %s\n", err.msg);
 *     corral_set(c, "featured_products:v3", 20, buf, len, CORRAL_TTL_DEFAULT, NULL);
 *     corral_value *v;
 *     if (corral_get(c, "featured_products:v3", 20, NULL, &v) == CORRAL_OK) {
 *         use(corral_value_data(v), corral_value_len(v));
 *         corral_value_unref(v);
 *     }
 *     corral_close(c);
 */
#ifndef CORRAL_CORRAL_H
#define CORRAL_CORRAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORRAL_VERSION_MAJOR 0
#define CORRAL_VERSION_MINOR 1
#define CORRAL_VERSION_PATCH 0

#if defined(CORRAL_BUILDING) && defined(__GNUC__)
#define CORRAL_API __attribute__((visibility("default")))
#else
#define CORRAL_API
#endif

/* ---- Return codes ---- */

enum {
    CORRAL_OK = 0,     /* success */
    CORRAL_MISS = 1,   /* the key is absent (or expired): not an error */
    CORRAL_EXISTS = 2, /* corral_add: the key is present, nothing was written */

    CORRAL_EINVAL = -1,    /* an argument is invalid (NULL handle, bad option value, ...) */
    CORRAL_ENOMEM = -2,    /* an allocation failed; nothing changed */
    CORRAL_EBADKEY = -3,   /* the key is over 250 bytes or holds a byte in 0x00-0x20 or 0x7f */
    CORRAL_ETOOBIG = -4,   /* the value cannot fit in the store at all */
    CORRAL_ENOTINT = -5,   /* corral_incr: the stored value is not a decimal integer */
    CORRAL_ERANGE = -6,    /* corral_incr: the result overflows a signed 64-bit integer */
    CORRAL_ENOSPC = -7,    /* a caller's buffer is too small (functions say what they return) */
    CORRAL_EBADURL = -8,   /* a URL or option string is malformed; corral_error names the part */
    CORRAL_ESTORE = -9,    /* the store failed (I/O, protocol); the call had no effect */
    CORRAL_ENOTSUP = -10,  /* the store does not support this operation */
    CORRAL_ETIMEDOUT = -11 /* a deadline passed */
};

/* Returns a static, human-readable string for any return code (unknown codes included).
 * Thread-safe. */
CORRAL_API const char *corral_strerror(int rc);

/* Returns the library version as "MAJOR.MINOR.PATCH", a static string. Thread-safe. */
CORRAL_API const char *corral_version(void);

/* Detail for functions whose failure needs more than a code (URL and option parsing).
 * Filled on failure only, when the caller passes one; `msg` is always NUL-terminated. */
typedef struct corral_error {
    int code;
    char msg[160];
} corral_error;

/* ---- Time to live ---- */

/* TTL arguments are milliseconds. An entry set at time t with TTL d is live on [t, t + d) and
 * expired from t + d on. 0 means "expire at once": a set with TTL 0 stores nothing and removes
 * any existing value (Django's timeout=0). Other negative values than the two below are
 * CORRAL_EINVAL. */
#define CORRAL_TTL_DEFAULT (-1) /* the handle's default (the URL's `timeout`) */
#define CORRAL_TTL_FOREVER (-2) /* never expires (Django's timeout=None) */

/* The per-call version override meaning "the handle's version". */
#define CORRAL_VERSION_DEFAULT INT64_MIN

/* ---- Hooks ---- */

/* Allocator hooks, per handle, with a context pointer. `free` and `realloc` receive the size
 * the block was allocated with. All three must be set, or all left NULL (libc). The hooks must
 * be thread-safe: any thread that uses the handle may call them. */
typedef struct corral_allocator {
    void *(*alloc)(void *ctx, size_t n);
    void *(*realloc)(void *ctx, void *p, size_t old_n, size_t new_n);
    void (*free)(void *ctx, void *p, size_t n);
    void *ctx;
} corral_allocator;

/* Clock hook: the current wall-clock time in nanoseconds since the Unix epoch. Must be
 * thread-safe. Tests pass a fake clock; the default reads CLOCK_REALTIME. */
typedef uint64_t (*corral_clock_fn)(void *ctx);

/* Custom key function (Django's KEY_FUNCTION): writes the physical key for (prefix, version,
 * key) into `out` (capacity `cap`) and sets `*out_len`. Returns CORRAL_OK, or CORRAL_ENOSPC when
 * the key does not fit (the library then refuses the key with CORRAL_EBADKEY). The result is
 * validated like any key. Must be thread-safe and must not call back into the handle. */
typedef int (*corral_key_fn)(void *ctx, const char *prefix, size_t prefix_len, int64_t version,
                             const void *key, size_t key_len, char *out, size_t cap,
                             size_t *out_len);

/* ---- Opening and closing ---- */

typedef struct corral corral;

/* Eviction policies of the memory store. */
typedef enum corral_eviction {
    CORRAL_EVICT_DEFAULT = 0, /* the measured best: S3-FIFO (see docs/eviction.md) */
    CORRAL_EVICT_SIEVE,
    CORRAL_EVICT_S3FIFO,
    CORRAL_EVICT_LRU /* kept for comparison */
} corral_eviction;

/* Options for corral_open_opts. Always fill with corral_options_init() first, so fields added
 * later get their defaults. Strings are copied by corral_open_opts. */
typedef struct corral_options {
    const char *store;        /* "mem" (default) */
    const char *key_prefix;   /* KEY_PREFIX, default ""; at most 250 bytes (else EBADKEY) */
    int64_t version;          /* VERSION, default 1 */
    int64_t default_ttl_ms;   /* TIMEOUT in ms, default 300000; CORRAL_TTL_FOREVER = none */
    size_t max_memory_bytes;  /* memory store bound, default 256 MiB */
    size_t max_value_bytes;   /* largest value accepted, default 0 = max_memory_bytes / 16 */
    corral_eviction eviction; /* memory store policy */
    unsigned shards;          /* memory store write shards, 0 = automatic */
    bool allow_binary_keys;   /* memory store: skip the 0x00-0x20/0x7f check; keys up to 4096 B */
    size_t max_prefixes;      /* metrics label bound, default 256 (0: all count as "other") */
    corral_allocator allocator;
    corral_clock_fn now_ns; /* default: CLOCK_REALTIME */
    void *clock_ctx;
    corral_key_fn key_fn; /* default: Django's "%s:%s:%s" % (prefix, version, key) */
    void *key_fn_ctx;
} corral_options;

/* Fills `o` with the defaults. Never fails. */
CORRAL_API void corral_options_init(corral_options *o);

/* Parses a cache URL into `o` (which must have been initialised; fields the URL does not name
 * keep their values; on error `o` is unchanged). Strings in `o` point into `buf` (capacity
 * `cap`; strlen(url) + 1 is always enough), which must outlive the use of `o`.
 *
 *     mem://?max_memory=256MB&key_prefix=djzen&version=1&timeout=300&eviction=sieve
 *
 * Parameters: max_memory (bytes with an optional unit B, KB, MB, GB, KiB, MiB, GiB; KB = 1000),
 * max_value (same units), key_prefix (percent-decoded; '+' stays '+'), version (integer), timeout
 * (seconds as Django's TIMEOUT, fractional allowed, or `none`), eviction (sieve, s3fifo, lru),
 * shards, binary_keys (0/1/true/false), max_prefixes. An unknown, repeated or malformed parameter
 * returns CORRAL_EBADURL and names it in `err`; a too-small `buf`, CORRAL_ENOSPC. Thread-safe. */
CORRAL_API int corral_options_parse_url(corral_options *o, const char *url, char *buf, size_t cap,
                                        corral_error *err);

/* Opens a handle from a URL; see corral_options_parse_url for the parameters. NULL or "" opens
 * `mem://` with the defaults. On success `*out` is the handle; on failure `*out` is NULL, the
 * code is returned and `err` (optional) explains. */
CORRAL_API int corral_open(corral **out, const char *url, corral_error *err);

/* Opens a handle from options. Same contract as corral_open. */
CORRAL_API int corral_open_opts(corral **out, const corral_options *o, corral_error *err);

/* Closes the handle and frees everything it holds. Every value obtained from the handle must be
 * released before. Accepts NULL. No other thread may be using the handle. */
CORRAL_API void corral_close(corral *c);

/* Frees memory the library allocated for the caller (metrics text). Accepts NULL. */
CORRAL_API void corral_free(corral *c, void *p);

/* ---- Values ---- */

/* An immutable, refcounted byte string. A hit in the memory store hands out the stored bytes
 * without a copy. Release every value with corral_value_unref, before closing its handle. */
typedef struct corral_value corral_value;

/* Borrowed pointer to the bytes, valid while the caller holds its reference. The bytes are
 * followed by a NUL that is not counted in the length, so text values can be used as C strings
 * (a value may itself contain NULs). */
CORRAL_API const void *corral_value_data(const corral_value *v);
CORRAL_API size_t corral_value_len(const corral_value *v);
/* Takes another reference; returns `v`. Thread-safe. */
CORRAL_API corral_value *corral_value_ref(corral_value *v);
/* Drops a reference; the last one frees the value. Accepts NULL. Thread-safe. */
CORRAL_API void corral_value_unref(corral_value *v);

/* ---- Per-call options ---- */

/* Extras of one call. NULL stands for all defaults. Fill with CORRAL_CALL_INIT. */
typedef struct corral_call {
    int64_t version; /* Django's version=: CORRAL_VERSION_DEFAULT for the handle's */
} corral_call;

#define CORRAL_CALL_INIT \
    { .version = CORRAL_VERSION_DEFAULT }

/* A borrowed byte string, for the many-ops. */
typedef struct corral_buf {
    const void *data;
    size_t len;
} corral_buf;

/* ---- The cache operations (Django's cache API) ----
 *
 * Every key is (pointer, length), binary-safe, and goes through the key function and validation
 * first: an invalid key returns CORRAL_EBADKEY and touches nothing. Thread-safe. O(1) unless
 * stated otherwise. */

/* Looks a key up. Returns CORRAL_OK with `*out` a new reference to the value (release with
 * corral_value_unref), or CORRAL_MISS with `*out` NULL. An expired entry is never returned. */
CORRAL_API int corral_get(corral *c, const void *key, size_t key_len, const corral_call *call,
                          corral_value **out);

/* Looks a key up and copies the value into `buf` (capacity `cap`; no NUL is added, so cap ==
 * length fits): no reference to release, the fast path for small values. Returns CORRAL_OK with
 * `*out_len` the length copied, CORRAL_MISS with `*out_len` 0, or CORRAL_ENOSPC with `*out_len`
 * the value's length when it does not fit (nothing is copied; it counts as a hit). */
CORRAL_API int corral_get_into(corral *c, const void *key, size_t key_len, const corral_call *call,
                               void *buf, size_t cap, size_t *out_len);

/* Stores a value (copied) for `ttl_ms` milliseconds (CORRAL_TTL_DEFAULT, CORRAL_TTL_FOREVER,
 * or 0 to remove any existing value and store nothing). Returns CORRAL_OK, CORRAL_EBADKEY,
 * CORRAL_ETOOBIG (value over max_value_bytes), CORRAL_ENOMEM. Older entries may be evicted to
 * make room. */
CORRAL_API int corral_set(corral *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t ttl_ms, const corral_call *call);

/* Stores a value only when the key is absent (or expired). Returns CORRAL_OK when stored,
 * CORRAL_EXISTS when the key is present (nothing written), or an error as corral_set. */
CORRAL_API int corral_add(corral *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t ttl_ms, const corral_call *call);

/* Removes a key. Returns CORRAL_OK when a live entry was removed, CORRAL_MISS when there was
 * none. */
CORRAL_API int corral_delete(corral *c, const void *key, size_t key_len, const corral_call *call);

/* Sets a new TTL on a present key (CORRAL_TTL_FOREVER removes its expiry; 0 expires it now).
 * Returns CORRAL_OK, or CORRAL_MISS when absent. */
CORRAL_API int corral_touch(corral *c, const void *key, size_t key_len, int64_t ttl_ms,
                            const corral_call *call);

/* Adds `delta` (negative decrements) to a value holding a decimal integer, atomically, keeping
 * its TTL, and returns the new value in `*out` (optional). Returns CORRAL_OK, CORRAL_MISS
 * when absent (as Django raises ValueError), CORRAL_ENOTINT when the value is not a decimal
 * integer (optional '-' then 1-19 digits), CORRAL_ERANGE on overflow (nothing changed). */
CORRAL_API int corral_incr(corral *c, const void *key, size_t key_len, int64_t delta,
                           const corral_call *call, int64_t *out);

/* Returns CORRAL_OK when the key is present and live, CORRAL_MISS otherwise. Counts as a hit or
 * a miss, like corral_get (add and incr count neither). */
CORRAL_API int corral_has(corral *c, const void *key, size_t key_len, const corral_call *call);

/* Looks up `n` keys. `out` has room for `n` values: out[i] is a new reference, or NULL for a
 * miss. Returns CORRAL_OK (even when all miss) and `*found` (optional) the number of hits.
 * Every key is validated before any lookup; on error every out[i] is NULL. O(n). */
CORRAL_API int corral_get_many(corral *c, const corral_buf *keys, size_t n, const corral_call *call,
                               corral_value **out, size_t *found);

/* Stores `n` key/value pairs with one TTL. Every key and value is validated first, so an
 * invalid one fails the call with nothing written. A failure after validation (CORRAL_ENOMEM)
 * leaves the pairs before the failing one written. O(n). */
CORRAL_API int corral_set_many(corral *c, const corral_buf *keys, const corral_buf *vals, size_t n,
                               int64_t ttl_ms, const corral_call *call);

/* Removes `n` keys; `*deleted` (optional) counts the live entries removed. Every key is validated
 * before any is removed. O(n). */
CORRAL_API int corral_delete_many(corral *c, const corral_buf *keys, size_t n,
                                  const corral_call *call, size_t *deleted);

/* Removes every entry of the store (Django's clear). The counters are kept. O(entries), done
 * under each shard's lock in turn; readers are never blocked. */
CORRAL_API int corral_clear(corral *c);

/* Django's incr_version: moves the value of `key` from version V (the call's, or the handle's)
 * to V + delta and deletes it at V. Returns CORRAL_OK with `*new_version` (optional) = V + delta,
 * or CORRAL_MISS when the key is absent at V (as Django raises ValueError), CORRAL_EINVAL for a
 * delta of 0 (Django would set and then delete the same key), CORRAL_ERANGE when V + delta
 * overflows. The value gets the handle's default TTL, as in Django. */
CORRAL_API int corral_incr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                                   const corral_call *call, int64_t *new_version);
/* corral_incr_version with -delta. */
CORRAL_API int corral_decr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                                   const corral_call *call, int64_t *new_version);

/* Writes into `out` (capacity `cap`) the physical key that `key` maps to under the handle's
 * prefix, version (or the call's) and key function, NUL-terminated, and sets `*out_len`
 * (without the NUL). Returns CORRAL_OK, CORRAL_EBADKEY, or CORRAL_ENOSPC with `*out_len` the
 * key's length (so `cap` must be at least that plus one). */
CORRAL_API int corral_make_key(corral *c, const void *key, size_t key_len, const corral_call *call,
                               char *out, size_t cap, size_t *out_len);

/* ---- Fragment keys ---- */

/* Django's make_template_fragment_key, to the byte: "template.cache.<name>.<md5 hex>", where the
 * MD5 covers each vary value followed by ':'. With no vary values the digest is
 * d41d8cd98f00b204e9800998ecf8427e. Writes the key NUL-terminated into `out` (capacity `cap`)
 * and its length (without the NUL) to `*out_len`. Returns CORRAL_OK, CORRAL_EINVAL, or
 * CORRAL_ENOSPC with `*out_len` the key's length, 15 + name_len + 1 + 32 (`cap` must be at
 * least that plus one). Thread-safe, needs no handle. */
CORRAL_API int corral_fragment_key(const char *name, size_t name_len, const corral_buf *vary,
                                   size_t n_vary, char *out, size_t cap, size_t *out_len);

/* ---- Metrics ---- */

/* Counters of one key prefix (the user key up to its first ':'; fragment keys count under
 * "template.cache.<name>"). Labels keep at most 63 bytes; control bytes, and bytes >= 0x80 in a
 * prefix that is not valid UTF-8, are written as '?'. `items` and `bytes` count what the store
 * holds, including an expired entry not yet reclaimed; a set or touch with TTL 0 that removes an
 * entry counts as a delete. */
typedef struct corral_prefix_stats {
    char prefix[64]; /* NUL-terminated; "other" collects prefixes past max_prefixes */
    uint64_t hits, misses, sets, deletes, evictions, expirations;
    int64_t items, bytes; /* gauges: live entries and their bytes in the store */
} corral_prefix_stats;

typedef struct corral_stats_snapshot {
    corral_prefix_stats total;     /* the sum over all prefixes; prefix "" */
    size_t n_prefixes;             /* entries in `prefixes` */
    corral_prefix_stats *prefixes; /* sorted by prefix; owned by the snapshot */
    size_t max_memory_bytes;
    size_t used_bytes; /* bytes the store accounts: keys, values, per-entry overhead */
} corral_stats_snapshot;

/* Takes a snapshot of the counters into `*out` (release with corral_stats_free). Returns
 * CORRAL_OK or CORRAL_ENOMEM (with `*out` NULL). O(prefixes x stripes). */
CORRAL_API int corral_stats(corral *c, corral_stats_snapshot **out);
/* Releases a snapshot. Accepts NULL. */
CORRAL_API void corral_stats_free(corral *c, corral_stats_snapshot *s);

/* Writes the Prometheus text exposition (version 0.0.4) of every metric into a new
 * NUL-terminated buffer `*out` of length `*out_len` (release with corral_free). Counters end in
 * `_total`, sizes are in bytes; every per-prefix series carries a `prefix` label. Returns
 * CORRAL_OK or CORRAL_ENOMEM (with `*out` NULL). */
CORRAL_API int corral_metrics_write(corral *c, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_CORRAL_H */
