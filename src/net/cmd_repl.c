/*
 * cmd_repl.c: the replica-set commands that change leadership
 * (net_cmds_repl): replSetStepDown and replSetFreeze, with mongod's
 * arguments, defaults and errors. The work is repl's (repl_step_down,
 * repl_freeze); these handlers parse and answer.
 */
#include <stdio.h>

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

WRAP(cmd_repl_set_step_down)
WRAP(cmd_repl_set_freeze)

const struct net_cmd_def net_cmds_repl[] = {
    {"replSetStepDown", cmd_repl_set_step_down_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {"replSetFreeze", cmd_repl_set_freeze_w, NET_CMD_F_ADMIN_ONLY | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
