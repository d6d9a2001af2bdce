/*
 * fork.h - a handle survives fork(): what each part of the library does in the child.
 *
 * Servers such as gunicorn and uWSGI fork their workers after the application, and its caches,
 * are loaded. In the child only the forking thread exists: every other thread (the near cache's
 * tracker, the refresh workers, liburcu's call_rcu thread, user threads) is gone, with whatever
 * it held, and every socket is shared with the parent. So, in the child, before fork() returns:
 * - each Redis pool closes its connections (the child's copies of the descriptors; the parent's
 *   stay open) and marks every slot idle: the child reconnects on first use, never sharing a
 *   socket with the parent;
 * - each near cache forgets its tracker (a new one starts on the next read, with its own
 *   connection and wake-up pipe, and empties L1 before it serves from it);
 * - the process's list of near caches (store/near_peers.c) re-initialises its lock;
 * - each Redis store's lease notifier (store/redis_notify.c) closes its subscriber connection,
 *   drops its watches (their threads are gone) and re-initialises its lock: the next watch
 *   starts a subscriber of the child's;
 * - each handle forgets its refresh workers (they restart on the next background refresh) and
 *   the flights of threads that no longer exist (their waiters are gone too);
 * - the memory store's reader registry keeps only the forking thread, and liburcu's call_rcu
 *   thread is restarted (call_rcu_after_fork_child, urcu_bp_after_fork_child);
 * - the depot of chunks closed memory stores left (store/memory_block.c) stays the child's, as
 *   copy-on-write pages: a pre-forking master that closed a store may call
 *   corral_release_memory before it forks; so do the region's reservation and the far table
 *   (the names of the parent's entries stay taken in the child).
 *
 * How: one pthread_atfork registration for the process (made with the first hook) and a list
 * of hooks, one per part that owns such resources; each part embeds its hook and adds it at open,
 * removes it at close. The list is the process's because fork is: it holds no handle state.
 * prepare takes the list's mutex, pauses the call_rcu thread and takes the reader registry's
 * locks and the memory store's far table and depot locks, so none of them is held by a thread that
 * will not exist in the child; the parent lets go of them; the child lets go of them and runs every
 * hook, in registration order.
 *
 * Not covered: a fork while another thread of the parent is inside a corral call on the handle
 * (that thread may hold a memory store's shard lock or be mid-command; corral_value_unref is
 * such a call, since the last reference frees the block under the store's lock of kept
 * mappings, store/memory_block.h): fork from a thread
 * while the others are quiet, as pre-forking servers do. The child never writes to a socket or
 * a pipe it shares with the parent, and the parent is unaffected by anything the child does.
 *
 * Threads: add and remove are thread-safe. Hooks run in the child, single-threaded, inside
 * fork(): they may allocate and free (glibc's malloc is usable there), close descriptors and
 * reinitialise mutexes, and must not wait for another thread.
 */
#ifndef CORRAL_FORK_H
#define CORRAL_FORK_H

typedef struct corral__fork_hook {
    void (*child)(void *arg); /* runs in the child */
    void *arg;
    struct corral__fork_hook *prev, *next; /* the list, under its mutex */
} corral__fork_hook;

/* Adds `h` (with `child` and `arg` set), registering the atfork handlers on first use. */
void corral__fork_hook_add(corral__fork_hook *h);
/* Removes `h`. Accepts a hook never added (both links NULL and not the head). */
void corral__fork_hook_remove(corral__fork_hook *h);

/* Forks seen by this process since it started (a test's way to see the handlers ran). */
unsigned long corral__fork_count(void);

#endif /* CORRAL_FORK_H */
