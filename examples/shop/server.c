/*
 * server.c - the shop's HTTP/1.1 server on the uv loop: the listener and client connections.
 *
 * Parsing is libcorral's strict incremental parser (corral/http.h, the one corral-proxy uses):
 * smuggling vectors, bare CRs and obs-folds are answered with 400 and the connection closed.
 * Request bodies (a save form's fields) are read and ignored.
 *
 * A connection answers one request at a time, in order. Most replies are sent at once; two
 * wait: the slow report (a timer of SHOP_SLOW_MS) and a save (the admin purge, purge.c). While
 * a reply waits the connection is "busy": it stops reading, and pipelined requests stay in its
 * input buffer until the reply is sent. Keep-alive, with SHOP_IDLE_MS for an idle connection.
 *
 * Data model: shop_conn, one per client connection, on shop.conns. It owns two handles (the
 * TCP stream and a timer used as idle deadline or as the slow report's delay) and is freed
 * when both are closed. Writes in flight (wreq) own their bytes; a closing connection's
 * cancelled writes free theirs in their callback, which libuv runs before the close callbacks.
 *
 * Threads: the loop's thread only.
 */
#include "shop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RBUF    8192 /* a connection's input buffer */
#define BACKLOG 128

typedef struct shop_conn {
    uint32_t magic;
    shop *s;
    shop_link link; /* in s->conns */
    uv_tcp_t tcp;
    uv_timer_t timer; /* idle deadline; while busy with the slow report, its delay */
    uv_shutdown_t shut;
    int open_handles; /* of tcp and timer; the conn is freed when it reaches 0 */
    corral_http_parser *parser;
    void *pmem; /* the parser's block */
    char in[RBUF];
    size_t in_off, in_len; /* input not given to the parser yet: in[in_off, in_len) */
    bool reading;
    bool busy;        /* `reply` waits for its delay or purge; nothing else is parsed meanwhile */
    bool last;        /* the reply queued last closes the connection: read and parse nothing more */
    bool closing;     /* conn_close ran */
    unsigned writes;  /* writes in flight */
    shop_reply reply; /* the reply being made (while busy, the one that waits) */
    shop_purge *purge; /* the save's purge while busy with it */
} shop_conn;

/* One write: the head and body of a reply, freed in its callback. */
typedef struct wreq {
    uv_write_t req;
    shop_conn *c;
    shop_buf head;
    shop_buf body;
} wreq;

static void process(shop_conn *c);
static void update_reading(shop_conn *c);

/* Wall-clock milliseconds for pages and Date (the pages themselves read no clock). */
static int64_t wall_ms(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Closing ---- */

static void on_conn_handle_closed(uv_handle_t *h) {
    shop_conn *c = h->data;
    if (--c->open_handles > 0) return;
    corral_http_parser_deinit(c->parser);
    free(c->pmem);
    shop_reply_deinit(&c->reply);
    c->magic = 0;
    free(c);
}

static void conn_close(shop_conn *c) {
    SHOP_CHECK_OBJ(c, SHOP_CONN_MAGIC);
    if (c->closing) return;
    c->closing = true;
    shop_list_remove(&c->link);
    if (c->purge) shop_purge_cancel(c->purge);
    c->purge = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    conn_close(req->data);
}

/* Sends FIN after the last reply, then closes: the peer reads the whole reply first. */
static void finish_last(shop_conn *c) {
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) conn_close(c);
}

/* ---- Timers ---- */

static void on_timer(uv_timer_t *t);

static void arm_timer(shop_conn *c, uint64_t ms) {
    if (uv_timer_start(&c->timer, on_timer, ms, 0) < 0) conn_close(c);
}

/* ---- Writing ---- */

static void on_write(uv_write_t *req, int status) {
    wreq *w = req->data;
    shop_conn *c = w->c;
    shop_buf_free(&w->head);
    shop_buf_free(&w->body);
    free(w);
    c->writes--;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->last && c->writes == 0) finish_last(c);
}

/* Sends c->reply and empties it. On failure the connection is closed. */
static void send_reply(shop_conn *c) {
    shop_reply *r = &c->reply;
    if (c->s->stopping) c->last = true;
    wreq *w = calloc(1, sizeof *w);
    if (!w) {
        conn_close(c);
        return;
    }
    char date[30];
    shop_http_date(wall_ms() / 1000, date);
    /* A 304 has no body, and no Content-Length either: it would describe the stored 200's body
     * (RFC 9110 §8.6), which a cache freshening its copy would take at its word. */
    bool has_body = r->status != 304;
    shop_buf_printf(&w->head, "HTTP/1.1 %u %s\r\nDate: %s\r\nServer: corral-shop/%s\r\n", r->status,
                    shop_reason(r->status), date, corral_version());
    if (has_body) shop_buf_printf(&w->head, "Content-Length: %zu\r\n", r->body.len);
    if (c->last) shop_buf_puts(&w->head, "Connection: close\r\n");
    shop_buf_put(&w->head, r->fields.data, r->fields.len);
    shop_buf_puts(&w->head, "\r\n");
    if (has_body && !r->head_only) {
        w->body = r->body; /* moved: the write owns it now */
        memset(&r->body, 0, sizeof r->body);
    }
    shop_reply_deinit(r);
    shop_reply_init(r);
    if (w->head.failed || w->head.len > UINT32_MAX || w->body.len > UINT32_MAX) {
        shop_buf_free(&w->head);
        shop_buf_free(&w->body);
        free(w);
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = { uv_buf_init(w->head.data, (unsigned)w->head.len),
                         uv_buf_init(w->body.data, (unsigned)w->body.len) };
    w->c = c;
    w->req.data = w;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, w->body.len ? 2 : 1, on_write) < 0) {
        shop_buf_free(&w->head);
        shop_buf_free(&w->body);
        free(w);
        conn_close(c);
        return;
    }
    c->writes++;
    if (c->last) arm_timer(c, SHOP_IDLE_MS); /* a client that never reads is dropped */
}

/* ---- Replies that wait ---- */

/* Sends the reply that waited, then goes on with pipelined input and reading. */
static void resume(shop_conn *c) {
    c->busy = false;
    send_reply(c);
    if (c->closing) return;
    process(c);
    update_reading(c);
}

static void on_timer(uv_timer_t *t) {
    shop_conn *c = t->data;
    SHOP_CHECK_OBJ(c, SHOP_CONN_MAGIC);
    if (c->busy && c->reply.pending == SHOP_AFTER_DELAY) {
        c->reply.pending = SHOP_NOW;
        resume(c);
        return;
    }
    conn_close(c); /* idle for SHOP_IDLE_MS */
}

static void on_purged(void *arg, int status, const char *detail) {
    shop_conn *c = arg;
    SHOP_CHECK_OBJ(c, SHOP_CONN_MAGIC);
    c->purge = NULL;
    shop_page_saved(c->s, &c->reply, status, detail, wall_ms());
    resume(c);
}

/* Sends c->reply now, or starts what it waits for. */
static void start_reply(shop_conn *c) {
    shop_reply *r = &c->reply;
    if (r->pending == SHOP_AFTER_DELAY) {
        c->busy = true;
        (void)uv_timer_stop(&c->timer); /* never fails */
        arm_timer(c, r->delay_ms);
        return;
    }
    if (r->pending == SHOP_AFTER_PURGE) {
        int rc = 0;
        if (c->s->has_admin) {
            rc = shop_purge_start(c->s, r->purge_key, on_purged, c, &c->purge);
            if (rc == 0) {
                c->busy = true;
                (void)uv_timer_stop(&c->timer);
                return;
            }
        }
        shop_page_saved(c->s, r, rc, rc < 0 ? uv_strerror(rc) : NULL, wall_ms());
    }
    send_reply(c);
}

/* ---- Reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    shop_conn *c = h->data;
    (void)suggested;
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    /* Reading happens only when all input was parsed, so there is room (0 would be ENOBUFS). */
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof c->in - c->in_len));
}

static void dispatch(shop_conn *c) {
    const corral_http_msg *m = corral_http_parser_msg(c->parser);
    if (!m->keep_alive) c->last = true;
    shop_reply_init(&c->reply);
    shop_handle(c->s, m, wall_ms(), &c->reply);
    start_reply(c);
}

/* Feeds buffered input to the parser, answering each complete request, until the input is used
 * up or a reply waits (busy) or ends the connection (last). */
static void process(shop_conn *c) {
    while (!c->closing && !c->busy && !c->last) {
        size_t n = 0;
        corral_buf body;
        int rc = corral_http_parser_execute(c->parser, c->in + c->in_off, c->in_len - c->in_off, &n,
                                            &body);
        c->in_off += n;
        if (rc < 0) {
            /* The framing of what follows is unknown: answer and close. */
            c->last = true;
            shop_reply_init(&c->reply);
            shop_page_error(&c->reply, corral_http_error_status(rc));
            send_reply(c);
            return;
        }
        if (rc == CORRAL_OK) {
            c->in_off = c->in_len = 0;
            return;
        }
        if (rc == CORRAL_HTTP_GOT_END) dispatch(c);
        /* GOT_HEAD waits for the end; GOT_BODY pieces are ignored. */
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    shop_conn *c = stream->data;
    (void)buf;
    if (nread == 0) return;
    if (nread < 0) {
        /* End of input or an error: let queued replies go out, then close. */
        if (nread == UV_EOF && c->writes > 0) {
            c->last = true;
            update_reading(c);
            return;
        }
        conn_close(c);
        return;
    }
    c->in_len += (size_t)nread;
    process(c);
    if (c->closing) return;
    update_reading(c);
    if (c->reading) arm_timer(c, SHOP_IDLE_MS);
}

/* Reads while the connection can take a request: not busy, not ending, not closing. */
static void update_reading(shop_conn *c) {
    if (c->closing) return;
    bool want = !c->busy && !c->last;
    if (want == c->reading) return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
        arm_timer(c, SHOP_IDLE_MS);
    } else if (uv_read_stop((uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    c->reading = want;
}

/* ---- The listener ---- */

static void on_connection(uv_stream_t *server, int status) {
    shop *s = server->data;
    if (status < 0 || s->stopping) return;
    size_t psize = corral_http_parser_mem_size(NULL);
    shop_conn *c = calloc(1, sizeof *c);
    void *pmem = malloc(psize);
    if (!c || !pmem) {
        /* The connection stays in the backlog; libuv offers it again. */
        free(c);
        free(pmem);
        return;
    }
    c->magic = SHOP_CONN_MAGIC;
    c->s = s;
    c->pmem = pmem;
    shop_list_init(&c->link);
    if (corral_http_parser_init(&c->parser, pmem, psize, CORRAL_HTTP_REQUEST, NULL) != CORRAL_OK ||
        uv_tcp_init(s->loop, &c->tcp) < 0) {
        corral_http_parser_deinit(c->parser);
        free(pmem);
        free(c);
        return;
    }
    c->tcp.data = c;
    c->open_handles = 1;
    if (uv_timer_init(s->loop, &c->timer) < 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
        return;
    }
    c->timer.data = c;
    c->open_handles = 2;
    shop_list_push(&s->conns, &c->link);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1); /* only latency would suffer */
    update_reading(c);
}

int shop_listen(shop *s, const struct sockaddr *addr) {
    SHOP_CHECK_OBJ(s, SHOP_MAGIC);
    int rc = uv_tcp_init(s->loop, &s->listener);
    if (rc < 0) return rc;
    s->listener.data = s;
    s->listening = true; /* a handle shop_stop closes, whatever happens next */
    rc = uv_tcp_bind(&s->listener, addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, BACKLOG, on_connection);
    return rc;
}

static void on_listener_closed(uv_handle_t *h) {
    (void)h;
}

void shop_stop(shop *s) {
    SHOP_CHECK_OBJ(s, SHOP_MAGIC);
    s->stopping = true;
    if (s->listening) uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    s->listening = false;
    for (shop_link *l = s->conns.next, *next; l != &s->conns; l = next) {
        next = l->next;
        shop_conn *c = SHOP_CONTAINER(l, shop_conn, link);
        if (c->busy) continue; /* its reply says Connection: close and ends it */
        if (c->writes == 0) {
            conn_close(c);
        } else {
            c->last = true; /* closed when its writes are done */
            update_reading(c);
        }
    }
}
