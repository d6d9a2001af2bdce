/*
 * test_redis_tags.c - tagged reads on the Redis store (get_checked in src/store/redis.c): a
 * value's tags are validated on the server, in the read's one round trip, by a script called by
 * its SHA; against a real redis-server.
 *
 * Round trips are counted twice over: by the store's own counter (corral_redis_round_trips_total,
 * one per command or pipeline sent) and by the server's INFO commandstats, which also counts the
 * commands a script runs. A read of a value with three tags must be one EVALSHA, whose script
 * runs one GET and one MGET; the generic path would send four GETs.
 *
 * The script parses corral's envelope in Lua, so a table of stored values (valid, busted,
 * malformed, not an envelope at all) checks that it decides exactly as the handle's C code does
 * (corral__classify) on every one. The store reads a prefix with a plain GET until it has seen
 * a tagged value there, so the table goes through both paths. The same agreement is checked on
 * every stored value of the envelope fuzz corpus (fuzz/corpus/fuzz_envelope).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral/corral.h"
#include "envelope.h"
#include "access.h"
#include "key.h"
#include "value.h"
#include "redis_server.h"

#define DEADLINE_NS (15ull * 1000000000ull)

/* A handle on `primary`, reading from `replica` too when not NULL. */
static corral *open_on(const redis_server *primary, const redis_server *replica) {
    return redis_fx_open(primary, "%s%s?key_prefix=djzen&command_timeout=10", replica ? "," : "",
                         replica ? replica->hosts : "");
}

/* Calls of `cmd` ("get", "evalsha") since the last CONFIG RESETSTAT, from INFO commandstats;
 * commands run by scripts count too. */
static long long server_calls(const char *cmd) {
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "cmdstat_%s:calls=", cmd);
    assert_true(n > 0 && n < (int)sizeof prefix);
    long long calls = redis_fx_info(&srv, "commandstats", prefix);
    return calls < 0 ? 0 : calls; /* a command never called has no row */
}

static const char *const TAGS[3] = { "product:42", "category:7", "featured" };

static corral_call tagged(void) {
    corral_call call = CORRAL_CALL_INIT;
    call.tags = TAGS;
    call.n_tags = 3;
    return call;
}

static void expect_hit(corral *c, const char *key, const char *want) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != CORRAL_OK) fail_msg("%s: rc %d, want a hit", key, rc);
    assert_string_equal(corral_value_data(v), want);
    corral_value_unref(v);
}

static void expect_miss(corral *c, const char *key) {
    corral_value *v = (corral_value *)&v;
    assert_int_equal(corral_get(c, key, strlen(key), NULL, &v), CORRAL_MISS);
    assert_null(v);
    char buf[32];
    size_t len = 7;
    assert_int_equal(corral_get_into(c, key, strlen(key), NULL, buf, sizeof buf, &len),
                     CORRAL_MISS);
    assert_int_equal(len, 0);
}

/* ---- One round trip ---- */

static void test_redis_tagged_read_is_one_round_trip(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_on(&srv, NULL);
    corral_call call = tagged();
    assert_int_equal(corral_set(c, "card", 4, "<div>42</div>", 13, CORRAL_TTL_DEFAULT, &call),
                     CORRAL_OK);
    expect_hit(c, "card", "<div>42</div>"); /* loads the script if the server lacks it */
    redis_server_ok(&srv, "CONFIG RESETSTAT");
    unsigned long long trips = redis_fx_counter(c, "round_trips_total");
    expect_hit(c, "card", "<div>42</div>");
    assert_int_equal(redis_fx_counter(c, "round_trips_total") - trips, 1);
    assert_int_equal(server_calls("evalsha"), 1);
    assert_int_equal(server_calls("get"), 1);  /* the script's, for the value */
    assert_int_equal(server_calls("mget"), 1); /* the script's, for the three versions */
    char buf[32];
    size_t len = 0;
    assert_int_equal(corral_get_into(c, "card", 4, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(len, 13);
    assert_memory_equal(buf, "<div>42</div>", 13);
    assert_int_equal(redis_fx_counter(c, "round_trips_total") - trips, 2);
    assert_int_equal(corral_get_into(c, "card", 4, NULL, buf, 4, &len), CORRAL_ENOSPC);
    assert_int_equal(len, 13);
    corral_close(c);
}

/* A process that did not write the value learns that its prefix holds tagged values from its
 * first read (a GET, then the script: two round trips); untagged reads stay a plain GET. */
static void test_redis_reader_learns_which_prefixes_hold_tagged_values(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *writer = open_on(&srv, NULL);
    corral_call call = tagged();
    assert_int_equal(corral_set(writer, "card:1", 6, "v1", 2, CORRAL_TTL_DEFAULT, &call),
                     CORRAL_OK);
    assert_int_equal(corral_set(writer, "card:2", 6, "v2", 2, CORRAL_TTL_DEFAULT, &call),
                     CORRAL_OK);
    assert_int_equal(corral_set(writer, "page:1", 6, "p1", 2, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    corral *reader = open_on(&srv, NULL);
    expect_hit(reader, "page:1", "p1"); /* opens the connection */
    redis_server_ok(&srv, "CONFIG RESETSTAT");
    unsigned long long trips = redis_fx_counter(reader, "round_trips_total");
    expect_hit(reader, "page:1", "p1");
    assert_int_equal(redis_fx_counter(reader, "round_trips_total") - trips, 1);
    assert_int_equal(server_calls("evalsha") + server_calls("eval"), 0); /* a plain GET */
    expect_hit(reader, "card:1", "v1");
    assert_int_equal(redis_fx_counter(reader, "round_trips_total") - trips,
                     3); /* GET, then the script */
    expect_hit(reader, "card:2", "v2");
    assert_int_equal(redis_fx_counter(reader, "round_trips_total") - trips,
                     4); /* the script alone */
    assert_int_equal(corral_tag_bust(writer, "featured"), CORRAL_OK);
    expect_miss(reader, "card:1");
    corral_close(reader);
    corral_close(writer);
}

static void test_redis_tagged_get_or_set_hit_is_one_round_trip(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_on(&srv, NULL);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.call = tagged();
    o.beta = 0; /* no early refresh: a hit is a read and nothing else */
    int calls = 0;
    corral_value *v = NULL;
    assert_int_equal(corral_get_or_set(c, "gos", 3, redis_fx_produce, &calls, &o, &v), CORRAL_OK);
    corral_value_unref(v);
    assert_int_equal(calls, 1);
    unsigned long long trips = redis_fx_counter(c, "round_trips_total");
    assert_int_equal(corral_get_or_set(c, "gos", 3, redis_fx_produce, &calls, &o, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "made");
    corral_value_unref(v);
    assert_int_equal(calls, 1);
    assert_int_equal(redis_fx_counter(c, "round_trips_total") - trips, 1);
    assert_int_equal(corral_tag_bust(c, "featured"), CORRAL_OK);
    assert_int_equal(corral_get_or_set(c, "gos", 3, redis_fx_produce, &calls, &o, &v), CORRAL_OK);
    corral_value_unref(v);
    assert_int_equal(calls, 2); /* busted: made again */
    corral_close(c);
}

/* ---- Busts ---- */

static void test_redis_busting_any_tag_makes_a_tagged_read_miss(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_on(&srv, NULL);
    corral *other = open_on(&srv, NULL); /* another process, for all the server knows */
    corral_call call = tagged();
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(corral_set(c, "card", 4, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_OK);
        expect_hit(c, "card", "v");
        assert_int_equal(corral_tag_bust(other, TAGS[i]), CORRAL_OK);
        expect_miss(c, "card");
    }
    /* A version that vanished (evicted, deleted by hand) counts as busted. */
    assert_int_equal(corral_set(c, "card", 4, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_OK);
    expect_hit(c, "card", "v");
    redis_server_ok(&srv, "DEL djzen:tag:category:7");
    expect_miss(c, "card");
    corral_close(other);
    corral_close(c);
}

/* ---- The script decides as the handle does ---- */

typedef struct stored_case {
    const char *name;
    const char *bytes;
    size_t len;
    int rc; /* what both decide */
} stored_case;

#define S(s) s, sizeof s - 1
/* Envelope headers, little-endian lengths: [C7 01 flags len_lo len_hi]. */
#define TIMES16 "\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00"

static void test_redis_checked_script_decides_as_the_handle_does(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    redis_server_ok(&srv, "SET djzen:tag:a 123");
    redis_server_ok(&srv, "SET djzen:tag:b 456");
    redis_server_ok(&srv, "SET djzen:tag:x abc"); /* not a version: written by someone else */
    static const stored_case cases[] = {
        { "raw", S("plain"), CORRAL_OK },
        { "magic, then junk", S("\xc7junk"), CORRAL_OK },
        { "flags beyond ours", S("\xc7\x01\x04\x05\x00payload"), CORRAL_OK },
        { "header past the value", S("\xc7\x01\x02\x40\x00\x00"), CORRAL_OK },
        { "empty envelope", S("\xc7\x01\x00\x05\x00payload"), CORRAL_OK },
        { "times only", S("\xc7\x01\x01\x15\x00" TIMES16 "payload"), CORRAL_OK },
        { "no tags at all", S("\xc7\x01\x02\x06\x00\x00payload"), CORRAL_OK },
        { "tags current",
          S("\xc7\x01\x02\x12\x00\x02\x01"
            "a\x03"
            "123\x01"
            "b\x03"
            "456payload"),
          CORRAL_OK },
        { "times and tags current",
          S("\xc7\x01\x03\x1c\x00" TIMES16 "\x01\x01"
            "a\x03"
            "123payload"),
          CORRAL_OK },
        { "one tag busted",
          S("\xc7\x01\x02\x12\x00\x02\x01"
            "a\x03"
            "123\x01"
            "b\x03"
            "999payload"),
          CORRAL_MISS },
        { "tag version gone",
          S("\xc7\x01\x02\x0a\x00\x01\x01"
            "c\x01"
            "1payload"),
          CORRAL_MISS },
        { "foreign version",
          S("\xc7\x01\x02\x0c\x00\x01\x01"
            "x\x03"
            "abcpayload"),
          CORRAL_MISS },
        { "version of 21 digits",
          S("\xc7\x01\x02\x1e\x00\x01\x01"
            "a\x15"
            "000000000000000000123payload"),
          CORRAL_MISS },
        { "empty tag name",
          S("\xc7\x01\x02\x0a\x00\x01\x00\x03"
            "123payload"),
          CORRAL_MISS },
        { "header longer than its tags",
          S("\xc7\x01\x02\x0e\x00\x01\x01"
            "a\x03"
            "123zzpayload"),
          CORRAL_MISS },
        { "tag name past the header",
          S("\xc7\x01\x02\x08\x00\x01\x05"
            "a\x03"
            "123"),
          CORRAL_MISS },
        { "over 32 tags", S("\xc7\x01\x02\x06\x00\x21payload"), CORRAL_MISS },
    };
    corral *c = open_on(&srv, NULL);
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    assert_int_equal(corral__make_skey(c, "k", 1, NULL, kbuf, &sk), CORRAL_OK);
    assert_non_null(c->store->ops->get_checked);
    /* Pass 0 begins with the key's class unmarked: plain GETs until the first tagged value,
     * then the script. Pass 1 has it marked: the script reads every case. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const stored_case *t = &cases[i];
            redis_server_ok(&srv, "SET %b %b", sk.data, sk.len, t->bytes, t->len);
            corral_value *checked = NULL, *plain = NULL;
            int rc = c->store->ops->get_checked(c->store, &sk, &checked);
            if (rc != t->rc)
                fail_msg("%s (pass %d): store said %d, want %d", t->name, pass, rc, t->rc);
            /* The handle's generic decision: get, then the envelope's tags read one by one. */
            assert_int_equal(c->store->ops->get(c->store, &sk, &plain), CORRAL_OK);
            corral__view view;
            int generic = corral__classify(c, corral__value_hdr(plain), plain->hdr_len,
                                           corral__now_ms(c), NULL, true, &view) == CORRAL__V_FRESH
                              ? CORRAL_OK
                              : CORRAL_MISS;
            if (generic != t->rc)
                fail_msg("%s: the handle said %d, want %d", t->name, generic, t->rc);
            if (rc == CORRAL_OK) {
                assert_int_equal(checked->hdr_len, plain->hdr_len);
                assert_int_equal(corral_value_len(checked), corral_value_len(plain));
                assert_memory_equal(corral__value_hdr(checked), t->bytes, t->len);
            } else {
                assert_null(checked);
            }
            corral_value_unref(checked);
            corral_value_unref(plain);
        }
    }
    redis_server_ok(&srv, "DEL %b", sk.data, sk.len);
    corral_value *v = (corral_value *)&v;
    assert_int_equal(c->store->ops->get_checked(c->store, &sk, &v), CORRAL_MISS);
    assert_null(v);
    corral_close(c);
}

/* ---- The Lua parser and the C parser agree on the envelope corpus ---- */

/* Reads a whole file (at most `cap` bytes) into `buf`; returns its length. */
static size_t slurp(const char *path, unsigned char *buf, size_t cap) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    size_t n = fread(buf, 1, cap, fp);
    assert_true(feof(fp));
    fclose(fp);
    return n;
}

/* Sets the version key of every tag record found in the header `b` (of `h` bytes, 0: none) to
 * the version it carries. The walk is lenient (no limit on counts or lengths, only the header's
 * bounds), so a parser that accepts too much meets a version that matches. */
static void set_carried_versions(const unsigned char *b, size_t h) {
    if (h == 0 || !(b[2] & CORRAL__ENV_TAGS)) return;
    size_t off = CORRAL__ENV_MIN + ((b[2] & CORRAL__ENV_TIMES) ? CORRAL__ENV_TIMES_LEN : 0);
    size_t n = off < h ? b[off++] : 0;
    for (size_t i = 0; i < n && off < h; i++) {
        size_t nl = b[off++];
        if (nl > h - off) return;
        const unsigned char *name = b + off;
        off += nl;
        if (off >= h) return;
        size_t vl = b[off++];
        if (vl > h - off) return;
        redis_server_ok(&srv, "SET djzen:tag:%b %b", name, nl, b + off, vl);
        off += vl;
    }
}

/* What the handle's C code decides on `bytes` (read with the store's plain get, tags read one by
 * one): CORRAL_OK or CORRAL_MISS. The clock is 0, so no logical expiry has passed: the verdict
 * is the parse and the tags alone, which is what the script decides. */
static int c_decides(corral *c, const corral__skey *sk) {
    corral_value *plain = NULL;
    assert_int_equal(c->store->ops->get(c->store, sk, &plain), CORRAL_OK);
    corral__view view;
    corral__verdict v =
        corral__classify(c, corral__value_hdr(plain), plain->hdr_len, 0, NULL, true, &view);
    corral_value_unref(plain);
    assert_true(v == CORRAL__V_FRESH || v == CORRAL__V_BUSTED);
    return v == CORRAL__V_FRESH ? CORRAL_OK : CORRAL_MISS;
}

/* Every stored value of fuzz/corpus/fuzz_envelope, twice: with each tag's version key holding the
 * version the envelope carries (current; set_carried_versions), and with none (vanished). The
 * script (get_checked) and the C parser must decide alike, and a value both accept comes back byte
 * for byte. */
static void test_redis_checked_script_agrees_with_c_on_the_envelope_corpus(void **state) {
    (void)state;
    const char *dir = CORRAL_SOURCE_DIR "/fuzz/corpus/fuzz_envelope";
    DIR *d = opendir(dir);
    if (!d) fail_msg("cannot open %s", dir);
    corral *c = open_on(&srv, NULL);
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    assert_int_equal(corral__make_skey(c, "corpus", 6, NULL, kbuf, &sk), CORRAL_OK);
    size_t files = 0, tagged_ok = 0, misses = 0;
    static unsigned char bytes[64 * 1024];
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[512];
        int pn = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        assert_true(pn > 0 && pn < (int)sizeof path);
        size_t len = slurp(path, bytes, sizeof bytes);
        files++;
        corral__env env;
        size_t h = corral__env_hdr_len(bytes, len);
        bool parsed = h && corral__env_parse(bytes, h, &env) == CORRAL_OK;
        for (int pass = 0; pass < 2; pass++) {
            redis_server_ok(&srv, "FLUSHALL");
            if (pass == 0) set_carried_versions(bytes, h);
            redis_server_ok(&srv, "SET %b %b", sk.data, sk.len, bytes, len);
            int want = c_decides(c, &sk);
            corral_value *checked = NULL;
            int rc = c->store->ops->get_checked(c->store, &sk, &checked);
            if (rc != want)
                fail_msg("%s (%s): the script said %d, the C parser %d", de->d_name,
                         pass ? "tags vanished" : "tags current", rc, want);
            if (rc == CORRAL_OK) {
                assert_int_equal(checked->hdr_len + corral_value_len(checked), len);
                if (len) assert_memory_equal(corral__value_hdr(checked), bytes, len);
                tagged_ok += parsed && env.n_tags > 0;
            } else {
                misses++;
            }
            corral_value_unref(checked);
        }
    }
    closedir(d);
    corral_close(c);
    /* The corpus holds accepted tagged values and refused ones, or the test proves nothing. */
    assert_true(files >= 20);
    assert_true(tagged_ok > 0);
    assert_true(misses > 0);
}

/* ---- Where reads go ---- */

static void wait_for_replica(redis_server *replica, const char *key) {
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    for (;;) {
        redisReply *r = redis_server_cmd(replica, "EXISTS %s", key);
        bool there = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (r) freeReplyObject(r);
        if (there) return;
        if (redis_fx_now_ns() > deadline) fail_msg("the replica never got %s", key);
    }
}

/* The script only reads, so it runs on a read-only replica, where reads go. */
static void test_redis_tagged_read_runs_on_a_read_only_replica(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    redis_server replica = { 0 };
    assert_int_equal(redis_server_start(&replica), 0);
    redis_server_ok(&replica, "REPLICAOF 127.0.0.1 %d", srv.port);
    corral *c = open_on(&srv, &replica);
    corral_call call = tagged();
    assert_int_equal(corral_set(c, "card", 4, "v1", 2, CORRAL_TTL_DEFAULT, &call), CORRAL_OK);
    assert_int_equal(corral_set(c, "fence", 5, "1", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    wait_for_replica(&replica, "djzen:1:fence"); /* writes replicate in order */
    redis_server_ok(&replica, "CONFIG RESETSTAT");
    expect_hit(c, "card", "v1");
    redisReply *r = redis_server_cmd(&replica, "INFO commandstats");
    assert_non_null(r);
    bool ran = strstr(r->str, "cmdstat_evalsha:calls=1") || strstr(r->str, "cmdstat_eval:calls=1");
    freeReplyObject(r);
    assert_true(ran);
    assert_int_equal(corral_tag_bust(c, "product:42"), CORRAL_OK);
    assert_int_equal(corral_set(c, "fence", 5, "2", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    uint64_t deadline = redis_fx_now_ns() + DEADLINE_NS;
    for (;;) { /* the bust replicates too */
        corral_value *v = NULL;
        int rc = corral_get(c, "card", 4, NULL, &v);
        corral_value_unref(v);
        if (rc == CORRAL_MISS) break;
        assert_int_equal(rc, CORRAL_OK);
        if (redis_fx_now_ns() > deadline) fail_msg("the bust never reached the replica");
    }
    corral_close(c);
    redis_server_stop(&replica);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_tagged_read_is_one_round_trip),
        cmocka_unit_test(test_redis_tagged_get_or_set_hit_is_one_round_trip),
        cmocka_unit_test(test_redis_reader_learns_which_prefixes_hold_tagged_values),
        cmocka_unit_test(test_redis_busting_any_tag_makes_a_tagged_read_miss),
        cmocka_unit_test(test_redis_checked_script_decides_as_the_handle_does),
        cmocka_unit_test(test_redis_checked_script_agrees_with_c_on_the_envelope_corpus),
        cmocka_unit_test(test_redis_tagged_read_runs_on_a_read_only_replica),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
