/*
 * test_alloc.c - the allocator hooks of corral_options, through the public API.
 *
 * A counting allocator checks that every block the library takes through the hooks comes back,
 * with the size it was allocated with. The allocation-failure sweeps (HOUSE_STYLE.md section 9)
 * fail the k-th allocation of one call, for k = 1, 2, ... until the call succeeds without an
 * injected failure, and assert each time: a clean CORRAL_ENOMEM, out-parameters NULL, the cache
 * state unchanged, and (after close) every byte returned.
 *
 * "Fail once": only the k-th allocation fails; a call may recover from it (then it must succeed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/corral.h"

#define T0_NS     ((uint64_t)1767225600 * 1000000000u)
#define T0_NS     ((uint64_t)1767225600 * 1000000000u)
#define MAX_SWEEP 100000

#include "counting_alloc.h"

typedef struct fixture {
    uint64_t now_ns;
    counting alloc;
    corral *c; /* opened with the counting allocator, nothing armed */
} fixture;

static uint64_t fake_now(void *ctx) {
    return ((const fixture *)ctx)->now_ns;
}

static void counted_options(fixture *f, corral_options *o) {
    corral_options_init(o);
    o->max_memory_bytes = 4000000;
    o->allocator = (corral_allocator){ count_alloc, count_realloc, count_free, &f->alloc };
    o->now_ns = fake_now;
    o->clock_ctx = f;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->now_ns = T0_NS;
    corral_options o;
    counted_options(f, &o);
    if (corral_open_opts(&f->c, &o, NULL) != CORRAL_OK) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Closes the handle and checks that every byte came back. */
static int teardown(void **state) {
    fixture *f = *state;
    corral_close(f->c);
    assert_balanced(&f->alloc);
    free(f);
    return 0;
}

static void set_ok(corral *c, const char *key, const char *val) {
    int rc = corral_set(c, key, strlen(key), val, strlen(val), CORRAL_TTL_DEFAULT, NULL);
    if (rc != CORRAL_OK) fail_msg("set '%s': rc %d", key, rc);
}

static void expect_str(corral *c, const char *key, const char *want) {
    char buf[64];
    size_t len = 0;
    int rc = corral_get_into(c, key, strlen(key), NULL, buf, sizeof buf, &len);
    if (rc != CORRAL_OK) fail_msg("get '%s': rc %d, want OK", key, rc);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

static int64_t items(corral *c) {
    corral_stats_snapshot *s = NULL;
    assert_int_equal(corral_stats(c, &s), CORRAL_OK);
    int64_t n = s->total.items;
    corral_stats_free(c, s);
    return n;
}

/* ---- Counting ---- */

static void test_counting_allocator_gets_every_byte_back(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "one");
    set_ok(f->c, "a:1", "replaced");
    set_ok(f->c, "n:1", "41");
    assert_int_equal(corral_incr(f->c, "n:1", 3, 1, NULL, NULL), CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(corral_get(f->c, "a:1", 3, NULL, &v), CORRAL_OK);
    assert_int_equal(corral_delete(f->c, "a:1", 3, NULL), CORRAL_OK);
    corral_value_unref(v);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(corral_metrics_write(f->c, &text, &len), CORRAL_OK);
    corral_free(f->c, text);
    assert_int_equal(corral_clear(f->c), CORRAL_OK);
    assert_true(atomic_load(&f->alloc.allocs) > 0);
    /* teardown closes the handle and asserts the balance */
}

static void test_stored_values_come_from_the_hooks(void **state) {
    fixture *f = *state;
    static const char big[10000] = { 1 };
    size_t before = atomic_load(&f->alloc.bytes_in);
    assert_int_equal(corral_set(f->c, "big", 3, big, sizeof big, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_OK);
    assert_true(atomic_load(&f->alloc.bytes_in) - before >= sizeof big);
}

static void test_values_outliving_delete_are_freed_through_the_hooks(void **state) {
    fixture *f = *state;
    set_ok(f->c, "k", "held");
    corral_value *v = NULL;
    assert_int_equal(corral_get(f->c, "k", 1, NULL, &v), CORRAL_OK);
    assert_int_equal(corral_delete(f->c, "k", 1, NULL), CORRAL_OK);
    assert_string_equal((const char *)corral_value_data(v), "held");
    corral_value_unref(v);
    /* teardown asserts that the value's block came back */
}

/* ---- Allocation-failure sweeps ---- */

static void test_open_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    for (long k = 1; k < MAX_SWEEP; k++) {
        counting *a = calloc(1, sizeof *a);
        assert_non_null(a);
        corral_options o;
        counted_options(f, &o);
        o.allocator.ctx = a;
        corral *c = (corral *)a;
        corral_error err = { 0 };
        arm(a, k);
        int rc = corral_open_opts(&c, &o, &err);
        long failed = disarm(a);
        if (rc == CORRAL_OK)
            corral_close(c);
        else if (rc != CORRAL_ENOMEM)
            fail_msg("k=%ld: rc %d, want ENOMEM", k, rc);
        else {
            assert_null(c);
            assert_int_equal(err.code, CORRAL_ENOMEM);
        }
        assert_balanced(a);
        free(a);
        if (rc == CORRAL_OK && failed == 0) return;
    }
    fail_msg("corral_open_opts never succeeded");
}

static void test_set_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    for (long k = 1; k < MAX_SWEEP; k++) {
        set_ok(f->c, "page:home", "old");
        int d = corral_delete(f->c, "page:new", 8, NULL);
        assert_true(d == CORRAL_OK || d == CORRAL_MISS);
        int64_t before = items(f->c);
        arm(&f->alloc, k);
        int rc = corral_set(f->c, "page:home", 9, "new", 3, CORRAL_TTL_DEFAULT, NULL);
        int rc2 = corral_set(f->c, "page:new", 8, "fresh", 5, CORRAL_TTL_DEFAULT, NULL);
        long failed = disarm(&f->alloc);
        if (rc == CORRAL_ENOMEM)
            expect_str(f->c, "page:home", "old");
        else if (rc != CORRAL_OK)
            fail_msg("k=%ld: replace rc %d", k, rc);
        if (rc2 == CORRAL_ENOMEM)
            assert_int_equal(corral_has(f->c, "page:new", 8, NULL), CORRAL_MISS);
        else if (rc2 != CORRAL_OK)
            fail_msg("k=%ld: new key rc %d", k, rc2);
        assert_int_equal(items(f->c), before + (rc2 == CORRAL_OK ? 1 : 0));
        if (rc == CORRAL_OK && rc2 == CORRAL_OK && failed == 0) return;
    }
    fail_msg("corral_set never succeeded");
}

static void test_incr_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    set_ok(f->c, "ctr", "41");
    for (long k = 1; k < MAX_SWEEP; k++) {
        int64_t out = 99;
        arm(&f->alloc, k);
        int rc = corral_incr(f->c, "ctr", 3, 1, NULL, &out);
        long failed = disarm(&f->alloc);
        if (rc == CORRAL_OK) {
            expect_str(f->c, "ctr", "42");
            if (failed == 0) return;
            set_ok(f->c, "ctr", "41");
            continue;
        }
        if (rc != CORRAL_ENOMEM) fail_msg("k=%ld: rc %d, want ENOMEM", k, rc);
        assert_int_equal(out, 0);
        expect_str(f->c, "ctr", "41");
    }
    fail_msg("corral_incr never succeeded");
}

static void test_get_many_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "1");
    set_ok(f->c, "a:2", "2");
    corral_buf keys[3] = { { "a:1", 3 }, { "a:3", 3 }, { "a:2", 3 } };
    for (long k = 1; k < MAX_SWEEP; k++) {
        corral_value *out[3] = { (corral_value *)keys, (corral_value *)keys, (corral_value *)keys };
        size_t found = 99;
        arm(&f->alloc, k);
        int rc = corral_get_many(f->c, keys, 3, NULL, out, &found);
        long failed = disarm(&f->alloc);
        if (rc == CORRAL_OK) {
            assert_int_equal(found, 2);
            for (size_t i = 0; i < 3; i++)
                corral_value_unref(out[i]);
            if (failed == 0) return;
            continue;
        }
        if (rc != CORRAL_ENOMEM) fail_msg("k=%ld: rc %d, want ENOMEM", k, rc);
        for (size_t i = 0; i < 3; i++)
            assert_null(out[i]);
        assert_int_equal(found, 0);
    }
    fail_msg("corral_get_many never succeeded");
}

/* The header's exception to "no partial effects": the pairs before the failing one stay. */
static void test_set_many_enomem_leaves_a_written_prefix(void **state) {
    fixture *f = *state;
    corral_buf keys[4] = { { "m:a", 3 }, { "m:b", 3 }, { "m:c", 3 }, { "m:d", 3 } };
    corral_buf vals[4] = { { "1", 1 }, { "2", 1 }, { "3", 1 }, { "4", 1 } };
    for (long k = 1; k < MAX_SWEEP; k++) {
        assert_int_equal(corral_delete_many(f->c, keys, 4, NULL, NULL), CORRAL_OK);
        arm(&f->alloc, k);
        int rc = corral_set_many(f->c, keys, vals, 4, CORRAL_TTL_DEFAULT, NULL);
        long failed = disarm(&f->alloc);
        if (rc != CORRAL_OK && rc != CORRAL_ENOMEM) fail_msg("k=%ld: rc %d", k, rc);
        size_t written = 0;
        while (written < 4 && corral_has(f->c, keys[written].data, 3, NULL) == CORRAL_OK)
            written++;
        for (size_t i = written; i < 4; i++)
            if (corral_has(f->c, keys[i].data, 3, NULL) != CORRAL_MISS)
                fail_msg("k=%ld: pair %zu written after a missing one", k, i);
        if (rc == CORRAL_OK) assert_int_equal(written, 4);
        if (rc == CORRAL_OK && failed == 0) return;
    }
    fail_msg("corral_set_many never succeeded");
}

static void test_stats_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "1");
    set_ok(f->c, "b:1", "2");
    for (long k = 1; k < MAX_SWEEP; k++) {
        corral_stats_snapshot *s = (corral_stats_snapshot *)f;
        arm(&f->alloc, k);
        int rc = corral_stats(f->c, &s);
        long failed = disarm(&f->alloc);
        if (rc == CORRAL_OK) {
            assert_int_equal(s->total.items, 2);
            corral_stats_free(f->c, s);
            if (failed == 0) return;
            continue;
        }
        if (rc != CORRAL_ENOMEM) fail_msg("k=%ld: rc %d, want ENOMEM", k, rc);
        assert_null(s);
    }
    fail_msg("corral_stats never succeeded");
}

static void test_metrics_write_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    for (int i = 0; i < 40; i++) { /* enough text to grow the buffer several times */
        char key[16];
        snprintf(key, sizeof key, "p%02d:1", i);
        set_ok(f->c, key, "v");
    }
    for (long k = 1; k < MAX_SWEEP; k++) {
        char *text = (char *)f;
        size_t len = 99;
        arm(&f->alloc, k);
        int rc = corral_metrics_write(f->c, &text, &len);
        long failed = disarm(&f->alloc);
        if (rc == CORRAL_OK) {
            assert_non_null(strstr(text, "corral_cache_sets_total{prefix=\"p39\"} 1\n"));
            corral_free(f->c, text);
            if (failed == 0) return;
            continue;
        }
        if (rc != CORRAL_ENOMEM) fail_msg("k=%ld: rc %d, want ENOMEM", k, rc);
        assert_null(text);
        assert_int_equal(len, 0);
    }
    fail_msg("corral_metrics_write never succeeded");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_counting_allocator_gets_every_byte_back),
        T(test_stored_values_come_from_the_hooks),
        T(test_values_outliving_delete_are_freed_through_the_hooks),
        T(test_open_fails_cleanly_on_every_allocation_failure),
        T(test_set_fails_cleanly_on_every_allocation_failure),
        T(test_incr_fails_cleanly_on_every_allocation_failure),
        T(test_get_many_fails_cleanly_on_every_allocation_failure),
        T(test_set_many_enomem_leaves_a_written_prefix),
        T(test_stats_fails_cleanly_on_every_allocation_failure),
        T(test_metrics_write_fails_cleanly_on_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
