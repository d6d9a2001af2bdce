/*
 * decide.c - the cache's decisions: how to answer a request given what is stored (RFC 9111 §4,
 * §4.2.4, §5.2.1; RFC 5861 §3), whether and for how long to store a response (§3, §3.5,
 * §5.2.2), and whether a stale response may stand in for a failed origin (RFC 5861 §4).
 *
 * On top of the RFC, the defaults of the guide's warning ("why am I seeing someone else's
 * order?"), for a shared cache:
 * - a response carrying Set-Cookie is never stored;
 * - a request with Authorization is answered from, and its response stored in, the cache only
 *   when the response says public, s-maxage or must-revalidate (§3.5; for reuse, Vary:
 *   Authorization also does);
 * - a request with a Cookie is likewise only when the response says public or s-maxage, or
 *   varies on Cookie (then each cookie value has its own variant). A route that strips
 *   cookies does so first (corral_http_request_filter_cookies), so stripped cookies do not
 *   count.
 *
 * Stale responses (§4.2.4) are served only with a permission: the response's
 * stale-while-revalidate / stale-if-error, the request's max-stale / stale-if-error, or the
 * policy's grace / stale_if_error (configuration is the "out-of-band contract" of §4.2.4).
 * must-revalidate, proxy-revalidate (shared) and no-cache forbid all of them. s-maxage implies
 * proxy-revalidate for a shared cache (§5.2.2.10) and so forbids max-stale and the policy's
 * windows, but an explicit stale-while-revalidate / stale-if-error sent beside it still applies:
 * "s-maxage=60, stale-while-revalidate=30" is how origins ask CDNs for exactly that.
 *
 * Every decision carries a static reason for the access log.
 */
#include "http_internal.h"

static bool request_has_cookie(const corral_http_msg *req) {
    for (size_t i = 0; i < req->n_headers; i++) {
        const corral_http_header *h = &req->headers[i];
        if (corral__http_ieq(h->name, h->name_len, "cookie") && h->value_len > 0) return true;
    }
    return false;
}

static bool delta_ok(const corral__http_delta *d) {
    return d->present && !d->bad;
}

/* Whether a stored/fetched response may serve a credentialed request in a shared cache. For
 * `storing`, the Authorization rule is exactly §3.5's. Sets `*why` when not. */
static bool shareable(const corral_http_policy *pol, const corral_http_msg *req,
                      const corral_http_msg *resp, const corral__http_cc *cc, bool storing,
                      const char **why) {
    if (!pol->shared) return true;
    bool pub = (cc->flags & CORRAL__CC_PUBLIC) != 0;
    bool smax = delta_ok(&cc->s_maxage);
    if (corral__http_get(req, "authorization", NULL)) {
        bool ok = pub || smax || (cc->flags & CORRAL__CC_MUST_REVALIDATE);
        if (!storing) ok = ok || corral__http_has_token(resp, "vary", "authorization");
        if (!ok) {
            *why = "Authorization: response not public, s-maxage or must-revalidate";
            return false;
        }
    }
    if (request_has_cookie(req) && !pub && !smax &&
        !corral__http_has_token(resp, "vary", "cookie")) {
        *why = "Cookie: response not public, s-maxage or Vary: Cookie";
        return false;
    }
    return true;
}

/* True when the response itself allows no stale use (§4.2.4). */
static bool forbids_stale(const corral_http_policy *pol, const corral__http_cc *cc) {
    return (cc->flags & (CORRAL__CC_MUST_REVALIDATE | CORRAL__CC_NO_CACHE)) ||
           (pol->shared && (cc->flags & CORRAL__CC_PROXY_REVALIDATE));
}

/* True when only the response's own stale-* directives may allow stale use: s-maxage's
 * implied proxy-revalidate (§5.2.2.10) rules out max-stale and the policy's windows. */
static bool forbids_configured_stale(const corral_http_policy *pol, const corral__http_cc *cc) {
    return forbids_stale(pol, cc) || (pol->shared && cc->s_maxage.present);
}

static bool reusable_status(const corral_http_msg *resp) {
    return !resp->is_request && resp->status >= 200 && resp->status != 206 && resp->status != 304;
}

static int decided(corral_http_decision *out, corral_http_action a, const char *reason) {
    out->action = a;
    out->reason = reason;
    return CORRAL_OK;
}

/* Where a request goes when the entry cannot be used as is: 504 under only-if-cached,
 * a conditional request when there is a validator, else a plain fetch. */
static int to_origin(corral_http_decision *out, bool only_if_cached, bool has_validator,
                     const char *revalidate_reason, const char *miss_reason) {
    if (only_if_cached)
        return decided(out, CORRAL_HTTP_GATEWAY_TIMEOUT, "only-if-cached: no usable entry");
    if (has_validator) return decided(out, CORRAL_HTTP_REVALIDATE, revalidate_reason);
    return decided(out, CORRAL_HTTP_MISS, miss_reason);
}

/* ---- Lookup ---- */

int corral_http_lookup(const corral_http_policy *pol, const corral_http_msg *req,
                       const corral_http_entry *entry, int64_t now_ms, corral_http_decision *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!pol || !req || !out || !req->is_request) return CORRAL_EINVAL;
    out->credentialed =
        corral__http_get(req, "authorization", NULL) != NULL || request_has_cookie(req);
    corral__http_cc rq;
    if (pol->honor_request_cache_control)
        corral__http_cc_parse(req, &rq);
    else
        memset(&rq, 0, sizeof rq);
    out->request_no_store = (rq.flags & CORRAL__CC_NO_STORE) != 0;
    bool oic = (rq.flags & CORRAL__CC_ONLY_IF_CACHED) != 0;

    if (req->method != CORRAL_HTTP_GET && req->method != CORRAL_HTTP_HEAD)
        return decided(out, CORRAL_HTTP_PASS, "method not cacheable");
    if (!entry || !entry->resp) {
        if (oic) return decided(out, CORRAL_HTTP_GATEWAY_TIMEOUT, "only-if-cached: not in cache");
        return decided(out, CORRAL_HTTP_MISS, "not in cache");
    }
    const corral_http_msg *resp = entry->resp;
    if (!reusable_status(resp) || corral__http_has_token(resp, "vary", "*"))
        return to_origin(out, oic, false, NULL, "stored response not reusable");
    corral__http_cc rc;
    corral__http_cc_parse_response(pol, resp, &rc);
    const char *why = NULL;
    if (!shareable(pol, req, resp, &rc, false, &why)) return to_origin(out, oic, false, NULL, why);

    int64_t age_ms, life_ms;
    corral_http_current_age(entry, now_ms, &age_ms, &out->age_s);
    corral_http_freshness_lifetime(pol, resp, entry->response_time_ms, &life_ms, NULL);
    int64_t left = corral__http_sat_sub(life_ms, age_ms);
    out->fresh_left_ms = left;
    bool val = corral__http_has_validator(resp);

    if (rc.flags & CORRAL__CC_NO_CACHE)
        return to_origin(out, oic, val, "response no-cache: revalidate",
                         "response no-cache without validator");
    if (rq.flags & CORRAL__CC_NO_CACHE)
        return to_origin(out, oic, val, "request no-cache: revalidate",
                         "request no-cache, no validator");
    bool age_ok = !delta_ok(&rq.max_age) || age_ms <= corral__http_s_to_ms(rq.max_age.value);
    bool min_fresh_ok =
        !delta_ok(&rq.min_fresh) || left >= corral__http_s_to_ms(rq.min_fresh.value);
    if (left > 0) {
        if (age_ok && min_fresh_ok) return decided(out, CORRAL_HTTP_HIT, "fresh");
        if (!age_ok)
            return to_origin(out, oic, val, "older than the request's max-age: revalidate",
                             "older than the request's max-age");
        return to_origin(out, oic, val, "less fresh than the request's min-fresh: revalidate",
                         "less fresh than the request's min-fresh");
    }

    /* Stale. */
    int64_t stale_ms = corral__http_sat_sub(0, left);
    if (!forbids_stale(pol, &rc)) {
        bool configured = !forbids_configured_stale(pol, &rc);
        /* A client that states max-age or min-fresh wants fresh: no stale-while-revalidate. */
        if (!delta_ok(&rq.max_age) && !delta_ok(&rq.min_fresh)) {
            int64_t win = 0;
            const char *reason = NULL;
            if (delta_ok(&rc.swr)) {
                win = corral__http_s_to_ms(rc.swr.value);
                reason = "stale-while-revalidate";
            }
            if (configured && pol->grace_ms > win) {
                win = pol->grace_ms;
                reason = "stale within the policy's grace";
            }
            if (win > 0 && stale_ms <= win)
                return decided(out, CORRAL_HTTP_STALE_WHILE_REVALIDATE, reason);
        }
        if (configured && delta_ok(&rq.max_stale) && age_ok) {
            if (rq.max_stale.no_value || stale_ms <= corral__http_s_to_ms(rq.max_stale.value))
                return decided(out, CORRAL_HTTP_HIT, "stale within the request's max-stale");
        }
    }
    if (forbids_stale(pol, &rc))
        return to_origin(out, oic, val, "stale, must-revalidate: revalidate",
                         "stale, must-revalidate, no validator");
    return to_origin(out, oic, val, "stale: revalidate", "stale, no validator");
}

/* ---- Origin errors ---- */

int corral_http_on_error(const corral_http_policy *pol, const corral_http_msg *req,
                         const corral_http_entry *entry, int64_t now_ms,
                         corral_http_decision *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!pol || !req || !out || !req->is_request) return CORRAL_EINVAL;
    if (req->method != CORRAL_HTTP_GET && req->method != CORRAL_HTTP_HEAD)
        return decided(out, CORRAL_HTTP_ERROR, "method not cacheable");
    if (!entry || !entry->resp) return decided(out, CORRAL_HTTP_ERROR, "nothing stored");
    const corral_http_msg *resp = entry->resp;
    if (!reusable_status(resp) || corral__http_has_token(resp, "vary", "*"))
        return decided(out, CORRAL_HTTP_ERROR, "stored response not reusable");
    corral__http_cc rc, rq;
    corral__http_cc_parse_response(pol, resp, &rc);
    if (pol->honor_request_cache_control)
        corral__http_cc_parse(req, &rq);
    else
        memset(&rq, 0, sizeof rq);
    const char *why = NULL;
    if (!shareable(pol, req, resp, &rc, false, &why)) return decided(out, CORRAL_HTTP_ERROR, why);
    if (forbids_stale(pol, &rc))
        return decided(out, CORRAL_HTTP_ERROR, "must-revalidate or no-cache: no stale on error");
    int64_t age_ms, life_ms;
    corral_http_current_age(entry, now_ms, &age_ms, &out->age_s);
    corral_http_freshness_lifetime(pol, resp, entry->response_time_ms, &life_ms, NULL);
    int64_t left = corral__http_sat_sub(life_ms, age_ms);
    out->fresh_left_ms = left;
    if (left > 0)
        return decided(out, CORRAL_HTTP_STALE_IF_ERROR, "fresh entry stands in for the origin");
    int64_t stale_ms = corral__http_sat_sub(0, left), win = 0;
    const char *reason = NULL;
    if (delta_ok(&rc.sie)) {
        win = corral__http_s_to_ms(rc.sie.value);
        reason = "stale-if-error (response)";
    }
    if (delta_ok(&rq.sie) && corral__http_s_to_ms(rq.sie.value) > win) {
        win = corral__http_s_to_ms(rq.sie.value);
        reason = "stale-if-error (request)";
    }
    if (!forbids_configured_stale(pol, &rc) && pol->stale_if_error_ms > win) {
        win = pol->stale_if_error_ms;
        reason = "stale within the policy's stale_if_error";
    }
    if (win > 0 && stale_ms <= win) return decided(out, CORRAL_HTTP_STALE_IF_ERROR, reason);
    return decided(out, CORRAL_HTTP_ERROR, "stale beyond stale-if-error");
}

/* ---- Storing ---- */

/* Status codes RFC 9110 defines, whose caching rules we therefore know (must-understand,
 * §5.2.2.3). */
static bool status_understood(unsigned s) {
    return (s >= 200 && s <= 206) || (s >= 300 && s <= 308 && s != 306) || (s >= 400 && s <= 417) ||
           s == 421 || s == 422 || s == 426 || (s >= 500 && s <= 505);
}

static int dont_store(corral_http_decision *out, const char *reason, bool hit_for_pass) {
    out->hit_for_pass = hit_for_pass;
    return decided(out, CORRAL_HTTP_DONT_STORE, reason);
}

int corral_http_store_decide(const corral_http_policy *pol, const corral_http_msg *req,
                             const corral_http_msg *resp, int64_t request_time_ms,
                             int64_t response_time_ms, corral_http_decision *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!pol || !req || !resp || !out || !req->is_request || resp->is_request) return CORRAL_EINVAL;
    out->credentialed =
        corral__http_get(req, "authorization", NULL) != NULL || request_has_cookie(req);
    if (req->method == CORRAL_HTTP_HEAD)
        return dont_store(out, "response to HEAD has no body (fetch misses with GET)", false);
    if (req->method != CORRAL_HTTP_GET) return dont_store(out, "method not cacheable", false);
    unsigned st = resp->status;
    if (st < 200) return dont_store(out, "interim response", false);
    if (st == 206) return dont_store(out, "206 partial content is not stored", false);
    if (st == 304) return dont_store(out, "304: freshen the stored response instead", false);

    corral__http_cc rc, rq;
    corral__http_cc_parse_response(pol, resp, &rc);
    if (pol->honor_request_cache_control)
        corral__http_cc_parse(req, &rq);
    else
        memset(&rq, 0, sizeof rq);
    bool understood = status_understood(st);
    bool must_understand = (rc.flags & CORRAL__CC_MUST_UNDERSTAND) != 0;
    if (must_understand && !understood)
        return dont_store(out, "must-understand: status code not understood", true);
    if ((rc.flags & CORRAL__CC_NO_STORE) && !must_understand)
        return dont_store(out, "response no-store", true);
    if (pol->shared && (rc.flags & CORRAL__CC_PRIVATE))
        return dont_store(out, "response private", true);
    if (corral__http_has_token(resp, "vary", "*")) return dont_store(out, "Vary: *", true);
    if (pol->shared && corral__http_get(resp, "set-cookie", NULL))
        return dont_store(out, "Set-Cookie in a shared cache", true);
    if (rq.flags & CORRAL__CC_NO_STORE) return dont_store(out, "request no-store", false);
    const char *why = NULL;
    if (!shareable(pol, req, resp, &rc, true, &why)) return dont_store(out, why, false);

    /* §3: a status not heuristically cacheable needs explicit freshness or `public`. */
    bool explicit_ok =
        rc.max_age.present || (pol->shared && rc.s_maxage.present) ||
        corral__http_get(resp, "expires", NULL) != NULL || (rc.flags & CORRAL__CC_PUBLIC) ||
        (!pol->shared && (rc.flags & CORRAL__CC_PRIVATE)) || pol->ttl_override_ms >= 0;
    if (!explicit_ok && !corral__http_status_heuristic(st))
        return dont_store(out, "status not cacheable without explicit freshness", true);

    int64_t life_ms, initial_ms;
    const char *source;
    corral_http_freshness_lifetime(pol, resp, response_time_ms, &life_ms, &source);
    corral_http_entry e = { resp, request_time_ms, response_time_ms };
    corral_http_current_age(&e, response_time_ms, &initial_ms, &out->age_s);
    int64_t ttl = corral__http_sat_sub(life_ms, initial_ms);
    if (ttl < 0) ttl = 0;
    const char *reason = source;
    bool no_cache = (rc.flags & CORRAL__CC_NO_CACHE) != 0;
    if (no_cache) {
        ttl = 0;
        reason = "no-cache: stored for revalidation";
    } else if (ttl == 0 && life_ms > 0) {
        reason = "stale on arrival (its age): kept for revalidation or grace";
    } else if (ttl == 0 && strcmp(source, "none") == 0) {
        reason = "no freshness information: kept for revalidation or grace";
    }

    int64_t grace = 0, sie = 0;
    if (!forbids_stale(pol, &rc)) {
        if (delta_ok(&rc.swr)) grace = corral__http_s_to_ms(rc.swr.value);
        if (delta_ok(&rc.sie)) sie = corral__http_s_to_ms(rc.sie.value);
        if (!forbids_configured_stale(pol, &rc)) {
            if (pol->grace_ms > grace) grace = pol->grace_ms;
            if (pol->stale_if_error_ms > sie) sie = pol->stale_if_error_ms;
        }
    }
    int64_t keep = corral__http_has_validator(resp) && pol->keep_ms > 0 ? pol->keep_ms : 0;
    int64_t tail = grace;
    if (sie > tail) tail = sie;
    if (keep > tail) tail = keep;
    int64_t store_ttl = corral__http_sat_add(ttl, tail);
    if (store_ttl <= 0) return dont_store(out, "stale on arrival, no validator and no grace", true);
    out->ttl_ms = ttl;
    out->grace_ms = grace;
    out->stale_if_error_ms = sie;
    out->keep_ms = keep;
    out->store_ttl_ms = store_ttl;
    return decided(out, CORRAL_HTTP_STORE, reason);
}
