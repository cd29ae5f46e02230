/*
 * status.c: the status copy other threads read. The raft thread publishes
 * its view (state, primary, term, progress) and the active config under
 * smu; repl_status_get merges it with the engine's applied watermark and
 * the proposal queue's newest ts. Never blocks on the raft thread.
 *
 * It also keeps the topology counter (hello's topologyVersion.counter,
 * mongod's TopologyCoordinator::incrementTopologyVersion): every publish
 * compares what hello reports with what the copy held, and a difference
 * bumps the counter and calls the topology callback, so that awaitable
 * hellos parked in net answer at once. Invariants:
 *   1. The counter changes only under smu, together with the fields that
 *      caused it: a status copy never pairs a new state with an old
 *      counter, nor the reverse.
 *   2. It is bumped by exactly one for each publish that changed one of:
 *      state, writable, primary (publish_status); initiated, the config
 *      document's bytes, self (publish_config). Progress (optimes, term
 *      alone, heartbeats) never bumps it, as in mongod.
 *   3. The callback runs under smu right after the bump, on the thread
 *      that publishes (the raft thread), so calls arrive in counter order
 *      and repl_set_topology_cb (which takes smu) waits for a call in
 *      progress.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

/* Bumps the topology counter and tells the callback. smu held. */
static void topology_changed_locked(struct repl *r)
{
    uint64_t counter = atomic_fetch_add(&r->topo_counter, 1) + 1;

    r->st.topology_counter = counter;
    if (r->topo_cb != NULL) {
        r->topo_cb(r->topo_cb_arg, counter);
    }
}

uint64_t repl_topology_counter(struct repl *r)
{
    return atomic_load(&r->topo_counter);
}

void repl_set_topology_cb(struct repl *r, repl_topology_cb cb, void *arg)
{
    pthread_mutex_lock(&r->smu);
    r->topo_cb = cb;
    r->topo_cb_arg = arg;
    pthread_mutex_unlock(&r->smu);
}

/* True while this member is a voter of the replica-set config that raft
 * does not count as a voter yet: the leader adds members to raft one at a
 * time, catching each up as a non-voter first (membership.c). Until then
 * the member is still joining and reports STARTUP2, as a mongod member
 * does until its initial sync ends: were the primary lost now, raft's
 * voters alone would have to elect the next one. */
static bool joining(const struct repl *r)
{
    const struct raft_configuration *c = &r->raft.configuration;

    if (r->self < 0 || r->cfg.m[r->self].votes == 0) {
        return false;
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == r->raft.id) {
            return c->servers[i].role != RAFT_VOTER;
        }
    }
    return true;
}

void repl_publish_status_locked(struct repl *r)
{
    struct repl_status *st = &r->st;
    bool writable = atomic_load(&r->writable);
    bool changed;
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
    } else if (r->install_state != 0) {
        state = r->install_state; /* checkpoint.c invariant 2 */
    } else if (!r->raft_started) {
        state = REPL_STATE_STARTUP2;
    } else if (writable) {
        state = REPL_STATE_PRIMARY;
    } else if (r->self >= 0 && r->applied_index < r->min_valid) {
        state = REPL_STATE_RECOVERING; /* checkpoint.c invariant 1 */
    } else if (joining(r)) {
        state = REPL_STATE_STARTUP2;
    } else if (r->self >= 0) {
        /* Also while an election runs (mongod's followers stay SECONDARY
         * then) and while a new leader commits its barrier. */
        state = REPL_STATE_SECONDARY;
    } else {
        state = REPL_STATE_REMOVED;
    }
    changed = st->state != state || st->writable != writable || st->primary != primary;
    st->state = state;
    st->writable = writable;
    st->primary = primary;
    if (r->raft_started) {
        st->term = r->raft.current_term;
        st->commit_index = r->raft.commit_index;
    }
    st->applied_ts = r->applied_ts;
    st->applied_term = r->host.applied_term;
    st->applied_index = r->applied_index;
    st->applied_wall_ms = (int64_t)CAIRN_TS_SECS(r->applied_ts) * 1000;
    st->last_ts = ts_max(st->last_ts, ts_max(r->handed_ts, r->applied_ts));
    if (changed) {
        topology_changed_locked(r);
    }
}

void repl_publish_status(struct repl *r)
{
    pthread_mutex_lock(&r->smu);
    repl_publish_status_locked(r);
    pthread_mutex_unlock(&r->smu);
}

/* Installs r->cfg into the status copy. Raft thread. */
void repl_publish_config(struct repl *r)
{
    struct repl_status *st = &r->st;
    bool changed;

    pthread_mutex_lock(&r->smu);
    /* What hello shows of the config (set name, version, hosts, ...) all
     * comes from the document, so comparing its bytes finds every change. */
    changed = (r->scfg.doc == NULL) != (r->cfg.doc == NULL) || r->scfg.doc_len != r->cfg.doc_len ||
              (r->cfg.doc != NULL && memcmp(r->scfg.doc, r->cfg.doc, r->cfg.doc_len) != 0) ||
              st->self != r->self || st->initiated != (r->cfg.doc != NULL);
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
        st->members[i].hidden = r->cfg.m[i].hidden;
    }
    st->self = r->self;
    if (changed) {
        topology_changed_locked(r);
    }
    pthread_mutex_unlock(&r->smu);
}

void repl_status_get(struct repl *r, struct repl_status *out)
{
    cairn_index idx;
    cairn_ts ts, q_last;

    /* repl_set_writable changes `writable` and the state under smu: the
     * copy's writable, state and primary agree with each other and with
     * repl_is_writable as of this moment. */
    pthread_mutex_lock(&r->smu);
    *out = r->st;
    pthread_mutex_unlock(&r->smu);
    pthread_mutex_lock(&r->qmu);
    q_last = r->q_last_ts;
    pthread_mutex_unlock(&r->qmu);
    /* The engine's watermark is newer than the copy, which the raft thread
     * publishes once per loop iteration: a majority waiter is released
     * while the entry is applied, before that. An applied entry is
     * committed, so the copy's commit index is raised to match. */
    eng_applied(r->eng, &idx, &ts);
    out->applied_index = idx;
    out->applied_ts = ts;
    out->applied_wall_ms = (int64_t)CAIRN_TS_SECS(ts) * 1000;
    if (out->commit_index < idx) {
        out->commit_index = idx;
    }
    out->last_ts = ts_max(out->last_ts, ts_max(q_last, ts));
    out->last_wall_ms = (int64_t)CAIRN_TS_SECS(out->last_ts) * 1000;
}

void repl_counters_get(struct repl *r, struct repl_counters *out)
{
    out->entries_proposed = atomic_load(&r->n_entries_proposed);
    out->commits_proposed = atomic_load(&r->n_commits_proposed);
    out->commit_bytes = atomic_load(&r->n_bytes_queued);
    out->entries_applied = atomic_load(&r->host.n_entries_applied);
    out->entries_skipped = atomic_load(&r->host.n_entries_skipped);
    out->checkpoint_installs = atomic_load(&r->n_ckpt_installs);
    out->checkpoints_served = atomic_load(&r->n_ckpt_served);
    out->last_checkpoint_bytes = atomic_load(&r->ckpt_last_bytes);
    out->last_checkpoint_keys = atomic_load(&r->ckpt_last_keys);
    out->last_checkpoint_ms = atomic_load(&r->ckpt_last_ms);
}

uint64_t repl_checkpoint_installs(struct repl *r)
{
    return atomic_load(&r->n_ckpt_installs);
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
