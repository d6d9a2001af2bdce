/*
 * listen.c - the workers' listening sockets on the shared port. Each worker has its own socket
 * with SO_REUSEPORT, so the kernel spreads connections over the workers without an acceptor
 * thread (libuv 1.44 has no flag for it: the socket is made by hand, given to uv_tcp_open).
 *
 * SO_REUSEPORT alone would let any process of the same user join the group, so a second
 * corral-proxy started on a taken port would take part of its traffic. Worker 0 therefore binds
 * first WITHOUT SO_REUSEPORT, which fails with EADDRINUSE when any other socket holds the
 * address, and sets SO_REUSEPORT only after its bind (Linux checks the option at bind time and
 * forms the group at listen), so the process's other workers can join it and nobody else's
 * exclusive bind can. Another program that binds with SO_REUSEPORT itself as the same user could
 * still join: corral-proxy never does.
 *
 * Threads: px_listen runs on the main thread at startup, before the worker's loop runs.
 */
/* SO_REUSEPORT is a Linux (BSD) extension that _POSIX_C_SOURCE alone hides. */
#define _DEFAULT_SOURCE
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/socket.h>

#define BACKLOG 1024

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
    return uv_listen((uv_stream_t *)&w->listener, BACKLOG, px_conn_accept);
}

int px_listen(px_worker *w) {
    return px_from_uv(listen_uv(w));
}
