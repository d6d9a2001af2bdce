/*
 * fuzz_url.c - libFuzzer target for the cache URL parser, corral_options_parse_url, and for
 * corral_open_opts on whatever it accepts.
 *
 * The input is the URL (a NUL is appended; an embedded NUL ends it early, as in C). Invariants
 * checked, beyond "no crash, no leak, no UB":
 * - the result is CORRAL_OK or an error; on error `err.code` is the code and `err.msg` is a
 *   NUL-terminated message; on error the options are unchanged;
 * - corral_open on the same URL agrees with parse + corral_open_opts;
 * - an opened handle works: a set then a get of a short key round-trips (memory store only: a
 *   Redis handle is opened and closed, which does no I/O, and never used).
 *
 * Speed: a memory store's open zeroes a hash table of 3 to 6 % of max_memory (256 MiB by
 * default), which made every input cost two large zeroings (about 35 runs/s under ASan, and a
 * corpus of 120 too slow to replay in make test). So a memory store of more than
 * MAX_OPEN_BYTES is opened at MAX_OPEN_BYTES, and for those inputs corral_open's agreement is
 * not checked (the sizes differ); inputs the parser refuses, Redis URLs and small memory stores
 * still check it.
 */
#include "corral/corral.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPEN_BYTES ((size_t)16 << 20)

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

static bool same_options(const corral_options *a, const corral_options *b) {
    return a->store == b->store && a->key_prefix == b->key_prefix && a->version == b->version &&
           a->default_ttl_ms == b->default_ttl_ms && a->max_memory_bytes == b->max_memory_bytes &&
           a->max_value_bytes == b->max_value_bytes && a->eviction == b->eviction &&
           a->shards == b->shards && a->allow_binary_keys == b->allow_binary_keys &&
           a->max_prefixes == b->max_prefixes;
}

/* Opens a handle from `o`, exercises it and closes it; returns the open's code. */
static int open_and_use(const corral_options *o) {
    corral *c = (corral *)&c;
    corral_error err;
    int rc = corral_open_opts(&c, o, &err);
    if (rc != CORRAL_OK) {
        CHECK(rc < 0 && c == NULL && err.code == rc && memchr(err.msg, 0, sizeof err.msg));
        return rc;
    }
    if (strcmp(o->store, "redis") == 0) { /* a fuzz target does no I/O: opening connects nothing */
        corral_close(c);
        return rc;
    }
    int set = corral_set(c, "fuzz:k", 6, "value", 5, CORRAL_TTL_FOREVER, NULL);
    CHECK(set == CORRAL_OK || set == CORRAL_EBADKEY || set == CORRAL_ETOOBIG);
    char buf[8];
    size_t len = 0;
    int got = corral_get_into(c, "fuzz:k", 6, NULL, buf, sizeof buf, &len);
    if (set == CORRAL_OK)
        CHECK(got == CORRAL_OK && len == 5 && memcmp(buf, "value", 5) == 0);
    else
        CHECK(got == set || got == CORRAL_MISS);
    corral_close(c);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0;
    char *url = malloc(size + 1);
    size_t cap = size + 16;
    char *buf = malloc(cap);
    if (!url || !buf) abort();
    if (size) memcpy(url, data, size);
    url[size] = '\0';

    corral_options o, before;
    corral_options_init(&o);
    before = o;
    corral_error err;
    bool capped = false;
    memset(&err, 0x5a, sizeof err);
    int rc = corral_options_parse_url(&o, url, buf, cap, &err);
    if (rc != CORRAL_OK) {
        CHECK(rc < 0 && err.code == rc && memchr(err.msg, 0, sizeof err.msg) != NULL);
        CHECK(same_options(&o, &before));
    } else {
        CHECK(o.key_prefix != NULL && o.store != NULL);
        if (strcmp(o.store, "redis") != 0 && o.max_memory_bytes > MAX_OPEN_BYTES) {
            o.max_memory_bytes = MAX_OPEN_BYTES;
            capped = true;
        }
        rc = open_and_use(&o);
    }

    /* corral_open is parse + open: the same outcome. */
    if (!capped) {
        corral *c = NULL;
        int rc2 = corral_open(&c, url, NULL);
        CHECK(rc2 == rc);
        CHECK((rc2 == CORRAL_OK) == (c != NULL));
        corral_close(c);
    }

    free(buf);
    free(url);
    return 0;
}
