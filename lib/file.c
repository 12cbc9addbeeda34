/*
 * NAME
 *   file - read a whole file into memory (see file.h)
 */
#include "lib/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/err.h"

int file_read(const char *path, size_t max, char **text, size_t *len, char *err, size_t errlen)
{
    *text = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return err_set(err, errlen, -e, "%s: %s", path, strerror(e));
    }
    size_t cap = 65536, n = 0;
    char *b = xmalloc(cap + 1);
    int rc = 0;
    for (;;) {
        if (n == cap) {
            if (max > 0 && cap >= max) {
                rc = err_set(err, errlen, -EFBIG, "%s: larger than %zu bytes", path, max);
                break;
            }
            cap *= 2;
            b = xrealloc(b, cap + 1);
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno; /* EISDIR: a directory opens fine and then fails to read */
            rc = err_set(err, errlen, -e, "%s: %s", path, strerror(e));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc < 0) {
        free(b);
        return rc;
    }
    b[n] = '\0';
    *text = b;
    *len = n;
    return 0;
}
