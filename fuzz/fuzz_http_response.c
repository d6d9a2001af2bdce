/*
 * fuzz_http_response.c - libFuzzer target for the HTTP response parser (corral_http_parser_*
 * with CORRAL_HTTP_RESPONSE, as on an origin connection) and, on every head it accepts, for the
 * engine functions a proxy calls on a response: store and lookup decisions at several times,
 * stale-if-error, preconditions, invalidation, the stored and served heads, freshening.
 *
 * Input: byte 0 picks the limits (bits 0-1 max_head_bytes, bit 2 max_headers, bit 3
 * max_chunk_line_bytes) and the request method answered (bits 4-5: GET, HEAD, CONNECT); byte 1
 * seeds the piece sizes; the rest is the connection's bytes, parsed twice: whole, and in
 * pieces of 1-16 bytes drawn from the seed.
 *
 * Oracles, beyond "no crash, no leak, no UB, no hang":
 * - both runs report the same heads, ends, body bytes and final code (split invariance);
 * - consumed bytes never exceed the input; body slices lie inside it; after an error the
 *   parser stays failed;
 * - every accepted head is well-formed (token names; values without CR, LF, NUL or other
 *   control bytes but HTAB, trimmed) and within the limits;
 * - decisions are consistent: STORE has non-negative windows and a positive store TTL;
 * - every head the engine writes from it (stored head, served head, 304, freshened head)
 *   parses back as a response with the expected status.
 */
#include "corral/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_http_common.h"

/* Reparses a head the engine wrote; it must be a valid response head. */
static void reparse(const char *out, size_t len, unsigned status) {
    static corral_http_header back_hs[256];
    corral_http_limits big;
    corral_http_limits_init(&big);
    big.max_head_bytes = len + 1;
    big.max_headers = 256;
    corral_http_msg back;
    size_t head_len = 0;
    CHECK(corral_http_parse_head(CORRAL_HTTP_RESPONSE, out, len, &big, back_hs, 256, &back,
                                 &head_len) == CORRAL_OK);
    CHECK(head_len == len && back.status == status);
}

/* Runs the engine's response-side functions on an accepted head. */
static void exercise(const corral_http_msg *m, const corral_http_limits *lim) {
    CHECK(!m->is_request);
    CHECK(m->n_headers <= lim->max_headers);
    CHECK(m->version_minor <= 1);
    CHECK(m->status >= 100 && m->status <= 999);
    for (size_t i = 0; i < m->n_headers; i++)
        check_value(&m->headers[i]);

    static char buf[1 << 17];
    size_t len;
    int rc = corral_http_vary_spec(m, "X-Theme", 7, buf, sizeof buf, &len);
    CHECK(rc == CORRAL_OK || rc == CORRAL_HTTP_VARY_ANY || rc == CORRAL_EINVAL);

    static const char get[] = "GET /a/b?c HTTP/1.1\r\nHost: h\r\nCookie: s=1\r\n"
                              "If-None-Match: \"x\", W/\"y\"\r\nIf-Modified-Since: "
                              "Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n";
    static const char post[] = "POST /a/b?c HTTP/1.1\r\nHost: h\r\n\r\n";
    corral_http_header qh[8], ph[8];
    corral_http_msg req, preq;
    CHECK(corral_http_parse_head(CORRAL_HTTP_REQUEST, get, sizeof get - 1, NULL, qh, 8, &req,
                                 NULL) == CORRAL_OK);
    CHECK(corral_http_parse_head(CORRAL_HTTP_REQUEST, post, sizeof post - 1, NULL, ph, 8, &preq,
                                 NULL) == CORRAL_OK);

    const int64_t t0 = 1700000000000LL;
    corral_http_policy pol;
    corral_http_policy_init(&pol);
    pol.grace_ms = 10000;
    corral_http_decision d;
    CHECK(corral_http_store_decide(&pol, &req, m, t0 - 50, t0, &d) == CORRAL_OK);
    CHECK(d.reason != NULL);
    CHECK(d.action == CORRAL_HTTP_STORE || d.action == CORRAL_HTTP_DONT_STORE);
    if (d.action == CORRAL_HTTP_STORE) {
        CHECK(d.ttl_ms >= 0 && d.grace_ms >= 0 && d.stale_if_error_ms >= 0 && d.keep_ms >= 0);
        CHECK(d.store_ttl_ms > 0 && d.store_ttl_ms >= d.ttl_ms);
    }
    corral_http_entry e = { m, t0 - 50, t0 };
    static const int64_t later[] = { 0, 1000, 3600000, 86400000LL * 400 };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        CHECK(corral_http_lookup(&pol, &req, &e, t0 + later[i], &d) == CORRAL_OK);
        CHECK(d.reason != NULL && d.age_s >= 0);
        CHECK(corral_http_on_error(&pol, &req, &e, t0 + later[i], &d) == CORRAL_OK);
        CHECK(d.reason != NULL);
    }
    unsigned st = corral_http_conditional_status(&req, m, t0);
    CHECK(st == 0 || st == 304 || st == 412);

    corral_buf keys[3];
    size_t n;
    CHECK(corral_http_invalidations(&preq, m, buf, sizeof buf, keys, &n) == CORRAL_OK);
    CHECK(n <= 3);

    static char out[1 << 17];
    CHECK(corral_http_write_stored_head(m, out, sizeof out, &len) == CORRAL_OK);
    reparse(out, len, m->status);
    CHECK(corral_http_write_cached_head(m, 0, 5, 10, NULL, 0, out, sizeof out, &len) == CORRAL_OK);
    reparse(out, len, m->status);
    CHECK(corral_http_write_cached_head(m, 304, 5, 10, NULL, 0, out, sizeof out, &len) ==
          CORRAL_OK);
    reparse(out, len, 304);
    rc = corral_http_freshen(m, m, out, sizeof out, &len);
    CHECK(rc == CORRAL_OK || rc == CORRAL_HTTP_NOMATCH);
    if (rc == CORRAL_OK) reparse(out, len, m->status);
    rc = corral_http_write_origin_request(&req, m, 0, NULL, 0, out, sizeof out, &len);
    CHECK(rc == CORRAL_OK);
}

/* Parses `in` in pieces (all at once when `seed` is 0). */
static void run(const uint8_t *in, size_t len, const corral_http_limits *lim,
                corral_http_method method, unsigned seed, trace *t) {
    memset(t, 0, sizeof *t);
    t->digest = 14695981039346656037ULL;
    size_t need = corral_http_parser_mem_size(lim);
    CHECK(need > 0);
    void *mem = malloc(need);
    CHECK(mem != NULL);
    corral_http_parser *p;
    CHECK(corral_http_parser_init(&p, mem, need, CORRAL_HTTP_RESPONSE, lim) == CORRAL_OK);
    if (method != CORRAL_HTTP_GET) corral_http_parser_set_request_method(p, method);
    size_t off = 0;
    int rc = CORRAL_OK;
    while (rc >= 0) {
        size_t n = len - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % 16;
            if (k < n) n = k;
        }
        const uint8_t *chunk = in + off;
        for (;;) {
            size_t used = 0;
            corral_buf body;
            rc = corral_http_parser_execute(p, chunk, n, &used, &body);
            CHECK(used <= n);
            chunk += used;
            n -= used;
            off += used;
            if (rc < 0 || rc == CORRAL_OK) break;
            if (rc != CORRAL_HTTP_GOT_BODY) {
                /* Bodies are cut differently by different pieces; heads and ends are not. */
                if (t->n_events < MAX_EVENTS) t->events[t->n_events] = rc;
                t->n_events++;
            }
            if (rc == CORRAL_HTTP_GOT_HEAD) {
                const corral_http_msg *m = corral_http_parser_msg(p);
                CHECK(m != NULL);
                mix(t, &m->status, sizeof m->status);
                mix(t, m->reason, m->reason_len);
                mix(t, &m->framing, sizeof m->framing);
                mix(t, &m->keep_alive, sizeof m->keep_alive);
                for (size_t i = 0; i < m->n_headers; i++) {
                    mix(t, m->headers[i].name, m->headers[i].name_len);
                    mix(t, m->headers[i].value, m->headers[i].value_len);
                }
                if (seed) exercise(m, lim);
            } else if (rc == CORRAL_HTTP_GOT_BODY) {
                const uint8_t *b = body.data;
                CHECK(body.len > 0 && b >= in && b + body.len <= in + len);
                mix(t, b, body.len);
                t->body_bytes += body.len;
            }
        }
        if (rc < 0) break;
        CHECK(n == 0);
        if (off == len) {
            rc = corral_http_parser_finish(p);
            CHECK(rc == CORRAL_OK || rc == CORRAL_HTTP_GOT_END || rc == CORRAL_HTTP_ETRUNCATED);
            if (rc == CORRAL_HTTP_GOT_END) {
                if (t->n_events < MAX_EVENTS) t->events[t->n_events] = rc;
                t->n_events++;
                rc = CORRAL_OK;
            }
            break;
        }
    }
    t->rc = rc;
    if (rc < 0) {
        size_t used = 7;
        corral_buf body;
        CHECK(corral_http_parser_execute(p, "x", 1, &used, &body) == rc && used == 0);
        CHECK(corral_http_parser_msg(p) == NULL);
        CHECK(corral_http_error_status(rc) >= 400);
    }
    corral_http_parser_deinit(p);
    free(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 65536) return 0;
    static const size_t head_sizes[4] = { 64, 256, 4096, 16384 };
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = head_sizes[data[0] & 3];
    lim.max_headers = (data[0] & 4) ? 4 : 64;
    lim.max_chunk_line_bytes = (data[0] & 8) ? 8 : 1024;
    corral_http_method method = (data[0] & 0x30) == 0x10   ? CORRAL_HTTP_HEAD
                                : (data[0] & 0x30) == 0x20 ? CORRAL_HTTP_CONNECT
                                                           : CORRAL_HTTP_GET;
    unsigned seed = 1u + data[1];
    trace whole, pieces;
    run(data + 2, size - 2, &lim, method, 0, &whole);
    run(data + 2, size - 2, &lim, method, seed, &pieces);
    CHECK(whole.rc == pieces.rc);
    CHECK(whole.n_events == pieces.n_events);
    size_t n = whole.n_events < MAX_EVENTS ? whole.n_events : MAX_EVENTS;
    CHECK(memcmp(whole.events, pieces.events, n * sizeof whole.events[0]) == 0);
    CHECK(whole.digest == pieces.digest);
    CHECK(whole.body_bytes == pieces.body_bytes);
    return 0;
}
