/*
 * cache.c - corral-proxy's cache logic on top of libcorral and the HTTP engine: the keys, the
 * stored objects, the lookup of each request, answers from the cache, request coalescing
 * through corral_flight_*, grace (one background refresh), and purges.
 *
 * Data model, in the store (every key starts with the route's name, so libcorral's
 * per-prefix metrics count objects and bytes per route):
 *
 *   <route>:v:<primary key, or #hash when long>     the URL's vary record:
 *        magic "CRV1", flags (HIT_FOR_PASS), generation (64 bits), vary spec, primary key.
 *        Tagged with the path's prefix tags ("p:/blog", "p:/blog/2024", ...), so a prefix
 *        purge (corral_tag_bust) makes the record read as a miss.
 *   <route>:o:<generation hex>:<hash(primary key, variant key)>   one variant:
 *        magic "CRP1", lengths, request/response times, primary key, vary spec, variant key,
 *        the stored head (corral_http_write_stored_head), the body. Tagged with its
 *        Surrogate-Key tokens ("s:<key>").
 *
 * A lookup reads the vary record, computes the request's variant key from its spec, and reads
 * the variant under the record's generation. Purging a URL deletes its record: every variant
 * becomes unreachable at once, and the next record gets a new random generation, so an old
 * variant can never come back (they age out of the store). Objects carry their primary and
 * variant keys and are checked on every read, so a hash collision is a miss, never a wrong
 * answer. A record marked HIT_FOR_PASS (a non-storable answer, for the route's hit_for_pass
 * time) makes requests pass without waiting on each other.
 *
 * Coalescing: misses join the flight "<route>:f:<hash(pk, vk)>" (vk from the record's spec,
 * empty without a record). The leader fetches (fetch.c) and finishes the flight with
 * PX_FLIGHT_STREAM at the head of a storable answer (the waiters stream its busy object,
 * busy.c, from the head on), or PX_FLIGHT_PASS at the head when it is not storable, or the
 * stored object, or an origin error. Waiters are woken through their worker's inbox (the
 * finishing thread may be another worker's) and check the answer against their own variant; a
 * mismatch looks up again, and after two wake-ups a request stops coalescing. A miss that finds
 * a published busy object of its flight key streams it instead of fetching. Requests with
 * credentials never coalesce.
 *
 * Purges write a purge stamp first (see "Purge stamps" below), so a fill in flight never undoes
 * one.
 *
 * Threads: every function runs on the loop thread of the connection's worker, except on_flight,
 * which runs on whichever thread finishes the flight and only posts to the inbox.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define OBJ_MAGIC       0x31505243u /* "CRP1" little-endian */
#define VREC_MAGIC      0x31565243u /* "CRV1" */
#define OBJ_HEADER      48
#define VREC_HEADER     24
#define VREC_HFP        0x1u
#define VREC_MIN_TTL_MS 3600000 /* a vary record outlives most of its variants */
#define PK_INLINE_MAX                                                                \
    128                       /* longer primary keys are hashed in record keys; the  \
                                rest of the 250-byte key budget is the route and the \
                                store URL's key_prefix */
#define TAG_INLINE_MAX    190 /* longer tag names are hashed */
#define WAKES_BEFORE_SOLO 2   /* wake-ups after which a request stops coalescing */

/* ---- Small helpers ---- */

static void put_u32(char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (8 * i));
}

static void put_u64(char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint32_t get_u32(const char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

static uint64_t get_u64(const char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

static size_t hex(char *out, const void *data, size_t len) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *d = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    return 2 * len;
}

/* 32 hex digits of the 128-bit hash of (a, b). */
static size_t hash_hex(char *out, const char *a, size_t a_len, const char *b, size_t b_len) {
    XXH128_hash_t h = XXH3_128bits_withSeed(b, b_len, XXH3_64bits(a, a_len));
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(h.high64 >> (56 - 8 * i));
        bytes[8 + i] = (unsigned char)(h.low64 >> (56 - 8 * i));
    }
    return hex(out, bytes, 16);
}

/* ---- Keys ---- */

size_t px_key_vary(const px_route *r, const char *pk, size_t pk_len, char *out) {
    size_t n = strlen(r->name);
    memcpy(out, r->name, n);
    memcpy(out + n, ":v:", 3);
    n += 3;
    if (pk_len <= PK_INLINE_MAX) {
        memcpy(out + n, pk, pk_len);
        return n + pk_len;
    }
    out[n++] = '#';
    return n + hash_hex(out + n, "", 0, pk, pk_len);
}

size_t px_key_object(const px_route *r, uint64_t gen, const char *pk, size_t pk_len, const char *vk,
                     size_t vk_len, char *out) {
    size_t n = strlen(r->name);
    memcpy(out, r->name, n);
    memcpy(out + n, ":o:", 3);
    n += 3;
    unsigned char g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (unsigned char)(gen >> (56 - 8 * i));
    n += hex(out + n, g, 8);
    out[n++] = ':';
    return n + hash_hex(out + n, pk, pk_len, vk, vk_len);
}

size_t px_key_flight(const px_route *r, const char *pk, size_t pk_len, const char *vk,
                     size_t vk_len, char *out) {
    size_t n = strlen(r->name);
    memcpy(out, r->name, n);
    memcpy(out + n, ":f:", 3);
    n += 3;
    return n + hash_hex(out + n, pk, pk_len, vk, vk_len);
}

size_t px_tag_name(char kind, const char *name, size_t len, char *out) {
    out[0] = kind;
    if (len <= TAG_INLINE_MAX) {
        out[1] = ':';
        memcpy(out + 2, name, len);
        return len + 2;
    }
    out[1] = '#';
    return 2 + hash_hex(out + 2, "", 0, name, len);
}

void px_pk_path(const char *pk, size_t pk_len, const char **path, size_t *len) {
    const char *slash = memchr(pk, '/', pk_len);
    if (!slash) {
        *path = "/";
        *len = 1;
        return;
    }
    *path = slash;
    size_t n = pk_len - (size_t)(slash - pk);
    const char *q = memchr(slash, '?', n);
    *len = q ? (size_t)(q - slash) : n;
}

size_t px_path_tags(const px_config *cfg, const char *path, size_t len, char *store, size_t cap,
                    const char **tags, size_t max) {
    const char *q = memchr(path, '?', len);
    if (q) len = (size_t)(q - path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    if (len <= 1) return 0; /* the root has no tag: purging "/" clears everything */
    size_t n = 0, used = 0;
    unsigned depth = cfg->path_tag_depth;
    for (size_t i = 1; i <= len && n < max && n < depth; i++) {
        if (i < len && path[i] != '/') continue;
        if (used + PX_KEY_MAX > cap) break;
        size_t t = px_tag_name('p', path, i, store + used);
        store[used + t] = '\0';
        tags[n++] = store + used;
        used += t + 1;
    }
    return n;
}

/* ---- Objects ---- */

int px_objbuf_init(px_objbuf *b, const char *pk, size_t pk_len, const char *spec, size_t spec_len,
                   const char *vk, size_t vk_len, const char *head, size_t head_len, int64_t req_ms,
                   int64_t resp_ms, size_t body_hint) {
    memset(b, 0, sizeof *b);
    if (pk_len > UINT32_MAX || spec_len > UINT32_MAX || vk_len > UINT32_MAX ||
        head_len > UINT32_MAX)
        return -1;
    size_t fixed = OBJ_HEADER + pk_len + spec_len + vk_len + head_len;
    b->cap = fixed + (body_hint ? body_hint : 4096);
    b->p = malloc(b->cap);
    if (!b->p) return -1;
    char *p = b->p;
    put_u32(p, OBJ_MAGIC);
    put_u32(p + 4, (uint32_t)pk_len);
    put_u32(p + 8, (uint32_t)spec_len);
    put_u32(p + 12, (uint32_t)vk_len);
    put_u32(p + 16, (uint32_t)head_len);
    put_u32(p + 20, 0);
    put_u64(p + 24, 0);
    put_u64(p + 32, (uint64_t)req_ms);
    put_u64(p + 40, (uint64_t)resp_ms);
    size_t off = OBJ_HEADER;
    memcpy(p + off, pk, pk_len);
    off += pk_len;
    memcpy(p + off, spec, spec_len);
    off += spec_len;
    memcpy(p + off, vk, vk_len);
    off += vk_len;
    memcpy(p + off, head, head_len);
    off += head_len;
    b->len = b->body_off = off;
    return 0;
}

int px_objbuf_append(px_objbuf *b, const void *data, size_t len) {
    if (len > b->cap - b->len) {
        size_t cap = b->cap * 2;
        while (cap - b->len < len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    put_u64(b->p + 24, (uint64_t)(b->len - b->body_off));
    return 0;
}

void px_objbuf_free(px_objbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

int px_obj_parse(corral_value *v, corral_http_header *hdrs, size_t max_hdrs, px_obj *o) {
    if (px_obj_parse_bytes(corral_value_data(v), corral_value_len(v), hdrs, max_hdrs, o) < 0)
        return -1;
    o->v = v;
    return 0;
}

int px_obj_parse_bytes(const char *p, size_t len, corral_http_header *hdrs, size_t max_hdrs,
                       px_obj *o) {
    memset(o, 0, sizeof *o);
    if (len < OBJ_HEADER || get_u32(p) != OBJ_MAGIC) return -1;
    size_t pk_len = get_u32(p + 4), spec_len = get_u32(p + 8), vk_len = get_u32(p + 12);
    size_t head_len = get_u32(p + 16);
    uint64_t body_len = get_u64(p + 24);
    size_t fixed = OBJ_HEADER + pk_len + spec_len + vk_len + head_len;
    if (fixed > len || body_len != len - fixed) return -1;
    o->pk = p + OBJ_HEADER;
    o->pk_len = pk_len;
    o->spec = o->pk + pk_len;
    o->spec_len = spec_len;
    o->vk = o->spec + spec_len;
    o->vk_len = vk_len;
    const char *head = o->vk + vk_len;
    o->body = head + head_len;
    o->body_len = (size_t)body_len;
    o->req_ms = (int64_t)get_u64(p + 32);
    o->resp_ms = (int64_t)get_u64(p + 40);
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = head_len + 1;
    lim.max_headers = max_hdrs;
    if (corral_http_parse_head(CORRAL_HTTP_RESPONSE, head, head_len, &lim, hdrs, max_hdrs, &o->head,
                               NULL) != CORRAL_OK)
        return -1;
    o->hdrs = hdrs;
    return 0;
}

static void obj_release(px_obj *o) {
    corral_value_unref(o->v);
    memset(o, 0, sizeof *o);
}

/* ---- Vary records ---- */

int px_vrec_get(corral *cache, const px_route *r, const char *pk, size_t pk_len, px_vrec *vr) {
    memset(vr, 0, sizeof *vr);
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    corral_value *v = NULL;
    int rc = corral_get(cache, key, klen, NULL, &v);
    if (rc < 0) return -1;
    if (rc != CORRAL_OK) return 0;
    const char *p = corral_value_data(v);
    size_t len = corral_value_len(v);
    if (len >= VREC_HEADER && get_u32(p) == VREC_MAGIC) {
        size_t spec_len = get_u32(p + 16), rec_pk_len = get_u32(p + 20);
        if (VREC_HEADER + spec_len + rec_pk_len == len && spec_len < sizeof vr->spec &&
            rec_pk_len == pk_len && memcmp(p + VREC_HEADER + spec_len, pk, pk_len) == 0) {
            vr->found = true;
            vr->hit_for_pass = (get_u32(p + 4) & VREC_HFP) != 0;
            vr->gen = get_u64(p + 8);
            memcpy(vr->spec, p + VREC_HEADER, spec_len);
            vr->spec[spec_len] = '\0';
            vr->spec_len = spec_len;
        }
    }
    corral_value_unref(v);
    return 0;
}

/* Writes a vary record. `add` only creates one (CORRAL_EXISTS when there is one). */
static int vrec_put(corral *cache, const px_config *cfg, const px_route *r, const char *pk,
                    size_t pk_len, uint32_t flags, uint64_t gen, const char *spec, size_t spec_len,
                    int64_t ttl_ms, bool add) {
    size_t len = VREC_HEADER + spec_len + pk_len;
    char stack[1024];
    char *buf = len <= sizeof stack ? stack : malloc(len);
    if (!buf) return CORRAL_ENOMEM;
    put_u32(buf, VREC_MAGIC);
    put_u32(buf + 4, flags);
    put_u64(buf + 8, gen);
    put_u32(buf + 16, (uint32_t)spec_len);
    put_u32(buf + 20, (uint32_t)pk_len);
    memcpy(buf + VREC_HEADER, spec, spec_len);
    memcpy(buf + VREC_HEADER + spec_len, pk, pk_len);
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    char tagstore[PX_MAX_PATH_TAGS * (PX_KEY_MAX + 1)];
    const char *tags[PX_MAX_PATH_TAGS];
    const char *path;
    size_t plen;
    px_pk_path(pk, pk_len, &path, &plen);
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = px_path_tags(cfg, path, plen, tagstore, sizeof tagstore, tags, PX_MAX_PATH_TAGS);
    int rc = add ? corral_add(cache, key, klen, buf, len, ttl_ms, &call)
                 : corral_set(cache, key, klen, buf, len, ttl_ms, &call);
    if (buf != stack) free(buf);
    return rc;
}

int px_vrec_set_hfp(corral *cache, const px_route *r, const char *pk, size_t pk_len,
                    int64_t ttl_ms) {
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    size_t len = VREC_HEADER + pk_len;
    char *buf = malloc(len);
    if (!buf) return CORRAL_ENOMEM;
    put_u32(buf, VREC_MAGIC);
    put_u32(buf + 4, VREC_HFP);
    put_u64(buf + 8, 0);
    put_u32(buf + 16, 0);
    put_u32(buf + 20, (uint32_t)pk_len);
    memcpy(buf + VREC_HEADER, pk, pk_len);
    int rc = corral_set(cache, key, klen, buf, len, ttl_ms, NULL);
    free(buf);
    return rc;
}

static uint64_t new_generation(const char *pk, size_t pk_len) {
    uint64_t local = 0;
    uint64_t seed = uv_hrtime() ^ ((uint64_t)px_now_ms() << 20) ^ (uint64_t)(uintptr_t)&local;
    uint64_t g = px_hash64(pk, pk_len, seed);
    return g ? g : 1;
}

/* ---- Purge stamps ----
 *
 * A purge first writes a stamp, "~purge:<what>" = the time in ms ('~' cannot start a route
 * name, so stamps never count as a route's objects), for its URL's vary key, its tag, or "*"
 * (everything), then purges. A fill that started at S reads, after it stored its object, the
 * stamps of everything that names the object; one at or after S means a purge may have come
 * after the origin made the answer, so the fill deletes what it stored. Either the fill sees the
 * stamp, or it stored before the stamp was written and so before the purge, which then removes
 * the object: a purge is never undone. Stamps are ordinary entries kept PX_STAMP_TTL_MS; a fill
 * older than that counts as purged. Proxies sharing a store compare their wall clocks: their
 * clocks must agree (NTP) to within the time between a fill's start and a purge that races it.
 */

#define STAMP_PREFIX     "~purge:"
#define STAMP_PREFIX_LEN 7
#define STAMP_INLINE_MAX 160 /* longer names are hashed */
#define STAMP_MAX        (1 + PX_MAX_PATH_TAGS + PX_MAX_SURROGATE_KEYS + 1)

static size_t stamp_key(const char *name, size_t len, char *out) {
    memcpy(out, STAMP_PREFIX, STAMP_PREFIX_LEN);
    if (len <= STAMP_INLINE_MAX) {
        memcpy(out + STAMP_PREFIX_LEN, name, len);
        return STAMP_PREFIX_LEN + len;
    }
    out[STAMP_PREFIX_LEN] = '#';
    return STAMP_PREFIX_LEN + 1 + hash_hex(out + STAMP_PREFIX_LEN + 1, "", 0, name, len);
}

/* The time a stamp holds, or 0 (none, or not a stamp). */
static int64_t stamp_value(corral_value *v) {
    char buf[24];
    size_t len = v ? corral_value_len(v) : 0;
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, corral_value_data(v), len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Writes the stamp of `name`: the time now, or the stamp's own time when that is later (a purge
 * that took its time before a newer one wrote its stamp does not move it back; the two may
 * still interleave, which the margin covers). Returns 0 or PX_ESTAMP. A failure loses the
 * protection of fills in flight against this purge: the purge itself goes on, and reports it. */
static int stamp(corral *cache, const char *name, size_t len, int64_t now_ms) {
    char key[PX_KEY_MAX];
    size_t klen = stamp_key(name, len, key);
    corral_value *old = NULL;
    if (corral_get(cache, key, klen, NULL, &old) == CORRAL_OK) {
        int64_t was = stamp_value(old);
        if (was > now_ms) now_ms = was;
    }
    corral_value_unref(old);
    char val[24];
    int n = snprintf(val, sizeof val, "%lld", (long long)now_ms);
    if (n <= 0 || (size_t)n >= sizeof val) return PX_ESTAMP;
    return corral_set(cache, key, klen, val, (size_t)n, PX_STAMP_TTL_MS, NULL) < 0 ? PX_ESTAMP : 0;
}

int64_t px_purged_since(corral *cache, const px_config *cfg, const px_route *r, const char *pk,
                        size_t pk_len, const char *const *tags, size_t n_tags, int64_t start_ms,
                        bool error_is_purge) {
    int64_t now = px_now_ms();
    /* Stamps older than the fill's start by up to the margin count: they must all be alive. */
    if (now - (start_ms - cfg->purge_margin_ms) >= PX_STAMP_TTL_MS - 60000) return now;
    char names[STAMP_MAX][PX_KEY_MAX];
    corral_buf keys[STAMP_MAX];
    corral_value *vals[STAMP_MAX];
    size_t n = 0;
    char name[PX_KEY_MAX];
    size_t len = px_key_vary(r, pk, pk_len, name);
    keys[n].len = stamp_key(name, len, names[n]);
    keys[n].data = names[n];
    n++;
    const char *path;
    size_t plen;
    px_pk_path(pk, pk_len, &path, &plen);
    char pstore[PX_MAX_PATH_TAGS * (PX_KEY_MAX + 1)];
    const char *ptags[PX_MAX_PATH_TAGS];
    size_t np = px_path_tags(cfg, path, plen, pstore, sizeof pstore, ptags, PX_MAX_PATH_TAGS);
    for (size_t i = 0; i < np; i++, n++) {
        keys[n].len = stamp_key(ptags[i], strlen(ptags[i]), names[n]);
        keys[n].data = names[n];
    }
    for (size_t i = 0; i < n_tags && i < PX_MAX_SURROGATE_KEYS; i++, n++) {
        keys[n].len = stamp_key(tags[i], strlen(tags[i]), names[n]);
        keys[n].data = names[n];
    }
    keys[n].len = stamp_key("*", 1, names[n]);
    keys[n].data = names[n];
    n++;
    if (corral_get_many(cache, keys, n, NULL, vals, NULL) != CORRAL_OK)
        return error_is_purge ? now : 0;
    int64_t latest = 0;
    for (size_t i = 0; i < n; i++) {
        if (!vals[i]) continue;
        int64_t ms = stamp_value(vals[i]);
        if (ms >= start_ms - cfg->purge_margin_ms && ms > latest) latest = ms;
        corral_value_unref(vals[i]);
    }
    return latest;
}

int px_cache_commit(corral *cache, const px_config *cfg, const px_route *r, px_objbuf *b,
                    int64_t store_ttl_ms, const char *const *tags, size_t n_tags, int64_t start_ms,
                    corral_value **out) {
    *out = NULL;
    const char *p = b->p;
    size_t pk_len = get_u32(p + 4), spec_len = get_u32(p + 8), vk_len = get_u32(p + 12);
    const char *pk = p + OBJ_HEADER, *spec = pk + pk_len, *vk = spec + spec_len;
    int64_t vrec_ttl = store_ttl_ms > VREC_MIN_TTL_MS ? store_ttl_ms : VREC_MIN_TTL_MS;
    px_vrec cur;
    if (px_vrec_get(cache, r, pk, pk_len, &cur) < 0) return CORRAL_ESTORE;
    uint64_t gen;
    int rc;
    for (int attempt = 0;; attempt++) {
        if (cur.found && !cur.hit_for_pass && cur.spec_len == spec_len &&
            memcmp(cur.spec, spec, spec_len) == 0) {
            gen = cur.gen;
            char key[PX_KEY_MAX];
            size_t klen = px_key_vary(r, pk, pk_len, key);
            rc = corral_touch(cache, key, klen, vrec_ttl, NULL);
            if (rc < 0) return rc;
            break;
        }
        gen = new_generation(pk, pk_len);
        /* A new URL: add, so concurrent first stores of two variants agree on one record. */
        bool add = !cur.found && attempt == 0;
        rc = vrec_put(cache, cfg, r, pk, pk_len, 0, gen, spec, spec_len, vrec_ttl, add);
        if (rc < 0) return rc;
        if (rc != CORRAL_EXISTS) break;
        if (px_vrec_get(cache, r, pk, pk_len, &cur) < 0) return CORRAL_ESTORE;
    }
    char okey[PX_KEY_MAX];
    size_t olen = px_key_object(r, gen, pk, pk_len, vk, vk_len, okey);
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = n_tags;
    rc = corral_set(cache, okey, olen, b->p, b->len, store_ttl_ms, &call);
    if (rc < 0) return rc;
    /* After the write, so that a purge either shows here or follows the write (above). */
    if (px_purged_since(cache, cfg, r, pk, pk_len, tags, n_tags, start_ms, true) != 0) {
        if (corral_delete(cache, okey, olen, NULL) < 0) {
            /* The store is failing; the purge stamp stays, and so does this object. */
        }
        return PX_COMMIT_PURGED;
    }
    if (corral_get(cache, okey, olen, NULL, out) != CORRAL_OK) *out = NULL;
    return 0;
}

/* ---- Purges ---- */

int px_purge_url(px_proxy *px, const px_config *cfg, const char *pk, size_t pk_len) {
    const char *path;
    size_t plen;
    px_pk_path(pk, pk_len, &path, &plen);
    const px_route *r = px_route_match(cfg, path, plen);
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    int64_t now = px_now_ms();
    int src = stamp(px->cache, key, klen, now);
    int rc = corral_delete(px->cache, key, klen, NULL);
    px_busy_purge(px, PX_BUSY_BY_URL, key, klen, now);
    if (rc < 0) return rc;
    if (src < 0) return src;
    return rc == CORRAL_OK ? 1 : 0;
}

int px_purge_prefix(px_proxy *px, const px_config *cfg, const char *path, size_t len) {
    const char *tags[PX_MAX_PATH_TAGS];
    char tagstore[PX_MAX_PATH_TAGS * (PX_KEY_MAX + 1)];
    size_t n = px_path_tags(cfg, path, len, tagstore, sizeof tagstore, tags, PX_MAX_PATH_TAGS);
    int64_t now = px_now_ms();
    int rc;
    if (n == 0) {
        /* "/": everything. The clear takes the stamps too, so "*" is written before and after
         * it; a fill that stores and checks between the clear and the second stamp is the one
         * race left. */
        int src = stamp(px->cache, "*", 1, now);
        rc = corral_clear_prefix(px->cache);
        int again = stamp(px->cache, "*", 1, now); /* the clear took the first one */
        if (src == 0) src = again;
        px_busy_purge(px, PX_BUSY_BY_ALL, "", 0, now);
        return rc < 0 ? rc : src;
    }
    /* The deepest tag a record carries for this prefix; a deeper prefix purges this ancestor. */
    const char *tag = tags[n - 1];
    int src = stamp(px->cache, tag, strlen(tag), now);
    rc = corral_tag_bust(px->cache, tag);
    px_busy_purge(px, PX_BUSY_BY_TAG, tag, strlen(tag), now);
    return rc < 0 ? rc : src;
}

int px_purge_key(px_proxy *px, const char *key, size_t len) {
    char tag[PX_KEY_MAX + 1];
    size_t n = px_tag_name('s', key, len, tag);
    tag[n] = '\0';
    int64_t now = px_now_ms();
    int src = stamp(px->cache, tag, n, now);
    int rc = corral_tag_bust(px->cache, tag);
    px_busy_purge(px, PX_BUSY_BY_TAG, tag, n, now);
    return rc < 0 ? rc : src;
}

/* ---- Answering from the cache ---- */

static void serve(px_conn *c, px_result r, const char *reason, int64_t age_s) {
    px_request *rq = &c->req;
    const px_obj *o = &rq->obj;
    rq->result = r;
    rq->reason = reason;
    unsigned cs = corral_http_conditional_status(&rq->msg, &o->head, rq->now_ms);
    if (cs == 412) {
        px_conn_simple(c, 412, "Precondition Failed", "", r, reason);
        return;
    }
    char extra[160];
    size_t elen = px_conn_extra(c, r, extra, sizeof extra);
    char stack[8192];
    char *buf = stack;
    size_t len;
    unsigned status = cs == 304 ? 304 : 0;
    int rc = corral_http_write_cached_head(&o->head, status, age_s, (int64_t)o->body_len, extra,
                                           elen, buf, sizeof stack, &len);
    if (rc == CORRAL_ENOSPC && (buf = malloc(len)) != NULL)
        rc = corral_http_write_cached_head(&o->head, status, age_s, (int64_t)o->body_len, extra,
                                           elen, buf, len, &len);
    if (rc < 0 || !buf) {
        if (buf != stack) free(buf);
        px_conn_simple(c, 500, "Internal Server Error", "cannot write the stored head\n",
                       PX_R_ERROR, corral_strerror(rc));
        return;
    }
    rq->status = status ? status : o->head.status;
    rq->responded = true;
    rq->resp_chunked = false;
    unsigned st = o->head.status;
    bool body = !status && st >= 200 && st != 204 && st != 304;
    px_conn_send_whole(c, buf, len, o->body, body ? o->body_len : 0, o->v);
    if (buf != stack) free(buf);
    px_conn_end(c);
}

/* Age of the request's object now. */
static int64_t obj_age(const px_request *rq) {
    corral_http_entry e = { &rq->obj.head, rq->obj.req_ms, rq->obj.resp_ms };
    int64_t age_s = 0;
    if (corral_http_current_age(&e, px_now_ms(), NULL, &age_s) < 0) age_s = 0;
    return age_s;
}

void px_cache_serve(px_conn *c, corral_value *v, px_result r, const char *reason) {
    px_request *rq = &c->req;
    obj_release(&rq->obj);
    if (px_obj_parse(v, c->obj_hdrs, PX_OBJ_MAX_HEADERS, &rq->obj) < 0) {
        corral_value_unref(v);
        px_conn_simple(c, 502, "Bad Gateway", "stored object unreadable\n", PX_R_ERROR,
                       "bad object");
        return;
    }
    serve(c, r, reason, obj_age(rq));
}

/* ---- Fetching ---- */

static void start_fetch(px_conn *c, px_fetch_kind kind, corral_flight *lead, px_result result,
                        const char *reason) {
    px_request *rq = &c->req;
    rq->result = result;
    rq->reason = reason;
    px_fetch_args a = {
        .kind = kind,
        .sink = c,
        .lead = lead,
        .flight_key = c->flight_key,
        .flight_key_len = c->flight_key_len,
        .req = &rq->msg,
        .route = rq->route,
        .cfg = rq->cfg,
        .pk = rq->pk,
        .pk_len = rq->pk_len,
        .vrec = &rq->vrec,
        .stale = rq->obj.v ? &rq->obj : NULL,
        .result = result,
    };
    if (px_fetch_start(c->w, &a) < 0) {
        /* px_fetch_start answered the client and finished the flight. */
    }
}

static void pass(px_conn *c, const char *reason) {
    start_fetch(c, PX_FETCH_PASS, NULL, PX_R_PASS, reason);
}

/* Called by the thread that finishes a flight: hand the outcome to the waiter's worker. */
static void on_flight(void *arg, int rc, corral_value *v) {
    px_conn *c = arg;
    /* The leader published its busy object before finishing the flight, and cannot withdraw
     * it before this returns: it is found (a newer one of the same key would do as well). */
    if (rc == PX_FLIGHT_STREAM)
        c->wake_busy = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, true);
    c->wake_rc = rc;
    c->wake_v = v;
    px_worker_wake(c->w, c);
}

/* A background refresh's own "waiters" (requests that found one running) need nothing. */
static void on_refresh_waiter(void *arg, int rc, corral_value *v) {
    (void)arg;
    (void)rc;
    corral_value_unref(v);
}

static bool has_validator(const corral_http_msg *m) {
    return corral_http_msg_get(m, "etag", NULL) || corral_http_msg_get(m, "last-modified", NULL);
}

/* Builds the request's flight key into c->flight_key from its variant key. */
static void flight_key(px_conn *c, const char *vk, size_t vk_len) {
    c->flight_key_len =
        px_key_flight(c->req.route, c->req.pk, c->req.pk_len, vk, vk_len, c->flight_key);
}

/* Computes the request's variant key (into the scratch after the primary key) from the URL's
 * vary record, or, when there is none yet, from the Vary of an answer in flight for another
 * variant (spec_hint), and sets the flight key from it. A request that learns the URL varies
 * from another variant's answer thus waits under the same flight key as one that arrives after
 * that answer's record was stored. -1 when the variant key is too long. */
static int variant_flight_key(px_conn *c, const char **vk, size_t *vk_len) {
    px_request *rq = &c->req;
    const char *spec = rq->vrec.found ? rq->vrec.spec : rq->spec_hint;
    size_t spec_len = rq->vrec.found ? rq->vrec.spec_len : rq->spec_hint_len;
    char *out = rq->pk + rq->pk_len;
    size_t cap = c->scratch_cap - (size_t)(out - c->scratch);
    *vk = out;
    *vk_len = 0;
    if (corral_http_variant_key(&rq->msg, spec, spec_len, out, cap, vk_len) != CORRAL_OK) return -1;
    flight_key(c, out, *vk_len);
    return 0;
}

/* Remembers the Vary spec of another variant's answer to this URL (variant_flight_key). */
static void note_spec(px_request *rq, const char *spec, size_t spec_len) {
    if (rq->vrec.found || spec_len == 0 || spec_len > sizeof rq->spec_hint) return;
    memcpy(rq->spec_hint, spec, spec_len);
    rq->spec_hint_len = spec_len;
}

/* Starts one background refresh of the request's (stale) object unless one is running. */
static void refresh_in_background(px_conn *c) {
    px_request *rq = &c->req;
    corral *cache = c->w->px->cache;
    /* A refresh whose answer is arriving (its flight ended at the head) is running too. */
    px_busy *b = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, true);
    if (b) {
        px_busy_unref(b);
        return;
    }
    corral_flight *lead = NULL;
    int rc = corral_flight_join(cache, c->flight_key, c->flight_key_len, NULL, on_refresh_waiter,
                                NULL, &lead);
    if (rc != CORRAL_OK) return; /* one is running (or no memory: the next request tries) */
    px_fetch_args a = {
        .kind = has_validator(&rq->obj.head) ? PX_FETCH_REVALIDATE : PX_FETCH_MISS,
        .sink = NULL,
        .lead = lead,
        .flight_key = c->flight_key,
        .flight_key_len = c->flight_key_len,
        .req = &rq->msg,
        .route = rq->route,
        .cfg = rq->cfg,
        .pk = rq->pk,
        .pk_len = rq->pk_len,
        .vrec = &rq->vrec,
        .stale = &rq->obj,
        .result = PX_R_STALE,
    };
    if (px_fetch_start(c->w, &a) < 0) {
        /* The flight was finished with an error by px_fetch_start. */
    }
}

/* ---- Streaming a busy object ---- */

#define STREAM_SLICE (256u * 1024) /* bytes taken from a busy object between congestion checks */

static void stream_stop(px_conn *c) {
    if (!c->stream) return;
    px_busy_detach(c->stream, &c->rd);
    px_busy_unref(c->stream);
    c->stream = NULL;
    c->stream_blocked = false;
    px_conn_stream_wait(c, false);
}

void px_cache_stream(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (c->closing) {
        px_conn_release_closed(c);
        return;
    }
    /* Sends what there is, unless the client's queue is long: on_write calls again. */
    while (c->stream && !c->closing) {
        if (px_conn_congested(c)) {
            c->stream_blocked = true;
            return;
        }
        c->stream_blocked = false;
        const char *data;
        size_t len;
        int st = px_busy_read(c->stream, &c->rd, STREAM_SLICE, &data, &len);
        if (st == PX_BUSY_MORE) {
            px_conn_stream_wait(c, false);
            px_conn_body(c, data, len, NULL);
            continue;
        }
        if (st == PX_BUSY_WAIT) {
            px_conn_stream_wait(c, true); /* a fetch that never moves again cannot hang us */
            return;
        }
        stream_stop(c);
        if (st == PX_BUSY_DONE) {
            /* The leader's client: its fetch (complete, so not aborted) lets go of it. */
            if (c->fetch) px_fetch_detach(c->fetch);
            px_conn_end(c);
        } else {
            px_conn_abort(c); /* the leader's fetch failed: cut short, as its own client is */
        }
        return;
    }
}

void px_cache_stream_stop(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    stream_stop(c);
}

void px_cache_stream_busy(px_conn *c, px_busy *b) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    c->stream = b;
    px_busy_attach(b, &c->rd, c);
    px_cache_stream(c);
}

void px_cache_stream_flush(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    while (c->stream && !c->closing) {
        const char *data;
        size_t len;
        if (px_busy_read(c->stream, &c->rd, SIZE_MAX, &data, &len) != PX_BUSY_MORE) break;
        px_conn_body(c, data, len, NULL);
    }
    stream_stop(c);
}

/* Answers the request from busy object `b` (the reference is taken) when it is this request's
 * variant and usable for it: the head now, the body as it arrives. Returns false (`b` released)
 * otherwise, or when a purge came before the request did (it was made before the purge). */
static bool stream_from(px_conn *c, px_busy *b) {
    px_request *rq = &c->req;
    px_obj o = *px_busy_view(b); /* its fields are read-only: they point into `b` */
    corral_http_decision d;
    int64_t purged = px_busy_purged_ms(b);
    char *vk = rq->pk + rq->pk_len;
    size_t vk_cap = c->scratch_cap - (size_t)(vk - c->scratch), vk_len = 0;
    if ((purged && rq->now_ms >= purged) || o.pk_len != rq->pk_len ||
        memcmp(o.pk, rq->pk, rq->pk_len) != 0) {
        px_busy_unref(b);
        return false;
    }
    if (corral_http_variant_key(&rq->msg, o.spec, o.spec_len, vk, vk_cap, &vk_len) != CORRAL_OK ||
        vk_len != o.vk_len || memcmp(vk, o.vk, vk_len) != 0) {
        note_spec(rq, o.spec, o.spec_len); /* another variant: the URL varies so */
        px_busy_unref(b);
        return false;
    }
    /* Its framing, for the client's head: the stored head has none. */
    uint64_t length = 0;
    if (px_busy_length(b, &length)) {
        o.head.framing = CORRAL_HTTP_FRAMING_LENGTH;
        o.head.has_content_length = true;
        o.head.content_length = length;
    } else {
        o.head.framing = CORRAL_HTTP_FRAMING_CHUNKED;
        o.head.has_content_length = false;
    }
    corral_http_entry e = { &o.head, o.req_ms, o.resp_ms };
    int64_t now = px_now_ms();
    if (corral_http_lookup(&rq->route->policy, &rq->msg, &e, now, &d) != 0 ||
        (d.action != CORRAL_HTTP_HIT && d.action != CORRAL_HTTP_STALE_WHILE_REVALIDATE &&
         d.action != CORRAL_HTTP_REVALIDATE)) {
        px_busy_unref(b);
        return false;
    }
    obj_release(&rq->obj); /* a stale copy being revalidated */
    rq->result = PX_R_COALESCED;
    rq->reason = "coalesced (streamed)";
    unsigned cs = corral_http_conditional_status(&rq->msg, &o.head, now);
    if (cs == 304 || cs == 412) {
        px_busy_unref(b);
        px_conn_not_modified(c, &o.head, cs, PX_R_COALESCED);
        return true;
    }
    if (px_conn_send_head(c, &o.head, PX_R_COALESCED) < 0) {
        px_busy_unref(b);
        px_conn_simple(c, 502, "Bad Gateway", "response head too large\n", PX_R_ERROR,
                       "head too large");
        return true;
    }
    if (rq->is_head || c->closing) {
        /* A HEAD is answered; a connection that closed while sending the head (a write
         * error) must not become a reader: notifications would queue a connection being
         * freed. */
        px_busy_unref(b);
        if (!c->closing) px_conn_end(c);
        return true;
    }
    c->stream = b;
    px_busy_attach(b, &c->rd, c);
    px_cache_stream(c);
    return true;
}

/* MISS or REVALIDATE: fetch, sharing the fetch with concurrent requests for the object. */
static void fetch_coalesced(px_conn *c, px_fetch_kind kind, const corral_http_decision *d) {
    px_request *rq = &c->req;
    if (d->credentialed || rq->uncoalesced) {
        start_fetch(c, kind, NULL, kind == PX_FETCH_MISS ? PX_R_MISS : PX_R_REVALIDATED, d->reason);
        return;
    }
    /* A fetch of it whose answer is arriving (the flight ended at its head): stream that. */
    px_busy *b = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, false);
    if (b && stream_from(c, b)) return;
    const char *vk;
    size_t vk_len;
    if (b && !rq->vrec.found && rq->spec_hint_len && variant_flight_key(c, &vk, &vk_len) < 0) {
        pass(c, "variant key too long");
        return;
    }
    corral_flight *lead = NULL;
    int rc = corral_flight_join(c->w->px->cache, c->flight_key, c->flight_key_len, NULL, on_flight,
                                c, &lead);
    if (rc == CORRAL_WAITING) {
        c->waiting = true;
        rq->reason = d->reason;
        px_conn_wait(c, rq->cfg->coalesce_timeout_ms);
        return;
    }
    start_fetch(c, kind, rc == CORRAL_OK ? lead : NULL,
                kind == PX_FETCH_MISS ? PX_R_MISS : PX_R_REVALIDATED, d->reason);
}

/* Looks the request up (vary record, variant) and acts on the engine's decision. */
static void dispatch(px_conn *c) {
    px_request *rq = &c->req;
    corral *cache = c->w->px->cache;
    const px_route *r = rq->route;
    obj_release(&rq->obj);
    if (px_vrec_get(cache, r, rq->pk, rq->pk_len, &rq->vrec) < 0)
        memset(&rq->vrec, 0, sizeof rq->vrec);
    if (rq->vrec.hit_for_pass) {
        rq->uncoalesced = true;
        start_fetch(c, PX_FETCH_MISS, NULL, PX_R_PASS, "hit-for-pass");
        return;
    }
    const char *vk;
    size_t vk_len;
    if (variant_flight_key(c, &vk, &vk_len) < 0) {
        pass(c, "variant key too long");
        return;
    }
    const corral_http_entry *entry = NULL;
    corral_http_entry e;
    if (rq->vrec.found) {
        char okey[PX_KEY_MAX];
        size_t olen = px_key_object(r, rq->vrec.gen, rq->pk, rq->pk_len, vk, vk_len, okey);
        corral_value *v = NULL;
        if (corral_get(cache, okey, olen, NULL, &v) == CORRAL_OK) {
            px_obj *o = &rq->obj;
            if (px_obj_parse(v, c->obj_hdrs, PX_OBJ_MAX_HEADERS, o) == 0 &&
                o->pk_len == rq->pk_len && memcmp(o->pk, rq->pk, rq->pk_len) == 0 &&
                o->vk_len == vk_len && memcmp(o->vk, vk, vk_len) == 0) {
                e = (corral_http_entry){ &o->head, o->req_ms, o->resp_ms };
                entry = &e;
            } else {
                obj_release(o);
                corral_value_unref(v);
            }
        }
    }
    corral_http_decision d;
    if (corral_http_lookup(&r->policy, &rq->msg, entry, rq->now_ms, &d) < 0) {
        pass(c, "lookup failed");
        return;
    }
    switch (d.action) {
    case CORRAL_HTTP_HIT: serve(c, PX_R_HIT, d.reason, d.age_s); return;
    case CORRAL_HTTP_STALE_WHILE_REVALIDATE:
        refresh_in_background(c);
        serve(c, PX_R_STALE, d.reason, d.age_s);
        return;
    case CORRAL_HTTP_REVALIDATE: fetch_coalesced(c, PX_FETCH_REVALIDATE, &d); return;
    case CORRAL_HTTP_MISS: fetch_coalesced(c, PX_FETCH_MISS, &d); return;
    case CORRAL_HTTP_GATEWAY_TIMEOUT:
        px_conn_simple(c, 504, "Gateway Timeout", "not cached (only-if-cached)\n", PX_R_ERROR,
                       d.reason);
        return;
    default: pass(c, d.reason); return;
    }
}

/* The path of a request target: origin-form up to '?', or the path of an absolute-form. */
static void target_path(const corral_http_msg *m, const char **path, size_t *len) {
    const char *t = m->target;
    size_t n = m->target_len;
    if (n && t[0] != '/') {
        const char *sep = n >= 3 ? memchr(t, ':', n) : NULL;
        size_t skip = sep && (size_t)(sep - t) + 3 <= n ? (size_t)(sep - t) + 3 : n;
        const char *slash = skip < n ? memchr(t + skip, '/', n - skip) : NULL;
        if (!slash) {
            *path = "/";
            *len = 1;
            return;
        }
        n -= (size_t)(slash - t);
        t = slash;
    }
    const char *q = memchr(t, '?', n);
    *path = t;
    *len = q ? (size_t)(q - t) : n;
}

void px_cache_request(px_conn *c) {
    px_request *rq = &c->req;
    const corral_http_msg *raw = rq->raw;
    const char *path;
    size_t plen;
    target_path(raw, &path, &plen);
    const px_route *r = px_route_match(rq->cfg, path, plen);
    rq->route = r;
    rq->msg = *raw;
    /* Scratch: the filtered Cookie first, then the primary key, then the variant key. */
    size_t cookie_cap = rq->cfg->limits.max_head_bytes + 1024;
    if (cookie_cap > c->scratch_cap / 2) cookie_cap = c->scratch_cap / 2;
    if (r->n_cookies && corral_http_msg_get(raw, "cookie", NULL) &&
        corral_http_request_filter_cookies(raw, (const char *const *)r->cookies, r->n_cookies,
                                           r->keep_cookies, c->hdrs, c->max_hdrs, c->scratch,
                                           cookie_cap, &rq->msg) != CORRAL_OK) {
        rq->msg = *raw;
        pass(c, "cookie rule failed");
        return;
    }
    if (raw->method == CORRAL_HTTP_CONNECT) {
        /* A reverse proxy does not tunnel. */
        c->req.keep_alive = false;
        px_conn_simple(c, 405, "Method Not Allowed", "CONNECT is not supported\n", PX_R_ERROR,
                       "CONNECT");
        return;
    }
    if (r->bypass) {
        pass(c, "route bypass");
        return;
    }
    if (raw->method != CORRAL_HTTP_GET && raw->method != CORRAL_HTTP_HEAD) {
        pass(c, "method not cacheable");
        return;
    }
    if (rq->has_body) {
        pass(c, "request has a body");
        return;
    }
    rq->pk = c->scratch + cookie_cap;
    if (corral_http_primary_key(&rq->msg, rq->pk, c->scratch_cap - cookie_cap, &rq->pk_len) !=
        CORRAL_OK) {
        rq->pk = NULL;
        pass(c, "no primary key");
        return;
    }
    dispatch(c);
}

void px_cache_wait_expired(px_conn *c) {
    if (!c->waiting) return;
    c->wait_timed_out = true;
    int rc =
        corral_flight_cancel(c->w->px->cache, c->flight_key, c->flight_key_len, NULL, on_flight, c);
    (void)rc; /* CORRAL_MISS: the leader already released us; the wake-up is on its way */
}

void px_cache_woken(px_conn *c, int rc, corral_value *v) {
    px_request *rq = &c->req;
    px_busy *b = c->wake_busy;
    c->wake_busy = NULL;
    if (c->closing || !c->busy) {
        corral_value_unref(v);
        px_busy_unref(b);
        px_conn_release_closed(c);
        return;
    }
    px_conn_wait(c, 0);
    rq->wakes++;
    bool timed_out = c->wait_timed_out && rc == CORRAL_ETIMEDOUT;
    c->wait_timed_out = false;
    if (rq->wakes >= WAKES_BEFORE_SOLO) rq->uncoalesced = true;
    if (timed_out) {
        corral_value_unref(v);
        px_busy_unref(b);
        rq->uncoalesced = true;
        start_fetch(c, PX_FETCH_MISS, NULL, PX_R_MISS, "coalescing wait timed out");
        return;
    }
    if (rc == PX_FLIGHT_STREAM) {
        /* Not usable (another variant, or purged before we asked): look up again. */
        if (!b || !stream_from(c, b)) dispatch(c);
        return;
    }
    if (rc == CORRAL_OK && v) {
        px_obj o;
        corral_http_decision d;
        /* The leader's object serves this request when it is this request's variant. */
        if (px_obj_parse(v, c->obj_hdrs, PX_OBJ_MAX_HEADERS, &o) == 0 && o.pk_len == rq->pk_len &&
            memcmp(o.pk, rq->pk, rq->pk_len) == 0) {
            char *vk = rq->pk + rq->pk_len;
            size_t vk_cap = c->scratch_cap - (size_t)(vk - c->scratch), vk_len = 0;
            corral_http_entry e = { &o.head, o.req_ms, o.resp_ms };
            if (corral_http_variant_key(&rq->msg, o.spec, o.spec_len, vk, vk_cap, &vk_len) ==
                    CORRAL_OK &&
                vk_len == o.vk_len && memcmp(vk, o.vk, vk_len) == 0 &&
                corral_http_lookup(&rq->route->policy, &rq->msg, &e, px_now_ms(), &d) == 0 &&
                (d.action == CORRAL_HTTP_HIT || d.action == CORRAL_HTTP_STALE_WHILE_REVALIDATE ||
                 d.action == CORRAL_HTTP_REVALIDATE)) {
                /* Just fetched for this very request: serve it (as Varnish and nginx do). */
                obj_release(&rq->obj);
                rq->obj = o;
                serve(c, PX_R_COALESCED, "coalesced", d.age_s);
                return;
            }
            note_spec(rq, o.spec, o.spec_len);
        }
        corral_value_unref(v);
        dispatch(c);
        return;
    }
    corral_value_unref(v);
    if (rc == CORRAL_OK) {
        dispatch(c);
        return;
    }
    if (rc == PX_FLIGHT_PASS) {
        rq->uncoalesced = true;
        start_fetch(c, PX_FETCH_MISS, NULL, PX_R_PASS, "hit-for-pass (answer not storable)");
        return;
    }
    /* The origin failed for the leader: stand in with our stale copy, or report it. */
    if (rq->obj.v) {
        corral_http_entry e = { &rq->obj.head, rq->obj.req_ms, rq->obj.resp_ms };
        corral_http_decision d;
        if (corral_http_on_error(&rq->route->policy, &rq->msg, &e, px_now_ms(), &d) == 0 &&
            d.action == CORRAL_HTTP_STALE_IF_ERROR) {
            serve(c, PX_R_STALE_IF_ERROR, d.reason, d.age_s);
            return;
        }
    }
    if (rc == PX_FLIGHT_ORIGIN_TIMEOUT)
        px_conn_simple(c, 504, "Gateway Timeout", "origin timed out\n", PX_R_ERROR,
                       "origin timeout (coalesced)");
    else
        px_conn_simple(c, 502, "Bad Gateway", "origin failed\n", PX_R_ERROR,
                       "origin error (coalesced)");
}

void px_request_release(px_conn *c) {
    px_request *rq = &c->req;
    stream_stop(c);
    obj_release(&rq->obj);
    px_config_unref(rq->cfg);
    rq->cfg = NULL;
}
