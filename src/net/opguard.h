/*
 * opguard.h: private to src/net. Ends a command whose client went away:
 * while a guarded command runs, its connection is watched for the peer
 * closing, and a close interrupts the command's operation with 279
 * ClientDisconnect (lib/op.h), which its scans and waits notice as they
 * notice maxTimeMS (mongod marks such operations killOnClientDisconnect).
 *
 * Arming a watch costs a read submitted and cancelled, so a guard is armed
 * only once its command has run NET_GUARD_AFTER_NS, by the sweeper
 * (sweeper.c), which finds long-running commands through the registry of
 * operations in progress (cmd_ops.c, net_ops_foreach). A guard is embedded
 * in its struct net_op and is no list of its own: beginning and ending the
 * guard of a command that finishes before the sweeper looks at it is two
 * atomic operations on the guard, no lock shared with other commands.
 * Guarded are the commands that neither write nor run in a transaction (a
 * write half done by a disconnect would still commit or abort as a whole,
 * but mongod does not interrupt those either), and not hello (an awaitable
 * hello watches its connection itself).
 *
 * A guard's state goes IDLE -> WAITING (begun) -> either IDLE (ended before
 * the sweeper claimed it) or ARMING (claimed by the sweeper under the
 * registry lock) -> ARMED or UNARMED (the sweeper's last touch) -> IDLE
 * (ended). The sweeper arms watches outside every lock; an owner ending a
 * guard the sweeper is arming waits for the outcome (a short wait, once
 * per long-running command), so the watch is never armed on a connection
 * whose turn has moved on.
 *
 * Threads: net_guard_begin and net_guard_end run on the thread that owns
 * the command's turn on the connection; net_guard_sweep on the sweeper.
 * A guard must be ended before its operation is unregistered and before
 * the turn ends (net_guard_end waits for the watch's callback).
 */
#ifndef CAIRN_NET_OPGUARD_H
#define CAIRN_NET_OPGUARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct net_conn;
struct cairn_op;

/* A command is watched once it has run this long. */
#define NET_GUARD_AFTER_NS 50000000ull

struct net_op_guard
{
    struct net_conn *conn; /* written by the owner before state turns WAITING */
    struct cairn_op *op;
    uint64_t since_ns;
    atomic_int state; /* NET_GUARD_* in opguard.c; 0 = idle (zeroed) */
};

/* Starts guarding `op` (running on `conn`'s turn). `g` is caller-owned,
 * zeroed or ended, and embedded in the registered struct net_op of `op`
 * (the sweeper finds it there). Takes no lock. */
void net_guard_begin(struct net_op_guard *g, struct net_conn *conn, struct cairn_op *op);

/* Stops guarding: when its watch was armed, cancels it and waits for its
 * callback; when the sweeper is arming it, waits for that first. A no-op
 * for a guard never begun or already ended. Takes no shared lock unless
 * the sweeper claimed the guard. */
void net_guard_end(struct net_op_guard *g);

/* Arms the watch of every guard begun more than NET_GUARD_AFTER_NS before
 * `now_ns` (monotonic) and not yet tried. Returns how many were armed. */
int net_guard_sweep(uint64_t now_ns);

/* Operations interrupted because their client disconnected (serverStatus). */
int64_t net_guard_disconnects(void);

/* Counters for serverStatus network.disconnectWatch: watches armed, and
 * guard ends that had to wait for the sweeper (the only time a guard's
 * owner takes a lock shared with other threads). */
struct net_guard_stats
{
    int64_t armed;
    int64_t end_waits;
};
void net_guard_stats_get(struct net_guard_stats *out);

#endif /* CAIRN_NET_OPGUARD_H */
