/*
 * expr_string.c: the string operators of the aggregation expression
 * language ($concat, $toLower, $toUpper, $substr/$substrBytes, on UTF-8
 * with byte offsets) and the conversions $toString $toInt $toLong
 * $toDouble $toBool (ConversionFailure when a value does not convert).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/expr_int.h"
#include "query/query.h"

/* ---- evaluation: string operators ---------------------------------------- */

int ex_op_concat(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ex_nullish(&a[i])) {
            ex_set_null(out);
            return 0;
        }
        if (a[i].value_type != BSON_TYPE_UTF8) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ConcatNotString,
                                     "$concat only supports strings, not %s",
                                     qry_type_name(a[i].value_type));
        }
        total += a[i].value.v_utf8.len;
    }
    if (total > QRY_MAX_VALUE_BYTES) {
        return qry_too_large(err);
    }
    char *s = bson_malloc(total + 1);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(s + off, a[i].value.v_utf8.str, a[i].value.v_utf8.len);
        off += a[i].value.v_utf8.len;
    }
    s[total] = '\0';
    ex_set_string_owned(out, s, total);
    return 0;
}

int ex_op_case(const struct qry_expr *e,
               bson_value_t *a,
               bson_value_t *out,
               struct cairn_error *err)
{
    int rv = ex_coerce_string(&a[0], e->opname, out, err);
    if (rv) {
        return rv;
    }
    char *s = out->value.v_utf8.str;
    for (uint32_t i = 0; i < out->value.v_utf8.len; i++) {
        char c = s[i];
        if (e->op == OP_TOLOWER && c >= 'A' && c <= 'Z') {
            s[i] = (char)(c - 'A' + 'a');
        } else if (e->op == OP_TOUPPER && c >= 'a' && c <= 'z') {
            s[i] = (char)(c - 'a' + 'A');
        }
    }
    return 0;
}

static bool utf8_cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

int ex_op_substr(const struct qry_expr *e,
                 bson_value_t *a,
                 bson_value_t *out,
                 struct cairn_error *err)
{
    bson_value_t s;
    int rv;
    if (!ex_is_num(&a[1])) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrStartNotNumber,
                                 "%s: starting index must be a numeric type (is BSON type %s)",
                                 e->opname, qry_type_name(a[1].value_type));
    }
    if (!ex_is_num(&a[2])) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrLengthNotNumber,
                                 "%s: length must be a numeric type (is BSON type %s)", e->opname,
                                 qry_type_name(a[2].value_type));
    }
    double ds = ex_num_d(&a[1]), dl = ex_num_d(&a[2]);
    if (!(ds >= 0)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrStartNegative,
                                 "%s: starting index must be non-negative (got: %g)", e->opname,
                                 ds);
    }
    rv = ex_coerce_string(&a[0], e->opname, &s, err);
    if (rv) {
        return rv;
    }
    size_t len = s.value.v_utf8.len;
    const unsigned char *p = (const unsigned char *)s.value.v_utf8.str;
    size_t start = ds >= (double)len ? len : (size_t)ds;
    /* A negative length, or NaN (which mongod's coerceToLong turns into a
     * negative number), takes the rest of the string. */
    size_t cnt = (dl < 0 || isnan(dl) || dl >= (double)(len - start)) ? len - start : (size_t)dl;
    if (start < len && utf8_cont(p[start])) {
        ex_release(&s);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrStartMidCharacter,
                                 "%s:  Invalid range, starting index is a UTF-8 continuation "
                                 "byte.",
                                 e->opname);
    }
    if (start + cnt < len && utf8_cont(p[start + cnt])) {
        ex_release(&s);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrEndMidCharacter,
                                 "%s:  Invalid range, ending index is in the middle of a UTF-8 "
                                 "character.",
                                 e->opname);
    }
    rv = ex_set_string(out, (const char *)p + start, cnt, err);
    ex_release(&s);
    return rv;
}

/* ---- evaluation: conversions --------------------------------------------- */

static int conv_fail(struct cairn_error *err, const bson_value_t *v, const char *to)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                             "Unsupported conversion from %s to %s in $convert with no onError "
                             "value",
                             qry_type_name(v->value_type), to);
}

static int parse_int_string(const bson_value_t *v, int64_t *out, struct cairn_error *err)
{
    const char *s = v->value.v_utf8.str;
    char *end = NULL;
    if (v->value.v_utf8.len == 0 || !(s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9'))) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                                 "Failed to parse number '%s' in $convert with no onError value: "
                                 "Did not consume whole string.",
                                 s);
    }
    errno = 0;
    long long r = strtoll(s, &end, 10);
    if (errno == ERANGE) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                                 "Failed to parse number '%s' in $convert with no onError value: "
                                 "Overflow",
                                 s);
    }
    if (!end || *end != '\0' || end != s + v->value.v_utf8.len) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                                 "Failed to parse number '%s' in $convert with no onError value: "
                                 "Did not consume whole string.",
                                 s);
    }
    *out = r;
    return 0;
}

int ex_op_convert(const struct qry_expr *e,
                  bson_value_t *a,
                  bson_value_t *out,
                  struct cairn_error *err)
{
    const bson_value_t *v = &a[0];
    if (ex_nullish(v)) {
        ex_set_null(out);
        return 0;
    }
    switch (e->op) {
        case OP_TOSTRING: {
            char buf[64];
            switch (v->value_type) {
                case BSON_TYPE_BOOL:
                    return ex_set_string(out, v->value.v_bool ? "true" : "false",
                                         v->value.v_bool ? 4 : 5, err);
                case BSON_TYPE_OID:
                    bson_oid_to_string(&v->value.v_oid, buf);
                    return ex_set_string(out, buf, strlen(buf), err);
                case BSON_TYPE_UTF8:
                case BSON_TYPE_INT32:
                case BSON_TYPE_INT64:
                case BSON_TYPE_DOUBLE:
                case BSON_TYPE_DECIMAL128:
                case BSON_TYPE_DATE_TIME:
                    return ex_coerce_string(v, e->opname, out, err);
                default:
                    return conv_fail(err, v, "string");
            }
        }
        case OP_TOBOOL:
            ex_set_bool(out, qry_value_truthy(v));
            return 0;
        case OP_TODOUBLE:
            switch (v->value_type) {
                case BSON_TYPE_BOOL:
                    ex_set_double(out, v->value.v_bool ? 1 : 0);
                    return 0;
                case BSON_TYPE_INT32:
                case BSON_TYPE_INT64:
                case BSON_TYPE_DOUBLE:
                case BSON_TYPE_DECIMAL128:
                    ex_set_double(out, ex_num_d(v));
                    return 0;
                case BSON_TYPE_DATE_TIME:
                    ex_set_double(out, (double)v->value.v_datetime);
                    return 0;
                case BSON_TYPE_UTF8: {
                    const char *s = v->value.v_utf8.str;
                    char *end = NULL;
                    double d = v->value.v_utf8.len ? strtod(s, &end) : 0;
                    if (!end || end != s + v->value.v_utf8.len || isspace((unsigned char)s[0])) {
                        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                                                 "Failed to parse number '%s' in $convert with no "
                                                 "onError value: Did not consume whole string.",
                                                 s);
                    }
                    ex_set_double(out, d);
                    return 0;
                }
                default:
                    return conv_fail(err, v, "double");
            }
        default: /* OP_TOINT, OP_TOLONG */
        {
            bool to_int = e->op == OP_TOINT;
            const char *tn = to_int ? "int" : "long";
            int64_t r = 0;
            switch (v->value_type) {
                case BSON_TYPE_BOOL:
                    r = v->value.v_bool;
                    break;
                case BSON_TYPE_INT32:
                case BSON_TYPE_INT64:
                    r = ex_num_i(v);
                    break;
                case BSON_TYPE_DOUBLE:
                case BSON_TYPE_DECIMAL128: {
                    double d = ex_num_d(v);
                    if (isnan(d)) {
                        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                                                 "Attempt to convert NaN value to integer type in "
                                                 "$convert with no onError value");
                    }
                    d = trunc(d);
                    if (d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
                        return cairn_error_mongo(
                            err, CAIRN_EINVAL, MONGO_ConversionFailure,
                            "Conversion would overflow target type in $convert "
                            "with no onError value");
                    }
                    r = (int64_t)d;
                    break;
                }
                case BSON_TYPE_DATE_TIME:
                    if (to_int) {
                        return conv_fail(err, v, tn);
                    }
                    r = v->value.v_datetime;
                    break;
                case BSON_TYPE_UTF8: {
                    int rv = parse_int_string(v, &r, err);
                    if (rv) {
                        return rv;
                    }
                    break;
                }
                default:
                    return conv_fail(err, v, tn);
            }
            if (to_int) {
                if (r < INT32_MIN || r > INT32_MAX) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConversionFailure,
                                             "Conversion would overflow target type in $convert "
                                             "with no onError value");
                }
                ex_set_int32(out, (int32_t)r);
            } else {
                ex_set_int64(out, r);
            }
            return 0;
        }
    }
}
