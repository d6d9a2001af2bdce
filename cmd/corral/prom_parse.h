/*
 * prom_parse.h - a parser of the Prometheus text exposition format (version 0.0.4), the text every
 * corral process serves (corral_metrics_write, corral-proxy's /metrics), for `corral stats` and
 * `corral top`.
 *
 * Text from a target is outside input: the parser is strict about the sample syntax, bounded in
 * what it keeps, and fuzzed (fuzz/fuzz_prom.c). It reads
 *
 *     # HELP name text          # TYPE name counter      (comments: skipped)
 *     name{label="value",...} value [timestamp]
 *
 * metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*, label values with
 * the escapes \\ \" \n, values as Go's ParseFloat reads them (+Inf, -Inf, NaN included), an
 * optional integer timestamp, spaces or tabs between tokens, LF or CRLF line ends. Anything else
 * on a line is an error that names the line: HTML, JSON or a redis reply are not mistaken for
 * metrics. No library parses this in Debian for C, so it is written here.
 */
#ifndef CORRAL_CLI_PROM_H
#define CORRAL_CLI_PROM_H

#include <stddef.h>

#define PROM_MAX_LABELS 8
#define PROM_NAME_MAX   200
#define PROM_VALUE_MAX  200

typedef struct prom_label {
    char name[PROM_NAME_MAX];
    char value[PROM_VALUE_MAX]; /* unescaped, NUL-terminated; may hold no NUL itself */
} prom_label;

typedef struct prom_sample {
    char name[PROM_NAME_MAX];
    size_t n_labels;
    prom_label labels[PROM_MAX_LABELS];
    double value;
} prom_sample;

/* Called once per sample, in order. Return 0 to go on, anything else to stop (prom_parse then
 * returns that value). */
typedef int (*prom_sample_fn)(void *arg, const prom_sample *s);

/* Parses `len` bytes of `text` (no NUL needed). Returns 0 when every line parsed, the
 * callback's non-zero value when it stopped, or -1 with `why` (capacity `why_cap`) naming the
 * first bad line and what is wrong ("line 3: bad label name"). Names and label values longer
 * than the buffers above, or more than PROM_MAX_LABELS labels, are errors too. O(len). */
int prom_parse(const char *text, size_t len, prom_sample_fn cb, void *arg, char *why,
               size_t why_cap);

/* The value of label `name` of `s`, or NULL. */
const char *prom_label_get(const prom_sample *s, const char *name);

#endif /* CORRAL_CLI_PROM_H */
