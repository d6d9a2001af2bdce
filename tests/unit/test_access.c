/*
 * test_access.c - the access layer's freshness verdict (src/access.c): corral__freshness, the
 * pure classifier every read path asks, one test per verdict and its edges; then
 * corral__classify and corral__read on a memory-store handle with a fake clock, for what needs
 * the store (tags busted, a value read and classified once).
 *
 * Headers are written with corral__env_write, as the handle writes them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "access.h"

#define T0_MS ((uint64_t)1767225600 * 1000u)

/* A header with times: logical expiry `expiry_ms` (0: none) and XFetch lead `early_ms`. */
static size_t times_hdr(unsigned char *out, uint64_t expiry_ms, uint32_t early_ms) {
    corral__env env;
    memset(&env, 0, offsetof(corral__env, tags));
    env.flags = CORRAL__ENV_TIMES;
    env.expiry_ms = expiry_ms;
    env.delta_ms = 7;
    env.early_ms = early_ms;
    corral__env_write(&env, out);
    return corral__env_size(&env);
}

static const corral__windows windows = { .beta = 1.0, .grace_ms = 1000, .stale_if_error_ms = 5000 };

static corral__verdict at(const unsigned char *hdr, size_t len, uint64_t now_ms,
                          const corral__windows *w) {
    corral__view view;
    corral__verdict v = corral__freshness(hdr, len, now_ms, w, &view);
    assert_int_equal(view.verdict, v);
    return v;
}

static void test_a_raw_value_is_fresh_forever(void **state) {
    (void)state;
    corral__view view;
    assert_int_equal(corral__freshness(NULL, 0, UINT64_MAX - 1, &windows, &view), CORRAL__V_FRESH);
    assert_int_equal(view.expiry_ms, 0);
    assert_int_equal(view.env.flags, 0);
}

static void test_a_value_is_fresh_before_its_expiry_and_parsed_into_the_view(void **state) {
    (void)state;
    unsigned char h[64];
    size_t n = times_hdr(h, T0_MS + 100, 0);
    corral__view view;
    assert_int_equal(corral__freshness(h, n, T0_MS + 99, &windows, &view), CORRAL__V_FRESH);
    assert_int_equal(view.expiry_ms, T0_MS + 100);
    assert_int_equal(view.env.delta_ms, 7);
    /* No expiry at all: fresh whenever. */
    n = times_hdr(h, 0, 50);
    assert_int_equal(at(h, n, UINT64_MAX - 1, &windows), CORRAL__V_FRESH);
}

static void test_xfetch_makes_a_value_early_once_now_plus_its_lead_reaches_expiry(void **state) {
    (void)state;
    unsigned char h[64];
    size_t n = times_hdr(h, T0_MS + 100, 30);
    assert_int_equal(at(h, n, T0_MS + 69, &windows), CORRAL__V_FRESH);
    assert_int_equal(at(h, n, T0_MS + 70, &windows), CORRAL__V_EARLY);
    assert_int_equal(at(h, n, T0_MS + 99, &windows), CORRAL__V_EARLY);
    /* beta 0 (or no windows: a plain get) never refreshes early. */
    corral__windows no_xfetch = windows;
    no_xfetch.beta = 0;
    assert_int_equal(at(h, n, T0_MS + 99, &no_xfetch), CORRAL__V_FRESH);
    assert_int_equal(at(h, n, T0_MS + 99, NULL), CORRAL__V_FRESH);
    /* A value written without a lead is never early. */
    n = times_hdr(h, T0_MS + 100, 0);
    assert_int_equal(at(h, n, T0_MS + 99, &windows), CORRAL__V_FRESH);
}

static void test_a_value_past_expiry_is_in_grace_for_the_grace_window(void **state) {
    (void)state;
    unsigned char h[64];
    size_t n = times_hdr(h, T0_MS + 100, 30);
    assert_int_equal(at(h, n, T0_MS + 100, &windows), CORRAL__V_GRACE);
    assert_int_equal(at(h, n, T0_MS + 1099, &windows), CORRAL__V_GRACE);
    assert_int_equal(at(h, n, T0_MS + 1100, &windows), CORRAL__V_STALE_IF_ERROR);
}

static void test_past_grace_a_value_is_kept_for_stale_if_error_then_expires(void **state) {
    (void)state;
    unsigned char h[64];
    size_t n = times_hdr(h, T0_MS + 100, 0);
    assert_int_equal(at(h, n, T0_MS + 5099, &windows), CORRAL__V_STALE_IF_ERROR);
    assert_int_equal(at(h, n, T0_MS + 5100, &windows), CORRAL__V_EXPIRED);
    /* Without grace, stale-if-error starts at the expiry; a shorter one than grace never shows. */
    corral__windows w = { .beta = 1.0, .grace_ms = 0, .stale_if_error_ms = 10 };
    assert_int_equal(at(h, n, T0_MS + 100, &w), CORRAL__V_STALE_IF_ERROR);
    w = (corral__windows){ .beta = 1.0, .grace_ms = 50, .stale_if_error_ms = 10 };
    assert_int_equal(at(h, n, T0_MS + 120, &w), CORRAL__V_GRACE);
    assert_int_equal(at(h, n, T0_MS + 150, &w), CORRAL__V_EXPIRED);
}

static void test_a_plain_get_sees_only_fresh_or_expired(void **state) {
    (void)state;
    unsigned char h[64];
    size_t n = times_hdr(h, T0_MS + 100, 30);
    assert_int_equal(at(h, n, T0_MS + 99, NULL), CORRAL__V_FRESH);
    assert_int_equal(at(h, n, T0_MS + 100, NULL), CORRAL__V_EXPIRED);
    /* Negative windows count as none. */
    corral__windows neg = { .beta = -1, .grace_ms = -5, .stale_if_error_ms = -5 };
    assert_int_equal(at(h, n, T0_MS + 100, &neg), CORRAL__V_EXPIRED);
}

static void test_a_malformed_envelope_is_busted(void **state) {
    (void)state;
    unsigned char h[64];
    size_t n = times_hdr(h, T0_MS + 100, 0);
    /* Flags claim tags the header does not hold (the length check passes, the parse fails). */
    static const unsigned char bad_tags[] = { 0xc7, 0x01, 0x02, 0x08, 0x00, 0x01, 0x05, 'a' };
    assert_int_equal(at(bad_tags, sizeof bad_tags, T0_MS, &windows), CORRAL__V_BUSTED);
    /* A header handed over with the wrong length. */
    assert_int_equal(at(h, n - 1, T0_MS, &windows), CORRAL__V_BUSTED);
}

/* ---- With a store: tags ---- */

typedef struct fake_clock {
    uint64_t now_ns;
} fake_clock;

static uint64_t fake_now(void *ctx) {
    return ((const fake_clock *)ctx)->now_ns;
}

static corral *open_mem(fake_clock *clk) {
    corral_options o;
    corral_options_init(&o);
    o.max_memory_bytes = 1u << 20;
    o.now_ns = fake_now;
    o.clock_ctx = clk;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    return c;
}

static void test_a_busted_tag_makes_a_value_busted_unless_it_expired(void **state) {
    (void)state;
    fake_clock clk = { T0_MS * 1000000u };
    corral *c = open_mem(&clk);
    const char *tags[] = { "product.42" };
    corral__env env;
    memset(&env, 0, offsetof(corral__env, tags));
    char vbuf[64];
    assert_int_equal(corral__tags_read(c, tags, 1, &env, vbuf, sizeof vbuf), CORRAL_OK);
    env.flags |= CORRAL__ENV_TIMES;
    env.expiry_ms = T0_MS + 100;
    unsigned char h[512];
    corral__env_write(&env, h);
    size_t n = corral__env_size(&env);
    corral__view view;
    assert_int_equal(corral__classify(c, h, n, T0_MS, &windows, true, &view), CORRAL__V_FRESH);
    assert_int_equal(view.env.n_tags, 1);
    assert_int_equal(corral_tag_bust(c, "product.42"), CORRAL_OK);
    assert_int_equal(corral__classify(c, h, n, T0_MS, &windows, true, &view), CORRAL__V_BUSTED);
    assert_int_equal(corral__classify(c, h, n, T0_MS + 500, &windows, true, &view),
                     CORRAL__V_BUSTED); /* grace never serves a busted value */
    /* Unchecked (the store checked them), or expired: the tags are not asked. */
    assert_int_equal(corral__classify(c, h, n, T0_MS, &windows, false, &view), CORRAL__V_FRESH);
    assert_int_equal(corral__classify(c, h, n, T0_MS + 9999, &windows, true, &view),
                     CORRAL__V_EXPIRED);
    corral_close(c);
}

static void test_read_classifies_a_stored_value_and_misses_a_busted_one(void **state) {
    (void)state;
    fake_clock clk = { T0_MS * 1000000u };
    corral *c = open_mem(&clk);
    const char *tags[] = { "t" };
    corral_call call = { .version = CORRAL_VERSION_DEFAULT, .tags = tags, .n_tags = 1 };
    assert_int_equal(corral_set(c, "k", 1, "v", 1, 100, &call), CORRAL_OK);
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    assert_int_equal(corral__make_skey(c, "k", 1, NULL, kbuf, &sk), CORRAL_OK);
    corral_value *v = NULL;
    corral__view view;
    assert_int_equal(corral__read(c, &sk, T0_MS, &windows, &v, &view), CORRAL_OK);
    assert_int_equal(view.verdict, CORRAL__V_FRESH);
    assert_int_equal(corral_value_len(v), 1);
    corral_value_unref(v);
    assert_int_equal(corral_tag_bust(c, "t"), CORRAL_OK);
    v = (corral_value *)&v;
    assert_int_equal(corral__read(c, &sk, T0_MS, &windows, &v, &view), CORRAL_MISS);
    assert_null(v);
    assert_int_equal(corral__read_fresh(c, &sk, T0_MS, &v), CORRAL_MISS);
    assert_null(v);
    corral_close(c);
}

/* ---- Keys ---- */

/* corral__make_skey's one pass over a key of a hot scheme (key_hot.h,
 * corral__key_build_hot_inline) gives the key, hash and verdict that corral__key_build and
 * corral__key_hash give, for every length XXH3 treats apart, at the limit and past it, and with
 * a refused byte anywhere. */
static void expect_skey_as_built(corral *c, const char *key, size_t len, int64_t version) {
    char want[CORRAL__KEYBUF], got[CORRAL__KEYBUF];
    size_t want_len = 0;
    int want_rc = corral__key_build(&c->ks, version, key, len, want, sizeof want, &want_len);
    corral_call call = { .version = version };
    corral__skey sk;
    int rc =
        corral__make_skey(c, key, len, version == CORRAL_VERSION_DEFAULT ? NULL : &call, got, &sk);
    if (rc != want_rc) fail_msg("key of %zu bytes: rc %d, built %d", len, rc, want_rc);
    if (rc != CORRAL_OK) return;
    assert_int_equal(sk.len, want_len);
    assert_memory_equal(sk.data, want, want_len + 1); /* NUL-terminated as well */
    assert_int_equal(sk.hash, corral__key_hash(&c->ks, want, want_len));
}

/* A key function that is Django's with another separator. */
static int bar_key(void *ctx, const char *prefix, size_t prefix_len, int64_t version,
                   const void *key, size_t key_len, char *out, size_t cap, size_t *out_len) {
    (void)ctx;
    int n = snprintf(out, cap, "%.*s|%lld|%.*s", (int)prefix_len, prefix, (long long)version,
                     (int)key_len, key ? (const char *)key : "");
    if (n < 0 || (size_t)n >= cap) return CORRAL_ENOSPC;
    *out_len = (size_t)n;
    return CORRAL_OK;
}

/* The one pass is taken for a hot scheme only (key.h `hot`); a scheme with binary keys, a
 * header over CORRAL__HOT_HDR bytes or a key function gets the key corral__key_build gives. */
static void test_a_store_key_is_built_and_hashed_in_one_pass_as_in_three(void **state) {
    (void)state;
    static const struct {
        const char *prefix;
        int64_t version;
        bool binary, fn, hot;
    } schemes[] = {
        { "", 1, false, false, true },
        { "djzen", 7, false, false, true },
        { "a:b", -3, false, false, true },
        { "", 1, true, false, false },
        { "prefix_over_16_bytes", 1, false, false, false },
        { "djzen", 7, false, true, false },
    };
    char key[CORRAL__MAX_KEY + 8];
    for (size_t u = 0; u < sizeof schemes / sizeof schemes[0]; u++) {
        corral_options o;
        corral_options_init(&o);
        o.key_prefix = schemes[u].prefix;
        o.version = schemes[u].version;
        o.allow_binary_keys = schemes[u].binary;
        if (schemes[u].fn) o.key_fn = bar_key;
        corral *c = NULL;
        assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
        assert_int_equal(c->ks.hot, schemes[u].hot);
        size_t max = CORRAL__MAX_KEY - c->ks.hdr_len;
        for (size_t len = 0; len <= max + 2; len++) {
            for (size_t i = 0; i < len; i++)
                key[i] = (char)('!' + (i * 7 + len) % 94);
            expect_skey_as_built(c, key, len, CORRAL_VERSION_DEFAULT);
            expect_skey_as_built(c, key, len, c->ks.version); /* the handle's own: one pass too */
            expect_skey_as_built(c, key, len, 3);
            if (len == 0 || len % 5) continue;
            for (size_t at = 0; at < len; at += 3) {
                char keep = key[at];
                key[at] = at % 2 ? ' ' : '\x7f';
                expect_skey_as_built(c, key, len, CORRAL_VERSION_DEFAULT);
                key[at] = keep;
            }
        }
        expect_skey_as_built(c, NULL, 1, CORRAL_VERSION_DEFAULT);
        /* A NULL key of some length is refused before its prefix is looked for. */
        assert_int_equal(corral_set(c, NULL, 3, "v", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_EBADKEY);
        assert_int_equal(corral_delete(c, NULL, 3, NULL), CORRAL_EBADKEY);
        corral_close(c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_raw_value_is_fresh_forever),
        cmocka_unit_test(test_a_value_is_fresh_before_its_expiry_and_parsed_into_the_view),
        cmocka_unit_test(test_xfetch_makes_a_value_early_once_now_plus_its_lead_reaches_expiry),
        cmocka_unit_test(test_a_value_past_expiry_is_in_grace_for_the_grace_window),
        cmocka_unit_test(test_past_grace_a_value_is_kept_for_stale_if_error_then_expires),
        cmocka_unit_test(test_a_plain_get_sees_only_fresh_or_expired),
        cmocka_unit_test(test_a_malformed_envelope_is_busted),
        cmocka_unit_test(test_a_busted_tag_makes_a_value_busted_unless_it_expired),
        cmocka_unit_test(test_read_classifies_a_stored_value_and_misses_a_busted_one),
        cmocka_unit_test(test_a_store_key_is_built_and_hashed_in_one_pass_as_in_three),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
