/*
 * redis.c - the Redis store: the vtable's single-key operations, leases, the scripts and open.
 * The many-key operations, clear_prefix and the near cache's reads are in redis_many.c,
 * connections and failures in redis_pool.c, Django's wire format in redis_django.c. Why each
 * command was chosen, and what was measured: docs/redis.md.
 *
 * Data model
 * - A value is a Redis string under its physical key, byte for byte (an envelope is part of
 *   those bytes; store.h), with the entry's TTL as the key's expiry in milliseconds (PX).
 * - A lease lives under the physical key followed by LEASE_SUFFIX, "\x1flease". Validated keys
 *   never hold a byte in 0x00-0x20, so no value's key can be a lease key, and a lease stays
 *   under its key's prefix, where clear_prefix finds it.
 * - Tag and namespace versions of the layer above are plain integer values like any other.
 *
 * Commands, one round trip each: get, get_into GET; set SET [PX] [NX|XX]; del DEL; touch
 * PEXPIRE, or the script TOUCH_FOREVER for no expiry; ttl PTTL (on the primary); incr the script
 * INCR; clear FLUSHDB ASYNC; lease_acquire SET NX PX; lease_release the script LEASE_RELEASE
 * (compare and delete, then PUBLISH the release for other processes' waiters: redis_notify.c;
 * on a cluster too, where a PUBLISH reaches every node: docs/redis.md, "Lease wake-ups").
 * Scripts run with EVALSHA by the SHA-1 computed at open; NOSCRIPT falls back to EVAL.
 *
 * get_checked: the script CHECKED reads a value and, when its envelope carries tags, the tags'
 * versions, and returns it only when every version still matches: a tagged read in one round
 * trip. It parses the envelope header in Lua, mirroring envelope.c: the two must agree. A class
 * of keys (corral__skey.cls) reads with the script only once a tagged value was seen under it;
 * until then a plain GET, since the script costs the server more than a GET.
 *
 * Failures: a read that fails (server down, timeout, error reply) is a miss; a write that fails
 * is CORRAL_ESTORE, CORRAL_ETIMEDOUT past a deadline, or CORRAL_ENOMEM when Redis refuses it for
 * maxmemory; each is counted (redis_pool.h). A write whose reply was lost may have been applied.
 *
 * Django's format (serializer=django): values are encoded on every write and decoded on every
 * read; a Django site reads what corral writes, so the store has CORRAL__STORE_NO_ENVELOPE.
 * serializer=bare is the same without the encoding: the caller (the Python package) writes
 * Django's format itself, and a read hands back the stored bytes.
 *
 * Events: none (store.h); used_bytes and max_bytes are 0. Threads: the store's fields are
 * written at open and read-only afterwards; connections are handed out one call at a time by
 * redis_pool.c. No lock is taken here.
 */
#include "redis.h"
#include "../prom.h"
#include "redis_internal.h"
#include "redis_django.h"
#include "redis_notify.h"
#include "redis_pool.h"
#include "near_peers.h"
#include "../envelope.h"
#include "../key.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#define LEASE_SUFFIX     "\x1flease" /* 0x1f, then "lease" ('l' ends the hex escape) */
#define LEASE_SUFFIX_LEN (sizeof LEASE_SUFFIX - 1)
#define DEFAULT_HOSTS    "127.0.0.1:6379"

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

/* KEYS[1] the lease, ARGV[1] the token, ARGV[2] the store's channel, ARGV[3] the value's key:
 * the release is announced to every process's watches (redis_notify.c) as "<key> <token>" (the
 * token tells two releases of one key apart: tiered.c matches a release heard on each primary
 * of a cluster). */
static const char LEASE_RELEASE_SRC[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

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

/* A value holding a copy of a reply's bytes, its envelope header (if any) before the bytes. */
int corral__redis_make_value(redis_store *s, const redisReply *r, corral_value **out) {
    const char *bytes;
    size_t len;
    int rc = stored_bytes(s, r, &bytes, &len);
    if (rc != CORRAL_OK) return rc;
    corral_value *v = corral__value_new(s->alloc, bytes, len);
    if (!v) return CORRAL_ENOMEM;
    size_t hdr = header_len(s, bytes, len);
    v->len -= hdr; /* the block's bytes begin hdr_len in (corral__value_data) */
    v->hdr_len = (uint16_t)hdr;
    *out = v;
    return CORRAL_OK;
}

size_t corral__redis_fmt_i64(char *buf, int64_t v) {
    int n = snprintf(buf, TTL_DIGITS, "%" PRId64, v);
    assert(n > 0 && n < TTL_DIGITS);
    return (size_t)n;
}

/* Runs a script by SHA, loading it with EVAL when the server does not know it. `keys_args`
 * holds the key(s) then the arguments; at most 4 of them. */
static redisReply *eval(redis_store *s, corral__redis_call *c, const rscript *sc, int nkeys, int n,
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
    redisReply *r = corral__redis_cmd(s, c, 3 + n, argv, alen);
    if (r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        alen[0] = 4;
        argv[1] = sc->src;
        alen[1] = sc->src_len;
        r = corral__redis_cmd(s, c, 3 + n, argv, alen);
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

int corral__redis_get_role(redis_store *s, corral__redis_role role, const corral__skey *k,
                           corral_value **out) {
    *out = NULL;
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, role, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "GET", k->data };
    size_t lens[2] = { 3, k->len };
    redisReply *r = corral__redis_cmd(s, &c, 2, argv, lens);
    if (!r)
        rc = corral__redis_failed(&c);
    else if (r->type == REDIS_REPLY_STRING)
        rc = corral__redis_make_value(s, r, out);
    else if (r->type == REDIS_REPLY_NIL)
        rc = CORRAL_MISS;
    else
        rc = corral__redis_error_reply(&c, r); /* WRONGTYPE: not a value of ours */
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
}

static int r_get(corral__store *base, const corral__skey *k, corral_value **out) {
    return corral__redis_get_role(store_of(base), CORRAL__REDIS_READ, k, out);
}

static int r_get_into(corral__store *base, const corral__skey *k, void *buf, size_t cap,
                      size_t *len, void *hdr, size_t hdr_cap, size_t *hdr_len) {
    redis_store *s = store_of(base);
    *len = 0;
    *hdr_len = 0;
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_READ, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "GET", k->data };
    size_t lens[2] = { 3, k->len };
    redisReply *r = corral__redis_cmd(s, &c, 2, argv, lens);
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
    if (s->django) return r_get(base, k, out);                           /* no envelope, no tags */
    if (s->cluster) return corral__redis_cluster_get_checked(s, k, out); /* tags on other slots */
    if (!cls_tagged(s, k->cls)) {
        int rc = r_get(base, k, out);
        if (rc != CORRAL_OK || !has_tags(corral__value_hdr(*out), (*out)->hdr_len)) return rc;
        /* Tags where none were seen: this read and the class's next ones go through CHECKED. */
        mark_tagged(s, k->cls);
        corral_value_unref(*out);
    }
    *out = NULL;
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_READ, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    const char *ka[2] = { k->data, s->tag_prefix };
    size_t kl[2] = { k->len, s->tag_prefix_len };
    redisReply *r = eval(s, &c, &s->checked, 1, 2, ka, kl);
    if (!r)
        rc = corral__redis_failed(&c);
    else if (r->type == REDIS_REPLY_STRING)
        rc = corral__redis_make_value(s, r, out);
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

static int r_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
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
        lens[argc] = corral__redis_fmt_i64(ttl, ttl_ms);
        argv[argc++] = ttl;
    }
    if (mode != CORRAL__SET_ALWAYS) {
        argv[argc] = mode == CORRAL__SET_NX ? "NX" : "XX";
        lens[argc++] = 2;
    }
    corral__redis_call c;
    rc = corral__redis_begin_key(s, CORRAL__REDIS_WRITE, k->data, k->len, &c);
    if (rc != CORRAL_OK) {
        corral__free(s->alloc, owned, owned_len);
        return rc;
    }
    redisReply *r = corral__redis_cmd(s, &c, argc, argv, lens);
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

static int r_del(corral__store *base, const corral__skey *k) {
    redis_store *s = store_of(base);
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_WRITE, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "DEL", k->data };
    size_t lens[2] = { 3, k->len };
    rc = int_result(&c, corral__redis_cmd(s, &c, 2, argv, lens));
    corral__redis_end(&c);
    return rc;
}

static int r_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms) {
    redis_store *s = store_of(base);
    if (ttl_ms <= 0) return CORRAL_EINVAL;
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_WRITE, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    redisReply *r;
    if (ttl_ms == CORRAL__NO_EXPIRY) {
        const char *ka[1] = { k->data };
        size_t kl[1] = { k->len };
        r = eval(s, &c, &s->touch_forever, 1, 1, ka, kl);
    } else {
        char ttl[TTL_DIGITS];
        const char *argv[3] = { "PEXPIRE", k->data, ttl };
        size_t lens[3] = { 7, k->len, corral__redis_fmt_i64(ttl, ttl_ms) };
        r = corral__redis_cmd(s, &c, 3, argv, lens);
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
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_WRITE, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    char d[TTL_DIGITS];
    const char *ka[2] = { k->data, d };
    size_t kl[2] = { k->len, corral__redis_fmt_i64(d, delta) };
    redisReply *r = eval(s, &c, &s->incr, 1, 2, ka, kl);
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

/* FLUSHDB ASYNC on the standalone server, or on every primary of a cluster. */
static int r_clear(corral__store *base) {
    redis_store *s = store_of(base);
    int nodes[CORRAL__REDIS_MAX_NODES];
    size_t n = corral__redis_primaries(s, nodes);
    int rc = n ? CORRAL_OK : CORRAL_ESTORE; /* a cluster whose map cannot be loaded */
    for (size_t i = 0; i < n; i++) {
        corral__redis_call c;
        int one = corral__redis_begin_on(s, nodes[i], CORRAL__REDIS_WRITE, &c);
        if (one == CORRAL_OK) {
            const char *argv[2] = { "FLUSHDB", "ASYNC" };
            size_t lens[2] = { 7, 5 };
            redisReply *r = corral__redis_command(&c, 2, argv, lens);
            if (!r)
                one = corral__redis_failed(&c);
            else if (r->type != REDIS_REPLY_STATUS)
                one = corral__redis_error_reply(&c, r);
            freeReplyObject(r);
            corral__redis_end(&c);
        }
        if (rc == CORRAL_OK) rc = one;
    }
    return rc;
}

/* ---- Leases ---- */

static int r_lease_acquire(corral__store *base, const corral__skey *k, const void *token,
                           size_t token_len, int64_t ttl_ms) {
    redis_store *s = store_of(base);
    if (ttl_ms <= 0 || ttl_ms == CORRAL__NO_EXPIRY) return CORRAL_EINVAL; /* leases expire */
    char key[CORRAL__KEYBUF + LEASE_SUFFIX_LEN], ttl[TTL_DIGITS];
    const char *argv[6] = { "SET", key, token, "NX", "PX", ttl };
    size_t lens[6] = { 3, lease_key(k, key), token_len, 2, 2, corral__redis_fmt_i64(ttl, ttl_ms) };
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_WRITE, key, lens[1], &c);
    if (rc != CORRAL_OK) return rc;
    redisReply *r = corral__redis_cmd(s, &c, 6, argv, lens);
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
    size_t ch_len;
    const char *ch = corral__redis_notify_channel(s->notify, &ch_len);
    const char *ka[4] = { key, token, ch, k->data };
    size_t kl[4] = { lease_key(k, key), token_len, ch_len, k->len };
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_WRITE, key, kl[0], &c);
    if (rc != CORRAL_OK) return rc;
    rc = int_result(&c, eval(s, &c, &s->lease_release, 1, 4, ka, kl));
    corral__redis_end(&c);
    return rc;
}

static int r_lease_watch(corral__store *base, const corral__skey *k, corral__lease_watch *w) {
    return corral__redis_notify_watch(store_of(base)->notify, k, w);
}

static bool r_lease_unwatch(corral__store *base, corral__lease_watch *w) {
    return corral__redis_notify_unwatch(store_of(base)->notify, w);
}

/* PTTL: -2 absent, -1 no expiry, else the milliseconds left (0: expiring now, a miss). */
static int r_ttl(corral__store *base, const corral__skey *k, int64_t *ttl_ms) {
    redis_store *s = store_of(base);
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_READ_PRIMARY, k->data, k->len, &c);
    if (rc != CORRAL_OK) return rc;
    const char *argv[2] = { "PTTL", k->data };
    size_t lens[2] = { 4, k->len };
    redisReply *r = corral__redis_cmd(s, &c, 2, argv, lens);
    if (!r) {
        rc = corral__redis_failed(&c);
    } else if (r->type != REDIS_REPLY_INTEGER) {
        rc = corral__redis_error_reply(&c, r);
    } else if (r->integer == -1 || r->integer > 0) {
        *ttl_ms = corral__redis_ttl_of(r);
        rc = CORRAL_OK;
    } else {
        rc = CORRAL_MISS;
    }
    freeReplyObject(r);
    corral__redis_end(&c);
    return rc;
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
    corral__redis_counters sum, *ctr = &sum;
    corral__redis_cluster_stats own = { 0 };
    if (s->cluster)
        corral__redis_cluster_counters(s->cluster, &sum, &own); /* every node's, summed */
    else
        ctr = corral__redis_pool_counters(s->pool);
    corral__redis_notify_counters *nc = corral__redis_notify_counters_of(s->notify);
    const corral__prom_row rows[] = {
#define LOAD(x)  atomic_load_explicit(&ctr->x, memory_order_relaxed)
#define NLOAD(x) atomic_load_explicit(&nc->x, memory_order_relaxed)
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
        { "lease_releases_heard_total", "counter",
          "Lease releases heard on the store's channel (redis_notify.c).", NLOAD(messages) },
        { "lease_wakeups_total", "counter", "Lease waiters woken by a release of their key.",
          NLOAD(wakeups) },
        { "lease_subscribes_total", "counter", "Times the lease subscriber subscribed.",
          NLOAD(subscribes) },
#undef LOAD
#undef NLOAD
    };
    size_t used = 0;
    if (cap) buf[0] = '\0';
    int rc =
        corral__prom_rows(buf, cap, &used, "corral_redis_", rows, sizeof rows / sizeof rows[0]);
    if (rc != CORRAL_OK || !s->cluster) return rc;
    return corral__redis_cluster_metrics(&own, buf, cap, &used);
}

static int r_status(corral__store *base, size_t i, corral_server_status *out) {
    redis_store *s = store_of(base);
    return s->cluster ? corral__redis_cluster_status(s->cluster, i, out)
                      : corral__redis_pool_status(s->pool, i, out);
}

static void r_close(corral__store *base) {
    redis_store *s = store_of(base);
    corral__redis_notify_free(s->notify);
    corral__redis_pool_free(s->pool);
    corral__redis_cluster_free(s->cluster);
    corral__free(s->alloc, s->tag_prefix, s->tag_prefix_len + 1);
    corral__free(s->alloc, s->server_id, s->server_id_len + 1);
    s->magic = 0;
    corral__free(s->alloc, s, sizeof *s);
}

/* ---- Writes, as this process's near caches see them (near_peers.h) ----
 *
 * After every write, whatever it returned (a write whose reply was lost may have been applied),
 * the near caches of other handles of this process on the same server drop the keys, before the
 * write returns to its caller. */

static int w_set(corral__store *base, const corral__skey *k, const void *val, size_t len,
                 int64_t ttl_ms, corral__set_mode mode, unsigned flags) {
    int rc = r_set(base, k, val, len, ttl_ms, mode, flags);
    corral__redis_wrote(store_of(base), k, 1);
    return rc;
}

static int w_del(corral__store *base, const corral__skey *k) {
    int rc = r_del(base, k);
    corral__redis_wrote(store_of(base), k, 1);
    return rc;
}

static int w_touch(corral__store *base, const corral__skey *k, int64_t ttl_ms) {
    int rc = r_touch(base, k, ttl_ms);
    corral__redis_wrote(store_of(base), k, 1);
    return rc;
}

static int w_incr(corral__store *base, const corral__skey *k, int64_t delta, int64_t *out) {
    int rc = r_incr(base, k, delta, out);
    corral__redis_wrote(store_of(base), k, 1);
    return rc;
}

static int w_clear(corral__store *base) {
    int rc = r_clear(base);
    corral__redis_wrote(store_of(base), NULL, 0);
    return rc;
}

static int w_clear_prefix(corral__store *base, const char *prefix, size_t len) {
    int rc = corral__redis_clear_prefix(base, prefix, len);
    corral__redis_wrote(store_of(base), NULL, 0);
    return rc;
}

static int w_set_many(corral__store *base, const corral__skey *ks, const corral_buf *vals, size_t n,
                      int64_t ttl_ms, unsigned flags) {
    int rc = corral__redis_set_many(base, ks, vals, n, ttl_ms, flags);
    corral__redis_wrote(store_of(base), ks, n);
    return rc;
}

static int w_del_many(corral__store *base, const corral__skey *ks, size_t n, size_t *deleted) {
    int rc = corral__redis_del_many(base, ks, n, deleted);
    corral__redis_wrote(store_of(base), ks, n);
    return rc;
}

void corral__redis_wrote(redis_store *s, const corral__skey *ks, size_t n) {
    corral__near_peers_changed(s->server_id, s->server_id_len, &s->base, ks, n);
}

const char *corral__redis_server_id(corral__store *base, size_t *len) {
    redis_store *s = store_of(base);
    *len = s->server_id_len;
    return s->server_id;
}

static const corral__store_ops redis_ops = {
    .name = "redis",
    .get = r_get,
    .get_into = r_get_into,
    .get_checked = r_get_checked,
    .set = w_set,
    .del = w_del,
    .touch = w_touch,
    .ttl = r_ttl,
    .incr = w_incr,
    .clear = w_clear,
    .clear_prefix = w_clear_prefix,
    .get_many = corral__redis_get_many,
    .set_many = w_set_many,
    .del_many = w_del_many,
    .lease_acquire = r_lease_acquire,
    .lease_release = r_lease_release,
    .lease_watch = r_lease_watch,
    .lease_unwatch = r_lease_unwatch,
    .used_bytes = r_used_bytes,
    .max_bytes = r_max_bytes,
    .metrics_text = r_metrics_text,
    .status = r_status,
    .close = r_close,
};

/* ---- Open ---- */

/* The server's identity for near_peers.h: "<primary>:<port>/<db>" or "unix:<path>/<db>". */
static int server_id_new(redis_store *s, const corral_redis_options *o,
                         const corral__redis_addr *addrs) {
    char id[CORRAL__REDIS_MAX_HOSTNAME + 4096 + 32];
    int n = o->unix_path ? snprintf(id, sizeof id, "unix:%s/%u", o->unix_path, o->db)
            : o->cluster ? snprintf(id, sizeof id, "cluster:%s:%d", addrs[0].name, addrs[0].port)
                         : snprintf(id, sizeof id, "%s:%d/%u", addrs[0].name, addrs[0].port, o->db);
    if (n < 0) return CORRAL_ENOMEM;
    /* A unix path too long for `id` is cut: two such paths that agree on 4 KB are one server. */
    s->server_id_len = CORRAL_MIN((size_t)n, sizeof id - 1);
    s->server_id = corral__strndup(s->alloc, id, s->server_id_len);
    return s->server_id ? CORRAL_OK : CORRAL_ENOMEM;
}

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
    if (o->cluster && (o->unix_path || o->db))
        return corral__seterr(err, CORRAL_EINVAL,
                              "redis+cluster: no unix socket, no db other than 0");
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
    if (server_id_new(s, o, addrs) != CORRAL_OK) goto nomem;
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
                                     .pool = o->pool,
                                     .on_state = env->on_state,
                                     .state_ctx = env->state_ctx,
                                     .readonly = o->cluster && o->read_from_replicas };
    int rc = o->cluster ? corral__redis_cluster_new(&s->cluster, &pc, env->alloc)
                        : corral__redis_pool_new(&s->pool, &pc, env->alloc);
    if (rc == CORRAL_OK) {
        rc = corral__redis_notify_new(&s->notify, corral__redis_notify_connect, s, env->key_prefix,
                                      env->key_prefix_len, env->alloc);
        if (rc != CORRAL_OK) {
            corral__redis_pool_free(s->pool);
            corral__redis_cluster_free(s->cluster);
        }
    }
    if (rc != CORRAL_OK) {
        corral__free(env->alloc, s->tag_prefix, s->tag_prefix_len + 1);
        corral__free(env->alloc, s->server_id, s->server_id_len + 1);
        s->magic = 0;
        corral__free(env->alloc, s, sizeof *s);
        return corral__seterr(err, rc, "redis store: %s", corral_strerror(rc));
    }
    *out = &s->base;
    return CORRAL_OK;
nomem:
    corral__free(env->alloc, s->tag_prefix, s->tag_prefix_len + 1); /* accepts NULL */
    corral__free(env->alloc, s->server_id, s->server_id_len + 1);
    s->magic = 0;
    corral__free(env->alloc, s, sizeof *s);
    return corral__seterr(err, CORRAL_ENOMEM, "redis store: out of memory");
}
