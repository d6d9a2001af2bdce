/*
 * config.h - corral-proxy's configuration: the compile-time limits, the refcounted snapshot
 * (px_config, config.c) and its text forms (the INI reader and the flags, args.c). proxy.h
 * includes it; the unit tests and fuzz_config use these parts alone, with no event loop.
 */
#ifndef CORRAL_PROXY_CONFIG_H
#define CORRAL_PROXY_CONFIG_H

#include "corral/corral.h"
#include "corral/http.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- Limits ---- */

#define PX_MAX_ROUTES         32    /* routes in a configuration, the default one included */
#define PX_ROUTE_NAME_MAX     32    /* bytes of a route name (a metrics label and key prefix) */
#define PX_PREFIX_MAX         200   /* bytes of a route's path prefix */
#define PX_MAX_COOKIE_NAMES   16    /* names in one route's cookie rule */
#define PX_MAX_SURROGATE_KEYS 24    /* Surrogate-Key tokens an object may carry */
#define PX_MAX_PATH_TAGS      8     /* path-prefix tags a vary record may carry */
#define PX_METRIC_SLOTS       64    /* route names metrics remember across reloads, + "other" */
#define PX_ORIGIN_MAX_HEADERS 128   /* fields of an origin response head */
#define PX_ORIGIN_MAX_HEAD    65536 /* bytes of an origin response head */
#define PX_OBJ_MAX_HEADERS    256   /* fields of a stored head (a freshened one may grow) */
#define PX_MAX_RANGES         16    /* ranges of one Range request; more: the whole answer */

/* ---- Configuration (config.c) ---- */

/* A view-level rule for the paths under `prefix` (the longest matching prefix wins). */
typedef struct px_route {
    char name[PX_ROUTE_NAME_MAX + 1]; /* [A-Za-z0-9_.-]; the metrics label and the key prefix */
    char prefix[PX_PREFIX_MAX + 1];   /* "/blog/"; "/" for the default route */
    size_t prefix_len;
    bool bypass;                        /* never cached: every request passes */
    corral_http_policy policy;          /* ttl override, grace, stale-if-error, keep */
    char vary[256];                     /* extra Vary names, "accept-language,x-theme" ("" none) */
    size_t vary_len;                    /* bytes of `vary` */
    char *cookies[PX_MAX_COOKIE_NAMES]; /* cookie rule names, into `cookie_store` */
    size_t n_cookies;
    bool keep_cookies;       /* the rule keeps only the named cookies (else strips them) */
    char cookie_store[512];  /* the names' bytes */
    int64_t hit_for_pass_ms; /* how long a non-storable answer makes the URL pass; 0: never */
    unsigned slot;           /* metrics slot of `name` (px_metrics_slot) */
} px_route;

typedef struct px_config {
    uint32_t magic;
    atomic_uint refs;

    /* Fields meant for the proxy alone (reloadable). */
    bool keep_surrogate_key; /* pass Surrogate-Key on to clients (default: strip it) */
    char cc_targets[128];    /* targeted cache-control fields obeyed and stripped before the
                                client (RFC 9213), "corral-cache-control,cdn-cache-control";
                                every route's policy points here ("" none) */

    /* Fixed at startup; a reload that changes them is refused with a warning. */
    char origin_host[256]; /* numeric address or name, resolved at startup */
    char origin_port[8];
    char listen_host[64];
    char listen_port[8];     /* the bound port (a configured 0 is replaced at startup) */
    char listen_port_cfg[8]; /* the port as configured, for reload checks */
    char admin_host[64];     /* "" when there is no admin listener */
    char admin_port[8];
    char store_url[1024];
    unsigned threads; /* 0: one per core */
    /* Reloadable. */
    px_route routes[PX_MAX_ROUTES]; /* routes[0] is "default", prefix "/" */
    size_t n_routes;
    corral_http_limits limits;       /* client request heads: size and field count */
    int64_t header_timeout_ms;       /* a client's request head must arrive within this */
    int64_t keepalive_timeout_ms;    /* an idle client connection is closed after this */
    int64_t body_timeout_ms;         /* between bytes of a request body */
    int64_t send_timeout_ms;         /* a client that reads nothing for this long is dropped */
    int64_t connect_timeout_ms;      /* origin connect */
    int64_t read_timeout_ms;         /* origin: first byte, and between bytes */
    int64_t origin_idle_ms;          /* idle pooled origin connections are closed after this */
    unsigned origin_max_idle;        /* pooled idle origin connections per worker */
    unsigned max_connections;        /* client connections in all; beyond: 503 and close */
    unsigned max_worker_connections; /* client connections per worker (0: only the total) */
    int64_t coalesce_timeout_ms;     /* a waiter gives up on the leader and fetches itself */
    int64_t fleet_lease_ms;          /* shared store: a fetch's lease over every proxy (fleet.c) */
    int64_t shutdown_timeout_ms;     /* SIGTERM: in-flight requests get this long */
    size_t max_object_size;          /* bodies over this are streamed and not stored */
    int64_t purge_margin_ms;         /* a fill that started less than this after a purge stamp is
                                        not stored (PX_STAMP_MARGIN_MS) */
    unsigned path_tag_depth;         /* path segments tagged for prefix purges (1-8) */
    bool x_cache_header;             /* add "X-Cache: HIT" etc. to responses */
    char admin_token[128];           /* bearer token for the admin listener ("" none) */
    bool admin_allow_remote;         /* admin reachable from non-loopback peers */
    char access_log[1024];           /* "-" stdout, "off", or a file path */
    int log_fd;                      /* opened for the snapshot; closed when it is freed */
    int log_format;                  /* PX_LOG_CORRAL, PX_LOG_COMBINED, PX_LOG_JSON (log.c) */
    char origin_authority[300];      /* "host:port", the Host for HTTP/1.0 requests without one */
} px_config;

/* Fills `cfg` with the defaults (no routes but "default"). */
void px_config_defaults(px_config *cfg);

/* ---- Configuration text: INI lines and flags (args.c) ---- */

/* Why a configuration was refused: one line naming the file and line (or the flag), the
 * section and key, the value (credentials hidden) and the reason. `usage` marks errors in the
 * command line's shape (unknown option, missing value, no origin), after which the usage is
 * worth printing. */
typedef struct px_error {
    bool usage;
    char msg[1024];
} px_error;

/* Formats `err->msg`; returns false, for `return px_fail(err, ...)`. */
bool px_fail(px_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One event of the INI reader: a section header (`key` and `value` NULL) or a `key = value`
 * line of `section`, at `line` (1-based). Returns true to go on, or false with `err` set. */
typedef bool (*px_ini_fn)(void *user, int line, const char *section, const char *key,
                          const char *value, px_error *err);

/* Reads INI `text` (`len` bytes; NUL bytes are refused), calling `fn` for each header and
 * key. Syntax errors ("FILE:LINE: ...", `name` being the file's) and `fn`'s refusals stop it.
 * Returns true when every line was accepted. Pure; any thread. */
bool px_ini_parse(const char *name, const char *text, size_t len, px_ini_fn fn, void *user,
                  px_error *err);

enum {
    PX_FLAG_ORIGIN = 256, /* above every short option's character */
    PX_FLAG_LISTEN,
    PX_FLAG_ADMIN,
    PX_FLAG_STORE,
    PX_FLAG_THREADS,
    PX_FLAG_ACCESS_LOG,
    PX_FLAG_ACCESS_LOG_FORMAT,
    PX_FLAG_ADMIN_TOKEN,
    PX_FLAG_ADMIN_TOKEN_FILE,
    PX_FLAG_ROUTE,
    PX_FLAG_SET,
    PX_FLAG_CONFIG,
    PX_FLAG_VERSION
};

#define PX_MAX_FLAGS 256 /* settings on one command line */

/* A setting flag and its value (borrowed from argv). */
typedef struct px_flag {
    int opt; /* PX_FLAG_* */
    const char *value;
} px_flag;

/* The command line, parsed once at startup and reapplied on every reload. */
typedef struct px_flags {
    const char *config_path; /* --config, or NULL */
    const char *env_token;   /* $CORRAL_ADMIN_TOKEN when set and not empty, or NULL */
    bool help, version;
    size_t n;
    px_flag v[PX_MAX_FLAGS]; /* the settings in their order (later ones win) */
} px_flags;

/* Parses argv with getopt_long into `f` (which borrows argv's strings) and reads
 * CORRAL_ADMIN_TOKEN. Returns false with `err` set (`err->usage` true). Main thread. */
bool px_flags_parse(px_flags *f, int argc, char **argv, px_error *err);

/* The long name of a PX_FLAG_* ("origin"). */
const char *px_flag_name(int opt);

/* Builds a configuration from INI `text` (`len` bytes; NULL: no file) named `name` in
 * messages, then CORRAL_ADMIN_TOKEN, then the flags (later sources win), and reads
 * admin_token_file if one is named. Returns a new snapshot with one reference, or NULL with
 * `err` set. Main thread (reading the token file is its only I/O). */
px_config *px_config_parse(const char *name, const char *text, size_t len, const px_flags *f,
                           px_error *err);

/* px_config_parse of the file f->config_path (at most 1 MiB; none when NULL). args.c. */
px_config *px_config_load(const px_flags *f, px_error *err);

/* Reads the admin token (the first line, 1 to cap-1 visible ASCII bytes) from `path` into
 * `out`. Refuses a file that group or others may read or write. Returns false with `err`
 * set. */
bool px_read_token_file(const char *path, char *out, size_t cap, px_error *err);

/* Opens the access log named in the snapshot. Returns 0 or PX_EIO (printed). */
int px_config_open_log(px_config *cfg);

/* True when the parts a reload cannot change are equal; prints the first difference. */
bool px_config_compatible(const px_config *old, const px_config *cur);

px_config *px_config_ref(px_config *cfg); /* any thread */
void px_config_unref(px_config *cfg);     /* any thread; the last one frees; accepts NULL */

/* The route for a request path (the longest prefix; the default route otherwise). */
const px_route *px_route_match(const px_config *cfg, const char *path, size_t len);

#endif /* CORRAL_PROXY_CONFIG_H */
