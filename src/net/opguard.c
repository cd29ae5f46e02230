/*
 * opguard.c: the watches that notice a disconnected client while its read
 * runs (see opguard.h): the guard states and the sweeper's arming pass.
 */
#include "net/opguard.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "cairn/cairn.h"
#include "lib/clock.h"
#include "lib/op.h"
#include "net/server_int.h"

enum {
    NET_GUARD_IDLE = 0,
    NET_GUARD_WAITING, /* begun, the sweeper has not claimed it */
    NET_GUARD_ARMING,  /* claimed: the sweeper is arming it */
    NET_GUARD_ARMED,   /* a watch read is pending or done: ending unwatches */
    NET_GUARD_UNARMED, /* the sweeper tried and could not arm */
};

/* Claimed guards armed per registry walk; more wait for the next walk. */
#define SWEEP_BATCH 64

/* Hands a claimed guard's outcome back to an owner waiting to end it. */
static pthread_mutex_t handoff_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t handoff_cv = PTHREAD_COND_INITIALIZER;
static atomic_llong n_disconnects;
static atomic_llong n_armed;
static atomic_llong n_end_waits;

void net_guard_begin(struct net_op_guard *g, struct net_conn *conn, struct cairn_op *op)
{
    g->conn = conn;
    g->op = op;
    g->since_ns = cairn_mono_ns();
    /* Release: the sweeper reads the fields after seeing WAITING. */
    atomic_store_explicit(&g->state, NET_GUARD_WAITING, memory_order_release);
}

void net_guard_end(struct net_op_guard *g)
{
    int s = NET_GUARD_WAITING;

    if (atomic_compare_exchange_strong(&g->state, &s, NET_GUARD_IDLE) || s == NET_GUARD_IDLE) {
        return; /* never claimed (the common case), or not begun */
    }
    if (s == NET_GUARD_ARMING) {
        atomic_fetch_add_explicit(&n_end_waits, 1, memory_order_relaxed);
        pthread_mutex_lock(&handoff_mu);
        while ((s = atomic_load(&g->state)) == NET_GUARD_ARMING) {
            pthread_cond_wait(&handoff_cv, &handoff_mu);
        }
        pthread_mutex_unlock(&handoff_mu);
    }
    atomic_store(&g->state, NET_GUARD_IDLE);
    if (s == NET_GUARD_ARMED) {
        /* The sweeper no longer touches g; the watch's callback (which
         * interrupts g->op) has returned after this. */
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

struct claim
{
    uint64_t now_ns;
    size_t n;
    bool more; /* the batch filled: walk again */
    struct net_op_guard *g[SWEEP_BATCH];
};

/* Under the registry lock: the guard (inside its registered net_op) is
 * alive, and claiming it makes its owner wait in net_guard_end until the
 * sweeper is done with it. */
static void claim_one(struct net_op *nop, void *arg)
{
    struct claim *cl = arg;
    struct net_op_guard *g = &nop->guard;
    int s = NET_GUARD_WAITING;

    if (atomic_load_explicit(&g->state, memory_order_acquire) != NET_GUARD_WAITING) {
        return;
    }
    /* since_ns may be newer than now_ns (begun after the sweeper read the
     * clock): that command has not run long. */
    if (cl->now_ns <= g->since_ns || cl->now_ns - g->since_ns < NET_GUARD_AFTER_NS) {
        return;
    }
    if (cl->n == SWEEP_BATCH) {
        cl->more = true;
        return;
    }
    if (atomic_compare_exchange_strong(&g->state, &s, NET_GUARD_ARMING)) {
        cl->g[cl->n++] = g;
    }
}

int net_guard_sweep(uint64_t now_ns)
{
    struct claim cl;
    int n = 0;

    cl.now_ns = now_ns;
    do {
        cl.n = 0;
        cl.more = false;
        net_ops_foreach(claim_one, &cl);
        for (size_t i = 0; i < cl.n; i++) {
            struct net_op_guard *g = cl.g[i];
            /* The owner is not touching the connection's receive side
             * while its command runs, and cannot finish ending the guard
             * until the state leaves ARMING: arming here is safe, and no
             * lock is held. */
            bool armed = net_conn_watch(g->conn, peer_gone, g->op);
            n += armed ? 1 : 0;
            pthread_mutex_lock(&handoff_mu);
            /* The last touch of g: its owner may free it right after. */
            atomic_store(&g->state, armed ? NET_GUARD_ARMED : NET_GUARD_UNARMED);
            pthread_cond_broadcast(&handoff_cv);
            pthread_mutex_unlock(&handoff_mu);
        }
    } while (cl.more);
    atomic_fetch_add_explicit(&n_armed, n, memory_order_relaxed);
    return n;
}

int64_t net_guard_disconnects(void)
{
    return atomic_load(&n_disconnects);
}

void net_guard_stats_get(struct net_guard_stats *out)
{
    out->armed = atomic_load_explicit(&n_armed, memory_order_relaxed);
    out->end_waits = atomic_load_explicit(&n_end_waits, memory_order_relaxed);
}
