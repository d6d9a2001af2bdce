/*
 * spin.c - the slow path of spin.h's lock (a waiter's spin, then yield) and its debug owner.
 */
#include "spin.h"

#include <sched.h>

/* Looks with a pause before a waiter starts yielding: about a microsecond, longer than a
 * typical set holds a shard, much shorter than a resize or a batch of MEM_LOCK_BATCH. */
#define SPIN_PAUSES 128u

static inline void cpu_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

void corral__spin_init(corral__spin *l) {
    atomic_init(&l->taken, 0);
#ifndef NDEBUG
    atomic_init(&l->owner, 0);
#endif
}

void corral__spin_deinit(corral__spin *l) {
    assert(atomic_load_explicit(&l->taken, memory_order_relaxed) == 0);
    (void)l;
}

void corral__spin_lock_slow(corral__spin *l) {
    unsigned looks = 0;
    do {
        /* Look without writing until it is free, so waiters do not bounce its line. */
        while (atomic_load_explicit(&l->taken, memory_order_relaxed) != 0) {
            if (looks < SPIN_PAUSES) {
                cpu_pause();
                looks++;
            } else {
                sched_yield();
            }
        }
    } while (!corral__spin_trylock(l));
}

#ifndef NDEBUG
static unsigned long self_id(void) {
    /* pthread_t is an integer on Linux/glibc; the owner check only needs identity. */
    return (unsigned long)pthread_self();
}

void corral__spin_note_owner(corral__spin *l, bool taken) {
    atomic_store_explicit(&l->owner, taken ? self_id() : 0, memory_order_relaxed);
}

int corral__spin_held(const corral__spin *l) {
    return atomic_load_explicit(&l->owner, memory_order_relaxed) == self_id();
}
#endif
