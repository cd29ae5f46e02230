/*
 * net.h: the client-facing server, the only layer that includes nng.
 * It accepts TCP connections on nng's stream API, frames MongoDB wire
 * messages (OP_MSG, OP_QUERY -> OP_REPLY), executes commands on a pool of
 * worker threads and sends the replies. Commands that wait for write
 * concern hold no thread: they complete from the raft thread.
 */
#ifndef CAIRN_NET_NET_H
#define CAIRN_NET_NET_H

#include "cairn/cairn.h"
#include "repl/repl.h"
#include "txn/txn.h"

struct net_options
{
    const char *bind_ip; /* IPv4 literal or hostname to listen on */
    int port;
    int n_workers;       /* command worker threads; 0 = default (8) */
    const char *dbpath;  /* for listDatabases sizes and diagnostics */
};

/* What commands act on; all borrowed and must outlive the server. */
struct net_deps
{
    struct txn_mgr *txn;
    struct repl *repl;
};

struct net_server;

/* Starts listening and serving. Errors: CAIRN_EIO (address in use, ...),
 * CAIRN_ENOMEM. Any thread. */
int net_server_start(const struct net_options *opts, const struct net_deps *deps,
                     struct net_server **out, struct cairn_error *err);

/* Stops accepting, closes connections, waits for workers and frees. */
void net_server_stop(struct net_server *s);

#endif /* CAIRN_NET_NET_H */
