/*
 * compare.c: MongoDB's BSON comparison order: type ranks, exact numeric
 * comparison across int32/int64/double (decimal128 through double), and
 * recursive comparison of documents and arrays.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

int qry_type_rank(bson_type_t t)
{
    switch (t) {
        case BSON_TYPE_MINKEY:
            return QRY_RANK_MINKEY;
        case BSON_TYPE_EOD:
        case BSON_TYPE_UNDEFINED:
            return QRY_RANK_UNDEFINED;
        case BSON_TYPE_NULL:
            return QRY_RANK_NULL;
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DECIMAL128:
            return QRY_RANK_NUMBER;
        case BSON_TYPE_UTF8:
        case BSON_TYPE_SYMBOL:
            return QRY_RANK_STRING;
        case BSON_TYPE_DOCUMENT:
            return QRY_RANK_OBJECT;
        case BSON_TYPE_ARRAY:
            return QRY_RANK_ARRAY;
        case BSON_TYPE_BINARY:
            return QRY_RANK_BINARY;
        case BSON_TYPE_OID:
            return QRY_RANK_OID;
        case BSON_TYPE_BOOL:
            return QRY_RANK_BOOL;
        case BSON_TYPE_DATE_TIME:
            return QRY_RANK_DATE;
        case BSON_TYPE_TIMESTAMP:
            return QRY_RANK_TIMESTAMP;
        case BSON_TYPE_REGEX:
            return QRY_RANK_REGEX;
        case BSON_TYPE_DBPOINTER:
            return QRY_RANK_DBPOINTER;
        case BSON_TYPE_CODE:
            return QRY_RANK_CODE;
        case BSON_TYPE_CODEWSCOPE:
            return QRY_RANK_CODEWSCOPE;
        case BSON_TYPE_MAXKEY:
            return QRY_RANK_MAXKEY;
        default:
            return QRY_RANK_MAXKEY - 1; /* unknown types: after regex, before MaxKey */
    }
}

bool qry_is_number(bson_type_t t)
{
    return t == BSON_TYPE_DOUBLE || t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 ||
           t == BSON_TYPE_DECIMAL128;
}

double qry_number_as_double(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_DOUBLE:
            return v->value.v_double;
        case BSON_TYPE_INT32:
            return (double)v->value.v_int32;
        case BSON_TYPE_INT64:
            return (double)v->value.v_int64;
        case BSON_TYPE_DECIMAL128: {
            char s[BSON_DECIMAL128_STRING];
            bson_decimal128_to_string(&v->value.v_decimal128, s);
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
        default:
            return 0.0;
    }
}

static int sgn64(int64_t a, int64_t b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* Exact comparison of an int64 with a double (NaN below everything). */
static int cmp_i64_double(int64_t i, double d)
{
    if (isnan(d)) {
        return 1;
    }
    if (d >= 9223372036854775808.0) { /* 2^63 */
        return -1;
    }
    if (d < -9223372036854775808.0) {
        return 1;
    }
    double t = trunc(d); /* in [-2^63, 2^63): exactly representable as int64 */
    int64_t ti = (int64_t)t;
    if (i != ti) {
        return i < ti ? -1 : 1;
    }
    if (d > t) {
        return -1;
    }
    if (d < t) {
        return 1;
    }
    return 0;
}

static int cmp_double(double a, double b)
{
    bool an = isnan(a), bn = isnan(b);
    if (an || bn) {
        return an && bn ? 0 : (an ? -1 : 1);
    }
    return a < b ? -1 : (a > b ? 1 : 0);
}

static int cmp_numbers(const bson_value_t *a, const bson_value_t *b)
{
    bson_type_t ta = a->value_type, tb = b->value_type;
    bool ai = ta == BSON_TYPE_INT32 || ta == BSON_TYPE_INT64;
    bool bi = tb == BSON_TYPE_INT32 || tb == BSON_TYPE_INT64;
    int64_t ia = ta == BSON_TYPE_INT32 ? a->value.v_int32 : (ai ? a->value.v_int64 : 0);
    int64_t ib = tb == BSON_TYPE_INT32 ? b->value.v_int32 : (bi ? b->value.v_int64 : 0);
    if (ai && bi) {
        return sgn64(ia, ib);
    }
    if (ai) {
        return cmp_i64_double(ia, qry_number_as_double(b));
    }
    if (bi) {
        return -cmp_i64_double(ib, qry_number_as_double(a));
    }
    return cmp_double(qry_number_as_double(a), qry_number_as_double(b));
}

static int cmp_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c < 0 ? -1 : 1;
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static int sgn_int(int c)
{
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

/* Nesting beyond this depth (MongoDB stores at most ~180 levels) is compared
 * byte-wise, a deterministic total order that bounds the recursion. */
#define MAX_CMP_DEPTH 400

static int cmp_value(const bson_value_t *a, const bson_value_t *b, int depth);

static int cmp_doc(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen, int depth)
{
    bson_iter_t ia, ib;
    if (depth > MAX_CMP_DEPTH) {
        return cmp_bytes(a, a ? alen : 0, b, b ? blen : 0);
    }
    bool oka = a && bson_iter_init_from_data(&ia, a, alen);
    bool okb = b && bson_iter_init_from_data(&ib, b, blen);
    for (;;) {
        bool ha = oka && bson_iter_next(&ia);
        bool hb = okb && bson_iter_next(&ib);
        if (!ha || !hb) {
            return ha == hb ? 0 : (ha ? 1 : -1);
        }
        int ra = qry_type_rank(bson_iter_type(&ia));
        int rb = qry_type_rank(bson_iter_type(&ib));
        if (ra != rb) {
            return ra < rb ? -1 : 1;
        }
        int c = strcmp(bson_iter_key(&ia), bson_iter_key(&ib));
        if (c != 0) {
            return sgn_int(c);
        }
        c = cmp_value(bson_iter_value(&ia), bson_iter_value(&ib), depth + 1);
        if (c != 0) {
            return c;
        }
    }
}

int qry_cmp_doc_data(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
    return cmp_doc(a, alen, b, blen, 0);
}

int qry_cmp(const bson_value_t *a, const bson_value_t *b)
{
    return cmp_value(a, b, 0);
}

static int cmp_value(const bson_value_t *a, const bson_value_t *b, int depth)
{
    int ra = qry_type_rank(a->value_type);
    int rb = qry_type_rank(b->value_type);
    if (ra != rb) {
        return ra < rb ? -1 : 1;
    }
    switch (a->value_type) {
        case BSON_TYPE_MINKEY:
        case BSON_TYPE_MAXKEY:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
        case BSON_TYPE_EOD:
            return 0;
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DECIMAL128:
            return cmp_numbers(a, b);
        case BSON_TYPE_UTF8:
        case BSON_TYPE_SYMBOL: {
            const char *sa, *sb;
            size_t la, lb;
            if (a->value_type == BSON_TYPE_UTF8) {
                sa = a->value.v_utf8.str;
                la = a->value.v_utf8.len;
            } else {
                sa = a->value.v_symbol.symbol;
                la = a->value.v_symbol.len;
            }
            if (b->value_type == BSON_TYPE_UTF8) {
                sb = b->value.v_utf8.str;
                lb = b->value.v_utf8.len;
            } else {
                sb = b->value.v_symbol.symbol;
                lb = b->value.v_symbol.len;
            }
            return cmp_bytes(sa, la, sb, lb);
        }
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            return cmp_doc(a->value.v_doc.data, a->value.v_doc.data_len, b->value.v_doc.data,
                           b->value.v_doc.data_len, depth);
        case BSON_TYPE_BINARY:
            if (a->value.v_binary.data_len != b->value.v_binary.data_len) {
                return a->value.v_binary.data_len < b->value.v_binary.data_len ? -1 : 1;
            }
            if (a->value.v_binary.subtype != b->value.v_binary.subtype) {
                return a->value.v_binary.subtype < b->value.v_binary.subtype ? -1 : 1;
            }
            return cmp_bytes(a->value.v_binary.data, a->value.v_binary.data_len,
                             b->value.v_binary.data, b->value.v_binary.data_len);
        case BSON_TYPE_OID:
            return sgn_int(memcmp(a->value.v_oid.bytes, b->value.v_oid.bytes, 12));
        case BSON_TYPE_BOOL:
            return (int)a->value.v_bool - (int)b->value.v_bool;
        case BSON_TYPE_DATE_TIME:
            return sgn64(a->value.v_datetime, b->value.v_datetime);
        case BSON_TYPE_TIMESTAMP:
            if (a->value.v_timestamp.timestamp != b->value.v_timestamp.timestamp) {
                return a->value.v_timestamp.timestamp < b->value.v_timestamp.timestamp ? -1 : 1;
            }
            if (a->value.v_timestamp.increment != b->value.v_timestamp.increment) {
                return a->value.v_timestamp.increment < b->value.v_timestamp.increment ? -1 : 1;
            }
            return 0;
        case BSON_TYPE_REGEX: {
            int c = strcmp(a->value.v_regex.regex ? a->value.v_regex.regex : "",
                           b->value.v_regex.regex ? b->value.v_regex.regex : "");
            if (c != 0) {
                return sgn_int(c);
            }
            return sgn_int(strcmp(a->value.v_regex.options ? a->value.v_regex.options : "",
                                  b->value.v_regex.options ? b->value.v_regex.options : ""));
        }
        case BSON_TYPE_DBPOINTER: {
            uint32_t la = a->value.v_dbpointer.collection_len;
            uint32_t lb = b->value.v_dbpointer.collection_len;
            if (la != lb) {
                return la < lb ? -1 : 1;
            }
            int c =
                cmp_bytes(a->value.v_dbpointer.collection, la, b->value.v_dbpointer.collection, lb);
            if (c != 0) {
                return c;
            }
            return sgn_int(
                memcmp(a->value.v_dbpointer.oid.bytes, b->value.v_dbpointer.oid.bytes, 12));
        }
        case BSON_TYPE_CODE:
            return cmp_bytes(a->value.v_code.code, a->value.v_code.code_len, b->value.v_code.code,
                             b->value.v_code.code_len);
        case BSON_TYPE_CODEWSCOPE: {
            int c = cmp_bytes(a->value.v_codewscope.code, a->value.v_codewscope.code_len,
                              b->value.v_codewscope.code, b->value.v_codewscope.code_len);
            if (c != 0) {
                return c;
            }
            return cmp_doc(a->value.v_codewscope.scope_data, a->value.v_codewscope.scope_len,
                           b->value.v_codewscope.scope_data, b->value.v_codewscope.scope_len,
                           depth);
        }
        default:
            return 0;
    }
}

int qry_cmp_docs(const bson_t *a, const bson_t *b)
{
    return qry_cmp_doc_data(bson_get_data(a), a->len, bson_get_data(b), b->len);
}
