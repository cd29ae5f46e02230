/*
 * test_positional.c: table-driven tests of the positional update operators
 * (src/query/update.c, qry_update_compile_af / qry_update_apply_pos) and of
 * the matched array position the matcher reports for `$`
 * (src/query/matcher_eval.c, qry_matcher_match_pos), against mongod 7.0's
 * results, error codes and messages.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "test_json.h"

/* ---- the matched position ------------------------------------------------ */

struct pcase
{
    const char *doc;
    const char *filter;
    bool match;
    long pos;
};

static const struct pcase pcases[] = {
    {"{'a':[1,2,3]}", "{'a':2}", true, 1},
    {"{'a':[1,2,3]}", "{'a':{'$gt':1}}", true, 1},
    {"{'a':[1,2,3]}", "{'a':{'$in':[3,9]}}", true, 2},
    {"{'a':[1,2,3]}", "{'a':[1,2,3]}", true, -1},
    {"{'a':[1,2,3]}", "{'a':{'$size':3}}", true, -1},
    {"{'a':[1,2,3]}", "{'a':9}", false, -1},
    {"{'a':5}", "{'a':5}", true, -1},
    {"{'a':[{'b':1},{'b':2}]}", "{'a.b':2}", true, 1},
    {"{'a':[{'b':[1,2]},{'b':[3,4]}]}", "{'a.b':4}", true, 1},
    {"{'a':{'b':[7,8]}}", "{'a.b':8}", true, 1},
    {"{'a':[{'b':1,'c':1},{'b':2,'c':2}]}", "{'a':{'$elemMatch':{'b':2,'c':2}}}", true, 1},
    {"{'a':[1,5,9]}", "{'a':{'$elemMatch':{'$gt':4,'$lt':8}}}", true, 1},
    {"{'a':[{'b':[1]},{'b':[5]}]}", "{'a.b':{'$elemMatch':{'$gt':4}}}", true, 1},
    /* the last predicate of an $and that gives a position wins */
    {"{'a':[1,2],'b':[3,4]}", "{'a':1,'b':4}", true, 1},
    {"{'a':[1,2],'b':[3,4]}", "{'b':4,'a':1}", true, 0},
    {"{'a':[1,2],'b':5}", "{'a':2,'b':5}", true, 1},
    {"{'a':[1,2]}", "{'$and':[{'a':2}]}", true, 1},
    {"{'a':[1,2]}", "{'$or':[{'a':2}]}", true, 1},
    {"{'a':[1,2]}", "{'$or':[{'a':2},{'a':7}]}", true, -1},
    {"{'a':[1,2]}", "{'a':{'$ne':1}}", false, -1},
    {"{'a':[1,2]}", "{'a':{'$nin':[5]}}", true, -1},
    {"{'a':[1,2]}", "{'a':{'$not':{'$gt':5}}}", true, -1},
    {"{'a':[{'c':1},{'b':2}]}", "{'a.b':null}", true, 0},
    {"{'a':[5,6]}", "{'a.1':6}", true, 1},
    {"{'a':[[1,2],[3,4]]}", "{'a':[3,4]}", true, 1},
    {"{'a':['x','yz']}", "{'a':{'$regex':'^y'}}", true, 1},
    {"{'a':[1,'s']}", "{'a':{'$type':'string'}}", true, 1},
    {"{'a':[],'b':1}", "{'b':1}", true, -1},
};

START_TEST(test_match_pos)
{
    const struct pcase *t = &pcases[_i];
    bson_t *doc = J(t->doc), *f = J(t->filter);
    struct qry_matcher *m = NULL;
    struct cairn_error err = {0};
    long pos = 99;

    ck_assert_ptr_nonnull(doc);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(qry_matcher_compile(f, &m, &err), 0);
    ck_assert_msg(qry_matcher_match_pos(m, doc, &pos) == t->match, "%s on %s", t->filter, t->doc);
    ck_assert_int_eq(qry_matcher_match(m, doc), t->match);
    if (t->match) {
        ck_assert_msg(pos == t->pos, "%s on %s: pos %ld, want %ld", t->filter, t->doc, pos, t->pos);
    }
    qry_matcher_free(m);
    bson_destroy(doc);
    bson_destroy(f);
}
END_TEST

/* ---- updates ---------------------------------------------------------------- */

struct ucase
{
    const char *name;
    const char *doc;
    const char *query; /* gives the position for "$"; NULL: none */
    const char *upd;
    const char *af; /* "{'af':[...]}" or NULL for no arrayFilters option */
    bool ins;
    const char *want; /* NULL when an error is expected */
    int code;         /* expected mongo code when want is NULL */
    const char *msg;  /* expected message substring, or NULL */
};

static const struct ucase cases[] = {
    /* $ */
    {"$ set", "{'a':[1,2,3]}", "{'a':2}", "{'$set':{'a.$':9}}", NULL, false, "{'a':[1,9,3]}", 0,
     NULL},
    {"$ inc subfield", "{'a':[{'n':'x','q':1},{'n':'y','q':2}]}", "{'a.n':'y'}",
     "{'$inc':{'a.$.q':5}}", NULL, false, "{'a':[{'n':'x','q':1},{'n':'y','q':7}]}", 0, NULL},
    {"$ creates field in element", "{'a':[{'b':1},{'b':2}]}", "{'a.b':1}", "{'$set':{'a.$.c':1}}",
     NULL, false, "{'a':[{'b':1,'c':1},{'b':2}]}", 0, NULL},
    {"$ in another array", "{'x':[1,2],'y':['a','b']}", "{'x':2}", "{'$set':{'y.$':'z'}}", NULL,
     false, "{'x':[1,2],'y':['a','z']}", 0, NULL},
    {"$ on a missing field creates an object", "{'x':[1,2]}", "{'x':2}", "{'$set':{'y.$':1}}", NULL,
     false, "{'x':[1,2],'y':{'1':1}}", 0, NULL},
    {"$ push", "{'a':[{'t':[]},{'t':[1]}]}", "{'a.t':1}", "{'$push':{'a.$.t':2}}", NULL, false,
     "{'a':[{'t':[]},{'t':[1,2]}]}", 0, NULL},
    {"$ unset element nulls", "{'a':[1,2]}", "{'a':1}", "{'$unset':{'a.$':1}}", NULL, false,
     "{'a':[null,2]}", 0, NULL},
    {"$ with a sibling path", "{'a':[{'b':1},{'b':2}]}", "{'a.b':2}",
     "{'$set':{'a.$.c':1,'a.1.d':2}}", NULL, false, "{'a':[{'b':1},{'b':2,'c':1,'d':2}]}", 0, NULL},
    {"$ with other fields", "{'a':[1,2],'z':0}", "{'a':2}", "{'$set':{'a.$':5,'z':1}}", NULL, false,
     "{'a':[1,5],'z':1}", 0, NULL},
    {"$ no position", "{'a':[1,2]}", NULL, "{'$set':{'a.$':5}}", NULL, false, NULL, 2,
     "The positional operator did not find the match needed from the query."},
    {"$ on insert", "{}", NULL, "{'$set':{'a.$':5}}", NULL, true, NULL, 2,
     "did not find the match"},
    {"$ twice", "{}", NULL, "{'$set':{'a.$.b.$':5}}", NULL, false, NULL, 2,
     "Too many positional (i.e. '$') elements found in path 'a.$.b.$'"},
    {"$ first", "{}", NULL, "{'$set':{'$.b':5}}", NULL, false, NULL, 2,
     "Cannot have positional (i.e. '$') element in the first position in path '$.b'"},
    {"$ and index conflict", "{'a':[1,2]}", "{'a':1}", "{'$set':{'a.$':0,'a.0':1}}", NULL, false,
     NULL, 40, "Update created a conflict at 'a.0'"},
    {"$ and index elsewhere", "{'a':[1,2]}", "{'a':1}", "{'$set':{'a.$':0,'a.1':1}}", NULL, false,
     "{'a':[0,1]}", 0, NULL},
    {"$ conflicts with its prefix", "{}", NULL, "{'$set':{'a.$':0,'a':1}}", NULL, false, NULL, 40,
     "would create a conflict at 'a'"},

    /* $[] */
    {"$[] inc", "{'a':[1,2,3]}", NULL, "{'$inc':{'a.$[]':10}}", NULL, false, "{'a':[11,12,13]}", 0,
     NULL},
    {"$[] set subfield", "{'a':[{'b':1},{}]}", NULL, "{'$set':{'a.$[].b':0}}", NULL, false,
     "{'a':[{'b':0},{'b':0}]}", 0, NULL},
    {"$[] nested", "{'a':[[1,2],[3]]}", NULL, "{'$inc':{'a.$[].$[]':1}}", NULL, false,
     "{'a':[[2,3],[4]]}", 0, NULL},
    {"$[] empty array", "{'a':[]}", NULL, "{'$set':{'a.$[]':1}}", NULL, false, "{'a':[]}", 0, NULL},
    {"$[] deep", "{'x':{'a':[{'b':[1]},{'b':[2]}]}}", NULL, "{'$push':{'x.a.$[].b':0}}", NULL,
     false, "{'x':{'a':[{'b':[1,0]},{'b':[2,0]}]}}", 0, NULL},
    {"$[] unset subfield", "{'a':[{'b':1,'c':1},5]}", NULL, "{'$unset':{'a.$[].b':1}}", NULL, false,
     "{'a':[{'c':1},5]}", 0, NULL},
    {"$[] missing", "{}", NULL, "{'$set':{'a.$[]':1}}", NULL, false, NULL, 2,
     "The path 'a' must exist in the document in order to apply array updates."},
    {"$[] missing deep", "{'a':{}}", NULL, "{'$set':{'a.b.$[]':1}}", NULL, false, NULL, 2,
     "The path 'a.b' must exist in the document in order to apply array updates."},
    {"$[] through scalar", "{'a':5}", NULL, "{'$set':{'a.b.$[]':1}}", NULL, false, NULL, 2,
     "The path 'a.b' must exist"},
    {"$[] non-array", "{'a':1}", NULL, "{'$set':{'a.$[]':1}}", NULL, false, NULL, 2,
     "Cannot apply array updates to non-array element a: 1"},
    {"$[] nested non-array", "{'a':[[1],'s']}", NULL, "{'$set':{'a.$[].$[]':1}}", NULL, false, NULL,
     2, "Cannot apply array updates to non-array element 1: \"s\""},
    {"$[] field of scalar element", "{'a':[1]}", NULL, "{'$set':{'a.$[].b':1}}", NULL, false, NULL,
     28, "Cannot create field 'b' in element {0: 1}"},
    {"$[] on insert from query array", "{'a':[1,2]}", NULL, "{'$inc':{'a.$[]':1}}", NULL, true,
     "{'a':[2,3]}", 0, NULL},
    {"$[] first", "{}", NULL, "{'$set':{'$[]':1}}", NULL, false, NULL, 2,
     "Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in "
     "path '$[]'"},
    {"$[] twice conflicts", "{}", NULL, "{'$set':{'a.$[]':1},'$inc':{'a.$[]':1}}", NULL, false,
     NULL, 40, "Updating the path 'a.$[]' would create a conflict at 'a.$[]'"},
    {"$[] and field conflict", "{}", NULL, "{'$set':{'a.$[].b':1,'a.c':1}}", NULL, false, NULL, 40,
     "Updating the path 'a.c' would create a conflict at 'a'"},
    {"$[] and subfields", "{'a':[{},{}]}", NULL, "{'$set':{'a.$[].b':1,'a.$[].c':2}}", NULL, false,
     "{'a':[{'b':1,'c':2},{'b':1,'c':2}]}", 0, NULL},
    {"$[] modified flag unchanged", "{'a':[1,1]}", NULL, "{'$set':{'a.$[]':1}}", NULL, false,
     "{'a':[1,1]}", 0, NULL},

    /* $[<id>] */
    {"af scalar", "{'g':[95,92,90]}", NULL, "{'$set':{'g.$[e]':100}}", "{'af':[{'e':{'$gte':92}}]}",
     false, "{'g':[100,100,90]}", 0, NULL},
    {"af document", "{'g':[{'x':80,'m':1},{'x':85,'m':2}]}", NULL, "{'$set':{'g.$[e].m':0}}",
     "{'af':[{'e.x':{'$gte':85}}]}", false, "{'g':[{'x':80,'m':1},{'x':85,'m':0}]}", 0, NULL},
    {"af $or", "{'a':[0,1,3]}", NULL, "{'$set':{'a.$[i]':2}}", "{'af':[{'$or':[{'i':0},{'i':3}]}]}",
     false, "{'a':[2,1,2]}", 0, NULL},
    {"af $and", "{'a':[1,5,9]}", NULL, "{'$set':{'a.$[i]':0}}",
     "{'af':[{'$and':[{'i':{'$gt':2}},{'i':{'$lt':8}}]}]}", false, "{'a':[1,0,9]}", 0, NULL},
    {"af $nor", "{'a':[1,5,9]}", NULL, "{'$set':{'a.$[i]':0}}", "{'af':[{'$nor':[{'i':5}]}]}",
     false, "{'a':[0,5,0]}", 0, NULL},
    {"af two conditions", "{'a':[{'x':1,'y':1},{'x':1,'y':2}]}", NULL, "{'$inc':{'a.$[i].y':1}}",
     "{'af':[{'i.x':1,'i.y':2}]}", false, "{'a':[{'x':1,'y':1},{'x':1,'y':3}]}", 0, NULL},
    {"af nested", "{'a':[{'b':0,'c':[{'d':0},{'d':1}]},{'b':1,'c':[{'d':0}]}]}", NULL,
     "{'$set':{'a.$[i].c.$[j].d':2}}", "{'af':[{'i.b':0},{'j.d':0}]}", false,
     "{'a':[{'b':0,'c':[{'d':2},{'d':1}]},{'b':1,'c':[{'d':0}]}]}", 0, NULL},
    {"af with $[]", "{'a':[[0,1],[0,1]]}", NULL, "{'$set':{'a.$[].$[j]':2}}", "{'af':[{'j':0}]}",
     false, "{'a':[[2,1],[2,1]]}", 0, NULL},
    {"af array element", "{'a':[[1,2],[3]]}", NULL, "{'$set':{'a.$[i]':0}}", "{'af':[{'i':3}]}",
     false, "{'a':[[1,2],0]}", 0, NULL},
    {"af no match is a no-op", "{'a':[1,2]}", NULL, "{'$set':{'a.$[i]':0}}", "{'af':[{'i':7}]}",
     false, "{'a':[1,2]}", 0, NULL},
    {"af disjoint filters", "{'a':[0,1,0,1]}", NULL, "{'$set':{'a.$[i]':5,'a.$[j]':6}}",
     "{'af':[{'i':0},{'j':1}]}", false, "{'a':[5,6,5,6]}", 0, NULL},
    {"af on insert", "{'a':[1,5]}", NULL, "{'$set':{'a.$[i]':0}}", "{'af':[{'i':{'$gt':2}}]}", true,
     "{'a':[1,0]}", 0, NULL},
    {"af no filter", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':0}}", NULL, false, NULL, 2,
     "No array filter found for identifier 'i' in path 'a.$[i]'"},
    {"af empty list", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':0}}", "{'af':[]}", false, NULL, 2,
     "No array filter found for identifier 'i' in path 'a.$[i]'"},
    {"af unused", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':5}}", "{'af':[{'i':0},{'j':0}]}", false,
     NULL, 9,
     "The array filter for identifier 'j' was not used in the update { $set: { a.$[i]: 5 } }"},
    {"af duplicate", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':5}}", "{'af':[{'i':0},{'i':1}]}", false,
     NULL, 9, "Found multiple array filters with the same top-level field name i"},
    {"af two names", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':5}}", "{'af':[{'i':0,'j':0}]}", false,
     NULL, 9,
     "Error parsing array filter :: caused by :: Expected a single top-level field name, found "
     "'i' and 'j'"},
    {"af empty filter", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':5}}", "{'af':[{}]}", false, NULL, 9,
     "Cannot use an expression without a top-level field name in arrayFilters"},
    {"af uppercase", "{'a':[1]}", NULL, "{'$set':{'a.$[I]':5}}", "{'af':[{'I':0}]}", false, NULL, 2,
     "Error parsing array filter :: caused by :: The top-level field name must be an "
     "alphanumeric string beginning with a lowercase letter, found 'I'"},
    {"af underscore", "{'a':[1]}", NULL, "{'$set':{'a.$[a_b]':5}}", "{'af':[{'a_b':0}]}", false,
     NULL, 2, "found 'a_b'"},
    {"af bad operator", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':5}}", "{'af':[{'i':{'$nope':1}}]}",
     false, NULL, 2, "Error parsing array filter :: caused by :: unknown operator: $nope"},
    {"af not a document", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':5}}", "{'af':[1]}", false, NULL, 14,
     "expected type 'object'"},
    {"af parse before update", "{'a':[1]}", NULL, "{'$bad':{'a':1}}", "{'af':[{}]}", false, NULL, 9,
     "Cannot use an expression without a top-level field name"},
    {"af vs $ conflict", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':0,'a.$':0}}", "{'af':[{'i':0}]}",
     false, NULL, 40, "Updating the path 'a.$' would create a conflict at 'a'"},
    {"af vs index conflict", "{'a':[1]}", NULL, "{'$set':{'a.$[i]':0,'a.0':0}}", "{'af':[{'i':0}]}",
     false, NULL, 40, "Updating the path 'a.0' would create a conflict at 'a'"},
    {"af overlap conflict", "{'a':[0,1]}", NULL, "{'$set':{'a.$[i]':5,'a.$[j]':6}}",
     "{'af':[{'i':0},{'j':{'$lt':1}}]}", false, NULL, 40, "Update created a conflict at 'a.0'"},
    {"af leaf vs subfield conflict", "{'a':[{'b':1}]}", NULL, "{'$set':{'a.$[i]':5,'a.$[].b':6}}",
     "{'af':[{'i.b':1}]}", false, NULL, 40, "Update created a conflict at 'a.0'"},
    {"af merged conflict", "{'a':[{'x':0,'b':[{'y':0,'c':0}]}]}", NULL,
     "{'$set':{'a.$[i].b.$[k].c':1,'a.$[j].b.$[k].c':2}}", "{'af':[{'i.x':0},{'j.x':0},{'k.y':0}]}",
     false, NULL, 40, "Update created a conflict at 'a.0.b.$[k].c'"},
    {"af merged subfields", "{'a':[{'x':0,'b':[{'y':0}]}]}", NULL,
     "{'$set':{'a.$[i].b.$[k].c':1,'a.$[j].b.$[k].d':2}}", "{'af':[{'i.x':0},{'j.x':0},{'k.y':0}]}",
     false, "{'a':[{'x':0,'b':[{'y':0,'c':1,'d':2}]}]}", 0, NULL},
    {"af rename source", "{'a':[1]}", NULL, "{'$rename':{'a.$[i]':'b'}}", "{'af':[{'i':0}]}", false,
     NULL, 2, "The source field for $rename may not be dynamic: a.$[i]"},
    {"af rename target", "{'a':[1]}", NULL, "{'$rename':{'a':'b.$[]'}}", NULL, false, NULL, 2,
     "The destination field for $rename may not be dynamic: b.$[]"},
    {"af rename $", "{'a':[1]}", NULL, "{'$rename':{'a':'b.$'}}", NULL, false, NULL, 2,
     "The destination field for $rename may not be dynamic: b.$"},
    {"replacement ignores af", "{'a':[1]}", NULL, "{'b':1}", "{'af':[{'i':0}]}", false, "{'b':1}",
     0, NULL},
    {"not an identifier", "{'a':[1]}", NULL, "{'$set':{'a.$[i':1}}", NULL, false, NULL, 52,
     "not valid for storage"},
};

START_TEST(test_positional_table)
{
    const struct ucase *t = &cases[_i];
    bson_t *doc = J(t->doc), *upd = J(t->upd), *afw = NULL, af;
    struct qry_update *u = NULL;
    struct cairn_error err = {0};
    long pos = -1;
    bson_t out;
    bool mod = false;
    int rv;

    ck_assert_ptr_nonnull(doc);
    ck_assert_ptr_nonnull(upd);
    if (t->query != NULL) {
        bson_t *q = J(t->query);
        struct qry_matcher *m = NULL;
        ck_assert_int_eq(qry_matcher_compile(q, &m, &err), 0);
        ck_assert(qry_matcher_match_pos(m, doc, &pos));
        qry_matcher_free(m);
        bson_destroy(q);
    }
    if (t->af != NULL) {
        bson_iter_t it;
        const uint8_t *data;
        uint32_t len;
        afw = J(t->af);
        ck_assert(bson_iter_init_find(&it, afw, "af"));
        bson_iter_array(&it, &len, &data);
        ck_assert(bson_init_static(&af, data, len));
    }
    rv = qry_update_compile_af(upd, afw ? &af : NULL, &u, &err);
    if (rv == 0) {
        rv = qry_update_apply_pos(u, doc, t->ins, 0, pos, &out, &mod, &err);
        if (rv == 0 && t->want == NULL) {
            bson_destroy(&out);
        }
    }
    if (t->want == NULL) {
        ck_assert_msg(rv != 0, "%s: expected an error", t->name);
        ck_assert_msg(err.mongo_code == t->code, "%s: code %d (%s), want %d", t->name,
                      err.mongo_code, err.msg, t->code);
        if (t->msg != NULL) {
            ck_assert_msg(strstr(err.msg, t->msg) != NULL, "%s: message '%s' lacks '%s'", t->name,
                          err.msg, t->msg);
        }
    } else {
        bson_t *want = J(t->want);
        char *got_s, *want_s;
        ck_assert_msg(rv == 0, "%s: error %d %s", t->name, err.mongo_code, err.msg);
        got_s = bson_as_canonical_extended_json(&out, NULL);
        want_s = bson_as_canonical_extended_json(want, NULL);
        ck_assert_msg(strcmp(got_s, want_s) == 0, "%s: got %s want %s", t->name, got_s, want_s);
        ck_assert_msg(mod == (strcmp(t->doc, t->want) != 0), "%s: modified flag", t->name);
        bson_free(got_s);
        bson_free(want_s);
        bson_destroy(want);
        bson_destroy(&out);
    }
    if (u != NULL) {
        qry_update_free(u);
    }
    if (afw != NULL) {
        bson_destroy(afw);
    }
    bson_destroy(doc);
    bson_destroy(upd);
}
END_TEST

/* A compiled positional update is reusable across documents and positions. */
START_TEST(test_reuse)
{
    bson_t *upd = J("{'$inc':{'a.$':1,'b.$[]':1}}");
    bson_t *d1 = J("{'a':[1,2],'b':[0]}"), *d2 = J("{'a':[5],'b':[]}");
    struct qry_update *u = NULL;
    struct cairn_error err = {0};
    bson_t out;
    bool mod;
    bson_iter_t it;

    ck_assert_int_eq(qry_update_compile(upd, &u, &err), 0);
    ck_assert(qry_update_needs_match_pos(u));
    ck_assert_int_eq(qry_update_apply_pos(u, d1, false, 0, 1, &out, &mod, &err), 0);
    ck_assert(qry_path_find(&out, "a.1", &it) && bson_iter_int32(&it) == 3);
    ck_assert(qry_path_find(&out, "b.0", &it) && bson_iter_int32(&it) == 1);
    bson_destroy(&out);
    ck_assert_int_eq(qry_update_apply_pos(u, d2, false, 0, 0, &out, &mod, &err), 0);
    ck_assert(qry_path_find(&out, "a.0", &it) && bson_iter_int32(&it) == 6);
    bson_destroy(&out);
    /* without a position the old entry point fails like mongod */
    ck_assert_int_ne(qry_update_apply(u, d2, false, 0, &out, &mod, &err), 0);
    ck_assert_int_eq(err.mongo_code, 2);
    bson_destroy(&out);
    qry_update_free(u);
    bson_destroy(upd);
    ck_assert_int_eq(qry_update_compile(d1, &u, &err), 0);
    ck_assert(!qry_update_needs_match_pos(u));
    qry_update_free(u);
    bson_destroy(d1);
    bson_destroy(d2);
}
END_TEST

/* Nested $[] over a large array expands every element once. */
START_TEST(test_large_expansion)
{
    bson_t doc = BSON_INITIALIZER, arr, *upd = J("{'$inc':{'a.$[].$[]':1}}");
    struct qry_update *u = NULL;
    struct cairn_error err = {0};
    bson_t out;
    bool mod;
    bson_iter_t it;
    char k[16];

    bson_append_array_begin(&doc, "a", -1, &arr);
    for (int i = 0; i < 200; i++) {
        bson_t in;
        snprintf(k, sizeof k, "%d", i);
        bson_append_array_begin(&arr, k, -1, &in);
        for (int j = 0; j < 50; j++) {
            char kk[16];
            snprintf(kk, sizeof kk, "%d", j);
            bson_append_int32(&in, kk, -1, j);
        }
        bson_append_array_end(&arr, &in);
    }
    bson_append_array_end(&doc, &arr);
    ck_assert_int_eq(qry_update_compile(upd, &u, &err), 0);
    ck_assert_int_eq(qry_update_apply(u, &doc, false, 0, &out, &mod, &err), 0);
    ck_assert(mod);
    ck_assert(qry_path_find(&out, "a.199.49", &it) && bson_iter_int32(&it) == 50);
    bson_destroy(&out);
    qry_update_free(u);
    bson_destroy(upd);
    bson_destroy(&doc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("positional");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_loop_test(tc, test_match_pos, 0, (int)(sizeof pcases / sizeof pcases[0]));
    tcase_add_loop_test(tc, test_positional_table, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, test_reuse);
    tcase_add_test(tc, test_large_expansion);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
