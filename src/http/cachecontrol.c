/*
 * cachecontrol.c - parsing of Cache-Control (RFC 9111 §5.2) and of the RFC 5861 extensions,
 * and the entity-tag helpers of RFC 9110 §8.8.3.
 *
 * Cache-Control: every field line of the message is one list; directive names are
 * case-insensitive; an argument is a token or a quoted-string (§5.2: recipients accept both
 * forms). A delta-seconds directive that is repeated or malformed is marked `bad`, which the
 * freshness rules read as "stale" (§4.2.1: "either the first occurrence should be used or the
 * response should be considered stale"; we take the safe side). The qualified forms of
 * no-cache and private ("no-cache=Set-Cookie") count as unqualified, which §5.2.2.4 and
 * §5.2.2.7 allow. Unknown directives are ignored (§5.2.3).
 */
#include "http_internal.h"

static void set_delta(corral__http_delta *d, const char *arg, size_t arg_len, bool has_arg,
                      bool arg_optional) {
    if (d->present) {
        d->bad = true; /* repeated */
        return;
    }
    d->present = true;
    if (!has_arg) {
        if (arg_optional)
            d->no_value = true;
        else
            d->bad = true;
        return;
    }
    if (!corral__http_delta_seconds(arg, arg_len, &d->value)) d->bad = true;
}

void corral__http_cc_parse(const corral_http_msg *m, corral__http_cc *cc) {
    memset(cc, 0, sizeof *cc);
    size_t hi = 0, pos = 0, n;
    const char *el;
    while (corral__http_fields_next(m, "cache-control", &hi, &pos, &el, &n)) {
        const char *eq = memchr(el, '=', n);
        /* A '=' inside a quoted argument cannot come before the directive's own. */
        size_t name_len = eq ? (size_t)(eq - el) : n;
        const char *name = el;
        corral__http_trim(&name, &name_len);
        const char *arg = eq ? eq + 1 : NULL;
        size_t arg_len = 0;
        if (eq) {
            arg_len = (size_t)(el + n - arg);
            corral__http_trim(&arg, &arg_len);
        }
        bool has = eq != NULL;
        static const struct {
            const char *name;
            unsigned flag;
        } flags[] = {
            { "no-store", CORRAL__CC_NO_STORE },
            { "no-cache", CORRAL__CC_NO_CACHE },
            { "private", CORRAL__CC_PRIVATE },
            { "public", CORRAL__CC_PUBLIC },
            { "must-revalidate", CORRAL__CC_MUST_REVALIDATE },
            { "proxy-revalidate", CORRAL__CC_PROXY_REVALIDATE },
            { "must-understand", CORRAL__CC_MUST_UNDERSTAND },
            { "only-if-cached", CORRAL__CC_ONLY_IF_CACHED },
            { "no-transform", CORRAL__CC_NO_TRANSFORM },
            { "immutable", CORRAL__CC_IMMUTABLE },
        };
        bool matched = false;
        for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
            if (corral__http_ieq(name, name_len, flags[i].name)) {
                cc->flags |= flags[i].flag;
                matched = true;
                break;
            }
        }
        if (matched) continue;
        if (corral__http_ieq(name, name_len, "max-age"))
            set_delta(&cc->max_age, arg, arg_len, has, false);
        else if (corral__http_ieq(name, name_len, "s-maxage"))
            set_delta(&cc->s_maxage, arg, arg_len, has, false);
        else if (corral__http_ieq(name, name_len, "max-stale"))
            set_delta(&cc->max_stale, arg, arg_len, has, true);
        else if (corral__http_ieq(name, name_len, "min-fresh"))
            set_delta(&cc->min_fresh, arg, arg_len, has, false);
        else if (corral__http_ieq(name, name_len, "stale-while-revalidate"))
            set_delta(&cc->swr, arg, arg_len, has, false);
        else if (corral__http_ieq(name, name_len, "stale-if-error"))
            set_delta(&cc->sie, arg, arg_len, has, false);
    }
}

/* ---- Entity-tags ---- */

bool corral__http_etag_parse(const char *s, size_t len, bool *weak, const char **op, size_t *op_len,
                             size_t *used) {
    size_t i = 0;
    while (i < len && corral__http_is_ws((unsigned char)s[i]))
        i++;
    *weak = false;
    if (len - i >= 2 && s[i] == 'W' && s[i + 1] == '/') {
        *weak = true;
        i += 2;
    }
    if (i >= len || s[i] != '"') return false;
    size_t start = i++;
    /* etagc = %x21 / %x23-7E / obs-text */
    while (i < len && s[i] != '"') {
        unsigned char c = (unsigned char)s[i];
        if (!(c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80)) return false;
        i++;
    }
    if (i >= len) return false;
    i++;
    *op = s + start;
    *op_len = i - start;
    *used = i;
    return true;
}

bool corral_http_etag_match(const char *a, size_t a_len, const char *b, size_t b_len, bool strong) {
    if (!a || !b) return false;
    bool wa, wb;
    const char *oa, *ob;
    size_t na, nb, ua, ub;
    if (!corral__http_etag_parse(a, a_len, &wa, &oa, &na, &ua) ||
        !corral__http_etag_parse(b, b_len, &wb, &ob, &nb, &ub))
        return false;
    /* Nothing but whitespace may follow a single tag. */
    for (size_t i = ua; i < a_len; i++)
        if (!corral__http_is_ws((unsigned char)a[i])) return false;
    for (size_t i = ub; i < b_len; i++)
        if (!corral__http_is_ws((unsigned char)b[i])) return false;
    if (strong && (wa || wb)) return false;
    return na == nb && memcmp(oa, ob, na) == 0;
}
