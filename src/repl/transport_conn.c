/*
 * transport_conn.c: the life of a connection of the member transport
 * (struct conn; the state machine and its invariants are in
 * transport_int.h): creation, failure and close; the deadlines and the
 * transport's one timer; exact reads (invariant 5) and writes; the dispatch
 * of a complete message to its handler; the handover of a RAFT stream to
 * raft_uv; and the transport's close callback once nothing is left.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/sha256.h"
#include "repl/transport_int.h"

/* One write in flight: the bytes live with the request. */
struct wreq
{
    uv_write_t req;
    struct conn *c;
    size_t len;
    uint8_t data[];
};

/* ---- Helpers ------------------------------------------------------------- */

static int raft_status(int status)
{
    switch (status) {
        case CAIRN_ESHUTDOWN:
            return RAFT_CANCELED;
        case CAIRN_ENOMEM:
            return RAFT_NOMEM;
        default:
            return RAFT_NOCONNECTION;
    }
}

/* ---- Transport close and the deadline timer ------------------------------ */

void tr_maybe_fire_close(struct tr *tr)
{
    if (!tr->closing || tr->close_fired || tr->conns != NULL || tr->listener_open ||
        tr->timer_open) {
        return;
    }
    tr->close_fired = true;
    if (tr->close_cb != NULL) {
        tr->close_cb(tr->t);
    }
}

void tr_timer_close_cb(uv_handle_t *h)
{
    struct tr *tr = h->data;
    tr->timer_open = false;
    tr_reap_queued(tr); /* those t->close cancelled */
    tr_maybe_fire_close(tr);
}

static void timer_cb(uv_timer_t *timer);

void tr_arm_timer(struct tr *tr)
{
    uint64_t due = 0;
    uint64_t now;

    if (tr->closing) {
        return;
    }
    for (struct conn *c = tr->conns; c != NULL; c = c->next) {
        if (c->state != ST_CLOSING && c->deadline != 0 && (due == 0 || c->deadline < due)) {
            due = c->deadline;
        }
    }
    if (due == tr->timer_due) {
        return;
    }
    if (due == 0) {
        uv_timer_stop(&tr->timer);
        tr->timer_due = 0;
        return;
    }
    if (!tr->timer_open) {
        uv_timer_init(tr->loop, &tr->timer);
        tr->timer.data = tr;
        tr->timer_open = true;
    }
    now = uv_now(tr->loop);
    uv_timer_start(&tr->timer, timer_cb, due > now ? due - now : 0, 0);
    tr->timer_due = due;
}

/* ---- Connections: creation, failure, close ------------------------------- */

struct conn *tr_conn_alloc(struct tr *tr, enum conn_kind kind)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    c->tr = tr;
    c->kind = kind;
    c->gai.data = c;
    c->connect.data = c;
    c->next = tr->conns;
    if (tr->conns != NULL) {
        tr->conns->prev = c;
    }
    tr->conns = c;
    if (kind == KIND_INCOMING) {
        tr->n_incoming++;
    }
    return c;
}

void tr_conn_unlink_free(struct conn *c)
{
    struct tr *tr = c->tr;
    if (c->queued) {
        tr_dequeue(c);
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        tr->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    if (c->kind == KIND_INCOMING) {
        tr->n_incoming--;
    }
    free(c->doc);
    free(c->out);
    cairn_wipe(c->nonce_c, sizeof c->nonce_c);
    cairn_wipe(c->nonce_a, sizeof c->nonce_a);
    free(c);
}

void tr_conn_finish(struct conn *c)
{
    struct tr *tr = c->tr;
    enum conn_kind kind = c->kind;
    struct raft_uv_connect *req = c->req;
    repl_transport_call_cb call_cb = c->call_cb;
    void *call_arg = c->call_arg;
    int status = c->status;

    tr_conn_unlink_free(c);
    if (kind == KIND_RAFT) {
        req->cb(req, NULL, raft_status(status));
    } else if (kind == KIND_CALL && call_cb != NULL) {
        call_cb(call_arg, status, NULL);
    }
    tr_arm_timer(tr);
    tr_maybe_fire_close(tr);
}

static void close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    raft_free(c->tcp);
    c->tcp = NULL;
    tr_conn_finish(c);
}

void tr_conn_close(struct conn *c, int status)
{
    if (c->state == ST_CLOSING) {
        return;
    }
    c->status = status;
    c->deadline = 0;
    if (c->queued) {
        /* No request in flight: tr_reap_queued frees it from the timer's
         * callback (the deadline's, or its close at t->close), never
         * from inside the function that closed it. */
        c->state = ST_CLOSING;
        return;
    }
    if (c->state == ST_RESOLVING) {
        /* The resolve callback runs either way (UV_EAI_CANCELED when the
         * request had not started) and frees c. */
        c->state = ST_CLOSING;
        uv_cancel((uv_req_t *)&c->gai);
        return;
    }
    c->state = ST_CLOSING;
    uv_close((uv_handle_t *)c->tcp, close_cb);
}

/* Describes who `c` is for a log line. */
static void conn_describe(const struct conn *c, char *out, size_t cap)
{
    if (c->kind != KIND_INCOMING) {
        snprintf(out, cap, "member at %s", c->peer);
    } else if (!c->has_claim) {
        snprintf(out, cap, "peer %s", c->peer);
    } else {
        snprintf(out, cap, "peer %s (says raft id %llu, %s)", c->peer, (unsigned long long)c->id,
                 c->address[0] ? c->address : "no address");
    }
}

__attribute__((format(printf, 4, 5))) void tr_conn_fail(struct conn *c,
                                                        int level,
                                                        int status,
                                                        const char *fmt,
                                                        ...)
{
    char who[2 * REPL_TRANSPORT_ADDRESS_MAX + 64];
    char why[256];
    va_list ap;

    if (c->state == ST_CLOSING) {
        return;
    }
    if (!c->logged) {
        c->logged = true;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        conn_describe(c, who, sizeof who);
        cairn_log(level, COMPONENT, "%s: %s; connection closed", who, why);
    }
    tr_conn_close(c, status);
}

static void timer_cb(uv_timer_t *timer)
{
    struct tr *tr = timer->data;
    uint64_t now = uv_now(tr->loop);
    struct conn *next;

    tr->timer_due = 0;
    for (struct conn *c = tr->conns; c != NULL; c = next) {
        next = c->next; /* tr_conn_fail never frees synchronously */
        if (c->state == ST_CLOSING || c->deadline == 0 || c->deadline > now) {
            continue;
        }
        if (c->kind == KIND_CALL && c->call_deadline <= now) {
            tr_conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_ETIMEOUT, "control call timed out");
        } else if (c->state == ST_EXCHANGE || c->state == ST_FLUSH) {
            tr_conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG,
                         CAIRN_ETIMEOUT, "no progress for %llu ms",
                         (unsigned long long)tr->timeout_ms);
        } else {
            tr_conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG,
                         c->kind == KIND_CALL ? CAIRN_ETIMEOUT : CAIRN_EIO,
                         "handshake not done within %llu ms", (unsigned long long)tr->timeout_ms);
        }
    }
    tr_reap_queued(tr);
    tr_arm_timer(tr);
}

void tr_conn_set_deadline(struct conn *c)
{
    struct tr *tr = c->tr;
    c->deadline = uv_now(tr->loop) + tr->timeout_ms;
    if (c->kind == KIND_CALL && c->call_deadline < c->deadline) {
        c->deadline = c->call_deadline;
    }
    tr_arm_timer(tr);
}

/* ---- Reading and writing ------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    /* Invariant 5: only what the current message still lacks. */
    buf->base = (char *)c->rbuf + c->rgot;
    buf->len = c->rwant - c->rgot;
}

static void on_message(struct conn *c);

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;

    if (c->state == ST_CLOSING || nread == 0) {
        return;
    }
    if (nread < 0) {
        int level = CAIRN_LOG_WARN;
        if (c->kind == KIND_INCOMING && c->msg == MSG_HELLO_FIXED && c->rgot == 0) {
            level = CAIRN_LOG_DEBUG; /* a port probe: connected, sent nothing */
        } else if (c->kind != KIND_INCOMING && c->msg != MSG_ACCEPT) {
            level = CAIRN_LOG_DEBUG;
        }
        if (nread == UV_EOF && c->kind != KIND_INCOMING && c->msg == MSG_ACCEPT) {
            tr_conn_fail(c, level, CAIRN_EPROTO,
                         "closed the connection instead of accepting our proof (another "
                         "--keyFile, or none?)");
        } else {
            tr_conn_fail(c, level, c->kind == KIND_INCOMING ? CAIRN_EPROTO : CAIRN_EIO,
                         "connection ended after %zu of %zu bytes of a message: %s", c->rgot,
                         c->rwant, uv_strerror((int)nread));
        }
        return;
    }
    c->rgot += (size_t)nread;
    if (c->idle_deadline) {
        tr_conn_set_deadline(c);
    }
    if (c->rgot == c->rwant) {
        on_message(c);
    }
}

int tr_conn_read(struct conn *c, enum conn_msg msg, uint8_t *p, size_t n)
{
    int rv;

    assert(n > 0);
    c->msg = msg;
    c->rbuf = p;
    c->rwant = n;
    c->rgot = 0;
    if (c->reading) {
        return 0;
    }
    rv = uv_read_start((uv_stream_t *)c->tcp, alloc_cb, read_cb);
    if (rv != 0) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EIO, "read: %s", uv_strerror(rv));
        return -1;
    }
    c->reading = true;
    return 0;
}

void tr_conn_read_stop(struct conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)c->tcp);
        c->reading = false;
    }
    c->msg = MSG_NONE;
}

static void flush_done(struct conn *c);

static void write_cb(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = w->c;

    free(w);
    c->n_writes--;
    if (c->state == ST_CLOSING) {
        return; /* ECANCELED: close_cb comes next (invariant 3) */
    }
    if (status != 0) {
        tr_conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, CAIRN_EIO,
                     "write: %s", uv_strerror(status));
        return;
    }
    if (c->state == ST_FLUSH && c->n_writes == 0) {
        flush_done(c);
    }
}

int tr_conn_write(struct conn *c, const void *a, size_t na, const void *b, size_t nb)
{
    struct wreq *w = malloc(sizeof *w + na + nb);
    uv_buf_t buf;
    int rv;

    if (w == NULL) {
        tr_conn_fail(c, CAIRN_LOG_ERROR, CAIRN_ENOMEM, "out of memory");
        return -1;
    }
    w->c = c;
    w->len = na + nb;
    memcpy(w->data, a, na);
    if (nb > 0) {
        memcpy(w->data + na, b, nb);
    }
    buf = uv_buf_init((char *)w->data, (unsigned)w->len);
    rv = uv_write(&w->req, (uv_stream_t *)c->tcp, &buf, 1, write_cb);
    if (rv != 0) {
        free(w);
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EIO, "write: %s", uv_strerror(rv));
        return -1;
    }
    c->n_writes++;
    return 0;
}

void tr_conn_flush(struct conn *c)
{
    tr_conn_read_stop(c);
    c->state = ST_FLUSH;
    if (c->n_writes == 0) {
        flush_done(c);
    }
}

/* ---- Handover to raft_uv ------------------------------------------------- */

/* FLUSH with nothing in flight: hands a RAFT stream to raft_uv (freeing c,
 * invariant 3), or closes a finished control or refused connection. */
static void flush_done(struct conn *c)
{
    struct tr *tr = c->tr;
    uv_tcp_t *tcp = c->tcp;

    if (c->purpose != PURPOSE_RAFT || c->status != 0 ||
        (c->kind == KIND_INCOMING && tr->accept_cb == NULL)) {
        tr_conn_close(c, c->status);
        return;
    }
    if (c->kind == KIND_INCOMING) {
        raft_uv_accept_cb accept_cb = tr->accept_cb;
        char address[REPL_TRANSPORT_ADDRESS_MAX + 1];
        raft_id id = c->id;
        memcpy(address, c->address, sizeof address);
        c->tcp = NULL;
        tcp->data = NULL;
        tr_conn_unlink_free(c);
        tr_arm_timer(tr);
        accept_cb(tr->t, id, address, (uv_stream_t *)tcp);
    } else {
        struct raft_uv_connect *req = c->req;
        c->tcp = NULL;
        tcp->data = NULL;
        tr_conn_unlink_free(c);
        tr_arm_timer(tr);
        req->cb(req, (uv_stream_t *)tcp, 0);
    }
    tr_maybe_fire_close(tr);
}

/* ---- Message dispatch ---------------------------------------------------- */

static void on_message(struct conn *c)
{
    switch (c->msg) {
        case MSG_HELLO_FIXED:
            tr_on_hello_fixed(c);
            return;
        case MSG_HELLO_ADDR:
            tr_on_hello(c);
            return;
        case MSG_PROOF:
            tr_on_proof(c);
            return;
        case MSG_CHALLENGE:
            tr_on_challenge(c);
            return;
        case MSG_ACCEPT:
            tr_on_accept_msg(c);
            return;
        case MSG_DOC_HEAD:
            tr_on_doc_head(c);
            return;
        case MSG_DOC_BODY:
            tr_on_doc_body(c);
            return;
        case MSG_NONE:
            break;
    }
    assert(0);
}
