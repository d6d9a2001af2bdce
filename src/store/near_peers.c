/*
 * near_peers.c - the list of this process's near caches (near_peers.h).
 *
 * One doubly linked list under one process-wide rwlock: writers of any handle walk it under the
 * read lock, so writes do not wait for each other; near caches join and leave under the write
 * lock, at open and close. `n_peers` lets a process without a near cache skip the lock.
 *
 * fork(): a thread that does not exist in the child may have held the lock, so the child
 * re-initialises it (a fork hook added with the first peer). The list itself is left as it is:
 * the near caches it links were copied into the child with it.
 */
#include "near_peers.h"
#include "../fork.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static corral__near_peer *head; /* under lock */
static _Atomic unsigned n_peers;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static corral__fork_hook fork_hook;

static void after_fork(void *arg) {
    (void)arg;
    CORRAL_MUST(pthread_rwlock_init(&lock, NULL) == 0);
}

static void add_fork_hook(void) {
    fork_hook.child = after_fork;
    corral__fork_hook_add(&fork_hook);
}

void corral__near_peer_add(corral__near_peer *p) {
    CORRAL_MUST(pthread_once(&once, add_fork_hook) == 0);
    CORRAL_MUST(pthread_rwlock_wrlock(&lock) == 0);
    p->prev = NULL;
    p->next = head;
    if (head) head->prev = p;
    head = p;
    atomic_fetch_add(&n_peers, 1);
    CORRAL_MUST(pthread_rwlock_unlock(&lock) == 0);
}

void corral__near_peer_remove(corral__near_peer *p) {
    CORRAL_MUST(pthread_rwlock_wrlock(&lock) == 0);
    if (p->prev || p->next || head == p) {
        if (p->prev)
            p->prev->next = p->next;
        else
            head = p->next;
        if (p->next) p->next->prev = p->prev;
        p->prev = p->next = NULL;
        atomic_fetch_sub(&n_peers, 1);
    }
    CORRAL_MUST(pthread_rwlock_unlock(&lock) == 0);
}

void corral__near_peers_changed(const char *server, size_t server_len, const void *owner,
                                const corral__skey *ks, size_t n) {
    /* A near cache that joins after this load never saw the old value of these keys in its
     * L1 by way of this write: it starts empty, and fills only from Redis, after the write. */
    if (atomic_load(&n_peers) == 0) return;
    CORRAL_MUST(pthread_rwlock_rdlock(&lock) == 0);
    for (corral__near_peer *p = head; p; p = p->next) {
        if (p->owner == owner || p->server_len != server_len ||
            memcmp(p->server, server, server_len) != 0)
            continue;
        if (!ks) {
            p->forget(p->ctx, NULL, 0);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            p->forget(p->ctx, ks[i].data, ks[i].len);
    }
    CORRAL_MUST(pthread_rwlock_unlock(&lock) == 0);
}
