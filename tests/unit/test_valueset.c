/*
 * test_valueset.c: the query layer's hashed and bounded helpers: the value
 * hash set (src/query/valueset.c) under MongoDB equality, the top-k sort
 * buffer (src/query/sortbuf.c) against a full stable sort, its spilling
 * to disk (sortspill.c), and the field
 * name index (src/query/nameidx.c).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "query/nameidx.h"
#include "query/query.h"
#include "query/valueset.h"
#include "test_json.h"

/* The values of the array field "v" of `json`, as views into *holder. */
static size_t values_of(const char *json, bson_t **holder, bson_value_t *out, size_t max)
{
    bson_iter_t it, ai;
    size_t n = 0;
    *holder = J(json);
    ck_assert_ptr_nonnull(*holder);
    ck_assert(bson_iter_init_find(&it, *holder, "v") && bson_iter_recurse(&it, &ai));
    while (bson_iter_next(&ai) && n < max) {
        out[n++] = *bson_iter_value(&ai);
    }
    return n;
}

START_TEST(test_equal_values_are_one)
{
    bson_t *d;
    bson_value_t v[16];
    size_t n = values_of(
        "{'v': [1, 1.0, {'$numberLong': '1'}, {'$numberDecimal': '1'},"
        " -0.0, 0, {'$numberDouble': 'NaN'}, {'$numberDecimal': 'NaN'},"
        " 'a', 'A', {'k': 1}, {'k': 1.0}, [1, 'a'], [1.0, 'a'], null, true]}",
        &d, v, 16);
    struct qry_valueset s;
    qry_valueset_init(&s, true);
    for (size_t i = 0; i < n; i++) {
        bool added;
        ck_assert_int_eq(qry_valueset_add(&s, &v[i], &added), 0);
    }
    /* 1, 0, NaN, 'a', 'A', {k:1}, [1,'a'], null, true */
    ck_assert_uint_eq(s.n, 9);
    for (size_t i = 0; i < n; i++) {
        ck_assert(qry_valueset_has(&s, &v[i]));
        for (size_t j = 0; j < n; j++) {
            if (qry_cmp(&v[i], &v[j]) == 0) {
                ck_assert_uint_eq(qry_value_hash(&v[i]), qry_value_hash(&v[j]));
            }
        }
    }
    bson_value_t two = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 2};
    ck_assert(!qry_valueset_has(&s, &two));
    qry_valueset_sort(&s);
    for (size_t i = 1; i < s.n; i++) {
        ck_assert_int_lt(qry_cmp(&s.v[i - 1], &s.v[i]), 0);
    }
    ck_assert(qry_valueset_has(&s, &v[0])); /* usable after sorting */
    qry_valueset_fini(&s);
    qry_valueset_fini(NULL);
    bson_destroy(d);
}
END_TEST

/* Values that compare equal hash equal at the edges of the numeric types:
 * past 2^53 (where int64 and decimal round to the same double), at the
 * int64 limits, decimal zeros, exponents and infinities, symbols, and
 * nested documents and arrays of such numbers. */
START_TEST(test_hash_agrees_with_cmp_at_numeric_edges)
{
    bson_t *d;
    bson_value_t v[64];
    size_t n = values_of(
        "{'v': [{'$numberLong': '9007199254740993'}, {'$numberDecimal': '9007199254740993'},"
        " {'$numberLong': '9007199254740992'}, 9007199254740992.0,"
        " {'$numberDecimal': '9007199254740992.000'},"
        " {'$numberLong': '9223372036854775807'}, {'$numberDecimal': '9223372036854775807'},"
        " 9223372036854775808.0, {'$numberDecimal': '9223372036854775808'},"
        " {'$numberLong': '-9223372036854775808'}, -9223372036854775808.0,"
        " {'$numberDecimal': '-0'}, {'$numberDecimal': '0E+300'}, -0.0, 0,"
        " {'$numberDecimal': '1E-400'}, 5e-324,"
        " {'$numberDecimal': '1E+2'}, 100, {'$numberDecimal': '100.00'},"
        " {'$numberDecimal': '0.1'}, 0.1,"
        " {'$numberDecimal': 'Infinity'}, {'$numberDouble': 'Infinity'},"
        " {'$numberDecimal': '-Infinity'}, {'$numberDouble': '-Infinity'},"
        " {'$numberDecimal': '1E+6000'}, {'$numberDecimal': '-NaN'},"
        " {'$numberDouble': 'NaN'}, {'$symbol': 'x'}, 'x',"
        " {'a': [1, {'b': {'$numberDecimal': '2.0'}}]}, {'a': [1.0, {'b': 2}]},"
        " [[{'$numberLong': '3'}], 4.0], [[3.0], {'$numberDecimal': '4'}]]}",
        &d, v, 64);
    size_t pairs = 0;
    ck_assert_uint_ge(n, 34);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            if (qry_cmp(&v[i], &v[j]) == 0) {
                pairs += i != j;
                ck_assert_msg(qry_value_hash(&v[i]) == qry_value_hash(&v[j]),
                              "values %zu and %zu are equal but hash apart", i, j);
            }
        }
    }
    ck_assert_uint_gt(pairs, 20); /* the list does hold equal values of other types */
    bson_destroy(d);
}
END_TEST

START_TEST(test_many_values_grow)
{
    struct qry_valueset s;
    qry_valueset_init(&s, false);
    for (int round = 0; round < 2; round++) {
        for (int32_t i = 0; i < 100000; i++) {
            bson_value_t v = {.value_type = BSON_TYPE_INT32, .value.v_int32 = i};
            bool added;
            ck_assert_int_eq(qry_valueset_add(&s, &v, &added), 0);
            ck_assert(added == (round == 0));
        }
    }
    ck_assert_uint_eq(s.n, 100000);
    bson_value_t d = {.value_type = BSON_TYPE_DOUBLE, .value.v_double = 99999.0};
    ck_assert(qry_valueset_has(&s, &d));
    d.value.v_double = 99999.5;
    ck_assert(!qry_valueset_has(&s, &d));
    qry_valueset_fini(&s);
}
END_TEST

/* Documents {_id: i, k: rand % 50}; the top k of a sortbuf must equal the
 * first k of a full (stable) sort, for every k. */
START_TEST(test_topk_matches_full_sort)
{
    enum { N = 2000 };
    bson_t *spec = J("{'k': -1}");
    struct qry_sort *sort = NULL;
    struct cairn_error err = {0};
    bson_t docs[N];
    unsigned seed = 12345;
    ck_assert_int_eq(qry_sort_compile(spec, &sort, &err), 0);
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        bson_init(&docs[i]);
        BSON_APPEND_INT32(&docs[i], "_id", i);
        BSON_APPEND_INT32(&docs[i], "k", (int32_t)((seed >> 16) % 50));
    }
    struct qry_sortbuf *all = NULL;
    bson_t **full = NULL;
    size_t nfull = 0;
    ck_assert_int_eq(qry_sortbuf_new(sort, 0, 0, NULL, &all, &err), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(qry_sortbuf_add(all, &docs[i], &err), 0);
    }
    ck_assert_int_eq(qry_sortbuf_finish(all, &full, &nfull, &err), 0);
    ck_assert_uint_eq(nfull, N);
    const uint64_t ks[] = {1, 7, 100, 1999, 2000, 5000};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        struct qry_sortbuf *b = NULL;
        bson_t **top = NULL;
        size_t ntop = 0;
        ck_assert_int_eq(qry_sortbuf_new(sort, ks[t], 0, NULL, &b, &err), 0);
        for (int i = 0; i < N; i++) {
            ck_assert_int_eq(qry_sortbuf_add(b, &docs[i], &err), 0);
        }
        ck_assert_uint_le(qry_sortbuf_bytes(b), ks[t] * 200);
        ck_assert_int_eq(qry_sortbuf_finish(b, &top, &ntop, &err), 0);
        ck_assert_uint_eq(ntop, ks[t] < N ? ks[t] : N);
        for (size_t i = 0; i < ntop; i++) {
            ck_assert(bson_equal(top[i], full[i]));
            bson_destroy(top[i]);
        }
        free(top);
        qry_sortbuf_free(b);
    }
    for (size_t i = 0; i < nfull; i++) {
        bson_destroy(full[i]);
    }
    free(full);
    qry_sortbuf_free(all);
    qry_sortbuf_free(NULL);
    for (int i = 0; i < N; i++) {
        bson_destroy(&docs[i]);
    }
    qry_sort_free(sort);
    bson_destroy(spec);
}
END_TEST

/* With allowDiskUse and a spill directory, a buffer past its cap writes
 * sorted runs and merges them back: the same order as in memory, stable. */
START_TEST(test_spilled_sort_merges_in_order)
{
    enum { N = 3000 };
    char dir[] = "/tmp/cairn-spill-XXXXXX";
    bson_t *spec = J("{'k': 1}");
    struct qry_sort *sort = NULL;
    struct cairn_error err = {0};
    struct qry_sortbuf *mem = NULL, *disk = NULL;
    bson_t **want = NULL;
    size_t nwant = 0;
    unsigned seed = 7;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    qry_set_spill_dir(dir);
    ck_assert_int_eq(qry_sort_compile(spec, &sort, &err), 0);
    ck_assert_int_eq(qry_sortbuf_new(sort, 0, 0, NULL, &mem, &err), 0);
    ck_assert_int_eq(qry_sortbuf_new(sort, 100, 10000, NULL, &disk, &err), 0);
    qry_sortbuf_set_disk_use(disk, true);
    for (int i = 0; i < N; i++) {
        bson_t d = BSON_INITIALIZER;
        seed = seed * 1103515245u + 12345u;
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_INT32(&d, "k", (int32_t)((seed >> 16) % 97));
        ck_assert_int_eq(qry_sortbuf_add(mem, &d, &err), 0);
        ck_assert_int_eq(qry_sortbuf_add(disk, &d, &err), 0);
        ck_assert_uint_le(qry_sortbuf_bytes(disk), 10000);
        bson_destroy(&d);
    }
    ck_assert(qry_sortbuf_spilled(disk));
    ck_assert(!qry_sortbuf_spilled(mem));
    ck_assert_int_eq(qry_sortbuf_finish(mem, &want, &nwant, &err), 0);
    ck_assert_int_eq(qry_sortbuf_done(disk, &err), 0);
    for (size_t i = 0;; i++) {
        bson_t *d = NULL;
        int got = qry_sortbuf_next(disk, &d, &err);
        ck_assert_int_ge(got, 0);
        if (got == 0) {
            ck_assert_uint_eq(i, nwant); /* the limit of 100 is the consumer's now */
            break;
        }
        ck_assert(bson_equal(d, want[i]));
        bson_destroy(d);
    }
    for (size_t i = 0; i < nwant; i++) {
        bson_destroy(want[i]);
    }
    free(want);
    qry_sortbuf_free(mem);
    qry_sortbuf_free(disk);
    qry_set_spill_dir(NULL);
    ck_assert_int_eq(rmdir(dir), 0); /* no run file left behind */
    qry_sort_free(sort);
    bson_destroy(spec);
}
END_TEST

START_TEST(test_sortbuf_cap_is_292_and_charges_the_budget)
{
    bson_t *spec = J("{'a': 1}");
    struct qry_sort *sort = NULL;
    struct cairn_error err = {0};
    struct qry_sortbuf *b = NULL;
    bson_t *doc = J("{'a': 1, 'pad': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'}");
    size_t before = qry_mem_held();
    int rv = 0;
    ck_assert_int_eq(qry_sort_compile(spec, &sort, &err), 0);
    ck_assert_int_eq(qry_sortbuf_new(sort, 0, 4096, NULL, &b, &err), 0);
    qry_sortbuf_set_disk_use(b, true);
    for (int i = 0; i < 1000 && rv == 0; i++) {
        rv = qry_sortbuf_add(b, doc, &err);
    }
    ck_assert_int_ne(rv, 0);
    ck_assert_int_eq(err.mongo_code, 292);
    ck_assert_ptr_nonnull(strstr(err.msg, "allowDiskUse"));
    ck_assert_uint_gt(qry_mem_held(), before);
    qry_sortbuf_free(b);
    ck_assert_uint_eq(qry_mem_held(), before);
    bson_destroy(doc);
    qry_sort_free(sort);
    bson_destroy(spec);
}
END_TEST

START_TEST(test_budget_refuses_past_the_limit)
{
    struct cairn_error err = {0};
    size_t old = qry_mem_budget();
    qry_set_mem_budget(qry_mem_held() + 1000);
    ck_assert_int_eq(qry_mem_charge(600, &err), 0);
    ck_assert_int_ne(qry_mem_charge(600, &err), 0);
    ck_assert_int_eq(err.mongo_code, 146);
    qry_mem_release(600);
    ck_assert_int_eq(qry_mem_charge(600, &err), 0);
    qry_mem_release(600);
    qry_set_mem_budget(old);
}
END_TEST

START_TEST(test_nameidx_finds_first_of_each_name)
{
    struct qry_nameidx ix;
    char names[3000][8];
    qry_nameidx_init(&ix);
    for (int i = 0; i < 3000; i++) {
        snprintf(names[i], sizeof names[i], "f%d", i % 2000);
        ck_assert_int_eq(qry_nameidx_push(&ix, names[i]), 0);
    }
    ck_assert_int_eq(qry_nameidx_find(&ix, "f0", 2), 0);
    ck_assert_int_eq(qry_nameidx_find(&ix, "f1999", 5), 1999);
    ck_assert_int_eq(qry_nameidx_find(&ix, "f5xyz", 2), 5); /* by length */
    ck_assert_int_eq(qry_nameidx_find(&ix, "f2000", 5), -1);
    ck_assert_int_eq(qry_nameidx_find(&ix, "", 0), -1);
    qry_nameidx_fini(&ix);
    ck_assert_int_eq(qry_nameidx_find(&ix, "f0", 2), -1);
    qry_nameidx_fini(NULL);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("valueset");
    TCase *tc = tcase_create("core");
    int failed;

    tcase_add_test(tc, test_equal_values_are_one);
    tcase_add_test(tc, test_hash_agrees_with_cmp_at_numeric_edges);
    tcase_add_test(tc, test_many_values_grow);
    tcase_add_test(tc, test_topk_matches_full_sort);
    tcase_add_test(tc, test_spilled_sort_merges_in_order);
    tcase_add_test(tc, test_sortbuf_cap_is_292_and_charges_the_budget);
    tcase_add_test(tc, test_budget_refuses_past_the_limit);
    tcase_add_test(tc, test_nameidx_finds_first_of_each_name);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
