/*
 * NAME
 *   fuzz - what every fuzz harness under tests/fuzz/ shares
 * SYNOPSIS
 *   #include "tests/fuzz/fuzz.h"
 *   int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { ...; FUZZ_CHECK(n <= max, "n=%d", n); ... }
 * DESCRIPTION
 *   Each tests/fuzz/fuzz_<surface>.c defines LLVMFuzzerTestOneInput for one
 *   input that comes from outside the process. The same source builds two
 *   ways: with clang -fsanitize=fuzzer (make fuzz, libFuzzer's main) and
 *   with any CC plus tests/fuzz/replay_main.c, which feeds every file of the
 *   surface's corpus once (make test). So nothing here may depend on clang.
 *
 *   FUZZ_CHECK states an invariant the code promises (a length cap, a line
 *   limit): a violation prints the reason and aborts, which libFuzzer and
 *   the replay runner both report as a crash with the input kept.
 * THREADS
 *   Harnesses are single-threaded.
 */
#ifndef VOLLEY_TESTS_FUZZ_H
#define VOLLEY_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                                          \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);                              \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/*
 * fuzz_take_chunk - the read size the bytes arrive in (1..256), taken from
 * the input's first byte, which is then skipped; 0 when the input is empty.
 * Peers' bytes come in pieces of any size: parsers must not care.
 */
static inline size_t fuzz_take_chunk(const uint8_t **data, size_t *size)
{
    if (*size < 1)
        return 0;
    size_t chunk = (size_t)(*data)[0] + 1;
    (*data)++;
    (*size)--;
    return chunk;
}

#include <sys/mman.h>
#include <unistd.h>

/* fuzz_memfd - an anonymous file holding data[0..size), offset 0 (for readers that take an fd or a path) */
static inline int fuzz_memfd(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) {
            perror("write memfd");
            abort();
        }
        off += (size_t)n;
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
}

#endif
