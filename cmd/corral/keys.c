/*
 * keys.c - `corral key` and `corral fragment`: print the keys corral (and Django) would use,
 * to find an entry with redis-cli or to check a template's fragment key.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cli_key(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: corral key [URL] KEY\n");
        return 2;
    }
    const char *url = argc == 3 ? argv[1] : NULL;
    const char *key = argv[argc - 1];
    corral *c;
    corral_error err;
    if (corral_open(&c, url, &err) != CORRAL_OK) {
        fprintf(stderr, "corral key: %s\n", err.msg);
        return CLI_USAGE;
    }
    char out[4200];
    size_t len;
    int rc = corral_make_key(c, key, strlen(key), NULL, out, sizeof out, &len);
    corral_close(c);
    if (rc != CORRAL_OK) {
        fprintf(stderr, "corral key: %s\n", corral_strerror(rc));
        return CLI_USAGE;
    }
    printf("%s\n", out);
    return 0;
}

int cli_fragment(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: corral fragment NAME [VARY ...]\n");
        return 2;
    }
    corral_buf vary[64];
    size_t n = 0;
    for (int i = 2; i < argc; i++) {
        if (n == sizeof vary / sizeof vary[0]) {
            fprintf(stderr, "corral fragment: at most 64 vary values\n");
            return 2;
        }
        vary[n].data = argv[i];
        vary[n].len = strlen(argv[i]);
        n++;
    }
    char out[512];
    size_t len;
    int rc = corral_fragment_key(argv[1], strlen(argv[1]), vary, n, out, sizeof out, &len);
    if (rc != CORRAL_OK) {
        fprintf(stderr, "corral fragment: %s\n", corral_strerror(rc));
        return CLI_USAGE;
    }
    printf("%s\n", out);
    return 0;
}
