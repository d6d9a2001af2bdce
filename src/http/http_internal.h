/*
 * http_internal.h - helpers shared by the files of the HTTP engine (src/http/): byte classes of
 * RFC 9110 §5.6, list iteration, field lookup, the parsed Cache-Control of RFC 9111 §5.2, an
 * output writer that measures what does not fit, and saturating time arithmetic.
 *
 * Nothing here allocates or keeps state between calls. Names are `corral__http_*` (shared
 * between files of the module) or `static inline`.
 */
#ifndef CORRAL_HTTP_INTERNAL_H
#define CORRAL_HTTP_INTERNAL_H

#include "corral/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- Byte classes (RFC 9110 §5.6.2, §5.5) ---- */

/* Bit flags per byte in corral__http_class. */
#define CORRAL__HTTP_TCHAR  0x01 /* token character */
#define CORRAL__HTTP_VCHAR  0x02 /* field-vchar: VCHAR or obs-text (0x80-0xff) */
#define CORRAL__HTTP_WS     0x04 /* SP or HTAB */
#define CORRAL__HTTP_TARGET 0x08 /* allowed in a request-target: 0x21-0x7e except '#' */
#define CORRAL__HTTP_HOST   0x10 /* allowed in Host: reg-name, IP-literal, port characters */
#define CORRAL__HTTP_HEX    0x20 /* HEXDIG */

extern const uint8_t corral__http_class[256];

static inline bool corral__http_is(unsigned char c, uint8_t cls) {
    return (corral__http_class[c] & cls) != 0;
}

static inline bool corral__http_is_ws(unsigned char c) {
    return c == ' ' || c == '\t';
}

static inline unsigned char corral__http_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* True when (a, alen) equals the NUL-terminated lowercase `lc` ignoring ASCII case. */
bool corral__http_ieq(const char *a, size_t alen, const char *lc);

/* True when the whole of (s, len) is a token (1*tchar). */
bool corral__http_is_token(const char *s, size_t len);

/* Trims SP/HTAB on both ends of (*s, *len). */
void corral__http_trim(const char **s, size_t *len);

/* ---- Lists (RFC 9110 §5.6.1) ---- */

/* Iterates the elements of a comma-separated list, quote-aware (a comma inside a
 * quoted-string does not split), trimming whitespace and skipping empty elements. `*pos` starts
 * at 0. Returns false when no element is left. */
bool corral__http_list_next(const char *s, size_t len, size_t *pos, const char **el,
                            size_t *el_len);

/* Iterates the list elements of every field named `lc` (lowercase) of `m`, in order. The state
 * is (*hi, *pos), both starting at 0. */
bool corral__http_fields_next(const corral_http_msg *m, const char *lc, size_t *hi, size_t *pos,
                              const char **el, size_t *el_len);

/* True when some list element of the fields named `lc` equals `token_lc` (case-insensitive). */
bool corral__http_has_token(const corral_http_msg *m, const char *lc, const char *token_lc);

/* The first field named `lc` (lowercase), or NULL; `*count` (optional) their number. */
const corral_http_header *corral__http_get(const corral_http_msg *m, const char *lc, size_t *count);

/* ---- Numbers and times ---- */

/* RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31. */
#define CORRAL__HTTP_DELTA_MAX 2147483648LL

/* Parses delta-seconds (1*DIGIT, or the same quoted). Returns false when malformed. */
bool corral__http_delta_seconds(const char *s, size_t len, int64_t *out);

static inline int64_t corral__http_sat_add(int64_t a, int64_t b) {
    if (b > 0 && a > INT64_MAX - b) return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b) return INT64_MIN;
    return a + b;
}

static inline int64_t corral__http_sat_sub(int64_t a, int64_t b) {
    if (b < 0 && a > INT64_MAX + b) return INT64_MAX;
    if (b > 0 && a < INT64_MIN + b) return INT64_MIN;
    return a - b;
}

/* Seconds to ms, saturating. */
static inline int64_t corral__http_s_to_ms(int64_t s) {
    if (s > INT64_MAX / 1000) return INT64_MAX;
    if (s < INT64_MIN / 1000) return INT64_MIN;
    return s * 1000;
}

/* The value of the single date field `lc` of `m` in `*ms`. Returns 1 when valid, 0 when
 * absent, -1 when invalid or repeated (RFC 9111 §4.2.1 reads repeated fields as invalid). */
int corral__http_date_field(const corral_http_msg *m, const char *lc, int64_t ref_ms, int64_t *ms);

/* ---- Entity-tags (RFC 9110 §8.8.3) ---- */

/* Splits one entity-tag at the start of (s, len), after optional whitespace: sets `*weak`, the
 * opaque tag with its quotes (`*op`, `*op_len`) and `*used` (bytes read). Returns false when
 * malformed. */
bool corral__http_etag_parse(const char *s, size_t len, bool *weak, const char **op, size_t *op_len,
                             size_t *used);

/* ---- Cache-Control (RFC 9111 §5.2) ---- */

/* Directives without arguments, as bits of corral__http_cc.flags. */
#define CORRAL__CC_NO_STORE         0x0001u
#define CORRAL__CC_NO_CACHE         0x0002u /* unqualified or qualified: both are unqualified */
#define CORRAL__CC_PRIVATE          0x0004u /* likewise */
#define CORRAL__CC_PUBLIC           0x0008u
#define CORRAL__CC_MUST_REVALIDATE  0x0010u
#define CORRAL__CC_PROXY_REVALIDATE 0x0020u
#define CORRAL__CC_MUST_UNDERSTAND  0x0040u
#define CORRAL__CC_ONLY_IF_CACHED   0x0080u
#define CORRAL__CC_NO_TRANSFORM     0x0100u
#define CORRAL__CC_IMMUTABLE        0x0200u

/* A directive's delta-seconds: absent, or present (with `value`); `bad` when malformed or
 * repeated (§4.2.1: "the response should be considered stale"). */
typedef struct corral__http_delta {
    bool present;
    bool bad;
    bool no_value; /* present without "=value" (max-stale alone means "any staleness") */
    int64_t value; /* seconds, at most CORRAL__HTTP_DELTA_MAX */
} corral__http_delta;

typedef struct corral__http_cc {
    unsigned flags;
    corral__http_delta max_age, s_maxage, max_stale, min_fresh, swr, sie;
} corral__http_cc;

/* Parses every Cache-Control field of `m`. Unknown directives are ignored. Never fails. */
void corral__http_cc_parse(const corral_http_msg *m, corral__http_cc *cc);

/* The directives of response `resp` as cache `pol` reads them: those of its first targeted
 * field (pol->cc_targets, RFC 9213) that is present and valid, else those of Cache-Control. */
void corral__http_cc_parse_response(const corral_http_policy *pol, const corral_http_msg *resp,
                                    corral__http_cc *cc);

/* Writes into `lc` (capacity `cap`) the lowercased name of the targeted field of `pol` that
 * `m`'s directives come from, and returns true; false when they come from Cache-Control. */
bool corral__http_cc_target(const corral_http_policy *pol, const corral_http_msg *m, char *lc,
                            size_t cap);

/* ---- Output ---- */

/* Appends to a caller's buffer; past its capacity it only counts, so the caller learns the
 * size needed. */
typedef struct corral__http_out {
    char *buf;
    size_t cap;
    size_t len; /* bytes written or needed so far */
    bool over;  /* something did not fit, or `len` overflowed */
} corral__http_out;

static inline void corral__http_out_init(corral__http_out *o, char *buf, size_t cap) {
    o->buf = buf;
    o->cap = buf ? cap : 0;
    o->len = 0;
    o->over = false;
}

void corral__http_put(corral__http_out *o, const void *s, size_t n);

static inline void corral__http_puts(corral__http_out *o, const char *s) {
    corral__http_put(o, s, strlen(s));
}

/* Appends an unsigned decimal. */
void corral__http_put_u64(corral__http_out *o, uint64_t v);

/* Ends an output: sets `*len` and returns CORRAL_OK or CORRAL_ENOSPC (with `*len` needed, or
 * SIZE_MAX when even that overflowed). */
int corral__http_out_end(const corral__http_out *o, size_t *len);

/* ---- Shared between decision files ---- */

/* True when `status` is one RFC 9110 defines as heuristically cacheable (§15.1). */
bool corral__http_status_heuristic(unsigned status);

/* True when the response has an ETag or a Last-Modified (a validator for §4.3.1). */
bool corral__http_has_validator(const corral_http_msg *resp);

/* Host of a request: the authority of an absolute-form target, else the Host field (empty when
 * absent). Returns false for a target that names no path (authority-form, "*"). Sets the path
 * (and query) of the target: origin-form as is, absolute-form's path and query, which may be
 * empty or start with '?' (read a '/' in front of them, RFC 9112 §3.2.1). */
bool corral__http_request_parts(const corral_http_msg *req, const char **host, size_t *host_len,
                                const char **path, size_t *path_len);

/* Writes a host normalised for keys: lowercased, a trailing ":80" removed. */
void corral__http_put_host(corral__http_out *o, const char *host, size_t len);

#endif /* CORRAL_HTTP_INTERNAL_H */
