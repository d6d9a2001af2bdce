/*
 * key_hot.h - the read path's key check and hash, inline. Included by the memory store's hot
 * read (memory.c, corral__mem_get_into_hot) so that a get's key check, hash and lookup are one
 * function: each instruction a get saves lets the CPU overlap more of the next get's cache
 * misses with this one's (docs/eviction.md).
 *
 * XXH3 is compiled in (XXH_INLINE_ALL): the same function as libxxhash's.
 */
#ifndef CORRAL_KEY_HOT_H
#define CORRAL_KEY_HOT_H

#include "key.h"

#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

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

/* The read path's corral__key_build, for a scheme with `hot` set (key.h), at the scheme's own
 * version, without building the key: checks the user key's bytes a word at a time and hashes
 * it as corral__key_hash hashes ks->hdr followed by the key, from the caller's bytes. Returns
 * CORRAL_OK or CORRAL_EBADKEY, exactly as corral__key_build does for the same key. */
static inline int corral__key_check_hot_inline(const corral__keyscheme *ks, const void *key,
                                               size_t key_len, uint64_t *hash) {
    if (key_len > CORRAL__MAX_KEY - ks->hdr_len || (!key && key_len)) return CORRAL_EBADKEY;
    const unsigned char *k = key;
    if (key_len >= 8) {
        uint64_t bad = 0, w;
        for (size_t i = 0; i + 8 < key_len; i += 8) {
            memcpy(&w, k + i, 8);
            bad |= corral__bad_bytes64(w);
        }
        memcpy(&w, k + key_len - 8, 8); /* the last 8 bytes, overlapping the previous word */
        if (bad | corral__bad_bytes64(w)) return CORRAL_EBADKEY;
    } else if (key_len >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, k, 4);
        memcpy(&hi, k + key_len - 4, 4);
        if (corral__bad_bytes32(lo) | corral__bad_bytes32(hi)) return CORRAL_EBADKEY;
    } else {
        for (size_t i = 0; i < key_len; i++)
            if (k[i] <= 0x20 || k[i] == 0x7f) return CORRAL_EBADKEY;
    }
    *hash = XXH3_64bits_withSeed(key, key_len, ks->hdr_seed);
    return CORRAL_OK;
}

#endif /* CORRAL_KEY_HOT_H */
