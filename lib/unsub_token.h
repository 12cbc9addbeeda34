/*
 * NAME
 *   unsub_token - the signed token of an RFC 8058 one-click unsubscribe URL
 * SYNOPSIS
 *   char url[UNSUB_URL_MAX];
 *   unsub_url(&key, "https://unsub.example.com", campaign, clen, to, tolen, url, sizeof url);
 *       -> "https://unsub.example.com/u/<token>"
 *   char camp[128], addr[256];
 *   int rc = unsub_token_parse(&key, tok, n, camp, sizeof camp, addr, sizeof addr);  // -EBADMSG: tampered
 * DESCRIPTION
 *   token = base32(len(campaign) as one byte, campaign, lower-cased address,
 *   the first UNSUB_MAC_BYTES of HMAC-SHA256(secret, "unsub\0" everything
 *   before it)). The campaign and the address are in the clear (the token
 *   names them, so `volley inbound` needs no lookup), the MAC stops anyone
 *   from unsubscribing another address or changing the campaign. The
 *   secret is the VERP one ([feedback] secret_file), with its own label.
 * THREADS
 *   Pure functions over a read-only key.
 */
#ifndef VOLLEY_UNSUB_TOKEN_H
#define VOLLEY_UNSUB_TOKEN_H

#include <stddef.h>

#include "lib/verp.h"

#define UNSUB_MAC_BYTES 12
#define UNSUB_BIN_MAX   (1 + 127 + 254 + UNSUB_MAC_BYTES)
#define UNSUB_TOKEN_MAX ((UNSUB_BIN_MAX * 8 + 4) / 5 + 1)
#define UNSUB_URL_MAX   (256 + 3 + UNSUB_TOKEN_MAX)

/* unsub_token_make - the token into out (NUL-terminated); its length, or -EINVAL (too long, no space) */
int unsub_token_make(const struct verp_key *k, const char *campaign, size_t clen, const char *to, size_t tolen,
                     char *out, size_t outlen);
/* unsub_url - "<base>/u/<token>" (a trailing '/' of base dropped); its length, or -EINVAL */
int unsub_url(const struct verp_key *k, const char *base, const char *campaign, size_t clen, const char *to,
              size_t tolen, char *out, size_t outlen);
/*
 * unsub_token_parse - 0 with the campaign and the (lower-case) address NUL-terminated in camp and addr;
 * -EINVAL not a token, -EBADMSG the MAC does not match
 */
int unsub_token_parse(const struct verp_key *k, const char *tok, size_t n, char *camp, size_t camplen, char *addr,
                      size_t addrlen);

#endif
