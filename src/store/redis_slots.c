/*
 * redis_slots.c - hash slots, the CLUSTER SLOTS reply and redirections (redis_slots.h).
 *
 * The CRC16 is computed bit by bit rather than from a 256-entry table: keys are short (a
 * physical key is at most CORRAL__MAX_KEY bytes, most far fewer), and a table is 512 bytes of
 * constants to check against the specification for nothing measurable beside a round trip.
 * The known answers of the Redis Cluster specification (CRC16 of "123456789" is 0x31C3) are in
 * tests/unit/test_redis_slots.c.
 *
 * The reply parser reads a redisReply tree, which comes from a server: every element's type and
 * bound is checked before use (fuzz/fuzz_redis_slots.c feeds it arbitrary RESP).
 */
#include "redis_slots.h"

#include <string.h>

uint16_t corral__redis_crc16(const void *data, size_t len) {
    const unsigned char *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t corral__redis_key_slot(const void *key, size_t len) {
    const char *k = key;
    const char *open = len ? memchr(k, '{', len) : NULL;
    if (open) {
        size_t after = len - (size_t)(open + 1 - k);
        const char *close = after ? memchr(open + 1, '}', after) : NULL;
        if (close && close > open + 1) {
            k = open + 1;
            len = (size_t)(close - k);
        }
    }
    return corral__redis_crc16(k, len) & (CORRAL__REDIS_SLOTS - 1);
}

static bool host_ok(const char *s, size_t len) {
    if (len == 0 || len > CORRAL__REDIS_MAX_HOSTNAME) return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':'))
            return false;
    }
    return true;
}

/* Fills `out` from a host of `len` bytes (empty: `asked`) and a port. 0, or -1 when bad. */
static int make_addr(const char *host, size_t len, const char *asked, long long port,
                     corral__redis_addr *out) {
    if (len == 0 && asked) {
        host = asked;
        len = strlen(asked);
    }
    if (!host_ok(host, len) || port < 1 || port > 65535) return -1;
    memcpy(out->name, host, len);
    out->name[len] = '\0';
    out->port = (int)port;
    return 0;
}

static bool same_addr(const corral__redis_addr *a, const corral__redis_addr *b) {
    return a->port == b->port && strcmp(a->name, b->name) == 0;
}

/* One node of a range: [host, port, ...]. 0, 1 (an unknown endpoint, "?") or -1 (bad). A nil
 * host (cluster-preferred-endpoint-type unknown-endpoint) is the one asked, as an empty one. */
static int parse_node(const redisReply *n, const char *asked, corral__redis_addr *out) {
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2) return -1;
    const redisReply *h = n->element[0], *p = n->element[1];
    if (h->type == REDIS_REPLY_NIL && p->type == REDIS_REPLY_INTEGER)
        return make_addr("", 0, asked, p->integer, out);
    if (h->type != REDIS_REPLY_STRING || p->type != REDIS_REPLY_INTEGER) return -1;
    if (h->len == 1 && h->str[0] == '?') return 1;
    return make_addr(h->str, h->len, asked, p->integer, out);
}

int corral__redis_slots_parse(const redisReply *r, const char *asked_host,
                              corral__redis_slot_map *out, corral_error *err) {
    out->n_shards = 0;
    for (size_t i = 0; i < CORRAL__REDIS_SLOTS; i++)
        out->shard_of[i] = CORRAL__REDIS_NO_SHARD;
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return corral__seterr(err, CORRAL_EFORMAT, "CLUSTER SLOTS: not an array");
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER)
            return corral__seterr(err, CORRAL_EFORMAT, "CLUSTER SLOTS: range %zu malformed", i);
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        if (lo < 0 || hi >= CORRAL__REDIS_SLOTS || lo > hi)
            return corral__seterr(err, CORRAL_EFORMAT, "CLUSTER SLOTS: bad range %lld-%lld", lo,
                                  hi);
        corral__redis_addr primary;
        int pr = parse_node(e->element[2], asked_host, &primary);
        if (pr != 0)
            return corral__seterr(err, CORRAL_EFORMAT,
                                  "CLUSTER SLOTS: range %lld-%lld has a bad primary", lo, hi);
        size_t sh = 0;
        while (sh < out->n_shards && !same_addr(&out->shards[sh].primary, &primary))
            sh++;
        if (sh == out->n_shards) {
            if (sh == CORRAL__REDIS_MAX_SHARDS)
                return corral__seterr(err, CORRAL_EFORMAT, "CLUSTER SLOTS: more than %d primaries",
                                      CORRAL__REDIS_MAX_SHARDS);
            out->shards[sh].primary = primary;
            out->shards[sh].n_replicas = 0;
            out->n_shards++;
        }
        corral__redis_shard *s = &out->shards[sh];
        for (size_t j = 3; j < e->elements; j++) {
            corral__redis_addr rep;
            int rr = parse_node(e->element[j], asked_host, &rep);
            if (rr < 0)
                return corral__seterr(err, CORRAL_EFORMAT,
                                      "CLUSTER SLOTS: range %lld-%lld has a bad replica", lo, hi);
            if (rr > 0 || same_addr(&rep, &s->primary)) continue;
            bool known = false;
            for (unsigned k = 0; k < s->n_replicas && !known; k++)
                known = same_addr(&s->replicas[k], &rep);
            if (!known && s->n_replicas < CORRAL__REDIS_MAX_REPLICAS)
                s->replicas[s->n_replicas++] = rep;
        }
        for (long long slot = lo; slot <= hi; slot++) {
            if (out->shard_of[slot] != CORRAL__REDIS_NO_SHARD)
                return corral__seterr(err, CORRAL_EFORMAT, "CLUSTER SLOTS: slot %lld twice", slot);
            out->shard_of[slot] = (uint16_t)sh;
        }
    }
    return CORRAL_OK;
}

int corral__redis_parse_redirect(const char *s, size_t len, const char *asked_host, bool *is_ask,
                                 uint16_t *slot, corral__redis_addr *to) {
    size_t word;
    if (len >= 6 && memcmp(s, "MOVED ", 6) == 0) {
        *is_ask = false;
        word = 6;
    } else if (len >= 4 && memcmp(s, "ASK ", 4) == 0) {
        *is_ask = true;
        word = 4;
    } else {
        return CORRAL_MISS;
    }
    size_t i = word;
    long long n = 0;
    size_t digits = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9' && digits < 6) {
        n = n * 10 + (s[i++] - '0');
        digits++;
    }
    if (digits == 0 || n >= CORRAL__REDIS_SLOTS || i >= len || s[i] != ' ') return CORRAL_EFORMAT;
    const char *addr = s + i + 1;
    size_t alen = len - i - 1;
    const char *colon = NULL;
    for (size_t k = alen; k > 0; k--) {
        if (addr[k - 1] == ':') {
            colon = addr + k - 1;
            break;
        }
    }
    if (!colon) return CORRAL_EFORMAT;
    size_t hlen = (size_t)(colon - addr), plen = alen - hlen - 1;
    long long port = 0;
    if (plen == 0 || plen > 5) return CORRAL_EFORMAT;
    for (size_t k = 0; k < plen; k++) {
        char ch = colon[1 + k];
        if (ch < '0' || ch > '9') return CORRAL_EFORMAT;
        port = port * 10 + (ch - '0');
    }
    if (make_addr(addr, hlen, asked_host, port, to) != 0) return CORRAL_EFORMAT;
    *slot = (uint16_t)n;
    return CORRAL_OK;
}
