/*
 * test_compare.c: unit tests of the BSON comparison order (compare.c) and
 * of exact path lookup (path.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "query/query.h"
#include "query/query_int.h"

/* Values in ascending order; entries with the same group compare equal. */
struct ordered
{
    int group;
    const char *json; /* the value, as extended JSON */
};

static const struct ordered order_table[] = {
    {0, "{\"$minKey\": 1}"},
    {1, "{\"$undefined\": true}"},
    {2, "null"},
    {3, "{\"$numberDouble\": \"NaN\"}"},
    {3, "{\"$numberDouble\": \"-NaN\"}"},
    {4, "{\"$numberDouble\": \"-Infinity\"}"},
    {5, "{\"$numberDouble\": \"-1e300\"}"},
    {6, "{\"$numberLong\": \"-9223372036854775808\"}"},
    {6, "{\"$numberDouble\": \"-9223372036854775808\"}"},
    {7, "{\"$numberLong\": \"-9223372036854775807\"}"},
    {8, "{\"$numberLong\": \"-9007199254740993\"}"},
    {9, "{\"$numberLong\": \"-9007199254740992\"}"},
    {9, "{\"$numberDouble\": \"-9007199254740992\"}"},
    {10, "-2.5"},
    {11, "-2"},
    {11, "{\"$numberLong\": \"-2\"}"},
    {11, "-2.0"},
    {12, "-1.5"},
    {13, "-1e-300"},
    {14, "0"},
    {14, "-0.0"},
    {14, "0.0"},
    {14, "{\"$numberLong\": \"0\"}"},
    {14, "{\"$numberDecimal\": \"0\"}"},
    {15, "5e-324"},
    {16, "0.1"},
    {17, "0.5"},
    {17, "{\"$numberDecimal\": \"0.5\"}"},
    {18, "1"},
    {18, "1.0"},
    {18, "{\"$numberLong\": \"1\"}"},
    {18, "{\"$numberDecimal\": \"1.0\"}"},
    {19, "1.0000000000000002"},
    {20, "2147483647"},
    {21, "2147483648"},
    {22, "9007199254740992"},
    {22, "9007199254740992.0"},
    {23, "{\"$numberLong\": \"9007199254740993\"}"},
    {24, "9007199254740994.0"},
    {24, "{\"$numberLong\": \"9007199254740994\"}"},
    {25, "{\"$numberLong\": \"9223372036854775807\"}"},
    {26, "9223372036854775808.0"},
    {27, "1e300"},
    {28, "{\"$numberDouble\": \"Infinity\"}"},
    {29, "\"\""},
    {30, "\"\\u0000\""},
    {31, "\"A\""},
    {32, "\"a\""},
    {32, "{\"$symbol\": \"a\"}"},
    {33, "\"a\\u0000\""},
    {34, "\"ab\""},
    {35, "\"b\""},
    {36, "\"\\u00e9\""},
    {37, "{}"},
    {38, "{\"a\": null}"},
    {39, "{\"a\": 1}"},
    {39, "{\"a\": 1.0}"},
    {40, "{\"a\": 1, \"b\": 1}"},
    {41, "{\"a\": 2}"},
    {42, "{\"b\": 0}"},
    {43, "{\"a\": \"x\"}"},
    {44, "{\"a\": {}}"},
    {45, "{\"a\": []}"},
    {46, "[]"},
    {47, "[null]"},
    {48, "[1]"},
    {48, "[1.0]"},
    {49, "[1, 2]"},
    {50, "[2]"},
    {51, "[\"a\"]"},
    {52, "[[]]"},
    {53, "{\"$binary\": {\"base64\": \"\", \"subType\": \"00\"}}"},
    {54, "{\"$binary\": {\"base64\": \"AA==\", \"subType\": \"00\"}}"},
    {55, "{\"$binary\": {\"base64\": \"AQ==\", \"subType\": \"00\"}}"},
    {56, "{\"$binary\": {\"base64\": \"AA==\", \"subType\": \"04\"}}"},
    {57, "{\"$binary\": {\"base64\": \"AAA=\", \"subType\": \"00\"}}"},
    {58, "{\"$oid\": \"000000000000000000000000\"}"},
    {59, "{\"$oid\": \"000000000000000000000001\"}"},
    {60, "{\"$oid\": \"ffffffffffffffffffffffff\"}"},
    {61, "false"},
    {62, "true"},
    {63, "{\"$date\": {\"$numberLong\": \"-1\"}}"},
    {64, "{\"$date\": {\"$numberLong\": \"0\"}}"},
    {65, "{\"$date\": {\"$numberLong\": \"1000\"}}"},
    {66, "{\"$timestamp\": {\"t\": 0, \"i\": 0}}"},
    {67, "{\"$timestamp\": {\"t\": 1, \"i\": 0}}"},
    {68, "{\"$timestamp\": {\"t\": 1, \"i\": 5}}"},
    {69, "{\"$timestamp\": {\"t\": 4294967295, \"i\": 0}}"},
    {70, "{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}"},
    {71, "{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"i\"}}"},
    {72, "{\"$regularExpression\": {\"pattern\": \"b\", \"options\": \"\"}}"},
    {73, "{\"$code\": \"a\"}"},
    {74, "{\"$code\": \"b\"}"},
    {75, "{\"$maxKey\": 1}"},
};

#define N_ORDER (sizeof order_table / sizeof order_table[0])

/* Parses {"v": json} into *doc and returns a view of the value. */
static const bson_value_t *parse_value(const char *json, bson_t *doc, bson_iter_t *it)
{
    char buf[512];
    bson_error_t e;
    snprintf(buf, sizeof buf, "{\"v\": %s}", json);
    ck_assert_msg(bson_init_from_json(doc, buf, -1, &e), "bad JSON %s: %s", json, e.message);
    ck_assert(bson_iter_init_find(it, doc, "v"));
    return bson_iter_value(it);
}

static int sgn(int x)
{
    return x < 0 ? -1 : (x > 0 ? 1 : 0);
}

START_TEST(test_order_table)
{
    bson_value_t vals[N_ORDER];
    for (size_t i = 0; i < N_ORDER; i++) {
        bson_t doc;
        bson_iter_t it;
        bson_value_copy(parse_value(order_table[i].json, &doc, &it), &vals[i]);
        bson_destroy(&doc);
    }
    for (size_t i = 0; i < N_ORDER; i++) {
        for (size_t j = 0; j < N_ORDER; j++) {
            int want = sgn(order_table[i].group - order_table[j].group);
            int got = sgn(qry_cmp(&vals[i], &vals[j]));
            ck_assert_msg(got == want, "cmp(%s, %s) = %d, want %d", order_table[i].json,
                          order_table[j].json, got, want);
        }
    }
    for (size_t i = 0; i < N_ORDER; i++) {
        bson_value_destroy(&vals[i]);
    }
}
END_TEST

START_TEST(test_type_rank)
{
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_MINKEY), qry_type_rank(BSON_TYPE_NULL));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_UNDEFINED), qry_type_rank(BSON_TYPE_DOUBLE));
    ck_assert_int_eq(qry_type_rank(BSON_TYPE_DOUBLE), qry_type_rank(BSON_TYPE_INT32));
    ck_assert_int_eq(qry_type_rank(BSON_TYPE_INT64), qry_type_rank(BSON_TYPE_DECIMAL128));
    ck_assert_int_eq(qry_type_rank(BSON_TYPE_UTF8), qry_type_rank(BSON_TYPE_SYMBOL));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_UTF8), qry_type_rank(BSON_TYPE_DOCUMENT));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_DOCUMENT), qry_type_rank(BSON_TYPE_ARRAY));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_ARRAY), qry_type_rank(BSON_TYPE_BINARY));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_BINARY), qry_type_rank(BSON_TYPE_OID));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_OID), qry_type_rank(BSON_TYPE_BOOL));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_BOOL), qry_type_rank(BSON_TYPE_DATE_TIME));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_DATE_TIME), qry_type_rank(BSON_TYPE_TIMESTAMP));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_TIMESTAMP), qry_type_rank(BSON_TYPE_REGEX));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_REGEX), qry_type_rank(BSON_TYPE_MAXKEY));
    ck_assert_int_lt(qry_type_rank(BSON_TYPE_CODEWSCOPE), qry_type_rank(BSON_TYPE_MAXKEY));
}
END_TEST

/* Field names and field order matter in documents. */
START_TEST(test_cmp_docs)
{
    static const struct
    {
        const char *a, *b;
        int want;
    } cases[] = {
        {"{}", "{}", 0},
        {"{\"a\": 1}", "{\"a\": 1}", 0},
        {"{\"a\": 1}", "{\"a\": {\"$numberLong\": \"1\"}}", 0},
        {"{\"a\": 1, \"b\": 2}", "{\"b\": 2, \"a\": 1}", -1},
        {"{\"a\": 1}", "{\"a\": 1, \"b\": 0}", -1},
        {"{\"b\": 1}", "{\"a\": 1}", 1},
        {"{\"a\": \"x\"}", "{\"a\": 5}", 1},
        {"{\"a\": {\"b\": 1}}", "{\"a\": {\"b\": 2}}", -1},
        {"{\"a\": [1, 2]}", "{\"a\": [1, 3]}", -1},
        {"{\"a\": null}", "{\"a\": {\"$minKey\": 1}}", 1},
        {"{\"z\": 1}", "{\"a\": \"s\"}", -1}, /* type rank before field name */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_error_t e;
        bson_t *a = bson_new_from_json((const uint8_t *)cases[i].a, -1, &e);
        bson_t *b = bson_new_from_json((const uint8_t *)cases[i].b, -1, &e);
        ck_assert(a && b);
        ck_assert_msg(sgn(qry_cmp_docs(a, b)) == cases[i].want, "cmp_docs(%s, %s)", cases[i].a,
                      cases[i].b);
        ck_assert_msg(sgn(qry_cmp_docs(b, a)) == -cases[i].want, "cmp_docs(%s, %s) reversed",
                      cases[i].a, cases[i].b);
        bson_destroy(a);
        bson_destroy(b);
    }
}
END_TEST

START_TEST(test_path_find)
{
    static const struct
    {
        const char *doc, *path;
        const char *want; /* JSON of the value, or NULL when absent */
    } cases[] = {
        {"{\"a\": 1}", "a", "1"},
        {"{\"a\": 1}", "b", NULL},
        {"{\"a\": {\"b\": {\"c\": \"x\"}}}", "a.b.c", "\"x\""},
        {"{\"a\": {\"b\": 1}}", "a.c", NULL},
        {"{\"a\": [10, 20, 30]}", "a.1", "20"},
        {"{\"a\": [10, 20, 30]}", "a.3", NULL},
        {"{\"a\": [10, 20, 30]}", "a.01", NULL},
        {"{\"a\": [{\"b\": 1}, {\"b\": 2}]}", "a.1.b", "2"},
        {"{\"a\": [{\"b\": 1}, {\"b\": 2}]}", "a.b", NULL},
        {"{\"a\": [[1, 2], [3, 4]]}", "a.1.0", "3"},
        {"{\"a\": 5}", "a.b", NULL},
        {"{\"a\": {\"0\": 7}}", "a.0", "7"},
        {"{\"a.b\": 1}", "a.b", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_error_t e;
        bson_t *d = bson_new_from_json((const uint8_t *)cases[i].doc, -1, &e);
        ck_assert(d);
        bson_iter_t it;
        bool found = qry_path_find(d, cases[i].path, &it);
        ck_assert_msg(found == (cases[i].want != NULL), "find %s in %s", cases[i].path,
                      cases[i].doc);
        if (found) {
            bson_t wd;
            bson_iter_t wit;
            const bson_value_t *w = parse_value(cases[i].want, &wd, &wit);
            ck_assert_msg(qry_cmp(bson_iter_value(&it), w) == 0, "value of %s in %s", cases[i].path,
                          cases[i].doc);
            bson_destroy(&wd);
        }
        bson_destroy(d);
    }
}
END_TEST

/* Builds {a: {a: ... {} ...}} nested `n` deep as raw BSON (8n+5 bytes). */
static uint8_t *deep_doc(uint32_t n, uint32_t *len)
{
    uint32_t total = 8 * n + 5;
    uint8_t *b = calloc(1, total);
    ck_assert_ptr_nonnull(b);
    for (uint32_t i = 0; i <= n; i++) {
        uint32_t l = total - 8 * i;
        uint8_t *p = b + 7 * i;
        p[0] = (uint8_t)l;
        p[1] = (uint8_t)(l >> 8);
        p[2] = (uint8_t)(l >> 16);
        p[3] = (uint8_t)(l >> 24);
        if (i < n) {
            p[4] = 0x03;
            p[5] = 'a';
            p[6] = 0;
        }
    }
    *len = total;
    return b;
}

/* Very deep documents compare without exhausting the stack. */
START_TEST(test_deep_nesting)
{
    uint32_t la, lb, lc;
    uint8_t *a = deep_doc(200000, &la);
    uint8_t *b = deep_doc(200000, &lb);
    uint8_t *c = deep_doc(150, &lc);
    bson_t ba, bb, bc;
    ck_assert(bson_init_static(&ba, a, la));
    ck_assert(bson_init_static(&bb, b, lb));
    ck_assert(bson_init_static(&bc, c, lc));
    ck_assert_int_eq(qry_cmp_docs(&ba, &bb), 0);
    int x = qry_cmp_docs(&ba, &bc);
    ck_assert_int_ne(x, 0);
    ck_assert_int_eq(sgn(qry_cmp_docs(&bc, &ba)), -sgn(x));
    ck_assert_int_eq(qry_cmp_docs(&bc, &bc), 0);
    free(a);
    free(b);
    free(c);
}
END_TEST

static Suite *compare_suite(void)
{
    Suite *s = suite_create("compare");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_order_table);
    tcase_add_test(tc, test_type_rank);
    tcase_add_test(tc, test_cmp_docs);
    tcase_add_test(tc, test_path_find);
    tcase_add_test(tc, test_deep_nesting);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(compare_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
