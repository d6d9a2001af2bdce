/*
 * memory_block.c - the blocks behind the memory store's entries. See memory_block.h for the
 * rules and docs/memory-density.md for why.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include "memory_block.h"

#include <pthread.h>
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

/* The empty slabs kept for reuse total at most max_bytes / MEM_SLAB_POOL_DIV, and at least four
 * slabs (256 KiB): enough that a class whose last slab empties and refills does not map and unmap
 * one each time. */
#define MEM_SLAB_POOL_DIV 64u
#define MEM_SLAB_POOL_MIN (4 * CORRAL__MEM_SLAB_BYTES)
/* Slabs serve stores bounded at this or more. Each class in use holds a partly used slab the
 * bound does not count: at most 96 x 64 KiB, 6 MiB, within the bound's 8 MB of slack
 * (bench_memory's RSS bound); in a 1 MiB near cache it would be six times the bound. */
#define MEM_SLAB_MIN_BOUND ((size_t)16 << 20)
/* A store leaves the depot at most a quarter of its bound (memory_block.c, the depot). */
#define MEM_DEPOT_SHARE_DIV 4u
/* A store bounded at this or more asks for huge pages under its slabs (chunk_new): a 2 MiB
 * chunk then is resident whole once a slab of it is used: the last chunk, a few MiB of such a
 * store (each chunk that has given a slab back asks for none after, slab_release). */
#define MEM_SLAB_HUGE_MIN ((size_t)256 << 20)

#if defined(__SANITIZE_ADDRESS__)
#define MEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEM_ASAN 1
#endif
#endif
#ifdef MEM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
/* LeakSanitizer does not scan our mappings: a chunk is a root region while mapped, since a slot
 * may hold the only pointer to a block of the heap (a small bucket table's store). */
#define MEM_LSAN_ROOT(p, n)   __lsan_register_root_region((p), (n))
#define MEM_LSAN_UNROOT(p, n) __lsan_unregister_root_region((p), (n))
#define MEM_POISON(p, n)      ASAN_POISON_MEMORY_REGION((p), (n))
#define MEM_UNPOISON(p, n)    ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define MEM_POISON(p, n)      ((void)(p), (void)(n))
#define MEM_UNPOISON(p, n)    ((void)(p), (void)(n))
#define MEM_LSAN_ROOT(p, n)   ((void)(p), (void)(n))
#define MEM_LSAN_UNROOT(p, n) ((void)(p), (void)(n))
#endif

/* A slab: this header, then `cap` slots of its class's size. Aligned to its size, so a slot's
 * slab is its address with the low bits cleared. Under its class's lock. */
struct corral__mem_slab {
    corral__mem_slab *newer, *older; /* in the class's `partial` list while `listed` */
    void *free;                      /* freed slots, linked through their first word */
    uint32_t live;                   /* slots handed out now */
    uint32_t bumped;                 /* slots handed out once at least: the first `bumped` */
    uint32_t cap;
    uint32_t cls;
    bool listed;
    corral__mem_chunk *chunk;  /* the chunk that holds it */
    corral__mem_blocks *owner; /* the blocks it serves while a class uses it */
};
/* A chunk: CORRAL__MEM_SLAB_CHUNK bytes of 32 slabs, one of the region's places (aligned to
 * the chunk's size). A slab of it is in use (its header in it), kept
 * resident in `pool` (linked through its header), or cold: never touched, or given back with
 * MADV_DONTNEED, and marked in `cold` here since its memory holds nothing. Under `pool_lock`
 * but for the immutable fields. Records live outside the chunk, so a cold slab costs no RSS. */
struct corral__mem_chunk {
    char *mem;                    /* the chunk, in the region; immutable */
    corral__mem_chunk *next_all;  /* every chunk of the store, for destroy */
    corral__mem_chunk *next_cold; /* in the store's `cold` list while `cold` is not 0 */
    uint32_t cold; /* bit i: slab i is free and not in the pool (from the depot: maybe resident) */
    bool nohuge;   /* advised MADV_NOHUGEPAGE, or about to be */
};

_Static_assert(sizeof(corral__mem_slab) <= CORRAL__MEM_SLAB_HDR, "the header fits before slot 0");
_Static_assert(CORRAL__MEM_SLAB_HDR % 16 == 0, "slot 0 is 16-aligned");
_Static_assert(CORRAL__MEM_SLAB_CLASSES == 32 + 4 * 16, "8-byte steps, then four octaves");
_Static_assert(CORRAL__MEM_SLAB_CHUNK == 32 * CORRAL__MEM_SLAB_BYTES, "a chunk's slabs: 32 bits");

/* The depot: chunks that destroyed stores left resident for the next store of the process,
 * as glibc keeps a freed heap. A store's first inserts into pages never touched cost a page
 * fault a page, which on this project's machine was a third of a fresh insert's time
 * (docs/memory-density.md). A store leaves at most a quarter of its bound, the process keeps at
 * most CORRAL__MEM_DEPOT_MAX; corral_release_memory() gives them all back. The chunks' records
 * are libc's (slabs are libc's only), so they outlive the store's allocator. A leaf lock. */
static corral__spin depot_lock; /* zero: free */
static corral__mem_chunk *depot;
static _Atomic size_t depot_bytes; /* changed under depot_lock */
static bool depot_put(corral__mem_chunk *ch);
static void chunk_unmap(corral__mem_chunk *ch);

/* The region (memory_block.h): reserved once, PROT_NONE, by the first store that wants slabs.
 * `region_used` marks its places that hold a chunk, under depot_lock (a chunk's mapping and
 * unmapping, system calls, happen outside it). */
#define MEM_REGION_PLACES (CORRAL__MEM_REGION_BYTES / CORRAL__MEM_SLAB_CHUNK)
_Atomic uintptr_t corral__mem_region = CORRAL__MEM_REGION_NONE;
static pthread_once_t region_once = PTHREAD_ONCE_INIT;
static uint64_t region_used[MEM_REGION_PLACES / 64];
static size_t region_limit = MEM_REGION_PLACES; /* places from here on are not taken (tests) */
/* Set when a take found no free place, cleared when one is freed: a full region costs a new
 * chunk no record and no scan. Changed under depot_lock. */
static _Atomic bool region_full;

/* The far table (memory_block.h): pages of CORRAL__MEM_FAR_PAGE slots, allocated as indices
 * reach them and kept for the process's life. A free slot holds the next free index, shifted
 * left and tagged with bit 0 (a block's address has it clear). Under `far_lock`, a leaf. */
void *_Atomic *_Atomic corral__mem_far[CORRAL__MEM_FAR_PAGES];
static corral__spin far_lock;   /* zero: free */
static uint32_t far_free;       /* the first free index, 0: none */
static uint32_t far_next = 1;   /* indices from here on were never used; 0 is no index */
static _Atomic size_t far_used; /* names given and not freed; changed under far_lock */

#ifdef MAP_POPULATE /* Linux */
#define MEM_POPULATE MAP_POPULATE
#else
#define MEM_POPULATE 0
#endif

/* Reserves the region; leaves corral__mem_region at CORRAL__MEM_REGION_NONE if the system
 * refuses (an address-space limit: the reservation counts in RLIMIT_AS and VSZ): stores then do
 * without slabs. */
static void region_reserve(void) {
    size_t cb = CORRAL__MEM_SLAB_CHUNK;
    char *p = mmap(NULL, CORRAL__MEM_REGION_BYTES + cb, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return;
    uintptr_t at = ((uintptr_t)p + cb - 1) & ~(uintptr_t)(cb - 1);
    atomic_store_explicit(&corral__mem_region, at, memory_order_release);
}

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
    b->slab_max = 0;
    if (b->real_cost && max_bytes >= MEM_SLAB_MIN_BOUND) {
        CORRAL_MUST(pthread_once(&region_once, region_reserve) == 0);
        if (atomic_load_explicit(&corral__mem_region, memory_order_acquire) !=
            CORRAL__MEM_REGION_NONE)
            b->slab_max = CORRAL__MEM_SLAB_MAX;
    }
    atomic_init(&b->slabbed, 0);
    atomic_init(&b->chunked, 0);
    corral__spin_init(&b->pool_lock);
    b->pool = NULL;
    b->cold = NULL;
    b->chunks = NULL;
    b->huge = max_bytes >= MEM_SLAB_HUGE_MIN;
    b->depot_share = b->slab_max ? max_bytes / MEM_DEPOT_SHARE_DIV : 0;
    b->pool_cap = CORRAL_MAX(max_bytes / MEM_SLAB_POOL_DIV, MEM_SLAB_POOL_MIN);
    atomic_init(&b->pooled, 0);
    for (unsigned c = 0; c < CORRAL__MEM_SLAB_CLASSES; c++) {
        corral__spin_init(&b->slab[c].lock);
        b->slab[c].partial = NULL;
        b->slab[c].slabs = 0;
    }
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
    /* Every slab empties when its last block is freed: one still in use holds a leak. */
    assert(atomic_load_explicit(&b->slabbed, memory_order_relaxed) == 0);
    size_t left = 0;
    while (b->chunks) {
        corral__mem_chunk *ch = b->chunks;
        b->chunks = ch->next_all;
        /* AddressSanitizer does not see munmap: the next mapping here would keep the poison. */
        MEM_UNPOISON(ch->mem, CORRAL__MEM_SLAB_CHUNK);
        MEM_LSAN_UNROOT(ch->mem, CORRAL__MEM_SLAB_CHUNK);
        if (left + CORRAL__MEM_SLAB_CHUNK <= b->depot_share && depot_put(ch)) {
            left += CORRAL__MEM_SLAB_CHUNK;
            continue;
        }
        chunk_unmap(ch);
    }
    atomic_store_explicit(&b->chunked, 0, memory_order_relaxed);
    b->pool = NULL;
    b->cold = NULL;
    atomic_store_explicit(&b->pooled, 0, memory_order_relaxed);
    corral__spin_deinit(&b->pool_lock);
    for (unsigned c = 0; c < CORRAL__MEM_SLAB_CLASSES; c++)
        corral__spin_deinit(&b->slab[c].lock);
}

/* ---- Slabs ---- */

/* Faults in the pages of a slab about to be used, in one call instead of a fault a page. */
static void slab_populate(void *p, size_t bytes) {
#ifdef MADV_POPULATE_WRITE /* Linux 5.14; where it is refused, the pages fault in as used */
    (void)madvise(p, bytes, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* Asks for huge pages under [p, p + n), or for none. */
static void slab_advise(void *p, size_t n, bool huge) {
#if defined(MADV_HUGEPAGE) && defined(MADV_NOHUGEPAGE)
    (void)madvise(p, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#else
    (void)p;
    (void)n;
    (void)huge;
#endif
}

/* A chunk of the depot, or NULL. */
static corral__mem_chunk *depot_take(void) {
    if (atomic_load_explicit(&depot_bytes, memory_order_relaxed) == 0) return NULL;
    corral__spin_lock(&depot_lock);
    corral__mem_chunk *ch = depot;
    if (ch) {
        depot = ch->next_all;
        atomic_store_explicit(&depot_bytes,
                              atomic_load_explicit(&depot_bytes, memory_order_relaxed) -
                                  CORRAL__MEM_SLAB_CHUNK,
                              memory_order_relaxed);
    }
    corral__spin_unlock(&depot_lock);
    return ch;
}

/* Leaves the chunk `ch` in the depot if it has room. */
static bool depot_put(corral__mem_chunk *ch) {
    bool kept = false;
    corral__spin_lock(&depot_lock);
    size_t have = atomic_load_explicit(&depot_bytes, memory_order_relaxed);
    if (have + CORRAL__MEM_SLAB_CHUNK <= CORRAL__MEM_DEPOT_MAX) {
        ch->next_all = depot;
        depot = ch;
        atomic_store_explicit(&depot_bytes, have + CORRAL__MEM_SLAB_CHUNK, memory_order_relaxed);
        kept = true;
    }
    corral__spin_unlock(&depot_lock);
    return kept;
}

/* The place of the region at `mem`: its bit in region_used. */
static size_t region_place(const char *mem) {
    return (size_t)((uintptr_t)mem -
                    atomic_load_explicit(&corral__mem_region, memory_order_relaxed)) /
           CORRAL__MEM_SLAB_CHUNK;
}

/* Marks the place at `mem` free again. */
static void region_unmark(char *mem) {
    size_t i = region_place(mem);
    corral__spin_lock(&depot_lock);
    region_used[i / 64] &= ~((uint64_t)1 << (i % 64));
    atomic_store_explicit(&region_full, false, memory_order_relaxed);
    corral__spin_unlock(&depot_lock);
}

/* Gives a place of the region back: its pages to the system, PROT_NONE again as reserved (a
 * refusal, at the process's count of mappings, leaves it writable and empty, which the next take
 * makes writable again), and only then its mark, so a chunk is never mapped onto a live one. */
static void region_put(char *mem) {
    (void)madvise(mem, CORRAL__MEM_SLAB_CHUNK, MADV_DONTNEED);
    (void)mprotect(mem, CORRAL__MEM_SLAB_CHUNK, PROT_NONE);
    region_unmark(mem);
}

/* A free place of the region (below region_limit), marked used and made writable, or NULL when
 * every place holds a chunk or the system refuses: mprotect fails without changing anything,
 * where a mapping over the reservation could leave a hole another mapping takes. */
static char *region_take(void) {
    uintptr_t base = atomic_load_explicit(&corral__mem_region, memory_order_relaxed);
    char *mem = NULL;
    corral__spin_lock(&depot_lock);
    for (size_t w = 0; w < MEM_REGION_PLACES / 64; w++) {
        if (region_used[w] == UINT64_MAX) continue;
        unsigned bit = (unsigned)__builtin_ctzll(~region_used[w]);
        if (w * 64 + bit >= region_limit) break;
        region_used[w] |= (uint64_t)1 << bit;
        mem = (char *)(base + (w * 64 + bit) * CORRAL__MEM_SLAB_CHUNK);
        break;
    }
    if (!mem) atomic_store_explicit(&region_full, true, memory_order_relaxed);
    corral__spin_unlock(&depot_lock);
    if (mem && mprotect(mem, CORRAL__MEM_SLAB_CHUNK, PROT_READ | PROT_WRITE) != 0) {
        region_unmark(mem);
        mem = NULL;
    }
    return mem;
}

void corral__mem_region_limit(size_t places) {
    corral__spin_lock(&depot_lock);
    region_limit = CORRAL_MIN(places, MEM_REGION_PLACES);
    atomic_store_explicit(&region_full, false, memory_order_relaxed);
    corral__spin_unlock(&depot_lock);
}

/* Unmaps a chunk that is no LeakSanitizer root (any more) and frees its record. */
static void chunk_unmap(corral__mem_chunk *ch) {
    region_put(ch->mem);
    corral__free(&corral__libc_allocator, ch, sizeof *ch);
}

void corral__mem_blocks_keep_emptied(corral__mem_blocks *b) {
    corral__spin_lock(&b->pool_lock);
    b->pool_cap = SIZE_MAX;
    corral__spin_unlock(&b->pool_lock);
}

void corral__mem_depot_drain(void) {
    corral__mem_chunk *ch;
    while ((ch = depot_take()) != NULL)
        chunk_unmap(ch);
}

void corral__mem_depot_before_fork(void) {
    corral__spin_lock(&far_lock);
    corral__spin_lock(&depot_lock);
}

void corral__mem_depot_after_fork(void) {
    corral__spin_unlock(&depot_lock);
    corral__spin_unlock(&far_lock);
}

size_t corral__mem_depot_bytes(void) {
    return atomic_load_explicit(&depot_bytes, memory_order_relaxed);
}

/* A new chunk, every slab cold, or NULL: the depot's, else a new mapping. Not under
 * pool_lock. */
static corral__mem_chunk *chunk_new(corral__mem_blocks *b) {
    size_t cb = CORRAL__MEM_SLAB_CHUNK;
    corral__mem_chunk *ch = depot_take();
    if (!ch) {
        if (atomic_load_explicit(&region_full, memory_order_relaxed)) return NULL;
        ch = corral__alloc(&corral__libc_allocator, sizeof *ch);
        if (!ch) return NULL;
        char *p = region_take(); /* reserved MAP_NORESERVE: unused slabs cost no commit */
        if (!p) {
            corral__free(&corral__libc_allocator, ch, sizeof *ch);
            return NULL;
        }
        MEM_UNPOISON(p, cb); /* poison a chunk unmapped here before left */
        ch->mem = p;
    }
    /* A large store's slabs in huge pages (one fault and one TLB entry for 2 MiB), a small
     * store's never, even where the system's setting is `always` (a huge page would hold a
     * chunk's cold slabs resident). */
    slab_advise(ch->mem, cb, b->huge);
    ch->nohuge = !b->huge;
    MEM_LSAN_ROOT(ch->mem, cb);
    ch->cold = UINT32_MAX; /* every slab free; a depot chunk's the last store used are resident */
    ch->next_all = ch->next_cold = NULL;
    return ch;
}

/* An empty slab for class `c`: a resident kept one of its size, else a cold one (of a chunk,
 * a new chunk if none is left), faulted in. NULL when the system refuses. */
static corral__mem_slab *slab_new(corral__mem_blocks *b, unsigned c) {
    size_t bytes = CORRAL__MEM_SLAB_BYTES;
    corral__mem_slab *sl = NULL;
    corral__mem_chunk *fresh = NULL, *from = NULL;
    for (;;) {
        corral__spin_lock(&b->pool_lock);
        if ((sl = b->pool) != NULL) {
            b->pool = sl->older;
            atomic_store_explicit(&b->pooled,
                                  atomic_load_explicit(&b->pooled, memory_order_relaxed) - bytes,
                                  memory_order_relaxed);
        } else {
            if (!b->cold && fresh) { /* ours, unless another thread's came first */
                fresh->next_all = b->chunks;
                b->chunks = fresh;
                atomic_fetch_add_explicit(&b->chunked, CORRAL__MEM_SLAB_CHUNK,
                                          memory_order_relaxed);
                b->cold = fresh;
                fresh = NULL;
            }
            corral__mem_chunk *ch = b->cold;
            if (ch) {
                unsigned i = (unsigned)__builtin_ctz(ch->cold);
                ch->cold &= ch->cold - 1;
                if (!ch->cold) b->cold = ch->next_cold;
                sl = (corral__mem_slab *)(ch->mem + (size_t)i * bytes);
                from = ch; /* written after the unlock: the first write faults the page in */
            }
        }
        corral__spin_unlock(&b->pool_lock);
        if (sl) break;
        fresh = chunk_new(b);
        if (!fresh) return NULL;
    }
    if (fresh) { /* another thread's chunk served us */
        MEM_LSAN_UNROOT(fresh->mem, CORRAL__MEM_SLAB_CHUNK);
        if (!depot_put(fresh)) chunk_unmap(fresh);
    }
    if (from) {
        slab_populate(sl, bytes);
        sl->chunk = from;
    }
    atomic_fetch_add_explicit(&b->slabbed, bytes, memory_order_relaxed);
    sl->newer = sl->older = NULL;
    sl->free = NULL;
    sl->live = sl->bumped = 0;
    sl->cap = (uint32_t)corral__mem_slab_cap(c);
    sl->cls = c;
    sl->listed = false;
    sl->owner = b;
    MEM_POISON((char *)sl + CORRAL__MEM_SLAB_HDR, bytes - CORRAL__MEM_SLAB_HDR);
    return sl;
}

/* Gives back an empty slab: kept resident while the kept ones have room, else its
 * pages are given back to the system and it is marked cold in its chunk. */
static void slab_release(corral__mem_blocks *b, corral__mem_slab *sl) {
    size_t bytes = CORRAL__MEM_SLAB_BYTES;
    corral__mem_chunk *ch = sl->chunk;
    atomic_fetch_sub_explicit(&b->slabbed, bytes, memory_order_relaxed);
    corral__spin_lock(&b->pool_lock);
    size_t pooled = atomic_load_explicit(&b->pooled, memory_order_relaxed);
    if (pooled + bytes <= b->pool_cap) {
        sl->older = b->pool;
        b->pool = sl;
        atomic_store_explicit(&b->pooled, pooled + bytes, memory_order_relaxed);
        corral__spin_unlock(&b->pool_lock);
        return;
    }
    bool advise = !ch->nohuge;
    ch->nohuge = true; /* one call a chunk: each takes the process's mmap lock */
    corral__spin_unlock(&b->pool_lock);
    /* Given back before it is marked cold: once marked, another thread may take it and write
     * it, and a later DONTNEED would drop its writes. A huge page under it is split; the chunk
     * then asks for none, so khugepaged does not fill the hole again. Nothing needs the pages
     * zero: a refusal (mlockall) only keeps them resident. */
    MEM_UNPOISON(sl, bytes);
    if (advise) slab_advise(ch->mem, CORRAL__MEM_SLAB_CHUNK, false);
    (void)madvise(sl, bytes, MADV_DONTNEED);
    unsigned i = (unsigned)(((char *)sl - ch->mem) / bytes);
    corral__spin_lock(&b->pool_lock);
    if (!ch->cold) {
        ch->next_cold = b->cold;
        b->cold = ch;
    }
    ch->cold |= (uint32_t)1 << i;
    corral__spin_unlock(&b->pool_lock);
}

/* Puts `sl` first in its class's list of slabs with a free slot. */
static void slab_list_locked(corral__mem_slab_class *k, corral__mem_slab *sl) {
    CORRAL_ASSERT_HELD(&k->lock);
    sl->newer = NULL;
    sl->older = k->partial;
    if (k->partial) k->partial->newer = sl;
    k->partial = sl;
    sl->listed = true;
}

/* Takes `sl` out of its class's list. */
static void slab_unlist_locked(corral__mem_slab_class *k, corral__mem_slab *sl) {
    CORRAL_ASSERT_HELD(&k->lock);
    if (sl->newer)
        sl->newer->older = sl->older;
    else
        k->partial = sl->older;
    if (sl->older) sl->older->newer = sl->newer;
    sl->newer = sl->older = NULL;
    sl->listed = false;
}

/* A slot for a block of `n` bytes (1 <= n <= slab_max), or NULL. */
static void *slab_alloc(corral__mem_blocks *b, size_t n) {
    unsigned c = corral__mem_slab_class_of(n);
    corral__mem_slab_class *k = &b->slab[c];
    corral__spin_lock(&k->lock);
    corral__mem_slab *sl = k->partial;
    if (sl) {
        assert(sl->live > 0 && sl->live < sl->cap); /* a listed slab is neither empty nor full */
        void *p;
        if (sl->free) {
            p = sl->free;
            MEM_UNPOISON(p, sizeof sl->free); /* the link, poisoned while the slot is free */
            memcpy(&sl->free, p, sizeof sl->free);
        } else {
            p = (char *)sl + CORRAL__MEM_SLAB_HDR + (size_t)sl->bumped++ * corral__mem_slab_size(c);
        }
        if (++sl->live == sl->cap) slab_unlist_locked(k, sl);
        corral__spin_unlock(&k->lock);
        MEM_UNPOISON(p, n);
        return p;
    }
    corral__spin_unlock(&k->lock);
    /* No slot: a new slab, faulted in outside the lock. Its first slot is ours before it is
     * listed, so no slab is ever listed empty. */
    sl = slab_new(b, c);
    if (!sl) return NULL;
    void *p = (char *)sl + CORRAL__MEM_SLAB_HDR;
    sl->bumped = sl->live = 1;
    corral__spin_lock(&k->lock);
    k->slabs++;
    if (sl->live < sl->cap) slab_list_locked(k, sl);
    corral__spin_unlock(&k->lock);
    MEM_UNPOISON(p, n);
    return p;
}

/* The slab of the slot `p`: slabs are aligned to their size. */
static corral__mem_slab *slab_of(const void *p) {
    return (corral__mem_slab *)((uintptr_t)p & ~(uintptr_t)(CORRAL__MEM_SLAB_BYTES - 1));
}

/* Frees the slot `p` of a block of `n` bytes, the size it was allocated with. */
static void slab_free(corral__mem_blocks *b, void *p, size_t n) {
    unsigned c = corral__mem_slab_class_of(n);
    corral__mem_slab_class *k = &b->slab[c];
    corral__mem_slab *sl = slab_of(p);
    bool empty = false;
    corral__spin_lock(&k->lock);
    assert(sl->cls == c && sl->live > 0);
    MEM_UNPOISON(p, sizeof sl->free); /* a block of fewer bytes left some of it poisoned */
    memcpy(p, &sl->free, sizeof sl->free);
    /* Under the lock: the next allocation unpoisons the link it reads under it. */
    MEM_POISON(p, corral__mem_slab_size(c));
    sl->free = p;
    if (--sl->live == 0) {
        /* The last slot: the slab goes back to the kept ones (slab_release), which a class
         * that empties and refills takes it from again without a system call. */
        if (sl->listed) slab_unlist_locked(k, sl);
        k->slabs--;
        empty = true;
    } else if (!sl->listed) {
        slab_list_locked(k, sl); /* it was full */
    }
    corral__spin_unlock(&k->lock);
    if (empty) slab_release(b, sl);
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
    if (n && n <= b->slab_max) {
        void *p = slab_alloc(b, n);
        if (p) return p;
    }
    return corral__mem_heap_alloc(b, n);
}

void *corral__mem_slot_alloc(corral__mem_blocks *b, size_t n) {
    assert(n && n <= b->slab_max);
    return slab_alloc(b, n);
}

void *corral__mem_heap_alloc(corral__mem_blocks *b, size_t n) {
    if (n < b->map_min) return corral__alloc(b->alloc, n);
    size_t cost = corral__mem_heap_cost(b, n);
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

static void heap_free(corral__mem_blocks *b, void *p, size_t n, bool keep) {
    if (!p) return;
    size_t cost = corral__mem_heap_cost(b, n);
    if (n >= b->map_min) {
        atomic_fetch_sub_explicit(&b->mapped, cost, memory_order_relaxed);
        if (!keep || !cache_put(b, p, cost / b->page)) CORRAL_MUST(munmap(p, cost) == 0);
    } else {
        corral__free(b->alloc, p, n);
        if (b->trim_every) atomic_fetch_add_explicit(&b->freed, cost, memory_order_relaxed);
    }
}

static void block_free(corral__mem_blocks *b, void *p, size_t n, bool keep) {
    if (p && corral__mem_in_region(p))
        slab_free(b, p, n);
    else
        heap_free(b, p, n, keep);
}

void corral__mem_block_free(corral__mem_blocks *b, void *p, size_t n) {
    block_free(b, p, n, true);
}

void corral__mem_heap_free(corral__mem_blocks *b, void *p, size_t n) {
    heap_free(b, p, n, true);
}

void corral__mem_slot_free(void *p, size_t n) {
    slab_free(slab_of(p)->owner, p, n);
}

/* ---- The far table ---- */

uint32_t corral__mem_far_new(void *p) {
    assert(((uintptr_t)p & 1u) == 0);
    void *_Atomic *fresh = NULL;
    uint32_t i = 0;
    for (;;) {
        corral__spin_lock(&far_lock);
        if (far_free) {
            i = far_free;
            uintptr_t link =
                (uintptr_t)atomic_load_explicit(corral__mem_far_slot(i), memory_order_relaxed);
            far_free = (uint32_t)(link >> 1);
        } else if (far_next < CORRAL__MEM_FAR_PAGES * CORRAL__MEM_FAR_PAGE) {
            void *_Atomic *_Atomic *page = &corral__mem_far[far_next / CORRAL__MEM_FAR_PAGE];
            if (!atomic_load_explicit(page, memory_order_relaxed) && fresh) {
                atomic_store_explicit(page, fresh, memory_order_relaxed);
                fresh = NULL;
            }
            if (atomic_load_explicit(page, memory_order_relaxed)) i = far_next++;
        } else {
            corral__spin_unlock(&far_lock);
            break; /* every index in use */
        }
        if (i) {
            atomic_store_explicit(corral__mem_far_slot(i), p, memory_order_relaxed);
            atomic_store_explicit(&far_used,
                                  atomic_load_explicit(&far_used, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        }
        corral__spin_unlock(&far_lock);
        if (i || fresh) break;
        /* The next index's page is missing: allocated outside the lock (a leaf). */
        fresh = corral__alloc(&corral__libc_allocator, CORRAL__MEM_FAR_PAGE * sizeof *fresh);
        if (!fresh) return 0;
    }
    if (fresh) corral__free(&corral__libc_allocator, fresh, CORRAL__MEM_FAR_PAGE * sizeof *fresh);
    return i;
}

size_t corral__mem_far_used(void) {
    return atomic_load_explicit(&far_used, memory_order_relaxed);
}

void corral__mem_far_free(uint32_t i) {
    corral__spin_lock(&far_lock);
    assert(i > 0 && i < far_next);
    void *_Atomic *slot = corral__mem_far_slot(i);
    /* a free slot holds a tagged link: a name freed twice */
    assert(((uintptr_t)atomic_load_explicit(slot, memory_order_relaxed) & 1u) == 0);
    atomic_store_explicit(slot, (void *)(((uintptr_t)far_free << 1) | 1u), memory_order_relaxed);
    far_free = i;
    atomic_store_explicit(&far_used, atomic_load_explicit(&far_used, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    corral__spin_unlock(&far_lock);
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
