/*
 * test_options.c - corral_options_init, the cache URL parser (corral_options_parse_url) and
 * corral_open / corral_open_opts, table-driven: each URL with the options it must yield, or the
 * error code it must return and the parameter its message must name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/corral.h"

#define MiB ((size_t)1024 * 1024)

/* Every field the URL can set, in one line, so a table row states all of them at once. */
static void describe(const corral_options *o, char *buf, size_t cap) {
    int n =
        snprintf(buf, cap,
                 "mem=%zu val=%zu prefix='%s' ver=%lld ttl=%lld ev=%d shards=%u "
                 "bin=%d pfx=%zu",
                 o->max_memory_bytes, o->max_value_bytes, o->key_prefix ? o->key_prefix : "(null)",
                 (long long)o->version, (long long)o->default_ttl_ms, (int)o->eviction, o->shards,
                 (int)o->allow_binary_keys, o->max_prefixes);
    assert_true(n > 0 && (size_t)n < cap);
}

typedef struct ok_case {
    const char *url;
    const char *want; /* describe() of the parsed options */
} ok_case;

static const ok_case ok_cases[] = {
    { "mem://", "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem:///", "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?", "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?max_memory=256MB&key_prefix=djzen&version=1&timeout=300",
      "mem=256000000 val=0 prefix='djzen' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?version=42&timeout=5",
      "mem=268435456 val=0 prefix='' ver=42 ttl=5000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?version=-3",
      "mem=268435456 val=0 prefix='' ver=-3 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?timeout=none",
      "mem=268435456 val=0 prefix='' ver=1 ttl=-2 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?timeout=0", "mem=268435456 val=0 prefix='' ver=1 ttl=0 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?timeout=1.5",
      "mem=268435456 val=0 prefix='' ver=1 ttl=1500 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?timeout=0.001",
      "mem=268435456 val=0 prefix='' ver=1 ttl=1 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?eviction=sieve",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=1 shards=0 bin=0 pfx=256" },
    { "mem://?eviction=s3fifo",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=2 shards=0 bin=0 pfx=256" },
    { "mem://?eviction=lru",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=3 shards=0 bin=0 pfx=256" },
    { "mem://?shards=4&max_prefixes=2",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=4 bin=0 pfx=2" },
    { "mem://?binary_keys=1",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=1 pfx=256" },
    { "mem://?binary_keys=true",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=1 pfx=256" },
    { "mem://?binary_keys=0",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?binary_keys=false",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?max_value=1MiB",
      "mem=268435456 val=1048576 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?key_prefix=",
      "mem=268435456 val=0 prefix='' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?key_prefix=shop%3Aeu",
      "mem=268435456 val=0 prefix='shop:eu' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
    { "mem://?key_prefix=a%2fb%2Bc+d",
      "mem=268435456 val=0 prefix='a/b+c+d' ver=1 ttl=300000 ev=0 shards=0 bin=0 pfx=256" },
};

static void test_parse_url_accepts_valid_urls(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        corral_options o;
        corral_options_init(&o);
        char buf[256], got[256];
        corral_error err = { 0 };
        int rc = corral_options_parse_url(&o, ok_cases[i].url, buf, sizeof buf, &err);
        if (rc != CORRAL_OK) fail_msg("%s: rc %d (%s)", ok_cases[i].url, rc, err.msg);
        describe(&o, got, sizeof got);
        if (strcmp(got, ok_cases[i].want) != 0)
            fail_msg("%s:\n  got  %s\n  want %s", ok_cases[i].url, got, ok_cases[i].want);
    }
}

typedef struct unit_case {
    const char *value;
    size_t bytes;
} unit_case;

static void test_parse_url_reads_size_units(void **state) {
    (void)state;
    static const unit_case cases[] = {
        { "4096", 4096 },      { "10B", 10 },          { "1KB", 1000 },
        { "1KiB", 1024 },      { "256MB", 256000000 }, { "2MiB", 2 * MiB },
        { "1GB", 1000000000 }, { "1GiB", 1024 * MiB }, { "3GiB", 3072 * MiB },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char url[64], buf[64];
        snprintf(url, sizeof url, "mem://?max_memory=%s&max_value=%s", cases[i].value,
                 cases[i].value);
        corral_options o;
        corral_options_init(&o);
        int rc = corral_options_parse_url(&o, url, buf, sizeof buf, NULL);
        if (rc != CORRAL_OK) fail_msg("%s: rc %d", url, rc);
        if (o.max_memory_bytes != cases[i].bytes || o.max_value_bytes != cases[i].bytes)
            fail_msg("%s: got %zu/%zu, want %zu", url, o.max_memory_bytes, o.max_value_bytes,
                     cases[i].bytes);
    }
}

typedef struct bad_case {
    const char *url;
    int rc;
    const char *named; /* must appear in err.msg */
} bad_case;

static const bad_case bad_cases[] = {
    { "redis+cluster://h:7000/2", CORRAL_EBADURL, "only database 0" },
    { "redis+cluster://h:7000?db=3", CORRAL_EBADURL, "only database 0" },
    { "redis+cluster://h:7000?read_from_replicas=maybe", CORRAL_EBADURL, "read_from_replicas" },
    { "redis+cluster://h:0", CORRAL_EBADURL, "bad host 'h:0'" },
    { "redis+cluster://h1:7000,,h2", CORRAL_EBADURL, "bad host" },
    { "redis://h?read_from_replicas=1", CORRAL_EBADURL, "redis+cluster:// only" },
    { "mem://?read_from_replicas=1", CORRAL_EBADURL, "read_from_replicas" },
    { "redis+clusters://h", CORRAL_EBADURL, "unknown scheme" },
    { "mem://?bogus=1", CORRAL_EBADURL, "bogus" },
    { "mem://?max_memory=1MB&colour=red", CORRAL_EBADURL, "colour" },
    { "mem://?max_memory=-1", CORRAL_EBADURL, "max_memory" },
    { "mem://?max_memory=", CORRAL_EBADURL, "max_memory" },
    { "mem://?max_memory=lots", CORRAL_EBADURL, "max_memory" },
    { "mem://?max_memory=12XB", CORRAL_EBADURL, "max_memory" },
    { "mem://?max_memory=99999999999999999999", CORRAL_EBADURL, "max_memory" },
    { "mem://?max_memory=20000000000GB", CORRAL_EBADURL, "max_memory" },
    { "mem://?max_value=1.2.3MB", CORRAL_EBADURL, "max_value" },
    { "mem://?version=", CORRAL_EBADURL, "version" },
    { "mem://?version=1x", CORRAL_EBADURL, "version" },
    { "mem://?version=1.5", CORRAL_EBADURL, "version" },
    { "mem://?version=99999999999999999999", CORRAL_EBADURL, "version" },
    { "mem://?timeout=", CORRAL_EBADURL, "timeout" },
    { "mem://?timeout=-5", CORRAL_EBADURL, "timeout" },
    { "mem://?timeout=abc", CORRAL_EBADURL, "timeout" },
    { "mem://?timeout=1.", CORRAL_EBADURL, "timeout" },
    { "mem://?timeout=99999999999999999999", CORRAL_EBADURL, "timeout" },
    { "mem://?eviction=arc", CORRAL_EBADURL, "eviction" },
    { "mem://?eviction=", CORRAL_EBADURL, "eviction" },
    { "mem://?shards=-1", CORRAL_EBADURL, "shards" },
    { "mem://?shards=four", CORRAL_EBADURL, "shards" },
    { "mem://?binary_keys=2", CORRAL_EBADURL, "binary_keys" },
    { "mem://?max_prefixes=-2", CORRAL_EBADURL, "max_prefixes" },
    { "mem://?key_prefix=%zz", CORRAL_EBADURL, "key_prefix" },
    { "mem://?key_prefix=ab%4", CORRAL_EBADURL, "key_prefix" },
    { "mem://?version", CORRAL_EBADURL, "version" },
    { "ftp://host/", CORRAL_EBADURL, "ftp" },
    { "gopher://", CORRAL_EBADURL, "gopher" },
    { "mem:/?version=1", CORRAL_EBADURL, "scheme" },
    { "max_memory=1MB", CORRAL_EBADURL, "scheme" },
    { "mem://localhost?version=1", CORRAL_EBADURL, "localhost" },
    /* Redis URLs. */
    { "redis://h?max_memory=1MB", CORRAL_EBADURL, "max_memory" }, /* mem:// only */
    { "redis://h?eviction=lru", CORRAL_EBADURL, "eviction" },
    { "redis://h?shards=2", CORRAL_EBADURL, "shards" },
    { "mem://?pool=4", CORRAL_EBADURL, "pool" }, /* redis:// only */
    { "mem://?db=1", CORRAL_EBADURL, "db" },
    { "mem://?password=x", CORRAL_EBADURL, "password" },
    { "redis://h?pool=0", CORRAL_EBADURL, "pool" },
    { "redis://h?pool=1025", CORRAL_EBADURL, "pool" },
    { "redis://h?pool=four", CORRAL_EBADURL, "pool" },
    { "redis://h?db=-1", CORRAL_EBADURL, "db" },
    { "redis://h?db=x", CORRAL_EBADURL, "db" },
    { "redis://h/2?db=3", CORRAL_EBADURL, "db" }, /* path and parameter */
    { "redis://h/x", CORRAL_EBADURL, "db" },
    { "redis://h/2/3", CORRAL_EBADURL, "db" },
    { "redis://:a@h?password=b", CORRAL_EBADURL, "password" },
    { "redis://user@h", CORRAL_EBADURL, "password" },
    { "redis://:a%zz@h", CORRAL_EBADURL, "password" },
    { "redis://h?connect_timeout=0", CORRAL_EBADURL, "connect_timeout" },
    { "redis://h?connect_timeout=-1", CORRAL_EBADURL, "connect_timeout" },
    { "redis://h?connect_timeout=1min", CORRAL_EBADURL, "connect_timeout" },
    { "redis://h?connect_timeout=0.0001", CORRAL_EBADURL, "connect_timeout" },
    { "redis://h?command_timeout=", CORRAL_EBADURL, "command_timeout" },
    { "redis://h?command_timeout=0ms", CORRAL_EBADURL, "command_timeout" },
    { "redis://h?command_timeout=100000s", CORRAL_EBADURL, "command_timeout" },
    { "redis://h?colour=red", CORRAL_EBADURL, "colour" },
    { "redis://h:0", CORRAL_EBADURL, "h:0" },
    { "redis://h:99999", CORRAL_EBADURL, "h:99999" },
    { "redis://a,,b", CORRAL_EBADURL, "host" },
    { "redis://[::1", CORRAL_EBADURL, "[::1" },
    { "redis://bad host", CORRAL_EBADURL, "bad host" },
    { "redis+unix://", CORRAL_EBADURL, "socket path" },
    { "redis+unix://relative/path", CORRAL_EBADURL, "socket path" },
    { "redis+unix:///s?eviction=lru", CORRAL_EBADURL, "eviction" },
    { "rediss://h", CORRAL_EBADURL, "rediss" },
    { "redis://h?near_cache=lots", CORRAL_EBADURL, "near_cache" },
    { "redis://h?serializer=json", CORRAL_EBADURL, "serializer" },
    { "mem://?serializer=django", CORRAL_EBADURL, "serializer" },
    { "mem://?near_cache=1MB", CORRAL_EBADURL, "near_cache" },
};

/* Every Redis field the URL can set, in one line. */
static void describe_redis(const corral_options *o, char *buf, size_t cap) {
    const corral_redis_options *r = &o->redis;
    int n = snprintf(buf, cap,
                     "store=%s hosts=%s unix=%s user=%s pass=%s db=%u conn=%lld cmd=%lld pool=%u "
                     "prefix='%s' ttl=%lld near=%zu",
                     o->store, r->hosts ? r->hosts : "-", r->unix_path ? r->unix_path : "-",
                     r->username ? r->username : "-", r->password ? r->password : "-", r->db,
                     (long long)r->connect_timeout_ms, (long long)r->command_timeout_ms, r->pool,
                     o->key_prefix, (long long)o->default_ttl_ms, r->near_cache_bytes);
    assert_true(n > 0 && (size_t)n < cap);
    if (r->cluster || r->read_from_replicas) { /* only the cluster's URLs set them */
        int m = snprintf(buf + n, cap - (size_t)n, " cluster=%d from_replicas=%d", r->cluster,
                         r->read_from_replicas);
        assert_true(m > 0 && (size_t)m < cap - (size_t)n);
    }
}

static const ok_case redis_ok_cases[] = {
    { "redis+cluster://h1:7000,h2:7001/?key_prefix=site",
      "store=redis hosts=h1:7000,h2:7001 unix=- user=- pass=- db=0 conn=1000 cmd=1000 pool=4 "
      "prefix='site' ttl=300000 near=0 cluster=1 from_replicas=0" },
    { "redis+cluster://u:pw@10.0.0.1:7000?read_from_replicas=1&command_timeout=250ms&db=0",
      "store=redis hosts=10.0.0.1:7000 unix=- user=u pass=pw db=0 conn=1000 cmd=250 pool=4 "
      "prefix='' ttl=300000 near=0 cluster=1 from_replicas=1" },
    { "redis+cluster://h:1?near_cache=1MB",
      "store=redis hosts=h:1 unix=- user=- pass=- db=0 conn=1000 cmd=1000 pool=4 prefix='' "
      "ttl=300000 near=1000000 cluster=1 from_replicas=0" },
    { "redis+cluster://", "store=redis hosts=127.0.0.1:6379 unix=- user=- pass=- db=0 conn=1000 "
                          "cmd=1000 pool=4 prefix='' ttl=300000 near=0 cluster=1 from_replicas=0" },
    { "redis://", "store=redis hosts=127.0.0.1:6379 unix=- user=- pass=- db=0 conn=1000 cmd=1000 "
                  "pool=4 prefix='' ttl=300000 near=0" },
    { "redis://127.0.0.1:6379/2?key_prefix=djzen&timeout=300",
      "store=redis hosts=127.0.0.1:6379 unix=- user=- pass=- db=2 conn=1000 cmd=1000 pool=4 "
      "prefix='djzen' ttl=300000 near=0" },
    { "redis://primary,replica1,replica2/2",
      "store=redis hosts=primary,replica1,replica2 unix=- user=- pass=- db=2 conn=1000 cmd=1000 "
      "pool=4 prefix='' ttl=300000 near=0" },
    { "redis://:s%40cret@h:7000,[::1]:7001/",
      "store=redis hosts=h:7000,[::1]:7001 unix=- user=- pass=s@cret db=0 conn=1000 cmd=1000 "
      "pool=4 prefix='' ttl=300000 near=0" },
    { "redis://app:pw@h?pool=16&connect_timeout=0.25&command_timeout=50ms",
      "store=redis hosts=h unix=- user=app pass=pw db=0 conn=250 cmd=50 pool=16 prefix='' "
      "ttl=300000 near=0" },
    { "redis://h?db=5&password=p%26q&command_timeout=2s&max_value=1MB&version=3",
      "store=redis hosts=h unix=- user=- pass=p&q db=5 conn=1000 cmd=2000 pool=4 prefix='' "
      "ttl=300000 near=0" },
    { "redis+unix:///run/redis/redis.sock?db=2",
      "store=redis hosts=127.0.0.1:6379 unix=/run/redis/redis.sock user=- pass=- db=2 conn=1000 "
      "cmd=1000 pool=4 prefix='' ttl=300000 near=0" },
    { "redis+unix:///tmp/a%20b.sock?password=x&timeout=none",
      "store=redis hosts=127.0.0.1:6379 unix=/tmp/a b.sock user=- pass=x db=0 conn=1000 "
      "cmd=1000 pool=4 prefix='' ttl=-2 near=0" },
    { "redis://h?serializer=django&key_prefix=djzen",
      "store=redis hosts=h unix=- user=- pass=- db=0 conn=1000 cmd=1000 pool=4 prefix='djzen' "
      "ttl=300000 near=0" },
    { "redis://h?near_cache=64MB",
      "store=redis hosts=h unix=- user=- pass=- db=0 conn=1000 cmd=1000 pool=4 prefix='' "
      "ttl=300000 near=64000000" },
};

static void test_parse_url_accepts_redis_urls(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof redis_ok_cases / sizeof redis_ok_cases[0]; i++) {
        corral_options o;
        corral_options_init(&o);
        size_t cap = strlen(redis_ok_cases[i].url) + 1; /* always enough */
        char *buf = malloc(cap), got[512];
        assert_non_null(buf);
        corral_error err = { 0 };
        int rc = corral_options_parse_url(&o, redis_ok_cases[i].url, buf, cap, &err);
        if (rc != CORRAL_OK) fail_msg("%s: rc %d (%s)", redis_ok_cases[i].url, rc, err.msg);
        describe_redis(&o, got, sizeof got);
        if (strcmp(got, redis_ok_cases[i].want) != 0)
            fail_msg("%s:\n  got  %s\n  want %s", redis_ok_cases[i].url, got,
                     redis_ok_cases[i].want);
        free(buf);
    }
}

static void test_parse_url_refuses_malformed_urls_naming_the_part(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        corral_options o;
        corral_options_init(&o);
        char buf[256];
        corral_error err = { 0 };
        int rc = corral_options_parse_url(&o, bad_cases[i].url, buf, sizeof buf, &err);
        if (rc != bad_cases[i].rc)
            fail_msg("%s: rc %d, want %d", bad_cases[i].url, rc, bad_cases[i].rc);
        if (err.code != rc) fail_msg("%s: err.code %d, rc %d", bad_cases[i].url, err.code, rc);
        if (strstr(err.msg, bad_cases[i].named) == NULL)
            fail_msg("%s: message '%s' does not name '%s'", bad_cases[i].url, err.msg,
                     bad_cases[i].named);
    }
}

/* A value holding a percent-encoded NUL is not the number before the NUL. */
static void test_parse_url_refuses_encoded_nul_in_values(void **state) {
    (void)state;
    static const char *const urls[] = {
        "mem://?version=5%00x",    "mem://?shards=4%00x",     "mem://?max_prefixes=2%001",
        "mem://?eviction=lru%00x", "mem://?timeout=5%00",     "mem://?max_memory=1MB%00",
        "mem://?key_prefix=a%00b", "mem://?binary_keys=1%00",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        corral_options o;
        corral_options_init(&o);
        char buf[256];
        corral_error err = { 0 };
        int rc = corral_options_parse_url(&o, urls[i], buf, sizeof buf, &err);
        if (rc != CORRAL_EBADURL) fail_msg("%s: rc %d, want EBADURL", urls[i], rc);
    }
}

static void test_parse_url_refuses_repeated_parameter(void **state) {
    (void)state;
    corral_options o;
    corral_options_init(&o);
    char buf[256];
    corral_error err = { 0 };
    int rc =
        corral_options_parse_url(&o, "mem://?version=2&timeout=1&version=3", buf, sizeof buf, &err);
    assert_int_equal(rc, CORRAL_EBADURL);
    assert_non_null(strstr(err.msg, "version"));
    assert_int_equal(o.version, 1);
}

static void test_parse_url_keeps_fields_the_url_does_not_name(void **state) {
    (void)state;
    corral_options o;
    corral_options_init(&o);
    o.version = 7;
    o.max_memory_bytes = 12345;
    o.key_prefix = "kept";
    char buf[64];
    assert_int_equal(corral_options_parse_url(&o, "mem://?timeout=10", buf, sizeof buf, NULL),
                     CORRAL_OK);
    assert_int_equal(o.version, 7);
    assert_int_equal(o.max_memory_bytes, 12345);
    assert_string_equal(o.key_prefix, "kept");
    assert_int_equal(o.default_ttl_ms, 10000);
}

static void test_parse_url_leaves_options_unchanged_on_error(void **state) {
    (void)state;
    corral_options o, before;
    corral_options_init(&o);
    before = o;
    char buf[64];
    corral_error err = { 0 };
    int rc = corral_options_parse_url(&o, "mem://?version=5&key_prefix=x&timeout=9&bogus=1", buf,
                                      sizeof buf, &err);
    assert_int_equal(rc, CORRAL_EBADURL);
    assert_int_equal(o.version, before.version);
    assert_int_equal(o.default_ttl_ms, before.default_ttl_ms);
    assert_ptr_equal(o.key_prefix, before.key_prefix);
    assert_string_equal(o.key_prefix, "");
}

static void test_parse_url_points_strings_into_buf(void **state) {
    (void)state;
    corral_options o;
    corral_options_init(&o);
    char buf[64];
    assert_int_equal(corral_options_parse_url(&o, "mem://?key_prefix=djzen", buf, sizeof buf, NULL),
                     CORRAL_OK);
    assert_true(o.key_prefix >= buf && o.key_prefix < buf + sizeof buf);
    assert_string_equal(o.key_prefix, "djzen");
}

static void test_parse_url_small_buf_is_enospc_and_changes_nothing(void **state) {
    (void)state;
    corral_options o, before;
    corral_options_init(&o);
    before = o;
    char buf[4];
    corral_error err = { 0 };
    int rc = corral_options_parse_url(&o, "mem://?key_prefix=djzen", buf, sizeof buf, &err);
    assert_int_equal(rc, CORRAL_ENOSPC);
    assert_int_equal(err.code, CORRAL_ENOSPC);
    assert_ptr_equal(o.key_prefix, before.key_prefix);
}

static void test_parse_url_url_length_plus_one_is_always_enough(void **state) {
    (void)state;
    static const char *const urls[] = {
        "mem://?key_prefix=djzen",
        "mem://?key_prefix=a&version=1&timeout=1&max_memory=1&max_value=1&shards=1&eviction=lru",
        "mem://?key_prefix=&binary_keys=1&max_prefixes=9",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        corral_options o;
        corral_options_init(&o);
        size_t cap = strlen(urls[i]) + 1;
        char *buf = malloc(cap);
        assert_non_null(buf);
        int rc = corral_options_parse_url(&o, urls[i], buf, cap, NULL);
        if (rc != CORRAL_OK) fail_msg("%s: rc %d with cap %zu", urls[i], rc, cap);
        free(buf);
    }
}

static void test_parse_url_null_and_empty_change_nothing(void **state) {
    (void)state;
    corral_options o;
    corral_options_init(&o);
    char want[256], got[256];
    describe(&o, want, sizeof want);
    char buf[16];
    assert_int_equal(corral_options_parse_url(&o, NULL, buf, sizeof buf, NULL), CORRAL_OK);
    describe(&o, got, sizeof got);
    assert_string_equal(got, want);
    assert_int_equal(corral_options_parse_url(&o, "", buf, sizeof buf, NULL), CORRAL_OK);
    describe(&o, got, sizeof got);
    assert_string_equal(got, want);
}

static void test_options_init_fills_documented_defaults(void **state) {
    (void)state;
    corral_options o;
    memset(&o, 0xa5, sizeof o);
    corral_options_init(&o);
    assert_string_equal(o.store, "mem");
    assert_string_equal(o.key_prefix, "");
    assert_int_equal(o.version, 1);
    assert_int_equal(o.default_ttl_ms, 300000);
    assert_int_equal(o.max_memory_bytes, 256 * MiB);
    assert_int_equal(o.max_value_bytes, 0);
    assert_int_equal(o.eviction, CORRAL_EVICT_DEFAULT);
    assert_int_equal(o.shards, 0);
    assert_false(o.allow_binary_keys);
    assert_int_equal(o.max_prefixes, 256);
    assert_null(o.allocator.alloc);
    assert_null(o.allocator.realloc);
    assert_null(o.allocator.free);
    assert_null(o.now_ns);
    assert_null(o.key_fn);
    assert_string_equal(o.redis.hosts, "127.0.0.1:6379");
    assert_null(o.redis.unix_path);
    assert_null(o.redis.username);
    assert_null(o.redis.password);
    assert_int_equal(o.redis.db, 0);
    assert_int_equal(o.redis.connect_timeout_ms, 1000);
    assert_int_equal(o.redis.command_timeout_ms, 1000);
    assert_int_equal(o.redis.pool, 4);
    assert_int_equal(o.redis.near_cache_bytes, 0);
    assert_int_equal(o.redis.serializer, CORRAL_SERIALIZER_RAW);
}

/* ---- corral_open and corral_open_opts ---- */

static void expect_physical_key(corral *c, const char *key, const char *want) {
    char out[300];
    size_t len = 0;
    assert_int_equal(corral_make_key(c, key, strlen(key), NULL, out, sizeof out, &len), CORRAL_OK);
    assert_string_equal(out, want);
}

static size_t max_memory_of(corral *c) {
    corral_stats_snapshot *s = NULL;
    assert_int_equal(corral_stats(c, &s), CORRAL_OK);
    size_t n = s->max_memory_bytes;
    corral_stats_free(c, s);
    return n;
}

static void test_open_null_and_empty_url_open_defaults(void **state) {
    (void)state;
    const char *urls[] = { NULL, "", "mem://" };
    for (size_t i = 0; i < 3; i++) {
        corral *c = NULL;
        corral_error err = { 0 };
        assert_int_equal(corral_open(&c, urls[i], &err), CORRAL_OK);
        assert_non_null(c);
        expect_physical_key(c, "foo", ":1:foo");
        assert_int_equal(max_memory_of(c), 256 * MiB);
        corral_close(c);
    }
}

static void test_open_applies_url_parameters(void **state) {
    (void)state;
    corral *c = NULL;
    assert_int_equal(corral_open(&c, "mem://?max_memory=8MB&key_prefix=djzen&version=2", NULL),
                     CORRAL_OK);
    expect_physical_key(c, "featured_products:v3", "djzen:2:featured_products:v3");
    assert_int_equal(max_memory_of(c), 8000000);
    corral_close(c);
}

static void test_open_bad_url_fails_with_null_handle_and_message(void **state) {
    (void)state;
    corral *c = (corral *)&c;
    corral_error err = { 0 };
    assert_int_equal(corral_open(&c, "mem://?max_memory=1MB&colour=red", &err), CORRAL_EBADURL);
    assert_null(c);
    assert_int_equal(err.code, CORRAL_EBADURL);
    assert_non_null(strstr(err.msg, "colour"));
    c = (corral *)&c;
    assert_int_equal(corral_open(&c, "ftp://example.com/", NULL), CORRAL_EBADURL);
    assert_null(c);
}

static void test_open_percent_decodes_key_prefix(void **state) {
    (void)state;
    corral *c = NULL;
    assert_int_equal(corral_open(&c, "mem://?key_prefix=shop%3Aeu", NULL), CORRAL_OK);
    expect_physical_key(c, "foo", "shop:eu:1:foo");
    corral_close(c);
}

static void *only_alloc(void *ctx, size_t n) {
    (void)ctx;
    (void)n;
    return NULL;
}

static void test_open_opts_refuses_partial_allocator(void **state) {
    (void)state;
    corral_options o;
    corral_options_init(&o);
    o.allocator.alloc = only_alloc;
    corral *c = (corral *)&c;
    corral_error err = { 0 };
    assert_int_equal(corral_open_opts(&c, &o, &err), CORRAL_EINVAL);
    assert_null(c);
    assert_int_equal(err.code, CORRAL_EINVAL);
}

static void test_open_opts_copies_its_strings(void **state) {
    (void)state;
    char prefix[16] = "djzen";
    corral_options o;
    corral_options_init(&o);
    o.key_prefix = prefix;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    memcpy(prefix, "XXXXX", 5);
    expect_physical_key(c, "foo", "djzen:1:foo");
    corral_close(c);
}

static void test_open_opts_refuses_zero_max_memory(void **state) {
    (void)state;
    corral_options o;
    corral_options_init(&o);
    o.max_memory_bytes = 0;
    corral *c = (corral *)&c;
    corral_error err = { 0 };
    int rc = corral_open_opts(&c, &o, &err);
    assert_int_equal(rc, CORRAL_EINVAL);
    assert_null(c);
    assert_int_equal(err.code, rc);
}

/* corral_url_redact hides every credential the parser would take, and nothing else. */
static void test_url_redact_hides_every_credential(void **state) {
    (void)state;
    static const struct {
        const char *url, *want;
    } cases[] = {
        { "redis://:pw@host/2", "redis://:***@host/2" },
        { "redis://user:pw@h1:6379,h2/2?key_prefix=a",
          "redis://user:***@h1:6379,h2/2?key_prefix=a" },
        { "redis://h/2?password=pw", "redis://h/2?password=***" },
        { "redis://h/2?pool=2&PassWord=pw&key_prefix=x",
          "redis://h/2?pool=2&PassWord=***&key_prefix=x" },
        { "redis+unix:///run/r.sock?password=pw&db=2",
          "redis+unix:///run/r.sock?password=***&db=2" },
        { "redis://:p@w@host", "redis://:***@host" },       /* the last '@' ends the userinfo */
        { "redis://:pa/ss@host/2", "redis://:***@host/2" }, /* malformed: hidden anyway */
        { "redis://pw@host", "redis://***@host" },          /* no ':': the whole userinfo */
        { "redis://:pw@host?password=pw2", "redis://:***@host?password=***" },
        { "mem://?max_memory=1MB&key_prefix=a@b", "mem://?max_memory=1MB&key_prefix=a@b" },
        { "mem://?passwords=x&password", "mem://?passwords=x&password" },
        { "redis://host/2?", "redis://host/2?" },
        { "", "" },
        { "no scheme:pw@host", "no scheme:***@host" },
        /* an '&' not percent-encoded inside a password: the rest is the password's too */
        { "redis://h/2?password=ab&cd", "redis://h/2?password=***" },
        { "redis://h/2?password=ab&cd&db=3", "redis://h/2?password=***&db=3" },
        { "redis://h/2?pool=2&password=ab&cd", "redis://h/2?pool=2&password=***" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[128];
        size_t n = corral_url_redact(cases[i].url, out, sizeof out);
        if (strcmp(out, cases[i].want) != 0 || n != strlen(cases[i].want))
            fail_msg("%s: '%s' (%zu), want '%s'", cases[i].url, out, n, cases[i].want);
    }
    assert_int_equal(corral_url_redact(NULL, NULL, 0), 0);
}

/* A password holding a '/', '@' or '&' not percent-encoded is refused by a message that shows no
 * part of it (it used to name the host or database it was cut into: "bad host ':sec'", or the
 * parameter it was cut into: "parameter 'ret' has no value"). */
static void test_parse_url_error_never_shows_a_password_cut_by_a_delimiter(void **state) {
    (void)state;
    static const struct {
        const char *url, *hint;
    } cases[] = {
        { "redis://:sec/ret@localhost:6379/0", "percent-encode" },
        { "redis://user:sec/ret@h/2", "percent-encode" },
        { "redis://:sec@ret/x@h/2", "percent-encode" },
        { "redis://h/sec@ret", "percent-encode" },
        { "redis://h/2?password=sec&ret", "%26" },
        { "redis://h/2?password=sec&ret=x", "%26" },
        { "redis://h/2?password=sec&ret&db=2", "%26" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        corral_options o;
        corral_options_init(&o);
        char buf[256];
        corral_error err = { 0 };
        int rc = corral_options_parse_url(&o, cases[i].url, buf, sizeof buf, &err);
        if (rc != CORRAL_EBADURL) fail_msg("%s: rc %d, want CORRAL_EBADURL", cases[i].url, rc);
        if (strstr(err.msg, "sec") || strstr(err.msg, "ret"))
            fail_msg("%s: the message shows the password: '%s'", cases[i].url, err.msg);
        assert_non_null(strstr(err.msg, cases[i].hint));
    }
}

/* A small buffer gets a NUL-terminated prefix of the redacted URL, never of the original. */
static void test_url_redact_cuts_like_snprintf(void **state) {
    (void)state;
    static const char url[] = "redis://:secret@host/2?password=secret";
    static const char want[] = "redis://:***@host/2?password=***";
    for (size_t cap = 1; cap <= sizeof want; cap++) {
        char out[sizeof want];
        memset(out, 'x', sizeof out);
        assert_int_equal(corral_url_redact(url, out, cap), sizeof want - 1);
        assert_int_equal(strlen(out), cap - 1);
        assert_memory_equal(out, want, cap - 1);
        assert_null(strstr(out, "sec"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_init_fills_documented_defaults),
        cmocka_unit_test(test_parse_url_accepts_valid_urls),
        cmocka_unit_test(test_parse_url_accepts_redis_urls),
        cmocka_unit_test(test_parse_url_reads_size_units),
        cmocka_unit_test(test_parse_url_refuses_malformed_urls_naming_the_part),
        cmocka_unit_test(test_parse_url_refuses_encoded_nul_in_values),
        cmocka_unit_test(test_parse_url_refuses_repeated_parameter),
        cmocka_unit_test(test_parse_url_keeps_fields_the_url_does_not_name),
        cmocka_unit_test(test_parse_url_leaves_options_unchanged_on_error),
        cmocka_unit_test(test_parse_url_points_strings_into_buf),
        cmocka_unit_test(test_parse_url_small_buf_is_enospc_and_changes_nothing),
        cmocka_unit_test(test_parse_url_url_length_plus_one_is_always_enough),
        cmocka_unit_test(test_parse_url_null_and_empty_change_nothing),
        cmocka_unit_test(test_open_null_and_empty_url_open_defaults),
        cmocka_unit_test(test_open_applies_url_parameters),
        cmocka_unit_test(test_open_bad_url_fails_with_null_handle_and_message),
        cmocka_unit_test(test_open_percent_decodes_key_prefix),
        cmocka_unit_test(test_open_opts_refuses_partial_allocator),
        cmocka_unit_test(test_open_opts_copies_its_strings),
        cmocka_unit_test(test_open_opts_refuses_zero_max_memory),
        cmocka_unit_test(test_url_redact_hides_every_credential),
        cmocka_unit_test(test_url_redact_cuts_like_snprintf),
        cmocka_unit_test(test_parse_url_error_never_shows_a_password_cut_by_a_delimiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
