/*
 * redis_state.c - the state of one Redis server, and the telling of its changes (redis_state.h;
 * the model and its reasons: docs/redis.md, "Why: reasons and state").
 *
 * Telling: a change of `down` is told by the thread that made it, after it let go of the lock.
 * A thread that finds another one telling (`telling`) leaves the news to it; that thread takes
 * the lock again after each call and tells again while the state differs from what it told
 * last. So calls about one server never overlap, never repeat a state, and the last one tells
 * the current state; a flap within one call is merged away.
 */
#include "redis_state.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int corral__redis_state_init(corral__redis_state *st, const char *name, int port,
                             corral_store_state_fn on_state, void *state_ctx) {
    memset(st, 0, sizeof *st);
    st->on_state = on_state;
    st->state_ctx = state_ctx;
    atomic_init(&st->down_hint, false);
    /* A longer name is cut; the field stays NUL-terminated. IPv6 addresses get brackets. */
    int n = port ? snprintf(st->server, sizeof st->server, strchr(name, ':') ? "[%s]:%d" : "%s:%d",
                            name, port)
                 : snprintf(st->server, sizeof st->server, "%s", name);
    (void)n;
    if (corral__mutex_init(&st->lock) != CORRAL_OK) return CORRAL_ENOMEM;
    st->has_lock = true;
    return CORRAL_OK;
}

void corral__redis_state_deinit(corral__redis_state *st) {
    if (st->has_lock) corral__mutex_deinit(&st->lock);
    st->has_lock = false;
}

void corral__redis_state_after_fork(corral__redis_state *st) {
    st->telling = false;
    CORRAL_MUST(corral__mutex_init(&st->lock) == CORRAL_OK);
}

static void get_locked(corral__redis_state *st, corral_server_status *out) {
    CORRAL_ASSERT_HELD(&st->lock);
    memset(out, 0, sizeof *out);
    memcpy(out->server, st->server, sizeof out->server);
    out->is_down = st->down;
    out->reason = st->reason;
    memcpy(out->msg, st->msg, sizeof out->msg);
    out->failures = st->failures;
}

void corral__redis_state_get(corral__redis_state *st, corral_server_status *out) {
    corral__mutex_lock(&st->lock);
    get_locked(st, out);
    corral__mutex_unlock(&st->lock);
}

/* Tells the callback of each change not told yet (see the top of the file). */
static void tell(corral__redis_state *st) {
    if (!st->on_state) return;
    corral__mutex_lock(&st->lock);
    if (st->telling) {
        corral__mutex_unlock(&st->lock);
        return;
    }
    st->telling = true;
    while (st->down != st->told_down) {
        st->told_down = st->down;
        corral_server_status s;
        get_locked(st, &s);
        corral__mutex_unlock(&st->lock);
        st->on_state(st->state_ctx, &s);
        corral__mutex_lock(&st->lock);
    }
    st->telling = false;
    corral__mutex_unlock(&st->lock);
}

/* Reasons that concern the server, not one command or this process. */
static bool reason_is_server(corral_store_reason r) {
    return r != CORRAL_REASON_NONE && r != CORRAL_REASON_REPLY && r != CORRAL_REASON_POOL &&
           r != CORRAL_REASON_NOMEM;
}

void corral__redis_state_failed(corral__redis_state *st, corral_store_reason reason,
                                bool writes_only, const char *msg, size_t len) {
    bool changed = false;
    corral__mutex_lock(&st->lock);
    st->failures++;
    st->reason = reason;
    len = CORRAL_MIN(len, sizeof st->msg - 1);
    for (size_t i = 0; i < len; i++)
        st->msg[i] = (unsigned char)msg[i] < 0x20 || msg[i] == 0x7f ? '?' : msg[i];
    st->msg[len] = '\0';
    if (reason_is_server(reason)) {
        if (!st->down) {
            st->down = changed = true;
            st->writes_refused = writes_only;
            atomic_store_explicit(&st->down_hint, true, memory_order_relaxed);
        } else if (!writes_only) {
            st->writes_refused = false;
        }
    }
    corral__mutex_unlock(&st->lock);
    if (changed) tell(st);
}

void corral__redis_state_failedf(corral__redis_state *st, corral_store_reason reason,
                                 const char *fmt, ...) {
    char msg[sizeof st->msg];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    corral__redis_state_failed(st, reason, false, msg,
                               n < 0 ? 0 : CORRAL_MIN((size_t)n, sizeof msg - 1));
}

void corral__redis_state_error_reply(corral__redis_state *st, const char *s, size_t n,
                                     corral_store_reason otherwise) {
    static const struct {
        const char *code;
        corral_store_reason reason;
        bool writes_only;
    } codes[] = {
        { "OOM", CORRAL_REASON_OOM, true },
        { "READONLY", CORRAL_REASON_READONLY, true },
        { "MISCONF", CORRAL_REASON_UNAVAILABLE, true },
        { "NOREPLICAS", CORRAL_REASON_UNAVAILABLE, true },
        { "LOADING", CORRAL_REASON_UNAVAILABLE, false },
        { "BUSY", CORRAL_REASON_UNAVAILABLE, false },
        { "MASTERDOWN", CORRAL_REASON_UNAVAILABLE, false },
        { "TRYAGAIN", CORRAL_REASON_UNAVAILABLE, false },
        { "CLUSTERDOWN", CORRAL_REASON_UNAVAILABLE, false },
        { "NOAUTH", CORRAL_REASON_AUTH, false },
        { "WRONGPASS", CORRAL_REASON_AUTH, false },
        { "NOPERM", CORRAL_REASON_AUTH, false },
    };
    size_t word = 0;
    while (word < n && s[word] != ' ')
        word++;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        size_t len = strlen(codes[i].code);
        if (word == len && memcmp(s, codes[i].code, len) == 0) {
            corral__redis_state_failed(st, codes[i].reason, codes[i].writes_only, s, n);
            return;
        }
    }
    static const char max_clients[] = "ERR max number of clients reached";
    if (n >= sizeof max_clients - 1 && memcmp(s, max_clients, sizeof max_clients - 1) == 0)
        otherwise = CORRAL_REASON_UNAVAILABLE;
    corral__redis_state_failed(st, otherwise, false, s, n);
}

void corral__redis_state_answered(corral__redis_state *st, bool wrote) {
    if (!atomic_load_explicit(&st->down_hint, memory_order_relaxed)) return;
    corral__mutex_lock(&st->lock);
    bool changed = st->down && (!st->writes_refused || wrote);
    if (changed) {
        st->down = st->writes_refused = false;
        atomic_store_explicit(&st->down_hint, false, memory_order_relaxed);
    }
    corral__mutex_unlock(&st->lock);
    if (changed) tell(st);
}
