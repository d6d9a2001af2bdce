/*
 * fields.c - the field-level helpers of the HTTP engine: byte classes (RFC 9110 §5.6.2), list
 * iteration (§5.6.1), field lookup and joining (§5.2, §5.3), hop-by-hop fields (§7.6.1), the
 * output writer, names of codes, methods and actions, and small shared predicates.
 *
 * Everything is a pure function over its arguments; the only data is the constant class table.
 */
#include "http_internal.h"

#include <limits.h>

/* Generated: bit 0x01 tchar, 0x02 field-vchar/obs-text, 0x04 SP/HTAB, 0x08 request-target
 * (0x21-0x7e but '#'), 0x10 Host (reg-name, IP-literal, port), 0x20 HEXDIG. */
const uint8_t corral__http_class[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x00 */
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x08 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x10 */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 0x18 */
    0x04, 0x1b, 0x0a, 0x03, 0x1b, 0x1b, 0x1b, 0x1b, /* 0x20 */
    0x1a, 0x1a, 0x1b, 0x1b, 0x1a, 0x1b, 0x1b, 0x0a, /* 0x28 */
    0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, /* 0x30 */
    0x3b, 0x3b, 0x1a, 0x1a, 0x0a, 0x1a, 0x0a, 0x0a, /* 0x38 */
    0x0a, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x1b, /* 0x40 */
    0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, /* 0x48 */
    0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, /* 0x50 */
    0x1b, 0x1b, 0x1b, 0x1a, 0x0a, 0x1a, 0x0b, 0x1b, /* 0x58 */
    0x0b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x3b, 0x1b, /* 0x60 */
    0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, /* 0x68 */
    0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x1b, /* 0x70 */
    0x1b, 0x1b, 0x1b, 0x0a, 0x0b, 0x0a, 0x1b, 0x00, /* 0x78 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0x80 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0x88 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0x90 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0x98 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xa0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xa8 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xb0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xb8 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xc0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xc8 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xd0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xd8 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xe0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xe8 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xf0 */
    0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, 0x02, /* 0xf8 */
};

/* ---- Strings ---- */

bool corral__http_ieq(const char *a, size_t alen, const char *lc) {
    size_t i = 0;
    for (; i < alen; i++) {
        if (lc[i] == '\0' || corral__http_lower((unsigned char)a[i]) != (unsigned char)lc[i])
            return false;
    }
    return lc[i] == '\0';
}

bool corral__http_is_token(const char *s, size_t len) {
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (!corral__http_is((unsigned char)s[i], CORRAL__HTTP_TCHAR)) return false;
    return true;
}

void corral__http_trim(const char **s, size_t *len) {
    const char *p = *s;
    size_t n = *len;
    while (n > 0 && corral__http_is_ws((unsigned char)p[0])) {
        p++;
        n--;
    }
    while (n > 0 && corral__http_is_ws((unsigned char)p[n - 1]))
        n--;
    *s = p;
    *len = n;
}

/* ---- Lists ---- */

bool corral__http_list_next(const char *s, size_t len, size_t *pos, const char **el,
                            size_t *el_len) {
    size_t i = *pos;
    while (i < len) {
        size_t start = i;
        bool quoted = false;
        for (; i < len; i++) {
            char c = s[i];
            if (quoted) {
                if (c == '\\' && i + 1 < len)
                    i++;
                else if (c == '"')
                    quoted = false;
            } else if (c == '"') {
                quoted = true;
            } else if (c == ',') {
                break;
            }
        }
        const char *e = s + start;
        size_t n = i - start;
        if (i < len) i++; /* the comma */
        corral__http_trim(&e, &n);
        if (n > 0) {
            *pos = i;
            *el = e;
            *el_len = n;
            return true;
        }
    }
    *pos = len;
    return false;
}

bool corral__http_fields_next(const corral_http_msg *m, const char *lc, size_t *hi, size_t *pos,
                              const char **el, size_t *el_len) {
    for (; *hi < m->n_headers; (*hi)++, *pos = 0) {
        const corral_http_header *h = &m->headers[*hi];
        if (!corral__http_ieq(h->name, h->name_len, lc)) continue;
        if (corral__http_list_next(h->value, h->value_len, pos, el, el_len)) return true;
    }
    return false;
}

bool corral__http_has_token(const corral_http_msg *m, const char *lc, const char *token_lc) {
    size_t hi = 0, pos = 0, n;
    const char *el;
    while (corral__http_fields_next(m, lc, &hi, &pos, &el, &n))
        if (corral__http_ieq(el, n, token_lc)) return true;
    return false;
}

const corral_http_header *corral__http_get(const corral_http_msg *m, const char *lc,
                                           size_t *count) {
    const corral_http_header *first = NULL;
    size_t n = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const corral_http_header *h = &m->headers[i];
        if (corral__http_ieq(h->name, h->name_len, lc)) {
            if (!first) first = h;
            n++;
        }
    }
    if (count) *count = n;
    return first;
}

/* ---- Numbers ---- */

bool corral__http_delta_seconds(const char *s, size_t len, int64_t *out) {
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    if (len == 0) return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        if (v < CORRAL__HTTP_DELTA_MAX) v = v * 10 + (s[i] - '0');
    }
    *out = v > CORRAL__HTTP_DELTA_MAX ? CORRAL__HTTP_DELTA_MAX : v;
    return true;
}

/* ---- Output ---- */

void corral__http_put(corral__http_out *o, const void *s, size_t n) {
    if (n > SIZE_MAX - o->len) {
        o->over = true;
        o->len = SIZE_MAX;
        return;
    }
    if (!o->over && o->cap - o->len >= n) {
        if (n) memcpy(o->buf + o->len, s, n);
    } else {
        o->over = true;
    }
    o->len += n;
}

void corral__http_put_u64(corral__http_out *o, uint64_t v) {
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    corral__http_put(o, tmp + i, sizeof tmp - i);
}

int corral__http_out_end(const corral__http_out *o, size_t *len) {
    *len = o->len;
    return o->over ? CORRAL_ENOSPC : CORRAL_OK;
}

/* ---- Messages ---- */

void corral_http_msg_init(corral_http_msg *m, bool is_request) {
    if (!m) return;
    memset(m, 0, sizeof *m);
    m->is_request = is_request;
    m->version_minor = 1;
    m->keep_alive = true;
}

/* Lowercases a NUL-terminated name into `lc` (capacity `cap`); false when it does not fit. */
static bool lower_name(const char *name, char *lc, size_t cap) {
    size_t n = strlen(name);
    if (n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        lc[i] = (char)corral__http_lower((unsigned char)name[i]);
    lc[n] = '\0';
    return true;
}

const corral_http_header *corral_http_msg_get(const corral_http_msg *m, const char *name,
                                              size_t *count) {
    char lc[128];
    if (count) *count = 0;
    if (!m || !name || !lower_name(name, lc, sizeof lc)) return NULL;
    return corral__http_get(m, lc, count);
}

int corral_http_msg_join(const corral_http_msg *m, const char *name, char *buf, size_t cap,
                         size_t *len) {
    char lc[128];
    if (len) *len = 0;
    if (!m || !name || !len || !lower_name(name, lc, sizeof lc)) return CORRAL_EINVAL;
    const char *sep = strcmp(lc, "cookie") == 0 ? "; " : ", ";
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    bool first = true;
    for (size_t i = 0; i < m->n_headers; i++) {
        const corral_http_header *h = &m->headers[i];
        if (!corral__http_ieq(h->name, h->name_len, lc)) continue;
        if (h->value_len == 0) continue; /* an empty line adds no element */
        if (!first) corral__http_puts(&o, sep);
        corral__http_put(&o, h->value, h->value_len);
        first = false;
    }
    return corral__http_out_end(&o, len);
}

bool corral_http_is_hop_by_hop(const corral_http_msg *m, const char *name, size_t name_len) {
    static const char *const fixed[] = { "connection",
                                         "keep-alive",
                                         "proxy-connection",
                                         "te",
                                         "trailer",
                                         "transfer-encoding",
                                         "upgrade",
                                         "proxy-authenticate",
                                         "proxy-authorization" };
    if (!name) return false;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (corral__http_ieq(name, name_len, fixed[i])) return true;
    if (!m) return false;
    /* Connection may not strip what the intermediary itself relies on. */
    if (corral__http_ieq(name, name_len, "host") ||
        corral__http_ieq(name, name_len, "content-length"))
        return false;
    size_t hi = 0, pos = 0, n;
    const char *el;
    while (corral__http_fields_next(m, "connection", &hi, &pos, &el, &n)) {
        if (n != name_len) continue;
        size_t i = 0;
        while (i < n && corral__http_lower((unsigned char)el[i]) ==
                            corral__http_lower((unsigned char)name[i]))
            i++;
        if (i == n) return true;
    }
    return false;
}

static bool named(const corral_http_header *h, const char *const *names, size_t n_names) {
    for (size_t k = 0; k < n_names; k++) {
        const char *l = names[k];
        size_t i = 0;
        while (i < h->name_len && l[i] &&
               corral__http_lower((unsigned char)h->name[i]) ==
                   corral__http_lower((unsigned char)l[i]))
            i++;
        if (i == h->name_len && l[i] == '\0') return true;
    }
    return false;
}

int corral_http_msg_drop_fields(const corral_http_msg *m, const char *const *names, size_t n_names,
                                corral_http_header *headers, size_t max_headers,
                                corral_http_msg *out) {
    if (!m || !out || (!names && n_names) || (!headers && max_headers)) return CORRAL_EINVAL;
    for (size_t k = 0; k < n_names; k++)
        if (!names[k]) return CORRAL_EINVAL;
    size_t i = 0;
    while (i < m->n_headers && !named(&m->headers[i], names, n_names))
        i++;
    *out = *m;
    if (i == m->n_headers) return CORRAL_OK;
    size_t count = 0;
    for (i = 0; i < m->n_headers; i++) {
        if (named(&m->headers[i], names, n_names)) continue;
        if (count == max_headers) return CORRAL_ENOSPC;
        headers[count++] = m->headers[i];
    }
    out->headers = headers;
    out->n_headers = count;
    return CORRAL_OK;
}

const char *corral_http_method_name(corral_http_method m) {
    switch (m) {
    case CORRAL_HTTP_GET: return "GET";
    case CORRAL_HTTP_HEAD: return "HEAD";
    case CORRAL_HTTP_POST: return "POST";
    case CORRAL_HTTP_PUT: return "PUT";
    case CORRAL_HTTP_DELETE: return "DELETE";
    case CORRAL_HTTP_CONNECT: return "CONNECT";
    case CORRAL_HTTP_OPTIONS: return "OPTIONS";
    case CORRAL_HTTP_TRACE: return "TRACE";
    case CORRAL_HTTP_PATCH: return "PATCH";
    case CORRAL_HTTP_PURGE: return "PURGE";
    case CORRAL_HTTP_METHOD_OTHER: break;
    }
    return "OTHER";
}

const char *corral_http_action_name(corral_http_action a) {
    switch (a) {
    case CORRAL_HTTP_NONE: return "NONE";
    case CORRAL_HTTP_HIT: return "HIT";
    case CORRAL_HTTP_STALE_WHILE_REVALIDATE: return "STALE_WHILE_REVALIDATE";
    case CORRAL_HTTP_REVALIDATE: return "REVALIDATE";
    case CORRAL_HTTP_MISS: return "MISS";
    case CORRAL_HTTP_PASS: return "PASS";
    case CORRAL_HTTP_GATEWAY_TIMEOUT: return "GATEWAY_TIMEOUT";
    case CORRAL_HTTP_STORE: return "STORE";
    case CORRAL_HTTP_DONT_STORE: return "DONT_STORE";
    case CORRAL_HTTP_STALE_IF_ERROR: return "STALE_IF_ERROR";
    case CORRAL_HTTP_ERROR: return "ERROR";
    }
    return "UNKNOWN";
}

/* ---- Codes ---- */

const char *corral_http_strerror(int rc) {
    switch (rc) {
    case CORRAL_HTTP_GOT_HEAD: return "message head complete";
    case CORRAL_HTTP_GOT_BODY: return "body data";
    case CORRAL_HTTP_GOT_END: return "message complete";
    case CORRAL_HTTP_NOMATCH: return "validators do not match the stored response";
    case CORRAL_HTTP_VARY_ANY: return "response varies on everything (Vary: *)";
    case CORRAL_HTTP_RANGE_UNSATISFIABLE: return "no range overlaps the representation";
    case CORRAL_HTTP_EBADLINE: return "malformed request or status line";
    case CORRAL_HTTP_EBADTARGET: return "malformed request-target";
    case CORRAL_HTTP_EVERSION: return "unsupported HTTP version";
    case CORRAL_HTTP_EBADHEADER: return "malformed header field";
    case CORRAL_HTTP_EOBSFOLD: return "obsolete line folding (obs-fold)";
    case CORRAL_HTTP_EBARECR: return "bare CR";
    case CORRAL_HTTP_EBARELF: return "line not ended by CRLF";
    case CORRAL_HTTP_EHEADTOOBIG: return "header section too large";
    case CORRAL_HTTP_ETOOMANYHEADERS: return "too many header fields";
    case CORRAL_HTTP_EBADLENGTH: return "invalid Content-Length";
    case CORRAL_HTTP_EDUPLENGTH: return "more than one Content-Length";
    case CORRAL_HTTP_ELENGTHTE: return "both Content-Length and Transfer-Encoding";
    case CORRAL_HTTP_EBADTE: return "invalid Transfer-Encoding";
    case CORRAL_HTTP_EUNSUPTE: return "unsupported transfer coding";
    case CORRAL_HTTP_EBADCHUNK: return "malformed chunked body";
    case CORRAL_HTTP_EBADTRAILER: return "malformed or oversized trailer section";
    case CORRAL_HTTP_EHOST: return "missing, repeated or invalid Host";
    case CORRAL_HTTP_ETRUNCATED: return "message truncated";
    default: return corral_strerror(rc);
    }
}

unsigned corral_http_error_status(int rc) {
    switch (rc) {
    case CORRAL_HTTP_EHEADTOOBIG:
    case CORRAL_HTTP_ETOOMANYHEADERS: return 431;
    case CORRAL_HTTP_EUNSUPTE: return 501;
    case CORRAL_HTTP_EVERSION: return 505;
    default: return rc < 0 ? 400 : 0;
    }
}

/* ---- Shared predicates ---- */

bool corral__http_status_heuristic(unsigned status) {
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501: return true;
    default: return false;
    }
}

bool corral__http_has_validator(const corral_http_msg *resp) {
    return corral__http_get(resp, "etag", NULL) != NULL ||
           corral__http_get(resp, "last-modified", NULL) != NULL;
}

bool corral__http_request_parts(const corral_http_msg *req, const char **host, size_t *host_len,
                                const char **path, size_t *path_len) {
    const char *t = req->target;
    size_t n = req->target_len;
    *host = "";
    *host_len = 0;
    if (n > 0 && t && t[0] == '/') {
        const corral_http_header *h = corral__http_get(req, "host", NULL);
        if (h) {
            *host = h->value;
            *host_len = h->value_len;
        }
        *path = t;
        *path_len = n;
        return true;
    }
    /* absolute-form: scheme "://" authority path-abempty [ "?" query ] */
    size_t i = 0;
    while (i < n && t[i] != ':' && t[i] != '/' && t[i] != '?')
        i++;
    if (i == 0 || i + 2 >= n || t[i] != ':' || t[i + 1] != '/' || t[i + 2] != '/') return false;
    size_t a = i + 3, e = a;
    while (e < n && t[e] != '/' && t[e] != '?')
        e++;
    /* userinfo is not part of the origin */
    const char *at = memchr(t + a, '@', e - a);
    if (at) a = (size_t)(at - t) + 1;
    *host = t + a;
    *host_len = e - a;
    /* An empty path stands for "/" (RFC 9112 §3.2.1): the caller puts one in front of a path
     * that does not start with '/'. */
    *path = t + e;
    *path_len = n - e;
    return true;
}

void corral__http_put_host(corral__http_out *o, const char *host, size_t len) {
    if (len >= 3 && memcmp(host + len - 3, ":80", 3) == 0) len -= 3;
    for (size_t i = 0; i < len; i++) {
        char c = (char)corral__http_lower((unsigned char)host[i]);
        corral__http_put(o, &c, 1);
    }
}
