/*
 * test_redis_slots.c - Redis Cluster's key space (src/store/redis_slots.c): CRC16 and hash
 * slots against the known answers of the Redis Cluster specification, hash tags by its rules,
 * the CLUSTER SLOTS reply parser on replies made from RESP bytes, and MOVED / ASK.
 *
 * Known answers: the specification gives CRC16("123456789") = 0x31C3 (so slot 12739); the
 * slots of "foo", "bar" and "hello" are what CLUSTER KEYSLOT answers on Redis 7.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "store/redis_slots.h"

static uint16_t slot_of(const char *k) {
    return corral__redis_key_slot(k, strlen(k));
}

static void test_crc16_known_answer(void **state) {
    (void)state;
    assert_int_equal(corral__redis_crc16("123456789", 9), 0x31C3);
    assert_int_equal(corral__redis_crc16("", 0), 0);
    assert_int_equal(slot_of("123456789"), 0x31C3 & 16383);
    assert_int_equal(slot_of("123456789"), 12739);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("hello"), 866);
}

static void test_hash_tags_follow_the_spec(void **state) {
    (void)state;
    /* The bytes between the first '{' and the first '}' after it are hashed. */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("{user1000}.followers"), slot_of("{user1000}.following"));
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* An empty tag, or no '}' after the '{': the whole key. */
    assert_int_equal(slot_of("foo{}{bar}"), corral__redis_crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot_of("foo{bar"), corral__redis_crc16("foo{bar", 7) & 16383);
    assert_int_equal(slot_of("foo}bar{"), corral__redis_crc16("foo}bar{", 8) & 16383);
    /* A key with a NUL inside is hashed whole, NUL included. */
    assert_int_equal(corral__redis_key_slot("a\0{b}", 5), slot_of("b"));
}

/* A reply tree from RESP bytes, as hiredis makes one from a server's answer. */
static redisReply *resp(const char *bytes) {
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, bytes, strlen(bytes)), REDIS_OK);
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

static void test_slots_parse_reads_ranges_primaries_and_replicas(void **state) {
    (void)state;
    /* Two primaries; the first range's replica on the host that answered (empty host). */
    const char *ok = "*3\r\n"
                     "*4\r\n:0\r\n:5460\r\n"
                     "*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
                     "*3\r\n$0\r\n\r\n:7003\r\n$2\r\nid\r\n"
                     "*3\r\n:5461\r\n:10922\r\n"
                     "*3\r\n$8\r\n10.0.0.2\r\n:7001\r\n$2\r\nid\r\n"
                     "*4\r\n:10923\r\n:16383\r\n"
                     "*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
                     "*3\r\n$1\r\n?\r\n:7009\r\n$2\r\nid\r\n";
    redisReply *r = resp(ok);
    corral__redis_slot_map *m = test_malloc(sizeof *m);
    corral_error err;
    assert_int_equal(corral__redis_slots_parse(r, "10.0.0.9", m, &err), CORRAL_OK);
    assert_int_equal(m->n_shards, 2);
    assert_string_equal(m->shards[0].primary.name, "10.0.0.1");
    assert_int_equal(m->shards[0].primary.port, 7000);
    assert_int_equal(m->shards[0].n_replicas, 1); /* the "?" replica is left out */
    assert_string_equal(m->shards[0].replicas[0].name, "10.0.0.9");
    assert_int_equal(m->shards[0].replicas[0].port, 7003);
    assert_string_equal(m->shards[1].primary.name, "10.0.0.2");
    assert_int_equal(m->shards[1].n_replicas, 0);
    assert_int_equal(m->shard_of[0], 0);
    assert_int_equal(m->shard_of[5460], 0);
    assert_int_equal(m->shard_of[5461], 1);
    assert_int_equal(m->shard_of[10922], 1);
    assert_int_equal(m->shard_of[10923], 0); /* the same primary: the same shard */
    assert_int_equal(m->shard_of[16383], 0);
    freeReplyObject(r);

    /* A nil host (cluster-preferred-endpoint-type unknown-endpoint): the host that answered. */
    r = resp("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$-1\r\n:7005\r\n$2\r\nid\r\n");
    assert_int_equal(corral__redis_slots_parse(r, "10.0.0.9", m, &err), CORRAL_OK);
    assert_string_equal(m->shards[0].primary.name, "10.0.0.9");
    assert_int_equal(m->shards[0].primary.port, 7005);
    freeReplyObject(r);

    /* A cluster that lost a shard: its slots have none. */
    r = resp("*1\r\n*3\r\n:100\r\n:200\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n");
    assert_int_equal(corral__redis_slots_parse(r, NULL, m, &err), CORRAL_OK);
    assert_int_equal(m->shard_of[99], CORRAL__REDIS_NO_SHARD);
    assert_int_equal(m->shard_of[100], 0);
    assert_int_equal(m->shard_of[201], CORRAL__REDIS_NO_SHARD);
    freeReplyObject(r);
    test_free(m);
}

static void test_slots_parse_refuses_malformed_replies(void **state) {
    (void)state;
    static const struct {
        const char *resp, *why;
    } bad[] = {
        { "+OK\r\n", "not an array" },
        { "*1\r\n:1\r\n", "malformed" },
        { "*1\r\n*2\r\n:0\r\n:1\r\n", "malformed" },
        { "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\na\r\n:1\r\n", "bad range" },
        { "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n", "bad range" },
        { "*1\r\n*3\r\n:-1\r\n:3\r\n*2\r\n$1\r\na\r\n:1\r\n", "bad range" },
        { "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:0\r\n", "bad primary" },
        { "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:65536\r\n", "bad primary" },
        { "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na b\r\n:1\r\n", "bad primary" },
        { "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\n?\r\n:1\r\n", "bad primary" },
        { "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n", "bad primary" },
        { "*1\r\n*4\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:1\r\n+x\r\n", "bad replica" },
        { "*2\r\n*3\r\n:0\r\n:9\r\n*2\r\n$1\r\na\r\n:1\r\n*3\r\n:9\r\n:9\r\n*2\r\n$1\r\nb\r\n:"
          "1\r\n",
          "slot 9 twice" },
    };
    corral__redis_slot_map *m = test_malloc(sizeof *m);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        redisReply *r = resp(bad[i].resp);
        corral_error err;
        memset(&err, 0, sizeof err);
        assert_int_equal(corral__redis_slots_parse(r, "h", m, &err), CORRAL_EFORMAT);
        if (!strstr(err.msg, bad[i].why))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].why);
        freeReplyObject(r);
    }
    assert_int_equal(corral__redis_slots_parse(NULL, "h", m, NULL), CORRAL_EFORMAT);
    test_free(m);
}

static void test_slots_parse_refuses_too_many_primaries(void **state) {
    (void)state;
    char buf[CORRAL__REDIS_MAX_SHARDS * 64 + 64];
    size_t n = (size_t)snprintf(buf, sizeof buf, "*%d\r\n", CORRAL__REDIS_MAX_SHARDS + 1);
    for (int i = 0; i <= CORRAL__REDIS_MAX_SHARDS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n,
                              "*3\r\n:%d\r\n:%d\r\n*2\r\n$1\r\nh\r\n:%d\r\n", i, i, 1000 + i);
    redisReply *r = resp(buf);
    corral__redis_slot_map *m = test_malloc(sizeof *m);
    corral_error err;
    assert_int_equal(corral__redis_slots_parse(r, NULL, m, &err), CORRAL_EFORMAT);
    assert_non_null(strstr(err.msg, "more than"));
    freeReplyObject(r);
    test_free(m);
}

static int redirect(const char *s, bool *ask, uint16_t *slot, corral__redis_addr *to) {
    return corral__redis_parse_redirect(s, strlen(s), "10.1.1.1", ask, slot, to);
}

static void test_redirects_parse(void **state) {
    (void)state;
    bool ask = true;
    uint16_t slot = 0;
    corral__redis_addr to;
    assert_int_equal(redirect("MOVED 3999 127.0.0.1:6381", &ask, &slot, &to), CORRAL_OK);
    assert_false(ask);
    assert_int_equal(slot, 3999);
    assert_string_equal(to.name, "127.0.0.1");
    assert_int_equal(to.port, 6381);
    assert_int_equal(redirect("ASK 16383 ::1:7000", &ask, &slot, &to), CORRAL_OK);
    assert_true(ask);
    assert_int_equal(slot, 16383);
    assert_string_equal(to.name, "::1");
    assert_int_equal(to.port, 7000);
    assert_int_equal(redirect("MOVED 0 :7001", &ask, &slot, &to), CORRAL_OK);
    assert_string_equal(to.name, "10.1.1.1"); /* the node that answered */
    assert_int_equal(redirect("ERR unknown command", &ask, &slot, &to), CORRAL_MISS);
    assert_int_equal(redirect("MOVEDX 1 a:1", &ask, &slot, &to), CORRAL_MISS);
    static const char *const bad[] = { "MOVED ",          "MOVED x a:1",      "MOVED 16384 a:1",
                                       "MOVED 1 a",       "MOVED 1 a:",       "MOVED 1 a:0",
                                       "MOVED 1 a:65536", "MOVED 1 a:123456", "ASK 1 a b:1",
                                       "MOVED 1  a:1",    "MOVED 1a a:1",     "ASK 1 ?:1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (redirect(bad[i], &ask, &slot, &to) != CORRAL_EFORMAT) fail_msg("accepted '%s'", bad[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_known_answer),
        cmocka_unit_test(test_hash_tags_follow_the_spec),
        cmocka_unit_test(test_slots_parse_reads_ranges_primaries_and_replicas),
        cmocka_unit_test(test_slots_parse_refuses_malformed_replies),
        cmocka_unit_test(test_slots_parse_refuses_too_many_primaries),
        cmocka_unit_test(test_redirects_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
