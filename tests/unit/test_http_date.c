/*
 * test_http_date.c - HTTP-dates (src/http/date.c, RFC 9110 §5.6.7): the three formats a
 * recipient accepts, the 50-year rule for RFC 850's two-digit years, malformed dates, and
 * IMF-fixdate formatting, with a seeded round trip over years 1-9999 (seed printed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "corral/http.h"

#define T0_MS 1700000000000LL /* Tue, 14 Nov 2023 22:13:20 GMT */

static void test_http_date_parse_table(void **state) {
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int64_t ms;
    } rows[] = {
        /* RFC 9110 §5.6.7's three spellings of one instant */
        { "Sun, 06 Nov 1994 08:49:37 GMT", CORRAL_OK, 784111777000LL },
        { "Sunday, 06-Nov-94 08:49:37 GMT", CORRAL_OK, 784111777000LL },
        { "Sun Nov  6 08:49:37 1994", CORRAL_OK, 784111777000LL },
        { "Sun Nov 16 08:49:37 1994", CORRAL_OK, 784111777000LL + 10 * 86400000LL },
        { "  Tue, 14 Nov 2023 22:13:20 GMT ", CORRAL_OK, T0_MS },
        { "Thu, 01 Jan 1970 00:00:00 GMT", CORRAL_OK, 0 },
        { "Wed, 31 Dec 1969 23:59:59 GMT", CORRAL_OK, -1000 },
        { "Thu, 29 Feb 2024 12:00:00 GMT", CORRAL_OK, 1709208000000LL },
        { "Fri, 31 Dec 9999 23:59:59 GMT", CORRAL_OK, 253402300799000LL },
        { "Sat, 30 Jun 2012 23:59:60 GMT", CORRAL_OK, 1341100800000LL },
        /* RFC 850 years: more than 50 years ahead of now is the last century */
        { "Monday, 06-Nov-23 08:49:37 GMT", CORRAL_OK, 1699260577000LL },
        { "Tuesday, 06-Nov-70 08:49:37 GMT", CORRAL_OK, 3182489377000LL },
        { "Tuesday, 06-Nov-80 08:49:37 GMT", CORRAL_OK, 342348577000LL },
        /* names in any case: recipients are robust (§5.6.7) */
        { "sun, 06 Nov 1994 08:49:37 GMT", CORRAL_OK, 784111777000LL },
        { "SUN, 06 NOV 1994 08:49:37 GMT", CORRAL_OK, 784111777000LL },
        { "thu, 01 jan 1970 00:00:00 gmt", CORRAL_OK, 0 },
        { "sunday, 06-nov-94 08:49:37 Gmt", CORRAL_OK, 784111777000LL },
        { "SUN NOV  6 08:49:37 1994", CORRAL_OK, 784111777000LL },
        /* malformed */
        { "sun, 06 Nov 1994 08:49:37 UTC", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nob 1994 08:49:37 gmt", CORRAL_EINVAL, 0 },
        { "0", CORRAL_EINVAL, 0 },
        { "", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nov 1994 08:49:37 UTC", CORRAL_EINVAL, 0 },
        { "Sun, 6 Nov 1994 08:49:37 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 31 Feb 1994 08:49:37 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 29 Feb 2023 08:49:37 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nov 1994 24:00:00 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nov 1994 08:60:00 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nov 0000 08:49:37 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 06 Xyz 1994 08:49:37 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nov 1994 08:49:37 GMTX", CORRAL_EINVAL, 0 },
        { "Sun Nov  6 08:49:37 1994 GMT", CORRAL_EINVAL, 0 },
        { "Sunday, 06-Nov-1994 08:49:37 GMT", CORRAL_EINVAL, 0 },
        { "Sun, 06 Nov 1994 8:49:37 GMT", CORRAL_EINVAL, 0 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t ms = 12345;
        int rc = corral_http_parse_date(rows[i].in, strlen(rows[i].in), T0_MS, &ms);
        if (rc != rows[i].rc || ms != rows[i].ms) {
            print_error("row \"%s\": rc %d ms %lld\n", rows[i].in, rc, (long long)ms);
            fail();
        }
    }
}

static void test_http_date_format_table(void **state) {
    (void)state;
    static const struct {
        int64_t ms;
        const char *out;
    } rows[] = {
        { 0, "Thu, 01 Jan 1970 00:00:00 GMT" },
        { 999, "Thu, 01 Jan 1970 00:00:00 GMT" },
        { -1, "Wed, 31 Dec 1969 23:59:59 GMT" },
        { 784111777000LL, "Sun, 06 Nov 1994 08:49:37 GMT" },
        { T0_MS, "Tue, 14 Nov 2023 22:13:20 GMT" },
        { 1709208000000LL, "Thu, 29 Feb 2024 12:00:00 GMT" },
        { 253402300799000LL, "Fri, 31 Dec 9999 23:59:59 GMT" },
        { -62135596800000LL, "Mon, 01 Jan 0001 00:00:00 GMT" },
        { 253402300800000LL, "" },
        { -62135596800001LL, "" },
        { INT64_MAX, "" },
        { INT64_MIN, "" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char out[CORRAL_HTTP_DATE_LEN + 1];
        size_t n = corral_http_format_date(rows[i].ms, out);
        if (n != strlen(rows[i].out) || strcmp(out, rows[i].out) != 0) {
            print_error("row %lld: \"%s\"\n", (long long)rows[i].ms, out);
            fail();
        }
    }
}

static void test_http_date_round_trips(void **state) {
    (void)state;
    uint64_t seed = 20231114;
    printf("seed %llu\n", (unsigned long long)seed);
    for (int i = 0; i < 20000; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        /* seconds over years 1-9999 */
        int64_t lo = -62135596800LL, span = 253402300799LL - lo;
        int64_t s = lo + (int64_t)((seed >> 11) % (uint64_t)span);
        char out[CORRAL_HTTP_DATE_LEN + 1];
        assert_int_equal(corral_http_format_date(s * 1000, out), CORRAL_HTTP_DATE_LEN);
        int64_t back;
        assert_int_equal(corral_http_parse_date(out, strlen(out), T0_MS, &back), CORRAL_OK);
        if (back != s * 1000) {
            print_error("%lld -> %s -> %lld\n", (long long)s, out, (long long)back);
            fail();
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_date_parse_table),
        cmocka_unit_test(test_http_date_format_table),
        cmocka_unit_test(test_http_date_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
