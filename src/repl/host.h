/*
 * host.h: the part of replication that runs inside whatever hosts raft
 * (private to src/repl; repl_int.h includes it). The FSM (fsm.c), the
 * raft_io wrapper (io.c) and the doubt list with its rollback files
 * (rollback.c) need only a struct repl_host: the engine, the raft instance
 * (a pointer), the rollback directory, their counters, and a few calls
 * back into their owner (struct repl_host_ops).
 *
 * Two owners exist. In production repl.c embeds one in struct repl, raft
 * runs over raft_uv on the raft thread's loop, and repl_host_bind (host.c)
 * routes the calls back into struct repl (waiters, reconfig, stepdown,
 * status). Tests host raft in libraft's deterministic fixture
 * (raft/fixture.h): one struct repl_host per fixture server, built with
 * repl_host_init and attached with repl_host_attach, without repl.c's
 * loop, member transport or threads.
 *
 * Everything here runs on the thread that drives raft (the raft thread, or
 * the test's thread stepping the fixture); the counters are read anywhere.
 */
#ifndef CAIRN_REPL_HOST_H
#define CAIRN_REPL_HOST_H

#include <raft.h>
#include <stdatomic.h>

#include "repl/repl.h"

struct repl_host;
struct repl_doubt;

/* Calls from the FSM, the io wrapper and the rollback writer into their
 * owner; `arg` is repl_host.ops_arg. Any of them may be NULL: the effect
 * said after "NULL:" applies then. */
struct repl_host_ops
{
    /* The FSM applied the entry at `index`, whose last commit has ts `ts`
     * (entries without commits do not call it). NULL: nothing. */
    void (*applied)(void *arg, cairn_index index, cairn_ts ts);
    /* An applied entry carried a replica-set config (ENG_OP_CONFIG op;
     * the engine has stored it). NULL: nothing more. */
    void (*config_applied)(void *arg, const uint8_t *doc, size_t len);
    /* Whether this member may campaign now; when not, io.c drops its
     * outgoing RequestVote messages. NULL: always. */
    bool (*may_campaign)(void *arg);
    /* Whether raft may take a snapshot now (fsm.c answers RAFT_BUSY when
     * not). NULL: always. */
    bool (*may_snapshot)(void *arg);
    /* repl_host.rolling_back changed (a rollback began or ended). NULL:
     * nothing. */
    void (*rollback_changed)(void *arg);
    /* Before applying the entry at `index` (`len` bytes): returns 0 once
     * there is room on disk to apply it (it may block, disk.c), or
     * CAIRN_ESHUTDOWN when the member stops meanwhile; the FSM then
     * applies nothing more (the entries stay in the raft log for the next
     * start). NULL: always room. */
    int (*wait_apply_room)(void *arg, raft_index index, size_t len);
    /* The checkpoint source. raft restores a snapshot whose descriptor
     * `desc` (fsm.c's format) is above the engine's watermark: the member
     * lags behind what the log still holds. Makes h->eng reflect at least
     * the descriptor's index (it may replace h->eng) and returns 0, or
     * returns a CAIRN_E* code with `err` set. NULL, or an error: the member
     * stops (abort), as continuing would acknowledge appends it never
     * applies. */
    int (*install_checkpoint)(void *arg,
                              struct repl_host *h,
                              const struct raft_buffer *desc,
                              struct cairn_error *err);
};

struct repl_host
{
    /* Set by repl_host_init; h->raft by the owner before raft_start. */
    struct eng *eng;     /* not owned */
    struct raft *raft;   /* not owned: repl.c's, or a fixture server's */
    const char *dbpath;  /* rollback files go under <dbpath>/rollback; not owned */
    struct raft_fsm fsm; /* what raft_init gets (data = this host) */
    const struct repl_host_ops *ops;
    void *ops_arg;

    /* The doubt list (rollback.c). */
    struct repl_doubt *doubt_head, *doubt_tail;
    size_t n_doubt;
    bool rolling_back;

    bool in_start; /* inside raft_start (restore of the local snapshot) */
    /* Received entries decoded by msgcheck.c, for the FSM (deccache.c);
     * made on the first received message, NULL if that failed. */
    struct repl_deccache *dec;
    raft_term applied_term; /* term of the last applied entry (0 = unknown) */

    /* Counters, read anywhere. */
    _Atomic uint64_t n_entries_applied;
    _Atomic uint64_t n_entries_skipped; /* replays at or below the watermark */
    bool install_broken; /* a checkpoint install was abandoned (shutdown): apply nothing */
    bool apply_halted;   /* shutdown while waiting for disk space: apply nothing */
    /* Cluster-wide settings (REPL_SETTINGS_NS): the FSM tracks the
     * collection's id in the applied catalog (0 = absent) and bumps the
     * generation whenever an applied entry writes, creates or drops it;
     * readers compare generations (repl_settings_generation). */
    uint64_t settings_coll;
    _Atomic uint64_t settings_gen;
    _Atomic uint64_t n_rolled_back; /* commits saved to rollback files */
};

/* Makes `h` empty and fills h->fsm (version 1, fsm.c). `eng`, `dbpath`,
 * `ops` and `arg` must outlive the host; h->raft stays NULL (set it before
 * raft_start). Thread: the raft thread's owner, before raft exists. */
void repl_host_init(struct repl_host *h,
                    struct eng *eng,
                    const char *dbpath,
                    const struct repl_host_ops *ops,
                    void *arg);

/* Frees the doubt list. The host may be initialised again. NULL is a
 * no-op. Call once raft is closed. */
void repl_host_close(struct repl_host *h);

/* ---- The raft_io wrapper (io.c) --------------------------------------------- */

struct repl_io_dropped
{
    struct raft_io_send *req;
    raft_io_send_cb cb;
    struct repl_io_dropped *next;
};

/* raft sees `outer`; every method forwards to `inner` (raft_uv, or a
 * fixture server's in-memory io). */
/* An InstallSnapshot message held while raft's own snapshot is being
 * written (io.c). */
struct repl_io_held
{
    struct raft_message msg;
    char addr[REPL_HOST_MAX + 8];
    struct repl_io_held *next;
};

struct repl_io
{
    struct raft_io outer;
    struct raft_io *inner;
    struct repl_host *h;
    raft_index next_index;           /* index the next appended entry gets */
    struct repl_io_dropped *dropped; /* vote requests not sent, to complete */
    uint64_t n_votes_dropped;
    uint64_t rng;            /* io_random's own stream (xorshift64) */
    raft_io_recv_cb recv;    /* raft's, called for messages that pass msgcheck.c */
    uint64_t n_msgs_refused; /* messages msgcheck.c refused */
    bool taking;             /* raft's own snapshot is being written */
    bool installing;         /* an installed snapshot is being stored */
    struct repl_io_held *held_head, *held_tail; /* InstallSnapshots held meanwhile */
};

/* Sizes an InstallSnapshot descriptor may have (fsm.c writes them). */
#define REPL_SNAPSHOT_DESC_MIN 16
#define REPL_SNAPSHOT_DESC_MAX 4096

/* 0 when a received raft message has a shape raft and our FSM can take
 * (msgcheck.c lists the checks), else CAIRN_ECORRUPT with the reason in
 * *err. Reads only `m`. With `keep` (not NULL), the decodings of an
 * accepted AppendEntries' COMMAND entries go to it (deccache.c); then the
 * raft thread, else any thread. */
int repl_msg_check(const struct raft_message *m,
                   struct repl_deccache *keep,
                   struct cairn_error *err);

/* ---- Decoded received entries (deccache.c) ------------------------------- */

/* Owned by the raft thread; every function runs there. */
struct repl_deccache;

/* An empty cache, or NULL without memory. */
struct repl_deccache *repl_deccache_new(void);

/* Frees the cache and the decodings it holds. NULL is a no-op. */
void repl_deccache_free(struct repl_deccache *c);

/* Bracket the handling of one received message (msgcheck.c's check and
 * raft's recv): confirm ties slots only to appends made in between, for
 * entries of that message. */
void repl_deccache_recv_begin(struct repl_deccache *c);
void repl_deccache_recv_end(struct repl_deccache *c);

/* Keeps `*d`, the decoding of received entry `e` at log index `index`
 * (takes it: *d is left empty), replacing what the index's slot held. */
void repl_deccache_put(struct repl_deccache *c,
                       raft_index index,
                       const struct raft_entry *e,
                       struct repl_decoded *d);

/* Raft appends `e` at `index`: ties the slot to e's buffer if it holds the
 * entry of the message being handled at that index (same term and
 * length), else empties it. */
void repl_deccache_confirm(struct repl_deccache *c, raft_index index, const struct raft_entry *e);

/* The decoding of the entry at `index` whose payload is `buf`, if a slot
 * confirmed for that buffer holds it: moved to *out, pointing into `buf`
 * (free it with repl_decoded_free), and true; else false and *out
 * untouched. */
bool repl_deccache_take(struct repl_deccache *c,
                        raft_index index,
                        const struct raft_buffer *buf,
                        struct repl_decoded *out);

/* How many decodings the FSM took (tests, diagnostics). NULL: 0. */
uint64_t repl_deccache_hits(const struct repl_deccache *c);

/* Frees what raft_uv allocated for a received message that will not be
 * passed to raft (entries and their batch, a snapshot's configuration
 * and data). Raft thread. */
void repl_msg_discard(struct raft_message *m);

/* Makes w->outer a raft_io forwarding to `inner` (see io.c), for raft_init
 * to take. */
void repl_io_wrap(struct repl_io *w, struct repl_host *h, struct raft_io *inner);

/* For a raft instance already initialised over its own io (a fixture
 * server: raft_fixture_grow ran raft_init): wraps that io with `w` and
 * makes raft use the wrapper, and sets h->raft. Before raft_start, so that
 * load and every append pass through the wrapper. `w` must outlive raft.
 * The fixture's helpers reach their io through the server, except
 * raft_fixture_step_until_delivered, which reads raft->io->impl and so
 * cannot be used on an attached server. */
void repl_host_attach(struct repl_host *h, struct repl_io *w, struct raft *raft);

/* Completes the sends the wrapper dropped (their callbacks run now).
 * Never from inside a raft call. */
void repl_io_flush(struct repl_io *w);

/* ---- The doubt list (rollback.c) ------------------------------------------- */

/* Keeps a copy of the command entry raft appends (or loaded, when
 * `loaded`: only those above the engine watermark) at `index`. */
void repl_doubt_add(struct repl_host *h, raft_index index, const struct raft_entry *e, bool loaded);

/* Entries up to `index` are committed: forgets them. */
void repl_doubt_commit_upto(struct repl_host *h, raft_index index);

/* Entries from `index` on were cut from the log: saves what they wrote to
 * rollback files and forgets them. `why` is logged. */
void repl_doubt_rollback_from(struct repl_host *h, raft_index index, const char *why);

/* Frees the list (shutdown). */
void repl_doubt_free(struct repl_host *h);

/* ---- The FSM (fsm.c) ------------------------------------------------------- */

/* Fills h->fsm (version 1, data = h). */
void repl_fsm_init(struct repl_host *h);

/* At start-up (io.c's load): the term of the entry at the engine's applied
 * index, for optimes, from the loaded snapshot or entries. */
void repl_note_loaded_terms(struct repl_host *h,
                            const struct raft_snapshot *snapshot,
                            raft_index start_index,
                            const struct raft_entry *entries,
                            size_t n);

#endif /* CAIRN_REPL_HOST_H */
