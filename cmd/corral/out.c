/*
 * out.c - how the CLI prints values and numbers it did not make (escaped for a terminal, or as
 * JSON), and parses TTLs and integers from the command line.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

bool out_is_utf8(const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(p + i, len - i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

void out_escaped(FILE *f, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t n = utf8_seq(p + i, len - i);
            if (n > 1) {
                fwrite(p + i, 1, n, f);
                i += n;
                continue;
            }
        }
        switch (c) {
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c >= 0x7f)
                fprintf(f, "\\x%02x", c);
            else
                fputc(c, f);
        }
        i++;
    }
}

void out_json_str(FILE *f, const void *data, size_t len) {
    const unsigned char *p = data;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t n = utf8_seq(p + i, len - i);
            if (n > 1)
                fwrite(p + i, 1, n, f);
            else
                fprintf(f, "\\u%04x", c);
            i += n > 1 ? n : 1;
            continue;
        }
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
        i++;
    }
    fputc('"', f);
}

void out_json_num(FILE *f, double v) {
    if (!isfinite(v))
        fputs("null", f);
    else if (v == floor(v) && fabs(v) < 9e15)
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.6g", v);
}

bool parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool parse_ttl(const char *s, int64_t *ms) {
    if (!s || !*s) return false;
    if (strcmp(s, "none") == 0) {
        *ms = CORRAL_TTL_FOREVER;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return false;
    double scale = 1000.0;
    if (strcmp(end, "ms") == 0)
        scale = 1.0;
    else if (strcmp(end, "s") != 0 && *end)
        return false;
    double r = v * scale;
    if (r > 9e15) return false;
    *ms = (int64_t)(r + 0.5);
    return true;
}

const char *out_store_why(corral *c, int rc, char *buf, size_t cap) {
    const char *code = rc == CORRAL_MISS ? "the store failed the read" : corral_strerror(rc);
    if (rc != CORRAL_MISS && rc != CORRAL_ESTORE && rc != CORRAL_ETIMEDOUT && rc != CORRAL_ENOMEM)
        return code; /* not the store's doing */
    corral_server_status st;
    for (size_t i = 0; corral_store_status(c, i, &st) == CORRAL_OK; i++) {
        if (st.reason == CORRAL_REASON_NONE) continue;
        int n = snprintf(buf, cap, "%s: %s: %s (%s)", code, st.server, st.msg,
                         corral_store_reason_name(st.reason));
        if (n > 0) return buf;
    }
    return code;
}
