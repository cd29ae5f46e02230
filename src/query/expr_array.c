/*
 * expr_array.c: the array and object operators of the aggregation
 * expression language: $arrayElemAt, $concatArrays and $mergeObjects.
 */
#include <math.h>
#include <stdint.h>

#include "query/expr.h"
#include "query/expr_int.h"
#include "query/query.h"

/* ---- evaluation: array operators ----------------------------------------- */

int ex_op_elemat(bson_value_t *a, bson_value_t *out, struct cairn_error *err)
{
    bson_t arr;
    bson_iter_t it;
    if (ex_nullish(&a[0]) || ex_nullish(&a[1])) {
        ex_set_null(out);
        return 0;
    }
    if (a[0].value_type != BSON_TYPE_ARRAY) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ArrayElemAtNotArray,
                                 "$arrayElemAt's first argument must be an array, but is %s",
                                 qry_type_name(a[0].value_type));
    }
    if (!ex_is_num(&a[1])) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ArrayElemAtIndexNotNumber,
                                 "$arrayElemAt's second argument must be a numeric value, but "
                                 "is %s",
                                 qry_type_name(a[1].value_type));
    }
    double d = ex_num_d(&a[1]);
    if (d != floor(d) || d < INT32_MIN || d > INT32_MAX) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ArrayElemAtIndexNotInt32,
                                 "$arrayElemAt's second argument must be representable as a "
                                 "32-bit integer: %g",
                                 d);
    }
    int64_t idx = (int64_t)d;
    if (!ex_value_doc(&a[0], &arr)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "malformed array");
    }
    int64_t n = bson_count_keys(&arr);
    if (idx < 0) {
        idx += n;
    }
    ex_set_missing(out);
    if (idx < 0 || idx >= n || !bson_iter_init(&it, &arr)) {
        return 0;
    }
    for (int64_t i = 0; bson_iter_next(&it); i++) {
        if (i == idx) {
            bson_value_copy(bson_iter_value(&it), out);
            break;
        }
    }
    return 0;
}

int ex_op_concat_arrays(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err)
{
    bson_t res, arr;
    bson_iter_t it;
    uint32_t idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (ex_nullish(&a[i])) {
            ex_set_null(out);
            return 0;
        }
        if (a[i].value_type != BSON_TYPE_ARRAY) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ConcatArraysNotArray,
                                     "$concatArrays only supports arrays, not %s",
                                     qry_type_name(a[i].value_type));
        }
    }
    bson_init(&res);
    for (size_t i = 0; i < n; i++) {
        if (!ex_value_doc(&a[i], &arr) || !bson_iter_init(&it, &arr)) {
            continue;
        }
        while (bson_iter_next(&it)) {
            char buf[16];
            const char *key;
            size_t kl = bson_uint32_to_string(idx++, &key, buf, sizeof buf);
            bson_append_value(&res, key, (int)kl, bson_iter_value(&it));
            if (res.len > QRY_MAX_VALUE_BYTES) {
                bson_destroy(&res);
                return qry_too_large(err);
            }
        }
    }
    return qry_value_take_bson(out, &res, BSON_TYPE_ARRAY);
}

/* ---- evaluation: object operators ---------------------------------------- */

int ex_op_merge(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err)
{
    bson_t acc = BSON_INITIALIZER;
    for (size_t i = 0; i < n; i++) {
        bson_t d, next = BSON_INITIALIZER;
        bson_iter_t it, ni;
        if (ex_nullish(&a[i])) {
            continue;
        }
        if (a[i].value_type != BSON_TYPE_DOCUMENT || !ex_value_doc(&a[i], &d)) {
            bson_destroy(&acc);
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_MergeObjectsNotObject,
                                     "$mergeObjects requires object inputs, but input is of type "
                                     "%s",
                                     qry_type_name(a[i].value_type));
        }
        /* existing fields, replaced in place; then the new ones */
        if (bson_iter_init(&it, &acc)) {
            while (bson_iter_next(&it)) {
                if (bson_iter_init_find(&ni, &d, bson_iter_key(&it))) {
                    bson_append_iter(&next, NULL, 0, &ni);
                } else {
                    bson_append_iter(&next, NULL, 0, &it);
                }
            }
        }
        if (bson_iter_init(&ni, &d)) {
            while (bson_iter_next(&ni)) {
                if (!bson_iter_init_find(&it, &acc, bson_iter_key(&ni))) {
                    bson_append_iter(&next, NULL, 0, &ni);
                }
            }
        }
        bson_destroy(&acc);
        bson_steal(&acc, &next);
        if (acc.len > QRY_MAX_VALUE_BYTES) {
            bson_destroy(&acc);
            return qry_too_large(err);
        }
    }
    return qry_value_take_bson(out, &acc, BSON_TYPE_DOCUMENT);
}
