/*
 * redis_cluster.h - the Redis store on a Redis Cluster: one connection pool per node (the
 * shapes of redis_pool.h, a pool of one server each), the slot map learnt from the seeds
 * (CLUSTER SLOTS, redis_slots.h), and each call sent to the node that serves its key's slot,
 * following MOVED and ASK. See redis_cluster.c for the model, the locks and the failover;
 * docs/redis.md ("Redis Cluster") for the design.
 *
 * A cluster call is a pool call (redis_pool.h) begun on the right node:
 *
 *     corral__redis_call c;
 *     int rc = corral__redis_cluster_begin(cl, CORRAL__REDIS_WRITE, slot, &c);
 *     if (rc != CORRAL_OK) return rc;
 *     redisReply *r = corral__redis_cluster_command(cl, &c, argc, argv, lens);
 *     ... as corral__redis_command; then corral__redis_end(&c) ...
 *
 * Threads: every function is thread-safe; a call belongs to the thread that began it.
 */
#ifndef CORRAL_STORE_REDIS_CLUSTER_H
#define CORRAL_STORE_REDIS_CLUSTER_H

#include "redis_pool.h"

#define CORRAL__REDIS_MAX_NODES 256 /* nodes a store ever talks to (primaries and replicas) */

typedef struct corral__redis_cluster corral__redis_cluster;

/* Creates the cluster's routing from a pool configuration whose addrs are the seeds (db 0, no
 * unix socket), `cfg->readonly` set for reads from replicas. Connects nothing: the first call
 * loads the slot map. CORRAL_OK, CORRAL_EINVAL or CORRAL_ENOMEM; `*out` NULL on failure. */
int corral__redis_cluster_new(corral__redis_cluster **out, const corral__redis_pool_config *cfg,
                              const corral__allocator *a);
/* Frees every node's pool. No call may be in progress. Accepts NULL. */
void corral__redis_cluster_free(corral__redis_cluster *cl);

/* Begins a call on the node that serves `slot` for `role`: the slot's primary, or with reads
 * from replicas one of its replicas for CORRAL__REDIS_READ (the primary when it has none or
 * they fail). Loads the slot map on first use; refreshes it and tries again, within the command
 * timeout, when the node cannot be reached. Returns what corral__redis_begin returns (a slot
 * that no node serves: CORRAL_MISS for a read, CORRAL_ESTORE for a write). */
int corral__redis_cluster_begin(corral__redis_cluster *cl, corral__redis_role role, uint16_t slot,
                                corral__redis_call *c);

/* corral__redis_command, following the cluster's answers: MOVED (the map is refreshed and the
 * command sent to the new owner), ASK (ASKING and the command, once, to the importing node),
 * TRYAGAIN and CLUSTERDOWN (the map refreshed, tried again after a short pause); at most
 * CORRAL__REDIS_MAX_HOPS times and never past the command timeout since the first send. The
 * call may end on another node than it began: the caller ends it as usual. A connection
 * failure asks for a map refresh (the node may have failed over) and returns NULL: a command
 * whose reply was lost is not sent again. */
#define CORRAL__REDIS_MAX_HOPS 5
redisReply *corral__redis_cluster_command(corral__redis_cluster *cl, corral__redis_call *c,
                                          int argc, const char **argv, const size_t *lens);

/* The node serving `slot` for `role` now (an index for corral__redis_cluster_begin_node), or
 * -1 when none does. Loads the map on first use. For batches grouped by node. */
int corral__redis_cluster_node_of(corral__redis_cluster *cl, corral__redis_role role,
                                  uint16_t slot);
/* Begins a call on node `node` (from corral__redis_cluster_node_of). A failure here or in
 * the call's commands is reported with corral__redis_cluster_lost once the thread holds no call
 * (the map refresh must not wait for a connection its own thread holds). */
int corral__redis_cluster_begin_node(corral__redis_cluster *cl, int node, corral__redis_role role,
                                     corral__redis_call *c);
/* Node `node` could not be reached: it may be gone (a failover), so the map is refreshed, at
 * most once per short gap and never asking that node, for the next calls to find its
 * successor. */
void corral__redis_cluster_lost(corral__redis_cluster *cl, int node);
/* The primaries now, as node indexes into `out` (room for CORRAL__REDIS_MAX_NODES); their
 * count (0 when the map cannot be loaded). */
size_t corral__redis_cluster_primaries(corral__redis_cluster *cl, int *out);

/* A number that changes whenever the slot map's set of primaries changes (a failover, a node
 * added or gone): the near cache's tracker reconnects when it moves. */
uint64_t corral__redis_cluster_topology(corral__redis_cluster *cl);
/* Opens a connection outside the pools to every primary (corral__redis_pool_connect), into
 * `out`: their count, or 0 when one could not be opened or there are more than `cap` (none is
 * then left open). */
size_t corral__redis_cluster_connect_primaries(corral__redis_cluster *cl, redisContext **out,
                                               size_t cap);

/* Opens a connection outside the pools to one primary, a different one at each call (the
 * lease subscriber's: a PUBLISH reaches every node, so any serves, and one that failed is not
 * tried first again). NULL when it could not be opened (the map is then refreshed: the node may
 * be gone) or no primary is known. */
redisContext *corral__redis_cluster_connect_any(corral__redis_cluster *cl);

/* Sums every node's counters into `sum`, plus the cluster's own. */
typedef struct corral__redis_cluster_stats {
    uint64_t moved, ask, refreshes, refresh_failures, retries, no_route;
} corral__redis_cluster_stats;
void corral__redis_cluster_counters(corral__redis_cluster *cl, corral__redis_counters *sum,
                                    corral__redis_cluster_stats *own);
/* Appends the cluster's own rows (corral_redis_cluster_*) to the Prometheus text in `buf` from
 * `*used`, as corral__prom_rows does. */
int corral__redis_cluster_metrics(const corral__redis_cluster_stats *own, char *buf, size_t cap,
                                  size_t *used);

/* The state of node `i` in the order the store met them (corral_store_status). */
int corral__redis_cluster_status(corral__redis_cluster *cl, size_t i, corral_server_status *out);

#endif /* CORRAL_STORE_REDIS_CLUSTER_H */
