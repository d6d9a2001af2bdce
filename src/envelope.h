/*
 * envelope.h - the small header corral puts in front of a value that needs metadata.
 *
 * Layout (little-endian):
 *   [0] 0xC7 magic   [1] format 1   [2] flags   [3..4] header length (u16, this header's bytes)
 *   flags & CORRAL__ENV_TIMES: [u64 logical expiry, Unix ms; 0 = never] [u32 producer time, ms]
 *                              [u32 XFetch lead, ms: refresh from expiry - lead on]
 *   flags & CORRAL__ENV_TAGS:  [u8 n] n x ([u8 name length] name [u8 version length] version)
 *   then the payload.
 * Tag versions are decimal ASCII, as the store keeps them (plain integers on Redis, so a
 * server-side script can compare them as strings).
 *
 * A value needs no envelope when it has no metadata: it is stored raw, byte for byte, so
 * integers stay INCR-able and other clients read what they wrote. A raw value that would begin
 * with the magic byte gets an empty envelope, so every value corral writes parses one way.
 * Values written by other clients that happen to begin with a valid envelope are the one
 * ambiguity; they are read as enveloped.
 *
 * This layout has a second parser, in Lua, in the Redis store's CHECKED script (store/redis.c),
 * so a tagged read is one round trip. docs/invalidation.md says why; test_redis_tags.c holds the
 * two to the same decisions on every value of fuzz/corpus/fuzz_envelope.
 */
#ifndef CORRAL_ENVELOPE_H
#define CORRAL_ENVELOPE_H

#include "common.h"

#define CORRAL__ENV_MAGIC    0xC7
#define CORRAL__ENV_FORMAT   1
#define CORRAL__ENV_TIMES    0x01
#define CORRAL__ENV_TAGS     0x02
#define CORRAL__ENV_MAX_TAGS 32
#define CORRAL__ENV_MAX_TAG  200
#define CORRAL__ENV_MIN      5
/* A header with times and no tags, what the fast paths copy out. */
#define CORRAL__ENV_SMALL 21
/* Bytes of the times block. */
#define CORRAL__ENV_TIMES_LEN 16

typedef struct corral__env_tag {
    const char *name;
    size_t name_len;
    const char *version; /* decimal ASCII */
    size_t version_len;
} corral__env_tag;

typedef struct corral__env {
    uint8_t flags;
    uint64_t expiry_ms; /* with CORRAL__ENV_TIMES; 0 = never */
    uint32_t delta_ms;  /* with CORRAL__ENV_TIMES */
    /* With CORRAL__ENV_TIMES: how long before the expiry a reader refreshes early. XFetch draws
     * it once, when the value is written (delta * beta * -ln(rand)), so every reader, in every
     * process, agrees on one refresh point per value whatever the traffic. */
    uint32_t early_ms;
    size_t n_tags;
    corral__env_tag tags[CORRAL__ENV_MAX_TAGS];
} corral__env;

/* The header length of a stored value: 0 when it has no (valid) envelope. O(1): it checks the
 * magic, format, flags and length, not the tags. */
size_t corral__env_hdr_len(const void *bytes, size_t len);

/* Parses a header (of corral__env_hdr_len bytes). Returns CORRAL_OK or CORRAL_EINVAL when the
 * header is malformed. Tag names and versions point into `hdr`. */
int corral__env_parse(const void *hdr, size_t hdr_len, corral__env *out);

/* Bytes the header of `env` takes (CORRAL__ENV_MIN and up). */
size_t corral__env_size(const corral__env *env);

/* Writes the header of `env` into `out` (corral__env_size bytes). */
void corral__env_write(const corral__env *env, unsigned char *out);

/* True when a raw value must be wrapped in an (empty) envelope to be read back as written. */
static inline bool corral__env_needed_for_raw(const void *val, size_t len) {
    return len > 0 && ((const unsigned char *)val)[0] == CORRAL__ENV_MAGIC;
}

#endif /* CORRAL_ENVELOPE_H */
