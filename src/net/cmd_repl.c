/*
 * cmd_repl.c: the replica-set commands that change the set or its
 * leadership (net_cmds_repl): replSetReconfig, replSetStepDown and
 * replSetFreeze, with mongod's arguments, defaults and errors (the table
 * also lists the read/write concern defaults commands of rwc.c). The work is
 * repl's (repl_reconfig_begin, repl_step_down, repl_freeze) and, for a
 * reconfig, txn's (the config travels as a commit); these handlers parse,
 * sequence and answer.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lib/op.h"

#include "net/net_int.h"
#include "net/server_int.h"

/* replSetStepDown: <stepDownSecs> (default 60), secondaryCatchUpPeriodSecs
 * (default 10), force. Blocks its worker while the catch-up runs (at most
 * secondaryCatchUpPeriodSecs). */
static int cmd_repl_set_step_down(struct net_cmd *c)
{
    int64_t secs = 60, catch_up = 10;
    bool force = false;
    bson_iter_t it;

    if (bson_iter_init(&it, c->body) && bson_iter_next(&it) && !BSON_ITER_HOLDS_BOOL(&it)) {
        if (!BSON_ITER_HOLDS_NUMBER(&it)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "replSetStepDown: the step-down period must be a number");
        }
        secs = bson_iter_as_int64(&it);
    }
    if (net_get_int64(c, "secondaryCatchUpPeriodSecs", &catch_up) != 0 ||
        net_get_bool(c, "force", &force) != 0) {
        return NET_CMD_ERROR;
    }
    if (secs <= 0 || secs > 1000000) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "stepdown period must be a positive number of seconds");
    }
    if (catch_up < 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "secondaryCatchUpPeriodSecs must be non-negative");
    }
    if (catch_up > secs) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "stepdown period must be longer than secondaryCatchUpPeriodSecs");
    }
    if (repl_step_down(c->deps->repl, (int)secs, (int)catch_up, force, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    net_log_event(net_conn_server(c->conn), "replSetStepDown from conn%llu: stepped down",
                  (unsigned long long)c->conn_id);
    return NET_CMD_DONE;
}

/* replSetReconfig: <config>, force. The config is checked, committed
 * through the log and waited for at majority (the command's maxTimeMS
 * bounds the wait): every member installs it when it applies the entry. */
static int cmd_repl_set_reconfig(struct net_cmd *c)
{
    bson_iter_t it;
    bson_t config;
    const uint8_t *data;
    uint8_t *doc = NULL;
    uint32_t dlen;
    size_t len = 0;
    bool force = false;
    cairn_ts ts = 0;
    int rv;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "replSetReconfig: the new config must be a document");
    }
    bson_iter_document(&it, &dlen, &data);
    if (!bson_init_static(&config, data, dlen)) {
        return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_InvalidReplicaSetConfig,
                                 "invalid config document");
    }
    if (net_get_bool(c, "force", &force) != 0) {
        return NET_CMD_ERROR;
    }
    if (force) {
        return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "replSetReconfig with force: true is not supported");
    }
    rv = repl_reconfig_begin(c->deps->repl, &config, &doc, &len, &c->err);
    if (rv != 0) {
        return NET_CMD_ERROR;
    }
    rv = txn_write_config(c->deps->txn, doc, len, &ts, &c->err);
    if (rv == 0) {
        rv = repl_wait_applied(c->deps->repl, ts, cairn_op_current(), &c->err);
    }
    repl_reconfig_end(c->deps->repl);
    free(doc);
    if (rv != 0) {
        return NET_CMD_ERROR;
    }
    net_log_event(net_conn_server(c->conn), "replSetReconfig from conn%llu: config committed",
                  (unsigned long long)c->conn_id);
    return NET_CMD_DONE;
}

/* replSetFreeze: <seconds> (0 unfreezes). */
static int cmd_repl_set_freeze(struct net_cmd *c)
{
    bson_iter_t it;
    int64_t secs;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_NUMBER(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "replSetFreeze: the number of seconds must be a number");
    }
    secs = bson_iter_as_int64(&it);
    if (secs < 0 || secs > 1000000) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "replSetFreeze: seconds must be in [0, 1000000]");
    }
    if (repl_freeze(c->deps->repl, (int)secs, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (secs == 0) {
        BSON_APPEND_UTF8(&c->reply, "info", "unfreezing");
    }
    return NET_CMD_DONE;
}

#define WRAP(fn)                                                  \
    static int fn##_w(struct net_cmd *c)                          \
    {                                                             \
        int rv = fn(c);                                           \
        return rv == NET_CMD_DONE ? NET_CMD_DONE : NET_CMD_ERROR; \
    }

WRAP(cmd_repl_set_reconfig)
WRAP(cmd_repl_set_step_down)
WRAP(cmd_repl_set_freeze)

const struct net_cmd_def net_cmds_repl[] = {
    {"replSetReconfig", cmd_repl_set_reconfig_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {"replSetStepDown", cmd_repl_set_step_down_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {"replSetFreeze", cmd_repl_set_freeze_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {"getDefaultRWConcern", net_cmd_get_default_rw_concern, NET_CMD_F_ADMIN_ONLY},
    {"setDefaultRWConcern", net_cmd_set_default_rw_concern,
     NET_CMD_F_ADMIN_ONLY | NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
