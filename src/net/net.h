/*
 * net.h: the client-facing server, the only layer that includes nng.
 * It accepts TCP connections on nng's stream API, frames MongoDB wire
 * messages (OP_MSG, OP_QUERY -> OP_REPLY), executes commands on a pool of
 * worker threads and sends the replies. Commands that wait for write
 * concern hold no thread: they complete from the raft thread.
 */
#ifndef CAIRN_NET_NET_H
#define CAIRN_NET_NET_H

#include <stddef.h>

#include "cairn/cairn.h"
#include "repl/repl.h"
#include "txn/txn.h"

/* One --setParameter name=value (both borrowed). */
struct net_param_setting
{
    const char *name;
    const char *value;
};

struct net_options
{
    const char *bind_ip; /* IPv4 literal or hostname to listen on */
    int port;
    int n_workers;                          /* command worker threads; 0 = default (8) */
    const char *dbpath;                     /* for listDatabases sizes and diagnostics */
    const struct net_param_setting *params; /* --setParameter settings, applied in order at start */
    size_t n_params;
};

/* What commands act on; all borrowed and must outlive the server. */
struct net_deps
{
    struct txn_mgr *txn;
    struct repl *repl;
};

struct net_server;

/* Checks one --setParameter setting before anything starts: the name must
 * be a server parameter that may be set at startup and the value must parse
 * as its type and lie in its range. Returns 0, or CAIRN_EINVAL with a
 * message for the command line ("Unknown --setParameter 'x'", "Bad value
 * for --setParameter transactionLifetimeLimitSeconds=abc: ..."). It applies
 * nothing: net_server_start does. Any thread. */
int net_param_check_startup(const char *name, const char *value, struct cairn_error *err);

/* Starts listening and serving, after applying opts->params (copied; the
 * caller's array is read during the call only). Errors: CAIRN_EINVAL (a
 * --setParameter setting that net_param_check_startup would refuse, or
 * that the layer it configures refuses), CAIRN_EIO (address in use, ...),
 * CAIRN_ENOMEM. Any thread. */
int net_server_start(const struct net_options *opts,
                     const struct net_deps *deps,
                     struct net_server **out,
                     struct cairn_error *err);

/* Stops accepting, closes connections, waits for workers and frees. */
void net_server_stop(struct net_server *s);

#endif /* CAIRN_NET_NET_H */
