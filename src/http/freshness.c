/*
 * freshness.c - how long a response is fresh and how old it is: RFC 9111 §4.2.1 (freshness
 * lifetime: s-maxage, max-age, Expires - Date), §4.2.2 (heuristic freshness from
 * Last-Modified, only for heuristically cacheable statuses or `public` responses), §4.2.3 (the
 * age calculation behind the Age field), and the policy's defaults.
 *
 * All times are ms since the epoch and come from the caller. Dates in fields have one-second
 * resolution, so ages are exact to the second, as the Age field is. Arithmetic saturates:
 * hostile dates (year 9999, year 1) cannot overflow.
 */
#include "http_internal.h"

void corral_http_policy_init(corral_http_policy *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->shared = true;
    p->honor_request_cache_control = true;
    p->ttl_override_ms = -1;
    p->max_ttl_ms = 0;
    p->heuristic_percent = 10;
    p->heuristic_max_ms = 86400000;
    p->grace_ms = 0;
    p->stale_if_error_ms = 0;
    p->keep_ms = 600000;
}

/* date_value of §4.2.3: the Date field, or the time of receipt when it is missing or bad. */
static int64_t date_value(const corral_http_msg *resp, int64_t response_time_ms) {
    int64_t d;
    return corral__http_date_field(resp, "date", response_time_ms, &d) == 1 ? d : response_time_ms;
}

int corral_http_freshness_lifetime(const corral_http_policy *pol, const corral_http_msg *resp,
                                   int64_t response_time_ms, int64_t *ms, const char **source) {
    if (ms) *ms = 0;
    if (source) *source = "none";
    if (!pol || !resp || !ms || resp->is_request) return CORRAL_EINVAL;
    corral__http_cc cc;
    corral__http_cc_parse_response(pol, resp, &cc);
    int64_t life = 0;
    const char *src = "none";
    if (pol->ttl_override_ms >= 0) {
        life = pol->ttl_override_ms;
        src = "ttl override";
    } else if (pol->shared && cc.s_maxage.present) {
        life = cc.s_maxage.bad ? 0 : corral__http_s_to_ms(cc.s_maxage.value);
        src = cc.s_maxage.bad ? "s-maxage (invalid: stale)" : "s-maxage";
    } else if (cc.max_age.present) {
        life = cc.max_age.bad ? 0 : corral__http_s_to_ms(cc.max_age.value);
        src = cc.max_age.bad ? "max-age (invalid: stale)" : "max-age";
    } else if (corral__http_get(resp, "expires", NULL)) {
        int64_t exp;
        int r = corral__http_date_field(resp, "expires", response_time_ms, &exp);
        if (r == 1) {
            life = corral__http_sat_sub(exp, date_value(resp, response_time_ms));
            src = "Expires";
        } else {
            /* §5.3: an invalid Expires (such as "0") is a time in the past. */
            src = "Expires (invalid: stale)";
        }
    } else if (pol->heuristic_percent > 0 &&
               (corral__http_status_heuristic(resp->status) || (cc.flags & CORRAL__CC_PUBLIC))) {
        int64_t lm;
        if (corral__http_date_field(resp, "last-modified", response_time_ms, &lm) == 1) {
            int64_t since = corral__http_sat_sub(date_value(resp, response_time_ms), lm);
            if (since > 0) {
                int64_t pct = (int64_t)pol->heuristic_percent;
                life = since / 100 > INT64_MAX / pct ? INT64_MAX : since / 100 * pct;
                if (pol->heuristic_max_ms >= 0 && life > pol->heuristic_max_ms)
                    life = pol->heuristic_max_ms;
                src = "heuristic (Last-Modified)";
            }
        }
    }
    if (life < 0) life = 0;
    if (pol->max_ttl_ms > 0 && life > pol->max_ttl_ms) life = pol->max_ttl_ms;
    *ms = life;
    if (source) *source = src;
    return CORRAL_OK;
}

int corral_http_current_age(const corral_http_entry *entry, int64_t now_ms, int64_t *age_ms,
                            int64_t *age_s) {
    if (age_ms) *age_ms = 0;
    if (age_s) *age_s = 0;
    if (!entry || !entry->resp || entry->resp->is_request) return CORRAL_EINVAL;
    const corral_http_msg *resp = entry->resp;
    int64_t age_value = 0;
    /* §5.1: an Age that arrives as a list, or on several lines, is read as its first member
     * (the first element of the first line); an invalid first member is ignored. */
    const char *el;
    size_t el_len, hi = 0, pos = 0;
    if (corral__http_fields_next(resp, "age", &hi, &pos, &el, &el_len) && el[0] != '"' &&
        corral__http_delta_seconds(el, el_len, &age_value))
        age_value = corral__http_s_to_ms(age_value);
    else
        age_value = 0;
    int64_t rt = entry->response_time_ms;
    int64_t apparent = corral__http_sat_sub(rt, date_value(resp, rt));
    if (apparent < 0) apparent = 0;
    int64_t delay = corral__http_sat_sub(rt, entry->request_time_ms);
    if (delay < 0) delay = 0;
    int64_t corrected_age = corral__http_sat_add(age_value, delay);
    int64_t initial = apparent > corrected_age ? apparent : corrected_age;
    int64_t resident = corral__http_sat_sub(now_ms, rt);
    if (resident < 0) resident = 0;
    int64_t age = corral__http_sat_add(initial, resident);
    if (age_ms) *age_ms = age;
    if (age_s) *age_s = age / 1000;
    return CORRAL_OK;
}
