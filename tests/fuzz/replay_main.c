/*
 * NAME
 *   replay_main - run a fuzz harness over its corpus without libFuzzer
 * SYNOPSIS
 *   build/tests/fuzz/test_fuzz_<surface> [FILE|DIR ...]
 * DESCRIPTION
 *   make test links each tests/fuzz/fuzz_<surface>.c with this main, built
 *   by the ordinary CC with no clang-specific flag, so every seed and every
 *   crash ever found (tests/fuzz/corpus/<surface>/) is replayed on each run.
 *   With no argument it reads the corpus directory compiled in as
 *   FUZZ_CORPUS. Files are fed in name order, one LLVMFuzzerTestOneInput
 *   call each. A crash or a broken invariant aborts the process (the
 *   "[ RUN ]" line before it names the input); otherwise it prints the
 *   cmocka-style summary line scripts/run-tests.sh counts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

#ifndef FUZZ_CORPUS
#error "build with -DFUZZ_CORPUS=\"tests/fuzz/corpus/<surface>\""
#endif

/* LLVMFuzzerInitialize - optional in a harness, as in libFuzzer */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* run_file - one input; 0, or -1 when it could not be read (counted as a failure) */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (size_t n; buf != NULL && (n = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += n;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    int bad = ferror(f) || buf == NULL;
    fclose(f);
    if (bad) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    printf("[ RUN      ] %s (%zu bytes)\n", path, len);
    fflush(stdout);
    /* a copy of exactly len bytes, so ASan sees a read past the input */
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* run_path - a file, or every regular file of a directory in name order; adds to *ok / *failed */
static void run_path(const char *path, int *ok, int *failed)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        (*failed)++;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        if (run_file(path) == 0)
            (*ok)++;
        else
            (*failed)++;
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        (*failed)++;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap)
            names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof(*names));
        size_t l = strlen(path) + strlen(e->d_name) + 2;
        names[n] = malloc(l);
        snprintf(names[n], l, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(names[i]) == 0)
                (*ok)++;
            else
                (*failed)++;
        }
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv)
{
    int ok = 0, failed = 0;
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2)
        run_path(FUZZ_CORPUS, &ok, &failed);
    for (int i = 1; i < argc; i++)
        run_path(argv[i], &ok, &failed);
    if (ok + failed == 0) {
        fprintf(stderr, "no corpus files found\n");
        failed = 1;
    }
    printf("[  PASSED  ] %d test(s).\n", ok);
    if (failed > 0)
        printf("[  FAILED  ] %d test(s).\n", failed);
    return failed > 0;
}
