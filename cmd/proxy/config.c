/*
 * config.c - corral-proxy's configuration: an INI file read with Debian's libinih, then the
 * command-line flags on top, into an immutable refcounted snapshot (px_config).
 *
 * Sections and keys (docs/proxy.md has the table with defaults):
 *   [proxy]   origin, listen, admin, store, threads, access_log, access_log_format, admin_token,
 *             admin_allow_remote, x_cache_header
 *   [limits]  max_head_bytes, max_headers, header_timeout, keepalive_timeout, body_timeout,
 *             send_timeout, origin_connect_timeout, origin_read_timeout, origin_idle_timeout,
 *             origin_max_idle, coalesce_timeout, shutdown_timeout, max_object_size,
 *             purge_margin
 *   [cache]   the defaults of every route: ttl, grace, stale_if_error, keep, max_ttl,
 *             hit_for_pass, honor_request_cache_control, path_tag_depth
 *   [route:NAME]  prefix (required), bypass, ttl, vary, strip_cookies, keep_cookies, grace,
 *             stale_if_error, keep, max_ttl, hit_for_pass
 * Flags: --origin, --listen, --admin, --store, --threads, --access-log, --access-log-format,
 *        --admin-token,
 * --config, --route 'PREFIX key=value ...', and --set SECTION.KEY=VALUE for any key above.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#define UNSET (-3) /* a route time not given: inherit [cache]'s */

/* Per-route values given explicitly, resolved against [cache] at the end. */
typedef struct route_src {
    int64_t ttl_ms, grace_ms, sie_ms, keep_ms, max_ttl_ms, hfp_ms;
    bool has_prefix;
} route_src;

typedef struct loader {
    px_config *cfg;
    route_src src[PX_MAX_ROUTES];
    route_src cache;   /* [cache] */
    int honor_cc;      /* -1 unset */
    const char *where; /* "config file" or "--set" for messages */
    bool failed;
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

/* Splits "host:port" / "[v6]:port" / ":port". */
static bool parse_hostport(const char *s, char *host, size_t host_cap, char *port,
                           size_t port_cap) {
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return false;
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= host_cap) return false;
        memcpy(host, s + 1, n);
        host[n] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return false;
        size_t n = (size_t)(colon - s);
        if (n >= host_cap) return false;
        memcpy(host, s, n);
        host[n] = '\0';
        if (n == 0 && !copy_str(host, host_cap, "0.0.0.0")) return false;
    }
    unsigned p;
    if (!parse_uint(colon + 1, 0, 65535, &p)) return false;
    int w = snprintf(port, port_cap, "%u", p);
    return w > 0 && (size_t)w < port_cap;
}

/* "http://host[:port][/]" */
static bool parse_origin(px_config *cfg, const char *url) {
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) return false;
    p += 7;
    char auth[300];
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= sizeof auth) return false;
    if (p[n] == '/' && p[n + 1] != '\0') return false; /* a path prefix is not supported */
    memcpy(auth, p, n);
    auth[n] = '\0';
    if (!copy_str(cfg->origin_authority, sizeof cfg->origin_authority, auth)) return false;
    bool has_port = auth[0] == '[' ? strstr(auth, "]:") != NULL : strchr(auth, ':') != NULL;
    if (!has_port) {
        char with[310];
        int w = snprintf(with, sizeof with, "%s:80", auth);
        if (w < 0 || (size_t)w >= sizeof with) return false;
        return parse_hostport(with, cfg->origin_host, sizeof cfg->origin_host, cfg->origin_port,
                              sizeof cfg->origin_port);
    }
    return parse_hostport(auth, cfg->origin_host, sizeof cfg->origin_host, cfg->origin_port,
                          sizeof cfg->origin_port);
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

static int set_proxy(px_config *cfg, const char *key, const char *val) {
    if (!strcmp(key, "origin")) return parse_origin(cfg, val);
    if (!strcmp(key, "listen"))
        return parse_hostport(val, cfg->listen_host, sizeof cfg->listen_host, cfg->listen_port,
                              sizeof cfg->listen_port);
    if (!strcmp(key, "admin")) {
        if (!strcmp(val, "off") || !*val) {
            cfg->admin_host[0] = '\0';
            return true;
        }
        return parse_hostport(val, cfg->admin_host, sizeof cfg->admin_host, cfg->admin_port,
                              sizeof cfg->admin_port);
    }
    if (!strcmp(key, "store")) return copy_str(cfg->store_url, sizeof cfg->store_url, val);
    if (!strcmp(key, "threads")) return parse_uint(val, 0, 256, &cfg->threads);
    if (!strcmp(key, "access_log")) return copy_str(cfg->access_log, sizeof cfg->access_log, val);
    if (!strcmp(key, "access_log_format")) return px_log_format_parse(val, &cfg->log_format);
    if (!strcmp(key, "admin_token"))
        return copy_str(cfg->admin_token, sizeof cfg->admin_token, val);
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
    if (!strcmp(key, "shutdown_timeout")) return parse_ms(val, &cfg->shutdown_timeout_ms);
    if (!strcmp(key, "max_object_size")) return parse_size(val, &cfg->max_object_size);
    if (!strcmp(key, "purge_margin"))
        return parse_ms(val, &cfg->purge_margin_ms) &&
               cfg->purge_margin_ms <= PX_STAMP_MARGIN_MAX_MS;
    return false;
}

/* One key=value of a section; returns true when accepted. */
static bool apply(loader *ld, const char *section, const char *key, const char *val) {
    px_config *cfg = ld->cfg;
    if (!strcmp(section, "proxy")) return set_proxy(cfg, key, val);
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
    if (!strncmp(section, "route:", 6)) {
        const char *name = section + 6;
        if (!valid_route_name(name) || !strcmp(name, "default")) return false;
        size_t i;
        px_route *r = route_find(cfg, name, true, ld, &i);
        if (!r) return false;
        return route_key(r, &ld->src[i], key, val);
    }
    return false;
}

static int on_ini(void *user, const char *section, const char *name, const char *value) {
    loader *ld = user;
    if (!apply(ld, section, name, value)) {
        fprintf(stderr, "corral-proxy: %s: bad or unknown setting [%s] %s = %s\n", ld->where,
                section, name, value);
        ld->failed = true;
        return 0;
    }
    return 1;
}

/* "--route 'PREFIX key=value ...'" */
static bool apply_route_flag(loader *ld, const char *spec) {
    char buf[1024];
    if (!copy_str(buf, sizeof buf, spec)) return false;
    char *save = NULL;
    char *prefix = strtok_r(buf, " ", &save);
    if (!prefix || prefix[0] != '/') return false;
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
            if (!copy_str(name, sizeof name, tok + 5)) return false;
        } else if (nrest < 32) {
            rest[nrest++] = tok;
        } else {
            return false;
        }
    }
    char section[PX_ROUTE_NAME_MAX + 8];
    int w = snprintf(section, sizeof section, "route:%s", name);
    if (w < 0 || (size_t)w >= sizeof section) return false;
    if (!apply(ld, section, "prefix", prefix)) return false;
    for (size_t i = 0; i < nrest; i++) {
        char *eq = strchr(rest[i], '=');
        if (!eq) return false;
        *eq = '\0';
        if (!apply(ld, section, rest[i], eq + 1)) return false;
    }
    return true;
}

/* "--set SECTION.KEY=VALUE" */
static bool apply_set_flag(loader *ld, const char *spec) {
    char buf[1200];
    if (!copy_str(buf, sizeof buf, spec)) return false;
    char *dot = strchr(buf, '.');
    char *eq = strchr(buf, '=');
    if (!dot || !eq || eq < dot) return false;
    *dot = '\0';
    *eq = '\0';
    return apply(ld, buf, dot + 1, eq + 1);
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
    cfg->coalesce_timeout_ms = 30000;
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

/* Applies [cache] and the engine's defaults to every route. */
static bool resolve_routes(loader *ld) {
    px_config *cfg = ld->cfg;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        px_route *r = &cfg->routes[i];
        route_src *s = &ld->src[i];
        if (i > 0 && !s->has_prefix) {
            fprintf(stderr, "corral-proxy: route %s has no prefix\n", r->name);
            return false;
        }
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
                fprintf(stderr, "corral-proxy: routes %s and %s have the same prefix\n",
                        cfg->routes[j].name, r->name);
                return false;
            }
        }
    }
    return true;
}

px_config *px_config_load(const char *path, int argc, char **argv) {
    px_config *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        fprintf(stderr, "corral-proxy: out of memory\n");
        return NULL;
    }
    px_config_defaults(cfg);
    loader ld = { .cfg = cfg, .honor_cc = -1, .where = path ? path : "" };
    route_src *s0 = &ld.src[0];
    s0->ttl_ms = s0->grace_ms = s0->sie_ms = s0->keep_ms = s0->max_ttl_ms = s0->hfp_ms = UNSET;
    s0->has_prefix = true;
    ld.cache = *s0;
    if (path) {
        int rc = ini_parse(path, on_ini, &ld);
        if (rc < 0) {
            fprintf(stderr, "corral-proxy: cannot read config file %s\n", path);
            goto fail;
        }
        if (rc > 0 && !ld.failed) {
            fprintf(stderr, "corral-proxy: %s:%d: syntax error\n", path, rc);
            goto fail;
        }
        if (ld.failed) goto fail;
    }
    static const struct {
        const char *flag, *section, *key;
    } simple[] = { { "--origin", "proxy", "origin" },
                   { "--listen", "proxy", "listen" },
                   { "--admin", "proxy", "admin" },
                   { "--store", "proxy", "store" },
                   { "--threads", "proxy", "threads" },
                   { "--access-log", "proxy", "access_log" },
                   { "--access-log-format", "proxy", "access_log_format" },
                   { "--admin-token", "proxy", "admin_token" } };
    ld.where = "command line";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool done = false;
        for (size_t k = 0; k < sizeof simple / sizeof simple[0]; k++) {
            if (strcmp(a, simple[k].flag) != 0) continue;
            if (!v || !apply(&ld, simple[k].section, simple[k].key, v)) {
                fprintf(stderr, "corral-proxy: bad value for %s\n", a);
                goto fail;
            }
            i++;
            done = true;
            break;
        }
        if (done) continue;
        if (!strcmp(a, "--config")) {
            i++; /* read by main */
        } else if (!strcmp(a, "--route")) {
            if (!v || !apply_route_flag(&ld, v)) {
                fprintf(stderr, "corral-proxy: bad --route '%s'\n", v ? v : "");
                goto fail;
            }
            i++;
        } else if (!strcmp(a, "--set")) {
            if (!v || !apply_set_flag(&ld, v)) {
                fprintf(stderr, "corral-proxy: bad --set '%s'\n", v ? v : "");
                goto fail;
            }
            i++;
        } else {
            fprintf(stderr, "corral-proxy: unknown argument '%s'\n", a);
            goto fail;
        }
    }
    if (!cfg->origin_host[0]) {
        fprintf(stderr, "corral-proxy: --origin http://HOST:PORT is required\n");
        goto fail;
    }
    if (!resolve_routes(&ld)) goto fail;
    memcpy(cfg->listen_port_cfg, cfg->listen_port, sizeof cfg->listen_port_cfg);
    return cfg;
fail:
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
