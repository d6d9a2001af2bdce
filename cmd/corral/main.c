/*
 * main.c - `corral`, the command-line tool: global options, `help COMMAND`, and dispatch to the
 * subcommands. Each command's synopsis and help text live in the table below, the one place
 * `corral help`, `corral COMMAND --help` and usage errors read them from.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis;
    const char *help; /* the lines after the synopsis in `corral help NAME` */
} command;

static const command commands[] = {
    { "get", cli_get, "get [--json] [--raw] [--version N] URL KEY",
      "Prints the value of KEY in the cache at URL (escaped unless --raw). Exit 1 on a miss.\n" },
    { "set", cli_set, "set [--ttl SECONDS] [--tag T...] [--binary] [--version N] URL KEY VALUE|-",
      "Stores VALUE (or stdin with -) under KEY; --ttl as Django's timeout (seconds, 250ms,\n"
      "none); --tag T (repeatable) writes the value with tags (corral bust --tag T drops it);\n"
      "--binary stores pickled bytes with serializer=django. Every data command takes --ns NS\n"
      "(a namespace) and --version N (Django's version=).\n" },
    { "del", cli_del, "del [--json] [--version N] URL KEY",
      "Removes KEY. Exit 1 when it was not there.\n" },
    { "ttl", cli_ttl, "ttl [--json] [--version N] URL KEY",
      "Prints the seconds KEY has left in the store (\"none\": no expiry). Exit 1 when absent.\n" },
    { "incr", cli_incr, "incr [--json] [--version N] URL KEY [DELTA]",
      "Adds DELTA (default 1, negative decrements) to an integer value and prints the result.\n"
      "Exit 1 when KEY is absent.\n" },
    { "touch", cli_touch, "touch --ttl SECONDS [--json] [--version N] URL KEY",
      "Sets a new TTL on KEY. Exit 1 when absent.\n" },
    { "bust", cli_bust,
      "bust URL (--tag T | --ns N | --key K | --prefix P | --event NAME [field=value...]\n"
      "       [--rule KIND=TEMPLATE...] [--rules FILE]) [--json]",
      "Invalidates as the library does: --tag corral_tag_bust, --ns corral_ns_bump, --key\n"
      "corral_delete, --prefix corral_clear_prefix under key_prefix P (SCAN + UNLINK on Redis,\n"
      "on every primary of a redis+cluster://; the CLI has no clear, which on a cluster is\n"
      "FLUSHDB on every primary: every application's keys), --event corral_emit with the\n"
      "rules given by --rule (key=, tag= or ns= a template such as product:{id}) and --rules\n"
      "FILE (lines \"EVENT KIND TEMPLATE\"; # comments). Each option may repeat; all are done\n"
      "in order.\n" },
    { "purge", cli_purge,
      "purge ADMIN_URL (--url U | --key K | --prefix P) [--token-file F] [--json]",
      "Purges from a corral-proxy through its admin listener: one URL (every variant), every\n"
      "object with Surrogate-Key K, or every object under path P. The admin token comes from\n"
      "--token-file or $CORRAL_ADMIN_TOKEN, never from the command line.\n" },
    { "stats", cli_stats,
      "stats [--json] [--all] [--sample-ms MS] [--timeout MS] [--token-file F]\n"
      "       [--token-to HOST:PORT...] TARGET...",
      "One table of hit rate per prefix or route, summed over every TARGET: a Prometheus\n"
      "endpoint (http://host:port/metrics of corral-proxy's admin, or any program serving\n"
      "corral_metrics_write) or a redis:// URL (items and bytes per prefix sampled with SCAN and\n"
      "MEMORY USAGE for at most --sample-ms, default 2000), or a redis+cluster:// URL (every\n"
      "primary sampled; one that fails is named, the others shown). Rows under 90% are flagged;\n"
      "--all adds corral's internal prefixes; --timeout bounds each target's answer (default\n"
      "5000).\n"
      "The admin token (--token-file or $CORRAL_ADMIN_TOKEN) goes to the http targets at the\n"
      "HOST:PORT each --token-to names, or without --token-to to the only http target; never\n"
      "to the others. Exit 3 when a target failed (the others are still shown).\n" },
    { "top", cli_top,
      "top [--interval MS] [--count N] [--all] [--timeout MS] [--token-file F]\n"
      "     [--token-to HOST:PORT...] TARGET...",
      "A live view of the same table, refreshed every interval (default 1000 ms) with rates\n"
      "over the last interval. Keys: r requests, h hit rate, m misses, n name (sort), q quit.\n"
      "When stdout is not a terminal, prints the table every interval (--count N tables).\n"
      "The admin token goes where stats sends it.\n" },
    { "key", cli_key, "key [--json] [URL] KEY",
      "Prints the physical key KEY maps to under URL's key_prefix and version.\n" },
    { "fragment", cli_fragment, "fragment [--json] NAME [VARY...]",
      "Prints Django's template fragment key.\n" },
    { "demo", cli_demo, "demo [URL]", "Runs the guide's scenarios on the memory store.\n" },
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const command *find(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: corral [--version] [--help] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  corral %s\n", commands[i].synopsis);
    fprintf(f, "\nURL is a cache URL (redis://host:port/db?key_prefix=...&version=...,\n"
               "redis+cluster://host:port,host:port/?key_prefix=..., mem://...).\n"
               "`corral help COMMAND` tells more; `man corral` tells all.\n"
               "Exit: 0 ok, 1 not found (miss), 2 usage, 3 store or network failure.\n");
}

int cli_usage(const char *cmd) {
    const command *c = find(cmd);
    if (c) fprintf(stderr, "usage: corral %s\n", c->synopsis);
    return CLI_USAGE;
}

static int help(const char *name) {
    const command *c = find(name);
    if (!c) {
        fprintf(stderr, "corral help: no command '%s'\n", name);
        return CLI_USAGE;
    }
    printf("usage: corral %s\n\n%s", c->synopsis, c->help);
    return CLI_OK;
}

int main(int argc, char **argv) {
    static const struct option opts[] = { { "version", no_argument, NULL, 'V' },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    /* '+': stop at the command name; its options are the command's. */
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'V': printf("corral %s\n", corral_version()); return CLI_OK;
        case 'h': usage(stdout); return CLI_OK;
        default:
            fprintf(stderr, "corral: unknown option '%s'\n\n", argv[optind - 1]);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[optind];
    int cargc = argc - optind;
    char **cargv = argv + optind;
    if (strcmp(name, "version") == 0) {
        printf("corral %s\n", corral_version());
        return CLI_OK;
    }
    if (strcmp(name, "help") == 0) {
        if (cargc == 1) {
            usage(stdout);
            return CLI_OK;
        }
        return help(cargv[1]);
    }
    const command *c = find(name);
    if (!c) {
        fprintf(stderr, "corral: unknown command '%s'\n\n", name);
        usage(stderr);
        return CLI_USAGE;
    }
    if (cargc == 2 && (strcmp(cargv[1], "--help") == 0 || strcmp(cargv[1], "-h") == 0))
        return help(name);
    optind = 0; /* glibc: a full reset, so the command parses its own argv from the start */
    opterr = 1;
    return c->run(cargc, cargv);
}
