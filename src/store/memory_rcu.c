/*
 * memory_rcu.c - freeing what the memory store removed: an entry leaves the table at once, and
 * its block is freed only once no reader can still be looking at it.
 *
 * - Removal (corral__mem_entry_retire, under the shard lock) clears the entry's LIVE flag and
 *   pushes it on the store's limbo, a lock-free stack. Unless one is queued, it then queues a
 *   flush with liburcu's call_rcu (only to run on its call_rcu thread: the grace period that
 *   matters is ours). The flush takes the whole limbo, waits for one grace period of our
 *   read-side sections (reader.h) and drops the table's reference on each entry; the last
 *   reference frees the block (corral__mem_entry_release). Under a stream of removals one grace
 *   period frees a batch. The entry needs no rcu_head of its own, so after removal its queue
 *   links hold the limbo's link (memory_read.h, `u.dead`).
 * - liburcu's call_rcu thread sleeps 10 ms after each batch, so under fast writes the limbo
 *   grew to megabytes the budget no longer counts. The store counts its bytes (`limbo_bytes`),
 *   and a write that allocated and finds more than `limbo_max` does the flush's work on its own
 *   thread (corral__mem_limbo_help), out of its read-side section and its shard's lock.
 * - `rcu_pending` counts the entries retired and not yet released, plus a queued flush;
 *   corral__mem_quiesce and close wait on `rcu_idle` until it is zero. liburcu's rcu_barrier is
 *   not used: it waits for every callback in the process, and it allocates on the caller's
 *   thread what the call_rcu thread frees, a race ThreadSanitizer reports inside liburcu where
 *   no suppression can name it (the library is stripped).
 * - ThreadSanitizer sees C11 atomics, but not membarrier, on which the grace period relies, nor
 *   liburcu. Two annotations model them: every read-side section ends with a release on the
 *   store's `tsan_gp`, which the flush acquires after the grace period, and call_rcu is
 *   preceded by a release on the flush's head, which the flush acquires first. The limbo's
 *   atomics order a retire before the flush that takes its entry. With them our code needs no
 *   TSan suppression (scripts/tsan.supp is empty on purpose).
 * - A table a resize replaced (memory.c) goes the same way with a call_rcu of its own: resizes
 *   are few (a shard's table doubles), so each waits for its own grace period, and counts in
 *   `rcu_pending` until it is freed.
 * - `rcu_lock` guards the last decrement of `rcu_pending`. It is a leaf of the lock order
 *   (docs/threads.md).
 *
 * Reference: Desnoyers et al., "User-Level Implementations of Read-Copy Update" (IEEE TPDS 2012).
 */
#include "memory_internal.h"

#include <pthread.h>

/* Frees the block of an entry whose last reference is gone. Called by corral_value_unref. */
void corral__mem_entry_release(corral_value *v) {
    mem_entry *e = CORRAL_CONTAINER_OF(v, mem_entry, val);
    CORRAL_CHECK_OBJ(v, CORRAL_VALUE_MAGIC);
    assert(!mem_live(e));
    corral__mem_entry_free(e);
}

/* Counts `n` of the store's pending frees done (rcu_pending). A count that stays above zero
 * wakes nobody and needs no lock. The last one is taken under the lock, so a waiter that sees
 * zero cannot free the store before we let go. */
static void pending_done(mem_store *s, size_t n) {
    size_t have = atomic_load_explicit(&s->rcu_pending, memory_order_relaxed);
    while (have > n)
        if (atomic_compare_exchange_weak_explicit(&s->rcu_pending, &have, have - n,
                                                  memory_order_release, memory_order_relaxed))
            return;
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    if (atomic_fetch_sub_explicit(&s->rcu_pending, n, memory_order_release) == n)
        pthread_ok(pthread_cond_broadcast(&s->rcu_idle));
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
}

/* Drops the table's reference on each entry of `list`, taken from the limbo a grace period
 * ago, and counts their bytes out of limbo_bytes; returns how many there were. */
static size_t limbo_release(mem_store *s, mem_entry *list) {
    size_t n = 0, bytes = 0;
    while (list) {
        mem_entry *next = mem_deref(list->u.dead.next);
        MEM_TSAN_ACQUIRE(&s->tsan_gp); /* every read-side section that saw it has ended */
        bytes += entry_bytes(&s->blocks, list);
        corral_value_unref(&list->val); /* may free it */
        list = next;
        n++;
    }
    atomic_fetch_sub_explicit(&s->limbo_bytes, bytes, memory_order_relaxed);
    return n;
}

/* Runs on liburcu's call_rcu thread. Clears `flush_queued` before it takes the limbo, so an
 * entry pushed after the take finds it clear and queues the next flush (both seq_cst). Then
 * waits for a grace period of our read-side sections, which began after every entry taken was
 * unlinked, and drops the table's reference on each. */
static void mem_limbo_flush_rcu(struct rcu_head *head) {
    mem_store *s = CORRAL_CONTAINER_OF(head, mem_store, flush_head);
    MEM_TSAN_ACQUIRE(head); /* call_rcu happened before: see corral__mem_entry_retire */
    atomic_store(&s->flush_queued, false);
    mem_entry *list = mem_deref(atomic_exchange(&s->limbo, 0));
    corral__reader_sync();
    size_t n = 1 + limbo_release(s, list); /* this flush, and its entries */
    corral__mem_blocks_trim(&s->blocks);   /* on the call_rcu thread: no request waits */
    pending_done(s, n);
}

/* The flush's work on the writer's thread, without the trim; one write at a time (the bytes it
 * took count until it released them, and every other write would see them and wait for a grace
 * period of its own). A flush queued before still runs and finds what was retired since. */
void corral__mem_limbo_help(mem_store *s) {
    if (atomic_exchange_explicit(&s->limbo_helping, true, memory_order_acquire)) return;
    mem_entry *list = mem_deref(atomic_exchange(&s->limbo, 0));
    size_t n = 0;
    if (list) {
        corral__reader_sync();
        n = limbo_release(s, list);
        atomic_fetch_add_explicit(&s->limbo_helps, 1, memory_order_relaxed);
    }
    atomic_store_explicit(&s->limbo_helping, false, memory_order_release);
    if (n) pending_done(s, n); /* last: a count at zero lets close free the store */
}

/* Waits until every callback this store queued has run. Not inside a read-side section. */
void corral__mem_wait_rcu_idle(mem_store *s) {
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    while (atomic_load_explicit(&s->rcu_pending, memory_order_acquire) != 0)
        pthread_ok(pthread_cond_wait(&s->rcu_idle, &s->rcu_lock));
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
}

/* Hands an entry already out of the table to the limbo. Call inside a read-side section. */
void corral__mem_entry_retire(mem_store *s, mem_entry *e) {
    mem_kw_set(e, MEM_KW_LIVE, 0);
    atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->limbo_bytes, entry_bytes(&s->blocks, e), memory_order_relaxed);
    mem_ref me = mem_ref_of(e), top = atomic_load_explicit(&s->limbo, memory_order_relaxed);
    do
        e->u.dead.next = top;
    while (!atomic_compare_exchange_weak(&s->limbo, &top, me));
    if (!atomic_load(&s->flush_queued) && !atomic_exchange(&s->flush_queued, true)) {
        atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
        MEM_TSAN_RELEASE(&s->flush_head); /* shows TSan that call_rcu happens before the flush */
        call_rcu(&s->flush_head, mem_limbo_flush_rcu);
    }
}

/* Runs on liburcu's call_rcu thread: waits for a grace period of our read-side sections, which
 * began after the table was replaced, and frees it. */
static void mem_table_free_rcu(struct rcu_head *head) {
    mem_table *t = CORRAL_CONTAINER_OF(head, mem_table, rcu);
    MEM_TSAN_ACQUIRE(head); /* call_rcu happened before: see corral__mem_table_retire */
    mem_store *s = t->store;
    corral__reader_sync();
    MEM_TSAN_ACQUIRE(&s->tsan_gp); /* every read-side section that saw it has ended */
    corral__mem_block_free_unkept(&s->blocks, t, mem_table_bytes(t->bits));
    pending_done(s, 1);
}

void corral__mem_table_retire(mem_store *s, mem_table *t) {
    t->store = s;
    atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
    MEM_TSAN_RELEASE(&t->rcu); /* shows TSan that call_rcu happens before the free */
    call_rcu(&t->rcu, mem_table_free_rcu);
}

void corral__mem_quiesce(corral__store *base) {
    corral__mem_wait_rcu_idle(store_of(base));
}
