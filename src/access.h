/*
 * access.h - the access layer (access.c): physical keys, tag and namespace versions, the
 * envelope write and the tag-checked read. The one place above the store vtable that knows how
 * corral lays out what it stores; the modules of the handle (corral.c, loader.c, invalidate.c,
 * flight.c) call it, and it calls only the store, key.c, envelope.c and metrics.c.
 *
 * Threads: every call is thread-safe (the store does its own locking).
 */
#ifndef CORRAL_ACCESS_H
#define CORRAL_ACCESS_H

#include "handle.h"

#include <string.h>

/* ---- Keys ---- */

/* The metrics class of the previous key of a batch: keys of one batch mostly share a prefix, so
 * the class lookup runs once per run of equal prefixes. `prefix` points into the caller's key. */
typedef struct corral__prefix_cache {
    const void *prefix;
    size_t len;
    uint16_t cls;
} corral__prefix_cache;

/* The metrics class of a user key's prefix; `pc` (or NULL) remembers the last one. */
static inline uint16_t corral__key_class(corral *c, const void *key, size_t key_len,
                                         corral__prefix_cache *pc) {
    size_t plen = corral__key_metric_prefix(key, key_len);
    if (pc && pc->prefix && pc->len == plen && memcmp(pc->prefix, key, plen) == 0) return pc->cls;
    uint16_t cls = corral__metrics_class(c->metrics, key, plen);
    if (pc) *pc = (corral__prefix_cache){ .prefix = key, .len = plen, .cls = cls };
    return cls;
}

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
 * the store's set (which ignores a flag it has no use for). On a store with
 * CORRAL__STORE_NO_ENVELOPE the value is written bare: `env`'s times are dropped, and an `env` with
 * tags is CORRAL_ENOTSUP (nothing written). */
int corral__store_set_env_flags(corral *c, const corral__skey *sk, const corral__env *env,
                                const void *val, size_t len, int64_t store_ttl,
                                corral__set_mode mode, unsigned flags);

/* The store write flags a call asks for. */
static inline unsigned corral__write_flags(const corral_call *call) {
    return call && call->is_binary ? CORRAL__SETF_BINARY : 0;
}

/* corral__make_skey for one key of a batch: `pc` carries the class lookup over (see above). */
int corral__make_skey_batch(corral *c, const void *key, size_t key_len, const corral_call *call,
                            char *buf, corral__skey *sk, corral__prefix_cache *pc);

/* Removes a user key: builds it as corral__make_skey_read does (a namespace without a
 * generation holds nothing: CORRAL_MISS) and returns the store's del (CORRAL_OK removed,
 * CORRAL_MISS absent) or an error. */
int corral__delete_key(corral *c, const void *key, size_t key_len, const corral_call *call);

/* ---- Tag and namespace versions ---- */

typedef enum corral__vkind { CORRAL__VKIND_TAG, CORRAL__VKIND_NS } corral__vkind;

/* Checks a tag or namespace name (1 to CORRAL__ENV_MAX_TAG bytes, no byte key validation
 * refuses) and builds the internal key of its version. Returns CORRAL_OK, CORRAL_EINVAL (the
 * name, or a physical key that validation refuses), or what corral__make_internal_key returns
 * otherwise. */
int corral__version_key(corral *c, corral__vkind kind, const char *name, size_t len, char *buf,
                        corral__skey *sk);

/* Replaces the version of a tag or namespace by a new random one. When the store cannot write
 * it, deleting the version busts as well (a vanished version counts as busted), so only a store
 * that can neither write nor delete fails. Returns CORRAL_OK, CORRAL_EINVAL (name) or a store
 * error. */
int corral__version_bump(corral *c, corral__vkind kind, const char *name, size_t len);

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

#endif /* CORRAL_ACCESS_H */
