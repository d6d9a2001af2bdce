/*
 * redis_many.c - the Redis store's operations on many keys: get_many, set_many and del_many,
 * each one pipelined round trip, the near cache's reads (corral__redis_get_ttl and
 * corral__redis_get_many_ttl, from the primary with the TTL), and clear_prefix. Single-key
 * operations, the scripts and open are in redis.c.
 *
 * - get_many: MGET, in chunks of MANY_CHUNK keys, pipelined. In the raw format the values it
 *   hands out point into the MGET reply instead of copying it (below); Django's format is
 *   decoded, so copied. With TTLs (the near cache), a PTTL per key follows in the same pipeline.
 * - set_many: MULTI, SET ... PX per pair, EXEC, pipelined: one round trip, all or nothing.
 * - del_many: DEL of MANY_CHUNK keys per command, pipelined.
 * - clear_prefix: SCAN MATCH "prefix:*" then UNLINK, in bounded batches, so a failure can leave
 *   it partly done (store.h); on a cluster on every primary, an UNLINK per key.
 * On a Redis Cluster the many-ops are redis_cluster_many.c's.
 * A read that fails is all misses; a write that fails is an error (redis.c, "Failures").
 */
#include "redis_internal.h"
#include "redis_django.h"
#include "../key.h"

#include <string.h>

#define MANY_CHUNK 512    /* keys per MGET or DEL command of a batch */
#define SCAN_COUNT "1000" /* SCAN's COUNT hint: keys examined per clear_prefix batch */

/* ---- Values that point into an MGET reply ----
 *
 * A batch read hands out values without copying: one block holds a value for every element of
 * the reply, and the reply lives until the last of them is released. hiredis allocates its
 * replies with libc (0.14 has no allocator hooks), and keeps every string NUL-terminated, as a
 * value must be. */
typedef struct reply_value {
    corral__value_at a; /* the value and where its bytes are in the reply */
    struct reply_holder *h;
} reply_value;

typedef struct reply_holder {
    const corral__allocator *alloc;
    size_t bytes;
    _Atomic size_t refs; /* values not yet released */
    redisReply *reply;
    reply_value vals[];
} reply_holder;

/* CORRAL__RELEASE_REDIS_REPLY (value.h): drops one value of the reply; the last frees it. */
void corral__redis_reply_release(corral_value *v) {
    reply_holder *h = CORRAL_CONTAINER_OF(v, reply_value, a.v)->h;
    corral__value_kill(v);
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
        rv->a.data = (const unsigned char *)e->str + hdr;
        corral__value_init(&rv->a.v, e->len - hdr, CORRAL__RELEASE_REDIS_REPLY);
        rv->a.v.hdr_len = (uint16_t)hdr;
        out[i] = &rv->a.v;
    }
    return CORRAL_OK;
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

/* UNLINKs the keys of one SCAN batch: one command, or on a cluster (where the keys of one
 * command must share a slot) one per key, pipelined. */
static int unlink_batch(redis_store *s, corral__redis_call *c, const redisReply *keys) {
    size_t n = keys->elements;
    for (size_t i = 0; i < n; i++)
        if (keys->element[i]->type != REDIS_REPLY_STRING) return corral__redis_error_reply(c, keys);
    if (s->cluster) {
        for (size_t i = 0; i < n; i++) {
            const char *argv[2] = { "UNLINK", keys->element[i]->str };
            size_t lens[2] = { 6, keys->element[i]->len };
            if (corral__redis_append(c, 2, argv, lens) != 0) return corral__redis_failed(c);
        }
        int rc = CORRAL_OK;
        for (size_t i = 0; i < n; i++) {
            redisReply *r = corral__redis_read(c);
            if (!r) return corral__redis_failed(c);
            if (r->type != REDIS_REPLY_INTEGER && rc == CORRAL_OK)
                rc = corral__redis_error_reply(c, r);
            freeReplyObject(r);
        }
        return rc;
    }
    const char **argv = corral__alloc3(s->alloc, n + 1, sizeof *argv, 0);
    size_t *lens = corral__alloc3(s->alloc, n + 1, sizeof *lens, 0);
    int rc = CORRAL_ENOMEM;
    if (!argv || !lens) goto done;
    argv[0] = "UNLINK";
    lens[0] = 6;
    for (size_t i = 0; i < n; i++) {
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

/* SCAN MATCH and UNLINK over the whole key space of the call's node. */
static int scan_unlink(redis_store *s, corral__redis_call *c, const char *pattern, size_t plen) {
    char cursor[32] = "0";
    size_t cursor_len = 1;
    int rc = CORRAL_OK;
    do {
        const char *argv[6] = { "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT };
        size_t lens[6] = { 4, cursor_len, 5, plen, 5, sizeof SCAN_COUNT - 1 };
        redisReply *r = corral__redis_command(c, 6, argv, lens);
        if (!r) return corral__redis_failed(c);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
            r->element[0]->len >= sizeof cursor || r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = corral__redis_error_reply(c, r);
            freeReplyObject(r);
            break;
        }
        memcpy(cursor, r->element[0]->str, r->element[0]->len);
        cursor_len = r->element[0]->len;
        cursor[cursor_len] = '\0';
        if (r->element[1]->elements > 0) rc = unlink_batch(s, c, r->element[1]);
        freeReplyObject(r);
    } while (rc == CORRAL_OK && !(cursor_len == 1 && cursor[0] == '0'));
    return rc;
}

/* On a cluster, on every primary: each holds its own slots' keys. */
int corral__redis_clear_prefix(corral__store *base, const char *prefix, size_t len) {
    redis_store *s = store_of(base);
    if (len > CORRAL__MAX_KEY) return CORRAL_EINVAL;
    char pattern[2 * CORRAL__MAX_KEY + 2];
    size_t plen = prefix_pattern(prefix, len, pattern);
    int nodes[CORRAL__REDIS_MAX_NODES];
    size_t n = corral__redis_primaries(s, nodes);
    int rc = n ? CORRAL_OK : CORRAL_ESTORE; /* a cluster whose map cannot be loaded */
    for (size_t i = 0; i < n; i++) {
        corral__redis_call c;
        int one = corral__redis_begin_on(s, nodes[i], CORRAL__REDIS_WRITE, &c);
        if (one == CORRAL_OK) {
            one = scan_unlink(s, &c, pattern, plen);
            corral__redis_end(&c);
        }
        if (rc == CORRAL_OK) rc = one;
    }
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

/* The start of a many-op: the key argv and a call in `role`. On failure nothing is held and the
 * return is keys_argv_new's or corral__redis_begin's code. */
static int begin_many(redis_store *s, corral__redis_role role, size_t n, keys_argv *kv,
                      corral__redis_call *c) {
    int rc = keys_argv_new(s, n, kv);
    if (rc == CORRAL_OK) rc = corral__redis_begin(s->pool, role, c);
    if (rc != CORRAL_OK) keys_argv_free(s, kv);
    return rc;
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

/* get_many, and with `ttls` also each key's remaining TTL (a PTTL per key after the MGETs, in
 * the same pipeline). */
static int get_many_role(redis_store *s, corral__redis_role role, const corral__skey *ks, size_t n,
                         corral_value **out, int64_t *ttls) {
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        if (ttls) ttls[i] = 0;
    }
    if (n == 0) return CORRAL_OK;
    if (s->cluster) return corral__redis_cluster_get_many(s, ks, n, out, ttls);
    keys_argv kv;
    corral__redis_call c;
    int rc = begin_many(s, role, n, &kv, &c);
    if (rc != CORRAL_OK) return rc == CORRAL_MISS ? CORRAL_OK : rc; /* a failed read: all miss */
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
                    if (e->type == REDIS_REPLY_STRING)
                        rc = corral__redis_make_value(s, e, &out[at + i]);
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
            ttls[i] = corral__redis_ttl_of(t);
            freeReplyObject(t);
        }
    }
    corral__redis_end(&c);
    if (rc != CORRAL_OK) unref_all(out, n);
    return rc == CORRAL_MISS ? CORRAL_OK : rc;
}

int corral__redis_get_many(corral__store *base, const corral__skey *ks, size_t n,
                           corral_value **out) {
    return get_many_role(store_of(base), CORRAL__REDIS_READ, ks, n, out, NULL);
}

int corral__redis_set_many(corral__store *base, const corral__skey *ks, const corral_buf *vals,
                           size_t n, int64_t ttl_ms, unsigned flags) {
    redis_store *s = store_of(base);
    bool as_bytes = flags & CORRAL__SETF_BINARY;
    if (ttl_ms <= 0) return CORRAL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (vals[i].len > s->max_value_bytes) return CORRAL_ETOOBIG;
    if (n == 0) return CORRAL_OK;
    if (s->cluster) return corral__redis_cluster_set_many(s, ks, vals, n, ttl_ms, flags);
    /* Django format: one scratch block, as large as the largest encoding; each SET is copied
     * into hiredis's output buffer as it is appended. */
    size_t scratch_len = 0;
    for (size_t i = 0; s->pickles && i < n; i++)
        scratch_len = CORRAL_MAX(
            scratch_len, corral__django_encoded_len_as(vals[i].data, vals[i].len, as_bytes));
    unsigned char *scratch = NULL;
    if (scratch_len && !(scratch = corral__alloc(s->alloc, scratch_len))) return CORRAL_ENOMEM;
    char ttl[TTL_DIGITS];
    size_t ttl_len = ttl_ms == CORRAL__NO_EXPIRY ? 0 : corral__redis_fmt_i64(ttl, ttl_ms);
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

int corral__redis_del_many(corral__store *base, const corral__skey *ks, size_t n, size_t *deleted) {
    redis_store *s = store_of(base);
    *deleted = 0;
    if (n == 0) return CORRAL_OK;
    if (s->cluster) return corral__redis_cluster_del_many(s, ks, n, deleted);
    keys_argv kv;
    corral__redis_call c;
    int rc = begin_many(s, CORRAL__REDIS_WRITE, n, &kv, &c);
    if (rc != CORRAL_OK) return rc;
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

/* The remaining TTL a PTTL reply gives, as corral__redis_get_ttl reports it: -1 (no expiry) is
 * CORRAL__NO_EXPIRY; -2 (gone) and 0 (about to go) are 0, not worth keeping near. */
int64_t corral__redis_ttl_of(const redisReply *t) {
    if (t->type != REDIS_REPLY_INTEGER) return 0;
    return t->integer == -1 ? CORRAL__NO_EXPIRY : t->integer > 0 ? (int64_t)t->integer : 0;
}

int corral__redis_get_ttl(corral__store *base, const corral__skey *k, corral_value **out,
                          int64_t *ttl_ms) {
    redis_store *s = store_of(base);
    *out = NULL;
    *ttl_ms = 0;
    if (s->cluster) { /* the pipeline follows MOVED and ASK there (redis_cluster_many.c) */
        int rc = corral__redis_cluster_get_many(s, k, 1, out, ttl_ms);
        return rc == CORRAL_OK && !*out ? CORRAL_MISS : rc;
    }
    corral__redis_call c;
    int rc = corral__redis_begin_key(s, CORRAL__REDIS_READ_PRIMARY, k->data, k->len, &c);
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
        rc = corral__redis_make_value(s, v, out);
        *ttl_ms = corral__redis_ttl_of(t);
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
