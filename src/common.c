/*
 * common.c - the allocator, the debug mutex, the default clock, wake-up pipes and error filling.
 * No state of its own: everything here works on what the caller passes.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- Mutex ---- */

int corral__mutex_init(corral__mutex *m) {
#ifndef NDEBUG
    atomic_init(&m->owner, 0);
#endif
    return pthread_mutex_init(&m->m, NULL) == 0 ? CORRAL_OK : CORRAL_ENOMEM;
}

void corral__mutex_deinit(corral__mutex *m) {
    int rc = pthread_mutex_destroy(&m->m);
    assert(rc == 0);
    (void)rc;
}

#ifndef NDEBUG
static unsigned long self_id(void) {
    /* pthread_t is an integer on Linux/glibc; the debug owner check only needs identity. */
    return (unsigned long)pthread_self();
}
#endif

void corral__mutex_lock(corral__mutex *m) {
    int rc = pthread_mutex_lock(&m->m);
    assert(rc == 0);
    (void)rc;
#ifndef NDEBUG
    atomic_store_explicit(&m->owner, self_id(), memory_order_relaxed);
#endif
}

int corral__mutex_trylock(corral__mutex *m) {
    int rc = pthread_mutex_trylock(&m->m);
#ifndef NDEBUG
    if (rc == 0) atomic_store_explicit(&m->owner, self_id(), memory_order_relaxed);
#endif
    return rc;
}

void corral__mutex_unlock(corral__mutex *m) {
#ifndef NDEBUG
    atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
#endif
    int rc = pthread_mutex_unlock(&m->m);
    assert(rc == 0);
    (void)rc;
}

#ifndef NDEBUG
int corral__mutex_held(corral__mutex *m) {
    return atomic_load_explicit(&m->owner, memory_order_relaxed) == self_id();
}
#endif

/* ---- Allocation ---- */

static void *libc_alloc(void *ctx, size_t n) {
    (void)ctx;
    return malloc(n ? n : 1);
}

static void *libc_realloc(void *ctx, void *p, size_t old_n, size_t new_n) {
    (void)ctx;
    (void)old_n;
    return realloc(p, new_n ? new_n : 1);
}

static void libc_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    (void)n;
    free(p);
}

const corral__allocator corral__libc_allocator = { libc_alloc, libc_realloc, libc_free, NULL };

void corral__allocator_init(corral__allocator *a, const corral_allocator *user) {
    if (user && user->alloc && user->realloc && user->free) {
        a->alloc = user->alloc;
        a->realloc = user->realloc;
        a->free = user->free;
        a->ctx = user->ctx;
    } else {
        a->alloc = libc_alloc;
        a->realloc = libc_realloc;
        a->free = libc_free;
        a->ctx = NULL;
    }
}

bool corral__allocator_is_libc(const corral__allocator *a) {
    return a->alloc == libc_alloc && a->free == libc_free;
}

void *corral__alloc3(const corral__allocator *a, size_t n, size_t m, size_t extra) {
    size_t prod;
    if (m != 0 && n > SIZE_MAX / m) return NULL;
    prod = n * m;
    if (prod > SIZE_MAX - extra) return NULL;
    return a->alloc(a->ctx, prod + extra);
}

void *corral__calloc(const corral__allocator *a, size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    /* libc's calloc knows that a fresh mapping is zero and leaves its pages untouched: a large
     * array (a memory store's ghost table, the metrics' stripes) costs RSS only where it is
     * written (docs/memory-density.md). */
    if (corral__allocator_is_libc(a))
        return n && size ? calloc(n, size) : malloc(1); /* libc_alloc's malloc(0) */
    void *p = corral__alloc(a, n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

char *corral__strndup(const corral__allocator *a, const char *s, size_t len) {
    if (len == SIZE_MAX) return NULL;
    char *p = a->alloc(a->ctx, len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

/* The header keeps max_align_t alignment for the block that follows it. */
typedef union user_hdr {
    size_t n;
    max_align_t align;
} user_hdr;

void *corral__user_alloc(const corral__allocator *a, size_t n) {
    if (n > SIZE_MAX - sizeof(user_hdr)) return NULL;
    user_hdr *h = a->alloc(a->ctx, sizeof *h + n);
    if (!h) return NULL;
    h->n = n;
    return h + 1;
}

void *corral__user_realloc(const corral__allocator *a, void *p, size_t n) {
    if (!p) return corral__user_alloc(a, n);
    if (n > SIZE_MAX - sizeof(user_hdr)) return NULL;
    user_hdr *h = (user_hdr *)p - 1;
    user_hdr *nh = a->realloc(a->ctx, h, sizeof *h + h->n, sizeof *h + n);
    if (!nh) return NULL;
    nh->n = n;
    return nh + 1;
}

void corral__user_free(const corral__allocator *a, void *p) {
    if (!p) return;
    user_hdr *h = (user_hdr *)p - 1;
    a->free(a->ctx, h, sizeof *h + h->n);
}

/* ---- Time ---- */

uint64_t corral__realtime_ns(void *ctx) {
    (void)ctx;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t corral__monotonic_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- Wake-up pipes ---- */

int corral__cloexec_pipe(int fd[2]) {
    fd[0] = fd[1] = -1;
    int p[2];
    if (pipe(p) != 0) return -1;
    /* pipe2(O_CLOEXEC) is not POSIX; between pipe and fcntl another thread's fork+exec may
     * inherit the ends, which only keeps them open in that program. */
    if (fcntl(p[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(p[1], F_SETFD, FD_CLOEXEC) != 0) {
        (void)close(p[0]);
        (void)close(p[1]);
        return -1;
    }
    fd[0] = p[0];
    fd[1] = p[1];
    return 0;
}

int corral__pipe_poke(int fd) {
    char b = 1;
    ssize_t w;
    do {
        w = write(fd, &b, 1);
    } while (w < 0 && errno == EINTR);
    return w == 1 ? 0 : -1;
}

/* ---- Errors ---- */

int corral__seterr(corral_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n < 0) err->msg[0] = '\0'; /* truncation is fine: msg stays NUL-terminated */
        err->code = code;
    }
    return code;
}
