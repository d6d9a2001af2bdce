/*
 * test_prom.c - the CLI's Prometheus text parser (cmd/corral/prom.c): table-driven, over what
 * corral processes serve and what else a target may answer (HTML, JSON, a truncated line).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prom_parse.h"

/* What the callback saw: each sample as "name{l=v,...} value". */
typedef struct seen {
    char text[2048];
    size_t n;
} seen;

static int record(void *arg, const prom_sample *s) {
    seen *w = arg;
    size_t len = strlen(w->text);
    int n = snprintf(w->text + len, sizeof w->text - len, "%s%s{", w->n ? "|" : "", s->name);
    for (size_t i = 0; i < s->n_labels && n > 0; i++) {
        len = strlen(w->text);
        n = snprintf(w->text + len, sizeof w->text - len, "%s%s=%s", i ? "," : "",
                     s->labels[i].name, s->labels[i].value);
    }
    len = strlen(w->text);
    snprintf(w->text + len, sizeof w->text - len, "} %g", s->value);
    w->n++;
    return 0;
}

typedef struct row {
    const char *in;
    int rc;
    const char *out; /* samples, or the error's text */
} row;

static const row rows[] = {
    { "", 0, "" },
    { "# HELP a b\n# TYPE a counter\n\n", 0, "" },
    { "corral_cache_hits_total{prefix=\"featured_products\"} 1998\n", 0,
      "corral_cache_hits_total{prefix=featured_products} 1998" },
    { "a 1\nb{x=\"1\",y=\"2\",} 2.5 1700000000000\r\nc -Inf", 0, "a{} 1|b{x=1,y=2} 2.5|c{} -inf" },
    { "a{v=\"q\\\"\\\\\\n\"} 1\n", 0, "a{v=q\"\\\n} 1" },
    { "  a{ k = \"v\" }\t3\n", 0, "a{k=v} 3" },
    { "ns:name_1 NaN\n", 0, "ns:name_1{} nan" },
    { "<html><body>hi</body></html>\n", -1, "line 1: bad metric name" },
    { "{\"json\": 1}\n", -1, "line 1: bad metric name" },
    { "a 1\nb{x=\"1\" 2\n", -1, "line 2: ',' or '}' expected after a label" },
    { "a{x=\"1} 2\n", -1, "line 1: unterminated label value" },
    { "a{x=1} 2\n", -1, "line 1: label value not quoted" },
    { "a{1x=\"1\"} 2\n", -1, "line 1: bad label name" },
    { "a{x=\"\\t\"} 2\n", -1, "line 1: bad escape in label value" },
    { "a\n", -1, "line 1: space expected before the value" },
    { "a one\n", -1, "line 1: bad value" },
    { "a 1 2 3\n", -1, "line 1: junk after the timestamp" },
    { "a 1 12.5\n", -1, "line 1: bad timestamp" },
    { "+OK\r\n", -1, "line 1: bad metric name" },
    { "a{a=\"\",b=\"\",c=\"\",d=\"\",e=\"\",f=\"\",g=\"\",h=\"\",i=\"\"} 1", -1,
      "line 1: too many labels" },
};

static void test_prom_parses_the_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        seen w = { .text = "" };
        char why[128] = "";
        int rc = prom_parse(rows[i].in, strlen(rows[i].in), record, &w, why, sizeof why);
        if (rc != rows[i].rc) fail_msg("row %zu: rc %d", i, rc);
        assert_string_equal(rc == 0 ? w.text : why, rows[i].out);
    }
}

static void test_prom_long_label_value_is_an_error_not_a_truncation(void **state) {
    (void)state;
    char in[PROM_VALUE_MAX + 32];
    memset(in, 'v', sizeof in);
    memcpy(in, "a{x=\"", 5);
    memcpy(in + sizeof in - 5, "\"} 1", 4);
    in[sizeof in - 1] = '\n';
    seen w = { .text = "" };
    char why[128];
    assert_int_equal(prom_parse(in, sizeof in, record, &w, why, sizeof why), -1);
    assert_string_equal(why, "line 1: label value too long");
    assert_int_equal(w.n, 0);
}

static int stop_at_second(void *arg, const prom_sample *s) {
    (void)s;
    return ++*(int *)arg == 2 ? 7 : 0;
}

static void test_prom_callback_stops_the_parse(void **state) {
    (void)state;
    int calls = 0;
    char why[64];
    const char *in = "a 1\nb 2\nc 3\n";
    assert_int_equal(prom_parse(in, strlen(in), stop_at_second, &calls, why, sizeof why), 7);
    assert_int_equal(calls, 2);
}

static void test_prom_reads_no_byte_past_len(void **state) {
    (void)state;
    /* "a 12" cut after "a 1": the value is 1, the rest is not read. */
    seen w = { .text = "" };
    char why[64];
    assert_int_equal(prom_parse("a 12", 3, record, &w, why, sizeof why), 0);
    assert_string_equal(w.text, "a{} 1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prom_parses_the_table),
        cmocka_unit_test(test_prom_long_label_value_is_an_error_not_a_truncation),
        cmocka_unit_test(test_prom_callback_stops_the_parse),
        cmocka_unit_test(test_prom_reads_no_byte_past_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
