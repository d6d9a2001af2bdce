/*
 * memory_block.c - the blocks behind the memory store's entries. See memory_block.h for the
 * rules and docs/memory-density.md for why.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "memory_block.h"

#include <sys/mman.h>
#include <string.h>
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
/* The mappings kept for reuse total at most max_bytes / MEM_CACHE_DIV: RSS the bound does not
 * count, so a share of the slack the bound allows. bench_memory's 5 GB of mixed sizes into
 * 64 MB, with blocks mapped from 16 KiB, the limbo capped and fresh mappings populated, took
 * 6.5 s with a sixteenth kept (74 MB of RSS growth), 8.7 s with a thirty-second (72 MB) and
 * 4.7 s with an eighth (79 MB); with none kept (nor the cap, nor populated), 20 s. The table in
 * docs/memory-density.md has each step. */
#define MEM_CACHE_DIV 16u

#ifdef MAP_POPULATE /* Linux */
#define MEM_POPULATE MAP_POPULATE
#else
#define MEM_POPULATE 0
#endif

void corral__mem_blocks_init(corral__mem_blocks *b, const corral__allocator *a, size_t max_bytes) {
    long page = sysconf(_SC_PAGESIZE);
    b->alloc = a;
    b->real_cost = corral__allocator_is_libc(a);
    b->page = page > 0 ? (size_t)page : 4096;
    b->map_min = SIZE_MAX;
    b->trim_every = 0;
#if !defined(MEM_BLOCK_SANITIZED)
    if (b->real_cost) b->map_min = corral__mem_map_min(max_bytes);
#if defined(__GLIBC__)
    if (b->real_cost) b->trim_every = max_bytes / MEM_TRIM_DIV + MEM_TRIM_SLACK;
#endif
#endif
    b->cache_cap = max_bytes / MEM_CACHE_DIV;
    atomic_init(&b->freed, 0);
    atomic_init(&b->mapped, 0);
    atomic_init(&b->trims, 0);
    corral__spin_init(&b->cache_lock);
    for (size_t i = 0; i <= CORRAL__MEM_CACHE_PAGES; i++)
        b->cache[i] = NULL;
    atomic_init(&b->cached, 0);
    atomic_init(&b->reused, 0);
}

void corral__mem_blocks_destroy(corral__mem_blocks *b) {
    for (size_t pages = 0; pages <= CORRAL__MEM_CACHE_PAGES; pages++) {
        while (b->cache[pages]) {
            void *p = b->cache[pages];
            memcpy(&b->cache[pages], p, sizeof(void *));
            CORRAL_MUST(munmap(p, pages * b->page) == 0);
        }
    }
    atomic_store_explicit(&b->cached, 0, memory_order_relaxed);
    corral__spin_deinit(&b->cache_lock);
}

/* A kept mapping for a block of `pages` pages: one of exactly that size, or else the smallest
 * of up to half again as many, whose tail it unmaps. NULL when none is kept. */
static void *cache_take(corral__mem_blocks *b, size_t pages) {
    if (pages > CORRAL__MEM_CACHE_PAGES ||
        atomic_load_explicit(&b->cached, memory_order_relaxed) == 0)
        return NULL;
    size_t last = CORRAL_MIN(pages + pages / 2, (size_t)CORRAL__MEM_CACHE_PAGES);
    void *p = NULL;
    size_t got = pages;
    corral__spin_lock(&b->cache_lock);
    for (; got <= last; got++) {
        if ((p = b->cache[got]) != NULL) {
            memcpy(&b->cache[got], p, sizeof(void *));
            atomic_store_explicit(
                &b->cached, atomic_load_explicit(&b->cached, memory_order_relaxed) - got * b->page,
                memory_order_relaxed);
            break;
        }
    }
    corral__spin_unlock(&b->cache_lock);
    if (!p) return NULL;
    if (got > pages) CORRAL_MUST(munmap((char *)p + pages * b->page, (got - pages) * b->page) == 0);
    atomic_fetch_add_explicit(&b->reused, 1, memory_order_relaxed);
    return p;
}

/* Keeps the freed mapping `p` of `pages` pages for reuse if the cache has room for it. */
static bool cache_put(corral__mem_blocks *b, void *p, size_t pages) {
    size_t bytes = pages * b->page;
    if (pages > CORRAL__MEM_CACHE_PAGES || bytes > b->cache_cap) return false;
    bool kept = false;
    corral__spin_lock(&b->cache_lock);
    size_t cached = atomic_load_explicit(&b->cached, memory_order_relaxed);
    if (cached + bytes <= b->cache_cap) {
        memcpy(p, &b->cache[pages], sizeof(void *));
        b->cache[pages] = p;
        atomic_store_explicit(&b->cached, cached + bytes, memory_order_relaxed);
        kept = true;
    }
    corral__spin_unlock(&b->cache_lock);
    return kept;
}

void *corral__mem_block_alloc(corral__mem_blocks *b, size_t n) {
    if (n < b->map_min) return corral__alloc(b->alloc, n);
    size_t cost = corral__mem_block_cost(b, n);
    if (cost == SIZE_MAX) return NULL;
    void *p = cache_take(b, cost / b->page);
    /* Populated: the caller writes the whole block at once, and one call that faults every
     * page in costs less than a fault a page (the mixed-size writes ran 1.4x faster). */
    if (!p)
        p = mmap(NULL, cost, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MEM_POPULATE, -1,
                 0);
    if (p == MAP_FAILED) return NULL;
    atomic_fetch_add_explicit(&b->mapped, cost, memory_order_relaxed);
    return p;
}

static void block_free(corral__mem_blocks *b, void *p, size_t n, bool keep) {
    if (!p) return;
    size_t cost = corral__mem_block_cost(b, n);
    if (n >= b->map_min) {
        atomic_fetch_sub_explicit(&b->mapped, cost, memory_order_relaxed);
        if (!keep || !cache_put(b, p, cost / b->page)) CORRAL_MUST(munmap(p, cost) == 0);
    } else {
        corral__free(b->alloc, p, n);
        if (b->trim_every) atomic_fetch_add_explicit(&b->freed, cost, memory_order_relaxed);
    }
}

void corral__mem_block_free(corral__mem_blocks *b, void *p, size_t n) {
    block_free(b, p, n, true);
}

void corral__mem_block_free_unkept(corral__mem_blocks *b, void *p, size_t n) {
    block_free(b, p, n, false);
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
