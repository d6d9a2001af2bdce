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
 *
 * Targeted cache control (RFC 9213): a policy may name fields, in priority order, that speak to
 * this cache alone (CDN-Cache-Control, or a proxy's own such as Corral-Cache-Control). For a
 * response's directives the first of them that is present and parses as a Structured Field
 * Dictionary (RFC 8941 §3.2) is read instead of Cache-Control, which is then ignored for the
 * cache's own decisions (and passes to the client unchanged); one that does not parse is
 * ignored (RFC 9213 §2.1). A member set to false (`no-store=?0`) is absent. Request directives
 * always come from Cache-Control.
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

/* The length of a Dictionary member without its parameters: its key, and "=" and a bare item
 * when it has a value (a string may hold ';'). The member was validated first. */
static size_t sf_member_len(const char *el, size_t n) {
    size_t i = 0;
    while (i < n && el[i] != '=' && el[i] != ';')
        i++;
    if (i < n && el[i] == '=' && i + 1 < n && el[i + 1] == '"') {
        for (i += 2; i < n && el[i] != '"'; i++)
            if (el[i] == '\\') i++;
        return i < n ? i + 1 : n;
    }
    while (i < n && el[i] != ';')
        i++;
    return i;
}

/* Parses the directives of every field named `lc`; `sf` for a targeted field (RFC 9213). */
static void cc_parse_field(const corral_http_msg *m, const char *lc, bool sf, corral__http_cc *cc) {
    memset(cc, 0, sizeof *cc);
    size_t hi = 0, pos = 0, n;
    const char *el;
    while (corral__http_fields_next(m, lc, &hi, &pos, &el, &n)) {
        if (sf) n = sf_member_len(el, n);
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
        if (sf && has && arg_len == 2 && arg[0] == '?' && arg[1] == '0') continue; /* false */
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

void corral__http_cc_parse(const corral_http_msg *m, corral__http_cc *cc) {
    cc_parse_field(m, "cache-control", false, cc);
}

/* ---- Structured Field Dictionaries (RFC 8941 §3.2, §4.2), for targeted fields ---- */

typedef struct sf_cursor {
    const char *s;
    size_t len, i;
} sf_cursor;

static bool sf_lcalpha(char c) {
    return c >= 'a' && c <= 'z';
}

static bool sf_digit(char c) {
    return c >= '0' && c <= '9';
}

static void sf_sp(sf_cursor *c) {
    while (c->i < c->len && c->s[c->i] == ' ')
        c->i++;
}

static void sf_ows(sf_cursor *c) {
    while (c->i < c->len && corral__http_is_ws((unsigned char)c->s[c->i]))
        c->i++;
}

/* key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ) */
static bool sf_key(sf_cursor *c) {
    if (c->i >= c->len || !(sf_lcalpha(c->s[c->i]) || c->s[c->i] == '*')) return false;
    while (++c->i < c->len) {
        char ch = c->s[c->i];
        if (!(sf_lcalpha(ch) || sf_digit(ch) || ch == '_' || ch == '-' || ch == '.' || ch == '*'))
            break;
    }
    return true;
}

/* bare-item: integer, decimal, string, token, byte sequence or boolean (§4.2.3.1). */
static bool sf_bare_item(sf_cursor *c) {
    if (c->i >= c->len) return false;
    const char *s = c->s;
    char ch = s[c->i];
    if (ch == '-' || sf_digit(ch)) {
        if (ch == '-') c->i++;
        size_t start = c->i, dot = 0;
        for (; c->i < c->len && (sf_digit(s[c->i]) || (s[c->i] == '.' && !dot)); c->i++)
            if (s[c->i] == '.') dot = c->i;
        size_t digits = c->i - start;
        if (digits == 0 || (!dot && digits > 15)) return false;
        return !dot ||
               (dot > start && dot - start <= 12 && c->i - dot - 1 >= 1 && c->i - dot - 1 <= 3);
    }
    if (ch == '"') {
        for (c->i++; c->i < c->len; c->i++) {
            unsigned char b = (unsigned char)s[c->i];
            if (b == '"') {
                c->i++;
                return true;
            }
            if (b == '\\') {
                if (++c->i >= c->len || (s[c->i] != '"' && s[c->i] != '\\')) return false;
            } else if (b < 0x20 || b > 0x7e) {
                return false;
            }
        }
        return false;
    }
    if (ch == ':') {
        for (c->i++; c->i < c->len; c->i++) {
            char b = s[c->i];
            if (b == ':') {
                c->i++;
                return true;
            }
            if (!(sf_digit(b) || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b == '+' ||
                  b == '/' || b == '='))
                return false;
        }
        return false;
    }
    if (ch == '?') {
        c->i++;
        return c->i < c->len && (s[c->i] == '0' || s[c->i] == '1') && ++c->i;
    }
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '*') {
        while (++c->i < c->len && (corral__http_is((unsigned char)s[c->i], CORRAL__HTTP_TCHAR) ||
                                   s[c->i] == ':' || s[c->i] == '/'))
            ;
        return true;
    }
    return false;
}

/* parameters = *( ";" *SP key [ "=" bare-item ] ) */
static bool sf_params(sf_cursor *c) {
    while (c->i < c->len && c->s[c->i] == ';') {
        c->i++;
        sf_sp(c);
        if (!sf_key(c)) return false;
        if (c->i < c->len && c->s[c->i] == '=') {
            c->i++;
            if (!sf_bare_item(c)) return false;
        }
    }
    return true;
}

/* member value: an item or an inner list, with parameters. */
static bool sf_value(sf_cursor *c) {
    if (c->i < c->len && c->s[c->i] == '(') {
        c->i++;
        for (;;) {
            sf_sp(c);
            if (c->i < c->len && c->s[c->i] == ')') {
                c->i++;
                break;
            }
            if (!sf_bare_item(c) || !sf_params(c)) return false;
            if (c->i >= c->len || (c->s[c->i] != ' ' && c->s[c->i] != ')')) return false;
        }
    } else if (!sf_bare_item(c)) {
        return false;
    }
    return sf_params(c);
}

/* True when (s, len) is a Dictionary: members separated by OWS "," OWS, none empty. */
static bool sf_dictionary(const char *s, size_t len) {
    sf_cursor c = { s, len, 0 };
    sf_ows(&c);
    if (c.i == len) return false; /* empty: the field is ignored (RFC 9213 §2.1) */
    for (;;) {
        if (!sf_key(&c)) return false;
        if (c.i < len && s[c.i] == '=') {
            c.i++;
            if (!sf_value(&c)) return false;
        } else if (!sf_params(&c)) {
            return false;
        }
        sf_ows(&c);
        if (c.i == len) return true;
        if (s[c.i] != ',') return false;
        c.i++;
        sf_ows(&c);
        if (c.i == len) return false; /* a trailing comma */
    }
}

/* True when `m` has fields named `lc` and their combined value is a Dictionary (the lines are
 * members of one dictionary, RFC 8941 §4.2: each line must itself be a sequence of members). */
static bool targeted_valid(const corral_http_msg *m, const char *lc) {
    bool any = false;
    for (size_t i = 0; i < m->n_headers; i++) {
        const corral_http_header *h = &m->headers[i];
        if (!corral__http_ieq(h->name, h->name_len, lc)) continue;
        if (!sf_dictionary(h->value, h->value_len)) return false;
        any = true;
    }
    return any;
}

bool corral__http_cc_target(const corral_http_policy *pol, const corral_http_msg *m, char *lc,
                            size_t cap) {
    if (!pol || !pol->cc_targets) return false;
    size_t pos = 0, n;
    const char *name;
    while (corral__http_list_next(pol->cc_targets, strlen(pol->cc_targets), &pos, &name, &n)) {
        if (n >= cap || !corral__http_is_token(name, n)) continue;
        for (size_t k = 0; k < n; k++)
            lc[k] = (char)corral__http_lower((unsigned char)name[k]);
        lc[n] = '\0';
        if (targeted_valid(m, lc)) return true;
    }
    return false;
}

void corral__http_cc_parse_response(const corral_http_policy *pol, const corral_http_msg *resp,
                                    corral__http_cc *cc) {
    char lc[64];
    if (corral__http_cc_target(pol, resp, lc, sizeof lc))
        cc_parse_field(resp, lc, true, cc);
    else
        cc_parse_field(resp, "cache-control", false, cc);
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
