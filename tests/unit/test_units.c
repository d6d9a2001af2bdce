/*
 * test_units.c - the one grammar of sizes and durations (src/units.c): corral_parse_bytes and
 * corral_parse_duration_ms, table-driven, with every spelling the cache URL and corral-proxy's
 * configuration accepted before they shared it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "corral/corral.h"

typedef struct bytes_case {
    const char *in;
    int rc;
    uint64_t want; /* when rc is CORRAL_OK */
} bytes_case;

static void test_parse_bytes_reads_every_unit_and_spelling(void **state) {
    (void)state;
    static const bytes_case cases[] = {
        { "4096", CORRAL_OK, 4096 },
        { "0", CORRAL_OK, 0 },
        { "10B", CORRAL_OK, 10 },
        { "1KB", CORRAL_OK, 1000 },
        { "1kb", CORRAL_OK, 1000 },
        { "64MB", CORRAL_OK, 64000000 },
        { "2GB", CORRAL_OK, 2000000000 },
        { "1TB", CORRAL_OK, 1000000000000ull },
        { "64KiB", CORRAL_OK, 65536 },
        { "2MiB", CORRAL_OK, 2u << 20 },
        { "3GiB", CORRAL_OK, 3ull << 30 },
        { "1TiB", CORRAL_OK, 1ull << 40 },
        { "1.5GB", CORRAL_OK, 1500000000 },
        { ".5KiB", CORRAL_OK, 512 },
        { "+2KB", CORRAL_OK, 2000 },
        { "16 MB", CORRAL_OK, 16000000 },     /* the proxy's config allowed a space */
        { " 16MB", CORRAL_OK, 16000000 },     /* and leading blanks (strtod) */
        { "1.0000000000001B", CORRAL_OK, 1 }, /* below a byte: dropped */
        { "", CORRAL_EINVAL, 0 },
        { "MB", CORRAL_EINVAL, 0 },
        { "-1", CORRAL_EINVAL, 0 },
        { "1.", CORRAL_EINVAL, 0 },
        { "1.2.3MB", CORRAL_EINVAL, 0 },
        { "12XB", CORRAL_EINVAL, 0 },
        { "1 MB ", CORRAL_EINVAL, 0 },
        { "lots", CORRAL_EINVAL, 0 },
        { "99999999999999999999", CORRAL_EINVAL, 0 }, /* not a 64-bit number */
        { "20000000000GB", CORRAL_ERANGE, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t got = 77;
        int rc = corral_parse_bytes(cases[i].in, strlen(cases[i].in), &got);
        if (rc != cases[i].rc) fail_msg("'%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
        uint64_t want = cases[i].rc == CORRAL_OK ? cases[i].want : 77; /* unchanged on error */
        if (got != want)
            fail_msg("'%s': got %llu, want %llu", cases[i].in, (unsigned long long)got,
                     (unsigned long long)want);
    }
}

typedef struct duration_case {
    const char *in;
    int rc;
    int64_t want;
} duration_case;

static void test_parse_duration_reads_every_unit_and_spelling(void **state) {
    (void)state;
    static const duration_case cases[] = {
        { "300", CORRAL_OK, 300000 }, /* bare: seconds, as Django's TIMEOUT */
        { "0", CORRAL_OK, 0 },
        { "1.5", CORRAL_OK, 1500 },
        { "0.001", CORRAL_OK, 1 },
        { "0.25", CORRAL_OK, 250 },
        { "250ms", CORRAL_OK, 250 },
        { "250MS", CORRAL_OK, 250 },
        { "1.5ms", CORRAL_OK, 1 }, /* below a millisecond: dropped */
        { "30s", CORRAL_OK, 30000 },
        { "5m", CORRAL_OK, 300000 },
        { "1h", CORRAL_OK, 3600000 },
        { "1d", CORRAL_OK, 86400000 },
        { "0.5h", CORRAL_OK, 1800000 },
        { "10 s", CORRAL_OK, 10000 },
        { "", CORRAL_EINVAL, 0 },
        { "s", CORRAL_EINVAL, 0 },
        { "-5", CORRAL_EINVAL, 0 },
        { "1.", CORRAL_EINVAL, 0 },
        { "abc", CORRAL_EINVAL, 0 },
        { "1min", CORRAL_EINVAL, 0 },
        { "5w", CORRAL_EINVAL, 0 },
        { "99999999999999999999", CORRAL_EINVAL, 0 },
        { "9999999999999999d", CORRAL_ERANGE, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = 77;
        int rc = corral_parse_duration_ms(cases[i].in, strlen(cases[i].in), &got);
        if (rc != cases[i].rc) fail_msg("'%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
        int64_t want = cases[i].rc == CORRAL_OK ? cases[i].want : 77;
        if (got != want)
            fail_msg("'%s': got %lld, want %lld", cases[i].in, (long long)got, (long long)want);
    }
}

static void test_parse_reads_only_len_bytes(void **state) {
    (void)state;
    uint64_t b = 0;
    assert_int_equal(corral_parse_bytes("64MBxyz", 4, &b), CORRAL_OK);
    assert_int_equal(b, 64000000);
    int64_t ms = 0;
    assert_int_equal(corral_parse_duration_ms("5mabc", 2, &ms), CORRAL_OK);
    assert_int_equal(ms, 300000);
}

static void test_parse_refuses_null_arguments(void **state) {
    (void)state;
    uint64_t b;
    int64_t ms;
    assert_int_equal(corral_parse_bytes(NULL, 0, &b), CORRAL_EINVAL);
    assert_int_equal(corral_parse_bytes("1", 1, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_parse_duration_ms(NULL, 0, &ms), CORRAL_EINVAL);
    assert_int_equal(corral_parse_duration_ms("1", 1, NULL), CORRAL_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bytes_reads_every_unit_and_spelling),
        cmocka_unit_test(test_parse_duration_reads_every_unit_and_spelling),
        cmocka_unit_test(test_parse_reads_only_len_bytes),
        cmocka_unit_test(test_parse_refuses_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
