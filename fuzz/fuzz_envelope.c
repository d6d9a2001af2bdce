/*
 * fuzz_envelope.c - libFuzzer target for the value envelope (src/envelope.c), the header corral
 * puts in front of a stored value, read back from a store that other clients may write to; and
 * for the freshness classifier (src/access.c) that reads it.
 *
 * The input is a whole stored value. Its corpus (fuzz/corpus/fuzz_envelope) is also the table on
 * which the Redis store's Lua copy of the parser must agree with this one (test_redis_tags.c).
 *
 * Oracles:
 * - corral__env_hdr_len is 0 or a length within the input;
 * - a header that parses writes back byte for byte (corral__env_size, corral__env_write), and
 *   its tags lie inside the header;
 * - corral__freshness says BUSTED exactly when the header does not parse, FRESH for a value
 *   without an envelope, and never reads past the header.
 */
#include "access.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t h = corral__env_hdr_len(data, size);
    CHECK(h == 0 || (h >= CORRAL__ENV_MIN && h <= size));
    /* The classifier sees a copy of exactly the header, so ASan catches a read past it. */
    unsigned char *hdr = malloc(h ? h : 1);
    CHECK(hdr != NULL);
    if (h) memcpy(hdr, data, h);
    corral__windows w = { .beta = 1.0, .grace_ms = 1000, .stale_if_error_ms = 5000 };
    corral__view view;
    corral__verdict v = corral__freshness(hdr, h, 1000, &w, &view);
    if (h == 0) {
        CHECK(v == CORRAL__V_FRESH);
        free(hdr);
        return 0;
    }
    corral__env env;
    int rc = corral__env_parse(hdr, h, &env);
    CHECK(rc == CORRAL_OK || rc == CORRAL_EINVAL);
    CHECK((rc == CORRAL_OK) == (v != CORRAL__V_BUSTED));
    if (rc == CORRAL_OK) {
        CHECK(corral__env_size(&env) == h);
        unsigned char *out = malloc(h);
        CHECK(out != NULL);
        corral__env_write(&env, out);
        CHECK(memcmp(out, hdr, h) == 0);
        free(out);
        for (size_t i = 0; i < env.n_tags; i++) {
            const corral__env_tag *t = &env.tags[i];
            CHECK(t->name_len > 0 && t->version_len > 0);
            CHECK((const unsigned char *)t->name > hdr &&
                  (const unsigned char *)t->version + t->version_len <= hdr + h);
        }
    }
    free(hdr);
    return 0;
}
