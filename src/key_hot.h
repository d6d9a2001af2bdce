/*
 * key_hot.h - a hot scheme's key hash and key, inline. Included by the memory store's read
 * path (store/memory_read.h) so that a get's hash, lookup and key check are one function: each
 * instruction a get saves lets the CPU overlap more of the next get's cache misses with this
 * one's (docs/eviction.md). The access layer builds the other calls' store keys with it
 * (access.c, make_skey): checked, hashed and copied in one pass over the caller's bytes.
 *
 * XXH3 is compiled in (XXH_INLINE_ALL): the same function as libxxhash's.
 */
#ifndef CORRAL_KEY_HOT_H
#define CORRAL_KEY_HOT_H

#include "key.h"

#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

/* The read path's hash of a user key of a scheme with `hot` set (key.h), at the scheme's own
 * version, without building the key: hashes it as corral__key_hash hashes ks->hdr followed by
 * the key, from the caller's bytes. False when corral__key_build refuses the key for its
 * length (or a NULL key of nonzero length); its bytes are not checked here: a key the read path
 * finds in the table passed corral__key_bytes_ok_inline when it was stored, so only a key not
 * found needs that check (store/memory_read.h, hot_end). */
static inline bool corral__key_hash_hot_inline(const corral__keyscheme *ks, const void *key,
                                               size_t key_len, uint64_t *hash) {
    if (key_len > CORRAL__MAX_KEY - ks->hdr_len || (!key && key_len)) return false;
    *hash = XXH3_64bits_withSeed(key, key_len, ks->hdr_seed);
    return true;
}

/* The second half of corral__key_build_hot_inline (below), for a caller that hashed `key` with
 * corral__key_hash_hot_inline already: checks its bytes, then copies the header as one
 * CORRAL__HOT_HDR-byte block and the key after it into `out` (at least CORRAL__KEYBUF bytes),
 * NUL-terminated. CORRAL_OK, or CORRAL_EBADKEY with nothing written. */
static inline __attribute__((always_inline)) int
corral__key_copy_hot_inline(const corral__keyscheme *ks, const void *key, size_t key_len, char *out,
                            size_t *out_len) {
    if (!corral__key_bytes_ok_inline(key, key_len)) return CORRAL_EBADKEY;
    memcpy(out, ks->hdr, CORRAL__HOT_HDR);
    if (key_len) memcpy(out + ks->hdr_len, key, key_len);
    out[ks->hdr_len + key_len] = '\0';
    *out_len = ks->hdr_len + key_len;
    return CORRAL_OK;
}

/* corral__key_build and corral__key_hash of `key` under a hot scheme at its own version, in one
 * pass over the caller's bytes: the length and bytes checked and the key hashed where the
 * caller has it, then the header copied as one CORRAL__HOT_HDR-byte block and the key after it
 * into `out` (at least CORRAL__KEYBUF bytes), NUL-terminated. The same key, length, hash and
 * verdict (CORRAL_OK or CORRAL_EBADKEY) as theirs; tests/unit/test_access.c checks it against
 * them. */
static inline __attribute__((always_inline)) int
corral__key_build_hot_inline(const corral__keyscheme *ks, const void *key, size_t key_len,
                             char *out, size_t *out_len, uint64_t *hash) {
    if (!corral__key_hash_hot_inline(ks, key, key_len, hash)) return CORRAL_EBADKEY;
    return corral__key_copy_hot_inline(ks, key, key_len, out, out_len);
}

#endif /* CORRAL_KEY_HOT_H */
