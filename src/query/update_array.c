/*
 * update_array.c: the array operators $push (with $each, $position, $sort
 * and $slice), $addToSet, $pop, $pull and $pullAll. Each works on value
 * views of the current array's elements and replaces the array with the
 * rebuilt one. $addToSet and $pullAll look values up in a hash set
 * (valueset.c), so n elements cost O(n), not O(n^2).
 */
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"
#include "query/update_int.h"
#include "query/valueset.h"

struct vlist
{
    bson_value_t *v;
    size_t n;
    size_t cap;
};

static int vl_push(struct vlist *l, const bson_value_t *v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        bson_value_t *n = realloc(l->v, cap * sizeof *n);
        if (n == NULL) {
            return CAIRN_ENOMEM;
        }
        l->v = n;
        l->cap = cap;
    }
    l->v[l->n++] = *v;
    return 0;
}

static int vl_from_array(struct vlist *l, const bson_value_t *arr)
{
    bson_t d;
    bson_iter_t it;

    if (!bson_init_static(&d, arr->value.v_doc.data, arr->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        return CAIRN_EBADDOC;
    }
    while (bson_iter_next(&it)) {
        int rv = vl_push(l, bson_iter_value(&it));
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Replaces the leaf with an array made of `l`'s values. */
static int put_array(struct apply_ctx *c,
                     struct node *parent,
                     long idx,
                     const char *name,
                     const struct vlist *l)
{
    bson_t arr;
    bson_value_t v;
    char ibuf[16];
    int rv;

    bson_init(&arr);
    for (size_t i = 0; i < l->n; i++) {
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, ibuf, sizeof ibuf);
        bson_append_value(&arr, k, -1, &l->v[i]);
    }
    v.value_type = BSON_TYPE_ARRAY;
    v.value.v_doc.data = (uint8_t *)bson_get_data(&arr);
    v.value.v_doc.data_len = arr.len;
    rv = upd_put_value(c, parent, idx, name, &v);
    bson_destroy(&arr);
    return rv;
}

struct push_sort_ctx
{
    const struct op *o;
};

static int push_sort_cmp(const void *a, const void *b, void *ctx)
{
    const bson_value_t *x = a, *y = b;
    const struct op *o = ((struct push_sort_ctx *)ctx)->o;

    if (o->sort == PSORT_WHOLE) {
        return o->sort_dir * qry_cmp(x, y);
    }
    if (x->value_type == BSON_TYPE_DOCUMENT && y->value_type == BSON_TYPE_DOCUMENT) {
        bson_t dx, dy;
        if (bson_init_static(&dx, x->value.v_doc.data, x->value.v_doc.data_len) &&
            bson_init_static(&dy, y->value.v_doc.data, y->value.v_doc.data_len)) {
            return qry_sort_cmp(o->sort_spec, &dx, &dy);
        }
    }
    return qry_cmp(x, y);
}

static bool pull_matches(const struct op *o, const bson_value_t *elem)
{
    switch (o->pull) {
        case PULL_EQ:
            return qry_cmp(elem, &o->arg) == 0;
        case PULL_VALUE:
        case PULL_DOC:
        default:
            return qry_matcher_match_value(o->matcher, elem);
    }
}

int upd_apply_array(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    struct vlist cur = {0}, add = {0}, res = {0};
    struct qry_valueset set; /* views: $addToSet's present values, $pullAll's */
    bson_t tmp;
    bson_value_t view;
    bool have = idx >= 0;
    int rv = 0;
    const char *name = upd_leaf_name(&o->path);

    bson_init(&tmp);
    qry_valueset_init(&set, false);
    if (have) {
        struct node *nd = parent->kids[idx];
        if (nd->val.value_type != BSON_TYPE_ARRAY) {
            const char *tn = qry_type_name(nd->val.value_type);
            bson_destroy(&tmp);
            switch (o->kind) {
                case OP_POP:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                             "Path '%s' contains an element of non-array type '%s'",
                                             o->path.full, tn);
                case OP_PULL:
                case OP_PULLALL:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "Cannot apply %s to a non-array value", o->opname);
                case OP_ADDTOSET:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "Cannot apply $addToSet to non-array field. Field "
                                             "named '%s' has non-array type %s",
                                             nd->key, tn);
                default:
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "The field '%s' must be an array but is of type %s "
                                             "in document %s",
                                             o->path.full, tn, c->id);
            }
        }
        bson_destroy(&tmp);
        upd_node_view(nd, &tmp, &view);
        rv = vl_from_array(&cur, &view);
        if (rv != 0) {
            goto out;
        }
    } else if (o->kind == OP_POP || o->kind == OP_PULL || o->kind == OP_PULLALL) {
        goto out; /* nothing to remove from */
    }

    switch (o->kind) {
        case OP_PUSH: {
            size_t at;
            if (o->has_each) {
                rv = vl_from_array(&add, &o->each);
            } else {
                rv = vl_push(&add, &o->arg);
            }
            if (rv != 0) {
                goto out;
            }
            at = cur.n;
            if (o->has_pos) {
                if (o->pos >= 0) {
                    at = (uint64_t)o->pos < cur.n ? (size_t)o->pos : cur.n;
                } else {
                    uint64_t back = (uint64_t)(-(o->pos + 1)) + 1;
                    at = back >= cur.n ? 0 : cur.n - (size_t)back;
                }
            }
            for (size_t i = 0; i < at && rv == 0; i++) {
                rv = vl_push(&res, &cur.v[i]);
            }
            for (size_t i = 0; i < add.n && rv == 0; i++) {
                rv = vl_push(&res, &add.v[i]);
            }
            for (size_t i = at; i < cur.n && rv == 0; i++) {
                rv = vl_push(&res, &cur.v[i]);
            }
            if (rv != 0) {
                goto out;
            }
            if (o->sort != PSORT_NONE) {
                struct push_sort_ctx sc = {o};
                rv = qry_stable_sort(res.v, res.n, sizeof *res.v, push_sort_cmp, &sc);
                if (rv != 0) {
                    goto out;
                }
            }
            if (o->has_slice) {
                if (o->slice >= 0) {
                    if ((uint64_t)o->slice < res.n) {
                        res.n = (size_t)o->slice;
                    }
                } else {
                    uint64_t keep = (uint64_t)(-(o->slice + 1)) + 1;
                    if (keep < res.n) {
                        size_t drop = res.n - (size_t)keep;
                        memmove(res.v, res.v + drop, (size_t)keep * sizeof *res.v);
                        res.n = (size_t)keep;
                    }
                }
            }
            break;
        }
        case OP_ADDTOSET:
            if (o->has_each) {
                rv = vl_from_array(&add, &o->each);
            } else {
                rv = vl_push(&add, &o->arg);
            }
            for (size_t i = 0; i < cur.n && rv == 0; i++) {
                rv = vl_push(&res, &cur.v[i]);
                if (rv == 0) {
                    rv = qry_valueset_add(&set, &cur.v[i], NULL);
                }
            }
            for (size_t i = 0; i < add.n && rv == 0; i++) {
                bool added = false;
                rv = qry_valueset_add(&set, &add.v[i], &added);
                if (rv == 0 && added) {
                    rv = vl_push(&res, &add.v[i]);
                }
            }
            if (rv != 0) {
                goto out;
            }
            break;
        case OP_POP:
            if (cur.n == 0) {
                goto out;
            }
            {
                size_t from = o->pop_dir < 0 ? 1 : 0;
                size_t to = o->pop_dir < 0 ? cur.n : cur.n - 1;
                for (size_t i = from; i < to && rv == 0; i++) {
                    rv = vl_push(&res, &cur.v[i]);
                }
            }
            break;
        case OP_PULL:
        case OP_PULLALL:
            if (o->kind == OP_PULLALL) {
                rv = vl_from_array(&add, &o->arg);
                for (size_t i = 0; i < add.n && rv == 0; i++) {
                    rv = qry_valueset_add(&set, &add.v[i], NULL);
                }
            }
            for (size_t i = 0; i < cur.n && rv == 0; i++) {
                bool drop = o->kind == OP_PULL ? pull_matches(o, &cur.v[i])
                                               : qry_valueset_has(&set, &cur.v[i]);
                if (!drop) {
                    rv = vl_push(&res, &cur.v[i]);
                }
            }
            if (rv == 0 && res.n == cur.n) {
                goto out; /* nothing pulled: keep the array as it is */
            }
            break;
        default:
            break;
    }
    if (rv == 0) {
        rv = put_array(c, parent, idx, name, &res);
    }
out:
    if (rv != 0 && c->err != NULL && c->err->code == 0) {
        cairn_error_setf(c->err, rv, "out of memory");
    }
    bson_destroy(&tmp);
    free(cur.v);
    free(add.v);
    free(res.v);
    qry_valueset_fini(&set);
    return rv;
}
