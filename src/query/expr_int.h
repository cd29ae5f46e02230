/*
 * expr_int.h: the private interface between the files of the aggregation
 * expression language (expr.h): the compiled tree (struct qry_expr) and
 * the helpers and operators the files share. Not for use outside
 * src/query.
 *
 *   expr.c          compiling an expression into the tree (the `ops`
 *                   table of operators and their arities); freeing it
 *   expr_eval.c     evaluating the tree: field paths, the operator
 *                   dispatch (short-circuiting, comparison, logic and
 *                   type operators inline), qry_expr_eval/append
 *   expr_arith.c    arithmetic: $add $subtract $multiply $divide $mod,
 *                   $abs $ceil $floor $round $trunc, $sum $avg $min $max
 *   expr_string.c   strings and conversions: $concat $toLower $toUpper
 *                   $substr, $toString $toInt $toLong $toDouble $toBool
 *   expr_array.c    arrays and objects: $arrayElemAt $concatArrays
 *                   $mergeObjects
 *   expr_value.c    values: constructors, truthiness, comparison,
 *                   numeric sums (qry_numsum_*)
 *
 * Values are bson_value_t; BSON_TYPE_EOD means "missing". Unless a
 * comment says otherwise, functions that take a struct cairn_error report
 * failures in it (with mongod's code) and return its code, and are
 * reentrant.
 */
#ifndef CAIRN_QUERY_EXPR_INT_H
#define CAIRN_QUERY_EXPR_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "query/expr.h"

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

/* ---- expr_value.c ------------------------------------------------------- */

/* Constructors: overwrite *v (without releasing what it held) with a
 * missing value, null, a bool, an int32, an int64 or a double. */
void ex_set_missing(bson_value_t *v);
void ex_set_null(bson_value_t *v);
void ex_set_bool(bson_value_t *v, bool b);
void ex_set_int32(bson_value_t *v, int32_t i);
void ex_set_int64(bson_value_t *v, int64_t i);
void ex_set_double(bson_value_t *v, double d);

/* Overwrites *v with a string; takes ownership of the malloc'd `s`
 * (length len). */
void ex_set_string_owned(bson_value_t *v, char *s, size_t len);

/* Overwrites *v with an owned copy of s[0..len). Returns 0. */
int ex_set_string(bson_value_t *v, const char *s, size_t len, struct cairn_error *err);

/* Releases an owned value (a missing one owns nothing) and leaves it
 * missing. */
void ex_release(bson_value_t *v);

/* True for missing, null and undefined. */
bool ex_nullish(const bson_value_t *v);

/* True for int32, int64, double and decimal128. */
bool ex_is_num(const bson_value_t *v);

/* A number as a double (decimal128 through its string form); 0 for other
 * types. */
double ex_num_d(const bson_value_t *v);

/* An int32 or int64 as an int64 (other types: the int64 member). */
int64_t ex_num_i(const bson_value_t *v);

/* Sets `err` to 238 NotImplemented ("`op` on decimal128 values is not
 * supported yet") and returns CAIRN_EUNSUPPORTED. */
int ex_decimal_unsupported(struct cairn_error *err, const char *op);

/* ---- expr.c ------------------------------------------------------------- */

/* Sets `err` to CAIRN_ENOMEM (out of memory compiling an expression) and
 * returns it. */
int ex_oom(struct cairn_error *err);

/* ---- expr_eval.c -------------------------------------------------------- */

/* Initialises `b` as a read-only view of an array or document value;
 * false for other types. */
bool ex_value_doc(const bson_value_t *v, bson_t *b);

/* String coercion used by $toLower/$toUpper/$substr: nullish -> "",
 * numbers, dates, timestamps and strings convert into an owned *out;
 * other types fail with CannotConvertToString (the message names `op`). */
int ex_coerce_string(const bson_value_t *v,
                     const char *op,
                     bson_value_t *out,
                     struct cairn_error *err);

/* ---- the operators (expr_arith.c, expr_string.c, expr_array.c) ---------- */

/* Each evaluates one operator node over its evaluated arguments `a` (the
 * e->n or `n` values of its children, borrowed: the dispatch releases
 * them) into an owned *out. On error *out may hold a value the dispatch
 * releases. */

/* expr_arith.c: $add and $multiply; $subtract; $divide and $mod; $abs
 * $ceil $floor $round $trunc; the expression forms of $sum $avg $min
 * $max. */
int ex_op_add_mul(const struct qry_expr *e,
                  bson_value_t *a,
                  bson_value_t *out,
                  struct cairn_error *err);
int ex_op_subtract(bson_value_t *a, bson_value_t *out, struct cairn_error *err);
int ex_op_div_mod(const struct qry_expr *e,
                  bson_value_t *a,
                  bson_value_t *out,
                  struct cairn_error *err);
int ex_op_unary_num(const struct qry_expr *e,
                    bson_value_t *a,
                    bson_value_t *out,
                    struct cairn_error *err);
int ex_op_fold(const struct qry_expr *e,
               bson_value_t *a,
               bson_value_t *out,
               struct cairn_error *err);

/* expr_string.c: $concat; $toLower and $toUpper; $substr/$substrBytes;
 * the conversions $toString $toInt $toLong $toDouble $toBool. */
int ex_op_concat(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err);
int ex_op_case(const struct qry_expr *e,
               bson_value_t *a,
               bson_value_t *out,
               struct cairn_error *err);
int ex_op_substr(const struct qry_expr *e,
                 bson_value_t *a,
                 bson_value_t *out,
                 struct cairn_error *err);
int ex_op_convert(const struct qry_expr *e,
                  bson_value_t *a,
                  bson_value_t *out,
                  struct cairn_error *err);

/* expr_array.c: $arrayElemAt; $concatArrays; $mergeObjects. */
int ex_op_elemat(bson_value_t *a, bson_value_t *out, struct cairn_error *err);
int ex_op_concat_arrays(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err);
int ex_op_merge(bson_value_t *a, size_t n, bson_value_t *out, struct cairn_error *err);

#endif /* CAIRN_QUERY_EXPR_INT_H */
