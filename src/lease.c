/*
 * lease.c - corral_lease_try and corral_lease_end (corral.h): the store's lease for callers
 * that cannot block (corral-proxy), with a watch on it (store.h: lease_watch) that calls them
 * back when another process releases it. corral_get_or_set waits on the same watch
 * (loader.c).
 *
 * A try registers its watch before it asks for the lease, so a release between the two is not
 * missed: `woken` only records it until the try knows the lease is another's (`watching`), and
 * the try calls back itself when it was recorded meanwhile. `lock` orders the two.
 *
 * Threads: everything here is thread-safe; `woken` runs on the store's thread under its lock.
 */
#include "access.h"

#include <string.h>

#define LEASE_MAGIC     0x1ea5e000u
#define LEASE_TOKEN_LEN 32

struct corral_lease {
    uint32_t magic;
    corral__lease_watch w;
    corral_lease_cb cb;
    void *arg;
    pthread_mutex_t lock; /* `woken` and `watching` */
    bool woken;           /* a release (or a change of liveness) was announced */
    bool watching;        /* the try returned CORRAL_EXISTS: a wake calls back */
    bool registered;      /* `w` is registered with the store */
    bool held;            /* the lease is ours */
    bool live;            /* the store's announcements were live at the try */
    corral__skey sk;      /* data points into `key` */
    char token[LEASE_TOKEN_LEN];
    char key[CORRAL__KEYBUF];
};

static void lease_woken(corral__lease_watch *w) {
    corral_lease *l = w->arg;
    CORRAL_MUST(pthread_mutex_lock(&l->lock) == 0);
    l->woken = true;
    bool call = l->watching && l->cb;
    CORRAL_MUST(pthread_mutex_unlock(&l->lock) == 0);
    if (call) l->cb(l->arg);
}

static void lease_free(corral *c, corral_lease *l) {
    CORRAL_MUST(pthread_mutex_destroy(&l->lock) == 0);
    l->magic = 0;
    corral__free(&c->alloc, l, sizeof *l);
}

int corral_lease_try(corral *c, const void *key, size_t key_len, const corral_call *call,
                     int64_t ttl_ms, corral_lease_cb cb, void *arg, corral_lease **out) {
    if (out) *out = NULL;
    if (!c || !out || ttl_ms <= 0) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__store *s = c->store;
    if (!s->ops->lease_watch) return CORRAL_ENOTSUP;
    corral_lease *l = corral__calloc(&c->alloc, 1, sizeof *l);
    if (!l) return CORRAL_ENOMEM;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        corral__free(&c->alloc, l, sizeof *l);
        return CORRAL_ENOMEM;
    }
    l->magic = LEASE_MAGIC;
    int rc = corral__make_skey(c, key, key_len, call, l->key, &l->sk);
    if (rc != CORRAL_OK) {
        lease_free(c, l);
        return rc;
    }
    for (size_t i = 0; i < LEASE_TOKEN_LEN; i += 16) {
        static const char hex[] = "0123456789abcdef";
        uint64_t r = corral__rand64(c);
        for (size_t k = 0; k < 16; k++, r >>= 4)
            l->token[i + k] = hex[r & 15];
    }
    l->cb = cb;
    l->arg = arg;
    l->w.woken = lease_woken;
    l->w.arg = l;
    int wrc = cb ? s->ops->lease_watch(s, &l->sk, &l->w) : CORRAL_ENOTSUP;
    l->registered = wrc == CORRAL_OK || wrc == CORRAL_WAITING;
    l->live = wrc == CORRAL_OK;
    rc = corral__lease_acquire(c, &l->sk, l->token, LEASE_TOKEN_LEN, ttl_ms);
    if (rc == CORRAL_EXISTS && l->registered) {
        CORRAL_MUST(pthread_mutex_lock(&l->lock) == 0);
        l->watching = true;
        bool woken = l->woken;
        CORRAL_MUST(pthread_mutex_unlock(&l->lock) == 0);
        if (woken) cb(arg); /* released between the watch and the try */
        *out = l;
        return CORRAL_EXISTS;
    }
    if (l->registered) (void)s->ops->lease_unwatch(s, &l->w); /* `watching` is false: no call */
    l->registered = false;
    if (rc == CORRAL_OK) {
        l->held = true;
        l->live = false;
        *out = l;
        return CORRAL_OK;
    }
    if (rc == CORRAL_EXISTS) { /* no watch (cb NULL, or no memory): the caller polls */
        l->live = false;
        *out = l;
        return CORRAL_EXISTS;
    }
    lease_free(c, l);
    return rc;
}

bool corral_lease_live(const corral_lease *l) {
    return l && l->magic == LEASE_MAGIC && l->live;
}

int corral_lease_end(corral *c, corral_lease *l) {
    if (!l) return CORRAL_OK;
    if (!c) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    CORRAL_CHECK_OBJ(l, LEASE_MAGIC);
    int rc = CORRAL_OK;
    if (l->held) {
        rc = corral__lease_release(c, &l->sk, l->token, LEASE_TOKEN_LEN);
    } else if (l->registered) {
        rc = c->store->ops->lease_unwatch(c->store, &l->w) ? CORRAL_OK : CORRAL_MISS;
    } else {
        CORRAL_MUST(pthread_mutex_lock(&l->lock) == 0);
        rc = l->woken ? CORRAL_MISS : CORRAL_OK;
        CORRAL_MUST(pthread_mutex_unlock(&l->lock) == 0);
    }
    lease_free(c, l);
    return rc;
}
