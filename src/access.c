/*
 * access.c - the access layer: the one place above the store vtable (store/store.h) that knows
 * how corral lays out what it stores. Every module of the handle (corral.c, loader.c,
 * invalidate.c, flight.c) reaches the store's bytes through it, and it calls nothing above it.
 *
 * - Keys: a user key becomes its physical key "<KEY_PREFIX>:<version>:<key>" (key.c) in a stack
 *   buffer; inside a namespace the key is first "<ns>.<generation>:<key>", so a bump of the
 *   namespace's generation makes every key in it unreachable at once. corral's own keys (tag
 *   and namespace versions) are "<KEY_PREFIX>:tag:<name>" and "<KEY_PREFIX>:ns:<name>", which no
 *   user key can produce (the second field of a user key is its integer version).
 * - Versions: a tag's or namespace's version is the decimal ASCII of 64 random bits, stored raw
 *   and without expiry. Versions are random, never incremented: a version that vanished
 *   (evicted, store restarted) is recreated as a new random number, so it cannot equal one a
 *   stored value carries (odds 2^-64), and a vanished tag version counts as busted. Creation is
 *   SET NX, so two processes creating one at once agree on the winner's. A bump is a plain SET;
 *   when the store cannot write it, the bump deletes the version, which invalidates as well.
 *   The reasons are in docs/invalidation.md.
 * - Values: a value with metadata is written with an envelope (envelope.h) in front; a read
 *   checks a tagged value's versions, in the store's own round trip when it has get_checked.
 *
 * Threads: stateless beyond the handle's read-only fields; the store does its own locking. No
 * lock is held here.
 */
#include "access.h"
#include "key_hot.h"

#include <string.h>

/* Decimal digits of the largest u64, the longest version. */
#define VERSION_MAX 20
/* Attempts at reading or creating a version before giving up: a create loses to another
 * creator (re-read), the re-read misses because the winner's version was evicted at once, and
 * so on. Only a store that evicts everything it is given loops this long. */
#define CREATE_ATTEMPTS 8

/* ---- Keys ---- */

/* access.h: the thread's memo of its last class lookup. */
_Thread_local corral__class_memo corral__class_memo_tls __attribute__((tls_model("initial-exec")));

static int64_t call_version(const corral_call *call) {
    return call ? call->version : CORRAL_VERSION_DEFAULT;
}

/* make_skey's way for a namespace, another version or a scheme that is not hot. */
static __attribute__((noinline)) int make_skey_built(corral *c, const void *key, size_t key_len,
                                                     const corral_call *call, bool create,
                                                     char *buf, corral__skey *sk) {
    size_t len;
    int rc;
    if (call && call->ns) {
        /* Inside a namespace the key becomes "<ns>.<generation>:<key>", so a bump of the
         * generation makes every key of the namespace unreachable at once. */
        char gen[24];
        size_t glen, nslen = strlen(call->ns);
        rc = corral__ns_generation(c, call->ns, create, gen, sizeof gen, &glen);
        if (rc != CORRAL_OK) return rc;
        if (key_len > CORRAL__KEYBUF || nslen + glen + 2 > CORRAL__KEYBUF - key_len)
            return CORRAL_EBADKEY;
        if (!key && key_len) return CORRAL_EBADKEY;
        char nkey[CORRAL__KEYBUF];
        memcpy(nkey, call->ns, nslen);
        nkey[nslen] = '.';
        memcpy(nkey + nslen + 1, gen, glen);
        nkey[nslen + 1 + glen] = ':';
        if (key_len) memcpy(nkey + nslen + glen + 2, key, key_len);
        rc = corral__key_build(&c->ks, call->version, nkey, nslen + glen + 2 + key_len, buf,
                               CORRAL__KEYBUF, &len);
    } else {
        rc = corral__key_build(&c->ks, call_version(call), key, key_len, buf, CORRAL__KEYBUF, &len);
    }
    if (rc != CORRAL_OK) return rc;
    sk->data = buf;
    sk->len = len;
    sk->hash = corral__key_hash(&c->ks, buf, len);
    return CORRAL_OK;
}

/* Inline in each of its callers below, so that a key of a hot scheme costs no call but the
 * class table's on a new prefix. */
static inline __attribute__((always_inline)) int make_skey(corral *c, const void *key,
                                                           size_t key_len, const corral_call *call,
                                                           bool create, char *buf, corral__skey *sk,
                                                           corral__prefix_cache *pc) {
    if (!key && key_len) return CORRAL_EBADKEY;
    /* The class first: a read in a namespace without a generation still counts its miss. */
    sk->cls = corral__key_class(c, key, key_len, pc);
    if (c->ks.hot && (!call || (!call->ns && (call->version == CORRAL_VERSION_DEFAULT ||
                                              call->version == c->ks.version)))) {
        sk->data = buf;
        return corral__key_build_hot_inline(&c->ks, key, key_len, buf, &sk->len, &sk->hash);
    }
    return make_skey_built(c, key, key_len, call, create, buf, sk);
}

int corral__make_skey(corral *c, const void *key, size_t key_len, const corral_call *call,
                      char *buf, corral__skey *sk) {
    return make_skey(c, key, key_len, call, true, buf, sk, NULL);
}

int corral__make_skey_batch(corral *c, const void *key, size_t key_len, const corral_call *call,
                            char *buf, corral__skey *sk, corral__prefix_cache *pc) {
    return make_skey(c, key, key_len, call, true, buf, sk, pc);
}

int corral__make_skey_read(corral *c, const void *key, size_t key_len, const corral_call *call,
                           char *buf, corral__skey *sk) {
    return make_skey(c, key, key_len, call, false, buf, sk, NULL);
}

int corral__delete_key(corral *c, const void *key, size_t key_len, const corral_call *call) {
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = make_skey(c, key, key_len, call, false, buf, &sk, NULL);
    if (rc != CORRAL_OK) return rc;
    return c->store->ops->del(c->store, &sk);
}

int corral__make_internal_key(corral *c, const char *kind, const char *name, size_t name_len,
                              char *buf, corral__skey *sk) {
    size_t kind_len = strlen(kind);
    if (name_len > c->max_key_bytes ||
        c->key_prefix_len + kind_len + 2 > c->max_key_bytes - name_len)
        return CORRAL_EBADKEY;
    char *p = buf;
    memcpy(p, c->key_prefix, c->key_prefix_len);
    p += c->key_prefix_len;
    *p++ = ':';
    memcpy(p, kind, kind_len);
    p += kind_len;
    *p++ = ':';
    if (name_len) memcpy(p, name, name_len);
    p += name_len;
    *p = '\0';
    size_t len = (size_t)(p - buf);
    int rc = corral__key_validate(buf, len, c->ks.allow_binary);
    if (rc != CORRAL_OK) return rc;
    sk->data = buf;
    sk->len = len;
    sk->hash = corral__key_hash(&c->ks, buf, len);
    sk->cls = c->cls_internal;
    return CORRAL_OK;
}

uint64_t corral__rand64(corral *c) {
    if (c->rand64) return c->rand64(c->rand_ctx);
    /* splitmix64 over an atomic counter: thread-safe and lock-free. */
    uint64_t z = atomic_fetch_add_explicit(&c->rng, 0x9E3779B97F4A7C15ull, memory_order_relaxed) +
                 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int store_set(corral *c, const corral__skey *sk, const void *val, size_t len,
                     int64_t store_ttl, corral__set_mode mode, unsigned flags) {
    return c->store->ops->set(c->store, sk, val, len, store_ttl, mode, flags);
}

int corral__store_set_env(corral *c, const corral__skey *sk, const corral__env *env,
                          const void *val, size_t len, int64_t store_ttl, corral__set_mode mode) {
    return corral__store_set_env_flags(c, sk, env, val, len, store_ttl, mode, 0);
}

/* The envelope of a raw value that must be wrapped (corral__env_needed_for_raw). Constant: as
 * a local, zeroing its 1 KB of tag slots cost every set more than the rest of this function. */
static const corral__env empty_env;

int corral__store_set_enveloped(corral *c, const corral__skey *sk, const corral__env *env,
                                const void *val, size_t len, int64_t store_ttl,
                                corral__set_mode mode, unsigned flags) {
    if (c->store->caps & CORRAL__STORE_NO_ENVELOPE) {
        /* The value goes bare: its times are dropped, and tags cannot be honoured. */
        if (env && (env->flags & CORRAL__ENV_TAGS)) return CORRAL_ENOTSUP;
        return store_set(c, sk, val, len, store_ttl, mode, flags);
    }
    if (!env || env->flags == 0) {
        if (!corral__env_needed_for_raw(val, len))
            return store_set(c, sk, val, len, store_ttl, mode, flags);
        env = &empty_env;
    }
    size_t hdr = corral__env_size(env);
    if (len > SIZE_MAX - hdr) return CORRAL_ETOOBIG;
    unsigned char *block = corral__alloc(&c->alloc, hdr + len);
    if (!block) return CORRAL_ENOMEM;
    corral__env_write(env, block);
    if (len) memcpy(block + hdr, val, len);
    int rc = store_set(c, sk, block, hdr + len, store_ttl, mode, flags);
    corral__free(&c->alloc, block, hdr + len);
    return rc;
}

int corral__set_many_env(corral *c, const corral__skey *keys, const corral_buf *vals, size_t n,
                         const corral__env *env, int64_t store_ttl, unsigned flags) {
    bool plain = !env || env->flags == 0;
    for (size_t i = 0; plain && corral__has_envelopes(c) && i < n; i++)
        plain = !corral__env_needed_for_raw(vals[i].data, vals[i].len);
    if (plain) return c->store->ops->set_many(c->store, keys, vals, n, store_ttl, flags);
    /* Values with an envelope go one by one (the batch form takes raw bytes). */
    int rc = CORRAL_OK;
    for (size_t i = 0; rc == CORRAL_OK && i < n; i++)
        rc = corral__store_set_env_flags(c, &keys[i], env, vals[i].data, vals[i].len, store_ttl,
                                         CORRAL__SET_ALWAYS, flags);
    return rc;
}

/* ---- Names and versions ---- */

/* A tag or namespace name: 1 to CORRAL__ENV_MAX_TAG bytes, none in 0x00-0x20 or 0x7f unless
 * the handle allows binary keys. Its internal key is validated when built. */
static int check_name(const corral *c, const char *name, size_t len) {
    if (!name || len == 0 || len > CORRAL__ENV_MAX_TAG) return CORRAL_EINVAL;
    if (c->ks.allow_binary) return CORRAL_OK;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)name[i];
        if (b <= 0x20 || b == 0x7f) return CORRAL_EINVAL;
    }
    return CORRAL_OK;
}

int corral__version_key(corral *c, corral__vkind kind, const char *name, size_t len, char *buf,
                        corral__skey *sk) {
    assert(kind == CORRAL__VKIND_TAG || kind == CORRAL__VKIND_NS);
    int rc = check_name(c, name, len);
    if (rc != CORRAL_OK) return rc;
    rc = corral__make_internal_key(c, kind == CORRAL__VKIND_TAG ? "tag" : "ns", name, len, buf, sk);
    return rc == CORRAL_EBADKEY ? CORRAL_EINVAL : rc;
}

/* Writes a new random version into `out` (VERSION_MAX bytes); returns its length. */
static size_t new_version(corral *c, char *out) {
    uint64_t r = corral__rand64(c);
    char rev[VERSION_MAX];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + r % 10);
        r /= 10;
    } while (r);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    return n;
}

static bool is_version(const char *v, size_t len) {
    if (len == 0 || len > VERSION_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (v[i] < '0' || v[i] > '9') return false;
    return true;
}

/* Reads the version stored under `sk` into `out` (VERSION_MAX bytes). Returns CORRAL_OK,
 * CORRAL_MISS when there is none, or a store error. `*foreign` is set when the key holds bytes
 * that are not a version (written by someone else): the caller replaces them. */
static int read_version(corral *c, const corral__skey *sk, char *out, size_t *len, bool *foreign) {
    unsigned char hdr[CORRAL__ENV_SMALL];
    size_t hdr_len = 0;
    int rc =
        c->store->ops->get_into(c->store, sk, out, VERSION_MAX, len, hdr, sizeof hdr, &hdr_len);
    /* Too long for a version (ENOSPC), enveloped, or not decimal. */
    *foreign = rc == CORRAL_ENOSPC || (rc == CORRAL_OK && (hdr_len || !is_version(out, *len)));
    if (*foreign) {
        *len = 0;
        return CORRAL_MISS;
    }
    return rc;
}

/* Writes the current version of a tag or namespace into `out` (VERSION_MAX bytes), creating a
 * random one (SET NX) when the store has none. Two creators agree: the loser of the NX reads the
 * winner's. Returns CORRAL_OK, CORRAL_EINVAL (name), a store error, or CORRAL_ESTORE when the
 * version vanished CREATE_ATTEMPTS times in a row. */
static int current_version(corral *c, corral__vkind kind, const char *name, size_t name_len,
                           char *out, size_t *out_len) {
    *out_len = 0;
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__version_key(c, kind, name, name_len, kbuf, &sk);
    if (rc != CORRAL_OK) return rc;
    for (int attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
        bool foreign;
        rc = read_version(c, &sk, out, out_len, &foreign);
        if (rc != CORRAL_MISS) return rc;
        size_t len = new_version(c, out);
        /* Foreign bytes are overwritten: a version nobody could have carried. */
        rc = c->store->ops->set(c->store, &sk, out, len, CORRAL__NO_EXPIRY,
                                foreign ? CORRAL__SET_ALWAYS : CORRAL__SET_NX, 0);
        if (rc == CORRAL_OK) {
            *out_len = len;
            return CORRAL_OK;
        }
        if (rc != CORRAL_EXISTS) return rc;
    }
    return CORRAL_ESTORE;
}

int corral__version_bump(corral *c, corral__vkind kind, const char *name, size_t len) {
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__version_key(c, kind, name, len, kbuf, &sk);
    if (rc != CORRAL_OK) return rc;
    char v[VERSION_MAX];
    size_t vlen = new_version(c, v);
    rc = c->store->ops->set(c->store, &sk, v, vlen, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0);
    if (rc == CORRAL_OK) return CORRAL_OK;
    int del_rc = c->store->ops->del(c->store, &sk);
    return del_rc >= 0 ? CORRAL_OK : rc;
}

int corral__ns_generation(corral *c, const char *ns, bool create, char *out, size_t cap,
                          size_t *out_len) {
    *out_len = 0;
    if (!ns || CORRAL_NEVER(cap < VERSION_MAX + 1)) return CORRAL_EINVAL;
    if (create) return current_version(c, CORRAL__VKIND_NS, ns, strlen(ns), out, out_len);
    /* A read: a namespace without a generation holds nothing, and a read writes nothing. */
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    int rc = corral__version_key(c, CORRAL__VKIND_NS, ns, strlen(ns), kbuf, &sk);
    if (rc != CORRAL_OK) return rc;
    bool foreign;
    return read_version(c, &sk, out, out_len, &foreign);
}

int corral__tags_read(corral *c, const char *const *tags, size_t n, corral__env *env, char *vbuf,
                      size_t vbuf_cap) {
    if (n == 0) return CORRAL_OK;
    if (!tags || n > CORRAL__ENV_MAX_TAGS) return CORRAL_EINVAL;
    if (CORRAL_NEVER(vbuf_cap / (VERSION_MAX + 1) < n)) return CORRAL_EINVAL;
    /* Every name is checked before any version is read or created. */
    for (size_t i = 0; i < n; i++) {
        int rc = tags[i] ? check_name(c, tags[i], strlen(tags[i])) : CORRAL_EINVAL;
        if (rc != CORRAL_OK) return rc;
    }
    for (size_t i = 0; i < n; i++) {
        corral__env_tag *t = &env->tags[i];
        char *v = vbuf + i * (VERSION_MAX + 1);
        size_t vlen;
        int rc = current_version(c, CORRAL__VKIND_TAG, tags[i], strlen(tags[i]), v, &vlen);
        if (rc != CORRAL_OK) return rc;
        v[vlen] = '\0';
        t->name = tags[i];
        t->name_len = strlen(tags[i]);
        t->version = v;
        t->version_len = vlen;
    }
    env->n_tags = n;
    env->flags |= CORRAL__ENV_TAGS;
    return CORRAL_OK;
}

bool corral__tags_valid(corral *c, const corral__env *env) {
    if (!(env->flags & CORRAL__ENV_TAGS)) return true;
    for (size_t i = 0; i < env->n_tags; i++) {
        const corral__env_tag *t = &env->tags[i];
        char kbuf[CORRAL__KEYBUF];
        corral__skey sk;
        if (corral__version_key(c, CORRAL__VKIND_TAG, t->name, t->name_len, kbuf, &sk) != CORRAL_OK)
            return false;
        char cur[VERSION_MAX];
        size_t len;
        bool foreign;
        /* Missing, foreign or unreadable: busted. A store error makes the value a miss, never a
         * stale hit. */
        if (read_version(c, &sk, cur, &len, &foreign) != CORRAL_OK) return false;
        if (len != t->version_len || memcmp(cur, t->version, len) != 0) return false;
    }
    return true;
}

/* ---- Freshness: one verdict for every read ---- */

corral__verdict corral__freshness(const void *hdr, size_t hdr_len, uint64_t now_ms,
                                  const corral__windows *w, corral__view *view) {
    view->expiry_ms = 0;
    if (hdr_len == 0) { /* a raw value: no metadata, fresh for as long as the store keeps it */
        memset(&view->env, 0, offsetof(corral__env, tags));
        return view->verdict = CORRAL__V_FRESH;
    }
    if (corral__env_parse(hdr, hdr_len, &view->env) != CORRAL_OK)
        return view->verdict = CORRAL__V_BUSTED;
    const corral__env *env = &view->env;
    if (!(env->flags & CORRAL__ENV_TIMES) || env->expiry_ms == 0)
        return view->verdict = CORRAL__V_FRESH;
    uint64_t expiry = env->expiry_ms;
    view->expiry_ms = expiry;
    if (now_ms < expiry) {
        /* XFetch: a reader with beta > 0 refreshes once now + the value's lead reaches expiry. */
        bool early = w && w->beta > 0 && env->early_ms && now_ms + env->early_ms >= expiry;
        return view->verdict = early ? CORRAL__V_EARLY : CORRAL__V_FRESH;
    }
    uint64_t past = now_ms - expiry;
    if (w && w->grace_ms > 0 && past < (uint64_t)w->grace_ms)
        return view->verdict = CORRAL__V_GRACE;
    if (w && w->stale_if_error_ms > 0 && past < (uint64_t)w->stale_if_error_ms)
        return view->verdict = CORRAL__V_STALE_IF_ERROR;
    return view->verdict = CORRAL__V_EXPIRED;
}

corral__verdict corral__classify(corral *c, const void *hdr, size_t hdr_len, uint64_t now_ms,
                                 const corral__windows *w, bool check_tags, corral__view *view) {
    corral__verdict v = corral__freshness(hdr, hdr_len, now_ms, w, view);
    /* An expired value is a miss whatever its tags say: their versions are not read. */
    if (check_tags && v != CORRAL__V_EXPIRED && v != CORRAL__V_BUSTED &&
        !corral__tags_valid(c, &view->env))
        v = view->verdict = CORRAL__V_BUSTED;
    return v;
}

int corral__read(corral *c, const corral__skey *sk, uint64_t now_ms, const corral__windows *w,
                 corral_value **out, corral__view *view) {
    *out = NULL;
    view->verdict = CORRAL__V_BUSTED;
    /* A store with get_checked validates the tags in the read's own round trip (store.h). */
    bool store_checks = c->store->ops->get_checked != NULL;
    corral_value *v = NULL;
    int rc = store_checks ? c->store->ops->get_checked(c->store, sk, &v)
                          : c->store->ops->get(c->store, sk, &v);
    if (rc != CORRAL_OK) return rc;
    if (corral__classify(c, corral__value_hdr(v), v->hdr_len, now_ms, w, !store_checks, view) ==
        CORRAL__V_BUSTED) {
        corral_value_unref(v);
        return CORRAL_MISS;
    }
    *out = v;
    return CORRAL_OK;
}

int corral__read_fresh(corral *c, const corral__skey *sk, uint64_t now_ms, corral_value **out) {
    corral__view view;
    int rc = corral__read(c, sk, now_ms, NULL, out, &view);
    if (rc != CORRAL_OK || view.verdict == CORRAL__V_FRESH) return rc;
    corral_value_unref(*out);
    *out = NULL;
    return CORRAL_MISS;
}

/* An enveloped value copied out by get_into: whether it is FRESH (tags checked). `hdr` holds its
 * header when hdr_len <= hdr_cap. */
static bool copied_is_fresh(corral *c, const corral__skey *sk, const void *hdr, size_t hdr_len,
                            size_t hdr_cap) {
    uint64_t now_ms = corral__now_ms(c);
    if (hdr_len <= hdr_cap) {
        corral__view view;
        return corral__classify(c, hdr, hdr_len, now_ms, NULL, true, &view) == CORRAL__V_FRESH;
    }
    /* A long header (many tags): check it on a reference instead of a copy. */
    corral_value *v = NULL;
    int ok = corral__read_fresh(c, sk, now_ms, &v);
    corral_value_unref(v);
    return ok == CORRAL_OK;
}

int corral__read_fresh_into(corral *c, const corral__skey *sk, void *buf, size_t cap,
                            size_t *out_len) {
    *out_len = 0;
    if (c->store->ops->get_checked) {
        /* The store checks tags in the read's round trip: read a reference and copy it out. */
        corral_value *v = NULL;
        int rc = corral__read_fresh(c, sk, corral__now_ms(c), &v);
        if (rc == CORRAL_OK) {
            *out_len = v->len;
            if (v->len > cap)
                rc = CORRAL_ENOSPC;
            else if (v->len)
                memcpy(buf, corral__value_data(v), v->len);
        }
        corral_value_unref(v);
        return rc;
    }
    unsigned char hdr[256];
    size_t hdr_len = 0;
    int rc = c->store->ops->get_into(c->store, sk, buf, cap, out_len, hdr, sizeof hdr, &hdr_len);
    if ((rc == CORRAL_OK || rc == CORRAL_ENOSPC) && hdr_len &&
        !copied_is_fresh(c, sk, hdr, hdr_len, sizeof hdr)) {
        *out_len = 0;
        rc = CORRAL_MISS;
    }
    return rc;
}

int corral__read_many_fresh(corral *c, const corral__skey *keys, size_t n, corral_value **out) {
    int rc = c->store->ops->get_many(c->store, keys, n, out);
    if (rc != CORRAL_OK) return rc;
    /* A value that is not FRESH reads as a miss. */
    for (size_t i = 0; i < n; i++) {
        corral_value *v = out[i];
        if (!v || !v->hdr_len) continue;
        corral__view view;
        if (corral__classify(c, corral__value_hdr(v), v->hdr_len, corral__now_ms(c), NULL, true,
                             &view) == CORRAL__V_FRESH)
            continue;
        corral_value_unref(v);
        out[i] = NULL;
    }
    return CORRAL_OK;
}
