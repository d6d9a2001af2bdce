/*
 * redis_pool.c - connections to the Redis servers of one store: pools, deadlines, backoff.
 *
 * Model
 * - One host per server of the URL (one for a unix socket). A host owns `size` connection slots,
 *   opened on first use, and a stack of the idle ones. A call takes one slot for its duration,
 *   so no connection is used by two threads at once (a redisContext is not thread-safe). Writes
 *   go to the first host; reads round-robin to the others (the first when alone or backing off).
 * - Health of a host: `fails` (consecutive failures), `retry_at_ns` (no connection attempt
 *   before it: calls meanwhile fail fast, without I/O) and `epoch` (bumped at every counted
 *   failure). A connection remembers the epoch it was opened in; one from an older epoch is
 *   closed when taken, so after a server restart the pool's stale connections cost one failed
 *   call, not one each. Likewise a failure counts towards the backoff only when its connection
 *   (or connection attempt) belongs to the current epoch.
 * - `fails` is reset by the first reply on a new connection, not by the connect: a server that
 *   accepts connections and then does not answer (DEBUG SLEEP, CLIENT PAUSE, a hung host whose
 *   kernel still completes handshakes) keeps backing off.
 * - A breaker: while `fails` > 0 the host is tried by one call at a time, the probe (`probing`),
 *   and only once its backoff is over; every other call fails fast, without I/O and without
 *   waiting for a connection (docs/redis.md says why). The probe's answer closes it.
 * - State: every failure records its reason, and every answered call ends a down state, in the
 *   host's corral__redis_state (redis_state.h), which corral_store_status reads.
 * - Setup of a new connection: AUTH with a password, SELECT with a database other than 0,
 *   READONLY when asked (a Redis Cluster's replica then serves reads of its primary's slots).
 * - Deadlines: redisConnectWithTimeout bounds the connect (hiredis polls its non-blocking
 *   connect); redisSetTimeout then sets SO_RCVTIMEO and SO_SNDTIMEO to the command timeout, so
 *   every read and write of the socket is bounded. A call is bounded by one command timeout per
 *   read(2) its reply needs, in practice by one. DNS has no deadline (docs/redis.md).
 * - A connection that failed or timed out is closed: its reply stream can no longer be trusted.
 * - SIGPIPE: hiredis writes with write(2). A call blocks SIGPIPE on its thread and consumes the
 *   one a write to a dead server raised before restoring the mask (the per-thread technique of
 *   OpenSSL's and libcurl's docs); the process's signal dispositions are never touched.
 *
 * Locking
 * - `host.lock` (corral__mutex, one per host) protects the idle stack, `fails`, `epoch`,
 *   `retry_at_ns`, `probing` and `rng`. It is a leaf: held for a few instructions, never across
 *   I/O and never with another lock. `host.freed` (CLOCK_MONOTONIC condition) wakes a caller
 *   waiting for an idle connection; it waits at most the command timeout. The host's state has
 *   a leaf lock of its own (redis_state.h), never held with this one.
 * - A slot's fields (ctx, epoch, verified, ever_open) belong to the thread that holds the slot.
 * - Counters are relaxed atomics.
 *
 * Time: deadlines and backoff read CLOCK_MONOTONIC, not the handle's clock hook: they measure
 * real sockets, and the hook (a fake clock in tests) may stand still.
 */
#include "redis_pool.h"
#include "redis_state.h"
#include "../fork.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAGIC 0x9e015e7au
#define HOST_MAGIC 0x9e0a057au
#define NS_PER_MS  1000000ull
#define NS_PER_S   1000000000ull

struct corral__redis_conn {
    redisContext *ctx; /* NULL: closed */
    uint64_t epoch;    /* the host's epoch when it was opened */
    bool verified;     /* a reply came back on it: its server answers */
    bool ever_open;    /* the slot held a connection before: the next one is a reconnect */
};

struct corral__redis_host {
    uint32_t magic;
    char *name; /* host name, address or unix socket path; owned */
    size_t name_len;
    int port; /* 0: unix socket */
    corral__mutex lock;
    pthread_cond_t freed; /* signalled when a slot goes back idle */
    corral__redis_conn *conns;
    unsigned *idle; /* indexes of the idle slots */
    unsigned n_idle;
    uint64_t epoch;
    unsigned fails;
    uint64_t retry_at_ns; /* CLOCK_MONOTONIC */
    uint64_t rng;         /* splitmix64 state for the backoff jitter */
    bool probing;         /* a call is probing the failed host: the others fail fast */
    bool has_lock, has_cond;
    corral__redis_state state; /* why it fails, for corral_store_status (redis_state.h) */
};

struct corral__redis_pool {
    uint32_t magic;
    corral__allocator alloc;
    corral__redis_host *hosts;
    size_t n_hosts;
    unsigned size; /* slots per host */
    char *username, *password;
    size_t username_len, password_len;
    unsigned db;
    bool readonly; /* READONLY on every new connection (a cluster's replicas serve reads) */
    struct timeval connect_tv, command_tv;
    int64_t connect_timeout_ms, command_timeout_ms; /* for the failure messages */
    uint64_t command_timeout_ns;
    _Atomic uint64_t next_read; /* round-robin cursor over the replicas */
    corral__redis_counters ctr;
    corral__fork_hook fork_hook; /* pool_after_fork, in a forked child */
};

/* ---- Small helpers ---- */

static struct timespec ns_to_ts(uint64_t ns) {
    struct timespec ts = { .tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S) };
    return ts;
}

static struct timeval ms_to_tv(int64_t ms) {
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    return tv;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void count(_Atomic uint64_t *c) {
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- Host lists ---- */

static bool host_byte_ok(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_' || ch == ':';
}

/* Parses one "host[:port]" of `len` bytes. Returns 0 or -1. */
static int parse_one_host(const char *s, size_t len, corral__redis_addr *out) {
    const char *name = s, *port = NULL;
    size_t name_len = len, port_len = 0;
    if (len > 0 && s[0] == '[') { /* [v6]:port */
        const char *close = memchr(s, ']', len);
        if (!close) return -1;
        name = s + 1;
        name_len = (size_t)(close - name);
        size_t rest = len - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':') return -1;
            port = close + 2;
            port_len = rest - 1;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon) {
            name_len = (size_t)(colon - s);
            port = colon + 1;
            port_len = len - name_len - 1;
        }
    }
    if (name_len == 0 || name_len > CORRAL__REDIS_MAX_HOSTNAME) return -1;
    for (size_t i = 0; i < name_len; i++) {
        if (!host_byte_ok(name[i])) return -1;
        if (name[i] == ':' && s[0] != '[') return -1; /* a bare v6 address needs brackets */
    }
    long p = CORRAL__REDIS_DEFAULT_PORT;
    if (port) {
        if (port_len == 0 || port_len > 5) return -1;
        p = 0;
        for (size_t i = 0; i < port_len; i++) {
            if (port[i] < '0' || port[i] > '9') return -1;
            p = p * 10 + (port[i] - '0');
        }
        if (p < 1 || p > 65535) return -1;
    }
    if (out) {
        memcpy(out->name, name, name_len);
        out->name[name_len] = '\0';
        out->port = (int)p;
    }
    return 0;
}

int corral__redis_parse_hosts(const char *list, corral__redis_addr *out, size_t cap, size_t *n,
                              corral_error *err) {
    *n = 0;
    if (!list || !*list) return corral__seterr(err, CORRAL_EBADURL, "redis: no host");
    size_t count_hosts = 0;
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (count_hosts == CORRAL__REDIS_MAX_HOSTS)
            return corral__seterr(err, CORRAL_EBADURL, "redis: more than %d hosts",
                                  CORRAL__REDIS_MAX_HOSTS);
        corral__redis_addr *slot = out && count_hosts < cap ? &out[count_hosts] : NULL;
        if (parse_one_host(p, len, slot) != 0)
            return corral__seterr(err, CORRAL_EBADURL, "redis: bad host '%.*s'",
                                  (int)CORRAL_MIN(len, 64), p);
        count_hosts++;
        if (!comma) break;
        p = comma + 1;
    }
    *n = count_hosts;
    return CORRAL_OK;
}

uint64_t corral__redis_backoff_ms(unsigned fails, uint64_t r) {
    if (fails <= 1) return 0;
    uint64_t d = CORRAL__REDIS_BACKOFF_MAX_MS;
    if (fails - 2 < 32) d = CORRAL_MIN(d, (uint64_t)CORRAL__REDIS_BACKOFF_MIN_MS << (fails - 2));
    uint64_t half = d / 2;
    return half + r % (d - half + 1);
}

/* ---- Pools ---- */

static void host_deinit(corral__redis_pool *p, corral__redis_host *h) {
    if (h->magic != HOST_MAGIC) return;
    for (unsigned i = 0; h->conns && i < p->size; i++) {
        if (h->conns[i].ctx) {
            redisFree(h->conns[i].ctx);
            atomic_fetch_sub_explicit(&p->ctr.open, 1, memory_order_relaxed);
        }
    }
    corral__free(&p->alloc, h->conns, (size_t)p->size * sizeof *h->conns);
    corral__free(&p->alloc, h->idle, (size_t)p->size * sizeof *h->idle);
    corral__free(&p->alloc, h->name, h->name_len + 1);
    if (h->has_cond) {
        int rc = pthread_cond_destroy(&h->freed);
        assert(rc == 0);
        (void)rc;
    }
    if (h->has_lock) corral__mutex_deinit(&h->lock);
    corral__redis_state_deinit(&h->state);
    h->magic = 0;
}

static int host_init(corral__redis_pool *p, corral__redis_host *h, const char *name, int port,
                     uint64_t seed, const corral__redis_pool_config *cfg) {
    h->magic = HOST_MAGIC; /* set first: host_deinit frees what was made */
    h->port = port;
    h->name_len = strlen(name);
    h->name = corral__strndup(&p->alloc, name, h->name_len);
    h->conns = corral__calloc(&p->alloc, p->size, sizeof *h->conns);
    h->idle = corral__alloc3(&p->alloc, p->size, sizeof *h->idle, 0);
    if (!h->name || !h->conns || !h->idle) return CORRAL_ENOMEM;
    for (unsigned i = 0; i < p->size; i++)
        h->idle[i] = p->size - 1 - i; /* slot 0 on top: the pool opens as few as it needs */
    h->n_idle = p->size;
    h->rng = seed;
    if (corral__redis_state_init(&h->state, name, port, cfg->on_state, cfg->state_ctx) != CORRAL_OK)
        return CORRAL_ENOMEM;
    if (corral__mutex_init(&h->lock) != CORRAL_OK) return CORRAL_ENOMEM;
    h->has_lock = true;
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) return CORRAL_ENOMEM;
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(&h->freed, &attr);
    int drc = pthread_condattr_destroy(&attr);
    if (rc != 0 || drc != 0) {
        if (rc == 0) {
            int crc = pthread_cond_destroy(&h->freed);
            assert(crc == 0);
            (void)crc;
        }
        return CORRAL_ENOMEM;
    }
    h->has_cond = true;
    return CORRAL_OK;
}

/* In a forked child (fork.h): the connections are the parent's sockets, and the threads that
 * held slots, or a host's mutex, are gone. Close the child's copies of the descriptors, make
 * every slot idle and reconnect on first use. An idle connection is freed (hiredis sends
 * nothing on free); one a thread was using may be halfway through a write or a read, so only
 * its descriptor is closed, and its memory (the child's copy) is left as it is. */
static void pool_after_fork(void *arg) {
    corral__redis_pool *p = arg;
    for (size_t i = 0; i < p->n_hosts; i++) {
        corral__redis_host *h = &p->hosts[i];
        for (unsigned s = 0; s < p->size; s++) {
            corral__redis_conn *conn = &h->conns[s];
            if (!conn->ctx) continue;
            bool idle = false;
            for (unsigned k = 0; k < h->n_idle && !idle; k++)
                idle = h->idle[k] == s;
            if (idle)
                redisFree(conn->ctx);
            else if (conn->ctx->fd >= 0)
                (void)close(conn->ctx->fd);
            conn->ctx = NULL;
            atomic_fetch_sub_explicit(&p->ctr.open, 1, memory_order_relaxed);
        }
        for (unsigned s = 0; s < p->size; s++)
            h->idle[s] = p->size - 1 - s;
        h->n_idle = p->size;
        h->epoch++;
        h->fails = 0;
        h->retry_at_ns = 0;
        h->probing = false; /* a parent's probe is not in the child */
        corral__redis_state_after_fork(&h->state);
        h->rng ^= corral__monotonic_ns();
        CORRAL_MUST(corral__mutex_init(&h->lock) == CORRAL_OK);
        pthread_condattr_t attr; /* as host_init made it, which succeeded once already */
        CORRAL_MUST(pthread_condattr_init(&attr) == 0);
        CORRAL_MUST(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0);
        CORRAL_MUST(pthread_cond_init(&h->freed, &attr) == 0);
        CORRAL_MUST(pthread_condattr_destroy(&attr) == 0);
    }
}

void corral__redis_pool_free(corral__redis_pool *p) {
    if (!p) return;
    CORRAL_CHECK_OBJ(p, POOL_MAGIC);
    corral__fork_hook_remove(&p->fork_hook);
    corral__allocator a = p->alloc;
    for (size_t i = 0; p->hosts && i < p->n_hosts; i++)
        host_deinit(p, &p->hosts[i]);
    corral__free(&a, p->hosts, p->n_hosts * sizeof *p->hosts);
    corral__free(&a, p->username, p->username_len + 1);
    if (p->password) {
        /* Do not leave the secret in freed memory. */
        volatile char *pw = p->password;
        for (size_t i = 0; i < p->password_len; i++)
            pw[i] = 0;
    }
    corral__free(&a, p->password, p->password_len + 1);
    p->magic = 0;
    corral__free(&a, p, sizeof *p);
}

int corral__redis_pool_new(corral__redis_pool **out, const corral__redis_pool_config *cfg,
                           const corral__allocator *a) {
    *out = NULL;
    if (cfg->pool < 1 || cfg->pool > CORRAL__REDIS_MAX_POOL || cfg->connect_timeout_ms <= 0 ||
        cfg->command_timeout_ms <= 0 || (!cfg->unix_path && cfg->n_addrs == 0) ||
        cfg->n_addrs > CORRAL__REDIS_MAX_HOSTS || cfg->db > INT32_MAX)
        return CORRAL_EINVAL;
    corral__redis_pool *p = corral__calloc(a, 1, sizeof *p);
    if (!p) return CORRAL_ENOMEM;
    p->magic = POOL_MAGIC;
    p->alloc = *a;
    p->size = cfg->pool;
    p->db = cfg->db;
    p->readonly = cfg->readonly;
    p->connect_tv = ms_to_tv(cfg->connect_timeout_ms);
    p->command_tv = ms_to_tv(cfg->command_timeout_ms);
    p->connect_timeout_ms = cfg->connect_timeout_ms;
    p->command_timeout_ms = cfg->command_timeout_ms;
    p->command_timeout_ns = (uint64_t)cfg->command_timeout_ms * NS_PER_MS;
    p->n_hosts = cfg->unix_path ? 1 : cfg->n_addrs;
    p->hosts = corral__calloc(a, p->n_hosts, sizeof *p->hosts);
    if (!p->hosts) goto nomem;
    if (cfg->username) {
        p->username_len = strlen(cfg->username);
        p->username = corral__strndup(a, cfg->username, p->username_len);
        if (!p->username) goto nomem;
    }
    if (cfg->password) {
        p->password_len = strlen(cfg->password);
        p->password = corral__strndup(a, cfg->password, p->password_len);
        if (!p->password) goto nomem;
    }
    uint64_t seed = corral__monotonic_ns() ^ (uint64_t)(uintptr_t)p;
    for (size_t i = 0; i < p->n_hosts; i++) {
        const char *name = cfg->unix_path ? cfg->unix_path : cfg->addrs[i].name;
        int port = cfg->unix_path ? 0 : cfg->addrs[i].port;
        if (host_init(p, &p->hosts[i], name, port, splitmix64(&seed), cfg) != CORRAL_OK) goto nomem;
    }
    p->fork_hook.child = pool_after_fork;
    p->fork_hook.arg = p;
    corral__fork_hook_add(&p->fork_hook);
    *out = p;
    return CORRAL_OK;
nomem:
    corral__redis_pool_free(p);
    return CORRAL_ENOMEM;
}

corral__redis_counters *corral__redis_pool_counters(corral__redis_pool *p) {
    CORRAL_CHECK_OBJ(p, POOL_MAGIC);
    return &p->ctr;
}

int corral__redis_pool_status(corral__redis_pool *p, size_t i, corral_server_status *out) {
    CORRAL_CHECK_OBJ(p, POOL_MAGIC);
    if (i >= p->n_hosts) return CORRAL_MISS;
    corral__redis_state_get(&p->hosts[i].state, out);
    return CORRAL_OK;
}

/* ---- Health ---- */

/* Records a failure seen on a connection (or connection attempt) of `epoch`: only the first
 * failure of an epoch counts towards the backoff. */
static void record_failure(corral__redis_host *h, uint64_t epoch) {
    uint64_t now = corral__monotonic_ns();
    corral__mutex_lock(&h->lock);
    if (epoch == h->epoch) {
        h->epoch++;
        if (h->fails < UINT32_MAX) h->fails++;
        uint64_t delay_ms = corral__redis_backoff_ms(h->fails, splitmix64(&h->rng));
        h->retry_at_ns = now + delay_ms * NS_PER_MS;
    }
    corral__mutex_unlock(&h->lock);
}

/* The server answered on `conn`: it is healthy again. */
static void mark_verified(corral__redis_host *h, corral__redis_conn *conn) {
    if (conn->verified) return;
    conn->verified = true;
    corral__mutex_lock(&h->lock);
    if (conn->epoch == h->epoch) h->fails = 0;
    corral__mutex_unlock(&h->lock);
}

/* The host failed and no call of ours may try it now: its backoff runs, or another call is
 * probing it. */
static bool closed_locked(corral__redis_host *h, uint64_t now) {
    CORRAL_ASSERT_HELD(&h->lock);
    return h->fails > 0 && (now < h->retry_at_ns || h->probing);
}

static bool backing_off(corral__redis_host *h, uint64_t now) {
    corral__mutex_lock(&h->lock);
    bool b = now < h->retry_at_ns || closed_locked(h, now);
    corral__mutex_unlock(&h->lock);
    return b;
}

/* Sorts a hiredis failure. A socket deadline shows as REDIS_ERR_IO with errno EAGAIN (SO_RCVTIMEO,
 * SO_SNDTIMEO) or ETIMEDOUT (connect); `e` is errno read right after the failing call, which
 * cleared it before. EOF and protocol errors are plain I/O failures whatever errno says. */
static corral__redis_fail classify(const redisContext *ctx, int e) {
    if (ctx && ctx->err == REDIS_ERR_OOM) return CORRAL__REDIS_FAIL_NOMEM;
    if (ctx && ctx->err == REDIS_ERR_IO &&
        (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT || e == EINPROGRESS))
        return CORRAL__REDIS_FAIL_TIMEOUT;
    return CORRAL__REDIS_FAIL_IO;
}

static void close_conn(corral__redis_pool *p, corral__redis_conn *conn) {
    if (!conn->ctx) return;
    redisFree(conn->ctx);
    conn->ctx = NULL;
    conn->verified = false;
    atomic_fetch_sub_explicit(&p->ctr.open, 1, memory_order_relaxed);
}

/* Records a failure of the connection `ctx` (NULL: none was made), sorted by classify as `f`,
 * with `e` the errno of the failing call and `connecting` telling a connect from a command. */
static void note_conn_failure(corral__redis_pool *p, corral__redis_host *h, const redisContext *ctx,
                              int e, corral__redis_fail f, bool connecting) {
    if (f == CORRAL__REDIS_FAIL_NOMEM) {
        corral__redis_state_failedf(&h->state, CORRAL_REASON_NOMEM, "out of memory");
    } else if (f == CORRAL__REDIS_FAIL_TIMEOUT) {
        if (connecting)
            corral__redis_state_failedf(&h->state, CORRAL_REASON_TIMEOUT,
                                        "connect timed out (%lld ms)",
                                        (long long)p->connect_timeout_ms);
        else
            corral__redis_state_failedf(&h->state, CORRAL_REASON_TIMEOUT,
                                        "no reply within the command timeout (%lld ms)",
                                        (long long)p->command_timeout_ms);
    } else if (e == ECONNREFUSED || (ctx && strstr(ctx->errstr, "refused"))) {
        corral__redis_state_failedf(&h->state, CORRAL_REASON_REFUSED, "connection refused");
    } else {
        corral__redis_state_failedf(&h->state, CORRAL_REASON_IO, "%s",
                                    ctx && ctx->errstr[0] ? ctx->errstr : "connection failed");
    }
}

/* Runs one setup command (AUTH, SELECT) on a new connection; NONE on a +OK reply. A failure is
 * recorded (with `note`) as `refused_as` when the server answers with an error that has no
 * reason of its own (SELECT's "ERR DB index is out of range": BAD_DB). */
static corral__redis_fail setup_command(corral__redis_pool *p, corral__redis_host *h, bool note,
                                        corral_store_reason refused_as, redisContext *ctx, int argc,
                                        const char **argv, const size_t *lens) {
    errno = 0;
    redisReply *r = redisCommandArgv(ctx, argc, argv, lens);
    int e = errno;
    if (!r) {
        corral__redis_fail f = classify(ctx, e);
        if (note) note_conn_failure(p, h, ctx, e, f, true);
        return f;
    }
    corral__redis_fail f =
        r->type == REDIS_REPLY_STATUS ? CORRAL__REDIS_FAIL_NONE : CORRAL__REDIS_FAIL_REPLY;
    if (f != CORRAL__REDIS_FAIL_NONE && note) {
        if (r->type == REDIS_REPLY_ERROR)
            corral__redis_state_error_reply(&h->state, r->str, r->len, refused_as);
        else
            corral__redis_state_failedf(&h->state, CORRAL_REASON_IO, "%s: unexpected reply",
                                        argv[0]);
    }
    freeReplyObject(r);
    return f;
}

/* Connects to host `h`: connect, timeouts, keepalive, AUTH, SELECT. With `note`, a failure is
 * recorded for the host's state (a connection of the pool; not the tracker's). */
static corral__redis_fail connect_host(corral__redis_pool *p, corral__redis_host *h, bool note,
                                       redisContext **out) {
    *out = NULL;
    errno = 0;
    redisContext *ctx = h->port ? redisConnectWithTimeout(h->name, h->port, p->connect_tv)
                                : redisConnectUnixWithTimeout(h->name, p->connect_tv);
    int e = errno;
    if (!ctx) {
        if (note) note_conn_failure(p, h, NULL, e, CORRAL__REDIS_FAIL_NOMEM, true);
        return CORRAL__REDIS_FAIL_NOMEM;
    }
    corral__redis_fail f = CORRAL__REDIS_FAIL_NONE;
    if (ctx->err) {
        f = classify(ctx, e);
        if (note) note_conn_failure(p, h, ctx, e, f, true);
        goto fail;
    }
    if (redisSetTimeout(ctx, p->command_tv) != REDIS_OK ||
        (h->port && redisEnableKeepAlive(ctx) != REDIS_OK)) {
        f = CORRAL__REDIS_FAIL_IO;
        if (note) note_conn_failure(p, h, ctx, errno, f, true);
        goto fail;
    }
    if (p->password) {
        const char *argv[3] = { "AUTH", p->username ? p->username : p->password, p->password };
        size_t lens[3] = { 4, p->username ? p->username_len : p->password_len, p->password_len };
        f = setup_command(p, h, note, CORRAL_REASON_AUTH, ctx, p->username ? 3 : 2, argv, lens);
        if (f != CORRAL__REDIS_FAIL_NONE) goto fail;
    }
    if (p->db) {
        char db[16];
        int n = snprintf(db, sizeof db, "%u", p->db);
        if (n < 0 || (size_t)n >= sizeof db) {
            f = CORRAL__REDIS_FAIL_IO;
            goto fail;
        }
        const char *argv[2] = { "SELECT", db };
        size_t lens[2] = { 6, (size_t)n };
        f = setup_command(p, h, note, CORRAL_REASON_BAD_DB, ctx, 2, argv, lens);
        if (f != CORRAL__REDIS_FAIL_NONE) goto fail;
    }
    if (p->readonly) {
        const char *argv[1] = { "READONLY" };
        size_t lens[1] = { 8 };
        f = setup_command(p, h, note, CORRAL_REASON_REPLY, ctx, 1, argv, lens);
        if (f != CORRAL__REDIS_FAIL_NONE) goto fail;
    }
    *out = ctx;
    return CORRAL__REDIS_FAIL_NONE;
fail:
    redisFree(ctx);
    return f;
}

/* Opens `conn` to host `h` (connect_host) and counts it. */
static corral__redis_fail open_conn(corral__redis_pool *p, corral__redis_host *h,
                                    corral__redis_conn *conn, uint64_t epoch) {
    redisContext *ctx;
    corral__redis_fail f = connect_host(p, h, true, &ctx);
    if (f != CORRAL__REDIS_FAIL_NONE) return f;
    conn->ctx = ctx;
    conn->epoch = epoch;
    conn->verified = false;
    atomic_fetch_add_explicit(&p->ctr.open, 1, memory_order_relaxed);
    count(&p->ctr.connects);
    if (conn->ever_open) count(&p->ctr.reconnects);
    conn->ever_open = true;
    if (p->password || p->db || p->readonly)
        mark_verified(h, conn); /* the setup commands were answered */
    return CORRAL__REDIS_FAIL_NONE;
}

redisContext *corral__redis_pool_connect(corral__redis_pool *p) {
    CORRAL_CHECK_OBJ(p, POOL_MAGIC);
    redisContext *ctx;
    corral__redis_fail f = connect_host(p, &p->hosts[0], false, &ctx);
    if (f == CORRAL__REDIS_FAIL_TIMEOUT) count(&p->ctr.timeouts);
    return f == CORRAL__REDIS_FAIL_NONE ? ctx : NULL;
}

/* ---- Calls ---- */

static void sigpipe_block(corral__redis_call *c) {
    sigset_t set;
    int rc = sigemptyset(&set);
    rc |= sigaddset(&set, SIGPIPE);
    rc |= pthread_sigmask(SIG_BLOCK, &set, &c->old_mask);
    assert(rc == 0);
    (void)rc;
    c->app_blocks_sigpipe = sigismember(&c->old_mask, SIGPIPE) == 1;
}

static void sigpipe_unblock(corral__redis_call *c) {
    if (c->app_blocks_sigpipe) return; /* the mask did not change */
    sigset_t set, pending;
    int rc = sigemptyset(&set);
    rc |= sigaddset(&set, SIGPIPE);
    assert(rc == 0);
    /* SIGPIPE was unblocked until this call, so a pending one was raised by this call's write
     * to a dead server (SIGPIPE of a write goes to the writing thread): consume it, so that
     * restoring the mask does not deliver it. Only a failed call can have raised one. */
    if (c->io_failed && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        const struct timespec zero = { 0, 0 };
        int w;
        do {
            w = sigtimedwait(&set, NULL, &zero);
        } while (w < 0 && errno == EINTR);
    }
    rc = pthread_sigmask(SIG_SETMASK, &c->old_mask, NULL);
    assert(rc == 0);
    (void)rc;
}

static corral__redis_host *pick_host(corral__redis_pool *p, corral__redis_role role) {
    if (role != CORRAL__REDIS_READ || p->n_hosts == 1) return &p->hosts[0];
    uint64_t i = atomic_fetch_add_explicit(&p->next_read, 1, memory_order_relaxed);
    corral__redis_host *h = &p->hosts[1 + i % (p->n_hosts - 1)];
    /* A replica that is backing off would only fail fast: read from the primary instead. */
    return backing_off(h, corral__monotonic_ns()) ? &p->hosts[0] : h;
}

/* Ends a call that failed before it had a usable connection; returns its code. */
static int fail_early(corral__redis_call *c, corral__redis_fail f) {
    c->fail = f;
    c->io_failed = true; /* AUTH or SELECT may have written to a dead server */
    int rc = corral__redis_failed(c);
    corral__redis_end(c);
    return rc;
}

static void give_back(corral__redis_host *h, corral__redis_conn *conn, corral__redis_pool *p) {
    unsigned idx = (unsigned)(conn - h->conns);
    assert(idx < p->size);
    (void)p; /* only the assert reads it */
    corral__mutex_lock(&h->lock);
    h->idle[h->n_idle++] = idx;
    int rc = pthread_cond_signal(&h->freed);
    corral__mutex_unlock(&h->lock);
    assert(rc == 0);
    (void)rc;
}

/* Waits on `freed` until `deadline`; the debug owner of the lock follows the wait. */
static int wait_idle_locked(corral__redis_host *h, const struct timespec *deadline) {
    CORRAL_ASSERT_HELD(&h->lock);
#ifndef NDEBUG
    atomic_store_explicit(&h->lock.owner, 0, memory_order_relaxed);
#endif
    int rc = pthread_cond_timedwait(&h->freed, &h->lock.m, deadline);
#ifndef NDEBUG
    atomic_store_explicit(&h->lock.owner, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
    return rc;
}

int corral__redis_begin(corral__redis_pool *p, corral__redis_role role, corral__redis_call *c) {
    CORRAL_CHECK_OBJ(p, POOL_MAGIC);
    memset(c, 0, sizeof *c);
    c->pool = p;
    c->role = role;
    sigpipe_block(c);
    corral__redis_host *h = pick_host(p, role);
    c->host = h;
    uint64_t now = corral__monotonic_ns();
    struct timespec deadline = ns_to_ts(now + p->command_timeout_ns);
    corral__mutex_lock(&h->lock);
    /* A failed host is tried by one call at a time, the probe, once its backoff is over; the
     * others fail fast, without waiting for a connection (the probe may hold the last one). */
    if (closed_locked(h, now)) {
        corral__mutex_unlock(&h->lock);
        count(&p->ctr.fast_fails);
        return fail_early(c, CORRAL__REDIS_FAIL_BACKOFF);
    }
    if (h->fails > 0) h->probing = c->probe = true;
    while (h->n_idle == 0) {
        int w = wait_idle_locked(h, &deadline);
        if (w == ETIMEDOUT && h->n_idle == 0) {
            corral__mutex_unlock(&h->lock);
            count(&p->ctr.pool_timeouts);
            corral__redis_state_failedf(
                &h->state, CORRAL_REASON_POOL,
                "no free connection within the command timeout (%lld ms, pool %u)",
                (long long)p->command_timeout_ms, p->size);
            return fail_early(c, CORRAL__REDIS_FAIL_POOL);
        }
        assert(w == 0 || w == ETIMEDOUT);
    }
    corral__redis_conn *conn = &h->conns[h->idle[--h->n_idle]];
    uint64_t epoch = h->epoch;
    bool stale = conn->ctx && conn->epoch != epoch;
    bool in_backoff = corral__monotonic_ns() < h->retry_at_ns;
    corral__mutex_unlock(&h->lock);
    c->conn = conn;
    if (stale) close_conn(p, conn);
    if (conn->ctx) return CORRAL_OK;
    if (in_backoff) {
        count(&p->ctr.fast_fails);
        return fail_early(c, CORRAL__REDIS_FAIL_BACKOFF);
    }
    corral__redis_fail f = open_conn(p, h, conn, epoch);
    if (f != CORRAL__REDIS_FAIL_NONE) {
        count(&p->ctr.connect_failures);
        if (f == CORRAL__REDIS_FAIL_TIMEOUT) count(&p->ctr.timeouts);
        record_failure(h, epoch);
        return fail_early(c, f);
    }
    return CORRAL_OK;
}

/* The call's connection failed in a command: close it, count, back off. */
static void conn_failed(corral__redis_call *c, int e) {
    corral__redis_pool *p = c->pool;
    c->io_failed = true;
    c->fail = classify(c->conn->ctx, e);
    note_conn_failure(p, c->host, c->conn->ctx, e, c->fail, false);
    if (c->fail == CORRAL__REDIS_FAIL_TIMEOUT) count(&p->ctr.timeouts);
    record_failure(c->host, c->conn->epoch);
    close_conn(p, c->conn);
}

/* A SET accepted proves the server takes writes again; a DEL or PEXPIRE does not: a server at
 * maxmemory accepts them and refuses what grows (OOM). */
static void note_sent(corral__redis_call *c, const char *cmd, size_t len) {
    if (len == 3 && memcmp(cmd, "SET", 3) == 0) c->sent_set = true;
}

redisReply *corral__redis_command(corral__redis_call *c, int argc, const char **argv,
                                  const size_t *lens) {
    assert(c->conn && c->conn->ctx);
    count(&c->pool->ctr.round_trips);
    errno = 0;
    note_sent(c, argv[0], lens[0]);
    redisReply *r = redisCommandArgv(c->conn->ctx, argc, argv, lens);
    int e = errno;
    if (!r) {
        conn_failed(c, e);
        return NULL;
    }
    c->replied = true;
    mark_verified(c->host, c->conn);
    return r;
}

int corral__redis_append(corral__redis_call *c, int argc, const char **argv, const size_t *lens) {
    assert(c->conn);
    if (!c->conn->ctx) return -1; /* an earlier command of the pipeline broke it */
    note_sent(c, argv[0], lens[0]);
    if (redisAppendCommandArgv(c->conn->ctx, argc, argv, lens) != REDIS_OK) {
        /* Only an allocation fails here; the output buffer may hold part of the pipeline. */
        c->fail = CORRAL__REDIS_FAIL_NOMEM;
        corral__redis_state_failedf(&c->host->state, CORRAL_REASON_NOMEM, "out of memory");
        close_conn(c->pool, c->conn);
        return -1;
    }
    c->unsent = true;
    return 0;
}

redisReply *corral__redis_read(corral__redis_call *c) {
    assert(c->conn);
    if (!c->conn->ctx) return NULL;
    if (c->unsent) { /* redisGetReply flushes the pipeline before it reads */
        c->unsent = false;
        count(&c->pool->ctr.round_trips);
    }
    void *r = NULL;
    errno = 0;
    int rc = redisGetReply(c->conn->ctx, &r);
    int e = errno;
    if (rc != REDIS_OK || !r) {
        conn_failed(c, e);
        return NULL;
    }
    c->replied = true;
    mark_verified(c->host, c->conn);
    return r;
}

int corral__redis_failed(corral__redis_call *c) {
    /* Once per call: a cluster call that moved to another node and failed to begin there was
     * counted by that begin (redis_cluster.c), and its caller asks again. */
    bool first = !c->counted && c->pool;
    c->counted = true;
    if (first) count(&c->pool->ctr.errors);
    if (c->role != CORRAL__REDIS_WRITE) {
        if (first) count(&c->pool->ctr.failed_reads);
        return CORRAL_MISS;
    }
    if (first) count(&c->pool->ctr.failed_writes);
    switch (c->fail) {
    case CORRAL__REDIS_FAIL_TIMEOUT:
    case CORRAL__REDIS_FAIL_POOL: return CORRAL_ETIMEDOUT;
    case CORRAL__REDIS_FAIL_NOMEM: return CORRAL_ENOMEM;
    default: return CORRAL_ESTORE;
    }
}

int corral__redis_error_reply(corral__redis_call *c, const redisReply *r) {
    c->fail = CORRAL__REDIS_FAIL_REPLY;
    if (r->type == REDIS_REPLY_ERROR)
        corral__redis_state_error_reply(&c->host->state, r->str, r->len, CORRAL_REASON_REPLY);
    else
        corral__redis_state_failedf(&c->host->state, CORRAL_REASON_REPLY,
                                    "unexpected reply (type %d)", r->type);
    int rc = corral__redis_failed(c);
    /* "OOM command not allowed when used memory > 'maxmemory'": the write was refused whole. */
    if (rc == CORRAL_ESTORE && r->type == REDIS_REPLY_ERROR && r->len >= 3 &&
        memcmp(r->str, "OOM", 3) == 0)
        return CORRAL_ENOMEM;
    return rc;
}

void corral__redis_end(corral__redis_call *c) {
    if (c->conn) {
        give_back(c->host, c->conn, c->pool);
        c->conn = NULL;
    }
    if (c->probe) { /* its failure or its answer is recorded: the next probe may go */
        corral__mutex_lock(&c->host->lock);
        c->host->probing = false;
        corral__mutex_unlock(&c->host->lock);
        c->probe = false;
    }
    sigpipe_unblock(c);
    /* A call the server answered without failing ends a down state (one atomic load when up). */
    if (c->replied && c->fail == CORRAL__REDIS_FAIL_NONE)
        corral__redis_state_answered(&c->host->state, c->sent_set);
}
