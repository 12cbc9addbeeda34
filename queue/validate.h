/*
 * NAME
 *   validate - the field rules of the Redis contract, shared by the worker
 *   side (q_jobs_parse) and the producer side (volley push)
 * DESCRIPTION
 *   One definition of "a valid recipient / campaign id / variable name" so
 *   that push never queues a job the worker would dead-letter as malformed.
 *     recipient   1..320 bytes, exactly one '@' with a non-empty local part
 *                 (<= 64) and domain (<= 255); no control bytes, space,
 *                 '<' or '>' (they would break the SMTP envelope)
 *     campaign id 1..127 bytes of [A-Za-z0-9_.:-] (it is part of key names)
 *     var name    1..64 bytes of [A-Za-z0-9_.-]
 *     var value   <= Q_VALUE_MAX bytes, any bytes (templates escape them)
 * THREADS
 *   Pure functions.
 */
#ifndef VOLLEY_QUEUE_VALIDATE_H
#define VOLLEY_QUEUE_VALIDATE_H

#include <stddef.h>

#define Q_VAR_NAME_MAX 64

/* q_addr_valid - 1 when p[n] is an acceptable recipient address */
int q_addr_valid(const char *p, size_t n);
/* q_campaign_id_valid - 1 when p[n] may be used as a campaign id */
int q_campaign_id_valid(const char *p, size_t n);
/* q_var_name_valid - 1 when p[n] may name a variable */
int q_var_name_valid(const char *p, size_t n);

#endif
