/*
 * test_value.c - corral_value's bytes (src/value.h): a value keeps no pointer to them, so
 * corral__value_data finds them from the kind of block that holds the value (`release`). One
 * test per kind: a standalone block, an entry of the memory store, a value whose bytes are
 * elsewhere (an MGET reply's); each with and without an envelope header before the bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <string.h>

#include "envelope.h"
#include "key.h"
#include "value.h"
#include "store/memory.h"

/* An envelope header followed by `payload`, in `out`; returns the header's length. */
static size_t with_header(const char *payload, unsigned char *out, size_t cap) {
    corral__env env = { .flags = CORRAL__ENV_TIMES, .expiry_ms = 1234, .delta_ms = 5 };
    size_t hl = corral__env_size(&env);
    assert_true(hl + strlen(payload) <= cap);
    corral__env_write(&env, out);
    memcpy(out + hl, payload, strlen(payload));
    return hl;
}

static void expect_bytes(const corral_value *v, const void *hdr, size_t hdr_len, const char *want) {
    assert_int_equal(v->hdr_len, hdr_len);
    assert_int_equal(corral_value_len(v), strlen(want));
    assert_memory_equal(corral_value_data(v), want, strlen(want) + 1); /* and the NUL */
    assert_ptr_equal(corral__value_data(v), corral_value_data(v));
    if (hdr_len) assert_memory_equal(corral__value_hdr(v), hdr, hdr_len);
}

/* CORRAL__RELEASE_BLOCK: the bytes follow the struct; a header split off as the Redis store
 * does (redis.c) moves them hdr_len further. */
static void test_value_data_of_a_standalone_block(void **state) {
    (void)state;
    corral__allocator a;
    corral__allocator_init(&a, NULL);
    corral_value *v = corral__value_new(&a, "plain", 5);
    assert_non_null(v);
    expect_bytes(v, NULL, 0, "plain");
    corral_value_unref(v);

    unsigned char raw[64];
    size_t hl = with_header("payload", raw, sizeof raw);
    v = corral__value_new(&a, raw, hl + 7);
    assert_non_null(v);
    v->len -= (uint32_t)hl;
    v->hdr_len = (uint16_t)hl;
    expect_bytes(v, raw, hl, "payload");
    corral_value_unref(v);
}

static uint64_t clock_zero(void *ctx) {
    (void)ctx;
    return 0;
}

/* CORRAL__RELEASE_MEM_ENTRY: the bytes follow the entry's key (its length read from the entry)
 * and the header; keys of several lengths, around the 16 bytes a short key's block pads to. */
static void test_value_data_of_a_memory_store_entry(void **state) {
    (void)state;
    corral__allocator a;
    corral__allocator_init(&a, NULL);
    corral__store_env env = { .alloc = &a, .now_ns = clock_zero };
    corral__mem_config cfg = { .max_bytes = 1 << 20 };
    corral__store *s = NULL;
    assert_int_equal(corral__mem_open(&s, &cfg, &env), CORRAL_OK);
    unsigned char raw[64];
    size_t hl = with_header("payload", raw, sizeof raw);
    const char *keys[] = { "k", "key:12345", "sixteen-byte-key",
                           "a key of thirty-three bytes, long" };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        size_t n = strlen(keys[i]);
        corral__skey k = { .data = keys[i], .len = n, .hash = corral__hash_bytes(keys[i], n) };
        assert_int_equal(s->ops->set(s, &k, "value", 5, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                         CORRAL_OK);
        corral_value *v = NULL;
        assert_int_equal(s->ops->get(s, &k, &v), CORRAL_OK);
        expect_bytes(v, NULL, 0, "value");
        corral_value_unref(v);
        assert_int_equal(s->ops->set(s, &k, raw, hl + 7, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                         CORRAL_OK);
        assert_int_equal(s->ops->get(s, &k, &v), CORRAL_OK);
        expect_bytes(v, raw, hl, "payload");
        corral_value_unref(v);
    }
    s->ops->close(s);
}

/* CORRAL__RELEASE_REDIS_REPLY: the bytes are where the wrapper's pointer says (a reply's
 * string, the header before them). Not released here: that frees an MGET reply (test_redis). */
static void test_value_data_of_a_value_with_its_bytes_elsewhere(void **state) {
    (void)state;
    unsigned char raw[64];
    size_t hl = with_header("payload", raw, sizeof raw);
    corral__value_at at = { .data = raw + hl };
    corral__value_init(&at.v, 7, CORRAL__RELEASE_REDIS_REPLY);
    at.v.hdr_len = (uint16_t)hl;
    raw[hl + 7] = '\0';
    expect_bytes(&at.v, raw, hl, "payload");
}

/* A count at CORRAL__REFS_FULL takes no more references: tryref says so, and corral_value_ref
 * hands out a standalone copy (header and bytes), so the count never carries into the
 * generation. */
static void test_a_full_count_hands_out_a_copy(void **state) {
    (void)state;
    corral__allocator a;
    corral__allocator_init(&a, NULL);
    unsigned char raw[64];
    size_t hl = with_header("payload", raw, sizeof raw);
    corral_value *v = corral__value_new(&a, raw, hl + 7);
    assert_non_null(v);
    v->len -= (uint32_t)hl;
    v->hdr_len = (uint16_t)hl;
    assert_int_equal(corral__value_tryref(v), CORRAL__REF_TAKEN);
    corral_value_unref(v);
    atomic_store(&v->refs, CORRAL__REFS_GEN_ONE | CORRAL__REFS_FULL);
    assert_int_equal(corral__value_tryref(v), CORRAL__REF_FULL);
    corral_value *c = corral_value_ref(v);
    assert_ptr_not_equal(c, v);
    expect_bytes(c, raw, hl, "payload");
    assert_int_equal(atomic_load(&v->refs), CORRAL__REFS_GEN_ONE | CORRAL__REFS_FULL);
    corral_value_unref(c);
    atomic_store(&v->refs, 0);
    assert_int_equal(corral__value_tryref(v), CORRAL__REF_BUSY);
    atomic_store(&v->refs, 1);
    corral_value_unref(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_data_of_a_standalone_block),
        cmocka_unit_test(test_value_data_of_a_memory_store_entry),
        cmocka_unit_test(test_value_data_of_a_value_with_its_bytes_elsewhere),
        cmocka_unit_test(test_a_full_count_hands_out_a_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
