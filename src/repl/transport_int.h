/*
 * transport_int.h: the private interface between the files of the member
 * transport (transport.h). Only the transport*.c files include it.
 *
 *   transport.c            the transport object: the public functions of
 *                          transport.h and the raft_uv_transport interface
 *   transport_conn.c       the life of a conn: creation, failure, close;
 *                          deadlines and the timer; exact reads and writes;
 *                          message dispatch; the handover to raft_uv
 *   transport_handshake.c  the wire protocol (described there): HELLO,
 *                          CHALLENGE, PROOF, ACCEPT and their MAC
 *   transport_control.c    the control exchange after a CONTROL handshake
 *   transport_dial.c       the listener and accepting; resolving (with its
 *                          queue) and connecting
 *
 * Every function here runs on the loop thread. A function that "fails c"
 * logs the failure (see Logging) and moves c to CLOSING with a status for
 * the user's callback; it never frees c synchronously.
 *
 * ---- Connection state machine (struct conn) ----------------------------
 *
 *   outgoing (raft connect, control call)      incoming (accepted)
 *
 *   RESOLVING --resolved--> CONNECTING          (accepted) --> HANDSHAKE
 *   (IPv4 literal) --> CONNECTING
 *   CONNECTING --connected--> HANDSHAKE
 *   HANDSHAKE --ACCEPT 0, RAFT--> FLUSH --writes done--> handed to raft_uv
 *   HANDSHAKE --ACCEPT 0, CONTROL--> EXCHANGE --reply--> CLOSING
 *   incoming ACCEPT 1, control reply --> FLUSH --writes done--> CLOSING
 *   any state --failure, deadline, t->close--> CLOSING --callback--> freed
 *
 * Transitions and the functions that perform them (each lives in the file
 * that owns its concern: resolve_*, listen_cb, tr_start_outgoing and
 * tr_reap_queued in transport_dial.c; tr_connect_cb, tr_on_proof and
 * tr_on_accept_msg in transport_handshake.c; on_request in
 * transport_control.c; tr_conn_close, tr_conn_fail, close_cb, flush_done
 * and the timer in transport_conn.c; transport_close in transport.c):
 *   (start) -> RESOLVING           tr_start_outgoing, resolve_start (queued
 *                                  or looking up), resolve_pump
 *   RESOLVING -> CONNECTING        resolve_cb; a literal: tr_start_outgoing
 *   CONNECTING -> HANDSHAKE        tr_connect_cb
 *   (accept) -> HANDSHAKE          listen_cb
 *   HANDSHAKE -> FLUSH / EXCHANGE  tr_on_accept_msg (C), tr_on_proof (A)
 *   EXCHANGE -> FLUSH              on_request (A)
 *   FLUSH -> handed over / CLOSING flush_done
 *   * -> CLOSING                   tr_conn_close (from tr_conn_fail, the
 *                                  timer, transport_close)
 *   CLOSING -> freed               close_cb, resolve_cb, tr_reap_queued,
 *                                  resolve_pump
 *
 * Invariants:
 *   1. A conn is on tr->conns from its creation until it is freed; the
 *      close callback of the transport fires only when that list is empty
 *      and the listener and the timer handles are closed.
 *   2. A conn in RESOLVING (or CLOSING from there) has no handle and
 *      either one getaddrinfo request in flight or, when MAX_RESOLVING
 *      are, a place on tr->rq (c->queued); in every other state it owns
 *      exactly one TCP handle (raft_malloc'd, because raft_uv frees the
 *      streams it is given with raft_free).
 *   3. A conn is freed in exactly one place: close_cb (its handle
 *      closed), resolve_cb (CLOSING while resolving), tr_reap_queued or
 *      resolve_pump (CLOSING while queued), flush_done (handed to raft_uv,
 *      with no write in flight and reading stopped).
 *      Libuv runs every write and connect callback of a handle before
 *      its close callback, so no callback sees a freed conn.
 *   4. The user's callback of an outgoing conn (raft's connect callback,
 *      the call's callback) fires exactly once, after the conn left the
 *      list, and never from inside t->connect or repl_transport_call.
 *   5. Reads are exact: the alloc callback offers only the bytes still
 *      missing from the message being read, so the transport never
 *      consumes a byte that belongs to raft_uv after the handover.
 *   6. No received byte reaches raft_uv or the control handler before the
 *      peer's proof checked out, and every buffer is bounded before it is
 *      allocated (address <= 255, control documents <= 16 MiB).
 *   7. Every conn that is not CLOSING has a deadline (uv_now milliseconds),
 *      and the timer is due no later than the earliest one.
 *   8. Once tr->closing is set no conn is created, and every conn is
 *      CLOSING.
 *
 * Logging: a failed incoming connection is logged once, at WARN, with the
 * peer's TCP address (and what it claimed to be), except a connection
 * closed before sending a byte (a port probe) and a purpose not served yet
 * (DEBUG); an outgoing one at DEBUG (raft_uv retries every second; the
 * caller of a control call gets the status), except when the peer did not
 * accept our proof or proved another key (WARN: the keys differ).
 */
#ifndef CAIRN_REPL_TRANSPORT_INT_H
#define CAIRN_REPL_TRANSPORT_INT_H

#include <raft.h>
#include <raft/uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "repl/transport.h"

#define PURPOSE_RAFT 1
#define PURPOSE_CONTROL 2
#define NONCE_SIZE 32
#define HELLO_FIXED 50
#define COMPONENT "transport"

enum conn_kind { KIND_INCOMING, KIND_RAFT, KIND_CALL };

enum conn_state {
    ST_RESOLVING,
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_EXCHANGE,
    ST_FLUSH,
    ST_CLOSING,
};

/* What the bytes being read are (the message inside a state). */
enum conn_msg {
    MSG_NONE,
    MSG_HELLO_FIXED, /* A */
    MSG_HELLO_ADDR,  /* A */
    MSG_PROOF,       /* A */
    MSG_CHALLENGE,   /* C */
    MSG_ACCEPT,      /* C */
    MSG_DOC_HEAD,    /* A: request, C: reply */
    MSG_DOC_BODY,    /* A: request, C: reply */
};

struct tr;

struct conn
{
    struct tr *tr;
    struct conn *prev, *next; /* tr->conns */
    enum conn_kind kind;
    enum conn_state state;
    enum conn_msg msg;
    uint8_t purpose;
    int status;         /* CAIRN_E* for the user's callback once CLOSING */
    bool logged;        /* the failure was logged */
    bool reading;       /* uv_read_start is in effect */
    unsigned n_writes;  /* writes in flight */
    uint64_t deadline;  /* uv_now() ms; 0 = none (CLOSING only) */
    bool idle_deadline; /* EXCHANGE: each read pushes the deadline */
    bool has_claim;     /* incoming: HELLO read (id and address known) */

    /* Outgoing: the target; incoming: the TCP peer "ip:port". */
    char peer[REPL_TRANSPORT_ADDRESS_MAX + 1];
    /* The HELLO's identity: ours (outgoing) or the peer's claim. */
    uint64_t id;
    char address[REPL_TRANSPORT_ADDRESS_MAX + 1];
    uint8_t nonce_c[NONCE_SIZE];
    uint8_t nonce_a[NONCE_SIZE];

    uv_tcp_t *tcp; /* NULL while resolving */
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uint64_t call_deadline; /* KIND_CALL: the caller's timeout */
    char host[256];         /* outgoing: the target's host and port */
    char port[8];
    bool queued;        /* RESOLVING: waiting for a resolve slot (on tr->rq) */
    struct conn *qnext; /* tr->rq */

    /* Exact reads (invariant 5): rbuf[rgot..rwant) is what is missing. */
    uint8_t *rbuf;
    size_t rwant, rgot;
    uint8_t small[HELLO_FIXED + REPL_TRANSPORT_ADDRESS_MAX];
    uint8_t *doc; /* control request/reply being read (malloc'd) */

    /* KIND_RAFT */
    struct raft_uv_connect *req;
    /* KIND_CALL */
    repl_transport_call_cb call_cb;
    void *call_arg;
    uint8_t *out; /* the request to send (malloc'd) */
    size_t out_len;
};

struct tr
{
    struct raft_uv_transport *t;
    uv_loop_t *loop;
    uint64_t id;
    char address[REPL_TRANSPORT_ADDRESS_MAX + 1];
    char bind_address[REPL_TRANSPORT_ADDRESS_MAX + 1];
    uint8_t key[REPL_TRANSPORT_KEY_MAX];
    size_t key_len;
    repl_transport_control_cb control;
    void *control_arg;
    uint64_t timeout_ms;

    raft_uv_accept_cb accept_cb;
    uv_tcp_t listener;
    bool listener_open; /* initialized and its close callback not yet run */
    bool listening;
    int port;
    /* The listener's address when it is a specific one (not 0.0.0.0):
     * outgoing connections leave from it too, so that a member's traffic
     * has its own source address (firewall rules and partitions tell
     * members apart by address). */
    struct sockaddr_in source;
    bool has_source;
    uv_timer_t timer;
    bool timer_open;
    uint64_t timer_due; /* 0 = stopped */

    struct conn *conns;
    unsigned n_incoming;
    unsigned n_resolving;           /* getaddrinfo requests in flight */
    struct conn *rq_head, *rq_tail; /* conns waiting to resolve, FIFO */
    bool closing;
    bool close_fired;
    raft_uv_transport_close_cb close_cb;
};

/* ---- transport_conn.c --------------------------------------------------- */

/* Fires the transport's close callback once nothing is left (invariant 1):
 * tr->closing, no conn, the listener and the timer closed. */
void tr_maybe_fire_close(struct tr *tr);

/* The close callback of the timer handle (h->data is the struct tr):
 * frees the queued conns t->close cancelled, then tr_maybe_fire_close. */
void tr_timer_close_cb(uv_handle_t *h);

/* Re-arms the timer for the earliest deadline (invariant 7); a no-op once
 * the transport is closing. */
void tr_arm_timer(struct tr *tr);

/* A new conn of `kind` on tr->conns (state RESOLVING, no handle, no
 * deadline), or NULL when out of memory. */
struct conn *tr_conn_alloc(struct tr *tr, enum conn_kind kind);

/* Takes `c` off the list (and the resolve queue) and frees what it owns
 * except its handle. Fires no callback: for a conn whose start failed, and
 * for the handover. */
void tr_conn_unlink_free(struct conn *c);

/* Frees `c` and fires its user callback with c->status (invariant 4). */
void tr_conn_finish(struct conn *c);

/* Moves `c` to CLOSING (idempotent): the user's callback will see `status`.
 * Frees nothing now (invariant 3). */
void tr_conn_close(struct conn *c, int status);

/* Logs the failure once (at `level`, a CAIRN_LOG_* level) and closes `c`
 * with `status`; a no-op when c is CLOSING already. */
__attribute__((format(printf, 4, 5))) void tr_conn_fail(struct conn *c,
                                                        int level,
                                                        int status,
                                                        const char *fmt,
                                                        ...);

/* Sets the deadline of `c` to now + the handshake timeout (capped by a
 * call's own deadline). */
void tr_conn_set_deadline(struct conn *c);

/* Reads exactly `n` (>= 1) bytes into `p` as message `msg`; once they are
 * all there, the message's handler runs. Returns 0 or fails c and returns
 * -1. */
int tr_conn_read(struct conn *c, enum conn_msg msg, uint8_t *p, size_t n);

/* Stops reading (if reading) and forgets the message being read. */
void tr_conn_read_stop(struct conn *c);

/* Writes a copy of `n` bytes (a and b concatenated). Returns 0 or fails c
 * and returns -1. */
int tr_conn_write(struct conn *c, const void *a, size_t na, const void *b, size_t nb);

/* Enters FLUSH: once no write is in flight, a RAFT stream is handed to
 * raft_uv (freeing c, invariant 3), or a finished control or refused
 * connection is closed with c->status. */
void tr_conn_flush(struct conn *c);

/* ---- transport_handshake.c ---------------------------------------------- */

/* True when the `n` bytes are printable ASCII without spaces (what a host
 * name, an IPv4 literal and a port are made of). */
bool tr_is_printable(const uint8_t *p, size_t n);

/* The connect callback of an outgoing conn (req->data is the conn):
 * CONNECTING -> HANDSHAKE, sends HELLO with this member's identity as of
 * now, then reads CHALLENGE. */
void tr_connect_cb(uv_connect_t *req, int status);

/* The handlers of the handshake's messages, run by the message dispatch
 * once a message is complete. A's side: the fixed part of HELLO (then its
 * address, if any), the complete HELLO (answered with CHALLENGE), C's
 * PROOF (checked, then answered with ACCEPT). C's side: CHALLENGE
 * (answered with PROOF), ACCEPT (A's proof checked; a RAFT stream is
 * flushed to raft_uv, a control request sent). Each fails c on bad input. */
void tr_on_hello_fixed(struct conn *c);
void tr_on_hello(struct conn *c);
void tr_on_proof(struct conn *c);
void tr_on_challenge(struct conn *c);
void tr_on_accept_msg(struct conn *c);

/* ---- transport_control.c ------------------------------------------------ */

/* A control document's length prefix was read: bound it, read the rest
 * into c->doc. */
void tr_on_doc_head(struct conn *c);

/* A control document is complete: validate it, then run the control
 * handler and send its reply (A) or give the reply to the caller (C). */
void tr_on_doc_body(struct conn *c);

/* ---- transport_dial.c --------------------------------------------------- */

/* The close callback of the listener (h->data is the struct tr). */
void tr_listener_close_cb(uv_handle_t *h);

/* Binds and listens on the bind address, else tr->address (a no-op when
 * listening). Errors: CAIRN_ESTATE (the listener is closing), CAIRN_EINVAL
 * (bad or unresolvable address), CAIRN_EIO (bind or listen failed). */
int tr_start_listening(struct tr *tr, struct cairn_error *err);

/* Takes `c` off the resolve queue. */
void tr_dequeue(struct conn *c);

/* Frees the queued conns that were closed (the deadline passed, or
 * t->close), firing their callbacks. Runs only from libuv callbacks. */
void tr_reap_queued(struct tr *tr);

/* Starts an outgoing conn to `address`: an IPv4 literal is connected to at
 * once; a name is resolved (every time, never cached) first. Returns 0
 * (the conn's callback fires later) or CAIRN_EINVAL / CAIRN_ENOMEM /
 * CAIRN_EIO with no callback to come. */
int tr_start_outgoing(struct tr *tr, struct conn *c, const char *address);

#endif /* CAIRN_REPL_TRANSPORT_INT_H */
