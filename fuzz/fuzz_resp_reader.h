/*
 * fuzz_resp_reader.h - the hiredis reader the Redis fuzz targets feed (fuzz_redis_slots.c,
 * fuzz_near_invalidation.c): hiredis's own reader, but one that refuses an array header over
 * FUZZ_MAX_ARRAY elements as a failed allocation.
 *
 * Why: hiredis 0.14.1 allocates an array's element table at once from its header (8 bytes an
 * element, up to 2^31 of them: 16 GiB). In production that calloc fails or only reserves
 * address space; under ASan it costs gigabytes of shadow and libFuzzer stops with out-of-memory.
 * Refused, it is a protocol error, as a store connection would see it; a real server's replies
 * are far below the bound. docs/fuzzing.md records it. One binary per target, so the statics
 * below are each target's own.
 */
#ifndef CORRAL_FUZZ_RESP_READER_H
#define CORRAL_FUZZ_RESP_READER_H

#include <hiredis/hiredis.h>

#define FUZZ_MAX_ARRAY (1 << 20)

static redisReplyObjectFunctions fuzz_bounded; /* hiredis's own, but createArray */
static void *(*fuzz_create_array_default)(const redisReadTask *, int);

static void *fuzz_create_array(const redisReadTask *t, int elements) {
    return elements > FUZZ_MAX_ARRAY ? NULL : fuzz_create_array_default(t, elements);
}

/* A new reader with the bound; NULL when out of memory. Free with redisReaderFree. */
static redisReader *fuzz_reader_create(void) {
    redisReader *rd = redisReaderCreate();
    if (!rd) return NULL;
    if (!fuzz_create_array_default) {
        fuzz_bounded = *rd->fn;
        fuzz_create_array_default = fuzz_bounded.createArray;
        fuzz_bounded.createArray = fuzz_create_array;
    }
    rd->fn = &fuzz_bounded;
    return rd;
}

#endif /* CORRAL_FUZZ_RESP_READER_H */
