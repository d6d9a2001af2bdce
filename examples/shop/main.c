/*
 * main.c - corral-shop's entry point: flags, the loop and the signals.
 *
 *   corral-shop [--listen HOST:PORT] [--admin HOST:PORT]
 *
 *   --listen       where the shop serves (default 127.0.0.1:8000; port 0 picks a free one)
 *   --admin        corral-proxy's admin listener, where a save purges its product's surrogate
 *                  key (default: none, and saves purge nothing)
 *   $CORRAL_ADMIN_TOKEN  the admin's bearer token, when it has one (the environment, as
 *                  corral-proxy and the corral CLI take it: argv is visible to every user)
 *
 * Once listening, it prints one line on stdout, "corral-shop: listening on http://HOST:PORT/"
 * (scripts/run-shop reads the port from it). SIGTERM and SIGINT stop it: it stops accepting,
 * closes idle connections, lets replies in progress finish, and exits 0.
 *
 * Threads: one, the uv loop's. The shop lives on main's stack.
 */
#include "shop.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f) {
    fprintf(f, "usage: corral-shop [--listen HOST:PORT] [--admin HOST:PORT]\n"
               "  --listen       where the shop serves (default 127.0.0.1:8000; port 0: any)\n"
               "  --admin        corral-proxy's admin listener, purged on every save\n"
               "  $CORRAL_ADMIN_TOKEN  the admin's bearer token, if it has one\n"
               "See examples/shop/README.md.\n");
}

/* Resolves "HOST:PORT" (HOST may be "[v6]") into `out`; 0 or a negative uv error code. */
static int resolve(uv_loop_t *loop, const char *hostport, struct sockaddr_storage *out) {
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || colon[1] == '\0') return UV_EINVAL;
    char host[256];
    const char *h = hostport;
    size_t hlen = (size_t)(colon - hostport);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof host) return UV_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    uv_getaddrinfo_t req;
    int rc = uv_getaddrinfo(loop, &req, NULL, host, colon + 1, &hints);
    if (rc < 0) return rc;
    memset(out, 0, sizeof *out);
    memcpy(out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

/* ---- Signals ---- */

typedef struct sigs {
    shop *s;
    uv_signal_t term, intr;
} sigs;

static void on_stop_signal(uv_signal_t *h, int signum) {
    sigs *sg = h->data;
    if (sg->s->stopping) return;
    fprintf(stderr, "corral-shop: %s: stopping\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    shop_stop(sg->s);
    /* The handles stay, so a second signal is absorbed too, but no longer keep the loop
     * running: it ends when the last connection and purge are done. */
    uv_unref((uv_handle_t *)&sg->term);
    uv_unref((uv_handle_t *)&sg->intr);
}

static void on_closed(uv_handle_t *h) {
    (void)h;
}

/* The address the listener got (port 0 picks one), as "HOST:PORT" into `out`. */
static int bound_address(shop *s, char *out, size_t cap) {
    struct sockaddr_storage sa;
    int len = sizeof sa;
    int rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &len);
    if (rc < 0) return rc;
    char host[64];
    unsigned port;
    if (sa.ss_family == AF_INET6) {
        rc = uv_ip6_name((struct sockaddr_in6 *)&sa, host, sizeof host);
        port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    } else {
        rc = uv_ip4_name((struct sockaddr_in *)&sa, host, sizeof host);
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    }
    if (rc < 0) return rc;
    int n = snprintf(out, cap, sa.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
    return n < 0 || (size_t)n >= cap ? UV_ENOBUFS : 0;
}

int main(int argc, char **argv) {
    const char *listen_at = "127.0.0.1:8000", *admin = NULL;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--listen") && has_value) {
            listen_at = argv[++i];
        } else if (!strcmp(argv[i], "--admin") && has_value) {
            admin = argv[++i];
        } else {
            fprintf(stderr, "corral-shop: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    /* A client that closes while we write must not kill the process. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        perror("corral-shop: sigaction");
        return 1;
    }

    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        fprintf(stderr, "corral-shop: %s\n", uv_strerror(rc));
        return 1;
    }
    int code = 1;
    shop s;
    shop_init(&s, &loop, (int64_t)time(NULL));
    sigs sg = { .s = &s };
    bool term_ready = false, intr_ready = false;
    struct sockaddr_storage listen_addr;
    if (admin) {
        int n = snprintf(s.admin_authority, sizeof s.admin_authority, "%s", admin);
        if (n < 0 || (size_t)n >= sizeof s.admin_authority ||
            (rc = resolve(&loop, admin, &s.admin_addr)) < 0) {
            fprintf(stderr, "corral-shop: bad --admin '%s': %s\n", admin,
                    n < 0 || (size_t)n >= sizeof s.admin_authority ? "too long" : uv_strerror(rc));
            code = 2;
            goto done;
        }
        s.has_admin = true;
        const char *token = getenv("CORRAL_ADMIN_TOKEN");
        s.admin_token = token && *token ? token : NULL;
    }
    if ((rc = resolve(&loop, listen_at, &listen_addr)) < 0) {
        fprintf(stderr, "corral-shop: bad --listen '%s': %s\n", listen_at, uv_strerror(rc));
        code = 2;
        goto done;
    }
    char where[96];
    if ((rc = shop_listen(&s, (const struct sockaddr *)&listen_addr)) < 0 ||
        (rc = bound_address(&s, where, sizeof where)) < 0) {
        fprintf(stderr, "corral-shop: cannot listen on %s: %s\n", listen_at, uv_strerror(rc));
        goto done;
    }
    if ((rc = uv_signal_init(&loop, &sg.term)) == 0) term_ready = true;
    if (rc == 0 && (rc = uv_signal_init(&loop, &sg.intr)) == 0) intr_ready = true;
    if (rc < 0) {
        fprintf(stderr, "corral-shop: signals: %s\n", uv_strerror(rc));
        goto done;
    }
    sg.term.data = sg.intr.data = &sg;
    if ((rc = uv_signal_start(&sg.term, on_stop_signal, SIGTERM)) < 0 ||
        (rc = uv_signal_start(&sg.intr, on_stop_signal, SIGINT)) < 0) {
        fprintf(stderr, "corral-shop: signals: %s\n", uv_strerror(rc));
        goto done;
    }
    if (s.has_admin)
        printf("corral-shop: listening on http://%s/ (saves purge at http://%s/)\n", where, admin);
    else
        printf("corral-shop: listening on http://%s/ (no --admin: saves purge nothing)\n", where);
    if (fflush(stdout) != 0) goto done;
    uv_run(&loop, UV_RUN_DEFAULT);
    code = 0;

done:
    shop_stop(&s);
    if (term_ready) uv_close((uv_handle_t *)&sg.term, on_closed);
    if (intr_ready) uv_close((uv_handle_t *)&sg.intr, on_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) < 0) {
        fprintf(stderr, "corral-shop: handles left open at exit\n");
        code = 1;
    }
    s.magic = 0;
    return code;
}
