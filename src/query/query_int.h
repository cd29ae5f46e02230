/*
 * query_int.h: private helpers shared inside the query layer (compare.c,
 * path.c, matcher*.c, and the update/projection/sort/pipeline files).
 * Not for use outside src/query. Stable: other query files rely on it.
 */
#ifndef CAIRN_QUERY_QUERY_INT_H
#define CAIRN_QUERY_QUERY_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "query/query.h"

/* ---- interrupt.c ------------------------------------------------------- */

/* 0 while the operation running on this thread (lib/op.h; none: always 0)
 * may go on; else sets err (50 MaxTimeMSExpired, 11601 Interrupted, ...)
 * and returns its CAIRN_E* code. Cheap (cairn_op_poll: a relaxed load and
 * a coarse clock read), so loops call it per element. Thread-safe. */
int qry_check_interrupt(struct cairn_error *err);

/* ---- sortspill.c ------------------------------------------------------- */

/* The spill file of one sort or $group: an anonymous temporary file of the
 * spill directory (qry_set_spill_dir) holding all its runs, so it costs one
 * descriptor however many runs it writes. Created by the first
 * qry_run_write; freed (closed, and so deleted) by qry_spill_free after
 * every run in it was freed. NULL is a no-op. */
struct qry_spill;
void qry_spill_free(struct qry_spill *sp);

/* A sorted run of documents: a range of a spill file. */
struct qry_run;

/* True once a spill directory is set. */
bool qry_spill_enabled(void);

/* Appends docs[0..n) (in that order; not consumed) to the spill file *sp
 * (created when NULL) as a new run, ready to be read back; the run reads
 * from *sp, which must outlive it. Errors: 14031 OutOfDiskSpace when the
 * disk is full or the run would go below the floor (qry_set_spill_floor),
 * 1 InternalError for other I/O failures or no spill directory, ENOMEM. */
int qry_run_write(struct qry_spill **sp,
                  bson_t *const *docs,
                  size_t n,
                  struct qry_run **out,
                  struct cairn_error *err);

/* The run's next document (owned by the caller): 1, 0 at the end, -1 with
 * err set. */
int qry_run_next(struct qry_run *r, bson_t **doc, struct cairn_error *err);

/* Frees the run (its range of the file stays until qry_spill_free). NULL is
 * a no-op. */
void qry_run_free(struct qry_run *r);

/* ---- compare.c --------------------------------------------------------- */

/* Type ranks returned by qry_type_rank (all > 0, ascending in BSON order). */
enum {
    QRY_RANK_MINKEY = 1,
    QRY_RANK_UNDEFINED = 2, /* also the rank of a missing field (EOO) */
    QRY_RANK_NULL = 3,
    QRY_RANK_NUMBER = 4,
    QRY_RANK_STRING = 5, /* string and symbol */
    QRY_RANK_OBJECT = 6,
    QRY_RANK_ARRAY = 7,
    QRY_RANK_BINARY = 8,
    QRY_RANK_OID = 9,
    QRY_RANK_BOOL = 10,
    QRY_RANK_DATE = 11,
    QRY_RANK_TIMESTAMP = 12,
    QRY_RANK_REGEX = 13,
    QRY_RANK_DBPOINTER = 14,
    QRY_RANK_CODE = 15,
    QRY_RANK_CODEWSCOPE = 16,
    QRY_RANK_MAXKEY = 17,
};

/* True for double, int32, int64 and decimal128. */
bool qry_is_number(bson_type_t t);

/* The value of a number as a double (decimal128 converted through its
 * string form, so possibly rounded); 0 for non-numbers. */
double qry_number_as_double(const bson_value_t *v);

/* Compares two raw BSON documents (data/len views) in qry_cmp order. */
int qry_cmp_doc_data(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);

/* ---- path.c ------------------------------------------------------------ */

/* Visitor for qry_path_walk. `it` is positioned on the reached value, or is
 * NULL when the path is missing at that point. `array_elem` is true when the
 * value is an element of a leaf array yielded by expansion. Return true to
 * stop the walk early. */
typedef bool (*qry_path_visit_fn)(void *arg, const bson_iter_t *it, bool array_elem);

/* Walks dotted `path` through the raw document `data`/`len` with MongoDB's
 * query semantics: embedded documents are followed; at an array, a numeric
 * component indexes it AND every document element of the array is searched
 * for the component (nested arrays are not traversed implicitly). At the
 * leaf, the value is visited; if it is an array and `expand_leaf` is set,
 * each of its elements is visited too (after the array itself). A document
 * (also inside an array) that lacks the component yields a missing visit
 * (it == NULL); if the walk visits nothing at all, one missing visit is
 * made. Returns true when the visitor stopped the walk. Reentrant. */
bool qry_path_walk(const uint8_t *data,
                   uint32_t len,
                   const char *path,
                   bool expand_leaf,
                   qry_path_visit_fn fn,
                   void *arg);

/* qry_path_find on a raw document. */
bool qry_path_find_data(const uint8_t *data, uint32_t len, const char *path, bson_iter_t *out);

/* ---- matcher.c, matcher_eval.c ----------------------------------------- */

/* Matches `m` against a raw document (data/len view). */
bool qry_matcher_match_data(const struct qry_matcher *m, const uint8_t *data, uint32_t len);

/* Compiles the operator part of a field condition, for callers that test
 * single values rather than documents ($pull with a condition on scalars,
 * $elemMatch-like uses): `spec` is either an operator document
 * ({$gt: 1, $lt: 5}) or, when `spec` is not an operator document, an
 * equality to it. The result tests values with qry_matcher_match_value.
 * Errors as qry_matcher_compile. */
int qry_matcher_compile_value(const bson_value_t *spec,
                              struct qry_matcher **out,
                              struct cairn_error *err);

/* Tests one value against a matcher made by qry_matcher_compile_value (the
 * value is treated like the field "" of a document, so arrays match when an
 * element matches). For a matcher made by qry_matcher_compile, a document
 * value is matched as a document and any other value does not match. */
bool qry_matcher_match_value(const struct qry_matcher *m, const bson_value_t *v);

/* Number classes and the exponent bias of the index key encoding, written
 * by keyenc.c and read back by keydec.c (one definition for both). */
enum qry_key_num_class {
    NUM_NAN = 1,
    NUM_NEG_INF = 2,
    NUM_NEG = 3,
    NUM_ZERO = 4,
    NUM_POS = 5,
    NUM_POS_INF = 6,
};
#define EXP_BIAS 2000

#endif /* CAIRN_QUERY_QUERY_INT_H */
