/*
 * conditional.c - conditional requests and the heads a cache writes: evaluating a client's
 * preconditions against a stored response (RFC 9110 §13.1, §13.2), the request sent to the
 * origin (hop-by-hop fields removed, RFC 9110 §7.6.1; conditional on revalidation, RFC 9111
 * §4.3.1), the head kept in the store (§3.1), freshening it from a 304 (§4.3.4, §3.2), and the
 * head served from the cache with its Age (§5.1) or as a 304 (RFC 9110 §15.4.5).
 *
 * Every writer appends to a caller's buffer and reports the size needed when it is too small.
 */
#include "http_internal.h"

/* ---- Preconditions ---- */

/* True when some entity-tag of the list fields `lc` of `req` matches `etag` ("*" matches any
 * current representation). */
static bool list_matches(const corral_http_msg *req, const char *lc, const corral_http_header *etag,
                         bool strong) {
    size_t hi = 0, pos = 0, n;
    const char *el;
    while (corral__http_fields_next(req, lc, &hi, &pos, &el, &n)) {
        if (n == 1 && el[0] == '*') return true;
        if (etag && corral_http_etag_match(el, n, etag->value, etag->value_len, strong))
            return true;
    }
    return false;
}

unsigned corral_http_conditional_status(const corral_http_msg *req, const corral_http_msg *stored,
                                        int64_t now_ms) {
    if (!req || !stored || !req->is_request || stored->is_request) return 0;
    if (stored->status < 200 || stored->status > 299) return 0;
    bool get_or_head = req->method == CORRAL_HTTP_GET || req->method == CORRAL_HTTP_HEAD;
    const corral_http_header *etag = corral__http_get(stored, "etag", NULL);
    int64_t lm = 0;
    bool has_lm = corral__http_date_field(stored, "last-modified", now_ms, &lm) == 1;

    if (corral__http_get(req, "if-match", NULL)) {
        if (!list_matches(req, "if-match", etag, true)) return 412;
    } else {
        int64_t ius;
        if (corral__http_date_field(req, "if-unmodified-since", now_ms, &ius) == 1 && has_lm &&
            lm > ius)
            return 412;
    }
    if (corral__http_get(req, "if-none-match", NULL)) {
        if (list_matches(req, "if-none-match", etag, false)) return get_or_head ? 304 : 412;
        return 0;
    }
    int64_t ims;
    if (get_or_head && has_lm &&
        corral__http_date_field(req, "if-modified-since", now_ms, &ims) == 1 && ims <= now_ms &&
        lm <= ims)
        return 304;
    return 0;
}

/* ---- Writers ---- */

static void put_field(corral__http_out *o, const corral_http_header *h) {
    corral__http_put(o, h->name, h->name_len);
    corral__http_puts(o, ": ");
    corral__http_put(o, h->value, h->value_len);
    corral__http_puts(o, "\r\n");
}

static bool is_one_of(const corral_http_header *h, const char *const *lc, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (corral__http_ieq(h->name, h->name_len, lc[i])) return true;
    return false;
}

static const char *const framing_fields[] = { "content-length", "transfer-encoding" };
static const char *const precondition_fields[] = { "if-match",          "if-none-match",
                                                   "if-modified-since", "if-unmodified-since",
                                                   "if-range",          "range" };

static void put_status_line(corral__http_out *o, unsigned status, const char *reason,
                            size_t reason_len) {
    corral__http_puts(o, "HTTP/1.1 ");
    corral__http_put_u64(o, status);
    corral__http_puts(o, " ");
    corral__http_put(o, reason, reason_len);
    corral__http_puts(o, "\r\n");
}

static void put_extra(corral__http_out *o, const char *extra, size_t extra_len) {
    if (extra) corral__http_put(o, extra, extra_len);
    corral__http_puts(o, "\r\n");
}

int corral_http_write_origin_request(const corral_http_msg *req, const corral_http_msg *revalidate,
                                     unsigned flags, const char *extra, size_t extra_len, char *buf,
                                     size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!req || !len || !req->is_request || !req->target || !req->method_name ||
        (!extra && extra_len) || (revalidate && revalidate->is_request))
        return CORRAL_EINVAL;
    bool as_get = revalidate || (flags & CORRAL_HTTP_FWD_AS_GET);
    bool strip = revalidate || (flags & CORRAL_HTTP_FWD_STRIP_CONDITIONALS);
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    if (as_get)
        corral__http_puts(&o, "GET");
    else
        corral__http_put(&o, req->method_name, req->method_len);
    corral__http_puts(&o, " ");
    bool absolute = false;
    if (req->target_len == 1 && req->target[0] == '*') {
        corral__http_puts(&o, "* HTTP/1.1\r\n");
    } else {
        const char *host, *path;
        size_t host_len, path_len;
        if (!corral__http_request_parts(req, &host, &host_len, &path, &path_len))
            return CORRAL_EINVAL; /* authority-form: the proxy does not tunnel */
        absolute = req->target[0] != '/';
        if (path_len == 0 || path[0] != '/') corral__http_puts(&o, "/");
        corral__http_put(&o, path, path_len);
        corral__http_puts(&o, " HTTP/1.1\r\n");
        if (absolute) {
            /* RFC 9112 §3.2.2: the target's authority replaces Host. */
            corral__http_puts(&o, "Host: ");
            corral__http_put(&o, host, host_len);
            corral__http_puts(&o, "\r\n");
        }
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        const corral_http_header *h = &req->headers[i];
        if (corral_http_is_hop_by_hop(req, h->name, h->name_len) || is_one_of(h, framing_fields, 2))
            continue;
        if (absolute && corral__http_ieq(h->name, h->name_len, "host")) continue;
        if (strip && is_one_of(h, precondition_fields, 6)) continue;
        put_field(&o, h);
    }
    if (!as_get) {
        if (req->framing == CORRAL_HTTP_FRAMING_CHUNKED) {
            corral__http_puts(&o, "Transfer-Encoding: chunked\r\n");
        } else if (req->framing == CORRAL_HTTP_FRAMING_LENGTH) {
            corral__http_puts(&o, "Content-Length: ");
            corral__http_put_u64(&o, req->content_length);
            corral__http_puts(&o, "\r\n");
        }
    }
    if (revalidate) {
        const corral_http_header *etag = corral__http_get(revalidate, "etag", NULL);
        bool weak;
        const char *op;
        size_t op_len, used;
        if (etag &&
            corral__http_etag_parse(etag->value, etag->value_len, &weak, &op, &op_len, &used)) {
            corral__http_puts(&o, "If-None-Match: ");
            corral__http_put(&o, etag->value, used);
            corral__http_puts(&o, "\r\n");
        }
        /* RFC 9110 §13.1.3: send the Last-Modified value exactly as received. */
        const corral_http_header *lm = corral__http_get(revalidate, "last-modified", NULL);
        int64_t t;
        if (lm && corral_http_parse_date(lm->value, lm->value_len, 0, &t) == CORRAL_OK) {
            corral__http_puts(&o, "If-Modified-Since: ");
            corral__http_put(&o, lm->value, lm->value_len);
            corral__http_puts(&o, "\r\n");
        }
    }
    put_extra(&o, extra, extra_len);
    return corral__http_out_end(&o, len);
}

static bool status_ok(unsigned s) {
    return s >= 100 && s <= 999;
}

int corral_http_write_stored_head(const corral_http_msg *resp, char *buf, size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!resp || !len || resp->is_request || !status_ok(resp->status)) return CORRAL_EINVAL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    put_status_line(&o, resp->status, resp->reason, resp->reason ? resp->reason_len : 0);
    for (size_t i = 0; i < resp->n_headers; i++) {
        const corral_http_header *h = &resp->headers[i];
        if (corral_http_is_hop_by_hop(resp, h->name, h->name_len) ||
            is_one_of(h, framing_fields, 2))
            continue;
        put_field(&o, h);
    }
    corral__http_puts(&o, "\r\n");
    return corral__http_out_end(&o, len);
}

/* Fields a 304 may update in a stored response (RFC 9111 §3.2). */
static bool updatable(const corral_http_msg *m, const corral_http_header *h) {
    static const char *const never[] = { "content-length", "content-encoding", "content-range",
                                         "transfer-encoding" };
    return !corral_http_is_hop_by_hop(m, h->name, h->name_len) && !is_one_of(h, never, 4);
}

/* True when `update` carries an updatable field named like `h`. */
static bool replaced(const corral_http_msg *update, const corral_http_header *h) {
    for (size_t i = 0; i < update->n_headers; i++) {
        const corral_http_header *u = &update->headers[i];
        if (u->name_len == h->name_len && updatable(update, u)) {
            size_t k = 0;
            while (k < h->name_len && corral__http_lower((unsigned char)u->name[k]) ==
                                          corral__http_lower((unsigned char)h->name[k]))
                k++;
            if (k == h->name_len) return true;
        }
    }
    return false;
}

/* Fields describing the exchange that fetched the stored response rather than the
 * representation: the entry's times become the revalidation's, so its Date and Age must too
 * (a 304 without Date or Age would otherwise leave the old ones to age the entry at once). */
static const char *const exchange_fields[] = { "date", "age" };

int corral_http_freshen(const corral_http_msg *stored, const corral_http_msg *update, char *buf,
                        size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!stored || !update || !len || stored->is_request || update->is_request ||
        !status_ok(stored->status))
        return CORRAL_EINVAL;
    /* §4.3.4: the update's validators must select the stored response. */
    const corral_http_header *ue = corral__http_get(update, "etag", NULL);
    const corral_http_header *se = corral__http_get(stored, "etag", NULL);
    if (ue) {
        bool weak;
        const char *op;
        size_t op_len, used;
        if (!se || !corral__http_etag_parse(ue->value, ue->value_len, &weak, &op, &op_len, &used) ||
            !corral_http_etag_match(ue->value, ue->value_len, se->value, se->value_len, !weak))
            return CORRAL_HTTP_NOMATCH;
    } else {
        const corral_http_header *ul = corral__http_get(update, "last-modified", NULL);
        const corral_http_header *sl = corral__http_get(stored, "last-modified", NULL);
        int64_t ut, st;
        if (ul &&
            (!sl || corral_http_parse_date(ul->value, ul->value_len, 0, &ut) != CORRAL_OK ||
             corral_http_parse_date(sl->value, sl->value_len, 0, &st) != CORRAL_OK || ut != st))
            return CORRAL_HTTP_NOMATCH;
    }
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    put_status_line(&o, stored->status, stored->reason, stored->reason ? stored->reason_len : 0);
    for (size_t i = 0; i < stored->n_headers; i++) {
        const corral_http_header *h = &stored->headers[i];
        if (corral_http_is_hop_by_hop(stored, h->name, h->name_len) ||
            is_one_of(h, framing_fields, 2) || is_one_of(h, exchange_fields, 2) ||
            replaced(update, h))
            continue;
        put_field(&o, h);
    }
    for (size_t i = 0; i < update->n_headers; i++) {
        const corral_http_header *u = &update->headers[i];
        if (updatable(update, u)) put_field(&o, u);
    }
    corral__http_puts(&o, "\r\n");
    return corral__http_out_end(&o, len);
}

int corral_http_write_cached_head(const corral_http_msg *stored, unsigned status, int64_t age_s,
                                  int64_t body_len, const char *extra, size_t extra_len, char *buf,
                                  size_t cap, size_t *len) {
    if (len) *len = 0;
    if (!stored || !len || stored->is_request || !status_ok(stored->status) ||
        (status != 0 && status != 304 && status != 206) ||
        (status == 206 && stored->status != 200) || (!extra && extra_len))
        return CORRAL_EINVAL;
    static const char *const for_304[] = { "cache-control", "content-location", "date",
                                           "etag",          "expires",          "vary" };
    bool has_etag = corral__http_get(stored, "etag", NULL) != NULL;
    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    if (status == 304)
        put_status_line(&o, 304, "Not Modified", 12);
    else if (status == 206)
        put_status_line(&o, 206, "Partial Content", 15);
    else
        put_status_line(&o, stored->status, stored->reason,
                        stored->reason ? stored->reason_len : 0);
    for (size_t i = 0; i < stored->n_headers; i++) {
        const corral_http_header *h = &stored->headers[i];
        if (corral_http_is_hop_by_hop(stored, h->name, h->name_len) ||
            is_one_of(h, framing_fields, 2) || corral__http_ieq(h->name, h->name_len, "age") ||
            (status == 206 && corral__http_ieq(h->name, h->name_len, "content-range")))
            continue;
        if (status == 304 && !is_one_of(h, for_304, 6) &&
            !(!has_etag && corral__http_ieq(h->name, h->name_len, "last-modified")))
            continue;
        put_field(&o, h);
    }
    corral__http_puts(&o, "Age: ");
    corral__http_put_u64(&o, age_s > 0 ? (uint64_t)age_s : 0);
    corral__http_puts(&o, "\r\n");
    unsigned st = stored->status;
    if (status != 304 && body_len >= 0 && st >= 200 && st != 204 && st != 304) {
        corral__http_puts(&o, "Content-Length: ");
        corral__http_put_u64(&o, (uint64_t)body_len);
        corral__http_puts(&o, "\r\n");
    }
    put_extra(&o, extra, extra_len);
    return corral__http_out_end(&o, len);
}
