/*
 * NAME
 *   verp - the traceable return path: job tags, their HMAC, and the VERP address
 * SYNOPSIS
 *   struct verp_key k;
 *   if (verp_key_load(&k, cfg.feedback_secret_file, err, sizeof err) < 0) -> exit 2
 *   char tag[VERP_TAG_MAX];
 *   int tl = verp_tag_make(&k, job_id, campaign, clen, to, tolen, tag, sizeof tag);
 *   char from[VERP_ADDR_MAX];
 *   verp_address("bounces@shop.example", tag, tl, "bounce.shop.example", from, sizeof from);
 *       -> "bounces+<tag>@bounce.shop.example"
 *   struct verp_job j;
 *   int rc = verp_tag_parse(&k, tag, tl, &j);   // 0, -EINVAL malformed, -EBADMSG forged (HMAC)
 * DESCRIPTION
 *   A tag is base32 (lib/base32.h) of, in order: the job's stream entry id
 *   as 6 bytes of ms and a LEB128 sequence number, 4 bytes naming the
 *   campaign, 3 bytes naming the recipient, then the first VERP_MAC_BYTES
 *   of HMAC-SHA256(secret, everything before it). The campaign and
 *   recipient bytes are keyed hashes (HMAC-SHA256 of "camp\0" id and
 *   "rcpt\0" lower-cased address, truncated), not the strings themselves:
 *   a campaign id may be 127 bytes and an address 254, while the local part
 *   of an address is at most 64 (RFC 5321 4.5.3.1.1). A usual tag is 34
 *   characters; `volley inbound` maps the campaign bytes back to an id by
 *   hashing the ids it finds in Redis (inbound/resolve.c) and checks a
 *   report's recipient against the recipient bytes.
 *   The MAC is 64 bits: forging a tag takes about 2^63 guesses, each one a
 *   mail to the inbound server.
 * THREADS
 *   Any thread; a loaded key is read-only.
 */
#ifndef VOLLEY_VERP_H
#define VOLLEY_VERP_H

#include <openssl/sha.h>
#include <stddef.h>
#include <stdint.h>

#define VERP_KEY_MAX   128
#define VERP_KEY_MIN   16 /* bytes of secret: shorter is refused */
#define VERP_MAC_BYTES 8
#define VERP_BIN_MAX   (6 + 10 + 4 + 3 + VERP_MAC_BYTES)
#define VERP_TAG_MAX   56 /* base32 of VERP_BIN_MAX, NUL */
#define VERP_LOCAL_MAX 64
#define VERP_ADDR_MAX  (VERP_LOCAL_MAX + 1 + 255 + 1)

struct verp_key {
    uint8_t k[VERP_KEY_MAX];
    size_t len; /* 0: no key (feedback off) */
    /* HMAC-SHA256's inner and outer states with the key absorbed (verp_key_init): a MAC is then two short
     * hashes and no allocation; OpenSSL 3's HMAC() one-shot costs ~3 us per call, most of it set-up */
    SHA256_CTX ipad, opad;
};

/* what a tag says */
struct verp_job {
    uint64_t ms, seq; /* the job's entry id, "<ms>-<seq>" */
    uint32_t camp_h;  /* verp_camp_hash of the campaign id */
    uint32_t rcpt_h;  /* verp_rcpt_hash of the recipient */
};

/* verp_key_init - a key from secret bytes (VERP_KEY_MIN..VERP_KEY_MAX); -EINVAL otherwise */
int verp_key_init(struct verp_key *k, const void *secret, size_t n);
/* verp_hmac - HMAC-SHA256 under k of the concatenation of a[an] and b[bn] (either may be empty) into md[32] */
void verp_hmac(const struct verp_key *k, const void *a, size_t an, const void *b, size_t bn, uint8_t md[32]);
/* verp_key_load - the secret: the first line of path (newline stripped), VERP_KEY_MIN..VERP_KEY_MAX bytes */
int verp_key_load(struct verp_key *k, const char *path, char *err, size_t errlen);
/* verp_camp_hash - the 32 bits that name a campaign id in a tag */
uint32_t verp_camp_hash(const struct verp_key *k, const char *campaign, size_t clen);
/* verp_rcpt_hash - the 24 bits that name a recipient (compared lower-cased) in a tag */
uint32_t verp_rcpt_hash(const struct verp_key *k, const char *to, size_t tolen);
/* verp_tag_make - the tag of a job into out (NUL-terminated); its length, or -EINVAL (job id not "<ms>-<seq>") */
int verp_tag_make(const struct verp_key *k, const char *job_id, const char *campaign, size_t clen, const char *to,
                  size_t tolen, char *out, size_t outlen);
/* verp_tag_parse - 0 with *j filled, -EINVAL not a tag, -EBADMSG the MAC does not match (forged or another key) */
int verp_tag_parse(const struct verp_key *k, const char *tag, size_t n, struct verp_job *j);
/* verp_job_id - "<ms>-<seq>" of a parsed tag into out[outlen] */
void verp_job_id(const struct verp_job *j, char *out, size_t outlen);
/*
 * verp_address - "<local>+<tag>@<domain>" into out: local is mail_from's local part (up to its '@' or a
 * '+' already there), cut so the whole local part fits VERP_LOCAL_MAX; -EINVAL when the tag alone does not fit
 */
int verp_address(const char *mail_from, const char *tag, size_t taglen, const char *domain, char *out, size_t outlen);
/*
 * verp_split - the tag of a VERP address for domain (case-insensitive): the part after the last plus sign of the
 * local part; 0 with *tag and *taglen set, -ENOENT another domain or no '+'
 */
int verp_split(const char *addr, size_t n, const char *domain, const char **tag, size_t *taglen);

#endif
