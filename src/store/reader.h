/*
 * reader.h - the memory store's read-side sections, and the grace period that waits for them.
 *
 * A thread reads the table inside a section (corral__reader_enter, corral__reader_leave); an
 * entry unlinked from the table is freed only after a grace period (corral__reader_sync), when
 * every section that could have seen it has ended. liburcu's call_rcu still queues the frees and
 * runs them on its worker thread (memory_rcu.c); the sections and the grace period are ours.
 *
 * Why our own sections: a get's instruction count bounds how many gets the CPU overlaps, and
 * liburcu-bp's read lock and unlock cost a get a large share of its instructions; libck's epoch
 * sections fence on every entry. A section here is a load, a compare and a store on entry and a
 * load and a store on exit, with no fence: the scheme of liburcu's membarrier flavours, without
 * nesting. The numbers: docs/memory-store.md, "Why our own read-side sections".
 *
 * The scheme:
 * - Each thread that reads has a record in static thread-local storage: `seq`, 0 until the
 *   thread registers, then even outside a section and odd inside. Entering stores seq + 1;
 *   leaving stores seq + 2, with release, after every read of the section.
 * - A grace period first makes every thread of the process pass a full memory barrier
 *   (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)), then waits, for each record it finds odd,
 *   until that record changes. A section that entered before the barrier is waited for; one
 *   that entered after it runs after the barrier too, so it sees every unlink that came before
 *   the grace period and cannot reach what is freed.
 * - Where membarrier is unavailable, readers fence after entering (CORRAL__READER_FENCE in their
 *   record), and the grace period fences before it reads the records: store then load on both
 *   sides.
 * - Sections do not nest (asserted): the memory store never enters one inside another.
 *
 * Threads: the registry of records is one list for the process, as liburcu-bp's is, because a
 * grace period must find every thread that may be reading; it holds no per-handle state.
 * A thread registers on its first section (under the registry's mutex) and a thread-specific
 * key's destructor unregisters it when it exits. A grace period takes the registry's mutex to
 * find the sections it must wait for and pins their records, then waits without it: a thread's
 * first section does not wait behind a slow section elsewhere (which may be in a user's clock
 * or allocator hook). An exiting thread whose record is pinned waits to be let go; it is not in
 * a section, so that is the length of one scan. Grace periods run one at a time.
 */
#ifndef CORRAL_STORE_READER_H
#define CORRAL_STORE_READER_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct corral__reader {
    /* 0: not registered. Otherwise even outside a section, odd inside, with
     * CORRAL__READER_FENCE set when the thread must fence after entering. */
    _Atomic uint64_t seq;
    struct corral__reader *prev, *next; /* the registry's list, under its mutex */
    /* A grace period waiting for this record's section: the record stays registered (its
     * thread's exit waits) until the grace period lets go. Under the registry's mutex. */
    bool pinned;
    uint64_t pinned_seq;           /* the odd sequence it waits to see move */
    struct corral__reader *waiter; /* the grace period's list of pinned records */
} corral__reader;

/* Set in a record's seq when its thread fences after entering (membarrier is unavailable).
 * Entering tests it with the same comparison that finds an unregistered record. */
#define CORRAL__READER_FENCE ((uint64_t)1 << 63)

/* The calling thread's record. Initial-exec TLS: entering is no call (see metrics.h for what
 * that asks of a libcorral.so loaded with dlopen). */
extern _Thread_local corral__reader corral__reader_self __attribute__((tls_model("initial-exec")));

/* corral__reader_enter for a thread not registered yet or that must fence. */
void corral__reader_enter_slow(void);

/* Waits until every section that was running when it was called has ended. Not inside a
 * section. Safe from any thread, including liburcu's call_rcu worker. */
void corral__reader_sync(void);

static inline void corral__reader_enter(void) {
    corral__reader *r = &corral__reader_self;
    int64_t q = (int64_t)atomic_load_explicit(&r->seq, memory_order_relaxed);
    if (__builtin_expect(q <= 0, 0)) { /* 0, or CORRAL__READER_FENCE set */
        corral__reader_enter_slow();
        return;
    }
    assert(!(q & 1) && "read-side sections do not nest");
    atomic_store_explicit(&r->seq, (uint64_t)q + 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst); /* the section's loads stay after the store */
}

static inline void corral__reader_leave(void) {
    corral__reader *r = &corral__reader_self;
    uint64_t q = atomic_load_explicit(&r->seq, memory_order_relaxed);
    atomic_store_explicit(&r->seq, q + 1, memory_order_release);
}

/* fork() (fork.c's atfork handlers): before, takes the grace period's and the registry's locks;
 * after, the parent lets go of them, and the child also drops every record but its own (the
 * other threads are gone) and registers with membarrier again. */
void corral__reader_before_fork(void);
void corral__reader_after_fork_parent(void);
void corral__reader_after_fork_child(void);

/* For tests: grace periods that found a section to wait for, since the process started. */
uint64_t corral__reader_waits(void);
/* For tests: registered threads. */
size_t corral__reader_count(void);
/* For tests: makes every registered thread, and those that register later, fence after
 * entering, and grace periods skip membarrier (true); or restores what the system offers
 * (false). Only while no other thread is in a section or entering one. */
void corral__reader_force_fences(bool on);

#endif /* CORRAL_STORE_READER_H */
