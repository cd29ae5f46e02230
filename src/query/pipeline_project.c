/*
 * pipeline_project.c: the projection stages of the aggregation pipeline.
 *
 * $project/$addFields/$unset share one representation: a tree of `pnode`s
 * (one per path component) applied in one of three modes: inclusion,
 * exclusion or "add" (computed fields merged into the input).
 *
 * This file parses those stages into the tree and applies it to a
 * document. Children are found by name through a hash index (nameidx.c),
 * so a projection of n fields over a document of m fields is O(n + m).
 */
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/nameidx.h"
#include "query/pipeline_int.h"
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
    size_t n, cap;
    struct qry_nameidx idx; /* kids by name */
};

void pl_pnode_free(struct pnode *nd)
{
    if (!nd) {
        return;
    }
    for (size_t i = 0; i < nd->n; i++) {
        pl_pnode_free(nd->kids[i]);
    }
    free(nd->kids);
    qry_nameidx_fini(&nd->idx);
    free(nd->name);
    qry_expr_free(nd->expr);
    free(nd);
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
    long i = qry_nameidx_find(&nd->idx, name, strlen(name));
    if (i < 0) {
        return NULL;
    }
    if (idx) {
        *idx = (size_t)i;
    }
    return nd->kids[i];
}

static int pnode_add(struct pnode *parent, struct pnode *kid, bool front, struct cairn_error *err)
{
    if (parent->n == parent->cap) {
        size_t nc = parent->cap ? parent->cap * 2 : 4;
        struct pnode **nk = realloc(parent->kids, nc * sizeof *nk);
        if (!nk) {
            pl_pnode_free(kid);
            return pl_oom(err);
        }
        parent->kids = nk;
        parent->cap = nc;
    }
    struct pnode **nk = parent->kids;
    if (front) {
        memmove(nk + 1, nk, parent->n * sizeof *nk);
        nk[0] = kid;
    } else {
        nk[parent->n] = kid;
    }
    parent->n++;
    if (front) { /* every position moved: index anew */
        qry_nameidx_fini(&parent->idx);
        for (size_t i = 0; i < parent->n; i++) {
            if (qry_nameidx_push(&parent->idx, nk[i]->name) != 0) {
                return pl_oom(err);
            }
        }
        return 0;
    }
    if (qry_nameidx_push(&parent->idx, kid->name) != 0) {
        return pl_oom(err);
    }
    return 0;
}

int pl_check_path(const char *path, struct cairn_error *err)
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
    int rv = pl_check_path(path, err);
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
                return kid ? rv : pl_oom(err);
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
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && pl_doc_value_from_iter(&it, &sub) == 0) {
            bson_append_document_begin(out, key, (int)kl, &child);
            rv = pl_papply_doc(nd, mode, &sub, root, &child, err);
            bson_append_document_end(out, &child);
        } else if (BSON_ITER_HOLDS_ARRAY(&it) && pl_doc_value_from_iter(&it, &sub) == 0) {
            bson_append_array_begin(out, key, (int)kl, &child);
            rv = papply_array(nd, mode, &sub, root, &child, err);
            bson_append_array_end(out, &child);
        } else if (mode == PM_EXCL) {
            bson_append_iter(out, key, (int)kl, &it);
        } else if (mode == PM_ADD || nd->has_expr) {
            bson_append_document_begin(out, key, (int)kl, &child);
            rv = pl_papply_doc(nd, mode, NULL, root, &child, err);
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
    if (BSON_ITER_HOLDS_DOCUMENT(it) && pl_doc_value_from_iter(it, &sub) == 0) {
        bson_append_document_begin(out, key, -1, &child);
        rv = pl_papply_doc(kid, mode, &sub, root, &child, err);
        bson_append_document_end(out, &child);
    } else if (BSON_ITER_HOLDS_ARRAY(it) && pl_doc_value_from_iter(it, &sub) == 0) {
        bson_append_array_begin(out, key, -1, &child);
        rv = papply_array(kid, mode, &sub, root, &child, err);
        bson_append_array_end(out, &child);
    } else if (mode == PM_EXCL) {
        bson_append_iter(out, key, -1, it);
    } else if (mode == PM_ADD || kid->has_expr) {
        bson_append_document_begin(out, key, -1, &child);
        rv = pl_papply_doc(kid, mode, NULL, root, &child, err);
        bson_append_document_end(out, &child);
    }
    return rv;
}

int pl_papply_doc(const struct pnode *nd,
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
            return pl_oom(err);
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
            rv = pl_papply_doc(kid, mode, NULL, root, &child, err);
            bson_append_document_end(out, &child);
        }
    }
    if (done != small) {
        free(done);
    }
    return rv;
}

/* ---- parsing the stages -------------------------------------------------- */

int pl_parse_project(struct stage *s, const bson_iter_t *it, bool add, struct cairn_error *err)
{
    bson_t spec;
    struct pparse ps = {NULL, add ? PM_ADD : -1, add ? "$addFields" : "$project"};
    int rv;
    if (!pl_iter_doc(it, &spec)) {
        if (add) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AddFieldsNotObject,
                                     "$addFields specification stage must be an object, got %s",
                                     pl_iter_type_name(it));
        }
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ProjectNotObject,
                                 "$project specification must be an object");
    }
    s->type = ST_PROJECT;
    s->proj = ps.root = pnode_new("", 0, PN_SUB);
    if (!ps.root) {
        return pl_oom(err);
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
            return pl_oom(err);
        }
        rv = pnode_add(ps.root, id, true, err);
        if (rv) {
            return rv;
        }
    }
    s->pmode = ps.mode;
    return 0;
}

int pl_parse_unset(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    int rv;
    s->type = ST_PROJECT;
    s->pmode = PM_EXCL;
    s->proj = pnode_new("", 0, PN_SUB);
    if (!s->proj) {
        return pl_oom(err);
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
