/*
 * listen.c - the workers' listening sockets on the shared port, and admission: a connection
 * within limits.max_connections (all workers) and max_worker_connections goes to client.c, one
 * beyond them is answered 503 and closed here. Each worker has its own socket with
 * SO_REUSEPORT, so the kernel spreads connections over the workers without an acceptor thread
 * (libuv 1.44 has no flag for it: the socket is made by hand, given to uv_tcp_open).
 *
 * SO_REUSEPORT alone would let any process of the same user join the group, so a second
 * corral-proxy started on a taken port would take part of its traffic. Worker 0 therefore binds
 * first WITHOUT SO_REUSEPORT, which fails with EADDRINUSE when any other socket holds the
 * address, and sets SO_REUSEPORT only after its bind (Linux checks the option at bind time and
 * forms the group at listen), so the process's other workers can join it and nobody else's
 * exclusive bind can. Another program that binds with SO_REUSEPORT itself as the same user could
 * still join: corral-proxy never does.
 *
 * Threads: px_listen runs on the main thread at startup, before the worker's loop runs; the
 * rest on the worker's loop thread (px.clients is read by every worker: a relaxed atomic).
 */
/* SO_REUSEPORT is a Linux (BSD) extension that _POSIX_C_SOURCE alone hides. */
#define _DEFAULT_SOURCE
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#define BACKLOG   1024
#define LINGER_MS 2000

/* The answer to a connection over the limits. */
static const char REFUSED[] = "HTTP/1.1 503 Service Unavailable\r\n"
                              "Content-Type: text/plain; charset=utf-8\r\n"
                              "Content-Length: 21\r\n"
                              "Retry-After: 1\r\n"
                              "Connection: close\r\n\r\n"
                              "too many connections\n";

/* A connection refused over the limits: answered, shut down, its input discarded until EOF
 * or LINGER_MS (so the client reads the 503 instead of a reset), then closed. */
typedef struct refusal {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    int handles;
    bool timer_ok;
    char discard[512];
} refusal;

static void on_refusal_closed(uv_handle_t *h) {
    refusal *r = h->data;
    if (--r->handles == 0) free(r);
}

static void refusal_close(refusal *r) {
    if (!uv_is_closing((uv_handle_t *)&r->tcp)) uv_close((uv_handle_t *)&r->tcp, on_refusal_closed);
    if (r->timer_ok && !uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, on_refusal_closed);
}

static void on_refusal_timer(uv_timer_t *t) {
    refusal_close(t->data);
}

static void on_refusal_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    refusal *r = h->data;
    *buf = uv_buf_init(r->discard, sizeof r->discard);
}

static void on_refusal_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    if (nread < 0) refusal_close(s->data);
}

static void on_refusal_shutdown(uv_shutdown_t *req, int status) {
    refusal *r = req->data;
    if (status < 0 || uv_timer_start(&r->timer, on_refusal_timer, LINGER_MS, 0) < 0 ||
        uv_read_start((uv_stream_t *)&r->tcp, on_refusal_alloc, on_refusal_read) < 0)
        refusal_close(r);
}

/* Accepts the connection and answers 503. */
static void refuse(px_worker *w, uv_stream_t *server) {
    atomic_fetch_add_explicit(&w->metrics->rejected, 1, memory_order_relaxed);
    refusal *r = calloc(1, sizeof *r);
    if (!r) return; /* as px_conn_accept: it waits in the backlog */
    if (uv_tcp_init(&w->loop, &r->tcp) < 0) {
        free(r);
        return;
    }
    r->tcp.data = r;
    r->handles = 1;
    r->timer_ok = uv_timer_init(&w->loop, &r->timer) == 0;
    r->handles += r->timer_ok;
    r->timer.data = r;
    r->shut.data = r;
    uv_buf_t b = uv_buf_init((char *)REFUSED, sizeof REFUSED - 1);
    if (uv_accept(server, (uv_stream_t *)&r->tcp) < 0 || !r->timer_ok ||
        uv_try_write((uv_stream_t *)&r->tcp, &b, 1) < 0 ||
        uv_shutdown(&r->shut, (uv_stream_t *)&r->tcp, on_refusal_shutdown) < 0)
        refusal_close(r);
}

/* The listener's callback: a client connection within the limits is accepted (client.c),
 * one beyond them refused with 503. The total may be passed by one connection per worker for
 * an instant (the workers check it concurrently). */
static void on_connection(uv_stream_t *server, int status) {
    px_worker *w = server->data;
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    if (status < 0) {
        fprintf(stderr, "corral-proxy: accept: %s\n", uv_strerror(status));
        return;
    }
    const px_config *cfg = w->cfg;
    unsigned total = atomic_load_explicit(&w->px->clients, memory_order_relaxed);
    int64_t mine = atomic_load_explicit(&w->metrics->connections, memory_order_relaxed);
    if (total >= cfg->max_connections ||
        (cfg->max_worker_connections && mine >= (int64_t)cfg->max_worker_connections))
        refuse(w, server);
    else
        px_conn_accept(w, server);
}

/* px_listen in libuv's codes. */
static int listen_uv(px_worker *w) {
    const px_config *cfg = w->cfg;
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    int port = atoi(cfg->listen_port);
    if (uv_ip4_addr(cfg->listen_host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(cfg->listen_host, port, (struct sockaddr_in6 *)&sa) != 0)
        return UV_EINVAL;
    int fd = socket(sa.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    int one = 1;
    socklen_t salen =
        sa.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    /* Worker 0: an exclusive bind first, then the group (above). */
    bool first = w->id == 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (!first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&sa, salen) != 0 ||
        (first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)) {
        int e = -errno;
        if (close(fd) != 0) e = -errno;
        return e;
    }
    int rc = uv_tcp_init(&w->loop, &w->listener);
    if (rc < 0) {
        if (close(fd) != 0) rc = -errno;
        return rc;
    }
    w->listener.data = w;
    if ((rc = uv_tcp_open(&w->listener, fd)) < 0) {
        if (close(fd) != 0) rc = -errno;
        return rc;
    }
    return uv_listen((uv_stream_t *)&w->listener, BACKLOG, on_connection);
}

int px_listen(px_worker *w) {
    return px_from_uv(listen_uv(w));
}
