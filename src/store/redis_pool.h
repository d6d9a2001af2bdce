/*
 * redis_pool.h - the connections of the Redis store: one pool per server, connect and command
 * timeouts, reconnection with exponential backoff, and the store-wide failure counters.
 * See redis_pool.c for the model and the locks; redis.c runs the store's commands through it.
 *
 * A call is one thread's use of one connection, from corral__redis_begin to corral__redis_end:
 *
 *     corral__redis_call rc;
 *     int rc_code = corral__redis_begin(pool, CORRAL__REDIS_READ, &rc);
 *     if (rc_code != CORRAL_OK) return rc_code;           // no connection: miss or error
 *     redisReply *r = corral__redis_command(&rc, argc, argv, lens);
 *     ... r == NULL: corral__redis_failed(&rc) gives the call's return code ...
 *     freeReplyObject(r);
 *     corral__redis_end(&rc);
 *
 * Threads: every function is thread-safe; a call belongs to the thread that began it.
 */
#ifndef CORRAL_STORE_REDIS_POOL_H
#define CORRAL_STORE_REDIS_POOL_H

#include "../common.h"

#include <signal.h>
#include <stdatomic.h>
#include <hiredis/hiredis.h>

#define CORRAL__REDIS_MAX_HOSTS    16
#define CORRAL__REDIS_MAX_POOL     1024u
#define CORRAL__REDIS_DEFAULT_PORT 6379
#define CORRAL__REDIS_MAX_HOSTNAME 255
/* Reconnection backoff: the first failure retries at once (a connection the server closed while
 * idle costs one call), then 10 ms doubling to 1 s, each delay drawn in [d/2, d]. */
#define CORRAL__REDIS_BACKOFF_MIN_MS 10u
#define CORRAL__REDIS_BACKOFF_MAX_MS 1000u

typedef struct corral__redis_pool corral__redis_pool;
typedef struct corral__redis_host corral__redis_host;
typedef struct corral__redis_conn corral__redis_conn;

/* One server of a host list, as corral__redis_parse_hosts reads it. */
typedef struct corral__redis_addr {
    char name[CORRAL__REDIS_MAX_HOSTNAME + 1]; /* host name or address, without brackets */
    int port;
} corral__redis_addr;

/* Parses "host[:port][,host[:port]...]" (IPv6 addresses in brackets: "[::1]:6380") into `out`
 * (room for `cap`; NULL to validate only) and its count into `*n`. Returns CORRAL_OK, or
 * CORRAL_EBADURL with `err` naming the bad host: an empty host, a port outside 1-65535, a name
 * longer than 255 bytes or holding a byte outside [A-Za-z0-9.-_:], or more than 16 hosts. */
int corral__redis_parse_hosts(const char *list, corral__redis_addr *out, size_t cap, size_t *n,
                              corral_error *err);

/* The delay before reconnecting after `fails` consecutive failures (fails >= 1): 0 for the first,
 * then CORRAL__REDIS_BACKOFF_MIN_MS << (fails - 2) capped at CORRAL__REDIS_BACKOFF_MAX_MS, drawn
 * uniformly in [d/2, d] from the 64 random bits `r`. Pure. */
uint64_t corral__redis_backoff_ms(unsigned fails, uint64_t r);

/* Store-wide counters, relaxed atomics. Every failure is counted once in `errors` and in the
 * counter of its cause (timeouts, ...); a failed store call also counts in failed_reads or
 * failed_writes. */
typedef struct corral__redis_counters {
    _Atomic uint64_t errors;           /* calls that failed: I/O, timeout, protocol, error reply */
    _Atomic uint64_t timeouts;         /* connect or command deadlines passed */
    _Atomic uint64_t connects;         /* connections established */
    _Atomic uint64_t reconnects;       /* ... of them, after a failure of their server */
    _Atomic uint64_t connect_failures; /* connection attempts that failed */
    _Atomic uint64_t fast_fails;       /* calls refused without I/O while backing off */
    _Atomic uint64_t pool_timeouts;    /* calls that found no free connection in time */
    _Atomic uint64_t failed_reads;     /* reads answered as a miss because of a failure */
    _Atomic uint64_t failed_writes;    /* writes that returned an error because of a failure */
    _Atomic uint64_t round_trips;      /* commands and pipelines sent: one network round trip
                                          each (connection setup not counted) */
    _Atomic int64_t open;              /* connections open now (gauge) */
} corral__redis_counters;

/* What a pool is opened with. Strings are copied. */
typedef struct corral__redis_pool_config {
    const corral__redis_addr *addrs; /* TCP servers; the first takes writes */
    size_t n_addrs;
    const char *unix_path; /* instead of addrs when not NULL */
    const char *username;  /* NULL: none */
    const char *password;  /* NULL: no AUTH */
    unsigned db;
    int64_t connect_timeout_ms;     /* > 0 */
    int64_t command_timeout_ms;     /* > 0 */
    unsigned pool;                  /* connections per server, 1..CORRAL__REDIS_MAX_POOL */
    corral_store_state_fn on_state; /* told of each server's changes of state; NULL: nobody */
    void *state_ctx;
    bool readonly; /* READONLY on every new connection: a cluster's replica then serves reads */
} corral__redis_pool_config;

/* Creates the pools. Connects nothing: connections open on first use, so a handle opens while
 * Redis is down. Returns CORRAL_OK, CORRAL_EINVAL or CORRAL_ENOMEM; `*out` NULL on failure. */
int corral__redis_pool_new(corral__redis_pool **out, const corral__redis_pool_config *cfg,
                           const corral__allocator *a);
/* Closes every connection and frees the pools. No call may be in progress. Accepts NULL. */
void corral__redis_pool_free(corral__redis_pool *p);

corral__redis_counters *corral__redis_pool_counters(corral__redis_pool *p);

/* The state of server `i` (corral_store_status, corral.h): CORRAL_OK, or CORRAL_MISS past the
 * last server. Copied under the host's lock. */
int corral__redis_pool_status(corral__redis_pool *p, size_t i, corral_server_status *out);

/* Opens a connection to the first server (the primary) outside the pools, set up as the pooled
 * ones (deadlines, AUTH, SELECT), for a subscriber such as the near cache's invalidation
 * channel. The caller owns it (redisFree) and must keep SIGPIPE blocked on the threads that use
 * it. Returns NULL on failure; ignores the backoff. */
redisContext *corral__redis_pool_connect(corral__redis_pool *p);

typedef enum corral__redis_role {
    CORRAL__REDIS_READ,         /* a replica (round-robin) when there are replicas; a failure is
                                   a miss */
    CORRAL__REDIS_WRITE,        /* the first server; a failure is an error */
    CORRAL__REDIS_READ_PRIMARY, /* a read that must see the primary (the near cache fills from
                                   where invalidations come from); a failure is a miss */
} corral__redis_role;

/* Why a call failed. */
typedef enum corral__redis_fail {
    CORRAL__REDIS_FAIL_NONE,
    CORRAL__REDIS_FAIL_IO,      /* connection refused, reset or closed; protocol error */
    CORRAL__REDIS_FAIL_TIMEOUT, /* a connect or command deadline passed */
    CORRAL__REDIS_FAIL_POOL,    /* no connection came free within the command timeout */
    CORRAL__REDIS_FAIL_BACKOFF, /* the server is in backoff: refused without I/O */
    CORRAL__REDIS_FAIL_NOMEM,   /* an allocation failed */
    CORRAL__REDIS_FAIL_REPLY    /* the server answered with an error */
} corral__redis_fail;

/* One thread's use of one connection. Fields are private to redis_pool.c. */
typedef struct corral__redis_call {
    corral__redis_pool *pool;
    corral__redis_host *host;
    corral__redis_conn *conn;
    corral__redis_role role;
    corral__redis_fail fail;
    sigset_t old_mask;       /* the thread's signal mask before the call */
    bool app_blocks_sigpipe; /* the thread had SIGPIPE blocked already: we leave it all be */
    bool io_failed;          /* a write may have raised SIGPIPE: consume it at the end */
    bool unsent;             /* commands appended since the last read: the next read sends them */
    bool replied;            /* a reply came back: with no failure, the server answered */
    bool sent_set;           /* a SET was sent: its answer ends a refusal of writes (OOM) */
    bool probe;              /* the call probes a failed host (redis_pool.c: the breaker) */
    bool counted;            /* its failure was counted (corral__redis_failed counts once) */
    int slot;                /* redis_cluster.c's: the hash slot the call serves, -1 none */
} corral__redis_call;

/* Begins a call: takes a free connection of the server for `role` (waiting at most the command
 * timeout), connecting it if needed. Returns CORRAL_OK, or the call's failure code (see
 * corral__redis_failed) with the call already ended. SIGPIPE is blocked on the calling thread
 * until corral__redis_end, and one raised by a write to a dead server is consumed there: hiredis
 * writes with write(2), and a library must not let a dead server kill its host process. Two
 * syscalls a call (block, restore); a thread that blocks SIGPIPE itself keeps its mask and gets
 * the pending signal as its own writes would leave it. */
int corral__redis_begin(corral__redis_pool *p, corral__redis_role role, corral__redis_call *c);

/* Runs one command and returns its reply (free it with freeReplyObject), or NULL when the
 * connection failed: the connection is then closed, the failure counted and recorded for
 * backoff, and corral__redis_failed gives the return code. */
redisReply *corral__redis_command(corral__redis_call *c, int argc, const char **argv,
                                  const size_t *lens);

/* Pipelining: queue commands, then read their replies in order. Append returns 0, or -1 when
 * the connection failed (as above). Read returns a reply or NULL as corral__redis_command. */
int corral__redis_append(corral__redis_call *c, int argc, const char **argv, const size_t *lens);
redisReply *corral__redis_read(corral__redis_call *c);

/* The return code of a failed call, counted once: a read is CORRAL_MISS; a write is
 * CORRAL_ETIMEDOUT (deadline or no free connection), CORRAL_ENOMEM (an allocation failed, or the
 * server refused the write with OOM), or CORRAL_ESTORE. */
int corral__redis_failed(corral__redis_call *c);

/* The return code of an error reply to the call's command (the connection stays usable): counts
 * it and returns as corral__redis_failed. */
int corral__redis_error_reply(corral__redis_call *c, const redisReply *r);

/* Ends a call: the connection goes back to its pool (or is closed when the call broke it), and
 * the signal mask is restored. Safe to call once after a successful begin. */
void corral__redis_end(corral__redis_call *c);

#endif /* CORRAL_STORE_REDIS_POOL_H */
