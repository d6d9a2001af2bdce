/*
 * dashboard.c - GET /dashboard on the admin listener: one self-contained page showing, per
 * route, the hit rate over the last minutes, requests/s, origin requests/s, coalesced and stale
 * answers, purges, store memory and the origin latency histogram, with the totals.
 *
 * The page is cmd/proxy/dashboard.html, turned into a byte array at build time
 * (cmake/embed.cmake): it is edited as HTML, needs no build step of its own, and loads nothing
 * from another host. It reads the proxy's data by polling the admin listener's /metrics and
 * parsing the Prometheus text in the browser, so the page shows exactly what a scraper sees and
 * the proxy has one data path (docs/proxy.md, "Dashboard").
 *
 * Access is the admin listener's rule for every request: with admin_token set, the page and
 * each /metrics poll need the token. A browser cannot send a bearer token on a navigation, so
 * the admin listener also accepts it as the password of HTTP Basic credentials (any user name),
 * and its 401 answers carry a Basic challenge; the browser then sends the same credentials with
 * the page's polls. Base64 is decoded with libcrypto (linked already, for libcorral's MD5).
 */
#include "dashboard.h"

#include <ctype.h>
#include <string.h>

#include <openssl/evp.h>

extern const unsigned char px_dashboard_html[];
extern const size_t px_dashboard_html_len;

const char *px_dashboard_page(size_t *len) {
    *len = px_dashboard_html_len;
    return (const char *)px_dashboard_html;
}

bool px_token_equal(const char *want, const char *got, size_t got_len) {
    size_t wl = strlen(want);
    unsigned char diff = (unsigned char)(wl != got_len);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned char)(want[i] ^ (i < got_len ? got[i] : 0));
    return diff == 0;
}

bool px_basic_has_token(const char *want, const char *b64, size_t len) {
    unsigned char plain[384];
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof plain) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b64[i];
        if (!(isalnum(c) || c == '+' || c == '/' || (c == '=' && i + 2 >= len))) return false;
    }
    if (b64[len - 2] == '=' && b64[len - 1] != '=') return false;
    /* EVP_DecodeBlock decodes the padding as zero bytes: drop one per '='. */
    int n = EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)len);
    if (n < 0) return false;
    size_t plain_len = (size_t)n - (b64[len - 1] == '=') - (b64[len - 2] == '=');
    const unsigned char *colon = memchr(plain, ':', plain_len);
    if (!colon) return false;
    size_t off = (size_t)(colon + 1 - plain);
    return px_token_equal(want, (const char *)colon + 1, plain_len - off);
}
