/*
 * key_hot.h - the read path's hash, inline. Included by the memory store's read
 * path (store/memory_read.h) so that a get's hash, lookup and key check are one function: each
 * instruction a get saves lets the CPU overlap more of the next get's cache misses with this
 * one's (docs/eviction.md). The access layer builds a write's key with it too (access.c,
 * hot_skey): checked, hashed and copied in one pass over the caller's bytes.
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

#endif /* CORRAL_KEY_HOT_H */
