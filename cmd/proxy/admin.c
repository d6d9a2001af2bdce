/*
 * admin.c - corral-proxy's admin listener, on the main loop: invalidation and metrics.
 *
 *   PURGE <url>                    one URL, every variant (Host, or an absolute URL, names the
 *                                  site, as in the proxied request)
 *   POST  /purge/key/<key>         every object whose Surrogate-Key header listed <key>
 *   POST  /purge/prefix/<path>     every object under /<path> (whole path segments)
 *   GET   /metrics                 Prometheus text: the proxy's and libcorral's
 *   GET   /dashboard               the live page over /metrics (dashboard.c)
 *   GET   /health                  200 "ok"
 *
 * Access: only loopback peers unless admin_allow_remote; with admin_token set, every request
 * needs "Authorization: Bearer <token>" (compared in constant time), or, for a GET, Basic
 * credentials with the token as password, which is how a browser sends it (dashboard.c). One
 * request per connection: every answer says "Connection: close", and the connection is closed after
 * it.
 *
 * Data model: px_admin (listener + list of connections); each admin connection has a parser
 * block (default limits), an 8 KiB read buffer and a timer (10 s to send a request).
 *
 * Threads: the main thread; libcorral calls are thread-safe. Its counters go to the admin's
 * own metrics block (px->admin_metrics), of which this thread is the only writer.
 */
#include "proxy.h"
#include "dashboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <netinet/in.h>

#define ADMIN_CONN_MAGIC 0x70adc0aau
#define ADMIN_RBUF       8192
#define ADMIN_TIMEOUT_MS 10000

struct px_admin {
    uint32_t magic;
    px_proxy *px;
    uv_tcp_t listener;
    px_link conns;
    bool listening;
    bool stopping; /* px_admin_stop ran: free `a` once everything is closed */
    bool listener_closed;
};

static void admin_maybe_free(px_admin *a) {
    if (a->stopping && a->listener_closed && px_list_empty(&a->conns)) {
        a->magic = 0;
        free(a);
    }
}

typedef struct aconn {
    uint32_t magic;
    px_admin *a;
    px_link link;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    int open_handles;
    corral_http_parser *parser;
    void *pmem;
    bool loopback;
    bool answered;
    bool closing;
    char rbuf[ADMIN_RBUF];
} aconn;

typedef struct awrite {
    uv_write_t req;
    aconn *ac;
    char data[];
} awrite;

/* ---- Closing ---- */

static void on_aclosed(uv_handle_t *h) {
    aconn *ac = h->data;
    if (--ac->open_handles > 0) return;
    px_admin *a = ac->a;
    px_list_remove(&ac->link);
    corral_http_parser_deinit(ac->parser);
    free(ac->pmem);
    ac->magic = 0;
    free(ac);
    admin_maybe_free(a);
}

static void aclose(aconn *ac) {
    if (ac->closing) return;
    ac->closing = true;
    uv_close((uv_handle_t *)&ac->tcp, on_aclosed);
    uv_close((uv_handle_t *)&ac->timer, on_aclosed);
}

static void on_ashutdown(uv_shutdown_t *req, int status) {
    (void)status;
    aclose(req->data);
}

static void on_awrite(uv_write_t *req, int status) {
    awrite *aw = PX_CONTAINER(req, awrite, req);
    aconn *ac = aw->ac;
    free(aw);
    if (ac->closing) return;
    ac->shut.data = ac;
    if (status < 0 || uv_shutdown(&ac->shut, (uv_stream_t *)&ac->tcp, on_ashutdown) < 0) aclose(ac);
}

/* Answers with `fields` (header fields, each ending in CRLF) besides the usual ones. */
static void respond_with(aconn *ac, unsigned status, const char *reason, const char *type,
                         const char *fields, const char *body, size_t body_len) {
    ac->answered = true;
    char head[768];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n",
                     status, reason, type, body_len, fields);
    if (n < 0 || (size_t)n >= sizeof head) {
        aclose(ac);
        return;
    }
    awrite *aw = malloc(sizeof *aw + (size_t)n + body_len);
    if (!aw) {
        aclose(ac);
        return;
    }
    aw->ac = ac;
    memcpy(aw->data, head, (size_t)n);
    memcpy(aw->data + n, body, body_len);
    uv_buf_t b = uv_buf_init(aw->data, (unsigned)((size_t)n + body_len));
    if (uv_write(&aw->req, (uv_stream_t *)&ac->tcp, &b, 1, on_awrite) < 0) {
        free(aw);
        aclose(ac);
    }
    if (uv_read_stop((uv_stream_t *)&ac->tcp) < 0) aclose(ac);
}

static void respond(aconn *ac, unsigned status, const char *reason, const char *type,
                    const char *body, size_t body_len) {
    respond_with(ac, status, reason, type, "", body, body_len);
}

static void respond_text(aconn *ac, unsigned status, const char *reason, const char *body) {
    respond(ac, status, reason, "text/plain; charset=utf-8", body, strlen(body));
}

/* A prefix or key purge's answer: "purged N" (or "purged at least N") and X-Purged: N. */
static void purged(aconn *ac, const px_purge_count *count) {
    if (count->n < 0) {
        respond_text(ac, 200, "OK", "purged (count unknown: store error)\n");
        return;
    }
    char body[64], field[48];
    int b = snprintf(body, sizeof body, "purged %s%lld\n", count->at_least ? "at least " : "",
                     (long long)count->n);
    int f = snprintf(field, sizeof field, "X-Purged: %lld\r\n", (long long)count->n);
    if (b < 0 || (size_t)b >= sizeof body || f < 0 || (size_t)f >= sizeof field) {
        respond_text(ac, 200, "OK", "purged\n");
        return;
    }
    respond_with(ac, 200, "OK", "text/plain; charset=utf-8", field, body, (size_t)b);
}

/* A purge that failed: 503, saying whether anything was purged. */
static void purge_failed(aconn *ac, int rc) {
    if (rc == PX_ESTAMP)
        respond_text(ac, 503, "Service Unavailable",
                     "purged, but the purge stamp could not be written (store full or failing): "
                     "a fetch in flight may store the old answer again; retry the purge\n");
    else
        respond_text(ac, 503, "Service Unavailable", "store error\n");
}

/* ---- Requests ---- */

/* "Bearer <token>", or, for a GET only, Basic credentials with the token as password (a
 * browser's, for the dashboard: dashboard.c). A browser resends remembered Basic credentials
 * with a form another site posts, so purges take the bearer token only. */
static bool token_ok(const char *want, const corral_http_msg *m) {
    if (!want[0]) return true;
    const corral_http_header *h = corral_http_msg_get(m, "authorization", NULL);
    if (h && h->value_len > 6 && strncasecmp(h->value, "Basic ", 6) == 0)
        return m->method == CORRAL_HTTP_GET &&
               px_basic_has_token(want, h->value + 6, h->value_len - 6);
    if (!h || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7) != 0) return false;
    return px_token_equal(want, h->value + 7, h->value_len - 7);
}

/* Percent-decodes `s` (`len` bytes) into `out` (cap). Returns the length, or 0 when bad. */
static size_t pct_decode(const char *s, size_t len, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (n + 1 >= cap) return 0;
        if (s[i] == '%') {
            if (i + 2 >= len) return 0;
            char hex[3] = { s[i + 1], s[i + 2], 0 };
            char *end;
            long v = strtol(hex, &end, 16);
            if (*end || v <= 0x20 || v >= 0x7f) return 0;
            out[n++] = (char)v;
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    out[n] = '\0';
    return n;
}

static bool target_is(const corral_http_msg *m, const char *path) {
    size_t n = strlen(path);
    return m->target_len >= n && memcmp(m->target, path, n) == 0 &&
           (m->target_len == n || m->target[n] == '?');
}

/* A PURGE whose Host is the admin listener itself (curl -X PURGE http://admin/path) means the
 * site as clients of the proxy's listener name it: the listen address. Other Hosts (and
 * absolute-form targets) are used as they are. Returns 0 or -1 (too many fields). */
static int admin_host_as_site(const px_config *cfg, const corral_http_msg *m,
                              corral_http_header *hdrs, size_t max, char *site, size_t cap,
                              corral_http_msg *out) {
    *out = *m;
    const corral_http_header *h = corral_http_msg_get(m, "host", NULL);
    char admin[100];
    int n = snprintf(admin, sizeof admin, "%s:%s", cfg->admin_host, cfg->admin_port);
    if (!h || n < 0 || (size_t)n >= sizeof admin || h->value_len != (size_t)n ||
        strncasecmp(h->value, admin, (size_t)n) != 0)
        return 0;
    if (m->n_headers > max) return -1;
    int s = snprintf(site, cap, "%s:%s", cfg->listen_host, cfg->listen_port);
    if (s < 0 || (size_t)s >= cap) return -1;
    for (size_t i = 0; i < m->n_headers; i++) {
        hdrs[i] = m->headers[i];
        if (&m->headers[i] == h) {
            hdrs[i].value = site;
            hdrs[i].value_len = (size_t)s;
        }
    }
    out->headers = hdrs;
    return 0;
}

static void handle(aconn *ac, const corral_http_msg *m) {
    px_proxy *px = ac->a->px;
    const px_config *cfg = px->cfg;
    px_metrics *pm = px->admin_metrics;
    if (!ac->loopback && !cfg->admin_allow_remote) {
        respond_text(ac, 403, "Forbidden", "admin is loopback-only\n");
        return;
    }
    if (!token_ok(cfg->admin_token, m)) {
        static const char need[] = "bearer token required (or, in a browser, the token as the "
                                   "password)\n";
        respond_with(ac, 401, "Unauthorized", "text/plain; charset=utf-8", PX_ADMIN_CHALLENGE, need,
                     sizeof need - 1);
        return;
    }
    if (m->method == CORRAL_HTTP_GET && target_is(m, "/metrics")) {
        char *text = NULL;
        size_t len = 0;
        int rc = px_metrics_text(px, &text, &len);
        if (rc < 0) {
            char why[96];
            snprintf(why, sizeof why, "%s\n", px_strerror(rc));
            respond_text(ac, 500, "Internal Server Error", why);
            return;
        }
        respond(ac, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        return;
    }
    if (m->method == CORRAL_HTTP_GET && target_is(m, "/dashboard")) {
        size_t len = 0;
        const char *page = px_dashboard_page(&len);
        respond_with(ac, 200, "OK", "text/html; charset=utf-8", PX_DASHBOARD_FIELDS, page, len);
        return;
    }
    if (m->method == CORRAL_HTTP_GET && target_is(m, "/health")) {
        respond_text(ac, 200, "OK", "ok\n");
        return;
    }
    if (m->method == CORRAL_HTTP_PURGE) {
        char pk[4096];
        size_t pk_len = 0;
        corral_http_msg target = *m;
        corral_http_header hdrs[64];
        char site[160];
        if (admin_host_as_site(cfg, m, hdrs, 64, site, sizeof site, &target) < 0) {
            respond_text(ac, 400, "Bad Request", "too many header fields\n");
            return;
        }
        if (corral_http_primary_key(&target, pk, sizeof pk, &pk_len) != CORRAL_OK) {
            respond_text(ac, 400, "Bad Request", "cannot key this URL\n");
            return;
        }
        int rc = px_purge_url(px, cfg, pk, pk_len);
        atomic_fetch_add_explicit(&pm->purge_requests[PX_PURGE_URL], 1, memory_order_relaxed);
        if (rc < 0) {
            purge_failed(ac, rc);
            return;
        }
        const char *path = memchr(pk, '/', pk_len);
        const px_route *r =
            px_route_match(cfg, path ? path : "/", path ? pk_len - (size_t)(path - pk) : 1);
        if (rc > 0) px_metrics_add(pm, r->slot, PX_M_purges_total, 1);
        px_purge_count count = { rc, false };
        purged(ac, &count);
        return;
    }
    static const char key_path[] = "/purge/key/", prefix_path[] = "/purge/prefix/";
    if (m->method == CORRAL_HTTP_POST && m->target_len > sizeof key_path - 1 &&
        memcmp(m->target, key_path, sizeof key_path - 1) == 0) {
        char key[512];
        size_t klen = pct_decode(m->target + sizeof key_path - 1,
                                 m->target_len - (sizeof key_path - 1), key, sizeof key);
        if (klen == 0) {
            respond_text(ac, 400, "Bad Request", "bad surrogate key\n");
            return;
        }
        atomic_fetch_add_explicit(&pm->purge_requests[PX_PURGE_KEY], 1, memory_order_relaxed);
        px_purge_count count;
        int rc = px_purge_key(px, key, klen, &count);
        if (rc < 0) {
            purge_failed(ac, rc);
            return;
        }
        purged(ac, &count);
        return;
    }
    if (m->method == CORRAL_HTTP_POST && m->target_len >= sizeof prefix_path - 1 &&
        memcmp(m->target, prefix_path, sizeof prefix_path - 1) == 0) {
        char path[2048];
        path[0] = '/';
        size_t plen = 1;
        size_t rest = m->target_len - (sizeof prefix_path - 1);
        if (rest) {
            plen = pct_decode(m->target + sizeof prefix_path - 1, rest, path + 1, sizeof path - 1);
            if (plen == 0) {
                respond_text(ac, 400, "Bad Request", "bad prefix\n");
                return;
            }
            plen += 1;
        }
        atomic_fetch_add_explicit(&pm->purge_requests[PX_PURGE_PREFIX], 1, memory_order_relaxed);
        px_purge_count count;
        int rc = px_purge_prefix(px, cfg, path, plen, &count);
        if (rc < 0) {
            purge_failed(ac, rc);
            return;
        }
        purged(ac, &count);
        return;
    }
    respond_text(ac, 404, "Not Found",
                 "PURGE <url> | POST /purge/key/<key> | POST /purge/prefix/<path> | "
                 "GET /metrics | GET /dashboard | GET /health\n");
}

static void on_aalloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    aconn *ac = h->data;
    buf->base = ac->rbuf;
    buf->len = sizeof ac->rbuf;
}

static void on_aread(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    aconn *ac = s->data;
    if (nread == 0 || ac->answered) return;
    if (nread < 0) {
        aclose(ac);
        return;
    }
    size_t off = 0;
    while (!ac->answered && off <= (size_t)nread) {
        size_t n = 0;
        corral_buf body;
        int rc =
            corral_http_parser_execute(ac->parser, buf->base + off, (size_t)nread - off, &n, &body);
        off += n;
        if (rc < 0) {
            respond_text(ac, corral_http_error_status(rc), "Bad Request", "malformed request\n");
            return;
        }
        if (rc == CORRAL_OK) return;
        if (rc == CORRAL_HTTP_GOT_HEAD) handle(ac, corral_http_parser_msg(ac->parser));
    }
}

static void on_atimer(uv_timer_t *t) {
    aclose(t->data);
}

static void on_aconnection(uv_stream_t *server, int status) {
    px_admin *a = server->data;
    if (status < 0) return;
    aconn *ac = calloc(1, sizeof *ac);
    if (!ac) return;
    ac->magic = ADMIN_CONN_MAGIC;
    ac->a = a;
    px_list_push(&a->conns, &ac->link);
    uv_loop_t *loop = server->loop;
    if (uv_tcp_init(loop, &ac->tcp) < 0) {
        px_list_remove(&ac->link);
        free(ac);
        return;
    }
    ac->tcp.data = ac;
    ac->open_handles = 1;
    if (uv_timer_init(loop, &ac->timer) < 0) {
        ac->closing = true;
        uv_close((uv_handle_t *)&ac->tcp, on_aclosed);
        return;
    }
    ac->timer.data = ac;
    ac->open_handles = 2;
    size_t mem = corral_http_parser_mem_size(NULL);
    ac->pmem = malloc(mem);
    if (uv_accept(server, (uv_stream_t *)&ac->tcp) < 0 || !ac->pmem ||
        corral_http_parser_init(&ac->parser, ac->pmem, mem, CORRAL_HTTP_REQUEST, NULL) < 0) {
        aclose(ac);
        return;
    }
    struct sockaddr_storage sa;
    int len = sizeof sa;
    if (uv_tcp_getpeername(&ac->tcp, (struct sockaddr *)&sa, &len) == 0) {
        if (sa.ss_family == AF_INET) {
            const unsigned char *ip =
                (const unsigned char *)&((struct sockaddr_in *)&sa)->sin_addr.s_addr;
            ac->loopback = ip[0] == 127;
        } else if (sa.ss_family == AF_INET6) {
            static const unsigned char lo[16] = { [15] = 1 };
            ac->loopback = memcmp(&((struct sockaddr_in6 *)&sa)->sin6_addr, lo, 16) == 0;
        }
    }
    if (uv_timer_start(&ac->timer, on_atimer, ADMIN_TIMEOUT_MS, 0) < 0 ||
        uv_read_start((uv_stream_t *)&ac->tcp, on_aalloc, on_aread) < 0)
        aclose(ac);
}

int px_admin_start(px_proxy *px, uv_loop_t *loop, px_admin **out) {
    *out = NULL;
    const px_config *cfg = px->cfg;
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    int port = atoi(cfg->admin_port);
    if (uv_ip4_addr(cfg->admin_host, port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(cfg->admin_host, port, (struct sockaddr_in6 *)&sa) != 0) {
        fprintf(stderr, "corral-proxy: bad admin address %s\n", cfg->admin_host);
        return PX_EIO;
    }
    bool loopback = strncmp(cfg->admin_host, "127.", 4) == 0 || strcmp(cfg->admin_host, "::1") == 0;
    if (!loopback && !cfg->admin_allow_remote) {
        fprintf(stderr,
                "corral-proxy: the admin listener is loopback-only; set "
                "admin_allow_remote = true (and an admin_token) to listen on %s\n",
                cfg->admin_host);
        return PX_EIO;
    }
    px_admin *a = calloc(1, sizeof *a);
    if (!a) return PX_EIO;
    a->magic = PX_ADMIN_MAGIC;
    a->px = px;
    px_list_init(&a->conns);
    int rc = uv_tcp_init(loop, &a->listener);
    if (rc < 0) {
        free(a);
        return PX_EIO;
    }
    a->listener.data = a;
    a->listening = true;
    *out = a;
    if ((rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&sa, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&a->listener, 128, on_aconnection)) < 0) {
        fprintf(stderr, "corral-proxy: cannot listen on admin %s:%s: %s\n", cfg->admin_host,
                cfg->admin_port, uv_strerror(rc));
        return PX_EIO;
    }
    return 0;
}

static void on_admin_listener_closed(uv_handle_t *h) {
    px_admin *a = h->data;
    a->listener_closed = true;
    admin_maybe_free(a);
}

void px_admin_stop(px_admin *a) {
    if (!a) return;
    PX_CHECK_OBJ(a, PX_ADMIN_MAGIC);
    a->stopping = true;
    for (px_link *l = a->conns.next, *next; l != &a->conns; l = next) {
        next = l->next;
        aclose(PX_CONTAINER(l, aconn, link));
    }
    uv_close((uv_handle_t *)&a->listener, on_admin_listener_closed);
}
