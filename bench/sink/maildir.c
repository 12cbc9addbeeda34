/*
 * NAME
 *   maildir - store accepted messages of volley-sink in a maildir
 * SYNOPSIS
 *   sink_maildir_prepare(dir); ... sink_maildir_store(c);
 * DESCRIPTION
 *   Each accepted message is written as received (dot-unstuffed, CRLF line
 *   ends kept) after two prepended lines, "Return-Path: <from>" and
 *   "X-Volley-Sink-Rcpt: a, b", into DIR/tmp and then renamed into DIR/new,
 *   so a reader never sees a partial file. Names are unique without locks:
 *   time, pid, worker id and a per-worker sequence number. There is no
 *   fsync: this is a test sink, not a mail store.
 * THREADS
 *   Called on the connection's worker thread.
 */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

/* sink_maildir_prepare - create DIR/{tmp,new,cur}; 0 or -errno */
int sink_maildir_prepare(const char *dir)
{
    static const char *subs[] = {"", "/tmp", "/new", "/cur"};
    char path[4096];
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", dir, subs[i]);
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

/* write_all - writev until everything is written; 0 or -errno */
static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t r = writev(fd, iov, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (n > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

/* sink_maildir_store - write the accepted message of c; 0 or -errno */
int sink_maildir_store(struct sink_conn *c)
{
    char name[256], tmp[4096], dst[4096];
    vbuf head = {0};
    int rc = 0;
    snprintf(name, sizeof(name), "%lld.P%dT%dQ%llu.%s", (long long)time(NULL), (int)getpid(), c->w->id,
             (unsigned long long)++c->w->maildir_seq, sink_cfg.hostname);
    snprintf(tmp, sizeof(tmp), "%s/tmp/%s", sink_cfg.maildir, name);
    snprintf(dst, sizeof(dst), "%s/new/%s", sink_cfg.maildir, name);
    /* the recipient list is stored comma-joined; the header separates with ", " */
    vbuf_printf(&head, "Return-Path: <%s>\r\nX-Volley-Sink-Rcpt: ", vbuf_len(&c->from) ? vbuf_data(&c->from) : "");
    const char *r = vbuf_len(&c->rcpts) ? vbuf_data(&c->rcpts) : "";
    for (; *r; r++) {
        if (*r == ',')
            vbuf_puts(&head, ", ");
        else
            vbuf_putc(&head, *r);
    }
    vbuf_puts(&head, "\r\n");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        log_warn("maildir: %s: %s", tmp, strerror(errno));
        goto out;
    }
    struct iovec iov[2] = {{vbuf_data(&head), vbuf_len(&head)}, {vbuf_data(&c->msg), vbuf_len(&c->msg)}};
    rc = write_all(fd, iov, 2);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, dst) < 0)
        rc = -errno;
    if (rc < 0) {
        log_warn("maildir: %s: %s", dst, strerror(-rc));
        unlink(tmp);
    }
out:
    vbuf_free(&head);
    return rc;
}
