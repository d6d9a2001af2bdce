/*
 * test_redis.c - the Redis store (src/store/redis.c) against a real redis-server.
 *
 * The group setup starts a private redis-server on a free port (redis_server.c) and the
 * teardown stops it; every test begins with FLUSHALL. The shared store suite (store_suite.h)
 * runs first, with a tick of one second: `advance` shifts every key's expiry on the server
 * (see store_suite.h), so TTL tests wait for nothing. Then come what only Redis has: the URL,
 * bytes shared with other clients, PX TTLs seen through PTTL, the lease keyspace, FLUSHDB on the
 * configured database, the prefix-only clear, replicas, unix sockets, AUTH, scripts reloaded
 * after SCRIPT FLUSH, real expiry on the server's clock, metrics and a pool shared by threads.
 * Failures (a dead, restarting, sleeping, paused or full server) are in test_redis_faults.c.
 *
 * Our allocations go through a counting allocator, so every test also checks that the store
 * frees what it allocates (hiredis's own use libc, as HOUSE_STYLE.md accepts for 0.14).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "counting_alloc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "corral/corral.h"
#include "envelope.h"
#include "key.h"
#include "value.h"
#include "store/redis.h"
#include "store/redis_pool.h"
#include "redis_server.h"
#include "store_suite.h"

/* ---- Store fixture ---- */

typedef struct rfx {
    counting ca;
    corral__allocator alloc;
    corral__store_env env;
    corral_redis_options ro;
    corral__store *s;
    const redis_server *srv;
} rfx;

static rfx *rfx_init(const redis_server *server) {
    rfx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->alloc = (corral__allocator){ count_alloc, count_realloc, count_free, &f->ca };
    f->env = (corral__store_env){ .alloc = &f->alloc, .now_ns = corral__realtime_ns };
    f->srv = server;
    corral_options o;
    redis_fx_options(server, &o);
    f->ro = o.redis;
    return f;
}

static rfx *rfx_open(const redis_server *server, size_t max_value_bytes) {
    rfx *f = rfx_init(server);
    corral_error err = { 0 };
    int rc = corral__redis_open(&f->s, &f->ro, max_value_bytes ? max_value_bytes : 16 << 20,
                                &f->env, &err);
    if (rc != CORRAL_OK) fail_msg("redis open: %d %s", rc, err.msg);
    return f;
}

static void rfx_close(rfx *f) {
    if (f->s) f->s->ops->close(f->s);
    assert_int_equal(outstanding(&f->ca), 0);
    free(f);
}

static corral__skey K(const char *k) {
    size_t n = strlen(k);
    return (corral__skey){ .data = k, .len = n, .hash = corral__hash_bytes(k, n), .cls = 1 };
}

/* The server's reply to a command, which must be a string; returned as a malloc'd copy, or NULL
 * for nil. */
static char *admin_get(int db, const char *key) {
    redisReply *r = redis_server_cmd_db(&srv, db, "GET %b", key, strlen(key));
    assert_non_null(r);
    char *out = NULL;
    if (r->type == REDIS_REPLY_STRING) {
        out = malloc(r->len + 1);
        assert_non_null(out);
        memcpy(out, r->str, r->len);
        out[r->len] = '\0';
    } else {
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    }
    freeReplyObject(r);
    return out;
}

static long long admin_int(int db, const char *fmt, const char *key) {
    redisReply *r = redis_server_cmd_db(&srv, db, fmt, key, strlen(key));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* ---- The shared suite on Redis ---- */

/* Lets `ARGV[1]` milliseconds pass for every key with a TTL: its expiry moves that much closer,
 * and a key whose expiry would pass is deleted. */
static const char SHIFT_SCRIPT[] =
    "local ms = tonumber(ARGV[1])\n"
    "local n = 0\n"
    "for _, k in ipairs(redis.call('KEYS', '*')) do\n"
    "  local t = redis.call('PTTL', k)\n"
    "  if t > 0 then\n"
    "    if t - ms <= 0 then redis.call('DEL', k) else redis.call('PEXPIRE', k, t - ms) end\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n";

static void redis_suite_advance(suite_fx *sf, int64_t ticks) {
    const rfx *f = sf->impl;
    redisReply *r =
        redis_server_cmd(f->srv, "EVAL %s 0 %lld", SHIFT_SCRIPT, (long long)(ticks * sf->tick_ms));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
}

static void redis_suite_close(suite_fx *sf) {
    rfx_close(sf->impl);
    free(sf);
}

static suite_fx *redis_suite_open(suite_target *t, size_t max_value_bytes) {
    redis_server *s = t->ctx;
    redis_server_ok(s, "FLUSHALL");
    rfx *f = rfx_open(s, max_value_bytes);
    suite_fx *sf = calloc(1, sizeof *sf);
    assert_non_null(sf);
    *sf = (suite_fx){ .s = f->s,
                      .tick_ms = 1000,
                      .has_events = false,
                      .advance = redis_suite_advance,
                      .close = redis_suite_close,
                      .impl = f };
    return sf;
}

static suite_target redis_target = { .name = "redis", .open = redis_suite_open, .ctx = &srv };

/* ---- URL and public API ---- */

static void test_redis_url_opens_a_handle_on_the_configured_db(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis://%s/3?key_prefix=djzen&timeout=300", srv.hosts),
                     CORRAL_OK);
    assert_int_equal(
        corral_set(c, "featured_products:v3", 20, "[1,2,3]", 7, CORRAL_TTL_DEFAULT, NULL),
        CORRAL_OK);
    char *raw = admin_get(3, "djzen:1:featured_products:v3"); /* Django's key, in db 3 */
    assert_string_equal(raw, "[1,2,3]");
    free(raw);
    long long pttl = admin_int(3, "PTTL %b", "djzen:1:featured_products:v3");
    assert_in_range(pttl, 290000, 300000); /* timeout=300 s as PX */
    assert_null(admin_get(0, "djzen:1:featured_products:v3"));
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, "featured_products:v3", 20, NULL, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "[1,2,3]");
    corral_value_unref(v);
    corral_close(c);
}

static void test_redis_opens_while_the_server_is_down_and_misses(void **state) {
    (void)state;
    corral *c = NULL;
    /* Port 1 on loopback: nothing listens there, the connection is refused at once. */
    assert_int_equal(redis_fx_open_url(&c, "redis://127.0.0.1:1?connect_timeout=0.5"), CORRAL_OK);
    corral_value *v = (corral_value *)&c;
    assert_int_equal(corral_get(c, "k", 1, NULL, &v), CORRAL_MISS);
    assert_null(v);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    corral_close(c);
}

static void test_redis_open_refuses_bad_options(void **state) {
    (void)state;
    corral_options o;
    redis_fx_options(&srv, &o);
    corral *c = (corral *)&c;
    corral_error err = { 0 };
    o.redis.pool = 0;
    assert_int_equal(corral_open_opts(&c, &o, &err), CORRAL_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err.msg, "pool"));
    o.redis.pool = 4;
    o.redis.command_timeout_ms = 0;
    assert_int_equal(corral_open_opts(&c, &o, &err), CORRAL_EINVAL);
    assert_non_null(strstr(err.msg, "command_timeout"));
    o.redis.command_timeout_ms = 100;
    o.redis.hosts = "a,,b";
    assert_int_equal(corral_open_opts(&c, &o, &err), CORRAL_EBADURL);
    assert_non_null(strstr(err.msg, "host"));
    o.redis.hosts = srv.hosts;
    assert_null(c);
}

/* Binary keys (Django's Redis backends take any key): spaces, control bytes and long keys are
 * stored under their bytes; a key holding 0x1f, which could spell another key's lease key, is
 * refused. */
static void test_redis_binary_keys_take_what_django_takes_but_no_lease_key(void **state) {
    (void)state;
    corral *c = redis_fx_open(&srv, "?key_prefix=bk&binary_keys=1");
    static char longkey[1000];
    memset(longkey, 'k', sizeof longkey);
    const char spaced[] = "my key\n";
    assert_int_equal(corral_set(c, spaced, sizeof spaced - 1, "v", 1, 60000, NULL), CORRAL_OK);
    assert_int_equal(corral_set(c, longkey, sizeof longkey, "w", 1, 60000, NULL), CORRAL_OK);
    redisReply *r = redis_server_cmd(&srv, "GET %b", "bk:1:my key\n", (size_t)12);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    char buf[4];
    size_t len = 0;
    assert_int_equal(corral_get_into(c, longkey, sizeof longkey, NULL, buf, sizeof buf, &len),
                     CORRAL_OK);
    assert_int_equal(corral_set(c, "x\x1flease", 7, "v", 1, 60000, NULL), CORRAL_EBADKEY);
    corral_close(c);
}

/* ---- Bytes shared with other clients ---- */

static void test_redis_values_are_plain_bytes_other_clients_share(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    rfx *f = rfx_open(&srv, 0);
    corral__skey k = K("shared");
    assert_int_equal(f->s->ops->set(f->s, &k, "a\0b", 3, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
    redisReply *r = redis_server_cmd(&srv, "GET shared");
    assert_non_null(r);
    assert_int_equal(r->len, 3);
    assert_memory_equal(r->str, "a\0b", 3);
    freeReplyObject(r);
    assert_int_equal(admin_int(0, "PTTL %b", "shared"), -1); /* no expiry: no PX */
    redis_server_ok(&srv, "SET other %s", "from redis-cli");
    corral__skey o = K("other");
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &o, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "from redis-cli");
    corral_value_unref(v);
    /* incr works on what another client wrote, and INCR works on what corral wrote. */
    redis_server_ok(&srv, "SET n 41");
    int64_t out = 0;
    corral__skey n = K("n");
    assert_int_equal(f->s->ops->incr(f->s, &n, 1, &out), CORRAL_OK);
    assert_int_equal(out, 42);
    assert_int_equal(admin_int(0, "INCR %b", "n"), 43);
    rfx_close(f);
}

static void test_redis_ttls_are_set_as_px_and_touch_persists(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    rfx *f = rfx_open(&srv, 0);
    corral__skey k = K("t");
    assert_int_equal(f->s->ops->set(f->s, &k, "v", 1, 123456, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
    assert_in_range(admin_int(0, "PTTL %b", "t"), 120000, 123456);
    assert_int_equal(f->s->ops->touch(f->s, &k, 7000), CORRAL_OK);
    assert_in_range(admin_int(0, "PTTL %b", "t"), 5000, 7000);
    assert_int_equal(f->s->ops->touch(f->s, &k, CORRAL__NO_EXPIRY), CORRAL_OK);
    assert_int_equal(admin_int(0, "PTTL %b", "t"), -1);
    /* incr keeps the TTL, even when it rewrites a non-canonical integer. */
    assert_int_equal(f->s->ops->set(f->s, &k, "007", 3, 60000, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
    int64_t out;
    assert_int_equal(f->s->ops->incr(f->s, &k, 1, &out), CORRAL_OK);
    assert_int_equal(out, 8);
    assert_in_range(admin_int(0, "PTTL %b", "t"), 50000, 60000);
    rfx_close(f);
}

static void test_redis_get_splits_an_envelope_header_from_the_payload(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    rfx *f = rfx_open(&srv, 0);
    corral__env env = { .flags = CORRAL__ENV_TIMES, .expiry_ms = 1234, .delta_ms = 5 };
    size_t hl = corral__env_size(&env);
    unsigned char raw[64];
    assert_true(hl + 7 <= sizeof raw);
    corral__env_write(&env, raw);
    memcpy(raw + hl, "payload", 7);
    corral__skey k = K("env");
    assert_int_equal(
        f->s->ops->set(f->s, &k, raw, hl + 7, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
    corral_value *v = NULL;
    assert_int_equal(f->s->ops->get(f->s, &k, &v), CORRAL_OK);
    assert_int_equal(v->hdr_len, hl);
    assert_int_equal(corral_value_len(v), 7);
    assert_memory_equal(corral_value_data(v), "payload", 8); /* NUL after the payload */
    assert_memory_equal(corral__value_hdr(v), raw, hl);
    corral_value_unref(v);
    char buf[16], hdr[32];
    size_t len = 0, got_hl = 0;
    assert_int_equal(f->s->ops->get_into(f->s, &k, buf, sizeof buf, &len, hdr, sizeof hdr, &got_hl),
                     CORRAL_OK);
    assert_int_equal(len, 7);
    assert_int_equal(got_hl, hl);
    assert_memory_equal(buf, "payload", 7);
    assert_memory_equal(hdr, raw, hl);
    int64_t out;
    assert_int_equal(f->s->ops->incr(f->s, &k, 1, &out), CORRAL_ENOTINT);
    rfx_close(f);
}

static void test_redis_scripts_load_again_after_script_flush(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    rfx *f = rfx_open(&srv, 0);
    corral__skey k = K("n");
    assert_int_equal(f->s->ops->set(f->s, &k, "1", 1, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0),
                     CORRAL_OK);
    int64_t out = 0;
    assert_int_equal(f->s->ops->incr(f->s, &k, 1, &out), CORRAL_OK);
    redis_server_ok(&srv, "SCRIPT FLUSH");
    assert_int_equal(f->s->ops->incr(f->s, &k, 1, &out), CORRAL_OK); /* NOSCRIPT -> EVAL */
    assert_int_equal(out, 3);
    assert_int_equal(f->s->ops->lease_acquire(f->s, &k, "t", 1, 1000), CORRAL_OK);
    redis_server_ok(&srv, "SCRIPT FLUSH");
    assert_int_equal(f->s->ops->lease_release(f->s, &k, "t", 1), CORRAL_OK);
    rfx_close(f);
}

/* ---- Leases ---- */

static void test_redis_lease_has_its_own_key_beside_the_value(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    rfx *f = rfx_open(&srv, 0);
    corral__skey k = K("djzen:1:page");
    assert_int_equal(f->s->ops->lease_acquire(f->s, &k, "tok", 3, 30000), CORRAL_OK);
    assert_int_equal(admin_int(0, "EXISTS %b", "djzen:1:page"), 0);
    assert_int_equal(admin_int(0, "EXISTS %b", "djzen:1:page\x1flease"), 1);
    assert_in_range(admin_int(0, "PTTL %b", "djzen:1:page\x1flease"), 20000, 30000);
    char *tok = admin_get(0, "djzen:1:page\x1flease");
    assert_string_equal(tok, "tok");
    free(tok);
    rfx_close(f);
}

/* ---- clear and clear_prefix ---- */

static void test_redis_clear_flushes_only_the_configured_db(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis://%s/3?key_prefix=a", srv.hosts), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    redisReply *r = redis_server_cmd_db(&srv, 3, "SET foreign x");
    freeReplyObject(r);
    r = redis_server_cmd_db(&srv, 5, "SET other-db y");
    freeReplyObject(r);
    assert_int_equal(corral_clear(c), CORRAL_OK);
    assert_null(admin_get(3, "a:1:k"));
    assert_null(admin_get(3, "foreign")); /* FLUSHDB: every key of db 3, as Django */
    char *kept = admin_get(5, "other-db");
    assert_string_equal(kept, "y");
    free(kept);
    corral_close(c);
}

static void test_redis_clear_prefix_removes_only_the_handles_keys(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *mine = NULL, *theirs = NULL;
    /* A prefix with glob characters: SCAN's pattern must escape them. */
    assert_int_equal(redis_fx_open_url(&mine, "redis://%s?key_prefix=shop%%2A", srv.hosts),
                     CORRAL_OK);
    assert_int_equal(redis_fx_open_url(&theirs, "redis://%s?key_prefix=shopx", srv.hosts),
                     CORRAL_OK);
    char k[32];
    for (int i = 0; i < 2500; i++) { /* several SCAN batches */
        int n = snprintf(k, sizeof k, "item:%d", i);
        assert_int_equal(corral_set(mine, k, (size_t)n, "v", 1, CORRAL_TTL_DEFAULT, NULL),
                         CORRAL_OK);
    }
    assert_int_equal(corral_set(theirs, "item:1", 6, "kept", 4, CORRAL_TTL_DEFAULT, NULL),
                     CORRAL_OK);
    redis_server_ok(&srv, "SET %s %s", "shop*x:1:item:1", "also kept");
    assert_int_equal(corral_clear_prefix(mine), CORRAL_OK);
    assert_int_equal(admin_int(0, "EXISTS %b", "shop*:1:item:7"), 0);
    redisReply *r = redis_server_cmd(&srv, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 2); /* theirs, and the key that only looks like ours */
    freeReplyObject(r);
    corral_value *v = NULL;
    assert_int_equal(corral_get(theirs, "item:1", 6, NULL, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "kept");
    corral_value_unref(v);
    corral_close(mine);
    corral_close(theirs);
}

static void test_redis_clear_prefix_on_the_memory_store_clears_it(void **state) {
    (void)state;
    corral *c = NULL;
    assert_int_equal(corral_open(&c, "mem://?key_prefix=p", NULL), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_clear_prefix(c), CORRAL_OK);
    assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
    corral_close(c);
}

/* ---- Hosts, sockets, AUTH ---- */

static void test_redis_writes_go_to_the_first_host_and_reads_to_the_others(void **state) {
    (void)state;
    redis_server replica = { 0 };
    assert_int_equal(redis_server_start(&replica), 0);
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis://%s,%s", srv.hosts, replica.hosts), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "primary", 7, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    char *on_primary = admin_get(0, ":1:k");
    assert_string_equal(on_primary, "primary");
    free(on_primary);
    /* The two servers do not replicate: a read that finds nothing went to the replica. */
    assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_MISS);
    redis_server_ok(&replica, "SET %s %s", ":1:k", "replica");
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, "k", 1, NULL, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "replica");
    corral_value_unref(v);
    corral_close(c);
    redis_server_stop(&replica);
}

static void test_redis_unix_socket_url(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis+unix://%s?db=2&key_prefix=u", srv.sock),
                     CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "via socket", 10, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    char *raw = admin_get(2, "u:1:k");
    assert_string_equal(raw, "via socket");
    free(raw);
    corral_close(c);
}

static void test_redis_auth_with_password_from_userinfo_or_parameter(void **state) {
    (void)state;
    redis_server locked = { 0 };
    /* The helper's readiness PING sends no AUTH: the password is set once the server is up. */
    assert_int_equal(redis_server_start(&locked), 0);
    redis_server_ok(&locked, "CONFIG SET requirepass %s", "s3cr:t");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis://:wrong@%s", locked.hosts), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_ESTORE);
    corral_close(c);
    assert_int_equal(redis_fx_open_url(&c, "redis://:s3cr%%3At@%s", locked.hosts), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    corral_close(c);
    assert_int_equal(redis_fx_open_url(&c, "redis://%s/1?password=s3cr%%3At", locked.hosts),
                     CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    assert_int_equal(corral_has(c, "k", 1, NULL), CORRAL_OK);
    corral_close(c);
    redis_server_stop(&locked);
}

/* ---- Real expiry on the server's clock ---- */

/* The server's clock in ms (TIME), read without touching any key. */
static uint64_t server_ms(void) {
    redisReply *r = redis_server_cmd(&srv, "TIME");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    uint64_t ms = strtoull(r->element[0]->str, NULL, 10) * 1000 +
                  strtoull(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms;
}

static void test_redis_expired_key_is_never_returned_on_the_servers_clock(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    /* No active expiry: the expired key stays in memory until an access finds it. */
    redis_server_ok(&srv, "DEBUG SET-ACTIVE-EXPIRE 0");
    rfx *f = rfx_open(&srv, 0);
    corral__skey k = K("short");
    assert_int_equal(f->s->ops->set(f->s, &k, "v", 1, 5, CORRAL__SET_ALWAYS, 0), CORRAL_OK);
    uint64_t t0 = server_ms(); /* after the SET ran: it expires by t0 + 5 */
    /* Poll the server's clock, with a deadline, until the TTL has surely passed. */
    uint64_t deadline = t0 + 10000;
    uint64_t now;
    do {
        now = server_ms();
    } while (now < t0 + 7 && now < deadline);
    assert_true(now >= t0 + 7);
    redisReply *r = redis_server_cmd(&srv, "DBSIZE");
    assert_int_equal(r->integer, 1); /* still held: not yet reclaimed */
    freeReplyObject(r);
    corral_value *v = (corral_value *)&k;
    assert_int_equal(f->s->ops->get(f->s, &k, &v), CORRAL_MISS);
    assert_null(v);
    assert_int_equal(f->s->ops->set(f->s, &k, "w", 1, 5, CORRAL__SET_NX, 0), CORRAL_OK);
    rfx_close(f);
    redis_server_ok(&srv, "DEBUG SET-ACTIVE-EXPIRE 1");
}

/* ---- Metrics ---- */

static void test_redis_metrics_text_carries_the_store_counters(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis://%s", srv.hosts), CORRAL_OK);
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(corral_metrics_write(c, &text, &len), CORRAL_OK);
    assert_non_null(strstr(text, "# TYPE corral_redis_errors_total counter\n"));
    assert_non_null(strstr(text, "\ncorral_redis_errors_total 0\n"));
    assert_non_null(strstr(text, "\ncorral_redis_connects_total 1\n"));
    assert_non_null(strstr(text, "\ncorral_redis_connections 1\n"));
    assert_non_null(strstr(text, "corral_store_used_bytes{store=\"redis\"} 0\n"));
    corral_free(c, text);
    corral_close(c);
}

/* ---- Threads ---- */

#define POOL_THREADS 8
#define POOL_ITERS   300

typedef struct pool_arg {
    corral *c;
    pthread_barrier_t *start;
    int id;
} pool_arg;

static void *pool_main(void *p) {
    pool_arg *a = p;
    int rc = pthread_barrier_wait(a->start);
    assert_true(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD);
    char k[32], v[32];
    for (int i = 0; i < POOL_ITERS; i++) {
        int kl = snprintf(k, sizeof k, "t%d:%d", a->id, i % 10);
        int vl = snprintf(v, sizeof v, "%d-%d", a->id, i);
        assert_int_equal(corral_set(a->c, k, (size_t)kl, v, (size_t)vl, CORRAL_TTL_DEFAULT, NULL),
                         CORRAL_OK);
        corral_value *got = NULL;
        assert_int_equal(corral_get(a->c, k, (size_t)kl, NULL, &got), CORRAL_OK);
        assert_string_equal(corral_value_data(got), v); /* each thread owns its keys */
        corral_value_unref(got);
        assert_int_equal(corral_incr(a->c, "ctr", 3, 1, NULL, NULL), CORRAL_OK);
    }
    return NULL;
}

static void test_redis_threads_share_a_small_pool(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c, "redis://%s?pool=2&command_timeout=10", srv.hosts),
                     CORRAL_OK);
    assert_int_equal(corral_set(c, "ctr", 3, "0", 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, POOL_THREADS), 0);
    pool_arg a[POOL_THREADS];
    pthread_t t[POOL_THREADS];
    for (int i = 0; i < POOL_THREADS; i++) {
        a[i] = (pool_arg){ .c = c, .start = &start, .id = i };
        assert_int_equal(pthread_create(&t[i], NULL, pool_main, &a[i]), 0);
    }
    for (int i = 0; i < POOL_THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&start), 0);
    int64_t total = 0;
    assert_int_equal(corral_incr(c, "ctr", 3, 0, NULL, &total), CORRAL_OK);
    assert_int_equal(total, POOL_THREADS * POOL_ITERS);
    char *text = NULL;
    size_t len;
    assert_int_equal(corral_metrics_write(c, &text, &len), CORRAL_OK);
    const char *connects = strstr(text, "\ncorral_redis_connects_total ");
    assert_non_null(connects);
    assert_in_range(strtoull(connects + 29, NULL, 10), 1, 2); /* never more than the pool */
    assert_non_null(strstr(text, "\ncorral_redis_errors_total 0\n"));
    corral_free(c, text);
    corral_close(c);
}

/* ---- Allocation failures ---- */

static void test_redis_open_and_reads_fail_cleanly_at_every_allocation(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    redis_server_ok(&srv, "MSET a 1 b 22 c 333");
    long k = 1;
    for (;; k++) {
        rfx *f = rfx_init(&srv);
        arm(&f->ca, k);
        int rc = corral__redis_open(&f->s, &f->ro, 1 << 20, &f->env, NULL);
        if (rc == CORRAL_OK) {
            rfx_close(f);
            break;
        }
        assert_int_equal(rc, CORRAL_ENOMEM);
        assert_null(f->s);
        rfx_close(f); /* no leak */
    }
    assert_true(k > 2);
    for (k = 1;; k++) {
        rfx *f = rfx_open(&srv, 0);
        corral__skey ks[3] = { K("a"), K("b"), K("c") };
        corral_value *out[3];
        arm(&f->ca, k);
        int rc = f->s->ops->get_many(f->s, ks, 3, out);
        arm(&f->ca, 0);
        if (rc == CORRAL_OK) {
            assert_string_equal(corral_value_data(out[2]), "333");
            for (int i = 0; i < 3; i++)
                corral_value_unref(out[i]);
            rfx_close(f);
            break;
        }
        assert_int_equal(rc, CORRAL_ENOMEM);
        for (int i = 0; i < 3; i++)
            assert_null(out[i]);
        rfx_close(f);
    }
    assert_true(k > 3);
}

/* ---- Pure parts ---- */

static void test_redis_backoff_grows_exponentially_and_is_capped(void **state) {
    (void)state;
    assert_int_equal(corral__redis_backoff_ms(1, 12345), 0); /* the first failure retries */
    uint64_t prev_max = 0;
    for (unsigned fails = 2; fails < 80; fails++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (uint64_t r = 0; r < 2000; r += 7) {
            uint64_t d = corral__redis_backoff_ms(fails, r * 0x9e3779b97f4a7c15u);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        uint64_t want = fails - 2 < 20 ? (uint64_t)CORRAL__REDIS_BACKOFF_MIN_MS << (fails - 2)
                                       : CORRAL__REDIS_BACKOFF_MAX_MS;
        if (want > CORRAL__REDIS_BACKOFF_MAX_MS) want = CORRAL__REDIS_BACKOFF_MAX_MS;
        assert_true(hi <= want && lo >= want / 2);
        assert_true(hi >= prev_max / 2);
        prev_max = hi;
    }
}

static void test_redis_host_lists_parse_or_name_the_bad_host(void **state) {
    (void)state;
    corral__redis_addr a[CORRAL__REDIS_MAX_HOSTS];
    size_t n = 0;
    assert_int_equal(corral__redis_parse_hosts("h1,h2:7000,[::1]:6380,10.0.0.9", a, 16, &n, NULL),
                     CORRAL_OK);
    assert_int_equal(n, 4);
    assert_string_equal(a[0].name, "h1");
    assert_int_equal(a[0].port, 6379);
    assert_int_equal(a[1].port, 7000);
    assert_string_equal(a[2].name, "::1");
    assert_int_equal(a[2].port, 6380);
    static const char *const bad[] = { "",
                                       ",",
                                       "h,",
                                       "h:0",
                                       "h:65536",
                                       "h:x",
                                       "h:",
                                       "::1",
                                       "[::1",
                                       "[::1]x",
                                       "h/x",
                                       "h h",
                                       "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        corral_error err = { 0 };
        if (corral__redis_parse_hosts(bad[i], a, 16, &n, &err) != CORRAL_EBADURL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(err.code, CORRAL_EBADURL);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        STORE_SUITE_TESTS(&redis_target),
        cmocka_unit_test(test_redis_url_opens_a_handle_on_the_configured_db),
        cmocka_unit_test(test_redis_opens_while_the_server_is_down_and_misses),
        cmocka_unit_test(test_redis_open_refuses_bad_options),
        cmocka_unit_test(test_redis_binary_keys_take_what_django_takes_but_no_lease_key),
        cmocka_unit_test(test_redis_values_are_plain_bytes_other_clients_share),
        cmocka_unit_test(test_redis_ttls_are_set_as_px_and_touch_persists),
        cmocka_unit_test(test_redis_get_splits_an_envelope_header_from_the_payload),
        cmocka_unit_test(test_redis_scripts_load_again_after_script_flush),
        cmocka_unit_test(test_redis_lease_has_its_own_key_beside_the_value),
        cmocka_unit_test(test_redis_clear_flushes_only_the_configured_db),
        cmocka_unit_test(test_redis_clear_prefix_removes_only_the_handles_keys),
        cmocka_unit_test(test_redis_clear_prefix_on_the_memory_store_clears_it),
        cmocka_unit_test(test_redis_writes_go_to_the_first_host_and_reads_to_the_others),
        cmocka_unit_test(test_redis_unix_socket_url),
        cmocka_unit_test(test_redis_auth_with_password_from_userinfo_or_parameter),
        cmocka_unit_test(test_redis_expired_key_is_never_returned_on_the_servers_clock),
        cmocka_unit_test(test_redis_metrics_text_carries_the_store_counters),
        cmocka_unit_test(test_redis_threads_share_a_small_pool),
        cmocka_unit_test(test_redis_open_and_reads_fail_cleanly_at_every_allocation),
        cmocka_unit_test(test_redis_backoff_grows_exponentially_and_is_capped),
        cmocka_unit_test(test_redis_host_lists_parse_or_name_the_bad_host),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
