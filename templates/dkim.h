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
 *   left unsigned (dkim_sign appends nothing and returns 0).
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

#include "lib/buf.h"
#include "lib/config.h"

struct dkim_signer;

/* dkim_signer_new - NULL with err naming the file when a key is missing or unreadable */
struct dkim_signer *dkim_signer_new(const struct vconfig *cfg, char *err, size_t errlen);
void dkim_signer_free(struct dkim_signer *s);
/* dkim_sign - msg is a complete CRLF message (not dot-stuffed); 0 or -errno with err */
int dkim_sign(struct dkim_signer *s, const char *msg, size_t len, vbuf *out, char *err, size_t errlen);

#endif
