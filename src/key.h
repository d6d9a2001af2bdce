/*
 * key.h - Django's key scheme and key validation.
 *
 * Physical key: KEY_PREFIX ":" VERSION ":" key (Django's default_key_func), or what the user's
 * key function returns. Validation follows Django's memcache_key_warnings, refused instead of
 * warned: at most 250 bytes, no byte in 0x00-0x20 or 0x7f. Binary keys (an option of the memory
 * store) skip the byte check and allow up to CORRAL__MAX_BINARY_KEY bytes.
 */
#ifndef CORRAL_KEY_H
#define CORRAL_KEY_H

#include "common.h"

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

/* The metrics prefix of a user key: up to the first ':'; for a fragment key
 * "template.cache.<name>.<md5>", "template.cache.<name>". Returns its length. */
size_t corral__key_metric_prefix(const void *key, size_t len);

#endif /* CORRAL_KEY_H */
