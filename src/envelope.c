/*
 * envelope.c - reading and writing the value envelope (layout in envelope.h).
 */
#include "envelope.h"

#include <string.h>

static uint64_t get_le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

size_t corral__env_hdr_len(const void *bytes, size_t len) {
    const unsigned char *p = bytes;
    if (len < CORRAL__ENV_MIN || p[0] != CORRAL__ENV_MAGIC || p[1] != CORRAL__ENV_FORMAT) return 0;
    if (p[2] & ~(CORRAL__ENV_TIMES | CORRAL__ENV_TAGS)) return 0;
    size_t h = (size_t)get_le(p + 3, 2);
    size_t min = CORRAL__ENV_MIN + ((p[2] & CORRAL__ENV_TIMES) ? CORRAL__ENV_TIMES_LEN : 0) +
                 ((p[2] & CORRAL__ENV_TAGS) ? 1 : 0);
    if (h < min || h > len) return 0;
    /* Without tags the header has a fixed size: anything else is not ours. */
    if (!(p[2] & CORRAL__ENV_TAGS) && h != min) return 0;
    return h;
}

int corral__env_parse(const void *hdr, size_t hdr_len, corral__env *out) {
    const unsigned char *p = hdr;
    memset(out, 0, offsetof(corral__env, tags));
    if (corral__env_hdr_len(hdr, hdr_len) != hdr_len) return CORRAL_EINVAL;
    out->flags = p[2];
    size_t off = CORRAL__ENV_MIN;
    if (out->flags & CORRAL__ENV_TIMES) {
        out->expiry_ms = get_le(p + off, 8);
        out->delta_ms = (uint32_t)get_le(p + off + 8, 4);
        out->early_ms = (uint32_t)get_le(p + off + 12, 4);
        off += CORRAL__ENV_TIMES_LEN;
    }
    if (out->flags & CORRAL__ENV_TAGS) {
        size_t n = p[off++];
        if (n > CORRAL__ENV_MAX_TAGS) return CORRAL_EINVAL;
        for (size_t i = 0; i < n; i++) {
            corral__env_tag *t = &out->tags[i];
            if (off >= hdr_len) return CORRAL_EINVAL;
            t->name_len = p[off++];
            /* corral writes names of 1 to CORRAL__ENV_MAX_TAG bytes and non-empty versions. */
            if (t->name_len == 0 || t->name_len > CORRAL__ENV_MAX_TAG) return CORRAL_EINVAL;
            if (t->name_len > hdr_len - off) return CORRAL_EINVAL;
            t->name = (const char *)p + off;
            off += t->name_len;
            if (off >= hdr_len) return CORRAL_EINVAL;
            t->version_len = p[off++];
            if (t->version_len == 0 || t->version_len > hdr_len - off) return CORRAL_EINVAL;
            t->version = (const char *)p + off;
            off += t->version_len;
        }
        out->n_tags = n;
    }
    return off == hdr_len ? CORRAL_OK : CORRAL_EINVAL;
}

size_t corral__env_size(const corral__env *env) {
    size_t n = CORRAL__ENV_MIN;
    if (env->flags & CORRAL__ENV_TIMES) n += CORRAL__ENV_TIMES_LEN;
    if (env->flags & CORRAL__ENV_TAGS) {
        n += 1;
        for (size_t i = 0; i < env->n_tags; i++)
            n += 2 + env->tags[i].name_len + env->tags[i].version_len;
    }
    return n;
}

void corral__env_write(const corral__env *env, unsigned char *out) {
    size_t size = corral__env_size(env);
    assert(size <= UINT16_MAX);
    out[0] = CORRAL__ENV_MAGIC;
    out[1] = CORRAL__ENV_FORMAT;
    out[2] = env->flags;
    put_le(out + 3, size, 2);
    size_t off = CORRAL__ENV_MIN;
    if (env->flags & CORRAL__ENV_TIMES) {
        put_le(out + off, env->expiry_ms, 8);
        put_le(out + off + 8, env->delta_ms, 4);
        put_le(out + off + 12, env->early_ms, 4);
        off += CORRAL__ENV_TIMES_LEN;
    }
    if (env->flags & CORRAL__ENV_TAGS) {
        assert(env->n_tags <= CORRAL__ENV_MAX_TAGS);
        out[off++] = (unsigned char)env->n_tags;
        for (size_t i = 0; i < env->n_tags; i++) {
            const corral__env_tag *t = &env->tags[i];
            assert(t->name_len <= 255 && t->version_len <= 255);
            out[off++] = (unsigned char)t->name_len;
            memcpy(out + off, t->name, t->name_len);
            off += t->name_len;
            out[off++] = (unsigned char)t->version_len;
            memcpy(out + off, t->version, t->version_len);
            off += t->version_len;
        }
    }
    assert(off == size);
}
