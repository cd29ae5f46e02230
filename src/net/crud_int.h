/*
 * crud_int.h: what the write commands share between cmd_crud.c (insert,
 * update, delete) and cmd_fam.c (findAndModify): visiting the documents a
 * filter matches in a write's view, locking the one found, staging an
 * updated or upserted document. Internal to src/net.
 *
 * Threads: a command's worker thread, with the write set it owns.
 */
#ifndef CAIRN_NET_CRUD_INT_H
#define CAIRN_NET_CRUD_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/net_int.h"
#include "query/query.h"
#include "txn/txn.h"

/* Room for "db.collection" (mongod's limit is 255 bytes). */
#define NS_BUF 512

/* Called for each matching document; sets *stop to end the visit early.
 * Returns 0 or an error code with err set. */
typedef int (*crud_match_fn)(void *arg, const bson_t *doc, bool *stop, struct cairn_error *err);

/* Calls `fn` for each document of collection `cid` (namespace `ns`) that
 * `m`, compiled from `filter`, matches in the write's view, through the
 * planner (see net_dc_visit_scan): a point lookup, an index scan or a
 * collection scan. Each document of the view is visited at most once,
 * whatever the statement stages meanwhile: the scan reads the view's
 * snapshot (an index scan of a transaction only when it has staged
 * nothing yet: txn/ixscan.c, invariant 3). When `sort` is not NULL and an
 * index gives its order, the documents come in that order and *in_order is
 * set (`in_order` may be NULL without `sort`). `hint` (NULL or not
 * qry_hint_given: none) is the statement's: the index it names is scanned
 * (its order when it gives `sort`'s), as txn_scan_open_query. A collection
 * created by this write (`coll_is_new`) has no documents yet (and only the
 * _id index to hint). Returns 0 or an error code with err set: 2 BadValue
 * when the hint names no index the planner may use. */
int crud_for_each_match(struct txn_write *w,
                        uint64_t cid,
                        bool coll_is_new,
                        const char *ns,
                        const bson_t *filter,
                        const bson_t *sort,
                        const bson_value_t *hint,
                        const struct qry_matcher *m,
                        crud_match_fn fn,
                        void *arg,
                        bool *in_order,
                        struct cairn_error *err);

/* Sets *id to a view of doc's _id (valid while doc lives); false when it
 * has none. */
bool crud_doc_id(const bson_t *doc, bson_value_t *id);

/* Locks the document the scan found (`seen`) and initialises *cur with the
 * version to build on, or sets *skip (nothing initialised) when it must be
 * skipped: deleted meanwhile, or changed so that `m` (NULL: anything) no
 * longer matches. Returns 0 or an error code with err set. */
int crud_lock_matched(struct txn_write *w,
                      uint64_t cid,
                      const struct qry_matcher *m,
                      const bson_t *seen,
                      bson_t *cur,
                      bool *skip,
                      struct cairn_error *err);

/* Stages the result of an update. A result over the document size limit is
 * refused as mongod does for updates (17419), not as an oversize insert. */
int crud_put_updated(struct txn_write *w, uint64_t cid, const bson_t *doc, struct cairn_error *err);

/* Builds and stages the document an upsert of filter `q` inserts and
 * initialises *final with it (the caller destroys it; nothing on error).
 * Errors of txn_write_insert: CAIRN_EEXISTS (11000) when the _id exists. */
int crud_do_upsert(struct txn_write *w,
                   uint64_t cid,
                   const bson_t *q,
                   const struct qry_update *u,
                   int64_t now_ms,
                   bson_t *final,
                   struct cairn_error *err);

/* Whether an upsert that failed with DuplicateKey on attempt `attempt`
 * (0 first) runs again on a fresh view: a statement whose view had no
 * such document may have waited for a writer that inserted it meanwhile,
 * and then updates it, as mongod retries such an upsert. A transaction
 * cannot (its snapshot does not move). */
bool crud_upsert_may_retry(const struct txn_write *w, int attempt);

/* Checks that every entry of the arrayFilters array `af` is a document, as
 * mongod's IDL does (14 "BSON field '<field>.N' is the wrong type ..."). */
int crud_check_array_filters(const bson_t *af, const char *field, struct cairn_error *err);

/* The findAndModify command (cmd_fam.c). */
int crud_cmd_find_and_modify(struct net_cmd *c);

#endif
