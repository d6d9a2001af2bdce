/*
 * dashboard.h - the admin listener's dashboard page and the browser's form of the admin token
 * (dashboard.c). Threads: any; these functions keep no state.
 */
#ifndef CORRAL_PROXY_DASHBOARD_H
#define CORRAL_PROXY_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

/* Header fields of the page's answer (each ending in CRLF): never cached, and a
 * Content-Security-Policy that lets it load nothing from anywhere and fetch only from the admin
 * listener itself. */
#define PX_DASHBOARD_FIELDS                                                           \
    "Cache-Control: no-store\r\n"                                                     \
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "       \
    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; " \
    "form-action 'none'; frame-ancestors 'none'\r\n"                                  \
    "X-Content-Type-Options: nosniff\r\n"

/* The challenge of a 401 from the admin listener: a browser asks for the token as a password. */
#define PX_ADMIN_CHALLENGE "WWW-Authenticate: Basic realm=\"corral-proxy admin\"\r\n"

/* The page (cmd/proxy/dashboard.html, compiled in): its bytes, borrowed for the process's life,
 * and their length. */
const char *px_dashboard_page(size_t *len);

/* Whether the `got_len` bytes at `got` are the token `want` (NUL-terminated), compared in time
 * that does not depend on where they differ. */
bool px_token_equal(const char *want, const char *got, size_t got_len);

/* Whether an Authorization value's credentials after "Basic " (`b64`, `len` bytes of base64 of
 * "user:password") carry the token `want` as the password; the user name is ignored. Malformed
 * base64 is false. */
bool px_basic_has_token(const char *want, const char *b64, size_t len);

#endif
