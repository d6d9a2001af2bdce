/*
 * test_invalidate.c - namespaces, tags and events (src/invalidate.c), through the public API
 * where it can be, and through src/handle.h where a test must reach under it: deleting a tag
 * version from the store, counting store calls, the primitives the loader uses.
 *
 * Every handle gets a fake clock (time never moves unless a test moves it), a seeded random
 * source (the seed is printed; set INVALIDATE_SEED to replay) and a counting allocator, and
 * teardown checks that every byte came back. Threads meet at barriers; nothing sleeps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"

#define T0_NS     ((uint64_t)1767225600 * 1000000000u)
#define T0_NS     ((uint64_t)1767225600 * 1000000000u)
#define MAX_SWEEP 1000

#include "counting_alloc.h"

static uint64_t base_seed;

/* ---- Fixture ---- */

typedef struct fixture {
    uint64_t now_ns;
    _Atomic uint64_t rng; /* splitmix64 state of the seeded random source */
    counting alloc;
    corral *c;
    const corral__store_ops *inner; /* the store's own ops while a test wraps them */
} fixture;

static uint64_t fake_now(void *ctx) {
    return ((const fixture *)ctx)->now_ns;
}

static uint64_t seeded_rand(void *ctx) {
    fixture *f = ctx;
    uint64_t z = atomic_fetch_add(&f->rng, 0x9E3779B97F4A7C15ull) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fixture_options(fixture *f, corral_options *o) {
    corral_options_init(o);
    o->max_memory_bytes = 16u << 20;
    o->allocator = (corral_allocator){ count_alloc, count_realloc, count_free, &f->alloc };
    o->now_ns = fake_now;
    o->clock_ctx = f;
    o->rand64 = seeded_rand;
    o->rand_ctx = f;
}

static fixture *fixture_new(void) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->now_ns = T0_NS;
    atomic_init(&f->rng, base_seed);
    return f;
}

static void open_with(fixture *f, const corral_options *o) {
    assert_int_equal(corral_open_opts(&f->c, o, NULL), CORRAL_OK);
}

static int setup(void **state) {
    fixture *f = fixture_new();
    corral_options o;
    fixture_options(f, &o);
    open_with(f, &o);
    *state = f;
    return 0;
}

/* Closes the handle and checks that every byte came back. */
static int teardown(void **state) {
    fixture *f = *state;
    if (f->inner) f->c->store->ops = f->inner; /* a failed test may leave its wrapper in */
    corral_close(f->c);
    assert_int_equal(atomic_load(&f->alloc.mismatches), 0);
    assert_int_equal(atomic_load(&f->alloc.allocs), atomic_load(&f->alloc.frees));
    assert_int_equal(atomic_load(&f->alloc.bytes_in), atomic_load(&f->alloc.bytes_out));
    free(f);
    return 0;
}

/* ---- Helpers ---- */

static corral_call in_ns(const char *ns) {
    corral_call call = CORRAL_CALL_INIT;
    call.ns = ns;
    return call;
}

static corral_call with_tags(const char *const *tags, size_t n) {
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = n;
    return call;
}

static void put(corral *c, const char *key, const char *val, const corral_call *call) {
    int rc = corral_set(c, key, strlen(key), val, strlen(val), CORRAL_TTL_DEFAULT, call);
    if (rc != CORRAL_OK) fail_msg("set '%s': rc %d", key, rc);
}

static void expect(corral *c, const char *key, const char *want, const corral_call *call) {
    char buf[256];
    size_t len = 0;
    int rc = corral_get_into(c, key, strlen(key), call, buf, sizeof buf, &len);
    if (rc != CORRAL_OK) fail_msg("get '%s': rc %d, want OK", key, rc);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

static void expect_miss(corral *c, const char *key, const corral_call *call) {
    char buf[256];
    size_t len = 0;
    int rc = corral_get_into(c, key, strlen(key), call, buf, sizeof buf, &len);
    if (rc != CORRAL_MISS) fail_msg("get '%s': rc %d, want MISS", key, rc);
}

/* The internal key of a tag or namespace ("tag", "ns"). */
static corral__skey internal(corral *c, const char *kind, const char *name, char *buf) {
    corral__skey sk;
    assert_int_equal(corral__make_internal_key(c, kind, name, strlen(name), buf, &sk), CORRAL_OK);
    return sk;
}

/* Removes a tag version or namespace generation behind corral's back (eviction, a restart). */
static void vanish(corral *c, const char *kind, const char *name) {
    char buf[CORRAL__KEYBUF];
    corral__skey sk = internal(c, kind, name, buf);
    assert_int_equal(c->store->ops->del(c->store, &sk), CORRAL_OK);
}

/* True when the store still holds the bytes of user key `key` (valid or not). */
static bool raw_present(corral *c, const char *key) {
    char buf[CORRAL__KEYBUF];
    corral__skey sk;
    assert_int_equal(corral__make_skey(c, key, strlen(key), NULL, buf, &sk), CORRAL_OK);
    corral_value *v = NULL;
    int rc = c->store->ops->get(c->store, &sk, &v);
    corral_value_unref(v);
    return rc == CORRAL_OK;
}

static bool internal_present(corral *c, const char *kind, const char *name) {
    char buf[CORRAL__KEYBUF];
    corral__skey sk = internal(c, kind, name, buf);
    char v[32], hdr[32];
    size_t len, hdr_len;
    return c->store->ops->get_into(c->store, &sk, v, sizeof v, &len, hdr, sizeof hdr, &hdr_len) ==
           CORRAL_OK;
}

/* ---- Namespaces ---- */

static void test_ns_bump_hides_every_key_of_the_namespace_and_no_other(void **state) {
    fixture *f = *state;
    corral_call products = in_ns("products"), users = in_ns("users");
    put(f->c, "a", "pa", &products);
    put(f->c, "b", "pb", &products);
    put(f->c, "a", "ua", &users);
    put(f->c, "a", "plain", NULL);
    assert_int_equal(corral_ns_bump(f->c, "products"), CORRAL_OK);
    expect_miss(f->c, "a", &products);
    expect_miss(f->c, "b", &products);
    expect(f->c, "a", "ua", &users);
    expect(f->c, "a", "plain", NULL);
    put(f->c, "a", "pa2", &products); /* the new generation works as before */
    expect(f->c, "a", "pa2", &products);
}

static void test_ns_generation_is_stable_until_bumped(void **state) {
    fixture *f = *state;
    char g1[24], g2[24], g3[24];
    size_t l1, l2, l3;
    assert_int_equal(corral__ns_generation(f->c, "products", true, g1, sizeof g1, &l1), CORRAL_OK);
    assert_int_equal(corral__ns_generation(f->c, "products", true, g2, sizeof g2, &l2), CORRAL_OK);
    assert_int_equal(l1, l2);
    assert_memory_equal(g1, g2, l1);
    assert_true(l1 >= 1 && l1 <= 20);
    for (size_t i = 0; i < l1; i++)
        assert_true(g1[i] >= '0' && g1[i] <= '9');
    assert_int_equal(corral_ns_bump(f->c, "products"), CORRAL_OK);
    assert_int_equal(corral__ns_generation(f->c, "products", true, g3, sizeof g3, &l3), CORRAL_OK);
    assert_false(l3 == l1 && memcmp(g1, g3, l1) == 0);
}

static void test_reads_in_a_new_namespace_miss_and_write_nothing(void **state) {
    fixture *f = *state;
    corral_call fresh = in_ns("never-written");
    corral_value *v = NULL;
    int64_t n;
    assert_int_equal(corral_get(f->c, "a", 1, &fresh, &v), CORRAL_MISS);
    assert_null(v);
    assert_int_equal(corral_has(f->c, "a", 1, &fresh), CORRAL_MISS);
    assert_int_equal(corral_delete(f->c, "a", 1, &fresh), CORRAL_MISS);
    assert_int_equal(corral_touch(f->c, "a", 1, 1000, &fresh), CORRAL_MISS);
    assert_int_equal(corral_incr(f->c, "a", 1, 1, &fresh, &n), CORRAL_MISS);
    char g[24];
    size_t l;
    assert_int_equal(corral__ns_generation(f->c, "never-written", false, g, sizeof g, &l),
                     CORRAL_MISS); /* no generation was created by the reads */
}

static void test_make_key_read_in_a_new_namespace_misses_and_writes_nothing(void **state) {
    fixture *f = *state;
    corral_call fresh = in_ns("never-written");
    char out[CORRAL__KEYBUF], again[CORRAL__KEYBUF];
    size_t len = 99, again_len;
    assert_int_equal(corral_make_key_read(f->c, "a", 1, &fresh, out, sizeof out, &len),
                     CORRAL_MISS);
    assert_int_equal(len, 0);
    char g[24];
    size_t l;
    assert_int_equal(corral__ns_generation(f->c, "never-written", false, g, sizeof g, &l),
                     CORRAL_MISS); /* the read created no generation */
    /* Once the namespace has one, both give the same key, and make_key_read still writes none. */
    assert_int_equal(corral_make_key(f->c, "a", 1, &fresh, out, sizeof out, &len), CORRAL_OK);
    assert_int_equal(corral_make_key_read(f->c, "a", 1, &fresh, again, sizeof again, &again_len),
                     CORRAL_OK);
    assert_int_equal(again_len, len);
    assert_string_equal(again, out);
    assert_int_equal(corral_make_key_read(f->c, "a", 1, NULL, out, sizeof out, &len), CORRAL_OK);
    assert_string_equal(out, ":1:a");
}

static void test_ns_generation_vanished_keeps_old_keys_unreachable(void **state) {
    fixture *f = *state;
    corral_call products = in_ns("products");
    char g1[24], g2[24];
    size_t l1, l2;
    put(f->c, "a", "old", &products);
    assert_int_equal(corral__ns_generation(f->c, "products", true, g1, sizeof g1, &l1), CORRAL_OK);
    vanish(f->c, "ns", "products");
    expect_miss(f->c, "a", &products);
    assert_int_equal(corral__ns_generation(f->c, "products", true, g2, sizeof g2, &l2), CORRAL_OK);
    assert_false(l1 == l2 && memcmp(g1, g2, l1) == 0); /* a new generation, not the old */
    put(f->c, "a", "new", &products);
    expect(f->c, "a", "new", &products);
}

static void test_ns_bump_refuses_invalid_names(void **state) {
    fixture *f = *state;
    char n200[201], n201[202];
    memset(n200, 'n', 200);
    n200[200] = '\0';
    memset(n201, 'n', 201);
    n201[201] = '\0';
    const char *bad[] = { "", "a b", "tab\there", "del\x7f", "nl\n", n201 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (corral_ns_bump(f->c, bad[i]) != CORRAL_EINVAL) fail_msg("bad name %zu accepted", i);
    assert_int_equal(corral_ns_bump(f->c, NULL), CORRAL_EINVAL);
    assert_int_equal(corral_ns_bump(NULL, "products"), CORRAL_EINVAL);
    assert_int_equal(corral_ns_bump(f->c, n200), CORRAL_OK);
    corral_call call = in_ns("a b");
    assert_int_equal(corral_set(f->c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_EINVAL);
}

static void test_ns_name_whose_internal_key_is_too_long_is_refused(void **state) {
    fixture *f = fixture_new();
    corral_options o;
    fixture_options(f, &o);
    char prefix[101];
    memset(prefix, 'p', 100);
    prefix[100] = '\0';
    o.key_prefix = prefix; /* 100 + ":ns:" + 150 > 250 */
    open_with(f, &o);
    *state = f;
    char name[151];
    memset(name, 'n', 150);
    name[150] = '\0';
    assert_int_equal(corral_ns_bump(f->c, name), CORRAL_EINVAL);
    assert_int_equal(corral_tag_bust(f->c, name), CORRAL_EINVAL);
    assert_int_equal(corral_ns_bump(f->c, "short"), CORRAL_OK);
}

static void test_binary_handle_accepts_names_with_spaces(void **state) {
    fixture *f = fixture_new();
    corral_options o;
    fixture_options(f, &o);
    o.allow_binary_keys = true;
    open_with(f, &o);
    *state = f;
    const char *tags[] = { "a tag" };
    corral_call call = with_tags(tags, 1);
    put(f->c, "k", "v", &call);
    assert_int_equal(corral_ns_bump(f->c, "a namespace"), CORRAL_OK);
    assert_int_equal(corral_tag_bust(f->c, "a tag"), CORRAL_OK);
    expect_miss(f->c, "k", NULL);
}

/* ---- Tags ---- */

/* Store wrappers: a test replaces some of the store's ops with `wrapped`, which call the store's
 * own (`inner_ops`); teardown puts the store's own back. One wrapped handle at a time. */
static const corral__store_ops *inner_ops;
static corral__store_ops wrapped;

static void wrap_store(fixture *f) {
    inner_ops = f->inner = f->c->store->ops;
    wrapped = *inner_ops;
    f->c->store->ops = &wrapped;
}

static void unwrap_store(fixture *f) {
    f->c->store->ops = f->inner;
    f->inner = NULL;
}

/* Counts every call, to show that a bust does not scan. */
static atomic_int store_calls;

static int cnt_get(corral__store *s, const corral__skey *k, corral_value **out) {
    atomic_fetch_add(&store_calls, 1);
    return inner_ops->get(s, k, out);
}
static int cnt_get_into(corral__store *s, const corral__skey *k, void *buf, size_t cap, size_t *len,
                        void *hdr, size_t hdr_cap, size_t *hdr_len) {
    atomic_fetch_add(&store_calls, 1);
    return inner_ops->get_into(s, k, buf, cap, len, hdr, hdr_cap, hdr_len);
}
static int cnt_set(corral__store *s, const corral__skey *k, const void *val, size_t len,
                   int64_t ttl_ms, corral__set_mode mode, unsigned flags) {
    atomic_fetch_add(&store_calls, 1);
    return inner_ops->set(s, k, val, len, ttl_ms, mode, flags);
}
static int cnt_del(corral__store *s, const corral__skey *k) {
    atomic_fetch_add(&store_calls, 1);
    return inner_ops->del(s, k);
}

static void test_tag_bust_invalidates_10k_values_with_one_store_write(void **state) {
    fixture *f = *state;
    const char *tags[] = { "featured" };
    corral_call call = with_tags(tags, 1);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "product:%d", i);
        put(f->c, key, "card", &call);
    }
    expect(f->c, "product:9999", "card", NULL);
    wrap_store(f);
    wrapped.get = cnt_get;
    wrapped.get_into = cnt_get_into;
    wrapped.set = cnt_set;
    wrapped.del = cnt_del;
    atomic_store(&store_calls, 0);
    assert_int_equal(corral_tag_bust(f->c, "featured"), CORRAL_OK);
    assert_int_equal(atomic_load(&store_calls), 1);
    unwrap_store(f);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "product:%d", i);
        expect_miss(f->c, key, NULL);
    }
}

static void test_value_with_several_tags_dies_with_any_of_them(void **state) {
    fixture *f = *state;
    const char *t1[] = { "product:42", "featured" }, *t2[] = { "product:43", "featured" },
               *t3[] = { "product:42" };
    corral_call c1 = with_tags(t1, 2), c2 = with_tags(t2, 2), c3 = with_tags(t3, 1);
    put(f->c, "v1", "1", &c1);
    put(f->c, "v2", "2", &c2);
    put(f->c, "v3", "3", &c3);
    assert_int_equal(corral_tag_bust(f->c, "product:42"), CORRAL_OK);
    expect_miss(f->c, "v1", NULL);
    expect(f->c, "v2", "2", NULL);
    expect_miss(f->c, "v3", NULL);
    assert_int_equal(corral_tag_bust(f->c, "featured"), CORRAL_OK);
    expect_miss(f->c, "v2", NULL);
}

static void test_untagged_values_and_other_tags_survive_a_bust(void **state) {
    fixture *f = *state;
    const char *other[] = { "other" };
    corral_call call = with_tags(other, 1);
    put(f->c, "plain", "p", NULL);
    put(f->c, "tagged", "t", &call);
    assert_int_equal(corral_tag_bust(f->c, "featured"), CORRAL_OK); /* never used: fine */
    expect(f->c, "plain", "p", NULL);
    expect(f->c, "tagged", "t", NULL);
}

static void test_tag_version_vanished_counts_as_busted(void **state) {
    fixture *f = *state;
    const char *tags[] = { "featured" };
    corral_call call = with_tags(tags, 1);
    put(f->c, "a", "old a", &call);
    put(f->c, "b", "old b", &call);
    vanish(f->c, "tag", "featured");
    expect_miss(f->c, "a", NULL);
    put(f->c, "c", "new c", &call); /* recreates the tag's version: a new one */
    expect(f->c, "c", "new c", NULL);
    expect_miss(f->c, "b", NULL); /* not revived by the new version */
    assert_true(raw_present(f->c, "b"));
}

/* In a tiny LRU store, the tag's version is the coldest entry and gets evicted while raw reads
 * keep the value hot; the value must read as a miss from then on. Presence is checked only at
 * the end: a check is a read, and a read would warm the version too. */
static void test_tag_version_evicted_from_a_tiny_store_counts_as_busted(void **state) {
    fixture *f = fixture_new();
    corral_options o;
    fixture_options(f, &o);
    o.max_memory_bytes = 16384;
    o.shards = 1;
    o.eviction = CORRAL_EVICT_LRU;
    open_with(f, &o);
    *state = f;
    const char *tags[] = { "featured" };
    corral_call call = with_tags(tags, 1);
    put(f->c, "victim", "cached", &call);
    char key[32], filler[200];
    memset(filler, 'x', sizeof filler - 1);
    filler[sizeof filler - 1] = '\0';
    /* 200 fillers are several times what the store holds; a raw hit of the victim before each
     * moves it to the LRU head. */
    for (int i = 0; i < 200; i++) {
        assert_true(raw_present(f->c, "victim"));
        snprintf(key, sizeof key, "filler:%d", i);
        put(f->c, key, filler, NULL);
    }
    assert_false(internal_present(f->c, "tag", "featured"));
    assert_true(raw_present(f->c, "victim"));
    expect_miss(f->c, "victim", NULL);
    put(f->c, "victim", "fresh", &call); /* a new version is created; the new value is good */
    expect(f->c, "victim", "fresh", NULL);
}

static void test_tag_bust_without_memory_deletes_the_version_and_still_busts(void **state) {
    fixture *f = *state;
    const char *tags[] = { "featured" };
    corral_call call = with_tags(tags, 1);
    put(f->c, "a", "old", &call);
    /* A reference held on the version: the memory store rewrites in place only a value nobody
     * holds, so the bump must allocate. */
    char buf[CORRAL__KEYBUF];
    corral__skey sk = internal(f->c, "tag", "featured", buf);
    corral_value *held = NULL;
    assert_int_equal(f->c->store->ops->get(f->c->store, &sk, &held), CORRAL_OK);
    arm(&f->alloc, 1); /* the store cannot allocate the new version */
    int rc = corral_tag_bust(f->c, "featured");
    assert_int_equal(disarm(&f->alloc), 1);
    assert_int_equal(rc, CORRAL_OK);
    assert_false(internal_present(f->c, "tag", "featured"));
    expect_miss(f->c, "a", NULL);
    corral_value_unref(held);
}

static void test_set_refuses_bad_tags_and_writes_nothing(void **state) {
    fixture *f = *state;
    char n201[202];
    memset(n201, 't', 201);
    n201[201] = '\0';
    const char *bad[] = { "", "a b", "ctl\x01", n201 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *tags[] = { "fine", bad[i] };
        corral_call call = with_tags(tags, 2);
        int rc = corral_set(f->c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &call);
        if (rc != CORRAL_EINVAL) fail_msg("bad tag %zu: rc %d", i, rc);
    }
    const char *many[33];
    for (size_t i = 0; i < 33; i++)
        many[i] = "t";
    corral_call call = with_tags(many, 33);
    assert_int_equal(corral_set(f->c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_EINVAL);
    call.n_tags = 32;
    assert_int_equal(corral_set(f->c, "k32", 3, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_OK);
    expect_miss(f->c, "k", NULL);
    assert_false(internal_present(f->c, "tag", "fine")); /* names are checked before reads */
}

/* Envelopes corral never writes but the store may hold (another writer, corruption). */
static void test_tags_valid_refuses_tags_corral_would_not_write(void **state) {
    fixture *f = *state;
    const char *tags[] = { "t" };
    corral__env env;
    memset(&env, 0, sizeof env);
    char vbuf[21];
    assert_int_equal(corral__tags_read(f->c, tags, 1, &env, vbuf, sizeof vbuf), CORRAL_OK);
    assert_true(corral__tags_valid(f->c, &env));
    char n201[201];
    memset(n201, 't', sizeof n201);
    corral__env bad = env;
    bad.tags[0].name_len = 0;
    assert_false(corral__tags_valid(f->c, &bad));
    bad = env;
    bad.tags[0].name = n201;
    bad.tags[0].name_len = sizeof n201;
    assert_false(corral__tags_valid(f->c, &bad));
    bad = env;
    bad.tags[0].version_len = 0;
    assert_false(corral__tags_valid(f->c, &bad));
}

typedef struct two_readers {
    corral *c;
    pthread_barrier_t start;
    const char *tag;
    char version[2][24];
    size_t len[2];
    int rc[2];
} two_readers;

static void *read_tag(void *arg, int who) {
    two_readers *t = arg;
    const char *tags[] = { t->tag };
    corral__env env;
    memset(&env, 0, sizeof env);
    char vbuf[21];
    pthread_barrier_wait(&t->start);
    t->rc[who] = corral__tags_read(t->c, tags, 1, &env, vbuf, sizeof vbuf);
    t->len[who] = env.tags[0].version_len;
    if (t->rc[who] == CORRAL_OK) memcpy(t->version[who], env.tags[0].version, t->len[who]);
    return NULL;
}

static void *read_tag_1(void *arg) {
    return read_tag(arg, 1);
}

/* Holds the first two readers that miss until both have missed, so both go on to create. */
static pthread_barrier_t both_missed;
static atomic_int misses;

static int miss_together_get_into(corral__store *s, const corral__skey *k, void *buf, size_t cap,
                                  size_t *len, void *hdr, size_t hdr_cap, size_t *hdr_len) {
    int rc = inner_ops->get_into(s, k, buf, cap, len, hdr, hdr_cap, hdr_len);
    if (rc == CORRAL_MISS && atomic_fetch_add(&misses, 1) < 2) pthread_barrier_wait(&both_missed);
    return rc;
}

static void test_two_creators_of_a_tag_version_agree(void **state) {
    fixture *f = *state;
    wrap_store(f);
    wrapped.get_into = miss_together_get_into;
    for (int round = 0; round < 20; round++) {
        two_readers t = { .c = f->c };
        char tag[32];
        snprintf(tag, sizeof tag, "fresh:%d", round);
        t.tag = tag;
        atomic_store(&misses, 0);
        assert_int_equal(pthread_barrier_init(&both_missed, NULL, 2), 0);
        assert_int_equal(pthread_barrier_init(&t.start, NULL, 2), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, read_tag_1, &t), 0);
        read_tag(&t, 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        pthread_barrier_destroy(&t.start);
        pthread_barrier_destroy(&both_missed);
        assert_int_equal(t.rc[0], CORRAL_OK);
        assert_int_equal(t.rc[1], CORRAL_OK);
        assert_int_equal(t.len[0], t.len[1]);
        assert_memory_equal(t.version[0], t.version[1], t.len[0]);
    }
    unwrap_store(f);
}

/* ---- The set-during-bust race ---- */

/* The loader's order, step by step: read tag versions, (bust), write. */
static void test_value_whose_tags_were_read_before_a_bust_is_written_invalid(void **state) {
    fixture *f = *state;
    const char *tags[] = { "featured" };
    corral__env env;
    memset(&env, 0, sizeof env);
    char vbuf[21], kbuf[CORRAL__KEYBUF];
    assert_int_equal(corral__tags_read(f->c, tags, 1, &env, vbuf, sizeof vbuf), CORRAL_OK);
    assert_int_equal(corral_tag_bust(f->c, "featured"), CORRAL_OK);
    corral__skey sk;
    assert_int_equal(corral__make_skey(f->c, "k", 1, NULL, kbuf, &sk), CORRAL_OK);
    assert_int_equal(
        corral__store_set_env(f->c, &sk, &env, "old", 3, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS),
        CORRAL_OK);
    assert_true(raw_present(f->c, "k"));
    expect_miss(f->c, "k", NULL);
}

typedef struct race {
    corral *c;
    pthread_barrier_t produced_started, bust_done;
    bool bust_inside; /* the producer busts the tag itself */
    atomic_int runs;
} race;

static int slow_producer(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    race *r = arg;
    atomic_fetch_add(&r->runs, 1);
    if (r->bust_inside) {
        int rc = corral_tag_bust(r->c, "featured");
        if (rc != CORRAL_OK) return rc;
    } else {
        pthread_barrier_wait(&r->produced_started); /* the tags were read */
        pthread_barrier_wait(&r->bust_done);
    }
    return corral_result_set(out, "stale", 5);
}

static int load(race *r, corral_value **v) {
    corral_load_opts o;
    corral_load_opts_init(&o);
    const char *tags[] = { "featured" };
    o.call.tags = tags;
    o.call.n_tags = 1;
    o.beta = 0;
    return corral_get_or_set(r->c, "featured_products:v3", 20, slow_producer, r, &o, v);
}

static void *load_thread(void *arg) {
    corral_value *v = NULL;
    if (load(arg, &v) == CORRAL_OK) corral_value_unref(v);
    return NULL;
}

static void test_bust_inside_the_producer_leaves_its_value_invalid(void **state) {
    fixture *f = *state;
    race r = { .c = f->c, .bust_inside = true };
    corral_value *v = NULL;
    assert_int_equal(load(&r, &v), CORRAL_OK); /* its own caller still gets what it made */
    corral_value_unref(v);
    assert_true(raw_present(f->c, "featured_products:v3"));
    expect_miss(f->c, "featured_products:v3", NULL);
    assert_int_equal(load(&r, &v), CORRAL_OK); /* the next caller makes a new one */
    corral_value_unref(v);
    assert_int_equal(atomic_load(&r.runs), 2);
}

static void test_bust_from_another_thread_during_a_set_does_not_resurrect(void **state) {
    fixture *f = *state;
    race r = { .c = f->c };
    assert_int_equal(pthread_barrier_init(&r.produced_started, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&r.bust_done, NULL, 2), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, load_thread, &r), 0);
    pthread_barrier_wait(&r.produced_started);
    int rc = corral_tag_bust(f->c, "featured");
    pthread_barrier_wait(&r.bust_done);
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_barrier_destroy(&r.produced_started);
    pthread_barrier_destroy(&r.bust_done);
    assert_int_equal(rc, CORRAL_OK);
    assert_true(raw_present(f->c, "featured_products:v3"));
    expect_miss(f->c, "featured_products:v3", NULL);
}

/* ---- Events ---- */

static const corral_field product_42[] = {
    { "id", "42" }, { "category", "7" }, { "is_featured", "0" }, { "created", "0" }
};

static void on_ok(corral *c, const char *event, const corral_rule *rule) {
    int rc = corral_on(c, event, rule);
    if (rc != CORRAL_OK) fail_msg("corral_on '%s': rc %d", event, rc);
}

static void emit_ok(corral *c, const char *event, const corral_field *fields, size_t n,
                    size_t want_busted) {
    size_t busted = 99;
    int rc = corral_emit(c, event, fields, n, &busted);
    if (rc != CORRAL_OK) fail_msg("emit '%s': rc %d", event, rc);
    assert_int_equal(busted, want_busted);
}

static void test_emit_busts_the_keys_tags_and_namespaces_its_templates_name(void **state) {
    fixture *f = *state;
    const char *keys[] = { "featured_products:v3", "product:{id}" };
    const char *tags[] = { "product:{id}" }, *nss[] = { "category:{category}" };
    corral_rule rule = { keys, 2, tags, 1, nss, 1, NULL, NULL };
    on_ok(f->c, "product.saved", &rule);
    const char *t42[] = { "product:42" }, *t43[] = { "product:43" };
    corral_call c42 = with_tags(t42, 1), c43 = with_tags(t43, 1), cat = in_ns("category:7");
    put(f->c, "featured_products:v3", "list", NULL);
    put(f->c, "product:42", "p42", NULL);
    put(f->c, "product:43", "p43", NULL);
    put(f->c, "card:42", "c42", &c42);
    put(f->c, "card:43", "c43", &c43);
    put(f->c, "page", "cat7", &cat);
    emit_ok(f->c, "product.saved", product_42, 4, 4);
    expect_miss(f->c, "featured_products:v3", NULL);
    expect_miss(f->c, "product:42", NULL);
    expect_miss(f->c, "card:42", NULL);
    expect_miss(f->c, "page", &cat);
    expect(f->c, "product:43", "p43", NULL);
    expect(f->c, "card:43", "c43", NULL);
}

static void test_emit_counts_keys_only_when_they_were_there(void **state) {
    fixture *f = *state;
    const char *keys[] = { "product:{id}", "absent:{id}" }, *tags[] = { "t" };
    corral_rule rule = { keys, 2, tags, 1, NULL, 0, NULL, NULL };
    on_ok(f->c, "product.saved", &rule);
    put(f->c, "product:42", "p", NULL);
    emit_ok(f->c, "product.saved", product_42, 4, 2); /* product:42 and the tag */
    emit_ok(f->c, "product.saved", product_42, 4, 1); /* the tag again */
}

typedef struct order_log {
    char seen[8];
    size_t n;
} order_log;

typedef struct logged_rule {
    order_log *log;
    char id;
} logged_rule;

static int log_when(void *arg, const char *event, const corral_field *fields, size_t n) {
    (void)event, (void)fields, (void)n;
    logged_rule *r = arg;
    r->log->seen[r->log->n++] = r->id;
    return 1;
}

static void test_emit_applies_every_rule_of_the_event_in_registration_order(void **state) {
    fixture *f = *state;
    order_log log = { .n = 0 };
    logged_rule l1 = { &log, '1' }, l2 = { &log, '2' }, l3 = { &log, '3' };
    const char *k1[] = { "one" }, *k2[] = { "two" };
    corral_rule r1 = { k1, 1, NULL, 0, NULL, 0, log_when, &l1 };
    corral_rule r2 = { k2, 1, NULL, 0, NULL, 0, log_when, &l2 };
    corral_rule r3 = { k2, 1, NULL, 0, NULL, 0, log_when, &l3 };
    on_ok(f->c, "e", &r2);
    on_ok(f->c, "e", &r3);
    on_ok(f->c, "e", &r1);
    on_ok(f->c, "other", &r1);
    put(f->c, "one", "1", NULL);
    put(f->c, "two", "2", NULL);
    emit_ok(f->c, "e", NULL, 0, 2); /* the second rule finds "two" gone */
    assert_int_equal(log.n, 3);
    assert_memory_equal(log.seen, "231", 3);
    expect_miss(f->c, "one", NULL);
    expect_miss(f->c, "two", NULL);
}

static const char *field(const corral_field *fields, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0) return fields[i].value;
    return NULL;
}

/* The guide's receiver: `if instance.is_featured or kwargs.get("created")`. */
static int featured_or_created(void *arg, const char *event, const corral_field *fields, size_t n) {
    (void)arg, (void)event;
    const char *featured = field(fields, n, "is_featured"), *created = field(fields, n, "created");
    return (featured && strcmp(featured, "1") == 0) || (created && strcmp(created, "1") == 0);
}

static void test_emit_when_callback_decides_like_the_guide_s_receiver(void **state) {
    fixture *f = *state;
    const char *keys[] = { "featured_products:v3" };
    corral_rule rule = { keys, 1, NULL, 0, NULL, 0, featured_or_created, NULL };
    on_ok(f->c, "product.saved", &rule);
    on_ok(f->c, "product.deleted", &rule);
    put(f->c, "featured_products:v3", "list", NULL);
    emit_ok(f->c, "product.saved", product_42, 4, 0); /* neither featured nor new */
    expect(f->c, "featured_products:v3", "list", NULL);
    corral_field created[] = { { "id", "44" }, { "is_featured", "0" }, { "created", "1" } };
    emit_ok(f->c, "product.saved", created, 3, 1);
    expect_miss(f->c, "featured_products:v3", NULL);
    put(f->c, "featured_products:v3", "list", NULL);
    corral_field featured[] = { { "id", "42" }, { "is_featured", "1" } };
    emit_ok(f->c, "product.deleted", featured, 2, 1);
    expect_miss(f->c, "featured_products:v3", NULL);
}

static int fail_when(void *arg, const char *event, const corral_field *fields, size_t n) {
    (void)arg, (void)event, (void)fields, (void)n;
    return CORRAL_ESTORE;
}

static void test_emit_returns_a_when_error_and_busts_nothing(void **state) {
    fixture *f = *state;
    const char *keys[] = { "a" }, *tags[] = { "t" };
    corral_rule first = { keys, 1, tags, 1, NULL, 0, NULL, NULL };
    corral_rule failing = { keys, 1, NULL, 0, NULL, 0, fail_when, NULL };
    on_ok(f->c, "e", &first);
    on_ok(f->c, "e", &failing);
    corral_call tagged = with_tags(tags, 1);
    put(f->c, "a", "1", NULL);
    put(f->c, "b", "2", &tagged);
    size_t busted = 99;
    assert_int_equal(corral_emit(f->c, "e", NULL, 0, &busted), CORRAL_ESTORE);
    assert_int_equal(busted, 0);
    expect(f->c, "a", "1", NULL);
    expect(f->c, "b", "2", NULL);
}

static void test_emit_with_a_missing_field_fails_and_busts_nothing(void **state) {
    fixture *f = *state;
    const char *k1[] = { "featured_products:v3" }, *k2[] = { "product:{id}", "x:{missing}" };
    corral_rule fine = { k1, 1, NULL, 0, NULL, 0, NULL, NULL };
    corral_rule needs = { k2, 2, NULL, 0, NULL, 0, NULL, NULL };
    on_ok(f->c, "product.saved", &fine);
    on_ok(f->c, "product.saved", &needs);
    put(f->c, "featured_products:v3", "list", NULL);
    put(f->c, "product:42", "p", NULL);
    size_t busted = 99;
    assert_int_equal(corral_emit(f->c, "product.saved", product_42, 4, &busted), CORRAL_EINVAL);
    assert_int_equal(busted, 0);
    expect(f->c, "featured_products:v3", "list", NULL);
    expect(f->c, "product:42", "p", NULL);
}

static void test_emit_refuses_expansions_that_are_not_keys_or_names(void **state) {
    fixture *f = *state;
    const char *keys[] = { "product:{id}" }, *tags[] = { "tag:{id}" }, *lit[] = { "kept" };
    corral_rule key_rule = { keys, 1, NULL, 0, NULL, 0, NULL, NULL };
    corral_rule tag_rule = { lit, 1, tags, 1, NULL, 0, NULL, NULL };
    on_ok(f->c, "k", &key_rule);
    on_ok(f->c, "t", &tag_rule);
    put(f->c, "kept", "v", NULL);
    corral_field spaced[] = { { "id", "4 2" } }, empty[] = { { "id", "" } };
    size_t busted = 99;
    assert_int_equal(corral_emit(f->c, "k", spaced, 1, &busted), CORRAL_EBADKEY);
    assert_int_equal(corral_emit(f->c, "t", spaced, 1, &busted), CORRAL_EINVAL);
    assert_int_equal(busted, 0);
    char big[300];
    memset(big, '9', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    corral_field huge[] = { { "id", big } };
    assert_int_equal(corral_emit(f->c, "t", huge, 1, &busted), CORRAL_EINVAL);
    assert_int_equal(corral_emit(f->c, "k", huge, 1, &busted), CORRAL_EBADKEY);
    emit_ok(f->c, "k", empty, 1, 0); /* "product:" is a valid key, absent */
    expect(f->c, "kept", "v", NULL);
}

static void test_emit_checks_its_arguments(void **state) {
    fixture *f = *state;
    const char *keys[] = { "k:{id}" };
    corral_rule rule = { keys, 1, NULL, 0, NULL, 0, NULL, NULL };
    on_ok(f->c, "e", &rule);
    size_t busted = 99;
    corral_field null_value[] = { { "id", NULL } }, null_name[] = { { NULL, "1" } };
    assert_int_equal(corral_emit(NULL, "e", NULL, 0, &busted), CORRAL_EINVAL);
    assert_int_equal(busted, 0);
    assert_int_equal(corral_emit(f->c, NULL, NULL, 0, &busted), CORRAL_EINVAL);
    assert_int_equal(corral_emit(f->c, "e", NULL, 1, &busted), CORRAL_EINVAL);
    assert_int_equal(corral_emit(f->c, "e", null_value, 1, &busted), CORRAL_EINVAL);
    assert_int_equal(corral_emit(f->c, "e", null_name, 1, &busted), CORRAL_EINVAL);
    emit_ok(f->c, "no rules", NULL, 0, 0);
    assert_int_equal(corral_emit(f->c, "no rules", NULL, 0, NULL), CORRAL_OK);
}

static void test_template_braces_escape_and_first_field_wins(void **state) {
    fixture *f = *state;
    const char *keys[] = { "{{literal}}:{id}", "{{{id}}}" };
    corral_rule rule = { keys, 2, NULL, 0, NULL, 0, NULL, NULL };
    on_ok(f->c, "e", &rule);
    put(f->c, "{literal}:42", "1", NULL);
    put(f->c, "{42}", "2", NULL);
    corral_field fields[] = { { "id", "42" }, { "id", "43" } };
    emit_ok(f->c, "e", fields, 2, 2);
    expect_miss(f->c, "{literal}:42", NULL);
    expect_miss(f->c, "{42}", NULL);
}

static void test_on_refuses_malformed_rules(void **state) {
    fixture *f = *state;
    const char *bad[] = { "product:{id", "product:id}", "{}", "a{b{c}}", "}{", "{a}}", "",
                          "a b",         "k:{id}\x7f" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *tpl[] = { "fine:{id}", bad[i] };
        corral_rule as_key = { tpl, 2, NULL, 0, NULL, 0, NULL, NULL };
        corral_rule as_tag = { NULL, 0, tpl, 2, NULL, 0, NULL, NULL };
        corral_rule as_ns = { NULL, 0, NULL, 0, tpl, 2, NULL, NULL };
        if (corral_on(f->c, "e", &as_key) != CORRAL_EINVAL ||
            corral_on(f->c, "e", &as_tag) != CORRAL_EINVAL ||
            corral_on(f->c, "e", &as_ns) != CORRAL_EINVAL)
            fail_msg("template '%s' accepted", bad[i]);
    }
    const char *with_null[] = { "a", NULL };
    corral_rule null_tpl = { with_null, 2, NULL, 0, NULL, 0, NULL, NULL };
    corral_rule null_array = { NULL, 1, NULL, 0, NULL, 0, NULL, NULL };
    corral_rule fine = { with_null, 1, NULL, 0, NULL, 0, NULL, NULL };
    assert_int_equal(corral_on(f->c, "e", &null_tpl), CORRAL_EINVAL);
    assert_int_equal(corral_on(f->c, "e", &null_array), CORRAL_EINVAL);
    assert_int_equal(corral_on(f->c, "", &fine), CORRAL_EINVAL);
    assert_int_equal(corral_on(f->c, NULL, &fine), CORRAL_EINVAL);
    assert_int_equal(corral_on(f->c, "e", NULL), CORRAL_EINVAL);
    assert_int_equal(corral_on(NULL, "e", &fine), CORRAL_EINVAL);
    emit_ok(f->c, "e", product_42, 4, 0); /* nothing was registered */
}

static void test_on_copies_the_rule(void **state) {
    fixture *f = *state;
    char event[16] = "product.saved", key[16] = "product:{id}";
    const char *keys[] = { key };
    corral_rule rule = { keys, 1, NULL, 0, NULL, 0, NULL, NULL };
    on_ok(f->c, event, &rule);
    memset(event, 'x', sizeof event - 1);
    memset(key, 'y', sizeof key - 1);
    keys[0] = NULL;
    put(f->c, "product:42", "p", NULL);
    emit_ok(f->c, "product.saved", product_42, 4, 1);
    expect_miss(f->c, "product:42", NULL);
}

static void test_many_events_keep_their_own_rules(void **state) {
    fixture *f = *state;
    char event[32], key[32];
    for (int i = 0; i < 300; i++) { /* more events than the table has chains */
        snprintf(event, sizeof event, "event.%d", i);
        snprintf(key, sizeof key, "key:%d", i);
        const char *keys[] = { key };
        corral_rule rule = { keys, 1, NULL, 0, NULL, 0, NULL, NULL };
        on_ok(f->c, event, &rule);
        put(f->c, key, "v", NULL);
    }
    emit_ok(f->c, "event.123", NULL, 0, 1);
    expect_miss(f->c, "key:123", NULL);
    expect(f->c, "key:122", "v", NULL);
    expect(f->c, "key:124", "v", NULL);
}

/* ---- Allocation-failure sweeps ---- */

static void test_on_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    const char *tags[] = { "t:{id}" };
    corral_rule rule = { NULL, 0, tags, 1, NULL, 0, NULL, NULL };
    /* Round 0 registers a new event; round 1 adds to an existing one. */
    for (int round = 0; round < 2; round++) {
        size_t before = round; /* rules already registered */
        long k = 1;
        for (; k < MAX_SWEEP; k++) {
            arm(&f->alloc, k);
            int rc = corral_on(f->c, "e", &rule);
            long failed = disarm(&f->alloc);
            if (rc == CORRAL_OK && failed == 0) break;
            if (rc != CORRAL_ENOMEM) fail_msg("round %d, k=%ld: rc %d", round, k, rc);
            emit_ok(f->c, "e", product_42, 4, before); /* unchanged */
        }
        assert_true(k > 1 && k < MAX_SWEEP);
        emit_ok(f->c, "e", product_42, 4, before + 1);
    }
}

/* Sets what the sweep's emit busts: keys, a tagged value, a namespaced value. */
static void sweep_state(corral *c, const char *const *keys, size_t n) {
    const char *tags[] = { "product:42" };
    corral_call tagged = with_tags(tags, 1), cat = in_ns("category:7");
    for (size_t i = 0; i < n; i++)
        put(c, keys[i], "v", NULL);
    put(c, "card", "c", &tagged);
    put(c, "page", "p", &cat);
}

static void test_emit_fails_cleanly_on_every_allocation_failure(void **state) {
    fixture *f = *state;
    /* Long expansions, so the scratch buffer grows (realloc) during the emit. */
    char k[3][200];
    const char *keys[3];
    for (int i = 0; i < 3; i++) {
        memset(k[i], 'a' + i, 150);
        strcpy(k[i] + 150, ":{id}");
        keys[i] = k[i];
    }
    const char *tags[] = { "product:{id}" }, *nss[] = { "category:{category}" };
    corral_rule rule = { keys, 3, tags, 1, nss, 1, NULL, NULL };
    on_ok(f->c, "product.saved", &rule);
    char expanded[3][200];
    const char *exp[3];
    for (int i = 0; i < 3; i++) {
        memset(expanded[i], 'a' + i, 150);
        strcpy(expanded[i] + 150, ":42");
        exp[i] = expanded[i];
    }
    corral_call cat = in_ns("category:7");
    long k_ok = 0;
    for (long kk = 1; kk < MAX_SWEEP && !k_ok; kk++) {
        sweep_state(f->c, exp, 3);
        size_t busted = 99;
        arm(&f->alloc, kk);
        int rc = corral_emit(f->c, "product.saved", product_42, 4, &busted);
        long failed = disarm(&f->alloc);
        if (rc == CORRAL_ENOMEM) {
            assert_int_equal(busted, 0);
            for (int i = 0; i < 3; i++)
                expect(f->c, exp[i], "v", NULL);
            expect(f->c, "card", "c", NULL);
            expect(f->c, "page", "p", &cat);
            continue;
        }
        if (rc != CORRAL_OK) fail_msg("k=%ld: rc %d", kk, rc);
        /* Past the expansion, a failed write of a new version is a deletion: still busted. */
        assert_int_equal(busted, 5);
        for (int i = 0; i < 3; i++)
            expect_miss(f->c, exp[i], NULL);
        expect_miss(f->c, "card", NULL);
        expect_miss(f->c, "page", &cat);
        if (failed == 0) k_ok = kk;
    }
    assert_true(k_ok > 2); /* at least the scratch buffer and its growth failed first */
}

/* ---- Concurrency ---- */

#define EMITTERS  2
#define EMITS     100
#define REGISTERS 100

typedef struct crowd {
    corral *c;
    pthread_barrier_t start;
    atomic_int errors; /* failures seen off the main thread */
} crowd;

static void *emitter(void *arg) {
    crowd *w = arg;
    pthread_barrier_wait(&w->start);
    size_t prev = 0;
    for (int i = 0; i < EMITS; i++) {
        size_t busted = 0;
        int rc = corral_emit(w->c, "product.saved", product_42, 4, &busted);
        /* Rules are only ever added: each emit sees at least the rules the last one saw. */
        if (rc != CORRAL_OK || busted < prev || busted > REGISTERS + 1)
            atomic_fetch_add(&w->errors, 1);
        prev = busted;
    }
    return NULL;
}

static void *registrar(void *arg) {
    crowd *w = arg;
    const char *tags[] = { "product:{id}" };
    corral_rule rule = { NULL, 0, tags, 1, NULL, 0, NULL, NULL };
    char other[32];
    pthread_barrier_wait(&w->start);
    for (int i = 0; i < REGISTERS; i++) {
        snprintf(other, sizeof other, "other.%d", i); /* new chains while emitters look up */
        if (corral_on(w->c, "product.saved", &rule) != CORRAL_OK ||
            corral_on(w->c, other, &rule) != CORRAL_OK)
            atomic_fetch_add(&w->errors, 1);
    }
    return NULL;
}

static void test_emits_run_while_rules_are_registered(void **state) {
    fixture *f = *state;
    const char *tags[] = { "product:{id}" };
    corral_rule rule = { NULL, 0, tags, 1, NULL, 0, NULL, NULL };
    on_ok(f->c, "product.saved", &rule);
    crowd w = { .c = f->c };
    assert_int_equal(pthread_barrier_init(&w.start, NULL, EMITTERS + 1), 0);
    pthread_t th[EMITTERS + 1];
    for (int i = 0; i < EMITTERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, emitter, &w), 0);
    assert_int_equal(pthread_create(&th[EMITTERS], NULL, registrar, &w), 0);
    for (int i = 0; i <= EMITTERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&w.start);
    assert_int_equal(atomic_load(&w.errors), 0);
    emit_ok(f->c, "product.saved", product_42, 4, REGISTERS + 1);
}

typedef struct readers {
    corral *c;
    pthread_barrier_t start;
    atomic_int errors;
} readers;

static void *read_tagged(void *arg) {
    readers *r = arg;
    pthread_barrier_wait(&r->start);
    for (int i = 0; i < 2000; i++) {
        char buf[16];
        size_t len;
        int rc = corral_get_into(r->c, "card", 4, NULL, buf, sizeof buf, &len);
        if (rc != CORRAL_OK && rc != CORRAL_MISS) atomic_fetch_add(&r->errors, 1);
    }
    return NULL;
}

static void test_reads_of_tagged_values_race_busts_and_sets_safely(void **state) {
    fixture *f = *state;
    const char *tags[] = { "product:42", "featured" };
    corral_call call = with_tags(tags, 2);
    put(f->c, "card", "c", &call);
    readers r = { .c = f->c };
    assert_int_equal(pthread_barrier_init(&r.start, NULL, 3), 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, read_tagged, &r), 0);
    pthread_barrier_wait(&r.start);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(corral_tag_bust(f->c, i % 2 ? "featured" : "product:42"), CORRAL_OK);
        put(f->c, "card", "c", &call);
    }
    assert_int_equal(corral_tag_bust(f->c, "featured"), CORRAL_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&r.start);
    assert_int_equal(atomic_load(&r.errors), 0);
    expect_miss(f->c, "card", NULL);
}

int main(void) {
    const char *s = getenv("INVALIDATE_SEED");
    base_seed = s ? strtoull(s, NULL, 10) : T0_NS ^ 0x1be1a7e5u;
    printf("# invalidate seed %" PRIu64 "\n", base_seed);
#define T(name)     cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_OWN(name) cmocka_unit_test_teardown(name, teardown) /* opens its own handle */
    const struct CMUnitTest tests[] = {
        T(test_ns_bump_hides_every_key_of_the_namespace_and_no_other),
        T(test_ns_generation_is_stable_until_bumped),
        T(test_reads_in_a_new_namespace_miss_and_write_nothing),
        T(test_make_key_read_in_a_new_namespace_misses_and_writes_nothing),
        T(test_ns_generation_vanished_keeps_old_keys_unreachable),
        T(test_ns_bump_refuses_invalid_names),
        T_OWN(test_ns_name_whose_internal_key_is_too_long_is_refused),
        T_OWN(test_binary_handle_accepts_names_with_spaces),
        T(test_tag_bust_invalidates_10k_values_with_one_store_write),
        T(test_value_with_several_tags_dies_with_any_of_them),
        T(test_untagged_values_and_other_tags_survive_a_bust),
        T(test_tag_version_vanished_counts_as_busted),
        T_OWN(test_tag_version_evicted_from_a_tiny_store_counts_as_busted),
        T(test_tag_bust_without_memory_deletes_the_version_and_still_busts),
        T(test_set_refuses_bad_tags_and_writes_nothing),
        T(test_tags_valid_refuses_tags_corral_would_not_write),
        T(test_two_creators_of_a_tag_version_agree),
        T(test_value_whose_tags_were_read_before_a_bust_is_written_invalid),
        T(test_bust_inside_the_producer_leaves_its_value_invalid),
        T(test_bust_from_another_thread_during_a_set_does_not_resurrect),
        T(test_emit_busts_the_keys_tags_and_namespaces_its_templates_name),
        T(test_emit_counts_keys_only_when_they_were_there),
        T(test_emit_applies_every_rule_of_the_event_in_registration_order),
        T(test_emit_when_callback_decides_like_the_guide_s_receiver),
        T(test_emit_returns_a_when_error_and_busts_nothing),
        T(test_emit_with_a_missing_field_fails_and_busts_nothing),
        T(test_emit_refuses_expansions_that_are_not_keys_or_names),
        T(test_emit_checks_its_arguments),
        T(test_template_braces_escape_and_first_field_wins),
        T(test_on_refuses_malformed_rules),
        T(test_on_copies_the_rule),
        T(test_many_events_keep_their_own_rules),
        T(test_on_fails_cleanly_on_every_allocation_failure),
        T(test_emit_fails_cleanly_on_every_allocation_failure),
        T(test_emits_run_while_rules_are_registered),
        T(test_reads_of_tagged_values_race_busts_and_sets_safely),
    };
#undef T
#undef T_OWN
    return cmocka_run_group_tests_name("invalidate", tests, NULL, NULL);
}
