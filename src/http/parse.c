/*
 * parse.c - a strict, incremental HTTP/1.1 message parser (RFC 9112) for requests and
 * responses, with chunked transfer decoding, and its one-shot form for complete heads.
 *
 * Why our own parser: the project uses Debian's libraries where they fit (docs/dependencies.md),
 * and libhttp-parser-dev (2.9.4) does not. We tried it on the request-smuggling vectors this
 * proxy must refuse (docs/http.md has the table). It rejects duplicate Content-Length,
 * Content-Length with Transfer-Encoding and a bare CR, but accepts: obs-fold (even folding
 * "Transfer-Encoding:\r\n chunked"), lines ended by a bare LF, whitespace between a field name and
 * its colon ("Content-Length : 3", which RFC 9112 §5.1 says MUST be rejected), chunk data not
 * followed by CRLF ("3\r\nabcXX0\r\n\r\n" parses), whitespace after a chunk size, Transfer-Encoding
 * in HTTP/1.0, and HTTP/1.1 requests without or with two Hosts. The chunk and folding cases happen
 * inside its tokenizer and cannot be seen from its callbacks, so a wrapper would have to parse the
 * bytes a second time; and the library is no longer maintained upstream (its authors point to
 * llhttp, which Debian 12 does not package as a C library). The part we need is small: heads are
 * copied whole into the caller's block and checked line by line, and the body is framed by a
 * byte-level state machine.
 *
 * Data model: a parser lives in one caller-given block: the struct, then the field array
 * (limits.max_headers entries), then the head buffer (limits.max_head_bytes). Head bytes are
 * copied into the head buffer as they arrive; each complete line is checked at once, and the
 * field array holds (pointer, length) slices of the buffer, so the message view stays valid
 * while the body streams. Body bytes are never copied: GOT_BODY returns slices of the input.
 *
 * Invariants: `head_len <= lim.max_head_bytes`; `line_start <= head_len` is where the line being
 * received starts; after an error `error` holds the code and the parser does nothing else.
 *
 * Standards: RFC 9112 §2.2 (message parsing: CRLF, bare CR, leading empty lines), §3 (request
 * line, request-target forms, Host), §4 (status line), §5 (field lines, no whitespace before
 * ':', obs-fold), §6 (message body length: Transfer-Encoding, Content-Length, their conflicts),
 * §7.1 (chunked coding, chunk extensions, trailer section); RFC 9110 §5.5 (field values).
 */
#include "http_internal.h"

#include <assert.h>
#include <stdalign.h>
#include <stdint.h>

#define CORRAL_HTTP_PARSER_MAGIC 0x48545450u /* "HTTP" */

/* ---- Head checking, shared by the incremental and the one-shot parser ---- */

/* The head being assembled: what the special fields said, judged at the blank line. */
typedef struct head_state {
    corral_http_kind kind;
    corral_http_method req_method; /* responses: the method of the request answered */
    corral_http_msg *msg;
    corral_http_header *headers;
    size_t max_headers;
    bool have_start;              /* the start line was seen */
    size_t n_cl, n_te, n_host;    /* counts of Content-Length, Transfer-Encoding, Host */
    const corral_http_header *cl; /* the (single) Content-Length */
    const corral_http_header *host;
} head_state;

enum { LINE_MORE = 0, LINE_END = 1, LINE_SKIP = 2 };

static void head_state_init(head_state *h, corral_http_kind kind, corral_http_method req_method,
                            corral_http_msg *msg, corral_http_header *headers, size_t max) {
    memset(h, 0, sizeof *h);
    h->kind = kind;
    h->req_method = req_method;
    h->msg = msg;
    h->headers = headers;
    h->max_headers = max;
    corral_http_msg_init(msg, kind == CORRAL_HTTP_REQUEST);
    msg->headers = headers;
}

static corral_http_method method_of(const char *s, size_t n) {
    static const struct {
        const char *name;
        corral_http_method m;
    } known[] = {
        { "GET", CORRAL_HTTP_GET },         { "HEAD", CORRAL_HTTP_HEAD },
        { "POST", CORRAL_HTTP_POST },       { "PUT", CORRAL_HTTP_PUT },
        { "DELETE", CORRAL_HTTP_DELETE },   { "CONNECT", CORRAL_HTTP_CONNECT },
        { "OPTIONS", CORRAL_HTTP_OPTIONS }, { "TRACE", CORRAL_HTTP_TRACE },
        { "PATCH", CORRAL_HTTP_PATCH },     { "PURGE", CORRAL_HTTP_PURGE },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, s, n) == 0) return known[i].m;
    return CORRAL_HTTP_METHOD_OTHER;
}

/* "HTTP/1.0" or "HTTP/1.1": 0 or 1 in `*minor`. Returns 0, CORRAL_HTTP_EVERSION for another
 * well-formed version, CORRAL_HTTP_EBADLINE for anything else. */
static int version_of(const char *s, size_t n, unsigned *minor) {
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || s[6] != '.' || s[5] < '0' || s[5] > '9' ||
        s[7] < '0' || s[7] > '9')
        return CORRAL_HTTP_EBADLINE;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1')) return CORRAL_HTTP_EVERSION;
    *minor = (unsigned)(s[7] - '0');
    return 0;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
static int request_line(head_state *h, const char *s, size_t n) {
    corral_http_msg *m = h->msg;
    size_t i = 0;
    while (i < n && corral__http_is((unsigned char)s[i], CORRAL__HTTP_TCHAR))
        i++;
    if (i == 0 || i == n || s[i] != ' ') return CORRAL_HTTP_EBADLINE;
    m->method_name = s;
    m->method_len = i;
    m->method = method_of(s, i);
    size_t t = i + 1, e = t;
    while (e < n && s[e] != ' ') {
        if (!corral__http_is((unsigned char)s[e], CORRAL__HTTP_TARGET))
            return corral__http_is_ws((unsigned char)s[e]) ? CORRAL_HTTP_EBADLINE
                                                           : CORRAL_HTTP_EBADTARGET;
        e++;
    }
    if (e == t || e == n) return CORRAL_HTTP_EBADLINE;
    int rc = version_of(s + e + 1, n - e - 1, &m->version_minor);
    if (rc < 0) return rc;
    m->target = s + t;
    m->target_len = e - t;
    /* The four forms of RFC 9112 §3.2, each only where it belongs. */
    const char *tg = m->target;
    size_t tn = m->target_len;
    if (m->method == CORRAL_HTTP_CONNECT) {
        /* authority-form: host ":" port */
        if (memchr(tg, '/', tn) || memchr(tg, '?', tn) || memchr(tg, '@', tn) ||
            !memchr(tg, ':', tn))
            return CORRAL_HTTP_EBADTARGET;
        return 0;
    }
    if (tg[0] == '/') return 0; /* origin-form */
    if (tn == 1 && tg[0] == '*')
        return m->method == CORRAL_HTTP_OPTIONS ? 0 : CORRAL_HTTP_EBADTARGET;
    /* absolute-form: scheme "://" ... (RFC 3986 §3.1 scheme) */
    size_t k = 0;
    while (k < tn && ((tg[k] >= 'a' && tg[k] <= 'z') || (tg[k] >= 'A' && tg[k] <= 'Z') ||
                      (k > 0 && ((tg[k] >= '0' && tg[k] <= '9') || tg[k] == '+' || tg[k] == '-' ||
                                 tg[k] == '.'))))
        k++;
    if (k == 0 || tn - k < 4 || memcmp(tg + k, "://", 3) != 0) return CORRAL_HTTP_EBADTARGET;
    return 0;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). A missing
 * "SP reason" is accepted: origins send "HTTP/1.1 200\r\n" and it is unambiguous. */
static int status_line(head_state *h, const char *s, size_t n) {
    corral_http_msg *m = h->msg;
    if (n < 12 || s[8] != ' ') {
        if (n >= 8 && version_of(s, 8, &m->version_minor) == CORRAL_HTTP_EVERSION)
            return CORRAL_HTTP_EVERSION;
        return CORRAL_HTTP_EBADLINE;
    }
    int rc = version_of(s, 8, &m->version_minor);
    if (rc < 0) return rc;
    unsigned st = 0;
    for (size_t i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9') return CORRAL_HTTP_EBADLINE;
        st = st * 10 + (unsigned)(s[i] - '0');
    }
    if (st < 100) return CORRAL_HTTP_EBADLINE;
    m->status = st;
    m->reason = s + n;
    m->reason_len = 0;
    if (n == 12) return 0;
    if (s[12] != ' ') return CORRAL_HTTP_EBADLINE;
    for (size_t i = 13; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!corral__http_is(c, CORRAL__HTTP_VCHAR) && !corral__http_is_ws(c))
            return CORRAL_HTTP_EBADLINE;
    }
    m->reason = s + 13;
    m->reason_len = n - 13;
    return 0;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 §5) */
static int field_line(head_state *h, const char *s, size_t n) {
    if (corral__http_is_ws((unsigned char)s[0])) return CORRAL_HTTP_EOBSFOLD;
    size_t i = 0;
    while (i < n && corral__http_is((unsigned char)s[i], CORRAL__HTTP_TCHAR))
        i++;
    if (i == 0 || i == n || s[i] != ':') return CORRAL_HTTP_EBADHEADER;
    const char *v = s + i + 1;
    size_t vn = n - i - 1;
    for (size_t k = 0; k < vn; k++) {
        unsigned char c = (unsigned char)v[k];
        if (!corral__http_is(c, CORRAL__HTTP_VCHAR) && !corral__http_is_ws(c))
            return CORRAL_HTTP_EBADHEADER;
    }
    corral__http_trim(&v, &vn);
    corral_http_msg *m = h->msg;
    if (m->n_headers >= h->max_headers) return CORRAL_HTTP_ETOOMANYHEADERS;
    corral_http_header *f = &h->headers[m->n_headers++];
    f->name = s;
    f->name_len = i;
    f->value = v;
    f->value_len = vn;
    if (corral__http_ieq(s, i, "content-length")) {
        h->n_cl++;
        h->cl = f;
    } else if (corral__http_ieq(s, i, "transfer-encoding")) {
        h->n_te++;
    } else if (corral__http_ieq(s, i, "host")) {
        h->n_host++;
        h->host = f;
    }
    return 0;
}

/* Transfer-Encoding (RFC 9112 §6.1): only "chunked", once, last. */
static int transfer_encoding(head_state *h) {
    const corral_http_msg *m = h->msg;
    if (m->version_minor == 0) return CORRAL_HTTP_EBADTE;
    size_t hi = 0, pos = 0, n, chunked = 0, codings = 0;
    const char *el;
    bool other = false, last_chunked = false;
    while (corral__http_fields_next(m, "transfer-encoding", &hi, &pos, &el, &n)) {
        codings++;
        last_chunked = corral__http_ieq(el, n, "chunked");
        if (last_chunked)
            chunked++;
        else
            other = true;
    }
    if (codings == 0 || chunked > 1) return CORRAL_HTTP_EBADTE;
    if (other) {
        if (h->kind == CORRAL_HTTP_REQUEST && !last_chunked) return CORRAL_HTTP_EBADTE;
        return CORRAL_HTTP_EUNSUPTE;
    }
    return 0;
}

/* Judges the head at its blank line: Host, framing, persistence (RFC 9112 §3.2, §6, §9.3). */
static int head_end(head_state *h) {
    corral_http_msg *m = h->msg;
    bool is_req = h->kind == CORRAL_HTTP_REQUEST;
    if (is_req) {
        if (h->n_host > 1 || (h->n_host == 0 && m->version_minor == 1)) return CORRAL_HTTP_EHOST;
        if (h->host) {
            for (size_t i = 0; i < h->host->value_len; i++)
                if (!corral__http_is((unsigned char)h->host->value[i], CORRAL__HTTP_HOST))
                    return CORRAL_HTTP_EHOST;
        }
    }
    if (h->n_cl > 1) return CORRAL_HTTP_EDUPLENGTH;
    if (h->n_cl && h->n_te) return CORRAL_HTTP_ELENGTHTE;
    if (h->n_cl) {
        const char *v = h->cl->value;
        size_t n = h->cl->value_len;
        if (n == 0) return CORRAL_HTTP_EBADLENGTH;
        uint64_t len = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i] < '0' || v[i] > '9') return CORRAL_HTTP_EBADLENGTH;
            if (len > ((uint64_t)INT64_MAX - (uint64_t)(v[i] - '0')) / 10)
                return CORRAL_HTTP_EBADLENGTH;
            len = len * 10 + (uint64_t)(v[i] - '0');
        }
        m->content_length = len;
        m->has_content_length = true;
    }
    if (h->n_te) {
        int rc = transfer_encoding(h);
        if (rc < 0) return rc;
    }
    bool close = corral__http_has_token(m, "connection", "close");
    bool ka = corral__http_has_token(m, "connection", "keep-alive");
    m->keep_alive = !close && (m->version_minor == 1 || ka);

    bool bodyless = false;
    if (!is_req) {
        unsigned st = m->status;
        bodyless = st < 200 || st == 204 || st == 304 || h->req_method == CORRAL_HTTP_HEAD ||
                   (h->req_method == CORRAL_HTTP_CONNECT && st < 300);
    }
    if (bodyless)
        m->framing = CORRAL_HTTP_FRAMING_NONE;
    else if (h->n_te)
        m->framing = CORRAL_HTTP_FRAMING_CHUNKED;
    else if (h->n_cl)
        m->framing = CORRAL_HTTP_FRAMING_LENGTH;
    else if (is_req)
        m->framing = CORRAL_HTTP_FRAMING_NONE;
    else {
        m->framing = CORRAL_HTTP_FRAMING_CLOSE;
        m->keep_alive = false;
    }
    return 0;
}

/* Checks one complete line `s` of `n` bytes (its LF included). Returns LINE_MORE, LINE_END (the
 * blank line ending the head), LINE_SKIP (an empty line before the start line), or an error. */
static int head_line(head_state *h, const char *s, size_t n) {
    assert(n >= 1 && s[n - 1] == '\n');
    if (n < 2 || s[n - 2] != '\r') return CORRAL_HTTP_EBARELF;
    n -= 2;
    if (memchr(s, '\r', n)) return CORRAL_HTTP_EBARECR;
    if (!h->have_start) {
        if (n == 0) return LINE_SKIP;
        h->have_start = true;
        int rc = h->kind == CORRAL_HTTP_REQUEST ? request_line(h, s, n) : status_line(h, s, n);
        return rc < 0 ? rc : LINE_MORE;
    }
    if (n == 0) {
        int rc = head_end(h);
        return rc < 0 ? rc : LINE_END;
    }
    int rc = field_line(h, s, n);
    return rc < 0 ? rc : LINE_MORE;
}

/* ---- Limits ---- */

void corral_http_limits_init(corral_http_limits *l) {
    if (!l) return;
    l->max_head_bytes = 16384;
    l->max_headers = 64;
    l->max_chunk_line_bytes = 1024;
}

static bool limits_ok(const corral_http_limits *l) {
    return l->max_head_bytes > 0 && l->max_headers > 0 && l->max_chunk_line_bytes > 0;
}

/* ---- The one-shot parser ---- */

int corral_http_parse_head(corral_http_kind kind, const void *buf, size_t len,
                           const corral_http_limits *l, corral_http_header *headers,
                           size_t max_headers, corral_http_msg *out, size_t *head_len) {
    if (head_len) *head_len = 0;
    corral_http_limits def;
    if (!l) {
        corral_http_limits_init(&def);
        l = &def;
    }
    if (!out || (!buf && len) || (!headers && max_headers) || !limits_ok(l) ||
        (kind != CORRAL_HTTP_REQUEST && kind != CORRAL_HTTP_RESPONSE)) {
        if (out) corral_http_msg_init(out, kind == CORRAL_HTTP_REQUEST);
        return CORRAL_EINVAL;
    }
    head_state h;
    head_state_init(&h, kind, CORRAL_HTTP_GET, out, headers,
                    max_headers < l->max_headers ? max_headers : l->max_headers);
    const char *s = buf;
    size_t pos = 0, skipped = 0;
    int rc = CORRAL_HTTP_ETRUNCATED;
    for (;;) {
        const char *lf = pos < len ? memchr(s + pos, '\n', len - pos) : NULL;
        size_t end = lf ? (size_t)(lf - s) + 1 : len;
        if (end - skipped > l->max_head_bytes || skipped > l->max_head_bytes) {
            rc = CORRAL_HTTP_EHEADTOOBIG;
            break;
        }
        if (!lf) break;
        int r = head_line(&h, s + pos, end - pos);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == LINE_SKIP) skipped = end;
        pos = end;
        if (r == LINE_END) {
            if (head_len) *head_len = pos;
            return CORRAL_OK;
        }
    }
    head_state_init(&h, kind, CORRAL_HTTP_GET, out, headers, 0);
    out->headers = NULL;
    return rc;
}

/* ---- The incremental parser ---- */

typedef enum phase {
    P_IDLE = 0, /* between messages */
    P_HEAD,     /* receiving the head */
    P_LENGTH,   /* Content-Length body: `remaining` bytes left */
    P_CHUNKED,  /* chunked body: see `cs` */
    P_CLOSE,    /* body until end of input */
    P_END,      /* the message is complete; GOT_END not yet reported */
    P_FAILED
} phase;

/* Chunked body states (RFC 9112 §7.1). */
typedef enum chunk_state {
    CS_SIZE_FIRST = 0, /* the first hex digit of chunk-size */
    CS_SIZE,           /* more hex digits */
    CS_EXT_WS,         /* BWS after the size or a value: only ';' may follow */
    CS_EXT_PRE_NAME,   /* after ';': BWS then chunk-ext-name */
    CS_EXT_NAME,
    CS_EXT_POST_NAME, /* BWS after a name: '=' or ';' */
    CS_EXT_PRE_VAL,   /* after '=': BWS then token or quoted-string */
    CS_EXT_TVAL,
    CS_EXT_QVAL,
    CS_EXT_QPAIR,
    CS_EXT_AFTER_Q,
    CS_SIZE_LF, /* CR seen: LF must follow */
    CS_DATA,    /* chunk-data: `remaining` bytes left */
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_END_LF
} chunk_state;

struct corral_http_parser {
    uint32_t magic;
    corral_http_kind kind;
    corral_http_limits lim;
    int error; /* the sticky error, or 0 */
    phase ph;
    corral_http_method req_method; /* responses: the method answered (set_request_method) */
    corral_http_header *headers;   /* lim.max_headers entries, after the struct */
    char *head;                    /* lim.max_head_bytes, after the field array */
    size_t head_len;               /* head bytes received */
    size_t line_start;             /* where the line being received starts in `head` */
    size_t skipped;                /* bytes of empty lines skipped before the start line */
    head_state hs;
    corral_http_msg msg;
    bool msg_valid;     /* `msg` describes a head (GOT_HEAD was returned) */
    uint64_t remaining; /* P_LENGTH, CS_DATA: body bytes left */
    chunk_state cs;
    uint64_t chunk_size; /* the size being read */
    unsigned digits;     /* hex digits of the size */
    size_t line_bytes;   /* bytes of the chunk-size line so far */
    size_t trailer_bytes;
};

static size_t headers_offset(void) {
    size_t a = alignof(corral_http_header);
    return (sizeof(corral_http_parser) + a - 1) / a * a;
}

size_t corral_http_parser_mem_size(const corral_http_limits *l) {
    corral_http_limits def;
    if (!l) {
        corral_http_limits_init(&def);
        l = &def;
    }
    if (!limits_ok(l)) return 0;
    size_t off = headers_offset();
    if (l->max_headers > (SIZE_MAX - off) / sizeof(corral_http_header)) return 0;
    size_t n = off + l->max_headers * sizeof(corral_http_header);
    if (l->max_head_bytes > SIZE_MAX - n) return 0;
    return n + l->max_head_bytes;
}

/* Prepares the next message. The message view of the previous one ends here. */
static void begin_message(corral_http_parser *p) {
    p->ph = P_HEAD;
    p->head_len = 0;
    p->line_start = 0;
    p->skipped = 0;
    p->msg_valid = false;
    p->remaining = 0;
    p->cs = CS_SIZE_FIRST;
    p->chunk_size = 0;
    p->digits = 0;
    p->line_bytes = 0;
    p->trailer_bytes = 0;
    head_state_init(&p->hs, p->kind, p->req_method, &p->msg, p->headers, p->lim.max_headers);
}

int corral_http_parser_init(corral_http_parser **out, void *mem, size_t mem_len,
                            corral_http_kind kind, const corral_http_limits *l) {
    if (out) *out = NULL;
    corral_http_limits def;
    if (!l) {
        corral_http_limits_init(&def);
        l = &def;
    }
    if (!out || !mem || !limits_ok(l) ||
        (kind != CORRAL_HTTP_REQUEST && kind != CORRAL_HTTP_RESPONSE) ||
        (uintptr_t)mem % alignof(max_align_t) != 0)
        return CORRAL_EINVAL;
    size_t need = corral_http_parser_mem_size(l);
    if (need == 0) return CORRAL_EINVAL;
    if (mem_len < need) return CORRAL_ENOSPC;
    corral_http_parser *p = mem;
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->lim = *l;
    p->req_method = CORRAL_HTTP_GET;
    p->headers = (corral_http_header *)((char *)mem + headers_offset());
    p->head = (char *)(p->headers + l->max_headers);
    p->ph = P_IDLE;
    p->magic = CORRAL_HTTP_PARSER_MAGIC;
    *out = p;
    return CORRAL_OK;
}

void corral_http_parser_deinit(corral_http_parser *p) {
    if (!p) return;
    assert(p->magic == CORRAL_HTTP_PARSER_MAGIC);
    p->magic = 0;
}

const corral_http_msg *corral_http_parser_msg(const corral_http_parser *p) {
    if (!p) return NULL;
    assert(p->magic == CORRAL_HTTP_PARSER_MAGIC);
    return p->msg_valid ? &p->msg : NULL;
}

void corral_http_parser_set_request_method(corral_http_parser *p, corral_http_method m) {
    if (!p) return;
    assert(p->magic == CORRAL_HTTP_PARSER_MAGIC);
    p->req_method = m;
    if (p->ph == P_HEAD && !p->hs.have_start) p->hs.req_method = m;
}

static int fail(corral_http_parser *p, int rc) {
    p->error = rc;
    p->ph = P_FAILED;
    p->msg_valid = false;
    return rc;
}

/* Reports the end of a message and readies the parser for the next. */
static int end_message(corral_http_parser *p) {
    p->ph = P_IDLE;
    if (p->kind == CORRAL_HTTP_RESPONSE && p->msg.status >= 200) p->req_method = CORRAL_HTTP_GET;
    return CORRAL_HTTP_GOT_END;
}

/* Receives head bytes; returns GOT_HEAD, CORRAL_OK (all used) or an error. */
static int on_head(corral_http_parser *p, const char *d, size_t len, size_t *i) {
    while (*i < len) {
        const char *lf = memchr(d + *i, '\n', len - *i);
        size_t take = lf ? (size_t)(lf - (d + *i)) + 1 : len - *i;
        if (take > p->lim.max_head_bytes - p->head_len) return CORRAL_HTTP_EHEADTOOBIG;
        memcpy(p->head + p->head_len, d + *i, take);
        p->head_len += take;
        *i += take;
        if (!lf) break;
        int r = head_line(&p->hs, p->head + p->line_start, p->head_len - p->line_start);
        if (r < 0) return r;
        if (r == LINE_SKIP) {
            /* Leading empty lines are dropped, but count against the limit. */
            p->skipped += p->head_len - p->line_start;
            if (p->skipped > p->lim.max_head_bytes) return CORRAL_HTTP_EHEADTOOBIG;
            p->head_len = p->line_start;
            continue;
        }
        p->line_start = p->head_len;
        if (r == LINE_END) {
            p->msg_valid = true;
            switch (p->msg.framing) {
            case CORRAL_HTTP_FRAMING_NONE: p->ph = P_END; break;
            case CORRAL_HTTP_FRAMING_LENGTH:
                p->remaining = p->msg.content_length;
                p->ph = p->remaining ? P_LENGTH : P_END;
                break;
            case CORRAL_HTTP_FRAMING_CHUNKED: p->ph = P_CHUNKED; break;
            case CORRAL_HTTP_FRAMING_CLOSE: p->ph = P_CLOSE; break;
            }
            return CORRAL_HTTP_GOT_HEAD;
        }
    }
    return CORRAL_OK;
}

static bool is_qdtext(unsigned char c) {
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e) || c >= 0x80;
}

/* One byte of a chunk-size line (size, extensions, CRLF). Returns 0 or an error. */
static int chunk_line_byte(corral_http_parser *p, unsigned char c) {
    if (++p->line_bytes > p->lim.max_chunk_line_bytes) return CORRAL_HTTP_EBADCHUNK;
    bool tchar = corral__http_is(c, CORRAL__HTTP_TCHAR), ws = corral__http_is_ws(c);
    switch (p->cs) {
    case CS_SIZE_FIRST:
    case CS_SIZE:
        if (corral__http_is(c, CORRAL__HTTP_HEX)) {
            /* 16 digits and no overflow: "000...0005" games end here. */
            if (++p->digits > 16 || p->chunk_size > (UINT64_MAX >> 4)) return CORRAL_HTTP_EBADCHUNK;
            unsigned v =
                c <= '9' ? (unsigned)(c - '0') : (unsigned)(corral__http_lower(c) - 'a' + 10);
            p->chunk_size = (p->chunk_size << 4) | v;
            p->cs = CS_SIZE;
            return 0;
        }
        if (p->cs == CS_SIZE_FIRST) return CORRAL_HTTP_EBADCHUNK;
        if (c == ';')
            p->cs = CS_EXT_PRE_NAME;
        else if (ws)
            p->cs = CS_EXT_WS;
        else if (c == '\r')
            p->cs = CS_SIZE_LF;
        else
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_WS:
        if (c == ';')
            p->cs = CS_EXT_PRE_NAME;
        else if (!ws)
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_PRE_NAME:
        if (tchar)
            p->cs = CS_EXT_NAME;
        else if (!ws)
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_NAME:
        if (tchar) return 0;
        if (ws)
            p->cs = CS_EXT_POST_NAME;
        else if (c == '=')
            p->cs = CS_EXT_PRE_VAL;
        else if (c == ';')
            p->cs = CS_EXT_PRE_NAME;
        else if (c == '\r')
            p->cs = CS_SIZE_LF;
        else
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_POST_NAME:
        if (c == '=')
            p->cs = CS_EXT_PRE_VAL;
        else if (c == ';')
            p->cs = CS_EXT_PRE_NAME;
        else if (!ws)
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_PRE_VAL:
        if (c == '"')
            p->cs = CS_EXT_QVAL;
        else if (tchar)
            p->cs = CS_EXT_TVAL;
        else if (!ws)
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_TVAL:
        if (tchar) return 0;
        if (c == ';')
            p->cs = CS_EXT_PRE_NAME;
        else if (ws)
            p->cs = CS_EXT_WS;
        else if (c == '\r')
            p->cs = CS_SIZE_LF;
        else
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_QVAL:
        if (c == '"')
            p->cs = CS_EXT_AFTER_Q;
        else if (c == '\\')
            p->cs = CS_EXT_QPAIR;
        else if (!is_qdtext(c))
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_EXT_QPAIR:
        if (!corral__http_is(c, CORRAL__HTTP_VCHAR) && !ws) return CORRAL_HTTP_EBADCHUNK;
        p->cs = CS_EXT_QVAL;
        return 0;
    case CS_EXT_AFTER_Q:
        if (c == ';')
            p->cs = CS_EXT_PRE_NAME;
        else if (ws)
            p->cs = CS_EXT_WS;
        else if (c == '\r')
            p->cs = CS_SIZE_LF;
        else
            return CORRAL_HTTP_EBADCHUNK;
        return 0;
    case CS_SIZE_LF:
        if (c != '\n') return CORRAL_HTTP_EBADCHUNK;
        p->remaining = p->chunk_size;
        p->cs = p->chunk_size ? CS_DATA : CS_TRAILER_START;
        p->chunk_size = 0;
        p->digits = 0;
        p->line_bytes = 0;
        return 0;
    default: assert(0 && "not a chunk-size line state"); return CORRAL_HTTP_EBADCHUNK;
    }
}

/* One byte of the trailer section (RFC 9112 §7.1.2). Returns 0, 1 at its end, or an error. */
static int trailer_byte(corral_http_parser *p, unsigned char c) {
    if (++p->trailer_bytes > p->lim.max_head_bytes) return CORRAL_HTTP_EBADTRAILER;
    switch (p->cs) {
    case CS_TRAILER_START:
        if (c == '\r')
            p->cs = CS_END_LF;
        else if (corral__http_is(c, CORRAL__HTTP_TCHAR))
            p->cs = CS_TRAILER_NAME;
        else
            return CORRAL_HTTP_EBADTRAILER; /* obs-fold, bare LF, garbage */
        return 0;
    case CS_TRAILER_NAME:
        if (c == ':')
            p->cs = CS_TRAILER_VALUE;
        else if (!corral__http_is(c, CORRAL__HTTP_TCHAR))
            return CORRAL_HTTP_EBADTRAILER;
        return 0;
    case CS_TRAILER_VALUE:
        if (c == '\r')
            p->cs = CS_TRAILER_LF;
        else if (!corral__http_is(c, CORRAL__HTTP_VCHAR) && !corral__http_is_ws(c))
            return CORRAL_HTTP_EBADTRAILER;
        return 0;
    case CS_TRAILER_LF:
        if (c != '\n') return CORRAL_HTTP_EBADTRAILER;
        p->cs = CS_TRAILER_START;
        return 0;
    case CS_END_LF: return c == '\n' ? 1 : CORRAL_HTTP_EBADTRAILER;
    default: assert(0 && "not a trailer state"); return CORRAL_HTTP_EBADTRAILER;
    }
}

/* Receives chunked body bytes; returns GOT_BODY, GOT_END, CORRAL_OK or an error. */
static int on_chunked(corral_http_parser *p, const char *d, size_t len, size_t *i,
                      corral_buf *body) {
    while (*i < len) {
        if (p->cs == CS_DATA) {
            size_t n = len - *i;
            if ((uint64_t)n > p->remaining) n = (size_t)p->remaining;
            body->data = d + *i;
            body->len = n;
            *i += n;
            p->remaining -= n;
            if (p->remaining == 0) p->cs = CS_DATA_CR;
            return CORRAL_HTTP_GOT_BODY;
        }
        unsigned char c = (unsigned char)d[(*i)++];
        int rc = 0;
        switch (p->cs) {
        case CS_DATA_CR:
            if (c != '\r') return CORRAL_HTTP_EBADCHUNK;
            p->cs = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (c != '\n') return CORRAL_HTTP_EBADCHUNK;
            p->cs = CS_SIZE_FIRST;
            break;
        case CS_TRAILER_START:
        case CS_TRAILER_NAME:
        case CS_TRAILER_VALUE:
        case CS_TRAILER_LF:
        case CS_END_LF:
            rc = trailer_byte(p, c);
            if (rc == 1) return end_message(p);
            break;
        default: rc = chunk_line_byte(p, c); break;
        }
        if (rc < 0) return rc;
    }
    return CORRAL_OK;
}

int corral_http_parser_execute(corral_http_parser *p, const void *data, size_t len,
                               size_t *consumed, corral_buf *body) {
    if (consumed) *consumed = 0;
    if (body) {
        body->data = NULL;
        body->len = 0;
    }
    if (!p || !consumed || !body || (!data && len)) return CORRAL_EINVAL;
    assert(p->magic == CORRAL_HTTP_PARSER_MAGIC);
    if (p->ph == P_FAILED) return p->error;
    const char *d = data;
    size_t i = 0;
    int rc = CORRAL_OK;
    if (p->ph == P_IDLE) {
        if (len == 0) return CORRAL_OK;
        begin_message(p);
    }
    switch (p->ph) {
    case P_HEAD: rc = on_head(p, d, len, &i); break;
    case P_LENGTH:
        if (len > 0) {
            size_t n = len;
            if ((uint64_t)n > p->remaining) n = (size_t)p->remaining;
            body->data = d;
            body->len = n;
            i = n;
            p->remaining -= n;
            if (p->remaining == 0) p->ph = P_END;
            rc = CORRAL_HTTP_GOT_BODY;
        }
        break;
    case P_CHUNKED: rc = on_chunked(p, d, len, &i, body); break;
    case P_CLOSE:
        if (len > 0) {
            body->data = d;
            body->len = len;
            i = len;
            rc = CORRAL_HTTP_GOT_BODY;
        }
        break;
    case P_END: rc = end_message(p); break;
    case P_IDLE:
    case P_FAILED: assert(0 && "handled above"); break;
    }
    *consumed = i;
    if (rc < 0) {
        body->data = NULL;
        body->len = 0;
        return fail(p, rc);
    }
    return rc;
}

int corral_http_parser_finish(corral_http_parser *p) {
    if (!p) return CORRAL_EINVAL;
    assert(p->magic == CORRAL_HTTP_PARSER_MAGIC);
    switch (p->ph) {
    case P_FAILED: return p->error;
    case P_IDLE: return CORRAL_OK;
    case P_HEAD:
        /* Nothing but skipped empty lines (or nothing at all): no message was started. */
        if (p->head_len == 0) {
            p->ph = P_IDLE;
            return CORRAL_OK;
        }
        return fail(p, CORRAL_HTTP_ETRUNCATED);
    case P_CLOSE:
    case P_END: return end_message(p);
    case P_LENGTH:
    case P_CHUNKED: return fail(p, CORRAL_HTTP_ETRUNCATED);
    }
    return fail(p, CORRAL_HTTP_ETRUNCATED);
}
