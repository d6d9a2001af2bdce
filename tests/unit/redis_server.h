/*
 * redis_server.h - a real redis-server for the tests, started and stopped by the test itself.
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
#include <sys/types.h>
#include <hiredis/hiredis.h>

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

#endif /* CORRAL_TEST_REDIS_SERVER_H */
