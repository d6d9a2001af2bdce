/*
 * request.c - corral-proxy's request state machine, from a parsed request head to an answer:
 * the route and its cookie rule, the primary key, the lookup (vary record, variant), the HTTP
 * engine's decision, and then a hit (deliver.c), a fetch (fetch.c), a coalesced wait on another
 * request's fetch, or one background refresh in grace.
 *
 * Coalescing: misses join the flight "<route>:f:<hash(pk, vk)>" (vk from the record's spec,
 * empty without a record). The leader fetches (fetch.c) and finishes the flight with
 * PX_FLIGHT_STREAM at the head of a storable answer (the waiters stream its busy object,
 * busy.c, from the head on), or PX_FLIGHT_PASS at the head when it is not storable, or the
 * stored object, or an origin error. Waiters are woken through their worker's inbox (the
 * finishing thread may be another worker's) and check the answer against their own variant; a
 * mismatch looks up again, and after two wake-ups a request stops coalescing. A miss that finds
 * a published busy object of its flight key streams it instead of fetching. Requests with
 * credentials never coalesce.
 *
 * Threads: every function runs on the loop thread of the connection's worker, except on_flight,
 * which runs on whichever thread finishes the flight and only posts to the inbox.
 */
#include "proxy.h"

#include <stdint.h>
#include <string.h>

#define WAKES_BEFORE_SOLO 2 /* wake-ups after which a request stops coalescing */

/* ---- Fetching ---- */

/* Starts a fetch of the request's object, streamed to `sink` (the request's own client, or NULL
 * for a background refresh), leading flight `lead` (or none) under the request's flight key,
 * with `stale` (or NULL) for revalidation and stale-if-error. The one place a px_fetch_args is
 * built. */
static void fetch_for(px_conn *c, px_fetch_kind kind, px_conn *sink, corral_flight *lead,
                      const px_obj *stale, px_result result) {
    px_request *rq = &c->req;
    px_fetch_args a = {
        .kind = kind,
        .sink = sink,
        .lead = lead,
        .flight_key = c->flight_key,
        .flight_key_len = c->flight_key_len,
        .req = &rq->msg,
        .route = rq->route,
        .cfg = rq->cfg,
        .pk = rq->pk,
        .pk_len = rq->pk_len,
        .stale = stale,
        .result = result,
        .lease = rq->fleet_lease, /* the fetch ends it */
    };
    rq->fleet_lease = NULL;
    if (px_fetch_start(c->w, &a) < 0) {
        /* px_fetch_start answered the sink (if any) and finished the flight. */
    }
}

static void start_fetch(px_conn *c, px_fetch_kind kind, corral_flight *lead, px_result result,
                        const char *reason) {
    px_request *rq = &c->req;
    rq->result = result;
    rq->reason = reason;
    fetch_for(c, kind, c, lead, rq->obj.v ? &rq->obj : NULL, result);
}

static void pass(px_conn *c, const char *reason) {
    start_fetch(c, PX_FETCH_PASS, NULL, PX_R_PASS, reason);
}

/* Called by the thread that finishes a flight: hand the outcome to the waiter's worker. */
static void on_flight(void *arg, int rc, corral_value *v) {
    px_conn *c = arg;
    /* The leader published its busy object before finishing the flight, and cannot withdraw
     * it before this returns: it is found (a newer one of the same key would do as well). */
    if (rc == PX_FLIGHT_STREAM)
        c->wake_busy = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, true);
    c->wake_rc = rc;
    c->wake_v = v;
    px_worker_wake(c->w, c);
}

/* A background refresh's own "waiters" (requests that found one running) need nothing. */
static void on_refresh_waiter(void *arg, int rc, corral_value *v) {
    (void)arg;
    (void)rc;
    corral_value_unref(v);
}

static bool has_validator(const corral_http_msg *m) {
    return corral_http_msg_get(m, "etag", NULL) || corral_http_msg_get(m, "last-modified", NULL);
}

/* Builds the request's flight key into c->flight_key from its variant key. */
static void flight_key(px_conn *c, const char *vk, size_t vk_len) {
    c->flight_key_len =
        px_key_flight(c->req.route, c->req.pk, c->req.pk_len, vk, vk_len, c->flight_key);
}

/* Computes the request's variant key (into the scratch after the primary key) from the URL's
 * vary record, or, when there is none yet, from the Vary of an answer in flight for another
 * variant (spec_hint), and sets the flight key from it. A request that learns the URL varies
 * from another variant's answer thus waits under the same flight key as one that arrives after
 * that answer's record was stored. -1 when the variant key is too long. */
static int variant_flight_key(px_conn *c, const char **vk, size_t *vk_len) {
    px_request *rq = &c->req;
    const char *spec = rq->vrec.found ? rq->vrec.spec : rq->spec_hint;
    size_t spec_len = rq->vrec.found ? rq->vrec.spec_len : rq->spec_hint_len;
    char *out = rq->pk + rq->pk_len;
    size_t cap = c->scratch_cap - (size_t)(out - c->scratch);
    *vk = out;
    *vk_len = 0;
    if (corral_http_variant_key(&rq->msg, spec, spec_len, out, cap, vk_len) != CORRAL_OK) return -1;
    flight_key(c, out, *vk_len);
    return 0;
}

/* Remembers the Vary spec of another variant's answer to this URL (variant_flight_key). */
static void note_spec(px_request *rq, const char *spec, size_t spec_len) {
    if (rq->vrec.found || spec_len == 0 || spec_len > sizeof rq->spec_hint) return;
    memcpy(rq->spec_hint, spec, spec_len);
    rq->spec_hint_len = spec_len;
}

/* Starts one background refresh of the request's (stale) object unless one is running. */
static void refresh_in_background(px_conn *c) {
    px_request *rq = &c->req;
    corral *cache = c->w->px->cache;
    /* A refresh whose answer is arriving (its flight ended at the head) is running too. */
    px_busy *b = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, true);
    if (b) {
        px_busy_unref(b);
        return;
    }
    corral_flight *lead = NULL;
    int rc = corral_flight_join(cache, c->flight_key, c->flight_key_len, NULL, on_refresh_waiter,
                                NULL, &lead);
    if (rc != CORRAL_OK) return; /* one is running (or no memory: the next request tries) */
    if (!px_fleet_refresh(c, lead, &rq->fleet_lease)) return; /* another proxy refreshes it */
    px_fetch_kind kind = has_validator(&rq->obj.head) ? PX_FETCH_REVALIDATE : PX_FETCH_MISS;
    fetch_for(c, kind, NULL, lead, &rq->obj, PX_R_STALE);
}

/* Answers the request from busy object `b` (the reference is taken) when it is this request's
 * variant and usable for it: the head now, the body as it arrives. Returns false (`b` released)
 * otherwise, or when a purge came before the request did (it was made before the purge). */
static bool stream_from(px_conn *c, px_busy *b) {
    px_request *rq = &c->req;
    px_obj o = *px_busy_view(b); /* its fields are read-only: they point into `b` */
    corral_http_decision d;
    int64_t purged = px_busy_purged_ms(b);
    char *vk = rq->pk + rq->pk_len;
    size_t vk_cap = c->scratch_cap - (size_t)(vk - c->scratch), vk_len = 0;
    if ((purged && rq->now_ms >= purged) || o.pk_len != rq->pk_len ||
        memcmp(o.pk, rq->pk, rq->pk_len) != 0) {
        px_busy_unref(b);
        return false;
    }
    if (corral_http_variant_key(&rq->msg, o.spec, o.spec_len, vk, vk_cap, &vk_len) != CORRAL_OK ||
        vk_len != o.vk_len || memcmp(vk, o.vk, vk_len) != 0) {
        note_spec(rq, o.spec, o.spec_len); /* another variant: the URL varies so */
        px_busy_unref(b);
        return false;
    }
    /* Its framing, for the client's head: the stored head has none. */
    uint64_t length = 0;
    if (px_busy_length(b, &length)) {
        o.head.framing = CORRAL_HTTP_FRAMING_LENGTH;
        o.head.has_content_length = true;
        o.head.content_length = length;
    } else {
        o.head.framing = CORRAL_HTTP_FRAMING_CHUNKED;
        o.head.has_content_length = false;
    }
    corral_http_entry e = { &o.head, o.req_ms, o.resp_ms };
    int64_t now = px_now_ms();
    if (corral_http_lookup(&rq->route->policy, &rq->msg, &e, now, &d) != 0 ||
        (d.action != CORRAL_HTTP_HIT && d.action != CORRAL_HTTP_STALE_WHILE_REVALIDATE &&
         d.action != CORRAL_HTTP_REVALIDATE)) {
        px_busy_unref(b);
        return false;
    }
    px_obj_release(&rq->obj); /* a stale copy being revalidated */
    px_result res = rq->range_led ? PX_R_MISS : PX_R_COALESCED;
    rq->result = res;
    rq->reason = rq->range_led ? "range miss (streamed)" : "coalesced (streamed)";
    unsigned cs = corral_http_conditional_status(&rq->msg, &o.head, now);
    if (cs == 304 || cs == 412) {
        px_busy_unref(b);
        px_conn_not_modified(c, &o.head, cs, res);
        return true;
    }
    if (px_cache_stream_ranges(c, b, &o.head, d.age_s)) return true;
    if (px_conn_send_head(c, &o.head, res) < 0) {
        px_busy_unref(b);
        px_conn_simple(c, 502, "Bad Gateway", "response head too large\n", PX_R_ERROR,
                       "head too large");
        return true;
    }
    if (rq->is_head || c->closing) {
        /* A HEAD is answered; a connection that closed while sending the head (a write
         * error) must not become a reader: notifications would queue a connection being
         * freed. */
        px_busy_unref(b);
        if (!c->closing) px_conn_end(c);
        return true;
    }
    px_cache_stream_busy(c, b);
    return true;
}

/* fetch_coalesced found no busy object, then joined the flight and leads it. The flight it
 * looked for may have ended in between: a leader publishes its busy object, reads the purge
 * stamps, then ends the flight at the head (fetch.c start_busy), and a request that looked
 * before the stamps were read and joined after the end would fetch a second time what is
 * arriving (its client the only one to get the newer answer). When that busy object is there
 * now and serves this request, the request streams it and the flight just begun ends (its
 * waiters look for the busy object too; finishing only queues them on their inboxes). When it
 * does not (another variant after all), the request stays the leader. Returns true when it
 * streams. */
static bool stream_late(px_conn *c, corral_flight *lead) {
    px_busy *b = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, false);
    if (!b || !stream_from(c, b)) return false;
    corral_flight_finish(c->w->px->cache, lead, PX_FLIGHT_STREAM, NULL);
    return true;
}

static void fetch_led(px_conn *c, px_fetch_kind kind, const corral_http_decision *d,
                      corral_flight *lead);

/* MISS or REVALIDATE: fetch, sharing the fetch with concurrent requests for the object. */
static void fetch_coalesced(px_conn *c, px_fetch_kind kind, const corral_http_decision *d) {
    px_request *rq = &c->req;
    /* Woken from a wait on another proxy (fleet.c) and still a miss: lead again. */
    corral_flight *held = px_fleet_take(c, NULL);
    if (held) {
        fetch_led(c, kind, d, held);
        return;
    }
    if (d->credentialed || rq->uncoalesced) {
        start_fetch(c, kind, NULL, kind == PX_FETCH_MISS ? PX_R_MISS : PX_R_REVALIDATED, d->reason);
        return;
    }
    /* A fetch of it whose answer is arriving (the flight ended at its head): stream that. */
    px_busy *b = px_busy_find(c->w->px, c->flight_key, c->flight_key_len, false);
    if (b && stream_from(c, b)) return;
    const char *vk;
    size_t vk_len;
    if (b && !rq->vrec.found && rq->spec_hint_len && variant_flight_key(c, &vk, &vk_len) < 0) {
        pass(c, "variant key too long");
        return;
    }
    corral_flight *lead = NULL;
    int rc = corral_flight_join(c->w->px->cache, c->flight_key, c->flight_key_len, NULL, on_flight,
                                c, &lead);
    if (rc == CORRAL_OK && !b && stream_late(c, lead)) return;
    if (rc == CORRAL_OK) {
        fetch_led(c, kind, d, lead);
        return;
    }
    if (rc == CORRAL_WAITING) {
        c->waiting = true;
        rq->reason = d->reason;
        px_conn_wait(c, rq->cfg->coalesce_timeout_ms);
        return;
    }
    start_fetch(c, kind, NULL, kind == PX_FETCH_MISS ? PX_R_MISS : PX_R_REVALIDATED, d->reason);
}

/* The request leads its flight here: the fleet's lease, then the fetch (a range miss: a fetch of
 * the whole object, which the request waits on). */
static void fetch_led(px_conn *c, px_fetch_kind kind, const corral_http_decision *d,
                      corral_flight *lead) {
    px_request *rq = &c->req;
    if (px_fleet_wait(c, lead)) { /* another proxy fetches it */
        rq->reason = d->reason;
        return;
    }
    int rc = CORRAL_OK;
    if (kind == PX_FETCH_MISS && !rq->is_head && corral_http_msg_get(&rq->msg, "range", NULL)) {
        /* A range of an object not in the cache: a fetch of its own (no client) fills the
         * cache with the whole object, and this request waits on it as a coalesced one does,
         * then answers its range from the object as it arrives (deliver.c). */
        fetch_for(c, kind, NULL, lead, NULL, PX_R_MISS);
        rc = corral_flight_join(c->w->px->cache, c->flight_key, c->flight_key_len, NULL, on_flight,
                                c, &lead);
        /* Else that fetch is over already (no memory): lead a fetch of the whole, or fetch. */
        if (rc == CORRAL_WAITING) rq->range_led = true;
    }
    if (rc == CORRAL_WAITING) {
        c->waiting = true;
        rq->reason = d->reason;
        px_conn_wait(c, rq->cfg->coalesce_timeout_ms);
        return;
    }
    start_fetch(c, kind, rc == CORRAL_OK ? lead : NULL,
                kind == PX_FETCH_MISS ? PX_R_MISS : PX_R_REVALIDATED, d->reason);
}

/* Looks the request up (vary record, variant) and acts on the engine's decision. */
static void dispatch(px_conn *c) {
    px_request *rq = &c->req;
    corral *cache = c->w->px->cache;
    const px_route *r = rq->route;
    px_obj_release(&rq->obj);
    if (px_vrec_get(cache, r, rq->pk, rq->pk_len, &rq->vrec) < 0)
        memset(&rq->vrec, 0, sizeof rq->vrec);
    if (rq->vrec.hit_for_pass) {
        px_fleet_drop(c, PX_FLIGHT_PASS, NULL); /* woken from a fleet wait: the waiters pass too */
        rq->uncoalesced = true;
        start_fetch(c, PX_FETCH_MISS, NULL, PX_R_PASS, "hit-for-pass");
        return;
    }
    const char *vk;
    size_t vk_len;
    if (variant_flight_key(c, &vk, &vk_len) < 0) {
        px_fleet_drop(c, CORRAL_OK, NULL);
        pass(c, "variant key too long");
        return;
    }
    const corral_http_entry *entry = NULL;
    corral_http_entry e;
    if (rq->vrec.found) {
        char okey[PX_KEY_MAX];
        size_t olen = px_key_object(r, rq->vrec.gen, rq->pk, rq->pk_len, vk, vk_len, okey);
        corral_value *v = NULL;
        if (corral_get(cache, okey, olen, NULL, &v) == CORRAL_OK) {
            px_obj *o = &rq->obj;
            if (px_obj_parse(v, c->obj_hdrs, PX_OBJ_MAX_HEADERS, o) == 0 &&
                o->pk_len == rq->pk_len && memcmp(o->pk, rq->pk, rq->pk_len) == 0 &&
                o->vk_len == vk_len && memcmp(o->vk, vk, vk_len) == 0) {
                e = (corral_http_entry){ &o->head, o->req_ms, o->resp_ms };
                entry = &e;
            } else {
                px_obj_release(o);
                corral_value_unref(v);
            }
        }
    }
    corral_http_decision d;
    if (corral_http_lookup(&r->policy, &rq->msg, entry, rq->now_ms, &d) < 0) {
        px_fleet_drop(c, CORRAL_OK, NULL);
        pass(c, "lookup failed");
        return;
    }
    /* Woken from a wait on another proxy (fleet.c) and it is no miss any more: this proxy's
     * waiters get what it found (fetch_coalesced keeps the flight on a miss). */
    if (d.action != CORRAL_HTTP_MISS && d.action != CORRAL_HTTP_REVALIDATE)
        px_fleet_drop(c, CORRAL_OK, entry ? rq->obj.v : NULL);
    switch (d.action) {
    case CORRAL_HTTP_HIT: px_cache_answer(c, PX_R_HIT, d.reason, d.age_s); return;
    case CORRAL_HTTP_STALE_WHILE_REVALIDATE:
        refresh_in_background(c);
        px_cache_answer(c, PX_R_STALE, d.reason, d.age_s);
        return;
    case CORRAL_HTTP_REVALIDATE: fetch_coalesced(c, PX_FETCH_REVALIDATE, &d); return;
    case CORRAL_HTTP_MISS: fetch_coalesced(c, PX_FETCH_MISS, &d); return;
    case CORRAL_HTTP_GATEWAY_TIMEOUT:
        px_conn_simple(c, 504, "Gateway Timeout", "not cached (only-if-cached)\n", PX_R_ERROR,
                       d.reason);
        return;
    default: pass(c, d.reason); return;
    }
}

/* The path of a request target: origin-form up to '?', or the path of an absolute-form. */
static void target_path(const corral_http_msg *m, const char **path, size_t *len) {
    const char *t = m->target;
    size_t n = m->target_len;
    if (n && t[0] != '/') {
        const char *sep = n >= 3 ? memchr(t, ':', n) : NULL;
        size_t skip = sep && (size_t)(sep - t) + 3 <= n ? (size_t)(sep - t) + 3 : n;
        const char *slash = skip < n ? memchr(t + skip, '/', n - skip) : NULL;
        if (!slash) {
            *path = "/";
            *len = 1;
            return;
        }
        n -= (size_t)(slash - t);
        t = slash;
    }
    const char *q = memchr(t, '?', n);
    *path = t;
    *len = q ? (size_t)(q - t) : n;
}

void px_cache_request(px_conn *c) {
    px_request *rq = &c->req;
    const corral_http_msg *raw = rq->raw;
    const char *path;
    size_t plen;
    target_path(raw, &path, &plen);
    const px_route *r = px_route_match(rq->cfg, path, plen);
    rq->route = r;
    rq->msg = *raw;
    /* Scratch: the filtered Cookie first, then the primary key, then the variant key. */
    size_t cookie_cap = rq->cfg->limits.max_head_bytes + 1024;
    if (cookie_cap > c->scratch_cap / 2) cookie_cap = c->scratch_cap / 2;
    if (r->n_cookies && corral_http_msg_get(raw, "cookie", NULL) &&
        corral_http_request_filter_cookies(raw, (const char *const *)r->cookies, r->n_cookies,
                                           r->keep_cookies, c->hdrs, c->max_hdrs, c->scratch,
                                           cookie_cap, &rq->msg) != CORRAL_OK) {
        rq->msg = *raw;
        pass(c, "cookie rule failed");
        return;
    }
    if (raw->method == CORRAL_HTTP_CONNECT) {
        /* A reverse proxy does not tunnel. */
        c->req.keep_alive = false;
        px_conn_simple(c, 405, "Method Not Allowed", "CONNECT is not supported\n", PX_R_ERROR,
                       "CONNECT");
        return;
    }
    if (r->bypass) {
        pass(c, "route bypass");
        return;
    }
    if (raw->method != CORRAL_HTTP_GET && raw->method != CORRAL_HTTP_HEAD) {
        pass(c, "method not cacheable");
        return;
    }
    if (rq->has_body) {
        pass(c, "request has a body");
        return;
    }
    rq->pk = c->scratch + cookie_cap;
    if (corral_http_primary_key(&rq->msg, rq->pk, c->scratch_cap - cookie_cap, &rq->pk_len) !=
        CORRAL_OK) {
        rq->pk = NULL;
        pass(c, "no primary key");
        return;
    }
    dispatch(c);
}

void px_cache_wait_expired(px_conn *c) {
    if (!c->waiting) return;
    if (c->req.fleet_watch) { /* waiting on another proxy's lease: the poll is due */
        px_fleet_expired(c);
        return;
    }
    c->wait_timed_out = true;
    int rc =
        corral_flight_cancel(c->w->px->cache, c->flight_key, c->flight_key_len, NULL, on_flight, c);
    (void)rc; /* CORRAL_MISS: the leader already released us; the wake-up is on its way */
}

void px_cache_woken(px_conn *c, int rc, corral_value *v) {
    px_request *rq = &c->req;
    if (rc == PX_FLEET_WAKE) { /* another proxy's lease was released, or the poll is due */
        px_fleet_woken(c);
        if (c->closing || !c->busy) {
            px_fleet_drop(c, CORRAL_OK, NULL);
            px_conn_release_closed(c);
            return;
        }
        px_conn_wait(c, 0);
        dispatch(c);
        return;
    }
    px_busy *b = c->wake_busy;
    c->wake_busy = NULL;
    if (c->closing || !c->busy) {
        corral_value_unref(v);
        px_busy_unref(b);
        px_conn_release_closed(c);
        return;
    }
    px_conn_wait(c, 0);
    rq->wakes++;
    bool timed_out = c->wait_timed_out && rc == CORRAL_ETIMEDOUT;
    c->wait_timed_out = false;
    if (rq->wakes >= WAKES_BEFORE_SOLO) rq->uncoalesced = true;
    if (timed_out) {
        corral_value_unref(v);
        px_busy_unref(b);
        rq->uncoalesced = true;
        start_fetch(c, PX_FETCH_MISS, NULL, PX_R_MISS, "coalescing wait timed out");
        return;
    }
    if (rc == PX_FLIGHT_STREAM) {
        /* Not usable (another variant, or purged before we asked): look up again. */
        if (!b || !stream_from(c, b)) dispatch(c);
        return;
    }
    if (rc == CORRAL_OK && v) {
        px_obj o;
        corral_http_decision d;
        /* The leader's object serves this request when it is this request's variant. */
        if (px_obj_parse(v, c->obj_hdrs, PX_OBJ_MAX_HEADERS, &o) == 0 && o.pk_len == rq->pk_len &&
            memcmp(o.pk, rq->pk, rq->pk_len) == 0) {
            char *vk = rq->pk + rq->pk_len;
            size_t vk_cap = c->scratch_cap - (size_t)(vk - c->scratch), vk_len = 0;
            corral_http_entry e = { &o.head, o.req_ms, o.resp_ms };
            if (corral_http_variant_key(&rq->msg, o.spec, o.spec_len, vk, vk_cap, &vk_len) ==
                    CORRAL_OK &&
                vk_len == o.vk_len && memcmp(vk, o.vk, vk_len) == 0 &&
                corral_http_lookup(&rq->route->policy, &rq->msg, &e, px_now_ms(), &d) == 0 &&
                (d.action == CORRAL_HTTP_HIT || d.action == CORRAL_HTTP_STALE_WHILE_REVALIDATE ||
                 d.action == CORRAL_HTTP_REVALIDATE)) {
                /* Just fetched for this very request: serve it (as Varnish and nginx do). */
                px_obj_release(&rq->obj);
                rq->obj = o;
                px_cache_answer(c, rq->range_led ? PX_R_MISS : PX_R_COALESCED,
                                rq->range_led ? "range miss" : "coalesced", d.age_s);
                return;
            }
            note_spec(rq, o.spec, o.spec_len);
        }
        corral_value_unref(v);
        dispatch(c);
        return;
    }
    corral_value_unref(v);
    if (rc == CORRAL_OK) {
        dispatch(c);
        return;
    }
    if (rc == PX_FLIGHT_PASS) {
        rq->uncoalesced = true;
        start_fetch(c, PX_FETCH_MISS, NULL, PX_R_PASS, "hit-for-pass (answer not storable)");
        return;
    }
    /* The origin failed for the leader: stand in with our stale copy, or report it. */
    if (rq->obj.v) {
        corral_http_entry e = { &rq->obj.head, rq->obj.req_ms, rq->obj.resp_ms };
        corral_http_decision d;
        if (corral_http_on_error(&rq->route->policy, &rq->msg, &e, px_now_ms(), &d) == 0 &&
            d.action == CORRAL_HTTP_STALE_IF_ERROR) {
            px_cache_answer(c, PX_R_STALE_IF_ERROR, d.reason, d.age_s);
            return;
        }
    }
    if (rc == PX_FLIGHT_ORIGIN_TIMEOUT)
        px_conn_simple(c, 504, "Gateway Timeout", "origin timed out\n", PX_R_ERROR,
                       "origin timeout (coalesced)");
    else
        px_conn_simple(c, 502, "Bad Gateway", "origin failed\n", PX_R_ERROR,
                       "origin error (coalesced)");
}

void px_request_release(px_conn *c) {
    px_request *rq = &c->req;
    px_fleet_expired(c); /* a wait on another proxy (a wake-up follows) */
    px_fleet_drop(c, CORRAL_OK, NULL);
    px_fleet_end(c->w, &rq->fleet_lease);
    px_cache_stream_stop(c);
    px_obj_release(&rq->obj);
    px_config_unref(rq->cfg);
    rq->cfg = NULL;
}
