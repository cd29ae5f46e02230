/*
 * server_int.h: private to src/net (owned by server.c, dispatch.c and
 * cmd_admin.c). The glue between the connection machinery (server.c), the
 * request dispatcher (dispatch.c) and the administrative commands
 * (cmd_admin.c, cmd_ops.c, params.c, failpoint.c): per-connection state,
 * server statistics, the small in-memory log that getLog serves, and BSON
 * helpers.
 *
 * Connection life cycle (server.c): a connection does one thing at a time:
 * receive a message (nng aio), wait for a worker, run in dispatch (handler,
 * maybe PENDING on write concern), send the reply (nng aio), receive again.
 * Dispatch ends its turn with exactly one of net_conn_reply, net_conn_next
 * or net_conn_drop; after that call it must not touch the connection.
 *
 * Also declared here: the pieces dispatch calls around every command, each
 * owned by its own file: operations in progress (cmd_ops.c), server
 * parameters (params.c) and the failCommand fail point (failpoint.c).
 */
#ifndef CAIRN_NET_SERVER_INT_H
#define CAIRN_NET_SERVER_INT_H

#include <bson/bson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/op.h"
#include "net/net_int.h"
#include "net/opguard.h"

/* Counters shown by serverStatus (relaxed atomics). */
struct net_opcounters
{
    atomic_llong insert;
    atomic_llong query;
    atomic_llong update;
    atomic_llong del;
    atomic_llong getmore;
    atomic_llong command;
};

struct net_server_info
{
    int64_t start_wall_ms;
    uint64_t start_mono_ns;
    int64_t conns_current;
    int64_t conns_total;
    int64_t conns_active; /* connections in a command (this one included), parked
                             awaitable hellos excepted */
    int n_workers;        /* worker threads started so far */
};

/* ---- server.c ---------------------------------------------------------- */

/* The server a connection belongs to. Any thread while the connection is
 * alive. */
struct net_server *net_conn_server(struct net_conn *c);

/* The options/deps the server was started with (borrowed). */
const struct net_options *net_server_options(const struct net_server *s);
const struct net_deps *net_server_deps(const struct net_server *s);

/* Statistics. The opcounters pointer is valid while the server lives. */
struct net_opcounters *net_server_opcounters(struct net_server *s);
void net_server_info_get(struct net_server *s, struct net_server_info *out);

/* Records the connection's client metadata from its first hello: a copy
 * of the `client` document (NULL = none sent), its application.name, and
 * whether hello declared an internal client (mongod's `internalClient`).
 * Returns false when metadata was already recorded (186
 * ClientMetadataCannotBeMutated); nothing changes then. Thread-safe. */
bool net_conn_set_client_metadata(struct net_conn *c, const bson_t *client, bool internal);

/* Copies the connection's application name into buf (n bytes) and returns
 * true; false (buf empty) when it has none or it does not fit. */
bool net_conn_app_name(struct net_conn *c, char *buf, size_t n);

/* True when the connection's hello declared an internal client. */
bool net_conn_is_internal(struct net_conn *c);

/* Appends appName and clientMetadata (when known) to `doc`, as currentOp
 * shows them. The caller must not hold the server lock. */
void net_conn_append_client(struct net_conn *c, bson_t *doc);

/* A view of one open connection, valid during the callback only. */
struct net_conn_info
{
    uint64_t id;
    const char *peer;
    const char *app_name;   /* NULL when none */
    const bson_t *metadata; /* NULL when none */
};

/* Calls `fn` for every open connection under the server lock: fn must not
 * block nor call other server.c functions. For currentOp's idle
 * connections. */
void net_server_foreach_conn(struct net_server *s,
                             void (*fn)(const struct net_conn_info *ci, void *arg),
                             void *arg);

/* The peer address "ip:port" of the connection (static per connection). */
const char *net_conn_peer(const struct net_conn *c);

/* True when the server is stopping (long waits should give up). */
bool net_server_stopping(struct net_server *s);

/* Ends the connection's turn by sending `msg` (a complete wire message,
 * malloc'd; ownership passes to the callee in every case). Any thread but
 * an nng callback of this connection; never blocks. */
void net_conn_reply(struct net_conn *c, uint8_t *msg, size_t len);

/* Ends the turn without a reply (moreToCome): receives the next message. */
void net_conn_next(struct net_conn *c);

/* Ends the turn by closing the connection (protocol error). */
void net_conn_drop(struct net_conn *c);

/* While the connection's command is parked (NET_CMD_PENDING for a long
 * wait, as an awaitable hello), reads from it so that a peer that closes
 * is noticed: `gone_cb(arg)` is then called once, on an nng thread (it
 * must not block nor touch the connection). Bytes the peer sends meanwhile
 * are kept for the next turn (watching then ends). Returns false, watching
 * nothing, when the receive buffer has no room. Called by the thread that
 * owns the turn, before anything else may end it, or by a thread the owner
 * waits for before it unwatches (opguard.c's sweep, under its lock). */
bool net_conn_watch(struct net_conn *c, void (*gone_cb)(void *arg), void *arg);

/* Stops watching (a no-op when not watching) and waits until the watch's
 * callback has returned. Returns true when the peer was seen closing (end
 * the turn with net_conn_drop, or net_cmd_abandon). Must be called before
 * the turn ends, never on one of the connection's nng callbacks. */
bool net_conn_unwatch(struct net_conn *c);

/* Closes the connections whose message has been incomplete for longer
 * than incompleteMessageTimeoutMillis at `now_ns` (monotonic), which gives
 * their buffered bytes back (rxbudget.h). Returns how many it began to
 * close. Any thread but a connection's callbacks (the sweeper). */
size_t net_server_drop_stalled(struct net_server *s, uint64_t now_ns);

/* The server's awaitable-hello state (hello.h). Valid while the server
 * lives. */
struct net_hello *net_server_hello(struct net_server *s);

/* For completions arriving from outside the worker pool: returns false
 * when the server has stopped (the caller must then net_conn_drop without
 * touching deps); otherwise the server (and deps) stay usable until
 * net_server_leave. */
bool net_server_enter(struct net_server *s);
void net_server_leave(struct net_server *s);

/* Appends a line to the in-memory log getLog serves ("global"). Thread-safe. */
void net_log_event(struct net_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends {totalLinesWritten, log: [...]} for getLog: "global". */
void net_log_append(struct net_server *s, bson_t *reply);

/* ---- dispatch.c -------------------------------------------------------- */

/* Handles one received message (header included; ownership of `msg`
 * passes to the callee). Runs on a worker thread; ends the connection's
 * turn as described above, possibly later from net_cmd_complete. */
void net_dispatch_message(struct net_conn *conn, uint64_t conn_id, uint8_t *msg, size_t len);

/* Looks a command up by name across the four tables (with aliases).
 * NULL when unknown. */
const struct net_cmd_def *net_cmd_lookup(const char *name);

/* Calls `fn` for every command definition (listCommands). */
void net_cmd_foreach(void (*fn)(const struct net_cmd_def *def, void *arg), void *arg);

/* ---- util.c ------------------------------------------------------------ */

/* The namespace of a command for currentOp (`for_current_op`: "db.coll"
 * for commands naming a collection, getMore's "db.<collection>", else
 * "db.$cmd") or for the failCommand `namespace` filter (the same, except
 * "db" for commands naming no collection, as mongod's invocation ns). */
void net_cmd_op_ns(const struct net_cmd *c, bool for_current_op, char *buf, size_t n);

/* Reads integral field `field` of `doc` as mongod's bsonExtractIntegerField
 * does: 4 NoSuchKey "Missing expected field "f"" when absent, 14
 * TypeMismatch for a non-number, 2 BadValue for a number without an exact
 * 64-bit integer value. Returns 0 or the CAIRN_E* code. */
int net_extract_integer(const bson_t *doc,
                        const char *field,
                        int64_t *out,
                        struct cairn_error *err);

/* True for the fields every command may carry that are not its arguments
 * (mongod's generic arguments: $db, lsid, comment, maxTimeMS, ...). */
bool net_is_generic_arg(const char *key);

/* Appends the current wall-clock time as currentOp's ISO-8601 string
 * ("2024-05-01T12:00:00.123+00:00"). */
void net_append_iso_now(bson_t *doc, const char *key);

/* Appends string `value` to array `arr` as its element `i` (key "i"). */
void net_append_index_key(bson_t *arr, uint32_t i, const char *value);

/* Appends an optime {ts: Timestamp(ts), t: Int64(term)} under `key`. */
void net_append_optime(bson_t *doc, const char *key, cairn_ts ts, uint64_t term);

/* ---- cmd_ops.c: operations in progress (currentOp, killOp) --------------- */

/* One client command as an operation in progress: the lib/op.h operation
 * (for kills and deadlines) plus what currentOp shows. It lives in the
 * request and is registered from dispatch until the reply is sent,
 * including a write-concern wait. */
struct net_op
{
    struct cairn_op op;
    struct net_conn *conn; /* alive while the operation is registered */
    const bson_t *command; /* the request body, alive while registered */
    const char *op_type;   /* "command", "insert", "update", "remove", "query", "getmore" */
    char ns[160];          /* as currentOp shows it (truncated) */
    bool registered;
    struct net_op_guard guard;  /* ends it when its client disconnects (opguard.h) */
    struct net_op *prev, *next; /* the net registry, under its lock */
};

/* Registers `nop` for command `c` (whose body must outlive the
 * registration) with maxTimeMS deadline `deadline_ns` (0 = none), in both
 * the lib/op.h registry and the net one. When the server is stopping the
 * operation starts killed (11600). Worker thread of the command. */
void net_op_begin(struct net_op *nop, const struct net_cmd *c, uint64_t deadline_ns);

/* Unregisters `nop` (a no-op when not registered). Any thread. */
void net_op_end(struct net_op *nop);

/* Calls `fn` for every registered client operation under the registry
 * lock (so each stays registered, and its memory valid, during the call).
 * `fn` must not block nor take ops_mu's callers' locks (lib/op.h's registry
 * lock and s->mu come after it). The sweeper (opguard.c). */
void net_ops_foreach(void (*fn)(struct net_op *nop, void *arg), void *arg);

/* currentOp and killOp (admin only). */
extern const struct net_cmd_def net_cmds_ops[];

/* ---- params.c: server parameters (getParameter, setParameter) ------------ */

/* Applies --setParameter settings at start (see net_param_check_startup).
 * Returns 0 or CAIRN_EINVAL with a command-line message. */
int net_params_apply_startup(struct net_server *s,
                             const struct net_param_setting *settings,
                             size_t n,
                             struct cairn_error *err);

/* enableTestCommands (process-wide, startup only, as mongod's). */
bool net_test_commands_enabled(void);

/* cursorTimeoutMillis as a monotonic duration (ns). Any thread. */
uint64_t net_cursor_idle_ns(void);

/* getParameter and setParameter (admin only). */
extern const struct net_cmd_def net_cmds_params[];

/* ---- failpoint.c: configureFailPoint and the failCommand fail point ------ */

/* What failCommand does to a command before its handler runs. */
struct net_fp_action
{
    bool active; /* the fail point was entered for this command */
    bool close_connection;
    int64_t block_ms; /* sleep this long first; -1 = no blockConnection */
    bool fail;        /* fail with error_code (unless it is 0) */
    int error_code;
    bson_t *labels; /* errorLabels override (owned), NULL = computed labels */
};

/* Evaluates failCommand for command `c` (definition `def`) right before
 * its handler would run. Sets *out (always initialised; release with
 * net_fp_action_clear). Never fails; cheap (one atomic load) while the
 * fail point is off. Worker thread of the command. */
void net_fp_before_command(const struct net_cmd *c,
                           const struct net_cmd_def *def,
                           struct net_fp_action *out);

/* Releases what an action owns. */
void net_fp_action_clear(struct net_fp_action *a);

/* Sleeps `ms` milliseconds for blockConnection as operation `op`: a kill
 * or its deadline ends the sleep early. Returns 0, or what cairn_op_check
 * returns (err set). */
int net_fp_block(struct cairn_op *op, int64_t ms, struct cairn_error *err);

/* After a successful handler of a command that takes a write concern:
 * when failCommand applies with a writeConcernError (and `reply` has none
 * yet), appends it to `reply` and, when the data carries errorLabels,
 * replaces *labels (owned) with them. Returns true when it did. Any
 * thread (it may run where a write-concern wait completes). */
bool net_fp_after_command(const struct net_cmd *c,
                          const struct net_cmd_def *def,
                          bson_t *reply,
                          bson_t **labels);

/* True when commands of `def` take a write concern (mongod's
 * supportsWriteConcern): the writes and commitTransaction/abortTransaction. */
bool net_cmd_supports_write_concern(const struct net_cmd_def *def);

/* Turns every fail point off and frees its data (server stop). */
void net_fp_reset_all(void);

/* configureFailPoint (admin only; reachable only with enableTestCommands). */
extern const struct net_cmd_def net_cmds_test[];

#endif /* CAIRN_NET_SERVER_INT_H */
