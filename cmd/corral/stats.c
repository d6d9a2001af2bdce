#include "cli.h"
int cli_stats(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return CLI_USAGE;
}
