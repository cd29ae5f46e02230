/*
 * txn.h: the transaction layer, between the command handlers (net) and
 * replication/storage. For now it provides what single write commands
 * need; sessions and multi-document transactions build on it.
 *
 *  - Reads: a consistent view (engine snapshot) at read concern "local"
 *    (newest, including the primary's overlay) or "majority" (applied).
 *  - Writes: one writer at a time on the primary (the write lock). A
 *    txn_write reads through its view plus its own staged changes, stages
 *    resolved ops (full post-images, tombstones, catalog changes), and on
 *    commit gets a strictly increasing cluster timestamp, adds its versions
 *    to the overlay (visible to local reads at once) and proposes them to
 *    raft. Acknowledgement by write concern is a separate txn_wait.
 *  - The cluster clock: timestamps are hybrid (wall seconds, counter) and
 *    never go below anything in the log or any $clusterTime received.
 *
 * Threads: everything is callable from any client thread; a txn_read,
 * txn_scan or txn_write is used by one thread at a time.
 */
#ifndef CAIRN_TXN_TXN_H
#define CAIRN_TXN_TXN_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "engine/engine.h"
#include "repl/repl.h"

/* Longest namespace "db.coll" accepted. */
#define TXN_NS_MAX ENG_NS_MAX

/* Largest user document (maxBsonObjectSize). */
#define TXN_MAX_DOC_SIZE (16 * 1024 * 1024)

struct txn_mgr;

/* Creates the manager over an open engine and replication (both borrowed,
 * must outlive it). Returns 0 or CAIRN_ENOMEM. */
int txn_mgr_open(struct eng *e, struct repl *r, struct txn_mgr **out, struct cairn_error *err);
void txn_mgr_close(struct txn_mgr *m);

/* transactionLifetimeLimitSeconds: how long a multi-document transaction
 * may stay open before the reaper aborts it (default 60, as mongod; at
 * least 1). The setter fails with CAIRN_EINVAL (mongo_code 2 BadValue) below
 * 1. Any thread. */
#define TXN_DEFAULT_LIFETIME_SECS 60
int64_t txn_lifetime_limit_secs(struct txn_mgr *m);
int txn_set_lifetime_limit_secs(struct txn_mgr *m, int64_t secs, struct cairn_error *err);

/* The current cluster time (>= every ts assigned or applied here and every
 * $clusterTime received). Any thread. */
cairn_ts txn_cluster_time(struct txn_mgr *m);

/* Advances the cluster time to at least `ts` (gossip from $clusterTime).
 * Values more than a year ahead of the wall clock are rejected with
 * CAIRN_EINVAL (mongo_code 205). */
int txn_cluster_time_advance(struct txn_mgr *m, cairn_ts ts, struct cairn_error *err);

/* Validates a namespace "db.coll" the way mongod does: non-empty db and
 * collection, no '\0', db without "/\\. \"$", collection not starting with
 * "system." for user writes, total length <= 255. Returns 0 or
 * CAIRN_EINVAL with mongo_code 73 InvalidNamespace. */
int txn_check_ns(const char *db, const char *coll, struct cairn_error *err);

/* ---- Reads ------------------------------------------------------------- */

enum txn_read_level { TXN_READ_LOCAL = 0, TXN_READ_MAJORITY = 1 };

struct txn_read;

/* Begins a read at `level`. Returns 0 or CAIRN_ENOMEM. */
int txn_read_begin(struct txn_mgr *m, int level, struct txn_read **out, struct cairn_error *err);
void txn_read_end(struct txn_read *rd);

/* The timestamp this read reflects (its operationTime). */
cairn_ts txn_read_ts(const struct txn_read *rd);

/* Resolves a namespace. Returns 0 with *coll_id, or CAIRN_ENOTFOUND. */
int txn_read_coll(struct txn_read *rd, const char *ns, uint64_t *coll_id);

struct txn_coll
{
    uint64_t id;
    char ns[ENG_NS_MAX + 1];
};

/* Lists collections of database `db` (NULL = all), sorted by ns; *out is
 * malloc'd (free()). Returns 0 or CAIRN_ENOMEM. */
int txn_read_list(struct txn_read *rd, const char *db, struct txn_coll **out, size_t *n);

/* Point read by _id. On success initialises `doc` with a copy (caller
 * destroys) and returns 0; CAIRN_ENOTFOUND when absent; CAIRN_EIO. */
int txn_read_get(struct txn_read *rd,
                 uint64_t coll_id,
                 const bson_value_t *id,
                 bson_t *doc,
                 struct cairn_error *err);

struct txn_scan;

/* Scans a collection in _id order. Returns 0 or CAIRN_ENOMEM. The scan
 * must be closed before its read ends. */
int txn_scan_open(struct txn_read *rd,
                  uint64_t coll_id,
                  struct txn_scan **out,
                  struct cairn_error *err);

/* Next document: 1 with `doc` a static view valid until the next call, 0 at
 * the end, -1 on error (see txn_scan_error). */
int txn_scan_next(struct txn_scan *sc, bson_t *doc);
const struct cairn_error *txn_scan_error(const struct txn_scan *sc);
void txn_scan_close(struct txn_scan *sc);

/* ---- Writes ------------------------------------------------------------ */

struct txn_write;

/* Begins a write: takes the write lock and a local view. Errors:
 * CAIRN_ENOTLEADER (mongo_code 10107 NotWritablePrimary), CAIRN_ENOMEM. */
int txn_write_begin(struct txn_mgr *m, struct txn_write **out, struct cairn_error *err);

/* The write's view for reads and scans (do not end it; it ends with the
 * write). Scans see the state before this write's own staged changes. */
struct txn_read *txn_write_reader(struct txn_write *w);

/* Resolves `ns` for writing; with `create` a missing collection is created
 * (staged) and *created set. Errors: CAIRN_ENOTFOUND (26 NamespaceNotFound)
 * when missing and !create; CAIRN_EINVAL (73) for bad names. */
int txn_write_coll(struct txn_write *w,
                   const char *ns,
                   bool create,
                   uint64_t *coll_id,
                   bool *created,
                   struct cairn_error *err);

/* Creates a collection. CAIRN_EEXISTS (48 NamespaceExists) if present. */
int txn_write_create(struct txn_write *w, const char *ns, struct cairn_error *err);

/* Drops a collection. CAIRN_ENOTFOUND (26 NamespaceNotFound) if absent. */
int txn_write_drop(struct txn_write *w, const char *ns, struct cairn_error *err);

/* Point read that sees this write's staged changes. Same contract as
 * txn_read_get. */
int txn_write_get(struct txn_write *w,
                  uint64_t coll_id,
                  const bson_value_t *id,
                  bson_t *doc,
                  struct cairn_error *err);

/* Stages an insert of `doc` (which must contain _id). Errors: CAIRN_EEXISTS
 * with mongo_code 11000 and mongod's "E11000 duplicate key error
 * collection: <ns> index: _id_ dup key: { _id: ... }" when the _id is
 * visible or staged; CAIRN_ETOOBIG (10334 BSONObjectTooLarge); CAIRN_EINVAL
 * (2/53) for an unusable _id. */
int txn_write_insert(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_t *doc,
                     struct cairn_error *err);

/* Stages `doc` as the new version of the document with its _id (replace or
 * upsert). Same size/_id errors as insert. */
int txn_write_put(struct txn_write *w,
                  uint64_t coll_id,
                  const bson_t *doc,
                  struct cairn_error *err);

/* Stages a delete of the document with `id`. */
int txn_write_delete(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_value_t *id,
                     struct cairn_error *err);

/* Number of ops staged so far. */
size_t txn_write_n_ops(const struct txn_write *w);

/* Approximate bytes staged since the last flush (documents and keys plus a
 * per-op overhead), for splitting large writes into several commits. */
size_t txn_write_staged_bytes(const struct txn_write *w);

/* Staged bytes past which a command should flush: a commit must stay well
 * below the largest raft entry (repl's 24 MiB limit). */
#define TXN_FLUSH_BYTES ((size_t)8 << 20)

/* Commits what is staged so far as one commit (as txn_write_commit does)
 * but keeps the write open: the lock stays held and staging starts afresh.
 * With `refresh_view` the view is retaken so it sees the flushed commit
 * (needed when later staging checks against it, as inserts do for
 * duplicate _ids); without, the view stays (a scan running on it goes on,
 * visiting each document once). *ts is the commit's ts (0 when nothing was
 * staged). For non-transactional writes only: the parts become visible one
 * by one, as MongoDB's multi-document writes do. On error nothing of the
 * unflushed part is visible and the caller must txn_write_abort. */
int txn_write_flush(struct txn_write *w, bool refresh_view, cairn_ts *ts, struct cairn_error *err);

/* Commits: assigns the cluster timestamp, adds the versions to the overlay,
 * proposes to raft and releases the write lock; *ts is set (0 when nothing
 * was staged: nothing is proposed). Always frees `w`. Errors:
 * CAIRN_ENOTLEADER (10107), CAIRN_ENOMEM; on error nothing is visible. */
int txn_write_commit(struct txn_write *w, cairn_ts *ts, struct cairn_error *err);

/* Discards the staged changes, releases the lock and frees `w`. */
void txn_write_abort(struct txn_write *w);

/* Waits for the commit at `ts` to satisfy `wc`; see repl_wait. */
int txn_wait(struct txn_mgr *m,
             cairn_ts ts,
             const struct repl_wc *wc,
             repl_wait_cb cb,
             void *arg,
             struct cairn_error *err);

#endif /* CAIRN_TXN_TXN_H */
