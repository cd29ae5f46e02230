/*
 * opguard.c: the list of running commands whose client disconnecting
 * interrupts them, and the watches that notice it (see opguard.h).
 */
#include "net/opguard.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "cairn/cairn.h"
#include "lib/clock.h"
#include "lib/op.h"
#include "net/server_int.h"

static pthread_mutex_t guards_mu = PTHREAD_MUTEX_INITIALIZER;
static struct net_op_guard *guards_head;
static atomic_llong n_disconnects;

void net_guard_begin(struct net_op_guard *g, struct net_conn *conn, struct cairn_op *op)
{
    g->conn = conn;
    g->op = op;
    g->since_ns = cairn_mono_ns();
    g->tried = false;
    g->armed = false;
    pthread_mutex_lock(&guards_mu);
    g->prev = NULL;
    g->next = guards_head;
    if (guards_head != NULL) {
        guards_head->prev = g;
    }
    guards_head = g;
    g->listed = true;
    pthread_mutex_unlock(&guards_mu);
}

void net_guard_end(struct net_op_guard *g)
{
    bool armed;

    if (!g->listed) {
        return;
    }
    pthread_mutex_lock(&guards_mu);
    if (g->prev != NULL) {
        g->prev->next = g->next;
    } else {
        guards_head = g->next;
    }
    if (g->next != NULL) {
        g->next->prev = g->prev;
    }
    g->prev = g->next = NULL;
    g->listed = false;
    armed = g->armed;
    g->armed = false;
    pthread_mutex_unlock(&guards_mu);
    if (armed) {
        /* Out of the list, so the sweeper no longer touches it; the watch's
         * callback (which interrupts g->op) has returned after this. */
        (void)net_conn_unwatch(g->conn);
    }
}

/* The watch read failed: the peer closed (or reset) the connection. Runs
 * on an nng thread while the operation is alive (net_guard_end waits). */
static void peer_gone(void *arg)
{
    struct cairn_op *op = arg;

    atomic_fetch_add(&n_disconnects, 1);
    cairn_op_interrupt(op, MONGO_ClientDisconnect);
}

int net_guard_sweep(uint64_t now_ns)
{
    int n = 0;

    pthread_mutex_lock(&guards_mu);
    for (struct net_op_guard *g = guards_head; g != NULL; g = g->next) {
        /* since_ns may be newer than now_ns (begun after the sweeper read
         * the clock): that command has not run long. */
        if (g->tried || now_ns <= g->since_ns || now_ns - g->since_ns < NET_GUARD_AFTER_NS) {
            continue;
        }
        /* The owner is not touching the connection's receive side while
         * its command runs, and cannot end the guard while we hold the
         * lock: arming here is safe. */
        g->tried = true;
        g->armed = net_conn_watch(g->conn, peer_gone, g->op);
        n += g->armed ? 1 : 0;
    }
    pthread_mutex_unlock(&guards_mu);
    return n;
}

int64_t net_guard_disconnects(void)
{
    return atomic_load(&n_disconnects);
}
