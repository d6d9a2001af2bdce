/*
 * origin.c - the origin connection pool of one worker: connections to the origin, each idle in
 * the pool or owned by one fetch; connecting with a deadline; writing requests; parsing
 * responses with the engine's strict parser (as answers to the request's method) and handing
 * head, body pieces and end to the fetch; read deadlines (first byte, then between bytes);
 * keep-alive reuse.
 *
 * Data model: px_oconn holds a uv_tcp_t, one timer (connect, read or idle deadline, per
 * `tkind`), a response parser block and a read buffer. An idle connection sits on w->idle
 * with a read started, so an origin that closes it (or sends stray bytes) is noticed and the
 * connection dropped; it is closed after origin_idle_timeout. A connection goes back to the
 * pool only when its response was complete, kept alive, followed by no stray bytes, and its
 * request was written whole. At most origin_max_idle connections wait per worker.
 *
 * Contract with fetch.c: the fetch owns `oc` from px_fetch_on_connected until it calls
 * px_origin_release, or until origin.c reports px_fetch_on_error (the connection is then
 * already gone). Callbacks may release the connection; after each one this file checks that
 * it still belongs to the same fetch before going on. A connection is freed in its close
 * callback, so the pointer stays valid until the loop iterates.
 *
 * Threads: the owning worker's loop thread only.
 */
#include "proxy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ORBUF_SIZE 65536

typedef enum otimer { OT_NONE = 0, OT_CONNECT, OT_READ, OT_IDLE } otimer;

struct px_oconn {
    uint32_t magic;
    px_worker *w;
    px_link link; /* on w->idle while idle */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    int open_handles;
    otimer tkind;
    bool tdeferred; /* this arm of the timer waited a poll once (px_worker_defer) */
    int64_t read_timeout_ms;
    corral_http_parser *parser;
    void *pmem;
    char *rbuf;
    struct px_fetch *fetch; /* the owner, or NULL while idle */
    size_t queued;          /* bytes in write requests not yet completed */
    unsigned writes;        /* write requests not yet completed */
    bool connected;
    bool reused;    /* served an exchange before this one */
    bool got_bytes; /* bytes of the current response arrived */
    bool expecting; /* a response is being read */
    bool reusable;  /* the last response ended cleanly and kept the connection */
    bool idle;
    bool closing;
    bool paused;
    bool reading;
};

typedef struct owrite {
    uv_write_t req;
    struct px_oconn *oc;
    size_t len;
    char data[];
} owrite;

static void oconn_close(struct px_oconn *oc);
static void on_oalloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_oread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Starts or stops reading; returns 0 or a uv error. */
static int oreading(struct px_oconn *oc, bool on) {
    if (oc->reading == on) return 0;
    int rc = on ? uv_read_start((uv_stream_t *)&oc->tcp, on_oalloc, on_oread)
                : uv_read_stop((uv_stream_t *)&oc->tcp);
    if (rc == 0) oc->reading = on;
    return rc;
}

/* ---- Closing ---- */

static void on_oconn_closed(uv_handle_t *h) {
    struct px_oconn *oc = h->data;
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    if (--oc->open_handles > 0) return;
    px_worker *w = oc->w;
    corral_http_parser_deinit(oc->parser);
    free(oc->pmem);
    free(oc->rbuf);
    oc->magic = 0;
    free(oc);
    atomic_fetch_sub_explicit(&w->metrics->origin_connections, 1, memory_order_relaxed);
}

static void oconn_close(struct px_oconn *oc) {
    if (oc->closing) return;
    oc->closing = true;
    if (oc->idle) {
        px_list_remove(&oc->link);
        oc->w->n_idle--;
        oc->idle = false;
    }
    oc->fetch = NULL;
    uv_close((uv_handle_t *)&oc->tcp, on_oconn_closed);
    uv_close((uv_handle_t *)&oc->timer, on_oconn_closed);
}

/* The exchange failed (`err`, a uv error): close and tell the fetch (if it still owns the
 * connection). */
static void oconn_fail(struct px_oconn *oc, int err, bool timeout) {
    struct px_fetch *f = oc->fetch;
    bool retryable = oc->reused && !oc->got_bytes && !timeout;
    oconn_close(oc);
    if (f) px_fetch_on_error(f, px_from_uv(err), timeout, retryable);
}

/* ---- Timers ---- */

static void on_otimer(uv_timer_t *t) {
    struct px_oconn *oc = t->data;
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    /* The loop, not the origin, may have been slow. */
    if (oc->tkind != OT_IDLE && px_worker_defer(oc->w, t, on_otimer, &oc->tdeferred)) return;
    otimer k = oc->tkind;
    oc->tkind = OT_NONE;
    if (k == OT_IDLE)
        oconn_close(oc);
    else if (k == OT_CONNECT || k == OT_READ)
        oconn_fail(oc, UV_ETIMEDOUT, true);
}

static void otimer_set(struct px_oconn *oc, otimer k, int64_t ms) {
    oc->tkind = OT_NONE;
    oc->tdeferred = false;
    if (k == OT_NONE || ms <= 0) {
        int rc = uv_timer_stop(&oc->timer);
        (void)rc; /* cannot fail on an open handle */
        return;
    }
    if (px_worker_deadline(oc->w, &oc->timer, on_otimer, (uint64_t)ms) == 0) oc->tkind = k;
}

/* ---- Reading ---- */

static void on_oalloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    struct px_oconn *oc = h->data;
    buf->base = oc->rbuf;
    buf->len = ORBUF_SIZE;
}

/* Feeds `len` bytes of response to the parser and the fetch. */
static void feed(struct px_oconn *oc, const char *data, size_t len) {
    struct px_fetch *f = oc->fetch;
    size_t off = 0;
    for (;;) {
        size_t n = 0;
        corral_buf body;
        int rc = corral_http_parser_execute(oc->parser, data + off, len - off, &n, &body);
        off += n;
        if (rc < 0) {
            oconn_fail(oc, UV_EPROTO, false);
            return;
        }
        if (rc == CORRAL_OK) return;
        if (rc == CORRAL_HTTP_GOT_HEAD) {
            const corral_http_msg *m = corral_http_parser_msg(oc->parser);
            if (m->status < 200) {
                if (m->status == 101) { /* we never ask to upgrade */
                    oconn_fail(oc, UV_EPROTO, false);
                    return;
                }
                /* 100 Continue, 102 Processing, 103 Early Hints: interim, never final. */
                px_fetch_on_interim(f, m);
                if (oc->fetch != f) return;
                continue;
            }
            if (px_fetch_on_head(f, m) < 0 || oc->fetch != f) return;
        } else if (rc == CORRAL_HTTP_GOT_BODY) {
            if (px_fetch_on_body(f, body.data, body.len) < 0 || oc->fetch != f) return;
        } else if (rc == CORRAL_HTTP_GOT_END) {
            const corral_http_msg *m = corral_http_parser_msg(oc->parser);
            if (m && m->status < 200) continue; /* an interim response: the final one follows */
            oc->expecting = false;
            oc->reusable = m && m->keep_alive && off == len && oc->writes == 0;
            otimer_set(oc, OT_NONE, 0);
            px_fetch_on_end(f);
            return;
        }
    }
}

/* Acknowledges what arrived at once rather than with the kernel's delayed ACK (40 ms and more on
 * Linux), while a response is still due: an origin that writes its head and its body in two
 * sends without TCP_NODELAY (Python's http.server, the test origin) holds the body back until
 * the head is acknowledged, and on a kept-alive connection the kernel delays that ACK (it
 * expects to piggyback it on our next request). Linux only; the kernel turns quick ACKs off
 * again by itself, hence once per read. */
static void quickack(struct px_oconn *oc) {
#ifdef TCP_QUICKACK
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&oc->tcp, &fd) == 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one); /* latency only */
#else
    (void)oc;
#endif
}

static void on_oread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    struct px_oconn *oc = s->data;
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    if (nread == 0 || oc->closing) return;
    if (!oc->fetch || !oc->expecting) {
        /* Idle: the origin closed the connection, or sent bytes nobody asked for. */
        oconn_close(oc);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            int rc = corral_http_parser_finish(oc->parser);
            if (rc == CORRAL_HTTP_GOT_END) {
                /* A body delimited by the connection's end. */
                struct px_fetch *f = oc->fetch;
                oc->expecting = false;
                oc->reusable = false;
                otimer_set(oc, OT_NONE, 0);
                px_fetch_on_end(f);
                return;
            }
        }
        oconn_fail(oc, (int)nread, false);
        return;
    }
    oc->got_bytes = true;
    otimer_set(oc, OT_READ, oc->read_timeout_ms);
    feed(oc, buf->base, (size_t)nread);
    if (!oc->closing && oc->expecting) quickack(oc);
}

void px_origin_expect(struct px_oconn *oc, corral_http_method method, int64_t read_timeout_ms) {
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    corral_http_parser_set_request_method(oc->parser, method);
    oc->expecting = true;
    oc->got_bytes = false;
    oc->read_timeout_ms = read_timeout_ms;
    otimer_set(oc, OT_READ, read_timeout_ms);
    if (!oc->paused && oreading(oc, true) < 0) oconn_fail(oc, UV_EPIPE, false);
}

void px_origin_pause(struct px_oconn *oc) {
    if (oc->paused || oc->closing) return;
    oc->paused = true;
    if (oreading(oc, false) < 0) oconn_fail(oc, UV_EPIPE, false);
    otimer_set(oc, OT_NONE, 0); /* the client, not the origin, is slow: its send timer runs */
}

void px_origin_resume(struct px_oconn *oc) {
    if (!oc->paused || oc->closing) return;
    oc->paused = false;
    otimer_set(oc, OT_READ, oc->read_timeout_ms);
    if (oreading(oc, true) < 0) oconn_fail(oc, UV_EPIPE, false);
}

/* ---- Writing ---- */

static void on_owrite(uv_write_t *r, int status) {
    owrite *ow = PX_CONTAINER(r, owrite, req);
    struct px_oconn *oc = ow->oc;
    oc->queued -= ow->len;
    oc->writes--;
    free(ow);
    if (status < 0) {
        if (status != UV_ECANCELED && !oc->closing) oconn_fail(oc, status, false);
        return;
    }
    if (oc->queued == 0 && oc->fetch) px_fetch_on_drain(oc->fetch);
}

/* Sends what it can now and queues the rest; returns 0 or a uv error. */
static int osend(struct px_oconn *oc, const char *data, size_t len) {
    if (oc->closing) return UV_EPIPE;
    if (len == 0) return 0;
    size_t done = 0;
    if (oc->writes == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int rc = uv_try_write((uv_stream_t *)&oc->tcp, &b, 1);
        if (rc >= 0)
            done = (size_t)rc;
        else if (rc != UV_EAGAIN)
            return rc;
    }
    if (done == len) return 0;
    size_t rest = len - done;
    owrite *ow = malloc(sizeof *ow + rest);
    if (!ow) return UV_ENOMEM;
    ow->oc = oc;
    ow->len = rest;
    memcpy(ow->data, data + done, rest);
    uv_buf_t b = uv_buf_init(ow->data, (unsigned)rest);
    int rc = uv_write(&ow->req, (uv_stream_t *)&oc->tcp, &b, 1, on_owrite);
    if (rc < 0) {
        free(ow);
        return rc;
    }
    oc->queued += rest;
    oc->writes++;
    return 0;
}

int px_origin_send(struct px_oconn *oc, const char *data, size_t len) {
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    return px_from_uv(osend(oc, data, len));
}

size_t px_origin_queued(const struct px_oconn *oc) {
    return oc->queued;
}

bool px_origin_reused(const struct px_oconn *oc) {
    return oc->reused;
}

/* ---- The pool ---- */

void px_origin_release(struct px_oconn *oc, bool reusable) {
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    px_worker *w = oc->w;
    oc->fetch = NULL;
    if (oc->closing) return;
    const px_config *cfg = w->cfg;
    if (!reusable || !oc->reusable || oc->expecting || oc->paused || w->stopping ||
        w->n_idle >= cfg->origin_max_idle) {
        oconn_close(oc);
        return;
    }
    oc->reused = true;
    oc->reusable = false;
    oc->idle = true;
    px_list_push(&w->idle, &oc->link);
    w->n_idle++;
    otimer_set(oc, OT_IDLE, cfg->origin_idle_ms);
    /* Reading stays on, so a close by the origin is noticed while idle. */
    if (oreading(oc, true) < 0) oconn_close(oc);
}

static void on_connect(uv_connect_t *req, int status) {
    struct px_oconn *oc = req->data;
    PX_CHECK_OBJ(oc, PX_OCONN_MAGIC);
    if (status == UV_ECANCELED || oc->closing) return;
    if (status < 0) {
        oconn_fail(oc, status, false);
        return;
    }
    oc->connected = true;
    otimer_set(oc, OT_NONE, 0);
    if (uv_tcp_nodelay(&oc->tcp, 1) < 0) {
        /* Only latency suffers. */
    }
    struct px_fetch *f = oc->fetch;
    if (f)
        px_fetch_on_connected(f, oc);
    else
        px_origin_release(oc, false);
}

bool px_origin_connected(const struct px_oconn *oc) {
    return oc->connected;
}

int px_origin_acquire(px_worker *w, struct px_fetch *f, bool fresh_only, struct px_oconn **out) {
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    *out = NULL;
    while (!fresh_only && !px_list_empty(&w->idle)) {
        struct px_oconn *oc = PX_CONTAINER(w->idle.next, struct px_oconn, link);
        px_list_remove(&oc->link);
        w->n_idle--;
        oc->idle = false;
        if (oc->closing) continue;
        otimer_set(oc, OT_NONE, 0);
        oc->fetch = f;
        *out = oc;
        return 0;
    }
    struct px_oconn *oc = calloc(1, sizeof *oc);
    if (!oc) return PX_ENOMEM;
    oc->magic = PX_OCONN_MAGIC;
    oc->w = w;
    px_list_init(&oc->link);
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = PX_ORIGIN_MAX_HEAD;
    lim.max_headers = PX_ORIGIN_MAX_HEADERS;
    size_t mem = corral_http_parser_mem_size(&lim);
    oc->pmem = malloc(mem);
    oc->rbuf = malloc(ORBUF_SIZE);
    int rc = UV_ENOMEM;
    if (!oc->pmem || !oc->rbuf ||
        corral_http_parser_init(&oc->parser, oc->pmem, mem, CORRAL_HTTP_RESPONSE, &lim) < 0)
        goto fail;
    if ((rc = uv_tcp_init(&w->loop, &oc->tcp)) < 0) goto fail;
    oc->tcp.data = oc;
    oc->open_handles = 1;
    atomic_fetch_add_explicit(&w->metrics->origin_connections, 1, memory_order_relaxed);
    if ((rc = uv_timer_init(&w->loop, &oc->timer)) < 0) {
        oc->closing = true;
        uv_close((uv_handle_t *)&oc->tcp, on_oconn_closed);
        return px_from_uv(rc);
    }
    oc->timer.data = oc;
    oc->open_handles = 2;
    oc->connect_req.data = oc;
    rc = uv_tcp_connect(&oc->connect_req, &oc->tcp, (const struct sockaddr *)&w->origin_addr,
                        on_connect);
    if (rc < 0) {
        oconn_close(oc);
        return px_from_uv(rc);
    }
    oc->fetch = f;
    otimer_set(oc, OT_CONNECT, w->cfg->connect_timeout_ms);
    *out = oc;
    return 0;
fail:
    corral_http_parser_deinit(oc->parser);
    free(oc->pmem);
    free(oc->rbuf);
    free(oc);
    return px_from_uv(rc);
}

void px_origin_close_idle(px_worker *w) {
    while (!px_list_empty(&w->idle))
        oconn_close(PX_CONTAINER(w->idle.next, struct px_oconn, link));
}
