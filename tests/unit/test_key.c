/*
 * test_key.c - Django's key scheme through the public API: corral_make_key (prefix, version,
 * per-call version, custom key function, validation, binary keys) and corral_fragment_key
 * (Django's make_template_fragment_key, to the byte).
 *
 * The expected fragment keys were computed with Python's hashlib, exactly as Django does:
 *     h = hashlib.md5(); [h.update(str(a).encode()) or h.update(b":") for a in vary]
 *     "template.cache.%s.%s" % (name, h.hexdigest())
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "corral/corral.h"

#define KEYCAP  8192
#define MAX_KEY 250 /* bytes of a physical key (Django's memcached limit) */

static corral *open_url(const char *url) {
    corral *c = NULL;
    corral_error err;
    int rc = corral_open(&c, url, &err);
    assert_int_equal(rc, CORRAL_OK);
    assert_non_null(c);
    return c;
}

static corral *open_binary(void) {
    corral_options o;
    corral_options_init(&o);
    o.allow_binary_keys = true;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    assert_non_null(c);
    return c;
}

/* Asserts that `key` maps to the physical key `want` under handle `c` and call `call`. */
static void expect_key(corral *c, const corral_call *call, const char *key, const char *want) {
    char out[KEYCAP];
    size_t len = 0;
    int rc = corral_make_key(c, key, strlen(key), call, out, sizeof out, &len);
    assert_int_equal(rc, CORRAL_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(out, want);
}

/* Asserts that a user key of `key_len` bytes, all `fill`, gets `want_rc` from corral_make_key. */
static void expect_len_rc(corral *c, size_t key_len, int want_rc) {
    char key[1024];
    char out[KEYCAP];
    size_t len = 12345;
    assert_true(key_len <= sizeof key);
    memset(key, 'k', key_len);
    int rc = corral_make_key(c, key, key_len, NULL, out, sizeof out, &len);
    assert_int_equal(rc, want_rc);
    if (rc == CORRAL_EBADKEY) assert_int_equal(len, 0);
}

/* ---- The default key function ---- */

static void test_make_key_defaults_give_empty_prefix_and_version_one(void **state) {
    (void)state;
    corral *c = open_url(NULL);
    expect_key(c, NULL, "foo", ":1:foo");
    expect_key(c, NULL, "featured_products:v3", ":1:featured_products:v3");
    corral_close(c);
}

static void test_make_key_joins_prefix_version_and_key(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen&version=3");
    expect_key(c, NULL, "foo", "djzen:3:foo");
    corral_close(c);
}

static void test_make_key_accepts_empty_user_key(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen");
    expect_key(c, NULL, "", "djzen:1:");
    corral_close(c);
}

static void test_make_key_call_version_overrides_handle_version(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen&version=3");
    corral_call call = CORRAL_CALL_INIT;
    expect_key(c, &call, "foo", "djzen:3:foo");
    call.version = 7;
    expect_key(c, &call, "foo", "djzen:7:foo");
    call.version = 0;
    expect_key(c, &call, "foo", "djzen:0:foo");
    call.version = -2;
    expect_key(c, &call, "foo", "djzen:-2:foo");
    call.version = INT64_MAX;
    expect_key(c, &call, "foo", "djzen:9223372036854775807:foo");
    corral_close(c);
}

static void test_make_key_handle_version_may_be_negative(void **state) {
    (void)state;
    corral *c = open_url("mem://?version=-5");
    expect_key(c, NULL, "foo", ":-5:foo");
    corral_close(c);
}

/* ---- Custom key function (Django's KEY_FUNCTION) ---- */

typedef struct keyfn_ctx {
    int calls;
    int64_t last_version;
    const char *fixed; /* when set, the function returns this instead of its own scheme */
    int rc;            /* returned when not CORRAL_OK */
} keyfn_ctx;

/* Writes "prefix|version|key", or ctx->fixed. */
static int pipe_key_fn(void *ctx, const char *prefix, size_t prefix_len, int64_t version,
                       const void *key, size_t key_len, char *out, size_t cap, size_t *out_len) {
    keyfn_ctx *k = ctx;
    k->calls++;
    k->last_version = version;
    if (k->rc != CORRAL_OK) return k->rc;
    char tmp[1024];
    int n = k->fixed ? snprintf(tmp, sizeof tmp, "%s", k->fixed)
                     : snprintf(tmp, sizeof tmp, "%.*s|%lld|%.*s", (int)prefix_len, prefix,
                                (long long)version, (int)key_len, (const char *)key);
    if (n < 0 || (size_t)n >= sizeof tmp || (size_t)n > cap) return CORRAL_ENOSPC;
    memcpy(out, tmp, (size_t)n);
    *out_len = (size_t)n;
    return CORRAL_OK;
}

static corral *open_with_key_fn(keyfn_ctx *k) {
    corral_options o;
    corral_options_init(&o);
    o.key_prefix = "djzen";
    o.version = 4;
    o.key_fn = pipe_key_fn;
    o.key_fn_ctx = k;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    return c;
}

static void test_make_key_uses_custom_key_function(void **state) {
    (void)state;
    keyfn_ctx k = { 0 };
    corral *c = open_with_key_fn(&k);
    expect_key(c, NULL, "foo", "djzen|4|foo");
    assert_int_equal(k.last_version, 4);
    corral_call call = CORRAL_CALL_INIT;
    call.version = 9;
    expect_key(c, &call, "foo", "djzen|9|foo");
    assert_int_equal(k.last_version, 9);
    assert_true(k.calls >= 2);
    corral_close(c);
}

static void test_make_key_validates_custom_key_function_result(void **state) {
    (void)state;
    keyfn_ctx k = { .fixed = "has space" };
    corral *c = open_with_key_fn(&k);
    char out[KEYCAP];
    size_t len = 99;
    assert_int_equal(corral_make_key(c, "foo", 3, NULL, out, sizeof out, &len), CORRAL_EBADKEY);
    assert_int_equal(len, 0);
    assert_int_equal(corral_set(c, "foo", 3, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_EBADKEY);
    corral_close(c);
}

static void test_make_key_refuses_key_when_custom_function_reports_enospc(void **state) {
    (void)state;
    keyfn_ctx k = { .rc = CORRAL_ENOSPC };
    corral *c = open_with_key_fn(&k);
    char out[KEYCAP];
    size_t len = 99;
    assert_int_equal(corral_make_key(c, "foo", 3, NULL, out, sizeof out, &len), CORRAL_EBADKEY);
    assert_int_equal(len, 0);
    assert_int_equal(k.calls, 1);
    corral_close(c);
}

static void test_make_key_refuses_custom_key_over_250_bytes(void **state) {
    (void)state;
    char long_key[252];
    memset(long_key, 'x', 251);
    long_key[251] = '\0';
    keyfn_ctx k = { .fixed = long_key };
    corral *c = open_with_key_fn(&k);
    char out[KEYCAP];
    size_t len = 99;
    assert_int_equal(corral_make_key(c, "foo", 3, NULL, out, sizeof out, &len), CORRAL_EBADKEY);
    long_key[250] = '\0';
    expect_key(c, NULL, "foo", long_key);
    corral_close(c);
}

/* ---- Validation (Django's memcache_key_warnings, refused) ---- */

static void test_make_key_limit_is_250_bytes_of_physical_key(void **state) {
    (void)state;
    corral *c = open_url(NULL); /* ":1:" is 3 bytes */
    expect_len_rc(c, 247, CORRAL_OK);
    expect_len_rc(c, 248, CORRAL_EBADKEY);
    corral_close(c);
}

static void test_make_key_limit_counts_the_key_prefix(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen&version=10"); /* "djzen:10:" is 9 bytes */
    expect_len_rc(c, 241, CORRAL_OK);
    expect_len_rc(c, 242, CORRAL_EBADKEY);
    expect_len_rc(c, 1000, CORRAL_EBADKEY);
    corral_close(c);
}

static void test_make_key_refuses_control_space_and_del_bytes(void **state) {
    (void)state;
    corral *c = open_url(NULL);
    for (int b = 0; b < 256; b++) {
        char key[3] = { 'a', (char)b, 'z' };
        char out[KEYCAP];
        size_t len = 0;
        int want = (b <= 0x20 || b == 0x7f) ? CORRAL_EBADKEY : CORRAL_OK;
        int rc = corral_make_key(c, key, sizeof key, NULL, out, sizeof out, &len);
        if (rc != want) fail_msg("byte 0x%02x: rc %d, want %d", b, rc, want);
    }
    corral_close(c);
}

/* corral_get_into without a call checks the key a word at a time (key.c): every length across
 * the word boundaries, every position, every byte, must get the byte-by-byte answer. */
static void test_read_path_refuses_a_bad_byte_at_every_position(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen&version=3");
    char key[40], buf[8];
    for (size_t len = 1; len <= sizeof key; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (int b = 0; b < 256; b++) {
                memset(key, 'k', len);
                key[pos] = (char)b;
                size_t got = 99;
                int want = (b <= 0x20 || b == 0x7f) ? CORRAL_EBADKEY : CORRAL_MISS;
                int rc = corral_get_into(c, key, len, NULL, buf, sizeof buf, &got);
                if (rc != want)
                    fail_msg("len %zu, byte 0x%02x at %zu: rc %d, want %d", len, b, pos, rc, want);
                assert_int_equal(got, 0);
            }
        }
    }
    corral_close(c);
}

/* The read path hashes the caller's bytes with the handle's header as a seed; every other path
 * builds the key and hashes that (corral__key_hash). A value written by one path is found by
 * the other, for every key length up to the limit, and the limit is the same. */
static void test_read_path_and_write_path_agree_on_every_key_length(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen&version=3");
    const size_t hdr = strlen("djzen:3:");
    corral_call same = CORRAL_CALL_INIT; /* a call: the general path, same physical key */
    same.version = 3;
    char key[MAX_KEY + 2], buf[8];
    for (size_t len = 0; len <= MAX_KEY - hdr + 1; len++) {
        for (size_t i = 0; i < len; i++)
            key[i] = (char)('!' + (i * 7 + len) % 90);
        size_t got = 0;
        int want = len <= MAX_KEY - hdr ? CORRAL_OK : CORRAL_EBADKEY;
        assert_int_equal(corral_set(c, key, len, "v", 1, CORRAL_TTL_DEFAULT, NULL), want);
        assert_int_equal(corral_get_into(c, key, len, NULL, buf, sizeof buf, &got), want);
        if (want != CORRAL_OK) continue;
        assert_int_equal(got, 1);
        assert_int_equal(corral_get_into(c, key, len, &same, buf, sizeof buf, &got), CORRAL_OK);
        assert_int_equal(corral_delete(c, key, len, &same), CORRAL_OK);
        assert_int_equal(corral_get_into(c, key, len, NULL, buf, sizeof buf, &got), CORRAL_MISS);
        /* Another version is another key, on both paths. */
        corral_call v4 = CORRAL_CALL_INIT;
        v4.version = 4;
        assert_int_equal(corral_set(c, key, len, "w", 1, CORRAL_TTL_DEFAULT, &v4), CORRAL_OK);
        assert_int_equal(corral_get_into(c, key, len, NULL, buf, sizeof buf, &got), CORRAL_MISS);
        assert_int_equal(corral_get_into(c, key, len, &v4, buf, sizeof buf, &got), CORRAL_OK);
    }
    corral_close(c);
}

static void test_bad_key_is_refused_before_touching_the_store(void **state) {
    (void)state;
    corral *c = open_url(NULL);
    assert_int_equal(corral_set(c, "a b", 3, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_EBADKEY);
    corral_value *v = (corral_value *)&v;
    assert_int_equal(corral_get(c, "a b", 3, NULL, &v), CORRAL_EBADKEY);
    assert_null(v);
    assert_int_equal(corral_get(c, "a\x7f", 2, NULL, &v), CORRAL_EBADKEY);
    assert_null(v);
    corral_close(c);
}

/* ---- Binary keys ---- */

static void test_binary_keys_option_accepts_every_byte_but_the_separator(void **state) {
    (void)state;
    corral *c = open_binary();
    for (int b = 0; b < 256; b++) {
        char key[3] = { 'a', (char)b, 'z' };
        char out[KEYCAP];
        size_t len = 0;
        int rc = corral_make_key(c, key, sizeof key, NULL, out, sizeof out, &len);
        if (b == 0x1f) { /* corral's own keys use it: a lease key could be forged */
            assert_int_equal(rc, CORRAL_EBADKEY);
            continue;
        }
        if (rc != CORRAL_OK) fail_msg("byte 0x%02x: rc %d", b, rc);
        assert_int_equal(len, 6);
        assert_memory_equal(out, ":1:", 3);
        assert_memory_equal(out + 3, key, 3);
        assert_int_equal(out[6], '\0');
    }
    corral_close(c);
}

static void test_binary_keys_url_parameter_accepts_control_bytes(void **state) {
    (void)state;
    corral *c = open_url("mem://?binary_keys=1");
    const char key[] = "a\0b c\n";
    assert_int_equal(corral_set(c, key, sizeof key - 1, "v", 1, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_OK);
    char buf[8];
    size_t len = 0;
    assert_int_equal(corral_get_into(c, key, sizeof key - 1, NULL, buf, sizeof buf, &len),
                     CORRAL_OK);
    assert_int_equal(len, 1);
    assert_int_equal(corral_get_into(c, "a", 1, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    corral_close(c);
}

static void test_binary_keys_skip_the_250_byte_limit(void **state) {
    (void)state;
    corral *c = open_binary();
    expect_len_rc(c, 300, CORRAL_OK);
    corral_close(c);
}

/* ---- Output buffer ---- */

static void test_make_key_enospc_reports_needed_length(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen");
    char out[16];
    size_t len = 0;
    /* "djzen:1:foo" is 11 bytes and needs 12 with its NUL. */
    assert_int_equal(corral_make_key(c, "foo", 3, NULL, out, 11, &len), CORRAL_ENOSPC);
    assert_int_equal(len, 11);
    assert_int_equal(corral_make_key(c, "foo", 3, NULL, out, 12, &len), CORRAL_OK);
    assert_int_equal(len, 11);
    assert_string_equal(out, "djzen:1:foo");
    corral_close(c);
}

/* ---- Fragment keys ---- */

typedef struct frag_case {
    const char *name;
    const char *vary[3];
    size_t n_vary;
    const char *want;
} frag_case;

static const frag_case frag_cases[] = {
    { "product_card", { NULL }, 0, "template.cache.product_card.d41d8cd98f00b204e9800998ecf8427e" },
    { "product_card",
      { "42", "2026-01-01 10:00:00" },
      2,
      "template.cache.product_card.60d05fbeef9982940ce216a4af204bd9" },
    { "product_card", { "42" }, 1, "template.cache.product_card.ef70b397e869e6fd08714e2f9edd3f8c" },
    { "sidebar", { "fr" }, 1, "template.cache.sidebar.ec642e7c463ccc5aa4f126179cb2d78f" },
    { "x", { "" }, 1, "template.cache.x.853ae90f0351324bd73ea615e6487517" },
    { "p", { "caf\xc3\xa9" }, 1, "template.cache.p.6c922b9010a6c6cdcff8e407d19c63bd" },
    { "product_card",
      { "a:b", "" },
      2,
      "template.cache.product_card.32be5de026d12c1e27c9a0bd91c56013" },
    /* Django joins with ':' and no escaping, so ("a:b") and ("a", "b") collide. */
    { "product_card",
      { "a:b" },
      1,
      "template.cache.product_card.d6e7a7288d38d4cf78b2f82cc7f50bba" },
    { "product_card",
      { "a", "b" },
      2,
      "template.cache.product_card.d6e7a7288d38d4cf78b2f82cc7f50bba" },
};

static void test_fragment_key_matches_django(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof frag_cases / sizeof frag_cases[0]; i++) {
        const frag_case *fc = &frag_cases[i];
        corral_buf vary[3];
        for (size_t j = 0; j < fc->n_vary; j++)
            vary[j] = (corral_buf){ fc->vary[j], strlen(fc->vary[j]) };
        char out[128];
        size_t len = 0;
        int rc = corral_fragment_key(fc->name, strlen(fc->name), fc->n_vary ? vary : NULL,
                                     fc->n_vary, out, sizeof out, &len);
        assert_int_equal(rc, CORRAL_OK);
        assert_string_equal(out, fc->want);
        assert_int_equal(len, strlen(fc->want));
    }
}

static void test_fragment_key_hashes_binary_vary_values(void **state) {
    (void)state;
    /* md5(b"a\x00b:") */
    corral_buf vary[1] = { { "a\0b", 3 } };
    char out[128];
    size_t len = 0;
    assert_int_equal(corral_fragment_key("f", 1, vary, 1, out, sizeof out, &len), CORRAL_OK);
    assert_string_equal(out, "template.cache.f.0c08b282c7bb922f93f3cd167c7c904e");
}

static void test_fragment_key_enospc_returns_needed_length(void **state) {
    (void)state;
    char out[64];
    size_t len = 0;
    /* 16 + 12 + 32 = 60 bytes, 61 with the NUL. */
    assert_int_equal(corral_fragment_key("product_card", 12, NULL, 0, out, 60, &len),
                     CORRAL_ENOSPC);
    assert_int_equal(len, 60);
    assert_int_equal(corral_fragment_key("product_card", 12, NULL, 0, out, 10, &len),
                     CORRAL_ENOSPC);
    assert_int_equal(len, 60);
    assert_int_equal(corral_fragment_key("product_card", 12, NULL, 0, out, 61, &len), CORRAL_OK);
    assert_int_equal(len, 60);
}

static void test_fragment_key_refuses_null_arguments(void **state) {
    (void)state;
    char out[128];
    size_t len = 7;
    assert_int_equal(corral_fragment_key(NULL, 3, NULL, 0, out, sizeof out, &len), CORRAL_EINVAL);
    assert_int_equal(len, 0);
    len = 7;
    assert_int_equal(corral_fragment_key("p", 1, NULL, 2, out, sizeof out, &len), CORRAL_EINVAL);
    assert_int_equal(len, 0);
}

static void test_fragment_key_is_a_valid_cache_key(void **state) {
    (void)state;
    corral *c = open_url("mem://?key_prefix=djzen");
    corral_buf vary[2] = { { "42", 2 }, { "2026-01-01 10:00:00", 19 } };
    char frag[128];
    size_t frag_len = 0;
    assert_int_equal(corral_fragment_key("product_card", 12, vary, 2, frag, sizeof frag, &frag_len),
                     CORRAL_OK);
    expect_key(c, NULL, frag,
               "djzen:1:template.cache.product_card.60d05fbeef9982940ce216a4af204bd9");
    assert_int_equal(corral_set(c, frag, frag_len, "<article>", 9, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_OK);
    assert_int_equal(corral_has(c, frag, frag_len, NULL), CORRAL_OK);
    corral_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_key_defaults_give_empty_prefix_and_version_one),
        cmocka_unit_test(test_make_key_joins_prefix_version_and_key),
        cmocka_unit_test(test_make_key_accepts_empty_user_key),
        cmocka_unit_test(test_make_key_call_version_overrides_handle_version),
        cmocka_unit_test(test_make_key_handle_version_may_be_negative),
        cmocka_unit_test(test_make_key_uses_custom_key_function),
        cmocka_unit_test(test_make_key_validates_custom_key_function_result),
        cmocka_unit_test(test_make_key_refuses_key_when_custom_function_reports_enospc),
        cmocka_unit_test(test_make_key_refuses_custom_key_over_250_bytes),
        cmocka_unit_test(test_make_key_limit_is_250_bytes_of_physical_key),
        cmocka_unit_test(test_make_key_limit_counts_the_key_prefix),
        cmocka_unit_test(test_make_key_refuses_control_space_and_del_bytes),
        cmocka_unit_test(test_bad_key_is_refused_before_touching_the_store),
        cmocka_unit_test(test_binary_keys_option_accepts_every_byte_but_the_separator),
        cmocka_unit_test(test_binary_keys_url_parameter_accepts_control_bytes),
        cmocka_unit_test(test_binary_keys_skip_the_250_byte_limit),
        cmocka_unit_test(test_make_key_enospc_reports_needed_length),
        cmocka_unit_test(test_fragment_key_matches_django),
        cmocka_unit_test(test_fragment_key_hashes_binary_vary_values),
        cmocka_unit_test(test_fragment_key_enospc_returns_needed_length),
        cmocka_unit_test(test_fragment_key_refuses_null_arguments),
        cmocka_unit_test(test_fragment_key_is_a_valid_cache_key),
        cmocka_unit_test(test_read_path_refuses_a_bad_byte_at_every_position),
        cmocka_unit_test(test_read_path_and_write_path_agree_on_every_key_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
