/*
 * test_http_invalidate.c - invalidation after unsafe methods (src/http/invalidate.c, RFC 9111
 * §4.4): which primary keys a 2xx/3xx answer to an unsafe request purges: the target, and
 * Location / Content-Location resolved against it (RFC 3986 §5.2) when they share its origin.
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
    char text[1024];
    corral_http_header hs[16];
    corral_http_msg m;
} fixture;

/* Parses a start line plus "\n"-separated field lines. */
static const corral_http_msg *parse(fixture *f, corral_http_kind kind, const char *spec) {
    size_t n = 0;
    for (const char *p = spec; *p; p++) {
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
    int rc = corral_http_parse_head(kind, f->text, n, NULL, f->hs, 16, &f->m, NULL);
    if (rc != CORRAL_OK) {
        print_error("fixture \"%s\": %s\n", spec, corral_http_strerror(rc));
        fail();
    }
    return &f->m;
}

typedef struct inval_case {
    const char *name;
    const char *req;  /* request line and fields */
    const char *resp; /* status line and fields */
    const char *keys; /* expected keys joined by ' ' */
} inval_case;

#define POST_CART "POST /cart HTTP/1.1\nHost: a"

static const inval_case cases[] = {
    { "unsafe method, 200: the target", POST_CART, "HTTP/1.1 200 OK", "a/cart" },
    { "303 with Location", POST_CART, "HTTP/1.1 303 See Other\nLocation: /cart/view",
      "a/cart a/cart/view" },
    { "Location and Content-Location", "PUT /p/1 HTTP/1.1\nHost: a",
      "HTTP/1.1 201 Created\nContent-Location: /p/1?v=2\nLocation: http://A/p",
      "a/p/1 a/p a/p/1?v=2" },
    { "404 invalidates nothing", "DELETE /p/1 HTTP/1.1\nHost: a", "HTTP/1.1 404 Not Found", "" },
    { "500 invalidates nothing", "DELETE /p/1 HTTP/1.1\nHost: a", "HTTP/1.1 500 Oops", "" },
    { "GET is safe", "GET /p HTTP/1.1\nHost: a", "HTTP/1.1 200 OK\nLocation: /q", "" },
    { "HEAD is safe", "HEAD /p HTTP/1.1\nHost: a", "HTTP/1.1 200 OK", "" },
    { "OPTIONS is safe", "OPTIONS /p HTTP/1.1\nHost: a", "HTTP/1.1 200 OK", "" },
    { "TRACE is safe", "TRACE /p HTTP/1.1\nHost: a", "HTTP/1.1 200 OK", "" },
    { "an unknown method is unsafe", "FROB /p HTTP/1.1\nHost: a", "HTTP/1.1 200 OK", "a/p" },
    { "another origin is never purged", "PATCH /p HTTP/1.1\nHost: a",
      "HTTP/1.1 200 OK\nLocation: http://evil.example/p\nContent-Location: //evil.example/x",
      "a/p" },
    { "https on the same host", POST_CART, "HTTP/1.1 302 Found\nLocation: https://a/x",
      "a/cart a/x" },
    { "explicit port 80 is the same origin", POST_CART,
      "HTTP/1.1 302 Found\nLocation: http://a:80/y", "a/cart a/y" },
    { "another port is another origin", POST_CART, "HTTP/1.1 302 Found\nLocation: http://a:8080/y",
      "a/cart" },
    { "other schemes are ignored", POST_CART, "HTTP/1.1 302 Found\nLocation: ftp://a/x", "a/cart" },
    { "relative path with dot-dot", "POST /a/b/c HTTP/1.1\nHost: a",
      "HTTP/1.1 302 Found\nLocation: ../d", "a/a/b/c a/a/d" },
    { "relative path, query, fragment dropped", "POST /a/b/c?z HTTP/1.1\nHost: a",
      "HTTP/1.1 302 Found\nLocation: d?x#frag", "a/a/b/c?z a/a/b/d?x" },
    { "query only", "POST /a/b?old HTTP/1.1\nHost: a", "HTTP/1.1 302 Found\nLocation: ?q",
      "a/a/b?old a/a/b?q" },
    { "dot segments removed", POST_CART, "HTTP/1.1 302 Found\nLocation: /x/./y/../z/.",
      "a/cart a/x/z/" },
    { "dot-dot above the root", POST_CART, "HTTP/1.1 302 Found\nLocation: /../../x", "a/cart a/x" },
    { "Location equal to the target is one key", POST_CART, "HTTP/1.1 302 Found\nLocation: /cart",
      "a/cart" },
    { "a malformed reference is ignored", POST_CART, "HTTP/1.1 302 Found\nLocation: /has space",
      "a/cart" },
    { "repeated Location is ignored", POST_CART, "HTTP/1.1 302 Found\nLocation: /x\nLocation: /y",
      "a/cart" },
    { "absolute-form target", "POST http://B.example/x HTTP/1.1\nHost: b.example",
      "HTTP/1.1 201 Created\nLocation: /y", "b.example/x b.example/y" },
    { "host case and port 80 normalised", "POST /x HTTP/1.1\nHost: A.Example:80",
      "HTTP/1.1 201 Created\nLocation: http://a.example/y", "a.example/x a.example/y" },
};

static void test_http_invalidation_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const inval_case *c = &cases[i];
        fixture fq, fr;
        char buf[512];
        corral_buf keys[3];
        size_t n = 99;
        assert_int_equal(corral_http_invalidations(parse(&fq, CORRAL_HTTP_REQUEST, c->req),
                                                   parse(&fr, CORRAL_HTTP_RESPONSE, c->resp), buf,
                                                   sizeof buf, keys, &n),
                         CORRAL_OK);
        char got[512] = "";
        size_t gl = 0;
        for (size_t k = 0; k < n; k++) {
            int w = snprintf(got + gl, sizeof got - gl, "%s%.*s", k ? " " : "", (int)keys[k].len,
                             (const char *)keys[k].data);
            assert_true(w > 0 && (size_t)w < sizeof got - gl);
            gl += (size_t)w;
        }
        if (strcmp(got, c->keys) != 0) {
            print_error("row \"%s\": \"%s\", want \"%s\"\n", c->name, got, c->keys);
            fail();
        }
    }
}

static void test_http_invalidation_keys_match_primary_keys(void **state) {
    (void)state;
    fixture fq, fr, fg;
    char buf[128], pk[128];
    corral_buf keys[3];
    size_t n, pl;
    assert_int_equal(
        corral_http_invalidations(
            parse(&fq, CORRAL_HTTP_REQUEST, "POST /p?id=3 HTTP/1.1\nHost: Shop.Example"),
            parse(&fr, CORRAL_HTTP_RESPONSE, "HTTP/1.1 204 No Content"), buf, sizeof buf, keys, &n),
        CORRAL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(corral_http_primary_key(parse(&fg, CORRAL_HTTP_REQUEST,
                                                   "GET /p?id=3 HTTP/1.1\nHost: shop.example"),
                                             pk, sizeof pk, &pl),
                     CORRAL_OK);
    assert_int_equal(keys[0].len, pl);
    assert_memory_equal(keys[0].data, pk, pl);
}

static void test_http_invalidation_buffer_too_small(void **state) {
    (void)state;
    fixture fq, fr;
    const corral_http_msg *req = parse(&fq, CORRAL_HTTP_REQUEST, POST_CART);
    const corral_http_msg *resp =
        parse(&fr, CORRAL_HTTP_RESPONSE, "HTTP/1.1 303 See Other\nLocation: /cart/view");
    char buf[64];
    corral_buf keys[3];
    size_t n = 99;
    /* "a/cart" + "a/cart/view" = 17 bytes */
    for (size_t cap = 0; cap < 17; cap++) {
        assert_int_equal(corral_http_invalidations(req, resp, buf, cap, keys, &n), CORRAL_ENOSPC);
        assert_int_equal(n, 0);
    }
    assert_int_equal(corral_http_invalidations(req, resp, buf, 17, keys, &n), CORRAL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(corral_http_invalidations(NULL, resp, buf, 17, keys, &n), CORRAL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_invalidation_table),
        cmocka_unit_test(test_http_invalidation_keys_match_primary_keys),
        cmocka_unit_test(test_http_invalidation_buffer_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
