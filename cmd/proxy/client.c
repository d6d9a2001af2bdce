/*
 * client.c - the client side of corral-proxy: the client connections each worker's listener
 * (listen.c) accepts: reading and parsing requests with the engine's strict parser, writing
 * responses (Content-Length, chunked, or until close for HTTP/1.0), keep-alive, pipelining
 * (one request at a time; the next waits in the read buffer), timeouts and lingering close.
 *
 * Data model: a px_conn holds, while it reads or handles a request (cbuf.c: none while idle),
 * a parser block, a read buffer (unparsed input is rbuf[rpos, rlen)), a scratch buffer for the
 * request's keys and filtered cookies, two field arrays (the filtered request's and the stored
 * object's); always one timer whose meaning depends on the state (timer_kind below), and the
 * current px_request. A fetch streaming to the connection is linked both ways (c->fetch,
 * f->sink) and either side unlinks both when it goes away.
 *
 * Life of a connection: accept -> [idle timer] -> bytes -> [head timer] -> head parsed ->
 * the request handler -> response written with px_conn_send/body/end -> next request or close.
 * With worker.c this is the loop layer: what it calls above it (the request state machine,
 * delivery, the fetch a connection feeds) goes through its worker's handlers (px_worker.on,
 * set by main.c), so the files above call down into it and it names none of them.
 * A malformed request head gets the engine's status (400, 431, 501, 505) and the connection is
 * closed: the framing of whatever follows is unknown. Closing is graceful (queued writes are
 * flushed, then shutdown(SHUT_WR), then input is discarded until EOF or LINGER_MS, so the
 * client reads the whole answer instead of a reset) unless the peer broke the connection.
 * Writes try uv_try_write first and queue only what the socket did not take. A connection
 * waiting on a flight is freed only once its wake-up arrived (px_conn_release_closed).
 *
 * Threads: everything here runs on the owning worker's loop thread. The only fields another
 * thread writes are the wake_* and inbox fields, through px_worker_wake / px_worker_notify
 * under the inbox lock (and wake_busy in the flight callback, before the wake). A connection in
 * its worker's inbox is freed only once the inbox has handed it over.
 */
#include "proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#define LINGER_MS       2000
#define CONGESTED_BYTES (1u << 20) /* a client write queue this long pauses the origin read */
#define MAX_WRITE_BUFS  4

typedef enum timer_kind {
    T_NONE = 0,
    T_IDLE,   /* keep-alive: no request started */
    T_HEAD,   /* a request head is arriving */
    T_BODY,   /* a request body is arriving */
    T_SEND,   /* the client does not read what we write */
    T_WAIT,   /* waiting on another request's fetch (coalescing) */
    T_STREAM, /* streaming a busy object that has had nothing new for us */
    T_LINGER  /* closing: discarding input until EOF */
} timer_kind;

/* A queued write and the bytes it keeps alive. */
typedef struct wreq {
    uv_write_t req;
    px_conn *c;
    corral_value *hold; /* a body referenced instead of copied, or NULL */
    char data[];        /* the copied bytes */
} wreq;

static void conn_close(px_conn *c, bool graceful);
static void conn_process(px_conn *c);

/* ---- Freeing ---- */

static void conn_free(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    px_worker *w = c->w;
    c->w->on->request_release(c);
    px_list_remove(&c->link);
    atomic_fetch_sub_explicit(&w->metrics->connections, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->px->clients, 1, memory_order_relaxed);
    px_cbuf_release(c);
    c->magic = 0;
    free(c);
    px_worker_maybe_done(w);
}

static void on_conn_handle_closed(uv_handle_t *h) {
    px_conn *c = h->data;
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (--c->open_handles > 0) return;
    /* Leaving the busy object's readers first means no notification can queue the connection
     * after the check below. */
    c->w->on->stream_stop(c);
    /* A wake-up still comes (or is queued): px_conn_release_closed frees it then. */
    if (c->waiting || px_worker_queued(c->w, c)) return;
    conn_free(c);
}

void px_conn_release_closed(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (!c->closing || c->open_handles > 0) return;
    c->w->on->stream_stop(c); /* as in on_conn_handle_closed */
    if (!c->waiting && !px_worker_queued(c->w, c)) conn_free(c);
}

static void close_handles(px_conn *c) {
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* ---- Timers ---- */

static void on_conn_timer(uv_timer_t *t);

static void conn_timer(px_conn *c, timer_kind k, int64_t ms) {
    c->timer_kind = T_NONE;
    c->timer_deferred = false;
    if (uv_is_closing((uv_handle_t *)&c->timer)) return;
    if (k == T_NONE || ms <= 0) {
        int rc = uv_timer_stop(&c->timer);
        (void)rc; /* uv_timer_stop cannot fail on an open handle */
        return;
    }
    int rc = px_worker_deadline(c->w, &c->timer, on_conn_timer, (uint64_t)ms);
    if (rc == 0) c->timer_kind = k;
}

void px_conn_wait(px_conn *c, int64_t ms) {
    conn_timer(c, T_WAIT, ms);
}

void px_conn_stream_wait(px_conn *c, bool waiting) {
    if (!waiting) {
        if (c->timer_kind == T_STREAM) conn_timer(c, T_NONE, 0);
        return;
    }
    /* While writes are queued the send timer runs; on_write arms this one when they drain. */
    if (c->timer_kind == T_NONE || c->timer_kind == T_STREAM)
        conn_timer(c, T_STREAM, c->req.cfg->read_timeout_ms);
}

/* Starts the per-request state. `m` is NULL for a request that never parsed. */
static void begin_request(px_conn *c, const corral_http_msg *m) {
    px_worker *w = c->w;
    memset(&c->req, 0, sizeof c->req);
    c->req.raw = m;
    c->req.cfg = px_config_ref(w->cfg);
    c->req.route = &c->req.cfg->routes[0];
    c->req.start_ns = uv_hrtime();
    c->req.now_ms = px_now_ms();
    c->req.keep_alive = m ? m->keep_alive && !w->stopping : false;
    c->req.is_head = m && m->method == CORRAL_HTTP_HEAD;
    c->req.body_done = true;
    c->busy = true;
    c->got_bytes = false;
    conn_timer(c, T_NONE, 0);
}

static void on_conn_timer(uv_timer_t *t) {
    px_conn *c = t->data;
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (c->timer_kind != T_LINGER && px_worker_defer(c->w, t, on_conn_timer, &c->timer_deferred))
        return;
    timer_kind k = (timer_kind)c->timer_kind;
    c->timer_kind = T_NONE;
    switch (k) {
    case T_HEAD:
        if (!c->busy && !c->closing) {
            begin_request(c, NULL);
            px_conn_simple(c, 408, "Request Timeout", "request head timeout\n", PX_R_ERROR,
                           "header timeout");
            return;
        }
        conn_close(c, false);
        return;
    case T_IDLE:
    case T_BODY:
    case T_SEND: conn_close(c, false); return;
    case T_WAIT: c->w->on->wait_expired(c); return;
    case T_STREAM:
        /* The busy object made no progress for origin_read_timeout: whatever holds its fetch
         * up, this reader is cut short rather than kept forever. */
        conn_close(c, false);
        return;
    case T_LINGER: close_handles(c); return;
    case T_NONE: return;
    }
}

/* ---- Reading ---- */

/* Gives the buffers back while the connection waits for a request with nothing of it read. */
static void release_if_idle(px_conn *c) {
    if (!c->busy && !c->closing && !c->got_bytes && !c->in_process && c->rpos == c->rlen)
        px_cbuf_release(c);
}

static void update_reading(px_conn *c);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    px_conn *c = h->data;
    if (!c->bufs && px_cbuf_acquire(c) < 0) {
        *buf = uv_buf_init(NULL, 0); /* on_read gets UV_ENOBUFS and closes */
        return;
    }
    if (c->lingering) c->rpos = c->rlen = 0; /* discarded input */
    if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
    if (c->rlen == c->rcap && c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    buf->base = c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    px_conn *c = s->data;
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (nread == 0) {
        release_if_idle(c); /* nothing came after all */
        return;
    }
    if (nread < 0) {
        if (c->lingering) {
            close_handles(c);
            return;
        }
        if (nread != UV_EOF || !c->busy || !c->req.body_done) {
            /* A broken connection, EOF between requests, or a request body cut short. */
            conn_close(c, false);
            return;
        }
        /* The client shut its side after a complete request: answer, then close. */
        c->peer_eof = true;
        c->req.keep_alive = false;
        update_reading(c);
        return;
    }
    if (c->lingering) {
        c->rpos = c->rlen = 0;
        return;
    }
    c->rlen += (size_t)nread;
    if (!c->busy && !c->got_bytes) {
        c->got_bytes = true;
        conn_timer(c, T_HEAD, c->w->cfg->header_timeout_ms);
    } else if (c->busy && c->timer_kind == T_BODY) {
        conn_timer(c, T_BODY, c->req.cfg->body_timeout_ms);
    }
    conn_process(c);
}

static void update_reading(px_conn *c) {
    bool want;
    if (c->closing)
        want = c->lingering;
    else if (c->peer_eof)
        want = false;
    else if (c->busy)
        want = !c->req.body_done && !c->body_paused;
    else
        want = true;
    if (want && c->bufs && c->rpos == 0 && c->rlen == c->rcap) want = false;
    if (want == c->reading) return;
    int rc = want ? uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)
                  : uv_read_stop((uv_stream_t *)&c->tcp);
    if (rc < 0) {
        conn_close(c, false);
        return;
    }
    c->reading = want;
}

static void start_request(px_conn *c) {
    const corral_http_msg *m = corral_http_parser_msg(c->parser);
    begin_request(c, m);
    /* `Content-Length: 0` is no body: the request may be cached, and its end is taken now. */
    if (m->framing == CORRAL_HTTP_FRAMING_NONE ||
        (m->framing == CORRAL_HTTP_FRAMING_LENGTH && m->content_length == 0)) {
        /* Take the message's end now, so the message stays valid (until the next call). */
        size_t n = 0;
        corral_buf b;
        int rc = corral_http_parser_execute(c->parser, c->rbuf + c->rpos, 0, &n, &b);
        if (PX_NEVER(rc != CORRAL_HTTP_GOT_END)) {
            conn_close(c, false);
            return;
        }
    } else {
        c->req.has_body = true;
        c->req.body_done = false;
        conn_timer(c, T_BODY, c->req.cfg->body_timeout_ms);
    }
    c->w->on->request(c);
}

static void body_end(px_conn *c) {
    c->req.body_done = true;
    if (c->timer_kind == T_BODY) conn_timer(c, T_NONE, 0);
    if (c->fetch) c->w->on->fetch_body_end(c->fetch);
}

static void parse_error(px_conn *c, int rc) {
    if (c->busy) {
        /* A malformed request body: the origin got part of it. */
        if (c->fetch) c->w->on->fetch_detach(c->fetch);
        if (c->req.responded) {
            conn_close(c, false);
            return;
        }
        c->req.keep_alive = false;
        px_conn_simple(c, 400, "Bad Request", "malformed request body\n", PX_R_ERROR,
                       corral_http_strerror(rc));
        return;
    }
    begin_request(c, NULL);
    unsigned status = corral_http_error_status(rc);
    const char *reason = status == 431   ? "Request Header Fields Too Large"
                         : status == 501 ? "Not Implemented"
                         : status == 505 ? "HTTP Version Not Supported"
                                         : "Bad Request";
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", corral_http_strerror(rc));
    px_conn_simple(c, status, reason, n > 0 ? body : "", PX_R_ERROR, corral_http_strerror(rc));
}

static void conn_process(px_conn *c) {
    if (c->in_process) return;
    c->in_process = true;
    while (!c->closing) {
        bool body_phase = c->busy && !c->req.body_done;
        if (c->busy && !body_phase) break;
        if (body_phase && c->body_paused) break;
        size_t avail = c->rlen - c->rpos;
        /* A body's end follows its last byte without more input: ask for it even then. */
        if (avail == 0 && !body_phase) break;
        size_t n = 0;
        corral_buf body;
        int rc = corral_http_parser_execute(c->parser, c->rbuf + c->rpos, avail, &n, &body);
        c->rpos += n;
        if (rc < 0) {
            parse_error(c, rc);
            break;
        }
        if (rc == CORRAL_OK) break;
        if (rc == CORRAL_HTTP_GOT_HEAD)
            start_request(c);
        else if (rc == CORRAL_HTTP_GOT_BODY && c->fetch)
            c->w->on->fetch_body(c->fetch, body.data, body.len);
        else if (rc == CORRAL_HTTP_GOT_END)
            body_end(c);
    }
    if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
    c->in_process = false;
    if (!c->closing) update_reading(c);
    release_if_idle(c); /* a request answered at once (a hit) ended inside the loop */
}

void px_conn_resume_body(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (!c->body_paused) return;
    c->body_paused = false;
    conn_process(c);
}

/* ---- Writing ---- */

static void start_shutdown(px_conn *c);

/* Between requests: the head timer when bytes of the next request are buffered, else the
 * keep-alive timer. */
static void arm_idle(px_conn *c) {
    if (c->rlen > c->rpos) {
        c->got_bytes = true;
        conn_timer(c, T_HEAD, c->w->cfg->header_timeout_ms);
    } else {
        conn_timer(c, T_IDLE, c->w->cfg->keepalive_timeout_ms);
    }
}

static void on_write(uv_write_t *r, int status) {
    wreq *wr = PX_CONTAINER(r, wreq, req);
    px_conn *c = wr->c;
    corral_value_unref(wr->hold);
    free(wr);
    c->queued_writes--;
    if (status < 0) {
        if (status != UV_ECANCELED) conn_close(c, false);
        return;
    }
    if (c->closing) {
        if (c->lingering && c->queued_writes == 0) start_shutdown(c);
        return;
    }
    size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (c->timer_kind == T_SEND) {
        if (q)
            conn_timer(c, T_SEND, c->w->cfg->send_timeout_ms);
        else if (!c->busy)
            arm_idle(c); /* the last response drained: the keep-alive wait starts now */
        else if (c->stream)
            conn_timer(c, T_STREAM, c->req.cfg->read_timeout_ms);
        else
            conn_timer(c, T_NONE, 0);
    }
    if (c->fetch && q < CONGESTED_BYTES) c->w->on->fetch_unpause(c->fetch);
    if (c->stream && c->stream_blocked && q < CONGESTED_BYTES) c->w->on->stream(c);
}

/* Writes `bufs` in order. Buffer `hold_idx` (or none, -1) points into `hold`, which is
 * referenced instead of copied when the socket does not take everything at once; every other
 * buffer is copied. */
static void count_request(px_conn *c);

static void conn_writev(px_conn *c, const uv_buf_t *bufs, unsigned n, corral_value *hold,
                        int hold_idx) {
    if (c->closing) return;
    /* The request is counted before its response's first byte leaves, so a client that has
     * read its answer finds it in /metrics. */
    if (c->busy && c->req.responded && !c->req.counted) count_request(c);
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (total == 0) return;
    size_t done = 0;
    if (c->queued_writes == 0) {
        int rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (rc >= 0) {
            done = (size_t)rc;
        } else if (rc != UV_EAGAIN) {
            conn_close(c, false);
            return;
        }
    }
    if (done == total) return;
    uv_buf_t out[MAX_WRITE_BUFS];
    unsigned nout = 0;
    size_t copy = 0, skip = done;
    for (unsigned i = 0; i < n; i++) {
        size_t take = bufs[i].len > skip ? bufs[i].len - skip : 0;
        skip = skip > bufs[i].len ? skip - bufs[i].len : 0;
        if (take && (int)i != hold_idx) copy += take;
    }
    wreq *wr = malloc(sizeof *wr + copy);
    if (!wr) {
        conn_close(c, false);
        return;
    }
    wr->c = c;
    wr->hold = NULL;
    size_t off = 0;
    skip = done;
    for (unsigned i = 0; i < n && nout < MAX_WRITE_BUFS; i++) {
        size_t take = bufs[i].len > skip ? bufs[i].len - skip : 0;
        const char *from = bufs[i].base + (bufs[i].len - take);
        skip = skip > bufs[i].len ? skip - bufs[i].len : 0;
        if (!take) continue;
        if ((int)i == hold_idx) {
            wr->hold = corral_value_ref(hold);
            out[nout++] = uv_buf_init((char *)from, (unsigned)take);
        } else {
            memcpy(wr->data + off, from, take);
            out[nout++] = uv_buf_init(wr->data + off, (unsigned)take);
            off += take;
        }
    }
    int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, out, nout, on_write);
    if (rc < 0) {
        corral_value_unref(wr->hold);
        free(wr);
        conn_close(c, false);
        return;
    }
    c->queued_writes++;
    if (c->timer_kind == T_NONE || c->timer_kind == T_SEND)
        conn_timer(c, T_SEND, c->req.cfg ? c->req.cfg->send_timeout_ms : 30000);
}

void px_conn_send(px_conn *c, const char *data, size_t len) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    conn_writev(c, &b, 1, NULL, -1);
}

void px_conn_send_whole(px_conn *c, const char *head, size_t head_len, const char *body,
                        size_t body_len, corral_value *hold) {
    if (c->req.is_head || c->req.resp_chunked) body_len = 0;
    c->req.body_bytes += body_len;
    uv_buf_t b[2] = { uv_buf_init((char *)head, (unsigned)head_len),
                      uv_buf_init((char *)body, (unsigned)body_len) };
    conn_writev(c, b, body_len ? 2 : 1, hold, hold ? 1 : -1);
}

void px_conn_body(px_conn *c, const char *data, size_t len, corral_value *hold) {
    if (c->req.is_head || len == 0 || c->closing) return;
    c->req.body_bytes += len;
    if (!c->req.resp_chunked) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        conn_writev(c, &b, 1, hold, hold ? 0 : -1);
        return;
    }
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    if (n < 0 || (size_t)n >= sizeof size) {
        conn_close(c, false);
        return;
    }
    uv_buf_t b[3] = { uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                      uv_buf_init((char *)"\r\n", 2) };
    conn_writev(c, b, 3, hold, hold ? 1 : -1);
}

/* Counts the request and its result, once. */
static void count_request(px_conn *c) {
    static const unsigned counter[] = {
        [PX_R_NONE] = PX_M_COUNT,
        [PX_R_HIT] = PX_M_hits_total,
        [PX_R_MISS] = PX_M_misses_total,
        [PX_R_COALESCED] = PX_M_coalesced_total,
        [PX_R_STALE] = PX_M_stale_total,
        [PX_R_STALE_IF_ERROR] = PX_M_stale_if_error_total,
        [PX_R_REVALIDATED] = PX_M_revalidated_total,
        [PX_R_PASS] = PX_M_pass_total,
        [PX_R_ERROR] = PX_M_errors_total,
    };
    c->req.counted = true;
    px_metrics *m = c->w->metrics;
    unsigned slot = c->req.route->slot;
    px_metrics_add(m, slot, PX_M_requests_total, 1);
    if (counter[c->req.result] != PX_M_COUNT) px_metrics_add(m, slot, counter[c->req.result], 1);
}

void px_conn_end(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (!c->busy) return;
    /* The leader's client that streamed its busy object: its fetch is complete (not aborted). */
    if (c->fetch) c->w->on->fetch_detach(c->fetch);
    if (c->req.resp_chunked && !c->req.is_head) px_conn_send(c, "0\r\n\r\n", 5);
    px_log_request(c);
    if (!c->req.counted) count_request(c);
    px_metrics_add(c->w->metrics, c->req.route->slot, PX_M_response_bytes_total, c->req.body_bytes);
    bool keep = c->req.keep_alive && c->req.body_done && !c->req.close_delimited &&
                !c->w->stopping && !c->peer_eof;
    c->w->on->request_release(c);
    c->busy = false;
    c->body_paused = false;
    if (c->closing) return;
    if (!keep) {
        conn_close(c, true);
        return;
    }
    if (c->timer_kind != T_SEND || c->rlen > c->rpos) arm_idle(c);
    conn_process(c);
    release_if_idle(c);
}

size_t px_conn_extra(px_conn *c, px_result r, char *buf, size_t cap) {
    int n = 0;
    const px_config *cfg = c->req.cfg;
    if (cfg && cfg->x_cache_header && r != PX_R_NONE)
        n = snprintf(buf, cap, "X-Cache: %s\r\n", px_result_name(r));
    if (n < 0 || (size_t)n >= cap) return 0;
    const char *conn = NULL;
    /* An answer that starts before the request's body ended (an origin that answers early,
     * an Expect: 100-continue refused) leaves the rest of the body unread: close after it. */
    if (!c->req.body_done) c->req.keep_alive = false;
    if (!c->req.keep_alive)
        conn = "Connection: close\r\n";
    else if (c->req.raw && c->req.raw->version_minor == 0)
        conn = "Connection: keep-alive\r\n";
    if (conn) {
        int m = snprintf(buf + n, cap - (size_t)n, "%s", conn);
        if (m < 0 || (size_t)m >= cap - (size_t)n) return 0;
        n += m;
    }
    return (size_t)n;
}

size_t px_conn_framing(px_conn *c, const corral_http_msg *resp, char *buf, size_t cap) {
    unsigned st = resp->status;
    int n = 0;
    c->req.resp_chunked = false;
    bool bodiless = st == 204 || st == 304 || st < 200;
    if (bodiless || c->req.is_head) {
        if (!bodiless && resp->has_content_length)
            n = snprintf(buf, cap, "Content-Length: %" PRIu64 "\r\n", resp->content_length);
    } else if (resp->framing == CORRAL_HTTP_FRAMING_LENGTH) {
        n = snprintf(buf, cap, "Content-Length: %" PRIu64 "\r\n", resp->content_length);
    } else if (!c->req.raw || c->req.raw->version_minor >= 1) {
        n = snprintf(buf, cap, "Transfer-Encoding: chunked\r\n");
        c->req.resp_chunked = true;
    } else {
        c->req.close_delimited = true;
        c->req.keep_alive = false;
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

int px_conn_send_head(px_conn *c, const corral_http_msg *resp, px_result r) {
    c->req.status = resp->status;
    corral_http_header kept[PX_OBJ_MAX_HEADERS]; /* Surrogate-Key and the like go no further */
    corral_http_msg view;
    if (c->req.cfg && px_client_view(c->req.cfg, resp, kept, PX_OBJ_MAX_HEADERS, &view) == 0)
        resp = &view;
    char framing[64], extra[160];
    size_t flen = px_conn_framing(c, resp, framing, sizeof framing);
    size_t elen = px_conn_extra(c, r, extra, sizeof extra);
    char stack[8192];
    char *buf = stack;
    size_t cap = sizeof stack, len = 0;
    int rc = corral_http_write_stored_head(resp, buf, cap, &len);
    if (rc == CORRAL_ENOSPC || (rc == CORRAL_OK && len + flen + elen > cap)) {
        cap = len + flen + elen;
        buf = malloc(cap);
        rc = buf ? corral_http_write_stored_head(resp, buf, cap, &len) : CORRAL_ENOMEM;
    }
    if (rc != CORRAL_OK || len + flen + elen > cap) {
        if (buf != stack) free(buf);
        return rc == CORRAL_ENOMEM ? PX_ENOMEM : PX_ETOOBIG;
    }
    len -= 2; /* before the blank line */
    memcpy(buf + len, framing, flen);
    len += flen;
    memcpy(buf + len, extra, elen);
    len += elen;
    memcpy(buf + len, "\r\n", 2);
    len += 2;
    c->req.responded = true;
    px_conn_send(c, buf, len);
    if (buf != stack) free(buf);
    return 0;
}

void px_conn_interim(px_conn *c, const corral_http_msg *resp) {
    /* HTTP/1.0 clients may not understand 1xx (RFC 9110 §15.2); after the final head, none. */
    if (c->closing || !c->busy || c->req.responded || !c->req.raw ||
        c->req.raw->version_minor == 0 || resp->status < 100 || resp->status > 199 ||
        resp->status == 101)
        return;
    char buf[8192];
    size_t len = 0;
    if (corral_http_write_stored_head(resp, buf, sizeof buf, &len) == CORRAL_OK)
        px_conn_send(c, buf, len); /* an interim head too large is only dropped */
}

void px_conn_not_modified(px_conn *c, const corral_http_msg *resp, unsigned cs, px_result r) {
    if (cs == 412) {
        px_conn_simple(c, 412, "Precondition Failed", "", r, c->req.reason);
        return;
    }
    char extra[160];
    size_t elen = px_conn_extra(c, r, extra, sizeof extra);
    char buf[8192];
    size_t len;
    if (corral_http_write_cached_head(resp, 304, 0, -1, extra, elen, buf, sizeof buf, &len) != 0) {
        px_conn_simple(c, 502, "Bad Gateway", "response head too large\n", PX_R_ERROR,
                       "head too large");
        return;
    }
    c->req.result = r;
    c->req.status = 304;
    c->req.responded = true;
    px_conn_send(c, buf, len);
    px_conn_end(c);
}

void px_conn_simple(px_conn *c, unsigned status, const char *reason, const char *body,
                    px_result result, const char *why) {
    c->req.result = result;
    c->req.reason = why;
    c->req.status = status;
    c->req.responded = true;
    c->req.resp_chunked = false;
    if (!c->req.body_done) c->req.keep_alive = false;
    char extra[128];
    size_t elen = px_conn_extra(c, result, extra, sizeof extra);
    size_t blen = strlen(body);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %u %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%.*s\r\n",
                     status, reason, blen, (int)elen, extra);
    if (n < 0 || (size_t)n >= sizeof head) {
        conn_close(c, false);
        return;
    }
    px_conn_send_whole(c, head, (size_t)n, body, blen, NULL);
    px_conn_end(c);
}

bool px_conn_congested(const px_conn *c) {
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) >= CONGESTED_BYTES;
}

/* ---- Closing ---- */

static void on_shutdown(uv_shutdown_t *req, int status) {
    px_conn *c = req->data;
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (status < 0 || c->peer_eof) {
        close_handles(c);
        return;
    }
    /* Discard what the client still sends until it closes, so it reads our answer whole. */
    conn_timer(c, T_LINGER, LINGER_MS);
    if (!c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            close_handles(c);
            return;
        }
        c->reading = true;
    }
}

static void start_shutdown(px_conn *c) {
    if (c->shut.data) return; /* already started */
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) close_handles(c);
}

static void conn_close(px_conn *c, bool graceful) {
    if (c->closing) {
        if (!graceful) close_handles(c);
        return;
    }
    c->closing = true;
    if (c->fetch) c->w->on->fetch_detach(c->fetch);
    if (c->waiting) c->w->on->wait_expired(c);
    if (c->reading && uv_read_stop((uv_stream_t *)&c->tcp) == 0) c->reading = false;
    conn_timer(c, T_NONE, 0);
    if (c->busy) {
        c->w->on->request_release(c);
        c->busy = false;
    }
    if (graceful && !c->peer_eof) {
        c->lingering = true;
        if (c->queued_writes == 0) start_shutdown(c);
        return;
    }
    close_handles(c);
}

void px_conn_abort(px_conn *c) {
    conn_close(c, false);
}

/* ---- Accepting ---- */

void px_conn_accept(px_worker *w, uv_stream_t *server) {
    const px_config *cfg = w->cfg;
    px_conn *c = calloc(1, sizeof *c);
    if (!c) return; /* libuv calls again; the connection waits in the backlog */
    c->magic = PX_CONN_MAGIC;
    c->w = w;
    px_list_push(&w->conns, &c->link);
    atomic_fetch_add_explicit(&w->metrics->connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->px->clients, 1, memory_order_relaxed);
    if (uv_tcp_init(&w->loop, &c->tcp) < 0) {
        px_list_remove(&c->link);
        atomic_fetch_sub_explicit(&w->metrics->connections, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&w->px->clients, 1, memory_order_relaxed);
        free(c);
        return;
    }
    c->tcp.data = c;
    c->open_handles = 1;
    if (uv_timer_init(&w->loop, &c->timer) == 0) {
        c->timer.data = c;
        c->open_handles = 2;
    }
    /* No buffer yet: they come with the first bytes (cbuf.c). */
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (c->open_handles < 2 || rc < 0) {
        c->closing = true;
        if (c->open_handles < 2) {
            uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        } else {
            close_handles(c);
        }
        return;
    }
    struct sockaddr_storage sa;
    int len = sizeof sa;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len) == 0) {
        int nrc = sa.ss_family == AF_INET6
                      ? uv_ip6_name((struct sockaddr_in6 *)&sa, c->peer, sizeof c->peer)
                      : uv_ip4_name((struct sockaddr_in *)&sa, c->peer, sizeof c->peer);
        if (nrc < 0) c->peer[0] = '\0';
    }
    if (uv_tcp_nodelay(&c->tcp, 1) < 0) {
        /* Only latency suffers. */
    }
    conn_timer(c, T_IDLE, cfg->keepalive_timeout_ms);
    update_reading(c);
}

static void on_listener_closed(uv_handle_t *h) {
    (void)h;
}

void px_clients_stop(px_worker *w) {
    if (w->listener.data && !uv_is_closing((uv_handle_t *)&w->listener))
        uv_close((uv_handle_t *)&w->listener, on_listener_closed);
    for (px_link *l = w->conns.next, *next; l != &w->conns; l = next) {
        next = l->next;
        px_conn *c = PX_CONTAINER(l, px_conn, link);
        if (!c->busy)
            conn_close(c, false);
        else
            c->req.keep_alive = false;
    }
}

void px_clients_abort(px_worker *w) {
    for (px_link *l = w->conns.next, *next; l != &w->conns; l = next) {
        next = l->next;
        conn_close(PX_CONTAINER(l, px_conn, link), false);
    }
}
