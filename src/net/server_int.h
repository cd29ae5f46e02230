/*
 * server_int.h: private to src/net (owned by server.c, dispatch.c and
 * cmd_admin.c). The glue between the connection machinery (server.c), the
 * request dispatcher (dispatch.c) and the administrative commands
 * (cmd_admin.c): per-connection state, server statistics, the small
 * in-memory log that getLog serves, and BSON helpers.
 *
 * Connection life cycle (server.c): a connection does one thing at a time:
 * receive a message (nng aio), wait for a worker, run in dispatch (handler,
 * maybe PENDING on write concern), send the reply (nng aio), receive again.
 * Dispatch ends its turn with exactly one of net_conn_reply, net_conn_next
 * or net_conn_drop; after that call it must not touch the connection.
 */
#ifndef CAIRN_NET_SERVER_INT_H
#define CAIRN_NET_SERVER_INT_H

#include <bson/bson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net_int.h"

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
    int64_t conns_active; /* connections in a command (this one included) */
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

/* Records that the connection sent its `client` metadata. Returns false
 * when it had already done so (186 ClientMetadataCannotBeMutated). */
bool net_conn_set_client_metadata(struct net_conn *c);

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

#endif /* CAIRN_NET_SERVER_INT_H */
