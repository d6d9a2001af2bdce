/*
 * log.c - the access log: one line per request, with the cache result and the engine's reason:
 *
 *   2026-01-01T10:00:00.123Z 127.0.0.1 "GET /blog/1 HTTP/1.1" 200 5120 HIT blog 0.2ms
 *       "fresh (max-age)" "-"
 *
 * (one line; the last two fields are the lookup's reason and the store decision's reason).
 * Lines go into the worker's buffer and are written by a 100 ms timer, or at once when the
 * buffer passes 64 KiB, with one write(2) per flush: the file is opened O_APPEND, so lines of
 * several workers never interleave within a line. A failed write drops the buffer (the log
 * must never stall the proxy).
 *
 * Threads: the worker's loop thread.
 */
#include "proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_MS     100
#define FLUSH_BYTES  65536
#define LINE_MAX_LEN 4096
#define TARGET_MAX   2000

void px_log_flush(px_worker *w) {
    if (w->log_len == 0) return;
    int fd = w->cfg->log_fd;
    size_t off = 0;
    while (fd >= 0 && off < w->log_len) {
        ssize_t n = write(fd, w->log_buf + off, w->log_len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    w->log_len = 0;
}

static void on_log_timer(uv_timer_t *t) {
    px_log_flush(t->data);
}

/* Copies a reason into the line without quotes or control bytes. */
static size_t clean(char *out, size_t cap, const char *s) {
    if (!s) s = "-";
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        out[n++] = (*s == '"' || (unsigned char)*s < 0x20) ? '\'' : *s;
    out[n] = '\0';
    return n;
}

void px_log_request(px_conn *c) {
    px_worker *w = c->w;
    const px_request *rq = &c->req;
    if (!rq->cfg || rq->cfg->log_fd < 0 || w->cfg->log_fd < 0) return;
    if (w->log_cap - w->log_len < LINE_MAX_LEN) {
        size_t cap = w->log_cap ? w->log_cap * 2 : FLUSH_BYTES + LINE_MAX_LEN;
        char *p = realloc(w->log_buf, cap);
        if (!p) return;
        w->log_buf = p;
        w->log_cap = cap;
    }
    time_t secs = (time_t)(rq->now_ms / 1000);
    struct tm tm;
    char when[32] = "-";
    if (gmtime_r(&secs, &tm) && strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        memcpy(when, "-", 2);
    const corral_http_msg *m = rq->raw;
    char reason[160], store_reason[160];
    clean(reason, sizeof reason, rq->reason);
    clean(store_reason, sizeof store_reason, rq->store_reason);
    double ms = (double)(uv_hrtime() - rq->start_ns) / 1e6;
    int n;
    if (m) {
        int tlen = m->target_len > TARGET_MAX ? TARGET_MAX : (int)m->target_len;
        n = snprintf(w->log_buf + w->log_len, w->log_cap - w->log_len,
                     "%s.%03dZ %s \"%.*s %.*s HTTP/1.%u\" %u %" PRIu64 " %s %s %.1fms \"%s\" "
                     "\"%s\"\n",
                     when, (int)(rq->now_ms % 1000), c->peer[0] ? c->peer : "-", (int)m->method_len,
                     m->method_name, tlen, m->target, m->version_minor, rq->status, rq->body_bytes,
                     px_result_name(rq->result), rq->route->name, ms, reason, store_reason);
    } else {
        n = snprintf(w->log_buf + w->log_len, w->log_cap - w->log_len,
                     "%s.%03dZ %s \"-\" %u %" PRIu64 " %s %s %.1fms \"%s\" \"-\"\n", when,
                     (int)(rq->now_ms % 1000), c->peer[0] ? c->peer : "-", rq->status,
                     rq->body_bytes, px_result_name(rq->result), rq->route->name, ms, reason);
    }
    if (n < 0 || (size_t)n >= w->log_cap - w->log_len) return; /* a line too long is dropped */
    w->log_len += (size_t)n;
    if (w->log_len >= FLUSH_BYTES) {
        px_log_flush(w);
    } else if (!uv_is_active((uv_handle_t *)&w->log_timer) && !w->closing_handles) {
        int rc = uv_timer_start(&w->log_timer, on_log_timer, FLUSH_MS, 0);
        if (rc < 0) px_log_flush(w);
    }
}
