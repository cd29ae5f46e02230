/*
 * cursor.h: private to src/net. The server-side cursor registry used by
 * find, aggregate, listCollections, listIndexes, getMore and killCursors,
 * and a few document/field helpers shared by the data-command files
 * (cmd_crud.c, cmd_read.c, cmd_ddl.c).
 *
 * A cursor produces documents either by streaming (an open txn_read + scan
 * + matcher + projection, kept across getMore calls) or from a materialised
 * array of owned documents (sorted finds, aggregate, list commands).
 * Registered cursors have a positive int64 id; one command uses a cursor at
 * a time (busy flag); idle cursors expire after cursorTimeoutMillis; an
 * exhausted cursor is freed by the command that exhausted it. Cursors are
 * looked up in a hash table; idle expiry runs on the sweeper's timer. A cursor
 * belongs to the session (lsid) and transaction (txnNumber) of the command
 * that created it, and only getMores of that session and transaction may
 * use it, as in mongod; killCursors may kill any cursor.
 *
 * Threads: the registry functions are thread-safe. A cursor obtained from
 * net_cursor_acquire (or created and not yet registered) belongs to the
 * calling thread until net_cursor_release / net_cursor_free.
 */
#ifndef CAIRN_NET_CURSOR_H
#define CAIRN_NET_CURSOR_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "query/query.h"
#include "txn/txn.h"

/* Idle cursors are freed after cursorTimeoutMillis (params.c), by default
 * 10 minutes as mongod's. */
#define NET_CURSOR_IDLE_NS (600ull * 1000000000ull)

/* A batch ends before its documents, with their array element overhead
 * (type byte and key), would exceed this many bytes. */
#define NET_BATCH_MAX_BYTES (16 * 1024 * 1024)

/* Default number of documents in a first batch. */
#define NET_DEFAULT_BATCH 101

/* mongod's kLinearizableReadConcernTimeout: how long a getMore of a
 * linearizable cursor waits to confirm leadership (187 past it). */
#define NET_LINEARIZABLE_GETMORE_MS 15000

struct net_cursor
{
    int64_t id;   /* 0 until registered */
    char ns[320]; /* namespace getMore must name: "db.coll", "db.$cmd.listCollections" */

    /* Streaming source (all owned; rd NULL when materialised). */
    struct txn_read *rd;
    struct txn_scan *sc;
    struct qry_matcher *matcher;
    struct qry_projection *proj;
    int64_t skip; /* matching documents still to skip */

    /* Materialised source: owned documents, already projected. */
    bson_t **docs;
    size_t n_docs;
    size_t pos;
    size_t held_bytes; /* of docs, charged to qry_mem_charge (net_cursor_charge_docs) */

    /* A sort spilled to disk (allowDiskUse): documents are merged from its
     * runs as batches are made, then skipped and projected (skip, proj).
     * Owned, with the sort spec it uses; rd is NULL. */
    struct qry_sortbuf *spilled;
    struct qry_sort *spilled_sort;

    /* Collection a find/aggregate cursor reads (0 = none): getMore fails
     * with QueryPlanKilled once it has been dropped, as in mongod. */
    uint64_t coll_id;
    /* repl_checkpoint_installs when it was opened: a streaming cursor
     * whose member installed a checkpoint since is killed (QueryPlanKilled),
     * since the data it was reading was replaced. */
    uint64_t installs;

    /* What its read showed of the primary's commits not yet applied
     * (txn_read_overlay_token): once they are discarded (a step-down), the
     * next getMore fails with InterruptedDueToReplStateChange rather than
     * go on from data that may roll back. */
    uint64_t ovl_token;

    int64_t limit_left; /* documents still allowed; -1 = unlimited */
    bson_t *pending;    /* a produced document not yet sent (owned), or NULL */
    bool exhausted;     /* no more documents */

    /* The session and transaction of the command that created the cursor
     * (mongod's ClientCursor getSessionId / getTxnNumber), set when it is
     * registered: getMore must come in the same session, and for a cursor
     * of a transaction as a statement of that transaction
     * (net_cursor_check_session). A transaction's cursor reads its write
     * set, which only a command that checked the session out may touch. */
    bool has_lsid;
    uint8_t lsid[TXN_LSID_LEN];
    bool has_txn;
    int64_t txn_number;

    /* Opened by a linearizable read: each getMore confirms leadership
     * again (mongod's getMore does, bounded by NET_LINEARIZABLE_GETMORE_MS). */
    bool linearizable;

    /* find's noCursorTimeout: never reaped for idleness (set before it is
     * registered). */
    bool no_timeout;

    /* Registry state (guarded by the registry lock). */
    bool busy;
    bool killed;
    uint64_t last_used_ns;
    struct net_cursor *next;
};

/* Allocates an empty, unregistered cursor for `ns` (copied). Returns NULL
 * when out of memory. Free with net_cursor_free (or register it). */
struct net_cursor *net_cursor_new(const char *ns);

/* Frees an unregistered (or acquired and removed) cursor: closes the scan,
 * ends the read, frees matcher, projection and documents. NULL is a no-op. */
void net_cursor_free(struct net_cursor *cur);

/* Sets the materialised source: takes ownership of `docs` (an array of
 * owned bson_t * from malloc/realloc) and its documents. */
void net_cursor_set_docs(struct net_cursor *cur, bson_t **docs, size_t n);

/* Charges the materialised documents to the server-wide query memory
 * budget (qry_mem_charge) for as long as the cursor holds them: each is
 * released as it is sent, the rest when the cursor is freed. Fails with 146
 * ExceededMemoryLimit (nothing charged) when the budget is spent; the caller
 * then frees the cursor. */
int net_cursor_charge_docs(struct net_cursor *cur, struct cairn_error *err);

/* Appends the cursor's next documents to the BSON array being built in
 * `arr` (keys "0", "1", ...), at most `max_docs` (-1 = no count limit) and
 * stopping before the batch would exceed NET_BATCH_MAX_BYTES (a batch always
 * holds at least one document when one is available). Sets cur->exhausted
 * when it knows no document is left (it looks one document ahead). Returns
 * 0, or an error from the scan or the projection (mongo_code set). */
int net_cursor_fill(struct net_cursor *cur, int64_t max_docs, bson_t *arr, struct cairn_error *err);

/* Registers `cur` (which must not be exhausted): assigns a fresh positive
 * id, marks it idle. The registry owns it afterwards; the caller must not
 * touch it again except through net_cursor_acquire. Returns the id. */
int64_t net_cursor_register(struct net_cursor *cur);

/* Takes cursor `id` for exclusive use (a hash lookup). Errors:
 * CAIRN_ENOTFOUND with mongo_code 43 CursorNotFound "cursor id N not
 * found"; CAIRN_EBUSY with 143 CursorInUse when another command is using
 * it. */
int net_cursor_acquire(int64_t id, struct net_cursor **out, struct cairn_error *err);

struct net_cmd;

/* For getMore of cursor `id` (acquired as `cur`) by command `c`: checks
 * that `c` runs in the session and transaction that created the cursor,
 * as mongod's getMore does (validateLSID, validateTxnNumber), in this
 * order. The lsid is the command's own (implicit sessions included), the
 * txnNumber the one dispatch checked the session out with. Errors (c->err
 * set, returns its CAIRN_E* code; the cursor stays as it was):
 *   50736 "... which was not created in a session, in session S";
 *   50737 "... which was created in session S, without an lsid";
 *   50738 "... which was created in session S, in session S2";
 *   50739 "... which was not created in a transaction, in transaction T";
 *   50740 "... which was created in transaction T, without a txnNumber";
 *   50741 "... which was created in transaction T, in transaction T2".
 * Sessions are printed as mongod prints a LogicalSessionId without
 * authentication ("<uuid> - <uid digest> -  - "). */
int net_cursor_check_session(const struct net_cursor *cur, int64_t id, struct net_cmd *c);

/* Gives an acquired cursor back. When it is exhausted (or was killed
 * meanwhile) it is removed from the registry and freed. */
void net_cursor_release(struct net_cursor *cur);

/* Kills cursor `id` if it exists and (when ns is not NULL) belongs to `ns`.
 * A busy cursor is freed when its command releases it. Returns true when a
 * cursor was killed. */
bool net_cursor_kill(int64_t id, const char *ns);

/* Frees every registered cursor that is not in use (their reads end). For
 * server shutdown, after the workers stopped: the engine must not be closed
 * while a cursor still holds a read. Returns how many were left (busy). */
size_t net_cursor_close_all(void);

/* Number of registered cursors (for serverStatus and tests). */
size_t net_cursor_count(void);

/* Frees the cursors idle (not busy, not noCursorTimeout) for longer than
 * cursorTimeoutMillis at `now_ns` (monotonic). Walks them all at most every
 * quarter of the timeout (at most a second apart): called on every tick of
 * the sweeper. Returns how many it freed. */
size_t net_cursor_reap(uint64_t now_ns);

/* serverStatus metrics.cursor. */
struct net_cursor_stats
{
    size_t open;        /* registered */
    size_t no_timeout;  /* registered with noCursorTimeout */
    uint64_t timed_out; /* reaped for idleness since start */
    size_t buckets;     /* hash table size */
    uint64_t lookups;   /* id lookups since start, and the cursors they */
    uint64_t probes;    /* compared: probes / lookups stays small */
};
void net_cursor_stats_get(struct net_cursor_stats *out);

/* ---- Helpers shared by the data-command files -------------------------- */

/* Reads field `field` of `doc` (an element of a command, named
 * `path` in messages, e.g. "update.updates") as a boolean: bool, or any
 * number (non-zero = true). Absent leaves *out unchanged. Else 14
 * TypeMismatch "BSON field '<path>.<field>' is the wrong type ...". */
int net_dc_get_bool(const bson_t *doc,
                    const char *path,
                    const char *field,
                    bool *out,
                    struct cairn_error *err);

/* Like net_dc_get_bool for an integral number (int32, int64, or a double
 * with an integral value). */
int net_dc_get_int64(const bson_t *doc,
                     const char *path,
                     const char *field,
                     int64_t *out,
                     struct cairn_error *err);

/* Like net_dc_get_bool for an embedded document: *out becomes a static view. */
int net_dc_get_doc(const bson_t *doc,
                   const char *path,
                   const char *field,
                   bson_t *out,
                   struct cairn_error *err);

/* Prepares a document for storage as mongod does on insert: _id first
 * (generated as an ObjectId when missing), _id not an array (2 "can't use
 * an array for _id"), regex or undefined (2), no '$'-prefixed top-level
 * field names (2 "Document can't have $ prefixed field names: $x"), no
 * '$'-prefixed names in an _id document (53 InvalidIdField). `out` is
 * initialised by the callee on success only. */
int net_dc_prepare_doc(const bson_t *in, bson_t *out, struct cairn_error *err);

/* Appends a writeErrors element {index, code, codeName, errmsg} (plus
 * keyPattern/keyValue for 11000 when `id` is not NULL) to the array
 * builder `arr` as element number `n`. */
void net_dc_append_write_error(bson_t *arr,
                               uint32_t n,
                               int32_t index,
                               const struct cairn_error *err,
                               const bson_value_t *id);

/* True when `collation` is absent/empty or {locale: "simple"}. */
bool net_dc_collation_is_simple(const bson_t *collation);

/* Sets err to 238 NotImplemented for a non-simple collation and returns
 * its code (for `return` or `rc =`). */
int net_dc_collation_unsupported(struct cairn_error *err);

struct repl_wc;

/* Ends a write command whose reply is complete: sets the operation time to
 * `ts` (the last commit; 0 = nothing written) and waits for `wc` through
 * txn_wait without holding the thread. Returns NET_CMD_PENDING (the wait
 * callback appends a writeConcernError when the wait fails and calls
 * net_cmd_complete; it may run before this returns, so the caller must not
 * touch `c` afterwards), or NET_CMD_DONE when the wait could not start (a
 * writeConcernError is appended, e.g. 100 UnsatisfiableWriteConcern). */
int net_dc_finish_write(struct net_cmd *c, cairn_ts ts, const struct repl_wc *wc);

/* Appends {cursor: {firstBatch: [...], id, ns: cur->ns}} to c->reply with
 * up to `batch` documents (-1 = no count limit), then registers the cursor
 * when documents are left and !single_batch, else frees it (id 0). Takes
 * ownership of `cur`. Returns NET_CMD_DONE, or NET_CMD_ERROR with c->err. */
int net_dc_reply_cursor(struct net_cmd *c,
                        struct net_cursor *cur,
                        int64_t batch,
                        bool single_batch);

/* 0 while the operation running on this thread (lib/op.h's current one;
 * dispatch publishes it around a handler) may go on; else sets err (50
 * MaxTimeMSExpired past its maxTimeMS deadline, 11601 Interrupted after a
 * killOp, 11600 at shutdown, ...) and returns its CAIRN_E* code. */
int net_dc_check_deadline(struct cairn_error *err);

/* txn_scan_next for command handlers: also ends the scan as
 * net_dc_check_deadline does once the current operation's deadline has
 * passed or it was killed (checked before every document, cairn_op_poll). Returns 1 (a
 * document), 0 (end) or -1 (err set). */
int net_dc_scan_next(struct txn_scan *sc, bson_t *doc, struct cairn_error *err);

/* Calls fn for every document of `cid` matching `m` (NULL matches all) in
 * the view `rd`, through the scan `req` asks for: a point lookup when the
 * filter pins _id and req->hint names no other index, else an index scan
 * when req->filter (the bson `m` was compiled from; NULL: none) or
 * req->hint has one on collection req->ns, else a collection scan. An
 * unknown hinted index fails (2 BadValue) as in mongod. A projection may
 * make the scan covered, so fn then sees documents holding only the
 * fields the request needs. fn returns 0 to go on, 1 to stop, <0 on error
 * (err set). Returns 0 or the error code. */
typedef int (*net_dc_visit_fn)(void *arg, const bson_t *doc, struct cairn_error *err);
int net_dc_visit_scan(struct txn_read *rd,
                      uint64_t cid,
                      const struct txn_scan_req *req,
                      const struct qry_matcher *m,
                      net_dc_visit_fn fn,
                      void *arg,
                      struct cairn_error *err);

#endif /* CAIRN_NET_CURSOR_H */
