/*
 * proxy.h - corral-proxy, the HTTP caching reverse proxy: the types its files share and the
 * functions they call across seams. docs/proxy.md describes the design for operators.
 *
 * Files: one seam each, listed with their jobs in docs/proxy.md ("Files"). The loop layer
 * (worker.c, listen.c, client.c, cbuf.c) calls the files above it only through px_handlers.
 *
 * Data model:
 * - px (one per process, owned by main.c): the corral handle (thread-safe, shared by every
 *   thread), the current configuration, the workers, the admin listener and the signals.
 * - px_worker: one thread running one uv loop. Everything reachable from a worker (its
 *   listener, client connections, origin connections, fetches, log buffer) belongs to its loop
 *   thread. Other threads talk to it only through its inbox (a mutex-protected list plus a
 *   uv_async): flight wake-ups, a new configuration, the order to stop.
 * - px_config: an immutable, refcounted snapshot. Each worker holds the current one; each
 *   request and fetch holds the one it started with, so SIGHUP never changes a request midway.
 * - px_conn: a client connection; one request at a time (pipelined requests wait in its read
 *   buffer). px_fetch: one exchange with the origin, which may outlive the request that began
 *   it (it keeps filling the cache when its client goes away) or have no client at all (a
 *   background refresh). px_oconn: a connection to the origin, idle in its worker's pool or
 *   owned by one fetch.
 *
 * Threads: every function here runs on the loop thread of the worker its first argument
 * belongs to, unless its comment says otherwise. The only cross-thread paths are the inbox
 * (px_worker_*), the config refcount, the metrics counters (relaxed atomics, one writer each)
 * and libcorral, which is thread-safe.
 */
#ifndef CORRAL_PROXY_H
#define CORRAL_PROXY_H

#include "corral/corral.h"
#include "corral/http.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* ---- Checks (the library's internal macros are not public; these are the binary's) ---- */

#ifdef NDEBUG
#define PX_CHECK_OBJ(p, m) ((void)0)
#else
#include <assert.h>
#define PX_CHECK_OBJ(p, m) assert((p) != NULL && (p)->magic == (m))
#endif

/* A branch believed unreachable, kept for safety: asserts in debug builds (SQLite's NEVER). */
#ifdef NDEBUG
#define PX_NEVER(x) (x)
#else
#define PX_NEVER(x) ((x) ? (assert(!"PX_NEVER"), 1) : 0)
#endif

#define PX_WORKER_MAGIC 0x70e6e0a1u
#define PX_CONN_MAGIC   0x70c0aa11u
#define PX_FETCH_MAGIC  0x70fe7c11u
#define PX_OCONN_MAGIC  0x700c0aa1u
#define PX_CONFIG_MAGIC 0x70c0f190u
#define PX_ADMIN_MAGIC  0x70ad3170u
#define PX_BUSY_MAGIC   0x70b05e11u

/* ---- Return codes (util.c) ----
 *
 * One space for every proxy function that can fail: 0 (PX_OK), a small positive outcome the
 * function documents, or a negative PX_E* code, so `rc < 0` is the only error test. libuv and
 * libcorral errors are mapped where the proxy receives them (px_from_uv, px_from_corral); they
 * never travel further. The flight outcomes are in the same space because they travel through
 * corral_flight_finish beside CORRAL_OK. */
typedef enum px_code {
    PX_OK = 0,
    PX_COMMIT_PURGED = 1,   /* px_obj_commit: stored, then deleted: a purge came after the start */
    PX_FLIGHT_PASS = 100,   /* flight: not stored: fetch yourself, in parallel (hit-for-pass) */
    PX_FLIGHT_STREAM = 101, /* flight: storable: stream the leader's busy object (wake_busy) */
    PX_FLEET_WAKE = 102,    /* another proxy's lease was released, or its poll is due (fleet.c) */
    PX_FLIGHT_ORIGIN_TIMEOUT = -1001, /* flight: the origin timed out: stale-if-error or 504 */
    PX_FLIGHT_ORIGIN_ERROR = -1002,   /* flight: the origin failed: stale-if-error or 502 */
    PX_ENOMEM = -3000,                /* out of memory */
    PX_ESTAMP = -3001,  /* purged, but the purge stamp could not be written (px_purge_url) */
    PX_ESTORE = -3002,  /* the store failed (a libcorral error other than memory or size) */
    PX_EFORMAT = -3003, /* bytes that are not what they should be (a stored object) */
    PX_ETOOBIG = -3004, /* over a size limit (a value, a head) */
    PX_EINVAL = -3005,  /* an invalid argument or configuration */
    PX_EIO = -3006,     /* a socket or system call failed (any other libuv error) */
    PX_ECONNREFUSED = -3007,
    PX_ECONNRESET = -3008,
    PX_EOF = -3009,    /* the peer closed the connection */
    PX_EPROTO = -3010, /* the peer broke the protocol (a malformed response) */
    PX_ETIMEDOUT = -3011,
    PX_EPIPE = -3012, /* the connection is closing or broken */
    PX_EADDRINUSE = -3013,
    PX_EACCES = -3014
} px_code;

/* A static description of a px_code (or of an unknown code). */
const char *px_strerror(int rc);
/* Maps a libuv error (negative; 0 and positive values pass through) into the px_code space. */
int px_from_uv(int uv_err);
/* Maps a libcorral result: negative errors into the px_code space, others unchanged. */
int px_from_corral(int rc);

#include "config.h" /* the limits, the configuration and its text forms */

/* ---- Small helpers (util.c) ---- */

typedef struct px_link {
    struct px_link *prev, *next;
} px_link;

void px_list_init(px_link *head);
void px_list_push(px_link *head, px_link *l); /* at the tail */
void px_list_remove(px_link *l);              /* then l is its own empty list */
bool px_list_empty(const px_link *head);

#define PX_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Wall clock, ms since the epoch (0 if the clock cannot be read). */
int64_t px_now_ms(void);
/* XXH3 of `data` with `seed`. */
uint64_t px_hash64(const void *data, size_t len, uint64_t seed);
/* Writes request head `m` into a new buffer `*buf` (free()) and parses it back into `*out` with
 * its fields in a new array `*hdrs` (free()), so the caller owns a copy. Returns 0 or -1
 * (memory; what was allocated is still in *buf / *hdrs for the caller to free). */
int px_msg_copy(const corral_http_msg *m, char **buf, corral_http_header **hdrs,
                corral_http_msg *out);

/* ---- Metrics (metrics.c) ---- */

/* Per-route counters: X(name, help). Prometheus names are corral_proxy_<name>. */
#define PX_COUNTERS(X)                                                                          \
    X(requests_total, "Client requests")                                                        \
    X(hits_total, "Requests answered from a fresh stored response")                             \
    X(misses_total, "Requests whose object was fetched from the origin (led a fetch)")          \
    X(coalesced_total, "Requests that waited on another request's fetch instead of the origin") \
    X(stale_total, "Stale responses served at once while one background fetch refreshes them")  \
    X(stale_if_error_total, "Stale responses served because the origin failed")                 \
    X(revalidated_total, "Requests answered after a conditional fetch freshened the object")    \
    X(pass_total,                                                                               \
      "Requests forwarded without the cache (method, credentials, rule, hit-for-pass)")         \
    X(errors_total, "Requests the proxy answered with an error (400, 502, 504, ...)")           \
    X(origin_fetches_total, "Requests sent to the origin")                                      \
    X(origin_errors_total, "Origin fetches that failed: connect, timeout, reset, malformed")    \
    X(stored_total, "Objects written to the store")                                             \
    X(not_stored_total,                                                                         \
      "Storable-looking responses that were not stored (size, store error, purged meanwhile)")  \
    X(purges_total, "Purges that applied to this route")                                        \
    X(response_bytes_total, "Body bytes sent to clients")

enum {
#define PX_ENUM(name, help) PX_M_##name,
    PX_COUNTERS(PX_ENUM)
#undef PX_ENUM
        PX_M_COUNT
};

/* Origin latency (request sent to response head received) histogram bounds, seconds. */
#define PX_LATENCY_BUCKETS 12

/* The counters of one worker. One writer (the worker's loop thread), read at scrape by the
 * admin thread: relaxed atomics, no lock. */
typedef struct px_metrics {
    atomic_uint_fast64_t c[PX_METRIC_SLOTS + 1][PX_M_COUNT];
    atomic_uint_fast64_t lat[PX_METRIC_SLOTS + 1][PX_LATENCY_BUCKETS + 1]; /* +Inf last */
    atomic_uint_fast64_t lat_sum_us[PX_METRIC_SLOTS + 1];
    atomic_int_fast64_t connections;        /* open client connections (gauge) */
    atomic_int_fast64_t origin_connections; /* open origin connections (gauge) */
    atomic_uint_fast64_t purge_requests[3]; /* admin: by URL, surrogate key, prefix */
    atomic_uint_fast64_t rejected;          /* client connections refused over the limits */
    atomic_int_fast64_t buffer_bytes;       /* client connection buffers allocated (cbuf.c) */
} px_metrics;

enum { PX_PURGE_URL = 0, PX_PURGE_KEY = 1, PX_PURGE_PREFIX = 2 };

/* Route name registry: metric slot -> name. Written only by the main thread (config loads);
 * slots are never reused, so a worker may keep using a slot number of an old snapshot. */
typedef struct px_slots {
    char names[PX_METRIC_SLOTS][PX_ROUTE_NAME_MAX + 1];
    atomic_uint n;
} px_slots;

/* The slot of route `name`, adding it (slot PX_METRIC_SLOTS, "other", when full). Main thread. */
unsigned px_metrics_slot(px_slots *s, const char *name);

void px_metrics_add(px_metrics *m, unsigned slot, unsigned counter, uint64_t n);
void px_metrics_latency(px_metrics *m, unsigned slot, uint64_t us);

struct px;
/* Writes the Prometheus text of the proxy (every worker's counters summed, the objects and bytes
 * per route from the store) and libcorral's own into a new buffer (free()). Returns PX_OK, or
 * PX_ENOMEM or PX_EINVAL (a row that could not be formatted) with `*out` NULL. */
int px_metrics_text(struct px *px, char **out, size_t *len);

/* ---- Workers (worker.c) ---- */

struct px_conn;
struct px_fetch;
struct px_worker;

/* What the loop layer (worker.c, client.c) calls in the files above it. main.c fills one at
 * start-up and every worker points to it (px_worker.on), so the loop layer names nothing above
 * it and the files above call down into it. Each runs on the worker's loop thread; the function
 * main.c sets is named in brackets. */
typedef struct px_handlers {
    /* A request head was parsed on `c` (px_cache_request). */
    void (*request)(struct px_conn *c);
    /* The coalescing wait of `c` timed out (px_cache_wait_expired). */
    void (*wait_expired)(struct px_conn *c);
    /* The request of `c` is over, or `c` is freed: release its state (px_request_release). */
    void (*request_release)(struct px_conn *c);
    /* The flight `c` waited on ended, with its result (px_cache_woken). */
    void (*woken)(struct px_conn *c, int rc, corral_value *v);
    /* The busy object `c` streams grew or ended, or its write queue drained (px_cache_stream);
     * `c` goes away (px_cache_stream_stop). */
    void (*stream)(struct px_conn *c);
    void (*stream_stop)(struct px_conn *c);
    /* To the fetch a connection feeds or drains: request body bytes and their end, the
     * connection going away, its write queue drained (px_fetch_body, _body_end, _detach,
     * _unpause). */
    void (*fetch_body)(struct px_fetch *f, const char *data, size_t len);
    void (*fetch_body_end)(struct px_fetch *f);
    void (*fetch_detach)(struct px_fetch *f);
    void (*fetch_unpause)(struct px_fetch *f);
    /* The worker stops: stop accepting, close what is idle (main.c: px_clients_stop,
     * px_origin_close_idle). */
    void (*stop)(struct px_worker *w);
    /* The shutdown deadline passed: close the fetches and connections left (main.c:
     * px_fetches_abort, px_clients_abort). */
    void (*abort)(struct px_worker *w);
    /* Nothing is left: close the idle origin connections (px_origin_close_idle). */
    void (*done)(struct px_worker *w);
} px_handlers;

typedef struct px_worker {
    uint32_t magic;
    struct px *px;
    const px_handlers *on; /* the layers above, for the loop layer (main.c's, at start-up) */
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    uv_async_t inbox_async;
    uv_mutex_t inbox_lock; /* protects the inbox fields below and px_conn's wake_* fields */
    struct px_conn *inbox; /* connections to wake, oldest first (px_conn.wake_next chain): a
                              flight ended, or a busy object they stream from grew */
    struct px_conn *inbox_tail;
    size_t inbox_len;
    px_config *inbox_cfg; /* a new configuration to adopt (a reference), or NULL */
    bool inbox_stop;      /* stop: drain and exit */
    bool inbox_closed;    /* the async handle is closed: senders must not signal it */
    px_config *cfg;       /* the current snapshot (a reference) */
    px_link conns;        /* client connections */
    px_link fetches;      /* fetches in progress */
    px_link idle;         /* pooled origin connections */
    px_link refreshes;    /* refresh flights open while another proxy refreshes (fleet.c) */
    size_t n_idle;
    px_link spare_bufs;    /* client connection buffers given back, for reuse (cbuf.c) */
    unsigned n_spare_bufs; /* their number */
    struct sockaddr_storage origin_addr;
    uv_timer_t drain_timer; /* the shutdown deadline */
    uv_timer_t log_timer;   /* flushes the access log (px->alog) */
    uv_check_t stall_check; /* after each poll: were its callbacks held up (px_worker_defer)? */
    bool stalled;           /* the last poll's callbacks held the loop for PX_STALL_MS or more */
    bool stall_seen;        /* this turn's callbacks did so (worker.c: read_clock) */
    bool stopping;
    bool handles_ready;   /* loop, inbox and timers are set up (startup) */
    bool closing_handles; /* the loop's own handles are being closed: it is ending */
    px_metrics *metrics;  /* this worker's counters (px->metrics[id]) */
} px_worker;

/* Wakes `w` for connection `c` whose flight ended (c->wake_rc, c->wake_v, c->wake_busy are
 * set). Any thread. */
void px_worker_wake(px_worker *w, struct px_conn *c);
/* Wakes `w` for connection `c`, which streams a busy object that grew or ended; a connection
 * already in the inbox is not queued twice. Any thread. */
void px_worker_notify(px_worker *w, struct px_conn *c);
/* True while `c` is in its worker's inbox (it must not be freed). Loop thread of `c`. */
bool px_worker_queued(px_worker *w, const struct px_conn *c);
/* Signals `w`'s inbox; the caller holds w->inbox_lock (so the handle cannot close meanwhile).
 * Any thread. */
void px_worker_signal_locked(px_worker *w);

/* Called when a connection or fetch of a stopping worker ends: exits the loop when it was the
 * last. Loop thread. */
void px_worker_maybe_done(px_worker *w);

/* A deadline timer asks this first. When the loop's last turn was held up (a callback blocked
 * on the store, e.g. a Redis server that stopped answering), it re-arms `t` with `cb` for the
 * next turn and returns true: libuv runs expired timers before it polls, so bytes or progress
 * that came during the stall would otherwise lose to a deadline they met. At most once per arm
 * (`*deferred`, which the caller clears when it arms the timer): after one poll the peer's
 * socket has been looked at, and a loop that stalls on every turn must not switch deadlines off.
 * Loop thread. */
#define PX_STALL_MS 50
bool px_worker_defer(px_worker *w, uv_timer_t *t, uv_timer_cb cb, bool *deferred);
/* Starts deadline `t` (`cb` in `ms`) from now as the clock says, not from when the loop last
 * polled: a callback that ran after a stall would otherwise start a deadline already past. */
int px_worker_deadline(px_worker *w, uv_timer_t *t, uv_timer_cb cb, uint64_t ms);

/* Sets up worker `w` (loop, inbox, timers; not the listener: px_listen) before its thread
 * starts, with the handlers `on` (kept: they must outlive the worker). Returns PX_OK or a PX_E*
 * code; w->handles_ready tells whether there is anything to close. Main thread. */
int px_worker_init(struct px *px, px_worker *w, unsigned id, const px_handlers *on,
                   const struct sockaddr_storage *origin);

typedef struct px {
    corral *cache;
    px_config *cfg;        /* main thread's current snapshot */
    const px_flags *flags; /* the command line, reapplied on SIGHUP */
    unsigned n_workers;
    px_worker *workers;
    px_metrics *metrics;       /* the workers' counters, one block each */
    px_metrics *admin_metrics; /* the admin listener's (main thread) */
    px_slots slots;
    struct px_admin *admin;
    int exit_code;
    uv_mutex_t busy_lock; /* protects `busy` and the registry fields of each px_busy */
    px_link busy;         /* busy objects new requests may stream from (busy.c) */
    struct px_alog *alog; /* the access log's shared buffer (log.c) */
    atomic_uint clients;  /* open client connections of every worker (limits.max_connections) */
} px_proxy;

/* A client's stored-object view: the parsed head of a stored object and its body. */
typedef struct px_obj {
    corral_value *v;      /* the reference (NULL: none) */
    corral_http_msg head; /* points into v */
    corral_http_header *hdrs;
    const char *body;
    size_t body_len;
    const char *pk, *spec, *vk;
    size_t pk_len, spec_len, vk_len;
    int64_t req_ms, resp_ms;
} px_obj;

/* An object being built: header, primary key, vary spec, variant key, stored head, body. */
typedef struct px_objbuf {
    char *p;
    size_t len, cap;
    size_t body_off; /* where the body starts */
} px_objbuf;

/* ---- Busy objects (busy.c) ----
 *
 * A storable response while its leader fetches it, shared with the requests that coalesced on
 * the fetch: they get its head at once and its body as it arrives (Varnish's busy objects).
 * Refcounted; any thread. */
typedef struct px_busy px_busy;

/* A connection streaming a busy object: its place in the busy's readers and its cursor. */
typedef struct px_busy_reader {
    px_link link; /* in the busy's readers, under the busy's lock */
    struct px_conn *c;
    void *seg;    /* the segment of the next byte (NULL: the first) */
    size_t off;   /* the next byte within `seg` */
    uint64_t pos; /* body bytes read so far */
} px_busy_reader;

/* What px_busy_read found. */
enum { PX_BUSY_MORE = 0, PX_BUSY_WAIT, PX_BUSY_DONE, PX_BUSY_FAILED };
/* What a purge names, for px_busy_purge. */
enum { PX_BUSY_BY_URL = 0, PX_BUSY_BY_TAG, PX_BUSY_BY_ALL };

/* A new busy object with one reference (the leader's), or NULL (memory). `key` is the flight
 * key; `ukey` the URL's vary key and `tags` the path and surrogate-key tag names (what purges
 * match); `obj` the object's encoding up to its body (px_objbuf: keys, times, stored head);
 * `has_length`/`length` the body's Content-Length when the origin sent one. Everything is
 * copied. Leader's loop thread. */
px_busy *px_busy_new(px_proxy *px, const char *key, size_t key_len, const char *ukey,
                     size_t ukey_len, const char *const *tags, size_t n_tags, const char *obj,
                     size_t obj_len, bool has_length, uint64_t length);
px_busy *px_busy_ref(px_busy *b);
void px_busy_unref(px_busy *b); /* any thread; the last one frees; accepts NULL */
/* Makes the busy object findable by new requests (px_busy_find) until px_busy_unpublish. */
void px_busy_publish(px_busy *b);
void px_busy_unpublish(px_busy *b);
/* A new reference to the newest published busy object of flight `key`, or NULL. Unless
 * `purged_too`, one a purge matched, or not yet checked against the stamps, is skipped. Any
 * thread. */
px_busy *px_busy_find(px_proxy *px, const char *key, size_t key_len, bool purged_too);
/* Marks published busy objects a purge names (a URL's vary key, a tag, or all) as purged at
 * `now_ms`: new requests no longer stream them. Any thread. */
void px_busy_purge(px_proxy *px, int by, const char *name, size_t len, int64_t now_ms);
/* When a purge matched `b` (0: never). Any thread. */
int64_t px_busy_purged_ms(px_busy *b);
/* The leader read the purge stamps after publishing `b`: `purged_ms` is the latest one after the
 * fill's start (0: none). Until then px_busy_find skips `b` unless `purged_too`. Any thread. */
void px_busy_checked(px_busy *b, int64_t purged_ms);
/* The object as given to px_busy_new, parsed (keys, times, head; an empty body). Borrowed
 * while the reference is held; read-only. */
const px_obj *px_busy_view(const px_busy *b);
bool px_busy_length(const px_busy *b, uint64_t *length);
/* Leader: appends body bytes (copied) and wakes the readers. Returns 0 or PX_ENOMEM. */
int px_busy_append(px_busy *b, const char *data, size_t len);
/* Leader: the body is complete (`ok`) or cut short; wakes the readers. */
void px_busy_finish(px_busy *b, bool ok);
/* Body bytes so far (the leader's view). */
size_t px_busy_body_len(const px_busy *b);
/* Leader: appends the whole body to `ob`. Returns 0 or PX_ENOMEM. */
int px_busy_copy_body(px_busy *b, px_objbuf *ob);
/* Reader: joins / leaves the busy object's readers (woken with px_worker_notify). */
void px_busy_attach(px_busy *b, px_busy_reader *r, struct px_conn *c);
void px_busy_detach(px_busy *b, px_busy_reader *r);
/* Reader: the next body bytes (at most `max`, borrowed while the reference is held) and
 * PX_BUSY_MORE, or PX_BUSY_WAIT (nothing yet: a notification follows), PX_BUSY_DONE (the whole
 * body was read) or PX_BUSY_FAILED (the fetch failed: cut the response short). */
int px_busy_read(px_busy *b, px_busy_reader *r, size_t max, const char **data, size_t *len);

/* ---- Client connections (client.c) ---- */

/* Cache results for the access log and metrics. */
typedef enum px_result {
    PX_R_NONE = 0,
    PX_R_HIT,
    PX_R_MISS,
    PX_R_COALESCED,
    PX_R_STALE,
    PX_R_STALE_IF_ERROR,
    PX_R_REVALIDATED,
    PX_R_PASS,
    PX_R_ERROR
} px_result;

/* The result's name in X-Cache and the access log ("HIT", ...; "-" for none). util.c. */
const char *px_result_name(px_result r);

/* The vary record of a URL: its generation and vary spec, or a hit-for-pass mark. */
typedef struct px_vrec {
    bool found;
    bool hit_for_pass;
    uint64_t gen;
    char spec[512];
    size_t spec_len;
} px_vrec;

/* The request a connection is handling. */
typedef struct px_request {
    const corral_http_msg *raw; /* the parser's message; valid while the request is handled */
    corral_http_msg msg;        /* what is keyed and forwarded: `raw` after the route's cookie
                                   rule, with a Host when HTTP/1.0 had none */
    const px_route *route;
    px_config *cfg; /* a reference for the duration of the request */
    char *pk;       /* primary key, into the connection's scratch */
    size_t pk_len;
    px_vrec vrec;
    /* The Vary spec of an answer in flight for another variant of this URL, seen before the
     * URL's vary record was stored: with no record, the variant key (and so the flight key)
     * comes from it (request.c, variant_flight_key). */
    char spec_hint[sizeof((px_vrec *)0)->spec];
    size_t spec_hint_len;
    px_obj obj;     /* the object found, or the one a flight handed over */
    int64_t now_ms; /* wall clock at the start */
    uint64_t start_ns;
    px_result result;
    const char *reason;       /* the engine's reason for the result */
    const char *store_reason; /* the store decision's reason, when a fetch made one */
    unsigned status;
    uint64_t body_bytes;
    bool is_head;
    bool has_body;        /* the request has a body (framing other than NONE) */
    bool body_done;       /* the parser reported the request's end */
    bool keep_alive;      /* the connection may serve another request after this one */
    bool responded;       /* a response head was sent */
    bool counted;         /* the request and its result are in the metrics (client.c) */
    bool resp_chunked;    /* the response body is sent chunked */
    bool close_delimited; /* the response body ends with the connection */
    bool uncoalesced;     /* do not join flights any more (after a wake-up or a timeout) */
    unsigned wakes;
    /* A 206 being streamed from a busy object (deliver.c): the ranges, ascending, the next one
     * to send, whether its multipart header went out, the multipart boundary ("" for one). */
    bool range_led; /* a Range miss waiting on the fetch it started itself (counted a miss) */
    /* Coalescing across proxies (fleet.c): the flight this request leads here while another
     * proxy fetches (`fleet_lead`, under the key `fleet_key`), its watch on that proxy's lease,
     * the fleet's lease once this request takes it (handed to its fetch), when it began to wait. */
    corral_flight *fleet_lead;
    corral_lease *fleet_watch;
    corral_lease *fleet_lease;
    int64_t fleet_since_ms;
    char fleet_key[128];
    size_t fleet_key_len;
    corral_http_range ranges[PX_MAX_RANGES];
    size_t n_ranges, range_i;
    bool range_open;
    uint64_t range_length; /* the representation's length */
    char boundary[24];
} px_request;

typedef struct px_conn {
    uint32_t magic;
    px_worker *w;
    px_link link;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    int timer_kind;      /* what the timer is timing (client.c's timer_kind) */
    bool timer_deferred; /* this arm of the timer waited a poll once (px_worker_defer) */
    int open_handles;    /* freed when both handles are closed */
    /* The buffers (cbuf.c): held only while a request is read or handled, NULL when idle. */
    void *bufs; /* the block holding the parser, rbuf, scratch and both field tables */
    corral_http_parser *parser;
    char *rbuf; /* unparsed input is rbuf[rpos, rlen) */
    size_t rcap, rpos, rlen;
    char *scratch; /* the request's keys and filtered cookies */
    size_t scratch_cap;
    corral_http_header *hdrs;     /* filtered request's fields */
    corral_http_header *obj_hdrs; /* the stored object's fields */
    size_t max_hdrs;
    char peer[48];
    bool busy;       /* a request is being handled */
    bool in_process; /* px_conn_process is on the stack */
    bool reading;
    bool closing;
    bool lingering;   /* closing gracefully: shut down, discarding input until EOF */
    bool body_paused; /* the fetch asked to stop reading the request body for now */
    bool peer_eof;    /* the client shut its side down */
    bool got_bytes;   /* bytes arrived since the last request ended (for 408) */
    unsigned queued_writes;
    px_request req;
    struct px_fetch *fetch; /* the fetch streaming to this connection, or sending its body */
    /* Streaming a busy object (a coalesced request answered while the leader fetches). */
    px_busy *stream;     /* a reference, or NULL */
    px_busy_reader rd;   /* its place among the busy's readers */
    bool stream_blocked; /* stopped reading it until the write queue drains */
    /* Flight waiting. */
    bool waiting;
    bool wait_timed_out;
    char flight_key[128];
    size_t flight_key_len;
    /* The inbox: the only fields another thread writes (px_worker_wake / px_worker_notify,
     * under the worker's inbox_lock; wake_busy also before the wake, in the flight callback). */
    struct px_conn *wake_next;
    bool in_inbox;
    bool wake_flight; /* queued for a flight's end (else: its busy object grew) */
    int wake_rc;
    corral_value *wake_v;
    px_busy *wake_busy; /* rc PX_FLIGHT_STREAM: the leader's busy object (a reference) */
} px_conn;

/* Starts the worker's listener (listen.c: SO_REUSEPORT among the process's own workers; worker
 * 0's bind is exclusive, so an address another process holds fails with PX_EADDRINUSE).
 * Returns 0 or a PX_E* code. */
int px_listen(px_worker *w);
/* Accepts one client connection from `server` (client.c; listen.c checked the limits). */
void px_conn_accept(px_worker *w, uv_stream_t *server);

/* A connection's buffers (cbuf.c): px_cbuf_acquire gives it its block (a spare of its worker,
 * or a new one) and returns 0 or PX_ENOMEM; px_cbuf_release gives it back (no request may be
 * parsed or handled then). px_cbuf_bytes is one block's size for `cfg`. px_cbuf_drop_spares
 * frees the worker's spares (it is ending). */
int px_cbuf_acquire(px_conn *c);
void px_cbuf_release(px_conn *c);
size_t px_cbuf_bytes(const px_config *cfg);
#define PX_SPARE_BUFS 32 /* spare blocks a worker keeps */
void px_cbuf_drop_spares(px_worker *w);

/* Stops accepting and closes idle connections (SIGTERM). */
void px_clients_stop(px_worker *w);
/* Closes every connection now (the drain deadline). */
void px_clients_abort(px_worker *w);

/* Sends a response head (copied). The connection's framing flags decide how bodies follow. */
void px_conn_send(px_conn *c, const char *data, size_t len);
/* Sends body bytes (copied, or referenced when `hold` is given: a reference is taken), framed
 * as a chunk when the response is chunked; nothing for HEAD requests. */
void px_conn_body(px_conn *c, const char *data, size_t len, corral_value *hold);
/* Sends a whole sized response, head and body, in one write (one syscall, one TCP segment
 * when it fits): the hit path. The body is referenced from `hold` when given; it is left out
 * for HEAD requests. */
void px_conn_send_whole(px_conn *c, const char *head, size_t head_len, const char *body,
                        size_t body_len, corral_value *hold);
/* Ends the response (the last chunk), logs it and moves on to the next request or closes. */
void px_conn_end(px_conn *c);
/* Sends a small complete response generated by the proxy (errors, 304 without object). */
void px_conn_simple(px_conn *c, unsigned status, const char *reason, const char *body,
                    px_result result, const char *why);
/* The extra fields every response head carries: X-Cache, Connection. Into `buf`; returns
 * the length (0 when it does not fit). */
size_t px_conn_extra(px_conn *c, px_result r, char *buf, size_t cap);
/* Decides the response framing from the origin head (Content-Length known or not) and writes
 * the framing fields into `buf`. Returns the length. */
size_t px_conn_framing(px_conn *c, const corral_http_msg *resp, char *buf, size_t cap);
/* Sends the response head of `resp` (an origin or stored head): its stored form, the framing
 * fields (px_conn_framing) and px_conn_extra's. Returns 0, or PX_ETOOBIG / PX_ENOMEM when it
 * cannot be written (nothing was sent; the caller answers). */
int px_conn_send_head(px_conn *c, const corral_http_msg *resp, px_result r);
/* Forwards an interim (1xx) response head of the origin to an HTTP/1.1 client before the final
 * one (RFC 9110 §15.2): 100 Continue to an Expect: 100-continue the origin got, 102, 103
 * Early Hints. Never 101, never to HTTP/1.0 clients, never after the final head. */
void px_conn_interim(px_conn *c, const corral_http_msg *resp);
/* Answers the client's conditional request with 304 (`cs`, from
 * corral_http_conditional_status: the head of `resp`) or 412, and ends the response. */
void px_conn_not_modified(px_conn *c, const corral_http_msg *resp, unsigned cs, px_result r);
/* The client went away or broke: close without a response. */
void px_conn_abort(px_conn *c);
/* Pauses / resumes the origin read side when the client's write queue is long. */
bool px_conn_congested(const px_conn *c);
/* Resumes reading the request (its body) after a pause. */
void px_conn_resume_body(px_conn *c);
/* Arms the connection's timer for a coalescing wait (px_cache_wait_expired when it fires). */
void px_conn_wait(px_conn *c, int64_t ms);
/* Streaming a busy object: `waiting` arms a timer (origin_read_timeout) that closes the
 * connection unless the object grows or ends meanwhile (and unless writes are queued: the send
 * timer runs then); false stops it. */
void px_conn_stream_wait(px_conn *c, bool waiting);
/* Frees a connection that closed while waiting on a flight, once its wake-up arrived. */
void px_conn_release_closed(px_conn *c);

/* ---- Stored objects (object.c): keys, encodings, vary records, stamps, commit ---- */

/* Starts building an object (keys, times, stored head; the body follows with
 * px_objbuf_append). Both return 0, PX_ENOMEM, or PX_ETOOBIG (a part over 4 GiB). */
int px_objbuf_init(px_objbuf *b, const char *pk, size_t pk_len, const char *spec, size_t spec_len,
                   const char *vk, size_t vk_len, const char *head, size_t head_len, int64_t req_ms,
                   int64_t resp_ms, size_t body_hint);
int px_objbuf_append(px_objbuf *b, const void *data, size_t len);
void px_objbuf_free(px_objbuf *b);
/* Stored object encoding. Returns 0, or PX_EFORMAT when `v` is not a valid object. */
int px_obj_parse(corral_value *v, corral_http_header *hdrs, size_t max_hdrs, px_obj *o);
/* The same for bytes (`o->v` is NULL): a busy object's encoding up to its body parses with an
 * empty body. */
int px_obj_parse_bytes(const char *p, size_t len, corral_http_header *hdrs, size_t max_hdrs,
                       px_obj *o);
/* Drops the view's reference and clears it. */
void px_obj_release(px_obj *o);
/* Builds the object and vary keys. `out` has room for PX_KEY_MAX bytes. */
#define PX_KEY_MAX 240
size_t px_key_vary(const px_route *r, const char *pk, size_t pk_len, char *out);
size_t px_key_object(const px_route *r, uint64_t gen, const char *pk, size_t pk_len, const char *vk,
                     size_t vk_len, char *out);
size_t px_key_flight(const px_route *r, const char *pk, size_t pk_len, const char *vk,
                     size_t vk_len, char *out);
/* The path of a primary key ("host/path?query"): from its first '/', without the query. */
void px_pk_path(const char *pk, size_t pk_len, const char **path, size_t *len);
/* Writes the path tags of a path into `store` and `tags`. Returns their number. */
size_t px_path_tags(const px_config *cfg, const char *path, size_t len, char *store, size_t cap,
                    const char **tags, size_t max);
/* Builds a tag name "<kind>:<name>" (hashed when long) into `out` (PX_KEY_MAX). */
size_t px_tag_name(char kind, const char *name, size_t len, char *out);
/* Reads a URL's vary record. Returns 0 (found or not, in `vr`) or PX_ESTORE (a miss). */
int px_vrec_get(corral *cache, const px_route *r, const char *pk, size_t pk_len, px_vrec *vr);
/* Marks a URL hit-for-pass for `ttl_ms`: lookups pass without coalescing. Returns 0 or a
 * PX_E* code. */
int px_vrec_set_hfp(corral *cache, const px_route *r, const char *pk, size_t pk_len,
                    int64_t ttl_ms);
/* Stores a built object under its URL's vary record (creating or reusing the record's
 * generation, with the path tags for prefix purges) with `tags` (surrogate keys), and returns
 * a reference to the stored value in `*out` (NULL when it could not be read back). A fill that
 * started at `start_ms` is checked against the purge stamps after it is written: when a purge
 * of its URL, a path prefix or a surrogate key of it came at or after `start_ms`, the object is
 * deleted again and PX_COMMIT_PURGED returned (so a purge racing the fill is never undone).
 * Returns 0, PX_COMMIT_PURGED, or a PX_E* code (nothing stored). */
int px_obj_commit(corral *cache, const px_config *cfg, const px_route *r, px_objbuf *b,
                  int64_t store_ttl_ms, const char *const *tags, size_t n_tags, int64_t start_ms,
                  corral_value **out);
/* The latest purge stamp at or after `start_ms` minus cfg->purge_margin_ms among those of URL
 * `pk` (route `r`), its path prefixes, surrogate-key tags `tags` and "everything": its time in
 * ms, or 0 when there is none. A start older than the stamps live counts as a purge (now), and so
 * does a store error when `error_is_purge`. One store read (get_many). */
int64_t px_purged_since(corral *cache, const px_config *cfg, const px_route *r, const char *pk,
                        size_t pk_len, const char *const *tags, size_t n_tags, int64_t start_ms,
                        bool error_is_purge);
/* Notes store key `key` as carrying each of `tags` (for purge counts), for `ttl_ms`. Best
 * effort: a failure only makes a later count low. */
void px_tag_note(corral *cache, const char *const *tags, size_t n_tags, const char *key,
                 size_t key_len, int64_t ttl_ms);
/* The number of entries noted under `tag` (px_tag_note) that still read as valid, each once:
 * what busting the tag now invalidates. Reads at most the last PX_TAG_COUNT_MAX notes (`*more`
 * says there were older ones: the count is then a lower bound). Returns the count or a PX_E*
 * code. */
#define PX_TAG_COUNT_MAX 4096
int64_t px_tag_count(corral *cache, const char *tag, bool *more);
/* Writes the purge stamp of `name` (a vary key, a tag, or "*"): the time `now_ms`, or the
 * stamp's own time when that is later (a purge that took its time before a newer one wrote its
 * stamp does not move it back; the two may still interleave, which the margin covers). Returns
 * 0 or PX_ESTAMP. A failure loses the protection of fills in flight against this purge: the
 * purge itself goes on, and reports it. */
int px_stamp_write(corral *cache, const char *name, size_t len, int64_t now_ms);
/* Stamps are kept PX_STAMP_TTL_MS. */
#define PX_STAMP_TTL_MS 3600000
/* A stamp can say less than the truth: a purge that took its time early and wrote its stamp
 * late may overwrite a newer purge's stamp, and proxies sharing a store compare clocks that
 * may disagree. So a fill counts a stamp up to the margin (limits.purge_margin, default
 * PX_STAMP_MARGIN_MS) before its start as one after it: a fill that started within the margin
 * after a purge is not stored, which costs at most one more origin fetch. */
#define PX_STAMP_MARGIN_MS     1000
#define PX_STAMP_MARGIN_MAX_MS 600000

/* ---- Purges (purge.c) ---- */

/* Each purge first writes a purge stamp (the time, under "~purge:<what>", kept PX_STAMP_TTL_MS)
 * for fills in flight to check (px_obj_commit), then purges, then marks the busy objects it
 * names (px_busy_purge). Any thread. */
/* Purges one URL (every variant). Returns 1 when a record was removed, 0 when none, a PX_E*
 * code: a store error (nothing purged), or PX_ESTAMP (purged, but the purge stamp could not be
 * written: a fill in flight may store the old answer again, so the purge should be retried). */
int px_purge_url(px_proxy *px, const px_config *cfg, const char *pk, size_t pk_len);
/* What a prefix or key purge invalidated: `n` (-1 when the store could not tell), a lower
 * bound when `at_least`. */
typedef struct px_purge_count {
    int64_t n;
    bool at_least;
} px_purge_count;
/* Purges every object under a path prefix (whole segments); `*count` is the number of URLs
 * (vary records, each with all its variants), or for "/" the store's entries of the routes.
 * Returns 0 or < 0 (as above). */
int px_purge_prefix(px_proxy *px, const px_config *cfg, const char *path, size_t len,
                    px_purge_count *count);
/* Purges every object with a surrogate key; `*count` is the number of objects (variants).
 * Returns 0 or < 0 (as above). */
int px_purge_key(px_proxy *px, const char *key, size_t len, px_purge_count *count);

/* ---- Requests (request.c) ---- */

/* Handles the request whose head the connection just parsed (c->req.raw set). Answers it,
 * or starts a fetch, or queues it on a flight. */
void px_cache_request(px_conn *c);
/* A flight this connection waited on ended (inbox). */
void px_cache_woken(px_conn *c, int rc, corral_value *v);
/* The coalescing wait timed out, or the connection is closing: cancel the wait. The wake-up
 * (rc CORRAL_ETIMEDOUT) still comes through the inbox. */
void px_cache_wait_expired(px_conn *c);
/* Releases what the request holds (busy object, object reference, config). */
void px_request_release(px_conn *c);

/* ---- Coalescing across proxies sharing a store (fleet.c) ---- */

/* `c` leads `lead` (its flight key) in this proxy: takes the fleet's lease on the flight key
 * (rq->fleet_lease, for its fetch) and returns false, or, when another proxy holds it, keeps
 * `lead` and waits (a PX_FLEET_WAKE wake-up when that lease is released or a poll is due) and
 * returns true. False without a lease when the store is this process's own (memory: no I/O),
 * fails, or the wait has lasted half of coalesce_timeout. */
bool px_fleet_wait(px_conn *c, corral_flight *lead);
/* Takes the fleet's lease for a background refresh that leads `lead`: true when it may fetch
 * (with *lease set, or NULL), false when another proxy refreshes; `lead` then stays open until
 * the poll is due (the stale hits meanwhile join it: no store command), and is finished then. */
bool px_fleet_refresh(px_conn *c, corral_flight *lead, corral_lease **lease);
/* Finishes the background refreshes' flights still open (px_fleet_refresh): the worker ends. */
void px_fleet_refreshes_end(px_worker *w);
/* The flight `c` leads while it waits, if it is still under `c`'s flight key: handed back (the
 * request fetches or waits again). NULL otherwise (finished for its waiters first with
 * CORRAL_OK and `v`, which they check as a leader's answer, or look up again when NULL). */
corral_flight *px_fleet_take(px_conn *c, corral_value *v);
/* Finishes the flight `c` leads while it waits, if any, with `rc` and `v`. */
void px_fleet_drop(px_conn *c, int rc, corral_value *v);
/* The wait's timer fired, or the connection closes: ends the watch (a wake-up always follows). */
void px_fleet_expired(px_conn *c);
/* The PX_FLEET_WAKE wake-up came: ends the watch. */
void px_fleet_woken(px_conn *c);
/* Ends a fleet lease (the announcement wakes the other proxies' waiters). Accepts NULL. */
void px_fleet_end(px_worker *w, corral_lease **lease);
/* A leader hands its waiters, through corral_flight_finish, CORRAL_OK with the stored object
 * (or NULL: look it up again), or one of the PX_FLIGHT_* codes. */

/* ---- Delivery (deliver.c) ---- */

/* Makes `out` the client's view of response head `m`: without the fields meant for the proxy
 * alone (Surrogate-Key unless cfg->keep_surrogate_key, the targeted cache-control fields of
 * cfg->cc_targets), their array in `tmp` (room for `max`). Returns 0, or PX_ETOOBIG with `out`
 * the unfiltered `m`. Any thread. */
int px_client_view(const px_config *cfg, const corral_http_msg *m, corral_http_header *tmp,
                   size_t max, corral_http_msg *out);
/* Answers the connection's request from stored object `v` (the reference is taken). */
void px_cache_serve(px_conn *c, corral_value *v, px_result r, const char *reason);
/* Answers the connection's request from the object it holds (c->req.obj), `age_s` old: the
 * whole response, or the ranges a Range asks for (206, or 416 when none can be served). */
void px_cache_answer(px_conn *c, px_result r, const char *reason, int64_t age_s);
/* A Range request about to stream busy object `b` (whose parsed head is `head`, `age_s` old):
 * when the ranges can be served as the body arrives (a Content-Length, ascending ranges), sends
 * the 206 (or 416) head and streams the ranges, taking the reference, and returns true; false
 * (nothing sent, `b` still the caller's) to stream the whole answer instead. */
bool px_cache_stream_ranges(px_conn *c, px_busy *b, const corral_http_msg *head, int64_t age_s);
/* The busy object the connection streams grew or ended (inbox), or its write queue drained:
 * send what there is. */
void px_cache_stream(px_conn *c);
/* The connection reads busy object `b` (the reference is taken) from its head on: a waiter, or
 * the leader's own client after the fetch sent it the head (the origin read never waits for
 * it). */
void px_cache_stream_busy(px_conn *c, px_busy *b);
/* Leaves the busy object's readers (no notification queues the connection after it returns). */
void px_cache_stream_stop(px_conn *c);
/* Sends every published byte of the busy object the connection has not sent yet (copied into
 * its write queue) and stops streaming it: the fetch writes to it directly from now on. */
void px_cache_stream_flush(px_conn *c);

/* ---- Fetches (fetch.c) ---- */

typedef enum px_fetch_kind {
    PX_FETCH_PASS = 1,  /* forward; never stored; unsafe methods invalidate after */
    PX_FETCH_MISS,      /* fetch and store when storable */
    PX_FETCH_REVALIDATE /* conditional fetch of a stored object */
} px_fetch_kind;

typedef struct px_fetch_args {
    px_fetch_kind kind;
    px_conn *sink;          /* the client to stream to, or NULL (background refresh) */
    corral_flight *lead;    /* the flight this fetch leads, or NULL */
    const char *flight_key; /* its key (a storable answer is published under it) */
    size_t flight_key_len;
    const corral_http_msg *req; /* the (filtered) client request */
    const px_route *route;
    px_config *cfg;
    const char *pk;
    size_t pk_len;
    const px_obj *stale; /* the stored object (revalidation; stale-if-error), or NULL */
    px_result result;    /* what the client's log line will say on success */
    corral_lease *lease; /* the fleet's lease on the flight key (fleet.c), or NULL; the fetch
                            ends it once the object is stored or will not be */
} px_fetch_args;

/* Starts a fetch. On failure (memory) it answers the sink with 503, finishes the flight with
 * an error, and returns PX_ENOMEM. */
int px_fetch_start(px_worker *w, const px_fetch_args *a);
/* Request body bytes from the sink's client, and its end. */
void px_fetch_body(struct px_fetch *f, const char *data, size_t len);
void px_fetch_body_end(struct px_fetch *f);
/* The sink connection is going away. */
void px_fetch_detach(struct px_fetch *f);
/* Aborts every fetch of the worker (the drain deadline). */
void px_fetches_abort(px_worker *w);
/* The client drained its write queue: resume a paused origin read. */
void px_fetch_unpause(struct px_fetch *f);

/* Origin side callbacks (origin.c calls them). */
struct px_oconn;
void px_fetch_on_connected(struct px_fetch *f, struct px_oconn *oc);
/* Both return 0, or PX_EPIPE when the fetch is gone (stop reading). */
int px_fetch_on_head(struct px_fetch *f, const corral_http_msg *resp);
int px_fetch_on_body(struct px_fetch *f, const char *data, size_t len);
void px_fetch_on_end(struct px_fetch *f);
/* An interim (1xx, not 101) response head: forwarded to the client, never stored. */
void px_fetch_on_interim(struct px_fetch *f, const corral_http_msg *resp);
/* The exchange failed; the connection is gone. `timeout` when a deadline passed; `retryable`
 * when nothing of the response arrived on a reused pooled connection (the origin closed it
 * while it was idle: the fetch may retry once on a new one). */
void px_fetch_on_error(struct px_fetch *f, int err, bool timeout, bool retryable);
/* The connection's write queue drained (request body flow control). */
void px_fetch_on_drain(struct px_fetch *f);

/* ---- Origin pool (origin.c) ---- */

/* Gives fetch `f` a connection in `*out`: an idle pooled one (unless `fresh_only`), already
 * connected, or a new one whose connection completes later with px_fetch_on_connected (or
 * fails with px_fetch_on_error). Returns 0, or a PX_E* code with `*out` NULL; nothing
 * is called back from inside this call. */
int px_origin_acquire(px_worker *w, struct px_fetch *f, bool fresh_only, struct px_oconn **out);
bool px_origin_connected(const struct px_oconn *oc);
/* Sends bytes (copied) on the fetch's connection. Returns 0 or a PX_E* code. */
int px_origin_send(struct px_oconn *oc, const char *data, size_t len);
/* Starts reading the response; `method` is the request's (HEAD responses have no body).
 * The response must begin, and then keep coming, within `read_timeout_ms`. */
void px_origin_expect(struct px_oconn *oc, corral_http_method method, int64_t read_timeout_ms);
/* Bytes written to the connection but not yet taken by the socket. */
size_t px_origin_queued(const struct px_oconn *oc);
/* The fetch is done with the connection: back to the pool when `reusable`, else closed. */
void px_origin_release(struct px_oconn *oc, bool reusable);
void px_origin_pause(struct px_oconn *oc);
void px_origin_resume(struct px_oconn *oc);
bool px_origin_reused(const struct px_oconn *oc);
/* Closes the idle pool (stopping). */
void px_origin_close_idle(px_worker *w);

/* ---- Admin (admin.c) ---- */

typedef struct px_admin px_admin;
/* Starts the admin listener on the main loop. Returns 0 or PX_EIO (printed). */
int px_admin_start(px_proxy *px, uv_loop_t *loop, px_admin **out);
void px_admin_stop(px_admin *a);

/* ---- Access log (log.c) ---- */

enum { PX_LOG_CORRAL = 0, PX_LOG_COMBINED = 1, PX_LOG_JSON = 2 };

/* "corral", "combined" or "json" into *out. Returns false for anything else. */
bool px_log_format_parse(const char *s, int *out);
/* The shared buffer every worker appends to, and the thread that writes it to `cfg`'s log_fd
 * (a reference is taken). Returns NULL when out of memory or no thread. Main thread. */
struct px_alog *px_alog_new(px_config *cfg);
/* After a reload: lines appended from now on go to `cfg`'s log_fd (a reference is taken); those
 * before still go to the previous snapshot's. Returns 0 or PX_ENOMEM (nothing changed). Main
 * thread. */
int px_alog_reopen(struct px_alog *l, px_config *cfg);
/* Queues `len` bytes of whole lines for the writer to write to stderr, so that a worker (or a
 * store's thread) never waits on a stderr that blocks; while one does, the access log waits
 * too. Past 8 KiB not yet written, lines are dropped. Never writes. Any thread. */
void px_alog_note(struct px_alog *l, const char *line, size_t len);
/* Lines dropped so far: the writer was 4 MiB behind (a log that blocks), or a write failed. */
uint64_t px_alog_dropped(struct px_alog *l);
/* Has the writer write what is left (for at most 1 s) and frees `l` (NULL is fine). Main thread,
 * once no worker runs. */
void px_alog_free(struct px_alog *l);
/* Appends the request's line to the shared buffer, in the order of the lines' times (written
 * after the worker's 100 ms timer, or at once past 64 KiB). Never writes, never waits for a
 * write. Loop thread of `c`. */
void px_log_request(px_conn *c);
/* Asks the writer to write the shared buffer now; returns at once. Loop thread of `w`. */
void px_log_flush(px_worker *w);

#endif /* CORRAL_PROXY_H */
