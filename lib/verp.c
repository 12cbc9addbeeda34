/*
 * NAME
 *   verp - job tags for the return path (see verp.h for the layout)
 */
#include "verp.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base32.h"
#include "err.h"
#include "file.h"

/*
 * The SHA256_* calls are deprecated in OpenSSL 3.0 (not removed) in favour of EVP, whose contexts are heap
 * objects: keeping the keyed states in the key needs the plain struct. The calls are confined to these two
 * functions.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
int verp_key_init(struct verp_key *k, const void *secret, size_t n)
{
    memset(k, 0, sizeof(*k));
    if (n < VERP_KEY_MIN || n > VERP_KEY_MAX)
        return -EINVAL;
    memcpy(k->k, secret, n);
    k->len = n;
    uint8_t blk[64], ip[64], op[64];
    memset(blk, 0, sizeof blk);
    if (n > sizeof blk)
        SHA256(secret, n, blk);
    else
        memcpy(blk, secret, n);
    for (int i = 0; i < 64; i++) {
        ip[i] = blk[i] ^ 0x36;
        op[i] = blk[i] ^ 0x5c;
    }
    SHA256_Init(&k->ipad);
    SHA256_Update(&k->ipad, ip, sizeof ip);
    SHA256_Init(&k->opad);
    SHA256_Update(&k->opad, op, sizeof op);
    OPENSSL_cleanse(blk, sizeof blk);
    OPENSSL_cleanse(ip, sizeof ip);
    OPENSSL_cleanse(op, sizeof op);
    return 0;
}

void verp_hmac(const struct verp_key *k, const void *a, size_t an, const void *b, size_t bn, uint8_t md[32])
{
    SHA256_CTX c = k->ipad;
    SHA256_Update(&c, a, an);
    SHA256_Update(&c, b, bn);
    uint8_t in[SHA256_DIGEST_LENGTH];
    SHA256_Final(in, &c);
    c = k->opad;
    SHA256_Update(&c, in, sizeof in);
    SHA256_Final(md, &c);
}
#pragma GCC diagnostic pop

int verp_key_load(struct verp_key *k, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    memset(k, 0, sizeof(*k));
    int rc = file_read(path, 4096, &text, &len, err, errlen);
    if (rc < 0)
        return rc;
    size_t n = strcspn(text, "\r\n");
    if (n < VERP_KEY_MIN || n > VERP_KEY_MAX) {
        OPENSSL_cleanse(text, len);
        free(text);
        return err_set(err, errlen, -EINVAL, "%s: the secret must be %d to %d bytes on its first line", path,
                       VERP_KEY_MIN, VERP_KEY_MAX);
    }
    verp_key_init(k, text, n);
    OPENSSL_cleanse(text, len);
    free(text);
    return 0;
}

/* keyed - the first 4 bytes of HMAC-SHA256(key, label "\0" s), s lower-cased when asked, big-endian */
static uint32_t keyed(const struct verp_key *k, const char *label, const char *s, size_t n, int lower)
{
    uint8_t in[8 + 320];
    size_t ll = strlen(label) + 1;
    if (n > sizeof(in) - ll)
        n = sizeof(in) - ll;
    memcpy(in, label, ll);
    for (size_t i = 0; i < n; i++)
        in[ll + i] = lower ? (uint8_t)tolower((unsigned char)s[i]) : (uint8_t)s[i];
    uint8_t md[SHA256_DIGEST_LENGTH];
    verp_hmac(k, in, ll + n, NULL, 0, md);
    return (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
}

uint32_t verp_camp_hash(const struct verp_key *k, const char *campaign, size_t clen)
{
    return keyed(k, "camp", campaign, clen, 0);
}

uint32_t verp_rcpt_hash(const struct verp_key *k, const char *to, size_t tolen)
{
    return keyed(k, "rcpt", to, tolen, 1) >> 8;
}

/* mac - the first VERP_MAC_BYTES of HMAC-SHA256(key, bin[n]) */
static void mac(const struct verp_key *k, const uint8_t *bin, size_t n, uint8_t *out)
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    verp_hmac(k, bin, n, NULL, 0, md);
    memcpy(out, md, VERP_MAC_BYTES);
}

/* parse_id - "<ms>-<seq>", both decimal without overflow, ms below 2^48 */
static int parse_id(const char *id, uint64_t *ms, uint64_t *seq)
{
    char *end;
    if (!isdigit((unsigned char)id[0]))
        return -EINVAL;
    errno = 0;
    unsigned long long a = strtoull(id, &end, 10);
    if (errno || *end != '-' || !isdigit((unsigned char)end[1]) || a >= (1ULL << 48))
        return -EINVAL;
    unsigned long long b = strtoull(end + 1, &end, 10);
    if (errno || *end != '\0')
        return -EINVAL;
    *ms = a;
    *seq = b;
    return 0;
}

int verp_tag_make(const struct verp_key *k, const char *job_id, const char *campaign, size_t clen, const char *to,
                  size_t tolen, char *out, size_t outlen)
{
    uint64_t ms, seq;
    if (parse_id(job_id, &ms, &seq) < 0)
        return -EINVAL;
    uint8_t bin[VERP_BIN_MAX];
    size_t n = 0;
    for (int i = 5; i >= 0; i--)
        bin[n++] = (uint8_t)(ms >> (8 * i));
    do {
        uint8_t b = seq & 0x7f;
        seq >>= 7;
        bin[n++] = (uint8_t)(b | (seq ? 0x80 : 0));
    } while (seq);
    uint32_t ch = verp_camp_hash(k, campaign, clen), rh = verp_rcpt_hash(k, to, tolen);
    for (int i = 3; i >= 0; i--)
        bin[n++] = (uint8_t)(ch >> (8 * i));
    for (int i = 2; i >= 0; i--)
        bin[n++] = (uint8_t)(rh >> (8 * i));
    mac(k, bin, n, bin + n);
    n += VERP_MAC_BYTES;
    size_t tl = b32_encode(bin, n, out, outlen);
    return tl ? (int)tl : -EINVAL;
}

int verp_tag_parse(const struct verp_key *k, const char *tag, size_t n, struct verp_job *j)
{
    uint8_t bin[VERP_BIN_MAX];
    int bl = b32_decode(tag, n, bin, sizeof bin);
    if (bl < 6 + 1 + 4 + 3 + VERP_MAC_BYTES)
        return -EINVAL;
    size_t p = 0;
    uint64_t ms = 0, seq = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | bin[p++];
    for (int shift = 0;; shift += 7) {
        if (shift > 63 || p >= (size_t)bl)
            return -EINVAL;
        uint8_t b = bin[p++];
        seq |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    if ((size_t)bl != p + 4 + 3 + VERP_MAC_BYTES)
        return -EINVAL;
    uint32_t ch = 0, rh = 0;
    for (int i = 0; i < 4; i++)
        ch = ch << 8 | bin[p++];
    for (int i = 0; i < 3; i++)
        rh = rh << 8 | bin[p++];
    uint8_t want[VERP_MAC_BYTES];
    mac(k, bin, p, want);
    if (CRYPTO_memcmp(want, bin + p, VERP_MAC_BYTES) != 0)
        return -EBADMSG;
    j->ms = ms;
    j->seq = seq;
    j->camp_h = ch;
    j->rcpt_h = rh;
    return 0;
}

void verp_job_id(const struct verp_job *j, char *out, size_t outlen)
{
    snprintf(out, outlen, "%llu-%llu", (unsigned long long)j->ms, (unsigned long long)j->seq);
}

int verp_address(const char *mail_from, const char *tag, size_t taglen, const char *domain, char *out, size_t outlen)
{
    size_t ll = strcspn(mail_from, "@+");
    if (taglen + 2 > VERP_LOCAL_MAX)
        return -EINVAL;
    if (ll + 1 + taglen > VERP_LOCAL_MAX)
        ll = VERP_LOCAL_MAX - 1 - taglen;
    if (ll == 0) {
        mail_from = "bounce";
        ll = 6;
    }
    int n = snprintf(out, outlen, "%.*s+%.*s@%s", (int)ll, mail_from, (int)taglen, tag, domain);
    return n > 0 && (size_t)n < outlen ? 0 : -EINVAL;
}

int verp_split(const char *addr, size_t n, const char *domain, const char **tag, size_t *taglen)
{
    const char *at = memrchr(addr, '@', n);
    size_t dl = strlen(domain);
    if (at == NULL || (size_t)(addr + n - at - 1) != dl || strncasecmp(at + 1, domain, dl) != 0)
        return -ENOENT;
    const char *plus = memrchr(addr, '+', (size_t)(at - addr));
    if (plus == NULL || plus + 1 == at)
        return -ENOENT;
    *tag = plus + 1;
    *taglen = (size_t)(at - plus - 1);
    return 0;
}
