/*
 * test_envelope.c - the value envelope (src/envelope.c), table-driven: headers written and read
 * back, every malformed header refused, and the canonical form of what the parser accepts.
 *
 * "Refused" means either stage says no: corral__env_hdr_len returns 0 (the store then treats
 * the bytes as a raw value), or it accepts the length and corral__env_parse returns
 * CORRAL_EINVAL (corral__freshness then reads the value as BUSTED, a miss). hdr_len is O(1) and
 * does not look at tags, so a few malformed headers pass it and are refused by the parser; the
 * hdr_len table pins down what it must refuse on its own.
 *
 * The mutation test is seeded; it prints its seed (set ENVELOPE_SEED to replay one).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

#define BUF 16384

/* ---- Helpers ---- */

typedef struct tag_src {
    const char *name;
    const char *version;
} tag_src;

/* Builds an env from plain data. */
static void make_env(corral__env *env, uint8_t flags, uint64_t expiry_ms, uint32_t delta_ms,
                     const tag_src *tags, size_t n) {
    memset(env, 0, sizeof *env);
    env->flags = flags;
    env->expiry_ms = expiry_ms;
    env->delta_ms = delta_ms;
    env->early_ms = delta_ms / 3;
    env->n_tags = n;
    for (size_t i = 0; i < n; i++) {
        env->tags[i] = (corral__env_tag){ .name = tags[i].name,
                                          .name_len = strlen(tags[i].name),
                                          .version = tags[i].version,
                                          .version_len = strlen(tags[i].version) };
    }
}

static void assert_env_equal(const corral__env *a, const corral__env *b) {
    assert_int_equal(a->flags, b->flags);
    if (a->flags & CORRAL__ENV_TIMES) {
        assert_int_equal(a->expiry_ms, b->expiry_ms);
        assert_int_equal(a->delta_ms, b->delta_ms);
        assert_int_equal(a->early_ms, b->early_ms);
    }
    size_t n = (a->flags & CORRAL__ENV_TAGS) ? a->n_tags : 0;
    assert_int_equal(n, (b->flags & CORRAL__ENV_TAGS) ? b->n_tags : 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a->tags[i].name_len, b->tags[i].name_len);
        assert_memory_equal(a->tags[i].name, b->tags[i].name, a->tags[i].name_len);
        assert_int_equal(a->tags[i].version_len, b->tags[i].version_len);
        assert_memory_equal(a->tags[i].version, b->tags[i].version, a->tags[i].version_len);
    }
}

/* Writes `env` followed by `payload` into `buf`; returns the total length. */
static size_t write_value(const corral__env *env, const char *payload, unsigned char *buf) {
    size_t h = corral__env_size(env);
    assert_true(h + strlen(payload) <= BUF);
    corral__env_write(env, buf);
    memcpy(buf + h, payload, strlen(payload));
    return h + strlen(payload);
}

static bool refused(const unsigned char *bytes, size_t len) {
    size_t h = corral__env_hdr_len(bytes, len);
    if (h == 0) return true;
    corral__env env;
    return corral__env_parse(bytes, h, &env) == CORRAL_EINVAL;
}

/* ---- Round trips ---- */

static char long_names[CORRAL__ENV_MAX_TAGS][256];
static tag_src many[CORRAL__ENV_MAX_TAGS];

/* 32 tags, each with a name of `name_len` bytes and a 20-digit version. */
static const tag_src *max_tags(size_t name_len) {
    for (size_t i = 0; i < CORRAL__ENV_MAX_TAGS; i++) {
        memset(long_names[i], 'a' + (int)(i % 26), name_len);
        long_names[i][name_len] = '\0';
        long_names[i][0] = (char)('A' + i % 26); /* distinct first bytes */
        many[i] = (tag_src){ long_names[i], "18446744073709551615" };
    }
    return many;
}

static void test_envelope_round_trips_every_shape(void **state) {
    (void)state;
    static const tag_src one[] = { { "product:42", "123" } };
    static const tag_src two[] = { { "product:42", "9" }, { "featured", "18446744073709551615" } };
    struct {
        const char *what;
        uint8_t flags;
        uint64_t expiry_ms;
        uint32_t delta_ms;
        const tag_src *tags;
        size_t n;
        size_t size; /* expected header bytes; 0: not checked */
    } rows[] = {
        { "empty envelope", 0, 0, 0, NULL, 0, 5 },
        { "times, never expires", CORRAL__ENV_TIMES, 0, 0, NULL, 0, CORRAL__ENV_SMALL },
        { "times, extremes", CORRAL__ENV_TIMES, UINT64_MAX, UINT32_MAX, NULL, 0, 21 },
        { "times, a real expiry", CORRAL__ENV_TIMES, 1767225600123u, 250, NULL, 0, 21 },
        { "tags, none", CORRAL__ENV_TAGS, 0, 0, NULL, 0, 6 },
        { "tags, one", CORRAL__ENV_TAGS, 0, 0, one, 1, 6 + 2 + 10 + 3 },
        { "tags, two", CORRAL__ENV_TAGS, 0, 0, two, 2, 6 + 2 + 10 + 1 + 2 + 8 + 20 },
        { "times and tags", CORRAL__ENV_TIMES | CORRAL__ENV_TAGS, 42, 7, two, 2, 21 + 1 + 43 },
        { "32 tags of 200 bytes", CORRAL__ENV_TAGS, 0, 0, max_tags(CORRAL__ENV_MAX_TAG),
          CORRAL__ENV_MAX_TAGS, 6 + 32 * (2 + 200 + 20) },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        corral__env env, got;
        make_env(&env, rows[i].flags, rows[i].expiry_ms, rows[i].delta_ms, rows[i].tags, rows[i].n);
        unsigned char buf[BUF];
        size_t len = write_value(&env, "payload", buf);
        size_t h = corral__env_size(&env);
        if (rows[i].size && h != rows[i].size)
            fail_msg("%s: header %zu bytes, want %zu", rows[i].what, h, rows[i].size);
        if (corral__env_hdr_len(buf, len) != h) fail_msg("%s: hdr_len disagrees", rows[i].what);
        if (corral__env_parse(buf, h, &got) != CORRAL_OK) fail_msg("%s: parse", rows[i].what);
        assert_env_equal(&env, &got);
        assert_memory_equal(buf + h, "payload", 7);
    }
}

static void test_envelope_round_trips_200_byte_names_and_255_byte_versions(void **state) {
    (void)state;
    /* Names up to what corral writes (200 bytes); versions up to the format's length byte. */
    const tag_src *tags = max_tags(CORRAL__ENV_MAX_TAG);
    corral__env env, got;
    make_env(&env, CORRAL__ENV_TAGS, 0, 0, tags, 2);
    env.tags[1].version = long_names[1];
    env.tags[1].version_len = 255;
    unsigned char buf[BUF];
    size_t len = write_value(&env, "", buf);
    assert_int_equal(corral__env_hdr_len(buf, len), len);
    assert_int_equal(corral__env_parse(buf, len, &got), CORRAL_OK);
    assert_env_equal(&env, &got);
}

static void test_envelope_refuses_names_corral_never_writes(void **state) {
    (void)state;
    /* A 201-byte name, and an empty one, fit the format but not what corral writes. */
    const tag_src *tags = max_tags(CORRAL__ENV_MAX_TAG + 1);
    corral__env env, got;
    make_env(&env, CORRAL__ENV_TAGS, 0, 0, tags, 1);
    unsigned char buf[BUF];
    size_t len = write_value(&env, "", buf);
    assert_int_equal(corral__env_parse(buf, len, &got), CORRAL_EINVAL);
    env.tags[0].name_len = 0;
    len = write_value(&env, "", buf);
    assert_int_equal(corral__env_parse(buf, len, &got), CORRAL_EINVAL);
}

static void test_envelope_parsed_names_point_into_the_header(void **state) {
    (void)state;
    static const tag_src one[] = { { "product:42", "123" } };
    corral__env env, got;
    make_env(&env, CORRAL__ENV_TAGS, 0, 0, one, 1);
    unsigned char buf[64];
    size_t len = write_value(&env, "", buf);
    assert_int_equal(corral__env_parse(buf, len, &got), CORRAL_OK);
    assert_ptr_equal(got.tags[0].name, (const char *)buf + 7);
    assert_ptr_equal(got.tags[0].version, (const char *)buf + 18);
}

static void test_envelope_payload_beginning_with_the_magic_is_not_read_as_a_header(void **state) {
    (void)state;
    /* A raw value beginning with 0xC7 gets an empty envelope; the payload after it is opaque,
     * even when it looks like another envelope. */
    corral__env env, got;
    make_env(&env, 0, 0, 0, NULL, 0);
    unsigned char inner[32];
    corral__env times;
    make_env(&times, CORRAL__ENV_TIMES, 5, 5, NULL, 0);
    corral__env_write(&times, inner);
    unsigned char buf[64];
    corral__env_write(&env, buf);
    memcpy(buf + 5, inner, 21);
    assert_true(corral__env_needed_for_raw(inner, 21));
    assert_int_equal(corral__env_hdr_len(buf, 26), 5);
    assert_int_equal(corral__env_parse(buf, 5, &got), CORRAL_OK);
    assert_int_equal(got.flags, 0);
}

static void test_envelope_needed_for_raw_only_for_the_magic_byte(void **state) {
    (void)state;
    struct {
        const char *bytes;
        size_t len;
        bool needed;
    } rows[] = {
        { "", 0, false },      { "\xc7", 1, true },  { "\xc7\x01\x00\x05\x00", 5, true },
        { "x\xc7", 2, false }, { "42", 2, false },   { "\xc6", 1, false },
        { "\xc8", 1, false },  { "\x00", 1, false },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (corral__env_needed_for_raw(rows[i].bytes, rows[i].len) != rows[i].needed)
            fail_msg("row %zu: want %d", i, rows[i].needed);
}

/* ---- Malformed headers ---- */

/* What hdr_len must refuse by itself, O(1), whatever follows. */
static void test_envelope_hdr_len_refuses_what_is_not_a_header(void **state) {
    (void)state;
    struct {
        const char *what;
        const char *bytes;
        size_t len;
    } rows[] = {
        { "empty", "", 0 },
        { "shorter than the minimum", "\xc7\x01\x00\x04", 4 },
        { "wrong magic", "\xc6\x01\x00\x05\x00", 5 },
        { "format 0", "\xc7\x00\x00\x05\x00", 5 },
        { "format 2", "\xc7\x02\x00\x05\x00", 5 },
        { "unknown flag 0x04", "\xc7\x01\x04\x05\x00", 5 },
        { "unknown flag 0x80", "\xc7\x01\x80\x05\x00", 5 },
        { "length 4", "\xc7\x01\x00\x04\x00x", 6 },
        { "length 0", "\xc7\x01\x00\x00\x00", 5 },
        { "length past the value", "\xc7\x01\x00\x06\x00", 5 },
        { "length 65535, value short", "\xc7\x01\x00\xff\xffxxxx", 9 },
        { "times: length 20", "\xc7\x01\x01\x14\x00tttttttttttttttt", 21 },
        { "times: value ends early", "\xc7\x01\x01\x15\x00ttttttttttttttt", 20 },
        { "tags: no count byte", "\xc7\x01\x02\x05\x00", 5 },
        { "times+tags: length 21", "\xc7\x01\x03\x15\x00tttttttttttttttt", 21 },
        { "text that starts like one", "\xc7hello", 6 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (corral__env_hdr_len(rows[i].bytes, rows[i].len) != 0)
            fail_msg("%s: hdr_len accepted it", rows[i].what);
}

static void test_envelope_refuses_every_malformed_header(void **state) {
    (void)state;
    struct {
        const char *what;
        const char *bytes;
        size_t len;
    } rows[] = {
        /* Fixed-size headers with bytes to spare: the parser must reach the declared end. */
        { "no flags, length 6", "\xc7\x01\x00\x06\x00x", 6 },
        { "times, length 22", "\xc7\x01\x01\x16\x00ttttttttttttttttX", 22 },
        /* Tag lists. */
        { "tags: 33 tags", "\xc7\x01\x02\x06\x00\x21", 6 },
        { "tags: 255 tags", "\xc7\x01\x02\x06\x00\xff", 6 },
        { "tags: one announced, none there", "\xc7\x01\x02\x06\x00\x01", 6 },
        { "tags: name length past the end", "\xc7\x01\x02\x09\x00\x01\x05xy", 9 },
        { "tags: no version length", "\xc7\x01\x02\x09\x00\x01\x02xy", 9 },
        { "tags: version length past the end", "\xc7\x01\x02\x0b\x00\x01\x02xy\x03\x31", 11 },
        { "tags: two announced, one there", "\xc7\x01\x02\x0c\x00\x02\x02xy\x02\x31\x32", 12 },
        { "tags: a byte after the last tag", "\xc7\x01\x02\x0d\x00\x01\x02xy\x02\x31\x32X", 13 },
        { "tags: zero tags, a byte after", "\xc7\x01\x02\x07\x00\x00X", 7 },
        { "times+tags: count missing", "\xc7\x01\x03\x16\x00tttttttttttttttt", 21 },
        { "times+tags: tag cut short", "\xc7\x01\x03\x19\x00tttttttttttttttt\x01\x03xy", 25 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (!refused((const unsigned char *)rows[i].bytes, rows[i].len))
            fail_msg("%s: accepted", rows[i].what);
}

static void test_envelope_parse_refuses_a_length_other_than_the_header_s(void **state) {
    (void)state;
    static const tag_src one[] = { { "t", "1" } };
    corral__env env, got;
    make_env(&env, CORRAL__ENV_TAGS, 0, 0, one, 1);
    unsigned char buf[64];
    size_t len = write_value(&env, "xyz", buf);
    size_t h = corral__env_size(&env);
    assert_int_equal(corral__env_parse(buf, len, &got), CORRAL_EINVAL); /* header + payload */
    assert_int_equal(corral__env_parse(buf, h - 1, &got), CORRAL_EINVAL);
    assert_int_equal(corral__env_parse(buf, 0, &got), CORRAL_EINVAL);
    assert_int_equal(corral__env_parse(buf, h, &got), CORRAL_OK);
}

/* ---- Mutations ---- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Whatever the bytes, parsing stays inside them (ASan watches), and a header the parser accepts
 * is canonical: writing what it parsed gives back the same bytes. */
static void test_envelope_accepted_headers_are_canonical_under_mutation(void **state) {
    (void)state;
    const char *env_seed = getenv("ENVELOPE_SEED");
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 10) : 0x5eed0e17u;
    printf("# envelope mutation seed %" PRIu64 "\n", seed);
    static const tag_src two[] = { { "product:42", "9" }, { "featured", "1844674407" } };
    corral__env env;
    make_env(&env, CORRAL__ENV_TIMES | CORRAL__ENV_TAGS, 1767225600123u, 250, two, 2);
    unsigned char base[128];
    size_t base_len = write_value(&env, "", base);
    uint64_t s = seed;
    size_t accepted = 0;
    for (int round = 0; round < 200000; round++) {
        size_t len = (size_t)(splitmix(&s) % (base_len + 1));
        unsigned char *buf = malloc(len ? len : 1); /* exact size, so ASan sees overreads */
        assert_non_null(buf);
        memcpy(buf, base, len);
        for (int flips = (int)(splitmix(&s) % 4); flips > 0 && len; flips--)
            buf[splitmix(&s) % len] = (unsigned char)splitmix(&s);
        /* Keep the length field consistent with the cut half of the time, so the parser's
         * inner checks are reached, not only hdr_len's. */
        if (len >= 5 && (splitmix(&s) & 1)) {
            buf[3] = (unsigned char)(len & 0xff);
            buf[4] = (unsigned char)(len >> 8);
        }
        size_t h = corral__env_hdr_len(buf, len);
        corral__env got;
        if (h && corral__env_parse(buf, h, &got) == CORRAL_OK) {
            accepted++;
            unsigned char again[BUF];
            if (corral__env_size(&got) != h) fail_msg("seed %" PRIu64 ": size differs", seed);
            corral__env_write(&got, again);
            if (memcmp(again, buf, h) != 0) fail_msg("seed %" PRIu64 ": not canonical", seed);
        }
        free(buf);
    }
    assert_true(accepted > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_round_trips_every_shape),
        cmocka_unit_test(test_envelope_round_trips_200_byte_names_and_255_byte_versions),
        cmocka_unit_test(test_envelope_refuses_names_corral_never_writes),
        cmocka_unit_test(test_envelope_parsed_names_point_into_the_header),
        cmocka_unit_test(test_envelope_payload_beginning_with_the_magic_is_not_read_as_a_header),
        cmocka_unit_test(test_envelope_needed_for_raw_only_for_the_magic_byte),
        cmocka_unit_test(test_envelope_hdr_len_refuses_what_is_not_a_header),
        cmocka_unit_test(test_envelope_refuses_every_malformed_header),
        cmocka_unit_test(test_envelope_parse_refuses_a_length_other_than_the_header_s),
        cmocka_unit_test(test_envelope_accepted_headers_are_canonical_under_mutation),
    };
    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
