/*
 * redis_django.c - Django's cache wire format: raw integers, pickled str and bytes.
 * See redis_django.h for the rules; opcodes as Python's Lib/pickletools.py names them.
 */
#include "redis_django.h"

#include <string.h>

/* Pickle opcodes of the subset. */
#define OP_PROTO            0x80 /* + 1 byte: protocol version */
#define OP_FRAME            0x95 /* + 8 bytes LE: length of the frame that follows */
#define OP_SHORT_BINUNICODE 0x8c /* + 1 byte length + UTF-8 */
#define OP_BINUNICODE       0x58 /* 'X' + 4 bytes LE length + UTF-8 */
#define OP_BINUNICODE8      0x8d /* + 8 bytes LE length + UTF-8 */
#define OP_SHORT_BINBYTES   0x43 /* 'C' + 1 byte length + bytes */
#define OP_BINBYTES         0x42 /* 'B' + 4 bytes LE length + bytes */
#define OP_BINBYTES8        0x8e /* + 8 bytes LE length + bytes */
#define OP_MEMOIZE          0x94
#define OP_BINPUT           0x71 /* 'q' + 1 byte */
#define OP_LONG_BINPUT      0x72 /* 'r' + 4 bytes */
#define OP_STOP             0x2e /* '.' */

#define WRITE_PROTOCOL 4  /* pickle.loads of every Python 3.4+ reads it */
#define MAX_PROTOCOL   5  /* the highest a pickle we read may declare */
#define MAX_RAW_INT    20 /* "-9223372036854775808" */

/* A canonical decimal integer: what Django stores raw and reads back as an int, byte for byte. */
static bool is_canonical_int(const unsigned char *s, size_t len) {
    size_t i = len > 0 && s[0] == '-' ? 1 : 0;
    if (len == i || len > MAX_RAW_INT) return false;
    if (s[i] == '0' && len != i + 1) return false; /* "007" would read back as "7" */
    if (s[i] == '0' && i == 1) return false;       /* "-0" would read back as "0" */
    for (; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Python
 * decodes a pickled str the same way. */
static bool is_utf8(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            min = 0x80;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            min = 0x800;
            c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if (len - i <= n) return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return false;
        i += n + 1;
    }
    return true;
}

size_t corral__django_encoded_len(const void *val, size_t len) {
    return corral__django_encoded_len_as(val, len, false);
}

void corral__django_encode(const void *val, size_t len, unsigned char *out) {
    corral__django_encode_as(val, len, false, out);
}

size_t corral__django_encoded_len_as(const void *val, size_t len, bool as_bytes) {
    const unsigned char *s = val;
    if (!as_bytes && is_canonical_int(s, len)) return len;
    size_t len_bytes = len <= 0xff ? 1 : len <= 0xffffffffu ? 4 : 8;
    return 2 + 1 + len_bytes + len + 1; /* PROTO v, opcode, length, payload, STOP */
}

static void put_le(unsigned char *out, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

void corral__django_encode_as(const void *val, size_t len, bool as_bytes, unsigned char *out) {
    const unsigned char *s = val;
    if (!as_bytes && is_canonical_int(s, len)) {
        memcpy(out, s, len);
        return;
    }
    bool text = !as_bytes && is_utf8(s, len);
    size_t n = 0;
    out[n++] = OP_PROTO;
    out[n++] = WRITE_PROTOCOL;
    size_t len_bytes;
    if (len <= 0xff) {
        out[n++] = text ? OP_SHORT_BINUNICODE : OP_SHORT_BINBYTES;
        len_bytes = 1;
    } else if (len <= 0xffffffffu) {
        out[n++] = text ? OP_BINUNICODE : OP_BINBYTES;
        len_bytes = 4;
    } else {
        out[n++] = text ? OP_BINUNICODE8 : OP_BINBYTES8;
        len_bytes = 8;
    }
    put_le(out + n, len, len_bytes);
    n += len_bytes;
    if (len) memcpy(out + n, s, len);
    out[n + len] = OP_STOP;
}

static uint64_t get_le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Skips FRAME opcodes: they only announce lengths (protocol 4+). */
static const unsigned char *skip_frames(const unsigned char *p, const unsigned char *end) {
    while (end - p >= 9 && p[0] == OP_FRAME) {
        if (get_le(p + 1, 8) > (uint64_t)(end - p - 9)) return NULL; /* a frame past the end */
        p += 9;
    }
    return p;
}

int corral__django_decode(const void *in, size_t len, const unsigned char **data,
                          size_t *data_len) {
    const unsigned char *p = in, *end = p + len;
    *data = p;
    *data_len = len;
    if (len < 2 || p[0] != OP_PROTO) return CORRAL_OK; /* digits, or another client's bytes */
    *data = NULL;
    *data_len = 0;
    if (p[1] > MAX_PROTOCOL) return CORRAL_EFORMAT;
    p = skip_frames(p + 2, end);
    if (!p || p == end) return CORRAL_EFORMAT;
    size_t len_bytes;
    switch (*p++) {
    case OP_SHORT_BINUNICODE:
    case OP_SHORT_BINBYTES: len_bytes = 1; break;
    case OP_BINUNICODE:
    case OP_BINBYTES: len_bytes = 4; break;
    case OP_BINUNICODE8:
    case OP_BINBYTES8: len_bytes = 8; break;
    default: return CORRAL_EFORMAT; /* another type: a float, an int too big, a list, ... */
    }
    if ((size_t)(end - p) < len_bytes) return CORRAL_EFORMAT;
    uint64_t n = get_le(p, len_bytes);
    p += len_bytes;
    if (n > (uint64_t)(end - p)) return CORRAL_EFORMAT;
    const unsigned char *payload = p;
    p += n;
    p = skip_frames(p, end);
    if (!p || p == end) return CORRAL_EFORMAT;
    if (*p == OP_MEMOIZE) {
        p += 1;
    } else if (*p == OP_BINPUT) {
        p += end - p >= 2 ? 2 : end - p;
    } else if (*p == OP_LONG_BINPUT) {
        p += end - p >= 5 ? 5 : end - p;
    }
    if (end - p != 1 || *p != OP_STOP) return CORRAL_EFORMAT; /* one object, then nothing */
    *data = payload;
    *data_len = (size_t)n;
    return CORRAL_OK;
}
