/*
 * expr_arith.c: the arithmetic operators of the aggregation expression
 * language: $add and $multiply (numbers, and a date plus numbers),
 * $subtract (numbers, dates), $divide and $mod, $abs $ceil $floor $round
 * $trunc, and the expression forms of $sum $avg $min $max (over an array
 * argument or the argument list). Arithmetic on decimal128 fails with
 * NotImplemented.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "query/expr.h"
#include "query/expr_int.h"
#include "query/query.h"

/* ---- evaluation: arithmetic operators ------------------------------------ */

static int type_err(struct cairn_error *err,
                    int code,
                    const char *fmt,
                    const char *a,
                    const char *b)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, code, fmt, a, b);
}

/* date + llround(delta) into *out; false when it leaves the int64 range
 * (mongod: 15 Overflow "date overflow in $add"). */
static bool date_plus(int64_t date, double delta, int64_t *out)
{
    if (!(delta >= -9223372036854775808.0 && delta < 9223372036854775808.0)) {
        return false; /* also NaN */
    }
    return !__builtin_add_overflow(date, (int64_t)llround(delta), out);
}

int ex_op_add_mul(const struct qry_expr *e,
                  bson_value_t *a,
                  bson_value_t *out,
                  struct cairn_error *err)
{
    bool is_add = e->op == OP_ADD;
    struct qry_numsum s = {0, is_add ? 0 : 1, is_add ? 0.0 : 1.0};
    bool have_date = false;
    int64_t date = 0;
    for (size_t i = 0; i < e->n; i++) {
        if (ex_nullish(&a[i])) {
            ex_set_null(out);
            return 0;
        }
    }
    for (size_t i = 0; i < e->n; i++) {
        const bson_value_t *v = &a[i];
        if (is_add && v->value_type == BSON_TYPE_DATE_TIME) {
            if (have_date) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AddTwoDates,
                                         "only one date allowed in an $add expression");
            }
            have_date = true;
            date = v->value.v_datetime;
            continue;
        }
        if (!ex_is_num(v)) {
            return cairn_error_mongo(
                err, CAIRN_EINVAL, is_add ? MONGO_LOC_AddNotNumeric : MONGO_LOC_MultiplyNotNumeric,
                "%s only supports numeric%s types, not %s", e->opname, is_add ? " or date" : "",
                qry_type_name(v->value_type));
        }
        if (v->value_type == BSON_TYPE_DECIMAL128) {
            return ex_decimal_unsupported(err, e->opname);
        }
        if (is_add) {
            qry_numsum_add(&s, v, err);
        } else if (v->value_type == BSON_TYPE_DOUBLE || s.type == 2) {
            s.d = qry_numsum_double(&s) * ex_num_d(v);
            s.type = 2;
        } else {
            int64_t r;
            if (__builtin_mul_overflow(s.i, ex_num_i(v), &r)) {
                s.d = (double)s.i * (double)ex_num_i(v);
                s.type = 2;
            } else {
                s.i = r;
                if (v->value_type == BSON_TYPE_INT64) {
                    s.type = 1;
                }
            }
        }
    }
    if (have_date) {
        double total = qry_numsum_double(&s);
        int64_t r;
        if (!date_plus(date, total, &r)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_Overflow, "date overflow in $add");
        }
        memset(out, 0, sizeof *out);
        out->value_type = BSON_TYPE_DATE_TIME;
        out->value.v_datetime = r;
        return 0;
    }
    qry_numsum_value(&s, out);
    return 0;
}

int ex_op_subtract(bson_value_t *a, bson_value_t *out, struct cairn_error *err)
{
    const bson_value_t *x = &a[0], *y = &a[1];
    if (ex_nullish(x) || ex_nullish(y)) {
        ex_set_null(out);
        return 0;
    }
    if (x->value_type == BSON_TYPE_DATE_TIME) {
        memset(out, 0, sizeof *out);
        int64_t r;
        if (y->value_type == BSON_TYPE_DATE_TIME) {
            if (__builtin_sub_overflow(x->value.v_datetime, y->value.v_datetime, &r)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_Overflow,
                                         "date overflow in $subtract");
            }
            ex_set_int64(out, r);
            return 0;
        }
        if (ex_is_num(y) && y->value_type != BSON_TYPE_DECIMAL128) {
            if (!date_plus(x->value.v_datetime, -ex_num_d(y), &r)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_Overflow,
                                         "date overflow in $subtract");
            }
            out->value_type = BSON_TYPE_DATE_TIME;
            out->value.v_datetime = r;
            return 0;
        }
    } else if (ex_is_num(x) && ex_is_num(y)) {
        if (x->value_type == BSON_TYPE_DECIMAL128 || y->value_type == BSON_TYPE_DECIMAL128) {
            return ex_decimal_unsupported(err, "$subtract");
        }
        if (x->value_type == BSON_TYPE_DOUBLE || y->value_type == BSON_TYPE_DOUBLE) {
            ex_set_double(out, ex_num_d(x) - ex_num_d(y));
            return 0;
        }
        int64_t r = 0;
        if (__builtin_sub_overflow(ex_num_i(x), ex_num_i(y), &r)) {
            ex_set_double(out, ex_num_d(x) - ex_num_d(y));
        } else if (x->value_type == BSON_TYPE_INT32 && y->value_type == BSON_TYPE_INT32 &&
                   r >= INT32_MIN && r <= INT32_MAX) {
            ex_set_int32(out, (int32_t)r);
        } else {
            ex_set_int64(out, r);
        }
        return 0;
    }
    return type_err(err, MONGO_LOC_SubtractBadTypes, "can't $subtract %s from %s",
                    qry_type_name(y->value_type), qry_type_name(x->value_type));
}

int ex_op_div_mod(const struct qry_expr *e,
                  bson_value_t *a,
                  bson_value_t *out,
                  struct cairn_error *err)
{
    const bson_value_t *x = &a[0], *y = &a[1];
    bool div = e->op == OP_DIV;
    if (ex_nullish(x) || ex_nullish(y)) {
        ex_set_null(out);
        return 0;
    }
    if (!ex_is_num(x) || !ex_is_num(y)) {
        return cairn_error_mongo(err, CAIRN_EINVAL,
                                 div ? MONGO_LOC_DivideNotNumeric : MONGO_LOC_ModNotNumeric,
                                 "%s only supports numeric types, not %s and %s", e->opname,
                                 qry_type_name(x->value_type), qry_type_name(y->value_type));
    }
    if (x->value_type == BSON_TYPE_DECIMAL128 || y->value_type == BSON_TYPE_DECIMAL128) {
        return ex_decimal_unsupported(err, e->opname);
    }
    if (ex_num_d(y) == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, div ? MONGO_BadValue : MONGO_LOC_ModByZero,
                                 "can't %s by zero", e->opname);
    }
    if (div) {
        ex_set_double(out, ex_num_d(x) / ex_num_d(y));
        return 0;
    }
    if (x->value_type == BSON_TYPE_DOUBLE || y->value_type == BSON_TYPE_DOUBLE) {
        ex_set_double(out, fmod(ex_num_d(x), ex_num_d(y)));
        return 0;
    }
    int64_t xi = ex_num_i(x), yi = ex_num_i(y);
    int64_t r = (yi == -1) ? 0 : xi % yi;
    if (x->value_type == BSON_TYPE_INT32 && y->value_type == BSON_TYPE_INT32) {
        ex_set_int32(out, (int32_t)r);
    } else {
        ex_set_int64(out, r);
    }
    return 0;
}

int ex_op_unary_num(const struct qry_expr *e,
                    bson_value_t *a,
                    bson_value_t *out,
                    struct cairn_error *err)
{
    const bson_value_t *x = &a[0];
    int64_t place = 0;
    if (ex_nullish(x)) {
        ex_set_null(out);
        return 0;
    }
    if (!ex_is_num(x)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnaryMathNotNumeric,
                                 "%s only supports numeric types, not %s", e->opname,
                                 qry_type_name(x->value_type));
    }
    if (x->value_type == BSON_TYPE_DECIMAL128) {
        return ex_decimal_unsupported(err, e->opname);
    }
    if ((e->op == OP_ROUND || e->op == OP_TRUNC) && e->n == 2) {
        const bson_value_t *p = &a[1];
        if (ex_nullish(p)) {
            ex_set_null(out);
            return 0;
        }
        double pd = ex_is_num(p) ? ex_num_d(p) : NAN;
        if (!ex_is_num(p) || pd != floor(pd) || pd < -20 || pd > 100) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_RoundPlaceOutOfRange,
                                     "%s requires \"place\" argument to be an integer between "
                                     "-20 and 100",
                                     e->opname);
        }
        place = (int64_t)pd;
    }
    if (x->value_type == BSON_TYPE_DOUBLE) {
        double d = x->value.v_double, r;
        switch (e->op) {
            case OP_ABS:
                r = fabs(d);
                break;
            case OP_CEIL:
                r = ceil(d);
                break;
            case OP_FLOOR:
                r = floor(d);
                break;
            default: {
                double scale = pow(10.0, (double)place);
                double sd = d * scale;
                if (isinf(sd) || isnan(sd)) {
                    r = d;
                } else {
                    r = (e->op == OP_ROUND ? nearbyint(sd) : trunc(sd)) / scale;
                }
                break;
            }
        }
        ex_set_double(out, r);
        return 0;
    }
    int64_t i = ex_num_i(x);
    if (e->op == OP_ABS) {
        if (i == INT64_MIN) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AbsOfInt64Min,
                                     "can't take $abs of long long min");
        }
        i = i < 0 ? -i : i;
    } else if ((e->op == OP_ROUND || e->op == OP_TRUNC) && place < 0) {
        int64_t p10 = 1;
        for (int64_t k = 0; k < -place && p10 <= INT64_MAX / 10; k++) {
            p10 *= 10;
        }
        if (-place > 18) {
            i = 0;
        } else {
            int64_t q = i / p10, rem = i % p10;
            if (e->op == OP_ROUND) {
                int64_t half = p10 / 2;
                int64_t arem = rem < 0 ? -rem : rem;
                if (arem > half || (arem == half && (q % 2 != 0))) {
                    q += rem < 0 ? -1 : 1;
                }
            }
            if (__builtin_mul_overflow(q, p10, &i)) {
                ex_set_double(out, (double)q * (double)p10);
                return 0;
            }
        }
    }
    if (x->value_type == BSON_TYPE_INT32 && i >= INT32_MIN && i <= INT32_MAX) {
        ex_set_int32(out, (int32_t)i);
    } else {
        ex_set_int64(out, i);
    }
    return 0;
}

/* ---- $sum $avg $min $max over arguments ---------------------------------- */

/* State of the expression forms of $sum/$avg/$min/$max. */
struct fold
{
    struct qry_numsum sum;
    int64_t cnt;
    const bson_value_t *best; /* a view into the arguments */
};

static int fold_one(int op, struct fold *f, const bson_value_t *v, struct cairn_error *err)
{
    if (op == OP_SUMX || op == OP_AVGX) {
        if (v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
            v->value_type == BSON_TYPE_DOUBLE || v->value_type == BSON_TYPE_DECIMAL128) {
            f->cnt++;
            return qry_numsum_add(&f->sum, v, err);
        }
        return 0;
    }
    if (!ex_nullish(v)) {
        int c = f->best ? qry_cmp(v, f->best) : 0;
        if (!f->best || (op == OP_MINX ? c < 0 : c > 0)) {
            f->best = v;
        }
    }
    return 0;
}

int ex_op_fold(const struct qry_expr *e,
               bson_value_t *a,
               bson_value_t *out,
               struct cairn_error *err)
{
    struct fold f;
    bson_t arr;
    bson_iter_t it;
    int rv = 0;
    memset(&f, 0, sizeof f);
    if (e->n == 1 && a[0].value_type == BSON_TYPE_ARRAY) {
        if (ex_value_doc(&a[0], &arr) && bson_iter_init(&it, &arr)) {
            while (!rv && bson_iter_next(&it)) {
                bson_value_t *v = (bson_value_t *)bson_iter_value(&it);
                rv = fold_one(e->op, &f, v, err);
                if (!rv && f.best == v) {
                    /* the iterator's value storage is reused: keep a copy */
                    ex_release(out);
                    bson_value_copy(v, out);
                    f.best = out;
                }
            }
        }
    } else {
        for (size_t i = 0; !rv && i < e->n; i++) {
            rv = fold_one(e->op, &f, &a[i], err);
        }
        if (!rv && f.best) {
            bson_value_t tmp;
            bson_value_copy(f.best, &tmp);
            *out = tmp;
            f.best = out;
        }
    }
    if (rv) {
        ex_release(out);
        return rv;
    }
    switch (e->op) {
        case OP_SUMX:
            qry_numsum_value(&f.sum, out);
            break;
        case OP_AVGX:
            if (f.cnt) {
                ex_set_double(out, qry_numsum_double(&f.sum) / (double)f.cnt);
            } else {
                ex_set_null(out);
            }
            break;
        default:
            if (!f.best) {
                ex_set_null(out);
            }
            break;
    }
    return 0;
}
