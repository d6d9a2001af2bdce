/*
 * memory_expiry.c - the memory store's 32-bit expiries (mem_entry.exp, memory_read.h) and the
 * epochs they count from.
 *
 * An entry's expiry counts ms (or seconds, past the ms range) from one of two epochs, the slot
 * its top bit names. New expiries count from the current slot's epoch. Once the current epoch
 * is MEM_EPOCH_MOVE_NS old, the next writer that finds no move running moves it (a writer's
 * path, never a reader's; about once every 6 days):
 *   1. every entry of the other slot is counted again from the current epoch, under its shard's
 *      mutex (the epochs are whole seconds apart, so nothing is rounded twice): after it no
 *      entry names the other slot;
 *   2. a grace period (reader.h): no reader still holds an expiry that named it;
 *   3. the other slot takes the new epoch (the current one plus whole seconds, at most now),
 *      and becomes the current one (release: a writer that loads it sees the epoch).
 * A reader loads an entry's exp, then the epoch it names: that epoch does not change while the
 * reader's section may hold such an expiry. A writer encodes against the slot it loaded; the
 * slot it used stays valid until the move after next (12 days), far beyond the time between
 * encoding an expiry and publishing it.
 */
#include "memory_internal.h"

#define NS_PER_S 1000000000u

/* `x` (of the other slot) counted from an epoch `secs` seconds later. */
static uint32_t recount(uint32_t x, uint64_t secs, uint32_t top) {
    uint64_t n = x & MEM_EXP_COUNT;
    uint64_t back = (x & MEM_EXP_SECONDS) ? secs : secs * 1000u;
    if (n <= back) return top; /* expired at the new epoch or before: count 0 */
    return top | (x & MEM_EXP_SECONDS) | (uint32_t)(n - back);
}

/* Step 1: the entries of slot `from` counted from slot `to`'s epoch, `secs` seconds later. */
static void recount_all(mem_store *s, unsigned from, uint64_t secs) {
    uint32_t top = from ? 0 : MEM_EXP_SLOT;
    for (unsigned i = 0; i < s->nshards; i++) {
        mem_shard *sh = &s->shards[i];
        shard_lock(sh);
        for (unsigned qi = 0; qi < MEM_QUEUES; qi++)
            for (mem_entry *e = sh->q[qi].head; e; e = e->u.q.older) {
                uint32_t x = atomic_load_explicit(&e->exp, memory_order_relaxed);
                if (x != MEM_EXP_NEVER && (x >> 31) == from)
                    atomic_store_explicit(&e->exp, recount(x, secs, top), memory_order_release);
            }
        shard_unlock(sh);
    }
}

void corral__mem_epoch_move(mem_store *s, uint64_t now) {
    if (atomic_exchange_explicit(&s->epoch_moving, true, memory_order_acquire)) return;
    unsigned cur = atomic_load_explicit(&s->epoch_cur, memory_order_acquire);
    uint64_t base = mem_epoch_ns(s, cur);
    if (now >= base && now - base >= MEM_EPOCH_MOVE_NS) {
        unsigned other = cur ^ 1u;
        uint64_t prev = mem_epoch_ns(s, other);
        recount_all(s, other, (base - prev) / NS_PER_S);
        corral__reader_sync();
        MEM_TSAN_ACQUIRE(&s->tsan_gp); /* the sections the grace period waited for */
        uint64_t secs = (now - base) / NS_PER_S;
        for (unsigned unit = 0; unit < 2; unit++) /* ms, s */
            atomic_store_explicit(&s->epoch_ns[other << 1 | unit], base + secs * NS_PER_S,
                                  memory_order_relaxed);
        atomic_store_explicit(&s->epoch_cur, other, memory_order_release);
        atomic_fetch_add_explicit(&s->epoch_moves, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&s->epoch_moving, false, memory_order_release);
}
