/*
 * sweeper.h: private to src/net. The server's housekeeping thread: every
 * NET_SWEEP_NS it closes connections whose message stalled past
 * incompleteMessageTimeoutMillis (server.c, rxbudget.h), arms the
 * disconnect watches of long-running commands (opguard.h) and reaps idle
 * cursors past cursorTimeoutMillis (cursor.h) — so none of these waits for
 * some other client's request to happen.
 *
 * Threads: start and stop from the thread starting and stopping the server.
 */
#ifndef CAIRN_NET_SWEEPER_H
#define CAIRN_NET_SWEEPER_H

#include <stdint.h>

#include "cairn/cairn.h"

struct net_server;
struct net_sweeper;

#define NET_SWEEP_NS 100000000ull

/* Starts the thread for `s` (which must outlive it). Returns 0, or
 * CAIRN_ENOMEM / CAIRN_EIO with err set. */
int net_sweeper_start(struct net_server *s, struct net_sweeper **out, struct cairn_error *err);

/* Stops and joins the thread and frees it. NULL is a no-op. */
void net_sweeper_stop(struct net_sweeper *sw);

#endif /* CAIRN_NET_SWEEPER_H */
