/*
 * fleet.c - coalescing across proxies that share a store (Redis): one origin fetch per miss for
 * the whole fleet. docs/proxy.md ("Coalescing across proxies") has the model and its limits.
 *
 * A request that leads its object's flight in this proxy (request.c) takes the store's lease on
 * the flight key before it fetches (corral_lease_try; the lease goes to its fetch, which ends it
 * once the object is stored, or at once when the answer is not storable or the origin fails).
 * When another proxy holds it, the request keeps leading the local flight (this proxy's waiters
 * stay parked behind it) and waits, without a thread, for that lease's release: libcorral calls
 * back on the store's thread, which only posts a PX_FLEET_WAKE wake-up to the worker's inbox.
 * A timer polls as well (a quarter of fleet_lease, 10 ms to 1 s; 50 ms while the store's
 * announcements are not live): a leader that dies leaves its lease to expire, with no release.
 * Woken, the request looks up again (request.c: dispatch): a hit answers it and its local
 * waiters; a miss under the same flight key tries the lease again, until half of
 * coalesce_timeout, after which it fetches without the lease; either way it fetches once, still
 * leading its local flight, before its waiters' own coalesce_timeout.
 * A background refresh that finds the lease taken keeps its local flight open for a poll's time
 * (the stale hits meanwhile join it and send the store nothing), and finishes it then.
 * The memory store is this process's own: no lease, no I/O.
 *
 * Threads: the connection's worker, but for on_released (any thread: it only posts a wake-up).
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>

#define POLL_MIN_MS      10
#define POLL_MAX_MS      1000
#define POLL_NOT_LIVE_MS 50

/* The lease's holder released it (or the announcements changed state). Any thread. */
static void on_released(void *arg) {
    px_conn *c = arg;
    c->wake_rc = PX_FLEET_WAKE;
    c->wake_v = NULL;
    px_worker_wake(c->w, c);
}

static int64_t poll_ms(const px_config *cfg, bool live) {
    if (!live) return POLL_NOT_LIVE_MS;
    int64_t ms = cfg->fleet_lease_ms / 4;
    return ms < POLL_MIN_MS ? POLL_MIN_MS : ms > POLL_MAX_MS ? POLL_MAX_MS : ms;
}

bool px_fleet_wait(px_conn *c, corral_flight *lead) {
    px_request *rq = &c->req;
    corral *cache = c->w->px->cache;
    const px_config *cfg = rq->cfg;
    int64_t now = px_now_ms();
    /* At most half of coalesce_timeout (config.c holds fleet_lease to that too): this proxy's
     * waiters joined after the wait began and give up coalesce_timeout after they joined, so
     * the fetch that follows the wait has the other half, and they stay behind it. */
    if (cfg->fleet_lease_ms <= 0 ||
        (rq->fleet_since_ms && now - rq->fleet_since_ms >= cfg->coalesce_timeout_ms / 2))
        return false;
    corral_lease *l = NULL;
    int rc = corral_lease_try(cache, c->flight_key, c->flight_key_len, NULL, cfg->fleet_lease_ms,
                              on_released, c, &l);
    if (rc == CORRAL_OK) {
        rq->fleet_lease = l;
        return false;
    }
    if (rc != CORRAL_EXISTS) return false; /* memory store, or the store fails: fetch alone */
    if (!rq->fleet_since_ms) rq->fleet_since_ms = now;
    rq->fleet_lead = lead;
    rq->fleet_watch = l;
    _Static_assert(sizeof rq->fleet_key == sizeof c->flight_key, "a flight key fits fleet_key");
    memcpy(rq->fleet_key, c->flight_key, c->flight_key_len);
    rq->fleet_key_len = c->flight_key_len;
    c->waiting = true;
    px_conn_wait(c, poll_ms(cfg, corral_lease_live(l)));
    return true;
}

/* A background refresh's flight held open while another proxy refreshes (px_fleet_refresh). */
typedef struct refresh_wait {
    px_link link; /* in w->refreshes */
    uv_timer_t timer;
    px_worker *w;
    corral_flight *lead;
} refresh_wait;

static void on_refresh_wait_closed(uv_handle_t *h) {
    free(h->data);
}

static void refresh_wait_end(refresh_wait *rw) {
    px_list_remove(&rw->link);
    corral_flight_finish(rw->w->px->cache, rw->lead, CORRAL_OK, NULL);
    uv_close((uv_handle_t *)&rw->timer, on_refresh_wait_closed);
}

static void on_refresh_poll(uv_timer_t *t) {
    refresh_wait_end(t->data);
}

bool px_fleet_refresh(px_conn *c, corral_flight *lead, corral_lease **lease) {
    *lease = NULL;
    px_worker *w = c->w;
    const px_config *cfg = c->req.cfg;
    if (cfg->fleet_lease_ms <= 0) return true;
    int rc = corral_lease_try(w->px->cache, c->flight_key, c->flight_key_len, NULL,
                              cfg->fleet_lease_ms, NULL, NULL, lease);
    if (rc != CORRAL_EXISTS) return true;
    (void)corral_lease_end(w->px->cache, *lease);
    *lease = NULL;
    /* Its flight stays open for a poll's time: the stale hits meanwhile find it and return,
     * where each would send the store a lease attempt. No call-back: the other's release
     * stores a fresh object, so no stale hit follows it to need the flight closed sooner. */
    refresh_wait *rw = calloc(1, sizeof *rw);
    if (!rw) {
        corral_flight_finish(w->px->cache, lead, CORRAL_OK, NULL);
        return false;
    }
    rw->w = w;
    rw->lead = lead;
    rw->timer.data = rw;
    (void)uv_timer_init(&w->loop, &rw->timer); /* 0: it only links the handle to the loop */
    px_list_push(&w->refreshes, &rw->link);
    if (px_worker_deadline(w, &rw->timer, on_refresh_poll, (uint64_t)poll_ms(cfg, true)) < 0)
        refresh_wait_end(rw);
    return false;
}

void px_fleet_refreshes_end(px_worker *w) {
    while (!px_list_empty(&w->refreshes))
        refresh_wait_end(PX_CONTAINER(w->refreshes.next, refresh_wait, link));
}

corral_flight *px_fleet_take(px_conn *c, corral_value *v) {
    px_request *rq = &c->req;
    if (!rq->fleet_lead) return NULL;
    if (rq->fleet_key_len == c->flight_key_len &&
        memcmp(rq->fleet_key, c->flight_key, c->flight_key_len) == 0) {
        corral_flight *lead = rq->fleet_lead;
        rq->fleet_lead = NULL;
        return lead;
    }
    px_fleet_drop(c, CORRAL_OK, v);
    return NULL;
}

void px_fleet_drop(px_conn *c, int rc, corral_value *v) {
    px_request *rq = &c->req;
    if (!rq->fleet_lead) return;
    corral_flight *lead = rq->fleet_lead;
    rq->fleet_lead = NULL;
    corral_flight_finish(c->w->px->cache, lead, rc, v);
}

void px_fleet_expired(px_conn *c) {
    px_request *rq = &c->req;
    corral_lease *l = rq->fleet_watch;
    rq->fleet_watch = NULL;
    /* CORRAL_OK: no call-back will come, so post the wake-up the wait ends with ourselves. */
    if (l && corral_lease_end(c->w->px->cache, l) == CORRAL_OK) on_released(c);
}

void px_fleet_woken(px_conn *c) {
    px_request *rq = &c->req;
    corral_lease *l = rq->fleet_watch;
    rq->fleet_watch = NULL;
    (void)corral_lease_end(c->w->px->cache, l);
}

void px_fleet_end(px_worker *w, corral_lease **lease) {
    if (!*lease) return;
    (void)corral_lease_end(w->px->cache, *lease);
    *lease = NULL;
}
