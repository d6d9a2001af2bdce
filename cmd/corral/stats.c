/*
 * stats.c - `corral stats TARGET...`: the guide's "hit rate per key prefix" from running
 * processes, as one table summed over every target (the fleet view), and the table printing
 * `corral top` shares. A target that fails is one line on stderr with its reason; the others
 * are still shown, and the exit code is then 3. So is a cluster target with a primary that
 * failed: its line names the primary, and the other primaries' rows are still summed.
 */
#include "cli.h"
#include "net.h"
#include "stats.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define UNDER 90.0 /* the guide: "anything under 90% is a candidate for a rethink" */

static void fmt_count(char *out, size_t cap, double v, bool rates) {
    if (rates)
        snprintf(out, cap, "%.1f", v);
    else
        snprintf(out, cap, "%.0f", v);
}

static void fmt_bytes(char *out, size_t cap, double v, bool estimated) {
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, "%s%.*f %s", estimated ? "~" : "", u ? 1 : 0, v, units[u]);
}

static void print_row(FILE *f, const stat_row *r, int width, bool rates, const char *kind) {
    char req[24], miss[24], loads[24], stale[24], ev[24], items[24], bytes[32], hr[16];
    fmt_count(req, sizeof req, r->requests, rates);
    fmt_count(miss, sizeof miss, r->misses, rates);
    fmt_count(loads, sizeof loads, r->loads, rates);
    fmt_count(stale, sizeof stale, r->stale, rates);
    fmt_count(ev, sizeof ev, r->evictions, rates);
    snprintf(items, sizeof items, "%s%.0f", r->estimated ? "~" : "", r->items);
    fmt_bytes(bytes, sizeof bytes, r->bytes, r->estimated);
    double rate = row_hit_rate(r);
    if (rate < 0)
        snprintf(hr, sizeof hr, "-");
    else
        snprintf(hr, sizeof hr, "%.1f%%", rate);
    fprintf(f, "%-*s %-6s %9s %8s %8s %7s %6s %9s %9s %11s%s\n", width, r->name, kind, req, hr,
            miss, loads, stale, ev, items, bytes,
            rate >= 0 && rate < UNDER && !r->internal ? "  <- under 90%" : "");
}

void table_print(FILE *f, const stat_table *t, bool all, bool rates) {
    int width = 24;
    for (size_t i = 0; i < t->n; i++) {
        int n = (int)strlen(t->rows[i].name);
        if ((all || !t->rows[i].internal) && n > width) width = n < 48 ? n : 48;
    }
    fprintf(f, "%-*s %-6s %9s %8s %8s %7s %6s %9s %9s %11s\n", width, "prefix/route", "kind",
            rates ? "req/s" : "requests", "hit rate", rates ? "miss/s" : "misses",
            rates ? "loads/s" : "loads", rates ? "stale/s" : "stale",
            rates ? "evict/s" : "evictions", "items", "bytes");
    stat_row total = { .name = "total" };
    for (size_t i = 0; i < t->n; i++) {
        const stat_row *r = &t->rows[i];
        if (r->internal && !all) continue;
        print_row(f, r, width, rates, r->is_route ? "route" : "prefix");
        total.requests += r->requests;
        total.hits += r->hits;
        total.misses += r->misses;
        total.loads += r->loads;
        total.stale += r->stale;
        total.evictions += r->evictions;
        total.items += r->items;
        total.bytes += r->bytes;
        total.estimated |= r->estimated;
    }
    total.internal = true; /* the total is not flagged: its rows are */
    print_row(f, &total, width, rates, "");
}

static void json_row(FILE *f, const stat_row *r, const char *kind) {
    fprintf(f, "{\"name\":");
    out_json_str(f, r->name, strlen(r->name));
    fprintf(f, ",\"kind\":\"%s\",\"requests\":", kind);
    out_json_num(f, r->requests);
    double rate = row_hit_rate(r);
    fprintf(f, ",\"hits\":");
    out_json_num(f, r->hits);
    fprintf(f, ",\"misses\":");
    out_json_num(f, r->misses);
    fprintf(f, ",\"hit_rate\":");
    out_json_num(f, rate < 0 ? NAN : rate);
    fprintf(f, ",\"loads\":");
    out_json_num(f, r->loads);
    fprintf(f, ",\"stale\":");
    out_json_num(f, r->stale);
    fprintf(f, ",\"evictions\":");
    out_json_num(f, r->evictions);
    fprintf(f, ",\"items\":");
    out_json_num(f, r->items);
    fprintf(f, ",\"bytes\":");
    out_json_num(f, r->bytes);
    fprintf(f, ",\"estimated\":%s,\"internal\":%s,\"under_90\":%s}",
            r->estimated ? "true" : "false", r->internal ? "true" : "false",
            rate >= 0 && rate < UNDER ? "true" : "false");
}

void table_json(FILE *f, const stat_table *t, bool all) {
    fprintf(f, "\"rows\":[");
    bool first = true;
    for (size_t i = 0; i < t->n; i++) {
        const stat_row *r = &t->rows[i];
        if (r->internal && !all) continue;
        if (!first) fputc(',', f);
        first = false;
        json_row(f, r, r->is_route ? "route" : "prefix");
    }
    fprintf(f, "]");
}

/* The "HOST:PORT" (or http:// URL) of a --token-to as host and port. Returns 0 or -1. */
static int token_to_parse(const char *spec, http_url *u) {
    char why[64], buf[512];
    if (strncmp(spec, "http://", 7) == 0) return http_url_parse(spec, u, why, sizeof why);
    int n = snprintf(buf, sizeof buf, "http://%s", spec);
    if (n < 0 || (size_t)n >= sizeof buf || strchr(spec, '/')) return -1;
    return http_url_parse(buf, u, why, sizeof why);
}

/* Gives the admin token to the http targets it was asked for: those whose host and port (as
 * written) a --token-to names, or, without --token-to, the only http target when there is one.
 * Every other target gets none, so a token never reaches an endpoint that was not named for it
 * (a fleet's stats may read a third party's exporter). Returns CLI_OK or CLI_USAGE. */
static int assign_token(target *ts, size_t n, const char *token, char **to, size_t n_to,
                        const char *cmd) {
    size_t n_http = 0;
    for (size_t i = 0; i < n; i++)
        n_http += ts[i].kind == TARGET_HTTP;
    for (size_t j = 0; j < n_to; j++) {
        http_url want;
        bool named = false;
        if (token_to_parse(to[j], &want) < 0) {
            fprintf(stderr, "corral %s: --token-to %s: not HOST:PORT\n", cmd, to[j]);
            return CLI_USAGE;
        }
        for (size_t i = 0; i < n; i++) {
            http_url u;
            char why[64];
            if (ts[i].kind != TARGET_HTTP || http_url_parse(ts[i].spec, &u, why, sizeof why) < 0)
                continue;
            if (strcmp(u.host, want.host) == 0 && strcmp(u.port, want.port) == 0) {
                ts[i].token = token;
                named = true;
            }
        }
        if (!named) {
            fprintf(stderr, "corral %s: --token-to %s: no http target there\n", cmd, to[j]);
            return CLI_USAGE;
        }
    }
    for (size_t i = 0; n_to == 0 && n_http == 1 && i < n; i++)
        if (ts[i].kind == TARGET_HTTP) ts[i].token = token;
    return CLI_OK;
}

int stats_parse(int argc, char **argv, const char *cmd, target **out, size_t *n_out,
                stats_opts *o) {
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "all", no_argument, NULL, 'a' },
        { "sample-ms", required_argument, NULL, 's' },
        { "interval", required_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'c' },
        { "token-file", required_argument, NULL, 'T' },
        { "token-to", required_argument, NULL, 'o' },
        { "timeout", required_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    const char *token_file = NULL;
    char *token_to[32];
    size_t n_to = 0;
    int ch;
    int64_t v;
    while ((ch = getopt_long(argc, argv, "jas:i:c:T:o:w:", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': o->json = true; break;
        case 'a': o->all = true; break;
        case 'T': token_file = optarg; break;
        case 'o':
            if (n_to == sizeof token_to / sizeof token_to[0]) return cli_usage(cmd);
            token_to[n_to++] = optarg;
            break;
        case 's':
        case 'i':
        case 'c':
        case 'w':
            if (!parse_i64(optarg, &v) || v <= 0 || v > 86400000) return cli_usage(cmd);
            if (ch == 's')
                o->sample_ms = (int)v;
            else if (ch == 'i')
                o->interval_ms = (int)v;
            else if (ch == 'w')
                o->timeout_ms = (int)v;
            else
                o->count = (long)v;
            break;
        default: return cli_usage(cmd);
        }
    }
    size_t n = (size_t)(argc - optind);
    if (n == 0) return cli_usage(cmd);
    static char token[512];
    char why[256];
    if (read_token(token_file, token, sizeof token, why, sizeof why) < 0) {
        fprintf(stderr, "corral %s: %s\n", cmd, why);
        return CLI_USAGE;
    }
    target *ts = calloc(n, sizeof *ts);
    if (!ts) return CLI_FAIL;
    for (size_t i = 0; i < n; i++) {
        ts[i].spec = argv[optind + (int)i];
        corral_url_redact(ts[i].spec, ts[i].shown, sizeof ts[i].shown);
        ts[i].token = "";
        ts[i].kind = target_kind(ts[i].spec);
        if (ts[i].kind < 0) {
            fprintf(stderr,
                    "corral %s: %s: not a target (http://host:port/metrics, redis:// or "
                    "redis+cluster://)\n",
                    cmd, ts[i].shown);
            free(ts);
            return CLI_USAGE;
        }
    }
    int ec = assign_token(ts, n, token, token_to, n_to, cmd);
    if (ec != CLI_OK) {
        free(ts);
        return ec;
    }
    *out = ts;
    *n_out = n;
    return CLI_OK;
}

int cli_stats(int argc, char **argv) {
    target *ts;
    size_t n;
    stats_opts o = { .sample_ms = 2000, .interval_ms = 1000, .timeout_ms = 5000, .count = 1 };
    int ec = stats_parse(argc, argv, "stats", &ts, &n, &o);
    if (ec != CLI_OK) return ec;
    bool json = o.json, all = o.all;
    stat_table fleet = { 0 };
    for (size_t i = 0; i < n; i++) {
        if (target_fetch(&ts[i], o.timeout_ms, o.sample_ms) < 0) {
            fprintf(stderr, "corral stats: %s: %s\n", ts[i].shown, ts[i].why);
            ec = CLI_FAIL;
        } else if (table_add(&fleet, &ts[i].t) < 0) {
            fprintf(stderr, "corral stats: out of memory\n");
            ec = CLI_FAIL;
        } else if (ts[i].partial) { /* shown, without the primaries that failed */
            fprintf(stderr, "corral stats: %s: %s\n", ts[i].shown, ts[i].why);
            ec = CLI_FAIL;
        }
    }
    table_sort(&fleet, SORT_REQUESTS);
    if (json) {
        printf("{\"targets\":[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{\"target\":", i ? "," : "");
            out_json_str(stdout, ts[i].shown, strlen(ts[i].shown));
            printf(",\"ok\":%s,\"error\":", ts[i].ok ? "true" : "false");
            if (ts[i].ok && !ts[i].partial)
                printf("null");
            else
                out_json_str(stdout, ts[i].why, strlen(ts[i].why));
            printf(",\"note\":");
            out_json_str(stdout, ts[i].note, strlen(ts[i].note));
            printf("}");
        }
        printf("],");
        table_json(stdout, &fleet, all);
        printf("}\n");
    } else {
        size_t ok = 0;
        for (size_t i = 0; i < n; i++)
            ok += ts[i].ok;
        if (n > 1) printf("fleet: %zu of %zu targets\n", ok, n);
        for (size_t i = 0; i < n; i++)
            if (ts[i].ok && ts[i].note[0]) printf("%s: %s\n", ts[i].shown, ts[i].note);
        if (ok) table_print(stdout, &fleet, all, false);
    }
    for (size_t i = 0; i < n; i++)
        table_free(&ts[i].t);
    table_free(&fleet);
    free(ts);
    return ec;
}
