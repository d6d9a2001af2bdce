/*
 * pages.c - the shop's pages: the guide's scenarios, one URL each, with the headers that tell a
 * shared cache what it may do. A request, the shop's state and the time come in; a reply comes
 * out. Nothing here does I/O or reads a clock: the server (server.c) sends the reply, waits for
 * the slow report's 200 ms, and runs the save handler's purge (purge.c).
 *
 *   GET  /                    the blog-style index: anonymous, the same for everyone
 *                             (the guide's site cache)          public, max-age=60
 *   GET  /pricing             English, German or French by Accept-Language (@cache_page +
 *                             @vary_on_headers)                 public, max-age=900, Vary
 *   GET  /products/<id>       a product page, tagged for purges (Surrogate-Key: product-<id>
 *                             products) and with an ETag        max-age=600, swr=30
 *   POST /products/<id>/save  the guide's post_save: raises the price by 0.50, then purges
 *                             surrogate key product-<id> at the proxy's admin
 *   GET  /account/orders      personalised by "Cookie: session=<name>": the page that must never
 *                             be shared ("someone else's order")   private
 *   GET  /login?user=<name>   sets that cookie (for a browser); /logout clears it
 *   GET  /reports/bestsellers the slow query: 200 ms (coalescing and grace)  max-age=10, swr=60
 *   GET  /healthz             "ok"                              no-store
 *
 * Every reply carries "X-Origin-Count: <n>", the times the origin was asked for that page (this
 * request included), and HTML pages say in their footer when the origin made them: behind the
 * proxy, a hit shows the count and time of the copy it stored.
 *
 * Every string that reaches HTML is either ours or a session name validated to [A-Za-z0-9_-],
 * so nothing needs escaping.
 */
#include "shop.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The catalogue at startup; saves change the copies in shop.products. */
static const struct {
    const char *title;
    unsigned price_cents;
} catalogue[SHOP_N_PRODUCTS] = {
    { "Espresso cup", 1200 },     { "Moka pot", 3400 },     { "Burr grinder", 8900 },
    { "Pour-over kettle", 4500 }, { "Milk jug", 1500 },     { "Tamper", 1900 },
    { "Coffee scale", 2900 },     { "Filter papers", 500 }, { "Beans: Ethiopia", 1400 },
    { "Beans: Colombia", 1300 },  { "Travel mug", 2200 },   { "Knock box", 1800 },
};

/* The bestsellers report, best first: product ids and units sold this week. */
static const struct {
    unsigned id;
    unsigned sold;
} bestsellers[] = { { 9, 412 }, { 1, 388 }, { 2, 251 }, { 10, 240 }, { 8, 197 } };

#define SESSION_MAX 32

void shop_init(shop *s, uv_loop_t *loop, int64_t now_s) {
    memset(s, 0, sizeof *s);
    s->magic = SHOP_MAGIC;
    s->loop = loop;
    for (unsigned i = 0; i < SHOP_N_PRODUCTS; i++) {
        s->products[i] = (shop_product){ .id = i + 1,
                                         .title = catalogue[i].title,
                                         .price_cents = catalogue[i].price_cents,
                                         .version = 1,
                                         .updated_at_s = now_s };
    }
    shop_list_init(&s->conns);
}

void shop_reply_init(shop_reply *r) {
    memset(r, 0, sizeof *r);
}

void shop_reply_deinit(shop_reply *r) {
    shop_buf_free(&r->fields);
    shop_buf_free(&r->body);
}

const char *shop_reason(unsigned status) {
    switch (status) {
    case 200: return "OK";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

void shop_http_date(int64_t t_s, char out[30]) {
    time_t t = (time_t)t_s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 30, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        out[0] = '\0';
}

/* "2026-01-01 10:00:00" (UTC) into `out` (32 bytes). */
static void human_time(int64_t t_s, char out[32]) {
    time_t t = (time_t)t_s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm) == 0) out[0] = '\0';
}

/* ---- Request helpers ---- */

/* The parts of a request the pages read. */
typedef struct req {
    const corral_http_msg *m;
    const char *path; /* the request-target up to '?' */
    size_t path_len;
    const char *query; /* after '?'; length 0 when there is none */
    size_t query_len;
    int64_t now_ms;
} req;

static bool path_is(const req *q, const char *p) {
    size_t n = strlen(p);
    return q->path_len == n && memcmp(q->path, p, n) == 0;
}

/* Parses a canonical decimal id (no sign, no leading zero) of `len` bytes; 0 when it is not one
 * or out of the catalogue. */
static unsigned parse_id(const char *p, size_t len) {
    if (len == 0 || len > 3 || p[0] == '0') return 0;
    unsigned id = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        id = id * 10 + (unsigned)(p[i] - '0');
    }
    return id <= SHOP_N_PRODUCTS ? id : 0;
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Copies `len` bytes of `p` into `out` (SESSION_MAX bytes) when they form a valid session or
 * user name (1..SESSION_MAX-1 bytes of [A-Za-z0-9_-]); false otherwise. */
static bool copy_name(const char *p, size_t len, char out[SESSION_MAX]) {
    if (len == 0 || len >= SESSION_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char(p[i])) return false;
    }
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

/* Finds `name=value` among the `sep`-separated items of `list` (spaces around items ignored);
 * sets the value and returns true when found. */
static bool find_param(const char *list, size_t len, char sep, const char *name, const char **val,
                       size_t *val_len) {
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i < len) {
        while (i < len && list[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && list[i] != sep)
            i++;
        size_t end = i;
        while (end > start && list[end - 1] == ' ')
            end--;
        if (end - start > nlen && memcmp(list + start, name, nlen) == 0 &&
            list[start + nlen] == '=') {
            *val = list + start + nlen + 1;
            *val_len = end - start - nlen - 1;
            return true;
        }
        i++; /* past the separator */
    }
    return false;
}

/* The session name from "Cookie: session=<name>" into `out`; false when there is none or it is
 * not a valid name. */
static bool session_of(const corral_http_msg *m, char out[SESSION_MAX]) {
    char cookies[4096];
    size_t len;
    if (corral_http_msg_join(m, "Cookie", cookies, sizeof cookies, &len) != CORRAL_OK) return false;
    const char *v;
    size_t vlen;
    return find_param(cookies, len, ';', "session", &v, &vlen) && copy_name(v, vlen, out);
}

enum { LANG_EN, LANG_DE, LANG_FR };

/* Picks English, German or French from Accept-Language (RFC 9110 §12.5.4): the supported
 * language with the highest q-value (ties: the one listed first; "*" means English); English
 * when nothing listed is supported. */
static int pick_language(const corral_http_msg *m) {
    static const char *const codes[] = { "en", "de", "fr" };
    char list[1024];
    size_t len;
    if (corral_http_msg_join(m, "Accept-Language", list, sizeof list, &len) != CORRAL_OK)
        return LANG_EN;
    int best = LANG_EN;
    int best_q = 0; /* thousandths */
    size_t i = 0;
    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == ','))
            i++;
        size_t tag = i;
        while (i < len && list[i] != ',' && list[i] != ';' && list[i] != ' ')
            i++;
        size_t tag_len = i - tag;
        int q = 1000;
        while (i < len && list[i] != ',') {
            /* Parameters: only q matters ("q=0.8"; at most three decimals count). */
            if (list[i] == 'q' && i + 2 < len && list[i + 1] == '=') {
                size_t j = i + 2;
                bool one = list[j] == '1';
                q = one ? 1000 : 0;
                j++;
                if (j < len && list[j] == '.') {
                    int scale = 100;
                    for (j++; j < len && list[j] >= '0' && list[j] <= '9'; j++) {
                        if (!one) q += (list[j] - '0') * scale;
                        scale /= 10;
                    }
                }
                i = j;
                continue;
            }
            i++;
        }
        int lang = -1;
        if (tag_len == 1 && list[tag] == '*') lang = LANG_EN;
        for (int k = 0; k < 3 && lang < 0; k++) {
            if (tag_len >= 2 && (list[tag] | 0x20) == codes[k][0] &&
                (list[tag + 1] | 0x20) == codes[k][1] && (tag_len == 2 || list[tag + 2] == '-'))
                lang = k;
        }
        if (lang >= 0 && q > best_q) {
            best = lang;
            best_q = q;
        }
    }
    return best;
}

/* ---- Page parts ---- */

static void field(shop_reply *r, const char *name, const char *value) {
    shop_buf_printf(&r->fields, "%s: %s\r\n", name, value);
}

/* The fields of every reply: its type, its caching rule and the origin's count. */
static void common_fields(shop_reply *r, unsigned status, const char *type, const char *cc) {
    r->status = status;
    if (type) field(r, "Content-Type", type);
    field(r, "Cache-Control", cc);
    shop_buf_printf(&r->fields, "X-Origin-Count: %llu\r\n", (unsigned long long)r->asked);
}

static void page_begin(shop_reply *r, const char *lang, const char *title) {
    shop_buf_printf(&r->body,
                    "<!doctype html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">\n"
                    "<title>%s - corral shop</title>\n"
                    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;"
                    "padding:0 1em}nav a{margin-right:.8em}code{background:#f4f4f4;padding:0 .2em}"
                    "footer{margin-top:3em;padding-top:.5em;border-top:1px solid #ddd;color:#666;"
                    "font-size:.85em}</style></head>\n<body>\n<nav><a href=\"/\">corral shop</a>"
                    "<a href=\"/pricing\">pricing</a><a href=\"/products/1\">products</a>"
                    "<a href=\"/account/orders\">your orders</a>"
                    "<a href=\"/reports/bestsellers\">bestsellers</a></nav>\n<h1>%s</h1>\n",
                    lang, title, title);
}

static void page_end(const shop *s, shop_reply *r, int64_t now_ms) {
    char when[32];
    human_time(now_ms / 1000, when);
    shop_buf_printf(&r->body,
                    "<footer>Made by the shop origin at %s.%03d UTC: the origin was asked for this "
                    "page %llu time%s (%llu requests in all). Through corral-proxy, the "
                    "<code>X-Cache</code> and <code>Age</code> headers say whether this copy "
                    "came from its cache.</footer>\n</body></html>\n",
                    when, (int)(now_ms % 1000), (unsigned long long)r->asked,
                    r->asked == 1 ? "" : "s", (unsigned long long)s->asked_total);
}

static void price(shop_buf *b, unsigned cents) {
    shop_buf_printf(b, "&euro;%u.%02u", cents / 100, cents % 100);
}

/* ---- Pages ---- */

static void page_index(shop *s, shop_reply *r, const req *q) {
    common_fields(r, 200, "text/html; charset=utf-8", "public, max-age=60");
    page_begin(r, "en", "The corral shop blog");
    shop_buf_puts(
        &r->body,
        "<p>A small shop behind corral-proxy, and a tour of the caching guide it follows. "
        "Every page says in its footer when the origin made it; reload and watch.</p>\n"
        "<h2>Cache at the right level</h2>\n<p>This index is the same for everyone, so the "
        "whole page is cached: <code>Cache-Control: public, max-age=60</code>. For a minute "
        "the proxy answers it without asking the origin.</p>\n"
        "<h2>Vary on what the page depends on</h2>\n<p><a href=\"/pricing\">Pricing</a> comes "
        "in English, German and French by <code>Accept-Language</code>, and says "
        "<code>Vary: Accept-Language</code>, so German visitors never get the French page.</p>\n"
        "<h2>Never share someone else's order</h2>\n<p><a href=\"/account/orders\">Your "
        "orders</a> depend on your session cookie and say <code>Cache-Control: private</code>: "
        "the proxy passes them through and never stores them. Log in as "
        "<a href=\"/login?user=alice\">alice</a> or <a href=\"/login?user=bob\">bob</a>.</p>\n"
        "<h2>Bust exactly what changed</h2>\n<p>Product pages are cached for ten minutes and "
        "tagged <code>Surrogate-Key: product-&lt;id&gt; products</code>. Saving a product "
        "raises its price and purges its key at the proxy, as a <code>post_save</code> receiver "
        "would: the next view is fresh.</p>\n<ul>\n");
    for (unsigned i = 0; i < SHOP_N_PRODUCTS; i++)
        shop_buf_printf(&r->body, "<li><a href=\"/products/%u\">%s</a></li>\n", s->products[i].id,
                        s->products[i].title);
    shop_buf_puts(&r->body,
                  "</ul>\n<h2>The 14:00 herd</h2>\n<p>The <a href=\"/reports/bestsellers\">"
                  "bestsellers report</a> takes the origin 200 ms. A hundred clients that miss it "
                  "at once make one origin request, and once it expires the old copy is served "
                  "at once while one request refreshes it.</p>\n");
    page_end(s, r, q->now_ms);
}

static void page_pricing(shop *s, shop_reply *r, const req *q) {
    static const struct {
        const char *code, *title, *intro, *plans[3];
    } text[] = {
        [LANG_EN] = { "en",
                      "Pricing",
                      "One page, three languages: the proxy keeps one copy per language.",
                      { "Hobby: free", "Team: &euro;29 a month", "Business: &euro;99 a month" } },
        [LANG_DE] = { "de",
                      "Preise",
                      "Eine Seite, drei Sprachen: der Proxy speichert eine Kopie je Sprache.",
                      { "Hobby: kostenlos", "Team: 29 &euro; im Monat",
                        "Business: 99 &euro; im Monat" } },
        [LANG_FR] = { "fr",
                      "Tarifs",
                      "Une page, trois langues : le proxy garde une copie par langue.",
                      { "Hobby : gratuit", "Team : 29 &euro; par mois",
                        "Business : 99 &euro; par mois" } },
    };
    int lang = pick_language(q->m);
    common_fields(r, 200, "text/html; charset=utf-8", "public, max-age=900");
    field(r, "Vary", "Accept-Language");
    field(r, "Content-Language", text[lang].code);
    page_begin(r, text[lang].code, text[lang].title);
    shop_buf_printf(&r->body, "<p>%s</p>\n<ul>\n", text[lang].intro);
    for (int i = 0; i < 3; i++)
        shop_buf_printf(&r->body, "<li>%s</li>\n", text[lang].plans[i]);
    shop_buf_puts(&r->body, "</ul>\n");
    page_end(s, r, q->now_ms);
}

/* True when If-None-Match lists `etag` (or is "*"); weak and strong forms match alike. */
static bool etag_matches(const corral_http_msg *m, const char *etag) {
    char list[512];
    size_t len;
    if (corral_http_msg_join(m, "If-None-Match", list, sizeof list, &len) != CORRAL_OK || len == 0)
        return false;
    if (len == 1 && list[0] == '*') return true;
    size_t n = strlen(etag);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(list + i, etag, n) == 0) return true;
    }
    return false;
}

static void page_product(shop *s, shop_reply *r, const req *q, unsigned id) {
    const shop_product *p = &s->products[id - 1];
    char etag[48], tags[64], date[30];
    int n1 = snprintf(etag, sizeof etag, "\"product-%u-v%u\"", id, p->version);
    int n2 = snprintf(tags, sizeof tags, "product-%u products", id);
    if (n1 < 0 || (size_t)n1 >= sizeof etag || n2 < 0 || (size_t)n2 >= sizeof tags) {
        r->fields.failed = true;
        return;
    }
    shop_http_date(p->updated_at_s, date);
    bool not_modified = etag_matches(q->m, etag);
    common_fields(r, not_modified ? 304 : 200, not_modified ? NULL : "text/html; charset=utf-8",
                  "public, max-age=600, stale-while-revalidate=30");
    field(r, "Surrogate-Key", tags);
    field(r, "ETag", etag);
    if (date[0]) field(r, "Last-Modified", date);
    if (not_modified) return;
    char updated[32];
    human_time(p->updated_at_s, updated);
    page_begin(r, "en", p->title);
    shop_buf_puts(&r->body, "<p style=\"font-size:2em;margin:0\">");
    price(&r->body, p->price_cents);
    shop_buf_printf(&r->body,
                    "</p>\n<p>Version %u, updated %s UTC.</p>\n"
                    "<form method=\"post\" action=\"/products/%u/save\"><button>Save product %u "
                    "(its price goes up by &euro;0.50)</button></form>\n"
                    "<p>Sent with <code>Cache-Control: public, max-age=600, "
                    "stale-while-revalidate=30</code> and <code>Surrogate-Key: %s</code>. Saving "
                    "calls the proxy's admin <code>POST /purge/key/product-%u</code>, so the next "
                    "view is fresh.</p>\n<p>More:",
                    p->version, updated, id, id, tags, id);
    for (unsigned i = 1; i <= SHOP_N_PRODUCTS; i++) {
        if (i != id)
            shop_buf_printf(&r->body, " <a href=\"/products/%u\">%s</a>%s", i,
                            s->products[i - 1].title, i == SHOP_N_PRODUCTS ? "" : " &middot;");
    }
    shop_buf_puts(&r->body, "</p>\n");
    page_end(s, r, q->now_ms);
}

/* The guide's post_save, first half: the save itself. The reply is rendered by
 * shop_page_saved once the purge has ended. */
static void page_save(shop *s, shop_reply *r, const req *q, unsigned id) {
    int n = snprintf(r->purge_key, sizeof r->purge_key, "product-%u", id);
    if (n < 0 || (size_t)n >= sizeof r->purge_key) {
        r->fields.failed = true; /* a 500, and nothing saved */
        return;
    }
    shop_product *p = &s->products[id - 1];
    p->price_cents += 50;
    p->version++;
    p->updated_at_s = q->now_ms / 1000;
    r->product_id = id;
    r->pending = SHOP_AFTER_PURGE;
}

void shop_page_saved(shop *s, shop_reply *r, int purge_status, const char *detail, int64_t now_ms) {
    SHOP_CHECK_OBJ(s, SHOP_MAGIC);
    const shop_product *p = &s->products[r->product_id - 1];
    r->pending = SHOP_NOW;
    common_fields(r, 200, "text/html; charset=utf-8", "no-store");
    if (purge_status == 0)
        field(r, "X-Shop-Purge", "none (no --admin)");
    else if (purge_status > 0)
        shop_buf_printf(&r->fields, "X-Shop-Purge: %s %d\r\n", r->purge_key, purge_status);
    else
        shop_buf_printf(&r->fields, "X-Shop-Purge: %s failed: %s\r\n", r->purge_key, detail);
    page_begin(r, "en", "Saved");
    shop_buf_printf(&r->body, "<p>%s: the price went from ", p->title);
    price(&r->body, p->price_cents - 50);
    shop_buf_puts(&r->body, " to ");
    price(&r->body, p->price_cents);
    shop_buf_printf(&r->body, " (version %u).</p>\n<p>", p->version);
    if (purge_status == 0)
        shop_buf_puts(&r->body, "The shop runs without <code>--admin</code>, so nothing was "
                                "purged: a cache serves the old page until it expires.");
    else if (purge_status == 200)
        shop_buf_printf(&r->body,
                        "Purged surrogate key <code>%s</code> at corral-proxy's admin (200): "
                        "the next view is a miss, then a hit again.",
                        r->purge_key);
    else if (purge_status > 0)
        shop_buf_printf(&r->body,
                        "The admin answered %d to the purge of <code>%s</code>: the proxy may "
                        "serve the old price for up to ten minutes.",
                        purge_status, r->purge_key);
    else
        shop_buf_printf(&r->body,
                        "The purge of <code>%s</code> failed (%s): the proxy may serve the old "
                        "price for up to ten minutes.",
                        r->purge_key, detail);
    shop_buf_printf(&r->body, "</p>\n<p><a href=\"/products/%u\">View %s</a></p>\n", p->id,
                    p->title);
    page_end(s, r, now_ms);
    if (r->fields.failed || r->body.failed) shop_page_error(r, 500);
}

static uint32_t fnv1a(const char *p) {
    uint32_t h = 2166136261u;
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

static void page_orders(shop *s, shop_reply *r, const req *q) {
    char name[SESSION_MAX];
    common_fields(r, 200, "text/html; charset=utf-8", "private");
    if (!session_of(q->m, name)) {
        page_begin(r, "en", "Your orders");
        shop_buf_puts(&r->body,
                      "<p>You are not logged in. Log in as <a href=\"/login?user=alice\">alice</a> "
                      "or <a href=\"/login?user=bob\">bob</a> (that sets "
                      "<code>Cookie: session=&lt;name&gt;</code>).</p>\n");
        page_end(s, r, q->now_ms);
        return;
    }
    page_begin(r, "en", "Your orders");
    shop_buf_printf(&r->body,
                    "<p>Orders for <strong>%s</strong> (<a href=\"/logout\">log out</a>). This "
                    "page says <code>Cache-Control: private</code>: the proxy never stores it, "
                    "so nobody else ever sees it.</p>\n<ul>\n",
                    name);
    /* A few orders made up from the name, the same on every visit. */
    uint32_t h = fnv1a(name);
    unsigned n_orders = 2 + h % 2;
    for (unsigned k = 0; k < n_orders; k++) {
        h = h * 1103515245u + 12345u;
        unsigned id = 1 + (h >> 8) % SHOP_N_PRODUCTS;
        unsigned qty = 1 + (h >> 20) % 3;
        shop_buf_printf(&r->body, "<li>Order #%u for %s: %u &times; %s, ", 10000 + (h >> 4) % 90000,
                        name, qty, catalogue[id - 1].title);
        price(&r->body, qty * catalogue[id - 1].price_cents);
        shop_buf_puts(&r->body, "</li>\n");
    }
    shop_buf_puts(&r->body, "</ul>\n");
    page_end(s, r, q->now_ms);
}

static void page_login(shop_reply *r, const req *q, bool logout) {
    char name[SESSION_MAX];
    const char *v;
    size_t vlen;
    if (logout) {
        common_fields(r, 303, "text/plain; charset=utf-8", "no-store");
        field(r, "Set-Cookie", "session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
        field(r, "Location", "/");
        shop_buf_puts(&r->body, "logged out\n");
        return;
    }
    if (!find_param(q->query, q->query_len, '&', "user", &v, &vlen) || !copy_name(v, vlen, name)) {
        common_fields(r, 400, "text/plain; charset=utf-8", "no-store");
        shop_buf_puts(&r->body, "usage: /login?user=<name> ([A-Za-z0-9_-], 1-31 bytes)\n");
        return;
    }
    common_fields(r, 303, "text/plain; charset=utf-8", "no-store");
    shop_buf_printf(&r->fields, "Set-Cookie: session=%s; Path=/; HttpOnly; SameSite=Lax\r\n", name);
    field(r, "Location", "/account/orders");
    shop_buf_printf(&r->body, "logged in as %s\n", name);
}

static void page_bestsellers(shop *s, shop_reply *r, const req *q) {
    common_fields(r, 200, "text/html; charset=utf-8",
                  "public, max-age=10, stale-while-revalidate=60");
    field(r, "Surrogate-Key", "reports");
    page_begin(r, "en", "Bestsellers this week");
    shop_buf_puts(&r->body, "<ol>\n");
    for (size_t i = 0; i < sizeof bestsellers / sizeof bestsellers[0]; i++)
        shop_buf_printf(&r->body, "<li><a href=\"/products/%u\">%s</a>: %u sold</li>\n",
                        bestsellers[i].id, s->products[bestsellers[i].id - 1].title,
                        bestsellers[i].sold);
    shop_buf_printf(&r->body,
                    "</ol>\n<p>This report takes the origin %d ms. Behind corral-proxy, clients "
                    "that miss it together wait on one origin request (coalescing), and for 60 s "
                    "after it expires the old copy is served at once while one request refreshes "
                    "it (<code>stale-while-revalidate=60</code>: grace).</p>\n",
                    SHOP_SLOW_MS);
    page_end(s, r, q->now_ms);
    r->pending = SHOP_AFTER_DELAY;
    r->delay_ms = SHOP_SLOW_MS;
}

static void page_healthz(shop_reply *r) {
    common_fields(r, 200, "text/plain; charset=utf-8", "no-store");
    shop_buf_puts(&r->body, "ok\n");
}

static void page_not_found(shop *s, shop_reply *r, const req *q) {
    common_fields(r, 404, "text/html; charset=utf-8", "public, max-age=10");
    page_begin(r, "en", "Not found");
    shop_buf_puts(&r->body, "<p>No such page in the shop. Start from <a href=\"/\">the "
                            "index</a>.</p>\n");
    page_end(s, r, q->now_ms);
}

static void page_not_allowed(shop_reply *r, const char *allow) {
    common_fields(r, 405, "text/plain; charset=utf-8", "no-store");
    field(r, "Allow", allow);
    shop_buf_printf(&r->body, "method not allowed: use %s\n", allow);
}

void shop_page_error(shop_reply *r, unsigned status) {
    /* Start over: a failed reply's buffers may be half-built. */
    uint64_t asked = r->asked;
    bool head_only = r->head_only;
    shop_reply_deinit(r);
    shop_reply_init(r);
    r->asked = asked;
    r->head_only = head_only;
    common_fields(r, status, "text/plain; charset=utf-8", "no-store");
    shop_buf_printf(&r->body, "%u %s\n", status, shop_reason(status));
    /* Should even this fail, the server still sends the status line with an empty body. */
}

/* ---- Routing ---- */

void shop_handle(shop *s, const corral_http_msg *m, int64_t now_ms, shop_reply *r) {
    SHOP_CHECK_OBJ(s, SHOP_MAGIC);
    req q = { .m = m, .path = m->target, .path_len = m->target_len, .now_ms = now_ms };
    const char *qm = memchr(m->target, '?', m->target_len);
    if (qm) {
        q.path_len = (size_t)(qm - m->target);
        q.query = qm + 1;
        q.query_len = m->target_len - q.path_len - 1;
    }
    r->head_only = m->method == CORRAL_HTTP_HEAD;
    bool is_get = m->method == CORRAL_HTTP_GET || m->method == CORRAL_HTTP_HEAD;

    /* Which page: /products/<id> and /products/<id>/save take the id. */
    int page = SHOP_PAGE_OTHER;
    unsigned id = 0;
    static const char products[] = "/products/";
    if (path_is(&q, "/"))
        page = SHOP_PAGE_INDEX;
    else if (path_is(&q, "/pricing"))
        page = SHOP_PAGE_PRICING;
    else if (path_is(&q, "/account/orders"))
        page = SHOP_PAGE_ORDERS;
    else if (path_is(&q, "/reports/bestsellers"))
        page = SHOP_PAGE_BESTSELLERS;
    else if (path_is(&q, "/healthz"))
        page = SHOP_PAGE_HEALTHZ;
    else if (path_is(&q, "/login") || path_is(&q, "/logout"))
        page = SHOP_PAGE_LOGIN;
    else if (q.path_len > sizeof products - 1 &&
             memcmp(q.path, products, sizeof products - 1) == 0) {
        const char *rest = q.path + sizeof products - 1;
        size_t rest_len = q.path_len - (sizeof products - 1);
        const char *slash = memchr(rest, '/', rest_len);
        if (!slash) {
            id = parse_id(rest, rest_len);
            if (id) page = SHOP_PAGE_PRODUCT1 + (int)id - 1;
        } else if (rest_len - (size_t)(slash - rest) == 5 && memcmp(slash, "/save", 5) == 0) {
            id = parse_id(rest, (size_t)(slash - rest));
            if (id) page = SHOP_PAGE_SAVE1 + (int)id - 1;
        }
    }
    r->asked = ++s->asked[page];
    s->asked_total++;

    if (page >= SHOP_PAGE_SAVE1) {
        if (m->method == CORRAL_HTTP_POST)
            page_save(s, r, &q, id);
        else
            page_not_allowed(r, "POST");
    } else if (!is_get && page != SHOP_PAGE_OTHER) {
        page_not_allowed(r, "GET, HEAD");
    } else if (page >= SHOP_PAGE_PRODUCT1) {
        page_product(s, r, &q, id);
    } else {
        switch (page) {
        case SHOP_PAGE_INDEX: page_index(s, r, &q); break;
        case SHOP_PAGE_PRICING: page_pricing(s, r, &q); break;
        case SHOP_PAGE_ORDERS: page_orders(s, r, &q); break;
        case SHOP_PAGE_BESTSELLERS: page_bestsellers(s, r, &q); break;
        case SHOP_PAGE_HEALTHZ: page_healthz(r); break;
        case SHOP_PAGE_LOGIN: page_login(r, &q, path_is(&q, "/logout")); break;
        default: page_not_found(s, r, &q); break;
        }
    }
    if (r->fields.failed || r->body.failed) shop_page_error(r, 500);
}
