/*
 * key_hot.h - the read path's key check and hash, inline. Included by the memory store's read
 * path (store/memory_read.h) so that a get's hash, lookup and key check are one function: each
 * instruction a get saves lets the CPU overlap more of the next get's cache misses with this
 * one's (docs/eviction.md).
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

/* The read path's hash of a user key of a scheme with `hot` set (key.h), at the scheme's own
 * version, without building the key: hashes it as corral__key_hash hashes ks->hdr followed by
 * the key, from the caller's bytes. False when corral__key_build refuses the key for its
 * length (or a NULL key of nonzero length); its bytes are not checked here: a key the read path
 * finds in the table passed corral__key_bytes_ok_inline when it was stored, so only a key not
 * found needs that check (store/memory_read.h, hot_miss). */
static inline bool corral__key_hash_hot_inline(const corral__keyscheme *ks, const void *key,
                                               size_t key_len, uint64_t *hash) {
    if (key_len > CORRAL__MAX_KEY - ks->hdr_len || (!key && key_len)) return false;
    *hash = XXH3_64bits_withSeed(key, key_len, ks->hdr_seed);
    return true;
}

/* True when no byte of the user key is refused (0x00 to 0x20, 0x7f): with
 * corral__key_hash_hot_inline, exactly corral__key_build's verdict on a hot scheme's key. */
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

#endif /* CORRAL_KEY_HOT_H */
