/*
 * test_keydec.c: unit tests of exact index-key decoding (keydec.c) and of
 * the pure planner pieces around it: a property test that random values of
 * every decodable type (numbers of each type at their edges, -0.0,
 * strings with NULs, nested documents, missing vs null) come back with the
 * same BSON bytes through qry_index_keys + qry_key_decode, on ascending,
 * descending and compound indexes; decimals and absent type bits refuse;
 * hint matching (plan_hint.c) and coverage rules (plan_cover.c).
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static struct qry_index *index_json(const char *json)
{
    bson_error_t e;
    bson_t *spec = bson_new_from_json((const uint8_t *)json, -1, &e);
    struct qry_index *ix = NULL;
    struct cairn_error err = {0};
    ck_assert_ptr_nonnull(spec);
    ck_assert_int_eq(qry_index_compile(spec, &ix, &err), 0);
    bson_destroy(spec);
    return ix;
}

static void append_random(bson_t *d, const char *key, int depth)
{
    static const double doubles[] = {0.0,
                                     1.0,
                                     -1.0,
                                     0.5,
                                     -2.75,
                                     1e300,
                                     -1e-300,
                                     4.9e-324,
                                     2.2250738585072014e-308,
                                     9007199254740993.0,
                                     INFINITY,
                                     -INFINITY,
                                     123456.789};
    static const int64_t ints[] = {0,
                                   1,
                                   -1,
                                   2,
                                   1023,
                                   INT32_MAX,
                                   INT32_MIN,
                                   INT64_MAX,
                                   INT64_MIN,
                                   (int64_t)1 << 53,
                                   -((int64_t)1 << 62) + 7};
    uint64_t r = rnd() % (depth > 2 ? 12 : 14);
    switch (r) {
        case 0:
            bson_append_int32(d, key, -1, (int32_t)ints[rnd() % 7]);
            break;
        case 1:
            bson_append_int64(d, key, -1, ints[rnd() % 11]);
            break;
        case 2:
            bson_append_double(d, key, -1, doubles[rnd() % 13]);
            break;
        case 3:
            bson_append_double(d, key, -1, -0.0);
            break;
        case 4:
            if (rnd() & 1) {
                bson_append_utf8(d, key, -1, "ab\0c", 4);
            } else {
                bson_append_utf8(d, key, -1, "", 0);
            }
            break;
        case 5:
            bson_append_symbol(d, key, -1, "sym", 3);
            break;
        case 6: {
            bson_oid_t oid;
            for (int i = 0; i < 12; i++) {
                oid.bytes[i] = (uint8_t)rnd();
            }
            bson_append_oid(d, key, -1, &oid);
            break;
        }
        case 7:
            bson_append_bool(d, key, -1, rnd() & 1);
            break;
        case 8:
            bson_append_date_time(d, key, -1, (int64_t)(rnd() % 4000000000000ull) - 2000000000000);
            break;
        case 9:
            bson_append_timestamp(d, key, -1, (uint32_t)rnd(), (uint32_t)rnd());
            break;
        case 10: {
            uint8_t b[5] = {0, 0xFF, 1, 0, 7};
            bson_append_binary(d, key, -1, BSON_SUBTYPE_BINARY, b, (uint32_t)(rnd() % 6));
            break;
        }
        case 11:
            bson_append_null(d, key, -1);
            break;
        case 12:
        case 13: {
            bson_t sub;
            bool arr = r == 13;
            if (arr) {
                bson_append_array_begin(d, key, -1, &sub);
            } else {
                bson_append_document_begin(d, key, -1, &sub);
            }
            size_t n = rnd() % 4;
            for (size_t i = 0; i < n; i++) {
                char k[16];
                snprintf(k, sizeof k, arr ? "%zu" : "f%zu", i);
                append_random(&sub, k, depth + 1);
            }
            if (arr) {
                bson_append_array_end(d, &sub);
            } else {
                bson_append_document_end(d, &sub);
            }
            break;
        }
    }
}

/* Keys of `doc` in `ix` (one key: no array on the fields), decoded. */
static int roundtrip(const struct qry_index *ix, const bson_t *doc, bson_t *out, bool drop_tb)
{
    struct qry_ixkeys k = QRY_IXKEYS_INIT;
    struct cairn_error err = {0};
    ck_assert_int_eq(qry_index_keys(ix, doc, &k, &err), 0);
    ck_assert_uint_eq(k.n, 1);
    int rc =
        qry_key_decode(ix, k.buf.data + k.off[0], k.len[0],
                       drop_tb ? NULL : k.tb.data + k.tb_off[0], drop_tb ? 0 : k.tb_len[0], out);
    qry_ixkeys_fini(&k);
    return rc;
}

START_TEST(test_roundtrip_random)
{
    const char *specs[] = {"{\"key\": {\"v\": 1}, \"name\": \"v\"}",
                           "{\"key\": {\"v\": -1}, \"name\": \"v\"}",
                           "{\"key\": {\"a\": 1, \"v\": -1, \"c\": 1}, \"name\": \"avc\"}"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        struct qry_index *ix = index_json(specs[s]);
        for (int i = 0; i < 3000; i++) {
            bson_t doc = BSON_INITIALIZER, want = BSON_INITIALIZER, got = BSON_INITIALIZER;
            for (size_t f = 0; f < qry_index_n_fields(ix); f++) {
                const char *p = qry_index_field(ix, f, NULL);
                if (rnd() % 8 == 0) {
                    continue; /* missing: decodes to nothing */
                }
                bson_t one = BSON_INITIALIZER;
                append_random(&one, p, 0);
                bson_iter_t it;
                bson_iter_init(&it, &one);
                bson_iter_next(&it);
                if (BSON_ITER_HOLDS_ARRAY(&it)) { /* arrays are multikey: not decoded */
                    bson_destroy(&one);
                    continue;
                }
                bson_concat(&doc, &one);
                bson_destroy(&one);
            }
            /* The expected decoding: the fields in key-pattern order. */
            for (size_t f = 0; f < qry_index_n_fields(ix); f++) {
                bson_iter_t it;
                if (bson_iter_init_find(&it, &doc, qry_index_field(ix, f, NULL))) {
                    bson_append_value(&want, qry_index_field(ix, f, NULL), -1,
                                      bson_iter_value(&it));
                }
            }
            int rc = roundtrip(ix, &doc, &got, false);
            char *js = bson_as_canonical_extended_json(&doc, NULL);
            ck_assert_msg(rc == 1, "not decoded: %s", js);
            ck_assert_msg(got.len == want.len &&
                              memcmp(bson_get_data(&got), bson_get_data(&want), got.len) == 0,
                          "differs: %s", js);
            bson_free(js);
            bson_destroy(&doc);
            bson_destroy(&want);
            bson_destroy(&got);
        }
        qry_index_free(ix);
    }
}
END_TEST

START_TEST(test_refusals)
{
    struct qry_index *ix = index_json("{\"key\": {\"v\": 1}, \"name\": \"v\"}");
    bson_t doc = BSON_INITIALIZER, got = BSON_INITIALIZER;
    bson_decimal128_t dec;
    bson_decimal128_from_string("1.10", &dec);
    bson_append_decimal128(&doc, "v", 1, &dec);
    ck_assert_int_eq(roundtrip(ix, &doc, &got, false), 0);
    bson_reinit(&doc);
    bson_reinit(&got);
    BSON_APPEND_INT32(&doc, "v", 5);
    ck_assert_int_eq(roundtrip(ix, &doc, &got, true), 0); /* no type bits: refused */
    bson_reinit(&doc);
    bson_reinit(&got);
    BSON_APPEND_BOOL(&doc, "v", true);
    ck_assert_int_eq(roundtrip(ix, &doc, &got, true), 1); /* none needed */
    bson_destroy(&doc);
    bson_destroy(&got);
    qry_index_free(ix);
}
END_TEST

START_TEST(test_hint_matching)
{
    bson_t *kp = bson_new_from_json((const uint8_t *)"{\"a\": 1, \"b\": -1}", -1, NULL);
    const char *yes[] = {"{\"h\": \"a_1_b_-1\"}", "{\"h\": {\"a\": 1, \"b\": -1}}",
                         "{\"h\": {\"a\": 1.0, \"b\": {\"$numberLong\": \"-1\"}}}"};
    const char *no[] = {"{\"h\": \"a_1\"}", "{\"h\": {\"a\": 1}}", "{\"h\": {\"b\": -1, \"a\": 1}}",
                        "{\"h\": {\"a\": 1, \"b\": 1}}", "{\"h\": 5}"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0] + sizeof no / sizeof no[0]; i++) {
        bool want = i < sizeof yes / sizeof yes[0];
        const char *j = want ? yes[i] : no[i - sizeof yes / sizeof yes[0]];
        bson_t *d = bson_new_from_json((const uint8_t *)j, -1, NULL);
        bson_iter_t it;
        bson_iter_init_find(&it, d, "h");
        ck_assert_msg(qry_hint_matches(bson_iter_value(&it), "a_1_b_-1", kp) == want, "%s", j);
        bson_destroy(d);
    }
    bson_t *d = bson_new_from_json(
        (const uint8_t
             *)"{\"n\": {\"$natural\": -1}, \"i\": {\"_id\": 1}, \"e\": {}, \"s\": \"_id_\"}",
        -1, NULL);
    bson_iter_t it;
    int dir = 0;
    bson_iter_init_find(&it, d, "n");
    ck_assert(qry_hint_natural(bson_iter_value(&it), &dir) && dir == -1);
    bson_iter_init_find(&it, d, "i");
    ck_assert(qry_hint_is_id(bson_iter_value(&it)) && qry_hint_given(bson_iter_value(&it)));
    bson_iter_init_find(&it, d, "s");
    ck_assert(qry_hint_is_id(bson_iter_value(&it)));
    bson_iter_init_find(&it, d, "e");
    ck_assert(!qry_hint_given(bson_iter_value(&it)));
    ck_assert(!qry_hint_given(NULL));
    bson_destroy(d);
    bson_destroy(kp);
}
END_TEST

static bool covers(const struct qry_index *ix, const char *f, const char *p, const char *s)
{
    bson_t *fb = f ? bson_new_from_json((const uint8_t *)f, -1, NULL) : NULL;
    bson_t *pb = p ? bson_new_from_json((const uint8_t *)p, -1, NULL) : NULL;
    bson_t *sb = s ? bson_new_from_json((const uint8_t *)s, -1, NULL) : NULL;
    bool r = qry_plan_covers(ix, fb, pb, sb);
    bson_destroy(fb);
    bson_destroy(pb);
    bson_destroy(sb);
    return r;
}

START_TEST(test_cover_rules)
{
    struct qry_index *ix = index_json("{\"key\": {\"a\": 1, \"b\": -1}, \"name\": \"ab\"}");
    ck_assert(covers(ix, "{\"a\": 1}", "{\"a\": 1, \"_id\": 0}", NULL));
    ck_assert(covers(ix, "{\"a\": 1, \"_id\": 3}", "{\"b\": true}", "{\"b\": -1}"));
    ck_assert(covers(ix, "{\"$or\": [{\"a\": 1}, {\"b\": {\"$gt\": 2}}]}", "{\"a\": 1}", NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", NULL, NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", "{}", NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", "{\"c\": 1}", NULL));
    ck_assert(!covers(ix, "{\"c\": 1}", "{\"a\": 1}", NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", "{\"b\": 0}", NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", "{\"_id\": 0}", NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", "{\"a\": {\"$slice\": 1}}", NULL));
    ck_assert(!covers(ix, "{\"a.x\": 1}", "{\"a\": 1}", NULL));
    ck_assert(!covers(ix, "{\"$expr\": {\"$eq\": [\"$a\", 1]}}", "{\"a\": 1}", NULL));
    ck_assert(!covers(ix, "{\"a\": 1}", "{\"a\": 1}", "{\"c\": 1}"));
    qry_index_free(ix);
    ix = index_json("{\"key\": {\"a.x\": 1}, \"name\": \"ax\"}");
    ck_assert(!covers(ix, "{\"a.x\": 1}", "{\"a.x\": 1}", NULL));
    qry_index_free(ix);
}
END_TEST

static Suite *keydec_suite(void)
{
    Suite *s = suite_create("keydec");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_roundtrip_random);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_hint_matching);
    tcase_add_test(tc, test_cover_rules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keydec_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
