/*
 * expr.h: private interface of the aggregation expression language
 * (expr*.c), used by the pipeline stages (pipeline*.c).
 *
 * An expression is compiled once from a BSON value and evaluated against a
 * document (the $$ROOT / $$CURRENT of the evaluation). Values are plain
 * bson_value_t; a value of type BSON_TYPE_EOD means "missing" (an absent
 * field or $$REMOVE), which callers drop from documents. Compiled
 * expressions are immutable and may be shared across threads; evaluation is
 * reentrant.
 */
#ifndef CAIRN_QUERY_EXPR_H
#define CAIRN_QUERY_EXPR_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"

struct qry_expr;

/* Compiles the expression `spec`: "$a.b" field paths, "$$ROOT",
 * "$$CURRENT", "$$REMOVE", literals, {$literal: v}, document and array
 * expressions and {$op: args} operators: $add $subtract $multiply $divide
 * $mod $abs $ceil $floor $round $trunc, $eq $ne $gt $gte $lt $lte $cmp,
 * $and $or $not, $cond (array and {if,then,else} forms) $ifNull, $concat
 * $toLower $toUpper $substr $substrBytes $strLenBytes, $size $arrayElemAt
 * $in $isArray $concatArrays, $type, $toString $toInt $toLong $toDouble
 * $toBool, $sum $avg $min $max (over an array argument or the argument
 * list) and $mergeObjects. Arithmetic on decimal128 fails with 238
 * NotImplemented. *out is owned by the caller
 * (qry_expr_free). Errors carry MongoDB codes: 168 InvalidPipelineOperator
 * for unknown operators, 16020 etc. for wrong arities, 15983 for operator
 * documents with several fields, 16410/16412/15998/16872 for bad paths,
 * 17276 for undefined variables. Any thread. */
int qry_expr_compile(const bson_value_t *spec, struct qry_expr **out, struct cairn_error *err);

/* Evaluates `e` with `root` as $$ROOT and $$CURRENT. On success *out holds
 * an owned value (release with bson_value_destroy; BSON_TYPE_EOD means
 * missing and needs no release). On error *out is EOD and err is set with
 * the MongoDB code (e.g. 16554 for $add on a string, 241 for failed
 * conversions). Reentrant. */
int qry_expr_eval(const struct qry_expr *e,
                  const bson_t *root,
                  bson_value_t *out,
                  struct cairn_error *err);

/* Evaluates `e` against `root` and appends the result to `dst` under
 * `key` (length `keylen`, or -1 for NUL-terminated), unless it is missing.
 * Returns 0 or the evaluation error. */
int qry_expr_append(const struct qry_expr *e,
                    const bson_t *root,
                    bson_t *dst,
                    const char *key,
                    int keylen,
                    struct cairn_error *err);

/* True for a compiled "$$REMOVE" or a field path (useful for callers that
 * need to know whether the expression can be missing). */
bool qry_expr_is_field_path(const struct qry_expr *e);

void qry_expr_free(struct qry_expr *e);

/* Compares two values like qry_cmp, but a missing (EOD) value sorts below
 * every value except MinKey, and equals another missing value. */
int qry_value_cmp(const bson_value_t *a, const bson_value_t *b);

/* Aggregation truthiness: false, null, undefined, missing and numeric zero
 * are false; everything else (including "" and []) is true. */
bool qry_value_truthy(const bson_value_t *v);

/* Numeric accumulator with MongoDB's promotion rules: int32 sums promote
 * to int64 on overflow, int64 to double; any double makes the sum a
 * double. Plain struct, zero-initialised = int32 0. */
struct qry_numsum
{
    int type; /* 0 int32, 1 int64, 2 double */
    int64_t i;
    double d;
};

/* Adds a numeric value (int32, int64, double) to `s`. Other types are the
 * caller's business. Returns 0, or CAIRN_EUNSUPPORTED (mongo code 238) for
 * decimal128, which this build cannot do arithmetic on. */
int qry_numsum_add(struct qry_numsum *s, const bson_value_t *v, struct cairn_error *err);

/* Adds the partial sum `part` to `s` as if its documents had been added:
 * the sum's type is the wider of the two (an int32 sum stays an int32 sum
 * however large its partial totals), int64 overflow turns it to double. */
void qry_numsum_merge(struct qry_numsum *s, const struct qry_numsum *part);

/* Writes the sum as a value (int32 when it fits an int32 sum, else int64,
 * or double). */
void qry_numsum_value(const struct qry_numsum *s, bson_value_t *out);

/* The sum as a double. */
double qry_numsum_double(const struct qry_numsum *s);

/* Builds an owned value of type `t` (DOCUMENT or ARRAY) from `b`, which is
 * consumed (destroyed) by this call. Returns 0 or CAIRN_ENOMEM. */
int qry_value_take_bson(bson_value_t *v, bson_t *b, bson_type_t t);

/* The largest document or value an expression or a pipeline stage may
 * build (mongod's BSONObjMaxInternalSize, 16 MiB + 16 KiB). Larger results
 * fail with 10334 BSONObjectTooLarge instead of growing without bound
 * (a few stages of $concat / $concatArrays could otherwise exhaust memory). */
#define QRY_MAX_VALUE_BYTES (16 * 1024 * 1024 + 16 * 1024)

/* Sets `err` to 10334 BSONObjectTooLarge and returns CAIRN_ETOOBIG. */
int qry_too_large(struct cairn_error *err);

#endif /* CAIRN_QUERY_EXPR_H */
