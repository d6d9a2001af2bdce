/*
 * store.c - the many-ops as loops over the single ops, for stores without a batch form.
 */
#include "store.h"

int corral__store_get_many(corral__store *s, const corral__skey *ks, size_t n, corral_value **out) {
    for (size_t i = 0; i < n; i++) {
        int rc = s->ops->get(s, &ks[i], &out[i]);
        if (rc < 0) {
            for (size_t j = 0; j <= i; j++) {
                corral_value_unref(out[j]);
                out[j] = NULL;
            }
            return rc;
        }
    }
    return CORRAL_OK;
}

int corral__store_set_many(corral__store *s, const corral__skey *ks, const corral_buf *vals,
                           size_t n, int64_t ttl_ms, unsigned flags) {
    for (size_t i = 0; i < n; i++) {
        int rc =
            s->ops->set(s, &ks[i], vals[i].data, vals[i].len, ttl_ms, CORRAL__SET_ALWAYS, flags);
        if (rc < 0) return rc;
    }
    return CORRAL_OK;
}

int corral__store_del_many(corral__store *s, const corral__skey *ks, size_t n, size_t *deleted) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = s->ops->del(s, &ks[i]);
        if (rc < 0) {
            *deleted = d;
            return rc;
        }
        if (rc == CORRAL_OK) d++;
    }
    *deleted = d;
    return CORRAL_OK;
}
