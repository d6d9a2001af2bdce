/*
 * fuzz_config.c - libFuzzer target for corral-proxy's configuration: the INI reader and the
 * flags (cmd/proxy/args.c) and the keys and routes they set (cmd/proxy/config.c).
 * fuzz-extra-sources: cmd/proxy/config.c cmd/proxy/args.c
 *
 * Input: INI text, then optionally a NUL byte and command-line arguments separated by NUL
 * bytes (at most 24), given after "corral-proxy --origin http://127.0.0.1:1" so that most
 * inputs get past the required origin (a flag or the file may replace it).
 *
 * Invariants checked, beyond "no crash, no leak, no UB": the INI reader reports every key on a
 * line that exists, with a non-empty section and key and no surrounding spaces; a refusal has
 * a message; an accepted configuration has an origin, 1 to PX_MAX_ROUTES routes with distinct
 * prefixes starting with '/', route 0 "default" at "/", and each route's prefix matches that
 * route; parsing the same input twice gives the same result and the same message.
 */
#include "proxy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

#define MAX_ARGS 24

typedef struct ini_tally {
    int lines; /* lines in the text (an upper bound for any event's line) */
    size_t events;
} ini_tally;

static bool on_event(void *user, int line, const char *section, const char *key, const char *value,
                     px_error *err) {
    (void)err;
    ini_tally *t = user;
    CHECK(line >= 1 && line <= t->lines);
    CHECK(section[0] != '\0' && section[0] != ' ' && section[strlen(section) - 1] != ' ');
    if (key) {
        size_t kn = strlen(key), vn = strlen(value);
        CHECK(kn > 0 && key[0] != ' ' && key[kn - 1] != ' ');
        CHECK(vn == 0 || (value[0] != ' ' && value[vn - 1] != ' '));
    } else {
        CHECK(value == NULL);
    }
    t->events++;
    return true;
}

static void check_config(const px_config *cfg) {
    CHECK(cfg->origin_host[0] != '\0');
    CHECK(cfg->n_routes >= 1 && cfg->n_routes <= PX_MAX_ROUTES);
    CHECK(!strcmp(cfg->routes[0].name, "default") && !strcmp(cfg->routes[0].prefix, "/"));
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const px_route *r = &cfg->routes[i];
        CHECK(r->prefix[0] == '/' && r->prefix_len == strlen(r->prefix));
        CHECK(px_route_match(cfg, r->prefix, r->prefix_len) == r);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(cfg->routes[j].prefix, r->prefix) != 0);
    }
}

/* Parses the input once; returns whether it was accepted, with the message in `err`. */
static bool parse_once(const char *text, size_t len, int argc, char **argv, px_error *err) {
    static px_flags f; /* static: it is large */
    if (!px_flags_parse(&f, argc, argv, err)) return false;
    px_config *cfg = px_config_parse("fuzz.ini", text, len, &f, err);
    if (!cfg) return false;
    check_config(cfg);
    px_config_unref(cfg);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    const char *nul = memchr(data, '\0', size);
    size_t len = nul ? (size_t)(nul - text) : size;

    ini_tally t = { 1, 0 };
    for (size_t i = 0; i < len; i++)
        t.lines += text[i] == '\n';
    px_error err;
    (void)px_ini_parse("fuzz.ini", text, len, on_event, &t, &err);

    /* The arguments: NUL-separated strings after the text, copied so each ends in a NUL. */
    char *args = malloc(size - len + 1);
    if (!args) return 0;
    size_t alen = nul ? size - len - 1 : 0;
    if (alen) memcpy(args, nul + 1, alen);
    args[alen] = '\0';
    static char prog[] = "corral-proxy", origin_flag[] = "--origin",
                origin[] = "http://127.0.0.1:1";
    char *argv[MAX_ARGS + 4] = { prog, origin_flag, origin };
    int argc = 3;
    for (size_t i = 0; nul && i <= alen && argc < MAX_ARGS + 3;) {
        argv[argc++] = args + i;
        i += strlen(args + i) + 1;
    }
    argv[argc] = NULL;

    /* getopt_long permutes argv: each parse gets its own copy of the pointers. */
    char *argv2[MAX_ARGS + 4];
    memcpy(argv2, argv, sizeof argv);
    px_error e1, e2;
    bool ok1 = parse_once(text, len, argc, argv, &e1);
    bool ok2 = parse_once(text, len, argc, argv2, &e2);
    CHECK(ok1 == ok2);
    if (!ok1) {
        CHECK(e1.msg[0] != '\0' && strnlen(e1.msg, sizeof e1.msg) < sizeof e1.msg);
        CHECK(strcmp(e1.msg, e2.msg) == 0);
    }
    free(args);
    return 0;
}
