/*
 * range.c - range requests answered from a complete stored representation (RFC 9110 §14): the
 * Range field's parser (§14.1.1, §14.1.2: bytes only), the choice between 206, 416 and the
 * whole 200 (§14.2, with If-Range, §13.1.5), and the framing pieces of a 206 (Content-Range,
 * §14.4; multipart/byteranges, §14.6).
 *
 * The parser reads outside input: it is a pure function over (bytes, length), bounded by the
 * caller's range array, and fuzzed (fuzz/fuzz_http_range.c). What the RFC leaves to the server,
 * and what we chose (a server may always ignore Range and send 200, §14.2):
 * - a malformed Range, another unit, or one range-spec with last < first: the field is
 *   ignored (§14.2: "ignore ... a Range header field that ... is invalid");
 * - more range-specs than the caller has room for, or ranges that overlap: ignored (§14.2 names
 *   both as signs of a broken client or a denial-of-service attempt);
 * - unsatisfiable ranges beside satisfiable ones are dropped; none satisfiable is a 416;
 * - an empty representation ignores Range (no byte of it can be selected, and a 416 for a
 *   resource that exists helps no client);
 * - ranges are served in the order asked.
 */
#include "http_internal.h"

/* ---- Parsing (§14.1.1) ---- */

/* Reads 1*DIGIT at s[*i]; saturates at UINT64_MAX (a position past any representation). */
static bool read_pos(const char *s, size_t len, size_t *i, uint64_t *out) {
    size_t start = *i;
    uint64_t v = 0;
    for (; *i < len && s[*i] >= '0' && s[*i] <= '9'; (*i)++) {
        unsigned d = (unsigned)(s[*i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return *i > start;
}

int corral_http_parse_range(const char *s, size_t len, uint64_t length, corral_http_range *out,
                            size_t max, size_t *n) {
    if (n) *n = 0;
    if (!n || (!s && len) || (!out && max)) return CORRAL_EINVAL;
    corral__http_trim(&s, &len);
    /* ranges-specifier = range-unit "=" range-set; the unit is case-insensitive (§14.1) */
    if (len < 6 || !corral__http_ieq(s, 5, "bytes") || s[5] != '=') return CORRAL_EINVAL;
    size_t i = 6, specs = 0, kept = 0;
    bool empty_list = true;
    while (i <= len) {
        /* 1#range-spec: elements separated by OWS "," OWS; empty elements are allowed. */
        while (i < len && corral__http_is_ws((unsigned char)s[i]))
            i++;
        if (i < len && s[i] == ',') {
            i++;
            continue;
        }
        if (i == len) break;
        uint64_t first = 0, last = 0;
        bool suffix = s[i] == '-', open = false;
        if (suffix) {
            i++;
            if (!read_pos(s, len, &i, &last)) return CORRAL_EINVAL;
        } else {
            if (!read_pos(s, len, &i, &first) || i == len || s[i] != '-') return CORRAL_EINVAL;
            i++;
            if (!read_pos(s, len, &i, &last)) open = true;
            if (!open && last < first) return CORRAL_EINVAL;
        }
        while (i < len && corral__http_is_ws((unsigned char)s[i]))
            i++;
        if (i < len && s[i] != ',') return CORRAL_EINVAL;
        empty_list = false;
        if (++specs > max) return CORRAL_ENOSPC;
        /* Satisfiable: first-pos below the length, or a non-zero suffix (§14.1.2). */
        corral_http_range r;
        if (suffix) {
            if (last == 0 || length == 0) continue;
            r.first = last >= length ? 0 : length - last;
            r.last = length - 1;
        } else {
            if (first >= length) continue;
            r.first = first;
            r.last = open || last >= length ? length - 1 : last;
        }
        out[kept++] = r;
    }
    if (empty_list) return CORRAL_EINVAL;
    *n = kept;
    return kept ? CORRAL_OK : CORRAL_HTTP_RANGE_UNSATISFIABLE;
}

/* ---- The answer (§14.2, §13.1.5) ---- */

/* True when the If-Range of `req` (present) holds for `stored`: an entity-tag that strongly
 * matches the stored ETag, or a date equal to a strong Last-Modified (§8.8.2.2: at least one
 * second before the stored Date). */
static bool if_range_holds(const corral_http_header *h, const corral_http_msg *stored) {
    const char *v = h->value;
    size_t vlen = h->value_len;
    if (vlen >= 1 && (v[0] == '"' || (vlen >= 2 && v[0] == 'W' && v[1] == '/'))) {
        const corral_http_header *e = corral__http_get(stored, "etag", NULL);
        return e && corral_http_etag_match(v, vlen, e->value, e->value_len, true);
    }
    int64_t want, lm, date;
    if (corral_http_parse_date(v, vlen, 0, &want) != CORRAL_OK ||
        corral__http_date_field(stored, "last-modified", 0, &lm) != 1 ||
        corral__http_date_field(stored, "date", 0, &date) != 1)
        return false;
    return want == lm && date - lm >= 1000;
}

int corral_http_range_select(const corral_http_msg *req, const corral_http_msg *stored,
                             uint64_t length, corral_http_range *out, size_t max, size_t *n) {
    if (n) *n = 0;
    if (!req || !stored || !n || !req->is_request || stored->is_request || (!out && max))
        return CORRAL_EINVAL;
    size_t count;
    const corral_http_header *h = corral__http_get(req, "range", &count);
    /* GET is the only method with range handling (§14.2); only a 200 is a whole
     * representation; two Range fields are not one valid value. */
    if (!h || count != 1 || req->method != CORRAL_HTTP_GET || stored->status != 200 || length == 0)
        return CORRAL_OK;
    const corral_http_header *ir = corral__http_get(req, "if-range", &count);
    if (ir && (count != 1 || !if_range_holds(ir, stored))) return CORRAL_OK;
    size_t got;
    int rc = corral_http_parse_range(h->value, h->value_len, length, out, max, &got);
    if (rc == CORRAL_HTTP_RANGE_UNSATISFIABLE) return rc;
    if (rc != CORRAL_OK) return CORRAL_OK; /* ignored: the whole representation */
    for (size_t a = 0; a < got; a++)
        for (size_t b = a + 1; b < got; b++)
            if (out[a].first <= out[b].last && out[b].first <= out[a].last) return CORRAL_OK;
    *n = got;
    return CORRAL_OK;
}

/* ---- Framing (§14.4, §14.6) ---- */

static void put_range(corral__http_out *o, const corral_http_range *r, uint64_t length) {
    corral__http_puts(o, "bytes ");
    if (r) {
        corral__http_put_u64(o, r->first);
        corral__http_puts(o, "-");
        corral__http_put_u64(o, r->last);
    } else {
        corral__http_puts(o, "*");
    }
    corral__http_puts(o, "/");
    corral__http_put_u64(o, length);
}

int corral_http_write_content_range(const corral_http_range *r, uint64_t length, char *buf,
                                    size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!len || (r && (r->first > r->last || r->last >= length))) return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    corral__http_puts(&o, "Content-Range: ");
    put_range(&o, r, length);
    corral__http_puts(&o, "\r\n");
    return corral__http_out_end(&o, len);
}

/* boundary = 1*70 bchars, here without the space RFC 2046 allows (it may not end one). */
static bool boundary_ok(const char *b, size_t n) {
    if (n == 0 || n > 70) return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c != '\0' && strchr("'()+_,-./:=?", c))))
            return false;
    }
    return true;
}

int corral_http_write_byteranges_part(const corral_http_msg *stored, const char *boundary,
                                      size_t boundary_len, const corral_http_range *r,
                                      uint64_t length, bool first, char *buf, size_t cap,
                                      size_t *len) {
    if (len) *len = 0;
    if (!len || !stored || !boundary || !boundary_ok(boundary, boundary_len) ||
        (r && (r->first > r->last || r->last >= length)))
        return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    if (!first) corral__http_puts(&o, "\r\n");
    corral__http_puts(&o, "--");
    corral__http_put(&o, boundary, boundary_len);
    if (!r) {
        corral__http_puts(&o, "--\r\n");
        return corral__http_out_end(&o, len);
    }
    corral__http_puts(&o, "\r\n");
    const corral_http_header *ct = corral__http_get(stored, "content-type", NULL);
    if (ct) {
        corral__http_puts(&o, "Content-Type: ");
        corral__http_put(&o, ct->value, ct->value_len);
        corral__http_puts(&o, "\r\n");
    }
    corral__http_puts(&o, "Content-Range: ");
    put_range(&o, r, length);
    corral__http_puts(&o, "\r\n\r\n");
    return corral__http_out_end(&o, len);
}
