/*
 * transport.h: the member transport (repl-private: only src/repl includes
 * it). A `struct raft_uv_transport` (version 1) that raft_uv uses in place of
 * raft_uv_tcp for member-to-member traffic, plus a request/response channel
 * ("control") for repl itself. transport_handshake.c describes the wire
 * protocol, transport_int.h the connection state machine.
 *
 * What it adds to raft_uv_tcp:
 * - Peer addresses are "host:port" and are resolved (IPv4) on every
 *   connect, on the loop: Docker service names and containers that change
 *   address work, and a name that does not resolve yet is only a failed
 *   connect, which raft_uv retries.
 * - Every connection starts with a handshake in which both members prove
 *   knowledge of the shared key (--keyFile) with HMAC-SHA256 over fresh
 *   nonces of both sides, the connection's purpose and the connecting
 *   member's raft id and address. Only then does raft_uv (or the control
 *   callback) see the connection. A peer that fails it, sends garbage or
 *   stalls past the deadline is closed and logged once at WARN.
 * - Without a key the handshake still runs with the empty key: like mongod
 *   without --keyFile, that authenticates nothing (anyone who speaks the
 *   protocol gets in); it only keeps non-Cairn traffic off raft.
 * - The key authenticates the start of a connection; it neither encrypts
 *   nor protects what follows (as mongod's keyFile without TLS).
 *
 * Threads: every function runs on the loop thread (the one running `loop`),
 * except repl_transport_init, which may run on any thread before the loop
 * uses the transport. Nothing here is thread-safe.
 *
 * Life cycle:
 *   repl_transport_init(t, loop, opts)     allocates t->impl, opens nothing
 *   [repl_transport_serve(t, id, address)] optional: listen before raft does
 *   raft_uv_init(io, loop, dir, t)         raft_uv calls t->init, t->listen,
 *                                          t->connect and, at raft_uv close,
 *                                          t->close
 *   repl_transport_call(...)               any time before t->close
 *   t->close(t, cb)                        cancels everything; cb fires once
 *                                          every handle is closed and every
 *                                          connection freed
 *   repl_transport_close(t)                frees t->impl
 *
 * Ownership: t->data belongs to raft_uv (which sets it); the transport keeps
 * its state in t->impl only. A stream passed to raft's accept or connect
 * callback was allocated with raft_malloc and belongs to raft_uv from then
 * on, which uv_close()s it and frees it with raft_free, as with
 * raft_uv_tcp. Raft's connect callback fires exactly once per t->connect
 * that returned 0: with a stream, with RAFT_NOCONNECTION (resolve, connect
 * or handshake failed, deadline passed), or with RAFT_CANCELED (t->close).
 * The close callback of t->close fires once, possibly before t->close
 * returns when nothing was open.
 */
#ifndef CAIRN_REPL_TRANSPORT_H
#define CAIRN_REPL_TRANSPORT_H

#include <bson/bson.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>
#include <uv.h>

#include "cairn/cairn.h"

/* Longest member address ("host:port") the handshake carries. */
#define REPL_TRANSPORT_ADDRESS_MAX 255

/* Longest shared key (mongod's key file limit). */
#define REPL_TRANSPORT_KEY_MAX 1024

/* Largest control request or reply document: a checkpoint chunk holding
 * one 16 MiB document with its key and framing fits (checkpoint.c). */
#define REPL_TRANSPORT_CONTROL_MAX ((size_t)17 << 20)

/* Default for repl_transport_options.handshake_timeout_ms. */
#define REPL_TRANSPORT_HANDSHAKE_TIMEOUT_MS 5000

/* Incoming connections that may be in their handshake (or control exchange)
 * at once; more are closed at once (logged at WARN). */
#define REPL_TRANSPORT_MAX_INCOMING 64

/* The control handler: answers one control request. `req` is a validated
 * BSON document, borrowed for the call. `reply` is an empty document the
 * handler fills (borrowed; the transport sends and destroys it).
 * Returns 0, or a CAIRN_E* code: then the transport replaces whatever was
 * written to `reply` with {ok: 0.0, errmsg: cairn_strerror(code), code:
 * code} and sends that. Runs on the loop thread; must not block, and may
 * call any transport function (also t->close). */
typedef int (*repl_transport_control_cb)(void *arg, const bson_t *req, bson_t *reply);

/* The end of a control call. `status` is 0 with the peer's `reply` (a
 * validated document borrowed for the duration of the callback), or, with
 * `reply` NULL:
 * - CAIRN_EIO: the name did not resolve, the connection was refused or
 *   lost;
 * - CAIRN_EPROTO: the handshake failed (another key, not a Cairn member) or
 *   the reply was malformed;
 * - CAIRN_EBUSY: the peer does not serve control requests (yet);
 * - CAIRN_ETIMEOUT: `timeout_ms` passed;
 * - CAIRN_ESHUTDOWN: the transport was closed first;
 * - CAIRN_ENOMEM.
 * Runs on the loop thread, never from inside repl_transport_call. */
typedef void (*repl_transport_call_cb)(void *arg, int status, const bson_t *reply);

struct repl_transport_options
{
    /* "a.b.c.d:port" to listen on; NULL or "" = the address raft_uv passes
     * to t->init (or repl_transport_serve's). A host name is resolved once,
     * when listening starts (blocking). Copied. */
    const char *bind_address;
    /* The shared key (the key file's characters, whitespace removed) and
     * its length (0..REPL_TRANSPORT_KEY_MAX; 0 = no key). Copied. */
    const void *key;
    size_t key_len;
    /* Control handler and its argument; NULL: control requests are refused
     * (callers see CAIRN_EBUSY). */
    repl_transport_control_cb control;
    void *control_arg;
    /* Deadline of a handshake, from accept (or from the start of a
     * connect) to its end, and the longest pause while a control request
     * arrives. 0 = REPL_TRANSPORT_HANDSHAKE_TIMEOUT_MS. */
    unsigned handshake_timeout_ms;
};

/* Initializes `t` (caller-allocated, e.g. embedded in struct repl) as a
 * version-1 raft_uv transport on `loop`. Opens no handle: until listen,
 * serve, connect or call, repl_transport_close alone releases it.
 * Overwrites all of `t` (data included). Errors: CAIRN_EINVAL (bind
 * address longer than REPL_TRANSPORT_ADDRESS_MAX, key longer than
 * REPL_TRANSPORT_KEY_MAX), CAIRN_ENOMEM; then t->impl is NULL. Any thread,
 * before the loop runs anything of the transport. */
int repl_transport_init(struct raft_uv_transport *t,
                        uv_loop_t *loop,
                        const struct repl_transport_options *opts,
                        struct cairn_error *err);

/* Frees what repl_transport_init allocated (the key copy is wiped) and
 * sets t->impl to NULL. A no-op when t is NULL or t->impl is NULL (never
 * initialized, or already freed). Once any handle was opened (listen,
 * serve, connect or call), it must be called only after the callback of
 * t->close has fired (checked with an assert). Loop thread. */
void repl_transport_close(struct raft_uv_transport *t);

/* Listens now, before raft_uv exists, so that control requests are
 * served (a member that is not yet part of a configuration waits for one):
 * sets this member's identity as t->init does (id 0 = not a raft member
 * yet; address "" allowed) and binds the bind address, else `address`.
 * Raft connections are answered "unavailable" (the connecting member
 * retries) until raft_uv calls t->listen, which then keeps this listener.
 * Errors: CAIRN_EINVAL (bad or too long address), CAIRN_EIO (bind or
 * listen failed; message says why, e.g. address in use), CAIRN_ESTATE
 * (already listening, or closed). After a failure t->close must still be
 * called if anything was opened. Loop thread. */
int repl_transport_serve(struct raft_uv_transport *t,
                         uint64_t id,
                         const char *address,
                         struct cairn_error *err);

/* Sends the control request `req` (copied: the caller may free it when
 * this returns) to the member at `address` ("host:port", resolved now) and
 * calls `cb` with its reply or a failure, exactly once, later, on the loop
 * thread; `timeout_ms` (>= 1) bounds the whole call. The request travels
 * with this member's identity as set by t->init or repl_transport_serve
 * (id 0 and "" before either). Returns 0 (cb will fire), or an error and cb
 * never fires: CAIRN_EINVAL (malformed address, timeout 0), CAIRN_ETOOBIG
 * (req over REPL_TRANSPORT_CONTROL_MAX), CAIRN_ESHUTDOWN (t->close was
 * called), CAIRN_ENOMEM. Loop thread. */
int repl_transport_call(struct raft_uv_transport *t,
                        const char *address,
                        const bson_t *req,
                        uint64_t timeout_ms,
                        repl_transport_call_cb cb,
                        void *arg);

/* The port the listener is bound to, or 0 when not listening (tests bind
 * port 0 and read the port here). Loop thread. */
int repl_transport_port(const struct raft_uv_transport *t);

#endif /* CAIRN_REPL_TRANSPORT_H */
