/*
 * fetch.c - one exchange with the origin: the request (written once with
 * corral_http_write_origin_request, request bodies streamed behind it), the response head's
 * decisions (store or not, hit-for-pass, stale-if-error, the client's own conditional
 * request), the body streamed to the client while it is copied into the object being stored,
 * and the end: store, release the waiters of the flight, free.
 *
 * Data model: a px_fetch owns copies of everything it needs, because it may outlive the request
 * that began it (a leader's client that goes away leaves the fetch filling the cache for the
 * waiters) or have no client at all (a background refresh in grace):
 *   reqbuf     the origin request head;
 *   creq       a faithful copy of the client's (filtered) request, parsed back from `cbuf`,
 *              for store_decide, the variant key, on_error, invalidations and conditionals;
 *   stale      a reference to the stored object (revalidation, stale-if-error);
 *   ob         the object being built (px_objbuf; bounded by max_object_size, beyond which
 *              the fetch stops storing and only streams);
 *   busy       when it leads a flight and the answer is storable, the busy object (busy.c)
 *              that holds the body instead of `ob` while it arrives, streamed to the waiters
 *              and to the fetch's own client (`sink_reads_busy`: the origin read then never
 *              waits for that client) and published for later requests; `ob` gets the body at
 *              the end.
 * The flight it leads (if any) is finished exactly once: with PX_FLIGHT_STREAM at the head of
 * a storable answer (the waiters stream the busy object), with PX_FLIGHT_PASS as soon as the
 * answer turns out not storable (so waiters go to the origin in parallel instead of queueing
 * behind a response they cannot share), with the stored object at the end when there is no
 * busy object (a 304 freshening a stored one; no memory for one), or with an origin error.
 * The fetch remembers when it started (`start_ms`): its store is checked against the purge
 * stamps (px_obj_commit), so a purge that came meanwhile is not undone.
 *
 * Re-entrancy: writing to the client may close it, which detaches it from the fetch
 * (px_fetch_detach). While the fetch is inside such a call (`in_cb`), a detach that makes the
 * fetch useless only marks it (`abort_pending`); the fetch aborts itself when the call
 * returns.
 *
 * Threads: the owning worker's loop thread. corral_flight_finish runs waiter callbacks here,
 * which only post to the waiters' inboxes.
 */
#include "proxy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_QUEUE_MAX (1u << 20) /* request body bytes queued to the origin before pausing */

struct px_fetch {
    uint32_t magic;
    px_worker *w;
    px_link link;
    px_fetch_kind kind;
    px_result result; /* the client's log line on success */
    px_config *cfg;   /* a reference */
    const px_route *route;
    px_conn *sink;
    corral_flight *lead;
    corral_lease *lease; /* the fleet's lease on the flight key (fleet.c), or NULL */
    struct px_oconn *oc;
    char *reqbuf; /* the origin request head */
    size_t req_len;
    char *cbuf; /* the bytes creq points into */
    corral_http_msg creq;
    corral_http_header *creq_hdrs;
    corral_http_method send_method;
    char *pk;
    size_t pk_len;
    corral_value *stale_v; /* the stored object, or NULL */
    px_obj stale;
    corral_http_header *stale_hdrs;
    bool has_body, body_done, body_chunked;
    char *pend; /* request body bytes waiting for the connection */
    size_t pend_len, pend_cap;
    uint64_t sent_ns;
    int64_t t_req_ms, t_resp_ms;
    unsigned status;
    bool got_head, storing, paused, retried, refetch, answered;
    bool sink_reads_busy; /* the client streams `busy` like a waiter (not written to here) */
    bool committed;       /* the object was stored (or the store refused it) */
    uint64_t expect_len;  /* the body's Content-Length, when the origin sent one */
    bool has_length;
    int in_cb;
    bool abort_pending;
    corral_http_decision sd;
    px_objbuf ob;
    int64_t start_ms; /* wall clock at the start: a purge at or after it voids the store */
    char *fkey;       /* the flight key the fetch leads (NULL: none) */
    size_t fkey_len;
    px_busy *busy;   /* the answer shared with coalesced requests while it arrives, or NULL */
    size_t body_len; /* body bytes of the object being stored */
    bool no_commit;  /* a purge came after start_ms: stream the answer, do not store it */
    char *tagstore;
    const char *tags[PX_MAX_SURROGATE_KEYS];
    size_t n_tags;
};

static void fetch_abort(struct px_fetch *f);
static void commit(struct px_fetch *f);

/* ---- Lifetime ---- */

/* Withdraws the busy object from new requests, then ends it (its readers get the end of the
 * body, or are cut short unless `ok`): a client that has read the whole answer and asks again
 * finds the stored object (or nothing), never this one. */
static void busy_end(struct px_fetch *f, bool ok) {
    if (!f->busy) return;
    px_busy_unpublish(f->busy);
    px_busy_finish(f->busy, ok);
    px_busy_unref(f->busy);
    f->busy = NULL;
}

static void fetch_free(struct px_fetch *f) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    px_worker *w = f->w;
    if (f->sink) {
        f->sink->fetch = NULL;
        f->sink = NULL;
    }
    if (f->oc) px_origin_release(f->oc, false);
    busy_end(f, false);
    px_fleet_end(w, &f->lease);
    px_list_remove(&f->link);
    px_objbuf_free(&f->ob);
    corral_value_unref(f->stale_v);
    px_config_unref(f->cfg);
    free(f->reqbuf);
    free(f->cbuf);
    free(f->creq_hdrs);
    free(f->stale_hdrs);
    free(f->pend);
    free(f->pk);
    free(f->fkey);
    free(f->tagstore);
    f->magic = 0;
    free(f);
    px_worker_maybe_done(w);
}

/* Also ends the fleet's lease unless the answer streams (then the store, or its end, does). */
static void finish_flight(struct px_fetch *f, int rc, corral_value *v) {
    if (rc != PX_FLIGHT_STREAM) px_fleet_end(f->w, &f->lease);
    if (!f->lead) return;
    corral_flight *lead = f->lead;
    f->lead = NULL;
    corral_flight_finish(f->w->px->cache, lead, rc, v);
}

static void count(struct px_fetch *f, unsigned counter) {
    px_metrics_add(f->w->metrics, f->route->slot, counter, 1);
}

/* Detaches the client and returns it (NULL when there is none). */
static px_conn *take_sink(struct px_fetch *f) {
    px_conn *c = f->sink;
    if (c) {
        c->fetch = NULL;
        f->sink = NULL;
    }
    return c;
}

/* Whether the fetch still has a purpose without its client. */
static bool useless(const struct px_fetch *f) {
    /* A committed fetch has its whole body: its end follows, and the connection is pooled. */
    return !f->sink && !f->committed && (f->kind == PX_FETCH_PASS || (f->got_head && !f->storing));
}

void px_fetch_detach(struct px_fetch *f) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    take_sink(f);
    f->sink_reads_busy = false;
    /* The origin read waited for this client: it goes on for the store (and the waiters). */
    if (!useless(f)) {
        px_fetch_unpause(f);
        return;
    }
    if (f->in_cb)
        f->abort_pending = true;
    else
        fetch_abort(f);
}

/* Leaves a call that may have detached the client; returns -1 when the fetch was aborted. */
static int leave(struct px_fetch *f) {
    f->in_cb--;
    if (f->in_cb == 0 && f->abort_pending) {
        fetch_abort(f);
        return -1;
    }
    return 0;
}

static void fetch_abort(struct px_fetch *f) {
    if (f->oc) {
        px_origin_release(f->oc, false);
        f->oc = NULL;
    }
    finish_flight(f, PX_FLIGHT_PASS, NULL);
    fetch_free(f);
}

/* Ends the client's response normally (one that reads the busy object ends when it has read
 * the whole body). */
static void sink_done(struct px_fetch *f) {
    bool reads_busy = f->sink_reads_busy;
    px_conn *c = take_sink(f);
    if (c && !reads_busy) px_conn_end(c);
}

/* ---- Starting ---- */

/* Writes the origin request head into f->reqbuf. `reval` asks for a conditional request. */
static int write_request(struct px_fetch *f, const corral_http_msg *req,
                         const corral_http_msg *reval, const char *peer) {
    unsigned flags = 0;
    if (f->kind != PX_FETCH_PASS) {
        flags |= CORRAL_HTTP_FWD_STRIP_CONDITIONALS;
        if (req->method == CORRAL_HTTP_HEAD) flags |= CORRAL_HTTP_FWD_AS_GET;
    }
    f->send_method = (flags & CORRAL_HTTP_FWD_AS_GET) ? CORRAL_HTTP_GET : req->method;
    char extra[512];
    int n = snprintf(extra, sizeof extra, "Via: 1.1 corral\r\n");
    if (n > 0 && peer && peer[0])
        n += snprintf(extra + n, sizeof extra - (size_t)n, "X-Forwarded-For: %s\r\n", peer);
    if (n > 0 && !corral_http_msg_get(req, "host", NULL) && req->target_len &&
        req->target[0] == '/')
        n +=
            snprintf(extra + n, sizeof extra - (size_t)n, "Host: %s\r\n", f->cfg->origin_authority);
    if (n < 0 || (size_t)n >= sizeof extra) return -1;
    size_t cap = 8192, len = 0;
    free(f->reqbuf);
    f->reqbuf = malloc(cap);
    if (!f->reqbuf) return -1;
    int rc =
        corral_http_write_origin_request(req, reval, flags, extra, (size_t)n, f->reqbuf, cap, &len);
    if (rc == CORRAL_ENOSPC) {
        char *bigger = realloc(f->reqbuf, len);
        if (!bigger) return -1;
        f->reqbuf = bigger;
        rc = corral_http_write_origin_request(req, reval, flags, extra, (size_t)n, f->reqbuf, len,
                                              &len);
    }
    if (rc != CORRAL_OK) return -1;
    f->req_len = len;
    return 0;
}

static void start_exchange(struct px_fetch *f);
static void exchange_failed(struct px_fetch *f, int err, bool timeout);

/* Gets a connection and, when it is ready, sends the request. */
static void connect_origin(struct px_fetch *f, bool fresh_only) {
    struct px_oconn *oc = NULL;
    int rc = px_origin_acquire(f->w, f, fresh_only, &oc);
    if (rc < 0) {
        exchange_failed(f, rc, false);
        return;
    }
    f->oc = oc;
    if (px_origin_connected(oc)) start_exchange(f);
}

int px_fetch_start(px_worker *w, const px_fetch_args *a) {
    struct px_fetch *f = calloc(1, sizeof *f);
    if (!f) goto fail_early;
    f->magic = PX_FETCH_MAGIC;
    f->w = w;
    f->kind = a->kind;
    f->result = a->result;
    f->cfg = px_config_ref(a->cfg);
    f->route = a->route;
    f->lead = a->lead;
    f->lease = a->lease;
    f->start_ms = px_now_ms();
    px_list_push(&w->fetches, &f->link);
    if (a->lead && a->flight_key) {
        f->fkey = malloc(a->flight_key_len ? a->flight_key_len : 1);
        if (!f->fkey) goto fail;
        memcpy(f->fkey, a->flight_key, a->flight_key_len);
        f->fkey_len = a->flight_key_len;
    }
    if (a->pk) {
        f->pk = malloc(a->pk_len ? a->pk_len : 1);
        if (!f->pk) goto fail;
        memcpy(f->pk, a->pk, a->pk_len);
        f->pk_len = a->pk_len;
    }
    if (a->stale && a->stale->v) {
        f->stale_v = corral_value_ref(a->stale->v);
        f->stale_hdrs = calloc(PX_OBJ_MAX_HEADERS, sizeof *f->stale_hdrs);
        if (!f->stale_hdrs ||
            px_obj_parse(f->stale_v, f->stale_hdrs, PX_OBJ_MAX_HEADERS, &f->stale) < 0)
            goto fail;
    }
    if (px_msg_copy(a->req, &f->cbuf, &f->creq_hdrs, &f->creq) < 0) goto fail;
    const corral_http_msg *reval = f->kind == PX_FETCH_REVALIDATE ? &f->stale.head : NULL;
    if (write_request(f, a->req, reval, a->sink ? a->sink->peer : NULL) < 0) goto fail;
    if (f->kind == PX_FETCH_PASS && a->req->framing != CORRAL_HTTP_FRAMING_NONE &&
        (a->req->framing != CORRAL_HTTP_FRAMING_LENGTH || a->req->content_length > 0)) {
        f->has_body = true;
        f->body_chunked = a->req->framing == CORRAL_HTTP_FRAMING_CHUNKED;
    }
    if (a->sink) {
        f->sink = a->sink;
        a->sink->fetch = f;
    }
    connect_origin(f, false);
    return 0;

fail:
    if (a->sink) a->sink->fetch = NULL;
    f->sink = NULL;
    finish_flight(f, PX_FLIGHT_ORIGIN_ERROR, NULL);
    fetch_free(f);
    goto answer;
fail_early:
    if (a->lead) corral_flight_finish(w->px->cache, a->lead, PX_FLIGHT_ORIGIN_ERROR, NULL);
    corral_lease *lease = a->lease;
    px_fleet_end(w, &lease);
answer:
    if (a->sink)
        px_conn_simple(a->sink, 503, "Service Unavailable", "proxy out of memory\n", PX_R_ERROR,
                       "cannot start the fetch");
    return PX_ENOMEM;
}

/* ---- The request ---- */

static int send_or_queue(struct px_fetch *f, const char *data, size_t len) {
    if (f->oc && px_origin_connected(f->oc) && f->sent_ns) return px_origin_send(f->oc, data, len);
    if (len > f->pend_cap - f->pend_len) {
        size_t cap = f->pend_cap ? f->pend_cap * 2 : 16384;
        while (cap - f->pend_len < len)
            cap *= 2;
        char *p = realloc(f->pend, cap);
        if (!p) return PX_ENOMEM;
        f->pend = p;
        f->pend_cap = cap;
    }
    memcpy(f->pend + f->pend_len, data, len);
    f->pend_len += len;
    return 0;
}

static void body_flow(struct px_fetch *f) {
    size_t queued = f->pend_len + (f->oc ? px_origin_queued(f->oc) : 0);
    if (f->sink && queued >= BODY_QUEUE_MAX) f->sink->body_paused = true;
}

void px_fetch_body(struct px_fetch *f, const char *data, size_t len) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    if (!f->has_body || f->body_done || len == 0) return;
    int rc = 0;
    if (f->body_chunked) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        if (n < 0 || (size_t)n >= sizeof size) return;
        rc = send_or_queue(f, size, (size_t)n);
        if (rc == 0) rc = send_or_queue(f, data, len);
        if (rc == 0) rc = send_or_queue(f, "\r\n", 2);
    } else {
        rc = send_or_queue(f, data, len);
    }
    if (rc < 0) {
        exchange_failed(f, rc, false);
        return;
    }
    body_flow(f);
}

void px_fetch_body_end(struct px_fetch *f) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    if (!f->has_body || f->body_done) return;
    f->body_done = true;
    if (f->body_chunked && send_or_queue(f, "0\r\n\r\n", 5) < 0)
        exchange_failed(f, PX_ENOMEM, false);
}

void px_fetch_on_drain(struct px_fetch *f) {
    if (f->sink && f->sink->body_paused) px_conn_resume_body(f->sink);
}

void px_fetch_on_connected(struct px_fetch *f, struct px_oconn *oc) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    f->oc = oc;
    start_exchange(f);
}

/* Once more on a new connection: the pooled one was closed by the origin. */
static void retry(struct px_fetch *f) {
    f->retried = true;
    f->sent_ns = 0;
    connect_origin(f, true);
}

static void start_exchange(struct px_fetch *f) {
    f->sent_ns = uv_hrtime();
    f->t_req_ms = px_now_ms();
    count(f, PX_M_origin_fetches_total);
    int rc = px_origin_send(f->oc, f->reqbuf, f->req_len);
    if (rc < 0 && px_origin_reused(f->oc) && !f->retried) {
        /* A pooled connection the origin closed, and no byte of the request went out (the
         * first write failed): the origin cannot have acted on it, whatever the method. */
        px_origin_release(f->oc, false);
        f->oc = NULL;
        retry(f);
        return;
    }
    if (rc == 0 && f->pend_len) {
        rc = px_origin_send(f->oc, f->pend, f->pend_len);
        f->pend_len = 0;
    }
    if (rc < 0) {
        exchange_failed(f, rc, false);
        return;
    }
    px_origin_expect(f->oc, f->send_method, f->cfg->read_timeout_ms);
}

/* ---- Failure ---- */

static const char *error_reason(int err, bool timeout) {
    if (timeout) return "origin timeout";
    switch (err) {
    case PX_ECONNREFUSED: return "origin refused the connection";
    case PX_ECONNRESET: return "origin reset the connection";
    case PX_EOF: return "origin closed the connection";
    case PX_EPROTO: return "origin sent a malformed response";
    default: return "origin error";
    }
}

/* The origin failed before or while answering. */
static void exchange_failed(struct px_fetch *f, int err, bool timeout) {
    if (f->oc) {
        px_origin_release(f->oc, false);
        f->oc = NULL;
    }
    count(f, PX_M_origin_errors_total);
    const char *why = error_reason(err, timeout);
    if (f->got_head) {
        /* Mid-body: nothing is stored, the client's response is cut short. */
        px_objbuf_free(&f->ob);
        f->storing = false;
        busy_end(f, false);
        finish_flight(f, PX_FLIGHT_ORIGIN_ERROR, NULL);
        px_conn *c = take_sink(f);
        if (c) px_conn_abort(c);
        fetch_free(f);
        return;
    }
    finish_flight(f, timeout ? PX_FLIGHT_ORIGIN_TIMEOUT : PX_FLIGHT_ORIGIN_ERROR, NULL);
    px_conn *c = take_sink(f);
    if (c) {
        if (f->stale_v) {
            corral_http_entry e = { &f->stale.head, f->stale.req_ms, f->stale.resp_ms };
            corral_http_decision d;
            if (corral_http_on_error(&f->route->policy, &f->creq, &e, px_now_ms(), &d) == 0 &&
                d.action == CORRAL_HTTP_STALE_IF_ERROR) {
                px_cache_serve(c, corral_value_ref(f->stale_v), PX_R_STALE_IF_ERROR, d.reason);
                fetch_free(f);
                return;
            }
        }
        if (timeout)
            px_conn_simple(c, 504, "Gateway Timeout", "origin timed out\n", PX_R_ERROR, why);
        else
            px_conn_simple(c, 502, "Bad Gateway", "origin unreachable or broken\n", PX_R_ERROR,
                           why);
    }
    fetch_free(f);
}

void px_fetch_on_error(struct px_fetch *f, int err, bool timeout, bool retryable) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    f->oc = NULL; /* origin.c closed it */
    corral_http_method m = f->send_method;
    bool idempotent = m == CORRAL_HTTP_GET || m == CORRAL_HTTP_HEAD || m == CORRAL_HTTP_OPTIONS ||
                      m == CORRAL_HTTP_TRACE || m == CORRAL_HTTP_PUT || m == CORRAL_HTTP_DELETE;
    if (retryable && !f->retried && !f->has_body && !f->got_head && idempotent) {
        /* A pooled connection the origin closed as the request went out, before any byte of an
         * answer: an idempotent request without a body is sent again (RFC 9110 §9.2.2); one
         * that is not (POST, PATCH) may have been acted on, so it is never repeated. */
        retry(f);
        return;
    }
    exchange_failed(f, err, timeout);
}

/* ---- The response head ---- */

static int surrogate_keys(struct px_fetch *f, const corral_http_msg *resp) {
    size_t hi_count = 0;
    if (!corral_http_msg_get(resp, "surrogate-key", &hi_count)) return 0;
    f->tagstore = malloc(PX_MAX_SURROGATE_KEYS * (PX_KEY_MAX + 1));
    if (!f->tagstore) return -1;
    size_t used = 0;
    for (size_t i = 0; i < resp->n_headers; i++) {
        const corral_http_header *h = &resp->headers[i];
        if (h->name_len != 13 || strncasecmp(h->name, "surrogate-key", 13) != 0) continue;
        size_t pos = 0;
        while (pos < h->value_len) {
            while (pos < h->value_len && (h->value[pos] == ' ' || h->value[pos] == '\t'))
                pos++;
            size_t start = pos;
            while (pos < h->value_len && h->value[pos] != ' ' && h->value[pos] != '\t')
                pos++;
            if (pos == start) break;
            if (f->n_tags == PX_MAX_SURROGATE_KEYS) return -1;
            size_t n = px_tag_name('s', h->value + start, pos - start, f->tagstore + used);
            f->tagstore[used + n] = '\0';
            f->tags[f->n_tags++] = f->tagstore + used;
            used += n + 1;
        }
    }
    return 0;
}

static void not_stored(struct px_fetch *f, const char *why) {
    if (f->sink && f->sink_reads_busy) {
        /* The client gets the rest directly: first what it has not read of the busy object
         * (at most max_object_size), then the origin's bytes as they come, paced by it. While
         * the fetch is storing, closing the client cannot abort it. */
        f->sink_reads_busy = false;
        px_cache_stream_flush(f->sink);
    }
    px_objbuf_free(&f->ob);
    f->storing = false;
    /* Readers streaming it are cut short (only a body without Content-Length can outgrow
     * max_object_size after its head, and memory stays bounded). */
    busy_end(f, false);
    count(f, PX_M_not_stored_total);
    if (f->sink) f->sink->req.store_reason = why;
    finish_flight(f, PX_FLIGHT_PASS, NULL);
}

/* The store decision, and the object's first bytes when it is storable. */
static void decide_store(struct px_fetch *f, const corral_http_msg *resp) {
    corral_http_msg sreq = f->creq;
    sreq.method = f->send_method; /* a HEAD miss is fetched, and stored, as GET */
    if (corral_http_store_decide(&f->route->policy, &sreq, resp, f->t_req_ms, f->t_resp_ms,
                                 &f->sd) < 0)
        return;
    if (f->sink) f->sink->req.store_reason = f->sd.reason;
    if (f->sd.action != CORRAL_HTTP_STORE) {
        if (f->sd.hit_for_pass && f->route->hit_for_pass_ms > 0 && f->pk &&
            px_vrec_set_hfp(f->w->px->cache, f->route, f->pk, f->pk_len,
                            f->route->hit_for_pass_ms) < 0) {
            /* Only the next requests' coalescing is lost. */
        }
        return;
    }
    if (!f->pk) return;
    if (resp->has_content_length && resp->content_length > f->cfg->max_object_size) {
        not_stored(f, "larger than max_object_size");
        return;
    }
    char spec[512];
    size_t spec_len = 0;
    if (corral_http_vary_spec(resp, f->route->vary, f->route->vary_len, spec, sizeof spec,
                              &spec_len) != CORRAL_OK) {
        not_stored(f, "Vary too long");
        return;
    }
    if (surrogate_keys(f, resp) < 0) {
        not_stored(f, "too many surrogate keys");
        return;
    }
    size_t vk_cap = f->req_len + 2 * spec_len + 64, vk_len = 0;
    char *vk = malloc(vk_cap);
    char stack[8192];
    char *head = stack;
    size_t head_len = 0;
    int hrc = corral_http_write_stored_head(resp, head, sizeof stack, &head_len);
    if (hrc == CORRAL_ENOSPC) {
        head = malloc(head_len);
        hrc = head ? corral_http_write_stored_head(resp, head, head_len, &head_len) : CORRAL_ENOMEM;
    }
    int ok = vk && hrc == CORRAL_OK &&
             corral_http_variant_key(&f->creq, spec, spec_len, vk, vk_cap, &vk_len) == CORRAL_OK;
    size_t hint = resp->has_content_length ? (size_t)resp->content_length : 0;
    if (ok && px_objbuf_init(&f->ob, f->pk, f->pk_len, spec, spec_len, vk, vk_len, head, head_len,
                             f->t_req_ms, f->t_resp_ms, hint) == 0)
        f->storing = true;
    free(vk);
    if (head != stack) free(head);
    if (!f->storing) not_stored(f, "cannot build the object");
}

/* Answers the client's own If-None-Match / If-Modified-Since from the fresh response. Returns
 * true when it did (the client's response is then complete). */
static bool answer_conditional(struct px_fetch *f, const corral_http_msg *resp) {
    if (f->kind == PX_FETCH_PASS || resp->status < 200 || resp->status > 299) return false;
    unsigned cs = corral_http_conditional_status(&f->creq, resp, f->t_resp_ms);
    if (cs != 304 && cs != 412) return false;
    px_conn *c = take_sink(f);
    px_conn_not_modified(c, resp, cs, f->result);
    return true;
}

/* Sends the response head to the client. */
static void send_head(struct px_fetch *f, const corral_http_msg *resp) {
    px_conn *c = f->sink;
    c->req.status = resp->status;
    if (answer_conditional(f, resp)) return;
    if (px_conn_send_head(c, resp, f->result) < 0) {
        take_sink(f);
        px_conn_simple(c, 502, "Bad Gateway", "response head too large\n", PX_R_ERROR,
                       "head too large");
    }
}

/* After a 2xx/3xx answer to an unsafe method: purge the target, Location, Content-Location. */
static void invalidate(struct px_fetch *f, const corral_http_msg *resp) {
    char buf[4096];
    corral_buf keys[3];
    size_t n = 0;
    if (corral_http_invalidations(&f->creq, resp, buf, sizeof buf, keys, &n) != CORRAL_OK) return;
    for (size_t i = 0; i < n; i++) {
        if (px_purge_url(f->w->px, f->cfg, keys[i].data, keys[i].len) > 0)
            count(f, PX_M_purges_total);
    }
}

/* A 304 to our conditional request: freshen the stored object and answer from it. */
static int on_not_modified(struct px_fetch *f, const corral_http_msg *resp) {
    size_t len = 0;
    char *head = NULL;
    int rc = corral_http_freshen(&f->stale.head, resp, NULL, 0, &len);
    if (rc == CORRAL_ENOSPC) {
        head = malloc(len);
        rc = head ? corral_http_freshen(&f->stale.head, resp, head, len, &len) : CORRAL_ENOMEM;
    }
    if (rc != CORRAL_OK) {
        /* Another representation (or a head too large): fetch it whole instead. */
        free(head);
        f->refetch = true;
        return 0;
    }
    corral_http_header *hdrs = calloc(PX_OBJ_MAX_HEADERS, sizeof *hdrs);
    corral_http_msg fresh;
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = len + 1;
    lim.max_headers = PX_OBJ_MAX_HEADERS;
    corral_value *v = NULL;
    corral_http_msg sreq = f->creq;
    sreq.method = f->send_method;
    if (hdrs &&
        corral_http_parse_head(CORRAL_HTTP_RESPONSE, head, len, &lim, hdrs, PX_OBJ_MAX_HEADERS,
                               &fresh, NULL) == CORRAL_OK &&
        corral_http_store_decide(&f->route->policy, &sreq, &fresh, f->t_req_ms, f->t_resp_ms,
                                 &f->sd) == CORRAL_OK &&
        f->sd.action == CORRAL_HTTP_STORE) {
        px_objbuf ob;
        if (px_objbuf_init(&ob, f->stale.pk, f->stale.pk_len, f->stale.spec, f->stale.spec_len,
                           f->stale.vk, f->stale.vk_len, head, len, f->t_req_ms, f->t_resp_ms,
                           f->stale.body_len) == 0 &&
            px_objbuf_append(&ob, f->stale.body, f->stale.body_len) == 0 &&
            surrogate_keys(f, &fresh) == 0 &&
            px_obj_commit(f->w->px->cache, f->cfg, f->route, &ob, f->sd.store_ttl_ms, f->tags,
                          f->n_tags, f->start_ms, &v) == 0)
            count(f, PX_M_stored_total);
        px_objbuf_free(&ob);
    }
    free(hdrs);
    free(head);
    /* When the store failed (or a purge came meanwhile), the waiters get the object the origin
     * just confirmed, as the leader's client does. */
    finish_flight(f, CORRAL_OK, v ? v : f->stale_v);
    px_conn *c = take_sink(f);
    if (c)
        px_cache_serve(c, v ? corral_value_ref(v) : corral_value_ref(f->stale_v), PX_R_REVALIDATED,
                       "revalidated (304)");
    corral_value_unref(v);
    f->answered = true;
    return 0;
}

/* Shares a storable answer with the flight's waiters from its head on: a busy object they
 * stream while the body arrives, published under the flight key for requests that come later.
 * Without memory for it the waiters get the stored object at the end, as before. */
static void start_busy(struct px_fetch *f) {
    px_proxy *px = f->w->px;
    char pstore[PX_MAX_PATH_TAGS * (PX_KEY_MAX + 1)];
    const char *tags[PX_MAX_PATH_TAGS + PX_MAX_SURROGATE_KEYS];
    const char *path;
    size_t plen;
    px_pk_path(f->pk, f->pk_len, &path, &plen);
    size_t n = px_path_tags(f->cfg, path, plen, pstore, sizeof pstore, tags, PX_MAX_PATH_TAGS);
    for (size_t i = 0; i < f->n_tags; i++)
        tags[n++] = f->tags[i];
    char ukey[PX_KEY_MAX];
    size_t ulen = px_key_vary(f->route, f->pk, f->pk_len, ukey);
    px_busy *b = px_busy_new(px, f->fkey, f->fkey_len, ukey, ulen, tags, n, f->ob.p, f->ob.body_off,
                             f->has_length, f->expect_len);
    /* Published before the stamps are read: a purge either finds it in the registry (and marks
     * it) or wrote its stamp before the read below. Until px_busy_checked, new requests do not
     * stream it: they join the flight, which is still open. */
    if (b) px_busy_publish(b);
    /* A purge between the start and the head (or within the purge margin before the start):
     * nothing is stored, and when it came after the start, waiters who joined after it fetch
     * again. (A store error here is no sign of one: the commit checks again, strictly.) */
    int64_t purged = px_purged_since(px->cache, f->cfg, f->route, f->pk, f->pk_len, f->tags,
                                     f->n_tags, f->start_ms, false);
    if (purged) f->no_commit = true;
    if (!b) return;
    px_busy_checked(b, purged >= f->start_ms ? purged : 0);
    f->busy = b;
    finish_flight(f, PX_FLIGHT_STREAM, NULL);
}

static bool is_5xx_error(unsigned s) {
    return s == 500 || s == 502 || s == 503 || s == 504;
}

int px_fetch_on_head(struct px_fetch *f, const corral_http_msg *resp) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    f->t_resp_ms = px_now_ms();
    f->got_head = true;
    f->status = resp->status;
    px_metrics_latency(f->w->metrics, f->route->slot, (uv_hrtime() - f->sent_ns) / 1000);
    if (f->kind == PX_FETCH_REVALIDATE && resp->status == 304) return on_not_modified(f, resp);
    if (f->stale_v && is_5xx_error(resp->status)) {
        corral_http_entry e = { &f->stale.head, f->stale.req_ms, f->stale.resp_ms };
        corral_http_decision d;
        if (corral_http_on_error(&f->route->policy, &f->creq, &e, f->t_resp_ms, &d) == 0 &&
            d.action == CORRAL_HTTP_STALE_IF_ERROR) {
            count(f, PX_M_origin_errors_total);
            finish_flight(f, PX_FLIGHT_ORIGIN_ERROR, NULL);
            px_conn *c = take_sink(f);
            if (c) px_cache_serve(c, corral_value_ref(f->stale_v), PX_R_STALE_IF_ERROR, d.reason);
            fetch_abort(f);
            return PX_EPIPE;
        }
    }
    f->has_length = resp->framing == CORRAL_HTTP_FRAMING_LENGTH;
    f->expect_len = resp->content_length;
    if (f->kind != PX_FETCH_PASS) decide_store(f, resp);
    if (f->storing && f->lead && f->fkey) start_busy(f);
    bool bodiless =
        resp->framing == CORRAL_HTTP_FRAMING_NONE || (f->has_length && resp->content_length == 0);
    if (f->storing && bodiless) commit(f); /* complete already */
    if (!f->storing && !f->committed) finish_flight(f, PX_FLIGHT_PASS, NULL);
    if (f->kind == PX_FETCH_PASS && resp->status >= 200 && resp->status < 400) invalidate(f, resp);
    if (f->sink) {
        f->in_cb++;
        send_head(f, resp);
        if (leave(f) < 0) return PX_EPIPE;
    }
    /* While there is a busy object, the leader's client is one more of its readers: the origin
     * read is paced by nobody (the body is bounded by max_object_size), so a slow or gone
     * client holds up neither the waiters nor the store. */
    if (f->sink && f->busy && f->storing && !f->sink->req.is_head && !f->sink->closing) {
        f->sink_reads_busy = true;
        px_cache_stream_busy(f->sink, px_busy_ref(f->busy));
    }
    if (useless(f)) {
        fetch_abort(f);
        return PX_EPIPE;
    }
    return 0;
}

int px_fetch_on_body(struct px_fetch *f, const char *data, size_t len) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    if (f->answered) return 0;
    if (f->storing) {
        if (f->body_len + len > f->cfg->max_object_size) {
            not_stored(f, "larger than max_object_size");
        } else if ((f->busy ? px_busy_append(f->busy, data, len)
                            : px_objbuf_append(&f->ob, data, len)) < 0) {
            not_stored(f, "out of memory");
        } else {
            f->body_len += len;
            if (f->has_length && f->body_len == f->expect_len) commit(f);
        }
    }
    if (f->sink && !f->sink_reads_busy) {
        f->in_cb++;
        px_conn_body(f->sink, data, len, NULL);
        if (f->sink && f->oc && px_conn_congested(f->sink)) {
            px_origin_pause(f->oc);
            f->paused = true;
        }
        if (leave(f) < 0) return PX_EPIPE;
    }
    if (useless(f)) {
        fetch_abort(f);
        return PX_EPIPE;
    }
    return 0;
}

void px_fetch_on_interim(struct px_fetch *f, const corral_http_msg *resp) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    if (f->sink) px_conn_interim(f->sink, resp);
}

void px_fetch_unpause(struct px_fetch *f) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    if (!f->paused || !f->oc) return;
    f->paused = false;
    px_origin_resume(f->oc);
}

/* Restarts a revalidation whose 304 named another representation as a plain fetch. */
static void refetch(struct px_fetch *f) {
    f->kind = PX_FETCH_MISS;
    f->refetch = false;
    f->got_head = false;
    f->sent_ns = 0;
    if (write_request(f, &f->creq, NULL, f->sink ? f->sink->peer : NULL) < 0) {
        exchange_failed(f, PX_ENOMEM, false);
        return;
    }
    connect_origin(f, false);
}

/* Stores the complete object and hands it to the waiters (or, when they stream the busy
 * object, ends it for them afterwards: they have the whole body whatever the store does). Runs
 * before any client gets the last byte (the leader's client reads the busy object too), so a
 * purge sent after the response arrived always comes after the store. A purge that came after the
 * fetch started voids the store (px_obj_commit's stamp check): the waiters, who asked before it,
 * still get the answer. */
static void commit(struct px_fetch *f) {
    if (!f->storing) return;
    corral_value *v = NULL;
    int rc;
    if (f->no_commit)
        rc = PX_COMMIT_PURGED;
    else if (f->busy && px_busy_copy_body(f->busy, &f->ob) < 0)
        rc = CORRAL_ENOMEM;
    else
        rc = px_obj_commit(f->w->px->cache, f->cfg, f->route, &f->ob, f->sd.store_ttl_ms, f->tags,
                           f->n_tags, f->start_ms, &v);
    px_objbuf_free(&f->ob);
    f->storing = false;
    f->committed = true;
    if (rc != 0) {
        count(f, PX_M_not_stored_total);
        if (f->sink) f->sink->req.store_reason = rc < 0 ? px_strerror(rc) : "purged while fetching";
        finish_flight(f, PX_FLIGHT_PASS, NULL);
    } else {
        count(f, PX_M_stored_total);
        finish_flight(f, CORRAL_OK, v);
    }
    busy_end(f, true);
    corral_value_unref(v);
}

void px_fetch_on_end(struct px_fetch *f) {
    PX_CHECK_OBJ(f, PX_FETCH_MAGIC);
    struct px_oconn *oc = f->oc;
    f->oc = NULL;
    px_origin_release(oc, true);
    if (f->refetch) {
        refetch(f);
        return;
    }
    commit(f);
    finish_flight(f, PX_FLIGHT_PASS, NULL);
    sink_done(f);
    fetch_free(f);
}

void px_fetches_abort(px_worker *w) {
    while (!px_list_empty(&w->fetches)) {
        struct px_fetch *f = PX_CONTAINER(w->fetches.next, struct px_fetch, link);
        px_conn *c = take_sink(f);
        if (c) px_conn_abort(c);
        fetch_abort(f);
    }
}
