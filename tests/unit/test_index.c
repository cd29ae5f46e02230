/*
 * test_index.c: unit tests of secondary index specs and keys (query/index.c):
 * spec validation codes, spec comparison, multikey expansion, parallel
 * arrays, array elements without the rest of a path (null, as mongod),
 * sparse and partial indexes, and a seeded property test: for
 * random pairs of single-field values, memcmp order of the index keys
 * equals qry_cmp order (reversed for a descending field).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"

static struct qry_index *compile_json(const char *json, int *mongo_code)
{
    bson_error_t berr;
    bson_t *spec = bson_new_from_json((const uint8_t *)json, -1, &berr);
    struct qry_index *ix = NULL;
    struct cairn_error err = {0};

    ck_assert_msg(spec != NULL, "bad json %s", json);
    if (qry_index_compile(spec, &ix, &err) != 0) {
        *mongo_code = err.mongo_code;
    } else {
        *mongo_code = 0;
    }
    bson_destroy(spec);
    return ix;
}

static bson_t *doc_json(const char *json)
{
    bson_error_t berr;
    bson_t *d = bson_new_from_json((const uint8_t *)json, -1, &berr);
    ck_assert_msg(d != NULL, "bad json %s", json);
    return d;
}

/* Number of keys `doc` has in `ix`, or -mongo_code on error. */
static long nkeys(const struct qry_index *ix, const char *json)
{
    struct qry_ixkeys k = QRY_IXKEYS_INIT;
    struct cairn_error err = {0};
    bson_t *d = doc_json(json);
    long n = qry_index_keys(ix, d, &k, &err) == 0 ? (long)k.n : -(long)err.mongo_code;
    qry_ixkeys_fini(&k);
    bson_destroy(d);
    return n;
}

START_TEST(test_spec_validation)
{
    static const struct
    {
        const char *spec;
        int code;
    } cases[] = {
        {"{\"key\": {\"a\": 1}, \"name\": \"a_1\"}", 0},
        {"{\"key\": {\"a\": 1, \"b\": -1}, \"name\": \"ab\", \"unique\": true}", 0},
        {"{\"key\": {\"a\": 1}}", 9},
        {"{\"name\": \"x\"}", 9},
        {"{\"key\": {}, \"name\": \"x\"}", 67},
        {"{\"key\": {\"a\": 0}, \"name\": \"x\"}", 67},
        {"{\"key\": {\"a\": true}, \"name\": \"x\"}", 67},
        {"{\"key\": {\"$a\": 1}, \"name\": \"x\"}", 67},
        {"{\"key\": {\"a\": 1}, \"name\": \"\"}", 67},
        {"{\"key\": {\"a\": \"text\"}, \"name\": \"x\"}", 238},
        {"{\"key\": {\"a\": \"hashed\"}, \"name\": \"x\"}", 238},
        {"{\"key\": {\"a\": \"2dsphere\"}, \"name\": \"x\"}", 238},
        {"{\"key\": {\"$**\": 1}, \"name\": \"x\"}", 238},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"expireAfterSeconds\": 5}", 0},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"expireAfterSeconds\": \"5\"}", 67},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"expireAfterSeconds\": -1}", 67},
        {"{\"key\": {\"a\": 1, \"b\": 1}, \"name\": \"x\", \"expireAfterSeconds\": 5}", 67},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"collation\": {\"locale\": \"fr\"}}", 238},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"bogus\": 5}", 197},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"sparse\": true, "
         "\"partialFilterExpression\": {\"a\": 1}}",
         67},
        {"{\"key\": {\"a\": 1}, \"name\": \"x\", \"unique\": \"yes\"}", 14},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int code = -1;
        struct qry_index *ix = compile_json(cases[i].spec, &code);
        ck_assert_msg(code == cases[i].code, "%s: got %d want %d", cases[i].spec, code,
                      cases[i].code);
        ck_assert((ix != NULL) == (cases[i].code == 0));
        qry_index_free(ix);
    }
}
END_TEST

START_TEST(test_compare)
{
    int code;
    struct qry_index *a = compile_json("{\"key\": {\"a\": 1}, \"name\": \"a_1\"}", &code);
    struct qry_index *a2 = compile_json("{\"key\": {\"a\": 1.0}, \"name\": \"other\"}", &code);
    struct qry_index *au =
        compile_json("{\"key\": {\"a\": 1}, \"name\": \"u\", \"unique\": true}", &code);
    struct qry_index *ad = compile_json("{\"key\": {\"a\": -1}, \"name\": \"d\"}", &code);
    struct qry_index *ap = compile_json(
        "{\"key\": {\"a\": 1}, \"name\": \"p\", \"partialFilterExpression\": {\"b\": 1}}", &code);

    ck_assert_int_eq(qry_index_compare(a, a2), QRY_INDEX_SAME);
    ck_assert_int_eq(qry_index_compare(a, au), QRY_INDEX_EQUIVALENT);
    ck_assert_int_eq(qry_index_compare(a, ad), QRY_INDEX_DIFFERENT);
    ck_assert_int_eq(qry_index_compare(a, ap), QRY_INDEX_DIFFERENT);
    qry_index_free(a);
    qry_index_free(a2);
    qry_index_free(au);
    qry_index_free(ad);
    qry_index_free(ap);
}
END_TEST

START_TEST(test_multikey)
{
    int code;
    struct qry_index *a = compile_json("{\"key\": {\"a\": 1}, \"name\": \"a\"}", &code);
    struct qry_index *ab = compile_json("{\"key\": {\"a\": 1, \"b\": 1}, \"name\": \"ab\"}", &code);
    struct qry_index *xy =
        compile_json("{\"key\": {\"x.y\": 1, \"x.z\": 1}, \"name\": \"xy\"}", &code);

    ck_assert_int_eq(nkeys(a, "{\"a\": 1}"), 1);
    ck_assert_int_eq(nkeys(a, "{}"), 1);                    /* null */
    ck_assert_int_eq(nkeys(a, "{\"a\": [1, 2, 2, 3]}"), 3); /* distinct */
    ck_assert_int_eq(nkeys(a, "{\"a\": []}"), 1);           /* undefined */
    ck_assert_int_eq(nkeys(a, "{\"a\": [[1, 2], 3]}"), 2);  /* inner array whole */
    ck_assert_int_eq(nkeys(a, "{\"a\": [1, 1.0, {\"$numberLong\": \"1\"}]}"), 1);
    ck_assert_int_eq(nkeys(ab, "{\"a\": [1, 2], \"b\": 5}"), 2);
    ck_assert_int_eq(nkeys(ab, "{\"a\": 1, \"b\": [5, 6, 7]}"), 3);
    ck_assert_int_eq(nkeys(ab, "{\"a\": [1, 2], \"b\": [5, 6]}"), -171);
    ck_assert_int_eq(nkeys(xy, "{\"x\": [{\"y\": 1, \"z\": 2}, {\"y\": 3, \"z\": 4}]}"), 4);
    ck_assert_int_eq(nkeys(xy, "{\"x\": {\"y\": [1, 2], \"z\": [3, 4]}}"), -171);
    qry_index_free(a);
    qry_index_free(ab);
    qry_index_free(xy);
}
END_TEST

START_TEST(test_sparse_partial)
{
    int code;
    struct qry_index *s =
        compile_json("{\"key\": {\"a\": 1, \"b\": 1}, \"name\": \"s\", \"sparse\": true}", &code);
    struct qry_index *p = compile_json(
        "{\"key\": {\"a\": 1}, \"name\": \"p\", \"partialFilterExpression\": {\"b\": {\"$gt\": "
        "5}}}",
        &code);

    ck_assert_int_eq(nkeys(s, "{\"c\": 1}"), 0);
    ck_assert_int_eq(nkeys(s, "{\"b\": null}"), 1); /* present, even as null */
    ck_assert_int_eq(nkeys(p, "{\"a\": 1, \"b\": 3}"), 0);
    ck_assert_int_eq(nkeys(p, "{\"a\": 1, \"b\": 7}"), 1);
    qry_index_free(s);
    qry_index_free(p);
}
END_TEST

/* The only key `doc` has in `ix` is {field: null}. */
static bool only_null(const struct qry_index *ix, const char *json)
{
    struct qry_ixkeys k = QRY_IXKEYS_INIT;
    struct cairn_error err = {0};
    bson_t *d = doc_json(json);
    bson_iter_t it;
    bool ok = qry_index_keys(ix, d, &k, &err) == 0 && k.n == 1 && bson_iter_init(&it, k.vals[0]) &&
              bson_iter_next(&it) && bson_iter_type(&it) == BSON_TYPE_NULL;
    qry_ixkeys_fini(&k);
    bson_destroy(d);
    return ok;
}

/* mongod (BtreeKeyGenerator): an element of an array met before the end of the path that does
 * not lead to a value keys as null; a sparse index skips keys whose every field is missing. */
START_TEST(test_missing_in_array_elements)
{
    int code;
    struct qry_index *mk = compile_json("{\"key\": {\"m.k\": 1}, \"name\": \"mk\"}", &code);
    struct qry_index *smk =
        compile_json("{\"key\": {\"m.k\": 1}, \"name\": \"smk\", \"sparse\": true}", &code);
    struct qry_index *abc = compile_json("{\"key\": {\"a.b.c\": 1}, \"name\": \"abc\"}", &code);
    struct qry_index *smkz = compile_json(
        "{\"key\": {\"m.k\": 1, \"z\": 1}, \"name\": \"smkz\", \"sparse\": true}", &code);

    ck_assert_int_eq(nkeys(mk, "{\"m\": [{\"k\": 1}, {}]}"), 2);           /* 1, null */
    ck_assert_int_eq(nkeys(mk, "{\"m\": [{\"k\": 1}, 5]}"), 2);            /* 1, null */
    ck_assert_int_eq(nkeys(mk, "{\"m\": [{\"k\": 1}, [{\"k\": 2}]]}"), 2); /* 1, null */
    ck_assert_int_eq(nkeys(mk, "{\"m\": [{\"k\": 1}, {\"k\": 1}]}"), 1);
    ck_assert_int_eq(nkeys(mk, "{\"m\": [{\"k\": null}, {}]}"), 1); /* null once */
    ck_assert_int_eq(nkeys(mk, "{\"m\": [{\"k\": []}, {}]}"), 2);   /* undefined, null */
    ck_assert(only_null(mk, "{\"m\": [{}, 7]}"));
    ck_assert(only_null(mk, "{\"m\": []}"));
    ck_assert(only_null(mk, "{\"m\": [[{\"k\": 1}]]}")); /* nested arrays are not traversed */
    ck_assert_int_eq(nkeys(abc, "{\"a\": [{\"b\": [{\"c\": 1}, {}]}, {\"x\": 1}]}"), 2);
    ck_assert(only_null(abc, "{\"a\": [{\"b\": []}, {\"b\": 3}]}"));
    /* Sparse: the missing elements give no key. */
    ck_assert_int_eq(nkeys(smk, "{\"m\": [{\"k\": 1}, {}]}"), 1);
    ck_assert_int_eq(nkeys(smk, "{\"m\": [{}, 5]}"), 0);
    ck_assert_int_eq(nkeys(smk, "{\"m\": [{\"k\": null}, {}]}"), 1);
    ck_assert_int_eq(nkeys(smkz, "{\"m\": [{\"k\": 1}, {}]}"), 1); /* (1, null) */
    ck_assert_int_eq(nkeys(smkz, "{\"m\": [{\"k\": 1}, {}], \"z\": 2}"), 2);
    ck_assert_int_eq(nkeys(smkz, "{\"m\": [{}], \"y\": 2}"), 0);
    qry_index_free(mk);
    qry_index_free(smk);
    qry_index_free(abc);
    qry_index_free(smkz);
}
END_TEST

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A random scalar or small document as {"a": v}. */
static bson_t *random_doc(void)
{
    bson_t *d = bson_new();
    char s[8];
    switch (rnd() % 7) {
        case 0:
            BSON_APPEND_INT32(d, "a", (int32_t)(rnd() % 21) - 10);
            break;
        case 1:
            BSON_APPEND_DOUBLE(d, "a", ((double)(rnd() % 2001) - 1000.0) / 8.0);
            break;
        case 2:
            BSON_APPEND_INT64(d, "a", (int64_t)(rnd() % 41) - 20);
            break;
        case 3:
            for (size_t i = 0; i < sizeof s - 1; i++) {
                s[i] = (char)('a' + rnd() % 3);
            }
            s[rnd() % (sizeof s)] = '\0';
            s[sizeof s - 1] = '\0';
            BSON_APPEND_UTF8(d, "a", s);
            break;
        case 4:
            BSON_APPEND_NULL(d, "a");
            break;
        case 5:
            BSON_APPEND_BOOL(d, "a", rnd() % 2);
            break;
        default: {
            bson_t sub;
            BSON_APPEND_DOCUMENT_BEGIN(d, "a", &sub);
            BSON_APPEND_INT32(&sub, "x", (int32_t)(rnd() % 3));
            bson_append_document_end(d, &sub);
        }
    }
    return d;
}

static int sgn(int x)
{
    return (x > 0) - (x < 0);
}

START_TEST(test_key_order_property)
{
    int code;
    struct qry_index *asc = compile_json("{\"key\": {\"a\": 1}, \"name\": \"up\"}", &code);
    struct qry_index *desc = compile_json("{\"key\": {\"a\": -1}, \"name\": \"down\"}", &code);

    for (int round = 0; round < 4000; round++) {
        bson_t *x = random_doc(), *y = random_doc();
        bson_iter_t ix, iy;
        struct qry_ixkeys kx = QRY_IXKEYS_INIT, ky = QRY_IXKEYS_INIT;
        struct cairn_error err;
        bson_iter_init_find(&ix, x, "a");
        bson_iter_init_find(&iy, y, "a");
        int want = sgn(qry_cmp(bson_iter_value(&ix), bson_iter_value(&iy)));
        for (int dir = 0; dir < 2; dir++) {
            const struct qry_index *ixp = dir == 0 ? asc : desc;
            ck_assert_int_eq(qry_index_keys(ixp, x, &kx, &err), 0);
            ck_assert_int_eq(qry_index_keys(ixp, y, &ky, &err), 0);
            ck_assert_int_eq(kx.n, 1);
            ck_assert_int_eq(ky.n, 1);
            size_t n = kx.len[0] < ky.len[0] ? kx.len[0] : ky.len[0];
            int got = memcmp(kx.buf.data, ky.buf.data, n);
            if (got == 0) {
                got = (kx.len[0] > ky.len[0]) - (kx.len[0] < ky.len[0]);
            }
            ck_assert_msg(sgn(got) == (dir == 0 ? want : -want), "round %d dir %d", round, dir);
        }
        qry_ixkeys_fini(&kx);
        qry_ixkeys_fini(&ky);
        bson_destroy(x);
        bson_destroy(y);
    }
    qry_index_free(asc);
    qry_index_free(desc);
}
END_TEST

static Suite *index_suite(void)
{
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_spec_validation);
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_multikey);
    tcase_add_test(tc, test_sparse_partial);
    tcase_add_test(tc, test_missing_in_array_elements);
    tcase_add_test(tc, test_key_order_property);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(index_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
