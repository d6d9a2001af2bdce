/*
 * memory_rcu.c - freeing what the memory store removed: an entry leaves the table at once, and
 * its block is freed only once no reader can still be looking at it.
 *
 * - Removal (corral__mem_entry_retire, under the shard mutex) marks the entry DEAD and queues
 *   mem_entry_free_rcu with liburcu's call_rcu. When frees are sparse, that callback waits for
 *   a grace period of our read-side sections (reader.h) and drops the table's reference.
 *   Otherwise it puts the entry in the store's limbo and, unless one is queued, queues a flush
 *   of the limbo (one more call_rcu), which waits for one grace period for the whole batch. The
 *   last reference frees the block (corral__mem_entry_release). call_rcu batches on its own:
 *   a stream of removals wakes its worker once per batch, not once per entry.
 * - `rcu_pending` counts the entries retired and not yet released, plus a queued flush;
 *   corral__mem_quiesce and close wait on `rcu_idle` until it is zero. liburcu's rcu_barrier is
 *   not used: it waits for every callback in the process, and it allocates on the caller's
 *   thread what the call_rcu thread frees, a race ThreadSanitizer reports inside liburcu where
 *   no suppression can name it (the library is stripped).
 * - ThreadSanitizer sees C11 atomics, but not membarrier, on which the grace period relies, nor
 *   liburcu. Two annotations model them: every read-side section ends with a release on the
 *   store's `tsan_gp`, which a release after the grace period acquires, and call_rcu is
 *   preceded by a release on the entry, which the callback acquires first. With them our code
 *   needs no TSan suppression (scripts/tsan.supp is empty on purpose).
 * - `rcu_lock` guards the limbo, `flush_queued`, `last_gp_ns` and the last decrement of
 *   `rcu_pending`. It is a leaf of the lock order (docs/threads.md).
 *
 * Reference: Desnoyers et al., "User-Level Implementations of Read-Copy Update" (IEEE TPDS 2012).
 */
#include "memory_internal.h"

#include <pthread.h>

/* Frees the block of an entry whose last reference is gone. Called by corral_value_unref. */
void corral__mem_entry_release(corral_value *v) {
    mem_entry *e = CORRAL_CONTAINER_OF(v, mem_entry, val);
    CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
    assert(load_state(e) == MEM_DEAD);
    mem_store *s = e->store;
    size_t bytes = entry_block_bytes(e);
    e->magic = 0;
    v->magic = 0;
    corral__mem_block_free(&s->blocks, e, bytes);
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

/* Waits for a grace period of our read-side sections (reader.h), which begins after every
 * entry of `list` (linked through u.q.older) was unlinked, drops the table's reference on each,
 * and counts them, and `also` more, among the store's pending frees done. */
static void release_after_grace(mem_store *s, mem_entry *list, size_t also) {
    corral__reader_sync();
    size_t n = also;
    while (list) {
        mem_entry *next = list->u.q.older;
        MEM_TSAN_ACQUIRE(&s->tsan_gp);  /* every read-side section that saw it has ended */
        corral_value_unref(&list->val); /* may free it */
        list = next;
        n++;
    }
    corral__mem_blocks_trim(&s->blocks); /* on the call_rcu thread: no request waits */
    pending_done(s, n);
}

/* Runs on liburcu's call_rcu thread: takes the entries in limbo, waits for a grace period of
 * our read-side sections (reader.h), which began after every one of them was unlinked, and
 * drops the table's reference on each. One grace period frees a batch. */
static void mem_limbo_flush_rcu(struct rcu_head *head) {
    mem_store *s = CORRAL_CONTAINER_OF(head, mem_store, flush_head);
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    mem_entry *e = s->limbo;
    s->limbo = NULL;
    s->flush_queued = false;
    s->last_gp_ns = corral__monotonic_ns();
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
    release_after_grace(s, e, 1); /* and this callback */
}

/* Runs on liburcu's call_rcu thread after one of its grace periods, which the store's readers
 * do not take part in. When frees are sparse (no grace period of ours for gp_spacing_ns,
 * nothing in limbo), waits for one of ours and drops the table's reference now: a delete then
 * close costs one call_rcu round, not two. Otherwise puts the entry in the store's limbo, and
 * queues a flush of the limbo (another call_rcu) when none is queued: under a stream of
 * removals, one grace period frees a batch. */
static void mem_entry_free_rcu(struct rcu_head *head) {
    mem_entry *e = CORRAL_CONTAINER_OF(head, mem_entry, u.rcu);
    MEM_TSAN_ACQUIRE(e); /* call_rcu happened before: see corral__mem_entry_retire */
    CORRAL_CHECK_OBJ(e, MEM_ENTRY_MAGIC);
    mem_store *s = e->store;
    uint64_t now = corral__monotonic_ns();
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    bool now_alone = !s->flush_queued && !s->limbo && now - s->last_gp_ns >= s->gp_spacing_ns;
    bool queue = false;
    e->u.q.older = NULL; /* the rcu_head is spent: the union's links are free */
    if (now_alone) {
        s->last_gp_ns = now;
    } else {
        e->u.q.older = s->limbo;
        s->limbo = e;
        queue = !s->flush_queued;
        if (queue) {
            s->flush_queued = true;
            atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
        }
    }
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
    if (now_alone)
        release_after_grace(s, e, 0);
    else if (queue)
        call_rcu(&s->flush_head, mem_limbo_flush_rcu);
}

/* Waits until every callback this store queued has run. Not inside a read-side section. */
void corral__mem_wait_rcu_idle(mem_store *s) {
    pthread_ok(pthread_mutex_lock(&s->rcu_lock));
    while (atomic_load_explicit(&s->rcu_pending, memory_order_acquire) != 0)
        pthread_ok(pthread_cond_wait(&s->rcu_idle, &s->rcu_lock));
    pthread_ok(pthread_mutex_unlock(&s->rcu_lock));
}

/* Hands an entry already out of the table to RCU. Call inside a read-side section. */
void corral__mem_entry_retire(mem_store *s, mem_entry *e) {
    atomic_store_explicit(&e->state, MEM_DEAD, memory_order_release);
    atomic_fetch_add_explicit(&s->rcu_pending, 1, memory_order_relaxed);
    MEM_TSAN_RELEASE(e); /* shows TSan that call_rcu happens before the callback */
    call_rcu(&e->u.rcu, mem_entry_free_rcu);
}

void corral__mem_quiesce(corral__store *base) {
    corral__mem_wait_rcu_idle(store_of(base));
}
