/*
 * access.h - the access layer (access.c): physical keys, tag and namespace versions, the
 * envelope write and the tag-checked read. The one place above the store vtable that knows how
 * corral lays out what it stores; the modules of the handle (corral.c, loader.c, invalidate.c,
 * flight.c) call it, and it calls only the store, key.c, envelope.c and metrics.c.
 *
 * Every keyed operation and every clear reaches the store through here: what involves a value's
 * envelope (reads, writes, batches) through the functions of access.c, and the store's own
 * verbs, which leave the bytes alone (delete, touch, ttl, incr, leases, clears), through the
 * inline pass-throughs below. The handle itself (corral.c) only opens and closes its store,
 * reads its gauges, counters and servers' status for stats and metrics, and inlines the memory
 * store's read path (store.h, "The read path").
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

/* The calling thread's last class lookup outside a batch (corral__key_class): the metrics table
 * it was made in (corral__metrics_id, never reused; 0: none), a prefix that ended at the key's
 * first ':' and its class. A prefix's class does not change while its table lives (metrics.c),
 * so the memo holds until the thread looks up another prefix. (One exception: an alias, a prefix
 * that shares a named class's label but got no slot, looks up as "other" once the table is full;
 * a memo made before keeps the label's class. Entries carry their class, so gauges balance.) */
#define CORRAL__CLASS_MEMO_MAX 48
typedef struct corral__class_memo {
    uint64_t id;
    /* A prefix of under 8 bytes with its ':' as one word in the machine's byte order, and the
     * mask of those bytes: a key of 8 bytes or more is matched with one load. */
    uint64_t word, mask;
    uint16_t cls;
    uint8_t len;
    char prefix[CORRAL__CLASS_MEMO_MAX];
} corral__class_memo;
extern _Thread_local corral__class_memo corral__class_memo_tls
    __attribute__((tls_model("initial-exec")));

/* The metrics class of a user key's prefix; `pc` (or NULL) remembers the last one of a batch.
 * Without `pc`, a key whose bytes begin with the thread's memo and a ':' has the memo's prefix
 * (the memo's holds no ':', and a fragment key's "template.cache." holds no ':' either), so
 * its class is the memo's: no search for the ':' and no probe of the class table. */
static inline uint16_t corral__key_class(corral *c, const void *key, size_t key_len,
                                         corral__prefix_cache *pc) {
    corral__class_memo *m = &corral__class_memo_tls;
    const char *k = key;
    if (!pc && m->id == c->metrics_id && key_len > m->len) {
        uint64_t w;
        if (m->len < 8 && key_len >= 8) {
            memcpy(&w, k, 8);
            if ((w & m->mask) == m->word) return m->cls;
        } else if (k[m->len] == ':' && memcmp(m->prefix, k, m->len) == 0) {
            return m->cls;
        }
    }
    size_t plen = corral__key_metric_prefix(key, key_len);
    if (pc && pc->prefix && pc->len == plen && memcmp(pc->prefix, key, plen) == 0) return pc->cls;
    uint16_t cls = corral__metrics_class(c->metrics, key, plen);
    if (pc) {
        *pc = (corral__prefix_cache){ .prefix = key, .len = plen, .cls = cls };
    } else if (plen < key_len && plen <= CORRAL__CLASS_MEMO_MAX && k[plen] == ':') {
        m->id = c->metrics_id;
        m->cls = cls;
        m->len = (uint8_t)plen;
        if (plen) memcpy(m->prefix, key, plen);
        if (plen < 8) {
            unsigned char word[8] = { 0 }, mask[8] = { 0 };
            memcpy(word, key, plen + 1); /* with its ':' */
            memset(mask, 0xff, plen + 1);
            memcpy(&m->word, word, 8);
            memcpy(&m->mask, mask, 8);
        }
    }
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
static inline int corral__resolve_ttl(const corral *c, int64_t ttl_ms, int64_t *store_ttl) {
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

/* 64 random bits from the handle's source. Thread-safe. */
uint64_t corral__rand64(corral *c);

/* Writes `val` under `sk` with an envelope when `env` has flags or the raw bytes need one (see
 * envelope.h); `env` NULL means no metadata. Same returns as the store's set. */
int corral__store_set_env(corral *c, const corral__skey *sk, const corral__env *env,
                          const void *val, size_t len, int64_t store_ttl, corral__set_mode mode);

/* corral__store_set_env_flags's way for a value with an envelope, or on a store without them. */
int corral__store_set_enveloped(corral *c, const corral__skey *sk, const corral__env *env,
                                const void *val, size_t len, int64_t store_ttl,
                                corral__set_mode mode, unsigned flags);

/* corral__store_set_env with write flags (CORRAL__SETF_*, from corral__write_flags), passed to
 * the store's set (which ignores a flag it has no use for). On a store with
 * CORRAL__STORE_NO_ENVELOPE the value is written bare: `env`'s times are dropped, and an `env` with
 * tags is CORRAL_ENOTSUP (nothing written). Inline for the common write, which goes to the store
 * as it is on every store: no metadata, and bytes that need no envelope. */
static inline int corral__store_set_env_flags(corral *c, const corral__skey *sk,
                                              const corral__env *env, const void *val, size_t len,
                                              int64_t store_ttl, corral__set_mode mode,
                                              unsigned flags) {
    if ((!env || env->flags == 0) && !corral__env_needed_for_raw(val, len))
        return c->store->ops->set(c->store, sk, val, len, store_ttl, mode, flags);
    return corral__store_set_enveloped(c, sk, env, val, len, store_ttl, mode, flags);
}

/* The store write flags a call asks for. */
static inline unsigned corral__write_flags(const corral_call *call) {
    return call && call->is_binary ? CORRAL__SETF_BINARY : 0;
}

/* corral__make_skey for one key of a batch: `pc` carries the class lookup over (see above). */
int corral__make_skey_batch(corral *c, const void *key, size_t key_len, const corral_call *call,
                            char *buf, corral__skey *sk, corral__prefix_cache *pc);

/* False when the store cannot carry corral's envelope (CORRAL__STORE_NO_ENVELOPE, store.h): its
 * values are written bare, so they can carry neither tags nor a logical expiry. */
static inline bool corral__has_envelopes(const corral *c) {
    return !(c->store->caps & CORRAL__STORE_NO_ENVELOPE);
}

/* Writes `n` values under `keys`, each with the envelope `env` (NULL or flags 0: none, as
 * corral__store_set_env_flags): in one batch (the store's set_many) when no value needs an
 * envelope, else one by one. Returns CORRAL_OK or the first error; a failure may leave some of
 * the values written. */
int corral__set_many_env(corral *c, const corral__skey *keys, const corral_buf *vals, size_t n,
                         const corral__env *env, int64_t store_ttl, unsigned flags);

/* ---- The store's own verbs: they leave a value's bytes alone ---- */

/* Returns of store.h's verbs of the same names. */
static inline int corral__del(corral *c, const corral__skey *sk) {
    return c->store->ops->del(c->store, sk);
}

static inline int corral__del_many(corral *c, const corral__skey *keys, size_t n, size_t *deleted) {
    return c->store->ops->del_many(c->store, keys, n, deleted);
}

static inline int corral__touch(corral *c, const corral__skey *sk, int64_t store_ttl) {
    return c->store->ops->touch(c->store, sk, store_ttl);
}

static inline int corral__ttl(corral *c, const corral__skey *sk, int64_t *store_ttl) {
    return c->store->ops->ttl(c->store, sk, store_ttl);
}

/* An enveloped value is not a decimal integer: its incr is CORRAL_ENOTINT, as for any other
 * bytes that are not one. */
static inline int corral__incr(corral *c, const corral__skey *sk, int64_t delta, int64_t *out) {
    return c->store->ops->incr(c->store, sk, delta, out);
}

static inline int corral__lease_acquire(corral *c, const corral__skey *sk, const void *token,
                                        size_t token_len, int64_t ttl_ms) {
    return c->store->ops->lease_acquire(c->store, sk, token, token_len, ttl_ms);
}

static inline int corral__lease_release(corral *c, const corral__skey *sk, const void *token,
                                        size_t token_len) {
    return c->store->ops->lease_release(c->store, sk, token, token_len);
}

static inline int corral__clear(corral *c) {
    return c->store->ops->clear(c->store);
}

/* Removes every key under the handle's KEY_PREFIX. A store without clear_prefix is private to
 * the handle: all it holds is under the prefix, so it is cleared. */
static inline int corral__clear_prefix(corral *c) {
    if (!c->store->ops->clear_prefix) return c->store->ops->clear(c->store);
    return c->store->ops->clear_prefix(c->store, c->key_prefix, c->key_prefix_len);
}

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

/* ---- Freshness: one verdict for every read ----
 *
 * Whether a stored value may be served is decided here and nowhere else: its envelope is parsed
 * once, into a view the caller keeps (expiry, XFetch lead, tags). The verdicts, in the order
 * they are tried:
 * - BUSTED (CORRAL__V_BUSTED): the envelope is malformed, or (when tags are checked) a tag's
 * version moved on or vanished. Never served.
 * - FRESH: no logical expiry, or before it (a raw value is always fresh).
 * - EARLY: fresh, and XFetch (beta > 0) says this reader refreshes now: now + the value's
 *   drawn lead (envelope.h) has reached the expiry.
 * - GRACE: past the expiry by less than the grace window (stale-while-revalidate).
 * - STALE_IF_ERROR: past the grace, by less than the stale-if-error window: served only when
 *   a producer fails.
 * - EXPIRED: past every window. A miss.
 * Without windows (NULL: a plain get) a value is FRESH, EXPIRED or BUSTED.
 */
typedef enum corral__verdict {
    CORRAL__V_FRESH,
    CORRAL__V_EARLY,
    CORRAL__V_GRACE,
    CORRAL__V_STALE_IF_ERROR,
    CORRAL__V_EXPIRED,
    CORRAL__V_BUSTED,
} corral__verdict;

/* What a reader tolerates past a value's logical expiry (corral_load_opts, ms). */
typedef struct corral__windows {
    double beta;               /* XFetch; <= 0: never early */
    int64_t grace_ms;          /* stale_ttl_ms; <= 0: none */
    int64_t stale_if_error_ms; /* <= 0: none */
} corral__windows;

/* A classified value: the verdict and the envelope it was read from, parsed once. */
typedef struct corral__view {
    corral__verdict verdict;
    uint64_t expiry_ms; /* the logical expiry, Unix ms; 0: none */
    corral__env env;    /* flags 0 for a raw value; tag names and versions point into the value */
} corral__view;

/* Classifies an envelope header `hdr` (hdr_len 0: a raw value) at `now_ms`, parsing it once into
 * `view`, and returns the verdict (also in view->verdict). Pure: tags are not looked at. */
corral__verdict corral__freshness(const void *hdr, size_t hdr_len, uint64_t now_ms,
                                  const corral__windows *w, corral__view *view);

/* corral__freshness, then, with `check_tags` and a verdict that could be served, the tags'
 * versions in the store (corral__tags_valid): any moved on or vanished makes it BUSTED. */
corral__verdict corral__classify(corral *c, const void *hdr, size_t hdr_len, uint64_t now_ms,
                                 const corral__windows *w, bool check_tags, corral__view *view);

/* Reads `sk` and classifies it. The tags are checked by the store in the read's own round trip
 * when it has get_checked (store.h), otherwise by corral__classify. Returns CORRAL_OK with a new
 * reference in `*out` and `view` filled (any verdict but BUSTED), CORRAL_MISS (absent or
 * BUSTED), or the store's error (CORRAL_EFORMAT, ...), with `*out` NULL. */
int corral__read(corral *c, const corral__skey *sk, uint64_t now_ms, const corral__windows *w,
                 corral_value **out, corral__view *view);

/* corral__read for a plain get: CORRAL_OK only for a FRESH value, CORRAL_MISS for any other
 * verdict, or the store's error. */
int corral__read_fresh(corral *c, const corral__skey *sk, uint64_t now_ms, corral_value **out);

/* corral__read_fresh into the caller's buffer, at the handle's clock: CORRAL_OK with the payload
 * copied and its length in `*out_len`; CORRAL_ENOSPC with `*out_len` the payload's length when
 * it does not fit `cap` (nothing copied; a fresh value was found); CORRAL_MISS with `*out_len`
 * 0; or the store's error. A store without get_checked copies the value out (get_into) and the
 * envelope is classified from the copied header. */
int corral__read_fresh_into(corral *c, const corral__skey *sk, void *buf, size_t cap,
                            size_t *out_len);

/* Reads `n` keys in one batch (the store's get_many): `out[i]` is a new reference to the value
 * of keys[i] when it is FRESH, tags checked, else NULL. Returns CORRAL_OK or the store's
 * error. */
int corral__read_many_fresh(corral *c, const corral__skey *keys, size_t n, corral_value **out);

#endif /* CORRAL_ACCESS_H */
