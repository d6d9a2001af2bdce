/*
 * fuzz_prom.c - libFuzzer target for the CLI's Prometheus text parser (cmd/corral/prom.c), which
 * reads whatever a `corral stats` target answers.
 * fuzz-extra-sources: cmd/corral/prom.c
 *
 * Invariants checked, beyond "no crash, no leak, no UB": every sample handed out has a metric
 * name of [a-zA-Z0-9_:] that does not start with a digit, at most PROM_MAX_LABELS labels with
 * NUL-terminated names and values inside their buffers; a parse that fails says why; parsing
 * the same text twice gives the same samples (count and sum of finite values) and the same
 * result.
 */
#include "../cmd/corral/prom_parse.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)           \
    do {                   \
        if (!(x)) abort(); \
    } while (0)

typedef struct tally {
    size_t n;
    double sum;
} tally;

static int on_sample(void *arg, const prom_sample *s) {
    tally *t = arg;
    size_t len = strnlen(s->name, PROM_NAME_MAX);
    CHECK(len > 0 && len < PROM_NAME_MAX);
    CHECK(!(s->name[0] >= '0' && s->name[0] <= '9'));
    for (size_t i = 0; i < len; i++) {
        char c = s->name[i];
        CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':');
    }
    CHECK(s->n_labels <= PROM_MAX_LABELS);
    for (size_t i = 0; i < s->n_labels; i++) {
        CHECK(strnlen(s->labels[i].name, PROM_NAME_MAX) < PROM_NAME_MAX);
        CHECK(strnlen(s->labels[i].value, PROM_VALUE_MAX) < PROM_VALUE_MAX);
        CHECK(prom_label_get(s, s->labels[i].name) != NULL);
    }
    t->n++;
    if (isfinite(s->value)) t->sum += s->value;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tally a = { 0 }, b = { 0 };
    char why1[128], why2[128];
    why1[0] = why2[0] = '\0';
    int r1 = prom_parse((const char *)data, size, on_sample, &a, why1, sizeof why1);
    int r2 = prom_parse((const char *)data, size, on_sample, &b, why2, sizeof why2);
    CHECK(r1 == 0 || r1 == -1);
    CHECK(r1 == r2 && a.n == b.n);
    CHECK(a.sum == b.sum || (isnan(a.sum) && isnan(b.sum)));
    if (r1 < 0) CHECK(why1[0] != '\0' && strcmp(why1, why2) == 0);
    return 0;
}
