/*
 * net_int.h: private to src/net. The command context every handler gets,
 * the command table, and the helpers shared by the command files
 * (cmd_admin.c, cmd_crud.c, cmd_read.c, cmd_ddl.c).
 *
 * Dispatch (dispatch.c) parses the request, looks the command up, checks
 * its flags against the member state, calls the handler on a worker thread,
 * then wraps the reply: on success it appends ok: 1.0; on failure it builds
 * {ok: 0.0, errmsg, code, codeName}; in both cases $clusterTime and
 * operationTime. A handler never appends ok, $clusterTime or operationTime.
 */
#ifndef CAIRN_NET_NET_INT_H
#define CAIRN_NET_NET_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "net.h"
#include "query/query.h"

struct net_conn;

/* One command being executed. */
struct net_cmd
{
    /* Request (read-only for handlers). */
    const struct net_deps *deps;
    struct net_conn *conn; /* opaque to handlers */
    uint64_t conn_id;      /* connectionId reported by hello */
    const char *name;      /* command name: the first key of body */
    const char *db;        /* $db (OP_MSG) or the db of "<db>.$cmd" (OP_QUERY) */
    const bson_t *body;    /* the command; kind-1 sequences merged in as arrays */
    bool secondary_ok;     /* $readPreference mode != primary, or OP_QUERY flag */
    uint64_t deadline_ns;  /* maxTimeMS as a monotonic deadline; 0 = none */

    /* Session context, set by dispatch before the handler (txnctx.h). */
    struct txn_session *sess; /* checked out for this command, or NULL */
    int txn_mode;             /* enum net_txn_mode */
    int64_t txn_number;       /* with txn_mode != NET_TXN_NONE */
    cairn_ts at_cluster_time; /* a snapshot read outside a transaction: its ts (replies say it) */
    /* readConcern linearizable (set by net_read_begin, or getMore of such a
     * cursor): dispatch confirms, after the handler, that this member is
     * still primary in write epoch linearizable_epoch (0: it was not when
     * the read began, which the confirmation answers with 10107), bounded
     * by maxTimeMS and by linearizable_until_ns (0 = no other bound). */
    bool linearizable;
    uint64_t linearizable_epoch;
    uint64_t linearizable_until_ns;

    /* Reply. Handlers append their fields to `reply` (initialised empty). */
    bson_t reply;
    cairn_ts operation_time; /* 0 = use the current cluster time */
    uint64_t ovl_token;     /* txn_read_overlay_token of the command's local read, for its cursor */
    struct cairn_error err; /* set when the handler fails */

    /* For handlers that return NET_CMD_PENDING. */
    void *handler_state;
};

/* What a handler returns. PENDING is negative so that it can never be
 * confused with an error code: any positive return (NET_CMD_ERROR, or a
 * CAIRN_E* code returned straight from cairn_error_mongo) is a failure with
 * c->err set. */
enum net_cmd_result {
    NET_CMD_DONE = 0,     /* reply (or err) is ready */
    NET_CMD_ERROR = 1,    /* err is set: reply is discarded, an error envelope sent */
    NET_CMD_PENDING = -1, /* the handler will call net_cmd_complete later */
};

typedef int (*net_cmd_fn)(struct net_cmd *c);

/* Flags of a command definition. */
enum {
    NET_CMD_F_ADMIN_ONLY = 1 << 0,   /* must run on "admin" (13 Unauthorized-like: mongod says
                                         "<cmd> may only be run against the admin database.") */
    NET_CMD_F_WRITE = 1 << 1,        /* needs the primary: else 10107 NotWritablePrimary */
    NET_CMD_F_READ = 1 << 2,         /* primary, or secondary with secondary_ok: else 13435 */
    NET_CMD_F_NEEDS_CONFIG = 1 << 3, /* before replSetInitiate: 94 NotYetInitialized */
};

struct net_cmd_def
{
    const char *name;
    net_cmd_fn fn;
    unsigned flags;
};

/* Command tables, each terminated by {NULL, NULL, 0}. */
extern const struct net_cmd_def net_cmds_admin[]; /* cmd_admin.c */
extern const struct net_cmd_def
    net_cmds_crud[]; /* cmd_crud.c: insert update delete findAndModify */
extern const struct net_cmd_def
    net_cmds_read[]; /* cmd_read.c: find getMore killCursors count distinct aggregate */
extern const struct net_cmd_def
    net_cmds_ddl[]; /* cmd_ddl.c: create drop dropDatabase listCollections listDatabases */

extern const struct net_cmd_def
    net_cmds_session[]; /* cmd_session.c: sessions, commitTransaction, abortTransaction */
extern const struct net_cmd_def
    net_cmds_repl[]; /* cmd_repl.c: replSetReconfig, replSetStepDown, replSetFreeze */
extern const struct net_cmd_def net_cmds_explain[]; /* cmd_explain.c: explain */
extern const struct net_cmd_def net_cmds_coll[];    /* cmd_coll.c: renameCollection collMod */
extern const struct net_cmd_def net_cmds_stats[];   /* cmd_stats.c: dbStats collStats */

/* Finishes a NET_CMD_PENDING command: wraps and sends its reply (or err
 * when `failed`). Callable from any thread, including the raft thread;
 * never blocks. After it returns the handler must not touch `c`. */
void net_cmd_complete(struct net_cmd *c, bool failed);

/* Takes the command out of the operations in progress before it returns
 * NET_CMD_PENDING for a wait that is not work (a parked awaitable hello:
 * currentOp then shows its connection as idle, killOp does not find it).
 * Worker thread of the command. */
void net_cmd_end_op(struct net_cmd *c);

/* Ends a NET_CMD_PENDING command without a reply because its client is
 * gone: frees the command and closes the connection. Any thread that is
 * not one of the connection's nng callbacks; never blocks. After it
 * returns the handler must not touch `c`. */
void net_cmd_abandon(struct net_cmd *c);

/* Maps a MongoDB error code to its codeName ("BadValue", ...). */
const char *net_code_name(int code);

/* The MongoDB code for an error: err->mongo_code when set, else a mapping of
 * err->code (NOTLEADER -> 10107, BADDOC -> 2, TOOBIG -> 10334, NOTFOUND -> 26,
 * EXISTS -> 48, TIMEOUT -> 50, SHUTDOWN -> 91, INVAL -> 2, others -> 1). */
int net_mongo_code(const struct cairn_error *err);

/* Parses the optional writeConcern field of `body` into `wc` (default
 * {w: "majority"}). Errors (mongo_code 9 FailedToParse / 14 TypeMismatch /
 * 79 UnknownReplWriteConcern) for bad shapes. w: 0 is treated as w: 1
 * (the driver asked for no reply, which moreToCome already handles). */
int net_parse_write_concern(const bson_t *body, struct repl_wc *wc, struct cairn_error *err);

/* Parses readConcern {level: "local"|"majority"|"available"|"snapshot"|...}
 * into a txn_read level, for the catalog listings (listCollections,
 * listIndexes, listDatabases). "snapshot" outside transactions and
 * "linearizable" (72 InvalidOptions "read concern not supported", as
 * mongod there) are refused. */
int net_parse_read_concern(const bson_t *body, int *level, struct cairn_error *err);

/* ---- rwc.c: cluster-wide read/write concern defaults ---------------------- */

/* The write concern of command `c`: its writeConcern field as
 * net_parse_write_concern parses it, with the cluster-wide default
 * (setDefaultRWConcern) in place of a missing or empty one, and the
 * default's w (and j, when it gives none) for one without w. Returns 0 or
 * NET_CMD_ERROR with c->err set. Worker thread; one atomic load and one
 * mutex unless the defaults changed since the last use. */
int net_rwc_write_concern(struct net_cmd *c, struct repl_wc *wc);

/* The default read concern level (TXN_READ_*) for a command that names
 * none, or -1 when no default is set (then "local"). Returns 0 or
 * NET_CMD_ERROR with c->err set. Worker thread. */
int net_rwc_read_level(struct net_cmd *c, int *level);

/* getDefaultRWConcern and setDefaultRWConcern (cmd_repl.c's table). */
int net_cmd_get_default_rw_concern(struct net_cmd *c);
int net_cmd_set_default_rw_concern(struct net_cmd *c);

/* Appends a writeConcernError sub-document for a failed wait status
 * (CAIRN_ETIMEOUT -> {code: 64, codeName: "WriteConcernFailed", errmsg:
 * "waiting for replication timed out", errInfo: {wtimeout: true}}; others
 * mapped likewise) to `reply`. */
void net_append_write_concern_error(bson_t *reply, int status);

/* Type-checked field readers used by handlers. Each returns 0 when the
 * field is absent (leaving *out unchanged) or well-typed, else sets err
 * with mongo_code 14 TypeMismatch and a mongod-like message naming the
 * field, e.g. "BSON field 'find.limit' is the wrong type 'string', expected
 * types '[long, int, decimal, double]'". */
int net_get_int64(const struct net_cmd *c, const char *field, int64_t *out);
int net_get_bool(const struct net_cmd *c, const char *field, bool *out);
int net_get_doc(const struct net_cmd *c, const char *field, bson_t *out);   /* static view */
int net_get_array(const struct net_cmd *c, const char *field, bson_t *out); /* static view */

/* The `hint` field of `doc` (a command body, or an update or delete
 * statement) as a view into doc's data: out->value_type is BSON_TYPE_EOD
 * when absent. Pass it to txn_scan_req.hint / net_dc_visit_scan.
 * Errors: CAIRN_EINVAL with 9 FailedToParse when neither a string nor an
 * object (set in err, returned). */
int net_get_hint(const bson_t *doc, bson_value_t *out, struct cairn_error *err);

/* Positions `it` on the `pipeline` field of the aggregate command `cmd`
 * (the body, or explain's inner command), checked to be an array.
 * Errors (set in c->err, returned): 40414 IDLMissingField when absent,
 * 14 TypeMismatch when not an array. */
int net_find_pipeline(struct net_cmd *c, const bson_t *cmd, bson_iter_t *it);

/* The collection name of a command whose first value names one (insert:
 * "c"): sets *ns to "<db>.<c>" in `buf`. Errors: 73 InvalidNamespace, or
 * 2 BadValue "collection name has invalid type ..." when not a string. */
int net_cmd_namespace(struct net_cmd *c, char *buf, size_t bufsize);

/* Appends collStats' fields for `st` (collection `ns`, sizes divided by
 * `scale` >= 1) to `out` (cmd_stats.c; also $collStats' storageStats).
 * Returns 0. */
struct txn_coll_stats;
int net_coll_stats_append(const struct txn_coll_stats *st,
                          const char *ns,
                          int64_t scale,
                          bson_t *out);

#endif /* CAIRN_NET_NET_INT_H */
