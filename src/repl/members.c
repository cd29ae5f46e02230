/*
 * members.c: what members tell each other outside raft, over the control
 * channel of the member transport (transport.h):
 *
 * - Heartbeats. Every settings.heartbeatIntervalMillis each member sends its
 *   status (state, term, applied and durable optimes, config version, the
 *   primary it knows) to every other member and gets the peer's back. They
 *   give replSetGetStatus its members (health, lastHeartbeat,
 *   lastHeartbeatRecv, pingMs, optimes) and carry the config to a member
 *   whose last answer showed none or an older version.
 * - Adoption. A member that is not initiated adopts the config a heartbeat
 *   brings when that config names it and the set name is ours: it stores it
 *   and starts raft WITHOUT bootstrapping (only the initiating member
 *   bootstraps the raft log; the others learn the configuration from the
 *   leader's entries). A member that is down at initiation adopts it the
 *   same way when it comes back, as does a member whose dbpath was emptied.
 * - The initiate check. replSetInitiate with several members first asks
 *   every other member whether it can join (reachable, same set name, not
 *   initiated, finds itself in the config), as mongod's quorum check; one
 *   refusal or silence fails the initiation and nothing is stored.
 *
 * Invariants (raft thread):
 *   1. r->peers[i] describes r->cfg.m[i]; a config change resets them, and
 *      a heartbeat answer for an older config (hb_call.cfg_version) is
 *      dropped.
 *   2. At most one heartbeat call per peer is in flight (peer.inflight).
 *   3. Every transport call's callback fires exactly once and frees its
 *      hb_call / check_call, also at shutdown.
 *
 * Everything here runs on the raft thread.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"
#include "repl/transport.h"

/* A member that has not answered for this long is reported down. */
#define HB_TIMEOUT_MIN_MS 1000
#define INITIATE_CHECK_TIMEOUT_MS 10000

struct hb_call
{
    struct repl *r;
    size_t idx;
    int cfg_version;
    uint64_t sent_ns;
};

struct check_call
{
    struct repl *r;
    size_t idx;
};

static uint64_t hb_timeout_ms(const struct repl *r)
{
    uint64_t t = (uint64_t)r->cfg.heartbeat_ms * 2;
    return t < HB_TIMEOUT_MIN_MS ? HB_TIMEOUT_MIN_MS : t;
}

static bool append_ts(bson_t *b, const char *key, cairn_ts ts)
{
    return BSON_APPEND_TIMESTAMP(b, key, CAIRN_TS_SECS(ts), CAIRN_TS_INC(ts));
}

static cairn_ts get_ts(const bson_t *b, const char *key)
{
    bson_iter_t it;
    uint32_t t, i;

    if (!bson_iter_init_find(&it, b, key) || !BSON_ITER_HOLDS_TIMESTAMP(&it)) {
        return 0;
    }
    bson_iter_timestamp(&it, &t, &i);
    return ((cairn_ts)t << 32) | i;
}

static int64_t get_i64(const bson_t *b, const char *key, int64_t dflt)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, b, key) || !BSON_ITER_HOLDS_NUMBER(&it)) {
        return dflt;
    }
    return bson_iter_as_int64(&it);
}

static const char *get_str(const bson_t *b, const char *key)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, b, key) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return NULL;
    }
    return bson_iter_utf8(&it, NULL);
}

/* This member's own view, as heartbeats carry it. */
static bool append_self(struct repl *r, bson_t *b)
{
    struct repl_status st;
    int primary_id = -1;

    pthread_mutex_lock(&r->smu);
    st = r->st;
    pthread_mutex_unlock(&r->smu);
    if (st.primary >= 0 && (size_t)st.primary < r->cfg.n) {
        primary_id = r->cfg.m[st.primary].id;
    }
    return BSON_APPEND_BOOL(b, "electable", repl_may_campaign(r)) &&
           BSON_APPEND_DATE_TIME(b, "electionDate", st.writable ? st.election_wall_ms : 0) &&
           BSON_APPEND_INT64(b, "lastIndex",
                             r->raft_started ? (int64_t)raft_last_index(&r->raft) : 0) &&
           BSON_APPEND_INT32(b, "v", r->cfg.doc != NULL ? r->cfg.version : -1) &&
           BSON_APPEND_INT32(b, "id", r->self >= 0 ? r->cfg.m[r->self].id : -1) &&
           BSON_APPEND_UTF8(b, "me", r->me) && BSON_APPEND_INT32(b, "state", st.state) &&
           BSON_APPEND_INT64(b, "term", (int64_t)st.term) &&
           append_ts(b, "applied", r->applied_ts) &&
           BSON_APPEND_INT64(b, "appliedTerm", (int64_t)r->host.applied_term) &&
           append_ts(b, "durable", r->durable_ts) && BSON_APPEND_INT32(b, "primaryId", primary_id);
}

/* Index in r->cfg of the member with _id `id`, or -1. */
static int peer_index(const struct repl *r, int64_t id)
{
    for (size_t i = 0; i < r->cfg.n; i++) {
        if (r->cfg.m[i].id == id) {
            return (int)i;
        }
    }
    return -1;
}

/* Records what a peer says of itself (a heartbeat or its answer). */
static void note_peer_view(struct repl *r, struct repl_peer *p, const bson_t *b)
{
    p->state = (int)get_i64(b, "state", REPL_STATE_UNKNOWN);
    p->term = (uint64_t)get_i64(b, "term", 0);
    p->applied_ts = get_ts(b, "applied");
    p->applied_term = (uint64_t)get_i64(b, "appliedTerm", 0);
    p->durable_ts = get_ts(b, "durable");
    p->cfg_version = (int)get_i64(b, "v", -1);
    p->primary_id = (int)get_i64(b, "primaryId", -1);
    p->last_index = (uint64_t)get_i64(b, "lastIndex", 0);
    {
        bson_iter_t it;
        p->electable = bson_iter_init_find(&it, b, "electable") && bson_iter_as_bool(&it);
    }
    {
        bson_iter_t it;
        p->election_ms =
            bson_iter_init_find(&it, b, "electionDate") && BSON_ITER_HOLDS_DATE_TIME(&it)
                ? bson_iter_date_time(&it)
                : 0;
    }
    (void)r;
}

/* On the leader: a member whose log is shorter than what it acknowledged
 * lost its data (its dbpath was emptied): raft assumes logs survive and
 * would ignore its rejections as stale. The leader removes it from raft's
 * configuration and adds it back (membership.c), which starts its
 * replication from scratch. */
static void check_lost_log(struct repl *r, size_t idx)
{
    struct repl_peer *p = &r->peers[idx];
    raft_index match;

    if (!r->leader || !p->up || p->state == REPL_STATE_DOWN ||
        raft_match_index(&r->raft, (raft_id)r->cfg.m[idx].id + 1, &match) != 0) {
        return;
    }
    if (p->last_index < match && !p->log_lost) {
        p->log_lost = true;
        cairn_log(CAIRN_LOG_WARN, "repl",
                  "member %s has %llu log entries but acknowledged %llu: its data was lost; "
                  "resyncing it",
                  r->cfg.m[idx].host, (unsigned long long)p->last_index, (unsigned long long)match);
        repl_membership_resync(r, (raft_id)r->cfg.m[idx].id + 1);
    } else if (p->last_index >= match) {
        p->log_lost = false;
    }
}

/* Copies the peers into the status copy. */
static void publish_peers(struct repl *r)
{
    pthread_mutex_lock(&r->smu);
    for (size_t i = 0; i < r->cfg.n && i < REPL_MAX_MEMBERS; i++) {
        const struct repl_peer *p = &r->peers[i];
        struct repl_member *m = &r->st.members[i];
        m->up = p->up;
        m->peer_state = p->state;
        m->last_hb_ms = p->last_hb_ms;
        m->last_hb_recv_ms = p->last_hb_recv_ms;
        m->ping_ms = p->ping_ms;
        m->up_since_ms = p->up_since_ms;
        m->applied_ts = p->applied_ts;
        m->applied_term = p->applied_term;
        m->durable_ts = p->durable_ts;
        m->election_ms = p->election_ms;
        snprintf(m->hb_msg, sizeof m->hb_msg, "%s", p->errmsg);
    }
    pthread_mutex_unlock(&r->smu);
}

/* ---- Adoption ------------------------------------------------------------ */

/* Stores `doc` as this member's config and starts raft without
 * bootstrapping (through the control queue, on the next loop iteration).
 * Returns 0 or an error for the reply. */
static int adopt_config(struct repl *r, const uint8_t *doc, size_t len, struct cairn_error *err)
{
    struct repl_ctl *c;
    bool busy;
    int rc;

    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "adopt config: out of memory");
    }
    rc = repl_cfg_load(doc, len, &c->cfg, err);
    if (rc != 0) {
        goto err_ctl;
    }
    if (strcmp(c->cfg.set_name, r->set_name) != 0) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidReplicaSetConfig,
                               "replica set name %s does not match this member's %s",
                               c->cfg.set_name, r->set_name);
        goto err_cfg;
    }
    if (repl_cfg_find(&c->cfg, r->me) < 0) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidReplicaSetConfig,
                               "this member (%s) is not in the config", r->me);
        goto err_cfg;
    }
    rc = repl_cfg_resolve(&c->cfg, err);
    if (rc != 0) {
        goto err_cfg;
    }
    pthread_mutex_lock(&r->smu);
    busy = r->st.initiated || r->initiating;
    if (!busy) {
        r->initiating = true;
    }
    pthread_mutex_unlock(&r->smu);
    if (busy) {
        rc = cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_AlreadyInitialized,
                               "already initialized or initializing");
        goto err_cfg;
    }
    rc = repl_store_config(r, &c->cfg, false, err);
    if (rc != 0) {
        goto err_initiating;
    }
    cairn_log(CAIRN_LOG_INFO, "repl", "adopting the config of replica set %s (version %d)",
              c->cfg.set_name, c->cfg.version);
    c->type = REPL_CTL_START;
    c->bootstrap = false;
    c->detached = true;
    repl_post_ctl_async(r, c);
    return 0;

err_initiating:
    pthread_mutex_lock(&r->smu);
    r->initiating = false;
    pthread_mutex_unlock(&r->smu);
err_cfg:
    repl_cfg_free(&c->cfg);
err_ctl:
    free(c);
    return rc;
}

/* ---- Control requests (served) ------------------------------------------ */

static int reply_error(bson_t *reply, const struct cairn_error *err)
{
    bson_reinit(reply);
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", err->msg);
    BSON_APPEND_INT32(reply, "code", err->mongo_code != 0 ? err->mongo_code : MONGO_InternalError);
    return 0;
}

static int serve_heartbeat(struct repl *r, const bson_t *req, bson_t *reply)
{
    struct cairn_error err;
    const char *set = get_str(req, "replSetHeartbeat");
    int64_t from_id = get_i64(req, "id", -1);
    int idx;
    bson_iter_t it;

    if (set == NULL || strcmp(set, r->set_name) != 0) {
        cairn_error_mongo(&err, CAIRN_EINVAL, MONGO_InconsistentReplicaSetNames,
                          "replica set names do not match: ours is %s, the sender's is %s",
                          r->set_name, set != NULL ? set : "(none)");
        return reply_error(reply, &err);
    }
    if (r->cfg.doc == NULL && bson_iter_init_find(&it, req, "config") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *doc;
        uint32_t len;
        bool pending;
        pthread_mutex_lock(&r->smu);
        pending = r->initiating;
        pthread_mutex_unlock(&r->smu);
        bson_iter_document(&it, &len, &doc);
        if (!pending && adopt_config(r, doc, len, &err) != 0) {
            cairn_log(CAIRN_LOG_WARN, "repl", "config from %s not adopted: %s",
                      get_str(req, "me") ? get_str(req, "me") : "?", err.msg);
        }
    }
    idx = r->cfg.doc != NULL ? peer_index(r, from_id) : -1;
    if (idx >= 0 && idx != r->self) {
        struct repl_peer *p = &r->peers[idx];
        p->last_hb_recv_ms = cairn_wall_ms();
        note_peer_view(r, p, req);
        publish_peers(r);
    }
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    BSON_APPEND_UTF8(reply, "set", r->set_name);
    append_self(r, reply);
    if (r->cfg.doc != NULL && get_i64(req, "v", -1) < r->cfg.version) {
        /* The sender runs an older config: it may have been removed by the
         * newer one and never see the entry that says so. */
        bson_t cfg;
        if (bson_init_static(&cfg, r->cfg.doc, r->cfg.doc_len)) {
            BSON_APPEND_DOCUMENT(reply, "config", &cfg);
        }
    }
    return 0;
}

static int serve_initiate_check(struct repl *r, const bson_t *req, bson_t *reply)
{
    struct cairn_error err;
    struct repl_cfg cfg;
    const char *set = get_str(req, "replSetInitiateCheck");
    bson_iter_t it;
    const uint8_t *doc;
    uint32_t len;
    bool busy;

    pthread_mutex_lock(&r->smu);
    busy = r->st.initiated || r->initiating;
    pthread_mutex_unlock(&r->smu);
    if (busy || r->cfg.doc != NULL) {
        cairn_error_mongo(&err, CAIRN_EEXISTS, MONGO_AlreadyInitialized,
                          "%s is already initialized", r->me);
        return reply_error(reply, &err);
    }
    if (set == NULL || strcmp(set, r->set_name) != 0) {
        cairn_error_mongo(&err, CAIRN_EINVAL, MONGO_InconsistentReplicaSetNames,
                          "%s runs replica set %s, not %s", r->me, r->set_name,
                          set != NULL ? set : "(none)");
        return reply_error(reply, &err);
    }
    if (!bson_iter_init_find(&it, req, "config") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        cairn_error_mongo(&err, CAIRN_EINVAL, MONGO_BadValue, "no config");
        return reply_error(reply, &err);
    }
    bson_iter_document(&it, &len, &doc);
    if (repl_cfg_load(doc, len, &cfg, &err) != 0) {
        return reply_error(reply, &err);
    }
    if (repl_cfg_find(&cfg, r->me) < 0) {
        cairn_error_mongo(&err, CAIRN_EINVAL, MONGO_InvalidReplicaSetConfig,
                          "%s does not find itself in the config", r->me);
        repl_cfg_free(&cfg);
        return reply_error(reply, &err);
    }
    repl_cfg_free(&cfg);
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    return 0;
}

int repl_members_control(void *arg, const bson_t *req, bson_t *reply)
{
    struct repl *r = arg;
    struct cairn_error err;
    bson_iter_t it;
    const char *cmd;

    if (r->closing) {
        cairn_error_mongo(&err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, "shutting down");
        return reply_error(reply, &err);
    }
    if (!bson_iter_init(&it, req) || !bson_iter_next(&it)) {
        cairn_error_mongo(&err, CAIRN_EINVAL, MONGO_BadValue, "empty control request");
        return reply_error(reply, &err);
    }
    cmd = bson_iter_key(&it);
    if (strcmp(cmd, "replSetHeartbeat") == 0) {
        return serve_heartbeat(r, req, reply);
    }
    if (strcmp(cmd, "replSetInitiateCheck") == 0) {
        return serve_initiate_check(r, req, reply);
    }
    if (strcmp(cmd, "ckptOpen") == 0 || strcmp(cmd, "ckptNext") == 0 ||
        strcmp(cmd, "ckptClose") == 0) {
        return repl_ckpt_serve(r, cmd, req, reply);
    }
    cairn_error_mongo(&err, CAIRN_EINVAL, MONGO_CommandNotFound, "unknown control request %.64s",
                      cmd);
    return reply_error(reply, &err);
}

/* ---- Heartbeats (sent) ---------------------------------------------------- */

static void hb_done(void *arg, int status, const bson_t *reply)
{
    struct hb_call *h = arg;
    struct repl *r = h->r;
    struct repl_peer *p;
    int64_t now = cairn_wall_ms();
    bson_iter_t it;

    if (status == CAIRN_ESHUTDOWN || r->closing || h->cfg_version != r->cfg.version ||
        r->cfg.doc == NULL || h->idx >= r->cfg.n) {
        free(h); /* invariant 1 */
        return;
    }
    p = &r->peers[h->idx];
    p->inflight = false;
    if (status == 0 && bson_iter_init_find(&it, reply, "ok") && bson_iter_as_bool(&it)) {
        if (!p->up) {
            p->up_since_ms = now;
            cairn_log(CAIRN_LOG_INFO, "repl", "member %s is up", r->cfg.m[h->idx].host);
        }
        p->up = true;
        p->last_hb_ms = now;
        p->ping_ms = (int)((cairn_mono_ns() - h->sent_ns) / 1000000u);
        p->errmsg[0] = '\0';
        note_peer_view(r, p, reply);
        check_lost_log(r, h->idx);
        if (p->cfg_version > r->cfg.version && bson_iter_init_find(&it, reply, "config") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
            /* A newer config, committed where it comes from. */
            const uint8_t *doc;
            uint32_t len;
            bson_iter_document(&it, &len, &doc);
            free(h);
            repl_config_applied(r, doc, len);
            return; /* the peers were reset */
        }
    } else {
        const char *msg = status == 0 ? get_str(reply, "errmsg") : cairn_strerror(status);
        if (p->up) {
            cairn_log(CAIRN_LOG_INFO, "repl", "member %s is down: %s", r->cfg.m[h->idx].host,
                      msg != NULL ? msg : "refused");
        }
        p->up = false;
        p->state = REPL_STATE_DOWN;
        p->cfg_version = -1; /* send the config again when it answers */
        snprintf(p->errmsg, sizeof p->errmsg, "%s", msg != NULL ? msg : "refused");
    }
    free(h);
    publish_peers(r);
}

static void send_heartbeat(struct repl *r, size_t i)
{
    struct repl_peer *p = &r->peers[i];
    struct hb_call *h;
    bson_t req;
    bool ok;
    int rc;

    h = malloc(sizeof *h);
    if (h == NULL) {
        return;
    }
    h->r = r;
    h->idx = i;
    h->cfg_version = r->cfg.version;
    h->sent_ns = cairn_mono_ns();
    bson_init(&req);
    ok = BSON_APPEND_UTF8(&req, "replSetHeartbeat", r->set_name) && append_self(r, &req);
    if (ok && p->cfg_version < r->cfg.version) {
        bson_t cfg;
        ok = bson_init_static(&cfg, r->cfg.doc, r->cfg.doc_len) &&
             BSON_APPEND_DOCUMENT(&req, "config", &cfg);
    }
    rc = ok ? repl_transport_call(&r->transport, r->cfg.m[i].raft_addr, &req, hb_timeout_ms(r),
                                  hb_done, h)
            : CAIRN_ENOMEM;
    bson_destroy(&req);
    if (rc != 0) {
        free(h);
        return;
    }
    p->inflight = true;
}

static void hb_timer_cb(uv_timer_t *t)
{
    struct repl *r = t->data;

    if (r->closing || r->cfg.doc == NULL || !r->transport_ready) {
        return;
    }
    repl_ckpt_expire(r, false);
    for (size_t i = 0; i < r->cfg.n; i++) {
        if ((int)i != r->self && !r->peers[i].inflight) {
            send_heartbeat(r, i);
        }
    }
}

void repl_members_heartbeat_now(struct repl *r)
{
    if (r->hb_timer_inited && !r->closing && r->cfg.n > 1) {
        uv_timer_start(&r->hb_timer, hb_timer_cb, 0, (uint64_t)r->cfg.heartbeat_ms);
    }
}

void repl_members_config_changed(struct repl *r)
{
    memset(r->peers, 0, sizeof r->peers);
    for (size_t i = 0; i < REPL_MAX_MEMBERS; i++) {
        r->peers[i].state = REPL_STATE_UNKNOWN;
        r->peers[i].cfg_version = -1;
        r->peers[i].primary_id = -1;
    }
    publish_peers(r);
    if (r->closing || r->cfg.n < 2) {
        return;
    }
    if (!r->hb_timer_inited) {
        uv_timer_init(&r->loop, &r->hb_timer);
        r->hb_timer.data = r;
        r->hb_timer_inited = true;
    }
    /* At once (the others learn the config now), then periodically. */
    uv_timer_start(&r->hb_timer, hb_timer_cb, 0, (uint64_t)r->cfg.heartbeat_ms);
}

/* ---- The initiate check ------------------------------------------------- */

static void check_finish(struct repl *r)
{
    struct repl_ctl *c = r->check_ctl;

    r->check_ctl = NULL;
    repl_ctl_done(r, c, c->err.code);
}

static void check_done(void *arg, int status, const bson_t *reply)
{
    struct check_call *k = arg;
    struct repl *r = k->r;
    struct repl_ctl *c = r->check_ctl;
    bson_iter_t it;

    if (c != NULL && c->err.code == 0) {
        const char *host = c->cfg.m[k->idx].host;
        if (status != 0) {
            cairn_error_mongo(&c->err, CAIRN_EIO, MONGO_NodeNotFound,
                              "replSetInitiate quorum check failed because not all proposed set "
                              "members responded affirmatively: %s failed with %s",
                              host, cairn_strerror(status));
        } else if (!bson_iter_init_find(&it, reply, "ok") || !bson_iter_as_bool(&it)) {
            const char *msg = get_str(reply, "errmsg");
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_NodeNotFound,
                              "replSetInitiate quorum check failed because not all proposed set "
                              "members responded affirmatively: %s failed with %s",
                              host, msg != NULL ? msg : "a refusal");
        }
    }
    free(k);
    if (c != NULL && --r->check_pending == 0) {
        check_finish(r);
    }
}

void repl_members_check_initiate(struct repl *r, struct repl_ctl *c)
{
    int self = repl_cfg_find(&c->cfg, r->me);
    bson_t req, cfg;

    memset(&c->err, 0, sizeof c->err);
    if (r->check_ctl != NULL || !r->transport_ready) {
        cairn_error_setf(&c->err, CAIRN_ESTATE, "the member transport is not serving yet");
        repl_ctl_done(r, c, c->err.code);
        return;
    }
    r->check_ctl = c;
    r->check_pending = 1; /* held until every call is issued */
    bson_init(&req);
    bson_init_static(&cfg, c->cfg.doc, c->cfg.doc_len);
    BSON_APPEND_UTF8(&req, "replSetInitiateCheck", r->set_name);
    BSON_APPEND_UTF8(&req, "from", r->me);
    BSON_APPEND_DOCUMENT(&req, "config", &cfg);
    for (size_t i = 0; i < c->cfg.n; i++) {
        struct check_call *k;
        int rc;
        if ((int)i == self) {
            continue;
        }
        k = malloc(sizeof *k);
        if (k != NULL) {
            k->r = r;
            k->idx = i;
        }
        rc = k == NULL ? CAIRN_ENOMEM
                       : repl_transport_call(&r->transport, c->cfg.m[i].raft_addr, &req,
                                             INITIATE_CHECK_TIMEOUT_MS, check_done, k);
        if (rc != 0) {
            free(k);
            if (c->err.code == 0) {
                cairn_error_mongo(&c->err, rc, MONGO_NodeNotFound,
                                  "replSetInitiate quorum check: cannot reach %s: %s",
                                  c->cfg.m[i].host, cairn_strerror(rc));
            }
            continue;
        }
        r->check_pending++;
    }
    bson_destroy(&req);
    if (--r->check_pending == 0) {
        check_finish(r);
    }
}

void repl_members_stop(struct repl *r)
{
    if (r->hb_timer_inited) {
        uv_timer_stop(&r->hb_timer);
    }
    if (r->check_ctl != NULL) {
        struct repl_ctl *c = r->check_ctl;
        r->check_ctl = NULL;
        cairn_error_mongo(&c->err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, "shutting down");
        repl_ctl_done(r, c, CAIRN_ESHUTDOWN);
    }
}
