/*
 * NAME
 *   dkim - DKIM signing: RFC 6376 rsa-sha256 and RFC 8463 ed25519-sha256
 * SYNOPSIS
 *   struct dkim_signer *s = dkim_signer_new(cfg, err, sizeof err);
 *   dkim_sign(s, msg, len, &out, err, sizeof err);
 * DESCRIPTION
 *   Keys are read once from the PEM files named in [dkim]; each key keeps its
 *   own ready-made OpenSSL context so a signature costs one private-key
 *   operation and two SHA-256 passes, nothing else.
 *
 *   Per message: the header section is scanned once and every instance of
 *   a header we sign is remembered (pointers into the message, no copy).
 *   The From domain picks the keys; with none, nothing more is done. The
 *   body is canonicalised (relaxed) in a small stack chunk that is fed to
 *   SHA-256 as it fills, so the body is never copied as a whole. The signed
 *   header fields are canonicalised once into a reused buffer; each key
 *   then hashes that plus its own DKIM-Signature header (with an empty b=)
 *   and signs the digest. RSA signs the SHA-256 digest with PKCS#1 v1.5;
 *   Ed25519 (RFC 8463) signs the 32 digest bytes themselves with PureEdDSA.
 *
 *   Canonicalisation is relaxed/relaxed, RFC 6376 3.4.2 and 3.4.4. Only
 *   CRLF ends a line: a bare CR or LF is an ordinary byte, as it is for
 *   the verifiers (the message contract is CRLF, so they do not occur).
 */
#include "templates/dkim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "lib/alloc.h"
#include "lib/err.h"
#include "lib/log.h"

#define DKIM_MIN_RSA_BITS  1024
#define DKIM_GOOD_RSA_BITS 2048
/* DNS TXT records and verifiers stop being practical beyond this */
#define DKIM_MAX_RSA_BITS 4096
#define DKIM_MAX_SIG      (DKIM_MAX_RSA_BITS / 8)
/* instances of signed header fields remembered per message: far above any sane
 * message, and a bound on the h= list a hostile message could make us write */
#define DKIM_MAX_FIELDS 64
/* RFC 5321 4.5.3.1.2 domain limit */
#define DKIM_MAX_DOMAIN 255
/* fold the DKIM-Signature header before this column (RFC 5322 recommends 78) */
#define DKIM_FOLD_AT 76
/* body canonicalisation works through a stack chunk of this size */
#define DKIM_CHUNK 4096

/*
 * Header fields signed when present, in h= order. The first entry is From:
 * it is over-signed (listed once more than present) so that a From header
 * added in transit breaks the signature.
 */
static const struct {
    const char *name;
    size_t len;
} dkim_hnames[] = {
    {"from", 4},
    {"to", 2},
    {"subject", 7},
    {"date", 4},
    {"message-id", 10},
    {"mime-version", 12},
    {"content-type", 12},
    {"reply-to", 8},
    {"list-unsubscribe", 16},
    {"list-unsubscribe-post", 21},
    {"feedback-id", 11},
};
#define DKIM_NHNAMES (sizeof dkim_hnames / sizeof dkim_hnames[0])

struct dkim_key {
    char *domain; /* d=, lower case */
    size_t domainlen;
    char *selector; /* s= */
    enum config_dkim_algo algo;
    EVP_PKEY *pkey;
    /* RSA: initialised once for PKCS#1 v1.5 over a SHA-256 digest; EVP_PKEY_sign
     * may be called on it again and again */
    EVP_PKEY_CTX *rsa_ctx;
    /* Ed25519: OpenSSL offers only one-shot EVP_DigestSign; initialised at load */
    EVP_MD_CTX *ed_ctx;
    int ed_reinit; /* this OpenSSL wants the context re-initialised per signature */
};

/* one instance of a signed header field, pointing into the message */
struct dkim_field {
    const char *p; /* start of the field name */
    size_t len;    /* through the CRLF that ends the field (if any) */
    unsigned name; /* index into dkim_hnames */
};

struct dkim_signer {
    struct dkim_key keys[CONFIG_MAX_DKIM];
    int nkeys;
    EVP_MD *sha256; /* fetched once: an implicit fetch per digest costs a lock */
    EVP_MD_CTX *body_ctx;
    EVP_MD_CTX *hdr_ctx;
    vbuf canon; /* canonical signed header fields of the current message */
    vbuf sigc;  /* canonical DKIM-Signature header being signed */
    struct dkim_field fields[DKIM_MAX_FIELDS];
    int nfields;
};

/* ossl_reason - the most recent OpenSSL error as text (empties the queue) */
static const char *ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    unsigned long next;
    /* the first error queued is the root cause; drain the rest */
    while ((next = ERR_get_error()) != 0)
        ;
    if (e == 0)
        snprintf(buf, len, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

/* no_passphrase - PEM password callback: never prompt on a terminal, refuse encrypted keys */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* dkim_name_ok - a domain or selector we are willing to write into a header */
static int dkim_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DKIM_MAX_DOMAIN)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* dkim_load_key - read one PEM private key and prepare its signing context */
static int dkim_load_key(struct dkim_signer *s, struct dkim_key *k, const struct config_dkim_key *ck, char *err,
                         size_t errlen)
{
    char why[256];
    const char *path = ck->path;

    if (!dkim_name_ok(ck->domain) || !dkim_name_ok(ck->selector))
        return err_set(err, errlen, -EINVAL, "dkim key %s: domain or selector has characters not allowed in a DNS name",
                       path);
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        return err_set(err, errlen, -e, "dkim key %s: %s", path, strerror(e));
    }
    ERR_clear_error();
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!pkey)
        return err_set(err, errlen, -EINVAL, "dkim key %s: not a readable unencrypted PEM private key (%s)", path,
                       ossl_reason(why, sizeof why));
    int type = EVP_PKEY_get_base_id(pkey);
    k->pkey = pkey; /* freed by dkim_signer_free from here on */
    if (ck->algo == CONFIG_DKIM_RSA) {
        if (type != EVP_PKEY_RSA)
            return err_set(err, errlen, -EINVAL, "dkim key %s: configured as rsa but the file holds a %s key", path,
                           OBJ_nid2sn(type));
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < DKIM_MIN_RSA_BITS || bits > DKIM_MAX_RSA_BITS)
            return err_set(err, errlen, -EINVAL,
                           "dkim key %s: RSA key has %d bits; between %d and %d required (%d recommended)", path, bits,
                           DKIM_MIN_RSA_BITS, DKIM_MAX_RSA_BITS, DKIM_GOOD_RSA_BITS);
        if (bits < DKIM_GOOD_RSA_BITS)
            log_warn("dkim key %s: RSA key has %d bits; %d are recommended", path, bits, DKIM_GOOD_RSA_BITS);
        k->rsa_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!k->rsa_ctx || EVP_PKEY_sign_init(k->rsa_ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(k->rsa_ctx, RSA_PKCS1_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(k->rsa_ctx, s->sha256) <= 0)
            return err_set(err, errlen, -EINVAL, "dkim key %s: cannot set up RSA signing (%s)", path,
                           ossl_reason(why, sizeof why));
    } else {
        if (type != EVP_PKEY_ED25519)
            return err_set(err, errlen, -EINVAL, "dkim key %s: configured as ed25519 but the file holds a %s key", path,
                           OBJ_nid2sn(type));
        k->ed_ctx = EVP_MD_CTX_new();
        if (!k->ed_ctx || EVP_DigestSignInit_ex(k->ed_ctx, NULL, NULL, NULL, NULL, pkey, NULL) <= 0)
            return err_set(err, errlen, -ENOMEM, "dkim key %s: cannot set up Ed25519 signing", path);
    }
    k->algo = ck->algo;
    k->domain = xstrdup(ck->domain);
    for (char *c = k->domain; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    k->domainlen = strlen(k->domain);
    k->selector = xstrdup(ck->selector);
    return 0;
}

/* dkim_signer_new - load every configured key; NULL with err naming the file on failure */
struct dkim_signer *dkim_signer_new(const struct vconfig *cfg, char *err, size_t errlen)
{
    struct dkim_signer *s = xcalloc(1, sizeof *s);
    vbuf_init(&s->canon, 2048);
    vbuf_init(&s->sigc, 1024);
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->body_ctx = EVP_MD_CTX_new();
    s->hdr_ctx = EVP_MD_CTX_new();
    if (!s->sha256 || !s->body_ctx || !s->hdr_ctx) {
        err_set(err, errlen, -ENOSYS, "dkim: OpenSSL has no SHA-256");
        goto fail;
    }
    for (int i = 0; i < cfg->ndkim; i++) {
        s->nkeys++; /* counted first so a half-built key is freed too */
        if (dkim_load_key(s, &s->keys[i], &cfg->dkim[i], err, errlen) < 0)
            goto fail;
    }
    return s;
fail:
    dkim_signer_free(s);
    return NULL;
}

/* dkim_signer_free - release keys and contexts; NULL is fine */
void dkim_signer_free(struct dkim_signer *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nkeys; i++) {
        struct dkim_key *k = &s->keys[i];
        EVP_PKEY_CTX_free(k->rsa_ctx);
        EVP_MD_CTX_free(k->ed_ctx);
        EVP_PKEY_free(k->pkey);
        free(k->domain);
        free(k->selector);
    }
    EVP_MD_CTX_free(s->body_ctx);
    EVP_MD_CTX_free(s->hdr_ctx);
    EVP_MD_free(s->sha256);
    vbuf_free(&s->canon);
    vbuf_free(&s->sigc);
    free(s);
}

static inline int is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* canon_header - relaxed header canonicalisation (RFC 6376 3.4.2) of one field into out */
static int canon_header(const char *f, size_t len, vbuf *out, int crlf)
{
    const char *colon = memchr(f, ':', len);
    if (!colon)
        return -EINVAL;
    size_t nlen = (size_t)(colon - f);
    /* WSP before the colon is not part of the name */
    while (nlen > 0 && (is_wsp(f[nlen - 1]) || f[nlen - 1] == '\r' || f[nlen - 1] == '\n'))
        nlen--;
    /* the canonical form is never longer than the input plus a CRLF */
    char *w = vbuf_reserve(out, len + 2);
    char *w0 = w;
    for (size_t i = 0; i < nlen; i++) {
        char c = f[i];
        *w++ = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    *w++ = ':';
    const char *p = colon + 1, *end = f + len;
    int wsp = 0, any = 0;
    while (p < end) {
        char c = *p;
        if (c == '\r' && p + 1 < end && p[1] == '\n') { /* unfold: CRLF vanishes */
            p += 2;
            continue;
        }
        if (is_wsp(c)) {
            wsp = 1;
            p++;
            continue;
        }
        /* WSP right after the colon and at the end of the value is dropped */
        if (wsp && any)
            *w++ = ' ';
        wsp = 0;
        any = 1;
        *w++ = c;
        p++;
    }
    if (crlf) {
        *w++ = '\r';
        *w++ = '\n';
    }
    vbuf_commit(out, (size_t)(w - w0));
    return 0;
}

/* dkim_canon_header - append the relaxed canonical form of one header field, with CRLF */
int dkim_canon_header(const char *field, size_t len, vbuf *out)
{
    return canon_header(field, len, out, 1);
}

typedef void (*body_sink)(void *arg, const void *p, size_t n);

/*
 * canon_body - relaxed body canonicalisation (RFC 6376 3.4.4), streamed.
 * WSP runs become one SP only once a non-WSP byte follows on the same line,
 * which drops trailing WSP; line ends are held back as a count and written
 * only when more content follows, which drops trailing empty lines. A
 * non-empty body always ends with exactly one CRLF; an empty one stays empty.
 */
static void canon_body(const char *b, size_t len, body_sink sink, void *arg)
{
    char chunk[DKIM_CHUNK];
    size_t n = 0;
    size_t crlfs = 0;
    int wsp = 0, any = 0;
    const char *p = b, *end = b + len;

    while (p < end) {
        char c = *p;
        if (is_wsp(c)) {
            wsp = 1;
            p++;
            continue;
        }
        if (c == '\r' && p + 1 < end && p[1] == '\n') {
            wsp = 0;
            crlfs++;
            p += 2;
            continue;
        }
        for (; crlfs > 0; crlfs--) {
            if (n + 2 > sizeof chunk) {
                sink(arg, chunk, n);
                n = 0;
            }
            chunk[n++] = '\r';
            chunk[n++] = '\n';
        }
        if (n + 2 > sizeof chunk) {
            sink(arg, chunk, n);
            n = 0;
        }
        if (wsp) {
            chunk[n++] = ' ';
            wsp = 0;
        }
        chunk[n++] = c;
        p++;
        any = 1;
        /* copy the run of ordinary bytes that follows in one tight loop */
        while (p < end && n < sizeof chunk - 2) {
            c = *p;
            if (is_wsp(c) || c == '\r')
                break;
            chunk[n++] = c;
            p++;
        }
    }
    if (any) {
        if (n + 2 > sizeof chunk) {
            sink(arg, chunk, n);
            n = 0;
        }
        chunk[n++] = '\r';
        chunk[n++] = '\n';
    }
    if (n)
        sink(arg, chunk, n);
}

/* sink_vbuf - body sink appending to a vbuf */
static void sink_vbuf(void *arg, const void *p, size_t n)
{
    vbuf_append(arg, p, n);
}

/* sink_digest - body sink feeding a digest (EVP_DigestUpdate cannot fail for SHA-256 in memory) */
static void sink_digest(void *arg, const void *p, size_t n)
{
    EVP_DigestUpdate(arg, p, n);
}

/* dkim_canon_body - append the relaxed canonical form of a body */
void dkim_canon_body(const char *body, size_t len, vbuf *out)
{
    canon_body(body, len, sink_vbuf, out);
}

/*
 * dkim_from_domain - the domain of the single mailbox in a From field value.
 * Handles display names, quoted strings (an '@' or ',' inside does not
 * count), comments (nested, with quoted pairs), angle brackets and folding.
 * A value with several mailboxes, unbalanced quotes/brackets/comments or no
 * domain is refused: we would not know which domain to sign for.
 */
int dkim_from_domain(const char *v, size_t len, const char **dom, size_t *domlen)
{
    const char *lt = NULL, *gt = NULL, *at = NULL;
    int inq = 0, depth = 0, comma = 0;

    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (inq) {
            if (c == '\\')
                i++;
            else if (c == '"')
                inq = 0;
            continue;
        }
        if (depth) {
            if (c == '\\')
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            continue;
        }
        switch (c) {
        case '"':
            inq = 1;
            break;
        case '(':
            depth = 1;
            break;
        case '<':
            if (lt)
                return -EINVAL; /* a second mailbox */
            lt = v + i;
            break;
        case '>':
            if (!lt || gt)
                return -EINVAL;
            gt = v + i;
            break;
        case ',':
            /* an unquoted comma in a display name is common sloppiness; after
             * the address, or with no brackets at all, it separates mailboxes */
            if (gt)
                return -EINVAL;
            if (!lt)
                comma = 1;
            break;
        case '@':
            /* inside brackets the last '@' wins (obsolete routes use '@' too);
             * without brackets there must be exactly one */
            if (lt && !gt)
                at = v + i;
            else if (!lt) {
                if (at)
                    return -EINVAL;
                at = v + i;
            }
            break;
        default:
            break;
        }
    }
    if (inq || depth || (lt && !gt) || (comma && !lt))
        return -EINVAL;
    if (!at || (lt && (at < lt || at > gt)))
        return -EINVAL;
    const char *d = at + 1;
    const char *e = lt ? gt : v + len;
    /* skip folding whitespace, then stop at whitespace or a comment */
    while (d < e && (is_wsp(*d) || *d == '\r' || *d == '\n'))
        d++;
    const char *q = d;
    while (q < e && !is_wsp(*q) && *q != '\r' && *q != '\n' && *q != '(')
        q++;
    if (q > d && q[-1] == '.') /* "example.com." is the same domain */
        q--;
    if (q == d || (size_t)(q - d) > DKIM_MAX_DOMAIN)
        return -EINVAL;
    *dom = d;
    *domlen = (size_t)(q - d);
    return 0;
}

/* match_name - index of a signed header name (case-insensitive), or -1 */
static int match_name(const char *n, size_t len)
{
    for (unsigned i = 0; i < DKIM_NHNAMES; i++)
        if (dkim_hnames[i].len == len && strncasecmp(dkim_hnames[i].name, n, len) == 0)
            return (int)i;
    return -1;
}

/* find_crlf - first CRLF at or after p, or NULL */
static const char *find_crlf(const char *p, const char *end)
{
    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            return NULL;
        if (lf > p && lf[-1] == '\r')
            return lf - 1;
        p = lf + 1;
    }
    return NULL;
}

/*
 * scan_headers - remember every instance of a signed header field and find
 * the body. Returns the body offset (len when there is none) or -errno.
 */
static long scan_headers(struct dkim_signer *s, const char *msg, size_t len, char *err, size_t errlen)
{
    const char *p = msg, *end = msg + len;
    s->nfields = 0;
    while (p < end) {
        const char *eol = find_crlf(p, end);
        if (eol == p) /* the empty line: the body follows */
            return (long)(eol + 2 - msg);
        /* the field runs on while the next line starts with WSP (folding) */
        while (eol && eol + 2 < end && is_wsp(eol[2]))
            eol = find_crlf(eol + 2, end);
        const char *fend = eol ? eol + 2 : end;
        const char *colon = memchr(p, ':', (size_t)(fend - p));
        if (colon && !is_wsp(*p)) {
            size_t nlen = (size_t)(colon - p);
            while (nlen > 0 && is_wsp(p[nlen - 1]))
                nlen--;
            int idx = match_name(p, nlen);
            if (idx >= 0) {
                if (s->nfields == DKIM_MAX_FIELDS)
                    return err_set(err, errlen, -E2BIG, "dkim: more than %d signable header fields", DKIM_MAX_FIELDS);
                s->fields[s->nfields++] = (struct dkim_field){p, (size_t)(fend - p), (unsigned)idx};
            }
        }
        p = fend;
    }
    return (long)len;
}

/*
 * put_folded - append " text" to a header under construction, or "CRLF TAB text"
 * when the line would pass DKIM_FOLD_AT; *linestart tracks where the line began.
 * tail is appended right after, counted in the decision but never split off
 * (";" after a tag, so the separator stays with its tag).
 */
static void put_folded(vbuf *out, size_t *linestart, const char *t, size_t n, const char *tail, size_t tn)
{
    if (vbuf_len(out) - *linestart + 1 + n + tn > DKIM_FOLD_AT) {
        vbuf_append(out, "\r\n\t", 3);
        *linestart = vbuf_len(out) - 1;
    } else {
        vbuf_putc(out, ' ');
    }
    vbuf_append(out, t, n);
    vbuf_append(out, tail, tn);
}

/* b64 - base64 of n bytes into dst (room for 4 * ceil(n / 3) + 1); returns the length */
static size_t b64(char *dst, const unsigned char *src, size_t n)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)dst, src, (int)n);
}

/* sign_one - append one DKIM-Signature header for key k; 0 or -errno */
static int sign_one(struct dkim_signer *s, struct dkim_key *k, const char *bh, const int *count, time_t now, vbuf *out,
                    char *err, size_t errlen)
{
    char why[256];
    char tmp[DKIM_MAX_DOMAIN + 8];
    size_t hstart = vbuf_len(out);
    size_t ls = hstart;

    vbuf_printf(out, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed;",
                k->algo == CONFIG_DKIM_RSA ? "rsa-sha256" : "ed25519-sha256");
    int tl = snprintf(tmp, sizeof tmp, "d=%s;", k->domain);
    put_folded(out, &ls, tmp, (size_t)tl, "", 0);
    tl = snprintf(tmp, sizeof tmp, "s=%s;", k->selector);
    put_folded(out, &ls, tmp, (size_t)tl, "", 0);
    tl = snprintf(tmp, sizeof tmp, "t=%lld;", (long long)now);
    put_folded(out, &ls, tmp, (size_t)tl, "", 0);
    /* h=: every present instance, From once more; FWS is allowed after ':' */
    for (unsigned i = 0, first = 1; i < DKIM_NHNAMES; i++) {
        int times = count[i] + (i == 0);
        for (int j = 0; j < times; j++, first = 0) {
            if (first) {
                put_folded(out, &ls, "h=", 2, dkim_hnames[i].name, dkim_hnames[i].len);
            } else {
                vbuf_putc(out, ':');
                if (vbuf_len(out) - ls + dkim_hnames[i].len + 1 > DKIM_FOLD_AT) {
                    vbuf_append(out, "\r\n\t", 3);
                    ls = vbuf_len(out) - 1;
                }
                vbuf_append(out, dkim_hnames[i].name, dkim_hnames[i].len);
            }
        }
    }
    vbuf_putc(out, ';');
    put_folded(out, &ls, "bh=", 3, bh, strlen(bh));
    vbuf_putc(out, ';');
    put_folded(out, &ls, "b=", 2, "", 0);

    /* hash the signed fields, then this header with its b= still empty */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    vbuf_reset(&s->sigc);
    canon_header(vbuf_data(out) + hstart, vbuf_len(out) - hstart, &s->sigc, 0);
    ERR_clear_error();
    if (EVP_DigestInit_ex(s->hdr_ctx, s->sha256, NULL) <= 0 ||
        EVP_DigestUpdate(s->hdr_ctx, vbuf_data(&s->canon), vbuf_len(&s->canon)) <= 0 ||
        EVP_DigestUpdate(s->hdr_ctx, vbuf_data(&s->sigc), vbuf_len(&s->sigc)) <= 0 ||
        EVP_DigestFinal_ex(s->hdr_ctx, md, &mdlen) <= 0)
        return err_set(err, errlen, -EIO, "dkim: SHA-256 failed (%s)", ossl_reason(why, sizeof why));

    unsigned char sig[DKIM_MAX_SIG];
    size_t siglen = sizeof sig;
    int ok;
    if (k->algo == CONFIG_DKIM_RSA) {
        ok = EVP_PKEY_sign(k->rsa_ctx, sig, &siglen, md, mdlen) > 0;
    } else {
        /* RFC 8463: PureEdDSA over the SHA-256 digest bytes, no prehash mode.
         * OpenSSL 3.0 lets a one-shot context sign again (saving a provider
         * init per message); 3.2 and later refuse that (openssl#23075), so
         * after the first refusal re-initialise every time. */
        ok = !k->ed_reinit && EVP_DigestSign(k->ed_ctx, sig, &siglen, md, mdlen) > 0;
        if (!ok) {
            ERR_clear_error();
            k->ed_reinit = 1;
            siglen = sizeof sig;
            ok = EVP_DigestSignInit_ex(k->ed_ctx, NULL, NULL, NULL, NULL, k->pkey, NULL) > 0 &&
                 EVP_DigestSign(k->ed_ctx, sig, &siglen, md, mdlen) > 0;
        }
    }
    if (!ok)
        return err_set(err, errlen, -EIO, "dkim: signing for %s/%s failed (%s)", k->domain, k->selector,
                       ossl_reason(why, sizeof why));

    /* b= value, folded with FWS (allowed inside the base64, RFC 6376 3.5) */
    char b[DKIM_MAX_SIG * 4 / 3 + 8];
    size_t blen = b64(b, sig, siglen);
    size_t off = 0;
    while (off < blen) {
        size_t used = vbuf_len(out) - ls;
        size_t room = used < DKIM_FOLD_AT ? DKIM_FOLD_AT - used : 0;
        if (room < 8) {
            vbuf_append(out, "\r\n\t", 3);
            ls = vbuf_len(out) - 1;
            continue;
        }
        size_t take = blen - off < room ? blen - off : room;
        vbuf_append(out, b + off, take);
        off += take;
    }
    vbuf_append(out, "\r\n", 2);
    return 0;
}

/* dkim_sign_at - dkim_sign with the signing time given (t=); tests and tools use it */
int dkim_sign_at(struct dkim_signer *s, const char *msg, size_t len, time_t now, vbuf *out, char *err, size_t errlen)
{
    long body = scan_headers(s, msg, len, err, errlen);
    if (body < 0)
        return (int)body;

    /* From picks the keys: exactly one From with exactly one mailbox */
    const struct dkim_field *from = NULL;
    int count[DKIM_NHNAMES] = {0};
    for (int i = 0; i < s->nfields; i++) {
        if (s->fields[i].name == 0) {
            if (from)
                return err_set(err, errlen, -EINVAL, "dkim: message has more than one From header");
            from = &s->fields[i];
        }
        count[s->fields[i].name]++;
    }
    if (!from)
        return err_set(err, errlen, -EINVAL, "dkim: message has no From header");
    const char *colon = memchr(from->p, ':', from->len);
    const char *dom;
    size_t domlen;
    if (dkim_from_domain(colon + 1, (size_t)(from->p + from->len - colon - 1), &dom, &domlen) < 0) {
        char shown[128];
        log_sanitize(shown, sizeof shown, colon + 1, (size_t)(from->p + from->len - colon - 1));
        return err_set(err, errlen, -EINVAL, "dkim: no single address in From: %s", shown);
    }
    int any = 0;
    for (int i = 0; i < s->nkeys; i++)
        if (s->keys[i].domainlen == domlen && strncasecmp(s->keys[i].domain, dom, domlen) == 0)
            any = 1;
    if (!any)
        return 0;

    /* body hash, shared by every key (all use relaxed + SHA-256, no l=) */
    char why[256];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char bh[64];
    ERR_clear_error();
    if (EVP_DigestInit_ex(s->body_ctx, s->sha256, NULL) <= 0)
        return err_set(err, errlen, -EIO, "dkim: SHA-256 failed (%s)", ossl_reason(why, sizeof why));
    canon_body(msg + body, len - (size_t)body, sink_digest, s->body_ctx);
    if (EVP_DigestFinal_ex(s->body_ctx, md, &mdlen) <= 0)
        return err_set(err, errlen, -EIO, "dkim: SHA-256 failed (%s)", ossl_reason(why, sizeof why));
    b64(bh, md, mdlen);

    /* signed fields in h= order, each name's instances bottom-up (RFC 6376 5.4.2) */
    vbuf_reset(&s->canon);
    for (unsigned n = 0; n < DKIM_NHNAMES; n++)
        for (int i = s->nfields - 1; i >= 0; i--)
            if (s->fields[i].name == n)
                canon_header(s->fields[i].p, s->fields[i].len, &s->canon, 1);

    size_t orig = vbuf_len(out);
    for (int i = 0; i < s->nkeys; i++) {
        struct dkim_key *k = &s->keys[i];
        if (k->domainlen != domlen || strncasecmp(k->domain, dom, domlen) != 0)
            continue;
        int rc = sign_one(s, k, bh, count, now, out, err, errlen);
        if (rc < 0) {
            vbuf_truncate(out, orig); /* all signatures or none */
            return rc;
        }
    }
    return 0;
}

/* dkim_sign - sign msg with every key of its From domain, appending DKIM-Signature headers to out */
int dkim_sign(struct dkim_signer *s, const char *msg, size_t len, vbuf *out, char *err, size_t errlen)
{
    return dkim_sign_at(s, msg, len, time(NULL), out, err, errlen);
}

/*
 * dkim_signer_record - the DNS TXT value that publishes key i's public half (RFC 6376 3.6.1,
 * RFC 8463 4.2): "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or "k=ed25519; p=<base64 of
 * the 32 raw bytes>", appended to txt. Read from the loaded private key, so what is published is
 * what signs.
 */
int dkim_signer_record(const struct dkim_signer *s, int i, vbuf *txt, char *err, size_t errlen)
{
    if (i < 0 || i >= s->nkeys)
        return err_set(err, errlen, -EINVAL, "dkim: no key %d", i);
    const struct dkim_key *k = &s->keys[i];
    unsigned char raw[4096], *p = raw;
    size_t n = sizeof(raw);
    if (k->algo == CONFIG_DKIM_RSA) {
        int len = i2d_PUBKEY(k->pkey, NULL);
        if (len <= 0 || (size_t)len > sizeof(raw) || i2d_PUBKEY(k->pkey, &p) != len)
            return err_set(err, errlen, -EINVAL, "dkim: cannot encode the public key of %s", k->selector);
        n = (size_t)len;
    } else if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &n) != 1) {
        return err_set(err, errlen, -EINVAL, "dkim: cannot read the public key of %s", k->selector);
    }
    char *b = xmalloc(4 * ((n + 2) / 3) + 1);
    size_t blen = b64(b, raw, n);
    vbuf_printf(txt, "v=DKIM1; k=%s; p=%.*s", k->algo == CONFIG_DKIM_RSA ? "rsa" : "ed25519", (int)blen, b);
    free(b);
    return 0;
}
