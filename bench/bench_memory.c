/*
 * bench_memory.c - what corral's memory store costs in RSS, beside Redis and memcached measured
 * in the same run, and whether its byte bound holds in RSS.
 *
 * 1. Density: bytes of RSS per entry. The same keys "key:<id>" are loaded into corral's memory
 *    store (in a child process forked for it, so no earlier allocation is reused; key_prefix
 *    "", so corral's keys are ":1:key:<id>", 3 bytes longer), into a redis-server (through
 *    hiredis, pipelined) and into a memcached (a plain text-protocol client, `set ... noreply`
 *    pipelined, then `stats` to wait), each started here on a free loopback port and stopped at
 *    the end. RSS is read from /proc/<pid>/statm before the first set (for corral: before
 *    corral_open) and after the last; bytes/entry = RSS growth / entries held, and
 *    overhead/entry = (RSS growth - key and value bytes) / entries. Two loads:
 *    - 1,000,000 keys with 100-byte values (corral: max_memory=400MB);
 *    - MIXED_KEYS keys with values of the mix below (corral: max_memory=400MB, which holds them).
 *    Target of the issue: corral at most 160 bytes/entry on the first load.
 * 2. The RSS bound: a store with max_memory=64MB is fed values of the mix (70 % 10-210 B, 25 %
 *    1-5 KB, 5 % 20-80 KB, 0.2 % 200 KB-1 MB; the rest 10-210 B) under keys drawn uniformly from
 *    300,000, BOUND_GB (5) GB in all, in a child process. At checkpoints it prints the bytes
 *    accounted, the process's RSS growth since before corral_open and glibc's own view of the
 *    heap (mallinfo2: arena + mmapped). Targets: growth at the end at most 1.15 x max_memory +
 *    8 MB, and the second half's highest checkpoint no more than BOUND_PLATEAU_MB above the
 *    first half's (it stops growing).
 *    The environment variable CORRAL_BENCH_BOUND_GB sets the total (e.g. 0.5 for a quick run).
 *    At the end, every key's value is read back and checked against the length last written.
 *
 * A MISS does not fail the run; a failed set, a wrong value or a peer that does not hold every
 * key does (exit status 1). Peers: redis-server (what scripts/bootstrap installs, jemalloc), run
 * with --save "" --appendonly no; memcached -m 4096 -I 2m (room for every key, items to 1 MB).
 *
 * Usage: bench_memory [-q] [-p PHASES]; -q is a quick run (100,000 keys, 0.5 GB for the bound),
 * PHASES any of "d" (density), "b" (bound), default "db".
 */
#include "bench_common.h"

#include "corral/corral.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#define DENSE_KEYS       1000000u
#define DENSE_VAL        100u
#define DENSE_MAX_MB     400u
#define MIXED_KEYS       60000u
#define MIXED_MAX_MB     400u
#define BOUND_KEYS       300000u
#define BOUND_MAX_MB     64u
#define BOUND_GB         5.0
#define BOUND_PLATEAU_MB 2.0 /* growth allowed over the second half of the bound run */
#define TARGET_PER_ENTRY 160.0
#define MAX_VAL          (1u << 20)
#define PIPELINE         512 /* commands per pipelined batch to a peer */
#define READY_NS         (10ull * 1000000000u)
#define SEED             0x5eed2024c0a1u

typedef struct config {
    uint32_t dense_keys, mixed_keys;
    double bound_gb;
    bool run_density, run_bound;
} config;

/* ---- RSS ---- */

static size_t rss_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) bench_die("open %s: %s", path, strerror(errno));
    unsigned long size, resident;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) bench_die("read %s", path);
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- The value mix ---- */

/* A value length drawn from the mix: 70 % 10-210 B, 25 % 1-5 KB, 5 % 20-80 KB, 0.2 %
 * 200 KB-1 MB; the remaining draws (the 0.2 % the percentages overshoot by) are small. */
static uint32_t mix_len(bench_rng *r) {
    uint32_t p = bench_rng_below(r, 1000);
    if (p < 2) return 200000 + bench_rng_below(r, 1000001 - 200000);
    if (p < 52) return 20000 + bench_rng_below(r, 60001);
    if (p < 302) return 1000 + bench_rng_below(r, 4001);
    return 10 + bench_rng_below(r, 201);
}

/* The length of key i's value in a load: fixed, or the mix drawn from a stream seeded by i. */
static uint32_t load_len(uint32_t fixed, uint32_t i) {
    if (fixed) return fixed;
    bench_rng r;
    bench_rng_seed(&r, SEED ^ ((uint64_t)i << 20));
    return mix_len(&r);
}

/* MAX_VAL bytes of filler; a value is a prefix of it with its id in the first 4 bytes. */
static unsigned char *filler(void) {
    unsigned char *b = bench_xmalloc(MAX_VAL);
    bench_rng r;
    bench_rng_seed(&r, SEED);
    for (size_t i = 0; i < MAX_VAL; i++)
        b[i] = (unsigned char)('a' + bench_rng_below(&r, 26));
    return b;
}

/* ---- corral ---- */

static corral *open_mem(unsigned max_mb) {
    corral_options o;
    corral_options_init(&o);
    o.store = "mem";
    o.key_prefix = "";
    o.default_ttl_ms = CORRAL_TTL_FOREVER;
    o.max_memory_bytes = (size_t)max_mb << 20;
    corral *c;
    corral_error err;
    int rc = corral_open_opts(&c, &o, &err);
    if (rc < 0) bench_die("corral_open_opts: %s (%s)", corral_strerror(rc), err.msg);
    return c;
}

static void store_usage(corral *c, uint64_t *items, size_t *used_bytes) {
    corral_stats_snapshot *s;
    int rc = corral_stats(c, &s);
    if (rc < 0) bench_die("corral_stats: %s", corral_strerror(rc));
    *items = s->total.items > 0 ? (uint64_t)s->total.items : 0;
    *used_bytes = s->used_bytes;
    corral_stats_free(c, s);
}

/* Runs fn(arg, out) in a forked child and copies its `n` bytes of result into out. The child
 * starts from this process's heap as it is, so call it before large allocations are freed. */
static void in_child(void (*fn)(const void *arg, void *out), const void *arg, void *out, size_t n) {
    int fds[2];
    if (pipe(fds) != 0) bench_die("pipe: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        fn(arg, out);
        const char *p = out;
        for (size_t done = 0; done < n;) {
            ssize_t w = write(fds[1], p + done, n - done);
            if (w <= 0) _exit(1);
            done += (size_t)w;
        }
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    char *p = out;
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fds[0], p + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        done += (size_t)r;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) bench_die("waitpid: %s", strerror(errno));
    if (done != n || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        bench_die("the measuring child failed");
}

typedef struct load {
    uint32_t keys;
    uint32_t fixed_len; /* 0: the mix */
    unsigned max_mb;
} load;

typedef struct density {
    size_t rss_growth;
    uint64_t held;
    uint64_t payload; /* key and value bytes held, as the store names them */
    size_t accounted; /* corral's used_bytes (0 for peers) */
} density;

static void corral_density(const void *arg, void *out) {
    const load *l = arg;
    density *d = out;
    unsigned char *fill = filler();
    corral_release_memory(); /* a no-op here (the parent opens no store): keeps it honest */
    size_t before = rss_of(getpid());
    corral *c = open_mem(l->max_mb);
    char key[16];
    for (uint32_t i = 0; i < l->keys; i++) {
        size_t klen = bench_render_key(key, "key:", 4, i);
        uint32_t vlen = load_len(l->fixed_len, i);
        memcpy(fill, &i, sizeof i);
        int rc = corral_set(c, key, klen, fill, vlen, CORRAL_TTL_FOREVER, NULL);
        if (rc < 0) bench_die("corral_set key:%u: %s", i, corral_strerror(rc));
        d->payload += klen + 3 + vlen; /* ":1:" + key */
    }
    d->rss_growth = rss_of(getpid()) - before;
    store_usage(c, &d->held, &d->accounted);
    if (d->held != l->keys) d->payload = 0; /* evicted: payload unknown, not reported */
    corral_close(c);
    free(fill);
}

/* ---- Peers: servers on free ports ---- */

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) bench_die("socket: %s", strerror(errno));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        bench_die("bind: %s", strerror(errno));
    if (close(fd) != 0) bench_die("close: %s", strerror(errno));
    return ntohs(a.sin_port);
}

static pid_t spawn(const char *const argv[]) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(126);
        execvp(argv[0], (char *const *)argv); /* execvp does not write them */
        _exit(127);
    }
    return pid;
}

static void stop(pid_t pid) {
    if (kill(pid, SIGKILL) != 0) bench_die("kill: %s", strerror(errno));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) bench_die("waitpid: %s", strerror(errno));
}

/* A TCP connection to 127.0.0.1:port, or -1. */
static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) bench_die("socket: %s", strerror(errno));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) bench_die("send: %s", strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* Reads from fd until the bytes read end with `end`; returns them NUL-terminated in buf. */
static size_t recv_until(int fd, char *buf, size_t cap, const char *end) {
    size_t n = 0, el = strlen(end);
    while (n < el || memcmp(buf + n - el, end, el) != 0) {
        if (n + 1 >= cap) bench_die("memcached: reply too long");
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) bench_die("memcached: connection closed");
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

/* ---- Redis ---- */

static redisContext *redis_connect(int port) {
    struct timeval tv = { 5, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
    return c;
}

static pid_t redis_start(int port) {
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *argv[] = {
        "redis-server", "--port", p,       "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no",     "--dir", "/tmp",   "--logfile", "",       NULL
    };
    pid_t pid = spawn(argv);
    uint64_t deadline = bench_now_ns() + READY_NS;
    for (;;) {
        redisContext *c = redis_connect(port);
        redisReply *r = c ? redisCommand(c, "PING") : NULL;
        bool up = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        if (c) redisFree(c);
        if (up) return pid;
        if (bench_now_ns() > deadline) bench_die("redis-server did not start on port %d", port);
        bench_sleep_ns(2000000); /* a poll interval */
    }
}

static void redis_density(const load *l, const unsigned char *fill, density *d) {
    int port = free_port();
    pid_t pid = redis_start(port);
    redisContext *c = redis_connect(port);
    if (!c) bench_die("redis: connect");
    size_t before = rss_of(pid);
    unsigned char *val = bench_xmalloc(MAX_VAL);
    memcpy(val, fill, MAX_VAL);
    char key[16];
    for (uint32_t i = 0; i < l->keys;) {
        uint32_t n = 0;
        for (; n < PIPELINE && i < l->keys; n++, i++) {
            size_t klen = bench_render_key(key, "key:", 4, i);
            uint32_t vlen = load_len(l->fixed_len, i);
            memcpy(val, &i, sizeof i);
            if (redisAppendCommand(c, "SET %b %b", key, klen, val, (size_t)vlen) != REDIS_OK)
                bench_die("redis: append");
            d->payload += klen + vlen;
        }
        for (uint32_t j = 0; j < n; j++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK || r->type != REDIS_REPLY_STATUS)
                bench_die("redis: SET failed");
            freeReplyObject(r);
        }
    }
    redisReply *r = redisCommand(c, "DBSIZE");
    if (!r || r->type != REDIS_REPLY_INTEGER) bench_die("redis: DBSIZE");
    d->held = (uint64_t)r->integer;
    freeReplyObject(r);
    d->rss_growth = rss_of(pid) - before;
    redisFree(c);
    free(val);
    stop(pid);
}

/* ---- memcached ---- */

static pid_t memcached_start(int port) {
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *argv[] = { "memcached", "-p",   p,    "-l", "127.0.0.1", "-U",   "0",
                           "-m",        "4096", "-I", "2m", "-u",        "root", NULL };
    if (geteuid() != 0) argv[11] = NULL; /* -u is for root only */
    pid_t pid = spawn(argv);
    uint64_t deadline = bench_now_ns() + READY_NS;
    for (;;) {
        int fd = dial(port);
        if (fd >= 0) {
            close(fd);
            return pid;
        }
        if (bench_now_ns() > deadline) bench_die("memcached did not start on port %d", port);
        bench_sleep_ns(2000000); /* a poll interval */
    }
}

/* The value of `name` in memcached's `stats` reply. */
static uint64_t memcached_stat(int fd, const char *name) {
    static char buf[1 << 16];
    send_all(fd, "stats\r\n", 7);
    recv_until(fd, buf, sizeof buf, "END\r\n");
    char needle[64];
    snprintf(needle, sizeof needle, "STAT %s ", name);
    const char *at = strstr(buf, needle);
    if (!at) bench_die("memcached: no stat %s", name);
    return strtoull(at + strlen(needle), NULL, 10);
}

static void memcached_density(const load *l, const unsigned char *fill, density *d) {
    int port = free_port();
    pid_t pid = memcached_start(port);
    int fd = dial(port);
    if (fd < 0) bench_die("memcached: connect");
    size_t before = rss_of(pid);
    unsigned char *val = bench_xmalloc(MAX_VAL);
    memcpy(val, fill, MAX_VAL);
    char key[16], head[96];
    for (uint32_t i = 0; i < l->keys; i++) {
        size_t klen = bench_render_key(key, "key:", 4, i);
        key[klen] = '\0';
        uint32_t vlen = load_len(l->fixed_len, i);
        memcpy(val, &i, sizeof i);
        int n = snprintf(head, sizeof head, "set %s 0 0 %u noreply\r\n", key, vlen);
        send_all(fd, head, (size_t)n);
        send_all(fd, val, vlen);
        send_all(fd, "\r\n", 2);
        d->payload += klen + vlen;
    }
    /* A reply to `stats` comes after every set before it was handled. */
    d->held = memcached_stat(fd, "curr_items");
    d->rss_growth = rss_of(pid) - before;
    close(fd);
    free(val);
    stop(pid);
}

/* ---- Density table ---- */

static void density_row(const char *name, const density *d, const char *target) {
    double per = d->held ? (double)d->rss_growth / (double)d->held : 0;
    char over[32] = "n/a";
    if (d->payload && d->held)
        snprintf(over, sizeof over, "%.1f",
                 ((double)d->rss_growth - (double)d->payload) / (double)d->held);
    char acc[32] = "";
    if (d->accounted) snprintf(acc, sizeof acc, "%.1f", (double)d->accounted / (double)d->held);
    printf("%-22s %10.1f %9llu %11.1f %9s %9s  %s\n", name, (double)d->rss_growth / 1e6,
           (unsigned long long)d->held, per, over, acc, target);
}

static bool run_density(const config *cfg, const unsigned char *fill) {
    bool met = true;
    const load loads[2] = {
        { cfg->dense_keys, DENSE_VAL, DENSE_MAX_MB },
        { cfg->mixed_keys, 0, MIXED_MAX_MB },
    };
    density dc[2] = { { 0 } };
    /* corral first, in children forked before this process allocated anything large. */
    for (int i = 0; i < 2; i++)
        in_child(corral_density, &loads[i], &dc[i], sizeof dc[i]);
    for (int i = 0; i < 2; i++) {
        const load *l = &loads[i];
        density dr = { 0 }, dm = { 0 };
        redis_density(l, fill, &dr);
        memcached_density(l, fill, &dm);
        if (dr.held != l->keys || dm.held != l->keys)
            bench_die("a peer does not hold every key (redis %llu, memcached %llu of %u)",
                      (unsigned long long)dr.held, (unsigned long long)dm.held, l->keys);
        if (i == 0)
            printf("\nDENSITY  %u keys \"key:<id>\", %u-byte values; corral max_memory=%uMB\n",
                   l->keys, DENSE_VAL, l->max_mb);
        else
            printf("\nDENSITY  %u keys \"key:<id>\", mixed values (70%% 10-210 B, 25%% 1-5 KB, "
                   "5%% 20-80 KB, 0.2%% 200 KB-1 MB);\ncorral max_memory=%uMB\n",
                   l->keys, l->max_mb);
        const int width = 96;
        bench_rule(width);
        printf("%-22s %10s %9s %11s %9s %9s  %s\n", "store", "RSS MB", "held", "bytes/entry",
               "overhead", "accounted", "target");
        bench_rule(width);
        char target[64] = "";
        if (i == 0) {
            double per = dc[i].held ? (double)dc[i].rss_growth / (double)dc[i].held : 1e9;
            bool ok = dc[i].held == l->keys && per <= TARGET_PER_ENTRY;
            met &= ok;
            snprintf(target, sizeof target, "<= %.0f B/entry %s", TARGET_PER_ENTRY,
                     ok ? "PASS" : "MISS");
        }
        density_row("corral mem://", &dc[i], target);
        density_row("redis-server", &dr, "");
        density_row("memcached", &dm, "");
        bench_rule(width);
    }
    printf("(RSS MB: growth of the process's RSS from before the first set to after the last; "
           "overhead: (growth -\nkey and value bytes) / entries held; accounted: corral's "
           "used_bytes / entries)\n");
    return met;
}

/* ---- The RSS bound ---- */

#define N_CHECKS 5
static const double check_at[N_CHECKS] = { 0.08, 0.2, 0.5, 0.75, 1.0 };

typedef struct bound_row {
    double written_gb;
    size_t accounted;
    size_t rss_growth;
    size_t heap; /* mallinfo2: arena + mmapped, growth since before open */
    uint64_t items;
} bound_row;

typedef struct bound_result {
    bound_row row[N_CHECKS];
    uint64_t sets, checked;
    double seconds;
} bound_result;

static size_t heap_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return m.arena + m.hblkhd;
}

static void corral_bound(const void *arg, void *out) {
    const config *cfg = arg;
    bound_result *res = out;
    unsigned char *fill = filler();
    uint32_t *last_len = calloc(BOUND_KEYS, sizeof *last_len);
    unsigned char *buf = bench_xmalloc(MAX_VAL);
    if (!last_len) bench_die("out of memory");
    bench_rng r;
    bench_rng_seed(&r, SEED);
    corral_release_memory(); /* as corral_density */
    size_t rss0 = rss_of(getpid()), heap0 = heap_bytes();
    corral *c = open_mem(BOUND_MAX_MB);
    double total = cfg->bound_gb * 1e9, written = 0;
    uint64_t t0 = bench_now_ns();
    char key[16];
    for (int k = 0; k < N_CHECKS; k++) {
        while (written < total * check_at[k]) {
            uint32_t id = bench_rng_below(&r, BOUND_KEYS);
            uint32_t vlen = mix_len(&r);
            size_t klen = bench_render_key(key, "key:", 4, id);
            memcpy(fill, &id, sizeof id);
            int rc = corral_set(c, key, klen, fill, vlen, CORRAL_TTL_FOREVER, NULL);
            if (rc < 0) bench_die("corral_set key:%u (%u B): %s", id, vlen, corral_strerror(rc));
            last_len[id] = vlen;
            written += vlen;
            res->sets++;
        }
        bound_row *row = &res->row[k];
        row->written_gb = written / 1e9;
        store_usage(c, &row->items, &row->accounted);
        size_t rss = rss_of(getpid()), heap = heap_bytes();
        row->rss_growth = rss > rss0 ? rss - rss0 : 0;
        row->heap = heap > heap0 ? heap - heap0 : 0;
    }
    res->seconds = (double)(bench_now_ns() - t0) / 1e9;
    /* Every key held has the length last written and its id in front. */
    for (uint32_t id = 0; id < BOUND_KEYS; id++) {
        size_t klen = bench_render_key(key, "key:", 4, id), len;
        int rc = corral_get_into(c, key, klen, NULL, buf, MAX_VAL, &len);
        if (rc == CORRAL_MISS) continue;
        uint32_t got;
        memcpy(&got, buf, sizeof got);
        if (rc != CORRAL_OK || len != last_len[id] || (len >= 4 && got != id))
            bench_die("bound: key:%u read back wrong (%s, %zu B, wrote %u B)", id,
                      corral_strerror(rc), len, last_len[id]);
        res->checked++;
    }
    corral_close(c);
    free(buf);
    free(last_len);
    free(fill);
}

static bool run_bound(const config *cfg) {
    bound_result res = { 0 };
    in_child(corral_bound, cfg, &res, sizeof res);
    double max = (double)((size_t)BOUND_MAX_MB << 20);
    double limit = 1.15 * max + 8.0 * (1 << 20);
    printf("\nRSS BOUND  max_memory=%uMB; %.1f GB of mixed values over %u keys (uniform); "
           "limit 1.15 x max_memory + 8 MB = %.1f MB\n",
           BOUND_MAX_MB, cfg->bound_gb, BOUND_KEYS, limit / 1e6);
    const int width = 72;
    bench_rule(width);
    printf("%10s %10s %12s %12s %12s %9s\n", "written GB", "items", "accounted MB", "RSS growth MB",
           "heap MB", "x max");
    bench_rule(width);
    for (int k = 0; k < N_CHECKS; k++) {
        const bound_row *row = &res.row[k];
        printf("%10.2f %10llu %12.1f %13.1f %12.1f %9.2f\n", row->written_gb,
               (unsigned long long)row->items, (double)row->accounted / 1e6,
               (double)row->rss_growth / 1e6, (double)row->heap / 1e6,
               (double)row->rss_growth / max);
    }
    bench_rule(width);
    /* Stops growing: the highest checkpoint after half the total is at most BOUND_PLATEAU_MB
     * above the highest before (checkpoints catch the trims at different phases). */
    const bound_row *last = &res.row[N_CHECKS - 1];
    size_t early = 0, later = 0;
    for (int k = 0; k < N_CHECKS; k++) {
        size_t *peak = check_at[k] <= 0.5 ? &early : &later;
        *peak = res.row[k].rss_growth > *peak ? res.row[k].rss_growth : *peak;
    }
    double late = ((double)later - (double)early) / 1e6;
    bool ok_bound = (double)last->rss_growth <= limit;
    bool ok_flat = late <= BOUND_PLATEAU_MB;
    printf("%s  RSS growth %.1f MB at the end (limit %.1f MB)\n", ok_bound ? "PASS" : "MISS",
           (double)last->rss_growth / 1e6, limit / 1e6);
    printf("%s  %+.1f MB from the first half's peak to the second's (stops growing: <= %.0f MB)\n",
           ok_flat ? "PASS" : "MISS", late, BOUND_PLATEAU_MB);
    printf("(%llu sets in %.1f s, %.2f GB/s; %llu keys read back and checked; heap: glibc "
           "mallinfo2 arena + mmapped)\n",
           (unsigned long long)res.sets, res.seconds, last->written_gb / res.seconds,
           (unsigned long long)res.checked);
    return ok_bound && ok_flat;
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr, "usage: bench_memory [-q] [-p PHASES]\n"
                    "  -q         quick run: 100,000 keys, 0.5 GB through the bound\n"
                    "  -p PHASES  any of d (density), b (RSS bound); default db\n"
                    "  CORRAL_BENCH_BOUND_GB=G  GB written through the bound (default 5)\n");
    exit(2);
}

int main(int argc, char **argv) {
    config cfg = { .dense_keys = DENSE_KEYS,
                   .mixed_keys = MIXED_KEYS,
                   .bound_gb = BOUND_GB,
                   .run_density = true,
                   .run_bound = true };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-q") == 0) {
            cfg.dense_keys = DENSE_KEYS / 10;
            cfg.mixed_keys = MIXED_KEYS / 10;
            cfg.bound_gb = 0.5;
        } else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) {
            const char *ph = argv[++i];
            cfg.run_density = strchr(ph, 'd') != NULL;
            cfg.run_bound = strchr(ph, 'b') != NULL;
        } else {
            usage();
        }
    }
    const char *gb = getenv("CORRAL_BENCH_BOUND_GB");
    if (gb && *gb) {
        char *end;
        cfg.bound_gb = strtod(gb, &end);
        if (*end || !(cfg.bound_gb > 0)) bench_die("CORRAL_BENCH_BOUND_GB: not a size: %s", gb);
    }
    uint64_t t0 = bench_now_ns();
    printf("bench_memory: corral %s\n", corral_version());
    bool met = true;
    /* The bound runs first: its child then starts from a heap nothing else has used. */
    if (cfg.run_bound) met &= run_bound(&cfg);
    if (cfg.run_density) {
        unsigned char *fill = filler();
        met &= run_density(&cfg, fill);
        free(fill);
    }
    printf("\n%s; total %.1f s\n", met ? "every target met" : "targets MISSED",
           (double)(bench_now_ns() - t0) / 1e9);
    return 0;
}
