/*
 * vary.c - cache keys: the primary key of a request (RFC 9111 §2: the target URI; here host
 * and path-and-query, shared by GET and HEAD and by every variant, so one purge removes them
 * all), the vary spec of a response and the variant (secondary) key of a request (§4.1), and
 * the cookie filtering of route rules.
 *
 * Normalisation (§4.1 allows combining field lines and normalising per the field's syntax):
 * - every field: its lines are combined in order, each line's value already trimmed;
 * - Accept: split into elements, lowercased, whitespace outside quoted strings removed (order
 *   kept: it expresses preference);
 * - Accept-Language, Accept-Charset: the same, and then ordered by weight (RFC 9110 §12.4.2):
 *   the q-value is written in one canonical form ("q=1", "q=1.0" and none are equal; "0.80"
 *   is "0.8") and elements are sorted by it, highest first, keeping the order of equal weights
 *   (§12.5.4: some recipients read it as a preference). "en;q=0.5, fr" and "fr,en;q=0.50"
 *   share a variant; "fr, de" and "de, fr" do not;
 * - Accept-Encoding: codings lowercased, parameters dropped, codings with q=0 dropped, the rest
 *   sorted and deduplicated ("gzip, br" and "br,gzip;q=1.0" share a variant). An origin that
 *   picks between codings by their q-values alone would see its choice shared between clients
 *   that weigh them differently; origins choose by the set of acceptable codings in practice;
 * - Cookie: split on ';', trimmed, empty pieces dropped, order kept.
 * Bounded work: specs of more than 64 names are refused (CORRAL_EINVAL), and Accept-Encoding
 * sorting considers at most 64 codings (beyond that the value is used as combined).
 */
#include "http_internal.h"

#define MAX_VARY_NAMES 64
#define MAX_CODINGS    64
#define MAX_WEIGHED    64 /* Accept-Language elements ordered by weight; beyond: kept as sent */

/* Case-insensitive ordering of two byte strings. */
static int icmp(const char *a, size_t an, const char *b, size_t bn) {
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = corral__http_lower((unsigned char)a[i]);
        unsigned char y = corral__http_lower((unsigned char)b[i]);
        if (x != y) return x < y ? -1 : 1;
    }
    return an < bn ? -1 : an > bn ? 1 : 0;
}

static void put_lower(corral__http_out *o, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = (char)corral__http_lower((unsigned char)s[i]);
        corral__http_put(o, &c, 1);
    }
}

/* ---- Primary key ---- */

int corral_http_primary_key(const corral_http_msg *req, char *buf, size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!req || !len || !req->is_request || !req->target) return CORRAL_EINVAL;
    const char *host, *path;
    size_t host_len, path_len;
    if (!corral__http_request_parts(req, &host, &host_len, &path, &path_len)) return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    corral__http_put_host(&o, host, host_len);
    if (path_len == 0 || path[0] != '/') corral__http_puts(&o, "/");
    corral__http_put(&o, path, path_len);
    return corral__http_out_end(&o, len);
}

/* ---- Vary spec ---- */

/* Iterates the names of the response's Vary fields, then those of `extra`. */
typedef struct vary_it {
    const corral_http_msg *m;
    const char *extra;
    size_t extra_len;
    size_t hi, pos, epos;
    bool in_extra;
} vary_it;

static bool vary_next(vary_it *it, const char **el, size_t *n) {
    if (!it->in_extra) {
        if (it->m && corral__http_fields_next(it->m, "vary", &it->hi, &it->pos, el, n)) return true;
        it->in_extra = true;
    }
    return it->extra && corral__http_list_next(it->extra, it->extra_len, &it->epos, el, n);
}

int corral_http_vary_spec(const corral_http_msg *resp, const char *extra, size_t extra_len,
                          char *buf, size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!resp || !len || (!extra && extra_len)) return CORRAL_EINVAL;
    const vary_it start = { resp, extra, extra_len, 0, 0, 0, false };
    vary_it it = start;
    const char *el;
    size_t n, count = 0;
    while (vary_next(&it, &el, &n)) {
        if (n == 1 && el[0] == '*') return CORRAL_HTTP_VARY_ANY;
        if (!corral__http_is_token(el, n) || ++count > MAX_VARY_NAMES) return CORRAL_EINVAL;
    }
    /* Emit in order without duplicates: each round picks the least name above the last. */
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    const char *last = NULL;
    size_t last_len = 0;
    for (;;) {
        const char *best = NULL;
        size_t best_len = 0;
        it = start;
        while (vary_next(&it, &el, &n)) {
            if (last && icmp(el, n, last, last_len) <= 0) continue;
            if (!best || icmp(el, n, best, best_len) < 0) {
                best = el;
                best_len = n;
            }
        }
        if (!best) break;
        if (last) corral__http_puts(&o, ",");
        put_lower(&o, best, best_len);
        last = best;
        last_len = best_len;
    }
    return corral__http_out_end(&o, len);
}

/* ---- Variant key ---- */

typedef enum norm_kind {
    NORM_PLAIN,
    NORM_ACCEPT,
    NORM_WEIGHED,
    NORM_ENCODING,
    NORM_COOKIE
} norm_kind;

static norm_kind norm_of(const char *name, size_t n) {
    if (corral__http_ieq(name, n, "accept-encoding")) return NORM_ENCODING;
    if (corral__http_ieq(name, n, "accept-language") || corral__http_ieq(name, n, "accept-charset"))
        return NORM_WEIGHED;
    if (corral__http_ieq(name, n, "accept")) return NORM_ACCEPT;
    if (corral__http_ieq(name, n, "cookie")) return NORM_COOKIE;
    return NORM_PLAIN;
}

/* Iterates the fields named (name, n) of `m`, case-insensitively. */
static const corral_http_header *next_field(const corral_http_msg *m, const char *name, size_t n,
                                            size_t *i) {
    for (; *i < m->n_headers; (*i)++) {
        const corral_http_header *h = &m->headers[*i];
        if (icmp(h->name, h->name_len, name, n) == 0) {
            (*i)++;
            return h;
        }
    }
    return NULL;
}

/* Iterates the list elements of the fields named (name, n): state (*hi, *pos) from 0. */
static bool next_element(const corral_http_msg *m, const char *name, size_t n, size_t *hi,
                         size_t *pos, const char **el, size_t *el_len) {
    for (; *hi < m->n_headers; (*hi)++, *pos = 0) {
        const corral_http_header *h = &m->headers[*hi];
        if (icmp(h->name, h->name_len, name, n) != 0) continue;
        if (corral__http_list_next(h->value, h->value_len, pos, el, el_len)) return true;
    }
    return false;
}

/* An Accept-Encoding element: its coding (trimmed), and whether q=0 excludes it. */
static void coding_of(const char *el, size_t n, const char **coding, size_t *coding_len,
                      bool *excluded) {
    const char *semi = memchr(el, ';', n);
    *coding = el;
    *coding_len = semi ? (size_t)(semi - el) : n;
    corral__http_trim(coding, coding_len);
    *excluded = false;
    while (semi) {
        const char *p = semi + 1;
        size_t rest = n - (size_t)(p - el);
        semi = memchr(p, ';', rest);
        size_t pn = semi ? (size_t)(semi - p) : rest;
        corral__http_trim(&p, &pn);
        if (pn >= 2 && (p[0] == 'q' || p[0] == 'Q')) {
            const char *v = p + 1;
            size_t vn = pn - 1;
            corral__http_trim(&v, &vn);
            if (vn >= 1 && v[0] == '=') {
                v++;
                vn--;
                corral__http_trim(&v, &vn);
                /* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */
                bool zero = vn >= 1 && v[0] == '0';
                for (size_t k = 1; zero && k < vn; k++)
                    if (v[k] != '.' && v[k] != '0') zero = false;
                if (zero) *excluded = true;
            }
        }
    }
}

/* Writes one Accept-style element lowercased, without whitespace outside quoted strings. */
static void put_accept_element(corral__http_out *o, const char *el, size_t el_len) {
    bool quoted = false;
    for (size_t k = 0; k < el_len; k++) {
        char c = el[k];
        if (c == '"') quoted = !quoted;
        if (!quoted && corral__http_is_ws((unsigned char)c)) continue;
        c = quoted ? c : (char)corral__http_lower((unsigned char)c);
        corral__http_put(o, &c, 1);
    }
}

/* Parses a qvalue (RFC 9110 §12.4.2) into thousandths. False when malformed. */
static bool qvalue(const char *v, size_t n, unsigned *out) {
    if (n == 0 || (v[0] != '0' && v[0] != '1') || n > 5 || (n > 1 && v[1] != '.')) return false;
    unsigned q = (unsigned)(v[0] - '0') * 1000, scale = 100;
    for (size_t k = 2; k < n; k++, scale /= 10) {
        if (v[k] < '0' || v[k] > '9') return false;
        q += (unsigned)(v[k] - '0') * scale;
    }
    if (q > 1000) return false;
    *out = q;
    return true;
}

/* An element of a weighed list and its weight in thousandths. */
typedef struct weighed {
    const char *text; /* the element without its weight */
    size_t len;
    unsigned q;
} weighed;

/* Splits "fr-ch ; q=0.8" into "fr-ch " and 800. An element whose last parameter is not a valid
 * weight keeps its whole text, at weight 1000 (what it says is kept, only its place moves). */
static weighed weigh(const char *el, size_t n) {
    weighed w = { el, n, 1000 };
    const char *semi = NULL;
    for (size_t k = n; k > 0; k--) {
        if (el[k - 1] == ';') {
            semi = el + k - 1;
            break;
        }
    }
    if (!semi) return w;
    const char *p = semi + 1;
    size_t pn = n - (size_t)(p - el);
    corral__http_trim(&p, &pn);
    unsigned q;
    if (pn >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' && qvalue(p + 2, pn - 2, &q)) {
        w.len = (size_t)(semi - el);
        w.q = q;
    }
    return w;
}

/* Accept-Language / Accept-Charset: elements ordered by weight, highest first, stable. Returns
 * false (nothing written) when there are more than MAX_WEIGHED elements. */
static bool put_weighed(corral__http_out *o, const corral_http_msg *req, const char *name,
                        size_t n) {
    weighed w[MAX_WEIGHED];
    size_t count = 0, hi = 0, pos = 0, el_len;
    const char *el;
    while (next_element(req, name, n, &hi, &pos, &el, &el_len)) {
        if (count == MAX_WEIGHED) return false;
        weighed x = weigh(el, el_len);
        size_t k = count++;
        for (; k > 0 && w[k - 1].q < x.q; k--) /* insertion sort: stable */
            w[k] = w[k - 1];
        w[k] = x;
    }
    for (size_t k = 0; k < count; k++) {
        if (k) corral__http_puts(o, ",");
        put_accept_element(o, w[k].text, w[k].len);
        if (w[k].q == 1000) continue;
        char q[8] = { ';', 'q', '=', '0', '.', 0, 0, 0 };
        size_t ql = 4;
        for (unsigned v = w[k].q, scale = 100; v; v %= scale, scale /= 10)
            q[ql++] = (char)('0' + v / scale);
        corral__http_put(o, q, w[k].q ? ql : 4);
    }
    return true;
}

/* Writes the normalised value of the fields named (name, n). Returns false when absent. */
static bool put_normalised(corral__http_out *o, const corral_http_msg *req, const char *name,
                           size_t n) {
    size_t i = 0;
    if (!next_field(req, name, n, &i)) return false;
    norm_kind kind = norm_of(name, n);
    size_t hi = 0, pos = 0, el_len;
    const char *el;
    bool first = true;
    if (kind == NORM_PLAIN) {
        i = 0;
        const corral_http_header *h;
        while ((h = next_field(req, name, n, &i)) != NULL) {
            if (!first) corral__http_puts(o, ",");
            corral__http_put(o, h->value, h->value_len);
            first = false;
        }
    } else if (kind == NORM_COOKIE) {
        i = 0;
        const corral_http_header *h;
        while ((h = next_field(req, name, n, &i)) != NULL) {
            size_t k = 0;
            while (k < h->value_len) {
                const char *semi = memchr(h->value + k, ';', h->value_len - k);
                size_t end = semi ? (size_t)(semi - h->value) : h->value_len;
                const char *piece = h->value + k;
                size_t pn = end - k;
                corral__http_trim(&piece, &pn);
                if (pn) {
                    if (!first) corral__http_puts(o, "; ");
                    corral__http_put(o, piece, pn);
                    first = false;
                }
                k = end + 1;
            }
        }
    } else if (kind == NORM_ACCEPT || (kind == NORM_WEIGHED && !put_weighed(o, req, name, n))) {
        while (next_element(req, name, n, &hi, &pos, &el, &el_len)) {
            if (!first) corral__http_puts(o, ",");
            put_accept_element(o, el, el_len);
            first = false;
        }
    } else if (kind == NORM_WEIGHED) {
        /* put_weighed wrote it */
    } else {
        /* Accept-Encoding: the sorted set of acceptable codings. */
        size_t count = 0;
        while (next_element(req, name, n, &hi, &pos, &el, &el_len))
            count++;
        if (count > MAX_CODINGS) {
            i = 0;
            const corral_http_header *h;
            while ((h = next_field(req, name, n, &i)) != NULL) {
                if (!first) corral__http_puts(o, ",");
                corral__http_put(o, h->value, h->value_len);
                first = false;
            }
            return true;
        }
        const char *last = NULL;
        size_t last_len = 0;
        for (;;) {
            const char *best = NULL, *c;
            size_t best_len = 0, cn;
            bool excluded;
            hi = pos = 0;
            while (next_element(req, name, n, &hi, &pos, &el, &el_len)) {
                coding_of(el, el_len, &c, &cn, &excluded);
                if (excluded || cn == 0) continue;
                if (last && icmp(c, cn, last, last_len) <= 0) continue;
                if (!best || icmp(c, cn, best, best_len) < 0) {
                    best = c;
                    best_len = cn;
                }
            }
            if (!best) break;
            /* A coding both accepted and refused (q=0 elsewhere) counts as refused. */
            bool refused = false;
            hi = pos = 0;
            while (next_element(req, name, n, &hi, &pos, &el, &el_len)) {
                coding_of(el, el_len, &c, &cn, &excluded);
                if (excluded && icmp(c, cn, best, best_len) == 0) refused = true;
            }
            if (!refused) {
                if (!first) corral__http_puts(o, ",");
                put_lower(o, best, best_len);
                first = false;
            }
            last = best;
            last_len = best_len;
        }
    }
    return true;
}

int corral_http_variant_key(const corral_http_msg *req, const char *spec, size_t spec_len,
                            char *buf, size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!req || !len || (!spec && spec_len) || !req->is_request) return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    size_t pos = 0, n, names = 0;
    const char *name;
    while (spec && corral__http_list_next(spec, spec_len, &pos, &name, &n)) {
        if (!corral__http_is_token(name, n) || ++names > MAX_VARY_NAMES) return CORRAL_EINVAL;
        put_lower(&o, name, n);
        corral__http_out count;
        corral__http_out_init(&count, NULL, 0);
        if (!put_normalised(&count, req, name, n)) {
            corral__http_puts(&o, "!;");
            continue;
        }
        corral__http_puts(&o, "=");
        corral__http_put_u64(&o, count.len);
        corral__http_puts(&o, ":");
        put_normalised(&o, req, name, n);
        corral__http_puts(&o, ";");
    }
    return corral__http_out_end(&o, len);
}

/* ---- Cookies ---- */

static bool name_listed(const char *name, size_t n, const char *const *names, size_t n_names) {
    for (size_t i = 0; i < n_names; i++) {
        const char *l = names[i];
        size_t ln = strlen(l);
        if (ln > 0 && l[ln - 1] == '*') {
            if (n >= ln - 1 && memcmp(name, l, ln - 1) == 0) return true;
        } else if (ln == n && memcmp(name, l, n) == 0) {
            return true;
        }
    }
    return false;
}

/* Filters one Cookie value into `o`; `*first` tracks whether a separator is due. */
static void filter_cookie(corral__http_out *o, const char *s, size_t len, const char *const *names,
                          size_t n_names, bool keep_listed, bool *first) {
    size_t k = 0;
    while (k < len) {
        const char *semi = memchr(s + k, ';', len - k);
        size_t end = semi ? (size_t)(semi - s) : len;
        const char *piece = s + k;
        size_t pn = end - k;
        k = end + 1;
        corral__http_trim(&piece, &pn);
        if (pn == 0) continue;
        const char *eq = memchr(piece, '=', pn);
        const char *name = piece;
        size_t nn = eq ? (size_t)(eq - piece) : pn;
        corral__http_trim(&name, &nn);
        if (name_listed(name, nn, names, n_names) != keep_listed) continue;
        if (!*first) corral__http_puts(o, "; ");
        corral__http_put(o, piece, pn);
        *first = false;
    }
}

int corral_http_cookie_filter(const char *cookie, size_t len, const char *const *names,
                              size_t n_names, bool keep_listed, char *out, size_t cap,
                              size_t *out_len) {
    if (out_len) *out_len = 0;
    if (!out_len || (!cookie && len) || (!names && n_names)) return CORRAL_EINVAL;
    for (size_t i = 0; i < n_names; i++)
        if (!names[i]) return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, out, cap);
    bool first = true;
    if (cookie) filter_cookie(&o, cookie, len, names, n_names, keep_listed, &first);
    return corral__http_out_end(&o, out_len);
}

int corral_http_request_filter_cookies(const corral_http_msg *req, const char *const *names,
                                       size_t n_names, bool keep_listed,
                                       corral_http_header *headers, size_t max_headers, char *buf,
                                       size_t cap, corral_http_msg *out) {
    if (!req || !out || (!names && n_names) || (!headers && max_headers) || !req->is_request)
        return CORRAL_EINVAL;
    for (size_t i = 0; i < n_names; i++)
        if (!names[i]) return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    bool first = true;
    size_t count = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const corral_http_header *h = &req->headers[i];
        if (corral__http_ieq(h->name, h->name_len, "cookie")) {
            filter_cookie(&o, h->value, h->value_len, names, n_names, keep_listed, &first);
            continue;
        }
        if (count >= max_headers) return CORRAL_ENOSPC;
        headers[count++] = *h;
    }
    if (o.over) return CORRAL_ENOSPC;
    if (o.len > 0) {
        if (count >= max_headers) return CORRAL_ENOSPC;
        headers[count].name = "Cookie";
        headers[count].name_len = 6;
        headers[count].value = buf;
        headers[count].value_len = o.len;
        count++;
    }
    *out = *req;
    out->headers = headers;
    out->n_headers = count;
    return CORRAL_OK;
}
