/*
 * redis_state.h - the state of one Redis server as corral_store_status (corral.h) reports it:
 * the latest failure's reason and text, the count, whether the server is down, and the telling
 * of each change of that to the handle's state callback. redis_pool.c keeps one per server and
 * records here every failure of its calls, and every call a down server answered.
 *
 * A server goes down with its first failure of a reason that concerns it (not REPLY, POOL or
 * NOMEM) and comes back with the first call it answers without failing. OOM, READONLY, MISCONF
 * and NOREPLICAS refuse writes and serve reads: they end only with an answered write.
 *
 * Threads: every function is thread-safe. `lock` is a leaf: held for a few instructions, never
 * with another lock and never while the callback runs (docs/threads.md).
 */
#ifndef CORRAL_STORE_REDIS_STATE_H
#define CORRAL_STORE_REDIS_STATE_H

#include "../common.h"

#include <stdatomic.h>

typedef struct corral__redis_state {
    corral__mutex lock;
    bool has_lock;
    corral_store_state_fn on_state; /* NULL: nobody is told */
    void *state_ctx;
    char server[sizeof(((corral_server_status *)0)->server)]; /* "host:port", the socket path */
    /* Under `lock`: */
    bool down;           /* failed for a reason that concerns the server; not answered since */
    bool writes_refused; /* down for writes only: only an accepted SET's answer ends it */
    bool told_down;      /* the state last told to the callback */
    bool telling;        /* a thread is calling the callback */
    corral_store_reason reason; /* of the latest failure */
    char msg[sizeof(((corral_server_status *)0)->msg)];
    uint64_t failures;
    _Atomic bool down_hint; /* `down`, for the end of every call to read without the lock */
} corral__redis_state;

/* Initialises the state of server `name` (`port` 0: a unix socket path), up, told to `on_state`
 * (may be NULL). CORRAL_OK or CORRAL_ENOMEM. deinit accepts a state whose init failed. */
int corral__redis_state_init(corral__redis_state *st, const char *name, int port,
                             corral_store_state_fn on_state, void *state_ctx);
void corral__redis_state_deinit(corral__redis_state *st);
/* In a forked child: the lock is made again, and a parent's thread telling is gone. */
void corral__redis_state_after_fork(corral__redis_state *st);

/* Records a failure: its reason, and its text (`msg`, `len` bytes; control bytes become '?'). A
 * reason that concerns the server takes it down (for writes only with `writes_only`), and the
 * callback is told when that is a change. */
void corral__redis_state_failed(corral__redis_state *st, corral_store_reason reason,
                                bool writes_only, const char *msg, size_t len);
/* The same with a formatted text. */
void corral__redis_state_failedf(corral__redis_state *st, corral_store_reason reason,
                                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records an error reply (`s`, `n` bytes), its reason found from its first word (Redis's error
 * codes); an error without a reason of its own counts as `otherwise` (REPLY for a command's,
 * BAD_DB for SELECT's, AUTH for AUTH's). */
void corral__redis_state_error_reply(corral__redis_state *st, const char *s, size_t n,
                                     corral_store_reason otherwise);

/* A call the server answered without failing (a write with `is_write`): ends a down state.
 * Costs one relaxed load while the server is up. */
void corral__redis_state_answered(corral__redis_state *st, bool wrote);

/* Copies the state into `out`. */
void corral__redis_state_get(corral__redis_state *st, corral_server_status *out);

#endif /* CORRAL_STORE_REDIS_STATE_H */
