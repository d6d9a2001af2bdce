/*
 * metrics.c - per-prefix counters in stripes, the prefix table, and the Prometheus text.
 *
 * Data model:
 * - Classes: 0 is "other"; 1..max_prefixes are named, in order of first sight. A class's label
 *   is fixed when it is created and never changes.
 * - Prefix table: open addressing over `table_cap` slots (a power of two, at least twice the
 *   number of classes, so a probe always ends at an empty slot). A slot holds the raw prefix
 *   bytes (truncated to CORRAL__METRICS_LABEL_MAX) and its class. Slots are filled once, under
 *   `lock`, and published by a release store of `cls1` (class + 1); readers probe without a lock
 * and read a slot's bytes only after an acquire load of a non-zero `cls1`. Two raw prefixes whose
 * labels come out equal after sanitising share one class, so no series is ever written twice.
 * - Cells: `CORRAL__METRICS_STRIPES` stripes of [class][metric] int64 counters; reads sum the
 *   stripes (a sum is not a point-in-time snapshot of all counters together, which Prometheus
 *   does not need). The first CORRAL__METRICS_OWNED stripes are owned: `owner[i]` names the one
 *   thread that writes stripe i, claimed by a compare-and-swap from 0 on the thread's first
 *   count (probing from a hash of its id) and never released. An owner adds with a relaxed load
 *   and a relaxed store: no locked instruction on the read path, where a lock-prefixed add
 *   waits for the loads before it (docs/eviction.md measures what it cost). A thread that finds
 *   every owned stripe taken adds to a shared stripe, picked by its id hash, with an atomic add.
 *   A thread id that a dead thread leaves behind can be given to a new thread, which then
 *   inherits the stripe: still one writer at a time. A program that keeps creating threads fills
 *   the owned stripes and falls back to the shared ones.
 *
 * Locking: `lock` guards inserts into the prefix table and `n_named`; it is a leaf lock, taken
 * on a first sight of a prefix only, never while calling out.
 */
#include "metrics.h"
#include "prom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAGIC 0x3e7c5a11u
#define CACHE_LINE    64

typedef struct prefix_slot {
    _Atomic uint16_t cls1; /* class + 1, 0 when empty; published last, with release */
    uint8_t raw_len;
    char raw[CORRAL__METRICS_LABEL_MAX];
} prefix_slot;

struct corral__metrics {
    uint32_t magic;
    const corral__allocator *a;
    size_t max_prefixes; /* named classes: 1..max_prefixes */
    size_t n_classes;    /* max_prefixes + 2: "other", the named, corral's own */
    size_t table_cap;    /* slots, a power of two */
    prefix_slot *table;
    char (*labels)[CORRAL__METRICS_LABEL_MAX + 1]; /* per class, NUL-terminated, sanitised */
    _Atomic size_t n_named;                        /* classes in use, written under lock */
    size_t n_slots;                                /* table slots in use, under lock */
    corral__mutex lock;
    size_t stride;          /* cells per stripe, rounded up to a cache line */
    void *cells_block;      /* allocation holding the cells, for alignment */
    size_t cells_bytes;     /* its size */
    _Atomic int64_t *cells; /* [stripe][class][metric] */
    _Atomic uintptr_t owner[CORRAL__METRICS_OWNED]; /* thread id owning the stripe, 0: free */
    uint64_t id;                                    /* corral__metrics_id */
};

/* The last table id given out. Process-wide, as ids must be unique across handles: a thread's
 * cached stripe names its table by id (metrics.h). */
static _Atomic uint64_t last_id;

static const char *const metric_names[CORRAL__M_COUNT] = {
#define X(name, type, help) #name,
    CORRAL__PREFIX_METRICS(X)
#undef X
};
/* HELP text ends with a period; the rows' help strings do not. */
static const char *const metric_helps[CORRAL__M_COUNT] = {
#define X(name, type, help) help ".",
    CORRAL__PREFIX_METRICS(X)
#undef X
};
static const char *const metric_types[CORRAL__M_COUNT] = {
#define X(name, type, help) #type,
    CORRAL__PREFIX_METRICS(X)
#undef X
};

static uint64_t hash_bytes(const void *p, size_t n) {
    /* FNV-1a: prefixes are short and this keeps the module free of the key hash's seed. */
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int corral__metrics_new(corral__metrics **out, const corral__allocator *a, size_t max_prefixes) {
    *out = NULL;
    if (max_prefixes > 65000) return CORRAL_EINVAL;
    corral__metrics *m = corral__calloc(a, 1, sizeof *m);
    if (!m) return CORRAL_ENOMEM;
    m->a = a;
    m->max_prefixes = max_prefixes;
    m->n_classes = max_prefixes + 2;
    m->table_cap = 4;
    while (m->table_cap < 2 * m->n_classes)
        m->table_cap *= 2;
    atomic_init(&m->n_named, 0);
    m->stride = (m->n_classes * CORRAL__ROW + 7) & ~(size_t)7;
    m->table = corral__calloc(a, m->table_cap, sizeof *m->table);
    m->labels = corral__calloc(a, m->n_classes, sizeof *m->labels);
    size_t ncells = m->stride * CORRAL__METRICS_STRIPES;
    m->cells_bytes = ncells * sizeof(int64_t) + CACHE_LINE;
    _Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && sizeof(_Atomic int64_t) == sizeof(int64_t),
                   "a cell is a plain 64-bit word, zero when its bytes are");
    /* Zeroed by calloc, not cell by cell: a zero cell is all zero bytes, and libc's calloc
     * leaves a fresh mapping's pages untouched, so a stripe costs RSS only where a thread
     * counts (every page written, the stripes took 1.2 MB a handle: docs/memory-density.md). */
    m->cells_block = corral__calloc(a, 1, m->cells_bytes);
    if (!m->table || !m->labels || !m->cells_block) goto fail;
    if (corral__mutex_init(&m->lock) != CORRAL_OK) goto fail;
    uintptr_t base = ((uintptr_t)m->cells_block + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1);
    m->cells = (_Atomic int64_t *)base;
    for (size_t i = 0; i < m->table_cap; i++)
        atomic_init(&m->table[i].cls1, 0);
    for (size_t i = 0; i < CORRAL__METRICS_OWNED; i++)
        atomic_init(&m->owner[i], 0);
    memcpy(m->labels[CORRAL__METRICS_OTHER], "other", 6);
    memcpy(m->labels[m->n_classes - 1], "corral.internal", 16);
    m->id = atomic_fetch_add_explicit(&last_id, 1, memory_order_relaxed) + 1;
    m->magic = METRICS_MAGIC;
    *out = m;
    return CORRAL_OK;
fail:
    corral__free(a, m->cells_block, m->cells_bytes);
    corral__free(a, m->labels, m->n_classes * sizeof *m->labels);
    corral__free(a, m->table, m->table_cap * sizeof *m->table);
    corral__free(a, m, sizeof *m);
    return CORRAL_ENOMEM;
}

void corral__metrics_free(corral__metrics *m) {
    if (!m) return;
    CORRAL_CHECK_OBJ(m, METRICS_MAGIC);
    const corral__allocator *a = m->a;
    corral__mutex_deinit(&m->lock);
    corral__free(a, m->cells_block, m->cells_bytes);
    corral__free(a, m->labels, m->n_classes * sizeof *m->labels);
    corral__free(a, m->table, m->table_cap * sizeof *m->table);
    m->magic = 0;
    corral__free(a, m, sizeof *m);
}

/* True when s[0..n) is well-formed UTF-8. */
static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t extra = c < 0x80         ? 0
                       : (c >> 5) == 6  ? 1
                       : (c >> 4) == 14 ? 2
                       : (c >> 3) == 30 ? 3
                                        : 9;
        if (extra == 9 || i + extra >= n + (extra ? 0 : 1)) return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
        }
        i += extra + 1;
    }
    return true;
}

/* The label of a raw prefix: control bytes become '?', and so do bytes >= 0x80 unless the whole
 * prefix is valid UTF-8 (Prometheus label values are UTF-8). Quotes and backslashes stay; they
 * are escaped on output. */
static void make_label(const char *raw, size_t n, char *out) {
    bool utf8 = utf8_valid((const unsigned char *)raw, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        out[i] = (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) ? '?' : (char)c;
    }
    out[n] = '\0';
}

static uint16_t insert_class(corral__metrics *m, const char *raw, size_t n, uint64_t h) {
    corral__mutex_lock(&m->lock);
    size_t mask = m->table_cap - 1;
    size_t i = (size_t)h & mask;
    uint16_t cls = CORRAL__METRICS_OTHER;
    for (;; i = (i + 1) & mask) {
        prefix_slot *s = &m->table[i];
        uint16_t c1 = atomic_load_explicit(&s->cls1, memory_order_relaxed);
        if (c1 == 0) break;
        if (s->raw_len == n && memcmp(s->raw, raw, n) == 0) {
            cls = (uint16_t)(c1 - 1); /* another thread added it first */
            goto out;
        }
    }
    char label[CORRAL__METRICS_LABEL_MAX + 1];
    make_label(raw, n, label);
    size_t named = atomic_load_explicit(&m->n_named, memory_order_relaxed);
    /* A prefix whose label is taken (by "other" itself, or by another raw prefix that sanitises
     * the same) shares that class, so no series is ever written twice. */
    bool shared = false;
    for (size_t k = 0; k <= named && !shared; k++) {
        if (strcmp(m->labels[k], label) == 0) {
            cls = (uint16_t)k;
            shared = true;
        }
    }
    if (!shared && strcmp(m->labels[m->n_classes - 1], label) == 0) {
        cls = (uint16_t)(m->n_classes - 1);
        shared = true;
    }
    if (!shared) {
        if (named >= m->max_prefixes) goto out; /* full: not remembered, so probes stay short */
        cls = (uint16_t)(named + 1);
        memcpy(m->labels[cls], label, n + 1);
        atomic_store_explicit(&m->n_named, named + 1, memory_order_release);
    }
    /* Aliases (raw prefixes sharing a label) stop getting slots at half load, so a probe always
     * ends at an empty slot; named classes always fit, as table_cap >= 2 * n_classes. */
    if (m->n_slots >= m->table_cap / 2) goto out;
    m->n_slots++;
    m->table[i].raw_len = (uint8_t)n;
    memcpy(m->table[i].raw, raw, n);
    atomic_store_explicit(&m->table[i].cls1, (uint16_t)(cls + 1), memory_order_release);
out:
    corral__mutex_unlock(&m->lock);
    return cls;
}

uint16_t corral__metrics_class(corral__metrics *m, const void *prefix, size_t len) {
    if (len > CORRAL__METRICS_LABEL_MAX) len = CORRAL__METRICS_LABEL_MAX;
    uint64_t h = hash_bytes(prefix, len);
    size_t mask = m->table_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        prefix_slot *s = &m->table[i];
        uint16_t c1 = atomic_load_explicit(&s->cls1, memory_order_acquire);
        if (c1 == 0) break;
        if (s->raw_len == len && memcmp(s->raw, prefix, len) == 0) return (uint16_t)(c1 - 1);
    }
    if (atomic_load_explicit(&m->n_named, memory_order_relaxed) >= m->max_prefixes)
        return CORRAL__METRICS_OTHER;
    return insert_class(m, prefix, len, h);
}

/* metrics.h: the thread's cached stripe. Set when the thread claims a stripe or finds it owns
 * one (stripe_of_thread). */
_Thread_local corral__stripe_cache corral__stripe_cached __attribute__((tls_model("initial-exec")));

uint64_t corral__metrics_id(const corral__metrics *m) {
    return m->id;
}

/* The calling thread's stripe; *owned when the thread owns it. */
static inline size_t stripe_of_thread(corral__metrics *m, bool *owned) {
    if (corral__stripe_cached.id == m->id) {
        *owned = true;
        return corral__stripe_cached.stripe;
    }
    uintptr_t self = (uintptr_t)pthread_self();
    /* Thread descriptors sit megabytes apart; a multiplicative hash spreads them. */
    size_t h = (size_t)(((uint64_t)self * 0x9E3779B97F4A7C15ull) >> 58);
    size_t i = h % CORRAL__METRICS_OWNED;
    for (size_t n = 0; n < CORRAL__METRICS_OWNED; n++, i = (i + 1) % CORRAL__METRICS_OWNED) {
        uintptr_t o = atomic_load_explicit(&m->owner[i], memory_order_relaxed);
        uintptr_t expect = 0;
        if (o == self || (o == 0 && atomic_compare_exchange_strong_explicit(
                                        &m->owner[i], &expect, self, memory_order_acq_rel,
                                        memory_order_relaxed))) {
            corral__stripe_cached = (corral__stripe_cache){ .id = m->id,
                                                            .stripe = i,
                                                            .cells = &m->cells[i * m->stride] };
            *owned = true;
            return i;
        }
    }
    *owned = false;
    return CORRAL__METRICS_OWNED + h % CORRAL__METRICS_SHARED;
}

static inline void cell_add(_Atomic int64_t *cell, int64_t delta, bool owned) {
    if (owned)
        atomic_store_explicit(cell, atomic_load_explicit(cell, memory_order_relaxed) + delta,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(cell, delta, memory_order_relaxed);
}

void corral__metrics_add_slow(corral__metrics *m, uint16_t cls, int metric, int64_t delta) {
    bool owned;
    size_t idx =
        stripe_of_thread(m, &owned) * m->stride + (size_t)cls * CORRAL__ROW + (size_t)metric;
    cell_add(&m->cells[idx], delta, owned);
}

void corral__metrics_add(corral__metrics *m, uint16_t cls, int metric, int64_t delta) {
    corral__metrics_add_inline(m, m->id, cls, metric, delta);
}

static const uint64_t hist_bounds_ns[CORRAL__HIST_NBOUNDS] = CORRAL__HIST_BOUNDS_NS;
static const char *const hist_names[CORRAL__H_COUNT] = {
#define H(name, help) #name,
    CORRAL__PREFIX_HISTOGRAMS(H)
#undef H
};
static const char *const hist_helps[CORRAL__H_COUNT] = {
#define H(name, help) help ".",
    CORRAL__PREFIX_HISTOGRAMS(H)
#undef H
};

static size_t hist_cell(int hist, size_t i) {
    return CORRAL__M_COUNT + (size_t)hist * CORRAL__H_CELLS + i;
}

void corral__metrics_observe(corral__metrics *m, uint16_t cls, int hist, uint64_t ns) {
    size_t b = 0;
    while (b < CORRAL__HIST_NBOUNDS && ns > hist_bounds_ns[b])
        b++;
    bool owned;
    size_t base = stripe_of_thread(m, &owned) * m->stride + (size_t)cls * CORRAL__ROW;
    cell_add(&m->cells[base + hist_cell(hist, b)], 1, owned);
    cell_add(&m->cells[base + hist_cell(hist, CORRAL__HIST_NBOUNDS + 1)], 1, owned);
    cell_add(&m->cells[base + hist_cell(hist, CORRAL__HIST_NBOUNDS + 2)], (int64_t)ns, owned);
}

static int64_t sum_cell(corral__metrics *m, size_t cls, int metric) {
    int64_t s = 0;
    for (size_t st = 0; st < CORRAL__METRICS_STRIPES; st++)
        s += atomic_load_explicit(&m->cells[st * m->stride + cls * CORRAL__ROW + (size_t)metric],
                                  memory_order_relaxed);
    return s;
}

static void fill_prefix(corral__metrics *m, size_t cls, corral_prefix_stats *ps) {
    int64_t v[CORRAL__M_COUNT];
    for (int k = 0; k < CORRAL__M_COUNT; k++)
        v[k] = sum_cell(m, cls, k);
    memset(ps, 0, sizeof *ps);
    snprintf(ps->prefix, sizeof ps->prefix, "%s", m->labels[cls]);
    ps->hits = (uint64_t)v[CORRAL__M_cache_hits_total];
    ps->misses = (uint64_t)v[CORRAL__M_cache_misses_total];
    ps->sets = (uint64_t)v[CORRAL__M_cache_sets_total];
    ps->deletes = (uint64_t)v[CORRAL__M_cache_deletes_total];
    ps->evictions = (uint64_t)v[CORRAL__M_cache_evictions_total];
    ps->expirations = (uint64_t)v[CORRAL__M_cache_expirations_total];
    ps->loads = (uint64_t)v[CORRAL__M_cache_loads_total];
    ps->load_errors = (uint64_t)v[CORRAL__M_cache_load_errors_total];
    ps->load_waiters = (uint64_t)v[CORRAL__M_cache_load_waiters_total];
    ps->early_refreshes = (uint64_t)v[CORRAL__M_cache_early_refreshes_total];
    ps->stale_served = (uint64_t)v[CORRAL__M_cache_stale_served_total];
    ps->lease_timeouts = (uint64_t)v[CORRAL__M_cache_lease_timeouts_total];
    ps->load_ns = (uint64_t)sum_cell(
        m, cls, (int)hist_cell(CORRAL__H_cache_load_duration_seconds, CORRAL__HIST_NBOUNDS + 2));
    ps->items = v[CORRAL__M_cache_items];
    ps->bytes = v[CORRAL__M_cache_bytes];
}

static int cmp_prefix(const void *x, const void *y) {
    return strcmp(((const corral_prefix_stats *)x)->prefix,
                  ((const corral_prefix_stats *)y)->prefix);
}

uint16_t corral__metrics_internal_class(corral__metrics *m) {
    return (uint16_t)(m->n_classes - 1);
}

static bool class_used(corral__metrics *m, size_t cls) {
    for (int k = 0; k < CORRAL__ROW; k++) {
        if (sum_cell(m, cls, k) != 0) return true;
    }
    return false;
}

/* Walks the classes to report, in order: the named ones (1..named), then "other" and corral's
 * own when used. Start with *pos = 0; returns false at the end. */
static bool next_class(corral__metrics *m, size_t named, size_t *pos, size_t *cls) {
    while (*pos <= named + 1) {
        size_t p = (*pos)++;
        if (p < named) {
            *cls = p + 1;
            return true;
        }
        size_t c = p == named ? CORRAL__METRICS_OTHER : m->n_classes - 1;
        if (class_used(m, c)) {
            *cls = c;
            return true;
        }
    }
    return false;
}

int corral__metrics_snapshot(corral__metrics *m, corral_stats_snapshot **out) {
    *out = NULL;
    size_t n = m->n_classes;
    if (n > (SIZE_MAX - sizeof(corral_stats_snapshot)) / sizeof(corral_prefix_stats))
        return CORRAL_ENOMEM;
    corral_stats_snapshot *s =
        corral__user_alloc(m->a, sizeof *s + n * sizeof(corral_prefix_stats));
    if (!s) return CORRAL_ENOMEM;
    memset(s, 0, sizeof *s);
    s->prefixes = (corral_prefix_stats *)(s + 1);
    size_t named = atomic_load_explicit(&m->n_named, memory_order_acquire);
    size_t k = 0, pos = 0, cls;
    while (k < n && next_class(m, named, &pos, &cls))
        fill_prefix(m, cls, &s->prefixes[k++]);
    s->n_prefixes = k;
    qsort(s->prefixes, k, sizeof *s->prefixes, cmp_prefix);
    corral_prefix_stats *t = &s->total;
    for (size_t i = 0; i < k; i++) {
        const corral_prefix_stats *p = &s->prefixes[i];
        t->hits += p->hits;
        t->misses += p->misses;
        t->sets += p->sets;
        t->deletes += p->deletes;
        t->evictions += p->evictions;
        t->expirations += p->expirations;
        t->loads += p->loads;
        t->load_errors += p->load_errors;
        t->load_waiters += p->load_waiters;
        t->early_refreshes += p->early_refreshes;
        t->stale_served += p->stale_served;
        t->lease_timeouts += p->lease_timeouts;
        t->load_ns += p->load_ns;
        t->items += p->items;
        t->bytes += p->bytes;
    }
    *out = s;
    return CORRAL_OK;
}

void corral__metrics_snapshot_free(corral__metrics *m, corral_stats_snapshot *s) {
    corral__user_free(m->a, s);
}

/* ---- Prometheus text ---- */

typedef struct textbuf {
    const corral__allocator *a;
    char *p;
    size_t len, cap;
    bool failed;
} textbuf;

static void tb_reserve(textbuf *b, size_t more) {
    if (b->failed) return;
    if (b->len + more + 1 <= b->cap) return;
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + more + 1)
        ncap *= 2;
    char *np = corral__user_realloc(b->a, b->p, ncap);
    if (!np) {
        b->failed = true;
        return;
    }
    b->p = np;
    b->cap = ncap;
}

static void tb_puts(textbuf *b, const char *s, size_t n) {
    tb_reserve(b, n);
    if (b->failed) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(textbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->failed = true; /* every caller's line fits; a longer one is a bug, not truncated */
        return;
    }
    tb_puts(b, tmp, (size_t)n);
}

/* Writes a label value with Prometheus escaping: backslash, double quote, newline. */
static void tb_label(textbuf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '\\')
            tb_puts(b, "\\\\", 2);
        else if (*s == '"')
            tb_puts(b, "\\\"", 2);
        else if (*s == '\n')
            tb_puts(b, "\\n", 2);
        else
            tb_puts(b, s, 1);
    }
}

/* A family's HELP and TYPE lines (prom.h). */
static void tb_family(textbuf *b, const char *name, const char *type, const char *help) {
    char head[CORRAL__PROM_HEAD_MAX];
    const char *h = corral__prom_head(head, "corral_", name, type, help);
    if (h) tb_puts(b, h, strlen(h));
    b->failed |= !h;
}

int corral__metrics_prometheus(corral__metrics *m, const char *extra, char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    textbuf b = { .a = m->a };
    size_t named = atomic_load_explicit(&m->n_named, memory_order_acquire);
    for (int k = 0; k < CORRAL__M_COUNT; k++) {
        const char *type = strcmp(metric_types[k], "COUNTER") == 0 ? "counter" : "gauge";
        tb_family(&b, metric_names[k], type, metric_helps[k]);
        size_t pos = 0, cls;
        while (next_class(m, named, &pos, &cls)) {
            tb_printf(&b, "corral_%s{prefix=\"", metric_names[k]);
            tb_label(&b, m->labels[cls]);
            tb_printf(&b, "\"} %lld\n", (long long)sum_cell(m, cls, k));
        }
    }
    for (int h = 0; h < CORRAL__H_COUNT; h++) {
        tb_family(&b, hist_names[h], "histogram", hist_helps[h]);
        size_t pos = 0, cls;
        while (next_class(m, named, &pos, &cls)) {
            int64_t count = sum_cell(m, cls, (int)hist_cell(h, CORRAL__HIST_NBOUNDS + 1));
            if (count == 0) continue; /* a prefix that never loaded has no histogram */
            int64_t cum = 0;
            for (size_t i = 0; i <= CORRAL__HIST_NBOUNDS; i++) {
                cum += sum_cell(m, cls, (int)hist_cell(h, i));
                tb_printf(&b, "corral_%s_bucket{prefix=\"", hist_names[h]);
                tb_label(&b, m->labels[cls]);
                if (i < CORRAL__HIST_NBOUNDS)
                    tb_printf(&b, "\",le=\"%g\"} %lld\n", (double)hist_bounds_ns[i] / 1e9,
                              (long long)cum);
                else
                    tb_printf(&b, "\",le=\"+Inf\"} %lld\n", (long long)cum);
            }
            int64_t sum_ns = sum_cell(m, cls, (int)hist_cell(h, CORRAL__HIST_NBOUNDS + 2));
            tb_printf(&b, "corral_%s_sum{prefix=\"", hist_names[h]);
            tb_label(&b, m->labels[cls]);
            tb_printf(&b, "\"} %.9f\ncorral_%s_count{prefix=\"", (double)sum_ns / 1e9,
                      hist_names[h]);
            tb_label(&b, m->labels[cls]);
            tb_printf(&b, "\"} %lld\n", (long long)count);
        }
    }
    if (extra) tb_puts(&b, extra, strlen(extra));
    if (b.failed || !b.p) {
        corral__user_free(m->a, b.p);
        return CORRAL_ENOMEM;
    }
    *out = b.p;
    *out_len = b.len;
    return CORRAL_OK;
}
