/*
 * memory_block.h - the blocks behind the memory store's entries: how they are allocated, what
 * each costs, and giving freed heap pages back to the system. docs/memory-density.md has the
 * measurements behind each rule.
 *
 * With the application's allocator hooks, a block is what the hooks give, and it costs exactly
 * the bytes asked for: the hooks' memory is the application's to bound, and tests count it to
 * the byte. With libc's malloc (no hooks), the store bounds what the process really holds:
 * - a block of `map_min` bytes or more (32 KiB, more in a store over 512 MiB:
 *   corral__mem_map_min) is an anonymous mapping of its own, rounded to pages, so that large
 *   blocks never land in glibc's heap and fragment it;
 * - a freed mapping of at most CORRAL__MEM_CACHE_PAGES pages is kept, resident, for the next
 *   block of its size or a little smaller (its tail unmapped), while the kept ones total at
 *   most `cache_cap` bytes; the rest are unmapped.
 * - a block of at most CORRAL__MEM_SLAB_MAX bytes (4 KiB) is a slot of a slab of the store's
 *   own (or the heap's when the region is full): 64 KiB of slots of one size class, aligned to its
 * size, with no header a slot. The classes step by 8 bytes up to 256, then by a sixteenth of their
 * power of two (corral__mem_slab_class_of): a block costs its share of its slab
 * (corral__mem_slab_cost). Slabs are carved from 2 MiB chunks of one region of the process (huge
 * pages in a store of 256 MiB or more) and faulted in whole when first used. An emptied slab is
 * kept resident for any class up to `pool_cap`; past it, its pages go back to the system and its
 * chunk marks it cold, so a shift of the size mix leaves no memory with the old sizes. A destroyed
 * store leaves its chunks, resident, in a process-wide depot for the next store;
 * corral_release_memory unmaps them.
 * - a block between the two costs what glibc's malloc holds for it: the request plus the
 *   8-byte size word, rounded up to 16, at least 32 bytes;
 * - once `trim_every` bytes (half the bound plus 4 MiB) were freed since the last
 *   trim, corral__mem_blocks_trim gives the heap's free pages back (malloc_trim): glibc returns
 *   the top of its heap by itself, never a hole inside it. The store calls it on its call_rcu
 *   thread, after a batch of frees, never on a writer's or reader's path.
 * Under a sanitizer, blocks are never mapped and the heap is never trimmed. Slabs stay: under
 * AddressSanitizer a slot is poisoned but for the bytes asked, chunks are LeakSanitizer roots,
 * and destroy asserts every slab empty (a leaked entry).
 *
 * Threads: every function is thread-safe; the struct is immutable after init but for its
 * atomic counters, the kept mappings, which `cache_lock` guards, the slab classes, each behind
 * its own `lock`, and the kept slabs, behind `pool_lock`; the process's depot and region share
 * a lock, its far table has one (all leaves: no lock is taken and no system call made under
 * them). A block is freed by whichever thread drops its last reference,
 * an application's thread included (corral_value_unref), so that call too may hold them: a
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
 * process (vm.max_map_count) with room for the application's own. The slabs' chunks, in one
 * region, add one or two a 2 MiB where neighbours differ in protection or advice: at most 16,384
 * in all. */
#define CORRAL__MEM_MAP_BLOCKS 16384u
/* Mappings of at most this many pages are kept for reuse when freed (1 MiB of 4 KiB pages). */
#define CORRAL__MEM_CACHE_PAGES 256u

/* Blocks of at most this many bytes are slab slots (with libc's allocator): a 64 KiB slab holds
 * 15 of the largest at least. Each class's partly used slab is RSS the bound does not count, so
 * larger classes would need larger slabs, which cost a small store more than glibc's heap. */
#define CORRAL__MEM_SLAB_MAX     4096u
#define CORRAL__MEM_SLAB_CLASSES 96u /* 32 of 8-byte steps, then 16 an octave to 4 KiB */
#define CORRAL__MEM_SLAB_HDR     64u /* a slab's header, before its first slot */
#define CORRAL__MEM_SLAB_BYTES   ((size_t)64 << 10)

#define CORRAL__MEM_SLAB_CHUNK ((size_t)2 << 20)   /* slabs are carved from chunks this big */
#define CORRAL__MEM_DEPOT_MAX  ((size_t)256 << 20) /* the process's depot holds at most this */

typedef struct corral__mem_slab corral__mem_slab;   /* memory_block.c */
typedef struct corral__mem_chunk corral__mem_chunk; /* memory_block.c */

/* A size class: its slabs that have a free slot, behind `lock`. A line's size (the store is only
 * 16-aligned, so two classes may share a line): the call_rcu thread frees into one class while a
 * writer allocates from another. */
typedef union corral__mem_slab_class {
    struct {
        corral__spin lock;
        corral__mem_slab *partial; /* slabs with a free slot, the last one to gain one first */
        size_t slabs;              /* slabs of the class (tests, stats) */
    };
    char line[64];
} corral__mem_slab_class;
_Static_assert(sizeof(corral__mem_slab_class) == 64, "a class is one line");

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
    /* Slabs: blocks of at most slab_max bytes (0: none, with hooks) are slots of them. */
    size_t slab_max;
    bool huge;              /* the chunks ask for huge pages (a large store) */
    _Atomic size_t slabbed; /* bytes of the slabs in use by a class */
    _Atomic size_t chunked; /* bytes of the chunks mapped (tests, stats) */
    /* Under pool_lock: every chunk, the empty slabs kept resident and the chunks with cold
     * slabs. */
    corral__spin pool_lock;
    corral__mem_chunk *chunks;
    corral__mem_slab *pool;
    corral__mem_chunk *cold;
    size_t pool_cap;       /* bytes the resident empty slabs may total */
    size_t depot_share;    /* bytes of chunks destroy may leave in the depot */
    _Atomic size_t pooled; /* bytes they total now; changed under pool_lock */
    corral__mem_slab_class slab[CORRAL__MEM_SLAB_CLASSES];
} corral__mem_blocks;

/* The region: one reservation of the process's address space that every chunk is mapped in,
 * so that a slot is named by 31 bits, its offset in the region over 8 (memory_read.h, mem_ref).
 * 16 GiB of chunks at most; past them, slab_alloc fails as when the system refuses a chunk (the
 * memory store then puts its small entries on the heap). Reserved PROT_NONE (no memory, no
 * commit charge; 16 GiB of VSZ, which RLIMIT_AS counts) by the first store with slabs;
 * corral__mem_region is its address, or CORRAL__MEM_REGION_NONE (no address of user space:
 * corral__mem_in_region is false of every block) before, or if the system refused it. */
_Static_assert(sizeof(void *) == 8, "the region needs a 64-bit address space");
#define CORRAL__MEM_REGION_BYTES ((size_t)1 << 34)
#define CORRAL__MEM_REGION_NONE  ((uintptr_t)1 << 63)
extern _Atomic uintptr_t corral__mem_region;

static inline uintptr_t corral__mem_region_base(void) {
    return atomic_load_explicit(&corral__mem_region, memory_order_relaxed);
}

/* True when the block at `p` (not NULL) is a slot, in the region. Anywhere: whoever holds a
 * block of the region has seen the region's address, stored before its first chunk. */
static inline bool corral__mem_in_region(const void *p) {
    return (uintptr_t)p - corral__mem_region_base() < CORRAL__MEM_REGION_BYTES;
}

/* The far table: 31-bit names for blocks outside the region, process-wide (corral__mem_far_new
 * names one, corral__mem_far_get finds it, corral__mem_far_free frees the name). Its pages are
 * never freed, so a name may be looked up without a lock by whoever received it through an
 * acquire of what named it, until it is freed. 8 bytes of libc's a name, outside any store's
 * bound, kept at their peak for the process's life; the blocks it names stay reachable, so
 * LeakSanitizer does not report a leaked one: tests count the names (corral__mem_far_used). */
#define CORRAL__MEM_FAR_PAGE  4096u
#define CORRAL__MEM_FAR_PAGES 524288u
extern void *_Atomic *_Atomic corral__mem_far[CORRAL__MEM_FAR_PAGES];

/* The table's slot of the name `i`, whose page exists. */
static inline void *_Atomic *corral__mem_far_slot(uint32_t i) {
    void *_Atomic *page =
        atomic_load_explicit(&corral__mem_far[i / CORRAL__MEM_FAR_PAGE], memory_order_relaxed);
    return &page[i % CORRAL__MEM_FAR_PAGE];
}

static inline void *corral__mem_far_get(uint32_t i) {
    return atomic_load_explicit(corral__mem_far_slot(i), memory_order_relaxed);
}

/* A name (1 .. 2^31 - 1) for the block at `p`, or 0 when the allocator refuses a page of the
 * table or every name is taken. */
uint32_t corral__mem_far_new(void *p);
void corral__mem_far_free(uint32_t i);
/* Names given and not freed (tests). */
size_t corral__mem_far_used(void);

/* Tests: chunks are mapped only in the region's first `places` places (2 MiB each) from now on;
 * SIZE_MAX: all of them. */
void corral__mem_region_limit(size_t places);

/* The size class of a slot for a block of `n` bytes (1 <= n <= CORRAL__MEM_SLAB_MAX): 8-byte
 * steps up to 256, then 16 steps an octave, so a slot wastes at most a sixteenth past 256. */
static inline unsigned corral__mem_slab_class_of(size_t n) {
    if (n <= 256) return (unsigned)((n + 7) / 8 - 1);
    unsigned o = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* 2^o < n */
    return 32u + (o - 8u) * 16u + (unsigned)(((n - 1) - ((size_t)1 << o)) >> (o - 4u));
}

/* The size of class `c`'s slots: a multiple of 8, so each is 8-aligned. */
static inline size_t corral__mem_slab_size(unsigned c) {
    if (c < 32) return ((size_t)c + 1) * 8;
    unsigned o = 8u + (c - 32u) / 16u, k = (c - 32u) % 16u;
    return ((size_t)1 << o) + (((size_t)k + 1) << (o - 4u));
}

/* The slots of a slab of class `c`. */
static inline size_t corral__mem_slab_cap(unsigned c) {
    return (CORRAL__MEM_SLAB_BYTES - CORRAL__MEM_SLAB_HDR) / corral__mem_slab_size(c);
}

/* What a slot of class `c` costs: its share of its slab, header and tail included (at most a
 * sixteenth more than its size, for the 4 KiB class; 169 for 168). */
static inline size_t corral__mem_slab_cost(unsigned c) {
    size_t cap = corral__mem_slab_cap(c);
    return (CORRAL__MEM_SLAB_BYTES + cap - 1) / cap;
}

/* Sets up the blocks of a store bounded at `max_bytes` that allocates from `a` (which must
 * outlive them). */
void corral__mem_blocks_init(corral__mem_blocks *b, const corral__allocator *a, size_t max_bytes);

/* Unmaps the mappings and slabs kept for reuse. Every block must have been freed (asserted of
 * the slabs' slots: a slab still mapped here holds a leaked block). */
void corral__mem_blocks_destroy(corral__mem_blocks *b);

/* What a block of `n` bytes that is no slot costs (corral__mem_heap_alloc). */
static inline size_t corral__mem_heap_cost(const corral__mem_blocks *b, size_t n) {
    if (!b->real_cost) return n;
    if (n > SIZE_MAX - b->page) return SIZE_MAX;
    if (n >= b->map_min) return (n + b->page - 1) / b->page * b->page;
    /* glibc: the size word, 16-byte alignment, 32 bytes at least (also a fair guess elsewhere). */
    return CORRAL_MAX((n + 8 + 15) & ~(size_t)15, (size_t)32);
}

/* What a block of `n` bytes costs where its size puts it, a slot or not (>= n; SIZE_MAX when n
 * is too large to allocate); an allocated block costs corral__mem_block_cost_at. Inline: an
 * overwrite counts its entry's cost out and in, and reports both. */
static inline size_t corral__mem_block_cost(const corral__mem_blocks *b, size_t n) {
    if (b->real_cost && n && n <= b->slab_max)
        return corral__mem_slab_cost(corral__mem_slab_class_of(n));
    return corral__mem_heap_cost(b, n);
}

/* What the block `p` of `n` bytes costs: a slot's share of its slab, or corral__mem_heap_cost
 * for any other (a small block the full region had no slot for is one). */
static inline size_t corral__mem_block_cost_at(const corral__mem_blocks *b, const void *p,
                                               size_t n) {
    if (corral__mem_in_region(p)) return corral__mem_slab_cost(corral__mem_slab_class_of(n));
    return corral__mem_heap_cost(b, n);
}

/* The most a block of `n` bytes may cost, wherever it lands (a slot, or the heap when the
 * region is full): for a check made before the allocation. */
static inline size_t corral__mem_block_cost_most(const corral__mem_blocks *b, size_t n) {
    return CORRAL_MAX(corral__mem_block_cost(b, n), corral__mem_heap_cost(b, n));
}

/* The smallest block a store bounded at `max_bytes` maps (with libc's malloc, no sanitizer):
 * CORRAL__MEM_MAP_MIN, or the bound over CORRAL__MEM_MAP_BLOCKS in a larger store, so that its
 * blocks never need more mappings than the kernel gives a process. */
static inline size_t corral__mem_map_min(size_t max_bytes) {
    return CORRAL_MAX(CORRAL__MEM_MAP_MIN, max_bytes / CORRAL__MEM_MAP_BLOCKS);
}

/* A block of `n` bytes, or NULL: a slot for one of at most slab_max bytes, or the heap's when
 * the region has none. Free it with corral__mem_block_free and the same `n`; it costs
 * corral__mem_block_cost_at. */
void *corral__mem_block_alloc(corral__mem_blocks *b, size_t n);

/* A slot for a block of `n` bytes (1 <= n <= slab_max), or NULL when the region or the system
 * has no room: for a caller that names its blocks by their place (the memory store's entries). */
void *corral__mem_slot_alloc(corral__mem_blocks *b, size_t n);

/* corral__mem_block_alloc and corral__mem_block_free of a block that is never a slot, whatever
 * its size: of the heap, or a mapping (a small entry the region has no room for). */
void *corral__mem_heap_alloc(corral__mem_blocks *b, size_t n);
void corral__mem_heap_free(corral__mem_blocks *b, void *p, size_t n);

/* Frees a block of `n` bytes, the size it was allocated with (NULL accepted): a slot goes back
 * to its slab, and a slab left empty to the kept ones or the system (memory_block.c); a mapping
 * is kept for reuse while there is room, or unmapped; a block of the heap counts its cost
 * toward the next trim. */
void corral__mem_block_free(corral__mem_blocks *b, void *p, size_t n);

/* corral__mem_block_free of a slot (corral__mem_in_region) of `n` bytes, into the blocks that
 * gave it (its slab knows them). */
void corral__mem_slot_free(void *p, size_t n);

/* corral__mem_block_free of a block that no later block is likely to reuse, a mapping never
 * kept (a slot is freed as any other): a bucket table (the next one a resize asks for is twice its
 * size). Kept, the old tables of a store that grew to 1M entries held 4 bytes an entry of RSS. */
void corral__mem_block_free_unkept(corral__mem_blocks *b, void *p, size_t n);

/* Keeps every slab emptied from now on resident (no MADV_DONTNEED), for the depot: a closing
 * store's, whose frees empty them all. */
void corral__mem_blocks_keep_emptied(corral__mem_blocks *b);

/* Unmaps the chunks destroyed stores left in the process's depot (memory_block.c). */
void corral__mem_depot_drain(void);

/* fork.c's prepare takes the far table's lock and the depot's (last), its parent and child
 * handlers give them back (first): a thread in the middle of the far table's free list or the
 * depot's list would leave it half-linked in the child. */
void corral__mem_depot_before_fork(void);
void corral__mem_depot_after_fork(void);

/* The bytes of the chunks in the depot (tests, stats). */
size_t corral__mem_depot_bytes(void);

/* Trims the heap if trim_every bytes were freed since the last trim; returns true if it did.
 * Can take milliseconds on a large heap: call it where no request waits. */
bool corral__mem_blocks_trim(corral__mem_blocks *b);

#endif /* CORRAL_STORE_MEMORY_BLOCK_H */
