/*
 * worker.c - the loop of a corral-proxy worker: its inbox (the one way other threads reach it:
 * flight wake-ups, readers of a busy object that grew, a new configuration, the order to stop),
 * its stop (drain, deadline, the loop's own handles closed last), and its deadlines' view of a
 * loop held up by the store (px_worker_deadline, px_worker_defer).
 *
 * With client.c it is the loop layer, the bottom of the proxy's event handling: what it must
 * call above it (a connection woken, a worker stopping) goes through the px_handlers that
 * main.c gives each worker at start-up (px_worker.on), never by name, so the files above call
 * down into it and it calls nothing up.
 *
 * Threads: the inbox is a FIFO of connections, each queued at most once (px_conn.in_inbox),
 * written by any thread under inbox_lock and read by the loop thread. inbox_lock is a leaf
 * (nothing else is taken while it is held; uv_async_send calls nothing back). Everything else
 * runs on the worker's loop thread.
 */
#include "proxy.h"

#include <stdio.h>
#include <string.h>

/* ---- Worker inbox ---- */

void px_worker_signal_locked(px_worker *w) {
    if (w->inbox_closed) return;
    /* uv_async_send is thread-safe and calls nothing back, so it may run under the lock,
     * which keeps the worker from closing the handle between our check and the send. */
    int rc = uv_async_send(&w->inbox_async);
    if (rc < 0) fprintf(stderr, "corral-proxy: inbox of worker %u: %s\n", w->id, uv_strerror(rc));
}

/* Queues `c` at the inbox's tail unless it is queued already; the caller holds the lock. */
static void enqueue_locked(px_worker *w, px_conn *c) {
    if (c->in_inbox) return;
    c->in_inbox = true;
    c->wake_next = NULL;
    if (w->inbox_tail)
        w->inbox_tail->wake_next = c;
    else
        w->inbox = c;
    w->inbox_tail = c;
    w->inbox_len++;
    px_worker_signal_locked(w);
}

void px_worker_wake(px_worker *w, px_conn *c) {
    uv_mutex_lock(&w->inbox_lock);
    c->wake_flight = true;
    enqueue_locked(w, c);
    uv_mutex_unlock(&w->inbox_lock);
}

void px_worker_notify(px_worker *w, px_conn *c) {
    uv_mutex_lock(&w->inbox_lock);
    enqueue_locked(w, c);
    uv_mutex_unlock(&w->inbox_lock);
}

bool px_worker_queued(px_worker *w, const px_conn *c) {
    uv_mutex_lock(&w->inbox_lock);
    bool q = c->in_inbox;
    uv_mutex_unlock(&w->inbox_lock);
    return q;
}

static void on_handle_closed(uv_handle_t *h) {
    (void)h;
}

static void on_drain_deadline(uv_timer_t *t) {
    px_worker *w = t->data;
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    fprintf(stderr, "corral-proxy: worker %u: shutdown timeout, closing what is left\n", w->id);
    w->on->abort(w);
    px_worker_maybe_done(w);
}

void px_worker_maybe_done(px_worker *w) {
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    if (!w->stopping || w->closing_handles) return;
    if (!px_list_empty(&w->conns) || !px_list_empty(&w->fetches)) return;
    w->closing_handles = true;
    px_log_flush(w);
    w->on->done(w);
    px_cbuf_drop_spares(w);
    /* No connection is left, so no flight can wake us any more; the main thread may still
     * signal (SIGHUP), hence the flag under the lock. */
    uv_mutex_lock(&w->inbox_lock);
    w->inbox_closed = true;
    uv_mutex_unlock(&w->inbox_lock);
    uv_close((uv_handle_t *)&w->inbox_async, on_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&w->log_timer, on_handle_closed);
    uv_close((uv_handle_t *)&w->stall_check, on_handle_closed);
}

/* Brings the loop's clock to now; a jump of PX_STALL_MS or more means the callbacks since it
 * was last read (the poll's return, or an earlier deadline) held the loop up. */
static void read_clock(px_worker *w) {
    uint64_t before = uv_now(&w->loop);
    uv_update_time(&w->loop);
    if (uv_now(&w->loop) - before >= PX_STALL_MS) w->stall_seen = true;
}

/* Runs after the poll's callbacks: tells the next turn's timers whether this one stalled. */
static void on_stall_check(uv_check_t *h) {
    px_worker *w = h->data;
    read_clock(w);
    w->stalled = w->stall_seen;
    w->stall_seen = false;
}

bool px_worker_defer(px_worker *w, uv_timer_t *t, uv_timer_cb cb, bool *deferred) {
    /* stall_seen: a timer callback earlier in this timers phase held the loop up. */
    if (*deferred || !(w->stalled || w->stall_seen)) return false;
    *deferred = true;
    return uv_timer_start(t, cb, 1, 0) == 0;
}

int px_worker_deadline(px_worker *w, uv_timer_t *t, uv_timer_cb cb, uint64_t ms) {
    read_clock(w);
    return uv_timer_start(t, cb, ms, 0);
}

static void begin_stop(px_worker *w) {
    if (w->stopping) return;
    w->stopping = true;
    w->on->stop(w);
    int rc = uv_timer_start(&w->drain_timer, on_drain_deadline,
                            (uint64_t)w->cfg->shutdown_timeout_ms, 0);
    if (rc < 0) fprintf(stderr, "corral-proxy: drain timer: %s\n", uv_strerror(rc));
    px_worker_maybe_done(w);
}

static void on_inbox(uv_async_t *a) {
    px_worker *w = a->data;
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    uv_mutex_lock(&w->inbox_lock);
    size_t n = w->inbox_len;
    px_config *cfg = w->inbox_cfg;
    w->inbox_cfg = NULL;
    bool stop = w->inbox_stop;
    uv_mutex_unlock(&w->inbox_lock);
    if (cfg) {
        px_config_unref(w->cfg);
        w->cfg = cfg;
    }
    /* Oldest first, one at a time: a connection leaves the inbox before it is handled, so a
     * busy object that grows meanwhile queues it again. At most the connections queued on
     * entry are handled here (streaming readers requeue themselves as the body arrives); the
     * rest get the next turn of the loop. */
    for (size_t i = 0; i < n; i++) {
        uv_mutex_lock(&w->inbox_lock);
        px_conn *c = w->inbox;
        if (!c) {
            uv_mutex_unlock(&w->inbox_lock);
            break;
        }
        w->inbox = c->wake_next;
        if (!w->inbox) w->inbox_tail = NULL;
        w->inbox_len--;
        c->wake_next = NULL;
        c->in_inbox = false;
        bool flight = c->wake_flight;
        c->wake_flight = false;
        int rc = c->wake_rc;
        corral_value *v = c->wake_v;
        c->wake_v = NULL;
        uv_mutex_unlock(&w->inbox_lock);
        PX_CHECK_OBJ(c, PX_CONN_MAGIC);
        if (flight) {
            c->waiting = false;
            w->on->woken(c, rc, v);
        } else {
            w->on->stream(c);
        }
    }
    uv_mutex_lock(&w->inbox_lock);
    if (w->inbox) px_worker_signal_locked(w);
    uv_mutex_unlock(&w->inbox_lock);
    if (stop) begin_stop(w);
}

int px_worker_init(px_proxy *px, px_worker *w, unsigned id, const px_handlers *on,
                   const struct sockaddr_storage *origin) {
    memset(w, 0, sizeof *w);
    w->magic = PX_WORKER_MAGIC;
    w->px = px;
    w->on = on;
    w->id = id;
    w->metrics = &px->metrics[id];
    w->cfg = px_config_ref(px->cfg);
    w->origin_addr = *origin;
    px_list_init(&w->conns);
    px_list_init(&w->fetches);
    px_list_init(&w->idle);
    px_list_init(&w->refreshes);
    px_list_init(&w->spare_bufs);
    int rc = uv_loop_init(&w->loop);
    if (rc < 0) return px_from_uv(rc);
    w->loop.data = w;
    if ((rc = uv_mutex_init(&w->inbox_lock)) < 0) return px_from_uv(rc);
    if ((rc = uv_async_init(&w->loop, &w->inbox_async, on_inbox)) < 0) return px_from_uv(rc);
    w->inbox_async.data = w;
    if ((rc = uv_timer_init(&w->loop, &w->drain_timer)) < 0) return px_from_uv(rc);
    w->drain_timer.data = w;
    if ((rc = uv_timer_init(&w->loop, &w->log_timer)) < 0) return px_from_uv(rc);
    w->log_timer.data = w;
    if ((rc = uv_check_init(&w->loop, &w->stall_check)) < 0) return px_from_uv(rc);
    w->stall_check.data = w;
    if ((rc = uv_check_start(&w->stall_check, on_stall_check)) < 0) return px_from_uv(rc);
    w->handles_ready = true;
    return PX_OK;
}
