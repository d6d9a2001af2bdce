/*
 * config.c - corral-proxy's configuration: the INI file, the environment and the command-line
 * flags (args.c reads their text) applied in that order into an immutable refcounted snapshot
 * (px_config).
 *
 * Sections and keys (docs/proxy.md has the table with defaults; key_forms below, the form of
 * each value, is the reason given when one is refused):
 *   [proxy]   origin, listen, admin, store, threads, access_log, access_log_format, admin_token,
 *             admin_token_file, admin_allow_remote, x_cache_header, keep_surrogate_key,
 *             targeted_cache_control
 *   [limits]  max_head_bytes, max_headers, header_timeout, keepalive_timeout, body_timeout,
 *             send_timeout, origin_connect_timeout, origin_read_timeout, origin_idle_timeout,
 *             origin_max_idle, coalesce_timeout, fleet_lease, shutdown_timeout, max_object_size,
 *             purge_margin, max_connections, max_worker_connections
 *   [cache]   the defaults of every route: ttl, grace, stale_if_error, keep, max_ttl,
 *             hit_for_pass, honor_request_cache_control, path_tag_depth
 *   [route:NAME]  prefix (required), bypass, ttl, vary, strip_cookies, keep_cookies, grace,
 *             stale_if_error, keep, max_ttl, hit_for_pass
 * Flags: --origin, --listen, --admin, --store, --threads, --access-log, --access-log-format,
 * --admin-token, --admin-token-file, --config, --route 'PREFIX key=value ...', and
 * --set SECTION.KEY=VALUE for any key above. The admin token's sources, the last one winning:
 * the file's admin_token / admin_token_file, $CORRAL_ADMIN_TOKEN, the flags.
 *
 * Every refusal names where (FILE:LINE or the flag), the section and key, the value (never the
 * token's) and why. A section given twice in the file is an error naming both lines.
 *
 * Data model: parsing fills a `loader` (the snapshot being built, plus per-route "was this key
 * given" marks, since [cache] may come after the routes it provides defaults for); the routes
 * are resolved against [cache] at the end. Times are "250ms", "10s", "5m", "1h", "1d" or bare
 * seconds; sizes "16MB", "64KiB" or bare bytes (libcorral's one grammar, src/units.c).
 *
 * Threads: loading runs on the main thread (startup and SIGHUP). A snapshot is immutable once
 * published; its refcount is atomic and the last unref (any thread) frees it.
 */
#include "proxy.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define UNSET (-3) /* a route time not given: inherit [cache]'s */

/* Per-route values given explicitly, resolved against [cache] at the end. */
typedef struct route_src {
    int64_t ttl_ms, grace_ms, sie_ms, keep_ms, max_ttl_ms, hfp_ms;
    bool has_prefix;
    int line; /* the line of its [route:NAME] in the file; 0 for a --route or --set */
} route_src;

typedef struct loader {
    px_config *cfg;
    route_src src[PX_MAX_ROUTES];
    route_src cache;  /* [cache] */
    int honor_cc;     /* -1 unset */
    char why[256];    /* WHY_CAP: why the last value was refused ("" if the key's form says it) */
    const char *file; /* the config file's name, for messages */
    struct {
        char name[PX_ROUTE_NAME_MAX + 8];
        int line;
    } sections[PX_MAX_ROUTES + 4]; /* the file's section headers so far (duplicates) */
    size_t n_sections;
    char token_file[1024]; /* admin_token_file, read once every source is applied ("" none) */
} loader;

/* ---- Values ---- */

/* access_log_format: corral, combined or json (log.c writes each). */
bool px_log_format_parse(const char *s, int *out) {
    static const char *const names[] = { "corral", "combined", "json" };
    for (int i = 0; i < 3; i++) {
        if (!strcmp(s, names[i])) {
            *out = i;
            return true;
        }
    }
    return false;
}

static bool copy_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) return false;
    memcpy(dst, src, n + 1);
    return true;
}

#define WHY_CAP 256 /* bytes of a reason ("why") buffer */

/* Writes a reason into `why` (WHY_CAP bytes); returns false, for `return why_set(...)`. */
static bool why_set(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool why_set(char *why, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, WHY_CAP, fmt, ap);
    va_end(ap);
    if (n < 0) why[0] = '\0';
    return false;
}

/* A duration (libcorral's grammar, corral_parse_duration_ms: "250ms", "30s", "5m", bare
 * seconds) into ms, at most 9e15 ms. */
static bool parse_ms(const char *s, int64_t *out) {
    int64_t ms;
    if (corral_parse_duration_ms(s, strlen(s), &ms) != CORRAL_OK || ms > 9000000000000000)
        return false;
    *out = ms;
    return true;
}

/* A size (corral_parse_bytes: "64MB", "16KiB", bare bytes), at most 1e15 bytes. */
static bool parse_size(const char *s, size_t *out) {
    uint64_t b;
    if (corral_parse_bytes(s, strlen(s), &b) != CORRAL_OK || b > 1000000000000000) return false;
    *out = (size_t)b;
    return true;
}

static bool parse_bool(const char *s, bool *out) {
    if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = (unsigned)v;
    return true;
}

/* Splits "host:port" / "[v6]:port" / ":port" (every IPv4 address); on failure `why` says what
 * is wrong with it. */
static bool parse_hostport(const char *s, char *host, size_t host_cap, char *port, size_t port_cap,
                           char *why) {
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) return why_set(why, "unclosed '[' of an IPv6 address: want [ADDR]:PORT");
        if (close[1] != ':') return why_set(why, "no port after ']': want [ADDR]:PORT");
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= host_cap) return why_set(why, "empty or too long an IPv6 address");
        memcpy(host, s + 1, n);
        host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            bool digits = *s && strspn(s, "0123456789") == strlen(s);
            return why_set(why,
                           digits ? "no host: want HOST:PORT (127.0.0.1:%s, or :%s for "
                                    "every IPv4 address)"
                                  : "no port: want HOST:PORT (e.g. 127.0.0.1:8080)",
                           s, s);
        }
        size_t n = (size_t)(colon - s);
        if (n >= host_cap) return why_set(why, "the host is longer than %zu bytes", host_cap - 1);
        memcpy(host, s, n);
        host[n] = '\0';
        if (n == 0 && !copy_str(host, host_cap, "0.0.0.0")) return false;
    }
    unsigned p;
    if (!parse_uint(colon + 1, 0, 65535, &p))
        return why_set(why, "port '%.20s' is not a number from 0 to 65535", colon + 1);
    int w = snprintf(port, port_cap, "%u", p);
    return w > 0 && (size_t)w < port_cap;
}

/* "http://host[:port][/]" */
static bool parse_origin(px_config *cfg, const char *url, char *why) {
    static const char want[] = "want http://HOST[:PORT]";
    const char *sep = strstr(url, "://");
    if (!sep) {
        if (url[0] == '/') return why_set(why, "a path, not a URL: %s", want);
        return why_set(why, "no scheme: %s (e.g. http://%s)", want, *url ? url : "127.0.0.1:8000");
    }
    size_t scheme_len = (size_t)(sep - url);
    if (scheme_len == 5 && strncasecmp(url, "https", 5) == 0)
        return why_set(why, "TLS to the origin is not supported: give its plain-HTTP address, "
                            "http://HOST[:PORT]");
    if (scheme_len != 4 || strncasecmp(url, "http", 4) != 0)
        return why_set(why, "scheme '%.*s' is not supported: %s",
                       (int)(scheme_len > 20 ? 20 : scheme_len), url, want);
    const char *p = sep + 3;
    char auth[300];
    size_t n = strcspn(p, "/?#");
    if (n == 0) return why_set(why, "no host: %s", want);
    if (n >= sizeof auth)
        return why_set(why, "the host and port are longer than %zu bytes", sizeof auth - 1);
    if (p[n] == '?' || p[n] == '#' || (p[n] == '/' && p[n + 1] != '\0'))
        return why_set(why,
                       "a path or query after the host is not supported (the origin is a "
                       "site's root): %s",
                       want);
    memcpy(auth, p, n);
    auth[n] = '\0';
    if (strchr(auth, '@')) return why_set(why, "credentials in the origin URL are not supported");
    if (!copy_str(cfg->origin_authority, sizeof cfg->origin_authority, auth)) return false;
    bool has_port = auth[0] == '[' ? strstr(auth, "]:") != NULL : strchr(auth, ':') != NULL;
    char with[310];
    int w = snprintf(with, sizeof with, has_port ? "%s" : "%s:80", auth);
    if (w < 0 || (size_t)w >= sizeof with) return false;
    if (!parse_hostport(with, cfg->origin_host, sizeof cfg->origin_host, cfg->origin_port,
                        sizeof cfg->origin_port, why))
        return false;
    if (!strcmp(cfg->origin_port, "0")) return why_set(why, "port 0 is not a port to connect to");
    if (!cfg->origin_host[0] || auth[0] == ':') return why_set(why, "no host: %s", want);
    return true;
}

static bool valid_route_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > PX_ROUTE_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return false;
    }
    return true;
}

/* Normalises a comma list of field names into "a,b" lowercased. */
static bool parse_names(const char *s, char *out, size_t cap, size_t *len) {
    size_t o = 0;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t')
            s++;
        if (!*s) break;
        if (o && o + 1 < cap) out[o++] = ',';
        while (*s && *s != ',' && *s != ' ' && *s != '\t') {
            unsigned char ch = (unsigned char)*s++;
            if (ch <= 0x20 || ch >= 0x7f || o + 1 >= cap) return false;
            out[o++] = (char)tolower(ch);
        }
    }
    out[o] = '\0';
    *len = o;
    return true;
}

static bool parse_cookie_rule(px_route *r, const char *s, bool keep) {
    r->n_cookies = 0;
    r->keep_cookies = keep;
    size_t used = 0;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t')
            s++;
        if (!*s) break;
        size_t n = strcspn(s, ", \t");
        if (r->n_cookies == PX_MAX_COOKIE_NAMES || used + n + 1 > sizeof r->cookie_store)
            return false;
        memcpy(r->cookie_store + used, s, n);
        r->cookie_store[used + n] = '\0';
        r->cookies[r->n_cookies++] = r->cookie_store + used;
        used += n + 1;
        s += n;
    }
    return true;
}

/* ---- Routes ---- */

static px_route *route_find(px_config *cfg, const char *name, bool create, loader *ld,
                            size_t *index) {
    for (size_t i = 0; i < cfg->n_routes; i++) {
        if (strcmp(cfg->routes[i].name, name) == 0) {
            *index = i;
            return &cfg->routes[i];
        }
    }
    if (!create || cfg->n_routes == PX_MAX_ROUTES) return NULL;
    size_t i = cfg->n_routes++;
    px_route *r = &cfg->routes[i];
    memset(r, 0, sizeof *r);
    memcpy(r->name, name, strlen(name) + 1);
    corral_http_policy_init(&r->policy);
    route_src *s = &ld->src[i];
    s->ttl_ms = s->grace_ms = s->sie_ms = s->keep_ms = s->max_ttl_ms = s->hfp_ms = UNSET;
    s->has_prefix = false;
    *index = i;
    return r;
}

/* Sets one key of a route (or of [cache] when `r` is NULL). Returns false when unknown/bad. */
static bool route_key(px_route *r, route_src *s, const char *key, const char *val) {
    if (!strcmp(key, "ttl")) return parse_ms(val, &s->ttl_ms);
    if (!strcmp(key, "grace")) return parse_ms(val, &s->grace_ms);
    if (!strcmp(key, "stale_if_error")) return parse_ms(val, &s->sie_ms);
    if (!strcmp(key, "keep")) return parse_ms(val, &s->keep_ms);
    if (!strcmp(key, "max_ttl")) return parse_ms(val, &s->max_ttl_ms);
    if (!strcmp(key, "hit_for_pass")) return parse_ms(val, &s->hfp_ms);
    if (!r) return false;
    if (!strcmp(key, "prefix")) {
        if (val[0] != '/' || strlen(val) > PX_PREFIX_MAX) return false;
        for (const char *p = val; *p; p++) {
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) return false;
        }
        memcpy(r->prefix, val, strlen(val) + 1);
        r->prefix_len = strlen(val);
        s->has_prefix = true;
        return true;
    }
    if (!strcmp(key, "bypass")) return parse_bool(val, &r->bypass);
    if (!strcmp(key, "vary")) return parse_names(val, r->vary, sizeof r->vary, &r->vary_len);
    if (!strcmp(key, "strip_cookies")) return parse_cookie_rule(r, val, false);
    if (!strcmp(key, "keep_cookies")) return parse_cookie_rule(r, val, true);
    return false;
}

static int set_proxy(loader *ld, const char *key, const char *val) {
    px_config *cfg = ld->cfg;
    if (!strcmp(key, "origin")) return parse_origin(cfg, val, ld->why);
    if (!strcmp(key, "listen"))
        return parse_hostport(val, cfg->listen_host, sizeof cfg->listen_host, cfg->listen_port,
                              sizeof cfg->listen_port, ld->why);
    if (!strcmp(key, "admin")) {
        if (!strcmp(val, "off") || !*val) {
            cfg->admin_host[0] = '\0';
            return true;
        }
        return parse_hostport(val, cfg->admin_host, sizeof cfg->admin_host, cfg->admin_port,
                              sizeof cfg->admin_port, ld->why);
    }
    if (!strcmp(key, "store")) return copy_str(cfg->store_url, sizeof cfg->store_url, val);
    if (!strcmp(key, "threads")) return parse_uint(val, 0, 256, &cfg->threads);
    if (!strcmp(key, "access_log")) return copy_str(cfg->access_log, sizeof cfg->access_log, val);
    if (!strcmp(key, "access_log_format")) return px_log_format_parse(val, &cfg->log_format);
    /* The two token keys replace each other: the last source given wins. */
    if (!strcmp(key, "admin_token")) {
        if (!copy_str(cfg->admin_token, sizeof cfg->admin_token, val)) return false;
        ld->token_file[0] = '\0';
        return true;
    }
    if (!strcmp(key, "admin_token_file")) {
        if (!*val || !copy_str(ld->token_file, sizeof ld->token_file, val)) return false;
        cfg->admin_token[0] = '\0';
        return true;
    }
    if (!strcmp(key, "admin_allow_remote")) return parse_bool(val, &cfg->admin_allow_remote);
    if (!strcmp(key, "x_cache_header")) return parse_bool(val, &cfg->x_cache_header);
    if (!strcmp(key, "keep_surrogate_key")) return parse_bool(val, &cfg->keep_surrogate_key);
    if (!strcmp(key, "targeted_cache_control")) {
        size_t n;
        if (!strcmp(val, "off")) val = "";
        return parse_names(val, cfg->cc_targets, sizeof cfg->cc_targets, &n);
    }
    return false;
}

static int set_limits(px_config *cfg, const char *key, const char *val) {
    unsigned u;
    size_t z;
    if (!strcmp(key, "max_head_bytes")) {
        if (!parse_size(val, &z) || z < 256 || z > (1u << 20)) return false;
        cfg->limits.max_head_bytes = z;
        return true;
    }
    if (!strcmp(key, "max_headers")) {
        if (!parse_uint(val, 1, 1024, &u)) return false;
        cfg->limits.max_headers = u;
        return true;
    }
    if (!strcmp(key, "header_timeout")) return parse_ms(val, &cfg->header_timeout_ms);
    if (!strcmp(key, "keepalive_timeout")) return parse_ms(val, &cfg->keepalive_timeout_ms);
    if (!strcmp(key, "body_timeout")) return parse_ms(val, &cfg->body_timeout_ms);
    if (!strcmp(key, "send_timeout")) return parse_ms(val, &cfg->send_timeout_ms);
    if (!strcmp(key, "origin_connect_timeout")) return parse_ms(val, &cfg->connect_timeout_ms);
    if (!strcmp(key, "origin_read_timeout")) return parse_ms(val, &cfg->read_timeout_ms);
    if (!strcmp(key, "origin_idle_timeout")) return parse_ms(val, &cfg->origin_idle_ms);
    if (!strcmp(key, "origin_max_idle")) return parse_uint(val, 0, 100000, &cfg->origin_max_idle);
    if (!strcmp(key, "coalesce_timeout")) return parse_ms(val, &cfg->coalesce_timeout_ms);
    if (!strcmp(key, "fleet_lease")) return parse_ms(val, &cfg->fleet_lease_ms);
    if (!strcmp(key, "shutdown_timeout")) return parse_ms(val, &cfg->shutdown_timeout_ms);
    if (!strcmp(key, "max_object_size")) return parse_size(val, &cfg->max_object_size);
    if (!strcmp(key, "max_connections")) return parse_uint(val, 1, 1000000, &cfg->max_connections);
    if (!strcmp(key, "max_worker_connections"))
        return parse_uint(val, 0, 1000000, &cfg->max_worker_connections);
    if (!strcmp(key, "purge_margin"))
        return parse_ms(val, &cfg->purge_margin_ms) &&
               cfg->purge_margin_ms <= PX_STAMP_MARGIN_MAX_MS;
    return false;
}

/* ---- Keys and their forms ---- */

#define DURATION "a duration: 250ms, 10s, 5m, 1h, 1d or bare seconds"
#define SIZE     "a size: 16MB, 64KiB or bare bytes"
#define BOOLEAN  "true or false (yes/no, on/off, 1/0)"

/* Every key, and the form its value takes (the reason given when a value is refused and the
 * parser has none more precise). `in` is a section, "route" for [route:NAME], or "*" for the
 * keys of both [cache] and the routes. A key missing here is reported as unknown. */
static const struct key_form {
    const char *in, *key, *form;
} key_forms[] = {
    { "proxy", "origin", "http://HOST[:PORT]" },
    { "proxy", "listen", "HOST:PORT" },
    { "proxy", "admin", "HOST:PORT or off" },
    { "proxy", "store", "a cache URL (mem://..., redis://...) of at most 1023 bytes" },
    { "proxy", "threads", "an integer from 0 (one per core) to 256" },
    { "proxy", "access_log", "-, off or a path of at most 1023 bytes" },
    { "proxy", "access_log_format", "corral, combined or json" },
    { "proxy", "admin_token", "at most 127 bytes" },
    { "proxy", "admin_token_file", "a path of at most 1023 bytes" },
    { "proxy", "admin_allow_remote", BOOLEAN },
    { "proxy", "x_cache_header", BOOLEAN },
    { "proxy", "keep_surrogate_key", BOOLEAN },
    { "proxy", "targeted_cache_control",
      "off, or a comma list of field names (visible ASCII, at most 127 bytes)" },
    { "limits", "max_head_bytes", "a size from 256 bytes to 1MiB" },
    { "limits", "max_headers", "an integer from 1 to 1024" },
    { "limits", "header_timeout", DURATION },
    { "limits", "keepalive_timeout", DURATION },
    { "limits", "body_timeout", DURATION },
    { "limits", "send_timeout", DURATION },
    { "limits", "origin_connect_timeout", DURATION },
    { "limits", "origin_read_timeout", DURATION },
    { "limits", "origin_idle_timeout", DURATION },
    { "limits", "origin_max_idle", "an integer from 0 to 100000" },
    { "limits", "coalesce_timeout", DURATION },
    { "limits", "fleet_lease", DURATION },
    { "limits", "shutdown_timeout", DURATION },
    { "limits", "max_object_size", SIZE },
    { "limits", "purge_margin", "a duration of at most 10m" },
    { "limits", "max_connections", "an integer from 1 to 1000000" },
    { "limits", "max_worker_connections", "an integer from 0 (only the total) to 1000000" },
    { "cache", "honor_request_cache_control", BOOLEAN },
    { "cache", "path_tag_depth", "an integer from 1 to 8" },
    { "*", "ttl", DURATION },
    { "*", "grace", DURATION },
    { "*", "stale_if_error", DURATION },
    { "*", "keep", DURATION },
    { "*", "max_ttl", DURATION },
    { "*", "hit_for_pass", DURATION },
    { "route", "prefix", "a path starting with '/': at most 200 bytes of visible ASCII" },
    { "route", "bypass", BOOLEAN },
    { "route", "vary", "a comma list of field names (visible ASCII, at most 255 bytes)" },
    { "route", "strip_cookies", "a comma list of at most 16 cookie names (511 bytes)" },
    { "route", "keep_cookies", "a comma list of at most 16 cookie names (511 bytes)" },
};

/* The key_forms group of a section name. */
static const char *section_kind(const char *section) {
    return strncmp(section, "route:", 6) == 0 ? "route" : section;
}

static bool form_in(const struct key_form *f, const char *kind) {
    return !strcmp(f->in, kind) ||
           (!strcmp(f->in, "*") && (!strcmp(kind, "cache") || !strcmp(kind, "route")));
}

static const char *key_form(const char *section, const char *key) {
    const char *kind = section_kind(section);
    for (size_t i = 0; i < sizeof key_forms / sizeof key_forms[0]; i++) {
        if (form_in(&key_forms[i], kind) && !strcmp(key_forms[i].key, key))
            return key_forms[i].form;
    }
    return NULL;
}

/* "a, b, c": the keys of a section, for the message about an unknown one. */
static void known_keys(const char *section, char *out, size_t cap) {
    const char *kind = section_kind(section);
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof key_forms / sizeof key_forms[0]; i++) {
        if (!form_in(&key_forms[i], kind)) continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? ", " : "", key_forms[i].key);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

/* Why `section` is no section of ours, or NULL when it is one. */
static const char *bad_section(const char *section) {
    if (!strcmp(section, "proxy") || !strcmp(section, "limits") || !strcmp(section, "cache"))
        return NULL;
    if (strncmp(section, "route:", 6) != 0)
        return "unknown section (known: proxy, limits, cache, route:NAME)";
    if (!strcmp(section + 6, "default"))
        return "the route 'default' is built in (its settings are [cache]'s)";
    if (!valid_route_name(section + 6))
        return "a route name is 1 to 32 of A-Z, a-z, 0-9, '_' and '-'";
    return NULL;
}

/* A value as a message may show it: the admin token never, a store URL without its
 * credentials (corral_url_redact, the one redaction of every URL the proxy shows), others cut
 * at 100 bytes. */
static void shown_value(const char *key, const char *val, char *out, size_t cap) {
    if (!strcmp(key, "admin_token")) {
        snprintf(out, cap, "(hidden)");
        return;
    }
    char safe[1100];
    if (!strcmp(key, "store")) {
        corral_url_redact(val, safe, sizeof safe);
        val = safe;
    }
    snprintf(out, cap, "'%.100s%s'", val, strlen(val) > 100 ? "..." : "");
}

/* ---- Applying keys ---- */

/* One key=value of a section. Returns true when accepted; false with ld->why set, or empty
 * when the key's form (key_forms) is the reason. */
static bool apply(loader *ld, const char *section, const char *key, const char *val) {
    px_config *cfg = ld->cfg;
    ld->why[0] = '\0';
    const char *bad = bad_section(section);
    if (bad) return why_set(ld->why, "%s", bad);
    if (!strcmp(section, "proxy")) return set_proxy(ld, key, val);
    if (!strcmp(section, "limits")) return set_limits(cfg, key, val);
    if (!strcmp(section, "cache")) {
        if (!strcmp(key, "path_tag_depth"))
            return parse_uint(val, 1, PX_MAX_PATH_TAGS, &cfg->path_tag_depth);
        if (!strcmp(key, "honor_request_cache_control")) {
            bool b;
            if (!parse_bool(val, &b)) return false;
            ld->honor_cc = b;
            return true;
        }
        return route_key(NULL, &ld->cache, key, val);
    }
    size_t i;
    px_route *r = route_find(cfg, section + 6, true, ld, &i);
    if (!r) return why_set(ld->why, "more than %d routes", PX_MAX_ROUTES - 1);
    return route_key(r, &ld->src[i], key, val);
}

/* Applies one key and explains a refusal in `err`: "WHERE: [SECTION] KEY = 'VALUE': WHY", or
 * "WHERE: unknown key ...". `where` is "FILE:LINE" or the flag. */
static bool apply_or_explain(loader *ld, const char *where, const char *section, const char *key,
                             const char *val, px_error *err) {
    if (apply(ld, section, key, val)) return true;
    char shown[128];
    shown_value(key, val, shown, sizeof shown);
    if (ld->why[0])
        return px_fail(err, "%s: [%s] %s = %s: %s", where, section, key, shown, ld->why);
    const char *form = key_form(section, key);
    if (form) return px_fail(err, "%s: [%s] %s = %s: want %s", where, section, key, shown, form);
    char known[700];
    known_keys(section, known, sizeof known);
    return px_fail(err, "%s: unknown key '%.60s' in [%s] (known: %s)", where, key, section, known);
}

/* The INI reader's events: section headers (checked, duplicates refused) and keys. */
static bool on_ini(void *user, int line, const char *section, const char *key, const char *val,
                   px_error *err) {
    loader *ld = user;
    if (key) {
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", ld->file, line);
        return apply_or_explain(ld, where, section, key, val, err);
    }
    const char *bad = bad_section(section);
    if (bad) return px_fail(err, "%s:%d: [%.60s]: %s", ld->file, line, section, bad);
    for (size_t i = 0; i < ld->n_sections; i++) {
        if (!strcmp(ld->sections[i].name, section))
            return px_fail(err, "%s:%d: section [%s] is given twice (first at line %d)", ld->file,
                           line, section, ld->sections[i].line);
    }
    if (ld->n_sections == sizeof ld->sections / sizeof ld->sections[0])
        return px_fail(err, "%s:%d: more than %d routes", ld->file, line, PX_MAX_ROUTES - 1);
    memcpy(ld->sections[ld->n_sections].name, section, strlen(section) + 1);
    ld->sections[ld->n_sections++].line = line;
    if (!strncmp(section, "route:", 6)) {
        size_t i;
        if (!route_find(ld->cfg, section + 6, true, ld, &i))
            return px_fail(err, "%s:%d: more than %d routes", ld->file, line, PX_MAX_ROUTES - 1);
        ld->src[i].line = line;
    }
    return true;
}

/* "--route 'PREFIX key=value ...'" */
static bool apply_route_flag(loader *ld, const char *spec, px_error *err) {
    char buf[1024];
    if (!copy_str(buf, sizeof buf, spec))
        return px_fail(err, "--route: longer than %zu bytes", sizeof buf - 1);
    char where[1100];
    snprintf(where, sizeof where, "--route '%.200s'", spec);
    char *save = NULL;
    char *prefix = strtok_r(buf, " ", &save);
    if (!prefix || prefix[0] != '/')
        return px_fail(err, "%s: want 'PREFIX key=value ...', the prefix starting with '/'", where);
    char name[PX_ROUTE_NAME_MAX + 1];
    size_t n = 0;
    for (const char *p = prefix; *p && n < PX_ROUTE_NAME_MAX; p++) {
        if (isalnum((unsigned char)*p))
            name[n++] = *p;
        else if (n && name[n - 1] != '_')
            name[n++] = '_';
    }
    while (n && name[n - 1] == '_')
        n--;
    name[n] = '\0';
    if (n == 0) memcpy(name, "root", 5);
    char *tok;
    char *rest[32];
    size_t nrest = 0;
    while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
        if (!strncmp(tok, "name=", 5)) {
            if (!copy_str(name, sizeof name, tok + 5) || !valid_route_name(name) ||
                !strcmp(name, "default"))
                return px_fail(err,
                               "%s: bad route name '%.40s' (1 to 32 of A-Z, a-z, 0-9, '_', "
                               "'-'; not 'default')",
                               where, tok + 5);
        } else if (!strchr(tok, '=')) {
            return px_fail(err, "%s: '%.60s' is not key=value", where, tok);
        } else if (nrest < 32) {
            rest[nrest++] = tok;
        } else {
            return px_fail(err, "%s: more than 32 settings", where);
        }
    }
    char section[PX_ROUTE_NAME_MAX + 8];
    int w = snprintf(section, sizeof section, "route:%s", name);
    if (w < 0 || (size_t)w >= sizeof section) return px_fail(err, "%s: name too long", where);
    if (!apply_or_explain(ld, where, section, "prefix", prefix, err)) return false;
    for (size_t i = 0; i < nrest; i++) {
        char *eq = strchr(rest[i], '=');
        *eq = '\0';
        if (!apply_or_explain(ld, where, section, rest[i], eq + 1, err)) return false;
    }
    return true;
}

/* "--set SECTION.KEY=VALUE" */
static bool apply_set_flag(loader *ld, const char *spec, px_error *err) {
    char buf[1200];
    if (!copy_str(buf, sizeof buf, spec))
        return px_fail(err, "--set: longer than %zu bytes", sizeof buf - 1);
    char *dot = strchr(buf, '.');
    char *eq = strchr(buf, '=');
    char shown[1300]; /* it may be a store URL */
    corral_url_redact(spec, shown, sizeof shown);
    if (!dot || !eq || eq < dot)
        return px_fail(err, "--set '%.100s': want SECTION.KEY=VALUE (e.g. cache.ttl=5m)",
                       strstr(spec, "token") ? "..." : shown);
    *dot = '\0';
    *eq = '\0';
    char where[80];
    snprintf(where, sizeof where, "--set %.30s.%.30s", buf, dot + 1);
    return apply_or_explain(ld, where, buf, dot + 1, eq + 1, err);
}

/* Applies the command line's settings (flags win over the file). */
static bool apply_flags(loader *ld, const px_flags *f, px_error *err) {
    static const struct {
        int opt;
        const char *key;
    } simple[] = { { PX_FLAG_ORIGIN, "origin" },
                   { PX_FLAG_LISTEN, "listen" },
                   { PX_FLAG_ADMIN, "admin" },
                   { PX_FLAG_STORE, "store" },
                   { PX_FLAG_THREADS, "threads" },
                   { PX_FLAG_ACCESS_LOG, "access_log" },
                   { PX_FLAG_ACCESS_LOG_FORMAT, "access_log_format" },
                   { PX_FLAG_ADMIN_TOKEN, "admin_token" },
                   { PX_FLAG_ADMIN_TOKEN_FILE, "admin_token_file" } };
    for (size_t i = 0; i < f->n; i++) {
        const px_flag *fl = &f->v[i];
        bool ok = true, done = false;
        if (fl->opt == PX_FLAG_ROUTE) {
            ok = apply_route_flag(ld, fl->value, err);
            done = true;
        } else if (fl->opt == PX_FLAG_SET) {
            ok = apply_set_flag(ld, fl->value, err);
            done = true;
        }
        for (size_t k = 0; !done && k < sizeof simple / sizeof simple[0]; k++) {
            if (simple[k].opt != fl->opt) continue;
            done = true;
            if (apply(ld, "proxy", simple[k].key, fl->value)) break;
            char shown[128];
            shown_value(simple[k].key, fl->value, shown, sizeof shown);
            const char *why = ld->why[0] ? ld->why : key_form("proxy", simple[k].key);
            ok = px_fail(err, "--%s %s: %s%s", px_flag_name(fl->opt), shown,
                         ld->why[0] ? "" : "want ", why);
        }
        if (!ok) return false;
    }
    return true;
}

void px_config_defaults(px_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->magic = PX_CONFIG_MAGIC;
    atomic_init(&cfg->refs, 1);
    memcpy(cfg->listen_host, "127.0.0.1", 10);
    memcpy(cfg->listen_port, "8080", 5);
    memcpy(cfg->store_url, "mem://", 7);
    corral_http_limits_init(&cfg->limits);
    cfg->header_timeout_ms = 10000;
    cfg->keepalive_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->send_timeout_ms = 30000;
    cfg->connect_timeout_ms = 3000;
    cfg->read_timeout_ms = 30000;
    cfg->origin_idle_ms = 20000;
    cfg->origin_max_idle = 64;
    cfg->max_connections = 16384;
    cfg->coalesce_timeout_ms = 30000;
    cfg->fleet_lease_ms = 10000; /* at most half of coalesce_timeout: px_config_parse */
    cfg->shutdown_timeout_ms = 30000;
    cfg->max_object_size = 16u << 20;
    cfg->purge_margin_ms = PX_STAMP_MARGIN_MS;
    cfg->path_tag_depth = 4;
    cfg->x_cache_header = true;
    memcpy(cfg->cc_targets, "cdn-cache-control", 18);
    memcpy(cfg->access_log, "-", 2);
    cfg->log_fd = -1;
    px_route *d = &cfg->routes[0];
    memcpy(d->name, "default", 8);
    memcpy(d->prefix, "/", 2);
    d->prefix_len = 1;
    corral_http_policy_init(&d->policy);
    cfg->n_routes = 1;
}

static int64_t pick(int64_t route, int64_t cache, int64_t def) {
    if (route != UNSET) return route;
    if (cache != UNSET) return cache;
    return def;
}

/* Where a route was defined, for messages: " (FILE:LINE)" or "" for a flag. */
static void route_where(const loader *ld, size_t i, char *out, size_t cap) {
    if (ld->src[i].line)
        snprintf(out, cap, " (%s:%d)", ld->file, ld->src[i].line);
    else
        out[0] = '\0';
}

/* Applies [cache] and the engine's defaults to every route. */
static bool resolve_routes(loader *ld, px_error *err) {
    px_config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        px_route *r = &cfg->routes[i];
        route_src *s = &ld->src[i];
        char at[1100], at2[1100];
        route_where(ld, i, at, sizeof at);
        if (i > 0 && !s->has_prefix)
            return px_fail(err, "route %s%s has no prefix (prefix = /PATH/)", r->name, at);
        corral_http_policy *p = &r->policy;
        corral_http_policy_init(p);
        p->ttl_override_ms = pick(s->ttl_ms, ld->cache.ttl_ms, -1);
        p->grace_ms = pick(s->grace_ms, ld->cache.grace_ms, 0);
        p->stale_if_error_ms = pick(s->sie_ms, ld->cache.sie_ms, 0);
        p->keep_ms = pick(s->keep_ms, ld->cache.keep_ms, p->keep_ms);
        p->max_ttl_ms = pick(s->max_ttl_ms, ld->cache.max_ttl_ms, 0);
        if (ld->honor_cc >= 0) p->honor_request_cache_control = ld->honor_cc;
        p->cc_targets = cfg->cc_targets[0] ? cfg->cc_targets : NULL; /* cfg is not moved */
        r->hit_for_pass_ms = pick(s->hfp_ms, ld->cache.hfp_ms, 10000);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].prefix, r->prefix) == 0) {
                route_where(ld, j, at2, sizeof at2);
                return px_fail(err, "routes %s%s and %s%s have the same prefix '%s'",
                               cfg->routes[j].name, at2, r->name, at, r->prefix);
            }
        }
    }
    return true;
}

px_config *px_config_parse(const char *name, const char *text, size_t len, const px_flags *f,
                           px_error *err) {
    err->usage = false;
    err->msg[0] = '\0';
    px_config *cfg = malloc(sizeof *cfg);
    loader *ld = calloc(1, sizeof *ld);
    if (!cfg || !ld) {
        px_fail(err, "out of memory");
        goto fail;
    }
    px_config_defaults(cfg);
    ld->cfg = cfg;
    ld->honor_cc = -1;
    ld->file = name ? name : "(config)";
    route_src *s0 = &ld->src[0];
    s0->ttl_ms = s0->grace_ms = s0->sie_ms = s0->keep_ms = s0->max_ttl_ms = s0->hfp_ms = UNSET;
    s0->has_prefix = true;
    ld->cache = *s0;
    if (text && !px_ini_parse(ld->file, text, len, on_ini, ld, err)) goto fail;
    /* The environment's token overrides the file's and yields to the command line's. */
    if (f->env_token && !apply(ld, "proxy", "admin_token", f->env_token)) {
        px_fail(err, "CORRAL_ADMIN_TOKEN: want %s", key_form("proxy", "admin_token"));
        goto fail;
    }
    if (!apply_flags(ld, f, err)) goto fail;
    if (!cfg->origin_host[0]) {
        px_fail(err, "no origin: give --origin http://HOST:PORT or origin = in [proxy]");
        err->usage = true;
        goto fail;
    }
    if (!resolve_routes(ld, err)) goto fail;
    /* A fleet wait ends by half of coalesce_timeout, so the waiters behind it stay for its one
     * fetch (fleet.c); a lease outliving the wait would let them all time out and fetch. */
    if (cfg->fleet_lease_ms > 0 && cfg->fleet_lease_ms > cfg->coalesce_timeout_ms / 2) {
        px_fail(err,
                "fleet_lease (%lld ms) must be at most half of coalesce_timeout (%lld ms); "
                "fleet_lease = 0 turns it off",
                (long long)cfg->fleet_lease_ms, (long long)cfg->coalesce_timeout_ms);
        goto fail;
    }
    if (ld->token_file[0] &&
        !px_read_token_file(ld->token_file, cfg->admin_token, sizeof cfg->admin_token, err))
        goto fail;
    memcpy(cfg->listen_port_cfg, cfg->listen_port, sizeof cfg->listen_port_cfg);
    free(ld);
    return cfg;
fail:
    free(ld);
    free(cfg);
    return NULL;
}

int px_config_open_log(px_config *cfg) {
    if (!strcmp(cfg->access_log, "off")) {
        cfg->log_fd = -1;
        return 0;
    }
    if (!strcmp(cfg->access_log, "-")) {
        cfg->log_fd = dup(STDOUT_FILENO);
    } else {
        cfg->log_fd = open(cfg->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    if (cfg->log_fd < 0) {
        fprintf(stderr, "corral-proxy: cannot open access log %s: %s\n", cfg->access_log,
                strerror(errno));
        return PX_EIO;
    }
    return 0;
}

bool px_config_compatible(const px_config *old, const px_config *cur) {
    static const struct {
        const char *what;
        size_t off;
    } fixed[] = { { "origin", offsetof(px_config, origin_authority) },
                  { "listen host", offsetof(px_config, listen_host) },
                  { "listen port", offsetof(px_config, listen_port_cfg) },
                  { "admin host", offsetof(px_config, admin_host) },
                  { "admin port", offsetof(px_config, admin_port) },
                  { "store", offsetof(px_config, store_url) } };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strcmp((const char *)old + fixed[i].off, (const char *)cur + fixed[i].off) != 0) {
            fprintf(stderr, "corral-proxy: reload cannot change the %s (restart instead)\n",
                    fixed[i].what);
            return false;
        }
    }
    if (old->threads != cur->threads) {
        fprintf(stderr, "corral-proxy: reload cannot change the threads (restart instead)\n");
        return false;
    }
    return true;
}

px_config *px_config_ref(px_config *cfg) {
    PX_CHECK_OBJ(cfg, PX_CONFIG_MAGIC);
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void px_config_unref(px_config *cfg) {
    if (!cfg) return;
    PX_CHECK_OBJ(cfg, PX_CONFIG_MAGIC);
    if (atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1) return;
    if (cfg->log_fd >= 0 && close(cfg->log_fd) != 0) {
        /* The log's last lines may be lost; nothing else to do about it here. */
        fprintf(stderr, "corral-proxy: closing the access log: %s\n", strerror(errno));
    }
    cfg->magic = 0;
    free(cfg);
}

const px_route *px_route_match(const px_config *cfg, const char *path, size_t len) {
    const px_route *best = &cfg->routes[0];
    for (size_t i = 1; i < cfg->n_routes; i++) {
        const px_route *r = &cfg->routes[i];
        if (r->prefix_len <= len && r->prefix_len > best->prefix_len &&
            memcmp(path, r->prefix, r->prefix_len) == 0)
            best = r;
    }
    return best;
}
