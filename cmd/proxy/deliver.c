/*
 * deliver.c - corral-proxy's answers from the cache: a stored object served whole (its head
 * rewritten for the client, its body referenced, not copied), and a busy object (busy.c)
 * streamed to a connection as its body arrives, paced by the client's write queue. Both answer
 * Range requests (RFC 9110 §14) when the engine says so: from a stored object, the ranges in the
 * order asked (one part, or multipart/byteranges), its bytes referenced; from a busy object with
 * a Content-Length, ranges in body order, cut from the stream as it arrives (others get the
 * whole answer, which §14.2 always allows).
 *
 * Threads: the loop thread of the connection's worker.
 */
#include "proxy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Fields for the proxy alone ---- */

int px_client_view(const px_config *cfg, const corral_http_msg *m, corral_http_header *tmp,
                   size_t max, corral_http_msg *out) {
    const char *names[8];
    char list[sizeof cfg->cc_targets];
    size_t n = 0;
    if (!cfg->keep_surrogate_key) names[n++] = "surrogate-key";
    memcpy(list, cfg->cc_targets, sizeof list);
    list[sizeof list - 1] = '\0';
    for (char *p = list; *p && n < sizeof names / sizeof names[0];) {
        names[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = '\0';
        p = comma + 1;
    }
    if (corral_http_msg_drop_fields(m, names, n, tmp, max, out) == CORRAL_OK) return 0;
    *out = *m;
    return PX_ETOOBIG;
}

/* ---- Ranges (RFC 9110 §14; the engine decides, corral_http_range_select) ---- */

/* 416: nothing of the `length` bytes is in the ranges asked. */
static void answer_416(px_conn *c, px_result r, uint64_t length) {
    px_request *rq = &c->req;
    rq->status = 416;
    rq->responded = true;
    rq->resp_chunked = false;
    char extra[160], cr[64];
    size_t elen = px_conn_extra(c, r, extra, sizeof extra), crlen;
    if (corral_http_write_content_range(NULL, length, cr, sizeof cr, &crlen) != CORRAL_OK)
        crlen = 0;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 416 Range Not Satisfiable\r\n%.*sContent-Length: 0\r\n%.*s\r\n",
                     (int)crlen, cr, (int)elen, extra);
    if (n < 0 || (size_t)n >= sizeof head) {
        px_conn_abort(c);
        return;
    }
    px_conn_send_whole(c, head, (size_t)n, NULL, 0, NULL);
    px_conn_end(c);
}

/* The length of part `i`'s multipart header (its delimiter, Content-Type, Content-Range), or of
 * the close delimiter when `i` is n_ranges. */
static size_t part_len(const px_request *rq, const corral_http_msg *head, size_t i) {
    size_t len = 0;
    const corral_http_range *r = i < rq->n_ranges ? &rq->ranges[i] : NULL;
    (void)corral_http_write_byteranges_part(head, rq->boundary, strlen(rq->boundary), r,
                                            rq->range_length, i == 0, NULL, 0, &len);
    return len;
}

/* Sends part `i`'s multipart header (or the close delimiter), copied. */
static void send_part(px_conn *c, const corral_http_msg *head, size_t i) {
    px_request *rq = &c->req;
    char buf[1024];
    size_t len;
    const corral_http_range *r = i < rq->n_ranges ? &rq->ranges[i] : NULL;
    if (corral_http_write_byteranges_part(head, rq->boundary, strlen(rq->boundary), r,
                                          rq->range_length, i == 0, buf, sizeof buf,
                                          &len) == CORRAL_OK)
        px_conn_body(c, buf, len, NULL);
    else
        px_conn_abort(c); /* a Content-Type over 900 bytes: the length said was a lie */
}

/* Sends the 206 head for the request's ranges (rq->ranges, n_ranges, range_length) from stored
 * head `stored`, `age_s` old. Returns 0, or -1 when it cannot be written (nothing sent). */
static int send_206_head(px_conn *c, px_result r, const corral_http_msg *stored, int64_t age_s) {
    px_request *rq = &c->req;
    corral_http_header kept[PX_OBJ_MAX_HEADERS], kept2[PX_OBJ_MAX_HEADERS];
    corral_http_msg head;
    (void)px_client_view(rq->cfg, stored, kept, PX_OBJ_MAX_HEADERS, &head);
    uint64_t body = 0;
    char extra[320];
    size_t elen = 0;
    if (rq->n_ranges == 1) {
        rq->boundary[0] = '\0';
        body = rq->ranges[0].last - rq->ranges[0].first + 1;
        if (corral_http_write_content_range(&rq->ranges[0], rq->range_length, extra, sizeof extra,
                                            &elen) != CORRAL_OK)
            return -1;
    } else {
        /* A boundary no body can be made to contain on purpose: from the clock and the
         * connection, hashed (RFC 2046 §5.1.1 wants it absent from the parts). */
        uint64_t seed[2] = { uv_hrtime(), (uint64_t)(uintptr_t)c };
        snprintf(rq->boundary, sizeof rq->boundary, "corral-%016llx",
                 (unsigned long long)px_hash64(seed, sizeof seed, rq->range_length));
        for (size_t i = 0; i <= rq->n_ranges; i++) {
            body += part_len(rq, stored, i);
            if (i < rq->n_ranges) body += rq->ranges[i].last - rq->ranges[i].first + 1;
        }
        int n = snprintf(extra, sizeof extra, "Content-Type: multipart/byteranges; boundary=%s\r\n",
                         rq->boundary);
        if (n < 0 || (size_t)n >= sizeof extra) return -1;
        elen = (size_t)n;
        /* The representation's Content-Type moves into each part. */
        static const char *const ct[] = { "content-type" };
        corral_http_msg view = head;
        if (corral_http_msg_drop_fields(&view, ct, 1, kept2, PX_OBJ_MAX_HEADERS, &head) !=
            CORRAL_OK)
            return -1;
    }
    elen += px_conn_extra(c, r, extra + elen, sizeof extra - elen);
    char stack[8192];
    char *buf = stack;
    size_t len;
    int rc = corral_http_write_cached_head(&head, 206, age_s, (int64_t)body, extra, elen, buf,
                                           sizeof stack, &len);
    if (rc == CORRAL_ENOSPC && (buf = malloc(len)) != NULL)
        rc = corral_http_write_cached_head(&head, 206, age_s, (int64_t)body, extra, elen, buf, len,
                                           &len);
    if (rc < 0 || !buf) {
        if (buf != stack) free(buf);
        return -1;
    }
    rq->status = 206;
    rq->responded = true;
    rq->resp_chunked = false;
    px_conn_send(c, buf, len);
    if (buf != stack) free(buf);
    return 0;
}

/* The ranges of `o` the request asks for: 1 (rq->ranges set), 0 (none: the whole response),
 * or -1 after answering 416. */
static int select_ranges(px_conn *c, px_result r, const corral_http_msg *head, uint64_t length) {
    px_request *rq = &c->req;
    size_t n = 0;
    int rc = corral_http_range_select(&rq->msg, head, length, rq->ranges, PX_MAX_RANGES, &n);
    if (rc == CORRAL_HTTP_RANGE_UNSATISFIABLE) {
        answer_416(c, r, length);
        return -1;
    }
    if (rc != CORRAL_OK || n == 0) return 0;
    rq->n_ranges = n;
    rq->range_i = 0;
    rq->range_open = false;
    rq->range_length = length;
    return 1;
}

/* Sends what of the body bytes [at, at + len) the ranges select (they are ascending), with the
 * multipart headers before each part; rq->range_i is the range in progress. */
static void range_piece(px_conn *c, const corral_http_msg *head, const char *data, size_t len,
                        uint64_t at) {
    px_request *rq = &c->req;
    uint64_t end = at + len;
    while (rq->range_i < rq->n_ranges && !c->closing) {
        const corral_http_range *r = &rq->ranges[rq->range_i];
        if (r->first >= end) return;
        if (rq->n_ranges > 1 && !rq->range_open) send_part(c, head, rq->range_i);
        rq->range_open = true;
        uint64_t from = r->first > at ? r->first : at;
        uint64_t to = r->last + 1 < end ? r->last + 1 : end;
        if (from < to) px_conn_body(c, data + (from - at), (size_t)(to - from), NULL);
        if (r->last + 1 > end) return; /* continues in the next piece */
        rq->range_i++;
        rq->range_open = false;
    }
}

bool px_cache_stream_ranges(px_conn *c, px_busy *b, const corral_http_msg *head, int64_t age_s) {
    px_request *rq = &c->req;
    uint64_t length;
    if (rq->is_head || !corral_http_msg_get(&rq->msg, "range", NULL) || !px_busy_length(b, &length))
        return false;
    px_result r = rq->result;
    int sel = select_ranges(c, r, head, length);
    if (sel < 0) {
        px_busy_unref(b);
        return true;
    }
    for (size_t i = 1; sel && i < rq->n_ranges; i++)
        if (rq->ranges[i].first <= rq->ranges[i - 1].last) sel = 0; /* not in body order */
    if (!sel) {
        rq->n_ranges = 0;
        return false;
    }
    if (send_206_head(c, r, head, age_s) < 0) {
        rq->n_ranges = 0;
        return false;
    }
    if (c->closing) {
        px_busy_unref(b);
        return true;
    }
    px_cache_stream_busy(c, b);
    return true;
}

/* ---- Answering from the cache ---- */

/* Answers the request's ranges of its object (rq->ranges), in the order asked: the body bytes
 * are referenced from the stored value, not copied. */
static void answer_ranges(px_conn *c, px_result r, int64_t age_s) {
    px_request *rq = &c->req;
    const px_obj *o = &rq->obj;
    if (send_206_head(c, r, &o->head, age_s) < 0) {
        px_conn_simple(c, 500, "Internal Server Error", "cannot write the stored head\n",
                       PX_R_ERROR, "206 head");
        return;
    }
    for (size_t i = 0; i < rq->n_ranges && !c->closing; i++) {
        if (rq->n_ranges > 1) send_part(c, &o->head, i);
        const corral_http_range *g = &rq->ranges[i];
        px_conn_body(c, o->body + g->first, (size_t)(g->last - g->first + 1), o->v);
    }
    if (rq->n_ranges > 1 && !c->closing) send_part(c, &o->head, rq->n_ranges);
    px_conn_end(c);
}

void px_cache_answer(px_conn *c, px_result r, const char *reason, int64_t age_s) {
    px_request *rq = &c->req;
    const px_obj *o = &rq->obj;
    corral_http_header kept[PX_OBJ_MAX_HEADERS];
    corral_http_msg head;
    (void)px_client_view(rq->cfg, &o->head, kept, PX_OBJ_MAX_HEADERS, &head); /* never too many */
    rq->result = r;
    rq->reason = reason;
    unsigned cs = corral_http_conditional_status(&rq->msg, &o->head, rq->now_ms);
    if (cs == 412) {
        px_conn_simple(c, 412, "Precondition Failed", "", r, reason);
        return;
    }
    if (cs != 304) {
        int sel = select_ranges(c, r, &o->head, o->body_len);
        if (sel < 0) return;
        if (sel > 0) {
            answer_ranges(c, r, age_s);
            return;
        }
    }
    char extra[160];
    size_t elen = px_conn_extra(c, r, extra, sizeof extra);
    char stack[8192];
    char *buf = stack;
    size_t len;
    unsigned status = cs == 304 ? 304 : 0;
    int rc = corral_http_write_cached_head(&head, status, age_s, (int64_t)o->body_len, extra, elen,
                                           buf, sizeof stack, &len);
    if (rc == CORRAL_ENOSPC && (buf = malloc(len)) != NULL)
        rc = corral_http_write_cached_head(&head, status, age_s, (int64_t)o->body_len, extra, elen,
                                           buf, len, &len);
    if (rc < 0 || !buf) {
        if (buf != stack) free(buf);
        px_conn_simple(c, 500, "Internal Server Error", "cannot write the stored head\n",
                       PX_R_ERROR, px_strerror(px_from_corral(rc)));
        return;
    }
    rq->status = status ? status : o->head.status;
    rq->responded = true;
    rq->resp_chunked = false;
    unsigned st = o->head.status;
    bool body = !status && st >= 200 && st != 204 && st != 304;
    px_conn_send_whole(c, buf, len, o->body, body ? o->body_len : 0, o->v);
    if (buf != stack) free(buf);
    px_conn_end(c);
}

/* Age of the request's object now. */
static int64_t obj_age(const px_request *rq) {
    corral_http_entry e = { &rq->obj.head, rq->obj.req_ms, rq->obj.resp_ms };
    int64_t age_s = 0;
    if (corral_http_current_age(&e, px_now_ms(), NULL, &age_s) < 0) age_s = 0;
    return age_s;
}

void px_cache_serve(px_conn *c, corral_value *v, px_result r, const char *reason) {
    px_request *rq = &c->req;
    px_obj_release(&rq->obj);
    if (px_obj_parse(v, c->obj_hdrs, PX_OBJ_MAX_HEADERS, &rq->obj) < 0) {
        corral_value_unref(v);
        px_conn_simple(c, 502, "Bad Gateway", "stored object unreadable\n", PX_R_ERROR,
                       "bad object");
        return;
    }
    px_cache_answer(c, r, reason, obj_age(rq));
}

/* ---- Streaming a busy object ---- */

#define STREAM_SLICE (256u * 1024) /* bytes taken from a busy object between congestion checks */

static void stream_stop(px_conn *c) {
    if (!c->stream) return;
    px_busy_detach(c->stream, &c->rd);
    px_busy_unref(c->stream);
    c->stream = NULL;
    c->stream_blocked = false;
    px_conn_stream_wait(c, false);
}

void px_cache_stream(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    if (c->closing) {
        px_conn_release_closed(c);
        return;
    }
    /* Sends what there is, unless the client's queue is long: on_write calls again. */
    while (c->stream && !c->closing) {
        if (px_conn_congested(c)) {
            c->stream_blocked = true;
            return;
        }
        c->stream_blocked = false;
        const char *data;
        size_t len;
        uint64_t at = c->rd.pos;
        int st = px_busy_read(c->stream, &c->rd, STREAM_SLICE, &data, &len);
        if (st == PX_BUSY_MORE) {
            px_conn_stream_wait(c, false);
            if (c->req.n_ranges)
                range_piece(c, &px_busy_view(c->stream)->head, data, len, at);
            else
                px_conn_body(c, data, len, NULL);
            continue;
        }
        if (st == PX_BUSY_WAIT) {
            px_conn_stream_wait(c, true); /* a fetch that never moves again cannot hang us */
            return;
        }
        if (st == PX_BUSY_DONE && c->req.n_ranges > 1)
            send_part(c, &px_busy_view(c->stream)->head, c->req.n_ranges); /* the close */
        stream_stop(c);
        if (st == PX_BUSY_DONE) {
            px_conn_end(c); /* the leader's client lets go of its (complete) fetch there */
        } else {
            px_conn_abort(c); /* the leader's fetch failed: cut short, as its own client is */
        }
        return;
    }
}

void px_cache_stream_stop(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    stream_stop(c);
}

void px_cache_stream_busy(px_conn *c, px_busy *b) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    c->stream = b;
    px_busy_attach(b, &c->rd, c);
    px_cache_stream(c);
}

void px_cache_stream_flush(px_conn *c) {
    PX_CHECK_OBJ(c, PX_CONN_MAGIC);
    while (c->stream && !c->closing) {
        const char *data;
        size_t len;
        uint64_t at = c->rd.pos;
        if (px_busy_read(c->stream, &c->rd, SIZE_MAX, &data, &len) != PX_BUSY_MORE) break;
        if (c->req.n_ranges)
            range_piece(c, &px_busy_view(c->stream)->head, data, len, at);
        else
            px_conn_body(c, data, len, NULL);
    }
    stream_stop(c);
}
