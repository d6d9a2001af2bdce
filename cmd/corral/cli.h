/*
 * cli.h - the subcommands of the `corral` command-line tool. Each takes the arguments after
 * the subcommand name (argv[0] is the subcommand) and returns the process exit code.
 */
#ifndef CORRAL_CLI_H
#define CORRAL_CLI_H

#include "corral/corral.h"

int cli_demo(int argc, char **argv);
/* Parts of the demo: each prints its step and returns 0, or 1 on failure. */
int demo_herd(corral *c);
int demo_tags(corral *c);
int cli_key(int argc, char **argv);
int cli_fragment(int argc, char **argv);

#endif /* CORRAL_CLI_H */
