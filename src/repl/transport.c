/*
 * transport.c: the member transport declared in transport.h: a version-1
 * raft_uv transport whose connections start with a shared-key handshake,
 * and a one-request control channel on the same port.
 *
 * This file owns the transport object (struct tr): the public functions of
 * transport.h and the raft_uv_transport interface (t->init, t->listen,
 * t->connect, t->close). The rest is split by responsibility around
 * transport_int.h, which describes the connection state machine and its
 * invariants; transport_handshake.c describes the wire protocol.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sha256.h"
#include "repl/transport_int.h"

/* ---- The raft_uv_transport interface ------------------------------------- */

static int set_identity(struct tr *tr, uint64_t id, const char *address)
{
    size_t n = address != NULL ? strlen(address) : 0;
    if (n > REPL_TRANSPORT_ADDRESS_MAX || !tr_is_printable((const uint8_t *)address, n)) {
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
    if (tr_start_listening(tr, &err) != 0) {
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
    c = tr_conn_alloc(tr, KIND_RAFT);
    if (c == NULL) {
        rv = RAFT_NOMEM;
        goto err;
    }
    c->purpose = PURPOSE_RAFT;
    c->req = req;
    req->cb = cb;
    rv = tr_start_outgoing(tr, c, address);
    if (rv != 0) {
        rv = rv == CAIRN_ENOMEM ? RAFT_NOMEM : RAFT_NOCONNECTION;
        goto err_after_conn_alloc;
    }
    return 0;

err_after_conn_alloc:
    tr_conn_unlink_free(c);
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
        uv_close((uv_handle_t *)&tr->listener, tr_listener_close_cb);
    }
    if (tr->timer_open) {
        uv_close((uv_handle_t *)&tr->timer, tr_timer_close_cb);
    }
    for (struct conn *c = tr->conns; c != NULL; c = c->next) {
        tr_conn_close(c, CAIRN_ESHUTDOWN); /* invariant 8; frees nothing now */
    }
    tr_maybe_fire_close(tr);
}

/* ---- Public functions ---------------------------------------------------- */

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
    return tr_start_listening(tr, err);
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
    c = tr_conn_alloc(tr, KIND_CALL);
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
    rv = tr_start_outgoing(tr, c, address);
    if (rv != 0) {
        goto err_after_conn_alloc;
    }
    /* Set only now: a failed start must not fire it (invariant 4). */
    c->call_cb = cb;
    c->call_arg = arg;
    return 0;

err_after_conn_alloc:
    tr_conn_unlink_free(c); /* frees c->out too */
err:
    assert(rv != 0);
    return rv;
}

int repl_transport_port(const struct raft_uv_transport *t)
{
    const struct tr *tr = t->impl;
    return tr != NULL && tr->listening ? tr->port : 0;
}
