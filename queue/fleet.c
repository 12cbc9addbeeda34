/*
 * NAME
 *   fleet - the heartbeat command builder
 */
#include "queue/fleet.h"

#include <string.h>

#include "lib/log.h"
#include "queue/resp.h"

void q_heartbeat(struct q_redis *q, const struct q_keys *k, const char *name, const char *info, uint64_t ttl_ms,
                 q_reply_fn *fn, void *priv)
{
    char clean_name[Q_WORKER_NAME_MAX], clean_info[Q_WORKER_INFO_MAX];
    size_t nl = log_sanitize(clean_name, sizeof(clean_name), name, strnlen(name, Q_WORKER_NAME_MAX - 1));
    size_t il =
        log_sanitize(clean_info, sizeof(clean_info), info ? info : "", info ? strnlen(info, Q_WORKER_INFO_MAX - 1) : 0);
    vbuf *o = q_redis_out(q);
    q_resp_array(o, 5);
    q_resp_bulk_str(o, "SET");
    q_resp_bulk_cat(o, k->worker, strlen(k->worker), clean_name, nl);
    q_resp_bulk(o, clean_info, il);
    q_resp_bulk_str(o, "PX");
    q_resp_bulk_u64(o, ttl_ms > 0 ? ttl_ms : 1);
    q_redis_expect(q, fn, priv);
}
