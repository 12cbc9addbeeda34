/*
 * NAME
 *   no-uring - run a command where io_uring is denied, as in a default
 *   Docker or containerd container (test helper)
 * SYNOPSIS
 *   no-uring COMMAND [ARG ...]
 * DESCRIPTION
 *   Installs a seccomp filter (libseccomp) that fails io_uring_setup,
 *   io_uring_enter and io_uring_register with EPERM, as Docker's default
 *   profile (25.0+) does, allows every other system call, and execs
 *   COMMAND under it (the filter is inherited across exec and by every
 *   thread and child). tests/integration/test_engine_backend.py runs
 *   `volley worker` this way to see backend = auto fall back to epoll.
 *   Exit status: COMMAND's, or 64 usage, 70 the filter could not be
 *   installed, 127 COMMAND could not be run.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: no-uring COMMAND [ARG ...]\n");
        return 64;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        fprintf(stderr, "no-uring: seccomp_init failed\n");
        return 70;
    }
    /* NO_NEW_PRIVS (libseccomp's default) lets an unprivileged process install the filter */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_setup), 0);
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_enter), 0);
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(io_uring_register), 0);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc < 0) {
        fprintf(stderr, "no-uring: installing the seccomp filter: %s\n", strerror(-rc));
        return 70;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "no-uring: %s: %s\n", argv[1], strerror(errno));
    return 127;
}
