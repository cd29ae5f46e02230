/*
 * test_sha256.c: SHA-256 against the FIPS 180-4 example vectors (NIST's
 * "SHA256.pdf" examples and the million-'a' message) and HMAC-SHA256
 * against the seven test cases of RFC 4231 section 4; incremental hashing
 * at every split point; the constant-time comparison.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sha256.h"

/* ---- Helpers ----------------------------------------------------------- */

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    }
}

#define ASSERT_SHA256(DATA, LEN, HEX)       \
    do {                                    \
        uint8_t d_[CAIRN_SHA256_SIZE];      \
        char h_[2 * CAIRN_SHA256_SIZE + 1]; \
        cairn_sha256((DATA), (LEN), d_);    \
        hex(d_, sizeof d_, h_);             \
        ck_assert_str_eq(h_, (HEX));        \
    } while (0)

/* RFC 4231 truncates test case 5 to 128 bits: compare the first NHEX
 * digits. */
#define ASSERT_HMAC(KEY, KLEN, DATA, DLEN, HEX)               \
    do {                                                      \
        uint8_t m_[CAIRN_SHA256_SIZE];                        \
        char h_[2 * CAIRN_SHA256_SIZE + 1];                   \
        cairn_hmac_sha256((KEY), (KLEN), (DATA), (DLEN), m_); \
        hex(m_, sizeof m_, h_);                               \
        ck_assert_int_eq(strncmp(h_, (HEX), strlen(HEX)), 0); \
    } while (0)

/* ---- Tests ------------------------------------------------------------- */

/* The FIPS 180-4 one-block, two-block and empty messages hash to the
 * published digests. */
START_TEST(test_sha256_fips_vectors)
{
    ASSERT_SHA256("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ASSERT_SHA256("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ASSERT_SHA256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    ASSERT_SHA256(
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklm"
        "nopqrlmnopqrsmnopqrstnopqrstu",
        112, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

/* One million 'a's, fed in uneven pieces, hash to the published digest. */
START_TEST(test_sha256_million_a)
{
    struct cairn_sha256 c;
    uint8_t chunk[997];
    uint8_t d[CAIRN_SHA256_SIZE];
    char h[2 * CAIRN_SHA256_SIZE + 1];
    size_t left = 1000000;

    memset(chunk, 'a', sizeof chunk);
    cairn_sha256_init(&c);
    while (left > 0) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        cairn_sha256_update(&c, chunk, n);
        left -= n;
    }
    cairn_sha256_final(&c, d);
    hex(d, sizeof d, h);
    ck_assert_str_eq(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* Splitting a message anywhere (around the 55/56/64-byte padding edges
 * too) gives the one-shot digest. */
START_TEST(test_sha256_every_split)
{
    uint8_t msg[200];
    for (size_t i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)(i * 7 + 3);
    }
    for (size_t len = 0; len <= sizeof msg; len++) {
        uint8_t want[CAIRN_SHA256_SIZE];
        cairn_sha256(msg, len, want);
        for (size_t cut = 0; cut <= len; cut += (len < 70 ? 1 : 13)) {
            struct cairn_sha256 c;
            uint8_t got[CAIRN_SHA256_SIZE];
            cairn_sha256_init(&c);
            cairn_sha256_update(&c, msg, cut);
            cairn_sha256_update(&c, NULL, 0);
            cairn_sha256_update(&c, msg + cut, len - cut);
            cairn_sha256_final(&c, got);
            ck_assert_mem_eq(got, want, sizeof want);
        }
    }
}
END_TEST

/* RFC 4231 section 4, test cases 1 to 7 (keys shorter than, equal to
 * after hashing, and longer than a block; case 5 truncated to 128 bits). */
START_TEST(test_hmac_sha256_rfc4231)
{
    uint8_t key[131];
    uint8_t data[50];

    memset(key, 0x0b, 20);
    ASSERT_HMAC(key, 20, "Hi There", 8,
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    ASSERT_HMAC("Jefe", 4, "what do ya want for nothing?", 28,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    memset(key, 0xaa, 20);
    memset(data, 0xdd, 50);
    ASSERT_HMAC(key, 20, data, 50,
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    for (int i = 0; i < 25; i++) {
        key[i] = (uint8_t)(i + 1);
    }
    memset(data, 0xcd, 50);
    ASSERT_HMAC(key, 25, data, 50,
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    memset(key, 0x0c, 20);
    ASSERT_HMAC(key, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");
    memset(key, 0xaa, 131);
    ASSERT_HMAC(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    const char *m7 =
        "This is a test using a larger than block-size key and a larger than block-size data. "
        "The key needs to be hashed before being used by the HMAC algorithm.";
    ASSERT_HMAC(key, 131, m7, strlen(m7),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}
END_TEST

/* The incremental HMAC equals the one-shot one; the empty key is a key
 * (its MAC differs from a one-byte key's). */
START_TEST(test_hmac_sha256_incremental_and_empty_key)
{
    struct cairn_hmac_sha256 h;
    uint8_t a[CAIRN_SHA256_SIZE], b[CAIRN_SHA256_SIZE], c[CAIRN_SHA256_SIZE];

    cairn_hmac_sha256("k", 1, "hello world", 11, a);
    cairn_hmac_sha256_init(&h, "k", 1);
    cairn_hmac_sha256_update(&h, "hello", 5);
    cairn_hmac_sha256_update(&h, " world", 6);
    cairn_hmac_sha256_final(&h, b);
    ck_assert_mem_eq(a, b, sizeof a);
    cairn_hmac_sha256(NULL, 0, "hello world", 11, c);
    ck_assert(!cairn_memeq_ct(a, c, sizeof a));
}
END_TEST

/* The constant-time comparison tells equal from different buffers,
 * whichever byte differs. */
START_TEST(test_memeq_ct)
{
    uint8_t x[32], y[32];
    memset(x, 7, sizeof x);
    memcpy(y, x, sizeof y);
    ck_assert(cairn_memeq_ct(x, y, sizeof x));
    ck_assert(cairn_memeq_ct(x, y, 0));
    for (size_t i = 0; i < sizeof y; i++) {
        y[i] ^= 0x80;
        ck_assert(!cairn_memeq_ct(x, y, sizeof x));
        y[i] ^= 0x80;
    }
    cairn_wipe(y, sizeof y);
    for (size_t i = 0; i < sizeof y; i++) {
        ck_assert_uint_eq(y[i], 0);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("sha256");
    tcase_add_test(tc, test_sha256_fips_vectors);
    tcase_add_test(tc, test_sha256_million_a);
    tcase_add_test(tc, test_sha256_every_split);
    tcase_add_test(tc, test_hmac_sha256_rfc4231);
    tcase_add_test(tc, test_hmac_sha256_incremental_and_empty_key);
    tcase_add_test(tc, test_memeq_ct);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
