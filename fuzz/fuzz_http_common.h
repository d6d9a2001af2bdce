/*
 * fuzz_http_common.h - what the two HTTP fuzz targets share: the CHECK that aborts with the
 * failed condition, the trace of one parse (events and an FNV-1a digest of heads and bodies,
 * compared between the whole and the split run), and the well-formedness check of an accepted
 * header field. Included by fuzz_http_request.c and fuzz_http_response.c only.
 */
#ifndef CORRAL_FUZZ_HTTP_COMMON_H
#define CORRAL_FUZZ_HTTP_COMMON_H

#include "corral/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                                  \
    do {                                                                          \
        if (!(x)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                              \
        }                                                                         \
    } while (0)

#define MAX_EVENTS 64

/* What one run saw: a digest of events, heads and bodies. */
typedef struct trace {
    int rc;
    size_t n_events; /* GOT_HEAD and GOT_END events */
    int events[MAX_EVENTS];
    uint64_t digest; /* FNV-1a over heads' fields and bodies */
    size_t body_bytes;
} trace;

static void mix(trace *t, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        t->digest ^= b[i];
        t->digest *= 1099511628211ULL;
    }
}

static void check_value(const corral_http_header *h) {
    CHECK(h->name_len > 0);
    for (size_t i = 0; i < h->name_len; i++) {
        unsigned char c = (unsigned char)h->name[i];
        CHECK(c > 0x20 && c < 0x7f && c != ':');
    }
    for (size_t i = 0; i < h->value_len; i++) {
        unsigned char c = (unsigned char)h->value[i];
        CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    if (h->value_len) {
        CHECK(h->value[0] != ' ' && h->value[0] != '\t');
        CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
    }
}

#endif /* CORRAL_FUZZ_HTTP_COMMON_H */
