/*
 * deccache.c: decoded command entries, handed from the receive check to
 * the FSM so that a follower decodes each received entry once.
 *
 * msgcheck.c must decode (and validate) every COMMAND entry of a received
 * AppendEntries before raft sees it; fsm_apply needs the same decoding
 * when the entry is applied. Instead of decoding twice, io.c keeps what
 * msgcheck decoded, per log index, and the FSM takes it.
 *
 * A slot holds the decoding of one received entry: its index, term and
 * length, and the address of the received payload the decoding points
 * into. raft does not append that payload itself: it appends a copy (and
 * frees the message), while handling the message. So a slot is usable
 * only once it is tied to the copy, and the FSM moves the decoding's
 * pointers onto it:
 *
 *   1. recv_begin/recv_end (io.c) bracket the handling of one received
 *      message (msgcheck, then raft's recv); each message is a new
 *      generation.
 *   2. put (io.c, once a whole message passed msgcheck) fills slot
 *      index % N with an entry of the message, replacing what was there.
 *   3. confirm (io.c's append, for every entry raft appends, received or
 *      our own proposals) ties the slot to the appended buffer only when
 *      the append happens while raft handles the very message the slot
 *      was filled from (same generation) and index, term and length match:
 *      raft appends the copy of that message's entry at that index. Any
 *      other append at the index empties the slot.
 *   4. take (fsm.c) returns the decoding only for a confirmed slot of the
 *      applied index whose appended buffer is the one raft applies, its
 *      pointers moved from the received payload to that buffer (same
 *      bytes, same offsets); otherwise the FSM decodes as before. Raft
 *      frees an entry's buffer only after it is applied or cut (truncate,
 *      followed by a new append at the index: rule 3), so the buffer a
 *      confirmed slot names is alive until it is taken.
 *
 * A miss only costs the second decoding. Entries loaded at start-up and
 * our own proposals never hit. Raft thread only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repl/host.h"

/* Enough for the entries a follower holds between receipt and apply under
 * the leader's flow control (propose.c's MAX_UNCOMMITTED). */
#define DECCACHE_SLOTS 1024

struct deccache_slot
{
    raft_index index; /* 0: empty */
    raft_term term;
    uint64_t gen;         /* the message it came from (rule 1) */
    uintptr_t recv_base;  /* the received payload the decoding points into */
    const void *log_base; /* confirmed: the buffer raft appended */
    size_t len;
    bool confirmed;
    struct repl_decoded d;
};

struct repl_deccache
{
    struct deccache_slot slot[DECCACHE_SLOTS];
    uint64_t gen; /* generation of the message being handled */
    bool in_recv; /* between recv_begin and recv_end */
    uint64_t n_hits;
};

static void slot_clear(struct deccache_slot *s)
{
    if (s->index != 0) {
        repl_decoded_free(&s->d);
    }
    s->index = 0;
    s->confirmed = false;
}

struct repl_deccache *repl_deccache_new(void)
{
    return calloc(1, sizeof(struct repl_deccache));
}

void repl_deccache_free(struct repl_deccache *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < DECCACHE_SLOTS; i++) {
        slot_clear(&c->slot[i]);
    }
    free(c);
}

void repl_deccache_recv_begin(struct repl_deccache *c)
{
    c->gen++;
    c->in_recv = true;
}

void repl_deccache_recv_end(struct repl_deccache *c)
{
    c->in_recv = false;
}

void repl_deccache_put(struct repl_deccache *c,
                       raft_index index,
                       const struct raft_entry *e,
                       struct repl_decoded *d)
{
    struct deccache_slot *s = &c->slot[index % DECCACHE_SLOTS];

    slot_clear(s);
    s->index = index;
    s->term = e->term;
    s->gen = c->gen;
    s->recv_base = (uintptr_t)e->buf.base;
    s->log_base = NULL;
    s->len = e->buf.len;
    s->d = *d;
    memset(d, 0, sizeof *d);
}

void repl_deccache_confirm(struct repl_deccache *c, raft_index index, const struct raft_entry *e)
{
    struct deccache_slot *s = &c->slot[index % DECCACHE_SLOTS];

    if (s->index == 0) {
        return;
    }
    if (s->index == index && c->in_recv && s->gen == c->gen && !s->confirmed &&
        s->term == e->term && s->len == e->buf.len && e->type == RAFT_COMMAND) {
        s->confirmed = true;
        s->log_base = e->buf.base;
    } else if (s->index <= index) {
        /* Another entry at this index, or an older index's leftover. */
        slot_clear(s);
    }
}

bool repl_deccache_take(struct repl_deccache *c,
                        raft_index index,
                        const struct raft_buffer *buf,
                        struct repl_decoded *out)
{
    struct deccache_slot *s = &c->slot[index % DECCACHE_SLOTS];
    uintptr_t to = (uintptr_t)buf->base;

    if (s->index != index || !s->confirmed || s->log_base != buf->base || s->len != buf->len) {
        return false;
    }
    /* The decoding points into the received payload (freed by now): the
     * same offsets in the appended copy. */
    for (size_t i = 0; i < s->d.n_ops; i++) {
        struct eng_op *op = &s->d.ops[i];
        if (op->ns != NULL) {
            op->ns = (const char *)(to + ((uintptr_t)op->ns - s->recv_base));
        }
        if (op->key != NULL) {
            op->key = (const uint8_t *)(to + ((uintptr_t)op->key - s->recv_base));
        }
        if (op->doc != NULL) {
            op->doc = (const uint8_t *)(to + ((uintptr_t)op->doc - s->recv_base));
        }
    }
    *out = s->d;
    memset(&s->d, 0, sizeof s->d);
    s->index = 0;
    s->confirmed = false;
    c->n_hits++;
    return true;
}

uint64_t repl_deccache_hits(const struct repl_deccache *c)
{
    return c != NULL ? c->n_hits : 0;
}
