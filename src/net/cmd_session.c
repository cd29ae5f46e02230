/*
 * cmd_session.c: the session and transaction commands (net_cmds_session):
 * startSession, endSessions, killSessions, killAllSessions,
 * killAllSessionsByPattern, refreshSessions, commitTransaction and
 * abortTransaction. The session fields of every command (lsid, txnNumber,
 * autocommit, ...) and the per-session state machine run before any
 * handler (txnctx.c); these handlers do what is left: commit or abort the
 * checked-out session's transaction, and act on lists of sessions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "net/cursor.h"
#include "net/net_int.h"
#include "net/txnctx.h"

/* mongod's limit on sessions named by one command. */
#define MAX_SESSIONS_PER_COMMAND 10000

/* ---- startSession ------------------------------------------------------------ */

static int cmd_start_session(struct net_cmd *c)
{
    uint8_t id[TXN_LSID_LEN];
    bson_t sid;
    size_t got = 0;

    while (got < sizeof id) {
        ssize_t n = getrandom(id + got, sizeof id - got, 0);
        if (n <= 0) {
            return cairn_error_setf(&c->err, CAIRN_EIO, "startSession: no random bytes");
        }
        got += (size_t)n;
    }
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* UUID version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* variant 10 */
    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "id", &sid);
    BSON_APPEND_BINARY(&sid, "id", BSON_SUBTYPE_UUID, id, sizeof id);
    bson_append_document_end(&c->reply, &sid);
    BSON_APPEND_INT32(&c->reply, "timeoutMinutes", TXN_SESSION_TIMEOUT_MINUTES);
    return NET_CMD_DONE;
}

/* ---- Lists of sessions ---------------------------------------------------- */

/* Reads the array of lsid documents that is the command's first value
 * into a malloc'd array (*n entries). Errors as mongod's IDL. */
static int parse_lsids(struct net_cmd *c, uint8_t (**out)[TXN_LSID_LEN], size_t *n)
{
    bson_iter_t it, sub;
    uint8_t(*ids)[TXN_LSID_LEN] = NULL;
    size_t count = 0;

    *out = NULL;
    *n = 0;
    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field '%s.%s' is the wrong type '%s', expected type 'array'",
                                 c->name, c->name, qry_type_name(bson_iter_type(&it)));
    }
    if (!bson_iter_recurse(&it, &sub)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidBSON, "invalid array");
    }
    while (bson_iter_next(&sub)) {
        count++;
    }
    if (count > MAX_SESSIONS_PER_COMMAND) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "%s: at most %d sessions may be named at once", c->name,
                                 MAX_SESSIONS_PER_COMMAND);
    }
    ids = calloc(count ? count : 1, sizeof *ids);
    if (ids == NULL) {
        return cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
    }
    bson_iter_recurse(&it, &sub);
    count = 0;
    while (bson_iter_next(&sub)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&sub)) {
            free(ids);
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field '%s.%s.%s' is the wrong type '%s', expected "
                                     "type 'object'",
                                     c->name, c->name, bson_iter_key(&sub),
                                     qry_type_name(bson_iter_type(&sub)));
        }
        if (net_parse_lsid(c, &sub, ids[count]) != 0) {
            free(ids);
            return NET_CMD_ERROR;
        }
        count++;
    }
    *out = ids;
    *n = count;
    return 0;
}

static int end_or_kill(struct net_cmd *c, bool kill, bool empty_means_all)
{
    uint8_t(*ids)[TXN_LSID_LEN];
    size_t n;

    if (parse_lsids(c, &ids, &n) != 0) {
        return NET_CMD_ERROR;
    }
    if (n == 0 && empty_means_all) {
        txn_sessions_kill_all(c->deps->txn);
    } else {
        txn_sessions_end(c->deps->txn, (const uint8_t(*)[TXN_LSID_LEN])ids, n, kill);
    }
    free(ids);
    return NET_CMD_DONE;
}

static int cmd_end_sessions(struct net_cmd *c)
{
    return end_or_kill(c, false, false);
}

/* Without authentication every session belongs to the same user: an empty
 * list kills them all, as mongod's "all sessions of the current user". */
static int cmd_kill_sessions(struct net_cmd *c)
{
    return end_or_kill(c, true, true);
}

static int cmd_refresh_sessions(struct net_cmd *c)
{
    uint8_t(*ids)[TXN_LSID_LEN];
    size_t n;

    if (parse_lsids(c, &ids, &n) != 0) {
        return NET_CMD_ERROR;
    }
    txn_sessions_refresh(c->deps->txn, (const uint8_t(*)[TXN_LSID_LEN])ids, n);
    free(ids);
    return NET_CMD_DONE;
}

/* killAllSessions: [{user, db}, ...] and killAllSessionsByPattern:
 * [{users?, roles?, lsid?, uid?}]. Without authentication there is one
 * user, so any list (or an empty one: everyone) names every session,
 * except patterns naming lsids, which name those. */
static int cmd_kill_all_sessions(struct net_cmd *c)
{
    bson_iter_t it, sub;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field '%s.%s' is the wrong type '%s', expected type 'array'",
                                 c->name, c->name, qry_type_name(bson_iter_type(&it)));
    }
    if (bson_iter_recurse(&it, &sub)) {
        while (bson_iter_next(&sub)) {
            bson_iter_t f;
            if (!BSON_ITER_HOLDS_DOCUMENT(&sub)) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field '%s.%s.%s' is the wrong type '%s', "
                                         "expected type 'object'",
                                         c->name, c->name, bson_iter_key(&sub),
                                         qry_type_name(bson_iter_type(&sub)));
            }
            if (strcmp(c->name, "killAllSessionsByPattern") == 0 && bson_iter_recurse(&sub, &f) &&
                bson_iter_find(&f, "lsid")) {
                return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                         "killAllSessionsByPattern with an lsid pattern is not "
                                         "supported: use killSessions");
            }
        }
    }
    txn_sessions_kill_all(c->deps->txn);
    return NET_CMD_DONE;
}

/* ---- commitTransaction / abortTransaction ------------------------------------ */

static int in_txn_or_fail(struct net_cmd *c)
{
    if (c->txn_mode != NET_TXN_END || c->sess == NULL) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_CommandFailed,
                                 "%s must be run within a transaction", c->name);
    }
    return 0;
}

static int cmd_commit_transaction(struct net_cmd *c)
{
    struct repl_wc wc;
    cairn_ts ts = 0;

    if (in_txn_or_fail(c) != 0 || net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_session_txn_commit(c->sess, &ts, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    return net_dc_finish_write(c, ts, &wc);
}

static int cmd_abort_transaction(struct net_cmd *c)
{
    struct repl_wc wc;

    if (in_txn_or_fail(c) != 0 || net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_session_txn_abort(c->sess, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    return net_dc_finish_write(c, 0, &wc);
}

const struct net_cmd_def net_cmds_session[] = {
    {"startSession", cmd_start_session, NET_CMD_F_NEEDS_CONFIG},
    {"endSessions", cmd_end_sessions, 0},
    {"killSessions", cmd_kill_sessions, 0},
    {"killAllSessions", cmd_kill_all_sessions, 0},
    {"killAllSessionsByPattern", cmd_kill_all_sessions, 0},
    {"refreshSessions", cmd_refresh_sessions, 0},
    {"commitTransaction", cmd_commit_transaction,
     NET_CMD_F_ADMIN_ONLY | NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"abortTransaction", cmd_abort_transaction,
     NET_CMD_F_ADMIN_ONLY | NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
