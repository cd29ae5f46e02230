/*
 * pipeline.c: the aggregation pipeline (qry_pipeline_*): stage parsing and
 * a push-based executor.
 *
 * Execution model: input documents are pushed through the stages one at a
 * time (push()); streaming stages ($match, $project, $addFields, $unset,
 * $skip, $limit, $unwind, $replaceRoot) transform and pass them on at once,
 * blocking stages ($group, $sort, $count) keep state in their per-run
 * `struct rstage` and emit everything when the input ends (flush(), run in
 * stage order). When a $limit preceded only by streaming stages is full, the
 * source is no longer pulled. The compiled pipeline is immutable; all run
 * state lives in `struct run`, so one pipeline may run on many threads.
 *
 * $project/$addFields/$unset share one representation: a tree of `pnode`s
 * (one per path component) applied in one of three modes: inclusion,
 * exclusion or "add" (computed fields merged into the input).
 *
 * $group keys are hashed with a hash consistent with qry_cmp equality
 * (numbers hash by their double value, so 1, 1.0 and NumberLong(1) share a
 * group) and kept in a chained hash table; groups are emitted in order of
 * first appearance.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/query.h"
#include "query/query_int.h"

/* ---- projection trees ---------------------------------------------------- */

enum pkind { PN_INCL = 1, PN_EXCL, PN_EXPR, PN_SUB };
enum pmode { PM_INCL, PM_EXCL, PM_ADD };

struct pnode
{
    char *name;
    int kind;
    bool has_expr; /* the subtree holds a PN_EXPR */
    struct qry_expr *expr;
    struct pnode **kids;
    size_t n;
};

static void pnode_free(struct pnode *nd)
{
    if (!nd) {
        return;
    }
    for (size_t i = 0; i < nd->n; i++) {
        pnode_free(nd->kids[i]);
    }
    free(nd->kids);
    free(nd->name);
    qry_expr_free(nd->expr);
    free(nd);
}

static int oom(struct cairn_error *err)
{
    return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory in aggregation");
}

static struct pnode *pnode_new(const char *name, size_t len, int kind)
{
    struct pnode *nd = calloc(1, sizeof *nd);
    if (nd) {
        nd->name = bson_strndup(name, len);
        nd->kind = kind;
    }
    return nd;
}

static struct pnode *pnode_find(const struct pnode *nd, const char *name, size_t *idx)
{
    for (size_t i = 0; i < nd->n; i++) {
        if (strcmp(nd->kids[i]->name, name) == 0) {
            if (idx) {
                *idx = i;
            }
            return nd->kids[i];
        }
    }
    return NULL;
}

static int pnode_add(struct pnode *parent, struct pnode *kid, bool front, struct cairn_error *err)
{
    struct pnode **nk = realloc(parent->kids, (parent->n + 1) * sizeof *nk);
    if (!nk) {
        pnode_free(kid);
        return oom(err);
    }
    parent->kids = nk;
    if (front) {
        memmove(nk + 1, nk, parent->n * sizeof *nk);
        nk[0] = kid;
    } else {
        nk[parent->n] = kid;
    }
    parent->n++;
    return 0;
}

/* Validates a dotted field path used as a stage output name. */
static int check_path(const char *path, struct cairn_error *err)
{
    if (path[0] == '\0') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmpty,
                                 "FieldPath cannot be constructed with empty string");
    }
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmptyComponent,
                                     "FieldPath field names may not be empty strings.");
        }
        if (p[0] == '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDollarPrefix,
                                     "FieldPath field names may not start with '$'. Consider "
                                     "using $getField or $setField.");
        }
        if (!dot) {
            return 0;
        }
        p = dot + 1;
    }
}

/* Inserts a leaf at dotted `path`. Takes ownership of `expr`. */
static int pnode_insert(struct pnode *root,
                        const char *path,
                        int kind,
                        struct qry_expr *expr,
                        struct cairn_error *err)
{
    struct pnode *cur = root;
    const char *p = path;
    int rv = check_path(path, err);
    if (rv) {
        qry_expr_free(expr);
        return rv;
    }
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char name[512];
        if (n >= sizeof name) {
            qry_expr_free(expr);
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "field name too long in projection");
        }
        memcpy(name, p, n);
        name[n] = '\0';
        struct pnode *kid = pnode_find(cur, name, NULL);
        if (kid && (!dot || kid->kind != PN_SUB)) {
            qry_expr_free(expr);
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionPathCollision,
                                     "Path collision at %s", path);
        }
        if (!kid) {
            kid = pnode_new(name, n, dot ? PN_SUB : kind);
            if (!kid || (rv = pnode_add(cur, kid, false, err)) != 0) {
                qry_expr_free(expr);
                return kid ? rv : oom(err);
            }
        }
        if (kind == PN_EXPR) {
            cur->has_expr = true;
            kid->has_expr = true;
        }
        if (!dot) {
            kid->expr = expr;
            return 0;
        }
        cur = kid;
        p = dot + 1;
    }
}

/* Parsing state of one $project/$addFields spec. */
struct pparse
{
    struct pnode *root;
    int mode; /* -1 undecided, PM_INCL, PM_EXCL, PM_ADD */
    const char *stage;
};

static bool is_subprojection(const bson_iter_t *it)
{
    bson_iter_t sub;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub) || !bson_iter_next(&sub)) {
        return false;
    }
    return bson_iter_key(&sub)[0] != '$';
}

static bool is_empty_doc(const bson_iter_t *it)
{
    bson_iter_t sub;
    return bson_iter_recurse(it, &sub) && !bson_iter_next(&sub);
}

static int pparse_doc(struct pparse *ps,
                      const bson_t *spec,
                      const char *prefix,
                      struct cairn_error *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, spec)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "malformed %s specification",
                                 ps->stage);
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        char *path = prefix ? bson_strdup_printf("%s.%s", prefix, k) : bson_strdup(k);
        int rv = 0;
        bson_type_t t = bson_iter_type(&it);
        if (is_subprojection(&it)) {
            bson_t sub;
            const uint8_t *data;
            uint32_t len;
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&sub, data, len)) {
                rv = cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                       "malformed sub-projection");
            } else {
                rv = pparse_doc(ps, &sub, path, err);
            }
        } else if (ps->mode != PM_ADD && t == BSON_TYPE_DOCUMENT && is_empty_doc(&it)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionEmptySubObject,
                                   "An empty sub-projection is not a valid value. Found empty "
                                   "object at path %s",
                                   path);
        } else if (ps->mode != PM_ADD &&
                   (t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
                    t == BSON_TYPE_DECIMAL128 || t == BSON_TYPE_BOOL)) {
            bool incl = qry_value_truthy(bson_iter_value(&it));
            if (strcmp(path, "_id") == 0) {
                rv = pnode_insert(ps->root, path, incl ? PN_INCL : PN_EXCL, NULL, err);
            } else if (incl) {
                if (ps->mode == PM_EXCL) {
                    rv = cairn_error_mongo(err, CAIRN_EINVAL,
                                           MONGO_LOC_InclusionInExclusionProjection,
                                           "Invalid $project :: caused by :: Cannot do inclusion "
                                           "on field %s in exclusion projection",
                                           path);
                } else {
                    ps->mode = PM_INCL;
                    rv = pnode_insert(ps->root, path, PN_INCL, NULL, err);
                }
            } else {
                if (ps->mode == PM_INCL) {
                    rv = cairn_error_mongo(err, CAIRN_EINVAL,
                                           MONGO_LOC_ExclusionInInclusionProjection,
                                           "Invalid $project :: caused by :: Cannot do exclusion "
                                           "on field %s in inclusion projection",
                                           path);
                } else {
                    ps->mode = PM_EXCL;
                    rv = pnode_insert(ps->root, path, PN_EXCL, NULL, err);
                }
            }
        } else {
            struct qry_expr *e = NULL;
            if (ps->mode == PM_EXCL) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExclusionProjectionExpression,
                                       "Invalid $project :: caused by :: Cannot use expression "
                                       "other than $meta in exclusion projection");
            } else {
                if (ps->mode != PM_ADD) {
                    ps->mode = PM_INCL;
                }
                rv = qry_expr_compile(bson_iter_value(&it), &e, err);
                if (!rv) {
                    rv = pnode_insert(ps->root, path, PN_EXPR, e, err);
                }
            }
        }
        bson_free(path);
        if (rv) {
            return rv;
        }
    }
    return 0;
}

static int doc_value_from_iter(const bson_iter_t *it, bson_t *out)
{
    const uint8_t *data = NULL;
    uint32_t len = 0;
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_document(it, &len, &data);
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_array(it, &len, &data);
    }
    return data && bson_init_static(out, data, len) ? 0 : -1;
}

static int papply_doc(const struct pnode *nd,
                      int mode,
                      const bson_t *in,
                      const bson_t *root,
                      bson_t *out,
                      struct cairn_error *err);

static int papply_array(const struct pnode *nd,
                        int mode,
                        const bson_t *arr,
                        const bson_t *root,
                        bson_t *out,
                        struct cairn_error *err)
{
    bson_iter_t it;
    uint32_t idx = 0;
    int rv = 0;
    if (!bson_iter_init(&it, arr)) {
        return 0;
    }
    while (!rv && bson_iter_next(&it)) {
        char buf[16];
        const char *key;
        size_t kl = bson_uint32_to_string(idx, &key, buf, sizeof buf);
        bson_t sub, child;
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && doc_value_from_iter(&it, &sub) == 0) {
            bson_append_document_begin(out, key, (int)kl, &child);
            rv = papply_doc(nd, mode, &sub, root, &child, err);
            bson_append_document_end(out, &child);
        } else if (BSON_ITER_HOLDS_ARRAY(&it) && doc_value_from_iter(&it, &sub) == 0) {
            bson_append_array_begin(out, key, (int)kl, &child);
            rv = papply_array(nd, mode, &sub, root, &child, err);
            bson_append_array_end(out, &child);
        } else if (mode == PM_EXCL) {
            bson_append_iter(out, key, (int)kl, &it);
        } else if (mode == PM_ADD || nd->has_expr) {
            bson_append_document_begin(out, key, (int)kl, &child);
            rv = papply_doc(nd, mode, NULL, root, &child, err);
            bson_append_document_end(out, &child);
        } else {
            continue;
        }
        idx++;
    }
    return rv;
}

/* Applies sub-tree `kid` to the input value at `it`, appending the result
 * under the iterator's key (or nothing). */
static int papply_sub(const struct pnode *kid,
                      int mode,
                      const bson_iter_t *it,
                      const bson_t *root,
                      bson_t *out,
                      struct cairn_error *err)
{
    bson_t sub, child;
    int rv = 0;
    const char *key = bson_iter_key(it);
    if (BSON_ITER_HOLDS_DOCUMENT(it) && doc_value_from_iter(it, &sub) == 0) {
        bson_append_document_begin(out, key, -1, &child);
        rv = papply_doc(kid, mode, &sub, root, &child, err);
        bson_append_document_end(out, &child);
    } else if (BSON_ITER_HOLDS_ARRAY(it) && doc_value_from_iter(it, &sub) == 0) {
        bson_append_array_begin(out, key, -1, &child);
        rv = papply_array(kid, mode, &sub, root, &child, err);
        bson_append_array_end(out, &child);
    } else if (mode == PM_EXCL) {
        bson_append_iter(out, key, -1, it);
    } else if (mode == PM_ADD || kid->has_expr) {
        bson_append_document_begin(out, key, -1, &child);
        rv = papply_doc(kid, mode, NULL, root, &child, err);
        bson_append_document_end(out, &child);
    }
    return rv;
}

static int papply_doc(const struct pnode *nd,
                      int mode,
                      const bson_t *in,
                      const bson_t *root,
                      bson_t *out,
                      struct cairn_error *err)
{
    bool small[32];
    bool *done = small;
    bson_iter_t it;
    int rv = 0;
    if (nd->n > sizeof small / sizeof small[0]) {
        done = calloc(nd->n, sizeof *done);
        if (!done) {
            return oom(err);
        }
    } else {
        memset(small, 0, sizeof small);
    }
    if (in && bson_iter_init(&it, in)) {
        while (!rv && bson_iter_next(&it)) {
            size_t j = 0;
            const struct pnode *kid = pnode_find(nd, bson_iter_key(&it), &j);
            if (!kid) {
                if (mode != PM_INCL) {
                    bson_append_iter(out, NULL, 0, &it);
                }
                continue;
            }
            if (done[j]) {
                continue; /* duplicate field name in the input */
            }
            switch (kid->kind) {
                case PN_INCL:
                    bson_append_iter(out, NULL, 0, &it);
                    done[j] = true;
                    break;
                case PN_EXCL:
                    done[j] = true;
                    break;
                case PN_EXPR:
                    if (mode == PM_ADD) {
                        rv = qry_expr_append(kid->expr, root, out, kid->name, -1, err);
                        done[j] = true;
                    }
                    break;
                default:
                    rv = papply_sub(kid, mode, &it, root, out, err);
                    done[j] = true;
                    break;
            }
        }
    }
    for (size_t j = 0; !rv && j < nd->n; j++) {
        const struct pnode *kid = nd->kids[j];
        if (done[j] || mode == PM_EXCL) {
            continue;
        }
        if (kid->kind == PN_EXPR) {
            rv = qry_expr_append(kid->expr, root, out, kid->name, -1, err);
        } else if (kid->kind == PN_SUB && kid->has_expr) {
            bson_t child;
            bson_append_document_begin(out, kid->name, -1, &child);
            rv = papply_doc(kid, mode, NULL, root, &child, err);
            bson_append_document_end(out, &child);
        }
    }
    if (done != small) {
        free(done);
    }
    return rv;
}

/* ---- stages ---------------------------------------------------------------- */

enum stype {
    ST_MATCH,
    ST_GROUP,
    ST_COUNT,
    ST_PROJECT,
    ST_SORT,
    ST_SKIP,
    ST_LIMIT,
    ST_UNWIND,
    ST_REPLACE,
};

enum acc_op {
    ACC_SUM,
    ACC_AVG,
    ACC_MIN,
    ACC_MAX,
    ACC_PUSH,
    ACC_FIRST,
    ACC_LAST,
    ACC_ADDTOSET,
    ACC_COUNT,
};

static const struct
{
    const char *name;
    int op;
} accs[] = {
    {"$sum", ACC_SUM},   {"$avg", ACC_AVG},           {"$min", ACC_MIN},
    {"$max", ACC_MAX},   {"$push", ACC_PUSH},         {"$first", ACC_FIRST},
    {"$last", ACC_LAST}, {"$addToSet", ACC_ADDTOSET}, {"$count", ACC_COUNT},
};

struct gacc
{
    char *name;
    int op;
    struct qry_expr *expr; /* NULL for $count */
};

struct stage
{
    int type;
    bool stream_prefix; /* no blocking stage before this one */
    struct qry_matcher *matcher;
    struct qry_expr *expr; /* $group _id, $replaceRoot newRoot */
    struct gacc *accs;
    size_t nacc;
    struct pnode *proj;
    int pmode;
    struct qry_sort *sort;
    int64_t n;    /* $skip, $limit */
    char *name;   /* $count field */
    char **upath; /* $unwind */
    size_t nupath;
    char **uidx;
    size_t nuidx;
    bool preserve;
};

struct qry_pipeline
{
    struct stage *st;
    size_t n;
    bson_t *leading_match;
    size_t result_limit; /* bytes of output a run may hold */
};

static void free_parts(char **parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(parts[i]);
    }
    free(parts);
}

static void stage_free(struct stage *s)
{
    if (s->matcher) {
        qry_matcher_free(s->matcher);
    }
    qry_expr_free(s->expr);
    for (size_t i = 0; i < s->nacc; i++) {
        free(s->accs[i].name);
        qry_expr_free(s->accs[i].expr);
    }
    free(s->accs);
    pnode_free(s->proj);
    if (s->sort) {
        qry_sort_free(s->sort);
    }
    free(s->name);
    free_parts(s->upath, s->nupath);
    free_parts(s->uidx, s->nuidx);
}

void qry_pipeline_set_result_limit(struct qry_pipeline *p, size_t bytes)
{
    p->result_limit = bytes;
}

void qry_pipeline_free(struct qry_pipeline *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        stage_free(&p->st[i]);
    }
    free(p->st);
    if (p->leading_match) {
        bson_destroy(p->leading_match);
    }
    free(p);
}

const bson_t *qry_pipeline_leading_match(const struct qry_pipeline *p)
{
    return p->leading_match;
}

static int split_path(const char *path, char ***parts, size_t *n, struct cairn_error *err)
{
    int rv = check_path(path, err);
    if (rv) {
        return rv;
    }
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char **np = realloc(*parts, (*n + 1) * sizeof *np);
        if (!np) {
            return oom(err);
        }
        *parts = np;
        np[(*n)++] = bson_strndup(p, len);
        if (!dot) {
            return 0;
        }
        p = dot + 1;
    }
}

static bool iter_doc(const bson_iter_t *it, bson_t *out)
{
    return BSON_ITER_HOLDS_DOCUMENT(it) && doc_value_from_iter(it, out) == 0;
}

static const char *iter_type_name(const bson_iter_t *it)
{
    return qry_type_name(bson_iter_type(it));
}

static int parse_match(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    bson_t f;
    if (!iter_doc(it, &f)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_MatchNotObject,
                                 "the match filter must be an expression in an object");
    }
    s->type = ST_MATCH;
    return qry_matcher_compile(&f, &s->matcher, err);
}

static int parse_group_body(struct stage *s, const bson_t *spec, struct cairn_error *err)
{
    bson_iter_t it;
    int rv;
    bool have_id = false;
    s->type = ST_GROUP;
    if (!bson_iter_init(&it, spec)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                 "malformed $group specification");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0) {
            if (have_id) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupIdTwice,
                                         "a group's _id may only be specified once");
            }
            have_id = true;
            rv = qry_expr_compile(bson_iter_value(&it), &s->expr, err);
            if (rv) {
                return rv;
            }
            continue;
        }
        if (k[0] == '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldDollarPrefix,
                                     "The field name '%s' cannot be an operator name", k);
        }
        if (strchr(k, '.')) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldDot,
                                     "The field name '%s' cannot contain '.'", k);
        }
        for (size_t i = 0; i < s->nacc; i++) {
            if (strcmp(s->accs[i].name, k) == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupDuplicateField,
                                         "duplicate field name: %s", k);
            }
        }
        bson_iter_t ai;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldNotAccumulator,
                                     "The field '%s' must be an accumulator object", k);
        }
        bson_iter_t c2 = ai;
        int cnt = 0;
        while (bson_iter_next(&c2)) {
            cnt++;
        }
        if (cnt != 1 || !bson_iter_next(&ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldAccumulatorCount,
                                     "The field '%s' must specify one accumulator", k);
        }
        const char *an = bson_iter_key(&ai);
        int op = -1;
        for (size_t i = 0; i < sizeof accs / sizeof accs[0]; i++) {
            if (strcmp(accs[i].name, an) == 0) {
                op = accs[i].op;
            }
        }
        if (op < 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupUnknownAccumulator,
                                     "unknown group operator '%s'", an);
        }
        struct gacc *na = realloc(s->accs, (s->nacc + 1) * sizeof *na);
        if (!na) {
            return oom(err);
        }
        s->accs = na;
        struct gacc *a = &na[s->nacc++];
        a->name = bson_strdup(k);
        a->op = op;
        a->expr = NULL;
        if (op == ACC_COUNT) {
            bson_t empty;
            if (!iter_doc(&ai, &empty) || !bson_empty(&empty)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "$count takes no arguments, i.e. $count:{}");
            }
            continue;
        }
        if (BSON_ITER_HOLDS_ARRAY(&ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AccumulatorNotUnary,
                                     "The %s accumulator is a unary operator", an);
        }
        rv = qry_expr_compile(bson_iter_value(&ai), &a->expr, err);
        if (rv) {
            return rv;
        }
    }
    if (!have_id) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupMissingId,
                                 "a group specification must include an _id");
    }
    return 0;
}

static int parse_group(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    bson_t spec;
    if (!iter_doc(it, &spec)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupSpecNotObject,
                                 "a group's fields must be specified in an object");
    }
    return parse_group_body(s, &spec, err);
}

static int parse_count(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldNotString,
                                 "the count field must be a non-empty string");
    }
    uint32_t len = 0;
    const char *name = bson_iter_utf8(it, &len);
    if (len == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldEmpty,
                                 "the count field must be a non-empty string");
    }
    if (name[0] == '$') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldDollarPrefix,
                                 "the count field cannot be a $-prefixed path");
    }
    if (strlen(name) != len) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldNulByte,
                                 "the count field cannot contain a null byte");
    }
    if (strchr(name, '.')) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldDot,
                                 "the count field cannot contain '.'");
    }
    if (strcmp(name, "_id") == 0) { /* mongod expands to {$group: {_id: null, _id: ...}} */
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupIdTwice,
                                 "a group's _id may only be specified once");
    }
    s->type = ST_COUNT;
    s->name = bson_strdup(name);
    return 0;
}

static int parse_project(struct stage *s, const bson_iter_t *it, bool add, struct cairn_error *err)
{
    bson_t spec;
    struct pparse ps = {NULL, add ? PM_ADD : -1, add ? "$addFields" : "$project"};
    int rv;
    if (!iter_doc(it, &spec)) {
        if (add) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AddFieldsNotObject,
                                     "$addFields specification stage must be an object, got %s",
                                     iter_type_name(it));
        }
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectNotObject,
                                 "$project specification must be an object");
    }
    s->type = ST_PROJECT;
    s->proj = ps.root = pnode_new("", 0, PN_SUB);
    if (!ps.root) {
        return oom(err);
    }
    rv = pparse_doc(&ps, &spec, NULL, err);
    if (rv) {
        return rv;
    }
    if (!add && ps.root->n == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectionEmpty,
                                 "Invalid $project :: caused by :: projection specification "
                                 "must have at least one field");
    }
    if (ps.mode < 0) {
        struct pnode *id = pnode_find(ps.root, "_id", NULL);
        ps.mode = (id && id->kind == PN_EXCL) ? PM_EXCL : PM_INCL;
    }
    if (ps.mode == PM_INCL && !pnode_find(ps.root, "_id", NULL)) {
        struct pnode *id = pnode_new("_id", 3, PN_INCL);
        if (!id) {
            return oom(err);
        }
        rv = pnode_add(ps.root, id, true, err);
        if (rv) {
            return rv;
        }
    }
    s->pmode = ps.mode;
    return 0;
}

static int parse_unset(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    int rv;
    s->type = ST_PROJECT;
    s->pmode = PM_EXCL;
    s->proj = pnode_new("", 0, PN_SUB);
    if (!s->proj) {
        return oom(err);
    }
    if (BSON_ITER_HOLDS_UTF8(it)) {
        return pnode_insert(s->proj, bson_iter_utf8(it, NULL), PN_EXCL, NULL, err);
    }
    bson_iter_t ai;
    if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &ai)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnsetSpecBadType,
                                 "$unset specification must be a string or an array");
    }
    while (bson_iter_next(&ai)) {
        if (!BSON_ITER_HOLDS_UTF8(&ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnsetSpecNotString,
                                     "$unset specification must be a string or an array "
                                     "containing only string values");
        }
        rv = pnode_insert(s->proj, bson_iter_utf8(&ai, NULL), PN_EXCL, NULL, err);
        if (rv) {
            return rv;
        }
    }
    if (s->proj->n == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnsetSpecEmpty,
                                 "$unset specification must be a string or an array with at "
                                 "least one field");
    }
    return 0;
}

static int parse_sort_doc(struct stage *s, const bson_t *spec, struct cairn_error *err)
{
    s->type = ST_SORT;
    if (bson_empty(spec)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SortEmpty,
                                 "$sort stage must have at least one sort key");
    }
    return qry_sort_compile(spec, &s->sort, err);
}

static int parse_sort(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    bson_t spec;
    if (!iter_doc(it, &spec)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SortNotObject,
                                 "the $sort key specification must be an object");
    }
    return parse_sort_doc(s, &spec, err);
}

static int parse_skip_limit(struct stage *s,
                            const bson_iter_t *it,
                            bool limit,
                            struct cairn_error *err)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    const char *stage = limit ? "$limit" : "$skip";
    double d;
    if (!qry_is_number(v->value_type)) {
        return limit ? cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_LimitNotNumber,
                                         "the limit must be specified as a number")
                     : cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SkipNotNumber,
                                         "Argument to $skip must be a number");
    }
    d = qry_number_as_double(v);
    if (v->value_type == BSON_TYPE_INT64) {
        s->n = v->value.v_int64;
    } else if (v->value_type == BSON_TYPE_INT32) {
        s->n = v->value.v_int32;
    } else {
        if (d != floor(d) || !(d >= -9.2e18 && d <= 9.2e18)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "invalid argument to %s stage: Cannot represent as a 64-bit "
                                     "integer: %s: %g",
                                     stage, stage, d);
        }
        s->n = (int64_t)d;
    }
    if (limit && s->n <= 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_LimitNotPositive,
                                 "the limit must be positive");
    }
    if (!limit && s->n < 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SkipNegative,
                                 "Argument to $skip cannot be negative");
    }
    s->type = limit ? ST_LIMIT : ST_SKIP;
    return 0;
}

static int parse_unwind(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    const char *path = NULL;
    const char *idx = NULL;
    s->type = ST_UNWIND;
    if (BSON_ITER_HOLDS_UTF8(it)) {
        path = bson_iter_utf8(it, NULL);
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t oi;
        bson_iter_recurse(it, &oi);
        while (bson_iter_next(&oi)) {
            const char *k = bson_iter_key(&oi);
            if (strcmp(k, "path") == 0) {
                if (!BSON_ITER_HOLDS_UTF8(&oi)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindPathNotString,
                                             "expected a string as the path for $unwind stage, "
                                             "got %s",
                                             iter_type_name(&oi));
                }
                path = bson_iter_utf8(&oi, NULL);
            } else if (strcmp(k, "includeArrayIndex") == 0) {
                if (!BSON_ITER_HOLDS_UTF8(&oi)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindIndexFieldNotString,
                                             "expected a non-empty string for the "
                                             "includeArrayIndex option to $unwind stage, got %s",
                                             iter_type_name(&oi));
                }
                idx = bson_iter_utf8(&oi, NULL);
                if (idx[0] == '\0') {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindIndexFieldNotString,
                                             "expected a non-empty string for the "
                                             "includeArrayIndex option to $unwind stage");
                }
                if (idx[0] == '$') {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindIndexFieldDollar,
                                             "includeArrayIndex option to $unwind stage should "
                                             "not be prefixed with a '$': %s",
                                             idx);
                }
            } else if (strcmp(k, "preserveNullAndEmptyArrays") == 0) {
                if (!BSON_ITER_HOLDS_BOOL(&oi)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindPreserveNotBool,
                                             "expected a boolean for the "
                                             "preserveNullAndEmptyArrays option to $unwind "
                                             "stage, got %s",
                                             iter_type_name(&oi));
                }
                s->preserve = bson_iter_bool(&oi);
            } else {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindUnknownOption,
                                         "unrecognized option to $unwind stage: %s", k);
            }
        }
        if (!path) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindMissingPath,
                                     "no path specified to $unwind stage");
        }
    } else {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindSpecBadType,
                                 "expected either a string or an object as specification for "
                                 "$unwind stage, got %s",
                                 iter_type_name(it));
    }
    if (path[0] != '$') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindPathNoDollar,
                                 "path option to $unwind stage should be prefixed with a '$': %s",
                                 path);
    }
    int rv = split_path(path + 1, &s->upath, &s->nupath, err);
    if (!rv && idx) {
        rv = split_path(idx, &s->uidx, &s->nuidx, err);
    }
    return rv;
}

static int parse_replace(struct stage *s, const bson_iter_t *it, bool with, struct cairn_error *err)
{
    s->type = ST_REPLACE;
    if (with) {
        return qry_expr_compile(bson_iter_value((bson_iter_t *)it), &s->expr, err);
    }
    bson_iter_t oi;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &oi)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootSpecNotObject,
                                 "expected an object as specification for $replaceRoot stage, "
                                 "got %s",
                                 iter_type_name(it));
    }
    while (bson_iter_next(&oi)) {
        if (strcmp(bson_iter_key(&oi), "newRoot") != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootUnknownOption,
                                     "unrecognized option to $replaceRoot stage: %s",
                                     bson_iter_key(&oi));
        }
        qry_expr_free(s->expr);
        s->expr = NULL;
        int rv = qry_expr_compile(bson_iter_value(&oi), &s->expr, err);
        if (rv) {
            return rv;
        }
    }
    if (!s->expr) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootMissingNewRoot,
                                 "no newRoot specified for the $replaceRoot stage");
    }
    return 0;
}

static const char *const unsupported[] = {
    "$lookup",
    "$out",
    "$merge",
    "$facet",
    "$bucket",
    "$bucketAuto",
    "$sample",
    "$graphLookup",
    "$geoNear",
    "$indexStats",
    "$collStats",
    "$currentOp",
    "$listSessions",
    "$listLocalSessions",
    "$redact",
    "$unionWith",
    "$densify",
    "$fill",
    "$setWindowFields",
    "$documents",
    "$changeStream",
    "$search",
    "$searchMeta",
    "$planCacheStats",
    "$listSearchIndexes",
    "$changeStreamSplitLargeEvent",
    "$shardedDataDistribution",
    "$queryStats",
};

/* Appends a zeroed stage to p. */
static struct stage *add_stage(struct qry_pipeline *p, size_t *cap)
{
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct stage *ns = realloc(p->st, nc * sizeof *ns);
        if (!ns) {
            return NULL;
        }
        p->st = ns;
        *cap = nc;
    }
    struct stage *s = &p->st[p->n++];
    memset(s, 0, sizeof *s);
    return s;
}

/* $sortByCount: expr -> {$group: {_id: expr, count: {$sum: 1}}}, {$sort: {count: -1}} */
static int parse_sort_by_count(struct qry_pipeline *p,
                               size_t *cap,
                               const bson_iter_t *it,
                               struct cairn_error *err)
{
    bool ok = (BSON_ITER_HOLDS_UTF8(it) && bson_iter_utf8(it, NULL)[0] == '$') ||
              BSON_ITER_HOLDS_DOCUMENT(it);
    if (!ok) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SortByCountBadField,
                                 "the sortByCount field must be specified as a string or an "
                                 "object expression starting with '$'");
    }
    bson_t g = BSON_INITIALIZER, sort = BSON_INITIALIZER, cnt;
    bson_append_value(&g, "_id", 3, bson_iter_value((bson_iter_t *)it));
    bson_append_document_begin(&g, "count", 5, &cnt);
    bson_append_int32(&cnt, "$sum", 4, 1);
    bson_append_document_end(&g, &cnt);
    bson_append_int32(&sort, "count", 5, -1);
    struct stage *s = add_stage(p, cap);
    int rv = s ? parse_group_body(s, &g, err) : oom(err);
    if (!rv) {
        s = add_stage(p, cap);
        rv = s ? parse_sort_doc(s, &sort, err) : oom(err);
    }
    bson_destroy(&g);
    bson_destroy(&sort);
    return rv;
}

static int parse_stage(struct qry_pipeline *p,
                       size_t *cap,
                       const char *name,
                       const bson_iter_t *it,
                       struct cairn_error *err)
{
    if (strcmp(name, "$sortByCount") == 0) {
        return parse_sort_by_count(p, cap, it, err);
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        if (strcmp(name, unsupported[i]) == 0) {
            return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "%s is not supported yet", name);
        }
    }
    struct stage *s = add_stage(p, cap);
    if (!s) {
        return oom(err);
    }
    if (strcmp(name, "$match") == 0) {
        return parse_match(s, it, err);
    }
    if (strcmp(name, "$group") == 0) {
        return parse_group(s, it, err);
    }
    if (strcmp(name, "$count") == 0) {
        return parse_count(s, it, err);
    }
    if (strcmp(name, "$project") == 0) {
        return parse_project(s, it, false, err);
    }
    if (strcmp(name, "$addFields") == 0 || strcmp(name, "$set") == 0) {
        return parse_project(s, it, true, err);
    }
    if (strcmp(name, "$unset") == 0) {
        return parse_unset(s, it, err);
    }
    if (strcmp(name, "$sort") == 0) {
        return parse_sort(s, it, err);
    }
    if (strcmp(name, "$skip") == 0) {
        return parse_skip_limit(s, it, false, err);
    }
    if (strcmp(name, "$limit") == 0) {
        return parse_skip_limit(s, it, true, err);
    }
    if (strcmp(name, "$unwind") == 0) {
        return parse_unwind(s, it, err);
    }
    if (strcmp(name, "$replaceRoot") == 0) {
        return parse_replace(s, it, false, err);
    }
    if (strcmp(name, "$replaceWith") == 0) {
        return parse_replace(s, it, true, err);
    }
    p->n--; /* nothing was parsed into it */
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_StageUnknown,
                             "Unrecognized pipeline stage name: '%s'", name);
}

int qry_pipeline_compile(const bson_t *stages, struct qry_pipeline **out, struct cairn_error *err)
{
    bson_iter_t it;
    size_t cap = 0;
    int rv = 0;
    *out = NULL;
    struct qry_pipeline *p = calloc(1, sizeof *p);
    if (p != NULL) {
        p->result_limit = QRY_PIPELINE_RESULT_LIMIT;
    }
    if (!p) {
        return oom(err);
    }
    if (!bson_iter_init(&it, stages)) {
        free(p);
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_TypeMismatch, "malformed pipeline");
    }
    while (!rv && bson_iter_next(&it)) {
        bson_iter_t si;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &si)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                   "Each element of the 'pipeline' array must be an object");
            break;
        }
        bson_iter_t cnt = si;
        int nkeys = 0;
        while (bson_iter_next(&cnt)) {
            nkeys++;
        }
        if (nkeys != 1 || !bson_iter_next(&si)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_StageNotOneField,
                                   "A pipeline stage specification object must contain exactly "
                                   "one field.");
            break;
        }
        bool first = p->n == 0;
        rv = parse_stage(p, &cap, bson_iter_key(&si), &si, err);
        if (!rv && first && p->n > 0 && p->st[0].type == ST_MATCH) {
            bson_t f;
            iter_doc(&si, &f);
            p->leading_match = bson_copy(&f);
            if (!p->leading_match) {
                rv = oom(err);
            }
        }
    }
    if (rv) {
        qry_pipeline_free(p);
        return rv;
    }
    bool blocked = false;
    for (size_t i = 0; i < p->n; i++) {
        p->st[i].stream_prefix = !blocked;
        if (p->st[i].type == ST_GROUP || p->st[i].type == ST_SORT || p->st[i].type == ST_COUNT) {
            blocked = true;
        }
    }
    *out = p;
    return 0;
}

/* ---- group state ------------------------------------------------------------ */

struct accstate
{
    struct qry_numsum sum;
    int64_t cnt;
    bson_value_t v; /* min/max/first/last; EOD = none/missing */
    bool has;
    bson_value_t *vals; /* push/addToSet */
    size_t nv, cap;
};

struct grp
{
    bson_value_t key;
    uint64_t hash;
    size_t next; /* index + 1 of the next group in the bucket, 0 = end */
    struct accstate *st;
};

struct gtab
{
    size_t bytes; /* approximate memory held, for the memory limit */
    struct grp *g;
    size_t n, cap;
    size_t *buckets; /* index + 1, 0 = empty */
    size_t nb;
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t vhash(uint64_t h, const bson_value_t *v)
{
    int rank = qry_type_rank(v->value_type);
    h = mix(h, &rank, sizeof rank);
    switch (v->value_type) {
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128: {
            double d = qry_number_as_double(v);
            uint64_t bits;
            if (isnan(d)) {
                bits = 0x7ff8000000000000ULL;
            } else {
                if (d == 0) {
                    d = 0.0;
                }
                memcpy(&bits, &d, sizeof bits);
            }
            return mix(h, &bits, sizeof bits);
        }
        case BSON_TYPE_UTF8:
            return mix(h, v->value.v_utf8.str, v->value.v_utf8.len);
        case BSON_TYPE_SYMBOL:
            return mix(h, v->value.v_symbol.symbol, v->value.v_symbol.len);
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY: {
            bson_t d;
            bson_iter_t it;
            if (bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
                bson_iter_init(&it, &d)) {
                while (bson_iter_next(&it)) {
                    if (v->value_type == BSON_TYPE_DOCUMENT) {
                        const char *k = bson_iter_key(&it);
                        h = mix(h, k, strlen(k) + 1);
                    }
                    h = vhash(h, bson_iter_value(&it));
                }
            }
            return h;
        }
        case BSON_TYPE_BOOL:
            return mix(h, &v->value.v_bool, 1);
        case BSON_TYPE_DATE_TIME:
            return mix(h, &v->value.v_datetime, sizeof v->value.v_datetime);
        case BSON_TYPE_OID:
            return mix(h, v->value.v_oid.bytes, 12);
        case BSON_TYPE_TIMESTAMP:
            h = mix(h, &v->value.v_timestamp.timestamp, 4);
            return mix(h, &v->value.v_timestamp.increment, 4);
        case BSON_TYPE_BINARY:
            h = mix(h, &v->value.v_binary.subtype, sizeof v->value.v_binary.subtype);
            return mix(h, v->value.v_binary.data, v->value.v_binary.data_len);
        case BSON_TYPE_REGEX:
            h = mix(h, v->value.v_regex.regex, strlen(v->value.v_regex.regex));
            return mix(h, v->value.v_regex.options ? v->value.v_regex.options : "",
                       v->value.v_regex.options ? strlen(v->value.v_regex.options) : 0);
        default:
            return h;
    }
}

static void accstate_clear(struct accstate *a)
{
    if (a->v.value_type != BSON_TYPE_EOD) {
        bson_value_destroy(&a->v);
    }
    for (size_t i = 0; i < a->nv; i++) {
        bson_value_destroy(&a->vals[i]);
    }
    free(a->vals);
}

static void gtab_free(struct gtab *t, size_t nacc)
{
    for (size_t i = 0; i < t->n; i++) {
        struct grp *g = &t->g[i];
        if (g->key.value_type != BSON_TYPE_EOD) {
            bson_value_destroy(&g->key);
        }
        if (g->st) {
            for (size_t j = 0; j < nacc; j++) {
                accstate_clear(&g->st[j]);
            }
            free(g->st);
        }
    }
    free(t->g);
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

/* Blocking stages refuse to hold more than this, like mongod without
 * allowDiskUse (there is no spilling to disk here). */
#define STAGE_MEM_LIMIT ((size_t)100 * 1024 * 1024)

static size_t value_bytes(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            return sizeof *v + v->value.v_doc.data_len;
        case BSON_TYPE_UTF8:
            return sizeof *v + v->value.v_utf8.len;
        case BSON_TYPE_BINARY:
            return sizeof *v + v->value.v_binary.data_len;
        default:
            return sizeof *v;
    }
}

static int gtab_rehash(struct gtab *t)
{
    size_t nb = t->nb ? t->nb * 2 : 64;
    size_t *b = calloc(nb, sizeof *b);
    if (!b) {
        return CAIRN_ENOMEM;
    }
    free(t->buckets);
    t->buckets = b;
    t->nb = nb;
    for (size_t i = 0; i < t->n; i++) {
        size_t slot = t->g[i].hash & (nb - 1);
        t->g[i].next = b[slot];
        b[slot] = i + 1;
    }
    return 0;
}

/* Finds or creates the group for `key` (taking ownership of it). */
static int gtab_get(struct gtab *t,
                    bson_value_t *key,
                    size_t nacc,
                    struct grp **out,
                    struct cairn_error *err)
{
    uint64_t h = vhash(1469598103934665603ULL, key);
    if (t->nb) {
        for (size_t i = t->buckets[h & (t->nb - 1)]; i; i = t->g[i - 1].next) {
            struct grp *g = &t->g[i - 1];
            if (g->hash == h && qry_cmp(&g->key, key) == 0) {
                bson_value_destroy(key);
                *out = g;
                return 0;
            }
        }
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        struct grp *ng = realloc(t->g, nc * sizeof *ng);
        if (!ng) {
            bson_value_destroy(key);
            return oom(err);
        }
        t->g = ng;
        t->cap = nc;
    }
    struct grp *g = &t->g[t->n];
    memset(g, 0, sizeof *g);
    g->st = calloc(nacc ? nacc : 1, sizeof *g->st);
    if (!g->st) {
        bson_value_destroy(key);
        return oom(err);
    }
    g->key = *key;
    g->hash = h;
    t->n++;
    t->bytes += sizeof *g + nacc * sizeof *g->st + value_bytes(key);
    if (t->n * 4 > t->nb * 3) {
        if (gtab_rehash(t)) {
            return oom(err);
        }
    } else {
        size_t slot = h & (t->nb - 1);
        g->next = t->buckets[slot];
        t->buckets[slot] = t->n;
    }
    *out = g;
    return 0;
}

static int vals_push(struct accstate *a, bson_value_t *v, struct cairn_error *err)
{
    if (a->nv == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 4;
        bson_value_t *nv = realloc(a->vals, nc * sizeof *nv);
        if (!nv) {
            bson_value_destroy(v);
            return oom(err);
        }
        a->vals = nv;
        a->cap = nc;
    }
    a->vals[a->nv++] = *v;
    return 0;
}

/* Feeds value `v` (owned; consumed) to accumulator state `a`. */
static int acc_update(int op, struct accstate *a, bson_value_t *v, struct cairn_error *err)
{
    int rv = 0;
    bool keep = false;
    bool nullish = v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
                   v->value_type == BSON_TYPE_UNDEFINED;
    switch (op) {
        case ACC_SUM:
        case ACC_AVG:
            if (qry_is_number(v->value_type)) {
                rv = qry_numsum_add(&a->sum, v, err);
                a->cnt++;
            }
            break;
        case ACC_MIN:
        case ACC_MAX:
            if (!nullish) {
                int c = a->has ? qry_cmp(v, &a->v) : 0;
                if (!a->has || (op == ACC_MIN ? c < 0 : c > 0)) {
                    if (a->has) {
                        bson_value_destroy(&a->v);
                    }
                    a->v = *v;
                    a->has = true;
                    keep = true;
                }
            }
            break;
        case ACC_FIRST:
            if (!a->has) {
                a->v = *v;
                a->has = true;
                keep = true;
            }
            break;
        case ACC_LAST:
            if (a->v.value_type != BSON_TYPE_EOD) {
                bson_value_destroy(&a->v);
            }
            a->v = *v;
            a->has = true;
            keep = true;
            break;
        case ACC_ADDTOSET:
            if (v->value_type != BSON_TYPE_EOD) {
                for (size_t i = 0; i < a->nv; i++) {
                    if (qry_cmp(&a->vals[i], v) == 0) {
                        goto done;
                    }
                }
                keep = true;
                rv = vals_push(a, v, err);
            }
            break;
        case ACC_PUSH:
            if (v->value_type != BSON_TYPE_EOD) {
                keep = true;
                rv = vals_push(a, v, err);
            }
            break;
        default: /* ACC_COUNT */
        {
            bson_value_t one = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
            rv = qry_numsum_add(&a->sum, &one, err);
            break;
        }
    }
done:
    if (!keep && v->value_type != BSON_TYPE_EOD) {
        bson_value_destroy(v);
    }
    return rv;
}

static int group_add(const struct stage *s,
                     struct gtab *t,
                     const bson_t *doc,
                     struct cairn_error *err)
{
    bson_value_t key;
    struct grp *g = NULL;
    int rv = qry_expr_eval(s->expr, doc, &key, err);
    if (rv) {
        return rv;
    }
    if (key.value_type == BSON_TYPE_EOD) {
        key.value_type = BSON_TYPE_NULL;
    }
    rv = gtab_get(t, &key, s->nacc, &g, err);
    for (size_t i = 0; !rv && i < s->nacc; i++) {
        bson_value_t v = {.value_type = BSON_TYPE_EOD};
        if (s->accs[i].expr) {
            rv = qry_expr_eval(s->accs[i].expr, doc, &v, err);
        }
        if (!rv) {
            if (s->accs[i].op == ACC_PUSH || s->accs[i].op == ACC_ADDTOSET) {
                t->bytes += value_bytes(&v);
            }
            rv = acc_update(s->accs[i].op, &g->st[i], &v, err);
        }
    }
    if (!rv && t->bytes > STAGE_MEM_LIMIT) {
        rv = cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                               "Exceeded memory limit for $group, but didn't allow external "
                               "sort. Pass allowDiskUse:true to opt in.");
    }
    return rv;
}

static void append_vals(bson_t *out, const char *name, const struct accstate *a)
{
    bson_t arr;
    bson_append_array_begin(out, name, -1, &arr);
    for (size_t i = 0; i < a->nv; i++) {
        char buf[16];
        const char *key;
        size_t kl = bson_uint32_to_string((uint32_t)i, &key, buf, sizeof buf);
        bson_append_value(&arr, key, (int)kl, &a->vals[i]);
    }
    bson_append_array_end(out, &arr);
}

static void group_output(const struct stage *s, const struct grp *g, bson_t *out)
{
    bson_append_value(out, "_id", 3, &g->key);
    for (size_t i = 0; i < s->nacc; i++) {
        const struct accstate *a = &g->st[i];
        const char *name = s->accs[i].name;
        bson_value_t v;
        switch (s->accs[i].op) {
            case ACC_SUM:
            case ACC_COUNT:
                qry_numsum_value(&a->sum, &v);
                bson_append_value(out, name, -1, &v);
                break;
            case ACC_AVG:
                if (a->cnt == 0) {
                    bson_append_null(out, name, -1);
                } else {
                    bson_append_double(out, name, -1, qry_numsum_double(&a->sum) / (double)a->cnt);
                }
                break;
            case ACC_PUSH:
            case ACC_ADDTOSET:
                append_vals(out, name, a);
                break;
            default:
                if (a->v.value_type == BSON_TYPE_EOD) {
                    bson_append_null(out, name, -1);
                } else {
                    bson_append_value(out, name, -1, &a->v);
                }
                break;
        }
    }
}

/* ---- execution ---------------------------------------------------------------- */

struct rstage
{
    int64_t seen;
    size_t bytes; /* $sort: memory held */
    bson_t **docs;
    size_t n, cap;
    struct gtab tab;
};

struct run
{
    const struct qry_pipeline *p;
    struct rstage *rs;
    bson_t **out;
    size_t nout, cap;
    size_t out_bytes; /* held by out, against p->result_limit */
    bool stop;
};

static int keep_doc(bson_t ***arr,
                    size_t *n,
                    size_t *cap,
                    const bson_t *doc,
                    struct cairn_error *err)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        bson_t **na = realloc(*arr, nc * sizeof *na);
        if (!na) {
            return oom(err);
        }
        *arr = na;
        *cap = nc;
    }
    bson_t *c = bson_copy(doc);
    if (!c) {
        return oom(err);
    }
    (*arr)[(*n)++] = c;
    return 0;
}

/* Finds the value at path `parts` following embedded documents only. */
static bool find_doc_path(const bson_t *doc, char *const *parts, size_t n, bson_iter_t *out)
{
    bson_t cur = *doc;
    bson_t sub;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, &cur, parts[i])) {
            return false;
        }
        if (i + 1 == n) {
            *out = it;
            return true;
        }
        if (!iter_doc(&it, &sub)) {
            return false;
        }
        cur = sub;
    }
    return false;
}

/* Copies `src` to `dst`, setting path `parts` to `v` (NULL: removing it).
 * Intermediate non-documents are replaced by documents when setting. */
static void doc_set(const bson_t *src,
                    char *const *parts,
                    size_t n,
                    const bson_value_t *v,
                    bson_t *dst)
{
    bson_iter_t it;
    bool found = false;
    bson_t child, sub, empty = BSON_INITIALIZER;
    if (src && bson_iter_init(&it, src)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (found || strcmp(k, parts[0]) != 0) {
                bson_append_iter(dst, NULL, 0, &it);
                continue;
            }
            found = true;
            if (n == 1) {
                if (v) {
                    bson_append_value(dst, k, -1, v);
                }
                continue;
            }
            bool is_doc = iter_doc(&it, &sub);
            if (!is_doc && !v) {
                bson_append_iter(dst, NULL, 0, &it);
                continue;
            }
            bson_append_document_begin(dst, k, -1, &child);
            doc_set(is_doc ? &sub : &empty, parts + 1, n - 1, v, &child);
            bson_append_document_end(dst, &child);
        }
    }
    if (!found && v) {
        if (n == 1) {
            bson_append_value(dst, parts[0], -1, v);
        } else {
            bson_append_document_begin(dst, parts[0], -1, &child);
            doc_set(&empty, parts + 1, n - 1, v, &child);
            bson_append_document_end(dst, &child);
        }
    }
}

static int push(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err);

/* Emits `doc` with the unwound field set to `v` (NULL: removed) and the
 * index field (if any) set to `idx` (NULL: null). */
static int unwind_emit(struct run *r,
                       size_t i,
                       const bson_t *doc,
                       const bson_value_t *v,
                       bool set_field,
                       const int64_t *idx,
                       struct cairn_error *err)
{
    const struct stage *s = &r->p->st[i];
    bson_t a = BSON_INITIALIZER, b = BSON_INITIALIZER;
    const bson_t *cur = doc;
    int rv;
    if (set_field) {
        doc_set(doc, s->upath, s->nupath, v, &a);
        cur = &a;
    }
    if (s->nuidx) {
        bson_value_t iv = {.value_type = BSON_TYPE_NULL};
        if (idx) {
            iv.value_type = BSON_TYPE_INT64;
            iv.value.v_int64 = *idx;
        }
        doc_set(cur, s->uidx, s->nuidx, &iv, &b);
        cur = &b;
    }
    rv = push(r, i + 1, cur, err);
    bson_destroy(&a);
    bson_destroy(&b);
    return rv;
}

static int do_unwind(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err)
{
    const struct stage *s = &r->p->st[i];
    bson_iter_t it;
    bson_t arr;
    if (!find_doc_path(doc, s->upath, s->nupath, &it) || BSON_ITER_HOLDS_NULL(&it) ||
        bson_iter_type(&it) == BSON_TYPE_UNDEFINED) {
        return s->preserve ? unwind_emit(r, i, doc, NULL, false, NULL, err) : 0;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return unwind_emit(r, i, doc, NULL, false, NULL, err);
    }
    if (doc_value_from_iter(&it, &arr) != 0 || bson_empty(&arr)) {
        return s->preserve ? unwind_emit(r, i, doc, NULL, true, NULL, err) : 0;
    }
    bson_iter_t ai;
    int64_t k = 0;
    int rv = 0;
    bson_iter_init(&ai, &arr);
    while (!rv && !r->stop && bson_iter_next(&ai)) {
        rv = unwind_emit(r, i, doc, bson_iter_value(&ai), true, &k, err);
        k++;
    }
    return rv;
}

static int do_replace(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err)
{
    bson_value_t v;
    bson_t nd;
    int rv = qry_expr_eval(r->p->st[i].expr, doc, &v, err);
    if (rv) {
        return rv;
    }
    if (v.value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&nd, v.value.v_doc.data, v.value.v_doc.data_len)) {
        char *json = bson_as_relaxed_extended_json(doc, NULL);
        rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootNotObject,
                               "'newRoot' expression must evaluate to an object, but resulting "
                               "value was of type: %s. Input document: %s",
                               qry_type_name(v.value_type), json ? json : "{...}");
        bson_free(json);
    } else {
        rv = push(r, i + 1, &nd, err);
    }
    if (v.value_type != BSON_TYPE_EOD) {
        bson_value_destroy(&v);
    }
    return rv;
}

static int push(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err)
{
    if (doc->len > QRY_MAX_VALUE_BYTES) { /* a stage built too large a document */
        return qry_too_large(err);
    }
    if (i == r->p->n) {
        r->out_bytes += doc->len + sizeof(bson_t) + sizeof(bson_t *);
        if (r->out_bytes > r->p->result_limit) {
            return cairn_error_mongo(err, CAIRN_ETOOBIG,
                                     MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                                     "Aggregation results exceeded the memory limit of %zu bytes "
                                     "(Cairn holds a pipeline's output in memory); narrow the "
                                     "pipeline or add $limit",
                                     r->p->result_limit);
        }
        return keep_doc(&r->out, &r->nout, &r->cap, doc, err);
    }
    const struct stage *s = &r->p->st[i];
    struct rstage *rs = &r->rs[i];
    int rv;
    switch (s->type) {
        case ST_MATCH:
            return qry_matcher_match(s->matcher, doc) ? push(r, i + 1, doc, err) : 0;
        case ST_SKIP:
            if (rs->seen < s->n) {
                rs->seen++;
                return 0;
            }
            return push(r, i + 1, doc, err);
        case ST_LIMIT:
            if (rs->seen >= s->n) {
                return 0;
            }
            rs->seen++;
            rv = push(r, i + 1, doc, err);
            if (rs->seen >= s->n && s->stream_prefix) {
                r->stop = true;
            }
            return rv;
        case ST_PROJECT: {
            bson_t o = BSON_INITIALIZER;
            rv = papply_doc(s->proj, s->pmode, doc, doc, &o, err);
            if (!rv) {
                rv = push(r, i + 1, &o, err);
            }
            bson_destroy(&o);
            return rv;
        }
        case ST_REPLACE:
            return do_replace(r, i, doc, err);
        case ST_UNWIND:
            return do_unwind(r, i, doc, err);
        case ST_GROUP:
            return group_add(s, &rs->tab, doc, err);
        case ST_SORT:
            rs->bytes += doc->len + sizeof(bson_t) + sizeof(bson_t *);
            if (rs->bytes > STAGE_MEM_LIMIT) {
                return cairn_error_mongo(err, CAIRN_ETOOBIG,
                                         MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                                         "Sort exceeded memory limit of %zu bytes, but did not opt "
                                         "in to external sorting.",
                                         STAGE_MEM_LIMIT);
            }
            return keep_doc(&rs->docs, &rs->n, &rs->cap, doc, err);
        default: /* ST_COUNT */
            rs->seen++;
            return 0;
    }
}

static void merge_sort(bson_t **a, bson_t **tmp, size_t n, const struct qry_sort *s)
{
    if (n < 2) {
        return;
    }
    size_t m = n / 2, i = 0, j = m, k = 0;
    merge_sort(a, tmp, m, s);
    merge_sort(a + m, tmp, n - m, s);
    if (qry_sort_cmp(s, a[m - 1], a[m]) <= 0) {
        return; /* already in order */
    }
    while (i < m && j < n) {
        tmp[k++] = qry_sort_cmp(s, a[j], a[i]) < 0 ? a[j++] : a[i++];
    }
    while (i < m) {
        tmp[k++] = a[i++];
    }
    while (j < n) {
        tmp[k++] = a[j++];
    }
    memcpy(a, tmp, n * sizeof *a);
}

static void free_docs(bson_t **docs, size_t from, size_t n)
{
    for (size_t k = from; k < n; k++) {
        bson_destroy(docs[k]);
    }
    free(docs);
}

static int flush(struct run *r, size_t i, struct cairn_error *err)
{
    const struct stage *s = &r->p->st[i];
    struct rstage *rs = &r->rs[i];
    int rv = 0;
    switch (s->type) {
        case ST_GROUP:
            for (size_t k = 0; !rv && k < rs->tab.n; k++) {
                bson_t o = BSON_INITIALIZER;
                group_output(s, &rs->tab.g[k], &o);
                rv = push(r, i + 1, &o, err);
                bson_destroy(&o);
            }
            gtab_free(&rs->tab, s->nacc);
            return rv;
        case ST_SORT: {
            size_t k = 0;
            if (rs->n > 1) {
                bson_t **tmp = malloc(rs->n * sizeof *tmp);
                if (!tmp) {
                    return oom(err);
                }
                merge_sort(rs->docs, tmp, rs->n, s->sort);
                free(tmp);
            }
            for (; !rv && k < rs->n; k++) {
                rv = push(r, i + 1, rs->docs[k], err);
                bson_destroy(rs->docs[k]);
            }
            free_docs(rs->docs, k, rs->n);
            rs->docs = NULL;
            rs->n = rs->cap = 0;
            return rv;
        }
        case ST_COUNT:
            if (rs->seen > 0) {
                bson_t o = BSON_INITIALIZER;
                if (rs->seen <= INT32_MAX) {
                    bson_append_int32(&o, s->name, -1, (int32_t)rs->seen);
                } else {
                    bson_append_int64(&o, s->name, -1, rs->seen);
                }
                rv = push(r, i + 1, &o, err);
                bson_destroy(&o);
            }
            return rv;
        default:
            return 0;
    }
}

int qry_pipeline_run(const struct qry_pipeline *p,
                     qry_source_fn next,
                     void *arg,
                     bson_t ***out,
                     size_t *n_out,
                     struct cairn_error *err)
{
    struct run r;
    int rv = 0;
    memset(&r, 0, sizeof r);
    *out = NULL;
    *n_out = 0;
    r.p = p;
    r.rs = calloc(p->n ? p->n : 1, sizeof *r.rs);
    if (!r.rs) {
        return oom(err);
    }
    while (!r.stop) {
        bson_t doc;
        int got = next(arg, &doc, err);
        if (got < 0) {
            rv = err && err->code ? err->code : CAIRN_EIO;
            break;
        }
        if (got == 0) {
            break;
        }
        rv = push(&r, 0, &doc, err);
        if (rv) {
            break;
        }
    }
    for (size_t i = 0; !rv && i < p->n; i++) {
        rv = flush(&r, i, err);
    }
    for (size_t i = 0; i < p->n; i++) {
        gtab_free(&r.rs[i].tab, p->st[i].nacc);
        free_docs(r.rs[i].docs, 0, r.rs[i].n);
    }
    free(r.rs);
    if (rv) {
        free_docs(r.out, 0, r.nout);
        return rv;
    }
    *out = r.out;
    *n_out = r.nout;
    return 0;
}
