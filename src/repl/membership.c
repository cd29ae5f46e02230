/*
 * membership.c: keeps raft's configuration equal to the replica-set config,
 * on the leader, one change at a time.
 *
 * Only the initiating member bootstraps the raft log, with a configuration
 * holding itself alone; every other member starts raft with an empty log
 * (members.c gives it the replica-set config) and is brought in by the
 * leader here: raft_add (as a spare), then raft_assign to its role (voter
 * when `votes: 1`, standby when `votes: 0`; raft catches a new voter up
 * before promoting it). A server raft has that the config lacks is removed.
 * So no two members ever write different entries at the same index of a
 * fresh log, and a member whose data directory was emptied rejoins the same
 * way (raft sends it the log, or a snapshot).
 *
 * Writes wait for the membership: the leader is writable only while raft's
 * configuration holds a majority of the replica-set config's voters as
 * voters (repl_membership_writable), so a majority-acknowledged write is on
 * a majority of the intended set, never on the initiating member alone.
 *
 * Invariants (raft thread):
 *   1. At most one change request is in flight (r->change_inflight); raft
 *      refuses a second one anyway (RAFT_CANTCHANGE) until the first is
 *      committed.
 *   2. The change callback fires once, also with RAFT_LEADERSHIPLOST or at
 *      raft_close; it only clears the flag and never frees anything.
 */
#include <string.h>

#include "lib/log.h"
#include "repl/repl_int.h"

static int wanted_role(const struct repl_cfg_member *m)
{
    return m->votes > 0 ? RAFT_VOTER : RAFT_STANDBY;
}

static const struct raft_server *raft_server_get(const struct raft_configuration *c, raft_id id)
{
    for (unsigned i = 0; i < c->n; i++) {
        if (c->servers[i].id == id) {
            return &c->servers[i];
        }
    }
    return NULL;
}

static const struct repl_cfg_member *cfg_member(const struct repl_cfg *cfg, raft_id id)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if ((raft_id)cfg->m[i].id + 1 == id) {
            return &cfg->m[i];
        }
    }
    return NULL;
}

static const char *role_name(int role)
{
    switch (role) {
        case RAFT_VOTER:
            return "voter";
        case RAFT_STANDBY:
            return "standby";
        default:
            return "spare";
    }
}

static void change_cb(struct raft_change *req, int status)
{
    struct repl *r = req->data;

    r->change_inflight = false;
    if (status != 0 && !r->closing) {
        cairn_log(CAIRN_LOG_WARN, "repl", "membership change (%s): %s", r->change_what,
                  raft_strerror(status));
    } else if (status == 0) {
        cairn_log(CAIRN_LOG_INFO, "repl", "membership: %s", r->change_what);
    }
}

void repl_membership_resync(struct repl *r, raft_id id)
{
    r->resync_id = id;
}

bool repl_membership_writable(struct repl *r)
{
    const struct raft_configuration *c = &r->raft.configuration;
    int want = 0, have = 0;

    for (size_t i = 0; i < r->cfg.n; i++) {
        const struct raft_server *s;
        if (r->cfg.m[i].votes == 0) {
            continue;
        }
        want++;
        s = raft_server_get(c, (raft_id)r->cfg.m[i].id + 1);
        if (s != NULL && s->role == RAFT_VOTER) {
            have++;
        }
    }
    return have >= want / 2 + 1;
}

void repl_membership_poll(struct repl *r)
{
    const struct raft_configuration *c = &r->raft.configuration;
    int rv = 0;

    if (!r->leader || !r->barrier_done || r->change_inflight || r->closing || r->cfg.doc == NULL) {
        return;
    }
    memset(&r->change, 0, sizeof r->change);
    r->change.data = r;
    if (r->resync_id != 0) {
        raft_id id = r->resync_id;
        r->resync_id = 0;
        if (raft_server_get(c, id) != NULL && id != r->raft.id) {
            snprintf(r->change_what, sizeof r->change_what,
                     "remove node %llu to resync it from scratch", (unsigned long long)id);
            rv = raft_remove(&r->raft, &r->change, id, change_cb);
            goto submitted;
        }
    }
    /* Add the missing members first, then roles, then removals: a removal
     * never runs before its replacement can vote. */
    for (size_t i = 0; i < r->cfg.n; i++) {
        const struct repl_cfg_member *m = &r->cfg.m[i];
        raft_id id = (raft_id)m->id + 1;
        const struct raft_server *s = raft_server_get(c, id);
        if (s == NULL) {
            snprintf(r->change_what, sizeof r->change_what, "add %s (node %llu)", m->host,
                     (unsigned long long)id);
            rv = raft_add(&r->raft, &r->change, id, m->raft_addr, change_cb);
            goto submitted;
        }
    }
    for (size_t i = 0; i < r->cfg.n; i++) {
        const struct repl_cfg_member *m = &r->cfg.m[i];
        raft_id id = (raft_id)m->id + 1;
        const struct raft_server *s = raft_server_get(c, id);
        if (s != NULL && s->role != wanted_role(m)) {
            snprintf(r->change_what, sizeof r->change_what, "%s %s (node %llu) as %s",
                     s->role == RAFT_SPARE ? "bring in" : "assign", m->host, (unsigned long long)id,
                     role_name(wanted_role(m)));
            rv = raft_assign(&r->raft, &r->change, id, wanted_role(m), change_cb);
            goto submitted;
        }
    }
    for (unsigned i = 0; i < c->n; i++) {
        if (cfg_member(&r->cfg, c->servers[i].id) == NULL && c->servers[i].id != r->raft.id) {
            snprintf(r->change_what, sizeof r->change_what, "remove node %llu (%s)",
                     (unsigned long long)c->servers[i].id, c->servers[i].address);
            rv = raft_remove(&r->raft, &r->change, c->servers[i].id, change_cb);
            goto submitted;
        }
    }
    return; /* raft's configuration is the replica-set config */

submitted:
    if (rv == 0) {
        r->change_inflight = true;
        r->change_warned = false;
    } else if (rv != RAFT_CANTCHANGE && rv != RAFT_NOTLEADER && !r->change_warned) {
        /* Retried at the next poll; said once. */
        r->change_warned = true;
        cairn_log(CAIRN_LOG_WARN, "repl", "membership change (%s) refused: %s", r->change_what,
                  raft_strerror(rv));
    }
}
