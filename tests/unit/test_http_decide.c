/*
 * test_http_decide.c - the caching decisions (src/http/decide.c, freshness.c) as tables, one row
 * per rule: (request, stored or fetched response, times, policy) -> decision.
 *
 * Messages are written compactly: a request is "METHOD /target" then field lines ("\n"
 * separated; Host is added); a response is "STATUS" then field lines, with "Date: <T0>" added
 * unless the row gives a Date. Times are offsets in seconds from T0 = 1700000000 (Tue, 14 Nov
 * 2023 22:13:20 GMT); no test reads the clock.
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
#define T0_M30   "Tue, 14 Nov 2023 22:12:50 GMT" /* T0 - 30 s */
#define T0_P100  "Tue, 14 Nov 2023 22:15:00 GMT" /* T0 + 100 s */
#define T0_P1H   "Tue, 14 Nov 2023 23:13:20 GMT" /* T0 + 1 h */
#define T0_M5D   "Thu, 09 Nov 2023 22:13:20 GMT" /* T0 - 5 days */
#define T0_M100D "Mon, 07 Aug 2023 22:13:20 GMT" /* T0 - 100 days */
#define S(x)     ((int64_t)(x)*1000)

/* ---- Fixtures ---- */

typedef struct fixture {
    char text[2048];
    corral_http_header hs[32];
    corral_http_msg m;
} fixture;

/* Appends `spec`'s lines to `f->text` at `*n`, CRLF-terminated. */
static void put_lines(fixture *f, size_t *n, const char *spec) {
    for (const char *p = spec; *p; p++) {
        assert_true(*n + 2 < sizeof f->text);
        if (*p == '\n') {
            f->text[(*n)++] = '\r';
            f->text[(*n)++] = '\n';
        } else {
            f->text[(*n)++] = *p;
        }
    }
}

static void finish(fixture *f, size_t n, corral_http_kind kind) {
    assert_true(n + 5 < sizeof f->text);
    memcpy(f->text + n, "\r\n\r\n", 5);
    n += 4;
    int rc = corral_http_parse_head(kind, f->text, n, NULL, f->hs, 32, &f->m, NULL);
    if (rc != CORRAL_OK) {
        print_error("fixture does not parse (%s):\n%s\n", corral_http_strerror(rc), f->text);
        fail();
    }
}

static const corral_http_msg *req_of(fixture *f, const char *spec) {
    const char *sp = strchr(spec, '\n');
    size_t line = sp ? (size_t)(sp - spec) : strlen(spec);
    int w =
        snprintf(f->text, sizeof f->text, "%.*s HTTP/1.1\r\nHost: shop.example", (int)line, spec);
    assert_true(w > 0 && (size_t)w < sizeof f->text);
    size_t n = (size_t)w;
    if (sp) put_lines(f, &n, sp);
    finish(f, n, CORRAL_HTTP_REQUEST);
    return &f->m;
}

static const corral_http_msg *resp_of(fixture *f, const char *spec) {
    int w = snprintf(f->text, sizeof f->text, "HTTP/1.1 %.3s X", spec);
    assert_true(w > 0);
    size_t n = (size_t)w;
    if (!strstr(spec, "\nDate:")) put_lines(f, &n, "\nDate: " T0);
    const char *sp = strchr(spec, '\n');
    if (sp) put_lines(f, &n, sp);
    finish(f, n, CORRAL_HTTP_RESPONSE);
    return &f->m;
}

/* Policies the rows refer to. */
typedef enum pol_kind {
    P_DEFAULT = 0,
    P_PRIVATE,    /* a private cache */
    P_GRACE,      /* grace 30 s, stale_if_error 300 s */
    P_OVERRIDE,   /* ttl_override 120 s */
    P_MAXTTL,     /* max_ttl 60 s */
    P_NOHEUR,     /* heuristic_percent 0 */
    P_IGNORE_REQ, /* the request's Cache-Control is ignored */
    P_NOKEEP,     /* keep 0 */
    P_TARGETED    /* obeys Corral-Cache-Control, then CDN-Cache-Control (RFC 9213) */
} pol_kind;

static void policy_of(pol_kind k, corral_http_policy *p) {
    corral_http_policy_init(p);
    switch (k) {
    case P_DEFAULT: break;
    case P_PRIVATE: p->shared = false; break;
    case P_GRACE:
        p->grace_ms = S(30);
        p->stale_if_error_ms = S(300);
        break;
    case P_OVERRIDE: p->ttl_override_ms = S(120); break;
    case P_MAXTTL: p->max_ttl_ms = S(60); break;
    case P_NOHEUR: p->heuristic_percent = 0; break;
    case P_IGNORE_REQ: p->honor_request_cache_control = false; break;
    case P_NOKEEP: p->keep_ms = 0; break;
    case P_TARGETED: p->cc_targets = "Corral-Cache-Control, CDN-Cache-Control"; break;
    }
}

static void expect_reason(const char *row, const char *reason, const char *want) {
    if (!want) return;
    if (!reason || !strstr(reason, want)) {
        print_error("row \"%s\": reason \"%s\" lacks \"%s\"\n", row, reason ? reason : "(null)",
                    want);
        fail();
    }
}

/* ---- Storing (RFC 9111 §3, §4.2.1, §4.2.2, §4.2.3; RFC 5861) ---- */

#define GET "GET /p"
#define NO  (-1)

typedef struct store_case {
    const char *name;
    pol_kind pol;
    const char *req;
    const char *resp;
    int req_s, resp_s; /* request and response times, seconds after T0 */
    corral_http_action action;
    bool hit_for_pass;
    int64_t ttl_s, grace_s, sie_s, keep_s; /* NO: not checked */
    const char *reason;                    /* a substring of the reason */
} store_case;

static const store_case store_cases[] = {
    /* freshness lifetime (§4.2.1) */
    { "max-age", P_DEFAULT, GET, "200\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_STORE, false,
      60, 0, 0, 0, "max-age" },
    { "max-age with an ETag is kept for revalidation", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nETag: \"v1\"", 0, 0, CORRAL_HTTP_STORE, false, 60, 0, 0, 600,
      NULL },
    { "quoted max-age is accepted (§5.2)", P_DEFAULT, GET, "200\nCache-Control: max-age=\"60\"", 0,
      0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, "max-age" },
    { "directive names are case-insensitive", P_DEFAULT, GET, "200\nCache-Control: MAX-AGE=60", 0,
      0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "max-age split across fields", P_DEFAULT, GET,
      "200\nCache-Control: public\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60,
      NO, NO, NO, NULL },
    { "s-maxage wins in a shared cache", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, s-maxage=120", 0, 0, CORRAL_HTTP_STORE, false, 120, NO, NO,
      NO, "s-maxage" },
    { "s-maxage is ignored by a private cache", P_PRIVATE, GET,
      "200\nCache-Control: max-age=60, s-maxage=120", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO,
      NO, "max-age" },
    { "Expires minus Date", P_DEFAULT, GET, "200\nExpires: " T0_P1H, 0, 0, CORRAL_HTTP_STORE, false,
      3600, NO, NO, NO, "Expires" },
    { "max-age wins over Expires", P_DEFAULT, GET,
      "200\nExpires: " T0_P1H "\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO,
      NO, NO, "max-age" },
    { "Expires without Date counts from receipt", P_DEFAULT, GET,
      "200\nDate: not a date\nExpires: " T0_P1H, 100, 100, CORRAL_HTTP_STORE, false, 3500, NO, NO,
      NO, "Expires" },
    { "invalid Expires means already expired (§5.3)", P_DEFAULT, GET,
      "200\nExpires: 0\nETag: \"v\"", 0, 0, CORRAL_HTTP_STORE, false, 0, NO, NO, 600, NULL },
    { "invalid Expires, no validator: nothing to keep", P_DEFAULT, GET, "200\nExpires: 0", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, "stale on arrival" },
    { "repeated max-age is stale (§4.2.1)", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, max-age=120\nETag: \"v\"", 0, 0, CORRAL_HTTP_STORE, false, 0,
      NO, NO, 600, "invalid" },
    { "malformed max-age is stale", P_DEFAULT, GET, "200\nCache-Control: max-age=6o\nETag: \"v\"",
      0, 0, CORRAL_HTTP_STORE, false, 0, NO, NO, 600, "invalid" },
    { "huge max-age is 2^31 s (§1.2.2)", P_DEFAULT, GET,
      "200\nCache-Control: max-age=99999999999999999999", 0, 0, CORRAL_HTTP_STORE, false,
      2147483648LL, NO, NO, NO, NULL },
    { "max-age=0 without validator is not kept", P_DEFAULT, GET, "200\nCache-Control: max-age=0", 0,
      0, CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, NULL },
    { "policy caps the lifetime", P_MAXTTL, GET, "200\nCache-Control: max-age=3600", 0, 0,
      CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },

    /* age on arrival (§4.2.3) */
    { "Age counts against max-age", P_DEFAULT, GET, "200\nCache-Control: max-age=60\nAge: 20", 0, 0,
      CORRAL_HTTP_STORE, false, 40, NO, NO, NO, NULL },
    { "apparent age from Date", P_DEFAULT, GET, "200\nDate: " T0_M30 "\nCache-Control: max-age=60",
      0, 0, CORRAL_HTTP_STORE, false, 30, NO, NO, NO, NULL },
    { "response delay is added to Age", P_DEFAULT, GET,
      "200\nDate: " T0_P100 "\nAge: 10\nCache-Control: max-age=60", 95, 100, CORRAL_HTTP_STORE,
      false, 45, NO, NO, NO, NULL },
    { "Date in the future is no negative age", P_DEFAULT, GET,
      "200\nDate: " T0_P1H "\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO,
      NO, NO, NULL },
    { "Age as a list: its first member (§5.1)", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nAge: 20, 50", 0, 0, CORRAL_HTTP_STORE, false, 40, NO, NO, NO,
      NULL },
    { "Age on two lines: the first (§5.1)", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nAge: 20\nAge: 50", 0, 0, CORRAL_HTTP_STORE, false, 40, NO,
      NO, NO, NULL },
    { "Age over max-age: stale on arrival", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nAge: 90\nETag: \"v\"", 0, 0, CORRAL_HTTP_STORE, false, 0, NO,
      NO, 600, "stale on arrival" },

    /* targeted cache control (RFC 9213): the first valid targeted field replaces Cache-Control */
    { "CDN-Cache-Control replaces Cache-Control", P_TARGETED, GET,
      "200\nCache-Control: no-store\nCDN-Cache-Control: max-age=600", 0, 0, CORRAL_HTTP_STORE,
      false, 600, NO, NO, NO, "max-age" },
    { "CDN-Cache-Control can forbid what Cache-Control allows", P_TARGETED, GET,
      "200\nCache-Control: max-age=600\nCDN-Cache-Control: private", 0, 0, CORRAL_HTTP_DONT_STORE,
      true, NO, NO, NO, NO, "private" },
    { "the configured field comes before CDN-Cache-Control", P_TARGETED, GET,
      "200\nCDN-Cache-Control: max-age=600\ncorral-cache-control: max-age=30", 0, 0,
      CORRAL_HTTP_STORE, false, 30, NO, NO, NO, NULL },
    { "an invalid targeted field is ignored", P_TARGETED, GET,
      "200\nCache-Control: max-age=60\nCorral-Cache-Control: Max-Age=5\n"
      "CDN-Cache-Control: max-age=900",
      0, 0, CORRAL_HTTP_STORE, false, 900, NO, NO, NO, NULL },
    { "a targeted field that does not parse falls back to Cache-Control", P_TARGETED, GET,
      "200\nCache-Control: max-age=60\nCDN-Cache-Control: max-age=600,", 0, 0, CORRAL_HTTP_STORE,
      false, 60, NO, NO, NO, NULL },
    { "a targeted member set to false is absent", P_TARGETED, GET,
      "200\nCache-Control: no-store\nCDN-Cache-Control: max-age=60, no-store=?0", 0, 0,
      CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "targeted fields mean nothing to a cache not told to obey them", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nCDN-Cache-Control: max-age=600", 0, 0, CORRAL_HTTP_STORE,
      false, 60, NO, NO, NO, NULL },
    { "targeted stale-while-revalidate", P_TARGETED, GET,
      "200\nCDN-Cache-Control: max-age=60, stale-while-revalidate=30;x=\"a\", k=(1 2)", 0, 0,
      CORRAL_HTTP_STORE, false, 60, 30, NO, NO, NULL },

    /* heuristic freshness (§4.2.2) */
    { "heuristic: 10% of Date - Last-Modified", P_DEFAULT, GET, "200\nLast-Modified: " T0_M5D, 0, 0,
      CORRAL_HTTP_STORE, false, 43200, NO, NO, 600, "heuristic" },
    { "heuristic is capped", P_DEFAULT, GET, "200\nLast-Modified: " T0_M100D, 0, 0,
      CORRAL_HTTP_STORE, false, 86400, NO, NO, NO, "heuristic" },
    { "no heuristic when disabled", P_NOHEUR, GET, "200\nLast-Modified: " T0_M5D, 0, 0,
      CORRAL_HTTP_STORE, false, 0, NO, NO, 600, NULL },
    { "no heuristic beside explicit freshness", P_DEFAULT, GET,
      "200\nLast-Modified: " T0_M5D "\nCache-Control: max-age=10", 0, 0, CORRAL_HTTP_STORE, false,
      10, NO, NO, NO, "max-age" },
    { "404 is heuristically cacheable", P_DEFAULT, GET, "404\nLast-Modified: " T0_M5D, 0, 0,
      CORRAL_HTTP_STORE, false, 43200, NO, NO, NO, "heuristic" },
    { "302 needs explicit freshness (§3)", P_DEFAULT, GET, "302\nLast-Modified: " T0_M5D, 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, "explicit freshness" },
    { "302 with max-age is stored", P_DEFAULT, GET, "302\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "500 needs explicit freshness", P_DEFAULT, GET, "500", 0, 0, CORRAL_HTTP_DONT_STORE, true, NO,
      NO, NO, NO, "explicit freshness" },
    { "public allows heuristics for any status", P_DEFAULT, GET,
      "500\nCache-Control: public\nLast-Modified: " T0_M5D, 0, 0, CORRAL_HTTP_STORE, false, 43200,
      NO, NO, NO, "heuristic" },
    { "200 without freshness or validator is not kept", P_DEFAULT, GET, "200", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, NULL },
    { "ttl override stores what needs explicit freshness", P_OVERRIDE, GET, "302", 0, 0,
      CORRAL_HTTP_STORE, false, 120, NO, NO, NO, "ttl override" },
    { "ttl override replaces max-age", P_OVERRIDE, GET, "200\nCache-Control: max-age=5", 0, 0,
      CORRAL_HTTP_STORE, false, 120, NO, NO, NO, "ttl override" },

    /* what is never stored (§3, §5.2.2) */
    { "response no-store", P_DEFAULT, GET, "200\nCache-Control: no-store, max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, "no-store" },
    { "must-understand with a known status ignores no-store (§5.2.2.3)", P_DEFAULT, GET,
      "200\nCache-Control: no-store, must-understand, max-age=60", 0, 0, CORRAL_HTTP_STORE, false,
      60, NO, NO, NO, NULL },
    { "must-understand with an unknown status", P_DEFAULT, GET,
      "299\nCache-Control: must-understand, max-age=60", 0, 0, CORRAL_HTTP_DONT_STORE, true, NO, NO,
      NO, NO, "must-understand" },
    { "private in a shared cache", P_DEFAULT, GET, "200\nCache-Control: private, max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, "private" },
    { "qualified private counts as private", P_DEFAULT, GET,
      "200\nCache-Control: private=\"X-User\", max-age=60", 0, 0, CORRAL_HTTP_DONT_STORE, true, NO,
      NO, NO, NO, "private" },
    { "private in a private cache", P_PRIVATE, GET, "200\nCache-Control: private, max-age=60", 0, 0,
      CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "Vary: * is never stored", P_DEFAULT, GET, "200\nCache-Control: max-age=60\nVary: *", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, "Vary: *" },
    { "Vary: * in a list", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nVary: Accept-Encoding, *", 0, 0, CORRAL_HTTP_DONT_STORE,
      true, NO, NO, NO, NO, "Vary: *" },
    { "Set-Cookie is never stored (the guide)", P_DEFAULT, GET,
      "200\nCache-Control: public, max-age=60\nSet-Cookie: s=1", 0, 0, CORRAL_HTTP_DONT_STORE, true,
      NO, NO, NO, NO, "Set-Cookie" },
    { "Set-Cookie hidden behind Connection is still seen", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60\nConnection: Set-Cookie\nSet-Cookie: s=1", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, "Set-Cookie" },
    { "request no-store (§5.2.1.5)", P_DEFAULT, GET "\nCache-Control: no-store",
      "200\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO,
      "request no-store" },
    { "request no-store ignored by policy", P_IGNORE_REQ, GET "\nCache-Control: no-store",
      "200\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "HEAD responses are not stored", P_DEFAULT, "HEAD /p", "200\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO, "HEAD" },
    { "POST responses are not stored", P_DEFAULT, "POST /p", "200\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO, "method" },
    { "206 is not stored", P_DEFAULT, GET, "206\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO, "206" },
    { "304 is not stored", P_DEFAULT, GET, "304\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO, "304" },
    { "1xx is not stored", P_DEFAULT, GET, "103\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO, "interim" },

    /* no-cache (§5.2.2.4) */
    { "no-cache with a validator: stored, revalidated on use", P_DEFAULT, GET,
      "200\nCache-Control: no-cache, max-age=60\nETag: \"v\"", 0, 0, CORRAL_HTTP_STORE, false, 0, 0,
      0, 600, "no-cache" },
    { "no-cache without validator: nothing to keep", P_DEFAULT, GET,
      "200\nCache-Control: no-cache, max-age=60", 0, 0, CORRAL_HTTP_DONT_STORE, true, NO, NO, NO,
      NO, NULL },
    { "no-cache, keep disabled", P_NOKEEP, GET, "200\nCache-Control: no-cache\nETag: \"v\"", 0, 0,
      CORRAL_HTTP_DONT_STORE, true, NO, NO, NO, NO, NULL },

    /* Authorization (§3.5) and Cookie (the guide) */
    { "Authorization without permission", P_DEFAULT, GET "\nAuthorization: Bearer x",
      "200\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO,
      "Authorization" },
    { "Authorization with public", P_DEFAULT, GET "\nAuthorization: Bearer x",
      "200\nCache-Control: public, max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO,
      NULL },
    { "Authorization with s-maxage", P_DEFAULT, GET "\nAuthorization: Bearer x",
      "200\nCache-Control: s-maxage=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "Authorization with must-revalidate", P_DEFAULT, GET "\nAuthorization: Bearer x",
      "200\nCache-Control: must-revalidate, max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO,
      NO, NULL },
    { "Authorization with only Vary: Authorization (§3.5 lists no Vary)", P_DEFAULT,
      GET "\nAuthorization: Bearer x", "200\nCache-Control: max-age=60\nVary: Authorization", 0, 0,
      CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO, "Authorization" },
    { "Cookie with s-maxage", P_DEFAULT, GET "\nCookie: sessionid=abc",
      "200\nCache-Control: s-maxage=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "Authorization in a private cache", P_PRIVATE, GET "\nAuthorization: Bearer x",
      "200\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },
    { "Cookie without permission", P_DEFAULT, GET "\nCookie: sessionid=abc",
      "200\nCache-Control: max-age=60", 0, 0, CORRAL_HTTP_DONT_STORE, false, NO, NO, NO, NO,
      "Cookie" },
    { "Cookie with Vary: Cookie", P_DEFAULT, GET "\nCookie: sessionid=abc",
      "200\nCache-Control: max-age=60\nVary: Accept-Encoding, Cookie", 0, 0, CORRAL_HTTP_STORE,
      false, 60, NO, NO, NO, NULL },
    { "Cookie with public", P_DEFAULT, GET "\nCookie: sessionid=abc",
      "200\nCache-Control: public, max-age=60", 0, 0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO,
      NULL },
    { "empty Cookie is no cookie", P_DEFAULT, GET "\nCookie:", "200\nCache-Control: max-age=60", 0,
      0, CORRAL_HTTP_STORE, false, 60, NO, NO, NO, NULL },

    /* stale windows (RFC 5861, §4.2.4) */
    { "stale-while-revalidate", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, stale-while-revalidate=30", 0, 0, CORRAL_HTTP_STORE, false,
      60, 30, 0, 0, NULL },
    { "stale-if-error", P_DEFAULT, GET, "200\nCache-Control: max-age=60, stale-if-error=300", 0, 0,
      CORRAL_HTTP_STORE, false, 60, 0, 300, 0, NULL },
    { "stale windows after stale on arrival", P_DEFAULT, GET,
      "200\nCache-Control: max-age=0, stale-while-revalidate=30", 0, 0, CORRAL_HTTP_STORE, false, 0,
      30, 0, 0, NULL },
    { "must-revalidate forbids stale windows", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, must-revalidate, stale-while-revalidate=30, "
      "stale-if-error=60",
      0, 0, CORRAL_HTTP_STORE, false, 60, 0, 0, 0, NULL },
    { "proxy-revalidate forbids stale windows in a shared cache", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, proxy-revalidate, stale-while-revalidate=30", 0, 0,
      CORRAL_HTTP_STORE, false, 60, 0, 0, 0, NULL },
    { "s-maxage keeps an explicit stale-while-revalidate", P_DEFAULT, GET,
      "200\nCache-Control: s-maxage=60, stale-while-revalidate=30", 0, 0, CORRAL_HTTP_STORE, false,
      60, 30, 0, 0, NULL },
    { "policy grace and stale_if_error", P_GRACE, GET, "200\nCache-Control: max-age=60", 0, 0,
      CORRAL_HTTP_STORE, false, 60, 30, 300, 0, NULL },
    { "policy grace beside a longer directive", P_GRACE, GET,
      "200\nCache-Control: max-age=60, stale-while-revalidate=90", 0, 0, CORRAL_HTTP_STORE, false,
      60, 90, 300, 0, NULL },
    { "s-maxage rules out the policy's grace", P_GRACE, GET, "200\nCache-Control: s-maxage=60", 0,
      0, CORRAL_HTTP_STORE, false, 60, 0, 0, 0, NULL },
    { "must-revalidate rules out the policy's grace", P_GRACE, GET,
      "200\nCache-Control: max-age=60, must-revalidate", 0, 0, CORRAL_HTTP_STORE, false, 60, 0, 0,
      0, NULL },
};

static void test_http_store_decide_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof store_cases / sizeof store_cases[0]; i++) {
        const store_case *c = &store_cases[i];
        corral_http_policy pol;
        policy_of(c->pol, &pol);
        fixture fq, fr;
        const corral_http_msg *req = req_of(&fq, c->req);
        const corral_http_msg *resp = resp_of(&fr, c->resp);
        corral_http_decision d;
        assert_int_equal(corral_http_store_decide(&pol, req, resp, T0_MS + S(c->req_s),
                                                  T0_MS + S(c->resp_s), &d),
                         CORRAL_OK);
        bool ok = d.action == c->action && d.hit_for_pass == c->hit_for_pass;
        if (c->action == CORRAL_HTTP_STORE) {
            ok = ok && (c->ttl_s == NO || d.ttl_ms == S(c->ttl_s)) &&
                 (c->grace_s == NO || d.grace_ms == S(c->grace_s)) &&
                 (c->sie_s == NO || d.stale_if_error_ms == S(c->sie_s)) &&
                 (c->keep_s == NO || d.keep_ms == S(c->keep_s));
            int64_t tail = d.grace_ms;
            if (d.stale_if_error_ms > tail) tail = d.stale_if_error_ms;
            if (d.keep_ms > tail) tail = d.keep_ms;
            ok = ok && d.store_ttl_ms == d.ttl_ms + tail && d.store_ttl_ms > 0;
        }
        if (!ok) {
            print_error("row \"%s\": %s (%s) hfp %d ttl %lld grace %lld sie %lld keep %lld\n",
                        c->name, corral_http_action_name(d.action), d.reason, d.hit_for_pass,
                        (long long)d.ttl_ms, (long long)d.grace_ms, (long long)d.stale_if_error_ms,
                        (long long)d.keep_ms);
            fail();
        }
        assert_non_null(d.reason);
        expect_reason(c->name, d.reason, c->reason);
    }
}

/* ---- Lookup (RFC 9111 §4, §5.2.1; RFC 5861 §3) ---- */

typedef struct lookup_case {
    const char *name;
    pol_kind pol;
    const char *req;
    const char *stored; /* NULL: nothing stored */
    int now_s;          /* the entry was fetched at T0 (request and response) */
    corral_http_action action;
    int64_t age_s; /* NO: not checked */
    const char *reason;
} lookup_case;

#define FRESH60 "200\nCache-Control: max-age=60"
#define ETAG    "\nETag: \"v1\""

static const lookup_case lookup_cases[] = {
    { "nothing stored", P_DEFAULT, GET, NULL, 0, CORRAL_HTTP_MISS, NO, "not in cache" },
    { "nothing stored, only-if-cached: 504 (§5.2.1.7)", P_DEFAULT,
      GET "\nCache-Control: only-if-cached", NULL, 0, CORRAL_HTTP_GATEWAY_TIMEOUT, NO,
      "only-if-cached" },
    { "unsafe methods pass", P_DEFAULT, "POST /p", FRESH60, 10, CORRAL_HTTP_PASS, NO, "method" },
    { "unknown methods pass", P_DEFAULT, "PURGE /p", FRESH60, 10, CORRAL_HTTP_PASS, NO, NULL },
    { "fresh: hit with its age", P_DEFAULT, GET, FRESH60, 30, CORRAL_HTTP_HIT, 30, "fresh" },
    { "HEAD is served from the GET entry", P_DEFAULT, "HEAD /p", FRESH60, 30, CORRAL_HTTP_HIT, 30,
      NULL },
    { "expired exactly at its lifetime", P_DEFAULT, GET, FRESH60, 60, CORRAL_HTTP_MISS, 60,
      "stale, no validator" },
    { "stale with an ETag revalidates", P_DEFAULT, GET, FRESH60 ETAG, 61, CORRAL_HTTP_REVALIDATE,
      61, "stale" },
    { "stale with Last-Modified revalidates", P_DEFAULT, GET, FRESH60 "\nLast-Modified: " T0_M5D,
      61, CORRAL_HTTP_REVALIDATE, NO, NULL },
    { "stored Age adds to the age", P_DEFAULT, GET, FRESH60 "\nAge: 20", 30, CORRAL_HTTP_HIT, 50,
      NULL },
    { "stored Age makes it stale sooner", P_DEFAULT, GET, FRESH60 "\nAge: 20", 45, CORRAL_HTTP_MISS,
      65, NULL },
    { "Expires", P_DEFAULT, GET, "200\nExpires: " T0_P1H, 1800, CORRAL_HTTP_HIT, 1800, NULL },
    { "Expires in lower case (RFC 9110 §5.6.7)", P_DEFAULT, GET,
      "200\nExpires: tue, 14 nov 2023 23:13:20 gmt", 1800, CORRAL_HTTP_HIT, 1800, NULL },
    { "a stored CDN-Cache-Control decides the lookup", P_TARGETED, GET,
      "200\nCache-Control: max-age=10\nCDN-Cache-Control: max-age=100", 50, CORRAL_HTTP_HIT, 50,
      NULL },
    { "a stored CDN-Cache-Control no-cache revalidates", P_TARGETED, GET,
      "200\nCache-Control: max-age=100\nCDN-Cache-Control: no-cache" ETAG, 5,
      CORRAL_HTTP_REVALIDATE, NO, NULL },
    { "heuristic", P_DEFAULT, GET, "200\nLast-Modified: " T0_M5D, 3600, CORRAL_HTTP_HIT, NO, NULL },
    { "invalid max-age is stale", P_DEFAULT, GET, "200\nCache-Control: max-age=x" ETAG, 1,
      CORRAL_HTTP_REVALIDATE, NO, NULL },
    { "stored Vary: * is never used", P_DEFAULT, GET, FRESH60 "\nVary: *", 1, CORRAL_HTTP_MISS, NO,
      "not reusable" },

    /* no-cache (§5.2.2.4, §5.2.1.4) */
    { "response no-cache revalidates even when fresh", P_DEFAULT, GET,
      "200\nCache-Control: no-cache, max-age=60" ETAG, 1, CORRAL_HTTP_REVALIDATE, NO,
      "response no-cache" },
    { "request no-cache revalidates", P_DEFAULT, GET "\nCache-Control: no-cache", FRESH60 ETAG, 1,
      CORRAL_HTTP_REVALIDATE, NO, "request no-cache" },
    { "request no-cache without validator fetches", P_DEFAULT, GET "\nCache-Control: no-cache",
      FRESH60, 1, CORRAL_HTTP_MISS, NO, "request no-cache" },
    { "request no-cache ignored by policy", P_IGNORE_REQ, GET "\nCache-Control: no-cache", FRESH60,
      1, CORRAL_HTTP_HIT, NO, NULL },

    /* request directives (§5.2.1) */
    { "request max-age older than the entry", P_DEFAULT, GET "\nCache-Control: max-age=10",
      FRESH60 ETAG, 30, CORRAL_HTTP_REVALIDATE, 30, "max-age" },
    { "request max-age=0 (reload)", P_DEFAULT, GET "\nCache-Control: max-age=0", FRESH60, 1,
      CORRAL_HTTP_MISS, NO, "max-age" },
    { "request max-age satisfied", P_DEFAULT, GET "\nCache-Control: max-age=40", FRESH60, 30,
      CORRAL_HTTP_HIT, NO, NULL },
    { "request min-fresh not met", P_DEFAULT, GET "\nCache-Control: min-fresh=40", FRESH60 ETAG, 30,
      CORRAL_HTTP_REVALIDATE, NO, "min-fresh" },
    { "request min-fresh met", P_DEFAULT, GET "\nCache-Control: min-fresh=20", FRESH60, 30,
      CORRAL_HTTP_HIT, NO, NULL },
    { "request max-stale without value", P_DEFAULT, GET "\nCache-Control: max-stale", FRESH60, 1000,
      CORRAL_HTTP_HIT, 1000, "max-stale" },
    { "request max-stale within", P_DEFAULT, GET "\nCache-Control: max-stale=10", FRESH60, 65,
      CORRAL_HTTP_HIT, NO, "max-stale" },
    { "request max-stale exceeded", P_DEFAULT, GET "\nCache-Control: max-stale=10", FRESH60 ETAG,
      75, CORRAL_HTTP_REVALIDATE, NO, NULL },
    { "max-stale cannot beat must-revalidate (§5.2.2.2)", P_DEFAULT,
      GET "\nCache-Control: max-stale", "200\nCache-Control: max-age=60, must-revalidate" ETAG, 65,
      CORRAL_HTTP_REVALIDATE, NO, "must-revalidate" },
    { "max-stale cannot beat s-maxage in a shared cache (§5.2.2.10)", P_DEFAULT,
      GET "\nCache-Control: max-stale", "200\nCache-Control: s-maxage=60" ETAG, 65,
      CORRAL_HTTP_REVALIDATE, NO, NULL },
    { "max-stale with proxy-revalidate in a private cache", P_PRIVATE,
      GET "\nCache-Control: max-stale", "200\nCache-Control: max-age=60, proxy-revalidate", 65,
      CORRAL_HTTP_HIT, NO, "max-stale" },
    { "only-if-cached with a fresh entry", P_DEFAULT, GET "\nCache-Control: only-if-cached",
      FRESH60, 30, CORRAL_HTTP_HIT, NO, NULL },
    { "only-if-cached with a stale entry: 504", P_DEFAULT, GET "\nCache-Control: only-if-cached",
      FRESH60 ETAG, 90, CORRAL_HTTP_GATEWAY_TIMEOUT, NO, "only-if-cached" },

    /* stale-while-revalidate and grace (RFC 5861 §3, §4.2.4) */
    { "stale-while-revalidate inside the window", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, stale-while-revalidate=30", 70,
      CORRAL_HTTP_STALE_WHILE_REVALIDATE, 70, "stale-while-revalidate" },
    { "stale-while-revalidate past the window", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, stale-while-revalidate=30" ETAG, 100, CORRAL_HTTP_REVALIDATE,
      NO, NULL },
    { "must-revalidate forbids stale-while-revalidate", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, must-revalidate, stale-while-revalidate=30" ETAG, 70,
      CORRAL_HTTP_REVALIDATE, NO, "must-revalidate" },
    { "proxy-revalidate forbids it in a shared cache", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, proxy-revalidate, stale-while-revalidate=30" ETAG, 70,
      CORRAL_HTTP_REVALIDATE, NO, NULL },
    { "proxy-revalidate does not bind a private cache", P_PRIVATE, GET,
      "200\nCache-Control: max-age=60, proxy-revalidate, stale-while-revalidate=30", 70,
      CORRAL_HTTP_STALE_WHILE_REVALIDATE, NO, NULL },
    { "s-maxage with an explicit stale-while-revalidate", P_DEFAULT, GET,
      "200\nCache-Control: s-maxage=60, stale-while-revalidate=30", 70,
      CORRAL_HTTP_STALE_WHILE_REVALIDATE, NO, NULL },
    { "a client asking max-age gets no stale", P_DEFAULT, GET "\nCache-Control: max-age=0",
      "200\nCache-Control: max-age=60, stale-while-revalidate=30" ETAG, 70, CORRAL_HTTP_REVALIDATE,
      NO, NULL },
    { "a malformed client max-age is ignored", P_DEFAULT, GET "\nCache-Control: max-age=soon",
      "200\nCache-Control: max-age=60, stale-while-revalidate=30", 70,
      CORRAL_HTTP_STALE_WHILE_REVALIDATE, NO, NULL },
    { "policy grace", P_GRACE, GET, FRESH60, 80, CORRAL_HTTP_STALE_WHILE_REVALIDATE, NO, "grace" },
    { "policy grace past its end", P_GRACE, GET, FRESH60 ETAG, 95, CORRAL_HTTP_REVALIDATE, NO,
      NULL },
    { "policy grace does not apply past s-maxage", P_GRACE, GET,
      "200\nCache-Control: s-maxage=60" ETAG, 70, CORRAL_HTTP_REVALIDATE, NO, NULL },

    /* credentials (§3.5 and the guide's warning) */
    { "Authorization: entry not marked shareable", P_DEFAULT,
      GET "\nAuthorization: Basic eA==", FRESH60, 10, CORRAL_HTTP_MISS, NO, "Authorization" },
    { "Authorization: public entry", P_DEFAULT, GET "\nAuthorization: Basic eA==",
      "200\nCache-Control: public, max-age=60", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Authorization: s-maxage entry", P_DEFAULT, GET "\nAuthorization: Basic eA==",
      "200\nCache-Control: s-maxage=60", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Authorization: must-revalidate entry", P_DEFAULT, GET "\nAuthorization: Basic eA==",
      "200\nCache-Control: max-age=60, must-revalidate", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Authorization: entry varying on Authorization", P_DEFAULT, GET "\nAuthorization: Basic eA==",
      FRESH60 "\nVary: Authorization", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Cookie: entry not marked shareable", P_DEFAULT, GET "\nCookie: sessionid=abc", FRESH60, 10,
      CORRAL_HTTP_MISS, NO, "Cookie" },
    { "Cookie: entry varying on Cookie", P_DEFAULT, GET "\nCookie: sessionid=abc",
      FRESH60 "\nVary: Cookie", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Cookie: public entry", P_DEFAULT, GET "\nCookie: sessionid=abc",
      "200\nCache-Control: public, max-age=60", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Cookie: s-maxage entry", P_DEFAULT, GET "\nCookie: sessionid=abc",
      "200\nCache-Control: s-maxage=60", 10, CORRAL_HTTP_HIT, NO, NULL },
    { "Cookie: private cache", P_PRIVATE, GET "\nCookie: sessionid=abc", FRESH60, 10,
      CORRAL_HTTP_HIT, NO, NULL },
    { "Cookie with only-if-cached: 504", P_DEFAULT,
      GET "\nCookie: sessionid=abc\nCache-Control: only-if-cached", FRESH60, 10,
      CORRAL_HTTP_GATEWAY_TIMEOUT, NO, NULL },
};

static void test_http_lookup_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof lookup_cases / sizeof lookup_cases[0]; i++) {
        const lookup_case *c = &lookup_cases[i];
        corral_http_policy pol;
        policy_of(c->pol, &pol);
        fixture fq, fr;
        const corral_http_msg *req = req_of(&fq, c->req);
        corral_http_entry e = { NULL, T0_MS, T0_MS };
        if (c->stored) e.resp = resp_of(&fr, c->stored);
        corral_http_decision d;
        assert_int_equal(
            corral_http_lookup(&pol, req, c->stored ? &e : NULL, T0_MS + S(c->now_s), &d),
            CORRAL_OK);
        if (d.action != c->action || (c->age_s != NO && d.age_s != c->age_s)) {
            print_error("row \"%s\": %s (%s), age %lld\n", c->name,
                        corral_http_action_name(d.action), d.reason, (long long)d.age_s);
            fail();
        }
        assert_non_null(d.reason);
        expect_reason(c->name, d.reason, c->reason);
    }
}

static void test_http_lookup_reports_credentials_and_no_store(void **state) {
    (void)state;
    corral_http_policy pol;
    corral_http_policy_init(&pol);
    fixture fq;
    corral_http_decision d;
    const corral_http_msg *req = req_of(&fq, GET "\nCookie: a=1\nCache-Control: no-store");
    assert_int_equal(corral_http_lookup(&pol, req, NULL, T0_MS, &d), CORRAL_OK);
    assert_true(d.credentialed);
    assert_true(d.request_no_store);
    assert_int_equal(d.action, CORRAL_HTTP_MISS);
    req = req_of(&fq, GET);
    assert_int_equal(corral_http_lookup(&pol, req, NULL, T0_MS, &d), CORRAL_OK);
    assert_false(d.credentialed);
    assert_false(d.request_no_store);
    assert_int_equal(corral_http_lookup(NULL, req, NULL, T0_MS, &d), CORRAL_EINVAL);
    assert_int_equal(d.action, CORRAL_HTTP_NONE);
    fixture fr;
    assert_int_equal(corral_http_lookup(&pol, resp_of(&fr, "200"), NULL, T0_MS, &d), CORRAL_EINVAL);
}

/* ---- Origin errors (RFC 5861 §4) ---- */

typedef struct error_case {
    const char *name;
    pol_kind pol;
    const char *req;
    const char *stored;
    int now_s;
    corral_http_action action;
    const char *reason;
} error_case;

static const error_case error_cases[] = {
    { "nothing stored", P_DEFAULT, GET, NULL, 0, CORRAL_HTTP_ERROR, "nothing stored" },
    { "fresh entry stands in", P_DEFAULT, GET "\nCache-Control: no-cache", FRESH60, 10,
      CORRAL_HTTP_STALE_IF_ERROR, "fresh" },
    { "stale-if-error inside the window", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, stale-if-error=300", 160, CORRAL_HTTP_STALE_IF_ERROR,
      "stale-if-error (response)" },
    { "stale-if-error past the window", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, stale-if-error=300", 400, CORRAL_HTTP_ERROR, "beyond" },
    { "request stale-if-error", P_DEFAULT, GET "\nCache-Control: stale-if-error=500", FRESH60, 400,
      CORRAL_HTTP_STALE_IF_ERROR, "stale-if-error (request)" },
    { "policy stale_if_error", P_GRACE, GET, FRESH60, 300, CORRAL_HTTP_STALE_IF_ERROR, "policy" },
    { "no window at all", P_DEFAULT, GET, FRESH60, 61, CORRAL_HTTP_ERROR, NULL },
    { "must-revalidate forbids it", P_DEFAULT, GET,
      "200\nCache-Control: max-age=60, must-revalidate, stale-if-error=300", 100, CORRAL_HTTP_ERROR,
      "must-revalidate" },
    { "no-cache forbids it", P_DEFAULT, GET,
      "200\nCache-Control: no-cache, stale-if-error=300" ETAG, 100, CORRAL_HTTP_ERROR, NULL },
    { "s-maxage rules out the policy's window", P_GRACE, GET, "200\nCache-Control: s-maxage=60",
      100, CORRAL_HTTP_ERROR, NULL },
    { "s-maxage keeps an explicit stale-if-error", P_DEFAULT, GET,
      "200\nCache-Control: s-maxage=60, stale-if-error=300", 100, CORRAL_HTTP_STALE_IF_ERROR,
      NULL },
    { "credentials still apply", P_DEFAULT, GET "\nCookie: s=1",
      "200\nCache-Control: max-age=60, stale-if-error=300", 100, CORRAL_HTTP_ERROR, "Cookie" },
    { "unsafe method", P_DEFAULT, "POST /p", FRESH60, 10, CORRAL_HTTP_ERROR, "method" },
};

static void test_http_on_error_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
        const error_case *c = &error_cases[i];
        corral_http_policy pol;
        policy_of(c->pol, &pol);
        fixture fq, fr;
        const corral_http_msg *req = req_of(&fq, c->req);
        corral_http_entry e = { NULL, T0_MS, T0_MS };
        if (c->stored) e.resp = resp_of(&fr, c->stored);
        corral_http_decision d;
        assert_int_equal(
            corral_http_on_error(&pol, req, c->stored ? &e : NULL, T0_MS + S(c->now_s), &d),
            CORRAL_OK);
        if (d.action != c->action) {
            print_error("row \"%s\": %s (%s)\n", c->name, corral_http_action_name(d.action),
                        d.reason);
            fail();
        }
        assert_non_null(d.reason);
        expect_reason(c->name, d.reason, c->reason);
    }
}

/* ---- Age and lifetime, directly ---- */

static void test_http_current_age_follows_rfc9111_4_2_3(void **state) {
    (void)state;
    fixture fr;
    /* Date 30 s before receipt, Age 10, request sent 5 s before receipt:
     * apparent 30, corrected 10 + 5 = 15, initial max(30, 15) = 30, then resident 100. */
    const corral_http_msg *resp = resp_of(&fr, "200\nDate: " T0_M30 "\nAge: 10");
    corral_http_entry e = { resp, T0_MS - S(5), T0_MS };
    int64_t ms, s;
    assert_int_equal(corral_http_current_age(&e, T0_MS + S(100), &ms, &s), CORRAL_OK);
    assert_int_equal(ms, S(130));
    assert_int_equal(s, 130);
    /* A clock that went backwards gives no negative resident time. */
    assert_int_equal(corral_http_current_age(&e, T0_MS - S(100), &ms, NULL), CORRAL_OK);
    assert_int_equal(ms, S(30));
    e.request_time_ms = T0_MS;
    /* RFC 9111 §5.1: a list-valued or repeated Age is read as its first member; an invalid
     * first member is ignored. */
    static const struct {
        const char *resp;
        int64_t age_s;
    } ages[] = {
        { "200\nAge: 10\nAge: 20", 10 }, { "200\nAge: 10, 20", 10 }, { "200\nAge: ,7,20", 7 },
        { "200\nAge:\nAge: 8", 8 },      { "200\nAge: x, 20", 0 },   { "200\nAge: -1", 0 },
        { "200\nAge: \"10\"", 0 },       { "200\nAge: 1 0", 0 },     { "200\nAge: 5\nAge: x", 5 },
    };
    for (size_t i = 0; i < sizeof ages / sizeof ages[0]; i++) {
        e.resp = resp_of(&fr, ages[i].resp);
        assert_int_equal(corral_http_current_age(&e, T0_MS, &ms, NULL), CORRAL_OK);
        if (ms != S(ages[i].age_s)) {
            print_error("row \"%s\": age %lld ms\n", ages[i].resp, (long long)ms);
            fail();
        }
    }
    e.resp = NULL;
    assert_int_equal(corral_http_current_age(&e, T0_MS, &ms, &s), CORRAL_EINVAL);
}

static void test_http_freshness_lifetime_names_its_source(void **state) {
    (void)state;
    corral_http_policy pol;
    corral_http_policy_init(&pol);
    fixture fr;
    int64_t ms;
    const char *src;
    assert_int_equal(corral_http_freshness_lifetime(&pol, resp_of(&fr, "200\nExpires: " T0_P1H),
                                                    T0_MS, &ms, &src),
                     CORRAL_OK);
    assert_int_equal(ms, S(3600));
    assert_string_equal(src, "Expires");
    assert_int_equal(corral_http_freshness_lifetime(&pol, resp_of(&fr, "200\nExpires: " T0_M30),
                                                    T0_MS, &ms, &src),
                     CORRAL_OK);
    assert_int_equal(ms, 0); /* Expires before Date: already stale, never negative */
    assert_int_equal(corral_http_freshness_lifetime(&pol, resp_of(&fr, "200"), T0_MS, &ms, &src),
                     CORRAL_OK);
    assert_int_equal(ms, 0);
    assert_string_equal(src, "none");
    assert_int_equal(corral_http_freshness_lifetime(NULL, &fr.m, T0_MS, &ms, &src), CORRAL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_store_decide_table),
        cmocka_unit_test(test_http_lookup_table),
        cmocka_unit_test(test_http_lookup_reports_credentials_and_no_store),
        cmocka_unit_test(test_http_on_error_table),
        cmocka_unit_test(test_http_current_age_follows_rfc9111_4_2_3),
        cmocka_unit_test(test_http_freshness_lifetime_names_its_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
