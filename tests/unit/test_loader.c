/*
 * test_loader.c - corral_get_or_set and the single-flight primitive: exactly-once under
 * concurrency, XFetch decisions under a fake clock and a seeded random source, grace and
 * background refresh, stale-if-error, leases held by another process, waiter deadlines, and an
 * allocation-failure sweep. No sleeps: threads meet at barriers or wait on observable state.
 */
#include "access.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "counting_alloc.h"

/* ---- Fixture: a fake clock and a scripted random source ---- */

typedef struct fx {
    corral *c;
    _Atomic uint64_t now_ns;
    _Atomic uint64_t rand_value; /* what rand64 returns when `scripted` */
    _Atomic bool scripted;
    _Atomic uint64_t counter; /* otherwise rand64 counts, so tag versions differ */
} fx;

static uint64_t fake_now(void *ctx) {
    return atomic_load(&((fx *)ctx)->now_ns);
}

static uint64_t fake_rand(void *ctx) {
    fx *f = ctx;
    if (atomic_load(&f->scripted)) return atomic_load(&f->rand_value);
    return atomic_fetch_add(&f->counter, 1) * 0x9E3779B97F4A7C15ull;
}

/* Makes rand64 return `v` from now on (XFetch and jitter draws). */
static void script_rand(fx *f, uint64_t v) {
    atomic_store(&f->rand_value, v);
    atomic_store(&f->scripted, true);
}

static void advance_ms(fx *f, uint64_t ms) {
    atomic_fetch_add(&f->now_ns, ms * 1000000u);
}

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    atomic_init(&f->now_ns, (uint64_t)1767225600 * 1000000000u);
    atomic_init(&f->rand_value, 0);
    atomic_init(&f->scripted, false);
    atomic_init(&f->counter, 1);
    corral_options o;
    corral_options_init(&o);
    o.now_ns = fake_now;
    o.clock_ctx = f;
    o.rand64 = fake_rand;
    o.rand_ctx = f;
    o.default_ttl_ms = 1000;
    assert_int_equal(corral_open_opts(&f->c, &o, NULL), CORRAL_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    corral_close(f->c);
    free(f);
    return 0;
}

/* ---- Producers ---- */

typedef struct prod {
    fx *f;
    _Atomic int calls;
    int fail;             /* return this error when non-zero */
    uint64_t takes_ms;    /* advance the fake clock by this much while "working" */
    const char *value;    /* what to produce; NULL: "v<calls>" */
    const char *bust_tag; /* bust this tag while producing */
    int64_t result_ttl;   /* > -3: passed to corral_result_set_ttl */
    bool no_result;       /* return OK without a value */
    /* Concurrency: hold the producer until `hold_until_waiters` callers wait on it. */
    int hold_until_waiters;
    const char *key;
} prod;

static int produce(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    prod *p = arg;
    int n = atomic_fetch_add(&p->calls, 1) + 1;
    if (p->takes_ms) advance_ms(p->f, p->takes_ms);
    if (p->bust_tag) assert_int_equal(corral_tag_bust(p->f->c, p->bust_tag), CORRAL_OK);
    while (p->hold_until_waiters) {
        /* The waiters are counted as they queue: wait on that, not on time. */
        corral_stats_snapshot *s;
        assert_int_equal(corral_stats(p->f->c, &s), CORRAL_OK);
        uint64_t waiting = s->total.load_waiters;
        corral_stats_free(p->f->c, s);
        if (waiting >= (uint64_t)p->hold_until_waiters) break;
        sched_yield();
    }
    if (p->fail) return p->fail;
    if (p->no_result) return CORRAL_OK;
    if (p->result_ttl > -3) corral_result_set_ttl(out, p->result_ttl);
    char buf[32];
    const char *v = p->value;
    if (!v) {
        snprintf(buf, sizeof buf, "v%d", n);
        v = buf;
    }
    return corral_result_set(out, v, strlen(v));
}

static prod new_prod(fx *f) {
    prod p;
    memset(&p, 0, sizeof p);
    p.f = f;
    atomic_init(&p.calls, 0);
    p.result_ttl = -3;
    return p;
}

static int gos(fx *f, const char *key, prod *p, const corral_load_opts *o, char *out, size_t cap) {
    corral_value *v = NULL;
    int rc = corral_get_or_set(f->c, key, strlen(key), produce, p, o, &v);
    if (rc >= 0) {
        assert_non_null(v);
        snprintf(out, cap, "%s", (const char *)corral_value_data(v));
        corral_value_unref(v);
    } else {
        assert_null(v);
        out[0] = '\0';
    }
    return rc;
}

static corral_prefix_stats prefix_stats(fx *f, const char *prefix) {
    corral_stats_snapshot *s;
    assert_int_equal(corral_stats(f->c, &s), CORRAL_OK);
    corral_prefix_stats r;
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < s->n_prefixes; i++)
        if (strcmp(s->prefixes[i].prefix, prefix) == 0) r = s->prefixes[i];
    corral_stats_free(f->c, s);
    return r;
}

/* ---- Basics ---- */

static void test_get_or_set_runs_the_producer_on_a_miss_only(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    char out[32];
    assert_int_equal(gos(f, "featured:1", &p, NULL, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    assert_int_equal(gos(f, "featured:1", &p, NULL, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    assert_int_equal(atomic_load(&p.calls), 1);
    corral_prefix_stats s = prefix_stats(f, "featured");
    assert_int_equal(s.loads, 1);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.misses, 1);
}

static void test_get_or_set_value_reads_back_with_plain_get(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    p.value = "hello";
    char out[32];
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_OK);
    size_t len;
    assert_int_equal(corral_get_into(f->c, "k", 1, NULL, out, sizeof out, &len), CORRAL_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);
}

static void test_get_or_set_expires_at_the_ttl(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 500;
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 499);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    advance_ms(f, 1);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
    /* A plain get agrees with the logical expiry. */
    advance_ms(f, 500);
    size_t len;
    assert_int_equal(corral_get_into(f->c, "k", 1, NULL, out, sizeof out, &len), CORRAL_MISS);
}

static void test_get_or_set_failed_producer_caches_nothing(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    p.fail = CORRAL_ESTORE;
    char out[32];
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_ESTORE);
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
    p.fail = 0;
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_OK);
    assert_int_equal(atomic_load(&p.calls), 2);
    assert_int_equal(prefix_stats(f, "k").load_errors, 1);
}

static void test_get_or_set_producer_without_value_is_an_error(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    p.no_result = true;
    char out[32];
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_EINVAL);
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
}

static void test_get_or_set_result_ttl_zero_returns_without_caching(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    p.result_ttl = 0;
    char out[32];
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    assert_int_equal(corral_has(f->c, "k", 1, NULL), CORRAL_MISS);
}

static void test_get_or_set_refuses_a_bad_key(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    char out[32];
    assert_int_equal(gos(f, "bad key", &p, NULL, out, sizeof out), CORRAL_EBADKEY);
    assert_int_equal(atomic_load(&p.calls), 0);
}

/* ---- Exactly once under concurrency ---- */

#define HERD 8

typedef struct herd_arg {
    fx *f;
    prod *p;
    pthread_barrier_t *go;
    const void *data; /* the bytes each caller got */
    int rc;
} herd_arg;

static void *herd_caller(void *arg) {
    herd_arg *a = arg;
    pthread_barrier_wait(a->go);
    corral_value *v = NULL;
    a->rc = corral_get_or_set(a->f->c, "hot:1", 5, produce, a->p, NULL, &v);
    a->data = v ? corral_value_data(v) : NULL;
    /* Keep the reference until the main thread compared pointers. */
    return v;
}

static void test_get_or_set_runs_one_producer_for_concurrent_callers(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    p.hold_until_waiters = HERD - 1; /* the leader waits until everyone else queued */
    pthread_barrier_t go;
    assert_int_equal(pthread_barrier_init(&go, NULL, HERD), 0);
    pthread_t t[HERD];
    herd_arg a[HERD];
    for (int i = 0; i < HERD; i++) {
        a[i] = (herd_arg){ .f = f, .p = &p, .go = &go };
        assert_int_equal(pthread_create(&t[i], NULL, herd_caller, &a[i]), 0);
    }
    corral_value *held[HERD];
    for (int i = 0; i < HERD; i++)
        assert_int_equal(pthread_join(t[i], (void **)&held[i]), 0);
    assert_int_equal(atomic_load(&p.calls), 1);
    for (int i = 0; i < HERD; i++) {
        assert_int_equal(a[i].rc, CORRAL_OK);
        assert_ptr_equal(a[i].data, a[0].data); /* one value, shared without a copy */
        corral_value_unref(held[i]);
    }
    assert_int_equal(prefix_stats(f, "hot").load_waiters, HERD - 1);
    assert_int_equal(pthread_barrier_destroy(&go), 0);
}

/* ---- XFetch ---- */

/* Loads "k" with a producer that takes 100 ms (fake time) and a TTL of 1000 ms. */
static void load_with_delta(fx *f, prod *p, corral_load_opts *o) {
    corral_load_opts_init(o);
    o->ttl_ms = 1000;
    p->takes_ms = 100;
    char out[32];
    assert_int_equal(gos(f, "k", p, o, out, sizeof out), CORRAL_OK);
    p->takes_ms = 0;
}

static void test_xfetch_refreshes_early_when_the_draw_says_so(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    /* The draw is made when the value is written. rand 0: u = 2^-53, -ln(u) = 36.7, a lead of
     * 100 * 36.7 ms, capped at the TTL. */
    script_rand(f, 0);
    load_with_delta(f, &p, &o);
    advance_ms(f, 500); /* 500 ms before expiry */
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
    assert_int_equal(atomic_load(&p.calls), 2);
    assert_int_equal(prefix_stats(f, "k").early_refreshes, 1);
}

static void test_xfetch_keeps_the_value_when_the_draw_is_high(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    /* u = 0.5: a lead of 100 * 0.69 = 69 ms, short of the 500 ms left. */
    script_rand(f, (uint64_t)1 << 63);
    load_with_delta(f, &p, &o);
    advance_ms(f, 500);
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    /* 50 ms before expiry the same draw (69 ms) fires. */
    advance_ms(f, 450);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
}

static void test_xfetch_draws_once_per_value_so_traffic_adds_no_refreshes(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    script_rand(f, (uint64_t)1 << 63); /* a lead of 69 ms */
    load_with_delta(f, &p, &o);
    script_rand(f, 0); /* draws made per hit would now all fire */
    advance_ms(f, 900);
    char out[32];
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
        assert_string_equal(out, "v1");
    }
    assert_int_equal(atomic_load(&p.calls), 1);
    assert_int_equal(prefix_stats(f, "k").early_refreshes, 0);
}

static void test_xfetch_beta_zero_never_refreshes_early(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    script_rand(f, 0);
    load_with_delta(f, &p, &o);
    o.beta = 0; /* the reader's beta decides */
    advance_ms(f, 999);
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    assert_int_equal(atomic_load(&p.calls), 1);
}

/* ---- Grace, background refresh, stale-if-error ---- */

typedef struct inner {
    prod base;
    int inner_rc;
    char inner_val[32];
    corral_load_opts *o;
} inner;

/* A producer that, while refreshing, asks for the same key as a second caller would. */
static int produce_and_ask_again(void *arg, const void *key, size_t key_len, corral_result *out) {
    inner *in = arg;
    in->inner_rc = gos(in->base.f, "k", &in->base, in->o, in->inner_val, sizeof in->inner_val);
    return produce(&in->base, key, key_len, out);
}

static void test_grace_serves_stale_to_others_while_one_refreshes(void **state) {
    fx *f = *state;
    inner in;
    in.base = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.stale_ttl_ms = 5000;
    in.o = &o;
    char out[32];
    assert_int_equal(gos(f, "k", &in.base, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 2000); /* expired, inside grace */
    corral_value *v = NULL;
    assert_int_equal(corral_get_or_set(f->c, "k", 1, produce_and_ask_again, &in, &o, &v),
                     CORRAL_OK);
    assert_string_equal(corral_value_data(v), "v2"); /* the refresher got the new value */
    corral_value_unref(v);
    assert_int_equal(in.inner_rc, CORRAL_STALE); /* the other caller got the old one at once */
    assert_string_equal(in.inner_val, "v1");
    assert_int_equal(atomic_load(&in.base.calls), 2);
    assert_int_equal(prefix_stats(f, "k").stale_served, 1);
}

static void test_grace_past_the_window_is_a_miss(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.stale_ttl_ms = 5000;
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 6000);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
    assert_int_equal(prefix_stats(f, "k").stale_served, 0);
}

static void flight_done(void *arg, int rc, corral_value *v) {
    atomic_store_explicit((_Atomic int *)arg, rc, memory_order_release);
    corral_value_unref(v);
}

/* Waits until no flight exists for `key`: joining leads when nobody else does. No time spent
 * waiting: a waiter's callback comes when the current leader finishes. */
static void wait_for_flight_to_end(fx *f, const char *key) {
    for (;;) {
        corral_flight *lead = NULL;
        _Atomic int rc;
        atomic_init(&rc, -100);
        int jrc = corral_flight_join(f->c, key, strlen(key), NULL, flight_done, (void *)&rc, &lead);
        if (jrc == CORRAL_OK) {
            assert_int_equal(corral_flight_finish(f->c, lead, CORRAL_OK, NULL), 0);
            return;
        }
        assert_int_equal(jrc, CORRAL_WAITING);
        while (atomic_load_explicit(&rc, memory_order_acquire) == -100)
            sched_yield();
    }
}

static void test_background_refresh_returns_stale_at_once(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.stale_ttl_ms = 5000;
    o.background = true;
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 1500);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_STALE);
    assert_string_equal(out, "v1");
    wait_for_flight_to_end(f, "k");
    assert_int_equal(atomic_load(&p.calls), 2);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
}

static void test_stale_if_error_serves_the_old_value(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.stale_if_error_ms = 10000;
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 3000);
    p.fail = CORRAL_ETIMEDOUT;
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_STALE);
    assert_string_equal(out, "v1");
    corral_prefix_stats s = prefix_stats(f, "k");
    assert_int_equal(s.load_errors, 1);
    assert_int_equal(s.stale_served, 1);
}

static void test_stale_if_error_past_the_window_returns_the_error(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.stale_if_error_ms = 10000;
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 12000);
    p.fail = CORRAL_ETIMEDOUT;
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_ETIMEDOUT);
}

/* ---- Jitter ---- */

static void test_ttl_jitter_shortens_the_ttl(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.ttl_jitter = 0.5;
    o.beta = 0;
    script_rand(f, (uint64_t)1 << 63); /* u = 0.5: 1000 - 1000 * 0.5 * 0.5 */
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 749);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1");
    advance_ms(f, 1);
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
}

/* ---- Tags ---- */

static void test_bust_during_the_producer_leaves_the_value_invalid(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    p.bust_tag = "product:42";
    const char *tags[] = { "product:42" };
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.call.tags = tags;
    o.call.n_tags = 1;
    char out[32];
    assert_int_equal(gos(f, "card:42", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v1"); /* the caller gets what it asked for ... */
    /* ... but the value made across the bust is not served again. */
    assert_int_equal(corral_has(f->c, "card:42", 7, NULL), CORRAL_MISS);
    p.bust_tag = NULL;
    assert_int_equal(gos(f, "card:42", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
    assert_int_equal(gos(f, "card:42", &p, &o, out, sizeof out), CORRAL_OK);
    assert_string_equal(out, "v2");
}

/* ---- Leases ---- */

static void hold_lease(fx *f, const char *key, const char *token, int64_t ttl_ms) {
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    assert_int_equal(corral__make_skey(f->c, key, strlen(key), NULL, buf, &sk), CORRAL_OK);
    assert_int_equal(
        f->c->store->ops->lease_acquire(f->c->store, &sk, token, strlen(token), ttl_ms), CORRAL_OK);
}

static void test_lease_of_a_crashed_owner_expires(void **state) {
    fx *f = *state;
    hold_lease(f, "k", "other-process", 100);
    advance_ms(f, 101); /* the owner never released it */
    prod p = new_prod(f);
    char out[32];
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_OK);
    assert_int_equal(atomic_load(&p.calls), 1);
    assert_int_equal(prefix_stats(f, "k").lease_timeouts, 0);
}

static void test_lease_held_elsewhere_computes_after_the_deadline(void **state) {
    fx *f = *state;
    hold_lease(f, "k", "other-process", 60000);
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.wait_timeout_ms = 20; /* real time: the other process never answers */
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    assert_int_equal(atomic_load(&p.calls), 1);
    assert_int_equal(prefix_stats(f, "k").lease_timeouts, 1);
}

static void test_lease_held_elsewhere_in_grace_serves_stale_at_once(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 1000;
    o.stale_ttl_ms = 5000;
    o.wait_timeout_ms = 60000; /* were it to wait, the test would hang for a minute */
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_OK);
    advance_ms(f, 2000);                        /* in grace */
    hold_lease(f, "k", "other-process", 60000); /* another process is refreshing it */
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_STALE);
    assert_string_equal(out, "v1");
    assert_int_equal(atomic_load(&p.calls), 1);
    assert_int_equal(prefix_stats(f, "k").lease_timeouts, 0);
}

static void test_lease_is_released_by_its_owner_after_loading(void **state) {
    fx *f = *state;
    prod p = new_prod(f);
    char out[32];
    assert_int_equal(gos(f, "k", &p, NULL, out, sizeof out), CORRAL_OK);
    /* Released: another owner can take it at once. */
    hold_lease(f, "k", "next-owner", 1000);
}

/* ---- The flight primitive ---- */

typedef struct got {
    int calls, rc;
    corral_value *v;
} got;

static void got_cb(void *arg, int rc, corral_value *v) {
    got *g = arg;
    g->calls++;
    g->rc = rc;
    g->v = v;
}

static void test_flight_waiters_get_the_leaders_value(void **state) {
    fx *f = *state;
    corral_flight *lead, *none;
    got a = { 0 }, b = { 0 };
    assert_int_equal(corral_flight_join(f->c, "x", 1, NULL, got_cb, &a, &lead), CORRAL_OK);
    assert_non_null(lead);
    assert_int_equal(corral_flight_join(f->c, "x", 1, NULL, got_cb, &b, &none), CORRAL_WAITING);
    assert_null(none);
    assert_int_equal(a.calls + b.calls, 0);
    corral_value *v = NULL;
    assert_int_equal(corral_set(f->c, "x", 1, "val", 3, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_get(f->c, "x", 1, NULL, &v), CORRAL_OK);
    assert_int_equal(corral_flight_finish(f->c, lead, CORRAL_OK, v), 1);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, CORRAL_OK);
    assert_ptr_equal(b.v, v);
    corral_value_unref(b.v);
    corral_value_unref(v);
    assert_int_equal(a.calls, 0); /* the leader's own callback is never called */
}

static void test_flight_cancel_calls_back_once_with_timeout(void **state) {
    fx *f = *state;
    corral_flight *lead, *none;
    got a = { 0 }, b = { 0 };
    assert_int_equal(corral_flight_join(f->c, "x", 1, NULL, got_cb, &a, &lead), CORRAL_OK);
    assert_int_equal(corral_flight_join(f->c, "x", 1, NULL, got_cb, &b, &none), CORRAL_WAITING);
    assert_int_equal(corral_flight_cancel(f->c, "x", 1, NULL, got_cb, &b), CORRAL_OK);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, CORRAL_ETIMEDOUT);
    assert_null(b.v);
    assert_int_equal(corral_flight_cancel(f->c, "x", 1, NULL, got_cb, &b), CORRAL_MISS);
    assert_int_equal(corral_flight_finish(f->c, lead, CORRAL_OK, NULL), 0);
    assert_int_equal(b.calls, 1);
}

static void test_get_or_set_waiter_gives_up_at_its_deadline(void **state) {
    fx *f = *state;
    corral_flight *lead;
    got a = { 0 };
    assert_int_equal(corral_flight_join(f->c, "k", 1, NULL, got_cb, &a, &lead), CORRAL_OK);
    prod p = new_prod(f);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.wait_timeout_ms = 10; /* the leader above never finishes in time */
    char out[32];
    assert_int_equal(gos(f, "k", &p, &o, out, sizeof out), CORRAL_ETIMEDOUT);
    assert_int_equal(atomic_load(&p.calls), 0);
    assert_int_equal(corral_flight_finish(f->c, lead, CORRAL_OK, NULL), 0); /* it was taken back */
}

/* ---- Allocation failures ---- */

static void test_get_or_set_fails_cleanly_at_every_allocation(void **state) {
    (void)state;
    for (long k = 1; k < 200; k++) {
        counting a = { 0 };
        corral_options o;
        corral_options_init(&o);
        o.allocator = counting_allocator(&a);
        corral *c;
        assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
        fx f = { .c = c };
        prod p = new_prod(&f);
        const char *tags[] = { "t1", "t2" };
        corral_load_opts lo;
        corral_load_opts_init(&lo);
        lo.call.tags = tags;
        lo.call.n_tags = 2;
        arm(&a, k);
        corral_value *v = NULL;
        int rc = corral_get_or_set(c, "k", 1, produce, &p, &lo, &v);
        long injected = disarm(&a);
        if (rc == CORRAL_OK) {
            corral_value_unref(v);
        } else {
            assert_int_equal(rc, CORRAL_ENOMEM);
            assert_null(v);
        }
        /* Whatever failed, the handle still works, and nothing leaked. */
        assert_int_equal(corral_get_or_set(c, "k", 1, produce, &p, &lo, &v), CORRAL_OK);
        corral_value_unref(v);
        corral_close(c);
        assert_balanced(&a);
        if (injected == 0) return; /* k passed the number of allocations the call makes */
    }
    fail_msg("the sweep never ran past the call's allocations");
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_get_or_set_runs_the_producer_on_a_miss_only),
        T(test_get_or_set_value_reads_back_with_plain_get),
        T(test_get_or_set_expires_at_the_ttl),
        T(test_get_or_set_failed_producer_caches_nothing),
        T(test_get_or_set_producer_without_value_is_an_error),
        T(test_get_or_set_result_ttl_zero_returns_without_caching),
        T(test_get_or_set_refuses_a_bad_key),
        T(test_get_or_set_runs_one_producer_for_concurrent_callers),
        T(test_xfetch_refreshes_early_when_the_draw_says_so),
        T(test_xfetch_keeps_the_value_when_the_draw_is_high),
        T(test_xfetch_draws_once_per_value_so_traffic_adds_no_refreshes),
        T(test_xfetch_beta_zero_never_refreshes_early),
        T(test_grace_serves_stale_to_others_while_one_refreshes),
        T(test_grace_past_the_window_is_a_miss),
        T(test_background_refresh_returns_stale_at_once),
        T(test_stale_if_error_serves_the_old_value),
        T(test_stale_if_error_past_the_window_returns_the_error),
        T(test_ttl_jitter_shortens_the_ttl),
        T(test_bust_during_the_producer_leaves_the_value_invalid),
        T(test_lease_of_a_crashed_owner_expires),
        T(test_lease_held_elsewhere_computes_after_the_deadline),
        T(test_lease_held_elsewhere_in_grace_serves_stale_at_once),
        T(test_lease_is_released_by_its_owner_after_loading),
        T(test_flight_waiters_get_the_leaders_value),
        T(test_flight_cancel_calls_back_once_with_timeout),
        T(test_get_or_set_waiter_gives_up_at_its_deadline),
        cmocka_unit_test(test_get_or_set_fails_cleanly_at_every_allocation),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
