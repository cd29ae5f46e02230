/*
 * fsm.c: the raft state machine (FSM version 1). It owns the mapping from
 * committed raft entries to engine applies: decode the oplog payload, take
 * the entry's index as raft_last_applied + 1 (the legacy API passes none,
 * trap T3) and call eng_apply, which skips indexes at or below the persisted
 * watermark (replay after restart, trap T4).
 *
 * Snapshots: a raft snapshot of a RocksDB-sized state cannot travel through
 * raft (it is one in-memory buffer), so a snapshot is a descriptor:
 * 16 bytes, the engine watermark (index, ts) it reflects, big-endian. Taking
 * one syncs RocksDB's WAL first, because raft deletes the log segments below
 * the snapshot right after it is stored (trap T10); apply runs on this same
 * thread, so the engine state is exactly last_applied. Snapshots keep raft's
 * in-memory log (every entry since the last snapshot) bounded; raft keeps
 * the trailing entries (repl_options.snapshot_trailing) for members that
 * lag. restore() is a no-op when the descriptor's index is at or below our
 * watermark (the start-up restore, or a snapshot sent again); otherwise
 * this member fell behind the leader's log, joined late, or crashed in an
 * install: the host's checkpoint source
 * (ops->install_checkpoint; in production checkpoint.c) fetches a checkpoint from a healthy member
 * and installs it before restore returns. A restore never fails except at shutdown (or without a
 * checkpoint source: the member stops); then nothing more is applied (checkpoint.c invariant 3).
 *
 * Before applying, the host may make the FSM wait for disk space
 * (ops->wait_apply_room; disk.c): RocksDB must never meet ENOSPC. The
 * raft thread blocks meanwhile, so raft's last_applied stays equal to the
 * engine's watermark; a shutdown during the wait applies nothing more.
 *
 * Applying an entry that writes, creates or drops the cluster-wide
 * settings collection (REPL_SETTINGS_NS) bumps the host's settings
 * generation, so that caches of those settings (the read/write concern
 * defaults) reload.
 *
 * The FSM works on a struct repl_host (host.h), so raft may be hosted by
 * repl.c's raft_uv loop or by raft's test fixture. Everything here runs on
 * the thread that drives raft.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "repl/host.h"

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct repl_host *h = fsm->data;
    raft_index index = raft_last_applied(h->raft) + 1;
    struct repl_decoded d;
    struct cairn_error err;
    cairn_index wm_index;
    cairn_ts wm_ts;
    bool settings_changed = false;
    int rc;

    *result = NULL;
    if (h->install_broken || h->apply_halted) {
        /* Shutting down after an abandoned install, or while waiting for
         * disk space: apply nothing (replayed at the next start). */
        return 0;
    }
    /* A received entry msgcheck.c decoded (and validated) already. */
    rc = h->dec != NULL && repl_deccache_take(h->dec, index, buf, &d)
             ? 0
             : repl_oplog_decode(buf->base, buf->len, &d, &err);
    if (rc == CAIRN_EUNSUPPORTED) {
        /* Written by a newer cairnd: skipping it would diverge. */
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: stopping: raft entry %llu: %s",
                  (unsigned long long)index, err.msg);
        abort();
    }
    if (rc != 0) {
        /* A committed entry we cannot read: continuing would diverge. */
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: raft entry %llu cannot be decoded: %s",
                  (unsigned long long)index, err.msg);
        abort();
    }
    eng_applied(h->eng, &wm_index, &wm_ts);
    repl_doubt_commit_upto(h, index); /* committed: never rolled back */
    if (index <= wm_index) {
        /* Replay of an entry already in the engine (trap T4). */
        atomic_fetch_add(&h->n_entries_skipped, 1);
        repl_decoded_free(&d);
        return 0;
    }
    if (h->ops->wait_apply_room != NULL &&
        h->ops->wait_apply_room(h->ops_arg, index, buf->len) != 0) {
        /* Shutdown while the disk is full (disk.c): the entry stays in the
         * raft log, above the engine's watermark, and is applied at the
         * next start. */
        h->apply_halted = true;
        repl_decoded_free(&d);
        return 0;
    }
    rc = eng_apply(h->eng, d.commits, d.n_commits, index, &err);
    if (rc != 0) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: applying raft entry %llu: %s",
                  (unsigned long long)index, err.msg);
        abort();
    }
    atomic_fetch_add(&h->n_entries_applied, 1);
    for (size_t i = 0; i < d.n_ops; i++) {
        const struct eng_op *op = &d.ops[i];
        if (op->kind == ENG_OP_CONFIG && h->ops->config_applied != NULL) {
            h->ops->config_applied(h->ops_arg, op->doc, op->doc_len);
        } else if ((op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE) && h->settings_coll != 0 &&
                   op->coll_id == h->settings_coll) {
            settings_changed = true;
        } else if ((op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) && op->ns != NULL &&
                   strcmp(op->ns, REPL_SETTINGS_NS) == 0) {
            h->settings_coll = op->kind == ENG_OP_CREATE ? op->coll_id : 0;
            settings_changed = true;
        }
    }
    if (settings_changed) {
        /* After eng_apply: a reader that sees the new generation reads the
         * applied state that holds the change. */
        atomic_fetch_add(&h->settings_gen, 1);
    }
    if (d.version >= 1) {
        h->applied_term = d.term;
    }
    if (d.n_commits > 0 && h->ops->applied != NULL) {
        h->ops->applied(h->ops_arg, index, d.commits[d.n_commits - 1].ts);
    }
    repl_decoded_free(&d);
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct repl_host *h = fsm->data;
    struct raft_buffer *b;
    struct cairn_error err;
    cairn_index wm_index;
    cairn_ts wm_ts;

    *bufs = NULL;
    *n_bufs = 0;
    if (h->install_broken || h->apply_halted ||
        (h->ops->may_snapshot != NULL && !h->ops->may_snapshot(h->ops_arg))) {
        return RAFT_BUSY;
    }
    if (eng_sync(h->eng, &err) != 0) {
        cairn_log(CAIRN_LOG_WARN, "repl", "snapshot skipped: %s", err.msg);
        return RAFT_BUSY;
    }
    b = raft_malloc(sizeof *b);
    if (b == NULL) {
        return RAFT_BUSY;
    }
    b->len = 16;
    b->base = raft_malloc(b->len);
    if (b->base == NULL) {
        raft_free(b);
        return RAFT_BUSY;
    }
    eng_applied(h->eng, &wm_index, &wm_ts);
    cairn_store_be64(b->base, wm_index);
    cairn_store_be64((uint8_t *)b->base + 8, wm_ts);
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

/* raft takes the buffer back when restore fails at start-up (it frees the
 * snapshot), so there only a successful restore frees buf->base; a restore
 * from the leader frees it always. A descriptor we
 * cannot read stops the member: raft 0.22 ignores a refusal and this
 * member would go on acknowledging appends while applying nothing, still
 * counted in the majority. */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct repl_host *h = fsm->data;
    cairn_index wm_index;
    cairn_ts wm_ts;
    struct cairn_error err = {0};
    uint64_t snap_index = 0;
    bool ok = buf->len >= 8 && buf->base != NULL;

    if (ok) {
        snap_index = cairn_load_be64(buf->base);
    }
    eng_applied(h->eng, &wm_index, &wm_ts);
    if (!ok) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: raft snapshot of %zu bytes (%s) is unreadable",
                  buf->len, h->in_start ? "at start" : "from the leader");
        abort();
    }
    if (snap_index > wm_index) {
        if (h->ops->install_checkpoint == NULL) {
            cairn_log(CAIRN_LOG_ERROR, "repl",
                      "FATAL: raft snapshot restore (%s, index %llu > applied %llu) needs a "
                      "checkpoint and this host has no checkpoint source: stopping",
                      h->in_start ? "at start" : "from the leader", (unsigned long long)snap_index,
                      (unsigned long long)wm_index);
            abort();
        }
        if (h->ops->install_checkpoint(h->ops_arg, h, buf, &err) != 0) {
            /* Shutting down (checkpoint.c invariant 3). raft keeps the buffer
             * of a failed restore only at start-up; otherwise it is ours. */
            if (!h->in_start) {
                raft_free(buf->base);
                buf->base = NULL;
            }
            return RAFT_CANCELED;
        }
    }
    raft_free(buf->base);
    buf->base = NULL;
    return 0;
}

void repl_note_loaded_terms(struct repl_host *h,
                            const struct raft_snapshot *snapshot,
                            raft_index start_index,
                            const struct raft_entry *entries,
                            size_t n)
{
    cairn_index wm_index;
    cairn_ts wm_ts;

    eng_applied(h->eng, &wm_index, &wm_ts);
    if (snapshot != NULL && snapshot->index == wm_index) {
        h->applied_term = snapshot->term;
    }
    if (wm_index >= start_index && wm_index - start_index < n) {
        h->applied_term = entries[wm_index - start_index].term;
    }
}

void repl_fsm_init(struct repl_host *h)
{
    h->fsm.version = 1;
    h->fsm.data = h;
    h->fsm.apply = fsm_apply;
    h->fsm.snapshot = fsm_snapshot;
    h->fsm.restore = fsm_restore;
    h->fsm.snapshot_finalize = NULL;
    h->fsm.snapshot_async = NULL;
}
