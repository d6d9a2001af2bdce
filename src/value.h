/*
 * value.h - the immutable, refcounted byte string behind `corral_value`.
 *
 * A value's bytes never change after it is published. `refs` counts the holders: a store that
 * keeps the value (one reference) and every caller that got it from a get. The last unref calls
 * `release`, which frees the block holding the value; a store may embed the value in its own
 * entry (the memory store does: a hit hands out the stored bytes without a copy).
 *
 * Threads: ref/unref are atomic; everything else is immutable after publication.
 */
#ifndef CORRAL_VALUE_H
#define CORRAL_VALUE_H

#include "common.h"

#include <stdatomic.h>

#define CORRAL_VALUE_MAGIC 0x7a1e0b1du

/* Which function frees the block that holds a value (corral_value.release): one per kind of
 * block the library makes. An index, not a pointer: 1 byte of the 24, where a pointer took 8
 * of every memory store entry (docs/memory-density.md). */
enum {
    CORRAL__RELEASE_BLOCK = 0,       /* value.c: a standalone value (corral__value_new) */
    CORRAL__RELEASE_MEM_ENTRY = 1,   /* memory_rcu.c: an entry of the memory store */
    CORRAL__RELEASE_REDIS_REPLY = 2, /* redis_many.c: a value in an MGET reply */
    CORRAL__RELEASES = 3
};

struct corral_value {
    uint32_t magic;
    _Atomic uint32_t refs;
    /* Bytes at `data`, not counting the NUL that follows them. 32 bits: values are bounded far
     * below 4 GiB (Redis's 512 MB, the memory store's budget). */
    uint32_t len;
    /* Bytes of the envelope header stored just before `data` (envelope.h): 16 bits, as the
     * envelope's own length field. */
    uint16_t hdr_len;
    uint8_t release; /* CORRAL__RELEASE_*: frees the block that holds `v`, called at refs 0 */
    /* A byte for the store that embeds the value, in what would be padding (the memory store
     * keeps its entry's hit mark there); 0 and unused elsewhere. */
    _Atomic uint8_t owner;
    const unsigned char *data; /* immutable; followed by a NUL */
};

/* Makes a standalone value: a copy of `data` (plus a NUL) in one block from `a`, refs = 1.
 * `a` must outlive the value. Returns NULL on allocation failure, or when len >= 4 GiB. */
corral_value *corral__value_new(const corral__allocator *a, const void *data, size_t len);

/* Initialises a value embedded in a larger block, freed at refs 0 by `release`
 * (CORRAL__RELEASE_*); refs = 1, hdr_len = 0. len < 4 GiB. */
void corral__value_init(corral_value *v, const unsigned char *data, size_t len, unsigned release);

/* Takes a reference only if the value is still live (refs > 0); returns false otherwise.
 * Acquire on success. */
bool corral__value_tryref(corral_value *v);

/* The release functions of the blocks of the memory store and the Redis store, which
 * corral_value_unref calls through `release`. */
void corral__mem_entry_release(corral_value *v);
void corral__redis_reply_release(corral_value *v);

#endif /* CORRAL_VALUE_H */
