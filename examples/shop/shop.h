/*
 * shop.h - corral-shop, the guide's scenarios as a small HTTP/1.1 origin to put behind
 * corral-proxy (scripts/run-shop; examples/shop/README.md says what to try). It stands for "an
 * origin written in any language": it knows nothing of the cache except the headers it sends
 * and the admin purge its save handler calls, as a Django site with the guide's decorators and
 * post_save receivers would.
 *
 * Files, one seam each:
 *   main.c     flags, the loop, signals (SIGTERM / SIGINT stop it cleanly)
 *   server.c   the listener and client connections: reading, parsing (libcorral's strict
 *              HTTP/1.1 parser from corral/http.h), keep-alive, writing, deferred replies
 *   pages.c    the pages: request + state + time in, a reply out; no I/O, no clock
 *   purge.c    the save handler's call to the proxy's admin: POST /purge/key/<key>
 *   buf.c      a growable byte buffer for building replies
 *
 * Data model: one `shop` per process (on main's stack: the binary has no global mutable
 * state) holds the catalogue (prices change on save), the per-page request counters, the
 * loop, the listener and the client connections.
 *
 * Threads: one. Everything runs on the uv loop's thread.
 */
#ifndef CORRAL_SHOP_H
#define CORRAL_SHOP_H

#include "corral/corral.h"
#include "corral/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef NDEBUG
#define SHOP_CHECK_OBJ(p, m) ((void)0)
#else
#include <assert.h>
#define SHOP_CHECK_OBJ(p, m) assert((p) != NULL && (p)->magic == (m))
#endif

#define SHOP_MAGIC       0x5e0b0001u
#define SHOP_CONN_MAGIC  0x5e0bc011u
#define SHOP_PURGE_MAGIC 0x5e0b9e11u

#define SHOP_N_PRODUCTS    12
#define SHOP_SLOW_MS       200   /* what /reports/bestsellers takes to "compute" */
#define SHOP_PURGE_MS      2000  /* deadline of one admin purge, connect to answer */
#define SHOP_IDLE_MS       60000 /* an idle keep-alive connection is closed after this */
#define SHOP_PURGE_KEY_MAX 32

/* ---- Buffers (buf.c) ---- */

/* A growable byte buffer. An allocation or formatting failure sets `failed` and makes every
 * later append a no-op, so builders check once at the end. Zero-initialised is empty. */
typedef struct shop_buf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} shop_buf;

void shop_buf_put(shop_buf *b, const void *p, size_t n);
void shop_buf_puts(shop_buf *b, const char *s);
void shop_buf_printf(shop_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the bytes and empties `b`. Accepts an empty buffer. */
void shop_buf_free(shop_buf *b);

/* ---- Intrusive lists ---- */

typedef struct shop_link {
    struct shop_link *prev, *next;
} shop_link;

void shop_list_init(shop_link *head);
void shop_list_push(shop_link *head, shop_link *l);
void shop_list_remove(shop_link *l);

#define SHOP_CONTAINER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- The shop ---- */

typedef struct shop_product {
    unsigned id; /* 1..SHOP_N_PRODUCTS, its URL /products/<id> */
    const char *title;
    unsigned price_cents; /* raised by 50 on every save */
    unsigned version;     /* 1, then +1 on every save: the ETag */
    int64_t updated_at_s; /* Unix seconds of the last save (or of startup) */
} shop_product;

/* Every page the origin counts requests for. Products and their saves take one slot each. */
enum {
    SHOP_PAGE_INDEX,
    SHOP_PAGE_PRICING,
    SHOP_PAGE_ORDERS,
    SHOP_PAGE_BESTSELLERS,
    SHOP_PAGE_HEALTHZ,
    SHOP_PAGE_LOGIN,
    SHOP_PAGE_OTHER, /* 404s and 405s */
    SHOP_PAGE_PRODUCT1,
    SHOP_PAGE_SAVE1 = SHOP_PAGE_PRODUCT1 + SHOP_N_PRODUCTS,
    SHOP_N_PAGES = SHOP_PAGE_SAVE1 + SHOP_N_PRODUCTS
};

typedef struct shop {
    uint32_t magic;
    uv_loop_t *loop;
    shop_product products[SHOP_N_PRODUCTS];
    uint64_t asked[SHOP_N_PAGES]; /* requests the origin answered, per page */
    uint64_t asked_total;
    /* The proxy's admin listener, for the save handler's purge; has_admin false: saves purge
     * nothing (the shop runs without a proxy). */
    bool has_admin;
    struct sockaddr_storage admin_addr;
    char admin_authority[80]; /* "127.0.0.1:8081", the Host of admin requests */
    const char *admin_token;  /* NULL: none; else sent as "Authorization: Bearer <token>" */
    uv_tcp_t listener;
    bool listening;
    bool stopping;   /* SIGTERM/SIGINT: no new connections, every reply closes its connection */
    shop_link conns; /* shop_conn.link */
} shop;

/* Fills the catalogue and zeroes the counters; `now_s` is the products' first updated_at. */
void shop_init(shop *s, uv_loop_t *loop, int64_t now_s);

/* ---- Replies (pages.c) ---- */

typedef enum shop_pending {
    SHOP_NOW,         /* send at once */
    SHOP_AFTER_DELAY, /* send after delay_ms (the slow report) */
    SHOP_AFTER_PURGE  /* purge purge_key at the admin, then shop_page_saved() renders it */
} shop_pending;

/* What a page answers. The server adds the status line, Date, Server, Content-Length and
 * Connection; `fields` holds every other header line, each ending in CRLF. */
typedef struct shop_reply {
    unsigned status;
    shop_buf fields;
    shop_buf body;
    bool head_only; /* a HEAD request: the body's length is sent, the body is not */
    shop_pending pending;
    unsigned delay_ms;
    char purge_key[SHOP_PURGE_KEY_MAX]; /* SHOP_AFTER_PURGE: the surrogate key */
    unsigned product_id;                /* SHOP_AFTER_PURGE: the product saved */
    uint64_t asked;                     /* the page's request count, this one included */
} shop_reply;

/* Zeroes `r`. */
void shop_reply_init(shop_reply *r);
/* Frees the buffers of `r`. Accepts a reply that was only initialised. */
void shop_reply_deinit(shop_reply *r);

/* Answers request `m` (a complete request; its body, if any, is ignored) at wall-clock time
 * `now_ms` (Unix milliseconds) into `r` (initialised by the caller), counting it and applying
 * its effect (a save raises the product's price). A reply whose buffers failed to grow is
 * turned into a 500. Never fails otherwise. */
void shop_handle(shop *s, const corral_http_msg *m, int64_t now_ms, shop_reply *r);

/* Renders the answer of a save whose purge ended: `purge_status` is the admin's HTTP status,
 * or a negative uv error code (`detail` then names it), or 0 when the shop has no admin. */
void shop_page_saved(shop *s, shop_reply *r, int purge_status, const char *detail, int64_t now_ms);

/* Renders a plain error reply (parse errors, out of memory) with `status` into `r`. */
void shop_page_error(shop_reply *r, unsigned status);

/* The reason phrase of `status` (a static string). */
const char *shop_reason(unsigned status);

/* Writes `t_s` (Unix seconds) as an HTTP-date (RFC 9110 §5.6.7) into `out` (30 bytes). */
void shop_http_date(int64_t t_s, char out[30]);

/* ---- The server (server.c) ---- */

/* Binds and listens on `addr`; returns 0 or a negative uv error code. */
int shop_listen(shop *s, const struct sockaddr *addr);
/* Stops accepting, closes idle connections now and busy ones after their reply. */
void shop_stop(shop *s);

/* ---- The admin purge (purge.c) ---- */

typedef struct shop_purge shop_purge;

/* Called once when a purge ends: `status` is the admin's HTTP status (200: purged) or a
 * negative uv error code, `detail` a short static or borrowed description. */
typedef void (*shop_purge_cb)(void *arg, int status, const char *detail);

/* Sends "POST /purge/key/<key>" to the shop's admin address (with its token) and calls `cb`
 * when the answer is complete, the connection fails, or SHOP_PURGE_MS pass. Returns 0 and
 * sets `*out` (valid until the callback, or until shop_purge_cancel); or a negative uv error
 * code with `*out` NULL, and then `cb` is never called. `key` must be at most
 * SHOP_PURGE_KEY_MAX - 1 bytes of [A-Za-z0-9_-]. */
int shop_purge_start(shop *s, const char *key, shop_purge_cb cb, void *arg, shop_purge **out);

/* Detaches the purge from its caller: the callback is not called; the request itself ends on
 * its own (answer, failure or deadline). */
void shop_purge_cancel(shop_purge *p);

#endif /* CORRAL_SHOP_H */
