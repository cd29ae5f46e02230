/*
 * repl.h: replication, the only layer that includes raft.h and uv.h.
 *
 * It embeds raft 0.22.1 (cowsql's fork of canonical raft, through its
 * legacy raft_io/raft_uv API; see shared/reference/raft-0.22.md): one
 * thread runs the libuv loop with raft, drains the proposal queue (group
 * commit: every commit queued since the last wake-up goes into ONE raft
 * entry), applies committed entries through the FSM into the engine, and
 * completes write-concern waiters. Other threads only enqueue and call
 * uv_async_send.
 *
 * The oplog entry codec (oplog.c) turns engine commits into raft entry
 * payloads and back; the FSM decodes an entry and calls eng_apply with its
 * raft index (raft_last_applied(r) + 1 inside apply, trap T3).
 *
 * The replica-set config lives in the engine meta blob "rsconfig" (BSON, as
 * replSetGetConfig shows it) and, once initiated, raft is bootstrapped with
 * its members: raft node id = member _id + 1, raft address = the member
 * host's IPv4 address with port (member port + CAIRN_RAFT_PORT_OFFSET).
 */
#ifndef CAIRN_REPL_REPL_H
#define CAIRN_REPL_REPL_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "engine/engine.h"

/* Raft listens on the member's client port plus this offset. */
#define CAIRN_RAFT_PORT_OFFSET 10000

#define REPL_MAX_MEMBERS 7

/* settings.electionTimeoutMillis and heartbeatIntervalMillis: defaults
 * (docs/decisions.md §24; mongod's are 10000 and 2000) and accepted
 * ranges. */
#define REPL_ELECTION_TIMEOUT_DEFAULT_MS 1000
#define REPL_ELECTION_TIMEOUT_MIN_MS 100
#define REPL_ELECTION_TIMEOUT_MAX_MS 600000
#define REPL_HEARTBEAT_DEFAULT_MS 500
#define REPL_HEARTBEAT_MIN_MS 10
#define REPL_HEARTBEAT_MAX_MS 60000
#define REPL_HOST_MAX 255

/* Member states, numbered as MongoDB's replSetGetStatus myState. */
enum repl_state {
    REPL_STATE_STARTUP = 0,
    REPL_STATE_PRIMARY = 1,
    REPL_STATE_SECONDARY = 2,
    REPL_STATE_RECOVERING = 3,
    REPL_STATE_STARTUP2 = 5,
    REPL_STATE_UNKNOWN = 6,
    REPL_STATE_ARBITER = 7,
    REPL_STATE_DOWN = 8,
    REPL_STATE_ROLLBACK = 9,
    REPL_STATE_REMOVED = 10,
};

struct repl_options
{
    const char *dbpath;   /* raft files go to <dbpath>/raft */
    const char *set_name; /* --replSet */
    const char *me;       /* this member's "host:port" as clients reach it */
    const char *bind_ip;  /* address raft binds (port = client port + offset) */
    int port;             /* client port */
    bool initiate;        /* initiate a one-member set with `me` if not yet initiated */
    struct eng *eng;      /* borrowed; must outlive the repl */
    /* --keyFile: the members' shared key (repl_keyfile_load); NULL = no
     * key: members then authenticate nothing, as mongod without keyFile. */
    const char *key_file;
    /* Raft snapshots: taken every `snapshot_threshold` applied entries,
     * keeping the last `snapshot_trailing` entries in the log for members
     * that lag (0 = the defaults, REPL_SNAPSHOT_THRESHOLD and
     * REPL_SNAPSHOT_TRAILING; docs/decisions.md says why). A member
     * further behind catches up from a checkpoint. */
    unsigned snapshot_threshold;
    unsigned snapshot_trailing;
    /* --diskFreeFloorMB: below this many MiB free in dbpath, writes are
     * refused with 14031 OutOfDiskSpace and applying waits below half of
     * it (docs/decisions.md §36). < 0: REPL_DISK_FREE_FLOOR_MB; 0: no
     * floor (and no wait). */
    long long disk_free_floor_mb;
};

#define REPL_DISK_FREE_FLOOR_MB 500

#define REPL_SNAPSHOT_THRESHOLD 8192
#define REPL_SNAPSHOT_TRAILING 16384

struct repl;

/* Opens replication: loads the stored config (if any), starts the raft
 * thread and, when initiated, raft itself. With `initiate` and no stored
 * config, initiates a one-member set {_id: set_name, members: [{_id: 0,
 * host: me}]}. Errors: CAIRN_EIO, CAIRN_EINVAL (bad options; message says
 * which), CAIRN_ENOMEM. Any thread, once. */
int repl_open(const struct repl_options *opts, struct repl **out, struct cairn_error *err);

/* Stops raft and the thread, failing pending waiters with
 * CAIRN_ESHUTDOWN, then frees. Not on the raft thread. */
void repl_close(struct repl *r);

/* replSetInitiate: validates `config` ({_id: set name, version?, members:
 * [{_id, host, ...}]}; an empty document means a one-member set of `me`),
 * stores it and bootstraps raft. Blocks until raft has started (not until
 * elected). Errors (mongo_code): 23 AlreadyInitialized, 93
 * InvalidReplicaSetConfig (wrong set name, no members, duplicate ids or
 * hosts, `me` not among the hosts, more than one member while multi-member
 * sets are not supported). Any thread but the raft thread. */
int repl_initiate(struct repl *r, const bson_t *config, struct cairn_error *err);

/* replSetStepDown: this primary stops campaigning for `step_down_secs`
 * and hands leadership to a caught-up electable secondary, waiting up to
 * `catch_up_secs` for one; with `force` it stops accepting writes even
 * when none caught up. Blocks until it stepped down or gave up. Errors
 * (mongo_code): 10107 NotWritablePrimary (not primary), 262
 * ExceededTimeLimit (no secondary caught up, without force), 117
 * ConflictingOperationInProgress, 91. Not the raft thread. */
int repl_step_down(struct repl *r,
                   int step_down_secs,
                   int catch_up_secs,
                   bool force,
                   struct cairn_error *err);

/* replSetReconfig, first half: checks `config` against the active config on
 * this primary (version grows, same set, this member stays, at most one
 * voter added or removed, hosts of existing members unchanged) and returns
 * the document to replicate in *doc (malloc'd, the caller frees it) to be
 * written as an ENG_OP_CONFIG op and waited for at majority; then
 * repl_reconfig_end, also on failure after this returned 0. Errors
 * (mongo_code): 10107 (not primary), 109 ConfigurationInProgress, 93, 103
 * NewReplicaSetConfigurationIncompatible, 94. Any thread but the raft
 * thread. */
int repl_reconfig_begin(struct repl *r,
                        const bson_t *config,
                        uint8_t **doc,
                        size_t *len,
                        struct cairn_error *err);
void repl_reconfig_end(struct repl *r);

/* replSetFreeze: this member does not seek election for `secs` seconds (0
 * ends a freeze). Errors: 95 NotSecondary on the primary. Not the raft
 * thread. */
int repl_freeze(struct repl *r, int secs, struct cairn_error *err);

/* Appends the current config document (as replSetGetConfig's `config`) to
 * `out` under key `key`. Returns CAIRN_ENOTFOUND (94 NotYetInitialized)
 * before initiation. Any thread. */
int repl_config_append(struct repl *r, bson_t *out, const char *key, struct cairn_error *err);

/* ---- Status ------------------------------------------------------------ */

struct repl_member
{
    int id;
    char host[REPL_HOST_MAX + 1];
    int votes;
    double priority;
    bool hidden;
    /* From heartbeats (not for this member itself). */
    bool up;                 /* answering heartbeats */
    int peer_state;          /* enum repl_state it reported (DOWN when silent) */
    int64_t last_hb_ms;      /* wall ms of its last heartbeat answer, 0 = never */
    int64_t last_hb_recv_ms; /* wall ms of its last heartbeat to us, 0 = never */
    int64_t up_since_ms;
    int ping_ms;
    cairn_ts applied_ts;
    uint64_t applied_term;
    cairn_ts durable_ts;
    char hb_msg[128];    /* why it is not answering */
    int64_t election_ms; /* its electionDate while it reports being primary */
};

struct repl_status
{
    bool initiated;
    char set_name[128];
    int config_version;
    size_t n_members;
    struct repl_member members[REPL_MAX_MEMBERS];
    int self;      /* index of this member in members[], -1 if absent */
    int primary;   /* index of the primary in members[], -1 if unknown */
    int state;     /* enum repl_state of this member */
    bool writable; /* leader and its term's barrier applied */
    uint64_t term;
    cairn_index commit_index;
    cairn_index applied_index;
    cairn_ts applied_ts;   /* newest applied (= majority-committed) ts */
    uint64_t applied_term; /* raft term of the newest applied entry (0 = unknown) */
    cairn_ts last_ts;      /* newest ts in this member's log (>= applied_ts) */
    int64_t applied_wall_ms;
    int64_t last_wall_ms;
    int64_t election_wall_ms; /* when this member last became primary */
    int64_t start_wall_ms;
    uint64_t topology_counter; /* repl_topology_counter as of this copy */
};

/* Copies a consistent snapshot of the status. Any thread; never blocks on
 * the raft thread. */
void repl_status_get(struct repl *r, struct repl_status *out);

/* True when this member is primary and may accept writes. Any thread. */
bool repl_is_writable(struct repl *r);

/* The current write epoch: 0 when not writable, else a number that changes
 * whenever this member becomes primary again. A write resolved in one epoch
 * must be proposed in the same epoch (repl_propose_encoded refuses it
 * otherwise): a commit resolved against an overlay that a leadership change
 * discarded must never reach the log. Any thread. */
uint64_t repl_write_epoch(struct repl *r);

/* The leadership callback: told whenever this member becomes writable
 * (with its new epoch) or stops being writable (epoch 0), including when
 * repl_close stops it.
 * - Thread: the raft thread, one call at a time, in the order of the
 *   changes.
 * - Ordering: called after the change took effect (repl_is_writable,
 *   repl_write_epoch and repl_status_get already show it) and before the
 *   next change.
 * - It runs under a mutex that repl_set_leadership_cb takes too. So it must
 *   not call repl_set_leadership_cb (that aborts with a message), nor wait
 *   for a thread that may be calling it, nor block: replication waits for
 *   it. */
typedef void (*repl_leadership_cb)(void *arg, bool writable, uint64_t epoch);

/* Sets the leadership callback (replaces any earlier one; NULL clears).
 * Returns only after any call of the previous callback in progress has
 * returned, and no later call of it starts: after
 * repl_set_leadership_cb(r, NULL, NULL), `arg` may be freed. A callback
 * set after a change took effect is not told about that change: reading
 * repl_write_epoch after this returns gives the state the next call
 * changes. Any thread, but never from the callback. */
void repl_set_leadership_cb(struct repl *r, repl_leadership_cb cb, void *arg);

/* ---- Topology version (awaitable hello) -------------------------------- */

/* The topology counter: bumped (by one) whenever something hello reports
 * changes: this member's state (PRIMARY, SECONDARY, ...), whether it is
 * writable, the primary it knows, whether it is initiated, the config
 * document (version, members, ...) or its own place in it. It starts at 0
 * with repl_open, only grows, and is what hello reports as
 * topologyVersion.counter. A status copy (repl_status_get) carries the
 * counter that goes with its fields. Any thread. */
uint64_t repl_topology_counter(struct repl *r);

/* The topology callback: told the new counter after each bump.
 * - Thread: the raft thread, one call at a time, in counter order.
 * - Ordering: called after the change took effect (repl_status_get and
 *   repl_topology_counter already show it).
 * - It runs with the status lock held, so it must not block and must not
 *   call into repl (repl_topology_counter excepted): it only wakes whoever
 *   waits for a topology change. */
typedef void (*repl_topology_cb)(void *arg, uint64_t counter);

/* Sets the topology callback (replaces any earlier one; NULL clears).
 * Returns only after a call of the previous callback in progress has
 * returned, and no later call of it starts: after
 * repl_set_topology_cb(r, NULL, NULL), `arg` may be freed. Any thread, but
 * never from the callback. */
void repl_set_topology_cb(struct repl *r, repl_topology_cb cb, void *arg);

/* Activity counters since repl_open (for tests and serverStatus). */
struct repl_counters
{
    uint64_t entries_proposed;    /* raft entries handed to raft_apply */
    uint64_t commits_proposed;    /* commits in those entries (group commit) */
    uint64_t commit_bytes;        /* encoded bytes of the commits queued for them */
    uint64_t entries_applied;     /* command entries applied to the engine */
    uint64_t entries_skipped;     /* replayed entries at or below the watermark */
    uint64_t checkpoint_installs; /* checkpoints this member installed */
    uint64_t checkpoints_served;  /* checkpoint sessions opened by others here */
    uint64_t last_checkpoint_bytes;
    uint64_t last_checkpoint_keys;
    uint64_t last_checkpoint_ms;
};

/* Copies the counters. Any thread. */
void repl_counters_get(struct repl *r, struct repl_counters *out);

/* Checkpoints this member installed since it started (cursors opened
 * before an install are killed: the data under them was replaced). Any
 * thread. */
uint64_t repl_checkpoint_installs(struct repl *r);

/* ---- Proposals and write concern --------------------------------------- */

/* Hands one commit to the raft thread (copied, encoded with
 * repl_oplog_encode). Commits must be proposed in increasing ts order, and
 * the caller must already have added it to the engine overlay. If the raft
 * thread later fails to propose it (leadership lost, or raft refused the
 * entry for any other reason, such as running out of memory), the write
 * epoch ends as at a step-down: the overlay is discarded, queued commits
 * are dropped, every waiter fails with CAIRN_ENOTLEADER (so does any later
 * wait for that ts), and the member becomes writable again only in a new
 * epoch.
 * Returns 0, CAIRN_ENOTLEADER (not writable now), CAIRN_ESHUTDOWN,
 * CAIRN_ENOMEM. Any thread but the raft thread. */
int repl_propose(struct repl *r, const struct eng_commit *commit, struct cairn_error *err);

/* Largest encoded commit repl accepts (one raft entry must hold it). */
#define REPL_MAX_COMMIT_BYTES ((size_t)24 << 20)

/* Hands one commit already encoded with repl_oplog_encode (its ts patched
 * to `ts`) to the raft thread, as repl_propose does, if the write epoch is
 * still `epoch` (see repl_write_epoch). Ownership of `data` (malloc'd)
 * passes to repl on success only. Errors: CAIRN_ENOTLEADER (mongo_code
 * 10107: not writable, or another epoch), CAIRN_ETOOBIG (10334 past
 * REPL_MAX_COMMIT_BYTES), CAIRN_ESHUTDOWN (91), CAIRN_EINVAL (ts not above
 * the last proposed). May wait while the queue is full (backpressure).
 * Any thread but the raft thread. */
int repl_propose_encoded(struct repl *r,
                         uint64_t epoch,
                         cairn_ts ts,
                         uint8_t *data,
                         size_t len,
                         struct cairn_error *err);

/* Blocks until this member has applied (majority-committed) every commit
 * with ts <= `ts`, the operation `op` (may be NULL) is killed or passes
 * its deadline, or replication shuts down. Woken by the apply path, never
 * by polling. Returns 0, or the error cairn_op_check reports (50
 * MaxTimeMSExpired, 11601, ...), or CAIRN_ESHUTDOWN (91). Any thread but
 * the raft thread. */
struct cairn_op;
int repl_wait_applied(struct repl *r, cairn_ts ts, struct cairn_op *op, struct cairn_error *err);

/* The newest ts this member has applied. Any thread. */
cairn_ts repl_applied_ts(struct repl *r);

/* The collection of cluster-wide settings documents (mongod's
 * config.settings; the read/write concern defaults live there). */
#define REPL_SETTINGS_NS "config.settings"

/* A number that changes after this member applies an entry that writes,
 * creates or drops REPL_SETTINGS_NS (read it before reading the settings:
 * a reader that saw generation g and then read the applied state holds at
 * least the settings of g). Starts at 0 when the member opens. One atomic
 * load. Any thread. */
uint64_t repl_settings_generation(struct repl *r);
/* ---- The free-space floor (disk.c; docs/decisions.md §36) ------------------- */

/* Whether a commit of `len` encoded bytes may be accepted: 0, or
 * CAIRN_ENOSPC with mongo_code 14031 OutOfDiskSpace when the free space of
 * the data directory (cached, measured at most every 100 ms or 4 MiB) is
 * below the floor, or CAIRN_EIO with 264 TooManyFilesOpen while the
 * process is out of file descriptors (queued commits then wait). Call
 * before the commit gets its ts. Any thread. */
int repl_disk_check(struct repl *r, size_t len, struct cairn_error *err);

/* Before the engine opens: CAIRN_ENOSPC (message says how much is free and
 * needed) when less than half the floor `floor_mb` (< 0: the default; at
 * least 16 MiB) plus 64 MiB for raft's preallocated segments is free in
 * `dbpath`; CAIRN_EIO when it cannot be measured. Any thread. */
int repl_disk_startup_check(const char *dbpath, long long floor_mb, struct cairn_error *err);

/* Test-only: while `hold` is true the raft thread leaves queued commits in
 * the queue (they are neither proposed nor dropped), so that tests can
 * observe commits that are accepted but not yet applied. Releasing it
 * proposes them. Any thread. */
void repl_debug_hold_proposals(struct repl *r, bool hold);

/* Test-only: the raft thread's next `n` attempts to hand an entry to raft
 * fail as if raft_apply had returned RAFT_NOMEM (nothing reaches the log),
 * so that tests can observe how a refused proposal ends the write epoch.
 * Any thread. */
void repl_debug_fail_proposals(struct repl *r, int n);

/* Test-only: while `pause` is true, a checkpoint install in progress
 * waits before fetching its next chunk (its data directory then holds a
 * partial install), so that tests can observe the member's state or kill
 * it mid-install. Any thread. */
void repl_debug_pause_install(struct repl *r, bool pause);

/* A write concern. w = 0 means "majority"; N >= 1 means N members. */
struct repl_wc
{
    int w;
    bool j;
    int64_t wtimeout_ms; /* 0 = no timeout */
};

/* Called once when the wait ends: status 0 (satisfied), CAIRN_ETIMEOUT
 * (wtimeout passed; the write stays), CAIRN_ENOTLEADER (the entry was lost
 * or leadership changed before it was acknowledged), CAIRN_ESHUTDOWN. Runs
 * on the raft thread, or inline in repl_wait when already decided. Must not
 * block. */
typedef void (*repl_wait_cb)(void *arg, int status);

/* Waits until the commit with timestamp `ts` (0 = nothing to wait for)
 * satisfies `wc`: majority: committed and applied on this member;
 * w: 1 + j: durable in this member's raft log; w: 1: handed to raft;
 * w: N: held by N members. Errors before waiting: CAIRN_EINVAL with
 * mongo_code 100 UnsatisfiableWriteConcern when N exceeds the members.
 * Any thread. */
int repl_wait(struct repl *r,
              cairn_ts ts,
              const struct repl_wc *wc,
              repl_wait_cb cb,
              void *arg,
              struct cairn_error *err);

/* ---- Oplog codec (oplog.c) --------------------------------------------- */

/* raft_uv silently corrupts its segment files when an entry's length is
 * not a multiple of 8 (an assert compiled out in the Debian build), so entry
 * payloads are zero-padded to a multiple of REPL_OPLOG_ALIGN; the decoder
 * accepts up to REPL_OPLOG_ALIGN - 1 trailing zero bytes. */
#define REPL_OPLOG_ALIGN 8

/* The oplog entry format this build writes (see oplog.c for the layout). */
#define REPL_OPLOG_VERSION 1

/* Byte offset of the ts value inside an encoded commit document. */
#define REPL_OPLOG_TS_OFFSET 8

/* Appends an entry header {v: REPL_OPLOG_VERSION, t: term} to `out`. Every
 * entry payload starts with one, followed by one or more commits. Returns
 * 0, CAIRN_EINVAL (term past INT64_MAX) or CAIRN_ENOMEM. */
int repl_oplog_encode_header(uint64_t term, struct cairn_buf *out);

/* Appends the encoding of one commit to `out`:
 * {ts: Timestamp, ops: [{op: "p"|"d"|"c"|"x"|"s", cid: Int64, ns?: string,
 * k?: BinData, o?: document}]}. The ts may still be 0 (a placeholder) and
 * be set later with repl_oplog_patch_ts. Returns 0, CAIRN_EINVAL (malformed
 * op) or CAIRN_ENOMEM. */
int repl_oplog_encode(const struct eng_commit *commit, struct cairn_buf *out);

/* Sets the ts of an encoded commit (the bytes repl_oplog_encode appended)
 * in place. */
void repl_oplog_patch_ts(uint8_t *commit_enc, cairn_ts ts);

/* A decoded entry: its header and arrays of commits and ops pointing into
 * the payload. version 0 is an entry written before headers existed (term
 * unknown, 0). */
struct repl_decoded
{
    int version;
    uint64_t term;
    struct eng_commit *commits;
    size_t n_commits;
    struct eng_op *ops;
    size_t n_ops;
};

/* Decodes an entry payload (validating every BSON document). The result
 * borrows `buf`; free it with repl_decoded_free. Errors: CAIRN_ECORRUPT,
 * CAIRN_ENOMEM, CAIRN_EUNSUPPORTED (a format version newer than
 * REPL_OPLOG_VERSION: the member must stop, never skip the entry). */
int repl_oplog_decode(const uint8_t *buf,
                      size_t len,
                      struct repl_decoded *out,
                      struct cairn_error *err);

void repl_decoded_free(struct repl_decoded *d);

/* ---- Member key (keyfile.c) -------------------------------------------- */

/* mongod's key file bounds, in key characters (whitespace not counted). */
#define REPL_KEY_MIN 6
#define REPL_KEY_MAX 1024

/* The members' shared key: the key file's base64 characters, whitespace
 * removed (used as they are, not decoded, as mongod does). */
struct repl_key
{
    size_t len;
    char data[REPL_KEY_MAX];
};

/* Reads the key file at `path` as mongod reads --keyFile: refused when it
 * gives any permission to group or others ("permissions on <path> are too
 * open"), is not a regular file or is over 64 KiB; whitespace is ignored;
 * the rest must be REPL_KEY_MIN..REPL_KEY_MAX characters of [A-Za-z0-9+/=].
 * Errors: CAIRN_EINVAL with a message naming the file (never the key).
 * On error `out` holds no key. Wipe it with repl_key_clear. Any thread. */
int repl_keyfile_load(const char *path, struct repl_key *out, struct cairn_error *err);

/* The key rules of repl_keyfile_load applied to `n` bytes of `text`
 * (`path` names them in messages). Errors: CAIRN_EINVAL. Any thread. */
int repl_key_parse(const char *text,
                   size_t n,
                   const char *path,
                   struct repl_key *out,
                   struct cairn_error *err);

/* Overwrites the key with zeros. NULL is a no-op. Any thread. */
void repl_key_clear(struct repl_key *key);

#endif /* CAIRN_REPL_REPL_H */
