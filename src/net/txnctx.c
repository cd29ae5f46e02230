/*
 * txnctx.c: the session context of a command (see txnctx.h). The checks
 * follow mongod's initializeOperationSessionInfo and validateSessionOptions
 * (codes and messages), then the per-session state machine of src/txn.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "net/txnctx.h"

/* ---- Command classes -------------------------------------------------------- */

static bool name_in(const char *name, const char *const *set)
{
    for (; *set != NULL; set++) {
        if (strcmp(name, *set) == 0) {
            return true;
        }
    }
    return false;
}

/* Commands mongod runs without authentication: they take no session. */
static bool takes_no_session(const char *name)
{
    static const char *const set[] = {"hello",     "isMaster", "ismaster",  "buildInfo",
                                      "buildinfo", "ping",     "saslStart", "saslContinue",
                                      "getnonce",  NULL};
    return name_in(name, set);
}

static bool is_retryable_write_cmd(const char *name)
{
    static const char *const set[] = {"insert",        "update",        "delete",
                                      "findAndModify", "findandmodify", NULL};
    return name_in(name, set);
}

static bool is_write_cmd(const char *name)
{
    static const char *const set[] = {"insert",        "update", "delete",        "findAndModify",
                                      "findandmodify", "create", "createIndexes", NULL};
    return name_in(name, set);
}

static bool allowed_in_txn(const char *name)
{
    static const char *const set[] = {
        "find",   "getMore",       "killCursors",       "insert",           "update",
        "delete", "findAndModify", "findandmodify",     "aggregate",        "distinct",
        "create", "createIndexes", "commitTransaction", "abortTransaction", NULL};
    return name_in(name, set);
}

static bool is_commit_or_abort(const char *name)
{
    return strcmp(name, "commitTransaction") == 0 || strcmp(name, "abortTransaction") == 0;
}

bool net_txn_error_is_top_level(int code)
{
    switch (code) {
        case MONGO_WriteConflict:
        case MONGO_LockTimeout:
        case MONGO_MaxTimeMSExpired:
        case MONGO_Interrupted:
        case MONGO_InterruptedAtShutdown:
        case MONGO_InterruptedDueToReplStateChange:
        case MONGO_NotWritablePrimary:
        case MONGO_PrimarySteppedDown:
        case MONGO_ShutdownInProgress:
        case MONGO_NoSuchTransaction:
        case MONGO_ExceededTimeLimit:
        case MONGO_TransactionExceededLifetimeLimitSeconds:
        case MONGO_TransactionTooLarge:
        case MONGO_ClientDisconnect:
            return true;
        default:
            return false;
    }
}

/* ---- Field parsing ---------------------------------------------------------- */

struct session_fields
{
    bool has_lsid;
    uint8_t lsid[TXN_LSID_LEN];
    bool has_txn;
    int64_t txn;
    bool has_autocommit;
    bool autocommit;
    bool has_start;
    bool start;
    bool has_read_concern;
    bool has_write_concern;
};

static int wrong_type(struct net_cmd *c, const char *field, const bson_iter_t *it, const char *want)
{
    return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "BSON field '%s' is the wrong type '%s', expected type '%s'", field,
                             qry_type_name(bson_iter_type(it)), want);
}

int net_parse_lsid(struct net_cmd *c, const bson_iter_t *it, uint8_t lsid[TXN_LSID_LEN])
{
    bson_iter_t sub;
    bool have_id = false;

    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return wrong_type(c, "OperationSessionInfo.lsid", it, "object");
    }
    if (!bson_iter_recurse(it, &sub)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidBSON,
                                 "lsid is not valid BSON");
    }
    while (bson_iter_next(&sub)) {
        const char *k = bson_iter_key(&sub);
        if (strcmp(k, "id") == 0) {
            bson_subtype_t st;
            uint32_t len;
            const uint8_t *data;
            if (!BSON_ITER_HOLDS_BINARY(&sub)) {
                return wrong_type(c, "LogicalSessionFromClient.id", &sub, "binData");
            }
            bson_iter_binary(&sub, &st, &len, &data);
            if (st != BSON_SUBTYPE_UUID) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field 'LogicalSessionFromClient.id' is the wrong "
                                         "binData type, expected type 'UUID'");
            }
            if (len != TXN_LSID_LEN) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidUUID,
                                         "LogicalSessionFromClient.id is not 16 bytes long");
            }
            memcpy(lsid, data, TXN_LSID_LEN);
            have_id = true;
        } else if (strcmp(k, "uid") == 0) {
            /* The user's digest, which mongod adds with authentication:
             * without authentication every session is the same user's. */
            if (!BSON_ITER_HOLDS_BINARY(&sub)) {
                return wrong_type(c, "LogicalSessionFromClient.uid", &sub, "binData");
            }
        } else {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                                     "BSON field 'LogicalSessionFromClient.%s' is an unknown "
                                     "field.",
                                     k);
        }
    }
    if (!have_id) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                                 "BSON field 'LogicalSessionFromClient.id' is missing but a "
                                 "required field");
    }
    return 0;
}

static int parse_fields(struct net_cmd *c, struct session_fields *f)
{
    bson_iter_t it;

    memset(f, 0, sizeof *f);
    if (!bson_iter_init(&it, c->body)) {
        return 0;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "lsid") == 0) {
            if (net_parse_lsid(c, &it, f->lsid) != 0) {
                return c->err.code;
            }
            f->has_lsid = true;
        } else if (strcmp(k, "txnNumber") == 0) {
            if (!BSON_ITER_HOLDS_INT64(&it)) {
                return wrong_type(c, "OperationSessionInfo.txnNumber", &it, "long");
            }
            f->has_txn = true;
            f->txn = bson_iter_int64(&it);
        } else if (strcmp(k, "autocommit") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&it)) {
                return wrong_type(c, "OperationSessionInfo.autocommit", &it, "bool");
            }
            f->has_autocommit = true;
            f->autocommit = bson_iter_bool(&it);
        } else if (strcmp(k, "startTransaction") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&it)) {
                return wrong_type(c, "OperationSessionInfo.startTransaction", &it, "bool");
            }
            f->has_start = true;
            f->start = bson_iter_bool(&it);
        } else if (strcmp(k, "readConcern") == 0) {
            f->has_read_concern = true;
        } else if (strcmp(k, "writeConcern") == 0) {
            f->has_write_concern = true;
        }
    }
    return 0;
}

/* ---- Read concern ------------------------------------------------------------ */

struct read_concern
{
    bool present; /* a readConcern with at least one field */
    int level;
    bool snapshot;
    bool linearizable; /* read at local, then confirm leadership */
    cairn_ts after_ts;
    cairn_ts at_ts;
};

/* A command naming no read concern (none, null or {}) reads at the
 * cluster-wide default (setDefaultRWConcern), else "local". */
static int default_read_concern(struct net_cmd *c, struct read_concern *rc)
{
    int level;

    if (net_rwc_read_level(c, &level) != 0) {
        return c->err.code;
    }
    if (level >= 0) {
        rc->level = level;
    }
    return 0;
}

static int parse_read_concern(struct net_cmd *c, struct read_concern *rc)
{
    bson_iter_t it, sub;

    memset(rc, 0, sizeof *rc);
    rc->level = TXN_READ_LOCAL;
    if (!bson_iter_init_find(&it, c->body, "readConcern") || BSON_ITER_HOLDS_NULL(&it)) {
        return default_read_concern(c, rc);
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return wrong_type(c, "readConcern", &it, "object");
    }
    if (!bson_iter_recurse(&it, &sub)) {
        return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_FailedToParse,
                                 "readConcern is not a valid document");
    }
    while (bson_iter_next(&sub)) {
        const char *key = bson_iter_key(&sub);
        rc->present = true;
        if (strcmp(key, "level") == 0) {
            const char *lv;
            if (!BSON_ITER_HOLDS_UTF8(&sub)) {
                return wrong_type(c, "readConcern.level", &sub, "string");
            }
            lv = bson_iter_utf8(&sub, NULL);
            if (strcmp(lv, "local") == 0 || strcmp(lv, "available") == 0) {
                rc->level = TXN_READ_LOCAL;
            } else if (strcmp(lv, "majority") == 0) {
                rc->level = TXN_READ_MAJORITY;
            } else if (strcmp(lv, "snapshot") == 0) {
                rc->level = TXN_READ_MAJORITY;
                rc->snapshot = true;
            } else if (strcmp(lv, "linearizable") == 0) {
                rc->level = TXN_READ_LOCAL;
                rc->linearizable = true;
            } else {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "readConcern level must be either 'local', 'majority', "
                                         "'linearizable', 'available', or 'snapshot'; found '%s'",
                                         lv);
            }
        } else if (strcmp(key, "afterClusterTime") == 0 || strcmp(key, "atClusterTime") == 0) {
            uint32_t t, i;
            if (!BSON_ITER_HOLDS_TIMESTAMP(&sub)) {
                return wrong_type(c,
                                  strcmp(key, "afterClusterTime") == 0
                                      ? "readConcern.afterClusterTime"
                                      : "readConcern.atClusterTime",
                                  &sub, "timestamp");
            }
            bson_iter_timestamp(&sub, &t, &i);
            if (CAIRN_TS(t, i) == 0) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                         "%s cannot be a null timestamp", key);
            }
            if (key[1] == 'f') {
                rc->after_ts = CAIRN_TS(t, i);
            } else {
                rc->at_ts = CAIRN_TS(t, i);
            }
        } else if (strcmp(key, "afterOpTime") == 0 || strcmp(key, "provenance") == 0) {
            continue; /* internal fields mongod accepts */
        } else {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                     "Unrecognized option in readConcern: %s", key);
        }
    }
    if (rc->after_ts != 0 && rc->at_ts != 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "Can not specify both afterClusterTime and atClusterTime");
    }
    if (rc->after_ts != 0 && rc->linearizable) {
        /* Linearizable reads are causally consistent by themselves. */
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "afterClusterTime field can be set only if level is equal to "
                                 "majority, local, or snapshot");
    }
    if (rc->at_ts != 0 && !rc->snapshot) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "readConcern level snapshot is required when specifying "
                                 "atClusterTime");
    }
    if (!rc->present) {
        return default_read_concern(c, rc); /* readConcern: {} */
    }
    return 0;
}

/* True when the command's readConcern names level "linearizable". */
static bool names_linearizable(struct net_cmd *c)
{
    bson_iter_t it, sub;

    return bson_iter_init_find(&it, c->body, "readConcern") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
           bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "level") &&
           BSON_ITER_HOLDS_UTF8(&sub) && strcmp(bson_iter_utf8(&sub, NULL), "linearizable") == 0;
}

/* The read concern of a transaction's first statement: only local,
 * majority and snapshot (mongod's isReadConcernLevelAllowedInTransaction). */
static int parse_txn_read_concern(struct net_cmd *c, struct read_concern *rc)
{
    bson_iter_t it, sub;

    if (bson_iter_init_find(&it, c->body, "readConcern") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "level") &&
        BSON_ITER_HOLDS_UTF8(&sub)) {
        const char *lv = bson_iter_utf8(&sub, NULL);
        if (strcmp(lv, "available") == 0 || strcmp(lv, "linearizable") == 0) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                     "The readConcern level must be either 'local' (default), "
                                     "'majority' or 'snapshot' in order to run in a transaction");
        }
    }
    return parse_read_concern(c, rc);
}

/* ---- Enter and leave ---------------------------------------------------------- */

static int invalid(struct net_cmd *c, const char *msg)
{
    return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions, "%s", msg);
}

static int not_in_txn(struct net_cmd *c, const char *msg)
{
    return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_OperationNotSupportedInTransaction, "%s",
                             msg);
}

/* CommandHelpers::canUseTransactions: the command and its database. */
static int check_txn_command(struct net_cmd *c)
{
    if (strcmp(c->name, "count") == 0) {
        return not_in_txn(c,
                          "Cannot run 'count' in a multi-document transaction. Please see "
                          "http://dochub.mongodb.org/core/transaction-count for a recommended "
                          "alternative.");
    }
    if (!allowed_in_txn(c->name)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_OperationNotSupportedInTransaction,
                                 "Cannot run '%s' in a multi-document transaction.", c->name);
    }
    if (strcmp(c->db, "local") == 0) {
        return not_in_txn(c, "Cannot run command against the 'local' database in a transaction.");
    }
    if (strcmp(c->db, "config") == 0) {
        return not_in_txn(c, "Cannot run command against the config database in a transaction.");
    }
    return 0;
}

/* doTransactionValidationForWrites: inside the transaction, so it aborts. */
static int check_txn_write(struct net_cmd *c)
{
    bson_iter_t it;

    if (is_write_cmd(c->name) && bson_iter_init(&it, c->body) && bson_iter_next(&it) &&
        BSON_ITER_HOLDS_UTF8(&it) && strncmp(bson_iter_utf8(&it, NULL), "system.", 7) == 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_TxnWriteToSystemCollection,
                                 "Cannot write to system collection %s.%s within a transaction.",
                                 c->db, bson_iter_utf8(&it, NULL));
    }
    return 0;
}

int net_session_enter(struct net_cmd *c, struct cairn_op *op)
{
    struct session_fields f;
    struct read_concern rc;
    struct txn_mgr *m = c->deps->txn;
    int rv;

    c->sess = NULL;
    c->txn_mode = NET_TXN_NONE;
    c->txn_number = -1;
    if (parse_fields(c, &f) != 0) {
        return c->err.code;
    }
    if (takes_no_session(c->name)) {
        if (f.has_autocommit) {
            return not_in_txn(c, "This command is not supported in transactions");
        }
        if (f.has_txn) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_TxnNumberNotAllowed,
                                     "It is illegal to provide a txnNumber for this command");
        }
        return 0;
    }
    if (f.has_txn && !f.has_lsid) {
        return invalid(c, "Transaction number requires a session ID to also be specified");
    }
    if (f.has_txn && f.txn < 0) {
        return invalid(c, "Transaction number cannot be negative");
    }
    if (!f.has_txn && f.has_autocommit) {
        return invalid(c, "'autocommit' field requires a transaction number to also be specified");
    }
    if (f.has_autocommit && f.autocommit) {
        return invalid(c, "Specifying autocommit=true is not allowed.");
    }
    if (!f.has_autocommit && f.has_start) {
        return invalid(c,
                       "'startTransaction' field requires 'autocommit' field to also be specified");
    }
    if (f.has_start && !f.start) {
        return invalid(c, "Specifying startTransaction=false is not allowed.");
    }
    if (f.has_autocommit && check_txn_command(c) != 0) {
        return c->err.code;
    }
    if (!f.has_autocommit && f.has_read_concern && is_write_cmd(c->name) && names_linearizable(c)) {
        /* Writes support no read concern but local (and snapshot in a
         * transaction), as mongod's write commands say. */
        return invalid(c, "read concern not supported");
    }
    if (!f.has_autocommit && f.has_txn && !is_retryable_write_cmd(c->name)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_NotARetryableWriteCommand,
                                 "txnNumber may only be provided for multi-document transactions "
                                 "and retryable write commands. autocommit:false was not "
                                 "provided, and %s is not a retryable write command.",
                                 c->name);
    }
    if (f.has_start) {
        if (strcmp(c->name, "killCursors") == 0) {
            return not_in_txn(c,
                              "Cannot run killCursors as the first operation in a "
                              "multi-document transaction.");
        }
        if (strcmp(c->name, "commitTransaction") == 0) {
            return not_in_txn(c, "Cannot start a transaction with a commit");
        }
        if (strcmp(c->name, "abortTransaction") == 0) {
            return not_in_txn(c, "Cannot start a transaction with an abort");
        }
    }
    if (!f.has_txn) {
        if (f.has_lsid) {
            txn_sessions_refresh(m, (const uint8_t(*)[TXN_LSID_LEN])f.lsid, 1);
        }
        return 0;
    }
    if (f.has_autocommit) {
        /* Checked before the transaction is touched: these errors leave an
         * open transaction open. */
        if (f.has_write_concern && !is_commit_or_abort(c->name)) {
            return invalid(c, "writeConcern is not allowed within a multi-statement transaction");
        }
        if (!f.has_start && f.has_read_concern) {
            return invalid(c, "Only the first command in a transaction may specify a readConcern");
        }
        if (f.has_start && parse_txn_read_concern(c, &rc) != 0) {
            return c->err.code;
        }
    }
    rv = txn_session_checkout(m, f.lsid, op, &c->sess, &c->err);
    if (rv != 0) {
        return rv;
    }
    c->txn_number = f.txn;
    if (!f.has_autocommit) {
        c->txn_mode = NET_TXN_RETRYABLE;
        return txn_session_retryable_begin(c->sess, f.txn, &c->err);
    }
    if (f.has_start) {
        struct txn_read_concern trc = {rc.level, rc.snapshot, rc.after_ts, rc.at_ts};
        rv = txn_session_txn_begin(c->sess, f.txn, &trc, op, &c->err);
        if (rv == 0) {
            c->txn_mode = NET_TXN_MULTI;
            rv = check_txn_write(c);
        }
        return rv;
    }
    {
        int state = TXN_STATE_NONE;
        rv = txn_session_txn_continue(c->sess, f.txn, is_commit_or_abort(c->name), &state, &c->err);
        if (rv != 0) {
            return rv;
        }
    }
    if (is_commit_or_abort(c->name)) {
        /* Their own failure (or a fail point's) decides nothing: a commit
         * that failed before it ran can be retried. */
        c->txn_mode = NET_TXN_END;
        return 0;
    }
    /* From here on an error aborts the transaction (any error inside one
     * does). */
    c->txn_mode = NET_TXN_MULTI;
    return check_txn_write(c);
}

void net_session_leave(struct txn_session *sess, int txn_mode, bool failed)
{
    if (sess == NULL) {
        return;
    }
    if (txn_mode == NET_TXN_MULTI && failed) {
        txn_session_txn_fail(sess);
    }
    txn_session_checkin(sess);
}

/* ---- Writes ------------------------------------------------------------------ */

int net_write_begin(struct net_cmd *c, struct txn_write **w)
{
    if (c->txn_mode == NET_TXN_MULTI) {
        *w = txn_session_txn(c->sess);
        if (*w == NULL) {
            cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_NoSuchTransaction,
                              "Transaction %" PRId64 " has been aborted.", c->txn_number);
            return NET_CMD_ERROR;
        }
        return 0;
    }
    if (txn_write_begin(c->deps->txn, c->txn_mode == NET_TXN_RETRYABLE ? c->sess : NULL, w,
                        &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    return 0;
}

int net_write_end(struct net_cmd *c, struct txn_write *w, bool ok, cairn_ts *ts)
{
    *ts = 0;
    if (c->txn_mode == NET_TXN_MULTI) {
        return 0;
    }
    if (!ok) {
        txn_write_abort(w);
        return 0;
    }
    return txn_write_commit(w, ts, &c->err);
}

int32_t *net_stmt_ids(struct net_cmd *c, uint32_t count)
{
    int32_t *ids = malloc((count ? count : 1) * sizeof *ids);
    bson_iter_t it, one;
    bool has_one = bson_iter_init_find(&one, c->body, "stmtId");
    int64_t first = 0;

    if (ids == NULL) {
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NULL;
    }
    if (has_one && !BSON_ITER_HOLDS_INT32(&one)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                          "BSON field '%s.stmtId' is the wrong type '%s', expected type 'int'",
                          c->name, qry_type_name(bson_iter_type(&one)));
        goto err;
    }
    if (bson_iter_init_find(&it, c->body, "stmtIds")) {
        bson_iter_t a;
        uint32_t n = 0;
        if (has_one) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                              "May not specify both stmtId and stmtIds in write command");
            goto err;
        }
        if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &a)) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                              "BSON field '%s.stmtIds' is the wrong type '%s', expected type "
                              "'array'",
                              c->name, qry_type_name(bson_iter_type(&it)));
            goto err;
        }
        while (bson_iter_next(&a)) {
            if (!BSON_ITER_HOLDS_INT32(&a)) {
                cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                  "BSON field '%s.stmtIds.%s' is the wrong type '%s', expected "
                                  "type 'int'",
                                  c->name, bson_iter_key(&a), qry_type_name(bson_iter_type(&a)));
                goto err;
            }
            if (n < count) {
                ids[n] = bson_iter_int32(&a);
            }
            n++;
        }
        if (n != count) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidLength,
                              "Number of statement ids must match the number of batch entries. "
                              "Got %" PRIu32 " statement ids but %" PRIu32 " operations",
                              n, count);
            goto err;
        }
        return ids;
    }
    if (has_one) {
        first = bson_iter_int32(&one);
    }
    for (uint32_t i = 0; i < count; i++) {
        /* As mongod: the position is added and narrowed to a StmtId, so
         * ids past INT32_MAX wrap (defined here: computed unsigned). */
        ids[i] = (int32_t)(uint32_t)((uint64_t)first + i);
    }
    return ids;
err:
    free(ids);
    return NULL;
}

bool net_stmt_executed(struct net_cmd *c, int32_t stmt_id, bson_t *result, cairn_ts *ts)
{
    cairn_ts t = 0;

    if (c->txn_mode != NET_TXN_RETRYABLE) {
        return false;
    }
    if (!txn_session_stmt_executed(c->sess, stmt_id, result, &t)) {
        return false;
    }
    if (t > *ts) {
        *ts = t;
    }
    return true;
}

int net_stmt_record(struct net_cmd *c, struct txn_write *w, int32_t stmt_id, const bson_t *result)
{
    if (c->txn_mode != NET_TXN_RETRYABLE) {
        return 0;
    }
    if (txn_write_record_stmt(w, stmt_id, result) != 0) {
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory recording a statement");
        return NET_CMD_ERROR;
    }
    return 0;
}

/* ---- Reads ------------------------------------------------------------------- */

int net_read_begin(struct net_cmd *c, struct txn_read **rd)
{
    struct txn_mgr *m = c->deps->txn;
    struct read_concern rc;
    struct cairn_op *op = cairn_op_current();
    int rv;

    c->at_cluster_time = 0;
    c->linearizable = false;
    c->linearizable_epoch = 0;
    if (c->txn_mode == NET_TXN_MULTI) {
        struct txn_write *w = txn_session_txn(c->sess);
        if (w == NULL) {
            cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_NoSuchTransaction,
                              "Transaction %" PRId64 " has been aborted.", c->txn_number);
            return NET_CMD_ERROR;
        }
        if (txn_read_begin_txn(w, rd, &c->err) != 0) {
            return NET_CMD_ERROR;
        }
        c->operation_time = txn_read_ts(*rd);
        return 0;
    }
    if (parse_read_concern(c, &rc) != 0) {
        return NET_CMD_ERROR;
    }
    if (rc.snapshot) {
        cairn_ts ts = rc.at_ts;
        if (ts == 0) {
            if (rc.after_ts != 0 &&
                txn_wait_cluster_time(m, rc.after_ts, TXN_READ_MAJORITY, op, &c->err) != 0) {
                return NET_CMD_ERROR;
            }
            ts = repl_applied_ts(c->deps->repl);
        } else if (txn_wait_cluster_time(m, ts, TXN_READ_MAJORITY, op, &c->err) != 0) {
            return NET_CMD_ERROR;
        }
        rv = txn_read_begin_at(m, ts, rd, &c->err);
        if (rv != 0) {
            return NET_CMD_ERROR;
        }
        c->at_cluster_time = ts;
        c->operation_time = ts;
        return 0;
    }
    if (rc.linearizable) {
        /* Read the newest data here, then (dispatch, after the handler)
         * confirm this member was primary all along: the epoch is read
         * before the read begins. */
        c->linearizable = true;
        c->linearizable_epoch = repl_write_epoch(c->deps->repl);
        if (c->linearizable_epoch == 0) {
            cairn_error_mongo(&c->err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                              "cannot satisfy linearizable read concern on non-primary node");
            return NET_CMD_ERROR;
        }
    }
    if (rc.after_ts != 0 && txn_wait_cluster_time(m, rc.after_ts, rc.level, op, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_read_begin(m, rc.level, rd, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    c->operation_time = txn_read_ts(*rd);
    c->ovl_token = txn_read_overlay_token(*rd);
    return 0;
}
