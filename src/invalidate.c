/*
 * invalidate.c - invalidation by namespaces, tags and events. The design and its reasons are in
 * docs/invalidation.md; this comment is the summary a reader of the code needs.
 *
 * Namespaces and tags
 * - A tag and a namespace each own a *version* in the store, kept by the access layer
 *   (access.h: corral__version_key, corral__version_bump): random, never incremented, so a
 *   version that vanished is recreated as one no value carries.
 * - A namespace's version is its generation, part of the physical key of every key stored in
 *   it (corral__make_skey). corral_ns_bump writes a new one: the old keys are never read again.
 * - A tagged value carries, in its envelope (envelope.h), each tag with the version it had
 *   when the value's tags were read. corral__tags_valid compares them with the store's current
 *   versions; corral_tag_bust writes a new version, so every value carrying the old one fails
 *   that comparison (Symfony's TagAwareAdapter, with random versions instead of counters).
 * - The race of a set against a bust: the loader reads tag versions (corral__tags_read) before
 *   it makes the value. A bust that lands after that read leaves the value carrying the old
 *   version, so it is invalid as soon as it is written; it can never resurrect what the bust
 *   removed.
 *
 * Events
 * - corral_on copies a rule (every template) into one block from the handle's allocator and
 *   appends it to the rule list of its event. Events sit in a small fixed hash table
 *   (RULE_BUCKETS chains). Nodes are immutable once published and freed only by
 *   corral__rules_free at close, so corral_emit walks them without a lock.
 * - corral_emit works in two phases: decide and expand (call each rule's `when`, expand and
 *   validate every template into one scratch buffer), then apply (delete, bust, bump). Any
 *   failure of the first phase returns before anything is busted.
 *
 * Threads and locks
 * - `corral__rules.lock` serialises registrations (corral_on) only. Under it, a writer links
 *   a fully built node into a list with a release store: a new event node becomes the head of
 *   its bucket's chain, a new rule node the `next` of its event's last rule (or its `first`).
 *   Readers (corral_emit, and the lookup corral_on does first) load those pointers with acquire
 *   and take no lock, so emits never block each other nor wait for a registration.
 * - The lock is a leaf (docs/threads.md): nothing else is taken, no allocator hook, store call or
 *   user callback runs while it is held.
 * - `when` callbacks and the store run with no lock of ours held. A rule registered while an
 *   emit of its event is walking the list may or may not apply to that emit.
 * - Namespaces and tags have no state in the handle; the store does their locking.
 */
#include "access.h"

#include <stdatomic.h>
#include <string.h>

#define RULES_MAGIC 0x7a9e11e5u
#define EVENT_MAGIC 0xe7e11700u
#define RULE_MAGIC  0x40e1e001u

/* Event chains of the handle's table; a power of two. */
#define RULE_BUCKETS 64
/* The longest template accepted, the longest key any handle accepts. */
#define TEMPLATE_MAX CORRAL__MAX_BINARY_KEY

/* What a template of a rule names. */
enum { KIND_KEY, KIND_TAG, KIND_NS, KIND_COUNT };

/* The version kind of a tag or namespace template (access.h). */
static corral__vkind vkind(int kind) {
    assert(kind == KIND_TAG || kind == KIND_NS);
    return kind == KIND_TAG ? CORRAL__VKIND_TAG : CORRAL__VKIND_NS;
}

typedef struct tpl {
    const char *s; /* NUL-terminated, inside the rule's block */
    size_t len;
} tpl;

/* One registered rule: a single block of `size` bytes holding this header, the template
 * descriptors and the template bytes. Immutable once published, except `next`. */
typedef struct rule_node {
    uint32_t magic;
    _Atomic(struct rule_node *) next; /* the event's next rule; written once, under the lock */
    size_t size;
    corral_rule_fn when; /* NULL: always applies */
    void *when_arg;
    size_t n[KIND_COUNT];
    const tpl *t[KIND_COUNT];
} rule_node;

/* An event name and its rules. A single block of `size` bytes: the header, then the name. */
typedef struct event_node {
    uint32_t magic;
    struct event_node *next_in_bucket; /* set before publication, never changed */
    size_t size;
    uint64_t hash;
    size_t name_len;
    _Atomic(rule_node *) first; /* first rule in registration order */
    rule_node *last;            /* last rule; read and written under `corral__rules.lock` */
    char name[];
} event_node;

struct corral__rules {
    uint32_t magic;
    corral__mutex lock; /* serialises writers of the lists below; readers take no lock */
    _Atomic(event_node *) buckets[RULE_BUCKETS];
};

int corral_ns_bump(corral *c, const char *ns) {
    if (!c || !ns) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    return corral__version_bump(c, CORRAL__VKIND_NS, ns, strlen(ns));
}

int corral_tag_bust(corral *c, const char *tag) {
    if (!c || !tag) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    return corral__version_bump(c, CORRAL__VKIND_TAG, tag, strlen(tag));
}

/* ---- Rules: registration ---- */

int corral__rules_new(corral *c) {
    corral__rules *r = corral__calloc(&c->alloc, 1, sizeof *r);
    if (!r) return CORRAL_ENOMEM;
    if (corral__mutex_init(&r->lock) != CORRAL_OK) {
        corral__free(&c->alloc, r, sizeof *r);
        return CORRAL_ENOMEM;
    }
    for (size_t i = 0; i < RULE_BUCKETS; i++)
        atomic_init(&r->buckets[i], NULL);
    r->magic = RULES_MAGIC;
    c->rules = r;
    return CORRAL_OK;
}

static void rule_free(corral *c, rule_node *rn) {
    CORRAL_CHECK_OBJ(rn, RULE_MAGIC);
    rn->magic = 0;
    corral__free(&c->alloc, rn, rn->size);
}

static void event_free(corral *c, event_node *ev) {
    CORRAL_CHECK_OBJ(ev, EVENT_MAGIC);
    ev->magic = 0;
    corral__free(&c->alloc, ev, ev->size);
}

void corral__rules_free(corral *c) {
    corral__rules *r = c->rules;
    if (!r) return;
    CORRAL_CHECK_OBJ(r, RULES_MAGIC);
    for (size_t i = 0; i < RULE_BUCKETS; i++) {
        event_node *ev = atomic_load_explicit(&r->buckets[i], memory_order_acquire);
        while (ev) {
            event_node *next_ev = ev->next_in_bucket;
            rule_node *rn = atomic_load_explicit(&ev->first, memory_order_acquire);
            while (rn) {
                rule_node *next = atomic_load_explicit(&rn->next, memory_order_acquire);
                rule_free(c, rn);
                rn = next;
            }
            event_free(c, ev);
            ev = next_ev;
        }
    }
    corral__mutex_deinit(&r->lock);
    r->magic = 0;
    corral__free(&c->alloc, r, sizeof *r);
    c->rules = NULL;
}

/* Checks a template: 1 to TEMPLATE_MAX bytes; "{name}" names a field (non-empty, no brace
 * inside); "{{" and "}}" stand for literal braces; any other brace is unbalanced. Literal bytes
 * follow key validation (no 0x00-0x20 or 0x7f unless the handle allows binary keys). */
static int check_template(const corral *c, const char *s, size_t len) {
    if (len == 0 || len > TEMPLATE_MAX) return CORRAL_EINVAL;
    size_t i = 0;
    while (i < len) {
        unsigned char b = (unsigned char)s[i];
        if (b == '{' && i + 1 < len && s[i + 1] == '{') {
            i += 2;
        } else if (b == '{') {
            size_t j = i + 1;
            while (j < len && s[j] != '{' && s[j] != '}')
                j++;
            if (j == len || s[j] != '}' || j == i + 1) return CORRAL_EINVAL;
            i = j + 1;
        } else if (b == '}') {
            if (i + 1 >= len || s[i + 1] != '}') return CORRAL_EINVAL;
            i += 2;
        } else {
            if (!c->ks.allow_binary && (b <= 0x20 || b == 0x7f)) return CORRAL_EINVAL;
            i++;
        }
    }
    return CORRAL_OK;
}

/* Copies `rule` into one new block. Returns CORRAL_OK with `*out`, CORRAL_EINVAL or
 * CORRAL_ENOMEM (with `*out` NULL). */
static int rule_new(corral *c, const corral_rule *rule, rule_node **out) {
    *out = NULL;
    const char *const *arr[KIND_COUNT] = { rule->keys, rule->tags, rule->namespaces };
    size_t n[KIND_COUNT] = { rule->n_keys, rule->n_tags, rule->n_namespaces };
    size_t n_tpl = 0, bytes = 0;
    for (int k = 0; k < KIND_COUNT; k++) {
        if (n[k] && !arr[k]) return CORRAL_EINVAL;
        if (__builtin_add_overflow(n_tpl, n[k], &n_tpl)) return CORRAL_EINVAL;
        for (size_t i = 0; i < n[k]; i++) {
            if (!arr[k][i]) return CORRAL_EINVAL;
            size_t len = strnlen(arr[k][i], TEMPLATE_MAX + 1);
            int rc = check_template(c, arr[k][i], len);
            if (rc != CORRAL_OK) return rc;
            bytes += len + 1; /* no overflow: each is at most TEMPLATE_MAX + 1 per template */
        }
    }
    size_t size;
    if (__builtin_mul_overflow(n_tpl, sizeof(tpl), &size) ||
        __builtin_add_overflow(size, sizeof(rule_node) + bytes, &size))
        return CORRAL_ENOMEM;
    rule_node *rn = corral__alloc(&c->alloc, size);
    if (!rn) return CORRAL_ENOMEM;
    rn->magic = RULE_MAGIC;
    atomic_init(&rn->next, NULL);
    rn->size = size;
    rn->when = rule->when;
    rn->when_arg = rule->when_arg;
    tpl *t = (tpl *)(rn + 1);
    char *p = (char *)(t + n_tpl);
    for (int k = 0; k < KIND_COUNT; k++) {
        rn->n[k] = n[k];
        rn->t[k] = t;
        for (size_t i = 0; i < n[k]; i++) {
            size_t len = strlen(arr[k][i]);
            memcpy(p, arr[k][i], len + 1);
            t->s = p;
            t->len = len;
            p += len + 1;
            t++;
        }
    }
    assert((size_t)(p - (char *)rn) == size);
    *out = rn;
    return CORRAL_OK;
}

static event_node *event_new(corral *c, const char *name, size_t len, uint64_t hash) {
    size_t size = sizeof(event_node) + len + 1;
    event_node *ev = corral__alloc(&c->alloc, size);
    if (!ev) return NULL;
    ev->magic = EVENT_MAGIC;
    ev->next_in_bucket = NULL;
    ev->size = size;
    ev->hash = hash;
    ev->name_len = len;
    atomic_init(&ev->first, NULL);
    ev->last = NULL;
    memcpy(ev->name, name, len + 1);
    return ev;
}

/* The node of an event, or NULL. Lock-free: chains only grow at their head, by release stores
 * of fully built nodes. */
static event_node *find_event(corral__rules *r, const char *name, size_t len, uint64_t hash) {
    event_node *ev =
        atomic_load_explicit(&r->buckets[hash & (RULE_BUCKETS - 1)], memory_order_acquire);
    for (; ev; ev = ev->next_in_bucket) {
        CORRAL_CHECK_OBJ(ev, EVENT_MAGIC);
        if (ev->hash == hash && ev->name_len == len && memcmp(ev->name, name, len) == 0) return ev;
    }
    return NULL;
}

/* Appends `rn` to the rules of the event, publishing `*fresh` as the event's node when the event
 * has none yet (then `*fresh` is set to NULL: the table owns it). */
static void append_locked(corral__rules *r, const char *name, size_t len, uint64_t hash,
                          event_node **fresh, rule_node *rn) {
    CORRAL_ASSERT_HELD(&r->lock);
    event_node *ev = find_event(r, name, len, hash);
    if (!ev) {
        ev = *fresh;
        *fresh = NULL;
        assert(ev != NULL);
        _Atomic(event_node *) *head = &r->buckets[hash & (RULE_BUCKETS - 1)];
        ev->last = rn;
        atomic_store_explicit(&ev->first, rn, memory_order_relaxed);
        ev->next_in_bucket = atomic_load_explicit(head, memory_order_relaxed);
        atomic_store_explicit(head, ev, memory_order_release);
        return;
    }
    if (ev->last)
        atomic_store_explicit(&ev->last->next, rn, memory_order_release);
    else
        atomic_store_explicit(&ev->first, rn, memory_order_release);
    ev->last = rn;
}

int corral_on(corral *c, const char *event, const corral_rule *rule) {
    if (!c || !event || !rule || !*event) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    corral__rules *r = c->rules;
    CORRAL_CHECK_OBJ(r, RULES_MAGIC);
    rule_node *rn;
    int rc = rule_new(c, rule, &rn);
    if (rc != CORRAL_OK) return rc;
    size_t len = strlen(event);
    uint64_t hash = corral__hash_bytes(event, len);
    /* Allocate outside the lock; the lock re-checks, and a node another registration beat us
     * to is freed after unlocking. */
    event_node *fresh = NULL;
    if (!find_event(r, event, len, hash)) {
        fresh = event_new(c, event, len, hash);
        if (!fresh) {
            rule_free(c, rn);
            return CORRAL_ENOMEM;
        }
    }
    corral__mutex_lock(&r->lock);
    append_locked(r, event, len, hash, &fresh, rn);
    corral__mutex_unlock(&r->lock);
    if (fresh) event_free(c, fresh);
    return CORRAL_OK;
}

/* ---- Rules: emitting ---- */

/* The expansions of one emit, applied only once all are made: records of [u8 kind][size_t
 * length][bytes][NUL], packed (lengths are copied with memcpy). */
typedef struct scratch {
    corral *c;
    unsigned char *buf;
    size_t len, cap;
} scratch;

static int scratch_reserve(scratch *s, size_t more) {
    if (more <= s->cap - s->len) return CORRAL_OK;
    size_t want;
    if (__builtin_add_overflow(s->len, more, &want)) return CORRAL_ENOMEM;
    size_t cap = CORRAL_MAX(CORRAL_MAX(want, s->cap * 2), (size_t)256);
    const corral__allocator *a = &s->c->alloc;
    unsigned char *p = s->buf ? a->realloc(a->ctx, s->buf, s->cap, cap) : corral__alloc(a, cap);
    if (!p) return CORRAL_ENOMEM;
    s->buf = p;
    s->cap = cap;
    return CORRAL_OK;
}

static int scratch_put(scratch *s, const void *p, size_t n) {
    int rc = scratch_reserve(s, n);
    if (rc != CORRAL_OK) return rc;
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return CORRAL_OK;
}

static void scratch_free(scratch *s) {
    corral__free(&s->c->alloc, s->buf, s->cap);
}

/* The value of field `name`; the first of that name wins. NULL when the event lacks it. */
static const char *field_value(const corral_field *fields, size_t n, const char *name, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strncmp(fields[i].name, name, len) == 0 && fields[i].name[len] == '\0')
            return fields[i].value;
    return NULL;
}

/* Checks an expanded item as the apply phase will use it, so that phase fails only on the
 * store. Returns CORRAL_OK, CORRAL_EBADKEY (a key) or CORRAL_EINVAL (a tag or namespace). */
static int check_item(corral *c, int kind, const char *s, size_t len) {
    char kbuf[CORRAL__KEYBUF];
    corral__skey sk;
    if (kind == KIND_KEY) return corral__make_skey(c, s, len, NULL, kbuf, &sk);
    return corral__version_key(c, vkind(kind), s, len, kbuf, &sk);
}

/* Expands template `t` with `fields` and appends the record to `s`. Returns CORRAL_OK,
 * CORRAL_EINVAL (a field the event lacks; a tag or namespace that is not a valid name),
 * CORRAL_EBADKEY (a key that is not valid) or CORRAL_ENOMEM. */
static int expand(scratch *s, int kind, const tpl *t, const corral_field *fields, size_t n) {
    unsigned char k = (unsigned char)kind;
    size_t len = 0;
    int rc = scratch_put(s, &k, 1);
    if (rc == CORRAL_OK) rc = scratch_put(s, &len, sizeof len);
    if (rc != CORRAL_OK) return rc;
    size_t start = s->len;
    size_t max = kind == KIND_KEY ? CORRAL__MAX_BINARY_KEY : CORRAL__ENV_MAX_TAG;
    for (size_t i = 0; i < t->len && rc == CORRAL_OK;) {
        const char *p = t->s + i;
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            rc = scratch_put(s, p, 1);
            i += 2;
        } else if (p[0] == '{') {
            const char *end = memchr(p, '}', t->len - i);
            assert(end != NULL); /* checked by corral_on */
            size_t name_len = (size_t)(end - p - 1);
            const char *v = field_value(fields, n, p + 1, name_len);
            if (!v) return CORRAL_EINVAL;
            size_t vlen = strnlen(v, max + 1);
            if (vlen > max) return kind == KIND_KEY ? CORRAL_EBADKEY : CORRAL_EINVAL;
            rc = scratch_put(s, v, vlen);
            i += name_len + 2;
        } else {
            rc = scratch_put(s, p, 1);
            i++;
        }
        if (s->len - start > max) return kind == KIND_KEY ? CORRAL_EBADKEY : CORRAL_EINVAL;
    }
    if (rc != CORRAL_OK) return rc;
    len = s->len - start;
    memcpy(s->buf + start - sizeof len, &len, sizeof len);
    rc = check_item(s->c, kind, (const char *)s->buf + start, len);
    if (rc != CORRAL_OK) return rc;
    return scratch_put(s, "", 1);
}

/* Phase one: decides every rule of `ev` and expands the templates of those that apply. */
static int expand_rules(scratch *s, event_node *ev, const char *event, const corral_field *fields,
                        size_t n) {
    for (rule_node *rn = atomic_load_explicit(&ev->first, memory_order_acquire); rn;
         rn = atomic_load_explicit(&rn->next, memory_order_acquire)) {
        CORRAL_CHECK_OBJ(rn, RULE_MAGIC);
        if (rn->when) {
            int rc = rn->when(rn->when_arg, event, fields, n);
            if (rc < 0) return rc;
            if (rc == 0) continue;
        }
        for (int k = 0; k < KIND_COUNT; k++) {
            for (size_t i = 0; i < rn->n[k]; i++) {
                int rc = expand(s, k, &rn->t[k][i], fields, n);
                if (rc != CORRAL_OK) return rc;
            }
        }
    }
    return CORRAL_OK;
}

/* Phase two: applies every record. Keeps going past a failure; returns the first one. */
static int apply(corral *c, const scratch *s, size_t *busted) {
    int first = CORRAL_OK;
    for (size_t off = 0; off < s->len;) {
        int kind = s->buf[off];
        size_t len;
        memcpy(&len, s->buf + off + 1, sizeof len);
        const char *item = (const char *)s->buf + off + 1 + sizeof len;
        off += 1 + sizeof len + len + 1;
        int rc = kind == KIND_KEY ? corral__delete_key(c, item, len, NULL)
                                  : corral__version_bump(c, vkind(kind), item, len);
        if (rc == CORRAL_OK)
            (*busted)++;
        else if (rc < 0 && first == CORRAL_OK)
            first = rc;
    }
    return first;
}

int corral_emit(corral *c, const char *event, const corral_field *fields, size_t n,
                size_t *busted) {
    size_t count = 0;
    if (busted) *busted = 0;
    if (!c || !event || (n && !fields)) return CORRAL_EINVAL;
    CORRAL_CHECK_OBJ(c, CORRAL_MAGIC);
    for (size_t i = 0; i < n; i++)
        if (!fields[i].name || !fields[i].value) return CORRAL_EINVAL;
    corral__rules *r = c->rules;
    CORRAL_CHECK_OBJ(r, RULES_MAGIC);
    size_t len = strlen(event);
    event_node *ev = find_event(r, event, len, corral__hash_bytes(event, len));
    if (!ev) return CORRAL_OK;
    scratch s = { .c = c };
    int rc = expand_rules(&s, ev, event, fields, n);
    if (rc == CORRAL_OK) rc = apply(c, &s, &count);
    scratch_free(&s);
    if (busted) *busted = count;
    return rc;
}
