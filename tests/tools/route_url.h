/*
 * NAME
 *   route_url - the command line shared by redis-route and ring-route: URL [CA_FILE]
 * DESCRIPTION
 *   Test helpers only. CA_FILE stands for [redis] ca_file (rediss://).
 *   Returns 0 with *u filled, or the exit status (64) after saying why on stderr.
 */
#ifndef VOLLEY_TESTS_TOOLS_ROUTE_URL_H
#define VOLLEY_TESTS_TOOLS_ROUTE_URL_H

#include <stdio.h>

#include "lib/alloc.h"
#include "lib/redis_url.h"

static inline int route_url(int argc, char **argv, const char *usage, struct redis_url *u)
{
    char err[512];
    redis_url_init(u);
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s\n", usage);
        return 64;
    }
    if (redis_url_parse(u, argv[1], err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        redis_url_free(u);
        return 64;
    }
    if (argc == 3)
        u->ca_file = xstrdup(argv[2]);
    return 0;
}

#endif
