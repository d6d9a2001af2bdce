/*
 * net.h - the CLI's two clients: a blocking HTTP/1.1 client for admin listeners and metrics
 * endpoints (one request per connection, with a deadline on the whole exchange), and a Redis
 * connection made from a cache URL (hosts, password, db and timeouts as the library reads them).
 *
 * Failures come back as one line for the user in `why` ("connection refused", "timeout after
 * 2000 ms", "auth failed: WRONGPASS ...", "HTTP 401 Unauthorized"), so every command reports a
 * failing target the same way.
 */
#ifndef CORRAL_CLI_NET_H
#define CORRAL_CLI_NET_H

#include "corral/corral.h"

#include <hiredis/hiredis.h>

#include <stdbool.h>
#include <stddef.h>

/* An http:// URL split into its parts. */
typedef struct http_url {
    char host[256]; /* without brackets for IPv6 */
    char port[8];
    char path[2048]; /* begins with '/' ("/" when the URL has none) */
} http_url;

/* Parses "http://host[:port][/path]". Returns 0, or -1 with `why` set. */
int http_url_parse(const char *url, http_url *out, char *why, size_t why_cap);

typedef struct http_response {
    unsigned status;
    char reason[64];
    char *body; /* malloc'd, NUL-terminated; free with http_response_free */
    size_t body_len;
} http_response;

/* Sends `method target` to u's host and port with Host u's host:port, an optional bearer
 * `token` and Connection: close, and reads the whole answer (chunked or by length, at most
 * 64 MiB) within `timeout_ms`. Returns 0 with `*resp` filled (any status), or -1 with `why` set
 * (connection refused, timeout, malformed answer); `resp->body` is then NULL. */
int http_request(const http_url *u, const char *method, const char *target, const char *token,
                 int timeout_ms, http_response *resp, char *why, size_t why_cap);
void http_response_free(http_response *r);

/* Opens a Redis connection for the cache URL `url` (its first host, or its unix socket), with
 * AUTH and SELECT done and the URL's command timeout set; `timeout_ms` > 0 overrides both the
 * connect and command timeouts. Returns the context, or NULL with `why` set (bad URL, not a
 * redis URL, refused, timeout, auth). Free with redisFree.
 *
 * A redis+cluster:// URL: the first of its seeds that answers and is a cluster node (CLUSTER
 * MYID), as the store takes any seed. When none answers, `why` has every seed's reason ("no
 * seed answered: 127.0.0.1:7000: connection refused; 127.0.0.1:7001: timeout after 2000 ms");
 * a seed that refuses the credentials, or answers but has cluster support disabled ("use
 * redis://"), ends the search with its reason. */
redisContext *cli_redis_connect(const char *url, int timeout_ms, char *why, size_t why_cap);

/* Opens a connection as cli_redis_connect does, to the node "host:port" ("[v6]:port") with the
 * URL's credentials: a node of a cluster, from cli_cluster_primaries. */
redisContext *cli_redis_connect_node(const char *url, const char *hostport, int timeout_ms,
                                     char *why, size_t why_cap);

/* A node's "host:port". */
typedef char cli_node[272];

/* The primaries of the cluster at the redis+cluster:// URL `url`, from CLUSTER SLOTS on the
 * first seed that answers, read by the store's parser (src/store/redis_slots.h): their count
 * (at most `cap`) in `out`, in the order the reply first names them, or -1 with `why` (no seed
 * answered, not a cluster, a reply the parser refuses, no slot served, more than `cap`). */
int cli_cluster_primaries(const char *url, int timeout_ms, cli_node *out, size_t cap, char *why,
                          size_t why_cap);

/* True when the handle counted a Redis read that failed (corral_redis_failed_reads_total): the
 * library turns such a read into a miss, which the CLI must not report as "not found". */
bool cli_read_failed(corral *c);

/* Reads the admin token: the first line of `file` when given, else $CORRAL_ADMIN_TOKEN, else
 * "" (no token). Returns 0, or -1 with `why` set when the file cannot be read. */
int read_token(const char *file, char *out, size_t cap, char *why, size_t why_cap);

#endif /* CORRAL_CLI_NET_H */
