/*
 * update_util.c: the small value helpers of the update code, shared through
 * update_int.h (and qry_type_name through query.h): BSON type names,
 * mongod-style rendering of values for error messages, the "field: value"
 * form of messages, the number-type test, and a stable merge sort.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/update_int.h"

const char *qry_type_name(bson_type_t t)
{
    switch (t) {
        case BSON_TYPE_DOUBLE:
            return "double";
        case BSON_TYPE_UTF8:
            return "string";
        case BSON_TYPE_DOCUMENT:
            return "object";
        case BSON_TYPE_ARRAY:
            return "array";
        case BSON_TYPE_BINARY:
            return "binData";
        case BSON_TYPE_UNDEFINED:
            return "undefined";
        case BSON_TYPE_OID:
            return "objectId";
        case BSON_TYPE_BOOL:
            return "bool";
        case BSON_TYPE_DATE_TIME:
            return "date";
        case BSON_TYPE_NULL:
            return "null";
        case BSON_TYPE_REGEX:
            return "regex";
        case BSON_TYPE_DBPOINTER:
            return "dbPointer";
        case BSON_TYPE_CODE:
            return "javascript";
        case BSON_TYPE_SYMBOL:
            return "symbol";
        case BSON_TYPE_CODEWSCOPE:
            return "javascriptWithScope";
        case BSON_TYPE_INT32:
            return "int";
        case BSON_TYPE_TIMESTAMP:
            return "timestamp";
        case BSON_TYPE_INT64:
            return "long";
        case BSON_TYPE_DECIMAL128:
            return "decimal";
        case BSON_TYPE_MINKEY:
            return "minKey";
        case BSON_TYPE_MAXKEY:
            return "maxKey";
        case BSON_TYPE_EOD:
        default:
            return "missing";
    }
}

struct sbuf
{
    char *p;
    size_t cap;
    size_t len;
    bool full;
};

static void sb_put(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_put(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (s->full) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= s->cap - s->len) {
        s->full = true;
        s->len = s->cap - 1;
        memcpy(s->p + s->cap - 4, "...", 4);
        return;
    }
    s->len += (size_t)n;
}

static void fmt_double(struct sbuf *s, double d)
{
    char tmp[40];

    if (isnan(d)) {
        sb_put(s, "nan.0");
        return;
    }
    if (isinf(d)) {
        sb_put(s, d > 0 ? "inf.0" : "-inf.0");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    if (strpbrk(tmp, ".e") == NULL) {
        sb_put(s, "%s.0", tmp);
    } else {
        sb_put(s, "%s", tmp);
    }
}

static void fmt_rec(struct sbuf *s, const bson_value_t *v, int depth);

static void fmt_container(struct sbuf *s, const bson_value_t *v, int depth)
{
    bson_t d;
    bson_iter_t it;
    bool arr = v->value_type == BSON_TYPE_ARRAY;
    bool first = true;

    if (!bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d)) {
        sb_put(s, arr ? "[ ? ]" : "{ ? }");
        return;
    }
    if (bson_empty(&d)) {
        sb_put(s, arr ? "[]" : "{}");
        return;
    }
    sb_put(s, arr ? "[ " : "{ ");
    while (bson_iter_next(&it) && !s->full) {
        if (!first) {
            sb_put(s, ", ");
        }
        first = false;
        if (!arr) {
            sb_put(s, "%s: ", bson_iter_key(&it));
        }
        fmt_rec(s, bson_iter_value(&it), depth + 1);
    }
    sb_put(s, arr ? " ]" : " }");
}

static void fmt_rec(struct sbuf *s, const bson_value_t *v, int depth)
{
    char hex[25];

    if (depth > 20) {
        sb_put(s, "...");
        return;
    }
    switch (v->value_type) {
        case BSON_TYPE_DOUBLE:
            fmt_double(s, v->value.v_double);
            break;
        case BSON_TYPE_INT32:
            sb_put(s, "%d", (int)v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            sb_put(s, "%lld", (long long)v->value.v_int64);
            break;
        case BSON_TYPE_DECIMAL128: {
            char dec[BSON_DECIMAL128_STRING];
            bson_decimal128_to_string(&v->value.v_decimal128, dec);
            sb_put(s, "NumberDecimal(\"%s\")", dec);
            break;
        }
        case BSON_TYPE_UTF8:
            sb_put(s, "\"%.*s\"", (int)v->value.v_utf8.len, v->value.v_utf8.str);
            break;
        case BSON_TYPE_SYMBOL:
            sb_put(s, "\"%.*s\"", (int)v->value.v_symbol.len, v->value.v_symbol.symbol);
            break;
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            fmt_container(s, v, depth);
            break;
        case BSON_TYPE_OID:
            bson_oid_to_string(&v->value.v_oid, hex);
            sb_put(s, "ObjectId('%s')", hex);
            break;
        case BSON_TYPE_BOOL:
            sb_put(s, v->value.v_bool ? "true" : "false");
            break;
        case BSON_TYPE_NULL:
            sb_put(s, "null");
            break;
        case BSON_TYPE_UNDEFINED:
            sb_put(s, "undefined");
            break;
        case BSON_TYPE_DATE_TIME:
            sb_put(s, "new Date(%lld)", (long long)v->value.v_datetime);
            break;
        case BSON_TYPE_TIMESTAMP:
            sb_put(s, "Timestamp(%u, %u)", (unsigned)v->value.v_timestamp.timestamp,
                   (unsigned)v->value.v_timestamp.increment);
            break;
        case BSON_TYPE_REGEX:
            sb_put(s, "/%s/%s", v->value.v_regex.regex, v->value.v_regex.options);
            break;
        case BSON_TYPE_BINARY:
            sb_put(s, "BinData(%d, ...)", (int)v->value.v_binary.subtype);
            break;
        case BSON_TYPE_MINKEY:
            sb_put(s, "MinKey");
            break;
        case BSON_TYPE_MAXKEY:
            sb_put(s, "MaxKey");
            break;
        default:
            sb_put(s, "<%s>", qry_type_name(v->value_type));
            break;
    }
}

void qry_fmt_value(const bson_value_t *v, char *buf, size_t cap)
{
    struct sbuf s = {buf, cap, 0, false};

    buf[0] = '\0';
    fmt_rec(&s, v, 0);
}

void upd_fmt_field(char *buf, size_t cap, const char *key, const bson_value_t *v)
{
    char val[200];
    qry_fmt_value(v, val, sizeof val);
    snprintf(buf, cap, "%s: %s", key, val);
}

bool upd_is_number(bson_type_t t)
{
    return t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
           t == BSON_TYPE_DECIMAL128;
}

static void
merge_pass(char *src, char *dst, size_t n, size_t size, size_t width, qry_cmp_fn cmp, void *ctx)
{
    for (size_t lo = 0; lo < n; lo += 2 * width) {
        size_t mid = lo + width < n ? lo + width : n;
        size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
        size_t i = lo, j = mid, k = lo;
        while (i < mid && j < hi) {
            if (cmp(src + j * size, src + i * size, ctx) < 0) {
                memcpy(dst + k++ * size, src + j++ * size, size);
            } else {
                memcpy(dst + k++ * size, src + i++ * size, size);
            }
        }
        while (i < mid) {
            memcpy(dst + k++ * size, src + i++ * size, size);
        }
        while (j < hi) {
            memcpy(dst + k++ * size, src + j++ * size, size);
        }
    }
}

int qry_stable_sort(void *base, size_t n, size_t size, qry_cmp_fn cmp, void *ctx)
{
    char *tmp, *src = base, *dst;

    if (n < 2) {
        return 0;
    }
    if (size != 0 && n > SIZE_MAX / size) {
        return CAIRN_ENOMEM;
    }
    tmp = malloc(n * size);
    if (tmp == NULL) {
        return CAIRN_ENOMEM;
    }
    dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        char *t;
        merge_pass(src, dst, n, size, width, cmp, ctx);
        t = src;
        src = dst;
        dst = t;
    }
    if (src != base) {
        memcpy(base, src, n * size);
    }
    free(tmp);
    return 0;
}
