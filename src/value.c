/*
 * value.c - standalone refcounted values and the public value accessors.
 * See value.h for the model. A standalone value is one block: header, bytes, NUL.
 */
#include "value.h"

#include <string.h>

static void value_block_release(corral_value *v) {
    corral__value_block *b = CORRAL_CONTAINER_OF(v, corral__value_block, v);
    corral__value_kill(v);
    corral__free(b->alloc, b, b->block_bytes);
}

static void (*const releases[CORRAL__RELEASES])(corral_value *v) = {
    [CORRAL__RELEASE_BLOCK] = value_block_release,
    [CORRAL__RELEASE_MEM_ENTRY] = corral__mem_entry_release,
    [CORRAL__RELEASE_REDIS_REPLY] = corral__redis_reply_release,
};

void corral__value_init(corral_value *v, size_t len, unsigned release) {
#ifndef NDEBUG
    v->magic = CORRAL_VALUE_MAGIC;
#endif
    atomic_init(&v->refs, 1);
    v->hdr_len = 0;
    assert(len <= UINT32_MAX);
    v->len = (uint32_t)len;
    assert(release < CORRAL__RELEASES);
    v->release = (uint8_t)release;
    atomic_init(&v->owner, 0);
}

corral_value *corral__value_new(const corral__allocator *a, const void *data, size_t len) {
    if (len > UINT32_MAX) return NULL; /* corral_value.len */
    size_t bytes = sizeof(corral__value_block) + len + 1;
    corral__value_block *b = corral__alloc(a, bytes);
    if (!b) return NULL;
    if (len) memcpy(b->stored, data, len);
    b->stored[len] = '\0';
    b->alloc = a;
    b->block_bytes = bytes;
    corral__value_init(&b->v, len, CORRAL__RELEASE_BLOCK);
    return &b->v;
}

corral__ref corral__value_tryref(corral_value *v) {
    uint32_t r = atomic_load_explicit(&v->refs, memory_order_relaxed);
    for (;;) {
        if (!(r & CORRAL__REFS_COUNT)) return CORRAL__REF_BUSY;
        if ((r & CORRAL__REFS_COUNT) >= CORRAL__REFS_FULL) return CORRAL__REF_FULL;
        /* acquire: a store that rewrites a value while it holds the only reference (the
         * memory store's overwrite in place) releases it with a store of refs. */
        if (atomic_compare_exchange_weak_explicit(&v->refs, &r, r + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return CORRAL__REF_TAKEN;
    }
}

corral_value *corral__value_new_env(const corral__allocator *a, const void *bytes, size_t hdr,
                                    size_t len) {
    corral_value *c = corral__value_new(a, bytes, hdr + len);
    if (!c) return NULL;
    c->len = (uint32_t)len;
    c->hdr_len = (uint16_t)hdr;
    return c;
}

corral_value *corral__value_copy(const corral__allocator *a, const corral_value *v) {
    const unsigned char *data = corral__value_data(v);
    return corral__value_new_env(a, data - v->hdr_len, v->hdr_len, v->len);
}

const void *corral_value_data(const corral_value *v) {
    CORRAL_CHECK_OBJ(v, CORRAL_VALUE_MAGIC);
    return corral__value_data(v);
}

size_t corral_value_len(const corral_value *v) {
    CORRAL_CHECK_OBJ(v, CORRAL_VALUE_MAGIC);
    return v->len;
}

corral_value *corral_value_ref(corral_value *v) {
    CORRAL_CHECK_OBJ(v, CORRAL_VALUE_MAGIC);
    uint32_t r = atomic_load_explicit(&v->refs, memory_order_relaxed);
    while ((r & CORRAL__REFS_COUNT) < CORRAL__REFS_FULL)
        if (atomic_compare_exchange_weak_explicit(&v->refs, &r, r + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return v;
    /* The count is full: a copy, which the caller's own reference keeps whole while it is
     * made (no overwrite in place runs while a reference is out). From libc: this call has no
     * handle, and only a caller holding 16 million references on one value gets here. */
    corral_value *c = corral__value_copy(&corral__libc_allocator, v);
    CORRAL_MUST(c != NULL); /* the API returns a reference: out of memory here is fatal */
    return c;
}

void corral_value_unref(corral_value *v) {
    if (!v) return;
    CORRAL_CHECK_OBJ(v, CORRAL_VALUE_MAGIC);
    /* acq_rel: the last holder must see every other holder's reads finished before freeing. */
    uint32_t r = atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel);
    assert(r & CORRAL__REFS_COUNT);
    if ((r & CORRAL__REFS_COUNT) != 1) return;
    /* An index out of the table is a corrupted value: asserted in debug builds; in release
     * builds the block leaks rather than a call through whatever lies past the table. */
    if (CORRAL_NEVER(v->release >= CORRAL__RELEASES)) return;
    releases[v->release](v);
}
