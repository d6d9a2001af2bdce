/*
 * prom.h - the one writer of Prometheus text format 0.0.4 "# HELP" and "# TYPE" lines, for the
 * library's metrics (metrics.c, corral.c, the stores' metrics_text) and corral-proxy's
 * (cmd/proxy/metrics.c). Samples stay with their callers, which know their labels.
 *
 * Self-contained (libc and corral.h only), so the proxy can use it without the library's
 * internals. Nothing here allocates or keeps state: every function is thread-safe.
 */
#ifndef CORRAL_PROM_H
#define CORRAL_PROM_H

#include "corral/corral.h"

#include <stddef.h>
#include <stdint.h>

/* Writes the two comment lines of metric family `<ns><name>`:
 *     # HELP <ns><name> <help>
 *     # TYPE <ns><name> <type>
 * `type` is "counter", "gauge" or "histogram"; `help` is written as given (no escaping: our
 * helps are literals without '\' or newline). As snprintf: writes at most `cap` bytes into
 * `buf`, NUL-terminated when cap > 0, and returns the length the lines need (so a result >= cap
 * means they did not fit), or -1 on an encoding error. */
int corral__prom_family(char *buf, size_t cap, const char *ns, const char *name, const char *type,
                        const char *help);

/* The room corral__prom_head needs: any family with a name under 100 bytes and a help under
 * 300. */
#define CORRAL__PROM_HEAD_MAX 512

/* corral__prom_family into `head`, for writers that append text their own way: returns `head`
 * holding the lines, or NULL when they did not fit (the caller counts that as a failed write). */
const char *corral__prom_head(char head[CORRAL__PROM_HEAD_MAX], const char *ns, const char *name,
                              const char *type, const char *help);

/* A family with one unlabelled sample, for corral__prom_rows. */
typedef struct corral__prom_row {
    const char *name, *type, *help;
    uint64_t value;
} corral__prom_row;

/* Appends `n` rows to the NUL-terminated text of `buf` from offset `*used`, each as its family's
 * two lines and the sample "<ns><name> <value>". Returns CORRAL_OK with `*used` the new length,
 * or CORRAL_ENOSPC when a row does not fit `cap`: `buf` then ends after the last whole row
 * (`*used` its length), so it holds whole lines only. */
int corral__prom_rows(char *buf, size_t cap, size_t *used, const char *ns,
                      const corral__prom_row *rows, size_t n);

#endif /* CORRAL_PROM_H */
