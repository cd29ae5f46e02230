/*
 * reconfig.c: replSetReconfig. A new config is checked against the active
 * one on the primary (repl_reconfig_begin), travels through the raft log as
 * an ENG_OP_CONFIG op of an ordinary commit (txn writes it), and takes
 * effect on every member when the FSM applies that entry
 * (repl_config_applied): the engine stores it with the data, repl installs
 * it, heartbeats carry it to members that are new, and the leader brings
 * raft's configuration in line (membership.c: adds, roles, removals, one at
 * a time).
 *
 * Rules, as mongod's: only on the primary; the version must grow; the set
 * name and replicaSetId stay; the primary stays in the set; at most one
 * voting member is added or removed (or changes its votes) per reconfig; one
 * reconfig at a time (109 ConfigurationInProgress otherwise). A member
 * keeps its host (changing it would need a raft remove and add: refused with
 * 103 for now).
 */
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "repl/repl_int.h"

static const struct repl_cfg_member *by_id(const struct repl_cfg *cfg, int id)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (cfg->m[i].id == id) {
            return &cfg->m[i];
        }
    }
    return NULL;
}

/* Voting members added, removed or changing votes between a and b. */
static int voter_changes(const struct repl_cfg *a, const struct repl_cfg *b)
{
    int n = 0;

    for (size_t i = 0; i < a->n; i++) {
        const struct repl_cfg_member *o = by_id(b, a->m[i].id);
        if (a->m[i].votes > 0 && (o == NULL || o->votes == 0)) {
            n++;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct repl_cfg_member *o = by_id(a, b->m[i].id);
        if (b->m[i].votes > 0 && (o == NULL || o->votes == 0)) {
            n++;
        }
    }
    return n;
}

int repl_reconfig_begin(struct repl *r,
                        const bson_t *config,
                        uint8_t **doc,
                        size_t *len,
                        struct cairn_error *err)
{
    struct repl_cfg cur, next;
    bson_iter_t it;
    int rc;

    *doc = NULL;
    *len = 0;
    memset(&cur, 0, sizeof cur);
    memset(&next, 0, sizeof next);
    if (pthread_mutex_trylock(&r->reconfig_mu) != 0) {
        return cairn_error_mongo(err, CAIRN_EBUSY, MONGO_ConfigurationInProgress,
                                 "a replSetReconfig is already in progress");
    }
    if (!atomic_load(&r->writable)) {
        rc = cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                               "replSetReconfig should only be run on a writable PRIMARY");
        goto err_unlock;
    }
    pthread_mutex_lock(&r->smu);
    rc = r->scfg.doc != NULL ? repl_cfg_copy(&cur, &r->scfg) : CAIRN_ENOTFOUND;
    pthread_mutex_unlock(&r->smu);
    if (rc != 0) {
        rc = cairn_error_mongo(err, rc, MONGO_NotYetInitialized, "not initiated");
        goto err_unlock;
    }
    if (!bson_iter_init_find(&it, config, "version")) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidReplicaSetConfig,
                               "the new config must have a version");
        goto err_cur;
    }
    rc = repl_cfg_build(config, r->set_name, r->me, &next, err);
    if (rc != 0) {
        goto err_cur;
    }
    if (next.version <= cur.version) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NewReplicaSetConfigurationIncompatible,
                               "New config version %d must be greater than old version %d",
                               next.version, cur.version);
        goto err_next;
    }
    if (voter_changes(&cur, &next) > 1) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NewReplicaSetConfigurationIncompatible,
                               "Only one voting member may be added or removed (or change its "
                               "votes) per reconfig");
        goto err_next;
    }
    for (size_t i = 0; i < next.n; i++) {
        const struct repl_cfg_member *o = by_id(&cur, next.m[i].id);
        if (o != NULL && strcmp(o->host, next.m[i].host) != 0) {
            rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_NewReplicaSetConfigurationIncompatible,
                                   "member _id %d cannot change its host (%s to %s): remove it "
                                   "and add it under a new _id",
                                   next.m[i].id, o->host, next.m[i].host);
            goto err_next;
        }
    }
    next.set_id = cur.set_id;
    next.has_set_id = cur.has_set_id;
    if (repl_cfg_rebuild(&next) != 0) {
        rc = cairn_error_setf(err, CAIRN_ENOMEM, "reconfig: out of memory");
        goto err_next;
    }
    *doc = next.doc;
    *len = next.doc_len;
    next.doc = NULL;
    repl_cfg_free(&cur);
    return 0; /* reconfig_mu stays held until repl_reconfig_end */

err_next:
    repl_cfg_free(&next);
err_cur:
    repl_cfg_free(&cur);
err_unlock:
    pthread_mutex_unlock(&r->reconfig_mu);
    return rc;
}

void repl_reconfig_end(struct repl *r)
{
    pthread_mutex_unlock(&r->reconfig_mu);
}

void repl_config_applied(struct repl *r, const uint8_t *doc, size_t len)
{
    struct repl_cfg cfg;
    struct cairn_error err;
    int self;

    if (repl_cfg_load(doc, len, &cfg, &err) != 0 || repl_cfg_resolve(&cfg, &err) != 0) {
        /* Checked on the primary before it entered the log: a member that
         * cannot read it must not go on with the old one. */
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: replicated config: %s", err.msg);
        abort();
    }
    if (r->cfg.doc != NULL && cfg.version <= r->cfg.version) {
        repl_cfg_free(&cfg);
        return; /* replayed after a restart, or adopted already */
    }
    self = repl_cfg_find(&cfg, r->me);
    cairn_log(CAIRN_LOG_INFO, "repl", "replica set config version %d installed (%zu members)%s",
              cfg.version, cfg.n, self < 0 ? "; this member was removed" : "");
    repl_cfg_free(&r->cfg);
    r->cfg = cfg;
    r->self = self;
    if (r->raft_started) {
        raft_set_election_timeout(&r->raft, (unsigned)cfg.election_timeout_ms);
    }
    repl_publish_config(r);
    repl_members_config_changed(r);
}
