/*
 * fork.c - the atfork handlers and the list of hooks (fork.h).
 *
 * Lock order in prepare: the hooks' mutex, then liburcu's call_rcu (paused: its thread is
 * between callbacks, so in no grace period of ours), then liburcu-bp's locks, then the reader
 * registry's (store/reader.c), then the memory store's far table and depot
 * (store/memory_block.c, leaves).
 * The parent and the child let go in the reverse order.
 */
#include "fork.h"

#include "common.h"
#include "store/memory_block.h"
#include "store/reader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <urcu-bp.h>

static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static corral__fork_hook *head, *tail; /* under hooks_lock */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic unsigned long forks;

static void prepare(void) {
    CORRAL_MUST(pthread_mutex_lock(&hooks_lock) == 0);
    call_rcu_before_fork();
    urcu_bp_before_fork();
    corral__reader_before_fork();
    corral__mem_depot_before_fork();
}

static void parent(void) {
    corral__mem_depot_after_fork();
    corral__reader_after_fork_parent();
    urcu_bp_after_fork_parent();
    call_rcu_after_fork_parent();
    CORRAL_MUST(pthread_mutex_unlock(&hooks_lock) == 0);
}

static void child(void) {
    corral__mem_depot_after_fork();
    corral__reader_after_fork_child();
    urcu_bp_after_fork_child();
    call_rcu_after_fork_child();
    for (corral__fork_hook *h = head; h; h = h->next)
        h->child(h->arg);
    atomic_fetch_add_explicit(&forks, 1, memory_order_relaxed);
    CORRAL_MUST(pthread_mutex_unlock(&hooks_lock) == 0);
}

static void register_handlers(void) {
    /* Without the handlers a forked child would deadlock or share sockets: stop here. */
    if (pthread_atfork(prepare, parent, child) != 0) abort();
}

void corral__fork_hook_add(corral__fork_hook *h) {
    CORRAL_MUST(pthread_once(&once, register_handlers) == 0);
    CORRAL_MUST(pthread_mutex_lock(&hooks_lock) == 0);
    h->next = NULL;
    h->prev = tail;
    if (tail)
        tail->next = h;
    else
        head = h;
    tail = h;
    CORRAL_MUST(pthread_mutex_unlock(&hooks_lock) == 0);
}

void corral__fork_hook_remove(corral__fork_hook *h) {
    CORRAL_MUST(pthread_mutex_lock(&hooks_lock) == 0);
    if (h->prev || head == h) {
        if (h->prev)
            h->prev->next = h->next;
        else
            head = h->next;
        if (h->next)
            h->next->prev = h->prev;
        else
            tail = h->prev;
    }
    h->prev = h->next = NULL;
    CORRAL_MUST(pthread_mutex_unlock(&hooks_lock) == 0);
}

unsigned long corral__fork_count(void) {
    return atomic_load_explicit(&forks, memory_order_relaxed);
}
