/*
 * repl_int.h: private declarations shared by the files of src/repl
 * (config.c, waiters.c, repl.c, ...). Nothing outside src/repl includes
 * this header. It defines struct repl, whose fields are annotated with the
 * thread or lock that owns them.
 */
#ifndef CAIRN_REPL_REPL_INT_H
#define CAIRN_REPL_REPL_INT_H

#include <limits.h>
#include <pthread.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdatomic.h>
#include <uv.h>

#include "repl/host.h"
#include "repl/repl.h"

/* ---- Replica-set configuration (config.c) ------------------------------ */

#define REPL_SET_NAME_MAX 127
#define REPL_DEFAULT_PORT 27017

struct repl_cfg_member
{
    int id;                            /* member _id; raft id = id + 1 */
    char host[REPL_HOST_MAX + 1];      /* "host:port" as configured */
    char raft_addr[REPL_HOST_MAX + 8]; /* "host:port+offset", filled by repl_cfg_resolve */
    int votes;
    double priority;
    bool hidden;
};

/* A parsed configuration plus the stored BSON document (doc, malloc'd). */
struct repl_cfg
{
    char set_name[REPL_SET_NAME_MAX + 1];
    int version;
    size_t n;
    struct repl_cfg_member m[REPL_MAX_MEMBERS];
    bson_oid_t set_id; /* settings.replicaSetId (kept by reconfigs) */
    bool has_set_id;
    int election_timeout_ms; /* settings.electionTimeoutMillis */
    int heartbeat_ms;        /* settings.heartbeatIntervalMillis (member status) */
    uint8_t *doc;
    size_t doc_len;
};

/* Splits "host[:port]" into host (lower-cased) and port (default 27017).
 * Returns 0 or CAIRN_EINVAL (empty host, bad port, IPv6 literal, too long).
 * Any thread. */
int repl_hostport_split(const char *hp, char *host, size_t host_cap, int *port);

/* Resolves `host` to a dotted-quad IPv4 literal (getaddrinfo AF_INET; may
 * block on DNS). Returns 0 or CAIRN_EINVAL with a message. Any thread. */
int repl_resolve_ipv4(const char *host, char *out, size_t cap, struct cairn_error *err);

/* Validates a replSetInitiate config (NULL or empty = one member `me`)
 * against --replSet `set_name` and this member `me`, and builds the full
 * stored document (defaults filled, new replicaSetId) into out->doc.
 * Errors: CAIRN_EINVAL with mongo_code 93 InvalidReplicaSetConfig (or 2
 * BadValue for wrong field types), CAIRN_ENOMEM. On error *out holds
 * nothing to free. Any thread. */
int repl_cfg_build(const bson_t *in,
                   const char *set_name,
                   const char *me,
                   struct repl_cfg *out,
                   struct cairn_error *err);

/* Rebuilds cfg->doc from the parsed fields (after changing them, e.g. to
 * keep a replicaSetId). Returns 0 or CAIRN_ENOMEM (cfg->doc NULL then). */
int repl_cfg_rebuild(struct repl_cfg *cfg);

/* Parses a stored configuration document (copied into out->doc). Errors:
 * CAIRN_ECORRUPT, CAIRN_ENOMEM. Any thread. */
int repl_cfg_load(const uint8_t *doc, size_t len, struct repl_cfg *out, struct cairn_error *err);

/* Fills every member's raft_addr: its host with port + offset, unresolved
 * (the member transport resolves names when it connects, so Docker service
 * names and changing addresses work). Errors: CAIRN_EINVAL (bad host). */
int repl_cfg_resolve(struct repl_cfg *cfg, struct cairn_error *err);

/* Index of the member whose host is `me` (same host, case-insensitive,
 * and port), or -1. */
int repl_cfg_find(const struct repl_cfg *cfg, const char *me);

/* Appends the stored document under `key` with `term` inserted after
 * `version` (replSetGetConfig's shape). Returns 0 or CAIRN_ENOMEM. */
int repl_cfg_append(const struct repl_cfg *cfg, uint64_t term, bson_t *out, const char *key);

/* Deep-copies src into dst. Returns 0 or CAIRN_ENOMEM. */
int repl_cfg_copy(struct repl_cfg *dst, const struct repl_cfg *src);

/* Frees out->doc; the struct can be reused. */
void repl_cfg_free(struct repl_cfg *cfg);

/* ---- Write-concern waiters (waiters.c) --------------------------------- */

/* What a waiter waits for: a progress level of this member. */
enum repl_wait_kind {
    REPL_WK_APPLIED = 0, /* majority: applied (committed) ts >= ts */
    REPL_WK_DURABLE = 1, /* w:1 j:true: in this member's durable raft log */
    REPL_WK_HANDED = 2,  /* w:1: handed to raft_apply (has an index) */
    REPL_WK_W2 = 3,      /* w:N (N >= 2): durable on N members; kind W2 + N - 2 */
    REPL_WK__COUNT = REPL_WK_W2 + REPL_MAX_MEMBERS - 1
};

struct repl_waiter
{
    cairn_ts ts;
    int kind;
    uint64_t deadline_ns; /* cairn_mono_ns() deadline, 0 = none */
    repl_wait_cb cb;
    void *arg;
    struct repl_waiter *prev, *next;
};

/* Waiters of each kind in a list sorted by ts. Owned by the raft thread
 * (or by the closing thread after the raft thread has ended). */
struct repl_waitq
{
    struct repl_waiter *head[REPL_WK__COUNT];
    struct repl_waiter *tail[REPL_WK__COUNT];
    size_t n;
    size_t n_deadline;
};

/* Makes `q` empty. */
void repl_waitq_init(struct repl_waitq *q);

/* Inserts `w` (owned by the queue from now on) in ts order. */
void repl_waitq_insert(struct repl_waitq *q, struct repl_waiter *w);

/* Completes with status 0 every waiter of `kind` whose ts <= level. */
void repl_waitq_release(struct repl_waitq *q, int kind, cairn_ts level);

/* Completes every waiter (all kinds) whose ts <= `upto` with `status`.
 * upto = CAIRN_TS_MAX fails all. */
void repl_waitq_fail_upto(struct repl_waitq *q, cairn_ts upto, int status);

/* Fails waiters whose deadline is <= now_ns with CAIRN_ETIMEOUT. */
void repl_waitq_expire(struct repl_waitq *q, uint64_t now_ns);

/* ---- The replication object ------------------------------------------- */

/* One queued commit: its encoding (malloc'd) and ts. */
struct repl_pcommit
{
    cairn_ts ts;
    uint8_t *data;
    size_t len;
    struct repl_pcommit *next;
};

/* One raft_apply in flight (group commit of commits first_ts..last_ts). */
struct repl_prop
{
    struct raft_apply req;
    struct repl *r;
    raft_index index;
    cairn_ts last_ts;
    struct repl_prop *prev, *next;
};

/* A request to the raft thread: start raft, stop, the initiate check
 * (members.c), serve the member port. */
enum {
    REPL_CTL_START = 1,
    REPL_CTL_STOP = 2,
    REPL_CTL_CHECK = 3,
    REPL_CTL_SERVE = 4,
    REPL_CTL_STEPDOWN = 5,
    REPL_CTL_FREEZE = 6,
};

struct repl_ctl
{
    int type;
    struct repl_cfg cfg; /* START: the resolved config (moved to the raft thread);
                            CHECK: the config to check */
    bool bootstrap;      /* START: bootstrap with cfg (CANTBOOTSTRAP is fine) */
    bool detached;       /* nobody waits: freed (with cfg) when done */
    int secs;            /* STEPDOWN: stepDownSecs; FREEZE: seconds (0 = unfreeze) */
    int catch_up_secs;   /* STEPDOWN: secondaryCatchUpPeriodSecs */
    bool force;          /* STEPDOWN: force */
    int rc;
    struct cairn_error err;
    bool done; /* under qmu; signalled on qcv */
    struct repl_ctl *next;
};

/* What this member knows of another member, from heartbeats (members.c).
 * Raft thread. */
struct repl_peer
{
    bool up;                 /* its last heartbeat answer arrived */
    bool inflight;           /* a heartbeat call is in flight (invariant 2) */
    int state;               /* enum repl_state it reported (DOWN when silent) */
    int cfg_version;         /* config version it reported (-1 unknown) */
    int primary_id;          /* member _id of the primary it knows (-1 none) */
    uint64_t term;           /* its raft term */
    cairn_ts applied_ts;     /* its applied optime */
    uint64_t applied_term;   /* term of its newest applied entry */
    cairn_ts durable_ts;     /* newest ts durable in its log (as it reported) */
    int64_t last_hb_ms;      /* wall time of its last answer to us */
    int64_t last_hb_recv_ms; /* wall time of its last heartbeat to us */
    int64_t up_since_ms;     /* when it last came up */
    int ping_ms;             /* round trip of the last answered heartbeat */
    uint64_t last_index;     /* its raft log's last index */
    int64_t election_ms;     /* when it became primary, if it is (wall ms) */
    bool log_lost;           /* its log lost entries it acknowledged (resyncing) */
    bool electable;          /* it may campaign (not frozen, not stepping down) */
    char errmsg[128];        /* why the last heartbeat failed */
};

/* ---- The free-space floor (disk.c) ------------------------------------------ */

struct repl_disk
{
    uint64_t floor;         /* bytes; 0 = no floor. Immutable after repl_open */
    pthread_mutex_t mu;     /* one statvfs at a time (try-locked) */
    _Atomic uint64_t free;  /* bytes free at the last measure */
    _Atomic uint64_t at_ns; /* when measured (monotonic; 0 = never) */
    _Atomic uint64_t since; /* bytes accepted since then */
    atomic_bool low;        /* below the floor when last checked */
};

/* Sets the floor (< 0: REPL_DISK_FREE_FLOOR_MB; 0: none). repl_open. */
void repl_disk_init(struct repl *r, long long floor_mb);
void repl_disk_destroy(struct repl *r);
/* Counts `len` accepted bytes against the cached measure. Any thread. */
void repl_disk_note_accepted(struct repl *r, size_t len);
/* Raft thread's poll: notices (and logs) space coming back. */
void repl_disk_poll(struct repl *r);
/* Whether less than floor + `need` bytes are free (with no floor: less
 * than `need`). Any thread. */
bool repl_disk_starved(struct repl *r, uint64_t need);
/* Blocks the raft thread while applying an entry of `len` bytes would take
 * the free space below half the floor; 0 once it may apply, CAIRN_ESHUTDOWN
 * when repl_close began meanwhile (the entry is then not applied). */
int repl_disk_wait_apply(struct repl *r, raft_index index, size_t len);

struct repl
{
    /* Immutable after repl_open. */
    struct eng *eng;
    char set_name[REPL_SET_NAME_MAX + 1];
    char me[REPL_HOST_MAX + 1];
    char bind_ip[REPL_HOST_MAX + 1];
    char dbpath[PATH_MAX];
    char raft_dir[PATH_MAX];
    struct repl_key key; /* --keyFile (len 0 = none) */
    int port;
    int64_t start_wall_ms;

    /* Raft thread only. */
    pthread_t thread;
    bool thread_started;
    uv_loop_t loop;
    uv_async_t async;
    uv_check_t check;
    uv_timer_t poll_timer;
    uv_timer_t wc_timer;
    bool wc_timer_on;
    struct raft raft;
    struct raft_io io;                  /* raft_uv */
    struct repl_io iow;                 /* what raft uses: the wrapper around io */
    struct repl_host host;              /* FSM, doubt list, rollback (host.h; raft = &raft) */
    struct raft_uv_transport transport; /* member transport (transport.h) */
    bool transport_inited;              /* repl_transport_init done (close needed) */
    bool transport_ready;               /* serving the member port */
    bool transport_closing;             /* t->close called by us (raft never started) */
    bool uv_inited;                     /* raft_uv_init + raft_uv_tcp_init done */
    bool raft_inited;                   /* raft_init succeeded (raft_close needed) */
    bool raft_started;                  /* raft_start succeeded */
    bool closing;
    uint64_t stop_deadline_ns;  /* closing: raft_close once appends are stored, or then */
    struct repl_ctl *start_ctl; /* START failed after raft_init: completed on close */
    char raft_addr[64];
    char bind_addr[64];
    struct repl_cfg cfg;                      /* the active config */
    int self;                                 /* index in cfg.m, -1 if absent */
    struct repl_peer peers[REPL_MAX_MEMBERS]; /* parallel to cfg.m (members.c) */
    uv_timer_t hb_timer;
    bool hb_timer_inited;
    struct raft_change change; /* membership.c: the change in flight */
    bool change_inflight;
    bool change_warned;
    raft_id resync_id; /* membership.c: remove this server first (0 = none) */
    char change_what[160];
    struct repl_ctl *check_ctl; /* the initiate check in progress (members.c) */
    int check_pending;
    struct repl_waitq waitq;
    struct repl_prop *inflight_head, *inflight_tail;
    size_t n_inflight;
    bool leader;           /* raft_state was LEADER at the last poll */
    raft_term leader_term; /* the term we are (were) leader in */
    struct raft_barrier barrier;
    bool barrier_inflight; /* barrier submitted, callback not yet fired */
    bool barrier_done;     /* this term's barrier applied: writable once members joined */
    bool members_wait_logged;
    int seen_state;                /* raft state at the last poll (election logging) */
    raft_term seen_term;           /* raft term at the last poll */
    int64_t no_campaign_until_ms;  /* replSetFreeze / replSetStepDown (wall ms) */
    int64_t leader_since_ms;       /* when this member last became writable */
    struct raft_transfer transfer; /* stepdown.c */
    bool transfer_inflight;
    struct repl_ctl *stepdown_ctl; /* replSetStepDown in progress */
    int64_t stepdown_deadline_ms;
    raft_index seen_stored;
    uint64_t stall_since_ns; /* entries waiting for the log since then (0 = none) */
    bool stall_warned;
    uint64_t disk_stall_logged_ns;          /* when the disk-full stall was last logged (0 = not) */
    struct repl_disk disk;                  /* disk.c */
    atomic_bool fds_low;                    /* propose.c: the last descriptor probe failed */
    uint64_t fds_probed_ns;                 /* propose.c, raft thread: when last probed */
    cairn_ts handed_ts;                     /* newest ts handed to raft_apply */
    cairn_ts durable_ts;                    /* newest ts durable in the local raft log */
    cairn_ts applied_ts;                    /* newest ts applied to the engine */
    cairn_ts held_ts[REPL_MAX_MEMBERS + 1]; /* [N]: newest ts durable on N members (leader) */
    cairn_index applied_index;
    cairn_ts lost_ts; /* newest ts dropped (not proposed) or possibly lost (repl_note_lost) */
    const struct repl_cfg *start_cfg; /* in_start: the config raft starts with */
    unsigned snapshot_threshold;      /* raft_set_snapshot_threshold */
    unsigned snapshot_trailing;       /* raft_set_snapshot_trailing */
    /* checkpoint.c */
    struct repl_ckpt_src *ckpt_srcs; /* sessions served to other members */
    uint64_t ckpt_next_id;
    int install_state;     /* under smu: STARTUP2/RECOVERING while installing, else 0 */
    cairn_index min_valid; /* RECOVERING while applied_index is below it */

    /* Published progress, written by the raft thread, read anywhere. */
    _Atomic uint64_t pub_queued; /* newest ts accepted by repl_propose (client threads) */
    _Atomic uint64_t pub_handed;
    _Atomic uint64_t pub_durable;
    _Atomic uint64_t pub_applied;
    _Atomic uint64_t pub_lost; /* lost_ts, for repl_wait's w:1 fast path */
    /* Changed only by repl_set_writable, under smu and qmu. */
    atomic_bool writable;
    /* The write epoch: 0 while not writable, else the number of this
     * leadership period (see repl_write_epoch). Changed together with
     * `writable`, by the raft thread. */
    _Atomic uint64_t write_epoch;
    uint64_t epochs; /* raft thread: leadership periods so far */
    _Atomic uint64_t n_entries_proposed;
    _Atomic uint64_t n_commits_proposed;
    _Atomic uint64_t n_bytes_queued; /* encoded commit bytes accepted */
    _Atomic uint64_t n_ckpt_installs;
    _Atomic uint64_t n_ckpt_served;
    _Atomic uint64_t ckpt_last_bytes;
    _Atomic uint64_t ckpt_last_keys;
    _Atomic uint64_t ckpt_last_ms;
    atomic_bool debug_pause_install; /* repl_debug_pause_install (tests) */

    /* Proposal and control queue. */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    struct repl_pcommit *q_head, *q_tail;
    size_t q_len;
    size_t q_bytes;           /* encoded bytes queued (backpressure) */
    pthread_cond_t q_space;   /* signalled when the queue shrinks */
    cairn_ts q_last_ts;       /* newest ts ever enqueued */
    struct repl_waiter *w_in; /* waiters handed over by other threads */
    struct repl_ctl *ctl_head, *ctl_tail;
    bool stopping;                 /* no new proposals, waiters or controls */
    atomic_bool hold;              /* repl_debug_hold_proposals (tests) */
    atomic_int debug_fail_applies; /* repl_debug_fail_proposals (tests) */
    bool loop_done;

    /* Applied-ts waiters (repl_wait_applied): signalled after each apply. */
    pthread_mutex_t amu;
    pthread_cond_t acv;
    atomic_int n_applied_waiters;
    atomic_bool applied_stopping; /* repl_close began: waiters give up */

    /* Leadership change callback, under cbmu (an error-checking mutex),
     * which repl_set_writable holds while it runs the callback, so that
     * unregistering waits for a callback in progress. Lock order: cbmu,
     * smu, qmu. */
    pthread_mutex_t cbmu;
    repl_leadership_cb leader_cb;
    void *leader_cb_arg;

    /* replSetReconfig: held from repl_reconfig_begin to repl_reconfig_end. */
    pthread_mutex_t reconfig_mu;

    /* Status copy (and the config document) for other threads. */
    pthread_mutex_t smu;
    struct repl_status st;
    struct repl_cfg scfg; /* doc == NULL before initiation */
    bool initiating;      /* a repl_initiate is running */

    /* Topology counter (status.c): bumped under smu by the publish
     * functions, read anywhere; its callback, set and called under smu. */
    _Atomic uint64_t topo_counter;
    repl_topology_cb topo_cb;
    void *topo_cb_arg;
};

static inline cairn_ts ts_max(cairn_ts a, cairn_ts b)
{
    return a > b ? a : b;
}

/* Records that commits up to `ts` were dropped or their outcome is
 * unknown: their waiters fail (repl_add_waiter, repl_wait). Raft thread. */
static inline void repl_note_lost(struct repl *r, cairn_ts ts)
{
    r->lost_ts = ts_max(r->lost_ts, ts);
    atomic_store(&r->pub_lost, r->lost_ts);
}

/* ---- repl.c: controls and the stored config -------------------------------- */

/* Completes control `c` with `rc`: wakes the thread waiting for it, or
 * frees it when detached. Raft thread. */
void repl_ctl_done(struct repl *r, struct repl_ctl *c, int rc);

/* Queues control `c` for the raft thread without waiting (c->detached
 * must be set: the raft thread frees it). Any thread. */
void repl_post_ctl_async(struct repl *r, struct repl_ctl *c);

/* Stores `cfg` as this member's config, with whether this member
 * bootstraps the raft log with it (only the initiating member does).
 * Errors: those of eng_meta_put. Any thread. */
int repl_store_config(struct repl *r,
                      const struct repl_cfg *cfg,
                      bool bootstrap,
                      struct cairn_error *err);

/* ---- members.c (raft thread) ---------------------------------------------- */

/* The member transport's control handler (transport.h): heartbeats and the
 * initiate check. */
int repl_members_control(void *arg, const bson_t *req, bson_t *reply);

/* r->cfg changed (or raft started with it): resets the peers and
 * (re)starts heartbeats when there are other members. */
void repl_members_config_changed(struct repl *r);

/* Asks every other member of c->cfg whether it can join; completes `c`
 * (repl_ctl_done) when all have answered, with c->err set on a refusal. */
void repl_members_check_initiate(struct repl *r, struct repl_ctl *c);

/* Sends a round of heartbeats now (this member's state changed). */
void repl_members_heartbeat_now(struct repl *r);

/* Stops heartbeats and fails a check in progress (shutdown). */
void repl_members_stop(struct repl *r);

/* ---- reconfig.c (raft thread) --------------------------------------------- */

/* The FSM applied a replicated config (ENG_OP_CONFIG): installs it if it is
 * newer than the active one. Stops the member if it cannot be read. */
void repl_config_applied(struct repl *r, const uint8_t *doc, size_t len);

/* ---- membership.c (raft thread) ------------------------------------------- */

/* On the leader with its barrier applied: submits the next raft
 * configuration change that brings raft's configuration closer to r->cfg
 * (add, assign a role, remove), if none is in flight. */
void repl_membership_poll(struct repl *r);

/* Takes server `id` out of raft's configuration so that the next poll
 * adds it back with fresh replication progress (its log was lost). */
void repl_membership_resync(struct repl *r, raft_id id);

/* Whether raft's configuration holds a majority of r->cfg's voters as
 * voters, so that the leader may accept writes. */
bool repl_membership_writable(struct repl *r);

/* ---- rollback.c (raft thread; the doubt list is in host.h) ---------------- */

/* Saves what queued commits (acknowledged w:1, never proposed) wrote to
 * rollback files. `list` stays the caller's. */
void repl_rollback_queued(struct repl *r, struct repl_pcommit *list, const char *why);

/* Saves what the commits of one encoded entry (header, commits, padding:
 * a group raft refused to take) wrote to rollback files. `data` stays the
 * caller's. */
void repl_rollback_entry(struct repl *r, const uint8_t *data, size_t len, const char *why);

/* ---- stepdown.c (raft thread) --------------------------------------------- */

/* Whether this member may try to become primary: not with priority 0 or
 * votes 0, not while frozen or after a step-down. */
bool repl_may_campaign(struct repl *r);

/* On the leader: drives a replSetStepDown in progress and priority
 * takeover. */
void repl_stepdown_poll(struct repl *r);

/* Starts a STEPDOWN control (completed later) / applies a FREEZE one. */
void repl_stepdown_start(struct repl *r, struct repl_ctl *c);
void repl_freeze_apply(struct repl *r, struct repl_ctl *c);

/* Leadership was lost: a step-down in progress succeeded. */
void repl_stepdown_on_lost(struct repl *r);

/* Fails a step-down in progress (shutdown). */
void repl_stepdown_abort(struct repl *r);

/* Posts control `c` to the raft thread and waits for it (repl.c); on
 * failure copies c->err into `err` (may be NULL). Not the raft thread. */
int repl_post_ctl_wait(struct repl *r, struct repl_ctl *c, struct cairn_error *err);

/* ---- host.c ---------------------------------------------------------------- */

/* Initialises r->host for production (repl_host_init with r's engine and
 * dbpath, raft = &r->raft) with calls back into r: repl_on_applied,
 * repl_config_applied, repl_may_campaign, repl_publish_status, snapshots
 * on every member, checkpoints from checkpoint.c. repl_open. */
void repl_host_bind(struct repl *r);

/* ---- checkpoint.c (raft thread) --------------------------------------------- */

struct repl_ckpt_src;

/* Serves the checkpoint control requests ckptOpen, ckptNext and ckptClose
 * (`cmd`), always answering in `reply` (errors as {ok: 0, errmsg, code});
 * returns 0. */
int repl_ckpt_serve(struct repl *r, const char *cmd, const bson_t *req, bson_t *reply);

/* Closes served sessions idle for too long (all of them with `all`, at
 * shutdown). */
void repl_ckpt_expire(struct repl *r, bool all);

/* fsm_restore: the snapshot's index is above the applied watermark.
 * Fetches a checkpoint from the leader or another member and installs it,
 * blocking the raft thread until done (retrying other sources with
 * backoff). Returns 0, or CAIRN_ESHUTDOWN when the member shuts down
 * first (then r->host.install_broken is set). */
int repl_ckpt_install(struct repl *r, uint64_t snap_index);

/* ---- waiters.c (raft thread) ------------------------------------------------ */

/* Called by the FSM after an entry was applied to the engine (index, ts of
 * its last commit): releases majority waiters and publishes progress. */
void repl_on_applied(struct repl *r, cairn_index index, cairn_ts ts);

/* Completes every waiter whose level is reached (applied, durable, handed,
 * held by N members). */
void repl_release_all(struct repl *r);

/* On the leader: recomputes held_ts[N] from raft's match indexes (durable
 * acknowledgements) and releases w:N waiters. */
void repl_update_held(struct repl *r);

/* Starts or stops the wtimeout timer to match the waiters with deadlines. */
void repl_wc_timer_update(struct repl *r);

/* Takes a waiter handed over by another thread: completes it at once when
 * decided (level reached, shutting down, entry lost, not writable), else
 * queues it. */
void repl_add_waiter(struct repl *r, struct repl_waiter *w);

/* ---- leader.c (raft thread) ------------------------------------------------- */

/* Polls raft's state: leadership gained (submit the barrier) or lost,
 * durability progress, queued proposals. Also the loop's check and timer
 * callbacks, which call it. */
void repl_poll_state(struct repl *r);
void repl_check_cb(uv_check_t *h);
void repl_poll_timer_cb(uv_timer_t *t);

/* Leadership is gone (or its outcome unknown): stops writes at once, hides
 * the overlay, drops what was not proposed and fails every waiter. `why`
 * is logged. */
void repl_lose_leadership(struct repl *r, const char *why);

/* ---- propose.c (raft thread unless said otherwise) -------------------------- */

/* Hands queued commits to raft as group-commit entries while leader and
 * below the flow-control bound; drops them when not writable. */
void repl_drive_proposals(struct repl *r);

/* Frees the queued commits (they will never be proposed). With
 * `save_why` (raft thread only), what they wrote is first saved to
 * rollback files (they were acknowledged to w:1). Returns the newest
 * dropped ts (0 if none). Any thread (takes qmu). */
cairn_ts repl_drop_queue(struct repl *r, const char *save_why);

/* Removes an in-flight proposal from the list (does not free it). */
void repl_inflight_unlink(struct repl *r, struct repl_prop *p);

/* ---- status.c ------------------------------------------------------------- */

/* Copies the raft thread's view into the status copy (smu). Raft thread. */
void repl_publish_status(struct repl *r);

/* The same with smu already held. Raft thread. */
void repl_publish_status_locked(struct repl *r);

/* ---- leader.c: leadership changes (raft thread) ---------------------------- */

/* Makes this member writable (a new write epoch) or not, publishes the
 * status, and then tells the leadership callback, all under cbmu (see
 * repl_set_leadership_cb). Raft thread. */
void repl_set_writable(struct repl *r, bool writable);

/* Installs r->cfg into the status copy. Raft thread. */
void repl_publish_config(struct repl *r);

#endif /* CAIRN_REPL_REPL_INT_H */
