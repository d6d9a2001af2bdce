/*
 * fragment.c - Django's make_template_fragment_key, to the byte:
 *
 *     hasher = md5()
 *     for arg in vary_on: hasher.update(str(arg).encode()); hasher.update(b":")
 *     return f"template.cache.{fragment_name}.{hasher.hexdigest()}"
 *
 * MD5 comes from OpenSSL's EVP interface (libcrypto): a Debian library where one does the job
 * (docs/dependencies.md).
 */
#include "common.h"

#include <string.h>
#include <openssl/evp.h>

#define FRAG_PREFIX "template.cache."

int corral_fragment_key(const char *name, size_t name_len, const corral_buf *vary, size_t n_vary,
                        char *out, size_t cap, size_t *out_len) {
    if (out_len) *out_len = 0;
    if ((!name && name_len) || (!vary && n_vary) || !out_len || (!out && cap)) return CORRAL_EINVAL;
    const size_t plen = sizeof FRAG_PREFIX - 1;
    if (name_len > SIZE_MAX - plen - 34) return CORRAL_EINVAL;
    size_t need = plen + name_len + 1 + 32;
    if (cap < need + 1) {
        *out_len = need;
        return CORRAL_ENOSPC;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return CORRAL_ENOMEM;
    int ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    for (size_t i = 0; ok && i < n_vary; i++) {
        if (vary[i].len) ok = EVP_DigestUpdate(ctx, vary[i].data, vary[i].len);
        if (ok) ok = EVP_DigestUpdate(ctx, ":", 1);
    }
    if (ok) ok = EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);
    if (!ok || md_len != 16) return CORRAL_ENOMEM;

    static const char hex[] = "0123456789abcdef";
    char *p = out;
    memcpy(p, FRAG_PREFIX, plen);
    p += plen;
    if (name_len) memcpy(p, name, name_len);
    p += name_len;
    *p++ = '.';
    for (unsigned i = 0; i < 16; i++) {
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 15];
    }
    *p = '\0';
    *out_len = need;
    return CORRAL_OK;
}
