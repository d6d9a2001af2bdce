/*
 * net.c - the CLI's HTTP and Redis clients (net.h). The HTTP client is small on purpose: one
 * request per connection to an admin listener or a metrics endpoint, poll() for the deadline,
 * and the answer parsed by libcorral's own HTTP parser (include/corral/http.h), which handles
 * Content-Length, chunked and read-until-close framing.
 */
#include "net.h"

#include "corral/corral.h"
#include "corral/http.h"
/* The store's CLUSTER SLOTS reader (pure: no I/O, no state), fuzzed by fuzz/fuzz_redis_slots.c:
 * the CLI reads the slot map a server sends as the store does. */
#include "../../src/store/redis_slots.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HTTP_MAX_BODY (64u << 20)

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int http_url_parse(const char *url, http_url *out, char *why, size_t why_cap) {
    static const char scheme[] = "http://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(why, why_cap, "not an http:// URL");
        return -1;
    }
    const char *p = url + sizeof scheme - 1;
    const char *slash = strchr(p, '/');
    size_t auth_len = slash ? (size_t)(slash - p) : strlen(p);
    const char *host = p, *port = NULL;
    size_t host_len = auth_len;
    if (auth_len && p[0] == '[') {
        const char *rb = memchr(p, ']', auth_len);
        if (!rb) goto bad;
        host = p + 1;
        host_len = (size_t)(rb - p - 1);
        if (rb + 1 < p + auth_len) {
            if (rb[1] != ':') goto bad;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', auth_len);
        if (colon) {
            host_len = (size_t)(colon - p);
            port = colon + 1;
        }
    }
    size_t port_len = port ? (size_t)(p + auth_len - port) : 0;
    if (host_len == 0 || host_len >= sizeof out->host || (port && port_len == 0) ||
        port_len >= sizeof out->port)
        goto bad;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (port) {
        memcpy(out->port, port, port_len);
        out->port[port_len] = '\0';
        for (size_t i = 0; i < port_len; i++)
            if (port[i] < '0' || port[i] > '9') goto bad;
    } else {
        strcpy(out->port, "80");
    }
    const char *path = slash ? slash : "/";
    if (strlen(path) >= sizeof out->path) goto bad;
    strcpy(out->path, path);
    return 0;
bad:
    snprintf(why, why_cap, "malformed URL");
    return -1;
}

/* Waits until fd is ready for `events` or the deadline passes. Returns 0, or -1 with `why`. */
static int wait_fd(int fd, short events, int64_t deadline, int timeout_ms, char *why,
                   size_t why_cap) {
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            snprintf(why, why_cap, "timeout after %d ms", timeout_ms);
            return -1;
        }
        struct pollfd pfd = { .fd = fd, .events = events };
        int n = poll(&pfd, 1, (int)left);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) {
            snprintf(why, why_cap, "poll: %s", strerror(errno));
            return -1;
        }
    }
}

static int connect_to(const http_url *u, int64_t deadline, int timeout_ms, char *why,
                      size_t why_cap) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0) {
        snprintf(why, why_cap, "cannot resolve %s: %s", u->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) goto next;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno != EINPROGRESS) {
            snprintf(why, why_cap, "connection %s",
                     errno == ECONNREFUSED ? "refused" : strerror(errno));
            goto next;
        }
        if (wait_fd(fd, POLLOUT, deadline, timeout_ms, why, why_cap) < 0) goto next;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) break;
        snprintf(why, why_cap, "connection %s", err == ECONNREFUSED ? "refused" : strerror(err));
    next:
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *buf, size_t len, int64_t deadline, int timeout_ms,
                    char *why, size_t why_cap) {
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline, timeout_ms, why, why_cap) < 0) return -1;
        } else {
            snprintf(why, why_cap, "send: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Feeds `len` bytes to the parser, appending body pieces to resp. Returns 1 at the end of the
 * message, 0 for more, -1 with `why`. */
static int feed(corral_http_parser *p, const char *data, size_t len, http_response *resp,
                size_t *cap, char *why, size_t why_cap) {
    for (;;) {
        size_t used = 0;
        corral_buf body;
        int rc = corral_http_parser_execute(p, data, len, &used, &body);
        data += used;
        len -= used;
        if (rc == CORRAL_OK) return 0;
        if (rc == CORRAL_HTTP_GOT_END) return 1;
        if (rc == CORRAL_HTTP_GOT_HEAD) {
            const corral_http_msg *m = corral_http_parser_msg(p);
            resp->status = m->status;
            size_t rl =
                m->reason_len < sizeof resp->reason ? m->reason_len : sizeof resp->reason - 1;
            memcpy(resp->reason, m->reason, rl);
            resp->reason[rl] = '\0';
            continue;
        }
        if (rc == CORRAL_HTTP_GOT_BODY) {
            if (resp->body_len + body.len > HTTP_MAX_BODY) {
                snprintf(why, why_cap, "answer over %u MiB", HTTP_MAX_BODY >> 20);
                return -1;
            }
            if (resp->body_len + body.len + 1 > *cap) {
                size_t ncap = *cap ? *cap : 65536;
                while (ncap < resp->body_len + body.len + 1)
                    ncap *= 2;
                char *nb = realloc(resp->body, ncap);
                if (!nb) {
                    snprintf(why, why_cap, "out of memory");
                    return -1;
                }
                resp->body = nb;
                *cap = ncap;
            }
            memcpy(resp->body + resp->body_len, body.data, body.len);
            resp->body_len += body.len;
            continue;
        }
        snprintf(why, why_cap, "malformed HTTP answer (%s)", corral_http_strerror(rc));
        return -1;
    }
}

int http_request(const http_url *u, const char *method, const char *target, const char *token,
                 int timeout_ms, http_response *resp, char *why, size_t why_cap) {
    memset(resp, 0, sizeof *resp);
    int64_t deadline = now_ms() + timeout_ms;
    int fd = connect_to(u, deadline, timeout_ms, why, why_cap);
    if (fd < 0) return -1;
    char req[6144];
    bool v6 = strchr(u->host, ':') != NULL;
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: corral/%s\r\n"
                     "%s%s%sConnection: close\r\n\r\n",
                     method, target, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port,
                     corral_version(), token && *token ? "Authorization: Bearer " : "",
                     token && *token ? token : "", token && *token ? "\r\n" : "");
    size_t pmem_len = corral_http_parser_mem_size(NULL);
    void *pmem = malloc(pmem_len);
    corral_http_parser *p = NULL;
    int ret = -1;
    size_t cap = 0;
    if (n < 0 || (size_t)n >= sizeof req) {
        snprintf(why, why_cap, "request too long");
        goto done;
    }
    if (!pmem ||
        corral_http_parser_init(&p, pmem, pmem_len, CORRAL_HTTP_RESPONSE, NULL) != CORRAL_OK) {
        snprintf(why, why_cap, "out of memory");
        goto done;
    }
    if (strcmp(method, "HEAD") == 0) corral_http_parser_set_request_method(p, CORRAL_HTTP_HEAD);
    if (send_all(fd, req, (size_t)n, deadline, timeout_ms, why, why_cap) < 0) goto done;
    for (;;) {
        char buf[16384];
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline, timeout_ms, why, why_cap) < 0) goto done;
            continue;
        }
        if (got < 0) {
            snprintf(why, why_cap, "connection %s",
                     errno == ECONNRESET ? "reset" : strerror(errno));
            goto done;
        }
        if (got == 0) {
            int rc = corral_http_parser_finish(p);
            if (rc == CORRAL_HTTP_GOT_END && resp->status) break;
            snprintf(why, why_cap, resp->status ? "answer cut short" : "no HTTP answer");
            goto done;
        }
        int f = feed(p, buf, (size_t)got, resp, &cap, why, why_cap);
        if (f < 0) goto done;
        if (f == 1) break;
    }
    if (!resp->body && !(resp->body = malloc(1))) {
        snprintf(why, why_cap, "out of memory");
        goto done;
    }
    resp->body[resp->body_len] = '\0';
    ret = 0;
done:
    if (ret < 0) http_response_free(resp);
    corral_http_parser_deinit(p);
    free(pmem);
    close(fd);
    return ret;
}

void http_response_free(http_response *r) {
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

/* ---- Redis ---- */

static void redis_why(const redisContext *ctx, int timeout_ms, char *why, size_t why_cap) {
    if (!ctx) {
        snprintf(why, why_cap, "out of memory");
    } else if (strstr(ctx->errstr, "refused")) {
        snprintf(why, why_cap, "connection refused");
    } else if (strstr(ctx->errstr, "timed out") || strstr(ctx->errstr, "temporarily")) {
        snprintf(why, why_cap, "timeout after %d ms", timeout_ms);
    } else {
        snprintf(why, why_cap, "%s", ctx->errstr);
    }
}

/* Runs one command and checks for an error reply. Returns the reply, or NULL with `why`. */
static redisReply *command(redisContext *ctx, int argc, const char **argv, const char *what,
                           int timeout_ms, char *why, size_t why_cap) {
    redisReply *r = redisCommandArgv(ctx, argc, argv, NULL);
    if (!r) {
        redis_why(ctx, timeout_ms, why, why_cap);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        bool auth = strcmp(what, "AUTH") == 0 || strncmp(r->str, "NOAUTH", 6) == 0 ||
                    strncmp(r->str, "WRONGPASS", 9) == 0 || strstr(r->str, "invalid password") ||
                    strstr(r->str, "invalid username");
        snprintf(why, why_cap, "%s%s: %s", auth ? "auth failed in " : "", what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Splits "host[:port]" or "[v6][:port]" (the first `len` bytes of `h`) into host and port. */
static int split_host(const char *h, size_t len, char *host, size_t cap, int *port) {
    if (len >= cap) return -1;
    memcpy(host, h, len);
    host[len] = '\0';
    *port = 6379;
    char *colon = strrchr(host, ':');
    if (host[0] == '[') {
        char *rb = strchr(host, ']');
        if (!rb) return -1;
        colon = rb[1] == ':' ? rb + 1 : NULL;
        memmove(host, host + 1, (size_t)(rb - host - 1));
        host[rb - host - 1] = '\0';
    } else if (colon) {
        *colon = '\0';
    }
    if (colon) *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? 0 : -1;
}

/* Connects to one server of the parsed URL `o` (hostport NULL: its unix socket), then AUTH,
 * SELECT and PING. Returns the context, or NULL with `why`. */
static redisContext *connect_node(const corral_options *o, const char *hostport, int timeout_ms,
                                  char *why, size_t why_cap) {
    int64_t cto = timeout_ms > 0 ? timeout_ms : o->redis.connect_timeout_ms;
    int64_t mto = timeout_ms > 0 ? timeout_ms : o->redis.command_timeout_ms;
    struct timeval ctv = { .tv_sec = cto / 1000, .tv_usec = (cto % 1000) * 1000 };
    struct timeval mtv = { .tv_sec = mto / 1000, .tv_usec = (mto % 1000) * 1000 };
    redisContext *ctx = NULL;
    if (!hostport) {
        ctx = redisConnectUnixWithTimeout(o->redis.unix_path, ctv);
    } else {
        char host[256];
        int port;
        if (split_host(hostport, strlen(hostport), host, sizeof host, &port) < 0) {
            snprintf(why, why_cap, "bad host '%s'", hostport);
            return NULL;
        }
        ctx = redisConnectWithTimeout(host, port, ctv);
    }
    if (!ctx || ctx->err) {
        redis_why(ctx, (int)cto, why, why_cap);
        goto fail;
    }
    if (redisSetTimeout(ctx, mtv) != REDIS_OK) {
        redis_why(ctx, (int)mto, why, why_cap);
        goto fail;
    }
    redisReply *r;
    if (o->redis.password) {
        const char *av[3] = { "AUTH", o->redis.username ? o->redis.username : o->redis.password,
                              o->redis.password };
        r = command(ctx, o->redis.username ? 3 : 2, av, "AUTH", (int)mto, why, why_cap);
        if (!r) goto fail;
        freeReplyObject(r);
    }
    if (o->redis.db) {
        char db[16];
        snprintf(db, sizeof db, "%u", o->redis.db);
        const char *av[2] = { "SELECT", db };
        r = command(ctx, 2, av, "SELECT", (int)mto, why, why_cap);
        if (!r) goto fail;
        freeReplyObject(r);
    }
    const char *ping[1] = { "PING" };
    r = command(ctx, 1, ping, "PING", (int)mto, why, why_cap);
    if (!r) goto fail;
    freeReplyObject(r);
    return ctx;
fail:
    if (ctx) redisFree(ctx);
    return NULL;
}

/* Parses `url` into `o` (strings in `*buf`, to free). Returns 0, or -1 with `why`. */
static int parse_redis_url(const char *url, corral_options *o, char **buf, char *why,
                           size_t why_cap) {
    corral_options_init(o);
    size_t cap = strlen(url) + 1;
    corral_error err;
    if (!(*buf = malloc(cap))) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    if (corral_options_parse_url(o, url, *buf, cap, &err) != CORRAL_OK) {
        snprintf(why, why_cap, "%s", err.msg);
        return -1;
    }
    if (!o->store || strcmp(o->store, "redis") != 0) {
        snprintf(why, why_cap, "not a redis:// URL");
        return -1;
    }
    return 0;
}

/* A seed of a cluster URL that answered: is it a cluster node? NULL with `why` when it is not. */
static redisContext *check_cluster_node(redisContext *ctx, const char *seed, int timeout_ms,
                                        char *why, size_t why_cap) {
    const char *av[2] = { "CLUSTER", "MYID" };
    char err[200];
    redisReply *r = command(ctx, 2, av, "CLUSTER MYID", timeout_ms, err, sizeof err);
    if (r) {
        freeReplyObject(r);
        return ctx;
    }
    if (strstr(err, "cluster support disabled"))
        snprintf(why, why_cap, "%s is not a cluster node (cluster support disabled): use redis://",
                 seed);
    else
        snprintf(why, why_cap, "%s: %s", seed, err);
    redisFree(ctx);
    return NULL;
}

redisContext *cli_redis_connect(const char *url, int timeout_ms, char *why, size_t why_cap) {
    corral_options o;
    char *buf = NULL;
    redisContext *ctx = NULL;
    if (parse_redis_url(url, &o, &buf, why, why_cap) < 0) goto done;
    const char *h = o.redis.hosts ? o.redis.hosts : "127.0.0.1:6379";
    if (o.redis.unix_path) {
        ctx = connect_node(&o, NULL, timeout_ms, why, why_cap);
    } else if (!o.redis.cluster) {
        /* The first host: writes and SCAN go there. */
        char host[272];
        size_t hl = strcspn(h, ",");
        snprintf(host, sizeof host, "%.*s", (int)(hl < sizeof host ? hl : sizeof host - 1), h);
        ctx = connect_node(&o, host, timeout_ms, why, why_cap);
    } else {
        /* Any seed will do, as for the store: each in turn until one answers; when none does,
         * every seed's reason. A seed that refuses the credentials ends the search. */
        size_t used = (size_t)snprintf(why, why_cap, "no seed answered");
        bool first = true;
        int mto = timeout_ms > 0 ? timeout_ms : (int)o.redis.command_timeout_ms;
        while (!ctx && *h) {
            char seed[272], one[200];
            size_t hl = strcspn(h, ",");
            snprintf(seed, sizeof seed, "%.*s", (int)(hl < sizeof seed ? hl : sizeof seed - 1), h);
            h += hl + (h[hl] == ',');
            ctx = connect_node(&o, seed, timeout_ms, one, sizeof one);
            if (ctx) {
                ctx = check_cluster_node(ctx, seed, mto, why, why_cap);
                if (!ctx) break; /* a node that answers, but not as a cluster node */
            } else if (strncmp(one, "auth failed", 11) == 0) {
                /* It answered: the others would refuse the same credentials. */
                snprintf(why, why_cap, "%s: %s", seed, one);
                break;
            } else if (used < why_cap) {
                used += (size_t)snprintf(why + used, why_cap - used, "%s %s: %s", first ? ":" : ";",
                                         seed, one);
                first = false;
            }
        }
    }
done:
    free(buf);
    return ctx;
}

redisContext *cli_redis_connect_node(const char *url, const char *hostport, int timeout_ms,
                                     char *why, size_t why_cap) {
    corral_options o;
    char *buf = NULL;
    redisContext *ctx = NULL;
    if (parse_redis_url(url, &o, &buf, why, why_cap) == 0)
        ctx = connect_node(&o, hostport, timeout_ms, why, why_cap);
    free(buf);
    return ctx;
}

int cli_cluster_primaries(const char *url, int timeout_ms, cli_node *out, size_t cap, char *why,
                          size_t why_cap) {
    redisContext *ctx = cli_redis_connect(url, timeout_ms, why, why_cap);
    if (!ctx) return -1;
    const char *av[2] = { "CLUSTER", "SLOTS" };
    redisReply *r = command(ctx, 2, av, "CLUSTER SLOTS", timeout_ms, why, why_cap);
    corral__redis_slot_map *map = r ? malloc(sizeof *map) : NULL;
    corral_error err;
    int n = -1;
    if (r && !map) {
        snprintf(why, why_cap, "out of memory");
    } else if (map && corral__redis_slots_parse(r, ctx->tcp.host, map, &err) != CORRAL_OK) {
        snprintf(why, why_cap, "%s", err.msg);
    } else if (map && map->n_shards == 0) {
        snprintf(why, why_cap, "the cluster serves no slot yet (CLUSTER SLOTS is empty)");
    } else if (map && map->n_shards > cap) {
        snprintf(why, why_cap, "more than %zu primaries", cap);
    } else if (map) {
        for (size_t i = 0; i < map->n_shards; i++) {
            const corral__redis_addr *a = &map->shards[i].primary;
            bool v6 = strchr(a->name, ':') != NULL;
            snprintf(out[i], sizeof out[i], "%s%s%s:%d", v6 ? "[" : "", a->name, v6 ? "]" : "",
                     a->port);
        }
        n = (int)map->n_shards;
    }
    free(map);
    if (r) freeReplyObject(r);
    redisFree(ctx);
    return n;
}

bool cli_read_failed(corral *c) {
    char *text;
    size_t len;
    if (corral_metrics_write(c, &text, &len) != CORRAL_OK) return false;
    static const char name[] = "\ncorral_redis_failed_reads_total ";
    const char *p = strstr(text, name);
    bool failed = p && strtoull(p + sizeof name - 1, NULL, 10) > 0;
    corral_free(c, text);
    return failed;
}

int read_token(const char *file, char *out, size_t cap, char *why, size_t why_cap) {
    out[0] = '\0';
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f) {
            snprintf(why, why_cap, "cannot read token file %s: %s", file, strerror(errno));
            return -1;
        }
        if (!fgets(out, (int)cap, f)) out[0] = '\0';
        fclose(f);
        out[strcspn(out, "\r\n")] = '\0';
        return 0;
    }
    const char *env = getenv("CORRAL_ADMIN_TOKEN");
    if (env) snprintf(out, cap, "%s", env);
    return 0;
}
