/*
 * prom.c - the Prometheus text exposition parser (prom.h). A line at a time: the line is
 * located first (its end is the next LF), then read with a cursor that never passes it, so no
 * token can run into the next line and nothing reads past `len`.
 */
#include "prom_parse.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
    const char *p, *end;
} cursor;

static bool is_name_start(char c, bool metric) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (metric && c == ':');
}

static bool is_name_char(char c, bool metric) {
    return is_name_start(c, metric) || (c >= '0' && c <= '9');
}

static void skip_blanks(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Reads a name into out (capacity PROM_NAME_MAX). */
static const char *read_name(cursor *c, char *out, bool metric) {
    const char *s = c->p;
    if (s == c->end || !is_name_start(*s, metric))
        return metric ? "bad metric name" : "bad label name";
    while (c->p < c->end && is_name_char(*c->p, metric))
        c->p++;
    size_t n = (size_t)(c->p - s);
    if (n >= PROM_NAME_MAX) return "name too long";
    memcpy(out, s, n);
    out[n] = '\0';
    return NULL;
}

static const char *read_label_value(cursor *c, char *out) {
    if (c->p == c->end || *c->p != '"') return "label value not quoted";
    c->p++;
    size_t n = 0;
    for (;;) {
        if (c->p == c->end) return "unterminated label value";
        char ch = *c->p++;
        if (ch == '"') break;
        if (ch == '\\') {
            if (c->p == c->end) return "unterminated label value";
            char e = *c->p++;
            if (e == 'n')
                ch = '\n';
            else if (e == '\\' || e == '"')
                ch = e;
            else
                return "bad escape in label value";
        } else if (ch == '\0') {
            return "NUL in label value";
        }
        if (n + 1 >= PROM_VALUE_MAX) return "label value too long";
        out[n++] = ch;
    }
    out[n] = '\0';
    return NULL;
}

static const char *read_labels(cursor *c, prom_sample *s) {
    c->p++; /* '{' */
    for (;;) {
        skip_blanks(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            return NULL;
        }
        if (s->n_labels == PROM_MAX_LABELS) return "too many labels";
        prom_label *l = &s->labels[s->n_labels];
        const char *e = read_name(c, l->name, false);
        if (e) return e;
        skip_blanks(c);
        if (c->p == c->end || *c->p != '=') return "'=' expected after a label name";
        c->p++;
        skip_blanks(c);
        if ((e = read_label_value(c, l->value))) return e;
        s->n_labels++;
        skip_blanks(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            return NULL;
        }
        return "',' or '}' expected after a label";
    }
}

/* A float token: Go's ParseFloat forms that strtod shares (decimal, exponent, Inf, NaN). */
static const char *read_number(cursor *c, double *out, bool integer) {
    const char *s = c->p;
    while (c->p < c->end && *c->p != ' ' && *c->p != '\t')
        c->p++;
    size_t n = (size_t)(c->p - s);
    char tok[64];
    if (n == 0) return integer ? "bad timestamp" : "value expected";
    if (n >= sizeof tok) return integer ? "bad timestamp" : "bad value";
    memcpy(tok, s, n);
    tok[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        char ch = tok[i];
        bool digit = ch >= '0' && ch <= '9';
        bool ok = integer ? digit || (i == 0 && ch == '-')
                          : digit || strchr("+-.eEinfINFatyAYT", ch) != NULL;
        if (!ok) return integer ? "bad timestamp" : "bad value";
    }
    char *end;
    double v = strtod(tok, &end);
    if (*end) return integer ? "bad timestamp" : "bad value";
    *out = v;
    return NULL;
}

static const char *parse_line(cursor *c, prom_sample *s) {
    memset(s, 0, offsetof(prom_sample, labels));
    const char *e = read_name(c, s->name, true);
    if (e) return e;
    if (c->p < c->end && *c->p == '{' && (e = read_labels(c, s))) return e;
    if (c->p == c->end || (*c->p != ' ' && *c->p != '\t')) return "space expected before the value";
    skip_blanks(c);
    if ((e = read_number(c, &s->value, false))) return e;
    skip_blanks(c);
    if (c->p < c->end) {
        double ts;
        if ((e = read_number(c, &ts, true))) return e;
        skip_blanks(c);
        if (c->p < c->end) return "junk after the timestamp";
    }
    return NULL;
}

int prom_parse(const char *text, size_t len, prom_sample_fn cb, void *arg, char *why,
               size_t why_cap) {
    prom_sample *s = malloc(sizeof *s);
    if (!s) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    const char *p = text, *end = text + len;
    unsigned line = 0;
    int ret = 0;
    while (p < end) {
        line++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        cursor c = { p, le > p && le[-1] == '\r' ? le - 1 : le };
        p = nl ? nl + 1 : end;
        skip_blanks(&c);
        if (c.p == c.end || *c.p == '#') continue;
        const char *e = parse_line(&c, s);
        if (e) {
            snprintf(why, why_cap, "line %u: %s", line, e);
            ret = -1;
            break;
        }
        if ((ret = cb(arg, s)) != 0) break;
    }
    free(s);
    return ret;
}

const char *prom_label_get(const prom_sample *s, const char *name) {
    for (size_t i = 0; i < s->n_labels; i++)
        if (strcmp(s->labels[i].name, name) == 0) return s->labels[i].value;
    return NULL;
}
