/*
 * units.c - the one grammar of sizes and durations, shared by the cache URL (options.c) and
 * corral-proxy's configuration:
 *
 *     size      = [spaces] number [spaces] [unit]   unit: B KB MB GB TB (powers of 1000)
 *                                                         KiB MiB GiB TiB (powers of 1024)
 *     duration  = [spaces] number [spaces] [unit]   unit: ms s m h d; none: seconds
 *     number    = ["+"] [digits] ["." digits]   (at least one digit)
 *
 * Units are case-insensitive. Fractions are kept to 12 digits; what falls below a byte or a
 * millisecond is dropped. Ranges (a timeout above 0, a size below some bound) are the
 * caller's to check.
 */
#include "common.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define FRAC_DIGITS_MAX 12

/* A decimal: whole part and fraction frac_num / frac_den. Returns the bytes used, or 0. */
static size_t parse_number(const char *s, size_t len, uint64_t *whole, uint64_t *frac_num,
                           uint64_t *frac_den) {
    size_t i = 0;
    uint64_t w = 0, fn = 0, fd = 1;
    bool digits = false;
    if (i < len && s[i] == '+') i++;
    while (i < len && isdigit((unsigned char)s[i])) {
        unsigned d = (unsigned)(s[i] - '0');
        if (w > (UINT64_MAX - d) / 10) return 0;
        w = w * 10 + d;
        digits = true;
        i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || !isdigit((unsigned char)s[i])) return 0; /* "1." is not a number */
        for (unsigned n = 0; i < len && isdigit((unsigned char)s[i]); i++, n++) {
            digits = true;
            if (n < FRAC_DIGITS_MAX) {
                fn = fn * 10 + (unsigned)(s[i] - '0');
                fd *= 10;
            }
        }
    }
    if (!digits) return 0;
    *whole = w;
    *frac_num = fn;
    *frac_den = fd;
    return i;
}

typedef struct unit {
    const char *name;
    uint64_t mult;
} unit;

/* Parses `number unit` with a unit of `units` (the first, "", when none is given). */
static int parse_scaled(const char *s, size_t len, const unit *units, size_t n_units,
                        uint64_t *out) {
    if (!s || !out) return CORRAL_EINVAL;
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    uint64_t w, fn, fd;
    size_t used = parse_number(s + i, len - i, &w, &fn, &fd);
    if (used == 0) return CORRAL_EINVAL;
    i += used;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    const char *u = s + i;
    size_t ulen = len - i;
    for (size_t k = 0; k < n_units; k++) {
        if (strlen(units[k].name) != ulen || strncasecmp(u, units[k].name, ulen) != 0) continue;
        uint64_t m = units[k].mult;
        if (w > UINT64_MAX / m) return CORRAL_ERANGE;
        uint64_t v = w * m;
        uint64_t extra = (uint64_t)((double)fn / (double)fd * (double)m);
        if (v > UINT64_MAX - extra) return CORRAL_ERANGE;
        *out = v + extra;
        return CORRAL_OK;
    }
    return CORRAL_EINVAL;
}

int corral_parse_bytes(const char *s, size_t len, uint64_t *out) {
    static const unit units[] = {
        { "", 1 },
        { "b", 1 },
        { "kb", 1000ull },
        { "mb", 1000ull * 1000 },
        { "gb", 1000ull * 1000 * 1000 },
        { "tb", 1000ull * 1000 * 1000 * 1000 },
        { "kib", 1ull << 10 },
        { "mib", 1ull << 20 },
        { "gib", 1ull << 30 },
        { "tib", 1ull << 40 },
    };
    return parse_scaled(s, len, units, sizeof units / sizeof units[0], out);
}

int corral_parse_duration_ms(const char *s, size_t len, int64_t *out) {
    static const unit units[] = {
        { "", 1000 },   { "ms", 1 },      { "s", 1000 },
        { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
    };
    uint64_t ms;
    if (!out) return CORRAL_EINVAL;
    int rc = parse_scaled(s, len, units, sizeof units / sizeof units[0], &ms);
    if (rc != CORRAL_OK) return rc;
    if (ms > (uint64_t)INT64_MAX) return CORRAL_ERANGE;
    *out = (int64_t)ms;
    return CORRAL_OK;
}
