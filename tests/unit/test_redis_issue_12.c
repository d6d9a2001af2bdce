/*
 * test_redis_issue_12.c - regression tests of issue 12's library defects, found by driving the
 * Redis store from several processes, against a real redis-server on a free port.
 *
 * "Another process" is another handle on the same server: handles share nothing but Redis,
 * exactly as processes do. Where a test needs two threads to meet at one point, it holds Redis
 * still (CLIENT PAUSE WRITE: writes wait, reads go on) and polls what the server or the handle
 * reports (blocked clients, the waiters counter), never a fixed sleep.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral/corral.h"
#include "redis_server.h"

#define DEADLINE_NS (15ull * 1000000000ull)

/* An integer field ("blocked_clients") of the server's INFO text. */
static long long info_field(const char *section, const char *field) {
    redisReply *r = redis_server_cmd(&srv, "INFO %s", section);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char needle[64];
    int n = snprintf(needle, sizeof needle, "%s:", field);
    assert_true(n > 0 && n < (int)sizeof needle);
    const char *at = strstr(r->str, needle);
    assert_non_null(at);
    long long v = strtoll(at + n, NULL, 10);
    freeReplyObject(r);
    return v;
}

/* ---- get_or_set with no grace never serves a stale value ---- */

/* The handles' shared fake clock, in ns; producers move it as if they took 100 ms. */
static _Atomic uint64_t fake_now_ns;

static uint64_t fake_clock(void *ctx) {
    (void)ctx;
    return atomic_load(&fake_now_ns);
}

/* Random bits of 0: XFetch's draw is then at its largest, so a value is due for early refresh
 * long before it expires (its lead is capped at the TTL). */
static uint64_t zero_rand(void *ctx) {
    (void)ctx;
    return 0;
}

static _Atomic int produced;

static int produce(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)arg, (void)key, (void)key_len;
    atomic_fetch_add(&fake_now_ns, 100 * 1000000ull);
    char v[16];
    int n = snprintf(v, sizeof v, "v%d", atomic_fetch_add(&produced, 1) + 1);
    return corral_result_set(out, v, (size_t)n);
}

typedef struct caller {
    corral *c;
    corral_load_opts o;
    int rc;
    char got[16];
} caller;

static void *call_get_or_set(void *arg) {
    caller *k = arg;
    corral_value *v = NULL;
    k->rc = corral_get_or_set(k->c, "page", 4, produce, NULL, &k->o, &v);
    if (v) {
        size_t n = corral_value_len(v);
        if (n >= sizeof k->got) n = sizeof k->got - 1;
        memcpy(k->got, corral_value_data(v), n);
        k->got[n] = '\0';
    }
    corral_value_unref(v);
    return NULL;
}

static uint64_t load_waiters(corral *c) {
    corral_stats_snapshot *s = NULL;
    assert_int_equal(corral_stats(c, &s), CORRAL_OK);
    uint64_t n = s->total.load_waiters;
    corral_stats_free(c, s);
    return n;
}

/* Caller X refreshes a value early while another process holds the key's lease (X keeps
 * serving its value: CORRAL_OK). Caller Y, whose clock has passed the value's expiry and who
 * asked for no grace, waits on X's flight. Y must not get X's stale value: it waits for a fresh
 * one (here: the lease is let go, so Y makes it). Before the fix Y got CORRAL_STALE. */
static void test_issue_12_get_or_set_without_grace_never_returns_stale(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    atomic_store(&fake_now_ns, 1000000ull * 1000000000ull);
    atomic_store(&produced, 0);
    corral_options o;
    corral_options_init(&o);
    o.store = "redis";
    o.redis.hosts = srv.hosts;
    o.key_prefix = "i12";
    o.now_ns = fake_clock;
    o.rand64 = zero_rand;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    caller x = { .c = c }, y = { .c = c };
    corral_load_opts_init(&x.o);
    x.o.ttl_ms = 60000; /* XFetch's lead: min(100 ms * 36.7, TTL) = 3.67 s before expiry */
    y.o = x.o;
    y.o.wait_timeout_ms = 5000;

    call_get_or_set(&x); /* v1, expiring at t0 + 100 ms + 60 s */
    assert_int_equal(x.rc, CORRAL_OK);
    assert_string_equal(x.got, "v1");
    uint64_t expiry_ns = atomic_load(&fake_now_ns) + 60000 * 1000000ull;
    char pk[64];
    size_t pk_len;
    assert_int_equal(corral_make_key(c, "page", 4, NULL, pk, sizeof pk, &pk_len), CORRAL_OK);
    redis_server_ok(&srv, "SET %b\x1flease other PX 60000", pk, pk_len); /* another process */
    redis_server_ok(&srv, "CLIENT PAUSE 30000 WRITE");

    atomic_store(&fake_now_ns, expiry_ns - 1000 * 1000000ull); /* due for early refresh */
    pthread_t tx, ty;
    assert_int_equal(pthread_create(&tx, NULL, call_get_or_set, &x), 0);
    uint64_t deadline =
        redis_fx_now_ns() + DEADLINE_NS; /* X leads, its lease request held by Redis */
    while (info_field("clients", "blocked_clients") != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the refresh never asked for the lease");
    atomic_store(&fake_now_ns, expiry_ns + 1000 * 1000000ull); /* v1 expired, for Y */
    assert_int_equal(pthread_create(&ty, NULL, call_get_or_set, &y), 0);
    while (load_waiters(c) != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the second caller never waited on the first");
    redis_server_ok(&srv, "CLIENT UNPAUSE");
    assert_int_equal(pthread_join(tx, NULL), 0);
    redis_server_ok(&srv, "DEL %b\x1flease", pk, pk_len); /* the other process is done */
    assert_int_equal(pthread_join(ty, NULL), 0);

    assert_int_equal(x.rc, CORRAL_OK); /* X still had v1 before its expiry */
    assert_string_equal(x.got, "v1");
    assert_int_equal(y.rc, CORRAL_OK);
    assert_string_equal(y.got, "v2");
    corral_close(c);
}

/* ---- A bust reaches this process's near caches before it returns ---- */

/* A counter ("near_live") of the handle's Prometheus text. */
static unsigned long long counter(corral *c, const char *name) {
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(corral_metrics_write(c, &text, &len), CORRAL_OK);
    char needle[96];
    int n = snprintf(needle, sizeof needle, "\ncorral_redis_%s ", name);
    assert_true(n > 0 && n < (int)sizeof needle);
    const char *at = strstr(text, needle);
    if (!at) fail_msg("no %s in the metrics", name);
    unsigned long long v = strtoull(at + n, NULL, 10);
    corral_free(c, text);
    return v;
}

static corral *open_url(const char *query) {
    char url[256];
    int n = snprintf(url, sizeof url, "redis://%s?key_prefix=i12&%s", srv.hosts, query);
    assert_true(n > 0 && n < (int)sizeof url);
    corral *c = NULL;
    corral_error err = { 0 };
    if (corral_open(&c, url, &err) != CORRAL_OK) fail_msg("open %s: %s", url, err.msg);
    return c;
}

/* A handle with a near cache whose tracker is subscribed (until then L1 is bypassed). */
static corral *open_near(void) {
    corral *c = open_url("near_cache=1MB");
    assert_int_equal(corral_has(c, "probe", 5, NULL), CORRAL_MISS); /* starts the tracker */
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (counter(c, "near_live") != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the tracker never subscribed");
    return c;
}

/* Keeps the near caches' trackers busy for a while: another client changes 5000 keys under the
 * prefix in one script, and Redis reports each to every tracker, ahead of what comes next. */
static void flood_trackers(void) {
    redis_server_ok(&srv, "EVAL %s 0",
                    "for i = 1, 5000 do redis.call('SET', 'i12:1:flood' .. i, 'x') end return 1");
}

/* Handle `c` (near cache) holds a tagged value and its tag's version in L1; another handle of
 * the process busts the tag. The read right after the bust returns must miss. Redis's report of
 * the change is one hop away, here queued behind a flood of reports: before the fix the read hit
 * L1 (and 195 of 200 times without the flood). */
static void test_issue_12_tag_bust_reaches_near_caches_of_the_process_at_once(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_near();
    corral *buster = open_url("timeout=60");
    const char *tags[1] = { "featured" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = 1;
    for (int trial = 0; trial < 20; trial++) {
        assert_int_equal(corral_set(c, "card", 4, "v1", 2, CORRAL_TTL_FOREVER, &call), CORRAL_OK);
        corral_value *v = NULL;
        uint64_t deadline =
            redis_fx_now_ns() + DEADLINE_NS; /* until the value and the version are near */
        unsigned long long hits = counter(c, "near_hits_total");
        while (counter(c, "near_hits_total") < hits + 2) {
            assert_int_equal(corral_get(c, "card", 4, NULL, &v), CORRAL_OK);
            corral_value_unref(v);
            if (redis_fx_now_ns() > deadline)
                fail_msg("the value was never served from the near cache");
        }
        flood_trackers();
        assert_int_equal(corral_tag_bust(buster, "featured"), CORRAL_OK);
        int rc = corral_get(c, "card", 4, NULL, &v);
        corral_value_unref(v);
        if (rc != CORRAL_MISS) fail_msg("trial %d: busted value served (rc %d)", trial, rc);
    }
    corral_close(buster);
    corral_close(c);
}

/* The same for plain writes, both ways between two near caches of the process. */
static void test_issue_12_writes_reach_near_caches_of_the_process_at_once(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *a = open_near(), *b = open_near();
    for (int trial = 0; trial < 20; trial++) {
        corral *writer = trial % 2 ? a : b, *reader = trial % 2 ? b : a;
        char val[16];
        int n = snprintf(val, sizeof val, "v%d", trial);
        assert_int_equal(corral_set(writer, "k", 1, val, (size_t)n, CORRAL_TTL_FOREVER, NULL),
                         CORRAL_OK);
        corral_value *v = NULL;
        uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS; /* until the reader serves it near */
        unsigned long long hits = counter(reader, "near_hits_total");
        while (counter(reader, "near_hits_total") == hits) {
            assert_int_equal(corral_get(reader, "k", 1, NULL, &v), CORRAL_OK);
            corral_value_unref(v);
            if (redis_fx_now_ns() > deadline)
                fail_msg("the value was never served from the near cache");
        }
        flood_trackers();
        assert_int_equal(corral_delete(writer, "k", 1, NULL), CORRAL_OK);
        int rc = corral_get(reader, "k", 1, NULL, &v);
        corral_value_unref(v);
        if (rc != CORRAL_MISS) fail_msg("trial %d: deleted value served (rc %d)", trial, rc);
    }
    corral_close(b);
    corral_close(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_12_get_or_set_without_grace_never_returns_stale),
        cmocka_unit_test(test_issue_12_tag_bust_reaches_near_caches_of_the_process_at_once),
        cmocka_unit_test(test_issue_12_writes_reach_near_caches_of_the_process_at_once),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
