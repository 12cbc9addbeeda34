/*
 * NAME
 *   test_verp - the VERP tag codec, base32 and one-click tokens (lib/verp.h, lib/base32.h, lib/unsub_token.h)
 * DESCRIPTION
 *   Base32 against RFC 4648's vectors (lower case, unpadded); a tag
 *   round-trips the job id and names the campaign and recipient; any
 *   changed character or another secret is refused (-EBADMSG), junk is
 *   -EINVAL; the VERP address keeps its local part within 64 octets even
 *   for a long mail_from; a one-click token round-trips and refuses
 *   tampering, including a token re-signed for another address.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/base32.h"
#include "lib/unsub_token.h"
#include "lib/verp.h"

static struct verp_key key(const char *s)
{
    struct verp_key k;
    assert_int_equal(verp_key_init(&k, s, strlen(s)), 0);
    return k;
}

/* test_hmac_rfc4231 - the keyed states give RFC 4231's HMAC-SHA256 (test case 4), however the data is split */
static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t kb[25], data[50], md[32];
    for (int i = 0; i < 25; i++)
        kb[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, sizeof data);
    static const uint8_t want[32] = {0x82, 0x55, 0x8a, 0x38, 0x9a, 0x44, 0x3c, 0x0e, 0xa4, 0xcc, 0x81,
                                     0x98, 0x99, 0xf2, 0x08, 0x3a, 0x85, 0xf0, 0xfa, 0xa3, 0xe5, 0x78,
                                     0xf8, 0x07, 0x7a, 0x2e, 0x3f, 0xf4, 0x67, 0x29, 0x66, 0x5b};
    struct verp_key k;
    assert_int_equal(verp_key_init(&k, kb, sizeof kb), 0);
    verp_hmac(&k, data, sizeof data, NULL, 0, md);
    assert_memory_equal(md, want, 32);
    verp_hmac(&k, data, 17, data + 17, sizeof data - 17, md);
    assert_memory_equal(md, want, 32);
    assert_int_equal(verp_key_init(&k, kb, 15), -EINVAL); /* shorter than VERP_KEY_MIN */
}

static void test_base32_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},
             {"f", "my"},
             {"fo", "mzxq"},
             {"foo", "mzxw6"},
             {"foob", "mzxw6yq"},
             {"fooba", "mzxw6ytb"},
             {"foobar", "mzxw6ytboi"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        uint8_t back[32];
        size_t n = b32_encode((const uint8_t *)v[i].in, strlen(v[i].in), out, sizeof out);
        assert_int_equal(n, strlen(v[i].out));
        assert_string_equal(out, v[i].out);
        int bl = b32_decode(v[i].out, strlen(v[i].out), back, sizeof back);
        assert_int_equal(bl, (int)strlen(v[i].in));
        assert_memory_equal(back, v[i].in, (size_t)bl);
    }
    uint8_t b[8];
    assert_int_equal(b32_decode("MZXW6", 5, b, sizeof b), 3); /* either case */
    assert_int_equal(b32_decode("mzxw1", 5, b, sizeof b), -EINVAL);
    assert_int_equal(b32_decode("mz", 2, b, 0), -EINVAL);
}

static void test_tag_roundtrip(void **state)
{
    (void)state;
    struct verp_key k = key("0123456789abcdef-secret");
    char tag[VERP_TAG_MAX];
    int tl = verp_tag_make(&k, "1732629812345-17", "spring-sale", 11, "Ann@Example.COM", 15, tag, sizeof tag);
    assert_true(tl > 20 && tl < VERP_TAG_MAX);
    assert_int_equal(strspn(tag, "abcdefghijklmnopqrstuvwxyz234567"), (size_t)tl);
    struct verp_job j;
    assert_int_equal(verp_tag_parse(&k, tag, (size_t)tl, &j), 0);
    char id[48];
    verp_job_id(&j, id, sizeof id);
    assert_string_equal(id, "1732629812345-17");
    assert_int_equal(j.camp_h, verp_camp_hash(&k, "spring-sale", 11));
    assert_int_equal(j.rcpt_h, verp_rcpt_hash(&k, "ann@example.com", 15)); /* compared lower-cased */
    assert_int_not_equal(j.rcpt_h, verp_rcpt_hash(&k, "bob@example.com", 15));
    /* a big sequence number still round-trips */
    tl = verp_tag_make(&k, "281474976710655-18446744073709551615", "c", 1, "a@b.c", 5, tag, sizeof tag);
    assert_true(tl > 0);
    assert_int_equal(verp_tag_parse(&k, tag, (size_t)tl, &j), 0);
    verp_job_id(&j, id, sizeof id);
    assert_string_equal(id, "281474976710655-18446744073709551615");
    assert_int_equal(verp_tag_make(&k, "not-an-id", "c", 1, "a@b.c", 5, tag, sizeof tag), -EINVAL);
}

static void test_tag_forged(void **state)
{
    (void)state;
    struct verp_key k = key("0123456789abcdef-secret"), other = key("another-secret-of-16+");
    char tag[VERP_TAG_MAX];
    int tl = verp_tag_make(&k, "1732629812345-0", "spring", 6, "a@b.example", 11, tag, sizeof tag);
    struct verp_job j;
    assert_int_equal(verp_tag_parse(&other, tag, (size_t)tl, &j), -EBADMSG);
    for (int i = 0; i < tl; i++) {
        char t2[VERP_TAG_MAX];
        memcpy(t2, tag, (size_t)tl + 1);
        t2[i] = t2[i] == 'a' ? 'b' : 'a';
        int rc = verp_tag_parse(&k, t2, (size_t)tl, &j);
        assert_true(rc == -EBADMSG || rc == -EINVAL);
    }
    assert_int_equal(verp_tag_parse(&k, "hello", 5, &j), -EINVAL);
    assert_int_equal(verp_tag_parse(&k, tag, (size_t)tl - 1, &j) < 0, 1);
}

static void test_address(void **state)
{
    (void)state;
    struct verp_key k = key("0123456789abcdef-secret");
    char tag[VERP_TAG_MAX], a[VERP_ADDR_MAX];
    int tl = verp_tag_make(&k, "1732629812345-0", "spring", 6, "a@b.example", 11, tag, sizeof tag);
    assert_int_equal(verp_address("bounces@shop.example", tag, (size_t)tl, "bounce.shop.example", a, sizeof a), 0);
    char want[VERP_ADDR_MAX];
    snprintf(want, sizeof want, "bounces+%s@bounce.shop.example", tag);
    assert_string_equal(a, want);
    /* a local part that would pass 64 octets is cut, the tag kept whole */
    const char *lng = "a-very-long-local-part-for-bounces-that-goes-on-and-on-and-on@shop.example";
    assert_int_equal(verp_address(lng, tag, (size_t)tl, "b.example", a, sizeof a), 0);
    assert_int_equal(strchr(a, '@') - a, 64);
    const char *t;
    size_t n;
    assert_int_equal(verp_split(a, strlen(a), "B.EXAMPLE", &t, &n), 0);
    assert_int_equal(n, (size_t)tl);
    assert_memory_equal(t, tag, n);
    /* a '+' already in mail_from is not kept twice */
    assert_int_equal(verp_address("news+x@shop.example", tag, (size_t)tl, "b.example", a, sizeof a), 0);
    assert_int_equal(strncmp(a, "news+", 5), 0);
    assert_int_equal(verp_split("x+y@other.example", 17, "b.example", &t, &n), -ENOENT);
    assert_int_equal(verp_split("fbl@b.example", 13, "b.example", &t, &n), -ENOENT);
}

static void test_unsub_token(void **state)
{
    (void)state;
    struct verp_key k = key("0123456789abcdef-secret");
    char url[UNSUB_URL_MAX], camp[128], addr[320];
    int ul = unsub_url(&k, "https://unsub.example.com/", "spring", 6, "Ann@Example.com", 15, url, sizeof url);
    assert_true(ul > 0);
    assert_int_equal(strncmp(url, "https://unsub.example.com/u/", 28), 0);
    const char *tok = url + 28;
    assert_int_equal(unsub_token_parse(&k, tok, strlen(tok), camp, sizeof camp, addr, sizeof addr), 0);
    assert_string_equal(camp, "spring");
    assert_string_equal(addr, "ann@example.com");
    char t2[UNSUB_TOKEN_MAX];
    snprintf(t2, sizeof t2, "%s", tok);
    t2[3] = t2[3] == 'a' ? 'b' : 'a';
    int rc = unsub_token_parse(&k, t2, strlen(t2), camp, sizeof camp, addr, sizeof addr);
    assert_true(rc == -EBADMSG || rc == -EINVAL);
    struct verp_key other = key("another-secret-of-16+");
    char t3[UNSUB_TOKEN_MAX];
    unsub_token_make(&other, "spring", 6, "eve@example.com", 15, t3, sizeof t3);
    assert_int_equal(unsub_token_parse(&k, t3, strlen(t3), camp, sizeof camp, addr, sizeof addr), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_rfc4231),  cmocka_unit_test(test_base32_vectors),
        cmocka_unit_test(test_tag_roundtrip), cmocka_unit_test(test_tag_forged),
        cmocka_unit_test(test_address),       cmocka_unit_test(test_unsub_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
