/*
 * main.c - corral-proxy's entry point: reads the configuration, opens the cache, starts one
 * worker thread per core (each a uv loop with its own SO_REUSEPORT listener, connections and
 * origin pool) and runs the main loop, which owns the admin listener and the signals.
 *
 *   corral-proxy --origin http://127.0.0.1:8000 --listen 127.0.0.1:8080
 *                [--admin 127.0.0.1:8081] [--store mem://...|redis://...] [--config file.ini]
 *                [--threads N] [--access-log -|off|PATH] [--route 'PREFIX key=value ...']
 *                [--set SECTION.KEY=VALUE]
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
 * (inbox_lock) and reads its metrics as relaxed atomics. Lock order: inbox_lock is a leaf
 * (nothing else is taken while it is held; uv_async_send calls nothing back). The inbox is a
 * FIFO of connections, each queued at most once (px_conn.in_inbox): flight wake-ups, and
 * readers of a busy object that grew (busy.c).
 */
#include "proxy.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

/* ---- Worker inbox ---- */

void px_worker_signal_locked(px_worker *w) {
    if (w->inbox_closed) return;
    /* uv_async_send is thread-safe and calls nothing back, so it may run under the lock,
     * which keeps the worker from closing the handle between our check and the send. */
    int rc = uv_async_send(&w->inbox_async);
    if (rc < 0) fprintf(stderr, "corral-proxy: inbox of worker %u: %s\n", w->id, uv_strerror(rc));
}

/* Queues `c` at the inbox's tail unless it is queued already; the caller holds the lock. */
static void enqueue_locked(px_worker *w, px_conn *c) {
    if (c->in_inbox) return;
    c->in_inbox = true;
    c->wake_next = NULL;
    if (w->inbox_tail)
        w->inbox_tail->wake_next = c;
    else
        w->inbox = c;
    w->inbox_tail = c;
    w->inbox_len++;
    px_worker_signal_locked(w);
}

void px_worker_wake(px_worker *w, px_conn *c) {
    uv_mutex_lock(&w->inbox_lock);
    c->wake_flight = true;
    enqueue_locked(w, c);
    uv_mutex_unlock(&w->inbox_lock);
}

void px_worker_notify(px_worker *w, px_conn *c) {
    uv_mutex_lock(&w->inbox_lock);
    enqueue_locked(w, c);
    uv_mutex_unlock(&w->inbox_lock);
}

bool px_worker_queued(px_worker *w, const px_conn *c) {
    uv_mutex_lock(&w->inbox_lock);
    bool q = c->in_inbox;
    uv_mutex_unlock(&w->inbox_lock);
    return q;
}

static void on_handle_closed(uv_handle_t *h) {
    (void)h;
}

static void on_drain_deadline(uv_timer_t *t) {
    px_worker *w = t->data;
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    fprintf(stderr, "corral-proxy: worker %u: shutdown timeout, closing what is left\n", w->id);
    px_fetches_abort(w);
    px_clients_abort(w);
    px_worker_maybe_done(w);
}

void px_worker_maybe_done(px_worker *w) {
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    if (!w->stopping || w->closing_handles) return;
    if (!px_list_empty(&w->conns) || !px_list_empty(&w->fetches)) return;
    w->closing_handles = true;
    px_log_flush(w);
    px_origin_close_idle(w);
    px_cbuf_drop_spares(w);
    /* No connection is left, so no flight can wake us any more; the main thread may still
     * signal (SIGHUP), hence the flag under the lock. */
    uv_mutex_lock(&w->inbox_lock);
    w->inbox_closed = true;
    uv_mutex_unlock(&w->inbox_lock);
    uv_close((uv_handle_t *)&w->inbox_async, on_handle_closed);
    uv_close((uv_handle_t *)&w->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&w->log_timer, on_handle_closed);
}

static void begin_stop(px_worker *w) {
    if (w->stopping) return;
    w->stopping = true;
    px_clients_stop(w);
    px_origin_close_idle(w);
    int rc = uv_timer_start(&w->drain_timer, on_drain_deadline,
                            (uint64_t)w->cfg->shutdown_timeout_ms, 0);
    if (rc < 0) fprintf(stderr, "corral-proxy: drain timer: %s\n", uv_strerror(rc));
    px_worker_maybe_done(w);
}

static void on_inbox(uv_async_t *a) {
    px_worker *w = a->data;
    PX_CHECK_OBJ(w, PX_WORKER_MAGIC);
    uv_mutex_lock(&w->inbox_lock);
    size_t n = w->inbox_len;
    px_config *cfg = w->inbox_cfg;
    w->inbox_cfg = NULL;
    bool stop = w->inbox_stop;
    uv_mutex_unlock(&w->inbox_lock);
    if (cfg) {
        px_config_unref(w->cfg);
        w->cfg = cfg;
    }
    /* Oldest first, one at a time: a connection leaves the inbox before it is handled, so a
     * busy object that grows meanwhile queues it again. At most the connections queued on
     * entry are handled here (streaming readers requeue themselves as the body arrives); the
     * rest get the next turn of the loop. */
    for (size_t i = 0; i < n; i++) {
        uv_mutex_lock(&w->inbox_lock);
        px_conn *c = w->inbox;
        if (!c) {
            uv_mutex_unlock(&w->inbox_lock);
            break;
        }
        w->inbox = c->wake_next;
        if (!w->inbox) w->inbox_tail = NULL;
        w->inbox_len--;
        c->wake_next = NULL;
        c->in_inbox = false;
        bool flight = c->wake_flight;
        c->wake_flight = false;
        int rc = c->wake_rc;
        corral_value *v = c->wake_v;
        c->wake_v = NULL;
        uv_mutex_unlock(&w->inbox_lock);
        PX_CHECK_OBJ(c, PX_CONN_MAGIC);
        if (flight) {
            c->waiting = false;
            px_cache_woken(c, rc, v);
        } else {
            px_cache_stream(c);
        }
    }
    uv_mutex_lock(&w->inbox_lock);
    if (w->inbox) px_worker_signal_locked(w);
    uv_mutex_unlock(&w->inbox_lock);
    if (stop) begin_stop(w);
}

static void worker_main(void *arg) {
    px_worker *w = arg;
    int rc = uv_run(&w->loop, UV_RUN_DEFAULT);
    (void)rc; /* 0 once every handle is closed: the worker is done */
}

/* Sets up worker `w` (loop, inbox, timers, listener) before its thread starts. */
static int worker_init(px_proxy *px, px_worker *w, unsigned id,
                       const struct sockaddr_storage *origin) {
    memset(w, 0, sizeof *w);
    w->magic = PX_WORKER_MAGIC;
    w->px = px;
    w->id = id;
    w->metrics = &px->metrics[id];
    w->cfg = px_config_ref(px->cfg);
    w->origin_addr = *origin;
    px_list_init(&w->conns);
    px_list_init(&w->fetches);
    px_list_init(&w->idle);
    px_list_init(&w->spare_bufs);
    int rc = uv_loop_init(&w->loop);
    if (rc < 0) return px_from_uv(rc);
    w->loop.data = w;
    if ((rc = uv_mutex_init(&w->inbox_lock)) < 0) return px_from_uv(rc);
    if ((rc = uv_async_init(&w->loop, &w->inbox_async, on_inbox)) < 0) return px_from_uv(rc);
    w->inbox_async.data = w;
    if ((rc = uv_timer_init(&w->loop, &w->drain_timer)) < 0) return px_from_uv(rc);
    w->drain_timer.data = w;
    if ((rc = uv_timer_init(&w->loop, &w->log_timer)) < 0) return px_from_uv(rc);
    w->log_timer.data = w;
    w->handles_ready = true;
    return px_listen(w);
}

/* ---- Signals ---- */

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
    px_config *cfg = px_config_load(px->config_path, px->argc, px->argv);
    if (!cfg) {
        fprintf(stderr, "corral-proxy: SIGHUP: configuration not reloaded\n");
        return;
    }
    if (!px_config_compatible(px->cfg, cfg) || px_config_open_log(cfg) < 0) {
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
        "                    [--admin-token TOKEN]\n"
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

static int run(px_proxy *px) {
    int code = 1;
    uv_loop_t main_loop;
    if (uv_loop_init(&main_loop) < 0) return 1;
    struct sockaddr_storage origin;
    if (resolve_origin(&main_loop, px->cfg, &origin) < 0) goto close_loop;

    corral_error err;
    if (corral_open(&px->cache, px->cfg->store_url, &err) < 0) {
        fprintf(stderr, "corral-proxy: store %s: %s\n", px->cfg->store_url, err.msg);
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
            px->cfg->origin_authority, px->cfg->store_url);
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
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("corral-proxy %s\n", corral_version());
            return 0;
        }
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config_path = argv[i + 1];
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
    px.config_path = config_path;
    px.argc = argc;
    px.argv = argv;
    px.cfg = px_config_load(config_path, argc, argv);
    if (!px.cfg) {
        usage(stderr);
        return 2;
    }
    if (px_config_open_log(px.cfg) < 0) {
        px_config_unref(px.cfg);
        return 1;
    }
    assign_slots(&px, px.cfg);
    px_list_init(&px.busy);
    px.alog = px_alog_new();
    if (!px.alog || uv_mutex_init(&px.busy_lock) < 0) {
        fprintf(stderr, "corral-proxy: cannot create a lock\n");
        px_alog_free(px.alog, -1);
        px_config_unref(px.cfg);
        return 1;
    }
    int code = run(&px);
    /* Every worker has ended, so every fetch and reader is gone with its busy object. */
    assert(px_list_empty(&px.busy));
    uv_mutex_destroy(&px.busy_lock);
    px_alog_free(px.alog, px.cfg->log_fd);
    px_config_unref(px.cfg);
    return code;
}
