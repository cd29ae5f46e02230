/*
 * projection.c: find() projections. The spec compiles into a tree of path
 * components (struct pnode) whose leaves include, exclude, slice, pick an
 * element ($elemMatch) or set a literal. An inclusion projection rebuilds
 * the document from the included paths (through arrays of documents, in
 * document order, _id first unless excluded, literals appended); an
 * exclusion projection copies everything except the excluded paths. $slice
 * does not decide the mode; $elemMatch and literals count as inclusions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/nameidx.h"
#include "query/query.h"
#include "query/query_int.h"
#include "query/update_int.h"

/* Bounds path length and the recursion into nested arrays and documents. */
#define MAX_DEPTH 200

enum pkind { P_INTERNAL, P_INCLUDE, P_EXCLUDE, P_SLICE, P_ELEMMATCH, P_LITERAL };
enum pmode { M_NONE, M_INCLUDE, M_EXCLUDE };
enum idmode { ID_DEFAULT, ID_INCLUDE, ID_EXCLUDE };

struct pnode
{
    char *name;
    enum pkind kind;
    struct pnode **kids;
    size_t n;
    size_t cap;
    struct qry_nameidx idx; /* kids by name */
    /* P_SLICE: with has_skip, [skip, limit]; else limit alone (may be < 0) */
    bool has_skip;
    int64_t skip;
    int64_t limit;
    /* P_ELEMMATCH */
    struct qry_matcher *m;
    /* P_LITERAL: owned copy */
    bson_value_t lit;
};

struct qry_projection
{
    struct pnode *root;
    enum pmode mode;
    enum idmode id;
    bool all; /* empty spec: the document unchanged */
};

static void pnode_free(struct pnode *p)
{
    if (p == NULL) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        pnode_free(p->kids[i]);
    }
    free(p->kids);
    qry_nameidx_fini(&p->idx);
    free(p->name);
    if (p->m != NULL) {
        qry_matcher_free(p->m);
    }
    if (p->kind == P_LITERAL) {
        bson_value_destroy(&p->lit);
    }
    free(p);
}

void qry_projection_free(struct qry_projection *p)
{
    if (p == NULL) {
        return;
    }
    pnode_free(p->root);
    free(p);
}

static struct pnode *pnode_child(const struct pnode *p, const char *name, size_t len)
{
    long i = qry_nameidx_find(&p->idx, name, len);
    return i < 0 ? NULL : p->kids[i];
}

static struct pnode *pnode_add(struct pnode *p, const char *name, size_t len)
{
    struct pnode *k = calloc(1, sizeof *k);

    if (k == NULL || (k->name = strndup(name, len)) == NULL) {
        free(k);
        return NULL;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        struct pnode **nk = realloc(p->kids, cap * sizeof *nk);
        if (nk == NULL) {
            pnode_free(k);
            return NULL;
        }
        p->kids = nk;
        p->cap = cap;
    }
    if (qry_nameidx_push(&p->idx, k->name) != 0) {
        pnode_free(k);
        return NULL;
    }
    p->kids[p->n++] = k;
    return k;
}

/* Validates `path` and inserts a leaf for it; *leaf gets the new node. */
static int insert_path(struct pnode *root,
                       const char *path,
                       struct pnode **leaf,
                       struct cairn_error *err)
{
    struct pnode *cur = root;
    const char *c = path;
    size_t comps = 1;

    for (const char *q = path; *q; q++) {
        comps += *q == '.';
    }
    if (comps > MAX_DEPTH) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "projection path '%.60s...' is too deep", path);
    }
    if (path[0] == '\0') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmpty,
                                 "FieldPath cannot be constructed with empty string");
    }
    for (;;) {
        const char *dot = strchr(c, '.');
        size_t len = dot ? (size_t)(dot - c) : strlen(c);
        struct pnode *k;

        if (len == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmptyComponent,
                                     "FieldPath field names may not be empty strings.");
        }
        if (c[0] == '$') {
            if (len == 1 && dot == NULL) {
                return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                         "the positional projection operator '%s' is not "
                                         "supported",
                                         path);
            }
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDollarPrefix,
                                     "FieldPath field names may not start with '$'. Consider "
                                     "using $getField or $setField.");
        }
        k = pnode_child(cur, c, len);
        if (dot == NULL) {
            if (k != NULL) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionPathCollision,
                                         "Path collision at %s", path);
            }
            k = pnode_add(cur, c, len);
            if (k == NULL) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            }
            *leaf = k;
            return 0;
        }
        if (k == NULL) {
            k = pnode_add(cur, c, len);
            if (k == NULL) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            }
            k->kind = P_INTERNAL;
        } else if (k->kind != P_INTERNAL) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionPathThroughLeaf,
                                     "Path collision at %s remaining portion %s", path, dot + 1);
        }
        cur = k;
        c = dot + 1;
    }
}

static int set_mode(struct qry_projection *p,
                    enum pmode m,
                    const char *path,
                    struct cairn_error *err)
{
    if (p->mode == M_NONE) {
        p->mode = m;
        return 0;
    }
    if (p->mode == m) {
        return 0;
    }
    if (m == M_EXCLUDE) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExclusionInInclusionProjection,
                                 "Cannot do exclusion on field %s in inclusion projection", path);
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_InclusionInExclusionProjection,
                             "Cannot do inclusion on field %s in exclusion projection", path);
}

static bool truthy_number(const bson_value_t *v, bool *truth)
{
    switch (v->value_type) {
        case BSON_TYPE_BOOL:
            *truth = v->value.v_bool;
            return true;
        case BSON_TYPE_INT32:
            *truth = v->value.v_int32 != 0;
            return true;
        case BSON_TYPE_INT64:
            *truth = v->value.v_int64 != 0;
            return true;
        case BSON_TYPE_DOUBLE:
            *truth = v->value.v_double != 0.0;
            return true;
        case BSON_TYPE_DECIMAL128:
            *truth = qry_number_as_double(v) != 0.0;
            return true;
        default:
            return false;
    }
}

static bool integral(const bson_value_t *v, int64_t *out)
{
    switch (v->value_type) {
        case BSON_TYPE_INT32:
            *out = v->value.v_int32;
            return true;
        case BSON_TYPE_INT64:
            /* clamped like doubles, so that -skip and -limit cannot overflow */
            *out = v->value.v_int64 > 9000000000000000000LL    ? 9000000000000000000LL
                   : v->value.v_int64 < -9000000000000000000LL ? -9000000000000000000LL
                                                               : v->value.v_int64;
            return true;
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128: {
            double d = qry_number_as_double(v);
            if (d != d) {
                return false;
            }
            if (d > 9e18) {
                d = 9e18;
            } else if (d < -9e18) {
                d = -9e18;
            }
            *out = (int64_t)d;
            return true;
        }
        default:
            return false;
    }
}

static int parse_slice(struct pnode *leaf, const bson_value_t *v, struct cairn_error *err)
{
    leaf->kind = P_SLICE;
    if (v->value_type == BSON_TYPE_ARRAY) {
        bson_t d;
        bson_iter_t it;
        bson_value_t vals[2];
        int n = 0;
        if (bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
            bson_iter_init(&it, &d)) {
            while (bson_iter_next(&it)) {
                if (n < 2) {
                    vals[n] = *bson_iter_value(&it);
                }
                n++;
            }
        }
        if (n != 2) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionSliceNotPair,
                                     "First argument to $slice must be an array, but is of type: "
                                     "array with %d elements; expected [skip, limit]",
                                     n);
        }
        if (!integral(&vals[0], &leaf->skip) || !integral(&vals[1], &leaf->limit)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "$slice only supports numbers and [skip, limit] arrays");
        }
        if (leaf->limit <= 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "$slice limit must be positive");
        }
        leaf->has_skip = true;
        return 0;
    }
    if (!integral(v, &leaf->limit)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "$slice only supports numbers and [skip, limit] arrays");
    }
    return 0;
}

static bool elem_is_value_condition(const bson_t *arg)
{
    bson_iter_t it;
    const char *k;

    if (!bson_iter_init(&it, arg) || !bson_iter_next(&it)) {
        return false;
    }
    k = bson_iter_key(&it);
    return k[0] == '$' && strcmp(k, "$and") != 0 && strcmp(k, "$or") != 0 &&
           strcmp(k, "$nor") != 0 && strcmp(k, "$expr") != 0 && strcmp(k, "$where") != 0 &&
           strcmp(k, "$comment") != 0;
}

static int compile_spec(struct qry_projection *p,
                        const bson_t *spec,
                        const char *prefix,
                        int depth,
                        struct cairn_error *err);

static int compile_field(struct qry_projection *p,
                         const char *path,
                         const bson_value_t *v,
                         bool top,
                         int depth,
                         struct cairn_error *err)
{
    struct pnode *leaf = NULL;
    bool truth;
    int rv;
    char f[200];

    if (truthy_number(v, &truth)) {
        if (top && strcmp(path, "_id") == 0) {
            p->id = truth ? ID_INCLUDE : ID_EXCLUDE;
            return 0;
        }
        rv = set_mode(p, truth ? M_INCLUDE : M_EXCLUDE, path, err);
        if (rv == 0) {
            rv = insert_path(p->root, path, &leaf, err);
        }
        if (rv == 0) {
            leaf->kind = truth ? P_INCLUDE : P_EXCLUDE;
        }
        return rv;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        bson_iter_t it;
        const char *k;
        if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
            !bson_iter_init(&it, &d)) {
            return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid projection");
        }
        if (!bson_iter_next(&it)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionEmptySubObject,
                                     "An empty sub-projection is not a valid value. Found empty "
                                     "object at path %s",
                                     path);
        }
        k = bson_iter_key(&it);
        if (k[0] != '$') {
            return compile_spec(p, &d, path, depth + 1, err);
        }
        if (strcmp(k, "$meta") == 0) {
            return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "$meta projections are not supported");
        }
        if (strcmp(k, "$slice") == 0 || strcmp(k, "$elemMatch") == 0) {
            const bson_value_t *arg = bson_iter_value(&it);
            bool slice = k[1] == 's';
            if (bson_iter_next(&it)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "expression projections are not supported: %s has more "
                                         "than one operator",
                                         path);
            }
            if (slice) {
                rv = insert_path(p->root, path, &leaf, err);
                return rv != 0 ? rv : parse_slice(leaf, arg, err);
            }
            if (strchr(path, '.') != NULL) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "Cannot use $elemMatch projection on a nested field.");
            }
            if (arg->value_type != BSON_TYPE_DOCUMENT) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "elemMatch: Invalid argument, object required.");
            }
            rv = set_mode(p, M_INCLUDE, path, err);
            if (rv == 0) {
                rv = insert_path(p->root, path, &leaf, err);
            }
            if (rv == 0) {
                bson_t q;
                leaf->kind = P_ELEMMATCH;
                if (!bson_init_static(&q, arg->value.v_doc.data, arg->value.v_doc.data_len)) {
                    return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                             "invalid $elemMatch");
                }
                if (elem_is_value_condition(&q)) {
                    rv = qry_matcher_compile_value(arg, &leaf->m, err);
                } else {
                    rv = qry_matcher_compile(&q, &leaf->m, err);
                }
            }
            return rv;
        }
        qry_fmt_value(v, f, sizeof f);
        return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_BadValue,
                                 "expression projections are not supported: %s: %s", path, f);
    }
    /* a literal value: MongoDB 4.4+ evaluates it as an expression */
    if (v->value_type == BSON_TYPE_ARRAY ||
        (v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.str[0] == '$') ||
        strchr(path, '.') != NULL) {
        qry_fmt_value(v, f, sizeof f);
        return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_BadValue,
                                 "expression projections are not supported: %s: %s", path, f);
    }
    if (p->mode == M_EXCLUDE) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExclusionProjectionLiteral,
                                 "Cannot use expression other than $meta in exclusion projection");
    }
    rv = set_mode(p, M_INCLUDE, path, err);
    if (rv == 0) {
        rv = insert_path(p->root, path, &leaf, err);
    }
    if (rv == 0) {
        leaf->kind = P_LITERAL;
        bson_value_copy(v, &leaf->lit);
    }
    return rv;
}

static int compile_spec(struct qry_projection *p,
                        const bson_t *spec,
                        const char *prefix,
                        int depth,
                        struct cairn_error *err)
{
    bson_iter_t it;

    if (depth > 100) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "projection nested too deeply");
    }
    if (!bson_iter_init(&it, spec)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid projection");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        char *path;
        int rv;
        if (prefix != NULL) {
            if (asprintf(&path, "%s.%s", prefix, k) < 0) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            }
        } else if ((path = strdup(k)) == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        rv = compile_field(p, path, bson_iter_value(&it), prefix == NULL, depth, err);
        free(path);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int qry_projection_compile(const bson_t *spec, struct qry_projection **out, struct cairn_error *err)
{
    struct qry_projection *p = calloc(1, sizeof *p);
    int rv;

    *out = NULL;
    if (p == NULL || (p->root = calloc(1, sizeof *p->root)) == NULL) {
        free(p);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    p->root->kind = P_INTERNAL;
    if (bson_empty(spec)) {
        p->all = true;
        *out = p;
        return 0;
    }
    rv = compile_spec(p, spec, NULL, 0, err);
    if (rv != 0) {
        qry_projection_free(p);
        return rv;
    }
    if (p->mode == M_NONE) {
        p->mode = p->id == ID_INCLUDE ? M_INCLUDE : M_EXCLUDE;
    }
    *out = p;
    return 0;
}

/* ---- applying ---------------------------------------------------------- */

static void append_slice(bson_t *out, const char *key, const struct pnode *s, bson_iter_t *it)
{
    bson_iter_t arr;
    bson_t dst;
    int64_t n = 0, from, count;
    uint32_t i = 0, j = 0;
    char ibuf[16];

    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
        bson_append_iter(out, key, -1, it);
        return;
    }
    while (bson_iter_next(&arr)) {
        n++;
    }
    if (s->has_skip) {
        from = s->skip >= 0 ? (s->skip < n ? s->skip : n) : (-s->skip >= n ? 0 : n + s->skip);
        count = s->limit;
    } else if (s->limit >= 0) {
        from = 0;
        count = s->limit;
    } else {
        from = -s->limit >= n ? 0 : n + s->limit;
        count = n;
    }
    bson_append_array_begin(out, key, -1, &dst);
    bson_iter_recurse(it, &arr);
    while (bson_iter_next(&arr)) {
        if ((int64_t)i >= from && (int64_t)i - from < count) {
            const char *k;
            bson_uint32_to_string(j++, &k, ibuf, sizeof ibuf);
            bson_append_iter(&dst, k, -1, &arr);
        }
        i++;
    }
    bson_append_array_end(out, &dst);
}

static void append_elemmatch(bson_t *out, const char *key, const struct pnode *s, bson_iter_t *it)
{
    bson_iter_t arr;
    bson_t dst;

    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &arr)) {
        return;
    }
    while (bson_iter_next(&arr)) {
        if (qry_matcher_match_value(s->m, bson_iter_value(&arr))) {
            bson_append_array_begin(out, key, -1, &dst);
            bson_append_iter(&dst, "0", 1, &arr);
            bson_append_array_end(out, &dst);
            return;
        }
    }
}

static void incl_doc(const struct pnode *spec,
                     bson_iter_t *src,
                     bson_t *out,
                     bool top,
                     enum idmode id,
                     int depth);
static void excl_doc(const struct pnode *spec,
                     bson_iter_t *src,
                     bson_t *out,
                     bool top,
                     enum idmode id,
                     int depth);

/* Inclusion through an array: documents are projected, nested arrays
 * recursed into, other values dropped. */
static void incl_array(const struct pnode *spec, bson_iter_t *src, bson_t *out, int depth)
{
    uint32_t j = 0;
    char ibuf[16];

    if (depth > MAX_DEPTH) {
        return; /* deeper than any stored document may be */
    }
    while (bson_iter_next(src)) {
        const char *k;
        bson_iter_t sub;
        bson_t child;
        if (BSON_ITER_HOLDS_DOCUMENT(src) && bson_iter_recurse(src, &sub)) {
            bson_uint32_to_string(j++, &k, ibuf, sizeof ibuf);
            bson_append_document_begin(out, k, -1, &child);
            incl_doc(spec, &sub, &child, false, ID_DEFAULT, depth + 1);
            bson_append_document_end(out, &child);
        } else if (BSON_ITER_HOLDS_ARRAY(src) && bson_iter_recurse(src, &sub)) {
            bson_uint32_to_string(j++, &k, ibuf, sizeof ibuf);
            bson_append_array_begin(out, k, -1, &child);
            incl_array(spec, &sub, &child, depth + 1);
            bson_append_array_end(out, &child);
        }
    }
}

static void incl_doc(const struct pnode *spec,
                     bson_iter_t *src,
                     bson_t *out,
                     bool top,
                     enum idmode id,
                     int depth)
{
    while (bson_iter_next(src)) {
        const char *k = bson_iter_key(src);
        const struct pnode *c = pnode_child(spec, k, strlen(k));
        bson_iter_t sub;
        bson_t child;

        if (c == NULL) {
            if (top && id != ID_EXCLUDE && strcmp(k, "_id") == 0) {
                bson_append_iter(out, k, -1, src);
            }
            continue;
        }
        switch (c->kind) {
            case P_INCLUDE:
                bson_append_iter(out, k, -1, src);
                break;
            case P_SLICE:
                append_slice(out, k, c, src);
                break;
            case P_ELEMMATCH:
                append_elemmatch(out, k, c, src);
                break;
            case P_INTERNAL:
                if (BSON_ITER_HOLDS_DOCUMENT(src) && bson_iter_recurse(src, &sub)) {
                    bson_append_document_begin(out, k, -1, &child);
                    incl_doc(c, &sub, &child, false, ID_DEFAULT, depth + 1);
                    bson_append_document_end(out, &child);
                } else if (BSON_ITER_HOLDS_ARRAY(src) && bson_iter_recurse(src, &sub)) {
                    bson_append_array_begin(out, k, -1, &child);
                    incl_array(c, &sub, &child, depth + 1);
                    bson_append_array_end(out, &child);
                }
                break;
            default:
                break;
        }
    }
    for (size_t i = 0; i < spec->n; i++) {
        if (spec->kids[i]->kind == P_LITERAL) {
            bson_append_value(out, spec->kids[i]->name, -1, &spec->kids[i]->lit);
        }
    }
}

static void excl_array(const struct pnode *spec, bson_iter_t *src, bson_t *out, int depth)
{
    uint32_t j = 0;
    char ibuf[16];

    while (bson_iter_next(src)) {
        const char *k;
        bson_iter_t sub;
        bson_t child;
        bson_uint32_to_string(j++, &k, ibuf, sizeof ibuf);
        if (depth > MAX_DEPTH) {
            bson_append_iter(out, k, -1, src);
        } else if (BSON_ITER_HOLDS_DOCUMENT(src) && bson_iter_recurse(src, &sub)) {
            bson_append_document_begin(out, k, -1, &child);
            excl_doc(spec, &sub, &child, false, ID_DEFAULT, depth + 1);
            bson_append_document_end(out, &child);
        } else if (BSON_ITER_HOLDS_ARRAY(src) && bson_iter_recurse(src, &sub)) {
            bson_append_array_begin(out, k, -1, &child);
            excl_array(spec, &sub, &child, depth + 1);
            bson_append_array_end(out, &child);
        } else {
            bson_append_iter(out, k, -1, src);
        }
    }
}

static void excl_doc(const struct pnode *spec,
                     bson_iter_t *src,
                     bson_t *out,
                     bool top,
                     enum idmode id,
                     int depth)
{
    while (bson_iter_next(src)) {
        const char *k = bson_iter_key(src);
        const struct pnode *c = pnode_child(spec, k, strlen(k));
        bson_iter_t sub;
        bson_t child;

        if (c == NULL) {
            if (!(top && id == ID_EXCLUDE && strcmp(k, "_id") == 0)) {
                bson_append_iter(out, k, -1, src);
            }
            continue;
        }
        switch (c->kind) {
            case P_EXCLUDE:
                break;
            case P_SLICE:
                append_slice(out, k, c, src);
                break;
            case P_INTERNAL:
                if (BSON_ITER_HOLDS_DOCUMENT(src) && bson_iter_recurse(src, &sub)) {
                    bson_append_document_begin(out, k, -1, &child);
                    excl_doc(c, &sub, &child, false, ID_DEFAULT, depth + 1);
                    bson_append_document_end(out, &child);
                } else if (BSON_ITER_HOLDS_ARRAY(src) && bson_iter_recurse(src, &sub)) {
                    bson_append_array_begin(out, k, -1, &child);
                    excl_array(c, &sub, &child, depth + 1);
                    bson_append_array_end(out, &child);
                } else {
                    bson_append_iter(out, k, -1, src);
                }
                break;
            default:
                bson_append_iter(out, k, -1, src);
                break;
        }
    }
}

int qry_projection_apply(const struct qry_projection *p,
                         const bson_t *doc,
                         bson_t *out,
                         struct cairn_error *err)
{
    bson_iter_t it;

    bson_init(out);
    if (!bson_iter_init(&it, doc)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid document");
    }
    if (p->all) {
        bson_concat(out, doc);
        return 0;
    }
    if (p->mode == M_INCLUDE) {
        incl_doc(p->root, &it, out, true, p->id, 0);
    } else {
        excl_doc(p->root, &it, out, true, p->id, 0);
    }
    return 0;
}
