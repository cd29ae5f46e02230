/*
 * cmd_ops.c: client commands as operations in progress, and the commands
 * that list and kill them: currentOp and killOp (admin only).
 *
 * Dispatch registers every command it runs (net_op_begin) from just before
 * the fail point and afterClusterTime checks until its reply is sent, a
 * write-concern wait included, and unregisters it (net_op_end) before the
 * request is freed. A net_op is a lib/op.h operation, which carries the
 * maxTimeMS deadline and the kill flag that scans and waits check, plus
 * what currentOp shows: the connection, the command document, its
 * namespace and mongod's logical op type.
 *
 * Invariants:
 *  1. A net_op is in this file's list exactly while it is registered in
 *     lib/op.h's registry: both happen under ops_mu, so currentOp, which
 *     holds ops_mu throughout, sees every operation either as a client
 *     command with all its fields or (conn_id 0, registered by another
 *     layer) as an internal one.
 *  2. While registered, nop->command and nop->conn stay valid: the request
 *     and its connection's turn outlive the registration.
 *  Lock order: ops_mu, then lib/op.h's registry lock or the server lock
 *  (s->mu); neither of those is ever held while ops_mu is taken.
 *
 * currentOp follows mongod's command (current_op_common.cpp): every field
 * of the command but the first, $all, $ownOps, $truncateOps and the generic
 * arguments is a filter matched against each entry (with the query
 * matcher); $all adds idle connections. Entries have mongod's shape: type,
 * host, desc ("conn<N>"), connectionId, client, appName, clientMetadata,
 * active, currentOpTime, threaded, opid, lsid/txnNumber, secs_running,
 * microsecs_running, op, ns, command (a command over 1000 bytes becomes
 * {$truncated: "<its JSON, cut at 1000 bytes>..."}, as mongod's
 * truncateOps), killPending. The $currentOp aggregation stage does not
 * exist (aggregate answers its usual unknown-stage error).
 *
 * killOp {op: <int, long or integral double>} kills with 11601 Interrupted
 * and always answers {info: "attempting to kill op"} once `op` parses, as
 * mongod: 4 NoSuchKey without op, 14 TypeMismatch for a non-number, 2
 * BadValue for a fraction, 26823 outside 32 bits.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/op.h"
#include "net/net_int.h"
#include "net/server_int.h"

/* mongod truncates each op's command to this many bytes in currentOp. */
#define CURRENT_OP_MAX_COMMAND 1000

static pthread_mutex_t ops_mu = PTHREAD_MUTEX_INITIALIZER;
static struct net_op *ops_head;

/* mongod's logical op of a command received over OP_MSG / OP_QUERY. */
static const char *op_type_of(const char *name)
{
    if (strcmp(name, "insert") == 0) {
        return "insert";
    }
    if (strcmp(name, "update") == 0) {
        return "update";
    }
    if (strcmp(name, "delete") == 0) {
        return "remove";
    }
    if (strcmp(name, "find") == 0) {
        return "query";
    }
    if (strcmp(name, "getMore") == 0) {
        return "getmore";
    }
    return "command";
}

void net_op_begin(struct net_op *nop, const struct net_cmd *c, uint64_t deadline_ns)
{
    struct cairn_op *op = &nop->op;

    memset(nop, 0, sizeof *nop);
    op->deadline_ns = deadline_ns;
    op->conn_id = c->conn_id;
    nop->conn = c->conn;
    nop->command = c->body;
    nop->op_type = op_type_of(c->name);
    net_cmd_op_ns(c, true, nop->ns, sizeof nop->ns);
    snprintf(op->desc, sizeof op->desc, "%.40s %.54s", c->name, nop->ns);

    pthread_mutex_lock(&ops_mu);
    cairn_op_begin(op);
    nop->prev = NULL;
    nop->next = ops_head;
    if (ops_head != NULL) {
        ops_head->prev = nop;
    }
    ops_head = nop;
    nop->registered = true;
    pthread_mutex_unlock(&ops_mu);
    /* Registered first, then checked: net_server_stop sets `stopping`
     * before it kills every client operation, so either that kill finds
     * this operation or this check sees `stopping`. */
    if (net_server_stopping(net_conn_server(c->conn))) {
        cairn_op_interrupt(op, MONGO_InterruptedAtShutdown);
    }
}

void net_op_end(struct net_op *nop)
{
    /* The disconnect watch ends first: its callback interrupts nop->op. */
    net_guard_end(&nop->guard);
    if (!nop->registered) {
        return;
    }
    pthread_mutex_lock(&ops_mu);
    if (nop->prev != NULL) {
        nop->prev->next = nop->next;
    } else {
        ops_head = nop->next;
    }
    if (nop->next != NULL) {
        nop->next->prev = nop->prev;
    }
    nop->prev = nop->next = NULL;
    cairn_op_end(&nop->op);
    nop->registered = false;
    pthread_mutex_unlock(&ops_mu);
}

void net_ops_foreach(void (*fn)(struct net_op *nop, void *arg), void *arg)
{
    pthread_mutex_lock(&ops_mu);
    for (struct net_op *nop = ops_head; nop != NULL; nop = nop->next) {
        fn(nop, arg);
    }
    pthread_mutex_unlock(&ops_mu);
}

/* ---- currentOp ---------------------------------------------------------- */

struct listing
{
    struct net_server *s;
    const struct qry_matcher *m;
    bool truncate;
    char host[300];
    bson_t *inprog; /* the array being built */
    uint32_t n;
    uint64_t *busy_conns; /* connections with a client operation */
    size_t n_busy, cap_busy;
    bool nomem;
};

static void append_int_or_long(bson_t *doc, const char *key, uint64_t v)
{
    if (v <= INT32_MAX) {
        BSON_APPEND_INT32(doc, key, (int32_t)v);
    } else {
        BSON_APPEND_INT64(doc, key, (int64_t)v);
    }
}

/* Appends `entry` to the listing when the filter matches it. */
static void emit(struct listing *l, const bson_t *entry)
{
    char keybuf[16];
    const char *key;
    size_t klen;

    if (l->m != NULL && !qry_matcher_match(l->m, entry)) {
        return;
    }
    klen = bson_uint32_to_string(l->n++, &key, keybuf, sizeof keybuf);
    bson_append_document(l->inprog, key, (int)klen, entry);
}

/* The command as currentOp shows it: whole, or {$truncated, comment}. */
static void append_command(bson_t *e, const bson_t *cmd, bool truncate)
{
    bson_t sub;
    bson_iter_t it;
    char *json;
    size_t len = 0;

    if (!truncate || cmd->len <= CURRENT_OP_MAX_COMMAND) {
        BSON_APPEND_DOCUMENT(e, "command", cmd);
        return;
    }
    json = bson_as_relaxed_extended_json(cmd, &len);
    BSON_APPEND_DOCUMENT_BEGIN(e, "command", &sub);
    if (json == NULL) {
        BSON_APPEND_UTF8(&sub, "$truncated", "...");
    } else {
        if (len > CURRENT_OP_MAX_COMMAND) {
            /* Cut at a character boundary, then mark the cut. */
            size_t cut = CURRENT_OP_MAX_COMMAND - 3;
            while (cut > 0 && ((unsigned char)json[cut] & 0xC0) == 0x80) {
                cut--;
            }
            memcpy(json + cut, "...", 4);
            len = cut + 3;
        }
        bson_append_utf8(&sub, "$truncated", -1, json, (int)len);
        bson_free(json);
    }
    if (bson_iter_init_find(&it, cmd, "comment")) {
        bson_append_iter(&sub, "comment", -1, &it);
    }
    bson_append_document_end(e, &sub);
}

static void append_timing(bson_t *e, const struct cairn_op *op)
{
    uint64_t now = cairn_mono_ns();
    uint64_t us = now > op->start_mono_ns ? (now - op->start_mono_ns) / 1000u : 0;

    BSON_APPEND_INT64(e, "secs_running", (int64_t)(us / 1000000u));
    BSON_APPEND_INT64(e, "microsecs_running", (int64_t)us);
}

/* One client command (ops_mu held). */
static void list_client_op(struct listing *l, const struct net_op *nop)
{
    const struct cairn_op *op = &nop->op;
    bson_t e = BSON_INITIALIZER;
    bson_iter_t it;
    char desc[32];

    snprintf(desc, sizeof desc, "conn%llu", (unsigned long long)op->conn_id);
    BSON_APPEND_UTF8(&e, "type", "op");
    BSON_APPEND_UTF8(&e, "host", l->host);
    BSON_APPEND_UTF8(&e, "desc", desc);
    append_int_or_long(&e, "connectionId", op->conn_id);
    BSON_APPEND_UTF8(&e, "client", net_conn_peer(nop->conn));
    net_conn_append_client(nop->conn, &e);
    BSON_APPEND_BOOL(&e, "active", true);
    net_append_iso_now(&e, "currentOpTime");
    BSON_APPEND_BOOL(&e, "threaded", true);
    append_int_or_long(&e, "opid", op->id);
    if (bson_iter_init_find(&it, nop->command, "lsid") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_append_iter(&e, "lsid", -1, &it);
    }
    if (bson_iter_init_find(&it, nop->command, "txnNumber")) {
        bson_append_iter(&e, "txnNumber", -1, &it);
    }
    append_timing(&e, op);
    BSON_APPEND_UTF8(&e, "op", nop->op_type);
    BSON_APPEND_UTF8(&e, "ns", nop->ns);
    append_command(&e, nop->command, l->truncate);
    if (atomic_load(&op->kill_code) != 0) {
        BSON_APPEND_BOOL(&e, "killPending", true);
    }
    emit(l, &e);
    bson_destroy(&e);
}

/* An operation another layer registered (no client connection). */
static void list_internal_op(const struct cairn_op *op, void *arg)
{
    struct listing *l = arg;
    bson_t e = BSON_INITIALIZER;

    if (op->conn_id != 0) {
        return; /* a client command: listed from this file's list */
    }
    BSON_APPEND_UTF8(&e, "type", "op");
    BSON_APPEND_UTF8(&e, "host", l->host);
    BSON_APPEND_UTF8(&e, "desc", op->desc);
    BSON_APPEND_BOOL(&e, "active", true);
    net_append_iso_now(&e, "currentOpTime");
    append_int_or_long(&e, "opid", op->id);
    append_timing(&e, op);
    BSON_APPEND_UTF8(&e, "op", "none");
    BSON_APPEND_UTF8(&e, "ns", "");
    if (atomic_load(&op->kill_code) != 0) {
        BSON_APPEND_BOOL(&e, "killPending", true);
    }
    emit(l, &e);
    bson_destroy(&e);
}

/* A connection with no command running ($all: true). */
static void list_idle_conn(const struct net_conn_info *ci, void *arg)
{
    struct listing *l = arg;
    bson_t e = BSON_INITIALIZER;
    char desc[32];

    for (size_t i = 0; i < l->n_busy; i++) {
        if (l->busy_conns[i] == ci->id) {
            return;
        }
    }
    snprintf(desc, sizeof desc, "conn%llu", (unsigned long long)ci->id);
    BSON_APPEND_UTF8(&e, "type", "op");
    BSON_APPEND_UTF8(&e, "host", l->host);
    BSON_APPEND_UTF8(&e, "desc", desc);
    append_int_or_long(&e, "connectionId", ci->id);
    BSON_APPEND_UTF8(&e, "client", ci->peer);
    if (ci->app_name != NULL) {
        BSON_APPEND_UTF8(&e, "appName", ci->app_name);
    }
    if (ci->metadata != NULL) {
        BSON_APPEND_DOCUMENT(&e, "clientMetadata", ci->metadata);
    }
    BSON_APPEND_BOOL(&e, "active", false);
    net_append_iso_now(&e, "currentOpTime");
    BSON_APPEND_BOOL(&e, "threaded", true);
    emit(l, &e);
    bson_destroy(&e);
}

static void note_busy_conn(struct listing *l, uint64_t id)
{
    if (l->n_busy == l->cap_busy) {
        size_t cap = l->cap_busy == 0 ? 16 : l->cap_busy * 2;
        uint64_t *grown = realloc(l->busy_conns, cap * sizeof *grown);
        if (grown == NULL) {
            l->nomem = true;
            return;
        }
        l->busy_conns = grown;
        l->cap_busy = cap;
    }
    l->busy_conns[l->n_busy++] = id;
}

static void append_iso_ms(bson_t *e, const char *key, int64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    char buf[64];

    gmtime_r(&secs, &tm);
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(wall_ms % 1000));
    BSON_APPEND_UTF8(e, key, buf);
}

/* One open transaction no command of which runs now. */
static void list_idle_txn(const struct txn_open_info *info, void *arg)
{
    struct listing *l = arg;
    bson_t e = BSON_INITIALIZER, sub, t, p;
    int64_t now_ms = cairn_wall_ms();
    int64_t open_us = (now_ms - info->start_wall_ms) * 1000;

    if (info->active) {
        return; /* listed with its running command */
    }
    BSON_APPEND_UTF8(&e, "type", "idleSession");
    BSON_APPEND_UTF8(&e, "host", l->host);
    BSON_APPEND_UTF8(&e, "desc", "inactive transaction");
    BSON_APPEND_BOOL(&e, "active", false);
    net_append_iso_now(&e, "currentOpTime");
    BSON_APPEND_DOCUMENT_BEGIN(&e, "lsid", &sub);
    BSON_APPEND_BINARY(&sub, "id", BSON_SUBTYPE_UUID, info->lsid, TXN_LSID_LEN);
    bson_append_document_end(&e, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&e, "transaction", &t);
    BSON_APPEND_DOCUMENT_BEGIN(&t, "parameters", &p);
    BSON_APPEND_INT64(&p, "txnNumber", info->txn_number);
    BSON_APPEND_BOOL(&p, "autocommit", false);
    bson_append_document_end(&t, &p);
    BSON_APPEND_TIMESTAMP(&t, "readTimestamp", CAIRN_TS_SECS(info->read_ts),
                          CAIRN_TS_INC(info->read_ts));
    append_iso_ms(&t, "startWallClockTime", info->start_wall_ms);
    BSON_APPEND_INT64(&t, "timeOpenMicros", open_us > 0 ? open_us : 0);
    append_iso_ms(&t, "expiryTime", info->expire_wall_ms);
    bson_append_document_end(&e, &t);
    emit(l, &e);
    bson_destroy(&e);
}

/* Sessions that hold an open multi-document transaction while no command
 * of theirs runs: mongod lists each as {type: "idleSession", desc:
 * "inactive transaction", lsid, transaction: {parameters: {txnNumber,
 * autocommit}, readTimestamp, startWallClockTime, timeOpenMicros,
 * expiryTime}} (its $currentOp idleSessions, which the currentOp command
 * includes), so that operators see what holds documents. */
static void list_idle_transactions(struct listing *l, const struct net_deps *deps)
{
    if (deps->txn != NULL) {
        txn_foreach_open(deps->txn, list_idle_txn, l);
    }
}

/* mongod's currentOp command fields that are not filters. */
static bool is_current_op_param(const char *key)
{
    return strcmp(key, "$all") == 0 || strcmp(key, "$ownOps") == 0 ||
           strcmp(key, "$truncateOps") == 0;
}

static int cmd_current_op(struct net_cmd *c)
{
    struct listing l;
    bson_t filter = BSON_INITIALIZER;
    bson_t inprog;
    struct qry_matcher *m = NULL;
    bson_iter_t it;
    bool all = false, truncate = true;
    char hn[256];
    int rv = NET_CMD_DONE;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        bson_destroy(&filter);
        return NET_CMD_ERROR;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "$all") == 0) {
            all = bson_iter_as_bool(&it);
        } else if (strcmp(key, "$truncateOps") == 0) {
            /* As mongod: only test commands may ask for whole commands. */
            truncate = !net_test_commands_enabled() || bson_iter_as_bool(&it);
        } else if (!is_current_op_param(key) && !net_is_generic_arg(key)) {
            bson_append_iter(&filter, key, -1, &it);
        }
    }
    if (!bson_empty(&filter) && qry_matcher_compile(&filter, &m, &c->err) != 0) {
        bson_destroy(&filter);
        return NET_CMD_ERROR;
    }

    memset(&l, 0, sizeof l);
    l.s = net_conn_server(c->conn);
    l.m = m;
    l.truncate = truncate;
    if (gethostname(hn, sizeof hn) != 0) {
        snprintf(hn, sizeof hn, "localhost");
    }
    hn[sizeof hn - 1] = '\0';
    snprintf(l.host, sizeof l.host, "%s:%d", hn, net_server_options(l.s)->port);

    BSON_APPEND_ARRAY_BEGIN(&c->reply, "inprog", &inprog);
    l.inprog = &inprog;
    pthread_mutex_lock(&ops_mu);
    for (const struct net_op *nop = ops_head; nop != NULL; nop = nop->next) {
        list_client_op(&l, nop);
        note_busy_conn(&l, nop->op.conn_id);
    }
    cairn_op_foreach(list_internal_op, &l);
    pthread_mutex_unlock(&ops_mu);
    if (all && !l.nomem) {
        net_server_foreach_conn(l.s, list_idle_conn, &l);
    }
    list_idle_transactions(&l, c->deps);
    bson_append_array_end(&c->reply, &inprog);

    if (l.nomem) {
        rv = cairn_error_mongo(&c->err, CAIRN_ENOMEM, MONGO_ExceededMemoryLimit,
                               "currentOp: out of memory");
    }
    free(l.busy_conns);
    qry_matcher_free(m);
    bson_destroy(&filter);
    return rv == NET_CMD_DONE ? NET_CMD_DONE : NET_CMD_ERROR;
}

/* ---- killOp ------------------------------------------------------------- */

static int cmd_kill_op(struct net_cmd *c)
{
    int64_t op;

    if (net_extract_integer(c->body, "op", &op, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (op < INT32_MIN || op > INT32_MAX) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_KillOpIdNot32Bit,
                          "invalid op : %" PRId64 ". Op ID cannot be represented with 32 bits", op);
        return NET_CMD_ERROR;
    }
    BSON_APPEND_UTF8(&c->reply, "info", "attempting to kill op");
    /* mongod reads the id as an unsigned 32-bit number. */
    if (cairn_op_kill((uint64_t)(uint32_t)op, MONGO_Interrupted)) {
        net_log_event(net_conn_server(c->conn), "conn%llu: killed op %u",
                      (unsigned long long)c->conn_id, (unsigned)(uint32_t)op);
    }
    return NET_CMD_DONE;
}

const struct net_cmd_def net_cmds_ops[] = {
    {"currentOp", cmd_current_op, NET_CMD_F_ADMIN_ONLY},
    {"killOp", cmd_kill_op, NET_CMD_F_ADMIN_ONLY},
    {NULL, NULL, 0},
};
