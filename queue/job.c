/*
 * NAME
 *   job - parse jobs out of an XREADGROUP reply; the contract's field rules
 * DESCRIPTION
 *   Entries come from whoever can write to Redis, so every field is
 *   checked (queue/validate.h) and a bad entry becomes a job with `error`
 *   set rather than a crash or a silently dropped message. Each job is one
 *   allocation: the struct, then the vars array, then the string bytes.
 */
#include "queue/job.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/decimal.h"
#include "queue/validate.h"

int q_addr_valid(const char *p, size_t n)
{
    size_t at = n;
    if (n == 0 || n > Q_ADDR_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == 0x7f || c == '<' || c == '>')
            return 0;
        if (c == '@') {
            if (at != n)
                return 0; /* a second '@' */
            at = i;
        }
    }
    return at != n && at > 0 && at <= 64 && n - at - 1 > 0 && n - at - 1 <= 255;
}

int q_campaign_id_valid(const char *p, size_t n)
{
    if (n == 0 || n >= Q_CAMPAIGN_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == ':' || c == '-'))
            return 0;
    }
    return 1;
}

int q_var_name_valid(const char *p, size_t n)
{
    if (n == 0 || n > Q_VAR_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* is_str - a bulk string reply (field names and values are always bulk strings) */
static int is_str(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_STRING;
}

/* field_is - the field name equals the NUL-terminated s */
static int field_is(const redisReply *f, const char *s, size_t n)
{
    return f->len == n && memcmp(f->str, s, n) == 0;
}

/* parse_attempt - decimal 1..1000000 */
static int parse_attempt(const redisReply *v, int *out)
{
    uint64_t x;
    if (!dec_u64(v->str, v->len, 7, &x) || x < 1 || x > 1000000)
        return -EINVAL;
    *out = (int)x;
    return 0;
}

/* parse_first_ms - decimal wall-clock ms, at most 15 digits (year 33658) */
static int parse_first_ms(const char *p, size_t n, uint64_t *out)
{
    return dec_u64(p, n, 15, out) ? 0 : -EINVAL;
}

/*
 * q_job_id_ok - the id goes into XACK, key names and the Message-ID header, so a NUL (which would cut it
 * short) or a CR/LF must never get through
 */
int q_job_id_ok(const char *id, size_t len)
{
    size_t dash = 0;
    if (len == 0 || len >= Q_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (id[i] == '-' && dash == 0 && i > 0)
            dash = i;
        else if (id[i] < '0' || id[i] > '9')
            return 0;
    }
    return dash > 0 && dash + 1 < len;
}

/*
 * entry_shape_ok - [id, fields-or-nil] with a sane id: anything else means
 * the reply is not from XREADGROUP or our scripts
 */
static int entry_shape_ok(const redisReply *e)
{
    if (e == NULL || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]))
        return 0;
    if (!q_job_id_ok(e->element[0]->str, e->element[0]->len))
        return 0;
    const redisReply *f = e->element[1];
    return f->type == REDIS_REPLY_NIL || f->type == REDIS_REPLY_ARRAY;
}

/* parse_entry - one stream entry as one allocation; never fails, sets error instead */
static struct q_job *parse_entry(const redisReply *e)
{
    const redisReply *id = e->element[0], *fl = e->element[1];
    const redisReply *camp = NULL, *to = NULL;
    const char *error = NULL;
    size_t nvars = 0, strbytes = 0;
    int attempt = 1;
    uint64_t first_ms = 0;
    /* a stream id starts with the ms it was added: the first attempt of a new job is measured from it */
    parse_first_ms(id->str, strcspn(id->str, "-"), &first_ms);

    if (fl->type == REDIS_REPLY_NIL) {
        error = "entry deleted";
    } else if (fl->elements % 2 != 0) {
        error = "malformed entry";
    } else {
        /* pass 1: find the fields, check them, size the allocation */
        for (size_t i = 0; i < fl->elements && error == NULL; i += 2) {
            const redisReply *k = fl->element[i], *v = fl->element[i + 1];
            if (!is_str(k) || !is_str(v)) {
                error = "malformed entry";
            } else if (field_is(k, "to", 2)) {
                to = v;
            } else if (field_is(k, "campaign", 8)) {
                camp = v;
            } else if (field_is(k, "attempt", 7)) {
                if (parse_attempt(v, &attempt) < 0)
                    error = "invalid attempt";
            } else if (field_is(k, "first_ms", 8)) {
                if (parse_first_ms(v->str, v->len, &first_ms) < 0)
                    error = "invalid first_ms";
            } else if (k->len > 4 && memcmp(k->str, "var.", 4) == 0) {
                if (!q_var_name_valid(k->str + 4, k->len - 4))
                    error = "invalid variable name";
                else if (v->len > Q_VALUE_MAX)
                    error = "variable value too long";
                else if (++nvars > Q_VAR_MAX)
                    error = "too many variables";
                else
                    strbytes += k->len - 4 + 1 + v->len + 1;
            }
            /* unknown fields are ignored: producers may add their own bookkeeping */
        }
        if (error == NULL && to == NULL)
            error = "missing 'to' field";
        else if (error == NULL && camp == NULL)
            error = "missing 'campaign' field";
        if (to != NULL && !q_addr_valid(to->str, to->len)) {
            to = NULL;
            if (error == NULL)
                error = "invalid recipient address";
        }
        if (camp != NULL && !q_campaign_id_valid(camp->str, camp->len)) {
            camp = NULL;
            if (error == NULL)
                error = "invalid campaign id";
        }
    }
    if (error != NULL) {
        /* a job in error carries no variables: only what the event needs */
        nvars = 0;
        strbytes = 0;
    }
    strbytes += (camp ? camp->len : 0) + 1 + (to ? to->len : 0) + 1;

    struct q_job *j = xmalloc(sizeof(*j) + nvars * sizeof(struct kv) + strbytes);
    memset(j, 0, sizeof(*j));
    memcpy(j->id, id->str, id->len);
    j->id[id->len] = '\0';
    j->vars = (struct kv *)(j + 1);
    char *s = (char *)(j->vars + nvars);
    j->attempt = attempt;
    j->error = error;
    j->first_ms = first_ms;

    j->campaign = s;
    j->campaign_len = camp ? camp->len : 0;
    if (camp)
        memcpy(s, camp->str, camp->len);
    s += j->campaign_len;
    *s++ = '\0';
    j->to = s;
    j->to_len = to ? to->len : 0;
    if (to)
        memcpy(s, to->str, to->len);
    s += j->to_len;
    *s++ = '\0';

    if (nvars > 0) {
        for (size_t i = 0; i < fl->elements; i += 2) {
            const redisReply *k = fl->element[i], *v = fl->element[i + 1];
            if (!(k->len > 4 && memcmp(k->str, "var.", 4) == 0))
                continue;
            struct kv *kv = &j->vars[j->nvars++];
            kv->k = s;
            kv->klen = k->len - 4;
            memcpy(s, k->str + 4, kv->klen);
            s += kv->klen;
            *s++ = '\0';
            kv->v = s;
            kv->vlen = v->len;
            memcpy(s, v->str, v->len);
            s += v->len;
            *s++ = '\0';
        }
    }
    return j;
}

int q_jobs_parse(const redisReply *r, struct q_job **out, int max)
{
    if (r == NULL)
        return -EPROTO;
    if (r->type == REDIS_REPLY_NIL)
        return 0;
    if (r->type != REDIS_REPLY_ARRAY)
        return -EPROTO;
    /* [[stream-name, [entry, ...]], ...]: check the whole shape before allocating so an error leaves nothing half-built
     */
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *s = r->element[k];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 || !is_str(s->element[0]) ||
            s->element[1]->type != REDIS_REPLY_ARRAY)
            return -EPROTO;
        const redisReply *es = s->element[1];
        for (size_t i = 0; i < es->elements; i++)
            if (!entry_shape_ok(es->element[i]))
                return -EPROTO;
    }
    int n = 0;
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *s = r->element[k], *es = s->element[1];
        static const char high_sfx[] = ":jobs:high";
        size_t hl = sizeof(high_sfx) - 1;
        int high = s->element[0]->len >= hl && memcmp(s->element[0]->str + s->element[0]->len - hl, high_sfx, hl) == 0;
        for (size_t i = 0; i < es->elements && n < max; i++) {
            struct q_job *j = parse_entry(es->element[i]);
            j->high = high;
            out[n++] = j;
        }
    }
    return n;
}

void q_job_free(struct q_job *j)
{
    free(j);
}
