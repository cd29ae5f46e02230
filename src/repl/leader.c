/*
 * leader.c: leadership and durability tracking on the raft thread. The
 * state is polled (a uv_check after every loop iteration, so after every
 * batch of raft events, and a 10 ms timer): on becoming leader a barrier of
 * the new term is committed before writes are accepted (writable); on
 * losing leadership writes stop at once, the overlay is hidden, queued
 * commits are dropped and every waiter fails. Durability (raft's
 * last_stored) is polled likewise to release j:true waiters.
 *
 * raft 0.22 no longer reports a fatal error by state (RAFT_UNAVAILABLE is
 * never set) and retries a failed log write forever (trap T6), so a log
 * that stops becoming durable is detected here: entries waiting to be
 * stored for LOG_STALL_FATAL_NS stop the member, which must not go on
 * applying from memory what its own log cannot hold, unless the disk is
 * full (disk.c): raft_uv retries a segment allocation that failed for
 * space by itself, so the member waits for space instead.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

#define LOG_STALL_WARN_NS (10ull * 1000000000ull)
#define LOG_STALL_FATAL_NS (60ull * 1000000000ull)
/* A stall this long is checked against the free space (disk.c). */
#define LOG_STALL_DISK_NS (1000000000ull)
/* Free space raft_uv needs to go on: a new segment (repl.c SEGMENT_SIZE)
 * and one more prepared. */
#define LOG_SEGMENT_NEED ((uint64_t)64 << 20)

/* One leadership change under cbmu, so that repl_set_leadership_cb waits for
 * a callback in progress and a callback registered after the change took
 * effect is never told about it: the epoch, `writable` (under qmu, which
 * proposers read it under) and the status copy (under smu, so that
 * repl_status_get never pairs writable with another state) change
 * together, then the callback runs with only cbmu held. */
void repl_set_writable(struct repl *r, bool writable)
{
    uint64_t epoch = 0;

    if (writable) {
        epoch = ++r->epochs;
    }
    pthread_mutex_lock(&r->cbmu);
    pthread_mutex_lock(&r->smu);
    pthread_mutex_lock(&r->qmu);
    atomic_store(&r->write_epoch, epoch);
    atomic_store(&r->writable, writable);
    pthread_mutex_unlock(&r->qmu);
    repl_publish_status_locked(r);
    pthread_mutex_unlock(&r->smu);
    if (r->leader_cb != NULL) {
        r->leader_cb(r->leader_cb_arg, writable, epoch);
    }
    pthread_mutex_unlock(&r->cbmu);
}

void repl_lose_leadership(struct repl *r, const char *why)
{
    bool was_writable = atomic_load(&r->writable);
    cairn_ts dropped;

    if (was_writable) {
        repl_set_writable(r, false);
    }

    r->leader = false;
    r->barrier_done = false;
    eng_overlay_discard(r->eng);
    dropped = repl_drop_queue(r, why);
    repl_note_lost(r, ts_max(dropped, r->handed_ts));
    repl_release_all(r);
    repl_waitq_fail_upto(&r->waitq, CAIRN_TS_MAX, CAIRN_ENOTLEADER);
    repl_wc_timer_update(r);
    repl_stepdown_on_lost(r);
    if (was_writable) {
        cairn_log(CAIRN_LOG_INFO, "repl", "no longer primary (%s)", why);
    }
    repl_publish_status(r);
}

/* With the barrier applied, the leader becomes writable once raft's
 * configuration holds a majority of the set's voters (membership.c). */
static void maybe_writable(struct repl *r)
{
    if (!r->leader || !r->barrier_done || atomic_load(&r->writable) || r->closing) {
        return;
    }
    if (!repl_membership_writable(r)) {
        if (!r->members_wait_logged) {
            r->members_wait_logged = true;
            cairn_log(CAIRN_LOG_INFO, "repl",
                      "leader in term %llu: waiting for a majority of the members to join "
                      "before accepting writes",
                      (unsigned long long)r->leader_term);
        }
        return;
    }
    r->members_wait_logged = false;
    r->leader_since_ms = cairn_wall_ms();
    pthread_mutex_lock(&r->smu);
    r->st.election_wall_ms = cairn_wall_ms();
    pthread_mutex_unlock(&r->smu);
    repl_set_writable(r, true);
    cairn_log(CAIRN_LOG_INFO, "repl", "primary in term %llu (applied index %llu)",
              (unsigned long long)r->leader_term, (unsigned long long)r->applied_index);
    repl_publish_status(r);
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
            maybe_writable(r);
        }
        return;
    }
    if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER || status == RAFT_SHUTDOWN) {
        if (r->leader) {
            repl_lose_leadership(r, "barrier lost");
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

/* Watches for a raft log that stopped becoming durable (see the top). */
static void check_log_stall(struct repl *r, raft_index stored)
{
    uint64_t now = cairn_mono_ns(), stalled;

    if (stored >= raft_last_index(&r->raft) || stored != r->seen_stored) {
        r->stall_since_ns = 0;
        r->stall_warned = false;
        r->disk_stall_logged_ns = 0;
        return;
    }
    if (r->stall_since_ns == 0) {
        r->stall_since_ns = now;
        return;
    }
    stalled = now - r->stall_since_ns;
    if (stalled >= LOG_STALL_DISK_NS && repl_disk_starved(r, LOG_SEGMENT_NEED)) {
        /* raft_uv cannot allocate a segment: it retries by itself, and
         * nothing waiting for the log is acknowledged meanwhile. Not a
         * broken disk: wait for space (docs/decisions.md §36). The stall
         * clock is held at LOG_STALL_DISK_NS, so the warning and the stop
         * count from when space came back. */
        r->stall_since_ns = now - LOG_STALL_DISK_NS;
        if (r->disk_stall_logged_ns == 0 || now - r->disk_stall_logged_ns >= LOG_STALL_FATAL_NS) {
            r->disk_stall_logged_ns = now;
            cairn_log(CAIRN_LOG_WARN, "repl",
                      "the raft log in %s cannot grow for lack of disk space (stored index "
                      "%llu, last index %llu): waiting for space, acknowledging nothing meanwhile",
                      r->raft_dir, (unsigned long long)stored,
                      (unsigned long long)raft_last_index(&r->raft));
        }
        return;
    }
    if (stalled >= LOG_STALL_FATAL_NS) {
        cairn_log(CAIRN_LOG_ERROR, "repl",
                  "FATAL: the raft log in %s has not become durable for %llu s (stored index "
                  "%llu, last index %llu): stopping",
                  r->raft_dir, (unsigned long long)(stalled / 1000000000ull),
                  (unsigned long long)stored, (unsigned long long)raft_last_index(&r->raft));
        abort();
    }
    if (stalled >= LOG_STALL_WARN_NS && !r->stall_warned) {
        r->stall_warned = true;
        cairn_log(CAIRN_LOG_WARN, "repl",
                  "the raft log in %s has not become durable for %llu s (stored index %llu)",
                  r->raft_dir, (unsigned long long)(stalled / 1000000000ull),
                  (unsigned long long)stored);
    }
}

static void poll_durability(struct repl *r)
{
    raft_index stored = r->raft.last_stored;
    cairn_ts durable = r->durable_ts;

    check_log_stall(r, stored);
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

void repl_poll_state(struct repl *r)
{
    int state;
    bool queued;

    if (!r->raft_started || r->closing) {
        return;
    }
    repl_io_flush(&r->iow);
    repl_disk_poll(r);
    state = raft_state(&r->raft);
    if (state == RAFT_CANDIDATE &&
        (r->seen_state != RAFT_CANDIDATE || r->seen_term != r->raft.current_term)) {
        /* Elections that fail (split votes) are otherwise invisible. */
        cairn_log(CAIRN_LOG_INFO, "repl", "standing for election (term %llu)",
                  (unsigned long long)r->raft.current_term);
    }
    r->seen_state = state;
    r->seen_term = r->raft.current_term;
    if (r->leader && (state != RAFT_LEADER || r->raft.current_term != r->leader_term)) {
        repl_lose_leadership(r, state != RAFT_LEADER ? "raft state changed" : "term changed");
    }
    if (state == RAFT_LEADER && !r->leader) {
        /* The same term again: a write epoch ended without a step-down
         * (a proposal raft refused). */
        bool again = r->leader_term == r->raft.current_term;
        r->leader = true;
        r->leader_term = r->raft.current_term;
        r->barrier_done = false;
        cairn_log(CAIRN_LOG_INFO, "repl", "%s leader in term %llu; committing a barrier",
                  again ? "still" : "elected", (unsigned long long)r->leader_term);
    }
    if (r->leader && !r->barrier_done) {
        submit_barrier(r);
    }
    if (r->leader && r->barrier_done) {
        repl_membership_poll(r);
        maybe_writable(r);
        repl_stepdown_poll(r);
    }
    poll_durability(r);
    repl_update_held(r);
    pthread_mutex_lock(&r->qmu);
    queued = r->q_head != NULL;
    pthread_mutex_unlock(&r->qmu);
    if (queued) {
        repl_drive_proposals(r);
    }
    repl_publish_status(r);
}

void repl_check_cb(uv_check_t *h)
{
    repl_poll_state(h->data);
}

void repl_poll_timer_cb(uv_timer_t *t)
{
    repl_poll_state(t->data);
}

bool repl_is_writable(struct repl *r)
{
    return atomic_load(&r->writable);
}

uint64_t repl_write_epoch(struct repl *r)
{
    return atomic_load(&r->write_epoch);
}

void repl_set_leadership_cb(struct repl *r, repl_leadership_cb cb, void *arg)
{
    /* cbmu is an error-checking mutex: a callback calling this would
     * otherwise wait for itself forever. */
    int rv = pthread_mutex_lock(&r->cbmu);
    if (rv != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl",
                  "FATAL: repl_set_leadership_cb called from the leadership callback (%d)", rv);
        abort();
    }
    r->leader_cb = cb;
    r->leader_cb_arg = arg;
    pthread_mutex_unlock(&r->cbmu);
}
