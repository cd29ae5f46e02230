/*
 * expr.c: the aggregation expression language (MongoDB semantics): field
 * paths, variables ($$ROOT, $$CURRENT, $$REMOVE), literals, document and
 * array expressions, and the operators listed in `ops` below.
 *
 * A compiled expression is a tree of `struct qry_expr` nodes (expr_int.h),
 * which this file builds and frees. Evaluation (expr_eval.c) walks it and
 * produces owned bson_value_t values, where BSON_TYPE_EOD stands for
 * "missing"; expr_int.h lists the files of the operator families.
 */
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/expr_int.h"
#include "query/query.h"

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

/* ---- compile ----------------------------------------------------------- */

void qry_expr_free(struct qry_expr *e)
{
    if (!e) {
        return;
    }
    if (e->kind == EK_LIT) {
        ex_release(&e->lit);
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
        ex_set_missing(&e->lit);
    }
    return e;
}

int ex_oom(struct cairn_error *err)
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
            return ex_oom(err);
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
            return ex_oom(err);
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
        return ex_oom(err);
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
        return ex_oom(err);
    }
    e->kids = nk;
    if (name || e->names) {
        char **nn = realloc(e->names, (e->n + 1) * sizeof *nn);
        if (!nn) {
            qry_expr_free(kid);
            return ex_oom(err);
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
            return ex_oom(err);
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
        return ex_oom(err);
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
                return ex_oom(err);
            }
            bson_value_copy(spec, &e->lit);
            *out = e;
            return 0;
    }
    if (spec->value_type == BSON_TYPE_ARRAY) {
        e = node(EK_ARR);
        if (!e) {
            return ex_oom(err);
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
        return ex_oom(err);
    }
    e->names = calloc(1, sizeof *e->names);
    if (!e->names) {
        qry_expr_free(e);
        return ex_oom(err);
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
