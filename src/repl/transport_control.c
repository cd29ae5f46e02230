/*
 * transport_control.c: the control exchange of the member transport. After
 * a CONTROL handshake, C sends one BSON document, A's control handler
 * answers one, and the connection closes (the wire protocol is in
 * transport_handshake.c). This file reads both documents, bounding each
 * before it is allocated (invariant 6 of transport_int.h), runs the handler
 * (A) and gives the reply to the caller (C).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "repl/transport_int.h"

_Static_assert(REPL_TRANSPORT_CONTROL_MAX <= INT32_MAX, "BSON lengths are int32");

/* ---- Helpers ------------------------------------------------------------- */

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- The two ends of the exchange ---------------------------------------- */

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
    tr_conn_set_deadline(c);
    if (tr_conn_write(c, bson_get_data(&reply), reply.len, NULL, 0) == 0) {
        tr_conn_flush(c);
    }
    bson_destroy(&reply);
}

/* The reply is complete: give it to the caller, then close. */
static void on_reply(struct conn *c, const bson_t *reply)
{
    repl_transport_call_cb cb = c->call_cb;
    void *arg = c->call_arg;

    c->call_cb = NULL; /* fired exactly once (invariant 4) */
    tr_conn_read_stop(c);
    tr_conn_close(c, 0);
    cb(arg, 0, reply);
}

/* ---- Reading a control document ------------------------------------------ */

void tr_on_doc_head(struct conn *c)
{
    uint32_t len = get_le32(c->small);

    if (len < 5 || len > REPL_TRANSPORT_CONTROL_MAX) {
        tr_conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, CAIRN_EPROTO,
                     "control document of %u bytes (must be 5..%zu)", len,
                     REPL_TRANSPORT_CONTROL_MAX);
        return;
    }
    c->doc = malloc(len);
    if (c->doc == NULL) {
        tr_conn_fail(c, CAIRN_LOG_ERROR, CAIRN_ENOMEM, "out of memory for a %u-byte document", len);
        return;
    }
    memcpy(c->doc, c->small, 4);
    tr_conn_read(c, MSG_DOC_BODY, c->doc + 4, len - 4);
}

void tr_on_doc_body(struct conn *c)
{
    size_t len = c->rwant + 4;
    bson_t doc;
    size_t off;

    if (!bson_init_static(&doc, c->doc, len) || !bson_validate(&doc, BSON_VALIDATE_NONE, &off)) {
        tr_conn_fail(c, c->kind == KIND_INCOMING ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, CAIRN_EPROTO,
                     "malformed control document");
        return;
    }
    tr_conn_read_stop(c);
    if (c->kind == KIND_INCOMING) {
        on_request(c, &doc);
    } else {
        on_reply(c, &doc);
    }
}
