/*
 * NAME
 *   worker_prepare - a message's preparation: its campaign (fetched once,
 *   compiled, cached, re-read now and then), the render and the DKIM
 *   signature, then routing (worker_route.c)
 * DESCRIPTION
 *   Messages whose campaign is being fetched wait on the campaign, and go on
 *   in the order they were read (a read's bulk jobs read behind a waiting
 *   high job wait on its campaign too: engine/worker.c batch_start); a
 *   campaign that cannot be read or compiled defers them and is looked at
 *   again after WORKER_CAMP_RETRY_MS.
 */
#include "engine/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/alloc.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/unsub_token.h"
#include "lib/log.h"

#include "engine/camp_ctl.h"
#include "engine/fence.h"
#include "lib/kv.h"
#include "queue/campaign.h"
#include "templates/dkim.h"
#include "templates/message.h"

#define MSG_DKIM_ROOM          4096 /* DKIM-Signature headers: a few hundred bytes each, more with big keys */
#define WORKER_CAMP_RETRY_MS   5000
#define WORKER_CAMP_REFRESH_MS 5000 /* how soon an edited campaign is picked up */

/* camp_ver_unref - drop a reference; the last one frees the compiled campaign */
void camp_ver_unref(struct camp_ver *v)
{
    if (v == NULL || --v->refs > 0)
        return;
    tpl_message_free(v->tm);
    q_campaign_free(v->qc);
    free(v);
}

/* msg_list_oldest - a list kept newest first (pushed at its head), turned oldest first */
static struct msg *msg_list_oldest(struct msg *m)
{
    struct msg *out = NULL;
    while (m) {
        struct msg *next = m->next;
        m->next = out;
        out = m;
        m = next;
    }
    return out;
}

/* camp_settle - the campaign's fate is known: release its waiting messages in the order they came, then the
 * messages read behind them (camp.behind) */
static void camp_settle(struct worker *w, struct camp *c)
{
    struct msg *m = msg_list_oldest(c->waiting);
    struct msg *after = msg_list_oldest(c->behind);
    c->waiting = c->behind = NULL;
    for (int pass = 0; pass < 2; pass++, m = after)
        while (m) {
            struct msg *next = m->next;
            m->next = NULL;
            msg_prepare(w, m);
            m = next;
        }
}

/* camp_updated - the hash's updated_ms field ("" when absent): the version stamp `volley push` writes */
static void camp_updated(const struct q_campaign *qc, char *out, size_t outlen)
{
    const struct kv *f = kv_find(qc->fields, qc->nfields, "updated_ms", 10);
    snprintf(out, outlen, "%.*s", f ? (int)(f->vlen < outlen - 1 ? f->vlen : outlen - 1) : 0, f ? f->v : "");
}

/* on_campaign - HGETALL reply: compile once, then serve every job of the campaign */
static void on_campaign(void *priv, redisReply *r)
{
    struct camp *c = priv;
    struct worker *w = c->w;
    char err[512], updated[32];
    c->refreshing = false;
    if (r == NULL) {
        /* link down: a first fetch is retried when it is back (worker_on_redis_up); a re-read keeps the cached version
         */
        if (c->state == CAMP_READY)
            camp_settle(w, c);
        return;
    }
    c->refresh_at_ms = worker_now_ms() + WORKER_CAMP_REFRESH_MS;
    struct q_campaign *qc = NULL;
    struct tpl_message *tm = NULL;
    int rc = q_campaign_parse(r, c->id, strlen(c->id), &qc);
    if (rc == 0) {
        /* the hash's state is at least as new as the read that brought the job: pause and cancel hold */
        const struct kv *st = kv_find(qc->fields, qc->nfields, "state", 5);
        c->ctl = st != NULL ? q_camp_state_from(st->v, st->vlen) : Q_CAMP_ACTIVE;
        camp_updated(qc, updated, sizeof(updated));
        if (c->ver != NULL && strcmp(updated, c->ver->updated) == 0) {
            q_campaign_free(qc); /* unchanged: keep the compiled version */
            camp_settle(w, c);
            return;
        }
        tm = tpl_message_compile(qc->fields, qc->nfields, err, sizeof(err));
        if (tm == NULL)
            snprintf(c->error, sizeof(c->error), "campaign '%s' template error: %.300s", c->id, err);
    } else if (rc == -ENOENT) {
        snprintf(c->error, sizeof(c->error), "unknown campaign '%s'", c->id);
    } else {
        snprintf(c->error, sizeof(c->error), "campaign '%s' could not be read from Redis", c->id);
    }
    camp_ver_unref(c->ver);
    c->ver = NULL;
    if (tm != NULL) {
        struct camp_ver *v = xcalloc(1, sizeof(*v));
        v->tm = tm;
        v->qc = qc;
        v->refs = 1;
        snprintf(v->updated, sizeof(v->updated), "%s", updated);
        c->ver = v;
        c->state = CAMP_READY;
    } else {
        q_campaign_free(qc);
        c->state = CAMP_BAD;
        c->retry_at_ms = worker_now_ms() + WORKER_CAMP_RETRY_MS;
        log_warn("%s", c->error);
    }
    camp_settle(w, c);
}

/* camp_fetch - ask Redis for the campaign hash */
void camp_fetch(struct worker *w, struct camp *c)
{
    if (c->state != CAMP_READY)
        c->state = CAMP_FETCHING;
    else
        c->refreshing = true;
    q_campaign_fetch(w->redis.q, &w->keys, c->id, strlen(c->id), on_campaign, c);
}

/* camp_get - the cache entry for a campaign id, fetching it on first sight and re-reading it now and then */
struct camp *camp_get(struct worker *w, const char *id, size_t idlen)
{
    uint64_t now = worker_now_ms();
    for (struct camp *c = w->camps; c; c = c->next)
        if (strlen(c->id) == idlen && memcmp(c->id, id, idlen) == 0) {
            if (w->redis.state == REDIS_UP && ((c->state == CAMP_BAD && now >= c->retry_at_ms) ||
                                               (c->state == CAMP_READY && !c->refreshing && now >= c->refresh_at_ms)))
                camp_fetch(w, c);
            return c;
        }
    struct camp *c = xcalloc(1, sizeof(*c));
    c->w = w;
    memcpy(c->id, id, idlen < Q_CAMPAIGN_ID_MAX ? idlen : Q_CAMPAIGN_ID_MAX);
    c->next = w->camps;
    w->camps = c;
    camp_fetch(w, c);
    return c;
}

/* ---- render ---- */

/* msg_prepare - check and route a message whose campaign is known (it is rendered as it goes out: msg_render) */
void msg_prepare(struct worker *w, struct msg *m)
{
    struct camp *c = m->camp;
    if (w->stopping) {
        msg_release(w, m); /* left pending in Redis: the next run sends it */
        return;
    }
    if (c->state == CAMP_FETCHING || c->refreshing) {
        /* a re-read is in flight: wait for it, so an edit is never rendered from the stale version */
        m->next = c->waiting;
        c->waiting = m;
        return;
    }
    /*
     * Each decision below may record the job without sending it, so it is made only for a job surely ours
     * (fence_owns): before the first heartbeat is confirmed, or after a lapse, the job is parked and comes
     * back here once the fence confirmed it. Deciding anyway let camp_ctl_stop decline (not ours yet) while
     * the suppression check below did not, so a paused campaign's suppressed job was recorded `suppressed`
     * or `held` depending on whether the heartbeat's reply had arrived.
     */
    if (!fence_owns(m, worker_now_ms())) {
        fence_park(w, m);
        return;
    }
    /* a paused or cancelled campaign holds or cancels even its suppressed and unsendable jobs (README) */
    if (camp_ctl_stop(w, m))
        return;
    /* suppression was checked at intake (one SMISMEMBER per batch): never sent */
    if (m->job->suppressed) {
        worker_finish_cause(w, m, SMTP_CAUSE_SUPPRESSED, "recipient is on the suppression list");
        return;
    }
    if (c->state == CAMP_BAD) {
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, c->error);
        return;
    }
    /* the version it is rendered with when it goes out: an edit meanwhile does not change it under the message */
    camp_ver_unref(m->ver);
    m->ver = c->ver;
    m->ver->refs++;
    msg_route(w, m);
}

/*
 * msg_render - the message as it goes out: rendered (and DKIM-signed) into
 * the connection's body buffer when its transaction starts, not when its
 * job is read. Rendering at intake held every message of the read-ahead
 * (up to max_inflight, ~3 KB each) in memory: tens of MB written once and
 * read once much later, each new buffer a page fault and each read a cache
 * miss, measured as the largest share of the worker's CPU (issue 12). Now
 * a connection renders into the same warm buffer message after message.
 */
int msg_render(struct worker *w, struct msg *m, vbuf *out)
{
    char err[512];
    const struct q_job *j = m->job;
    char unsub[UNSUB_URL_MAX];
    int unsub_len = -1;
    m->fb_tag[0] = '\0';
    if (w->fb_key.len > 0 && w->cfg->feedback_domain != NULL) { /* a reload may have turned feedback off */
        /* the tag rides the return path, the Message-ID and X-Volley-Job, so any report names its job */
        verp_tag_make(&w->fb_key, j->id, j->campaign, j->campaign_len, j->to, j->to_len, m->fb_tag, sizeof m->fb_tag);
        if (w->cfg->feedback_unsub_base != NULL)
            unsub_len = unsub_url(&w->fb_key, w->cfg->feedback_unsub_base, j->campaign, j->campaign_len, j->to,
                                  j->to_len, unsub, sizeof unsub);
    }
    size_t tagl = strlen(m->fb_tag);
    struct tpl_render_ctx rc = {
        .to = j->to,
        .tolen = j->to_len,
        .vars = j->vars,
        .nvars = j->nvars,
        .uniq = tagl ? m->fb_tag : j->id,
        .uniqlen = tagl ? tagl : strlen(j->id),
        .job_tag = tagl ? m->fb_tag : NULL,
        .job_taglen = tagl,
        .unsub_url = unsub_len > 0 ? unsub : NULL,
        .unsub_urllen = unsub_len > 0 ? (size_t)unsub_len : 0,
        .now = time(NULL),
        .max_bytes = w->cfg->max_message_bytes,
    };
    /*
     * Rendered in the thread's scratch buffer (it needs room for the raw body
     * and its encoding side by side), then copied into out sized once for the
     * message and its DKIM headers: a connection's buffer never holds the
     * render's working room, and doubling would hold up to twice what it needs.
     */
    vbuf_reset(&w->scratch);
    vbuf_reset(out);
    if (tpl_message_render(m->ver->tm, &rc, &w->scratch, err, sizeof(err)) < 0) {
        vbuf_shrink(&w->scratch, WORKER_BUF_KEEP_MAX); /* a refused message may have grown it to twice the limit */
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, err);
        return -EINVAL;
    }
    size_t need = vbuf_len(&w->scratch) + (w->dkim != NULL ? MSG_DKIM_ROOM : 0);
    if (out->cap < need) {
        vbuf_free(out);
        vbuf_init(out, need);
    }
    if (w->dkim != NULL &&
        dkim_sign(w->dkim, vbuf_data(&w->scratch), vbuf_len(&w->scratch), out, err, sizeof(err)) < 0) {
        char why[600];
        snprintf(why, sizeof(why), "DKIM signing failed: %s", err);
        vbuf_reset(out);
        worker_finish_cause(w, m, SMTP_CAUSE_UNSENDABLE, why);
        return -EINVAL;
    }
    vbuf_append(out, vbuf_data(&w->scratch), vbuf_len(&w->scratch));
    /* counted in the thread's held bytes (msg_hold) until m is recorded */
    m->rendered = out->cap;
    msg_hold(w, m);
    return 0;
}
