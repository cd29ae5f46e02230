/*
 * query.h: document logic, free of storage and networking. BSON comparison
 * in MongoDB order, the order-preserving _id key encoding, filter matching,
 * update operators, projection, sort and aggregation stages.
 *
 * Depends only on lib and libbson; any layer may use it. Every object here
 * is immutable after compile and may be shared across threads; the apply /
 * match functions are reentrant.
 *
 * Errors are reported through struct cairn_error with `mongo_code` set to
 * the MongoDB code a client must see (2 BadValue, 9 FailedToParse,
 * 14 TypeMismatch, 40 ConflictingUpdateOperators, 66 ImmutableField, ...)
 * and a message worded like mongod's.
 */
#ifndef CAIRN_QUERY_QUERY_H
#define CAIRN_QUERY_QUERY_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "lib/buf.h"

/* ---- BSON order (compare.c) -------------------------------------------- */

/* The canonical sort rank of a BSON type, as MongoDB orders types:
 * MinKey < Undefined/Null < numbers (double, int32, int64, decimal128) <
 * string/symbol < object < array < binary < ObjectId < bool < date <
 * timestamp < regex < MaxKey (others after regex, before MaxKey).
 * Returns a small integer; equal ranks compare by value. */
int qry_type_rank(bson_type_t t);

/* Compares two values in MongoDB's BSON order: by type rank, then by value.
 * Numbers compare numerically across int32/int64/double/decimal128 (NaN is
 * below every other number); strings byte-wise; documents field by field
 * (type rank, field name, value); arrays element by element; binary by
 * length, subtype, bytes; booleans false < true; dates and timestamps as
 * integers; regexes by pattern then flags. Returns <0, 0 or >0. */
int qry_cmp(const bson_value_t *a, const bson_value_t *b);

/* ---- Work counters (probe.c) -------------------------------------------- */

/* Complexity probes: how much work of a kind the process has done, so
 * tests can tell O(n) from O(n^2) without timing (serverStatus
 * metrics.query.*). Approximate: threads add their counts in steps. */
enum qry_probe {
    QRY_PROBE_VALUE_CMP, /* qry_cmp calls: valueComparisons */
    QRY_PROBE_KEY_CMP,   /* index key comparisons: indexKeyComparisons */
    QRY_PROBE_NAME_CMP,  /* projection field-name probes: fieldNameComparisons */
    QRY_PROBE_COUNT
};

/* Counts one unit of work. Any thread; cheap (thread-local). */
void qry_probe_tick(enum qry_probe which);

/* The process's count so far. Any thread. */
uint64_t qry_probe_count(enum qry_probe which);

/* Compares two BSON documents as embedded documents (qry_cmp order). */
int qry_cmp_docs(const bson_t *a, const bson_t *b);

/* mongod's name of a BSON type ("double", "string", "object", "int",
 * "long", "objectId", ...; "missing" for BSON_TYPE_EOD), as error messages
 * and $type show it. Static string. */
const char *qry_type_name(bson_type_t t);

/* ---- Key encoding (keyenc.c) ------------------------------------------- */

/* Appends the order-preserving encoding of `v` to `out`: memcmp order of
 * encodings equals qry_cmp order of values, values equal under qry_cmp
 * (1, 1.0, NumberLong(1)) encode identically, and no encoding is a proper
 * prefix of another (self-delimiting), so engine keys can follow it.
 * Returns 0, CAIRN_ENOMEM, or CAIRN_EINVAL for values that cannot be an _id
 * (arrays, regexes, undefined) with mongo_code 2. */
int qry_key_encode(const bson_value_t *v, struct cairn_buf *out, struct cairn_error *err);

/* Like qry_key_encode for any value (arrays, regexes, undefined included:
 * index keys hold them; null and undefined share an encoding). Same order
 * and self-delimiting properties. Returns 0 or CAIRN_ENOMEM. */
int qry_key_encode_any(const bson_value_t *v, struct cairn_buf *out, struct cairn_error *err);

/* ---- Paths (path.c) ---------------------------------------------------- */

/* Finds the value at dotted `path` following embedded documents and, for
 * numeric components, array indexes (no implicit array traversal). Returns
 * true and positions `out` on it, false when absent. */
bool qry_path_find(const bson_t *doc, const char *path, bson_iter_t *out);

/* ---- Filter matching (matcher*.c) -------------------------------------- */

struct qry_matcher;

/* Compiles a query filter: implicit equality, $eq $ne $gt $gte $lt $lte $in
 * $nin $exists $type $and $or $nor $not $regex (with $options) $elemMatch
 * $size $all, dotted paths with MongoDB's array rules (a path matches if any
 * array element along it matches; equality to a whole array also matches).
 * Unknown operators fail with mongo_code 2 "unknown operator: $foo";
 * malformed arguments with 2 BadValue. *out is owned by the caller. */
int qry_matcher_compile(const bson_t *filter, struct qry_matcher **out, struct cairn_error *err);

/* True when `doc` matches. */
bool qry_matcher_match(const struct qry_matcher *m, const bson_t *doc);

/* Like qry_matcher_match, and on a match sets *pos to the array position
 * the positional update operator `$` refers to (mongod's "elemMatchKey"):
 * the index, in the first array met along a predicate's path, of the
 * element the predicate matched through (the last such predicate of an
 * $and wins; $or of several clauses, $nor and $not give none). *pos is -1
 * when the match went through no array element. */
bool qry_matcher_match_pos(const struct qry_matcher *m, const bson_t *doc, long *pos);

/* When the filter pins _id to one value by equality ({_id: v} or
 * {_id: {$eq: v}}, possibly inside a top-level $and), sets *id to a view of
 * that value (valid while the matcher lives) and returns true. */
bool qry_matcher_id_equality(const struct qry_matcher *m, bson_value_t *id);

void qry_matcher_free(struct qry_matcher *m);

/* ---- Updates (update.c) ------------------------------------------------ */

struct qry_update;

/* Compiles an update document: either a replacement document (no top-level
 * $-keys) or operators $set $unset $inc $mul $min $max $rename $push (with
 * $each, $slice, $position, $sort) $pull $addToSet (with $each) $pop
 * $currentDate $setOnInsert. Errors: unknown modifier (9 FailedToParse
 * "Unknown modifier: $foo"), empty operator spec, paths that conflict
 * (40 ConflictingUpdateOperators), mixed replacement/operators. */
int qry_update_compile(const bson_t *update, struct qry_update **out, struct cairn_error *err);

/* qry_update_compile with the arrayFilters option: `array_filters` is
 * NULL (option absent) or the option's array (as a bson_t with keys "0",
 * "1", ...), each entry a filter document whose single top-level field name
 * (through $and/$or/$nor) is an identifier ([a-z][a-zA-Z0-9]*) that update
 * paths name as "$[<identifier>]". Paths may also hold "$" (the element
 * the query matched, see qry_update_apply_pos) and "$[]" (every element).
 * Errors as mongod 7.0: malformed filters ("Error parsing array filter ::
 * caused by :: ..." with the filter's code; 9 for a filter without or with
 * two top-level names or a duplicate identifier; 2 for a bad identifier),
 * 2 for "$" twice or first in a path, an identifier first in a path or
 * without a filter, a positional $rename path; 40 for paths that conflict
 * in mongod's update tree; 9 for a filter the update does not use. A
 * replacement ignores array filters (they are still parsed). */
int qry_update_compile_af(const bson_t *update,
                          const bson_t *array_filters,
                          struct qry_update **out,
                          struct cairn_error *err);

/* True when the update has a "$" path component: the caller then passes
 * the query's matched array position to qry_update_apply_pos. */
bool qry_update_needs_match_pos(const struct qry_update *u);

/* True for a replacement-style update. */
bool qry_update_is_replacement(const struct qry_update *u);

/* Applies `u` to `doc`, writing the result to `out` (initialised by the
 * callee with bson_init; the caller destroys it). `inserting` is true when
 * building an upsert's new document ($setOnInsert applies only then).
 * `now_ms` is the wall time for $currentDate. *modified tells whether the
 * result differs from `doc`. The _id of `doc` must not change
 * (66 ImmutableField). Type errors: 14 TypeMismatch; others 2 BadValue.
 * A replacement keeps the original _id (and may repeat it, not change it). */
int qry_update_apply(const struct qry_update *u,
                     const bson_t *doc,
                     bool inserting,
                     int64_t now_ms,
                     bson_t *out,
                     bool *modified,
                     struct cairn_error *err);

/* qry_update_apply with the position `match_pos` (from
 * qry_matcher_match_pos; -1 when none, as for an upsert's insert) that "$"
 * path components stand for. Positional paths are expanded against `doc`
 * first. Errors as mongod: 2 "The positional operator did not find the
 * match needed from the query." for "$" without a position; 2 when a
 * "$[...]" component meets a missing path ("The path 'a' must exist in the
 * document in order to apply array updates.") or a non-array ("Cannot
 * apply array updates to non-array element a: 1"); 40 "Update created a
 * conflict at '...'" when two expanded paths meet. */
int qry_update_apply_pos(const struct qry_update *u,
                         const bson_t *doc,
                         bool inserting,
                         int64_t now_ms,
                         long match_pos,
                         bson_t *out,
                         bool *modified,
                         struct cairn_error *err);

/* Builds the seed document of an upsert from the equality conditions of
 * `filter` ({a: 1, "b.c": 2, $and: [...]} -> {a: 1, b: {c: 2}}); operators
 * other than $eq and $and contribute nothing. `out` is initialised by the
 * callee. Returns 0 or an error for unusable filters. */
int qry_upsert_seed(const bson_t *filter, bson_t *out, struct cairn_error *err);

void qry_update_free(struct qry_update *u);

/* ---- Projection (projection.c) ----------------------------------------- */

struct qry_projection;

/* Compiles a find() projection: inclusion ({a: 1, "b.c": 1}) or exclusion
 * ({a: 0}), _id included unless excluded, $slice, $elemMatch. Mixing
 * inclusion and exclusion (other than _id) fails with 31254/31253 like
 * mongod. An empty spec projects nothing away. */
int qry_projection_compile(const bson_t *spec,
                           struct qry_projection **out,
                           struct cairn_error *err);

/* Writes the projected `doc` to `out` (initialised by the callee). */
int qry_projection_apply(const struct qry_projection *p,
                         const bson_t *doc,
                         bson_t *out,
                         struct cairn_error *err);

void qry_projection_free(struct qry_projection *p);

/* ---- Sort (sort.c) ----------------------------------------------------- */

struct qry_sort;

/* Compiles a sort spec {a: 1, "b.c": -1}. Values must be 1 or -1 (or
 * {$meta: ...}, rejected as unsupported): else 2 BadValue. */
int qry_sort_compile(const bson_t *spec, struct qry_sort **out, struct cairn_error *err);

/* Orders two documents by the spec. Missing fields sort like null; an array
 * field sorts by its smallest element ascending, its largest descending. */
int qry_sort_cmp(const struct qry_sort *s, const bson_t *a, const bson_t *b);

void qry_sort_free(struct qry_sort *s);

/* ---- Server-wide result memory (membudget.c) --------------------------- */

/* Query results held in memory (blocking sorts while they run, pipeline
 * output while it is built, materialised cursor results until they are
 * sent) are charged against one process-wide budget, default
 * QRY_MEM_BUDGET_DEFAULT (the cairnQueryMemoryBudgetBytes parameter). */
#define QRY_MEM_BUDGET_DEFAULT ((size_t)1024 * 1024 * 1024)

/* Charges `bytes`. Fails, charging nothing, with 146 ExceededMemoryLimit
 * (CAIRN_ETOOBIG) when the total would pass the budget. Any thread. */
int qry_mem_charge(size_t bytes, struct cairn_error *err);

/* Releases bytes charged before. Any thread. */
void qry_mem_release(size_t bytes);

/* Bytes charged now, and the budget (settable at any time: lowering it
 * refuses new charges, never takes back held ones). Any thread. */
size_t qry_mem_held(void);
size_t qry_mem_budget(void);
void qry_set_mem_budget(size_t bytes);

/* ---- $group memory (pipeline_group.c) ------------------------------------ */

/* The most bytes a $group's table may hold before it spills (allowDiskUse)
 * or fails with 292: mongod's internalDocumentSourceGroupMaxMemoryBytes,
 * default QRY_GROUP_MEM_DEFAULT. Process-wide; any thread. */
#define QRY_GROUP_MEM_DEFAULT ((size_t)100 * 1024 * 1024)
size_t qry_group_mem_limit(void);
void qry_set_group_mem_limit(size_t bytes);

/* ---- Blocking sort (sortbuf.c) ----------------------------------------- */

struct qry_sortbuf;

/* The most bytes a blocking sort (find's and $sort's) may hold: mongod's
 * internalQueryMaxBlockingSortMemoryUsageBytes, default
 * QRY_SORT_MEM_DEFAULT. Process-wide; any thread. */
#define QRY_SORT_MEM_DEFAULT ((size_t)100 * 1024 * 1024)
size_t qry_sort_mem_limit(void);
void qry_set_sort_mem_limit(size_t bytes);

/* A buffer sorting documents by `sort` (borrowed; must outlive the
 * buffer). `keep` > 0 keeps only the `keep` first documents in sort order
 * (a top-k heap: O(keep) memory, O(n log keep) time), 0 keeps all.
 * `max_bytes` (0 = none) caps the bytes held; `what` (may be NULL) prefixes
 * the 292 message ("Executor error during find command :: caused by :: ").
 * Errors: CAIRN_ENOMEM. *out is the caller's (qry_sortbuf_free). */
int qry_sortbuf_new(const struct qry_sort *sort,
                    uint64_t keep,
                    size_t max_bytes,
                    const char *what,
                    struct qry_sortbuf **out,
                    struct cairn_error *err);

/* Offers `doc` (copied when kept; the bytes kept are charged to the
 * server-wide budget, qry_mem_charge, until finish or free). Fails with 292
 * QueryExceededMemoryLimitNoDiskUseAllowed once the bytes held pass the
 * cap, 146 when the server-wide budget is spent, or CAIRN_ENOMEM. */
int qry_sortbuf_add(struct qry_sortbuf *b, const bson_t *doc, struct cairn_error *err);

/* Hands over the kept documents in sort order (ties in arrival order):
 * *docs is a malloc'd array of *n owned bson_t * (NULL when none); the
 * buffer is left empty. Not after qry_sortbuf_done; a spilled buffer reads
 * its runs back into memory. Errors: CAIRN_ENOMEM, I/O as
 * qry_sortbuf_next. */
int qry_sortbuf_finish(struct qry_sortbuf *b, bson_t ***docs, size_t *n, struct cairn_error *err);

/* Sets the directory sorts spill to (<dbpath>/_tmp), once at start-up
 * before any sort runs; NULL or "" turns spilling off. The directory must
 * exist; runs are anonymous files in it (unlinked at creation). At most
 * RLIMIT_NOFILE/16 (at least 8) sorts hold a spill file at once (read
 * here); one more fails with 264 TooManyFilesOpen. */
void qry_set_spill_dir(const char *dir);

/* Sets the free space a spill must leave in the spill directory's
 * filesystem (the member's --diskFreeFloorMB; 0 = none), once at start-up:
 * a run that would take the free space below it is not written and the
 * sort or $group fails with 14031 OutOfDiskSpace, as mongod refuses to
 * spill below internalQuerySpillingMinAvailableDiskSpaceBytes. Spilling
 * must not make the member refuse writes or hold applying (§36). */
void qry_set_spill_floor(uint64_t bytes);

/* Says the client asked for allowDiskUse: past the cap, the buffer writes
 * its documents to disk as a sorted run (when a spill directory is set)
 * and goes on; a limit is then no longer applied by the buffer (the
 * consumer applies it). Without a spill directory the cap stays and the
 * 292 message says why. */
void qry_sortbuf_set_disk_use(struct qry_sortbuf *b, bool requested);

/* True once the buffer has written a run to disk: read it with
 * qry_sortbuf_done and qry_sortbuf_next (qry_sortbuf_finish would bring
 * everything back into memory). */
bool qry_sortbuf_spilled(const struct qry_sortbuf *b);

/* Ends the input: the documents are then read in sort order with
 * qry_sortbuf_next (merging the runs on disk, if any). Errors: as
 * qry_run_write for the last run, CAIRN_ENOMEM. */
int qry_sortbuf_done(struct qry_sortbuf *b, struct cairn_error *err);

/* After qry_sortbuf_done: the next document in sort order, owned by the
 * caller (*doc, bson_destroy): 1, 0 at the end, -1 with err set (I/O, or
 * the operation's interruption: maxTimeMS, killOp). */
int qry_sortbuf_next(struct qry_sortbuf *b, bson_t **doc, struct cairn_error *err);

/* Bytes the buffer holds now. */
size_t qry_sortbuf_bytes(const struct qry_sortbuf *b);

/* Frees the buffer and the documents it holds. NULL is a no-op. */
void qry_sortbuf_free(struct qry_sortbuf *b);

/* ---- Aggregation (pipeline*.c) ----------------------------------------- */

struct qry_pipeline;

/* Compiles a pipeline given as a BSON array (as stored in a bson_t with keys
 * "0", "1", ...). Stages: $match $group (_id expression; accumulators $sum
 * $avg $min $max $push $first $last $addToSet $count) $count $project
 * $addFields/$set $unset $sort $skip $limit $unwind (at most 1,000 stages:
 * else 7749501). Expressions: field paths
 * "$a.b", literals, $literal, document and array expressions, and the
 * arithmetic/comparison operators the implementation lists. Unknown stages
 * fail with 40324 "Unrecognized pipeline stage name: '$foo'". */
int qry_pipeline_compile(const bson_t *stages, struct qry_pipeline **out, struct cairn_error *err);

/* The leading $match filter (NULL if the first stage is not $match), so a
 * caller may use it to narrow its scan; the pipeline still applies it. */
const bson_t *qry_pipeline_leading_match(const struct qry_pipeline *p);

/* The spec of a $sort that is the first stage or follows the leading
 * $match (NULL if none), so a caller may read its input in that order. */
const bson_t *qry_pipeline_leading_sort(const struct qry_pipeline *p);

/* Declares that the input comes in the leading $sort's order (an index
 * gives it): that stage then passes documents through as they come, so a
 * later $limit ends the run early. No-op without a leading $sort. */
void qry_pipeline_set_sorted_input(struct qry_pipeline *p);

/* Pulls input documents from `next` until it returns 0 (1 = a document in
 * *doc, valid until the next call; -1 = error, already in err), runs the
 * stages, and appends each output document to `out` (an array of owned
 * bson_t *, grown with realloc; *n_out its length). The caller frees the
 * documents with bson_destroy and the array with free. */
typedef int (*qry_source_fn)(void *arg, bson_t *doc, struct cairn_error *err);
int qry_pipeline_run(const struct qry_pipeline *p,
                     qry_source_fn next,
                     void *arg,
                     bson_t ***out,
                     size_t *n_out,
                     struct cairn_error *err);

/* The run's whole output is held in memory (the caller makes a cursor of
 * it), so its total size is bounded: past `bytes` (default
 * QRY_PIPELINE_RESULT_LIMIT) qry_pipeline_run fails with 292
 * QueryExceededMemoryLimitNoDiskUseAllowed instead of exhausting memory
 * (an $unwind of a large array next to a large field multiplies data). */
#define QRY_PIPELINE_RESULT_LIMIT ((size_t)512 * 1024 * 1024)
void qry_pipeline_set_result_limit(struct qry_pipeline *p, size_t bytes);

/* Records that the client passed allowDiskUse: true: $sort then spills
 * past its cap (qry_set_spill_dir); $group keeps its 100 MB cap (it does
 * not spill) and its 292 message says so. Call before sharing the
 * pipeline. */
void qry_pipeline_set_disk_use(struct qry_pipeline *p, bool requested);

void qry_pipeline_free(struct qry_pipeline *p);

/* ---- Secondary index specs and keys (index.c) ------------------------- */

/* Most fields in one compound index key pattern (mongod's limit). */
#define QRY_INDEX_MAX_FIELDS 32

struct qry_index;

/* Validates a createIndexes spec as mongod does and compiles it. The
 * normalised spec (qry_index_spec) holds v, key, name and the options given
 * (unique, sparse, partialFilterExpression, expireAfterSeconds, hidden), as
 * listIndexes shows
 * them. Errors (mongo_code): 67 CannotCreateIndex (bad key pattern, mixed
 * sparse and partialFilterExpression, name empty), 9 FailedToParse (key or
 * name missing), 14 TypeMismatch (option of the wrong type), 197
 * InvalidIndexSpecificationOption (unknown field), 238 NotImplemented (text,
 * 2dsphere, 2d, hashed, wildcard indexes, collation), 67 for a bad
 * expireAfterSeconds (not a number, out of range, compound),
 * the matcher's codes for a bad partialFilterExpression, CAIRN_ENOMEM. On
 * success *out is owned by the caller (qry_index_free). */
int qry_index_compile(const bson_t *spec, struct qry_index **out, struct cairn_error *err);

/* The normalised spec; valid while `ix` lives. */
const bson_t *qry_index_spec(const struct qry_index *ix);
const char *qry_index_name(const struct qry_index *ix);
/* The key pattern document. */
const bson_t *qry_index_key_pattern(const struct qry_index *ix);
bool qry_index_unique(const struct qry_index *ix);
bool qry_index_hidden(const struct qry_index *ix);

/* How two specs relate, as mongod compares them (name aside): the same key
 * pattern and the same unique/sparse/partialFilterExpression are
 * QRY_INDEX_SAME; the same key pattern with other differences is
 * QRY_INDEX_EQUIVALENT; else QRY_INDEX_DIFFERENT. */
enum qry_index_cmp { QRY_INDEX_SAME = 0, QRY_INDEX_EQUIVALENT = 1, QRY_INDEX_DIFFERENT = 2 };
enum qry_index_cmp qry_index_compare(const struct qry_index *a, const struct qry_index *b);

/* The distinct keys a document has in an index, in memcmp order. Key i is
 * keys->buf[off[i], off[i] + len[i]); vals[i] is {field: value, ...} for
 * error messages (keyValue). */
struct qry_ixkeys
{
    struct cairn_buf buf;
    size_t n, cap;
    size_t *off, *len;
    bson_t **vals;
    /* Type bits of key i (qry_key_typebits of its values, in field order):
     * tb[tb_off[i], tb_off[i] + tb_len[i]). */
    struct cairn_buf tb;
    size_t *tb_off, *tb_len;
    bool arrays; /* some field met an array (even of one element) */
};

#define QRY_IXKEYS_INIT                                                           \
    {                                                                             \
        CAIRN_BUF_INIT, 0, 0, NULL, NULL, NULL, CAIRN_BUF_INIT, NULL, NULL, false \
    }

/* Computes the keys of `doc` (replacing what `out` held): for each field of
 * the key pattern the value at its dotted path (missing: null; an array:
 * one key per distinct element, [] giving undefined), each encoded with
 * qry_key_encode_any and complemented for descending fields, concatenated.
 * A sparse index gives no key when every field is missing; a partial index
 * none when the filter does not match. Errors: CAIRN_EINVAL with 171
 * CannotIndexParallelArrays when two fields hold different arrays,
 * CAIRN_ENOMEM. Reentrant. */
int qry_index_keys(const struct qry_index *ix,
                   const bson_t *doc,
                   struct qry_ixkeys *out,
                   struct cairn_error *err);

/* True when `keys` (as qry_index_keys left them: sorted, distinct) holds
 * exactly the key (bytes) given. O(log n): binary search. */
bool qry_ixkeys_has(const struct qry_ixkeys *keys, const uint8_t *key, size_t len);

/* True when `keys` holds key j of `other` with the same type bits (so its
 * index entry, value included, need not be rewritten). */
bool qry_ixkeys_has_same(const struct qry_ixkeys *keys, const struct qry_ixkeys *other, size_t j);

/* ---- Key decoding (keydec.c) ------------------------------------------ */

/* Appends the type bits of a field's value `v` to `out` (see keydec.c):
 * what the key encoding loses (number and string types, -0.0, missing vs
 * null when `missing`). Returns 0 or CAIRN_ENOMEM. */
int qry_key_typebits(const bson_value_t *v, bool missing, struct cairn_buf *out);

/* Decodes index key (key, len) of index `ix` with its type bits (tb,
 * tb_len) exactly (bytes after the key's fields, an entry's _id, are
 * ignored), appending {field path: value} for each field of the
 * key pattern to `out` (a missing field appends nothing). Returns 1 when
 * exact, 0 when the key holds a value it cannot restore exactly (decimal,
 * type bits absent or short; `out` is then partly written), -1 when the
 * key is malformed. Reentrant. */
int qry_key_decode(const struct qry_index *ix,
                   const uint8_t *key,
                   size_t len,
                   const uint8_t *tb,
                   size_t tb_len,
                   bson_t *out);

/* Frees what `keys` holds (it can be reused after). */
void qry_ixkeys_fini(struct qry_ixkeys *keys);

/* Frees a compiled index. NULL is a no-op. */
void qry_index_free(struct qry_index *ix);

bool qry_index_sparse(const struct qry_index *ix);
/* True for a TTL index (expireAfterSeconds); *secs (may be NULL) its value. */
bool qry_index_ttl(const struct qry_index *ix, int32_t *secs);
/* True for a partial index (partialFilterExpression). */
bool qry_index_partial(const struct qry_index *ix);
/* Number of fields of the key pattern. */
size_t qry_index_n_fields(const struct qry_index *ix);
/* Path of field i (< qry_index_n_fields); *desc (may be NULL) its direction. */
const char *qry_index_field(const struct qry_index *ix, size_t i, bool *desc);

/* ---- Query planning (plan.c) ------------------------------------------ */

struct qry_plan;

/* Chooses among the indexes ixs[0..n) (NULL entries are skipped) the one
 * whose leading fields the filter constrains most (equality and $in
 * first, then one range field) and the key intervals that cover every key
 * a matching document has in it; the caller scans them and still filters
 * the documents it fetches. Without a usable index the plan is a
 * collection scan (qry_plan_index < 0). Sparse, partial and hidden indexes
 * are not used. multikey[i] false says no document has several keys in
 * index i (then ranges are scanned between both bounds); multikey NULL
 * means every index may be multikey. On success *out is owned by the caller (qry_plan_free).
 * Errors: CAIRN_ENOMEM. Reentrant. */
int qry_plan_choose(const bson_t *filter,
                    const struct qry_index *const *ixs,
                    const bool *multikey,
                    size_t n,
                    struct qry_plan **out,
                    struct cairn_error *err);

/* The intervals of index `ix` (position 0) for `filter` (NULL: none),
 * whatever the index's kind (sparse, partial, hidden: a hint chose it):
 * the whole index when no predicate constrains its first field. multikey
 * as for qry_plan_choose. On success *out is owned by the caller. Errors:
 * CAIRN_ENOMEM. Reentrant. */
int qry_plan_one(const bson_t *filter,
                 const struct qry_index *ix,
                 bool multikey,
                 struct qry_plan **out,
                 struct cairn_error *err);

/* ---- Hints (plan_hint.c): the `hint` field of find, count, distinct,
 * update, delete, findAndModify and aggregate. ---- */

/* True when `hint` (NULL: none) asks for something: a string, or a
 * non-empty document (mongod ignores an empty one). */
bool qry_hint_given(const bson_value_t *hint);

/* True for {$natural: dir}: a collection scan; *dir (may be NULL) 1 or -1. */
bool qry_hint_natural(const bson_value_t *hint, int *dir);

/* True for the _id index, by name ("_id_") or pattern ({_id: 1 or -1}). */
bool qry_hint_is_id(const bson_value_t *hint);

/* True when `hint` names the index called `name` with `key_pattern`: its
 * name as a string, or its key pattern as a document (same fields in the
 * same order, numeric directions equal by value). */
bool qry_hint_matches(const bson_value_t *hint, const char *name, const bson_t *key_pattern);

/* True when index `ix` covers a query (plan_cover.c): the filter (NULL:
 * none), the inclusion projection and the sort (NULL: none) use only its
 * fields and _id, so documents built from its entries answer it. The
 * caller still checks that no document met an array on its paths. */
bool qry_plan_covers(const struct qry_index *ix,
                     const bson_t *filter,
                     const bson_t *projection,
                     const bson_t *sort);

/* Like qry_plan_covers for a caller that reads no field beyond the
 * filter's (count). */
bool qry_plan_covers_filter(const struct qry_index *ix, const bson_t *filter);

/* A plan scanning every entry of one index (position 0), in order. Errors:
 * CAIRN_ENOMEM. */
int qry_plan_full(struct qry_plan **out, struct cairn_error *err);

/* The chosen index's position in the array given, or -1 (collection scan). */
int qry_plan_index(const struct qry_plan *p);

/* The intervals to scan, sorted by lower bound and disjoint unless two
 * $in values share a prefix: interval i is [lo, hi) over index keys (the
 * entry key without the document's _id); hi_len 0 means no upper bound. */
size_t qry_plan_n_intervals(const struct qry_plan *p);
void qry_plan_interval(const struct qry_plan *p,
                       size_t i,
                       const uint8_t **lo,
                       size_t *lo_len,
                       const uint8_t **hi,
                       size_t *hi_len);

/* Frees a plan. NULL is a no-op. */
void qry_plan_free(struct qry_plan *p);

#endif /* CAIRN_QUERY_QUERY_H */
