/*
 * redis_notify.c - the Redis store's lease wake-ups: one subscriber connection per store that
 * wakes this process's watches (store.h: lease_watch) when another process releases a lease.
 *
 * Model
 * - The release script (redis.c) deletes a lease its owner holds and, in the same script,
 *   PUBLISHes "<key> <token>" (the value's key, the lease's token) on
 *   "<KEY_PREFIX>:lease-released". A thread of this file holds one connection, SUBSCRIBEd to
 *   that channel, and on each message wakes the watches of the key (matched by
 *   corral__hash_bytes of its bytes: a collision is one spurious wake-up, which a watcher
 *   survives as it survives any). The connection is to the primary; on a Redis Cluster to one
 *   node, any: a PUBLISH there is broadcast to every node (docs/redis.md, "Lease wake-ups").
 * - Liveness: `live` is true while the connection is subscribed. A watch registered meanwhile is
 *   told so (CORRAL_OK); one registered before is told CORRAL_WAITING and woken when the
 *   subscription begins. When the connection breaks or goes silent (a PING after a quiet
 *   second, lost after one more), every watch is woken (a release may have been lost), `live`
 *   falls, and the thread reconnects with the pool's backoff. Nothing here bounds a wait: every
 *   watcher polls on its own deadline too (loader.c, the proxy), so a lost message costs at
 *   most that poll, and a leader that dies is replaced when its lease expires.
 * - The thread starts with the first watch: opening a store does no I/O.
 * - Under a near cache (tiered.c), its tracker subscribes to the channel on the connection that
 *   brings the invalidations, and hands the messages in here; no thread of ours starts. Redis
 *   sends a connection's messages in order, and the invalidations of a leader's writes before
 *   its release: so a woken waiter's near cache has dropped what the leader wrote (the value,
 *   and for the proxy its object and vary record, under other keys than the lease's). On a
 *   cluster the tracker hands a release in once it heard it on every primary's connection
 *   (tiered.c). The near cache's calls for that (redis.h: corral__redis_lease_attach, _heard,
 *   _live) are here, and so is the store's `connect` (corral__redis_notify_connect).
 *
 * Locks: `lock` guards the buckets, `n_watches`, `live` and the thread's start; woken callbacks
 * run under it (store.h: they are quick and call no store). It is never held across I/O.
 * docs/threads.md.
 */
#include "redis_notify.h"
#include "redis_internal.h"
#include "../fork.h"
#include "../key.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define NOTIFY_MAGIC   0x70715fa1u
#define NOTIFY_BUCKETS 256 /* a power of two */
#define PING_AFTER_NS  1000000000ull
#define PING_LOST_NS   1000000000ull

struct corral__redis_notify {
    uint32_t magic;
    const corral__allocator *alloc;
    corral__redis_notify_connect_fn *connect;
    void *connect_arg;
    char *channel;
    size_t channel_len;
    corral__mutex lock;
    corral__lease_watch *buckets[NOTIFY_BUCKETS];
    size_t n_watches;
    bool live;
    bool started; /* the thread was started (or is being) */
    bool has_thread;
    pthread_t thread;
    _Atomic bool stopping;
    _Atomic(redisContext *) ctx; /* the thread's connection, for a forked child to close */
    int wake[2];                 /* pipe: free writes, the thread polls */
    corral__fork_hook fork_hook;
    corral__redis_notify_counters ctr;
    bool attached; /* the near cache's tracker listens for us (corral__redis_notify_attach) */
};

static void count(_Atomic uint64_t *c) {
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- Watches ---- */

static void unlink_locked(corral__redis_notify *n, corral__lease_watch *w) {
    CORRAL_ASSERT_HELD(&n->lock);
    *w->pprev = w->next;
    if (w->next) w->next->pprev = w->pprev;
    w->next = NULL;
    w->pprev = NULL;
    n->n_watches--;
}

/* Wakes every watch of `hash` (every watch when `all`). */
static void wake_locked(corral__redis_notify *n, uint64_t hash, bool all) {
    CORRAL_ASSERT_HELD(&n->lock);
    size_t from = all ? 0 : hash & (NOTIFY_BUCKETS - 1), to = all ? NOTIFY_BUCKETS : from + 1;
    for (size_t b = from; b < to; b++) {
        corral__lease_watch *w = n->buckets[b];
        while (w) {
            corral__lease_watch *next = w->next;
            if (all || w->hash == hash) {
                unlink_locked(n, w);
                if (!all) count(&n->ctr.wakeups);
                w->woken(w);
            }
            w = next;
        }
    }
}

void corral__redis_notify_set_live(corral__redis_notify *n, bool live) {
    if (!n) return;
    corral__mutex_lock(&n->lock);
    n->live = live;
    wake_locked(n, 0, true);
    corral__mutex_unlock(&n->lock);
}

/* ---- The subscriber thread ---- */

static bool is_str(const redisReply *r, const char *s, size_t len) {
    return r->type == REDIS_REPLY_STRING && r->len == len && memcmp(r->str, s, len) == 0;
}

uint64_t corral__redis_notify_key_hash(const char *payload, size_t len) {
    /* The last space: a binary key may hold spaces (key.h), a token (hex) holds none. */
    size_t key_len = len;
    while (key_len > 0 && payload[key_len - 1] != ' ')
        key_len--;
    return corral__hash_bytes(payload, key_len > 0 ? key_len - 1 : len);
}

void corral__redis_notify_deliver(corral__redis_notify *n, uint64_t key_hash) {
    if (!n) return;
    count(&n->ctr.messages);
    corral__mutex_lock(&n->lock);
    wake_locked(n, key_hash, false);
    corral__mutex_unlock(&n->lock);
}

static void on_message(corral__redis_notify *n, const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !is_str(r->element[0], "message", 7) ||
        !is_str(r->element[1], n->channel, n->channel_len) ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return; /* a PING's ["pong", ""] */
    corral__redis_notify_deliver(
        n, corral__redis_notify_key_hash(r->element[2]->str, r->element[2]->len));
}

static int subscribe(corral__redis_notify *n, redisContext *ctx) {
    redisReply *r = redisCommand(ctx, "SUBSCRIBE %b", n->channel, n->channel_len);
    int rc = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                     is_str(r->element[0], "subscribe", 9)
                 ? 0
                 : -1;
    if (r) freeReplyObject(r);
    return rc;
}

static int send_ping(redisContext *ctx) {
    if (redisAppendCommand(ctx, "PING") != REDIS_OK) return -1;
    int done = 0;
    do {
        if (redisBufferWrite(ctx, &done) != REDIS_OK) return -1;
    } while (!done);
    return 0;
}

/* Hands out messages until the connection fails or goes silent, or free wakes the thread. */
static void listen_releases(corral__redis_notify *n, redisContext *ctx) {
    uint64_t heard_ns = corral__monotonic_ns(), ping_ns = 0;
    for (;;) {
        void *reply = NULL;
        while (redisGetReplyFromReader(ctx, &reply) == REDIS_OK && reply) {
            on_message(n, reply);
            freeReplyObject(reply);
            reply = NULL;
        }
        if (ctx->err) return;
        uint64_t now = corral__monotonic_ns();
        uint64_t due = ping_ns ? ping_ns + PING_LOST_NS : heard_ns + PING_AFTER_NS;
        if (now >= due) {
            if (ping_ns || send_ping(ctx) != 0) return;
            ping_ns = now;
            continue;
        }
        struct pollfd pf[2] = { { .fd = ctx->fd, .events = POLLIN },
                                { .fd = n->wake[0], .events = POLLIN } };
        int r = poll(pf, 2, (int)((due - now + 999999u) / 1000000u));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 || pf[1].revents || atomic_load(&n->stopping)) return;
        if (pf[0].revents) {
            if (redisBufferRead(ctx) != REDIS_OK) return;
            heard_ns = corral__monotonic_ns();
            ping_ns = 0;
        }
    }
}

static bool wait_or_stop(corral__redis_notify *n, uint64_t ms) {
    if (atomic_load(&n->stopping)) return true;
    struct pollfd pf = { .fd = n->wake[0], .events = POLLIN };
    int r = poll(&pf, 1, (int)CORRAL_MIN(ms, (uint64_t)INT32_MAX));
    return (r > 0 && pf.revents) || atomic_load(&n->stopping);
}

static void *notify_main(void *arg) {
    corral__redis_notify *n = arg;
    sigset_t set; /* our own thread: a write to a dead server must not kill the process */
    if (sigemptyset(&set) == 0 && sigaddset(&set, SIGPIPE) == 0)
        (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
    unsigned fails = 0;
    uint64_t rng = (uint64_t)(uintptr_t)n ^ 0x9e3779b97f4a7c15ull;
    while (!atomic_load(&n->stopping)) {
        redisContext *ctx = n->connect(n->connect_arg);
        atomic_store(&n->ctx, ctx);
        if (ctx && subscribe(n, ctx) == 0) {
            fails = 0;
            count(&n->ctr.subscribes);
            corral__redis_notify_set_live(n, true);
            listen_releases(n, ctx);
            corral__redis_notify_set_live(n, false);
        }
        atomic_store(&n->ctx, NULL);
        if (ctx) redisFree(ctx);
        if (fails < UINT32_MAX) fails++;
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        if (wait_or_stop(n, corral__redis_backoff_ms(fails, rng >> 11))) break;
    }
    return NULL;
}

/* ---- The vtable's calls ---- */

int corral__redis_notify_watch(corral__redis_notify *n, const corral__skey *k,
                               corral__lease_watch *w) {
    if (!n) return CORRAL_ENOTSUP;
    CORRAL_CHECK_OBJ(n, NOTIFY_MAGIC);
    w->hash = corral__hash_bytes(k->data, k->len);
    corral__mutex_lock(&n->lock);
    if (!n->started && !n->attached && n->wake[0] >= 0) {
        n->started = true;
        n->has_thread = pthread_create(&n->thread, NULL, notify_main, n) == 0;
        if (!n->has_thread) n->started = false; /* the next watch tries again */
    }
    corral__lease_watch **b = &n->buckets[w->hash & (NOTIFY_BUCKETS - 1)];
    w->next = *b;
    w->pprev = b;
    if (*b) (*b)->pprev = &w->next;
    *b = w;
    n->n_watches++;
    bool live = n->live;
    corral__mutex_unlock(&n->lock);
    return live ? CORRAL_OK : CORRAL_WAITING;
}

bool corral__redis_notify_unwatch(corral__redis_notify *n, corral__lease_watch *w) {
    if (!n) return false;
    CORRAL_CHECK_OBJ(n, NOTIFY_MAGIC);
    corral__mutex_lock(&n->lock);
    bool linked = w->pprev != NULL;
    if (linked) unlink_locked(n, w);
    corral__mutex_unlock(&n->lock);
    return linked;
}

/* ---- Life ---- */

/* In a forked child (fork.h): the thread is gone, and so are the threads that watched; the
 * connection and the pipe are the parent's. The next watch starts a thread of the child's. */
static void notify_after_fork(void *arg) {
    corral__redis_notify *n = arg;
    redisContext *ctx = atomic_exchange(&n->ctx, NULL);
    if (ctx && ctx->fd >= 0) (void)close(ctx->fd);
    memset(&n->lock, 0, sizeof n->lock);
    CORRAL_MUST(corral__mutex_init(&n->lock) == CORRAL_OK);
    memset(n->buckets, 0, sizeof n->buckets);
    n->n_watches = 0;
    n->live = false;
    n->started = false;
    n->has_thread = false;
    for (int i = 0; i < 2; i++)
        if (n->wake[i] >= 0) (void)close(n->wake[i]);
    /* Without one, watches stay CORRAL_WAITING: their callers poll. */
    (void)corral__cloexec_pipe(n->wake);
}

int corral__redis_notify_new(corral__redis_notify **out, corral__redis_notify_connect_fn *connect,
                             void *arg, const char *key_prefix, size_t key_prefix_len,
                             const corral__allocator *a) {
    *out = NULL;
    corral__redis_notify *n = corral__calloc(a, 1, sizeof *n);
    if (!n) return CORRAL_ENOMEM;
    n->alloc = a;
    n->connect = connect;
    n->connect_arg = arg;
    size_t suffix = sizeof CORRAL__REDIS_NOTIFY_SUFFIX - 1;
    n->channel_len = key_prefix_len ? key_prefix_len + 1 + suffix : suffix;
    n->channel = corral__alloc(a, n->channel_len + 1);
    if (!n->channel || corral__mutex_init(&n->lock) != CORRAL_OK) {
        corral__free(a, n->channel, n->channel_len + 1);
        corral__free(a, n, sizeof *n);
        return CORRAL_ENOMEM;
    }
    char *p = n->channel;
    if (key_prefix_len) {
        memcpy(p, key_prefix, key_prefix_len);
        p[key_prefix_len] = ':';
        p += key_prefix_len + 1;
    }
    memcpy(p, CORRAL__REDIS_NOTIFY_SUFFIX, suffix + 1);
    atomic_init(&n->stopping, false);
    atomic_init(&n->ctx, NULL);
    (void)corral__cloexec_pipe(n->wake); /* as in a child: without one, callers poll */
    n->magic = NOTIFY_MAGIC;
    n->fork_hook.child = notify_after_fork;
    n->fork_hook.arg = n;
    corral__fork_hook_add(&n->fork_hook);
    *out = n;
    return CORRAL_OK;
}

void corral__redis_notify_free(corral__redis_notify *n) {
    if (!n) return;
    CORRAL_CHECK_OBJ(n, NOTIFY_MAGIC);
    corral__fork_hook_remove(&n->fork_hook);
    if (n->has_thread) {
        atomic_store(&n->stopping, true);
        (void)corral__pipe_poke(n->wake[1]);
        CORRAL_MUST(pthread_join(n->thread, NULL) == 0);
    }
    for (int i = 0; i < 2; i++)
        if (n->wake[i] >= 0) (void)close(n->wake[i]);
    assert(n->n_watches == 0);
    corral__mutex_deinit(&n->lock);
    corral__free(n->alloc, n->channel, n->channel_len + 1);
    n->magic = 0;
    corral__free(n->alloc, n, sizeof *n);
}

const char *corral__redis_notify_channel(const corral__redis_notify *n, size_t *len) {
    *len = 0;
    if (!n) return NULL;
    *len = n->channel_len;
    return n->channel;
}

corral__redis_notify_counters *corral__redis_notify_counters_of(corral__redis_notify *n) {
    return &n->ctr;
}

void corral__redis_notify_attach(corral__redis_notify *n) {
    if (!n) return;
    corral__mutex_lock(&n->lock);
    n->attached = true;
    corral__mutex_unlock(&n->lock);
}

/* ---- The store's connection, and the near cache's way in (redis.h) ---- */

redisContext *corral__redis_notify_connect(void *store) {
    redis_store *s = store;
    return s->cluster ? corral__redis_cluster_connect_any(s->cluster)
                      : corral__redis_pool_connect(s->pool);
}

const char *corral__redis_lease_attach(corral__store *base, size_t *len) {
    redis_store *s = store_of(base);
    corral__redis_notify_attach(s->notify);
    return corral__redis_notify_channel(s->notify, len);
}

uint64_t corral__redis_lease_key_hash(const char *payload, size_t len) {
    return corral__redis_notify_key_hash(payload, len);
}

void corral__redis_lease_heard(corral__store *base, uint64_t key_hash) {
    corral__redis_notify_deliver(store_of(base)->notify, key_hash);
}

void corral__redis_lease_live(corral__store *base, bool live) {
    corral__redis_notify_set_live(store_of(base)->notify, live);
}
