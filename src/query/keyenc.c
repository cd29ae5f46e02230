/*
 * keyenc.c: the order-preserving, self-delimiting byte encoding of _id
 * values used in engine keys (memcmp order == qry_cmp order).
 *
 * Layout: one type-rank byte (qry_type_rank, never 0), then a body:
 *  numbers    class byte (NaN < -inf < negative < zero < positive < +inf);
 *             finite non-zero values add the exact binary value: the
 *             exponent of the highest set bit (biased, 2 bytes BE) and the
 *             bits below it left-aligned in 8 bytes; all 10 bytes inverted
 *             for negatives. int32, int64 and double are exact; decimal128
 *             is converted to the nearest double first (limitation: two
 *             decimals closer than a double ulp share a key, consistently
 *             with qry_cmp, which compares them the same way).
 *  strings    bytes with 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x00
 *             (symbols and code too)
 *  doc/array  per element: rank byte, escaped name, body; then 0x00
 *  binary     length (4 BE), subtype, bytes
 *  ObjectId   12 bytes; bool 1 byte; date 8 BE with the sign bit flipped;
 *  timestamp  seconds and increment, 4 BE each
 *  regex      escaped pattern, escaped options (nested values only)
 *  dbpointer  length (4 BE), namespace bytes, 12 oid bytes
 *  codewscope escaped code, then the scope as a document
 *  MinKey, MaxKey, null, undefined: the rank byte alone.
 */
#include <math.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

#define MAX_KEY_DEPTH 200

static int put_be32(struct cairn_buf *out, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return cairn_buf_append(out, b, 4);
}

static int put_escaped(struct cairn_buf *out, const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    int rc = cairn_buf_reserve(out, len + 2);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        rc = cairn_buf_push(out, p[i]);
        if (rc == 0 && p[i] == 0) {
            rc = cairn_buf_push(out, 0xFF);
        }
    }
    if (rc == 0) {
        rc = cairn_buf_push(out, 0);
    }
    if (rc == 0) {
        rc = cairn_buf_push(out, 0);
    }
    return rc;
}

static int top_bit(uint64_t u)
{
    return 63 - __builtin_clzll(u);
}

/* Writes class/exponent/mantissa for magnitude `u` * 2^`scale` (u != 0). */
static int put_magnitude(struct cairn_buf *out, bool negative, uint64_t u, int scale)
{
    int t = top_bit(u);
    int e = t + scale;
    uint64_t m = (u << (63 - t)) << 1;
    uint8_t b[11];
    b[0] = negative ? NUM_NEG : NUM_POS;
    uint16_t be = (uint16_t)(e + EXP_BIAS);
    b[1] = (uint8_t)(be >> 8);
    b[2] = (uint8_t)be;
    cairn_store_be64(b + 3, m);
    if (negative) {
        for (int i = 1; i < 11; i++) {
            b[i] = (uint8_t)~b[i];
        }
    }
    return cairn_buf_append(out, b, sizeof b);
}

static int put_int64(struct cairn_buf *out, int64_t i)
{
    if (i == 0) {
        return cairn_buf_push(out, NUM_ZERO);
    }
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    return put_magnitude(out, i < 0, u, 0);
}

static int put_double(struct cairn_buf *out, double d)
{
    if (isnan(d)) {
        return cairn_buf_push(out, NUM_NAN);
    }
    if (isinf(d)) {
        return cairn_buf_push(out, d < 0 ? NUM_NEG_INF : NUM_POS_INF);
    }
    if (d == 0) {
        return cairn_buf_push(out, NUM_ZERO);
    }
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    bool neg = (bits >> 63) != 0;
    int ex = (int)((bits >> 52) & 0x7FF);
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    if (ex == 0) { /* subnormal: frac * 2^-1074 */
        return put_magnitude(out, neg, frac, -1074);
    }
    return put_magnitude(out, neg, frac | (UINT64_C(1) << 52), ex - 1075);
}

static int put_body(const bson_value_t *v,
                    struct cairn_buf *out,
                    int depth,
                    struct cairn_error *err);

static int put_doc(const uint8_t *data,
                   uint32_t len,
                   struct cairn_buf *out,
                   int depth,
                   struct cairn_error *err)
{
    bson_iter_t it;
    if (depth > MAX_KEY_DEPTH) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "_id is nested too deeply");
    }
    if (!bson_iter_init_from_data(&it, data, len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "invalid BSON document in _id");
    }
    int rc = 0;
    while (rc == 0 && bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        const char *k = bson_iter_key(&it);
        rc = cairn_buf_push(out, (uint8_t)qry_type_rank(v->value_type));
        if (rc == 0) {
            rc = put_escaped(out, k, strlen(k));
        }
        if (rc == 0) {
            rc = put_body(v, out, depth + 1, err);
        }
    }
    if (rc == 0) {
        rc = cairn_buf_push(out, 0);
    }
    return rc;
}

static int put_body(const bson_value_t *v,
                    struct cairn_buf *out,
                    int depth,
                    struct cairn_error *err)
{
    int rc;
    switch (v->value_type) {
        case BSON_TYPE_MINKEY:
        case BSON_TYPE_MAXKEY:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
        case BSON_TYPE_EOD:
            return 0;
        case BSON_TYPE_INT32:
            return put_int64(out, v->value.v_int32);
        case BSON_TYPE_INT64:
            return put_int64(out, v->value.v_int64);
        case BSON_TYPE_DOUBLE:
            return put_double(out, v->value.v_double);
        case BSON_TYPE_DECIMAL128:
            return put_double(out, qry_number_as_double(v));
        case BSON_TYPE_UTF8:
            return put_escaped(out, v->value.v_utf8.str, v->value.v_utf8.len);
        case BSON_TYPE_SYMBOL:
            return put_escaped(out, v->value.v_symbol.symbol, v->value.v_symbol.len);
        case BSON_TYPE_CODE:
            return put_escaped(out, v->value.v_code.code, v->value.v_code.code_len);
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            return put_doc(v->value.v_doc.data, v->value.v_doc.data_len, out, depth, err);
        case BSON_TYPE_BINARY:
            rc = put_be32(out, v->value.v_binary.data_len);
            if (rc == 0) {
                rc = cairn_buf_push(out, (uint8_t)v->value.v_binary.subtype);
            }
            if (rc == 0 && v->value.v_binary.data_len) {
                rc = cairn_buf_append(out, v->value.v_binary.data, v->value.v_binary.data_len);
            }
            return rc;
        case BSON_TYPE_OID:
            return cairn_buf_append(out, v->value.v_oid.bytes, 12);
        case BSON_TYPE_BOOL:
            return cairn_buf_push(out, v->value.v_bool ? 1 : 0);
        case BSON_TYPE_DATE_TIME:
            return cairn_buf_put_be64(out, (uint64_t)v->value.v_datetime ^ (UINT64_C(1) << 63));
        case BSON_TYPE_TIMESTAMP:
            rc = put_be32(out, v->value.v_timestamp.timestamp);
            if (rc == 0) {
                rc = put_be32(out, v->value.v_timestamp.increment);
            }
            return rc;
        case BSON_TYPE_REGEX: {
            const char *p = v->value.v_regex.regex ? v->value.v_regex.regex : "";
            const char *o = v->value.v_regex.options ? v->value.v_regex.options : "";
            rc = put_escaped(out, p, strlen(p));
            if (rc == 0) {
                rc = put_escaped(out, o, strlen(o));
            }
            return rc;
        }
        case BSON_TYPE_DBPOINTER:
            rc = put_be32(out, v->value.v_dbpointer.collection_len);
            if (rc == 0 && v->value.v_dbpointer.collection_len) {
                rc = cairn_buf_append(out, v->value.v_dbpointer.collection,
                                      v->value.v_dbpointer.collection_len);
            }
            if (rc == 0) {
                rc = cairn_buf_append(out, v->value.v_dbpointer.oid.bytes, 12);
            }
            return rc;
        case BSON_TYPE_CODEWSCOPE:
            rc = put_escaped(out, v->value.v_codewscope.code, v->value.v_codewscope.code_len);
            if (rc == 0) {
                rc = put_doc(v->value.v_codewscope.scope_data, v->value.v_codewscope.scope_len, out,
                             depth + 1, err);
            }
            return rc;
        default:
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "unsupported BSON type 0x%x in _id", (unsigned)v->value_type);
    }
}

int qry_key_encode(const bson_value_t *v, struct cairn_buf *out, struct cairn_error *err)
{
    switch (v->value_type) {
        case BSON_TYPE_ARRAY:
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "can't use an array for _id");
        case BSON_TYPE_REGEX:
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "can't use a regex for _id");
        case BSON_TYPE_UNDEFINED:
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "can't use a undefined for _id");
        case BSON_TYPE_EOD:
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "_id is missing");
        default:
            break;
    }
    size_t start = out->len;
    int rc = cairn_buf_push(out, (uint8_t)qry_type_rank(v->value_type));
    if (rc == 0) {
        rc = put_body(v, out, 0, err);
    }
    if (rc != 0) {
        out->len = start;
        if (rc == CAIRN_ENOMEM) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory encoding _id");
        }
    }
    return rc;
}

int qry_key_encode_any(const bson_value_t *v, struct cairn_buf *out, struct cairn_error *err)
{
    size_t start = out->len;
    int rc = cairn_buf_push(out, (uint8_t)qry_type_rank(v->value_type));

    if (rc == 0) {
        rc = put_body(v, out, 0, err);
    }
    if (rc != 0) {
        out->len = start;
        if (rc == CAIRN_ENOMEM) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory encoding an index key");
        }
    }
    return rc;
}
