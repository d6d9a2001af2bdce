/*
 * util.c - corral-proxy's small shared helpers: intrusive lists, the wall clock, the hash, a
 * request head copied.
 * They call nothing else of the proxy, so every file may use them.
 *
 * Threads: any thread; none keeps state.
 */
#include "proxy.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- Lists ---- */

void px_list_init(px_link *head) {
    head->prev = head->next = head;
}

void px_list_push(px_link *head, px_link *l) {
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

void px_list_remove(px_link *l) {
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

bool px_list_empty(const px_link *head) {
    return head->next == head;
}

/* ---- Clock and hash ---- */

int64_t px_now_ms(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t px_hash64(const void *data, size_t len, uint64_t seed) {
    return XXH3_64bits_withSeed(data, len, seed);
}

/* ---- Return codes ---- */

const char *px_strerror(int rc) {
    switch ((px_code)rc) {
    case PX_OK: return "ok";
    case PX_COMMIT_PURGED: return "purged while fetching";
    case PX_FLIGHT_PASS: return "not storable (pass)";
    case PX_FLIGHT_STREAM: return "streaming the leader's answer";
    case PX_FLEET_WAKE: return "another proxy's fetch ended";
    case PX_FLIGHT_ORIGIN_TIMEOUT: return "origin timed out";
    case PX_FLIGHT_ORIGIN_ERROR: return "origin failed";
    case PX_ENOMEM: return "out of memory";
    case PX_ESTAMP: return "purge stamp not written";
    case PX_ESTORE: return "store error";
    case PX_EFORMAT: return "malformed stored data";
    case PX_ETOOBIG: return "too large";
    case PX_EINVAL: return "invalid argument";
    case PX_EIO: return "input/output error";
    case PX_ECONNREFUSED: return "connection refused";
    case PX_ECONNRESET: return "connection reset by peer";
    case PX_EOF: return "connection closed";
    case PX_EPROTO: return "protocol error";
    case PX_ETIMEDOUT: return "timed out";
    case PX_EPIPE: return "broken pipe";
    case PX_EADDRINUSE: return "address in use";
    case PX_EACCES: return "permission denied";
    }
    return "unknown error";
}

int px_from_uv(int uv_err) {
    if (uv_err >= 0) return uv_err;
    switch (uv_err) {
    case UV_ENOMEM: return PX_ENOMEM;
    case UV_EINVAL: return PX_EINVAL;
    case UV_ECONNREFUSED: return PX_ECONNREFUSED;
    case UV_ECONNRESET: return PX_ECONNRESET;
    case UV_EOF: return PX_EOF;
    case UV_EPROTO: return PX_EPROTO;
    case UV_ETIMEDOUT: return PX_ETIMEDOUT;
    case UV_EPIPE: return PX_EPIPE;
    case UV_EADDRINUSE: return PX_EADDRINUSE;
    case UV_EACCES: return PX_EACCES;
    default: return PX_EIO;
    }
}

int px_from_corral(int rc) {
    if (rc >= 0) return rc;
    switch (rc) {
    case CORRAL_ENOMEM: return PX_ENOMEM;
    case CORRAL_ETOOBIG: return PX_ETOOBIG;
    case CORRAL_ENOSPC: return PX_ETOOBIG;
    case CORRAL_EINVAL: return PX_EINVAL;
    default: return PX_ESTORE;
    }
}

const char *px_result_name(px_result r) {
    switch (r) {
    case PX_R_HIT: return "HIT";
    case PX_R_MISS: return "MISS";
    case PX_R_COALESCED: return "COALESCED";
    case PX_R_STALE: return "STALE";
    case PX_R_STALE_IF_ERROR: return "STALE_IF_ERROR";
    case PX_R_REVALIDATED: return "REVALIDATED";
    case PX_R_PASS: return "PASS";
    case PX_R_ERROR: return "ERROR";
    case PX_R_NONE: break;
    }
    return "-";
}

/* ---- Messages ---- */

int px_msg_copy(const corral_http_msg *m, char **buf, corral_http_header **hdrs,
                corral_http_msg *out) {
    size_t size = m->method_len + m->target_len + 16;
    for (size_t i = 0; i < m->n_headers; i++)
        size += m->headers[i].name_len + m->headers[i].value_len + 4;
    size += 2;
    *buf = malloc(size);
    *hdrs = calloc(m->n_headers + 1, sizeof **hdrs);
    if (!*buf || !*hdrs) return -1;
    char *p = *buf;
    memcpy(p, m->method_name, m->method_len);
    p += m->method_len;
    *p++ = ' ';
    memcpy(p, m->target, m->target_len);
    p += m->target_len;
    memcpy(p, m->version_minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
    p += 11;
    for (size_t i = 0; i < m->n_headers; i++) {
        const corral_http_header *h = &m->headers[i];
        memcpy(p, h->name, h->name_len);
        p += h->name_len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, h->value, h->value_len);
        p += h->value_len;
        *p++ = '\r';
        *p++ = '\n';
    }
    *p++ = '\r';
    *p++ = '\n';
    size_t len = (size_t)(p - *buf);
    corral_http_limits lim;
    corral_http_limits_init(&lim);
    lim.max_head_bytes = len + 1;
    lim.max_headers = m->n_headers + 1;
    return corral_http_parse_head(CORRAL_HTTP_REQUEST, *buf, len, &lim, *hdrs, m->n_headers + 1,
                                  out, NULL) == CORRAL_OK
               ? 0
               : -1;
}
