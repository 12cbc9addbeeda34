/*
 * NAME
 *   dkim - RFC 6376 rsa-sha256 and RFC 8463 ed25519-sha256 signing
 * SYNOPSIS
 *   struct dkim_signer *s = dkim_signer_new(cfg, err, sizeof err);   // at startup
 *   dkim_sign(s, msg, len, &sighdrs, err, sizeof err);  // per message
 *   send sighdrs then msg
 * DESCRIPTION
 *   Keys come from the [dkim] section of volley.conf ("key = DOMAIN SELECTOR
 *   rsa|ed25519 PATH"); they are loaded once. A message is signed with every
 *   key whose domain equals the From domain (dual signing when both an RSA
 *   and an Ed25519 key exist); a message whose From domain has no key is
 *   left unsigned (dkim_sign appends nothing and returns 0). A message
 *   with no From, several From headers or several mailboxes in From is
 *   refused (-EINVAL): there is no single domain to sign for.
 *   Canonicalisation relaxed/relaxed; signed headers: From (over-signed),
 *   To, Subject, Date, Message-ID, MIME-Version, Content-Type, Reply-To,
 *   List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID (those present).
 * OWNERSHIP
 *   The caller owns `out`; DKIM-Signature header fields (CRLF-terminated) are
 *   appended to it, to be sent before the message.
 * THREADS
 *   A signer holds reusable digest/sign contexts: one signer per thread
 *   (call dkim_signer_new in each worker thread).
 */
#ifndef VOLLEY_TEMPLATES_DKIM_H
#define VOLLEY_TEMPLATES_DKIM_H

#include <stddef.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/config.h"

struct dkim_signer;

/* dkim_signer_new - NULL with err naming the file when a key is missing or unreadable */
struct dkim_signer *dkim_signer_new(const struct vconfig *cfg, char *err, size_t errlen);
void dkim_signer_free(struct dkim_signer *s);
/* dkim_signer_record - append the DNS TXT value publishing the public half of key i (cfg->dkim[i]):
 * "v=DKIM1; k=rsa|ed25519; p=BASE64"; 0 or -EINVAL with err (`volley check --dkim`) */
int dkim_signer_record(const struct dkim_signer *s, int i, vbuf *txt, char *err, size_t errlen);
/* dkim_sign - msg is a complete CRLF message (not dot-stuffed); 0 or -errno with err */
int dkim_sign(struct dkim_signer *s, const char *msg, size_t len, vbuf *out, char *err, size_t errlen);
/* dkim_sign_at - dkim_sign with the signing time (t=) given: tools and tests */
int dkim_sign_at(struct dkim_signer *s, const char *msg, size_t len, time_t now, vbuf *out, char *err, size_t errlen);

/* Building blocks, exported for tests and tools. Any thread; no signer needed. */
/* dkim_canon_header - append the relaxed form (RFC 6376 3.4.2) of one header field
 * ("Name: value", CRLF optional) plus CRLF to out; -EINVAL when it has no colon */
int dkim_canon_header(const char *field, size_t len, vbuf *out);
/* dkim_canon_body - append the relaxed form (RFC 6376 3.4.4) of a message body to out */
void dkim_canon_body(const char *body, size_t len, vbuf *out);
/* dkim_from_domain - the domain of the single mailbox in a From field value (the text
 * after the colon, folding allowed); *dom points into value; -EINVAL when there is
 * not exactly one mailbox with a domain */
int dkim_from_domain(const char *value, size_t len, const char **dom, size_t *domlen);

#endif
