/*
 * redis_server.c - starts, restarts and stops a real redis-server for the tests, and the
 * fixture of the Redis tests. See redis_server.h. The port comes from binding port 0 and closing;
 * should another process take it in between, the start fails fast (the server exits) and is retried
 * on a new port.
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
#define LIVE_DEADLINE_NS  (15ull * 1000000000ull)

uint64_t redis_fx_now_ns(void) {
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
    uint64_t deadline = redis_fx_now_ns() + START_DEADLINE_NS;
    while (redis_fx_now_ns() < deadline) {
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

/* ---- The fixture ---- */

redis_server srv;

int redis_fx_group_setup(void **state) {
    (void)state;
    memset(&srv, 0, sizeof srv);
    return redis_server_start(&srv);
}

int redis_fx_group_teardown(void **state) {
    (void)state;
    redis_server_stop(&srv);
    return 0;
}

int redis_fx_setup_args(void **state, const char *const *extra) {
    redis_server *s = calloc(1, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (i == REDIS_SERVER_MAX_ARGS - 1) {
            free(s);
            return -1; /* the list must stay NULL-ended */
        }
        s->extra[i] = extra[i];
    }
    *state = s;
    return redis_server_start(s);
}

int redis_fx_setup(void **state) {
    return redis_fx_setup_args(state, NULL);
}

int redis_fx_teardown(void **state) {
    redis_server *s = *state;
    redis_server_stop(s);
    free(s);
    return 0;
}

void redis_fx_options(const redis_server *s, corral_options *o) {
    corral_options_init(o);
    o->store = "redis";
    o->redis.hosts = s->hosts;
    o->redis.connect_timeout_ms = 2000;
    o->redis.command_timeout_ms = 5000;
}

static int open_vurl(corral **c, const char *head, const char *fmt, va_list ap) {
    char url[512];
    int h = snprintf(url, sizeof url, "%s", head);
    assert_true(h >= 0 && h < (int)sizeof url);
    int n = vsnprintf(url + h, sizeof url - (size_t)h, fmt, ap);
    assert_true(n >= 0 && n < (int)sizeof url - h);
    corral_error err = { 0 };
    int rc = corral_open(c, url, &err);
    if (rc != CORRAL_OK) print_message("open %s: %s\n", url, err.msg);
    return rc;
}

int redis_fx_open_url(corral **c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = open_vurl(c, "", fmt, ap);
    va_end(ap);
    return rc;
}

corral *redis_fx_open(const redis_server *s, const char *fmt, ...) {
    char head[64];
    int h = snprintf(head, sizeof head, "redis://%s", s->hosts);
    assert_true(h > 0 && h < (int)sizeof head);
    corral *c = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = open_vurl(&c, head, fmt, ap);
    va_end(ap);
    if (rc != CORRAL_OK) fail_msg("the handle did not open: %d", rc);
    return c;
}

long long redis_fx_metric_in(const char *text, const char *name) {
    char needle[96];
    int n = snprintf(needle, sizeof needle, "\ncorral_redis_%s ", name);
    if (n < 0 || n >= (int)sizeof needle) return -1;
    const char *at = strstr(text, needle);
    return at ? strtoll(at + n, NULL, 10) : -1;
}

long long redis_fx_metric(corral *c, const char *name) {
    char *text = NULL;
    size_t len = 0;
    if (corral_metrics_write(c, &text, &len) != CORRAL_OK) return -1;
    long long v = redis_fx_metric_in(text, name);
    corral_free(c, text);
    return v;
}

unsigned long long redis_fx_counter(corral *c, const char *name) {
    long long v = redis_fx_metric(c, name);
    if (v < 0) fail_msg("no corral_redis_%s in the metrics", name);
    return (unsigned long long)v;
}

void redis_fx_wait_live(corral *c) {
    assert_int_equal(corral_has(c, "probe", 5, NULL), CORRAL_MISS);
    uint64_t deadline = redis_fx_now_ns() + LIVE_DEADLINE_NS;
    while (redis_fx_metric(c, "near_live") != 1)
        if (redis_fx_now_ns() > deadline) fail_msg("the tracker never subscribed");
}

int redis_fx_produce(void *runs, const void *key, size_t key_len, corral_result *out) {
    (void)key;
    (void)key_len;
    (*(int *)runs)++;
    return corral_result_set(out, "made", 4);
}
