/*
 * repl.c: the replication object (see repl.h): the raft thread and its
 * libuv loop, raft start-up (bootstrap once, then start), the proposal
 * queue with group commit and flow control, leadership tracking by polling
 * (raft 0.15 has no state callback), durability by polling last_stored,
 * write-concern waiters, the status copy, initiation and shutdown.
 *
 * Threads: every raft call and every handle lives on the raft thread. Other
 * threads touch only the queue (qmu), the status copy (smu), the published
 * atomics and uv_async_send.
 *
 * Lock order: smu before qmu (never held together otherwise); no lock is
 * held while a waiter callback runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

/* Flow control (trap T9): stop proposing while more entries than this are
 * appended but not committed. */
#define MAX_UNCOMMITTED 512
/* Group commit: stop adding commits to one entry past this many bytes. */
#define GROUP_MAX_BYTES ((size_t)2 << 20)
/* Largest single encoded commit (raft_uv segments are 32 MiB below). */
#define MAX_COMMIT_BYTES ((size_t)24 << 20)
#define SEGMENT_SIZE ((size_t)32 << 20)
#define ELECTION_TIMEOUT_MS 1000
#define HEARTBEAT_TIMEOUT_MS 100
/* Descriptor snapshots (see fsm.c) bound raft's in-memory log. */
#define SNAPSHOT_THRESHOLD 4096
#define SNAPSHOT_TRAILING 1024
#define POLL_INTERVAL_MS 10
/* Backpressure: repl_propose waits while this much is queued for the raft
 * thread (w:1 writers are acknowledged when queued and would otherwise
 * grow the queue without bound while the disk stalls). */
#define MAX_QUEUED_COMMITS 16384
#define MAX_QUEUED_BYTES ((size_t)64 << 20)
#define WTIMEOUT_TICK_MS 5

static void poll_state(struct repl *r);
static void drive_proposals(struct repl *r);

static cairn_ts ts_max(cairn_ts a, cairn_ts b)
{
    return a > b ? a : b;
}

/* ---- Status ------------------------------------------------------------ */

/* Copies the raft thread's view into the status (smu). Raft thread. */
static void publish_status(struct repl *r)
{
    struct repl_status *st = &r->st;
    bool writable = atomic_load(&r->writable);
    int state, primary = -1;
    raft_id leader_id = 0;
    const char *leader_addr = NULL;

    if (r->raft_started && !r->closing) {
        raft_leader(&r->raft, &leader_id, &leader_addr);
    }
    if (writable) {
        primary = r->self;
    } else if (leader_id != 0 && leader_id != r->raft.id) {
        for (size_t i = 0; i < r->cfg.n; i++) {
            if ((raft_id)r->cfg.m[i].id + 1 == leader_id) {
                primary = (int)i;
            }
        }
    }
    if (r->cfg.doc == NULL) {
        state = REPL_STATE_STARTUP;
    } else if (!r->raft_started) {
        state = REPL_STATE_STARTUP2;
    } else if (writable) {
        state = REPL_STATE_PRIMARY;
    } else if (leader_id != 0) {
        state = REPL_STATE_SECONDARY;
    } else {
        state = REPL_STATE_RECOVERING;
    }
    pthread_mutex_lock(&r->smu);
    st->state = state;
    st->writable = writable;
    st->primary = primary;
    if (r->raft_started) {
        st->term = r->raft.current_term;
        st->commit_index = r->raft.commit_index;
    }
    st->applied_ts = r->applied_ts;
    st->applied_index = r->applied_index;
    st->applied_wall_ms = (int64_t)CAIRN_TS_SECS(r->applied_ts) * 1000;
    st->last_ts = ts_max(st->last_ts, ts_max(r->handed_ts, r->applied_ts));
    pthread_mutex_unlock(&r->smu);
}

/* Installs r->cfg into the status copy. Raft thread. */
static void publish_config(struct repl *r)
{
    struct repl_status *st = &r->st;
    pthread_mutex_lock(&r->smu);
    repl_cfg_free(&r->scfg);
    if (repl_cfg_copy(&r->scfg, &r->cfg) != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "out of memory copying the config");
    }
    st->initiated = r->cfg.doc != NULL;
    snprintf(st->set_name, sizeof st->set_name, "%s", r->cfg.set_name);
    st->config_version = r->cfg.version;
    st->n_members = r->cfg.n;
    for (size_t i = 0; i < r->cfg.n; i++) {
        st->members[i].id = r->cfg.m[i].id;
        snprintf(st->members[i].host, sizeof st->members[i].host, "%s", r->cfg.m[i].host);
        st->members[i].votes = r->cfg.m[i].votes;
        st->members[i].priority = r->cfg.m[i].priority;
    }
    st->self = r->self;
    pthread_mutex_unlock(&r->smu);
}

void repl_status_get(struct repl *r, struct repl_status *out)
{
    cairn_index idx;
    cairn_ts ts, q_last;

    pthread_mutex_lock(&r->smu);
    *out = r->st;
    pthread_mutex_unlock(&r->smu);
    pthread_mutex_lock(&r->qmu);
    q_last = r->q_last_ts;
    pthread_mutex_unlock(&r->qmu);
    eng_applied(r->eng, &idx, &ts);
    out->applied_index = idx;
    out->applied_ts = ts;
    out->applied_wall_ms = (int64_t)CAIRN_TS_SECS(ts) * 1000;
    out->last_ts = ts_max(out->last_ts, ts_max(q_last, ts));
    out->last_wall_ms = (int64_t)CAIRN_TS_SECS(out->last_ts) * 1000;
    out->writable = atomic_load(&r->writable);
    if (!out->writable && out->state == REPL_STATE_PRIMARY) {
        out->state = REPL_STATE_SECONDARY;
    }
}

void repl_counters_get(struct repl *r, struct repl_counters *out)
{
    out->entries_proposed = atomic_load(&r->n_entries_proposed);
    out->commits_proposed = atomic_load(&r->n_commits_proposed);
    out->entries_applied = atomic_load(&r->n_entries_applied);
    out->entries_skipped = atomic_load(&r->n_entries_skipped);
}

bool repl_is_writable(struct repl *r)
{
    return atomic_load(&r->writable);
}

int repl_config_append(struct repl *r, bson_t *out, const char *key, struct cairn_error *err)
{
    int rc;
    pthread_mutex_lock(&r->smu);
    if (r->scfg.doc == NULL) {
        pthread_mutex_unlock(&r->smu);
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NotYetInitialized,
                                 "no replset config has been received");
    }
    rc = repl_cfg_append(&r->scfg, r->st.term, out, key);
    pthread_mutex_unlock(&r->smu);
    if (rc != 0) {
        return cairn_error_setf(err, rc, "replSetGetConfig: %s", cairn_strerror(rc));
    }
    return 0;
}

/* ---- Waiters (raft thread) --------------------------------------------- */

static void release_all(struct repl *r)
{
    repl_waitq_release(&r->waitq, REPL_WK_APPLIED, r->applied_ts);
    repl_waitq_release(&r->waitq, REPL_WK_DURABLE, r->durable_ts);
    repl_waitq_release(&r->waitq, REPL_WK_HANDED, r->handed_ts);
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

static void wc_timer_update(struct repl *r)
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
        default:
            return r->handed_ts;
    }
}

static void add_waiter(struct repl *r, struct repl_waiter *w)
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
    wc_timer_update(r);
}

/* ---- Progress ---------------------------------------------------------- */

void repl_on_applied(struct repl *r, cairn_index index, cairn_ts ts)
{
    r->applied_index = index;
    r->applied_ts = ts_max(r->applied_ts, ts);
    /* Applied means committed, which in 0.15 means stored here too. */
    r->durable_ts = ts_max(r->durable_ts, r->applied_ts);
    r->handed_ts = ts_max(r->handed_ts, r->applied_ts);
    atomic_store(&r->pub_applied, r->applied_ts);
    atomic_store(&r->pub_durable, r->durable_ts);
    atomic_store(&r->pub_handed, r->handed_ts);
    release_all(r);
}

/* Frees the queued commits; they will never be proposed. Returns the newest
 * dropped ts (0 if none). Raft thread. */
static cairn_ts drop_queue(struct repl *r)
{
    struct repl_pcommit *p;
    cairn_ts newest = 0;

    pthread_mutex_lock(&r->qmu);
    p = r->q_head;
    r->q_head = r->q_tail = NULL;
    r->q_len = 0;
    r->q_bytes = 0;
    pthread_cond_broadcast(&r->q_space);
    pthread_mutex_unlock(&r->qmu);
    while (p != NULL) {
        struct repl_pcommit *next = p->next;
        newest = ts_max(newest, p->ts);
        free(p->data);
        free(p);
        p = next;
    }
    return newest;
}

/* Leadership is gone (or its outcome unknown): stop writes at once, hide
 * the overlay, drop what was not proposed and fail every waiter. */
static void lose_leadership(struct repl *r, const char *why)
{
    bool was_writable = atomic_exchange(&r->writable, false);
    cairn_ts dropped;

    r->leader = false;
    r->barrier_done = false;
    eng_overlay_discard(r->eng);
    dropped = drop_queue(r);
    r->lost_ts = ts_max(r->lost_ts, ts_max(dropped, r->handed_ts));
    release_all(r);
    repl_waitq_fail_upto(&r->waitq, CAIRN_TS_MAX, CAIRN_ENOTLEADER);
    wc_timer_update(r);
    if (was_writable) {
        cairn_log(CAIRN_LOG_INFO, "repl", "no longer primary (%s)", why);
    }
    publish_status(r);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
    struct repl *r = req->data;

    r->barrier_inflight = false;
    if (r->closing) {
        return;
    }
    if (status == 0) {
        if (r->leader && raft_state(&r->raft) == RAFT_LEADER &&
            r->raft.current_term == r->leader_term) {
            /* Every earlier entry is applied: applied_ts is the newest ts
             * in the log. */
            r->barrier_done = true;
            r->durable_ts = ts_max(r->durable_ts, r->applied_ts);
            r->handed_ts = ts_max(r->handed_ts, r->applied_ts);
            atomic_store(&r->pub_durable, r->durable_ts);
            atomic_store(&r->pub_handed, r->handed_ts);
            pthread_mutex_lock(&r->smu);
            r->st.election_wall_ms = cairn_wall_ms();
            pthread_mutex_unlock(&r->smu);
            atomic_store(&r->writable, true);
            cairn_log(CAIRN_LOG_INFO, "repl", "primary in term %llu (applied index %llu)",
                      (unsigned long long)r->leader_term, (unsigned long long)r->applied_index);
            publish_status(r);
        }
        return;
    }
    if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER || status == RAFT_SHUTDOWN) {
        if (r->leader) {
            lose_leadership(r, "barrier lost");
        }
        return;
    }
    cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: raft barrier failed: %s (%d)", raft_strerror(status),
              status);
    abort();
}

static void submit_barrier(struct repl *r)
{
    int rv;
    if (r->barrier_inflight || r->barrier_done) {
        return;
    }
    memset(&r->barrier, 0, sizeof r->barrier);
    r->barrier.data = r;
    rv = raft_barrier(&r->raft, &r->barrier, barrier_cb);
    if (rv == 0) {
        r->barrier_inflight = true;
    } else {
        /* Retried on the next poll while still leader. */
        cairn_log(CAIRN_LOG_WARN, "repl", "raft_barrier: %s", raft_strerror(rv));
    }
}

/* ---- Proposals (raft thread) ------------------------------------------- */

static void inflight_unlink(struct repl *r, struct repl_prop *p)
{
    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        r->inflight_head = p->next;
    }
    if (p->next != NULL) {
        p->next->prev = p->prev;
    } else {
        r->inflight_tail = p->prev;
    }
    r->n_inflight--;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    struct repl_prop *p = req->data;
    struct repl *r = p->r;
    cairn_ts last = p->last_ts;

    (void)result;
    inflight_unlink(r, p);
    free(p);
    if (status == 0) {
        /* Applied through the FSM already (repl_on_applied). */
        return;
    }
    if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER || status == RAFT_SHUTDOWN) {
        r->lost_ts = ts_max(r->lost_ts, last);
        if (!r->closing) {
            lose_leadership(r, "entry outcome unknown");
        }
        return;
    }
    /* Trap T6: 0.15 stays leader after a failed disk write and may reuse
     * the index for different content. Restart from disk instead. */
    cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: raft entry %llu failed: %s (%d)",
              (unsigned long long)req->index, raft_strerror(status), status);
    abort();
}

/* Pops up to GROUP_MAX_BYTES of queued commits into one raft buffer.
 * Returns false when the queue is empty. */
static bool pop_group(struct repl *r,
                      struct raft_buffer *buf,
                      cairn_ts *first_ts,
                      cairn_ts *last_ts,
                      size_t *n,
                      int *rc)
{
    struct repl_pcommit *first, *p, *end;
    size_t total = 0;
    uint8_t *dst;

    *rc = 0;
    pthread_mutex_lock(&r->qmu);
    first = r->q_head;
    if (first == NULL) {
        pthread_mutex_unlock(&r->qmu);
        return false;
    }
    end = first;
    total = first->len;
    *n = 1;
    while (end->next != NULL && total + end->next->len <= GROUP_MAX_BYTES) {
        end = end->next;
        total += end->len;
        (*n)++;
    }
    r->q_head = end->next;
    if (r->q_head == NULL) {
        r->q_tail = NULL;
    }
    r->q_len -= *n;
    r->q_bytes -= total;
    pthread_cond_broadcast(&r->q_space);
    end->next = NULL;
    pthread_mutex_unlock(&r->qmu);

    {
        /* Zero-pad to a multiple of 8: raft 0.15 requires it (see
         * REPL_OPLOG_ALIGN). */
        size_t padded = (total + REPL_OPLOG_ALIGN - 1) & ~(size_t)(REPL_OPLOG_ALIGN - 1);
        dst = raft_malloc(padded);
        if (dst != NULL) {
            memset(dst + total, 0, padded - total);
        }
        total = padded;
    }
    *first_ts = first->ts;
    *last_ts = end->ts;
    buf->base = dst;
    buf->len = total;
    for (p = first; p != NULL;) {
        struct repl_pcommit *next = p->next;
        if (dst != NULL) {
            memcpy(dst, p->data, p->len);
            dst += p->len;
        }
        free(p->data);
        free(p);
        p = next;
    }
    if (buf->base == NULL) {
        *rc = RAFT_NOMEM;
    }
    return true;
}

static void drive_proposals(struct repl *r)
{
    if (r->closing) {
        return;
    }
    if (!atomic_load(&r->writable)) {
        cairn_ts dropped = drop_queue(r);
        if (dropped != 0) {
            /* Accepted while writable, but leadership ended before they
             * could be proposed. */
            r->lost_ts = ts_max(r->lost_ts, dropped);
            eng_overlay_discard(r->eng);
            repl_waitq_fail_upto(&r->waitq, r->lost_ts, CAIRN_ENOTLEADER);
        }
        return;
    }
    for (;;) {
        struct raft_buffer buf;
        struct repl_prop *p;
        cairn_ts first_ts = 0, last_ts = 0;
        size_t n_commits = 0;
        int rc;

        if (raft_last_index(&r->raft) - r->raft.commit_index > MAX_UNCOMMITTED) {
            return; /* flow control; poll_state re-drives */
        }
        if (atomic_load(&r->hold)) {
            return; /* tests: repl_debug_hold_proposals */
        }
        if (!pop_group(r, &buf, &first_ts, &last_ts, &n_commits, &rc)) {
            return;
        }
        p = rc == 0 ? calloc(1, sizeof *p) : NULL;
        if (p != NULL) {
            p->r = r;
            p->last_ts = last_ts;
            p->req.data = p;
            rc = raft_apply(&r->raft, &p->req, &buf, 1, apply_cb);
        } else {
            rc = RAFT_NOMEM;
        }
        if (rc != 0) {
            /* We still own the buffer (logDiscard does not free it). */
            raft_free(buf.base);
            free(p);
            r->lost_ts = ts_max(r->lost_ts, last_ts);
            if (rc == RAFT_NOTLEADER) {
                lose_leadership(r, "raft_apply: not leader");
            } else {
                /* This group is lost, and so are the queued commits after
                 * it (they were resolved on top of it). Earlier entries
                 * are still in flight: their versions stay visible, since
                 * the next writer resolves against them. */
                cairn_log(CAIRN_LOG_ERROR, "repl", "raft_apply: %s", raft_strerror(rc));
                r->lost_ts = ts_max(r->lost_ts, drop_queue(r));
                eng_overlay_discard_from(r->eng, first_ts);
                repl_waitq_fail_range(&r->waitq, first_ts, r->lost_ts, CAIRN_ENOTLEADER);
            }
            return;
        }
        p->index = p->req.index;
        atomic_fetch_add(&r->n_entries_proposed, 1);
        atomic_fetch_add(&r->n_commits_proposed, n_commits);
        p->prev = r->inflight_tail;
        if (r->inflight_tail != NULL) {
            r->inflight_tail->next = p;
        } else {
            r->inflight_head = p;
        }
        r->inflight_tail = p;
        r->n_inflight++;
        r->handed_ts = ts_max(r->handed_ts, last_ts);
        atomic_store(&r->pub_handed, r->handed_ts);
        repl_waitq_release(&r->waitq, REPL_WK_HANDED, r->handed_ts);
    }
}

/* ---- Leadership and durability polling --------------------------------- */

static void poll_durability(struct repl *r)
{
    raft_index stored = r->raft.last_stored;
    cairn_ts durable = r->durable_ts;

    if (stored == r->seen_stored) {
        return;
    }
    r->seen_stored = stored;
    for (struct repl_prop *p = r->inflight_head; p != NULL && p->index <= stored; p = p->next) {
        durable = ts_max(durable, p->last_ts);
    }
    if (durable != r->durable_ts) {
        r->durable_ts = durable;
        atomic_store(&r->pub_durable, durable);
        repl_waitq_release(&r->waitq, REPL_WK_DURABLE, durable);
    }
}

static void poll_state(struct repl *r)
{
    int state;
    bool queued;

    if (!r->raft_started || r->closing) {
        return;
    }
    state = raft_state(&r->raft);
    if (state == RAFT_UNAVAILABLE) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: raft became unavailable: %s",
                  raft_errmsg(&r->raft));
        abort();
    }
    if (r->leader && (state != RAFT_LEADER || r->raft.current_term != r->leader_term)) {
        lose_leadership(r, state != RAFT_LEADER ? "raft state changed" : "term changed");
    }
    if (state == RAFT_LEADER && !r->leader) {
        r->leader = true;
        r->leader_term = r->raft.current_term;
        r->barrier_done = false;
        cairn_log(CAIRN_LOG_INFO, "repl", "elected leader in term %llu; committing a barrier",
                  (unsigned long long)r->leader_term);
    }
    if (r->leader && !r->barrier_done) {
        submit_barrier(r);
    }
    poll_durability(r);
    pthread_mutex_lock(&r->qmu);
    queued = r->q_head != NULL;
    pthread_mutex_unlock(&r->qmu);
    if (queued) {
        drive_proposals(r);
    }
    publish_status(r);
}

static void check_cb(uv_check_t *h)
{
    poll_state(h->data);
}

static void poll_timer_cb(uv_timer_t *t)
{
    poll_state(t->data);
}

/* ---- Start and stop (raft thread) -------------------------------------- */

static void ctl_done(struct repl *r, struct repl_ctl *c, int rc)
{
    pthread_mutex_lock(&r->qmu);
    c->rc = rc;
    c->done = true;
    pthread_cond_broadcast(&r->qcv);
    pthread_mutex_unlock(&r->qmu);
}

static void handle_close_cb(uv_handle_t *h)
{
    (void)h;
}

/* Releases raft_uv memory and closes our handles: the loop then ends. */
static void finish_close(struct repl *r)
{
    if (r->uv_inited) {
        raft_uv_close(&r->io);
        raft_uv_tcp_close(&r->transport);
        r->uv_inited = false;
    }
    uv_close((uv_handle_t *)&r->async, handle_close_cb);
    uv_close((uv_handle_t *)&r->check, handle_close_cb);
    uv_close((uv_handle_t *)&r->poll_timer, handle_close_cb);
    uv_close((uv_handle_t *)&r->wc_timer, handle_close_cb);
}

static void raft_closed_cb(struct raft *raft)
{
    struct repl *r = raft->data;
    r->raft_inited = false;
    r->raft_started = false;
    if (r->start_ctl != NULL) {
        /* raft was closed because START failed. */
        struct repl_ctl *c = r->start_ctl;
        r->start_ctl = NULL;
        if (r->uv_inited) {
            raft_uv_close(&r->io);
            raft_uv_tcp_close(&r->transport);
            r->uv_inited = false;
        }
        ctl_done(r, c, c->rc);
    }
    if (r->closing) {
        finish_close(r);
    }
}

static bool raft_closing(struct repl *r)
{
    return r->raft_inited && r->raft.close_cb != NULL;
}

static int start_fail(struct repl *r, struct repl_ctl *c, int rv, const char *step)
{
    const char *msg = r->raft_inited ? raft_errmsg(&r->raft) : "";
    if (msg[0] == '\0') {
        msg = r->io.errmsg;
    }
    if (msg[0] == '\0' && strcmp(step, "start") == 0) {
        msg = "could not load the log or listen: is the raft port in use?";
    }
    cairn_error_setf(&c->err, CAIRN_EIO, "raft %s (dir %s, address %s): %s%s%s%s", step,
                     r->raft_dir, r->bind_addr[0] ? r->bind_addr : r->raft_addr, raft_strerror(rv),
                     msg[0] ? " (" : "", msg, msg[0] ? ")" : "");
    c->rc = CAIRN_EIO;
    if (r->raft_inited) {
        /* Close asynchronously; the control completes in raft_closed_cb. */
        r->start_ctl = c;
        raft_close(&r->raft, raft_closed_cb);
        return -1;
    }
    if (r->uv_inited) {
        raft_uv_close(&r->io);
        raft_uv_tcp_close(&r->transport);
        r->uv_inited = false;
    }
    return CAIRN_EIO;
}

/* Starts raft with c->cfg. Returns a CAIRN_E* code to complete the control
 * with, or -1 when it completes later. */
static int handle_start(struct repl *r, struct repl_ctl *c)
{
    int self, rv;
    struct repl_cfg_member *me;

    if (r->raft_inited || r->closing) {
        cairn_error_setf(&c->err, CAIRN_ESTATE, "replication is already started or closing");
        return CAIRN_ESTATE;
    }
    self = repl_cfg_find(&c->cfg, r->me);
    if (self < 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidReplicaSetConfig,
                          "this member (%s) is not in the replica set config", r->me);
        return CAIRN_EINVAL;
    }
    me = &c->cfg.m[self];
    snprintf(r->raft_addr, sizeof r->raft_addr, "%s", me->raft_addr);

    rv = raft_uv_tcp_init(&r->transport, &r->loop);
    if (rv != 0) {
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "raft transport: %s", raft_strerror(rv));
        return CAIRN_ENOMEM;
    }
    if (r->bind_addr[0] != '\0') {
        rv = raft_uv_tcp_set_bind_address(&r->transport, r->bind_addr);
        if (rv != 0) {
            raft_uv_tcp_close(&r->transport);
            cairn_error_setf(&c->err, CAIRN_EINVAL, "raft bind address %s: %s", r->bind_addr,
                             raft_strerror(rv));
            return CAIRN_EINVAL;
        }
    }
    rv = raft_uv_init(&r->io, &r->loop, r->raft_dir, &r->transport);
    if (rv != 0) {
        raft_uv_tcp_close(&r->transport);
        cairn_error_setf(&c->err, CAIRN_EIO, "raft io in %s: %s", r->raft_dir, raft_strerror(rv));
        return CAIRN_EIO;
    }
    r->uv_inited = true;
    raft_uv_set_auto_recovery(&r->io, false);
    raft_uv_set_segment_size(&r->io, SEGMENT_SIZE);
    repl_fsm_init(r);
    rv = raft_init(&r->raft, &r->io, &r->fsm, (raft_id)me->id + 1, r->raft_addr);
    if (rv != 0) {
        cairn_error_setf(&c->err, CAIRN_EIO, "raft init in %s: %s (%s)", r->raft_dir,
                         raft_strerror(rv), r->io.errmsg);
        raft_uv_close(&r->io);
        raft_uv_tcp_close(&r->transport);
        r->uv_inited = false;
        return CAIRN_EIO;
    }
    r->raft_inited = true;
    r->raft.data = r;
    /* Tunables: raft_init reset them, so only now (0.15). */
    raft_set_election_timeout(&r->raft, ELECTION_TIMEOUT_MS);
    raft_set_heartbeat_timeout(&r->raft, HEARTBEAT_TIMEOUT_MS);
    raft_set_pre_vote(&r->raft, true);
    raft_set_snapshot_threshold(&r->raft, SNAPSHOT_THRESHOLD);
    raft_set_snapshot_trailing(&r->raft, SNAPSHOT_TRAILING);
    if (c->bootstrap) {
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        rv = 0;
        for (size_t i = 0; i < c->cfg.n && rv == 0; i++) {
            rv = raft_configuration_add(&conf, (raft_id)c->cfg.m[i].id + 1, c->cfg.m[i].raft_addr,
                                        c->cfg.m[i].votes > 0 ? RAFT_VOTER : RAFT_STANDBY);
        }
        if (rv == 0) {
            rv = raft_bootstrap(&r->raft, &conf);
        }
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
            return start_fail(r, c, rv, "bootstrap");
        }
    }
    r->in_start = true;
    rv = raft_start(&r->raft);
    r->in_start = false;
    if (rv != 0) {
        return start_fail(r, c, rv, "start");
    }
    r->raft_started = true;
    repl_cfg_free(&r->cfg);
    r->cfg = c->cfg;
    c->cfg.doc = NULL; /* moved */
    r->self = self;
    publish_config(r);
    cairn_log(CAIRN_LOG_INFO, "repl", "raft started: set %s, node %llu at %s, %zu member(s)",
              r->cfg.set_name, (unsigned long long)me->id + 1, r->raft_addr, r->cfg.n);
    poll_state(r);
    return 0;
}

/* raft 0.15 cannot close with more than one append in flight: raft_close
 * cancels them, and the first cancelled append's callback truncates the
 * in-memory log from its index, so the next one releases entries that are
 * gone (log.c refsDecr walks off a NULL slot: a crash at shutdown, fixed
 * upstream after 0.15). So raft_close waits, bounded, until every entry
 * appended so far is stored. */
#define STOP_WAIT_NS (5ull * 1000000000ull)

static bool appends_pending(struct repl *r)
{
    return r->raft_started && r->raft.last_stored < raft_last_index(&r->raft);
}

static void stop_wait_cb(uv_timer_t *t)
{
    struct repl *r = t->data;

    if (appends_pending(r) && cairn_mono_ns() < r->stop_deadline_ns) {
        return;
    }
    if (appends_pending(r)) {
        cairn_log(CAIRN_LOG_WARN, "repl", "closing raft with log writes still in flight");
    }
    uv_timer_stop(&r->poll_timer);
    raft_close(&r->raft, raft_closed_cb);
}

static void begin_stop(struct repl *r)
{
    cairn_ts dropped;

    /* w:1 commits were acknowledged when queued: hand what is queued to
     * raft before stopping, so that the wait for pending appends below
     * makes them durable (flow control may still leave some behind). */
    if (atomic_load(&r->writable)) {
        drive_proposals(r);
    }
    r->closing = true;
    atomic_store(&r->writable, false);
    dropped = drop_queue(r);
    if (dropped != 0) {
        cairn_log(CAIRN_LOG_WARN, "repl",
                  "shutdown: commits up to ts %u:%u were still queued and are dropped",
                  CAIRN_TS_SECS(dropped), CAIRN_TS_INC(dropped));
    }
    r->lost_ts = ts_max(r->lost_ts, dropped);
    release_all(r);
    repl_waitq_fail_upto(&r->waitq, CAIRN_TS_MAX, CAIRN_ESHUTDOWN);
    uv_check_stop(&r->check);
    uv_timer_stop(&r->poll_timer);
    uv_timer_stop(&r->wc_timer);
    r->wc_timer_on = false;
    if (raft_closing(r)) {
        return; /* raft_closed_cb will finish */
    }
    if (r->raft_inited) {
        if (appends_pending(r)) {
            r->stop_deadline_ns = cairn_mono_ns() + STOP_WAIT_NS;
            uv_timer_start(&r->poll_timer, stop_wait_cb, 1, 1);
            return;
        }
        raft_close(&r->raft, raft_closed_cb);
        return;
    }
    finish_close(r);
}

static void async_cb(uv_async_t *h)
{
    struct repl *r = h->data;
    struct repl_waiter *w;
    struct repl_ctl *c;

    pthread_mutex_lock(&r->qmu);
    w = r->w_in;
    r->w_in = NULL;
    c = r->ctl_head;
    r->ctl_head = r->ctl_tail = NULL;
    pthread_mutex_unlock(&r->qmu);

    while (w != NULL) {
        struct repl_waiter *next = w->next;
        w->next = w->prev = NULL;
        add_waiter(r, w);
        w = next;
    }
    while (c != NULL) {
        struct repl_ctl *next = c->next;
        if (c->type == REPL_CTL_START) {
            int rc = handle_start(r, c);
            if (rc >= 0) {
                ctl_done(r, c, rc);
            }
        } else if (!r->closing) {
            begin_stop(r);
        }
        c = next;
    }
    drive_proposals(r);
}

static void *thread_main(void *arg)
{
    struct repl *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Posts a control to the raft thread and waits for it. Not the raft thread. */
static int post_ctl(struct repl *r, struct repl_ctl *c)
{
    pthread_mutex_lock(&r->qmu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->qmu);
        return cairn_error_mongo(&c->err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress,
                                 "shutting down");
    }
    c->next = NULL;
    if (r->ctl_tail != NULL) {
        r->ctl_tail->next = c;
    } else {
        r->ctl_head = c;
    }
    r->ctl_tail = c;
    pthread_mutex_unlock(&r->qmu);
    uv_async_send(&r->async);
    pthread_mutex_lock(&r->qmu);
    while (!c->done) {
        pthread_cond_wait(&r->qcv, &r->qmu);
    }
    pthread_mutex_unlock(&r->qmu);
    return c->rc;
}

/* Resolves the config, then starts raft on the raft thread. Takes cfg. */
static int start_raft(struct repl *r, struct repl_cfg *cfg, struct cairn_error *err)
{
    struct repl_ctl c;
    int rc;

    memset(&c, 0, sizeof c);
    c.type = REPL_CTL_START;
    c.cfg = *cfg;
    cfg->doc = NULL;
    c.bootstrap = true;
    rc = repl_cfg_resolve(&c.cfg, err);
    if (rc == 0) {
        rc = post_ctl(r, &c);
        if (rc != 0 && err != NULL) {
            *err = c.err;
            err->code = rc;
        }
    }
    repl_cfg_free(&c.cfg);
    return rc;
}

/* ---- Public API -------------------------------------------------------- */

int repl_initiate(struct repl *r, const bson_t *config, struct cairn_error *err)
{
    struct repl_cfg cfg;
    int rc;
    bool busy;

    pthread_mutex_lock(&r->smu);
    busy = r->st.initiated || r->initiating;
    if (!busy) {
        r->initiating = true;
    }
    pthread_mutex_unlock(&r->smu);
    if (busy) {
        return cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_AlreadyInitialized,
                                 "already initialized");
    }
    rc = repl_cfg_build(config, r->set_name, r->me, &cfg, err);
    if (rc == 0) {
        rc = eng_meta_put(r->eng, "rsconfig", cfg.doc, cfg.doc_len, err);
        if (rc != 0) {
            cairn_error_wrapf(err, "store replica set config");
            repl_cfg_free(&cfg);
        }
    }
    if (rc == 0) {
        rc = start_raft(r, &cfg, err);
    }
    pthread_mutex_lock(&r->smu);
    r->initiating = false;
    pthread_mutex_unlock(&r->smu);
    if (rc == 0) {
        cairn_log(CAIRN_LOG_INFO, "repl", "replica set %s initiated", r->set_name);
    }
    return rc;
}

static int bind_address(const char *bind_ip,
                        int raft_port,
                        char *out,
                        size_t cap,
                        struct cairn_error *err)
{
    char list[REPL_HOST_MAX + 1];
    char *save = NULL;
    char ip[64] = "";

    out[0] = '\0';
    if (bind_ip == NULL || bind_ip[0] == '\0') {
        return 0; /* raft binds its own address */
    }
    snprintf(list, sizeof list, "%s", bind_ip);
    if (strstr(list, "0.0.0.0") != NULL || strcmp(list, "*") == 0) {
        snprintf(out, cap, "0.0.0.0:%d", raft_port);
        return 0;
    }
    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        if (strchr(tok, ':') != NULL || tok[0] == '\0') {
            continue; /* IPv6: raft 0.15 cannot bind it */
        }
        if (repl_resolve_ipv4(tok, ip, sizeof ip, NULL) == 0) {
            break;
        }
        ip[0] = '\0';
    }
    if (ip[0] == '\0') {
        return cairn_error_setf(err, CAIRN_EINVAL,
                                "bind_ip '%s' has no IPv4 address raft could bind", bind_ip);
    }
    snprintf(out, cap, "%s:%d", ip, raft_port);
    return 0;
}

static void repl_free(struct repl *r)
{
    repl_cfg_free(&r->cfg);
    repl_cfg_free(&r->scfg);
    pthread_mutex_destroy(&r->qmu);
    pthread_mutex_destroy(&r->smu);
    pthread_cond_destroy(&r->qcv);
    pthread_cond_destroy(&r->q_space);
    free(r);
}

int repl_open(const struct repl_options *opts, struct repl **out, struct cairn_error *err)
{
    struct repl *r;
    struct cairn_buf meta = CAIRN_BUF_INIT;
    struct repl_cfg cfg;
    bool have_cfg = false;
    char host[REPL_HOST_MAX + 1];
    int me_port, rc;

    *out = NULL;
    memset(&cfg, 0, sizeof cfg);
    if (opts == NULL || opts->eng == NULL || opts->dbpath == NULL || opts->set_name == NULL ||
        opts->me == NULL) {
        return cairn_error_setf(err, CAIRN_EINVAL, "repl: dbpath, set_name, me and eng are needed");
    }
    if (opts->set_name[0] == '\0' || strlen(opts->set_name) > REPL_SET_NAME_MAX ||
        strpbrk(opts->set_name, "/ ") != NULL) {
        return cairn_error_setf(err, CAIRN_EINVAL, "repl: bad replica set name '%s'",
                                opts->set_name);
    }
    if (repl_hostport_split(opts->me, host, sizeof host, &me_port) != 0 ||
        strlen(opts->me) > REPL_HOST_MAX) {
        return cairn_error_setf(err, CAIRN_EINVAL,
                                "repl: this member's address '%s' is not host:port (port <= %d)",
                                opts->me, 65535 - CAIRN_RAFT_PORT_OFFSET);
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "repl: out of memory");
    }
    r->eng = opts->eng;
    snprintf(r->set_name, sizeof r->set_name, "%s", opts->set_name);
    snprintf(r->me, sizeof r->me, "%s", opts->me);
    snprintf(r->bind_ip, sizeof r->bind_ip, "%s", opts->bind_ip ? opts->bind_ip : "");
    r->port = opts->port;
    r->self = -1;
    r->start_wall_ms = cairn_wall_ms();
    pthread_mutex_init(&r->qmu, NULL);
    pthread_mutex_init(&r->smu, NULL);
    pthread_cond_init(&r->qcv, NULL);
    pthread_cond_init(&r->q_space, NULL);
    repl_waitq_init(&r->waitq);
    r->st.self = -1;
    r->st.primary = -1;
    r->st.state = REPL_STATE_STARTUP;
    r->st.start_wall_ms = r->start_wall_ms;
    snprintf(r->st.set_name, sizeof r->st.set_name, "%s", r->set_name);
    if (opts->port != 0 && opts->port != me_port) {
        cairn_log(CAIRN_LOG_WARN, "repl", "port %d differs from this member's address %s",
                  opts->port, opts->me);
    }
    rc = bind_address(r->bind_ip, me_port + CAIRN_RAFT_PORT_OFFSET, r->bind_addr,
                      sizeof r->bind_addr, err);
    if (rc != 0) {
        repl_free(r);
        return rc;
    }
    if ((size_t)snprintf(r->raft_dir, sizeof r->raft_dir, "%s/raft", opts->dbpath) >=
        sizeof r->raft_dir) {
        repl_free(r);
        return cairn_error_setf(err, CAIRN_EINVAL, "repl: dbpath too long");
    }
    if (mkdir(r->raft_dir, 0755) != 0 && errno != EEXIST) {
        rc = cairn_error_setf(err, CAIRN_EIO, "repl: mkdir %s: %s", r->raft_dir, strerror(errno));
        repl_free(r);
        return rc;
    }
    eng_applied(r->eng, &r->applied_index, &r->applied_ts);
    r->durable_ts = r->handed_ts = r->applied_ts;
    atomic_store(&r->pub_applied, r->applied_ts);
    atomic_store(&r->pub_durable, r->applied_ts);
    atomic_store(&r->pub_handed, r->applied_ts);
    r->st.applied_ts = r->st.last_ts = r->applied_ts;
    r->st.applied_index = r->applied_index;

    rc = eng_meta_get(r->eng, "rsconfig", &meta, err);
    if (rc == 0) {
        rc = repl_cfg_load(meta.data, meta.len, &cfg, err);
        have_cfg = rc == 0;
    } else if (rc == CAIRN_ENOTFOUND) {
        rc = 0;
    }
    cairn_buf_free(&meta);
    if (rc == 0 && have_cfg && strcmp(cfg.set_name, r->set_name) != 0) {
        rc = cairn_error_setf(err, CAIRN_EINVAL,
                              "repl: the stored replica set is '%s' but --replSet says '%s'",
                              cfg.set_name, r->set_name);
    }
    if (rc != 0) {
        repl_cfg_free(&cfg);
        repl_free(r);
        return rc;
    }

    rc = uv_loop_init(&r->loop);
    if (rc != 0) {
        repl_cfg_free(&cfg);
        repl_free(r);
        return cairn_error_setf(err, CAIRN_ENOMEM, "repl: uv loop: %s", uv_strerror(rc));
    }
    r->async.data = r->check.data = r->poll_timer.data = r->wc_timer.data = r;
    uv_async_init(&r->loop, &r->async, async_cb);
    uv_check_init(&r->loop, &r->check);
    uv_check_start(&r->check, check_cb);
    uv_timer_init(&r->loop, &r->poll_timer);
    uv_timer_start(&r->poll_timer, poll_timer_cb, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
    uv_timer_init(&r->loop, &r->wc_timer);
    if (pthread_create(&r->thread, NULL, thread_main, r) != 0) {
        /* Close the handles on this thread (the loop never ran). */
        finish_close(r);
        uv_run(&r->loop, UV_RUN_DEFAULT);
        uv_loop_close(&r->loop);
        repl_cfg_free(&cfg);
        repl_free(r);
        return cairn_error_setf(err, CAIRN_ENOMEM, "repl: cannot start the raft thread");
    }
    r->thread_started = true;

    if (have_cfg) {
        rc = start_raft(r, &cfg, err);
    } else if (opts->initiate) {
        rc = repl_initiate(r, NULL, err);
    } else {
        cairn_log(CAIRN_LOG_INFO, "repl",
                  "replica set %s is not initiated yet: run replSetInitiate", r->set_name);
    }
    repl_cfg_free(&cfg);
    if (rc != 0) {
        repl_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void repl_close(struct repl *r)
{
    struct repl_ctl stop;
    struct repl_waiter *w;
    struct cairn_error err;

    if (r == NULL) {
        return;
    }
    memset(&stop, 0, sizeof stop);
    stop.type = REPL_CTL_STOP;
    pthread_mutex_lock(&r->qmu);
    r->stopping = true;
    pthread_cond_broadcast(&r->q_space);
    if (r->ctl_tail != NULL) {
        r->ctl_tail->next = &stop;
    } else {
        r->ctl_head = &stop;
    }
    r->ctl_tail = &stop;
    pthread_mutex_unlock(&r->qmu);
    if (r->thread_started) {
        uv_async_send(&r->async);
        pthread_join(r->thread, NULL);
    }
    /* The loop has ended: everything below is single-threaded. */
    pthread_mutex_lock(&r->qmu);
    w = r->w_in;
    r->w_in = NULL;
    pthread_mutex_unlock(&r->qmu);
    while (w != NULL) {
        struct repl_waiter *next = w->next;
        repl_wait_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        cb(arg, CAIRN_ESHUTDOWN);
        w = next;
    }
    repl_waitq_fail_upto(&r->waitq, CAIRN_TS_MAX, CAIRN_ESHUTDOWN);
    (void)drop_queue(r);
    while (r->inflight_head != NULL) {
        struct repl_prop *p = r->inflight_head;
        inflight_unlink(r, p);
        free(p);
    }
    if (uv_loop_close(&r->loop) != 0) {
        cairn_log(CAIRN_LOG_WARN, "repl", "uv loop closed with active handles");
    }
    if (eng_flush(r->eng, &err) != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "flush at shutdown: %s", err.msg);
    }
    repl_free(r);
}

int repl_propose(struct repl *r, const struct eng_commit *commit, struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct repl_pcommit *p;
    int rc;

    if (!atomic_load(&r->writable)) {
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
    }
    rc = repl_oplog_encode(commit, &buf);
    if (rc != 0) {
        cairn_buf_free(&buf);
        return cairn_error_setf(err, rc, "propose: encode commit: %s",
                                rc == CAIRN_EINVAL ? "malformed op" : cairn_strerror(rc));
    }
    if (buf.len > MAX_COMMIT_BYTES) {
        size_t len = buf.len;
        cairn_buf_free(&buf);
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                 "commit of %zu bytes exceeds the replication limit of %zu bytes",
                                 len, MAX_COMMIT_BYTES);
    }
    p = malloc(sizeof *p);
    if (p == NULL) {
        cairn_buf_free(&buf);
        return cairn_error_setf(err, CAIRN_ENOMEM, "propose: out of memory");
    }
    p->ts = commit->ts;
    p->data = buf.data;
    p->len = buf.len;
    p->next = NULL;
    pthread_mutex_lock(&r->qmu);
    while (!r->stopping && r->q_len > 0 &&
           (r->q_len >= MAX_QUEUED_COMMITS || r->q_bytes + p->len > MAX_QUEUED_BYTES)) {
        pthread_cond_wait(&r->q_space, &r->qmu);
    }
    if (r->stopping) {
        pthread_mutex_unlock(&r->qmu);
        free(p->data);
        free(p);
        return cairn_error_mongo(err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, "shutting down");
    }
    if (!atomic_load(&r->writable)) {
        /* Leadership ended while this commit waited for room. */
        pthread_mutex_unlock(&r->qmu);
        free(p->data);
        free(p);
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
    }
    if (commit->ts <= r->q_last_ts) {
        cairn_ts last = r->q_last_ts;
        pthread_mutex_unlock(&r->qmu);
        free(p->data);
        free(p);
        return cairn_error_setf(err, CAIRN_EINVAL,
                                "propose: ts %u:%u is not above the last proposed %u:%u",
                                CAIRN_TS_SECS(commit->ts), CAIRN_TS_INC(commit->ts),
                                CAIRN_TS_SECS(last), CAIRN_TS_INC(last));
    }
    if (r->q_tail != NULL) {
        r->q_tail->next = p;
    } else {
        r->q_head = p;
    }
    r->q_tail = p;
    r->q_len++;
    r->q_bytes += p->len;
    r->q_last_ts = commit->ts;
    atomic_store(&r->pub_queued, commit->ts);
    pthread_mutex_unlock(&r->qmu);
    uv_async_send(&r->async);
    return 0;
}

void repl_debug_hold_proposals(struct repl *r, bool hold)
{
    atomic_store(&r->hold, hold);
    if (!hold) {
        uv_async_send(&r->async);
    }
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
        /* Unreachable while sets have one member (repl_initiate). */
        return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "w: %d is not supported yet", wc->w);
    }
    if (ts == 0) {
        cb(arg, 0);
        return 0;
    }
    if (wc->w == 0) {
        kind = REPL_WK_APPLIED;
        level = atomic_load(&r->pub_applied);
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
        if (ts <= level && atomic_load(&r->writable)) {
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
