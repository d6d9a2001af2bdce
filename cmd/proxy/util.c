/*
 * util.c - corral-proxy's small shared helpers: intrusive lists, the wall clock and the hash.
 * They call nothing else of the proxy, so every file may use them.
 *
 * Threads: any thread; none keeps state.
 */
#include "proxy.h"

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
