/*
 * test_redis_fleet.c - corral_get_or_set across processes on one redis-server: the waiters of
 * another process's lease are woken by its release (src/store/redis_notify.c), not by polling,
 * and a leader that dies is replaced once its lease expires.
 *
 * corral_lease_try, the same for callers that cannot block (corral-proxy), is tested between two
 * handles of the test process: the lease is the store's, so two handles are two processes to it.
 *
 * Each process is a fork of the test with a handle of its own, opened after the fork (the test
 * process opens none, so it forks with one thread). The producer counts its runs in Redis
 * (INCR "runs"), so the count covers every process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "key.h"
#include "calls.h"
#include "redis_server.h"
#include "store/redis.h"

#define WAITERS     4
#define KEY         "herd"
#define DEADLINE_NS (20ull * 1000000000ull)

/* What a producer does: count the run, say so on `entered`, then wait for a byte on `release`
 * (-1: none), or never return, and make `value`. `parked` is the waiters' (child): -1, or where a
 * waiter writes a byte once it waits on a live watch (report_parked). */
typedef struct producer_ctx {
    int entered;
    int release;
    int parked;
    const char *value;
    bool stuck; /* never returns */
    bool ran;   /* set by the run, in the child that made it */
} producer_ctx;

static int produce(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    producer_ctx *p = arg;
    p->ran = true;
    redisReply *r = redis_server_cmd(&srv, "INCR runs");
    if (r) freeReplyObject(r);
    char b = 1;
    if (p->entered >= 0 && write(p->entered, &b, 1) != 1) return CORRAL_EINVAL;
    if (p->release >= 0 && read(p->release, &b, 1) != 1) return CORRAL_EINVAL;
    if (p->stuck) pause(); /* killed there */
    return corral_result_set(out, p->value, strlen(p->value));
}

/* Makes the lease announcements of `c` live (another process holds KEY's lease): a watch of
 * KEY made before they start is called back when they do. In a child, which exits on failure. */
static void announcements_live(corral *c) {
    calls k = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    for (;;) {
        corral_lease *watch = NULL;
        int n = count_of(&k);
        if (corral_lease_try(c, KEY, sizeof KEY - 1, NULL, 60000, called, &k, &watch) !=
            CORRAL_EXISTS)
            _exit(4);
        bool live = corral_lease_live(watch);
        if (!live && called_after(&k, n) <= n) _exit(5);
        (void)corral_lease_end(c, watch); /* no call-back after it */
        if (live) return;
    }
}

/* A waiter's get_or_set, seen from a thread of its own. */
typedef struct parked_watch {
    corral *c;
    long long trips0; /* round_trips_total before the get_or_set */
    int fd;
    _Atomic bool done; /* the get_or_set returned */
} parked_watch;

/* Writes a byte on pw->fd once the get_or_set waits on a live watch: after its look (a GET) and
 * its lease attempt, wait_lease makes its watch, live since announcements_live, before its own
 * look (loader.c), and round_trips_total counts a command before it is sent, so a third round
 * trip means the watch is there. Or once the get_or_set returned, so the test never hangs. The
 * handle's own counter, read in process: a pause of 1 ms between looks. */
static void *report_parked(void *arg) {
    parked_watch *pw = arg;
    struct timespec pause_1ms = { 0, 1000000 };
    while (redis_fx_metric(pw->c, "round_trips_total") - pw->trips0 < 3 && !atomic_load(&pw->done))
        nanosleep(&pause_1ms, NULL);
    char b = 1;
    if (write(pw->fd, &b, 1) != 1) _exit(6);
    return NULL;
}

/* A child: get_or_set KEY with the producer, then writes to `result` what it got, the store
 * round trips its call made and the releases that woke it: "<P: it produced, W: it waited>
 * <value> <trips> <wakeups>". A waiter (p->parked >= 0) makes its announcements live first and
 * reports when it waits (report_parked). */
static void child(int result, producer_ctx *p, int64_t lease_ttl_ms) {
    corral *c = NULL;
    if (redis_fx_open_url(&c, "redis://%s/?key_prefix=fleet", srv.hosts) != CORRAL_OK) _exit(2);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 60000;
    o.lease_ttl_ms = lease_ttl_ms;
    o.wait_timeout_ms = 30000;
    if (p->parked >= 0) announcements_live(c);
    parked_watch pw = { .c = c,
                        .trips0 = redis_fx_metric(c, "round_trips_total"),
                        .fd = p->parked };
    long long trips0 = pw.trips0;
    pthread_t reporter;
    if (p->parked >= 0 && pthread_create(&reporter, NULL, report_parked, &pw) != 0) _exit(7);
    corral_value *v = NULL;
    int rc = corral_get_or_set(c, KEY, sizeof KEY - 1, produce, p, &o, &v);
    atomic_store(&pw.done, true);
    if (p->parked >= 0 && pthread_join(reporter, NULL) != 0) _exit(8);
    char line[128];
    int n = snprintf(line, sizeof line, "%c %.*s %lld %lld\n", p->ran ? 'P' : 'W',
                     rc == CORRAL_OK ? (int)corral_value_len(v) : 5,
                     rc == CORRAL_OK ? (const char *)corral_value_data(v) : "error",
                     redis_fx_metric(c, "round_trips_total") - trips0,
                     redis_fx_metric(c, "lease_wakeups_total"));
    corral_value_unref(v);
    corral_close(c);
    _exit(write(result, line, (size_t)n) == n ? 0 : 3);
}

static pid_t spawn(int result, producer_ctx *p, int64_t lease_ttl_ms) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child(result, p, lease_ttl_ms);
    return pid;
}

static long long runs(void) {
    redisReply *r = redis_server_cmd(&srv, "GET runs");
    assert_non_null(r);
    long long n = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return n;
}

/* Reads one result line per child from `fd` (each written at once) into `lines`. */
static void read_results(int fd, char lines[][128], size_t n) {
    char buf[4096];
    size_t used = 0, got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + used, sizeof buf - 1 - used);
        if (r <= 0) fail_msg("a child died without a result");
        used += (size_t)r;
        buf[used] = '\0';
        char *nl;
        while (got < n && (nl = strchr(buf, '\n'))) {
            size_t len = (size_t)(nl - buf);
            assert_true(len < 128);
            memcpy(lines[got], buf, len);
            lines[got++][len] = '\0';
            memmove(buf, nl + 1, used - len - 1);
            used -= len + 1;
            buf[used] = '\0';
        }
    }
}

static void reap(pid_t pid, int want_status) {
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (want_status >= 0) {
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), want_status);
    }
}

/* One leader, WAITERS processes waiting on its lease: one producer run; every waiter gets the
 * leader's value, woken by the release. The leader holds until every waiter waits on a live
 * watch (each says so on `parked`), whatever the machine's load: a waiter whose watch came
 * after the release would find the value by its look, not be woken. Each waiter's announcements
 * are live before its get_or_set, so its round trips do not depend on how long a subscription
 * takes: its look and lease attempt, wait_lease's look and attempt, then one GET after the
 * wake, 5; a waiter polling with backoff (1 ms doubling to 50 ms) would make over 30. */
static void test_fleet_waiters_are_woken_by_the_release(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    int entered[2], release[2], parked[2], results[2];
    assert_int_equal(pipe(entered), 0);
    assert_int_equal(pipe(release), 0);
    assert_int_equal(pipe(results), 0);
    producer_ctx lead = {
        .entered = entered[1], .release = release[0], .parked = -1, .value = "made-by-leader"
    };
    pid_t leader = spawn(results[1], &lead, 20000);
    char b;
    assert_int_equal(read(entered[0], &b, 1), 1); /* it holds the lease and runs */
    /* Made after the leader's fork, so only the waiters hold its write end: a waiter that dies
     * before it reports closes its end, and the others close theirs once their get_or_set
     * gives up (wait_timeout_ms), so the read below ends. */
    assert_int_equal(pipe(parked), 0);
    producer_ctx other = {
        .entered = -1, .release = -1, .parked = parked[1], .value = "made-by-waiter"
    };
    pid_t w[WAITERS];
    for (size_t i = 0; i < WAITERS; i++)
        w[i] = spawn(results[1], &other, 20000);
    assert_int_equal(close(parked[1]), 0);  /* the waiters hold it: read fails if they all die */
    assert_int_equal(close(results[1]), 0); /* the children hold it: read_results sees a death */
    for (size_t i = 0; i < WAITERS; i++) {
        struct pollfd pf = { .fd = parked[0], .events = POLLIN };
        if (poll(&pf, 1, 60000) != 1) fail_msg("waiter %zu did not report within 60 s", i);
        assert_int_equal(read(parked[0], &b, 1), 1);
    }
    assert_int_equal(write(release[1], "x", 1), 1);
    char lines[WAITERS + 1][128];
    read_results(results[0], lines, WAITERS + 1);
    reap(leader, 0);
    for (size_t i = 0; i < WAITERS; i++)
        reap(w[i], 0);
    assert_int_equal(runs(), 1);
    size_t waited = 0, woken = 0;
    for (size_t i = 0; i < WAITERS + 1; i++) {
        char role, value[64];
        long long trips = -1, wakeups = -1;
        assert_int_equal(sscanf(lines[i], "%c %63s %lld %lld", &role, value, &trips, &wakeups), 4);
        assert_string_equal(value, "made-by-leader");
        if (role == 'P') continue;
        waited++;
        /* Each waited on a live watch when the release came: each was woken by it. */
        assert_int_equal(wakeups, 1);
        woken += (size_t)wakeups;
        assert_in_range(trips, 3, 20);
    }
    assert_int_equal(waited, WAITERS);
    assert_int_equal(woken, WAITERS);
    for (int i = 0; i < 2; i++) {
        close(entered[i]);
        close(release[i]);
    }
    close(results[0]);
    close(parked[0]);
}

/* The leader dies holding its lease (SIGKILL in its producer): once the lease expires, one
 * waiter leads, and the others get its value, woken by its release. */
static void test_fleet_a_dead_leader_is_replaced_after_its_lease(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    int entered[2], results[2];
    assert_int_equal(pipe(entered), 0);
    assert_int_equal(pipe(results), 0);
    producer_ctx stuck = {
        .entered = entered[1], .release = -1, .parked = -1, .value = "never", .stuck = true
    };
    pid_t leader = spawn(results[1], &stuck, 1000);
    char b;
    assert_int_equal(read(entered[0], &b, 1), 1);
    producer_ctx next = { .entered = -1, .release = -1, .parked = -1, .value = "made-by-next" };
    pid_t w[WAITERS];
    for (size_t i = 0; i < WAITERS; i++)
        w[i] = spawn(results[1], &next, 1000);
    assert_int_equal(kill(leader, SIGKILL), 0);
    reap(leader, -1);
    char lines[WAITERS][128];
    read_results(results[0], lines, WAITERS);
    for (size_t i = 0; i < WAITERS; i++)
        reap(w[i], 0);
    assert_int_equal(runs(), 2); /* the dead leader's, and its successor's */
    size_t produced = 0;
    for (size_t i = 0; i < WAITERS; i++) {
        char role, value[64];
        assert_int_equal(sscanf(lines[i], "%c %63s", &role, value), 2);
        assert_string_equal(value, "made-by-next");
        produced += role == 'P';
    }
    assert_int_equal(produced, 1);
    for (int i = 0; i < 2; i++) {
        close(entered[i]);
        close(results[i]);
    }
}

/* ---- corral_lease_try: two handles, one lease ---- */

static void test_fleet_lease_try_is_not_needed_on_a_memory_store(void **state) {
    (void)state;
    corral *c = NULL;
    assert_int_equal(corral_open(&c, "mem://", NULL), CORRAL_OK);
    corral_lease *l = (corral_lease *)&c; /* anything: it must come back NULL */
    assert_int_equal(corral_lease_try(c, "k", 1, NULL, 1000, called, NULL, &l), CORRAL_ENOTSUP);
    assert_null(l);
    assert_int_equal(corral_lease_end(c, NULL), CORRAL_OK);
    corral_close(c);
}

/* A watch of `waiter` on `key` (another handle holds its lease) once the waiter's announcements
 * are live: until then a watch is called back by their start, and the try is made again. */
static corral_lease *live_watch(corral *waiter, const char *key, size_t len, calls *k) {
    for (;;) {
        corral_lease *watch = NULL;
        /* Counted before the try: the start may wake the watch during it (the try then calls
         * back itself) or just after it returns. */
        int n = count_of(k);
        assert_int_equal(watch_try(waiter, key, len, k, &watch), CORRAL_EXISTS);
        if (corral_lease_live(watch)) return watch;
        assert_true(called_after(k, n) > n);
        assert_int_equal(watch_end(waiter, watch), CORRAL_MISS); /* it called back */
    }
}

static void test_fleet_lease_release_calls_the_waiter_back(void **state) {
    (void)state;
    corral *a = redis_fx_open(&srv, "?key_prefix=fleet");
    corral *b = redis_fx_open(&srv, "?key_prefix=fleet");
    assert_int_equal(corral_lease_try(a, "k", 1, NULL, 1000, NULL, NULL, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_lease_try(a, "k", 1, NULL, 0, NULL, NULL, &(corral_lease *){ 0 }),
                     CORRAL_EINVAL);
    assert_int_equal(
        corral_lease_try(a, "bad key", 7, NULL, 1000, NULL, NULL, &(corral_lease *){ 0 }),
        CORRAL_EBADKEY);
    corral_lease *held = NULL, *watch = NULL;
    assert_int_equal(corral_lease_try(a, "k", 1, NULL, 60000, called, NULL, &held), CORRAL_OK);
    assert_false(corral_lease_live(held));
    calls *k = calls_new();
    watch = live_watch(b, "k", 1, k);
    int before = count_of(k);
    assert_int_equal(corral_lease_end(a, held), CORRAL_OK); /* released, and announced */
    assert_int_equal(called_after(k, before), before + 1);
    assert_int_equal(watch_end(b, watch), CORRAL_MISS);
    assert_int_equal(redis_fx_counter(b, "lease_wakeups_total"), 1);
    /* Free now; a watch without a call-back (cb NULL) ends with nothing to report. */
    assert_int_equal(corral_lease_try(b, "k", 1, NULL, 60000, called, k, &held), CORRAL_OK);
    assert_int_equal(watch_try(a, "k", 1, NULL, &watch), CORRAL_EXISTS);
    assert_int_equal(watch_end(a, watch), CORRAL_OK);
    assert_int_equal(corral_lease_end(b, held), CORRAL_OK);
    corral_close(a);
    corral_close(b);
}

/* A release's message names its key as watches are matched (corral__hash_bytes of the key): the
 * bytes before its last space, or the whole message when it has none (the key alone, as releases
 * announced before tokens were added to the message). */
static void test_fleet_release_message_names_the_key_before_its_last_space(void **state) {
    (void)state;
    uint64_t k = corral__hash_bytes("p:1:k", 5), spaced = corral__hash_bytes("p:1:a b", 7);
    assert_int_equal(corral__redis_lease_key_hash("p:1:k 0123abcd", 14), k);
    assert_int_equal(corral__redis_lease_key_hash("p:1:k", 5), k);
    assert_int_equal(corral__redis_lease_key_hash("p:1:a b 0123abcd", 16), spaced);
    assert_int_equal(corral__redis_lease_key_hash(" 0123abcd", 9), corral__hash_bytes("", 0));
    assert_int_equal(corral__redis_lease_key_hash("", 0), corral__hash_bytes("", 0));
}

/* A binary key may hold spaces (key.h), and the release's message is "<key> <token>": the
 * waiter of such a key is woken by the message as any other. */
static void test_fleet_release_of_a_binary_key_with_spaces_calls_the_waiter_back(void **state) {
    (void)state;
    corral *a = redis_fx_open(&srv, "?key_prefix=fleet&binary_keys=1");
    corral *b = redis_fx_open(&srv, "?key_prefix=fleet&binary_keys=1");
    const char key[] = "a key with spaces";
    corral_lease *held = NULL;
    assert_int_equal(corral_lease_try(a, key, sizeof key - 1, NULL, 60000, NULL, NULL, &held),
                     CORRAL_OK);
    calls *k = calls_new();
    corral_lease *watch = live_watch(b, key, sizeof key - 1, k);
    unsigned long long woken = redis_fx_counter(b, "lease_wakeups_total");
    int before = count_of(k);
    assert_int_equal(corral_lease_end(a, held), CORRAL_OK); /* released, and announced */
    assert_int_equal(called_after(k, before), before + 1);
    assert_int_equal(watch_end(b, watch), CORRAL_MISS);
    assert_int_equal(redis_fx_counter(b, "lease_wakeups_total") - woken, 1); /* the message's */
    corral_close(a);
    corral_close(b);
}

/* A near cache's waiter, woken by a release, reads what the leader wrote before it, under any
 * key: the announcement comes on the tracker's connection, after the invalidations of those
 * writes (docs/redis.md). Here the waiter holds an old copy of "obj" near, waits on the lease
 * of another key ("flight", as the proxy's), and the leader writes "obj" then releases. */
static void test_fleet_near_cache_has_dropped_the_leaders_writes_at_the_wake(void **state) {
    (void)state;
    /* The leader on the unix socket: another server to this process's near caches, whose own
     * writes would otherwise reach them at once (near_peers.h), as another process's do not. */
    corral *lead = NULL;
    assert_int_equal(redis_fx_open_url(&lead, "redis+unix://%s?key_prefix=fleet", srv.sock),
                     CORRAL_OK);
    corral *near = redis_fx_open(&srv, "?key_prefix=fleet&near_cache=1MB");
    redis_fx_wait_live(near);
    calls *k = calls_new();
    for (int round = 0; round < 20; round++) {
        char old[16], fresh[16];
        snprintf(old, sizeof old, "old-%d", round);
        snprintf(fresh, sizeof fresh, "new-%d", round);
        assert_int_equal(corral_set(lead, "obj", 3, old, strlen(old), 60000, NULL), CORRAL_OK);
        char buf[16];
        size_t len = 0;
        uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
        for (;;) { /* until the near cache serves the old value (a near hit) */
            unsigned long long hits = redis_fx_counter(near, "near_hits_total");
            assert_int_equal(corral_get_into(near, "obj", 3, NULL, buf, sizeof buf, &len),
                             CORRAL_OK);
            if (len == strlen(old) && memcmp(buf, old, len) == 0 &&
                redis_fx_counter(near, "near_hits_total") > hits)
                break;
            if (redis_fx_now_ns() > deadline) fail_msg("the near cache never kept it");
        }
        corral_lease *held = NULL, *watch = NULL;
        assert_int_equal(corral_lease_try(lead, "flight", 6, NULL, 60000, NULL, NULL, &held),
                         CORRAL_OK);
        int before = count_of(k);
        assert_int_equal(watch_try(near, "flight", 6, k, &watch), CORRAL_EXISTS);
        assert_true(corral_lease_live(watch)); /* the tracker is subscribed */
        assert_int_equal(corral_set(lead, "obj", 3, fresh, strlen(fresh), 60000, NULL), CORRAL_OK);
        assert_int_equal(corral_lease_end(lead, held), CORRAL_OK);
        assert_int_equal(called_after(k, before), before + 1);
        assert_int_equal(watch_end(near, watch), CORRAL_MISS);
        assert_int_equal(corral_get_into(near, "obj", 3, NULL, buf, sizeof buf, &len), CORRAL_OK);
        assert_memory_equal(buf, fresh, strlen(fresh));
    }
    corral_close(lead);
    corral_close(near);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet_waiters_are_woken_by_the_release),
        cmocka_unit_test(test_fleet_a_dead_leader_is_replaced_after_its_lease),
        cmocka_unit_test(test_fleet_lease_try_is_not_needed_on_a_memory_store),
        cmocka_unit_test_teardown(test_fleet_lease_release_calls_the_waiter_back, watches_teardown),
        cmocka_unit_test(test_fleet_release_message_names_the_key_before_its_last_space),
        cmocka_unit_test_teardown(
            test_fleet_release_of_a_binary_key_with_spaces_calls_the_waiter_back, watches_teardown),
        cmocka_unit_test_teardown(test_fleet_near_cache_has_dropped_the_leaders_writes_at_the_wake,
                                  watches_teardown),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
