/*
 * fuzz_key.c - libFuzzer target for Django's key scheme: corral_make_key (through a handle with
 * a fuzzed prefix and version), the same key through set/get/delete and the per-prefix metrics,
 * and corral_fragment_key.
 *
 * Input: byte 0 holds flags, byte 1 picks the handle; the rest is split on 0xff into prefix,
 * key, then up to 8 vary values. Flags: bit 0 binary keys; bit 1 use a per-call version; bits
 * 2-4 pick the handle's version and bits 5-7 the call's, from `versions` below. Handle byte:
 * bits 3 and 4 both set open a fresh handle whose prefix is part 0; otherwise bits 0-2 pick a
 * cached handle and its prefix from `cached_prefix` (part 0 is then unused); bit 5, without a
 * per-call version, passes no call at all (NULL), so that gets also run corral_get_into's read
 * path, which must agree with the general one.
 *
 * Oracles (this file recomputes the expected result and compares):
 * - make_key: the physical key is prefix ":" version ":" key to the byte; without binary keys it
 *   is accepted exactly when it is at most 250 bytes with no byte in 0x00-0x20 or 0x7f; with
 *   binary keys every key of at most 250 bytes is accepted. CORRAL_ENOSPC reports the length.
 * - set/get/delete agree with make_key, and the value round-trips.
 * - the snapshot's prefixes are NUL-terminated; the Prometheus text has only comment and sample
 *   lines (a raw newline in a label would break that), and no series twice.
 * - fragment_key: "template.cache.<name>.<md5 of each vary value + ':'>" (MD5 via OpenSSL here).
 */
#include "corral/corral.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

#define MAX_PARTS 10
#define KEYCAP    8192

static const int64_t versions[8] = { 1, 0, -1, 2, 42, INT64_MAX, INT64_MIN + 1, 1000000 };

typedef struct part {
    const uint8_t *p;
    size_t len;
} part;

static bool is_bad_byte(uint8_t b) {
    return b <= 0x20 || b == 0x7f;
}

/* Builds prefix ":" version ":" key into out (room for KEYCAP); returns its length. */
static size_t expected_key(const char *prefix, int64_t version, const part *key, char *out) {
    int n = snprintf(out, KEYCAP, "%s:%lld:", prefix, (long long)version);
    CHECK(n > 0 && (size_t)n + key->len < KEYCAP);
    if (key->len) memcpy(out + n, key->p, key->len);
    return (size_t)n + key->len;
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

/* True when two sample lines of a Prometheus text carry the same series (name and labels):
 * Prometheus rejects such a scrape. */
static bool has_repeated_series(const char *text) {
    for (const char *a = text; *a; a = strchr(a, '\n') + 1) {
        if (*a == '#') continue;
        size_t alen = series_len(a);
        for (const char *b = text; b < a; b = strchr(b, '\n') + 1)
            if (*b != '#' && strncmp(a, b, alen) == 0 && b[alen] == ' ') return true;
    }
    return false;
}

static void check_metrics(corral *c) {
    corral_stats_snapshot *s = NULL;
    CHECK(corral_stats(c, &s) == CORRAL_OK);
    for (size_t i = 0; i < s->n_prefixes; i++)
        CHECK(memchr(s->prefixes[i].prefix, 0, sizeof s->prefixes[i].prefix) != NULL);
    corral_stats_free(c, s);
    char *text = NULL;
    size_t len = 0;
    CHECK(corral_metrics_write(c, &text, &len) == CORRAL_OK && strlen(text) == len);
    CHECK(len > 0 && text[len - 1] == '\n');
    for (const char *line = text; *line; line = strchr(line, '\n') + 1)
        CHECK(line[0] == '#' || strncmp(line, "corral_", 7) == 0);
    CHECK(!has_repeated_series(text));
    corral_free(c, text);
}

/* The key through the handle: make_key against the oracle, then set/get/delete. */
static void check_key(corral *c, const char *prefix, bool binary, int64_t version,
                      const corral_call *call, const part *key) {
    char want[KEYCAP], out[KEYCAP];
    size_t want_len = expected_key(prefix, version, key, want);
    bool valid = want_len <= 250;
    for (size_t i = 0; !binary && valid && i < want_len; i++)
        valid = !is_bad_byte((uint8_t)want[i]);
    /* Binary keys take every byte but 0x1f (corral's own separator, key.c), in the prefix too. */
    if (binary && memchr(want, 0x1f, want_len)) valid = false;
    size_t len = 12345;
    int rc = corral_make_key(c, key->p, key->len, call, out, sizeof out, &len);
    if (!binary || valid) CHECK(rc == (valid ? CORRAL_OK : CORRAL_EBADKEY));
    CHECK(rc == CORRAL_OK || rc == CORRAL_EBADKEY);
    if (rc == CORRAL_OK) {
        CHECK(len == want_len && memcmp(out, want, len) == 0 && out[len] == '\0');
        CHECK(corral_make_key(c, key->p, key->len, call, out, len, &len) == CORRAL_ENOSPC);
        CHECK(len == want_len);
    } else {
        CHECK(len == 0);
    }
    int set = corral_set(c, key->p, key->len, key->p, key->len, CORRAL_TTL_FOREVER, call);
    CHECK(set == (rc == CORRAL_OK ? CORRAL_OK : CORRAL_EBADKEY));
    corral_value *v = NULL;
    int got = corral_get(c, key->p, key->len, call, &v);
    CHECK(got == (rc == CORRAL_OK ? CORRAL_OK : CORRAL_EBADKEY));
    if (got == CORRAL_OK) {
        CHECK(corral_value_len(v) == key->len);
        CHECK(key->len == 0 || memcmp(corral_value_data(v), key->p, key->len) == 0);
        CHECK(((const char *)corral_value_data(v))[key->len] == '\0');
    }
    corral_value_unref(v);
    if (!call) {
        /* get_into without a call takes the read path that checks and hashes the key in place
         * (corral.c, get_into_hot): it must agree with the general path. */
        unsigned char buf[KEYCAP];
        size_t blen = 1;
        int into = corral_get_into(c, key->p, key->len, NULL, buf, sizeof buf, &blen);
        CHECK(into == got);
        if (into == CORRAL_OK)
            CHECK(blen == key->len && (key->len == 0 || memcmp(buf, key->p, key->len) == 0));
        else
            CHECK(blen == 0);
    }
    check_metrics(c);
    if (rc == CORRAL_OK) CHECK(corral_delete(c, key->p, key->len, call) == CORRAL_OK);
}

/* corral_fragment_key against MD5 computed here. */
static void check_fragment(const part *name, const part *vary, size_t n_vary) {
    corral_buf bufs[MAX_PARTS];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CHECK(ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL));
    for (size_t i = 0; i < n_vary; i++) {
        bufs[i] = (corral_buf){ vary[i].p, vary[i].len };
        CHECK(EVP_DigestUpdate(ctx, vary[i].p, vary[i].len) && EVP_DigestUpdate(ctx, ":", 1));
    }
    CHECK(EVP_DigestFinal_ex(ctx, md, &md_len) && md_len == 16);
    EVP_MD_CTX_free(ctx);

    char want[KEYCAP], out[KEYCAP];
    int n = snprintf(want, sizeof want, "template.cache.");
    CHECK(n == 15 && name->len + 50 < sizeof want);
    if (name->len) memcpy(want + n, name->p, name->len);
    size_t w = (size_t)n + name->len;
    want[w++] = '.';
    for (unsigned i = 0; i < 16; i++)
        w += (size_t)snprintf(want + w, 3, "%02x", md[i]);
    size_t len = 0;
    const char *nm = name->len ? (const char *)name->p : "";
    int rc = corral_fragment_key(nm, name->len, bufs, n_vary, out, sizeof out, &len);
    CHECK(rc == CORRAL_OK && len == w && len == 16 + name->len + 32);
    CHECK(memcmp(out, want, w) == 0 && out[len] == '\0');
    CHECK(corral_fragment_key(nm, name->len, bufs, n_vary, out, w, &len) == CORRAL_ENOSPC);
    CHECK(len == w);
}

/* Opens a small handle; returns NULL when the options are refused. */
static corral *open_handle(const char *prefix, int64_t version, bool binary) {
    corral_options o;
    corral_options_init(&o);
    o.key_prefix = prefix;
    o.version = version;
    o.allow_binary_keys = binary;
    o.max_memory_bytes = 1u << 20;
    o.max_prefixes = 4;
    o.shards = 1;
    corral *c = (corral *)&o;
    int rc = corral_open_opts(&c, &o, NULL);
    CHECK((rc == CORRAL_OK) == (c != NULL));
    /* The only reason these options may be refused: a prefix that leaves no room for a key. */
    if (rc != CORRAL_OK) CHECK(strlen(prefix) > 250);
    return c;
}

/* The prefixes of the cached handles: empty, Django-like, with a colon, invalid bytes, long,
 * one that leaves room for a 1-byte key at version 1, and one that is too long. */
static const char *cached_prefix(unsigned i) {
    static char p100[101], p246[247], p251[252];
    if (!p100[0]) {
        memset(p100, 'p', 100);
        memset(p246, 'q', 246);
        memset(p251, 'r', 251);
    }
    static const char *const fixed[5] = { "", "djzen", "x:y", "a b", "\x7f" };
    return i < 5 ? fixed[i] : i == 5 ? p100 : i == 6 ? p246 : p251;
}

/* Handles are costly to close (an RCU barrier), so most inputs run on one of these, opened on
 * first use and kept for the process (reachable, so not leaks). Each input deletes what it
 * wrote. */
static corral *cached_handle(unsigned prefix_i, unsigned version_i, bool binary) {
    static corral *handles[8][8][2];
    static bool tried[8][8][2];
    if (!tried[prefix_i][version_i][binary]) {
        tried[prefix_i][version_i][binary] = true;
        handles[prefix_i][version_i][binary] =
            open_handle(cached_prefix(prefix_i), versions[version_i], binary);
    }
    return handles[prefix_i][version_i][binary];
}

/* Input: flags, handle selector, then parts separated by 0xff (see the top of the file). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 4096) return 0;
    uint8_t flags = data[0], sel = data[1];
    part parts[MAX_PARTS];
    size_t n = 0;
    const uint8_t *p = data + 2, *end = data + size;
    while (n < MAX_PARTS) {
        const uint8_t *sep = memchr(p, 0xff, (size_t)(end - p));
        parts[n].p = p;
        parts[n++].len = (size_t)((sep ? sep : end) - p);
        if (!sep) break;
        p = sep + 1;
    }
    static const part empty = { (const uint8_t *)"", 0 };
    const part *key = n > 1 ? &parts[1] : &empty;
    check_fragment(key, n > 2 ? &parts[2] : NULL, n > 2 ? n - 2 : 0);

    bool binary = flags & 1;
    unsigned version_i = (flags >> 2) & 7;
    char prefix[KEYCAP];
    corral *c;
    if ((sel & 0x18) == 0x18) {
        /* A fresh handle whose prefix is part 0, up to its first NUL (options take C strings). */
        size_t plen = strnlen((const char *)parts[0].p, parts[0].len);
        memcpy(prefix, parts[0].p, plen);
        prefix[plen] = '\0';
        c = open_handle(prefix, versions[version_i], binary);
    } else {
        snprintf(prefix, sizeof prefix, "%s", cached_prefix(sel & 7));
        c = cached_handle(sel & 7, version_i, binary);
    }
    if (!c) return 0;
    corral_call call = CORRAL_CALL_INIT;
    int64_t version = versions[version_i];
    if (flags & 2) version = call.version = versions[(flags >> 5) & 7];
    /* A call of defaults and no call mean the same; without one, gets take the read path. */
    bool no_call = !(flags & 2) && (sel & 0x20);
    check_key(c, prefix, binary, version, no_call ? NULL : &call, key);
    if ((sel & 0x18) == 0x18) corral_close(c);
    return 0;
}
