/*
 * memory_block.c - the blocks behind the memory store's entries. See memory_block.h for the
 * rules and docs/memory-density.md for why.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "memory_block.h"

#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MEM_BLOCK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MEM_BLOCK_SANITIZED 1
#endif
#endif

/* A trim after each max_bytes / MEM_TRIM_DIV + MEM_TRIM_SLACK bytes freed. Every trim costs the
 * writes that follow it the page faults of the pages it returned: with an eighth of the bound
 * (the first setting) the mixed-size writes of bench_memory took about twice as long as with
 * no trim; with half, 1.0 to 1.4x, and the RSS held the same (docs/memory-density.md). */
#define MEM_TRIM_DIV   2u
#define MEM_TRIM_SLACK ((size_t)4 << 20)

void corral__mem_blocks_init(corral__mem_blocks *b, const corral__allocator *a, size_t max_bytes) {
    long page = sysconf(_SC_PAGESIZE);
    b->alloc = a;
    b->real_cost = corral__allocator_is_libc(a);
    b->page = page > 0 ? (size_t)page : 4096;
    b->map_min = SIZE_MAX;
    b->trim_every = 0;
#if !defined(MEM_BLOCK_SANITIZED)
    if (b->real_cost) b->map_min = CORRAL__MEM_MAP_MIN;
#if defined(__GLIBC__)
    if (b->real_cost) b->trim_every = max_bytes / MEM_TRIM_DIV + MEM_TRIM_SLACK;
#endif
#endif
    (void)max_bytes;
    atomic_init(&b->freed, 0);
    atomic_init(&b->mapped, 0);
    atomic_init(&b->trims, 0);
}

void *corral__mem_block_alloc(corral__mem_blocks *b, size_t n) {
    if (n < b->map_min) return corral__alloc(b->alloc, n);
    size_t cost = corral__mem_block_cost(b, n);
    if (cost == SIZE_MAX) return NULL;
    void *p = mmap(NULL, cost, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    atomic_fetch_add_explicit(&b->mapped, cost, memory_order_relaxed);
    return p;
}

void corral__mem_block_free(corral__mem_blocks *b, void *p, size_t n) {
    if (!p) return;
    size_t cost = corral__mem_block_cost(b, n);
    if (n >= b->map_min) {
        CORRAL_MUST(munmap(p, cost) == 0);
        atomic_fetch_sub_explicit(&b->mapped, cost, memory_order_relaxed);
    } else {
        corral__free(b->alloc, p, n);
        if (b->trim_every) atomic_fetch_add_explicit(&b->freed, cost, memory_order_relaxed);
    }
}

bool corral__mem_blocks_trim(corral__mem_blocks *b) {
    if (!b->trim_every) return false;
    size_t freed = atomic_load_explicit(&b->freed, memory_order_relaxed);
    if (freed < b->trim_every) return false;
    /* One caller wins the count; the others see less than trim_every and go. */
    if (!atomic_compare_exchange_strong_explicit(&b->freed, &freed, 0, memory_order_relaxed,
                                                 memory_order_relaxed))
        return false;
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
    atomic_fetch_add_explicit(&b->trims, 1, memory_order_relaxed);
    return true;
}
