/*
 * op.h: operations in progress and the one mechanism that interrupts them.
 *
 * Every command a client runs is a `struct cairn_op` registered for its
 * duration. An operation ends early for one of these reasons, each a
 * MongoDB code it then fails with:
 *   - its maxTimeMS deadline passes             50 MaxTimeMSExpired
 *   - killOp names it                           11601 Interrupted
 *   - the member steps down                     11602 InterruptedDueToReplStateChange
 *   - the server shuts down                     11600 InterruptedAtShutdown
 *   - its transaction is aborted under it       251 NoSuchTransaction (reaper, killSessions)
 *   - its client disconnected                   279 ClientDisconnect
 * Long work (scans, lock waits, write-concern and read-concern waits) calls
 * cairn_op_poll on every document or unit of work (cheap enough for that,
 * so how soon a kill is noticed does not depend on how slow each document
 * is), or waits with cairn_op_wait, which a kill wakes at once:
 * interruption is noticed promptly, never by polling a sleeping thread.
 *
 * The thread running an operation publishes it with cairn_op_set_current
 * so that layers below the command handlers (txn scans, lock waits) find
 * it without threading a parameter through every call.
 *
 * Invariants:
 *  1. kill_code goes from 0 to a code once (the first kill wins) and never
 *     back; a killed operation stays killed.
 *  2. A waiter registers (mu, cv) under op->lock before it sleeps and
 *     checks kill_code after registering, so a kill either happens before
 *     the check (seen) or finds the registration (wakes it). The waited-on
 *     mutex and condition variable must outlive the operation (they are
 *     long-lived objects such as the lock table's), because a killer
 *     broadcasts on them after dropping op->lock.
 *  3. An operation is in the registry from cairn_op_begin to cairn_op_end;
 *     cairn_op_kill and cairn_op_foreach hold the registry lock, so they
 *     never see a freed operation.
 *
 * Threads: every function is thread-safe. An operation's own fields other
 * than kill_code and the wait registration are written only by the thread
 * running it, before cairn_op_begin or under the registry lock.
 */
#ifndef CAIRN_LIB_OP_H
#define CAIRN_LIB_OP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cairn/cairn.h"

#define CAIRN_OP_DESC_MAX 96

struct cairn_op
{
    uint64_t id;            /* opid, assigned by cairn_op_begin */
    uint64_t start_mono_ns; /* set by cairn_op_begin */
    int64_t start_wall_ms;
    uint64_t deadline_ns;         /* maxTimeMS as a cairn_mono_ns() deadline, 0 = none */
    uint64_t conn_id;             /* client connection, 0 = internal */
    char desc[CAIRN_OP_DESC_MAX]; /* command name and namespace, for currentOp */
    void *owner;                  /* opaque: what the command belongs to (e.g. a session) */
    bool writes;                  /* a write or a transaction statement: step-down interrupts it */

    atomic_int kill_code; /* 0, or the MongoDB code the operation ends with */

    pthread_mutex_t lock; /* guards wait_mu / wait_cv */
    pthread_mutex_t *wait_mu;
    pthread_cond_t *wait_cv;

    struct cairn_op *prev, *next; /* registry, under its lock */
};

/* Initialises `op` (caller-owned) with no deadline and registers it with a
 * fresh id. Set deadline_ns, conn_id, desc and owner before or after (the
 * fields are read only by the owning thread and under the registry lock by
 * cairn_op_foreach: set them before cairn_op_begin to be sure currentOp
 * never shows a half-written description). Any thread. */
void cairn_op_begin(struct cairn_op *op);

/* Unregisters `op`. It must not be waiting. NULL is a no-op. Any thread. */
void cairn_op_end(struct cairn_op *op);

/* The operation the calling thread runs (NULL when none), and setting it
 * (NULL clears). Thread-local. */
struct cairn_op *cairn_op_current(void);
void cairn_op_set_current(struct cairn_op *op);

/* Marks `op` killed with MongoDB code `code` (first kill wins) and wakes it
 * if it waits. Safe while `op` is registered (callers outside the owning
 * thread must hold it through cairn_op_kill or cairn_op_foreach). */
void cairn_op_interrupt(struct cairn_op *op, int code);

/* Kills the registered operation with id `id`. Returns true when found. */
bool cairn_op_kill(uint64_t id, int code);

/* Kills every registered operation (for which `match` returns true, NULL =
 * all) with `code`. Returns how many were killed. */
size_t cairn_op_kill_all(bool (*match)(const struct cairn_op *op, void *arg), void *arg, int code);

/* 0 while `op` (NULL = nothing to check) may go on; otherwise sets `err`
 * (the kill code, or 50 MaxTimeMSExpired past the deadline) and returns its
 * CAIRN_E* code (CAIRN_ETIMEOUT for the deadline, CAIRN_ESHUTDOWN for
 * shutdown, CAIRN_ENOTLEADER for step-down, CAIRN_EINTERRUPTED otherwise). Cheap:
 * one atomic load and, with a deadline, a clock read. */
int cairn_op_check(const struct cairn_op *op, struct cairn_error *err);

/* cairn_op_check for loops that call it on every unit of work: a relaxed
 * load of the kill code and, with a deadline, a coarse clock read (a
 * deadline is noticed at most one clock tick, a few ms, late); the full
 * check only once either says stop. Same results as cairn_op_check. */
int cairn_op_poll(const struct cairn_op *op, struct cairn_error *err);

/* Waits on `cv` (with `mu` held, as pthread_cond_wait) until signalled, the
 * absolute cairn_mono_ns() time `until_ns` (0 = none), the operation's
 * deadline, or a kill. Returns 0 when woken normally or at until_ns (the
 * caller re-checks its condition), else what cairn_op_check returns. `op`
 * may be NULL (then a plain timed wait). `mu` and `cv` must outlive the
 * operation (invariant 2). */
int cairn_op_wait(struct cairn_op *op,
                  pthread_mutex_t *mu,
                  pthread_cond_t *cv,
                  uint64_t until_ns,
                  struct cairn_error *err);

/* Calls `fn` for every registered operation under the registry lock (fn
 * must not block nor call other cairn_op functions but cairn_op_interrupt).
 * For currentOp. */
void cairn_op_foreach(void (*fn)(const struct cairn_op *op, void *arg), void *arg);

#endif /* CAIRN_LIB_OP_H */
