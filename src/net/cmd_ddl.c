/*
 * cmd_ddl.c: catalog commands: create, drop, dropDatabase, listCollections,
 * listDatabases, listIndexes, createIndexes and dropIndexes. The index
 * semantics (validation, builds, conflicts) live in txn/index.c; these
 * handlers parse, run them in a write and shape mongod's replies.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "net/cursor.h"
#include "net/net_int.h"
#include "net/txnctx.h"
#include "txn/txn.h"

#define NS_BUF 512

static int missing_field(struct cairn_error *err, const char *cmd, const char *field)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                             "BSON field '%s.%s' is missing but a required field", cmd, field);
}

static int not_implemented(struct net_cmd *c, const char *what)
{
    cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented, "%s are not supported yet",
                      what);
    return NET_CMD_ERROR;
}

/* True when `field` is present and truthy (bool/number non-zero, or any
 * other non-null value). */
static bool truthy(const bson_t *body, const char *field)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, body, field)) {
        return false;
    }
    switch (bson_iter_type(&it)) {
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
            return false;
        case BSON_TYPE_BOOL:
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
            return bson_iter_as_bool(&it);
        case BSON_TYPE_DOCUMENT: {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            return len > 5;
        }
        default:
            return true;
    }
}

/* Starts a local (or readConcern) read; sets the operation time. */
static int begin_read(struct net_cmd *c, struct txn_read **rd)
{
    int level = TXN_READ_LOCAL;
    if (net_parse_read_concern(c->body, &level, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_read_begin(c->deps->txn, level, rd, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    c->operation_time = txn_read_ts(*rd);
    return 0;
}

/* Reads cursor.batchSize (default 101). */
static int cursor_batch(struct net_cmd *c, const char *cmd, int64_t *batch)
{
    bson_t opts = BSON_INITIALIZER;
    *batch = NET_DEFAULT_BATCH;
    if (net_get_doc(c, "cursor", &opts) != 0) {
        return NET_CMD_ERROR;
    }
    char path[64];
    snprintf(path, sizeof path, "%s.cursor", cmd);
    if (net_dc_get_int64(&opts, path, "batchSize", batch, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (*batch < 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "BatchSize value must be non-negative, but received: %" PRId64, *batch);
        return NET_CMD_ERROR;
    }
    return 0;
}

/* A growable array of owned documents handed to a cursor. */
struct docs
{
    bson_t **v;
    size_t n;
    size_t cap;
};

static int docs_push(struct docs *d, bson_t *doc, struct cairn_error *err)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        bson_t **nv = realloc(d->v, cap * sizeof *nv);
        if (nv == NULL) {
            bson_destroy(doc);
            return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        }
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = doc;
    return 0;
}

static void docs_free(struct docs *d)
{
    for (size_t i = 0; i < d->n; i++) {
        bson_destroy(d->v[i]);
    }
    free(d->v);
    d->v = NULL;
    d->n = d->cap = 0;
}

/* Hands `d` to a new cursor on `ns` and replies with its first batch. */
static int reply_docs(struct net_cmd *c, const char *ns, struct docs *d, int64_t batch)
{
    struct net_cursor *cur = net_cursor_new(ns);
    if (cur == NULL) {
        docs_free(d);
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NET_CMD_ERROR;
    }
    net_cursor_set_docs(cur, d->v, d->n);
    d->v = NULL;
    d->n = d->cap = 0;
    return net_dc_reply_cursor(c, cur, batch, false);
}

/* ---- create / drop / dropDatabase -------------------------------------- */

static int cmd_create(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    struct repl_wc wc;
    if (net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    if (truthy(c->body, "capped")) {
        return not_implemented(c, "capped collections");
    }
    bson_iter_t it;
    if (bson_iter_init_find(&it, c->body, "viewOn") ||
        bson_iter_init_find(&it, c->body, "pipeline")) {
        return not_implemented(c, "views");
    }
    if (truthy(c->body, "validator")) {
        return not_implemented(c, "document validators");
    }
    /* Without a validator the defaults describe what Cairn does. */
    if (bson_iter_init_find(&it, c->body, "validationLevel") &&
        !(BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "strict") == 0)) {
        return not_implemented(c, "validation levels other than 'strict' (document validators)");
    }
    if (bson_iter_init_find(&it, c->body, "validationAction") &&
        !(BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "error") == 0)) {
        return not_implemented(c, "validation actions other than 'error' (document validators)");
    }
    if (bson_iter_init_find(&it, c->body, "encryptedFields")) {
        return not_implemented(c, "queryable encryption collections");
    }
    if (bson_iter_init_find(&it, c->body, "timeseries")) {
        return not_implemented(c, "time-series collections");
    }
    if (bson_iter_init_find(&it, c->body, "clusteredIndex")) {
        return not_implemented(c, "clustered collections");
    }
    if (bson_iter_init_find(&it, c->body, "expireAfterSeconds")) {
        return not_implemented(c, "TTL collections");
    }
    bson_t pp = BSON_INITIALIZER;
    if (net_get_doc(c, "changeStreamPreAndPostImages", &pp) != 0) {
        return NET_CMD_ERROR;
    }
    if (truthy(&pp, "enabled")) {
        return not_implemented(c, "change stream pre- and post-images");
    }
    bson_t collation = BSON_INITIALIZER;
    if (net_get_doc(c, "collation", &collation) != 0) {
        return NET_CMD_ERROR;
    }
    if (!net_dc_collation_is_simple(&collation)) {
        return not_implemented(c, "collations other than 'simple'");
    }
    /* Inside a transaction the collection is created by the transaction:
     * visible to it at once, to others when it commits. */
    struct txn_write *w = NULL;
    cairn_ts ts = 0;
    if (net_write_begin(c, &w) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_write_create(w, ns, &c->err) != 0) {
        net_write_end(c, w, false, &ts);
        return NET_CMD_ERROR;
    }
    if (net_write_end(c, w, true, &ts) != 0) {
        return NET_CMD_ERROR;
    }
    return net_dc_finish_write(c, ts, &wc);
}

static int cmd_drop(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    struct repl_wc wc;
    if (net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_write *w = NULL;
    if (txn_write_begin(c->deps->txn, NULL, &w, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_write_drop(w, ns, &c->err) != 0) {
        txn_write_abort(w);
        if (c->err.code == CAIRN_ENOTFOUND) {
            cairn_error_mongo(&c->err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found");
        }
        return NET_CMD_ERROR;
    }
    cairn_ts ts = 0;
    if (txn_write_commit(w, &ts, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    BSON_APPEND_INT32(&c->reply, "nIndexesWas", 1);
    BSON_APPEND_UTF8(&c->reply, "ns", ns);
    return net_dc_finish_write(c, ts, &wc);
}

static int cmd_drop_database(struct net_cmd *c)
{
    struct repl_wc wc;
    if (net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    if (strcmp(c->db, "local") == 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_IllegalOperation,
                          "Cannot drop 'local' database while replication is active");
        return NET_CMD_ERROR;
    }
    struct txn_write *w = NULL;
    if (txn_write_begin(c->deps->txn, NULL, &w, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_coll *colls = NULL;
    size_t n = 0;
    struct txn_read *rd;
    int rc = txn_write_reader(w, &rd, &c->err);
    if (rc == 0) {
        rc = txn_read_list(rd, c->db, &colls, &n);
    }
    if (rc != 0) {
        txn_write_abort(w);
        cairn_error_setf(&c->err, rc, "dropDatabase: cannot list collections");
        return NET_CMD_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        rc = txn_write_drop(w, colls[i].ns, &c->err);
        if (rc == CAIRN_ENOTFOUND) {
            /* Dropped by another client meanwhile: gone either way. */
            cairn_error_clear(&c->err);
            continue;
        }
        if (rc != 0) {
            free(colls);
            txn_write_abort(w);
            return NET_CMD_ERROR;
        }
    }
    free(colls);
    cairn_ts ts = 0;
    if (txn_write_commit(w, &ts, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (n > 0) {
        BSON_APPEND_UTF8(&c->reply, "dropped", c->db);
    }
    return net_dc_finish_write(c, ts, &wc);
}

/* ---- listCollections / listDatabases ----------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A stable version-4-shaped UUID derived from a collection id. */
static void coll_uuid(uint64_t id, uint8_t out[16])
{
    uint64_t hi = mix64(id ^ 0x636169726e636f6cull); /* "cairncol" */
    uint64_t lo = mix64(id + 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(hi >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);
    out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

static void append_id_index(bson_t *b, const char *key)
{
    bson_t idx;
    bson_t k;
    bson_append_document_begin(b, key, -1, &idx);
    BSON_APPEND_INT32(&idx, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &k);
    BSON_APPEND_INT32(&k, "_id", 1);
    bson_append_document_end(&idx, &k);
    BSON_APPEND_UTF8(&idx, "name", "_id_");
    bson_append_document_end(b, &idx);
}

static int cmd_list_collections(struct net_cmd *c)
{
    bson_t filter = BSON_INITIALIZER;
    bool name_only = false;
    bool ignored = false;
    int64_t batch = NET_DEFAULT_BATCH;
    if (net_get_doc(c, "filter", &filter) != 0 || net_get_bool(c, "nameOnly", &name_only) != 0 ||
        net_get_bool(c, "authorizedCollections", &ignored) != 0 ||
        cursor_batch(c, "listCollections", &batch) != 0) {
        return NET_CMD_ERROR;
    }
    struct qry_matcher *m = NULL;
    if (!bson_empty(&filter) && qry_matcher_compile(&filter, &m, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_read *rd = NULL;
    if (begin_read(c, &rd) != 0) {
        if (m != NULL) {
            qry_matcher_free(m);
        }
        return NET_CMD_ERROR;
    }
    struct txn_coll *colls = NULL;
    size_t n = 0;
    int rc = txn_read_list(rd, c->db, &colls, &n);
    txn_read_end(rd);
    if (rc != 0) {
        if (m != NULL) {
            qry_matcher_free(m);
        }
        cairn_error_setf(&c->err, rc, "listCollections: cannot list collections");
        return NET_CMD_ERROR;
    }
    struct docs d = {NULL, 0, 0};
    size_t dblen = strlen(c->db);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = colls[i].ns + dblen + 1;
        bson_t *doc = bson_new();
        BSON_APPEND_UTF8(doc, "name", name);
        BSON_APPEND_UTF8(doc, "type", "collection");
        if (!name_only) {
            bson_t opts;
            bson_t info;
            BSON_APPEND_DOCUMENT_BEGIN(doc, "options", &opts);
            bson_append_document_end(doc, &opts);
            BSON_APPEND_DOCUMENT_BEGIN(doc, "info", &info);
            BSON_APPEND_BOOL(&info, "readOnly", false);
            uint8_t uuid[16];
            coll_uuid(colls[i].id, uuid);
            BSON_APPEND_BINARY(&info, "uuid", BSON_SUBTYPE_UUID, uuid, sizeof uuid);
            bson_append_document_end(doc, &info);
            append_id_index(doc, "idIndex");
        }
        if (m != NULL && !qry_matcher_match(m, doc)) {
            bson_destroy(doc);
            continue;
        }
        rc = docs_push(&d, doc, &c->err);
    }
    free(colls);
    if (m != NULL) {
        qry_matcher_free(m);
    }
    if (rc != 0) {
        docs_free(&d);
        return NET_CMD_ERROR;
    }
    char ns[NS_BUF];
    snprintf(ns, sizeof ns, "%s.$cmd.listCollections", c->db);
    return reply_docs(c, ns, &d, batch);
}

/* The databases every replica-set member has, listed even while they hold
 * no collection (mongod keeps its own collections there). */
static const char *const system_dbs[] = {"admin", "config", "local"};

/* Appends one listDatabases entry when it passes the filter. */
static void db_entry(bson_t *arr,
                     uint32_t *k,
                     const struct qry_matcher *m,
                     bool name_only,
                     const char *db,
                     double size,
                     bool empty,
                     double *total)
{
    bson_t entry = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&entry, "name", db);
    if (!name_only) {
        BSON_APPEND_DOUBLE(&entry, "sizeOnDisk", size);
        BSON_APPEND_BOOL(&entry, "empty", empty);
    }
    if (m == NULL || qry_matcher_match(m, &entry)) {
        char buf[16];
        const char *key;
        bson_uint32_to_string((*k)++, &key, buf, sizeof buf);
        BSON_APPEND_DOCUMENT(arr, key, &entry);
        *total += size;
    }
    bson_destroy(&entry);
}

static int cmd_list_databases(struct net_cmd *c)
{
    bson_t filter = BSON_INITIALIZER;
    bool name_only = false;
    bool ignored = false;
    if (net_get_doc(c, "filter", &filter) != 0 || net_get_bool(c, "nameOnly", &name_only) != 0 ||
        net_get_bool(c, "authorizedDatabases", &ignored) != 0) {
        return NET_CMD_ERROR;
    }
    struct qry_matcher *m = NULL;
    if (!bson_empty(&filter) && qry_matcher_compile(&filter, &m, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_read *rd = NULL;
    if (begin_read(c, &rd) != 0) {
        if (m != NULL) {
            qry_matcher_free(m);
        }
        return NET_CMD_ERROR;
    }
    struct txn_coll *colls = NULL;
    size_t n = 0;
    int rc = txn_read_list(rd, NULL, &colls, &n);
    if (rc != 0) {
        txn_read_end(rd);
        if (m != NULL) {
            qry_matcher_free(m);
        }
        cairn_error_setf(&c->err, rc, "listDatabases: cannot list collections");
        return NET_CMD_ERROR;
    }
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(&c->reply, "databases", &arr);
    double total = 0;
    uint32_t k = 0;
    size_t i = 0;
    size_t sys = 0; /* next of system_dbs to list */
    const size_t n_sys = sizeof system_dbs / sizeof system_dbs[0];
    while ((i < n || sys < n_sys) && rc == 0) {
        char db[TXN_NS_MAX + 1] = "";
        if (i < n) {
            const char *dot = strchr(colls[i].ns, '.');
            size_t dblen = dot ? (size_t)(dot - colls[i].ns) : strlen(colls[i].ns);
            memcpy(db, colls[i].ns, dblen);
            db[dblen] = '\0';
        }
        /* The system databases, merged in name order, when no collection
         * lists them. */
        if (sys < n_sys && (i == n || strcmp(system_dbs[sys], db) <= 0)) {
            bool listed = i < n && strcmp(system_dbs[sys], db) == 0;
            if (!listed) {
                db_entry(&arr, &k, m, name_only, system_dbs[sys], 0, true, &total);
            }
            sys++;
            continue;
        }
        size_t dblen = strlen(db);
        double size = 0;
        size_t j = i;
        while (j < n && strncmp(colls[j].ns, db, dblen) == 0 && colls[j].ns[dblen] == '.') {
            if (!name_only) {
                uint64_t b = 0;
                rc = txn_read_coll_storage(rd, colls[j].ns, &b, &c->err);
                if (rc != 0) {
                    break;
                }
                size += (double)b;
            }
            j++;
        }
        if (j == i) {
            j = i + 1; /* malformed ns: skip it */
        }
        if (rc == 0) {
            db_entry(&arr, &k, m, name_only, db, size, false, &total);
        }
        i = j;
    }
    bson_append_array_end(&c->reply, &arr);
    txn_read_end(rd);
    free(colls);
    if (m != NULL) {
        qry_matcher_free(m);
    }
    if (rc != 0) {
        return NET_CMD_ERROR;
    }
    if (!name_only) {
        BSON_APPEND_DOUBLE(&c->reply, "totalSize", total);
        BSON_APPEND_INT64(&c->reply, "totalSizeMb", (int64_t)(total / (1024.0 * 1024.0)));
    }
    return NET_CMD_DONE;
}

/* ---- Indexes ------------------------------------------------------------ */

static int cmd_list_indexes(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    int64_t batch = NET_DEFAULT_BATCH;
    if (cursor_batch(c, "listIndexes", &batch) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_read *rd = NULL;
    if (begin_read(c, &rd) != 0) {
        return NET_CMD_ERROR;
    }
    bson_t **specs = NULL;
    size_t n = 0;
    int rc = txn_read_indexes(rd, ns, &specs, &n, &c->err);
    txn_read_end(rd);
    if (rc != 0) {
        return NET_CMD_ERROR;
    }
    struct docs d = {NULL, 0, 0};
    bson_t wrapper = BSON_INITIALIZER;
    append_id_index(&wrapper, "0");
    bson_iter_t it;
    bson_iter_init_find(&it, &wrapper, "0");
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t *doc = bson_new_from_data(data, len);
    bson_destroy(&wrapper);
    rc = doc != NULL ? docs_push(&d, doc, &c->err) : CAIRN_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            rc = docs_push(&d, specs[i], &c->err);
        } else {
            bson_destroy(specs[i]);
        }
    }
    free(specs);
    if (rc != 0) {
        docs_free(&d);
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NET_CMD_ERROR;
    }
    char cns[NS_BUF];
    const char *coll = ns + strlen(c->db) + 1;
    snprintf(cns, sizeof cns, "%s.$cmd.listIndexes.%s", c->db, coll);
    return reply_docs(c, cns, &d, batch);
}

/* True when the collection has no document in the view `rd`. */
static bool coll_is_empty(struct txn_read *rd, uint64_t cid)
{
    struct txn_scan *sc = NULL;
    struct cairn_error err;
    bson_t doc;
    bool empty = true;

    if (txn_scan_open(rd, cid, &sc, &err) == 0) {
        empty = txn_scan_next(sc, &doc) == 0;
        txn_scan_close(sc);
    }
    return empty;
}

/* Collects createIndexes.indexes into views; checks the element types. */
static int index_specs(struct net_cmd *c, const bson_t *arr, bson_t *views, size_t *n)
{
    bson_iter_t it;
    *n = 0;
    bson_iter_init(&it, arr);
    for (uint32_t i = 0; bson_iter_next(&it); i++) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field 'createIndexes.indexes.%" PRIu32
                                     "' is the wrong type '%s', expected type 'object'",
                                     i, qry_type_name(bson_iter_type(&it)));
        }
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        if (*n >= 64 || !bson_init_static(&views[*n], data, len)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_CannotCreateIndex,
                                     "too many or invalid index specifications");
        }
        (*n)++;
    }
    return 0;
}

static int cmd_create_indexes(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    struct repl_wc wc;
    if (net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "indexes")) {
        missing_field(&c->err, "createIndexes", "indexes");
        return NET_CMD_ERROR;
    }
    bson_t specs;
    if (net_get_array(c, "indexes", &specs) != 0) {
        return NET_CMD_ERROR;
    }
    if (bson_count_keys(&specs) == 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "Must specify at least one index to create");
        return NET_CMD_ERROR;
    }
    bson_t views[64];
    const bson_t *ptrs[64];
    size_t n_specs = 0;
    if (index_specs(c, &specs, views, &n_specs) != 0) {
        return NET_CMD_ERROR;
    }
    for (size_t i = 0; i < n_specs; i++) {
        ptrs[i] = &views[i];
    }
    struct txn_write *w = NULL;
    cairn_ts ts = 0;
    if (net_write_begin(c, &w) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_write_is_multi(w)) {
        uint64_t cid = 0;
        bool created = false;
        struct txn_read *view = NULL;
        if (txn_write_coll(w, ns, true, &cid, &created, &c->err) != 0) {
            net_write_end(c, w, false, &ts);
            return NET_CMD_ERROR;
        }
        if (!created && txn_write_reader(w, &view, &c->err) == 0 && !coll_is_empty(view, cid)) {
            /* mongod builds indexes inside a transaction only on new or
             * empty collections. */
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_OperationNotSupportedInTransaction,
                              "Cannot create new indexes on existing collection %s in a "
                              "multi-document transaction.",
                              ns);
            net_write_end(c, w, false, &ts);
            return NET_CMD_ERROR;
        }
    }
    struct txn_index_result res;
    if (txn_index_create(w, ns, ptrs, n_specs, &res, &c->err) != 0) {
        net_write_end(c, w, false, &ts);
        return NET_CMD_ERROR;
    }
    if (net_write_end(c, w, true, &ts) != 0) {
        return NET_CMD_ERROR;
    }
    BSON_APPEND_INT32(&c->reply, "numIndexesBefore", res.n_before);
    BSON_APPEND_INT32(&c->reply, "numIndexesAfter", res.n_after);
    if (res.all_existed && !res.created_collection) {
        BSON_APPEND_UTF8(&c->reply, "note", "all indexes already exist");
    } else {
        BSON_APPEND_BOOL(&c->reply, "createdCollectionAutomatically", res.created_collection);
    }
    return net_dc_finish_write(c, ts, &wc);
}

static int cmd_drop_indexes(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    struct repl_wc wc;
    if (net_rwc_write_concern(c, &wc) != 0) {
        return NET_CMD_ERROR;
    }
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "index")) {
        missing_field(&c->err, "dropIndexes", "index");
        return NET_CMD_ERROR;
    }
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t ai;
        bson_iter_recurse(&it, &ai);
        while (bson_iter_next(&ai)) {
            if (!BSON_ITER_HOLDS_UTF8(&ai) || strcmp(bson_iter_utf8(&ai, NULL), "*") == 0) {
                cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                  "dropIndexes: an array of index names must hold names other "
                                  "than '*'");
                return NET_CMD_ERROR;
            }
        }
    } else if (!BSON_ITER_HOLDS_UTF8(&it) && !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                          "BSON field 'dropIndexes.index' is the wrong type '%s', expected "
                          "types '[string, object, array]'",
                          qry_type_name(bson_iter_type(&it)));
        return NET_CMD_ERROR;
    }
    bson_value_t target;
    bson_value_copy(bson_iter_value(&it), &target);
    struct txn_write *w = NULL;
    cairn_ts ts = 0;
    int n_was = 0;
    if (net_write_begin(c, &w) != 0) {
        bson_value_destroy(&target);
        return NET_CMD_ERROR;
    }
    int rc = txn_index_drop(w, ns, &target, &n_was, &c->err);
    bson_value_destroy(&target);
    if (net_write_end(c, w, rc == 0, &ts) != 0 || rc != 0) {
        return NET_CMD_ERROR;
    }
    BSON_APPEND_INT32(&c->reply, "nIndexesWas", n_was);
    return net_dc_finish_write(c, ts, &wc);
}

static int cmd_validate(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_read *rd = NULL;
    if (begin_read(c, &rd) != 0) {
        return NET_CMD_ERROR;
    }
    int rc = txn_index_validate(rd, ns, &c->reply, &c->err);
    txn_read_end(rd);
    return rc == 0 ? NET_CMD_DONE : NET_CMD_ERROR;
}

const struct net_cmd_def net_cmds_ddl[] = {
    {"validate", cmd_validate, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {"create", cmd_create, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"drop", cmd_drop, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"dropDatabase", cmd_drop_database, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"listCollections", cmd_list_collections, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {"listDatabases", cmd_list_databases,
     NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG | NET_CMD_F_ADMIN_ONLY},
    {"listIndexes", cmd_list_indexes, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {"createIndexes", cmd_create_indexes, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"dropIndexes", cmd_drop_indexes, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"deleteIndexes", cmd_drop_indexes, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
