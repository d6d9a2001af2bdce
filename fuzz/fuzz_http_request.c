/*
 * fuzz_http_request.c - libFuzzer target for the HTTP request parser (corral_http_parser_* with
 * CORRAL_HTTP_REQUEST) and, on every head it accepts, for the engine functions a proxy calls on
 * a request: keys, cookie filtering, lookup, the origin request.
 *
 * Input: byte 0 picks the limits (bits 0-1 max_head_bytes, bit 2 max_headers, bit 3
 * max_chunk_line_bytes); byte 1 seeds the piece sizes; the rest is the connection's bytes.
 * They are parsed twice: whole, and in pieces of 1-16 bytes drawn from the seed.
 *
 * Oracles, beyond "no crash, no leak, no UB, no hang":
 * - both runs report the same events, heads, bodies and final code (split invariance);
 * - consumed bytes never exceed the input; body slices lie inside it; after an error the
 *   parser stays failed;
 * - every accepted head is well-formed: field names are tokens, values hold no CR, LF, NUL
 *   or other control byte but HTAB and carry no surrounding whitespace, counts are within the
 *   limits;
 * - the origin request written for an accepted request parses back as a request (Host aside
 *   when the original had none or named an authority the Host rules refuse).
 */
#include "corral/http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_http_common.h"

/* Runs the engine's request-side functions on an accepted head. */
static void exercise(const corral_http_msg *m, const corral_http_limits *lim) {
    CHECK(m->is_request);
    CHECK(m->n_headers <= lim->max_headers);
    CHECK(m->version_minor <= 1);
    CHECK(m->target_len > 0 && m->method_len > 0);
    for (size_t i = 0; i < m->n_headers; i++)
        check_value(&m->headers[i]);

    static char buf[1 << 17];
    size_t len;
    int rc = corral_http_primary_key(m, buf, sizeof buf, &len);
    CHECK(rc == CORRAL_OK || rc == CORRAL_EINVAL);
    static const char spec[] = "accept-encoding,accept-language,cookie,x-theme";
    CHECK(corral_http_variant_key(m, spec, sizeof spec - 1, buf, sizeof buf, &len) == CORRAL_OK);

    static const char *const names[] = { "_ga*", "sessionid" };
    static corral_http_header hs[128];
    corral_http_msg filtered;
    rc =
        corral_http_request_filter_cookies(m, names, 2, false, hs, 128, buf, sizeof buf, &filtered);
    CHECK(rc == CORRAL_OK);

    corral_http_policy pol;
    corral_http_policy_init(&pol);
    corral_http_decision d;
    CHECK(corral_http_lookup(&pol, &filtered, NULL, 1700000000000LL, &d) == CORRAL_OK);
    CHECK(d.reason != NULL);

    static char out[1 << 17];
    rc = corral_http_write_origin_request(m, NULL, CORRAL_HTTP_FWD_STRIP_CONDITIONALS, NULL, 0, out,
                                          sizeof out, &len);
    if (m->method == CORRAL_HTTP_CONNECT) {
        CHECK(rc == CORRAL_EINVAL);
        return;
    }
    CHECK(rc == CORRAL_OK);
    static corral_http_header back_hs[256];
    corral_http_limits big;
    corral_http_limits_init(&big);
    big.max_head_bytes = sizeof out;
    big.max_headers = 256;
    corral_http_msg back;
    rc = corral_http_parse_head(CORRAL_HTTP_REQUEST, out, len, &big, back_hs, 256, &back, NULL);
    bool host_risk = corral_http_msg_get(m, "host", NULL) == NULL || m->target[0] != '/';
    CHECK(rc == CORRAL_OK || (rc == CORRAL_HTTP_EHOST && host_risk));
}

/* Parses `in` in pieces (all at once when `seed` is 0). */
static void run(const uint8_t *in, size_t len, const corral_http_limits *lim, unsigned seed,
                trace *t) {
    memset(t, 0, sizeof *t);
    t->digest = 14695981039346656037ULL;
    size_t need = corral_http_parser_mem_size(lim);
    CHECK(need > 0);
    void *mem = malloc(need);
    CHECK(mem != NULL);
    corral_http_parser *p;
    CHECK(corral_http_parser_init(&p, mem, need, CORRAL_HTTP_REQUEST, lim) == CORRAL_OK);
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
                mix(t, m->method_name, m->method_len);
                mix(t, m->target, m->target_len);
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
            CHECK(rc == CORRAL_OK || rc == CORRAL_HTTP_ETRUNCATED);
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
    unsigned seed = 1u + data[1];
    trace whole, pieces;
    run(data + 2, size - 2, &lim, 0, &whole);
    run(data + 2, size - 2, &lim, seed, &pieces);
    CHECK(whole.rc == pieces.rc);
    CHECK(whole.n_events == pieces.n_events);
    size_t n = whole.n_events < MAX_EVENTS ? whole.n_events : MAX_EVENTS;
    CHECK(memcmp(whole.events, pieces.events, n * sizeof whole.events[0]) == 0);
    CHECK(whole.digest == pieces.digest);
    CHECK(whole.body_bytes == pieces.body_bytes);
    return 0;
}
