/*
 * cmd_coll.c: commands that change an existing collection: renameCollection
 * (txn/rename.c does the work) and collMod (index options, txn/index.c).
 * These handlers parse mongod's command shapes, run one statement write
 * and wait for the write concern.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "net/cursor.h"
#include "net/net_int.h"
#include "txn/txn.h"

/* Reads string field `field` holding a full namespace "<db>.<coll>". */
static int get_ns(struct net_cmd *c, const char *field, const char *what, const char **out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, field)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                                 "BSON field 'renameCollection.%s' is missing but a required "
                                 "field",
                                 field);
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field 'renameCollection.%s' is the wrong type '%s', "
                                 "expected type 'string'",
                                 field, qry_type_name(bson_iter_type(&it)));
    }
    const char *ns = bson_iter_utf8(&it, NULL);
    const char *dot = strchr(ns, '.');
    if (dot == NULL || dot == ns || dot[1] == '\0' || strlen(ns) > TXN_NS_MAX) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid %s namespace: %s", what, ns);
    }
    *out = ns;
    return 0;
}

static int cmd_rename_collection(struct net_cmd *c)
{
    const char *from = NULL;
    const char *to = NULL;
    bool drop_target = false;
    struct repl_wc wc;

    if (get_ns(c, "renameCollection", "source", &from) != 0 ||
        get_ns(c, "to", "target", &to) != 0 || net_get_bool(c, "dropTarget", &drop_target) != 0 ||
        net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_write *w = NULL;
    if (txn_write_begin(c->deps->txn, NULL, &w, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_rename_collection(w, from, to, drop_target, &c->err) != 0) {
        txn_write_abort(w);
        return NET_CMD_ERROR;
    }
    cairn_ts ts = 0;
    if (txn_write_commit(w, &ts, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    return net_dc_finish_write(c, ts, &wc);
}

const struct net_cmd_def net_cmds_coll[] = {
    {"renameCollection", cmd_rename_collection,
     NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG | NET_CMD_F_ADMIN_ONLY},
    {NULL, NULL, 0},
};
