/*
 * fuzz_redis_slots.c - libFuzzer target for Redis Cluster's replies as the Redis store reads
 * them (src/store/redis_slots.c): the CLUSTER SLOTS reply parser, which the CLI's stats and top
 * use too (cmd/corral/net.c), and the MOVED / ASK parser.
 *
 * The input is RESP bytes from a server, read by hiredis's reader into a reply tree (as the
 * store's connections read them); the tree goes to corral__redis_slots_parse, and the input as a
 * string to corral__redis_parse_redirect. Oracles, beyond "no crash, no leak, no UB":
 * - the parser returns CORRAL_OK or CORRAL_EFORMAT (with a message);
 * - on CORRAL_OK every slot names a shard below n_shards or none, every shard's primary has a
 *   port in 1-65535 and a non-empty name, and replicas are at most CORRAL__REDIS_MAX_REPLICAS;
 * - a redirect that parses names a slot below 16384 and a port in 1-65535;
 * - key slots are below 16384 and a hash tag's slot is its content's.
 *
 * The reader refuses an array header over FUZZ_MAX_ARRAY (fuzz_resp_reader.h says why), so a
 * huge header is not a slow input. A CLUSTER SLOTS reply of a real cluster has one entry per
 * slot range, far below that.
 */
#include "fuzz_resp_reader.h"
#include "store/redis_slots.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

static corral__redis_slot_map map;
static void check_map(void) {
    CHECK(map.n_shards <= CORRAL__REDIS_MAX_SHARDS);
    for (size_t i = 0; i < CORRAL__REDIS_SLOTS; i++)
        CHECK(map.shard_of[i] == CORRAL__REDIS_NO_SHARD || map.shard_of[i] < map.n_shards);
    for (size_t i = 0; i < map.n_shards; i++) {
        const corral__redis_shard *s = &map.shards[i];
        CHECK(s->primary.name[0] && s->primary.port >= 1 && s->primary.port <= 65535);
        CHECK(s->n_replicas <= CORRAL__REDIS_MAX_REPLICAS);
        for (unsigned k = 0; k < s->n_replicas; k++)
            CHECK(s->replicas[k].name[0] && s->replicas[k].port >= 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    redisReader *rd = fuzz_reader_create();
    CHECK(rd != NULL);
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *r = NULL;
        if (redisReaderGetReply(rd, &r) == REDIS_OK && r) {
            corral_error err;
            memset(&err, 0, sizeof err);
            int rc = corral__redis_slots_parse(r, "asked", &map, &err);
            CHECK(rc == CORRAL_OK || (rc == CORRAL_EFORMAT && err.code == rc && err.msg[0]));
            if (rc == CORRAL_OK) check_map();
            freeReplyObject(r);
        }
    }
    redisReaderFree(rd);

    bool ask;
    uint16_t slot = UINT16_MAX;
    corral__redis_addr to;
    int rc = corral__redis_parse_redirect((const char *)data, size, "asked", &ask, &slot, &to);
    CHECK(rc == CORRAL_OK || rc == CORRAL_MISS || rc == CORRAL_EFORMAT);
    if (rc == CORRAL_OK) CHECK(slot < CORRAL__REDIS_SLOTS && to.port >= 1 && to.port <= 65535);

    uint16_t ks = corral__redis_key_slot(data, size);
    CHECK(ks < CORRAL__REDIS_SLOTS);
    const uint8_t *open = memchr(data, '{', size);
    if (open) {
        size_t after = size - (size_t)(open + 1 - data);
        const uint8_t *close = memchr(open + 1, '}', after);
        if (close && close > open + 1)
            CHECK(ks == corral__redis_key_slot(open + 1, (size_t)(close - open - 1)));
    }
    return 0;
}
