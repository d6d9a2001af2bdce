/*
 * redis_cluster_many.c - the Redis store's operations on many keys over a Redis Cluster, and
 * its tagged read there. redis_many.c hands them here when the store is on a cluster.
 *
 * - get_many, set_many, del_many: the keys are grouped by the node that serves their slot
 *   (redis_cluster.h), and each group is one pipeline on that node: a GET, SET or DEL per key
 *   (a multi-key command would need every key in one slot, CROSSSLOT otherwise). So N keys
 *   over P primaries are P round trips, one after the other. A key whose reply is a
 *   redirection (its slot moved since the map was read) is done again on its own through the
 *   single-key operation, which follows it. set_many is not atomic on a cluster: each SET is
 *   done or not (the standalone store's MULTI/EXEC would need one slot).
 * - get_checked: the value's GET, then its tags' versions read where they live, one pipeline
 *   per node holding some of them, all sent before any is read (two round trips of latency),
 *   and compared here (the CHECKED script of redis.c cannot run:
 *   a script may only touch keys of one slot, and the tag keys are on other slots). Reading the
 *   versions after the value is what makes it safe: a bust that landed before the version was
 *   read shows as a mismatch, so a value busted before the read began is never returned
 *   (docs/redis.md, "Tags on a cluster").
 * Failures as in redis.c: a read that fails is a miss, a write an error.
 */
#include "redis_internal.h"
#include "redis_django.h"

#include <string.h>

#define DONE     (-2) /* node[] of a key whose group was sent */
#define AGAIN    (-3) /* node[] of a key to do again alone (redirected) */
#define NO_ROUTE (-1)

/* True when `r` is a MOVED or ASK error. */
static bool redirected(const redisReply *r) {
    return r->type == REDIS_REPLY_ERROR && ((r->len >= 6 && memcmp(r->str, "MOVED ", 6) == 0) ||
                                            (r->len >= 4 && memcmp(r->str, "ASK ", 4) == 0));
}

/* The node of each key for `role`, into node[] (NO_ROUTE when no node serves its slot). */
static void route_keys(redis_store *s, corral__redis_role role, const corral__skey *ks, size_t n,
                       int *node) {
    for (size_t i = 0; i < n; i++)
        node[i] = corral__redis_cluster_node_of(s->cluster, role,
                                                corral__redis_key_slot(ks[i].data, ks[i].len));
}

/* What one key's command is: GET, SET (with the value), DEL. */
typedef enum many_op { OP_GET, OP_SET, OP_DEL } many_op;

typedef struct many {
    redis_store *s;
    many_op op;
    const corral__skey *ks;
    const corral_buf *vals; /* OP_SET */
    int64_t ttl_ms;         /* OP_SET */
    char ttl[TTL_DIGITS];
    size_t ttl_len;         /* 0: no expiry */
    bool as_bytes;          /* OP_SET, Django's format: pickled as bytes */
    unsigned char *scratch; /* OP_SET, Django's format: one encoding at a time */
    corral_value **out;     /* OP_GET */
    int64_t *ttls;          /* OP_GET for the near cache: a PTTL after each GET; else NULL */
    size_t deleted;         /* OP_DEL */
    int rc;                 /* the first error */
} many;

static int append_one(many *m, corral__redis_call *c, size_t i) {
    const corral__skey *k = &m->ks[i];
    if (m->op == OP_GET || m->op == OP_DEL) {
        const char *argv[2] = { m->op == OP_GET ? "GET" : "DEL", k->data };
        size_t lens[2] = { 3, k->len };
        if (corral__redis_append(c, 2, argv, lens) != 0) return -1;
        if (!m->ttls) return 0;
        argv[0] = "PTTL";
        lens[0] = 4;
        return corral__redis_append(c, 2, argv, lens);
    }
    const corral_buf *v = &m->vals[i];
    const char *argv[5] = { "SET", k->data, v->data ? v->data : "", "PX", m->ttl };
    size_t lens[5] = { 3, k->len, v->len, 2, m->ttl_len };
    if (m->s->pickles) { /* hiredis copies the command at append: one scratch serves them all */
        corral__django_encode_as(v->data, v->len, m->as_bytes, m->scratch);
        argv[2] = (const char *)m->scratch;
        lens[2] = corral__django_encoded_len_as(v->data, v->len, m->as_bytes);
    }
    return corral__redis_append(c, m->ttl_len ? 5 : 3, argv, lens);
}

/* Takes the reply of key `i`: its value, its count, its error; a redirection marks it AGAIN. */
static void take_reply(many *m, corral__redis_call *c, size_t i, const redisReply *r, int *node) {
    int rc = CORRAL_OK;
    if (redirected(r)) {
        node[i] = AGAIN;
        return;
    }
    switch (m->op) {
    case OP_GET:
        if (r->type == REDIS_REPLY_STRING)
            rc = corral__redis_make_value(m->s, r, &m->out[i]);
        else if (r->type != REDIS_REPLY_NIL)
            rc = corral__redis_error_reply(c, r);
        break;
    case OP_SET:
        if (r->type != REDIS_REPLY_STATUS) rc = corral__redis_error_reply(c, r);
        break;
    case OP_DEL:
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            m->deleted++;
        else if (r->type != REDIS_REPLY_INTEGER)
            rc = corral__redis_error_reply(c, r);
        break;
    }
    if (rc != CORRAL_OK && rc != CORRAL_MISS && m->rc == CORRAL_OK) m->rc = rc;
}

/* One node's pipeline: the keys i.. whose node[] is `nd`. */
static void run_group(many *m, corral__redis_role role, size_t first, size_t n, int *node) {
    int nd = node[first];
    corral__redis_call c;
    int rc = corral__redis_cluster_begin_node(m->s->cluster, nd, role, &c);
    if (rc != CORRAL_OK) {
        for (size_t i = first; i < n; i++)
            if (node[i] == nd) node[i] = DONE;
        if (rc != CORRAL_MISS && m->rc == CORRAL_OK) m->rc = rc;
        corral__redis_cluster_lost(m->s->cluster, nd);
        return;
    }
    size_t sent = 0;
    bool ok = true;
    for (size_t i = first; i < n && ok; i++)
        if (node[i] == nd) ok = append_one(m, &c, i) == 0 && ++sent;
    if (!ok) {
        rc = corral__redis_failed(&c);
        if (rc != CORRAL_MISS && m->rc == CORRAL_OK) m->rc = rc;
        sent = 0;
    }
    bool broken = !ok;
    for (size_t i = first; i < n; i++) {
        if (node[i] != nd) continue;
        node[i] = DONE;
        if (broken || sent == 0) continue;
        sent--;
        redisReply *r = corral__redis_read(&c);
        if (!r) {
            rc = corral__redis_failed(&c);
            if (rc != CORRAL_MISS && m->rc == CORRAL_OK) m->rc = rc;
            broken = true;
            continue;
        }
        take_reply(m, &c, i, r, node);
        freeReplyObject(r);
        if (m->ttls) { /* the key's PTTL, right after its GET */
            redisReply *t = corral__redis_read(&c);
            if (!t) {
                (void)corral__redis_failed(&c);
                broken = true;
                continue;
            }
            m->ttls[i] = node[i] == AGAIN ? 0 : corral__redis_ttl_of(t);
            freeReplyObject(t);
        }
    }
    corral__redis_end(&c);
    if (broken) corral__redis_cluster_lost(m->s->cluster, nd);
}

/* Groups, sends and reads; then the redirected keys one by one (a read for the near cache on
 * the primary, its TTL left 0: not kept near, as the slot is moving). */
static void run(many *m, corral__redis_role role, size_t n, int *node) {
    route_keys(m->s, role, m->ks, n, node);
    for (size_t i = 0; i < n; i++) {
        if (node[i] == NO_ROUTE) {
            if (m->op != OP_GET && m->rc == CORRAL_OK) m->rc = CORRAL_ESTORE;
            node[i] = DONE;
        } else if (node[i] >= 0) {
            run_group(m, role, i, n, node);
        }
    }
    corral__store *base = &m->s->base;
    for (size_t i = 0; i < n; i++) {
        if (node[i] != AGAIN) continue;
        int rc = CORRAL_OK;
        if (m->op == OP_GET) {
            rc = m->ttls ? corral__redis_get_role(m->s, CORRAL__REDIS_READ_PRIMARY, &m->ks[i],
                                                  &m->out[i])
                         : base->ops->get(base, &m->ks[i], &m->out[i]);
        } else if (m->op == OP_SET) {
            rc = base->ops->set(base, &m->ks[i], m->vals[i].data, m->vals[i].len, m->ttl_ms,
                                CORRAL__SET_ALWAYS, m->as_bytes ? CORRAL__SETF_BINARY : 0);
        } else {
            rc = base->ops->del(base, &m->ks[i]);
            if (rc == CORRAL_OK) m->deleted++;
        }
        if (rc != CORRAL_OK && rc != CORRAL_MISS && m->rc == CORRAL_OK) m->rc = rc;
    }
}

int corral__redis_cluster_get_many(redis_store *s, const corral__skey *ks, size_t n,
                                   corral_value **out, int64_t *ttls) {
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        if (ttls) ttls[i] = 0;
    }
    if (n == 0) return CORRAL_OK;
    int *node = corral__alloc3(s->alloc, n, sizeof *node, 0);
    if (!node) return CORRAL_ENOMEM;
    many m = { .s = s, .op = OP_GET, .ks = ks, .out = out, .ttls = ttls };
    run(&m, ttls ? CORRAL__REDIS_READ_PRIMARY : CORRAL__REDIS_READ, n, node);
    corral__free(s->alloc, node, n * sizeof *node);
    if (m.rc != CORRAL_OK) {
        for (size_t i = 0; i < n; i++) {
            corral_value_unref(out[i]);
            out[i] = NULL;
        }
    }
    return m.rc;
}

int corral__redis_cluster_set_many(redis_store *s, const corral__skey *ks, const corral_buf *vals,
                                   size_t n, int64_t ttl_ms, unsigned flags) {
    many m = { .s = s, .op = OP_SET, .ks = ks, .vals = vals, .ttl_ms = ttl_ms };
    m.as_bytes = flags & CORRAL__SETF_BINARY;
    m.ttl_len = ttl_ms == CORRAL__NO_EXPIRY ? 0 : corral__redis_fmt_i64(m.ttl, ttl_ms);
    size_t scratch_len = 0;
    for (size_t i = 0; s->pickles && i < n; i++)
        scratch_len = CORRAL_MAX(
            scratch_len, corral__django_encoded_len_as(vals[i].data, vals[i].len, m.as_bytes));
    int *node = corral__alloc3(s->alloc, n, sizeof *node, 0);
    if (scratch_len) m.scratch = corral__alloc(s->alloc, scratch_len);
    if (!node || (scratch_len && !m.scratch)) {
        corral__free(s->alloc, node, n * sizeof *node);
        corral__free(s->alloc, m.scratch, scratch_len);
        return CORRAL_ENOMEM;
    }
    run(&m, CORRAL__REDIS_WRITE, n, node);
    corral__free(s->alloc, node, n * sizeof *node);
    corral__free(s->alloc, m.scratch, scratch_len);
    return m.rc;
}

int corral__redis_cluster_del_many(redis_store *s, const corral__skey *ks, size_t n,
                                   size_t *deleted) {
    *deleted = 0;
    if (n == 0) return CORRAL_OK;
    int *node = corral__alloc3(s->alloc, n, sizeof *node, 0);
    if (!node) return CORRAL_ENOMEM;
    many m = { .s = s, .op = OP_DEL, .ks = ks };
    run(&m, CORRAL__REDIS_WRITE, n, node);
    corral__free(s->alloc, node, n * sizeof *node);
    *deleted = m.deleted;
    return m.rc;
}

/* ---- The near cache's connections ---- */

size_t corral__redis_connect_primaries(corral__store *base, struct redisContext **out, size_t cap) {
    redis_store *s = store_of(base);
    if (s->cluster) return corral__redis_cluster_connect_primaries(s->cluster, out, cap);
    if (cap == 0) return 0;
    out[0] = corral__redis_pool_connect(s->pool);
    return out[0] ? 1 : 0;
}

uint64_t corral__redis_topology(corral__store *base) {
    redis_store *s = store_of(base);
    return s->cluster ? corral__redis_cluster_topology(s->cluster) : 0;
}

/* ---- get_checked ---- */

/* Reads n (<= CORRAL__ENV_MAX_TAGS) keys from their primaries (a replica may not have a bust
 * yet, even with reads from replicas) with every node's pipeline sent before any reply is
 * read: one round trip of latency however many nodes hold them. Calls are begun in ascending
 * node order, so two such reads never wait on each other's connections in a cycle (a single
 * call holds one connection only), and ended in reverse, so the first restores the thread's
 * signal mask; it is told of any write that failed in the others, to consume the SIGPIPE that
 * write may have left pending (redis_pool.h). A key whose node fails reads as NULL; a
 * redirected one is read again alone. CORRAL_OK or CORRAL_ENOMEM. */
static int get_parallel(redis_store *s, const corral__skey *ks, size_t n, corral_value **out) {
    int node[CORRAL__ENV_MAX_TAGS], nodes[CORRAL__ENV_MAX_TAGS];
    size_t nn = 0;
    route_keys(s, CORRAL__REDIS_READ_PRIMARY, ks, n, node);
    for (size_t i = 0; i < n; i++) {
        out[i] = NULL;
        size_t at = 0;
        while (node[i] >= 0 && at < nn && nodes[at] < node[i])
            at++;
        if (node[i] < 0 || (at < nn && nodes[at] == node[i])) continue;
        memmove(nodes + at + 1, nodes + at, (nn - at) * sizeof *nodes);
        nodes[at] = node[i];
        nn++;
    }
    corral__redis_call calls[CORRAL__ENV_MAX_TAGS];
    bool begun[CORRAL__ENV_MAX_TAGS] = { false }, sent[CORRAL__ENV_MAX_TAGS] = { false };
    bool read_all[CORRAL__ENV_MAX_TAGS] = { false }; /* the node answered every key */
    for (size_t g = 0; g < nn; g++) {
        begun[g] = corral__redis_cluster_begin_node(
                       s->cluster, nodes[g], CORRAL__REDIS_READ_PRIMARY, &calls[g]) == CORRAL_OK;
        sent[g] = begun[g];
        for (size_t i = 0; i < n && sent[g]; i++) {
            if (node[i] != nodes[g]) continue;
            const char *argv[2] = { "GET", ks[i].data };
            size_t lens[2] = { 3, ks[i].len };
            sent[g] = corral__redis_append(&calls[g], 2, argv, lens) == 0;
        }
        if (begun[g] && !sent[g]) (void)corral__redis_failed(&calls[g]);
    }
    int rc = CORRAL_OK;
    for (size_t g = 0; g < nn; g++) {
        read_all[g] = sent[g];
        for (size_t i = 0; i < n && sent[g]; i++) {
            if (node[i] != nodes[g]) continue;
            redisReply *r = corral__redis_read(&calls[g]);
            if (!r) {
                (void)corral__redis_failed(&calls[g]);
                read_all[g] = false;
                break;
            }
            if (redirected(r))
                node[i] = AGAIN;
            else if (r->type == REDIS_REPLY_STRING && rc == CORRAL_OK)
                rc = corral__redis_make_value(s, r, &out[i]);
            else if (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_STRING)
                (void)corral__redis_error_reply(&calls[g], r);
            freeReplyObject(r);
        }
    }
    size_t first = nn;
    for (size_t g = 0; g < nn; g++)
        if (begun[g] && first == nn) first = g;
    for (size_t g = nn; g-- > 0;) {
        if (!begun[g]) continue;
        if (g != first && calls[g].io_failed) calls[first].io_failed = true;
        corral__redis_end(&calls[g]);
    }
    for (size_t g = 0; g < nn; g++) /* with no call held: the refresh waits on none of ours */
        if (!read_all[g]) corral__redis_cluster_lost(s->cluster, nodes[g]);
    for (size_t i = 0; i < n && rc == CORRAL_OK; i++)
        if (node[i] == AGAIN)
            (void)corral__redis_get_role(s, CORRAL__REDIS_READ_PRIMARY, &ks[i], &out[i]);
    return rc;
}

int corral__redis_cluster_get_checked(redis_store *s, const corral__skey *k, corral_value **out) {
    corral__store *base = &s->base;
    int rc = base->ops->get(base, k, out);
    if (rc != CORRAL_OK || s->django || (*out)->hdr_len == 0) return rc;
    corral_value *v = *out;
    corral__env env;
    if (corral__env_parse(corral__value_hdr(v), v->hdr_len, &env) != CORRAL_OK) goto busted;
    if (!(env.flags & CORRAL__ENV_TAGS) || env.n_tags == 0) return CORRAL_OK;
    /* The tag keys, "<KEY_PREFIX>:tag:<name>", one block. */
    size_t key_cap = s->tag_prefix_len + 256, n = env.n_tags;
    char *keys = corral__alloc3(s->alloc, n, key_cap, 0);
    corral__skey sk[CORRAL__ENV_MAX_TAGS];
    corral_value *cur[CORRAL__ENV_MAX_TAGS] = { NULL };
    if (!keys) {
        corral_value_unref(v);
        *out = NULL;
        return CORRAL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char *kb = keys + i * key_cap;
        memcpy(kb, s->tag_prefix, s->tag_prefix_len);
        memcpy(kb + s->tag_prefix_len, env.tags[i].name, env.tags[i].name_len);
        kb[s->tag_prefix_len + env.tags[i].name_len] = '\0';
        sk[i] = (corral__skey){ .data = kb, .len = s->tag_prefix_len + env.tags[i].name_len };
    }
    rc = get_parallel(s, sk, n, cur);
    bool valid = rc == CORRAL_OK;
    for (size_t i = 0; i < n; i++) {
        const corral_value *c = cur[i];
        valid = valid && c && c->hdr_len == 0 && c->len == env.tags[i].version_len &&
                memcmp(corral__value_data(c), env.tags[i].version, c->len) == 0;
        corral_value_unref(cur[i]);
    }
    corral__free(s->alloc, keys, n * key_cap);
    if (rc == CORRAL_ENOMEM) {
        corral_value_unref(v);
        *out = NULL;
        return rc;
    }
    if (valid) return CORRAL_OK;
busted:
    corral_value_unref(v);
    *out = NULL;
    return CORRAL_MISS;
}
