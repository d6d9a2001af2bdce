/*
 * test_redis_cluster.c - the Redis store on a real Redis Cluster: 6 redis-server nodes (3
 * primaries, 3 replicas) on free ports of 127.0.0.1, started once for the whole file by
 * scripts/redis-cluster (the group setup) and stopped by the group teardown; the nodes die with
 * this process if it crashes (OWNER_PID). When redis-server has no cluster support (the script
 * exits 2) every test is skipped with that message; any other failure to start fails.
 *
 * Order matters: the store suite (store_suite.h) and the routing tests first, then the ones that
 * change the cluster: slots moved by hand (ASK, then MOVED), slots resharded under load, a node
 * stopped (SIGSTOP), a primary killed under load, after which its replica serves, and last the
 * primary a lease subscriber is on killed (one that still has a replica).
 *
 * Oracles are the servers' own: CLUSTER KEYSLOT for the slot math, INFO commandstats per node
 * for what each node was sent (GET calls, ASKING, CLUSTER SLOTS), the store's round-trip
 * counter for pipelining; no timing assertion but "returned within its deadline" bounds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "counting_alloc.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corral/corral.h"
#include "key.h"
#include "value.h"
#include "store/redis.h"
#include "store/redis_slots.h"
#include "calls.h"
#include "redis_server.h"
#include "store_suite.h"

#define SCRIPT    CORRAL_SOURCE_DIR "/scripts/redis-cluster"
#define MAX_NODES 8

/* ---- The cluster ---- */

static struct {
    bool up;
    char skip_why[256];
    char dir[64];
    char seeds[256];
    int ports[MAX_NODES]; /* every node */
    size_t n_ports;
} cl;

/* Runs the script with `args`; its first line of output into `out` (may be NULL). Returns the
 * exit status. */
static int script(char *out, size_t cap, const char *fmt, ...) {
    char args[256], cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "OWNER_PID=%d %s %s", (int)getpid(), SCRIPT, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512] = "";
    if (!fgets(line, sizeof line, p)) line[0] = '\0';
    char rest[512];
    while (fgets(rest, sizeof rest, p)) {
    }
    int st = pclose(p);
    line[strcspn(line, "\n")] = '\0';
    if (out) snprintf(out, cap, "%s", line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int group_setup(void **state) {
    (void)state;
    snprintf(cl.dir, sizeof cl.dir, "/tmp/corral-cluster-%d", (int)getpid());
    int rc = script(cl.seeds, sizeof cl.seeds, "start %s 6 1", cl.dir);
    if (rc == 2) {
        snprintf(cl.skip_why, sizeof cl.skip_why,
                 "redis-server has no cluster support: cluster tests skipped");
        fprintf(stderr, "%s\n", cl.skip_why);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "scripts/redis-cluster start failed (%d)\n", rc);
        return -1;
    }
    for (const char *p = cl.seeds; p && *p && cl.n_ports < MAX_NODES;) {
        const char *colon = strchr(p, ':');
        if (!colon) break;
        cl.ports[cl.n_ports++] = atoi(colon + 1);
        p = strchr(colon, ',');
        if (p) p++;
    }
    cl.up = cl.n_ports == 6;
    return cl.up ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    if (cl.dir[0]) script(NULL, 0, "stop %s", cl.dir);
    return 0;
}

static void need_cluster(void) {
    if (!cl.up) {
        print_message("%s\n", cl.skip_why);
        skip();
    }
}

/* One command to the node on `port` on a new connection with deadlines of `secs`; NULL when
 * unanswered. */
static redisReply *node_cmdv(int port, long secs, const char *fmt, va_list ap) {
    struct timeval tv = { secs, 0 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!ctx || ctx->err) {
        if (ctx) redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    redisFree(ctx);
    return r;
}

/* node_cmdv with 2 s deadlines. */
static redisReply *node_cmd(int port, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = node_cmdv(port, 2, fmt, ap);
    va_end(ap);
    return r;
}

/* node_cmdv with 20 s deadlines: a command whose time grows with the machine's load. */
static redisReply *node_cmd_slow(int port, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = node_cmdv(port, 20, fmt, ap);
    va_end(ap);
    return r;
}

static long long node_info(int port, const char *section, const char *field) {
    redisReply *r = node_cmd(port, "INFO %s", section);
    if (!r || r->type != REDIS_REPLY_STRING) fail_msg("node %d: INFO not answered", port);
    const char *at = strstr(r->str, field);
    long long v = at ? strtoll(at + strlen(field), NULL, 10) : 0; /* absent: never called */
    freeReplyObject(r);
    return v;
}

static bool is_primary(int port) {
    redisReply *r = node_cmd(port, "ROLE");
    bool p = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
    freeReplyObject(r);
    return p;
}

/* The live primaries' ports; their count. */
static size_t primaries(int *out) {
    size_t n = 0;
    for (size_t i = 0; i < cl.n_ports; i++)
        if (is_primary(cl.ports[i])) out[n++] = cl.ports[i];
    return n;
}

/* The slot map as a live primary tells it (CLUSTER SLOTS); free() it. */
static corral__redis_slot_map *slot_map(void) {
    int ps[MAX_NODES];
    size_t n = primaries(ps);
    assert_true(n > 0);
    redisReply *r = node_cmd(ps[0], "CLUSTER SLOTS");
    assert_non_null(r);
    corral__redis_slot_map *m = malloc(sizeof *m);
    assert_non_null(m);
    assert_int_equal(corral__redis_slots_parse(r, "127.0.0.1", m, NULL), CORRAL_OK);
    freeReplyObject(r);
    return m;
}

/* The port of the primary that serves `slot` in `m`, or -1. */
static int owner_in(const corral__redis_slot_map *m, uint16_t slot) {
    return m->shard_of[slot] == CORRAL__REDIS_NO_SHARD ? -1
                                                       : m->shards[m->shard_of[slot]].primary.port;
}

/* The port of the primary that serves `slot` now. */
static int owner_of(uint16_t slot) {
    corral__redis_slot_map *m = slot_map();
    int port = owner_in(m, slot);
    free(m);
    return port;
}

static pid_t pid_of(int port);

static void flush_all(void) {
    int ps[MAX_NODES];
    size_t n = primaries(ps);
    for (size_t i = 0; i < n; i++) {
        redisReply *r = node_cmd(ps[i], "FLUSHALL");
        assert_non_null(r);
        freeReplyObject(r);
    }
}

/* ---- A store on the cluster ---- */

typedef struct cfx {
    counting ca;
    corral__allocator alloc;
    corral__store_env env;
    corral__store *s;
} cfx;

static cfx *cfx_open_pool(int64_t command_timeout_ms, bool from_replicas, size_t max_value,
                          unsigned pool) {
    cfx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->alloc = (corral__allocator){ count_alloc, count_realloc, count_free, &f->ca };
    f->env = (corral__store_env){ .alloc = &f->alloc, .now_ns = corral__realtime_ns };
    corral_options o;
    corral_options_init(&o);
    o.redis.hosts = cl.seeds;
    o.redis.cluster = true;
    o.redis.read_from_replicas = from_replicas;
    o.redis.connect_timeout_ms = 2000;
    o.redis.command_timeout_ms = command_timeout_ms;
    if (pool) o.redis.pool = pool;
    corral_error err = { 0 };
    int rc = corral__redis_open(&f->s, &o.redis, max_value ? max_value : 16 << 20, &f->env, &err);
    if (rc != CORRAL_OK) fail_msg("cluster open: %d %s", rc, err.msg);
    return f;
}

static cfx *cfx_open_opts(int64_t command_timeout_ms, bool from_replicas, size_t max_value) {
    return cfx_open_pool(command_timeout_ms, from_replicas, max_value, 0);
}

static cfx *cfx_open(void) {
    return cfx_open_opts(5000, false, 0);
}

static void cfx_close(cfx *f) {
    f->s->ops->close(f->s);
    assert_int_equal(outstanding(&f->ca), 0);
    free(f);
}

static long long store_metric(corral__store *s, const char *name) {
    static char text[8192];
    assert_int_equal(s->ops->metrics_text(s, text, sizeof text), CORRAL_OK);
    char with_nl[8200];
    snprintf(with_nl, sizeof with_nl, "\n%s", text);
    return redis_fx_metric_in(with_nl, name);
}

static corral__skey K(const char *k) {
    size_t n = strlen(k);
    return (corral__skey){ .data = k, .len = n, .hash = corral__hash_bytes(k, n), .cls = 1 };
}

static int set_str(corral__store *s, const char *k, const char *v) {
    corral__skey sk = K(k);
    return s->ops->set(s, &sk, v, strlen(v), 60000, CORRAL__SET_ALWAYS, 0);
}

/* The value of `k` as a string ("" for a miss) in `buf`; the get's code. */
static int get_str(corral__store *s, const char *k, char *buf, size_t cap) {
    corral__skey sk = K(k);
    corral_value *v = NULL;
    int rc = s->ops->get(s, &sk, &v);
    buf[0] = '\0';
    if (rc == CORRAL_OK) {
        snprintf(buf, cap, "%.*s", (int)v->len, (const char *)corral__value_data(v));
        corral_value_unref(v);
    }
    return rc;
}

/* ---- The store suite on the cluster ---- */

static const char SHIFT_SCRIPT[] =
    "local ms = tonumber(ARGV[1])\n"
    "for _, k in ipairs(redis.call('KEYS', '*')) do\n"
    "  local t = redis.call('PTTL', k)\n"
    "  if t > 0 then\n"
    "    if t - ms <= 0 then redis.call('DEL', k) else redis.call('PEXPIRE', k, t - ms) end\n"
    "  end\n"
    "end\n"
    "return 0\n";

/* Every primary shifts its own keys' expiries (KEYS sees the node's keys only). */
static void cluster_advance(suite_fx *sf, int64_t ticks) {
    int ps[MAX_NODES];
    size_t n = primaries(ps);
    for (size_t i = 0; i < n; i++) {
        redisReply *r =
            node_cmd(ps[i], "EVAL %s 0 %lld", SHIFT_SCRIPT, (long long)(ticks * sf->tick_ms));
        assert_non_null(r);
        if (r->type != REDIS_REPLY_INTEGER) fail_msg("shift on %d: %s", ps[i], r->str);
        freeReplyObject(r);
    }
}

static void cluster_suite_close(suite_fx *sf) {
    cfx_close(sf->impl);
    free(sf);
}

static suite_fx *cluster_suite_open(suite_target *t, size_t max_value_bytes) {
    (void)t;
    need_cluster();
    flush_all();
    cfx *f = cfx_open_opts(5000, false, max_value_bytes);
    suite_fx *sf = calloc(1, sizeof *sf);
    assert_non_null(sf);
    *sf = (suite_fx){ .s = f->s,
                      .tick_ms = 1000,
                      .advance = cluster_advance,
                      .close = cluster_suite_close,
                      .impl = f };
    return sf;
}

static suite_target cluster_target = { .name = "redis cluster", .open = cluster_suite_open };

/* ---- Routing ---- */

static void test_cluster_slots_agree_with_cluster_keyslot(void **state) {
    (void)state;
    need_cluster();
    static const char *const keys[] = { "123456789",    "foo",        "site:1:home",
                                        "{user1000}.a", "foo{}{bar}", "foo{{bar}}zap",
                                        "a{b}c{d}",     "x\x1flease", "djzen:1:page:v3" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        redisReply *r = node_cmd(cl.ports[0], "CLUSTER KEYSLOT %b", keys[i], strlen(keys[i]));
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(corral__redis_key_slot(keys[i], strlen(keys[i])), r->integer);
        freeReplyObject(r);
    }
}

/* Keys spread over every primary, written and read back through the store; each lives on the
 * node that owns its slot. */
static void test_cluster_keys_live_on_the_owner_of_their_slot(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open();
    char k[32], v[32], got[64];
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof k, "spread:%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(set_str(f->s, k, v), CORRAL_OK);
    }
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof k, "spread:%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(get_str(f->s, k, got, sizeof got), CORRAL_OK);
        assert_string_equal(got, v);
        redisReply *r = node_cmd(owner_of(corral__redis_key_slot(k, strlen(k))), "GET %s", k);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING); /* on its owner, no redirection */
        assert_string_equal(r->str, v);
        freeReplyObject(r);
    }
    cfx_close(f);
}

/* get_many of 100 keys over 3 primaries: one pipelined round trip per primary, each primary
 * sent one GET per key it owns. */
static void test_cluster_get_many_is_one_round_trip_per_primary(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open();
    enum { N = 100 };
    static char names[N][24];
    corral__skey ks[N];
    corral_buf vals[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "many:%d", i);
        ks[i] = K(names[i]);
        vals[i] = (corral_buf){ .data = names[i], .len = strlen(names[i]) };
    }
    assert_int_equal(f->s->ops->set_many(f->s, ks, vals, N, 60000, 0), CORRAL_OK);
    int ps[MAX_NODES];
    size_t np = primaries(ps);
    assert_int_equal(np, 3);
    long long before[MAX_NODES], owned[MAX_NODES] = { 0 };
    for (size_t p = 0; p < np; p++)
        before[p] = node_info(ps[p], "commandstats", "cmdstat_get:calls=");
    for (int i = 0; i < N; i++) {
        int o = owner_of(corral__redis_key_slot(names[i], strlen(names[i])));
        for (size_t p = 0; p < np; p++)
            owned[p] += ps[p] == o;
    }
    long long rt0 = store_metric(f->s, "round_trips_total");
    corral_value *out[N];
    assert_int_equal(f->s->ops->get_many(f->s, ks, N, out), CORRAL_OK);
    long long rt1 = store_metric(f->s, "round_trips_total");
    for (int i = 0; i < N; i++) {
        assert_non_null(out[i]);
        assert_memory_equal(corral__value_data(out[i]), names[i], strlen(names[i]));
        corral_value_unref(out[i]);
    }
    assert_int_equal(rt1 - rt0, (long long)np); /* 3 pipelines, not 100 commands */
    for (size_t p = 0; p < np; p++) {
        assert_true(owned[p] > 0);
        assert_int_equal(node_info(ps[p], "commandstats", "cmdstat_get:calls=") - before[p],
                         owned[p]);
    }
    size_t deleted = 0;
    assert_int_equal(f->s->ops->del_many(f->s, ks, N, &deleted), CORRAL_OK);
    assert_int_equal(deleted, N);
    cfx_close(f);
}

/* clear_prefix removes the prefix's keys on every primary, and nothing else. */
static void test_cluster_clear_prefix_scans_every_primary(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open();
    char k[32], got[32];
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "gone:%d", i);
        assert_int_equal(set_str(f->s, k, "x"), CORRAL_OK);
        snprintf(k, sizeof k, "kept:%d", i);
        assert_int_equal(set_str(f->s, k, "y"), CORRAL_OK);
    }
    assert_int_equal(f->s->ops->clear_prefix(f->s, "gone", 4), CORRAL_OK);
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "gone:%d", i);
        assert_int_equal(get_str(f->s, k, got, sizeof got), CORRAL_MISS);
        snprintf(k, sizeof k, "kept:%d", i);
        assert_int_equal(get_str(f->s, k, got, sizeof got), CORRAL_OK);
    }
    assert_int_equal(f->s->ops->clear(f->s), CORRAL_OK); /* FLUSHDB on every primary */
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "kept:%d", i);
        assert_int_equal(get_str(f->s, k, got, sizeof got), CORRAL_MISS);
    }
    cfx_close(f);
}

/* Reads from replicas: with READONLY the replicas answer GETs for their primaries' slots. */
static void test_cluster_reads_from_replicas_when_asked(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open_opts(5000, true, 0);
    assert_int_equal(set_str(f->s, "rep:1", "one"), CORRAL_OK);
    int replica = -1;
    for (size_t i = 0; i < cl.n_ports; i++)
        if (!is_primary(cl.ports[i])) {
            /* the replica of rep:1's primary: its master_port is the owner */
            long long mp = node_info(cl.ports[i], "replication", "master_port:");
            if (mp == owner_of(corral__redis_key_slot("rep:1", 5))) replica = cl.ports[i];
        }
    assert_true(replica > 0);
    /* Replication is asynchronous: wait for the replica to hold the key before reading. */
    uint64_t end = redis_fx_now_ns() + 10000000000ull;
    for (;;) {
        redisReply *r = node_cmd(replica, "READONLY");
        freeReplyObject(r);
        long long offset = node_info(replica, "replication", "slave_repl_offset:");
        long long master = node_info(owner_of(corral__redis_key_slot("rep:1", 5)), "replication",
                                     "master_repl_offset:");
        if (offset >= master) break;
        if (redis_fx_now_ns() > end) fail_msg("replica did not catch up");
    }
    long long before = node_info(replica, "commandstats", "cmdstat_get:calls=");
    char got[16];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(get_str(f->s, "rep:1", got, sizeof got), CORRAL_OK);
        assert_string_equal(got, "one");
    }
    assert_int_equal(node_info(replica, "commandstats", "cmdstat_get:calls=") - before, 4);
    cfx_close(f);
    /* The replica stopped: once its breaker is open (a call or two timed out on it), reads go
     * to the primary. Stopped for less than the node timeout, so the cluster does not mark it. */
    f = cfx_open_opts(250, true, 0);
    assert_int_equal(get_str(f->s, "rep:1", got, sizeof got), CORRAL_OK); /* connections made */
    pid_t pid = pid_of(replica);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int rc = CORRAL_MISS;
    for (int i = 0; i < 5 && rc != CORRAL_OK; i++)
        rc = get_str(f->s, "rep:1", got, sizeof got);
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(rc, CORRAL_OK);
    assert_string_equal(got, "one");
    cfx_close(f);
}

/* Waits until every live replica has everything its primary had when called (replication is
 * asynchronous). */
static void wait_replicas(void) {
    uint64_t end = redis_fx_now_ns() + 10000000000ull;
    for (size_t i = 0; i < cl.n_ports; i++) {
        if (is_primary(cl.ports[i])) continue;
        long long mp = node_info(cl.ports[i], "replication", "master_port:");
        long long want = node_info((int)mp, "replication", "master_repl_offset:");
        while (node_info(cl.ports[i], "replication", "slave_repl_offset:") < want)
            if (redis_fx_now_ns() > end) fail_msg("replica %d did not catch up", cl.ports[i]);
    }
}

/* GET calls served so far by the primaries (`primary` true) or by the replicas. */
static long long gets_on(bool primary) {
    long long n = 0;
    for (size_t i = 0; i < cl.n_ports; i++)
        if (is_primary(cl.ports[i]) == primary)
            n += node_info(cl.ports[i], "commandstats", "cmdstat_get:calls=");
    return n;
}

/* With reads from replicas, a tagged read takes its value from a replica but its tags' versions
 * from their primaries: a replica lagging behind a bust would otherwise serve a busted value
 * (docs/redis.md, "Tags on a cluster"). */
static void test_cluster_tag_versions_read_from_primaries(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    corral *c = NULL;
    assert_int_equal(redis_fx_open_url(&c,
                                       "redis+cluster://%s/?key_prefix=site&command_timeout=5s"
                                       "&read_from_replicas=1",
                                       cl.seeds),
                     CORRAL_OK);
    const char *tags[] = { "product:1", "shelf:9", "front" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = 3;
    assert_int_equal(corral_set(c, "page", 4, "html", 4, 60000, &call), CORRAL_OK);
    wait_replicas();
    char buf[16];
    size_t len = 0;
    long long rep0 = gets_on(false), pri0 = gets_on(true);
    assert_int_equal(corral_get_into(c, "page", 4, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(gets_on(false) - rep0, 1); /* the value */
    assert_int_equal(gets_on(true) - pri0, 3);  /* the three versions */
    assert_int_equal(corral_tag_bust(c, "front"), CORRAL_OK);
    assert_int_equal(corral_get_into(c, "page", 4, NULL, buf, sizeof buf, &len), CORRAL_MISS);
    corral_close(c);
}

/* ---- Redirections: a slot moved by hand ---- */

static void node_id(int port, char *out, size_t cap) {
    redisReply *r = node_cmd(port, "CLUSTER MYID");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
}

static void ok_cmd(int port, const char *what, redisReply *r) {
    if (!r || r->type == REDIS_REPLY_ERROR)
        fail_msg("%s on %d: %s", what, port, r ? r->str : "no answer");
    freeReplyObject(r);
}

/* The slot of "{mv}..." keys is migrating from its owner to another primary: a key already
 * moved is found through ASK (ASKING then the command on the importing node); once the slot
 * is given to the new node, the old one answers MOVED and the store refreshes its map. */
static void test_cluster_follows_ask_then_moved(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open();
    uint16_t slot = corral__redis_key_slot("{mv}", 4);
    assert_int_equal(set_str(f->s, "{mv}old", "before"), CORRAL_OK);
    assert_int_equal(set_str(f->s, "{mv}moved", "early"), CORRAL_OK);
    int from = owner_of(slot), to = -1, ps[MAX_NODES];
    size_t np = primaries(ps);
    for (size_t i = 0; i < np; i++)
        if (ps[i] != from) to = ps[i];
    char from_id[64], to_id[64];
    node_id(from, from_id, sizeof from_id);
    node_id(to, to_id, sizeof to_id);
    ok_cmd(to, "IMPORTING", node_cmd(to, "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id));
    ok_cmd(from, "MIGRATING", node_cmd(from, "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id));
    ok_cmd(from, "MIGRATE",
           node_cmd(from, "MIGRATE 127.0.0.1 %d %b 0 5000 KEYS {mv}moved", to, "", (size_t)0));
    long long asking0 = node_info(to, "commandstats", "cmdstat_asking:calls=");
    char got[32];
    assert_int_equal(get_str(f->s, "{mv}moved", got, sizeof got), CORRAL_OK); /* ASK */
    assert_string_equal(got, "early");
    assert_int_equal(get_str(f->s, "{mv}old", got, sizeof got), CORRAL_OK); /* still on `from` */
    assert_string_equal(got, "before");
    assert_int_equal(set_str(f->s, "{mv}new", "during"), CORRAL_OK); /* absent on `from`: ASK */
    assert_true(node_info(to, "commandstats", "cmdstat_asking:calls=") - asking0 >= 2);
    ok_cmd(from, "MIGRATE",
           node_cmd(from, "MIGRATE 127.0.0.1 %d %b 0 5000 KEYS {mv}old", to, "", (size_t)0));
    for (size_t i = 0; i < np; i++)
        ok_cmd(ps[i], "NODE", node_cmd(ps[i], "CLUSTER SETSLOT %d NODE %s", slot, to_id));
    long long slots0 = node_info(to, "commandstats", "cmdstat_cluster|slots:calls=") +
                       node_info(from, "commandstats", "cmdstat_cluster|slots:calls=");
    assert_int_equal(get_str(f->s, "{mv}old", got, sizeof got), CORRAL_OK); /* MOVED */
    assert_string_equal(got, "before");
    assert_int_equal(get_str(f->s, "{mv}new", got, sizeof got), CORRAL_OK);
    assert_string_equal(got, "during");
    long long slots1 = 0;
    for (size_t i = 0; i < np; i++)
        slots1 += node_info(ps[i], "commandstats", "cmdstat_cluster|slots:calls=");
    assert_true(slots1 > slots0); /* the map was refreshed */
    /* Settled: the next read goes straight to the new owner. */
    long long gets0 = node_info(from, "commandstats", "cmdstat_get:calls=");
    assert_int_equal(get_str(f->s, "{mv}old", got, sizeof got), CORRAL_OK);
    assert_int_equal(node_info(from, "commandstats", "cmdstat_get:calls=") - gets0, 0);
    cfx_close(f);
}

/* With one connection per node, a MOVED read refreshes the map without waiting for the
 * connection the call itself held (the call leaves the node before the refresh): no "no free
 * connection" failure is recorded. The slot moved is one of the node the refresh asks first
 * (the owner of slot 0: CLUSTER SLOTS lists ranges in slot order). */
static void test_cluster_moved_with_a_pool_of_one(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open_pool(1000, false, 0, 1);
    int from = owner_of(0), to = -1, ps[MAX_NODES];
    size_t np = primaries(ps);
    for (size_t i = 0; i < np; i++)
        if (ps[i] != from) to = ps[i];
    char k[16] = "";
    for (int i = 0; i < 1000 && !k[0]; i++) {
        snprintf(k, sizeof k, "one:%d", i);
        if (owner_of(corral__redis_key_slot(k, strlen(k))) != from) k[0] = '\0';
    }
    assert_true(k[0]);
    uint16_t slot = corral__redis_key_slot(k, strlen(k));
    assert_int_equal(set_str(f->s, k, "v"), CORRAL_OK);
    char from_id[64], to_id[64], got[16];
    node_id(from, from_id, sizeof from_id);
    node_id(to, to_id, sizeof to_id);
    ok_cmd(to, "IMPORTING", node_cmd(to, "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id));
    ok_cmd(from, "MIGRATING", node_cmd(from, "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id));
    ok_cmd(from, "MIGRATE", node_cmd(from, "MIGRATE 127.0.0.1 %d %s 0 5000", to, k));
    for (size_t i = 0; i < np; i++)
        ok_cmd(ps[i], "NODE", node_cmd(ps[i], "CLUSTER SETSLOT %d NODE %s", slot, to_id));
    long long moved0 = store_metric(f->s, "cluster_moved_total");
    long long waits0 = store_metric(f->s, "pool_timeouts_total");
    assert_int_equal(get_str(f->s, k, got, sizeof got), CORRAL_OK);
    assert_string_equal(got, "v");
    assert_int_equal(store_metric(f->s, "cluster_moved_total") - moved0, 1);
    assert_int_equal(store_metric(f->s, "pool_timeouts_total") - waits0, 0);
    cfx_close(f);
}

/* A node that names no endpoint (cluster-preferred-endpoint-type unknown-endpoint) answers
 * "MOVED <slot> :<port>": the host is the node that answered, which the store asked. */
static void test_cluster_moved_with_an_empty_host(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open();
    int ps[MAX_NODES];
    size_t np = primaries(ps);
    for (size_t i = 0; i < np; i++)
        ok_cmd(ps[i], "CONFIG SET",
               node_cmd(ps[i], "CONFIG SET cluster-preferred-endpoint-type unknown-endpoint"));
    int set_rc = set_str(f->s, "unnamed", "u"); /* the map read with nil hosts */
    uint16_t slot = corral__redis_key_slot("unnamed", 7);
    int from = owner_of(slot), to = -1;
    for (size_t i = 0; i < np; i++)
        if (ps[i] != from) to = ps[i];
    char from_id[64], to_id[64], got[16];
    node_id(from, from_id, sizeof from_id);
    node_id(to, to_id, sizeof to_id);
    ok_cmd(to, "IMPORTING", node_cmd(to, "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id));
    ok_cmd(from, "MIGRATING", node_cmd(from, "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id));
    ok_cmd(from, "MIGRATE", node_cmd(from, "MIGRATE 127.0.0.1 %d unnamed 0 5000", to));
    for (size_t i = 0; i < np; i++)
        ok_cmd(ps[i], "NODE", node_cmd(ps[i], "CLUSTER SETSLOT %d NODE %s", slot, to_id));
    redisReply *r = node_cmd(from, "GET unnamed");
    char said[64], want[64];
    snprintf(said, sizeof said, "%s", r && r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
    long long moved0 = store_metric(f->s, "cluster_moved_total");
    int rc = get_str(f->s, "unnamed", got, sizeof got);
    for (size_t i = 0; i < np; i++) /* back before any assertion: later tests need the hosts */
        ok_cmd(ps[i], "CONFIG SET",
               node_cmd(ps[i], "CONFIG SET cluster-preferred-endpoint-type ip"));
    assert_int_equal(set_rc, CORRAL_OK);
    snprintf(want, sizeof want, "MOVED %d :%d", slot, to);
    assert_string_equal(said, want); /* what the store was answered */
    assert_int_equal(rc, CORRAL_OK);
    assert_string_equal(got, "u");
    assert_int_equal(store_metric(f->s, "cluster_moved_total") - moved0, 1);
    cfx_close(f);
}

/* ---- Through a handle: the URL, tags, namespaces, get_or_set ---- */

static corral *open_handle(const char *query) {
    corral *c = NULL;
    int rc = redis_fx_open_url(&c, "redis+cluster://%s/?key_prefix=site&command_timeout=5s%s",
                               cl.seeds, query);
    assert_int_equal(rc, CORRAL_OK);
    return c;
}

/* A near cache's read (GET and PTTL pipelined on the primary) while its key's slot migrates: a
 * key already moved is found through ASK, and once the slot is given away, through MOVED with
 * the map refreshed; never a miss, never an error counted. */
static void test_cluster_near_cache_reads_follow_ask_and_moved(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    corral *c = open_handle("&near_cache=1MB");
    redis_fx_wait_live(c);
    assert_int_equal(corral_set(c, "{nm}a", 5, "va", 2, 60000, NULL), CORRAL_OK);
    assert_int_equal(corral_set(c, "{nm}b", 5, "vb", 2, 60000, NULL), CORRAL_OK);
    uint16_t slot = corral__redis_key_slot("nm", 2); /* of "site:1:{nm}..." */
    int from = owner_of(slot), to = -1, ps[MAX_NODES];
    size_t np = primaries(ps);
    for (size_t i = 0; i < np; i++)
        if (ps[i] != from) to = ps[i];
    char from_id[64], to_id[64];
    node_id(from, from_id, sizeof from_id);
    node_id(to, to_id, sizeof to_id);
    ok_cmd(to, "IMPORTING", node_cmd(to, "CLUSTER SETSLOT %d IMPORTING %s", slot, from_id));
    ok_cmd(from, "MIGRATING", node_cmd(from, "CLUSTER SETSLOT %d MIGRATING %s", slot, to_id));
    ok_cmd(from, "MIGRATE",
           node_cmd(from, "MIGRATE 127.0.0.1 %d %b 0 5000 KEYS site:1:{nm}a", to, "", (size_t)0));
    unsigned long long errors0 = redis_fx_counter(c, "errors_total");
    unsigned long long ask0 = redis_fx_counter(c, "cluster_ask_total");
    char buf[16];
    size_t len = 0;
    for (int i = 0; i < 20; i++) { /* "{nm}a" is on `to` now: `from` answers ASK */
        assert_int_equal(corral_get_into(c, "{nm}a", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
        assert_memory_equal(buf, "va", 2);
        assert_int_equal(corral_get_into(c, "{nm}b", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
        assert_memory_equal(buf, "vb", 2);
    }
    assert_true(redis_fx_counter(c, "cluster_ask_total") > ask0);
    ok_cmd(from, "MIGRATE",
           node_cmd(from, "MIGRATE 127.0.0.1 %d %b 0 5000 KEYS site:1:{nm}b", to, "", (size_t)0));
    for (size_t i = 0; i < np; i++)
        ok_cmd(ps[i], "NODE", node_cmd(ps[i], "CLUSTER SETSLOT %d NODE %s", slot, to_id));
    unsigned long long moved0 = redis_fx_counter(c, "cluster_moved_total");
    unsigned long long refreshes0 = redis_fx_counter(c, "cluster_refreshes_total");
    for (int i = 0; i < 20; i++) { /* `from` answers MOVED, until the map is refreshed */
        assert_int_equal(corral_get_into(c, "{nm}a", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
        assert_memory_equal(buf, "va", 2);
        assert_int_equal(corral_get_into(c, "{nm}b", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
        assert_memory_equal(buf, "vb", 2);
    }
    assert_true(redis_fx_counter(c, "cluster_moved_total") > moved0);
    assert_true(redis_fx_counter(c, "cluster_refreshes_total") > refreshes0);
    assert_int_equal(redis_fx_counter(c, "errors_total"), errors0);
    corral_close(c);
}

static void test_cluster_handle_tags_namespaces_and_get_or_set(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    corral *c = open_handle("");
    const char *tags[] = { "product:1", "shelf:9", "front" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = 3;
    char buf[64];
    size_t len = 0;
    /* Keys and tag versions on several slots: the value is read, then its tags where they live. */
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "page%d", i);
        assert_int_equal(corral_set(c, k, strlen(k), "html", 4, 60000, &call), CORRAL_OK);
        assert_int_equal(corral_get_into(c, k, strlen(k), NULL, buf, sizeof buf, &len), CORRAL_OK);
        assert_int_equal(len, 4);
    }
    /* A tagged read: the value's GET, then one pipeline per node holding a tag version, all sent
     * before any is read (two round trips of latency). */
    int tag_nodes[3], distinct = 0;
    for (int i = 0; i < 3; i++) {
        char tk[64];
        int n = snprintf(tk, sizeof tk, "site:tag:%s", tags[i]);
        tag_nodes[i] = owner_of(corral__redis_key_slot(tk, (size_t)n));
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen = seen || tag_nodes[j] == tag_nodes[i];
        distinct += !seen;
    }
    unsigned long long rt0 = redis_fx_counter(c, "round_trips_total");
    assert_int_equal(corral_get_into(c, "page0", 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(redis_fx_counter(c, "round_trips_total") - rt0, 1 + (unsigned)distinct);
    assert_int_equal(corral_tag_bust(c, "shelf:9"), CORRAL_OK);
    for (int i = 0; i < 20; i++) { /* busted: never served again */
        char k[16];
        snprintf(k, sizeof k, "page%d", i);
        assert_int_equal(corral_get_into(c, k, strlen(k), NULL, buf, sizeof buf, &len),
                         CORRAL_MISS);
    }
    corral_call ns = CORRAL_CALL_INIT;
    ns.ns = "catalog";
    assert_int_equal(corral_set(c, "item", 4, "v1", 2, 60000, &ns), CORRAL_OK);
    assert_int_equal(corral_get_into(c, "item", 4, &ns, buf, sizeof buf, &len), CORRAL_OK);
    assert_int_equal(corral_ns_bump(c, "catalog"), CORRAL_OK);
    assert_int_equal(corral_get_into(c, "item", 4, &ns, buf, sizeof buf, &len), CORRAL_MISS);
    int runs = 0;
    corral_value *v = NULL;
    for (int i = 0; i < 3; i++) { /* the lease and the value on the cluster */
        assert_int_equal(corral_get_or_set(c, "made", 4, redis_fx_produce, &runs, NULL, &v),
                         CORRAL_OK);
        corral_value_unref(v);
    }
    assert_int_equal(runs, 1);
    assert_int_equal(corral_set(c, "hits", 4, "10", 2, 60000, NULL), CORRAL_OK);
    int64_t now = 0;
    assert_int_equal(corral_incr(c, "hits", 4, 5, NULL, &now), CORRAL_OK);
    assert_int_equal(now, 15);
    corral_close(c);
}

/* ---- The near cache on a cluster ---- */

/* The tracker subscribes on every primary: a change made by another client on any node drops
 * the key from the near cache; a node's tracking connection lost empties it. */
static void test_cluster_near_cache_tracks_every_primary(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    corral *c = open_handle("&near_cache=1MB");
    redis_fx_wait_live(c);
    enum { N = 30 };
    char k[16], phys[32], buf[32];
    size_t len = 0;
    int owners[MAX_NODES], n_owners = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "near%d", i);
        assert_int_equal(corral_set(c, k, strlen(k), "first", 5, 60000, NULL), CORRAL_OK);
        assert_int_equal(corral_get_into(c, k, strlen(k), NULL, buf, sizeof buf, &len), CORRAL_OK);
        snprintf(phys, sizeof phys, "site:1:%s", k);
        int o = owner_of(corral__redis_key_slot(phys, strlen(phys)));
        bool seen = false;
        for (int j = 0; j < n_owners; j++)
            seen = seen || owners[j] == o;
        if (!seen) owners[n_owners++] = o;
    }
    assert_int_equal(n_owners, 3); /* keys on every primary */
    /* Every key comes to be served near. (The tracker reports this process's own writes too,
     * which may drop a fill once: docs/near-cache.md.) */
    uint64_t end = redis_fx_now_ns() + 10000000000ull;
    for (;;) {
        unsigned long long hits0 = redis_fx_counter(c, "near_hits_total");
        for (int i = 0; i < N; i++) {
            snprintf(k, sizeof k, "near%d", i);
            assert_int_equal(corral_get_into(c, k, strlen(k), NULL, buf, sizeof buf, &len),
                             CORRAL_OK);
            assert_memory_equal(buf, "first", 5);
        }
        if (redis_fx_counter(c, "near_hits_total") - hits0 == N) break;
        if (redis_fx_now_ns() > end) fail_msg("the near cache never served every key");
    }
    /* Another client changes every key on its node: each near copy goes. */
    for (int i = 0; i < N; i++) {
        snprintf(phys, sizeof phys, "site:1:near%d", i);
        ok_cmd(
            0, "SET",
            node_cmd(owner_of(corral__redis_key_slot(phys, strlen(phys))), "SET %s second", phys));
    }
    end = redis_fx_now_ns() + 10000000000ull;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "near%d", i);
        for (;;) {
            assert_int_equal(corral_get_into(c, k, strlen(k), NULL, buf, sizeof buf, &len),
                             CORRAL_OK);
            if (len == 6 && memcmp(buf, "second", 6) == 0) break;
            assert_true(len == 5 && memcmp(buf, "first", 5) == 0); /* nothing else, ever */
            if (redis_fx_now_ns() > end) fail_msg("%s: the invalidation never came", k);
        }
    }
    /* One node's tracking connection lost: the near cache is emptied, then used again. */
    unsigned long long flushes0 = redis_fx_counter(c, "near_flushes_total");
    ok_cmd(owners[0], "CLIENT KILL", node_cmd(owners[0], "CLIENT KILL TYPE pubsub"));
    end = redis_fx_now_ns() + 10000000000ull;
    while (redis_fx_counter(c, "near_flushes_total") == flushes0)
        if (redis_fx_now_ns() > end) fail_msg("the lost connection did not flush the near cache");
    redis_fx_wait_live(c);
    snprintf(k, sizeof k, "near0");
    assert_int_equal(corral_get_into(c, k, 5, NULL, buf, sizeof buf, &len), CORRAL_OK);
    assert_memory_equal(buf, "second", 6);
    corral_close(c);
}

/* ---- Failures ---- */

/* ---- Lease wake-ups across handles (docs/redis.md, "Lease wake-ups") ---- */

/* Two handles are two processes to the store: the lease and its announcements are Redis's. */

/* Takes the lease of `key` for `holder`, trying again while the cluster fails over (20 s). */
static corral_lease *hold(corral *holder, const char *key) {
    corral_lease *held = NULL;
    uint64_t deadline = redis_fx_now_ns() + 20000000000ull;
    while (corral_lease_try(holder, key, strlen(key), NULL, 60000, NULL, NULL, &held) != CORRAL_OK)
        if (redis_fx_now_ns() > deadline) fail_msg("%s: the lease was never taken", key);
    return held;
}

/* A watch of `waiter` on `key` (another handle holds its lease) once the waiter's announcements
 * are live, not called back yet: until then a watch is called back when they start (or stop),
 * and the try is made again. `*calls_before` is the count of `k` before it was made. */
static corral_lease *live_watch(corral *waiter, const char *key, calls *k, int *calls_before) {
    corral_lease *watch = NULL;
    uint64_t deadline = redis_fx_now_ns() + 20000000000ull;
    for (;;) {
        int n = count_of(k); /* before the try: the start may call back during it */
        *calls_before = n;
        int rc = watch_try(waiter, key, strlen(key), k, &watch);
        if (rc != CORRAL_EXISTS) { /* a failover: the waiter's map is not the new one yet */
            assert_int_not_equal(rc, CORRAL_OK);
            if (redis_fx_now_ns() > deadline) fail_msg("%s: %s", key, corral_strerror(rc));
            continue;
        }
        if (corral_lease_live(watch) && count_of(k) == n) return watch;
        if (called_after(k, n) <= n) fail_msg("%s: the announcements never started", key);
        assert_int_equal(watch_end(waiter, watch), CORRAL_MISS); /* it called back */
    }
}

/* `holder` releases its lease on `key` while `waiter` watches it, live: the watch is called back
 * by the release's message. lease_wakeups_total counts the watches a message woke, not the ones
 * a change of the announcements' state woke: so the call-back was the message's. */
static void release_wakes(corral *holder, corral *waiter, const char *key) {
    corral_lease *held = hold(holder, key);
    calls *k = calls_new();
    int before;
    corral_lease *watch = live_watch(waiter, key, k, &before);
    unsigned long long woken = redis_fx_counter(waiter, "lease_wakeups_total");
    assert_int_equal(corral_lease_end(holder, held), CORRAL_OK); /* released, announced */
    if (called_after(k, before) != before + 1)
        fail_msg("%s: no call-back; heard %llu, dropped %llu, live %llu", key,
                 redis_fx_counter(waiter, "lease_releases_heard_total"),
                 redis_fx_counter(waiter, "near_lease_releases_dropped_total"),
                 redis_fx_counter(waiter, "near_live"));
    assert_int_equal(watch_end(waiter, watch), CORRAL_MISS);
    assert_int_equal(redis_fx_counter(waiter, "lease_wakeups_total") - woken, 1);
}

typedef struct lease_waiter_fx {
    corral *c;
    const char *key;
    int runs; /* the producer's: must stay 0, the value comes from the lease's holder */
    int rc;
    char got[16];
    size_t len;
} lease_waiter_fx;

static void *get_or_set_v(void *arg) {
    lease_waiter_fx *w = arg;
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.wait_timeout_ms = 20000;
    corral_value *v = NULL;
    w->rc = corral_get_or_set(w->c, w->key, strlen(w->key), redis_fx_produce, &w->runs, &o, &v);
    if (v) {
        w->len = corral_value_len(v) < sizeof w->got ? corral_value_len(v) : sizeof w->got;
        memcpy(w->got, corral_value_data(v), w->len);
    }
    corral_value_unref(v);
    return NULL;
}

/* A release on a cluster wakes the waiters of other handles (processes, to the store): a
 * corral_lease_try watch (corral-proxy's) and a corral_get_or_set, with and without a near cache
 * (whose tracker hears the release on every primary's connection before it wakes them). */
static void test_cluster_lease_release_wakes_waiters(void **state) {
    (void)state;
    need_cluster();
    const char *queries[] = { "", "&near_cache=1MB" };
    for (size_t q = 0; q < 2; q++) {
        flush_all();
        corral *holder = open_handle(""), *waiter = open_handle(queries[q]);
        release_wakes(holder, waiter, "v"); /* the waiter's announcements are live from here */
        corral_lease *held = hold(holder, "w");
        /* Static: a failed assertion leaves the test by a longjmp (calls.h) with the thread
         * still running, which must not write into a dead frame. */
        static lease_waiter_fx w;
        w = (lease_waiter_fx){ .c = waiter, .key = "w" };
        unsigned long long woken = redis_fx_counter(waiter, "lease_wakeups_total");
        char lease[16];
        int lease_len = snprintf(lease, sizeof lease, "site:1:w%clease", 0x1f);
        int lease_node = owner_of(corral__redis_key_slot(lease, (size_t)lease_len));
        long long sets = node_info(lease_node, "commandstats", "cmdstat_set:calls=");
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, get_or_set_v, &w), 0);
        /* Its lease attempt, then wait_lease's, after its watch: once the lease's node has
         * answered the second (the lease is held, so it failed), a release wakes the watch. The
         * node's count, not the handle's round trips, which count a command before it is sent. */
        uint64_t deadline = redis_fx_now_ns() + 20000000000ull;
        while (node_info(lease_node, "commandstats", "cmdstat_set:calls=") < sets + 2)
            if (redis_fx_now_ns() > deadline) fail_msg("the waiter never waited");
        assert_int_equal(corral_set(holder, "w", 1, "landed", 6, 60000, NULL), CORRAL_OK);
        assert_int_equal(corral_lease_end(holder, held), CORRAL_OK);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(w.rc, CORRAL_OK);
        assert_int_equal(w.runs, 0);
        assert_int_equal(w.len, 6);
        assert_memory_equal(w.got, "landed", 6);
        /* The release's message woke the waiting watch (a poll that found the value first
         * would have left no watch for it to wake). */
        assert_int_equal(redis_fx_counter(waiter, "lease_wakeups_total") - woken, 1);
        corral_close(holder);
        corral_close(waiter);
    }
}

/* Writes 8000 keys of KEYS[1]'s slot whose names are 400 bytes long: one invalidation message of
 * 3 MB to the near caches tracking them. */
static const char FLOOD_SRC[] = "local pad = string.rep('p', 400)\n"
                                "for i = 1, 8000 do redis.call('SET', KEYS[1] .. pad .. i, 1) end\n"
                                "return 8000\n";

/* A near cache's waiter, woken by a release, reads what the leader wrote before it, under another
 * key on another primary: the tracker wakes it once every primary's connection brought the
 * release, each after its invalidations of the leader's writes. The leader is another server to
 * this process's near caches (its first seed differs: near_peers.h), as another process is. */
static void test_cluster_near_cache_has_dropped_the_leaders_writes_at_the_wake(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    char lease[32], obj[16] = "";
    int lease_len = snprintf(lease, sizeof lease, "site:1:flight%clease", 0x1f);
    int lease_node = owner_of(corral__redis_key_slot(lease, (size_t)lease_len));
    for (int i = 0; i < 1000 && !obj[0]; i++) {
        char phys[32];
        snprintf(obj, sizeof obj, "obj%d", i);
        int n = snprintf(phys, sizeof phys, "site:1:%s", obj);
        if (owner_of(corral__redis_key_slot(phys, (size_t)n)) == lease_node) obj[0] = '\0';
    }
    assert_true(obj[0]);
    size_t obj_len = strlen(obj);
    char phys[32], flood[32] = "";
    int obj_node = owner_of(
        corral__redis_key_slot(phys, (size_t)snprintf(phys, sizeof phys, "site:1:%s", obj)));
    for (int i = 0; i < 1000 && !flood[0]; i++) { /* a key under the tracked prefix, there */
        int n = snprintf(flood, sizeof flood, "site:{flood%d}:", i);
        if (owner_of(corral__redis_key_slot(flood, (size_t)n)) != obj_node) flood[0] = '\0';
    }
    assert_true(flood[0]);
    corral *lead = NULL;
    assert_int_equal(
        redis_fx_open_url(&lead, "redis+cluster://127.0.0.1:%d/?key_prefix=site", cl.ports[1]),
        CORRAL_OK);
    corral *near = open_handle("&near_cache=1MB");
    redis_fx_wait_live(near);
    calls *k = calls_new();
    for (int round = 0; round < 20; round++) {
        char old[16], fresh[16];
        snprintf(old, sizeof old, "old-%d", round);
        snprintf(fresh, sizeof fresh, "new-%d", round);
        assert_int_equal(corral_set(lead, obj, obj_len, old, strlen(old), 60000, NULL), CORRAL_OK);
        char buf[16];
        size_t len = 0;
        uint64_t deadline = redis_fx_now_ns() + 20000000000ull;
        for (;;) { /* until the near cache serves the old value (a near hit) */
            unsigned long long hits = redis_fx_counter(near, "near_hits_total");
            assert_int_equal(corral_get_into(near, obj, obj_len, NULL, buf, sizeof buf, &len),
                             CORRAL_OK);
            if (len == strlen(old) && memcmp(buf, old, len) == 0 &&
                redis_fx_counter(near, "near_hits_total") > hits)
                break;
            if (redis_fx_now_ns() > deadline) fail_msg("the near cache never kept it");
        }
        corral_lease *held = hold(lead, "flight");
        int before;
        corral_lease *watch = live_watch(near, "flight", k, &before);
        /* Megabytes of invalidations ahead of the leader's write on its primary's connection:
         * the release's copy from the lease's primary arrives long before that write's. */
        redisReply *r = node_cmd_slow(obj_node, "EVAL %s 1 %s", FLOOD_SRC, flood);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        freeReplyObject(r);
        assert_int_equal(corral_set(lead, obj, obj_len, fresh, strlen(fresh), 60000, NULL),
                         CORRAL_OK);
        assert_int_equal(corral_lease_end(lead, held), CORRAL_OK);
        /* The tracker gives a release up when one primary's connection brings it over a second
         * after another's (tiered.c, REL_MAX_AGE_NS): then no call-back comes. */
        if (called_after(k, before) != before + 1)
            fail_msg("round %d: no call-back; releases given up %llu, tracker pings %llu", round,
                     redis_fx_counter(near, "near_lease_releases_dropped_total"),
                     redis_fx_counter(near, "near_pings_total"));
        assert_int_equal(watch_end(near, watch), CORRAL_MISS);
        assert_int_equal(corral_get_into(near, obj, obj_len, NULL, buf, sizeof buf, &len),
                         CORRAL_OK);
        assert_int_equal(len, strlen(fresh));
        assert_memory_equal(buf, fresh, len);
    }
    assert_int_equal(redis_fx_counter(near, "lease_wakeups_total"), 20);
    corral_close(lead);
    corral_close(near);
}

static pid_t pid_of(int port) {
    char path[128], buf[32] = "";
    snprintf(path, sizeof path, "%s/%d/pid", cl.dir, port);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    if (!fgets(buf, sizeof buf, fp)) buf[0] = '\0';
    fclose(fp);
    pid_t p = (pid_t)atoi(buf);
    assert_true(p > 0);
    return p;
}

static uint64_t ms_since(uint64_t t0) {
    return (redis_fx_now_ns() - t0) / 1000000u;
}

/* A stopped node (SIGSTOP: the kernel still accepts its connections): calls for its slots fail
 * within their deadline, a read as a miss and a write as an error; other nodes' slots work. The
 * node is stopped for less than the cluster's node timeout, so no failover starts. */
static void test_cluster_stopped_node_times_out_and_others_serve(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    enum { TIMEOUT_MS = 250 };
    cfx *f = cfx_open_opts(TIMEOUT_MS, false, 0);
    /* A key on another node than the one stopped. */
    assert_int_equal(set_str(f->s, "slow:a", "a"), CORRAL_OK);
    int stopped = owner_of(corral__redis_key_slot("slow:a", 6));
    char other[16] = "";
    for (int i = 0; i < 100 && !other[0]; i++) {
        char k[16];
        snprintf(k, sizeof k, "slow:%d", i);
        if (owner_of(corral__redis_key_slot(k, strlen(k))) != stopped) strcpy(other, k);
    }
    assert_true(other[0]);
    assert_int_equal(set_str(f->s, other, "b"), CORRAL_OK);
    pid_t pid = pid_of(stopped);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    char got[16];
    uint64_t t0 = redis_fx_now_ns();
    int get_rc = get_str(f->s, "slow:a", got, sizeof got);
    uint64_t get_ms = ms_since(t0);
    t0 = redis_fx_now_ns();
    int set_rc = set_str(f->s, "slow:a", "z");
    uint64_t set_ms = ms_since(t0);
    t0 = redis_fx_now_ns();
    int other_rc = get_str(f->s, other, got, sizeof got);
    uint64_t other_ms = ms_since(t0);
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(get_rc, CORRAL_MISS);
    assert_true(set_rc == CORRAL_ETIMEDOUT || set_rc == CORRAL_ESTORE);
    /* Within the deadline: one command timeout, and a refresh that skips the stopped node. */
    if (get_ms > 4 * TIMEOUT_MS || set_ms > 4 * TIMEOUT_MS)
        fail_msg("a call waited %llu / %llu ms with a %d ms timeout", (unsigned long long)get_ms,
                 (unsigned long long)set_ms, TIMEOUT_MS);
    assert_int_equal(other_rc, CORRAL_OK);
    assert_string_equal(got, "b");
    (void)other_ms;
    /* Back: the node answers again once its breaker lets a probe through. */
    uint64_t end = redis_fx_now_ns() + 10000000000ull;
    while (get_str(f->s, "slow:a", got, sizeof got) != CORRAL_OK)
        if (redis_fx_now_ns() > end) fail_msg("the node did not come back");
    cfx_close(f);
}

/* Load: threads writing and reading their own keys, checking every value they read. */
typedef struct load {
    corral__store *s;
    int id;
    atomic_bool *stop;
    bool exact; /* a read must find the last value written (see load_thread) */
    long long ops, errors, misses, wrong, max_ms;
    long long last_seq[32]; /* the last value of each key whose set succeeded */
    char keys[32][32];      /* the thread's keys */
} load;

/* A key "{t<n>}:<id>:<i>" whose tag hashes to `slot` (the first such n). */
static void load_key_in(char *k, size_t cap, uint16_t slot, int id, int i) {
    char tag[16];
    for (unsigned n = 0;; n++) {
        int len = snprintf(tag, sizeof tag, "t%u", n);
        if (corral__redis_key_slot(tag, (size_t)len) == slot) break;
    }
    snprintf(k, cap, "{%s}:%d:%d", tag, id, i);
}

static void *load_thread(void *arg) {
    load *l = arg;
    char k[32], v[64], got[64];
    long long seq = 0;
    while (!atomic_load(l->stop)) {
        int i = (int)(seq % 32);
        snprintf(k, sizeof k, "%s", l->keys[i]);
        snprintf(v, sizeof v, "%d:%d:%lld", l->id, i, ++seq);
        uint64_t t0 = redis_fx_now_ns();
        int set_rc = set_str(l->s, k, v);
        long long ms = (long long)ms_since(t0);
        if (ms > l->max_ms) l->max_ms = ms;
        long long before = l->last_seq[i];
        if (set_rc == CORRAL_OK)
            l->last_seq[i] = seq;
        else
            l->errors++;
        t0 = redis_fx_now_ns();
        int rc = get_str(l->s, k, got, sizeof got);
        ms = (long long)ms_since(t0);
        if (ms > l->max_ms) l->max_ms = ms;
        l->ops += 2;
        if (rc == CORRAL_MISS) {
            l->misses++;
            continue;
        }
        int gid = -1, gi = -1;
        long long gseq = -1;
        /* The value must be one this thread wrote for this key, never newer than the last. With
         * `exact` (no node fails), it is the one last written: the set's when it succeeded
         * (only this thread writes the key), else the one before or the set's (its reply may
         * be lost after it was applied). Without, after a failover, an older one may be read:
         * replication is asynchronous, so a write the dead primary acknowledged may be lost. */
        bool ok = sscanf(got, "%d:%d:%lld", &gid, &gi, &gseq) == 3 && gid == l->id && gi == i &&
                  gseq <= seq;
        if (ok && l->exact) ok = gseq == seq || (set_rc != CORRAL_OK && gseq == before);
        if (!ok) l->wrong++;
    }
    return NULL;
}

enum { LOAD_THREADS = 3 };

static void load_start(load *ls, pthread_t *th, corral__store *s, atomic_bool *stop,
                       const uint16_t *slots, size_t n_slots, bool exact) {
    atomic_store(stop, false);
    for (int t = 0; t < LOAD_THREADS; t++) {
        ls[t] = (load){ .s = s, .id = t, .stop = stop, .exact = exact };
        for (int i = 0; i < 32; i++) {
            if (slots) /* a key of one of `slots`: "{<tag>}..." where the tag hashes there */
                load_key_in(ls[t].keys[i], sizeof ls[t].keys[i],
                            slots[(size_t)(t * 32 + i) % n_slots], t, i);
            else
                snprintf(ls[t].keys[i], sizeof ls[t].keys[i], "load:%d:%d", t, i);
        }
        assert_int_equal(pthread_create(&th[t], NULL, load_thread, &ls[t]), 0);
    }
}

static void load_stop(load *ls, pthread_t *th, atomic_bool *stop, load *sum) {
    atomic_store(stop, true);
    memset(sum, 0, sizeof *sum);
    for (int t = 0; t < LOAD_THREADS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        sum->ops += ls[t].ops;
        sum->errors += ls[t].errors;
        sum->misses += ls[t].misses;
        sum->wrong += ls[t].wrong;
        if (ls[t].max_ms > sum->max_ms) sum->max_ms = ls[t].max_ms;
    }
}

/* Slots resharded under load (redis-cli --cluster reshard: MIGRATING/IMPORTING, MIGRATE, then
 * the new owner): every read finds the value last written (ASK while a slot migrates, MOVED
 * after), and no call fails. */
static void test_cluster_reshard_under_load_loses_nothing(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    cfx *f = cfx_open();
    int ps[MAX_NODES];
    size_t np = primaries(ps);
    assert_true(np >= 2);
    load ls[LOAD_THREADS], sum;
    pthread_t th[LOAD_THREADS];
    atomic_bool stop;
    /* redis-cli takes the source's lowest slots: the load's keys live in the first 300. */
    static uint16_t moving[300];
    size_t n_moving = 0;
    corral__redis_slot_map *m = slot_map();
    for (unsigned slot = 0; slot < CORRAL__REDIS_SLOTS && n_moving < 300; slot++)
        if (owner_in(m, (uint16_t)slot) == ps[0]) moving[n_moving++] = (uint16_t)slot;
    free(m);
    assert_int_equal(n_moving, 300);
    load_start(ls, th, f->s, &stop, moving, n_moving, true);
    int rc = script(NULL, 0, "reshard %s %d %d 300", cl.dir, ps[0], ps[1]);
    load_stop(ls, th, &stop, &sum);
    assert_int_equal(rc, 0);
    print_message("reshard: %lld ops, %lld errors, %lld misses, moved %lld, ask %lld\n", sum.ops,
                  sum.errors, sum.misses, store_metric(f->s, "cluster_moved_total"),
                  store_metric(f->s, "cluster_ask_total"));
    assert_true(sum.ops > 0);
    assert_int_equal(sum.wrong, 0);
    assert_int_equal(sum.errors, 0);
    assert_int_equal(sum.misses, 0);
    assert_true(store_metric(f->s, "cluster_moved_total") > 0);
    cfx_close(f);
}

/* A primary killed under load: its calls fail (never past their deadline) until its replica is
 * promoted, then everything works again without reopening; no value read is one that was never
 * written for its key. Writes the dead primary acknowledged just before dying may be lost
 * (Redis replicates asynchronously): an older value may be read, never another key's. */
static void test_cluster_primary_killed_under_load_fails_over(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    enum { TIMEOUT_MS = 500 };
    cfx *f = cfx_open_opts(TIMEOUT_MS, false, 0);
    /* A near cache too: its tracker loses the dead primary and must follow the promotion. */
    corral *near = open_handle("&near_cache=1MB");
    redis_fx_wait_live(near);
    char buf[32];
    size_t len = 0;
    for (int i = 0; i < 30; i++) {
        char k[16];
        snprintf(k, sizeof k, "nf%d", i);
        assert_int_equal(corral_set(near, k, strlen(k), "before", 6, 60000, NULL), CORRAL_OK);
        assert_int_equal(corral_get_into(near, k, strlen(k), NULL, buf, sizeof buf, &len),
                         CORRAL_OK);
    }
    unsigned long long flushes0 = redis_fx_counter(near, "near_flushes_total");
    /* The primary killed holds a tag's version; a tagged value lives on another node. Two more
     * stores learn the map now and after the kill make only many-key calls or tagged reads,
     * which must find the new primary by themselves (no single-key call refreshes for them). */
    int victim = owner_of(corral__redis_key_slot("site:tag:gone", 13));
    char tk[16] = "";
    for (int i = 0; i < 1000 && !tk[0]; i++) {
        char phys[32];
        snprintf(tk, sizeof tk, "tv%d", i);
        snprintf(phys, sizeof phys, "site:1:%s", tk);
        if (owner_of(corral__redis_key_slot(phys, strlen(phys))) == victim) tk[0] = '\0';
    }
    assert_true(tk[0]);
    corral *tagged = open_handle("");
    const char *tag[] = { "gone" };
    corral_call tcall = CORRAL_CALL_INIT;
    tcall.tags = tag;
    tcall.n_tags = 1;
    assert_int_equal(corral_set(tagged, tk, strlen(tk), "tv", 2, 60000, &tcall), CORRAL_OK);
    assert_int_equal(corral_get_into(tagged, tk, strlen(tk), NULL, buf, sizeof buf, &len),
                     CORRAL_OK);
    cfx *many = cfx_open_opts(TIMEOUT_MS, false, 0);
    enum { N_MANY = 60 };
    char mk[N_MANY][16];
    corral__skey mks[N_MANY];
    corral_buf mvs[N_MANY];
    for (int i = 0; i < N_MANY; i++) {
        snprintf(mk[i], sizeof mk[i], "many:%d", i);
        mks[i] = K(mk[i]);
        mvs[i] = (corral_buf){ .data = "m", .len = 1 };
    }
    assert_int_equal(many->s->ops->set_many(many->s, mks, mvs, N_MANY, 60000, 0), CORRAL_OK);
    wait_replicas(); /* the tag's version must survive the kill */
    load ls[LOAD_THREADS], sum;
    pthread_t th[LOAD_THREADS];
    atomic_bool stop;
    load_start(ls, th, f->s, &stop, NULL, 0, false); /* async replication */
    char killed[64];
    assert_int_equal(script(killed, sizeof killed, "kill-primary %s %d", cl.dir, victim), 0);
    assert_int_equal(script(NULL, 0, "wait %s", cl.dir), 0);
    /* Only many-key calls, then only tagged reads: each refreshes the map when a node cannot
     * be reached. (Checked after the load stops: a failed assertion must not leave it running.) */
    uint64_t many_end = redis_fx_now_ns() + 5000000000ull;
    bool many_ok = false, tagged_ok = false;
    while (!(many_ok = many->s->ops->set_many(many->s, mks, mvs, N_MANY, 60000, 0) == CORRAL_OK) &&
           redis_fx_now_ns() < many_end) {
    }
    many_end = redis_fx_now_ns() + 5000000000ull;
    while (!(tagged_ok = corral_get_into(tagged, tk, strlen(tk), NULL, buf, sizeof buf, &len) ==
                         CORRAL_OK) &&
           redis_fx_now_ns() < many_end) {
    }
    /* The cluster is whole again: every key works within a few map refreshes. */
    uint64_t end = redis_fx_now_ns() + 5000000000ull;
    bool all_ok = false;
    while (!all_ok) {
        all_ok = true;
        for (int i = 0; i < 60 && all_ok; i++) {
            char k[32], got[32];
            snprintf(k, sizeof k, "after:%d", i);
            all_ok = set_str(f->s, k, "ok") == CORRAL_OK &&
                     get_str(f->s, k, got, sizeof got) == CORRAL_OK && strcmp(got, "ok") == 0;
        }
        if (!all_ok && redis_fx_now_ns() > end) fail_msg("calls still fail after the failover");
    }
    load_stop(ls, th, &stop, &sum);
    print_message("failover of %s: %lld ops, %lld errors, %lld misses, slowest call %lld ms\n",
                  killed, sum.ops, sum.errors, sum.misses, sum.max_ms);
    if (!many_ok) fail_msg("set_many still fails 5 s after the failover");
    corral_value *mout[N_MANY];
    assert_int_equal(many->s->ops->get_many(many->s, mks, N_MANY, mout), CORRAL_OK);
    for (int i = 0; i < N_MANY; i++) {
        assert_non_null(mout[i]);
        corral_value_unref(mout[i]);
    }
    size_t deleted = 0;
    assert_int_equal(many->s->ops->del_many(many->s, mks, N_MANY, &deleted), CORRAL_OK);
    assert_int_equal(deleted, N_MANY);
    cfx_close(many);
    if (!tagged_ok) fail_msg("tagged reads still miss 5 s after the failover");
    corral_close(tagged);
    assert_int_equal(sum.wrong, 0);
    /* No call hangs: one command timeout per send, a redirection or retry only within one more. */
    assert_true(sum.max_ms <= 3 * TIMEOUT_MS + 2000 /* connect timeout */);
    /* The near cache was emptied when its tracker lost the primary, and tracks the new one: a
     * change made on each key's (new) owner by another client reaches it. */
    assert_true(redis_fx_counter(near, "near_flushes_total") > flushes0);
    redis_fx_wait_live(near);
    for (int i = 0; i < 30; i++) {
        char k[16], phys[32];
        snprintf(k, sizeof k, "nf%d", i);
        /* A write the dead primary took just before dying may be gone: OK or a miss. */
        int rc = corral_get_into(near, k, strlen(k), NULL, buf, sizeof buf, &len);
        assert_true(rc == CORRAL_OK || rc == CORRAL_MISS);
        snprintf(phys, sizeof phys, "site:1:%s", k);
        ok_cmd(
            0, "SET",
            node_cmd(owner_of(corral__redis_key_slot(phys, strlen(phys))), "SET %s after", phys));
    }
    end = redis_fx_now_ns() + 10000000000ull;
    for (int i = 0; i < 30; i++) {
        char k[16];
        snprintf(k, sizeof k, "nf%d", i);
        while (corral_get_into(near, k, strlen(k), NULL, buf, sizeof buf, &len) != CORRAL_OK ||
               len != 5 || memcmp(buf, "after", 5) != 0)
            if (redis_fx_now_ns() > end) fail_msg("%s: the near cache kept a dead node's value", k);
    }
    corral_close(near);
    cfx_close(f);
}

/* The port of the primary that serves the lease subscriber of the only handle subscribed (PUBSUB
 * NUMSUB answers for its node alone), -1 when none is. */
static int subscriber_on(void) {
    int ps[MAX_NODES];
    size_t n = primaries(ps);
    for (size_t i = 0; i < n; i++) {
        redisReply *r = node_cmd(ps[i], "PUBSUB NUMSUB site:lease-released");
        bool here =
            r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->integer > 0;
        freeReplyObject(r);
        if (here) return ps[i];
    }
    return -1;
}

static bool has_replica(int port) {
    corral__redis_slot_map *m = slot_map();
    bool has = false;
    for (size_t s = 0; s < m->n_shards; s++)
        has = has || (m->shards[s].primary.port == port && m->shards[s].n_replicas > 0);
    free(m);
    return has;
}

/* The primary a waiter's lease subscriber is on dies; once its replica is promoted, the
 * subscriber (a connection of its own without a near cache, the tracker's on every primary with
 * one) is subscribed again on the new map, and a release wakes the waiters again. Runs after the
 * other failover: the primary killed here is one that still has a replica. */
static void test_cluster_lease_wakeups_come_back_after_a_failover(void **state) {
    (void)state;
    need_cluster();
    flush_all();
    corral *holder = open_handle(""), *plain = open_handle("");
    release_wakes(holder, plain, "a");
    /* Its subscriber onto a primary that has a replica: each connection killed makes it
     * subscribe on the next primary. */
    int victim = -1;
    for (int i = 0; i < 6 && victim < 0; i++) {
        int at = subscriber_on();
        assert_true(at > 0);
        if (has_replica(at)) {
            victim = at;
        } else {
            unsigned long long subs = redis_fx_counter(plain, "lease_subscribes_total");
            ok_cmd(at, "CLIENT KILL", node_cmd(at, "CLIENT KILL TYPE pubsub"));
            uint64_t deadline = redis_fx_now_ns() + 20000000000ull;
            while (redis_fx_counter(plain, "lease_subscribes_total") == subs)
                if (redis_fx_now_ns() > deadline) fail_msg("never subscribed again");
        }
    }
    assert_true(victim > 0);
    corral *near = open_handle("&near_cache=1MB");
    redis_fx_wait_live(near);
    release_wakes(holder, near, "b");
    unsigned long long subs = redis_fx_counter(plain, "lease_subscribes_total");
    unsigned long long near_subs = redis_fx_counter(near, "near_subscribes_total");
    assert_int_equal(script(NULL, 0, "kill-primary %s %d", cl.dir, victim), 0);
    assert_int_equal(script(NULL, 0, "wait %s", cl.dir), 0);
    release_wakes(holder, plain, "c");
    release_wakes(holder, near, "d");
    assert_true(redis_fx_counter(plain, "lease_subscribes_total") > subs);
    assert_true(redis_fx_counter(near, "near_subscribes_total") > near_subs);
    corral_close(near);
    corral_close(plain);
    corral_close(holder);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        STORE_SUITE_TESTS(&cluster_target),
        cmocka_unit_test(test_cluster_slots_agree_with_cluster_keyslot),
        cmocka_unit_test(test_cluster_keys_live_on_the_owner_of_their_slot),
        cmocka_unit_test(test_cluster_get_many_is_one_round_trip_per_primary),
        cmocka_unit_test(test_cluster_clear_prefix_scans_every_primary),
        cmocka_unit_test(test_cluster_reads_from_replicas_when_asked),
        cmocka_unit_test(test_cluster_tag_versions_read_from_primaries),
        cmocka_unit_test(test_cluster_follows_ask_then_moved),
        cmocka_unit_test(test_cluster_moved_with_a_pool_of_one),
        cmocka_unit_test(test_cluster_moved_with_an_empty_host),
        cmocka_unit_test(test_cluster_handle_tags_namespaces_and_get_or_set),
        cmocka_unit_test(test_cluster_near_cache_tracks_every_primary),
        cmocka_unit_test_teardown(test_cluster_lease_release_wakes_waiters, watches_teardown),
        cmocka_unit_test_teardown(
            test_cluster_near_cache_has_dropped_the_leaders_writes_at_the_wake, watches_teardown),
        cmocka_unit_test(test_cluster_near_cache_reads_follow_ask_and_moved),
        cmocka_unit_test(test_cluster_stopped_node_times_out_and_others_serve),
        cmocka_unit_test(test_cluster_reshard_under_load_loses_nothing),
        cmocka_unit_test(test_cluster_primary_killed_under_load_fails_over),
        cmocka_unit_test_teardown(test_cluster_lease_wakeups_come_back_after_a_failover,
                                  watches_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
