/*
 * NAME
 *   unsub_token - signed one-click unsubscribe tokens (layout in unsub_token.h)
 */
#include "unsub_token.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "base32.h"

/* token_mac - the first UNSUB_MAC_BYTES of HMAC-SHA256(key, "unsub\0" bin[n]) */
static void token_mac(const struct verp_key *k, const uint8_t *bin, size_t n, uint8_t *out)
{
    uint8_t md[32];
    verp_hmac(k, "unsub", 6, bin, n, md);
    memcpy(out, md, UNSUB_MAC_BYTES);
}

int unsub_token_make(const struct verp_key *k, const char *campaign, size_t clen, const char *to, size_t tolen,
                     char *out, size_t outlen)
{
    if (clen == 0 || clen > 127 || tolen == 0 || tolen > 254)
        return -EINVAL;
    uint8_t bin[UNSUB_BIN_MAX];
    size_t n = 0;
    bin[n++] = (uint8_t)clen;
    memcpy(bin + n, campaign, clen);
    n += clen;
    for (size_t i = 0; i < tolen; i++)
        bin[n++] = (uint8_t)tolower((unsigned char)to[i]);
    token_mac(k, bin, n, bin + n);
    n += UNSUB_MAC_BYTES;
    size_t tl = b32_encode(bin, n, out, outlen);
    return tl ? (int)tl : -EINVAL;
}

int unsub_url(const struct verp_key *k, const char *base, const char *campaign, size_t clen, const char *to,
              size_t tolen, char *out, size_t outlen)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    if (bl + 3 >= outlen)
        return -EINVAL;
    memcpy(out, base, bl);
    memcpy(out + bl, "/u/", 3);
    int tl = unsub_token_make(k, campaign, clen, to, tolen, out + bl + 3, outlen - bl - 3);
    return tl < 0 ? tl : (int)bl + 3 + tl;
}

int unsub_token_parse(const struct verp_key *k, const char *tok, size_t n, char *camp, size_t camplen, char *addr,
                      size_t addrlen)
{
    uint8_t bin[UNSUB_BIN_MAX];
    int bl = b32_decode(tok, n, bin, sizeof bin);
    if (bl < 1 + 1 + 1 + UNSUB_MAC_BYTES)
        return -EINVAL;
    size_t clen = bin[0];
    if (clen == 0 || 1 + clen + 1 + UNSUB_MAC_BYTES > (size_t)bl)
        return -EINVAL;
    size_t body = (size_t)bl - UNSUB_MAC_BYTES, alen = body - 1 - clen;
    uint8_t want[UNSUB_MAC_BYTES];
    token_mac(k, bin, body, want);
    if (CRYPTO_memcmp(want, bin + body, UNSUB_MAC_BYTES) != 0)
        return -EBADMSG;
    if (clen >= camplen || alen >= addrlen || memchr(bin + 1, 0, clen + alen))
        return -EINVAL;
    memcpy(camp, bin + 1, clen);
    camp[clen] = '\0';
    memcpy(addr, bin + 1 + clen, alen);
    addr[alen] = '\0';
    return 0;
}
