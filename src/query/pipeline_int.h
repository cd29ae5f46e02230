/*
 * pipeline_int.h: the private interface between the files of the
 * aggregation pipeline (qry_pipeline_* in query.h): the compiled pipeline
 * (struct qry_pipeline, struct stage), the $group hash table the executor
 * holds, and the functions the files share. Not for use outside src/query.
 *
 *   pipeline.c          compiling a pipeline: parsing each stage (except
 *                       the two below), the compiled pipeline's life
 *   pipeline_project.c  $project, $addFields/$set and $unset: the
 *                       projection tree (struct pnode), parsing, applying
 *   pipeline_group.c    $group (and the $group of $sortByCount): parsing,
 *                       the accumulators, the group hash table, the output
 *   pipeline_run.c      the push-based executor (qry_pipeline_run)
 *
 * Unless a comment says otherwise, functions that take a struct
 * cairn_error report failures in it (with mongod's code) and return its
 * code; the stage parsers fill the zeroed `s` they are given, which
 * qry_pipeline_free releases even after a failure.
 */
#ifndef CAIRN_QUERY_PIPELINE_INT_H
#define CAIRN_QUERY_PIPELINE_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "query/query.h"

enum stype {
    ST_MATCH,
    ST_GROUP,
    ST_COUNT,
    ST_PROJECT,
    ST_SORT,
    ST_SKIP,
    ST_LIMIT,
    ST_UNWIND,
    ST_REPLACE,
};

/* Most stages a pipeline may have (mongod's internalPipelineLengthLimit). */
#define PIPELINE_MAX_STAGES 1000

struct pnode; /* a projection tree (pipeline_project.c) */

struct gacc
{
    char *name;
    int op;
    struct qry_expr *expr; /* NULL for $count */
};

struct stage
{
    int type;
    bool stream_prefix; /* no blocking stage before this one */
    bool presorted;     /* $sort whose input comes in its order: passes through */
    struct qry_matcher *matcher;
    struct qry_expr *expr; /* $group _id, $replaceRoot newRoot */
    struct gacc *accs;
    size_t nacc;
    struct pnode *proj;
    int pmode;
    struct qry_sort *sort;
    uint64_t topk; /* $sort followed by $limit k: keep only the k first (0: all) */
    int64_t n;     /* $skip, $limit */
    char *name;    /* $count field */
    char **upath;  /* $unwind */
    size_t nupath;
    char **uidx;
    size_t nuidx;
    bool preserve;
};

struct qry_pipeline
{
    struct stage *st;
    size_t n;
    bson_t *leading_match;
    bson_t *leading_sort; /* a $sort first or right after the leading $match */
    size_t leading_sort_at;
    size_t result_limit; /* bytes of output a run may hold */
    bool disk_use;       /* allowDiskUse was asked for: $sort may spill */
};

/* The group table of a $group stage during a run (pipeline_group.c keeps
 * it; the executor holds one per stage). */
struct accstate; /* a group's accumulator states (pipeline_group.c) */

struct grp
{
    bson_value_t key;
    uint64_t hash;
    size_t next; /* index + 1 of the next group in the bucket, 0 = end */
    struct accstate *st;
};

struct gtab
{
    size_t bytes;  /* approximate memory held, for the memory limit */
    bool disk_use; /* allowDiskUse was asked for: past the limit, spill */
    struct grp *g;
    size_t n, cap;
    size_t *buckets; /* index + 1, 0 = empty */
    size_t nb;
    /* Spilled partial groups (pipeline_groupspill.c): runs of documents
     * {k: key, "0": state, ...} sorted by key, in the order written. */
    struct qry_spill *spill; /* the file holding them */
    struct qry_run **runs;
    size_t nruns, runcap;
};

/* ---- pipeline.c --------------------------------------------------------- */

/* Sets `err` to CAIRN_ENOMEM (out of memory in aggregation) and returns
 * it. */
int pl_oom(struct cairn_error *err);

/* Initialises `out` as a read-only view of the document or array `it` is
 * on. Returns 0, or -1 for another type. */
int pl_doc_value_from_iter(const bson_iter_t *it, bson_t *out);

/* pl_doc_value_from_iter for documents only: true when `it` is on a
 * document and `out` views it. */
bool pl_iter_doc(const bson_iter_t *it, bson_t *out);

/* The type name ("string", "array", ...) of the value `it` is on. */
const char *pl_iter_type_name(const bson_iter_t *it);

/* ---- pipeline_project.c ------------------------------------------------- */

/* Frees a projection tree; NULL is a no-op. */
void pl_pnode_free(struct pnode *nd);

/* Validates a dotted field path used as a stage output name (not empty,
 * no empty component, no component starting with '$'). */
int pl_check_path(const char *path, struct cairn_error *err);

/* Applies the projection tree `nd` in `mode` (the stage's pmode) to `in`,
 * appending the result's fields to `out` (initialised by the caller);
 * computed fields are evaluated with `root` as $$ROOT. */
int pl_papply_doc(const struct pnode *nd,
                  int mode,
                  const bson_t *in,
                  const bson_t *root,
                  bson_t *out,
                  struct cairn_error *err);

/* Parses $project (add false) or $addFields/$set (add true) from the stage
 * argument `it` into `s`. */
int pl_parse_project(struct stage *s, const bson_iter_t *it, bool add, struct cairn_error *err);

/* Parses $unset (a field path or an array of them) into `s`. */
int pl_parse_unset(struct stage *s, const bson_iter_t *it, struct cairn_error *err);

/* ---- pipeline_group.c --------------------------------------------------- */

/* Parses the $group specification document `spec` into `s`. */
int pl_parse_group_body(struct stage *s, const bson_t *spec, struct cairn_error *err);

/* Parses the $group stage argument `it` (must be a document) into `s`. */
int pl_parse_group(struct stage *s, const bson_iter_t *it, struct cairn_error *err);

/* Adds `doc` to its group in `t` (the run's table of $group stage `s`),
 * updating the group's accumulators. Past qry_group_mem_limit the table
 * is spilled (pl_group_spill) when t->disk_use and a spill directory is
 * set, else this fails with 292 QueryExceededMemoryLimitNoDiskUseAllowed;
 * also fails when an expression fails or spilling does. */
int pl_group_add(const struct stage *s, struct gtab *t, const bson_t *doc, struct cairn_error *err);

/* Appends group `g`'s output document fields (_id, then one per
 * accumulator of `s`) to `out`. */
void pl_group_output(const struct stage *s, const struct grp *g, bson_t *out);

/* Frees what table `t` holds (its groups have `nacc` accumulators each,
 * and its spilled runs) and zeroes it. */
void pl_gtab_free(struct gtab *t, size_t nacc);

/* Frees `t`'s groups only (runs and disk_use stay): after a spill. */
void pl_gtab_clear_groups(struct gtab *t, size_t nacc);

/* Accumulator states for a group of `s` built outside a table (merging
 * spilled runs): new (NULL on ENOMEM), and free (NULL is a no-op). */
struct accstate *pl_accstates_new(const struct stage *s);
void pl_accstates_free(const struct stage *s, struct accstate *st);

/* Appends group `g`'s partial state to `out`: "k" (its key), then one
 * subdocument per accumulator ("0", "1", ...) that pl_group_state_merge
 * reads back. */
void pl_group_state_append(const struct stage *s, const struct grp *g, bson_t *out);

/* Merges the partial state in `doc` (from pl_group_state_append, of a
 * later part of the input than what `st` holds) into `st`, as if the
 * documents behind both had been added in order. Errors: ENOMEM, a
 * malformed run document (1 InternalError), decimal sums (238). */
int pl_group_state_merge(const struct stage *s,
                         struct accstate *st,
                         const bson_t *doc,
                         struct cairn_error *err);

/* ---- pipeline_groupspill.c ------------------------------------------------ */

/* Writes `t`'s groups, sorted by key, as a run in the spill directory and
 * empties the table (runs kept in t->runs). Errors: as qry_run_write; 292
 * past the most runs a $group may write. */
int pl_group_spill(const struct stage *s, struct gtab *t, struct cairn_error *err);

/* Hands every group of `t` to `emit` as its output document (borrowed for
 * the call): in order of first appearance when nothing was spilled, else
 * in key order, merging the runs and what the table still holds. Stops
 * at the first error (emit's, I/O, interruption). Leaves `t` to be freed
 * by pl_gtab_free. */
int pl_group_flush(const struct stage *s,
                   struct gtab *t,
                   int (*emit)(void *arg, bson_t *doc, struct cairn_error *err),
                   void *arg,
                   struct cairn_error *err);

#endif /* CAIRN_QUERY_PIPELINE_INT_H */
