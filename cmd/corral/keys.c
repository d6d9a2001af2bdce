/*
 * keys.c - `corral key` and `corral fragment`: print the keys corral (and Django) would use,
 * to find an entry with redis-cli or to check a template's fragment key.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

/* Parses --json, which comes before the operands ('+': a vary value such as "-1" stays an
 * operand). Returns CLI_OK, or CLI_USAGE. Operands start at optind. */
static int parse_json_flag(int argc, char **argv, const char *cmd, bool *json) {
    static const struct option opts[] = { { "json", no_argument, NULL, 'j' },
                                          { NULL, 0, NULL, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "+j", opts, NULL)) != -1) {
        if (ch != 'j') return cli_usage(cmd);
        *json = true;
    }
    return CLI_OK;
}

static void print_key(bool json, const char *what, const char *key, size_t len) {
    if (json) {
        printf("{\"%s\":", what);
        out_json_str(stdout, key, len);
        printf("}\n");
    } else {
        printf("%s\n", key);
    }
}

int cli_key(int argc, char **argv) {
    bool json = false;
    if (parse_json_flag(argc, argv, "key", &json) != CLI_OK) return CLI_USAGE;
    int n = argc - optind;
    if (n != 1 && n != 2) return cli_usage("key");
    const char *url = n == 2 ? argv[optind] : NULL;
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
    print_key(json, "physical_key", out, len);
    return CLI_OK;
}

int cli_fragment(int argc, char **argv) {
    bool json = false;
    if (parse_json_flag(argc, argv, "fragment", &json) != CLI_OK) return CLI_USAGE;
    if (argc - optind < 1) return cli_usage("fragment");
    const char *name = argv[optind];
    corral_buf vary[64];
    size_t n = 0;
    for (int i = optind + 1; i < argc; i++) {
        if (n == sizeof vary / sizeof vary[0]) {
            fprintf(stderr, "corral fragment: at most 64 vary values\n");
            return CLI_USAGE;
        }
        vary[n].data = argv[i];
        vary[n].len = strlen(argv[i]);
        n++;
    }
    char out[512];
    size_t len;
    int rc = corral_fragment_key(name, strlen(name), vary, n, out, sizeof out, &len);
    if (rc != CORRAL_OK) {
        fprintf(stderr, "corral fragment: %s\n", corral_strerror(rc));
        return CLI_USAGE;
    }
    print_key(json, "key", out, len);
    return CLI_OK;
}
