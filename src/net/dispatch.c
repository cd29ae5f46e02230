/*
 * dispatch.c: runs one request on a worker thread. It parses the message
 * (wire.c), looks the command up in the command tables, checks the
 * command's flags against the member state, gossips $clusterTime, parses
 * maxTimeMS, registers the command as an operation in progress (cmd_ops.c),
 * applies the failCommand fail point (failpoint.c), waits for
 * readConcern.afterClusterTime, calls the handler, confirms a linearizable
 * read's leadership after it, and wraps its reply in
 * the MongoDB envelope (ok, errmsg/code/codeName, errorLabels,
 * $clusterTime, operationTime) before handing the encoded reply to the
 * connection. Commands that return NET_CMD_PENDING finish later through
 * net_cmd_complete, from any thread.
 *
 * A request lives in one heap block (struct request) that embeds the
 * struct net_cmd handlers see and its operation; it is freed, and the
 * operation unregistered, once its reply is encoded. While the handler
 * runs, the operation is the worker thread's current one (lib/op.h), so
 * scans and waits below end when its maxTimeMS passes or killOp names it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/op.h"
#include "net/cursor.h"
#include "net/hello.h"
#include "net/net_int.h"
#include "net/server_int.h"
#include "net/txnctx.h"
#include "net/wire.h"

struct request
{
    struct net_cmd cmd; /* first: net_cmd_complete converts back */
    int32_t request_id;
    int32_t opcode;
    bool more_to_come;
    uint8_t *msg;  /* the raw message; OP_QUERY views point into it */
    bson_t merged; /* OP_MSG: body with sequences merged in */
    bool has_merged;
    char db[128];
    const struct net_cmd_def *def; /* the command, once looked up */
    struct net_op op;              /* registered while the command runs */
    bson_t *labels;                /* failCommand's errorLabels override (owned), or NULL */
};

/* Reply requestIDs: any fresh int32. */
static atomic_int next_reply_id = 1;

/* ---- Command tables ------------------------------------------------------ */

#define N_TABLES 12

/* The command tables; the test commands exist only with
 * enableTestCommands (otherwise they are unknown, 59, as in mongod). */
static const struct net_cmd_def *table_at(int i)
{
    switch (i) {
        case 0:
            return net_cmds_admin;
        case 1:
            return net_cmds_crud;
        case 2:
            return net_cmds_read;
        case 3:
            return net_cmds_ddl;
        case 4:
            return net_cmds_ops;
        case 5:
            return net_cmds_params;
        case 6:
            return net_test_commands_enabled() ? net_cmds_test : NULL;
        case 7:
            return net_cmds_session;
        case 8:
            return net_cmds_repl;
        case 9:
            return net_cmds_explain;
        case 10:
            return net_cmds_stats;
        case 11:
            return net_cmds_coll;
        default:
            return NULL;
    }
}

const struct net_cmd_def *net_cmd_lookup(const char *name)
{
    if (strcmp(name, "ismaster") == 0) {
        name = "isMaster";
    } else if (strcmp(name, "buildinfo") == 0) {
        name = "buildInfo";
    }
    for (int t = 0; t < N_TABLES; t++) {
        const struct net_cmd_def *defs = table_at(t);
        if (defs == NULL) {
            continue;
        }
        for (const struct net_cmd_def *d = defs; d->name != NULL; d++) {
            if (strcmp(d->name, name) == 0) {
                return d;
            }
        }
    }
    return NULL;
}

void net_cmd_foreach(void (*fn)(const struct net_cmd_def *def, void *arg), void *arg)
{
    for (int t = 0; t < N_TABLES; t++) {
        const struct net_cmd_def *defs = table_at(t);
        if (defs == NULL) {
            continue;
        }
        for (const struct net_cmd_def *d = defs; d->name != NULL; d++) {
            fn(d, arg);
        }
    }
}

/* ---- Error labels (wire-protocol.md §4.6) -------------------------------- */

static bool code_in(int code, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (set[i] == code) {
            return true;
        }
    }
    return false;
}

static bool is_retriable(int code)
{
    static const int set[] = {MONGO_HostUnreachable,
                              MONGO_HostNotFound,
                              MONGO_NetworkTimeout,
                              MONGO_ShutdownInProgress,
                              MONGO_ReadConcernMajorityNotAvailableYet,
                              MONGO_PrimarySteppedDown,
                              MONGO_ExceededTimeLimit,
                              MONGO_SocketException,
                              MONGO_NotWritablePrimary,
                              MONGO_InterruptedAtShutdown,
                              MONGO_InterruptedDueToReplStateChange,
                              MONGO_NotPrimaryNoSecondaryOk,
                              MONGO_NotPrimaryOrSecondary};
    return code_in(code, set, sizeof set / sizeof set[0]);
}

static bool is_always_transient(int code)
{
    static const int set[] = {MONGO_WriteConflict,
                              MONGO_LockTimeout,
                              MONGO_PreparedTransactionInProgress,
                              MONGO_ShardCannotRefreshDueToLocksHeld,
                              MONGO_StaleDbVersion,
                              MONGO_SnapshotTooOld,
                              MONGO_SnapshotUnavailable,
                              MONGO_StaleChunkHistory,
                              MONGO_MigrationConflict,
                              MONGO_StaleEpoch,
                              MONGO_StaleConfig};
    return code_in(code, set, sizeof set / sizeof set[0]);
}

struct labels
{
    bool transient;
    bool retryable;
};

/* Computes the labels for a reply with top-level `code` (0 = success) and
 * writeConcernError code `wce_code` (0 = none). */
static struct labels compute_labels(const struct net_cmd *c, int code, int wce_code)
{
    struct labels l = {false, false};
    bool has_txn = bson_has_field(c->body, "txnNumber");
    bool in_txn = has_txn && bson_has_field(c->body, "autocommit");
    bool retryable_write = has_txn && !in_txn;
    bool commit_abort =
        strcmp(c->name, "commitTransaction") == 0 || strcmp(c->name, "abortTransaction") == 0;

    if (in_txn && code != 0) {
        if (is_always_transient(code)) {
            l.transient = true;
        } else if (!commit_abort && (code == MONGO_NoSuchTransaction || is_retriable(code))) {
            l.transient = true;
        } else if (commit_abort && code == MONGO_NoSuchTransaction && wce_code == 0) {
            l.transient = true;
        }
    }
    if (!l.transient && (retryable_write || (in_txn && commit_abort)) &&
        (is_retriable(code) || is_retriable(wce_code))) {
        l.retryable = true;
    }
    return l;
}

/* Appends the labels: failCommand's errorLabels when it set them
 * (`override`, exactly those, none when empty), else the computed ones. */
static void append_labels(bson_t *doc, struct labels l, const bson_t *override)
{
    bson_t arr;

    if (override != NULL) {
        if (!bson_empty(override)) {
            BSON_APPEND_ARRAY(doc, "errorLabels", override);
        }
        return;
    }
    if (!l.transient && !l.retryable) {
        return;
    }
    BSON_APPEND_ARRAY_BEGIN(doc, "errorLabels", &arr);
    if (l.transient) {
        BSON_APPEND_UTF8(&arr, "0", "TransientTransactionError");
    }
    if (l.retryable) {
        BSON_APPEND_UTF8(&arr, l.transient ? "1" : "0", "RetryableWriteError");
    }
    bson_append_array_end(doc, &arr);
}

/* ---- Envelope ------------------------------------------------------------ */

static void append_cluster_time(const struct net_cmd *c, bson_t *out)
{
    cairn_ts ct = c->deps->txn != NULL ? txn_cluster_time(c->deps->txn) : 0;
    cairn_ts op = c->operation_time != 0 ? c->operation_time : ct;
    bson_t ctd, sig;
    static const uint8_t zero_hash[20];

    BSON_APPEND_DOCUMENT_BEGIN(out, "$clusterTime", &ctd);
    BSON_APPEND_TIMESTAMP(&ctd, "clusterTime", CAIRN_TS_SECS(ct), CAIRN_TS_INC(ct));
    BSON_APPEND_DOCUMENT_BEGIN(&ctd, "signature", &sig);
    BSON_APPEND_BINARY(&sig, "hash", BSON_SUBTYPE_BINARY, zero_hash, sizeof zero_hash);
    BSON_APPEND_INT64(&sig, "keyId", 0);
    bson_append_document_end(&ctd, &sig);
    bson_append_document_end(out, &ctd);
    BSON_APPEND_TIMESTAMP(out, "operationTime", CAIRN_TS_SECS(op), CAIRN_TS_INC(op));
}

/* Appends `msg` as a UTF-8 string, replacing bytes of invalid sequences
 * with '?' (messages may quote client bytes; drivers reject bad UTF-8). */
static void append_message(bson_t *out, const char *key, const char *msg)
{
    size_t len = strlen(msg);
    char *copy;

    if (bson_utf8_validate(msg, len, false)) {
        bson_append_utf8(out, key, -1, msg, (int)len);
        return;
    }
    copy = bson_strdup(msg);
    for (size_t i = 0; i < len;) {
        size_t n = 1;
        while (n <= 4 && i + n <= len && !bson_utf8_validate(copy + i, n, false)) {
            n++;
        }
        if (n > 4 || i + n > len) {
            copy[i] = '?';
            n = 1;
        }
        i += n;
    }
    bson_append_utf8(out, key, -1, copy, (int)len);
    bson_free(copy);
}

static void build_error(const struct net_cmd *c,
                        int code,
                        const char *msg,
                        const bson_t *labels,
                        bson_t *out)
{
    bson_init(out);
    BSON_APPEND_DOUBLE(out, "ok", 0.0);
    append_message(out, "errmsg", msg);
    BSON_APPEND_INT32(out, "code", code);
    BSON_APPEND_UTF8(out, "codeName", net_code_name(code));
    bson_t kp, kv;
    if (code == MONGO_DuplicateKey && txn_dup_info_take(&kp, &kv)) {
        BSON_APPEND_DOCUMENT(out, "keyPattern", &kp);
        BSON_APPEND_DOCUMENT(out, "keyValue", &kv);
        bson_destroy(&kp);
        bson_destroy(&kv);
    }
    if (c->name != NULL) {
        append_labels(out, compute_labels(c, code, 0), labels);
    }
    net_hello_append_error_topology(net_server_hello(net_conn_server(c->conn)), code, 0, out);
    append_cluster_time(c, out);
}

/* The code of a writeConcernError in a handler's reply, 0 if none. */
static int wce_code_of(const bson_t *reply)
{
    bson_iter_t it, sub;

    if (bson_iter_init_find(&it, reply, "writeConcernError") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "code") &&
        BSON_ITER_HOLDS_INT32(&sub)) {
        return bson_iter_int32(&sub);
    }
    return 0;
}

static void build_success(const struct net_cmd *c, const bson_t *labels, bson_t *out)
{
    bson_iter_t it;
    struct labels l = compute_labels(c, 0, wce_code_of(&c->reply));
    bool any = labels != NULL ? !bson_empty(labels) : (l.transient || l.retryable);

    bson_init(out);
    if (bson_iter_init(&it, &c->reply)) {
        while (bson_iter_next(&it)) {
            const char *key = bson_iter_key(&it);
            if (strcmp(key, "ok") == 0 || strcmp(key, "$clusterTime") == 0 ||
                strcmp(key, "operationTime") == 0) {
                continue;
            }
            if (any && strcmp(key, "writeConcernError") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
                /* pymongo reads the labels from the writeConcernError. */
                bson_t wce, src;
                const uint8_t *data;
                uint32_t len;
                bson_iter_document(&it, &len, &data);
                if (bson_init_static(&src, data, len)) {
                    BSON_APPEND_DOCUMENT_BEGIN(out, key, &wce);
                    bson_concat(&wce, &src);
                    append_labels(&wce, l, labels);
                    bson_append_document_end(out, &wce);
                    continue;
                }
            }
            bson_append_iter(out, key, -1, &it);
        }
    }
    BSON_APPEND_DOUBLE(out, "ok", 1.0);
    append_labels(out, l, labels);
    net_hello_append_error_topology(net_server_hello(net_conn_server(c->conn)), 0,
                                    wce_code_of(&c->reply), out);
    append_cluster_time(c, out);
}

static void free_request(struct request *r)
{
    net_op_end(&r->op);
    if (r->labels != NULL) {
        bson_destroy(r->labels);
    }
    bson_destroy(&r->cmd.reply);
    if (r->has_merged) {
        bson_destroy(&r->merged);
    }
    free(r->msg);
    free(r);
}

/* Encodes `doc` as the reply to `r` and ends the connection's turn. */
static void send_doc(struct net_conn *conn,
                     int32_t opcode,
                     int32_t request_id,
                     bool more_to_come,
                     const bson_t *doc)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int32_t id = atomic_fetch_add(&next_reply_id, 1) & 0x7fffffff;
    int rv;

    if (more_to_come) {
        net_conn_next(conn);
        return;
    }
    if (opcode == WIRE_OP_QUERY) {
        rv = wire_build_op_reply(id, request_id, doc, &buf, &len);
    } else {
        rv = wire_build_op_msg(id, request_id, doc, &buf, &len);
    }
    if (rv != 0) {
        net_conn_drop(conn);
        return;
    }
    net_conn_reply(conn, buf, len);
}

/* Wraps the outcome of `r`, sends it and frees `r`. */
static void finish(struct request *r, bool failed)
{
    struct net_cmd *c = &r->cmd;
    struct net_conn *conn = c->conn;
    bson_t out;
    int code = MONGO_OK;

    if (failed) {
        code = net_mongo_code(&c->err);
        build_error(c, code, c->err.msg[0] != '\0' ? c->err.msg : cairn_strerror(c->err.code),
                    r->labels, &out);
    } else {
        if (r->def != NULL) {
            /* failCommand's writeConcernError, after the command ran. */
            (void)net_fp_after_command(c, r->def, &c->reply, &r->labels);
        }
        build_success(c, r->labels, &out);
    }
    if (out.len > WIRE_MAX_COMMAND) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "BSONObj size: %u (0x%x) is invalid. Size must be between 0 and 16793600(16MB)",
                 (unsigned)out.len, (unsigned)out.len);
        bson_destroy(&out);
        code = MONGO_BSONObjectTooLarge;
        build_error(c, code, msg, NULL, &out);
    }
    if (r->more_to_come &&
        (code == MONGO_NotWritablePrimary || code == MONGO_NotPrimaryNoSecondaryOk)) {
        /* A fire-and-forget write on a non-primary: closing is how the
         * client learns. */
        bson_destroy(&out);
        free_request(r);
        net_conn_drop(conn);
        return;
    }
    /* The operation ends as its reply leaves: a client that has the reply
     * never finds the operation still in currentOp. */
    net_op_end(&r->op);
    send_doc(conn, r->opcode, r->request_id, r->more_to_come, &out);
    bson_destroy(&out);
    free_request(r);
}

void net_cmd_complete(struct net_cmd *c, bool failed)
{
    struct request *r = (struct request *)c;
    struct net_conn *conn = c->conn;
    struct net_server *s = net_conn_server(conn);

    if (!net_server_enter(s)) {
        free_request(r);
        net_conn_drop(conn);
        return;
    }
    finish(r, failed);
    net_server_leave(s);
}

void net_cmd_end_op(struct net_cmd *c)
{
    net_op_end(&((struct request *)c)->op);
}

void net_cmd_abandon(struct net_cmd *c)
{
    struct request *r = (struct request *)c;
    struct net_conn *conn = c->conn;

    free_request(r);
    net_conn_drop(conn);
}

/* ---- Request checks -------------------------------------------------------- */

static void count_op(struct net_server *s, const char *name, const bson_t *body)
{
    struct net_opcounters *oc = net_server_opcounters(s);
    const char *field = NULL;
    atomic_llong *ctr = &oc->command;
    bson_iter_t it;
    long long n = 1;

    if (strcmp(name, "insert") == 0) {
        ctr = &oc->insert;
        field = "documents";
    } else if (strcmp(name, "update") == 0) {
        ctr = &oc->update;
        field = "updates";
    } else if (strcmp(name, "delete") == 0) {
        ctr = &oc->del;
        field = "deletes";
    } else if (strcmp(name, "find") == 0) {
        ctr = &oc->query;
    } else if (strcmp(name, "getMore") == 0) {
        ctr = &oc->getmore;
    }
    if (field != NULL && bson_iter_init_find(&it, body, field) && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t sub;
        n = 0;
        if (bson_iter_recurse(&it, &sub)) {
            while (bson_iter_next(&sub)) {
                n++;
            }
        }
    }
    atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

/* Gossip: advance the cluster time to the request's $clusterTime. */
static int gossip_cluster_time(struct net_cmd *c)
{
    bson_iter_t it, sub;
    uint32_t t, i;

    if (!bson_iter_init_find(&it, c->body, "$clusterTime")) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(
            &c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
            "BSON field '$clusterTime' is the wrong type '%s', expected type 'object'",
            qry_type_name(bson_iter_type(&it)));
    }
    if (!bson_iter_recurse(&it, &sub) || !bson_iter_find(&sub, "clusterTime")) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_NoSuchKey,
                                 "No clusterTime field found in $clusterTime");
    }
    if (!BSON_ITER_HOLDS_TIMESTAMP(&sub)) {
        return cairn_error_mongo(
            &c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
            "BSON field '$clusterTime.clusterTime' is the wrong type '%s', expected type "
            "'timestamp'",
            qry_type_name(bson_iter_type(&sub)));
    }
    bson_iter_timestamp(&sub, &t, &i);
    if (c->deps->txn == NULL) {
        return 0;
    }
    return txn_cluster_time_advance(c->deps->txn, CAIRN_TS(t, i), &c->err);
}

static int check_flags(struct net_cmd *c, const struct net_cmd_def *def)
{
    struct repl_status st;

    if ((def->flags & NET_CMD_F_ADMIN_ONLY) && strcmp(c->db, "admin") != 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_Unauthorized,
                                 "%s may only be run against the admin database.", def->name);
    }
    if ((def->flags & (NET_CMD_F_NEEDS_CONFIG | NET_CMD_F_WRITE | NET_CMD_F_READ)) == 0) {
        return 0;
    }
    repl_status_get(c->deps->repl, &st);
    if (!st.initiated) {
        return cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_NotYetInitialized,
                                 "no replset config has been received");
    }
    if (def->flags & NET_CMD_F_WRITE) {
        if (!repl_is_writable(c->deps->repl)) {
            return cairn_error_mongo(&c->err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                                     "not primary");
        }
    } else if (def->flags & NET_CMD_F_READ) {
        if (st.state == REPL_STATE_PRIMARY) {
            return 0;
        }
        if (st.state != REPL_STATE_SECONDARY) {
            return cairn_error_mongo(
                &c->err, CAIRN_ENOTLEADER, MONGO_NotPrimaryOrSecondary,
                "node is not in primary or recovering state; cannot currently read from this "
                "replSet member");
        }
        if (!c->secondary_ok) {
            return cairn_error_mongo(&c->err, CAIRN_ENOTLEADER, MONGO_NotPrimaryNoSecondaryOk,
                                     "not primary and secondaryOk=false");
        }
    }
    return 0;
}

/* Reads maxTimeMS into c->deadline_ns, counted from `start`, with mongod's
 * rules: a number, integral, 0..INT32_MAX (0 = no limit); else 2 BadValue.
 * getMore's maxTimeMS is for awaitData cursors, which Cairn does not have:
 * it is left alone there. */
static int parse_max_time(struct net_cmd *c, uint64_t start)
{
    bson_iter_t it;
    c->deadline_ns = 0;
    if (strcmp(c->name, "getMore") == 0 || !bson_iter_init_find(&it, c->body, "maxTimeMS")) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_NUMBER(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "maxTimeMS must be a number");
    }
    double d = bson_iter_as_double(&it);
    if (!(d >= 0 && d <= 2147483647.0)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "maxTimeMS is out of range");
    }
    if (BSON_ITER_HOLDS_DOUBLE(&it) && floor(d) != d) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "maxTimeMS has non-integral value");
    }
    int64_t ms = bson_iter_as_int64(&it);
    c->deadline_ns = ms > 0 ? start + (uint64_t)ms * 1000000ull : 0;
    return 0;
}

/* failCommand (failpoint.c) right before the handler, in mongod's order:
 * errorLabels, blockConnection, closeConnection, errorCode. Returns 0 to
 * run the handler, a CAIRN_E* code with c->err set to reply with, or -1
 * when closeConnection closed the connection and freed `r`. */
static int apply_fail_point(struct request *r)
{
    struct net_cmd *c = &r->cmd;
    struct net_fp_action a;
    int rv = 0;

    net_fp_before_command(c, r->def, &a);
    if (!a.active) {
        return 0;
    }
    if (a.labels != NULL) {
        r->labels = a.labels;
        a.labels = NULL;
    }
    if (a.block_ms >= 0) {
        net_log_event(net_conn_server(c->conn),
                      "Blocking %s via 'failCommand' failpoint for %lld ms", r->def->name,
                      (long long)a.block_ms);
        rv = net_fp_block(&r->op.op, a.block_ms, &c->err);
        if (rv != 0) {
            goto out;
        }
    }
    if (a.close_connection) {
        struct net_conn *conn = c->conn;
        net_log_event(net_conn_server(conn),
                      "Failing %s via 'failCommand' failpoint: closing connection", r->def->name);
        /* The session points at this request's operation: give it back
         * before the request (and the operation in it) is freed. */
        net_session_leave(c->sess, c->txn_mode, true);
        c->sess = NULL;
        free_request(r);
        net_conn_drop(conn);
        rv = -1;
        goto out;
    }
    if (a.fail && a.error_code != 0) {
        rv = cairn_error_mongo(&c->err, CAIRN_EINTERRUPTED, a.error_code,
                               "Failing command via 'failCommand' failpoint");
    }
out:
    net_fp_action_clear(&a);
    return rv;
}

/* readConcern "linearizable", after the read (mongod's
 * waitForLinearizableReadConcern): the reply leaves only once a no-op of
 * the epoch the read began in is majority-committed. On failure the reply
 * is an error, and a cursor the handler opened for it is killed: its data
 * was never confirmed. Bounded by the command's maxTimeMS (50), a
 * getMore's fixed bound (187), else by the end of this member's
 * leadership (11602). */
static int confirm_linearizable(struct request *r)
{
    struct net_cmd *c = &r->cmd;
    bson_iter_t it;
    cairn_ts ts = 0;

    if (txn_confirm_linearizable(c->deps->txn, c->linearizable_epoch, &r->op.op,
                                 c->linearizable_until_ns, &ts, &c->err) == 0) {
        if (ts > c->operation_time) {
            c->operation_time = ts;
        }
        return NET_CMD_DONE;
    }
    if (bson_iter_init(&it, &c->reply) && bson_iter_find_descendant(&it, "cursor.id", &it) &&
        BSON_ITER_HOLDS_INT64(&it) && bson_iter_int64(&it) != 0) {
        (void)net_cursor_kill(bson_iter_int64(&it), NULL);
    }
    return NET_CMD_ERROR;
}

/* ---- Entry point ------------------------------------------------------------- */

static struct request *new_request(struct net_conn *conn, uint64_t conn_id, uint8_t *msg)
{
    struct request *r = calloc(1, sizeof *r);

    if (r == NULL) {
        return NULL;
    }
    r->msg = msg;
    r->cmd.conn = conn;
    r->cmd.conn_id = conn_id;
    r->cmd.deps = net_server_deps(net_conn_server(conn));
    r->cmd.db = r->db;
    bson_init(&r->cmd.reply);
    return r;
}

/* Replies with the error in r->cmd.err (or drops when fatal). */
static void reply_error(struct request *r)
{
    finish(r, true);
}

static int parse_op_msg(struct request *r, size_t len, bool *fatal)
{
    struct wire_msg m;
    bson_iter_t it;
    int rv;

    rv = wire_parse_op_msg(r->msg, len, &m, fatal, &r->cmd.err);
    if (rv != 0) {
        r->more_to_come = (m.flags & WIRE_MSG_MORE_TO_COME) != 0;
        return rv;
    }
    r->more_to_come = (m.flags & WIRE_MSG_MORE_TO_COME) != 0;
    r->has_merged = true;
    rv = wire_merge_sequences(&m, &r->merged, &r->cmd.err);
    if (rv != 0) {
        return rv;
    }
    r->cmd.body = &r->merged;
    if (!bson_iter_init_find(&it, &m.body, "$db") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return cairn_error_mongo(&r->cmd.err, CAIRN_EINVAL, MONGO_LOC_OpMsgMissingDb,
                                 "OP_MSG requests require a $db argument");
    }
    {
        uint32_t dlen;
        const char *db = bson_iter_utf8(&it, &dlen);
        if (dlen == 0 || dlen >= sizeof r->db || strlen(db) != dlen) {
            return cairn_error_mongo(&r->cmd.err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                     "Invalid database name: '%s'", db);
        }
        memcpy(r->db, db, dlen + 1);
    }
    if (bson_iter_init_find(&it, &m.body, "$readPreference")) {
        bson_iter_t sub;
        const char *mode = "primary";
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(
                &r->cmd.err, CAIRN_EINVAL, MONGO_TypeMismatch,
                "BSON field '$readPreference' is the wrong type '%s', expected type 'object'",
                qry_type_name(bson_iter_type(&it)));
        }
        if (bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "mode")) {
            if (!BSON_ITER_HOLDS_UTF8(&sub)) {
                return cairn_error_mongo(&r->cmd.err, CAIRN_EINVAL, MONGO_FailedToParse,
                                         "$readPreference mode must be a string");
            }
            mode = bson_iter_utf8(&sub, NULL);
        }
        if (strcmp(mode, "primary") != 0 && strcmp(mode, "primaryPreferred") != 0 &&
            strcmp(mode, "secondary") != 0 && strcmp(mode, "secondaryPreferred") != 0 &&
            strcmp(mode, "nearest") != 0) {
            return cairn_error_mongo(&r->cmd.err, CAIRN_EINVAL, MONGO_FailedToParse,
                                     "Could not parse $readPreference mode '%s'", mode);
        }
        r->cmd.secondary_ok = strcmp(mode, "primary") != 0;
    }
    return 0;
}

static int parse_op_query(struct request *r, size_t len, bool *fatal)
{
    struct wire_query q;
    int rv = wire_parse_op_query(r->msg, len, &q, fatal, &r->cmd.err);

    if (rv != 0) {
        return rv;
    }
    memcpy(r->db, q.db, sizeof r->db);
    r->cmd.secondary_ok = q.secondary_ok;
    /* q.cmd is a view into r->msg, which lives as long as the request. */
    bson_init_static(&r->merged, bson_get_data(&q.cmd), q.cmd.len);
    r->cmd.body = &r->merged;
    return 0;
}

void net_dispatch_message(struct net_conn *conn, uint64_t conn_id, uint8_t *msg, size_t len)
{
    struct net_server *s = net_conn_server(conn);
    struct wire_header h;
    struct request *r;
    struct net_cmd *c;
    const struct net_cmd_def *def;
    bson_iter_t it;
    bool fatal = false;
    int rv;
    uint64_t received_ns = cairn_mono_ns();

    if (len < WIRE_HEADER_LEN || wire_parse_header(msg, &h) != 0 || (size_t)h.length != len) {
        free(msg);
        net_conn_drop(conn);
        return;
    }
    if (h.opcode != WIRE_OP_MSG && h.opcode != WIRE_OP_QUERY) {
        net_log_event(s, "conn%llu: closing: unsupported opcode %d", (unsigned long long)conn_id,
                      h.opcode);
        free(msg);
        net_conn_drop(conn);
        return;
    }
    r = new_request(conn, conn_id, msg);
    if (r == NULL) {
        free(msg);
        net_conn_drop(conn);
        return;
    }
    r->request_id = h.request_id;
    r->opcode = h.opcode;
    c = &r->cmd;

    rv = h.opcode == WIRE_OP_MSG ? parse_op_msg(r, len, &fatal) : parse_op_query(r, len, &fatal);
    if (rv != 0) {
        /* The reply of a framing error cannot name a command. */
        c->body = NULL;
        c->name = NULL;
        if (fatal) {
            net_log_event(s, "conn%llu: closing: %s", (unsigned long long)conn_id, c->err.msg);
            free_request(r);
            net_conn_drop(conn);
            return;
        }
        reply_error(r);
        return;
    }

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        c->name = NULL;
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_CommandNotFound, "no such command: ''");
        reply_error(r);
        return;
    }
    c->name = bson_iter_key(&it);
    def = net_cmd_lookup(c->name);
    count_op(s, c->name, c->body);
    if (def == NULL) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_CommandNotFound, "no such command: '%s'",
                          c->name);
        reply_error(r);
        return;
    }
    if (gossip_cluster_time(c) != 0 || check_flags(c, def) != 0 ||
        parse_max_time(c, received_ns) != 0) {
        reply_error(r);
        return;
    }
    /* From here the command is an operation in progress (currentOp lists
     * it, killOp and its maxTimeMS end it) until its reply is sent; scans
     * and waits on this thread find it as the current operation. */
    r->def = def;
    net_op_begin(&r->op, c, c->deadline_ns);
    r->op.op.writes = (def->flags & NET_CMD_F_WRITE) != 0 || bson_has_field(c->body, "autocommit");
    cairn_op_set_current(&r->op.op);
    /* The session (lsid, txnNumber, the transaction state machine) comes
     * before the fail point: as in mongod, a failCommand error on a
     * transaction statement happens inside the transaction. */
    if (net_session_enter(c, &r->op.op) != 0) {
        net_session_leave(c->sess, c->txn_mode, true);
        c->sess = NULL;
        cairn_op_set_current(NULL);
        reply_error(r);
        return;
    }
    rv = apply_fail_point(r);
    if (rv < 0) {
        /* closeConnection: the connection is gone, and r with it (its
         * session was given back first). */
        cairn_op_set_current(NULL);
        return;
    }
    if (rv != 0) {
        net_session_leave(c->sess, c->txn_mode, true);
        c->sess = NULL;
        cairn_op_set_current(NULL);
        reply_error(r);
        return;
    }
    /* A read whose client goes away ends with 279 ClientDisconnect
     * (opguard.h): it would otherwise run on for nobody. */
    if (!r->op.op.writes && def->fn != net_cmd_hello) {
        net_guard_begin(&r->op.guard, conn, &r->op.op);
    }
    int result = def->fn(c);
    if (result == NET_CMD_DONE && c->err.code == 0 && c->linearizable) {
        result = confirm_linearizable(r);
    }
    /* r may be gone already (a PENDING command completed elsewhere, having
     * checked its session in first: net_dc_finish_write). */
    cairn_op_set_current(NULL);
    if (result != NET_CMD_PENDING) {
        net_session_leave(c->sess, c->txn_mode, result != NET_CMD_DONE || c->err.code != 0);
        c->sess = NULL;
    }
    switch (result) {
        case NET_CMD_DONE:
            finish(r, c->err.code != 0);
            return;
        case NET_CMD_PENDING:
            /* net_cmd_complete finishes it (maybe already has). */
            return;
        case NET_CMD_ERROR:
        default:
            if (c->err.code == MONGO_OK) {
                cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InternalError, "%s failed", c->name);
            }
            finish(r, true);
            return;
    }
}
