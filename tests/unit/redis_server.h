/*
 * redis_server.h - a real redis-server for the tests, started and stopped by the test itself,
 * and the fixture every Redis test file (test_redis*.c) shares: the server, a handle on it, the
 * store's counters.
 *
 * A test server listens on 127.0.0.1 on a free port (found by binding port 0) and on a unix
 * socket, keeps its files in a fresh temporary directory, saves nothing (--save '',
 * --appendonly no) and allows DEBUG (for DEBUG SLEEP and SET-ACTIVE-EXPIRE). It dies with the
 * test process (PR_SET_PDEATHSIG), so a crashed test leaves no server running. Readiness is a
 * PING answered before a deadline; nothing sleeps a fixed time.
 *
 * Threads: a redis_server belongs to one thread (the test's main thread); redis_server_cmd opens
 * its own connection per call and may be called from any thread.
 */
#ifndef CORRAL_TEST_REDIS_SERVER_H
#define CORRAL_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>

#include "corral/corral.h"

#define REDIS_SERVER_MAX_ARGS 8

typedef struct redis_server {
    pid_t pid; /* 0 when not running */
    int port;
    char dir[64];   /* the temporary directory: log file and unix socket */
    char sock[96];  /* the unix socket path */
    char hosts[32]; /* "127.0.0.1:<port>", for corral_redis_options.hosts */
    const char *extra[REDIS_SERVER_MAX_ARGS]; /* more "--name", "value" arguments, NULL-ended */
} redis_server;

/* Starts a server on a free port; fills `s` (set s->extra before, or zero it). Returns 0, or -1
 * when redis-server could not be started or did not answer within 10 s. */
int redis_server_start(redis_server *s);

/* Starts the server again on the same port and socket (after redis_server_kill). 0 or -1. */
int redis_server_restart(redis_server *s);

/* Sends `sig` (SIGKILL, SIGSTOP, SIGCONT, ...) to the server; for SIGKILL and SIGTERM also
 * waits for it to exit. */
void redis_server_signal(redis_server *s, int sig);

/* Kills the server (SIGKILL), waits for it, and removes its directory. Accepts a stopped one. */
void redis_server_stop(redis_server *s);

/* Runs one command on a new connection (1 s timeouts), printf-style as redisCommand. Returns the
 * reply (freeReplyObject it) or NULL when the server did not answer. */
redisReply *redis_server_cmd(const redis_server *s, const char *fmt, ...);

/* As redis_server_cmd, in database `db` (SELECT first). */
redisReply *redis_server_cmd_db(const redis_server *s, int db, const char *fmt, ...);

/* Runs a command that must answer +OK (or an integer); fails the test otherwise. */
void redis_server_ok(const redis_server *s, const char *fmt, ...);

/* ---- The fixture ---- */

/* The server that a test file's tests share (the tests name it: srv.hosts, &srv):
 * redis_fx_group_setup starts it and redis_fx_group_teardown stops it (pass both to
 * cmocka_run_group_tests). */
extern redis_server srv;
int redis_fx_group_setup(void **state);
int redis_fx_group_teardown(void **state);

/* A server of the test's own, in `*state` (cmocka_unit_test_setup_teardown). _args starts it
 * with more "--name", "value" arguments (NULL-ended, at most REDIS_SERVER_MAX_ARGS). */
int redis_fx_setup(void **state);
int redis_fx_setup_args(void **state, const char *const *extra);
int redis_fx_teardown(void **state);

/* Options of a handle, or of a Redis store, on `s`: corral_options_init's, the Redis store on
 * s->hosts, with deadlines generous enough for sanitizers (connect 2 s, command 5 s). */
void redis_fx_options(const redis_server *s, corral_options *o);

/* Opens `*c` on the URL printf-style `fmt` makes; prints why it did not open. Returns what
 * corral_open returns. */
int redis_fx_open_url(corral **c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens a handle on `s`: the URL "redis://<s->hosts>" followed by what `fmt` makes (a query, a
 * database, more hosts). Fails the test when it does not open. */
corral *redis_fx_open(const redis_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The value of the store's row corral_redis_<name> ("near_live", "errors_total") in the
 * Prometheus text `text` (a row counts after a newline), or in the handle's; -1 when there is
 * none. They assert nothing, so a
 * forked child may call them. */
long long redis_fx_metric_in(const char *text, const char *name);
long long redis_fx_metric(corral *c, const char *name);

/* redis_fx_metric, failing the test when the handle has no such row. */
unsigned long long redis_fx_counter(corral *c, const char *name);

/* Starts the tracker of a handle with a near cache (a read of a key "probe", which must miss)
 * and waits until it is subscribed (corral_redis_near_live 1): until then the near cache is
 * bypassed by design. Fails the test after 15 s. */
void redis_fx_wait_live(corral *c);

/* CLOCK_MONOTONIC in ns, for the deadlines of polls. */
uint64_t redis_fx_now_ns(void);

/* A producer for corral_get_or_set: counts its runs in `*(int *)runs` and makes "made". */
int redis_fx_produce(void *runs, const void *key, size_t key_len, corral_result *out);

#endif /* CORRAL_TEST_REDIS_SERVER_H */
