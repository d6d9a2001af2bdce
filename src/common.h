/*
 * common.h - small internal helpers shared by every module: the allocator (with overflow-checked
 * size arithmetic), the assertion macros of HOUSE_STYLE.md section 7, and the clock.
 *
 * Allocator: every allocation inside src/ goes through corral__alloc/corral__free with the
 * handle's `corral__allocator`, so tests can count bytes and inject failures. There is no
 * global allocator.
 */
#ifndef CORRAL_COMMON_H
#define CORRAL_COMMON_H

#include "corral/corral.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

/* ---- Assertions ---- */

/* CORRAL_CHECK_OBJ: a long-lived internal struct starts with `uint32_t magic`; freeing zeroes it.
 * Catches use-after-free and wrong-type pointers in debug and test builds. */
#define CORRAL_CHECK_OBJ(p, m) assert((p) != NULL && (p)->magic == (m))

/* Branches believed unreachable but kept: assert in debug builds, pass through in release. */
#ifdef NDEBUG
#define CORRAL_ALWAYS(x) (x)
#define CORRAL_NEVER(x)  (x)
#else
#define CORRAL_ALWAYS(x) ((x) ? 1 : (assert(0 && #x), 0))
#define CORRAL_NEVER(x)  ((x) ? (assert(!(#x)), 1) : 0)
#endif

/* A call that cannot fail unless corral itself is broken (pthread_mutex_lock on a valid mutex,
 * clock_gettime on CLOCK_MONOTONIC): its result is asserted in debug builds and still checked
 * for the compiler in release builds. A statement, not an expression. */
#ifdef NDEBUG
#define CORRAL_MUST(x) ((void)(x))
#else
#define CORRAL_MUST(x) assert(x)
#endif

/* A mutex that knows its owner in debug builds, so `_locked` functions can assert it is held. */
typedef struct corral__mutex {
    pthread_mutex_t m;
#ifndef NDEBUG
    _Atomic(unsigned long) owner; /* pthread_self() of the holder as an integer, 0 when free */
#endif
} corral__mutex;

int corral__mutex_init(corral__mutex *m);
void corral__mutex_deinit(corral__mutex *m);
void corral__mutex_lock(corral__mutex *m);
int corral__mutex_trylock(corral__mutex *m); /* 0 when taken */
void corral__mutex_unlock(corral__mutex *m);
/* spin.h's lock, named here so CORRAL_ASSERT_HELD takes either kind. */
typedef struct corral__spin corral__spin;
#ifndef NDEBUG
int corral__mutex_held(corral__mutex *m);
int corral__spin_held(const corral__spin *l);
#define CORRAL_ASSERT_HELD(mu) \
    assert(_Generic((mu), corral__spin * : corral__spin_held, default : corral__mutex_held)(mu))
#else
#define CORRAL_ASSERT_HELD(mu) ((void)0)
#endif

/* ---- Allocation ---- */

/* The handle's allocator, always complete (libc when the user gave none). */
typedef struct corral__allocator {
    void *(*alloc)(void *ctx, size_t n);
    void *(*realloc)(void *ctx, void *p, size_t old_n, size_t new_n);
    void (*free)(void *ctx, void *p, size_t n);
    void *ctx;
} corral__allocator;

/* libc's, for the rare block that outlives any handle's allocator (value.c). */
extern const corral__allocator corral__libc_allocator;

/* Fills `a` from the user's hooks, or libc's when `user` has none. */
void corral__allocator_init(corral__allocator *a, const corral_allocator *user);

/* True when `a` is libc's malloc (the user gave no hooks): the memory store then bounds what the
 * process holds for it (store/memory_block.h). */
bool corral__allocator_is_libc(const corral__allocator *a);

/* Allocates a * b + c bytes; NULL on overflow or failure. */
void *corral__alloc3(const corral__allocator *a, size_t n, size_t m, size_t extra);
static inline void *corral__alloc(const corral__allocator *a, size_t n) {
    return a->alloc(a->ctx, n);
}
void *corral__calloc(const corral__allocator *a, size_t n, size_t size);
static inline void corral__free(const corral__allocator *a, void *p, size_t n) {
    if (p) a->free(a->ctx, p, n);
}
/* Copies `len` bytes into a new NUL-terminated block of len + 1 bytes. */
char *corral__strndup(const corral__allocator *a, const char *s, size_t len);

/* Blocks handed to the caller (freed by corral_free without a size): a header before the
 * returned pointer remembers the size. */
void *corral__user_alloc(const corral__allocator *a, size_t n);
void *corral__user_realloc(const corral__allocator *a, void *p, size_t n);
void corral__user_free(const corral__allocator *a, void *p);

/* ---- Time ---- */

/* The default clock: CLOCK_REALTIME in ns. */
uint64_t corral__realtime_ns(void *ctx);

/* CLOCK_MONOTONIC in ns (0 if it fails): for deadlines, backoff and spacing that measure real
 * time passing, never the handle's clock hook. */
uint64_t corral__monotonic_ns(void);

/* ---- Wake-up pipes ---- */

/* A pipe whose two ends are close-on-exec (a thread's wake-up: a program the application execs
 * must not inherit it). 0, or -1 with nothing left open and both ends -1. */
int corral__cloexec_pipe(int fd[2]);
/* Writes one byte to a wake-up pipe's write end `fd` (again on EINTR); 0 or -1. */
int corral__pipe_poke(int fd);

/* Sets a corral_error when `err` is not NULL; returns `code`. printf-style. */
int corral__seterr(corral_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CORRAL_MIN(a, b)                       ((a) < (b) ? (a) : (b))
#define CORRAL_MAX(a, b)                       ((a) > (b) ? (a) : (b))
#define CORRAL_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif /* CORRAL_COMMON_H */
