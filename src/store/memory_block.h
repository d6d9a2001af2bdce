/*
 * memory_block.h - the blocks behind the memory store's entries: how they are allocated, what
 * each costs, and giving freed heap pages back to the system. docs/memory-density.md has the
 * measurements behind each rule.
 *
 * With the application's allocator hooks, a block is what the hooks give, and it costs exactly
 * the bytes asked for: the hooks' memory is the application's to bound, and tests count it to
 * the byte. With libc's malloc (no hooks), the store bounds what the process really holds:
 * - a block of `map_min` bytes or more (32 KiB, more in a store over 512 MiB:
 *   corral__mem_map_min) is an anonymous mapping of its own, rounded to pages. glibc raises its
 *   mmap threshold each time it unmaps a block it mapped, after which large blocks land in the
 *   heap and fragment it; ours never do, and blocks of 32 KiB and more, half the bytes of a
 *   mixed-size load, leave no holes in the heap. (At 16 KiB the pages' rounding cost the
 *   mixed-size density 0.5 % more for the same RSS bound.)
 * - a freed mapping of at most CORRAL__MEM_CACHE_PAGES pages is kept, resident, for the next
 *   block of its size or a little smaller (its tail unmapped), while the kept ones total at
 *   most `cache_cap` bytes: a fresh mapping costs a page fault a page, which made mixed-size
 *   writes twice as slow without the cache. The rest are unmapped.
 * - a smaller block costs what glibc's malloc holds for it: the request plus the 8-byte size
 *   word, rounded up to 16, at least 32 bytes;
 * - once `trim_every` bytes (half the bound plus 4 MiB) were freed since the last
 *   trim, corral__mem_blocks_trim gives the heap's free pages back (malloc_trim): glibc returns
 *   the top of its heap by itself, never a hole inside it. The store calls it on its call_rcu
 *   thread, after a batch of frees, never on a writer's or reader's path.
 * Under a sanitizer, blocks are never mapped and the heap is never trimmed: AddressSanitizer
 * keeps seeing every entry (bounds, leaks), and the sanitizers' allocators are not glibc's.
 *
 * Threads: every function is thread-safe; the struct is immutable after init but for its
 * atomic counters and the kept mappings, which `cache_lock` guards (a leaf: no lock is taken and
 * no system call made under it). A block is freed by whichever thread drops its last reference,
 * an application's thread included (corral_value_unref), so that call too may hold the lock: a
 * fork while another thread is inside it is a fork during a corral call (fork.h).
 */
#ifndef CORRAL_STORE_MEMORY_BLOCK_H
#define CORRAL_STORE_MEMORY_BLOCK_H

#include "../common.h"
#include "../spin.h"

#include <stdatomic.h>
#include <stdbool.h>

#define CORRAL__MEM_MAP_MIN ((size_t)32 << 10)
/* At most this many blocks of a store are mapped at once (its bound over map_min): with the kept
 * ones and those in the limbo, about 18,000 mappings, within Linux's default of 65,530 a
 * process (vm.max_map_count) with room for the application's own. */
#define CORRAL__MEM_MAP_BLOCKS 16384u
/* Mappings of at most this many pages are kept for reuse when freed (1 MiB of 4 KiB pages). */
#define CORRAL__MEM_CACHE_PAGES 256u

typedef struct corral__mem_blocks {
    const corral__allocator *alloc;
    bool real_cost;        /* libc: cost is what glibc or the mapping holds; hooks: bytes asked */
    size_t map_min;        /* blocks this big or bigger are mapped; SIZE_MAX: never */
    size_t page;           /* the system's page size */
    size_t trim_every;     /* freed bytes between two trims; 0: never trim */
    _Atomic size_t freed;  /* cost freed since the last trim */
    _Atomic size_t mapped; /* cost of the blocks mapped now (tests, stats) */
    _Atomic size_t trims;  /* trims done (tests) */
    /* Freed mappings kept for reuse, by their pages: each linked through its first word. */
    corral__spin cache_lock;
    void *cache[CORRAL__MEM_CACHE_PAGES + 1];
    size_t cache_cap;      /* bytes the kept mappings may total */
    _Atomic size_t cached; /* bytes they total now; changed under cache_lock */
    _Atomic size_t reused; /* blocks served from them (tests) */
} corral__mem_blocks;

/* Sets up the blocks of a store bounded at `max_bytes` that allocates from `a` (which must
 * outlive them). */
void corral__mem_blocks_init(corral__mem_blocks *b, const corral__allocator *a, size_t max_bytes);

/* Unmaps the mappings kept for reuse. Every block must have been freed. */
void corral__mem_blocks_destroy(corral__mem_blocks *b);

/* What a block of `n` bytes costs (>= n; SIZE_MAX when n is too large to allocate). Inline:
 * an overwrite counts its entry's cost out and in, and reports both. */
static inline size_t corral__mem_block_cost(const corral__mem_blocks *b, size_t n) {
    if (!b->real_cost) return n;
    if (n > SIZE_MAX - b->page) return SIZE_MAX;
    if (n >= b->map_min) return (n + b->page - 1) / b->page * b->page;
    /* glibc: the size word, 16-byte alignment, 32 bytes at least (also a fair guess elsewhere). */
    return CORRAL_MAX((n + 8 + 15) & ~(size_t)15, (size_t)32);
}

/* The smallest block a store bounded at `max_bytes` maps (with libc's malloc, no sanitizer):
 * CORRAL__MEM_MAP_MIN, or the bound over CORRAL__MEM_MAP_BLOCKS in a larger store, so that its
 * blocks never need more mappings than the kernel gives a process. */
static inline size_t corral__mem_map_min(size_t max_bytes) {
    return CORRAL_MAX(CORRAL__MEM_MAP_MIN, max_bytes / CORRAL__MEM_MAP_BLOCKS);
}

/* A block of `n` bytes, or NULL. Free it with corral__mem_block_free and the same `n`. */
void *corral__mem_block_alloc(corral__mem_blocks *b, size_t n);

/* Frees a block of `n` bytes (NULL accepted): a mapping is kept for reuse while there is room,
 * or unmapped; a block of the heap counts its cost toward the next trim. */
void corral__mem_block_free(corral__mem_blocks *b, void *p, size_t n);

/* corral__mem_block_free of a block that no later block is likely to reuse, never kept: a
 * bucket table (the next one a resize asks for is twice its size). Kept, the old tables of a
 * store that grew to 1M entries held 4 bytes an entry of RSS. */
void corral__mem_block_free_unkept(corral__mem_blocks *b, void *p, size_t n);

/* Trims the heap if trim_every bytes were freed since the last trim; returns true if it did.
 * Can take milliseconds on a large heap: call it where no request waits. */
bool corral__mem_blocks_trim(corral__mem_blocks *b);

#endif /* CORRAL_STORE_MEMORY_BLOCK_H */
