/*
 * reader.c - the registry of reading threads and the grace period (reader.h).
 */
#define _DEFAULT_SOURCE /* syscall */
#include "reader.h"

#include "../common.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu-bp.h>

_Thread_local corral__reader corral__reader_self __attribute__((tls_model("initial-exec")));

static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;     /* one grace period at a time */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER; /* taken after sync_lock */
static pthread_cond_t unpinned = PTHREAD_COND_INITIALIZER;        /* with registry_lock */
static corral__reader *registry;                                  /* under registry_lock */
static size_t registered;                                         /* under registry_lock */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool have_membarrier; /* written once, in init */
static bool fences;          /* readers fence, grace periods skip membarrier; under registry_lock */
static _Atomic uint64_t waits;

static long membarrier(int cmd) {
    return syscall(__NR_membarrier, cmd, 0, 0);
}

/* Runs when a registered thread exits: its record is in its TLS block, which goes next. */
static void unregister_self(void *arg) {
    corral__reader *r = arg;
    CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
    while (r->pinned)
        CORRAL_MUST(pthread_cond_wait(&unpinned, &registry_lock) == 0);
    if (r->prev)
        r->prev->next = r->next;
    else
        registry = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    registered--;
    atomic_store_explicit(&r->seq, 0, memory_order_relaxed);
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
}

static void init(void) {
    /* Without the key, an exiting thread would leave its record in the list, to be read after
     * its thread-local block is gone: nothing to do but stop. It fails only when the process
     * has used up PTHREAD_KEYS_MAX keys; liburcu-bp, whose read lock this replaces, dies the
     * same way. */
    if (pthread_key_create(&exit_key, unregister_self) != 0) abort();
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);
    have_membarrier = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                      membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    fences = !have_membarrier;
}

/* Registers the calling thread. */
static void register_self(void) {
    CORRAL_MUST(pthread_once(&init_once, init) == 0);
    corral__reader *r = &corral__reader_self;
    CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
    r->prev = NULL;
    r->next = registry;
    if (registry) registry->prev = r;
    registry = r;
    registered++;
    atomic_store_explicit(&r->seq, 2 | (fences ? CORRAL__READER_FENCE : 0), memory_order_relaxed);
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
    /* Registered before the key is set: if the thread is exiting (a destructor that reads),
     * glibc runs the key's destructor again after this one. */
    if (pthread_setspecific(exit_key, r) != 0) abort();
    /* liburcu-bp's record too, which call_rcu needs: its first use registers the thread (a
     * sleeping mutex, signals blocked), and writers call call_rcu under a shard's spin lock
     * (docs/threads.md). A thread's first section is before any shard lock. */
    urcu_bp_register_thread();
}

void corral__reader_enter_slow(void) {
    corral__reader *r = &corral__reader_self;
    if (atomic_load_explicit(&r->seq, memory_order_relaxed) == 0) register_self();
    uint64_t q = atomic_load_explicit(&r->seq, memory_order_relaxed);
    assert(!(q & 1) && "read-side sections do not nest");
    atomic_store_explicit(&r->seq, q + 1, memory_order_relaxed);
    if (q & CORRAL__READER_FENCE)
        atomic_thread_fence(memory_order_seq_cst);
    else
        atomic_signal_fence(memory_order_seq_cst);
}

/* Waits until record r no longer shows sequence q: spins a little, then yields. */
static void wait_until_moved(corral__reader *r, uint64_t q) {
    for (unsigned spins = 0; atomic_load_explicit(&r->seq, memory_order_acquire) == q; spins++) {
        if (spins < 64)
            atomic_signal_fence(memory_order_seq_cst);
        else
            sched_yield();
    }
}

void corral__reader_sync(void) {
    CORRAL_MUST(pthread_once(&init_once, init) == 0);
    CORRAL_MUST(pthread_mutex_lock(&sync_lock) == 0);
    CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
    /* Every thread of the process passes a full barrier after our unlinks (and readers that
     * fence did so themselves): a section entered after this sees them. So does a thread that
     * registers after we let go of the registry: its mutex orders the two. */
    if (fences) {
        atomic_thread_fence(memory_order_seq_cst);
    } else if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
        /* It registered, so failing now would be a kernel bug; readers do not fence then,
         * and there is nothing safe to fall back to. */
        abort();
    }
    corral__reader *waiting = NULL;
    for (corral__reader *r = registry; r; r = r->next) {
        uint64_t q = atomic_load_explicit(&r->seq, memory_order_acquire);
        if (q & 1) {
            r->pinned = true;
            r->pinned_seq = q;
            r->waiter = waiting;
            waiting = r;
        }
    }
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
    if (waiting) atomic_fetch_add_explicit(&waits, 1, memory_order_relaxed);
    for (corral__reader *r = waiting; r; r = r->waiter)
        wait_until_moved(r, r->pinned_seq);
    if (waiting) {
        CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
        for (corral__reader *r = waiting; r; r = r->waiter)
            r->pinned = false;
        CORRAL_MUST(pthread_cond_broadcast(&unpinned) == 0);
        CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
    }
    CORRAL_MUST(pthread_mutex_unlock(&sync_lock) == 0);
}

uint64_t corral__reader_waits(void) {
    return atomic_load_explicit(&waits, memory_order_relaxed);
}

size_t corral__reader_count(void) {
    CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
    size_t n = registered;
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
    return n;
}

void corral__reader_force_fences(bool on) {
    CORRAL_MUST(pthread_once(&init_once, init) == 0);
    CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
    fences = on || !have_membarrier;
    for (corral__reader *r = registry; r; r = r->next)
        if (fences)
            atomic_fetch_or_explicit(&r->seq, CORRAL__READER_FENCE, memory_order_relaxed);
        else
            atomic_fetch_and_explicit(&r->seq, ~CORRAL__READER_FENCE, memory_order_relaxed);
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
}

/* ---- fork (reader.h) ---- */

void corral__reader_before_fork(void) {
    CORRAL_MUST(pthread_mutex_lock(&sync_lock) == 0);
    CORRAL_MUST(pthread_mutex_lock(&registry_lock) == 0);
}

void corral__reader_after_fork_parent(void) {
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
    CORRAL_MUST(pthread_mutex_unlock(&sync_lock) == 0);
}

void corral__reader_after_fork_child(void) {
    corral__reader *self = &corral__reader_self;
    bool mine = atomic_load_explicit(&self->seq, memory_order_relaxed) != 0;
    registry = mine ? self : NULL;
    registered = mine ? 1 : 0;
    if (mine) self->prev = self->next = NULL;
    self->pinned = false;
    CORRAL_MUST(pthread_cond_init(&unpinned, NULL) == 0); /* its waiters were other threads */
    if (have_membarrier) (void)membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
    CORRAL_MUST(pthread_mutex_unlock(&registry_lock) == 0);
    CORRAL_MUST(pthread_mutex_unlock(&sync_lock) == 0);
}
