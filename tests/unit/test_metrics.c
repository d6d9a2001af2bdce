/*
 * test_metrics.c - per-prefix metrics through the public API: corral_stats snapshots after a
 * known sequence of operations (exact counters and gauges per prefix), the prefix bound, and the
 * Prometheus text of corral_metrics_write (HELP/TYPE lines, values, label escaping).
 *
 * The prefix of a user key is the part before its first ':' (the handle's key_prefix plays no
 * part); a fragment key counts under "template.cache.<name>". Exact byte gauges come from the
 * memory store's own accounting rule (internal headers): corral__mem_entry_bytes of the physical
 * key, costed by corral__mem_block_cost as with libc's allocator, which these handles use.
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
#include "store/memory.h"
#include "store/memory_block.h"
#include "metrics_list.h"

#define T0_NS ((uint64_t)1767225600 * 1000000000u)

typedef struct fixture {
    uint64_t now_ns;
    corral *c; /* mem://, key_prefix djzen */
} fixture;

static uint64_t fake_now(void *ctx) {
    return ((const fixture *)ctx)->now_ns;
}

static corral *open_clocked(fixture *f, const char *url) {
    corral_options o;
    corral_options_init(&o);
    char buf[256];
    assert_int_equal(corral_options_parse_url(&o, url, buf, sizeof buf, NULL), CORRAL_OK);
    o.now_ns = fake_now;
    o.clock_ctx = f;
    corral *c = NULL;
    assert_int_equal(corral_open_opts(&c, &o, NULL), CORRAL_OK);
    return c;
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->now_ns = T0_NS;
    f->c = open_clocked(f, "mem://?max_memory=16MB&key_prefix=djzen");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    corral_close(f->c);
    free(f);
    return 0;
}

static void set_ok(corral *c, const char *key, const char *val) {
    int rc = corral_set(c, key, strlen(key), val, strlen(val), CORRAL_TTL_DEFAULT, NULL);
    if (rc != CORRAL_OK) fail_msg("set '%s': rc %d", key, rc);
}

/* Gets `key` and asserts the outcome (CORRAL_OK or CORRAL_MISS). */
static void get_expect(corral *c, const char *key, int want) {
    corral_value *v = NULL;
    int rc = corral_get(c, key, strlen(key), NULL, &v);
    if (rc != want) fail_msg("get '%s': rc %d, want %d", key, rc, want);
    corral_value_unref(v);
}

static corral_stats_snapshot *snap(corral *c) {
    corral_stats_snapshot *s = NULL;
    assert_int_equal(corral_stats(c, &s), CORRAL_OK);
    assert_non_null(s);
    return s;
}

static const corral_prefix_stats *find(const corral_stats_snapshot *s, const char *prefix) {
    for (size_t i = 0; i < s->n_prefixes; i++)
        if (strcmp(s->prefixes[i].prefix, prefix) == 0) return &s->prefixes[i];
    fail_msg("prefix '%s' not in the snapshot", prefix);
    return NULL;
}

/* The bytes the memory store accounts for user key `key` with a value of `val_len` bytes. */
static int64_t entry_bytes(corral *c, const char *key, size_t val_len) {
    char phys[300];
    size_t len = 0;
    assert_int_equal(corral_make_key(c, key, strlen(key), NULL, phys, sizeof phys, &len),
                     CORRAL_OK);
    corral__allocator libc;
    corral__allocator_init(&libc, NULL);
    corral__mem_blocks blocks;
    corral__mem_blocks_init(&blocks, &libc, 16000000);
    return (int64_t)corral__mem_block_cost(&blocks, corral__mem_entry_bytes(len, val_len));
}

static char *metrics_text(corral *c) {
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(corral_metrics_write(c, &out, &len), CORRAL_OK);
    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    return out;
}

/* Asserts that `text` holds `line` as a whole line. */
static void expect_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
    }
    fail_msg("line '%s' not found in:\n%s", line, text);
}

/* ---- corral_stats ---- */

static void test_stats_counts_hits_misses_sets_deletes_per_prefix(void **state) {
    fixture *f = *state;
    set_ok(f->c, "featured_products:v3", "[1,2,3]");
    for (int i = 0; i < 3; i++)
        get_expect(f->c, "featured_products:v3", CORRAL_OK);
    get_expect(f->c, "featured_products:v4", CORRAL_MISS);
    get_expect(f->c, "user:42", CORRAL_MISS);
    assert_int_equal(corral_delete(f->c, "featured_products:v3", 20, NULL), CORRAL_OK);
    assert_int_equal(corral_delete(f->c, "featured_products:v9", 20, NULL), CORRAL_MISS);
    corral_stats_snapshot *s = snap(f->c);
    const corral_prefix_stats *fp = find(s, "featured_products");
    assert_int_equal(fp->hits, 3);
    assert_int_equal(fp->misses, 1);
    assert_int_equal(fp->sets, 1);
    assert_int_equal(fp->deletes, 1);
    assert_int_equal(fp->items, 0);
    assert_int_equal(fp->bytes, 0);
    const corral_prefix_stats *user = find(s, "user");
    assert_int_equal(user->hits, 0);
    assert_int_equal(user->misses, 1);
    assert_int_equal(user->sets, 0);
    corral_stats_free(f->c, s);
}

static void test_stats_items_and_bytes_follow_live_entries(void **state) {
    fixture *f = *state;
    set_ok(f->c, "page:home", "0123456789");
    set_ok(f->c, "page:about", "01234567890123456789");
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(find(s, "page")->items, 2);
    assert_int_equal(find(s, "page")->bytes,
                     entry_bytes(f->c, "page:home", 10) + entry_bytes(f->c, "page:about", 20));
    corral_stats_free(f->c, s);
    assert_int_equal(corral_delete(f->c, "page:home", 9, NULL), CORRAL_OK);
    set_ok(f->c, "page:about", "01234");
    s = snap(f->c);
    assert_int_equal(find(s, "page")->items, 1);
    assert_int_equal(find(s, "page")->bytes, entry_bytes(f->c, "page:about", 5));
    corral_stats_free(f->c, s);
}

/* Overwrites of one size go in place (one OVERWRITTEN event, store.h), of another size through a
 * new entry (REPLACED, ADDED), of a value over the in-place limit always so: the gauges of each
 * prefix stay the bytes of the values last written, however the overwrites went. */
static void test_stats_items_and_bytes_stay_exact_under_overwrites(void **state) {
    fixture *f = *state;
    enum { KEYS = 24, ROUNDS = 1500 };
    static const size_t sizes[] = { 1, 7, 100, 101, 600, 4096, 5000 };
    static char val[5000];
    memset(val, 'v', sizeof val);
    size_t len[KEYS] = { 0 };
    uint32_t x = 12345;
    for (int i = 0; i < ROUNDS; i++) {
        x = x * 1103515245u + 12345u;
        int k = (int)((x >> 8) % KEYS);
        /* Three times in four the size the key has (in place), else another one. */
        if (len[k] == 0 || (x >> 20) % 4 == 0) len[k] = sizes[(x >> 24) % 7];
        char key[32];
        snprintf(key, sizeof key, "%s:%d", k % 2 ? "odd" : "even", k);
        val[0] = (char)('a' + i % 26);
        assert_int_equal(corral_set(f->c, key, strlen(key), val, len[k], CORRAL_TTL_DEFAULT, NULL),
                         CORRAL_OK);
    }
    int64_t want[2] = { 0, 0 }, items[2] = { 0, 0 };
    for (int k = 0; k < KEYS; k++) {
        if (len[k] == 0) continue;
        char key[32];
        snprintf(key, sizeof key, "%s:%d", k % 2 ? "odd" : "even", k);
        want[k % 2] += entry_bytes(f->c, key, len[k]);
        items[k % 2]++;
    }
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(find(s, "even")->items, items[0]);
    assert_int_equal(find(s, "odd")->items, items[1]);
    assert_int_equal(find(s, "even")->bytes, want[0]);
    assert_int_equal(find(s, "odd")->bytes, want[1]);
    assert_int_equal(find(s, "even")->sets + find(s, "odd")->sets, ROUNDS);
    assert_int_equal(s->used_bytes, (size_t)(want[0] + want[1]));
    corral_stats_free(f->c, s);
}

static void test_stats_total_sums_every_prefix(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "x");
    set_ok(f->c, "b:1", "yy");
    get_expect(f->c, "a:1", CORRAL_OK);
    get_expect(f->c, "b:2", CORRAL_MISS);
    corral_stats_snapshot *s = snap(f->c);
    corral_prefix_stats sum = { .hits = 0 };
    for (size_t i = 0; i < s->n_prefixes; i++) {
        sum.hits += s->prefixes[i].hits;
        sum.misses += s->prefixes[i].misses;
        sum.sets += s->prefixes[i].sets;
        sum.items += s->prefixes[i].items;
        sum.bytes += s->prefixes[i].bytes;
    }
    assert_string_equal(s->total.prefix, "");
    assert_int_equal(s->total.hits, 1);
    assert_int_equal(s->total.misses, 1);
    assert_int_equal(s->total.hits, sum.hits);
    assert_int_equal(s->total.misses, sum.misses);
    assert_int_equal(s->total.sets, sum.sets);
    assert_int_equal(s->total.items, sum.items);
    assert_int_equal(s->total.bytes, sum.bytes);
    corral_stats_free(f->c, s);
}

static void test_stats_used_bytes_matches_the_byte_gauges(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "x");
    set_ok(f->c, "b:1", "0123456789");
    set_ok(f->c, "b:1", "012");
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(s->max_memory_bytes, 16000000);
    assert_int_equal(s->used_bytes, (size_t)s->total.bytes);
    assert_int_equal(s->total.bytes, entry_bytes(f->c, "a:1", 1) + entry_bytes(f->c, "b:1", 3));
    corral_stats_free(f->c, s);
}

static void test_stats_prefixes_are_sorted(void **state) {
    fixture *f = *state;
    static const char *const keys[] = { "zeta:1", "alpha:1", "mid:1", "beta:1" };
    for (size_t i = 0; i < 4; i++)
        set_ok(f->c, keys[i], "v");
    corral_stats_snapshot *s = snap(f->c);
    assert_true(s->n_prefixes >= 4);
    for (size_t i = 1; i < s->n_prefixes; i++)
        if (strcmp(s->prefixes[i - 1].prefix, s->prefixes[i].prefix) >= 0)
            fail_msg("'%s' before '%s'", s->prefixes[i - 1].prefix, s->prefixes[i].prefix);
    corral_stats_free(f->c, s);
}

static void test_stats_fragment_key_counts_under_its_template_name(void **state) {
    fixture *f = *state;
    corral_buf vary[2] = { { "42", 2 }, { "2026-01-01 10:00:00", 19 } };
    char key[128];
    size_t len = 0;
    assert_int_equal(corral_fragment_key("product_card", 12, vary, 2, key, sizeof key, &len),
                     CORRAL_OK);
    set_ok(f->c, key, "<article/>");
    get_expect(f->c, key, CORRAL_OK);
    corral_stats_snapshot *s = snap(f->c);
    const corral_prefix_stats *p = find(s, "template.cache.product_card");
    assert_int_equal(p->sets, 1);
    assert_int_equal(p->hits, 1);
    assert_int_equal(p->items, 1);
    corral_stats_free(f->c, s);
}

static void test_stats_key_without_colon_is_its_own_prefix(void **state) {
    fixture *f = *state;
    set_ok(f->c, "ctr", "1");
    assert_int_equal(corral_incr(f->c, "ctr", 3, 1, NULL, NULL), CORRAL_OK);
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(find(s, "ctr")->items, 1);
    assert_int_equal(find(s, "ctr")->sets, 2); /* set, then incr */
    corral_stats_free(f->c, s);
}

/* A thread remembers its last prefix and class (access.h, corral__key_class): a key that
 * shares the remembered bytes but not the prefix, a fragment key after a "template" key, and
 * two handles used in turn by one thread, each with its own classes, still count where
 * their prefixes say. */
static void test_stats_prefix_memo_counts_every_key_under_its_own_prefix(void **state) {
    fixture *f = *state;
    static const char *const keys[] = { "user:1",     "user",      "user2:1",   "use:1",
                                        "template:1", "user:2",    "users:1",   "template:2",
                                        "user:1234",  "user2:123", "use:12345", "users:123" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        set_ok(f->c, keys[i], "v");
    char frag[128];
    size_t len = 0;
    corral_buf vary[1] = { { "42", 2 } };
    assert_int_equal(corral_fragment_key("card", 4, vary, 1, frag, sizeof frag, &len), CORRAL_OK);
    set_ok(f->c, "template:3", "v");
    set_ok(f->c, frag, "v");
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(find(s, "user")->sets, 4);
    assert_int_equal(find(s, "user2")->sets, 2);
    assert_int_equal(find(s, "use")->sets, 2);
    assert_int_equal(find(s, "users")->sets, 2);
    assert_int_equal(find(s, "template")->sets, 3);
    assert_int_equal(find(s, "template.cache.card")->sets, 1);
    corral_stats_free(f->c, s);

    /* Two handles in turn: "b" is the second class of one and "other" in the second. */
    corral *one = open_clocked(f, "mem://?max_prefixes=1");
    set_ok(one, "a:1", "v");
    set_ok(f->c, "b:1", "v");
    set_ok(one, "b:1", "v");
    set_ok(f->c, "b:2", "v");
    set_ok(one, "b:2", "v");
    s = snap(one);
    assert_int_equal(s->n_prefixes, 2);
    assert_int_equal(find(s, "a")->sets, 1);
    assert_int_equal(find(s, "other")->sets, 2);
    corral_stats_free(one, s);
    corral_close(one);
    s = snap(f->c);
    assert_int_equal(find(s, "b")->sets, 2);
    corral_stats_free(f->c, s);
}

static void test_stats_prefix_bound_counts_the_rest_as_other(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_prefixes=2");
    set_ok(c, "a:1", "v");
    set_ok(c, "b:1", "v");
    set_ok(c, "c:1", "v");
    set_ok(c, "d:1", "v");
    get_expect(c, "a:1", CORRAL_OK);
    get_expect(c, "d:1", CORRAL_OK);
    corral_stats_snapshot *s = snap(c);
    assert_int_equal(s->n_prefixes, 3);
    assert_int_equal(find(s, "a")->hits, 1);
    assert_int_equal(find(s, "b")->sets, 1);
    assert_int_equal(find(s, "other")->sets, 2);
    assert_int_equal(find(s, "other")->hits, 1);
    assert_int_equal(find(s, "other")->items, 2);
    corral_stats_free(c, s);
    corral_close(c);
}

static void test_stats_clear_keeps_counters_and_empties_gauges(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "v");
    get_expect(f->c, "a:1", CORRAL_OK);
    assert_int_equal(corral_clear(f->c), CORRAL_OK);
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(find(s, "a")->hits, 1);
    assert_int_equal(find(s, "a")->sets, 1);
    assert_int_equal(find(s, "a")->items, 0);
    assert_int_equal(find(s, "a")->bytes, 0);
    assert_int_equal(s->total.items, 0);
    corral_stats_free(f->c, s);
}

static void test_stats_many_ops_count_per_key(void **state) {
    fixture *f = *state;
    corral_buf keys[3] = { { "a:1", 3 }, { "b:1", 3 }, { "a:2", 3 } };
    corral_buf vals[3] = { { "1", 1 }, { "2", 1 }, { "3", 1 } };
    assert_int_equal(corral_set_many(f->c, keys, vals, 2, CORRAL_TTL_DEFAULT, NULL), CORRAL_OK);
    corral_value *out[3];
    size_t found = 0;
    assert_int_equal(corral_get_many(f->c, keys, 3, NULL, out, &found), CORRAL_OK);
    assert_int_equal(found, 2);
    for (size_t i = 0; i < 3; i++)
        corral_value_unref(out[i]);
    corral_stats_snapshot *s = snap(f->c);
    assert_int_equal(find(s, "a")->sets, 1);
    assert_int_equal(find(s, "a")->hits, 1);
    assert_int_equal(find(s, "a")->misses, 1);
    assert_int_equal(find(s, "b")->hits, 1);
    corral_stats_free(f->c, s);
}

/* A thread keeps a cache of the stripe it counts on in the last handle it used (metrics.h).
 * Handles closed and opened one after another, often at the same address, each count exactly
 * their own hits, on both read paths. */
static void test_stats_handles_opened_in_turn_count_only_their_own_hits(void **state) {
    fixture *f = *state;
    for (int round = 1; round <= 6; round++) {
        corral *c = open_clocked(f, "mem://?max_memory=4MB");
        set_ok(c, "hot:1", "v");
        for (int i = 0; i < round; i++) {
            get_expect(c, "hot:1", CORRAL_OK);
            char buf[4];
            size_t len;
            assert_int_equal(corral_get_into(c, "hot:1", 5, NULL, buf, sizeof buf, &len),
                             CORRAL_OK);
        }
        corral_stats_snapshot *s = snap(c);
        assert_int_equal(find(s, "hot")->hits, 2 * round);
        corral_stats_free(c, s);
        corral_close(c);
    }
}

static void test_set_evicts_to_stay_within_max_memory(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_memory=64KiB");
    static const char val[1000] = { 'v' };
    for (int i = 0; i < 200; i++) { /* about 3 times the bound */
        char key[16];
        int n = snprintf(key, sizeof key, "fill:%d", i);
        int rc = corral_set(c, key, (size_t)n, val, sizeof val, CORRAL_TTL_DEFAULT, NULL);
        if (rc != CORRAL_OK) fail_msg("set %d: rc %d", i, rc);
    }
    corral_stats_snapshot *s = snap(c);
    assert_true(s->used_bytes <= s->max_memory_bytes);
    const corral_prefix_stats *fill = find(s, "fill");
    assert_true(fill->evictions > 0);
    assert_int_equal(fill->items + (int64_t)fill->evictions, 200);
    assert_true(fill->bytes <= (int64_t)s->max_memory_bytes);
    corral_stats_free(c, s);
    corral_close(c);
}

/* ---- corral_metrics_write ---- */

static void test_metrics_write_declares_every_metric(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "v");
    char *text = metrics_text(f->c);
    static const char *const counters[] = { "hits",    "misses",    "sets",
                                            "deletes", "evictions", "expirations" };
    char line[128];
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        snprintf(line, sizeof line, "# TYPE corral_cache_%s_total counter", counters[i]);
        expect_line(text, line);
        snprintf(line, sizeof line, "# HELP corral_cache_%s_total ", counters[i]);
        assert_non_null(strstr(text, line));
    }
    expect_line(text, "# TYPE corral_cache_items gauge");
    expect_line(text, "# TYPE corral_cache_bytes gauge");
    assert_non_null(strstr(text, "# HELP corral_cache_items "));
    corral_free(f->c, text);
}

static void test_metrics_write_reports_hits_per_prefix(void **state) {
    fixture *f = *state;
    set_ok(f->c, "featured_products:v3", "[1,2,3]");
    for (int i = 0; i < 3; i++)
        get_expect(f->c, "featured_products:v3", CORRAL_OK);
    get_expect(f->c, "featured_products:v4", CORRAL_MISS);
    char *text = metrics_text(f->c);
    expect_line(text, "corral_cache_hits_total{prefix=\"featured_products\"} 3");
    expect_line(text, "corral_cache_misses_total{prefix=\"featured_products\"} 1");
    expect_line(text, "corral_cache_sets_total{prefix=\"featured_products\"} 1");
    expect_line(text, "corral_cache_items{prefix=\"featured_products\"} 1");
    corral_free(f->c, text);
}

static void test_metrics_write_escapes_quote_and_backslash_in_labels(void **state) {
    fixture *f = *state;
    set_ok(f->c, "say\"hi\":1", "v");
    set_ok(f->c, "back\\slash:1", "v");
    char *text = metrics_text(f->c);
    expect_line(text, "corral_cache_sets_total{prefix=\"say\\\"hi\\\"\"} 1");
    expect_line(text, "corral_cache_sets_total{prefix=\"back\\\\slash\"} 1");
    corral_free(f->c, text);
}

/* The header leaves the rendering of a control byte open: escaped ("\\n") or replaced ('?');
 * either way the sample stays on one line. */
static void test_metrics_write_keeps_a_binary_prefix_on_one_line(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?binary_keys=1");
    set_ok(c, "two\nlines:1", "v");
    char *text = metrics_text(c);
    if (strstr(text, "\ncorral_cache_sets_total{prefix=\"two\\nlines\"} 1\n") == NULL)
        expect_line(text, "corral_cache_sets_total{prefix=\"two?lines\"} 1");
    corral_free(c, text);
    corral_close(c);
}

/* The length of a sample line's series (name and labels): up to the last space of the line, as
 * a label value may itself hold spaces. */
static size_t series_len(const char *line) {
    const char *end = strchr(line, '\n');
    const char *sp = end;
    while (sp > line && sp[-1] != ' ')
        sp--;
    return sp > line ? (size_t)(sp - 1 - line) : (size_t)(end - line);
}

/* Counts the sample lines of `text` whose series (name and labels) equals an earlier one's. */
static size_t repeated_series(const char *text) {
    size_t repeats = 0;
    for (const char *a = text; *a; a = strchr(a, '\n') + 1) {
        if (*a == '#') continue;
        size_t alen = series_len(a);
        for (const char *b = text; b < a; b = strchr(b, '\n') + 1) {
            if (*b != '#' && strncmp(a, b, alen) == 0 && b[alen] == ' ') repeats++;
        }
    }
    return repeats;
}

static void test_metrics_write_never_repeats_a_series(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_prefixes=2");
    set_ok(c, "other:1", "v"); /* a user prefix that is literally "other" */
    set_ok(c, "a:1", "v");
    set_ok(c, "b:1", "v"); /* past the bound: counted under "other" */
    char *text = metrics_text(c);
    size_t repeats = repeated_series(text);
    if (repeats != 0) fail_msg("%zu repeated series in:\n%s", repeats, text);
    corral_free(c, text);
    corral_close(c);
}

static void test_stats_prefix_named_other_is_not_split_in_two(void **state) {
    fixture *f = *state;
    corral *c = open_clocked(f, "mem://?max_prefixes=2");
    set_ok(c, "other:1", "v");
    set_ok(c, "a:1", "v");
    set_ok(c, "b:1", "v");
    corral_stats_snapshot *s = snap(c);
    size_t named_other = 0;
    for (size_t i = 0; i < s->n_prefixes; i++)
        if (strcmp(s->prefixes[i].prefix, "other") == 0) named_other++;
    assert_int_equal(named_other, 1);
    corral_stats_free(c, s);
    corral_close(c);
}

static void test_metrics_write_lines_are_comments_or_samples(void **state) {
    fixture *f = *state;
    set_ok(f->c, "a:1", "v");
    get_expect(f->c, "b:1", CORRAL_MISS);
    char *text = metrics_text(f->c);
    assert_true(text[0] != '\0');
    assert_int_equal(text[strlen(text) - 1], '\n');
    for (char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, "# HELP corral_", 14) == 0 || strncmp(line, "# TYPE corral_", 14) == 0)
            continue;
        if (strncmp(line, "corral_", 7) != 0) fail_msg("stray line: %.60s", line);
        const char *sp = strchr(line, ' ');
        assert_non_null(sp);
        assert_true(sp[1] == '-' || (sp[1] >= '0' && sp[1] <= '9'));
    }
    corral_free(f->c, text);
}

/* docs/metrics.md names every per-prefix metric of src/metrics_list.h, as `corral_<name>`. */
static void test_docs_metrics_lists_every_prefix_metric(void **state) {
    (void)state;
    FILE *fp = fopen(CORRAL_DOCS_DIR "/metrics.md", "rb");
    assert_non_null(fp);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, fp);
    assert_int_equal(fclose(fp), 0);
    assert_true(n > 0 && n < sizeof doc - 1);
    doc[n] = '\0';
    static const char *const names[] = {
#define DOC_NAME(name, ...) #name,
        CORRAL__PREFIX_METRICS(DOC_NAME) CORRAL__PREFIX_HISTOGRAMS(DOC_NAME)
#undef DOC_NAME
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char want[128];
        int w = snprintf(want, sizeof want, "`corral_%s`", names[i]);
        assert_true(w > 0 && (size_t)w < sizeof want);
        if (!strstr(doc, want)) fail_msg("docs/metrics.md does not list %s", want);
    }
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_stats_counts_hits_misses_sets_deletes_per_prefix),
        T(test_stats_items_and_bytes_follow_live_entries),
        T(test_stats_items_and_bytes_stay_exact_under_overwrites),
        T(test_stats_total_sums_every_prefix),
        T(test_stats_used_bytes_matches_the_byte_gauges),
        T(test_stats_prefixes_are_sorted),
        T(test_stats_fragment_key_counts_under_its_template_name),
        T(test_stats_key_without_colon_is_its_own_prefix),
        T(test_stats_prefix_memo_counts_every_key_under_its_own_prefix),
        T(test_stats_prefix_bound_counts_the_rest_as_other),
        T(test_stats_clear_keeps_counters_and_empties_gauges),
        T(test_stats_many_ops_count_per_key),
        T(test_stats_handles_opened_in_turn_count_only_their_own_hits),
        T(test_set_evicts_to_stay_within_max_memory),
        T(test_metrics_write_declares_every_metric),
        T(test_metrics_write_reports_hits_per_prefix),
        T(test_metrics_write_escapes_quote_and_backslash_in_labels),
        T(test_metrics_write_keeps_a_binary_prefix_on_one_line),
        T(test_metrics_write_never_repeats_a_series),
        T(test_stats_prefix_named_other_is_not_split_in_two),
        T(test_metrics_write_lines_are_comments_or_samples),
        cmocka_unit_test(test_docs_metrics_lists_every_prefix_metric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
