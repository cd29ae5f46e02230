/*
 * transport.c: the member transport declared in transport.h: a version-1
 * raft_uv transport whose connections start with a shared-key handshake,
 * and a one-request control channel on the same port.
 *
 * ---- Wire protocol (version 1; all integers big-endian) -----------------
 *
 * C is the connecting member, A the accepting one. Each side sends its
 * next message only after reading the other's, so neither can read ahead
 * of the handshake (invariant 5).
 *
 *   C -> A  HELLO      OFFSET SIZE  DESCRIPTION
 *                      0      4     magic "CRMT"
 *                      4      2     protocol version (1)
 *                      6      1     purpose: 1 RAFT, 2 CONTROL
 *                      7      1     flags, 0
 *                      8      8     C's raft id (0: not a raft member yet)
 *                      16     32    nonce_c
 *                      48     2     address length L (<= 255)
 *                      50     L     C's address "host:port" (printable)
 *   A -> C  CHALLENGE  0      4     magic "CRMT"
 *                      4      2     protocol version (1)
 *                      6      2     flags, 0
 *                      8      32    nonce_a
 *   C -> A  PROOF      0      32    HMAC(key, T || 'C')
 *   A -> C  ACCEPT     0      1     status: 0 accepted, 1 purpose unavailable
 *                      1      32    HMAC(key, T || 'A' || status)
 *
 * where T = "cairn member transport v1" || purpose || id || L || address ||
 * nonce_c || nonce_a (fields encoded as in HELLO). A checks C's proof before
 * it proves anything itself, so a peer without the key learns no MAC of
 * A's; the role byte keeps a proof from being reflected back as the
 * other's; the nonces of both sides make every handshake's proofs fresh
 * (a recorded handshake does not replay); the purpose, id and address
 * bind the proof to who C says it is and what it asks for.
 *
 * After ACCEPT with status 0:
 *   RAFT     the stream belongs to raft_uv: A passes it to raft's accept
 *            callback with C's id and address, C to the connect callback.
 *   CONTROL  C sends one BSON document (its own int32 little-endian length
 *            prefix, 5 .. 16 MiB), A answers one, the connection closes.
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
 * Transitions and the functions that perform them:
 *   (start) -> RESOLVING           start_outgoing, resolve_start (queued
 *                                  or looking up), resolve_pump
 *   RESOLVING -> CONNECTING        resolve_cb; a literal: start_outgoing
 *   CONNECTING -> HANDSHAKE        connect_cb
 *   (accept) -> HANDSHAKE          listen_cb
 *   HANDSHAKE -> FLUSH / EXCHANGE  on_accept_msg (C), on_proof (A)
 *   EXCHANGE -> FLUSH              on_request (A)
 *   FLUSH -> handed over / CLOSING flush_done
 *   * -> CLOSING                   conn_close (from conn_fail, the timer,
 *                                  transport_close)
 *   CLOSING -> freed               close_cb, resolve_cb, reap_queued,
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
 *      closed), resolve_cb (CLOSING while resolving), reap_queued or
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
#include "repl/transport.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/log.h"
#include "lib/sha256.h"

#define MAGIC "CRMT"
#define PROTOCOL_VERSION 1
#define PURPOSE_RAFT 1
#define PURPOSE_CONTROL 2
#define STATUS_ACCEPTED 0
#define STATUS_UNAVAILABLE 1
#define NONCE_SIZE 32
#define HELLO_FIXED 50
#define CHALLENGE_SIZE 40
#define PROOF_SIZE CAIRN_SHA256_SIZE
#define ACCEPT_SIZE (1 + PROOF_SIZE)
#define MAC_LABEL "cairn member transport v1"
#define LISTEN_BACKLOG 64
/* getaddrinfo requests in flight per transport: libuv runs them on its
 * thread pool (4 threads), which raft_uv's disk work needs too; a slow DNS
 * must not take all of it. Further lookups wait in tr->rq. */
#define MAX_RESOLVING 2
#define COMPONENT "transport"

_Static_assert(REPL_TRANSPORT_CONTROL_MAX <= INT32_MAX, "BSON lengths are int32");

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

/* One write in flight: the bytes live with the request. */
struct wreq
{
    uv_write_t req;
    struct conn *c;
    size_t len;
    uint8_t data[];
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

static void conn_close(struct conn *c, int status);
static void on_hello(struct conn *c);
static void reap_queued(struct tr *tr);

/* ---- Helpers ------------------------------------------------------------ */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Splits "host:port" (host 1..253 characters, no IPv6 literal; port
 * 0..65535) into host and port strings and, if `port_num` is not NULL, the
 * port's number. Returns 0 or -1. */
static int split_address(const char *address,
                         char *host,
                         size_t host_cap,
                         char *port,
                         size_t port_cap,
                         int *port_num)
{
    const char *colon;
    size_t hlen, plen;
    unsigned long p = 0;

    if (address == NULL || strlen(address) > REPL_TRANSPORT_ADDRESS_MAX) {
        return -1;
    }
    colon = strrchr(address, ':');
    if (colon == NULL || memchr(address, '[', (size_t)(colon - address)) != NULL) {
        return -1;
    }
    hlen = (size_t)(colon - address);
    plen = strlen(colon + 1);
    if (hlen == 0 || hlen > 253 || hlen >= host_cap || plen == 0 || plen > 5 || plen >= port_cap) {
        return -1;
    }
    for (size_t i = 0; i < plen; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9') {
            return -1;
        }
        p = p * 10 + (unsigned long)(colon[1 + i] - '0');
    }
    if (p > 65535) {
        return -1;
    }
    memcpy(host, address, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen + 1);
    if (port_num != NULL) {
        *port_num = (int)p;
    }
    return 0;
}

/* True when the `n` bytes are printable ASCII without spaces (what a host
 * name, an IPv4 literal and a port are made of). */
static bool is_printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e) {
            return false;
        }
    }
    return true;
}

static int random_bytes(uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t rv = getrandom(p + got, n - got, 0);
        if (rv < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        got += (size_t)rv;
    }
    return 0;
}

/* The MAC of the transcript T (see the protocol above) with `role` and, for
 * A's, the status byte. */
static void handshake_mac(const struct tr *tr,
                          const struct conn *c,
                          uint8_t role,
                          int status,
                          uint8_t out[PROOF_SIZE])
{
    struct cairn_hmac_sha256 h;
    uint8_t hdr[1 + 8 + 2];
    size_t alen = strlen(c->address);

    hdr[0] = c->purpose;
    put_be64(hdr + 1, c->id);
    put_be16(hdr + 9, (uint16_t)alen);
    cairn_hmac_sha256_init(&h, tr->key, tr->key_len);
    cairn_hmac_sha256_update(&h, MAC_LABEL, strlen(MAC_LABEL));
    cairn_hmac_sha256_update(&h, hdr, sizeof hdr);
    cairn_hmac_sha256_update(&h, c->address, alen);
    cairn_hmac_sha256_update(&h, c->nonce_c, NONCE_SIZE);
    cairn_hmac_sha256_update(&h, c->nonce_a, NONCE_SIZE);
    cairn_hmac_sha256_update(&h, &role, 1);
    if (status >= 0) {
        uint8_t s = (uint8_t)status;
        cairn_hmac_sha256_update(&h, &s, 1);
    }
    cairn_hmac_sha256_final(&h, out);
}

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

/* ---- Transport close and the deadline timer ----------------------------- */

/* Fires the transport's close callback once nothing is left (invariant 1). */
static void maybe_fire_close(struct tr *tr)
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

static void listener_close_cb(uv_handle_t *h)
{
    struct tr *tr = h->data;
    tr->listener_open = false;
    tr->listening = false;
    maybe_fire_close(tr);
}

static void timer_close_cb(uv_handle_t *h)
{
    struct tr *tr = h->data;
    tr->timer_open = false;
    reap_queued(tr); /* those t->close cancelled */
    maybe_fire_close(tr);
}

static void timer_cb(uv_timer_t *timer);

/* Re-arms the timer for the earliest deadline (invariant 7). */
static void arm_timer(struct tr *tr)
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

/* ---- Connections: creation, failure, close ------------------------------ */

static struct conn *conn_alloc(struct tr *tr, enum conn_kind kind)
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

/* Takes `c` off the resolve queue. */
static void dequeue(struct conn *c)
{
    struct tr *tr = c->tr;
    struct conn **p = &tr->rq_head;
    struct conn *prev = NULL;

    while (*p != NULL && *p != c) {
        prev = *p;
        p = &(*p)->qnext;
    }
    if (*p == c) {
        *p = c->qnext;
        if (tr->rq_tail == c) {
            tr->rq_tail = prev;
        }
    }
    c->qnext = NULL;
    c->queued = false;
}

/* Takes `c` off the list and frees what it owns except its handle. */
static void conn_unlink_free(struct conn *c)
{
    struct tr *tr = c->tr;
    if (c->queued) {
        dequeue(c);
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

/* Frees `c` and fires its user callback with c->status (invariant 4). */
static void conn_finish(struct conn *c)
{
    struct tr *tr = c->tr;
    enum conn_kind kind = c->kind;
    struct raft_uv_connect *req = c->req;
    repl_transport_call_cb call_cb = c->call_cb;
    void *call_arg = c->call_arg;
    int status = c->status;

    conn_unlink_free(c);
    if (kind == KIND_RAFT) {
        req->cb(req, NULL, raft_status(status));
    } else if (kind == KIND_CALL && call_cb != NULL) {
        call_cb(call_arg, status, NULL);
    }
    arm_timer(tr);
    maybe_fire_close(tr);
}

static void close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    raft_free(c->tcp);
    c->tcp = NULL;
    conn_finish(c);
}

/* Moves `c` to CLOSING (idempotent): the user's callback will see `status`. */
static void conn_close(struct conn *c, int status)
{
    if (c->state == ST_CLOSING) {
        return;
    }
    c->status = status;
    c->deadline = 0;
    if (c->queued) {
        /* No request in flight: reap_queued frees it from the timer's
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

/* Logs the failure once (at `level`) and closes `c`. */
__attribute__((format(printf, 4, 5))) static void conn_fail(struct conn *c,
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
    conn_close(c, status);
}

static void timer_cb(uv_timer_t *timer)
{
    struct tr *tr = timer->data;
    uint64_t now = uv_now(tr->loop);
    struct conn *next;

    tr->timer_due = 0;
    for (struct conn *c = tr->conns; c != NULL; c = next) {
        next = c->next; /* conn_fail never frees synchronously */
        if (c->state == ST_CLOSING || c->deadline == 0 || c->deadline > now) {
            continue;
        }
        if (c->kind == KIND_CALL && c->call_deadline <= now) {
            conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_ETIMEOUT, "control call timed out");
        } else if (c->state == ST_EXCHANGE || c->state == ST_FLUSH) {
            conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG,
                      CAIRN_ETIMEOUT, "no progress for %llu ms",
                      (unsigned long long)tr->timeout_ms);
        } else {
            conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG,
                      c->kind == KIND_CALL ? CAIRN_ETIMEOUT : CAIRN_EIO,
                      "handshake not done within %llu ms", (unsigned long long)tr->timeout_ms);
        }
    }
    reap_queued(tr);
    arm_timer(tr);
}

/* Sets the deadline of `c` to now + the handshake timeout (capped by a
 * call's own deadline). */
static void conn_set_deadline(struct conn *c)
{
    struct tr *tr = c->tr;
    c->deadline = uv_now(tr->loop) + tr->timeout_ms;
    if (c->kind == KIND_CALL && c->call_deadline < c->deadline) {
        c->deadline = c->call_deadline;
    }
    arm_timer(tr);
}

/* ---- Reading and writing -------------------------------------------------- */

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
            conn_fail(c, level, CAIRN_EPROTO,
                      "closed the connection instead of accepting our proof (another "
                      "--keyFile, or none?)");
        } else {
            conn_fail(c, level, c->kind == KIND_INCOMING ? CAIRN_EPROTO : CAIRN_EIO,
                      "connection ended after %zu of %zu bytes of a message: %s", c->rgot, c->rwant,
                      uv_strerror((int)nread));
        }
        return;
    }
    c->rgot += (size_t)nread;
    if (c->idle_deadline) {
        conn_set_deadline(c);
    }
    if (c->rgot == c->rwant) {
        on_message(c);
    }
}

/* Reads exactly `n` bytes into `p` as message `msg`. Returns 0 or fails c. */
static int conn_read(struct conn *c, enum conn_msg msg, uint8_t *p, size_t n)
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
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EIO, "read: %s", uv_strerror(rv));
        return -1;
    }
    c->reading = true;
    return 0;
}

static void conn_read_stop(struct conn *c)
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
        conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, CAIRN_EIO,
                  "write: %s", uv_strerror(status));
        return;
    }
    if (c->state == ST_FLUSH && c->n_writes == 0) {
        flush_done(c);
    }
}

/* Writes a copy of `n` bytes (a and b concatenated). Returns 0 or fails c. */
static int conn_write(struct conn *c, const void *a, size_t na, const void *b, size_t nb)
{
    struct wreq *w = malloc(sizeof *w + na + nb);
    uv_buf_t buf;
    int rv;

    if (w == NULL) {
        conn_fail(c, CAIRN_LOG_ERROR, CAIRN_ENOMEM, "out of memory");
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
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EIO, "write: %s", uv_strerror(rv));
        return -1;
    }
    c->n_writes++;
    return 0;
}

/* Enters FLUSH: once no write is in flight, flush_done. */
static void conn_flush(struct conn *c)
{
    conn_read_stop(c);
    c->state = ST_FLUSH;
    if (c->n_writes == 0) {
        flush_done(c);
    }
}

/* ---- Handover to raft_uv -------------------------------------------------- */

/* FLUSH with nothing in flight: hands a RAFT stream to raft_uv (freeing c,
 * invariant 3), or closes a finished control or refused connection. */
static void flush_done(struct conn *c)
{
    struct tr *tr = c->tr;
    uv_tcp_t *tcp = c->tcp;

    if (c->purpose != PURPOSE_RAFT || c->status != 0 ||
        (c->kind == KIND_INCOMING && tr->accept_cb == NULL)) {
        conn_close(c, c->status);
        return;
    }
    if (c->kind == KIND_INCOMING) {
        raft_uv_accept_cb accept_cb = tr->accept_cb;
        char address[REPL_TRANSPORT_ADDRESS_MAX + 1];
        raft_id id = c->id;
        memcpy(address, c->address, sizeof address);
        c->tcp = NULL;
        tcp->data = NULL;
        conn_unlink_free(c);
        arm_timer(tr);
        accept_cb(tr->t, id, address, (uv_stream_t *)tcp);
    } else {
        struct raft_uv_connect *req = c->req;
        c->tcp = NULL;
        tcp->data = NULL;
        conn_unlink_free(c);
        arm_timer(tr);
        req->cb(req, (uv_stream_t *)tcp, 0);
    }
    maybe_fire_close(tr);
}

/* ---- Incoming: the acceptor's side ---------------------------------------- */

static void on_hello_fixed(struct conn *c)
{
    const uint8_t *h = c->small;
    uint16_t version = get_be16(h + 4);
    uint16_t alen = get_be16(h + 48);

    if (memcmp(h, MAGIC, 4) != 0) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "not a Cairn member (bad magic)");
        return;
    }
    if (version != PROTOCOL_VERSION) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "unsupported protocol version %u (this is %u)",
                  version, PROTOCOL_VERSION);
        return;
    }
    c->purpose = h[6];
    if ((c->purpose != PURPOSE_RAFT && c->purpose != PURPOSE_CONTROL) || h[7] != 0) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "bad purpose %u or flags %u", h[6], h[7]);
        return;
    }
    c->id = get_be64(h + 8);
    memcpy(c->nonce_c, h + 16, NONCE_SIZE);
    if (alen > REPL_TRANSPORT_ADDRESS_MAX) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "address length %u over %d", alen,
                  REPL_TRANSPORT_ADDRESS_MAX);
        return;
    }
    if (c->purpose == PURPOSE_RAFT && (c->id == 0 || alen == 0)) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "raft connection without raft id or address");
        return;
    }
    if (alen > 0) {
        conn_read(c, MSG_HELLO_ADDR, c->small + HELLO_FIXED, alen);
        return;
    }
    on_hello(c); /* an empty address: HELLO is complete */
}

/* HELLO complete: answer with CHALLENGE, then read C's proof. */
static void on_hello(struct conn *c)
{
    uint8_t ch[CHALLENGE_SIZE];
    size_t alen = c->msg == MSG_HELLO_ADDR ? c->rwant : 0;

    if (alen > 0) {
        if (!is_printable(c->small + HELLO_FIXED, alen)) {
            conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "address is not printable text");
            return;
        }
        memcpy(c->address, c->small + HELLO_FIXED, alen);
        c->address[alen] = '\0';
    }
    c->has_claim = true;
    memcpy(ch, MAGIC, 4);
    put_be16(ch + 4, PROTOCOL_VERSION);
    put_be16(ch + 6, 0);
    memcpy(ch + 8, c->nonce_a, NONCE_SIZE);
    if (conn_write(c, ch, sizeof ch, NULL, 0) != 0) {
        return;
    }
    conn_read(c, MSG_PROOF, c->small, PROOF_SIZE);
}

/* C's proof read: check it, then ACCEPT (status and A's proof). */
static void on_proof(struct conn *c)
{
    struct tr *tr = c->tr;
    uint8_t want[PROOF_SIZE];
    uint8_t acc[ACCEPT_SIZE];
    bool served;

    handshake_mac(tr, c, 'C', -1, want);
    if (!cairn_memeq_ct(want, c->small, PROOF_SIZE)) {
        cairn_wipe(want, sizeof want);
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                  "authentication failed: its proof does not match our key (another "
                  "--keyFile, or none?)");
        return;
    }
    cairn_wipe(want, sizeof want);
    served = c->purpose == PURPOSE_RAFT ? tr->accept_cb != NULL : tr->control != NULL;
    acc[0] = served ? STATUS_ACCEPTED : STATUS_UNAVAILABLE;
    handshake_mac(tr, c, 'A', acc[0], acc + 1);
    conn_read_stop(c);
    if (conn_write(c, acc, sizeof acc, NULL, 0) != 0) {
        return;
    }
    if (!served) {
        cairn_log(CAIRN_LOG_DEBUG, COMPONENT, "peer %s: %s connections are not served yet", c->peer,
                  c->purpose == PURPOSE_RAFT ? "raft" : "control");
        c->status = CAIRN_EBUSY;
        conn_flush(c);
        return;
    }
    if (c->purpose == PURPOSE_RAFT) {
        conn_flush(c);
        return;
    }
    c->state = ST_EXCHANGE;
    c->idle_deadline = true;
    conn_set_deadline(c);
    conn_read(c, MSG_DOC_HEAD, c->small, 4);
}

/* The control request is complete: call the handler, send its reply. */
static void on_request(struct conn *c, const bson_t *req)
{
    struct tr *tr = c->tr;
    bson_t reply;
    int rc;

    bson_init(&reply);
    rc = tr->control(tr->control_arg, req, &reply);
    if (c->state == ST_CLOSING) {
        bson_destroy(&reply); /* the handler closed the transport */
        return;
    }
    if (rc == 0 && reply.len > REPL_TRANSPORT_CONTROL_MAX) {
        rc = CAIRN_ETOOBIG;
    }
    if (rc != 0) {
        bson_reinit(&reply);
        BSON_APPEND_DOUBLE(&reply, "ok", 0.0);
        BSON_APPEND_UTF8(&reply, "errmsg", cairn_strerror(rc));
        BSON_APPEND_INT32(&reply, "code", rc);
    }
    free(c->doc);
    c->doc = NULL;
    c->idle_deadline = false;
    conn_set_deadline(c);
    if (conn_write(c, bson_get_data(&reply), reply.len, NULL, 0) == 0) {
        conn_flush(c);
    }
    bson_destroy(&reply);
}

/* ---- Outgoing: the connector's side --------------------------------------- */

/* CHALLENGE read: check it, send our proof, read ACCEPT. */
static void on_challenge(struct conn *c)
{
    uint8_t proof[PROOF_SIZE];
    const uint8_t *ch = c->small;
    int rv;

    if (memcmp(ch, MAGIC, 4) != 0 || get_be16(ch + 4) != PROTOCOL_VERSION ||
        get_be16(ch + 6) != 0) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                  "answered with something else than a Cairn member's challenge");
        return;
    }
    memcpy(c->nonce_a, ch + 8, NONCE_SIZE);
    handshake_mac(c->tr, c, 'C', -1, proof);
    rv = conn_write(c, proof, sizeof proof, NULL, 0);
    cairn_wipe(proof, sizeof proof);
    if (rv == 0) {
        conn_read(c, MSG_ACCEPT, c->small, ACCEPT_SIZE);
    }
}

/* ACCEPT read: check A's proof; hand a RAFT stream over, send a request. */
static void on_accept_msg(struct conn *c)
{
    uint8_t want[PROOF_SIZE];
    uint8_t status = c->small[0];
    bool ok;

    if (status != STATUS_ACCEPTED && status != STATUS_UNAVAILABLE) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "bad handshake status %u", status);
        return;
    }
    handshake_mac(c->tr, c, 'A', status, want);
    ok = cairn_memeq_ct(want, c->small + 1, PROOF_SIZE);
    cairn_wipe(want, sizeof want);
    if (!ok) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                  "authentication failed: its proof does not match our key (another "
                  "--keyFile, or none?)");
        return;
    }
    if (status == STATUS_UNAVAILABLE) {
        conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_EBUSY, "does not serve %s connections yet",
                  c->purpose == PURPOSE_RAFT ? "raft" : "control");
        return;
    }
    if (c->kind == KIND_RAFT) {
        conn_flush(c);
        return;
    }
    c->state = ST_EXCHANGE;
    c->deadline = c->call_deadline;
    arm_timer(c->tr);
    if (conn_write(c, c->out, c->out_len, NULL, 0) != 0) {
        return;
    }
    free(c->out);
    c->out = NULL;
    conn_read(c, MSG_DOC_HEAD, c->small, 4);
}

/* The reply is complete: give it to the caller, then close. */
static void on_reply(struct conn *c, const bson_t *reply)
{
    repl_transport_call_cb cb = c->call_cb;
    void *arg = c->call_arg;

    c->call_cb = NULL; /* fired exactly once (invariant 4) */
    conn_read_stop(c);
    conn_close(c, 0);
    cb(arg, 0, reply);
}

/* ---- Message dispatch ------------------------------------------------------ */

/* A control document's length prefix was read: bound it, read the rest. */
static void on_doc_head(struct conn *c)
{
    uint32_t len = get_le32(c->small);

    if (len < 5 || len > REPL_TRANSPORT_CONTROL_MAX) {
        conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, CAIRN_EPROTO,
                  "control document of %u bytes (must be 5..%zu)", len, REPL_TRANSPORT_CONTROL_MAX);
        return;
    }
    c->doc = malloc(len);
    if (c->doc == NULL) {
        conn_fail(c, CAIRN_LOG_ERROR, CAIRN_ENOMEM, "out of memory for a %u-byte document", len);
        return;
    }
    memcpy(c->doc, c->small, 4);
    conn_read(c, MSG_DOC_BODY, c->doc + 4, len - 4);
}

static void on_doc_body(struct conn *c)
{
    size_t len = c->rwant + 4;
    bson_t doc;
    size_t off;

    if (!bson_init_static(&doc, c->doc, len) || !bson_validate(&doc, BSON_VALIDATE_NONE, &off)) {
        conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, CAIRN_EPROTO,
                  "malformed control document");
        return;
    }
    conn_read_stop(c);
    if (c->kind == KIND_INCOMING) {
        on_request(c, &doc);
    } else {
        on_reply(c, &doc);
    }
}

static void on_message(struct conn *c)
{
    switch (c->msg) {
        case MSG_HELLO_FIXED:
            on_hello_fixed(c);
            return;
        case MSG_HELLO_ADDR:
            on_hello(c);
            return;
        case MSG_PROOF:
            on_proof(c);
            return;
        case MSG_CHALLENGE:
            on_challenge(c);
            return;
        case MSG_ACCEPT:
            on_accept_msg(c);
            return;
        case MSG_DOC_HEAD:
            on_doc_head(c);
            return;
        case MSG_DOC_BODY:
            on_doc_body(c);
            return;
        case MSG_NONE:
            break;
    }
    assert(0);
}

/* ---- Accepting ------------------------------------------------------------- */

static void listen_cb(uv_stream_t *server, int status)
{
    struct tr *tr = server->data;
    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    struct conn *c;
    int rv;

    if (status != 0) {
        cairn_log(CAIRN_LOG_WARN, COMPONENT, "accept: %s", uv_strerror(status));
        return;
    }
    if (tr->closing) {
        return;
    }
    c = conn_alloc(tr, KIND_INCOMING);
    if (c == NULL) {
        goto err;
    }
    c->tcp = raft_malloc(sizeof *c->tcp);
    if (c->tcp == NULL) {
        goto err_after_conn_alloc;
    }
    uv_tcp_init(tr->loop, c->tcp);
    c->tcp->data = c;
    c->state = ST_HANDSHAKE;
    conn_set_deadline(c);
    rv = uv_accept(server, (uv_stream_t *)c->tcp);
    if (rv != 0) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EIO, "accept: %s", uv_strerror(rv));
        return;
    }
    snprintf(c->peer, sizeof c->peer, "(unknown)");
    if (uv_tcp_getpeername(c->tcp, (struct sockaddr *)&ss, &sslen) == 0 &&
        ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        char ip[INET_ADDRSTRLEN];
        uv_ip4_name(sin, ip, sizeof ip);
        snprintf(c->peer, sizeof c->peer, "%s:%u", ip, ntohs(sin->sin_port));
    }
    if (tr->n_incoming > REPL_TRANSPORT_MAX_INCOMING) {
        conn_fail(c, CAIRN_LOG_WARN, CAIRN_EBUSY, "more than %d incoming handshakes at once",
                  REPL_TRANSPORT_MAX_INCOMING);
        return;
    }
    if (random_bytes(c->nonce_a, NONCE_SIZE) != 0) {
        conn_fail(c, CAIRN_LOG_ERROR, CAIRN_EIO, "getrandom: %s", strerror(errno));
        return;
    }
    uv_tcp_nodelay(c->tcp, 1);
    conn_read(c, MSG_HELLO_FIXED, c->small, HELLO_FIXED);
    return;

err_after_conn_alloc:
    conn_unlink_free(c);
err:
    /* As raft_uv_tcp does on the same failure: the connection is left
     * where it is, and libuv accepts no other until one uv_accept's it. */
    cairn_log(CAIRN_LOG_ERROR, COMPONENT, "out of memory accepting a connection");
}

/* Binds and listens on the bind address, else tr->address. */
static int start_listening(struct tr *tr, struct cairn_error *err)
{
    const char *address = tr->bind_address[0] ? tr->bind_address : tr->address;
    char host[256], port[8];
    int port_num;
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    int rv;

    if (tr->listening) {
        return 0;
    }
    if (tr->listener_open) {
        return cairn_error_setf(err, CAIRN_ESTATE, "the listener is closing");
    }
    if (split_address(address, host, sizeof host, port, sizeof port, &port_num) != 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "bad listen address '%s' (want host:port)",
                                address);
    }
    if (uv_ip4_addr(host, port_num, &sa) != 0) {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        rv = getaddrinfo(host, port, &hints, &res);
        if (rv != 0 || res == NULL) {
            return cairn_error_setf(err, CAIRN_EINVAL, "listen address %s: %s", address,
                                    rv != 0 ? gai_strerror(rv) : "no IPv4 address");
        }
        memcpy(&sa, res->ai_addr, sizeof sa);
        freeaddrinfo(res);
    }
    uv_tcp_init(tr->loop, &tr->listener);
    tr->listener.data = tr;
    tr->listener_open = true;
    rv = uv_tcp_bind(&tr->listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&tr->listener, LISTEN_BACKLOG, listen_cb);
    }
    if (rv != 0) {
        uv_close((uv_handle_t *)&tr->listener, listener_close_cb);
        return cairn_error_setf(err, CAIRN_EIO, "listen on %s: %s (%s)", address, uv_strerror(rv),
                                uv_err_name(rv));
    }
    tr->listening = true;
    if (uv_tcp_getsockname(&tr->listener, (struct sockaddr *)&bound, &blen) == 0 &&
        bound.ss_family == AF_INET) {
        tr->port = ntohs(((const struct sockaddr_in *)&bound)->sin_port);
    }
    if (sa.sin_addr.s_addr != htonl(INADDR_ANY)) {
        tr->source = sa;
        tr->source.sin_port = 0;
        tr->has_source = true;
    }
    return 0;
}

/* ---- Connecting ------------------------------------------------------------ */

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct tr *tr = c->tr;
    uint8_t hello[HELLO_FIXED + REPL_TRANSPORT_ADDRESS_MAX];
    size_t alen = strlen(tr->address);

    if (c->state == ST_CLOSING) {
        return; /* UV_ECANCELED: close_cb comes next */
    }
    if (status != 0) {
        conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_EIO, "connect: %s", uv_strerror(status));
        return;
    }
    c->state = ST_HANDSHAKE;
    uv_tcp_nodelay(c->tcp, 1);
    /* Our identity as of now: raft_uv may call t->init again later. */
    c->id = tr->id;
    memcpy(c->address, tr->address, alen + 1);
    memcpy(hello, MAGIC, 4);
    put_be16(hello + 4, PROTOCOL_VERSION);
    hello[6] = c->purpose;
    hello[7] = 0;
    put_be64(hello + 8, c->id);
    memcpy(hello + 16, c->nonce_c, NONCE_SIZE);
    put_be16(hello + 48, (uint16_t)alen);
    memcpy(hello + HELLO_FIXED, c->address, alen);
    if (conn_write(c, hello, HELLO_FIXED + alen, NULL, 0) != 0) {
        return;
    }
    conn_read(c, MSG_CHALLENGE, c->small, CHALLENGE_SIZE);
}

/* Connects to `sa`. Returns 0 (connecting, or failed and closing: the
 * conn's callback fires later) or CAIRN_ENOMEM with no handle made. */
static int start_connect(struct conn *c, const struct sockaddr_in *sa)
{
    struct tr *tr = c->tr;
    int rv;

    c->tcp = raft_malloc(sizeof *c->tcp);
    if (c->tcp == NULL) {
        return CAIRN_ENOMEM;
    }
    uv_tcp_init(tr->loop, c->tcp);
    c->tcp->data = c;
    c->state = ST_CONNECTING;
    rv = 0;
    if (tr->has_source) {
        rv = uv_tcp_bind(c->tcp, (const struct sockaddr *)&tr->source, 0);
    }
    if (rv == 0) {
        rv = uv_tcp_connect(&c->connect, c->tcp, (const struct sockaddr *)sa, connect_cb);
    }
    if (rv != 0) {
        conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_EIO, "connect: %s", uv_strerror(rv));
    }
    return 0;
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

/* Starts resolving c->host, or queues c when MAX_RESOLVING lookups are in
 * flight. Returns 0 or a CAIRN_E* code (nothing started, no callback). */
static int resolve_start(struct conn *c)
{
    static const struct addrinfo hints = {
        .ai_family = AF_INET,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    struct tr *tr = c->tr;
    int rv;

    if (tr->n_resolving >= MAX_RESOLVING) {
        c->queued = true;
        if (tr->rq_tail != NULL) {
            tr->rq_tail->qnext = c;
        } else {
            tr->rq_head = c;
        }
        tr->rq_tail = c;
        return 0;
    }
    rv = uv_getaddrinfo(tr->loop, &c->gai, resolve_cb, c->host, c->port, &hints);
    if (rv != 0) {
        return rv == UV_ENOMEM ? CAIRN_ENOMEM : CAIRN_EIO;
    }
    tr->n_resolving++;
    return 0;
}

/* Frees the queued conns that were closed (the deadline passed, or
 * t->close), firing their callbacks. Runs only from libuv callbacks. */
static void reap_queued(struct tr *tr)
{
    struct conn *c = tr->rq_head;

    while (c != NULL) {
        if (c->state != ST_CLOSING) {
            c = c->qnext;
            continue;
        }
        dequeue(c);
        conn_finish(c); /* its callback may queue others: start over */
        c = tr->rq_head;
    }
}

/* A resolve slot is free: start the next queued lookups. */
static void resolve_pump(struct tr *tr)
{
    while (!tr->closing && tr->n_resolving < MAX_RESOLVING && tr->rq_head != NULL) {
        struct conn *c = tr->rq_head;
        int rv;

        dequeue(c);
        if (c->state == ST_CLOSING) {
            conn_finish(c);
            continue;
        }
        rv = resolve_start(c);
        if (rv != 0) {
            c->status = rv;
            conn_finish(c);
        }
    }
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    struct tr *tr = c->tr;
    struct sockaddr_in sa;
    const struct addrinfo *ai;
    int rv;

    tr->n_resolving--;
    if (c->state == ST_CLOSING) {
        uv_freeaddrinfo(res);
        conn_finish(c); /* invariant 3: no handle yet */
        goto out;
    }
    for (ai = status == 0 ? res : NULL; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof sa) {
            break;
        }
    }
    if (ai == NULL) {
        cairn_log(CAIRN_LOG_DEBUG, COMPONENT, "member at %s: cannot resolve: %s", c->peer,
                  status != 0 ? uv_strerror(status) : "no IPv4 address");
        uv_freeaddrinfo(res);
        c->status = CAIRN_EIO;
        conn_finish(c);
        goto out;
    }
    memcpy(&sa, ai->ai_addr, sizeof sa);
    uv_freeaddrinfo(res);
    rv = start_connect(c, &sa);
    if (rv != 0) {
        c->status = rv;
        conn_finish(c);
    }
out:
    resolve_pump(tr);
}

/* Starts an outgoing conn to `address`: an IPv4 literal is connected to at
 * once; a name is resolved (every time, never cached) first. Returns 0
 * (the conn's callback fires later) or CAIRN_EINVAL / CAIRN_ENOMEM /
 * CAIRN_EIO with no callback to come. */
static int start_outgoing(struct tr *tr, struct conn *c, const char *address)
{
    struct sockaddr_in sa;
    int port_num;
    int rv;

    if (split_address(address, c->host, sizeof c->host, c->port, sizeof c->port, &port_num) != 0) {
        rv = CAIRN_EINVAL;
        goto err;
    }
    if (random_bytes(c->nonce_c, NONCE_SIZE) != 0) {
        rv = CAIRN_EIO;
        goto err;
    }
    snprintf(c->peer, sizeof c->peer, "%s", address);
    conn_set_deadline(c);
    if (uv_ip4_addr(c->host, port_num, &sa) == 0) {
        rv = start_connect(c, &sa); /* no lookup, no thread */
    } else {
        c->state = ST_RESOLVING;
        rv = resolve_start(c);
    }
    if (rv != 0) {
        goto err;
    }
    return 0;

err:
    assert(rv != 0);
    return rv;
}

/* ---- The raft_uv_transport interface --------------------------------------- */

static int set_identity(struct tr *tr, uint64_t id, const char *address)
{
    size_t n = address != NULL ? strlen(address) : 0;
    if (n > REPL_TRANSPORT_ADDRESS_MAX || !is_printable((const uint8_t *)address, n)) {
        return -1;
    }
    tr->id = id;
    memcpy(tr->address, n > 0 ? address : "", n + 1);
    return 0;
}

static int transport_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct tr *tr = t->impl;
    if (id == 0 || address == NULL || address[0] == '\0' || set_identity(tr, id, address) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "invalid raft id or address for the transport");
        return RAFT_INVALID;
    }
    return 0;
}

static int transport_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct tr *tr = t->impl;
    struct cairn_error err = {0, 0, {0}};

    if (tr->closing) {
        snprintf(t->errmsg, sizeof t->errmsg, "transport closed");
        return RAFT_CANCELED;
    }
    if (start_listening(tr, &err) != 0) {
        snprintf(t->errmsg, sizeof t->errmsg, "%s", err.msg);
        return err.code == CAIRN_EINVAL ? RAFT_INVALID : RAFT_IOERR;
    }
    tr->accept_cb = cb;
    return 0;
}

static int transport_connect(struct raft_uv_transport *t,
                             struct raft_uv_connect *req,
                             raft_id id,
                             const char *address,
                             raft_uv_connect_cb cb)
{
    struct tr *tr = t->impl;
    struct conn *c;
    int rv;

    (void)id;
    if (tr->closing) {
        rv = RAFT_CANCELED;
        goto err;
    }
    c = conn_alloc(tr, KIND_RAFT);
    if (c == NULL) {
        rv = RAFT_NOMEM;
        goto err;
    }
    c->purpose = PURPOSE_RAFT;
    c->req = req;
    req->cb = cb;
    rv = start_outgoing(tr, c, address);
    if (rv != 0) {
        rv = rv == CAIRN_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
        goto err_after_conn_alloc;
    }
    return 0;

err_after_conn_alloc:
    conn_unlink_free(c);
err:
    snprintf(t->errmsg, sizeof t->errmsg, "connect to %s: %s", address != NULL ? address : "?",
             raft_strerror(rv));
    return rv;
}

static void transport_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct tr *tr = t->impl;

    assert(!tr->closing);
    tr->closing = true;
    tr->close_cb = cb;
    tr->accept_cb = NULL;
    if (tr->listener_open && !uv_is_closing((uv_handle_t *)&tr->listener)) {
        uv_close((uv_handle_t *)&tr->listener, listener_close_cb);
    }
    if (tr->timer_open) {
        uv_close((uv_handle_t *)&tr->timer, timer_close_cb);
    }
    for (struct conn *c = tr->conns; c != NULL; c = c->next) {
        conn_close(c, CAIRN_ESHUTDOWN); /* invariant 8; frees nothing now */
    }
    maybe_fire_close(tr);
}

/* ---- Public functions ------------------------------------------------------ */

int repl_transport_init(struct raft_uv_transport *t,
                        uv_loop_t *loop,
                        const struct repl_transport_options *opts,
                        struct cairn_error *err)
{
    struct tr *tr;
    const char *bind = opts->bind_address != NULL ? opts->bind_address : "";
    int rv;

    memset(t, 0, sizeof *t);
    t->version = 1;
    if (strlen(bind) > REPL_TRANSPORT_ADDRESS_MAX) {
        rv = cairn_error_setf(err, CAIRN_EINVAL, "bind address longer than %d characters",
                              REPL_TRANSPORT_ADDRESS_MAX);
        goto err;
    }
    if (opts->key_len > REPL_TRANSPORT_KEY_MAX || (opts->key_len > 0 && opts->key == NULL)) {
        rv =
            cairn_error_setf(err, CAIRN_EINVAL, "key longer than %d bytes", REPL_TRANSPORT_KEY_MAX);
        goto err;
    }
    tr = calloc(1, sizeof *tr);
    if (tr == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        goto err;
    }
    tr->t = t;
    tr->loop = loop;
    memcpy(tr->bind_address, bind, strlen(bind) + 1);
    if (opts->key_len > 0) {
        memcpy(tr->key, opts->key, opts->key_len);
    }
    tr->key_len = opts->key_len;
    tr->control = opts->control;
    tr->control_arg = opts->control_arg;
    tr->timeout_ms = opts->handshake_timeout_ms != 0 ? opts->handshake_timeout_ms
                                                     : REPL_TRANSPORT_HANDSHAKE_TIMEOUT_MS;
    t->impl = tr;
    t->init = transport_init;
    t->listen = transport_listen;
    t->connect = transport_connect;
    t->close = transport_close;
    return 0;

err:
    assert(rv != 0);
    return rv;
}

void repl_transport_close(struct raft_uv_transport *t)
{
    struct tr *tr;

    if (t == NULL || t->impl == NULL) {
        return;
    }
    tr = t->impl;
    /* Opened handles are released only through t->close. */
    assert(tr->conns == NULL && !tr->listener_open && !tr->timer_open);
    cairn_wipe(tr->key, sizeof tr->key);
    free(tr);
    t->impl = NULL;
}

int repl_transport_serve(struct raft_uv_transport *t,
                         uint64_t id,
                         const char *address,
                         struct cairn_error *err)
{
    struct tr *tr = t->impl;

    if (tr->closing || tr->listening) {
        return cairn_error_setf(err, CAIRN_ESTATE, "the transport is %s",
                                tr->closing ? "closed" : "already listening");
    }
    if (set_identity(tr, id, address) != 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "bad member address");
    }
    return start_listening(tr, err);
}

int repl_transport_call(struct raft_uv_transport *t,
                        const char *address,
                        const bson_t *req,
                        uint64_t timeout_ms,
                        repl_transport_call_cb cb,
                        void *arg)
{
    struct tr *tr = t->impl;
    struct conn *c;
    int rv;

    if (tr->closing) {
        rv = CAIRN_ESHUTDOWN;
        goto err;
    }
    if (timeout_ms == 0 || cb == NULL) {
        rv = CAIRN_EINVAL;
        goto err;
    }
    if (req->len > REPL_TRANSPORT_CONTROL_MAX) {
        rv = CAIRN_ETOOBIG;
        goto err;
    }
    c = conn_alloc(tr, KIND_CALL);
    if (c == NULL) {
        rv = CAIRN_ENOMEM;
        goto err;
    }
    c->purpose = PURPOSE_CONTROL;
    c->out = malloc(req->len);
    if (c->out == NULL) {
        rv = CAIRN_ENOMEM;
        goto err_after_conn_alloc;
    }
    memcpy(c->out, bson_get_data(req), req->len);
    c->out_len = req->len;
    c->call_deadline = uv_now(tr->loop) + timeout_ms;
    rv = start_outgoing(tr, c, address);
    if (rv != 0) {
        goto err_after_conn_alloc;
    }
    /* Set only now: a failed start must not fire it (invariant 4). */
    c->call_cb = cb;
    c->call_arg = arg;
    return 0;

err_after_conn_alloc:
    conn_unlink_free(c); /* frees c->out too */
err:
    assert(rv != 0);
    return rv;
}

int repl_transport_port(const struct raft_uv_transport *t)
{
    const struct tr *tr = t->impl;
    return tr != NULL && tr->listening ? tr->port : 0;
}
