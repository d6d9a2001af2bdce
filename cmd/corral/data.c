/*
 * data.c - `corral get|set|del|ttl|incr|touch URL KEY ...`: one cache operation from the shell,
 * through the library, so keys go through the URL's key scheme (key_prefix, version, the
 * namespace's generation) and values through its wire format (raw, or Django's with
 * serializer=django). `mem://` is private to each process, so these matter for redis://.
 *
 * The library turns a failing Redis into a miss (a read) or an error code (a write). The CLI
 * must tell "not there" (exit 1) from "could not ask" (exit 3), with the reason: so for a
 * redis:// URL it first connects itself (net.c: refused, timeout, auth; on a redis+cluster://
 * URL to the first seed that answers, as the store does), and after a miss it
 * reads the handle's own corral_redis_failed_reads_total, which counts reads that failed.
 * Only set creates a namespace's generation (corral_make_key_read): a read must not write.
 * `ttl` is corral_ttl: the time the store keeps the key (PTTL on Redis).
 */
#include "cli.h"
#include "net.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

typedef struct data_cmd {
    const char *name; /* the command, for messages */
    bool json, raw, binary, has_ttl;
    int64_t ttl_ms;
    corral_call call;
    const char *url;
    char shown[1024]; /* url with its credentials hidden (corral_url_redact), for messages */
    const char *key;
    const char *tags[32]; /* --tag, for set */
    char **rest;          /* operands after KEY */
    int n_rest;
    corral *c;
    redisContext *redis; /* the probe connection, redis:// only */
    bool no_ns;          /* the call's namespace has no generation: no physical key yet */
    char physical[4200];
} data_cmd;

/* Parses the options and the operands URL KEY [rest...]. Returns CLI_OK or CLI_USAGE. */
static int parse(data_cmd *d, int argc, char **argv, int min_rest, int max_rest) {
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },          { "raw", no_argument, NULL, 'r' },
        { "binary", no_argument, NULL, 'b' },        { "ttl", required_argument, NULL, 't' },
        { "version", required_argument, NULL, 'v' }, { "ns", required_argument, NULL, 'n' },
        { "tag", required_argument, NULL, 'g' },     { NULL, 0, NULL, 0 }
    };
    d->call = (corral_call)CORRAL_CALL_INIT;
    d->ttl_ms = CORRAL_TTL_DEFAULT;
    int ch;
    while ((ch = getopt_long(argc, argv, "jrbt:v:n:g:", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': d->json = true; break;
        case 'r': d->raw = true; break;
        case 'b': d->binary = true; break;
        case 'n': d->call.ns = optarg; break;
        case 'g':
            if (d->call.n_tags == sizeof d->tags / sizeof d->tags[0]) return cli_usage(d->name);
            d->tags[d->call.n_tags++] = optarg;
            d->call.tags = d->tags;
            break;
        case 't':
            if (!parse_ttl(optarg, &d->ttl_ms)) {
                fprintf(stderr, "corral %s: bad --ttl '%s' (seconds, 250ms, or none)\n", d->name,
                        optarg);
                return CLI_USAGE;
            }
            d->has_ttl = true;
            break;
        case 'v':
            if (!parse_i64(optarg, &d->call.version)) {
                fprintf(stderr, "corral %s: bad --version '%s'\n", d->name, optarg);
                return CLI_USAGE;
            }
            break;
        default: return cli_usage(d->name);
        }
    }
    /* getopt_long permutes: options may follow the operands ("get URL KEY --json"); a
     * negative DELTA goes after "--". */
    int n = argc - optind;
    char **ops = argv + optind;
    if (n < 2 + min_rest || n > 2 + max_rest) return cli_usage(d->name);
    d->url = ops[0];
    corral_url_redact(d->url, d->shown, sizeof d->shown);
    d->key = ops[1];
    d->rest = ops + 2;
    d->n_rest = n - 2;
    return CLI_OK;
}

static bool is_redis(const char *url) {
    return strncmp(url, "redis://", 8) == 0 || strncmp(url, "redis+unix://", 13) == 0 ||
           strncmp(url, "redis+cluster://", 16) == 0;
}

/* Opens the handle (and for Redis the probe connection) and makes the physical key. */
static int open_cache(data_cmd *d) {
    corral_error err;
    int rc = corral_open(&d->c, d->url, &err);
    if (rc != CORRAL_OK) {
        fprintf(stderr, "corral %s: %s: %s\n", d->name, d->shown, err.msg);
        return rc == CORRAL_EBADURL || rc == CORRAL_EINVAL ? CLI_USAGE : CLI_FAIL;
    }
    /* Only a read's key: a namespace without a generation is not created here (CORRAL_MISS,
     * then the command finds nothing); set makes its key after the write (op_set). */
    size_t len;
    rc = corral_make_key_read(d->c, d->key, strlen(d->key), &d->call, d->physical,
                              sizeof d->physical, &len);
    if (rc == CORRAL_MISS) {
        d->no_ns = true;
        rc = CORRAL_OK;
    }
    if (rc == CORRAL_EBADKEY || rc == CORRAL_EINVAL) {
        fprintf(stderr, "corral %s: '%s': %s\n", d->name, d->key, corral_strerror(rc));
        return CLI_USAGE;
    }
    if (is_redis(d->url)) {
        char why[256];
        d->redis = cli_redis_connect(d->url, 0, why, sizeof why);
        if (!d->redis) {
            fprintf(stderr, "corral %s: %s: %s\n", d->name, d->shown, why);
            return CLI_FAIL;
        }
    }
    if (rc != CORRAL_OK) { /* a namespace's generation could not be read */
        fprintf(stderr, "corral %s: %s: %s\n", d->name, d->shown, corral_strerror(rc));
        return CLI_FAIL;
    }
    return CLI_OK;
}

static void close_cache(data_cmd *d) {
    if (d->redis) redisFree(d->redis);
    corral_close(d->c);
}

/* Reports an outcome that is not CORRAL_OK: a miss (exit 1) or a failure (exit 3). */
static void json_head(data_cmd *d);

static int report(data_cmd *d, int rc) {
    if (rc == CORRAL_MISS && !cli_read_failed(d->c)) {
        if (d->json) {
            json_head(d);
            printf(",\"found\":false}\n");
        } else if (!d->physical[0]) {
            fprintf(stderr, "corral %s: %s in namespace %s (which has no generation): not found\n",
                    d->name, d->key, d->call.ns);
        } else {
            fprintf(stderr, "corral %s: %s: not found\n", d->name, d->physical);
        }
        return CLI_MISS;
    }
    char buf[512];
    fprintf(stderr, "corral %s: %s: %s\n", d->name, d->shown,
            out_store_why(d->c, rc, buf, sizeof buf));
    return rc == CORRAL_ENOTINT || rc == CORRAL_ERANGE || rc == CORRAL_ETOOBIG ||
                   rc == CORRAL_EINVAL || rc == CORRAL_ENOTSUP
               ? CLI_USAGE
               : CLI_FAIL;
}

/* The key and its physical key (null in a namespace that has no generation). */
static void json_head(data_cmd *d) {
    printf("{\"key\":");
    out_json_str(stdout, d->key, strlen(d->key));
    printf(",\"physical_key\":");
    if (d->physical[0])
        out_json_str(stdout, d->physical, strlen(d->physical));
    else
        printf("null");
}

typedef int (*op_fn)(data_cmd *d);
static int op_set(data_cmd *d);

static int run(const char *name, int argc, char **argv, int min_rest, int max_rest, op_fn op) {
    data_cmd d = { .name = name };
    int ec = parse(&d, argc, argv, min_rest, max_rest);
    if (ec != CLI_OK) return ec;
    ec = open_cache(&d);
    if (ec == CLI_OK && d.no_ns && op != op_set)
        ec = report(&d, CORRAL_MISS); /* a namespace without a generation holds nothing */
    else if (ec == CLI_OK)
        ec = op(&d);
    close_cache(&d);
    return ec;
}

static int op_get(data_cmd *d) {
    corral_value *v;
    int rc = corral_get(d->c, d->key, strlen(d->key), &d->call, &v);
    if (rc != CORRAL_OK) return report(d, rc);
    const void *data = corral_value_data(v);
    size_t len = corral_value_len(v);
    if (d->json) {
        json_head(d);
        printf(",\"found\":true,\"bytes\":%zu,\"utf8\":%s,\"value\":", len,
               out_is_utf8(data, len) ? "true" : "false");
        out_json_str(stdout, data, len);
        printf("}\n");
    } else if (d->raw) {
        fwrite(data, 1, len, stdout);
    } else {
        out_escaped(stdout, data, len);
        putchar('\n');
    }
    corral_value_unref(v);
    return CLI_OK;
}

int cli_get(int argc, char **argv) {
    return run("get", argc, argv, 0, 0, op_get);
}

/* Reads all of stdin (for `set URL KEY -`). */
static char *read_stdin(size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            return NULL;
        }
        buf = nb;
        cap *= 2;
    }
    *len = n;
    return buf;
}

static int op_set(data_cmd *d) {
    const char *val = d->rest[0];
    size_t len = strlen(val);
    char *owned = NULL;
    if (strcmp(val, "-") == 0) {
        owned = read_stdin(&len);
        if (!owned) {
            fprintf(stderr, "corral set: out of memory reading stdin\n");
            return CLI_FAIL;
        }
        val = owned;
    }
    d->call.is_binary = d->binary;
    int rc = corral_set(d->c, d->key, strlen(d->key), val, len, d->ttl_ms, &d->call);
    free(owned);
    if (rc != CORRAL_OK) return report(d, rc);
    size_t plen; /* the namespace has a generation now */
    if (d->no_ns && corral_make_key_read(d->c, d->key, strlen(d->key), &d->call, d->physical,
                                         sizeof d->physical, &plen) != CORRAL_OK)
        d->physical[0] = '\0';
    if (d->json) {
        json_head(d);
        printf(",\"stored\":true,\"bytes\":%zu}\n", len);
    } else {
        printf("OK\n");
    }
    return CLI_OK;
}

int cli_set(int argc, char **argv) {
    return run("set", argc, argv, 1, 1, op_set);
}

static int op_del(data_cmd *d) {
    int rc = corral_delete(d->c, d->key, strlen(d->key), &d->call);
    if (rc != CORRAL_OK) return report(d, rc);
    if (d->json) {
        json_head(d);
        printf(",\"deleted\":true}\n");
    } else {
        printf("deleted %s\n", d->physical);
    }
    return CLI_OK;
}

int cli_del(int argc, char **argv) {
    return run("del", argc, argv, 0, 0, op_del);
}

static int op_ttl(data_cmd *d) {
    int64_t left;
    int rc = corral_ttl(d->c, d->key, strlen(d->key), &d->call, &left);
    if (rc != CORRAL_OK) return report(d, rc);
    long long ms = left == CORRAL_TTL_FOREVER ? -1 : (long long)left;
    if (d->json) {
        json_head(d);
        printf(",\"found\":true,\"ttl_ms\":");
        if (ms < 0)
            printf("null}\n");
        else
            printf("%lld}\n", ms);
    } else if (ms < 0) {
        printf("none\n");
    } else {
        printf("%lld.%03lld\n", ms / 1000, ms % 1000);
    }
    return CLI_OK;
}

int cli_ttl(int argc, char **argv) {
    return run("ttl", argc, argv, 0, 0, op_ttl);
}

static int op_incr(data_cmd *d) {
    int64_t delta = 1, out;
    if (d->n_rest == 1 && !parse_i64(d->rest[0], &delta)) {
        fprintf(stderr, "corral incr: bad DELTA '%s'\n", d->rest[0]);
        return CLI_USAGE;
    }
    int rc = corral_incr(d->c, d->key, strlen(d->key), delta, &d->call, &out);
    if (rc != CORRAL_OK) return report(d, rc);
    if (d->json) {
        json_head(d);
        printf(",\"value\":%lld}\n", (long long)out);
    } else {
        printf("%lld\n", (long long)out);
    }
    return CLI_OK;
}

int cli_incr(int argc, char **argv) {
    return run("incr", argc, argv, 0, 1, op_incr);
}

static int op_touch(data_cmd *d) {
    if (!d->has_ttl) return cli_usage("touch");
    int rc = corral_touch(d->c, d->key, strlen(d->key), d->ttl_ms, &d->call);
    if (rc != CORRAL_OK) return report(d, rc);
    if (d->json) {
        json_head(d);
        printf(",\"touched\":true}\n");
    } else {
        printf("OK\n");
    }
    return CLI_OK;
}

int cli_touch(int argc, char **argv) {
    return run("touch", argc, argv, 0, 0, op_touch);
}
