/*
 * spin.h - a lock of one locked instruction: an exchange takes it, a release store gives it
 * back. The memory store's shard lock (store/memory_internal.h).
 *
 * Why not a pthread mutex: glibc's takes and gives with a locked instruction each (the give must
 * learn whether a sleeper needs a futex wake-up), and a 1-thread overwriting set paid for both
 * (docs/memory-density.md, "The set path, second slice"). This lock has no sleepers to wake,
 * so its give is a plain store. A waiter spins with a pause while the holder is likely to be
 * quick, then calls sched_yield between looks, so a long hold (a shard's resize, a batch of
 * MEM_LOCK_BATCH entries) costs it time slices, not a core. There is no queue: no fairness, no
 * priority inheritance. Use it only where holds are short and never wait on anything.
 *
 * Debug builds record the holder, so `_locked` functions can CORRAL_ASSERT_HELD it as they do a
 * corral__mutex. ThreadSanitizer sees the lock through its C11 atomics (acquire on take,
 * release on give).
 *
 * Threads: every function is thread-safe; unlock only by the thread that holds it.
 */
#ifndef CORRAL_SPIN_H
#define CORRAL_SPIN_H

#include "common.h"

#include <stdatomic.h>
#include <stdbool.h>

struct corral__spin {
    _Atomic unsigned taken; /* 1 while held, 0 when free */
#ifndef NDEBUG
    _Atomic(unsigned long) owner; /* pthread_self() of the holder as an integer, 0 when free */
#endif
};

void corral__spin_init(corral__spin *l);
void corral__spin_deinit(corral__spin *l); /* asserts it is free */
void corral__spin_lock_slow(corral__spin *l);
#ifndef NDEBUG
void corral__spin_note_owner(corral__spin *l, bool taken);
#endif

/* Takes `l` if it is free: true when taken. One locked instruction when free, none when held (a
 * plain load sees it held first). */
static inline bool corral__spin_trylock(corral__spin *l) {
    if (atomic_load_explicit(&l->taken, memory_order_relaxed) != 0) return false;
    if (atomic_exchange_explicit(&l->taken, 1, memory_order_acquire) != 0) return false;
#ifndef NDEBUG
    corral__spin_note_owner(l, true);
#endif
    return true;
}

/* Takes `l`, spinning then yielding while another thread holds it. Not reentrant. */
static inline void corral__spin_lock(corral__spin *l) {
    if (!corral__spin_trylock(l)) corral__spin_lock_slow(l);
}

static inline void corral__spin_unlock(corral__spin *l) {
    assert(corral__spin_held(l));
#ifndef NDEBUG
    corral__spin_note_owner(l, false);
#endif
    atomic_store_explicit(&l->taken, 0, memory_order_release);
}

#endif
