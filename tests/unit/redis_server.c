/*
 * redis_server.c - starts, restarts and stops a real redis-server for the tests.
 * See redis_server.h. The port comes from binding port 0 and closing; should another process
 * take it in between, the start fails fast (the server exits) and is retried on a new port.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_DEADLINE_NS (10ull * 1000000000ull)
#define POLL_PAUSE_NS     2000000L /* between readiness polls: a poll interval, not a wait */
#define START_ATTEMPTS    5

static uint64_t now_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (close(fd) != 0) return -1;
    return port;
}

static int spawn(redis_server *s) {
    char port[16], logfile[128];
    if (snprintf(port, sizeof port, "%d", s->port) >= (int)sizeof port) return -1;
    if (snprintf(logfile, sizeof logfile, "%s/redis.log", s->dir) >= (int)sizeof logfile) return -1;
    const char *argv[32] = { "redis-server", "--port",       port,    "--bind",
                             "127.0.0.1",    "--save",       "",      "--appendonly",
                             "no",           "--dir",        s->dir,  "--logfile",
                             logfile,        "--unixsocket", s->sock, "--unixsocketperm",
                             "700",          "--daemonize",  "no",    "--enable-debug-command",
                             "yes" };
    size_t n = 21;
    for (size_t i = 0; i < REDIS_SERVER_MAX_ARGS && s->extra[i]; i++)
        argv[n++] = s->extra[i];
    argv[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* The server dies with the test, so a crashed test leaves nothing running. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(126);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    return 0;
}

/* Polls PING until the server answers, it exits, or the deadline passes. */
static int wait_ready(redis_server *s) {
    uint64_t deadline = now_ns() + START_DEADLINE_NS;
    while (now_ns() < deadline) {
        int status;
        pid_t w = waitpid(s->pid, &status, WNOHANG);
        if (w == s->pid) {
            s->pid = 0;
            return -1; /* it exited: the port was taken, or redis-server is missing */
        }
        redisReply *r = redis_server_cmd(s, "PING");
        bool up = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r) freeReplyObject(r);
        if (up) return 0;
        struct timespec pause = { 0, POLL_PAUSE_NS };
        if (nanosleep(&pause, NULL) != 0 && errno != EINTR) return -1;
    }
    return -1;
}

int redis_server_start(redis_server *s) {
    snprintf(s->dir, sizeof s->dir, "/tmp/corral-redis-XXXXXX");
    if (!mkdtemp(s->dir)) return -1;
    if (snprintf(s->sock, sizeof s->sock, "%s/redis.sock", s->dir) >= (int)sizeof s->sock)
        return -1;
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        s->port = free_port();
        if (s->port <= 0) return -1;
        if (snprintf(s->hosts, sizeof s->hosts, "127.0.0.1:%d", s->port) >= (int)sizeof s->hosts)
            return -1;
        if (spawn(s) != 0) return -1;
        if (wait_ready(s) == 0) return 0;
        redis_server_signal(s, SIGKILL);
    }
    return -1;
}

int redis_server_restart(redis_server *s) {
    if (s->pid) redis_server_signal(s, SIGKILL);
    if (spawn(s) != 0) return -1;
    return wait_ready(s);
}

void redis_server_signal(redis_server *s, int sig) {
    if (!s->pid) return;
    if (kill(s->pid, sig) != 0) return;
    if (sig != SIGKILL && sig != SIGTERM) return;
    int status;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
    s->pid = 0;
}

void redis_server_stop(redis_server *s) {
    if (s->pid) {
        (void)kill(s->pid, SIGCONT); /* a stopped server must run to die */
        redis_server_signal(s, SIGKILL);
    }
    static const char *const files[] = { "redis.log", "redis.sock", "dump.rdb" };
    char path[160];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (snprintf(path, sizeof path, "%s/%s", s->dir, files[i]) < (int)sizeof path)
            (void)unlink(path);
    }
    if (s->dir[0]) (void)rmdir(s->dir);
    s->dir[0] = '\0';
}

static redisReply *vcmd(const redis_server *s, const char *fmt, va_list ap) {
    struct timeval tv = { 1, 0 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (!ctx) return NULL;
    redisReply *r = NULL;
    if (!ctx->err && redisSetTimeout(ctx, tv) == REDIS_OK) r = redisvCommand(ctx, fmt, ap);
    redisFree(ctx);
    return r;
}

redisReply *redis_server_cmd_db(const redis_server *s, int db, const char *fmt, ...) {
    struct timeval tv = { 1, 0 };
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    if (!ctx) return NULL;
    redisReply *r = NULL;
    if (!ctx->err && redisSetTimeout(ctx, tv) == REDIS_OK) {
        redisReply *sel = redisCommand(ctx, "SELECT %d", db);
        bool ok = sel && sel->type == REDIS_REPLY_STATUS;
        if (sel) freeReplyObject(sel);
        if (ok) {
            va_list ap;
            va_start(ap, fmt);
            r = redisvCommand(ctx, fmt, ap);
            va_end(ap);
        }
    }
    redisFree(ctx);
    return r;
}

redisReply *redis_server_cmd(const redis_server *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd(s, fmt, ap);
    va_end(ap);
    return r;
}

void redis_server_ok(const redis_server *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = vcmd(s, fmt, ap);
    va_end(ap);
    if (!r) fail_msg("redis: no reply to '%s'", fmt);
    bool ok = r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_INTEGER;
    if (!ok) fail_msg("redis: '%s' answered %d %s", fmt, r->type, r->str ? r->str : "");
    freeReplyObject(r);
}
