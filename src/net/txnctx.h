/*
 * txnctx.h: private to src/net. The session context of a command: parsing
 * the session fields every command may carry (lsid, txnNumber, autocommit,
 * startTransaction, stmtId/stmtIds, readConcern, writeConcern), checking
 * them as mongod does (initializeOperationSessionInfo, validateSessionOptions),
 * checking the session out and running the txnNumber state machine before
 * the handler, and giving handlers the write set and read view their
 * statements use: the session's transaction, a retryable write recording
 * its statements, or a plain statement.
 */
#ifndef CAIRN_NET_TXNCTX_H
#define CAIRN_NET_TXNCTX_H

#include <stdbool.h>
#include <stdint.h>

#include "net/net_int.h"
#include "txn/txn.h"

enum net_txn_mode {
    NET_TXN_NONE = 0,      /* no txnNumber */
    NET_TXN_RETRYABLE = 1, /* txnNumber without autocommit: a retryable write */
    NET_TXN_MULTI = 2,     /* a statement of a multi-document transaction */
    NET_TXN_END = 3,       /* commitTransaction / abortTransaction of one */
};

/* Parses an lsid document {id: UUID, uid?: BinData} at `it` into `lsid`.
 * Errors as mongod's IDL (14 TypeMismatch, 207 InvalidUUID, 40414, 40415)
 * with c->err set. */
int net_parse_lsid(struct net_cmd *c, const bson_iter_t *it, uint8_t lsid[TXN_LSID_LEN]);

/* Before the handler (dispatch): validates the session fields of `c`,
 * checks the session out when the command carries a txnNumber and runs
 * the state machine; sets c->sess, c->txn_mode, c->txn_number. On error
 * c->err is set and returns its code; c->sess may still be set (the caller
 * must call net_session_leave in every case). `op` is the command's
 * operation (what session waits and kills interrupt). */
int net_session_enter(struct net_cmd *c, struct cairn_op *op);

/* After the handler: a failed statement of a transaction aborts it; the
 * session is checked in. `failed` is whether the command failed (top-level
 * error or writeErrors). Safe with sess NULL. Must not touch the command
 * (it may be completed and freed already): takes its fields by value. */
void net_session_leave(struct txn_session *sess, int txn_mode, bool failed);

/* The write a statement of `c` stages into: the session's open transaction
 * (borrowed), or a new statement write (recording its statements in the
 * session when it is a retryable write). Returns 0 or NET_CMD_ERROR with
 * c->err set. */
int net_write_begin(struct net_cmd *c, struct txn_write **w);

/* Ends what net_write_begin began: a statement write commits (`ok`) or
 * aborts; a transaction's write set stays open. *ts is the newest commit
 * (0 for a transaction statement or nothing written). Errors as
 * txn_write_commit, with c->err set. */
int net_write_end(struct net_cmd *c, struct txn_write *w, bool ok, cairn_ts *ts);

/* The read view of a read command: the transaction's snapshot with its own
 * writes, or one at the command's readConcern (waiting for
 * afterClusterTime / atClusterTime; "snapshot" outside a transaction reads
 * at atClusterTime or the majority point, and c->at_cluster_time is set to
 * that ts for the reply). Sets c->operation_time. Returns 0 or
 * NET_CMD_ERROR with c->err. */
int net_read_begin(struct net_cmd *c, struct txn_read **rd);

/* The statement ids of a write command's `count` statements (a malloc'd
 * array the caller frees): stmtIds[i], else stmtId + i, else i. Errors
 * (NULL, c->err set): 2 BadValue when stmtIds has another length or
 * non-int32 elements, or stmtId + count passes INT32_MAX; CAIRN_ENOMEM. */
int32_t *net_stmt_ids(struct net_cmd *c, uint32_t count);

/* For a retryable write: the recorded result of statement `stmt_id` when it
 * already executed (a retry), as a view valid during the command, and the
 * commit that carried it (*ts raised to it). */
bool net_stmt_executed(struct net_cmd *c, int32_t stmt_id, bson_t *result, cairn_ts *ts);

/* Records an executed statement's result for a retryable write (no-op
 * otherwise). Returns 0 or NET_CMD_ERROR with c->err set. */
int net_stmt_record(struct net_cmd *c, struct txn_write *w, int32_t stmt_id, const bson_t *result);

/* True when an error with MongoDB code `code` inside a transaction fails
 * the whole command (a top-level error: transient and interruption
 * errors) rather than being reported as a writeError (mongod's
 * write_ops_exec handleError). */
bool net_txn_error_is_top_level(int code);

#endif /* CAIRN_NET_TXNCTX_H */
