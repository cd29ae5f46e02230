/*
 * txn.c: the transaction manager (see txn.h): opening and closing it, its
 * parameters and statistics, the leadership callback that aborts open
 * transactions when this member stops being primary, the reaper thread
 * (transactionLifetimeLimitSeconds, session expiry) and waits for a
 * cluster time (readConcern afterClusterTime / atClusterTime).
 *
 * The reaper wakes once a second (or when the manager closes): lifetimes
 * are whole seconds, so that is precise enough, and an idle server does one
 * table walk per second. On the primary it is also the periodic no-op
 * writer (mongod's, every periodicNoopIntervalSecs): when the cluster time
 * (raised by gossip from clients that talked to other members) is ahead of
 * everything written, it writes an empty commit above it, so that
 * afterClusterTime waits on secondaries end without a client write.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "txn/txn_int.h"

#define REAPER_INTERVAL_MS 1000

/* ---- Leadership -------------------------------------------------------------- */

/* On the raft thread: must not block (session.c keeps it to short
 * critical sections). */
static bool is_writer(const struct cairn_op *op, void *arg)
{
    (void)arg;
    return op->writes;
}

static void on_leadership(void *arg, bool writable, uint64_t epoch)
{
    struct txn_mgr *m = arg;

    (void)epoch;
    txn_sessions_on_leadership(m, writable);
    if (!writable) {
        /* Running statements would fail at commit (another epoch); stop
         * them now, as mongod kills user operations on step-down. */
        cairn_op_kill_all(is_writer, NULL, MONGO_InterruptedDueToReplStateChange);
    }
}

/* ---- Reaper ---------------------------------------------------------------- */

static void noop_if_behind(struct txn_mgr *m)
{
    struct cairn_error err;
    cairn_ts ts;

    if (repl_write_epoch(m->repl) == 0 || txn_cluster_time(m) <= eng_visible_ts(m->eng)) {
        return;
    }
    if (txn_noop_write(m, &ts, &err) != 0 && err.code != CAIRN_ENOTLEADER) {
        cairn_log(CAIRN_LOG_WARN, "txn", "periodic no-op write: %s", err.msg);
    }
}

static void *reaper_main(void *arg)
{
    struct txn_mgr *m = arg;
    int64_t last_ttl_ms = cairn_wall_ms();

    pthread_mutex_lock(&m->reaper_mu);
    while (!m->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += REAPER_INTERVAL_MS / 1000;
        pthread_cond_timedwait(&m->reaper_cv, &m->reaper_mu, &ts);
        if (m->stopping) {
            break;
        }
        pthread_mutex_unlock(&m->reaper_mu);
        txn_sessions_reap(m, cairn_wall_ms());
        noop_if_behind(m);
        /* The period as set now: a shorter one takes effect at once. */
        if (cairn_wall_ms() >= last_ttl_ms + atomic_load(&m->ttl_sleep_secs) * 1000) {
            txn_ttl_pass(m);
            last_ttl_ms = cairn_wall_ms();
        }
        pthread_mutex_lock(&m->reaper_mu);
    }
    pthread_mutex_unlock(&m->reaper_mu);
    return NULL;
}

/* ---- Manager ----------------------------------------------------------------- */

int txn_mgr_open(struct eng *e, struct repl *r, struct txn_mgr **out, struct cairn_error *err)
{
    struct txn_mgr *m = calloc(1, sizeof *m);
    cairn_index idx;
    cairn_ts ts;
    int rv;

    if (m == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    m->eng = e;
    m->repl = r;
    eng_applied(e, &idx, &ts);
    atomic_init(&m->cluster_ts, ts);
    atomic_init(&m->lifetime_secs, TXN_DEFAULT_LIFETIME_SECS);
    atomic_init(&m->max_sessions, TXN_DEFAULT_MAX_SESSIONS);
    atomic_init(&m->ttl_sleep_secs, TXN_DEFAULT_TTL_SLEEP_SECS);
    pthread_mutex_init(&m->commit_mu, NULL);
    pthread_mutex_init(&m->reaper_mu, NULL);
    pthread_cond_init(&m->reaper_cv, NULL);
    pthread_mutex_init(&m->builds_mu, NULL);
    rv = txn_ixcache_init(&m->ixcache);
    if (rv != 0) {
        goto err_after_mutexes;
    }
    rv = txn_locks_init(&m->locks);
    if (rv != 0) {
        goto err_after_ixcache;
    }
    rv = txn_sessions_init(&m->sessions);
    if (rv != 0) {
        goto err_after_locks;
    }
    if (pthread_create(&m->reaper, NULL, reaper_main, m) != 0) {
        rv = CAIRN_ENOMEM;
        goto err_after_sessions;
    }
    m->reaper_started = true;
    if (r != NULL) {
        repl_set_leadership_cb(r, on_leadership, m);
    }
    *out = m;
    return 0;

err_after_sessions:
    txn_sessions_destroy(m);
err_after_locks:
    txn_locks_destroy(&m->locks);
err_after_ixcache:
    txn_ixcache_destroy(&m->ixcache);
err_after_mutexes:
    pthread_mutex_destroy(&m->builds_mu);
    pthread_mutex_destroy(&m->commit_mu);
    pthread_mutex_destroy(&m->reaper_mu);
    pthread_cond_destroy(&m->reaper_cv);
    free(m);
    return cairn_error_setf(err, rv, "txn: cannot start the transaction manager: %s",
                            cairn_strerror(rv));
}

void txn_mgr_close(struct txn_mgr *m)
{
    if (m == NULL) {
        return;
    }
    if (m->repl != NULL) {
        repl_set_leadership_cb(m->repl, NULL, NULL);
    }
    pthread_mutex_lock(&m->reaper_mu);
    m->stopping = true;
    pthread_cond_broadcast(&m->reaper_cv);
    pthread_mutex_unlock(&m->reaper_mu);
    if (m->reaper_started) {
        pthread_join(m->reaper, NULL);
    }
    txn_sessions_destroy(m);
    txn_locks_destroy(&m->locks);
    txn_ixcache_destroy(&m->ixcache);
    free(m->builds);
    pthread_mutex_destroy(&m->builds_mu);
    pthread_mutex_destroy(&m->commit_mu);
    pthread_mutex_destroy(&m->reaper_mu);
    pthread_cond_destroy(&m->reaper_cv);
    free(m);
}

int64_t txn_ttl_sleep_secs(struct txn_mgr *m)
{
    return atomic_load(&m->ttl_sleep_secs);
}

int txn_set_ttl_sleep_secs(struct txn_mgr *m, int64_t secs, struct cairn_error *err)
{
    if (secs < 1) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "ttlMonitorSleepSecs must be at least 1");
    }
    atomic_store(&m->ttl_sleep_secs, secs);
    return 0;
}

int64_t txn_lifetime_limit_secs(struct txn_mgr *m)
{
    return atomic_load(&m->lifetime_secs);
}

int txn_set_lifetime_limit_secs(struct txn_mgr *m, int64_t secs, struct cairn_error *err)
{
    if (secs < 1) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "transactionLifetimeLimitSeconds must be greater than or equal "
                                 "to 1s");
    }
    atomic_store(&m->lifetime_secs, secs);
    return 0;
}

int64_t txn_max_sessions(struct txn_mgr *m)
{
    return atomic_load(&m->max_sessions);
}

int txn_set_max_sessions(struct txn_mgr *m, int64_t n, struct cairn_error *err)
{
    if (n < 1) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "maxSessions must be greater than or equal to 1");
    }
    atomic_store(&m->max_sessions, n);
    return 0;
}

void txn_stats_get(struct txn_mgr *m, struct txn_stats *out)
{
    memset(out, 0, sizeof *out);
    out->current_open = atomic_load_explicit(&m->n_open, memory_order_relaxed);
    out->current_active = atomic_load_explicit(&m->n_active, memory_order_relaxed);
    if (out->current_active > out->current_open) {
        out->current_active = out->current_open;
    }
    out->current_inactive = out->current_open - out->current_active;
    out->total_started = atomic_load_explicit(&m->n_started, memory_order_relaxed);
    out->total_committed = atomic_load_explicit(&m->n_committed, memory_order_relaxed);
    out->total_aborted = atomic_load_explicit(&m->n_aborted, memory_order_relaxed);
    out->retried_commands = atomic_load_explicit(&m->n_retried_cmds, memory_order_relaxed);
    out->retried_statements = atomic_load_explicit(&m->n_retried_stmts, memory_order_relaxed);
    out->keys_examined = atomic_load_explicit(&m->n_keys_examined, memory_order_relaxed);
    out->docs_examined = atomic_load_explicit(&m->n_docs_examined, memory_order_relaxed);
    pthread_mutex_lock(&m->sessions.mu);
    out->sessions = (int64_t)m->sessions.n;
    pthread_mutex_unlock(&m->sessions.mu);
}

cairn_ts txn_history_floor(struct txn_mgr *m)
{
    cairn_index idx;
    cairn_ts applied, window = 0, floor = eng_gc_floor(m->eng);

    eng_applied(m->eng, &idx, &applied);
    if (CAIRN_TS_SECS(applied) > TXN_HISTORY_SECS) {
        window = CAIRN_TS(CAIRN_TS_SECS(applied) - TXN_HISTORY_SECS, 0);
    }
    return window > floor ? window : floor;
}

/* ---- Waiting for a cluster time ----------------------------------------------- */

int txn_wait_cluster_time(struct txn_mgr *m,
                          cairn_ts ts,
                          int level,
                          struct cairn_op *op,
                          struct cairn_error *err)
{
    bool primary = repl_write_epoch(m->repl) != 0;
    int rv;

    if (ts > txn_cluster_time(m)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "readConcern afterClusterTime value must not be greater than "
                                 "the current clusterTime");
    }
    if (primary && eng_visible_ts(m->eng) < ts) {
        /* A commit with a ts <= `ts` may be inside its commit section:
         * once the section is free, every assigned ts is published. */
        pthread_mutex_lock(&m->commit_mu);
        pthread_mutex_unlock(&m->commit_mu);
    }
    if (primary && eng_visible_ts(m->eng) < ts) {
        /* Nothing written reaches `ts`: carry the log past it, as mongod's
         * makeNoopWriteIfNeeded, so that a read reflects (and its
         * operationTime reaches) `ts`, and the apply path wakes majority
         * waiters. */
        cairn_ts noop;
        rv = txn_noop_write(m, &noop, err);
        if (rv != 0) {
            return rv;
        }
    }
    if (level == TXN_READ_LOCAL && primary) {
        return 0; /* local reads on the primary see every published commit */
    }
    return repl_wait_applied(m->repl, ts, op, err);
}

/* ---- Majority waits and linearizable reads -------------------------------------- */

/* One majority wait, shared by the waiting thread and repl's callback
 * (the raft thread): whichever lets go last frees it, so a wait that ends
 * early (maxTimeMS, killOp) leaves the callback something valid to
 * complete. */
struct lin_wait
{
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;
    int status;
};

/* Drops one reference with lw->mu held; unlocks (and frees on the last). */
static void lin_wait_put_locked(struct lin_wait *lw)
{
    bool last = --lw->refs == 0;

    pthread_mutex_unlock(&lw->mu);
    if (last) {
        pthread_cond_destroy(&lw->cv);
        pthread_mutex_destroy(&lw->mu);
        free(lw);
    }
}

static void lin_wait_cb(void *arg, int status)
{
    struct lin_wait *lw = arg;

    pthread_mutex_lock(&lw->mu);
    lw->done = true;
    lw->status = status;
    pthread_cond_broadcast(&lw->cv);
    lin_wait_put_locked(lw);
}

static int lin_not_primary(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                             "No longer primary when waiting for linearizable read concern");
}

static int lin_deposed(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_InterruptedDueToReplStateChange,
                             "operation was interrupted because of a replication state change "
                             "while waiting for majority commit");
}

int txn_wait_majority(struct txn_mgr *m,
                      cairn_ts ts,
                      struct cairn_op *op,
                      uint64_t until_ns,
                      struct cairn_error *err)
{
    const struct repl_wc majority = {.w = 0, .j = false, .wtimeout_ms = 0};
    struct lin_wait *lw;
    int rv, status;

    lw = calloc(1, sizeof *lw);
    if (lw == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "majority wait: out of memory");
    }
    pthread_mutex_init(&lw->mu, NULL);
    pthread_cond_init(&lw->cv, NULL);
    lw->refs = 2;
    rv = repl_wait(m->repl, ts, &majority, lin_wait_cb, lw, err);
    pthread_mutex_lock(&lw->mu);
    if (rv != 0) {
        lw->refs--; /* the callback never runs */
        lin_wait_put_locked(lw);
        return rv;
    }
    while (!lw->done) {
        if (until_ns != 0 && cairn_mono_ns() >= until_ns) {
            rv = cairn_error_mongo(err, CAIRN_ETIMEOUT, MONGO_WriteConcernFailed,
                                   "waiting for replication timed out");
            break;
        }
        rv = cairn_op_wait(op, &lw->mu, &lw->cv, until_ns, err);
        if (rv != 0) {
            break;
        }
    }
    status = lw->done ? lw->status : -1;
    lin_wait_put_locked(lw);
    if (rv != 0) {
        return rv == CAIRN_ENOTLEADER ? lin_deposed(err) : rv;
    }
    if (status == CAIRN_ESHUTDOWN) {
        return cairn_error_mongo(err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress,
                                 "The server is in quiesce mode and will shut down");
    }
    return status == 0 ? 0 : lin_deposed(err);
}

int txn_confirm_linearizable(struct txn_mgr *m,
                             uint64_t epoch,
                             struct cairn_op *op,
                             uint64_t until_ns,
                             cairn_ts *ts,
                             struct cairn_error *err)
{
    int rv;

    *ts = 0;
    if (epoch == 0 || repl_write_epoch(m->repl) != epoch) {
        return lin_not_primary(err);
    }
    rv = txn_noop_write(m, ts, err);
    if (rv == CAIRN_ENOTLEADER) {
        return lin_not_primary(err);
    }
    if (rv == 0) {
        rv = txn_wait_majority(m, *ts, op, until_ns, err);
    }
    if (rv != 0 && err->mongo_code == MONGO_WriteConcernFailed) {
        return cairn_error_mongo(err, CAIRN_ETIMEOUT, MONGO_LinearizableReadConcernError,
                                 "Failed to confirm that read was linearizable.");
    }
    if (rv != 0) {
        return rv;
    }
    /* Applied with the epoch unchanged: the no-op committed in the
     * leadership the read ran in. A changed epoch proves nothing, even
     * with the ts applied (another leader's entries may pass it). */
    if (repl_write_epoch(m->repl) != epoch) {
        return lin_deposed(err);
    }
    return 0;
}
