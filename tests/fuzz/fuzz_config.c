/*
 * NAME
 *   fuzz_config - volley.conf as the worker reads it (lib/config.c, queue/retry.c, throttle/config.c)
 * DESCRIPTION
 *   The config file is the operator's, but it is edited by hand, generated
 *   by tools and copied around, so no file may crash the worker or leave it
 *   running on half-parsed settings. Input: the file's bytes, read through
 *   config_load from a memfd (so NUL bytes and a missing final newline
 *   arrive as they would from disk), then the module sections as
 *   `volley worker` validates them: q_retry_config_load, thr_config_load.
 *   Checked: an error is one line naming the file; a loaded config keeps
 *   its tables within their CONFIG_MAX_* bounds with every route
 *   complete (domain, host, port 1..65535); the retry schedule has 1..32
 *   steps and a jitter within 0..0.9.
 */
#include <stdio.h>
#include <string.h>

#include "lib/config.h"
#include "queue/retry.h"
#include "tests/fuzz/fuzz.h"
#include "throttle/throttle.h"

static void check_err(const char *err, const char *path)
{
    FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0, "error \"%s\" does not name %s", err, path);
    FUZZ_CHECK(strchr(err, '\n') == NULL, "error of several lines \"%s\"", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = fuzz_memfd(data, size);
    char path[64], err[1024] = "";
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct vconfig cfg;
    int rc = config_load(&cfg, path, err, sizeof(err));
    close(fd);
    if (rc < 0) {
        check_err(err, path);
        config_free(&cfg);
        return 0;
    }
    FUZZ_CHECK(cfg.nroutes >= 0 && cfg.nroutes <= CONFIG_MAX_ROUTES, "%d routes", cfg.nroutes);
    FUZZ_CHECK(cfg.ntls_policy >= 0 && cfg.ntls_policy <= CONFIG_MAX_TLS_POLICY, "%d policies", cfg.ntls_policy);
    FUZZ_CHECK(cfg.ndkim >= 0 && cfg.ndkim <= CONFIG_MAX_DKIM, "%d dkim keys", cfg.ndkim);
    FUZZ_CHECK(cfg.negress >= 0 && cfg.negress <= CONFIG_MAX_EGRESS, "%d egress", cfg.negress);
    FUZZ_CHECK(cfg.ndns_servers >= 0 && cfg.ndns_servers <= CONFIG_MAX_DNS, "%d dns servers", cfg.ndns_servers);
    FUZZ_CHECK(cfg.nraw >= 0 && cfg.nraw <= CONFIG_MAX_RAW, "%d raw keys", cfg.nraw);
    for (int i = 0; i < cfg.nroutes; i++) {
        const struct config_route *r = &cfg.routes[i];
        FUZZ_CHECK(r->domain != NULL && r->domain[0] != '\0' && r->host != NULL && r->host[0] != '\0',
                   "incomplete route %d", i);
        FUZZ_CHECK(r->port >= 1 && r->port <= 65535, "route port %d", r->port);
        FUZZ_CHECK(config_route_find(&cfg, r->domain, strlen(r->domain)) != NULL, "route %s not found", r->domain);
    }
    struct q_retry_cfg retry;
    err[0] = '\0';
    if (q_retry_config_load(&cfg, &retry, err, sizeof(err)) < 0) {
        check_err(err, path);
    } else {
        FUZZ_CHECK(retry.nschedule >= 1 && retry.nschedule <= Q_RETRY_MAX_STEPS, "%d steps", retry.nschedule);
        FUZZ_CHECK(retry.jitter >= 0 && retry.jitter <= 0.9, "jitter %g", retry.jitter);
        for (int i = 0; i < retry.nschedule; i++)
            FUZZ_CHECK(retry.schedule_ms[i] <= Q_RETRY_MAX_DELAY_MS, "step %d of %llu ms", i,
                       (unsigned long long)retry.schedule_ms[i]);
    }
    err[0] = '\0';
    struct thr_config *tc = thr_config_load(&cfg, err, sizeof(err));
    if (tc == NULL)
        check_err(err, path);
    else
        FUZZ_CHECK(thr_config_nproviders(tc) >= 1, "no provider (not even default)");
    thr_config_free(tc);
    config_free(&cfg);
    return 0;
}
