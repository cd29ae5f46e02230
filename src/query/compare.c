/*
 * compare.c: MongoDB's BSON comparison order: type ranks, exact numeric
 * comparison across int32/int64/double/decimal128 (decimal128 exactly, as
 * mongod's compare_numbers.h: Decimal128("0.1") != 0.1), and recursive
 * comparison of documents and arrays.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
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

/* A finite number as exact decimal digits: (neg ? -1 : 1) * 0.d[0..n) * 10^exp,
 * without leading or trailing zeros (n == 0 for zero). */
struct exact_dec
{
    bool neg;
    long exp;
    size_t n;
    char d[840];
};

/* Parses "[-]digits[.digits][(e|E)[+-]digits]" (printf's %e, %lld and
 * bson_decimal128_to_string's finite forms). */
static void exact_parse(const char *s, struct exact_dec *x)
{
    long ip = -1, nd = 0, lead = 0;
    x->neg = *s == '-';
    x->n = 0;
    s += (*s == '-' || *s == '+');
    for (; (*s >= '0' && *s <= '9') || *s == '.'; s++) {
        if (*s == '.') {
            ip = nd;
            continue;
        }
        if (x->n == 0 && *s == '0') {
            lead++; /* 0.0123 * 10^k == 0.123 * 10^(k-1) */
        } else if (x->n < sizeof x->d) {
            x->d[x->n++] = *s;
        }
        nd++;
    }
    long e = (*s == 'e' || *s == 'E') ? strtol(s + 1, NULL, 10) : 0;
    x->exp = (ip < 0 ? nd : ip) + e - lead;
    while (x->n > 0 && x->d[x->n - 1] == '0') {
        x->n--;
    }
}

/* -2 NaN, -1 -Inf, 0 finite, 1 +Inf */
static int num_class(const bson_value_t *v, struct exact_dec *x)
{
    char buf[sizeof x->d + 32];
    switch (v->value_type) {
        case BSON_TYPE_DOUBLE: {
            double d = v->value.v_double;
            if (isnan(d)) {
                return -2;
            }
            if (isinf(d)) {
                return d < 0 ? -1 : 1;
            }
            snprintf(buf, sizeof buf, "%.800e", d); /* exact: a double has <= 767 digits */
            break;
        }
        case BSON_TYPE_INT32:
            snprintf(buf, sizeof buf, "%" PRId32, v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            snprintf(buf, sizeof buf, "%" PRId64, v->value.v_int64);
            break;
        default:
            bson_decimal128_to_string(&v->value.v_decimal128, buf);
            if (strstr(buf, "NaN")) {
                return -2;
            }
            if (strstr(buf, "Inf")) {
                return buf[0] == '-' ? -1 : 1;
            }
            break;
    }
    exact_parse(buf, x);
    return 0;
}

static int cmp_exact(const bson_value_t *a, const bson_value_t *b)
{
    struct exact_dec xa, xb;
    int ca = num_class(a, &xa), cb = num_class(b, &xb);
    if (ca != 0 || cb != 0) {
        return ca < cb ? -1 : (ca > cb ? 1 : 0);
    }
    int sa = xa.n == 0 ? 0 : (xa.neg ? -1 : 1);
    int sb = xb.n == 0 ? 0 : (xb.neg ? -1 : 1);
    if (sa != sb || sa == 0) {
        return sa < sb ? -1 : (sa > sb ? 1 : 0);
    }
    int mag; /* |a| vs |b| */
    if (xa.exp != xb.exp) {
        mag = xa.exp < xb.exp ? -1 : 1;
    } else {
        size_t n = xa.n < xb.n ? xa.n : xb.n;
        int c = memcmp(xa.d, xb.d, n);
        mag = c != 0 ? (c < 0 ? -1 : 1) : (xa.n < xb.n ? -1 : (xa.n > xb.n ? 1 : 0));
    }
    return sa * mag;
}

static int cmp_numbers(const bson_value_t *a, const bson_value_t *b)
{
    bson_type_t ta = a->value_type, tb = b->value_type;
    if (ta == BSON_TYPE_DECIMAL128 || tb == BSON_TYPE_DECIMAL128) {
        return cmp_exact(a, b);
    }
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
    qry_probe_tick(QRY_PROBE_VALUE_CMP);
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
