/*
 * test_projection_sort.c: table-driven tests of find() projections
 * (src/query/projection.c) and sort specifications (src/query/sort.c).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/update_int.h"
#include "test_json.h"

struct pcase
{
    const char *doc;
    const char *spec;
    const char *want; /* NULL: compile error expected */
    int code;
    const char *msg;
};

#define D1 "{'_id':1,'a':1,'b':2}"
#define DA "{'_id':1,'a':[{'b':1,'c':2},{'c':3},5]}"
#define DS "{'_id':1,'a':[1,2,3],'b':1}"
#define DE "{'_id':1,'a':[{'x':1},{'x':2,'y':1},{'x':2}],'b':1}"

static const struct pcase pcases[] = {
    {D1, "{'a':1}", "{'_id':1,'a':1}", 0, NULL},
    {D1, "{'a':1,'_id':0}", "{'a':1}", 0, NULL},
    {D1, "{'_id':0,'a':1}", "{'a':1}", 0, NULL},
    {D1, "{'a':0}", "{'_id':1,'b':2}", 0, NULL},
    {D1, "{'_id':0}", "{'a':1,'b':2}", 0, NULL},
    {D1, "{}", D1, 0, NULL},
    {D1, "{'_id':1}", "{'_id':1}", 0, NULL},
    {D1, "{'_id':1,'a':0}", "{'_id':1,'b':2}", 0, NULL},
    {D1, "{'a':true}", "{'_id':1,'a':1}", 0, NULL},
    {D1, "{'a':false}", "{'_id':1,'b':2}", 0, NULL},
    {D1, "{'a':{'$numberLong':'1'}}", "{'_id':1,'a':1}", 0, NULL},
    {D1, "{'a':0.0}", "{'_id':1,'b':2}", 0, NULL},
    {D1, "{'a':2}", "{'_id':1,'a':1}", 0, NULL},
    {D1, "{'b':1,'a':1}", D1, 0, NULL},
    {D1, "{'zz':1}", "{'_id':1}", 0, NULL},
    {"{'_id':1,'a':{'b':1,'c':2},'d':3}", "{'a.b':1}", "{'_id':1,'a':{'b':1}}", 0, NULL},
    {"{'_id':1,'a':{'b':1,'c':2},'d':3}", "{'a.b':0}", "{'_id':1,'a':{'c':2},'d':3}", 0, NULL},
    {"{'_id':1,'a':{'b':1,'c':2},'d':3}", "{'a':{'b':1}}", "{'_id':1,'a':{'b':1}}", 0, NULL},
    {DA, "{'a.b':1}", "{'_id':1,'a':[{'b':1},{}]}", 0, NULL},
    {DA, "{'a.b':0}", "{'_id':1,'a':[{'c':2},{'c':3},5]}", 0, NULL},
    {"{'_id':1,'a':{'c':1}}", "{'a.b':1}", "{'_id':1,'a':{}}", 0, NULL},
    {"{'_id':1,'a':5}", "{'a.b':1}", "{'_id':1}", 0, NULL},
    {"{'_id':1,'a':5}", "{'a.b':0}", "{'_id':1,'a':5}", 0, NULL},
    {"{'_id':1,'a':[[{'b':1,'c':1}]]}", "{'a.b':1}", "{'_id':1,'a':[[{'b':1}]]}", 0, NULL},
    {"{'_id':{'x':1,'y':2},'a':1}", "{'_id.x':1}", "{'_id':{'x':1}}", 0, NULL},
    {D1, "{'a':1,'b':0}", NULL, 31254, "Cannot do exclusion on field b in inclusion projection"},
    {D1, "{'a':0,'b':1}", NULL, 31253, "Cannot do inclusion on field b in exclusion projection"},
    {D1, "{'a':1,'a.b':1}", NULL, 31249, "Path collision at a.b"},
    {D1, "{'a.b':1,'a':1}", NULL, 31250, "Path collision at a"},
    {D1, "{'a':{}}", NULL, 51270, NULL},
    {D1, "{'':1}", NULL, 40352, NULL},
    {D1, "{'a..b':1}", NULL, 15998, NULL},
    {D1, "{'$a':1}", NULL, 16410, NULL},
    /* $slice */
    {DS, "{'a':{'$slice':2}}", "{'_id':1,'a':[1,2],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':-2}}", "{'_id':1,'a':[2,3],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':10}}", DS, 0, NULL},
    {DS, "{'a':{'$slice':-10}}", DS, 0, NULL},
    {DS, "{'a':{'$slice':0}}", "{'_id':1,'a':[],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':[1,1]}}", "{'_id':1,'a':[2],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':[-2,1]}}", "{'_id':1,'a':[2],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':[5,1]}}", "{'_id':1,'a':[],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':[1,5]}}", "{'_id':1,'a':[2,3],'b':1}", 0, NULL},
    /* fuzz: negating the most negative long was signed overflow (UB) */
    {DS, "{'a':{'$slice':{'$numberLong':'-9223372036854775808'}}}", DS, 0, NULL},
    {DS, "{'a':{'$slice':[{'$numberLong':'-9223372036854775808'},1]}}", "{'_id':1,'a':[1],'b':1}",
     0, NULL},
    {DS, "{'a':{'$slice':{'$numberLong':'9223372036854775807'}}}", DS, 0, NULL},
    {DS, "{'a':{'$slice':[1,0]}}", NULL, 2, "$slice limit must be positive"},
    {DS, "{'a':{'$slice':'x'}}", NULL, 2, NULL},
    {DS, "{'a':{'$slice':1},'b':1}", "{'_id':1,'a':[1],'b':1}", 0, NULL},
    {DS, "{'a':{'$slice':1},'_id':0}", "{'a':[1],'b':1}", 0, NULL},
    {DS, "{'b':{'$slice':1}}", DS, 0, NULL},
    {"{'_id':1,'x':{'a':[1,2,3]}}", "{'x.a':{'$slice':1}}", "{'_id':1,'x':{'a':[1]}}", 0, NULL},
    /* $elemMatch */
    {DE, "{'a':{'$elemMatch':{'x':2}}}", "{'_id':1,'a':[{'x':2,'y':1}]}", 0, NULL},
    {DE, "{'a':{'$elemMatch':{'x':2}},'b':1}", "{'_id':1,'a':[{'x':2,'y':1}],'b':1}", 0, NULL},
    {DE, "{'a':{'$elemMatch':{'x':9}}}", "{'_id':1}", 0, NULL},
    {"{'_id':1,'a':[1,3,5]}", "{'a':{'$elemMatch':{'$gt':2}}}", "{'_id':1,'a':[3]}", 0, NULL},
    {DE, "{'a.x':{'$elemMatch':{'x':2}}}", NULL, 2, "nested field"},
    {DE, "{'a':{'$elemMatch':1}}", NULL, 2, NULL},
    {DE, "{'b':0,'a':{'$elemMatch':{'x':2}}}", NULL, 31253, NULL},
    /* literals and expressions */
    {D1, "{'a':'x'}", "{'_id':1,'a':'x'}", 0, NULL},
    {D1, "{'c':'lit','b':1}", "{'_id':1,'b':2,'c':'lit'}", 0, NULL},
    {D1, "{'a':'$b'}", NULL, 2, "expression projections are not supported"},
    {D1, "{'a':{'$add':[1,2]}}", NULL, 2, "expression projections are not supported"},
    {D1, "{'a':[1,2]}", NULL, 2, NULL},
    {D1, "{'a':{'$meta':'textScore'}}", NULL, 238, NULL},
    {D1, "{'a.$':1}", NULL, 238, NULL},
};

START_TEST(test_projection_table)
{
    const struct pcase *c = &pcases[_i];
    bson_t *doc = J(c->doc), *spec = J(c->spec), out;
    struct qry_projection *p = NULL;
    struct cairn_error err = {0};
    int rv;

    ck_assert_msg(doc != NULL && spec != NULL, "%d: bad JSON", _i);
    rv = qry_projection_compile(spec, &p, &err);
    if (c->want == NULL) {
        ck_assert_msg(rv != 0, "%s: expected error", c->spec);
        ck_assert_msg(err.mongo_code == c->code, "%s: code %d want %d (%s)", c->spec,
                      err.mongo_code, c->code, err.msg);
        if (c->msg != NULL) {
            ck_assert_msg(strstr(err.msg, c->msg) != NULL, "%s: '%s' lacks '%s'", c->spec, err.msg,
                          c->msg);
        }
    } else {
        bson_t *want = J(c->want);
        char *got;
        ck_assert_msg(rv == 0, "%s: error %s", c->spec, err.msg);
        ck_assert_int_eq(qry_projection_apply(p, doc, &out, &err), 0);
        got = bson_as_canonical_extended_json(&out, NULL);
        ck_assert_msg(bson_equal(&out, want), "%s on %s: got %s want %s", c->spec, c->doc, got,
                      c->want);
        bson_free(got);
        bson_destroy(&out);
        bson_destroy(want);
    }
    qry_projection_free(p);
    bson_destroy(doc);
    bson_destroy(spec);
}
END_TEST

struct sccase
{
    const char *spec;
    int code; /* 0: compiles */
    const char *msg;
};

static const struct sccase sort_compile_cases[] = {
    {"{'a':1}", 0, NULL},
    {"{'a':-1,'b.c':1}", 0, NULL},
    {"{'a':1.0}", 0, NULL},
    {"{'a':{'$numberLong':'-1'}}", 0, NULL},
    {"{}", 0, NULL},
    {"{'a':2}", 2, "$sort key ordering must be 1 (for ascending) or -1 (for descending)"},
    {"{'a':0}", 2, "$sort key ordering must be 1"},
    {"{'a':'x'}", 2, "$sort key ordering must be 1"},
    {"{'a':true}", 2, NULL},
    {"{'a':1.5}", 2, NULL},
    {"{'a':{'$meta':'textScore'}}", 238, "$meta"},
    {"{'':1}", 40352, NULL},
    {"{'$a':1}", 16410, NULL},
    {"{'a..b':1}", 15998, NULL},
};

START_TEST(test_sort_compile)
{
    const struct sccase *c = &sort_compile_cases[_i];
    bson_t *spec = J(c->spec);
    struct qry_sort *s = NULL;
    struct cairn_error err = {0};
    int rv = qry_sort_compile(spec, &s, &err);

    if (c->code == 0) {
        ck_assert_msg(rv == 0, "%s: %s", c->spec, err.msg);
        ck_assert_ptr_nonnull(s);
    } else {
        ck_assert_msg(rv != 0 && err.mongo_code == c->code, "%s: rv %d code %d (%s)", c->spec, rv,
                      err.mongo_code, err.msg);
        if (c->msg != NULL) {
            ck_assert_msg(strstr(err.msg, c->msg) != NULL, "%s: '%s'", c->spec, err.msg);
        }
    }
    qry_sort_free(s);
    bson_destroy(spec);
}
END_TEST

struct scmp
{
    const char *spec;
    const char *a;
    const char *b;
    int sign;
};

static const struct scmp sort_cmp_cases[] = {
    {"{'a':1}", "{'a':1}", "{'a':2}", -1},
    {"{'a':-1}", "{'a':1}", "{'a':2}", 1},
    {"{'a':1}", "{'a':2}", "{'a':2}", 0},
    {"{'a':1}", "{}", "{'a':null}", 0},
    {"{'a':1}", "{}", "{'a':1}", -1},
    {"{'a':-1}", "{}", "{'a':1}", 1},
    {"{'a':1}", "{'a':[1,5]}", "{'a':3}", -1},
    {"{'a':-1}", "{'a':[1,5]}", "{'a':3}", -1},
    {"{'a':1}", "{'a':[4,5]}", "{'a':3}", 1},
    {"{'a':-1}", "{'a':[1,2]}", "{'a':3}", 1},
    {"{'a':1}", "{'a':[]}", "{'a':null}", -1},
    {"{'a.b':1}", "{'a':[{'b':3},{'b':1}]}", "{'a':{'b':2}}", -1},
    {"{'a.b':-1}", "{'a':[{'b':3},{'b':1}]}", "{'a':{'b':2}}", -1},
    {"{'a.b':1}", "{'a':{'c':1}}", "{'a':{'b':null}}", 0},
    {"{'a':1}", "{'a':'x'}", "{'a':5}", 1},
    {"{'a':1}", "{'a':{'x':1}}", "{'a':'x'}", 1},
    {"{'a':1,'b':-1}", "{'a':1,'b':1}", "{'a':1,'b':2}", 1},
    {"{'a':1,'b':-1}", "{'a':0,'b':1}", "{'a':1,'b':2}", -1},
    {"{'a':1}", "{'a':1}", "{'a':1.0}", 0},
    {"{'a':1}", "{'a':{'$numberLong':'2'}}", "{'a':1.5}", 1},
    {"{}", "{'a':1}", "{'a':2}", 0},
    {"{'a.1':1}", "{'a':[9,1]}", "{'a':[0,5]}", -1},
};

static int sign(int v)
{
    return (v > 0) - (v < 0);
}

START_TEST(test_sort_cmp)
{
    const struct scmp *c = &sort_cmp_cases[_i];
    bson_t *spec = J(c->spec), *a = J(c->a), *b = J(c->b);
    struct qry_sort *s = NULL;
    struct cairn_error err = {0};

    ck_assert_int_eq(qry_sort_compile(spec, &s, &err), 0);
    ck_assert_msg(sign(qry_sort_cmp(s, a, b)) == c->sign, "%s: %s vs %s: got %d want %d", c->spec,
                  c->a, c->b, qry_sort_cmp(s, a, b), c->sign);
    ck_assert_msg(sign(qry_sort_cmp(s, b, a)) == -c->sign, "%s: reversed", c->spec);
    qry_sort_free(s);
    bson_destroy(spec);
    bson_destroy(a);
    bson_destroy(b);
}
END_TEST

static int doc_cmp(const void *x, const void *y, void *ctx)
{
    return qry_sort_cmp(ctx, *(bson_t *const *)x, *(bson_t *const *)y);
}

/* Sorting a batch with the stable sort keeps ties in input order. */
START_TEST(test_sort_stable_batch)
{
    const char *in[] = {"{'k':2,'i':0}", "{'k':1,'i':1}",    "{'i':2}",          "{'k':2,'i':3}",
                        "{'k':1,'i':4}", "{'k':null,'i':5}", "{'k':[0,9],'i':6}"};
    const int want[] = {2, 5, 6, 1, 4, 0, 3};
    bson_t *docs[7];
    bson_t *spec = J("{'k':1}");
    struct qry_sort *s;
    struct cairn_error err = {0};

    for (int i = 0; i < 7; i++) {
        docs[i] = J(in[i]);
    }
    ck_assert_int_eq(qry_sort_compile(spec, &s, &err), 0);
    ck_assert_int_eq(qry_stable_sort(docs, 7, sizeof docs[0], doc_cmp, s), 0);
    for (int i = 0; i < 7; i++) {
        bson_iter_t it;
        ck_assert(bson_iter_init_find(&it, docs[i], "i"));
        ck_assert_int_eq(bson_iter_int32(&it), want[i]);
        bson_destroy(docs[i]);
    }
    qry_sort_free(s);
    bson_destroy(spec);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("projection_sort");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, test_projection_table, 0, (int)(sizeof pcases / sizeof pcases[0]));
    tcase_add_loop_test(tc, test_sort_compile, 0,
                        (int)(sizeof sort_compile_cases / sizeof sort_compile_cases[0]));
    tcase_add_loop_test(tc, test_sort_cmp, 0,
                        (int)(sizeof sort_cmp_cases / sizeof sort_cmp_cases[0]));
    tcase_add_test(tc, test_sort_stable_batch);
    suite_add_tcase(su, tc);
    sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
