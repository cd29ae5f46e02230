/*
 * expr.c: the aggregation expression language (MongoDB semantics): field
 * paths, variables ($$ROOT, $$CURRENT, $$REMOVE), literals, document and
 * array expressions, and the operators listed in `ops` below.
 *
 * A compiled expression is a tree of `struct qry_expr` nodes; evaluation
 * walks it and produces owned bson_value_t values, where BSON_TYPE_EOD
 * stands for "missing". Field paths follow aggregation rules: an array met
 * along a path maps the rest of the path over its subdocument elements
 * (non-document elements are skipped), numeric components are field names.
 */
#include "query/expr.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/query.h"

enum ekind { EK_LIT, EK_PATH, EK_DOC, EK_ARR, EK_OP };

enum eop {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_ABS,
    OP_CEIL,
    OP_FLOOR,
    OP_ROUND,
    OP_TRUNC,
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_CMP,
    OP_AND,
    OP_OR,
    OP_NOT,
    OP_COND,
    OP_IFNULL,
    OP_CONCAT,
    OP_TOLOWER,
    OP_TOUPPER,
    OP_SUBSTR,
    OP_STRLEN,
    OP_SIZE,
    OP_ELEMAT,
    OP_IN,
    OP_ISARRAY,
    OP_CONCATARRAYS,
    OP_TYPE,
    OP_TOSTRING,
    OP_TOINT,
    OP_TOLONG,
    OP_TODOUBLE,
    OP_TOBOOL,
    OP_SUMX,
    OP_AVGX,
    OP_MINX,
    OP_MAXX,
    OP_MERGE,
};

struct opdef
{
    const char *name;
    int op;
    int min, max; /* argument count; max -1 = unbounded */
};

static const struct opdef ops[] = {
    {"$add", OP_ADD, 0, -1},
    {"$subtract", OP_SUB, 2, 2},
    {"$multiply", OP_MUL, 0, -1},
    {"$divide", OP_DIV, 2, 2},
    {"$mod", OP_MOD, 2, 2},
    {"$abs", OP_ABS, 1, 1},
    {"$ceil", OP_CEIL, 1, 1},
    {"$floor", OP_FLOOR, 1, 1},
    {"$round", OP_ROUND, 1, 2},
    {"$trunc", OP_TRUNC, 1, 2},
    {"$eq", OP_EQ, 2, 2},
    {"$ne", OP_NE, 2, 2},
    {"$gt", OP_GT, 2, 2},
    {"$gte", OP_GTE, 2, 2},
    {"$lt", OP_LT, 2, 2},
    {"$lte", OP_LTE, 2, 2},
    {"$cmp", OP_CMP, 2, 2},
    {"$and", OP_AND, 0, -1},
    {"$or", OP_OR, 0, -1},
    {"$not", OP_NOT, 1, 1},
    {"$cond", OP_COND, 3, 3},
    {"$ifNull", OP_IFNULL, 2, -1},
    {"$concat", OP_CONCAT, 0, -1},
    {"$toLower", OP_TOLOWER, 1, 1},
    {"$toUpper", OP_TOUPPER, 1, 1},
    {"$substr", OP_SUBSTR, 3, 3},
    {"$substrBytes", OP_SUBSTR, 3, 3},
    {"$strLenBytes", OP_STRLEN, 1, 1},
    {"$size", OP_SIZE, 1, 1},
    {"$arrayElemAt", OP_ELEMAT, 2, 2},
    {"$in", OP_IN, 2, 2},
    {"$isArray", OP_ISARRAY, 1, 1},
    {"$concatArrays", OP_CONCATARRAYS, 0, -1},
    {"$type", OP_TYPE, 1, 1},
    {"$toString", OP_TOSTRING, 1, 1},
    {"$toInt", OP_TOINT, 1, 1},
    {"$toLong", OP_TOLONG, 1, 1},
    {"$toDouble", OP_TODOUBLE, 1, 1},
    {"$toBool", OP_TOBOOL, 1, 1},
    {"$sum", OP_SUMX, 0, -1},
    {"$avg", OP_AVGX, 0, -1},
    {"$min", OP_MINX, 0, -1},
    {"$max", OP_MAXX, 0, -1},
    {"$mergeObjects", OP_MERGE, 0, -1},
};

struct qry_expr
{
    int kind;
    int op;
    const char *opname;     /* EK_OP: static name for messages */
    bson_value_t lit;       /* EK_LIT: owned */
    char **parts;           /* EK_PATH: components below the root */
    size_t nparts;          /* EK_PATH */
    bool remove;            /* EK_PATH: $$REMOVE */
    char **names;           /* EK_DOC: field names */
    struct qry_expr **kids; /* EK_DOC, EK_ARR, EK_OP */
    size_t n;
};

/* ---- values ------------------------------------------------------------ */

static void set_missing(bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_EOD;
}

static void set_null(bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_NULL;
}

static void set_bool(bson_value_t *v, bool b)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_BOOL;
    v->value.v_bool = b;
}

static void set_int32(bson_value_t *v, int32_t i)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_INT32;
    v->value.v_int32 = i;
}

static void set_int64(bson_value_t *v, int64_t i)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_INT64;
    v->value.v_int64 = i;
}

static void set_double(bson_value_t *v, double d)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_DOUBLE;
    v->value.v_double = d;
}

/* Takes ownership of the malloc'd `s` (length len). */
static void set_string_owned(bson_value_t *v, char *s, size_t len)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_UTF8;
    v->value.v_utf8.str = s;
    v->value.v_utf8.len = (uint32_t)len;
}

static int set_string(bson_value_t *v, const char *s, size_t len, struct cairn_error *err)
{
    char *c = bson_malloc(len + 1);
    memcpy(c, s, len);
    c[len] = '\0';
    set_string_owned(v, c, len);
    return 0;
}

int qry_too_large(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                             "BSONObj size exceeds the maximum allowed size of 16793600 bytes");
}

static void release(bson_value_t *v)
{
    if (v->value_type != BSON_TYPE_EOD) {
        bson_value_destroy(v);
    }
    set_missing(v);
}

int qry_value_take_bson(bson_value_t *v, bson_t *b, bson_type_t t)
{
    uint32_t len = 0;
    uint8_t *data = bson_destroy_with_steal(b, true, &len);
    if (!data) {
        set_missing(v);
        return CAIRN_ENOMEM;
    }
    memset(v, 0, sizeof *v);
    v->value_type = t;
    v->value.v_doc.data = data;
    v->value.v_doc.data_len = len;
    return 0;
}

static bool nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
           v->value_type == BSON_TYPE_UNDEFINED;
}

static bool is_num(const bson_value_t *v)
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

static double num_d(const bson_value_t *v)
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

static int64_t num_i(const bson_value_t *v)
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
            return num_d(v) != 0;
        default:
            return true;
    }
}

/* ---- numeric sums ------------------------------------------------------ */

static int decimal_unsupported(struct cairn_error *err, const char *op)
{
    return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                             "%s on decimal128 values is not supported yet", op);
}

int qry_numsum_add(struct qry_numsum *s, const bson_value_t *v, struct cairn_error *err)
{
    if (v->value_type == BSON_TYPE_DECIMAL128) {
        return decimal_unsupported(err, "arithmetic");
    }
    if (v->value_type == BSON_TYPE_DOUBLE) {
        if (s->type < 2) {
            s->d = (double)s->i;
            s->type = 2;
        }
        s->d += v->value.v_double;
        return 0;
    }
    int64_t x = num_i(v);
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

void qry_numsum_value(const struct qry_numsum *s, bson_value_t *out)
{
    if (s->type == 2) {
        set_double(out, s->d);
    } else if (s->type == 0 && s->i >= INT32_MIN && s->i <= INT32_MAX) {
        set_int32(out, (int32_t)s->i);
    } else {
        set_int64(out, s->i);
    }
}

double qry_numsum_double(const struct qry_numsum *s)
{
    return s->type == 2 ? s->d : (double)s->i;
}

/* ---- compile ----------------------------------------------------------- */

void qry_expr_free(struct qry_expr *e)
{
    if (!e) {
        return;
    }
    if (e->kind == EK_LIT) {
        release(&e->lit);
    }
    for (size_t i = 0; i < e->nparts; i++) {
        free(e->parts[i]);
    }
    free(e->parts);
    for (size_t i = 0; i < e->n; i++) {
        if (e->names) {
            free(e->names[i]);
        }
        qry_expr_free(e->kids[i]);
    }
    free(e->names);
    free(e->kids);
    free(e);
}

static struct qry_expr *node(int kind)
{
    struct qry_expr *e = calloc(1, sizeof *e);
    if (e) {
        e->kind = kind;
        set_missing(&e->lit);
    }
    return e;
}

static int oom(struct cairn_error *err)
{
    return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory compiling an expression");
}

/* Splits "a.b.c" (without the leading '$') into e->parts, validating it. */
static int parse_path(struct qry_expr *e, const char *s, size_t len, struct cairn_error *err)
{
    size_t start = 0;
    if (len == 0) {
        return 0;
    }
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            continue;
        }
        size_t n = i - start;
        if (n == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmptyComponent,
                                     "FieldPath field names may not be empty strings.");
        }
        if (s[start] == '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDollarPrefix,
                                     "FieldPath field names may not start with '$'.");
        }
        char **np = realloc(e->parts, (e->nparts + 1) * sizeof *np);
        if (!np) {
            return oom(err);
        }
        e->parts = np;
        e->parts[e->nparts] = bson_strndup(s + start, n);
        e->nparts++;
        start = i + 1;
    }
    return 0;
}

static int compile_string(const bson_value_t *spec, struct qry_expr **out, struct cairn_error *err)
{
    const char *s = spec->value.v_utf8.str;
    size_t len = spec->value.v_utf8.len;
    struct qry_expr *e = NULL;
    int rv;
    if (len == 0 || s[0] != '$') {
        e = node(EK_LIT);
        if (!e) {
            return oom(err);
        }
        bson_value_copy(spec, &e->lit);
        *out = e;
        return 0;
    }
    if (strlen(s) != len) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathNulByte,
                                 "FieldPath field names may not contain embedded NUL bytes");
    }
    e = node(EK_PATH);
    if (!e) {
        return oom(err);
    }
    if (len >= 2 && s[1] == '$') {
        const char *var = s + 2;
        const char *dot = strchr(var, '.');
        size_t vlen = dot ? (size_t)(dot - var) : strlen(var);
        if (vlen == 4 && strncmp(var, "ROOT", 4) == 0) {
        } else if (vlen == 7 && strncmp(var, "CURRENT", 7) == 0) {
        } else if (vlen == 6 && strncmp(var, "REMOVE", 6) == 0) {
            e->remove = true;
        } else {
            qry_expr_free(e);
            if (vlen == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_VariableNameEmpty,
                                         "empty variable names are not allowed");
            }
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_VariableUndefined,
                                     "Use of undefined variable: %.*s", (int)vlen, var);
        }
        if (dot) {
            rv = parse_path(e, dot + 1, strlen(dot + 1), err);
            if (!rv && e->nparts == 0) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmptyComponent,
                                       "FieldPath field names may not be empty strings.");
            }
            if (rv) {
                qry_expr_free(e);
                return rv;
            }
        }
        *out = e;
        return 0;
    }
    if (len == 1) {
        qry_expr_free(e);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDollarOnly,
                                 "'$' by itself is not a valid FieldPath");
    }
    rv = parse_path(e, s + 1, len - 1, err);
    if (rv) {
        qry_expr_free(e);
        return rv;
    }
    *out = e;
    return 0;
}

static int add_kid(struct qry_expr *e,
                   const char *name,
                   struct qry_expr *kid,
                   struct cairn_error *err)
{
    struct qry_expr **nk = realloc(e->kids, (e->n + 1) * sizeof *nk);
    if (!nk) {
        qry_expr_free(kid);
        return oom(err);
    }
    e->kids = nk;
    if (name || e->names) {
        char **nn = realloc(e->names, (e->n + 1) * sizeof *nn);
        if (!nn) {
            qry_expr_free(kid);
            return oom(err);
        }
        e->names = nn;
        e->names[e->n] = bson_strdup(name ? name : "");
    }
    e->kids[e->n++] = kid;
    return 0;
}

static int compile_iter_value(bson_iter_t *it, struct qry_expr **out, struct cairn_error *err)
{
    return qry_expr_compile(bson_iter_value(it), out, err);
}

static int compile_operator(const char *name,
                            bson_iter_t *arg,
                            struct qry_expr **out,
                            struct cairn_error *err)
{
    const struct opdef *def = NULL;
    struct qry_expr *e, *kid;
    int rv;
    if (strcmp(name, "$literal") == 0) {
        e = node(EK_LIT);
        if (!e) {
            return oom(err);
        }
        bson_value_copy(bson_iter_value(arg), &e->lit);
        *out = e;
        return 0;
    }
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(ops[i].name, name) == 0) {
            def = &ops[i];
            break;
        }
    }
    if (!def) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidPipelineOperator,
                                 "Unrecognized expression '%s'", name);
    }
    e = node(EK_OP);
    if (!e) {
        return oom(err);
    }
    e->op = def->op;
    e->opname = def->name;
    if (def->op == OP_COND && BSON_ITER_HOLDS_DOCUMENT(arg)) {
        struct qry_expr *parts[3] = {NULL, NULL, NULL};
        static const char *const pnames[3] = {"if", "then", "else"};
        static const int missing_code[3] = {MONGO_LOC_CondMissingIf, MONGO_LOC_CondMissingThen,
                                            MONGO_LOC_CondMissingElse};
        bson_iter_t ci;
        rv = 0;
        if (!bson_iter_recurse(arg, &ci)) {
            qry_expr_free(e);
            return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "malformed $cond");
        }
        while (!rv && bson_iter_next(&ci)) {
            const char *k = bson_iter_key(&ci);
            int idx = -1;
            for (int j = 0; j < 3; j++) {
                if (strcmp(k, pnames[j]) == 0) {
                    idx = j;
                }
            }
            if (idx < 0) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CondUnknownParameter,
                                       "Unrecognized parameter to $cond: %s", k);
            } else {
                qry_expr_free(parts[idx]);
                parts[idx] = NULL;
                rv = compile_iter_value(&ci, &parts[idx], err);
            }
        }
        for (int j = 0; !rv && j < 3; j++) {
            if (!parts[j]) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, missing_code[j],
                                       "Missing '%s' parameter to $cond", pnames[j]);
            }
        }
        for (int j = 0; j < 3; j++) {
            if (rv) {
                qry_expr_free(parts[j]);
            } else if ((rv = add_kid(e, NULL, parts[j], err)) != 0) {
                for (int k = j + 1; k < 3; k++) {
                    qry_expr_free(parts[k]);
                }
            }
        }
        if (rv) {
            qry_expr_free(e);
            return rv;
        }
        *out = e;
        return 0;
    }
    if (BSON_ITER_HOLDS_ARRAY(arg)) {
        bson_iter_t ai;
        if (!bson_iter_recurse(arg, &ai)) {
            qry_expr_free(e);
            return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                     "malformed arguments to %s", name);
        }
        while (bson_iter_next(&ai)) {
            kid = NULL;
            rv = compile_iter_value(&ai, &kid, err);
            if (!rv) {
                rv = add_kid(e, NULL, kid, err);
            }
            if (rv) {
                qry_expr_free(e);
                return rv;
            }
        }
    } else {
        kid = NULL;
        rv = compile_iter_value(arg, &kid, err);
        if (!rv) {
            rv = add_kid(e, NULL, kid, err);
        }
        if (rv) {
            qry_expr_free(e);
            return rv;
        }
    }
    int n = (int)e->n;
    if (n < def->min || (def->max >= 0 && n > def->max)) {
        if (def->min == def->max) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExpressionArgCountExact,
                                   "Expression %s takes exactly %d arguments. %d were passed in.",
                                   name, def->min, n);
        } else if (def->max < 0) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExpressionArgCountMin,
                                   "Expression %s needs at least %d arguments", name, def->min);
        } else {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExpressionArgCountRange,
                                   "Expression %s takes at least %d arguments, and at most %d, "
                                   "but %d were passed in.",
                                   name, def->min, def->max, n);
        }
        qry_expr_free(e);
        return rv;
    }
    *out = e;
    return 0;
}

int qry_expr_compile(const bson_value_t *spec, struct qry_expr **out, struct cairn_error *err)
{
    struct qry_expr *e;
    bson_t doc;
    bson_iter_t it;
    int rv;
    *out = NULL;
    switch (spec->value_type) {
        case BSON_TYPE_UTF8:
            return compile_string(spec, out, err);
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            if (!bson_init_static(&doc, spec->value.v_doc.data, spec->value.v_doc.data_len) ||
                !bson_iter_init(&it, &doc)) {
                return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                         "malformed expression document");
            }
            break;
        default:
            e = node(EK_LIT);
            if (!e) {
                return oom(err);
            }
            bson_value_copy(spec, &e->lit);
            *out = e;
            return 0;
    }
    if (spec->value_type == BSON_TYPE_ARRAY) {
        e = node(EK_ARR);
        if (!e) {
            return oom(err);
        }
        while (bson_iter_next(&it)) {
            struct qry_expr *kid = NULL;
            rv = compile_iter_value(&it, &kid, err);
            if (!rv) {
                rv = add_kid(e, NULL, kid, err);
            }
            if (rv) {
                qry_expr_free(e);
                return rv;
            }
        }
        *out = e;
        return 0;
    }
    /* A document: either {$op: args} or a document expression. */
    uint32_t nkeys = bson_count_keys(&doc);
    bson_iter_t first = it;
    if (nkeys > 0 && bson_iter_next(&first) && bson_iter_key(&first)[0] == '$') {
        if (nkeys != 1) {
            char *json = bson_as_relaxed_extended_json(&doc, NULL);
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ExpressionNotOneField,
                                   "an expression specification must contain exactly one field, "
                                   "the name of the expression. Found %u fields in %s",
                                   nkeys, json ? json : "{...}");
            bson_free(json);
            return rv;
        }
        return compile_operator(bson_iter_key(&first), &first, out, err);
    }
    e = node(EK_DOC);
    if (!e) {
        return oom(err);
    }
    e->names = calloc(1, sizeof *e->names);
    if (!e->names) {
        qry_expr_free(e);
        return oom(err);
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        struct qry_expr *kid = NULL;
        if (k[0] == '$') {
            qry_expr_free(e);
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDollarPrefix,
                                     "FieldPath field names may not start with '$'. Consider "
                                     "using $getField or $setField.");
        }
        if (strchr(k, '.')) {
            qry_expr_free(e);
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_FieldPathDot,
                                     "FieldPath field names may not contain '.'.");
        }
        rv = compile_iter_value(&it, &kid, err);
        if (!rv) {
            rv = add_kid(e, k, kid, err);
        }
        if (rv) {
            qry_expr_free(e);
            return rv;
        }
    }
    *out = e;
    return 0;
}

bool qry_expr_is_field_path(const struct qry_expr *e)
{
    return e->kind == EK_PATH;
}

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
    set_missing(out);
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
        set_missing(&vals[i]);
    }
    for (size_t i = 0; i < e->n; i++) {
        int rv = eval(e->kids[i], root, &vals[i], err);
        if (rv) {
            for (size_t j = 0; j < i; j++) {
                release(&vals[j]);
            }
            return rv;
        }
    }
    return 0;
}

static void release_all(bson_value_t *vals, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        release(&vals[i]);
    }
}

static bool value_doc(const bson_value_t *v, bson_t *b)
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

/* String coercion used by $toLower/$toUpper/$substr: nullish -> "",
 * numbers, dates, timestamps and strings convert; others fail. */
static int coerce_string(const bson_value_t *v,
                         const char *op,
                         bson_value_t *out,
                         struct cairn_error *err)
{
    char buf[64];
    switch (v->value_type) {
        case BSON_TYPE_EOD:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            return set_string(out, "", 0, err);
        case BSON_TYPE_UTF8:
            return set_string(out, v->value.v_utf8.str, v->value.v_utf8.len, err);
        case BSON_TYPE_SYMBOL:
            return set_string(out, v->value.v_symbol.symbol, v->value.v_symbol.len, err);
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
    return set_string(out, buf, strlen(buf), err);
}

/* ---- evaluation: operators ------------------------------------------------ */

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

static int op_add_mul(const struct qry_expr *e,
                      bson_value_t *a,
                      bson_value_t *out,
                      struct cairn_error *err)
{
    bool is_add = e->op == OP_ADD;
    struct qry_numsum s = {0, is_add ? 0 : 1, is_add ? 0.0 : 1.0};
    bool have_date = false;
    int64_t date = 0;
    for (size_t i = 0; i < e->n; i++) {
        if (nullish(&a[i])) {
            set_null(out);
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
        if (!is_num(v)) {
            return cairn_error_mongo(
                err, CAIRN_EINVAL, is_add ? MONGO_LOC_AddNotNumeric : MONGO_LOC_MultiplyNotNumeric,
                "%s only supports numeric%s types, not %s", e->opname, is_add ? " or date" : "",
                qry_type_name(v->value_type));
        }
        if (v->value_type == BSON_TYPE_DECIMAL128) {
            return decimal_unsupported(err, e->opname);
        }
        if (is_add) {
            qry_numsum_add(&s, v, err);
        } else if (v->value_type == BSON_TYPE_DOUBLE || s.type == 2) {
            s.d = qry_numsum_double(&s) * num_d(v);
            s.type = 2;
        } else {
            int64_t r;
            if (__builtin_mul_overflow(s.i, num_i(v), &r)) {
                s.d = (double)s.i * (double)num_i(v);
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

static int op_subtract(bson_value_t *a, bson_value_t *out, struct cairn_error *err)
{
    const bson_value_t *x = &a[0], *y = &a[1];
    if (nullish(x) || nullish(y)) {
        set_null(out);
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
            set_int64(out, r);
            return 0;
        }
        if (is_num(y) && y->value_type != BSON_TYPE_DECIMAL128) {
            if (!date_plus(x->value.v_datetime, -num_d(y), &r)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_Overflow,
                                         "date overflow in $subtract");
            }
            out->value_type = BSON_TYPE_DATE_TIME;
            out->value.v_datetime = r;
            return 0;
        }
    } else if (is_num(x) && is_num(y)) {
        if (x->value_type == BSON_TYPE_DECIMAL128 || y->value_type == BSON_TYPE_DECIMAL128) {
            return decimal_unsupported(err, "$subtract");
        }
        if (x->value_type == BSON_TYPE_DOUBLE || y->value_type == BSON_TYPE_DOUBLE) {
            set_double(out, num_d(x) - num_d(y));
            return 0;
        }
        int64_t r = 0;
        if (__builtin_sub_overflow(num_i(x), num_i(y), &r)) {
            set_double(out, num_d(x) - num_d(y));
        } else if (x->value_type == BSON_TYPE_INT32 && y->value_type == BSON_TYPE_INT32 &&
                   r >= INT32_MIN && r <= INT32_MAX) {
            set_int32(out, (int32_t)r);
        } else {
            set_int64(out, r);
        }
        return 0;
    }
    return type_err(err, MONGO_LOC_SubtractBadTypes, "can't $subtract %s from %s",
                    qry_type_name(y->value_type), qry_type_name(x->value_type));
}

static int op_div_mod(const struct qry_expr *e,
                      bson_value_t *a,
                      bson_value_t *out,
                      struct cairn_error *err)
{
    const bson_value_t *x = &a[0], *y = &a[1];
    bool div = e->op == OP_DIV;
    if (nullish(x) || nullish(y)) {
        set_null(out);
        return 0;
    }
    if (!is_num(x) || !is_num(y)) {
        return cairn_error_mongo(err, CAIRN_EINVAL,
                                 div ? MONGO_LOC_DivideNotNumeric : MONGO_LOC_ModNotNumeric,
                                 "%s only supports numeric types, not %s and %s", e->opname,
                                 qry_type_name(x->value_type), qry_type_name(y->value_type));
    }
    if (x->value_type == BSON_TYPE_DECIMAL128 || y->value_type == BSON_TYPE_DECIMAL128) {
        return decimal_unsupported(err, e->opname);
    }
    if (num_d(y) == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, div ? MONGO_BadValue : MONGO_LOC_ModByZero,
                                 "can't %s by zero", e->opname);
    }
    if (div) {
        set_double(out, num_d(x) / num_d(y));
        return 0;
    }
    if (x->value_type == BSON_TYPE_DOUBLE || y->value_type == BSON_TYPE_DOUBLE) {
        set_double(out, fmod(num_d(x), num_d(y)));
        return 0;
    }
    int64_t xi = num_i(x), yi = num_i(y);
    int64_t r = (yi == -1) ? 0 : xi % yi;
    if (x->value_type == BSON_TYPE_INT32 && y->value_type == BSON_TYPE_INT32) {
        set_int32(out, (int32_t)r);
    } else {
        set_int64(out, r);
    }
    return 0;
}

/* $abs $ceil $floor $round $trunc */
static int op_unary_num(const struct qry_expr *e,
                        bson_value_t *a,
                        bson_value_t *out,
                        struct cairn_error *err)
{
    const bson_value_t *x = &a[0];
    int64_t place = 0;
    if (nullish(x)) {
        set_null(out);
        return 0;
    }
    if (!is_num(x)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnaryMathNotNumeric,
                                 "%s only supports numeric types, not %s", e->opname,
                                 qry_type_name(x->value_type));
    }
    if (x->value_type == BSON_TYPE_DECIMAL128) {
        return decimal_unsupported(err, e->opname);
    }
    if ((e->op == OP_ROUND || e->op == OP_TRUNC) && e->n == 2) {
        const bson_value_t *p = &a[1];
        if (nullish(p)) {
            set_null(out);
            return 0;
        }
        double pd = is_num(p) ? num_d(p) : NAN;
        if (!is_num(p) || pd != floor(pd) || pd < -20 || pd > 100) {
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
        set_double(out, r);
        return 0;
    }
    int64_t i = num_i(x);
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
                set_double(out, (double)q * (double)p10);
                return 0;
            }
        }
    }
    if (x->value_type == BSON_TYPE_INT32 && i >= INT32_MIN && i <= INT32_MAX) {
        set_int32(out, (int32_t)i);
    } else {
        set_int64(out, i);
    }
    return 0;
}

static int op_concat(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (nullish(&a[i])) {
            set_null(out);
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
    set_string_owned(out, s, total);
    return 0;
}

static int op_case(const struct qry_expr *e,
                   bson_value_t *a,
                   bson_value_t *out,
                   struct cairn_error *err)
{
    int rv = coerce_string(&a[0], e->opname, out, err);
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

static int op_substr(const struct qry_expr *e,
                     bson_value_t *a,
                     bson_value_t *out,
                     struct cairn_error *err)
{
    bson_value_t s;
    int rv;
    if (!is_num(&a[1])) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrStartNotNumber,
                                 "%s: starting index must be a numeric type (is BSON type %s)",
                                 e->opname, qry_type_name(a[1].value_type));
    }
    if (!is_num(&a[2])) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrLengthNotNumber,
                                 "%s: length must be a numeric type (is BSON type %s)", e->opname,
                                 qry_type_name(a[2].value_type));
    }
    double ds = num_d(&a[1]), dl = num_d(&a[2]);
    if (!(ds >= 0)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrStartNegative,
                                 "%s: starting index must be non-negative (got: %g)", e->opname,
                                 ds);
    }
    rv = coerce_string(&a[0], e->opname, &s, err);
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
        release(&s);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrStartMidCharacter,
                                 "%s:  Invalid range, starting index is a UTF-8 continuation "
                                 "byte.",
                                 e->opname);
    }
    if (start + cnt < len && utf8_cont(p[start + cnt])) {
        release(&s);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SubstrEndMidCharacter,
                                 "%s:  Invalid range, ending index is in the middle of a UTF-8 "
                                 "character.",
                                 e->opname);
    }
    rv = set_string(out, (const char *)p + start, cnt, err);
    release(&s);
    return rv;
}

static int op_elemat(bson_value_t *a, bson_value_t *out, struct cairn_error *err)
{
    bson_t arr;
    bson_iter_t it;
    if (nullish(&a[0]) || nullish(&a[1])) {
        set_null(out);
        return 0;
    }
    if (a[0].value_type != BSON_TYPE_ARRAY) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ArrayElemAtNotArray,
                                 "$arrayElemAt's first argument must be an array, but is %s",
                                 qry_type_name(a[0].value_type));
    }
    if (!is_num(&a[1])) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ArrayElemAtIndexNotNumber,
                                 "$arrayElemAt's second argument must be a numeric value, but "
                                 "is %s",
                                 qry_type_name(a[1].value_type));
    }
    double d = num_d(&a[1]);
    if (d != floor(d) || d < INT32_MIN || d > INT32_MAX) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ArrayElemAtIndexNotInt32,
                                 "$arrayElemAt's second argument must be representable as a "
                                 "32-bit integer: %g",
                                 d);
    }
    int64_t idx = (int64_t)d;
    if (!value_doc(&a[0], &arr)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "malformed array");
    }
    int64_t n = bson_count_keys(&arr);
    if (idx < 0) {
        idx += n;
    }
    set_missing(out);
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

static int op_concat_arrays(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err)
{
    bson_t res, arr;
    bson_iter_t it;
    uint32_t idx = 0;
    for (size_t i = 0; i < n; i++) {
        if (nullish(&a[i])) {
            set_null(out);
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
        if (!value_doc(&a[i], &arr) || !bson_iter_init(&it, &arr)) {
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

static int op_convert(const struct qry_expr *e,
                      bson_value_t *a,
                      bson_value_t *out,
                      struct cairn_error *err)
{
    const bson_value_t *v = &a[0];
    if (nullish(v)) {
        set_null(out);
        return 0;
    }
    switch (e->op) {
        case OP_TOSTRING: {
            char buf[64];
            switch (v->value_type) {
                case BSON_TYPE_BOOL:
                    return set_string(out, v->value.v_bool ? "true" : "false",
                                      v->value.v_bool ? 4 : 5, err);
                case BSON_TYPE_OID:
                    bson_oid_to_string(&v->value.v_oid, buf);
                    return set_string(out, buf, strlen(buf), err);
                case BSON_TYPE_UTF8:
                case BSON_TYPE_INT32:
                case BSON_TYPE_INT64:
                case BSON_TYPE_DOUBLE:
                case BSON_TYPE_DECIMAL128:
                case BSON_TYPE_DATE_TIME:
                    return coerce_string(v, e->opname, out, err);
                default:
                    return conv_fail(err, v, "string");
            }
        }
        case OP_TOBOOL:
            set_bool(out, qry_value_truthy(v));
            return 0;
        case OP_TODOUBLE:
            switch (v->value_type) {
                case BSON_TYPE_BOOL:
                    set_double(out, v->value.v_bool ? 1 : 0);
                    return 0;
                case BSON_TYPE_INT32:
                case BSON_TYPE_INT64:
                case BSON_TYPE_DOUBLE:
                case BSON_TYPE_DECIMAL128:
                    set_double(out, num_d(v));
                    return 0;
                case BSON_TYPE_DATE_TIME:
                    set_double(out, (double)v->value.v_datetime);
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
                    set_double(out, d);
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
                    r = num_i(v);
                    break;
                case BSON_TYPE_DOUBLE:
                case BSON_TYPE_DECIMAL128: {
                    double d = num_d(v);
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
                set_int32(out, (int32_t)r);
            } else {
                set_int64(out, r);
            }
            return 0;
        }
    }
}

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
    if (!nullish(v)) {
        int c = f->best ? qry_cmp(v, f->best) : 0;
        if (!f->best || (op == OP_MINX ? c < 0 : c > 0)) {
            f->best = v;
        }
    }
    return 0;
}

static int op_fold(const struct qry_expr *e,
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
        if (value_doc(&a[0], &arr) && bson_iter_init(&it, &arr)) {
            while (!rv && bson_iter_next(&it)) {
                bson_value_t *v = (bson_value_t *)bson_iter_value(&it);
                rv = fold_one(e->op, &f, v, err);
                if (!rv && f.best == v) {
                    /* the iterator's value storage is reused: keep a copy */
                    release(out);
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
        release(out);
        return rv;
    }
    switch (e->op) {
        case OP_SUMX:
            qry_numsum_value(&f.sum, out);
            break;
        case OP_AVGX:
            if (f.cnt) {
                set_double(out, qry_numsum_double(&f.sum) / (double)f.cnt);
            } else {
                set_null(out);
            }
            break;
        default:
            if (!f.best) {
                set_null(out);
            }
            break;
    }
    return 0;
}

static int op_merge(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err)
{
    bson_t acc = BSON_INITIALIZER;
    for (size_t i = 0; i < n; i++) {
        bson_t d, next = BSON_INITIALIZER;
        bson_iter_t it, ni;
        if (nullish(&a[i])) {
            continue;
        }
        if (a[i].value_type != BSON_TYPE_DOCUMENT || !value_doc(&a[i], &d)) {
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
            release(&v);
            if (t == want) {
                set_bool(out, want);
                return 0;
            }
        }
        set_bool(out, !want);
        return 0;
    }
    if (e->op == OP_COND) {
        bson_value_t c;
        rv = eval(e->kids[0], root, &c, err);
        if (rv) {
            return rv;
        }
        bool t = qry_value_truthy(&c);
        release(&c);
        return eval(e->kids[t ? 1 : 2], root, out, err);
    }
    if (e->op == OP_IFNULL) {
        for (size_t i = 0; i < e->n; i++) {
            rv = eval(e->kids[i], root, out, err);
            if (rv) {
                return rv;
            }
            if (i + 1 == e->n || !nullish(out)) {
                return 0;
            }
            release(out);
        }
        return 0;
    }

    if (e->n > sizeof stackv / sizeof stackv[0]) {
        a = calloc(e->n, sizeof *a);
        if (!a) {
            return oom(err);
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
            rv = op_add_mul(e, a, out, err);
            break;
        case OP_SUB:
            rv = op_subtract(a, out, err);
            break;
        case OP_DIV:
        case OP_MOD:
            rv = op_div_mod(e, a, out, err);
            break;
        case OP_ABS:
        case OP_CEIL:
        case OP_FLOOR:
        case OP_ROUND:
        case OP_TRUNC:
            rv = op_unary_num(e, a, out, err);
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
                set_int32(out, c < 0 ? -1 : c > 0 ? 1 : 0);
            } else {
                set_bool(out, b);
            }
            break;
        }
        case OP_NOT:
            set_bool(out, !qry_value_truthy(&a[0]));
            break;
        case OP_CONCAT:
            rv = op_concat(a, e->n, out, err);
            break;
        case OP_TOLOWER:
        case OP_TOUPPER:
            rv = op_case(e, a, out, err);
            break;
        case OP_SUBSTR:
            rv = op_substr(e, a, out, err);
            break;
        case OP_STRLEN:
            if (a[0].value_type != BSON_TYPE_UTF8) {
                rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_StrLenBytesNotString,
                                       "$strLenBytes requires a string argument, found: %s",
                                       qry_type_name(a[0].value_type));
            } else if (a[0].value.v_utf8.len > INT32_MAX) {
                set_int64(out, a[0].value.v_utf8.len);
            } else {
                set_int32(out, (int32_t)a[0].value.v_utf8.len);
            }
            break;
        case OP_SIZE: {
            bson_t arr;
            if (a[0].value_type != BSON_TYPE_ARRAY || !value_doc(&a[0], &arr)) {
                rv = cairn_error_mongo(
                    err, CAIRN_EINVAL, MONGO_LOC_SizeNotArray,
                    "The argument to $size must be an array. Type of the argument "
                    "was: %s",
                    qry_type_name(a[0].value_type));
            } else {
                set_int32(out, (int32_t)bson_count_keys(&arr));
            }
            break;
        }
        case OP_ELEMAT:
            rv = op_elemat(a, out, err);
            break;
        case OP_IN: {
            bson_t arr;
            bson_iter_t it;
            bool found = false;
            if (a[1].value_type != BSON_TYPE_ARRAY || !value_doc(&a[1], &arr)) {
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
            set_bool(out, found);
            break;
        }
        case OP_ISARRAY:
            set_bool(out, a[0].value_type == BSON_TYPE_ARRAY);
            break;
        case OP_CONCATARRAYS:
            rv = op_concat_arrays(a, e->n, out, err);
            break;
        case OP_SUMX:
        case OP_AVGX:
        case OP_MINX:
        case OP_MAXX:
            rv = op_fold(e, a, out, err);
            break;
        case OP_MERGE:
            rv = op_merge(a, e->n, out, err);
            break;
        case OP_TYPE: {
            const char *tn = qry_type_name(a[0].value_type);
            rv = set_string(out, tn, strlen(tn), err);
            break;
        }
        default:
            rv = op_convert(e, a, out, err);
            break;
    }
    release_all(a, e->n);
    if (a != stackv) {
        free(a);
    }
    if (rv) {
        release(out);
    }
    return rv;
}

static int eval(const struct qry_expr *e,
                const bson_t *root,
                bson_value_t *out,
                struct cairn_error *err)
{
    set_missing(out);
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
                release(&v);
                if (b.len > QRY_MAX_VALUE_BYTES) {
                    bson_destroy(&b);
                    return qry_too_large(err);
                }
            }
            return qry_value_take_bson(out, &b,
                                       e->kind == EK_DOC ? BSON_TYPE_DOCUMENT : BSON_TYPE_ARRAY);
        }
        default:
            return eval_op(e, root, out, err);
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
