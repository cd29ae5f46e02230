/*
 * repl.c: the replication object's life (see repl.h): the raft thread and
 * its libuv loop, raft start-up (bootstrap once, then start), initiation,
 * the control queue, and shutdown. The proposal queue is in propose.c,
 * leadership in leader.c, waiters in waiters.c, the status copy in
 * status.c, the state machine in fsm.c.
 *
 * Threads: every raft call and every handle lives on the raft thread. Other
 * threads touch only the queue (qmu), the status copy (smu), the published
 * atomics and uv_async_send.
 *
 * Lock order: cbmu, smu, qmu (repl_set_writable holds all three at once;
 * cbmu alone while the leadership callback runs); no lock is held while a
 * waiter callback runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "repl/repl_int.h"
#include "repl/transport.h"

/* Segments hold a whole entry (up to 24 MiB, REPL_MAX_COMMIT_BYTES plus
 * group commit); see docs/decisions.md §16 for the capacity threshold. */
#define SEGMENT_SIZE ((size_t)32 << 20)
#define MAX_INFLIGHT_ENTRIES 1024
#define POLL_INTERVAL_MS 10

/* ---- Start and stop (raft thread) -------------------------------------- */

void repl_ctl_done(struct repl *r, struct repl_ctl *c, int rc)
{
    if (c->detached) {
        if (c->type == REPL_CTL_START) {
            /* An adopted config (members.c): the initiation it stood for
             * is over, started or not. */
            if (rc != 0) {
                cairn_log(CAIRN_LOG_ERROR, "repl", "starting with the adopted config: %s",
                          c->err.msg);
            }
            pthread_mutex_lock(&r->smu);
            r->initiating = false;
            pthread_mutex_unlock(&r->smu);
        }
        repl_cfg_free(&c->cfg);
        free(c);
        return;
    }
    pthread_mutex_lock(&r->qmu);
    c->rc = rc;
    c->done = true;
    pthread_cond_broadcast(&r->qcv);
    pthread_mutex_unlock(&r->qmu);
}

/* Opens the member transport (once) and serves the member port, so that
 * heartbeats and the initiate check reach a member before raft runs.
 * Raft thread. */
static int transport_open(struct repl *r, struct cairn_error *err)
{
    struct repl_transport_options o;
    char addr[REPL_HOST_MAX + 8];
    char host[REPL_HOST_MAX + 1];
    int port, rc;

    if (r->transport_ready) {
        return 0;
    }
    if (!r->transport_inited) {
        memset(&o, 0, sizeof o);
        o.bind_address = r->bind_addr[0] ? r->bind_addr : NULL;
        o.key = r->key.data;
        o.key_len = r->key.len;
        o.control = repl_members_control;
        o.control_arg = r;
        rc = repl_transport_init(&r->transport, &r->loop, &o, err);
        if (rc != 0) {
            return rc;
        }
        r->transport_inited = true;
    }
    if (repl_hostport_split(r->me, host, sizeof host, &port) != 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "bad member address %s", r->me);
    }
    snprintf(addr, sizeof addr, "%.*s:%d", REPL_HOST_MAX - 2, host,
             (port + CAIRN_RAFT_PORT_OFFSET) & 0xffff);
    rc = repl_transport_serve(&r->transport, 0, addr, err);
    if (rc != 0) {
        return rc;
    }
    r->transport_ready = true;
    return 0;
}

static void transport_closed_cb(struct raft_uv_transport *t)
{
    (void)t;
}

static void handle_close_cb(uv_handle_t *h)
{
    (void)h;
}

/* Frees raft_uv's memory (the io and the transport), once none of its
 * callbacks can run any more (see raft_closed_cb). */
static void release_uv(struct repl *r)
{
    if (r->uv_inited) {
        raft_uv_close(&r->io);
        r->uv_inited = false;
    }
    if (r->transport_inited && !r->raft_inited) {
        repl_transport_close(&r->transport);
        r->transport_inited = false;
        r->transport_ready = false;
        r->transport_closing = false;
    }
}

/* Closes our handles: the loop ends once raft_uv's are closed too.
 * repl_close then releases raft_uv's memory. */
static void finish_close(struct repl *r)
{
    if (r->transport_inited && !r->raft_inited && !r->transport_closing) {
        /* raft never took the transport (raft_close closes it otherwise). */
        r->transport_closing = true;
        r->transport.close(&r->transport, transport_closed_cb);
    }
    if (r->hb_timer_inited) {
        uv_close((uv_handle_t *)&r->hb_timer, handle_close_cb);
        r->hb_timer_inited = false;
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
    /* raft_uv may still run callbacks after reporting its close (seen with
     * 0.15; 0.22's uvMaybeFireCloseCb has the same shape):
     * uvMaybeFireCloseCb does not wait for the segment writers that its
     * close finalizes, and a writer whose handles finish closing later
     * calls it again from its close callback (cowsql/raft#45, fixed there
     * after 0.15). Freeing raft_uv here made that a use after free that
     * crashed repl_close in a few percent of test runs on a loaded machine
     * (every time when the raft thread pauses right after raft_close). So
     * its memory lives until the loop has ended, and the late
     * uvMaybeFireCloseCb must not call raft's io close callback a second
     * time (a double free): it returns at once while the transport's data
     * is set, which raft_uv cleared when the transport closed and does not
     * read otherwise. */
    r->transport.data = r;
    if (r->start_ctl != NULL) {
        /* raft was closed because START failed. Its memory is freed now,
         * because a later START reuses r->io and r->transport: raft_start
         * failed (or never ran), so nothing was appended and there is no
         * segment writer whose close could end late. */
        struct repl_ctl *c = r->start_ctl;
        struct cairn_error err;
        r->start_ctl = NULL;
        release_uv(r);
        /* raft closed the transport with it: serve the member port again. */
        if (!r->closing && transport_open(r, &err) != 0) {
            cairn_log(CAIRN_LOG_ERROR, "repl", "member port: %s", err.msg);
        }
        repl_ctl_done(r, c, c->rc);
    }
    if (r->closing) {
        finish_close(r);
    }
}

/* Closes raft, which closes raft_uv and with it the member transport. */
static void close_raft(struct repl *r)
{
    r->transport_closing = true;
    raft_close(&r->raft, raft_closed_cb);
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
        close_raft(r);
        return -1;
    }
    if (r->uv_inited) {
        raft_uv_close(&r->io);
        r->uv_inited = false;
    }
    return CAIRN_EIO;
}

/* raft's own heartbeat: a tenth of the election timeout, never the
 * 150/15 pair that raft silently triples (raft-0.22.md §2). */
static unsigned raft_heartbeat_ms(int election_timeout_ms)
{
    unsigned hb = (unsigned)election_timeout_ms / 10;
    if (hb < 10) {
        hb = 10;
    }
    if (election_timeout_ms == 150 && hb == 15) {
        hb = 14;
    }
    return hb;
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

    /* The member transport serves already (transport_open); raft_uv takes
     * it over, and raft_close will close it. */
    if (transport_open(r, &c->err) != 0) {
        return c->err.code;
    }
    rv = raft_uv_init(&r->io, &r->loop, r->raft_dir, &r->transport);
    if (rv != 0) {
        cairn_error_setf(&c->err, CAIRN_EIO, "raft io in %s: %s", r->raft_dir, raft_strerror(rv));
        return CAIRN_EIO;
    }
    r->uv_inited = true;
    repl_io_wrap(&r->iow, &r->host, &r->io);
    raft_uv_set_auto_recovery(&r->io, false);
    raft_uv_set_segment_size(&r->io, SEGMENT_SIZE);
    rv = raft_init(&r->raft, &r->iow.outer, &r->host.fsm, (raft_id)me->id + 1, r->raft_addr);
    if (rv != 0) {
        cairn_error_setf(&c->err, CAIRN_EIO, "raft init in %s: %s (%s)", r->raft_dir,
                         raft_strerror(rv), r->io.errmsg);
        raft_uv_close(&r->io);
        r->uv_inited = false;
        return CAIRN_EIO;
    }
    r->raft_inited = true;
    r->raft.data = r;
    if (getenv("LIBRAFT_TRACE") == NULL) {
        /* raft 0.22 formats every trace message with snprintf before its
         * default (stderr) tracer drops it: ~11 per commit on a leader,
         * ~6% of its user-space instructions. Without a tracer nothing is
         * formatted; LIBRAFT_TRACE keeps raft's own tracing for debugging. */
        r->raft.tracer = NULL;
        raft_uv_set_tracer(&r->io, NULL);
    }
    /* Tunables: raft_init resets them, so only now. */
    raft_set_election_timeout(&r->raft, (unsigned)c->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, raft_heartbeat_ms(c->cfg.election_timeout_ms));
    raft_set_pre_vote(&r->raft, true);
    /* Descriptor snapshots (fsm.c) bound raft's in-memory log. */
    raft_set_snapshot_threshold(&r->raft, r->snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, r->snapshot_trailing);
    /* Off: raft_uv reports its prepared segment space (not the disk's free
     * space) as 16-bit KiB, which wraps with our 32 MiB segments and then
     * refuses every write (raft-0.22.md §0.1). disk.c's floor does the job
     * (docs/decisions.md §23, §36). */
    raft_set_capacity_threshold(&r->raft, 0);
    /* 0.22 caps unacknowledged entries per follower (default 32, trap T9);
     * propose.c's MAX_UNCOMMITTED is the bound we want. */
    raft_set_max_inflight_entries(&r->raft, MAX_INFLIGHT_ENTRIES);
    if (c->bootstrap) {
        /* This member alone: the leader brings the others in
         * (membership.c), so no other member ever writes index 1. */
        struct raft_configuration conf;
        raft_configuration_init(&conf);
        rv = raft_configuration_add(&conf, (raft_id)me->id + 1, me->raft_addr, RAFT_VOTER);
        if (rv == 0) {
            rv = raft_bootstrap(&r->raft, &conf);
        }
        raft_configuration_close(&conf);
        if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) {
            return start_fail(r, c, rv, "bootstrap");
        }
    }
    r->host.in_start = true;
    r->start_cfg = &c->cfg;
    rv = raft_start(&r->raft);
    r->host.in_start = false;
    r->start_cfg = NULL;
    if (rv != 0) {
        return start_fail(r, c, rv, "start");
    }
    r->raft_started = true;
    repl_cfg_free(&r->cfg);
    r->cfg = c->cfg;
    c->cfg.doc = NULL; /* moved */
    r->self = self;
    repl_publish_config(r);
    cairn_log(CAIRN_LOG_INFO, "repl", "raft started: set %s, node %llu at %s, %zu member(s)%s",
              r->cfg.set_name, (unsigned long long)me->id + 1, r->raft_addr, r->cfg.n,
              c->bootstrap ? "" : " (log from the leader)");
    repl_members_config_changed(r);
    repl_poll_state(r);
    return 0;
}

/* A clean shutdown makes what it handed to raft durable first: w:1
 * commits were acknowledged when queued, and raft_close cancels appends in
 * flight. So raft_close waits, bounded, until every entry appended so far
 * is stored. (0.15 also crashed closing with several appends in flight;
 * 0.22 does not.) */
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
    close_raft(r);
}

static void begin_stop(struct repl *r)
{
    cairn_ts dropped;

    /* w:1 commits were acknowledged when queued: hand what is queued to
     * raft before stopping, so that the wait for pending appends below
     * makes them durable (flow control may still leave some behind). */
    if (atomic_load(&r->writable)) {
        repl_drive_proposals(r);
    }
    r->closing = true;
    if (atomic_load(&r->writable)) {
        repl_set_writable(r, false);
    }
    dropped = repl_drop_queue(r, "shutdown");
    if (dropped != 0) {
        cairn_log(CAIRN_LOG_WARN, "repl",
                  "shutdown: commits up to ts %u:%u were still queued and are dropped",
                  CAIRN_TS_SECS(dropped), CAIRN_TS_INC(dropped));
    }
    repl_note_lost(r, dropped);
    repl_release_all(r);
    repl_waitq_fail_upto(&r->waitq, CAIRN_TS_MAX, CAIRN_ESHUTDOWN);
    repl_members_stop(r);
    repl_stepdown_abort(r);
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
        close_raft(r);
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
        repl_add_waiter(r, w);
        w = next;
    }
    while (c != NULL) {
        struct repl_ctl *next = c->next;
        if (c->type == REPL_CTL_START) {
            int rc = handle_start(r, c);
            if (rc >= 0) {
                repl_ctl_done(r, c, rc);
            }
        } else if (c->type == REPL_CTL_CHECK) {
            repl_members_check_initiate(r, c);
        } else if (c->type == REPL_CTL_STEPDOWN) {
            repl_stepdown_start(r, c);
        } else if (c->type == REPL_CTL_FREEZE) {
            repl_freeze_apply(r, c);
        } else if (c->type == REPL_CTL_SERVE) {
            repl_ctl_done(r, c, transport_open(r, &c->err));
        } else if (!r->closing) {
            begin_stop(r);
        }
        c = next;
    }
    repl_drive_proposals(r);
}

static void *thread_main(void *arg)
{
    struct repl *r = arg;
    uv_run(&r->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Appends `c` to the control queue. qmu held. */
static void ctl_enqueue_locked(struct repl *r, struct repl_ctl *c)
{
    c->next = NULL;
    if (r->ctl_tail != NULL) {
        r->ctl_tail->next = c;
    } else {
        r->ctl_head = c;
    }
    r->ctl_tail = c;
}

int repl_post_ctl_wait(struct repl *r, struct repl_ctl *c, struct cairn_error *err)
{
    pthread_mutex_lock(&r->qmu);
    if (r->stopping) {
        pthread_mutex_unlock(&r->qmu);
        return cairn_error_mongo(err, CAIRN_ESHUTDOWN, MONGO_ShutdownInProgress, "shutting down");
    }
    ctl_enqueue_locked(r, c);
    pthread_mutex_unlock(&r->qmu);
    uv_async_send(&r->async);
    pthread_mutex_lock(&r->qmu);
    while (!c->done) {
        pthread_cond_wait(&r->qcv, &r->qmu);
    }
    pthread_mutex_unlock(&r->qmu);
    if (c->rc != 0 && err != NULL) {
        *err = c->err;
        err->code = c->rc;
    }
    return c->rc;
}

void repl_post_ctl_async(struct repl *r, struct repl_ctl *c)
{
    pthread_mutex_lock(&r->qmu);
    ctl_enqueue_locked(r, c);
    pthread_mutex_unlock(&r->qmu);
    uv_async_send(&r->async);
}

int repl_store_config(struct repl *r,
                      const struct repl_cfg *cfg,
                      bool bootstrap,
                      struct cairn_error *err)
{
    /* The flag first: a crash between the two leaves no config, so the
     * flag is read only beside the config it was written with. */
    int rc = eng_meta_put(r->eng, "rsbootstrap",
                          bootstrap ? (const uint8_t *)"1" : (const uint8_t *)"0", 1, err);
    if (rc == 0) {
        rc = eng_meta_put(r->eng, "rsconfig", cfg->doc, cfg->doc_len, err);
    }
    if (rc != 0) {
        cairn_error_wrapf(err, "store replica set config");
    }
    return rc;
}

/* Whether this member bootstraps raft with its stored config: the
 * initiating member of a set (and every one-member set; also a config
 * stored before the flag existed, all of which were one-member sets). */
static bool stored_bootstrap(struct repl *r, const struct repl_cfg *cfg)
{
    struct cairn_buf b = CAIRN_BUF_INIT;
    struct cairn_error err;
    bool bootstrap = cfg->n == 1;

    if (eng_meta_get(r->eng, "rsbootstrap", &b, &err) == 0) {
        bootstrap = b.len == 1 && b.data[0] == '1';
    }
    cairn_buf_free(&b);
    return bootstrap;
}

/* Resolves the config, then starts raft on the raft thread, bootstrapping
 * the log with it when `bootstrap`. Takes cfg. */
static int start_raft(struct repl *r, struct repl_cfg *cfg, bool bootstrap, struct cairn_error *err)
{
    struct repl_ctl c;
    int rc;

    memset(&c, 0, sizeof c);
    c.type = REPL_CTL_START;
    c.cfg = *cfg;
    cfg->doc = NULL;
    c.bootstrap = bootstrap;
    rc = repl_cfg_resolve(&c.cfg, err);
    if (rc == 0) {
        rc = repl_post_ctl_wait(r, &c, err);
    }
    repl_cfg_free(&c.cfg);
    return rc;
}

/* The initiate check (members.c): every other member must answer that it
 * can join. Not the raft thread. */
static int check_members(struct repl *r, const struct repl_cfg *cfg, struct cairn_error *err)
{
    struct repl_ctl c;
    int rc;

    memset(&c, 0, sizeof c);
    c.type = REPL_CTL_CHECK;
    rc = repl_cfg_copy(&c.cfg, cfg);
    if (rc == 0) {
        rc = repl_cfg_resolve(&c.cfg, err);
    }
    if (rc == 0) {
        rc = repl_post_ctl_wait(r, &c, err);
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
    if (rc == 0 && cfg.n > 1) {
        rc = check_members(r, &cfg, err);
    }
    if (rc == 0) {
        rc = repl_store_config(r, &cfg, true, err);
    }
    if (rc == 0) {
        rc = start_raft(r, &cfg, true, err);
    }
    repl_cfg_free(&cfg);
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
    repl_key_clear(&r->key);
    repl_cfg_free(&r->cfg);
    repl_cfg_free(&r->scfg);
    pthread_mutex_destroy(&r->qmu);
    pthread_mutex_destroy(&r->smu);
    pthread_mutex_destroy(&r->amu);
    pthread_mutex_destroy(&r->reconfig_mu);
    pthread_mutex_destroy(&r->cbmu);
    repl_disk_destroy(r);
    pthread_cond_destroy(&r->acv);
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
    repl_disk_init(r, opts->disk_free_floor_mb);
    if (eng_catalog_lookup(r->eng, REPL_SETTINGS_NS, false, &r->host.settings_coll) != 0) {
        r->host.settings_coll = 0;
    }
    if (opts->key_file != NULL) {
        rc = repl_keyfile_load(opts->key_file, &r->key, err);
        if (rc != 0) {
            free(r);
            return rc;
        }
    }
    snprintf(r->set_name, sizeof r->set_name, "%s", opts->set_name);
    snprintf(r->me, sizeof r->me, "%s", opts->me);
    snprintf(r->bind_ip, sizeof r->bind_ip, "%s", opts->bind_ip ? opts->bind_ip : "");
    r->port = opts->port;
    r->self = -1;
    r->snapshot_threshold =
        opts->snapshot_threshold ? opts->snapshot_threshold : REPL_SNAPSHOT_THRESHOLD;
    r->snapshot_trailing =
        opts->snapshot_trailing ? opts->snapshot_trailing : REPL_SNAPSHOT_TRAILING;
    r->start_wall_ms = cairn_wall_ms();
    pthread_mutex_init(&r->qmu, NULL);
    pthread_mutex_init(&r->smu, NULL);
    pthread_mutex_init(&r->amu, NULL);
    pthread_mutex_init(&r->reconfig_mu, NULL);
    {
        /* Error-checking: see repl_set_leadership_cb. */
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
        pthread_mutex_init(&r->cbmu, &a);
        pthread_mutexattr_destroy(&a);
    }
    pthread_cond_init(&r->acv, NULL);
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
    snprintf(r->dbpath, sizeof r->dbpath, "%s", opts->dbpath);
    repl_host_bind(r);
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
    /* checkpoint.c invariant 1: an install's minValid outlives restarts. */
    if (eng_meta_get(r->eng, "minvalid", &meta, NULL) == 0 && meta.len == 8) {
        r->min_valid = cairn_load_be64(meta.data);
    }
    cairn_buf_reset(&meta);

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
    uv_check_start(&r->check, repl_check_cb);
    uv_timer_init(&r->loop, &r->poll_timer);
    uv_timer_start(&r->poll_timer, repl_poll_timer_cb, POLL_INTERVAL_MS, POLL_INTERVAL_MS);
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

    {
        struct repl_ctl serve;
        memset(&serve, 0, sizeof serve);
        serve.type = REPL_CTL_SERVE;
        rc = repl_post_ctl_wait(r, &serve, err);
    }
    if (rc != 0) {
        /* the member port could not be served: nothing to start */
    } else if (have_cfg) {
        rc = start_raft(r, &cfg, stored_bootstrap(r, &cfg), err);
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
    pthread_mutex_lock(&r->amu);
    atomic_store(&r->applied_stopping, true);
    pthread_cond_broadcast(&r->acv);
    pthread_mutex_unlock(&r->amu);
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
    /* The loop has ended: everything below is single-threaded, and no
     * raft_uv callback can run any more. */
    release_uv(r);
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
    (void)repl_drop_queue(r, NULL);
    repl_host_close(&r->host);
    repl_ckpt_expire(r, true);
    while (r->inflight_head != NULL) {
        struct repl_prop *p = r->inflight_head;
        repl_inflight_unlink(r, p);
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

uint64_t repl_settings_generation(struct repl *r)
{
    return atomic_load(&r->host.settings_gen);
}
