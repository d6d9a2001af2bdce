/*
 * test_redis_near.c - the near cache (src/store/tiered.c): a memory store in front of Redis,
 * invalidated by Redis client-side caching, against a real redis-server.
 *
 * Invalidations travel through Redis to the handle's tracker thread, so a test that changes a
 * key elsewhere polls the handle, with a deadline, until it sees the change: the assertion is
 * that it does, where a near cache without invalidation would serve the old value forever (the
 * tests write without expiry). Before filling, a test waits for the tracker to be subscribed
 * (corral_redis_near_live 1); until then the near cache is bypassed by design.
 *
 * A silent tracker connection is made by stopping the server (SIGSTOP): the kernel keeps the
 * connection up, so only the tracker's PING deadline can find it. The tests poll the store's
 * counters until the tracker gives up and, after SIGCONT, subscribes again.
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
#include "envelope.h"
#include "key.h"
#include "value.h"
#include "store/redis.h"
#include "store/tiered.h"
#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>

#define DEADLINE_NS (15ull * 1000000000ull)

/* A handle with a near cache on the test server, its tracker subscribed. */
static corral *open_near(const char *extra) {
    corral *c = redis_fx_open(&srv, "?near_cache=1MB&key_prefix=n&command_timeout=10%s", extra);
    assert_int_equal(redis_fx_counter(c, "near_live"), 0); /* opening did no I/O */
    redis_fx_wait_live(c); /* the first read starts the tracker, on its own thread */
    return c;
}

/* The value of `key`, malloc'd, or NULL on a miss. */
static char *get_str(corral *c, const char *key) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    assert_true(rc == CORRAL_OK || rc == CORRAL_MISS);
    if (rc == CORRAL_MISS) return NULL;
    size_t n = corral_value_len(v);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, corral_value_data(v), n + 1);
    corral_value_unref(v);
    return s;
}

static void expect_get(corral *c, const char *key, const char *want) {
    char *got = get_str(c, key);
    if (!got) fail_msg("%s: miss, want '%s'", key, want);
    assert_string_equal(got, want);
    free(got);
}

/* Polls until `key` reads `want` (NULL: a miss), or fails at the deadline. */
static void eventually(corral *c, const char *key, const char *want) {
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    for (;;) {
        char *got = get_str(c, key);
        bool same = want ? got && strcmp(got, want) == 0 : got == NULL;
        free(got);
        if (same) return;
        if (redis_fx_now_ns() > deadline)
            fail_msg("%s never read '%s'", key, want ? want : "(miss)");
    }
}

static void set_forever(corral *c, const char *key, const char *val) {
    assert_int_equal(corral_set(c, key, strlen(key), val, strlen(val), CORRAL_TTL_FOREVER, NULL),
                     CORRAL_OK);
}

/* Waits until Redis has reported `n` changed keys to the handle: its own writes come back too,
 * and a test that counts near hits must not have one dropped under it. */
static void settle(corral *c, unsigned long long n) {
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (redis_fx_counter(c, "near_invalidations_total") < n)
        if (redis_fx_now_ns() > deadline) fail_msg("the handle's own writes were never reported");
}

static void setup_each(void) {
    redis_server_ok(&srv, "FLUSHALL");
}

/* ---- Hits ---- */

static void test_near_serves_repeated_reads_from_memory(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "k", "v1");
    settle(c, 1);
    expect_get(c, "k", "v1"); /* from Redis, then kept near */
    unsigned long long before = redis_fx_counter(c, "near_hits_total");
    for (int i = 0; i < 3; i++)
        expect_get(c, "k", "v1");
    assert_int_equal(redis_fx_counter(c, "near_hits_total") - before, 3);
    assert_true(redis_fx_counter(c, "near_fills_total") >= 1);
    char buf[8];
    size_t len = 0;
    assert_int_equal(corral_get_into(c, "k", 1, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "v1", 2);
    assert_int_equal(redis_fx_counter(c, "near_hits_total") - before, 4);
    corral_close(c);
}

static void test_near_get_many_serves_near_hits_and_reads_the_rest(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "a", "1");
    set_forever(c, "b", "2");
    settle(c, 2);
    expect_get(c, "a", "1"); /* only a is near */
    corral_buf keys[3] = { { "a", 1 }, { "b", 1 }, { "z", 1 } };
    corral_value *out[3];
    size_t found = 0;
    unsigned long long hits = redis_fx_counter(c, "near_hits_total");
    assert_int_equal(corral_get_many(c, keys, 3, NULL, out, &found), CORRAL_OK);
    assert_int_equal(found, 2);
    assert_string_equal(corral_value_data(out[0]), "1");
    assert_string_equal(corral_value_data(out[1]), "2");
    assert_null(out[2]);
    corral_value_unref(out[0]);
    corral_value_unref(out[1]);
    assert_int_equal(redis_fx_counter(c, "near_hits_total") - hits, 1);
    corral_close(c);
}

static void test_near_get_many_fills_the_near_cache(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "a", "1");
    set_forever(c, "b", "2");
    settle(c, 2);
    corral_buf keys[3] = { { "a", 1 }, { "b", 1 }, { "z", 1 } };
    corral_value *out[3];
    size_t found = 0;
    unsigned long long fills = redis_fx_counter(c, "near_fills_total");
    unsigned long long trips = redis_fx_counter(c, "round_trips_total");
    assert_int_equal(corral_get_many(c, keys, 3, NULL, out, &found), CORRAL_OK);
    assert_int_equal(found, 2);
    assert_string_equal(corral_value_data(out[0]), "1");
    assert_string_equal(corral_value_data(out[1]), "2");
    assert_null(out[2]);
    corral_value_unref(out[0]);
    corral_value_unref(out[1]);
    assert_int_equal(redis_fx_counter(c, "round_trips_total") - trips,
                     1); /* MGET and PTTLs, pipelined */
    assert_int_equal(redis_fx_counter(c, "near_fills_total") - fills, 2);
    unsigned long long hits = redis_fx_counter(c, "near_hits_total");
    expect_get(c, "a", "1");
    expect_get(c, "b", "2");
    assert_int_equal(redis_fx_counter(c, "near_hits_total") - hits, 2);
    assert_int_equal(redis_fx_counter(c, "round_trips_total") - trips, 1);
    corral_close(c);
}

/* ---- Invalidation ---- */

static void test_near_write_by_another_client_reaches_the_near_cache(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "k", "v1");
    expect_get(c, "k", "v1");
    expect_get(c, "k", "v1"); /* a near hit now */
    redis_server_ok(&srv, "SET %s %s", "n:1:k", "from-cli");
    eventually(c, "k", "from-cli");
    assert_true(redis_fx_counter(c, "near_invalidations_total") >= 1);
    corral_close(c);
}

static void test_near_write_by_another_corral_process_reaches_the_near_cache(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    corral *other = redis_fx_open(&srv, "?key_prefix=n");
    set_forever(other, "k", "v1");
    expect_get(c, "k", "v1");
    set_forever(other, "k", "v2");
    eventually(c, "k", "v2");
    assert_int_equal(corral_delete(other, "k", 1, NULL), CORRAL_OK);
    eventually(c, "k", NULL);
    corral_close(other);
    corral_close(c);
}

static void test_near_own_writes_are_read_at_once(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "k", "v1");
    expect_get(c, "k", "v1");
    set_forever(c, "k", "v2");
    expect_get(c, "k", "v2"); /* no waiting on the invalidation */
    assert_int_equal(corral_incr(c, "k", 1, 1, NULL, NULL), CORRAL_ENOTINT);
    set_forever(c, "n", "1");
    expect_get(c, "n", "1");
    assert_int_equal(corral_incr(c, "n", 1, 1, NULL, NULL), CORRAL_OK);
    expect_get(c, "n", "2");
    assert_int_equal(corral_delete(c, "n", 1, NULL), CORRAL_OK);
    assert_null(get_str(c, "n"));
    corral_close(c);
}

static void test_near_flush_of_the_database_empties_the_near_cache(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "k", "v1");
    expect_get(c, "k", "v1");
    redis_server_ok(&srv, "FLUSHALL"); /* a nil invalidation */
    eventually(c, "k", NULL);
    corral_close(c);
}

/* The tracker's connection dies: the invalidations sent meanwhile are lost, so the near cache
 * must be flushed and the subscription made again. */
static void test_near_lost_tracking_connection_flushes_and_resubscribes(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "k", "v1");
    expect_get(c, "k", "v1");
    expect_get(c, "k", "v1");
    unsigned long long subscribes = redis_fx_counter(c, "near_subscribes_total");
    redis_server_ok(&srv, "CLIENT KILL TYPE pubsub");
    redis_server_ok(&srv, "SET %s %s", "n:1:k", "v3"); /* nobody is told */
    eventually(c, "k", "v3");
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (redis_fx_counter(c, "near_subscribes_total") <= subscribes ||
           redis_fx_counter(c, "near_live") != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the tracker did not subscribe again");
    assert_true(redis_fx_counter(c, "near_flushes_total") >= 1);
    expect_get(c, "k", "v3");
    redis_server_ok(&srv, "SET %s %s", "n:1:k", "v4"); /* tracked again */
    eventually(c, "k", "v4");
    corral_close(c);
}

static void test_near_keeps_a_value_no_longer_than_its_ttl(void **state) {
    (void)state;
    setup_each();
    /* Without active expiry Redis sends no invalidation: the near copy's own TTL must end it. */
    redis_server_ok(&srv, "DEBUG SET-ACTIVE-EXPIRE 0");
    corral *c = open_near("");
    assert_int_equal(corral_set(c, "k", 1, "short", 5, 300, NULL), CORRAL_OK);
    char *first = get_str(c, "k"); /* kept near with the PTTL Redis reported */
    free(first);
    eventually(c, "k", NULL);
    corral_close(c);
    redis_server_ok(&srv, "DEBUG SET-ACTIVE-EXPIRE 1");
}

/* corral_ttl asks Redis, not the near copy: an expiry set by another client shows at once. */
static void test_near_ttl_is_the_primary_s(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    set_forever(c, "k", "v");
    expect_get(c, "k", "v"); /* now kept near, without expiry */
    int64_t ms = 0;
    assert_int_equal(corral_ttl(c, "k", 1, NULL, &ms), CORRAL_OK);
    assert_true(ms == CORRAL_TTL_FOREVER);
    redis_server_ok(&srv, "PEXPIRE n:1:k 50000");
    assert_int_equal(corral_ttl(c, "k", 1, NULL, &ms), CORRAL_OK);
    assert_true(ms > 0 && ms <= 50000);
    assert_int_equal(corral_ttl(c, "absent", 6, NULL, &ms), CORRAL_MISS);
    corral_close(c);
}

/* ---- Tags ---- */

/* The tag versions are kept near like any key under the prefix: a tagged near hit is checked
 * without a round trip, and a bust elsewhere reaches it through the version's invalidation. */
static void test_near_tagged_hit_costs_no_round_trip_and_a_bust_reaches_it(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    corral *other = redis_fx_open(&srv, "?key_prefix=n");
    const char *tags[1] = { "featured" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = 1;
    unsigned long long reported = redis_fx_counter(c, "near_invalidations_total");
    assert_int_equal(corral_set(c, "card", 4, "v1", 2, CORRAL_TTL_FOREVER, &call), CORRAL_OK);
    settle(c, reported + 2);     /* the tag's new version and the value */
    expect_get(c, "card", "v1"); /* the value and the version are kept near */
    unsigned long long trips = redis_fx_counter(c, "round_trips_total");
    expect_get(c, "card", "v1");
    assert_int_equal(redis_fx_counter(c, "round_trips_total"), trips);
    assert_int_equal(corral_tag_bust(other, "featured"), CORRAL_OK);
    eventually(c, "card", NULL);
    corral_close(other);
    corral_close(c);
}

/* ---- The in-flight read race ---- */

typedef struct race {
    corral__store *s;
    int calls;
} race;

/* A counter of the store's own text (redis_fx_metric_in). */
static unsigned long long store_counter(corral__store *s, const char *name) {
    static char text[8192];
    assert_int_equal(s->ops->metrics_text(s, text + 1, sizeof text - 1), CORRAL_OK);
    text[0] = '\n';
    long long v = redis_fx_metric_in(text, name);
    if (v < 0) fail_msg("no %s in the store's metrics", name);
    return (unsigned long long)v;
}

/* Between the read's fetch (v1) and its fill: the key changes and the invalidation is applied. */
static void change_in_flight(void *ctx, const corral__skey *k) {
    race *r = ctx;
    if (r->calls++) return;
    unsigned long long seen = store_counter(r->s, "near_invalidations_total");
    redisReply *rep = redis_server_cmd(&srv, "SET %b %s", k->data, k->len, "v2");
    assert_non_null(rep);
    freeReplyObject(rep);
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (store_counter(r->s, "near_invalidations_total") == seen)
        if (redis_fx_now_ns() > deadline) fail_msg("the invalidation never came");
}

/* A near cache over the test server through the internal API, its tracker subscribed. The
 * caller fills `tc` (near_bytes and key_prefix are set here) and closes the store. */
static corral__store *open_tiered(corral__tiered_config *tc, int64_t command_timeout_ms) {
    corral_options o;
    redis_fx_options(&srv, &o);
    if (command_timeout_ms) o.redis.command_timeout_ms = command_timeout_ms;
    static corral__allocator a;
    corral__allocator_init(&a, NULL);
    corral__store_env env = { .alloc = &a, .now_ns = corral__realtime_ns };
    corral__store *redis = NULL, *s = NULL;
    assert_int_equal(corral__redis_open(&redis, &o.redis, 1 << 20, &env, NULL), CORRAL_OK);
    tc->near_bytes = 1 << 20;
    tc->key_prefix = "n";
    tc->key_prefix_len = 1;
    assert_int_equal(corral__tiered_open_take(&s, redis, tc, &env, NULL), CORRAL_OK);
    corral__skey probe = { .data = "n:1:probe",
                           .len = 9,
                           .hash = corral__hash_bytes("n:1:probe", 9) };
    corral_value *pv = NULL;
    assert_int_equal(s->ops->get(s, &probe, &pv), CORRAL_MISS); /* starts the tracker */
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (store_counter(s, "near_live") != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the tracker never subscribed");
    return s;
}

static corral__skey skey(const char *k) {
    size_t n = strlen(k);
    return (corral__skey){ .data = k, .len = n, .hash = corral__hash_bytes(k, n) };
}

static void test_near_read_invalidated_in_flight_is_not_kept(void **state) {
    (void)state;
    setup_each();
    race r = { 0 };
    corral__tiered_config tc = { .after_fetch = change_in_flight, .after_fetch_ctx = &r };
    corral__store *s = open_tiered(&tc, 0);
    r.s = s;
    corral__skey k = skey("n:1:k");
    assert_int_equal(s->ops->set(s, &k, "v1", 2, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(s->ops->get(s, &k, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "v1"); /* what the read fetched */
    corral_value_unref(v);
    assert_int_equal(store_counter(s, "near_fills_dropped_total"), 1);
    /* Never put in L1, where another reader could have found it before a later look. */
    assert_int_equal(store_counter(s, "near_fills_total"), 0);
    assert_int_equal(s->ops->get(s, &k, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "v2"); /* v1 was not kept */
    corral_value_unref(v);
    s->ops->close(s);
}

static void test_near_get_many_read_invalidated_in_flight_is_not_kept(void **state) {
    (void)state;
    setup_each();
    race r = { 0 };
    corral__tiered_config tc = { .after_fetch = change_in_flight, .after_fetch_ctx = &r };
    corral__store *s = open_tiered(&tc, 0);
    r.s = s;
    corral__skey ks[2] = { skey("n:1:a"), skey("n:1:b") };
    for (int i = 0; i < 2; i++)
        assert_int_equal(s->ops->set(s, &ks[i], "v1", 2, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                         CORRAL_OK);
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (store_counter(s, "near_invalidations_total") < 2) /* our own writes' reports */
        if (redis_fx_now_ns() > deadline) fail_msg("the writes were never reported");
    corral_value *out[2];
    assert_int_equal(s->ops->get_many(s, ks, 2, out), CORRAL_OK);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(corral_value_data(out[i]), "v1"); /* what the read fetched */
        corral_value_unref(out[i]);
    }
    /* The first key changed between the read and its fill: never put in L1. The second was. */
    assert_int_equal(store_counter(s, "near_fills_dropped_total"), 1);
    assert_int_equal(store_counter(s, "near_fills_total"), 1);
    corral_value *v = NULL;
    assert_int_equal(s->ops->get(s, &ks[0], &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "v2");
    corral_value_unref(v);
    s->ops->close(s);
}

/* ---- A silent tracker connection ---- */

static void test_near_tracker_pings_a_quiet_connection_and_stays_live(void **state) {
    (void)state;
    setup_each();
    corral__tiered_config tc = { .ping_interval_ms = 20, .ping_timeout_ms = 5000 };
    corral__store *s = open_tiered(&tc, 0);
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (store_counter(s, "near_pings_total") < 3)
        if (redis_fx_now_ns() > deadline) fail_msg("the tracker never pinged");
    assert_int_equal(store_counter(s, "near_ping_timeouts_total"), 0);
    assert_int_equal(store_counter(s, "near_subscribes_total"), 1);
    assert_int_equal(store_counter(s, "near_live"), 1);
    s->ops->close(s);
}

/* The server stops answering while the kernel keeps its connections up: no error, no EOF, and no
 * invalidation either. The PING deadline must notice, flush the near cache and reconnect. */
static void test_near_silent_tracker_connection_flushes_the_near_cache(void **state) {
    (void)state;
    setup_each();
    corral__tiered_config tc = { .ping_interval_ms = 20, .ping_timeout_ms = 300 };
    corral__store *s = open_tiered(&tc, 300);
    corral__skey k = skey("n:1:k");
    assert_int_equal(s->ops->set(s, &k, "v1", 2, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (store_counter(s, "near_invalidations_total") < 1) /* our own write's report */
        if (redis_fx_now_ns() > deadline) fail_msg("the write was never reported");
    corral_value *v = NULL;
    for (int i = 0; i < 2; i++) { /* a fill, then a near hit */
        assert_int_equal(s->ops->get(s, &k, &v), CORRAL_OK);
        corral_value_unref(v);
    }
    assert_int_equal(store_counter(s, "near_hits_total"), 1);
    unsigned long long flushes = store_counter(s, "near_flushes_total");
    redis_server_signal(&srv, SIGSTOP);
    deadline = redis_fx_now_ns() + DEADLINE_NS;
    /* The tracker gives up (ping_timeouts), stops using the near cache (live), then flushes it. */
    while (store_counter(s, "near_ping_timeouts_total") < 1 || store_counter(s, "near_live") != 0 ||
           store_counter(s, "near_flushes_total") == flushes)
        if (redis_fx_now_ns() > deadline) break;
    unsigned long long timeouts = store_counter(s, "near_ping_timeouts_total");
    unsigned long long flushed = store_counter(s, "near_flushes_total") - flushes;
    redis_server_signal(&srv, SIGCONT); /* before any assertion: the next tests need it */
    assert_true(timeouts >= 1);
    assert_true(flushed >= 1);
    deadline = redis_fx_now_ns() + DEADLINE_NS;
    while (store_counter(s, "near_subscribes_total") < 2 || store_counter(s, "near_live") != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the tracker did not subscribe again");
    unsigned long long misses = store_counter(s, "near_misses_total");
    assert_int_equal(s->ops->get(s, &k, &v), CORRAL_OK); /* from Redis: the copy was flushed */
    corral_value_unref(v);
    assert_int_equal(store_counter(s, "near_misses_total") - misses, 1);
    s->ops->close(s);
}

/* ---- Threads ---- */

#define READERS 4
#define WRITES  300

typedef struct reader_arg {
    corral *c;
    pthread_barrier_t *start;
    _Atomic bool *fenced; /* every invalidation of the writes has been applied */
    char error[96];       /* what went wrong, checked by the main thread (cmocka's asserts
                             belong to it) */
} reader_arg;

static void *reader_main(void *p) {
    reader_arg *a = p;
    int rc = pthread_barrier_wait(a->start);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
        snprintf(a->error, sizeof a->error, "barrier: %d", rc);
        return NULL;
    }
    while (!atomic_load(a->fenced)) {
        char *got = get_str(a->c, "k"); /* any value of the writes, while they go on */
        if (!got) snprintf(a->error, sizeof a->error, "k missed during the writes");
        free(got);
    }
    /* Reads that begin after the fence see the last write, every time: no stale value was
     * kept, whatever fill was in flight when its invalidation came. */
    char last[16];
    snprintf(last, sizeof last, "%d", WRITES);
    for (int i = 0; i < 50 && !a->error[0]; i++) {
        char *got = get_str(a->c, "k");
        if (!got || strcmp(got, last) != 0)
            snprintf(a->error, sizeof a->error, "read %d after the fence: '%s'", i,
                     got ? got : "(miss)");
        free(got);
    }
    return NULL;
}

static void test_near_concurrent_readers_converge_on_the_last_write(void **state) {
    (void)state;
    setup_each();
    corral *c = open_near("");
    corral *writer = redis_fx_open(&srv, "?key_prefix=n");
    unsigned long long reported = redis_fx_counter(c, "near_invalidations_total");
    set_forever(writer, "k", "0");
    set_forever(writer, "fence", "0");
    settle(c, reported + 2); /* so no late report drops the fence we keep near next */
    expect_get(c, "fence", "0");
    unsigned long long hits = redis_fx_counter(c, "near_hits_total");
    expect_get(c, "fence", "0");
    /* The fence is near: only its invalidation will make c read "1" for it. */
    assert_int_equal(redis_fx_counter(c, "near_hits_total"), hits + 1);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, READERS + 1), 0);
    _Atomic bool fenced = false;
    reader_arg a[READERS];
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++) {
        a[i] = (reader_arg){ .c = c, .start = &start, .fenced = &fenced };
        assert_int_equal(pthread_create(&t[i], NULL, reader_main, &a[i]), 0);
    }
    int rc = pthread_barrier_wait(&start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    char v[16];
    for (int i = 1; i <= WRITES; i++) {
        snprintf(v, sizeof v, "%d", i);
        set_forever(writer, "k", v);
    }
    /* Redis reports changes in order on the one tracking connection: once the fence's report
     * is applied, so are the reports of every write before it. */
    set_forever(writer, "fence", "1");
    eventually(c, "fence", "1");
    atomic_store(&fenced, true);
    for (int i = 0; i < READERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    for (int i = 0; i < READERS; i++)
        if (a[i].error[0]) fail_msg("reader %d: %s", i, a[i].error);
    corral_close(writer);
    corral_close(c);
}

/* ---- The tracker's reading of one reply (corral__near_apply_reply), no server needed ---- */

typedef struct drops {
    char keys[8][16]; /* "*" for a drop of everything */
    size_t n;
} drops;

static void record_drop(void *ctx, const char *key, size_t len) {
    drops *d = ctx;
    assert_true(d->n < 8 && len < 16);
    if (key)
        snprintf(d->keys[d->n++], 16, "%.*s", (int)len, key);
    else
        snprintf(d->keys[d->n++], 16, "*");
}

/* Parses `resp` (one reply) as the tracker's reader does and applies it; returns the count. */
static size_t apply_resp(const char *resp, drops *d) {
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    memset(d, 0, sizeof *d);
    size_t n = corral__near_apply_reply(reply, record_drop, d);
    freeReplyObject(reply);
    redisReaderFree(rd);
    return n;
}

#define INVALIDATE "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"

static void test_near_reply_drops_the_keys_named_and_everything_for_what_names_none(void **state) {
    (void)state;
    drops d;
    assert_int_equal(apply_resp(INVALIDATE "*2\r\n$3\r\nn:a\r\n$3\r\nn:b\r\n", &d), 2);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.keys[0], "n:a");
    assert_string_equal(d.keys[1], "n:b");
    /* nil (FLUSHDB, FLUSHALL), as a nil array or a nil bulk: everything. */
    assert_int_equal(apply_resp(INVALIDATE "*-1\r\n", &d), 1);
    assert_true(d.n == 1 && strcmp(d.keys[0], "*") == 0);
    assert_int_equal(apply_resp(INVALIDATE "$-1\r\n", &d), 1);
    assert_true(d.n == 1 && strcmp(d.keys[0], "*") == 0);
    /* A key list with an element that is not a key: which key changed is unknown, so
     * everything goes (dropping only "n:a" would keep a stale value of the key not named). */
    assert_int_equal(apply_resp(INVALIDATE "*2\r\n$3\r\nn:a\r\n:7\r\n", &d), 1);
    assert_true(d.n == 1 && strcmp(d.keys[0], "*") == 0);
    assert_int_equal(apply_resp(INVALIDATE "*1\r\n*1\r\n$3\r\nn:a\r\n", &d), 1);
    assert_true(d.n == 1 && strcmp(d.keys[0], "*") == 0);
    /* Replies that are not invalidations change nothing. */
    const char *others[] = {
        "*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n",
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        "*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n*1\r\n$3\r\nn:a\r\n",
        "-ERR unknown command\r\n",
        "+OK\r\n",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        assert_int_equal(apply_resp(others[i], &d), 0);
        assert_int_equal(d.n, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_near_serves_repeated_reads_from_memory),
        cmocka_unit_test(test_near_get_many_serves_near_hits_and_reads_the_rest),
        cmocka_unit_test(test_near_get_many_fills_the_near_cache),
        cmocka_unit_test(test_near_write_by_another_client_reaches_the_near_cache),
        cmocka_unit_test(test_near_write_by_another_corral_process_reaches_the_near_cache),
        cmocka_unit_test(test_near_own_writes_are_read_at_once),
        cmocka_unit_test(test_near_flush_of_the_database_empties_the_near_cache),
        cmocka_unit_test(test_near_lost_tracking_connection_flushes_and_resubscribes),
        cmocka_unit_test(test_near_keeps_a_value_no_longer_than_its_ttl),
        cmocka_unit_test(test_near_ttl_is_the_primary_s),
        cmocka_unit_test(test_near_tagged_hit_costs_no_round_trip_and_a_bust_reaches_it),
        cmocka_unit_test(test_near_read_invalidated_in_flight_is_not_kept),
        cmocka_unit_test(test_near_get_many_read_invalidated_in_flight_is_not_kept),
        cmocka_unit_test(test_near_tracker_pings_a_quiet_connection_and_stays_live),
        cmocka_unit_test(test_near_silent_tracker_connection_flushes_the_near_cache),
        cmocka_unit_test(test_near_concurrent_readers_converge_on_the_last_write),
        cmocka_unit_test(test_near_reply_drops_the_keys_named_and_everything_for_what_names_none),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
