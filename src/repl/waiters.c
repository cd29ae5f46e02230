/*
 * waiters.c: write-concern waiters. One doubly linked list per progress
 * level (applied, durable, handed), each sorted by ts, so that releasing
 * the satisfied ones pops from the head and inserting (ts usually grows)
 * appends at the tail. Also the waits themselves: repl_wait (handing a
 * waiter to the raft thread, or answering at once), the wtimeout timer and
 * the release of waiters as progress is made (repl_on_applied). Owned by
 * the raft thread; callbacks run with no lock held and the waiter already
 * unlinked and freed.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/op.h"
#include "repl/repl_int.h"

#define WTIMEOUT_TICK_MS 5

void repl_waitq_init(struct repl_waitq *q)
{
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        q->head[k] = NULL;
        q->tail[k] = NULL;
    }
    q->n = 0;
    q->n_deadline = 0;
}

void repl_waitq_insert(struct repl_waitq *q, struct repl_waiter *w)
{
    int k = w->kind;
    struct repl_waiter *after = q->tail[k];

    /* Scan back from the tail to the last waiter with ts <= w->ts. */
    while (after != NULL && after->ts > w->ts) {
        after = after->prev;
    }
    w->prev = after;
    w->next = after != NULL ? after->next : q->head[k];
    if (w->next != NULL) {
        w->next->prev = w;
    } else {
        q->tail[k] = w;
    }
    if (after != NULL) {
        after->next = w;
    } else {
        q->head[k] = w;
    }
    q->n++;
    if (w->deadline_ns != 0) {
        q->n_deadline++;
    }
}

static void unlink_waiter(struct repl_waitq *q, struct repl_waiter *w)
{
    int k = w->kind;
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        q->head[k] = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    } else {
        q->tail[k] = w->prev;
    }
    q->n--;
    if (w->deadline_ns != 0) {
        q->n_deadline--;
    }
}

static void finish(struct repl_waitq *q, struct repl_waiter *w, int status)
{
    repl_wait_cb cb = w->cb;
    void *arg = w->arg;
    unlink_waiter(q, w);
    free(w);
    cb(arg, status);
}

void repl_waitq_release(struct repl_waitq *q, int kind, cairn_ts level)
{
    while (q->head[kind] != NULL && q->head[kind]->ts <= level) {
        finish(q, q->head[kind], 0);
    }
}

void repl_waitq_fail_upto(struct repl_waitq *q, cairn_ts upto, int status)
{
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        while (q->head[k] != NULL && q->head[k]->ts <= upto) {
            finish(q, q->head[k], status);
        }
    }
}

void repl_waitq_expire(struct repl_waitq *q, uint64_t now_ns)
{
    if (q->n_deadline == 0) {
        return;
    }
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        struct repl_waiter *w = q->head[k];
        while (w != NULL) {
            struct repl_waiter *next = w->next;
            if (w->deadline_ns != 0 && w->deadline_ns <= now_ns) {
                finish(q, w, CAIRN_ETIMEOUT);
            }
            w = next;
        }
    }
}

/* ---- Waits (raft thread unless said otherwise) ---------------------------- */

void repl_release_all(struct repl *r)
{
    repl_waitq_release(&r->waitq, REPL_WK_APPLIED, r->applied_ts);
    repl_waitq_release(&r->waitq, REPL_WK_DURABLE, r->durable_ts);
    repl_waitq_release(&r->waitq, REPL_WK_HANDED, r->handed_ts);
    for (int n = 2; n <= REPL_MAX_MEMBERS; n++) {
        repl_waitq_release(&r->waitq, REPL_WK_W2 + n - 2, r->held_ts[n]);
    }
}

/* The newest ts whose entry has an index <= `index`: what the in-flight
 * proposals and the applied watermark say. */
static cairn_ts ts_at_index(struct repl *r, raft_index index)
{
    cairn_ts ts = index >= r->applied_index ? r->applied_ts : 0;

    for (struct repl_prop *p = r->inflight_head; p != NULL && p->index <= index; p = p->next) {
        ts = ts_max(ts, p->last_ts);
    }
    return ts;
}

void repl_update_held(struct repl *r)
{
    const struct raft_configuration *c = &r->raft.configuration;
    raft_index idx[REPL_MAX_MEMBERS];
    size_t n = 0;
    int voters = 0;
    bool any = false;

    if (!r->leader || r->closing || r->waitq.n == 0) {
        return;
    }
    for (unsigned i = 0; i < c->n && n < REPL_MAX_MEMBERS; i++) {
        raft_index m;
        if (c->servers[i].role == RAFT_SPARE) {
            continue;
        }
        if (c->servers[i].role == RAFT_VOTER) {
            voters++;
        }
        /* Durable acknowledgements; the leader's own is its last_stored. */
        if (raft_match_index(&r->raft, c->servers[i].id, &m) == 0) {
            idx[n++] = m;
        }
    }
    /* Sort descending (at most 7). */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && idx[j] > idx[j - 1]; j--) {
            raft_index t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    }
    for (size_t k = 2; k <= REPL_MAX_MEMBERS; k++) {
        cairn_ts ts = k <= n ? ts_at_index(r, idx[k - 1]) : 0;
        /* Committed = durable on a majority of the voters. */
        if ((int)k <= voters / 2 + 1) {
            ts = ts_max(ts, r->applied_ts);
        }
        if (ts > r->held_ts[k]) {
            r->held_ts[k] = ts;
            any = true;
        }
    }
    if (any) {
        for (int k = 2; k <= REPL_MAX_MEMBERS; k++) {
            repl_waitq_release(&r->waitq, REPL_WK_W2 + k - 2, r->held_ts[k]);
        }
    }
}

static void wc_timer_cb(uv_timer_t *t)
{
    struct repl *r = t->data;
    repl_waitq_expire(&r->waitq, cairn_mono_ns());
    if (r->waitq.n_deadline == 0 && r->wc_timer_on) {
        uv_timer_stop(&r->wc_timer);
        r->wc_timer_on = false;
    }
}

void repl_wc_timer_update(struct repl *r)
{
    if (r->closing) {
        return;
    }
    if (r->waitq.n_deadline > 0 && !r->wc_timer_on) {
        uv_timer_start(&r->wc_timer, wc_timer_cb, WTIMEOUT_TICK_MS, WTIMEOUT_TICK_MS);
        r->wc_timer_on = true;
    } else if (r->waitq.n_deadline == 0 && r->wc_timer_on) {
        uv_timer_stop(&r->wc_timer);
        r->wc_timer_on = false;
    }
}

static cairn_ts level_of(struct repl *r, int kind)
{
    switch (kind) {
        case REPL_WK_APPLIED:
            return r->applied_ts;
        case REPL_WK_DURABLE:
            return r->durable_ts;
        case REPL_WK_HANDED:
            return r->handed_ts;
        default:
            return r->held_ts[kind - REPL_WK_W2 + 2];
    }
}

void repl_add_waiter(struct repl *r, struct repl_waiter *w)
{
    int status = -1;

    if (w->ts <= level_of(r, w->kind)) {
        status = 0;
    } else if (r->closing) {
        status = CAIRN_ESHUTDOWN;
    } else if (w->ts <= r->lost_ts || !atomic_load(&r->writable)) {
        /* Its commit was dropped, or its outcome is unknown since a
         * leadership change, or it was never proposed here. */
        status = CAIRN_ENOTLEADER;
    }
    if (status >= 0) {
        repl_wait_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(arg, status);
        return;
    }
    repl_waitq_insert(&r->waitq, w);
    repl_wc_timer_update(r);
}

void repl_on_applied(struct repl *r, cairn_index index, cairn_ts ts)
{
    r->applied_index = index;
    r->applied_ts = ts_max(r->applied_ts, ts);
    /* On the leader, applied means committed, which counts its own log
     * only once stored (raft 0.22 uses its last_stored for itself). */
    r->durable_ts = ts_max(r->durable_ts, r->applied_ts);
    r->handed_ts = ts_max(r->handed_ts, r->applied_ts);
    atomic_store(&r->pub_applied, r->applied_ts);
    atomic_store(&r->pub_durable, r->durable_ts);
    atomic_store(&r->pub_handed, r->handed_ts);
    repl_release_all(r);
    if (atomic_load(&r->n_applied_waiters) > 0) {
        pthread_mutex_lock(&r->amu);
        pthread_cond_broadcast(&r->acv);
        pthread_mutex_unlock(&r->amu);
    }
}

cairn_ts repl_applied_ts(struct repl *r)
{
    return atomic_load(&r->pub_applied);
}

int repl_wait_applied(struct repl *r, cairn_ts ts, struct cairn_op *op, struct cairn_error *err)
{
    int rv = 0;

    if (atomic_load(&r->pub_applied) >= ts) {
        return 0;
    }
    pthread_mutex_lock(&r->amu);
    atomic_fetch_add(&r->n_applied_waiters, 1);
    /* The applier broadcasts under amu after publishing pub_applied, and
     * this loop reads pub_applied under amu: no wake-up is lost. */
    while (atomic_load(&r->pub_applied) < ts) {
        if (atomic_load(&r->applied_stopping)) {
            rv = cairn_error_mongo(err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress,
                                   "The server is in quiesce mode and will shut down");
            break;
        }
        rv = cairn_op_wait(op, &r->amu, &r->acv, 0, err);
        if (rv != 0) {
            break;
        }
    }
    atomic_fetch_sub(&r->n_applied_waiters, 1);
    pthread_mutex_unlock(&r->amu);
    return rv;
}

int repl_wait(struct repl *r,
              cairn_ts ts,
              const struct repl_wc *wc,
              repl_wait_cb cb,
              void *arg,
              struct cairn_error *err)
{
    struct repl_waiter *w;
    int kind;
    cairn_ts level;

    if (wc == NULL || cb == NULL || wc->w < 0 || wc->wtimeout_ms < 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "invalid write concern");
    }
    if (wc->w > 1) {
        size_t n;
        pthread_mutex_lock(&r->smu);
        n = r->st.n_members;
        pthread_mutex_unlock(&r->smu);
        if ((size_t)wc->w > n) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_UnsatisfiableWriteConcern,
                                     "Not enough data-bearing nodes (w: %d, members: %zu)", wc->w,
                                     n);
        }
    }
    if (ts == 0) {
        cb(arg, 0);
        return 0;
    }
    if (wc->w == 0) {
        kind = REPL_WK_APPLIED;
        level = atomic_load(&r->pub_applied);
    } else if (wc->w > 1) {
        /* Held durably by w members (raft acknowledges only what a
         * member stored, so j changes nothing); decided on the raft
         * thread from the match indexes. */
        kind = REPL_WK_W2 + wc->w - 2;
        level = 0;
    } else if (wc->j) {
        kind = REPL_WK_DURABLE;
        level = atomic_load(&r->pub_durable);
    } else {
        /* w: 1, j: false is acknowledged once the commit is queued for the
         * raft thread (DESIGN.md write path, step 3): it is already in the
         * overlay, visible to local reads, and losing it now is the rollback
         * MongoDB allows for w: 1. Waiting for raft_apply would add a thread
         * hop and, on some filesystems, the segment write's submission. */
        kind = REPL_WK_HANDED;
        level = atomic_load(&r->pub_queued);
        /* Not for a commit already known lost (dropped, or its raft_apply
         * failed) once writable again in a later epoch: pub_lost is raised
         * before a later epoch begins, so it is read after `writable`. */
        if (ts <= level && atomic_load(&r->writable) && ts > atomic_load(&r->pub_lost)) {
            cb(arg, 0);
            return 0;
        }
        level = atomic_load(&r->pub_handed);
    }
    if (ts <= level) {
        cb(arg, 0);
        return 0;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "wait: out of memory");
    }
    w->ts = ts;
    w->kind = kind;
    w->deadline_ns =
        wc->wtimeout_ms > 0 ? cairn_mono_ns() + (uint64_t)wc->wtimeout_ms * 1000000u : 0;
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_lock(&r->qmu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->qmu);
        free(w);
        cb(arg, CAIRN_ESHUTDOWN);
        return 0;
    }
    w->next = r->w_in;
    r->w_in = w;
    pthread_mutex_unlock(&r->qmu);
    uv_async_send(&r->async);
    return 0;
}
