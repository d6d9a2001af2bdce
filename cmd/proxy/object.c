/*
 * object.c - the bottom of corral-proxy's cache: what it keeps in the store and how. Keys, the
 * stored object's encoding, vary records, purge stamps and the commit of a built object. It
 * calls libcorral, the HTTP engine and util.c, nothing else of the proxy.
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
 *   ~purge:<what>   a purge stamp (below).
 *   ~tn:<tag>, ~tm:<tag>:<n>   the tag's member index, for purge counts (below).
 *
 * A lookup reads the vary record, computes the request's variant key from its spec, and reads
 * the variant under the record's generation. Purging a URL deletes its record: every variant
 * becomes unreachable at once, and the next record gets a new random generation, so an old
 * variant can never come back (they age out of the store). Objects carry their primary and
 * variant keys and are checked on every read, so a hash collision is a miss, never a wrong
 * answer. A record marked HIT_FOR_PASS (a non-storable answer, for the route's hit_for_pass
 * time) makes requests pass without waiting on each other.
 *
 * Threads: any thread; libcorral is thread-safe and nothing here keeps state.
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
#define PK_INLINE_MAX                                                             \
    128                    /* longer primary keys are hashed in record keys; the  \
                             rest of the 250-byte key budget is the route and the \
                             store URL's key_prefix */
#define TAG_INLINE_MAX 190 /* longer tag names are hashed */

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
        return PX_ETOOBIG;
    size_t fixed = OBJ_HEADER + pk_len + spec_len + vk_len + head_len;
    b->cap = fixed + (body_hint ? body_hint : 4096);
    b->p = malloc(b->cap);
    if (!b->p) return PX_ENOMEM;
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
        if (!p) return PX_ENOMEM;
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
        return PX_EFORMAT;
    o->v = v;
    return 0;
}

int px_obj_parse_bytes(const char *p, size_t len, corral_http_header *hdrs, size_t max_hdrs,
                       px_obj *o) {
    memset(o, 0, sizeof *o);
    if (len < OBJ_HEADER || get_u32(p) != OBJ_MAGIC) return PX_EFORMAT;
    size_t pk_len = get_u32(p + 4), spec_len = get_u32(p + 8), vk_len = get_u32(p + 12);
    size_t head_len = get_u32(p + 16);
    uint64_t body_len = get_u64(p + 24);
    size_t fixed = OBJ_HEADER + pk_len + spec_len + vk_len + head_len;
    if (fixed > len || body_len != len - fixed) return PX_EFORMAT;
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
        return PX_EFORMAT;
    o->hdrs = hdrs;
    return 0;
}

/* ---- Vary records ---- */

int px_vrec_get(corral *cache, const px_route *r, const char *pk, size_t pk_len, px_vrec *vr) {
    memset(vr, 0, sizeof *vr);
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    corral_value *v = NULL;
    int rc = corral_get(cache, key, klen, NULL, &v);
    if (rc < 0) return PX_ESTORE;
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
    if (rc == CORRAL_OK) px_tag_note(cache, tags, call.n_tags, key, klen, ttl_ms);
    return rc;
}

/* ---- Tag members, for purge counts ----
 *
 * A tag bust is O(1) and tells nothing of what it invalidated, so each entry written with a tag
 * is also noted under it: "~tn:<tag>" counts the notes (corral_incr: atomic on every store, so
 * proxies sharing Redis never take the same number) and "~tm:<tag>:<n>" holds the n-th
 * entry's key, with the entry's TTL. A purge reads the last PX_TAG_COUNT_MAX notes, removes
 * repeats and counts the keys that still read as valid (tags checked), before its bust: that is
 * what the bust invalidates. Entries noted long ago (more than PX_TAG_COUNT_MAX notes back, or
 * past the counter's day) are not counted, nor a fill's note that races the purge: a count can
 * be low, never high. A note that fails only makes a later count low. */

#define TN_PREFIX    "~tn:"
#define TM_PREFIX    "~tm:"
#define TN_TTL_MS    86400000
#define TAG_KEY_ROOM (4 + TAG_INLINE_MAX + 2 + 1 + 20 + 1)

static size_t tag_counter_key(const char *tag, char *out) {
    size_t n = strlen(tag);
    memcpy(out, TN_PREFIX, 4);
    memcpy(out + 4, tag, n);
    return 4 + n;
}

static size_t tag_member_key(const char *tag, int64_t i, char *out) {
    size_t n = strlen(tag);
    memcpy(out, TM_PREFIX, 4);
    memcpy(out + 4, tag, n);
    int w = snprintf(out + 4 + n, 22, ":%lld", (long long)i);
    return 4 + n + (w > 0 ? (size_t)w : 0);
}

void px_tag_note(corral *cache, const char *const *tags, size_t n_tags, const char *key,
                 size_t key_len, int64_t ttl_ms) {
    for (size_t t = 0; t < n_tags; t++) {
        if (strlen(tags[t]) > TAG_INLINE_MAX + 2) continue; /* names are hashed before that */
        char ck[TAG_KEY_ROOM], mk[TAG_KEY_ROOM];
        size_t cl = tag_counter_key(tags[t], ck);
        int64_t i = 0;
        int rc = corral_incr(cache, ck, cl, 1, NULL, &i);
        if (rc == CORRAL_MISS) {
            rc = corral_add(cache, ck, cl, "1", 1, TN_TTL_MS, NULL);
            i = 1;
            if (rc == CORRAL_EXISTS) rc = corral_incr(cache, ck, cl, 1, NULL, &i);
        }
        if (rc != CORRAL_OK) continue;
        size_t ml = tag_member_key(tags[t], i, mk);
        (void)corral_set(cache, mk, ml, key, key_len, ttl_ms, NULL);
    }
}

static int cmp_buf(const void *a, const void *b) {
    const corral_buf *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->data, y->data, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

int64_t px_tag_count(corral *cache, const char *tag, bool *more) {
    *more = false;
    if (strlen(tag) > TAG_INLINE_MAX + 2) return PX_EINVAL;
    char ck[TAG_KEY_ROOM];
    size_t cl = tag_counter_key(tag, ck);
    corral_value *v = NULL;
    int rc = corral_get(cache, ck, cl, NULL, &v);
    if (rc == CORRAL_MISS) return 0;
    if (rc != CORRAL_OK) return px_from_corral(rc);
    char num[24];
    size_t nl = corral_value_len(v) < sizeof num - 1 ? corral_value_len(v) : sizeof num - 1;
    memcpy(num, corral_value_data(v), nl);
    num[nl] = '\0';
    corral_value_unref(v);
    int64_t last = strtoll(num, NULL, 10);
    if (last <= 0) return 0;
    int64_t first = last > PX_TAG_COUNT_MAX ? last - PX_TAG_COUNT_MAX + 1 : 1;
    *more = first > 1;
    size_t n = (size_t)(last - first + 1);
    corral_buf *keys = calloc(n, sizeof *keys);
    char *names = malloc(n * TAG_KEY_ROOM);
    corral_value **vals = calloc(n, sizeof *vals);
    int64_t count = PX_ENOMEM;
    if (!keys || !names || !vals) goto done;
    for (size_t k = 0; k < n; k++) {
        keys[k].data = names + k * TAG_KEY_ROOM;
        keys[k].len = tag_member_key(tag, first + (int64_t)k, names + k * TAG_KEY_ROOM);
    }
    rc = corral_get_many(cache, keys, n, NULL, vals, NULL);
    if (rc != CORRAL_OK) {
        count = px_from_corral(rc);
        goto done;
    }
    /* The members' keys, each once. */
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        if (!vals[k]) continue;
        keys[m].data = corral_value_data(vals[k]);
        keys[m].len = corral_value_len(vals[k]);
        m++;
    }
    qsort(keys, m, sizeof *keys, cmp_buf);
    size_t u = 0;
    for (size_t k = 0; k < m; k++)
        if (u == 0 || cmp_buf(&keys[u - 1], &keys[k]) != 0) keys[u++] = keys[k];
    size_t found = 0;
    corral_value **live = calloc(u ? u : 1, sizeof *live);
    if (!live) goto done;
    rc = u ? corral_get_many(cache, keys, u, NULL, live, &found) : CORRAL_OK;
    for (size_t k = 0; k < u; k++)
        corral_value_unref(live[k]);
    free(live);
    count = rc == CORRAL_OK ? (int64_t)found : px_from_corral(rc);
done:
    for (size_t k = 0; vals && k < n; k++)
        corral_value_unref(vals[k]);
    free(vals);
    free(names);
    free(keys);
    return count;
}

int px_vrec_set_hfp(corral *cache, const px_route *r, const char *pk, size_t pk_len,
                    int64_t ttl_ms) {
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    size_t len = VREC_HEADER + pk_len;
    char *buf = malloc(len);
    if (!buf) return PX_ENOMEM;
    put_u32(buf, VREC_MAGIC);
    put_u32(buf + 4, VREC_HFP);
    put_u64(buf + 8, 0);
    put_u32(buf + 16, 0);
    put_u32(buf + 20, (uint32_t)pk_len);
    memcpy(buf + VREC_HEADER, pk, pk_len);
    int rc = corral_set(cache, key, klen, buf, len, ttl_ms, NULL);
    free(buf);
    return px_from_corral(rc);
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

int px_stamp_write(corral *cache, const char *name, size_t len, int64_t now_ms) {
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

int px_obj_commit(corral *cache, const px_config *cfg, const px_route *r, px_objbuf *b,
                  int64_t store_ttl_ms, const char *const *tags, size_t n_tags, int64_t start_ms,
                  corral_value **out) {
    *out = NULL;
    const char *p = b->p;
    size_t pk_len = get_u32(p + 4), spec_len = get_u32(p + 8), vk_len = get_u32(p + 12);
    const char *pk = p + OBJ_HEADER, *spec = pk + pk_len, *vk = spec + spec_len;
    int64_t vrec_ttl = store_ttl_ms > VREC_MIN_TTL_MS ? store_ttl_ms : VREC_MIN_TTL_MS;
    px_vrec cur;
    if (px_vrec_get(cache, r, pk, pk_len, &cur) < 0) return PX_ESTORE;
    uint64_t gen;
    int rc;
    for (int attempt = 0;; attempt++) {
        if (cur.found && !cur.hit_for_pass && cur.spec_len == spec_len &&
            memcmp(cur.spec, spec, spec_len) == 0) {
            gen = cur.gen;
            char key[PX_KEY_MAX];
            size_t klen = px_key_vary(r, pk, pk_len, key);
            rc = corral_touch(cache, key, klen, vrec_ttl, NULL);
            if (rc < 0) return px_from_corral(rc);
            break;
        }
        gen = new_generation(pk, pk_len);
        /* A new URL: add, so concurrent first stores of two variants agree on one record. */
        bool add = !cur.found && attempt == 0;
        rc = vrec_put(cache, cfg, r, pk, pk_len, 0, gen, spec, spec_len, vrec_ttl, add);
        if (rc < 0) return px_from_corral(rc);
        if (rc != CORRAL_EXISTS) break;
        if (px_vrec_get(cache, r, pk, pk_len, &cur) < 0) return PX_ESTORE;
    }
    char okey[PX_KEY_MAX];
    size_t olen = px_key_object(r, gen, pk, pk_len, vk, vk_len, okey);
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = n_tags;
    rc = corral_set(cache, okey, olen, b->p, b->len, store_ttl_ms, &call);
    if (rc < 0) return px_from_corral(rc);
    /* After the write, so that a purge either shows here or follows the write (above). */
    if (px_purged_since(cache, cfg, r, pk, pk_len, tags, n_tags, start_ms, true) != 0) {
        if (corral_delete(cache, okey, olen, NULL) < 0) {
            /* The store is failing; the purge stamp stays, and so does this object. */
        }
        return PX_COMMIT_PURGED;
    }
    px_tag_note(cache, tags, n_tags, okey, olen, store_ttl_ms);
    if (corral_get(cache, okey, olen, NULL, out) != CORRAL_OK) *out = NULL;
    return 0;
}

void px_obj_release(px_obj *o) {
    corral_value_unref(o->v);
    memset(o, 0, sizeof *o);
}
