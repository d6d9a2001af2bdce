/*
 * main.c - corral-proxy's entry point: reads the configuration, opens the cache, starts one
 * worker thread per core (each a uv loop with its own SO_REUSEPORT listener, connections and
 * origin pool) and runs the main loop, which owns the admin listener and the signals. The top
 * of the proxy: it gives the loop layer (worker.c, client.c) the handlers through which that
 * layer calls the files above it.
 *
 *   corral-proxy --origin http://127.0.0.1:8000 --listen 127.0.0.1:8080
 *                [--admin 127.0.0.1:8081] [--store mem://...|redis://...] [--config file.ini]
 *                [--threads N] [--access-log -|off|PATH] [--route 'PREFIX key=value ...']
 *                [--admin-token-file FILE] [--set SECTION.KEY=VALUE]
 * Options take their value as the next argument or after '=' (--origin=http://...). A bad value
 * is reported with its flag or file:line, key and reason (px_error), and exits 2.
 *
 * Signals (uv_signal on the main loop, so no handler runs in signal context):
 *   SIGTERM, SIGINT  stop accepting, let in-flight requests finish (at most shutdown_timeout),
 *                    exit 0.
 *   SIGHUP           reload the config file (and re-apply the flags); parts that cannot change
 *                    at run time (addresses, store, threads) must stay the same or the reload
 *                    is refused. The new snapshot goes to each worker's inbox.
 *
 * Threads: the main thread owns `px` (the process state; it lives on main's stack, so the
 * binary has no global mutable state), the admin listener and the signals. Workers own
 * everything under their loop; the main thread writes to a worker only through its inbox
 * (worker.c, under inbox_lock) and reads its metrics as relaxed atomics.
 */
#include "proxy.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

/* ---- Workers ---- */

/* A stopping worker stops accepting and closes what is idle. */
static void worker_stop(px_worker *w) {
    px_clients_stop(w);
    px_origin_close_idle(w);
}

/* Past the shutdown deadline, what is left is closed. */
static void worker_abort(px_worker *w) {
    px_fetches_abort(w);
    px_clients_abort(w);
}

/* What the loop layer (worker.c, client.c) calls above it: the request state machine, delivery,
 * fetches and the origin pool. */
/* Nothing is left but the idle origin connections and the refresh flights held open. */
static void worker_done(px_worker *w) {
    px_fleet_refreshes_end(w);
    px_origin_close_idle(w);
}

static const px_handlers handlers = {
    .request = px_cache_request,
    .wait_expired = px_cache_wait_expired,
    .request_release = px_request_release,
    .woken = px_cache_woken,
    .stream = px_cache_stream,
    .stream_stop = px_cache_stream_stop,
    .fetch_body = px_fetch_body,
    .fetch_body_end = px_fetch_body_end,
    .fetch_detach = px_fetch_detach,
    .fetch_unpause = px_fetch_unpause,
    .stop = worker_stop,
    .abort = worker_abort,
    .done = worker_done,
};

/* Sets up worker `w` (loop, inbox, timers, listener) before its thread starts. */
static int worker_init(px_proxy *px, px_worker *w, unsigned id,
                       const struct sockaddr_storage *origin) {
    int rc = px_worker_init(px, w, id, &handlers, origin);
    return rc < 0 ? rc : px_listen(w);
}

static void worker_main(void *arg) {
    px_worker *w = arg;
    int rc = uv_run(&w->loop, UV_RUN_DEFAULT);
    (void)rc; /* 0 once every handle is closed: the worker is done */
}

/* ---- Signals ---- */

static void on_handle_closed(uv_handle_t *h) {
    (void)h;
}

typedef struct sigs {
    px_proxy *px;
    uv_signal_t term, intr, hup;
    bool stopping;
} sigs;

static void on_stop_signal(uv_signal_t *s, int signum) {
    sigs *sg = s->data;
    px_proxy *px = sg->px;
    if (sg->stopping) return;
    sg->stopping = true;
    fprintf(stderr, "corral-proxy: %s: draining\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    for (unsigned i = 0; i < px->n_workers; i++) {
        px_worker *w = &px->workers[i];
        uv_mutex_lock(&w->inbox_lock);
        w->inbox_stop = true;
        px_worker_signal_locked(w);
        uv_mutex_unlock(&w->inbox_lock);
    }
    if (px->admin) px_admin_stop(px->admin);
    px->admin = NULL;
    uv_close((uv_handle_t *)&sg->term, on_handle_closed);
    uv_close((uv_handle_t *)&sg->intr, on_handle_closed);
    uv_close((uv_handle_t *)&sg->hup, on_handle_closed);
}

static void assign_slots(px_proxy *px, px_config *cfg) {
    for (size_t i = 0; i < cfg->n_routes; i++)
        cfg->routes[i].slot = px_metrics_slot(&px->slots, cfg->routes[i].name);
}

static void on_hup(uv_signal_t *s, int signum) {
    (void)signum;
    sigs *sg = s->data;
    px_proxy *px = sg->px;
    px_error err;
    px_config *cfg = px_config_load(px->flags, &err);
    if (!cfg) {
        fprintf(stderr, "corral-proxy: %s\ncorral-proxy: SIGHUP: configuration not reloaded\n",
                err.msg);
        return;
    }
    if (!px_config_compatible(px->cfg, cfg) || px_config_open_log(cfg) < 0 ||
        px_alog_reopen(px->alog, cfg) < 0) {
        px_config_unref(cfg);
        fprintf(stderr, "corral-proxy: SIGHUP: configuration not reloaded\n");
        return;
    }
    assign_slots(px, cfg);
    for (unsigned i = 0; i < px->n_workers; i++) {
        px_worker *w = &px->workers[i];
        uv_mutex_lock(&w->inbox_lock);
        px_config *old = w->inbox_cfg;
        w->inbox_cfg = px_config_ref(cfg);
        px_worker_signal_locked(w);
        uv_mutex_unlock(&w->inbox_lock);
        px_config_unref(old);
    }
    px_config_unref(px->cfg);
    px->cfg = cfg;
    fprintf(stderr, "corral-proxy: SIGHUP: configuration reloaded (%zu routes)\n", cfg->n_routes);
}

/* ---- Startup ---- */

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: corral-proxy --origin http://HOST:PORT [--listen HOST:PORT] [--admin HOST:PORT]\n"
        "                    [--store mem://...|redis://...] [--config FILE.ini] [--threads N]\n"
        "                    [--access-log -|off|PATH] [--access-log-format corral|combined|json]\n"
        "                    [--admin-token-file FILE] (or $CORRAL_ADMIN_TOKEN)\n"
        "                    [--route 'PREFIX key=value ...'] [--set SECTION.KEY=VALUE]\n"
        "The configuration keys, the admin listener (PURGE, /metrics, /dashboard) and the\n"
        "access log: " CORRAL_DOCDIR "/proxy.md; an example configuration:\n" CORRAL_DOCDIR
        "/examples/proxy.ini\n");
}

static int resolve_origin(uv_loop_t *loop, const px_config *cfg, struct sockaddr_storage *out) {
    uv_getaddrinfo_t req;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(loop, &req, NULL, cfg->origin_host, cfg->origin_port, &hints);
    if (rc < 0) {
        fprintf(stderr, "corral-proxy: cannot resolve origin %s: %s\n", cfg->origin_host,
                uv_strerror(rc));
        return -1;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

/* Raises the open-file limit to what max_connections needs (each client connection is a
 * descriptor; the rest: listeners, origin connections, the store, the log) when the hard limit
 * allows it, and says so when it does not. */
static void raise_fd_limit(const px_config *cfg) {
    struct rlimit rl;
    rlim_t need = (rlim_t)cfg->max_connections + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need) return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need ? rl.rlim_max : need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
        rl.rlim_cur < need)
        fprintf(stderr,
                "corral-proxy: warning: the open-file limit (%llu) is below max_connections + "
                "1024: beyond it accepts fail (EMFILE); raise ulimit -n or lower "
                "limits.max_connections\n",
                (unsigned long long)rl.rlim_cur);
}

/* The bounds an operator relies on, once at startup. */
static void print_limits(const px_config *cfg, unsigned workers) {
    char per[48] = "no bound per worker";
    if (cfg->max_worker_connections)
        snprintf(per, sizeof per, "at most %u per worker", cfg->max_worker_connections);
    size_t buf = px_cbuf_bytes(cfg);
    fprintf(stderr,
            "corral-proxy: limits: %u client connections (%s, %u workers); beyond them: 503 and "
            "close\n"
            "corral-proxy: limits: %zu bytes of buffers per connection reading a request (none "
            "while idle), at most %zu MiB in all; a streamed answer queues at most ~1 MiB\n",
            cfg->max_connections, per, workers, buf,
            (buf * ((size_t)cfg->max_connections + (size_t)workers * PX_SPARE_BUFS)) >> 20);
}

/* Closes the handles of a worker whose thread never ran, by running its loop here. */
static void drain_unstarted(px_worker *w) {
    w->stopping = true;
    px_clients_stop(w);
    px_worker_maybe_done(w);
    if (uv_run(&w->loop, UV_RUN_DEFAULT) != 0)
        fprintf(stderr, "corral-proxy: worker %u: handles left open\n", w->id);
}

/* The store's state callback (corral_store_state_fn): one line when a server of the store goes
 * down, with the reason, and one when it is back; never one per request. Runs on whichever
 * thread's store call saw the change, often a worker's: the line goes to stderr through the
 * access log's writer (px_alog_note), so a stderr that blocks never holds up a worker. */
static void on_store_state(void *ctx, const corral_server_status *st) {
    px_proxy *px = ctx;
    char line[512];
    int n = st->is_down
                ? snprintf(line, sizeof line,
                           "corral-proxy: store %s down: %s (%s); serving without the cache\n",
                           st->server, st->msg, corral_store_reason_name(st->reason))
                : snprintf(line, sizeof line, "corral-proxy: store %s back up\n", st->server);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) { /* cut: the line still ends */
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    px_alog_note(px->alog, line, (size_t)n);
}

/* corral_open with the state callback set. */
static int open_store(px_proxy *px, corral_error *err) {
    const char *url = px->cfg->store_url;
    size_t cap = strlen(url) + 1;
    char *buf = malloc(cap);
    if (!buf) {
        err->code = CORRAL_ENOMEM;
        snprintf(err->msg, sizeof err->msg, "out of memory");
        return CORRAL_ENOMEM;
    }
    corral_options o;
    corral_options_init(&o);
    int rc = corral_options_parse_url(&o, url, buf, cap, err);
    o.on_store_state = on_store_state;
    o.store_state_ctx = px;
    if (rc == CORRAL_OK) rc = corral_open_opts(&px->cache, &o, err);
    free(buf);
    return rc;
}

static int run(px_proxy *px) {
    int code = 1;
    uv_loop_t main_loop;
    if (uv_loop_init(&main_loop) < 0) return 1;
    struct sockaddr_storage origin;
    if (resolve_origin(&main_loop, px->cfg, &origin) < 0) goto close_loop;

    /* The store URL may hold a password: every line shows it redacted. */
    char store_shown[sizeof px->cfg->store_url];
    corral_url_redact(px->cfg->store_url, store_shown, sizeof store_shown);
    corral_error err;
    if (open_store(px, &err) < 0) {
        fprintf(stderr, "corral-proxy: store %s: %s\n", store_shown, err.msg);
        goto close_loop;
    }
    raise_fd_limit(px->cfg);
    unsigned n = px->cfg->threads ? px->cfg->threads : uv_available_parallelism();
    if (n == 0) n = 1;
    px->workers = calloc(n, sizeof *px->workers);
    px->metrics = calloc(n + 1, sizeof *px->metrics);
    if (px->metrics) px->admin_metrics = &px->metrics[n];
    if (!px->workers || !px->metrics) {
        fprintf(stderr, "corral-proxy: out of memory\n");
        goto close_cache;
    }
    /* `ready` counts the workers whose loop and handles are set up (the last one may have
     * failed to listen): those are the ones to close on every path. */
    unsigned ready = 0;
    bool listening = true;
    for (; ready < n && listening; ready++) {
        px_worker *w = &px->workers[ready];
        int rc = worker_init(px, w, ready, &origin);
        if (rc < 0) {
            fprintf(stderr, "corral-proxy: cannot listen on %s:%s: %s\n", px->cfg->listen_host,
                    px->cfg->listen_port, px_strerror(rc));
            listening = false;
            if (!w->handles_ready) break; /* nothing of it to close */
            continue;
        }
        if (ready == 0) {
            /* A port of 0 picks one; the other workers share it (SO_REUSEPORT). */
            struct sockaddr_storage sa;
            int len = sizeof sa;
            if (uv_tcp_getsockname(&w->listener, (struct sockaddr *)&sa, &len) == 0) {
                unsigned port = sa.ss_family == AF_INET6
                                    ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&sa)->sin_port);
                int wn = snprintf(px->cfg->listen_port, sizeof px->cfg->listen_port, "%u", port);
                (void)PX_NEVER(wn < 0 || (size_t)wn >= sizeof px->cfg->listen_port);
            }
        }
    }
    px->n_workers = ready;
    sigs sg = { .px = px };
    if (!listening) goto stop_workers;
    if (px->cfg->admin_host[0] && px_admin_start(px, &main_loop, &px->admin) < 0) goto stop_workers;
    if (uv_signal_init(&main_loop, &sg.term) < 0 || uv_signal_init(&main_loop, &sg.intr) < 0 ||
        uv_signal_init(&main_loop, &sg.hup) < 0)
        goto stop_workers;
    sg.term.data = sg.intr.data = sg.hup.data = &sg;
    if (uv_signal_start(&sg.term, on_stop_signal, SIGTERM) < 0 ||
        uv_signal_start(&sg.intr, on_stop_signal, SIGINT) < 0 ||
        uv_signal_start(&sg.hup, on_hup, SIGHUP) < 0)
        goto stop_workers;
    unsigned running = 0;
    for (; running < ready; running++) {
        if (uv_thread_create(&px->workers[running].thread, worker_main, &px->workers[running]) <
            0) {
            fprintf(stderr, "corral-proxy: cannot start worker %u\n", running);
            px->exit_code = 1;
            break;
        }
    }
    px->n_workers = running; /* the signal path stops the running ones */
    if (running < ready) on_stop_signal(&sg.term, SIGTERM);
    fprintf(stderr,
            "corral-proxy %s: listening on http://%s:%s/ (%u threads), origin %s, store %s\n",
            corral_version(), px->cfg->listen_host, px->cfg->listen_port, px->n_workers,
            px->cfg->origin_authority, store_shown);
    print_limits(px->cfg, px->n_workers);
    if (px->cfg->admin_host[0])
        fprintf(stderr, "corral-proxy: admin (PURGE, /metrics) on http://%s:%s/\n",
                px->cfg->admin_host, px->cfg->admin_port);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < px->n_workers; i++) {
        if (uv_thread_join(&px->workers[i].thread) != 0)
            fprintf(stderr, "corral-proxy: cannot join worker %u\n", i);
    }
    for (unsigned i = px->n_workers; i < ready; i++)
        drain_unstarted(&px->workers[i]);
    px->n_workers = ready;
    code = px->exit_code;
    goto close_workers;

stop_workers:
    /* Startup failed before any worker thread ran: close their handles on this thread. */
    for (unsigned i = 0; i < ready; i++)
        drain_unstarted(&px->workers[i]);
    if (px->admin) px_admin_stop(px->admin);
    px->admin = NULL;
    uv_signal_t *sig_handles[] = { &sg.term, &sg.intr, &sg.hup };
    for (size_t i = 0; i < 3; i++) {
        if (sig_handles[i]->loop && !uv_is_closing((uv_handle_t *)sig_handles[i]))
            uv_close((uv_handle_t *)sig_handles[i], on_handle_closed);
    }
    uv_run(&main_loop, UV_RUN_NOWAIT);
    px->n_workers = ready;
close_workers:
    for (unsigned i = 0; i < px->n_workers; i++) {
        px_worker *w = &px->workers[i];
        if (uv_loop_close(&w->loop) < 0) fprintf(stderr, "corral-proxy: worker %u: loop busy\n", i);
        uv_mutex_destroy(&w->inbox_lock);
        px_config_unref(w->cfg);
        px_config_unref(w->inbox_cfg);
        w->magic = 0;
    }
close_cache:
    free(px->workers);
    free(px->metrics);
    corral_close(px->cache);
close_loop:
    uv_run(&main_loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&main_loop) < 0) fprintf(stderr, "corral-proxy: main loop busy at exit\n");
    return code;
}

int main(int argc, char **argv) {
    px_flags flags; /* read-only once parsed; lives as long as px */
    px_error err;
    if (!px_flags_parse(&flags, argc, argv, &err)) {
        fprintf(stderr, "corral-proxy: %s\n", err.msg);
        usage(stderr);
        return 2;
    }
    if (flags.help) {
        usage(stdout);
        return 0;
    }
    if (flags.version) {
        printf("corral-proxy %s\n", corral_version());
        return 0;
    }
    for (size_t i = 0; i < flags.n; i++) {
        const px_flag *fl = &flags.v[i];
        if (fl->opt == PX_FLAG_ADMIN_TOKEN ||
            (fl->opt == PX_FLAG_SET && !strncmp(fl->value, "proxy.admin_token=", 18)))
            fprintf(stderr, "corral-proxy: warning: a token on the command line is visible to "
                            "every user (ps); use --admin-token-file FILE or "
                            "CORRAL_ADMIN_TOKEN\n");
    }
    /* A client or origin that closes while we write must not kill the process. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        perror("corral-proxy: sigaction");
        return 1;
    }
    px_proxy px;
    memset(&px, 0, sizeof px);
    px.flags = &flags;
    px.cfg = px_config_load(&flags, &err);
    if (!px.cfg) {
        fprintf(stderr, "corral-proxy: %s\n", err.msg);
        if (err.usage) usage(stderr);
        return 2;
    }
    if (px_config_open_log(px.cfg) < 0) {
        px_config_unref(px.cfg);
        return 1;
    }
    assign_slots(&px, px.cfg);
    px_list_init(&px.busy);
    px.alog = px_alog_new(px.cfg);
    if (!px.alog || uv_mutex_init(&px.busy_lock) < 0) {
        fprintf(stderr, "corral-proxy: cannot create a lock or the access log's writer\n");
        px_alog_free(px.alog);
        px_config_unref(px.cfg);
        return 1;
    }
    int code = run(&px);
    /* Every worker has ended, so every fetch and reader is gone with its busy object. */
    assert(px_list_empty(&px.busy));
    uv_mutex_destroy(&px.busy_lock);
    px_alog_free(px.alog);
    px_config_unref(px.cfg);
    return code;
}
