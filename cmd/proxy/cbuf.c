/*
 * cbuf.c - the buffers of a client connection: its request parser's block, its read buffer,
 * the request's scratch (keys, filtered cookies) and its two field tables, as one block.
 *
 * A connection holds a block only while it reads or handles a request: it takes one when bytes
 * arrive (libuv's alloc callback) and gives it back when it is idle between requests with
 * nothing buffered, so an idle keep-alive connection costs its px_conn and libuv handles, not
 * ~80 KB (issue 12 §3; docs/soak.md measured the burst). Blocks given back wait on their
 * worker's spare list (at most PX_SPARE_BUFS), so a keep-alive client's next request reuses
 * one instead of calling malloc. A block's sizes follow the configuration that made it
 * (max_head_bytes, max_headers); after a reload that changed them, old blocks are freed as they
 * come back.
 *
 * Bounds: one block per connection, cbuf_bytes(cfg) each; so at most max_connections blocks,
 * plus PX_SPARE_BUFS spares per worker.
 *
 * Threads: the connection's worker's loop thread.
 */
#include "proxy.h"

#include <stdlib.h>

#define RBUF_SIZE 16384

/* The head of a block; the areas follow, each aligned as max_align_t. */
typedef struct cbuf {
    px_link link; /* on the worker's spare list */
    size_t size;  /* the whole block, the identity of its layout */
    size_t pmem, rcap, scratch_cap, max_hdrs;
} cbuf;

static size_t align_up(size_t n) {
    size_t a = _Alignof(max_align_t);
    return (n + a - 1) / a * a;
}

/* The layout the configuration asks for, in `shape` (its `size` is the total). */
static void layout(const px_config *cfg, cbuf *shape) {
    shape->pmem = corral_http_parser_mem_size(&cfg->limits);
    shape->rcap = RBUF_SIZE;
    shape->scratch_cap = 2 * cfg->limits.max_head_bytes + 4096;
    shape->max_hdrs = cfg->limits.max_headers + 4;
    shape->size = align_up(sizeof(cbuf)) + align_up(shape->pmem) + align_up(shape->rcap) +
                  align_up(shape->scratch_cap) + shape->max_hdrs * sizeof(corral_http_header) +
                  PX_OBJ_MAX_HEADERS * sizeof(corral_http_header);
}

static void block_free(px_worker *w, cbuf *b) {
    atomic_fetch_sub_explicit(&w->metrics->buffer_bytes, (int64_t)b->size, memory_order_relaxed);
    free(b);
}

size_t px_cbuf_bytes(const px_config *cfg) {
    cbuf shape;
    layout(cfg, &shape);
    return shape.size;
}

int px_cbuf_acquire(px_conn *c) {
    if (c->bufs) return 0;
    px_worker *w = c->w;
    cbuf shape;
    layout(w->cfg, &shape);
    cbuf *b = NULL;
    while (!b && !px_list_empty(&w->spare_bufs)) {
        b = PX_CONTAINER(w->spare_bufs.next, cbuf, link);
        px_list_remove(&b->link);
        w->n_spare_bufs--;
        if (b->size != shape.size || b->pmem != shape.pmem || b->max_hdrs != shape.max_hdrs) {
            block_free(w, b); /* made for another configuration */
            b = NULL;
        }
    }
    if (!b) {
        b = malloc(shape.size);
        if (!b) return PX_ENOMEM;
        atomic_fetch_add_explicit(&w->metrics->buffer_bytes, (int64_t)shape.size,
                                  memory_order_relaxed);
        *b = shape;
        px_list_init(&b->link);
    }
    char *p = (char *)b + align_up(sizeof(cbuf));
    void *pmem = p;
    p += align_up(b->pmem);
    c->rbuf = p;
    c->rcap = b->rcap;
    p += align_up(b->rcap);
    c->scratch = p;
    c->scratch_cap = b->scratch_cap;
    p += align_up(b->scratch_cap);
    c->hdrs = (corral_http_header *)(void *)p;
    c->max_hdrs = b->max_hdrs;
    c->obj_hdrs = c->hdrs + b->max_hdrs;
    c->rpos = c->rlen = 0;
    c->bufs = b;
    if (corral_http_parser_init(&c->parser, pmem, b->pmem, CORRAL_HTTP_REQUEST, &w->cfg->limits) <
        0) {
        px_cbuf_release(c);
        return PX_EINVAL;
    }
    return 0;
}

void px_cbuf_release(px_conn *c) {
    cbuf *b = c->bufs;
    if (!b) return;
    px_worker *w = c->w;
    corral_http_parser_deinit(c->parser);
    c->parser = NULL;
    c->bufs = NULL;
    c->rbuf = c->scratch = NULL;
    c->hdrs = c->obj_hdrs = NULL;
    c->rcap = c->rpos = c->rlen = c->scratch_cap = c->max_hdrs = 0;
    if (w->n_spare_bufs >= PX_SPARE_BUFS || w->stopping) {
        block_free(w, b);
        return;
    }
    px_list_push(&w->spare_bufs, &b->link);
    w->n_spare_bufs++;
}

void px_cbuf_drop_spares(px_worker *w) {
    while (!px_list_empty(&w->spare_bufs)) {
        cbuf *b = PX_CONTAINER(w->spare_bufs.next, cbuf, link);
        px_list_remove(&b->link);
        block_free(w, b);
    }
    w->n_spare_bufs = 0;
}
