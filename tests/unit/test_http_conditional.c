/*
 * test_http_conditional.c - conditional requests and the heads a cache writes
 * (src/http/conditional.c): entity-tag comparison (RFC 9110 §8.8.3.2), the client's
 * preconditions answered from a stored response (§13.2.2), the origin request with hop-by-hop
 * fields removed and revalidation validators added (RFC 9111 §4.3.1), the stored head (§3.1),
 * freshening from a 304 (§4.3.4), and the served head with Age or as a 304 (RFC 9110 §15.4.5).
 * Ends with the whole revalidation round trip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "corral/http.h"

#define T0_MS    1700000000000LL
#define T0       "Tue, 14 Nov 2023 22:13:20 GMT"
#define T0_P100  "Tue, 14 Nov 2023 22:15:00 GMT"
#define T0_M5D   "Thu, 09 Nov 2023 22:13:20 GMT"
#define T0_M100D "Mon, 07 Aug 2023 22:13:20 GMT"
#define T0_P5D   "Sun, 19 Nov 2023 22:13:20 GMT"

typedef struct fixture {
    char text[2048];
    corral_http_header hs[32];
    corral_http_msg m;
} fixture;

/* "METHOD /target" or "STATUS Reason", then "\n"-separated field lines; requests get
 * "Host: a" unless they name a Host. */
static const corral_http_msg *parse(fixture *f, corral_http_kind kind, const char *spec) {
    const char *sp = strchr(spec, '\n');
    size_t line = sp ? (size_t)(sp - spec) : strlen(spec);
    int w = kind == CORRAL_HTTP_REQUEST
                ? snprintf(f->text, sizeof f->text, "%.*s HTTP/1.1", (int)line, spec)
                : snprintf(f->text, sizeof f->text, "HTTP/1.1 %.*s", (int)line, spec);
    assert_true(w > 0 && (size_t)w < sizeof f->text);
    size_t n = (size_t)w;
    if (kind == CORRAL_HTTP_REQUEST && !strstr(spec, "\nHost:")) {
        memcpy(f->text + n, "\r\nHost: a", 9);
        n += 9;
    }
    for (const char *p = sp; p && *p; p++) {
        assert_true(n + 6 < sizeof f->text);
        if (*p == '\n') {
            f->text[n++] = '\r';
            f->text[n++] = '\n';
        } else {
            f->text[n++] = *p;
        }
    }
    memcpy(f->text + n, "\r\n\r\n", 4);
    n += 4;
    int rc = corral_http_parse_head(kind, f->text, n, NULL, f->hs, 32, &f->m, NULL);
    if (rc != CORRAL_OK) {
        print_error("fixture \"%s\": %s\n", spec, corral_http_strerror(rc));
        fail();
    }
    return &f->m;
}

static const corral_http_msg *req_of(fixture *f, const char *spec) {
    return parse(f, CORRAL_HTTP_REQUEST, spec);
}

static const corral_http_msg *resp_of(fixture *f, const char *spec) {
    return parse(f, CORRAL_HTTP_RESPONSE, spec);
}

static void expect_text(const char *what, const char *got, size_t len, const char *want) {
    if (len != strlen(want) || memcmp(got, want, len) != 0) {
        print_error("%s:\n--- got ---\n%.*s\n--- want ---\n%s\n", what, (int)len, got, want);
        fail();
    }
}

/* ---- Entity-tags ---- */

static void test_http_etag_comparison_table(void **state) {
    (void)state;
    static const struct {
        const char *a, *b;
        bool strong, weak; /* the results of strong and weak comparison */
    } rows[] = {
        /* RFC 9110 §8.8.3.2's table */
        { "W/\"1\"", "W/\"1\"", false, true },
        { "W/\"1\"", "W/\"2\"", false, false },
        { "W/\"1\"", "\"1\"", false, true },
        { "\"1\"", "\"1\"", true, true },
        /* and the edges */
        { " \"a\" ", "\"a\"", true, true },
        { "\"a,b\"", "\"a,b\"", true, true },
        { "\"\"", "\"\"", true, true },
        { "a", "a", false, false },
        { "\"a\"x", "\"a\"", false, false },
        { "w/\"a\"", "\"a\"", false, false },
        { "\"a", "\"a", false, false },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *a = rows[i].a, *b = rows[i].b;
        bool s = corral_http_etag_match(a, strlen(a), b, strlen(b), true);
        bool w = corral_http_etag_match(a, strlen(a), b, strlen(b), false);
        if (s != rows[i].strong || w != rows[i].weak) {
            print_error("row %zu: %s vs %s: strong %d weak %d\n", i, a, b, s, w);
            fail();
        }
    }
    assert_false(corral_http_etag_match(NULL, 0, "\"a\"", 3, false));
}

/* ---- Client preconditions (RFC 9110 §13.2.2) ---- */

#define STORED "200 OK\nETag: \"v1\"\nLast-Modified: " T0_M5D

static void test_http_conditional_status_table(void **state) {
    (void)state;
    static const struct {
        const char *name;
        const char *req;
        const char *stored;
        unsigned want;
    } rows[] = {
        { "If-None-Match matches", "GET /\nIf-None-Match: \"v1\"", STORED, 304 },
        { "If-None-Match is weak", "GET /\nIf-None-Match: W/\"v1\"", STORED, 304 },
        { "If-None-Match misses", "GET /\nIf-None-Match: \"v2\"", STORED, 0 },
        { "If-None-Match list", "GET /\nIf-None-Match: \"v0\", \"v1\"", STORED, 304 },
        { "If-None-Match list over two fields",
          "GET /\nIf-None-Match: \"v0\"\nIf-None-Match: \"v1\"", STORED, 304 },
        { "If-None-Match *", "GET /\nIf-None-Match: *", STORED, 304 },
        { "If-None-Match with a comma inside a tag", "GET /\nIf-None-Match: \"x\", \"a,b\"",
          "200 OK\nETag: \"a,b\"", 304 },
        { "If-None-Match without a stored ETag", "GET /\nIf-None-Match: \"v1\"",
          "200 OK\nLast-Modified: " T0_M5D, 0 },
        { "If-None-Match beats If-Modified-Since",
          "GET /\nIf-None-Match: \"v2\"\nIf-Modified-Since: " T0, STORED, 0 },
        { "HEAD If-None-Match", "HEAD /\nIf-None-Match: \"v1\"", STORED, 304 },
        { "If-None-Match on an unsafe method: 412", "PUT /\nIf-None-Match: *", STORED, 412 },
        { "If-Modified-Since equal", "GET /\nIf-Modified-Since: " T0_M5D, STORED, 304 },
        { "If-Modified-Since later", "GET /\nIf-Modified-Since: " T0, STORED, 304 },
        { "If-Modified-Since earlier", "GET /\nIf-Modified-Since: " T0_M100D, STORED, 0 },
        { "If-Modified-Since in the future is ignored", "GET /\nIf-Modified-Since: " T0_P5D, STORED,
          0 },
        { "If-Modified-Since invalid", "GET /\nIf-Modified-Since: yesterday", STORED, 0 },
        { "If-Modified-Since without Last-Modified", "GET /\nIf-Modified-Since: " T0,
          "200 OK\nETag: \"v1\"", 0 },
        { "If-Modified-Since on POST is ignored", "POST /\nIf-Modified-Since: " T0, STORED, 0 },
        { "If-Match strong match", "GET /\nIf-Match: \"v1\"", STORED, 0 },
        { "If-Match miss", "GET /\nIf-Match: \"v2\"", STORED, 412 },
        { "If-Match is strong", "GET /\nIf-Match: W/\"v1\"", STORED, 412 },
        { "If-Match against a weak ETag", "GET /\nIf-Match: W/\"v1\"", "200 OK\nETag: W/\"v1\"",
          412 },
        { "If-Match *", "GET /\nIf-Match: *", STORED, 0 },
        { "If-Unmodified-Since before the change", "GET /\nIf-Unmodified-Since: " T0_M100D, STORED,
          412 },
        { "If-Unmodified-Since after the change", "GET /\nIf-Unmodified-Since: " T0, STORED, 0 },
        { "If-Match then If-None-Match", "GET /\nIf-Match: \"v1\"\nIf-None-Match: \"v1\"", STORED,
          304 },
        { "preconditions ignored for a 404", "GET /\nIf-None-Match: *", "404 Not Found", 0 },
        { "no preconditions", "GET /", STORED, 0 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fixture fq, fs;
        unsigned got = corral_http_conditional_status(req_of(&fq, rows[i].req),
                                                      resp_of(&fs, rows[i].stored), T0_MS);
        if (got != rows[i].want) {
            print_error("row \"%s\": %u, want %u\n", rows[i].name, got, rows[i].want);
            fail();
        }
    }
}

/* ---- The origin request ---- */

static void test_http_origin_request_drops_hop_by_hop_fields(void **state) {
    (void)state;
    fixture fq;
    const corral_http_msg *req =
        req_of(&fq, "GET /p?x=1\nHost: a\nConnection: keep-alive, X-Hop\nX-Hop: 1\n"
                    "Keep-Alive: timeout=5\nTE: trailers\nUpgrade: h2c\nProxy-Authorization: x\n"
                    "If-None-Match: \"v0\"\nRange: bytes=0-1\nAccept: */*");
    char buf[512];
    size_t len;
    const char *via = "Via: 1.1 corral\r\n";
    assert_int_equal(
        corral_http_write_origin_request(req, NULL, 0, via, strlen(via), buf, sizeof buf, &len),
        CORRAL_OK);
    expect_text("pass", buf, len,
                "GET /p?x=1 HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"v0\"\r\n"
                "Range: bytes=0-1\r\nAccept: */*\r\nVia: 1.1 corral\r\n\r\n");
    assert_int_equal(corral_http_write_origin_request(req, NULL, CORRAL_HTTP_FWD_STRIP_CONDITIONALS,
                                                      NULL, 0, buf, sizeof buf, &len),
                     CORRAL_OK);
    expect_text("miss", buf, len, "GET /p?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    /* Every shorter buffer is refused with the size needed. */
    for (size_t cap = 0; cap < len; cap++) {
        size_t need = 0;
        assert_int_equal(corral_http_write_origin_request(req, NULL,
                                                          CORRAL_HTTP_FWD_STRIP_CONDITIONALS, NULL,
                                                          0, buf, cap, &need),
                         CORRAL_ENOSPC);
        assert_int_equal(need, len);
    }
}

static void test_http_origin_request_revalidates_with_validators(void **state) {
    (void)state;
    fixture fq, fs;
    const corral_http_msg *req =
        req_of(&fq, "HEAD /p\nHost: a\nIf-None-Match: \"client\"\nIf-Modified-Since: " T0);
    const corral_http_msg *stored =
        resp_of(&fs, "200 OK\nETag: W/\"v1\"\nLast-Modified: " T0_M5D "\nContent-Length: 3");
    char buf[512];
    size_t len;
    assert_int_equal(
        corral_http_write_origin_request(req, stored, 0, NULL, 0, buf, sizeof buf, &len),
        CORRAL_OK);
    expect_text("revalidation", buf, len,
                "GET /p HTTP/1.1\r\nHost: a\r\nIf-None-Match: W/\"v1\"\r\n"
                "If-Modified-Since: " T0_M5D "\r\n\r\n");
    /* A malformed ETag or Last-Modified is not sent back. */
    stored = resp_of(&fs, "200 OK\nETag: v1\nLast-Modified: soon");
    assert_int_equal(
        corral_http_write_origin_request(req, stored, 0, NULL, 0, buf, sizeof buf, &len),
        CORRAL_OK);
    expect_text("no validators", buf, len, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n");
}

static void test_http_origin_request_frames_the_body(void **state) {
    (void)state;
    static const struct {
        const char *req;
        unsigned flags;
        const char *want;
    } rows[] = {
        { "POST /f\nHost: a\nTransfer-Encoding: chunked", 0,
          "POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" },
        { "POST /f\nHost: a\nContent-Length: 5", 0,
          "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n" },
        { "HEAD /f\nHost: a", CORRAL_HTTP_FWD_AS_GET, "GET /f HTTP/1.1\r\nHost: a\r\n\r\n" },
        { "GET http://b.example/x?y\nHost: a", 0, "GET /x?y HTTP/1.1\r\nHost: b.example\r\n\r\n" },
        { "GET http://b.example\nHost: a", 0, "GET / HTTP/1.1\r\nHost: b.example\r\n\r\n" },
        { "OPTIONS *\nHost: a", 0, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fixture fq;
        char buf[256];
        size_t len;
        assert_int_equal(corral_http_write_origin_request(req_of(&fq, rows[i].req), NULL,
                                                          rows[i].flags, NULL, 0, buf, sizeof buf,
                                                          &len),
                         CORRAL_OK);
        expect_text(rows[i].req, buf, len, rows[i].want);
    }
    fixture fq;
    char buf[64];
    size_t len;
    assert_int_equal(corral_http_write_origin_request(req_of(&fq, "CONNECT a:443\nHost: a"), NULL,
                                                      0, NULL, 0, buf, sizeof buf, &len),
                     CORRAL_EINVAL);
}

/* ---- Stored and served heads ---- */

static void test_http_stored_head_drops_hop_by_hop_and_framing(void **state) {
    (void)state;
    fixture fs;
    const corral_http_msg *resp = resp_of(
        &fs, "200 OK\nDate: " T0 "\nConnection: close, X-Internal\nX-Internal: 1\n"
             "Keep-Alive: timeout=5\nTransfer-Encoding: chunked\nCache-Control: max-age=60\n"
             "Age: 3\nETag: \"v1\"");
    char buf[512];
    size_t len;
    assert_int_equal(corral_http_write_stored_head(resp, buf, sizeof buf, &len), CORRAL_OK);
    const char *want = "HTTP/1.1 200 OK\r\nDate: " T0 "\r\nCache-Control: max-age=60\r\nAge: 3\r\n"
                       "ETag: \"v1\"\r\n\r\n";
    expect_text("stored head", buf, len, want);
    /* It parses back. */
    corral_http_header hs[8];
    corral_http_msg back;
    size_t head_len;
    assert_int_equal(
        corral_http_parse_head(CORRAL_HTTP_RESPONSE, buf, len, NULL, hs, 8, &back, &head_len),
        CORRAL_OK);
    assert_int_equal(head_len, len);
    assert_int_equal(back.status, 200);
    assert_int_equal(back.n_headers, 4);
    for (size_t cap = 0; cap < len; cap++) {
        size_t need = 0;
        assert_int_equal(corral_http_write_stored_head(resp, buf, cap, &need), CORRAL_ENOSPC);
        assert_int_equal(need, len);
    }
}

static void test_http_cached_head_sets_age_and_length(void **state) {
    (void)state;
    fixture fs;
    const corral_http_msg *stored =
        resp_of(&fs, "200 OK\nDate: " T0 "\nAge: 5\nCache-Control: max-age=60\nETag: \"v1\"\n"
                     "Last-Modified: " T0_M5D "\nContent-Type: text/html\nVary: Accept-Encoding");
    char buf[512];
    size_t len;
    const char *extra = "Connection: close\r\n";
    assert_int_equal(corral_http_write_cached_head(stored, 0, 30, 11, extra, strlen(extra), buf,
                                                   sizeof buf, &len),
                     CORRAL_OK);
    expect_text("200", buf, len,
                "HTTP/1.1 200 OK\r\nDate: " T0 "\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n"
                "Last-Modified: " T0_M5D "\r\nContent-Type: text/html\r\nVary: Accept-Encoding\r\n"
                "Age: 30\r\nContent-Length: 11\r\nConnection: close\r\n\r\n");
    assert_int_equal(
        corral_http_write_cached_head(stored, 304, 30, 11, NULL, 0, buf, sizeof buf, &len),
        CORRAL_OK);
    expect_text("304", buf, len,
                "HTTP/1.1 304 Not Modified\r\nDate: " T0 "\r\nCache-Control: max-age=60\r\n"
                "ETag: \"v1\"\r\nVary: Accept-Encoding\r\nAge: 30\r\n\r\n");
    /* Without an ETag the 304 carries Last-Modified. */
    stored = resp_of(&fs, "200 OK\nLast-Modified: " T0_M5D "\nContent-Type: text/html");
    assert_int_equal(
        corral_http_write_cached_head(stored, 304, 0, -1, NULL, 0, buf, sizeof buf, &len),
        CORRAL_OK);
    expect_text("304 without ETag", buf, len,
                "HTTP/1.1 304 Not Modified\r\nLast-Modified: " T0_M5D "\r\nAge: 0\r\n\r\n");
    stored = resp_of(&fs, "204 No Content");
    assert_int_equal(corral_http_write_cached_head(stored, 0, 1, 0, NULL, 0, buf, sizeof buf, &len),
                     CORRAL_OK);
    expect_text("204", buf, len, "HTTP/1.1 204 No Content\r\nAge: 1\r\n\r\n");
    assert_int_equal(
        corral_http_write_cached_head(stored, 500, 1, 0, NULL, 0, buf, sizeof buf, &len),
        CORRAL_EINVAL);
}

/* ---- Freshening (RFC 9111 §4.3.4) ---- */

static void test_http_freshen_merges_the_304(void **state) {
    (void)state;
    fixture fs, fu;
    const corral_http_msg *stored =
        resp_of(&fs, "200 OK\nDate: " T0 "\nCache-Control: max-age=60\nETag: \"v1\"\n"
                     "Content-Type: text/html\nContent-Encoding: gzip\nX-Keep: 1");
    const corral_http_msg *update =
        resp_of(&fu, "304 Not Modified\nDate: " T0_P100 "\nCache-Control: max-age=120\n"
                     "ETag: \"v1\"\nContent-Length: 0\nContent-Encoding: br\nConnection: close\n"
                     "X-New: 2");
    char buf[512];
    size_t len;
    assert_int_equal(corral_http_freshen(stored, update, buf, sizeof buf, &len), CORRAL_OK);
    expect_text("freshened", buf, len,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n"
                "X-Keep: 1\r\nDate: " T0_P100 "\r\nCache-Control: max-age=120\r\nETag: \"v1\"\r\n"
                "X-New: 2\r\n\r\n");
    for (size_t cap = 0; cap < len; cap++) {
        size_t need = 0;
        assert_int_equal(corral_http_freshen(stored, update, buf, cap, &need), CORRAL_ENOSPC);
        assert_int_equal(need, len);
    }
}

/* The old exchange's Date and Age go even when the 304 brings none: the entry is as old as the
 * revalidation, not as the first fetch. */
static void test_http_freshen_drops_the_old_date_and_age(void **state) {
    (void)state;
    fixture fs, fu;
    const corral_http_msg *stored = resp_of(
        &fs, "200 OK\nDate: " T0_M100D "\nAge: 50\nCache-Control: max-age=60\nETag: \"v1\"");
    const corral_http_msg *update = resp_of(&fu, "304 Not Modified\nETag: \"v1\"");
    char buf[256];
    size_t len;
    assert_int_equal(corral_http_freshen(stored, update, buf, sizeof buf, &len), CORRAL_OK);
    expect_text("freshened", buf, len,
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"v1\"\r\n\r\n");
    fixture fn, fq;
    assert_int_equal(
        corral_http_parse_head(CORRAL_HTTP_RESPONSE, buf, len, NULL, fn.hs, 32, &fn.m, NULL),
        CORRAL_OK);
    corral_http_policy pol;
    corral_http_policy_init(&pol);
    corral_http_decision d;
    assert_int_equal(corral_http_store_decide(&pol, req_of(&fq, "GET /"), &fn.m, T0_MS, T0_MS, &d),
                     CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_STORE);
    assert_int_equal(d.ttl_ms, 60000);
}

static void test_http_freshen_selects_by_validator(void **state) {
    (void)state;
    static const struct {
        const char *stored;
        const char *update;
        int rc;
    } rows[] = {
        { "200 OK\nETag: \"v1\"", "304 X\nETag: \"v2\"", CORRAL_HTTP_NOMATCH },
        { "200 OK\nETag: \"v1\"", "304 X\nETag: W/\"v1\"", CORRAL_OK },
        { "200 OK\nETag: W/\"v1\"", "304 X\nETag: \"v1\"", CORRAL_HTTP_NOMATCH },
        { "200 OK\nLast-Modified: " T0_M5D, "304 X\nETag: \"v1\"", CORRAL_HTTP_NOMATCH },
        { "200 OK\nLast-Modified: " T0_M5D, "304 X\nLast-Modified: " T0_M5D, CORRAL_OK },
        { "200 OK\nLast-Modified: " T0_M5D, "304 X\nLast-Modified: " T0, CORRAL_HTTP_NOMATCH },
        { "200 OK\nETag: \"v1\"", "304 X\nCache-Control: max-age=5", CORRAL_OK },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fixture fs, fu;
        char buf[256];
        size_t len;
        int rc = corral_http_freshen(resp_of(&fs, rows[i].stored), resp_of(&fu, rows[i].update),
                                     buf, sizeof buf, &len);
        if (rc != rows[i].rc) {
            print_error("row %zu: rc %d, want %d\n", i, rc, rows[i].rc);
            fail();
        }
    }
}

/* Lookup says REVALIDATE, the origin answers 304, the entry is freshened and fresh again. */
static void test_http_revalidation_round_trip(void **state) {
    (void)state;
    corral_http_policy pol;
    corral_http_policy_init(&pol);
    fixture fq, fs, fu, fn;
    const corral_http_msg *req = req_of(&fq, "GET /p\nHost: a");
    const corral_http_msg *stored =
        resp_of(&fs, "200 OK\nDate: " T0 "\nCache-Control: max-age=60\nETag: \"v1\"");
    corral_http_entry e = { stored, T0_MS, T0_MS };
    corral_http_decision d;
    assert_int_equal(corral_http_lookup(&pol, req, &e, T0_MS + 100000, &d), CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_REVALIDATE);

    char out[256];
    size_t len;
    assert_int_equal(
        corral_http_write_origin_request(req, stored, 0, NULL, 0, out, sizeof out, &len),
        CORRAL_OK);
    expect_text("conditional", out, len,
                "GET /p HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"v1\"\r\n\r\n");

    const corral_http_msg *nm = resp_of(&fu, "304 Not Modified\nDate: " T0_P100
                                             "\nETag: \"v1\"\nCache-Control: max-age=60");
    char head[512];
    size_t head_len;
    assert_int_equal(corral_http_freshen(stored, nm, head, sizeof head, &head_len), CORRAL_OK);
    assert_int_equal(
        corral_http_parse_head(CORRAL_HTTP_RESPONSE, head, head_len, NULL, fn.hs, 32, &fn.m, NULL),
        CORRAL_OK);
    assert_int_equal(corral_http_store_decide(&pol, req, &fn.m, T0_MS + 100000, T0_MS + 100000, &d),
                     CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_STORE);
    assert_int_equal(d.ttl_ms, 60000);
    corral_http_entry fresh = { &fn.m, T0_MS + 100000, T0_MS + 100000 };
    assert_int_equal(corral_http_lookup(&pol, req, &fresh, T0_MS + 130000, &d), CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_HIT);
    assert_int_equal(d.age_s, 30);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_etag_comparison_table),
        cmocka_unit_test(test_http_conditional_status_table),
        cmocka_unit_test(test_http_origin_request_drops_hop_by_hop_fields),
        cmocka_unit_test(test_http_origin_request_revalidates_with_validators),
        cmocka_unit_test(test_http_origin_request_frames_the_body),
        cmocka_unit_test(test_http_stored_head_drops_hop_by_hop_and_framing),
        cmocka_unit_test(test_http_cached_head_sets_age_and_length),
        cmocka_unit_test(test_http_freshen_merges_the_304),
        cmocka_unit_test(test_http_freshen_drops_the_old_date_and_age),
        cmocka_unit_test(test_http_freshen_selects_by_validator),
        cmocka_unit_test(test_http_revalidation_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
