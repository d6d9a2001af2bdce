/*
 * test_http_parse.c - the HTTP/1.1 parser (src/http/parse.c) as tables: each row is a message
 * (or several, pipelined) and the expected outcome: a parse error code, or the messages'
 * framing and bodies. Every row runs through the incremental parser fed whole, byte by byte,
 * in 2-, 3- and 7-byte pieces and in pieces of random sizes (seed printed), and must give the
 * same result each time; rows holding one complete head also run through
 * corral_http_parse_head. Then the limits, the event protocol and the init contract.
 *
 * Request smuggling rows name the vector they refuse (RFC 9112 §6.1, §6.3, §5.1, §5.2, §2.2,
 * §7.1).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/http.h"

#define CRLF "\r\n"
#define REQ  CORRAL_HTTP_REQUEST
#define RESP CORRAL_HTTP_RESPONSE

/* ---- The runner ---- */

typedef struct result {
    int rc;          /* CORRAL_OK when every message parsed, else the first error */
    size_t messages; /* messages completed (GOT_END) */
    char body[1024]; /* the bodies of all messages, each followed by '|' */
    size_t body_len;
    corral_http_framing framing; /* of the first message */
    unsigned status;
    corral_http_method method;
    unsigned version_minor;
    size_t n_headers;
    bool keep_alive;
} result;

static void add_body(result *r, const void *p, size_t n) {
    assert_true(r->body_len + n < sizeof r->body);
    memcpy(r->body + r->body_len, p, n);
    r->body_len += n;
}

/* Feeds `in` in pieces of `piece` bytes (0: whole; SIZE_MAX: random sizes from `seed`). */
static void run(corral_http_kind kind, const char *in, size_t len, const corral_http_limits *lim,
                size_t piece, unsigned seed, result *r) {
    memset(r, 0, sizeof *r);
    size_t need = corral_http_parser_mem_size(lim);
    assert_true(need > 0);
    void *mem = malloc(need);
    assert_non_null(mem);
    corral_http_parser *p = NULL;
    assert_int_equal(corral_http_parser_init(&p, mem, need, kind, lim), CORRAL_OK);
    size_t off = 0;
    int rc = CORRAL_OK;
    while (rc >= 0) {
        size_t n = len - off;
        if (piece == SIZE_MAX) {
            seed = seed * 1103515245u + 12345u;
            size_t k = 1 + (seed >> 16) % 9;
            if (k < n) n = k;
        } else if (piece && piece < n) {
            n = piece;
        }
        const char *chunk = in + off;
        /* Repeat the call until the parser wants more. */
        for (;;) {
            size_t used = 0;
            corral_buf body;
            rc = corral_http_parser_execute(p, chunk, n, &used, &body);
            assert_true(used <= n);
            chunk += used;
            n -= used;
            off += used;
            if (rc < 0 || rc == CORRAL_OK) break;
            if (rc == CORRAL_HTTP_GOT_HEAD) {
                const corral_http_msg *m = corral_http_parser_msg(p);
                assert_non_null(m);
                if (r->messages == 0) {
                    r->framing = m->framing;
                    r->status = m->status;
                    r->method = m->method;
                    r->version_minor = m->version_minor;
                    r->n_headers = m->n_headers;
                    r->keep_alive = m->keep_alive;
                }
            } else if (rc == CORRAL_HTTP_GOT_BODY) {
                assert_true(body.len > 0);
                add_body(r, body.data, body.len);
            } else {
                assert_int_equal(rc, CORRAL_HTTP_GOT_END);
                r->messages++;
                add_body(r, "|", 1);
            }
        }
        if (rc < 0) break;
        assert_int_equal(n, 0);
        if (off == len) {
            rc = corral_http_parser_finish(p);
            if (rc == CORRAL_HTTP_GOT_END) {
                r->messages++;
                add_body(r, "|", 1);
                rc = CORRAL_OK;
            }
            break;
        }
    }
    r->rc = rc < 0 ? rc : CORRAL_OK;
    if (rc < 0) {
        /* A failed parser stays failed. */
        size_t used = 1;
        corral_buf body;
        assert_int_equal(corral_http_parser_execute(p, "x", 1, &used, &body), rc);
        assert_int_equal(used, 0);
        assert_null(corral_http_parser_msg(p));
    }
    corral_http_parser_deinit(p);
    free(mem);
}

typedef struct parse_case {
    const char *name;
    corral_http_kind kind;
    const char *in;
    int rc;           /* expected */
    size_t messages;  /* expected when rc is CORRAL_OK */
    const char *body; /* expected bodies, each followed by '|' */
    corral_http_framing framing;
} parse_case;

static void check_case(const parse_case *c) {
    static const size_t pieces[] = { 0, 1, 2, 3, 7, SIZE_MAX, SIZE_MAX, SIZE_MAX };
    result first;
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        unsigned seed = 1000u + (unsigned)k;
        result r;
        run(c->kind, c->in, strlen(c->in), NULL, pieces[k], seed, &r);
        if (r.rc != c->rc) {
            print_error("row \"%s\" (piece %zu, seed %u): rc %d (%s), want %d (%s)\n", c->name,
                        pieces[k], seed, r.rc, corral_http_strerror(r.rc), c->rc,
                        corral_http_strerror(c->rc));
            fail();
        }
        if (c->rc == CORRAL_OK) {
            if (r.messages != c->messages || r.body_len != strlen(c->body) ||
                memcmp(r.body, c->body, r.body_len) != 0 || r.framing != c->framing) {
                print_error("row \"%s\" (piece %zu): %zu messages, body \"%.*s\", framing %d\n",
                            c->name, pieces[k], r.messages, (int)r.body_len, r.body, r.framing);
                fail();
            }
        }
        if (k == 0) {
            first = r;
        } else if (r.rc == CORRAL_OK) {
            assert_int_equal(r.messages, first.messages);
            assert_int_equal(r.status, first.status);
            assert_int_equal(r.method, first.method);
            assert_int_equal(r.version_minor, first.version_minor);
            assert_int_equal(r.n_headers, first.n_headers);
            assert_int_equal(r.keep_alive, first.keep_alive);
        }
    }
    /* The one-shot parser agrees on heads. */
    bool body_error = c->rc == CORRAL_HTTP_EBADCHUNK || c->rc == CORRAL_HTTP_EBADTRAILER ||
                      c->rc == CORRAL_HTTP_ETRUNCATED;
    if ((c->rc == CORRAL_OK && c->messages == 1) || (c->rc < 0 && !body_error)) {
        corral_http_header hs[16];
        corral_http_msg m;
        int rc = corral_http_parse_head(c->kind, c->in, strlen(c->in), NULL, hs, 16, &m, NULL);
        if (rc != c->rc) {
            print_error("row \"%s\": parse_head rc %d, want %d\n", c->name, rc, c->rc);
            fail();
        }
        if (rc == CORRAL_OK) assert_int_equal(m.framing, c->framing);
    }
}

/* ---- Requests ---- */

static const parse_case request_cases[] = {
    /* well-formed */
    { "simple GET", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "leading empty lines are skipped (RFC 9112 §2.2)", REQ,
      CRLF CRLF "GET / HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length body", REQ,
      "POST /f HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 5" CRLF CRLF "hello", CORRAL_OK, 1,
      "hello|", CORRAL_HTTP_FRAMING_LENGTH },
    { "Content-Length 0", REQ, "POST /f HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 0" CRLF CRLF,
      CORRAL_OK, 1, "|", CORRAL_HTTP_FRAMING_LENGTH },
    { "Content-Length with OWS", REQ,
      "POST /f HTTP/1.1" CRLF "Host: a" CRLF "Content-Length:  3 " CRLF CRLF "abc", CORRAL_OK, 1,
      "abc|", CORRAL_HTTP_FRAMING_LENGTH },
    { "chunked body", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "5" CRLF
      "hello" CRLF "6" CRLF " world" CRLF "0" CRLF CRLF,
      CORRAL_OK, 1, "hello world|", CORRAL_HTTP_FRAMING_CHUNKED },
    { "chunked, hex sizes of both cases and leading zeros", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: Chunked" CRLF CRLF "000a" CRLF
      "0123456789" CRLF "B" CRLF "abcdefghijk" CRLF "000" CRLF CRLF,
      CORRAL_OK, 1, "0123456789abcdefghijk|", CORRAL_HTTP_FRAMING_CHUNKED },
    { "chunk extensions (token, quoted, BWS before ';')", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3;a=b;c" CRLF
      "abc" CRLF "2 ; q=\"x;\\\"y\"" CRLF "de" CRLF "0;last" CRLF CRLF,
      CORRAL_OK, 1, "abcde|", CORRAL_HTTP_FRAMING_CHUNKED },
    { "chunked with trailer fields", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "1" CRLF "x" CRLF
      "0" CRLF "Checksum: abc" CRLF "X-T:" CRLF CRLF,
      CORRAL_OK, 1, "x|", CORRAL_HTTP_FRAMING_CHUNKED },
    { "pipelined requests", REQ,
      "GET /1 HTTP/1.1" CRLF "Host: a" CRLF CRLF "POST /2 HTTP/1.1" CRLF "Host: a" CRLF
      "Content-Length: 2" CRLF CRLF "hi"
      "GET /3 HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_OK, 3, "|hi||", CORRAL_HTTP_FRAMING_NONE },
    { "HTTP/1.0 without Host", REQ, "GET / HTTP/1.0" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "absolute-form target", REQ,
      "GET http://a.example/x?y HTTP/1.1" CRLF "Host: a.example" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "OPTIONS *", REQ, "OPTIONS * HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "CONNECT authority-form", REQ,
      "CONNECT a.example:443 HTTP/1.1" CRLF "Host: a.example:443" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "obs-text in a value", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X: caf\xc3\xa9" CRLF CRLF,
      CORRAL_OK, 1, "|", CORRAL_HTTP_FRAMING_NONE },
    { "empty value and tabs", REQ,
      "GET / HTTP/1.1" CRLF "Host: a" CRLF "X:" CRLF "Y:\ta\tb\t" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },
    { "empty Host is allowed (RFC 9112 §3.2)", REQ, "GET / HTTP/1.1" CRLF "Host:" CRLF CRLF,
      CORRAL_OK, 1, "|", CORRAL_HTTP_FRAMING_NONE },
    { "unknown lowercase method", REQ, "get / HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_OK, 1, "|",
      CORRAL_HTTP_FRAMING_NONE },

    /* smuggling: message length (RFC 9112 §6) */
    { "duplicate Content-Length", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 3" CRLF "Content-Length: 3" CRLF CRLF
      "abc",
      CORRAL_HTTP_EDUPLENGTH, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length list", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 3, 3" CRLF CRLF "abc",
      CORRAL_HTTP_EBADLENGTH, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length with sign", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: +3" CRLF CRLF "abc",
      CORRAL_HTTP_EBADLENGTH, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length negative", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: -1" CRLF CRLF, CORRAL_HTTP_EBADLENGTH,
      0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length empty", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length:" CRLF CRLF, CORRAL_HTTP_EBADLENGTH, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length hex", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 0x3" CRLF CRLF, CORRAL_HTTP_EBADLENGTH,
      0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length overflow", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 99999999999999999999" CRLF CRLF,
      CORRAL_HTTP_EBADLENGTH, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length 2^63 is over the limit", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 9223372036854775808" CRLF CRLF,
      CORRAL_HTTP_EBADLENGTH, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length with Transfer-Encoding", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 3" CRLF
      "Transfer-Encoding: chunked" CRLF CRLF "0" CRLF CRLF,
      CORRAL_HTTP_ELENGTHTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Transfer-Encoding with Content-Length", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF
      "Content-Length: 3" CRLF CRLF "0" CRLF CRLF,
      CORRAL_HTTP_ELENGTHTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Transfer-Encoding in HTTP/1.0", REQ,
      "POST / HTTP/1.0" CRLF "Transfer-Encoding: chunked" CRLF CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunked twice in one field", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked, chunked" CRLF CRLF,
      CORRAL_HTTP_EBADTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunked twice in two fields", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF
      "Transfer-Encoding: chunked" CRLF CRLF,
      CORRAL_HTTP_EBADTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunked not last in a request", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked, gzip" CRLF CRLF,
      CORRAL_HTTP_EBADTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "only gzip in a request", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: gzip" CRLF CRLF, CORRAL_HTTP_EBADTE,
      0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "gzip then chunked: unsupported (501)", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: gzip, chunked" CRLF CRLF,
      CORRAL_HTTP_EUNSUPTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "empty Transfer-Encoding", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding:" CRLF CRLF, CORRAL_HTTP_EBADTE, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunked look-alike", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: xchunked" CRLF CRLF,
      CORRAL_HTTP_EBADTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },

    /* smuggling: field syntax (RFC 9112 §5) and line endings (§2.2) */
    { "whitespace before the colon", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length : 3" CRLF CRLF "abc",
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "obs-fold", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X: a" CRLF " b" CRLF CRLF,
      CORRAL_HTTP_EOBSFOLD, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "obs-fold hiding Transfer-Encoding", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding:" CRLF "\tchunked" CRLF CRLF
      "0" CRLF CRLF,
      CORRAL_HTTP_EOBSFOLD, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "whitespace line after the request line", REQ, "GET / HTTP/1.1" CRLF " Host: a" CRLF CRLF,
      CORRAL_HTTP_EOBSFOLD, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare CR in a value", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X: a\rb" CRLF CRLF,
      CORRAL_HTTP_EBARECR, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare CR in the request line", REQ, "GET /\r HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBARECR, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare LF ending a field line", REQ, "GET / HTTP/1.1" CRLF "Host: a\n" CRLF,
      CORRAL_HTTP_EBARELF, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare LF everywhere", REQ, "GET / HTTP/1.1\nHost: a\n\n", CORRAL_HTTP_EBARELF, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "bare LF ending the head", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "\n",
      CORRAL_HTTP_EBARELF, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "control byte in a value", REQ,
      "GET / HTTP/1.1" CRLF "Host: a" CRLF "X: a\x01"
      "b" CRLF CRLF,
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "DEL in a value", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X: a\x7f" CRLF CRLF,
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "space in a field name", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X Y: a" CRLF CRLF,
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "empty field name", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF ": a" CRLF CRLF,
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "field line without colon", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X" CRLF CRLF,
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "separator in a field name", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "X(y): a" CRLF CRLF,
      CORRAL_HTTP_EBADHEADER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },

    /* Host (RFC 9112 §3.2) */
    { "HTTP/1.1 without Host", REQ, "GET / HTTP/1.1" CRLF CRLF, CORRAL_HTTP_EHOST, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "two Hosts", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF "Host: b" CRLF CRLF, CORRAL_HTTP_EHOST,
      0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Host with a space", REQ, "GET / HTTP/1.1" CRLF "Host: a b" CRLF CRLF, CORRAL_HTTP_EHOST, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Host with a slash", REQ, "GET / HTTP/1.1" CRLF "Host: a/b" CRLF CRLF, CORRAL_HTTP_EHOST, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },

    /* request line (RFC 9112 §3) */
    { "two spaces after the method", REQ, "GET  / HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADLINE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "space after the version", REQ, "GET / HTTP/1.1 " CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADLINE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "no version", REQ, "GET /" CRLF "Host: a" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "space in the target", REQ, "GET /a b HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADLINE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "tab as separator", REQ, "GET\t/ HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "control byte in the method", REQ, "G\x01T / HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADLINE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "lowercase protocol name", REQ, "GET / http/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADLINE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "HTTP/2.0 (505)", REQ, "GET / HTTP/2.0" CRLF "Host: a" CRLF CRLF, CORRAL_HTTP_EVERSION, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "HTTP/1.2 (505)", REQ, "GET / HTTP/1.2" CRLF "Host: a" CRLF CRLF, CORRAL_HTTP_EVERSION, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "DEL in the target", REQ, "GET /a\x7f HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADTARGET, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "fragment in the target", REQ, "GET /a#b HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADTARGET, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "raw UTF-8 in the target", REQ, "GET /caf\xc3\xa9 HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADTARGET, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "asterisk for GET", REQ, "GET * HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_HTTP_EBADTARGET, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "path for CONNECT", REQ, "CONNECT /x HTTP/1.1" CRLF "Host: a" CRLF CRLF,
      CORRAL_HTTP_EBADTARGET, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "relative target", REQ, "GET a/b HTTP/1.1" CRLF "Host: a" CRLF CRLF, CORRAL_HTTP_EBADTARGET,
      0, NULL, CORRAL_HTTP_FRAMING_NONE },

    /* chunked coding (RFC 9112 §7.1) */
    { "whitespace after the chunk size", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3 " CRLF
      "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunk data not followed by CRLF", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3" CRLF
      "abcXX0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunk data followed by LF alone", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3" CRLF
      "abc\n0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunk data followed by another byte and LF", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3" CRLF
      "abcX\n0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "0x prefix on a chunk size", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "0x3" CRLF
      "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "negative chunk size", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "-3" CRLF
      "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "empty chunk-size line", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "17 hex digits", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF
      "00000000000000003" CRLF "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunk size overflow", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF
      "ffffffffffffffff1" CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "LF alone after the chunk size", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3\nabc" CRLF
      "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "extension without a name", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3;" CRLF
      "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "extension without a value after '='", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3;a=" CRLF
      "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "control byte in a quoted extension", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF
      "3;a=\"\x01\"" CRLF "abc" CRLF "0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare CR after chunk data", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3" CRLF
      "abc\rX0" CRLF CRLF,
      CORRAL_HTTP_EBADCHUNK, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "obs-fold in the trailer", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "0" CRLF
      "A: b" CRLF " c" CRLF CRLF,
      CORRAL_HTTP_EBADTRAILER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare LF in the trailer", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "0" CRLF
      "A: b\n" CRLF,
      CORRAL_HTTP_EBADTRAILER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "space before the colon in the trailer", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "0" CRLF
      "A : b" CRLF CRLF,
      CORRAL_HTTP_EBADTRAILER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "last chunk ended by LF alone", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "0" CRLF "\n",
      CORRAL_HTTP_EBADTRAILER, 0, NULL, CORRAL_HTTP_FRAMING_NONE },

    /* truncation */
    { "body cut short", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Content-Length: 10" CRLF CRLF "abc",
      CORRAL_HTTP_ETRUNCATED, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "head cut short", REQ, "GET / HTTP/1.1" CRLF "Host: a" CRLF, CORRAL_HTTP_ETRUNCATED, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "chunked body cut short", REQ,
      "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF "3" CRLF
      "abc" CRLF,
      CORRAL_HTTP_ETRUNCATED, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
};

static void test_http_parse_request_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof request_cases / sizeof request_cases[0]; i++)
        check_case(&request_cases[i]);
}

/* ---- Responses ---- */

static const parse_case response_cases[] = {
    { "Content-Length body", RESP, "HTTP/1.1 200 OK" CRLF "Content-Length: 2" CRLF CRLF "hi",
      CORRAL_OK, 1, "hi|", CORRAL_HTTP_FRAMING_LENGTH },
    { "chunked body", RESP,
      "HTTP/1.1 200 OK" CRLF "Transfer-Encoding: chunked" CRLF CRLF "2" CRLF "hi" CRLF
      "0" CRLF CRLF,
      CORRAL_OK, 1, "hi|", CORRAL_HTTP_FRAMING_CHUNKED },
    { "body until close (RFC 9112 §6.3 rule 8)", RESP, "HTTP/1.1 200 OK" CRLF CRLF "all of it",
      CORRAL_OK, 1, "all of it|", CORRAL_HTTP_FRAMING_CLOSE },
    { "204 has no body whatever Content-Length says", RESP,
      "HTTP/1.1 204 No Content" CRLF "Content-Length: 5" CRLF CRLF "HTTP/1.1 200 OK" CRLF
      "Content-Length: 1" CRLF CRLF "x",
      CORRAL_OK, 2, "|x|", CORRAL_HTTP_FRAMING_NONE },
    { "304 has no body", RESP,
      "HTTP/1.1 304 Not Modified" CRLF "Content-Length: 5" CRLF "ETag: \"a\"" CRLF CRLF, CORRAL_OK,
      1, "|", CORRAL_HTTP_FRAMING_NONE },
    { "1xx then the final response", RESP,
      "HTTP/1.1 100 Continue" CRLF CRLF "HTTP/1.1 103 Early Hints" CRLF "Link: </s>" CRLF CRLF
      "HTTP/1.1 200 OK" CRLF "Content-Length: 2" CRLF CRLF "ok",
      CORRAL_OK, 3, "||ok|", CORRAL_HTTP_FRAMING_NONE },
    { "status line without reason", RESP, "HTTP/1.1 200" CRLF "Content-Length: 0" CRLF CRLF,
      CORRAL_OK, 1, "|", CORRAL_HTTP_FRAMING_LENGTH },
    { "status line with empty reason", RESP, "HTTP/1.1 404 " CRLF "Content-Length: 0" CRLF CRLF,
      CORRAL_OK, 1, "|", CORRAL_HTTP_FRAMING_LENGTH },
    { "HTTP/1.0 response", RESP, "HTTP/1.0 200 OK" CRLF "Content-Length: 1" CRLF CRLF "z",
      CORRAL_OK, 1, "z|", CORRAL_HTTP_FRAMING_LENGTH },
    { "two-digit status", RESP, "HTTP/1.1 20 OK" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "status below 100", RESP, "HTTP/1.1 099 X" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "status with letters", RESP, "HTTP/1.1 2x0 X" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "HTTP/2 status line", RESP, "HTTP/2 200" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "HTTP/2.0 (unsupported version)", RESP, "HTTP/2.0 200 OK" CRLF CRLF, CORRAL_HTTP_EVERSION, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "control byte in the reason", RESP, "HTTP/1.1 200 O\x01K" CRLF CRLF, CORRAL_HTTP_EBADLINE, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "bare CR in the reason", RESP, "HTTP/1.1 200 O\rK" CRLF CRLF, CORRAL_HTTP_EBARECR, 0, NULL,
      CORRAL_HTTP_FRAMING_NONE },
    { "duplicate Content-Length", RESP,
      "HTTP/1.1 200 OK" CRLF "Content-Length: 1" CRLF "Content-Length: 2" CRLF CRLF "ab",
      CORRAL_HTTP_EDUPLENGTH, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "Content-Length with Transfer-Encoding", RESP,
      "HTTP/1.1 200 OK" CRLF "Content-Length: 1" CRLF "Transfer-Encoding: chunked" CRLF CRLF,
      CORRAL_HTTP_ELENGTHTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "gzip transfer coding", RESP, "HTTP/1.1 200 OK" CRLF "Transfer-Encoding: gzip" CRLF CRLF,
      CORRAL_HTTP_EUNSUPTE, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "gzip then chunked", RESP,
      "HTTP/1.1 200 OK" CRLF "Transfer-Encoding: gzip, chunked" CRLF CRLF, CORRAL_HTTP_EUNSUPTE, 0,
      NULL, CORRAL_HTTP_FRAMING_NONE },
    { "obs-fold", RESP, "HTTP/1.1 200 OK" CRLF "X: a" CRLF "\tb" CRLF "Content-Length: 0" CRLF CRLF,
      CORRAL_HTTP_EOBSFOLD, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
    { "chunked without its last chunk", RESP,
      "HTTP/1.1 200 OK" CRLF "Transfer-Encoding: chunked" CRLF CRLF "2" CRLF "hi" CRLF,
      CORRAL_HTTP_ETRUNCATED, 0, NULL, CORRAL_HTTP_FRAMING_NONE },
};

static void test_http_parse_response_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof response_cases / sizeof response_cases[0]; i++)
        check_case(&response_cases[i]);
}

/* ---- Message fields ---- */

static void test_http_parse_fills_the_message_view(void **state) {
    (void)state;
    const char *in = "POST /cart?x=1 HTTP/1.1" CRLF "Host: shop.example" CRLF "X-Empty:" CRLF
                     "Cookie: a=1" CRLF "cookie: b=2" CRLF "Content-Length: 3" CRLF CRLF "abc";
    corral_http_header hs[8];
    corral_http_msg m;
    size_t head_len = 0;
    assert_int_equal(corral_http_parse_head(REQ, in, strlen(in), NULL, hs, 8, &m, &head_len),
                     CORRAL_OK);
    assert_int_equal(head_len, strlen(in) - 3);
    assert_true(m.is_request);
    assert_int_equal(m.method, CORRAL_HTTP_POST);
    assert_int_equal(m.method_len, 4);
    assert_memory_equal(m.target, "/cart?x=1", 9);
    assert_int_equal(m.target_len, 9);
    assert_int_equal(m.version_minor, 1);
    assert_int_equal(m.n_headers, 5);
    assert_memory_equal(m.headers[0].name, "Host", 4);
    assert_int_equal(m.headers[1].value_len, 0);
    assert_int_equal(m.framing, CORRAL_HTTP_FRAMING_LENGTH);
    assert_true(m.has_content_length);
    assert_int_equal(m.content_length, 3);
    assert_true(m.keep_alive);

    size_t count = 0;
    const corral_http_header *h = corral_http_msg_get(&m, "COOKIE", &count);
    assert_non_null(h);
    assert_int_equal(count, 2);
    char buf[32];
    size_t len = 0;
    assert_int_equal(corral_http_msg_join(&m, "cookie", buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "a=1; b=2", 8);
    assert_int_equal(corral_http_msg_join(&m, "cookie", buf, 4, &len), CORRAL_ENOSPC);
    assert_int_equal(len, 8);
    assert_null(corral_http_msg_get(&m, "X-Missing", &count));
    assert_int_equal(count, 0);
}

static void test_http_msg_drop_fields_keeps_the_rest_in_order(void **state) {
    (void)state;
    static const char in[] = "HTTP/1.1 200 OK\r\nSurrogate-Key: a b\r\nX-A: 1\r\n"
                             "cdn-cache-control: max-age=9\r\nX-B: 2\r\nSURROGATE-KEY: c\r\n\r\n";
    corral_http_header hs[8], kept[8];
    corral_http_msg m, out;
    assert_int_equal(
        corral_http_parse_head(CORRAL_HTTP_RESPONSE, in, sizeof in - 1, NULL, hs, 8, &m, NULL),
        CORRAL_OK);
    const char *const names[] = { "surrogate-key", "CDN-Cache-Control" };
    assert_int_equal(corral_http_msg_drop_fields(&m, names, 2, kept, 8, &out), CORRAL_OK);
    assert_int_equal(out.n_headers, 2);
    assert_memory_equal(out.headers[0].name, "X-A", 3);
    assert_memory_equal(out.headers[1].name, "X-B", 3);
    assert_int_equal(out.status, 200);
    assert_int_equal(m.n_headers, 5); /* the source is untouched */
    /* Nothing to drop: the message itself, the buffer unused. */
    const char *const other[] = { "x-c", "surrogate-key-x" };
    assert_int_equal(corral_http_msg_drop_fields(&m, other, 2, NULL, 0, &out), CORRAL_OK);
    assert_ptr_equal(out.headers, m.headers);
    assert_int_equal(out.n_headers, 5);
    assert_int_equal(corral_http_msg_drop_fields(&m, names, 2, kept, 1, &out), CORRAL_ENOSPC);
    assert_int_equal(corral_http_msg_drop_fields(&m, NULL, 1, kept, 8, &out), CORRAL_EINVAL);
}

static void test_http_parse_keep_alive_follows_version_and_connection(void **state) {
    (void)state;
    static const struct {
        const char *in;
        bool keep_alive;
    } rows[] = {
        { "GET / HTTP/1.1" CRLF "Host: a" CRLF CRLF, true },
        { "GET / HTTP/1.1" CRLF "Host: a" CRLF "Connection: close" CRLF CRLF, false },
        { "GET / HTTP/1.1" CRLF "Host: a" CRLF "Connection: foo, Close" CRLF CRLF, false },
        { "GET / HTTP/1.0" CRLF CRLF, false },
        { "GET / HTTP/1.0" CRLF "Connection: keep-alive" CRLF CRLF, true },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        corral_http_header hs[4];
        corral_http_msg m;
        assert_int_equal(
            corral_http_parse_head(REQ, rows[i].in, strlen(rows[i].in), NULL, hs, 4, &m, NULL),
            CORRAL_OK);
        assert_int_equal(m.keep_alive, rows[i].keep_alive);
    }
}

static void test_http_parse_response_to_head_has_no_body(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    size_t need = corral_http_parser_mem_size(&lim);
    void *mem = malloc(need);
    assert_non_null(mem);
    corral_http_parser *p;
    assert_int_equal(corral_http_parser_init(&p, mem, need, RESP, &lim), CORRAL_OK);
    corral_http_parser_set_request_method(p, CORRAL_HTTP_HEAD);
    const char *in =
        "HTTP/1.1 100 Continue" CRLF CRLF "HTTP/1.1 200 OK" CRLF "Content-Length: 99" CRLF CRLF
        "HTTP/1.1 200 OK" CRLF "Content-Length: 2" CRLF CRLF "ok";
    size_t len = strlen(in), used;
    corral_buf body;
    int events[16], n = 0;
    for (;;) {
        int rc = corral_http_parser_execute(p, in, len, &used, &body);
        in += used;
        len -= used;
        assert_true(rc >= 0);
        if (rc == CORRAL_OK) break;
        assert_true(n < 16);
        events[n++] = rc;
        if (rc == CORRAL_HTTP_GOT_HEAD && corral_http_parser_msg(p)->status == 200 && n == 3) {
            /* The HEAD answer: Content-Length is reported, but no body follows. */
            assert_int_equal(corral_http_parser_msg(p)->content_length, 99);
            assert_int_equal(corral_http_parser_msg(p)->framing, CORRAL_HTTP_FRAMING_NONE);
        }
    }
    /* 100: head, end; HEAD's 200: head, end; then (method back to GET) head, body, end. */
    static const int want[] = { CORRAL_HTTP_GOT_HEAD, CORRAL_HTTP_GOT_END,  CORRAL_HTTP_GOT_HEAD,
                                CORRAL_HTTP_GOT_END,  CORRAL_HTTP_GOT_HEAD, CORRAL_HTTP_GOT_BODY,
                                CORRAL_HTTP_GOT_END };
    assert_int_equal(n, 7);
    assert_memory_equal(events, want, sizeof want);
    corral_http_parser_deinit(p);
    free(mem);
}

/* ---- Limits ---- */

/* A request whose head is exactly `size` bytes. */
static size_t head_of_size(char *buf, size_t size) {
    const char *pre = "GET / HTTP/1.1" CRLF "Host: a" CRLF "X: ";
    size_t fixed = strlen(pre) + 4; /* CRLF CRLF */
    assert_true(size >= fixed);
    memcpy(buf, pre, strlen(pre));
    memset(buf + strlen(pre), 'v', size - fixed);
    memcpy(buf + size - 4, CRLF CRLF, 4);
    return size;
}

static void test_http_parse_head_size_limit_is_exact(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = 200;
    char buf[256];
    result r;
    run(REQ, buf, head_of_size(buf, 200), &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_OK);
    run(REQ, buf, head_of_size(buf, 201), &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_HTTP_EHEADTOOBIG);
    run(REQ, buf, head_of_size(buf, 201), &lim, 1, 0, &r);
    assert_int_equal(r.rc, CORRAL_HTTP_EHEADTOOBIG);
    assert_int_equal(corral_http_error_status(CORRAL_HTTP_EHEADTOOBIG), 431);

    corral_http_header hs[8];
    corral_http_msg m;
    head_of_size(buf, 201);
    assert_int_equal(corral_http_parse_head(REQ, buf, 201, &lim, hs, 8, &m, NULL),
                     CORRAL_HTTP_EHEADTOOBIG);
    assert_int_equal(corral_http_parse_head(REQ, buf, 200, &lim, hs, 8, &m, NULL),
                     CORRAL_HTTP_ETRUNCATED);
}

static void test_http_parse_endless_empty_lines_hit_the_head_limit(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = 64;
    char buf[200];
    for (size_t i = 0; i < 100; i++)
        memcpy(buf + 2 * i, CRLF, 2);
    result r;
    run(REQ, buf, 200, &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_HTTP_EHEADTOOBIG);
}

static void test_http_parse_header_count_limit_is_exact(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_headers = 3;
    const char *ok = "GET / HTTP/1.1" CRLF "Host: a" CRLF "A: 1" CRLF "B: 2" CRLF CRLF;
    const char *over =
        "GET / HTTP/1.1" CRLF "Host: a" CRLF "A: 1" CRLF "B: 2" CRLF "C: 3" CRLF CRLF;
    result r;
    run(REQ, ok, strlen(ok), &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_OK);
    assert_int_equal(r.n_headers, 3);
    run(REQ, over, strlen(over), &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_HTTP_ETOOMANYHEADERS);
    assert_int_equal(corral_http_error_status(CORRAL_HTTP_ETOOMANYHEADERS), 431);
    corral_http_header hs[2];
    corral_http_msg m;
    assert_int_equal(corral_http_parse_head(REQ, ok, strlen(ok), NULL, hs, 2, &m, NULL),
                     CORRAL_HTTP_ETOOMANYHEADERS);
}

static void test_http_parse_chunk_line_limit_bounds_extensions(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_chunk_line_bytes = 16;
    const char *ok = "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF
                     "1;abcdefghijk" CRLF "x" CRLF "0" CRLF CRLF; /* 15 bytes with CRLF */
    const char *over = "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF
                       "1;abcdefghijklm" CRLF "x" CRLF "0" CRLF CRLF;
    result r;
    run(REQ, ok, strlen(ok), &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_OK);
    run(REQ, over, strlen(over), &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_HTTP_EBADCHUNK);
}

static void test_http_parse_trailer_limit(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = 128;
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "POST / HTTP/1.1" CRLF "Host: a" CRLF "Transfer-Encoding: chunked" CRLF CRLF
                     "0" CRLF "T: %0150d" CRLF CRLF,
                     0);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    result r;
    run(REQ, buf, (size_t)n, &lim, 0, 0, &r);
    assert_int_equal(r.rc, CORRAL_HTTP_EBADTRAILER);
}

/* ---- The event protocol ---- */

static void test_http_parse_head_then_end_without_more_input(void **state) {
    (void)state;
    size_t need = corral_http_parser_mem_size(NULL);
    void *mem = malloc(need);
    assert_non_null(mem);
    corral_http_parser *p;
    assert_int_equal(corral_http_parser_init(&p, mem, need, REQ, NULL), CORRAL_OK);
    const char *in = "GET / HTTP/1.1" CRLF "Host: a" CRLF CRLF;
    size_t used;
    corral_buf body;
    assert_null(corral_http_parser_msg(p));
    assert_int_equal(corral_http_parser_execute(p, in, strlen(in), &used, &body),
                     CORRAL_HTTP_GOT_HEAD);
    assert_int_equal(used, strlen(in));
    assert_non_null(corral_http_parser_msg(p));
    assert_int_equal(corral_http_parser_execute(p, NULL, 0, &used, &body), CORRAL_HTTP_GOT_END);
    assert_int_equal(used, 0);
    /* The view stays until the next message starts. */
    assert_non_null(corral_http_parser_msg(p));
    assert_int_equal(corral_http_parser_execute(p, NULL, 0, &used, &body), CORRAL_OK);
    assert_non_null(corral_http_parser_msg(p));
    assert_int_equal(corral_http_parser_finish(p), CORRAL_OK);
    assert_int_equal(corral_http_parser_execute(p, "G", 1, &used, &body), CORRAL_OK);
    assert_int_equal(used, 1);
    assert_null(corral_http_parser_msg(p));
    assert_int_equal(corral_http_parser_finish(p), CORRAL_HTTP_ETRUNCATED);
    corral_http_parser_deinit(p);
    corral_http_parser_deinit(NULL);
    free(mem);
}

static void test_http_parse_body_slices_point_into_the_input(void **state) {
    (void)state;
    size_t need = corral_http_parser_mem_size(NULL);
    void *mem = malloc(need);
    assert_non_null(mem);
    corral_http_parser *p;
    assert_int_equal(corral_http_parser_init(&p, mem, need, RESP, NULL), CORRAL_OK);
    const char *in =
        "HTTP/1.1 200 OK" CRLF "Transfer-Encoding: chunked" CRLF CRLF "4" CRLF "wxyz" CRLF;
    size_t used, off = 0, len = strlen(in);
    corral_buf body;
    assert_int_equal(corral_http_parser_execute(p, in, len, &used, &body), CORRAL_HTTP_GOT_HEAD);
    off += used;
    assert_int_equal(corral_http_parser_execute(p, in + off, len - off, &used, &body),
                     CORRAL_HTTP_GOT_BODY);
    assert_ptr_equal(body.data, strstr(in, "wxyz"));
    assert_int_equal(body.len, 4);
    corral_http_parser_deinit(p);
    free(mem);
}

static void test_http_parser_init_checks_its_arguments(void **state) {
    (void)state;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    size_t need = corral_http_parser_mem_size(&lim);
    assert_true(need > lim.max_head_bytes);
    void *mem = malloc(need + 1);
    assert_non_null(mem);
    corral_http_parser *p = (corral_http_parser *)mem;
    assert_int_equal(corral_http_parser_init(&p, mem, need - 1, REQ, &lim), CORRAL_ENOSPC);
    assert_null(p);
    assert_int_equal(corral_http_parser_init(&p, (char *)mem + 1, need, REQ, &lim), CORRAL_EINVAL);
    assert_int_equal(corral_http_parser_init(&p, mem, need, (corral_http_kind)7, &lim),
                     CORRAL_EINVAL);
    assert_int_equal(corral_http_parser_init(&p, NULL, need, REQ, &lim), CORRAL_EINVAL);
    lim.max_headers = 0;
    assert_int_equal(corral_http_parser_mem_size(&lim), 0);
    assert_int_equal(corral_http_parser_init(&p, mem, need, REQ, &lim), CORRAL_EINVAL);
    lim.max_headers = SIZE_MAX / 2;
    assert_int_equal(corral_http_parser_mem_size(&lim), 0);
    free(mem);
}

static void test_http_error_codes_map_to_statuses_and_strings(void **state) {
    (void)state;
    for (int rc = CORRAL_HTTP_ETRUNCATED; rc <= CORRAL_HTTP_EBADLINE; rc++) {
        unsigned st = corral_http_error_status(rc);
        assert_true(st == 400 || st == 431 || st == 501 || st == 505);
        assert_string_not_equal(corral_http_strerror(rc), corral_strerror(12345));
    }
    assert_int_equal(corral_http_error_status(CORRAL_HTTP_EVERSION), 505);
    assert_int_equal(corral_http_error_status(CORRAL_HTTP_EUNSUPTE), 501);
    assert_int_equal(corral_http_error_status(CORRAL_HTTP_EDUPLENGTH), 400);
    assert_int_equal(corral_http_error_status(CORRAL_OK), 0);
    assert_string_equal(corral_http_strerror(CORRAL_ENOSPC), corral_strerror(CORRAL_ENOSPC));
    assert_string_equal(corral_http_method_name(CORRAL_HTTP_PURGE), "PURGE");
    assert_string_equal(corral_http_action_name(CORRAL_HTTP_STALE_WHILE_REVALIDATE),
                        "STALE_WHILE_REVALIDATE");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_parse_request_table),
        cmocka_unit_test(test_http_parse_response_table),
        cmocka_unit_test(test_http_parse_fills_the_message_view),
        cmocka_unit_test(test_http_msg_drop_fields_keeps_the_rest_in_order),
        cmocka_unit_test(test_http_parse_keep_alive_follows_version_and_connection),
        cmocka_unit_test(test_http_parse_response_to_head_has_no_body),
        cmocka_unit_test(test_http_parse_head_size_limit_is_exact),
        cmocka_unit_test(test_http_parse_endless_empty_lines_hit_the_head_limit),
        cmocka_unit_test(test_http_parse_header_count_limit_is_exact),
        cmocka_unit_test(test_http_parse_chunk_line_limit_bounds_extensions),
        cmocka_unit_test(test_http_parse_trailer_limit),
        cmocka_unit_test(test_http_parse_head_then_end_without_more_input),
        cmocka_unit_test(test_http_parse_body_slices_point_into_the_input),
        cmocka_unit_test(test_http_parser_init_checks_its_arguments),
        cmocka_unit_test(test_http_error_codes_map_to_statuses_and_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
