/*
 * expr_eval.c: evaluating a compiled aggregation expression (the tree of
 * expr_int.h) against a document: field paths, the operator dispatch
 * (short-circuiting $and $or $cond $ifNull; the comparisons, $not,
 * $strLenBytes, $size, $in, $isArray and $type inline; the other operator
 * families in expr_arith.c, expr_string.c and expr_array.c), and
 * qry_expr_eval / qry_expr_append.
 *
 * Field paths follow aggregation rules: an array met along a path maps the
 * rest of the path over its subdocument elements (non-document elements are
 * skipped), numeric components are field names.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/expr.h"
#include "query/expr_int.h"
#include "query/query.h"
#include "query/query_int.h"

/* ---- evaluation: paths --------------------------------------------------- */

static void copy_doc_value(const bson_t *d, bson_value_t *out, bson_type_t t)
{
    memset(out, 0, sizeof *out);
    out->value_type = t;
    out->value.v_doc.data_len = d->len;
    out->value.v_doc.data = bson_malloc(d->len);
    memcpy(out->value.v_doc.data, bson_get_data(d), d->len);
}

static bool iter_subdoc(const bson_iter_t *it, bson_t *sub)
{
    const uint8_t *data = NULL;
    uint32_t len = 0;
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_document(it, &len, &data);
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_array(it, &len, &data);
    } else {
        return false;
    }
    return data && bson_init_static(sub, data, len);
}

static int path_eval(const bson_t *doc, char *const *parts, size_t n, bson_value_t *out);

/* Maps the rest of a path over the elements of an array. */
static int path_eval_array(const bson_t *arr, char *const *parts, size_t n, bson_value_t *out)
{
    bson_t res, sub;
    bson_iter_t it;
    uint32_t idx = 0;
    bson_init(&res);
    if (bson_iter_init(&it, arr)) {
        while (bson_iter_next(&it)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !iter_subdoc(&it, &sub)) {
                continue;
            }
            bson_value_t v;
            path_eval(&sub, parts, n, &v);
            if (v.value_type != BSON_TYPE_EOD) {
                char buf[16];
                const char *key;
                size_t kl = bson_uint32_to_string(idx++, &key, buf, sizeof buf);
                bson_append_value(&res, key, (int)kl, &v);
                bson_value_destroy(&v);
            }
        }
    }
    return qry_value_take_bson(out, &res, BSON_TYPE_ARRAY);
}

static int path_eval(const bson_t *doc, char *const *parts, size_t n, bson_value_t *out)
{
    bson_iter_t it;
    bson_t sub;
    ex_set_missing(out);
    if (n == 0) {
        copy_doc_value(doc, out, BSON_TYPE_DOCUMENT);
        return 0;
    }
    if (!bson_iter_init_find(&it, doc, parts[0])) {
        return 0;
    }
    if (n == 1) {
        bson_value_copy(bson_iter_value(&it), out);
        return 0;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&it) && iter_subdoc(&it, &sub)) {
        return path_eval(&sub, parts + 1, n - 1, out);
    }
    if (BSON_ITER_HOLDS_ARRAY(&it) && iter_subdoc(&it, &sub)) {
        return path_eval_array(&sub, parts + 1, n - 1, out);
    }
    return 0;
}

/* ---- evaluation: helpers --------------------------------------------------- */

static int eval(const struct qry_expr *e,
                const bson_t *root,
                bson_value_t *out,
                struct cairn_error *err);

/* Evaluates all children of `e` into vals[] (caller-provided, e->n long). */
static int eval_args(const struct qry_expr *e,
                     const bson_t *root,
                     bson_value_t *vals,
                     struct cairn_error *err)
{
    for (size_t i = 0; i < e->n; i++) {
        ex_set_missing(&vals[i]);
    }
    for (size_t i = 0; i < e->n; i++) {
        int rv = eval(e->kids[i], root, &vals[i], err);
        if (rv) {
            for (size_t j = 0; j < i; j++) {
                ex_release(&vals[j]);
            }
            return rv;
        }
    }
    return 0;
}

static void release_all(bson_value_t *vals, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ex_release(&vals[i]);
    }
}

bool ex_value_doc(const bson_value_t *v, bson_t *b)
{
    return (v->value_type == BSON_TYPE_ARRAY || v->value_type == BSON_TYPE_DOCUMENT) &&
           bson_init_static(b, v->value.v_doc.data, v->value.v_doc.data_len);
}

/* Shortest decimal form of a double that reads back exactly. */
static void format_double(double d, char *buf, size_t cap)
{
    if (isnan(d)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, cap, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) {
            return;
        }
    }
}

static void format_date(int64_t ms, char *buf, size_t cap)
{
    int64_t secs = ms / 1000;
    int64_t rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, cap, "%" PRId64, ms);
        return;
    }
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
}

int ex_coerce_string(const bson_value_t *v,
                     const char *op,
                     bson_value_t *out,
                     struct cairn_error *err)
{
    char buf[64];
    switch (v->value_type) {
        case BSON_TYPE_EOD:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            return ex_set_string(out, "", 0, err);
        case BSON_TYPE_UTF8:
            return ex_set_string(out, v->value.v_utf8.str, v->value.v_utf8.len, err);
        case BSON_TYPE_SYMBOL:
            return ex_set_string(out, v->value.v_symbol.symbol, v->value.v_symbol.len, err);
        case BSON_TYPE_INT32:
            snprintf(buf, sizeof buf, "%" PRId32, v->value.v_int32);
            break;
        case BSON_TYPE_INT64:
            snprintf(buf, sizeof buf, "%" PRId64, v->value.v_int64);
            break;
        case BSON_TYPE_DOUBLE:
            format_double(v->value.v_double, buf, sizeof buf);
            break;
        case BSON_TYPE_DECIMAL128:
            bson_decimal128_to_string(&v->value.v_decimal128, buf);
            break;
        case BSON_TYPE_DATE_TIME:
            format_date(v->value.v_datetime, buf, sizeof buf);
            break;
        case BSON_TYPE_TIMESTAMP:
            snprintf(buf, sizeof buf, "Timestamp(%" PRIu32 ", %" PRIu32 ")",
                     v->value.v_timestamp.timestamp, v->value.v_timestamp.increment);
            break;
        default:
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CannotConvertToString,
                                     "%s: can't convert from BSON type %s to String", op,
                                     qry_type_name(v->value_type));
    }
    return ex_set_string(out, buf, strlen(buf), err);
}

/* ---- evaluation: dispatch ------------------------------------------------ */

static int eval_op(const struct qry_expr *e,
                   const bson_t *root,
                   bson_value_t *out,
                   struct cairn_error *err)
{
    bson_value_t stackv[4];
    bson_value_t *a = stackv;
    int rv = 0;

    /* Short-circuiting operators evaluate lazily. */
    if (e->op == OP_AND || e->op == OP_OR) {
        bool want = e->op == OP_OR;
        for (size_t i = 0; i < e->n; i++) {
            bson_value_t v;
            rv = eval(e->kids[i], root, &v, err);
            if (rv) {
                return rv;
            }
            bool t = qry_value_truthy(&v);
            ex_release(&v);
            if (t == want) {
                ex_set_bool(out, want);
                return 0;
            }
        }
        ex_set_bool(out, !want);
        return 0;
    }
    if (e->op == OP_COND) {
        bson_value_t c;
        rv = eval(e->kids[0], root, &c, err);
        if (rv) {
            return rv;
        }
        bool t = qry_value_truthy(&c);
        ex_release(&c);
        return eval(e->kids[t ? 1 : 2], root, out, err);
    }
    if (e->op == OP_IFNULL) {
        for (size_t i = 0; i < e->n; i++) {
            rv = eval(e->kids[i], root, out, err);
            if (rv) {
                return rv;
            }
            if (i + 1 == e->n || !ex_nullish(out)) {
                return 0;
            }
            ex_release(out);
        }
        return 0;
    }

    if (e->n > sizeof stackv / sizeof stackv[0]) {
        a = calloc(e->n, sizeof *a);
        if (!a) {
            return ex_oom(err);
        }
    }
    rv = eval_args(e, root, a, err);
    if (rv) {
        if (a != stackv) {
            free(a);
        }
        return rv;
    }
    switch (e->op) {
        case OP_ADD:
        case OP_MUL:
            rv = ex_op_add_mul(e, a, out, err);
            break;
        case OP_SUB:
            rv = ex_op_subtract(a, out, err);
            break;
        case OP_DIV:
        case OP_MOD:
            rv = ex_op_div_mod(e, a, out, err);
            break;
        case OP_ABS:
        case OP_CEIL:
        case OP_FLOOR:
        case OP_ROUND:
        case OP_TRUNC:
            rv = ex_op_unary_num(e, a, out, err);
            break;
        case OP_EQ:
        case OP_NE:
        case OP_GT:
        case OP_GTE:
        case OP_LT:
        case OP_LTE:
        case OP_CMP: {
            int c = qry_value_cmp(&a[0], &a[1]);
            bool b = false;
            switch (e->op) {
                case OP_EQ:
                    b = c == 0;
                    break;
                case OP_NE:
                    b = c != 0;
                    break;
                case OP_GT:
                    b = c > 0;
                    break;
                case OP_GTE:
                    b = c >= 0;
                    break;
                case OP_LT:
                    b = c < 0;
                    break;
                case OP_LTE:
                    b = c <= 0;
                    break;
                default:
                    break;
            }
            if (e->op == OP_CMP) {
                ex_set_int32(out, c < 0 ? -1 : c > 0 ? 1 : 0);
            } else {
                ex_set_bool(out, b);
            }
            break;
        }
        case OP_NOT:
            ex_set_bool(out, !qry_value_truthy(&a[0]));
            break;
        case OP_CONCAT:
            rv = ex_op_concat(a, e->n, out, err);
            break;
        case OP_TOLOWER:
        case OP_TOUPPER:
            rv = ex_op_case(e, a, out, err);
            break;
        case OP_SUBSTR:
            rv = ex_op_substr(e, a, out, err);
            break;
        case OP_STRLEN:
            if (a[0].value_type != BSON_TYPE_UTF8) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_StrLenBytesNotString,
                                       "$strLenBytes requires a string argument, found: %s",
                                       qry_type_name(a[0].value_type));
            } else if (a[0].value.v_utf8.len > INT32_MAX) {
                ex_set_int64(out, a[0].value.v_utf8.len);
            } else {
                ex_set_int32(out, (int32_t)a[0].value.v_utf8.len);
            }
            break;
        case OP_SIZE: {
            bson_t arr;
            if (a[0].value_type != BSON_TYPE_ARRAY || !ex_value_doc(&a[0], &arr)) {
                rv = cairn_error_mongo(
                    err, CAIRN_EINVAL, MONGO_LOC_SizeNotArray,
                    "The argument to $size must be an array. Type of the argument "
                    "was: %s",
                    qry_type_name(a[0].value_type));
            } else {
                ex_set_int32(out, (int32_t)bson_count_keys(&arr));
            }
            break;
        }
        case OP_ELEMAT:
            rv = ex_op_elemat(a, out, err);
            break;
        case OP_IN: {
            bson_t arr;
            bson_iter_t it;
            bool found = false;
            if (a[1].value_type != BSON_TYPE_ARRAY || !ex_value_doc(&a[1], &arr)) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_InNotArray,
                                       "$in requires an array as a second argument, found: %s",
                                       qry_type_name(a[1].value_type));
                break;
            }
            if (bson_iter_init(&it, &arr)) {
                while (!found && bson_iter_next(&it)) {
                    found = qry_value_cmp(&a[0], bson_iter_value(&it)) == 0;
                }
            }
            ex_set_bool(out, found);
            break;
        }
        case OP_ISARRAY:
            ex_set_bool(out, a[0].value_type == BSON_TYPE_ARRAY);
            break;
        case OP_CONCATARRAYS:
            rv = ex_op_concat_arrays(a, e->n, out, err);
            break;
        case OP_SUMX:
        case OP_AVGX:
        case OP_MINX:
        case OP_MAXX:
            rv = ex_op_fold(e, a, out, err);
            break;
        case OP_MERGE:
            rv = ex_op_merge(a, e->n, out, err);
            break;
        case OP_TYPE: {
            const char *tn = qry_type_name(a[0].value_type);
            rv = ex_set_string(out, tn, strlen(tn), err);
            break;
        }
        default:
            rv = ex_op_convert(e, a, out, err);
            break;
    }
    release_all(a, e->n);
    if (a != stackv) {
        free(a);
    }
    if (rv) {
        ex_release(out);
    }
    return rv;
}

static int eval(const struct qry_expr *e,
                const bson_t *root,
                bson_value_t *out,
                struct cairn_error *err)
{
    ex_set_missing(out);
    switch (e->kind) {
        case EK_LIT:
            if (e->lit.value_type != BSON_TYPE_EOD) {
                bson_value_copy(&e->lit, out);
            }
            return 0;
        case EK_PATH:
            if (e->remove) {
                return 0;
            }
            return path_eval(root, e->parts, e->nparts, out);
        case EK_DOC:
        case EK_ARR: {
            bson_t b;
            bson_init(&b);
            for (size_t i = 0; i < e->n; i++) {
                bson_value_t v;
                int rv = eval(e->kids[i], root, &v, err);
                if (rv) {
                    bson_destroy(&b);
                    return rv;
                }
                if (e->kind == EK_DOC) {
                    if (v.value_type != BSON_TYPE_EOD) {
                        bson_append_value(&b, e->names[i], -1, &v);
                    }
                } else {
                    char buf[16];
                    const char *key;
                    size_t kl = bson_uint32_to_string((uint32_t)i, &key, buf, sizeof buf);
                    if (v.value_type == BSON_TYPE_EOD) {
                        bson_append_null(&b, key, (int)kl);
                    } else {
                        bson_append_value(&b, key, (int)kl, &v);
                    }
                }
                ex_release(&v);
                if (b.len > QRY_MAX_VALUE_BYTES) {
                    bson_destroy(&b);
                    return qry_too_large(err);
                }
            }
            return qry_value_take_bson(out, &b,
                                       e->kind == EK_DOC ? BSON_TYPE_DOCUMENT : BSON_TYPE_ARRAY);
        }
        default: {
            /* Operators may loop ($map, $filter, $reduce...): maxTimeMS and
             * killOp are noticed here, every few operator evaluations. */
            int irv = qry_check_interrupt(err);
            if (irv) {
                return irv;
            }
            return eval_op(e, root, out, err);
        }
    }
}

int qry_expr_eval(const struct qry_expr *e,
                  const bson_t *root,
                  bson_value_t *out,
                  struct cairn_error *err)
{
    return eval(e, root, out, err);
}

int qry_expr_append(const struct qry_expr *e,
                    const bson_t *root,
                    bson_t *dst,
                    const char *key,
                    int keylen,
                    struct cairn_error *err)
{
    bson_value_t v;
    int rv = eval(e, root, &v, err);
    if (rv) {
        return rv;
    }
    if (v.value_type != BSON_TYPE_EOD) {
        if (!bson_append_value(dst, key, keylen, &v) || dst->len > QRY_MAX_VALUE_BYTES) {
            rv = qry_too_large(err);
        }
        bson_value_destroy(&v);
    }
    return rv;
}
