/*
 * txn.h: the transaction layer, between the command handlers (net) and
 * replication/storage. It owns:
 *
 *  - The cluster clock: hybrid timestamps (wall seconds, counter) that never
 *    go below anything in the log or any $clusterTime received.
 *  - Reads: consistent views (engine snapshots) at read concern "local"
 *    (newest, including the primary's overlay), "majority" (applied) or an
 *    explicit timestamp (snapshot reads, transactions).
 *  - Write sets: what one statement or one multi-document transaction
 *    stages. Staging a change to a document first takes an *intent* on
 *    (collection, _id) in a lock table; the first writer wins. A statement
 *    (non-transactional write) that meets an intent held by someone else
 *    commits what it has staged so far, waits for the holder to finish
 *    (bounded by its operation) and then builds on the newest version; a
 *    transaction that meets one, or finds a version newer than its snapshot,
 *    fails at once with WriteConflict (112). Statements resolve on many
 *    client threads at once; only the short *commit section* (check the
 *    epoch and the collections, assign the timestamp, add to the overlay,
 *    enqueue for raft) is serialized, so timestamp order is log order.
 *  - Sessions: logical sessions by lsid, checked out by one command at a
 *    time, with mongod's per-session txnNumber state machine (retryable
 *    writes and multi-document transactions), durable session records that
 *    travel in the same oplog entry as the writes they describe, the
 *    transaction reaper and session expiry.
 *
 * Threads: everything is callable from any client thread. A txn_read,
 * txn_scan or txn_write is used by one thread at a time (a transaction's
 * write set by the command that has its session checked out).
 */
#ifndef CAIRN_TXN_TXN_H
#define CAIRN_TXN_TXN_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "engine/engine.h"
#include "lib/op.h"
#include "repl/repl.h"

/* Longest namespace "db.coll" accepted. */
#define TXN_NS_MAX ENG_NS_MAX

/* Largest user document (maxBsonObjectSize). */
#define TXN_MAX_DOC_SIZE (16 * 1024 * 1024)

/* Staged bytes past which a statement should flush: a commit must stay well
 * below the largest raft entry (REPL_MAX_COMMIT_BYTES). */
#define TXN_FLUSH_BYTES ((size_t)8 << 20)

/* Staged bytes a transaction may hold: its one commit must fit one raft
 * entry. Past it: TransactionTooLarge (257). */
#define TXN_MAX_TXN_BYTES ((size_t)16 << 20)

/* A logical session id: the 16 bytes of the UUID in lsid.id. */
#define TXN_LSID_LEN 16

/* Default and limits of transactionLifetimeLimitSeconds. */
#define TXN_DEFAULT_LIFETIME_SECS 60

/* Default of maxSessions: sessions held in memory at most. */
#define TXN_DEFAULT_MAX_SESSIONS 1000000

/* Sessions unused for this long are forgotten (logicalSessionTimeoutMinutes). */
#define TXN_SESSION_TIMEOUT_MINUTES 30

struct txn_mgr;

/* Creates the manager over an open engine and replication (both borrowed,
 * must outlive it), registers its leadership callback with repl and starts
 * the reaper thread. Returns 0 or CAIRN_ENOMEM. */
int txn_mgr_open(struct eng *e, struct repl *r, struct txn_mgr **out, struct cairn_error *err);

/* Stops the reaper, aborts every open transaction and frees. Nothing may
 * use the manager during or after. Call it before repl_close (it
 * unregisters the leadership callback from the repl it was opened with).
 * NULL is a no-op. */
void txn_mgr_close(struct txn_mgr *m);

/* transactionLifetimeLimitSeconds: how long a multi-document transaction
 * may stay open before the reaper aborts it (default 60, as mongod; at
 * least 1). The setter fails with CAIRN_EINVAL (mongo_code 2 BadValue) below
 * 1. Any thread. */
int64_t txn_lifetime_limit_secs(struct txn_mgr *m);
int txn_set_lifetime_limit_secs(struct txn_mgr *m, int64_t secs, struct cairn_error *err);

/* ttlMonitorSleepSecs: the period of the TTL monitor (ttl.c; default
 * TXN_DEFAULT_TTL_SLEEP_SECS = 60, as mongod; at least 1, else CAIRN_EINVAL
 * with 2 BadValue), counted from the last pass. Any thread. */
#define TXN_DEFAULT_TTL_SLEEP_SECS 60
int64_t txn_ttl_sleep_secs(struct txn_mgr *m);
int txn_set_ttl_sleep_secs(struct txn_mgr *m, int64_t secs, struct cairn_error *err);

/* maxSessions: how many sessions this member keeps in memory (default
 * TXN_DEFAULT_MAX_SESSIONS, as mongod); a new one past it is refused with
 * 261 TooManyLogicalSessions. The setter fails with CAIRN_EINVAL (2
 * BadValue) below 1. Any thread. */
int64_t txn_max_sessions(struct txn_mgr *m);
int txn_set_max_sessions(struct txn_mgr *m, int64_t n, struct cairn_error *err);

/* ---- Cluster clock ------------------------------------------------------- */

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

/* ---- Reads --------------------------------------------------------------- */

enum txn_read_level {
    TXN_READ_LOCAL = 0,    /* newest data here, the primary's overlay included */
    TXN_READ_MAJORITY = 1, /* majority-committed (applied) data */
};

struct txn_read;

/* Begins a read at `level`. Returns 0 or CAIRN_ENOMEM. */
int txn_read_begin(struct txn_mgr *m, int level, struct txn_read **out, struct cairn_error *err);

/* Begins a read of exactly the data committed at or before `ts` (snapshot
 * read concern, atClusterTime). `ts` must not be above what this member
 * has applied (wait first: txn_wait_cluster_time). Errors: CAIRN_EINVAL
 * with 239 SnapshotTooOld when `ts` is older than the history kept,
 * CAIRN_ENOMEM. */
int txn_read_begin_at(struct txn_mgr *m,
                      cairn_ts ts,
                      struct txn_read **out,
                      struct cairn_error *err);

/* Begins a read of the data committed at or before `ts` here, the
 * primary's commits not yet applied included (a retried findAndModify
 * reads its image so; `ts` must be a commit already visible here).
 * Errors: CAIRN_EINVAL with 239 SnapshotTooOld when `ts` is older than the
 * history kept, CAIRN_ENOMEM. */
int txn_read_begin_local_at(struct txn_mgr *m,
                            cairn_ts ts,
                            struct txn_read **out,
                            struct cairn_error *err);

/* Begins a read of transaction `w` (txn_session_txn): its snapshot and its
 * own writes. The read holds a reference to the write set, so it may
 * outlive the command (a cursor). Returns 0 or CAIRN_ENOMEM. */
struct txn_write;
int txn_read_begin_txn(struct txn_write *w, struct txn_read **out, struct cairn_error *err);

/* Ends a read. Scans opened on it must be closed first. NULL is a no-op. */
void txn_read_end(struct txn_read *rd);

/* What the read showed of the primary's commits not yet applied, as a
 * token for txn_overlay_token_lost (0: nothing). Any thread. */
uint64_t txn_read_overlay_token(const struct txn_read *rd);

/* True when commits a read of `token` showed were discarded since (the
 * member stepped down, or a proposal failed): they may never commit, so a
 * cursor built on them must not go on. Any thread. */
bool txn_overlay_token_lost(struct txn_mgr *m, uint64_t token);

/* The timestamp this read reflects (its operationTime). */
cairn_ts txn_read_ts(const struct txn_read *rd);

/* Resolves a namespace as of the read's snapshot (a name renamed after it
 * resolves as before the rename: eng_catalog_lookup_at). Returns 0 with
 * *coll_id, or CAIRN_ENOTFOUND. A read of a transaction also sees
 * collections the transaction created. */
int txn_read_coll(struct txn_read *rd, const char *ns, uint64_t *coll_id);

/* As txn_read_coll in the newest catalog, whatever the snapshot's ts (a
 * cursor's check that its collection was neither dropped nor renamed). */
int txn_read_coll_now(struct txn_read *rd, const char *ns, uint64_t *coll_id);

struct txn_coll
{
    uint64_t id;
    char ns[ENG_NS_MAX + 1];
};

/* Lists collections of database `db` (NULL = all), sorted by ns; *out is
 * malloc'd (free()). Returns 0 or CAIRN_ENOMEM. */
int txn_read_list(struct txn_read *rd, const char *db, struct txn_coll **out, size_t *n);

/* Point read by _id (a transaction's read sees its own writes). On success
 * initialises `doc` with a copy (caller destroys) and returns 0;
 * CAIRN_ENOTFOUND when absent; CAIRN_EIO. */
int txn_read_get(struct txn_read *rd,
                 uint64_t coll_id,
                 const bson_value_t *id,
                 bson_t *doc,
                 struct cairn_error *err);

struct txn_scan;

/* Scans a collection in _id order (a transaction's scan sees its own
 * writes as they were when the scan opened). Returns 0 or CAIRN_ENOMEM. The
 * scan must be closed before its read ends. */
int txn_scan_open(struct txn_read *rd,
                  uint64_t coll_id,
                  struct txn_scan **out,
                  struct cairn_error *err);

/* What an index scan does, for explain. */
struct txn_plan_info
{
    char index_name[128];
    bson_t key_pattern;
    size_t n_intervals;
    bool backward;          /* the intervals are visited from the last key down */
    bool hinted;            /* the query's hint chose the index */
    bool covered;           /* documents are built from the entries (PROJECTION_COVERED) */
    uint64_t cover_misses;  /* entries of a covered scan fetched all the same */
    uint64_t keys_examined; /* index entries read so far */
    uint64_t docs_examined; /* documents fetched so far */
};

/* Like txn_scan_open, but when an index serves `filter` (a ready one in the
 * read's snapshot, chosen by qry_plan_choose) scans its key intervals and
 * returns each document with a key there once, in index order: a superset
 * of the matches, which the caller filters as for a collection scan. A
 * read that sees its transaction's staged writes always scans the
 * collection. `ns` names collection `coll_id`. Same errors as txn_scan_open. */
int txn_scan_open_filter(struct txn_read *rd,
                         uint64_t coll_id,
                         const char *ns,
                         const bson_t *filter,
                         struct txn_scan **out,
                         struct cairn_error *err);

/* Like txn_scan_open_filter, but only through an index whose order is
 * `sort` (a prefix of its key pattern, same directions, not multikey in the
 * read's snapshot): the documents then come out in sort order, so the
 * caller need not sort. *out is NULL when no index gives that order. */
int txn_scan_open_sorted(struct txn_read *rd,
                         uint64_t coll_id,
                         const char *ns,
                         const bson_t *filter,
                         const bson_t *sort,
                         struct txn_scan **out,
                         struct cairn_error *err);

/* What a scan is for (txn_scan_open_query). Every pointer may be NULL;
 * they are borrowed for the call only. */
struct txn_scan_req
{
    const char *ns;           /* names the collection (its indexes are found by it) */
    const bson_t *filter;     /* NULL or empty: every document */
    const bson_t *sort;       /* NULL or empty: any order */
    const bson_value_t *hint; /* the command's `hint` (qry_hint_given), or NULL */
    const bson_t *projection; /* the find's projection: may make the scan covered */
    bool filter_only;         /* the caller reads no field beyond the filter's (count) */
    bool need_sort_order;     /* *out NULL unless an index gives `sort`'s order */
};

/* The general form of the scan opens above: an index scan when the hint
 * names an index, or (no hint) when the planner finds one for `filter`, or
 * for `sort` an index whose order (forward, or backward when the sort is
 * the exact reverse of a key-pattern prefix) is the sort's; else a
 * collection scan (or, with need_sort_order, *out NULL). The documents are
 * a superset of the matches, which the caller filters. A hinted index is
 * scanned whatever the filter (over all of it when the filter does not
 * constrain its first field); a hinted sparse index returns only the
 * documents it has, as mongod. {$natural: ±1} and the _id index scan the
 * collection (in _id order). A read that sees its transaction's staged
 * writes scans the collection (a hint is still checked). With a
 * projection that only needs the index's fields (qry_plan_covers) on an
 * index without arrays (or with filter_only, a filter using only them),
 * the scan is covered: documents hold only _id and the index's fields (the
 * caller's projection and filter then apply as usual). Errors:
 * CAIRN_EINVAL with 2 BadValue when the hint names no ready, visible index
 * of the collection, or a partial one; as txn_scan_open. */
int txn_scan_open_query(struct txn_read *rd,
                        uint64_t coll_id,
                        const struct txn_scan_req *req,
                        struct txn_scan **out,
                        struct cairn_error *err);

/* True when the scan returns documents in the order of its request's sort. */
bool txn_scan_sorted(const struct txn_scan *sc);

/* The index scan's plan and live counters, or NULL for a collection scan. */
const struct txn_plan_info *txn_scan_plan(const struct txn_scan *sc);

/* Documents the scan returned so far (fetched, for an index scan). */
uint64_t txn_scan_docs_examined(const struct txn_scan *sc);

/* Next document: 1 with `doc` a static view valid until the next call, 0 at
 * the end, -1 on error (see txn_scan_error). */
int txn_scan_next(struct txn_scan *sc, bson_t *doc);
const struct cairn_error *txn_scan_error(const struct txn_scan *sc);

/* Closes a scan. NULL is a no-op. */
void txn_scan_close(struct txn_scan *sc);

/* Waits until reads at `level` on this member reflect every write with a
 * timestamp <= `ts` (readConcern.afterClusterTime / atClusterTime): on the
 * primary, commits in their commit section are waited for and, when
 * nothing written reaches `ts`, a no-op write carries the log past it (so a
 * local read then reflects `ts`); majority reads, and reads on other
 * members, wait, woken by the apply path, until `ts` is applied. Errors: CAIRN_EINVAL with 72
 * InvalidOptions when `ts` is above the cluster time; what cairn_op_check reports for `op` (50
 * MaxTimeMSExpired, ...); CAIRN_ESHUTDOWN. */
int txn_wait_cluster_time(struct txn_mgr *m,
                          cairn_ts ts,
                          int level,
                          struct cairn_op *op,
                          struct cairn_error *err);

/* Blocks until the commit at `ts` (proposed by this member as primary) is
 * majority-committed and applied here. Unlike repl_wait_applied it fails
 * when leadership ends before that (the entry may be rolled back: another
 * leader's entries passing `ts` prove nothing). `until_ns` (a
 * cairn_mono_ns() time, 0 = none) bounds the wait besides `op`. Errors:
 * CAIRN_ENOTLEADER with 11602 InterruptedDueToReplStateChange;
 * CAIRN_ETIMEOUT with 64 WriteConcernFailed at until_ns; what
 * cairn_op_check reports for `op` (may be NULL); CAIRN_ESHUTDOWN (91);
 * CAIRN_ENOMEM. Any client thread. */
int txn_wait_majority(struct txn_mgr *m,
                      cairn_ts ts,
                      struct cairn_op *op,
                      uint64_t until_ns,
                      struct cairn_error *err);

/* readConcern "linearizable": confirms, after a read that began while
 * this member was primary in write epoch `epoch` (repl_write_epoch, read
 * before the read began), that it still was primary when the read ended:
 * proposes a no-op entry and waits until it is majority-committed and
 * applied here with the epoch unchanged (mongod's
 * waitForLinearizableReadConcern). A primary deposed before the read
 * began can never get that entry committed in its epoch, so it never
 * confirms. *ts is the no-op's ts (the read's operationTime). Blocks the
 * calling thread, bounded by `op` (may be NULL: then until leadership
 * ends) and by `until_ns` (0 = none; mongod bounds getMore's confirmation
 * so). Errors: CAIRN_ENOTLEADER with 10107 NotWritablePrimary when no
 * longer primary before the no-op is proposed, or 11602
 * InterruptedDueToReplStateChange when leadership ended while waiting;
 * CAIRN_ETIMEOUT with 187 LinearizableReadConcernError at until_ns;
 * what cairn_op_check reports for `op` (50 MaxTimeMSExpired, ...);
 * CAIRN_ESHUTDOWN (91); CAIRN_ENOMEM. Any client thread. */
int txn_confirm_linearizable(struct txn_mgr *m,
                             uint64_t epoch,
                             struct cairn_op *op,
                             uint64_t until_ns,
                             cairn_ts *ts,
                             struct cairn_error *err);

/* ---- Write sets ---------------------------------------------------------- */

struct txn_write;
struct txn_session;

/* Begins a statement write (not part of a multi-document transaction):
 * records the write epoch and takes a local view for scans. No lock is
 * taken. With `sess` (a checked-out session in a retryable write, see
 * txn_session_retryable_begin) the statements recorded with
 * txn_write_record_stmt go into the session's durable record with the
 * commit. Errors: CAIRN_ENOTLEADER (10107 NotWritablePrimary), CAIRN_ENOMEM. */
int txn_write_begin(struct txn_mgr *m,
                    struct txn_session *sess,
                    struct txn_write **out,
                    struct cairn_error *err);

/* The write's view for reads and scans (do not end it; it ends with the
 * write). A statement's scans see the state before its own staged changes;
 * a transaction's see its own writes. A statement takes its view here, at
 * the first use: writes that need none (inserts, point updates build on
 * the newest version) never pay for a snapshot. Returns 0 with *rd set, or
 * CAIRN_ENOMEM. */
int txn_write_reader(struct txn_write *w, struct txn_read **rd, struct cairn_error *err);

/* Statements only: retakes the write's view so that scans see everything
 * committed so far (a findAndModify whose chosen document changed under it
 * chooses again). Returns 0 or CAIRN_ENOMEM; a transaction's view never
 * changes (0, nothing done). */
int txn_write_refresh_view(struct txn_write *w, struct cairn_error *err);

/* True for the write set of a multi-document transaction. */
bool txn_write_is_multi(const struct txn_write *w);

/* Resolves `ns` for writing; with `create` a missing collection is created
 * (staged, holding an intent on the namespace) and *created set. Errors:
 * CAIRN_ENOTFOUND (26 NamespaceNotFound) when missing and !create;
 * CAIRN_EINVAL (73) for bad names; CAIRN_ECONFLICT (112 WriteConflict) in a
 * transaction when another writer is creating it. */
int txn_write_coll(struct txn_write *w,
                   const char *ns,
                   bool create,
                   uint64_t *coll_id,
                   bool *created,
                   struct cairn_error *err);

/* Creates a collection. CAIRN_EEXISTS (48 NamespaceExists) if present. */
int txn_write_create(struct txn_write *w, const char *ns, struct cairn_error *err);

/* Drops a collection. CAIRN_ENOTFOUND (26 NamespaceNotFound) if absent.
 * Statements only. */
int txn_write_drop(struct txn_write *w, const char *ns, struct cairn_error *err);

/* Takes the intent on document `id` of `coll_id` and returns the version
 * this write must build on: the newest one (a statement), or the
 * transaction's own view after checking that no newer version exists.
 * On success initialises `doc` with a copy (caller destroys) and returns
 * 0, or returns CAIRN_ENOTFOUND (the intent is held either way: an insert
 * may follow). A statement meeting another holder commits what it staged
 * (its parts become visible, as MongoDB's multi-document writes do), then
 * waits for the holder, bounded by the current operation. Errors:
 * CAIRN_ECONFLICT (112 WriteConflict: transactions only); what
 * cairn_op_check reports while waiting; CAIRN_ENOTLEADER; CAIRN_EIO. */
int txn_write_lock(struct txn_write *w,
                   uint64_t coll_id,
                   const bson_value_t *id,
                   bson_t *doc,
                   struct cairn_error *err);

/* Point read that sees this write's staged changes (no intent). Same
 * contract as txn_read_get. */
int txn_write_get(struct txn_write *w,
                  uint64_t coll_id,
                  const bson_value_t *id,
                  bson_t *doc,
                  struct cairn_error *err);

/* Stages an insert of `doc` (which must contain _id), taking its intent as
 * txn_write_lock does. Errors: CAIRN_EEXISTS with mongo_code 11000 and
 * mongod's "E11000 duplicate key error collection: <ns> index: _id_ dup key:
 * { _id: ... }" when the _id exists; CAIRN_ETOOBIG (10334
 * BSONObjectTooLarge, or 257 TransactionTooLarge past TXN_MAX_TXN_BYTES in a
 * transaction); CAIRN_EINVAL (2/53) for an unusable _id; the errors of
 * txn_write_lock. */
int txn_write_insert(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_t *doc,
                     struct cairn_error *err);

/* Stages `doc` as the new version of the document with its _id (replace,
 * update or upsert), taking the intent if not yet held. Same errors as
 * insert except duplicates. */
int txn_write_put(struct txn_write *w,
                  uint64_t coll_id,
                  const bson_t *doc,
                  struct cairn_error *err);

/* Stages a delete of the document with `id`, taking the intent if not yet
 * held. Errors of txn_write_lock. */
int txn_write_delete(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_value_t *id,
                     struct cairn_error *err);

/* Number of ops staged since the last flush. */
size_t txn_write_n_ops(const struct txn_write *w);

/* Approximate bytes staged since the last flush. */
size_t txn_write_staged_bytes(const struct txn_write *w);

/* Statements: whether a commit of this write failed (what it staged and
 * the results it recorded are lost; the command must fail whole). */
bool txn_write_failed(const struct txn_write *w);

/* Records that retryable-write statement `stmt_id` executed with `result`
 * (copied: insert {}, update {n, nModified, upserted?}, delete {n},
 * findAndModify {value, lastErrorObject}); it enters the session record
 * with the next commit of this write. A write without a session ignores
 * it. Returns 0 or CAIRN_ENOMEM. */
int txn_write_record_stmt(struct txn_write *w, int32_t stmt_id, const bson_t *result);

/* Statements only: commits what is staged so far as one commit and keeps
 * the write open (intents of flushed keys are released, staging starts
 * afresh, the view stays so a running scan visits each document once).
 * *ts is the commit's ts (0 when nothing was staged). On error nothing of
 * the unflushed part is visible and the caller must txn_write_abort. */
int txn_write_flush(struct txn_write *w, cairn_ts *ts, struct cairn_error *err);

/* The ts of this write's newest commit so far (flushes included), 0 if
 * none. */
cairn_ts txn_write_last_ts(const struct txn_write *w);

/* Statements only: commits what is staged (see txn_write_flush) and frees
 * `w` in every case. *ts is the newest commit of the write, flushes
 * included (0 when it wrote nothing). Errors: CAIRN_ENOTLEADER (10107; also
 * when leadership changed since begin), CAIRN_ECONFLICT (112: a collection
 * written was dropped meanwhile), CAIRN_ETOOBIG, CAIRN_ENOMEM; on error
 * nothing of the unflushed part is visible. */
int txn_write_commit(struct txn_write *w, cairn_ts *ts, struct cairn_error *err);

/* Statements only: discards the staged changes, releases the intents and
 * frees `w`. NULL is a no-op. */
void txn_write_abort(struct txn_write *w);

/* Waits for the commit at `ts` to satisfy `wc`; see repl_wait. */
int txn_wait(struct txn_mgr *m,
             cairn_ts ts,
             const struct repl_wc *wc,
             repl_wait_cb cb,
             void *arg,
             struct cairn_error *err);

/* Proposes an empty commit (a no-op entry) and returns its ts, so that the
 * log reaches past the current cluster time. Errors: CAIRN_ENOTLEADER. */
int txn_noop_write(struct txn_mgr *m, cairn_ts *ts, struct cairn_error *err);

/* Commits a replica-set config (ENG_OP_CONFIG, see repl_reconfig_begin) as
 * one commit and returns its ts; the caller waits for it at majority.
 * Errors: CAIRN_ENOTLEADER, CAIRN_ENOMEM. Any client thread. */
int txn_write_config(struct txn_mgr *m,
                     const uint8_t *doc,
                     size_t len,
                     cairn_ts *ts,
                     struct cairn_error *err);

/* ---- Secondary indexes (index.c) ---------------------------------------- */

/* After a write on this thread failed with DuplicateKey (11000):
 * initialises `pattern` and `value` with that error's keyPattern and
 * keyValue (caller destroys both) and returns true; false (nothing
 * initialised) when there is none. Either way forgets it. */
bool txn_dup_info_take(bson_t *pattern, bson_t *value);

/* Lists the built indexes of collection `ns` (not the _id index) as the
 * read sees them: *out is a malloc'd array of *n normalised specs, each
 * freed with bson_destroy, the array with free(). Errors: CAIRN_ENOTFOUND
 * (26 NamespaceNotFound), CAIRN_ENOMEM, CAIRN_ECORRUPT, CAIRN_EIO. */
int txn_read_indexes(struct txn_read *rd,
                     const char *ns,
                     bson_t ***out,
                     size_t *n,
                     struct cairn_error *err);

struct txn_index_result
{
    int n_before, n_after;   /* indexes, the _id index included */
    bool created_collection; /* the collection did not exist */
    bool all_existed;        /* nothing to build */
};

/* createIndexes in write `w`: validates each spec (qry_index_compile and
 * mongod's conflicts with existing indexes: 85 IndexOptionsConflict, 86
 * IndexKeySpecsConflict, 67 CannotCreateIndex), creates `ns` when missing,
 * then builds the new indexes under the exclusive intent on `ns` (waiting
 * for its writers): catalog entries and specs (not ready), entries for every
 * document (a statement commits every MiB of entries, after which writers
 * go on and maintain the index), specs ready; the caller commits. Errors:
 * the above, 11000 DuplicateKey (a unique index over duplicates) and 171
 * (a document that cannot be indexed): then nothing of the build remains
 * (a statement that committed parts drops the indexes again), the wait's
 * errors, 112 (transactions). Runs on the calling client thread. */
int txn_index_create(struct txn_write *w,
                     const char *ns,
                     const bson_t *const *specs,
                     size_t n_specs,
                     struct txn_index_result *res,
                     struct cairn_error *err);

/* dropIndexes in statement write `w`: `target` is an index name, a key
 * pattern, "*" (every index but _id) or an array of names (all must
 * exist). *n_was is the number of indexes before (with _id). Errors
 * (mongo_code): 26 NamespaceNotFound, 27 IndexNotFound, 72 InvalidOptions
 * (the _id index), the intent wait's errors. The caller commits. */
int txn_index_drop(struct txn_write *w,
                   const char *ns,
                   const bson_value_t *target,
                   int *n_was,
                   struct cairn_error *err);

/* validate: checks, in the read's view, that every index of `ns` holds
 * exactly the entries its documents give, and appends mongod's validate
 * fields to `reply` (ns, nrecords, nIndexes, keysPerIndex, indexDetails
 * with extra/missing entry counts, valid, warnings, errors). Errors: 26
 * NamespaceNotFound, CAIRN_ENOMEM, CAIRN_EIO. */
int txn_index_validate(struct txn_read *rd, const char *ns, bson_t *reply, struct cairn_error *err);

/* renameCollection in statement write `w` (rename.c): under the exclusive
 * intents of both namespaces. Within one database it renames the catalog
 * entries of the collection and of its indexes, keeping their ids (no
 * document is touched: O(number of indexes)); across databases it creates
 * `to`, copies `from`'s documents and indexes (spec, entries) to it and
 * drops `from`. With `drop_target` an existing `to` is dropped first. The
 * caller commits (one commit: a cross-database copy too large for it
 * fails with CAIRN_ETOOBIG and nothing changes). Errors (mongo_code): 26 NamespaceNotFound (no
 * `from`), 48 NamespaceExists (`to` exists, no drop_target), 20 IllegalOperation (system
 * collections, `from` == `to`), 73 InvalidNamespace, the intent waits' errors. */
int txn_rename_collection(struct txn_write *w,
                          const char *from,
                          const char *to,
                          bool drop_target,
                          struct cairn_error *err);

/* collMod's index changes (ixmod.c). */
struct txn_index_mod
{
    bool has_hidden, hidden;
    bool has_ttl;
    int64_t ttl; /* expireAfterSeconds, checked by qry_index_compile */
};

struct txn_index_mod_result
{
    bool hidden_changed, hidden_old, hidden_new;
    bool ttl_changed;
    int32_t ttl_old, ttl_new;
};

/* collMod of the index `target` (a name or a key pattern) of `ns` in
 * statement write `w`: under the exclusive intent of `ns`, rewrites the
 * index's spec in place (same id, entries untouched) and rebinds its name
 * so every cached index set sees the change; nothing is staged when
 * nothing changes. The caller commits. Errors (mongo_code): 26 NamespaceNotFound,
 * 27 IndexNotFound, 72 InvalidOptions (expireAfterSeconds on an index that
 * is not TTL, a bad value, the _id index), the intent wait's errors. */
int txn_index_modify(struct txn_write *w,
                     const char *ns,
                     const bson_value_t *target,
                     const struct txn_index_mod *mod,
                     struct txn_index_mod_result *res,
                     struct cairn_error *err);

/* ---- Storage statistics (stats.c) --------------------------------------- */

/* One secondary index's estimated size. */
struct txn_ix_size
{
    char name[128];
    uint64_t bytes;
};

/* What dbStats/collStats report about one collection. */
struct txn_coll_stats
{
    bool exists;
    int64_t count;          /* visible documents */
    int64_t size;           /* their summed BSON sizes */
    uint64_t storage;       /* RocksDB's estimate for the documents' key space */
    struct txn_ix_size *ix; /* ready secondary indexes (malloc'd) */
    size_t n_ix;
};

/* Fills `st` for collection `ns` as the read sees it (a missing `ns` gives
 * exists false and zeros). Sizes are RocksDB approximate sizes of flushed
 * files (every version kept, compressed). Free with txn_coll_stats_free,
 * also after an error. Errors: CAIRN_ENOMEM, CAIRN_EIO, CAIRN_ECORRUPT. */
int txn_read_coll_stats(struct txn_read *rd,
                        const char *ns,
                        struct txn_coll_stats *st,
                        struct cairn_error *err);

/* RocksDB's estimate of the bytes collection `ns` and its indexes hold
 * (0 for a missing `ns`), without reading documents. Errors: CAIRN_EIO,
 * CAIRN_ENOMEM, CAIRN_ECORRUPT. */
int txn_read_coll_storage(struct txn_read *rd,
                          const char *ns,
                          uint64_t *bytes,
                          struct cairn_error *err);

/* The fsync command: writes the engine's memtables to files (and syncs the
 * WAL), waiting for it. Errors: CAIRN_EIO. Any client thread. */
int txn_flush(struct txn_mgr *m, struct cairn_error *err);

/* Frees what `st` holds. NULL is a no-op. */
void txn_coll_stats_free(struct txn_coll_stats *st);

/* ---- Sessions ------------------------------------------------------------ */

/* Checks out the session `lsid` (creating it when new) for one command:
 * exclusive until txn_session_checkin. Waits while another command has it,
 * bounded by `op` (which is also what a reaper or step-down interrupts
 * while the session is out). Errors: what cairn_op_check reports,
 * CAIRN_EBUSY with 261 TooManyLogicalSessions when a new session would
 * pass maxSessions, CAIRN_ENOMEM. */
int txn_session_checkout(struct txn_mgr *m,
                         const uint8_t lsid[TXN_LSID_LEN],
                         struct cairn_op *op,
                         struct txn_session **out,
                         struct cairn_error *err);

/* Gives the session back. If its transaction was marked for abort while
 * it was out (reaper, killSessions, step-down), it is aborted now. NULL is
 * a no-op. */
void txn_session_checkin(struct txn_session *s);

/* A command with txnNumber `n` and no autocommit field: a retryable write
 * (wire-protocol.md §4.3). Starts retryable write `n` (n above the active
 * number; aborts an open transaction) or continues it (n equal: a retry).
 * Errors (mongo_code): 225 TransactionTooOld (n below the active number),
 * 217 IncompleteTransactionHistory (n was a transaction), 10107 when not
 * primary. */
int txn_session_retryable_begin(struct txn_session *s, int64_t n, struct cairn_error *err);

/* For a retry: when statement `stmt_id` of the active retryable write
 * already executed, returns true and sets *result to a view of its recorded
 * result (valid while the session is checked out) and *ts to the commit
 * that carried it. */
bool txn_session_stmt_executed(struct txn_session *s,
                               int32_t stmt_id,
                               bson_t *result,
                               cairn_ts *ts);

/* Read concern of a transaction's first statement. */
struct txn_read_concern
{
    int level;         /* TXN_READ_LOCAL or TXN_READ_MAJORITY (snapshot: majority) */
    bool snapshot;     /* level "snapshot" was named */
    cairn_ts after_ts; /* afterClusterTime, 0 = none */
    cairn_ts at_ts;    /* atClusterTime (snapshot only), 0 = none */
};

/* startTransaction: true with txnNumber `n`: starts transaction `n`
 * (aborting an open one), waiting for the read concern's cluster time and
 * taking the transaction's snapshot. Errors (mongo_code): 225 (n below the
 * active number), 117 ConflictingOperationInProgress (n equal to it), 10107,
 * 239 SnapshotTooOld, 72 InvalidOptions, the wait's errors. */
int txn_session_txn_begin(struct txn_session *s,
                          int64_t n,
                          const struct txn_read_concern *rc,
                          struct cairn_op *op,
                          struct cairn_error *err);

/* A statement of transaction `n` without startTransaction (`for_commit`:
 * commitTransaction or abortTransaction). Errors (mongo_code): 225, 251
 * NoSuchTransaction (n is not the active transaction, or it was aborted),
 * 256 TransactionCommitted (a statement after commit; not for commit). On
 * success *state tells which: TXN_STATE_OPEN, or (for_commit only)
 * TXN_STATE_COMMITTED. */
enum txn_state {
    TXN_STATE_NONE = 0,
    TXN_STATE_OPEN = 1,
    TXN_STATE_COMMITTED = 2,
    TXN_STATE_ABORTED = 3,
};
int txn_session_txn_continue(struct txn_session *s,
                             int64_t n,
                             bool for_commit,
                             int *state,
                             struct cairn_error *err);

/* The open transaction's write set (NULL when none is open). */
struct txn_write *txn_session_txn(struct txn_session *s);

/* Commits the open transaction as one commit with its session record.
 * *ts is the commit ts, or for a transaction that wrote nothing its read
 * ts. For a transaction already committed, *ts is its commit ts (a retried
 * commit). Errors (mongo_code): 251 when no transaction is open, 112 when a
 * collection it wrote was dropped, 257 TransactionTooLarge, 10107 (the
 * transaction is then aborted). */
int txn_session_txn_commit(struct txn_session *s, cairn_ts *ts, struct cairn_error *err);

/* Aborts the open transaction (nothing of it becomes visible). Returns 0,
 * or 251 NoSuchTransaction when none is open, 256 when it committed. */
int txn_session_txn_abort(struct txn_session *s, struct cairn_error *err);

/* Aborts the open transaction after a failed statement (any error inside
 * a transaction aborts it). No-op when none is open. */
void txn_session_txn_fail(struct txn_session *s);

/* The active txnNumber (-1 when none) and the lsid. */
int64_t txn_session_txn_number(const struct txn_session *s);
const uint8_t *txn_session_lsid(const struct txn_session *s);

/* endSessions / killSessions: aborts the open transaction of each listed
 * session (interrupting a command running on it) and forgets idle ones.
 * killSessions also interrupts any command running on them. Any thread. */
void txn_sessions_end(struct txn_mgr *m, const uint8_t (*lsids)[TXN_LSID_LEN], size_t n, bool kill);

/* killAllSessions: as txn_sessions_end with kill for every session. */
void txn_sessions_kill_all(struct txn_mgr *m);

/* refreshSessions: marks the sessions used now. */
void txn_sessions_refresh(struct txn_mgr *m, const uint8_t (*lsids)[TXN_LSID_LEN], size_t n);

/* ---- Statistics ------------------------------------------------------------ */

struct txn_stats
{
    int64_t current_active;   /* open transactions with a command running */
    int64_t current_inactive; /* open transactions between commands */
    int64_t current_open;
    int64_t total_started;
    int64_t total_committed;
    int64_t total_aborted;
    int64_t retried_commands;   /* retryable-write commands that were retries */
    int64_t retried_statements; /* statements answered from session records */
    int64_t sessions;           /* sessions in memory */
    int64_t keys_examined;      /* index entries read by closed scans */
    int64_t docs_examined;      /* documents closed scans returned (fetched) */
};

void txn_stats_get(struct txn_mgr *m, struct txn_stats *out);

/* One open transaction, for currentOp. */
struct txn_open_info
{
    uint8_t lsid[TXN_LSID_LEN];
    int64_t txn_number;
    bool active;            /* a command is running on its session */
    int64_t start_wall_ms;  /* when it started */
    int64_t expire_wall_ms; /* when the reaper aborts it */
    cairn_ts read_ts;
    uint64_t op_id; /* running command's opid when active, else 0 */
};

/* Calls fn for every open transaction (under the session table's lock: fn
 * must not block nor call back into txn). */
void txn_foreach_open(struct txn_mgr *m,
                      void (*fn)(const struct txn_open_info *info, void *arg),
                      void *arg);

#endif /* CAIRN_TXN_TXN_H */
