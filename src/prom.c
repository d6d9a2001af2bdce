/*
 * prom.c - Prometheus text format 0.0.4: a family's HELP and TYPE lines, and families of one
 * unlabelled sample (prom.h).
 */
#include "prom.h"

#include <inttypes.h>
#include <stdio.h>

int corral__prom_family(char *buf, size_t cap, const char *ns, const char *name, const char *type,
                        const char *help) {
    return snprintf(buf, cap, "# HELP %s%s %s\n# TYPE %s%s %s\n", ns, name, help, ns, name, type);
}

const char *corral__prom_head(char head[CORRAL__PROM_HEAD_MAX], const char *ns, const char *name,
                              const char *type, const char *help) {
    int n = corral__prom_family(head, CORRAL__PROM_HEAD_MAX, ns, name, type, help);
    return n >= 0 && n < CORRAL__PROM_HEAD_MAX ? head : NULL;
}

int corral__prom_rows(char *buf, size_t cap, size_t *used, const char *ns,
                      const corral__prom_row *rows, size_t n) {
    size_t at = *used;
    for (size_t i = 0; i < n; i++) {
        if (at >= cap) return CORRAL_ENOSPC;
        int h =
            corral__prom_family(buf + at, cap - at, ns, rows[i].name, rows[i].type, rows[i].help);
        int s = h < 0 || (size_t)h >= cap - at
                    ? -1
                    : snprintf(buf + at + (size_t)h, cap - at - (size_t)h, "%s%s %" PRIu64 "\n", ns,
                               rows[i].name, rows[i].value);
        if (s < 0 || (size_t)s >= cap - at - (size_t)h) {
            buf[at] = '\0';
            return CORRAL_ENOSPC;
        }
        at += (size_t)h + (size_t)s;
        *used = at;
    }
    return CORRAL_OK;
}
