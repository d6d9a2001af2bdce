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
 * the time goes, so the lock covers a clock read, a time stamp and a memcpy. A clock that steps
 * back is held at the last time written, so the order holds; the times then stand still until it
 * catches up.
 *
 * Writing: one writer thread does every write(2), so a log that blocks (a full pipe, a FIFO
 * nobody reads, a hung disk) stalls only it, never a worker. Workers ask it to write: a 100 ms
 * timer of the worker that appended, or at once past 64 KiB. It swaps the buffer out under the
 * lock and writes it outside. Lines the writer is more than 4 MiB behind on are dropped and
 * counted (corral_proxy_access_log_dropped_lines_total), as are the lines of a failed write.
 * Reopen (SIGHUP): the buffer goes to the snapshot it was written for, each snapshot holding its
 * own log fd; lines appended after px_alog_reopen go to the new snapshot's, whichever snapshot
 * the worker that appends them still holds. At exit the writer gets WRITER_EXIT_MS to write what
 * is left; a log that still blocks then loses it.
 *
 * In combined and json, fields from the request (target, Referer, User-Agent) are escaped: `"`,
 * `\` and bytes outside printable ASCII as \xHH in combined (as nginx), as JSON escapes (\u00HH
 * for each such byte) in json.
 *
 * The writer also writes the lines other threads must not block on to stderr (px_alog_note:
 * the store's state changes, told on whichever thread saw them), first, as they come.
 *
 * Threads: px_log_request and px_log_flush on any worker's loop thread; px_alog_note on any;
 * px_alog_new,
 * px_alog_reopen, px_alog_free on the main thread, px_alog_dropped on any. `lock` guards every
 * field but `dropped` (atomic); it is a leaf, and never held across I/O.
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

#define FLUSH_MS       100
#define FLUSH_BYTES    65536
#define MAX_PENDING    (4u << 20)
#define LINE_MAX_LEN   8192
#define TARGET_MAX     2000
#define FIELD_MAX      512
#define WRITER_EXIT_MS 1000
#define NOTES_MAX      8192 /* stderr bytes queued by px_alog_note; lines beyond are dropped */

/* Widths of the time placeholders: "2026-01-01T10:00:00.123Z", "01/Jan/2026:10:00:00 +0000". */
#define ISO_LEN 24
#define CLF_LEN 26

/* Lines of an earlier snapshot, waiting for the writer after a reopen. */
typedef struct alog_batch {
    struct alog_batch *next;
    px_config *cfg; /* a reference: its log_fd stays open until the lines are written */
    char *buf;
    size_t len;
} alog_batch;

struct px_alog {
    uv_mutex_t lock; /* every field below but `dropped` */
    uv_cond_t wake;  /* to the writer: lines to write, a batch, or stop */
    uv_cond_t done;  /* from the writer: it has ended */
    uv_thread_t writer;
    px_config *cfg; /* the snapshot whose log_fd `buf` goes to (a reference) */
    char *buf;
    size_t len, cap;
    alog_batch *retired, **retired_tail; /* older snapshots' lines, oldest first */
    size_t unwritten;                    /* bytes appended and not yet written, all batches */
    bool flush, stop, ended;
    atomic_uint_fast64_t dropped; /* lines dropped: too far behind, or a write failed */
    int64_t last_ms;              /* the time of the newest line: a clock stepping back is held */
    int64_t sec;                  /* the second whose stamps are cached below (-1: none) */
    char iso_sec[ISO_LEN + 1], clf_sec[CLF_LEN + 1];
    char notes[NOTES_MAX]; /* lines for stderr (px_alog_note), whole lines only */
    size_t notes_len;
};

/* Writes everything, or counts the lines it could not write. */
static void write_all(struct px_alog *l, int fd, const char *p, size_t len) {
    size_t off = 0;
    while (fd >= 0 && off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    uint64_t lost = 0;
    for (size_t i = off; fd >= 0 && i < len; i++)
        lost += p[i] == '\n';
    if (lost) atomic_fetch_add_explicit(&l->dropped, lost, memory_order_relaxed);
}

static void writer_main(void *arg) {
    struct px_alog *l = arg;
    char notes[NOTES_MAX];
    uv_mutex_lock(&l->lock);
    for (;;) {
        alog_batch b = { 0 };
        if (l->notes_len) {
            size_t len = l->notes_len;
            memcpy(notes, l->notes, len);
            l->notes_len = 0;
            uv_mutex_unlock(&l->lock);
            for (size_t off = 0; off < len;) { /* a failing stderr loses them: nowhere to say */
                ssize_t n = write(STDERR_FILENO, notes + off, len - off);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                off += (size_t)n;
            }
            uv_mutex_lock(&l->lock);
            continue;
        }
        if (l->retired) {
            alog_batch *r = l->retired;
            l->retired = r->next;
            if (!l->retired) l->retired_tail = &l->retired;
            b = *r;
            free(r);
        } else if (l->len && (l->flush || l->stop)) {
            b = (alog_batch){ .cfg = px_config_ref(l->cfg), .buf = l->buf, .len = l->len };
            l->buf = NULL;
            l->len = l->cap = 0;
            l->flush = false;
        } else if (l->stop) {
            break;
        } else {
            uv_cond_wait(&l->wake, &l->lock);
            continue;
        }
        uv_mutex_unlock(&l->lock);
        write_all(l, b.cfg->log_fd, b.buf, b.len);
        free(b.buf);
        px_config_unref(b.cfg);
        uv_mutex_lock(&l->lock);
        l->unwritten -= b.len;
    }
    l->ended = true;
    uv_cond_signal(&l->done);
    uv_mutex_unlock(&l->lock);
}

struct px_alog *px_alog_new(px_config *cfg) {
    struct px_alog *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (uv_mutex_init(&l->lock) < 0) goto free_l;
    if (uv_cond_init(&l->wake) < 0) goto free_lock;
    if (uv_cond_init(&l->done) < 0) goto free_wake;
    l->cfg = px_config_ref(cfg);
    l->retired_tail = &l->retired;
    l->sec = -1;
    atomic_init(&l->dropped, 0);
    if (uv_thread_create(&l->writer, writer_main, l) == 0) return l;
    px_config_unref(l->cfg);
    uv_cond_destroy(&l->done);
free_wake:
    uv_cond_destroy(&l->wake);
free_lock:
    uv_mutex_destroy(&l->lock);
free_l:
    free(l);
    return NULL;
}

int px_alog_reopen(struct px_alog *l, px_config *cfg) {
    alog_batch *b = malloc(sizeof *b);
    if (!b) return PX_ENOMEM;
    uv_mutex_lock(&l->lock);
    *b = (alog_batch){ .cfg = l->cfg, .buf = l->buf, .len = l->len };
    l->cfg = px_config_ref(cfg);
    l->buf = NULL;
    l->len = l->cap = 0;
    /* A flush asked for the lines moved to `b` is done by writing `b`; a flag left set would keep
     * the next lines' timer from starting, and they would wait for 64 KiB more. */
    l->flush = false;
    if (b->len) {
        *l->retired_tail = b;
        l->retired_tail = &b->next;
        uv_cond_signal(&l->wake);
        b = NULL;
    }
    uv_mutex_unlock(&l->lock);
    if (b) {
        px_config_unref(b->cfg);
        free(b);
    }
    return 0;
}

void px_alog_note(struct px_alog *l, const char *line, size_t len) {
    uv_mutex_lock(&l->lock);
    if (len <= NOTES_MAX - l->notes_len) {
        memcpy(l->notes + l->notes_len, line, len);
        l->notes_len += len;
        uv_cond_signal(&l->wake);
    }
    uv_mutex_unlock(&l->lock);
}

uint64_t px_alog_dropped(struct px_alog *l) {
    return atomic_load_explicit(&l->dropped, memory_order_relaxed);
}

void px_alog_free(struct px_alog *l) {
    if (!l) return;
    uv_mutex_lock(&l->lock);
    l->stop = true;
    uv_cond_signal(&l->wake);
    uint64_t deadline = uv_hrtime() + (uint64_t)WRITER_EXIT_MS * 1000000u;
    while (!l->ended) {
        uint64_t now = uv_hrtime();
        if (now >= deadline || uv_cond_timedwait(&l->done, &l->lock, deadline - now) != 0) break;
    }
    bool ended = l->ended;
    uv_mutex_unlock(&l->lock);
    if (!ended) {
        /* The writer is stuck in a write that blocks: the process ends without it, and `l`
         * stays allocated for it. */
        fprintf(stderr, "corral-proxy: the access log blocks; its last lines are lost\n");
        return;
    }
    uv_thread_join(&l->writer);
    px_config_unref(l->cfg);
    uv_cond_destroy(&l->done);
    uv_cond_destroy(&l->wake);
    uv_mutex_destroy(&l->lock);
    free(l);
}

void px_log_flush(px_worker *w) {
    struct px_alog *l = w->px->alog;
    uv_mutex_lock(&l->lock);
    if (l->len) {
        l->flush = true;
        uv_cond_signal(&l->wake);
    }
    uv_mutex_unlock(&l->lock);
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
    if (!rq->cfg || rq->cfg->log_fd < 0) return;
    char buf[LINE_MAX_LEN];
    line o = { .p = buf, .cap = sizeof buf };
    size_t at = 0;
    int format = rq->cfg->log_format;
    format_line(&o, c, format, &at);
    if (o.failed) return; /* a line too long is dropped */

    struct px_alog *l = w->px->alog;
    struct timespec ts;
    uv_mutex_lock(&l->lock);
    if (l->cfg->log_fd < 0) { /* the log was turned off by a reload */
        uv_mutex_unlock(&l->lock);
        return;
    }
    /* The clock is read under the lock: the order in the buffer is the order of the times. */
    int64_t now_ms = l->last_ms;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now_ms < l->last_ms) now_ms = l->last_ms;
    bool ok = l->unwritten + o.len <= MAX_PENDING;
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
        l->unwritten += o.len;
        if (l->len >= FLUSH_BYTES) {
            l->flush = true;
            uv_cond_signal(&l->wake);
        }
    } else {
        atomic_fetch_add_explicit(&l->dropped, 1, memory_order_relaxed);
    }
    bool flushing = l->flush;
    uv_mutex_unlock(&l->lock);
    if (ok && !flushing && !uv_is_active((uv_handle_t *)&w->log_timer) && !w->closing_handles) {
        if (uv_timer_start(&w->log_timer, on_log_timer, FLUSH_MS, 0) < 0) px_log_flush(w);
    }
}
