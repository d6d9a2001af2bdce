/*
 * deliver.c - corral-proxy's answers from the cache: a stored object served whole (its head
 * rewritten for the client, its body referenced, not copied), and a busy object (busy.c)
 * streamed to a connection as its body arrives, paced by the client's write queue.
 *
 * Threads: the loop thread of the connection's worker.
 */
#include "proxy.h"

#include <stdint.h>
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

/* ---- Answering from the cache ---- */

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
        int st = px_busy_read(c->stream, &c->rd, STREAM_SLICE, &data, &len);
        if (st == PX_BUSY_MORE) {
            px_conn_stream_wait(c, false);
            px_conn_body(c, data, len, NULL);
            continue;
        }
        if (st == PX_BUSY_WAIT) {
            px_conn_stream_wait(c, true); /* a fetch that never moves again cannot hang us */
            return;
        }
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
        if (px_busy_read(c->stream, &c->rd, SIZE_MAX, &data, &len) != PX_BUSY_MORE) break;
        px_conn_body(c, data, len, NULL);
    }
    stream_stop(c);
}
