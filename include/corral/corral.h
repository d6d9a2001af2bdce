/*
 * corral.h - libcorral, an embeddable cache: Django's cache framework done in C.
 *
 * A `corral` handle is a cache over one store: the embedded memory store (`mem://`, the
 * default) or Redis (`redis://`, shared by every process that opens it, optionally with a near
 * cache in process). Keys follow Django's scheme exactly: the physical key
 * of user key `k` is `KEY_PREFIX:VERSION:k` (so `:1:k` with the defaults). Values are
 * binary-safe bytes; a hit hands out an immutable, refcounted `corral_value`.
 *
 * Threads: every `corral *` handle is thread-safe; any thread may call any function on it at
 * any time, except `corral_close`, which must be the last call. Objects obtained from a
 * handle (values, stats snapshots, metrics text) belong to the calling thread until released,
 * and may be handed to another thread; a value is immutable, so several threads may read one
 * value at once, and `corral_value_ref`/`corral_value_unref` are thread-safe.
 *
 * Return codes: `CORRAL_OK` (0) is success, negative `CORRAL_E*` values are errors (so
 * `if (rc < 0)` is the only test a caller needs), and small positive values are documented
 * non-error outcomes (`CORRAL_MISS`, `CORRAL_EXISTS`). `corral_strerror(rc)` names any code.
 * On error nothing changed, unless a function's comment says exactly what did. Out-parameters
 * are set on every path (NULL or 0 when there is nothing to return).
 *
 * Ownership: arguments are borrowed for the duration of the call; the library copies what it
 * keeps. Memory the library allocates for the caller is released with `corral_free()` (or the
 * named release function), never with `free()`.
 *
 * Usage:
 *     corral *c;
 *     corral_error err;
 *     if (corral_open(&c, "mem://?max_memory=64MB&key_prefix=shop", &err) < 0)
 *         fprintf(stderr, "corral: %s\n", err.msg);
 *     corral_set(c, "featured_products:v3", 20, buf, len, CORRAL_TTL_DEFAULT, NULL);
 *     corral_value *v;
 *     if (corral_get(c, "featured_products:v3", 20, NULL, &v) == CORRAL_OK) {
 *         use(corral_value_data(v), corral_value_len(v));
 *         corral_value_unref(v);
 *     }
 *     corral_close(c);
 */
#ifndef CORRAL_CORRAL_H
#define CORRAL_CORRAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORRAL_VERSION_MAJOR 0
#define CORRAL_VERSION_MINOR 1
#define CORRAL_VERSION_PATCH 0

#if defined(CORRAL_BUILDING) && defined(__GNUC__)
#define CORRAL_API __attribute__((visibility("default")))
#else
#define CORRAL_API
#endif

/* ---- Return codes ---- */

enum {
    CORRAL_OK = 0,      /* success */
    CORRAL_MISS = 1,    /* the key is absent (or expired): not an error */
    CORRAL_EXISTS = 2,  /* corral_add: the key is present, nothing was written */
    CORRAL_STALE = 3,   /* corral_get_or_set: an expired value served within its grace window */
    CORRAL_WAITING = 4, /* corral_flight_join: queued behind another caller's producer */

    CORRAL_EINVAL = -1,     /* an argument is invalid (NULL handle, bad option value, ...) */
    CORRAL_ENOMEM = -2,     /* an allocation failed; nothing changed */
    CORRAL_EBADKEY = -3,    /* the key is over 250 bytes or holds a byte in 0x00-0x20 or 0x7f */
    CORRAL_ETOOBIG = -4,    /* the value cannot fit in the store at all */
    CORRAL_ENOTINT = -5,    /* corral_incr: the stored value is not a decimal integer */
    CORRAL_ERANGE = -6,     /* corral_incr: the result overflows a signed 64-bit integer */
    CORRAL_ENOSPC = -7,     /* a caller's buffer is too small (functions say what they return) */
    CORRAL_EBADURL = -8,    /* a URL or option string is malformed; corral_error names the part */
    CORRAL_ESTORE = -9,     /* the store failed (I/O, protocol); the call had no effect */
    CORRAL_ENOTSUP = -10,   /* the store does not support this operation */
    CORRAL_ETIMEDOUT = -11, /* a deadline passed */
    CORRAL_EFORMAT = -12    /* a stored value is in a form corral cannot read (Django wire format:
                               a pickle of another type than str or bytes) */
};

/* Returns a static, human-readable string for any return code (unknown codes included).
 * Thread-safe. */
CORRAL_API const char *corral_strerror(int rc);

/* Returns the library version as "MAJOR.MINOR.PATCH", a static string. Thread-safe. */
CORRAL_API const char *corral_version(void);

/* Detail for functions whose failure needs more than a code (URL and option parsing).
 * Filled on failure only, when the caller passes one; `msg` is always NUL-terminated. */
typedef struct corral_error {
    int code;
    char msg[160];
} corral_error;

/* ---- Time to live ---- */

/* TTL arguments are milliseconds. An entry set at time t with TTL d is live from t and expires
 * at t + d rounded up to the whole millisecond of the store's clock: it is never expired
 * before t + d and lives at most 1 ms longer. The memory store may round an expiry more than
 * about 6 days away (less in a shard with very few writes: docs/memory-store.md) up to the
 * whole second instead (at most 1 s longer, under 2e-6 of such a
 * TTL), and rounds one more than 34 years away down to 34 years. 0 means "expire at once": a set
 * with TTL 0 stores nothing and removes any existing value (Django's timeout=0). Other
 * negative values than the two below are CORRAL_EINVAL. */
#define CORRAL_TTL_DEFAULT (-1) /* the handle's default (the URL's `timeout`) */
#define CORRAL_TTL_FOREVER (-2) /* never expires (Django's timeout=None) */

/* The per-call version override meaning "the handle's version". */
#define CORRAL_VERSION_DEFAULT INT64_MIN

/* ---- Hooks ---- */

/* Allocator hooks, per handle, with a context pointer. `free` and `realloc` receive the size
 * the block was allocated with. All three must be set, or all left NULL (libc). The hooks must
 * be thread-safe: any thread that uses the handle may call them. The hooks and the clock hook
 * below may run while the calling thread is inside the memory store's read: they must not call
 * corral, nor wait for another thread that is inside a corral call. */
typedef struct corral_allocator {
    void *(*alloc)(void *ctx, size_t n);
    void *(*realloc)(void *ctx, void *p, size_t old_n, size_t new_n);
    void (*free)(void *ctx, void *p, size_t n);
    void *ctx;
} corral_allocator;

/* Clock hook: the current wall-clock time in nanoseconds since the Unix epoch. Must be
 * thread-safe. Tests pass a fake clock; the default reads CLOCK_REALTIME. */
typedef uint64_t (*corral_clock_fn)(void *ctx);

/* Custom key function (Django's KEY_FUNCTION): writes the physical key for (prefix, version,
 * key) into `out` (capacity `cap`) and sets `*out_len`. Returns CORRAL_OK, or CORRAL_ENOSPC when
 * the key does not fit (the library then refuses the key with CORRAL_EBADKEY). The result is
 * validated like any key. Must be thread-safe and must not call back into the handle. */
typedef int (*corral_key_fn)(void *ctx, const char *prefix, size_t prefix_len, int64_t version,
                             const void *key, size_t key_len, char *out, size_t cap,
                             size_t *out_len);

/* ---- Opening and closing ---- */

typedef struct corral corral;

/* Eviction policies of the memory store. */
typedef enum corral_eviction {
    CORRAL_EVICT_DEFAULT = 0, /* the measured best: S3-FIFO (see docs/eviction.md) */
    CORRAL_EVICT_SIEVE,
    CORRAL_EVICT_S3FIFO,
    CORRAL_EVICT_LRU /* kept for comparison */
} corral_eviction;

/* How the Redis store writes and reads values. */
typedef enum corral_serializer {
    CORRAL_SERIALIZER_RAW = 0, /* the value's bytes, as they are (default) */
    /* Django's RedisCache and django-redis format, to share keys with a Django site: a value
     * that is a canonical decimal integer ("-?(0|[1-9][0-9]*)") is stored as its digits (INCR
     * works from both sides), a value that is valid UTF-8 as a pickled str (Django reads text),
     * anything else as pickled bytes (corral_call.is_binary: always bytes). Reading, a pickled
     * str or bytes gives back its bytes, and a pickle of any other type is CORRAL_EFORMAT. Keys
     * are Django's already. Values carry no corral envelope in this format, so what Django reads
     * is exactly the value, from get_or_set too; what needs the envelope does not work here:
     * tags (a write with tags returns CORRAL_ENOTSUP and writes nothing), XFetch early refresh,
     * grace (stale_ttl_ms) and stale-if-error (a value lives until its store TTL, then is
     * gone). Namespaces and versions work: they live in keys. */
    CORRAL_SERIALIZER_DJANGO,
    /* Values as the caller gives them, with no envelope, for a caller that writes Django's
     * format itself (the Python package: ints as their digits, anything else pickled), so any
     * Python object round-trips. Reads return the stored bytes. What needs the envelope does
     * not work, as with CORRAL_SERIALIZER_DJANGO. */
    CORRAL_SERIALIZER_BARE
} corral_serializer;

/* Options of the Redis store (corral_options.redis, used when `store` is "redis"). Filled by
 * corral_options_init; strings are copied by corral_open_opts. The store connects lazily: a
 * handle opens while Redis is down, and its calls miss (reads) or fail (writes) until it is up. */
typedef struct corral_redis_options {
    /* The servers, "host[:port][,host[:port]...]" (port 6379 when omitted; an IPv6 address in
     * brackets: "[::1]:6380"), at most 16. The first takes every write; reads go round-robin to
     * the others (replicas), or to the first when it is alone or the chosen replica is failing.
     * Reads from a replica may miss a write made an instant before (replication lag). Names are
     * resolved with no deadline (getaddrinfo): prefer addresses. Default "127.0.0.1:6379". */
    const char *hosts;
    const char *unix_path; /* a unix socket path, used instead of `hosts` when not NULL */
    const char *username;  /* ACL user for AUTH (Redis 6+); NULL: the default user */
    const char *password;  /* AUTH password; NULL: no AUTH */
    unsigned db;           /* database index (SELECT), default 0 */
    /* Deadlines in ms, both > 0. connect: each connection attempt. command: waiting for a free
     * connection of the pool, and each read and write of the socket (SO_RCVTIMEO/SO_SNDTIMEO).
     * Defaults 1000 and 1000. A read that passes its deadline is a miss; a write,
     * CORRAL_ETIMEDOUT. */
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    unsigned pool; /* connections per server, 1 to 1024, default 4 */
    /* The near cache's bound in bytes (0, the default: none). With one, hits are served from a
     * memory store in this process, kept coherent by Redis client-side caching (CLIENT TRACKING
     * BCAST on the handle's KEY_PREFIX, or on every key with a custom key function): a change
     * made anywhere (another process, redis-cli, a Django site, expiry) drops the key from every
     * near cache within one network hop. Reads that miss it go to the first server. While the
     * tracking connection is down, the near cache is emptied and bypassed. */
    size_t near_cache_bytes;
    corral_serializer serializer; /* default CORRAL_SERIALIZER_RAW */
    /* A Redis Cluster (URL `redis+cluster://`): `hosts` are seed nodes, any of the cluster's; the
     * store asks them for the slot map (CLUSTER SLOTS), sends each key's commands to the primary
     * of its slot, follows MOVED and ASK, and finds the new primary after a failover. db must be
     * 0 (another is refused); a near cache tracks every primary. Default false. */
    bool cluster;
    /* Cluster only: reads go to the slot's replicas (READONLY), round-robin, the primary when it
     * has none or they fail; they may miss a write made an instant before. Default false. */
    bool read_from_replicas;
} corral_redis_options;

/* ---- Store health: why the store fails ----
 *
 * A failing Redis makes reads miss and writes return CORRAL_ESTORE or CORRAL_ETIMEDOUT; the
 * reason is kept per server of the store: corral_store_status reads it, and the handle's state
 * callback (corral_options.on_store_state) is told when a server goes down and when it comes
 * back, once per change, never once per call. The memory store has no servers. */

/* Why a server of the store failed. */
typedef enum corral_store_reason {
    CORRAL_REASON_NONE = 0,    /* no failure */
    CORRAL_REASON_REFUSED,     /* connection refused: nothing listens at the address */
    CORRAL_REASON_TIMEOUT,     /* a connect or command deadline passed: the server is stopped,
                                  overloaded or unreachable */
    CORRAL_REASON_IO,          /* the connection failed otherwise: reset, closed by the server, a
                                  name that does not resolve, a protocol error */
    CORRAL_REASON_AUTH,        /* the server refused the credentials (WRONGPASS, NOAUTH, NOPERM) */
    CORRAL_REASON_BAD_DB,      /* the server refused the database index (SELECT): it has no such
                                  database */
    CORRAL_REASON_OOM,         /* the server is at maxmemory and refuses writes (OOM) */
    CORRAL_REASON_READONLY,    /* the server is a replica and refuses writes (READONLY) */
    CORRAL_REASON_UNAVAILABLE, /* the server cannot serve now: LOADING, BUSY, MASTERDOWN, MISCONF
                                  (writes refused), max number of clients reached */
    CORRAL_REASON_REPLY,       /* another error reply to one command (WRONGTYPE: a key holding
                                  what corral did not write); the server itself is fine */
    CORRAL_REASON_POOL,        /* no connection of the pool came free within the command timeout:
                                  this process is busier than its pool */
    CORRAL_REASON_NOMEM        /* an allocation in this process failed */
} corral_store_reason;

/* Returns the reason's name, a static string: "none", "refused", "timeout", "io", "auth",
 * "bad_db", "oom", "readonly", "unavailable", "reply", "pool", "nomem", or "unknown" for another
 * value. Thread-safe. */
CORRAL_API const char *corral_store_reason_name(corral_store_reason r);

/* One server of the store, as corral_store_status and the state callback describe it. */
typedef struct corral_server_status {
    /* "127.0.0.1:6379" ("[::1]:6379"), or the unix socket path; NUL-terminated. Never holds a
     * credential. */
    char server[272];
    /* The server failed for a reason that concerns it (every reason but REPLY, POOL and NOMEM)
     * and has not answered a command since. A refusal of writes (OOM, READONLY, MISCONF) ends
     * with the next value written it accepts, not with a read, a delete or a touch (a server
     * at maxmemory accepts those). */
    bool is_down;
    /* The latest failure's reason and, for people, its text ("connection refused", "WRONGPASS
     * invalid username-password pair or user is disabled."); NUL-terminated, "" and
     * CORRAL_REASON_NONE when the server never failed. Never holds a credential. */
    corral_store_reason reason;
    char msg[160];
    uint64_t failures; /* failures of calls to this server since open, every reason */
} corral_server_status;

/* Told of a change of a server's state: `st->is_down` became true (its first failure of a reason
 * that concerns it, since open or since it last answered), or false (it answered again). Called
 * once per change, so quick flaps may merge: two calls in a row never carry the same is_down,
 * and the last call tells the current state. Runs on a thread that is inside a corral call on
 * the handle (the one that saw the change, or one still telling of an earlier change of the
 * same server), with no corral lock held; calls about one server never overlap. `st` is
 * borrowed for the call. It must be quick, and must not call corral functions on the handle
 * other than corral_store_status. */
typedef void (*corral_store_state_fn)(void *ctx, const corral_server_status *st);

/* Options for corral_open_opts. Always fill with corral_options_init() first, so fields added
 * later get their defaults. Strings are copied by corral_open_opts. */
typedef struct corral_options {
    const char *store;        /* "mem" (default) or "redis" (then `redis` applies) */
    const char *key_prefix;   /* KEY_PREFIX, default ""; at most 250 bytes (else EBADKEY) */
    int64_t version;          /* VERSION, default 1 */
    int64_t default_ttl_ms;   /* TIMEOUT in ms, default 300000; CORRAL_TTL_FOREVER = none */
    size_t max_memory_bytes;  /* memory store bound, default 256 MiB */
    size_t max_value_bytes;   /* largest value accepted, default 0 = max_memory_bytes / 16 */
    corral_eviction eviction; /* memory store policy */
    unsigned shards;          /* memory store write shards, 0 = automatic */
    bool allow_binary_keys;   /* every byte but 0x1f, keys up to 4096 B (Django's non-memcached
                                 backends' keys: spaces, control bytes, long keys) */
    size_t max_prefixes;      /* metrics label bound, default 256 (0: all count as "other") */
    corral_allocator allocator;
    corral_clock_fn now_ns; /* default: CLOCK_REALTIME */
    void *clock_ctx;
    corral_key_fn key_fn; /* default: Django's "%s:%s:%s" % (prefix, version, key) */
    void *key_fn_ctx;
    /* Random source for XFetch, TTL jitter, lease tokens and tag versions: 64 uniformly random
     * bits a call. Must be thread-safe. Default: a per-handle generator seeded from the clock and
     * the handle's address; tests pass a seeded one. */
    uint64_t (*rand64)(void *ctx);
    void *rand_ctx;
    unsigned refresh_workers;   /* threads for background refreshes, default 2, started lazily */
    corral_redis_options redis; /* the Redis store's servers, credentials, timeouts and pool */
    /* Told when a server of the store goes down and when it comes back (corral_store_state_fn).
     * NULL: nothing is told (corral_store_status still knows). */
    corral_store_state_fn on_store_state;
    void *store_state_ctx;
} corral_options;

/* Fills `o` with the defaults. Never fails. */
CORRAL_API void corral_options_init(corral_options *o);

/* Parses a cache URL into `o` (which must have been initialised; fields the URL does not name
 * keep their values; on error `o` is unchanged). Strings in `o` point into `buf` (capacity
 * `cap`; strlen(url) + 1 is always enough), which must outlive the use of `o`.
 *
 *     mem://?max_memory=256MB&key_prefix=djzen&version=1&timeout=300&eviction=sieve
 *
 *     redis://[[user]:password@]host[:port][,host[:port]...][/db]?key_prefix=djzen&timeout=300
 *     redis+unix:///path/to/redis.sock?db=2&password=secret
 *     redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]?key_prefix=site
 *
 * Parameters of every store: key_prefix (percent-decoded; '+' stays '+'), version (integer),
 * timeout (a duration as corral_parse_duration_ms reads it: bare seconds as Django's TIMEOUT,
 * fractional allowed, or a unit, "5m"; or `none`), max_value (a size as corral_parse_bytes reads
 * it: "1MB", "64KiB"; KB = 1000), max_prefixes, binary_keys
 * (0/1/true/false).
 * Memory store only: max_memory (same units), eviction (sieve, s3fifo, lru), shards.
 * Redis store only: db (also the URL's path; not both), password (also the URL's userinfo; not
 * both; percent-decoded), connect_timeout and command_timeout (durations: "0.25", "250ms";
 * more than 0, at most a day), pool (connections per server, 1-1024),
 * near_cache (bytes, units as max_memory; 0 for none), serializer (`raw`, `django` or `bare`).
 * redis+cluster:// takes the Redis parameters but db (other than 0), and its own
 * read_from_replicas (0/1/true/false); its hosts are seeds (corral_redis_options.cluster).
 * Hosts as corral_redis_options.hosts describes; `redis://` alone is 127.0.0.1:6379.
 * An unknown, repeated or malformed parameter, or one the URL's store does not take, returns
 * CORRAL_EBADURL and names it in `err`; a too-small `buf`, CORRAL_ENOSPC. Thread-safe. */
CORRAL_API int corral_options_parse_url(corral_options *o, const char *url, char *buf, size_t cap,
                                        corral_error *err);

/* Copies `url` into `out` (capacity `cap`) with its credentials replaced by "***": the password
 * of the userinfo ("redis://user:***@host/2"; a userinfo without ':' is hidden whole) and the
 * value of every `password` parameter ("?password=***"). Any text before the last '@' ahead of
 * the query counts as userinfo, so a malformed URL is over-hidden rather than shown. Meant for
 * every banner, log line, error message and metric that shows a URL. Returns the length of the
 * whole redacted URL, as snprintf does: a result >= `cap` means `out` holds a cut prefix (always
 * NUL-terminated when `cap` > 0). A NULL `url` is "". Thread-safe. */
CORRAL_API size_t corral_url_redact(const char *url, char *out, size_t cap);

/* The sizes and durations of cache URLs and of corral-proxy's configuration, one grammar:
 * a decimal number ("64", "1.5", ".5", "+2"; not "1."), optional spaces or tabs before it and
 * before its unit, and a case-insensitive unit. corral_parse_bytes:        B, KB, MB, GB, TB
 * (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024), or none (bytes): "64MB", "16 KiB", "4096".
 *   corral_parse_duration_ms:  ms, s, m, h, d, or none (seconds): "250ms", "30s", "5m", "0.5".
 * Fractions below a byte or a millisecond are dropped. `s` is `len` bytes (no NUL needed).
 * Returns CORRAL_OK with `*out` set, CORRAL_EINVAL (malformed, or NULL `s`/`out`; `*out`
 * unchanged) or CORRAL_ERANGE (the result overflows `*out`'s type). Thread-safe. */
CORRAL_API int corral_parse_bytes(const char *s, size_t len, uint64_t *out);
CORRAL_API int corral_parse_duration_ms(const char *s, size_t len, int64_t *out);

/* Opens a handle from a URL; see corral_options_parse_url for the parameters. NULL or "" opens
 * `mem://` with the defaults. On success `*out` is the handle; on failure `*out` is NULL, the
 * code is returned and `err` (optional) explains. */
CORRAL_API int corral_open(corral **out, const char *url, corral_error *err);

/* Opens a handle from options. Same contract as corral_open. */
CORRAL_API int corral_open_opts(corral **out, const corral_options *o, corral_error *err);

/* Closes the handle and frees everything it holds, but for the memory a memory store leaves
 * resident for the process's next store (corral_release_memory). Every value obtained from the
 * handle must be released before. Accepts NULL. No other thread may be using the handle. */
CORRAL_API void corral_close(corral *c);

/* Gives back to the system the memory that closed memory stores left resident for the next
 * store the process opens, as a freed heap stays with a process, so that a new store's first
 * writes do not fault in fresh pages: only stores of 16 MiB or more on libc's allocator leave
 * any, each at most a quarter of its bound in 2 MiB chunks, 256 MiB in all. A forked child
 * inherits what its parent kept. Call it after closing a large store for good, or before
 * measuring a process's memory. Thread-safe. */
CORRAL_API void corral_release_memory(void);

/* Frees memory the library allocated for the caller (metrics text). Accepts NULL. */
CORRAL_API void corral_free(corral *c, void *p);

/* ---- Values ---- */

/* An immutable, refcounted byte string. A hit in the memory store hands out the stored bytes
 * without a copy. Release every value with corral_value_unref, before closing its handle. */
typedef struct corral_value corral_value;

/* Borrowed pointer to the bytes, valid while the caller holds its reference. The bytes are
 * followed by a NUL that is not counted in the length, so text values can be used as C strings
 * (a value may itself contain NULs). */
CORRAL_API const void *corral_value_data(const corral_value *v);
CORRAL_API size_t corral_value_len(const corral_value *v);
/* Takes another reference; returns `v`. Thread-safe. */
CORRAL_API corral_value *corral_value_ref(corral_value *v);
/* Drops a reference; the last one frees the value. Accepts NULL. Thread-safe. */
CORRAL_API void corral_value_unref(corral_value *v);

/* ---- Per-call options ---- */

/* Extras of one call. NULL stands for all defaults. Fill with CORRAL_CALL_INIT. */
typedef struct corral_call {
    int64_t version; /* Django's version=: CORRAL_VERSION_DEFAULT for the handle's */
    /* A namespace (NULL: none). The key lives under the namespace's current generation, so
     * corral_ns_bump makes every key of the namespace unreachable at once. */
    const char *ns;
    /* Tags written with a value (set, add, set_many, get_or_set; ignored elsewhere). The value
     * is invalid once any of its tags is busted with corral_tag_bust. At most 32 tags of 1 to
     * 200 bytes each, with no byte keys may not hold (0x00-0x20, 0x7f) unless the handle allows
     * binary keys; otherwise the write fails with CORRAL_EINVAL and writes nothing. */
    const char *const *tags;
    size_t n_tags;
    /* Writes (set, add, set_many, get_or_set; ignored elsewhere and by stores without a typed
     * wire format) on the Redis store with serializer=django: store the value as pickled bytes
     * even when it is valid UTF-8 or a decimal integer, so Django reads `bytes` where it would
     * read a `str` or an `int` (and Django's incr then refuses it). Default false. */
    bool is_binary;
} corral_call;

#define CORRAL_CALL_INIT \
    { .version = CORRAL_VERSION_DEFAULT, .ns = NULL, .tags = NULL, .n_tags = 0, .is_binary = false }

/* A borrowed byte string, for the many-ops. */
typedef struct corral_buf {
    const void *data;
    size_t len;
} corral_buf;

/* ---- The cache operations (Django's cache API) ----
 *
 * Every key is (pointer, length), binary-safe, and goes through the key function and validation
 * first: an invalid key returns CORRAL_EBADKEY and touches nothing. Thread-safe. O(1) unless
 * stated otherwise. */

/* Looks a key up. Returns CORRAL_OK with `*out` a new reference to the value (release with
 * corral_value_unref), or CORRAL_MISS with `*out` NULL. An expired entry is never returned. */
CORRAL_API int corral_get(corral *c, const void *key, size_t key_len, const corral_call *call,
                          corral_value **out);

/* Looks a key up and copies the value into `buf` (capacity `cap`; no NUL is added, so cap ==
 * length fits): no reference to release, the fast path for small values. Returns CORRAL_OK with
 * `*out_len` the length copied, CORRAL_MISS with `*out_len` 0, or CORRAL_ENOSPC with `*out_len`
 * the value's length when it does not fit (nothing is copied; it counts as a hit). */
CORRAL_API int corral_get_into(corral *c, const void *key, size_t key_len, const corral_call *call,
                               void *buf, size_t cap, size_t *out_len);

/* Stores a value (copied) for `ttl_ms` milliseconds (CORRAL_TTL_DEFAULT, CORRAL_TTL_FOREVER,
 * or 0 to remove any existing value and store nothing). Returns CORRAL_OK, CORRAL_EBADKEY,
 * CORRAL_ETOOBIG (value over max_value_bytes), CORRAL_ENOMEM. Older entries may be evicted to
 * make room. */
CORRAL_API int corral_set(corral *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t ttl_ms, const corral_call *call);

/* Stores a value only when the key is absent (or expired). Returns CORRAL_OK when stored,
 * CORRAL_EXISTS when the key is present (nothing written), or an error as corral_set. */
CORRAL_API int corral_add(corral *c, const void *key, size_t key_len, const void *val,
                          size_t val_len, int64_t ttl_ms, const corral_call *call);

/* Removes a key. Returns CORRAL_OK when a live entry was removed, CORRAL_MISS when there was
 * none. */
CORRAL_API int corral_delete(corral *c, const void *key, size_t key_len, const corral_call *call);

/* Sets a new TTL on a present key (CORRAL_TTL_FOREVER removes its expiry; 0 expires it now).
 * Returns CORRAL_OK, or CORRAL_MISS when absent. */
CORRAL_API int corral_touch(corral *c, const void *key, size_t key_len, int64_t ttl_ms,
                            const corral_call *call);

/* The time the store keeps a key: CORRAL_OK with `*ttl_ms` the whole milliseconds left to the
 * expiry (at least 1: the key is live; since the expiry was rounded up as above, right after a
 * set this is at most the TTL set, or up to 1 s more for an expiry more than about 6 days
 * away in the memory store) or CORRAL_TTL_FOREVER when it never expires; CORRAL_MISS with `*ttl_ms`
 * 0 when the key is absent or expired (or in a namespace that has no generation: nothing is
 * created). This is the store's expiry, as Redis's PTTL: a value made by corral_get_or_set with a
 * grace window (stale_ttl_ms) is kept that long past its logical expiry, and a value whose tag was
 * busted is kept until it expires. Counts no hit or miss. On Redis, a read that fails is
 * CORRAL_MISS, as for corral_get. CORRAL_EBADKEY for an invalid key, CORRAL_EINVAL for a NULL
 * handle or `ttl_ms`. Thread-safe. */
CORRAL_API int corral_ttl(corral *c, const void *key, size_t key_len, const corral_call *call,
                          int64_t *ttl_ms);

/* Adds `delta` (negative decrements) to a value holding a decimal integer, atomically, keeping
 * its TTL, and returns the new value in `*out` (optional). Returns CORRAL_OK, CORRAL_MISS
 * when absent (as Django raises ValueError), CORRAL_ENOTINT when the value is not a decimal
 * integer (optional '-' then 1-19 digits), CORRAL_ERANGE on overflow (nothing changed). */
CORRAL_API int corral_incr(corral *c, const void *key, size_t key_len, int64_t delta,
                           const corral_call *call, int64_t *out);

/* Returns CORRAL_OK when the key is present and live, CORRAL_MISS otherwise. Counts as a hit or
 * a miss, like corral_get (add and incr count neither). */
CORRAL_API int corral_has(corral *c, const void *key, size_t key_len, const corral_call *call);

/* Looks up `n` keys. `out` has room for `n` values: out[i] is a new reference, or NULL for a
 * miss. Returns CORRAL_OK (even when all miss) and `*found` (optional) the number of hits.
 * Every key is validated before any lookup; on error every out[i] is NULL. O(n). */
CORRAL_API int corral_get_many(corral *c, const corral_buf *keys, size_t n, const corral_call *call,
                               corral_value **out, size_t *found);

/* Stores `n` key/value pairs with one TTL. Every key and value is validated first, so an
 * invalid one fails the call with nothing written. A failure after validation (CORRAL_ENOMEM)
 * leaves the pairs before the failing one written. O(n). */
CORRAL_API int corral_set_many(corral *c, const corral_buf *keys, const corral_buf *vals, size_t n,
                               int64_t ttl_ms, const corral_call *call);

/* Removes `n` keys; `*deleted` (optional) counts the live entries removed. Every key is validated
 * before any is removed. O(n). */
CORRAL_API int corral_delete_many(corral *c, const corral_buf *keys, size_t n,
                                  const corral_call *call, size_t *deleted);

/* Removes every entry of the store (Django's clear). The counters are kept. Memory store:
 * O(entries), done under each shard's lock in turn; readers are never blocked.
 *
 * WARNING, Redis store: this is FLUSHDB on the configured database, as in Django. It removes
 * EVERY key of that database, whatever its prefix and whoever wrote it (other corral handles,
 * other applications, a Django site sharing the database). Give each cache its own database
 * index (`redis://host/2`), or use corral_clear_prefix to remove only this handle's keys.
 * Returns CORRAL_OK, or on Redis CORRAL_ESTORE / CORRAL_ETIMEDOUT when the server could not be
 * reached (the database may or may not have been flushed). */
CORRAL_API int corral_clear(corral *c);

/* Removes the entries whose physical key begins with the handle's "KEY_PREFIX:" (every key the
 * default key function makes; keys of a custom key function that do not begin so are kept), and
 * the handle's leases. Redis store: SCAN with MATCH, then UNLINK, in batches of about 1000 keys,
 * so the server is never blocked for long; keys written during the scan may survive it. On
 * failure (CORRAL_ESTORE, CORRAL_ETIMEDOUT) the batches before the failure are removed. Memory
 * store: the store is private to the handle and every key in it was made under the handle's
 * prefix, so this is corral_clear. Returns CORRAL_OK on success. O(keys in the database) on
 * Redis, O(entries) in memory. Thread-safe. */
CORRAL_API int corral_clear_prefix(corral *c);

/* Django's incr_version: moves the value of `key` from version V (the call's, or the handle's)
 * to V + delta and deletes it at V. Returns CORRAL_OK with `*new_version` (optional) = V + delta,
 * or CORRAL_MISS when the key is absent at V (as Django raises ValueError), CORRAL_EINVAL for a
 * delta of 0 (Django would set and then delete the same key), CORRAL_ERANGE when V + delta
 * overflows. The value gets the handle's default TTL, as in Django. */
CORRAL_API int corral_incr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                                   const corral_call *call, int64_t *new_version);
/* corral_incr_version with -delta. */
CORRAL_API int corral_decr_version(corral *c, const void *key, size_t key_len, int64_t delta,
                                   const corral_call *call, int64_t *new_version);

/* Writes into `out` (capacity `cap`) the physical key that `key` maps to under the handle's
 * prefix, version (or the call's) and key function, NUL-terminated, and sets `*out_len`
 * (without the NUL). Inside the call's namespace the key holds the namespace's generation, which
 * is created in the store when it has none (corral_make_key_read only reads). Returns CORRAL_OK,
 * CORRAL_EBADKEY, a store error, or CORRAL_ENOSPC with `*out_len` the key's length (so `cap`
 * must be at least that plus one). */
CORRAL_API int corral_make_key(corral *c, const void *key, size_t key_len, const corral_call *call,
                               char *out, size_t cap, size_t *out_len);

/* corral_make_key for a caller that only reads: when the call names a namespace that has no
 * generation in the store yet (never written in, never bumped), it is not created: the result is
 * CORRAL_MISS with `*out_len` 0 (no key of that namespace can be present), and nothing is
 * written. Otherwise as corral_make_key. A store that cannot be read also gives CORRAL_MISS
 * (reads fail as misses). */
CORRAL_API int corral_make_key_read(corral *c, const void *key, size_t key_len,
                                    const corral_call *call, char *out, size_t cap,
                                    size_t *out_len);

/* ---- get_or_set: one producer per key, however many callers ----
 *
 * corral_get_or_set returns the cached value of a key or runs `producer` to make it, once:
 * - Single flight in a process: concurrent callers for one missing key wait for one producer
 *   run and share its value (no copy); a waiter gives up at `wait_timeout_ms` (CORRAL_ETIMEDOUT).
 * - Across processes sharing a store: the producer runs under a lease in the store (on Redis
 *   `SET NX PX` with a random token, released only by its owner). A caller that loses the lease
 *   serves the stale value if it is within its grace window, otherwise polls the store with
 *   backoff until `wait_timeout_ms`, then computes itself (counted as a lease timeout).
 * - Early refresh (XFetch, Vattani et al., VLDB 2015): a value remembers its expiry and how long
 *   its producer took (delta); a hit refreshes early when now - delta * beta * ln(rand) >=
 *   expiry. `beta` 0 turns it off.
 * - Grace: with `stale_ttl_ms`, an expired value is served (CORRAL_STALE) for that long after its
 *   expiry while exactly one caller refreshes it, in the background when `background` is set.
 *   A caller gets CORRAL_STALE only under its own windows (grace, stale-if-error): one that
 *   waited on a producer whose leader kept an old value (another process held the lease) waits
 *   on for the fresh value, until `wait_timeout_ms`.
 * - Stale-if-error: when the producer fails and a value expired less than `stale_if_error_ms`
 *   ago exists, it is served (CORRAL_STALE) and the failure counted; otherwise every waiter gets
 *   the producer's error. A failed producer never caches anything.
 * - TTL jitter: the TTL is shortened by up to `ttl_jitter` (a fraction) at random, so keys
 *   written together do not expire together. */

/* What a producer hands back. */
typedef struct corral_result corral_result;

/* Sets the produced value (copied). Call once; a second call replaces the first. Returns
 * CORRAL_OK, CORRAL_ETOOBIG or CORRAL_ENOMEM. */
CORRAL_API int corral_result_set(corral_result *r, const void *data, size_t len);

/* Overrides the TTL for this value (CORRAL_TTL_FOREVER, or > 0 ms; 0 returns the value to the
 * caller and its waiters without caching it). */
CORRAL_API void corral_result_set_ttl(corral_result *r, int64_t ttl_ms);

/* Makes the value of `key`. Returns CORRAL_OK after corral_result_set, or a negative error of its
 * choosing (nothing is cached; see stale-if-error). Runs on the calling thread, or on a refresh
 * worker with `background`. Must not hold a lock that a caller of corral_get_or_set for the same
 * key holds. */
typedef int (*corral_producer)(void *arg, const void *key, size_t key_len, corral_result *out);

typedef struct corral_load_opts {
    int64_t ttl_ms;            /* CORRAL_TTL_DEFAULT, CORRAL_TTL_FOREVER or > 0 */
    int64_t stale_ttl_ms;      /* grace window after expiry, default 0 */
    int64_t stale_if_error_ms; /* window after expiry to serve stale on producer failure, 0 */
    bool background;           /* refresh on the handle's workers; callers never wait on it */
    double beta;               /* XFetch, default 1.0; 0 turns early refresh off */
    double ttl_jitter;         /* 0 to 1, default 0 */
    int64_t wait_timeout_ms;   /* how long a caller waits on another's producer, default 10 s */
    int64_t lease_ttl_ms;      /* expiry of the store lease, default 30 s; always > 0 */
    corral_call call;          /* version, namespace and tags of the key */
} corral_load_opts;

/* Fills `o` with the defaults. */
CORRAL_API void corral_load_opts_init(corral_load_opts *o);

/* Returns the value of `key` in `*out` (release with corral_value_unref), running `producer`
 * with `arg` when it must. Returns CORRAL_OK (fresh, or just produced), CORRAL_STALE (an expired
 * value within its grace or stale-if-error window), the producer's negative error, or
 * CORRAL_ETIMEDOUT, CORRAL_EBADKEY, CORRAL_ENOMEM; `*out` is NULL on every error. With
 * `background`, `producer` and `arg` must stay valid until corral_close. Thread-safe.
 *
 *     corral_load_opts o;
 *     corral_load_opts_init(&o);
 *     o.ttl_ms = 600000;
 *     rc = corral_get_or_set(c, "featured_products:v3", 20, load_featured, db, &o, &v); */
CORRAL_API int corral_get_or_set(corral *c, const void *key, size_t key_len,
                                 corral_producer producer, void *arg, const corral_load_opts *o,
                                 corral_value **out);

/* ---- Single flight, the waiting primitive ----
 *
 * For callers that cannot block (an event loop): join the flight of a key; the first caller
 * leads (it makes the value and finishes the flight), the others get a callback when it does.
 *
 *     corral_flight *lead;
 *     rc = corral_flight_join(c, key, len, on_ready, conn, &lead);
 *     if (rc == CORRAL_OK) { start fetching; later corral_flight_finish(c, lead, rc, value); }
 *     else if (rc == CORRAL_WAITING) { on_ready(conn, rc, value) comes exactly once }
 */
typedef struct corral_flight corral_flight;

/* Called once per waiter with the leader's outcome and a new reference to the value (NULL on
 * error; the callee owns the reference). Called on the thread that finishes the flight, with no
 * corral lock held; it may call corral functions, including joining a new flight. */
typedef void (*corral_flight_cb)(void *arg, int rc, corral_value *v);

/* Joins the flight of `key` (the physical key under the handle's prefix and version, or the
 * call's). Returns CORRAL_OK with `*lead` set when the caller leads: it must call
 * corral_flight_finish exactly once. Returns CORRAL_WAITING with `*lead` NULL when another caller
 * leads: `cb(arg, ...)` is called exactly once, when the leader finishes or the waiter is
 * cancelled. Errors (CORRAL_EBADKEY, CORRAL_ENOMEM) call nothing. Thread-safe. */
CORRAL_API int corral_flight_join(corral *c, const void *key, size_t key_len,
                                  const corral_call *call, corral_flight_cb cb, void *arg,
                                  corral_flight **lead);

/* Ends a flight the caller leads: every waiter's callback gets `rc` and a reference to `v`
 * (which may be NULL; the caller keeps its own reference). Then the key has no flight until the
 * next join. Returns the number of waiters released. Thread-safe. */
CORRAL_API size_t corral_flight_finish(corral *c, corral_flight *lead, int rc, corral_value *v);

/* Cancels a waiter (matched by `cb` and `arg`) of `key`'s flight: its callback is called with
 * CORRAL_ETIMEDOUT and NULL, now, on this thread. Returns CORRAL_OK, or CORRAL_MISS when no such
 * waiter is queued (already released). Thread-safe. */
CORRAL_API int corral_flight_cancel(corral *c, const void *key, size_t key_len,
                                    const corral_call *call, corral_flight_cb cb, void *arg);

/* ---- Leases across processes, the waiting primitive ----
 *
 * corral_get_or_set takes the store's lease itself. A caller that leads a key's flight in an
 * event loop (corral_flight_join) and shares its store with other processes (Redis) takes the
 * lease with corral_lease_try, so that one process of all those sharing the store does the
 * work: the others wait for it without blocking and are called back when its lease is released
 * (on Redis, a PUBLISH on "<KEY_PREFIX>:lease-released": docs/redis.md).
 *
 *     corral_lease *l;
 *     rc = corral_lease_try(c, key, len, NULL, 30000, on_released, conn, &l);
 *     CORRAL_OK:      lead; corral_lease_end(c, l) once the value is stored (announces it)
 *     CORRAL_EXISTS:  on_released(conn) comes once; poll on a timer too; corral_lease_end(c, l)
 *     CORRAL_ENOTSUP: the store is this process's own: the flight is enough (no I/O was done)
 */
typedef struct corral_lease corral_lease;
typedef void (*corral_lease_cb)(void *arg);

/* Takes the store's lease on `key` (built as corral_flight_join builds it) for `ttl_ms` (> 0),
 * with a random token of its own. Returns CORRAL_OK with `*out` the held lease; CORRAL_EXISTS
 * with `*out` a watch when another owner holds it: `cb(arg)` (unless `cb` is NULL) is then called
 * once, when a release of the lease is announced or the store's announcements (re)start or are
 * lost (a release may have been missed): on a thread of the library with its lock held (quick:
 * no corral call), or on this thread before this returns when the release came meanwhile. No
 * call comes for a lease that expires (its owner died): poll for that too. CORRAL_ENOTSUP
 * (`*out` NULL) when the store is private to this process (memory); a store error, CORRAL_EBADKEY,
 * CORRAL_EINVAL or CORRAL_ENOMEM. Thread-safe. */
CORRAL_API int corral_lease_try(corral *c, const void *key, size_t key_len, const corral_call *call,
                                int64_t ttl_ms, corral_lease_cb cb, void *arg, corral_lease **out);

/* A watch (CORRAL_EXISTS): true when the store's announcements are live, so a release calls
 * back; false while they are not (poll briefly). False for a held lease. */
CORRAL_API bool corral_lease_live(const corral_lease *l);

/* Ends `l` and frees it. A held lease is released if it is still the caller's (the release is
 * announced): CORRAL_OK, CORRAL_MISS (it expired, maybe taken by another), or a store error. A
 * watch is removed: CORRAL_OK when its callback will never come, CORRAL_MISS when it came (it
 * has returned). Accepts NULL (CORRAL_OK). Every lease is ended before corral_close.
 * Thread-safe. */
CORRAL_API int corral_lease_end(corral *c, corral_lease *l);

/* ---- Invalidation: namespaces, tags, events ---- */

/* Makes every key stored under namespace `ns` (corral_call.ns) unreachable, in O(1): the
 * namespace's generation, part of each physical key, is replaced by a new random one. The old
 * entries are never read again and age out. A read in a namespace that has no generation yet
 * misses and writes nothing; a write creates it. Returns CORRAL_OK, CORRAL_EINVAL (NULL, or a
 * name that is empty, over 200 bytes or holds a byte keys may not), or a store error. When the
 * store cannot write the new generation, the old one is deleted instead (which also hides every
 * key), so a bump fails only when the store can do neither. */
CORRAL_API int corral_ns_bump(corral *c, const char *ns);

/* Invalidates every value carrying `tag`, in O(1): the tag's version is replaced by a new random
 * one, and a read checks each tag version a value carries against the current ones (Symfony's
 * TagAwareAdapter). A tag version that has vanished from the store counts as busted, so no
 * invalidated value comes back; a set whose tag versions were read before a bust writes a value
 * that is already invalid. Returns as corral_ns_bump, and like it falls back to deleting the
 * version. When it returns, no handle of this process serves a busted value, near caches
 * included (they share the bust before it returns when they name the same server the same way:
 * docs/near-cache.md). A near cache in another process learns of the bust from Redis, one
 * network hop later: until then it may still serve a value the bust invalidated. */
CORRAL_API int corral_tag_bust(corral *c, const char *tag);

/* A named value of an event, substituted into rule templates as {name}. */
typedef struct corral_field {
    const char *name;
    const char *value;
} corral_field;

/* Decides whether a rule applies to one emitted event (the guide's `if instance.is_featured or
 * created`): return 1 to bust what the rule names, 0 to skip, or a negative error. May call
 * corral functions (no corral lock is held). */
typedef int (*corral_rule_fn)(void *arg, const char *event, const corral_field *fields, size_t n);

/* What an event busts. Templates name fields in braces: "product:{id}". */
typedef struct corral_rule {
    const char *const *keys; /* user keys to delete (under the handle's version) */
    size_t n_keys;
    const char *const *tags; /* tags to bust */
    size_t n_tags;
    const char *const *namespaces; /* namespaces to bump */
    size_t n_namespaces;
    corral_rule_fn when; /* NULL: always */
    void *when_arg;
} corral_rule;

/* Registers `rule` for `event` (everything is copied). Templates are 1 to 4096 bytes of literal
 * text and `{field}` placeholders (a non-empty name); `{{` and `}}` stand for literal braces; an
 * unbalanced brace is refused. A rule may have only a `when` callback. Rules of an event apply
 * in registration order. Returns CORRAL_OK, CORRAL_EINVAL or CORRAL_ENOMEM. Thread-safe: emits
 * running meanwhile see the rule or not, never half of it. */
CORRAL_API int corral_on(corral *c, const char *event, const corral_rule *rule);

/* Emits `event` with `fields`: every rule registered for it whose `when` says so (a return above
 * 1 counts as 1) deletes its keys, busts its tags and bumps its namespaces, with the fields
 * substituted. Every `when` is asked and every template of every applying rule expanded before
 * anything is busted, so these fail the call with nothing busted: a `when` error (returned as
 * is), a template naming a field the event lacks or a NULL field (CORRAL_EINVAL), an expanded
 * key that is invalid (CORRAL_EBADKEY), an expanded tag or namespace that is invalid
 * (CORRAL_EINVAL), CORRAL_ENOMEM. A store error while busting does not stop the rest: the first
 * one is returned and `*busted` counts what was done. `*busted` (optional) counts the keys that
 * were there and were deleted, plus every tag busted and namespace bumped. On a shared store
 * every process sees the bust at once. No corral lock is held while `when` runs. */
CORRAL_API int corral_emit(corral *c, const char *event, const corral_field *fields, size_t n,
                           size_t *busted);

/* ---- Fragment keys ---- */

/* Django's make_template_fragment_key, to the byte: "template.cache.<name>.<md5 hex>", where the
 * MD5 covers each vary value followed by ':'. With no vary values the digest is
 * d41d8cd98f00b204e9800998ecf8427e. Writes the key NUL-terminated into `out` (capacity `cap`)
 * and its length (without the NUL) to `*out_len`. Returns CORRAL_OK, CORRAL_EINVAL, or
 * CORRAL_ENOSPC with `*out_len` the key's length, 15 + name_len + 1 + 32 (`cap` must be at
 * least that plus one). Thread-safe, needs no handle. */
CORRAL_API int corral_fragment_key(const char *name, size_t name_len, const corral_buf *vary,
                                   size_t n_vary, char *out, size_t cap, size_t *out_len);

/* ---- Metrics ---- */

/* Counters of one key prefix (the user key up to its first ':'; fragment keys count under
 * "template.cache.<name>"). Labels keep at most 63 bytes; control bytes, and bytes >= 0x80 in a
 * prefix that is not valid UTF-8, are written as '?'. `items` and `bytes` count what the store
 * holds, including an expired entry not yet reclaimed; a set or touch with TTL 0 that removes an
 * entry counts as a delete. */
typedef struct corral_prefix_stats {
    char prefix[64]; /* NUL-terminated; "other" collects prefixes past max_prefixes */
    uint64_t hits, misses, sets, deletes, evictions, expirations;
    /* get_or_set: producer runs, failed runs, callers that waited on another's producer, XFetch
     * early refreshes, stale values served, lease waits given up, producer time in total. */
    uint64_t loads, load_errors, load_waiters, early_refreshes, stale_served, lease_timeouts;
    uint64_t load_ns;
    int64_t items, bytes; /* gauges: live entries and their bytes in the store */
} corral_prefix_stats;

typedef struct corral_stats_snapshot {
    corral_prefix_stats total;     /* the sum over all prefixes; prefix "" */
    size_t n_prefixes;             /* entries in `prefixes` */
    corral_prefix_stats *prefixes; /* sorted by prefix; owned by the snapshot */
    size_t max_memory_bytes;
    size_t used_bytes; /* bytes the store accounts: keys, values, per-entry overhead */
} corral_stats_snapshot;

/* Takes a snapshot of the counters into `*out` (release with corral_stats_free). Returns
 * CORRAL_OK or CORRAL_ENOMEM (with `*out` NULL). O(prefixes x stripes). */
CORRAL_API int corral_stats(corral *c, corral_stats_snapshot **out);
/* Releases a snapshot. Accepts NULL. */
CORRAL_API void corral_stats_free(corral *c, corral_stats_snapshot *s);

/* Writes the Prometheus text exposition (version 0.0.4) of every metric into a new
 * NUL-terminated buffer `*out` of length `*out_len` (release with corral_free). Counters end in
 * `_total`, sizes are in bytes; every per-prefix series carries a `prefix` label. Returns
 * CORRAL_OK or CORRAL_ENOMEM (with `*out` NULL). */
CORRAL_API int corral_metrics_write(corral *c, char **out, size_t *out_len);

/* ---- Store health ---- */

/* Fills `*out` with the state of server `i` of the handle's store (0: the first, which takes the
 * writes; then the replicas in the order of the URL's host list; a near cache's Redis counts).
 * Returns CORRAL_OK, CORRAL_MISS when the store has no server `i`, CORRAL_ENOTSUP for a store
 * without servers (mem://), or CORRAL_EINVAL; `*out` is zeroed on every error. The state is the
 * handle's, shared by its threads: after a failed call the latest failure may be another
 * thread's, of the same moment. Copied under the server's lock; no I/O. Thread-safe.
 *
 *     if (corral_set(c, k, n, v, len, CORRAL_TTL_DEFAULT, NULL) < 0 &&
 *         corral_store_status(c, 0, &st) == CORRAL_OK && st.reason != CORRAL_REASON_NONE)
 *         fprintf(stderr, "store %s: %s\n", st.server, st.msg); */
CORRAL_API int corral_store_status(corral *c, size_t i, corral_server_status *out);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_CORRAL_H */
