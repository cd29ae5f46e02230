/*
 * waiters.c: write-concern waiters. One doubly linked list per progress
 * level (applied, durable, handed), each sorted by ts, so that releasing
 * the satisfied ones pops from the head and inserting (ts usually grows)
 * appends at the tail. Owned by the raft thread; callbacks run with no
 * lock held and the waiter already unlinked and freed.
 */
#include <stdlib.h>

#include "repl/repl_int.h"

void repl_waitq_init(struct repl_waitq *q)
{
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        q->head[k] = NULL;
        q->tail[k] = NULL;
    }
    q->n = 0;
    q->n_deadline = 0;
}

void repl_waitq_insert(struct repl_waitq *q, struct repl_waiter *w)
{
    int k = w->kind;
    struct repl_waiter *after = q->tail[k];

    /* Scan back from the tail to the last waiter with ts <= w->ts. */
    while (after != NULL && after->ts > w->ts) {
        after = after->prev;
    }
    w->prev = after;
    w->next = after != NULL ? after->next : q->head[k];
    if (w->next != NULL) {
        w->next->prev = w;
    } else {
        q->tail[k] = w;
    }
    if (after != NULL) {
        after->next = w;
    } else {
        q->head[k] = w;
    }
    q->n++;
    if (w->deadline_ns != 0) {
        q->n_deadline++;
    }
}

static void unlink_waiter(struct repl_waitq *q, struct repl_waiter *w)
{
    int k = w->kind;
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        q->head[k] = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    } else {
        q->tail[k] = w->prev;
    }
    q->n--;
    if (w->deadline_ns != 0) {
        q->n_deadline--;
    }
}

static void finish(struct repl_waitq *q, struct repl_waiter *w, int status)
{
    repl_wait_cb cb = w->cb;
    void *arg = w->arg;
    unlink_waiter(q, w);
    free(w);
    cb(arg, status);
}

void repl_waitq_release(struct repl_waitq *q, int kind, cairn_ts level)
{
    while (q->head[kind] != NULL && q->head[kind]->ts <= level) {
        finish(q, q->head[kind], 0);
    }
}

void repl_waitq_fail_upto(struct repl_waitq *q, cairn_ts upto, int status)
{
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        while (q->head[k] != NULL && q->head[k]->ts <= upto) {
            finish(q, q->head[k], status);
        }
    }
}

void repl_waitq_fail_range(struct repl_waitq *q, cairn_ts from, cairn_ts upto, int status)
{
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        struct repl_waiter *w = q->head[k];
        while (w != NULL && w->ts <= upto) {
            struct repl_waiter *next = w->next;
            if (w->ts >= from) {
                finish(q, w, status);
            }
            w = next;
        }
    }
}

void repl_waitq_expire(struct repl_waitq *q, uint64_t now_ns)
{
    if (q->n_deadline == 0) {
        return;
    }
    for (int k = 0; k < REPL_WK__COUNT; k++) {
        struct repl_waiter *w = q->head[k];
        while (w != NULL) {
            struct repl_waiter *next = w->next;
            if (w->deadline_ns != 0 && w->deadline_ns <= now_ns) {
                finish(q, w, CAIRN_ETIMEOUT);
            }
            w = next;
        }
    }
}
