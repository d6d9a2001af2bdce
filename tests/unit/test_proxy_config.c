/*
 * test_proxy_config.c - corral-proxy's configuration (cmd/proxy/config.c): flags and an INI
 * file into a snapshot, the size and duration grammar it shares with libcorral, the errors,
 * and the route a request path matches (the longest prefix; the default route otherwise).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

/* Loads a snapshot from `path` (or none) and the flags, NULL-terminated. */
static px_config *load(const char *path, ...) {
    static char prog[] = "corral-proxy";
    char *argv[32] = { prog };
    int argc = 1;
    va_list ap;
    va_start(ap, path);
    for (char *a; argc < 31 && (a = va_arg(ap, char *)) != NULL;)
        argv[argc++] = a;
    va_end(ap);
    return px_config_load(path, argc, argv);
}

static void test_flags_fill_the_snapshot(void **state) {
    (void)state;
    px_config *cfg =
        load(NULL, "--origin", "http://127.0.0.1:9000", "--set", "limits.max_object_size=64MB",
             "--set", "limits.origin_read_timeout=5m", "--set", "limits.header_timeout=250ms",
             "--set", "limits.send_timeout=2", "--set", "cache.grace=1.5h", NULL);
    assert_non_null(cfg);
    assert_string_equal(cfg->origin_host, "127.0.0.1");
    assert_string_equal(cfg->origin_port, "9000");
    assert_int_equal(cfg->max_object_size, 64000000);
    assert_int_equal(cfg->read_timeout_ms, 300000);
    assert_int_equal(cfg->header_timeout_ms, 250);
    assert_int_equal(cfg->send_timeout_ms, 2000); /* bare: seconds */
    assert_int_equal(cfg->n_routes, 1);
    assert_string_equal(cfg->routes[0].name, "default");
    assert_int_equal(cfg->routes[0].policy.grace_ms, 5400000);
    px_config_unref(cfg);
}

static void test_sizes_take_every_unit(void **state) {
    (void)state;
    static const struct {
        const char *set;
        size_t want;
    } cases[] = {
        { "limits.max_object_size=4096", 4096 },      { "limits.max_object_size=64KiB", 65536 },
        { "limits.max_object_size=1MB", 1000000 },    { "limits.max_object_size=2 MiB", 2u << 20 },
        { "limits.max_object_size=1GB", 1000000000 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        px_config *cfg = load(NULL, "--origin", "http://h:1", "--set", cases[i].set, NULL);
        if (!cfg) fail_msg("%s refused", cases[i].set);
        if (cfg->max_object_size != cases[i].want)
            fail_msg("%s: %zu, want %zu", cases[i].set, cfg->max_object_size, cases[i].want);
        px_config_unref(cfg);
    }
}

static void test_bad_values_are_refused(void **state) {
    (void)state;
    static const char *bad[] = {
        "limits.max_object_size=-1",   "limits.max_object_size=lots",
        "limits.max_object_size=12XB", "limits.max_object_size=2000TB",
        "limits.header_timeout=5w",    "limits.header_timeout=-5",
        "limits.purge_margin=1h",      "cache.ttl=1.",
        "proxy.threads=9999",          "nosuch.key=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        px_config *cfg = load(NULL, "--origin", "http://h:1", "--set", bad[i], NULL);
        if (cfg) fail_msg("%s accepted", bad[i]);
    }
    assert_null(load(NULL, NULL)); /* no origin */
}

static void test_ini_file_routes_and_their_defaults(void **state) {
    (void)state;
    char path[] = "/tmp/test_proxy_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char ini[] = "[proxy]\n"
                              "origin = http://127.0.0.1:9000\n"
                              "[route:blog]\n"
                              "prefix = /blog/\n"
                              "ttl = 30s\n"
                              "vary = accept-language\n"
                              "[route:blog_old]\n"
                              "prefix = /blog/2019/\n"
                              "bypass = yes\n"
                              "[cache]\n"
                              "ttl = 5m\n"
                              "hit_for_pass = 0\n";
    assert_int_equal(write(fd, ini, sizeof ini - 1), (ssize_t)(sizeof ini - 1));
    assert_int_equal(close(fd), 0);
    px_config *cfg = load(path, NULL);
    assert_int_equal(unlink(path), 0);
    assert_non_null(cfg);
    assert_int_equal(cfg->n_routes, 3);
    const px_route *blog = px_route_match(cfg, "/blog/a", 7);
    assert_string_equal(blog->name, "blog");
    assert_int_equal(blog->policy.ttl_override_ms, 30000);
    assert_string_equal(blog->vary, "accept-language");
    assert_int_equal(blog->hit_for_pass_ms, 0); /* [cache], though it came after the route */
    const px_route *d = px_route_match(cfg, "/shop", 5);
    assert_string_equal(d->name, "default");
    assert_int_equal(d->policy.ttl_override_ms, 300000);
    px_config_unref(cfg);
}

static void test_route_match_takes_the_longest_prefix(void **state) {
    (void)state;
    px_config *cfg = load(NULL, "--origin", "http://h:1", "--route", "/blog/", "--route",
                          "/blog/2024/ name=y2024 ttl=1m", "--route", "/api", NULL);
    assert_non_null(cfg);
    static const struct {
        const char *path, *route;
    } cases[] = {
        { "/", "default" },   { "/blog", "default" }, /* "/blog/" needs its slash */
        { "/blog/", "blog" }, { "/blog/2023/x", "blog" }, { "/blog/2024/x", "y2024" },
        { "/api", "api" },    { "/apix", "api" },         { "/other", "default" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const px_route *r = px_route_match(cfg, cases[i].path, strlen(cases[i].path));
        if (strcmp(r->name, cases[i].route) != 0)
            fail_msg("%s matched %s, want %s", cases[i].path, r->name, cases[i].route);
    }
    px_config_unref(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_fill_the_snapshot),
        cmocka_unit_test(test_sizes_take_every_unit),
        cmocka_unit_test(test_bad_values_are_refused),
        cmocka_unit_test(test_ini_file_routes_and_their_defaults),
        cmocka_unit_test(test_route_match_takes_the_longest_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
