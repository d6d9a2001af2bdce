/*
 * store_suite.h - the store contract of store.h as one test suite, run against every store:
 * test_memory.c runs it on the memory store, test_redis.c on the Redis store.
 *
 * A test file defines a suite_target whose `open` returns a fresh, empty store wrapped in a
 * suite_fx, and lists STORE_SUITE_TESTS(&target) in its cmocka test array.
 *
 * Time: TTLs in these tests are counted in ticks, and `advance` lets ticks pass for the store's
 * entries. The memory store's tick is 1 ms of its fake clock. Redis expires keys by its own
 * clock, so its tick is 1 s and `advance` moves every key's expiry closer by that much on the
 * server (PTTL, then PEXPIRE or DEL, in one script): the store under test sends the same
 * commands as with real time, the elapsed wall time (milliseconds) stays far below a tick, and
 * a wrong TTL unit shows up as an entry that expires a thousand ticks late or early.
 *
 * Events: stores that report changes (store.h) set `has_events`; the checks of the events log
 * and of used_bytes run only for them. Every assertion of the memory store's original tests is
 * kept that way.
 *
 * Everything here is static: each test file includes it once.
 */
#ifndef CORRAL_TEST_STORE_SUITE_H
#define CORRAL_TEST_STORE_SUITE_H

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "value.h"
#include "store/store.h"

typedef struct suite_fx suite_fx;

struct suite_fx {
    corral__store *s;
    int64_t tick_ms; /* store milliseconds in one tick */
    bool has_events; /* the store reports changes: `events`, `used` and `entry_bytes` work */
    void (*advance)(suite_fx *f, int64_t ticks);
    long (*events)(suite_fx *f, corral__change why); /* count of that change so far */
    size_t (*used)(suite_fx *f);                     /* the store's used_bytes */
    size_t (*entry_bytes)(size_t key_len, size_t val_len);
    void (*close)(suite_fx *f); /* checks what the store can check, closes, frees */
    void *impl;
};

typedef struct suite_target {
    const char *name;
    /* Opens a fresh, empty store; `max_value_bytes` 0 means the store's default. */
    suite_fx *(*open)(struct suite_target *t, size_t max_value_bytes);
    void *ctx; /* the target's own (the Redis server) */
} suite_target;

static suite_fx *ss_open(void **state) {
    suite_target *t = *state;
    suite_fx *f = t->open(t, 0);
    assert_non_null(f);
    assert_non_null(f->s);
    return f;
}

/* ---- Helpers: keys are C strings; a key's metrics class is its first byte ---- */

static corral__skey ss_key(const char *k) {
    size_t n = strlen(k);
    return (corral__skey){
        .data = k, .len = n, .hash = corral__hash_bytes(k, n), .cls = (uint16_t)(unsigned char)k[0]
    };
}

static int64_t ss_ttl(suite_fx *f, int64_t ticks) {
    return ticks == CORRAL__NO_EXPIRY ? CORRAL__NO_EXPIRY : ticks * f->tick_ms;
}

static int ss_set_mode(suite_fx *f, const char *k, const char *v, int64_t ticks,
                       corral__set_mode m) {
    corral__skey sk = ss_key(k);
    return f->s->ops->set(f->s, &sk, v, strlen(v), ss_ttl(f, ticks), m, 0);
}

static int ss_set(suite_fx *f, const char *k, const char *v, int64_t ticks) {
    return ss_set_mode(f, k, v, ticks, CORRAL__SET_ALWAYS);
}

/* get on store `s`: its return code, with the reference checked and dropped. */
static int ss_store_get_rc(corral__store *s, const char *k) {
    corral__skey sk = ss_key(k);
    corral_value *v = (corral_value *)&sk; /* must be overwritten */
    int rc = s->ops->get(s, &sk, &v);
    if (rc == CORRAL_OK) {
        assert_non_null(v);
        corral_value_unref(v);
    } else {
        assert_null(v);
    }
    return rc;
}

/* Asserts that store `s` holds `want` under `k`. */
static void ss_store_expect(corral__store *s, const char *k, const char *want) {
    corral__skey sk = ss_key(k);
    corral_value *v = NULL;
    assert_int_equal(s->ops->get(s, &sk, &v), CORRAL_OK);
    assert_int_equal(corral_value_len(v), strlen(want));
    assert_string_equal(corral_value_data(v), want);
    corral_value_unref(v);
}

static int ss_get_rc(suite_fx *f, const char *k) {
    return ss_store_get_rc(f->s, k);
}

static void ss_expect_stored(suite_fx *f, const char *k, const char *want) {
    ss_store_expect(f->s, k, want);
}

static int ss_incr(suite_fx *f, const char *k, int64_t delta, int64_t *out) {
    corral__skey sk = ss_key(k);
    int64_t ignored;
    return f->s->ops->incr(f->s, &sk, delta, out ? out : &ignored);
}

static int ss_touch(suite_fx *f, const char *k, int64_t ticks) {
    corral__skey sk = ss_key(k);
    return f->s->ops->touch(f->s, &sk, ss_ttl(f, ticks));
}

static int ss_del(suite_fx *f, const char *k) {
    corral__skey sk = ss_key(k);
    return f->s->ops->del(f->s, &sk);
}

static int ss_lease_take(suite_fx *f, const char *k, const char *token, int64_t ticks) {
    corral__skey sk = ss_key(k);
    return f->s->ops->lease_acquire(f->s, &sk, token, strlen(token), ss_ttl(f, ticks));
}

static int ss_lease_give(suite_fx *f, const char *k, const char *token) {
    corral__skey sk = ss_key(k);
    return f->s->ops->lease_release(f->s, &sk, token, strlen(token));
}

static long ss_events(suite_fx *f, corral__change why) {
    assert_true(f->has_events);
    return f->events(f, why);
}

/* ---- Basic operations ---- */

static void test_store_get_returns_the_stored_bytes(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set(f, "k", "hello", CORRAL__NO_EXPIRY), CORRAL_OK);
    corral__skey sk = ss_key("k");
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &v), CORRAL_OK);
    assert_int_equal(corral_value_len(v), 5);
    assert_memory_equal(corral_value_data(v), "hello", 6); /* NUL-terminated */
    corral_value_unref(v);
    assert_int_equal(ss_get_rc(f, "other"), CORRAL_MISS);
    /* Binary bytes, NULs included, round-trip. */
    corral__skey bk = ss_key("bin");
    assert_int_equal(
        f->s->ops->set(f->s, &bk, "a\0b\xff", 4, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
        CORRAL_OK);
    assert_int_equal(f->s->ops->get(f->s, &bk, &v), CORRAL_OK);
    assert_int_equal(corral_value_len(v), 4);
    assert_memory_equal(corral_value_data(v), "a\0b\xff", 4);
    corral_value_unref(v);
    f->close(f);
}

static void test_store_get_into_copies_or_reports_the_needed_length(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set(f, "k", "hello", CORRAL__NO_EXPIRY), CORRAL_OK);
    corral__skey sk = ss_key("k"), missing = ss_key("nope");
    char buf[16] = { 0 };
    size_t len = 99, hlen;
    assert_int_equal(f->s->ops->get_into(f->s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen),
                     CORRAL_OK);
    assert_int_equal(len, 5);
    assert_int_equal(hlen, 0);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(f->s->ops->get_into(f->s, &sk, buf, 4, &len, NULL, 0, &hlen), CORRAL_ENOSPC);
    assert_int_equal(len, 5);
    assert_int_equal(f->s->ops->get_into(f->s, &missing, buf, sizeof buf, &len, NULL, 0, &hlen),
                     CORRAL_MISS);
    assert_int_equal(len, 0);
    f->close(f);
}

static void test_store_add_writes_only_when_the_key_is_absent_or_expired(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set_mode(f, "k", "one", 100, CORRAL__SET_NX), CORRAL_OK);
    assert_int_equal(ss_set_mode(f, "k", "two", 100, CORRAL__SET_NX), CORRAL_EXISTS);
    ss_expect_stored(f, "k", "one");
    f->advance(f, 100);
    assert_int_equal(ss_set_mode(f, "k", "three", 100, CORRAL__SET_NX), CORRAL_OK);
    ss_expect_stored(f, "k", "three");
    if (f->has_events) {
        assert_int_equal(ss_events(f, CORRAL__EXPIRED), 1);
        assert_int_equal(ss_events(f, CORRAL__ADDED), 2);
    }
    f->close(f);
}

static void test_store_set_xx_writes_only_when_the_key_is_present(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set_mode(f, "k", "one", 100, CORRAL__SET_XX), CORRAL_MISS);
    assert_int_equal(ss_get_rc(f, "k"), CORRAL_MISS);
    if (f->has_events) assert_int_equal(f->used(f), 0);
    assert_int_equal(ss_set(f, "k", "one", 100), CORRAL_OK);
    assert_int_equal(ss_set_mode(f, "k", "two", 100, CORRAL__SET_XX), CORRAL_OK);
    ss_expect_stored(f, "k", "two");
    if (f->has_events) {
        assert_int_equal(ss_events(f, CORRAL__REPLACED), 1);
        assert_int_equal(f->used(f), f->entry_bytes(1, 3));
    }
    f->close(f);
}

static void test_store_set_replaces_the_value_and_its_expiry(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set(f, "k", "old", 10), CORRAL_OK);
    assert_int_equal(ss_set(f, "k", "new", CORRAL__NO_EXPIRY), CORRAL_OK);
    f->advance(f, 10);
    ss_expect_stored(f, "k", "new"); /* a set without TTL drops the old expiry */
    assert_int_equal(ss_set(f, "k", "newer", 10), CORRAL_OK);
    f->advance(f, 10);
    assert_int_equal(ss_get_rc(f, "k"), CORRAL_MISS);
    f->close(f);
}

static void test_store_del_removes_a_live_entry_once(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set(f, "k", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(ss_del(f, "k"), CORRAL_OK);
    assert_int_equal(ss_get_rc(f, "k"), CORRAL_MISS);
    assert_int_equal(ss_del(f, "k"), CORRAL_MISS);
    if (f->has_events) {
        assert_int_equal(ss_events(f, CORRAL__DELETED), 1);
        assert_int_equal(f->used(f), 0);
    }
    f->close(f);
}

static void test_store_touch_moves_or_removes_the_expiry(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set(f, "k", "v", 1000), CORRAL_OK);
    f->advance(f, 900);
    assert_int_equal(ss_touch(f, "k", 1000), CORRAL_OK);
    f->advance(f, 900);
    ss_expect_stored(f, "k", "v");
    assert_int_equal(ss_touch(f, "k", CORRAL__NO_EXPIRY), CORRAL_OK);
    f->advance(f, 1000 * 1000);
    ss_expect_stored(f, "k", "v");
    assert_int_equal(ss_touch(f, "missing", 1000), CORRAL_MISS);
    assert_int_equal(ss_touch(f, "missing", CORRAL__NO_EXPIRY), CORRAL_MISS);
    assert_int_equal(ss_touch(f, "k", CORRAL__NO_EXPIRY), CORRAL_OK); /* already persistent */
    f->close(f);
}

static int ss_ttl_left(suite_fx *f, const char *k, int64_t *ms) {
    corral__skey sk = ss_key(k);
    return f->s->ops->ttl(f->s, &sk, ms);
}

/* `ms` is within the tick before `ticks` (a remote store's clock ran a little meanwhile). */
static void ss_assert_ticks_left(suite_fx *f, int64_t ms, int64_t ticks) {
    if (ms > ticks * f->tick_ms || ms <= (ticks - 1) * f->tick_ms)
        fail_msg("ttl %" PRId64 " ms, want about %" PRId64 " ticks of %" PRId64 " ms", ms, ticks,
                 f->tick_ms);
}

static void test_store_ttl_tells_the_time_left_and_changes_nothing(void **state) {
    suite_fx *f = ss_open(state);
    int64_t ms = 0;
    assert_int_equal(ss_set(f, "k", "v", 1000), CORRAL_OK);
    assert_int_equal(ss_ttl_left(f, "k", &ms), CORRAL_OK);
    ss_assert_ticks_left(f, ms, 1000);
    f->advance(f, 600);
    assert_int_equal(ss_ttl_left(f, "k", &ms), CORRAL_OK);
    ss_assert_ticks_left(f, ms, 400);
    assert_int_equal(ss_touch(f, "k", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(ss_ttl_left(f, "k", &ms), CORRAL_OK);
    assert_true(ms == CORRAL__NO_EXPIRY);
    assert_int_equal(ss_set(f, "e", "v", 10), CORRAL_OK);
    f->advance(f, 10);
    assert_int_equal(ss_ttl_left(f, "e", &ms), CORRAL_MISS); /* expired */
    assert_int_equal(ss_ttl_left(f, "missing", &ms), CORRAL_MISS);
    ss_expect_stored(f, "k", "v");
    f->close(f);
}

static void test_store_incr_adds_and_keeps_the_expiry(void **state) {
    suite_fx *f = ss_open(state);
    int64_t out = 0;
    assert_int_equal(ss_incr(f, "n", 1, &out), CORRAL_MISS);
    assert_int_equal(ss_get_rc(f, "n"), CORRAL_MISS); /* incr creates nothing */
    assert_int_equal(ss_set(f, "n", "10", 1000), CORRAL_OK);
    assert_int_equal(ss_incr(f, "n", 5, &out), CORRAL_OK);
    assert_int_equal(out, 15);
    assert_int_equal(ss_incr(f, "n", -20, &out), CORRAL_OK);
    assert_int_equal(out, -5);
    ss_expect_stored(f, "n", "-5");
    f->advance(f, 999);
    assert_int_equal(ss_incr(f, "n", 1, NULL), CORRAL_OK);
    ss_expect_stored(f, "n", "-4");
    f->advance(f, 1);
    assert_int_equal(ss_incr(f, "n", 1, &out), CORRAL_MISS);
    if (f->has_events) assert_int_equal(ss_events(f, CORRAL__REPLACED), 3);
    f->close(f);
}

static void test_store_incr_rejects_non_integers_and_overflow_without_change(void **state) {
    static const struct {
        const char *stored;
        int64_t delta;
        int rc;
        int64_t result;
    } cases[] = {
        { "", 1, CORRAL_ENOTINT, 0 },
        { "-", 1, CORRAL_ENOTINT, 0 },
        { "+1", 1, CORRAL_ENOTINT, 0 },
        { " 1", 1, CORRAL_ENOTINT, 0 },
        { "1 ", 1, CORRAL_ENOTINT, 0 },
        { "1.5", 1, CORRAL_ENOTINT, 0 },
        { "0x10", 1, CORRAL_ENOTINT, 0 },
        { "12345678901234567890", 1, CORRAL_ENOTINT, 0 }, /* 20 digits */
        { "9223372036854775808", 0, CORRAL_ERANGE, 0 },
        { "9223372036854775807", 1, CORRAL_ERANGE, 0 },
        { "-9223372036854775808", -1, CORRAL_ERANGE, 0 },
        { "-9223372036854775808", 0, CORRAL_OK, INT64_MIN },
        { "9223372036854775806", 1, CORRAL_OK, INT64_MAX },
        { "007", 1, CORRAL_OK, 8 },
        { "-0", 1, CORRAL_OK, 1 },
        { "-007", 0, CORRAL_OK, -7 },
        { "0", INT64_MIN, CORRAL_OK, INT64_MIN },
    };
    suite_fx *f = ss_open(state);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ss_set(f, "n", cases[i].stored, CORRAL__NO_EXPIRY), CORRAL_OK);
        long added = f->has_events ? ss_events(f, CORRAL__ADDED) : 0;
        int64_t out = 42;
        int rc = ss_incr(f, "n", cases[i].delta, &out);
        if (rc != cases[i].rc) fail_msg("case %zu (\"%s\"): rc %d", i, cases[i].stored, rc);
        if (rc == CORRAL_OK) {
            assert_int_equal(out, cases[i].result);
            char want[24];
            snprintf(want, sizeof want, "%" PRId64, cases[i].result);
            ss_expect_stored(f, "n", want);
        } else {
            assert_int_equal(out, 0);
            ss_expect_stored(f, "n", cases[i].stored);
            if (f->has_events) assert_int_equal(ss_events(f, CORRAL__ADDED), added);
        }
    }
    f->close(f);
}

static void test_store_refuses_values_over_max_value_without_change(void **state) {
    suite_target *t = *state;
    suite_fx *f = t->open(t, 50);
    assert_non_null(f);
    char big[52];
    memset(big, 'x', sizeof big);
    big[51] = '\0';
    assert_int_equal(ss_set(f, "k", "small", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(ss_set(f, "k", big, CORRAL__NO_EXPIRY), CORRAL_ETOOBIG); /* 51 > 50 */
    ss_expect_stored(f, "k", "small");
    corral__skey ks[2] = { ss_key("k"), ss_key("a") };
    corral_buf vals[2] = { { big, 51 }, { "1", 1 } };
    assert_int_equal(f->s->ops->set_many(f->s, ks, vals, 2, CORRAL__NO_EXPIRY, 0), CORRAL_ETOOBIG);
    assert_int_equal(ss_get_rc(f, "a"), CORRAL_MISS);
    ss_expect_stored(f, "k", "small");
    big[50] = '\0';
    assert_int_equal(ss_set(f, "k", big, CORRAL__NO_EXPIRY), CORRAL_OK); /* exactly the bound */
    f->close(f);
}

/* ---- Many-ops ---- */

static void test_store_many_ops_read_write_and_remove_batches(void **state) {
    suite_fx *f = ss_open(state);
    corral__skey ks[3] = { ss_key("a"), ss_key("b"), ss_key("c") };
    corral_buf vals[2] = { { "1", 1 }, { "22", 2 } };
    assert_int_equal(f->s->ops->set_many(f->s, ks, vals, 2, CORRAL__NO_EXPIRY, 0), CORRAL_OK);
    corral_value *out[3];
    assert_int_equal(f->s->ops->get_many(f->s, ks, 3, out), CORRAL_OK);
    assert_string_equal(corral_value_data(out[0]), "1");
    assert_string_equal(corral_value_data(out[1]), "22");
    assert_null(out[2]);
    corral_value_unref(out[0]);
    corral_value_unref(out[1]);
    size_t deleted = 0;
    assert_int_equal(f->s->ops->del_many(f->s, ks, 3, &deleted), CORRAL_OK);
    assert_int_equal(deleted, 2);
    if (f->has_events) assert_int_equal(f->used(f), 0);
    assert_int_equal(ss_get_rc(f, "a"), CORRAL_MISS);
    f->close(f);
}

static void test_store_batch_values_outlive_each_other_and_their_keys(void **state) {
    suite_fx *f = ss_open(state);
    corral__skey ks[2] = { ss_key("a"), ss_key("b") };
    corral_buf vals[2] = { { "first", 5 }, { "second", 6 } };
    assert_int_equal(f->s->ops->set_many(f->s, ks, vals, 2, CORRAL__NO_EXPIRY, 0), CORRAL_OK);
    corral_value *out[2];
    assert_int_equal(f->s->ops->get_many(f->s, ks, 2, out), CORRAL_OK);
    corral_value_unref(out[0]); /* the first goes; the second must not go with it */
    size_t deleted = 0;
    assert_int_equal(f->s->ops->del_many(f->s, ks, 2, &deleted), CORRAL_OK);
    corral_buf other = { "overwritten", 11 };
    assert_int_equal(f->s->ops->set_many(f->s, &ks[1], &other, 1, CORRAL__NO_EXPIRY, 0), CORRAL_OK);
    assert_int_equal(corral_value_len(out[1]), 6);
    assert_string_equal(corral_value_data(out[1]), "second"); /* bytes and their NUL intact */
    corral_value_unref(out[1]);
    f->close(f);
}

static void test_store_set_many_applies_the_ttl_to_every_pair(void **state) {
    suite_fx *f = ss_open(state);
    corral__skey ks[2] = { ss_key("a"), ss_key("b") };
    corral_buf vals[2] = { { "1", 1 }, { "2", 1 } };
    assert_int_equal(f->s->ops->set_many(f->s, ks, vals, 2, ss_ttl(f, 100), 0), CORRAL_OK);
    f->advance(f, 99);
    ss_expect_stored(f, "a", "1");
    ss_expect_stored(f, "b", "2");
    f->advance(f, 1);
    assert_int_equal(ss_get_rc(f, "a"), CORRAL_MISS);
    assert_int_equal(ss_get_rc(f, "b"), CORRAL_MISS);
    f->close(f);
}

/* More keys than one batch command of a remote store carries (Redis: 512 per MGET/DEL). */
#define SS_BIG_BATCH 1200

static void test_store_many_ops_handle_large_batches(void **state) {
    suite_fx *f = ss_open(state);
    corral__skey *ks = calloc(SS_BIG_BATCH, sizeof *ks);
    corral_buf *vals = calloc(SS_BIG_BATCH, sizeof *vals);
    corral_value **out = calloc(SS_BIG_BATCH, sizeof *out);
    char(*names)[16] = calloc(SS_BIG_BATCH, sizeof *names);
    assert_true(ks && vals && out && names);
    for (size_t i = 0; i < SS_BIG_BATCH; i++) {
        snprintf(names[i], sizeof names[i], "big:%zu", i);
        ks[i] = ss_key(names[i]);
        vals[i] = (corral_buf){ names[i], strlen(names[i]) };
    }
    /* Every other key is written, so hits and misses interleave across batch boundaries. */
    corral__skey *even = calloc(SS_BIG_BATCH / 2, sizeof *even);
    corral_buf *even_vals = calloc(SS_BIG_BATCH / 2, sizeof *even_vals);
    assert_true(even && even_vals);
    for (size_t i = 0; i < SS_BIG_BATCH / 2; i++) {
        even[i] = ks[2 * i];
        even_vals[i] = vals[2 * i];
    }
    assert_int_equal(
        f->s->ops->set_many(f->s, even, even_vals, SS_BIG_BATCH / 2, CORRAL__NO_EXPIRY, 0),
        CORRAL_OK);
    assert_int_equal(f->s->ops->get_many(f->s, ks, SS_BIG_BATCH, out), CORRAL_OK);
    for (size_t i = 0; i < SS_BIG_BATCH; i++) {
        if (i % 2) {
            assert_null(out[i]);
        } else {
            assert_non_null(out[i]);
            assert_string_equal(corral_value_data(out[i]), names[i]);
            corral_value_unref(out[i]);
        }
    }
    size_t deleted = 0;
    assert_int_equal(f->s->ops->del_many(f->s, ks, SS_BIG_BATCH, &deleted), CORRAL_OK);
    assert_int_equal(deleted, SS_BIG_BATCH / 2);
    free(even);
    free(even_vals);
    free(names);
    free(out);
    free(vals);
    free(ks);
    f->close(f);
}

/* ---- clear ---- */

static void test_store_clear_removes_everything_as_deleted(void **state) {
    suite_fx *f = ss_open(state);
    char k[16];
    for (int i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "key%d", i);
        assert_int_equal(ss_set(f, k, "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    }
    assert_int_equal(ss_lease_take(f, "key1", "me", 1000), CORRAL_OK);
    assert_int_equal(f->s->ops->clear(f->s), CORRAL_OK);
    if (f->has_events) {
        assert_int_equal(f->used(f), 0);
        assert_int_equal(ss_events(f, CORRAL__DELETED), 301);
    }
    assert_int_equal(ss_get_rc(f, "key7"), CORRAL_MISS);
    assert_int_equal(ss_lease_take(f, "key1", "you", 1000), CORRAL_OK);
    f->close(f);
}

/* ---- Expiry ---- */

typedef int (*ss_expired_op)(suite_fx *f);

static int ss_op_get(suite_fx *f) {
    return ss_get_rc(f, "k");
}
static int ss_op_get_into(suite_fx *f) {
    corral__skey sk = ss_key("k");
    char buf[8];
    size_t len = 7, hlen;
    int rc = f->s->ops->get_into(f->s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen);
    assert_int_equal(len, 0);
    return rc;
}
static int ss_op_add(suite_fx *f) {
    return ss_set_mode(f, "k", "new", CORRAL__NO_EXPIRY, CORRAL__SET_NX);
}
static int ss_op_set_xx(suite_fx *f) {
    return ss_set_mode(f, "k", "new", CORRAL__NO_EXPIRY, CORRAL__SET_XX);
}
static int ss_op_incr(suite_fx *f) {
    return ss_incr(f, "k", 1, NULL);
}
static int ss_op_touch(suite_fx *f) {
    return ss_touch(f, "k", 1000);
}
static int ss_op_del(suite_fx *f) {
    return ss_del(f, "k");
}
static int ss_op_get_many(suite_fx *f) {
    corral__skey sk = ss_key("k");
    corral_value *v = (corral_value *)&sk;
    int rc = f->s->ops->get_many(f->s, &sk, 1, &v);
    assert_int_equal(rc, CORRAL_OK);
    assert_null(v);
    return CORRAL_MISS;
}

static void test_store_expired_entry_is_never_returned(void **state) {
    static const struct {
        ss_expired_op op;
        int rc;
        bool reclaims; /* the memory store reclaims the entry it found expired */
    } ops[] = { { ss_op_get, CORRAL_MISS, true },  { ss_op_get_into, CORRAL_MISS, true },
                { ss_op_add, CORRAL_OK, true },    { ss_op_set_xx, CORRAL_MISS, true },
                { ss_op_incr, CORRAL_MISS, true }, { ss_op_touch, CORRAL_MISS, true },
                { ss_op_del, CORRAL_MISS, true },  { ss_op_get_many, CORRAL_MISS, false } };
    suite_fx *f = ss_open(state);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        assert_int_equal(ss_set(f, "k", "7", 100), CORRAL_OK);
        f->advance(f, 99);
        ss_expect_stored(f, "k", "7");
        f->advance(f, 1); /* expires at exactly set + ttl */
        long expired = f->has_events ? ss_events(f, CORRAL__EXPIRED) : 0;
        assert_int_equal(ops[i].op(f), ops[i].rc);
        if (f->has_events && ops[i].reclaims)
            assert_int_equal(ss_events(f, CORRAL__EXPIRED), expired + 1); /* reclaimed too */
        if (ops[i].op == ss_op_add) ss_expect_stored(f, "k", "new");
    }
    f->close(f);
}

/* ---- Leases ---- */

static void test_store_lease_is_released_only_by_its_owner(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_lease_take(f, "k", "owner", 1000), CORRAL_OK);
    assert_int_equal(ss_lease_take(f, "k", "other", 1000), CORRAL_EXISTS);
    assert_int_equal(ss_lease_give(f, "k", "other"), CORRAL_MISS);
    assert_int_equal(ss_lease_give(f, "k", "owne"), CORRAL_MISS);
    assert_int_equal(ss_lease_give(f, "k", "owner"), CORRAL_OK);
    assert_int_equal(ss_lease_give(f, "k", "owner"), CORRAL_MISS);
    assert_int_equal(ss_lease_take(f, "k", "other", 1000), CORRAL_OK);
    f->close(f);
}

static void test_store_lease_expires_and_can_be_taken_again(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_lease_take(f, "k", "owner", 100), CORRAL_OK);
    f->advance(f, 100);
    assert_int_equal(ss_lease_take(f, "k", "other", 100), CORRAL_OK);
    assert_int_equal(ss_lease_give(f, "k", "owner"), CORRAL_MISS); /* no longer ours */
    f->advance(f, 100);
    assert_int_equal(ss_lease_give(f, "k", "other"), CORRAL_MISS); /* expired */
    if (f->has_events) assert_int_equal(f->used(f), 0);
    corral__skey sk = ss_key("k");
    assert_int_equal(f->s->ops->lease_acquire(f->s, &sk, "t", 1, CORRAL__NO_EXPIRY), CORRAL_EINVAL);
    f->close(f);
}

static void test_store_lease_lives_apart_from_values(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_lease_take(f, "k", "token", 1000), CORRAL_OK);
    assert_int_equal(ss_get_rc(f, "k"), CORRAL_MISS);
    assert_int_equal(ss_del(f, "k"), CORRAL_MISS);
    assert_int_equal(ss_set_mode(f, "k", "value", 1000, CORRAL__SET_NX), CORRAL_OK);
    ss_expect_stored(f, "k", "value");
    assert_int_equal(ss_del(f, "k"), CORRAL_OK);
    assert_int_equal(ss_lease_give(f, "k", "token"), CORRAL_OK);
    f->close(f);
}

/* ---- Threads ---- */

#define SS_THREADS 4

typedef struct ss_incr_arg {
    suite_fx *f;
    pthread_barrier_t *start;
    int n;
} ss_incr_arg;

static void *ss_incr_main(void *p) {
    ss_incr_arg *a = p;
    int rc = pthread_barrier_wait(a->start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    for (int i = 0; i < a->n; i++)
        assert_int_equal(ss_incr(a->f, "ctr", 1, NULL), CORRAL_OK);
    return NULL;
}

static void test_store_concurrent_incr_loses_no_update(void **state) {
    suite_fx *f = ss_open(state);
    assert_int_equal(ss_set(f, "ctr", "0", CORRAL__NO_EXPIRY), CORRAL_OK);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, SS_THREADS), 0);
    ss_incr_arg a = { .f = f, .start = &start, .n = 2000 };
    pthread_t t[SS_THREADS];
    for (unsigned i = 0; i < SS_THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, ss_incr_main, &a), 0);
    for (unsigned i = 0; i < SS_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    char want[16];
    snprintf(want, sizeof want, "%d", SS_THREADS * a.n);
    ss_expect_stored(f, "ctr", want);
    f->close(f);
}

/* The suite's tests, for a cmocka test array; `target` is a suite_target *. */
#define STORE_SUITE_TESTS(target)                                                               \
    cmocka_unit_test_prestate(test_store_get_returns_the_stored_bytes, (target)),               \
        cmocka_unit_test_prestate(test_store_get_into_copies_or_reports_the_needed_length,      \
                                  (target)),                                                    \
        cmocka_unit_test_prestate(test_store_add_writes_only_when_the_key_is_absent_or_expired, \
                                  (target)),                                                    \
        cmocka_unit_test_prestate(test_store_set_xx_writes_only_when_the_key_is_present,        \
                                  (target)),                                                    \
        cmocka_unit_test_prestate(test_store_set_replaces_the_value_and_its_expiry, (target)),  \
        cmocka_unit_test_prestate(test_store_del_removes_a_live_entry_once, (target)),          \
        cmocka_unit_test_prestate(test_store_touch_moves_or_removes_the_expiry, (target)),      \
        cmocka_unit_test_prestate(test_store_ttl_tells_the_time_left_and_changes_nothing,       \
                                  (target)),                                                    \
        cmocka_unit_test_prestate(test_store_incr_adds_and_keeps_the_expiry, (target)),         \
        cmocka_unit_test_prestate(                                                              \
            test_store_incr_rejects_non_integers_and_overflow_without_change, (target)),        \
        cmocka_unit_test_prestate(test_store_refuses_values_over_max_value_without_change,      \
                                  (target)),                                                    \
        cmocka_unit_test_prestate(test_store_many_ops_read_write_and_remove_batches, (target)), \
        cmocka_unit_test_prestate(test_store_batch_values_outlive_each_other_and_their_keys,    \
                                  (target)),                                                    \
        cmocka_unit_test_prestate(test_store_set_many_applies_the_ttl_to_every_pair, (target)), \
        cmocka_unit_test_prestate(test_store_many_ops_handle_large_batches, (target)),          \
        cmocka_unit_test_prestate(test_store_clear_removes_everything_as_deleted, (target)),    \
        cmocka_unit_test_prestate(test_store_expired_entry_is_never_returned, (target)),        \
        cmocka_unit_test_prestate(test_store_lease_is_released_only_by_its_owner, (target)),    \
        cmocka_unit_test_prestate(test_store_lease_expires_and_can_be_taken_again, (target)),   \
        cmocka_unit_test_prestate(test_store_lease_lives_apart_from_values, (target)),          \
        cmocka_unit_test_prestate(test_store_concurrent_incr_loses_no_update, (target))

#endif /* CORRAL_TEST_STORE_SUITE_H */
