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
 * block the library makes, and so where the value's bytes are (corral__value_data). An index,
 * not a pointer: 1 byte, where a pointer took 8 of every memory store entry
 * (docs/memory-density.md). */
enum {
    CORRAL__RELEASE_BLOCK = 0,       /* value.c: a standalone value (corral__value_new) */
    CORRAL__RELEASE_MEM_ENTRY = 1,   /* memory_rcu.c: an entry of the memory store */
    CORRAL__RELEASE_REDIS_REPLY = 2, /* redis_many.c: a value in an MGET reply */
    CORRAL__RELEASES = 3
};

/* 12 bytes in release builds, 16 with the debug `magic`: the memory store embeds one in every
 * entry (docs/memory-density.md). The bytes are not pointed at: corral__value_data finds them
 * from `release`, which says what block holds the value and so where its bytes are. */
struct corral_value {
#ifndef NDEBUG
    uint32_t magic; /* CORRAL_VALUE_MAGIC; debug builds only: only CORRAL_CHECK_OBJ reads it */
#endif
    /* The count of references in the CORRAL__REFS_COUNT bits; above them a generation, which
     * only the memory store's overwrite in place moves (memory_read.h). */
    _Atomic uint32_t refs;
    /* Bytes at corral__value_data, not counting the NUL that follows them. 32 bits: values are
     * bounded far below 4 GiB (Redis's 512 MB, the memory store's budget). */
    uint32_t len;
    /* Bytes of the envelope header stored just before the bytes (envelope.h): 16 bits, as the
     * envelope's own length field. */
    uint16_t hdr_len;
    uint8_t release; /* CORRAL__RELEASE_*: frees the block that holds `v`, called at refs 0 */
    /* A byte for the store that embeds the value, in what would be padding (the memory store
     * keeps its entry's hit mark there); 0 and unused elsewhere. */
    _Atomic uint8_t owner;
};
/* corral_value.refs. The count holds one reference for the store that keeps the value and one
 * for each reference handed out and not yet released (get, get_many, corral_value_ref). It
 * never passes CORRAL__REFS_FULL, so it never carries into the generation: past it, a store's
 * get (corral__value_tryref) and corral_value_ref hand out a copy of the value instead of
 * another reference. The generation is 0 but in the memory store's entries, each of which moves
 * it at most to its last value (memory_read.h, "Overwrites in place"). */
#define CORRAL__REFS_COUNT   0x00ffffffu
#define CORRAL__REFS_GEN_ONE 0x01000000u /* the generation's unit */
#define CORRAL__REFS_FULL    (CORRAL__REFS_COUNT - 0xffffu)
#ifdef NDEBUG
_Static_assert(sizeof(corral_value) == 12, "the value docs/memory-density.md counts");
#else
_Static_assert(sizeof(corral_value) == 16, "12 and the debug magic");
#endif

/* CORRAL__RELEASE_BLOCK: a standalone value, one block (value.c): the value, the header, the
 * bytes, a NUL. */
typedef struct corral__value_block {
    corral_value v;
    const corral__allocator *alloc; /* frees the block; must outlive the value */
    size_t block_bytes;
    unsigned char stored[]; /* hdr_len header bytes, then len bytes and a NUL */
} corral__value_block;

/* CORRAL__RELEASE_REDIS_REPLY: a value whose bytes are elsewhere (in a hiredis reply), which
 * keeps a pointer to them beside it. */
typedef struct corral__value_at {
    corral_value v;
    const unsigned char *data; /* the bytes (after the header); followed by a NUL */
} corral__value_at;

/* CORRAL__RELEASE_MEM_ENTRY: the memory store's entry (memory_read.h, mem_entry) holds,
 * CORRAL__MEM_KW_TO_VAL bytes before its value, the 16-bit word whose low bits are the key's
 * length, and right after the value the key, the header and the bytes. The offsets, which
 * memory_read.h asserts. */
#define CORRAL__MEM_KW_TO_VAL  16
#define CORRAL__MEM_VAL_TO_KEY sizeof(corral_value)
#define CORRAL__MEM_KLEN_MASK  0x1fffu

/* The bytes of `v` (len of them, then a NUL); its envelope header is the hdr_len bytes before
 * them. Immutable while the caller holds a reference. Inline: every read of a value's bytes goes
 * through it, the memory store's hits included. */
static inline const unsigned char *corral__value_data(const corral_value *v) {
    const unsigned char *p = (const unsigned char *)v;
    switch (v->release) {
    case CORRAL__RELEASE_MEM_ENTRY: {
        /* The key's length bits are immutable; the word's other bits change under the store's
         * lock, hence the atomic load. */
        unsigned kw = atomic_load_explicit((const _Atomic uint16_t *)(p - CORRAL__MEM_KW_TO_VAL),
                                           memory_order_relaxed);
        return p + CORRAL__MEM_VAL_TO_KEY + (kw & CORRAL__MEM_KLEN_MASK) + v->hdr_len;
    }
    case CORRAL__RELEASE_BLOCK: return ((const corral__value_block *)p)->stored + v->hdr_len;
    case CORRAL__RELEASE_REDIS_REPLY: return ((const corral__value_at *)p)->data;
    default: assert(!"corral__value_data: an unknown release kind"); return NULL;
    }
}

/* The envelope header of `v` (hdr_len bytes, none when 0), just before its bytes. */
static inline const unsigned char *corral__value_hdr(const corral_value *v) {
    return corral__value_data(v) - v->hdr_len;
}

/* Marks a value freed for CORRAL_CHECK_OBJ (debug builds); nothing in release builds. */
static inline void corral__value_kill(corral_value *v) {
#ifndef NDEBUG
    v->magic = 0;
#else
    (void)v;
#endif
}

/* Makes a standalone value: a copy of `data` (plus a NUL) in one block from `a`, refs = 1.
 * `a` must outlive the value. Returns NULL on allocation failure, or when len >= 4 GiB. */
corral_value *corral__value_new(const corral__allocator *a, const void *data, size_t len);

/* corral__value_new of the `hdr + len` bytes at `bytes`, the first `hdr` an envelope header
 * (hdr_len), the rest the value's bytes (len). */
corral_value *corral__value_new_env(const corral__allocator *a, const void *bytes, size_t hdr,
                                    size_t len);

/* Initialises a value embedded in a larger block, freed at refs 0 by `release`
 * (CORRAL__RELEASE_*), which also says where its bytes are (corral__value_data); refs = 1,
 * hdr_len = 0. len < 4 GiB. */
void corral__value_init(corral_value *v, size_t len, unsigned release);

/* What corral__value_tryref did. */
typedef enum corral__ref {
    CORRAL__REF_TAKEN, /* a reference, acquired */
    CORRAL__REF_BUSY,  /* none: the count is 0 (the memory store rewrites the value in place) */
    CORRAL__REF_FULL   /* none: the count is at CORRAL__REFS_FULL; hand out a copy */
} corral__ref;

/* Takes a reference only if the value is still live (its count is not 0) and the count is
 * below CORRAL__REFS_FULL. */
corral__ref corral__value_tryref(corral_value *v);

/* A standalone copy of `v`, its envelope header included, from `a`; NULL when `a` fails. The
 * caller keeps `v`'s bytes from changing (a reference, or the memory store's generation check
 * around the copy). */
corral_value *corral__value_copy(const corral__allocator *a, const corral_value *v);

/* The release functions of the blocks of the memory store and the Redis store, which
 * corral_value_unref calls through `release`. */
void corral__mem_entry_release(corral_value *v);
void corral__redis_reply_release(corral_value *v);

#endif /* CORRAL_VALUE_H */
