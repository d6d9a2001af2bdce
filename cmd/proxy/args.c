/*
 * args.c - the two text forms of corral-proxy's configuration, taken apart before config.c
 * gives them meaning: the INI file's lines (sections, key = value, comments) and the command
 * line's flags (getopt_long, so both `--origin URL` and `--origin=URL` work).
 *
 * The INI reader is ours rather than Debian's libinih because an operator's error needs what
 * libinih does not give its callback: the line number of every key, the section headers
 * themselves (a repeated [route:blog] is an error naming both lines), an unclosed "[proxy"
 * reported at its own line, and lines longer than its 200-byte buffer. The grammar is libinih's
 * default one: "[section]", "key = value" (spaces trimmed), whole-line comments starting with
 * ';' or '#', and inline comments starting with a ';' after a space or tab; a UTF-8 BOM is
 * skipped. It reads from memory, so it is a pure function (tests, fuzz/fuzz_config.c).
 *
 * Threads: the INI reader keeps no state. px_flags_parse uses getopt_long, whose state is the
 * process's (optind), so it runs on the main thread only.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool px_fail(px_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n < 0) memcpy(err->msg, "(error message unavailable)", 28);
    /* A longer message is cut; its start (file, line, key) is the part that matters. */
    return false;
}

/* ---- INI text ---- */

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trims spaces at both ends of [s, s+n), in place: returns the new start, sets *n. */
static char *trim(char *s, size_t *n) {
    while (*n && is_space(*s)) {
        s++;
        (*n)--;
    }
    while (*n && is_space(s[*n - 1]))
        (*n)--;
    s[*n] = '\0';
    return s;
}

/* Shows at most 60 bytes of a line in an error message. */
#define SHOW(n) ((int)((n) > 60 ? 60 : (n)))

/* The bytes of a malformed line `s` (`n` bytes) a message shows: its first word only, so that a
 * value written without its '=' (a token, a store URL with its password) is not shown. */
static int first_word(const char *s, size_t n) {
    size_t w = 0;
    while (w < n && !is_space(s[w]))
        w++;
    return SHOW(w);
}

bool px_ini_parse(const char *name, const char *text, size_t len, px_ini_fn fn, void *user,
                  px_error *err) {
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    if (memchr(text, '\0', len)) return px_fail(err, "%s: a NUL byte: not a text file", name);
    char *buf = malloc(len + 1);
    if (!buf) return px_fail(err, "%s: out of memory", name);
    memcpy(buf, text, len);
    buf[len] = '\0';
    char section[PX_ROUTE_NAME_MAX + 64] = "";
    bool ok = true;
    int line = 0;
    for (char *p = buf; ok && p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(buf + len - p);
        char *next = nl ? nl + 1 : buf + len;
        line++;
        char *s = trim(p, &n);
        p = next;
        if (n == 0 || s[0] == ';' || s[0] == '#') continue;
        /* An inline comment: ';' after a space or tab (a value may contain a bare ';'). */
        for (size_t i = 1; i < n; i++) {
            if (s[i] == ';' && is_space(s[i - 1])) {
                n = i;
                s = trim(s, &n);
                break;
            }
        }
        if (s[0] == '[') {
            char *close = memchr(s, ']', n);
            if (!close) {
                ok = px_fail(err, "%s:%d: unclosed section header '%.*s' (want '[NAME]')", name,
                             line, SHOW(n), s);
            } else if (close != s + n - 1) {
                ok = px_fail(err, "%s:%d: text after the section header '%.*s'", name, line,
                             SHOW(n), s);
            } else {
                size_t sn = (size_t)(close - s - 1);
                char *sec = trim(s + 1, &sn);
                if (sn == 0 || sn >= sizeof section) {
                    ok = px_fail(err, "%s:%d: %s section name in '%.*s'", name, line,
                                 sn ? "too long a" : "an empty", SHOW(n), s);
                } else {
                    memcpy(section, sec, sn + 1);
                    ok = fn(user, line, section, NULL, NULL, err);
                }
            }
            continue;
        }
        char *eq = memchr(s, '=', n);
        if (!eq) {
            int w = first_word(s, n);
            ok = px_fail(err, "%s:%d: '%.*s%s' is not 'key = value', '[section]' or a comment",
                         name, line, w, s, (size_t)w < n ? " ..." : "");
            continue;
        }
        size_t kn = (size_t)(eq - s), vn = n - kn - 1;
        if (kn == 0) { /* the line is trimmed: a key has no leading space */
            ok = px_fail(err, "%s:%d: '= ...' has no key before '='", name, line);
            continue;
        }
        char *key = trim(s, &kn);
        char *val = trim(eq + 1, &vn);
        if (!section[0]) {
            ok = px_fail(err,
                         "%s:%d: key '%.*s' comes before any section (put it under [proxy], "
                         "[limits], [cache] or [route:NAME])",
                         name, line, SHOW(kn), key);
        } else {
            ok = fn(user, line, section, key, val, err);
        }
    }
    free(buf);
    return ok;
}

/* ---- Files ---- */

#define CONFIG_MAX_BYTES (1 << 20)

px_config *px_config_load(const px_flags *f, px_error *err) {
    err->usage = false;
    const char *path = f->config_path;
    if (!path) return px_config_parse(NULL, NULL, 0, f, err);
    FILE *fp = fopen(path, "re");
    if (!fp) {
        px_fail(err, "cannot read config file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(CONFIG_MAX_BYTES + 1);
    size_t len = text ? fread(text, 1, CONFIG_MAX_BYTES + 1, fp) : 0;
    bool failed = !text || ferror(fp);
    int saved = errno;
    if (fclose(fp) != 0 && !failed) {
        failed = true;
        saved = errno;
    }
    px_config *cfg = NULL;
    if (!text)
        px_fail(err, "out of memory");
    else if (failed)
        px_fail(err, "cannot read config file %s: %s", path, strerror(saved));
    else if (len > CONFIG_MAX_BYTES)
        px_fail(err, "config file %s is larger than 1 MiB", path);
    else
        cfg = px_config_parse(path, text, len, f, err);
    free(text);
    return cfg;
}

/* Reads the admin token from `path`: its first line, which must be 1-127 visible ASCII bytes.
 * A file that group or others may read or write is refused (chmod 600, or systemd's
 * LoadCredential=, which makes a 0400 copy), as ssh refuses such a private key. */
bool px_read_token_file(const char *path, char *out, size_t cap, px_error *err) {
    /* O_NONBLOCK: a FIFO named by mistake is refused below instead of hanging a reload. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        px_fail(err, "admin token file %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return false;
    }
    struct stat st;
    bool ok = false;
    char line[256];
    if (fstat(fileno(f), &st) != 0) {
        px_fail(err, "admin token file %s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        px_fail(err, "admin token file %s: not a regular file", path);
    } else if (st.st_mode & 077) {
        px_fail(err,
                "admin token file %s: group or others may read or write it (mode %03o): chmod "
                "600 it, or use systemd's LoadCredential=",
                path, (unsigned)(st.st_mode & 0777));
    } else if (!fgets(line, sizeof line, f)) {
        px_fail(err, "admin token file %s: empty", path);
    } else {
        size_t n = strcspn(line, "\r\n");
        while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
            n--;
        line[n] = '\0';
        bool visible = n > 0;
        for (size_t i = 0; i < n; i++)
            visible = visible && (unsigned char)line[i] > 0x20 && (unsigned char)line[i] < 0x7f;
        if (!visible)
            px_fail(err, "admin token file %s: the first line must be the token (visible ASCII)",
                    path);
        else if (n >= cap)
            px_fail(err, "admin token file %s: the token is longer than %zu bytes", path, cap - 1);
        else {
            memcpy(out, line, n + 1);
            ok = true;
        }
    }
    if (fclose(f) != 0 && ok) ok = px_fail(err, "admin token file %s: %s", path, strerror(errno));
    return ok;
}

/* ---- Flags ---- */

static const struct option long_options[] = {
    { "origin", required_argument, NULL, PX_FLAG_ORIGIN },
    { "listen", required_argument, NULL, PX_FLAG_LISTEN },
    { "admin", required_argument, NULL, PX_FLAG_ADMIN },
    { "store", required_argument, NULL, PX_FLAG_STORE },
    { "threads", required_argument, NULL, PX_FLAG_THREADS },
    { "access-log", required_argument, NULL, PX_FLAG_ACCESS_LOG },
    { "access-log-format", required_argument, NULL, PX_FLAG_ACCESS_LOG_FORMAT },
    { "admin-token", required_argument, NULL, PX_FLAG_ADMIN_TOKEN },
    { "admin-token-file", required_argument, NULL, PX_FLAG_ADMIN_TOKEN_FILE },
    { "route", required_argument, NULL, PX_FLAG_ROUTE },
    { "set", required_argument, NULL, PX_FLAG_SET },
    { "config", required_argument, NULL, PX_FLAG_CONFIG },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, PX_FLAG_VERSION },
    { NULL, 0, NULL, 0 },
};

const char *px_flag_name(int opt) {
    for (const struct option *o = long_options; o->name; o++) {
        if (o->val == opt) return o->name;
    }
    return "?";
}

bool px_flags_parse(px_flags *f, int argc, char **argv, px_error *err) {
    memset(f, 0, sizeof *f);
    err->usage = true; /* every error here is about the command line's shape */
    const char *env = getenv("CORRAL_ADMIN_TOKEN");
    f->env_token = env && *env ? env : NULL;
    optind = 0; /* glibc: start over (tests and the fuzz target parse many argv) */
    opterr = 0; /* our messages, not getopt's */
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        const char *arg = argv[optind - 1];
        if (c == '?') {
            if (optopt) return px_fail(err, "unknown option '-%c'", optopt);
            /* Only the name: a mistyped --admin-token=VALUE must not print the token. */
            return px_fail(err, "unknown option '%.*s'", (int)strcspn(arg, "="), arg);
        }
        if (c == ':') return px_fail(err, "option '%s' needs a value", arg);
        if (c == 'h') {
            f->help = true;
        } else if (c == PX_FLAG_VERSION) {
            f->version = true;
        } else if (c == PX_FLAG_CONFIG) {
            f->config_path = optarg;
        } else {
            if (f->n == PX_MAX_FLAGS) return px_fail(err, "more than %d options", PX_MAX_FLAGS);
            f->v[f->n++] = (px_flag){ .opt = c, .value = optarg };
        }
    }
    if (optind < argc) return px_fail(err, "unexpected argument '%s'", argv[optind]);
    err->usage = false;
    return true;
}
