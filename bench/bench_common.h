/*
 * bench_common.h - helpers shared by the benchmarks in bench/: a seeded PRNG, a Zipf generator,
 * key rendering, a monotonic clock, a fixed-duration multi-thread runner and small statistics.
 *
 * Everything here is `static inline`, so a benchmark includes the header and uses what it
 * needs; nothing is linked. Benchmarks are programs, not library code: on any failure they
 * print why and exit (bench_die), since a benchmark that goes on after an error prints numbers
 * nobody should trust.
 *
 * Zipf: ranks 0..n-1 with P(rank = i) proportional to 1 / (i + 1)^theta, sampled exactly by
 * inverting the precomputed CDF: a guide table maps the uniform draw to a short index range,
 * then a binary search finishes (about 2 probes per draw for n = 1M). Callers map ranks to key
 * ids through a random permutation (bench_permute), so hot keys are not adjacent in memory.
 *
 * Threads: the runner starts `n` workers that wait on one barrier together with the main
 * thread; the main thread sleeps for the window, then raises an atomic stop flag. Each worker
 * times itself from the barrier to the moment it sees the flag, so the rate is the sum over
 * workers of ops / own elapsed time.
 */
#ifndef CORRAL_BENCH_COMMON_H
#define CORRAL_BENCH_COMMON_H

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- Failure ---- */

/* Prints the message and exits with status 1. */
static inline void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void bench_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: FATAL: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* malloc that never returns NULL (dies instead). */
static inline void *bench_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) bench_die("out of memory allocating %zu bytes", n);
    return p;
}

/* ---- Time ---- */

static inline uint64_t bench_now_ns(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) bench_die("clock_gettime failed");
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bench_sleep_ns(uint64_t ns) {
    struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000u),
                           .tv_nsec = (long)(ns % 1000000000u) };
    while (nanosleep(&ts, &ts) != 0) {
        /* EINTR: sleep the remainder that nanosleep wrote back. */
    }
}

/* ---- PRNG: xoshiro256** seeded through splitmix64 ---- */

typedef struct bench_rng {
    uint64_t s[4];
} bench_rng;

static inline uint64_t bench_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static inline void bench_rng_seed(bench_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = bench_splitmix64(&seed);
}

static inline uint64_t bench_rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t bench_rng_next(bench_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = bench_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = bench_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double bench_rng_double(bench_rng *r) {
    return (double)(bench_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is below 2^-32 for n < 2^32). */
static inline uint32_t bench_rng_below(bench_rng *r, uint32_t n) {
    return (uint32_t)(((bench_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Fills perm with a uniformly random permutation of 0..n-1 (Fisher-Yates). */
static inline void bench_permute(uint32_t *perm, uint32_t n, bench_rng *r) {
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = bench_rng_below(r, i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ---- Zipf ---- */

typedef struct bench_zipf {
    uint32_t n;      /* ranks 0..n-1 */
    double theta;    /* skew: 0 uniform, 0.99 the classic YCSB/cache-paper value */
    double *cdf;     /* cdf[i] = P(rank <= i); cdf[n-1] = 1 */
    uint32_t *guide; /* guide[b] = first i with cdf[i] > b / guide_n; guide[guide_n] = n - 1 */
    uint32_t guide_n;
} bench_zipf;

static inline void bench_zipf_init(bench_zipf *z, uint32_t n, double theta) {
    z->n = n;
    z->theta = theta;
    z->cdf = bench_xmalloc(sizeof(double) * n);
    z->guide_n = n;
    z->guide = bench_xmalloc(sizeof(uint32_t) * ((size_t)n + 1));
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        sum += pow((double)i + 1, -theta);
        z->cdf[i] = sum;
    }
    for (uint32_t i = 0; i < n; i++)
        z->cdf[i] /= sum;
    z->cdf[n - 1] = 1.0;
    uint32_t i = 0;
    for (uint32_t b = 0; b < z->guide_n; b++) {
        double edge = (double)b / z->guide_n;
        while (i < n - 1 && z->cdf[i] <= edge)
            i++;
        z->guide[b] = i;
    }
    z->guide[z->guide_n] = n - 1;
}

static inline void bench_zipf_deinit(bench_zipf *z) {
    free(z->cdf);
    free(z->guide);
    z->cdf = NULL;
    z->guide = NULL;
}

/* A rank in 0..n-1; rank 0 is the most popular. */
static inline uint32_t bench_zipf_next(const bench_zipf *z, bench_rng *r) {
    double u = bench_rng_double(r);
    uint32_t b = (uint32_t)(u * z->guide_n);
    uint32_t lo = z->guide[b], hi = z->guide[b + 1];
    /* The answer, the first i with cdf[i] > u, lies in [lo, hi]. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- Keys ---- */

/* A key rendered once, so every contestant reads the same bytes from the same kind of array. */
typedef struct bench_key {
    char s[15];
    uint8_t len;
} bench_key;

/* Writes "<prefix><id>" (no NUL) into out, which has room for prefix_len + 10 bytes; returns the
 * length. */
static inline size_t bench_render_key(char *out, const char *prefix, size_t prefix_len,
                                      uint32_t id) {
    char digits[10];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    memcpy(out, prefix, prefix_len);
    for (size_t i = 0; i < nd; i++)
        out[prefix_len + i] = digits[nd - 1 - i];
    return prefix_len + nd;
}

/* ---- Fixed-duration thread runner ---- */

/* A worker runs until `stop` is set and returns how many operations it did. Check the flag
 * with a relaxed load every few dozen operations. */
typedef uint64_t (*bench_worker_fn)(void *arg, const atomic_bool *stop);

typedef struct bench_thread {
    pthread_t tid;
    bench_worker_fn fn;
    void *arg;
    const atomic_bool *stop;
    atomic_uint *done; /* counts the workers that returned */
    pthread_barrier_t *barrier;
    uint64_t ops;
    uint64_t elapsed_ns;
} bench_thread;

static inline void *bench_thread_main(void *p) {
    bench_thread *t = p;
    int rc = pthread_barrier_wait(t->barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) bench_die("pthread_barrier_wait: %d", rc);
    uint64_t t0 = bench_now_ns();
    t->ops = t->fn(t->arg, t->stop);
    t->elapsed_ns = bench_now_ns() - t0;
    atomic_fetch_add_explicit(t->done, 1, memory_order_release);
    return NULL;
}

/* Runs fn(args[i]) on n threads until `window_ns` has passed or, when `until_done`, every
 * worker has returned on its own (looked at every millisecond), whichever comes first; returns
 * the aggregate ops per second, each worker timed from the barrier to its return. */
static inline double bench_run_threads_for(unsigned n, bench_worker_fn fn, void **args,
                                           uint64_t window_ns, bool until_done) {
    enum { max_threads = 64 };
    if (n == 0 || n > max_threads) bench_die("bad thread count %u", n);
    bench_thread th[max_threads];
    atomic_bool stop;
    atomic_init(&stop, false);
    atomic_uint done;
    atomic_init(&done, 0);
    pthread_barrier_t barrier;
    if (pthread_barrier_init(&barrier, NULL, n + 1) != 0) bench_die("pthread_barrier_init");
    for (unsigned i = 0; i < n; i++) {
        th[i] = (bench_thread){
            .fn = fn, .arg = args[i], .stop = &stop, .done = &done, .barrier = &barrier
        };
        int rc = pthread_create(&th[i].tid, NULL, bench_thread_main, &th[i]);
        if (rc != 0) bench_die("pthread_create: %d", rc);
    }
    int rc = pthread_barrier_wait(&barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) bench_die("pthread_barrier_wait: %d", rc);
    if (until_done) {
        uint64_t end = bench_now_ns() + window_ns;
        while (atomic_load_explicit(&done, memory_order_acquire) < n && bench_now_ns() < end)
            bench_sleep_ns(1000000);
    } else {
        bench_sleep_ns(window_ns);
    }
    atomic_store_explicit(&stop, true, memory_order_relaxed);
    double rate = 0;
    for (unsigned i = 0; i < n; i++) {
        rc = pthread_join(th[i].tid, NULL);
        if (rc != 0) bench_die("pthread_join: %d", rc);
        if (th[i].elapsed_ns > 0) rate += (double)th[i].ops * 1e9 / (double)th[i].elapsed_ns;
    }
    if (pthread_barrier_destroy(&barrier) != 0) bench_die("pthread_barrier_destroy");
    return rate;
}

/* Runs fn(args[i]) on n threads for `window_ns` and returns the aggregate ops per second. */
static inline double bench_run_threads(unsigned n, bench_worker_fn fn, void **args,
                                       uint64_t window_ns) {
    return bench_run_threads_for(n, fn, args, window_ns, false);
}

/* Runs fn(args[i]) on n threads until every one returns (at most `max_ns`); ops per second. */
static inline double bench_run_threads_until(unsigned n, bench_worker_fn fn, void **args,
                                             uint64_t max_ns) {
    return bench_run_threads_for(n, fn, args, max_ns, true);
}

/* ---- Statistics and printing ---- */

static inline double bench_max(const double *x, size_t n) {
    double m = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

static inline double bench_min(const double *x, size_t n) {
    double m = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] < m) m = x[i];
    return m;
}

/* Formats a rate as "12.34 M" into buf (capacity cap); returns buf. */
static inline const char *bench_fmt_rate(char *buf, size_t cap, double per_s) {
    int n;
    if (per_s >= 1e9)
        n = snprintf(buf, cap, "%.2f G", per_s / 1e9);
    else if (per_s >= 1e6)
        n = snprintf(buf, cap, "%.2f M", per_s / 1e6);
    else if (per_s >= 1e3)
        n = snprintf(buf, cap, "%.2f k", per_s / 1e3);
    else
        n = snprintf(buf, cap, "%.0f", per_s);
    if (n < 0 || (size_t)n >= cap) bench_die("bench_fmt_rate: buffer too small");
    return buf;
}

static inline void bench_rule(int width) {
    for (int i = 0; i < width; i++)
        putchar('-');
    putchar('\n');
}

#endif /* CORRAL_BENCH_COMMON_H */
