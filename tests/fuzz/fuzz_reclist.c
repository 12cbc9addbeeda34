/*
 * NAME
 *   fuzz_reclist - CSV and JSON-lines recipient lists (queue/reclist.c)
 * DESCRIPTION
 *   `volley push --recipients` reads files from anyone. Input: byte 0 picks
 *   the format (bit 0: JSON lines) and the field limit the caller passes
 *   (bits 1..7: 1..128, or Q_RECLIST_MAX_FIELDS for 0), the rest is the
 *   file, read from a memfd as a regular file. Every record is read until
 *   the end, malformed ones included (they are skipped). Checked: at most
 *   maxf fields, each inside the file's size; JSON lines give an even
 *   number (name, value); line numbers start at 1 and never go back; the
 *   reader ends (no record is returned twice: the count is bounded by the
 *   lines in the file).
 */
#include <errno.h>
#include <string.h>

#include "queue/reclist.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int jsonl = data[0] & 1;
    int maxf = data[0] >> 1 ? data[0] >> 1 : Q_RECLIST_MAX_FIELDS;
    data++;
    size--;
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    int fd = fuzz_memfd(data, size);
    struct q_reclist *l = q_reclist_new(fd, jsonl ? Q_RECLIST_JSONL : Q_RECLIST_CSV);
    struct q_field f[Q_RECLIST_MAX_FIELDS];
    long last = 0;
    size_t records = 0;
    for (;;) {
        int nf = -1;
        long line = 0;
        char err[256] = "";
        int rc = q_reclist_next(l, f, maxf, &nf, &line, err, sizeof(err));
        if (rc == 0)
            break;
        FUZZ_CHECK(rc == 1 || rc == -EINVAL, "q_reclist_next %d (%s)", rc, err);
        FUZZ_CHECK(++records <= lines, "%zu records from %zu lines", records, lines);
        FUZZ_CHECK(line >= 1 && line >= last && (size_t)line <= lines, "line %ld after %ld (%zu lines)", line, last,
                   lines);
        last = line;
        if (rc == -EINVAL) {
            FUZZ_CHECK(err[0] != '\0', "malformed record without a reason");
            continue;
        }
        FUZZ_CHECK(nf >= 0 && nf <= maxf, "%d fields for maxf %d", nf, maxf);
        FUZZ_CHECK(!jsonl || nf % 2 == 0, "odd field count %d in JSON lines", nf);
        for (int i = 0; i < nf; i++)
            FUZZ_CHECK(f[i].n <= size && (f[i].n == 0 || f[i].p != NULL), "field %d of %zu bytes", i, f[i].n);
    }
    q_reclist_free(l);
    close(fd);
    return 0;
}
