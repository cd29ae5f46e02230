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

/* collMod options mongod knows and Cairn does not do yet. */
static const char *const coll_mod_unsupported[] = {
    "validator",
    "validationLevel",
    "validationAction",
    "viewOn",
    "pipeline",
    "expireAfterSeconds",
    "changeStreamPreAndPostImages",
    "recordPreImages",
    "timeseries",
    "cappedSize",
    "cappedMax",
    "dryRun",
    "collation",
    NULL,
};

/* Generic command arguments collMod accepts beside its own. */
static const char *const generic_args[] = {
    "writeConcern",
    "comment",
    "lsid",
    "txnNumber",
    "maxTimeMS",
    "$clusterTime",
    "$db",
    "$readPreference",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    NULL,
};

static bool in_list(const char *const *list, const char *k)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], k) == 0) {
            return true;
        }
    }
    return false;
}

/* Parses collMod.index into `target` (a view of the name or key pattern)
 * and `mod`. */
static int parse_index_mod(struct net_cmd *c,
                           const bson_t *ix,
                           bson_value_t *target,
                           struct txn_index_mod *mod)
{
    bson_iter_t it;
    bool has_name = false, has_key = false;

    bson_iter_init(&it, ix);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            has_name = true;
            *target = *bson_iter_value(&it);
        } else if (strcmp(k, "keyPattern") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            has_key = true;
            *target = *bson_iter_value(&it);
        } else if (strcmp(k, "hidden") == 0 && BSON_ITER_HOLDS_BOOL(&it)) {
            mod->has_hidden = true;
            mod->hidden = bson_iter_bool(&it);
        } else if (strcmp(k, "expireAfterSeconds") == 0 && BSON_ITER_HOLDS_NUMBER(&it)) {
            mod->has_ttl = true;
            mod->ttl = bson_iter_as_int64(&it);
        } else if (strcmp(k, "prepareUnique") == 0 || strcmp(k, "unique") == 0) {
            return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "collMod index option '%s' is not supported yet", k);
        } else if (strcmp(k, "name") == 0 || strcmp(k, "keyPattern") == 0 ||
                   strcmp(k, "hidden") == 0 || strcmp(k, "expireAfterSeconds") == 0) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field 'collMod.index.%s' is the wrong type '%s'", k,
                                     qry_type_name(bson_iter_type(&it)));
        } else {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                                     "BSON field 'collMod.index.%s' is an unknown field.", k);
        }
    }
    if (has_name && has_key) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "Cannot specify both key pattern and name.");
    }
    if (!has_name && !has_key) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "Must specify either index name or key pattern.");
    }
    if (!mod->has_hidden && !mod->has_ttl) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "no expireAfterSeconds or hidden field");
    }
    return 0;
}

static int cmd_coll_mod(struct net_cmd *c)
{
    char ns[TXN_NS_MAX + 2];
    struct repl_wc wc;
    bson_t ix;
    bool has_index = false;
    bson_value_t target = {0};
    struct txn_index_mod mod = {0};
    struct txn_index_mod_result res;
    bson_iter_t it;

    if (net_cmd_namespace(c, ns, sizeof ns) != 0 || net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    bson_iter_init(&it, c->body);
    bson_iter_next(&it); /* the command name */
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "index") == 0) {
            has_index = true;
        } else if (in_list(coll_mod_unsupported, k)) {
            cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                              "collMod option '%s' is not supported yet (only index hidden and "
                              "expireAfterSeconds changes are)",
                              k);
            return NET_CMD_ERROR;
        } else if (!in_list(generic_args, k)) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                              "BSON field 'collMod.%s' is an unknown field.", k);
            return NET_CMD_ERROR;
        }
    }
    if (has_index &&
        (net_get_doc(c, "index", &ix) != 0 || parse_index_mod(c, &ix, &target, &mod) != 0)) {
        return NET_CMD_ERROR;
    }
    struct txn_write *w = NULL;
    if (txn_write_begin(c->deps->txn, NULL, &w, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    int rc;
    if (has_index) {
        rc = txn_index_modify(w, ns, &target, &mod, &res, &c->err);
    } else {
        struct txn_read *rd = NULL;
        uint64_t id;
        rc = txn_write_reader(w, &rd, &c->err);
        if (rc == 0 && txn_read_coll(rd, ns, &id) != 0) {
            rc = cairn_error_mongo(&c->err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound,
                                   "ns does not exist: %s", ns);
        }
    }
    if (rc != 0) {
        txn_write_abort(w);
        return NET_CMD_ERROR;
    }
    cairn_ts ts = 0;
    if (txn_write_commit(w, &ts, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (has_index && res.hidden_changed) {
        BSON_APPEND_BOOL(&c->reply, "hidden_old", res.hidden_old);
        BSON_APPEND_BOOL(&c->reply, "hidden_new", res.hidden_new);
    }
    if (has_index && res.ttl_changed) {
        BSON_APPEND_INT32(&c->reply, "expireAfterSeconds_old", res.ttl_old);
        BSON_APPEND_INT32(&c->reply, "expireAfterSeconds_new", res.ttl_new);
    }
    return ts != 0 ? net_dc_finish_write(c, ts, &wc) : NET_CMD_DONE;
}

const struct net_cmd_def net_cmds_coll[] = {
    {"collMod", cmd_coll_mod, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"renameCollection", cmd_rename_collection,
     NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG | NET_CMD_F_ADMIN_ONLY},
    {NULL, NULL, 0},
};
