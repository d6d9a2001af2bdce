/*
 * test_http_vary.c - cache keys (src/http/vary.c): the primary key (one per URL, every variant
 * under it), the vary spec of a response, the variant key of a request (RFC 9111 §4.1: Vary
 * isolation after normalisation), and the cookie filtering of route rules (the guide's
 * "someone else's order" defence). Tables of (input -> key) and of request pairs that must or
 * must not share a variant; buffer-size sweeps for every writer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "corral/http.h"

typedef struct fixture {
    char text[2048];
    corral_http_header hs[32];
    corral_http_msg m;
} fixture;

/* Parses "METHOD /target" + "\n"-separated field lines (no Host added) as a request, or a
 * status + field lines as a response. */
static const corral_http_msg *parse(fixture *f, corral_http_kind kind, const char *spec) {
    size_t n = 0;
    const char *sp = strchr(spec, '\n');
    size_t line = sp ? (size_t)(sp - spec) : strlen(spec);
    int w = kind == CORRAL_HTTP_REQUEST
                ? snprintf(f->text, sizeof f->text, "%.*s HTTP/1.1", (int)line, spec)
                : snprintf(f->text, sizeof f->text, "HTTP/1.1 %.*s X", (int)line, spec);
    assert_true(w > 0 && (size_t)w < sizeof f->text);
    n = (size_t)w;
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
        print_error("fixture \"%s\" does not parse: %s\n", spec, corral_http_strerror(rc));
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

/* ---- Primary key ---- */

static void test_http_primary_key_table(void **state) {
    (void)state;
    static const struct {
        const char *req;
        int rc;
        const char *key;
    } rows[] = {
        { "GET /p?x=1\nHost: Shop.Example", CORRAL_OK, "shop.example/p?x=1" },
        { "HEAD /p?x=1\nHost: shop.example", CORRAL_OK, "shop.example/p?x=1" },
        { "GET /p\nHost: shop.example:80", CORRAL_OK, "shop.example/p" },
        { "GET /p\nHost: shop.example:8080", CORRAL_OK, "shop.example:8080/p" },
        { "GET http://Other.Example/a?b\nHost: shop.example", CORRAL_OK, "other.example/a?b" },
        { "GET http://a.example?q\nHost: a.example", CORRAL_OK, "a.example/?q" },
        { "GET http://a.example\nHost: a.example", CORRAL_OK, "a.example/" },
        { "GET http://user@a.example/x\nHost: a.example", CORRAL_OK, "a.example/x" },
        { "GET /Case/Kept%2F\nHost: a", CORRAL_OK, "a/Case/Kept%2F" },
        { "OPTIONS *\nHost: a", CORRAL_EINVAL, "" },
        { "CONNECT a:443\nHost: a:443", CORRAL_EINVAL, "" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fixture f;
        char buf[256];
        size_t len = 99;
        int rc = corral_http_primary_key(req_of(&f, rows[i].req), buf, sizeof buf, &len);
        if (rc != rows[i].rc || len != strlen(rows[i].key) || memcmp(buf, rows[i].key, len) != 0) {
            print_error("row %zu (%s): rc %d key \"%.*s\"\n", i, rows[i].req, rc, (int)len, buf);
            fail();
        }
    }
    /* HTTP/1.0 without Host: the key is the path alone. */
    static const char v10[] = "GET /p HTTP/1.0\r\n\r\n";
    corral_http_header hs[2];
    corral_http_msg m;
    assert_int_equal(
        corral_http_parse_head(CORRAL_HTTP_REQUEST, v10, sizeof v10 - 1, NULL, hs, 2, &m, NULL),
        CORRAL_OK);
    char buf[16];
    size_t len;
    assert_int_equal(corral_http_primary_key(&m, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "/p", 2);
}

static void test_http_primary_key_reports_the_size_needed(void **state) {
    (void)state;
    fixture f;
    const corral_http_msg *req = req_of(&f, "GET /products?page=2\nHost: shop.example");
    const char *want = "shop.example/products?page=2";
    char buf[64];
    for (size_t cap = 0; cap < strlen(want); cap++) {
        size_t len = 0;
        assert_int_equal(corral_http_primary_key(req, cap ? buf : NULL, cap, &len), CORRAL_ENOSPC);
        assert_int_equal(len, strlen(want));
    }
    size_t len = 0;
    assert_int_equal(corral_http_primary_key(req, buf, strlen(want), &len), CORRAL_OK);
    assert_memory_equal(buf, want, len);
}

/* ---- Vary spec ---- */

static void test_http_vary_spec_table(void **state) {
    (void)state;
    static const struct {
        const char *resp;
        const char *extra;
        int rc;
        const char *spec;
    } rows[] = {
        { "200", NULL, CORRAL_OK, "" },
        { "200\nVary: Accept-Encoding", NULL, CORRAL_OK, "accept-encoding" },
        { "200\nVary: Cookie, Accept-Encoding\nVary: accept-language", NULL, CORRAL_OK,
          "accept-encoding,accept-language,cookie" },
        { "200\nVary: Accept-Encoding, accept-encoding,ACCEPT-ENCODING", NULL, CORRAL_OK,
          "accept-encoding" },
        { "200\nVary: Accept-Language", "X-Theme, accept-language", CORRAL_OK,
          "accept-language,x-theme" },
        { "200", "Cookie", CORRAL_OK, "cookie" },
        { "200\nVary: *", NULL, CORRAL_HTTP_VARY_ANY, "" },
        { "200\nVary: Accept, *", NULL, CORRAL_HTTP_VARY_ANY, "" },
        { "200", "*", CORRAL_HTTP_VARY_ANY, "" },
        { "200\nVary: Accept Encoding", NULL, CORRAL_EINVAL, "" },
        { "200\nVary: ,, Accept,", NULL, CORRAL_OK, "accept" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        fixture f;
        char buf[128];
        size_t len = 99;
        const char *ex = rows[i].extra;
        int rc = corral_http_vary_spec(resp_of(&f, rows[i].resp), ex, ex ? strlen(ex) : 0, buf,
                                       sizeof buf, &len);
        if (rc != rows[i].rc || (rc == CORRAL_OK && (len != strlen(rows[i].spec) ||
                                                     memcmp(buf, rows[i].spec, len) != 0))) {
            print_error("row %zu: rc %d spec \"%.*s\"\n", i, rc, (int)len, buf);
            fail();
        }
        if (rc != CORRAL_OK) assert_int_equal(len, 0);
    }
}

static void test_http_vary_spec_refuses_too_many_names(void **state) {
    (void)state;
    char spec[1024] = "200\nVary: ";
    for (int i = 0; i < 65; i++) {
        char name[16];
        snprintf(name, sizeof name, "%sx%d", i ? "," : "", i);
        strcat(spec, name);
    }
    fixture f;
    char buf[1024];
    size_t len;
    assert_int_equal(corral_http_vary_spec(resp_of(&f, spec), NULL, 0, buf, sizeof buf, &len),
                     CORRAL_EINVAL);
}

/* ---- Variant keys ---- */

typedef struct variant_pair {
    const char *spec;
    const char *a; /* request field lines */
    const char *b;
    bool same; /* must the two requests share a variant? */
} variant_pair;

static const variant_pair pairs[] = {
    /* Accept-Encoding: the set of acceptable codings */
    { "accept-encoding", "Accept-Encoding: gzip, br", "Accept-Encoding: br,gzip", true },
    { "accept-encoding", "Accept-Encoding: gzip", "Accept-Encoding: GZIP;q=1.0", true },
    { "accept-encoding", "Accept-Encoding: gzip, br;q=0", "Accept-Encoding: gzip", true },
    { "accept-encoding", "Accept-Encoding: gzip, gzip;q=0", "Accept-Encoding: identity;q=0.000",
      true },
    { "accept-encoding", "Accept-Encoding: gzip\nAccept-Encoding: br", "Accept-Encoding: br, gzip",
      true },
    { "accept-encoding", "Accept-Encoding: gzip", "Accept-Encoding: br", false },
    { "accept-encoding", "Accept-Encoding: gzip;q=0.5", "Accept-Encoding: gzip;q=0", false },
    /* absent and empty differ (§4.1) */
    { "accept-encoding", "X-Other: 1", "Accept-Encoding:", false },
    { "accept-encoding", "X-Other: 1", "X-Other: 2", true },
    /* Accept-Language: the guide's "German version to French users" */
    { "accept-language", "Accept-Language: fr", "Accept-Language: de", false },
    { "accept-language", "Accept-Language: fr-CH, fr;q=0.9", "Accept-Language: fr-ch,fr; q=0.9",
      true },
    { "accept-language", "Accept-Language: fr, de", "Accept-Language: de, fr", false },
    /* ... ordered by weight, with one spelling of each weight (RFC 9110 §12.4.2) */
    { "accept-language", "Accept-Language: en;q=0.5, fr", "Accept-Language: fr,en;q=0.50", true },
    { "accept-language", "Accept-Language: da, en-gb;q=0.8, en;q=0.7",
      "Accept-Language: en;q=0.7,  DA ,EN-GB ; Q=0.800", true },
    { "accept-language", "Accept-Language: fr;q=1, de;q=1.0", "Accept-Language: fr, de", true },
    { "accept-language", "Accept-Language: fr\nAccept-Language: de;q=0.5",
      "Accept-Language: de;q=.5x, fr", false },
    { "accept-language", "Accept-Language: fr\nAccept-Language: de;q=0.5",
      "Accept-Language: de;q=0.5, fr", true },
    { "accept-language", "Accept-Language: fr, de;q=0.8", "Accept-Language: fr, de;q=0.9", false },
    { "accept-language", "Accept-Language: fr, *;q=0", "Accept-Language: fr, *;q=0.000", true },
    { "accept-language", "Accept-Language: fr, *;q=0", "Accept-Language: fr", false },
    { "accept-charset", "Accept-Charset: utf-8;q=0.7, iso-8859-1",
      "Accept-Charset: ISO-8859-1, UTF-8; q=0.7", true },
    { "accept-encoding", "Accept-Encoding: gzip, deflate, br", "Accept-Encoding:  BR ,deflate,Gzip",
      true },
    /* Cookie */
    { "cookie", "Cookie: a=1; b=2", "Cookie: a=1;b=2", true },
    { "cookie", "Cookie: a=1\nCookie: b=2", "Cookie: a=1; b=2", true },
    { "cookie", "Cookie: a=1", "Cookie: a=2", false },
    /* other fields: combined, otherwise exact */
    { "x-theme", "X-Theme: dark", "X-Theme: Dark", false },
    { "x-theme", "X-Theme: a\nX-Theme: b", "X-Theme: a,b", true },
    { "x-theme", "x-theme: dark", "X-THEME: dark", true },
    /* several names: every one counts */
    { "accept-encoding,accept-language", "Accept-Encoding: gzip\nAccept-Language: fr",
      "Accept-Encoding: gzip\nAccept-Language: de", false },
    { "accept-encoding,accept-language", "Accept-Language: fr\nAccept-Encoding: gzip",
      "Accept-Encoding: gzip\nAccept-Language: fr", true },
    /* values that could collide in a naive encoding */
    { "a,b", "A: x;b=1:y", "A: x\nB: y", false },
    { "a,b", "A: 1", "B: 1", false },
    /* an empty spec: one variant */
    { "", "Accept-Language: fr", "Accept-Language: de", true },
};

static void variant_key(const char *spec, const char *fields, char *buf, size_t cap, size_t *len) {
    char req[512];
    snprintf(req, sizeof req, "GET /p\nHost: a\n%s", fields);
    fixture f;
    assert_int_equal(corral_http_variant_key(req_of(&f, req), spec, strlen(spec), buf, cap, len),
                     CORRAL_OK);
}

static void test_http_variant_keys_isolate_exactly_what_varies(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char ka[256], kb[256];
        size_t la, lb;
        variant_key(pairs[i].spec, pairs[i].a, ka, sizeof ka, &la);
        variant_key(pairs[i].spec, pairs[i].b, kb, sizeof kb, &lb);
        bool same = la == lb && memcmp(ka, kb, la) == 0;
        if (same != pairs[i].same) {
            print_error("pair %zu (%s): \"%.*s\" vs \"%.*s\"\n", i, pairs[i].spec, (int)la, ka,
                        (int)lb, kb);
            fail();
        }
    }
}

static void test_http_variant_key_format(void **state) {
    (void)state;
    char buf[128];
    size_t len;
    variant_key("accept-encoding,x-missing,cookie", "Accept-Encoding: gzip, br\nCookie:", buf,
                sizeof buf, &len);
    const char *want = "accept-encoding=7:br,gzip;x-missing!;cookie=0:;";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
    for (size_t cap = 0; cap < strlen(want); cap++) {
        fixture f;
        size_t need = 0;
        assert_int_equal(corral_http_variant_key(
                             req_of(&f, "GET /\nHost: a\nAccept-Encoding: gzip, br\nCookie:"),
                             "accept-encoding,x-missing,cookie", 32, buf, cap, &need),
                         CORRAL_ENOSPC);
        assert_int_equal(need, strlen(want));
    }
    fixture f;
    assert_int_equal(corral_http_variant_key(req_of(&f, "GET /\nHost: a"), "not a token", 11, buf,
                                             sizeof buf, &len),
                     CORRAL_EINVAL);
}

/* The whole path: two responses varying on Accept-Language are two entries under one primary
 * key, and each request finds its own. */
static void test_http_vary_isolates_variants_under_one_primary_key(void **state) {
    (void)state;
    fixture fr, fa, fb;
    const corral_http_msg *resp = resp_of(&fr, "200\nVary: Accept-Language");
    const corral_http_msg *fr_req = req_of(&fa, "GET /pricing\nHost: a\nAccept-Language: fr");
    const corral_http_msg *de_req = req_of(&fb, "GET /pricing\nHost: a\nAccept-Language: de");
    char spec[64], pk_fr[64], pk_de[64], vk_fr[64], vk_de[64];
    size_t sl, pfl, pdl, vfl, vdl;
    assert_int_equal(corral_http_vary_spec(resp, "X-Theme", 7, spec, sizeof spec, &sl), CORRAL_OK);
    assert_int_equal(corral_http_primary_key(fr_req, pk_fr, sizeof pk_fr, &pfl), CORRAL_OK);
    assert_int_equal(corral_http_primary_key(de_req, pk_de, sizeof pk_de, &pdl), CORRAL_OK);
    assert_int_equal(corral_http_variant_key(fr_req, spec, sl, vk_fr, sizeof vk_fr, &vfl),
                     CORRAL_OK);
    assert_int_equal(corral_http_variant_key(de_req, spec, sl, vk_de, sizeof vk_de, &vdl),
                     CORRAL_OK);
    assert_int_equal(pfl, pdl);
    assert_memory_equal(pk_fr, pk_de, pfl);
    assert_false(vfl == vdl && memcmp(vk_fr, vk_de, vfl) == 0);
}

/* ---- Cookies ---- */

static void test_http_cookie_filter_table(void **state) {
    (void)state;
    static const char *const analytics[] = { "_ga*", "_gid", "__utm*" };
    static const char *const session[] = { "sessionid" };
    static const struct {
        const char *in;
        const char *const *names;
        size_t n;
        bool keep;
        const char *out;
    } rows[] = {
        { "_ga=1; sessionid=x; _gid=2; _gat_UA=3", analytics, 3, false, "sessionid=x" },
        { "__utma=1;__utmz=2", analytics, 3, false, "" },
        { "_gidx=1; _gid=2", analytics, 3, false, "_gidx=1" },
        { "a=1; sessionid=x;  b=2", session, 1, true, "sessionid=x" },
        { "sessionid2=y; sessionid=x", session, 1, true, "sessionid=x" },
        { "a=1", session, 1, true, "" },
        { " ; ;a=1;; b = 2 ;", analytics, 3, false, "a=1; b = 2" },
        { "flag; _ga=1", analytics, 3, false, "flag" },
        { "", analytics, 3, false, "" },
        { "a=1; b=2", NULL, 0, false, "a=1; b=2" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char out[128];
        size_t len = 99;
        int rc = corral_http_cookie_filter(rows[i].in, strlen(rows[i].in), rows[i].names, rows[i].n,
                                           rows[i].keep, out, sizeof out, &len);
        if (rc != CORRAL_OK || len != strlen(rows[i].out) || memcmp(out, rows[i].out, len) != 0) {
            print_error("row %zu: rc %d out \"%.*s\"\n", i, rc, (int)len, out);
            fail();
        }
    }
    size_t len;
    char out[4];
    assert_int_equal(corral_http_cookie_filter("a=1", 3, NULL, 2, false, out, sizeof out, &len),
                     CORRAL_EINVAL);
    assert_int_equal(
        corral_http_cookie_filter("abc=1; d=2", 10, session, 1, false, out, sizeof out, &len),
        CORRAL_ENOSPC);
    assert_int_equal(len, 10);
}

/* The guide's route rule: analytics cookies stripped, the page comes from the cache; a session
 * cookie left in place keeps the request away from a shared entry. */
static void test_http_stripped_cookies_no_longer_bypass_the_cache(void **state) {
    (void)state;
    static const char *const analytics[] = { "_ga*", "_gid" };
    corral_http_policy pol;
    corral_http_policy_init(&pol);
    fixture fs, fq;
    const int64_t t0 = 1700000000000LL;
    corral_http_entry e = { resp_of(&fs, "200\nDate: Tue, 14 Nov 2023 22:13:20 GMT\n"
                                         "Cache-Control: max-age=60"),
                            t0, t0 };
    const corral_http_msg *req =
        req_of(&fq, "GET /blog\nHost: a\nCookie: _ga=GA1.2\nAccept: */*\nCookie: _gid=7");
    corral_http_decision d;
    assert_int_equal(corral_http_lookup(&pol, req, &e, t0 + 1000, &d), CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_MISS);
    assert_true(d.credentialed);

    corral_http_header hs[8];
    char buf[64];
    corral_http_msg stripped;
    assert_int_equal(corral_http_request_filter_cookies(req, analytics, 2, false, hs, 8, buf,
                                                        sizeof buf, &stripped),
                     CORRAL_OK);
    assert_int_equal(stripped.n_headers, 2); /* Host, Accept */
    assert_null(corral_http_msg_get(&stripped, "Cookie", NULL));
    assert_int_equal(corral_http_lookup(&pol, &stripped, &e, t0 + 1000, &d), CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_HIT);
    assert_false(d.credentialed);

    const corral_http_msg *with_session =
        req_of(&fq, "GET /blog\nHost: a\nCookie: _ga=GA1.2; sessionid=s3cret");
    assert_int_equal(corral_http_request_filter_cookies(with_session, analytics, 2, false, hs, 8,
                                                        buf, sizeof buf, &stripped),
                     CORRAL_OK);
    size_t n;
    const corral_http_header *c = corral_http_msg_get(&stripped, "cookie", &n);
    assert_non_null(c);
    assert_int_equal(n, 1);
    assert_int_equal(c->value_len, 16);
    assert_memory_equal(c->value, "sessionid=s3cret", 16);
    assert_int_equal(corral_http_lookup(&pol, &stripped, &e, t0 + 1000, &d), CORRAL_OK);
    assert_int_equal(d.action, CORRAL_HTTP_MISS);

    /* Too small: no room for the fields, or for the value. */
    assert_int_equal(corral_http_request_filter_cookies(with_session, analytics, 2, false, hs, 1,
                                                        buf, sizeof buf, &stripped),
                     CORRAL_ENOSPC);
    assert_int_equal(corral_http_request_filter_cookies(with_session, analytics, 2, false, hs, 8,
                                                        buf, 4, &stripped),
                     CORRAL_ENOSPC);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_primary_key_table),
        cmocka_unit_test(test_http_primary_key_reports_the_size_needed),
        cmocka_unit_test(test_http_vary_spec_table),
        cmocka_unit_test(test_http_vary_spec_refuses_too_many_names),
        cmocka_unit_test(test_http_variant_keys_isolate_exactly_what_varies),
        cmocka_unit_test(test_http_variant_key_format),
        cmocka_unit_test(test_http_vary_isolates_variants_under_one_primary_key),
        cmocka_unit_test(test_http_cookie_filter_table),
        cmocka_unit_test(test_http_stripped_cookies_no_longer_bypass_the_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
