/*
 * standalone.c - runs a fuzz target without libFuzzer: LLVMFuzzerTestOneInput over every regular
 * file in a directory (a seed corpus), in name order. CMake links it with each fuzz/fuzz_*.c as
 * `<name>_corpus` and runs that as a ctest over fuzz/corpus/<name>/, so the seeds are regression
 * tests in every build, sanitizers included.
 *
 *     fuzz_url_corpus fuzz/corpus/fuzz_url      exit 0: every input ran; 1: no input or I/O error
 *
 * Arguments that name files rather than directories are run as single inputs (a reproducer).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads a whole file into a new buffer; returns 0 on success. */
static int read_file(const char *path, uint8_t **out, size_t *out_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, fp);
        if (len < cap) break;
        uint8_t *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(fp);
    if (fclose(fp) != 0) bad = 1;
    if (!buf || bad) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* Runs one input file; returns 0 on success. */
static int run_file(const char *path) {
    uint8_t *data = NULL;
    size_t len = 0;
    if (read_file(path, &data, &len) != 0) {
        fprintf(stderr, "standalone: cannot read %s\n", path);
        return -1;
    }
    /* An exact-size copy, so ASan sees reads past the input as libFuzzer would. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(data);
        return -1;
    }
    if (len) memcpy(exact, data, len);
    free(data);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

/* Runs every regular file of `dir`; returns the number run, or -1 on error. */
static long run_dir(const char *dir) {
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "standalone: cannot list %s\n", dir);
        return -1;
    }
    long ran = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        int w = snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        struct stat st;
        if (!failed && w > 0 && (size_t)w < sizeof path && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode)) {
            if (run_file(path) != 0)
                failed = 1;
            else
                ran++;
        }
        free(names[i]);
    }
    free(names);
    return failed ? -1 : ran;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", argv[0]);
        return 2;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "standalone: no such file or directory: %s\n", argv[i]);
            return 1;
        }
        long ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) == 0 ? 1 : -1);
        if (ran < 0) return 1;
        total += ran;
    }
    printf("standalone: ran %ld inputs\n", total);
    return total > 0 ? 0 : 1;
}
