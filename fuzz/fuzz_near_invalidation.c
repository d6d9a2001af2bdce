/*
 * fuzz_near_invalidation.c - libFuzzer target for the near cache's invalidation path
 * (src/store/tiered.c): the bytes Redis sends on the tracker's connection, parsed by hiredis's
 * reader as the tracker parses them, each reply applied by corral__near_apply_reply to a memory
 * store standing in for L1, as the tracker applies it (a named key dropped by its hash, NULL:
 * everything dropped).
 *
 * Input: the first byte chooses where the rest is cut in two (the reader is fed twice, as a
 * socket may deliver a reply in pieces); the rest is RESP.
 *
 * Before each reply is applied, L1 holds "v" under every string the reply contains (at any
 * depth) and under a few fixed keys. The oracle, written from the protocol rather than from the
 * code: a Pub/Sub message ["message", "__redis__:invalidate", payload] whose payload is an array
 * of strings drops exactly those keys and keeps every other; any other payload (nil: FLUSHDB)
 * empties L1; any other reply keeps every key. The count returned is the keys named, 1 for an
 * emptying, 0 otherwise.
 *
 * L1 frees what a reply removes after an RCU grace period, on liburcu's thread (memory_rcu.c),
 * so an input ends with allocations not yet freed, and libFuzzer's leak check would scan the
 * heap after every input (20 times slower). It is off for the campaign:
 * fuzz-options: -detect_leaks=0
 * The corpus replay in `make test` (fuzz_near_invalidation_corpus) checks leaks at exit.
 *
 * The reader refuses an array header over FUZZ_MAX_ARRAY as a failed allocation (a protocol
 * error for the tracker, which then reconnects and empties L1); fuzz_resp_reader.h says why.
 */
#include "fuzz_resp_reader.h"
#include "store/memory.h"
#include "store/tiered.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

#define MAX_KEYS 64

static corral__store *l1;
static corral__allocator alloc;

static uint64_t clock_zero(void *ctx) {
    (void)ctx;
    return 1;
}

static corral__skey skey(const char *k, size_t n) {
    return (corral__skey){ .data = k, .len = n, .hash = corral__hash_bytes(k, n) };
}

/* What the tracker's forget does to L1 (tiered.c forget_named, flush), the key hashed whole as
 * a store without a key scheme hashes it. */
static void forget(void *ctx, const char *key, size_t len) {
    size_t *calls = ctx;
    (*calls)++;
    if (key) {
        corral__skey k = skey(key, len);
        (void)l1->ops->del(l1, &k);
    } else {
        CHECK(l1->ops->clear(l1) == CORRAL_OK);
    }
}

static bool present(const char *k, size_t n) {
    corral__skey sk = skey(k, n);
    corral_value *v = NULL;
    int rc = l1->ops->get(l1, &sk, &v);
    CHECK(rc == CORRAL_OK || rc == CORRAL_MISS);
    if (v) corral_value_unref(v);
    return rc == CORRAL_OK;
}

typedef struct keyset {
    const char *k[MAX_KEYS];
    size_t n[MAX_KEYS];
    size_t count;
} keyset;

static void add_key(keyset *s, const char *k, size_t n) {
    if (s->count == MAX_KEYS || n == 0) return;
    for (size_t i = 0; i < s->count; i++)
        if (s->n[i] == n && memcmp(s->k[i], k, n) == 0) return;
    s->k[s->count] = k;
    s->n[s->count++] = n;
}

static void collect(keyset *s, const redisReply *r, int depth) {
    if (r->type == REDIS_REPLY_STRING) add_key(s, r->str, r->len);
    if (r->type != REDIS_REPLY_ARRAY || depth > 4) return;
    for (size_t i = 0; i < r->elements; i++)
        collect(s, r->element[i], depth + 1);
}

static bool str_is(const redisReply *r, const char *s) {
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* Is `k` one of the strings of `payload` (an array)? */
static bool named(const redisReply *payload, const char *k, size_t n) {
    for (size_t i = 0; i < payload->elements; i++) {
        const redisReply *e = payload->element[i];
        if (e->len == n && memcmp(e->str, k, n) == 0) return true;
    }
    return false;
}

static void check_reply(const redisReply *r) {
    CHECK(l1->ops->clear(l1) == CORRAL_OK);
    keyset s = { .count = 0 };
    add_key(&s, "corral:k", 8);
    add_key(&s, "message", 7);
    add_key(&s, "x", 1);
    collect(&s, r, 0);
    bool filled[MAX_KEYS];
    for (size_t i = 0; i < s.count; i++) {
        corral__skey k = skey(s.k[i], s.n[i]);
        filled[i] =
            l1->ops->set(l1, &k, "v", 1, CORRAL__NO_EXPIRY, CORRAL__SET_ALWAYS, 0) == CORRAL_OK;
        if (filled[i]) CHECK(present(s.k[i], s.n[i]));
    }

    size_t calls = 0;
    size_t applied = corral__near_apply_reply(r, forget, &calls);

    bool is_inval = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                    str_is(r->element[0], "message") &&
                    str_is(r->element[1], "__redis__:invalidate");
    const redisReply *p = is_inval ? r->element[2] : NULL;
    bool by_name = p && p->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; by_name && i < p->elements; i++)
        by_name = p->element[i]->type == REDIS_REPLY_STRING;

    if (!is_inval) {
        CHECK(applied == 0 && calls == 0);
    } else if (!by_name) {
        CHECK(applied == 1 && calls == 1);
    } else {
        CHECK(applied == p->elements && calls == p->elements);
    }
    for (size_t i = 0; i < s.count; i++) {
        if (!filled[i]) continue;
        bool gone = is_inval && (!by_name || named(p, s.k[i], s.n[i]));
        CHECK(present(s.k[i], s.n[i]) == !gone);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (!l1) {
        corral__allocator_init(&alloc, NULL);
        corral__store_env env = { .alloc = &alloc, .now_ns = clock_zero };
        corral__mem_config cfg = { .max_bytes = 4u << 20, .shards = 1 };
        CHECK(corral__mem_open(&l1, &cfg, &env) == CORRAL_OK);
    }
    size_t cut = size > 1 ? 1 + data[0] % (size - 1) : 1;
    redisReader *rd = fuzz_reader_create();
    CHECK(rd != NULL);
    bool ok = true;
    for (int part = 0; part < 2 && ok; part++) {
        const uint8_t *b = part ? data + cut : data + 1;
        size_t n = part ? size - cut : cut - 1;
        if (n && redisReaderFeed(rd, (const char *)b, n) != REDIS_OK) break;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
                ok = false; /* a protocol error: the tracker drops the connection and L1 */
                break;
            }
            if (!reply) break;
            check_reply(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    return 0;
}
