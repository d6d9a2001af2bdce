/*
 * test_memory.c - the embedded memory store through its vtable (src/store/memory.c).
 *
 * Every test opens a store over a counting allocator, a fake clock and an events recorder, so
 * it can check the store's accounting against what the allocator handed out and what the
 * events reported. Time only moves when a test advances the fake clock; threads meet at
 * barriers; nothing sleeps. Eviction-order tests give every key its own metrics class (its
 * first byte), so the events log names the entries evicted, in order.
 *
 * The store contract every store shares (get/set/add/del/touch/incr, many-ops, clear, expiry,
 * leases, ETOOBIG) is the suite in store_suite.h, run here on the memory store with a tick of
 * 1 ms of the fake clock and every events and accounting check on; this file keeps what only
 * the memory store has: zero-copy hits, its byte accounting, reclamation, eviction policies,
 * allocation-failure sweeps and lock-free readers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "counting_alloc.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"
#include "value.h"
#include "store/memory.h"
#include "store/memory_read.h"
#include "store/memory_internal.h"
#include "store_suite.h"

#define T0_NS    1700000000000000000ull /* the fake clock's start */
#define MS       1000000ull
#define LOG_MAX  256
#define NO_LIMIT ((size_t)1 << 30)

/* ---- Test doubles ---- */

typedef struct fake_clock {
    _Atomic uint64_t now_ns;
    _Atomic long reads; /* calls of fake_now */
} fake_clock;

static uint64_t fake_now(void *ctx) {
    atomic_fetch_add(&((fake_clock *)ctx)->reads, 1);
    return atomic_load(&((fake_clock *)ctx)->now_ns);
}

/* Totals of the events callback, and a log of removals for single-threaded order tests. An
 * OVERWRITTEN is counted as itself and as what it stands for (store.h): a REPLACED, then an
 * ADDED, of its bytes. */
typedef struct recorder {
    _Atomic long count[CORRAL__OVERWRITTEN + 1];
    _Atomic long long bytes[CORRAL__OVERWRITTEN + 1];
    _Atomic size_t n_log;
    uint16_t log_cls[LOG_MAX];
    corral__change log_why[LOG_MAX];
} recorder;

static void on_change(void *ctx, uint16_t cls, corral__change why, size_t bytes) {
    recorder *r = ctx;
    atomic_fetch_add(&r->count[why], 1);
    atomic_fetch_add(&r->bytes[why], (long long)bytes);
    if (why == CORRAL__OVERWRITTEN) {
        on_change(ctx, cls, CORRAL__REPLACED, bytes);
        on_change(ctx, cls, CORRAL__ADDED, bytes);
        return;
    }
    if (why == CORRAL__ADDED) return;
    size_t i = atomic_fetch_add(&r->n_log, 1);
    if (i < LOG_MAX) {
        r->log_cls[i] = cls;
        r->log_why[i] = why;
    }
}

static long events(recorder *r, corral__change why) {
    return atomic_load(&r->count[why]);
}

/* Added bytes minus every removal: what the layer above believes the store holds. */
static long long event_balance(recorder *r) {
    long long b = atomic_load(&r->bytes[CORRAL__ADDED]);
    for (int w = CORRAL__REPLACED; w <= CORRAL__EXPIRED; w++)
        b -= atomic_load(&r->bytes[w]);
    return b;
}

/* ---- Fixture ---- */

typedef struct fx {
    counting ca;
    corral__allocator alloc;
    fake_clock clock;
    recorder rec;
    corral__store_env env;
    /* The store's key hash (cfg.key_hash_ctx): the hot scheme of KEY_PREFIX "" and version 1,
     * whose hash of a key that does not begin with ':' is corral__hash_bytes, the suite's. */
    corral__keyscheme ks;
    corral__mem_config cfg;
    corral__store *s;
    size_t baseline; /* allocator bytes of the store itself, measured after open */
    size_t far_base; /* the far table's names taken before open (corral__mem_far_used) */
} fx;

static fx *fx_init(size_t max_bytes, corral_eviction ev, unsigned shards) {
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->alloc = (corral__allocator){ count_alloc, count_realloc, count_free, &f->ca };
    atomic_store(&f->clock.now_ns, T0_NS);
    f->env = (corral__store_env){ .alloc = &f->alloc,
                                  .now_ns = fake_now,
                                  .clock_ctx = &f->clock,
                                  .events = { .ctx = &f->rec, .changed = on_change } };
    corral__keyscheme_init(&f->ks, "", 0, 1, false, NULL, NULL);
    f->cfg = (corral__mem_config){
        .max_bytes = max_bytes, .eviction = ev, .shards = shards, .key_hash_ctx = &f->ks
    };
    f->far_base = corral__mem_far_used();
    return f;
}

static fx *fx_open(size_t max_bytes, corral_eviction ev, unsigned shards) {
    fx *f = fx_init(max_bytes, ev, shards);
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    assert_non_null(f->s);
    f->baseline = outstanding(&f->ca);
    return f;
}

static size_t used(fx *f) {
    return f->s->ops->used_bytes(f->s);
}

/* After every freed entry and table is gone: used_bytes == the events' balance (the entries)
 * plus the tables on the heap == the bytes the allocator holds beyond the store's own. */
static void check_accounting(fx *f) {
    corral__mem_quiesce(f->s);
    assert_int_equal((long long)used(f),
                     event_balance(&f->rec) + (long long)corral__mem_table_bytes(f->s));
    assert_int_equal(outstanding(&f->ca) - f->baseline, used(f));
}

static void fx_close(fx *f) {
    if (f->s) {
        check_accounting(f);
        f->s->ops->close(f->s);
        assert_int_equal(corral__mem_far_used(), f->far_base); /* every entry's name freed */
    }
    assert_int_equal(outstanding(&f->ca), 0);
    free(f);
}

static void advance_ms(fx *f, uint64_t ms) {
    atomic_fetch_add(&f->clock.now_ns, ms * MS);
}

/* The store key of a C string; its metrics class is its first byte, naming it in the log. */
static int set_mode(fx *f, const char *k, const char *v, int64_t ttl_ms, corral__set_mode m) {
    corral__skey sk = ss_key(k);
    return f->s->ops->set(f->s, &sk, v, strlen(v), ttl_ms, m, 0);
}

static int set(fx *f, const char *k, const char *v, int64_t ttl_ms) {
    return set_mode(f, k, v, ttl_ms, CORRAL__SET_ALWAYS);
}

static int get_rc(fx *f, const char *k) {
    return ss_store_get_rc(f->s, k);
}

static void expect_stored(fx *f, const char *k, const char *want) {
    ss_store_expect(f->s, k, want);
}

static int incr(fx *f, const char *k, int64_t delta, int64_t *out) {
    corral__skey sk = ss_key(k);
    return f->s->ops->incr(f->s, &sk, delta, out);
}

static int touch(fx *f, const char *k, int64_t ttl_ms) {
    corral__skey sk = ss_key(k);
    return f->s->ops->touch(f->s, &sk, ttl_ms);
}

static int del(fx *f, const char *k) {
    corral__skey sk = ss_key(k);
    return f->s->ops->del(f->s, &sk);
}

static int lease_take(fx *f, const char *k, const char *token, int64_t ttl_ms) {
    corral__skey sk = ss_key(k);
    return f->s->ops->lease_acquire(f->s, &sk, token, strlen(token), ttl_ms);
}

/* The removals logged so far, as the first bytes of their keys. */
static void expect_removed(fx *f, const char *keys, corral__change why) {
    size_t n = atomic_load(&f->rec.n_log);
    assert_int_equal(n, strlen(keys));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f->rec.log_cls[i], (unsigned char)keys[i]);
        assert_int_equal(f->rec.log_why[i], why);
    }
}

/* ---- The shared store suite, on the memory store ---- */

static void mem_suite_advance(suite_fx *sf, int64_t ticks) {
    advance_ms(sf->impl, (uint64_t)ticks);
}

static long mem_suite_events(suite_fx *sf, corral__change why) {
    return events(&((fx *)sf->impl)->rec, why);
}

static size_t mem_suite_used(suite_fx *sf) {
    return used(sf->impl);
}

static void mem_suite_close(suite_fx *sf) {
    fx_close(sf->impl); /* checks used == events == allocator */
    free(sf);
}

static suite_fx *mem_suite_open(suite_target *t, size_t max_value_bytes) {
    (void)t;
    fx *f = fx_init(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    f->cfg.max_value_bytes = max_value_bytes;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    f->baseline = outstanding(&f->ca);
    suite_fx *sf = calloc(1, sizeof *sf);
    assert_non_null(sf);
    *sf = (suite_fx){ .s = f->s,
                      .tick_ms = 1,
                      .has_events = true,
                      .advance = mem_suite_advance,
                      .events = mem_suite_events,
                      .used = mem_suite_used,
                      .entry_bytes = corral__mem_entry_bytes,
                      .close = mem_suite_close,
                      .impl = f };
    return sf;
}

static suite_target mem_target = { .name = "memory", .open = mem_suite_open };

/* ---- Basic operations ---- */

static void test_mem_get_returns_the_stored_bytes_without_a_copy(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    assert_int_equal(set(f, "k", "hello", CORRAL__NO_EXPIRY), CORRAL_OK);
    corral__skey sk = ss_key("k");
    corral_value *a = NULL, *b = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &a), CORRAL_OK);
    assert_int_equal(f->s->ops->get(f->s, &sk, &b), CORRAL_OK);
    assert_ptr_equal(a, b); /* both hits hand out the one stored value */
    assert_int_equal(corral_value_len(a), 5);
    assert_memory_equal(corral_value_data(a), "hello", 6); /* NUL-terminated */
    corral_value_unref(a);
    corral_value_unref(b);
    assert_int_equal(get_rc(f, "other"), CORRAL_MISS);
    fx_close(f);
}

typedef struct guard_calls {
    bool answer;
    int calls;
} guard_calls;

static bool guard_says(void *ctx) {
    guard_calls *g = ctx;
    g->calls++;
    return g->answer;
}

/* corral__mem_set_guarded (the near cache's fill) stores only when its guard says yes, asking
 * it once; a refusal changes nothing, absent key or present. */
static void test_mem_set_guarded_stores_only_what_its_guard_allows(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    corral__skey k = ss_key("k");
    guard_calls no = { .answer = false }, yes = { .answer = true };
    assert_int_equal(corral__mem_set_guarded(f->s, &k, "v1", 2, CORRAL__NO_EXPIRY, guard_says, &no),
                     CORRAL_MISS);
    assert_int_equal(get_rc(f, "k"), CORRAL_MISS);
    assert_int_equal(
        corral__mem_set_guarded(f->s, &k, "v1", 2, CORRAL__NO_EXPIRY, guard_says, &yes), CORRAL_OK);
    expect_stored(f, "k", "v1");
    assert_int_equal(corral__mem_set_guarded(f->s, &k, "v2", 2, CORRAL__NO_EXPIRY, guard_says, &no),
                     CORRAL_MISS);
    expect_stored(f, "k", "v1");
    assert_int_equal(no.calls, 2);
    assert_int_equal(yes.calls, 1);
    fx_close(f);
}

static void test_mem_entry_bytes_is_exactly_what_the_allocator_gives(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    size_t before = outstanding(&f->ca);
    assert_int_equal(set(f, "some:key", "0123456789", CORRAL__NO_EXPIRY), CORRAL_OK);
    size_t want = corral__mem_entry_bytes(8, 10);
    assert_int_equal(outstanding(&f->ca) - before, want);
    assert_int_equal(used(f), want);
    assert_true(want > 8 + 10 + 1); /* the header counts too */
    assert_int_equal(corral__mem_entry_bytes(SIZE_MAX - 4, 10), SIZE_MAX); /* overflow */
    fx_close(f);
}

static void test_mem_value_outlives_its_removal_until_released(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    assert_int_equal(set(f, "k", "kept", CORRAL__NO_EXPIRY), CORRAL_OK);
    corral__skey sk = ss_key("k");
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &v), CORRAL_OK);
    assert_int_equal(set(f, "k", "new", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(del(f, "k"), CORRAL_OK);
    corral__mem_quiesce(f->s);
    assert_string_equal(corral_value_data(v), "kept");
    assert_int_equal(used(f), 0);
    assert_int_equal(outstanding(&f->ca) - f->baseline, corral__mem_entry_bytes(1, 4));
    corral_value_unref(v);
    assert_int_equal(outstanding(&f->ca), f->baseline);
    fx_close(f);
}

static void test_mem_refuses_values_too_big_without_change(void **state) {
    (void)state;
    size_t max = corral__mem_entry_bytes(1, 100);
    fx *f = fx_init(max, CORRAL_EVICT_DEFAULT, 1);
    f->cfg.max_value_bytes = 50;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    f->baseline = outstanding(&f->ca);
    char big[128];
    memset(big, 'x', sizeof big);
    big[51] = '\0';
    assert_int_equal(set(f, "k", "small", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(set(f, "k", big, CORRAL__NO_EXPIRY), CORRAL_ETOOBIG); /* > max_value */
    big[51] = 'x';
    big[127] = '\0';
    assert_int_equal(set(f, "k", big, CORRAL__NO_EXPIRY), CORRAL_ETOOBIG);
    expect_stored(f, "k", "small");
    assert_int_equal(del(f, "k"), CORRAL_OK);
    f->s->ops->close(f->s);
    /* Without max_value_bytes, the shard's budget is the bound. */
    f->cfg.max_value_bytes = 0;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    assert_int_equal(set(f, "k", "small", CORRAL__NO_EXPIRY), CORRAL_OK);
    big[101] = '\0';
    assert_int_equal(set(f, "k", big, CORRAL__NO_EXPIRY), CORRAL_ETOOBIG);
    big[101] = 'x';
    big[100] = '\0';
    assert_int_equal(set(f, "j", big, CORRAL__NO_EXPIRY), CORRAL_OK); /* exactly the budget */
    assert_int_equal(get_rc(f, "k"), CORRAL_MISS);
    assert_int_equal(used(f), max);
    fx_close(f);
}

/* An entry holds its key's length in 13 bits (mem_entry.kw, beside the kind, queue and live
 * flags): a key of MEM_KLEN_MAX bytes is stored and found, in both keyspaces, and the kind bit
 * next to the length keeps them apart; one byte more is refused, changing nothing. */
/* An overwrite in place keeps the value bound: a value over it is refused even where the old
 * entry's block would hold it (a one-byte key pads its block to 16 bytes of key and value). */
static void test_mem_overwrite_in_place_keeps_the_value_bound(void **state) {
    (void)state;
    fx *f = fx_init(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    f->cfg.max_value_bytes = 4;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    f->baseline = outstanding(&f->ca);
    assert_int_equal(corral__mem_entry_bytes(1, 3), corral__mem_entry_bytes(1, 8));
    assert_int_equal(set(f, "k", "abc", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(set(f, "k", "abcdefgh", CORRAL__NO_EXPIRY), CORRAL_ETOOBIG);
    assert_int_equal(set(f, "k", "wxyz", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), 1);
    expect_stored(f, "k", "wxyz");
    fx_close(f);
}

/* A key one byte over the header's limit is refused before any lookup: its length, masked to
 * the header's bits, reads as the lease flag over an empty key, which a lookup would then
 * compare over the over-long key's length. */
static fx *fx_open_same_hash(const uint64_t *hash);

static void test_mem_refuses_a_key_over_the_limit_beside_an_empty_lease(void **state) {
    (void)state;
    static const uint64_t h = 7; /* one chain: the over-long key meets the empty lease */
    fx *f = fx_open_same_hash(&h);
    corral__skey empty = { .data = "", .len = 0, .hash = h, .cls = 1 };
    assert_int_equal(f->s->ops->lease_acquire(f->s, &empty, "t", 1, 1000), CORRAL_OK);
    char *key = calloc(1, MEM_KW_LEASE);
    assert_non_null(key);
    corral__skey over = { .data = key, .len = MEM_KW_LEASE, .hash = h, .cls = 1 };
    assert_int_equal(f->s->ops->set(f->s, &over, "v", 1, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_ETOOBIG);
    assert_int_equal(f->s->ops->lease_release(f->s, &empty, "t", 1), CORRAL_OK);
    free(key);
    fx_close(f);
}

static void test_mem_key_length_limit_of_the_entry_header(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    char *key = malloc(MEM_KLEN_MAX + 2);
    assert_non_null(key);
    memset(key, 'k', MEM_KLEN_MAX + 1);
    key[MEM_KLEN_MAX + 1] = '\0';
    corral__skey over = ss_key(key); /* MEM_KLEN_MAX + 1 bytes */
    assert_int_equal(f->s->ops->set(f->s, &over, "v", 1, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_ETOOBIG);
    assert_int_equal(f->s->ops->lease_acquire(f->s, &over, "t", 1, 1000), CORRAL_ETOOBIG);
    assert_int_equal(used(f), 0);

    key[MEM_KLEN_MAX] = '\0';
    corral__skey max = ss_key(key);
    assert_int_equal(
        f->s->ops->set(f->s, &max, "value", 5, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
        CORRAL_OK);
    assert_int_equal(f->s->ops->lease_acquire(f->s, &max, "token", 5, 1000), CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &max, &v), CORRAL_OK);
    assert_int_equal(corral_value_len(v), 5);
    assert_memory_equal(corral_value_data(v), "value", 5); /* the value, not the lease's token */
    corral_value_unref(v);
    assert_int_equal(f->s->ops->lease_release(f->s, &max, "token", 5), CORRAL_OK);
    assert_int_equal(f->s->ops->get(f->s, &max, &v), CORRAL_OK); /* the value stays */
    corral_value_unref(v);
    assert_int_equal(used(f), corral__mem_entry_bytes(MEM_KLEN_MAX, 5));
    free(key);
    fx_close(f);
}

/* corral_value.hdr_len is 16 bits, as the envelope's own length field: a value whose envelope
 * header is 65535 bytes long keeps all of it before the payload handed out. */
static void test_mem_keeps_an_envelope_header_of_the_longest_length(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    size_t hdr = UINT16_MAX, payload = 300, n = hdr + payload;
    unsigned char *raw = calloc(1, n);
    assert_non_null(raw);
    /* magic, format, flags (tags: any length past the minimum parses as a header), length */
    raw[0] = 0xC7;
    raw[1] = 1;
    raw[2] = 0x02;
    raw[3] = 0xff;
    raw[4] = 0xff;
    for (size_t i = 0; i < payload; i++)
        raw[hdr + i] = (unsigned char)('a' + i % 26);
    corral__skey sk = ss_key("k");
    assert_int_equal(f->s->ops->set(f->s, &sk, raw, n, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &v), CORRAL_OK);
    assert_int_equal(v->hdr_len, hdr);
    assert_int_equal(corral_value_len(v), payload);
    assert_memory_equal(corral_value_data(v), raw + hdr, payload);
    assert_memory_equal((const unsigned char *)corral_value_data(v) - hdr, raw, hdr);
    corral_value_unref(v);
    free(raw);
    fx_close(f);
}

/* corral_value.release is an index into the library's release functions: a standalone value
 * and an entry of the store are each freed by their own, to the byte their allocator gave. */
static void test_mem_values_are_freed_by_the_release_their_index_names(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    corral_value *v = corral__value_new(&f->alloc, "standalone", 10);
    assert_non_null(v);
    assert_int_equal(v->release, CORRAL__RELEASE_BLOCK);
    assert_true(outstanding(&f->ca) > f->baseline);
    corral_value_unref(v);
    assert_int_equal(outstanding(&f->ca), f->baseline);

    assert_int_equal(set(f, "k", "entry", CORRAL__NO_EXPIRY), CORRAL_OK);
    corral__skey sk = ss_key("k");
    assert_int_equal(f->s->ops->get(f->s, &sk, &v), CORRAL_OK);
    assert_int_equal(v->release, CORRAL__RELEASE_MEM_ENTRY);
    assert_int_equal(del(f, "k"), CORRAL_OK);
    corral__mem_quiesce(f->s);
    assert_int_equal(outstanding(&f->ca) - f->baseline, corral__mem_entry_bytes(1, 5));
    corral_value_unref(v); /* the entry's release frees its block through its store */
    assert_int_equal(outstanding(&f->ca), f->baseline);
    fx_close(f);
}

static void test_mem_open_refuses_invalid_configs(void **state) {
    (void)state;
    fx *f = fx_init(0, CORRAL_EVICT_DEFAULT, 0);
    f->s = (corral__store *)f;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_EINVAL);
    assert_null(f->s);
    f->cfg.max_bytes = 1000;
    f->cfg.eviction = (corral_eviction)42;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_EINVAL);
    f->cfg.eviction = CORRAL_EVICT_LRU;
    f->cfg.shards = 2000; /* more shards than bytes */
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_EINVAL);
    assert_null(f->s);
    fx_close(f);
}

/* ---- Expiry ---- */

static void fill_expiring(fx *f, int n, int64_t ttl_ms) {
    char k[16];
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "exp%d", i);
        assert_int_equal(set(f, k, "v", ttl_ms), CORRAL_OK);
    }
}

static void test_mem_write_reclaims_a_few_expired_entries_per_call(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_SIEVE, 1);
    fill_expiring(f, 40, 100);
    advance_ms(f, 100);
    assert_int_equal(set(f, "fresh", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    long first = events(&f->rec, CORRAL__EXPIRED);
    assert_in_range(first, 1, 4); /* a few, never the whole shard */
    assert_int_equal(set(f, "fresh2", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_in_range(events(&f->rec, CORRAL__EXPIRED) - first, 1, 4);
    assert_int_equal((long long)used(f),
                     event_balance(&f->rec) + (long long)corral__mem_table_bytes(f->s));
    long left = 40 - events(&f->rec, CORRAL__EXPIRED);
    assert_int_equal(corral__mem_reclaim(f->s, 100), left);
    fx_close(f);
}

static void test_mem_write_reclaims_an_entry_that_touch_gave_an_expiry(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_SIEVE, 1);
    assert_int_equal(set(f, "a", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(touch(f, "a", 100), CORRAL_OK);
    advance_ms(f, 100);
    assert_int_equal(set(f, "b", "v", CORRAL__NO_EXPIRY), CORRAL_OK); /* scans "a" */
    assert_int_equal(events(&f->rec, CORRAL__EXPIRED), 1);
    assert_int_equal(touch(f, "b", 100), CORRAL_OK);
    assert_int_equal(touch(f, "b", CORRAL__NO_EXPIRY), CORRAL_OK);
    advance_ms(f, 100);
    assert_int_equal(corral__mem_reclaim(f->s, 10), 0);
    expect_stored(f, "b", "v");
    fx_close(f);
}

static void test_mem_reclaim_removes_at_most_its_budget(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_SIEVE, 2);
    fill_expiring(f, 40, 100);
    assert_int_equal(set(f, "live", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(corral__mem_reclaim(f->s, 10), 0); /* nothing expired yet */
    advance_ms(f, 100);
    assert_int_equal(corral__mem_reclaim(f->s, 10), 10);
    assert_int_equal(corral__mem_reclaim(f->s, 1000), 30);
    assert_int_equal(corral__mem_reclaim(f->s, 1000), 0);
    assert_int_equal(events(&f->rec, CORRAL__EXPIRED), 40);
    assert_int_equal(used(f), corral__mem_entry_bytes(4, 1) + corral__mem_table_bytes(f->s));
    expect_stored(f, "live", "v");
    fx_close(f);
}

/* ---- Eviction ---- */

/* A one-shard store that holds exactly `n` entries of a one-byte key and an 8-byte value. */
static fx *fx_slots(corral_eviction ev, size_t n) {
    return fx_open(n * corral__mem_entry_bytes(1, 8), ev, 1);
}

static void put(fx *f, const char *keys) {
    for (const char *p = keys; *p; p++) {
        char k[2] = { *p, '\0' };
        assert_int_equal(set(f, k, "12345678", CORRAL__NO_EXPIRY), CORRAL_OK);
    }
}

static void hit(fx *f, const char *keys) {
    for (const char *p = keys; *p; p++) {
        char k[2] = { *p, '\0' };
        assert_int_equal(get_rc(f, k), CORRAL_OK);
    }
}

static void test_mem_sieve_evicts_unvisited_entry_first_when_full(void **state) {
    (void)state;
    fx *f = fx_slots(CORRAL_EVICT_SIEVE, 4);
    put(f, "abcd");
    hit(f, "a");
    /* The hand clears a's bit and takes b; then it moves on toward the head, so a stays put
     * while c, d and e go, where LRU would have evicted a (see the next test). */
    put(f, "efgh");
    expect_removed(f, "bcde", CORRAL__EVICTED);
    hit(f, "afgh");
    assert_int_equal(used(f), 4 * corral__mem_entry_bytes(1, 8));
    fx_close(f);
}

static void test_mem_lru_evicts_least_recently_used_entry(void **state) {
    (void)state;
    fx *f = fx_slots(CORRAL_EVICT_LRU, 4);
    put(f, "abcd");
    hit(f, "a");
    put(f, "efgh");
    expect_removed(f, "bcda", CORRAL__EVICTED);
    hit(f, "efgh");
    fx_close(f);
}

static void s3fifo_trace(corral_eviction ev) {
    fx *f = fx_slots(ev, 10);
    put(f, "abcdefghij");
    hit(f, "ab");
    /* k: the small queue's tail a and b were hit, so they move to the main queue; c was not,
     * so it goes (remembered in the ghost). */
    put(f, "kl");
    expect_removed(f, "cd", CORRAL__EVICTED);
    /* c comes back: the ghost sends it to the main queue, next to a and b. */
    put(f, "c");
    /* A scan of one-hit keys only churns the small queue. */
    put(f, "mnopqrst");
    expect_removed(f, "cdefghijklm", CORRAL__EVICTED);
    hit(f, "abcnopqrst");
    fx_close(f);
}

static void test_mem_s3fifo_keeps_reused_entries_through_a_scan(void **state) {
    (void)state;
    s3fifo_trace(CORRAL_EVICT_S3FIFO);
}

static void test_mem_default_policy_is_s3fifo(void **state) {
    (void)state;
    s3fifo_trace(CORRAL_EVICT_DEFAULT); /* the measured best, docs/eviction.md */
}

/* The store key ":1:<c>" of the user key <c> under the fixture's scheme (fx.ks), its class c:
 * hashed as the read path hashes "<c>", not as corral__hash_bytes hashes ":1:<c>". */
static corral__skey scheme_key(fx *f, char *buf, char c) {
    memcpy(buf, ":1:", 3);
    buf[3] = c;
    buf[4] = '\0';
    return (corral__skey){
        .data = buf, .len = 4, .hash = corral__key_hash(&f->ks, buf, 4), .cls = (unsigned char)c
    };
}

static void scheme_put(fx *f, const char *keys, int64_t ttl_ms) {
    for (const char *p = keys; *p; p++) {
        char k[8];
        corral__skey sk = scheme_key(f, k, *p);
        assert_int_equal(f->s->ops->set(f->s, &sk, "12345678", 8, ttl_ms, CORRAL__SET_ALWAYS, 0),
                         CORRAL_OK);
    }
}

static void scheme_hit(fx *f, const char *keys) {
    for (const char *p = keys; *p; p++) {
        char k[8], buf[8];
        size_t len = 0, hlen = 0;
        uint16_t cls = 0;
        corral__skey sk = scheme_key(f, k, *p);
        assert_int_equal(f->s->ops->get_into(f->s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen),
                         CORRAL_OK);
        assert_int_equal(corral__mem_get_into_hot(f->s, &f->ks, p, 1, buf, sizeof buf, &len, &cls),
                         CORRAL_OK);
    }
}

/* Eviction, the S3-FIFO ghost, the expiry scan and clear reach entries without their
 * key, and find their chains by the hash recomputed from the stored key (mem_entry_hash): with
 * keys of a scheme's own hash, s3fifo_trace's order, then an expired entry removed by the
 * scan and the rest by clear, every chain kept exact (a removal that missed its chain would
 * leave a freed entry in the table, and fx_close's accounting would not balance). */
static void test_mem_removes_entries_found_without_their_key_by_its_scheme_hash(void **state) {
    (void)state;
    fx *f = fx_open(10 * corral__mem_entry_bytes(4, 8), CORRAL_EVICT_S3FIFO, 1);
    scheme_put(f, "abcdefghij", CORRAL__NO_EXPIRY);
    scheme_hit(f, "ab");
    scheme_put(f, "kl", CORRAL__NO_EXPIRY);
    expect_removed(f, "cd", CORRAL__EVICTED);
    scheme_put(f, "c", CORRAL__NO_EXPIRY); /* the ghost sends it to the main queue */
    scheme_put(f, "mnopqrst", CORRAL__NO_EXPIRY);
    expect_removed(f, "cdefghijklm", CORRAL__EVICTED);
    scheme_hit(f, "abcnopqrst");
    scheme_put(f, "u", 10);
    advance_ms(f, 10);
    assert_int_equal(corral__mem_reclaim(f->s, 10), 1); /* u, by the expiry scan */
    assert_int_equal(events(&f->rec, CORRAL__EXPIRED), 1);
    scheme_hit(f, "abc");
    assert_int_equal(f->s->ops->clear(f->s), CORRAL_OK);
    assert_int_equal(used(f), 0);
    fx_close(f);
}

static void test_mem_eviction_prefers_expired_entries(void **state) {
    (void)state;
    fx *f = fx_slots(CORRAL_EVICT_SIEVE, 3);
    put(f, "a");
    char k[2] = { 'b', '\0' };
    assert_int_equal(set(f, k, "12345678", 50), CORRAL_OK);
    put(f, "c");
    hit(f, "ac");
    advance_ms(f, 50);
    put(f, "d");
    expect_removed(f, "b", CORRAL__EXPIRED);
    hit(f, "acd");
    fx_close(f);
}

/* Fills a store far past its bound with mixed sizes; checks the bound after every write and
 * the accounting against the allocator at the end. */
static void fill_past_bound(corral_eviction ev, unsigned shards) {
    const size_t max = 64 * 1024;
    fx *f = fx_open(max, ev, shards);
    static char val[3000];
    memset(val, 'v', sizeof val);
    uint64_t x = 12345;
    char k[32];
    for (int i = 0; i < 6000; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        int kl = snprintf(k, sizeof k, "key:%d", (int)((x >> 33) % 2000));
        size_t vl = (x >> 20) % (i % 10 == 0 ? sizeof val : 200);
        corral__skey sk = {
            .data = k, .len = (size_t)kl, .hash = corral__hash_bytes(k, (size_t)kl), .cls = 1
        };
        int rc = f->s->ops->set(f->s, &sk, val, vl, (x & 1) ? 1000 : CORRAL__NO_EXPIRY,
                                CORRAL__SET_ALWAYS, 0);
        assert_int_equal(rc, CORRAL_OK);
        if (i % 3 == 0) (void)get_rc(f, k);
        if (i % 500 == 0) advance_ms(f, 300);
        assert_true(used(f) <= max + max / 100);
    }
    assert_true(events(&f->rec, CORRAL__EVICTED) > 1000);
    assert_true(used(f) > max / 2);
    fx_close(f); /* checks used == events == allocator */
}

static void test_mem_byte_bound_holds_and_matches_the_allocator(void **state) {
    (void)state;
    fill_past_bound(CORRAL_EVICT_SIEVE, 1);
    fill_past_bound(CORRAL_EVICT_SIEVE, 4);
    fill_past_bound(CORRAL_EVICT_S3FIFO, 2);
    fill_past_bound(CORRAL_EVICT_LRU, 3);
}

static void test_mem_events_balance_used_bytes(void **state) {
    (void)state;
    fx *f = fx_slots(CORRAL_EVICT_DEFAULT, 6);
    put(f, "abcdefgh");                                               /* ADDED, EVICTED */
    assert_int_equal(set(f, "a", "x", CORRAL__NO_EXPIRY), CORRAL_OK); /* REPLACED */
    assert_int_equal(set(f, "n", "5", 10), CORRAL_OK);
    assert_int_equal(incr(f, "n", 1, NULL), CORRAL_OK); /* REPLACED */
    assert_int_equal(del(f, "h"), CORRAL_OK);           /* DELETED */
    assert_int_equal(lease_take(f, "l", "tok", 10), CORRAL_OK);
    advance_ms(f, 10);
    (void)corral__mem_reclaim(f->s, 100); /* EXPIRED */
    assert_true(events(&f->rec, CORRAL__EVICTED) > 0);
    assert_true(events(&f->rec, CORRAL__EXPIRED) >= 2);
    assert_int_equal((long long)used(f), event_balance(&f->rec));
    assert_int_equal(f->s->ops->clear(f->s), CORRAL_OK);
    assert_int_equal(event_balance(&f->rec), 0);
    fx_close(f);
}

/* ---- Leases ---- */

/* ---- Allocation failure ---- */

static void test_mem_open_fails_cleanly_at_every_allocation(void **state) {
    (void)state;
    corral_eviction evs[] = { CORRAL_EVICT_SIEVE, CORRAL_EVICT_S3FIFO };
    for (size_t e = 0; e < 2; e++) {
        long k = 1;
        for (;; k++) {
            fx *f = fx_init(16 << 20, evs[e], 0);
            arm(&f->ca, k);
            f->s = (corral__store *)f;
            int rc = corral__mem_open(&f->s, &f->cfg, &f->env);
            if (rc == CORRAL_OK) {
                f->baseline = outstanding(&f->ca);
                fx_close(f);
                break;
            }
            assert_int_equal(rc, CORRAL_ENOMEM);
            assert_null(f->s);
            fx_close(f); /* no leak */
        }
        assert_true(k > 2); /* the sweep did fail something */
    }
}

typedef int (*sweep_op)(fx *f);

static int sweep_set(fx *f) {
    /* Longer than a block of "old" holds, so not an overwrite in place: it allocates. */
    return set(f, "k", "a value longer than the old block", CORRAL__NO_EXPIRY);
}
static int sweep_add(fx *f) {
    return set_mode(f, "new", "v", CORRAL__NO_EXPIRY, CORRAL__SET_NX);
}
static int sweep_incr(fx *f) {
    return incr(f, "n", 1000, NULL);
}
static int sweep_lease(fx *f) {
    return lease_take(f, "k", "tok", 1000);
}

/* Fails the k-th allocation of `op` for k = 1, 2, ... until it succeeds; every failure must be
 * a clean ENOMEM that changed nothing. */
static void sweep(sweep_op op) {
    for (long k = 1;; k++) {
        fx *f = fx_slots(CORRAL_EVICT_DEFAULT, 3);
        assert_int_equal(set(f, "k", "old", CORRAL__NO_EXPIRY), CORRAL_OK);
        assert_int_equal(set(f, "n", "41", CORRAL__NO_EXPIRY), CORRAL_OK);
        assert_int_equal(set(f, "x", "12345678", CORRAL__NO_EXPIRY), CORRAL_OK);
        size_t before = used(f);
        long added = events(&f->rec, CORRAL__ADDED);
        arm(&f->ca, k);
        int rc = op(f);
        arm(&f->ca, 0);
        if (rc == CORRAL_OK) {
            assert_true(k > 1);
            fx_close(f);
            return;
        }
        assert_int_equal(rc, CORRAL_ENOMEM);
        assert_int_equal(used(f), before);
        assert_int_equal(events(&f->rec, CORRAL__ADDED), added);
        expect_stored(f, "k", "old");
        expect_stored(f, "n", "41");
        expect_stored(f, "x", "12345678");
        assert_int_equal(get_rc(f, "new"), CORRAL_MISS);
        fx_close(f);
    }
}

static void test_mem_writes_fail_cleanly_at_every_allocation(void **state) {
    (void)state;
    sweep(sweep_set);
    sweep(sweep_add);
    sweep(sweep_incr);
    sweep(sweep_lease);
}

/* ---- Threads ---- */

#define N_THREADS 4
#define N_KEYS    48

typedef struct worker {
    fx *f;
    pthread_barrier_t *start;
    unsigned id;
    int iters;
    long incrs; /* successful incr calls on "ctr" */
} worker;

/* A value whose every byte is the same letter, its length set by the letter: a reader can
 * tell a torn or foreign value from a whole one. */
static size_t make_value(char *buf, uint64_t x) {
    char c = (char)('a' + x % 26);
    size_t n = 1 + (size_t)(c - 'a') * 13;
    memset(buf, c, n);
    return n;
}

static void check_value(const char *p, size_t n) {
    assert_true(n >= 1);
    assert_int_equal(n, 1 + (size_t)(p[0] - 'a') * 13);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(p[i], p[0]);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    fx *f = w->f;
    corral__store *s = f->s;
    uint64_t x = 0x9e3779b97f4a7c15u * (w->id + 1);
    char val[512], buf[512], k[16], tok[8];
    /* The last value got, held until the next get: users often drop an entry's last
     * reference, after the store's, and readers of the same entry are still about. */
    corral_value *held = NULL;
    snprintf(tok, sizeof tok, "t%u", w->id);
    int rc = pthread_barrier_wait(w->start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    for (int i = 0; i < w->iters; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        /* Two days now and then: the writes rebase their shards' expiries and walk them
         * while the others read (memory.c, "Expiry epochs"). */
        if (w->id == 0 && i % 500 == 499) advance_ms(f, 2 * 86400000ull);
        int kl = snprintf(k, sizeof k, "k%u", (unsigned)((x >> 40) % N_KEYS));
        corral__skey sk = {
            .data = k, .len = (size_t)kl, .hash = corral__hash_bytes(k, (size_t)kl), .cls = 1
        };
        corral_value *v = NULL;
        size_t len = 0, hlen = 0;
        switch ((x >> 20) % 10) {
        case 0:
        case 1:
            len = make_value(val, x >> 8);
            rc = s->ops->set(s, &sk, val, len, (x & 4) ? 50 : CORRAL__NO_EXPIRY,
                             (corral__set_mode)((x >> 12) % 3), 0);
            assert_true(rc >= 0);
            break;
        case 2:
        case 3:
        case 4:
            if (s->ops->get(s, &sk, &v) == CORRAL_OK) {
                check_value(corral_value_data(v), corral_value_len(v));
                corral_value_unref(held);
                held = v;
            }
            break;
        case 5:
        case 6:
            rc = s->ops->get_into(s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen);
            if (rc == CORRAL_OK) check_value(buf, len);
            break;
        case 7: assert_true(s->ops->del(s, &sk) >= 0); break;
        case 8: {
            corral__skey ck = {
                .data = "ctr", .len = 3, .hash = corral__hash_bytes("ctr", 3), .cls = 2
            };
            int64_t out;
            rc = s->ops->incr(s, &ck, 1, &out);
            assert_true(rc == CORRAL_OK || rc == CORRAL_MISS); /* MISS once evicted */
            if (rc == CORRAL_OK) w->incrs++;
            break;
        }
        default:
            if (x & 1) {
                assert_true(s->ops->touch(s, &sk, 30) >= 0);
            } else if (s->ops->lease_acquire(s, &sk, tok, strlen(tok), 20) == CORRAL_OK) {
                /* MISS when it expired or was evicted in between. */
                rc = s->ops->lease_release(s, &sk, tok, strlen(tok));
                assert_true(rc == CORRAL_OK || rc == CORRAL_MISS);
            }
            if (w->id == 0 && i % 64 == 0) advance_ms(f, 10);
            if (w->id == 1 && i % 256 == 0) (void)corral__mem_reclaim(s, 8);
            break;
        }
    }
    if (held) check_value(corral_value_data(held), corral_value_len(held));
    corral_value_unref(held);
    return NULL;
}

static void run_workers(corral_eviction ev, unsigned shards) {
    /* Small enough that the workers evict all the time. */
    fx *f = fx_open(8 * 1024, ev, shards);
    assert_int_equal(set(f, "ctr", "0", CORRAL__NO_EXPIRY), CORRAL_OK);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, N_THREADS), 0);
    worker w[N_THREADS];
    pthread_t t[N_THREADS];
    for (unsigned i = 0; i < N_THREADS; i++) {
        w[i] = (worker){ .f = f, .start = &start, .id = i, .iters = 4000 };
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    long incrs = 0;
    for (unsigned i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        incrs += w[i].incrs;
    }
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    assert_true(used(f) <= 8 * 1024);
    assert_true(events(&f->rec, CORRAL__EVICTED) > 0);
    /* The counter may have been evicted; if it is there, no increment was lost. */
    corral__skey ck = { .data = "ctr", .len = 3, .hash = corral__hash_bytes("ctr", 3), .cls = 2 };
    corral_value *v = NULL;
    if (f->s->ops->get(f->s, &ck, &v) == CORRAL_OK) {
        assert_true(strtoll(corral_value_data(v), NULL, 10) <= incrs);
        corral_value_unref(v);
    }
    fx_close(f); /* used == events == allocator */
}

static void test_mem_concurrent_mixed_ops_keep_the_invariants(void **state) {
    (void)state;
    run_workers(CORRAL_EVICT_SIEVE, 2);
    run_workers(CORRAL_EVICT_S3FIFO, 1);
    run_workers(CORRAL_EVICT_LRU, 2);
}

/* One writer replaces a few keys; a reader copies them out (no reference, no lock); a holder
 * keeps the value it got until its next get, so it often frees the entry, after the store's
 * reference went and while the reader may have read it: the case RCU is there for. */
typedef struct rcu_arg {
    fx *f;
    pthread_barrier_t *start;
    int role;      /* 0 writer, 1 reader, 2 holder */
    bool same_len; /* the writer writes values of one length: every overwrite goes in place */
    int iters;
} rcu_arg;

/* A value of 1 + 13 x 20 bytes, all one letter: check_value's shape at a fixed length. */
static size_t make_value_fixed(char *buf, uint64_t x) {
    size_t n = 1 + 20 * 13;
    char c = (char)('a' + x % 26);
    memset(buf, c, n);
    buf[0] = 'u'; /* check_any_value reads the length from the first byte */
    return n;
}

/* check_value for both shapes: the first byte names the length, the rest are one letter. */
static void check_any_value(const char *p, size_t n) {
    assert_true(n >= 1);
    assert_int_equal(n, 1 + (size_t)(p[0] - 'a') * 13);
    for (size_t i = 2; i < n; i++)
        assert_int_equal(p[i], p[1]);
}

static void *rcu_main(void *p) {
    rcu_arg *a = p;
    corral__store *s = a->f->s;
    char val[512], buf[512], k[8];
    corral_value *held = NULL;
    int rc = pthread_barrier_wait(a->start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    for (int i = 0; i < a->iters; i++) {
        int kl = snprintf(k, sizeof k, "r%d", i % 4);
        corral__skey sk = {
            .data = k, .len = (size_t)kl, .hash = corral__hash_bytes(k, (size_t)kl), .cls = 1
        };
        size_t len = 0, hlen = 0;
        corral_value *v = NULL;
        if (a->role == 0) {
            len = a->same_len ? make_value_fixed(val, (uint64_t)i) : make_value(val, (uint64_t)i);
            assert_int_equal(
                s->ops->set(s, &sk, val, len, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
        } else if (a->role == 1) {
            if (s->ops->get_into(s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen) == CORRAL_OK)
                check_any_value(buf, len);
        } else if (s->ops->get(s, &sk, &v) == CORRAL_OK) {
            check_any_value(corral_value_data(v), corral_value_len(v));
            corral_value_unref(held);
            held = v;
        }
    }
    corral_value_unref(held);
    return NULL;
}

static void run_rcu_roles(fx *f, bool same_len, int iters) {
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 3), 0);
    rcu_arg a[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        a[i] =
            (rcu_arg){ .f = f, .start = &start, .role = i, .same_len = same_len, .iters = iters };
        assert_int_equal(pthread_create(&t[i], NULL, rcu_main, &a[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&start), 0);
}

static void test_mem_lock_free_readers_never_see_freed_or_torn_values(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    run_rcu_roles(f, false, 20000);
    assert_int_equal(events(&f->rec, CORRAL__ADDED), 20000);
    fx_close(f);
}

/* The same with values of one length: every overwrite the holder does not block goes in place,
 * under readers that copy without a reference (get_into) and take one (get). */
static void test_mem_readers_never_see_a_torn_overwrite_in_place(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    size_t allocs = atomic_load(&f->ca.allocs);
    run_rcu_roles(f, true, 8000);
    assert_int_equal(events(&f->rec, CORRAL__ADDED), 8000);
    assert_int_equal(events(&f->rec, CORRAL__REPLACED), 8000 - 4);
    /* Most overwrites allocated nothing: only those a held value blocked did (the holder
     * holds one of the four keys' values at a time). */
    assert_true(atomic_load(&f->ca.allocs) - allocs < 8000 * 3 / 4);
    fx_close(f);
}

/* A set of a live key with a value of the same size rewrites its entry in place: no
 * allocation, one OVERWRITTEN for the REPLACED and ADDED of a replacing set, the new bytes
 * read back. */
static void test_mem_overwrite_of_the_same_size_allocates_nothing(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    assert_int_equal(set(f, "k", "first", CORRAL__NO_EXPIRY), CORRAL_OK);
    size_t allocs = atomic_load(&f->ca.allocs), bytes = used(f);
    assert_int_equal(set(f, "k", "again", 1000), CORRAL_OK);
    assert_int_equal(atomic_load(&f->ca.allocs), allocs);
    assert_int_equal(used(f), bytes);
    expect_stored(f, "k", "again");
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), 1);
    assert_int_equal(events(&f->rec, CORRAL__REPLACED), 1);
    assert_int_equal(events(&f->rec, CORRAL__ADDED), 2);
    assert_int_equal(event_balance(&f->rec), (long long)bytes);
    assert_int_equal(set_mode(f, "k", "third", CORRAL__NO_EXPIRY, CORRAL__SET_NX), CORRAL_EXISTS);
    expect_stored(f, "k", "again");
    advance_ms(f, 1000); /* the TTL of the overwrite holds */
    assert_int_equal(get_rc(f, "k"), CORRAL_MISS);
    assert_int_equal(set(f, "k", "longer value", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(atomic_load(&f->ca.allocs), allocs + 1); /* another size: a new entry */
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), 1);
    fx_close(f);
}

/* A value handed out is never rewritten: with a reference held, an overwrite of the same size
 * takes a new entry, and the holder keeps reading the old bytes. */
static void test_mem_overwrite_leaves_a_held_value_unchanged(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    assert_int_equal(set(f, "k", "first", CORRAL__NO_EXPIRY), CORRAL_OK);
    corral__skey sk = ss_key("k");
    corral_value *held = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &held), CORRAL_OK);
    size_t allocs = atomic_load(&f->ca.allocs);
    assert_int_equal(set(f, "k", "again", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(atomic_load(&f->ca.allocs), allocs + 1);
    assert_memory_equal(corral_value_data(held), "first", 6);
    expect_stored(f, "k", "again");
    corral_value_unref(held);
    fx_close(f);
}

/* incr after an overwrite in place reads the new counter. */
static void test_mem_incr_reads_a_counter_rewritten_in_place(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    int64_t out = 0;
    assert_int_equal(set(f, "n", "10", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(set(f, "n", "41", CORRAL__NO_EXPIRY), CORRAL_OK); /* in place */
    assert_int_equal(incr(f, "n", 1, &out), CORRAL_OK);
    assert_int_equal(out, 42);
    expect_stored(f, "n", "42");
    fx_close(f);
}

/* The entry of the key `k` as a lookup finds it. The caller holds no reference: the entry
 * stays while the key's writes rewrite it in place. */
static mem_entry *entry_of(fx *f, const char *k) {
    mem_store *s = store_of(f->s);
    corral__skey sk = ss_key(k);
    read_lock(s);
    mem_entry *e = lookup_rcu(s, &sk, MEM_VALUE);
    read_unlock(s);
    assert_non_null(e);
    return e;
}

/* Asserts that `sk` holds `len` bytes of `c`, or (when `may_miss`) that it is gone; returns
 * whether it holds them. */
static bool expect_fill(fx *f, const corral__skey *sk, size_t len, char c, bool may_miss) {
    corral_value *v = NULL;
    int rc = f->s->ops->get(f->s, sk, &v);
    if (rc == CORRAL_MISS && may_miss) return false;
    assert_int_equal(rc, CORRAL_OK);
    assert_int_equal(corral_value_len(v), len);
    const char *d = corral_value_data(v);
    for (size_t i = 0; i < len; i++)
        if (d[i] != c) fail_msg("%.*s: byte %zu is %d, not %d", (int)sk->len, sk->data, i, d[i], c);
    corral_value_unref(v);
    return true;
}

/* A store of 32 MiB with libc's allocator, so that its entries of at most 4 KiB are slots; NULL
 * (nothing open) where the system refused the region (memory_block.h). */
static fx *fx_open_slots(corral_eviction ev, corral__key_hash_fn hash, const void *hash_ctx) {
    fx *f = fx_init((size_t)32 << 20, ev, 1);
    corral__allocator_init(&f->alloc, NULL);
    if (hash) {
        f->cfg.key_hash = hash;
        f->cfg.key_hash_ctx = hash_ctx;
    }
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    if (store_of(f->s)->blocks.slab_max == 0) {
        f->s->ops->close(f->s);
        free(f);
        return NULL;
    }
    return f;
}

/* Closes a store fx_open_slots opened: its accounting is the events' and the tables' (the
 * allocator is libc's, which counts nothing), and it leaves no far name taken. */
static void fx_close_slots(fx *f) {
    corral__mem_quiesce(f->s);
    assert_int_equal((long long)used(f),
                     event_balance(&f->rec) + (long long)corral__mem_table_bytes(f->s));
    f->s->ops->close(f->s);
    assert_int_equal(corral__mem_far_used(), f->far_base);
    free(f);
}

/* `e` is a slot (named by its place in the region) or a far entry (named in the far table, its
 * name's top bit set), as `big` says, and its name finds it again. */
static void expect_named(const mem_entry *e, bool big) {
    assert_int_equal(corral__mem_in_region(e), !big);
    assert_int_equal((mem_ref_of(e) & MEM_REF_FAR) != 0, big);
    assert_ptr_equal(mem_deref(mem_ref_of(e)), e);
}

static uint64_t same_hash(const void *ctx, const void *key, size_t len);
static corral__skey KH(const char *k, uint64_t hash);

/* With libc's allocator, a store's entries of at most 4 KiB are slab slots and the larger ones
 * far entries (memory_read.h, mem_ref). Sixty-four keys of both kinds in one chain (one hash):
 * every insert, overwrite by an entry of the other kind and delete relinks the chain and the
 * queue across kinds, and each key is found with its own bytes. */
static void test_mem_slot_and_far_entries_share_a_chain(void **state) {
    (void)state;
    enum { N = 64, SMALL = 40, BIG = 6000 };
    const uint64_t h = 0x5eedu;
    fx *f = fx_open_slots(CORRAL_EVICT_DEFAULT, same_hash, &h);
    if (!f) {
        skip();
        return; /* skip() is not declared noreturn */
    }
    char *val = malloc(BIG);
    assert_non_null(val);
    char k[N][8];
    for (unsigned round = 0; round < 2; round++) { /* the second swaps every key's kind */
        for (unsigned i = 0; i < N; i++) {
            bool big = (i + round) % 2 == 0;
            memset(val, 'a' + (int)((i + round) % 26), big ? BIG : SMALL);
            snprintf(k[i], sizeof k[i], "k%u", i);
            corral__skey sk = KH(k[i], h);
            assert_int_equal(f->s->ops->set(f->s, &sk, val, big ? BIG : SMALL, CORRAL__NO_EXPIRY,
                                            CORRAL__SET_ALWAYS, 0),
                             CORRAL_OK);
        }
        for (unsigned i = 0; i < N; i++) {
            bool big = (i + round) % 2 == 0;
            corral__skey sk = KH(k[i], h);
            mem_store *s = store_of(f->s);
            read_lock(s);
            expect_named(lookup_rcu(s, &sk, MEM_VALUE), big);
            read_unlock(s);
            expect_fill(f, &sk, big ? BIG : SMALL, (char)('a' + (i + round) % 26), false);
        }
    }
    for (unsigned i = 0; i < N; i += 3) { /* from the chain's middle, ends and both kinds */
        corral__skey sk = KH(k[i], h);
        assert_int_equal(f->s->ops->del(f->s, &sk), CORRAL_OK);
    }
    for (unsigned i = 0; i < N; i++) {
        corral__skey sk = KH(k[i], h);
        if (i % 3 == 0)
            assert_int_equal(f->s->ops->get(f->s, &sk, &(corral_value *){ NULL }), CORRAL_MISS);
        else
            expect_fill(f, &sk, (i + 1) % 2 == 0 ? BIG : SMALL, (char)('a' + (i + 1) % 26), false);
    }
    free(val);
    fx_close_slots(f);
}

/* Eviction unlinks entries of both kinds from the queues: under each policy, keys of both
 * kinds, then three times the bound of large entries; some keys of each kind are evicted, and
 * every key still there holds its own bytes. */
static void test_mem_eviction_takes_slot_and_far_entries(void **state) {
    (void)state;
    enum { N = 3000, SMALL = 40, BIG = 6000, EVICT = 3 * (32 << 20) / BIG };
    const corral_eviction evs[] = { CORRAL_EVICT_SIEVE, CORRAL_EVICT_S3FIFO, CORRAL_EVICT_LRU };
    char *val = malloc(BIG);
    assert_non_null(val);
    char k[32];
    for (size_t p = 0; p < sizeof evs / sizeof evs[0]; p++) {
        fx *f = fx_open_slots(evs[p], NULL, NULL);
        if (!f) {
            free(val);
            skip();
            return; /* skip() is not declared noreturn */
        }
        for (unsigned i = 0; i < N; i++) {
            bool big = i % 3 == 0;
            memset(val, 'a' + (int)(i % 26), big ? BIG : SMALL);
            snprintf(k, sizeof k, "k%u", i);
            corral__skey sk = ss_key(k);
            assert_int_equal(f->s->ops->set(f->s, &sk, val, big ? BIG : SMALL, CORRAL__NO_EXPIRY,
                                            CORRAL__SET_ALWAYS, 0),
                             CORRAL_OK);
        }
        memset(val, 'z', BIG);
        for (unsigned i = 0; i < EVICT; i++) {
            snprintf(k, sizeof k, "e%u", i);
            corral__skey sk = ss_key(k);
            assert_int_equal(
                f->s->ops->set(f->s, &sk, val, BIG, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                CORRAL_OK);
        }
        assert_true(used(f) <= f->cfg.max_bytes);
        snprintf(k, sizeof k, "e%u", EVICT - 1);
        corral__skey last = ss_key(k);
        expect_fill(f, &last, BIG, 'z', false);
        unsigned gone[2] = { 0, 0 }; /* small, big */
        for (unsigned i = 0; i < N; i++) {
            bool big = i % 3 == 0;
            snprintf(k, sizeof k, "k%u", i);
            corral__skey sk = ss_key(k);
            if (!expect_fill(f, &sk, big ? BIG : SMALL, (char)('a' + i % 26), true)) gone[big]++;
        }
        assert_true(gone[0] > 0 && gone[1] > 0);
        fx_close_slots(f);
    }
    free(val);
}

/* Readers without a lock on a store of slots (every store above runs with allocator hooks, so
 * its entries are far): the writer replaces values while readers copy them and a holder drops
 * the last reference; no reader sees a freed or torn value. Under ThreadSanitizer too. */
static void test_mem_lock_free_readers_of_slots_never_see_freed_or_torn_values(void **state) {
    (void)state;
    fx *f = fx_open_slots(CORRAL_EVICT_DEFAULT, NULL, NULL);
    if (!f) {
        skip();
        return; /* skip() is not declared noreturn */
    }
    run_rcu_roles(f, false, 20000);
    assert_int_equal(events(&f->rec, CORRAL__ADDED), 20000);
    assert_true(corral__mem_in_region(entry_of(f, "r0"))); /* the readers' entries were slots */
    fx_close_slots(f);
}

/* Sets `n` keys "<p><i>" of `len` bytes of a letter that `round` shifts; counts in *slots the
 * entries that are slots, and checks each one's name. */
static void fill_keys(fx *f, const char *p, unsigned n, size_t len, unsigned round, size_t *slots) {
    char val[256], k[32];
    assert_true(len <= sizeof val);
    for (unsigned i = 0; i < n; i++) {
        memset(val, 'a' + (int)((i + round) % 26), len);
        snprintf(k, sizeof k, "%s%u", p, i);
        corral__skey sk = ss_key(k);
        assert_int_equal(
            f->s->ops->set(f->s, &sk, val, len, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
            CORRAL_OK);
        mem_entry *e = entry_of(f, k);
        bool in = corral__mem_in_region(e);
        expect_named(e, !in);
        *slots += in;
    }
}

/* Asserts fill_keys's keys hold their bytes, but every `gone`-th (0: none), which misses. */
static void expect_keys(fx *f, const char *p, unsigned n, size_t len, unsigned round,
                        unsigned gone) {
    char k[32];
    for (unsigned i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%u", p, i);
        corral__skey sk = ss_key(k);
        if (gone && i % gone == 0)
            assert_int_equal(get_rc(f, k), CORRAL_MISS);
        else
            expect_fill(f, &sk, len, (char)('a' + (i + round) % 26), false);
    }
}

static int region_unlimit(void **state) {
    (void)state;
    corral__mem_region_limit(SIZE_MAX);
    return 0;
}

/* A region with no room left (memory_block.h: 16 GiB of chunks in the process, here one chunk)
 * costs a store nothing but density: its small entries go on the heap as far entries, and so do
 * its small bucket tables; every key is found with its bytes through overwrites of other sizes
 * and deletes, and the accounting holds. A second store, opened with the region full, grows its
 * tables on the heap. */
static void test_mem_small_entries_go_on_the_heap_when_the_region_is_full(void **state) {
    (void)state;
    enum { N = 30000, M = 200 };
    corral__mem_depot_drain(); /* no chunk left by an earlier test: place 0 is free */
    corral__mem_region_limit(1);
    fx *f = fx_open_slots(CORRAL_EVICT_DEFAULT, NULL, NULL);
    if (!f) {
        skip();
        return; /* skip() is not declared noreturn */
    }
    size_t slots = 0;
    fill_keys(f, "k", N, 100, 0, &slots);
    assert_true(slots > 0 && slots < N); /* one chunk holds about 13,000 of them */
    expect_keys(f, "k", N, 100, 0, 0);
    slots = 0;
    fill_keys(f, "k", N, 60, 1, &slots); /* overwrites by new entries, of either kind */
    for (unsigned i = 0; i < N; i += 5) {
        char k[32];
        snprintf(k, sizeof k, "k%u", i);
        corral__skey sk = ss_key(k);
        assert_int_equal(f->s->ops->del(f->s, &sk), CORRAL_OK);
    }
    expect_keys(f, "k", N, 60, 1, 5);
    corral__mem_quiesce(f->s); /* its names stay as they are while g counts its own */
    fx *g = fx_open_slots(CORRAL_EVICT_DEFAULT, NULL, NULL);
    assert_non_null(g);
    slots = 0;
    fill_keys(g, "g", M, 100, 0, &slots);
    assert_int_equal(slots, 0);
    /* its table grew to 256 heads, on the heap, and costs what the heap holds for it (a slot of
     * its size would cost another amount) */
    mem_shard *sh = &store_of(g->s)->shards[0];
    shard_lock(sh);
    size_t want = 0;
    for (mem_table *t = table_locked(sh), *to = grow_locked(sh); t; t = to, to = NULL) {
        assert_false(corral__mem_in_region(t));
        want += corral__mem_heap_cost(sh->blocks, mem_table_bytes(t->bits));
    }
    shard_unlock(sh);
    assert_true(corral__mem_heap_cost(sh->blocks, mem_table_bytes(8)) !=
                corral__mem_block_cost(sh->blocks, mem_table_bytes(8)));
    assert_int_equal(corral__mem_table_bytes(g->s), want);
    expect_keys(g, "g", M, 100, 0, 0);
    fx_close_slots(g);
    fx_close_slots(f);
    /* Closed, f's chunk leaves the depot and gives place 0 back: the region has room again. */
    corral__mem_depot_drain();
    fx *h = fx_open_slots(CORRAL_EVICT_DEFAULT, NULL, NULL);
    assert_non_null(h);
    size_t in = 0;
    fill_keys(h, "h", 1, 100, 0, &in);
    assert_int_equal(in, 1);
    fx_close_slots(h);
}

/* An entry whose count of references is full (value.h) answers a get with a copy of its bytes,
 * and keeps its count: the get path never carries the count into the generation. */
static void test_mem_a_get_at_a_full_count_hands_out_a_copy(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    assert_int_equal(set(f, "k", "hello", CORRAL__NO_EXPIRY), CORRAL_OK);
    mem_entry *e = entry_of(f, "k");
    uint32_t had = atomic_load(&e->val.refs);
    atomic_store(&e->val.refs, (had & ~CORRAL__REFS_COUNT) | CORRAL__REFS_FULL);
    corral__skey sk = ss_key("k");
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &v), CORRAL_OK);
    assert_ptr_not_equal(v, &e->val);
    assert_int_equal(corral_value_len(v), 5);
    assert_memory_equal(corral_value_data(v), "hello", 6);
    assert_int_equal(atomic_load(&e->val.refs) & CORRAL__REFS_COUNT, CORRAL__REFS_FULL);
    corral_value_unref(v);
    atomic_store(&e->val.refs, had);
    fx_close(f);
}

/* The seqlock of a copy without a reference (memory_read.h, "Overwrites in place"): a copy that
 * an overwrite in place ran across (the generation moved) or runs under (a count of 0) is made
 * again; references taken and dropped meanwhile move the count only, and leave it standing. */
static void test_mem_a_copy_across_an_overwrite_in_place_is_made_again(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    mem_store *s = store_of(f->s);
    assert_int_equal(set(f, "k", "first", CORRAL__NO_EXPIRY), CORRAL_OK);
    mem_entry *e = entry_of(f, "k");
    read_lock(s);
    uint32_t gen = mem_gen_begin(e);
    assert_false(mem_gen_retry(e, gen));
    read_unlock(s);
    assert_int_equal(set(f, "k", "again", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), 1);
    assert_ptr_equal(entry_of(f, "k"), e);
    read_lock(s);
    assert_true(mem_gen_retry(e, gen));
    gen = mem_gen_begin(e);
    uint32_t r = atomic_load(&e->val.refs);
    atomic_store(&e->val.refs, r - 1); /* as an overwrite in place holds it while it writes */
    assert_true(mem_gen_retry(e, gen));
    atomic_store(&e->val.refs, r);
    read_unlock(s);
    corral__skey sk = ss_key("k");
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &sk, &v), CORRAL_OK);
    read_lock(s);
    assert_false(mem_gen_retry(e, gen));
    read_unlock(s);
    corral_value_unref(v);
    read_lock(s);
    assert_false(mem_gen_retry(e, gen));
    read_unlock(s);
    fx_close(f);
}

/* An entry takes MEM_GEN_LAST / CORRAL__REFS_GEN_ONE overwrites in place; the write after them
 * allocates a new entry, so no generation comes back on an entry a reader may stand on, and
 * the new entry's generations start again. */
static void test_mem_an_entry_at_its_last_generation_is_replaced(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    const long gens = MEM_GEN_LAST / CORRAL__REFS_GEN_ONE;
    char v[8];
    assert_int_equal(set(f, "k", "v000", CORRAL__NO_EXPIRY), CORRAL_OK);
    mem_entry *e = entry_of(f, "k");
    size_t allocs = atomic_load(&f->ca.allocs);
    for (long i = 1; i <= gens; i++) {
        snprintf(v, sizeof v, "v%03ld", i);
        assert_int_equal(set(f, "k", v, CORRAL__NO_EXPIRY), CORRAL_OK);
    }
    assert_int_equal(atomic_load(&f->ca.allocs), allocs);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), gens);
    assert_ptr_equal(entry_of(f, "k"), e);
    assert_int_equal(atomic_load(&e->val.refs) & ~CORRAL__REFS_COUNT, MEM_GEN_LAST);
    snprintf(v, sizeof v, "v%03ld", gens + 1);
    assert_int_equal(set(f, "k", v, CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(atomic_load(&f->ca.allocs), allocs + 1);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), gens);
    expect_stored(f, "k", v);
    e = entry_of(f, "k");
    assert_int_equal(atomic_load(&e->val.refs), 1); /* the table's reference, generation 0 */
    assert_int_equal(set(f, "k", "v000", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), gens + 1);
    fx_close(f);
}

/* ---- Chains (keys whose hashes collide) ---- */

/* A key hash that gives every key the hash at `ctx`: a store opened with it (fx_open_same_hash)
 * holds all its keys in one chain, which the tests below need. */
static uint64_t same_hash(const void *ctx, const void *key, size_t len) {
    (void)key;
    (void)len;
    return *(const uint64_t *)ctx;
}

static fx *fx_open_same_hash(const uint64_t *hash) {
    fx *f = fx_init(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    f->cfg.key_hash = same_hash;
    f->cfg.key_hash_ctx = hash;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    f->baseline = outstanding(&f->ca);
    return f;
}

/* A store key of a C string with the hash `hash`, which must be the store's hash of it (a
 * lookup under another hash looks in another chain). */
static corral__skey KH(const char *k, uint64_t hash) {
    return (corral__skey){ .data = k, .len = strlen(k), .hash = hash, .cls = 1 };
}

static int set_h(fx *f, const char *k, uint64_t hash, const char *v) {
    corral__skey sk = KH(k, hash);
    return f->s->ops->set(f->s, &sk, v, strlen(v), CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0);
}

static void expect_h(fx *f, const char *k, uint64_t hash, const char *want) {
    corral__skey sk = KH(k, hash);
    char buf[32];
    size_t len = 0, hlen = 0;
    int rc = f->s->ops->get_into(f->s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen);
    if (!want) {
        assert_int_equal(rc, CORRAL_MISS);
        return;
    }
    assert_int_equal(rc, CORRAL_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

/* Keys of one length in one chain are told apart by their bytes alone (key_equal): keys of 9
 * to 33 bytes that differ only in their first byte, or only in a middle word, each answer with
 * their own value. */
static void test_mem_keys_of_one_length_in_one_chain_differ_anywhere(void **state) {
    (void)state;
    static const uint64_t h = 0x5eedu;
    fx *f = fx_open_same_hash(&h);
    static const size_t lens[] = { 9, 16, 17, 32, 33 };
    char keys[5][3][40];
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 3; j++) {
            memset(keys[i][j], 'k', lens[i]);
            keys[i][j][lens[i]] = '\0';
        }
        keys[i][1][0] = 'a';               /* the first byte */
        keys[i][2][lens[i] / 2 - 1] = 'm'; /* a middle word */
        for (int j = 0; j < 3; j++) {
            char v[8];
            snprintf(v, sizeof v, "%d.%d", i, j);
            assert_int_equal(set_h(f, keys[i][j], h, v), CORRAL_OK);
        }
    }
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 3; j++) {
            char v[8];
            snprintf(v, sizeof v, "%d.%d", i, j);
            expect_h(f, keys[i][j], h, v);
            corral__skey sk = KH(keys[i][j], h);
            corral_value *got = NULL;
            assert_int_equal(f->s->ops->get(f->s, &sk, &got), CORRAL_OK);
            assert_string_equal(corral_value_data(got), v);
            corral_value_unref(got);
        }
    }
    fx_close(f);
}

static void test_mem_keys_that_share_a_hash_stay_apart_in_one_chain(void **state) {
    (void)state;
    static const uint64_t h = 0x5eedu;
    fx *f = fx_open_same_hash(&h);
    assert_int_equal(set_h(f, "a", h, "1"), CORRAL_OK);
    assert_int_equal(set_h(f, "b", h, "2"), CORRAL_OK);
    assert_int_equal(set_h(f, "c", h, "3"), CORRAL_OK);
    assert_int_equal(set_h(f, "dd", h, "4"), CORRAL_OK); /* same hash, another length */
    corral__skey lk = KH("b", h);
    assert_int_equal(f->s->ops->lease_acquire(f->s, &lk, "t", 1, 1000), CORRAL_OK);
    assert_int_equal(set_h(f, "b", h, "2b"), CORRAL_OK); /* replaced in the middle */
    assert_int_equal(
        f->s->ops->del(f->s, &(corral__skey){ .data = "dd", .len = 2, .hash = h, .cls = 1 }),
        CORRAL_OK); /* head */
    assert_int_equal(
        f->s->ops->del(f->s, &(corral__skey){ .data = "a", .len = 1, .hash = h, .cls = 1 }),
        CORRAL_OK); /* tail */
    expect_h(f, "a", h, NULL);
    expect_h(f, "b", h, "2b");
    expect_h(f, "c", h, "3");
    expect_h(f, "dd", h, NULL);
    expect_h(f, "b", h + 1, NULL); /* under another hash: another chain */
    assert_int_equal(f->s->ops->lease_release(f->s, &lk, "t", 1), CORRAL_OK);
    expect_h(f, "b", h, "2b"); /* the lease was its own entry */
    fx_close(f);
}

/* The read path (memory_read.h) walks past the entries of its chain that are not its key's: a
 * store that hashes every key as the read path hashes "b" holds ":1:a" (the same length and
 * kind: its bytes are compared), a lease of ":1:b" (another kind), ":1:bb" (another length)
 * and ":1:b" in one chain, the later ones first, so finding "b" passes three of them. */
static void test_mem_read_path_passes_entries_that_share_its_hash(void **state) {
    (void)state;
    corral__keyscheme ks;
    corral__keyscheme_init(&ks, "", 0, 1, false, NULL, NULL);
    assert_true(ks.hot);
    const uint64_t h = corral__key_hash(&ks, ":1:b", 4);
    fx *f = fx_open_same_hash(&h);
    assert_int_equal(set_h(f, ":1:b", h, "right"), CORRAL_OK);
    assert_int_equal(set_h(f, ":1:bb", h, "longer"), CORRAL_OK);
    corral__skey lk = KH(":1:b", h);
    assert_int_equal(f->s->ops->lease_acquire(f->s, &lk, "t", 1, 1000), CORRAL_OK);
    assert_int_equal(set_h(f, ":1:a", h, "wrong"), CORRAL_OK);
    char buf[16];
    size_t len = 0;
    uint16_t cls = 0;
    assert_int_equal(corral__mem_get_into_hot(f->s, &ks, "b", 1, buf, sizeof buf, &len, &cls),
                     CORRAL_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "right", 5);
    corral_value *v = NULL;
    assert_int_equal(corral__mem_get_hot(f->s, &ks, "b", 1, &v, &cls), CORRAL_OK);
    assert_int_equal(corral_value_len(v), 5);
    assert_memory_equal(corral_value_data(v), "right", 5);
    corral_value_unref(v);
    assert_int_equal(f->s->ops->lease_release(f->s, &lk, "t", 1), CORRAL_OK);
    fx_close(f);
}

/* The read path compares a stored key's "prefix:version:" header as two masked words: keys
 * that differ from the scheme's only in the header, in either word, are not its key. */
static void check_header_compared(const char *prefix, const char *other_prefix) {
    corral__keyscheme ks;
    corral__keyscheme_init(&ks, prefix, strlen(prefix), 1, false, NULL, NULL);
    assert_true(ks.hot);
    char mine[64], other_version[64], other_prefix_key[64];
    snprintf(mine, sizeof mine, "%s:1:k", prefix);
    snprintf(other_version, sizeof other_version, "%s:2:k", prefix);
    snprintf(other_prefix_key, sizeof other_prefix_key, "%s:1:k", other_prefix);
    const uint64_t h = corral__key_hash(&ks, mine, strlen(mine));
    fx *f = fx_open_same_hash(&h); /* the three keys in one chain */
    assert_int_equal(set_h(f, other_version, h, "version 2"), CORRAL_OK);
    assert_int_equal(set_h(f, other_prefix_key, h, "other prefix"), CORRAL_OK);
    char buf[16];
    size_t len = 0;
    uint16_t cls = 0;
    assert_int_equal(corral__mem_get_into_hot(f->s, &ks, "k", 1, buf, sizeof buf, &len, &cls),
                     CORRAL_MISS);
    assert_int_equal(set_h(f, mine, h, "mine"), CORRAL_OK);
    assert_int_equal(corral__mem_get_into_hot(f->s, &ks, "k", 1, buf, sizeof buf, &len, &cls),
                     CORRAL_OK);
    assert_memory_equal(buf, "mine", 4);
    fx_close(f);
}

static void test_mem_read_path_compares_the_whole_header(void **state) {
    (void)state;
    check_header_compared("", "x");                /* ":1:" against "x:1:": the first word */
    check_header_compared("abcdefgh", "abcdefgx"); /* 11 bytes: a difference in the second */
    check_header_compared("abcdefghijklm", "abcdefghijklx"); /* 16 bytes, the most a hot one has */
}

/* ---- Overwrites in place that move the envelope header ---- */

/* Two values of one total length, so each overwrites the other in place: FLIP_TOTAL plain bytes
 * 'p', and an envelope header of FLIP_HDR bytes followed by FLIP_TOTAL - FLIP_HDR bytes 'w'. A
 * get_into that took the payload length of the plain one (FLIP_TOTAL) and the header length of
 * the other (FLIP_HDR) would copy from FLIP_HDR bytes into the value to FLIP_HDR - 1 bytes past
 * the entry's block, which AddressSanitizer reports. */
#define FLIP_TOTAL  200u
#define FLIP_HDR    100u
#define FLIP_WRITES 100000

typedef struct flip_arg {
    fx *f;
    pthread_barrier_t *start;
    const corral__keyscheme *ks;
    corral__skey sk; /* ks's physical key of "k" */
    _Atomic bool *done;
    bool writer;
    const char *bad; /* what went wrong in the thread, or NULL */
    unsigned char plain[FLIP_TOTAL], wrapped[FLIP_TOTAL];
} flip_arg;

static void flip_values(flip_arg *a) {
    memset(a->plain, 'p', FLIP_TOTAL);
    memset(a->wrapped, 0, FLIP_HDR);
    memset(a->wrapped + FLIP_HDR, 'w', FLIP_TOTAL - FLIP_HDR);
    /* magic, format, flags (tags: a header of any length past the minimum), length */
    memcpy(a->wrapped, (unsigned char[]){ 0xC7, 1, 0x02, FLIP_HDR & 0xff, FLIP_HDR >> 8 }, 5);
}

/* One whole version: the plain bytes, or the wrapped header and its payload. */
static bool flip_whole(const flip_arg *a, const unsigned char *buf, size_t len,
                       const unsigned char *hdr, size_t hlen) {
    if (hlen == 0) return len == FLIP_TOTAL && memcmp(buf, a->plain, FLIP_TOTAL) == 0;
    return hlen == FLIP_HDR && len == FLIP_TOTAL - FLIP_HDR &&
           memcmp(hdr, a->wrapped, FLIP_HDR) == 0 && memcmp(buf, a->wrapped + FLIP_HDR, len) == 0;
}

/* The threads record what went wrong in a->bad and the main thread asserts it after the joins:
 * a failed assertion in a thread would leave the other spinning. The writer always sets done. */
static void *flip_main(void *p) {
    flip_arg *a = p;
    corral__store *s = a->f->s;
    unsigned char buf[FLIP_TOTAL], hdr[FLIP_TOTAL];
    int rc = pthread_barrier_wait(a->start);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) a->bad = "barrier";
    if (a->writer) {
        for (int i = 1; i <= FLIP_WRITES && !a->bad; i++)
            if (s->ops->set(s, &a->sk, i % 2 ? a->wrapped : a->plain, FLIP_TOTAL, CORRAL__NO_EXPIRY,
                            CORRAL__SET_ALWAYS, 0) != CORRAL_OK)
                a->bad = "a set failed";
        atomic_store(a->done, true);
        return NULL;
    }
    while (!a->bad && !atomic_load(a->done)) {
        size_t len = 0, hlen = 0;
        if (s->ops->get_into(s, &a->sk, buf, sizeof buf, &len, hdr, sizeof hdr, &hlen) != CORRAL_OK)
            a->bad = "get_into did not find the key";
        else if (!flip_whole(a, buf, len, hdr, hlen))
            a->bad = "get_into copied no whole version";
        uint16_t cls = 0;
        rc = corral__mem_get_into_hot(s, a->ks, "k", 1, buf, sizeof buf, &len, &cls);
        if (rc == CORRAL_OK && !flip_whole(a, buf, len, NULL, 0))
            a->bad = "the read path copied no whole version";
        else if (rc != CORRAL_OK && rc != CORRAL__MEM_HOT_SLOW) /* the wrapped one: a header */
            a->bad = "the read path failed";
    }
    return NULL;
}

/* A get_into copies a value only with lengths of one version of it, which fit its block, while
 * overwrites in place alternate a value without an envelope header and one with a header of
 * the same total length: the general path (header and payload) and the read path (payload). */
static void
test_mem_get_into_copies_within_the_block_while_the_header_length_changes(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    corral__keyscheme ks;
    corral__keyscheme_init(&ks, "", 0, 1, false, NULL, NULL);
    assert_true(ks.hot);
    _Atomic bool done = false;
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    flip_arg a[2];
    for (int i = 0; i < 2; i++) {
        a[i] = (flip_arg){ .f = f, .start = &start, .ks = &ks, .done = &done, .writer = i == 0 };
        a[i].sk = KH(":1:k", corral__key_hash(&ks, ":1:k", 4));
        flip_values(&a[i]);
    }
    assert_int_equal(f->s->ops->set(f->s, &a[0].sk, a[0].plain, FLIP_TOTAL, CORRAL__NO_EXPIRY,
                                    CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, flip_main, &a[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    for (int i = 0; i < 2; i++)
        if (a[i].bad) fail_msg("%s: %s", a[i].writer ? "writer" : "reader", a[i].bad);
    /* Every write went in place, readers that copy holding no reference to refuse it, but the
     * one after each entry's last generation, which allocated a new entry. */
    const long gens = MEM_GEN_LAST / CORRAL__REFS_GEN_ONE;
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), FLIP_WRITES - FLIP_WRITES / (gens + 1));
    fx_close(f);
}

/* A reader on the read path that stops inside its section, on the entry of "k", until the main
 * thread lets it go; then copies the entry's value (ASan would report a freed block). */
typedef struct standing {
    fx *f;
    corral__keyscheme ks;
    pthread_barrier_t in, out;
    int found;
    char seen[8];
} standing;

static void *stand_on_entry(void *p) {
    standing *st = p;
    mem_store *s = store_of(st->f->s);
    uint64_t hash;
    int rc = hot_begin(s, &st->ks, "k", 1, &hash);
    const mem_entry *e = rc == CORRAL_OK ? hot_find(s, &st->ks, "k", 1, hash, &rc) : NULL;
    st->found = e != NULL;
    pthread_barrier_wait(&st->in);
    pthread_barrier_wait(&st->out);
    if (e && e->val.len < sizeof st->seen) memcpy(st->seen, e->key + mem_klen(e), e->val.len);
    if (e || rc != CORRAL_EBADKEY) (void)hot_end(s, e ? CORRAL_OK : rc, "k", 1);
    return NULL;
}

typedef struct quiescer {
    corral__store *s;
    _Atomic bool done;
} quiescer;

static void *quiesce(void *p) {
    quiescer *q = p;
    corral__mem_quiesce(q->s);
    atomic_store(&q->done, true);
    return NULL;
}

/* The grace period of the store's own read-side sections (store/reader.h): an entry deleted
 * while a reader stands on it stays allocated until that reader leaves its section. */
static void test_mem_removed_entry_outlives_the_sections_that_saw_it(void **state) {
    (void)state;
    standing st = { .f = fx_init(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0) };
    assert_int_equal(corral__mem_open(&st.f->s, &st.f->cfg, &st.f->env), CORRAL_OK);
    st.f->baseline = outstanding(&st.f->ca);
    corral__keyscheme_init(&st.ks, "", 0, 1, false, NULL, NULL);
    fx *f = st.f;
    corral__skey sk = KH(":1:k", corral__key_hash(&st.ks, ":1:k", 4));
    assert_int_equal(set_h(f, ":1:k", sk.hash, "kept"), CORRAL_OK);
    size_t entry = outstanding(&f->ca) - f->baseline;
    assert_int_equal(pthread_barrier_init(&st.in, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&st.out, NULL, 2), 0);
    pthread_t reader, waiter;
    assert_int_equal(pthread_create(&reader, NULL, stand_on_entry, &st), 0);
    pthread_barrier_wait(&st.in);
    assert_true(st.found);
    assert_int_equal(f->s->ops->del(f->s, &sk), CORRAL_OK);
    uint64_t before = corral__reader_waits();
    quiescer q = { .s = f->s };
    assert_int_equal(pthread_create(&waiter, NULL, quiesce, &q), 0);
    /* Until the free's grace period finds the reader, or the free is done without one. */
    while (corral__reader_waits() == before && !atomic_load(&q.done))
        sched_yield();
    assert_false(atomic_load(&q.done));
    assert_int_equal(outstanding(&f->ca) - f->baseline, entry);
    pthread_barrier_wait(&st.out);
    assert_int_equal(pthread_join(reader, NULL), 0);
    assert_int_equal(pthread_join(waiter, NULL), 0);
    assert_true(atomic_load(&q.done));
    assert_memory_equal(st.seen, "kept", 4);
    assert_int_equal(outstanding(&f->ca), f->baseline);
    pthread_barrier_destroy(&st.in);
    pthread_barrier_destroy(&st.out);
    fx_close(f);
}

/* The limbo tests' values: over MEM_INPLACE_MAX (memory_write.c), so every set allocates. */
#define LIMBO_VAL 5000

/* The store key "k00".."k15" of the limbo tests' i-th write, rendered into `buf`. */
static corral__skey limbo_key(char buf[8], unsigned i) {
    snprintf(buf, 8, "k%02u", i % 16);
    return ss_key(buf);
}

/* A write that finds more than limbo_max bytes removed and not yet freed frees them itself
 * (memory_rcu.c, corral__mem_limbo_help): with liburcu's call_rcu thread paused, as fork's
 * prepare pauses it, no flush runs, and still what the allocator holds beyond the accounting
 * never passes the limbo's cap and an entry. */
static void test_issue_15_write_frees_the_limbo_when_the_flush_lags(void **state) {
    (void)state;
    fx *f = fx_open((size_t)4 << 20, CORRAL_EVICT_DEFAULT, 1);
    const mem_store *ms = (const mem_store *)f->s;
    assert_int_equal(ms->limbo_max, MEM_LIMBO_MIN); /* a small store's: the floor */
    char *val = malloc(LIMBO_VAL + 1);
    assert_non_null(val);
    memset(val, 'v', LIMBO_VAL + 1);
    size_t entry = corral__mem_entry_bytes(3, LIMBO_VAL + 1), peak = 0, written = 0, failed = 0;
    /* No assertion until the thread runs again: a failure would leave it paused. */
    call_rcu_before_fork();
    for (unsigned i = 0; written < 8 * ms->limbo_max; i++) {
        char k[8];
        corral__skey sk = limbo_key(k, i);
        failed += f->s->ops->set(f->s, &sk, val, LIMBO_VAL + (i & 1), CORRAL__NO_EXPIRY,
                                 CORRAL__SET_ALWAYS, 0) != CORRAL_OK;
        written += LIMBO_VAL;
        size_t held = outstanding(&f->ca) - f->baseline - used(f);
        peak = held > peak ? held : peak;
    }
    call_rcu_after_fork_parent();
    assert_int_equal(failed, 0);
    assert_true(atomic_load(&ms->limbo_helps) >= 7); /* 8 caps written, the flush stopped */
    print_message("held beyond the accounting: at most %zu bytes (cap %zu)\n", peak, ms->limbo_max);
    assert_true(peak > ms->limbo_max / 2); /* the limbo filled, and was freed by writes */
    assert_true(peak <= ms->limbo_max + entry);
    free(val);
    fx_close(f);
}

typedef struct limbo_writer {
    fx *f;
    unsigned id;
    _Atomic bool *stop;
    size_t failed, torn;
} limbo_writer;

/* Overwrites 16 keys with values too large to write in place, every byte the writer's own. */
static void *limbo_write_main(void *p) {
    limbo_writer *w = p;
    char val[LIMBO_VAL];
    memset(val, 'a' + (int)w->id, LIMBO_VAL);
    for (unsigned i = 0; i < 1500; i++) {
        char k[8];
        corral__skey sk = limbo_key(k, i);
        w->failed += w->f->s->ops->set(w->f->s, &sk, val, LIMBO_VAL - (i & 1), CORRAL__NO_EXPIRY,
                                       CORRAL__SET_ALWAYS, 0) != CORRAL_OK;
    }
    return NULL;
}

/* Holds values while the writers replace them: a value is never freed under its holder. */
static void *limbo_read_main(void *p) {
    limbo_writer *r = p;
    for (unsigned i = 0; !atomic_load(r->stop); i++) {
        char k[8];
        corral__skey sk = limbo_key(k, i);
        corral_value *v;
        if (r->f->s->ops->get(r->f->s, &sk, &v) != CORRAL_OK) continue;
        const unsigned char *d = corral__value_data(v);
        for (size_t j = 1; j < v->len; j++)
            r->torn += d[j] != d[0];
        corral_value_unref(v);
    }
    return NULL;
}

/* Two writers that each pass the limbo's cap many times, with the call_rcu thread running and a
 * reader holding values: the writes free the limbo one at a time beside the flush, and every
 * entry is freed once (the accounting at close), never under a reader. ThreadSanitizer runs it. */
static void test_issue_15_writers_free_the_limbo_beside_the_flush(void **state) {
    (void)state;
    fx *f = fx_open((size_t)4 << 20, CORRAL_EVICT_DEFAULT, 2);
    _Atomic bool stop = false;
    limbo_writer w[3] = { { f, 0, &stop, 0, 0 }, { f, 1, &stop, 0, 0 }, { f, 2, &stop, 0, 0 } };
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[2], NULL, limbo_read_main, &w[2]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, limbo_write_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    atomic_store(&stop, true);
    assert_int_equal(pthread_join(t[2], NULL), 0);
    assert_int_equal(w[0].failed + w[1].failed, 0);
    assert_int_equal(w[2].torn, 0);
    /* 15 MB retired past a 1 MiB cap: the flush, asleep 10 ms between batches, left the writes
     * some of it to free. */
    size_t helps = atomic_load(&((const mem_store *)f->s)->limbo_helps);
    print_message("writes that freed the limbo: %zu\n", helps);
    assert_true(helps > 0);
    fx_close(f); /* every entry released once: the allocator holds nothing more */
}

/* Counts the calls of a clock that stands still. */
static _Atomic long clock_calls;

static uint64_t counting_now(void *ctx) {
    (void)ctx;
    atomic_fetch_add(&clock_calls, 1);
    return T0_NS;
}

static void test_mem_gets_read_the_clock_only_for_entries_that_expire(void **state) {
    (void)state;
    fx *f = fx_init(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    f->env.now_ns = counting_now;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    f->baseline = outstanding(&f->ca);
    assert_int_equal(set(f, "forever", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(set(f, "soon", "v", 1000), CORRAL_OK);
    atomic_store(&clock_calls, 0);
    expect_stored(f, "forever", "v");
    expect_h(f, "forever", corral__hash_bytes("forever", 7), "v");
    assert_int_equal(atomic_load(&clock_calls), 0);
    expect_stored(f, "soon", "v");
    assert_int_equal(atomic_load(&clock_calls), 1);
    fx_close(f);
}

/* The clock reads of one write, from a count of zero. */
static long clock_reads_of(fx *f, const char *k, const char *v, int64_t ttl_ms,
                           corral__set_mode m) {
    atomic_store(&f->clock.reads, 0);
    assert_int_equal(set_mode(f, k, v, ttl_ms, m), CORRAL_OK);
    return atomic_load(&f->clock.reads);
}

/* A write without a TTL into a shard where no entry expires needs no time: not for an insert,
 * an add, an overwrite in place or one that allocates. One with a TTL reads the clock once,
 * and so does one without, once the shard holds an entry that expires (the write scan). */
static void test_mem_sets_read_the_clock_only_when_an_expiry_needs_it(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    assert_int_equal(clock_reads_of(f, "a", "one", CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS), 0);
    assert_int_equal(clock_reads_of(f, "a", "two", CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS), 0);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), 1);
    assert_int_equal(
        clock_reads_of(f, "a", "a longer value", CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS), 0);
    assert_int_equal(clock_reads_of(f, "b", "v", CORRAL__NO_EXPIRY, CORRAL__SET_NX), 0);
    assert_int_equal(clock_reads_of(f, "c", "v", 1000, CORRAL__SET_ALWAYS), 1);
    assert_int_equal(clock_reads_of(f, "a", "three", CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS), 1);
    assert_int_equal(clock_reads_of(f, "a", "four!", CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS), 1);
    expect_stored(f, "a", "four!");
    fx_close(f);
}

/* A write without a TTL still finds the key's entry expired when it is: a set of the same size
 * replaces it as EXPIRED (not an overwrite in place of a live entry), an add succeeds, and the
 * entry given an expiry by touch counts too. */
static void test_mem_set_without_ttl_treats_an_expired_entry_as_expired(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    assert_int_equal(set(f, "j", "one", 100), CORRAL_OK);
    assert_int_equal(set(f, "k", "old", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(touch(f, "k", 100), CORRAL_OK);
    advance_ms(f, 100);
    assert_int_equal(set(f, "j", "two", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(events(&f->rec, CORRAL__OVERWRITTEN), 0);
    assert_int_equal(set_mode(f, "k", "new", CORRAL__NO_EXPIRY, CORRAL__SET_NX), CORRAL_OK);
    assert_int_equal(events(&f->rec, CORRAL__EXPIRED), 2);
    assert_int_equal(events(&f->rec, CORRAL__REPLACED), 0);
    expect_stored(f, "j", "two");
    expect_stored(f, "k", "new");
    fx_close(f);
}

/* ---- Expiry in 32 bits (memory_read.h, "Expiry"; memory.c, "Expiry epochs") ---- */

#define SEC_MS  1000ull
#define DAY_MS  (86400ull * SEC_MS)
#define YEAR_MS (365ull * DAY_MS)

/* An expiry is its time past the base of its parity rounded up to its unit: ms up to
 * MEM_EXP_COUNT_LAST ms, seconds from there, the last count beyond; never earlier than asked,
 * less than one unit later; the parity in the top bit. */
static void test_mem_expiry_rounds_up_to_its_unit(void **state) {
    (void)state;
    const uint64_t b = 5 * DAY_MS * MS; /* a base: whole seconds */
    const uint64_t ms_last = (uint64_t)MEM_EXP_COUNT_LAST * MS;
    const uint32_t s_first = MEM_EXP_SECS + 1073742; /* 1073741.822 s and 1 ns, up */
    const struct {
        uint64_t at;
        uint32_t x;
    } rows[] = {
        { b - 1, 0 }, /* before the base: the base */
        { b, 0 },
        { b + 1, 1 },
        { b + MS, 1 },
        { b + MS + 1, 2 },
        { b + ms_last, MEM_EXP_COUNT_LAST }, /* the last whole ms */
        { b + ms_last + 1, s_first },
        { b + 1073742 * SEC_MS * MS, s_first },
        { b + 10 * YEAR_MS * MS, MEM_EXP_SECS + 10 * 365 * 86400 },
        { b + (uint64_t)MEM_EXP_COUNT_LAST * SEC_MS * MS, MEM_EXP_SECS | MEM_EXP_COUNT_LAST },
        { b + (uint64_t)MEM_EXP_COUNT * SEC_MS * MS, MEM_EXP_SECS | MEM_EXP_COUNT_LAST },
        { MEM_NEVER - 1, MEM_EXP_SECS | MEM_EXP_COUNT_LAST },
    };
    for (unsigned p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            uint32_t x = mem_exp_encode(rows[i].at, p, b);
            assert_int_equal(x, rows[i].x | (p ? MEM_EXP_PARITY : 0));
            assert_int_equal(mem_exp_parity(x), p);
            uint64_t ns = mem_exp_decode(x, b), unit = x & MEM_EXP_SECS ? SEC_MS * MS : MS;
            if (rows[i].at < b || (x & MEM_EXP_COUNT) == MEM_EXP_COUNT_LAST) continue;
            assert_true(ns >= rows[i].at && ns - rows[i].at < unit);
        }
        assert_int_equal(mem_exp_encode(MEM_NEVER, p, b), MEM_EXP_NEVER);
    }
}

/* The shard of a one-shard fixture, for the epochs' state. */
static mem_shard *shard0(fx *f) {
    return &((mem_store *)f->s)->shards[0];
}

/* The expiry of `k` in the store (the ms left, rounded up). */
static int64_t ttl_left(fx *f, const char *k) {
    corral__skey sk = ss_key(k);
    int64_t ms = 0;
    assert_int_equal(f->s->ops->ttl(f->s, &sk, &ms), CORRAL_OK);
    return ms;
}

/* `k` holds `v` until `ms` from now and not from then, moving the clock there. */
static void expect_expires_in(fx *f, const char *k, const char *v, uint64_t ms) {
    advance_ms(f, ms - 1);
    expect_stored(f, k, v);
    advance_ms(f, 1);
    assert_int_equal(get_rc(f, k), CORRAL_MISS);
}

/* The reviewer's case: a store open for 30 and 60 days still gives a short TTL its ms (the
 * old encoding counted from the open, in seconds after 24.8 days: 100 ms lived up to 1.1 s),
 * set, touch and the ttl it reports alike. The writes come between two whole ms: an expiry
 * rounded up to its ms comes within the ms after its TTL. */
static void test_mem_short_ttls_keep_their_ms_after_the_store_ran_for_weeks(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    for (int run = 0; run < 2; run++) {
        advance_ms(f, 30 * DAY_MS + 567);
        atomic_fetch_add(&f->clock.now_ns, 123456);
        assert_int_equal(set(f, "s", "v", 100), CORRAL_OK);
        assert_int_equal(set(f, "t", "v", 1500), CORRAL_OK);
        int64_t left = ttl_left(f, "t");
        assert_true(left <= 1500 && left >= 1499);
        assert_int_equal(set(f, "u", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
        assert_int_equal(touch(f, "u", 250), CORRAL_OK);
        advance_ms(f, 99);
        expect_stored(f, "s", "v");
        advance_ms(f, 2);
        assert_int_equal(get_rc(f, "s"), CORRAL_MISS);
        advance_ms(f, 148);
        expect_stored(f, "u", "v");
        advance_ms(f, 2);
        assert_int_equal(get_rc(f, "u"), CORRAL_MISS);
        advance_ms(f, 1248);
        expect_stored(f, "t", "v");
        advance_ms(f, 2);
        assert_int_equal(get_rc(f, "t"), CORRAL_MISS);
    }
    fx_close(f);
}

/* Advances the clock a day `days` times with a write each day, which drives the rebases;
 * returns how many rebases there were (the flips of the shard's parity). */
static unsigned days_of_writes(fx *f, unsigned days) {
    unsigned flips = 0;
    for (unsigned i = 0; i < days; i++) {
        unsigned cur = shard0(f)->exp_cur;
        advance_ms(f, DAY_MS);
        assert_int_equal(set(f, "w", "v", 1000), CORRAL_OK);
        flips += shard0(f)->exp_cur != cur;
    }
    return flips;
}

/* Entries written before rebases keep their expiry across them and their walks: the one of
 * an ms TTL expires at its ms, the one in seconds at its second. Rebases come every 6.2 days
 * past a base a day before the write that set it (the epoch: a day before the open). */
static void test_mem_expiries_stay_exact_across_rebases(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    advance_ms(f, DAY_MS + 1234); /* the store's time: 2 days and 1234 ms */
    assert_int_equal(set(f, "a", "v", (int64_t)(10 * DAY_MS)), CORRAL_OK);
    assert_int_equal(set(f, "b", "v", (int64_t)(25 * DAY_MS)), CORRAL_OK); /* in seconds */
    assert_int_equal(days_of_writes(f, 8), 1);                             /* at 7 days */
    assert_int_equal(shard0(f)->exp_walk_q, MEM_QUEUES); /* three entries: walked by a write */
    expect_expires_in(f, "a", "v", 2 * DAY_MS);
    assert_int_equal(days_of_writes(f, 14), 3); /* at 13, 19 and 25 days */
    /* b: 27 days and 1234 ms, rounded up to 27 days and 2 s; the clock is at 26 days 1234 ms */
    advance_ms(f, DAY_MS + 766 - 1);
    expect_stored(f, "b", "v");
    advance_ms(f, 1);
    assert_int_equal(get_rc(f, "b"), CORRAL_MISS);
    fx_close(f);
}

/* A one-shard store under `ev` holding k0 .. k99 with a 20-day TTL, six days later: the write
 * of "w0" started a rebase, whose walk begins at the next write. */
static fx *open_at_a_rebase(corral_eviction ev) {
    fx *f = fx_open(NO_LIMIT, ev, 1);
    char k[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(set(f, k, "v", (int64_t)(20 * DAY_MS)), CORRAL_OK);
    }
    advance_ms(f, 6 * DAY_MS);
    unsigned cur = shard0(f)->exp_cur;
    assert_int_equal(set(f, "w0", "v", 1000), CORRAL_OK);
    assert_int_not_equal(shard0(f)->exp_cur, cur);
    return f;
}

/* A rebase due while the walk of the one before is unfinished (a shard with few writes) waits:
 * the walk goes on, a batch a write, and the rebase comes a day after it ended, so no entry,
 * queued, removed or loaded by a reader, still counts from the base it sets. Expiries stay
 * exact throughout. */
static void test_mem_rebase_waits_a_day_past_the_walk_before_it(void **state) {
    (void)state;
    fx *f = open_at_a_rebase(CORRAL_EVICT_DEFAULT);
    mem_shard *sh = shard0(f);
    char k[16];
    /* Each write below inserts a new key: one lock hold, one step of the epochs. */
    unsigned cur = sh->exp_cur;
    assert_int_equal(set(f, "w1", "v", 1000), CORRAL_OK); /* 16 entries of 101 */
    assert_int_not_equal(sh->exp_walk_q, MEM_QUEUES);
    advance_ms(f, 7 * DAY_MS);                            /* the next rebase is due */
    assert_int_equal(set(f, "w2", "v", 1000), CORRAL_OK); /* 64 more: the walk goes on */
    assert_int_not_equal(sh->exp_walk_q, MEM_QUEUES);
    assert_int_equal(sh->exp_cur, cur);
    assert_int_equal(set(f, "w3", "v", 1000), CORRAL_OK); /* the walk ends: no rebase yet */
    assert_int_equal(sh->exp_walk_q, MEM_QUEUES);
    assert_int_equal(sh->exp_cur, cur);
    advance_ms(f, DAY_MS - 1);
    assert_int_equal(set(f, "w4", "v", 1000), CORRAL_OK);
    assert_int_equal(sh->exp_cur, cur); /* a day after the walk, less a ms */
    advance_ms(f, 1);
    assert_int_equal(set(f, "w5", "v", 1000), CORRAL_OK);
    assert_int_not_equal(sh->exp_cur, cur); /* the rebase */
    advance_ms(f, 6 * DAY_MS - 1);          /* 20 days after the writes, less a ms */
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        expect_stored(f, k, "v");
    }
    advance_ms(f, 1);
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(get_rc(f, k), CORRAL_MISS);
    }
    fx_close(f);
}

/* An entry moved into a queue during a walk (an S3-FIFO promotion from the small queue to the
 * main one, which the walk has passed) is re-encoded as it goes in: the walk would not come
 * back for it, and the next rebase would decode it against a base it never had. */
static void test_mem_entry_moved_behind_a_walk_keeps_its_expiry(void **state) {
    (void)state;
    fx *f = open_at_a_rebase(CORRAL_EVICT_S3FIFO);       /* the k entries in the small queue */
    assert_int_equal(set(f, "w", "v", 1000), CORRAL_OK); /* the main queue (empty) walked */
    mem_shard *sh = shard0(f);
    assert_int_equal(sh->exp_walk_q, MEM_SMALL);
    corral__skey sk = ss_key("k0"); /* at the small queue's tail: not walked yet */
    read_lock((mem_store *)f->s);
    corral__spin_lock(&sh->lock);
    mem_entry *e = lookup_locked(sh, &sk, MEM_VALUE);
    assert_non_null(e);
    corral__mem_queue_unlink_locked(sh, e);
    corral__mem_queue_push_locked(sh, MEM_MAIN, e);
    corral__spin_unlock(&sh->lock);
    read_unlock((mem_store *)f->s);
    advance_ms(f, 7 * DAY_MS);
    assert_int_equal(set(f, "w1", "v", 1000), CORRAL_OK); /* 64 entries a write, now */
    assert_int_equal(set(f, "w2", "v", 1000), CORRAL_OK); /* the walk ends */
    assert_int_equal(sh->exp_walk_q, MEM_QUEUES);
    unsigned cur = sh->exp_cur;
    advance_ms(f, DAY_MS);
    assert_int_equal(set(f, "w3", "v", 1000), CORRAL_OK); /* the next rebase, a day later */
    assert_int_not_equal(sh->exp_cur, cur);
    expect_expires_in(f, "k0", "v", 6 * DAY_MS);
    fx_close(f);
}

/* Under LRU every hit moves its entry to the head of the queue: many hits a write do not keep
 * a walk from ending (it goes from the head to the tail, and a moved entry lands behind it,
 * re-encoded), so the rebases keep coming and the expiries stay exact. */
static void test_mem_walk_ends_under_lru_hits(void **state) {
    (void)state;
    fx *f = open_at_a_rebase(CORRAL_EVICT_LRU);
    mem_shard *sh = shard0(f);
    char k[16];
    int writes = 0;
    while (shard_walking(sh)) {
        for (int j = 0; j < 200; j++) { /* every key hit twice: all move to the head */
            snprintf(k, sizeof k, "k%d", j % 100);
            expect_stored(f, k, "v");
        }
        snprintf(k, sizeof k, "w%d", ++writes);
        assert_int_equal(set(f, k, "v", 1000), CORRAL_OK);
        assert_true(writes <= 7); /* 101 entries at the start, 16 a write */
    }
    expect_expires_in(f, "k5", "v", 14 * DAY_MS);
    fx_close(f);
}

/* incr keeps a counter's expiry and touch sets a new one across a rebase. */
static void test_mem_incr_and_touch_keep_expiries_across_a_rebase(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    advance_ms(f, 777);
    assert_int_equal(set(f, "c", "1", (int64_t)(8 * DAY_MS)), CORRAL_OK);
    assert_int_equal(set(f, "t", "v", (int64_t)(8 * DAY_MS)), CORRAL_OK);
    advance_ms(f, 6 * DAY_MS);
    unsigned cur = shard0(f)->exp_cur;
    int64_t n = 0;
    assert_int_equal(incr(f, "c", 1, &n), CORRAL_OK); /* its write rebases */
    assert_int_equal(n, 2);
    assert_int_not_equal(shard0(f)->exp_cur, cur);
    assert_int_equal(touch(f, "t", 1500), CORRAL_OK);
    expect_expires_in(f, "t", "v", 1500);
    expect_expires_in(f, "c", "2", 2 * DAY_MS - 1500);
    fx_close(f);
}

/* A clock stepped back after the open (by less than the day the epoch keeps before it) still
 * gives a write its TTL by that clock: the store's time is not stuck at 0. */
static void test_mem_clock_stepped_back_after_the_open_keeps_ttls(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    atomic_fetch_sub(&f->clock.now_ns, 3600 * SEC_MS * MS);
    assert_int_equal(set(f, "s", "v", 1000), CORRAL_OK);
    expect_expires_in(f, "s", "v", 1000);
    fx_close(f);
}

/* A TTL past the range (34 years after the base) expires at its end: early, never a stale
 * hit. Writes after it, with bases moved on, get their TTLs. */
static void test_mem_ttl_past_its_range_expires_at_the_range_end(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    assert_int_equal(set(f, "c", "v", (int64_t)(100 * YEAR_MS)), CORRAL_OK);
    assert_int_equal(set(f, "f", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    advance_ms(f, 35 * YEAR_MS);
    assert_int_equal(get_rc(f, "c"), CORRAL_MISS);
    assert_int_equal(set(f, "n", "v", 1000), CORRAL_OK);
    expect_expires_in(f, "n", "v", 1000);
    expect_stored(f, "f", "v");
    fx_close(f);
}

/* An allocator that, once armed, writes "e" with a TTL of 1 ms and moves the clock past it from
 * inside the next allocation: after a write without a TTL looked at its shard (no entry with
 * an expiry) and before it takes the shard's mutex. `ctx` is the fixture's counter, its first
 * member. */
static _Atomic bool sneak_armed;

static void *sneaking_alloc(void *ctx, size_t n) {
    if (atomic_exchange(&sneak_armed, false)) {
        fx *f = (fx *)ctx;
        assert_int_equal(set(f, "e", "v", 1), CORRAL_OK);
        advance_ms(f, 1);
    }
    return count_alloc(ctx, n);
}

/* The write then reads the clock after all, and its write scan removes "e" as expired. */
static void test_mem_write_reads_the_clock_for_an_expiry_that_came_while_it_locked(void **state) {
    (void)state;
    fx *f = fx_init(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    f->alloc.alloc = sneaking_alloc;
    assert_int_equal(corral__mem_open(&f->s, &f->cfg, &f->env), CORRAL_OK);
    f->baseline = outstanding(&f->ca);
    atomic_store(&sneak_armed, true);
    assert_int_equal(set(f, "x", "v", CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_false(atomic_load(&sneak_armed));
    assert_int_equal(events(&f->rec, CORRAL__EXPIRED), 1);
    assert_int_equal(get_rc(f, "e"), CORRAL_MISS);
    expect_stored(f, "x", "v");
    fx_close(f);
}

/* get_many (prefetching groups of keys) answers as get does, key by key: across more than one
 * group, an expired entry is a miss and is reaped (EXPIRED), the rest are hits, absent keys
 * miss. */
static void test_mem_get_many_answers_as_get_does(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 0);
    enum { N = 40 };
    char names[N][8];
    corral__skey ks[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "g%d", i);
        ks[i] = ss_key(names[i]);
        /* every third key expires, every fifth is never written */
        if (i % 5 == 4) continue;
        assert_int_equal(set(f, names[i], names[i], i % 3 ? CORRAL__NO_EXPIRY : 100), CORRAL_OK);
    }
    advance_ms(f, 100);
    corral_value *out[N];
    assert_int_equal(f->s->ops->get_many(f->s, ks, N, out), CORRAL_OK);
    long expired = 0;
    for (int i = 0; i < N; i++) {
        bool absent = i % 5 == 4, gone = !absent && i % 3 == 0;
        expired += gone;
        if (absent || gone) {
            assert_null(out[i]);
            continue;
        }
        assert_non_null(out[i]);
        assert_string_equal(corral_value_data(out[i]), names[i]);
        corral_value_unref(out[i]);
    }
    assert_int_equal(events(&f->rec, CORRAL__EXPIRED), expired);
    fx_close(f);
}

/* A writer keeps replacing and deleting keys that share one chain with a key it never touches;
 * readers must find that key every time, and whole values for the others. */
#define CHAIN_HASH  0xc4a1u
#define CHAIN_ITERS 20000

typedef struct chain_arg {
    fx *f;
    pthread_barrier_t *start;
    bool writer;
} chain_arg;

static void *chain_main(void *p) {
    chain_arg *a = p;
    corral__store *s = a->f->s;
    char val[512], buf[512], k[8];
    int rc = pthread_barrier_wait(a->start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    for (int i = 0; i < CHAIN_ITERS; i++) {
        int kl = snprintf(k, sizeof k, "n%d", i % 5);
        corral__skey sk = { .data = k, .len = (size_t)kl, .hash = CHAIN_HASH, .cls = 1 };
        size_t len = 0, hlen = 0;
        if (a->writer) {
            if (i % 7 == 3) {
                assert_true(s->ops->del(s, &sk) >= 0);
            } else {
                len = make_value(val, (uint64_t)i);
                assert_int_equal(
                    s->ops->set(s, &sk, val, len, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                    CORRAL_OK);
            }
            continue;
        }
        corral__skey stay = { .data = "stay", .len = 4, .hash = CHAIN_HASH, .cls = 1 };
        assert_int_equal(s->ops->get_into(s, &stay, buf, sizeof buf, &len, NULL, 0, &hlen),
                         CORRAL_OK);
        check_value(buf, len);
        if (s->ops->get_into(s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen) == CORRAL_OK)
            check_value(buf, len);
    }
    return NULL;
}

static void test_mem_readers_never_miss_a_key_while_its_chain_changes(void **state) {
    (void)state;
    static const uint64_t chain_hash = CHAIN_HASH;
    fx *f = fx_open_same_hash(&chain_hash);
    char val[512];
    size_t len = make_value(val, 7);
    corral__skey stay = { .data = "stay", .len = 4, .hash = CHAIN_HASH, .cls = 1 };
    assert_int_equal(
        f->s->ops->set(f->s, &stay, val, len, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 3), 0);
    chain_arg a[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (chain_arg){ .f = f, .start = &start, .writer = i == 0 };
        assert_int_equal(pthread_create(&t[i], NULL, chain_main, &a[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    fx_close(f); /* used == events == allocator */
}

/* ---- Tables that grow ---- */

/* The bytes the shards' tables on the heap hold, from the tables themselves: a header and
 * 8 bytes a head (memory_read.h); a shard's home table is part of the shard. */
static size_t heap_table_bytes(fx *f) {
    mem_store *ms = (mem_store *)f->s;
    size_t n = 0;
    for (unsigned i = 0; i < ms->nshards; i++) {
        const mem_table *t = atomic_load(&ms->shards[i].table);
        if (t != &ms->shards[i].home) n += sizeof *t + (sizeof(mem_link) << t->bits);
        t = atomic_load(&ms->shards[i].grow); /* a resize running: both tables are held */
        if (t) n += sizeof *t + (sizeof(mem_link) << t->bits);
    }
    return n;
}

/* The bits of shard `i`'s table, or of the table a running resize moves it into. */
static unsigned table_bits(fx *f, unsigned i) {
    const mem_shard *sh = &((mem_store *)f->s)->shards[i];
    const mem_table *t = atomic_load(&sh->grow);
    return (t ? t : atomic_load(&sh->table))->bits;
}

/* The fewest heads a shard's table has, in units of its entries (a load of at most 1), once
 * a running resize ends. */
static void expect_a_head_per_entry(fx *f) {
    mem_store *ms = (mem_store *)f->s;
    for (unsigned i = 0; i < ms->nshards; i++) {
        const mem_shard *sh = &ms->shards[i];
        size_t count = sh->q[MEM_MAIN].count + sh->q[MEM_SMALL].count;
        assert_true(count <= ((size_t)1 << table_bits(f, i)));
    }
}

static int set_key(fx *f, int i, const char *v) {
    char k[16];
    snprintf(k, sizeof k, "key:%d", i);
    return set(f, k, v, CORRAL__NO_EXPIRY);
}

static int get_key(fx *f, int i) {
    char k[16];
    snprintf(k, sizeof k, "key:%d", i);
    return get_rc(f, k);
}

/* Filled from empty, each shard's table doubles as its entries pass its heads; after every
 * growth each key written is still found, and used_bytes is the entries' bytes plus the
 * tables', to the byte, which is what the allocator holds beyond the store itself. */
static void test_mem_tables_grow_with_entries_and_keep_every_key(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 4);
    size_t entry = corral__mem_entry_bytes(8, 5); /* "key:1000" .. "key:2999", "value" */
    int growths = 0;
    size_t tables = 0;
    for (int i = 1000; i < 3000; i++) {
        assert_int_equal(set_key(f, i, "value"), CORRAL_OK);
        expect_a_head_per_entry(f);
        if (heap_table_bytes(f) == tables) continue;
        growths++;
        tables = heap_table_bytes(f);
        for (int j = 1000; j <= i; j++)
            assert_int_equal(get_key(f, j), CORRAL_OK);
        assert_int_equal(corral__mem_table_bytes(f->s), tables);
        assert_int_equal(used(f), (size_t)(i - 999) * entry + tables);
        check_accounting(f); /* the old tables were freed */
    }
    assert_true(growths >= 4 * 5); /* ~500 entries a shard: 16 heads to 512, or more */
    fx_close(f);                   /* frees the tables: the allocator holds nothing */
}

/* clear gives every table on the heap back, to the byte; the store grows them again. */
static void test_mem_clear_frees_the_tables(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 2);
    for (int i = 0; i < 500; i++)
        assert_int_equal(set_key(f, i, "v"), CORRAL_OK);
    assert_true(corral__mem_table_bytes(f->s) > 0);
    assert_int_equal(f->s->ops->clear(f->s), CORRAL_OK);
    assert_int_equal(corral__mem_table_bytes(f->s), 0);
    assert_int_equal(used(f), 0);
    corral__mem_quiesce(f->s);
    assert_int_equal(outstanding(&f->ca), f->baseline);
    for (int i = 0; i < 500; i++)
        assert_int_equal(set_key(f, i, "v"), CORRAL_OK);
    assert_int_equal(corral__mem_table_bytes(f->s), heap_table_bytes(f));
    assert_true(heap_table_bytes(f) > 0);
    fx_close(f);
}

/* Sets "big" to an entry of `max` bytes (at most 64 KiB), the whole budget of a one-shard
 * store of max_bytes `max`: it fits only once eviction has emptied the shard. */
static void set_whole_budget(fx *f, size_t max) {
    static char big[64 * 1024];
    assert_true(max <= sizeof big);
    size_t len = max - corral__mem_entry_bytes(3, 100) + 100; /* an entry of max bytes */
    memset(big, 'b', len);
    corral__skey sk = ss_key("big");
    assert_int_equal(f->s->ops->set(f->s, &sk, big, len, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
}

/* A full store whose eviction finds no entry left to make room for a large one sends the
 * shard's table home, so an entry of the whole budget still fits. */
static void test_mem_entry_of_the_whole_budget_fits_after_tables_grew(void **state) {
    (void)state;
    size_t max = 64 * 1024;
    fx *f = fx_open(max, CORRAL_EVICT_DEFAULT, 1);
    for (int i = 0; i < 100; i++)
        assert_int_equal(set_key(f, i, "v"), CORRAL_OK);
    assert_true(corral__mem_table_bytes(f->s) > 0);
    set_whole_budget(f, max);
    assert_int_equal(corral__mem_table_bytes(f->s), 0);
    assert_int_equal(used(f), max);
    fx_close(f);
}

/* Readers look up keys known to be present while one writer inserts enough keys to double a
 * shard's table ten times: no lookup may miss, on the general path (get_into, get_many) or
 * the read path (corral__mem_get_into_hot), whatever table or chain a resize has them on. */
#define GROW_KEYS    20000
#define GROW_READERS 2

typedef struct grow_arg {
    fx *f;
    pthread_barrier_t *start;
    _Atomic int *inserted; /* keys 0 .. inserted - 1 are present */
    _Atomic bool *done;
    unsigned id;
    long lookups, misses;
} grow_arg;

/* The length of ":1:g<i>" written to k, at most cap - 1: bounded, so that an optimising build
 * sees the key hash read within k. */
static int grow_key(char *k, size_t cap, int i) {
    int n = snprintf(k, cap, ":1:g%d", i);
    return n < 0 ? 0 : (size_t)n >= cap ? (int)cap - 1 : n;
}

static void *grow_main(void *p) {
    grow_arg *a = p;
    corral__store *s = a->f->s;
    corral__keyscheme ks;
    corral__keyscheme_init(&ks, "", 0, 1, false, NULL, NULL);
    char k[32], buf[16];
    int rc = pthread_barrier_wait(a->start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    if (a->id == 0) { /* the writer */
        for (int i = 0; i < GROW_KEYS; i++) {
            int kl = grow_key(k, sizeof k, i);
            corral__skey sk = KH(k, corral__key_hash(&ks, k, (size_t)kl));
            assert_int_equal(s->ops->set(s, &sk, "v", 1, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                             CORRAL_OK);
            atomic_store_explicit(a->inserted, i + 1, memory_order_release);
        }
        atomic_store(a->done, true);
        return NULL;
    }
    uint64_t x = 0x2545f4914f6cdd1du * a->id;
    while (!atomic_load(a->done)) {
        int n = atomic_load_explicit(a->inserted, memory_order_acquire);
        x = x * 6364136223846793005u + 1442695040888963407u;
        int i = (int)((x >> 33) % (uint64_t)n);
        int kl = grow_key(k, sizeof k, i);
        corral__skey sk = KH(k, corral__key_hash(&ks, k, (size_t)kl));
        size_t len = 0, hlen = 0;
        uint16_t cls = 0;
        corral_value *v = NULL;
        switch (x % 3) {
        case 0: rc = s->ops->get_into(s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen); break;
        case 1:
            rc = corral__mem_get_into_hot(s, &ks, k + 3, (size_t)kl - 3, buf, 16, &len, &cls);
            break;
        default:
            assert_int_equal(s->ops->get_many(s, &sk, 1, &v), CORRAL_OK);
            rc = v ? CORRAL_OK : CORRAL_MISS;
            corral_value_unref(v);
            break;
        }
        a->lookups++;
        if (rc != CORRAL_OK) a->misses++;
    }
    return NULL;
}

static void test_mem_readers_find_present_keys_while_tables_grow(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    _Atomic int inserted = 0;
    _Atomic bool done = false;
    corral__keyscheme ks;
    corral__keyscheme_init(&ks, "", 0, 1, false, NULL, NULL);
    /* The readers' first keys, before the writer starts: 8, in the home table. */
    for (int i = 0; i < 8; i++) {
        char k[32];
        int kl = grow_key(k, sizeof k, i);
        corral__skey sk = KH(k, corral__key_hash(&ks, k, (size_t)kl));
        assert_int_equal(
            f->s->ops->set(f->s, &sk, "v", 1, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
    }
    atomic_store(&inserted, 8);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 1 + GROW_READERS), 0);
    grow_arg a[1 + GROW_READERS];
    pthread_t t[1 + GROW_READERS];
    for (unsigned i = 0; i <= GROW_READERS; i++) {
        a[i] = (grow_arg){ .f = f, .start = &start, .inserted = &inserted, .done = &done, .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, grow_main, &a[i]), 0);
    }
    long lookups = 0;
    for (unsigned i = 0; i <= GROW_READERS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(a[i].misses, 0);
        lookups += a[i].lookups;
    }
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    assert_true(lookups > 0);
    assert_true(table_bits(f, 0) >= 15); /* 16 heads to 32768: eleven resizes */
    fx_close(f);
}

/* ---- A resize in steps ---- */

#define RZ_KEYS 2048

/* A one-shard store, its keys ":1:r<i>" (a hot scheme's store keys, so that the read path finds
 * them too), and what each holds: its value's length, 0 once deleted. */
typedef struct rz {
    fx *f;
    mem_shard *sh;
    corral__keyscheme ks;
    size_t vlen[RZ_KEYS];
    int n; /* keys written: 0 .. n - 1 */
} rz;

static corral__skey rz_key(rz *r, char *k, size_t cap, int i) {
    int kl = snprintf(k, cap, ":1:r%d", i);
    return KH(k, corral__key_hash(&r->ks, k, (size_t)kl));
}

static void rz_set(rz *r, int i, const char *v) {
    char k[32];
    corral__skey sk = rz_key(r, k, sizeof k, i);
    assert_int_equal(
        r->f->s->ops->set(r->f->s, &sk, v, strlen(v), CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
        CORRAL_OK);
    r->vlen[i] = strlen(v);
    if (i == r->n) r->n++;
}

static void rz_del(rz *r, int i) {
    char k[32];
    corral__skey sk = rz_key(r, k, sizeof k, i);
    assert_int_equal(r->f->s->ops->del(r->f->s, &sk), CORRAL_OK);
    r->vlen[i] = 0;
}

/* Every key written is found, by the general path and the read path, unless deleted; and
 * used_bytes is the entries' bytes and the tables', to the byte. */
static void rz_check(rz *r) {
    size_t entries = 0;
    for (int i = 0; i < r->n; i++) {
        char k[32], buf[32];
        corral__skey sk = rz_key(r, k, sizeof k, i);
        size_t len = 0, hlen = 0;
        uint16_t cls = 0;
        int want = r->vlen[i] ? CORRAL_OK : CORRAL_MISS;
        assert_int_equal(
            r->f->s->ops->get_into(r->f->s, &sk, buf, sizeof buf, &len, NULL, 0, &hlen), want);
        assert_int_equal(corral__mem_get_into_hot(r->f->s, &r->ks, k + 3, sk.len - 3, buf,
                                                  sizeof buf, &len, &cls),
                         want);
        if (r->vlen[i]) entries += corral__mem_entry_bytes(sk.len, r->vlen[i]);
    }
    assert_int_equal(used(r->f), entries + heap_table_bytes(r->f));
    assert_int_equal(corral__mem_table_bytes(r->f->s), heap_table_bytes(r->f));
}

/* A live key with a value of `vlen` bytes whose chain is in the new table of the running resize
 * (`moved`) or still in the old one (!moved). */
static int rz_pick(rz *r, bool moved, size_t vlen) {
    const mem_table *t = atomic_load(&r->sh->table);
    size_t done = atomic_load(&r->sh->moved);
    for (int i = 0; i < r->n; i++) {
        char k[32];
        corral__skey sk = rz_key(r, k, sizeof k, i);
        if (r->vlen[i] == vlen && ((sk.hash & t->mask) < done) == moved) return i;
    }
    fail_msg("no key with a %zu-byte value in a %s bucket", vlen, moved ? "moved" : "waiting");
    return -1;
}

/* A resize moves MEM_RESIZE_STEP buckets a write that builds an entry, not the whole table:
 * the insert that starts it moves the first step; each insert, or replacement by a value of
 * another size, one more; deletes and overwrites in place none, wherever their keys' chains
 * are; the step that moves the last bucket switches the tables. Throughout, every key is
 * found and used_bytes holds the entries and both tables to the byte. */
static void test_mem_a_resize_moves_a_step_each_insert(void **state) {
    (void)state;
    static rz r;
    memset(&r, 0, sizeof r);
    r.f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    r.sh = &((mem_store *)r.f->s)->shards[0];
    corral__keyscheme_init(&r.ks, "", 0, 1, false, NULL, NULL);
    const size_t heads = (size_t)1 << 10;
    while ((size_t)r.n < heads) /* a 1024-head table, full, no resize running */
        rz_set(&r, r.n, "v");
    assert_int_equal(table_bits(r.f, 0), 10);
    assert_null(atomic_load(&r.sh->grow));
    rz_set(&r, r.n, "v"); /* passes the heads: starts the resize, moves its first step */
    const mem_table *from = atomic_load(&r.sh->table);
    assert_int_equal(from->bits, 10);
    for (size_t step = 1; step < heads / MEM_RESIZE_STEP; step++) {
        assert_non_null(atomic_load(&r.sh->grow));
        assert_ptr_equal(atomic_load(&r.sh->table), from);
        assert_int_equal(atomic_load(&r.sh->moved), step * MEM_RESIZE_STEP);
        rz_check(&r);
        for (int moved = 0; moved < 2; moved++) {
            rz_del(&r, rz_pick(&r, moved, 1));
            rz_set(&r, rz_pick(&r, moved, 1), "w"); /* in place: the same size */
        }
        assert_int_equal(atomic_load(&r.sh->moved), step * MEM_RESIZE_STEP);
        rz_check(&r);
        if (step % 2) /* a replacement by a larger value builds an entry */
            rz_set(&r, rz_pick(&r, step % 4 == 1, 1), "a longer value");
        else
            rz_set(&r, r.n, "v");
    }
    assert_null(atomic_load(&r.sh->grow));
    assert_int_equal(atomic_load(&r.sh->table)->bits, 11);
    assert_int_equal(atomic_load(&r.sh->moved), 0);
    rz_check(&r);
    fx_close(r.f); /* the allocator holds nothing: the old table was freed */
}

/* A resize of at least two steps started in a one-shard store. */
static mem_shard *start_a_resize(fx *f) {
    mem_shard *sh = &((mem_store *)f->s)->shards[0];
    int n = 0;
    while (table_bits(f, 0) < 8 || !atomic_load(&sh->grow))
        assert_int_equal(set_key(f, n++, "v"), CORRAL_OK);
    assert_true(atomic_load(&sh->moved) < ((size_t)1 << 7));
    return sh;
}

/* close during a running resize frees both tables. */
static void test_mem_close_during_a_resize_frees_both_tables(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    start_a_resize(f);
    fx_close(f); /* the allocator holds nothing */
}

/* An entry of the whole budget, written while a resize runs, sends both tables home once
 * eviction finds no entry left, and fits. */
static void test_mem_entry_of_the_whole_budget_fits_during_a_resize(void **state) {
    (void)state;
    size_t max = 64 * 1024;
    fx *f = fx_open(max, CORRAL_EVICT_DEFAULT, 1);
    mem_shard *sh = start_a_resize(f);
    set_whole_budget(f, max);
    assert_null(atomic_load(&sh->grow));
    assert_ptr_equal(atomic_load(&sh->table), &sh->home);
    assert_int_equal(corral__mem_table_bytes(f->s), 0);
    assert_int_equal(used(f), max);
    fx_close(f);
}

/* clear during a running resize sends both tables home and gives their bytes back. */
static void test_mem_clear_during_a_resize_frees_both_tables(void **state) {
    (void)state;
    fx *f = fx_open(NO_LIMIT, CORRAL_EVICT_DEFAULT, 1);
    mem_shard *sh = start_a_resize(f);
    assert_int_equal(f->s->ops->clear(f->s), CORRAL_OK);
    assert_null(atomic_load(&sh->grow));
    assert_ptr_equal(atomic_load(&sh->table), &sh->home);
    assert_int_equal(corral__mem_table_bytes(f->s), 0);
    assert_int_equal(used(f), 0);
    corral__mem_quiesce(f->s);
    assert_int_equal(outstanding(&f->ca), f->baseline);
    fx_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        STORE_SUITE_TESTS(&mem_target),
        cmocka_unit_test(test_mem_get_returns_the_stored_bytes_without_a_copy),
        cmocka_unit_test(test_mem_entry_bytes_is_exactly_what_the_allocator_gives),
        cmocka_unit_test(test_mem_value_outlives_its_removal_until_released),
        cmocka_unit_test(test_mem_refuses_values_too_big_without_change),
        cmocka_unit_test(test_mem_overwrite_in_place_keeps_the_value_bound),
        cmocka_unit_test(test_mem_key_length_limit_of_the_entry_header),
        cmocka_unit_test(test_mem_refuses_a_key_over_the_limit_beside_an_empty_lease),
        cmocka_unit_test(test_mem_keeps_an_envelope_header_of_the_longest_length),
        cmocka_unit_test(test_mem_values_are_freed_by_the_release_their_index_names),
        cmocka_unit_test(test_mem_open_refuses_invalid_configs),
        cmocka_unit_test(test_mem_write_reclaims_a_few_expired_entries_per_call),
        cmocka_unit_test(test_mem_write_reclaims_an_entry_that_touch_gave_an_expiry),
        cmocka_unit_test(test_mem_reclaim_removes_at_most_its_budget),
        cmocka_unit_test(test_mem_sieve_evicts_unvisited_entry_first_when_full),
        cmocka_unit_test(test_mem_lru_evicts_least_recently_used_entry),
        cmocka_unit_test(test_mem_s3fifo_keeps_reused_entries_through_a_scan),
        cmocka_unit_test(test_mem_default_policy_is_s3fifo),
        cmocka_unit_test(test_mem_removes_entries_found_without_their_key_by_its_scheme_hash),
        cmocka_unit_test(test_mem_eviction_prefers_expired_entries),
        cmocka_unit_test(test_mem_byte_bound_holds_and_matches_the_allocator),
        cmocka_unit_test(test_mem_events_balance_used_bytes),
        cmocka_unit_test(test_mem_open_fails_cleanly_at_every_allocation),
        cmocka_unit_test(test_mem_writes_fail_cleanly_at_every_allocation),
        cmocka_unit_test(test_mem_concurrent_mixed_ops_keep_the_invariants),
        cmocka_unit_test(test_mem_lock_free_readers_never_see_freed_or_torn_values),
        cmocka_unit_test(test_mem_readers_never_see_a_torn_overwrite_in_place),
        cmocka_unit_test(test_mem_overwrite_of_the_same_size_allocates_nothing),
        cmocka_unit_test(test_mem_overwrite_leaves_a_held_value_unchanged),
        cmocka_unit_test(test_mem_incr_reads_a_counter_rewritten_in_place),
        cmocka_unit_test(test_mem_a_copy_across_an_overwrite_in_place_is_made_again),
        cmocka_unit_test(test_mem_slot_and_far_entries_share_a_chain),
        cmocka_unit_test(test_mem_eviction_takes_slot_and_far_entries),
        cmocka_unit_test(test_mem_lock_free_readers_of_slots_never_see_freed_or_torn_values),
        cmocka_unit_test_teardown(test_mem_small_entries_go_on_the_heap_when_the_region_is_full,
                                  region_unlimit),
        cmocka_unit_test(test_mem_a_get_at_a_full_count_hands_out_a_copy),
        cmocka_unit_test(test_mem_an_entry_at_its_last_generation_is_replaced),
        cmocka_unit_test(test_mem_keys_that_share_a_hash_stay_apart_in_one_chain),
        cmocka_unit_test(test_mem_keys_of_one_length_in_one_chain_differ_anywhere),
        cmocka_unit_test(test_mem_get_into_copies_within_the_block_while_the_header_length_changes),
        cmocka_unit_test(test_mem_read_path_passes_entries_that_share_its_hash),
        cmocka_unit_test(test_mem_read_path_compares_the_whole_header),
        cmocka_unit_test(test_mem_removed_entry_outlives_the_sections_that_saw_it),
        cmocka_unit_test(test_issue_15_write_frees_the_limbo_when_the_flush_lags),
        cmocka_unit_test(test_issue_15_writers_free_the_limbo_beside_the_flush),
        cmocka_unit_test(test_mem_set_guarded_stores_only_what_its_guard_allows),
        cmocka_unit_test(test_mem_gets_read_the_clock_only_for_entries_that_expire),
        cmocka_unit_test(test_mem_sets_read_the_clock_only_when_an_expiry_needs_it),
        cmocka_unit_test(test_mem_set_without_ttl_treats_an_expired_entry_as_expired),
        cmocka_unit_test(test_mem_expiry_rounds_up_to_its_unit),
        cmocka_unit_test(test_mem_short_ttls_keep_their_ms_after_the_store_ran_for_weeks),
        cmocka_unit_test(test_mem_expiries_stay_exact_across_rebases),
        cmocka_unit_test(test_mem_rebase_waits_a_day_past_the_walk_before_it),
        cmocka_unit_test(test_mem_walk_ends_under_lru_hits),
        cmocka_unit_test(test_mem_entry_moved_behind_a_walk_keeps_its_expiry),
        cmocka_unit_test(test_mem_incr_and_touch_keep_expiries_across_a_rebase),
        cmocka_unit_test(test_mem_clock_stepped_back_after_the_open_keeps_ttls),
        cmocka_unit_test(test_mem_ttl_past_its_range_expires_at_the_range_end),
        cmocka_unit_test(test_mem_write_reads_the_clock_for_an_expiry_that_came_while_it_locked),
        cmocka_unit_test(test_mem_get_many_answers_as_get_does),
        cmocka_unit_test(test_mem_readers_never_miss_a_key_while_its_chain_changes),
        cmocka_unit_test(test_mem_tables_grow_with_entries_and_keep_every_key),
        cmocka_unit_test(test_mem_clear_frees_the_tables),
        cmocka_unit_test(test_mem_entry_of_the_whole_budget_fits_after_tables_grew),
        cmocka_unit_test(test_mem_readers_find_present_keys_while_tables_grow),
        cmocka_unit_test(test_mem_a_resize_moves_a_step_each_insert),
        cmocka_unit_test(test_mem_clear_during_a_resize_frees_both_tables),
        cmocka_unit_test(test_mem_close_during_a_resize_frees_both_tables),
        cmocka_unit_test(test_mem_entry_of_the_whole_budget_fits_during_a_resize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
