/*
 * bust.c - invalidation from the shell.
 *
 * `corral bust URL ...` calls the library's own invalidation on the cache at URL, so it does
 * exactly what an application's call does: --tag corral_tag_bust, --ns corral_ns_bump, --key
 * corral_delete, --prefix corral_clear_prefix (on a handle whose key_prefix is P), --event
 * corral_emit. Rules of events live in the processes that registered them (corral_on), not in
 * the store, so --event needs the rules on the command line (--rule) or in a file (--rules);
 * they are registered on the CLI's handle and then emitted, and on a shared store the bust
 * reaches every process.
 *
 * `corral purge ADMIN_URL ...` asks a corral-proxy's admin listener (cmd/proxy/admin.c): PURGE
 * of one URL, POST /purge/key/<key>, POST /purge/prefix/<path>. The bearer token comes from
 * --token-file or $CORRAL_ADMIN_TOKEN: never argv, which every user of the machine can read.
 */
#include "cli.h"
#include "net.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ACTIONS 64
#define MAX_RULES   64

typedef struct action {
    char kind; /* 't' tag, 'n' ns, 'k' key, 'p' prefix, 'e' event */
    const char *arg;
} action;

typedef struct rule_spec {
    char event[128];
    char kind[8]; /* key, tag, ns */
    char tpl[4200];
} rule_spec;

typedef struct bust_cmd {
    action actions[MAX_ACTIONS];
    size_t n_actions;
    rule_spec *rules; /* MAX_RULES */
    size_t n_rules;
    const char *event; /* the --event, which --rule applies to */
    bool json;
    corral_call call;
} bust_cmd;

static int add_rule(bust_cmd *b, const char *event, const char *kind, size_t kind_len,
                    const char *tpl) {
    if (b->n_rules == MAX_RULES) {
        fprintf(stderr, "corral bust: at most %d rules\n", MAX_RULES);
        return CLI_USAGE;
    }
    rule_spec *r = &b->rules[b->n_rules];
    bool kind_ok =
        (kind_len == 3 && (memcmp(kind, "key", 3) == 0 || memcmp(kind, "tag", 3) == 0)) ||
        (kind_len == 2 && memcmp(kind, "ns", 2) == 0);
    if (!kind_ok || strlen(event) >= sizeof r->event || strlen(tpl) >= sizeof r->tpl || !*tpl) {
        fprintf(stderr, "corral bust: bad rule '%.*s' for '%s' (key=, tag= or ns= a template)\n",
                (int)kind_len, kind, event);
        return CLI_USAGE;
    }
    strcpy(r->event, event);
    memcpy(r->kind, kind, kind_len);
    r->kind[kind_len] = '\0';
    strcpy(r->tpl, tpl);
    b->n_rules++;
    return CLI_OK;
}

/* Lines "EVENT KIND TEMPLATE"; blank lines and # comments skipped. */
static int read_rules(bust_cmd *b, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "corral bust: cannot read rules %s\n", path);
        return CLI_USAGE;
    }
    char line[4608];
    int ec = CLI_OK, lineno = 0;
    while (ec == CLI_OK && fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line + strspn(line, " \t");
        if (!*p || *p == '#') continue;
        char *event = strtok(p, " \t");
        char *kind = strtok(NULL, " \t");
        char *tpl = strtok(NULL, " \t");
        if (!event || !kind || !tpl || strtok(NULL, " \t")) {
            fprintf(stderr, "corral bust: %s:%d: want \"EVENT KIND TEMPLATE\"\n", path, lineno);
            ec = CLI_USAGE;
            break;
        }
        ec = add_rule(b, event, kind, strlen(kind), tpl);
    }
    fclose(f);
    return ec;
}

static int register_rules(corral *c, const bust_cmd *b) {
    for (size_t i = 0; i < b->n_rules; i++) {
        const rule_spec *r = &b->rules[i];
        const char *one[1] = { r->tpl };
        corral_rule rule = { 0 };
        if (r->kind[0] == 'k')
            rule.keys = one, rule.n_keys = 1;
        else if (r->kind[0] == 't')
            rule.tags = one, rule.n_tags = 1;
        else
            rule.namespaces = one, rule.n_namespaces = 1;
        int rc = corral_on(c, r->event, &rule);
        if (rc != CORRAL_OK) {
            fprintf(stderr, "corral bust: rule %s %s %s: %s\n", r->event, r->kind, r->tpl,
                    corral_strerror(rc));
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

/* Opens a handle on `url` with key_prefix `prefix`. */
static int open_with_prefix(const char *url, const char *prefix, corral **out) {
    corral_options o;
    corral_options_init(&o);
    size_t cap = strlen(url) + 1;
    char *buf = malloc(cap);
    corral_error err = { 0 };
    int rc = buf ? corral_options_parse_url(&o, url, buf, cap, &err) : CORRAL_ENOMEM;
    if (rc == CORRAL_OK) {
        o.key_prefix = prefix;
        rc = corral_open_opts(out, &o, &err);
    }
    free(buf);
    char shown[1024];
    corral_url_redact(url, shown, sizeof shown);
    if (rc != CORRAL_OK) fprintf(stderr, "corral bust: %s: %s\n", shown, err.msg);
    return rc;
}

/* Runs one action; prints its line. Returns a corral code. */
static int do_action(corral *c, const char *url, const action *a, corral_field *fields,
                     size_t n_fields, bool json, bool first) {
    int rc;
    size_t busted = 0;
    const char *kind = "tag", *what = "busted", *why = NULL;
    char phys[4200] = "", buf[512];
    switch (a->kind) {
    case 't': rc = corral_tag_bust(c, a->arg); break;
    case 'n':
        kind = "ns", what = "bumped";
        rc = corral_ns_bump(c, a->arg);
        break;
    case 'k': {
        kind = "key";
        size_t len;
        const corral_call call = CORRAL_CALL_INIT;
        corral_make_key(c, a->arg, strlen(a->arg), &call, phys, sizeof phys, &len);
        rc = corral_delete(c, a->arg, strlen(a->arg), NULL);
        what = rc == CORRAL_MISS ? "was not there" : "deleted";
        if (rc == CORRAL_MISS) rc = CORRAL_OK;
        break;
    }
    case 'p': {
        kind = "prefix", what = "cleared";
        corral *pc;
        rc = open_with_prefix(url, a->arg, &pc);
        if (rc != CORRAL_OK) return rc;
        rc = corral_clear_prefix(pc);
        /* The reason is in the handle that failed, not in `c`. On a cluster the primaries
         * that answered are cleared even when one fails. */
        if (rc < 0) why = out_store_why(pc, rc, buf, sizeof buf);
        corral_close(pc);
        break;
    }
    default:
        kind = "event", what = "emitted";
        rc = corral_emit(c, a->arg, fields, n_fields, &busted);
        break;
    }
    if (json) {
        printf("%s{\"kind\":\"%s\",\"name\":", first ? "" : ",", kind);
        out_json_str(stdout, a->arg, strlen(a->arg));
        if (*phys) {
            printf(",\"physical_key\":");
            out_json_str(stdout, phys, strlen(phys));
        }
        printf(",\"ok\":%s,\"result\":\"%s\"", rc < 0 ? "false" : "true",
               rc < 0 ? corral_strerror(rc) : what);
        if (a->kind == 'e') printf(",\"busted\":%zu", busted);
        printf("}");
    } else if (rc >= 0) {
        printf("%-6s ", kind);
        out_escaped(stdout, a->arg, strlen(a->arg));
        if (*phys) printf(" (%s)", phys);
        if (a->kind == 'e')
            printf(": %zu busted\n", busted);
        else
            printf(": %s\n", what);
    }
    if (rc < 0)
        fprintf(stderr, "corral bust: %s %s: %s\n", kind, a->arg,
                why ? why : out_store_why(c, rc, buf, sizeof buf));
    return rc;
}

static int parse_bust(bust_cmd *b, int argc, char **argv) {
    static const struct option opts[] = { { "tag", required_argument, NULL, 't' },
                                          { "ns", required_argument, NULL, 'n' },
                                          { "key", required_argument, NULL, 'k' },
                                          { "prefix", required_argument, NULL, 'p' },
                                          { "event", required_argument, NULL, 'e' },
                                          { "rule", required_argument, NULL, 'r' },
                                          { "rules", required_argument, NULL, 'R' },
                                          { "json", no_argument, NULL, 'j' },
                                          { NULL, 0, NULL, 0 } };
    const char *rule_args[MAX_RULES];
    size_t n_rule_args = 0;
    int ch, ec = CLI_OK;
    while (ec == CLI_OK && (ch = getopt_long(argc, argv, "t:n:k:p:e:r:R:j", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': b->json = true; break;
        case 'R': ec = read_rules(b, optarg); break;
        case 'r':
            if (n_rule_args == MAX_RULES) {
                fprintf(stderr, "corral bust: at most %d rules\n", MAX_RULES);
                return CLI_USAGE;
            }
            rule_args[n_rule_args++] = optarg;
            break;
        case 't':
        case 'n':
        case 'k':
        case 'p':
        case 'e':
            if (ch == 'e' && b->event) {
                fprintf(stderr, "corral bust: one --event at a time\n");
                return CLI_USAGE;
            }
            if (ch == 'e') b->event = optarg;
            if (b->n_actions == MAX_ACTIONS || !*optarg) return cli_usage("bust");
            b->actions[b->n_actions++] = (action){ .kind = (char)ch, .arg = optarg };
            break;
        default: return cli_usage("bust");
        }
    }
    if (ec != CLI_OK) return ec;
    if (n_rule_args && !b->event) {
        fprintf(stderr, "corral bust: --rule applies to an --event\n");
        return CLI_USAGE;
    }
    for (size_t i = 0; i < n_rule_args && ec == CLI_OK; i++) {
        const char *eq = strchr(rule_args[i], '=');
        if (!eq) eq = rule_args[i] + strlen(rule_args[i]);
        ec = add_rule(b, b->event, rule_args[i], (size_t)(eq - rule_args[i]), *eq ? eq + 1 : "");
    }
    if (ec != CLI_OK) return ec;
    if (optind >= argc || b->n_actions == 0) return cli_usage("bust");
    if (!b->event && argc - optind > 1) {
        fprintf(stderr, "corral bust: field=value operands go with --event\n");
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_bust(int argc, char **argv) {
    bust_cmd b = { .call = CORRAL_CALL_INIT };
    b.rules = calloc(MAX_RULES, sizeof *b.rules);
    corral_field *fields = calloc((size_t)argc, sizeof *fields);
    corral *c = NULL;
    int ec = b.rules && fields ? parse_bust(&b, argc, argv) : CLI_FAIL;
    if (ec != CLI_OK) goto done;
    const char *url = argv[optind];
    char shown[1024]; /* url, credentials hidden, for what is printed */
    corral_url_redact(url, shown, sizeof shown);
    size_t n_fields = 0;
    for (int i = optind + 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            fprintf(stderr, "corral bust: '%s' is not field=value\n", argv[i]);
            ec = CLI_USAGE;
            goto done;
        }
        *eq = '\0';
        fields[n_fields++] = (corral_field){ argv[i], eq + 1 };
    }
    corral_error err;
    int rc = corral_open(&c, url, &err);
    if (rc != CORRAL_OK) {
        fprintf(stderr, "corral bust: %s: %s\n", shown, err.msg);
        ec = rc == CORRAL_EBADURL || rc == CORRAL_EINVAL ? CLI_USAGE : CLI_FAIL;
        goto done;
    }
    if (strncmp(url, "redis", 5) == 0) {
        char why[256];
        redisContext *probe = cli_redis_connect(url, 0, why, sizeof why);
        if (!probe) {
            fprintf(stderr, "corral bust: %s: %s\n", shown, why);
            ec = CLI_FAIL;
            goto done;
        }
        redisFree(probe);
    }
    if ((ec = register_rules(c, &b)) != CLI_OK) goto done;
    if (b.json) {
        printf("{\"url\":");
        out_json_str(stdout, shown, strlen(shown));
        printf(",\"actions\":[");
    }
    for (size_t i = 0; i < b.n_actions; i++) {
        rc = do_action(c, url, &b.actions[i], fields, n_fields, b.json, i == 0);
        if (rc < 0)
            ec = rc == CORRAL_EINVAL || rc == CORRAL_EBADKEY || rc == CORRAL_EBADURL ? CLI_USAGE
                                                                                     : CLI_FAIL;
    }
    if (b.json) printf("]}\n");
done:
    corral_close(c);
    free(fields);
    free(b.rules);
    return ec;
}

/* ---- purge ---- */

/* Percent-encodes `s` into out for a path segment (keeping '/' when keep_slash). */
static bool pct_encode(const char *s, bool keep_slash, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     strchr("-._~", c) || (keep_slash && c == '/');
        if (n + 4 > cap) return false;
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
    return true;
}

int cli_purge(int argc, char **argv) {
    static const struct option opts[] = { { "url", required_argument, NULL, 'u' },
                                          { "key", required_argument, NULL, 'k' },
                                          { "prefix", required_argument, NULL, 'p' },
                                          { "json", no_argument, NULL, 'j' },
                                          { "token-file", required_argument, NULL, 'T' },
                                          { "timeout", required_argument, NULL, 'w' },
                                          { NULL, 0, NULL, 0 } };
    const char *url = NULL, *key = NULL, *prefix = NULL, *token_file = NULL;
    bool json = false;
    int64_t timeout_ms = 5000;
    int ch;
    while ((ch = getopt_long(argc, argv, "u:k:p:jT:w:", opts, NULL)) != -1) {
        switch (ch) {
        case 'u': url = optarg; break;
        case 'k': key = optarg; break;
        case 'p': prefix = optarg; break;
        case 'j': json = true; break;
        case 'T': token_file = optarg; break;
        case 'w':
            if (!parse_i64(optarg, &timeout_ms) || timeout_ms <= 0 || timeout_ms > 3600000)
                return cli_usage("purge");
            break;
        default: return cli_usage("purge");
        }
    }
    if (argc - optind != 1 || (!!url + !!key + !!prefix) != 1) return cli_usage("purge");
    const char *admin = argv[optind];
    http_url u;
    char why[256], token[512], target[6144];
    if (http_url_parse(admin, &u, why, sizeof why) < 0) {
        fprintf(stderr, "corral purge: %s: %s\n", admin, why);
        return CLI_USAGE;
    }
    if (read_token(token_file, token, sizeof token, why, sizeof why) < 0) {
        fprintf(stderr, "corral purge: %s\n", why);
        return CLI_USAGE;
    }
    const char *method = "POST", *what = url ? url : key ? key : prefix;
    if (url) {
        method = "PURGE";
        if (strncmp(url, "http://", 7) != 0 || strlen(url) >= sizeof target ||
            strpbrk(url, " \r\n")) {
            fprintf(stderr, "corral purge: --url wants an absolute http:// URL\n");
            return CLI_USAGE;
        }
        strcpy(target, url);
    } else if (key) {
        strcpy(target, "/purge/key/");
        if (!pct_encode(key, false, target + 11, sizeof target - 11)) return cli_usage("purge");
    } else {
        strcpy(target, "/purge/prefix/");
        if (!pct_encode(prefix + (prefix[0] == '/'), true, target + 14, sizeof target - 14))
            return cli_usage("purge");
    }
    http_response r;
    if (http_request(&u, method, target, token, (int)timeout_ms, &r, why, sizeof why) < 0) {
        fprintf(stderr, "corral purge: %s: %s\n", admin, why);
        return CLI_FAIL;
    }
    /* The admin answers "purged N" (a URL: its record, 0 or 1; a key: objects; a prefix: URLs),
     * or "purged at least N"; only a URL purge that found nothing is a miss. */
    long purged = -1;
    if (r.status == 200 && strncmp(r.body, "purged ", 7) == 0) {
        const char *n = r.body + 7;
        if (strncmp(n, "at least ", 9) == 0) n += 9;
        if (*n >= '0' && *n <= '9') purged = strtol(n, NULL, 10);
    }
    int ec = r.status == 200   ? (url && purged == 0 ? CLI_MISS : CLI_OK)
             : r.status == 400 ? CLI_USAGE
                               : CLI_FAIL;
    r.body[strcspn(r.body, "\r\n")] = '\0';
    if (r.status != 200) {
        fprintf(stderr, "corral purge: %s: HTTP %u %s: %s\n", admin, r.status, r.reason, r.body);
    } else if (json) {
        printf("{\"admin\":");
        out_json_str(stdout, admin, strlen(admin));
        printf(",\"kind\":\"%s\",\"name\":", url ? "url" : key ? "key" : "prefix");
        out_json_str(stdout, what, strlen(what));
        printf(",\"purged\":");
        if (purged >= 0)
            printf("%ld}\n", purged);
        else
            printf("null}\n");
    } else {
        printf("%s\n", r.body);
    }
    http_response_free(&r);
    return ec;
}
