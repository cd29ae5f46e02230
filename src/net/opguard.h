/*
 * opguard.h: private to src/net. Ends a command whose client went away:
 * while a guarded command runs, its connection is watched for the peer
 * closing, and a close interrupts the command's operation with 279
 * ClientDisconnect (lib/op.h), which its scans and waits notice as they
 * notice maxTimeMS (mongod marks such operations killOnClientDisconnect).
 *
 * Arming a watch costs a read submitted and cancelled, so a guard is armed
 * only once its command has run NET_GUARD_AFTER_NS (by the sweeper,
 * sweeper.c): quick commands cost one lock and a list insertion. Guarded
 * are the commands that neither write nor run in a transaction (a write
 * half done by a disconnect would still commit or abort as a whole, but
 * mongod does not interrupt those either), and not hello (an awaitable
 * hello watches its connection itself).
 *
 * Threads: net_guard_begin and net_guard_end run on the thread that owns
 * the command's turn on the connection; net_guard_sweep on the sweeper.
 * A guard must be ended before its operation is unregistered and before
 * the turn ends (net_guard_end waits for the watch's callback).
 */
#ifndef CAIRN_NET_OPGUARD_H
#define CAIRN_NET_OPGUARD_H

#include <stdbool.h>
#include <stdint.h>

struct net_conn;
struct cairn_op;

/* A command is watched once it has run this long. */
#define NET_GUARD_AFTER_NS 50000000ull

struct net_op_guard
{
    struct net_conn *conn;
    struct cairn_op *op;
    uint64_t since_ns;
    bool listed; /* in the guard list (under its lock) */
    bool tried;  /* the sweeper tried to arm it */
    bool armed;  /* a watch read is pending or done: net_guard_end unwatches */
    struct net_op_guard *prev, *next;
};

/* Starts guarding `op` (running on `conn`'s turn). `g` is caller-owned and
 * zeroed; it must stay put until net_guard_end. */
void net_guard_begin(struct net_op_guard *g, struct net_conn *conn, struct cairn_op *op);

/* Stops guarding: removes `g` from the list and, when its watch was armed,
 * cancels it and waits for its callback. A no-op for a guard never begun or
 * already ended. */
void net_guard_end(struct net_op_guard *g);

/* Arms the watch of every guard begun more than NET_GUARD_AFTER_NS before
 * `now_ns` (monotonic) and not yet tried. Returns how many were armed. */
int net_guard_sweep(uint64_t now_ns);

/* Operations interrupted because their client disconnected (serverStatus). */
int64_t net_guard_disconnects(void);

#endif /* CAIRN_NET_OPGUARD_H */
