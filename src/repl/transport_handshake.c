/*
 * transport_handshake.c: the handshake of the member transport (HELLO,
 * CHALLENGE, PROOF, ACCEPT) on both sides, and its MAC. It owns the wire
 * protocol, described here; the control exchange that may follow is in
 * transport_control.c, the connection state machine in transport_int.h.
 *
 * ---- Wire protocol (version 1; all integers big-endian) -----------------
 *
 * C is the connecting member, A the accepting one. Each side sends its
 * next message only after reading the other's, so neither can read ahead
 * of the handshake (invariant 5 of transport_int.h).
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
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/sha256.h"
#include "repl/transport_int.h"

#define MAGIC "CRMT"
#define PROTOCOL_VERSION 1
#define STATUS_ACCEPTED 0
#define STATUS_UNAVAILABLE 1
#define CHALLENGE_SIZE 40
#define PROOF_SIZE CAIRN_SHA256_SIZE
#define ACCEPT_SIZE (1 + PROOF_SIZE)
#define MAC_LABEL "cairn member transport v1"

/* ---- Helpers ------------------------------------------------------------- */

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

bool tr_is_printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x21 || p[i] > 0x7e) {
            return false;
        }
    }
    return true;
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

/* ---- Incoming: the acceptor's side --------------------------------------- */

void tr_on_hello_fixed(struct conn *c)
{
    const uint8_t *h = c->small;
    uint16_t version = get_be16(h + 4);
    uint16_t alen = get_be16(h + 48);

    if (memcmp(h, MAGIC, 4) != 0) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "not a Cairn member (bad magic)");
        return;
    }
    if (version != PROTOCOL_VERSION) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                     "unsupported protocol version %u (this is %u)", version, PROTOCOL_VERSION);
        return;
    }
    c->purpose = h[6];
    if ((c->purpose != PURPOSE_RAFT && c->purpose != PURPOSE_CONTROL) || h[7] != 0) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "bad purpose %u or flags %u", h[6], h[7]);
        return;
    }
    c->id = get_be64(h + 8);
    memcpy(c->nonce_c, h + 16, NONCE_SIZE);
    if (alen > REPL_TRANSPORT_ADDRESS_MAX) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "address length %u over %d", alen,
                     REPL_TRANSPORT_ADDRESS_MAX);
        return;
    }
    if (c->purpose == PURPOSE_RAFT && (c->id == 0 || alen == 0)) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "raft connection without raft id or address");
        return;
    }
    if (alen > 0) {
        tr_conn_read(c, MSG_HELLO_ADDR, c->small + HELLO_FIXED, alen);
        return;
    }
    tr_on_hello(c); /* an empty address: HELLO is complete */
}

void tr_on_hello(struct conn *c)
{
    uint8_t ch[CHALLENGE_SIZE];
    size_t alen = c->msg == MSG_HELLO_ADDR ? c->rwant : 0;

    if (alen > 0) {
        if (!tr_is_printable(c->small + HELLO_FIXED, alen)) {
            tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "address is not printable text");
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
    if (tr_conn_write(c, ch, sizeof ch, NULL, 0) != 0) {
        return;
    }
    tr_conn_read(c, MSG_PROOF, c->small, PROOF_SIZE);
}

void tr_on_proof(struct conn *c)
{
    struct tr *tr = c->tr;
    uint8_t want[PROOF_SIZE];
    uint8_t acc[ACCEPT_SIZE];
    bool served;

    handshake_mac(tr, c, 'C', -1, want);
    if (!cairn_memeq_ct(want, c->small, PROOF_SIZE)) {
        cairn_wipe(want, sizeof want);
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                     "authentication failed: its proof does not match our key (another "
                     "--keyFile, or none?)");
        return;
    }
    cairn_wipe(want, sizeof want);
    served = c->purpose == PURPOSE_RAFT ? tr->accept_cb != NULL : tr->control != NULL;
    acc[0] = served ? STATUS_ACCEPTED : STATUS_UNAVAILABLE;
    handshake_mac(tr, c, 'A', acc[0], acc + 1);
    tr_conn_read_stop(c);
    if (tr_conn_write(c, acc, sizeof acc, NULL, 0) != 0) {
        return;
    }
    if (!served) {
        cairn_log(CAIRN_LOG_DEBUG, COMPONENT, "peer %s: %s connections are not served yet", c->peer,
                  c->purpose == PURPOSE_RAFT ? "raft" : "control");
        c->status = CAIRN_EBUSY;
        tr_conn_flush(c);
        return;
    }
    if (c->purpose == PURPOSE_RAFT) {
        tr_conn_flush(c);
        return;
    }
    c->state = ST_EXCHANGE;
    c->idle_deadline = true;
    tr_conn_set_deadline(c);
    tr_conn_read(c, MSG_DOC_HEAD, c->small, 4);
}

/* ---- Outgoing: the connector's side -------------------------------------- */

void tr_connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    struct tr *tr = c->tr;
    uint8_t hello[HELLO_FIXED + REPL_TRANSPORT_ADDRESS_MAX];
    size_t alen = strlen(tr->address);

    if (c->state == ST_CLOSING) {
        return; /* UV_ECANCELED: close_cb comes next */
    }
    if (status != 0) {
        tr_conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_EIO, "connect: %s", uv_strerror(status));
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
    if (tr_conn_write(c, hello, HELLO_FIXED + alen, NULL, 0) != 0) {
        return;
    }
    tr_conn_read(c, MSG_CHALLENGE, c->small, CHALLENGE_SIZE);
}

void tr_on_challenge(struct conn *c)
{
    uint8_t proof[PROOF_SIZE];
    const uint8_t *ch = c->small;
    int rv;

    if (memcmp(ch, MAGIC, 4) != 0 || get_be16(ch + 4) != PROTOCOL_VERSION ||
        get_be16(ch + 6) != 0) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                     "answered with something else than a Cairn member's challenge");
        return;
    }
    memcpy(c->nonce_a, ch + 8, NONCE_SIZE);
    handshake_mac(c->tr, c, 'C', -1, proof);
    rv = tr_conn_write(c, proof, sizeof proof, NULL, 0);
    cairn_wipe(proof, sizeof proof);
    if (rv == 0) {
        tr_conn_read(c, MSG_ACCEPT, c->small, ACCEPT_SIZE);
    }
}

void tr_on_accept_msg(struct conn *c)
{
    uint8_t want[PROOF_SIZE];
    uint8_t status = c->small[0];
    bool ok;

    if (status != STATUS_ACCEPTED && status != STATUS_UNAVAILABLE) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO, "bad handshake status %u", status);
        return;
    }
    handshake_mac(c->tr, c, 'A', status, want);
    ok = cairn_memeq_ct(want, c->small + 1, PROOF_SIZE);
    cairn_wipe(want, sizeof want);
    if (!ok) {
        tr_conn_fail(c, CAIRN_LOG_WARN, CAIRN_EPROTO,
                     "authentication failed: its proof does not match our key (another "
                     "--keyFile, or none?)");
        return;
    }
    if (status == STATUS_UNAVAILABLE) {
        tr_conn_fail(c, CAIRN_LOG_DEBUG, CAIRN_EBUSY, "does not serve %s connections yet",
                     c->purpose == PURPOSE_RAFT ? "raft" : "control");
        return;
    }
    if (c->kind == KIND_RAFT) {
        tr_conn_flush(c);
        return;
    }
    c->state = ST_EXCHANGE;
    c->deadline = c->call_deadline;
    tr_arm_timer(c->tr);
    if (tr_conn_write(c, c->out, c->out_len, NULL, 0) != 0) {
        return;
    }
    free(c->out);
    c->out = NULL;
    tr_conn_read(c, MSG_DOC_HEAD, c->small, 4);
}
