/*
 * io.c: a thin raft_io wrapper around raft_uv (raft-0.22.md §3's
 * recommendation), or around a raft fixture server's in-memory io in
 * tests (repl_host_attach). Every method forwards to the inner io; the
 * wrapper only watches what raft never tells the state machine:
 *
 * - The log's content above the applied index. raft calls truncate(index)
 *   before every append batch, so the wrapper knows the index of every
 *   entry it appends; it keeps a copy of each entry until the FSM applies
 *   it (rollback.c's doubt list). A truncate that cuts entries it holds,
 *   or an installed snapshot that replaces the log, means those entries
 *   were never committed: rollback.c saves what they wrote. Entries loaded
 *   at start-up above the engine's watermark are held the same way, so a
 *   member restarted after losing leadership still rolls back properly.
 * - Outgoing vote requests: a member that must not campaign (priority 0,
 *   frozen, stepping down: the host's ops->may_campaign) drops its own
 *   RequestVote messages, pre-vote
 *   included (raft has no notion of priority; with pre-vote on, such a
 *   member never disturbs the others and still votes).
 * - raft_uv's capacity, which the legacy core reads from the outer io.
 * - Received messages: each passes msgcheck.c's shape check before raft
 *   sees it; a refused one is freed and dropped with a warning. The
 *   decodings of accepted entries are kept for the FSM, and each append
 *   confirms or drops the one of its index (deccache.c).
 * - Randomness: election timeouts come from a per-member stream (see
 *   io_random), not raft_uv's wall-clock-seeded rand().
 * - InstallSnapshot messages that arrive while raft writes a snapshot of
 *   its own are held until that write completes, then delivered. raft
 *   0.22.1 postpones such an install and, when the write completes,
 *   starts it through a pointer it has just set to NULL (legacy.c
 *   takeSnapshotCb): a segfault. Followers take snapshots since sets of
 *   several members do, so a lagging follower hit it. One that arrives
 *   while an installed snapshot is being stored (and restored) is dropped
 *   here: raft 0.22.1 ignores it too (the leader sends it again), but
 *   without freeing its data and configuration.
 *
 * raft_uv fires request callbacks through the inner io's `data`, so init
 * points it at raft (the outer's data) too.
 *
 * Everything here runs on the thread that drives raft.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/log.h"
#include "repl/host.h"

/* The wrapper, from the outer io or the inner one: raft's tick callback
 * calls r->io->time(io) with raft_uv's own io (legacy.c:1617), so every
 * method finds the wrapper through raft (io->data) rather than io->impl. */
static struct repl_io *W(struct raft_io *io)
{
    const struct raft *raft = io->data;
    return raft->io->impl;
}

static void release_held(struct repl_io *w, bool deliver);

static void sync_capacity(struct raft_io *io)
{
    struct repl_io *w = W(io);
    w->outer.capacity = w->inner->capacity;
}

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
    struct raft_io *in = W(io)->inner;
    int rv;

    in->data = io->data; /* raft_uv's callbacks find raft through it */
    rv = in->init(in, id, address);
    memcpy(io->errmsg, in->errmsg, sizeof io->errmsg);
    sync_capacity(io);
    return rv;
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
    struct raft_io *in = W(io)->inner;
    repl_io_flush(W(io));
    release_held(W(io), false);
    in->close(in, cb);
}

static int io_load(struct raft_io *io,
                   raft_term *term,
                   raft_id *voted_for,
                   struct raft_snapshot **snapshot,
                   raft_index *start_index,
                   struct raft_entry *entries[],
                   size_t *n_entries)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;
    int rv = in->load(in, term, voted_for, snapshot, start_index, entries, n_entries);

    memcpy(io->errmsg, in->errmsg, sizeof io->errmsg);
    if (rv != 0) {
        return rv;
    }
    w->next_index = *start_index;
    repl_note_loaded_terms(w->h, *snapshot, *start_index, *entries, *n_entries);
    for (size_t i = 0; i < *n_entries; i++) {
        repl_doubt_add(w->h, w->next_index++, &(*entries)[i], true);
    }
    return 0;
}

static void free_held(struct raft_message *m)
{
    raft_free(m->install_snapshot.data.base);
    raft_configuration_close(&m->install_snapshot.conf);
}

/* raft_uv calls this with its own io; raft's recv finds raft the same way.
 * Every message passes msgcheck.c first; held snapshots were checked. */
static void io_recv(struct raft_io *io, struct raft_message *msg)
{
    struct repl_io *w = W(io);
    struct repl_io_held *h;
    struct cairn_error err;

    if (w->h->dec == NULL) {
        w->h->dec = repl_deccache_new(); /* NULL: every entry is decoded twice */
    }
    if (w->h->dec != NULL) {
        repl_deccache_recv_begin(w->h->dec);
    }
    if (repl_msg_check(msg, w->h->dec, &err) != 0) {
        w->n_msgs_refused++;
        if (w->n_msgs_refused <= 10 || w->n_msgs_refused % 1000 == 0) {
            cairn_log(CAIRN_LOG_WARN, "repl",
                      "dropped a raft message (type %d) from member %llu (%s): %s "
                      "(%llu refused so far)",
                      (int)msg->type, (unsigned long long)msg->server_id,
                      msg->server_address != NULL ? msg->server_address : "?", err.msg,
                      (unsigned long long)w->n_msgs_refused);
        }
        repl_msg_discard(msg);
        goto out;
    }
    if (msg->type != RAFT_INSTALL_SNAPSHOT || (!w->taking && !w->installing)) {
        w->recv(io, msg);
        goto out;
    }
    if (w->installing) {
        free_held(msg); /* see the top */
        goto out;
    }
    /* See the top: hold it (it owns its data and configuration) until
     * raft's own snapshot is stored. Only the newest: raft must get one
     * install at a time (a second one while the first is being stored
     * breaks its state too), and the leader sends again what it misses. */
    release_held(w, false);
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        free_held(msg); /* dropped: the leader sends it again */
        goto out;
    }
    h->msg = *msg;
    snprintf(h->addr, sizeof h->addr, "%s", msg->server_address ? msg->server_address : "");
    h->msg.server_address = h->addr;
    if (w->held_tail != NULL) {
        w->held_tail->next = h;
    } else {
        w->held_head = h;
    }
    w->held_tail = h;
    cairn_log(CAIRN_LOG_INFO, "repl",
              "raft snapshot %llu from the leader waits for this member's own snapshot",
              (unsigned long long)msg->install_snapshot.last_index);
out:
    if (w->h->dec != NULL) {
        repl_deccache_recv_end(w->h->dec);
    }
}

/* Delivers (deliver true) or frees the held messages. */
static void release_held(struct repl_io *w, bool deliver)
{
    while (w->held_head != NULL) {
        struct repl_io_held *h = w->held_head;
        w->held_head = h->next;
        if (w->held_head == NULL) {
            w->held_tail = NULL;
        }
        if (deliver) {
            w->recv(w->inner, &h->msg);
        } else {
            free_held(&h->msg);
        }
        free(h);
    }
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;

    sync_capacity(io);
    w->recv = recv;
    return in->start(in, msecs, tick, io_recv);
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    struct raft_io *in = W(io)->inner;
    int rv = in->bootstrap(in, conf);
    memcpy(io->errmsg, in->errmsg, sizeof io->errmsg);
    return rv;
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
    struct raft_io *in = W(io)->inner;
    return in->recover(in, conf);
}

static int io_set_term(struct raft_io *io, raft_term term)
{
    struct raft_io *in = W(io)->inner;
    sync_capacity(io);
    return in->set_term(in, term);
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
    struct raft_io *in = W(io)->inner;
    return in->set_vote(in, server_id);
}

static int io_send(struct raft_io *io,
                   struct raft_io_send *req,
                   const struct raft_message *message,
                   raft_io_send_cb cb)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;

    sync_capacity(io);
    if (message->type == RAFT_REQUEST_VOTE && w->h->ops->may_campaign != NULL &&
        !w->h->ops->may_campaign(w->h->ops_arg)) {
        /* Not sent: this member must not become primary (see the top).
         * raft expects the callback later, never from inside send. */
        struct repl_io_dropped *d = malloc(sizeof *d);
        if (d == NULL) {
            return RAFT_NOMEM;
        }
        d->req = req;
        d->cb = cb;
        d->next = w->dropped;
        w->dropped = d;
        w->n_votes_dropped++;
        return 0;
    }
    return in->send(in, req, message, cb);
}

static int io_append(struct raft_io *io,
                     struct raft_io_append *req,
                     const struct raft_entry entries[],
                     unsigned n,
                     raft_io_append_cb cb)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;

    sync_capacity(io);
    for (unsigned i = 0; i < n; i++) {
        if (w->h->dec != NULL) {
            repl_deccache_confirm(w->h->dec, w->next_index, &entries[i]);
        }
        repl_doubt_add(w->h, w->next_index++, &entries[i], false);
    }
    return in->append(in, req, entries, n, cb);
}

static int io_truncate(struct raft_io *io, raft_index index)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;

    if (index < w->next_index) {
        /* Entries [index, next) are cut: never committed. */
        repl_doubt_rollback_from(w->h, index, "replaced by the leader's log");
    }
    w->next_index = index;
    return in->truncate(in, index);
}

/* Snapshot puts in flight: the callback finds its wrapper here (the
 * request belongs to raft). At most one per raft at a time. */
struct take_put
{
    struct raft_io_snapshot_put *req;
    struct repl_io *w;
    raft_io_snapshot_put_cb cb;
    bool install; /* an installed snapshot (else raft's own) */
    struct take_put *next;
};
static struct take_put *take_puts;
static pthread_mutex_t take_puts_mu = PTHREAD_MUTEX_INITIALIZER;

static void take_put_cb(struct raft_io_snapshot_put *req, int status)
{
    struct take_put **pp, *t = NULL;

    pthread_mutex_lock(&take_puts_mu);
    for (pp = &take_puts; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->req == req) {
            t = *pp;
            *pp = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&take_puts_mu);
    if (t == NULL) {
        cairn_log(CAIRN_LOG_ERROR, "repl", "FATAL: unknown snapshot put completed");
        abort();
    }
    if (t->install) {
        t->w->installing = false;
        t->cb(req, status);
        free(t);
        return;
    }
    t->w->taking = false;
    t->cb(req, status);
    /* raft may have started its next snapshot inside that callback: then
     * the held message waits for that one too. */
    if (status != 0 || !t->w->taking) {
        release_held(t->w, status == 0);
    }
    free(t);
}

static int io_snapshot_put(struct raft_io *io,
                           unsigned trailing,
                           struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot,
                           raft_io_snapshot_put_cb cb)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;

    if (trailing == 0) {
        /* An installed snapshot replaces the whole log: entries after it
         * are gone; entries it covers are committed (or, if they differed,
         * gone: raft does not tell, see docs/decisions.md §24). */
        repl_doubt_rollback_from(w->h, snapshot->index + 1, "replaced by an installed snapshot");
        repl_doubt_commit_upto(w->h, snapshot->index);
        w->next_index = snapshot->index + 1;
    }
    {
        struct take_put *t = malloc(sizeof *t);
        bool *flag = trailing == 0 ? &w->installing : &w->taking;
        int rv;
        if (t == NULL) {
            return RAFT_NOMEM;
        }
        t->req = req;
        t->w = w;
        t->cb = cb;
        t->install = trailing == 0;
        pthread_mutex_lock(&take_puts_mu);
        t->next = take_puts;
        take_puts = t;
        pthread_mutex_unlock(&take_puts_mu);
        *flag = true;
        rv = in->snapshot_put(in, trailing, req, snapshot, take_put_cb);
        if (rv != 0) {
            struct take_put **pp;
            *flag = false;
            pthread_mutex_lock(&take_puts_mu);
            for (pp = &take_puts; *pp != t; pp = &(*pp)->next) {
            }
            *pp = t->next;
            pthread_mutex_unlock(&take_puts_mu);
            free(t);
        }
        return rv;
    }
}

static int io_snapshot_get(struct raft_io *io,
                           struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{
    struct raft_io *in = W(io)->inner;
    return in->snapshot_get(in, req, cb);
}

static raft_time io_time(struct raft_io *io)
{
    struct repl_io *w = W(io);
    struct raft_io *in = w->inner;
    sync_capacity(&w->outer);
    return in->time(in);
}

/* raft_uv's random() draws from the process-global rand(), which
 * raft_uv_init seeds with the wall clock in milliseconds: members that
 * start raft in the same millisecond (the secondaries adopting a config
 * from one heartbeat round) drew identical election timeouts and split
 * their votes round after round. Each member draws from its own stream,
 * seeded from getrandom. */
static int io_random(struct raft_io *io, int min, int max)
{
    struct repl_io *w = W(io);
    uint64_t x = w->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    w->rng = x;
    if (max <= min) {
        return min;
    }
    return min + (int)(x % (uint64_t)(max - min));
}

void repl_io_flush(struct repl_io *w)
{
    while (w->dropped != NULL) {
        struct repl_io_dropped *d = w->dropped;
        w->dropped = d->next;
        d->cb(d->req, 0);
        free(d);
    }
}

void repl_io_wrap(struct repl_io *w, struct repl_host *h, struct raft_io *inner)
{
    struct raft_io *io = &w->outer;

    memset(w, 0, sizeof *w);
    w->h = h;
    w->inner = inner;
    if (getrandom(&w->rng, sizeof w->rng, GRND_NONBLOCK) != (ssize_t)sizeof w->rng) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        w->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)w;
    }
    w->rng |= 1; /* xorshift must not start at 0 */
    io->version = inner->version;
    io->capacity = inner->capacity;
    io->impl = w;
    io->init = io_init;
    io->close = io_close;
    io->load = io_load;
    io->start = io_start;
    io->bootstrap = io_bootstrap;
    io->recover = io_recover;
    io->set_term = io_set_term;
    io->set_vote = io_set_vote;
    io->send = io_send;
    io->append = io_append;
    io->truncate = io_truncate;
    io->snapshot_put = io_snapshot_put;
    io->snapshot_get = io_snapshot_get;
    io->time = io_time;
    io->random = io_random;
}
