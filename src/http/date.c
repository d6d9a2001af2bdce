/*
 * date.c - HTTP-dates (RFC 9110 §5.6.7): parsing of the three formats a recipient must accept
 * (IMF-fixdate, the obsolete RFC 850 and asctime formats) and formatting of IMF-fixdate.
 *
 * Calendar arithmetic is proleptic Gregorian over years 1-9999, in UTC (HTTP-dates are GMT).
 * libc's timegm is neither C11 nor POSIX and strptime depends on the locale, hence this file.
 *
 * Names (day, month, "GMT") are read without regard to case: senders must write them as the
 * grammar spells them, but §5.6.7 asks recipients to be robust, and an "Expires" written
 * "thu, 01 jan 2037 00:00:00 gmt" means that instant to every browser.
 */
#include "http_internal.h"

static const char *const wkday[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const weekday[7] = { "Sunday",   "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday" };
static const char *const month_name[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
/* Days before the first of each month in a common year. */
static const int month_start[12] = { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334 };

static bool is_leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m) {
    static const int dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 1 && is_leap(y) ? 29 : dim[m];
}

/* Days from 0001-01-01 to the first of January of year `y` (y >= 1). */
static int64_t days_before_year(int64_t y) {
    int64_t p = y - 1;
    return 365 * p + p / 4 - p / 100 + p / 400;
}

/* Days since 1970-01-01 of a valid date; month `m` is 0-11. */
static int64_t days_since_epoch(int64_t y, int m, int d) {
    int64_t days = days_before_year(y) - days_before_year(1970);
    days += month_start[m] + (m > 1 && is_leap(y) ? 1 : 0);
    return days + d - 1;
}

/* The year of a day count since the epoch, and the day of that year in `*yday`. */
static int64_t year_of_days(int64_t days, int64_t *yday) {
    int64_t y = 1970 + days / 366; /* never past the answer */
    if (days < 0) y = 1970 + days / 365 - 1;
    while (days - (days_before_year(y + 1) - days_before_year(1970)) >= 0)
        y++;
    while (days - (days_before_year(y) - days_before_year(1970)) < 0)
        y--;
    *yday = days - (days_before_year(y) - days_before_year(1970));
    return y;
}

/* ---- Parsing ---- */

typedef struct cursor {
    const char *s;
    size_t len, i;
    bool ok;
} cursor;

/* True when the `n` bytes at `s` equal `l` ignoring ASCII case. */
static bool ieq_n(const char *s, const char *l, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (corral__http_lower((unsigned char)s[k]) != corral__http_lower((unsigned char)l[k]))
            return false;
    return true;
}

static void lit(cursor *c, const char *l) {
    size_t n = strlen(l);
    if (c->ok && c->len - c->i >= n && ieq_n(c->s + c->i, l, n))
        c->i += n;
    else
        c->ok = false;
}

/* Reads exactly `n` digits. */
static int digits(cursor *c, size_t n) {
    int v = 0;
    if (!c->ok || c->len - c->i < n) {
        c->ok = false;
        return 0;
    }
    for (size_t k = 0; k < n; k++) {
        char ch = c->s[c->i + k];
        if (ch < '0' || ch > '9') {
            c->ok = false;
            return 0;
        }
        v = v * 10 + (ch - '0');
    }
    c->i += n;
    return v;
}

/* Reads one of `names` (`n` of them); returns its index. */
static int name_of(cursor *c, const char *const *names, int n) {
    for (int k = 0; c->ok && k < n; k++) {
        size_t l = strlen(names[k]);
        if (c->len - c->i >= l && ieq_n(c->s + c->i, names[k], l)) {
            c->i += l;
            return k;
        }
    }
    c->ok = false;
    return 0;
}

/* time-of-day = hour ":" minute ":" second */
static int64_t time_of_day(cursor *c) {
    int h = digits(c, 2);
    lit(c, ":");
    int m = digits(c, 2);
    lit(c, ":");
    int s = digits(c, 2);
    if (h > 23 || m > 59 || s > 60) c->ok = false; /* 60: a leap second */
    return (int64_t)h * 3600 + m * 60 + s;
}

int corral_http_parse_date(const char *s, size_t len, int64_t ref_ms, int64_t *out_ms) {
    if (out_ms) *out_ms = 0;
    if (!s || !out_ms) return CORRAL_EINVAL;
    corral__http_trim(&s, &len);
    cursor c = { s, len, 0, true };
    int64_t year;
    int mon, day;
    int64_t tod;
    if (len == CORRAL_HTTP_DATE_LEN && s[3] == ',') {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        name_of(&c, wkday, 7);
        lit(&c, ", ");
        day = digits(&c, 2);
        lit(&c, " ");
        mon = name_of(&c, month_name, 12);
        lit(&c, " ");
        year = digits(&c, 4);
        lit(&c, " ");
        tod = time_of_day(&c);
        lit(&c, " GMT");
    } else if (len > 4 && s[3] == ' ') {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        name_of(&c, wkday, 7);
        lit(&c, " ");
        mon = name_of(&c, month_name, 12);
        lit(&c, " ");
        if (c.ok && c.i < len && s[c.i] == ' ') {
            c.i++;
            day = digits(&c, 1);
        } else {
            day = digits(&c, 2);
        }
        lit(&c, " ");
        tod = time_of_day(&c);
        lit(&c, " ");
        year = digits(&c, 4);
    } else {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        name_of(&c, weekday, 7);
        lit(&c, ", ");
        day = digits(&c, 2);
        lit(&c, "-");
        mon = name_of(&c, month_name, 12);
        lit(&c, "-");
        int yy = digits(&c, 2);
        lit(&c, " ");
        tod = time_of_day(&c);
        lit(&c, " GMT");
        /* RFC 9110 §5.6.7: more than 50 years ahead means the previous century. */
        int64_t yday, ref_days = ref_ms / 86400000, ref_year = 1970;
        if (ref_days > days_before_year(1) - days_before_year(1970) &&
            ref_days < days_before_year(10000) - days_before_year(1970))
            ref_year = year_of_days(ref_days, &yday);
        year = ref_year - ref_year % 100 + yy;
        if (year > ref_year + 50) year -= 100;
    }
    if (!c.ok || c.i != len || year < 1 || year > 9999 || day < 1 || day > days_in_month(year, mon))
        return CORRAL_EINVAL;
    *out_ms = (days_since_epoch(year, mon, day) * 86400 + tod) * 1000;
    return CORRAL_OK;
}

/* ---- Formatting ---- */

size_t corral_http_format_date(int64_t ms, char out[CORRAL_HTTP_DATE_LEN + 1]) {
    out[0] = '\0';
    /* Floor divisions: C's truncate toward zero, and -INT64_MIN does not exist. */
    int64_t secs = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
    int64_t days = secs / 86400 - (secs % 86400 < 0 ? 1 : 0);
    int64_t tod = secs - days * 86400;
    int64_t lo = days_before_year(1) - days_before_year(1970);
    int64_t hi = days_before_year(10000) - days_before_year(1970);
    if (days < lo || days >= hi) return 0;
    int64_t yday;
    int64_t year = year_of_days(days, &yday);
    int mon = 11;
    while (mon > 0 && yday < month_start[mon] + (mon > 1 && is_leap(year) ? 1 : 0))
        mon--;
    int64_t mday = yday - month_start[mon] - (mon > 1 && is_leap(year) ? 1 : 0) + 1;
    int64_t wd = ((days % 7) + 7 + 4) % 7; /* 1970-01-01 was a Thursday */
    char *p = out;
    memcpy(p, wkday[wd], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + mday / 10);
    *p++ = (char)('0' + mday % 10);
    *p++ = ' ';
    memcpy(p, month_name[mon], 3);
    p += 3;
    *p++ = ' ';
    *p++ = (char)('0' + year / 1000);
    *p++ = (char)('0' + year / 100 % 10);
    *p++ = (char)('0' + year / 10 % 10);
    *p++ = (char)('0' + year % 10);
    *p++ = ' ';
    int64_t parts[3] = { tod / 3600, tod / 60 % 60, tod % 60 };
    for (int k = 0; k < 3; k++) {
        *p++ = (char)('0' + parts[k] / 10);
        *p++ = (char)('0' + parts[k] % 10);
        *p++ = k < 2 ? ':' : ' ';
    }
    memcpy(p, "GMT", 4);
    return CORRAL_HTTP_DATE_LEN;
}

/* ---- Fields ---- */

int corral__http_date_field(const corral_http_msg *m, const char *lc, int64_t ref_ms, int64_t *ms) {
    size_t count;
    const corral_http_header *h = corral__http_get(m, lc, &count);
    *ms = 0;
    if (!h) return 0;
    if (count > 1) return -1;
    return corral_http_parse_date(h->value, h->value_len, ref_ms, ms) == CORRAL_OK ? 1 : -1;
}
