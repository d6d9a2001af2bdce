/*
 * main.c - `corral`, the command-line tool: dispatches to the subcommands.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: corral <command> [args]\n\n"
               "commands:\n"
               "  demo [URL]                       the guide's scenarios on the memory store\n"
               "  key [URL] KEY                    the physical key KEY maps to under URL's\n"
               "                                   key_prefix and version\n"
               "  fragment NAME [VARY ...]         Django's template fragment key\n"
               "  version                          print the library version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "demo") == 0) return cli_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "key") == 0) return cli_key(argc - 1, argv + 1);
    if (strcmp(cmd, "fragment") == 0) return cli_fragment(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0) {
        printf("corral %s\n", corral_version());
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "corral: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
