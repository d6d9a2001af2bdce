/*
 * key.h - Django's key scheme and key validation.
 *
 * Physical key: KEY_PREFIX ":" VERSION ":" key (Django's default_key_func), or what the user's
 * key function returns. Validation follows Django's memcache_key_warnings, refused instead of
 * warned: at most 250 bytes, no byte in 0x00-0x20 or 0x7f. Binary keys (the binary_keys option)
 * allow every byte but 0x1f (corral's own separator) and up to CORRAL__MAX_BINARY_KEY bytes.
 */
#ifndef CORRAL_KEY_H
#define CORRAL_KEY_H

#include "common.h"

#include <string.h>

#define CORRAL__MAX_KEY        250
#define CORRAL__MAX_BINARY_KEY 4096
/* Room for any physical key plus a NUL. */
#define CORRAL__KEYBUF (CORRAL__MAX_BINARY_KEY + 1)

typedef struct corral__keyscheme {
    const char *prefix; /* KEY_PREFIX, owned by the handle */
    size_t prefix_len;
    int64_t version;      /* the handle's VERSION */
    char version_str[24]; /* its decimal form, precomputed for the hot path */
    size_t version_str_len;
    bool allow_binary;
    corral_key_fn fn; /* NULL: Django's default */
    void *fn_ctx;
    /* "prefix:version:" for the handle's version, built once: the hot path copies it and the
     * user key, and validates only the user key's bytes when the header itself is valid. */
    char hdr[CORRAL__MAX_KEY + 24];
    size_t hdr_len;
    bool hdr_valid; /* the header passes validation on its own (no bad byte) */
    /* corral__key_check_hot_inline (key_hot.h) applies: Django's function, text keys, a valid
     * header of at most CORRAL__HOT_HDR bytes. */
    bool hot;
    uint64_t hdr_seed; /* corral__key_hash's seed for `hdr`: XXH3 of its bytes */
    /* A hot scheme's header as two words in the machine's byte order, and masks of its bytes
     * (zero past hdr_len): the read path compares a stored key's first 16 bytes with them. */
    uint64_t hdr_word[2], hdr_mask[2];
} corral__keyscheme;

/* The longest "prefix:version:" header the hot path copies as one fixed block. */
#define CORRAL__HOT_HDR 16

/* Fills `ks`; `prefix` is borrowed and must outlive it. */
void corral__keyscheme_init(corral__keyscheme *ks, const char *prefix, size_t prefix_len,
                            int64_t version, bool allow_binary, corral_key_fn fn, void *fn_ctx);

/* Builds the physical key of `key` at `version` (CORRAL_VERSION_DEFAULT for the scheme's) into
 * `out` (capacity `cap`, at least CORRAL__KEYBUF), NUL-terminated, and validates it. Returns
 * CORRAL_OK or CORRAL_EBADKEY. */
int corral__key_build(const corral__keyscheme *ks, int64_t version, const void *key, size_t key_len,
                      char *out, size_t cap, size_t *out_len);

/* Validates a physical key: CORRAL_OK or CORRAL_EBADKEY. */
int corral__key_validate(const void *key, size_t len, bool allow_binary);

/* The hash of a physical key, the one every store and table of a handle uses. A key of Django's
 * scheme splits into its header, KEY_PREFIX ':' VERSION ':' (up to the first ':' after
 * "KEY_PREFIX:"), and the rest; the hash is XXH3 of the rest seeded with XXH3 of the header.
 * So the read path hashes the caller's own key bytes with the handle's precomputed seed and
 * never reads back the key it has just built (a load spanning two fresh stores cannot be
 * forwarded from them, and waits for them to retire: it would tie each get to the one before).
 * A key with no such header (a scheme with a key function, a key outside KEY_PREFIX) is hashed
 * whole, with seed 0: plain XXH3. A pure function of the scheme and the bytes, so any layer
 * that meets a physical key (the near cache's invalidations) hashes it the same way. */
uint64_t corral__key_hash(const corral__keyscheme *ks, const void *key, size_t len);

/* XXH3 of `len` bytes: a store-level hash for keys that belong to no scheme (tests). */
uint64_t corral__hash_bytes(const void *key, size_t len);

/* A key hash with a context: what a store that recomputes its keys' hashes is given
 * (memory.h). corral__key_hash_of is corral__key_hash with the scheme as its context; with a
 * NULL context, corral__hash_bytes. */
typedef uint64_t (*corral__key_hash_fn)(const void *ctx, const void *key, size_t len);
uint64_t corral__key_hash_of(const void *ks, const void *key, size_t len);

/* The metrics prefix of a user key: up to the first ':'; for a fragment key
 * "template.cache.<name>.<md5>", "template.cache.<name>". Returns its length. */
size_t corral__key_metric_prefix(const void *key, size_t len);

/* Word-at-a-time key checks (the "haszero" and "hasless" tricks of Anderson's Bit Twiddling
 * Hacks): nonzero iff some byte of `w` is below 0x21 or equals 0x7f. Exact as a boolean; the
 * position of the flagged bit is not used. */
static inline uint64_t corral__bad_bytes64(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t d = w ^ (ones * 0x7f);
    return ((w - ones * 0x21) & ~w & high) | ((d - ones) & ~d & high);
}

static inline uint32_t corral__bad_bytes32(uint32_t w) {
    const uint32_t ones = 0x01010101u, high = 0x80808080u;
    uint32_t d = w ^ (ones * 0x7f);
    return ((w - ones * 0x21) & ~w & high) | ((d - ones) & ~d & high);
}

/* True when no byte of the key is refused (0x00 to 0x20, 0x7f): corral__key_validate's rule
 * for text keys, inline for the read path, which checks a key it did not find with it (with
 * corral__key_hash_hot_inline, exactly corral__key_build's verdict on a hot scheme's key). */
static inline bool corral__key_bytes_ok_inline(const void *key, size_t key_len) {
    const unsigned char *k = key;
    if (key_len >= 8) {
        uint64_t bad = 0, w;
        for (size_t i = 0; i + 8 < key_len; i += 8) {
            memcpy(&w, k + i, 8);
            bad |= corral__bad_bytes64(w);
        }
        memcpy(&w, k + key_len - 8, 8); /* the last 8 bytes, overlapping the previous word */
        return !(bad | corral__bad_bytes64(w));
    }
    if (key_len >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, k, 4);
        memcpy(&hi, k + key_len - 4, 4);
        return !(corral__bad_bytes32(lo) | corral__bad_bytes32(hi));
    }
    for (size_t i = 0; i < key_len; i++)
        if (k[i] <= 0x20 || k[i] == 0x7f) return false;
    return true;
}

#endif /* CORRAL_KEY_H */
