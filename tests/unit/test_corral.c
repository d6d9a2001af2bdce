/*
 * test_corral.c - the cache operations of corral.h on `mem://`, through the public API, with a
 * fake clock (time only moves when a test moves it): get/set/add/delete/touch/has/incr, the
 * many-ops, clear, incr_version/decr_version, TTL semantics, values and errors.
 *
 * Expiry boundary: an entry set at t with TTL d is live for [t, t + d) and expired from t + d
 * on, as Django's locmem backend (`exp <= time.time()` is expired).
 *
 * Metrics, the allocation hooks and concurrent use are tested in test_metrics.c, test_alloc.c
 * and test_threads.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/corral.h"
#include "prefix_stats.h"

#define T0_NS ((uint64_t)1767225600 * 1000000000u) /* 2026-01-01 00:00:00 UTC */
#define MS    ((uint64_t)1000000)
#define YEAR  ((uint64_t)365 * 24 * 3600 * 1000)

typedef struct fixture {
    uint64_t now_ns; /* the fake clock; only the test's main thread writes it */
    corral *c;       /* mem://, timeout 300 s */
} fixture;

static uint64_t fake_now(void *ctx) {
    return ((const fixture *)ctx)->now_ns;
}

static void advance_ms(fixture *f, uint64_t ms) {
    f->now_ns += ms * MS;
}

static corral *open_clocked(fixture *f, const char *url) {
    corral_options o;
    corral_options_init(&o);
    char buf[256];
    assert_int_equal(corral_options_parse_url(&o, url, buf, sizeof buf, NULL), CORRAL_OK);
    o.now_ns = fake_now;
    o.clock_ctx = f;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    assert_non_null(c);
    return c;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->now_ns = T0_NS;
    f->c = open_clocked(f, "mem://?max_memory=16MB&timeout=300");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    corral_close(f->c);
    free(f);
    return 0;
}

static int set_str(corral *c, const char *key, const char *val, int64_t ttl_ms) {
    return corral_set(c, key, strlen(key), val, strlen(val), ttl_ms, NULL);
}

static void expect_str(corral *c, const char *key, const char *want) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != CORRAL_OK) fail_msg("get '%s': rc %d, want OK", key, rc);
    assert_int_equal(corral_value_len(v), strlen(want));
    assert_memory_equal(corral_value_data(v), want, strlen(want));
    corral_value_unref(v);
}

static void expect_miss(corral *c, const char *key) {
    corral_value *v = (corral_value *)&v;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != CORRAL_MISS) fail_msg("get '%s': rc %d, want MISS", key, rc);
    assert_null(v);
}

/* ---- get / set / add / delete / has ---- */

static void test_get_returns_value_that_was_set(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "featured_products:v3", "[1,2,3]", CORRAL_TTL_DEFAULT),
                     CORRAL_OK);
    expect_str(f->c, "featured_products:v3", "[1,2,3]");
}

static void test_get_on_absent_key_misses_with_null_out(void **state) {
    fixture *f = *state;
    expect_miss(f->c, "absent");
}

static void test_set_replaces_existing_value(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "old", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(set_str(f->c, "k", "new value", CORRAL_TTL_DEFAULT), CORRAL_OK);
    expect_str(f->c, "k", "new value");
}

static void test_add_stores_only_when_absent(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_add(f->c, "lock:k", 6, "1", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_add(f->c, "lock:k", 6, "2", 1, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_EXISTS);
    expect_str(f->c, "lock:k", "1");
}

static void test_add_stores_over_expired_entry(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_add(f->c, "lock:k", 6, "1", 1, 1000, NULL), CORRAL_OK);
    advance_ms(f, 1001);
    assert_int_equal(corral_add(f->c, "lock:k", 6, "2", 1, 1000, NULL), CORRAL_OK);
    expect_str(f->c, "lock:k", "2");
}

static void test_delete_reports_ok_then_miss(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_delete(f->c, "k", 1, NULL), CORRAL_OK);
    expect_miss(f->c, "k");
    assert_int_equal(corral_delete(f->c, "k", 1, NULL), CORRAL_MISS);
}

static void test_has_reports_presence(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_OK);
}

static void test_call_version_selects_a_separate_entry(void **state) {
    fixture *f = *state;
    corral_call v2 = CORRAL_CALL_INIT;
    v2.version = 2;
    assert_int_equal(corral_set(f->c, "k", 1, "two", 3, CORRAL_TTL_DEFAULT, &v2), CORRAL_OK);
    expect_miss(f->c, "k");
    corral_value *v = NULL;
    assert_int_equal(corral_get(f->c, "k", 1, &v2, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "two");
    corral_value_unref(v);
}

/* ---- touch ---- */

static void test_touch_extends_ttl(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", 1000), CORRAL_OK);
    advance_ms(f, 900);
    assert_int_equal(corral_touch(f->c, "k", 1, 1000, NULL), CORRAL_OK);
    advance_ms(f, 900);
    expect_str(f->c, "k", "v");
    advance_ms(f, 101);
    expect_miss(f->c, "k");
}

static void test_touch_default_uses_handle_timeout(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", 1000), CORRAL_OK);
    assert_int_equal(corral_touch(f->c, "k", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    advance_ms(f, 299999);
    expect_str(f->c, "k", "v");
    advance_ms(f, 2);
    expect_miss(f->c, "k");
}

static void test_touch_forever_removes_expiry(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", 1000), CORRAL_OK);
    assert_int_equal(corral_touch(f->c, "k", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    advance_ms(f, 10 * YEAR);
    expect_str(f->c, "k", "v");
}

static void test_touch_zero_expires_now(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_FOREVER), CORRAL_OK);
    assert_int_equal(corral_touch(f->c, "k", 1, 0, NULL), CORRAL_OK);
    expect_miss(f->c, "k");
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
}

static void test_touch_on_absent_key_misses(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_touch(f->c, "k", 1, 1000, NULL), CORRAL_MISS);
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
}

/* ---- ttl ---- */

static void test_ttl_tells_the_time_the_store_keeps_a_key(void **state) {
    fixture *f = *state;
    int64_t ms = -1;
    assert_int_equal(set_str(f->c, "k", "v", 1000), CORRAL_OK);
    advance_ms(f, 400);
    assert_int_equal(corral_ttl(f->c, "k", 1, NULL, &ms), CORRAL_OK);
    assert_int_equal(ms, 600);
    assert_int_equal(set_str(f->c, "d", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_ttl(f->c, "d", 1, NULL, &ms), CORRAL_OK);
    assert_int_equal(ms, 300000); /* the handle's timeout */
    assert_int_equal(set_str(f->c, "f", "v", CORRAL_TTL_FOREVER), CORRAL_OK);
    assert_int_equal(corral_ttl(f->c, "f", 1, NULL, &ms), CORRAL_OK);
    assert_int_equal(ms, CORRAL_TTL_FOREVER);
    advance_ms(f, 600);
    assert_int_equal(corral_ttl(f->c, "k", 1, NULL, &ms), CORRAL_MISS);
    assert_int_equal(ms, 0);
}

static void test_ttl_misses_absent_keys_and_creates_no_namespace(void **state) {
    fixture *f = *state;
    int64_t ms = -1;
    corral_call in_ns = CORRAL_CALL_INIT;
    in_ns.ns = "never-written";
    assert_int_equal(corral_ttl(f->c, "k", 1, NULL, &ms), CORRAL_MISS);
    assert_int_equal(corral_ttl(f->c, "k", 1, &in_ns, &ms), CORRAL_MISS);
    char key[64];
    size_t len;
    assert_int_equal(corral_make_key_read(f->c, "k", 1, &in_ns, key, sizeof key, &len),
                     CORRAL_MISS); /* still no generation */
    assert_int_equal(corral_ttl(f->c, "bad key", 7, NULL, &ms), CORRAL_EBADKEY);
    assert_int_equal(corral_ttl(f->c, "k", 1, NULL, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_ttl(NULL, "k", 1, NULL, &ms), CORRAL_EINVAL);
}

/* ---- incr ---- */

typedef struct incr_case {
    const char *start;
    int64_t delta;
    int64_t want;
    const char *stored;
} incr_case;

static void test_incr_adds_delta_and_stores_decimal(void **state) {
    fixture *f = *state;
    static const incr_case cases[] = {
        { "5", 1, 6, "6" },
        { "10", -15, -5, "-5" },
        { "-5", 10, 5, "5" },
        { "007", 1, 8, "8" },
        { "0", 0, 0, "0" },
        { "0", INT64_MIN, INT64_MIN, "-9223372036854775808" },
        { "9223372036854775806", 1, INT64_MAX, "9223372036854775807" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(set_str(f->c, "n", cases[i].start, CORRAL_TTL_DEFAULT), CORRAL_OK);
        int64_t out = 12345;
        int rc = corral_incr(f->c, "n", 1, cases[i].delta, NULL, &out);
        if (rc != CORRAL_OK)
            fail_msg("'%s' + %lld: rc %d", cases[i].start, (long long)cases[i].delta, rc);
        assert_int_equal(out, cases[i].want);
        expect_str(f->c, "n", cases[i].stored);
    }
}

static void test_incr_out_is_optional(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "n", "41", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_incr(f->c, "n", 1, 1, NULL, NULL), CORRAL_OK);
    expect_str(f->c, "n", "42");
}

static void test_incr_on_absent_key_misses(void **state) {
    fixture *f = *state;
    int64_t out = 12345;
    assert_int_equal(corral_incr(f->c, "n", 1, 1, NULL, &out), CORRAL_MISS);
    assert_int_equal(out, 0);
    expect_miss(f->c, "n");
}

static void test_incr_refuses_values_that_are_not_decimal_integers(void **state) {
    fixture *f = *state;
    static const char *const bad[] = { "abc", "1.5", "",     "+5",  " 5",  "5 ",
                                       "-",   "--1", "0x10", "1e3", "5\n", "12345678901234567890" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(set_str(f->c, "n", bad[i], CORRAL_TTL_DEFAULT), CORRAL_OK);
        int64_t out = 12345;
        int rc = corral_incr(f->c, "n", 1, 1, NULL, &out);
        if (rc != CORRAL_ENOTINT) fail_msg("'%s': rc %d, want ENOTINT", bad[i], rc);
        assert_int_equal(out, 0);
        expect_str(f->c, "n", bad[i]);
    }
}

static void test_incr_refuses_embedded_nul(void **state) {
    fixture *f = *state;
    assert_int_equal(corral_set(f->c, "n", 1, "12\0003", 4, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_incr(f->c, "n", 1, 1, NULL, NULL), CORRAL_ENOTINT);
}

static void test_incr_overflow_is_erange_and_keeps_value(void **state) {
    fixture *f = *state;
    int64_t out = 12345;
    assert_int_equal(set_str(f->c, "n", "9223372036854775807", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_incr(f->c, "n", 1, 1, NULL, &out), CORRAL_ERANGE);
    assert_int_equal(out, 0);
    expect_str(f->c, "n", "9223372036854775807");
    assert_int_equal(set_str(f->c, "n", "-9223372036854775808", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_incr(f->c, "n", 1, -1, NULL, &out), CORRAL_ERANGE);
    expect_str(f->c, "n", "-9223372036854775808");
    assert_int_equal(set_str(f->c, "n", "-1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_incr(f->c, "n", 1, INT64_MIN, NULL, &out), CORRAL_ERANGE);
    expect_str(f->c, "n", "-1");
    /* 19 digits, so a decimal integer by the header's grammar, but past INT64_MAX. */
    assert_int_equal(set_str(f->c, "n", "9999999999999999999", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_incr(f->c, "n", 1, 0, NULL, &out), CORRAL_ERANGE);
}

static void test_incr_keeps_ttl(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "n", "5", 1000), CORRAL_OK);
    advance_ms(f, 500);
    assert_int_equal(corral_incr(f->c, "n", 1, 1, NULL, NULL), CORRAL_OK);
    advance_ms(f, 499);
    expect_str(f->c, "n", "6");
    advance_ms(f, 2);
    expect_miss(f->c, "n");
}

/* ---- get_into ---- */

static void test_get_into_copies_value(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "hello", CORRAL_TTL_DEFAULT), CORRAL_OK);
    char buf[5];
    size_t len = 0;
    assert_int_equal(corral_get_into(f->c, "k", 1, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
}

static void test_get_into_small_buffer_reports_length_and_copies_nothing(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "hello", CORRAL_TTL_DEFAULT), CORRAL_OK);
    char buf[8];
    memset(buf, 0xee, sizeof buf);
    size_t len = 0;
    assert_int_equal(corral_get_into(f->c, "k", 1, NULL, buf, 4, &len), CORRAL_ENOSPC);
    assert_int_equal(len, 5);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal((unsigned char)buf[i], 0xee);
}

static void test_get_into_miss_sets_length_zero(void **state) {
    fixture *f = *state;
    char buf[8];
    size_t len = 99;
    assert_int_equal(corral_get_into(f->c, "k", 1, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    assert_int_equal(len, 0);
}

/* corral_get_into without a call reads the memory store in one function
 * (corral__mem_get_into_hot) and leaves what it cannot answer alone to the general path: an
 * entry that has expired, a value with an envelope (here, tags), the LRU policy. Each must read
 * as it would with a call, and count once. */
static void test_get_into_without_a_call_handles_expiry_envelopes_and_lru(void **state) {
    fixture *f = *state;
    char buf[16];
    size_t len = 0;
    assert_int_equal(set_str(f->c, "p:ttl", "v", 1000), CORRAL_OK);
    assert_int_equal(corral_get_into(f->c, "p:ttl", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
    advance_ms(f, 1000);
    assert_int_equal(corral_get_into(f->c, "p:ttl", 5, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    assert_int_equal(len, 0);

    const char *tags[] = { "t" };
    corral_call tagged = CORRAL_CALL_INIT;
    tagged.tags = tags;
    tagged.n_tags = 1;
    assert_int_equal(corral_set(f->c, "p:tag", 5, "w", 1, CORRAL_TTL_DEFAULT, &tagged), CORRAL_OK);
    assert_int_equal(corral_get_into(f->c, "p:tag", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 1);
    assert_memory_equal(buf, "w", 1);
    assert_int_equal(corral_get_into(f->c, "p:tag", 5, NULL, buf, 0, &len), CORRAL_ENOSPC);
    assert_int_equal(len, 1);
    assert_int_equal(corral_tag_bust(f->c, "t"), CORRAL_OK);
    assert_int_equal(corral_get_into(f->c, "p:tag", 5, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    expect_prefix_counts(f->c, "p", 3, 2);

    corral *lru = open_clocked(f, "mem://?max_memory=1MB&eviction=lru");
    assert_int_equal(set_str(lru, "q:k", "xyz", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_get_into(lru, "q:k", 3, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 3);
    assert_int_equal(corral_get_into(lru, "q:k", 3, NULL, buf, 2, &len), CORRAL_ENOSPC);
    assert_int_equal(len, 3);
    assert_int_equal(corral_get_into(lru, "q:none", 6, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    assert_int_equal(corral_get_into(lru, "q k", 3, NULL, buf, sizeof buf, &len), CORRAL_EBADKEY);
    expect_prefix_counts(lru, "q", 2, 1);
    corral_close(lru);
}

/* corral_set without a call: the memory store's hot write (corral__mem_set_hot) overwrites in
 * place without building the key and leaves to the general path what it cannot write there,
 * with the results and counters of the general path: an entry expired under the old TTL is
 * replaced as expired (not overwritten) by a set without one, a bad key is refused, a raw value
 * that begins as an envelope does is kept as it is, TTL 0 removes the key. */
static void test_set_without_a_call_answers_as_the_general_path(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "p:k", "one", 1000), CORRAL_OK);
    assert_int_equal(set_str(f->c, "p:k", "two", 1000), CORRAL_OK);
    expect_str(f->c, "p:k", "two");
    advance_ms(f, 1000);
    assert_int_equal(set_str(f->c, "p:k", "six", CORRAL_TTL_FOREVER), CORRAL_OK);
    expect_str(f->c, "p:k", "six");
    assert_int_equal(set_str(f->c, "p k", "v", 1000), CORRAL_EBADKEY);
    assert_int_equal(corral_set(f->c, NULL, 3, "v", 1, 1000, NULL), CORRAL_EBADKEY);
    const char raw[] = { (char)0xC7, 'x' };
    assert_int_equal(corral_set(f->c, "p:raw", 5, raw, 2, 1000, NULL), CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(corral_get(f->c, "p:raw", 5, NULL, &v), CORRAL_OK);
    assert_int_equal(corral_value_len(v), 2);
    assert_memory_equal(corral_value_data(v), raw, 2);
    corral_value_unref(v);
    assert_int_equal(set_str(f->c, "p:k", "seven", 0), CORRAL_OK);
    assert_int_equal(corral_get(f->c, "p:k", 3, NULL, &v), CORRAL_MISS);
    corral_stats_snapshot *st = NULL;
    assert_int_equal(corral_stats(f->c, &st), CORRAL_OK);
    const corral_prefix_stats *p = NULL;
    for (size_t i = 0; i < st->n_prefixes; i++)
        if (strcmp(st->prefixes[i].prefix, "p") == 0) p = &st->prefixes[i];
    assert_non_null(p);
    assert_int_equal(p->sets, 4);
    assert_int_equal(p->expirations, 1);
    assert_int_equal(p->deletes, 1);
    assert_int_equal(p->items, 1);
    corral_stats_free(f->c, st);
}

/* corral_get without a call: corral__mem_get_hot, handing off as get_into's read path does. */
static void expect_get(corral *c, const char *key, int want_rc, const char *want) {
    corral_value *v = (corral_value *)&v;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != want_rc) fail_msg("get '%s': rc %d, want %d", key, rc, want_rc);
    if (rc != CORRAL_OK) {
        assert_null(v);
        return;
    }
    assert_int_equal(corral_value_len(v), strlen(want));
    assert_memory_equal(corral_value_data(v), want, strlen(want));
    corral_value_unref(v);
}

static void test_get_without_a_call_handles_expiry_envelopes_and_lru(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "p:ttl", "v", 1000), CORRAL_OK);
    expect_get(f->c, "p:ttl", CORRAL_OK, "v");
    advance_ms(f, 1000);
    expect_get(f->c, "p:ttl", CORRAL_MISS, NULL);
    const char *tags[] = { "t" };
    corral_call tagged = CORRAL_CALL_INIT;
    tagged.tags = tags;
    tagged.n_tags = 1;
    assert_int_equal(corral_set(f->c, "p:tag", 5, "w", 1, CORRAL_TTL_DEFAULT, &tagged), CORRAL_OK);
    expect_get(f->c, "p:tag", CORRAL_OK, "w");
    assert_int_equal(corral_tag_bust(f->c, "t"), CORRAL_OK);
    expect_get(f->c, "p:tag", CORRAL_MISS, NULL);
    expect_get(f->c, "p t", CORRAL_EBADKEY, NULL);
    expect_prefix_counts(f->c, "p", 2, 2);

    corral *lru = open_clocked(f, "mem://?max_memory=1MB&eviction=lru");
    assert_int_equal(set_str(lru, "q:k", "xyz", CORRAL_TTL_DEFAULT), CORRAL_OK);
    expect_get(lru, "q:k", CORRAL_OK, "xyz");
    expect_get(lru, "q:none", CORRAL_MISS, NULL);
    expect_prefix_counts(lru, "q", 1, 1);
    corral_close(lru);
}

/* ---- many-ops ---- */

static void test_get_many_returns_hits_and_null_for_misses(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "a", "1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(set_str(f->c, "c", "3", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_buf keys[3] = { { "a", 1 }, { "b", 1 }, { "c", 1 } };
    corral_value *out[3];
    size_t found = 99;
    assert_int_equal(corral_get_many(f->c, keys, 3, NULL, out, &found), CORRAL_OK);
    assert_int_equal(found, 2);
    assert_string_equal(corral_value_data(out[0]), "1");
    assert_null(out[1]);
    assert_string_equal(corral_value_data(out[2]), "3");
    for (size_t i = 0; i < 3; i++)
        corral_value_unref(out[i]);
}

static void test_get_many_all_misses_is_ok(void **state) {
    fixture *f = *state;
    corral_buf keys[2] = { { "x", 1 }, { "y", 1 } };
    corral_value *out[2];
    size_t found = 99;
    assert_int_equal(corral_get_many(f->c, keys, 2, NULL, out, &found), CORRAL_OK);
    assert_int_equal(found, 0);
    assert_null(out[0]);
    assert_null(out[1]);
}

static void test_get_many_bad_key_fails_with_every_out_null(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "a", "1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_buf keys[3] = { { "a", 1 }, { "b", 1 }, { "bad key", 7 } };
    corral_value *out[3] = { (corral_value *)&keys, (corral_value *)&keys, (corral_value *)&keys };
    size_t found = 99;
    assert_int_equal(corral_get_many(f->c, keys, 3, NULL, out, &found), CORRAL_EBADKEY);
    for (size_t i = 0; i < 3; i++)
        assert_null(out[i]);
    assert_int_equal(found, 0);
}

static void test_set_many_stores_every_pair(void **state) {
    fixture *f = *state;
    corral_buf keys[3] = { { "a", 1 }, { "b", 1 }, { "c", 1 } };
    corral_buf vals[3] = { { "1", 1 }, { "22", 2 }, { "333", 3 } };
    assert_int_equal(corral_set_many(f->c, keys, vals, 3, 1000, NULL), CORRAL_OK);
    expect_str(f->c, "a", "1");
    expect_str(f->c, "b", "22");
    expect_str(f->c, "c", "333");
    advance_ms(f, 1001);
    expect_miss(f->c, "b");
}

static void test_set_many_bad_key_writes_nothing(void **state) {
    fixture *f = *state;
    corral_buf keys[3] = { { "a", 1 }, { "b\n", 2 }, { "c", 1 } };
    corral_buf vals[3] = { { "1", 1 }, { "2", 1 }, { "3", 1 } };
    assert_int_equal(corral_set_many(f->c, keys, vals, 3, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_EBADKEY);
    expect_miss(f->c, "a");
    expect_miss(f->c, "c");
}

static void test_set_many_too_big_value_writes_nothing(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_memory=1MB&max_value=100");
    static const char big[101] = { 0 };
    corral_buf keys[2] = { { "a", 1 }, { "b", 1 } };
    corral_buf vals[2] = { { "1", 1 }, { big, sizeof big } };
    assert_int_equal(corral_set_many(c, keys, vals, 2, CORRAL_TTL_DEFAULT, NULL), CORRAL_ETOOBIG);
    expect_miss(c, "a");
    expect_miss(c, "b");
    corral_close(c);
}

static void test_delete_many_counts_removed_entries(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "a", "1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(set_str(f->c, "b", "2", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_buf keys[3] = { { "a", 1 }, { "b", 1 }, { "c", 1 } };
    size_t deleted = 99;
    assert_int_equal(corral_delete_many(f->c, keys, 3, NULL, &deleted), CORRAL_OK);
    assert_int_equal(deleted, 2);
    expect_miss(f->c, "a");
    expect_miss(f->c, "b");
}

static void test_delete_many_counts_a_repeated_key_once(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "a", "1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_buf keys[2] = { { "a", 1 }, { "a", 1 } };
    size_t deleted = 99;
    assert_int_equal(corral_delete_many(f->c, keys, 2, NULL, &deleted), CORRAL_OK);
    assert_int_equal(deleted, 1);
}

static void test_delete_many_bad_key_removes_nothing(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "a", "1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_buf keys[2] = { { "a", 1 }, { "b\x7f", 2 } };
    size_t deleted = 99;
    assert_int_equal(corral_delete_many(f->c, keys, 2, NULL, &deleted), CORRAL_EBADKEY);
    assert_int_equal(deleted, 0);
    expect_str(f->c, "a", "1");
}

static void test_clear_removes_every_entry(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "a", "1", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(set_str(f->c, "b", "2", CORRAL_TTL_FOREVER), CORRAL_OK);
    assert_int_equal(corral_clear(f->c), CORRAL_OK);
    expect_miss(f->c, "a");
    expect_miss(f->c, "b");
    assert_int_equal(set_str(f->c, "a", "again", CORRAL_TTL_DEFAULT), CORRAL_OK);
    expect_str(f->c, "a", "again");
}

/* ---- incr_version / decr_version ---- */

static void test_incr_version_moves_value_to_next_version(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    int64_t nv = 0;
    assert_int_equal(corral_incr_version(f->c, "k", 1, 1, NULL, &nv), CORRAL_OK);
    assert_int_equal(nv, 2);
    expect_miss(f->c, "k");
    corral_call v2 = CORRAL_CALL_INIT;
    v2.version = 2;
    char buf[8];
    size_t len = 0;
    assert_int_equal(corral_get_into(f->c, "k", 1, &v2, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 1);
    assert_int_equal(buf[0], 'v');
}

static void test_decr_version_moves_value_to_previous_version(void **state) {
    fixture *f = *state;
    corral_call v3 = CORRAL_CALL_INIT;
    v3.version = 3;
    assert_int_equal(corral_set(f->c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &v3), CORRAL_OK);
    int64_t nv = 0;
    assert_int_equal(corral_decr_version(f->c, "k", 1, 2, &v3, &nv), CORRAL_OK);
    assert_int_equal(nv, 1);
    expect_str(f->c, "k", "v");
    assert_int_equal(corral_has(f->c, "k", 1, &v3), CORRAL_MISS);
}

static void test_incr_version_on_absent_key_misses(void **state) {
    fixture *f = *state;
    int64_t nv = 12345;
    assert_int_equal(corral_incr_version(f->c, "k", 1, 1, NULL, &nv), CORRAL_MISS);
    assert_int_equal(nv, 0);
    assert_int_equal(corral_decr_version(f->c, "k", 1, 1, NULL, NULL), CORRAL_MISS);
}

static void test_incr_version_gives_value_the_handle_default_ttl(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_FOREVER), CORRAL_OK);
    assert_int_equal(corral_incr_version(f->c, "k", 1, 1, NULL, NULL), CORRAL_OK);
    corral_call v2 = CORRAL_CALL_INIT;
    v2.version = 2;
    advance_ms(f, 299999);
    assert_int_equal(corral_has(f->c, "k", 1, &v2), CORRAL_OK);
    advance_ms(f, 2);
    assert_int_equal(corral_has(f->c, "k", 1, &v2), CORRAL_MISS);
}

static void test_incr_version_refuses_a_version_past_int64(void **state) {
    fixture *f = *state;
    corral_call top = CORRAL_CALL_INIT;
    top.version = INT64_MAX;
    assert_int_equal(corral_set(f->c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &top), CORRAL_OK);
    int64_t nv = 99;
    assert_int_equal(corral_incr_version(f->c, "k", 1, 1, &top, &nv), CORRAL_ERANGE);
    assert_int_equal(nv, 0);
    assert_int_equal(corral_has(f->c, "k", 1, &top), CORRAL_OK);
    expect_miss(f->c, "k");
}

/* ---- TTL semantics ---- */

static void test_ttl_default_uses_handle_timeout(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    advance_ms(f, 299999);
    expect_str(f->c, "k", "v");
    advance_ms(f, 2);
    expect_miss(f->c, "k");
}

static void test_ttl_forever_never_expires(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_FOREVER), CORRAL_OK);
    advance_ms(f, 100 * YEAR);
    expect_str(f->c, "k", "v");
}

static void test_ttl_zero_stores_nothing_and_removes_existing_value(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", CORRAL_TTL_FOREVER), CORRAL_OK);
    assert_int_equal(set_str(f->c, "k", "w", 0), CORRAL_OK);
    expect_miss(f->c, "k");
    assert_int_equal(set_str(f->c, "fresh", "w", 0), CORRAL_OK);
    expect_miss(f->c, "fresh");
}

static void test_entry_expires_exactly_at_its_ttl(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "v", 1000), CORRAL_OK);
    f->now_ns += 1000 * MS - 1;
    expect_str(f->c, "k", "v");
    f->now_ns += 1;
    expect_miss(f->c, "k");
}

static void test_expired_entry_is_absent_to_every_operation(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "5", 1000), CORRAL_OK);
    advance_ms(f, 1000);
    char buf[8];
    size_t len = 99;
    assert_int_equal(corral_get_into(f->c, "k", 1, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
    assert_int_equal(corral_incr(f->c, "k", 1, 1, NULL, NULL), CORRAL_MISS);
    assert_int_equal(corral_touch(f->c, "k", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_MISS);
    assert_int_equal(corral_incr_version(f->c, "k", 1, 1, NULL, NULL), CORRAL_MISS);
    assert_int_equal(corral_delete(f->c, "k", 1, NULL), CORRAL_MISS);
}

static void test_handle_timeout_none_never_expires(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?timeout=none");
    assert_int_equal(set_str(c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    advance_ms(f, 10 * YEAR);
    expect_str(c, "k", "v");
    corral_close(c);
}

static void test_handle_timeout_zero_stores_nothing(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?timeout=0");
    assert_int_equal(set_str(c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    expect_miss(c, "k");
    corral_close(c);
}

static void test_handle_fractional_timeout_is_milliseconds(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?timeout=1.5");
    assert_int_equal(set_str(c, "k", "v", CORRAL_TTL_DEFAULT), CORRAL_OK);
    advance_ms(f, 1499);
    expect_str(c, "k", "v");
    advance_ms(f, 2);
    expect_miss(c, "k");
    corral_close(c);
}

/* ---- Values ---- */

static void test_values_are_binary_safe(void **state) {
    fixture *f = *state;
    static const char val[] = { 'a', 0, 'b', 0, (char)0xff };
    assert_int_equal(corral_set(f->c, "k", 1, val, sizeof val, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(corral_get(f->c, "k", 1, NULL, &v), CORRAL_OK);
    assert_int_equal(corral_value_len(v), sizeof val);
    assert_memory_equal(corral_value_data(v), val, sizeof val);
    corral_value_unref(v);
}

static void test_values_are_nul_terminated(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "hello", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_set(f->c, "e", 1, "", 0, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    corral_value *v = NULL, *e = NULL;
    assert_int_equal(corral_get(f->c, "k", 1, NULL, &v), CORRAL_OK);
    assert_int_equal(corral_get(f->c, "e", 1, NULL, &e), CORRAL_OK);
    assert_string_equal((const char *)corral_value_data(v), "hello");
    assert_int_equal(corral_value_len(e), 0);
    assert_int_equal(((const char *)corral_value_data(e))[0], '\0');
    corral_value_unref(v);
    corral_value_unref(e);
}

static void test_value_reference_outlives_delete_and_replace(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "first", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(corral_get(f->c, "k", 1, NULL, &v), CORRAL_OK);
    corral_value *extra = corral_value_ref(v);
    assert_ptr_equal(extra, v);
    assert_int_equal(set_str(f->c, "k", "second", CORRAL_TTL_DEFAULT), CORRAL_OK);
    assert_int_equal(corral_delete(f->c, "k", 1, NULL), CORRAL_OK);
    corral_value_unref(v);
    assert_string_equal((const char *)corral_value_data(extra), "first");
    corral_value_unref(extra);
    corral_value_unref(NULL);
}

static void test_two_gets_share_the_stored_bytes(void **state) {
    fixture *f = *state;
    assert_int_equal(set_str(f->c, "k", "zero-copy", CORRAL_TTL_DEFAULT), CORRAL_OK);
    corral_value *a = NULL, *b = NULL;
    assert_int_equal(corral_get(f->c, "k", 1, NULL, &a), CORRAL_OK);
    assert_int_equal(corral_get(f->c, "k", 1, NULL, &b), CORRAL_OK);
    assert_ptr_equal(corral_value_data(a), corral_value_data(b));
    corral_value_unref(a);
    corral_value_unref(b);
}

static void test_set_refuses_value_over_max_value_bytes(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_memory=1MB&max_value=100");
    static const char big[101] = { 0 };
    assert_int_equal(corral_set(c, "k", 1, "old", 3, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, big, 101, CORRAL_TTL_DEFAULT, NULL), CORRAL_ETOOBIG);
    assert_int_equal(corral_add(c, "n", 1, big, 101, CORRAL_TTL_DEFAULT, NULL), CORRAL_ETOOBIG);
    expect_str(c, "k", "old");
    expect_miss(c, "n");
    assert_int_equal(corral_set(c, "k", 1, big, 100, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    corral_close(c);
}

static void test_default_max_value_is_a_sixteenth_of_max_memory(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_memory=1MiB");
    char *big = calloc(1, 65537);
    assert_non_null(big);
    assert_int_equal(corral_set(c, "k", 1, big, 65537, CORRAL_TTL_DEFAULT, NULL), CORRAL_ETOOBIG);
    assert_int_equal(corral_set(c, "k", 1, big, 65536, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    free(big);
    corral_close(c);
}

/* ---- Errors and identity ---- */

static void test_strerror_names_every_code_distinctly(void **state) {
    (void)state;
    static const int codes[] = { CORRAL_OK,      CORRAL_MISS,     CORRAL_EXISTS,  CORRAL_EINVAL,
                                 CORRAL_ENOMEM,  CORRAL_EBADKEY,  CORRAL_ETOOBIG, CORRAL_ENOTINT,
                                 CORRAL_ERANGE,  CORRAL_ENOSPC,   CORRAL_EBADURL, CORRAL_ESTORE,
                                 CORRAL_ENOTSUP, CORRAL_ETIMEDOUT };
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *s = corral_strerror(codes[i]);
        assert_non_null(s);
        assert_true(s[0] != '\0');
        for (size_t j = 0; j < i; j++)
            if (strcmp(s, corral_strerror(codes[j])) == 0)
                fail_msg("codes %d and %d share '%s'", codes[i], codes[j], s);
    }
    assert_true(corral_strerror(-999)[0] != '\0');
    assert_true(corral_strerror(999)[0] != '\0');
}

static void test_version_string_matches_version_macros(void **state) {
    (void)state;
    char want[32];
    int n = snprintf(want, sizeof want, "%d.%d.%d", CORRAL_VERSION_MAJOR, CORRAL_VERSION_MINOR,
                     CORRAL_VERSION_PATCH);
    assert_true(n > 0 && (size_t)n < sizeof want);
    assert_string_equal(corral_version(), want);
}

static void test_null_handle_is_einval(void **state) {
    (void)state;
    corral_value *v = (corral_value *)&v;
    assert_int_equal(corral_get(NULL, "k", 1, NULL, &v), CORRAL_EINVAL);
    assert_null(v);
    assert_int_equal(corral_set(NULL, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_delete(NULL, "k", 1, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_has(NULL, "k", 1, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_clear(NULL), CORRAL_EINVAL);
    corral_close(NULL);
    corral_free(NULL, NULL);
    corral_stats_free(NULL, NULL);
}

static void test_bad_key_is_refused_by_every_operation(void **state) {
    fixture *f = *state;
    const char *k = "a b";
    corral_value *v = (corral_value *)&v;
    size_t len = 99;
    int64_t n = 99;
    char buf[8];
    assert_int_equal(corral_get(f->c, k, 3, NULL, &v), CORRAL_EBADKEY);
    assert_null(v);
    assert_int_equal(corral_get_into(f->c, k, 3, NULL, buf, sizeof buf, &len), CORRAL_EBADKEY);
    assert_int_equal(len, 0);
    assert_int_equal(corral_set(f->c, k, 3, "1", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_EBADKEY);
    assert_int_equal(corral_add(f->c, k, 3, "1", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_EBADKEY);
    assert_int_equal(corral_delete(f->c, k, 3, NULL), CORRAL_EBADKEY);
    assert_int_equal(corral_touch(f->c, k, 3, 1000, NULL), CORRAL_EBADKEY);
    assert_int_equal(corral_has(f->c, k, 3, NULL), CORRAL_EBADKEY);
    assert_int_equal(corral_incr(f->c, k, 3, 1, NULL, &n), CORRAL_EBADKEY);
    assert_int_equal(n, 0);
    n = 99;
    assert_int_equal(corral_incr_version(f->c, k, 3, 1, NULL, &n), CORRAL_EBADKEY);
    assert_int_equal(n, 0);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_get_returns_value_that_was_set),
        T(test_get_on_absent_key_misses_with_null_out),
        T(test_set_replaces_existing_value),
        T(test_add_stores_only_when_absent),
        T(test_add_stores_over_expired_entry),
        T(test_delete_reports_ok_then_miss),
        T(test_has_reports_presence),
        T(test_call_version_selects_a_separate_entry),
        T(test_touch_extends_ttl),
        T(test_touch_default_uses_handle_timeout),
        T(test_touch_forever_removes_expiry),
        T(test_touch_zero_expires_now),
        T(test_touch_on_absent_key_misses),
        T(test_ttl_tells_the_time_the_store_keeps_a_key),
        T(test_ttl_misses_absent_keys_and_creates_no_namespace),
        T(test_incr_adds_delta_and_stores_decimal),
        T(test_incr_out_is_optional),
        T(test_incr_on_absent_key_misses),
        T(test_incr_refuses_values_that_are_not_decimal_integers),
        T(test_incr_refuses_embedded_nul),
        T(test_incr_overflow_is_erange_and_keeps_value),
        T(test_incr_keeps_ttl),
        T(test_get_into_copies_value),
        T(test_get_into_small_buffer_reports_length_and_copies_nothing),
        T(test_get_into_miss_sets_length_zero),
        T(test_get_into_without_a_call_handles_expiry_envelopes_and_lru),
        T(test_set_without_a_call_answers_as_the_general_path),
        T(test_get_without_a_call_handles_expiry_envelopes_and_lru),
        T(test_get_many_returns_hits_and_null_for_misses),
        T(test_get_many_all_misses_is_ok),
        T(test_get_many_bad_key_fails_with_every_out_null),
        T(test_set_many_stores_every_pair),
        T(test_set_many_bad_key_writes_nothing),
        T(test_set_many_too_big_value_writes_nothing),
        T(test_delete_many_counts_removed_entries),
        T(test_delete_many_counts_a_repeated_key_once),
        T(test_delete_many_bad_key_removes_nothing),
        T(test_clear_removes_every_entry),
        T(test_incr_version_moves_value_to_next_version),
        T(test_decr_version_moves_value_to_previous_version),
        T(test_incr_version_on_absent_key_misses),
        T(test_incr_version_gives_value_the_handle_default_ttl),
        T(test_incr_version_refuses_a_version_past_int64),
        T(test_ttl_default_uses_handle_timeout),
        T(test_ttl_forever_never_expires),
        T(test_ttl_zero_stores_nothing_and_removes_existing_value),
        T(test_entry_expires_exactly_at_its_ttl),
        T(test_expired_entry_is_absent_to_every_operation),
        T(test_handle_timeout_none_never_expires),
        T(test_handle_timeout_zero_stores_nothing),
        T(test_handle_fractional_timeout_is_milliseconds),
        T(test_values_are_binary_safe),
        T(test_values_are_nul_terminated),
        T(test_value_reference_outlives_delete_and_replace),
        T(test_two_gets_share_the_stored_bytes),
        T(test_set_refuses_value_over_max_value_bytes),
        T(test_default_max_value_is_a_sixteenth_of_max_memory),
        T(test_strerror_names_every_code_distinctly),
        T(test_version_string_matches_version_macros),
        T(test_null_handle_is_einval),
        T(test_bad_key_is_refused_by_every_operation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
