/*
 * busy.c - busy objects: a storable response while its leader fetches it, shared with the
 * requests that coalesced on the fetch (Varnish streams a busy object to its waiters the same
 * way). The leader creates one when the origin's head says the answer will be stored, hands it
 * to the flight's waiters (PX_FLIGHT_STREAM), and appends the body as it arrives; each reader
 * sends the head at once and then the body at its own pace, from its own worker's loop.
 *
 * Data model: the head part of the object (px_objbuf's encoding up to the body: keys, times,
 * stored head) is copied at creation and never changes. The body is a list of segments that
 * only grows: the leader fills the last segment beyond its published length without the lock,
 * then publishes the new length under the lock, so readers copy published bytes without it.
 * Segments are freed with the busy object only. With a Content-Length the body is one segment
 * of exactly that size (at most max_object_size, checked at the head); without one, segments
 * double from 64 KiB, and the leader gives up storing (and fails the busy object) beyond
 * max_object_size. Either way memory is bounded by max_object_size per fetch.
 *
 * Readers are the connections streaming the object; the leader wakes each through its
 * worker's inbox (px_worker_notify queues a connection at most once) after every append and
 * at the end. A reader that goes away only unlinks itself; neither the leader nor the other
 * readers notice. The last byte of a body with a Content-Length is handed out only once the
 * object ended, which the leader does after storing it: a client never has the whole answer
 * before the store (a purge it sends next follows the store, and asking again is a hit).
 *
 * The registry (px->busy, px->busy_lock) lists the busy objects new requests may stream: one
 * that finds a busy object for its flight key streams it instead of fetching. A purge marks the
 * busy objects it names (px_busy_purge) so that requests arriving after it fetch anew. The
 * leader publishes before it reads the purge stamps, and new requests skip the object until it
 * has (px_busy_checked): a purge either finds the object in the registry or wrote its stamp
 * before the leader read them, so it is never missed.
 *
 * Locks and references: each busy object has a lock protecting its segment list, published
 * length, state and readers. px->busy_lock protects the registry list and each object's
 * `published`, `checked` and `purged_ms`. Lock order: px->busy_lock and a busy object's lock
 * are never held together; a busy object's lock is held while a reader's inbox_lock is taken
 * (the inbox lock is a leaf). References: the leader's, the registry's while published, each
 * reader's (px_conn.stream) and each pending hand-off (px_conn.wake_busy). Any thread may drop the
 * last.
 */
#include "proxy.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define SEG_MIN (64u * 1024)

typedef struct seg {
    struct seg *next;
    size_t len; /* published bytes (written by the leader under the lock) */
    size_t cap;
    char data[];
} seg;

struct px_busy {
    uint32_t magic;
    atomic_uint refs;
    px_proxy *px;
    /* Registry: px->busy_lock. */
    px_link link;
    bool published;
    bool checked;      /* the leader read the purge stamps after publishing it */
    int64_t purged_ms; /* a purge that named this object, ms (0: none) */
    /* Immutable after px_busy_new. */
    char *key, *ukey, *tags, *obj; /* into one allocation; tags are NUL-terminated in a row */
    size_t key_len, ukey_len, tags_len, obj_len;
    bool has_length;
    uint64_t length;
    px_obj view; /* `obj` parsed (empty body), for every reader */
    corral_http_header *hdrs;
    /* The leader's own: the body length it appended (published or not). */
    size_t total;
    /* Under `lock`. */
    uv_mutex_t lock;
    seg *first, *last;
    int state; /* PX_BUSY_WAIT while the body arrives, then PX_BUSY_DONE or PX_BUSY_FAILED */
    px_link readers;
};

px_busy *px_busy_new(px_proxy *px, const char *key, size_t key_len, const char *ukey,
                     size_t ukey_len, const char *const *tags, size_t n_tags, const char *obj,
                     size_t obj_len, bool has_length, uint64_t length) {
    size_t tags_len = 0;
    for (size_t i = 0; i < n_tags; i++)
        tags_len += strlen(tags[i]) + 1;
    px_busy *b = calloc(1, sizeof *b + key_len + ukey_len + tags_len + obj_len);
    if (!b) return NULL;
    if (uv_mutex_init(&b->lock) < 0) {
        free(b);
        return NULL;
    }
    b->magic = PX_BUSY_MAGIC;
    atomic_init(&b->refs, 1);
    b->px = px;
    px_list_init(&b->link);
    px_list_init(&b->readers);
    char *p = (char *)(b + 1);
    b->key = p;
    memcpy(p, key, key_len);
    p += b->key_len = key_len;
    b->ukey = p;
    memcpy(p, ukey, ukey_len);
    p += b->ukey_len = ukey_len;
    b->tags = p;
    for (size_t i = 0; i < n_tags; i++) {
        size_t n = strlen(tags[i]) + 1;
        memcpy(p, tags[i], n);
        p += n;
    }
    b->tags_len = tags_len;
    b->obj = p;
    memcpy(p, obj, obj_len);
    b->obj_len = obj_len;
    b->has_length = has_length;
    b->length = length;
    b->state = PX_BUSY_WAIT;
    b->hdrs = calloc(PX_OBJ_MAX_HEADERS, sizeof *b->hdrs);
    if (!b->hdrs ||
        px_obj_parse_bytes(b->obj, b->obj_len, b->hdrs, PX_OBJ_MAX_HEADERS, &b->view) < 0) {
        px_busy_unref(b);
        return NULL;
    }
    return b;
}

px_busy *px_busy_ref(px_busy *b) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void px_busy_unref(px_busy *b) {
    if (!b) return;
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
    assert(px_list_empty(&b->readers) && !b->published);
    for (seg *s = b->first, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    uv_mutex_destroy(&b->lock);
    free(b->hdrs);
    b->magic = 0;
    free(b);
}

/* ---- The registry ---- */

void px_busy_publish(px_busy *b) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    px_busy_ref(b);
    uv_mutex_lock(&b->px->busy_lock);
    px_list_push(&b->px->busy, &b->link);
    b->published = true;
    uv_mutex_unlock(&b->px->busy_lock);
}

void px_busy_unpublish(px_busy *b) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    uv_mutex_lock(&b->px->busy_lock);
    bool was = b->published;
    if (was) px_list_remove(&b->link);
    b->published = false;
    uv_mutex_unlock(&b->px->busy_lock);
    if (was) px_busy_unref(b);
}

px_busy *px_busy_find(px_proxy *px, const char *key, size_t key_len, bool purged_too) {
    px_busy *found = NULL;
    uv_mutex_lock(&px->busy_lock);
    /* Newest first: the list is in publishing order. */
    for (px_link *l = px->busy.prev; l != &px->busy; l = l->prev) {
        px_busy *b = PX_CONTAINER(l, px_busy, link);
        if (b->key_len == key_len && memcmp(b->key, key, key_len) == 0 &&
            (purged_too || (b->checked && b->purged_ms == 0))) {
            found = px_busy_ref(b);
            break;
        }
    }
    uv_mutex_unlock(&px->busy_lock);
    return found;
}

static bool has_tag(const px_busy *b, const char *name, size_t len) {
    for (const char *t = b->tags; t < b->tags + b->tags_len; t += strlen(t) + 1) {
        if (strlen(t) == len && memcmp(t, name, len) == 0) return true;
    }
    return false;
}

void px_busy_purge(px_proxy *px, int by, const char *name, size_t len, int64_t now_ms) {
    uv_mutex_lock(&px->busy_lock);
    for (px_link *l = px->busy.next; l != &px->busy; l = l->next) {
        px_busy *b = PX_CONTAINER(l, px_busy, link);
        bool match =
            by == PX_BUSY_BY_ALL ||
            (by == PX_BUSY_BY_URL && b->ukey_len == len && memcmp(b->ukey, name, len) == 0) ||
            (by == PX_BUSY_BY_TAG && has_tag(b, name, len));
        if (match && b->purged_ms == 0) b->purged_ms = now_ms > 0 ? now_ms : 1;
    }
    uv_mutex_unlock(&px->busy_lock);
}

int64_t px_busy_purged_ms(px_busy *b) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    uv_mutex_lock(&b->px->busy_lock);
    int64_t ms = b->purged_ms;
    uv_mutex_unlock(&b->px->busy_lock);
    return ms;
}

void px_busy_checked(px_busy *b, int64_t purged_ms) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    uv_mutex_lock(&b->px->busy_lock);
    if (purged_ms > 0 && (b->purged_ms == 0 || purged_ms < b->purged_ms)) b->purged_ms = purged_ms;
    b->checked = true;
    uv_mutex_unlock(&b->px->busy_lock);
}

const px_obj *px_busy_view(const px_busy *b) {
    return &b->view;
}

bool px_busy_length(const px_busy *b, uint64_t *length) {
    *length = b->length;
    return b->has_length;
}

/* ---- The leader ---- */

/* Wakes every reader; the caller holds b->lock. */
static void notify_locked(px_busy *b) {
    for (px_link *l = b->readers.next; l != &b->readers; l = l->next) {
        px_busy_reader *r = PX_CONTAINER(l, px_busy_reader, link);
        px_worker_notify(r->c->w, r->c);
    }
}

int px_busy_append(px_busy *b, const char *data, size_t len) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    if (len == 0) return 0;
    /* Only the leader writes segments, so it reads their lengths without the lock. */
    seg *s = b->last, *ns = NULL;
    size_t room = s ? s->cap - s->len : 0;
    size_t take = len < room ? len : room;
    if (take < len) {
        size_t want = len - take;
        size_t cap = b->total > SEG_MIN ? b->total : SEG_MIN;
        if (b->has_length && b->length > b->total) cap = (size_t)(b->length - b->total);
        if (cap < want) cap = want;
        ns = malloc(sizeof *ns + cap);
        if (!ns) return PX_ENOMEM;
        ns->next = NULL;
        ns->len = want;
        ns->cap = cap;
        memcpy(ns->data, data + take, want);
    }
    if (take) memcpy(s->data + s->len, data, take);
    uv_mutex_lock(&b->lock);
    if (take) s->len += take;
    if (ns) {
        if (b->last)
            b->last->next = ns;
        else
            b->first = ns;
        b->last = ns;
    }
    notify_locked(b);
    uv_mutex_unlock(&b->lock);
    b->total += len;
    return 0;
}

void px_busy_finish(px_busy *b, bool ok) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    uv_mutex_lock(&b->lock);
    if (b->state == PX_BUSY_WAIT) {
        b->state = ok ? PX_BUSY_DONE : PX_BUSY_FAILED;
        notify_locked(b);
    }
    uv_mutex_unlock(&b->lock);
}

size_t px_busy_body_len(const px_busy *b) {
    return b->total;
}

int px_busy_copy_body(px_busy *b, px_objbuf *ob) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    for (const seg *s = b->first; s; s = s->next) {
        if (px_objbuf_append(ob, s->data, s->len) < 0) return PX_ENOMEM;
    }
    return 0;
}

/* ---- Readers ---- */

void px_busy_attach(px_busy *b, px_busy_reader *r, struct px_conn *c) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    r->c = c;
    r->seg = NULL;
    r->off = 0;
    r->pos = 0;
    uv_mutex_lock(&b->lock);
    px_list_push(&b->readers, &r->link);
    uv_mutex_unlock(&b->lock);
}

void px_busy_detach(px_busy *b, px_busy_reader *r) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    uv_mutex_lock(&b->lock);
    px_list_remove(&r->link);
    uv_mutex_unlock(&b->lock);
}

int px_busy_read(px_busy *b, px_busy_reader *r, size_t max, const char **data, size_t *len) {
    PX_CHECK_OBJ(b, PX_BUSY_MAGIC);
    *data = NULL;
    *len = 0;
    uv_mutex_lock(&b->lock);
    int st = b->state;
    if (st != PX_BUSY_FAILED) {
        seg *s = r->seg ? r->seg : b->first;
        /* A segment that is not full is the last one. */
        while (s && r->off == s->len && s->len == s->cap && s->next) {
            s = s->next;
            r->off = 0;
        }
        r->seg = s;
        size_t n = s && r->off < s->len ? s->len - r->off : 0;
        if (n > max) n = max;
        /* The last byte of a sized body waits for the end (after the store), so a client that
         * has the whole answer and asks again finds it stored. */
        if (n && st == PX_BUSY_WAIT && b->has_length && r->pos + n >= b->length)
            n = b->length > r->pos ? (size_t)(b->length - r->pos - 1) : 0;
        if (n) {
            *data = s->data + r->off;
            *len = n;
            r->off += n;
            r->pos += n;
            st = PX_BUSY_MORE;
        }
    }
    uv_mutex_unlock(&b->lock);
    return st;
}
