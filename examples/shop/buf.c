/*
 * buf.c - the shop's growable byte buffer and intrusive list. The buffer records its first
 * failure (out of memory, a formatting error) and ignores every later append, so a page is
 * built with plain appends and checked once (pages.c turns a failed reply into a 500).
 */
#include "shop.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `n` more bytes plus a NUL; false (and `failed` set) when it cannot. */
static bool reserve(shop_buf *b, size_t n) {
    if (b->failed) return false;
    if (n < b->cap - b->len) return true;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= n)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void shop_buf_put(shop_buf *b, const void *p, size_t n) {
    if (!reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void shop_buf_puts(shop_buf *b, const char *s) {
    shop_buf_put(b, s, strlen(s));
}

void shop_buf_printf(shop_buf *b, const char *fmt, ...) {
    if (b->failed) return;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        shop_buf_put(b, small, (size_t)n);
        return;
    }
    /* Longer than the scratch space: format again, straight into the buffer. */
    if (!reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    int m = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (m != n) {
        b->data[b->len] = '\0';
        b->failed = true;
        return;
    }
    b->len += (size_t)n;
}

void shop_buf_free(shop_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void shop_list_init(shop_link *head) {
    head->prev = head->next = head;
}

void shop_list_push(shop_link *head, shop_link *l) {
    l->next = head;
    l->prev = head->prev;
    head->prev->next = l;
    head->prev = l;
}

void shop_list_remove(shop_link *l) {
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}
