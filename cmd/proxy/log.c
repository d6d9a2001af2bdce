/*
 * log.c - the access log: one line per request, in one of three formats (access_log_format):
 *
 *   corral    2026-01-01T10:00:00.123Z 127.0.0.1 "GET /blog/1 HTTP/1.1" 200 5120 HIT blog 0.2ms
 *                 "fresh (max-age)" "-"       (one line: the lookup's and the store's reasons)
 *   combined  127.0.0.1 - - [01/Jan/2026:10:00:00 +0000] "GET /blog/1 HTTP/1.1" 200 5120
 *                 "https://ref/" "curl/7.88"  (Apache's and nginx's "combined", one line)
 *   json      {"time":"2026-01-01T10:00:00.123Z","client":"127.0.0.1","method":"GET",...}
 *
 * Order: the time of a line is when its answer was complete (as nginx's $time_local), and the
 * lines of all workers come out in the order of their times. Every worker appends to one shared
 * buffer (px_alog) under its lock, reading the clock inside the lock: so the buffer is in time
 * order by construction. The line is formatted before, with a placeholder of fixed width where
 * the time goes, so the lock covers a clock read, a time stamp and a memcpy. Flushing swaps the
 * buffer out under the lock and writes it with one write(2) per flush, outside it, under a
 * second lock that keeps flushes (on any worker) in order. A clock that steps back is held at
 * the last time written, so the order holds; the times then stand still until it catches up.
 *
 * The buffer is flushed by a 100 ms timer of the worker that appended, or at once when it passes
 * 64 KiB; lines beyond 4 MiB unwritten (a log file that blocks) are dropped, and a failed write
 * drops the batch: the log must never stall the proxy. In combined and json, fields from the
 * request (target, Referer, User-Agent) are escaped: `"`, `\` and bytes outside printable ASCII
 * as \xHH in combined (as nginx), as JSON escapes (\u00HH for each such byte) in json.
 *
 * Threads: px_log_request and px_log_flush on any worker's loop thread; px_alog_new and
 * px_alog_free on the main thread. Locks: `lock` (the buffer), `write_lock` (one flush at a
 * time); write_lock is taken before lock, and both are leaves otherwise.
 */
#include "proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_MS     100
#define FLUSH_BYTES  65536
#define MAX_PENDING  (4u << 20)
#define LINE_MAX_LEN 8192
#define TARGET_MAX   2000
#define FIELD_MAX    512

/* Widths of the time placeholders: "2026-01-01T10:00:00.123Z", "01/Jan/2026:10:00:00 +0000". */
#define ISO_LEN 24
#define CLF_LEN 26

struct px_alog {
    uv_mutex_t lock;       /* buf, len, cap, last_ms, the cached second */
    uv_mutex_t write_lock; /* one flush at a time, so batches reach the file in order */
    char *buf;
    size_t len, cap;
    int64_t last_ms; /* the time of the newest line: a clock stepping back is held here */
    int64_t sec;     /* the second whose stamps are cached below (-1: none) */
    char iso_sec[ISO_LEN + 1], clf_sec[CLF_LEN + 1];
};

struct px_alog *px_alog_new(void) {
    struct px_alog *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (uv_mutex_init(&l->lock) < 0) {
        free(l);
        return NULL;
    }
    if (uv_mutex_init(&l->write_lock) < 0) {
        uv_mutex_destroy(&l->lock);
        free(l);
        return NULL;
    }
    l->sec = -1;
    return l;
}

static void write_all(int fd, const char *p, size_t len) {
    size_t off = 0;
    while (fd >= 0 && off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
}

/* Swaps the buffer out and writes it to `fd`. */
static void alog_flush(struct px_alog *l, int fd) {
    uv_mutex_lock(&l->write_lock);
    uv_mutex_lock(&l->lock);
    char *p = l->buf;
    size_t len = l->len;
    l->buf = NULL;
    l->len = l->cap = 0;
    uv_mutex_unlock(&l->lock);
    write_all(fd, p, len);
    free(p);
    uv_mutex_unlock(&l->write_lock);
}

void px_alog_free(struct px_alog *l, int fd) {
    if (!l) return;
    alog_flush(l, fd);
    uv_mutex_destroy(&l->lock);
    uv_mutex_destroy(&l->write_lock);
    free(l);
}

void px_log_flush(px_worker *w) {
    alog_flush(w->px->alog, w->cfg->log_fd);
}

static void on_log_timer(uv_timer_t *t) {
    px_log_flush(t->data);
}

/* ---- Formatting ---- */

typedef struct line {
    char *p;
    size_t len, cap;
    bool failed;
} line;

static void add(line *o, const char *s, size_t n) {
    if (o->failed || n > o->cap - o->len) {
        o->failed = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void adds(line *o, const char *s) {
    add(o, s, strlen(s));
}

static void addf(line *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void addf(line *o, const char *fmt, ...) {
    if (o->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->failed = true;
        return;
    }
    o->len += (size_t)n;
}

/* Copies a reason into the line without quotes or control bytes (the corral format). */
static void add_clean(line *o, const char *s) {
    if (!s) s = "-";
    for (; *s; s++) {
        char c = (*s == '"' || (unsigned char)*s < 0x20) ? '\'' : *s;
        add(o, &c, 1);
    }
}

/* Request bytes in a quoted field: `"`, `\` and bytes outside 0x20-0x7e escaped, as \xHH
 * (combined) or as JSON escapes. At most `max` input bytes. */
static void add_escaped(line *o, const char *s, size_t n, size_t max, bool json) {
    static const char hex[] = "0123456789ABCDEF";
    if (n > max) n = max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            add(o, (const char *)&c, 1);
        } else if (json && (c == '"' || c == '\\')) {
            char e[2] = { '\\', (char)c };
            add(o, e, 2);
        } else if (json) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            add(o, e, 6);
        } else {
            char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
            add(o, e, 4);
        }
    }
}

static void add_header(line *o, const corral_http_msg *m, const char *name, bool json) {
    const corral_http_header *h = m ? corral_http_msg_get(m, name, NULL) : NULL;
    if (h)
        add_escaped(o, h->value, h->value_len, FIELD_MAX, json);
    else if (!json)
        adds(o, "-");
}

/* Leaves `n` bytes for the time, returning where they are. */
static size_t placeholder(line *o, size_t n) {
    size_t at = o->len;
    static const char spaces[32] = "                               ";
    add(o, spaces, n);
    return at;
}

/* Formats the line of `c` into `o`, with a placeholder for the time: its offset goes to *at. */
static void format_line(line *o, px_conn *c, int format, size_t *at) {
    const px_request *rq = &c->req;
    const corral_http_msg *m = rq->raw;
    const char *peer = c->peer[0] ? c->peer : "-";
    double ms = (double)(uv_hrtime() - rq->start_ns) / 1e6;
    int tlen = m ? (m->target_len > TARGET_MAX ? TARGET_MAX : (int)m->target_len) : 0;
    if (format == PX_LOG_COMBINED) {
        addf(o, "%s - - [", peer);
        *at = placeholder(o, CLF_LEN);
        adds(o, "] \"");
        if (m) {
            add_escaped(o, m->method_name, m->method_len, 32, false);
            adds(o, " ");
            add_escaped(o, m->target, (size_t)tlen, TARGET_MAX, false);
            addf(o, " HTTP/1.%u", m->version_minor);
        } else {
            adds(o, "-");
        }
        addf(o, "\" %u %" PRIu64 " \"", rq->status, rq->body_bytes);
        add_header(o, m, "referer", false);
        adds(o, "\" \"");
        add_header(o, m, "user-agent", false);
        adds(o, "\"\n");
    } else if (format == PX_LOG_JSON) {
        adds(o, "{\"time\":\"");
        *at = placeholder(o, ISO_LEN);
        adds(o, "\",\"client\":\"");
        add_escaped(o, peer, strlen(peer), FIELD_MAX, true);
        if (m) {
            adds(o, "\",\"method\":\"");
            add_escaped(o, m->method_name, m->method_len, 32, true);
            adds(o, "\",\"target\":\"");
            add_escaped(o, m->target, (size_t)tlen, TARGET_MAX, true);
            addf(o, "\",\"protocol\":\"HTTP/1.%u", m->version_minor);
        }
        addf(o, "\",\"status\":%u,\"bytes\":%" PRIu64 ",\"cache\":\"%s\",\"route\":\"", rq->status,
             rq->body_bytes, px_result_name(rq->result));
        add_escaped(o, rq->route->name, strlen(rq->route->name), FIELD_MAX, true);
        addf(o, "\",\"duration_ms\":%.3f,\"reason\":\"", ms);
        const char *reason = rq->reason ? rq->reason : "";
        add_escaped(o, reason, strlen(reason), FIELD_MAX, true);
        adds(o, "\",\"store_reason\":\"");
        const char *sr = m && rq->store_reason ? rq->store_reason : "";
        add_escaped(o, sr, strlen(sr), FIELD_MAX, true);
        adds(o, "\",\"referer\":\"");
        add_header(o, m, "referer", true);
        adds(o, "\",\"user_agent\":\"");
        add_header(o, m, "user-agent", true);
        adds(o, "\"}\n");
    } else {
        *at = placeholder(o, ISO_LEN);
        addf(o, " %s ", peer);
        if (m)
            addf(o, "\"%.*s %.*s HTTP/1.%u\"", (int)m->method_len, m->method_name, tlen, m->target,
                 m->version_minor);
        else
            adds(o, "\"-\"");
        addf(o, " %u %" PRIu64 " %s %s %.1fms \"", rq->status, rq->body_bytes,
             px_result_name(rq->result), rq->route->name, ms);
        add_clean(o, rq->reason);
        adds(o, "\" \"");
        add_clean(o, m ? rq->store_reason : NULL);
        adds(o, "\"\n");
    }
}

/* Writes the time `now_ms` into the placeholder at `dst` (ISO 8601 UTC with milliseconds, or the
 * common log format's). The second's part is cached. Caller holds l->lock. */
static void stamp_locked(struct px_alog *l, int64_t now_ms, int format, char *dst) {
    int64_t sec = now_ms / 1000;
    if (sec != l->sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        if (!gmtime_r(&t, &tm) ||
            strftime(l->iso_sec, sizeof l->iso_sec, "%Y-%m-%dT%H:%M:%S", &tm) != 19 ||
            strftime(l->clf_sec, sizeof l->clf_sec, "%d/%b/%Y:%H:%M:%S +0000", &tm) != CLF_LEN) {
            memset(dst, '-', format == PX_LOG_COMBINED ? CLF_LEN : ISO_LEN);
            return;
        }
        l->sec = sec;
    }
    if (format == PX_LOG_COMBINED) {
        memcpy(dst, l->clf_sec, CLF_LEN);
    } else {
        unsigned ms = (unsigned)(now_ms % 1000);
        char frac[5] = { '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10),
                         (char)('0' + ms % 10), 'Z' };
        memcpy(dst, l->iso_sec, 19);
        memcpy(dst + 19, frac, sizeof frac);
    }
}

void px_log_request(px_conn *c) {
    px_worker *w = c->w;
    const px_request *rq = &c->req;
    if (!rq->cfg || rq->cfg->log_fd < 0 || w->cfg->log_fd < 0) return;
    char buf[LINE_MAX_LEN];
    line o = { .p = buf, .cap = sizeof buf };
    size_t at = 0;
    int format = rq->cfg->log_format;
    format_line(&o, c, format, &at);
    if (o.failed) return; /* a line too long is dropped */

    struct px_alog *l = w->px->alog;
    struct timespec ts;
    uv_mutex_lock(&l->lock);
    /* The clock is read under the lock: the order in the buffer is the order of the times. */
    int64_t now_ms = l->last_ms;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now_ms < l->last_ms) now_ms = l->last_ms;
    bool ok = l->len + o.len <= MAX_PENDING;
    if (ok && l->cap - l->len < o.len) {
        size_t cap = l->cap ? l->cap * 2 : FLUSH_BYTES + LINE_MAX_LEN;
        while (cap - l->len < o.len)
            cap *= 2;
        char *p = realloc(l->buf, cap);
        if (p) {
            l->buf = p;
            l->cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok) {
        l->last_ms = now_ms;
        stamp_locked(l, now_ms, format, buf + at);
        memcpy(l->buf + l->len, buf, o.len);
        l->len += o.len;
    }
    bool full = l->len >= FLUSH_BYTES;
    uv_mutex_unlock(&l->lock);
    if (full) {
        px_log_flush(w);
    } else if (ok && !uv_is_active((uv_handle_t *)&w->log_timer) && !w->closing_handles) {
        if (uv_timer_start(&w->log_timer, on_log_timer, FLUSH_MS, 0) < 0) px_log_flush(w);
    }
}
