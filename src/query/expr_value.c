/*
 * expr_value.c: the values of the aggregation expression language:
 * constructors of bson_value_t results (BSON_TYPE_EOD = missing),
 * releasing them, numeric reads, aggregation truthiness and comparison
 * (qry_value_truthy, qry_value_cmp), and the numeric sums with MongoDB's
 * promotion rules (qry_numsum_*).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/expr_int.h"
#include "query/query.h"

/* ---- values ------------------------------------------------------------ */

void ex_set_missing(bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_EOD;
}

void ex_set_null(bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_NULL;
}

void ex_set_bool(bson_value_t *v, bool b)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_BOOL;
    v->value.v_bool = b;
}

void ex_set_int32(bson_value_t *v, int32_t i)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_INT32;
    v->value.v_int32 = i;
}

void ex_set_int64(bson_value_t *v, int64_t i)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_INT64;
    v->value.v_int64 = i;
}

void ex_set_double(bson_value_t *v, double d)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_DOUBLE;
    v->value.v_double = d;
}

void ex_set_string_owned(bson_value_t *v, char *s, size_t len)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_UTF8;
    v->value.v_utf8.str = s;
    v->value.v_utf8.len = (uint32_t)len;
}

int ex_set_string(bson_value_t *v, const char *s, size_t len, struct cairn_error *err)
{
    char *c = bson_malloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    ex_set_string_owned(v, c, len);
    return 0;
}

int qry_too_large(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                             "BSONObj size exceeds the maximum allowed size of 16793600 bytes");
}

void ex_release(bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_EOD) {
        bson_value_destroy(v);
    }
    ex_set_missing(v);
}

int qry_value_take_bson(bson_value_t *v, bson_t *b, bson_type_t t)
{
    uint32_t len = 0;
    uint8_t *data = bson_destroy_with_steal(b, true, &len);
    if (!data) {
        ex_set_missing(v);
        return CAIRN_ENOMEM;
    }
    memset(v, 0, sizeof *v);
    v->value_type = t;
    v->value.v_doc.data = data;
    v->value.v_doc.data_len = len;
    return 0;
}

bool ex_nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
           v->value_type == BSON_TYPE_UNDEFINED;
}

bool ex_is_num(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
           v->value_type == BSON_TYPE_DOUBLE || v->value_type == BSON_TYPE_DECIMAL128;
}

static double dec_to_double(const bson_decimal128_t *d)
{
    char s[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(d, s);
    if (strcmp(s, "NaN") == 0 || strcmp(s, "-NaN") == 0) {
        return NAN;
    }
    if (strcmp(s, "Infinity") == 0) {
        return INFINITY;
    }
    if (strcmp(s, "-Infinity") == 0) {
        return -INFINITY;
    }
    return strtod(s, NULL);
}

double ex_num_d(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_INT32:
            return v->value.v_int32;
        case BSON_TYPE_INT64:
            return (double)v->value.v_int64;
        case BSON_TYPE_DOUBLE:
            return v->value.v_double;
        case BSON_TYPE_DECIMAL128:
            return dec_to_double(&v->value.v_decimal128);
        default:
            return 0;
    }
}

int64_t ex_num_i(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 ? v->value.v_int32 : v->value.v_int64;
}

int qry_value_cmp(const bson_value_t *a, const bson_value_t *b)
{
    bool am = a->value_type == BSON_TYPE_EOD, bm = b->value_type == BSON_TYPE_EOD;
    if (am && bm) {
        return 0;
    }
    if (am) {
        return b->value_type == BSON_TYPE_MINKEY ? 1 : -1;
    }
    if (bm) {
        return a->value_type == BSON_TYPE_MINKEY ? -1 : 1;
    }
    return qry_cmp(a, b);
}

bool qry_value_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_EOD:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            return false;
        case BSON_TYPE_BOOL:
            return v->value.v_bool;
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
            return ex_num_d(v) != 0;
        default:
            return true;
    }
}

/* ---- numeric sums ------------------------------------------------------ */

int ex_decimal_unsupported(struct cairn_error *err, const char *op)
{
    return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                             "%s on decimal128 values is not supported yet", op);
}

int qry_numsum_add(struct qry_numsum *s, const bson_value_t *v, struct cairn_error *err)
{
    if (v->value_type == BSON_TYPE_DECIMAL128) {
        return ex_decimal_unsupported(err, "arithmetic");
    }
    if (v->value_type == BSON_TYPE_DOUBLE) {
        if (s->type < 2) {
            s->d = (double)s->i;
            s->type = 2;
        }
        s->d += v->value.v_double;
        return 0;
    }
    int64_t x = ex_num_i(v);
    if (s->type == 2) {
        s->d += (double)x;
        return 0;
    }
    int64_t r;
    if (__builtin_add_overflow(s->i, x, &r)) {
        s->d = (double)s->i + (double)x;
        s->type = 2;
        return 0;
    }
    s->i = r;
    if (v->value_type == BSON_TYPE_INT64) {
        s->type = 1;
    }
    return 0;
}

void qry_numsum_merge(struct qry_numsum *s, const struct qry_numsum *part)
{
    int64_t r;
    if (s->type == 2 || part->type == 2) {
        s->d = qry_numsum_double(s) + qry_numsum_double(part);
        s->type = 2;
        return;
    }
    if (__builtin_add_overflow(s->i, part->i, &r)) {
        s->d = (double)s->i + (double)part->i;
        s->type = 2;
        return;
    }
    s->i = r;
    if (part->type > s->type) {
        s->type = part->type;
    }
}

void qry_numsum_value(const struct qry_numsum *s, bson_value_t *out)
{
    if (s->type == 2) {
        ex_set_double(out, s->d);
    } else if (s->type == 0 && s->i >= INT32_MIN && s->i <= INT32_MAX) {
        ex_set_int32(out, (int32_t)s->i);
    } else {
        ex_set_int64(out, s->i);
    }
}

double qry_numsum_double(const struct qry_numsum *s)
{
    return s->type == 2 ? s->d : (double)s->i;
}
