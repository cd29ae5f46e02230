/*
 * update_positional.c: updates whose paths have positional components.
 * Each such path is expanded against the document into concrete paths
 * ("$" to the position the query matched, "$[]" to every element,
 * "$[<id>]" to the elements passing that array filter), the concrete paths
 * are checked for conflicts, and the operations are applied in path order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/update_int.h"

/* One operation on one concrete path: positional paths are expanded
 * against the document before anything is applied (no surviving op can
 * change an array another op expands: that would be a path conflict). */
struct centry
{
    const struct op *o;
    struct path p; /* concrete path; owned when `owned` */
    bool owned;
};

struct cvec
{
    struct centry *v;
    size_t n;
    size_t cap;
};

static void cvec_free(struct cvec *cv)
{
    for (size_t i = 0; i < cv->n; i++) {
        if (cv->v[i].owned) {
            upd_path_free(&cv->v[i].p);
        }
    }
    free(cv->v);
    memset(cv, 0, sizeof *cv);
}

static int cvec_push(struct cvec *cv, const struct op *o, const struct path *p, bool owned)
{
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 16;
        struct centry *n = realloc(cv->v, cap * sizeof *n);
        if (n == NULL) {
            return CAIRN_ENOMEM;
        }
        cv->v = n;
        cv->cap = cap;
    }
    cv->v[cv->n].o = o;
    cv->v[cv->n].p = *p;
    cv->v[cv->n].owned = owned;
    cv->n++;
    return 0;
}

struct expander
{
    struct apply_ctx *c;
    const struct qry_update *u;
    const struct op *o;
    long pos;
    char *buf; /* the concrete path so far */
    size_t len;
    size_t cap;
    struct cvec *out;
};

static int xp_append(struct expander *x, const char *comp)
{
    size_t need = x->len + strlen(comp) + 2;
    if (need > x->cap) {
        size_t cap = x->cap ? x->cap : 64;
        char *nb;
        while (cap < need) {
            cap *= 2;
        }
        nb = realloc(x->buf, cap);
        if (nb == NULL) {
            return cairn_error_setf(x->c->err, CAIRN_ENOMEM, "out of memory");
        }
        x->buf = nb;
        x->cap = cap;
    }
    if (x->len > 0) {
        x->buf[x->len++] = '.';
    }
    strcpy(x->buf + x->len, comp);
    x->len += strlen(comp);
    return 0;
}

/* The child of `cur` (NULL: missing) named `comp`, or NULL. */
static struct node *xp_child(struct node *cur, const char *comp)
{
    long at;

    if (cur == NULL) {
        return NULL;
    }
    if (cur->val.value_type == BSON_TYPE_DOCUMENT) {
        at = upd_kid_find(cur, comp);
        return at >= 0 ? cur->kids[at] : NULL;
    }
    if (cur->val.value_type == BSON_TYPE_ARRAY) {
        at = upd_parse_index(comp);
        return at >= 0 && (size_t)at < cur->n ? cur->kids[at] : NULL;
    }
    return NULL;
}

/* True when the array element `elem` passes the filter `af`. */
static bool af_match(const struct afilter *af, const struct node *elem)
{
    bson_t tmp, wrap;
    bson_value_t v;
    bool hit;

    upd_node_view(elem, &tmp, &v);
    bson_init(&wrap);
    hit = bson_append_value(&wrap, af->id, -1, &v) && qry_matcher_match(af->m, &wrap);
    bson_destroy(&wrap);
    bson_destroy(&tmp);
    return hit;
}

static int expand_rec(struct expander *x, struct node *cur, size_t i)
{
    const struct path *p = &x->o->path;
    const char *comp;
    char ib[24];
    size_t save = x->len;
    int rv;

    if (i == p->n) {
        struct path cp;
        rv = upd_path_split(x->buf, &cp);
        if (rv == 0 && cvec_push(x->out, x->o, &cp, true) == 0) {
            return 0;
        }
        upd_path_free(&cp);
        return rv == 0 || rv == CAIRN_ENOMEM
                   ? cairn_error_setf(x->c->err, CAIRN_ENOMEM, "out of memory")
                   : cairn_error_mongo(x->c->err, CAIRN_EINVAL, MONGO_BadValue,
                                       "invalid update path");
    }
    comp = p->parts[i];
    if (strcmp(comp, "$") == 0) {
        snprintf(ib, sizeof ib, "%ld", x->pos);
        comp = ib;
    } else if (upd_is_af_ident(comp)) {
        size_t idlen = strlen(comp) - 3;
        const struct afilter *af = idlen > 0 ? upd_af_find(&x->u->afs, comp + 2, idlen) : NULL;
        if (cur == NULL) {
            return cairn_error_mongo(x->c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "The path '%s' must exist in the document in order to apply "
                                     "array updates.",
                                     x->buf);
        }
        if (cur->val.value_type != BSON_TYPE_ARRAY) {
            char f[220];
            bson_t tmp;
            bson_value_t v;
            upd_node_view(cur, &tmp, &v);
            upd_fmt_field(f, sizeof f, cur->key, &v);
            bson_destroy(&tmp);
            return cairn_error_mongo(x->c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Cannot apply array updates to non-array element %s", f);
        }
        for (size_t k = 0; k < cur->n; k++) {
            if (af != NULL && !af_match(af, cur->kids[k])) {
                continue;
            }
            snprintf(ib, sizeof ib, "%zu", k);
            rv = xp_append(x, ib);
            if (rv == 0) {
                rv = expand_rec(x, cur->kids[k], i + 1);
            }
            x->len = save;
            x->buf[save] = '\0';
            if (rv != 0) {
                return rv;
            }
        }
        return 0;
    }
    rv = xp_append(x, comp);
    if (rv == 0) {
        rv = expand_rec(x, xp_child(cur, comp), i + 1);
    }
    x->len = save;
    x->buf[save] = '\0';
    return rv;
}

struct cref
{
    const struct path *p;   /* concrete */
    const struct path *sym; /* as written in the update */
    size_t seq;
};

static int cref_cmp(const void *a, const void *b, void *ctx)
{
    const struct cref *x = a, *y = b;
    int c = upd_path_order(x->p, y->p);
    (void)ctx;
    if (c != 0) {
        return c;
    }
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The path mongod names when merging the update nodes of two positional
 * paths fails: concrete components up to the first place their written
 * forms differ (where the nodes merge), then the written components they
 * share, concrete again where they differ; as long as the shorter one. */
static void merge_conflict_path(const struct cref *x, const struct cref *y, char *buf, size_t cap)
{
    size_t n = x->p->n < y->p->n ? x->p->n : y->p->n;
    size_t len = 0;
    bool merged = false;

    buf[0] = '\0';
    for (size_t k = 0; k < n && len < cap; k++) {
        const char *part;
        int w;
        if (k < x->sym->n && k < y->sym->n && strcmp(x->sym->parts[k], y->sym->parts[k]) == 0) {
            part = merged ? x->sym->parts[k] : x->p->parts[k];
        } else {
            part = x->p->parts[k];
            merged = true;
        }
        w = snprintf(buf + len, cap - len, "%s%s", k ? "." : "", part);
        if (w < 0) {
            break;
        }
        len += (size_t)w;
    }
}

/* Concrete paths must not be equal or prefixes of each other (mongod:
 * "Update created a conflict at ..."). */
static int check_concrete_conflicts(struct apply_ctx *c, const struct cvec *cv)
{
    struct cref *v;
    size_t n = 0;
    int rv;

    if (cv->n < 2) {
        return 0;
    }
    v = calloc(cv->n * 2, sizeof *v);
    if (v == NULL) {
        return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < cv->n; i++) {
        const struct op *o = cv->v[i].o;
        v[n].p = &cv->v[i].p;
        v[n].sym = &o->path;
        v[n].seq = n;
        n++;
        if (o->kind == OP_RENAME) {
            v[n].p = &o->to;
            v[n].sym = &o->to;
            v[n].seq = n;
            n++;
        }
    }
    rv = qry_stable_sort(v, n, sizeof *v, cref_cmp, NULL);
    if (rv != 0) {
        free(v);
        return cairn_error_setf(c->err, rv, "out of memory");
    }
    for (size_t i = 0; i + 1 < n; i++) {
        if (upd_path_is_prefix(v[i].p, v[i + 1].p)) {
            char at[512];
            merge_conflict_path(&v[i], &v[i + 1], at, sizeof at);
            rv = cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_ConflictingUpdateOperators,
                                   "Update created a conflict at '%s'", at);
            break;
        }
    }
    free(v);
    return rv;
}

static int centry_cmp(const void *a, const void *b, void *ctx)
{
    const struct centry *x = a, *y = b;
    const struct path *px = x->o->kind == OP_RENAME ? &x->o->to : &x->p;
    const struct path *py = y->o->kind == OP_RENAME ? &y->o->to : &y->p;
    (void)ctx;
    return upd_path_order(px, py);
}

/* Applies an update with positional paths: expands them (the `$` to
 * `match_pos`, `$[]` and `$[<id>]` to the matching elements), checks the
 * concrete paths for conflicts and applies the operations in path order. */
int upd_apply_dynamic(const struct qry_update *u,
                      struct apply_ctx *c,
                      struct node *root,
                      bool inserting,
                      long match_pos)
{
    struct cvec cv = {0};
    struct expander x;
    int rv = 0;

    memset(&x, 0, sizeof x);
    x.c = c;
    x.u = u;
    x.pos = match_pos;
    x.out = &cv;
    for (size_t i = 0; i < u->n_ops && rv == 0; i++) {
        const struct op *o = &u->ops[i];
        if (!o->dynamic) {
            rv = cvec_push(&cv, o, &o->path, false);
            if (rv != 0) {
                rv = cairn_error_setf(c->err, rv, "out of memory");
            }
            continue;
        }
        if (o->dollar && match_pos < 0) {
            rv = cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                   "The positional operator did not find the match needed from "
                                   "the query.");
            break;
        }
        x.o = o;
        x.len = 0;
        if (x.buf != NULL) {
            x.buf[0] = '\0';
        }
        rv = expand_rec(&x, root, 0);
    }
    free(x.buf);
    if (rv == 0) {
        rv = check_concrete_conflicts(c, &cv);
    }
    if (rv == 0 && cv.n > 1) {
        rv = qry_stable_sort(cv.v, cv.n, sizeof *cv.v, centry_cmp, NULL);
        if (rv != 0) {
            rv = cairn_error_setf(c->err, rv, "out of memory");
        }
    }
    for (size_t i = 0; i < cv.n && rv == 0; i++) {
        struct op tmp = *cv.v[i].o;
        if (tmp.kind == OP_SETONINSERT && !inserting) {
            continue;
        }
        tmp.path = cv.v[i].p;
        rv = upd_apply_op(c, &tmp, root);
    }
    cvec_free(&cv);
    return rv;
}
