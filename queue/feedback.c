/*
 * NAME
 *   feedback - read the feedback counters of a stats hash
 */
#include "queue/feedback.h"

#include <stdlib.h>
#include <string.h>

/* field_num - a decimal string reply as a number, 0 when it is not one */
static long long field_num(const redisReply *v)
{
    if (v->type == REDIS_REPLY_INTEGER)
        return v->integer;
    if (v->type != REDIS_REPLY_STRING)
        return 0;
    char *end;
    long long n = strtoll(v->str, &end, 10);
    return end != v->str ? n : 0;
}

void q_feedback_add(const redisReply *h, struct q_feedback *out)
{
    for (size_t i = 0; h != NULL && h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
        const redisReply *k = h->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        long long v = field_num(h->element[i + 1]);
        const char *colon = memchr(k->str, ':', k->len);
        if (colon == NULL) {
            if (strcmp(k->str, "complained") == 0)
                out->complained += v;
            else if (strcmp(k->str, "unsubscribed") == 0)
                out->unsubscribed += v;
            continue;
        }
        size_t sl = (size_t)(colon - k->str);
        int c = bounce_class_parse(colon + 1, k->len - sl - 1);
        if (c < 0)
            continue; /* a class this version does not know: not shown rather than misfiled */
        if (sl == 7 && memcmp(k->str, "bounced", 7) == 0)
            out->bounced[c] += v;
        else if (sl == 8 && memcmp(k->str, "deferred", 8) == 0)
            out->deferred[c] += v;
    }
}

double q_complaint_rate(long long complained, long long delivered)
{
    return delivered > 0 ? (double)complained / (double)delivered : -1.0;
}
