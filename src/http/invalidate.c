/*
 * invalidate.c - invalidation after unsafe methods (RFC 9111 §4.4): a 2xx or 3xx answer to a
 * request whose method is not safe (RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are) makes
 * the cache drop what it holds for the target URI, and for the URIs of Location and
 * Content-Location when they have the target's origin (never another origin's: that would let
 * one site purge another's entries).
 *
 * References are resolved against the target as RFC 3986 §5.2 says (absolute URI,
 * network-path, absolute-path, relative-path merged with the base's directory, query-only),
 * fragments dropped, dot segments removed (§5.2.4). Keys are primary keys
 * (corral_http_primary_key's format): purging one removes every variant.
 */
#include "http_internal.h"

/* Removes dot segments in place from the path `p` (`n` bytes, starting with '/'), RFC 3986
 * §5.2.4; returns the new length. The output never outgrows what it has read. */
static size_t remove_dots(char *p, size_t n) {
    size_t r = 0, w = 0;
    while (r < n) {
        size_t s = r + 1, e = s;
        while (e < n && p[e] != '/')
            e++;
        size_t len = e - s;
        bool last = e == n;
        if (len == 1 && p[s] == '.') {
            if (last) p[w++] = '/';
        } else if (len == 2 && p[s] == '.' && p[s + 1] == '.') {
            while (w > 0 && p[w - 1] != '/')
                w--;
            if (w > 0) w--;
            if (last) p[w++] = '/';
        } else {
            memmove(p + w, p + r, e - r);
            w += e - r;
        }
        r = e;
    }
    if (w == 0) p[w++] = '/';
    return w;
}

/* Hosts equal as keys see them: case-insensitive, ":80" ignored. */
static bool same_host(const char *a, size_t an, const char *b, size_t bn) {
    if (an >= 3 && memcmp(a + an - 3, ":80", 3) == 0) an -= 3;
    if (bn >= 3 && memcmp(b + bn - 3, ":80", 3) == 0) bn -= 3;
    if (an != bn) return false;
    for (size_t i = 0; i < an; i++)
        if (corral__http_lower((unsigned char)a[i]) != corral__http_lower((unsigned char)b[i]))
            return false;
    return true;
}

/* Splits an authority-and-path after "//" at `s`: host (without userinfo) and the rest. */
static void split_authority(const char *s, size_t n, const char **host, size_t *host_len,
                            const char **rest, size_t *rest_len) {
    size_t e = 0;
    while (e < n && s[e] != '/' && s[e] != '?')
        e++;
    const char *at = memchr(s, '@', e);
    size_t a = at ? (size_t)(at - s) + 1 : 0;
    *host = s + a;
    *host_len = e - a;
    *rest = s + e;
    *rest_len = n - e;
}

/* Writes the key of reference `ref` resolved against the request's (host, path) when it has
 * the request's origin. Returns false (nothing written) otherwise. */
static bool put_reference(corral__http_out *o, const char *ref, size_t ref_len, const char *host,
                          size_t host_len, const char *base, size_t base_len) {
    corral__http_trim(&ref, &ref_len);
    const char *hash = memchr(ref, '#', ref_len);
    if (hash) ref_len = (size_t)(hash - ref);
    if (ref_len == 0) return false; /* the target itself */
    for (size_t i = 0; i < ref_len; i++)
        if (!corral__http_is((unsigned char)ref[i], CORRAL__HTTP_TARGET)) return false;
    /* scheme ":" */
    size_t k = 0;
    while (k < ref_len && ((ref[k] >= 'a' && ref[k] <= 'z') || (ref[k] >= 'A' && ref[k] <= 'Z') ||
                           (k > 0 && ((ref[k] >= '0' && ref[k] <= '9') || ref[k] == '+' ||
                                      ref[k] == '-' || ref[k] == '.'))))
        k++;
    const char *rhost = host, *rest = ref;
    size_t rhost_len = host_len, rest_len = ref_len;
    if (k > 0 && k < ref_len && ref[k] == ':') {
        if (!corral__http_ieq(ref, k, "http") && !corral__http_ieq(ref, k, "https")) return false;
        if (ref_len - k < 3 || ref[k + 1] != '/' || ref[k + 2] != '/') return false;
        split_authority(ref + k + 3, ref_len - k - 3, &rhost, &rhost_len, &rest, &rest_len);
    } else if (ref_len >= 2 && ref[0] == '/' && ref[1] == '/') {
        split_authority(ref + 2, ref_len - 2, &rhost, &rhost_len, &rest, &rest_len);
    }
    if (!same_host(rhost, rhost_len, host, host_len)) return false;

    /* The base path without its query. */
    const char *bq = memchr(base, '?', base_len);
    size_t bpath = bq ? (size_t)(bq - base) : base_len;
    /* The reference's path and query. */
    const char *q = memchr(rest, '?', rest_len);
    size_t rpath = q ? (size_t)(q - rest) : rest_len;

    corral__http_put_host(o, host, host_len);
    size_t path_start = o->len;
    if (rest != ref || (rest_len > 0 && rest[0] == '/')) {
        /* absolute URI, network-path or absolute-path: its own path ("/" when empty) */
        if (rpath == 0 || rest[0] != '/') corral__http_puts(o, "/");
        corral__http_put(o, rest, rpath);
    } else if (rpath == 0) {
        /* query only: the base's path */
        corral__http_put(o, base, bpath);
    } else {
        /* relative-path: merged with the base's directory (§5.2.3) */
        size_t dir = bpath;
        while (dir > 0 && base[dir - 1] != '/')
            dir--;
        if (dir == 0) corral__http_puts(o, "/");
        corral__http_put(o, base, dir);
        corral__http_put(o, rest, rpath);
    }
    if (!o->over) o->len = path_start + remove_dots(o->buf + path_start, o->len - path_start);
    corral__http_put(o, rest + rpath, rest_len - rpath);
    return true;
}

int corral_http_invalidations(const corral_http_msg *req, const corral_http_msg *resp, char *buf,
                              size_t cap, corral_buf keys[3], size_t *n) {
    if (n) *n = 0;
    if (!req || !resp || !keys || !n || !req->is_request || resp->is_request || !req->target)
        return CORRAL_EINVAL;
    switch (req->method) {
    case CORRAL_HTTP_GET:
    case CORRAL_HTTP_HEAD:
    case CORRAL_HTTP_OPTIONS:
    case CORRAL_HTTP_TRACE: return CORRAL_OK;
    default: break;
    }
    if (resp->status < 200 || resp->status > 399) return CORRAL_OK;
    const char *host, *path;
    size_t host_len, path_len;
    if (!corral__http_request_parts(req, &host, &host_len, &path, &path_len)) return CORRAL_OK;

    corral__http_out o;
    corral__http_out_init(&o, buf, cap);
    size_t start[3], end[3], count = 0;
    start[0] = o.len;
    corral__http_put_host(&o, host, host_len);
    if (path_len == 0 || path[0] != '/') corral__http_puts(&o, "/");
    corral__http_put(&o, path, path_len);
    end[0] = o.len;
    count = 1;
    /* The base for resolution is the target's origin-form path. */
    const char *base = path;
    size_t base_len = path_len;
    if (base_len == 0 || base[0] != '/') {
        base = "/";
        base_len = 1;
    }
    static const char *const fields[] = { "location", "content-location" };
    for (size_t f = 0; f < 2; f++) {
        size_t fc;
        const corral_http_header *h = corral__http_get(resp, fields[f], &fc);
        if (!h || fc != 1) continue;
        size_t at = o.len;
        if (!put_reference(&o, h->value, h->value_len, host, host_len, base, base_len)) continue;
        bool dup = false;
        for (size_t i = 0; !o.over && i < count; i++)
            if (end[i] - start[i] == o.len - at &&
                memcmp(buf + start[i], buf + at, o.len - at) == 0)
                dup = true;
        if (dup) {
            o.len = at;
            continue;
        }
        start[count] = at;
        end[count] = o.len;
        count++;
    }
    size_t total;
    int rc = corral__http_out_end(&o, &total);
    if (rc < 0) return rc;
    for (size_t i = 0; i < count; i++) {
        keys[i].data = buf + start[i];
        keys[i].len = end[i] - start[i];
    }
    *n = count;
    return CORRAL_OK;
}
