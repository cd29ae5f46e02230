/*
 * update_fields.c: the field operators that read the current value or move
 * it: $inc and $mul (mongod's numeric promotion and overflow rules), $bit
 * (integers only; int64 if either side is), $min and $max (BSON order), and
 * $rename.
 */
#include <stdint.h>

#include "query/query.h"
#include "query/query_int.h"
#include "query/update_int.h"

/* Number arithmetic with mongod's promotion rules. */
static int arith(struct apply_ctx *c,
                 const struct op *o,
                 const bson_value_t *cur,
                 const bson_value_t *arg,
                 bson_value_t *res)
{
    bool mul = o->kind == OP_MUL;

    if (cur->value_type == BSON_TYPE_DECIMAL128 || arg->value_type == BSON_TYPE_DECIMAL128) {
        return cairn_error_mongo(c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "%s on decimal128 values is not supported", o->opname);
    }
    if (cur->value_type == BSON_TYPE_DOUBLE || arg->value_type == BSON_TYPE_DOUBLE) {
        double a = qry_number_as_double(cur), b = qry_number_as_double(arg);
        res->value_type = BSON_TYPE_DOUBLE;
        res->value.v_double = mul ? a * b : a + b;
        return 0;
    }
    {
        int64_t a = cur->value_type == BSON_TYPE_INT32 ? cur->value.v_int32 : cur->value.v_int64;
        int64_t b = arg->value_type == BSON_TYPE_INT32 ? arg->value.v_int32 : arg->value.v_int64;
        int64_t r;
        bool ovf = mul ? __builtin_mul_overflow(a, b, &r) : __builtin_add_overflow(a, b, &r);
        if (ovf) {
            char f[160];
            qry_fmt_value(cur, f, sizeof f);
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Failed to apply %s operations to current value (%s) for "
                                     "document %s",
                                     o->opname, f, c->id);
        }
        if (cur->value_type == BSON_TYPE_INT32 && arg->value_type == BSON_TYPE_INT32 &&
            r >= INT32_MIN && r <= INT32_MAX) {
            res->value_type = BSON_TYPE_INT32;
            res->value.v_int32 = (int32_t)r;
        } else {
            res->value_type = BSON_TYPE_INT64;
            res->value.v_int64 = r;
        }
    }
    return 0;
}

int upd_apply_arith(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    bson_value_t res;
    int rv;

    if (idx < 0) {
        if (o->kind == OP_INC) {
            return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &o->arg);
        }
        res.value_type = o->arg.value_type;
        if (res.value_type == BSON_TYPE_INT32) {
            res.value.v_int32 = 0;
        } else if (res.value_type == BSON_TYPE_INT64) {
            res.value.v_int64 = 0;
        } else if (res.value_type == BSON_TYPE_DOUBLE) {
            res.value.v_double = 0.0;
        } else {
            return cairn_error_mongo(c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "$mul on decimal128 values is not supported");
        }
        return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &res);
    }
    {
        struct node *nd = parent->kids[idx];
        if (!upd_is_number(nd->val.value_type)) {
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "Cannot apply %s to a value of non-numeric type. %s has the "
                                     "field '%s' of non-numeric type %s",
                                     o->opname, c->id, nd->key, qry_type_name(nd->val.value_type));
        }
        rv = arith(c, o, &nd->val, &o->arg, &res);
        if (rv != 0) {
            return rv;
        }
        nd->val = res; /* numbers own no memory */
    }
    return 0;
}

int upd_apply_bit(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    bson_value_t res = {.value_type = BSON_TYPE_INT32};
    bson_t d;
    bson_iter_t it;

    if (idx >= 0) {
        struct node *nd = parent->kids[idx];
        if (nd->val.value_type != BSON_TYPE_INT32 && nd->val.value_type != BSON_TYPE_INT64) {
            return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                     "Cannot apply $bit to a value of non-integral type._id: %s "
                                     "has the field %s of non-integer type %s",
                                     c->id_val, nd->key, qry_type_name(nd->val.value_type));
        }
        res = nd->val;
    } else {
        res.value.v_int32 = 0; /* a new field starts from int32 0, as mongod */
    }
    /* The argument was checked when the update was compiled (parse_bit). */
    if (!bson_init_static(&d, o->arg.value.v_doc.data, o->arg.value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue, "invalid $bit argument");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool wide = res.value_type == BSON_TYPE_INT64 || BSON_ITER_HOLDS_INT64(&it);
        int64_t a = res.value_type == BSON_TYPE_INT64 ? res.value.v_int64 : res.value.v_int32;
        int64_t b = BSON_ITER_HOLDS_INT64(&it) ? bson_iter_int64(&it) : bson_iter_int32(&it);
        int64_t r = k[0] == 'a' ? (a & b) : k[0] == 'o' ? (a | b) : (a ^ b);
        if (wide) {
            res.value_type = BSON_TYPE_INT64;
            res.value.v_int64 = r;
        } else {
            res.value_type = BSON_TYPE_INT32;
            res.value.v_int32 = (int32_t)r;
        }
    }
    if (idx >= 0) {
        parent->kids[idx]->val = res; /* numbers own no memory */
        return 0;
    }
    return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &res);
}

int upd_apply_minmax(struct apply_ctx *c, const struct op *o, struct node *parent, long idx)
{
    bson_t tmp;
    bson_value_t cur;
    int cmp;

    if (idx < 0) {
        return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &o->arg);
    }
    upd_node_view(parent->kids[idx], &tmp, &cur);
    cmp = qry_cmp(&o->arg, &cur);
    bson_destroy(&tmp);
    if ((o->kind == OP_MIN && cmp < 0) || (o->kind == OP_MAX && cmp > 0)) {
        return upd_put_value(c, parent, idx, upd_leaf_name(&o->path), &o->arg);
    }
    return 0;
}

int upd_apply_rename(struct apply_ctx *c, const struct op *o, struct node *root)
{
    struct node *parent, *moved, *tparent;
    long idx, tidx;
    int rv = upd_walk(c, root, &o->path, false, true, &parent, &idx);

    if (rv == WALK_MISSING) {
        return 0;
    }
    if (rv == WALK_ARRAY) {
        return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The source field cannot be an array element, '%s' in doc with "
                                 "_id: %s has an array field called '%s'",
                                 o->path.full, c->id_val, parent->key);
    }
    if (rv != 0) {
        return rv;
    }
    if (idx < 0) {
        return 0;
    }
    /* check the destination before changing anything */
    rv = upd_walk(c, root, &o->to, false, true, &tparent, &tidx);
    if (rv == WALK_ARRAY) {
        return cairn_error_mongo(c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "The destination field cannot be an array element, '%s' in doc "
                                 "with _id: %s has an array field called '%s'",
                                 o->to.full, c->id_val, tparent->key);
    }
    if (rv > 0) {
        return rv;
    }
    moved = parent->kids[idx];
    upd_kid_remove(parent, (size_t)idx);
    rv = upd_walk(c, root, &o->to, true, false, &tparent, &tidx);
    if (rv != 0) {
        upd_node_free(moved);
        return rv;
    }
    return upd_put_leaf(c, tparent, tidx, upd_leaf_name(&o->to), moved);
}
