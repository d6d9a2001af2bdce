/*
 * test_prom_writer.c - the Prometheus text writer (src/prom.c): a family's HELP and TYPE lines byte
 * for byte, rows of one sample each, and what a too-small buffer holds afterwards (whole rows
 * only).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "prom.h"

static void test_prom_family_writes_help_then_type(void **state) {
    (void)state;
    char buf[256];
    int n = corral__prom_family(buf, sizeof buf, "corral_redis_", "errors_total", "counter",
                                "Redis calls that failed.");
    const char *want = "# HELP corral_redis_errors_total Redis calls that failed.\n"
                       "# TYPE corral_redis_errors_total counter\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, (int)strlen(want));
}

static void test_prom_family_reports_the_length_it_needs_when_cut(void **state) {
    (void)state;
    char buf[16];
    int n = corral__prom_family(buf, sizeof buf, "corral_", "cache_items", "gauge", "Live.");
    assert_int_equal(n, (int)strlen("# HELP corral_cache_items Live.\n"
                                    "# TYPE corral_cache_items gauge\n"));
    assert_int_equal(strlen(buf), sizeof buf - 1);
}

static void test_prom_head_is_null_when_the_lines_do_not_fit(void **state) {
    (void)state;
    char head[CORRAL__PROM_HEAD_MAX];
    assert_string_equal(corral__prom_head(head, "corral_", "x", "gauge", "X."),
                        "# HELP corral_x X.\n# TYPE corral_x gauge\n");
    char help[CORRAL__PROM_HEAD_MAX];
    memset(help, 'h', sizeof help - 1);
    help[sizeof help - 1] = '\0';
    assert_null(corral__prom_head(head, "corral_", "x", "gauge", help));
}

static const corral__prom_row rows[] = {
    { "a_total", "counter", "As.", 7 },
    { "b", "gauge", "Bs now.", 18446744073709551615u },
};
static const char rows_text[] = "# HELP corral_x_a_total As.\n# TYPE corral_x_a_total counter\n"
                                "corral_x_a_total 7\n"
                                "# HELP corral_x_b Bs now.\n# TYPE corral_x_b gauge\n"
                                "corral_x_b 18446744073709551615\n";

static void test_prom_rows_append_each_family_with_its_sample(void **state) {
    (void)state;
    char buf[512] = "first\n";
    size_t used = strlen(buf);
    assert_int_equal(corral__prom_rows(buf, sizeof buf, &used, "corral_x_", rows, 2), CORRAL_OK);
    assert_int_equal(strncmp(buf, "first\n", 6), 0);
    assert_string_equal(buf + 6, rows_text);
    assert_int_equal(used, 6 + strlen(rows_text));
}

static void test_prom_rows_that_do_not_fit_leave_whole_rows_only(void **state) {
    (void)state;
    size_t first = strchr(strstr(rows_text, "corral_x_a_total 7"), '\n') + 1 - rows_text;
    /* Every capacity short of the whole text: the first row or nothing, never half a row. */
    for (size_t cap = 0; cap <= strlen(rows_text); cap++) {
        char buf[512];
        memset(buf, 'Z', sizeof buf);
        if (cap) buf[0] = '\0';
        size_t used = 0;
        assert_int_equal(corral__prom_rows(buf, cap, &used, "corral_x_", rows, 2), CORRAL_ENOSPC);
        size_t want = cap > first ? first : 0;
        assert_int_equal(used, want);
        if (cap) {
            assert_int_equal(strlen(buf), want);
            assert_memory_equal(buf, rows_text, want);
        }
        assert_int_equal(buf[cap], 'Z'); /* nothing written past cap */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prom_family_writes_help_then_type),
        cmocka_unit_test(test_prom_family_reports_the_length_it_needs_when_cut),
        cmocka_unit_test(test_prom_head_is_null_when_the_lines_do_not_fit),
        cmocka_unit_test(test_prom_rows_append_each_family_with_its_sample),
        cmocka_unit_test(test_prom_rows_that_do_not_fit_leave_whole_rows_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
