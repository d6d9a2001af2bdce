/*
 * cli.h - the subcommands of the `corral` command-line tool. Each takes the arguments after
 * the subcommand name (argv[0] is the subcommand) and returns the process exit code, one of
 * the CLI_* codes below (the man page, docs/corral.1, lists them too).
 *
 * Options are parsed with getopt_long (GNU permutation: options may follow the operands);
 * main.c resets getopt before each command. Output goes to stdout, one error line to stderr,
 * prefixed "corral <command>: ".
 */
#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H

#include "corral/corral.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes. */
enum {
    CLI_OK = 0,    /* done */
    CLI_MISS = 1,  /* the key (or what the command looked for) is not there */
    CLI_USAGE = 2, /* bad arguments, or a URL or option the library refuses */
    CLI_FAIL = 3   /* the store, a target or the network failed */
};

/* ---- Commands ---- */
int cli_demo(int argc, char **argv);
/* Parts of the demo: each prints its step and returns 0, or 1 after printing why it failed (one
 * line on stderr); every thread a part starts has ended when it returns. */
int demo_herd(corral *c);
int demo_tags(corral *c);
int cli_key(int argc, char **argv);
int cli_fragment(int argc, char **argv);
int cli_get(int argc, char **argv);
int cli_set(int argc, char **argv);
int cli_del(int argc, char **argv);
int cli_ttl(int argc, char **argv);
int cli_incr(int argc, char **argv);
int cli_touch(int argc, char **argv);
int cli_bust(int argc, char **argv);
int cli_purge(int argc, char **argv);
int cli_stats(int argc, char **argv);
int cli_top(int argc, char **argv);

/* Prints the usage of `cmd` (its synopsis line) to stderr and returns CLI_USAGE. */
int cli_usage(const char *cmd);

/* ---- Output (out.c) ---- */

/* Writes `len` bytes for a terminal: printable ASCII and valid UTF-8 as they are, backslash as
 * "\\", other bytes as C escapes (\n, \t, \r, \xNN), so any value prints on one line. */
void out_escaped(FILE *f, const void *data, size_t len);
/* Writes a JSON string (with quotes): control bytes as \uXXXX, and each byte of invalid UTF-8 as
 * \u00NN (so such a string reads back as its Latin-1 code points; out_is_utf8 tells which). */
void out_json_str(FILE *f, const void *data, size_t len);
bool out_is_utf8(const void *data, size_t len);
/* A double as JSON: a number, or null when it is not finite. */
void out_json_num(FILE *f, double v);
/* What a failed call on `c` returned (`rc`; CORRAL_MISS: a read the store failed) and, when the
 * store knows it (corral_store_status), why: "store failure: 127.0.0.1:6379: connection refused
 * (refused)". Returns `buf` (capacity `cap`) or a static string. */
const char *out_store_why(corral *c, int rc, char *buf, size_t cap);

/* ---- Parsing helpers (out.c) ---- */

/* Parses seconds ("300", "0.5", "250ms", "none") into ms (CORRAL_TTL_FOREVER for none).
 * Returns false when malformed or negative. */
bool parse_ttl(const char *s, int64_t *ms);
/* Parses a decimal int64. */
bool parse_i64(const char *s, int64_t *out);

#endif /* CORRAL_CLI_H */
