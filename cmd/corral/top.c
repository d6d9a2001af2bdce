#include "cli.h"
int cli_top(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return CLI_USAGE;
}
