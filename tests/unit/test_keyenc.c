/*
 * test_keyenc.c: unit tests of the order-preserving _id key encoding
 * (keyenc.c): fixed cases, rejected types, and a property test over
 * thousands of random values of mixed types checking that memcmp order of
 * encodings equals qry_cmp order and that no encoding is a proper prefix
 * of another.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static uint32_t rnd_below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static int sgn(int x)
{
    return x < 0 ? -1 : (x > 0 ? 1 : 0);
}

static int cmp_enc(const struct cairn_buf *a, const struct cairn_buf *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->data, b->data, n);
    if (c != 0) {
        return sgn(c);
    }
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

static void encode_ok(const bson_value_t *v, struct cairn_buf *out)
{
    struct cairn_error err = {0};
    cairn_buf_reset(out);
    int rc = qry_key_encode(v, out, &err);
    ck_assert_msg(rc == 0, "encode failed: %s", err.msg);
}

static bson_value_t parse_json_value(const char *json)
{
    char buf[512];
    bson_error_t e;
    bson_t doc;
    bson_iter_t it;
    bson_value_t out;
    snprintf(buf, sizeof buf, "{\"v\": %s}", json);
    ck_assert_msg(bson_init_from_json(&doc, buf, -1, &e), "bad JSON %s", json);
    ck_assert(bson_iter_init_find(&it, &doc, "v"));
    bson_value_copy(bson_iter_value(&it), &out);
    bson_destroy(&doc);
    return out;
}

START_TEST(test_equal_encodings)
{
    static const char *const groups[][5] = {
        {"1", "1.0", "{\"$numberLong\": \"1\"}", "{\"$numberDecimal\": \"1\"}", NULL},
        {"0", "-0.0", "0.0", "{\"$numberLong\": \"0\"}", NULL},
        {"9007199254740992", "9007199254740992.0", NULL, NULL, NULL},
        {"-7", "-7.0", "{\"$numberLong\": \"-7\"}", NULL, NULL},
        {"\"abc\"", "{\"$symbol\": \"abc\"}", NULL, NULL, NULL},
        {"{\"a\": 1}", "{\"a\": 1.0}", "{\"a\": {\"$numberLong\": \"1\"}}", NULL, NULL},
        {"{\"$numberDouble\": \"NaN\"}", "{\"$numberDouble\": \"-NaN\"}", NULL, NULL, NULL},
    };
    struct cairn_buf a = CAIRN_BUF_INIT, b = CAIRN_BUF_INIT;
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        bson_value_t first = parse_json_value(groups[g][0]);
        encode_ok(&first, &a);
        for (size_t i = 1; i < 5 && groups[g][i]; i++) {
            bson_value_t v = parse_json_value(groups[g][i]);
            encode_ok(&v, &b);
            ck_assert_msg(a.len == b.len && memcmp(a.data, b.data, a.len) == 0,
                          "%s and %s encode differently", groups[g][0], groups[g][i]);
            bson_value_destroy(&v);
        }
        bson_value_destroy(&first);
    }
    cairn_buf_free(&a);
    cairn_buf_free(&b);
}
END_TEST

START_TEST(test_rejected)
{
    static const char *const bad[] = {
        "[1, 2]",
        "[]",
        "{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}",
        "{\"$undefined\": true}",
    };
    struct cairn_buf out = CAIRN_BUF_INIT;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bson_value_t v = parse_json_value(bad[i]);
        struct cairn_error err = {0};
        ck_assert_int_eq(qry_key_encode(&v, &out, &err), CAIRN_EINVAL);
        ck_assert_int_eq(err.mongo_code, 2);
        ck_assert_msg(strstr(err.msg, "for _id") != NULL, "message: %s", err.msg);
        ck_assert_uint_eq(out.len, 0);
        bson_value_destroy(&v);
    }
    bson_value_t v = parse_json_value("[1]");
    struct cairn_error err = {0};
    qry_key_encode(&v, &out, &err);
    ck_assert_str_eq(err.msg, "can't use an array for _id");
    bson_value_destroy(&v);
    /* nested arrays and regexes are fine inside a document _id */
    v = parse_json_value(
        "{\"a\": [1, {\"$regularExpression\": {\"pattern\": \"x\", "
        "\"options\": \"i\"}}]}");
    ck_assert_int_eq(qry_key_encode(&v, &out, &err), 0);
    ck_assert_uint_gt(out.len, 0);
    bson_value_destroy(&v);
    cairn_buf_free(&out);
}
END_TEST

START_TEST(test_appends)
{
    /* The encoding is appended after existing bytes. */
    struct cairn_buf out = CAIRN_BUF_INIT;
    struct cairn_error err = {0};
    ck_assert_int_eq(cairn_buf_append(&out, "pfx", 3), 0);
    bson_value_t v = parse_json_value("42");
    ck_assert_int_eq(qry_key_encode(&v, &out, &err), 0);
    ck_assert_uint_gt(out.len, 3);
    ck_assert(memcmp(out.data, "pfx", 3) == 0);
    bson_value_destroy(&v);
    cairn_buf_free(&out);
}
END_TEST

/* ---- random values ---------------------------------------------------------- */

static const double tricky_doubles[] = {
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
    1e-300,
    -1e-300,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e300,
    -1e300,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    9007199254740992.0,
    9007199254740994.0,
    -9007199254740992.0,
    9223372036854775808.0,
    -9223372036854775808.0,
    18446744073709551616.0,
    4611686018427387904.0,
    0.1,
    0.2,
    0.3,
    1.0000000000000002,
    2147483647.0,
    2147483648.0,
    -2147483648.0,
    123.456,
};

static const int64_t tricky_ints[] = {
    0,
    1,
    -1,
    2,
    9007199254740992LL,
    9007199254740993LL,
    -9007199254740993LL,
    9223372036854775807LL,
    -9223372036854775807LL - 1,
    -9223372036854775807LL,
    4611686018427387904LL,
    4611686018427387905LL,
    2147483647LL,
    2147483648LL,
    -2147483648LL,
    123,
};

static void append_random(bson_t *parent, const char *key, int depth);

static void random_string(char *buf, size_t *len)
{
    static const char alphabet[] = {'a', 'b', 0, 'A', (char)0xC3, (char)0xA9, (char)0xFF};
    size_t n = rnd_below(5);
    for (size_t i = 0; i < n; i++) {
        buf[i] = alphabet[rnd_below(sizeof alphabet)];
    }
    buf[n] = '\0';
    *len = n;
}

static void append_number(bson_t *parent, const char *key)
{
    switch (rnd_below(9)) {
        case 0: {
            double d = tricky_doubles[rnd_below(sizeof tricky_doubles / sizeof tricky_doubles[0])];
            bson_append_double(parent, key, -1, d);
            break;
        }
        case 1:
            bson_append_int64(parent, key, -1,
                              tricky_ints[rnd_below(sizeof tricky_ints / sizeof tricky_ints[0])]);
            break;
        case 2:
            bson_append_int32(parent, key, -1, (int32_t)rnd_below(7) - 3);
            break;
        case 3:
            bson_append_double(parent, key, -1, (double)((int)rnd_below(7) - 3) / 2.0);
            break;
        case 4: {
            uint64_t bits = rnd();
            double d;
            memcpy(&d, &bits, sizeof d);
            bson_append_double(parent, key, -1, d); /* may be NaN, inf, subnormal */
            break;
        }
        case 5:
            bson_append_int64(parent, key, -1, (int64_t)rnd());
            break;
        case 6: {
            static const double specials[] = {NAN, INFINITY, -INFINITY};
            bson_append_double(parent, key, -1, specials[rnd_below(3)]);
            break;
        }
        case 7: {
            /* integers near a double boundary, as both types */
            int64_t base = (int64_t)1 << (50 + rnd_below(13));
            int64_t i = base + (int64_t)rnd_below(5) - 2;
            if (rnd_below(2)) {
                i = -i;
            }
            if (rnd_below(2)) {
                bson_append_int64(parent, key, -1, i);
            } else {
                bson_append_double(parent, key, -1, (double)i);
            }
            break;
        }
        default: {
            bson_decimal128_t dec;
            static const char *const decs[] = {"0",     "1",    "-1",  "0.5",      "1.5",
                                               "-2.25", "1E+3", "NaN", "Infinity", "-Infinity"};
            bson_decimal128_from_string(decs[rnd_below(sizeof decs / sizeof decs[0])], &dec);
            bson_append_decimal128(parent, key, -1, &dec);
            break;
        }
    }
}

static void append_random(bson_t *parent, const char *key, int depth)
{
    uint32_t kind = rnd_below(depth > 2 ? 11 : 14);
    char s[8];
    size_t slen;
    switch (kind) {
        case 0:
        case 1:
        case 2:
        case 3:
            append_number(parent, key);
            break;
        case 4:
            random_string(s, &slen);
            if (rnd_below(4) == 0) {
                bson_append_symbol(parent, key, -1, s, (int)slen);
            } else {
                bson_append_utf8(parent, key, -1, s, (int)slen);
            }
            break;
        case 5:
            switch (rnd_below(4)) {
                case 0:
                    bson_append_null(parent, key, -1);
                    break;
                case 1:
                    bson_append_minkey(parent, key, -1);
                    break;
                case 2:
                    bson_append_maxkey(parent, key, -1);
                    break;
                default:
                    bson_append_bool(parent, key, -1, rnd_below(2));
                    break;
            }
            break;
        case 6: {
            uint8_t data[3];
            uint32_t n = rnd_below(4);
            for (uint32_t i = 0; i < n; i++) {
                data[i] = (uint8_t)rnd_below(3);
            }
            bson_append_binary(parent, key, -1,
                               rnd_below(2) ? BSON_SUBTYPE_BINARY : BSON_SUBTYPE_UUID, data, n);
            break;
        }
        case 7: {
            bson_oid_t oid;
            memset(&oid, 0, sizeof oid);
            oid.bytes[11] = (uint8_t)rnd_below(3);
            oid.bytes[0] = (uint8_t)(rnd_below(2) * 0xF0);
            bson_append_oid(parent, key, -1, &oid);
            break;
        }
        case 8:
            bson_append_date_time(parent, key, -1,
                                  (int64_t)rnd_below(5) - 2 + (rnd_below(2) ? 0 : INT64_MIN / 2));
            break;
        case 9:
            bson_append_timestamp(parent, key, -1, rnd_below(3) * 0x7FFFFFFFu, rnd_below(3));
            break;
        case 10:
            bson_append_code(parent, key, -1, rnd_below(2) ? "f" : "g");
            break;
        case 11:
        case 12: {
            bson_t child;
            bool arr = kind == 12 && depth > 0; /* top level arrays are not valid _ids */
            if (arr) {
                bson_append_array_begin(parent, key, -1, &child);
            } else {
                bson_append_document_begin(parent, key, -1, &child);
            }
            uint32_t n = rnd_below(3);
            static const char *const names[] = {"a", "b", "", "ab"};
            for (uint32_t i = 0; i < n; i++) {
                char idx[12];
                const char *name = names[rnd_below(4)];
                if (arr) {
                    snprintf(idx, sizeof idx, "%u", i);
                    name = idx;
                }
                append_random(&child, name, depth + 1);
            }
            if (arr) {
                bson_append_array_end(parent, &child);
            } else {
                bson_append_document_end(parent, &child);
            }
            break;
        }
        default:
            if (depth > 0) {
                bson_append_regex(parent, key, -1, rnd_below(2) ? "a" : "ab",
                                  rnd_below(2) ? "i" : "");
            } else {
                append_number(parent, key);
            }
            break;
    }
}

#define N_RANDOM 2500

START_TEST(test_property_random)
{
    bson_t **docs = calloc(N_RANDOM, sizeof *docs);
    struct cairn_buf *encs = calloc(N_RANDOM, sizeof *encs);
    ck_assert(docs && encs);
    bson_value_t *vals = calloc(N_RANDOM, sizeof *vals);
    ck_assert(vals);
    for (int i = 0; i < N_RANDOM; i++) {
        docs[i] = bson_new();
        append_random(docs[i], "v", 0);
        bson_iter_t it;
        ck_assert(bson_iter_init_find(&it, docs[i], "v"));
        bson_value_copy(bson_iter_value(&it), &vals[i]);
        struct cairn_error err = {0};
        ck_assert_msg(qry_key_encode(&vals[i], &encs[i], &err) == 0, "encode: %s", err.msg);
    }
    long mismatches = 0, asym = 0, prefixes = 0;
    for (int i = 0; i < N_RANDOM; i++) {
        for (int j = i; j < N_RANDOM; j++) {
            int want = sgn(qry_cmp(&vals[i], &vals[j]));
            int got = cmp_enc(&encs[i], &encs[j]);
            if (want != got && mismatches++ < 5) {
                char *a = bson_as_canonical_extended_json(docs[i], NULL);
                char *b = bson_as_canonical_extended_json(docs[j], NULL);
                fprintf(stderr, "order mismatch: %s vs %s: cmp %d, enc %d\n", a, b, want, got);
                bson_free(a);
                bson_free(b);
            }
            if (sgn(qry_cmp(&vals[j], &vals[i])) != -want) {
                asym++;
            }
            if (got != 0) {
                /* no proper prefix */
                const struct cairn_buf *s = encs[i].len < encs[j].len ? &encs[i] : &encs[j];
                const struct cairn_buf *l = s == &encs[i] ? &encs[j] : &encs[i];
                if (s->len != l->len && memcmp(s->data, l->data, s->len) == 0) {
                    prefixes++;
                }
            }
        }
    }
    ck_assert_int_eq(mismatches, 0);
    ck_assert_int_eq(asym, 0);
    ck_assert_int_eq(prefixes, 0);
    for (int i = 0; i < N_RANDOM; i++) {
        bson_destroy(docs[i]);
        bson_value_destroy(&vals[i]);
        cairn_buf_free(&encs[i]);
    }
    free(docs);
    free(vals);
    free(encs);
}
END_TEST

/* Sorted tricky numbers: encodings strictly ascend. */
START_TEST(test_number_chain)
{
    static const char *const chain[] = {
        "{\"$numberDouble\": \"NaN\"}",
        "{\"$numberDouble\": \"-Infinity\"}",
        "-1.7976931348623157e308",
        "{\"$numberLong\": \"-9223372036854775808\"}",
        "{\"$numberLong\": \"-9223372036854775807\"}",
        "{\"$numberLong\": \"-9007199254740993\"}",
        "-9007199254740992.0",
        "-1.5",
        "-1",
        "-5e-324",
        "0",
        "5e-324",
        "2.2250738585072014e-308",
        "0.1",
        "1",
        "1.0000000000000002",
        "2",
        "2147483647",
        "{\"$numberLong\": \"2147483648\"}",
        "9007199254740992.0",
        "{\"$numberLong\": \"9007199254740993\"}",
        "9007199254740994.0",
        "{\"$numberLong\": \"9223372036854775807\"}",
        "9223372036854775808.0",
        "1e300",
        "{\"$numberDouble\": \"Infinity\"}",
        "\"\"",
    };
    struct cairn_buf prev = CAIRN_BUF_INIT, cur = CAIRN_BUF_INIT;
    for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++) {
        bson_value_t v = parse_json_value(chain[i]);
        encode_ok(&v, &cur);
        if (i > 0) {
            ck_assert_msg(cmp_enc(&prev, &cur) < 0, "%s !< %s", chain[i - 1], chain[i]);
        }
        struct cairn_buf tmp = prev;
        prev = cur;
        cur = tmp;
        bson_value_destroy(&v);
    }
    cairn_buf_free(&prev);
    cairn_buf_free(&cur);
}
END_TEST

static Suite *keyenc_suite(void)
{
    Suite *s = suite_create("keyenc");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_equal_encodings);
    tcase_add_test(tc, test_rejected);
    tcase_add_test(tc, test_appends);
    tcase_add_test(tc, test_number_chain);
    tcase_add_test(tc, test_property_random);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keyenc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
