/*
 * test_http_range.c - range requests (src/http/range.c, RFC 9110 §14): the Range parser as a
 * table (value, length) -> ranges or outcome, the choice between 206, 416 and 200 with
 * If-Range, and the 206's framing pieces (Content-Range, multipart/byteranges parts, the
 * cached head with status 206).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "corral/http.h"

#define MAXR 4

/* ---- The parser ---- */

typedef struct range_row {
    const char *in;
    uint64_t length;
    int rc;
    const char *want; /* "first-last first-last ..." for CORRAL_OK */
} range_row;

static const range_row rows[] = {
    /* the forms of §14.1.1, on a 1000-byte representation */
    { "bytes=0-499", 1000, CORRAL_OK, "0-499" },
    { "bytes=500-999", 1000, CORRAL_OK, "500-999" },
    { "bytes=500-", 1000, CORRAL_OK, "500-999" },
    { "bytes=-500", 1000, CORRAL_OK, "500-999" },
    { "bytes=0-0,-1", 1000, CORRAL_OK, "0-0 999-999" },
    { "bytes=500-600,601-999", 1000, CORRAL_OK, "500-600 601-999" },
    { "bytes= 0-1 , 5-6 ,", 1000, CORRAL_OK, "0-1 5-6" },
    { "bytes=,0-1", 1000, CORRAL_OK, "0-1" },
    { "BYTES=0-1", 1000, CORRAL_OK, "0-1" },
    { "  bytes=0-1  ", 1000, CORRAL_OK, "0-1" },
    { "bytes=900-1200", 1000, CORRAL_OK, "900-999" },                /* last clamped */
    { "bytes=-5000", 1000, CORRAL_OK, "0-999" },                     /* suffix over the length */
    { "bytes=0-99999999999999999999999", 1000, CORRAL_OK, "0-999" }, /* saturated */
    { "bytes=2000-3000,0-1", 1000, CORRAL_OK, "0-1" }, /* the unsatisfiable one dropped */
    { "bytes=3-3", 4, CORRAL_OK, "3-3" },
    /* nothing overlaps (§14.1.2): 416 */
    { "bytes=1000-", 1000, CORRAL_HTTP_RANGE_UNSATISFIABLE, NULL },
    { "bytes=1000-2000", 1000, CORRAL_HTTP_RANGE_UNSATISFIABLE, NULL },
    { "bytes=-0", 1000, CORRAL_HTTP_RANGE_UNSATISFIABLE, NULL },
    { "bytes=99999999999999999999999-", 1000, CORRAL_HTTP_RANGE_UNSATISFIABLE, NULL },
    { "bytes=0-1", 0, CORRAL_HTTP_RANGE_UNSATISFIABLE, NULL },
    { "bytes=-1", 0, CORRAL_HTTP_RANGE_UNSATISFIABLE, NULL },
    /* malformed or another unit: ignored */
    { "", 1000, CORRAL_EINVAL, NULL },
    { "bytes=", 1000, CORRAL_EINVAL, NULL },
    { "bytes=,", 1000, CORRAL_EINVAL, NULL },
    { "bytes", 1000, CORRAL_EINVAL, NULL },
    { "bytes =0-1", 1000, CORRAL_EINVAL, NULL },
    { "items=0-1", 1000, CORRAL_EINVAL, NULL },
    { "bytes=5-4", 1000, CORRAL_EINVAL, NULL },
    { "bytes=-", 1000, CORRAL_EINVAL, NULL },
    { "bytes=a-b", 1000, CORRAL_EINVAL, NULL },
    { "bytes=0-1x", 1000, CORRAL_EINVAL, NULL },
    { "bytes=0 -1", 1000, CORRAL_EINVAL, NULL },
    { "bytes=0- 1", 1000, CORRAL_EINVAL, NULL },
    { "bytes=--1", 1000, CORRAL_EINVAL, NULL },
    { "bytes=+1-2", 1000, CORRAL_EINVAL, NULL },
    { "bytes=0-1;x", 1000, CORRAL_EINVAL, NULL },
    { "bytes=0-1,2-1", 1000, CORRAL_EINVAL, NULL },
    /* more range-specs than room */
    { "bytes=0-0,2-2,4-4,6-6,8-8", 1000, CORRAL_ENOSPC, NULL },
    { "bytes=0-0,2-2,4-4,6-6", 1000, CORRAL_OK, "0-0 2-2 4-4 6-6" },
};

static void test_http_parse_range_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const range_row *r = &rows[i];
        corral_http_range out[MAXR];
        size_t n = 99;
        int rc = corral_http_parse_range(r->in, strlen(r->in), r->length, out, MAXR, &n);
        char got[128] = "";
        size_t used = 0;
        for (size_t k = 0; k < n && k < MAXR; k++) {
            int w = snprintf(got + used, sizeof got - used, "%s%llu-%llu", k ? " " : "",
                             (unsigned long long)out[k].first, (unsigned long long)out[k].last);
            assert_true(w > 0 && (size_t)w < sizeof got - used);
            used += (size_t)w;
        }
        bool ok = rc == r->rc && (rc == CORRAL_OK ? strcmp(got, r->want) == 0 && n > 0 : n == 0);
        if (!ok) {
            print_error("row \"%s\" (%llu): rc %d n %zu ranges \"%s\"\n", r->in,
                        (unsigned long long)r->length, rc, n, got);
            fail();
        }
    }
}

static void test_http_parse_range_checks_its_arguments(void **state) {
    (void)state;
    size_t n = 7;
    assert_int_equal(corral_http_parse_range(NULL, 3, 10, NULL, 0, &n), CORRAL_EINVAL);
    assert_int_equal(n, 0);
    assert_int_equal(corral_http_parse_range("bytes=0-1", 9, 10, NULL, 1, &n), CORRAL_EINVAL);
    assert_int_equal(corral_http_parse_range("bytes=0-1", 9, 10, NULL, 0, NULL), CORRAL_EINVAL);
    /* No room at all: any range is one too many. */
    assert_int_equal(corral_http_parse_range("bytes=0-1", 9, 10, NULL, 0, &n), CORRAL_ENOSPC);
    /* The value is (pointer, length): bytes after `len` are not read. */
    corral_http_range r[1];
    assert_int_equal(corral_http_parse_range("bytes=0-1,9", 9, 10, r, 1, &n), CORRAL_OK);
    assert_int_equal(r[0].last, 1);
}

/* ---- Choosing the answer ---- */

typedef struct fixture {
    char text[1024];
    corral_http_header hs[16];
    corral_http_msg m;
} fixture;

static const corral_http_msg *parse(fixture *f, corral_http_kind kind, const char *head) {
    size_t n = strlen(head);
    assert_true(n < sizeof f->text);
    memcpy(f->text, head, n);
    assert_int_equal(corral_http_parse_head(kind, f->text, n, NULL, f->hs, 16, &f->m, NULL),
                     CORRAL_OK);
    return &f->m;
}

#define STORED                                                                     \
    "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nETag: \"v1\"\r\n"   \
    "Last-Modified: Tue, 14 Nov 2023 22:00:00 GMT\r\nContent-Type: text/plain\r\n" \
    "Cache-Control: max-age=60\r\n\r\n"

typedef struct select_row {
    const char *name;
    const char *req; /* request head */
    const char *stored;
    int rc;
    size_t n;
} select_row;

#define GET(fields) "GET /f HTTP/1.1\r\nHost: a\r\n" fields "\r\n"

static const select_row select_rows[] = {
    { "no Range: the whole response", GET(""), STORED, CORRAL_OK, 0 },
    { "one range", GET("Range: bytes=0-9\r\n"), STORED, CORRAL_OK, 1 },
    { "two ranges", GET("Range: bytes=0-9, 20-29\r\n"), STORED, CORRAL_OK, 2 },
    { "unsatisfiable: 416", GET("Range: bytes=5000-\r\n"), STORED, CORRAL_HTTP_RANGE_UNSATISFIABLE,
      0 },
    { "malformed: ignored", GET("Range: bytes=9-0\r\n"), STORED, CORRAL_OK, 0 },
    { "other unit: ignored", GET("Range: lines=1-2\r\n"), STORED, CORRAL_OK, 0 },
    { "overlapping ranges: ignored", GET("Range: bytes=0-50, 40-60\r\n"), STORED, CORRAL_OK, 0 },
    { "more ranges than room: ignored", GET("Range: bytes=0-0,2-2,4-4,6-6,8-8\r\n"), STORED,
      CORRAL_OK, 0 },
    { "two Range fields: ignored", GET("Range: bytes=0-1\r\nRange: bytes=3-4\r\n"), STORED,
      CORRAL_OK, 0 },
    { "HEAD has no ranges", "HEAD /f HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\n", STORED,
      CORRAL_OK, 0 },
    { "only a 200 is a whole representation", GET("Range: bytes=0-9\r\n"),
      "HTTP/1.1 404 Not Found\r\nCache-Control: max-age=60\r\n\r\n", CORRAL_OK, 0 },
    /* If-Range (§13.1.5) */
    { "If-Range with the ETag", GET("Range: bytes=0-9\r\nIf-Range: \"v1\"\r\n"), STORED, CORRAL_OK,
      1 },
    { "If-Range with another ETag: whole", GET("Range: bytes=0-9\r\nIf-Range: \"v2\"\r\n"), STORED,
      CORRAL_OK, 0 },
    { "If-Range with a weak ETag never holds", GET("Range: bytes=0-9\r\nIf-Range: W/\"v1\"\r\n"),
      STORED, CORRAL_OK, 0 },
    { "If-Range with a weak stored ETag never holds",
      GET("Range: bytes=0-9\r\nIf-Range: \"v1\"\r\n"), "HTTP/1.1 200 OK\r\nETag: W/\"v1\"\r\n\r\n",
      CORRAL_OK, 0 },
    { "If-Range with the Last-Modified date",
      GET("Range: bytes=0-9\r\nIf-Range: Tue, 14 Nov 2023 22:00:00 GMT\r\n"), STORED, CORRAL_OK,
      1 },
    { "If-Range with another date: whole",
      GET("Range: bytes=0-9\r\nIf-Range: Tue, 14 Nov 2023 21:00:00 GMT\r\n"), STORED, CORRAL_OK,
      0 },
    { "If-Range date against a weak Last-Modified (same second as Date)",
      GET("Range: bytes=0-9\r\nIf-Range: Tue, 14 Nov 2023 22:13:20 GMT\r\n"),
      "HTTP/1.1 200 OK\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
      "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n",
      CORRAL_OK, 0 },
    { "If-Range that is neither: whole", GET("Range: bytes=0-9\r\nIf-Range: yesterday\r\n"), STORED,
      CORRAL_OK, 0 },
    { "If-Range failing a 416 too: whole", GET("Range: bytes=5000-\r\nIf-Range: \"v2\"\r\n"),
      STORED, CORRAL_OK, 0 },
};

static void test_http_range_select_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof select_rows / sizeof select_rows[0]; i++) {
        const select_row *r = &select_rows[i];
        fixture fq, fs;
        const corral_http_msg *req = parse(&fq, CORRAL_HTTP_REQUEST, r->req);
        const corral_http_msg *st = parse(&fs, CORRAL_HTTP_RESPONSE, r->stored);
        corral_http_range out[MAXR];
        size_t n = 99;
        int rc = corral_http_range_select(req, st, 1000, out, MAXR, &n);
        if (rc != r->rc || n != r->n) {
            print_error("row \"%s\": rc %d n %zu\n", r->name, rc, n);
            fail();
        }
    }
}

static void test_http_range_select_ignores_ranges_of_an_empty_body(void **state) {
    (void)state;
    fixture fq, fs;
    const corral_http_msg *req = parse(&fq, CORRAL_HTTP_REQUEST, GET("Range: bytes=0-\r\n"));
    const corral_http_msg *st = parse(&fs, CORRAL_HTTP_RESPONSE, STORED);
    corral_http_range out[MAXR];
    size_t n = 5;
    assert_int_equal(corral_http_range_select(req, st, 0, out, MAXR, &n), CORRAL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(corral_http_range_select(st, st, 10, out, MAXR, &n), CORRAL_EINVAL);
    assert_int_equal(corral_http_range_select(req, st, 10, NULL, MAXR, &n), CORRAL_EINVAL);
}

/* ---- Framing ---- */

static void test_http_content_range_and_multipart_parts(void **state) {
    (void)state;
    char buf[256];
    size_t len;
    corral_http_range r = { 10, 19 };
    assert_int_equal(corral_http_write_content_range(&r, 100, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, strlen("Content-Range: bytes 10-19/100\r\n"));
    assert_memory_equal(buf, "Content-Range: bytes 10-19/100\r\n", len);
    assert_int_equal(corral_http_write_content_range(NULL, 100, buf, sizeof buf, &len), CORRAL_OK);
    assert_memory_equal(buf, "Content-Range: bytes */100\r\n", len);
    assert_int_equal(corral_http_write_content_range(&r, 19, buf, sizeof buf, &len), CORRAL_EINVAL);
    assert_int_equal(corral_http_write_content_range(&r, 100, buf, 5, &len), CORRAL_ENOSPC);
    assert_int_equal(len, strlen("Content-Range: bytes 10-19/100\r\n"));

    fixture fs;
    const corral_http_msg *st = parse(&fs, CORRAL_HTTP_RESPONSE, STORED);
    static const char first[] = "--B1\r\nContent-Type: text/plain\r\n"
                                "Content-Range: bytes 10-19/100\r\n\r\n";
    assert_int_equal(
        corral_http_write_byteranges_part(st, "B1", 2, &r, 100, true, buf, sizeof buf, &len),
        CORRAL_OK);
    assert_int_equal(len, sizeof first - 1);
    assert_memory_equal(buf, first, len);
    assert_int_equal(
        corral_http_write_byteranges_part(st, "B1", 2, &r, 100, false, buf, sizeof buf, &len),
        CORRAL_OK);
    assert_memory_equal(buf, "\r\n--B1\r\n", 8);
    assert_int_equal(
        corral_http_write_byteranges_part(st, "B1", 2, NULL, 100, false, buf, sizeof buf, &len),
        CORRAL_OK);
    assert_int_equal(len, 10);
    assert_memory_equal(buf, "\r\n--B1--\r\n", 10);
    assert_int_equal(
        corral_http_write_byteranges_part(st, "B 1", 3, &r, 100, true, buf, sizeof buf, &len),
        CORRAL_EINVAL);
    assert_int_equal(
        corral_http_write_byteranges_part(st, "", 0, &r, 100, true, buf, sizeof buf, &len),
        CORRAL_EINVAL);
}

static void test_http_cached_head_as_206(void **state) {
    (void)state;
    fixture fs;
    const corral_http_msg *st = parse(&fs, CORRAL_HTTP_RESPONSE, STORED);
    char buf[512];
    size_t len;
    static const char extra[] = "Content-Range: bytes 0-9/1000\r\n";
    assert_int_equal(corral_http_write_cached_head(st, 206, 5, 10, extra, sizeof extra - 1, buf,
                                                   sizeof buf - 1, &len),
                     CORRAL_OK);
    buf[len] = '\0';
    assert_memory_equal(buf, "HTTP/1.1 206 Partial Content\r\n", 30);
    assert_non_null(strstr(buf, "\r\nETag: \"v1\"\r\n"));
    assert_non_null(
        strstr(buf, "\r\nAge: 5\r\nContent-Length: 10\r\nContent-Range: bytes 0-9/1000"));
    /* 206 only from a stored 200. */
    fixture f404;
    const corral_http_msg *nf = parse(&f404, CORRAL_HTTP_RESPONSE, "HTTP/1.1 404 X\r\n\r\n");
    assert_int_equal(corral_http_write_cached_head(nf, 206, 0, 0, NULL, 0, buf, sizeof buf, &len),
                     CORRAL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_parse_range_table),
        cmocka_unit_test(test_http_parse_range_checks_its_arguments),
        cmocka_unit_test(test_http_range_select_table),
        cmocka_unit_test(test_http_range_select_ignores_ranges_of_an_empty_body),
        cmocka_unit_test(test_http_content_range_and_multipart_parts),
        cmocka_unit_test(test_http_cached_head_as_206),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
