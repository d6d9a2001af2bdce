/*
 * options.c - corral_options defaults and the cache URL parser.
 *
 *     mem://?max_memory=256MB&key_prefix=djzen&version=1&timeout=300&eviction=sieve
 *     redis://[[user]:password@]host[:port][,host[:port]...][/db]?key_prefix=djzen&pool=8
 *     redis+unix:///path/to/redis.sock?db=2
 *     redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]?key_prefix=site
 *
 * The URL is scheme "://" [authority] ["?" query]. The memory store takes no authority. Redis
 * takes userinfo (percent-decoded), a host list (validated by the Redis store's parser) and a
 * path holding the database index; redis+unix takes a socket path; redis+cluster takes redis's
 * userinfo and hosts (seed nodes of a Redis Cluster) and no database but 0 (a cluster has one),
 * and adds read_from_replicas. The
 * query is name=value pairs separated by '&', values percent-decoded ('+' stays '+': keys may hold
 * it). Each parameter applies to every store or to one; a parameter of another store is an error,
 * as an unknown one is. Written here rather than with a URL library: the grammar is this small, and
 * every error must name the parameter, which generic parsers do not report.
 */
#include "common.h"
#include "store/redis.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_MEMORY               ((size_t)256 * 1024 * 1024)
#define DEFAULT_TTL_MS                   300000
#define DEFAULT_MAX_PREFIXES             256
#define MAX_PREFIXES_LIMIT               65000
#define REDIS_DEFAULT_HOSTS              "127.0.0.1:6379"
#define REDIS_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define REDIS_DEFAULT_COMMAND_TIMEOUT_MS 1000
#define REDIS_DEFAULT_POOL               4
#define REDIS_MAX_POOL                   1024
#define REDIS_MAX_TIMEOUT_MS             (24 * 3600 * 1000) /* a day: longer is a mistake, not a deadline */
#define REDIS_MAX_DB                     INT32_MAX

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
    o->rand64 = NULL;
    o->refresh_workers = 2;
    o->redis.hosts = REDIS_DEFAULT_HOSTS;
    o->redis.unix_path = NULL;
    o->redis.username = NULL;
    o->redis.password = NULL;
    o->redis.db = 0;
    o->redis.connect_timeout_ms = REDIS_DEFAULT_CONNECT_TIMEOUT_MS;
    o->redis.command_timeout_ms = REDIS_DEFAULT_COMMAND_TIMEOUT_MS;
    o->redis.pool = REDIS_DEFAULT_POOL;
    o->redis.near_cache_bytes = 0;
    o->redis.serializer = CORRAL_SERIALIZER_RAW;
}

/* A size (units.c's grammar) that fits a size_t. Returns 0 on success. */
static int parse_size(const char *s, size_t len, size_t *out) {
    uint64_t v;
    if (corral_parse_bytes(s, len, &v) != CORRAL_OK || v > SIZE_MAX) return -1;
    *out = (size_t)v;
    return 0;
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

/* A duration (units.c's grammar: "250ms", "0.25", "2s") -> milliseconds, more than 0 and at
 * most REDIS_MAX_TIMEOUT_MS. */
static int parse_deadline_ms(const char *s, size_t len, int64_t *out) {
    int64_t ms;
    if (corral_parse_duration_ms(s, len, &ms) != CORRAL_OK || ms == 0 || ms > REDIS_MAX_TIMEOUT_MS)
        return -1;
    *out = ms;
    return 0;
}

/* Which stores a parameter applies to. */
enum { FOR_ALL, FOR_MEM, FOR_REDIS, FOR_CLUSTER };

typedef struct param_seen {
    const char *name;
    bool seen;
    int store; /* FOR_* */
} param_seen;

/* The URL's store. */
typedef enum url_kind { URL_MEM, URL_REDIS, URL_REDIS_UNIX, URL_REDIS_CLUSTER } url_kind;

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

static param_seen *find_param(param_seen *seen, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(seen[i].name, name) == 0) return &seen[i];
    return NULL;
}

static bool known_param(const param_seen *seen, size_t n, const char *name, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(seen[i].name) == len && memcmp(seen[i].name, name, len) == 0) return true;
    return false;
}

/* Copies s[0..len) into buf at *used, percent-decoded when `decode`, NUL-terminated; returns
 * the copy, or NULL when it does not fit (`*bad` 0) or holds a bad escape or a NUL (`*bad` 1). */
static char *copy_part(const char *s, size_t len, bool decode, char *buf, size_t cap, size_t *used,
                       int *bad) {
    *bad = 0;
    if (!buf || cap - *used < len + 1) return NULL;
    char *out = buf + *used;
    size_t n = len;
    if (decode) {
        long dl = pct_decode(s, len, out);
        if (dl < 0) {
            *bad = 1;
            return NULL;
        }
        n = (size_t)dl;
    } else if (len) {
        memcpy(out, s, len);
    }
    out[n] = '\0';
    if (memchr(out, '\0', n)) {
        *bad = 1;
        return NULL;
    }
    *used += n + 1;
    return out;
}

/* Parses the authority and path of a redis:// URL (`rest` up to the query, `len` bytes) into
 * `o`, marking db and password seen when it names them. */
static int parse_redis_authority(corral_options *o, const char *rest, size_t len, char *buf,
                                 size_t cap, size_t *used, param_seen *seen, size_t n_seen,
                                 corral_error *err) {
    const char *slash = memchr(rest, '/', len);
    size_t auth_len = slash ? (size_t)(slash - rest) : len;
    /* An '@' past the first '/' is a password holding a '/' not percent-encoded: the host and
     * database messages below would show a part of it, so this one names neither. */
    if (slash && memchr(slash, '@', len - auth_len))
        return corral__seterr(err, CORRAL_EBADURL,
                              "url: '@' after the host: percent-encode '/' and '@' in the user "
                              "name and password (%%2F, %%40)");
    const char *at = NULL;
    for (size_t i = auth_len; i > 0; i--) {
        if (rest[i - 1] == '@') {
            at = rest + i - 1;
            break;
        }
    }
    int bad;
    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (!colon)
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: password: userinfo must be '[user]:password@'");
        size_t ulen = (size_t)(colon - rest), plen = (size_t)(at - colon - 1);
        if (ulen) {
            o->redis.username = copy_part(rest, ulen, true, buf, cap, used, &bad);
            if (!o->redis.username)
                return corral__seterr(err, bad ? CORRAL_EBADURL : CORRAL_ENOSPC,
                                      "url: bad or too long user name");
        } else {
            o->redis.username = NULL;
        }
        o->redis.password = copy_part(colon + 1, plen, true, buf, cap, used, &bad);
        if (!o->redis.password)
            return corral__seterr(err, bad ? CORRAL_EBADURL : CORRAL_ENOSPC,
                                  "url: bad or too long password");
        find_param(seen, n_seen, "password")->seen = true;
    }
    const char *hosts = at ? at + 1 : rest;
    size_t hosts_len = auth_len - (size_t)(hosts - rest);
    if (hosts_len == 0) {
        o->redis.hosts = REDIS_DEFAULT_HOSTS;
    } else {
        char *h = copy_part(hosts, hosts_len, false, buf, cap, used, &bad);
        if (!h) return corral__seterr(err, CORRAL_ENOSPC, "url: buffer too small for the hosts");
        int rc = corral__redis_check_hosts(h, err);
        if (rc != CORRAL_OK) return rc;
        o->redis.hosts = h;
    }
    o->redis.unix_path = NULL;
    if (slash && len - auth_len > 1) { /* "/db"; a lone "/" names nothing */
        const char *db = slash + 1;
        size_t db_len = len - auth_len - 1;
        int64_t v;
        if (parse_i64(db, db_len, &v) != 0 || v < 0 || v > REDIS_MAX_DB)
            return corral__seterr(err, CORRAL_EBADURL, "url: bad database '%.*s' in the path (db)",
                                  (int)CORRAL_MIN(db_len, 32), db);
        o->redis.db = (unsigned)v;
        find_param(seen, n_seen, "db")->seen = true;
    }
    return CORRAL_OK;
}

static int parse_url(corral_options *o, const char *url, char *buf, size_t cap, corral_error *err) {
    const char *sep = strstr(url, "://");
    if (!sep) return corral__seterr(err, CORRAL_EBADURL, "url: missing scheme (e.g. mem://)");
    size_t scheme_len = (size_t)(sep - url);
    url_kind kind;
    if (scheme_len == 3 && strncmp(url, "mem", 3) == 0) {
        kind = URL_MEM;
        o->store = "mem";
    } else if (scheme_len == 5 && strncmp(url, "redis", 5) == 0) {
        kind = URL_REDIS;
        o->store = "redis";
    } else if (scheme_len == 10 && strncmp(url, "redis+unix", 10) == 0) {
        kind = URL_REDIS_UNIX;
        o->store = "redis";
    } else if (scheme_len == 13 && strncmp(url, "redis+cluster", 13) == 0) {
        kind = URL_REDIS_CLUSTER;
        o->store = "redis";
    } else {
        return corral__seterr(err, CORRAL_EBADURL,
                              "url: unknown scheme '%.*s' (known: mem, redis, redis+unix, "
                              "redis+cluster)",
                              (int)CORRAL_MIN(scheme_len, 32), url);
    }
    const char *rest = sep + 3;
    const char *q = strchr(rest, '?');
    size_t auth_len = q ? (size_t)(q - rest) : strlen(rest);

    param_seen seen[] = { { "max_memory", false, FOR_MEM },
                          { "max_value", false, FOR_ALL },
                          { "key_prefix", false, FOR_ALL },
                          { "version", false, FOR_ALL },
                          { "timeout", false, FOR_ALL },
                          { "eviction", false, FOR_MEM },
                          { "shards", false, FOR_MEM },
                          { "binary_keys", false, FOR_ALL },
                          { "max_prefixes", false, FOR_ALL },
                          { "db", false, FOR_REDIS },
                          { "password", false, FOR_REDIS },
                          { "connect_timeout", false, FOR_REDIS },
                          { "command_timeout", false, FOR_REDIS },
                          { "pool", false, FOR_REDIS },
                          { "near_cache", false, FOR_REDIS },
                          { "serializer", false, FOR_REDIS },
                          { "read_from_replicas", false, FOR_CLUSTER } };
    const size_t n_seen = sizeof seen / sizeof seen[0];
    size_t used = 0;
    if (kind == URL_MEM) {
        if (auth_len != 0 && !(auth_len == 1 && rest[0] == '/'))
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: mem:// takes no host or path, got '%.*s'",
                                  (int)CORRAL_MIN(auth_len, 32), rest);
    } else if (kind == URL_REDIS || kind == URL_REDIS_CLUSTER) {
        int rc = parse_redis_authority(o, rest, auth_len, buf, cap, &used, seen, n_seen, err);
        if (rc != CORRAL_OK) return rc;
        if (kind == URL_REDIS_CLUSTER && o->redis.db != 0)
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: a Redis Cluster has only database 0 (db)");
        o->redis.cluster = kind == URL_REDIS_CLUSTER;
    } else {
        if (auth_len < 2 || rest[0] != '/')
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: redis+unix:// needs a socket path: redis+unix:///path");
        int bad;
        char *path = copy_part(rest, auth_len, true, buf, cap, &used, &bad);
        if (!path)
            return corral__seterr(err, bad ? CORRAL_EBADURL : CORRAL_ENOSPC,
                                  "url: bad or too long socket path");
        o->redis.unix_path = path;
        o->redis.cluster = false;
    }
    if (!q) return CORRAL_OK;

    const char *p = q + 1;
    bool after_password = false; /* the part before was password=: this one may be its rest */
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
        bool pw_rest = after_password;
        after_password = eq && nlen == 8 && memcmp(p, "password", 8) == 0;
        if (pw_rest && (!eq || !known_param(seen, n_seen, p, nlen)))
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: the parameter after 'password' is not one (an '&' in a "
                                  "password is written %%26)");
        if (!eq)
            return corral__seterr(err, CORRAL_EBADURL, "url: parameter '%.*s' has no value", nshow,
                                  p);
        param_seen *ps = NULL;
        for (size_t i = 0; i < n_seen; i++) {
            if (strlen(seen[i].name) == nlen && memcmp(seen[i].name, p, nlen) == 0) ps = &seen[i];
        }
        if (!ps)
            return corral__seterr(err, CORRAL_EBADURL, "url: unknown parameter '%.*s'", nshow, p);
        if (ps->store == FOR_MEM && kind != URL_MEM)
            return corral__seterr(err, CORRAL_EBADURL, "url: parameter '%s' applies to mem:// only",
                                  ps->name);
        if (ps->store == FOR_REDIS && kind == URL_MEM)
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: parameter '%s' applies to redis:// only", ps->name);
        if (ps->store == FOR_CLUSTER && kind != URL_REDIS_CLUSTER)
            return corral__seterr(err, CORRAL_EBADURL,
                                  "url: parameter '%s' applies to redis+cluster:// only", ps->name);
        if (ps->seen)
            return corral__seterr(err, CORRAL_EBADURL, "url: parameter '%s' given twice%s",
                                  ps->name,
                                  strcmp(ps->name, "db") == 0 || strcmp(ps->name, "password") == 0
                                      ? " (the URL's path or userinfo names it too)"
                                      : "");
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
                int64_t ms;
                bad = corral_parse_duration_ms(val, dlen, &ms) != CORRAL_OK ||
                      ms / 1000 > INT64_MAX / 1000 - 1;
                if (!bad) o->default_ttl_ms = ms;
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
        } else if (strcmp(name, "db") == 0) {
            int64_t n;
            bad = parse_i64(val, dlen, &n) != 0 || n < 0 || n > REDIS_MAX_DB;
            if (!bad && kind == URL_REDIS_CLUSTER && n != 0)
                return corral__seterr(err, CORRAL_EBADURL,
                                      "url: a Redis Cluster has only database 0 (db)");
            if (!bad) o->redis.db = (unsigned)n;
        } else if (strcmp(name, "password") == 0) {
            o->redis.password = val;
        } else if (strcmp(name, "connect_timeout") == 0) {
            bad = parse_deadline_ms(val, dlen, &o->redis.connect_timeout_ms) != 0;
        } else if (strcmp(name, "command_timeout") == 0) {
            bad = parse_deadline_ms(val, dlen, &o->redis.command_timeout_ms) != 0;
        } else if (strcmp(name, "pool") == 0) {
            int64_t n;
            bad = parse_i64(val, dlen, &n) != 0 || n < 1 || n > REDIS_MAX_POOL;
            if (!bad) o->redis.pool = (unsigned)n;
        } else if (strcmp(name, "near_cache") == 0) {
            bad = parse_size(val, dlen, &o->redis.near_cache_bytes) != 0;
        } else if (strcmp(name, "read_from_replicas") == 0) {
            bad = parse_bool(val, dlen, &o->redis.read_from_replicas) != 0;
        } else if (strcmp(name, "serializer") == 0) {
            if (strcasecmp(val, "raw") == 0)
                o->redis.serializer = CORRAL_SERIALIZER_RAW;
            else if (strcasecmp(val, "django") == 0)
                o->redis.serializer = CORRAL_SERIALIZER_DJANGO;
            else if (strcasecmp(val, "bare") == 0)
                o->redis.serializer = CORRAL_SERIALIZER_BARE;
            else
                bad = 1;
        }
        if (bad)
            return corral__seterr(err, CORRAL_EBADURL, "url: bad value '%.*s' for parameter '%s'",
                                  (int)CORRAL_MIN(dlen, 40), val, name);
        if (!amp) break;
        p = amp + 1;
    }
    return CORRAL_OK;
}

/* ---- Redaction ---- */

typedef struct redact_out {
    char *buf;
    size_t cap, len; /* len: bytes of the whole result, written or not */
} redact_out;

static void put(redact_out *o, const char *s, size_t n) {
    if (o->len < o->cap) {
        size_t room = o->cap - o->len - 1, k = n < room ? n : room;
        memcpy(o->buf + o->len, s, k);
        o->buf[o->len + k] = '\0';
    }
    o->len += n;
}

size_t corral_url_redact(const char *url, char *out, size_t cap) {
    redact_out o = { out, cap, 0 };
    if (cap) out[0] = '\0';
    if (!url) return 0;
    const char *q = strchr(url, '?');
    size_t head = q ? (size_t)(q - url) : strlen(url);
    const char *sep = strstr(url, "://");
    if (sep && (size_t)(sep - url) > head) sep = NULL;
    const char *auth = sep ? sep + 3 : url;
    const char *at = NULL;
    for (const char *p = auth; p < url + head; p++) {
        if (*p == '@') at = p;
    }
    if (at) {
        /* The user name stays (it tells which account); the password never does. */
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        put(&o, url, (size_t)((colon ? colon + 1 : auth) - url));
        put(&o, "***", 3);
        put(&o, at, head - (size_t)(at - url));
    } else {
        put(&o, url, head);
    }
    if (!q) return o.len;
    const char *p = q + 1;
    put(&o, "?", 1);
    bool in_password = false;
    for (;;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        bool later = p > q + 1;
        if (eq && (size_t)(eq - p) == 8 && strncasecmp(p, "password", 8) == 0) {
            if (later) put(&o, "&", 1);
            put(&o, p, 9);
            put(&o, "***", 3);
            in_password = true;
        } else if (in_password && !eq) {
            /* An unencoded '&' inside the password: the rest of it, not a parameter. */
        } else {
            if (later) put(&o, "&", 1);
            put(&o, p, n);
            in_password = false;
        }
        if (!p[n]) break;
        p += n + 1;
    }
    return o.len;
}
