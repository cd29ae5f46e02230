/*
 * stepdown.c: the leadership policies raft does not have, built around it
 * (DESIGN.md, Replica set): replSetStepDown, replSetFreeze, priorities.
 *
 * - Whether this member may campaign (repl_may_campaign): not with
 *   priority 0 or votes 0, not while frozen (replSetFreeze) nor for
 *   stepDownSecs after stepping down. io.c drops such a member's own vote
 *   requests (pre-vote included), so it never becomes leader and never
 *   disturbs the others, and it still votes.
 * - replSetStepDown: the leader stops campaigning for stepDownSecs and
 *   hands leadership to a caught-up voter with raft_transfer, retrying
 *   until secondaryCatchUpPeriodSecs passes (raft aborts one transfer
 *   after an election timeout); with `force`, a leader that found no
 *   caught-up voter still gives up writing (it stays raft leader only
 *   until the others elect someone, since it no longer campaigns).
 * - Priority takeover: a leader that sees a caught-up member of higher
 *   priority hands leadership to it, as mongod's priority takeover.
 *
 * Everything here runs on the raft thread except the two public entry
 * points, which post a control and wait.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"

/* A leader waits this long after its election before a priority takeover,
 * so that a freshly elected member first commits its barrier and the
 * others catch up. */
#define TAKEOVER_DELAY_MS 2000

bool repl_may_campaign(struct repl *r)
{
    if (r->self < 0 || (size_t)r->self >= r->cfg.n) {
        return false;
    }
    if (r->cfg.m[r->self].priority <= 0 || r->cfg.m[r->self].votes == 0) {
        return false;
    }
    return cairn_wall_ms() >= r->no_campaign_until_ms;
}

/* Whether member `i` has every entry this leader has (durably). */
static bool caught_up(struct repl *r, size_t i)
{
    raft_index m;

    return raft_match_index(&r->raft, (raft_id)r->cfg.m[i].id + 1, &m) == 0 &&
           m >= raft_last_index(&r->raft);
}

/* The best target for a transfer: a caught-up voter that may campaign
 * (priority > 0), the highest priority first. -1 if none. */
static int pick_target(struct repl *r)
{
    int best = -1;

    for (size_t i = 0; i < r->cfg.n; i++) {
        const struct repl_cfg_member *m = &r->cfg.m[i];
        /* A frozen member (heartbeats say so) would take the hand-over
         * and never campaign: no primary until it thaws. */
        if ((int)i == r->self || m->votes == 0 || m->priority <= 0 || !r->peers[i].up ||
            !r->peers[i].electable || !caught_up(r, i)) {
            continue;
        }
        if (best < 0 || m->priority > r->cfg.m[best].priority) {
            best = (int)i;
        }
    }
    return best;
}

static void transfer_cb(struct raft_transfer *req)
{
    struct repl *r = req->data;
    raft_id id = 0;
    const char *addr = NULL;

    r->transfer_inflight = false;
    if (r->closing) {
        return;
    }
    raft_leader(&r->raft, &id, &addr);
    if (r->stepdown_ctl != NULL && id != r->raft.id) {
        struct repl_ctl *c = r->stepdown_ctl;
        r->stepdown_ctl = NULL;
        cairn_log(CAIRN_LOG_INFO, "repl", "stepped down; the primary is now node %llu",
                  (unsigned long long)id);
        repl_ctl_done(r, c, 0);
    }
}

static int start_transfer(struct repl *r, int target, const char *why)
{
    int rv;

    memset(&r->transfer, 0, sizeof r->transfer);
    r->transfer.data = r;
    rv = raft_transfer(&r->raft, &r->transfer, (raft_id)r->cfg.m[target].id + 1, transfer_cb);
    if (rv == 0) {
        r->transfer_inflight = true;
        cairn_log(CAIRN_LOG_INFO, "repl", "handing leadership to %s (%s)", r->cfg.m[target].host,
                  why);
    }
    return rv;
}

/* Leaves writes: the member stops accepting them at once (it stays raft
 * leader until another member is elected, never campaigning again). */
static void give_up_writes(struct repl *r, const char *why)
{
    if (r->leader) {
        repl_lose_leadership(r, why);
    }
}

void repl_stepdown_poll(struct repl *r)
{
    int64_t now = cairn_wall_ms();
    int target;

    if (!r->leader || r->closing || r->transfer_inflight) {
        return;
    }
    if (r->stepdown_ctl != NULL) {
        struct repl_ctl *c = r->stepdown_ctl;
        target = pick_target(r);
        if (target >= 0 && start_transfer(r, target, "replSetStepDown") == 0) {
            return;
        }
        if (now < r->stepdown_deadline_ms) {
            return; /* wait for a secondary to catch up */
        }
        r->stepdown_ctl = NULL;
        if (c->force) {
            give_up_writes(r, "replSetStepDown with force");
            repl_ctl_done(r, c, 0);
            return;
        }
        r->no_campaign_until_ms = 0; /* it stays primary */
        cairn_error_mongo(&c->err, CAIRN_ETIMEOUT, MONGO_ExceededTimeLimit,
                          "No electable secondaries caught up as of %lld. Please use the "
                          "replSetStepDown command with the argument {force: true} to force "
                          "node to step down.",
                          (long long)now);
        repl_ctl_done(r, c, CAIRN_ETIMEOUT);
        return;
    }
    /* Priority takeover. */
    if (r->self < 0 || now < r->leader_since_ms + TAKEOVER_DELAY_MS) {
        return;
    }
    target = pick_target(r);
    if (target >= 0 && r->cfg.m[target].priority > r->cfg.m[r->self].priority) {
        (void)start_transfer(r, target, "it has a higher priority");
    }
}

void repl_stepdown_start(struct repl *r, struct repl_ctl *c)
{
    int64_t now = cairn_wall_ms();

    if (!atomic_load(&r->writable) || !r->leader) {
        cairn_error_mongo(&c->err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                          "not primary so can't step down");
        repl_ctl_done(r, c, CAIRN_ENOTLEADER);
        return;
    }
    if (r->stepdown_ctl != NULL) {
        cairn_error_mongo(&c->err, CAIRN_EBUSY, MONGO_ConflictingOperationInProgress,
                          "a stepdown is already in progress");
        repl_ctl_done(r, c, CAIRN_EBUSY);
        return;
    }
    r->no_campaign_until_ms = now + c->secs * 1000ll;
    r->stepdown_deadline_ms = now + c->catch_up_secs * 1000ll;
    r->stepdown_ctl = c;
    repl_stepdown_poll(r);
}

void repl_stepdown_abort(struct repl *r)
{
    if (r->stepdown_ctl != NULL) {
        struct repl_ctl *c = r->stepdown_ctl;
        r->stepdown_ctl = NULL;
        cairn_error_mongo(&c->err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, "shutting down");
        repl_ctl_done(r, c, CAIRN_ESHUTDOWN);
    }
}

void repl_freeze_apply(struct repl *r, struct repl_ctl *c)
{
    if (r->leader || atomic_load(&r->writable)) {
        cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_NotSecondary,
                          "cannot freeze node when primary or running for election. state: "
                          "Primary");
        repl_ctl_done(r, c, CAIRN_ESTATE);
        return;
    }
    r->no_campaign_until_ms = c->secs == 0 ? 0 : cairn_wall_ms() + c->secs * 1000ll;
    if (c->secs == 0) {
        cairn_log(CAIRN_LOG_INFO, "repl", "unfrozen");
    } else {
        cairn_log(CAIRN_LOG_INFO, "repl", "frozen for %d s", c->secs);
    }
    repl_members_heartbeat_now(r); /* the primary learns it at once */
    repl_ctl_done(r, c, 0);
}

void repl_stepdown_on_lost(struct repl *r)
{
    if (r->stepdown_ctl != NULL) {
        struct repl_ctl *c = r->stepdown_ctl;
        r->stepdown_ctl = NULL;
        repl_ctl_done(r, c, 0); /* stepped down */
    }
}

/* Posts a step-down or freeze control and waits for it. */
static int post_wait(struct repl *r, struct repl_ctl *c, struct cairn_error *err)
{
    return repl_post_ctl_wait(r, c, err);
}

int repl_step_down(struct repl *r,
                   int step_down_secs,
                   int catch_up_secs,
                   bool force,
                   struct cairn_error *err)
{
    struct repl_ctl c;

    memset(&c, 0, sizeof c);
    c.type = REPL_CTL_STEPDOWN;
    c.secs = step_down_secs;
    c.catch_up_secs = catch_up_secs;
    c.force = force;
    return post_wait(r, &c, err);
}

int repl_freeze(struct repl *r, int secs, struct cairn_error *err)
{
    struct repl_ctl c;

    memset(&c, 0, sizeof c);
    c.type = REPL_CTL_FREEZE;
    c.secs = secs;
    return post_wait(r, &c, err);
}
