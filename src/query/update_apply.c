/*
 * update_apply.c: applying one compiled operation to the document tree:
 * walking its path (creating and backfilling on the way when the operator
 * writes), putting values at the leaf, and dispatching on the operator.
 * $set, $setOnInsert, $unset and $currentDate are done here; the
 * arithmetic, comparison and $rename operators are in update_fields.c and
 * the array operators in update_array.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/update_int.h"

/* Arrays are not backfilled to this many elements or more (mongod's limit). */
#define MAX_BACKFILL 1500000

/* Walks `p` to the parent of its last component. With `create`, missing
 * components become empty documents (and array indexes are backfilled with
 * nulls); without it, a missing or non-traversable component returns
 * WALK_MISSING. With `no_arrays`, meeting an array returns WALK_ARRAY and
 * *parent is that array. On success *parent is a container and *idx the
 * leaf's index in it, or -1 when the leaf is absent. */
int upd_walk(struct apply_ctx *c,
             struct node *root,
             const struct path *p,
             bool create,
             bool no_arrays,
             struct node **parent,
             long *idx)
{
    struct node *cur = root;
    char f[220];

    for (size_t i = 0;; i++) {
        const char *comp = p->parts[i];
        long at;
        bool arr = cur->val.value_type == BSON_TYPE_ARRAY;

        if (arr && no_arrays) {
            *parent = cur;
            return WALK_ARRAY;
        }
        if (arr) {
            at = upd_parse_index(comp);
            if (at < 0) {
                if (!create) {
                    return WALK_MISSING;
                }
                bson_t tmp;
                bson_value_t v;
                upd_node_view(cur, &tmp, &v);
                upd_fmt_field(f, sizeof f, cur->key, &v);
                bson_destroy(&tmp);
                return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_PathNotViable,
                                         "Cannot create field '%s' in element {%s}", comp, f);
            }
            if ((size_t)at >= cur->n) {
                at = -1;
            }
        } else {
            at = upd_kid_find(cur, comp);
        }
        if (i + 1 == p->n) {
            *parent = cur;
            *idx = at;
            return 0;
        }
        if (at < 0) {
            struct node *nd;
            int rv;
            if (!create) {
                return WALK_MISSING;
            }
            if (arr) {
                long want = upd_parse_index(comp);
                if (want >= MAX_BACKFILL) {
                    return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                             "can't backfill array to larger than %d elements",
                                             MAX_BACKFILL);
                }
                while ((long)cur->n < want) {
                    char ib[24];
                    snprintf(ib, sizeof ib, "%zu", cur->n);
                    nd = upd_node_new(ib);
                    if (nd == NULL || upd_kid_insert(cur, cur->n, nd) != 0) {
                        upd_node_free(nd);
                        return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
                    }
                }
            }
            nd = upd_node_new(comp);
            if (nd == NULL) {
                return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
            }
            nd->val.value_type = BSON_TYPE_DOCUMENT;
            rv = upd_kid_insert(cur, cur->n, nd);
            if (rv != 0) {
                upd_node_free(nd);
                return cairn_error_setf(c->err, rv, "out of memory");
            }
            cur = nd;
            continue;
        }
        if (!upd_is_container(cur->kids[at])) {
            if (!create) {
                return WALK_MISSING;
            }
            upd_fmt_field(f, sizeof f, cur->kids[at]->key, &cur->kids[at]->val);
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_PathNotViable,
                                     "Cannot create field '%s' in element {%s}", p->parts[i + 1],
                                     f);
        }
        cur = cur->kids[at];
    }
}

/* Puts `nd` at the leaf: replaces kids[idx] when idx >= 0, else appends
 * (documents) or backfills and appends (arrays). Takes ownership. */
int upd_put_leaf(struct apply_ctx *c,
                 struct node *parent,
                 long idx,
                 const char *name,
                 struct node *nd)
{
    int rv;

    if (idx >= 0) {
        rv = upd_node_set_key(nd, parent->kids[idx]->key);
        if (rv != 0) {
            upd_node_free(nd);
            return cairn_error_setf(c->err, rv, "out of memory");
        }
        upd_node_free(parent->kids[idx]);
        parent->kids[idx] = nd;
        return 0;
    }
    if (parent->val.value_type == BSON_TYPE_ARRAY) {
        long want = upd_parse_index(name);
        if (want >= MAX_BACKFILL) {
            upd_node_free(nd);
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "can't backfill array to larger than %d elements",
                                     MAX_BACKFILL);
        }
        while ((long)parent->n < want) {
            char ib[24];
            struct node *pad;
            snprintf(ib, sizeof ib, "%zu", parent->n);
            pad = upd_node_new(ib);
            if (pad == NULL || upd_kid_insert(parent, parent->n, pad) != 0) {
                upd_node_free(pad);
                upd_node_free(nd);
                return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
            }
        }
    }
    rv = upd_node_set_key(nd, name);
    if (rv == 0) {
        rv = upd_kid_insert(parent, parent->n, nd);
    }
    if (rv != 0) {
        upd_node_free(nd);
        return cairn_error_setf(c->err, rv, "out of memory");
    }
    return 0;
}

int upd_put_value(struct apply_ctx *c,
                  struct node *parent,
                  long idx,
                  const char *name,
                  const bson_value_t *v)
{
    struct node *nd;
    int rv = upd_node_from_value(name, v, &nd);
    if (rv == CAIRN_EBADDOC) {
        return cairn_error_mongo(c->err, rv, MONGO_Overflow,
                                 "value for '%s' is invalid or nested too deeply", name);
    }
    if (rv != 0) {
        return cairn_error_setf(c->err, rv, "out of memory");
    }
    return upd_put_leaf(c, parent, idx, name, nd);
}

const char *upd_leaf_name(const struct path *p)
{
    return p->parts[p->n - 1];
}

int upd_apply_op(struct apply_ctx *c, const struct op *o, struct node *root)
{
    struct node *parent;
    long idx;
    bool create;
    int rv;

    if (o->kind == OP_RENAME) {
        return upd_apply_rename(c, o, root);
    }
    create =
        !(o->kind == OP_UNSET || o->kind == OP_PULL || o->kind == OP_PULLALL || o->kind == OP_POP);
    rv = upd_walk(c, root, &o->path, create, false, &parent, &idx);
    if (rv == WALK_MISSING) {
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    switch (o->kind) {
        case OP_SET:
        case OP_SETONINSERT:
            return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &o->arg);
        case OP_UNSET:
            if (idx < 0) {
                return 0;
            }
            if (parent->val.value_type == BSON_TYPE_ARRAY) {
                struct node *nd = upd_node_new(parent->kids[idx]->key);
                if (nd == NULL) {
                    return cairn_error_setf(c->err, CAIRN_ENOMEM, "out of memory");
                }
                upd_node_free(parent->kids[idx]);
                parent->kids[idx] = nd;
            } else {
                upd_node_free(parent->kids[idx]);
                upd_kid_remove(parent, (size_t)idx);
            }
            return 0;
        case OP_INC:
        case OP_MUL:
            return upd_apply_arith(c, o, parent, idx);
        case OP_BIT:
            return upd_apply_bit(c, o, parent, idx);
        case OP_MIN:
        case OP_MAX:
            return upd_apply_minmax(c, o, parent, idx);
        case OP_CURDATE: {
            bson_value_t v;
            if (o->timestamp) {
                v.value_type = BSON_TYPE_TIMESTAMP;
                v.value.v_timestamp.timestamp = (uint32_t)(c->now_ms / 1000);
                v.value.v_timestamp.increment = 1;
            } else {
                v.value_type = BSON_TYPE_DATE_TIME;
                v.value.v_datetime = c->now_ms;
            }
            return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &v);
        }
        default:
            return upd_apply_array(c, o, parent, idx);
    }
}
