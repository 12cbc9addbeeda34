/*
 * NAME
 *   smtp_stage - the table of SMTP session steps
 * DESCRIPTION
 *   Rows are designated by their enum value, so reordering the enum cannot
 *   shift a name or a timeout onto the wrong step. A value added to the
 *   enum without a row trips the assertion in smtp_stage_info (and
 *   tests/engine/test_smtp_outcome.c, which walks every value). The timeouts follow RFC 5321 4.5.3.2; EHLO, HELO,
 * STARTTLS, AUTH, RSET, QUIT and the TLS handshake share ehlo_timeout_ms.
 */
#include "engine/smtp_stage.h"

#include <assert.h>
#include <stdlib.h>

#define ROW(n, key, field, hs, tx, ok)                                                                                 \
    {                                                                                                                  \
        .name = (n), .timeout_key = (key), .timeout_off = offsetof(struct vconfig, field), .handshake = (hs),          \
        .txn = (tx), .accept = (ok)                                                                                    \
    }
/* a transaction's last step: its 2xx delivers the message */
#define FINAL_ROW(n, key, field)                                                                                       \
    {                                                                                                                  \
        .name = (n), .timeout_key = (key), .timeout_off = offsetof(struct vconfig, field), .handshake = false,         \
        .txn = true, .accept = 0, .final = true                                                                        \
    }

static const struct smtp_stage_info stages[SMTP_STAGE_COUNT] = {
    [SMTP_STAGE_CONNECT] = ROW("connect", "connect_timeout_ms", timeout_connect_ms, true, false, 0),
    [SMTP_STAGE_TLS] = ROW("TLS handshake", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 0),
    [SMTP_STAGE_GREETING] = ROW("greeting", "greeting_timeout_ms", timeout_greeting_ms, true, false, 220),
    [SMTP_STAGE_EHLO] = ROW("EHLO", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 0),
    [SMTP_STAGE_HELO] = ROW("HELO", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 0),
    [SMTP_STAGE_STARTTLS] = ROW("STARTTLS", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 220),
    [SMTP_STAGE_AUTH] = ROW("AUTH", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 235),
    [SMTP_STAGE_AUTH_USER] = ROW("AUTH", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 334),
    [SMTP_STAGE_AUTH_PASS] = ROW("AUTH", "ehlo_timeout_ms", timeout_ehlo_ms, true, false, 334),
    [SMTP_STAGE_MAIL] = ROW("MAIL", "mail_timeout_ms", timeout_mail_ms, false, true, 0),
    [SMTP_STAGE_RCPT] = ROW("RCPT", "rcpt_timeout_ms", timeout_rcpt_ms, false, true, 0),
    [SMTP_STAGE_DATA] = ROW("DATA", "data_timeout_ms", timeout_data_ms, false, true, 354),
    [SMTP_STAGE_DOT] = FINAL_ROW("end of data", "dot_timeout_ms", timeout_dot_ms),
    /* the reply to BDAT LAST comes once the server has taken the whole message, as after the dot */
    [SMTP_STAGE_BDAT] = FINAL_ROW("BDAT", "dot_timeout_ms", timeout_dot_ms),
    [SMTP_STAGE_RSET] = ROW("RSET", "ehlo_timeout_ms", timeout_ehlo_ms, false, false, 0),
    [SMTP_STAGE_QUIT] = ROW("QUIT", "ehlo_timeout_ms", timeout_ehlo_ms, false, false, 0),
};

const struct smtp_stage_info *smtp_stage_info(enum smtp_stage st)
{
    assert((unsigned)st < SMTP_STAGE_COUNT && stages[st].name != NULL);
    return &stages[st];
}

const char *smtp_stage_name(enum smtp_stage st)
{
    return smtp_stage_info(st)->name;
}

bool smtp_stage_accepts(enum smtp_stage st, int code)
{
    int want = smtp_stage_info(st)->accept;
    return want != 0 ? code == want : code / 100 == 2;
}

uint64_t smtp_stage_timeout_ms(const struct vconfig *cfg, enum smtp_stage st)
{
    const int *ms = (const int *)((const char *)cfg + smtp_stage_info(st)->timeout_off);
    return (uint64_t)*ms;
}
