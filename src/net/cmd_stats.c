/*
 * cmd_stats.c: dbStats and collStats, shaped as mongod 7.0 answers them.
 * Counts and data sizes are exact for the read's snapshot (the sum of the
 * visible documents' BSON sizes); storage and index sizes are RocksDB's
 * estimates of the key spaces (txn_read_coll_stats), scaled by `scale`.
 * Also fsync, which flushes the engine so those estimates see new data.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "txn/txn.h"

#define NS_BUF 512

/* Reads `scale` (a positive number, default 1). */
static int get_scale(struct net_cmd *c, int64_t *scale)
{
    bson_iter_t it;
    *scale = 1;
    if (!bson_iter_init_find(&it, c->body, "scale")) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_NUMBER(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field 'scale' is the wrong type '%s', expected types "
                                 "'[long, int, decimal, double]'",
                                 qry_type_name(bson_iter_type(&it)));
    }
    *scale = bson_iter_as_int64(&it);
    if (*scale < 1) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue, "scale has to be >= 1");
    }
    return 0;
}

static int begin_read(struct net_cmd *c, struct txn_read **rd)
{
    int level = TXN_READ_LOCAL;
    if (net_parse_read_concern(c->body, &level, &c->err) != 0 ||
        txn_read_begin(c->deps->txn, level, rd, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    c->operation_time = txn_read_ts(*rd);
    return 0;
}

static int64_t ix_total(const struct txn_coll_stats *st)
{
    int64_t t = 0;
    for (size_t i = 0; i < st->n_ix; i++) {
        t += (int64_t)st->ix[i].bytes;
    }
    return t;
}

int net_coll_stats_append(const struct txn_coll_stats *st,
                          const char *ns,
                          int64_t scale,
                          bson_t *out)
{
    bson_t sizes;
    bson_t details;
    bson_t builds;
    int64_t ixs = ix_total(st);

    BSON_APPEND_UTF8(out, "ns", ns);
    BSON_APPEND_INT64(out, "size", st->size / scale);
    BSON_APPEND_INT64(out, "count", st->count);
    if (st->count > 0) {
        BSON_APPEND_INT64(out, "avgObjSize", st->size / st->count);
    }
    BSON_APPEND_INT64(out, "numOrphanDocs", 0);
    BSON_APPEND_INT64(out, "storageSize", (int64_t)st->storage / scale);
    BSON_APPEND_INT64(out, "freeStorageSize", 0);
    BSON_APPEND_BOOL(out, "capped", false);
    /* The _id index is the documents' own key space (they are stored by
     * _id), so its size is part of storageSize and reads 0 here. */
    BSON_APPEND_INT32(out, "nindexes", st->exists ? (int32_t)st->n_ix + 1 : 0);
    BSON_APPEND_DOCUMENT_BEGIN(out, "indexDetails", &details);
    bson_append_document_end(out, &details);
    BSON_APPEND_ARRAY_BEGIN(out, "indexBuilds", &builds);
    bson_append_array_end(out, &builds);
    BSON_APPEND_INT64(out, "totalIndexSize", ixs / scale);
    BSON_APPEND_INT64(out, "totalSize", ((int64_t)st->storage + ixs) / scale);
    BSON_APPEND_DOCUMENT_BEGIN(out, "indexSizes", &sizes);
    if (st->exists) {
        BSON_APPEND_INT64(&sizes, "_id_", 0);
    }
    for (size_t i = 0; i < st->n_ix; i++) {
        BSON_APPEND_INT64(&sizes, st->ix[i].name, (int64_t)st->ix[i].bytes / scale);
    }
    bson_append_document_end(out, &sizes);
    BSON_APPEND_INT64(out, "scaleFactor", scale);
    return 0;
}

static int cmd_coll_stats(struct net_cmd *c)
{
    char ns[NS_BUF];
    int64_t scale;
    struct txn_read *rd = NULL;
    struct txn_coll_stats st;

    if (net_cmd_namespace(c, ns, sizeof ns) != 0 || get_scale(c, &scale) != 0 ||
        begin_read(c, &rd) != 0) {
        return NET_CMD_ERROR;
    }
    int rc = txn_read_coll_stats(rd, ns, &st, &c->err);
    txn_read_end(rd);
    if (rc != 0) {
        return NET_CMD_ERROR;
    }
    net_coll_stats_append(&st, ns, scale, &c->reply);
    txn_coll_stats_free(&st);
    return NET_CMD_DONE;
}

static int cmd_db_stats(struct net_cmd *c)
{
    int64_t scale;
    struct txn_read *rd = NULL;
    struct txn_coll *colls = NULL;
    size_t n = 0;
    int64_t objects = 0, data = 0, storage = 0, indexes = 0, index_size = 0;

    if (get_scale(c, &scale) != 0 || begin_read(c, &rd) != 0) {
        return NET_CMD_ERROR;
    }
    int rc = txn_read_list(rd, c->db, &colls, &n);
    if (rc != 0) {
        txn_read_end(rd);
        cairn_error_setf(&c->err, rc, "dbStats: cannot list collections");
        return NET_CMD_ERROR;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct txn_coll_stats st;
        rc = txn_read_coll_stats(rd, colls[i].ns, &st, &c->err);
        if (rc != 0) {
            break;
        }
        objects += st.count;
        data += st.size;
        storage += (int64_t)st.storage;
        indexes += st.exists ? (int64_t)st.n_ix + 1 : 0;
        index_size += ix_total(&st);
        txn_coll_stats_free(&st);
    }
    txn_read_end(rd);
    free(colls);
    if (rc != 0) {
        return NET_CMD_ERROR;
    }
    BSON_APPEND_UTF8(&c->reply, "db", c->db);
    BSON_APPEND_INT64(&c->reply, "collections", (int64_t)n);
    BSON_APPEND_INT64(&c->reply, "views", 0);
    BSON_APPEND_INT64(&c->reply, "objects", objects);
    BSON_APPEND_DOUBLE(&c->reply, "avgObjSize", objects > 0 ? (double)data / (double)objects : 0);
    BSON_APPEND_DOUBLE(&c->reply, "dataSize", (double)data / (double)scale);
    BSON_APPEND_DOUBLE(&c->reply, "storageSize", (double)storage / (double)scale);
    BSON_APPEND_INT64(&c->reply, "indexes", indexes);
    BSON_APPEND_DOUBLE(&c->reply, "indexSize", (double)index_size / (double)scale);
    BSON_APPEND_DOUBLE(&c->reply, "totalSize", (double)(storage + index_size) / (double)scale);
    BSON_APPEND_INT64(&c->reply, "scaleFactor", scale);
    return NET_CMD_DONE;
}

/* fsync: flushes the engine's memtables to files (mongod flushes its
 * storage to disk); the locking form is not supported. */
static int cmd_fsync(struct net_cmd *c)
{
    bool lock = false;
    if (net_get_bool(c, "lock", &lock) != 0) {
        return NET_CMD_ERROR;
    }
    if (lock) {
        cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                          "fsync with lock: true is not supported yet");
        return NET_CMD_ERROR;
    }
    if (txn_flush(c->deps->txn, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    BSON_APPEND_INT32(&c->reply, "numFiles", 1);
    return NET_CMD_DONE;
}

const struct net_cmd_def net_cmds_stats[] = {
    {"fsync", cmd_fsync, NET_CMD_F_ADMIN_ONLY},
    {"collStats", cmd_coll_stats, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {"dbStats", cmd_db_stats, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
