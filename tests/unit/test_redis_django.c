/*
 * test_redis_django.c - the Redis store's Django wire format (serializer=django): the codec of
 * src/store/redis_django.c, table-driven against pickles Python made, and a round trip with a
 * real Django: corral writes and Django (Debian's python3-django with python3-django-redis, run
 * by /usr/bin/python3) reads, and the other way round, for str, bytes, int and a fragment key.
 * Values carry no corral envelope in this format: Django reads what get_or_set made as the plain
 * value, bytes that look like an envelope stay bytes, writes with tags are refused, and a call
 * can make a text value go as bytes (corral_call.is_binary).
 *
 * The Python side runs as a child process against the test's own redis-server; it checks what it
 * reads itself and prints "OK", or "FAIL ..." and exits 1. scripts/bootstrap installs the Debian
 * packages; without them the round-trip tests fail and say so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "corral/corral.h"
#include "store/redis_django.h"
#include "redis_server.h"

#define PYTHON     "/usr/bin/python3"
#define OUTPUT_MAX 4096

/* ---- The codec ---- */

typedef struct enc_case {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
} enc_case;

#define B(s) s, sizeof s - 1

static void test_django_encodes_ints_raw_text_as_str_and_the_rest_as_bytes(void **state) {
    (void)state;
    static const enc_case cases[] = {
        { B("42"), B("42") },
        { B("-7"), B("-7") },
        { B("0"), B("0") },
        { B("-9223372036854775808"), B("-9223372036854775808") },
        { B("007"), B("\x80\x04\x8c\x03"
                      "007.") },               /* would read back as 7 */
        { B("-0"), B("\x80\x04\x8c\x02-0.") }, /* would read back as 0 */
        { B("+1"), B("\x80\x04\x8c\x02+1.") },
        { B("123456789012345678901"), B("\x80\x04\x8c\x15"
                                        "123456789012345678901.") },
        { B(""), B("\x80\x04\x8c\x00.") },
        { B("h\xc3\xa9llo"), B("\x80\x04\x8c\x06h\xc3\xa9llo.") },
        { B("\x00\xff"), B("\x80\x04"
                           "C\x02\x00\xff.") },
        { B("\xc0\x80"), B("\x80\x04"
                           "C\x02\xc0\x80.") }, /* overlong: not UTF-8 */
        { B("\xed\xa0\x80"), B("\x80\x04"
                               "C\x03\xed\xa0\x80.") }, /* a surrogate */
        { B("\x80\x04\x88."), B("\x80\x04"
                                "C\x04\x80\x04\x88..") }, /* looks like a pickle */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const enc_case *c = &cases[i];
        size_t n = corral__django_encoded_len(c->in, c->in_len);
        if (n != c->out_len) fail_msg("case %zu: length %zu, want %zu", i, n, c->out_len);
        unsigned char out[64];
        corral__django_encode(c->in, c->in_len, out);
        if (memcmp(out, c->out, n) != 0) fail_msg("case %zu: wrong bytes", i);
        const unsigned char *v;
        size_t vlen;
        assert_int_equal(corral__django_decode(out, n, &v, &vlen), CORRAL_OK);
        assert_int_equal(vlen, c->in_len);
        assert_memory_equal(v, c->in, vlen);
    }
    /* Past 255 bytes the 4-byte length forms. */
    char text[300], bin[300];
    memset(text, 'x', sizeof text);
    memset(bin, 0xff, sizeof bin);
    unsigned char out[320];
    assert_int_equal(corral__django_encoded_len(text, sizeof text), 2 + 1 + 4 + 300 + 1);
    corral__django_encode(text, sizeof text, out);
    assert_memory_equal(out, "\x80\x04X\x2c\x01\x00\x00", 7);
    corral__django_encode(bin, sizeof bin, out);
    assert_memory_equal(out,
                        "\x80\x04"
                        "B\x2c\x01\x00\x00",
                        7);
}

static void test_django_encodes_as_bytes_when_asked(void **state) {
    (void)state;
    static const enc_case cases[] = {
        { B("42"), B("\x80\x04"
                     "C\x02"
                     "42.") },
        { B("h\xc3\xa9"), B("\x80\x04"
                            "C\x03h\xc3\xa9.") },
        { B(""), B("\x80\x04"
                   "C\x00.") },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const enc_case *c = &cases[i];
        size_t n = corral__django_encoded_len_as(c->in, c->in_len, true);
        if (n != c->out_len) fail_msg("case %zu: length %zu, want %zu", i, n, c->out_len);
        unsigned char out[32];
        corral__django_encode_as(c->in, c->in_len, true, out);
        if (memcmp(out, c->out, n) != 0) fail_msg("case %zu: wrong bytes", i);
        const unsigned char *v;
        size_t vlen;
        assert_int_equal(corral__django_decode(out, n, &v, &vlen), CORRAL_OK);
        assert_int_equal(vlen, c->in_len);
        assert_memory_equal(v, c->in, vlen);
    }
}

typedef struct dec_case {
    const char *name;
    const char *in;
    size_t in_len;
    int rc;
    const char *value;
    size_t value_len;
} dec_case;

static void test_django_decodes_pythons_str_and_bytes_and_refuses_the_rest(void **state) {
    (void)state;
    /* Made by CPython 3.11's pickle.dumps(obj, protocol). */
    static const dec_case cases[] = {
        { "str p2", B("\x80\x02X\x03\x00\x00\x00h\xc3\xa9q\x00."), CORRAL_OK, B("h\xc3\xa9") },
        { "bytes p3",
          B("\x80\x03"
            "C\x02\x00\x01q\x00."),
          CORRAL_OK, B("\x00\x01") },
        { "str p4 framed", B("\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00\x8c\x03h\xc3\xa9\x94."),
          CORRAL_OK, B("h\xc3\xa9") },
        { "bytes p5 framed",
          B("\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00"
            "C\x02\x00\x01\x94."),
          CORRAL_OK, B("\x00\x01") },
        { "str long put",
          B("\x80\x03X\x01\x00\x00\x00"
            "ar\x00\x00\x00\x00."),
          CORRAL_OK, B("a") },
        { "raw int", B("42"), CORRAL_OK, B("42") },
        { "raw text", B("hello"), CORRAL_OK, B("hello") },
        { "raw one byte", B("\x80"), CORRAL_OK, B("\x80") },
        { "bytes p2 via codecs",
          B("\x80\x02"
            "c_codecs\nencode\nq\x00X\x02\x00\x00\x00\x00\x01q\x01."),
          CORRAL_EFORMAT, NULL, 0 },
        { "bool", B("\x80\x04\x88."), CORRAL_EFORMAT, NULL, 0 },
        { "float", B("\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00."),
          CORRAL_EFORMAT, NULL, 0 },
        { "bytearray",
          B("\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00"
            "ab\x94."),
          CORRAL_EFORMAT, NULL, 0 },
        { "protocol 6",
          B("\x80\x06\x8c\x01"
            "a."),
          CORRAL_EFORMAT, NULL, 0 },
        { "truncated", B("\x80\x04\x8c\x05hel"), CORRAL_EFORMAT, NULL, 0 },
        { "no stop",
          B("\x80\x04\x8c\x01"
            "a"),
          CORRAL_EFORMAT, NULL, 0 },
        { "trailing bytes",
          B("\x80\x04\x8c\x01"
            "a.x"),
          CORRAL_EFORMAT, NULL, 0 },
        { "two objects",
          B("\x80\x04\x8c\x01"
            "a\x8c\x01"
            "b."),
          CORRAL_EFORMAT, NULL, 0 },
        { "frame past end",
          B("\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00\x8c\x01"
            "a."),
          CORRAL_EFORMAT, NULL, 0 },
        { "length past end",
          B("\x80\x04X\xff\xff\xff\xff"
            "a."),
          CORRAL_EFORMAT, NULL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const dec_case *c = &cases[i];
        const unsigned char *v = (const unsigned char *)"x";
        size_t vlen = 99;
        int rc = corral__django_decode(c->in, c->in_len, &v, &vlen);
        if (rc != c->rc) fail_msg("%s: rc %d, want %d", c->name, rc, c->rc);
        if (rc != CORRAL_OK) {
            assert_null(v);
            assert_int_equal(vlen, 0);
            continue;
        }
        if (vlen != c->value_len || memcmp(v, c->value, vlen) != 0)
            fail_msg("%s: wrong value", c->name);
    }
}

/* ---- A round trip with Django ---- */

/* Django 3.2 with django-redis (Debian 12): KEY_PREFIX djzen, VERSION 1, as the corral handle. */
static const char DJANGO_SCRIPT[] =
    "import sys\n"
    "import django\n"
    "from django.conf import settings\n"
    "port, mode = int(sys.argv[1]), sys.argv[2]\n"
    "settings.configure(CACHES={'default': {\n"
    "    'BACKEND': 'django_redis.cache.RedisCache',\n"
    "    'LOCATION': 'redis://127.0.0.1:%d/0' % port, 'KEY_PREFIX': 'djzen'}})\n"
    "django.setup()\n"
    "from django.core.cache import cache\n"
    "from django.core.cache.utils import make_template_fragment_key\n"
    "frag = make_template_fragment_key('product_card', [42, '2026-01-01 10:00:00'])\n"
    "if mode == 'read':\n"
    "    for k, want in [('s', 'h\\u00e9llo'), ('b', b'\\x00\\xffbin'), ('i', 42),\n"
    "                    ('neg', -7), (frag, '<div>card 42</div>'), ('big', 'z' * 70000)]:\n"
    "        got = cache.get(k)\n"
    "        if type(got) is not type(want) or got != want:\n"
    "            print('FAIL %s: %r (%s)' % (k, got, type(got).__name__)); sys.exit(1)\n"
    "    if cache.incr('i') != 43:\n"
    "        print('FAIL incr'); sys.exit(1)\n"
    "elif mode == 'read_bare':\n"
    "    for k, want in [('gos', 'made by get_or_set'), ('gosb', b'made as bytes'),\n"
    "                    ('fb', b'text as bytes'), ('fbm', b'42'),\n"
    "                    ('env', b'\\xc7\\x01\\x00\\x05\\x00bare')]:\n"
    "        got = cache.get(k)\n"
    "        if type(got) is not type(want) or got != want:\n"
    "            print('FAIL %s: %r (%s)' % (k, got, type(got).__name__)); sys.exit(1)\n"
    "else:\n"
    "    cache.set('s2', 'w\\u00f6rld', None)\n"
    "    cache.set('b2', b'\\x01\\x02\\xfe', None)\n"
    "    cache.set('i2', -7, None)\n"
    "    cache.set('f2', 1.5, None)\n"
    "    cache.set('big2', 'y' * 70000, None)\n"
    "    cache.set(make_template_fragment_key('product_card', [7, 'x']), '<div>card 7</div>',\n"
    "              None)\n"
    "print('OK')\n";

/* Runs the script in `mode`; fails the test unless it prints OK. */
static void run_django(const char *mode) {
    char port[16];
    snprintf(port, sizeof port, "%d", srv.port);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0) _exit(126);
        close(fds[0]);
        unsetenv("PYTHONPATH"); /* Debian's interpreter with Debian's packages, nothing else */
        unsetenv("PYTHONHOME");
        execl(PYTHON, PYTHON, "-c", DJANGO_SCRIPT, port, mode, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(close(fds[1]), 0);
    char out[OUTPUT_MAX];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fds[0], out + n, sizeof out - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n == sizeof out - 1) break;
    }
    out[n] = '\0';
    assert_int_equal(close(fds[0]), 0);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(out, "OK\n"))
        fail_msg("django (%s) said:\n%s\n(no module django? run scripts/bootstrap: it installs "
                 "python3-django and python3-django-redis)",
                 mode, out);
}

static corral *open_django(void) {
    return redis_fx_open(&srv, "?key_prefix=djzen&serializer=django");
}

static void set_bytes(corral *c, const char *key, const void *val, size_t len) {
    assert_int_equal(corral_set(c, key, strlen(key), val, len, CORRAL_TTL_FOREVER, NULL),
                     CORRAL_OK);
}

static void test_django_reads_what_corral_wrote(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_django();
    set_bytes(c, "s", "h\xc3\xa9llo", 6);
    set_bytes(c, "b",
              "\x00\xff"
              "bin",
              5);
    set_bytes(c, "i", "42", 2);
    corral_buf keys[1] = { { "neg", 3 } }, vals[1] = { { "-7", 2 } };
    assert_int_equal(corral_set_many(c, keys, vals, 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    char frag[128];
    size_t frag_len = 0;
    corral_buf vary[2] = { { "42", 2 }, { "2026-01-01 10:00:00", 19 } };
    assert_int_equal(corral_fragment_key("product_card", 12, vary, 2, frag, sizeof frag, &frag_len),
                     CORRAL_OK);
    set_bytes(c, frag, "<div>card 42</div>", 18);
    static char big[70000];
    memset(big, 'z', sizeof big);
    set_bytes(c, "big", big, sizeof big);
    run_django("read");
    /* Django's INCR went to the digits corral wrote. */
    corral_value *v = NULL;
    assert_int_equal(corral_get(c, "i", 1, NULL, &v), CORRAL_OK);
    assert_string_equal(corral_value_data(v), "43");
    corral_value_unref(v);
    corral_close(c);
}

static void expect_bytes(corral *c, const char *key, const void *want, size_t len) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != CORRAL_OK) fail_msg("%s: rc %d", key, rc);
    assert_int_equal(corral_value_len(v), len);
    assert_memory_equal(corral_value_data(v), want, len);
    corral_value_unref(v);
}

static void test_django_writes_read_back_in_corral(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    run_django("write");
    corral *c = open_django();
    expect_bytes(c, "s2", "w\xc3\xb6rld", 6);
    expect_bytes(c, "b2", "\x01\x02\xfe", 3);
    expect_bytes(c, "i2", "-7", 2);
    static char big[70000];
    memset(big, 'y', sizeof big);
    expect_bytes(c, "big2", big, sizeof big);
    char frag[128];
    size_t frag_len = 0;
    corral_buf vary[2] = { { "7", 1 }, { "x", 1 } };
    assert_int_equal(corral_fragment_key("product_card", 12, vary, 2, frag, sizeof frag, &frag_len),
                     CORRAL_OK);
    expect_bytes(c, frag, "<div>card 7</div>", 17);
    int64_t out = 0;
    assert_int_equal(corral_incr(c, "i2", 2, 1, NULL, &out), CORRAL_OK); /* Django's raw int */
    assert_int_equal(out, -6);
    /* A float is not bytes: a clear error, never its pickle's bytes. */
    corral_value *v = (corral_value *)&c;
    assert_int_equal(corral_get(c, "f2", 2, NULL, &v), CORRAL_EFORMAT);
    assert_null(v);
    char buf[16];
    size_t len = 9;
    assert_int_equal(corral_get_into(c, "f2", 2, NULL, buf, sizeof buf, &len), CORRAL_EFORMAT);
    corral_buf keys[2] = { { "s2", 2 }, { "f2", 2 } };
    corral_value *many[2];
    assert_int_equal(corral_get_many(c, keys, 2, NULL, many, NULL), CORRAL_EFORMAT);
    assert_null(many[0]);
    assert_null(many[1]);
    corral_close(c);
}

static void test_django_format_values_are_what_django_stores(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_django();
    set_bytes(c, "t", "hi", 2);
    set_bytes(c, "n", "12", 2);
    redisReply *r = redis_server_cmd(&srv, "GET djzen:1:t");
    assert_non_null(r);
    assert_int_equal(r->len, 7);
    assert_memory_equal(r->str, "\x80\x04\x8c\x02hi.", 7);
    freeReplyObject(r);
    r = redis_server_cmd(&srv, "GET djzen:1:n");
    assert_string_equal(r->str, "12");
    freeReplyObject(r);
    /* Raw mode stores the same bytes as they are. */
    corral *raw = redis_fx_open(&srv, "?key_prefix=djzen");
    expect_bytes(raw, "t", "\x80\x04\x8c\x02hi.", 7);
    corral_close(raw);
    corral_close(c);
}

/* ---- No envelope in Django's format ---- */

/* A producer making the text its argument points to. */
static int produce(void *arg, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    const char *text = arg;
    return corral_result_set(out, text, strlen(text));
}

static char made_text[] = "made by get_or_set", made_bytes[] = "made as bytes", never[] = "never";

static void test_django_reads_get_or_set_values_and_forced_bytes_bare(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_django();
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.ttl_ms = 30000;
    o.stale_ttl_ms = 60000; /* grace needs the envelope: ignored here */
    corral_value *v = NULL;
    assert_int_equal(corral_get_or_set(c, "gos", 3, produce, made_text, &o, &v), CORRAL_OK);
    corral_value_unref(v);
    o.call.is_binary = true;
    assert_int_equal(corral_get_or_set(c, "gosb", 4, produce, made_bytes, &o, &v), CORRAL_OK);
    corral_value_unref(v);
    corral_call bin = CORRAL_CALL_INIT;
    bin.is_binary = true;
    assert_int_equal(corral_set(c, "fb", 2, "text as bytes", 13, CORRAL_TTL_FOREVER, &bin),
                     CORRAL_OK);
    corral_buf keys[1] = { { "fbm", 3 } }, vals[1] = { { "42", 2 } };
    assert_int_equal(corral_set_many(c, keys, vals, 1, CORRAL_TTL_FOREVER, &bin), CORRAL_OK);
    set_bytes(c, "env",
              "\xc7\x01\x00\x05\x00"
              "bare",
              9); /* an empty envelope's bytes: a value like any other */
    run_django("read_bare");
    redisReply *r = redis_server_cmd(&srv, "GET djzen:1:gos");
    assert_non_null(r);
    assert_int_equal(r->len, 23);
    assert_memory_equal(r->str, "\x80\x04\x8c\x12made by get_or_set.", 23);
    freeReplyObject(r);
    r = redis_server_cmd(&srv, "PTTL djzen:1:gos");
    assert_non_null(r);
    assert_in_range(r->integer, 1, 30000); /* its TTL alone: no grace time kept */
    freeReplyObject(r);
    expect_bytes(c, "gos", "made by get_or_set", 18);
    expect_bytes(c, "fb", "text as bytes", 13);
    expect_bytes(c, "env",
                 "\xc7\x01\x00\x05\x00"
                 "bare",
                 9); /* whole: never split into an envelope and a payload */
    corral_close(c);
}

static void test_django_format_refuses_tags_and_writes_nothing(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = open_django();
    const char *tags[1] = { "product:42" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = 1;
    assert_int_equal(corral_set(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_ENOTSUP);
    assert_int_equal(corral_add(c, "k", 1, "v", 1, CORRAL_TTL_DEFAULT, &call), CORRAL_ENOTSUP);
    corral_buf keys[1] = { { "k", 1 } }, vals[1] = { { "v", 1 } };
    assert_int_equal(corral_set_many(c, keys, vals, 1, CORRAL_TTL_DEFAULT, &call), CORRAL_ENOTSUP);
    corral_load_opts o;
    corral_load_opts_init(&o);
    o.call = call;
    corral_value *v = (corral_value *)&v;
    assert_int_equal(corral_get_or_set(c, "k", 1, produce, never, &o, &v), CORRAL_ENOTSUP);
    assert_null(v);
    redisReply *r = redis_server_cmd(&srv, "DBSIZE");
    assert_non_null(r);
    assert_int_equal(r->integer, 0); /* no value, no tag version */
    freeReplyObject(r);
    corral_close(c);
}

/* serializer=bare: the caller's bytes go to Redis as they are, with no envelope (get_or_set's
 * too), and come back as they are; a pickle is not decoded. */
static void test_bare_format_stores_the_callers_bytes_as_they_are(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = redis_fx_open(&srv, "?key_prefix=djzen&serializer=bare");
    set_bytes(c, "p", "\x80\x04\x8c\x02hi.", 7);
    corral_load_opts o;
    corral_load_opts_init(&o);
    corral_value *v = NULL;
    assert_int_equal(corral_get_or_set(c, "g", 1, produce, made_text, &o, &v), CORRAL_OK);
    corral_value_unref(v);
    redisReply *r = redis_server_cmd(&srv, "GET djzen:1:p");
    assert_non_null(r);
    assert_int_equal(r->len, 7);
    assert_memory_equal(r->str, "\x80\x04\x8c\x02hi.", 7);
    freeReplyObject(r);
    r = redis_server_cmd(&srv, "GET djzen:1:g");
    assert_non_null(r);
    assert_int_equal(r->len, strlen(made_text));
    assert_memory_equal(r->str, made_text, r->len);
    freeReplyObject(r);
    expect_bytes(c, "p", "\x80\x04\x8c\x02hi.", 7);
    corral_buf keys[1] = { { "n", 1 } }, vals[1] = { { "41", 2 } };
    assert_int_equal(corral_set_many(c, keys, vals, 1, CORRAL_TTL_FOREVER, NULL), CORRAL_OK);
    int64_t out = 0;
    assert_int_equal(corral_incr(c, "n", 1, 1, NULL, &out), CORRAL_OK);
    assert_int_equal(out, 42);
    const char *tags[1] = { "t" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = tags;
    call.n_tags = 1;
    assert_int_equal(corral_set(c, "x", 1, "v", 1, 1000, &call), CORRAL_ENOTSUP);
    corral_close(c);
}

static void test_django_binary_flag_is_ignored_by_the_raw_format(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *raw = redis_fx_open(&srv, "?key_prefix=djzen");
    corral_call bin = CORRAL_CALL_INIT;
    bin.is_binary = true;
    assert_int_equal(corral_set(raw, "t", 1, "text", 4, CORRAL_TTL_FOREVER, &bin), CORRAL_OK);
    redisReply *r = redis_server_cmd(&srv, "GET djzen:1:t");
    assert_non_null(r);
    assert_string_equal(r->str, "text");
    freeReplyObject(r);
    corral_close(raw);
}

/* The near cache (a memory store) would split what begins like an envelope: such a value must
 * still read whole, however often it is read. */
static void test_django_near_cache_serves_values_whole(void **state) {
    (void)state;
    redis_server_ok(&srv, "FLUSHALL");
    corral *c = redis_fx_open(&srv, "?key_prefix=djzen&serializer=django&near_cache=1MB");
    redis_fx_wait_live(c);
    set_bytes(c, "env",
              "\xc7\x01\x00\x05\x00"
              "bare",
              9);
    set_bytes(c, "plain", "text", 4);
    for (int i = 0; i < 3; i++) {
        expect_bytes(c, "env",
                     "\xc7\x01\x00\x05\x00"
                     "bare",
                     9);
        expect_bytes(c, "plain", "text", 4);
    }
    corral_close(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_django_encodes_ints_raw_text_as_str_and_the_rest_as_bytes),
        cmocka_unit_test(test_django_encodes_as_bytes_when_asked),
        cmocka_unit_test(test_django_decodes_pythons_str_and_bytes_and_refuses_the_rest),
        cmocka_unit_test(test_django_reads_what_corral_wrote),
        cmocka_unit_test(test_django_writes_read_back_in_corral),
        cmocka_unit_test(test_django_format_values_are_what_django_stores),
        cmocka_unit_test(test_django_reads_get_or_set_values_and_forced_bytes_bare),
        cmocka_unit_test(test_django_format_refuses_tags_and_writes_nothing),
        cmocka_unit_test(test_django_binary_flag_is_ignored_by_the_raw_format),
        cmocka_unit_test(test_django_near_cache_serves_values_whole),
        cmocka_unit_test(test_bare_format_stores_the_callers_bytes_as_they_are),
    };
    return cmocka_run_group_tests(tests, redis_fx_group_setup, redis_fx_group_teardown);
}
