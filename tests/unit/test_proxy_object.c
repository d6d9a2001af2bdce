/*
 * test_proxy_object.c - corral-proxy's store side (cmd/proxy/object.c) without sockets: the
 * stored object's encoding round trip and its refusal of damaged bytes, the keys and tag names,
 * the commit under a vary record on a real memory store, and the purge stamps that void a fill
 * which a purge overtook. Also the proxy's return codes (util.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "proxy.h"

#define HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\n\r\n"

static void build(px_objbuf *b, const char *pk, const char *spec, const char *vk,
                  const char *body) {
    assert_int_equal(px_objbuf_init(b, pk, strlen(pk), spec, strlen(spec), vk, strlen(vk), HEAD,
                                    strlen(HEAD), 1000, 2000, 0),
                     PX_OK);
    /* In two appends, as a body arrives. */
    size_t half = strlen(body) / 2;
    assert_int_equal(px_objbuf_append(b, body, half), PX_OK);
    assert_int_equal(px_objbuf_append(b, body + half, strlen(body) - half), PX_OK);
}

static void test_object_encoding_round_trips(void **state) {
    (void)state;
    px_objbuf b;
    build(&b, "example.com/a?x=1", "accept-language", "en", "hello, world");
    corral_http_header hdrs[16];
    px_obj o;
    assert_int_equal(px_obj_parse_bytes(b.p, b.len, hdrs, 16, &o), PX_OK);
    assert_null(o.v);
    assert_int_equal(o.pk_len, 17);
    assert_memory_equal(o.pk, "example.com/a?x=1", 17);
    assert_int_equal(o.spec_len, 15);
    assert_memory_equal(o.spec, "accept-language", 15);
    assert_int_equal(o.vk_len, 2);
    assert_memory_equal(o.vk, "en", 2);
    assert_int_equal(o.req_ms, 1000);
    assert_int_equal(o.resp_ms, 2000);
    assert_int_equal(o.head.status, 200);
    const corral_http_header *etag = corral_http_msg_get(&o.head, "etag", NULL);
    assert_non_null(etag);
    assert_int_equal(etag->value_len, 4);
    assert_memory_equal(etag->value, "\"v1\"", 4);
    assert_int_equal(o.body_len, 12);
    assert_memory_equal(o.body, "hello, world", 12);
    px_objbuf_free(&b);
}

static void test_object_parse_refuses_every_truncation_and_a_bad_magic(void **state) {
    (void)state;
    px_objbuf b;
    build(&b, "example.com/", "", "", "body");
    corral_http_header hdrs[16];
    px_obj o;
    for (size_t len = 0; len < b.len; len++)
        if (px_obj_parse_bytes(b.p, len, hdrs, 16, &o) != PX_EFORMAT)
            fail_msg("a truncation to %zu of %zu bytes parsed", len, b.len);
    b.p[0] ^= 1;
    assert_int_equal(px_obj_parse_bytes(b.p, b.len, hdrs, 16, &o), PX_EFORMAT);
    px_objbuf_free(&b);
}

static px_route route_named(const char *name) {
    px_route r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", name);
    return r;
}

static void test_keys_name_the_route_and_hash_long_parts(void **state) {
    (void)state;
    px_route r = route_named("blog");
    char k[PX_KEY_MAX], k2[PX_KEY_MAX];
    size_t n = px_key_vary(&r, "example.com/a", 13, k);
    assert_int_equal(n, strlen("blog:v:example.com/a"));
    assert_memory_equal(k, "blog:v:example.com/a", n);
    /* A primary key over 128 bytes is hashed: "#" and 32 hex digits, one per URL. */
    char pk[300];
    memset(pk, 'a', sizeof pk);
    n = px_key_vary(&r, pk, sizeof pk, k);
    assert_int_equal(n, strlen("blog:v:#") + 32);
    assert_memory_equal(k, "blog:v:#", 8);
    pk[299] = 'b';
    size_t n2 = px_key_vary(&r, pk, sizeof pk, k2);
    assert_int_equal(n2, n);
    assert_true(memcmp(k, k2, n) != 0);
    /* Object keys: the generation in 16 hex digits, then the hash of (pk, vk). */
    n = px_key_object(&r, 0x0123456789abcdefull, "example.com/a", 13, "en", 2, k);
    assert_int_equal(n, strlen("blog:o:0123456789abcdef:") + 32);
    assert_memory_equal(k, "blog:o:0123456789abcdef:", 24);
    n2 = px_key_object(&r, 0x0123456789abcdefull, "example.com/a", 13, "de", 2, k2);
    assert_true(n2 == n && memcmp(k, k2, n) != 0); /* another variant, another key */
    n = px_key_flight(&r, "example.com/a", 13, "en", 2, k);
    assert_memory_equal(k, "blog:f:", 7);
    assert_int_equal(n, 7 + 32);
}

static void test_tags_and_paths(void **state) {
    (void)state;
    char t[PX_KEY_MAX];
    size_t n = px_tag_name('s', "product-42", 10, t);
    assert_int_equal(n, 12);
    assert_memory_equal(t, "s:product-42", 12);
    char longname[400];
    memset(longname, 'x', sizeof longname);
    n = px_tag_name('s', longname, sizeof longname, t);
    assert_int_equal(n, 2 + 32);
    assert_memory_equal(t, "s#", 2);

    const char *path;
    size_t plen;
    px_pk_path("example.com/blog/post?page=2", 28, &path, &plen);
    assert_int_equal(plen, 10);
    assert_memory_equal(path, "/blog/post", 10);
    px_pk_path("example.com", 11, &path, &plen);
    assert_int_equal(plen, 1);
    assert_memory_equal(path, "/", 1);

    px_config cfg;
    px_config_defaults(&cfg);
    cfg.path_tag_depth = 2;
    char store[PX_MAX_PATH_TAGS * (PX_KEY_MAX + 1)];
    const char *tags[PX_MAX_PATH_TAGS];
    const char *p = "/blog/2024/post/?x=1";
    size_t k = px_path_tags(&cfg, p, strlen(p), store, sizeof store, tags, PX_MAX_PATH_TAGS);
    assert_int_equal(k, 2); /* the depth bounds them */
    assert_string_equal(tags[0], "p:/blog");
    assert_string_equal(tags[1], "p:/blog/2024");
    assert_int_equal(px_path_tags(&cfg, "/", 1, store, sizeof store, tags, PX_MAX_PATH_TAGS), 0);
}

static corral *open_mem(void) {
    corral *c = NULL;
    assert_int_equal(corral_open(&c, "mem://?max_memory=16MB", NULL), CORRAL_OK);
    return c;
}

static void test_commit_stores_under_the_vary_record(void **state) {
    (void)state;
    corral *cache = open_mem();
    px_config cfg;
    px_config_defaults(&cfg);
    const px_route *r = &cfg.routes[0];
    px_objbuf b;
    build(&b, "example.com/a", "accept-language", "en", "bonjour");
    const char *tags[] = { "s:product-1" };
    corral_value *v = NULL;
    assert_int_equal(px_obj_commit(cache, &cfg, r, &b, 60000, tags, 1, px_now_ms(), &v), PX_OK);
    assert_non_null(v);
    px_vrec vr;
    assert_int_equal(px_vrec_get(cache, r, "example.com/a", 13, &vr), PX_OK);
    assert_true(vr.found);
    assert_false(vr.hit_for_pass);
    assert_string_equal(vr.spec, "accept-language");
    /* The object is where a lookup computes it, and reads back whole. */
    char okey[PX_KEY_MAX];
    size_t olen = px_key_object(r, vr.gen, "example.com/a", 13, "en", 2, okey);
    corral_value *got = NULL;
    assert_int_equal(corral_get(cache, okey, olen, NULL, &got), CORRAL_OK);
    corral_http_header hdrs[16];
    px_obj o;
    assert_int_equal(px_obj_parse(got, hdrs, 16, &o), PX_OK);
    assert_ptr_equal(o.v, got);
    assert_int_equal(o.body_len, 7);
    assert_memory_equal(o.body, "bonjour", 7);
    px_obj_release(&o);
    assert_null(o.v);
    corral_value_unref(v);
    px_objbuf_free(&b);
    corral_close(cache);
}

static void test_commit_after_a_purge_stamp_is_voided(void **state) {
    (void)state;
    corral *cache = open_mem();
    px_config cfg;
    px_config_defaults(&cfg);
    cfg.purge_margin_ms = 0;
    const px_route *r = &cfg.routes[0];
    int64_t start = px_now_ms() - 10000;
    /* A purge of the surrogate key after the fill started. */
    assert_int_equal(px_stamp_write(cache, "s:product-1", 11, start + 5000), PX_OK);
    const char *tags[] = { "s:product-1" };
    assert_int_equal(px_purged_since(cache, &cfg, r, "example.com/a", 13, tags, 1, start, false),
                     start + 5000);
    /* A fill that started after it is not concerned. */
    assert_int_equal(
        px_purged_since(cache, &cfg, r, "example.com/a", 13, tags, 1, start + 6000, false), 0);
    px_objbuf b;
    build(&b, "example.com/a", "", "", "old answer");
    corral_value *v = NULL;
    assert_int_equal(px_obj_commit(cache, &cfg, r, &b, 60000, tags, 1, start, &v),
                     PX_COMMIT_PURGED);
    assert_null(v);
    px_vrec vr;
    assert_int_equal(px_vrec_get(cache, r, "example.com/a", 13, &vr), PX_OK);
    char okey[PX_KEY_MAX];
    size_t olen = px_key_object(r, vr.gen, "example.com/a", 13, "", 0, okey);
    corral_value *got = NULL;
    assert_int_equal(corral_get(cache, okey, olen, NULL, &got), CORRAL_MISS);
    px_objbuf_free(&b);
    corral_close(cache);
}

static void test_tag_count_counts_each_valid_member_once(void **state) {
    (void)state;
    corral *cache = open_mem();
    bool more = true;
    assert_int_equal(px_tag_count(cache, "s:list", &more), 0);
    assert_false(more);
    /* Three entries under the tag, one noted twice (a refill), one under another tag. */
    const char *list[] = { "s:list" }, *other[] = { "s:other" };
    corral_call call = CORRAL_CALL_INIT;
    call.tags = list;
    call.n_tags = 1;
    static const char *const keys[] = { "r:o:1", "r:o:2", "r:o:3" };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(corral_set(cache, keys[i], 5, "x", 1, 60000, &call), CORRAL_OK);
        px_tag_note(cache, list, 1, keys[i], 5, 60000);
    }
    px_tag_note(cache, list, 1, keys[0], 5, 60000);
    call.tags = other;
    assert_int_equal(corral_set(cache, "r:o:4", 5, "x", 1, 60000, &call), CORRAL_OK);
    px_tag_note(cache, other, 1, "r:o:4", 5, 60000);
    assert_int_equal(px_tag_count(cache, "s:list", &more), 3);
    assert_false(more);
    /* A member gone from the store no longer counts; after the bust none does. */
    assert_int_equal(corral_delete(cache, "r:o:2", 5, NULL), CORRAL_OK);
    assert_int_equal(px_tag_count(cache, "s:list", &more), 2);
    assert_int_equal(corral_tag_bust(cache, "s:list"), CORRAL_OK);
    assert_int_equal(px_tag_count(cache, "s:list", &more), 0);
    assert_int_equal(px_tag_count(cache, "s:other", &more), 1);
    corral_close(cache);
}

static void test_return_codes_map_and_name(void **state) {
    (void)state;
    assert_int_equal(px_from_uv(UV_ENOMEM), PX_ENOMEM);
    assert_int_equal(px_from_uv(UV_ECONNREFUSED), PX_ECONNREFUSED);
    assert_int_equal(px_from_uv(UV_EOF), PX_EOF);
    assert_int_equal(px_from_uv(UV_ENOTSOCK), PX_EIO);
    assert_int_equal(px_from_uv(0), PX_OK);
    assert_int_equal(px_from_corral(CORRAL_ENOMEM), PX_ENOMEM);
    assert_int_equal(px_from_corral(CORRAL_ESTORE), PX_ESTORE);
    assert_int_equal(px_from_corral(CORRAL_EXISTS), CORRAL_EXISTS); /* outcomes pass */
    static const int codes[] = { PX_OK,
                                 PX_COMMIT_PURGED,
                                 PX_FLIGHT_PASS,
                                 PX_FLIGHT_STREAM,
                                 PX_FLIGHT_ORIGIN_TIMEOUT,
                                 PX_FLIGHT_ORIGIN_ERROR,
                                 PX_ENOMEM,
                                 PX_ESTAMP,
                                 PX_ESTORE,
                                 PX_EFORMAT,
                                 PX_ETOOBIG,
                                 PX_EINVAL,
                                 PX_EIO,
                                 PX_ECONNREFUSED,
                                 PX_ECONNRESET,
                                 PX_EOF,
                                 PX_EPROTO,
                                 PX_ETIMEDOUT,
                                 PX_EPIPE,
                                 PX_EADDRINUSE,
                                 PX_EACCES };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(px_strerror(codes[i]), "unknown error") == 0)
            fail_msg("code %d has no message", codes[i]);
    assert_string_equal(px_strerror(-42), "unknown error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_object_encoding_round_trips),
        cmocka_unit_test(test_object_parse_refuses_every_truncation_and_a_bad_magic),
        cmocka_unit_test(test_keys_name_the_route_and_hash_long_parts),
        cmocka_unit_test(test_tags_and_paths),
        cmocka_unit_test(test_commit_stores_under_the_vary_record),
        cmocka_unit_test(test_commit_after_a_purge_stamp_is_voided),
        cmocka_unit_test(test_tag_count_counts_each_valid_member_once),
        cmocka_unit_test(test_return_codes_map_and_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
