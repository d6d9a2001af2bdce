/*
 * fuzz_http_range.c - libFuzzer target for the Range field parser (corral_http_parse_range) and
 * the 206 decision and framing a proxy builds on it (corral_http_range_select,
 * corral_http_write_content_range, corral_http_write_byteranges_part, the cached head as 206).
 *
 * Input: bytes 0-3 the representation's length (little-endian, so small lengths are common),
 * byte 4 the room for ranges (0-15), the rest the Range value. The value is also put in a
 * request (when it is a valid field value) with If-Range, against a stored 200.
 *
 * Oracles, beyond "no crash, no leak, no UB":
 * - the outcome is one of OK, RANGE_UNSATISFIABLE, EINVAL, ENOSPC, with `*n` 0 unless OK and
 *   1..room when OK; every range lies within the representation (first <= last < length);
 * - the parser reads only `len` bytes: a copy in a buffer of exactly that size gives the same;
 * - the value with a trailing ",", or surrounding spaces, gives the same outcome and ranges;
 * - the select's ranges are the parser's, not overlapping, and each writes a Content-Range and
 *   a multipart part whose length is the sum of its pieces.
 */
#include "corral/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

#define ROOM 16

static int parse(const char *s, size_t len, uint64_t length, size_t room, corral_http_range *out,
                 size_t *n) {
    int rc = corral_http_parse_range(s, len, length, out, room, n);
    CHECK(rc == CORRAL_OK || rc == CORRAL_HTTP_RANGE_UNSATISFIABLE || rc == CORRAL_EINVAL ||
          rc == CORRAL_ENOSPC);
    if (rc != CORRAL_OK) CHECK(*n == 0);
    if (rc == CORRAL_OK) CHECK(*n >= 1 && *n <= room);
    for (size_t i = 0; i < *n; i++)
        CHECK(out[i].first <= out[i].last && out[i].last < length);
    return rc;
}

static bool same(const corral_http_range *a, const corral_http_range *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i].first != b[i].first || a[i].last != b[i].last) return false;
    return true;
}

/* The Range value in a request, against a stored 200 with an ETag and a strong Last-Modified. */
static void select_and_frame(const char *v, size_t len, uint64_t length, size_t room,
                             const corral_http_range *parsed, size_t parsed_n, int parsed_rc) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return; /* not a field value */
    }
    static const char stored_text[] =
        "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nETag: \"v\"\r\n"
        "Last-Modified: Tue, 14 Nov 2023 22:00:00 GMT\r\nContent-Type: text/plain\r\n\r\n";
    corral_http_header shs[8], rhs[8];
    corral_http_msg stored, req;
    CHECK(corral_http_parse_head(CORRAL_HTTP_RESPONSE, stored_text, sizeof stored_text - 1, NULL,
                                 shs, 8, &stored, NULL) == CORRAL_OK);
    size_t cap = len + 128;
    char *text = malloc(cap);
    CHECK(text);
    int w =
        snprintf(text, cap, "GET / HTTP/1.1\r\nHost: a\r\nIf-Range: \"v\"\r\nRange: %.*s\r\n\r\n",
                 (int)len, v);
    CHECK(w > 0 && (size_t)w < cap);
    corral_http_limits l;
    corral_http_limits_init(&l);
    l.max_head_bytes = cap;
    if (corral_http_parse_head(CORRAL_HTTP_REQUEST, text, (size_t)w, &l, rhs, 8, &req, NULL) !=
        CORRAL_OK) {
        free(text);
        return;
    }
    corral_http_range out[ROOM];
    size_t n = 99;
    int rc = corral_http_range_select(&req, &stored, length, out, room, &n);
    CHECK(rc == CORRAL_OK || rc == CORRAL_HTTP_RANGE_UNSATISFIABLE);
    if (rc == CORRAL_HTTP_RANGE_UNSATISFIABLE) CHECK(parsed_rc == rc && n == 0);
    if (n > 0) {
        /* The field value is trimmed by the head parser; the ranges are the parser's. */
        CHECK(parsed_rc == CORRAL_OK && n == parsed_n && same(out, parsed, n));
        for (size_t a = 0; a < n; a++)
            for (size_t b = a + 1; b < n; b++)
                CHECK(out[a].last < out[b].first || out[b].last < out[a].first);
    }
    char buf[256];
    size_t blen;
    for (size_t i = 0; i < n; i++) {
        CHECK(corral_http_write_content_range(&out[i], length, buf, sizeof buf, &blen) ==
              CORRAL_OK);
        CHECK(blen < sizeof buf && memcmp(buf, "Content-Range: bytes ", 21) == 0);
        CHECK(corral_http_write_byteranges_part(&stored, "b0undary", 8, &out[i], length, i == 0,
                                                buf, sizeof buf, &blen) == CORRAL_OK);
        CHECK(memcmp(buf + (i ? 2 : 0), "--b0undary\r\nContent-Type: text/plain\r\n", 38) == 0);
        CHECK(memcmp(buf + blen - 4, "\r\n\r\n", 4) == 0);
    }
    if (n == 1) {
        char head[1024];
        CHECK(corral_http_write_content_range(&out[0], length, buf, sizeof buf, &blen) ==
              CORRAL_OK);
        CHECK(corral_http_write_cached_head(&stored, 206, 0,
                                            (int64_t)(out[0].last - out[0].first + 1), buf, blen,
                                            head, sizeof head, &blen) == CORRAL_OK);
        corral_http_header bhs[16];
        corral_http_msg back;
        CHECK(corral_http_parse_head(CORRAL_HTTP_RESPONSE, head, blen, NULL, bhs, 16, &back,
                                     NULL) == CORRAL_OK);
        CHECK(back.status == 206 && back.has_content_length &&
              back.content_length == out[0].last - out[0].first + 1);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5 || size > 4096) return 0;
    uint64_t length = (uint64_t)data[0] | (uint64_t)data[1] << 8 | (uint64_t)data[2] << 16 |
                      (uint64_t)data[3] << 24;
    size_t room = data[4] % ROOM;
    size_t len = size - 5;
    /* An exact-size copy: ASan catches a read past `len`. */
    char *v = malloc(len ? len : 1);
    CHECK(v);
    memcpy(v, data + 5, len);

    corral_http_range a[ROOM], b[ROOM];
    size_t na = 99, nb = 99;
    int rc = parse(v, len, length, room, a, &na);

    /* A trailing empty list element and surrounding whitespace change nothing. */
    char *w = malloc(len + 3);
    CHECK(w);
    w[0] = ' ';
    memcpy(w + 1, v, len);
    memcpy(w + 1 + len, ", ", 2);
    bool ends_in_ws = len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t');
    if (rc == CORRAL_OK || rc == CORRAL_HTTP_RANGE_UNSATISFIABLE || rc == CORRAL_ENOSPC) {
        /* (A malformed value may become well-formed, "bytes=" + "," stays malformed, and a
         * value ending in whitespace may end a spec: only valid outcomes are compared.) */
        int rc2 = parse(w, len + 3, length, room, b, &nb);
        if (!ends_in_ws) CHECK(rc2 == rc && nb == na && same(a, b, na));
    }
    select_and_frame(v, len, length, room, a, na, rc);
    free(w);
    free(v);
    return 0;
}
