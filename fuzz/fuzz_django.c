/*
 * fuzz_django.c - libFuzzer target for Django's cache wire format (src/store/redis_django.c),
 * the one parser of the Redis store that reads what other programs wrote.
 *
 * Oracles:
 * - decode of any input is CORRAL_OK or CORRAL_EFORMAT; on CORRAL_OK the value is a slice of
 *   the input (never read past it), and an input that does not begin with 0x80 is its own value;
 * - encode then decode gives back the input, byte for byte, for every input;
 * - an encoding is either the input itself (a canonical integer) or a pickle beginning 0x80 0x04
 *   and ending with STOP, of the announced length.
 */
#include "store/redis_django.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const unsigned char *v;
    size_t vlen;
    int rc = corral__django_decode(data, size, &v, &vlen);
    CHECK(rc == CORRAL_OK || rc == CORRAL_EFORMAT);
    if (rc == CORRAL_OK) {
        CHECK(v >= data && vlen <= size && (size_t)(v - data) <= size - vlen);
        if (size < 2 || data[0] != 0x80) CHECK(v == data && vlen == size);
    } else {
        CHECK(v == NULL && vlen == 0);
    }

    size_t n = corral__django_encoded_len(data, size);
    CHECK(n >= size && n <= size + 12);
    unsigned char *enc = malloc(n ? n : 1);
    CHECK(enc != NULL);
    corral__django_encode(data, size, enc);
    if (n == size) {
        CHECK(size == 0 || memcmp(enc, data, size) == 0);
    } else {
        CHECK(enc[0] == 0x80 && enc[1] == 4 && enc[n - 1] == '.');
    }
    CHECK(corral__django_decode(enc, n, &v, &vlen) == CORRAL_OK);
    CHECK(vlen == size && (size == 0 || memcmp(v, data, size) == 0));
    free(enc);
    return 0;
}
