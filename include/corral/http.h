/*
 * http.h - corral's HTTP engine: a strict, incremental HTTP/1.1 message parser and the caching
 * decisions of RFC 9111 (with RFC 5861's stale-while-revalidate and stale-if-error), as pure
 * functions. The engine does no I/O, never reads a clock (every time is an argument) and never
 * allocates: memory comes from the caller, as one block per parser and as output buffers. It
 * serves corral-proxy (which calls the parser as bytes arrive on a connection) and any C server
 * that caches its own responses in-process. docs/http.md lists every rule with its RFC section.
 *
 * The pieces, in the order a caching proxy uses them:
 *   parse      corral_http_parser_* (incremental, bytes to a corral_http_msg view and body
 *              pieces); corral_http_parse_head (a complete head in one call).
 *   keys       corral_http_primary_key (host + target: one purge removes every variant),
 *              corral_http_vary_spec, corral_http_variant_key, corral_http_request_filter_cookies.
 *   lookup     corral_http_lookup (HIT, STALE_WHILE_REVALIDATE, REVALIDATE, MISS, PASS or
 *              GATEWAY_TIMEOUT, with a reason and the Age), corral_http_on_error
 *              (stale-if-error), corral_http_conditional_status (the client's own 304 or 412).
 *   fetch      corral_http_write_origin_request (hop-by-hop fields out, validators in).
 *   store      corral_http_store_decide (STORE with its windows, or DONT_STORE with a reason),
 *              corral_http_write_stored_head, corral_http_freshen (a 304 merged, RFC 9111 §4.3.4).
 *   serve      corral_http_write_cached_head (a stored head for a client, with Age).
 *   invalidate corral_http_invalidations (what an unsafe request's success invalidates; §4.4).
 *   range      corral_http_range_select (206, 416 or the whole 200 from a stored response,
 *              RFC 9110 §14), corral_http_parse_range, and the 206's framing pieces.
 *
 * Threads: the engine has no global state. Every function is thread-safe on distinct objects;
 * a parser belongs to one thread at a time (the connection's loop thread), and messages,
 * entries and buffers passed in are only read unless a parameter says otherwise.
 *
 * Return codes: as corral.h. CORRAL_OK (0) is success, negative values are errors (the
 * CORRAL_HTTP_E* parse errors below -100, plus CORRAL_EINVAL and CORRAL_ENOSPC), and small
 * positive values are the documented non-error outcomes of each function. Output parameters
 * are set on every path. A function writing into a caller's buffer returns CORRAL_ENOSPC when
 * it does not fit, with the needed length in its length out-parameter and nothing else
 * promised about the buffer.
 *
 * Ownership: nothing is allocated. A corral_http_msg is a view: its pointers point into the
 * bytes it was parsed from (the caller's buffer for corral_http_parse_head, the parser's block
 * for the incremental parser) and are valid as long as those are. Strings are (pointer,
 * length), never NUL-terminated by assumption. Reason strings are static.
 */
#ifndef CORRAL_HTTP_H
#define CORRAL_HTTP_H

#include "corral/corral.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Return codes ---- */

enum {
    /* Non-error outcomes (positive; distinct from corral.h's). */
    CORRAL_HTTP_GOT_HEAD = 10, /* parser: a message head is complete; see corral_http_parser_msg */
    CORRAL_HTTP_GOT_BODY = 11, /* parser: a piece of body (de-chunked) */
    CORRAL_HTTP_GOT_END = 12,  /* parser: the message is complete */
    CORRAL_HTTP_NOMATCH = 13,  /* freshen: the 304 names another representation; refetch */
    CORRAL_HTTP_VARY_ANY = 14, /* vary_spec: the response has `Vary: *` (never stored) */
    CORRAL_HTTP_RANGE_UNSATISFIABLE = 15, /* range: no range overlaps the representation (416) */

    /* Message errors. corral_http_error_status maps each to the status a proxy answers a
     * client with (400 and close, unless stated); from an origin they all mean 502. */
    CORRAL_HTTP_EBADLINE = -101,        /* request or status line malformed */
    CORRAL_HTTP_EBADTARGET = -102,      /* request-target malformed or not allowed for the method */
    CORRAL_HTTP_EVERSION = -103,        /* not HTTP/1.0 or HTTP/1.1 (505) */
    CORRAL_HTTP_EBADHEADER = -104,      /* field name not a token, space before ':', bad byte */
    CORRAL_HTTP_EOBSFOLD = -105,        /* obs-fold: a field line starting with SP or HTAB */
    CORRAL_HTTP_EBARECR = -106,         /* a CR not followed by LF */
    CORRAL_HTTP_EBARELF = -107,         /* a line ended by LF alone */
    CORRAL_HTTP_EHEADTOOBIG = -108,     /* the head is over limits.max_head_bytes (431) */
    CORRAL_HTTP_ETOOMANYHEADERS = -109, /* more than limits.max_headers fields (431) */
    CORRAL_HTTP_EBADLENGTH = -110,      /* Content-Length not 1*DIGIT or over 2^63 - 1 */
    CORRAL_HTTP_EDUPLENGTH = -111,      /* more than one Content-Length (even equal ones) */
    CORRAL_HTTP_ELENGTHTE = -112,       /* both Content-Length and Transfer-Encoding */
    CORRAL_HTTP_EBADTE = -113,          /* Transfer-Encoding empty, chunked twice, chunked not
                                           last in a request, or any in HTTP/1.0 */
    CORRAL_HTTP_EUNSUPTE = -114,        /* a transfer coding other than chunked (501) */
    CORRAL_HTTP_EBADCHUNK = -115,       /* chunk size, extension or CRLF malformed */
    CORRAL_HTTP_EBADTRAILER = -116,     /* trailer section malformed or too big */
    CORRAL_HTTP_EHOST = -117,           /* HTTP/1.1 request without Host, two Hosts, bad Host */
    CORRAL_HTTP_ETRUNCATED = -118       /* the input ended inside a message */
};

/* Returns a static string for any code: the CORRAL_HTTP_* ones, and corral_strerror's for the
 * rest. Thread-safe. */
CORRAL_API const char *corral_http_strerror(int rc);

/* Returns the status code a server answers a client whose request failed to parse with code
 * `rc`: 400, 431 (head or field count over the limits), 501 (unsupported transfer coding),
 * 505 (version), 400 for other negative codes; 0 for codes >= 0. The connection is then closed
 * in every case: the framing of what follows is unknown. Thread-safe. */
CORRAL_API unsigned corral_http_error_status(int rc);

/* ---- Messages ---- */

/* Methods the engine knows; anything else is CORRAL_HTTP_METHOD_OTHER (method names are
 * case-sensitive: "get" is OTHER). */
typedef enum corral_http_method {
    CORRAL_HTTP_METHOD_OTHER = 0,
    CORRAL_HTTP_GET,
    CORRAL_HTTP_HEAD,
    CORRAL_HTTP_POST,
    CORRAL_HTTP_PUT,
    CORRAL_HTTP_DELETE,
    CORRAL_HTTP_CONNECT,
    CORRAL_HTTP_OPTIONS,
    CORRAL_HTTP_TRACE,
    CORRAL_HTTP_PATCH,
    CORRAL_HTTP_PURGE /* the proxy's admin method */
} corral_http_method;

/* How the body of a message is delimited (RFC 9112 §6.3). */
typedef enum corral_http_framing {
    CORRAL_HTTP_FRAMING_NONE = 0, /* no body (requests without CL/TE; 1xx/204/304; HEAD) */
    CORRAL_HTTP_FRAMING_LENGTH,   /* Content-Length bytes */
    CORRAL_HTTP_FRAMING_CHUNKED,  /* Transfer-Encoding: chunked */
    CORRAL_HTTP_FRAMING_CLOSE     /* responses only: the body runs until the connection closes */
} corral_http_framing;

/* One field line: name and value, the value without leading and trailing whitespace. */
typedef struct corral_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} corral_http_header;

/* A parsed (or hand-built) message head. Plain data: a C server with its own parser may fill
 * one with corral_http_msg_init and the fields below to use the decision functions, which read
 * is_request, method (requests), target (requests), status (responses) and headers. */
typedef struct corral_http_msg {
    bool is_request;
    unsigned version_minor; /* HTTP/1.<version_minor>: 0 or 1 */
    corral_http_method method;
    const char *method_name; /* requests: the method as received */
    size_t method_len;
    const char *target; /* requests: the request-target as received */
    size_t target_len;
    unsigned status; /* responses: 100-999 */
    const char *reason;
    size_t reason_len;
    const corral_http_header *headers; /* in the order received */
    size_t n_headers;
    corral_http_framing framing;
    uint64_t content_length; /* the Content-Length value when present (also for HEAD/304) */
    bool has_content_length;
    bool keep_alive; /* HTTP/1.1 without "Connection: close", or 1.0 with keep-alive; false
                        for a response whose body runs until close */
} corral_http_msg;

/* Zeroes `m` and sets is_request, version_minor 1 and keep_alive. Never fails. */
CORRAL_API void corral_http_msg_init(corral_http_msg *m, bool is_request);

/* Returns the first field named `name` (case-insensitive; `name` NUL-terminated, at most 127
 * bytes) and, when `count` is not NULL, the number of fields with that name; NULL (and 0) when
 * absent. The pointer is borrowed from `m`. O(n_headers). */
CORRAL_API const corral_http_header *corral_http_msg_get(const corral_http_msg *m, const char *name,
                                                         size_t *count);

/* Writes the values of every field named `name` joined as one list ("a, b"; "; " for Cookie,
 * RFC 9110 §5.3 / RFC 6265 §5.4) into `buf` (capacity `cap`) and sets `*len`. Returns CORRAL_OK
 * (length 0 when absent) or CORRAL_ENOSPC with `*len` the length needed. */
CORRAL_API int corral_http_msg_join(const corral_http_msg *m, const char *name, char *buf,
                                    size_t cap, size_t *len);

/* True when the field `name` is hop-by-hop in `m` (RFC 9110 §7.6.1): Connection, Keep-Alive,
 * Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer, Transfer-Encoding,
 * Upgrade, and every name listed in m's Connection fields except Host and Content-Length. Such
 * fields are neither forwarded nor stored. */
CORRAL_API bool corral_http_is_hop_by_hop(const corral_http_msg *m, const char *name,
                                          size_t name_len);

/* Makes `out` a copy of message `m` without the fields named in `names` (`n_names`
 * NUL-terminated names, case-insensitive): what a proxy does with fields meant for it alone
 * (Surrogate-Key, CDN-Cache-Control) before a response goes on to the client. The kept fields
 * go into `headers` (room for `max_headers`); strings still point into m's bytes. When no field
 * is dropped, `out` is `*m` itself (its field list untouched, `headers` unused). Returns
 * CORRAL_OK, CORRAL_EINVAL (NULL arguments) or CORRAL_ENOSPC (`*out` then unspecified).
 * O(fields x names). */
CORRAL_API int corral_http_msg_drop_fields(const corral_http_msg *m, const char *const *names,
                                           size_t n_names, corral_http_header *headers,
                                           size_t max_headers, corral_http_msg *out);

/* Returns the method's name ("GET", ...; "OTHER"), a static string. */
CORRAL_API const char *corral_http_method_name(corral_http_method m);

/* ---- Parsing ---- */

/* Limits of the parser. Fill with corral_http_limits_init first, so fields added later get
 * their defaults. */
typedef struct corral_http_limits {
    size_t max_head_bytes;       /* start line + fields + blank line; default 16384. Also the
                                    bound of a chunked body's trailer section. */
    size_t max_headers;          /* field lines; default 64 */
    size_t max_chunk_line_bytes; /* a chunk-size line with its extensions; default 1024 */
} corral_http_limits;

/* Fills `l` with the defaults. Never fails. */
CORRAL_API void corral_http_limits_init(corral_http_limits *l);

typedef enum corral_http_kind {
    CORRAL_HTTP_REQUEST = 1, /* the parser reads requests (a client connection) */
    CORRAL_HTTP_RESPONSE = 2 /* the parser reads responses (an origin connection) */
} corral_http_kind;

/* An incremental parser of one connection's messages. Opaque; it lives in the caller's block. */
typedef struct corral_http_parser corral_http_parser;

/* Returns the bytes of the block a parser with limits `l` (NULL for the defaults) needs, or 0
 * when the limits are invalid (a zero limit, or sizes that overflow). Thread-safe. */
CORRAL_API size_t corral_http_parser_mem_size(const corral_http_limits *l);

/* Sets up a parser of `kind` in the caller's block `mem` of `mem_len` bytes (at least
 * corral_http_parser_mem_size(l); aligned for any type, as malloc returns) and sets `*out` (a
 * pointer into `mem`). The parser keeps the head it is parsing and the field list in the
 * block; it allocates nothing and holds no other resource. The block must stay put until
 * corral_http_parser_deinit. Returns CORRAL_OK, or CORRAL_EINVAL (bad limits or kind, NULL,
 * misaligned `mem`) / CORRAL_ENOSPC (`mem_len` too small) with `*out` NULL. */
CORRAL_API int corral_http_parser_init(corral_http_parser **out, void *mem, size_t mem_len,
                                       corral_http_kind kind, const corral_http_limits *l);

/* Marks the block as no longer a parser (catches use after deinit in debug builds). The caller
 * then frees the block. Accepts NULL. */
CORRAL_API void corral_http_parser_deinit(corral_http_parser *p);

/* Feeds `len` bytes of `data` and returns at the first event, with `*consumed` the bytes used
 * (the caller passes the rest in the next call):
 *   CORRAL_OK             every byte was used and nothing is pending: wait for more input;
 *   CORRAL_HTTP_GOT_HEAD  a head is complete: corral_http_parser_msg(p) describes it;
 *   CORRAL_HTTP_GOT_BODY  `*body` is a piece of the body: a borrowed slice of `data` (chunked
 *                         framing removed);
 *   CORRAL_HTTP_GOT_END   the message is complete (the parser is ready for the next one);
 *   < 0                   a CORRAL_HTTP_E* error: the message is invalid. The parser stays
 *                         failed (every later call returns the same code): answer
 *                         corral_http_error_status(rc) (502 for a response) and close.
 * Call again, even with `len` 0, until it returns CORRAL_OK: a head with no body is followed
 * by GOT_END without further input. The head's bytes are copied into the parser's block;
 * body bytes are not. `body` is zeroed unless the result is GOT_BODY. The message returned by
 * corral_http_parser_msg stays valid until the call after GOT_END (which starts the next
 * message), so a proxy that pipelines stops feeding after GOT_END until it is done with it.
 * O(len). Leading empty lines before a message are skipped (RFC 9112 §2.2).
 * Usage (a proxy's read callback; `p` lives in the connection's memory):
 *     size_t n;
 *     corral_buf body;
 *     for (;;) {
 *         int rc = corral_http_parser_execute(p, data, len, &n, &body);
 *         data += n, len -= n;
 *         if (rc < 0) { reply(corral_http_error_status(rc)); close(); break; }
 *         if (rc == CORRAL_OK) break;                       // all consumed: wait for bytes
 *         if (rc == CORRAL_HTTP_GOT_HEAD) on_head(corral_http_parser_msg(p));
 *         if (rc == CORRAL_HTTP_GOT_BODY) on_body(body.data, body.len);
 *         if (rc == CORRAL_HTTP_GOT_END) on_end();
 *     }
 */
CORRAL_API int corral_http_parser_execute(corral_http_parser *p, const void *data, size_t len,
                                          size_t *consumed, corral_buf *body);

/* Tells the parser the connection reached end of input. Returns CORRAL_HTTP_GOT_END when that
 * ends a response whose body runs until close, CORRAL_OK when the parser was between messages,
 * or CORRAL_HTTP_ETRUNCATED (the parser then stays failed) when a message was cut short. */
CORRAL_API int corral_http_parser_finish(corral_http_parser *p);

/* The message whose head was reported by GOT_HEAD; NULL before that, after an error, and from
 * the call that starts the next message. Borrowed from the parser. */
CORRAL_API const corral_http_msg *corral_http_parser_msg(const corral_http_parser *p);

/* For response parsers: the method of the request the next response answers. HEAD means the
 * response has no body whatever its fields say (RFC 9112 §6.3); a 2xx answer to CONNECT is
 * treated as a body-less head (the proxy does not tunnel). It applies until the next final
 * (non-1xx) response ends, then reverts to GET. */
CORRAL_API void corral_http_parser_set_request_method(corral_http_parser *p, corral_http_method m);

/* Parses a complete head held in `buf` (`len` bytes; bytes after the head are ignored) with
 * the same rules as the parser, filling `out` whose strings point into `buf` and whose fields
 * go into `headers` (room for `max_headers`). `l` may be NULL (defaults; `max_headers` still
 * bounds the count). Responses are framed as answers to GET. Sets `*head_len` (optional) to the
 * bytes of the head, blank line included. Returns CORRAL_OK, CORRAL_HTTP_ETRUNCATED when `buf`
 * holds no complete head, another CORRAL_HTTP_E* code, or CORRAL_EINVAL. O(len). */
CORRAL_API int corral_http_parse_head(corral_http_kind kind, const void *buf, size_t len,
                                      const corral_http_limits *l, corral_http_header *headers,
                                      size_t max_headers, corral_http_msg *out, size_t *head_len);

/* ---- Dates (RFC 9110 §5.6.7) ---- */

#define CORRAL_HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* Parses an HTTP-date in any of its three formats (IMF-fixdate, RFC 850, asctime) into ms since
 * the epoch. `ref_ms` is the current time, used only to place the two-digit years of RFC 850
 * dates (a date more than 50 years ahead of it is taken from the previous century). Returns
 * CORRAL_OK, or CORRAL_EINVAL with `*out_ms` 0 (callers treat e.g. "Expires: 0" as the past). */
CORRAL_API int corral_http_parse_date(const char *s, size_t len, int64_t ref_ms, int64_t *out_ms);

/* Writes `ms` (floored to seconds; years 1-9999) as an IMF-fixdate and a NUL into `out`.
 * Returns the length, CORRAL_HTTP_DATE_LEN, or 0 (with `out` "") when out of range. */
CORRAL_API size_t corral_http_format_date(int64_t ms, char out[CORRAL_HTTP_DATE_LEN + 1]);

/* ---- Cache keys and Vary (RFC 9111 §2, §4.1) ---- */

/* Writes the primary cache key of a request into `buf`: the host (from an absolute-form target,
 * else Host; lowercased, ":80" removed) followed by the target's path and query (origin-form),
 * e.g. "example.com/products?page=2". GET and HEAD share it, and so does every Vary variant of
 * the URL: purging this key purges them all. The bytes are the request's, which the parser
 * has limited to visible ASCII; the key can exceed 250 bytes (hash it for libcorral if so).
 * Returns CORRAL_OK, CORRAL_EINVAL (not a request, or target "*" / authority-form) or
 * CORRAL_ENOSPC with `*len` the length needed. */
CORRAL_API int corral_http_primary_key(const corral_http_msg *req, char *buf, size_t cap,
                                       size_t *len);

/* Writes the vary spec of a response: the field names of its Vary fields plus those of
 * `extra` (a route rule's extra Vary names, comma-separated; may be NULL), lowercased, sorted,
 * without duplicates, joined by ',' ("accept-encoding,cookie"); empty when nothing varies.
 * Store it beside the primary key; every variant's key is computed from it. Returns CORRAL_OK,
 * CORRAL_HTTP_VARY_ANY (with `*len` 0) for `Vary: *`, CORRAL_EINVAL for a name that is not a
 * token, or CORRAL_ENOSPC. O(names^2). */
CORRAL_API int corral_http_vary_spec(const corral_http_msg *resp, const char *extra,
                                     size_t extra_len, char *buf, size_t cap, size_t *len);

/* Writes the variant (secondary) key of a request for a vary spec: for each name of the spec,
 * the request's fields of that name combined and normalised (RFC 9111 §4.1): list elements
 * trimmed of whitespace and empty ones dropped; Accept-Encoding lowercased, q-values and
 * parameters removed, codings with q=0 dropped, sorted and deduplicated; Accept-Language and
 * Accept-Charset lowercased with the whitespace removed; Cookie split on ';' and trimmed.
 * A field that is absent and one that is empty give different keys. The key is
 * "name=<len>:<value>;" per name (or "name!;" when absent): unambiguous, binary-safe; empty for
 * an empty spec. Two requests get the same key exactly when a response varying on the spec
 * may serve both. Returns CORRAL_OK, CORRAL_EINVAL, or CORRAL_ENOSPC with `*len` needed. */
CORRAL_API int corral_http_variant_key(const corral_http_msg *req, const char *spec,
                                       size_t spec_len, char *buf, size_t cap, size_t *len);

/* Filters a Cookie field value ("a=1; b=2"): with `keep_listed` false it removes the cookies
 * whose name is in `names`, with true it keeps only those. A name ending in '*' matches every
 * cookie name starting with the rest ("_ga*", "__utm*"); other names match exactly
 * (case-sensitive). The rest is written to `out` joined by "; " (length 0 when nothing is left:
 * drop the field). Returns CORRAL_OK, CORRAL_EINVAL, or CORRAL_ENOSPC with `*out_len` needed.
 * O(len x n_names). */
CORRAL_API int corral_http_cookie_filter(const char *cookie, size_t len, const char *const *names,
                                         size_t n_names, bool keep_listed, char *out, size_t cap,
                                         size_t *out_len);

/* Makes `out` a copy of request `req` whose Cookie fields are replaced by one filtered field
 * (corral_http_cookie_filter over their combined value), or removed when nothing is left: what
 * a route rule that strips cookies does before the lookup, so stripped cookies neither make the
 * request credentialed nor enter variant keys. The field list goes into `headers` (room for
 * `max_headers`), the new Cookie value into `buf`; other strings still point into `req`'s
 * bytes. Returns CORRAL_OK, CORRAL_EINVAL or CORRAL_ENOSPC (`*out` then unspecified). */
CORRAL_API int corral_http_request_filter_cookies(const corral_http_msg *req,
                                                  const char *const *names, size_t n_names,
                                                  bool keep_listed, corral_http_header *headers,
                                                  size_t max_headers, char *buf, size_t cap,
                                                  corral_http_msg *out);

/* ---- Decisions (RFC 9111, RFC 5861) ---- */

/* The cache's policy: what the RFCs leave to configuration. Fill with corral_http_policy_init
 * first, so fields added later get their defaults. Times are milliseconds. Pass a route the
 * same policy for lookup, store and on_error: freshness is recomputed from the stored head
 * at each lookup, so both sides must agree on it. */
typedef struct corral_http_policy {
    bool shared;                      /* a shared cache (a proxy): s-maxage, private, the
                                         Authorization / Cookie / Set-Cookie rules; default true */
    bool honor_request_cache_control; /* obey the request's no-cache, no-store, max-age,
                                         min-fresh, max-stale, only-if-cached; default true */
    int64_t ttl_override_ms;          /* >= 0: freshness lifetime for every storable response
                                         (a route's TTL rule; counts as explicit freshness; the
                                         response's Age still counts); default -1: its own */
    int64_t max_ttl_ms;               /* cap on any freshness lifetime; 0 = none (default) */
    unsigned heuristic_percent;       /* heuristic lifetime: this % of Date - Last-Modified,
                                         default 10 (RFC 9111 §4.2.2); 0 disables heuristics */
    int64_t heuristic_max_ms;         /* cap on a heuristic lifetime; default 1 day */
    int64_t grace_ms;                 /* serve stale while revalidating this long past expiry
                                         even without stale-while-revalidate (configuration is
                                         an out-of-band permission, §4.2.4); default 0 */
    int64_t stale_if_error_ms;        /* likewise for origin errors; default 0 */
    int64_t keep_ms;                  /* keep expired entries that have a validator this long
                                         for conditional revalidation; default 600000 */
    const char *cc_targets;           /* targeted cache-control fields this cache obeys (RFC
                                         9213), in priority order, comma-separated and
                                         NUL-terminated ("Corral-Cache-Control,
                                         CDN-Cache-Control"): the first one a response carries
                                         as a valid Structured Field Dictionary replaces its
                                         Cache-Control for every decision on the response.
                                         Borrowed: it must outlive the policy's use. Default
                                         NULL: none (Cache-Control only) */
} corral_http_policy;

/* Fills `p` with the defaults. Never fails. */
CORRAL_API void corral_http_policy_init(corral_http_policy *p);

/* A stored response as the decisions see it: its head and the times of the exchange that
 * fetched (or last revalidated) it, ms since the epoch (RFC 9111 §4.2.3 request_time and
 * response_time). */
typedef struct corral_http_entry {
    const corral_http_msg *resp;
    int64_t request_time_ms;  /* when the request to the origin was sent */
    int64_t response_time_ms; /* when its response was received */
} corral_http_entry;

typedef enum corral_http_action {
    CORRAL_HTTP_NONE = 0,
    /* lookup */
    CORRAL_HTTP_HIT,                    /* serve the stored response (fresh, or stale within
                                           the request's max-stale) */
    CORRAL_HTTP_STALE_WHILE_REVALIDATE, /* serve it stale now and refresh it in the background */
    CORRAL_HTTP_REVALIDATE,      /* send the origin a conditional request (write_origin_request with
                                    the entry); a 304 freshens the entry, a 200 replaces it */
    CORRAL_HTTP_MISS,            /* fetch from the origin; the response may be stored */
    CORRAL_HTTP_PASS,            /* forward untouched; neither read nor write the cache (unsafe
                                    methods: then call corral_http_invalidations) */
    CORRAL_HTTP_GATEWAY_TIMEOUT, /* only-if-cached without a usable entry: answer 504 */
    /* store */
    CORRAL_HTTP_STORE,
    CORRAL_HTTP_DONT_STORE,
    /* on origin error */
    CORRAL_HTTP_STALE_IF_ERROR, /* serve the stored response instead of the error */
    CORRAL_HTTP_ERROR           /* no stand-in: answer 502/504 (or relay the origin's 5xx) */
} corral_http_action;

/* Returns "HIT", "STALE_WHILE_REVALIDATE", ... (static), for access logs. */
CORRAL_API const char *corral_http_action_name(corral_http_action a);

/* The outcome of a decision. Which fields are meaningful is said per function; the others are
 * 0 / false. */
typedef struct corral_http_decision {
    corral_http_action action;
    const char *reason;    /* static, short, for the access log: "fresh (max-age)" */
    int64_t age_s;         /* the Age to send with a stored response (§4.2.3) */
    int64_t fresh_left_ms; /* entry: freshness lifetime minus current age (< 0: stale) */
    bool request_no_store; /* lookup: the request forbids storing the answer (§5.2.1.5) */
    bool credentialed;     /* lookup: the request carries Authorization or Cookie */
    /* corral_http_store_decide, for STORE (all measured from the response's arrival): */
    int64_t ttl_ms;            /* fresh for this long (0: revalidate on every use) */
    int64_t grace_ms;          /* then stale-while-revalidate for this long */
    int64_t stale_if_error_ms; /* then usable on origin errors for this long */
    int64_t keep_ms;           /* then kept for conditional revalidation for this long */
    int64_t store_ttl_ms;      /* ttl + max(grace, stale-if-error, keep): the store's TTL */
    bool hit_for_pass;         /* DONT_STORE caused by the response itself (private, no-store,
                                  Set-Cookie, Vary: *, ...): the proxy may remember to pass */
} corral_http_decision;

/* Decides how to answer request `req` given the stored entry found for its primary and variant
 * keys (`entry` NULL when none) at time `now_ms`. Sets `*out`: action (any lookup action),
 * reason, credentialed, request_no_store; with an entry also age_s and fresh_left_ms. Rules,
 * in order (docs/http.md has the sections): methods other than GET/HEAD pass; only-if-cached
 * without a usable entry gives GATEWAY_TIMEOUT; a request with Authorization is served only an
 * entry marked public, s-maxage or must-revalidate (or varying on Authorization), a request
 * with Cookie only one marked public or s-maxage or varying on Cookie (else MISS); a response
 * no-cache or request no-cache revalidates; fresh within the request's max-age and min-fresh is
 * a HIT; stale within stale-while-revalidate (or the policy's grace) is STALE_WHILE_REVALIDATE
 * unless must-revalidate / proxy-revalidate forbid it; within the request's max-stale a HIT;
 * otherwise REVALIDATE when the entry has a validator, else MISS. Returns CORRAL_OK, or
 * CORRAL_EINVAL (NULL policy, request or out; not a request) with `*out` zeroed. O(fields). */
CORRAL_API int corral_http_lookup(const corral_http_policy *pol, const corral_http_msg *req,
                                  const corral_http_entry *entry, int64_t now_ms,
                                  corral_http_decision *out);

/* Decides whether the origin's response `resp` to `req` may be stored (RFC 9111 §3) and for
 * how long (§4.2.1, §4.2.2; RFC 5861), given when the request was sent and the response
 * arrived. Sets `*out`: STORE with ttl_ms, grace_ms, stale_if_error_ms, keep_ms, store_ttl_ms
 * and age_s (the response's age on arrival), or DONT_STORE with hit_for_pass; reason in both.
 * Not stored: non-GET requests (HEAD responses have no body: fetch HEAD misses with GET),
 * 1xx/206/304, no-store (unless must-understand with a known status), private, Vary: *,
 * Set-Cookie, request no-store, Authorization without public/s-maxage/must-revalidate, Cookie
 * without public/s-maxage/Vary: Cookie, statuses that need explicit freshness without it,
 * and responses with nothing to keep (stale on arrival, no validator, no grace). Returns
 * CORRAL_OK or CORRAL_EINVAL (with `*out` zeroed). O(fields). */
CORRAL_API int corral_http_store_decide(const corral_http_policy *pol, const corral_http_msg *req,
                                        const corral_http_msg *resp, int64_t request_time_ms,
                                        int64_t response_time_ms, corral_http_decision *out);

/* Decides, when the origin failed (connection error, timeout, or a 500/502/503/504 answer)
 * while answering `req`, whether the stored `entry` may be served instead (RFC 5861 §4:
 * stale-if-error in the response or the request, or the policy's stale_if_error_ms; never
 * past must-revalidate, proxy-revalidate or no-cache; credential rules as lookup). Sets `*out`
 * to STALE_IF_ERROR (with age_s) or ERROR, with a reason. `entry` may be NULL. Returns CORRAL_OK
 * or CORRAL_EINVAL. */
CORRAL_API int corral_http_on_error(const corral_http_policy *pol, const corral_http_msg *req,
                                    const corral_http_entry *entry, int64_t now_ms,
                                    corral_http_decision *out);

/* The freshness lifetime of response `resp` (§4.2.1: s-maxage for a shared cache, max-age,
 * Expires - Date; else heuristic §4.2.2 when allowed; the policy's override and cap applied) in
 * `*ms`, and `*source` (optional) a static name of where it came from ("max-age", "Expires",
 * "heuristic", "none", ...). `response_time_ms` stands in for a missing Date. Returns CORRAL_OK
 * or CORRAL_EINVAL. */
CORRAL_API int corral_http_freshness_lifetime(const corral_http_policy *pol,
                                              const corral_http_msg *resp, int64_t response_time_ms,
                                              int64_t *ms, const char **source);

/* The current age of `entry` at `now_ms` (§4.2.3), in ms (`*age_ms`, optional) and whole
 * seconds for the Age field (`*age_s`, optional). Returns CORRAL_OK or CORRAL_EINVAL. */
CORRAL_API int corral_http_current_age(const corral_http_entry *entry, int64_t now_ms,
                                       int64_t *age_ms, int64_t *age_s);

/* ---- Conditional requests (RFC 9110 §13, RFC 9111 §4.3) ---- */

/* Compares two entity-tags (field values such as `"v1"` or `W/"v1"`, surrounding whitespace
 * allowed): strong comparison when `strong` (both strong and equal), weak otherwise (equal
 * opaque tags). Malformed tags never match. */
CORRAL_API bool corral_http_etag_match(const char *a, size_t a_len, const char *b, size_t b_len,
                                       bool strong);

/* Evaluates the client's preconditions against the stored response `stored` (the selected
 * representation), in RFC 9110 §13.2.2's order: If-Match (strong), If-Unmodified-Since,
 * If-None-Match (weak), If-Modified-Since (GET/HEAD only, and only without If-None-Match,
 * against Last-Modified). Preconditions are ignored unless `stored` is a 2xx. Returns 304
 * (answer with corral_http_write_cached_head(..., 304, ...)), 412 (precondition failed) or 0
 * (none applies: serve the stored response). `now_ms` bounds dates in the future. */
CORRAL_API unsigned corral_http_conditional_status(const corral_http_msg *req,
                                                   const corral_http_msg *stored, int64_t now_ms);

/* Flags of corral_http_write_origin_request. FWD_AS_GET sends GET whatever the method (to fetch
 * a HEAD miss whole). FWD_STRIP_CONDITIONALS drops the client's If-* and Range fields, so the
 * origin answers a full 200 the cache can store (then answer the client with
 * corral_http_conditional_status). */
#define CORRAL_HTTP_FWD_AS_GET             0x1u
#define CORRAL_HTTP_FWD_STRIP_CONDITIONALS 0x2u

/* Writes the head of the request to send the origin for client request `req`: request line
 * (origin-form target, HTTP/1.1), the fields except hop-by-hop ones, Content-Length or
 * Transfer-Encoding: chunked as `req`'s framing needs (none with FWD_AS_GET), then `extra`
 * (`extra_len` bytes of complete field lines the proxy adds, "Via: 1.1 corral\r\n"; may be
 * NULL), then the blank line. With `revalidate` (a stored response) it is a conditional GET
 * (§4.3.1): the client's If-* and Range fields are dropped and If-None-Match (from its ETag) and
 * If-Modified-Since (from its Last-Modified) added. An absolute-form target becomes origin-form
 * with its authority as Host; a request without Host (HTTP/1.0) gets none, so pass one in
 * `extra`. Returns CORRAL_OK, CORRAL_EINVAL, or CORRAL_ENOSPC with `*len`
 * the length needed. O(fields^2) (Connection lists). */
CORRAL_API int corral_http_write_origin_request(const corral_http_msg *req,
                                                const corral_http_msg *revalidate, unsigned flags,
                                                const char *extra, size_t extra_len, char *buf,
                                                size_t cap, size_t *len);

/* Writes response head `resp` as the cache keeps it: the status line (HTTP/1.1), every field
 * except hop-by-hop ones (§3.1), Content-Length and Transfer-Encoding (the body's length is
 * the store's to know), then the blank line. The result parses back with
 * corral_http_parse_head. Returns CORRAL_OK, CORRAL_EINVAL or CORRAL_ENOSPC (`*len` needed). */
CORRAL_API int corral_http_write_stored_head(const corral_http_msg *resp, char *buf, size_t cap,
                                             size_t *len);

/* Merges a 304 (or a HEAD's 200, §4.3.5) `update` into the stored head `stored` (§4.3.4, §3.2):
 * every field of `update` replaces the stored fields of that name, except hop-by-hop fields,
 * Content-Length, Content-Encoding, Content-Range and Transfer-Encoding; the stored Date and
 * Age, which describe the old exchange, are dropped even when `update` has none. Writes the new
 * stored head (as write_stored_head) into `buf`. The entry's times become those of the
 * revalidation exchange; run corral_http_store_decide on the result for its new TTL. Returns
 * CORRAL_OK, CORRAL_HTTP_NOMATCH when `update`'s ETag or Last-Modified differ from the stored
 * ones (it describes another representation: refetch; nothing written), CORRAL_EINVAL, or
 * CORRAL_ENOSPC (`*len` needed). */
CORRAL_API int corral_http_freshen(const corral_http_msg *stored, const corral_http_msg *update,
                                   char *buf, size_t cap, size_t *len);

/* Writes the head that answers a client from stored response `stored`: with `status` 0 the
 * stored status line and fields, Age replaced by `age_s`, and Content-Length `body_len` (when
 * >= 0 and the status allows a body); with `status` 206 (a stored 200 only) the same fields
 * under "206 Partial Content", `body_len` being the 206's body (put its Content-Range, or the
 * multipart Content-Type, in `extra`, and drop a stored Content-Type for multipart with
 * corral_http_msg_drop_fields); with `status` 304 a Not Modified carrying only the
 * fields RFC 9110 §15.4.5 wants (Cache-Control, Content-Location, Date, ETag, Expires, Vary,
 * and Last-Modified when there is no ETag) and Age. Then `extra` (complete field lines such as
 * "Connection: close\r\n"; may be NULL) and the blank line. Returns CORRAL_OK, CORRAL_EINVAL
 * (bad status) or CORRAL_ENOSPC (`*len` needed). */
CORRAL_API int corral_http_write_cached_head(const corral_http_msg *stored, unsigned status,
                                             int64_t age_s, int64_t body_len, const char *extra,
                                             size_t extra_len, char *buf, size_t cap, size_t *len);

/* ---- Range requests (RFC 9110 §14) ---- */

/* One byte range of a representation: positions `first` to `last`, both included. */
typedef struct corral_http_range {
    uint64_t first;
    uint64_t last;
} corral_http_range;

/* Parses a Range field value (`len` bytes of `s`) against a representation of `length` bytes:
 * "bytes=" (the unit in any case) and a comma-separated list of "first-last", "first-" and
 * "-suffix" (RFC 9110 §14.1.1). Writes the satisfiable ranges, in the order given, resolved
 * against `length` (last clamped to length - 1, a suffix made absolute), into `out` (room for
 * `max`) and their number into `*n`. Returns CORRAL_OK (`*n` >= 1);
 * CORRAL_HTTP_RANGE_UNSATISFIABLE (`*n` 0) when the value is valid but no range overlaps
 * (§14.1.2; every range of an empty representation); CORRAL_EINVAL (`*n` 0) when it is
 * malformed, of another unit, or has a range whose last is before its first (such a field is
 * ignored, §14.2); CORRAL_ENOSPC (`*n` 0) when it has more than `max` ranges. Never allocates;
 * O(len). Thread-safe. */
CORRAL_API int corral_http_parse_range(const char *s, size_t len, uint64_t length,
                                       corral_http_range *out, size_t max, size_t *n);

/* Decides how to answer request `req` from stored response `stored`, a complete representation
 * whose body is `length` bytes (RFC 9110 §14.2, If-Range §13.1.5). Call it after
 * corral_http_conditional_status (a 304 or 412 comes first, §13.2.2). Returns CORRAL_OK with
 * `*n` ranges in `out` (room for `max`): `*n` 0 means answer the whole response (no Range, not
 * a GET, stored status not 200, empty body, If-Range not holding (it holds for an entity-tag
 * strongly equal to the stored ETag, or a date equal to a strong Last-Modified, §8.8.2.2), or a
 * Range that is ignored: malformed, another unit, more than `max` ranges, overlapping ranges);
 * 1 means a 206 with Content-Range; more a 206 multipart/byteranges, parts in the order asked.
 * Returns CORRAL_HTTP_RANGE_UNSATISFIABLE for a 416 (with corral_http_write_content_range's
 * unsatisfied form), or
 * CORRAL_EINVAL for bad arguments. O(fields + len + n^2). */
CORRAL_API int corral_http_range_select(const corral_http_msg *req, const corral_http_msg *stored,
                                        uint64_t length, corral_http_range *out, size_t max,
                                        size_t *n);

/* Writes the field line "Content-Range: bytes first-last/length\r\n" for `r`, or, with `r`
 * NULL, the 416's "Content-Range: bytes * /length\r\n" (without the space). Returns CORRAL_OK,
 * CORRAL_EINVAL (a range outside `length`) or CORRAL_ENOSPC (`*len` needed). */
CORRAL_API int corral_http_write_content_range(const corral_http_range *r, uint64_t length,
                                               char *buf, size_t cap, size_t *len);

/* Writes what precedes the bytes of part `r` in a multipart/byteranges body (§14.6): a CRLF
 * unless `first`, the delimiter "--" `boundary`, the stored response's Content-Type (when it has
 * one) and the part's Content-Range, and the blank line; with `r` NULL, the close delimiter
 * (CRLF "--" boundary "--" CRLF) that ends the body. `boundary` is 1 to 70 characters of RFC
 * 2046's bchars without space; the response's own head says
 * "Content-Type: multipart/byteranges; boundary=<boundary>" and has no other Content-Type.
 * Returns CORRAL_OK, CORRAL_EINVAL or CORRAL_ENOSPC (`*len` needed). */
CORRAL_API int corral_http_write_byteranges_part(const corral_http_msg *stored,
                                                 const char *boundary, size_t boundary_len,
                                                 const corral_http_range *r, uint64_t length,
                                                 bool first, char *buf, size_t cap, size_t *len);

/* ---- Invalidation (RFC 9111 §4.4) ---- */

/* After the origin answered unsafe request `req` (any method but GET, HEAD, OPTIONS, TRACE)
 * with a 2xx or 3xx `resp`, returns the primary keys to invalidate (each with all its
 * variants): the target's, then those of Location and Content-Location (resolved against the
 * target, RFC 3986 §5.2) when their host is the target's (same origin; the keys carry no
 * scheme, as the proxy serves one). Keys are written into `buf` and described by `keys` (room
 * for 3, slices of `buf`); `*n` is their number (0 for a safe method or an error status).
 * Returns CORRAL_OK, CORRAL_EINVAL, or CORRAL_ENOSPC (`*n` 0). */
CORRAL_API int corral_http_invalidations(const corral_http_msg *req, const corral_http_msg *resp,
                                         char *buf, size_t cap, corral_buf keys[3], size_t *n);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_HTTP_H */
