/*
 * hello.h: the handshake command (hello, isMaster, ismaster) with
 * topologyVersion and awaitable hello, private to src/net (hello.c).
 *
 * Every hello reply carries topologyVersion {processId: ObjectId chosen
 * once per process, counter: Int64 = repl_topology_counter}. A request
 * with topologyVersion and maxAwaitTimeMS whose processId is ours and
 * whose counter is the current one is parked: it holds no worker thread
 * and is answered when the counter changes, when maxAwaitTimeMS passes
 * (with the same topology), or at shutdown (91 ShutdownInProgress, as
 * mongod's quiesce mode); a client that disconnects meanwhile has its
 * request dropped at once. NotPrimary errors of every command (and
 * ShutdownInProgress ones once shutdown began) carry topologyVersion too.
 * Exhaust (moreToCome streaming) is not offered:
 * every reply has flags 0, and drivers then send their next awaitable
 * hello as soon as one is answered (server-monitoring.md allows it).
 *
 * The argument parsing and the wait decision are pure functions so that
 * unit tests check them against mongod's rules directly.
 */
#ifndef CAIRN_NET_HELLO_H
#define CAIRN_NET_HELLO_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "net/net_int.h"

/* The awaitable arguments of one hello request. */
struct net_hello_await
{
    bool has_topology_version;
    bool has_max_await;
    bson_oid_t process_id; /* topologyVersion.processId */
    int64_t counter;       /* topologyVersion.counter */
    int64_t max_await_ms;  /* maxAwaitTimeMS */
};

/* Parses topologyVersion and maxAwaitTimeMS of the hello command `body`
 * into *out as mongod 7.0's HelloCommand IDL does, field by field in
 * document order: topologyVersion not a document: 10065; an unknown field
 * in it: 40415; processId not an ObjectId or counter not an Int64: 14
 * TypeMismatch; either missing: 40414; maxAwaitTimeMS not a number: 14;
 * negative: 51024 (doubles are truncated). Then the pairing rules of
 * CmdHello: only one of the two: 31368; a negative counter: 31372.
 * Returns 0 or CAIRN_EINVAL with err's mongo_code set. Any thread. */
int net_hello_parse_await(const bson_t *body, struct net_hello_await *out, struct cairn_error *err);

/* What a hello with arguments `a` does when this process is `process_id`
 * at topology counter `counter`. */
enum net_hello_decision {
    NET_HELLO_ANSWER = 0, /* answer now */
    NET_HELLO_WAIT = 1,   /* park until the counter changes or maxAwaitTimeMS passes */
};

/* Decides for `a` (parsed by net_hello_parse_await): not awaitable, another
 * processId (the server restarted), an older counter, or maxAwaitTimeMS 0:
 * answer now; the same counter: wait. A higher counter with our processId
 * fails with 31382 (mongod's shouldParkHelloAwaitingTopologyChange).
 * Returns 0 with *out set, or CAIRN_EINVAL with err's mongo_code set. Any
 * thread. */
int net_hello_decide(const struct net_hello_await *a,
                     const bson_oid_t *process_id,
                     uint64_t counter,
                     enum net_hello_decision *out,
                     struct cairn_error *err);

/* This process's topologyVersion.processId (chosen at the first call).
 * Any thread. */
void net_hello_process_id(bson_oid_t *out);

/* The awaitable-hello state of one server: parked requests and the thread
 * that answers them. */
struct net_hello;

/* Starts the thread and registers for repl's topology changes
 * (repl_set_topology_cb; `repl` must outlive the state). Errors:
 * CAIRN_ENOMEM (no memory or no thread). Any thread. */
int net_hello_start(struct net_server *s,
                    struct repl *repl,
                    struct net_hello **out,
                    struct cairn_error *err);

/* Shutdown, mongod's quiesce mode: unregisters from repl, answers every
 * parked request with 91 ShutdownInProgress (topologyVersion counter
 * bumped by one), makes every later hello answer so at once, and joins
 * the thread. Before the server stops sending replies. Idempotent. Not on
 * a worker thread. */
void net_hello_quiesce(struct net_hello *h);

/* Frees the state (NULL is fine). After net_hello_quiesce, once no
 * command can run any more. */
void net_hello_free(struct net_hello *h);

/* Requests parked right now (serverStatus connections.awaitingTopologyChanges).
 * Any thread. */
int64_t net_hello_n_awaiting(struct net_hello *h);

/* mongod's appendErrorLabelsAndTopologyVersion: appends topologyVersion
 * to the reply `doc` of a command whose error `code` or writeConcernError
 * `wce_code` (0 = none) is a NotPrimaryError (10107, 13435, 13436, 11602,
 * 189), or a ShutdownError (91, 11600) once shutdown began. Drivers compare
 * it with the topologyVersion they know: an error no newer than their view
 * is stale and does not make them drop the server (SDAM "Error Handling").
 * `h` NULL appends nothing. Any thread. */
void net_hello_append_error_topology(struct net_hello *h, int code, int wce_code, bson_t *doc);

/* Appends hello's hosts (and passives: members of priority 0) lists of
 * status `st` to `doc` (also serverStatus's repl section). */
void net_append_hosts(bson_t *doc, const struct repl_status *st);

/* The hello / isMaster / ismaster handler (dispatch table entry): returns
 * NET_CMD_DONE, NET_CMD_PENDING (parked: completed later with
 * net_cmd_complete, from the hello thread) or an error code with c->err
 * set. Worker thread. */
int net_cmd_hello(struct net_cmd *c);

#endif /* CAIRN_NET_HELLO_H */
