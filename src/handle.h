/*
 * handle.h - the layout of `struct corral` and the internal calls its modules share:
 * corral.c (options, the cache operations), loader.c (get_or_set, single flight, refresh
 * workers) and invalidate.c (namespaces, tags, events).
 *
 * Threads: the plain fields are written by corral_open_opts only and read-only afterwards. The
 * modules' own state (flights, workers, rules) carries its own locks, described in each module
 * and in docs/threads.md.
 */
#ifndef CORRAL_HANDLE_H
#define CORRAL_HANDLE_H

#include "common.h"
#include "envelope.h"
#include "key.h"
#include "metrics.h"
#include "value.h"
#include "store/store.h"

#include <stdatomic.h>

#define CORRAL_MAGIC 0xc0441a1du

typedef struct corral__flights corral__flights; /* flight.c */
typedef struct corral__workers corral__workers; /* loader.c */
typedef struct corral__rules corral__rules;     /* invalidate.c */

struct corral {
    uint32_t magic;
    corral__allocator alloc;
    corral_clock_fn now_ns;
    void *clock_ctx;
    uint64_t (*rand64)(void *ctx); /* NULL: the handle's own generator (`rng`) */
    void *rand_ctx;
    _Atomic uint64_t rng; /* splitmix64 state of the handle's own generator */
    char *key_prefix;     /* owned copy */
    size_t key_prefix_len;
    corral__keyscheme ks;
    /* A read without a call takes the read path (corral.c get_into_hot and get_hot, inline from
     * store/memory_read.h): the key scheme is hot and the store is the memory store. */
    bool hot_reads;
    int64_t default_ttl_ms; /* > 0, 0 (store nothing) or CORRAL_TTL_FOREVER */
    size_t max_value_bytes;
    size_t max_key_bytes; /* the longest physical key validation accepts */
    corral__store *store;
    corral__metrics *metrics;
    uint64_t metrics_id;   /* corral__metrics_id(metrics): the read path's count checks it */
    uint16_t cls_internal; /* metrics class of corral's own keys (tag versions, generations) */
    unsigned refresh_workers;
    corral__flights *flights;
    corral__workers *workers; /* threads started by the first background refresh */
    corral__rules *rules;
};

/* ---- corral.c ---- */

/* Builds the store key of a user key into `buf` (CORRAL__KEYBUF bytes): the physical key under
 * the handle's (or the call's) version, inside the call's namespace when it names one (the
 * namespace's generation is read, or created, in the store), its hash, and the metrics class of
 * the user key's prefix. Returns CORRAL_OK, CORRAL_EBADKEY, or a store error. */
int corral__make_skey(corral *c, const void *key, size_t key_len, const corral_call *call,
                      char *buf, corral__skey *sk);

/* corral__make_skey for an operation that only reads (or removes): when the call's namespace has
 * no generation yet, returns CORRAL_MISS and writes nothing. */
int corral__make_skey_read(corral *c, const void *key, size_t key_len, const corral_call *call,
                           char *buf, corral__skey *sk);

/* Store key of one of corral's own keys: "<KEY_PREFIX>:<kind>:<name>" (kind "tag" or "ns"),
 * which no user key can produce (the second field of a user key is its integer version).
 * Returns CORRAL_OK or CORRAL_EBADKEY. */
int corral__make_internal_key(corral *c, const char *kind, const char *name, size_t name_len,
                              char *buf, corral__skey *sk);

/* Resolves a call's TTL: CORRAL_OK with `*store_ttl` for the store (> 0 or CORRAL__NO_EXPIRY),
 * CORRAL_MISS when the TTL is 0 (store nothing), CORRAL_EINVAL for other negatives. */
int corral__resolve_ttl(const corral *c, int64_t ttl_ms, int64_t *store_ttl);

/* 64 random bits from the handle's source. Thread-safe. */
uint64_t corral__rand64(corral *c);

/* The handle's clock in ms. */
static inline uint64_t corral__now_ms(corral *c) {
    return c->now_ns(c->clock_ctx) / 1000000u;
}

/* Decides whether a stored value may be returned: CORRAL_OK, or CORRAL_MISS when its envelope
 * says it is logically expired at `now_ms` or one of its tags was busted. `hdr` is the envelope
 * header (hdr_len 0: a raw value, always OK). May read tag versions from the store. */
int corral__value_check(corral *c, const void *hdr, size_t hdr_len, uint64_t now_ms);

/* CORRAL_OK when the envelope header `hdr` (hdr_len 0: a raw value) does not say the value is
 * logically expired at `now_ms`; CORRAL_MISS when it does or is malformed. Tags are not looked
 * at: for a value read with corral__get_checked. */
int corral__value_fresh(const void *hdr, size_t hdr_len, uint64_t now_ms);

/* Reads `sk` with its tags validated: by the store in the read's own round trip when it has
 * get_checked (store.h), otherwise with get and then corral__tags_valid. Returns CORRAL_OK with
 * a new reference in `*out` (its logical expiry not checked: corral__value_fresh), CORRAL_MISS
 * (absent, busted, or a malformed envelope), or the store's error (CORRAL_EFORMAT, ...), with
 * `*out` NULL. */
int corral__get_checked(corral *c, const corral__skey *sk, corral_value **out);

/* Writes `val` under `sk` with an envelope when `env` has flags or the raw bytes need one (see
 * envelope.h); `env` NULL means no metadata. Same returns as the store's set. */
int corral__store_set_env(corral *c, const corral__skey *sk, const corral__env *env,
                          const void *val, size_t len, int64_t store_ttl, corral__set_mode mode);

/* corral__store_set_env with write flags (CORRAL__SETF_*, from corral__write_flags), passed to
 * the store's set_flags when it has them. On a store with CORRAL__STORE_NO_ENVELOPE the value is
 * written bare: `env`'s times are dropped, and an `env` with tags is CORRAL_ENOTSUP (nothing
 * written). */
int corral__store_set_env_flags(corral *c, const corral__skey *sk, const corral__env *env,
                                const void *val, size_t len, int64_t store_ttl,
                                corral__set_mode mode, unsigned flags);

/* The store write flags a call asks for. */
static inline unsigned corral__write_flags(const corral_call *call) {
    return call && call->is_binary ? CORRAL__SETF_BINARY : 0;
}

/* ---- invalidate.c ---- */

/* Creates the event rules of a handle (none registered) / frees them. */
int corral__rules_new(corral *c);
void corral__rules_free(corral *c);

/* Writes the current generation of namespace `ns` (decimal ASCII) into `out` (capacity `cap`, at
 * least 21) and its length into `*out_len`. When the store has none: with `create`, a random one
 * is created; without, CORRAL_MISS (a read writes nothing). Returns CORRAL_OK, CORRAL_MISS,
 * CORRAL_EINVAL (bad name: empty, over 200 bytes, or a byte key validation refuses),
 * CORRAL_ESTORE (the generation vanished again and again while being created), CORRAL_ENOMEM,
 * or a store error. */
int corral__ns_generation(corral *c, const char *ns, bool create, char *out, size_t cap,
                          size_t *out_len);

/* Fills `env` (flags |= CORRAL__ENV_TAGS) with `tags` and their current versions, creating a
 * random version for a tag the store has none of. The versions are written into `vbuf` (at
 * least 21 bytes per tag), which `env->tags` then points into, as do the names into `tags`.
 * Returns CORRAL_OK, CORRAL_EINVAL (more than CORRAL__ENV_MAX_TAGS tags, a name over
 * CORRAL__ENV_MAX_TAG bytes or empty or holding a byte key validation refuses), or a store error.
 * Read the versions before making a value: a bust after this call leaves the value invalid. */
int corral__tags_read(corral *c, const char *const *tags, size_t n, corral__env *env, char *vbuf,
                      size_t vbuf_cap);

/* True when every tag of `env` still has the version `env` carries. A tag whose version is gone
 * from the store counts as busted. */
bool corral__tags_valid(corral *c, const corral__env *env);

/* ---- loader.c ---- */

/* Creates the loader's state of a handle: the single-flight table (flight.h) and the refresh
 * workers' queue (no thread yet). corral__loader_close stops the workers (they finish the
 * queue), then frees the table (flights still led are finished with CORRAL_ETIMEDOUT first); it
 * accepts a handle whose corral__loader_new failed part way. */
int corral__loader_new(corral *c);
void corral__loader_close(corral *c);

#endif /* CORRAL_HANDLE_H */
