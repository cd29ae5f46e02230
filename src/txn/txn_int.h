/*
 * txn_int.h: private to src/txn. The manager, read views, write sets, the
 * intent lock table and sessions, shared by the files of the layer:
 *
 *   txn.c      the manager: open/close, parameters, statistics, the
 *              leadership callback and the reaper thread
 *   clock.c    the cluster clock
 *   read.c     read views and scans (a transaction's merge its own writes)
 *   locks.c    the intent lock table
 *   write.c    write sets: staging, intents, the commit section
 *   session.c  sessions, the txnNumber state machine, session records
 *
 * Lock order (a lock may be taken while holding the ones before it):
 *   sess_mu -> locks.mu;  commit_mu -> (engine and repl internal locks).
 * commit_mu is never held while waiting for an intent, and locks.mu is
 * never held across anything but the lock table itself.
 */
#ifndef CAIRN_TXN_TXN_INT_H
#define CAIRN_TXN_TXN_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "lib/buf.h"
#include "txn/txn.h"

struct qry_index;

/* ---- Intent lock table (locks.c) ---------------------------------------- */

/* One held intent on (coll_id, key). coll_id 0 with key = a namespace is
 * a namespace intent: exclusive to create or drop that collection, shared
 * to write into it (locks.c). */
struct txn_lock
{
    uint64_t coll_id;
    uint64_t hash;
    struct txn_write *owner;
    bool shared;           /* namespace intents only */
    bool waiting;          /* a queued exclusive request, not held (locks.c, 4) */
    bool pinned;           /* owner only: kept across a statement's flush (write.c, 4) */
    struct txn_lock *next; /* hash chain */
    size_t key_len;
    uint8_t key[];
};

struct txn_locks
{
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast when an intent is released and someone waits */
    struct txn_lock **buckets;
    size_t n_buckets; /* a power of two */
    size_t n;         /* intents held */
    size_t n_waiters; /* threads in txn_locks_wait_free */
};

int txn_locks_init(struct txn_locks *t);
void txn_locks_destroy(struct txn_locks *t);

/* Takes the intent on (coll_id, key) for `owner`, `shared` (namespace
 * intents only) or exclusive. Returns 0 with *lk the intent when taken now
 * (*lk must be released later) or *lk NULL when `owner` already holds it
 * (a shared one it holds alone is upgraded to exclusive when asked);
 * CAIRN_EBUSY when another write's intent conflicts; CAIRN_ENOMEM. */
int txn_locks_try(struct txn_locks *t,
                  uint64_t coll_id,
                  const uint8_t *key,
                  size_t key_len,
                  struct txn_write *owner,
                  bool shared,
                  struct txn_lock **lk);

/* Waits until `owner` could take the intent (see txn_locks_try), bounded
 * by `op`. An exclusive namespace intent is queued while it waits and
 * taken when it returns: *lk is then the intent held (to release later);
 * otherwise *lk is NULL and the caller tries again. Returns 0 or what
 * cairn_op_wait reports (nothing held then). */
int txn_locks_wait_free(struct txn_locks *t,
                        uint64_t coll_id,
                        const uint8_t *key,
                        size_t key_len,
                        struct txn_write *owner,
                        bool shared,
                        struct cairn_op *op,
                        struct txn_lock **lk,
                        struct cairn_error *err);

/* Makes an exclusive namespace intent shared (after its create commits,
 * the creator goes on writing into the collection) and wakes waiters. */
void txn_locks_downgrade(struct txn_locks *t, struct txn_lock *lk);

/* Releases the intents (freeing them) and wakes waiters. */
void txn_locks_release(struct txn_locks *t, struct txn_lock **lks, size_t n);

/* ---- Sessions (session.c) ---------------------------------------------- */

/* A statement result of the active retryable write. */
struct txn_stmt
{
    int32_t stmt_id;
    cairn_ts ts;    /* the commit that carried it */
    bson_t *result; /* owned */
};

struct txn_session
{
    uint8_t lsid[TXN_LSID_LEN];
    struct txn_mgr *m;
    struct txn_session *next; /* hash chain, under sess_mu */

    /* Under sess_mu. */
    bool checked_out;
    int waiters;         /* checkouts waiting for it */
    bool counted_active; /* counted in n_active (an open transaction, checked out) */
    struct cairn_op *op; /* the command holding it, while checked out */
    int64_t last_use_ms;
    bool ended;            /* endSessions: forget when idle */
    bool abort_wanted;     /* abort the open transaction at checkin */
    int abort_code;        /* why (for the statistics / messages) */
    uint64_t loaded_epoch; /* write epoch whose durable state is loaded */

    /* Owned by the command that has the session checked out (or, when
     * idle, by whoever holds sess_mu). */
    int64_t active_txn;    /* -1: none */
    bool is_txn;           /* active number is a multi-document transaction */
    int state;             /* enum txn_state of the transaction */
    struct txn_write *txn; /* open transaction's write set */
    int64_t txn_start_ms;
    int64_t txn_expire_ms;
    cairn_ts commit_ts;     /* committed transaction, or newest retryable commit */
    struct txn_stmt *stmts; /* executed statements of the active retryable write, by stmt_id */
    size_t n_stmts, cap_stmts;
    uint32_t n_recs;     /* statement records written for active_txn (see session.c) */
    int64_t durable_txn; /* txnNumber of the newest record written or loaded; -1: none */
};

/* The session records one commit carries (session.c describes them). */
struct txn_session_recs
{
    bool have_header; /* under the lsid */
    bson_t header;
    bool have_stmts; /* a statement record, under stmts_key */
    bson_t stmts;
    uint8_t stmts_key[TXN_LSID_LEN + 4];
};

/* Builds the record a commit of `w` carries (session.c describes them):
 * the header of its txnNumber, with a retryable write's pending statements
 * that the session has not recorded yet, at the first commit of the
 * number; later, a statement record with them (none when there is none).
 * Returns 0 or CAIRN_ENOMEM; on success the caller frees with
 * txn_session_recs_fini. */
int txn_session_recs_build(struct txn_session *s,
                           const struct txn_write *w,
                           struct txn_session_recs *out);
void txn_session_recs_fini(struct txn_session_recs *r);

/* Commit hook (write.c calls it after a successful commit of a write with
 * a session, with the records it carried or NULL): moves the write's
 * recorded statements into the session and notes the commit ts; for a
 * transaction, marks it committed. */
void txn_session_note_commit(struct txn_session *s,
                             struct txn_write *w,
                             const struct txn_session_recs *recs,
                             cairn_ts ts);

/* Session table. */
struct txn_sessions
{
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a session was checked in */
    struct txn_session **buckets;
    size_t n_buckets;
    size_t n;
};

int txn_sessions_init(struct txn_sessions *t);

/* Aborts every open transaction and frees every session. */
void txn_sessions_destroy(struct txn_mgr *m);

/* The reaper's pass: aborts transactions past their lifetime and forgets
 * sessions idle past the session timeout. */
void txn_sessions_reap(struct txn_mgr *m, int64_t now_ms);

/* Leadership lost: aborts every open transaction (interrupting commands
 * running on them with 11602). Leadership gained: nothing to do (durable
 * session state is reloaded at the next checkout in the new epoch). Must
 * not block: called on the raft thread. */
void txn_sessions_on_leadership(struct txn_mgr *m, bool writable);

/* ---- Write sets (write.c) ----------------------------------------------- */

/* One staged op; buffers are owned by the write. */
struct txn_staged
{
    int kind;
    uint64_t coll_id;
    uint8_t *key;
    size_t key_len;
    uint8_t *doc;
    size_t doc_len;
    char *ns;
};

/* A collection this write resolved, for the commit-time check that it
 * still exists. */
struct txn_wcoll
{
    uint64_t id;
    char *ns;
};

/* A statement result waiting for the write's next commit. */
struct txn_pending_stmt
{
    int32_t stmt_id;
    bson_t *result;
};

struct txn_read
{
    struct txn_mgr *m;
    struct eng_snap *snap;
    bool local;
    cairn_ts ts;         /* what the read reflects (operationTime) */
    struct txn_write *w; /* a transaction's write set whose writes it sees (ref held) */
    bool embedded;       /* the reader inside a write: not freed by txn_read_end */
};

struct txn_write
{
    struct txn_mgr *m;
    atomic_int ref; /* the owner, plus reads that see its writes */
    bool multi;
    uint64_t epoch;   /* write epoch at begin */
    cairn_ts read_ts; /* multi: the snapshot; a newer version is a conflict */
    struct txn_read rd;
    struct txn_session *sess;
    int64_t txn_number;

    struct txn_staged *ops;
    size_t n_ops, cap_ops;
    size_t *slots; /* open addressing over PUT/DELETE ops: op index + 1 */
    size_t n_slots;
    uint64_t next_coll_id; /* 0 = ask the engine */
    size_t staged_bytes;   /* since the last flush */
    size_t total_bytes;    /* since begin (transactions) */

    struct txn_lock **locks; /* intents held */
    size_t n_locks, cap_locks;

    struct txn_wcoll *colls;
    size_t n_colls, cap_colls;

    struct txn_pending_stmt *pend;
    size_t n_pend, cap_pend;

    cairn_ts last_ts;
    bool failed;          /* statements: a commit of this write failed */
    struct cairn_buf key; /* scratch for key encoding */
};

/* Begins the write set of a multi-document transaction reading at
 * `read_ts` (local: with the overlay). Returns 0, CAIRN_ENOTLEADER,
 * CAIRN_EINVAL (239 below the history kept), CAIRN_ENOMEM. */
int txn_write_begin_multi(struct txn_mgr *m,
                          struct txn_session *s,
                          bool local,
                          cairn_ts read_ts,
                          struct txn_write **out,
                          struct cairn_error *err);

/* Commits a transaction's write set as one commit (with its session
 * record). *ts = the commit ts, 0 when nothing was written. Does not free. */
int txn_write_commit_multi(struct txn_write *w, cairn_ts *ts, struct cairn_error *err);

/* Releases everything a write set holds (intents, staging, its view) and
 * drops the owner's reference. */
void txn_write_release(struct txn_write *w);

/* Reference counting for reads that see a transaction's writes. */
void txn_write_ref(struct txn_write *w);
void txn_write_unref(struct txn_write *w);

/* The staged op for (coll_id, key), or NULL. */
const struct txn_staged *txn_write_staged(const struct txn_write *w,
                                          uint64_t coll_id,
                                          const uint8_t *key,
                                          size_t len);

/* Finds a collection created or dropped by this write: 1 created (id
 * set), -1 dropped, 0 not touched. The last op on the namespace wins. */
int txn_write_staged_coll(const struct txn_write *w, const char *ns, uint64_t *id);

/* ---- Write-set internals index.c uses (write.c) ------------------------- */

/* Takes the intent on (coll_id, key) as write.c's statements and
 * transactions do (exclusive unless `shared`; coll_id 0 = a namespace).
 * A statement that must wait commits what it staged first; intents marked
 * pinned survive that commit. Errors: CAIRN_ECONFLICT (112, transactions),
 * the wait's errors. */
int txn_write_lock_key(struct txn_write *w,
                       uint64_t coll_id,
                       const uint8_t *key,
                       size_t len,
                       bool shared,
                       struct cairn_error *err);

/* The intent this write holds on (coll_id, key), or NULL. */
struct txn_lock *txn_write_held(struct txn_write *w,
                                uint64_t coll_id,
                                const uint8_t *key,
                                size_t len);

/* Clears the pinned mark of every intent of the write. */
void txn_write_unpin(struct txn_write *w);

/* Stages a PUT (doc != NULL) or DELETE of (coll_id, key), copying the
 * bytes; no intent is taken (the caller holds what covers it). */
int txn_write_stage_raw(struct txn_write *w,
                        uint64_t coll_id,
                        const uint8_t *key,
                        size_t key_len,
                        const uint8_t *doc,
                        size_t doc_len,
                        struct cairn_error *err);

/* Stages the creation of index namespace `ns` (no name check, not noted
 * as a written collection) with a fresh id, returned in *id. */
int txn_write_stage_create(struct txn_write *w,
                           const char *ns,
                           uint64_t *id,
                           struct cairn_error *err);

/* Stages a copy of every visible key of key space `from_id` (as `rd`, a
 * view of `w`, sees it) under `to_id`, without an index's spec key when
 * `skip_spec` (rename.c). The caller holds the exclusive intent covering
 * both. Errors: CAIRN_ENOMEM, CAIRN_EIO, CAIRN_ETOOBIG. */
int txn_copy_space(struct txn_write *w,
                   struct txn_read *rd,
                   uint64_t from_id,
                   uint64_t to_id,
                   bool skip_spec,
                   struct cairn_error *err);

/* Stages the drop of `ns` (id `id`) and every version under that id; with
 * id ENG_UNBIND_ID only the name's catalog entry (a rename's unbind: the
 * versions stay). */
int txn_write_stage_drop(struct txn_write *w, const char *ns, uint64_t id, struct cairn_error *err);

/* Stages the bind of existing id `id` to name `ns` (an ENG_OP_CREATE that
 * allocates nothing): the second half of a rename, after the unbind of the
 * old name (txn_write_stage_drop with ENG_UNBIND_ID) in the same commit.
 * A collection name (`coll_ns`) is checked (73 InvalidNamespace) and
 * noted as written. Errors: those, CAIRN_ENOMEM. */
int txn_write_stage_bind(struct txn_write *w,
                         const char *ns,
                         bool coll_ns,
                         uint64_t id,
                         struct cairn_error *err);

/* The namespace this write resolved for collection `coll_id`, or NULL. */
const char *txn_write_coll_ns(const struct txn_write *w, uint64_t coll_id);

/* Statements: drops everything staged since the last commit and the
 * document intents that covered it (namespace intents stay, shared), so
 * the write may then wait for an intent (write.c, 4). */
void txn_write_discard_staged(struct txn_write *w);

/* Records the key pattern and value of a DuplicateKey error (copied) for
 * txn_dup_info_take on this thread. */
void txn_write_set_dup(struct txn_write *w, const bson_t *pattern, const bson_t *value);

/* ---- Secondary indexes (index.c) ---------------------------------------- */

/* The two keys under an index id that are not entries (entries never
 * start with 0x00): the spec wrapper, and the multikey marker, present once
 * any document had several keys in the index (written in the commit of
 * that document, so a snapshot without it has no multikey document). */
#define TXN_IX_META_LEN 2
extern const uint8_t txn_ix_spec_key[TXN_IX_META_LEN];
extern const uint8_t txn_ix_multikey_key[TXN_IX_META_LEN];

/* One index of a collection, as its spec document says. */
struct txn_ixdesc
{
    uint64_t id;             /* the index's catalog id: its entries' key space */
    bool ready;              /* built (a build in progress is maintained but not listed) */
    struct qry_index *ix;    /* compiled spec */
    char ns[ENG_NS_MAX + 1]; /* "<db>.<coll>.$<name>" */
};

/* The indexes of one collection (immutable once published; ref counted). */
struct txn_ixset
{
    atomic_int ref;
    uint64_t coll_id;
    /* The name it was loaded for: a collection keeps its id through a
     * rename, and a read below the rename resolves the old name to it. */
    char ns[ENG_NS_MAX + 1];
    uint64_t gen; /* eng_catalog_gen when loaded */
    size_t n;
    struct txn_ixdesc *v; /* by id */
};

/* The cache of index sets, one per collection written since it changed. */
struct txn_ixcache
{
    pthread_mutex_t mu;
    struct txn_ixset **sets;
    size_t n, cap;
};

int txn_ixcache_init(struct txn_ixcache *c);
void txn_ixcache_destroy(struct txn_ixcache *c);

/* The indexes of collection (coll_id, ns) as the newest local catalog has
 * them, from the cache when the catalog did not change since. On success
 * *out is a reference (txn_ixset_unref). Errors: CAIRN_ENOMEM,
 * CAIRN_ECORRUPT (an unreadable spec), CAIRN_EIO. */
int txn_ixset_get(struct txn_mgr *m,
                  uint64_t coll_id,
                  const char *ns,
                  struct txn_ixset **out,
                  struct cairn_error *err);

/* Drops a reference. NULL is a no-op. */
void txn_ixset_unref(struct txn_ixset *s);

/* Loads the indexes of (coll_id, ns) uncached: from the catalog view
 * `local` and the newest spec versions (snap NULL), or as snapshot `snap`
 * sees them (indexes created after it are left out). On success *out holds
 * one reference. Errors: CAIRN_ENOMEM, CAIRN_ECORRUPT, CAIRN_EIO. */
int txn_ixset_load(struct eng *e,
                   struct eng_snap *snap,
                   bool local,
                   uint64_t coll_id,
                   const char *ns,
                   struct txn_ixset **out,
                   struct cairn_error *err);

/* Index maintenance for one document of `coll_id` whose version changes
 * from `old` (NULL: none) to `new_doc` (NULL: deleted), called with the
 * document's intent held (w->key holds its encoded _id and is kept):
 * stages the entries to delete and to add, taking the intent on every
 * unique key that changes (pinned with the document's, in (index, key)
 * order), and fails with CAIRN_EEXISTS (11000 DuplicateKey) when another
 * document holds a unique key the new version needs, or CAIRN_EINVAL (171)
 * when it cannot be indexed. Nothing is staged on error. */
int txn_ix_maintain(struct txn_write *w,
                    uint64_t coll_id,
                    const bson_t *old,
                    const bson_t *new_doc,
                    struct cairn_error *err);

/* True when collection `coll_id` (ns) has secondary indexes (so callers
 * can skip reading the old version). Errors as txn_ixset_get. */
int txn_ix_any(struct txn_write *w, uint64_t coll_id, bool *any, struct cairn_error *err);

/* Index scans (ixscan.c). txn_ixscan_open sets *out to NULL when no index
 * serves the request (see txn_scan_open_query): then the caller scans the
 * collection (or, with need_sort_order, returns no scan). *sorted tells
 * whether the index scan gives req->sort's order. Errors: as
 * txn_scan_open_query. */
struct txn_ixscan;
int txn_ixscan_open(struct txn_read *rd,
                    uint64_t coll_id,
                    const struct txn_scan_req *req,
                    struct txn_ixscan **out,
                    bool *sorted,
                    struct cairn_error *err);
/* 1 with `doc` a view valid until the next call, 0 at the end, -1 on error. */
int txn_ixscan_next(struct txn_ixscan *x, bson_t *doc, struct cairn_error *err);
const struct txn_plan_info *txn_ixscan_info(const struct txn_ixscan *x);
void txn_ixscan_close(struct txn_ixscan *x);

/* One TTL monitor pass (ttl.c): on the primary, deletes the documents TTL
 * indexes say expired, through statement writes. The reaper thread. */
void txn_ttl_pass(struct txn_mgr *m);

/* Stages the drop of every index of `ns` (a drop of the collection). */
int txn_ix_drop_all(struct txn_write *w, const char *ns, struct cairn_error *err);

/* ---- Reads (read.c) ----------------------------------------------------- */

/* Initialises an embedded reader (the view of a write): local newest
 * (read_ts CAIRN_TS_MAX) or at `read_ts`. */
int txn_read_init(struct txn_mgr *m,
                  bool local,
                  cairn_ts read_ts,
                  struct txn_read *rd,
                  struct cairn_error *err);

/* Releases an embedded reader's snapshot. */
void txn_read_fini(struct txn_read *rd);

/* Copies BSON bytes into `doc` after validating their framing. */
int txn_bytes_to_doc(const uint8_t *data, size_t len, bson_t *doc, struct cairn_error *err);

/* ---- Clock (clock.c) ---------------------------------------------------- */

/* Assigns the next commit timestamp (commit_mu held). */
cairn_ts txn_clock_next(struct txn_mgr *m);

/* ---- The manager (txn.c) ------------------------------------------------ */

/* Reads at explicit timestamps below this are SnapshotTooOld (239): the
 * oldest of what the engine's GC may have collected and of the history
 * window mongod keeps (minSnapshotHistoryWindowInSeconds, 300 s behind the
 * newest applied write), as mongod's oldest timestamp. */
#define TXN_HISTORY_SECS 300
cairn_ts txn_history_floor(struct txn_mgr *m);

struct txn_mgr
{
    struct eng *eng;
    struct repl *repl;
    _Atomic uint64_t cluster_ts;
    _Atomic int64_t lifetime_secs;
    _Atomic int64_t max_sessions;
    _Atomic int64_t ttl_sleep_secs;

    pthread_mutex_t commit_mu; /* the commit section */
    struct txn_locks locks;
    struct txn_ixcache ixcache;
    pthread_mutex_t builds_mu; /* index builds running on this member */
    uint64_t *builds;
    size_t n_builds, cap_builds;
    struct txn_sessions sessions;

    /* Reaper thread. */
    pthread_t reaper;
    bool reaper_started;
    pthread_mutex_t reaper_mu;
    pthread_cond_t reaper_cv;
    bool stopping;

    /* Statistics (relaxed atomics). */
    atomic_llong n_started;
    atomic_llong n_committed;
    atomic_llong n_aborted;
    atomic_llong n_open;
    atomic_llong n_active;
    atomic_llong n_retried_cmds;
    atomic_llong n_keys_examined; /* scans, added as each closes */
    atomic_llong n_docs_examined;
    atomic_llong n_retried_stmts;
};

#endif /* CAIRN_TXN_TXN_INT_H */
