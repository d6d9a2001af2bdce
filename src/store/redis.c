/*
 * redis.c - the Redis store: every operation of the store vtable (store.h), done the Redis way.
 *
 * Data model
 * - A value is a Redis string under its physical key ("djzen:1:featured_products:v3"), byte
 *   for byte (the envelope, when the layer above adds one, is part of those bytes; store.h), with
 *   the entry's TTL as the key's expiry in milliseconds (PX). Redis expires keys itself, lazily
 *   on access and actively in the background, and never returns an expired key.
 * - A lease lives under its own key: the physical key followed by LEASE_SUFFIX, "\x1flease".
 *   Validated keys never hold a byte in 0x00-0x20, so no user key, nor any key of another
 *   lease, can be a lease key, and a lease never shows up as a value nor blocks one. A suffix
 *   rather than a "lease:" namespace keeps a lease under its key's prefix, so
 *   corral_clear_prefix (SCAN MATCH "prefix:*") removes both. Binary keys (the memory store's
 *   option) are refused by the handle for this store, since they could hold that byte.
 * - Tag and namespace versions of the layer above are plain integer values like any other.
 *
 * Commands (one round trip each unless noted)
 * - get, get_into: GET. get_checked: the script CHECKED (below). set: SET key value [PX ttl]
 *   [NX|XX]. del: DEL. touch: PEXPIRE, or
 *   for no expiry the script TOUCH_FOREVER (PERSIST alone cannot tell a missing key from one
 *   without a TTL). incr: the script INCR (below). clear: FLUSHDB ASYNC (Django's clear; the
 *   keys are gone at once, their memory is freed in the background). clear_prefix: SCAN MATCH
 *   then UNLINK, in bounded batches.
 * - get_many: MGET, in chunks of MANY_CHUNK keys, pipelined: one round trip for the batch.
 *   set_many: MULTI, SET ... PX per pair, EXEC, pipelined: one round trip, all or nothing.
 *   del_many: DEL of MANY_CHUNK keys per command, pipelined: one round trip.
 * - lease_acquire: SET lease token NX PX ttl. lease_release: the script LEASE_RELEASE,
 *   compare-and-delete, so only the owner's token removes a lease.
 * - Scripts are called with EVALSHA by their SHA-1, computed here at open; a NOSCRIPT reply (a
 *   restarted server, SCRIPT FLUSH) falls back to EVAL, which loads the script for next time.
 *
 * get_checked: a tagged read validated on the server, one round trip whatever the number of tags.
 * The CHECKED script GETs the value; when it begins with an envelope with tags (envelope.h; the
 * script parses the header as envelope.c does), it MGETs the tags' version keys
 * "<KEY_PREFIX>:tag:<name>" and compares each with the version the envelope carries. It returns
 * the value when every version matches (or there are no tags), nil when the key is absent, and 0
 * when a tag was busted or vanished or the header is malformed: a miss. The tag keys are built in
 * the script from ARGV[1] rather than passed as KEYS, which is fine on a standalone server or a
 * replica (the only deployments this store supports) and would not be on a cluster. EVALSHA of a
 * script that only reads runs on read-only replicas, so get_checked reads where get reads.
 * The script costs the server more than a GET: about 1.5 us a call, 10% of a loopback round
 * trip, which every untagged read would pay for nothing. So the store learns, per metrics class
 * of the key (its user prefix: corral__skey.cls), whether values there carry tags: a class is
 * marked when this store writes a tagged value under it, or reads one with a plain GET. An
 * unmarked class reads with GET, and a tagged value found that way is read again with the script
 * (two round trips, once per class and process); a marked class reads with the script. Prefixes
 * are in practice all tagged or all not, so untagged reads stay a GET and tagged ones are one
 * round trip, n + 1 before.
 *
 * incr: corral's incr returns CORRAL_MISS on an absent key where INCRBY would create it, and
 * accepts what the memory store accepts ("007", "-0"), which Redis's string2ll refuses. The INCR
 * script checks the value against "-?[0-9]{1,19}", refuses values beyond int64 with CORRAL_ERANGE
 * (compared as digit strings: Lua's numbers are doubles), writes the canonical form when it
 * differs (KEEPTTL), runs INCRBY (which keeps the TTL) and returns the result as a string; on
 * overflow it restores the original bytes. The whole script is atomic on the server.
 *
 * Failures: a read that fails (server down, timeout, error reply) is a miss; a write that fails
 * is CORRAL_ESTORE, or CORRAL_ETIMEDOUT past a deadline, or CORRAL_ENOMEM when Redis refuses it
 * for maxmemory; each is counted (redis_pool.h). A write whose reply was lost (timeout, reset)
 * may or may not have been applied: Redis gives no way to know.
 *
 * Django's wire format (serializer=django, redis_django.h): values are encoded on every write
 * (set, set_many; leases and incr's digits are raw) and decoded on every read, so the layer
 * above still sees the value's bytes; a pickle of another type reads as CORRAL_EFORMAT. A Django
 * site reads what corral writes, so the store cannot carry corral's envelope
 * (CORRAL__STORE_NO_ENVELOPE, store.h): the handle writes values bare, and a value read is never
 * split into an envelope and a payload. CORRAL__SETF_BINARY (corral_call.is_binary) writes a
 * value as pickled bytes whatever it holds. get_checked is get: there are no tags to check.
 * serializer=bare is the same without the encoding: the caller (the Python package) writes
 * Django's format itself, and a read hands back the stored bytes.
 *
 * Events: none. Redis evicts, expires and may be written by other clients without telling us,
 * so the store does not call the events callback (store.h); used_bytes and max_bytes are 0.
 *
 * Threads: the store's fields are written at open and read-only afterwards; connections are
 * handed out one call at a time by redis_pool.c. No lock is taken here.
 *
 * References: Redis commands SET, MGET, PEXPIRE, PERSIST, INCRBY, EVALSHA, SCAN, UNLINK,
 * FLUSHDB (redis.io/commands); Django's RedisCache (django/core/cache/backends/redis.py).
 */
#include "redis.h"
#include "redis_django.h"
#include "redis_pool.h"
#include "../envelope.h"
#include "../key.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#define REDIS_STORE_MAGIC 0x3ed15ea5u
#define LEASE_SUFFIX      "\x1flease" /* 0x1f, then "lease" ('l' ends the hex escape) */
#define LEASE_SUFFIX_LEN  (sizeof LEASE_SUFFIX - 1)
#define MANY_CHUNK        512    /* keys per MGET or DEL command of a batch */
#define SCAN_COUNT        "1000" /* SCAN's COUNT hint: keys examined per clear_prefix batch */
#define TTL_DIGITS        24
#define DEFAULT_HOSTS     "127.0.0.1:6379"
#define TAGGED_WORDS      ((UINT16_MAX + 1) / 64) /* a bit per metrics class */

/* Results of the INCR script: {code} or {INCR_OK, "new value"}. */
#define INCR_MISS   0
#define INCR_NOTINT 1
#define INCR_RANGE  2
#define INCR_OK     3

static const char INCR_SRC[] =
    "local v = redis.pcall('GET', KEYS[1])\n"
    "if not v then return {0} end\n"
    "if type(v) == 'table' then return {1} end\n"
    "local neg, digits = string.match(v, '^(%-?)(%d+)$')\n"
    "if not digits or #digits > 19 then return {1} end\n"
    "local canon = (string.gsub(digits, '^0+', ''))\n"
    "if canon == '' then canon = '0'; neg = '' end\n"
    "if #canon == 19 then\n"
    "  local lim = neg == '-' and '9223372036854775808' or '9223372036854775807'\n"
    "  if canon > lim then return {2} end\n"
    "end\n"
    "local s = neg .. canon\n"
    "if s ~= v then redis.call('SET', KEYS[1], s, 'KEEPTTL') end\n"
    "local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])\n"
    "if type(r) == 'table' and r.err then\n"
    "  if s ~= v then redis.call('SET', KEYS[1], v, 'KEEPTTL') end\n"
    "  if string.find(r.err, 'overflow', 1, true) then return {2} end\n"
    "  return {1}\n"
    "end\n"
    "return {3, redis.call('GET', KEYS[1])}\n";

static const char TOUCH_FOREVER_SRC[] = "if redis.call('EXISTS', KEYS[1]) == 1 then\n"
                                        "  redis.call('PERSIST', KEYS[1])\n"
                                        "  return 1\n"
                                        "end\n"
                                        "return 0\n";

/* KEYS[1] the value's key, ARGV[1] "<KEY_PREFIX>:tag:". Returns the value, nil (absent) or 0
 * (busted). The header checks mirror corral__env_hdr_len and corral__env_parse (1-based here):
 * what is not a valid envelope with tags is returned as it is. A version is 1 to 20 decimal
 * digits, as corral__tags_valid reads them: any other carried version counts as busted. */
static const char CHECKED_SRC[] = "local v = redis.call('GET', KEYS[1])\n"
                                  "if not v then return false end\n"
                                  "local b = string.byte\n"
                                  "if #v < 5 or b(v, 1) ~= 199 or b(v, 2) ~= 1 then return v end\n"
                                  "local flags = b(v, 3)\n"
                                  "if flags ~= 2 and flags ~= 3 then return v end\n"
                                  "local h = b(v, 4) + 256 * b(v, 5)\n"
                                  "local off = flags == 3 and 22 or 6\n"
                                  "if h < off or h > #v then return v end\n"
                                  "local n = b(v, off)\n"
                                  "off = off + 1\n"
                                  "if n > 32 then return 0 end\n"
                                  "local keys, vers = {}, {}\n"
                                  "for i = 1, n do\n"
                                  "  if off > h then return 0 end\n"
                                  "  local nl = b(v, off)\n"
                                  "  off = off + 1\n"
                                  "  if nl == 0 or nl > 200 or off + nl - 1 > h then return 0 end\n"
                                  "  keys[i] = ARGV[1] .. string.sub(v, off, off + nl - 1)\n"
                                  "  off = off + nl\n"
                                  "  if off > h then return 0 end\n"
                                  "  local vl = b(v, off)\n"
                                  "  off = off + 1\n"
                                  "  if vl == 0 or vl > 20 or off + vl - 1 > h then return 0 end\n"
                                  "  vers[i] = string.sub(v, off, off + vl - 1)\n"
                                  "  if not string.find(vers[i], '^%d+$') then return 0 end\n"
                                  "  off = off + vl\n"
                                  "end\n"
                                  "if off ~= h + 1 then return 0 end\n"
                                  "if n == 0 then return v end\n"
                                  "local cur = redis.call('MGET', unpack(keys))\n"
                                  "for i = 1, n do\n"
                                  "  if cur[i] ~= vers[i] then return 0 end\n"
                                  "end\n"
                                  "return v\n";

static const char LEASE_RELEASE_SRC[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

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
    size_t max_value_bytes;
    bool django;      /* serializer=django or bare: values carry no envelope */
    bool pickles;     /* serializer=django: values go through redis_django.c */
    char *tag_prefix; /* "<KEY_PREFIX>:tag:", ARGV[1] of CHECKED; owned */
    size_t tag_prefix_len;
    /* Bit `cls` set: values under metrics class `cls` carry tags, and get_checked reads them with
     * the script. A hint (relaxed atomics): a stale bit costs a round trip, never correctness. */
    _Atomic uint64_t tagged_cls[TAGGED_WORDS];
    rscript incr, touch_forever, lease_release, checked;
} redis_store;

static redis_store *store_of(corral__store *base) {
    redis_store *s = CORRAL_CONTAINER_OF(base, redis_store, base);
    CORRAL_CHECK_OBJ(s, REDIS_STORE_MAGIC);
    return s;
}

/* ---- Helpers ---- */

/* The value's bytes in a reply: the reply itself, or what the Django format wraps. */
static int stored_bytes(const redis_store *s, const redisReply *r, const char **bytes,
                        size_t *len) {
    if (!s->pickles) {
        *bytes = r->str;
        *len = r->len;
        return CORRAL_OK;
    }
    const unsigned char *b;
    int rc = corral__django_decode(r->str, r->len, &b, len);
    *bytes = (const char *)b;
    return rc;
}

/* The length of the envelope header a stored value begins with: 0 for none, and always 0 in
 * Django's format, whose values carry no envelope. */
static size_t header_len(const redis_store *s, const char *bytes, size_t len) {
    return s->django ? 0 : corral__env_hdr_len(bytes, len);
}

/* A value holding a copy of a reply's bytes, its envelope header (if any) before `data`. */
static int make_value(redis_store *s, const redisReply *r, corral_value **out) {
    const char *bytes;
    size_t len;
    int rc = stored_bytes(s, r, &bytes, &len);
    if (rc != CORRAL_OK) return rc;
    corral_value *v = corral__value_new(s->alloc, bytes, len);
    if (!v) return CORRAL_ENOMEM;
    size_t hdr = header_len(s, bytes, len);
    v->data += hdr;
    v->len -= hdr;
    v->hdr_len = (uint32_t)hdr;
    *out = v;
    return CORRAL_OK;
}

/* ---- Values that point into an MGET reply ----
 *
 * A batch read hands out values without copying: one block holds a value for every element of
 * the reply, and the reply lives until the last of them is released. hiredis allocates its
 * replies with libc (0.14 has no allocator hooks), and keeps every string NUL-terminated, as a
 * value must be. */
typedef struct reply_value {
    corral_value v;
    struct reply_holder *h;
} reply_value;

typedef struct reply_holder {
    const corral__allocator *alloc;
    size_t bytes;
    _Atomic size_t refs; /* values not yet released */
    redisReply *reply;
    reply_value vals[];
} reply_holder;

static void reply_value_release(corral_value *v) {
    reply_holder *h = CORRAL_CONTAINER_OF(v, reply_value, v)->h;
    v->magic = 0;
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1) return;
    freeReplyObject(h->reply);
    corral__free(h->alloc, h, h->bytes);
}

/* Turns the string elements of an MGET reply into values in out[0..m) (NULL for the others),
 * taking the reply: it is freed here or with the last value. Raw format only (Django's is
 * decoded, so copied). Returns CORRAL_OK or CORRAL_ENOMEM (the reply freed, out untouched). */
static int values_from_reply(redis_store *s, redisReply *r, size_t m, corral_value **out) {
    size_t strings = 0;
    for (size_t i = 0; i < m; i++)
        strings += r->element[i]->type == REDIS_REPLY_STRING;
    if (strings == 0) {
        freeReplyObject(r);
        return CORRAL_OK;
    }
    reply_holder *h = corral__alloc3(s->alloc, m, sizeof(reply_value), sizeof(reply_holder));
    if (!h) {
        freeReplyObject(r);
        return CORRAL_ENOMEM;
    }
    h->alloc = s->alloc;
    h->bytes = sizeof(reply_holder) + m * sizeof(reply_value);
    atomic_init(&h->refs, strings);
    h->reply = r;
    for (size_t i = 0; i < m; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) continue;
        size_t hdr = header_len(s, e->str, e->len);
        reply_value *rv = &h->vals[i];
        rv->h = h;
        corral__value_init(&rv->v, (const unsigned char *)e->str + hdr, e->len - hdr,
                           reply_value_release);
        rv->v.hdr_len = (uint32_t)hdr;
        out[i] = &rv->v;
    }
    return CORRAL_OK;
}

static size_t fmt_i64(char *buf, int64_t v) {
    int n = snprintf(buf, TTL_DIGITS, "%" PRId64, v);
    assert(n > 0 && n < TTL_DIGITS);
    return (size_t)n;
}

/* Runs a script by SHA, loading it with EVAL when the server does not know it. `keys_args`
 * holds the key(s) then the arguments; at most 4 of them. */
static redisReply *eval(corral__redis_call *c, const rscript *sc, int nkeys, int n,
                        const char *const *keys_args, const size_t *lens) {
    const char *argv[7];
    size_t alen[7];
    char nk[4];
    assert(n <= 4 && nkeys <= n);
    int nkl = snprintf(nk, sizeof nk, "%d", nkeys);
    assert(nkl > 0 && (size_t)nkl < sizeof nk);
    argv[0] = "EVALSHA";
    alen[0] = 7;
    argv[1] = sc->sha;
    alen[1] = 40;
    argv[2] = nk;
    alen[2] = (size_t)nkl;
    for (int i = 0; i < n; i++) {
        argv[3 + i] = keys_args[i];
        alen[3 + i] = lens[i];
    }
    redisReply *r = corral__redis_command(c, 3 + n, argv, alen);
    if (r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        alen[0] = 4;
        argv[1] = sc->src;
        alen[1] = sc->src_len;
        r = corral__redis_command(c, 3 + n, argv, alen);
    }
    return r;
}

static int script_init(rscript *sc, const char *src, size_t len) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    sc->src = src;
    sc->src_len = len;
    if (!EVP_Digest(src, len, md, &md_len, EVP_sha1(), NULL) || md_len != 20) return CORRAL_ENOMEM;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 20; i++) {
        sc->sha[2 * i] = hex[md[i] >> 4];
        sc->sha[2 * i + 1] = hex[md[i] & 15];
    }
    sc->sha[40] = '\0';
    return CORRAL_OK;
}

/* The lease key of `k` into `buf` (CORRAL__KEYBUF + LEASE_SUFFIX_LEN bytes). */
static size_t lease_key(const corral__skey *k, char *buf) {
    memcpy(buf, k->data, k->len);
    memcpy(buf + k->len, LEASE_SUFFIX, LEASE_SUFFIX_LEN);
    return k->len + LEASE_SUFFIX_LEN;
}

/* The result of a command answering with an integer 1 (done) or 0 (absent). */
static int int_result(corral__redis_call *c, redisReply *r) {
    if (!r) return corral__redis_failed(c);
    int rc;
    if (r->type == REDIS_REPLY_INTEGER)
        rc = r->integer > 0 ? CORRAL_OK : CORRAL_MISS;
    else
        rc = corral__redis_error_reply(c, r);
    freeReplyObject(r);
    return rc;
}

/* ---- Single-key operations ---- */

static int r_get(corral__store *base, const corral__skey *k, corral_value **out) {
    redis_store *s = store_of(base);
    *out = NULL;
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_READ, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "GET", k->data };
    size_t lens[2] = { 3, k->len };
    redisReply *r = corral__redis_command(&c, 2, argv, lens);
    if (!r)
        rc = corral__redis_failed(&c);
    else if (r->type == REDIS_REPLY_STRING)
        rc = make_value(s, r, out);
    else if (r->type == REDIS_REPLY_NIL)
        rc = CORRAL_MISS;
    else
        rc = corral__redis_error_reply(&c, r); /* WRONGTYPE: not a value of ours */
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

static int r_get_into(corral__store *base, const corral__skey *k, void *buf, size_t cap,
                      size_t *len, void *hdr, size_t hdr_cap, size_t *hdr_len) {
    redis_store *s = store_of(base);
    *len = 0;
    *hdr_len = 0;
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_READ, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "GET", k->data };
    size_t lens[2] = { 3, k->len };
    redisReply *r = corral__redis_command(&c, 2, argv, lens);
    if (!r) {
        rc = corral__redis_failed(&c);
    } else if (r->type == REDIS_REPLY_STRING) {
        const char *bytes;
        size_t n;
        rc = stored_bytes(s, r, &bytes, &n);
        size_t h = rc == CORRAL_OK ? header_len(s, bytes, n) : 0;
        *hdr_len = h;
        if (h && h <= hdr_cap) memcpy(hdr, bytes, h);
        *len = rc == CORRAL_OK ? n - h : 0;
        if (rc == CORRAL_OK && *len > cap) {
            rc = CORRAL_ENOSPC;
        } else if (rc == CORRAL_OK && *len) {
            memcpy(buf, bytes + h, *len);
        }
    } else if (r->type == REDIS_REPLY_NIL) {
        rc = CORRAL_MISS;
    } else {
        rc = corral__redis_error_reply(&c, r);
    }
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

/* True when the bytes begin with an envelope that has tags. */
static bool has_tags(const void *bytes, size_t len) {
    return corral__env_hdr_len(bytes, len) > 0 &&
           (((const unsigned char *)bytes)[2] & CORRAL__ENV_TAGS);
}

static bool cls_tagged(redis_store *s, uint16_t cls) {
    uint64_t w = atomic_load_explicit(&s->tagged_cls[cls / 64], memory_order_relaxed);
    return (w >> (cls % 64)) & 1;
}

static void mark_tagged(redis_store *s, uint16_t cls) {
    if (!cls_tagged(s, cls))
        atomic_fetch_or_explicit(&s->tagged_cls[cls / 64], (uint64_t)1 << (cls % 64),
                                 memory_order_relaxed);
}

static int r_get_checked(corral__store *base, const corral__skey *k, corral_value **out) {
    redis_store *s = store_of(base);
    if (s->django) return r_get(base, k, out); /* no envelope, no tags */
    if (!cls_tagged(s, k->cls)) {
        int rc = r_get(base, k, out);
        if (rc != CORRAL_OK || !has_tags((*out)->data - (*out)->hdr_len, (*out)->hdr_len))
            return rc;
        /* Tags where none were seen: this read and the class's next ones go through CHECKED. */
        mark_tagged(s, k->cls);
        corral_value_unref(*out);
    }
    *out = NULL;
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_READ, &c);
    if (rc != CORRAL_OK) return rc;
    const char *ka[2] = { k->data, s->tag_prefix };
    size_t kl[2] = { k->len, s->tag_prefix_len };
    redisReply *r = eval(&c, &s->checked, 1, 2, ka, kl);
    if (!r)
        rc = corral__redis_failed(&c);
    else if (r->type == REDIS_REPLY_STRING)
        rc = make_value(s, r, out);
    else if (r->type == REDIS_REPLY_NIL)
        rc = CORRAL_MISS;
    else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        rc = CORRAL_MISS; /* a tag was busted */
    else
        rc = corral__redis_error_reply(&c, r);
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

/* The bytes to send for a value: the value, or its Django encoding in a new block (`*owned`,
 * `*owned_len`, freed by the caller). */
static int wire_bytes(redis_store *s, const void *val, size_t len, unsigned flags, const char **out,
                      size_t *out_len, char **owned, size_t *owned_len) {
    *owned = NULL;
    *owned_len = 0;
    *out = val ? val : "";
    *out_len = len;
    if (!s->pickles) return CORRAL_OK;
    bool as_bytes = flags & CORRAL__SETF_BINARY;
    size_t n = corral__django_encoded_len_as(val, len, as_bytes);
    char *b = corral__alloc(s->alloc, n ? n : 1);
    if (!b) return CORRAL_ENOMEM;
    corral__django_encode_as(val, len, as_bytes, (unsigned char *)b);
    *out = *owned = b;
    *out_len = *owned_len = n;
    return CORRAL_OK;
}

static int r_set_flags(corral__store *base, const corral__skey *k, const void *val, size_t len,
                       int64_t ttl_ms, corral__set_mode mode, unsigned flags) {
    redis_store *s = store_of(base);
    if (len > s->max_value_bytes) return CORRAL_ETOOBIG;
    if (ttl_ms <= 0) return CORRAL_EINVAL; /* store.h: the layer above turns 0 into a delete */
    if (!s->django && has_tags(val, len)) mark_tagged(s, k->cls); /* read it with CHECKED */
    const char *wire;
    size_t wire_len, owned_len;
    char *owned;
    int rc = wire_bytes(s, val, len, flags, &wire, &wire_len, &owned, &owned_len);
    if (rc != CORRAL_OK) return rc;
    char ttl[TTL_DIGITS];
    const char *argv[6] = { "SET", k->data, wire };
    size_t lens[6] = { 3, k->len, wire_len };
    int argc = 3;
    if (ttl_ms != CORRAL__NO_EXPIRY) {
        argv[argc] = "PX";
        lens[argc++] = 2;
        lens[argc] = fmt_i64(ttl, ttl_ms);
        argv[argc++] = ttl;
    }
    if (mode != CORRAL__SET_ALWAYS) {
        argv[argc] = mode == CORRAL__SET_NX ? "NX" : "XX";
        lens[argc++] = 2;
    }
    corral__redis_call c;
    rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) {
        corral__free(s->alloc, owned, owned_len);
        return rc;
    }
    redisReply *r = corral__redis_command(&c, argc, argv, lens);
    if (!r)
        rc = corral__redis_failed(&c);
    else if (r->type == REDIS_REPLY_STATUS)
        rc = CORRAL_OK;
    else if (r->type == REDIS_REPLY_NIL) /* NX on a present key, XX on an absent one */
        rc = mode == CORRAL__SET_NX ? CORRAL_EXISTS : CORRAL_MISS;
    else
        rc = corral__redis_error_reply(&c, r);
    freeReplyObject(r);
    corral__redis_end(&c);
    corral__free(s->alloc, owned, owned_len);
    return rc;
}

static int r_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
                 int64_t ttl_ms, corral__set_mode mode) {
    return r_set_flags(base, k, val, len, ttl_ms, mode, 0);
}

static int r_del(corral__store *base, const corral__skey *k) {
    redis_store *s = store_of(base);
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "DEL", k->data };
    size_t lens[2] = { 3, k->len };
    rc = int_result(&c, corral__redis_command(&c, 2, argv, lens));
    corral__redis_end(&c);
    return rc;
}

static int r_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms) {
    redis_store *s = store_of(base);
    if (ttl_ms <= 0) return CORRAL_EINVAL;
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    redisReply *r;
    if (ttl_ms == CORRAL__NO_EXPIRY) {
        const char *ka[1] = { k->data };
        size_t kl[1] = { k->len };
        r = eval(&c, &s->touch_forever, 1, 1, ka, kl);
    } else {
        char ttl[TTL_DIGITS];
        const char *argv[3] = { "PEXPIRE", k->data, ttl };
        size_t lens[3] = { 7, k->len, fmt_i64(ttl, ttl_ms) };
        r = corral__redis_command(&c, 3, argv, lens);
    }
    rc = int_result(&c, r);
    corral__redis_end(&c);
    return rc;
}

/* Parses the decimal result of the INCR script (always a valid int64: INCRBY made it). */
static int parse_result(const redisReply *e, int64_t *out) {
    char buf[TTL_DIGITS];
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof buf) return -1;
    memcpy(buf, e->str, e->len);
    buf[e->len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0') return -1;
    *out = (int64_t)v;
    return 0;
}

static int r_incr(corral__store *base, const corral__skey *k, int64_t delta, int64_t *out) {
    redis_store *s = store_of(base);
    *out = 0;
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    char d[TTL_DIGITS];
    const char *ka[2] = { k->data, d };
    size_t kl[2] = { k->len, fmt_i64(d, delta) };
    redisReply *r = eval(&c, &s->incr, 1, 2, ka, kl);
    if (!r) {
        rc = corral__redis_failed(&c);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
               r->element[0]->type == REDIS_REPLY_INTEGER) {
        switch (r->element[0]->integer) {
        case INCR_MISS: rc = CORRAL_MISS; break;
        case INCR_NOTINT: rc = CORRAL_ENOTINT; break;
        case INCR_RANGE: rc = CORRAL_ERANGE; break;
        case INCR_OK:
            rc = r->elements == 2 && parse_result(r->element[1], out) == 0
                     ? CORRAL_OK
                     : corral__redis_error_reply(&c, r);
            break;
        default: rc = corral__redis_error_reply(&c, r); break;
        }
    } else {
        rc = corral__redis_error_reply(&c, r);
    }
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

static int r_clear(corral__store *base) {
    redis_store *s = store_of(base);
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "FLUSHDB", "ASYNC" };
    size_t lens[2] = { 7, 5 };
    redisReply *r = corral__redis_command(&c, 2, argv, lens);
    if (!r)
        rc = corral__redis_failed(&c);
    else
        rc = r->type == REDIS_REPLY_STATUS ? CORRAL_OK : corral__redis_error_reply(&c, r);
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

/* ---- clear_prefix: SCAN + UNLINK ---- */

/* The SCAN pattern of keys beginning with "prefix:": glob metacharacters escaped. */
static size_t prefix_pattern(const char *prefix, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = prefix[i];
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') out[n++] = '\\';
        out[n++] = ch;
    }
    out[n++] = ':';
    out[n++] = '*';
    return n;
}

/* UNLINKs the keys of one SCAN batch. */
static int unlink_batch(redis_store *s, corral__redis_call *c, const redisReply *keys) {
    size_t n = keys->elements;
    const char **argv = corral__alloc3(s->alloc, n + 1, sizeof *argv, 0);
    size_t *lens = corral__alloc3(s->alloc, n + 1, sizeof *lens, 0);
    int rc = CORRAL_ENOMEM;
    if (!argv || !lens) goto done;
    argv[0] = "UNLINK";
    lens[0] = 6;
    for (size_t i = 0; i < n; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) {
            rc = corral__redis_error_reply(c, keys);
            goto done;
        }
        argv[1 + i] = keys->element[i]->str;
        lens[1 + i] = keys->element[i]->len;
    }
    redisReply *r = corral__redis_command(c, (int)(n + 1), argv, lens);
    if (!r)
        rc = corral__redis_failed(c);
    else
        rc = r->type == REDIS_REPLY_INTEGER ? CORRAL_OK : corral__redis_error_reply(c, r);
    freeReplyObject(r);
done:
    corral__free(s->alloc, argv, (n + 1) * sizeof *argv);
    corral__free(s->alloc, lens, (n + 1) * sizeof *lens);
    return rc;
}

static int r_clear_prefix(corral__store *base, const char *prefix, size_t len) {
    redis_store *s = store_of(base);
    if (len > CORRAL__MAX_KEY) return CORRAL_EINVAL;
    char pattern[2 * CORRAL__MAX_KEY + 2];
    size_t plen = prefix_pattern(prefix, len, pattern);
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    char cursor[32] = "0";
    size_t cursor_len = 1;
    do {
        const char *argv[6] = { "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT };
        size_t lens[6] = { 4, cursor_len, 5, plen, 5, sizeof SCAN_COUNT - 1 };
        redisReply *r = corral__redis_command(&c, 6, argv, lens);
        if (!r) {
            rc = corral__redis_failed(&c);
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
            r->element[0]->len >= sizeof cursor || r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = corral__redis_error_reply(&c, r);
            freeReplyObject(r);
            break;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor_len = r->element[0]->len;
        cursor[cursor_len] = '\0';
        if (r->element[1]->elements > 0) rc = unlink_batch(s, &c, r->element[1]);
        freeReplyObject(r);
    } while (rc == CORRAL_OK && !(cursor_len == 1 && cursor[0] == '0'));
    corral__redis_end(&c);
    return rc;
}

/* ---- Many-ops: pipelined ---- */

/* Argument vectors for one command of up to MANY_CHUNK keys, allocated before any I/O so an
 * allocation failure never leaves a pipeline half sent. */
typedef struct keys_argv {
    const char **argv;
    size_t *lens;
    size_t cap; /* entries, the command name included */
} keys_argv;

static int keys_argv_new(redis_store *s, size_t n, keys_argv *kv) {
    kv->cap = CORRAL_MIN(n, (size_t)MANY_CHUNK) + 1;
    kv->argv = corral__alloc3(s->alloc, kv->cap, sizeof *kv->argv, 0);
    kv->lens = corral__alloc3(s->alloc, kv->cap, sizeof *kv->lens, 0);
    return kv->argv && kv->lens ? CORRAL_OK : CORRAL_ENOMEM;
}

static void keys_argv_free(redis_store *s, keys_argv *kv) {
    corral__free(s->alloc, kv->argv, kv->cap * sizeof *kv->argv);
    corral__free(s->alloc, kv->lens, kv->cap * sizeof *kv->lens);
}

/* Queues one command of `n` (<= MANY_CHUNK) keys after `cmd` (MGET, DEL); 0 or -1. */
static int append_keys(corral__redis_call *c, keys_argv *kv, const char *cmd,
                       const corral__skey *ks, size_t n) {
    assert(n + 1 <= kv->cap);
    kv->argv[0] = cmd;
    kv->lens[0] = strlen(cmd);
    for (size_t i = 0; i < n; i++) {
        kv->argv[1 + i] = ks[i].data;
        kv->lens[1 + i] = ks[i].len;
    }
    return corral__redis_append(c, (int)(n + 1), kv->argv, kv->lens);
}

static void unref_all(corral_value **out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        corral_value_unref(out[i]);
        out[i] = NULL;
    }
}

/* The remaining TTL a PTTL reply gives, as corral__redis_get_ttl reports it: -1 (no expiry) is
 * CORRAL__NO_EXPIRY; -2 (gone) and 0 (about to go) are 0, not worth keeping near. */
static int64_t ttl_of(const redisReply *t) {
    if (t->type != REDIS_REPLY_INTEGER) return 0;
    return t->integer == -1 ? CORRAL__NO_EXPIRY : t->integer > 0 ? (int64_t)t->integer : 0;
}

/* get_many, and with `ttls` also each key's remaining TTL (a PTTL per key after the MGETs, in
 * the same pipeline). */
static int get_many_role(redis_store *s, corral__redis_role role, const corral__skey *ks, size_t n,
                         corral_value **out, int64_t *ttls) {
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        if (ttls) ttls[i] = 0;
    }
    if (n == 0) return CORRAL_OK;
    keys_argv kv;
    int rc = keys_argv_new(s, n, &kv);
    if (rc != CORRAL_OK) {
        keys_argv_free(s, &kv);
        return rc;
    }
    corral__redis_call c;
    rc = corral__redis_begin(s->pool, role, &c);
    if (rc != CORRAL_OK) {
        keys_argv_free(s, &kv);
        return rc == CORRAL_MISS ? CORRAL_OK : rc; /* a failed read: all miss */
    }
    size_t chunks = (n + MANY_CHUNK - 1) / MANY_CHUNK, sent = 0;
    bool all_sent = true;
    for (; sent < chunks && all_sent; sent++) {
        size_t at = sent * MANY_CHUNK;
        all_sent = append_keys(&c, &kv, "MGET", ks + at, CORRAL_MIN(n - at, MANY_CHUNK)) == 0;
    }
    for (size_t i = 0; ttls && all_sent && i < n; i++) {
        const char *argv[2] = { "PTTL", ks[i].data };
        size_t lens[2] = { 4, ks[i].len };
        all_sent = corral__redis_append(&c, 2, argv, lens) == 0;
    }
    keys_argv_free(s, &kv);
    rc = CORRAL_OK;
    if (!all_sent) {
        rc = corral__redis_failed(&c); /* the append closed the connection: nothing was read */
    } else {
        /* Every reply is read, even after an allocation failure, to keep the stream aligned. */
        bool broken = false;
        for (size_t ch = 0; ch < chunks; ch++) {
            size_t at = ch * MANY_CHUNK, m = CORRAL_MIN(n - at, MANY_CHUNK);
            redisReply *r = corral__redis_read(&c);
            if (!r) {
                rc = corral__redis_failed(&c);
                broken = true;
                break;
            }
            if (r->type != REDIS_REPLY_ARRAY || r->elements != m) {
                if (rc == CORRAL_OK) rc = corral__redis_error_reply(&c, r);
            } else if (!s->django && rc == CORRAL_OK) {
                rc = values_from_reply(s, r, m, out + at); /* takes the reply */
                continue;
            } else {
                for (size_t i = 0; i < m && rc == CORRAL_OK; i++) {
                    const redisReply *e = r->element[i];
                    if (e->type == REDIS_REPLY_STRING) rc = make_value(s, e, &out[at + i]);
                }
            }
            freeReplyObject(r);
        }
        for (size_t i = 0; ttls && !broken && i < n; i++) {
            redisReply *t = corral__redis_read(&c);
            if (!t) {
                int f = corral__redis_failed(&c);
                if (rc == CORRAL_OK) rc = f;
                break;
            }
            ttls[i] = ttl_of(t);
            freeReplyObject(t);
        }
    }
    corral__redis_end(&c);
    if (rc != CORRAL_OK) unref_all(out, n);
    return rc == CORRAL_MISS ? CORRAL_OK : rc;
}

static int r_get_many(corral__store *base, const corral__skey *ks, size_t n, corral_value **out) {
    return get_many_role(store_of(base), CORRAL__REDIS_READ, ks, n, out, NULL);
}

static int r_set_many_flags(corral__store *base, const corral__skey *ks, const corral_buf *vals,
                            size_t n, int64_t ttl_ms, unsigned flags) {
    redis_store *s = store_of(base);
    bool as_bytes = flags & CORRAL__SETF_BINARY;
    if (ttl_ms <= 0) return CORRAL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (vals[i].len > s->max_value_bytes) return CORRAL_ETOOBIG;
    if (n == 0) return CORRAL_OK;
    /* Django format: one scratch block, as large as the largest encoding; each SET is copied
     * into hiredis's output buffer as it is appended. */
    size_t scratch_len = 0;
    for (size_t i = 0; s->pickles && i < n; i++)
        scratch_len = CORRAL_MAX(
            scratch_len, corral__django_encoded_len_as(vals[i].data, vals[i].len, as_bytes));
    unsigned char *scratch = NULL;
    if (scratch_len && !(scratch = corral__alloc(s->alloc, scratch_len))) return CORRAL_ENOMEM;
    char ttl[TTL_DIGITS];
    size_t ttl_len = ttl_ms == CORRAL__NO_EXPIRY ? 0 : fmt_i64(ttl, ttl_ms);
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) {
        corral__free(s->alloc, scratch, scratch_len);
        return rc;
    }
    const char *multi[1] = { "MULTI" }, *exec[1] = { "EXEC" };
    size_t multi_len[1] = { 5 }, exec_len[1] = { 4 };
    bool sent = corral__redis_append(&c, 1, multi, multi_len) == 0;
    for (size_t i = 0; sent && i < n; i++) {
        const char *argv[5] = { "SET", ks[i].data, vals[i].data ? vals[i].data : "", "PX", ttl };
        size_t lens[5] = { 3, ks[i].len, vals[i].len, 2, ttl_len };
        if (s->pickles) {
            corral__django_encode_as(vals[i].data, vals[i].len, as_bytes, scratch);
            argv[2] = (const char *)scratch;
            lens[2] = corral__django_encoded_len_as(vals[i].data, vals[i].len, as_bytes);
        }
        sent = corral__redis_append(&c, ttl_len ? 5 : 3, argv, lens) == 0;
    }
    corral__free(s->alloc, scratch, scratch_len);
    if (sent) sent = corral__redis_append(&c, 1, exec, exec_len) == 0;
    if (!sent) {
        rc = corral__redis_failed(&c);
        corral__redis_end(&c);
        return rc;
    }
    /* MULTI's +OK, one +QUEUED per SET, then EXEC's array of the SET replies. An error at any
     * step aborts the whole transaction (EXECABORT): nothing was written. */
    for (size_t i = 0; i < n + 2; i++) {
        redisReply *r = corral__redis_read(&c);
        if (!r) {
            rc = corral__redis_failed(&c);
            break;
        }
        bool last = i == n + 1;
        bool ok =
            last ? r->type == REDIS_REPLY_ARRAY && r->elements == n : r->type == REDIS_REPLY_STATUS;
        for (size_t j = 0; ok && last && j < n; j++)
            ok = r->element[j]->type == REDIS_REPLY_STATUS;
        if (!ok && rc == CORRAL_OK) {
            const redisReply *why = r;
            if (last && r->type == REDIS_REPLY_ARRAY) {
                for (size_t j = 0; j < r->elements; j++)
                    if (r->element[j]->type == REDIS_REPLY_ERROR) why = r->element[j];
            }
            rc = corral__redis_error_reply(&c, why);
        }
        freeReplyObject(r);
    }
    corral__redis_end(&c);
    return rc;
}

static int r_set_many(corral__store *base, const corral__skey *ks, const corral_buf *vals, size_t n,
                      int64_t ttl_ms) {
    return r_set_many_flags(base, ks, vals, n, ttl_ms, 0);
}

static int r_del_many(corral__store *base, const corral__skey *ks, size_t n, size_t *deleted) {
    redis_store *s = store_of(base);
    *deleted = 0;
    if (n == 0) return CORRAL_OK;
    keys_argv kv;
    int rc = keys_argv_new(s, n, &kv);
    if (rc != CORRAL_OK) {
        keys_argv_free(s, &kv);
        return rc;
    }
    corral__redis_call c;
    rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) {
        keys_argv_free(s, &kv);
        return rc;
    }
    size_t chunks = (n + MANY_CHUNK - 1) / MANY_CHUNK, sent = 0;
    for (; sent < chunks; sent++) {
        size_t at = sent * MANY_CHUNK;
        if (append_keys(&c, &kv, "DEL", ks + at, CORRAL_MIN(n - at, MANY_CHUNK)) != 0) break;
    }
    keys_argv_free(s, &kv);
    if (sent < chunks) {
        rc = corral__redis_failed(&c);
        corral__redis_end(&c);
        return rc;
    }
    size_t d = 0;
    for (size_t ch = 0; ch < chunks; ch++) {
        redisReply *r = corral__redis_read(&c);
        if (!r) {
            rc = corral__redis_failed(&c);
            break;
        }
        if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
            d += (size_t)r->integer;
        else if (rc == CORRAL_OK)
            rc = corral__redis_error_reply(&c, r);
        freeReplyObject(r);
    }
    corral__redis_end(&c);
    *deleted = d;
    return rc;
}

/* ---- Leases ---- */

static int r_lease_acquire(corral__store *base, const corral__skey *k, const void *token,
                           size_t token_len, int64_t ttl_ms) {
    redis_store *s = store_of(base);
    if (ttl_ms <= 0 || ttl_ms == CORRAL__NO_EXPIRY) return CORRAL_EINVAL; /* leases expire */
    char key[CORRAL__KEYBUF + LEASE_SUFFIX_LEN], ttl[TTL_DIGITS];
    const char *argv[6] = { "SET", key, token, "NX", "PX", ttl };
    size_t lens[6] = { 3, lease_key(k, key), token_len, 2, 2, fmt_i64(ttl, ttl_ms) };
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    redisReply *r = corral__redis_command(&c, 6, argv, lens);
    if (!r)
        rc = corral__redis_failed(&c);
    else if (r->type == REDIS_REPLY_STATUS)
        rc = CORRAL_OK;
    else if (r->type == REDIS_REPLY_NIL)
        rc = CORRAL_EXISTS;
    else
        rc = corral__redis_error_reply(&c, r);
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

static int r_lease_release(corral__store *base, const corral__skey *k, const void *token,
                           size_t token_len) {
    redis_store *s = store_of(base);
    char key[CORRAL__KEYBUF + LEASE_SUFFIX_LEN];
    const char *ka[2] = { key, token };
    size_t kl[2] = { lease_key(k, key), token_len };
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_WRITE, &c);
    if (rc != CORRAL_OK) return rc;
    rc = int_result(&c, eval(&c, &s->lease_release, 1, 2, ka, kl));
    corral__redis_end(&c);
    return rc;
}

/* ---- For the near cache ---- */

int corral__redis_get_ttl(corral__store *base, const corral__skey *k, corral_value **out,
                          int64_t *ttl_ms) {
    redis_store *s = store_of(base);
    *out = NULL;
    *ttl_ms = 0;
    corral__redis_call c;
    int rc = corral__redis_begin(s->pool, CORRAL__REDIS_READ_PRIMARY, &c);
    if (rc != CORRAL_OK) return rc;
    const char *get[2] = { "GET", k->data }, *pttl[2] = { "PTTL", k->data };
    size_t get_len[2] = { 3, k->len }, pttl_len[2] = { 4, k->len };
    redisReply *v = NULL, *t = NULL;
    if (corral__redis_append(&c, 2, get, get_len) != 0 ||
        corral__redis_append(&c, 2, pttl, pttl_len) != 0 || !(v = corral__redis_read(&c)) ||
        !(t = corral__redis_read(&c))) {
        rc = corral__redis_failed(&c);
    } else if (v->type == REDIS_REPLY_NIL) {
        rc = CORRAL_MISS;
    } else if (v->type != REDIS_REPLY_STRING || t->type != REDIS_REPLY_INTEGER) {
        rc = corral__redis_error_reply(&c, v->type == REDIS_REPLY_STRING ? t : v);
    } else {
        rc = make_value(s, v, out);
        *ttl_ms = ttl_of(t);
    }
    freeReplyObject(v);
    freeReplyObject(t);
    corral__redis_end(&c);
    return rc;
}

int corral__redis_get_many_ttl(corral__store *base, const corral__skey *ks, size_t n,
                               corral_value **out, int64_t *ttl_ms) {
    return get_many_role(store_of(base), CORRAL__REDIS_READ_PRIMARY, ks, n, out, ttl_ms);
}

struct redisContext *corral__redis_connect_primary(corral__store *base) {
    return corral__redis_pool_connect(store_of(base)->pool);
}

/* ---- Accounting, metrics, close ---- */

static size_t r_used_bytes(corral__store *base) {
    (void)store_of(base);
    return 0; /* Redis's memory is its own (INFO memory); asking would be I/O in a stats call */
}

static size_t r_max_bytes(corral__store *base) {
    (void)store_of(base);
    return 0;
}

static int r_metrics_text(corral__store *base, char *buf, size_t cap) {
    redis_store *s = store_of(base);
    corral__redis_counters *ctr = corral__redis_pool_counters(s->pool);
    const struct {
        const char *name, *type, *help;
        uint64_t v;
    } rows[] = {
#define LOAD(x) atomic_load_explicit(&ctr->x, memory_order_relaxed)
        { "errors_total", "counter", "Redis calls that failed: I/O, timeout, error reply.",
          LOAD(errors) },
        { "timeouts_total", "counter", "Connect or command deadlines that passed.",
          LOAD(timeouts) },
        { "connects_total", "counter", "Connections established.", LOAD(connects) },
        { "reconnects_total", "counter", "Connections re-established after a failure.",
          LOAD(reconnects) },
        { "connect_failures_total", "counter", "Connection attempts that failed.",
          LOAD(connect_failures) },
        { "backoff_rejections_total", "counter",
          "Calls failed fast, without I/O, while reconnecting backs off.", LOAD(fast_fails) },
        { "pool_timeouts_total", "counter",
          "Calls that found no free connection within the command timeout.", LOAD(pool_timeouts) },
        { "failed_reads_total", "counter", "Reads answered as a miss because Redis failed.",
          LOAD(failed_reads) },
        { "failed_writes_total", "counter", "Writes that returned an error because Redis failed.",
          LOAD(failed_writes) },
        { "round_trips_total", "counter",
          "Commands and pipelines sent to Redis: one network round trip each.", LOAD(round_trips) },
        { "connections", "gauge", "Connections open now.",
          (uint64_t)CORRAL_MAX(LOAD(open), (int64_t)0) },
#undef LOAD
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int n = snprintf(buf + used, cap - used,
                         "# HELP corral_redis_%s %s\n# TYPE corral_redis_%s %s\n"
                         "corral_redis_%s %" PRIu64 "\n",
                         rows[i].name, rows[i].help, rows[i].name, rows[i].type, rows[i].name,
                         rows[i].v);
        if (n < 0 || (size_t)n >= cap - used) {
            buf[used] = '\0';
            return CORRAL_ENOSPC;
        }
        used += (size_t)n;
    }
    return CORRAL_OK;
}

static void r_close(corral__store *base) {
    redis_store *s = store_of(base);
    corral__redis_pool_free(s->pool);
    corral__free(s->alloc, s->tag_prefix, s->tag_prefix_len + 1);
    s->magic = 0;
    corral__free(s->alloc, s, sizeof *s);
}

static const corral__store_ops redis_ops = {
    .name = "redis",
    .get = r_get,
    .get_into = r_get_into,
    .get_checked = r_get_checked,
    .set = r_set,
    .set_flags = r_set_flags,
    .set_many_flags = r_set_many_flags,
    .del = r_del,
    .touch = r_touch,
    .incr = r_incr,
    .clear = r_clear,
    .clear_prefix = r_clear_prefix,
    .get_many = r_get_many,
    .set_many = r_set_many,
    .del_many = r_del_many,
    .lease_acquire = r_lease_acquire,
    .lease_release = r_lease_release,
    .used_bytes = r_used_bytes,
    .max_bytes = r_max_bytes,
    .metrics_text = r_metrics_text,
    .close = r_close,
};

/* ---- Open ---- */

int corral__redis_check_hosts(const char *list, corral_error *err) {
    size_t n;
    return corral__redis_parse_hosts(list, NULL, 0, &n, err);
}

int corral__redis_open(corral__store **out, const corral_redis_options *o, size_t max_value_bytes,
                       const corral__store_env *env, corral_error *err) {
    *out = NULL;
    corral__redis_addr addrs[CORRAL__REDIS_MAX_HOSTS];
    size_t n_addrs = 0;
    if (!o->unix_path) {
        int rc = corral__redis_parse_hosts(o->hosts ? o->hosts : DEFAULT_HOSTS, addrs,
                                           CORRAL__REDIS_MAX_HOSTS, &n_addrs, err);
        if (rc != CORRAL_OK) return rc;
    } else if (!*o->unix_path) {
        return corral__seterr(err, CORRAL_EBADURL, "redis: empty unix socket path");
    }
    if (o->connect_timeout_ms <= 0)
        return corral__seterr(err, CORRAL_EINVAL, "connect_timeout: must be more than 0");
    if (o->command_timeout_ms <= 0)
        return corral__seterr(err, CORRAL_EINVAL, "command_timeout: must be more than 0");
    if (o->pool < 1 || o->pool > CORRAL__REDIS_MAX_POOL)
        return corral__seterr(err, CORRAL_EINVAL, "pool: must be 1 to %u", CORRAL__REDIS_MAX_POOL);
    if (o->db > INT32_MAX) return corral__seterr(err, CORRAL_EINVAL, "db: too large");
    if (o->serializer != CORRAL_SERIALIZER_RAW && o->serializer != CORRAL_SERIALIZER_DJANGO &&
        o->serializer != CORRAL_SERIALIZER_BARE)
        return corral__seterr(err, CORRAL_EINVAL, "serializer: unknown (raw, django or bare)");

    redis_store *s = corral__calloc(env->alloc, 1, sizeof *s);
    if (!s) return corral__seterr(err, CORRAL_ENOMEM, "redis store: out of memory");
    s->base.ops = &redis_ops;
    s->magic = REDIS_STORE_MAGIC;
    s->alloc = env->alloc;
    s->max_value_bytes = CORRAL_MIN(max_value_bytes, CORRAL__REDIS_MAX_VALUE);
    s->pickles = o->serializer == CORRAL_SERIALIZER_DJANGO;
    s->django = s->pickles || o->serializer == CORRAL_SERIALIZER_BARE;
    if (s->django) s->base.caps |= CORRAL__STORE_NO_ENVELOPE;
    for (size_t i = 0; i < TAGGED_WORDS; i++)
        atomic_init(&s->tagged_cls[i], 0);
    s->tag_prefix_len = env->key_prefix_len + sizeof ":tag:" - 1;
    s->tag_prefix = corral__alloc(env->alloc, s->tag_prefix_len + 1);
    if (!s->tag_prefix) goto nomem;
    if (env->key_prefix_len) memcpy(s->tag_prefix, env->key_prefix, env->key_prefix_len);
    memcpy(s->tag_prefix + env->key_prefix_len, ":tag:", sizeof ":tag:");
    if (script_init(&s->incr, INCR_SRC, sizeof INCR_SRC - 1) != CORRAL_OK ||
        script_init(&s->touch_forever, TOUCH_FOREVER_SRC, sizeof TOUCH_FOREVER_SRC - 1) !=
            CORRAL_OK ||
        script_init(&s->lease_release, LEASE_RELEASE_SRC, sizeof LEASE_RELEASE_SRC - 1) !=
            CORRAL_OK ||
        script_init(&s->checked, CHECKED_SRC, sizeof CHECKED_SRC - 1) != CORRAL_OK)
        goto nomem;
    corral__redis_pool_config pc = { .addrs = addrs,
                                     .n_addrs = n_addrs,
                                     .unix_path = o->unix_path,
                                     .username = o->username,
                                     .password = o->password,
                                     .db = o->db,
                                     .connect_timeout_ms = o->connect_timeout_ms,
                                     .command_timeout_ms = o->command_timeout_ms,
                                     .pool = o->pool };
    int rc = corral__redis_pool_new(&s->pool, &pc, env->alloc);
    if (rc != CORRAL_OK) {
        corral__free(env->alloc, s->tag_prefix, s->tag_prefix_len + 1);
        s->magic = 0;
        corral__free(env->alloc, s, sizeof *s);
        return corral__seterr(err, rc, "redis store: %s", corral_strerror(rc));
    }
    *out = &s->base;
    return CORRAL_OK;
nomem:
    corral__free(env->alloc, s->tag_prefix, s->tag_prefix_len + 1); /* accepts NULL */
    s->magic = 0;
    corral__free(env->alloc, s, sizeof *s);
    return corral__seterr(err, CORRAL_ENOMEM, "redis store: out of memory");
}
