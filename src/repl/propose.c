/*
 * propose.c: the proposal queue. Client threads enqueue encoded commits
 * (repl_propose, under qmu, with backpressure); the raft thread drains the
 * queue into raft entries, several commits per entry (group commit, up to
 * GROUP_MAX_BYTES), stopping while more than MAX_UNCOMMITTED entries are
 * appended but not committed (flow control, trap T9), and tracks the
 * entries in flight until raft's apply callback.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

/* Flow control (trap T9): stop proposing while more entries than this are
 * appended but not committed. */
#define MAX_UNCOMMITTED 512
/* Group commit: stop adding commits to one entry past this many bytes. */
#define GROUP_MAX_BYTES ((size_t)2 << 20)
/* Backpressure: repl_propose waits while this much is queued for the raft
 * thread (w:1 writers are acknowledged when queued and would otherwise
 * grow the queue without bound while the disk stalls). */
#define MAX_QUEUED_COMMITS 16384
#define MAX_QUEUED_BYTES ((size_t)64 << 20)
/* Descriptors that must be free before proposing (descriptors_free). */
#define FD_PROBE_N 4
#define FD_PROBE_EVERY_NS (10ull * 1000000ull)

/* Frees the queued commits; they will never be proposed. Returns the newest
 * dropped ts (0 if none). Raft thread. */
cairn_ts repl_drop_queue(struct repl *r, const char *save_why)
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
    if (p != NULL && save_why != NULL) {
        repl_rollback_queued(r, p, save_why);
    }
    while (p != NULL) {
        struct repl_pcommit *next = p->next;
        newest = ts_max(newest, p->ts);
        free(p->data);
        free(p);
        p = next;
    }
    return newest;
}

void repl_inflight_unlink(struct repl *r, struct repl_prop *p)
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
    repl_inflight_unlink(r, p);
    free(p);
    if (status == 0) {
        /* Applied through the FSM already (repl_on_applied). */
        return;
    }
    if (status == RAFT_LEADERSHIPLOST || status == RAFT_NOTLEADER || status == RAFT_SHUTDOWN) {
        repl_note_lost(r, last);
        if (!r->closing) {
            repl_lose_leadership(r, "entry outcome unknown");
        }
        return;
    }
    /* raft 0.22 reports no other failure for an accepted entry (it retries
     * failed log writes, trap T6); one would mean its log can no longer be
     * trusted. Restart from disk instead. */
    cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: raft entry %llu failed: %s (%d)",
              (unsigned long long)req->index, raft_strerror(status), status);
    abort();
}

/* Pops up to GROUP_MAX_BYTES of queued commits into one raft buffer,
 * behind an entry header naming the term we lead in. Returns false when
 * the queue is empty; *rc is RAFT_NOMEM when the buffer could not be
 * made (the popped commits are freed either way). */
static bool pop_group(struct repl *r,
                      struct raft_buffer *buf,
                      cairn_ts *first_ts,
                      cairn_ts *last_ts,
                      size_t *n,
                      int *rc)
{
    struct repl_pcommit *first, *p, *end;
    struct cairn_buf header = CAIRN_BUF_INIT;
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

    if (repl_oplog_encode_header(r->leader_term, &header) != 0) {
        cairn_buf_free(&header);
        *rc = RAFT_NOMEM;
    }
    total += header.len;
    {
        /* Zero-pad to a multiple of 8: raft_uv requires it (see
         * REPL_OPLOG_ALIGN). */
        size_t padded = (total + REPL_OPLOG_ALIGN - 1) & ~(size_t)(REPL_OPLOG_ALIGN - 1);
        dst = *rc == 0 ? raft_malloc(padded) : NULL;
        if (dst != NULL) {
            memset(dst + total, 0, padded - total);
            memcpy(dst, header.data, header.len);
        }
        total = padded;
    }
    buf->base = dst;
    if (dst != NULL) {
        dst += header.len;
    }
    cairn_buf_free(&header);
    *first_ts = first->ts;
    *last_ts = end->ts;
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

/* Tests: true (once per call) while repl_debug_fail_proposals has failures
 * left to inject. */
static bool debug_fail_take(struct repl *r)
{
    int n = atomic_load(&r->debug_fail_applies);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&r->debug_fail_applies, &n, n - 1)) {
            return true;
        }
    }
    return false;
}

/* Whether raft_uv can open the descriptors a new segment takes (the
 * segment, an eventfd, the next prepared one) right now. raft 0.22 fails
 * raft_apply when it cannot, after its core took the entry, and its
 * in-memory log then no longer matches the one on disk: every later
 * append is lost. So the queue waits instead while the process is out of
 * descriptors (docs/decisions.md §36); net's connection cap keeps that
 * rare. Raft thread. */
static bool descriptors_free(struct repl *r)
{
    int fds[FD_PROBE_N], n = 0, base = uv_backend_fd(&r->loop);
    bool ok = true;
    uint64_t now = cairn_mono_ns();

    if (base < 0) {
        return true; /* no loop (tests): nothing to probe with */
    }
    if (!atomic_load(&r->fds_low) && now - r->fds_probed_ns < FD_PROBE_EVERY_NS) {
        return true; /* probed a moment ago: 8 syscalls per entry would cost w:1 latency */
    }
    r->fds_probed_ns = now;
    for (; n < FD_PROBE_N; n++) {
        fds[n] = fcntl(base, F_DUPFD_CLOEXEC, 0);
        if (fds[n] < 0) {
            ok = false;
            break;
        }
    }
    while (n-- > 0) {
        close(fds[n]);
    }
    if (ok != !atomic_load(&r->fds_low)) {
        atomic_store(&r->fds_low, !ok);
        if (ok) {
            cairn_log(CAIRN_LOG_INFO, "repl", "file descriptors available again: writing resumes");
        } else {
            cairn_log(CAIRN_LOG_WARN, "repl",
                      "out of file descriptors (Too many open files): queued commits wait and "
                      "new writes are refused with TooManyFilesOpen until some are closed");
        }
    }
    return ok;
}

void repl_drive_proposals(struct repl *r)
{
    if (r->closing) {
        return;
    }
    if (!atomic_load(&r->writable)) {
        cairn_ts dropped = repl_drop_queue(r, "leadership ended before they were proposed");
        if (dropped != 0) {
            /* Accepted while writable, but leadership ended before they
             * could be proposed. */
            repl_note_lost(r, dropped);
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
        bool empty;
        int rc;

        if (raft_last_index(&r->raft) - r->raft.commit_index > MAX_UNCOMMITTED) {
            return; /* flow control; repl_poll_state re-drives */
        }
        if (atomic_load(&r->hold)) {
            return; /* tests: repl_debug_hold_proposals */
        }
        pthread_mutex_lock(&r->qmu);
        empty = r->q_head == NULL;
        pthread_mutex_unlock(&r->qmu);
        if (empty) {
            return;
        }
        if (!descriptors_free(r)) {
            return; /* re-driven by the next poll (10 ms timer) */
        }
        if (!pop_group(r, &buf, &first_ts, &last_ts, &n_commits, &rc)) {
            return;
        }
        p = rc == 0 ? calloc(1, sizeof *p) : NULL;
        if (p != NULL) {
            p->r = r;
            p->last_ts = last_ts;
            p->req.data = p;
            rc = debug_fail_take(r) ? RAFT_NOMEM : raft_apply(&r->raft, &p->req, &buf, 1, apply_cb);
        } else {
            rc = RAFT_NOMEM;
        }
        if (rc != 0) {
            /* The group's commits were acknowledged to w:1 writers when they
             * were queued: raft refusing them loses acknowledged writes, so
             * save what they wrote to rollback files, as for the commits
             * still queued (repl_drop_queue). We still own the buffer
             * (logDiscard does not free it). */
            if (buf.base != NULL) {
                repl_rollback_entry(
                    r, buf.base, buf.len,
                    rc == RAFT_NOTLEADER ? "raft_apply: not leader" : "raft_apply failed");
            }
            raft_free(buf.base);
            free(p);
            repl_note_lost(r, last_ts);
            if (rc == RAFT_NOTLEADER) {
                repl_lose_leadership(r, "raft_apply: not leader");
                return;
            }
            if (rc != RAFT_NOMEM && rc != RAFT_NOSPACE) {
                /* raft 0.22 took the entry into its core before its log
                 * write failed to start (RAFT_IOERR: e.g. no descriptor
                 * for a new segment): its in-memory log no longer matches
                 * the one on disk and no later entry would ever be
                 * stored. Restart from the log on disk. */
                cairn_log(CAIRN_LOG_ERROR, "repl",
                          "FATAL: the raft log could not take a new entry: %s (%s); restarting "
                          "is the only way back to a consistent log",
                          raft_strerror(rc), raft_errmsg(&r->raft));
                abort();
            }
            /* Any other failure (out of memory, the log write refused) loses
             * this group after its commits got their ts and were visible in
             * the overlay: later commits of this epoch, queued or being
             * resolved now, may build on them, and acknowledging any would
             * leave a gap in the log. So this write epoch ends here as it
             * does at a step-down (the overlay hidden, the queue dropped,
             * every waiter failed with CAIRN_ENOTLEADER, proposals of the
             * epoch refused), and the next poll takes leadership up again
             * in a new epoch once a barrier of this term is applied. */
            cairn_log(CAIRN_LOG_ERROR, "repl",
                      "raft_apply of commits %u:%u..%u:%u failed: %s; ending write epoch %llu",
                      CAIRN_TS_SECS(first_ts), CAIRN_TS_INC(first_ts), CAIRN_TS_SECS(last_ts),
                      CAIRN_TS_INC(last_ts), raft_strerror(rc),
                      (unsigned long long)atomic_load(&r->write_epoch));
            repl_lose_leadership(r, "raft_apply failed");
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

int repl_propose(struct repl *r, const struct eng_commit *commit, struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    int rc;

    if (commit == NULL || commit->ts == 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "propose: commit without a ts");
    }
    rc = repl_oplog_encode(commit, &buf);
    if (rc != 0) {
        cairn_buf_free(&buf);
        return cairn_error_setf(err, rc, "propose: encode commit: %s",
                                rc == CAIRN_EINVAL ? "malformed op" : cairn_strerror(rc));
    }
    repl_oplog_patch_ts(buf.data, commit->ts);
    rc = repl_propose_encoded(r, repl_write_epoch(r), commit->ts, buf.data, buf.len, err);
    if (rc != 0) {
        cairn_buf_free(&buf);
    }
    return rc;
}

int repl_propose_encoded(struct repl *r,
                         uint64_t epoch,
                         cairn_ts ts,
                         uint8_t *data,
                         size_t len,
                         struct cairn_error *err)
{
    struct repl_pcommit *p;

    if (epoch == 0 || atomic_load(&r->write_epoch) != epoch) {
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
    }
    if (len > REPL_MAX_COMMIT_BYTES) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                 "commit of %zu bytes exceeds the replication limit of %zu bytes",
                                 len, REPL_MAX_COMMIT_BYTES);
    }
    p = malloc(sizeof *p);
    if (p == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "propose: out of memory");
    }
    p->ts = ts;
    p->data = data;
    p->len = len;
    p->next = NULL;
    pthread_mutex_lock(&r->qmu);
    while (!r->stopping && r->q_len > 0 &&
           (r->q_len >= MAX_QUEUED_COMMITS || r->q_bytes + p->len > MAX_QUEUED_BYTES)) {
        pthread_cond_wait(&r->q_space, &r->qmu);
    }
    if (r->stopping) {
        pthread_mutex_unlock(&r->qmu);
        free(p);
        return cairn_error_mongo(err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, "shutting down");
    }
    if (atomic_load(&r->write_epoch) != epoch) {
        /* Leadership changed (maybe while this commit waited for room). */
        pthread_mutex_unlock(&r->qmu);
        free(p);
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
    }
    if (ts <= r->q_last_ts) {
        cairn_ts last = r->q_last_ts;
        pthread_mutex_unlock(&r->qmu);
        free(p);
        return cairn_error_setf(
            err, CAIRN_EINVAL, "propose: ts %u:%u is not above the last proposed %u:%u",
            CAIRN_TS_SECS(ts), CAIRN_TS_INC(ts), CAIRN_TS_SECS(last), CAIRN_TS_INC(last));
    }
    repl_disk_note_accepted(r, len);
    atomic_fetch_add(&r->n_bytes_queued, len);
    if (r->q_tail != NULL) {
        r->q_tail->next = p;
    } else {
        r->q_head = p;
    }
    r->q_tail = p;
    r->q_len++;
    r->q_bytes += p->len;
    r->q_last_ts = ts;
    atomic_store(&r->pub_queued, ts);
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

void repl_debug_fail_proposals(struct repl *r, int n)
{
    atomic_store(&r->debug_fail_applies, n);
}
