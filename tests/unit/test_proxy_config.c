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
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"

/* Parses argv (NULL-terminated, after the program name) into `f`; fails the test on error. */
static void flags_from(px_flags *f, char **args) {
    static char prog[] = "corral-proxy";
    char *argv[40] = { prog };
    int argc = 1;
    while (argc < 39 && args[argc - 1])
        argv[argc] = args[argc - 1], argc++;
    px_error err;
    if (!px_flags_parse(f, argc, argv, &err)) fail_msg("flags refused: %s", err.msg);
}

/* Loads a snapshot from `path` (or none) and the flags, NULL-terminated. */
static px_config *load(char *path, ...) {
    static char config_flag[] = "--config";
    char *args[40] = { NULL };
    size_t n = 0;
    if (path) {
        args[n++] = config_flag;
        args[n++] = path;
    }
    va_list ap;
    va_start(ap, path);
    for (char *a; n < 38 && (a = va_arg(ap, char *)) != NULL;)
        args[n++] = a;
    va_end(ap);
    static px_flags f; /* static: it is large */
    flags_from(&f, args);
    px_error err;
    return px_config_load(&f, &err);
}

/* The error of parsing INI `text` (as "f.ini") with the flags `args` (NULL-terminated); fails
 * the test if the configuration is accepted. */
static const char *refusal(const char *text, char **args, bool *usage) {
    static px_flags f;
    static px_error err;
    flags_from(&f, args);
    px_config *cfg = px_config_parse("f.ini", text, text ? strlen(text) : 0, &f, &err);
    if (cfg) {
        px_config_unref(cfg);
        fail_msg("accepted: %s", text ? text : args[0] ? args[0] : "(no arguments)");
    }
    if (usage) *usage = err.usage;
    return err.msg;
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

/* A fleet wait ends by half of coalesce_timeout (cmd/proxy/fleet.c): a lease longer than that
 * is refused, so that this proxy's waiters outlast the wait of the request they queue behind. */
static void test_fleet_lease_is_at_most_half_of_coalesce_timeout(void **state) {
    (void)state;
    px_config *cfg = load(NULL, "--origin", "http://h:1", NULL);
    assert_non_null(cfg);
    assert_true(cfg->fleet_lease_ms > 0 && cfg->fleet_lease_ms <= cfg->coalesce_timeout_ms / 2);
    px_config_unref(cfg);
    static char origin_flag[] = "--origin", origin[] = "http://h:1";
    char *args[] = { origin_flag, origin, NULL };
    const char *msg = refusal("[limits]\nfleet_lease = 2s\ncoalesce_timeout = 2s\n", args, NULL);
    assert_non_null(strstr(msg, "at most half of coalesce_timeout"));
    msg = refusal("[limits]\ncoalesce_timeout = 5s\n", args, NULL); /* the default lease */
    assert_non_null(strstr(msg, "fleet_lease"));
    cfg = load(NULL, "--origin", "http://h:1", "--set", "limits.coalesce_timeout=5m", "--set",
               "limits.fleet_lease=2s", NULL);
    assert_non_null(cfg);
    px_config_unref(cfg);
    cfg = load(NULL, "--origin", "http://h:1", "--set", "limits.coalesce_timeout=1s", "--set",
               "limits.fleet_lease=0", NULL);
    assert_non_null(cfg); /* off */
    px_config_unref(cfg);
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

/* Each flag error names the flag (or --set's key), the value and why. */
static void test_flag_errors_say_which_flag_value_and_why(void **state) {
    (void)state;
    static const struct {
        const char *flag, *value, *want;
    } cases[] = {
        { "--origin", "https://example.com",
          "--origin 'https://example.com': TLS to the origin is not supported" },
        { "--origin", "localhost:8000", "--origin 'localhost:8000': no scheme: want http://" },
        { "--origin", "/var/www", "--origin '/var/www': a path, not a URL" },
        { "--origin", "ftp://h", "scheme 'ftp' is not supported" },
        { "--origin", "http://h:1/app/", "a path or query after the host is not supported" },
        { "--origin", "http://h:99999", "port '99999' is not a number from 0 to 65535" },
        { "--origin", "http://:80", "no host" },
        { "--listen", "8080", "--listen '8080': no host: want HOST:PORT (127.0.0.1:8080" },
        { "--listen", "localhost", "--listen 'localhost': no port" },
        { "--listen", "[::1:80", "unclosed '['" },
        { "--threads", "many", "--threads 'many': want an integer from 0 (one per core) to 256" },
        { "--access-log-format", "xml", "want corral, combined or json" },
        { "--set", "cache.ttl=abc", "--set cache.ttl: [cache] ttl = 'abc': want a duration" },
        { "--set", "limits.max_headers=0", "[limits] max_headers = '0': want an integer from 1" },
        { "--set", "cache.ttll=1",
          "unknown key 'ttll' in [cache] (known: honor_request_cache_control, path_tag_depth, "
          "ttl," },
        { "--set", "proxy.keep_surrogate_key=maybe",
          "[proxy] keep_surrogate_key = 'maybe': want true or false" },
        { "--set", "proxy.targeted_cache_control=a\x01b",
          "': want off, or a comma list of field names" },
        { "--set", "nosuch.key=1", "[nosuch] key = '1': unknown section" },
        { "--set", "ttl", "--set 'ttl': want SECTION.KEY=VALUE" },
        { "--route", "/blog/ foo=1", "--route '/blog/ foo=1': unknown key 'foo' in [route:blog]" },
        { "--route", "/blog/ ttl", "--route '/blog/ ttl': 'ttl' is not key=value" },
        { "--route", "blog/", "the prefix starting with '/'" },
        { "--route", "/b/ name=default", "bad route name 'default'" },
    };
    static char origin_flag[] = "--origin", origin[] = "http://h:1";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *args[] = { origin_flag, origin, (char *)cases[i].flag, (char *)cases[i].value, NULL };
        bool usage = true;
        const char *msg = refusal(NULL, args, &usage);
        if (!strstr(msg, cases[i].want))
            fail_msg("%s %s: '%s', want '%s'", cases[i].flag, cases[i].value, msg, cases[i].want);
        if (usage) fail_msg("%s %s: a value error marked as a usage error", cases[i].flag, msg);
    }
}

/* getopt_long: --flag=value works; the shape errors are usage errors. */
static void test_flags_take_equals_and_report_usage_errors(void **state) {
    (void)state;
    px_config *cfg = load(NULL, "--origin=http://127.0.0.1:9000", "--listen=:0", NULL);
    assert_non_null(cfg);
    assert_string_equal(cfg->origin_port, "9000");
    assert_string_equal(cfg->listen_host, "0.0.0.0");
    px_config_unref(cfg);
    static const struct {
        const char *args[3], *want;
    } cases[] = {
        { { "--nope", NULL }, "unknown option '--nope'" },
        { { "-x", NULL }, "unknown option '-x'" },
        { { "--admin-tokn=s3cret", NULL }, "unknown option '--admin-tokn'" },
        { { "--origin", NULL }, "option '--origin' needs a value" },
        { { "--origin", "http://h:1", "stray" }, "unexpected argument 'stray'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static char prog[] = "corral-proxy";
        char *argv[] = { prog, (char *)cases[i].args[0], (char *)cases[i].args[1],
                         (char *)cases[i].args[2], NULL };
        int argc = 1;
        while (argv[argc])
            argc++;
        static px_flags f;
        px_error err;
        assert_false(px_flags_parse(&f, argc, argv, &err));
        assert_true(err.usage);
        if (!strstr(err.msg, cases[i].want)) fail_msg("'%s', want '%s'", err.msg, cases[i].want);
        assert_null(strstr(err.msg, "s3cret")); /* a mistyped flag's value is never shown */
    }
    char *none[] = { NULL };
    bool usage = false;
    assert_non_null(strstr(refusal(NULL, none, &usage), "no origin"));
    assert_true(usage);
}

/* Config-file errors name the file, the line, the key and why. */
static void test_file_errors_say_file_line_key_and_why(void **state) {
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        { "[proxy\norigin = http://h:1\n", "f.ini:1: unclosed section header '[proxy'" },
        { "[route:blog]\nprefix = /a/\n\n[route:blog]\nprefix = /b/\n",
          "f.ini:4: section [route:blog] is given twice (first at line 1)" },
        { "[proxy]\norigin = http://h:1\n[proxy]\n", "f.ini:3: section [proxy] is given twice" },
        { "; hi\n[proxy]\norigin = https://h\n",
          "f.ini:3: [proxy] origin = 'https://h': TLS to the origin is not supported" },
        { "[cache]\n\nttl = abc  ; a comment\n", "f.ini:3: [cache] ttl = 'abc': want a duration" },
        { "[cache]\nttll = 1\n",
          "f.ini:2: unknown key 'ttll' in [cache] (known: honor_request_cache_control," },
        { "[cache]\nprefix = /a/\n", "f.ini:2: unknown key 'prefix' in [cache]" },
        { "origin = http://h:1\n", "f.ini:1: key 'origin' comes before any section" },
        { "[proxy]\njunk\n", "f.ini:2: 'junk' is not 'key = value'" },
        { "[proxy]\n= 1\n", "f.ini:2: '= ...' has no key" },
        /* A value without its '=' is not shown: it may be a token or a password. */
        { "[proxy]\nadmin_token s3cret\n", "f.ini:2: 'admin_token ...' is not 'key = value'" },
        { "[proxy]\nstore\tredis://:s3cret@h/0\n", "f.ini:2: 'store ...' is not 'key = value'" },
        { "[proxy]\n=s3cret\n", "f.ini:2: '= ...' has no key" },
        { "[proxy] x\n", "f.ini:1: text after the section header" },
        { "[]\n", "f.ini:1: an empty section name" },
        { "[nope]\n", "f.ini:1: [nope]: unknown section" },
        { "[route:default]\n", "f.ini:1: [route:default]: the route 'default' is built in" },
        { "[route:a b]\n", "f.ini:1: [route:a b]: a route name is 1 to 32" },
        { "[route:blog]\nttl = 1m\n", "route blog (f.ini:1) has no prefix" },
        { "[route:a]\nprefix = /x/\n[route:b]\nprefix = /x/\n",
          "routes a (f.ini:1) and b (f.ini:3) have the same prefix '/x/'" },
        { "[proxy]\nthreads = 1\0\n", "f.ini: a NUL byte" },
    };
    static char origin_flag[] = "--origin", origin[] = "http://h:1";
    char *args[] = { origin_flag, origin, NULL };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        static px_flags f;
        static px_error err;
        flags_from(&f, args);
        size_t len = strlen(cases[i].text);
        if (strstr(cases[i].want, "NUL")) len += 2;
        px_config *cfg = px_config_parse("f.ini", cases[i].text, len, &f, &err);
        if (cfg) fail_msg("accepted: %s", cases[i].text);
        if (!strstr(err.msg, cases[i].want)) fail_msg("'%s', want '%s'", err.msg, cases[i].want);
        if (strstr(err.msg, "s3cret")) fail_msg("'%s' shows the secret", err.msg);
    }
}

/* libinih's grammar is kept: comments, inline comments after a space, a BOM, spaces; and a
 * line longer than its 200-byte buffer is read whole. */
static void test_ini_grammar_comments_bom_and_long_lines(void **state) {
    (void)state;
    char text[2048];
    int w = snprintf(text, sizeof text,
                     "\xEF\xBB\xBF# a comment\n"
                     "[proxy]\r\n"
                     "  origin=http://127.0.0.1:9000/   ; inline\n"
                     "store = mem://?key_prefix=%0300d\n"
                     "[route:a]\n"
                     "prefix = /a;b/\n",
                     0);
    assert_true(w > 0 && (size_t)w < sizeof text);
    char *none[] = { NULL };
    static px_flags f;
    px_error err;
    flags_from(&f, none);
    px_config *cfg = px_config_parse("f.ini", text, (size_t)w, &f, &err);
    if (!cfg) fail_msg("%s", err.msg);
    assert_string_equal(cfg->origin_port, "9000");
    assert_int_equal(strlen(cfg->store_url), strlen("mem://?key_prefix=") + 300);
    assert_string_equal(cfg->routes[1].prefix, "/a;b/");
    px_config_unref(cfg);
}

/* Writes `text` to a new temporary file of mode `mode`; its path goes to `path` (a template). */
static void temp_file(char *path, const char *text, mode_t mode) {
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* The token file: its first line, refused when others may read it, empty or not a token. */
static void test_token_file_is_read_only_when_private(void **state) {
    (void)state;
    static const struct {
        const char *text;
        mode_t mode;
        const char *want; /* the token, or a piece of the refusal */
    } cases[] = {
        { "s3cret-token\n", 0600, "s3cret-token" },
        { "s3cret-token  \r\nsecond line\n", 0400, "s3cret-token" },
        { "s3cret-token\n", 0640, "group or others may read or write it (mode 640)" },
        { "s3cret-token\n", 0604, "group or others may read or write it (mode 604)" },
        { "", 0600, "empty" },
        { "two words\n", 0600, "the first line must be the token" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[] = "/tmp/test_proxy_token_XXXXXX";
        temp_file(path, cases[i].text, cases[i].mode);
        char token[128] = "";
        px_error err = { .msg = "" };
        bool ok = px_read_token_file(path, token, sizeof token, &err);
        assert_int_equal(unlink(path), 0);
        const char *got = ok ? token : err.msg;
        if (!strstr(got, cases[i].want))
            fail_msg("case %zu: '%s', want '%s'", i, got, cases[i].want);
        if (!ok && strstr(err.msg, "s3cret")) fail_msg("case %zu: the token in '%s'", i, err.msg);
    }
    char token[8];
    px_error err;
    char path[] = "/tmp/test_proxy_token_XXXXXX";
    temp_file(path, "0123456789\n", 0600);
    assert_false(px_read_token_file(path, token, sizeof token, &err));
    assert_int_equal(unlink(path), 0);
    assert_non_null(strstr(err.msg, "longer than 7 bytes"));
    assert_false(px_read_token_file("/tmp", token, sizeof token, &err));
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* The token's sources, the last one winning: the file's key, the environment, the flags. */
static void test_token_sources_file_then_environment_then_flags(void **state) {
    (void)state;
    char tf[] = "/tmp/test_proxy_token_XXXXXX";
    temp_file(tf, "from-file\n", 0600);
    char ini[300];
    snprintf(ini, sizeof ini, "[proxy]\norigin = http://h:1\nadmin_token_file = %s\n", tf);
    static char flag_file[] = "--admin-token-file", flag_token[] = "--admin-token=from-flag";
    char *none[] = { NULL }, *by_flag[] = { flag_token, NULL },
         *by_file[] = { flag_file, tf, NULL };
    static const struct {
        const char *ini_token; /* NULL: the file names the token file */
        const char *env;
        int flags; /* 0 none, 1 --admin-token, 2 --admin-token-file */
        const char *want;
    } cases[] = {
        { NULL, NULL, 0, "from-file" },       { "in-ini", NULL, 0, "in-ini" },
        { NULL, "from-env", 0, "from-env" },  { "in-ini", "from-env", 0, "from-env" },
        { NULL, "from-env", 1, "from-flag" }, { "in-ini", "from-env", 2, "from-file" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[300];
        if (cases[i].ini_token)
            snprintf(text, sizeof text, "[proxy]\norigin = http://h:1\nadmin_token = %s\n",
                     cases[i].ini_token);
        else
            snprintf(text, sizeof text, "%s", ini);
        if (cases[i].env)
            assert_int_equal(setenv("CORRAL_ADMIN_TOKEN", cases[i].env, 1), 0);
        else
            assert_int_equal(unsetenv("CORRAL_ADMIN_TOKEN"), 0);
        static px_flags f;
        flags_from(&f, cases[i].flags == 1 ? by_flag : cases[i].flags == 2 ? by_file : none);
        px_error err;
        px_config *cfg = px_config_parse("f.ini", text, strlen(text), &f, &err);
        if (!cfg) fail_msg("case %zu: %s", i, err.msg);
        if (strcmp(cfg->admin_token, cases[i].want) != 0)
            fail_msg("case %zu: '%s', want '%s'", i, cfg->admin_token, cases[i].want);
        px_config_unref(cfg);
    }
    assert_int_equal(unsetenv("CORRAL_ADMIN_TOKEN"), 0);
    assert_int_equal(unlink(tf), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_fill_the_snapshot),
        cmocka_unit_test(test_sizes_take_every_unit),
        cmocka_unit_test(test_bad_values_are_refused),
        cmocka_unit_test(test_fleet_lease_is_at_most_half_of_coalesce_timeout),
        cmocka_unit_test(test_ini_file_routes_and_their_defaults),
        cmocka_unit_test(test_route_match_takes_the_longest_prefix),
        cmocka_unit_test(test_flag_errors_say_which_flag_value_and_why),
        cmocka_unit_test(test_flags_take_equals_and_report_usage_errors),
        cmocka_unit_test(test_file_errors_say_file_line_key_and_why),
        cmocka_unit_test(test_ini_grammar_comments_bom_and_long_lines),
        cmocka_unit_test(test_token_file_is_read_only_when_private),
        cmocka_unit_test(test_token_sources_file_then_environment_then_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
