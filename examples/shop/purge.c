/*
 * purge.c - the save handler's call to corral-proxy's admin listener: "POST /purge/key/<key>",
 * the guide's post_save receiver deleting exactly what changed. One connection per purge (the
 * admin answers with Connection: close), a deadline of SHOP_PURGE_MS from connect to the end
 * of the answer, and the answer read with libcorral's response parser.
 *
 * Data model: shop_purge owns a TCP handle and a timer and is freed when both are closed (so a
 * purge in flight keeps the loop running, at most SHOP_PURGE_MS, when the shop stops). Its caller's
 * callback is called at most once; a caller that goes away first (its client disconnected) cancels
 * it, and the purge still runs to its end so the cache is busted anyway.
 *
 * Threads: the loop's thread only.
 */
#include "shop.h"

#include <stdlib.h>
#include <string.h>

struct shop_purge {
    uint32_t magic;
    shop *s;
    uv_tcp_t tcp;
    uv_timer_t timer; /* the deadline */
    uv_connect_t connect;
    uv_write_t write;
    int open_handles; /* of tcp and timer; freed when it reaches 0 */
    bool done;        /* finish ran: handles closing */
    shop_purge_cb cb; /* NULL once called or cancelled */
    void *arg;
    shop_buf request;
    corral_http_parser *parser; /* a response parser in pmem */
    void *pmem;
    int status; /* the answer's status, once its head is parsed */
    char rbuf[2048];
};

static void on_purge_handle_closed(uv_handle_t *h) {
    shop_purge *p = h->data;
    if (--p->open_handles > 0) return;
    corral_http_parser_deinit(p->parser);
    free(p->pmem);
    shop_buf_free(&p->request);
    p->magic = 0;
    free(p);
}

/* Ends the purge with `status`: tells the caller (unless cancelled) and closes. */
static void finish(shop_purge *p, int status, const char *detail) {
    SHOP_CHECK_OBJ(p, SHOP_PURGE_MAGIC);
    if (p->done) return;
    p->done = true;
    uv_close((uv_handle_t *)&p->tcp, on_purge_handle_closed);
    uv_close((uv_handle_t *)&p->timer, on_purge_handle_closed);
    shop_purge_cb cb = p->cb;
    p->cb = NULL;
    if (cb) cb(p->arg, status, detail);
}

static void on_deadline(uv_timer_t *t) {
    finish(t->data, UV_ETIMEDOUT, uv_strerror(UV_ETIMEDOUT));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    shop_purge *p = h->data;
    (void)suggested;
    *buf = uv_buf_init(p->rbuf, sizeof p->rbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    shop_purge *p = stream->data;
    if (p->done || nread == 0) return;
    if (nread < 0) {
        if (nread == UV_EOF && corral_http_parser_finish(p->parser) == CORRAL_HTTP_GOT_END) {
            finish(p, p->status, "answered");
            return;
        }
        finish(p, nread == UV_EOF ? UV_EPROTO : (int)nread,
               nread == UV_EOF ? "the admin closed the connection before answering"
                               : uv_strerror((int)nread));
        return;
    }
    const char *data = buf->base;
    size_t len = (size_t)nread;
    for (;;) {
        size_t n = 0;
        corral_buf body;
        int rc = corral_http_parser_execute(p->parser, data, len, &n, &body);
        data += n;
        len -= n;
        if (rc < 0) {
            finish(p, UV_EPROTO, "malformed answer from the admin");
            return;
        }
        if (rc == CORRAL_OK) return;
        if (rc == CORRAL_HTTP_GOT_HEAD) p->status = (int)corral_http_parser_msg(p->parser)->status;
        if (rc == CORRAL_HTTP_GOT_END && p->status >= 200) {
            finish(p, p->status, "answered");
            return;
        }
    }
}

static void on_written(uv_write_t *req, int status) {
    if (status < 0) finish(req->data, status, uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status) {
    shop_purge *p = req->data;
    if (p->done) return;
    if (status < 0) {
        finish(p, status, uv_strerror(status));
        return;
    }
    uv_buf_t b = uv_buf_init(p->request.data, (unsigned)p->request.len);
    p->write.data = p;
    int rc = uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, on_written);
    if (rc == 0) rc = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    if (rc < 0) finish(p, rc, uv_strerror(rc));
}

int shop_purge_start(shop *s, const char *key, shop_purge_cb cb, void *arg, shop_purge **out) {
    SHOP_CHECK_OBJ(s, SHOP_MAGIC);
    *out = NULL;
    size_t psize = corral_http_parser_mem_size(NULL);
    shop_purge *p = calloc(1, sizeof *p);
    void *pmem = malloc(psize);
    if (!p || !pmem) {
        free(p);
        free(pmem);
        return UV_ENOMEM;
    }
    p->magic = SHOP_PURGE_MAGIC;
    p->s = s;
    p->cb = cb;
    p->arg = arg;
    p->pmem = pmem;
    shop_buf_printf(&p->request,
                    "POST /purge/key/%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: corral-shop\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n",
                    key, s->admin_authority);
    if (s->admin_token)
        shop_buf_printf(&p->request, "Authorization: Bearer %s\r\n", s->admin_token);
    shop_buf_puts(&p->request, "\r\n");
    int rc = UV_ENOMEM;
    if (p->request.failed || p->request.len > UINT32_MAX) goto fail;
    rc = corral_http_parser_init(&p->parser, pmem, psize, CORRAL_HTTP_RESPONSE, NULL) == CORRAL_OK
             ? 0
             : UV_EINVAL;
    if (rc < 0) goto fail;
    corral_http_parser_set_request_method(p->parser, CORRAL_HTTP_POST);
    if ((rc = uv_timer_init(s->loop, &p->timer)) < 0) goto fail;
    p->timer.data = p;
    p->open_handles = 1;
    if ((rc = uv_tcp_init(s->loop, &p->tcp)) < 0) {
        p->done = true;
        uv_close((uv_handle_t *)&p->timer, on_purge_handle_closed);
        return rc;
    }
    p->tcp.data = p;
    p->open_handles = 2;
    p->connect.data = p;
    if ((rc = uv_timer_start(&p->timer, on_deadline, SHOP_PURGE_MS, 0)) < 0 ||
        (rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&s->admin_addr,
                             on_connect)) < 0) {
        p->cb = NULL; /* the error is returned instead */
        finish(p, rc, NULL);
        return rc;
    }
    *out = p;
    return 0;

fail:
    corral_http_parser_deinit(p->parser);
    shop_buf_free(&p->request);
    free(pmem);
    free(p);
    return rc;
}

void shop_purge_cancel(shop_purge *p) {
    SHOP_CHECK_OBJ(p, SHOP_PURGE_MAGIC);
    p->cb = NULL;
    p->arg = NULL;
}
