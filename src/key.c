/*
 * key.c - Django's key scheme (default_key_func) and key validation (memcache_key_warnings,
 * refused instead of warned, as Django's memcached backends effectively do).
 *
 * Keys are built from a precomputed "prefix:version:" header; a per-call version is formatted on
 * the fly. No allocation. The read path does not build the key at all: key_hot.h checks the
 * user key a word at a time and hashes it in place.
 */
#include "key.h"

#include <string.h>
#include <xxhash.h>

/* Writes the decimal form of v into buf (at least 21 bytes); returns its length. */
static size_t format_i64(int64_t v, char *buf) {
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0) buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    buf[len] = '\0';
    return len;
}

void corral__keyscheme_init(corral__keyscheme *ks, const char *prefix, size_t prefix_len,
                            int64_t version, bool allow_binary, corral_key_fn fn, void *fn_ctx) {
    ks->prefix = prefix;
    ks->prefix_len = prefix_len;
    ks->version = version;
    ks->version_str_len = format_i64(version, ks->version_str);
    ks->allow_binary = allow_binary;
    ks->fn = fn;
    ks->fn_ctx = fn_ctx;
    ks->hdr_len = 0;
    ks->hdr_valid = false;
    if (prefix_len + ks->version_str_len + 2 <= sizeof ks->hdr) {
        char *p = ks->hdr;
        memcpy(p, prefix, prefix_len);
        p += prefix_len;
        *p++ = ':';
        memcpy(p, ks->version_str, ks->version_str_len);
        p += ks->version_str_len;
        *p++ = ':';
        ks->hdr_len = (size_t)(p - ks->hdr);
        ks->hdr_valid = corral__key_validate(ks->hdr, ks->hdr_len, allow_binary) == CORRAL_OK;
    }
    ks->hot = !fn && !allow_binary && ks->hdr_valid && ks->hdr_len <= CORRAL__HOT_HDR;
    ks->hdr_seed = XXH3_64bits(ks->hdr, ks->hdr_len);
    unsigned char word[16] = { 0 }, mask[16] = { 0 };
    for (size_t i = 0; i < ks->hdr_len && i < sizeof word; i++) {
        word[i] = (unsigned char)ks->hdr[i];
        mask[i] = 0xff;
    }
    memcpy(ks->hdr_word, word, sizeof word);
    memcpy(ks->hdr_mask, mask, sizeof mask);
}

int corral__key_validate(const void *key, size_t len, bool allow_binary) {
    /* Binary keys take every byte but 0x1f, which corral's own keys use as a separator (the
     * Redis store's lease keys: redis.c), so no user key can be one of them. */
    if (allow_binary)
        return len <= CORRAL__MAX_BINARY_KEY && !memchr(key, 0x1f, len) ? CORRAL_OK
                                                                        : CORRAL_EBADKEY;
    if (len > CORRAL__MAX_KEY) return CORRAL_EBADKEY;
    /* Django: ord(char) < 33 or ord(char) == 127; a word at a time (key.h). */
    return corral__key_bytes_ok_inline(key, len) ? CORRAL_OK : CORRAL_EBADKEY;
}

int corral__key_build(const corral__keyscheme *ks, int64_t version, const void *key, size_t key_len,
                      char *out, size_t cap, size_t *out_len) {
    *out_len = 0;
    if (!key && key_len) return CORRAL_EBADKEY;
    size_t limit = ks->allow_binary ? CORRAL__MAX_BINARY_KEY : CORRAL__MAX_KEY;
    if (cap < limit + 1) return CORRAL_EINVAL;
    char vbuf[24];
    const char *vs = ks->version_str;
    size_t vlen = ks->version_str_len;
    if (version != CORRAL_VERSION_DEFAULT && version != ks->version) {
        vlen = format_i64(version, vbuf);
        vs = vbuf;
    } else {
        version = ks->version;
    }
    size_t len;
    if (!ks->fn && vs == ks->version_str && ks->hdr_valid) {
        /* The hot path: the header is known good, so only the user key is checked. */
        if (key_len > limit || ks->hdr_len > limit - key_len) return CORRAL_EBADKEY;
        if (corral__key_validate(key, key_len, ks->allow_binary) != CORRAL_OK)
            return CORRAL_EBADKEY;
        memcpy(out, ks->hdr, ks->hdr_len);
        if (key_len) memcpy(out + ks->hdr_len, key, key_len);
        len = ks->hdr_len + key_len;
        out[len] = '\0';
        *out_len = len;
        return CORRAL_OK;
    }
    if (ks->fn) {
        int rc = ks->fn(ks->fn_ctx, ks->prefix, ks->prefix_len, version, key, key_len, out,
                        limit + 1, &len);
        if (rc != CORRAL_OK || len > limit) return CORRAL_EBADKEY;
    } else {
        /* Checked before any write: prefix + ':' + version + ':' + key must fit the limit. */
        if (key_len > limit || ks->prefix_len + vlen + 2 > limit - key_len) return CORRAL_EBADKEY;
        char *p = out;
        memcpy(p, ks->prefix, ks->prefix_len);
        p += ks->prefix_len;
        *p++ = ':';
        memcpy(p, vs, vlen);
        p += vlen;
        *p++ = ':';
        if (key_len) memcpy(p, key, key_len);
        len = ks->prefix_len + vlen + 2 + key_len;
    }
    out[len] = '\0';
    int rc = corral__key_validate(out, len, ks->allow_binary);
    if (rc != CORRAL_OK) return rc;
    *out_len = len;
    return CORRAL_OK;
}

/* The length of the header of a physical key (corral__key_hash), 0 when it has none. */
static size_t header_len(const corral__keyscheme *ks, const char *k, size_t len) {
    size_t p = ks->prefix_len;
    if (ks->fn || len <= p || k[p] != ':' || (p && memcmp(k, ks->prefix, p) != 0)) return 0;
    const char *colon = memchr(k + p + 1, ':', len - p - 1);
    return colon ? (size_t)(colon - k) + 1 : 0;
}

uint64_t corral__key_hash(const corral__keyscheme *ks, const void *key, size_t len) {
    const char *k = key;
    size_t h = header_len(ks, k, len);
    if (h == 0) return XXH3_64bits(k, len);
    uint64_t seed =
        h == ks->hdr_len && memcmp(k, ks->hdr, h) == 0 ? ks->hdr_seed : XXH3_64bits(k, h);
    return XXH3_64bits_withSeed(k + h, len - h, seed);
}

uint64_t corral__hash_bytes(const void *key, size_t len) {
    return XXH3_64bits(key, len);
}

uint64_t corral__key_hash_of(const void *ks, const void *key, size_t len) {
    return ks ? corral__key_hash(ks, key, len) : XXH3_64bits(key, len);
}

size_t corral__key_metric_prefix(const void *key, size_t len) {
    static const char frag[] = "template.cache.";
    const size_t frag_len = sizeof frag - 1;
    const char *k = key;
    if (len > frag_len && memcmp(k, frag, frag_len) == 0) {
        /* template.cache.<name>.<md5>: the name may itself hold dots; the digest never does. */
        for (size_t i = len; i > frag_len; i--) {
            if (k[i - 1] == '.') return i - 1;
        }
        return len;
    }
    const char *colon = memchr(k, ':', len);
    return colon ? (size_t)(colon - k) : len;
}
