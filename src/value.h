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

struct corral_value {
    uint32_t magic;
    _Atomic uint32_t refs;
    uint32_t hdr_len; /* bytes of the envelope header stored just before `data` (envelope.h) */
    /* Bytes at `data`, not counting the NUL that follows them. 32 bits: the memory store embeds
     * a value in every entry, and 8 bytes of the 32 are 8 bytes of every entry (values are
     * bounded far below 4 GiB: Redis's 512 MB, the memory store's budget). */
    uint32_t len;
    const unsigned char *data;        /* immutable; followed by a NUL */
    void (*release)(corral_value *v); /* frees the block that holds `v`, called at refs 0 */
};

/* Makes a standalone value: a copy of `data` (plus a NUL) in one block from `a`, refs = 1.
 * `a` must outlive the value. Returns NULL on allocation failure, or when len >= 4 GiB. */
corral_value *corral__value_new(const corral__allocator *a, const void *data, size_t len);

/* Initialises a value embedded in a larger block; refs = 1. len < 4 GiB. */
void corral__value_init(corral_value *v, const unsigned char *data, size_t len,
                        void (*release)(corral_value *v));

/* Takes a reference only if the value is still live (refs > 0); returns false otherwise.
 * Acquire on success. */
bool corral__value_tryref(corral_value *v);

#endif /* CORRAL_VALUE_H */
