/*
 * options.c - corral_options defaults and the cache URL parser.
 *
 *     mem://?max_memory=256MB&key_prefix=djzen&version=1&timeout=300&eviction=sieve
 *
 * The URL is scheme "://" [authority] ["?" query]. The memory store takes no authority. The
 * query is name=value pairs separated by '&', values percent-decoded ('+' stays '+': keys may
 * hold it). Written here rather than with a URL library: the grammar is this small, and every
 * error must name the parameter, which generic parsers do not report.
 */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_MEMORY   ((size_t)256 * 1024 * 1024)
#define DEFAULT_TTL_MS       300000
#define DEFAULT_MAX_PREFIXES 256
#define MAX_PREFIXES_LIMIT   65000

void corral_options_init(corral_options *o) {
    memset(o, 0, sizeof *o);
    o->store = "mem";
    o->key_prefix = "";
    o->version = 1;
    o->default_ttl_ms = DEFAULT_TTL_MS;
    o->max_memory_bytes = DEFAULT_MAX_MEMORY;
    o->max_value_bytes = 0;
    o->eviction = CORRAL_EVICT_DEFAULT;
    o->shards = 0;
    o->allow_binary_keys = false;
    o->max_prefixes = DEFAULT_MAX_PREFIXES;
    o->now_ns = NULL;
    o->key_fn = NULL;
}

/* Parses a decimal with an optional fraction: "300", "1.5". Returns 0 on success. */
static int parse_decimal(const char *s, size_t len, uint64_t *whole, uint64_t *frac_num,
                         uint64_t *frac_den, size_t *used) {
    size_t i = 0;
    uint64_t w = 0, fn = 0, fd = 1;
    if (i >= len || !isdigit((unsigned char)s[i])) return -1;
    while (i < len && isdigit((unsigned char)s[i])) {
        unsigned d = (unsigned)(s[i] - '0');
        if (w > (UINT64_MAX - d) / 10) return -1;
        w = w * 10 + d;
        i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len || !isdigit((unsigned char)s[i])) return -1;
        while (i < len && isdigit((unsigned char)s[i])) {
            if (fd < 1000000000000ull) { /* keep 12 fractional digits, drop the rest */
                fn = fn * 10 + (unsigned)(s[i] - '0');
                fd *= 10;
            }
            i++;
        }
    }
    *whole = w;
    *frac_num = fn;
    *frac_den = fd;
    *used = i;
    return 0;
}

/* "256MB", "1GiB", "4096", "1.5GB" -> bytes. Units are case-insensitive; KB = 1000, KiB = 1024. */
static int parse_size(const char *s, size_t len, size_t *out) {
    uint64_t w, fn, fd;
    size_t used;
    if (parse_decimal(s, len, &w, &fn, &fd, &used) != 0) return -1;
    const char *u = s + used;
    size_t ulen = len - used;
    static const struct {
        const char *name;
        uint64_t mult;
    } units[] = {
        { "", 1 },
        { "b", 1 },
        { "kb", 1000ull },
        { "mb", 1000ull * 1000 },
        { "gb", 1000ull * 1000 * 1000 },
        { "tb", 1000ull * 1000 * 1000 * 1000 },
        { "kib", 1ull << 10 },
        { "mib", 1ull << 20 },
        { "gib", 1ull << 30 },
        { "tib", 1ull << 40 },
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strlen(units[i].name) != ulen || strncasecmp(u, units[i].name, ulen) != 0) continue;
        uint64_t m = units[i].mult;
        if (w > UINT64_MAX / m) return -1;
        uint64_t bytes = w * m;
        uint64_t extra = (uint64_t)((double)fn / (double)fd * (double)m);
        if (bytes > UINT64_MAX - extra || bytes + extra > SIZE_MAX) return -1;
        *out = (size_t)(bytes + extra);
        return 0;
    }
    return -1;
}

static int parse_i64(const char *s, size_t len, int64_t *out) {
    char buf[32];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!(isdigit((unsigned char)buf[0]) || (buf[0] == '-' && isdigit((unsigned char)buf[1]))))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0' || v == INT64_MIN) return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_bool(const char *s, size_t len, bool *out) {
    static const char *yes[] = { "1", "true", "yes", "on" };
    static const char *no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strlen(yes[i]) == len && strncasecmp(s, yes[i], len) == 0) return *out = true, 0;
        if (strlen(no[i]) == len && strncasecmp(s, no[i], len) == 0) return *out = false, 0;
    }
    return -1;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into out (room for len bytes); returns the decoded length or -1. */
static long pct_decode(const char *s, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            out[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    return (long)n;
}

typedef struct param_seen {
    const char *name;
    bool seen;
} param_seen;

static int parse_url(corral_options *o, const char *url, char *buf, size_t cap, corral_error *err);

int corral_options_parse_url(corral_options *o, const char *url, char *buf, size_t cap,
                             corral_error *err) {
    if (!o) return corral__seterr(err, CORRAL_EINVAL, "options: NULL");
    if (!url || !*url) return CORRAL_OK;
    corral_options t = *o; /* parsed into a copy: on error `o` is unchanged */
    int rc = parse_url(&t, url, buf, cap, err);
    if (rc == CORRAL_OK) *o = t;
    return rc;
}

static int parse_url(corral_options *o, const char *url, char *buf, size_t cap, corral_error *err) {
    const char *sep = strstr(url, "://");
    if (!sep) return corral__seterr(err, CORRAL_EBADURL, "url: missing scheme (e.g. mem://)");
    size_t scheme_len = (size_t)(sep - url);
    if (scheme_len == 3 && strncmp(url, "mem", 3) == 0) {
        o->store = "mem";
    } else {
        return corral__seterr(err, CORRAL_EBADURL, "url: unknown scheme '%.*s' (known: mem)",
                              (int)CORRAL_MIN(scheme_len, 32), url);
    }
    const char *rest = sep + 3;
    const char *q = strchr(rest, '?');
    size_t auth_len = q ? (size_t)(q - rest) : strlen(rest);
    if (auth_len != 0 && !(auth_len == 1 && rest[0] == '/'))
        return corral__seterr(err, CORRAL_EBADURL, "url: mem:// takes no host or path, got '%.*s'",
                              (int)CORRAL_MIN(auth_len, 32), rest);
    if (!q) return CORRAL_OK;

    param_seen seen[] = { { "max_memory", false },  { "max_value", false },
                          { "key_prefix", false },  { "version", false },
                          { "timeout", false },     { "eviction", false },
                          { "shards", false },      { "binary_keys", false },
                          { "max_prefixes", false } };
    size_t used = 0;
    const char *p = q + 1;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        if (plen == 0) {
            p += amp ? 1 : 0;
            if (!amp) break;
            continue;
        }
        size_t nlen = eq ? (size_t)(eq - p) : plen;
        const char *v = eq ? eq + 1 : p + plen;
        size_t vlen = eq ? plen - nlen - 1 : 0;
        int nshow = (int)CORRAL_MIN(nlen, 40);
        if (!eq)
            return corral__seterr(err, CORRAL_EBADURL, "url: parameter '%.*s' has no value", nshow,
                                  p);
        param_seen *ps = NULL;
        for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
            if (strlen(seen[i].name) == nlen && memcmp(seen[i].name, p, nlen) == 0) ps = &seen[i];
        }
        if (!ps)
            return corral__seterr(err, CORRAL_EBADURL, "url: unknown parameter '%.*s'", nshow, p);
        if (ps->seen)
            return corral__seterr(err, CORRAL_EBADURL, "url: parameter '%s' given twice", ps->name);
        ps->seen = true;
        /* Percent-decode the value into buf. */
        if (!buf || cap - used < vlen + 1)
            return corral__seterr(err, CORRAL_ENOSPC, "url: buffer too small for '%s'", ps->name);
        char *val = buf + used;
        long dl = pct_decode(v, vlen, val);
        if (dl < 0)
            return corral__seterr(err, CORRAL_EBADURL, "url: bad percent-escape in '%s'", ps->name);
        size_t dlen = (size_t)dl;
        val[dlen] = '\0';
        if (memchr(val, '\0', dlen))
            return corral__seterr(err, CORRAL_EBADURL, "url: NUL byte in the value of '%s'",
                                  ps->name);
        used += dlen + 1;
        int bad = 0;
        const char *name = ps->name;
        if (strcmp(name, "max_memory") == 0) {
            size_t sz;
            bad = parse_size(val, dlen, &sz) != 0 || sz == 0;
            if (!bad) o->max_memory_bytes = sz;
        } else if (strcmp(name, "max_value") == 0) {
            size_t sz;
            bad = parse_size(val, dlen, &sz) != 0 || sz == 0;
            if (!bad) o->max_value_bytes = sz;
        } else if (strcmp(name, "key_prefix") == 0) {
            o->key_prefix = val;
        } else if (strcmp(name, "version") == 0) {
            int64_t ver;
            bad = parse_i64(val, dlen, &ver) != 0;
            if (!bad) o->version = ver;
        } else if (strcmp(name, "timeout") == 0) {
            if (dlen == 4 && strncasecmp(val, "none", 4) == 0) {
                o->default_ttl_ms = CORRAL_TTL_FOREVER;
            } else {
                uint64_t w, fn, fd;
                size_t u;
                bad = parse_decimal(val, dlen, &w, &fn, &fd, &u) != 0 || u != dlen ||
                      w > (uint64_t)INT64_MAX / 1000 - 1;
                if (!bad) o->default_ttl_ms = (int64_t)(w * 1000 + fn * 1000 / fd);
            }
        } else if (strcmp(name, "eviction") == 0) {
            if (strcasecmp(val, "sieve") == 0)
                o->eviction = CORRAL_EVICT_SIEVE;
            else if (strcasecmp(val, "s3fifo") == 0)
                o->eviction = CORRAL_EVICT_S3FIFO;
            else if (strcasecmp(val, "lru") == 0)
                o->eviction = CORRAL_EVICT_LRU;
            else
                bad = 1;
        } else if (strcmp(name, "shards") == 0) {
            int64_t n;
            bad = parse_i64(val, dlen, &n) != 0 || n < 1 || n > 1024;
            if (!bad) o->shards = (unsigned)n;
        } else if (strcmp(name, "binary_keys") == 0) {
            bad = parse_bool(val, dlen, &o->allow_binary_keys) != 0;
        } else if (strcmp(name, "max_prefixes") == 0) {
            int64_t n;
            bad = parse_i64(val, dlen, &n) != 0 || n < 0 || n > MAX_PREFIXES_LIMIT;
            if (!bad) o->max_prefixes = (size_t)n;
        }
        if (bad)
            return corral__seterr(err, CORRAL_EBADURL, "url: bad value '%.*s' for parameter '%s'",
                                  (int)CORRAL_MIN(dlen, 40), val, name);
        if (!amp) break;
        p = amp + 1;
    }
    return CORRAL_OK;
}
