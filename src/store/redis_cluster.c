/*
 * redis_cluster.c - routing the Redis store's calls over a Redis Cluster (redis_cluster.h).
 *
 * Model
 * - Nodes: every node the store has met (a seed, or named by the slot map or a redirection)
 *   has a pool of its own (redis_pool.c, one server), made on first sight and kept until close,
 *   so a call never races the freeing of a pool. A node's index is stable; at most
 *   CORRAL__REDIS_MAX_NODES of them.
 * - The route: the slot map (redis_slots.h) with its nodes as indexes: per slot a shard, per
 *   shard a primary and its replicas. Loaded by the first call, and refreshed (CLUSTER SLOTS
 *   from a known node) when a node answers MOVED, when a node cannot be reached, and on
 *   CLUSTERDOWN. One thread refreshes at a time; the others go on with the route they have (a
 *   MOVED still takes them to the right node at the cost of a hop). Refreshes after a failure
 *   are at most one per REFRESH_GAP_MS, so a dead node is not asked for the map by every call;
 *   a MOVED refreshes unless a refresh began after its command was sent.
 * - Failover: a primary that dies fails its calls (connection refused, or its pool's breaker:
 *   redis_pool.c) and asks for a refresh; once the cluster has promoted its replica, the next
 *   refresh names the new primary and calls go there. Nothing restarts; the outage is the
 *   cluster's own failover window.
 * - Reads from replicas (cfg->readonly): every connection sends READONLY (a no-op on a
 *   primary), and CORRAL__REDIS_READ calls go round-robin to the slot's replicas, falling back
 *   to the primary when a replica cannot be reached.
 * - Deadlines: a call never waits on the network longer than its pool allows per send, and a
 *   redirection or retry is made only while less than one command timeout has passed since the
 *   call's first send, at most CORRAL__REDIS_MAX_HOPS times, and a refresh asks a second node
 *   only before that deadline: a call returns within about two command timeouts (plus a
 *   connect timeout per new node) whatever the cluster does.
 *
 * Locking: `lock` (a rwlock) protects the node table's length and the route; readers copy a
 * node index out and drop it before any I/O. `refreshing` (atomic) lets one thread refresh.
 * Pools have their own locks (redis_pool.c); `lock` is a leaf: no other lock is taken while it
 * is held (a new node's pool is made before, docs/threads.md).
 */
#include "redis_cluster.h"
#include "redis_slots.h"
#include "../fork.h"
#include "../prom.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define CLUSTER_MAGIC  0xc1a57e85u
#define NO_NODE        UINT16_MAX
#define REFRESH_GAP_MS 50
#define REFRESH_TRIES  3 /* nodes asked for the map, at most, in one refresh */
#define NS_PER_MS      1000000ull

typedef struct cshard {
    uint16_t primary;
    uint16_t replicas[CORRAL__REDIS_MAX_REPLICAS];
    unsigned n_replicas;
} cshard;

typedef struct cnode {
    corral__redis_addr addr;
    corral__redis_pool *pool;
} cnode;

struct corral__redis_cluster {
    uint32_t magic;
    corral__allocator alloc;
    corral__redis_pool_config cfg; /* for the nodes' pools; addrs NULL, strings owned below */
    char *username, *password;
    size_t username_len, password_len;
    corral__redis_addr seeds[CORRAL__REDIS_MAX_HOSTS];
    size_t n_seeds;
    uint64_t command_timeout_ns;
    pthread_rwlock_t lock;
    /* Under `lock`: */
    cnode *nodes[CORRAL__REDIS_MAX_NODES];
    size_t n_nodes;
    cshard shards[CORRAL__REDIS_MAX_SHARDS];
    size_t n_shards;
    uint16_t shard_of[CORRAL__REDIS_SLOTS];
    bool loaded;
    /* A refresh's scratch map, owned by the thread that holds `refreshing`. */
    corral__redis_slot_map *scratch;
    _Atomic bool refreshing;
    _Atomic uint64_t last_refresh_ns;
    _Atomic uint64_t next_replica;
    _Atomic uint64_t next_subscriber; /* corral__redis_cluster_connect_any's turn */
    _Atomic uint64_t topology;        /* bumped when the set of primaries changes */
    _Atomic uint64_t moved, ask, refreshes, refresh_failures, retries, no_route;
    corral__fork_hook fork_hook; /* cluster_after_fork, in a forked child */
};

static void count(_Atomic uint64_t *c) {
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static bool same_addr(const corral__redis_addr *a, const corral__redis_addr *b) {
    return a->port == b->port && strcmp(a->name, b->name) == 0;
}

/* ---- Nodes ---- */

static int find_node_locked(corral__redis_cluster *cl, const corral__redis_addr *a) {
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (same_addr(&cl->nodes[i]->addr, a)) return (int)i;
    return -1;
}

/* The node at `a`, made when new; -1 when the table is full or memory ran out. A new node's
 * pool is made with no lock held (making it registers a fork hook, under the fork list's lock,
 * which is taken with no other lock held: docs/threads.md), then added under the write lock
 * unless another thread added the same node meanwhile. */
static int node_at(corral__redis_cluster *cl, const corral__redis_addr *a) {
    pthread_rwlock_rdlock(&cl->lock);
    int i = find_node_locked(cl, a);
    bool full = cl->n_nodes == CORRAL__REDIS_MAX_NODES;
    pthread_rwlock_unlock(&cl->lock);
    if (i >= 0 || full) return i;
    cnode *n = corral__calloc(&cl->alloc, 1, sizeof *n);
    if (!n) return -1;
    n->addr = *a;
    corral__redis_pool_config pc = cl->cfg;
    pc.addrs = &n->addr;
    pc.n_addrs = 1;
    if (corral__redis_pool_new(&n->pool, &pc, &cl->alloc) != CORRAL_OK) {
        corral__free(&cl->alloc, n, sizeof *n);
        return -1;
    }
    pthread_rwlock_wrlock(&cl->lock);
    i = find_node_locked(cl, a);
    if (i < 0 && cl->n_nodes < CORRAL__REDIS_MAX_NODES) {
        i = (int)cl->n_nodes;
        cl->nodes[cl->n_nodes++] = n;
        n = NULL;
    }
    pthread_rwlock_unlock(&cl->lock);
    if (n) { /* lost the race, or the table filled meanwhile */
        corral__redis_pool_free(n->pool);
        corral__free(&cl->alloc, n, sizeof *n);
    }
    return i;
}

static corral__redis_pool *pool_of(corral__redis_cluster *cl, int node) {
    pthread_rwlock_rdlock(&cl->lock);
    corral__redis_pool *p = node >= 0 && (size_t)node < cl->n_nodes ? cl->nodes[node]->pool : NULL;
    pthread_rwlock_unlock(&cl->lock);
    return p;
}

/* ---- The route ---- */

/* Makes the nodes `m` names (no lock held), then installs it as the route under the write lock.
 * A shard whose primary could not be made leaves its slots without a route. */
static void install(corral__redis_cluster *cl, const corral__redis_slot_map *m) {
    for (size_t s = 0; s < m->n_shards; s++) {
        (void)node_at(cl, &m->shards[s].primary);
        for (unsigned r = 0; r < m->shards[s].n_replicas; r++)
            (void)node_at(cl, &m->shards[s].replicas[r]);
    }
    pthread_rwlock_wrlock(&cl->lock);
    uint16_t old[CORRAL__REDIS_MAX_SHARDS];
    size_t n_old = cl->n_shards;
    for (size_t s = 0; s < n_old; s++)
        old[s] = cl->shards[s].primary;
    uint16_t shard_idx[CORRAL__REDIS_MAX_SHARDS];
    size_t n = 0;
    for (size_t s = 0; s < m->n_shards; s++) {
        int p = find_node_locked(cl, &m->shards[s].primary);
        shard_idx[s] = NO_NODE;
        if (p < 0) continue;
        cshard *cs = &cl->shards[n];
        cs->primary = (uint16_t)p;
        cs->n_replicas = 0;
        for (unsigned r = 0; r < m->shards[s].n_replicas; r++) {
            int ri = find_node_locked(cl, &m->shards[s].replicas[r]);
            if (ri >= 0) cs->replicas[cs->n_replicas++] = (uint16_t)ri;
        }
        shard_idx[s] = (uint16_t)n++;
    }
    cl->n_shards = n;
    for (size_t i = 0; i < CORRAL__REDIS_SLOTS; i++)
        cl->shard_of[i] =
            m->shard_of[i] == CORRAL__REDIS_NO_SHARD ? NO_NODE : shard_idx[m->shard_of[i]];
    cl->loaded = true;
    bool same = n == n_old;
    for (size_t s = 0; s < n && same; s++) {
        bool found = false;
        for (size_t o = 0; o < n_old && !found; o++)
            found = old[o] == cl->shards[s].primary;
        same = found;
    }
    if (!same) atomic_fetch_add_explicit(&cl->topology, 1, memory_order_relaxed);
    pthread_rwlock_unlock(&cl->lock);
}

/* Asks node `node` for the map and installs it. 0 on success. */
static int load_from(corral__redis_cluster *cl, int node) {
    corral__redis_pool *p = pool_of(cl, node);
    if (!p) return -1;
    corral__redis_call c;
    if (corral__redis_begin(p, CORRAL__REDIS_READ_PRIMARY, &c) != CORRAL_OK) return -1;
    const char *argv[2] = { "CLUSTER", "SLOTS" };
    size_t lens[2] = { 7, 5 };
    redisReply *r = corral__redis_command(&c, 2, argv, lens);
    int rc = -1;
    if (!r) {
        (void)corral__redis_failed(&c);
    } else {
        char asked[CORRAL__REDIS_MAX_HOSTNAME + 1];
        pthread_rwlock_rdlock(&cl->lock);
        memcpy(asked, cl->nodes[node]->addr.name, sizeof asked);
        pthread_rwlock_unlock(&cl->lock);
        if (corral__redis_slots_parse(r, asked, cl->scratch, NULL) == CORRAL_OK &&
            cl->scratch->n_shards > 0) {
            install(cl, cl->scratch);
            rc = 0;
        } else {
            (void)corral__redis_error_reply(&c, r);
        }
        freeReplyObject(r);
    }
    corral__redis_end(&c);
    return rc;
}

/* A deadline for a refresh made outside any call: one command timeout from now. */
static uint64_t from_now(const corral__redis_cluster *cl) {
    return corral__monotonic_ns() + cl->command_timeout_ns;
}

/* Refreshes the route from a known node: the primaries first, then every other node, then the
 * seeds, at most REFRESH_TRIES of them that do I/O (a node in backoff fails without any), never
 * the pool `avoid` (the node that just failed this call: a stopped node would cost another
 * timeout), and after the first only while `deadline` (the call's) has not passed, so a refresh
 * keeps a call past it by one node's timeout at most. One thread at a time; with `urgent`
 * false, at most once per REFRESH_GAP_MS. Returns true when this call installed a new route. */
static bool refresh(corral__redis_cluster *cl, bool urgent, const corral__redis_pool *avoid,
                    uint64_t deadline) {
    uint64_t now = corral__monotonic_ns();
    if (!urgent && now - atomic_load_explicit(&cl->last_refresh_ns, memory_order_relaxed) <
                       REFRESH_GAP_MS * NS_PER_MS)
        return false;
    if (atomic_exchange_explicit(&cl->refreshing, true, memory_order_acquire)) return false;
    atomic_store_explicit(&cl->last_refresh_ns, now, memory_order_relaxed);
    count(&cl->refreshes);
    int order[CORRAL__REDIS_MAX_NODES + CORRAL__REDIS_MAX_HOSTS];
    size_t n = 0;
    pthread_rwlock_rdlock(&cl->lock);
    bool seen[CORRAL__REDIS_MAX_NODES] = { false };
    for (size_t s = 0; s < cl->n_shards; s++) {
        order[n++] = cl->shards[s].primary;
        seen[cl->shards[s].primary] = true;
    }
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (!seen[i]) order[n++] = (int)i;
    pthread_rwlock_unlock(&cl->lock);
    for (size_t i = 0; i < cl->n_seeds; i++) {
        int s = node_at(cl, &cl->seeds[i]);
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = order[k] == s;
        if (s >= 0 && !dup) order[n++] = s;
    }
    bool ok = false;
    unsigned tries = 0;
    bool asked = false;
    for (size_t i = 0; i < n && !ok && tries < REFRESH_TRIES; i++) {
        corral__redis_pool *p = pool_of(cl, order[i]);
        if (p == avoid) continue;
        if (asked && corral__monotonic_ns() >= deadline) break;
        asked = true;
        corral__redis_counters *ctr = corral__redis_pool_counters(p);
        uint64_t fast = atomic_load_explicit(&ctr->fast_fails, memory_order_relaxed);
        ok = load_from(cl, order[i]) == 0;
        if (!ok && atomic_load_explicit(&ctr->fast_fails, memory_order_relaxed) == fast) tries++;
    }
    if (!ok) count(&cl->refresh_failures);
    atomic_store_explicit(&cl->refreshing, false, memory_order_release);
    return ok;
}

/* The node of `slot` for `role` under the current route, or -1. */
static int route(corral__redis_cluster *cl, corral__redis_role role, uint16_t slot) {
    int node = -1;
    pthread_rwlock_rdlock(&cl->lock);
    uint16_t sh = cl->loaded ? cl->shard_of[slot] : NO_NODE;
    if (sh != NO_NODE) {
        const cshard *s = &cl->shards[sh];
        node = s->primary;
        if (role == CORRAL__REDIS_READ && cl->cfg.readonly && s->n_replicas > 0) {
            uint64_t i = atomic_fetch_add_explicit(&cl->next_replica, 1, memory_order_relaxed);
            node = s->replicas[i % s->n_replicas];
        }
    }
    pthread_rwlock_unlock(&cl->lock);
    return node;
}

static bool loaded(corral__redis_cluster *cl) {
    pthread_rwlock_rdlock(&cl->lock);
    bool l = cl->loaded;
    pthread_rwlock_unlock(&cl->lock);
    return l;
}

/* Loads the first map, or waits for the one another thread is loading (the near cache's
 * tracker, a call of another thread), in 1 ms pauses for at most a command timeout: a call made
 * meanwhile must not fail for want of a map that is on its way. */
static void first_map(corral__redis_cluster *cl) {
    if (loaded(cl) || refresh(cl, true, NULL, from_now(cl))) return;
    uint64_t deadline = corral__monotonic_ns() + cl->command_timeout_ns;
    while (!loaded(cl) && atomic_load_explicit(&cl->refreshing, memory_order_acquire) &&
           corral__monotonic_ns() < deadline) {
        struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

int corral__redis_cluster_node_of(corral__redis_cluster *cl, corral__redis_role role,
                                  uint16_t slot) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    first_map(cl);
    int node = route(cl, role, slot);
    if (node < 0 && refresh(cl, false, NULL, from_now(cl))) node = route(cl, role, slot);
    return node;
}

/* The code of a call that found no node for its slot. */
static int no_route(corral__redis_cluster *cl, corral__redis_role role) {
    count(&cl->no_route);
    return role == CORRAL__REDIS_WRITE ? CORRAL_ESTORE : CORRAL_MISS;
}

int corral__redis_cluster_begin_node(corral__redis_cluster *cl, int node, corral__redis_role role,
                                     corral__redis_call *c) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    corral__redis_pool *p = pool_of(cl, node);
    if (!p) return no_route(cl, role);
    int rc = corral__redis_begin(p, role, c);
    if (rc == CORRAL_OK) c->slot = -1;
    return rc;
}

void corral__redis_cluster_lost(corral__redis_cluster *cl, int node) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    corral__redis_pool *p = pool_of(cl, node);
    if (p) refresh(cl, false, p, from_now(cl));
}

int corral__redis_cluster_begin(corral__redis_cluster *cl, corral__redis_role role, uint16_t slot,
                                corral__redis_call *c) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    uint64_t deadline = corral__monotonic_ns() + cl->command_timeout_ns;
    int node = corral__redis_cluster_node_of(cl, role, slot);
    for (unsigned hop = 0;; hop++) {
        if (node < 0) return no_route(cl, role);
        corral__redis_pool *p = pool_of(cl, node);
        int rc = corral__redis_begin(p, role, c);
        if (rc == CORRAL_OK) {
            c->slot = slot;
            return CORRAL_OK;
        }
        /* The node cannot be reached: the map may be old (a failover, a replica gone). A read
         * from a replica falls back to the primary; otherwise another node is tried only when a
         * refresh names one. */
        int next = -1;
        if (role == CORRAL__REDIS_READ && cl->cfg.readonly)
            next = route(cl, CORRAL__REDIS_READ_PRIMARY, slot);
        if (next == node || next < 0) {
            refresh(cl, false, p, deadline);
            next = route(cl, role == CORRAL__REDIS_READ ? CORRAL__REDIS_READ_PRIMARY : role, slot);
        }
        if (next == node || next < 0 || hop + 1 >= CORRAL__REDIS_MAX_HOPS ||
            corral__monotonic_ns() >= deadline)
            return rc;
        count(&cl->retries);
        node = next;
    }
}

/* ---- Commands ---- */

/* How move_call treats the map between leaving a node and beginning on the next. */
typedef enum move_map { KEEP_MAP, REFRESH, REFRESH_NOW } move_map;

/* Moves the call: ends it where it is; with `map` REFRESH (at most once per REFRESH_GAP_MS) or
 * REFRESH_NOW, refreshes the map then, with none of its connections held (a refresh made while
 * holding one could wait a command timeout for it: a pool of one); and begins it on node `node`,
 * or with -1 on the slot's node by the map then (where it was when the map names none).
 * CORRAL_OK, or the begin's failure (the call is then ended). */
static int move_call(corral__redis_cluster *cl, corral__redis_call *c, int node, move_map map,
                     uint64_t deadline) {
    corral__redis_role role = c->role;
    int slot = c->slot;
    corral__redis_pool *p = c->pool;
    corral__redis_end(c);
    if (map != KEEP_MAP) refresh(cl, map == REFRESH_NOW, NULL, deadline);
    if (node < 0 && slot >= 0) node = route(cl, role, (uint16_t)slot);
    if (node >= 0) p = pool_of(cl, node);
    if (!p) {
        /* Ended, and left so: no connection, and its caller's corral__redis_end restores the
         * same signal mask again (a zeroed call would restore an empty one). */
        c->pool = NULL;
        c->replied = false;
        return no_route(cl, role);
    }
    int rc = corral__redis_begin(p, role, c);
    c->slot = slot;
    return rc;
}

/* The host name of the node whose pool is `p` into `out` ("" when unknown): the node a
 * redirection with an empty host ("MOVED 3999 :7001") names. */
static void host_of(corral__redis_cluster *cl, const corral__redis_pool *p,
                    char out[CORRAL__REDIS_MAX_HOSTNAME + 1]) {
    out[0] = '\0';
    pthread_rwlock_rdlock(&cl->lock);
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i]->pool == p)
            memcpy(out, cl->nodes[i]->addr.name, sizeof cl->nodes[i]->addr.name);
    pthread_rwlock_unlock(&cl->lock);
}

static bool error_is(const redisReply *r, const char *word) {
    size_t n = strlen(word);
    return r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, word, n) == 0 &&
           (r->len == n || r->str[n] == ' ');
}

static void pause_ms(unsigned ms, uint64_t deadline) {
    uint64_t now = corral__monotonic_ns();
    if (now >= deadline) return;
    uint64_t ns = CORRAL_MIN((uint64_t)ms * NS_PER_MS, deadline - now);
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
                           .tv_nsec = (long)(ns % 1000000000u) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

redisReply *corral__redis_cluster_command(corral__redis_cluster *cl, corral__redis_call *c,
                                          int argc, const char **argv, const size_t *lens) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    uint64_t deadline = corral__monotonic_ns() + cl->command_timeout_ns;
    bool asking = false;
    for (unsigned hop = 0;; hop++) {
        uint64_t sent = corral__monotonic_ns();
        redisReply *r;
        if (asking) { /* ASKING, then the command, in one round trip */
            const char *a[1] = { "ASKING" };
            size_t al[1] = { 6 };
            redisReply *ok = NULL;
            r = NULL;
            if (corral__redis_append(c, 1, a, al) == 0 &&
                corral__redis_append(c, argc, argv, lens) == 0 && (ok = corral__redis_read(c)))
                r = corral__redis_read(c);
            freeReplyObject(ok);
        } else {
            r = corral__redis_command(c, argc, argv, lens);
        }
        asking = false;
        if (!r) {
            /* the node may be gone: calls find its successor */
            refresh(cl, false, c->pool, deadline);
            return NULL;
        }
        if (r->type != REDIS_REPLY_ERROR) return r;
        bool last = hop + 1 >= CORRAL__REDIS_MAX_HOPS || corral__monotonic_ns() >= deadline;
        if (error_is(r, "TRYAGAIN") || error_is(r, "CLUSTERDOWN")) {
            /* A multi-key command during a migration, or a cluster between a failure and its
             * failover: nothing was done; wait a little, look again. */
            if (last) return r;
            bool down = error_is(r, "CLUSTERDOWN");
            freeReplyObject(r);
            count(&cl->retries);
            pause_ms(1u << CORRAL_MIN(hop, 4u), deadline);
            if (down && c->slot >= 0) { /* to the slot's node by a new map */
                if (move_call(cl, c, -1, REFRESH, deadline) != CORRAL_OK) return NULL;
            } else if (down) {
                refresh(cl, false, c->pool, deadline); /* not waiting for the connection held */
            }
            continue;
        }
        bool is_ask;
        uint16_t slot;
        corral__redis_addr to;
        char asked[CORRAL__REDIS_MAX_HOSTNAME + 1];
        host_of(cl, c->pool, asked);
        if (corral__redis_parse_redirect(r->str, r->len, asked[0] ? asked : NULL, &is_ask, &slot,
                                         &to) != CORRAL_OK ||
            last)
            return r;
        freeReplyObject(r);
        count(is_ask ? &cl->ask : &cl->moved);
        int node = node_at(cl, &to);
        if (node < 0) {
            c->fail = CORRAL__REDIS_FAIL_NOMEM;
            return NULL;
        }
        /* MOVED: the slot moved for good, the map is refreshed, unless a refresh began after
         * the command was sent (then it knows: a migration's MOVEDs refresh once, not once per
         * call). */
        move_map map = REFRESH_NOW;
        if (is_ask || atomic_load_explicit(&cl->last_refresh_ns, memory_order_relaxed) >= sent)
            map = KEEP_MAP;
        if (move_call(cl, c, node, map, deadline) != CORRAL_OK) return NULL;
        asking = is_ask;
    }
}

/* ---- Open, close, stats ---- */

/* In a forked child (fork.h): the lock is made again and a parent's refresh is not running.
 * The nodes' pools have hooks of their own. */
static void cluster_after_fork(void *arg) {
    corral__redis_cluster *cl = arg;
    CORRAL_MUST(pthread_rwlock_init(&cl->lock, NULL) == 0);
    atomic_store_explicit(&cl->refreshing, false, memory_order_relaxed);
}

int corral__redis_cluster_new(corral__redis_cluster **out, const corral__redis_pool_config *cfg,
                              const corral__allocator *a) {
    *out = NULL;
    if (cfg->unix_path || cfg->n_addrs == 0 || cfg->n_addrs > CORRAL__REDIS_MAX_HOSTS ||
        cfg->db != 0 || cfg->command_timeout_ms <= 0 || cfg->connect_timeout_ms <= 0)
        return CORRAL_EINVAL;
    corral__redis_cluster *cl = corral__calloc(a, 1, sizeof *cl);
    if (!cl) return CORRAL_ENOMEM;
    cl->magic = CLUSTER_MAGIC;
    cl->alloc = *a;
    cl->cfg = *cfg;
    cl->cfg.addrs = NULL;
    cl->cfg.n_addrs = 0;
    cl->cfg.username = cl->cfg.password = NULL;
    cl->command_timeout_ns = (uint64_t)cfg->command_timeout_ms * NS_PER_MS;
    memcpy(cl->seeds, cfg->addrs, cfg->n_addrs * sizeof *cl->seeds);
    cl->n_seeds = cfg->n_addrs;
    if (pthread_rwlock_init(&cl->lock, NULL) != 0) {
        corral__free(a, cl, sizeof *cl);
        return CORRAL_ENOMEM;
    }
    cl->scratch = corral__alloc(a, sizeof *cl->scratch);
    if (cfg->username) {
        cl->username_len = strlen(cfg->username);
        cl->username = corral__strndup(a, cfg->username, cl->username_len);
    }
    if (cfg->password) {
        cl->password_len = strlen(cfg->password);
        cl->password = corral__strndup(a, cfg->password, cl->password_len);
    }
    cl->cfg.username = cl->username;
    cl->cfg.password = cl->password;
    if (!cl->scratch || (cfg->username && !cl->username) || (cfg->password && !cl->password)) {
        corral__redis_cluster_free(cl);
        return CORRAL_ENOMEM;
    }
    cl->fork_hook.child = cluster_after_fork;
    cl->fork_hook.arg = cl;
    corral__fork_hook_add(&cl->fork_hook);
    *out = cl;
    return CORRAL_OK;
}

void corral__redis_cluster_free(corral__redis_cluster *cl) {
    if (!cl) return;
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    corral__fork_hook_remove(&cl->fork_hook);
    corral__allocator a = cl->alloc;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        corral__redis_pool_free(cl->nodes[i]->pool);
        corral__free(&a, cl->nodes[i], sizeof *cl->nodes[i]);
    }
    corral__free(&a, cl->scratch, sizeof *cl->scratch);
    corral__free(&a, cl->username, cl->username_len + 1);
    if (cl->password) { /* do not leave the secret in freed memory */
        volatile char *pw = cl->password;
        for (size_t i = 0; i < cl->password_len; i++)
            pw[i] = 0;
    }
    corral__free(&a, cl->password, cl->password_len + 1);
    pthread_rwlock_destroy(&cl->lock);
    cl->magic = 0;
    corral__free(&a, cl, sizeof *cl);
}

size_t corral__redis_cluster_primaries(corral__redis_cluster *cl, int *out) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    first_map(cl);
    pthread_rwlock_rdlock(&cl->lock);
    size_t n = cl->n_shards;
    for (size_t i = 0; i < n; i++)
        out[i] = cl->shards[i].primary;
    pthread_rwlock_unlock(&cl->lock);
    return n;
}

void corral__redis_cluster_counters(corral__redis_cluster *cl, corral__redis_counters *sum,
                                    corral__redis_cluster_stats *own) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    memset(sum, 0, sizeof *sum);
    pthread_rwlock_rdlock(&cl->lock);
    for (size_t i = 0; i < cl->n_nodes; i++) {
        corral__redis_counters *c = corral__redis_pool_counters(cl->nodes[i]->pool);
#define ADD(x)                                                                   \
    atomic_store_explicit(&sum->x,                                               \
                          atomic_load_explicit(&sum->x, memory_order_relaxed) +  \
                              atomic_load_explicit(&c->x, memory_order_relaxed), \
                          memory_order_relaxed)
        ADD(errors);
        ADD(timeouts);
        ADD(connects);
        ADD(reconnects);
        ADD(connect_failures);
        ADD(fast_fails);
        ADD(pool_timeouts);
        ADD(failed_reads);
        ADD(failed_writes);
        ADD(round_trips);
        ADD(open);
#undef ADD
    }
    pthread_rwlock_unlock(&cl->lock);
#define OWN(x) own->x = atomic_load_explicit(&cl->x, memory_order_relaxed)
    OWN(moved);
    OWN(ask);
    OWN(refreshes);
    OWN(refresh_failures);
    OWN(retries);
    OWN(no_route);
#undef OWN
}

uint64_t corral__redis_cluster_topology(corral__redis_cluster *cl) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    return atomic_load_explicit(&cl->topology, memory_order_relaxed);
}

size_t corral__redis_cluster_connect_primaries(corral__redis_cluster *cl, redisContext **out,
                                               size_t cap) {
    int nodes[CORRAL__REDIS_MAX_NODES];
    size_t n = corral__redis_cluster_primaries(cl, nodes);
    if (n > cap) return 0;
    for (size_t i = 0; i < n; i++) {
        corral__redis_pool *p = pool_of(cl, nodes[i]);
        out[i] = p ? corral__redis_pool_connect(p) : NULL;
        if (!out[i]) {
            refresh(cl, false, p, from_now(cl)); /* the node may be gone */
            while (i-- > 0)
                redisFree(out[i]);
            return 0;
        }
    }
    return n;
}

redisContext *corral__redis_cluster_connect_any(corral__redis_cluster *cl) {
    int nodes[CORRAL__REDIS_MAX_NODES];
    size_t n = corral__redis_cluster_primaries(cl, nodes);
    if (n == 0) return NULL;
    uint64_t turn = atomic_fetch_add_explicit(&cl->next_subscriber, 1, memory_order_relaxed);
    corral__redis_pool *p = pool_of(cl, nodes[turn % n]);
    redisContext *ctx = p ? corral__redis_pool_connect(p) : NULL;
    if (!ctx) refresh(cl, false, p, from_now(cl)); /* the node may be gone */
    return ctx;
}

int corral__redis_cluster_metrics(const corral__redis_cluster_stats *own, char *buf, size_t cap,
                                  size_t *used) {
    const corral__prom_row rows[] = {
        { "cluster_moved_total", "counter", "MOVED redirections followed.", own->moved },
        { "cluster_ask_total", "counter", "ASK redirections followed.", own->ask },
        { "cluster_refreshes_total", "counter", "Slot map refreshes.", own->refreshes },
        { "cluster_refresh_failures_total", "counter", "Slot map refreshes that failed.",
          own->refresh_failures },
        { "cluster_retries_total", "counter", "Calls tried again on another node or later.",
          own->retries },
        { "cluster_no_route_total", "counter", "Calls whose slot no node served.", own->no_route },
    };
    return corral__prom_rows(buf, cap, used, "corral_redis_", rows, sizeof rows / sizeof rows[0]);
}

int corral__redis_cluster_status(corral__redis_cluster *cl, size_t i, corral_server_status *out) {
    CORRAL_CHECK_OBJ(cl, CLUSTER_MAGIC);
    corral__redis_pool *p = pool_of(cl, i < CORRAL__REDIS_MAX_NODES ? (int)i : -1);
    return p ? corral__redis_pool_status(p, 0, out) : CORRAL_MISS;
}
