/*
 * NAME
 *   bench-dkim - DKIM signatures per second on one thread
 * SYNOPSIS
 *   bench-dkim [-n RSA_COUNT] [-e ED25519_COUNT]
 * DESCRIPTION
 *   Generates an RSA-2048 and an Ed25519 key into a temporary directory,
 *   loads them through dkim_signer_new as volley does, and signs the same
 *   ~2 KB message N times with each (one signature per dkim_sign call, one
 *   thread). For comparison it also times the bare OpenSSL private-key
 *   operation on the same key, which is the ceiling: the difference is
 *   what volley adds (header scan, canonicalisation, hashing, formatting).
 *   Compare with `openssl speed -seconds 3 rsa2048 ed25519` (sign/s).
 *   The last two lines are machine-readable:
 *     dkim_rsa2048_per_sec=NNN
 *     dkim_ed25519_per_sec=NNN
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/config.h"
#include "templates/dkim.h"

/* make_message - a ~2 KB marketing message of the shape templates/message.c renders */
static void make_message(vbuf *m, const char *domain)
{
    vbuf_printf(m,
                "From: \"Example Shop\" <news@%s>\r\n"
                "To: alice.smith@example.org\r\n"
                "Subject: =?UTF-8?Q?Your_weekly_deals_=E2=80=94_up_to_40=25_off?=\r\n"
                "Date: Tue, 14 Nov 2023 10:00:00 +0000\r\n"
                "Message-ID: <1700000000000-0.a1b2c3@%s>\r\n"
                "MIME-Version: 1.0\r\n"
                "Content-Type: multipart/alternative; boundary=\"=_volley_b1\"\r\n"
                "List-Unsubscribe: <https://%s/u/6f1c0a9e2b>, <mailto:unsub@%s?subject=6f1c0a9e2b>\r\n"
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                "Feedback-ID: weekly:shop:volley\r\n"
                "\r\n"
                "--=_volley_b1\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
                domain, domain, domain, domain);
    while (vbuf_len(m) < 1400)
        vbuf_puts(m, "Hello Alice, this week's deals are here.  Shoes, bags and coats at  up to 40% off.  \r\n");
    vbuf_puts(m, "--=_volley_b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n");
    while (vbuf_len(m) < 2000)
        vbuf_puts(m, "<p>Hello Alice, this week's deals are here.</p>\r\n");
    vbuf_puts(m, "</body></html>\r\n--=_volley_b1--\r\n");
}

/* write_key - generate a key and write it as PEM; 0 or -1 */
static int write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int ok = PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return ok == 1 ? 0 : -1;
}

/* bench_sign - sign msg n times with signer s; signatures per second, or -1 */
static double bench_sign(struct dkim_signer *s, const vbuf *msg, int n)
{
    char err[256];
    vbuf out;
    vbuf_init(&out, 1024);
    uint64_t t0 = clock_mono_us();
    for (int i = 0; i < n; i++) {
        vbuf_reset(&out);
        if (dkim_sign(s, vbuf_data(msg), vbuf_len(msg), &out, err, sizeof err) < 0 || vbuf_len(&out) == 0) {
            fprintf(stderr, "bench-dkim: %s\n", err);
            vbuf_free(&out);
            return -1;
        }
    }
    uint64_t dt = clock_mono_us() - t0;
    vbuf_free(&out);
    return (double)n * 1e6 / (double)(dt ? dt : 1);
}

/* bench_raw - the bare OpenSSL private-key operation n times (the ceiling); per second or -1 */
static double bench_raw(EVP_PKEY *k, int rsa, int n)
{
    unsigned char md[32] = {1, 2, 3}, sig[512];
    size_t siglen;
    int ok = 1;
    uint64_t t0 = clock_mono_us();
    if (rsa) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
        ok = c && EVP_PKEY_sign_init(c) > 0 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) > 0;
        for (int i = 0; ok && i < n; i++) {
            siglen = sizeof sig;
            ok = EVP_PKEY_sign(c, sig, &siglen, md, sizeof md) > 0;
        }
        EVP_PKEY_CTX_free(c);
    } else {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        for (int i = 0; ok && i < n; i++) {
            siglen = sizeof sig;
            ok = EVP_DigestSignInit(c, NULL, NULL, NULL, k) > 0 && EVP_DigestSign(c, sig, &siglen, md, sizeof md) > 0;
        }
        EVP_MD_CTX_free(c);
    }
    uint64_t dt = clock_mono_us() - t0;
    return ok ? (double)n * 1e6 / (double)(dt ? dt : 1) : -1;
}

int main(int argc, char **argv)
{
    int nrsa = 4000, ned = 40000, opt;
    while ((opt = getopt(argc, argv, "n:e:")) != -1) {
        if (opt == 'n')
            nrsa = atoi(optarg);
        else if (opt == 'e')
            ned = atoi(optarg);
        else {
            fprintf(stderr, "usage: bench-dkim [-n rsa_count] [-e ed25519_count]\n");
            return 2;
        }
    }
    if (nrsa <= 0 || ned <= 0) {
        fprintf(stderr, "bench-dkim: counts must be positive\n");
        return 2;
    }

    char dir[] = "/tmp/bench-dkim.XXXXXX", rsa_path[64], ed_path[64], conf[256], err[512];
    if (!mkdtemp(dir)) {
        perror("bench-dkim: mkdtemp");
        return 1;
    }
    snprintf(rsa_path, sizeof rsa_path, "%s/rsa.pem", dir);
    snprintf(ed_path, sizeof ed_path, "%s/ed.pem", dir);
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    int rc = 1;
    struct dkim_signer *srsa = NULL, *sed = NULL;
    struct vconfig cfg;
    vbuf msg;
    vbuf_init(&msg, 4096);
    if (!rsa || !ed || write_key(rsa_path, rsa) < 0 || write_key(ed_path, ed) < 0) {
        fprintf(stderr, "bench-dkim: cannot create keys in %s\n", dir);
        goto done;
    }

    /* one signer per algorithm so each dkim_sign makes exactly one signature */
    snprintf(conf, sizeof conf, "[dkim]\nkey = rsa.example s1 rsa %s\nkey = ed.example s2 ed25519 %s\n", rsa_path,
             ed_path);
    config_defaults(&cfg);
    if (config_parse_string(&cfg, "bench", conf, err, sizeof err) < 0 ||
        !(srsa = dkim_signer_new(&cfg, err, sizeof err))) {
        fprintf(stderr, "bench-dkim: %s\n", err);
        config_free(&cfg);
        goto done;
    }
    sed = srsa; /* the same signer: the From domain picks the key */
    config_free(&cfg);

    vbuf_reset(&msg);
    make_message(&msg, "rsa.example");
    printf("message: %zu bytes\n", vbuf_len(&msg));
    bench_sign(srsa, &msg, nrsa / 10 + 1); /* warm up */
    double raw_rsa = bench_raw(rsa, 1, nrsa);
    double dkim_rsa = bench_sign(srsa, &msg, nrsa);
    vbuf_reset(&msg);
    make_message(&msg, "ed.example");
    bench_sign(sed, &msg, ned / 10 + 1);
    double raw_ed = bench_raw(ed, 0, ned);
    double dkim_ed = bench_sign(sed, &msg, ned);
    if (dkim_rsa < 0 || dkim_ed < 0 || raw_rsa < 0 || raw_ed < 0)
        goto done;
    printf("rsa2048: %d signatures, %.0f/s (bare OpenSSL sign %.0f/s, %.1f%%)\n", nrsa, dkim_rsa, raw_rsa,
           100.0 * dkim_rsa / raw_rsa);
    printf("ed25519: %d signatures, %.0f/s (bare OpenSSL sign %.0f/s, %.1f%%)\n", ned, dkim_ed, raw_ed,
           100.0 * dkim_ed / raw_ed);
    printf("dkim_rsa2048_per_sec=%.0f\n", dkim_rsa);
    printf("dkim_ed25519_per_sec=%.0f\n", dkim_ed);
    rc = 0;
done:
    dkim_signer_free(srsa);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    vbuf_free(&msg);
    unlink(rsa_path);
    unlink(ed_path);
    rmdir(dir);
    return rc;
}
