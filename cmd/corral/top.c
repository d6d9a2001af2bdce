/*
 * top.c - `corral top TARGET...`: the stats table live, as rates over the last interval (not
 * totals since start), summed over the targets and sorted by traffic.
 *
 * On a terminal: the alternate screen, redrawn every interval (default 1 s) as one write, with
 * the keys r (sort by requests), h (hit rate, lowest first), m (misses), n (name) and q (quit)
 * read from stdin in non-canonical mode; the terminal is restored on q, on --count, and on
 * SIGINT/SIGTERM/SIGHUP. A terminal that hung up without a SIGHUP (not our controlling one) ends
 * it too, with exit 0: its poll reports POLLHUP, its reads fail, writes to it fail. When stdout is
 * not a terminal: the table is printed every interval under a time stamp line, --count N times
 * (default: until killed).
 *
 * Rates come per target: a target's counters are compared with its own previous reading, so
 * a target that fails for one interval leaves a gap in the sum instead of a negative rate, and
 * a restarted process (counters going down) counts from 0.
 */
#include "cli.h"
#include "stats.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct top_state {
    target *ts;
    size_t n;
    stat_table *prev; /* per target, the last good reading */
    int64_t *prev_ms; /* when it was taken; 0: none yet */
    stat_table fleet; /* the summed rates of the last interval */
    stat_table scratch;
    int sort;
    int interval_ms, sample_ms, timeout_ms;
    bool tty, keys, all;
    double secs; /* the interval the rates cover, for the header */
    struct termios saved;
} top_state;

static const char *const sort_names[] = { "requests", "hit rate", "misses", "name" };

/* Reads every target and turns what changed since its previous reading into rates. */
static int tick(top_state *s) {
    table_clear(&s->fleet);
    s->secs = 0;
    for (size_t i = 0; i < s->n; i++) {
        target *t = &s->ts[i];
        if (target_fetch(t, s->timeout_ms, s->sample_ms) < 0) continue;
        int64_t at = now_ms();
        if (s->prev_ms[i]) {
            double secs = (double)(at - s->prev_ms[i]) / 1000.0;
            if (secs <= 0) secs = 0.001;
            if (secs > s->secs) s->secs = secs;
            if (table_rates(&s->scratch, &t->t, &s->prev[i], secs) < 0 ||
                table_add(&s->fleet, &s->scratch) < 0)
                return -1;
        }
        /* The reading becomes the previous one: swap the tables, no copy. */
        stat_table tmp = s->prev[i];
        s->prev[i] = t->t;
        t->t = tmp;
        s->prev_ms[i] = at;
    }
    table_sort(&s->fleet, s->sort);
    return 0;
}

/* True when the line (with its '\n') is a flagged row. */
static bool is_flagged_row(const char *line, size_t n) {
    static const char flag[] = "<- under 90%\n";
    return n >= sizeof flag - 1 && memcmp(line + n - (sizeof flag - 1), flag, sizeof flag - 1) == 0;
}

/* Draws the table. Returns false when stdout no longer takes it (a terminal that hung up). */
static bool render(top_state *s, bool first) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return true;
    size_t ok = 0;
    for (size_t i = 0; i < s->n; i++)
        ok += s->ts[i].ok;
    time_t wall = time(NULL);
    struct tm tm;
    char when[32] = "";
    if (localtime_r(&wall, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    if (s->tty) fputs("\033[H\033[2J", f);
    fprintf(f, "corral top  %s  %zu of %zu targets  rates over %.1f s  sort: %s%s\n", when, ok,
            s->n, s->secs, sort_names[s->sort], s->keys ? "  (r h m n: sort, q: quit)" : "");
    for (size_t i = 0; i < s->n; i++)
        if (!s->ts[i].ok || s->ts[i].partial)
            fprintf(f, "! %s: %s\n", s->ts[i].shown, s->ts[i].why);
    if (first)
        fprintf(f, "(first reading; rates from the next one)\n");
    else
        table_print(f, &s->fleet, s->all, true);
    if (!s->tty) fputc('\n', f);
    fclose(f);
    if (s->tty) {
        /* Cut to the terminal's height, so the header never scrolls away. */
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 1) {
            size_t lines = 0;
            for (size_t i = 0; i < len; i++) {
                if (buf[i] == '\n' && ++lines == (size_t)ws.ws_row - 1) {
                    len = i + 1;
                    break;
                }
            }
        }
    }
    /* On a terminal, rows under 90% stand out in bold red. */
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (buf + i)) + 1 : len - i;
        bool flag = s->tty && is_flagged_row(buf + i, n);
        if (flag) fputs("\033[1;31m", stdout);
        fwrite(buf + i, 1, flag ? n - 1 : n, stdout);
        if (flag) fputs("\033[0m\n", stdout);
        i += n;
    }
    bool written = fflush(stdout) == 0 && !ferror(stdout);
    free(buf);
    return written;
}

static void term_enter(top_state *s) {
    s->keys = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &s->saved) == 0;
    if (s->keys) {
        struct termios raw = s->saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) != 0) s->keys = false;
    }
    fputs("\033[?1049h\033[?25l", stdout); /* alternate screen, cursor hidden */
    fflush(stdout);
}

static void term_leave(top_state *s) {
    fputs("\033[?25h\033[?1049l", stdout);
    fflush(stdout);
    if (s->keys) tcsetattr(STDIN_FILENO, TCSANOW, &s->saved);
}

/* Waits until `deadline`, handling keys. Returns 1 to quit, 2 to redraw now, 0 at the deadline.
 * A terminal that hung up (POLLHUP, or a read that fails or finds the end) quits: poll would
 * report it again at once, and the loop would spin. */
static int wait_until(top_state *s, int64_t deadline) {
    for (;;) {
        if (stop_requested) return 1;
        int64_t left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        int n = poll(&pfd, s->keys ? 1 : 0, (int)left);
        if (n < 0 && errno != EINTR) return 1;
        if (n <= 0) continue;
        bool hup = pfd.revents & (POLLHUP | POLLERR | POLLNVAL);
        if (!(pfd.revents & POLLIN)) {
            if (hup) return 1;
            continue;
        }
        char c;
        ssize_t got = read(STDIN_FILENO, &c, 1);
        if (got < 0 && errno != EINTR && errno != EAGAIN) return 1; /* EIO: hung up */
        if (got == 0 && hup) return 1;
        if (got != 1) continue;
        int sort = -1;
        switch (c) {
        case 'q':
        case 'Q': return 1;
        case 'r': sort = SORT_REQUESTS; break;
        case 'h': sort = SORT_HITRATE; break;
        case 'm': sort = SORT_MISSES; break;
        case 'n': sort = SORT_NAME; break;
        default: break;
        }
        if (sort >= 0) {
            s->sort = sort;
            table_sort(&s->fleet, sort);
            return 2;
        }
    }
}

int cli_top(int argc, char **argv) {
    top_state s = { 0 };
    stats_opts o = { .sample_ms = 500, .interval_ms = 1000, .timeout_ms = 0, .count = 0 };
    int ec = stats_parse(argc, argv, "top", &s.ts, &s.n, &o);
    if (ec != CLI_OK) return ec;
    s.all = o.all;
    s.sample_ms = o.sample_ms;
    s.interval_ms = o.interval_ms;
    /* Each reading must fit in the interval, unless asked otherwise. */
    s.timeout_ms = o.timeout_ms ? o.timeout_ms : (o.interval_ms > 1000 ? o.interval_ms : 1000);
    long count = o.count;
    if (o.json) {
        fprintf(stderr, "corral top: --json: use `corral stats --json` for data\n");
        free(s.ts);
        return CLI_USAGE;
    }
    if (s.sample_ms > s.interval_ms / 2) s.sample_ms = s.interval_ms / 2 ? s.interval_ms / 2 : 1;
    s.prev = calloc(s.n, sizeof *s.prev);
    s.prev_ms = calloc(s.n, sizeof *s.prev_ms);
    if (!s.prev || !s.prev_ms) {
        ec = CLI_FAIL;
        goto done;
    }
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    s.tty = isatty(STDOUT_FILENO);
    if (s.tty) term_enter(&s);
    if (tick(&s) < 0) ec = CLI_FAIL;
    bool out_ok = !s.tty || render(&s, true);
    long shown = 0;
    int64_t next = now_ms() + s.interval_ms;
    while (ec == CLI_OK && out_ok) {
        int w = wait_until(&s, next);
        if (w == 1) break;
        if (w == 2) {
            out_ok = render(&s, false);
            continue;
        }
        next += s.interval_ms;
        if (next < now_ms()) next = now_ms() + s.interval_ms;
        if (tick(&s) < 0) {
            ec = CLI_FAIL;
            break;
        }
        out_ok = render(&s, false);
        if (count && ++shown >= count) break;
    }
    if (s.tty) term_leave(&s);
    /* As stats: a target that failed at the end makes the exit 3. */
    for (size_t i = 0; i < s.n; i++) {
        if (!s.ts[i].ok || s.ts[i].partial) {
            fprintf(stderr, "corral top: %s: %s\n", s.ts[i].shown, s.ts[i].why);
            ec = CLI_FAIL;
        }
    }
done:
    for (size_t i = 0; s.prev && i < s.n; i++) {
        table_free(&s.prev[i]);
        table_free(&s.ts[i].t);
    }
    table_free(&s.fleet);
    table_free(&s.scratch);
    free(s.prev);
    free(s.prev_ms);
    free(s.ts);
    return ec;
}
