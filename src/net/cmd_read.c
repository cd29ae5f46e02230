/*
 * cmd_read.c: the read commands find, getMore, killCursors, count, distinct
 * and aggregate. Reads run on a txn_read at the requested read concern;
 * unsorted finds stream through a cursor that keeps the read and scan open
 * across getMore calls, sorted finds and aggregates materialise their
 * results into the cursor (charged to the server-wide query memory budget)
 * unless a sort spilled to disk, whose runs the cursor then merges.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "net/cursor.h"
#include "net/explain_int.h"
#include "net/net_int.h"
#include "net/txnctx.h"
#include "query/valueset.h"
#include "txn/txn.h"

#define NS_BUF 512

/* Distinct results must fit in one document. */
#define DISTINCT_MAX_BYTES (16u * 1024u * 1024u)

static int missing_field(struct cairn_error *err, const char *cmd, const char *field)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                             "BSON field '%s.%s' is missing but a required field", cmd, field);
}

static void append_count(bson_t *b, const char *key, int64_t n)
{
    if (n <= INT32_MAX) {
        bson_append_int32(b, key, -1, (int32_t)n);
    } else {
        bson_append_int64(b, key, -1, n);
    }
}

/* Starts the read of a command: its transaction's view, or one honouring
 * its readConcern (see net_read_begin); sets the operation time. */
static int begin_read(struct net_cmd *c, struct txn_read **rd)
{
    return net_read_begin(c, rd);
}

/* Replies with an empty, closed cursor. */
static int reply_empty_cursor(struct net_cmd *c, const char *ns)
{
    struct net_cursor *cur = net_cursor_new(ns);
    if (cur == NULL) {
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NET_CMD_ERROR;
    }
    cur->exhausted = true;
    return net_dc_reply_cursor(c, cur, 0, true);
}

/* ---- Matching sources --------------------------------------------------- */

/* Collected documents (owned copies). */
struct doc_vec
{
    bson_t **docs;
    size_t n;
    size_t cap;
    size_t bytes;
    int64_t max_docs; /* stop after this many; -1 = unlimited */
    int64_t skip;     /* documents to drop first */
};

static void doc_vec_free(struct doc_vec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->docs[i] != NULL) {
            bson_destroy(v->docs[i]);
        }
    }
    free(v->docs);
    v->docs = NULL;
    v->n = v->cap = 0;
}

static int collect(void *arg, const bson_t *doc, struct cairn_error *err)
{
    struct doc_vec *v = arg;
    if (v->skip > 0) {
        v->skip--;
        return 0;
    }
    if (v->max_docs >= 0 && (int64_t)v->n >= v->max_docs) {
        return 1;
    }
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        bson_t **d = realloc(v->docs, cap * sizeof *d);
        if (d == NULL) {
            cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            return -1;
        }
        v->docs = d;
        v->cap = cap;
    }
    v->docs[v->n] = bson_copy(doc);
    if (v->docs[v->n] == NULL) {
        cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
        return -1;
    }
    v->n++;
    v->bytes += doc->len;
    return 0;
}

static int sort_collect(void *arg, const bson_t *doc, struct cairn_error *err)
{
    return qry_sortbuf_add(arg, doc, err) != 0 ? -1 : 0;
}

/* ---- find --------------------------------------------------------------- */

/* A sort spec that is exactly {$natural: 1 or -1}: our natural order is _id
 * order, so it is rewritten to {_id: dir} in *out (caller destroys it). */
static bool natural_sort(const bson_t *spec, bson_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, spec) || !bson_iter_next(&it) ||
        strcmp(bson_iter_key(&it), "$natural") != 0 || !BSON_ITER_HOLDS_NUMBER(&it)) {
        return false;
    }
    double d = bson_iter_as_double(&it);
    if ((d != 1.0 && d != -1.0) || bson_iter_next(&it)) {
        return false;
    }
    bson_init(out);
    BSON_APPEND_INT32(out, "_id", d > 0 ? 1 : -1);
    return true;
}

/* find options that change results and that we do not implement (index
 * bounds and index keys, record ids): refused rather than ignored. */
static int refuse_find_options(struct net_cmd *c)
{
    static const char *const opts[] = {"min", "max", "returnKey", "showRecordId"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, c->body, opts[i])) {
            continue;
        }
        bool set = bson_iter_as_bool(&it);
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) { /* an empty min/max means none */
            uint32_t len = 0;
            const uint8_t *data = NULL;
            bson_iter_document(&it, &len, &data);
            set = len > 5;
        }
        if (set) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_NotImplemented,
                              "the find option '%s' is not supported", opts[i]);
            return -1;
        }
    }
    return 0;
}

static void free_query(struct qry_matcher *m, struct qry_projection *p, struct qry_sort *s)
{
    if (m != NULL) {
        qry_matcher_free(m);
    }
    if (p != NULL) {
        qry_projection_free(p);
    }
    if (s != NULL) {
        qry_sort_free(s);
    }
}

static int cmd_find(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    bson_t filter = BSON_INITIALIZER;
    bson_t projection = BSON_INITIALIZER;
    bson_t sort_spec = BSON_INITIALIZER;
    bson_t collation = BSON_INITIALIZER;
    int64_t skip = 0;
    int64_t limit = 0;
    int64_t batch = NET_DEFAULT_BATCH;
    bool single_batch = false;
    bool tailable = false;
    bool await_data = false;
    bool allow_disk_use = false;
    bool no_timeout = false;
    if (net_get_doc(c, "filter", &filter) != 0 || net_get_doc(c, "projection", &projection) != 0 ||
        net_get_doc(c, "sort", &sort_spec) != 0 || net_get_doc(c, "collation", &collation) != 0 ||
        net_get_int64(c, "skip", &skip) != 0 || net_get_int64(c, "limit", &limit) != 0 ||
        net_get_int64(c, "batchSize", &batch) != 0 ||
        net_get_bool(c, "singleBatch", &single_batch) != 0 ||
        net_get_bool(c, "tailable", &tailable) != 0 ||
        net_get_bool(c, "awaitData", &await_data) != 0 ||
        net_get_bool(c, "allowDiskUse", &allow_disk_use) != 0 ||
        net_get_bool(c, "noCursorTimeout", &no_timeout) != 0) {
        return NET_CMD_ERROR;
    }
    bson_value_t hint;
    if (refuse_find_options(c) != 0 || net_get_hint(c->body, &hint, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (tailable || await_data) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "error processing query: %s tailable cursor requested on non capped "
                          "collection",
                          ns);
        return NET_CMD_ERROR;
    }
    if (!net_dc_collation_is_simple(&collation)) {
        net_dc_collation_unsupported(&c->err);
        return NET_CMD_ERROR;
    }
    /* As find_command.idl ({gte: 0} validators): drivers send a negative
     * limit as a positive one with singleBatch, mongod refuses it raw. */
    const char *neg_name = skip < 0 ? "skip" : (limit < 0 ? "limit" : "batchSize");
    int64_t neg_val = skip < 0 ? skip : (limit < 0 ? limit : batch);
    if (neg_val < 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlValueBelowMinimum,
                          "BSON field '%s' value must be >= 0, actual value '%" PRId64 "'",
                          neg_name, neg_val);
        return NET_CMD_ERROR;
    }
    if (limit > 0 && limit < batch) {
        batch = limit;
    }

    struct qry_matcher *m = NULL;
    struct qry_projection *proj = NULL;
    struct qry_sort *sort = NULL;
    struct txn_read *rd = NULL;
    struct net_cursor *cur = NULL;
    struct doc_vec v = {NULL, 0, 0, 0, -1, 0};
    struct qry_sortbuf *sb = NULL;
    int rc = qry_matcher_compile(&filter, &m, &c->err);
    if (rc == 0 && !bson_empty(&projection)) {
        rc = qry_projection_compile(&projection, &proj, &c->err);
    }
    if (rc == 0 && !bson_empty(&sort_spec)) {
        bson_t natural;
        if (natural_sort(&sort_spec, &natural)) {
            rc = qry_sort_compile(&natural, &sort, &c->err);
            bson_destroy(&natural);
        } else {
            rc = qry_sort_compile(&sort_spec, &sort, &c->err);
        }
    }
    if (rc != 0 || begin_read(c, &rd) != 0) {
        goto fail;
    }
    uint64_t cid = 0;
    if (txn_read_coll(rd, ns, &cid) != 0) {
        txn_read_end(rd);
        free_query(m, proj, sort);
        return reply_empty_cursor(c, ns);
    }
    cur = net_cursor_new(ns);
    if (cur == NULL) {
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        goto fail;
    }
    cur->coll_id = cid;
    cur->installs = repl_checkpoint_installs(c->deps->repl);
    bson_value_t id;
    struct txn_scan *sorted = NULL;
    bson_t natural_spec;
    /* A hint other than the _id index goes through its index scan. */
    bool id_point =
        (!qry_hint_given(&hint) || qry_hint_is_id(&hint)) && qry_matcher_id_equality(m, &id);
    bool natural = sort != NULL && natural_sort(&sort_spec, &natural_spec);
    if (natural) {
        bson_destroy(&natural_spec);
    }
    struct txn_scan_req req = {.ns = ns,
                               .filter = bson_empty(&filter) ? NULL : &filter,
                               .sort = &sort_spec,
                               .hint = &hint,
                               .projection = proj != NULL ? &projection : NULL,
                               .need_sort_order = true};
    if (sort != NULL && !id_point && !natural &&
        txn_scan_open_query(rd, cid, &req, &sorted, &c->err) != 0) {
        goto fail;
    }
    if (sorted != NULL) {
        /* An index gives the sort's order: stream, as without a sort. */
        qry_sort_free(sort);
        sort = NULL;
    }
    if (sorted == NULL && (sort != NULL || id_point)) {
        /* Materialise: the point lookup, or the matches to sort. A sort
         * with a limit keeps only the skip + limit first (a top-k heap);
         * past the cap, with allowDiskUse, it spills to disk (§35). */
        size_t first = 0;
        req.need_sort_order = false;
        if (sort == NULL) {
            v.skip = skip;
            v.max_docs = limit > 0 ? limit : -1;
            if (net_dc_visit_scan(rd, cid, &req, m, collect, &v, &c->err) != 0) {
                goto fail;
            }
        } else {
            uint64_t keep = 0;
            if (limit > 0) {
                keep = (uint64_t)skip > UINT64_MAX - (uint64_t)limit
                           ? 0
                           : (uint64_t)skip + (uint64_t)limit;
            }
            if (qry_sortbuf_new(sort, keep, qry_sort_mem_limit(),
                                "Executor error during find command :: caused by :: ", &sb,
                                &c->err) != 0) {
                goto fail;
            }
            qry_sortbuf_set_disk_use(sb, allow_disk_use);
            if (net_dc_visit_scan(rd, cid, &req, m, sort_collect, sb, &c->err) != 0) {
                goto fail;
            }
            if (qry_sortbuf_spilled(sb)) {
                /* Spilled (allowDiskUse): the cursor merges the runs from
                 * disk batch by batch instead of holding the result. */
                if (qry_sortbuf_done(sb, &c->err) != 0) {
                    goto fail;
                }
                txn_read_end(rd);
                rd = NULL;
                cur->spilled = sb;
                cur->spilled_sort = sort;
                cur->proj = proj;
                cur->skip = skip;
                cur->limit_left = limit > 0 ? limit : -1;
                sb = NULL;
                sort = NULL;
                proj = NULL;
                free_query(m, proj, sort);
                cur->no_timeout = no_timeout;
                return net_dc_reply_cursor(c, cur, batch, single_batch);
            }
            if (qry_sortbuf_finish(sb, &v.docs, &v.n, &c->err) != 0) {
                goto fail;
            }
            v.cap = v.n;
        }
        txn_read_end(rd);
        rd = NULL;
        size_t end = v.n;
        if (sort != NULL) {
            first = (size_t)skip < v.n ? (size_t)skip : v.n;
            if (limit > 0 && (uint64_t)limit < end - first) {
                end = first + (size_t)limit;
            }
        }
        size_t out_n = 0;
        for (size_t i = 0; i < v.n; i++) {
            bson_t *d = v.docs[i];
            v.docs[i] = NULL;
            if (i < first || i >= end) {
                bson_destroy(d);
                continue;
            }
            if (proj != NULL) {
                bson_t p;
                int prc = qry_projection_apply(proj, d, &p, &c->err);
                bson_destroy(d);
                if (prc != 0) {
                    goto fail;
                }
                d = bson_copy(&p);
                bson_destroy(&p);
                if (d == NULL) {
                    cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
                    goto fail;
                }
            }
            v.docs[out_n++] = d;
        }
        net_cursor_set_docs(cur, v.docs, out_n);
        v.docs = NULL;
        v.n = 0;
        if (net_cursor_charge_docs(cur, &c->err) != 0) {
            goto fail;
        }
    } else {
        /* Stream: the cursor owns the read, scan, matcher and projection. */
        req.sort = NULL;
        req.need_sort_order = false;
        if (sorted != NULL) {
            cur->sc = sorted;
        } else if (txn_scan_open_query(rd, cid, &req, &cur->sc, &c->err) != 0) {
            goto fail;
        }
        cur->rd = rd;
        rd = NULL;
        cur->matcher = m;
        cur->proj = proj;
        m = NULL;
        proj = NULL;
        cur->skip = skip;
        cur->limit_left = limit > 0 ? limit : -1;
    }
    qry_sortbuf_free(sb);
    free_query(m, proj, sort);
    cur->no_timeout = no_timeout; /* never reaped for idleness */
    return net_dc_reply_cursor(c, cur, batch, single_batch);

fail:
    qry_sortbuf_free(sb);
    doc_vec_free(&v);
    net_cursor_free(cur);
    if (rd != NULL) {
        txn_read_end(rd);
    }
    free_query(m, proj, sort);
    return NET_CMD_ERROR;
}

/* ---- getMore / killCursors ---------------------------------------------- */

/* A cursor over a collection that has since been dropped (or dropped and
 * created again) is killed: mongod answers the next getMore with
 * QueryPlanKilled rather than documents of a collection that is gone. */
static int check_cursor_collection(struct net_cmd *c, const struct net_cursor *cur)
{
    if (cur->rd != NULL && cur->installs != repl_checkpoint_installs(c->deps->repl)) {
        return cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_QueryPlanKilled,
                                 "Executor error during getMore :: caused by :: this member "
                                 "installed a checkpoint: the data the cursor read was replaced");
    }
    if (cur->coll_id == 0) {
        return 0;
    }
    /* A streaming cursor asks its own read, which in a transaction also
     * knows the collections the transaction created. */
    struct txn_read *rd = cur->rd;
    if (rd == NULL && txn_read_begin(c->deps->txn, TXN_READ_LOCAL, &rd, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    uint64_t cid = 0;
    /* The newest catalog, not the cursor's snapshot: a collection
     * renamed since (or dropped) kills the cursor, as mongod. */
    bool same = txn_read_coll_now(rd, cur->ns, &cid) == 0 && cid == cur->coll_id;
    if (rd != cur->rd) {
        txn_read_end(rd);
    }
    if (!same) {
        return cairn_error_mongo(&c->err, CAIRN_ENOTFOUND, MONGO_QueryPlanKilled,
                                 "Executor error during getMore :: caused by :: collection "
                                 "dropped. UUID changed or collection '%s' no longer exists",
                                 cur->ns);
    }
    return 0;
}

static int cmd_get_more(struct net_cmd *c)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "getMore") || !BSON_ITER_HOLDS_INT64(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                          "BSON field 'getMore.getMore' is the wrong type '%s', expected type "
                          "'long'",
                          qry_type_name(bson_iter_type(&it)));
        return NET_CMD_ERROR;
    }
    int64_t id = bson_iter_int64(&it);
    if (!bson_iter_init_find(&it, c->body, "collection")) {
        missing_field(&c->err, "getMore", "collection");
        return NET_CMD_ERROR;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                          "BSON field 'getMore.collection' is the wrong type '%s', expected type "
                          "'string'",
                          qry_type_name(bson_iter_type(&it)));
        return NET_CMD_ERROR;
    }
    char ns[NS_BUF];
    int len = snprintf(ns, sizeof ns, "%s.%s", c->db, bson_iter_utf8(&it, NULL));
    if (len < 0 || (size_t)len >= sizeof ns) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                          "Invalid namespace specified '%s.%s'", c->db, bson_iter_utf8(&it, NULL));
        return NET_CMD_ERROR;
    }
    int64_t batch = -1;
    if (net_get_int64(c, "batchSize", &batch) != 0) {
        return NET_CMD_ERROR;
    }
    if (bson_iter_init_find(&it, c->body, "batchSize") && batch < 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "Batch size for getMore must be non-negative, but received: %" PRId64,
                          batch);
        return NET_CMD_ERROR;
    }
    if (batch == 0) {
        batch = -1;
    }
    struct net_cursor *cur = NULL;
    if (net_cursor_acquire(id, &cur, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    /* Checked first, as mongod does: a cursor of a transaction is read
     * only by a statement of that transaction, which has its session
     * checked out (its write set is not touched concurrently). */
    if (net_cursor_check_session(cur, id, c) != 0) {
        net_cursor_release(cur);
        return NET_CMD_ERROR;
    }
    if (strcmp(cur->ns, ns) != 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_Unauthorized,
                          "Requested getMore on namespace '%s', but cursor belongs to a different "
                          "namespace %s",
                          ns, cur->ns);
        net_cursor_release(cur);
        return NET_CMD_ERROR;
    }
    if (txn_overlay_token_lost(c->deps->txn, cur->ovl_token)) {
        cairn_error_mongo(&c->err, CAIRN_ENOTLEADER, MONGO_InterruptedDueToReplStateChange,
                          "cursor %" PRId64
                          " killed: it read writes of this member as primary "
                          "that were discarded when it stepped down (they may roll back)",
                          id);
        cur->exhausted = true;
        net_cursor_release(cur);
        return NET_CMD_ERROR;
    }
    if (check_cursor_collection(c, cur) != 0) {
        cur->exhausted = true; /* a killed cursor is gone, as in mongod */
        net_cursor_release(cur);
        return NET_CMD_ERROR;
    }
    if (cur->rd != NULL) {
        c->operation_time = txn_read_ts(cur->rd);
    }
    bson_t cd;
    bson_t arr;
    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "cursor", &cd);
    BSON_APPEND_ARRAY_BEGIN(&cd, "nextBatch", &arr);
    int rc = net_cursor_fill(cur, batch, &arr, &c->err);
    bson_append_array_end(&cd, &arr);
    if (rc != 0) {
        bson_append_document_end(&c->reply, &cd);
        cur->exhausted = true; /* a failed cursor is dead, as in mongod */
        net_cursor_release(cur);
        return NET_CMD_ERROR;
    }
    BSON_APPEND_INT64(&cd, "id", cur->exhausted ? 0 : id);
    BSON_APPEND_UTF8(&cd, "ns", ns);
    bson_append_document_end(&c->reply, &cd);
    if (cur->linearizable) {
        /* Confirmed after the batch (dispatch) by this member's current
         * leadership; getMore has no maxTimeMS here, so a fixed bound. */
        c->linearizable = true;
        c->linearizable_epoch = repl_write_epoch(c->deps->repl);
        c->linearizable_until_ns =
            cairn_mono_ns() + (uint64_t)NET_LINEARIZABLE_GETMORE_MS * 1000000ull;
    }
    net_cursor_release(cur);
    return NET_CMD_DONE;
}

static void append_id_array(bson_t *reply, const char *key, const int64_t *ids, size_t n)
{
    bson_t arr;
    bson_append_array_begin(reply, key, -1, &arr);
    for (size_t i = 0; i < n; i++) {
        char buf[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
        bson_append_int64(&arr, k, -1, ids[i]);
    }
    bson_append_array_end(reply, &arr);
}

static int cmd_kill_cursors(struct net_cmd *c)
{
    /* Not net_cmd_namespace: cursors of list commands live on
     * "$cmd.listCollections"-style namespaces. */
    char ns[NS_BUF];
    bson_iter_t it;
    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_UTF8(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                          "collection name has invalid type %s",
                          qry_type_name(bson_iter_type(&it)));
        return NET_CMD_ERROR;
    }
    int len = snprintf(ns, sizeof ns, "%s.%s", c->db, bson_iter_utf8(&it, NULL));
    if (len < 0 || (size_t)len >= sizeof ns) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                          "Invalid namespace specified");
        return NET_CMD_ERROR;
    }
    if (!bson_iter_init_find(&it, c->body, "cursors")) {
        missing_field(&c->err, "killCursors", "cursors");
        return NET_CMD_ERROR;
    }
    bson_t arr;
    if (net_get_array(c, "cursors", &arr) != 0) {
        return NET_CMD_ERROR;
    }
    uint32_t n = bson_count_keys(&arr);
    int64_t *killed = calloc(n ? n : 1, sizeof *killed);
    int64_t *not_found = calloc(n ? n : 1, sizeof *not_found);
    if (killed == NULL || not_found == NULL) {
        free(killed);
        free(not_found);
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NET_CMD_ERROR;
    }
    size_t nk = 0;
    size_t nn = 0;
    bson_iter_init(&it, &arr);
    for (uint32_t i = 0; bson_iter_next(&it); i++) {
        if (!BSON_ITER_HOLDS_INT64(&it)) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                              "BSON field 'killCursors.cursors.%" PRIu32
                              "' is the wrong type '%s', expected type 'long'",
                              i, qry_type_name(bson_iter_type(&it)));
            free(killed);
            free(not_found);
            return NET_CMD_ERROR;
        }
        int64_t id = bson_iter_int64(&it);
        if (net_cursor_kill(id, ns)) {
            killed[nk++] = id;
        } else {
            not_found[nn++] = id;
        }
    }
    append_id_array(&c->reply, "cursorsKilled", killed, nk);
    append_id_array(&c->reply, "cursorsNotFound", not_found, nn);
    append_id_array(&c->reply, "cursorsAlive", NULL, 0);
    append_id_array(&c->reply, "cursorsUnknown", NULL, 0);
    free(killed);
    free(not_found);
    return NET_CMD_DONE;
}

/* ---- count -------------------------------------------------------------- */

struct count_ctx
{
    int64_t skip;
    int64_t limit;
    int64_t n;
};

static int count_one(void *arg, const bson_t *doc, struct cairn_error *err)
{
    struct count_ctx *x = arg;
    if (x->skip > 0) {
        x->skip--;
        return 0;
    }
    x->n++;
    return (x->limit > 0 && x->n >= x->limit) ? 1 : 0;
}

/* For count and distinct: refuses a non-simple collation, compiles `query`
 * and calls fn for each matching document of `ns` in a fresh read (a
 * missing collection has none), through the command's `hint` if any. fn
 * needs the fields of `needs` (an inclusion projection), or (NULL) none
 * beyond the filter's: an index holding them serves a covered scan. Returns 0, or NET_CMD_ERROR
 * with c->err. */
static int visit_query(struct net_cmd *c,
                       const char *ns,
                       const bson_t *query,
                       const bson_t *collation,
                       const bson_t *needs,
                       net_dc_visit_fn fn,
                       void *arg)
{
    bson_value_t hint;
    if (net_get_hint(c->body, &hint, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (!net_dc_collation_is_simple(collation)) {
        net_dc_collation_unsupported(&c->err);
        return NET_CMD_ERROR;
    }
    struct qry_matcher *m = NULL;
    if (qry_matcher_compile(query, &m, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    struct txn_read *rd = NULL;
    if (begin_read(c, &rd) != 0) {
        qry_matcher_free(m);
        return NET_CMD_ERROR;
    }
    uint64_t cid = 0;
    int rc = 0;
    if (txn_read_coll(rd, ns, &cid) == 0) {
        struct txn_scan_req req = {.ns = ns,
                                   .filter = bson_empty(query) ? NULL : query,
                                   .hint = &hint,
                                   .projection = needs,
                                   .filter_only = needs == NULL};
        rc = net_dc_visit_scan(rd, cid, &req, bson_empty(query) ? NULL : m, fn, arg, &c->err);
    }
    txn_read_end(rd);
    qry_matcher_free(m);
    return rc == 0 ? 0 : NET_CMD_ERROR;
}

static int cmd_count(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    bson_t query = BSON_INITIALIZER;
    bson_t collation = BSON_INITIALIZER;
    int64_t skip = 0;
    int64_t limit = 0;
    if (net_get_doc(c, "query", &query) != 0 || net_get_doc(c, "collation", &collation) != 0 ||
        net_get_int64(c, "skip", &skip) != 0 || net_get_int64(c, "limit", &limit) != 0) {
        return NET_CMD_ERROR;
    }
    if (skip < 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "skip value is negative in count query");
        return NET_CMD_ERROR;
    }
    if (limit < 0) {
        limit = limit == INT64_MIN ? INT64_MAX : -limit;
    }
    struct count_ctx x = {skip, limit, 0};
    if (visit_query(c, ns, &query, &collation, NULL, count_one, &x) != 0) {
        return NET_CMD_ERROR;
    }
    append_count(&c->reply, "n", x.n);
    return NET_CMD_DONE;
}

/* ---- distinct ----------------------------------------------------------- */

struct distinct_ctx
{
    const char *key;
    struct qry_valueset vals; /* owned copies, deduplicated by hashing */
    size_t bytes;
    int rc;
};

static int distinct_add(struct distinct_ctx *x, const bson_value_t *v, struct cairn_error *err)
{
    bool added = false;
    if (v->value_type == BSON_TYPE_UNDEFINED) {
        return 0;
    }
    if (qry_valueset_add(&x->vals, v, &added) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    if (!added) {
        return 0;
    }
    /* A rough size: type + key + the value's bytes. */
    size_t sz = 16;
    if (v->value_type == BSON_TYPE_UTF8) {
        sz += v->value.v_utf8.len;
    } else if (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) {
        sz += v->value.v_doc.data_len;
    } else if (v->value_type == BSON_TYPE_BINARY) {
        sz += v->value.v_binary.data_len;
    }
    x->bytes += sz;
    if (x->bytes > DISTINCT_MAX_BYTES) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_LOC_DistinctTooBig,
                                 "distinct too big, 16mb cap");
    }
    return 0;
}

/* Adds the values at dotted `path` below `doc`, traversing arrays along the
 * path and unwrapping a trailing array one level, as mongod's distinct. */
static int distinct_extract(struct distinct_ctx *x,
                            const bson_t *doc,
                            const char *path,
                            struct cairn_error *err)
{
    const char *dot = strchr(path, '.');
    size_t flen = dot ? (size_t)(dot - path) : strlen(path);
    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) {
        return 0;
    }
    bool found = false;
    while (bson_iter_next(&it)) {
        if (bson_iter_key_len(&it) == flen && memcmp(bson_iter_key(&it), path, flen) == 0) {
            found = true;
            break;
        }
    }
    if (!found) {
        return 0;
    }
    if (dot == NULL) {
        if (BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t ai;
            if (bson_iter_recurse(&it, &ai)) {
                while (bson_iter_next(&ai)) {
                    int rc = distinct_add(x, bson_iter_value(&ai), err);
                    if (rc != 0) {
                        return rc;
                    }
                }
            }
            return 0;
        }
        return distinct_add(x, bson_iter_value(&it), err);
    }
    const char *rest = dot + 1;
    uint32_t len;
    const uint8_t *data;
    bson_t sub;
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&sub, data, len)) {
            return 0;
        }
        return distinct_extract(x, &sub, rest, err);
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return 0;
    }
    bson_iter_array(&it, &len, &data);
    if (!bson_init_static(&sub, data, len)) {
        return 0;
    }
    /* A numeric next component indexes the array. */
    const char *rdot = strchr(rest, '.');
    size_t rlen = rdot ? (size_t)(rdot - rest) : strlen(rest);
    bool numeric = rlen > 0;
    for (size_t i = 0; i < rlen; i++) {
        if (rest[i] < '0' || rest[i] > '9') {
            numeric = false;
        }
    }
    if (numeric) {
        return distinct_extract(x, &sub, rest, err);
    }
    bson_iter_t ai;
    bson_iter_init(&ai, &sub);
    while (bson_iter_next(&ai)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&ai)) {
            continue;
        }
        bson_t el;
        bson_iter_document(&ai, &len, &data);
        if (!bson_init_static(&el, data, len)) {
            continue;
        }
        int rc = distinct_extract(x, &el, rest, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int distinct_one(void *arg, const bson_t *doc, struct cairn_error *err)
{
    struct distinct_ctx *x = arg;
    return distinct_extract(x, doc, x->key, err) != 0 ? -1 : 0;
}

static int cmd_distinct(struct net_cmd *c)
{
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "key")) {
        missing_field(&c->err, "distinct", "key");
        return NET_CMD_ERROR;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                          "BSON field 'distinct.key' is the wrong type '%s', expected type "
                          "'string'",
                          qry_type_name(bson_iter_type(&it)));
        return NET_CMD_ERROR;
    }
    const char *key = bson_iter_utf8(&it, NULL);
    if (key[0] == '\0') {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_FieldPathEmpty,
                          "FieldPath cannot be constructed with empty string");
        return NET_CMD_ERROR;
    }
    bson_t query = BSON_INITIALIZER;
    bson_t collation = BSON_INITIALIZER;
    if (net_get_doc(c, "query", &query) != 0 || net_get_doc(c, "collation", &collation) != 0) {
        return NET_CMD_ERROR;
    }
    struct distinct_ctx x = {.key = key};
    qry_valueset_init(&x.vals, true);
    bson_t needs = BSON_INITIALIZER;
    BSON_APPEND_INT32(&needs, key, 1);
    int rc = visit_query(c, ns, &query, &collation, &needs, distinct_one, &x);
    bson_destroy(&needs);
    if (rc == 0) {
        qry_valueset_sort(&x.vals);
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(&c->reply, "values", &arr);
        for (size_t i = 0; i < x.vals.n; i++) {
            char buf[16];
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
            bson_append_value(&arr, k, -1, &x.vals.v[i]);
        }
        bson_append_array_end(&c->reply, &arr);
        if (c->at_cluster_time != 0) {
            BSON_APPEND_TIMESTAMP(&c->reply, "atClusterTime", CAIRN_TS_SECS(c->at_cluster_time),
                                  CAIRN_TS_INC(c->at_cluster_time));
        }
    }
    qry_valueset_fini(&x.vals);
    return rc == 0 ? NET_CMD_DONE : NET_CMD_ERROR;
}

/* ---- aggregate ---------------------------------------------------------- */

struct agg_src
{
    struct txn_read *rd;
    uint64_t cid;
    bool have_coll;
    bool point;      /* point lookup by _id */
    bson_value_t id; /* view into the leading-match matcher */
    bool point_done;
    bson_t point_doc;
    bool have_point_doc;
    struct txn_scan *sc;
    bool started;
    const bson_t *single; /* $collStats: the one document, instead of the collection */
    bool single_done;
};

/* Opens the scan of the aggregation's collection through the planner,
 * which serves the leading $match `filter` and $sort (the pipeline still
 * applies both; when an index gives the sort's order the $sort stage
 * passes documents through), through the index `hint` names if any.
 * NET_CMD_ERROR with c->err on failure (2 BadValue for an unknown hint). */
static int agg_open_scan(struct net_cmd *c,
                         struct agg_src *s,
                         const char *ns,
                         const bson_t *filter,
                         const bson_value_t *hint,
                         struct qry_pipeline *p)
{
    struct txn_scan_req req = {.ns = ns,
                               .filter = filter != NULL && !bson_empty(filter) ? filter : NULL,
                               .sort = qry_pipeline_leading_sort(p),
                               .hint = hint,
                               .need_sort_order = true};

    s->started = true;
    if (req.sort != NULL && txn_scan_open_query(s->rd, s->cid, &req, &s->sc, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (s->sc != NULL) {
        qry_pipeline_set_sorted_input(p);
        return 0;
    }
    req.sort = NULL;
    req.need_sort_order = false;
    if (txn_scan_open_query(s->rd, s->cid, &req, &s->sc, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    return 0;
}

/* A leading {$collStats: {storageStats?: {scale?}, count?: {}}}: *found set,
 * *opts its options and *rest the other stages (as an array). */
static int split_coll_stats(struct net_cmd *c,
                            const bson_t *pipeline,
                            bool *found,
                            bson_t *opts,
                            bson_t *rest)
{
    bson_iter_t it;
    bson_iter_t st;
    uint32_t k = 0;

    *found = false;
    if (!bson_iter_init(&it, pipeline) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &st) || !bson_iter_next(&st) ||
        strcmp(bson_iter_key(&st), "$collStats") != 0) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&st)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "$collStats must take a nested object but found: %s",
                                 qry_type_name(bson_iter_type(&st)));
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&st, &len, &data);
    if (!bson_init_static(opts, data, len)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue, "bad $collStats");
    }
    bson_iter_t o;
    bson_iter_init(&o, opts);
    while (bson_iter_next(&o)) {
        const char *key = bson_iter_key(&o);
        if (strcmp(key, "latencyStats") == 0 || strcmp(key, "queryExecStats") == 0) {
            return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "$collStats %s is not supported yet (storageStats and count "
                                     "are)",
                                     key);
        }
        if (strcmp(key, "storageStats") != 0 && strcmp(key, "count") != 0) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                                     "BSON field '$collStats.%s' is an unknown field.", key);
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&o)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field '$collStats.%s' is the wrong type '%s', "
                                     "expected type 'object'",
                                     key, qry_type_name(bson_iter_type(&o)));
        }
    }
    *found = true;
    while (bson_iter_next(&it)) {
        char buf[16];
        const char *key;
        bson_uint32_to_string(k++, &key, buf, sizeof buf);
        bson_append_iter(rest, key, -1, &it);
    }
    return 0;
}

/* The document $collStats outputs for `ns` with options `opts`. */
static int coll_stats_doc(struct net_cmd *c,
                          struct txn_read *rd,
                          const char *ns,
                          const bson_t *opts,
                          bson_t *out)
{
    struct txn_coll_stats st;
    bson_iter_t it;
    int64_t scale = 1;

    if (txn_read_coll_stats(rd, ns, &st, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (!st.exists) {
        txn_coll_stats_free(&st);
        return cairn_error_mongo(&c->err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound,
                                 "Unable to retrieve storageStats in $collStats stage :: caused "
                                 "by :: Collection [%s] not found.",
                                 ns);
    }
    BSON_APPEND_UTF8(out, "ns", ns);
    BSON_APPEND_DATE_TIME(out, "localTime", cairn_wall_ms());
    if (bson_iter_init_find(&it, opts, "storageStats")) {
        bson_iter_t sc;
        bson_t sub;
        if (bson_iter_recurse(&it, &sc) && bson_iter_find(&sc, "scale")) {
            scale = BSON_ITER_HOLDS_NUMBER(&sc) ? bson_iter_as_int64(&sc) : 0;
            if (scale < 1) {
                txn_coll_stats_free(&st);
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                         "scale has to be >= 1");
            }
        }
        BSON_APPEND_DOCUMENT_BEGIN(out, "storageStats", &sub);
        net_coll_stats_append(&st, ns, scale, &sub);
        bson_append_document_end(out, &sub);
    }
    if (bson_iter_init_find(&it, opts, "count")) {
        BSON_APPEND_INT64(out, "count", st.count);
    }
    txn_coll_stats_free(&st);
    return 0;
}

static int agg_next(void *arg, bson_t *doc, struct cairn_error *err)
{
    struct agg_src *s = arg;
    if (s->single != NULL) {
        if (s->single_done) {
            return 0;
        }
        s->single_done = true;
        return bson_init_static(doc, bson_get_data(s->single), s->single->len) ? 1 : 0;
    }
    if (!s->have_coll) {
        return 0;
    }
    if (s->point) {
        if (s->point_done) {
            return 0;
        }
        s->point_done = true;
        int rc = txn_read_get(s->rd, s->cid, &s->id, &s->point_doc, err);
        if (rc == CAIRN_ENOTFOUND) {
            cairn_error_clear(err);
            return 0;
        }
        if (rc != 0) {
            return -1;
        }
        s->have_point_doc = true;
        if (!bson_init_static(doc, bson_get_data(&s->point_doc), s->point_doc.len)) {
            return 0;
        }
        return 1;
    }
    if (!s->started) {
        s->started = true;
        if (txn_scan_open(s->rd, s->cid, &s->sc, err) != 0) {
            return -1;
        }
    }
    return net_dc_scan_next(s->sc, doc, err);
}

static int cmd_aggregate(struct net_cmd *c)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, c->body, "aggregate") && !BSON_ITER_HOLDS_UTF8(&it) &&
        (BSON_ITER_HOLDS_NUMBER(&it))) {
        cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                          "database-level aggregation ({aggregate: 1}) is not supported yet");
        return NET_CMD_ERROR;
    }
    char ns[NS_BUF];
    if (net_cmd_namespace(c, ns, sizeof ns) != 0) {
        return NET_CMD_ERROR;
    }
    if (net_find_pipeline(c, c->body, &it) != 0) {
        return NET_CMD_ERROR;
    }
    bson_t pipeline_arr;
    if (net_get_array(c, "pipeline", &pipeline_arr) != 0) {
        return NET_CMD_ERROR;
    }
    bool explain = false;
    bool ignored = false;
    bool disk_use = false;
    bson_value_t hint;
    if (net_get_bool(c, "explain", &explain) != 0 ||
        net_get_bool(c, "allowDiskUse", &disk_use) != 0 ||
        net_get_bool(c, "bypassDocumentValidation", &ignored) != 0 ||
        net_get_hint(c->body, &hint, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (explain) {
        /* mongod answers the queryPlanner verbosity (cmd_explain_write.c). */
        return net_explain_aggregate(c, ns, c->body, &pipeline_arr, false);
    }
    if (!bson_iter_init_find(&it, c->body, "cursor")) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_FailedToParse,
                          "The 'cursor' option is required, except for aggregate with the explain "
                          "argument");
        return NET_CMD_ERROR;
    }
    bson_t cursor_opts = BSON_INITIALIZER;
    bson_t collation = BSON_INITIALIZER;
    if (net_get_doc(c, "cursor", &cursor_opts) != 0 ||
        net_get_doc(c, "collation", &collation) != 0) {
        return NET_CMD_ERROR;
    }
    int64_t batch = NET_DEFAULT_BATCH;
    if (net_dc_get_int64(&cursor_opts, "aggregate.cursor", "batchSize", &batch, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (batch < 0) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "BatchSize value must be non-negative, but received: %" PRId64, batch);
        return NET_CMD_ERROR;
    }
    if (!net_dc_collation_is_simple(&collation)) {
        net_dc_collation_unsupported(&c->err);
        return NET_CMD_ERROR;
    }
    bool coll_stats = false;
    bson_t cs_opts;
    bson_t rest = BSON_INITIALIZER;
    if (split_coll_stats(c, &pipeline_arr, &coll_stats, &cs_opts, &rest) != 0) {
        bson_destroy(&rest);
        return NET_CMD_ERROR;
    }
    struct qry_pipeline *p = NULL;
    if (qry_pipeline_compile(coll_stats ? &rest : &pipeline_arr, &p, &c->err) != 0) {
        bson_destroy(&rest);
        return NET_CMD_ERROR;
    }
    bson_destroy(&rest);
    qry_pipeline_set_disk_use(p, disk_use);
    struct qry_matcher *lead = NULL;
    const bson_t *lead_filter = qry_pipeline_leading_match(p);
    struct agg_src src;
    memset(&src, 0, sizeof src);
    if (lead_filter != NULL && qry_matcher_compile(lead_filter, &lead, &c->err) != 0) {
        qry_pipeline_free(p);
        return NET_CMD_ERROR;
    }
    /* A hint other than the _id index goes through its index scan. */
    if ((!qry_hint_given(&hint) || qry_hint_is_id(&hint)) && lead != NULL &&
        qry_matcher_id_equality(lead, &src.id)) {
        src.point = true;
    }
    if (begin_read(c, &src.rd) != 0) {
        free_query(lead, NULL, NULL);
        qry_pipeline_free(p);
        return NET_CMD_ERROR;
    }
    src.have_coll = txn_read_coll(src.rd, ns, &src.cid) == 0;
    bson_t **out = NULL;
    size_t n_out = 0;
    bson_t stats = BSON_INITIALIZER;
    int rc = 0;
    if (coll_stats) {
        rc = coll_stats_doc(c, src.rd, ns, &cs_opts, &stats);
        src.single = &stats;
    } else if (src.have_coll && !src.point) {
        rc = agg_open_scan(c, &src, ns, lead_filter, &hint, p);
    }
    if (rc == 0) {
        rc = qry_pipeline_run(p, agg_next, &src, &out, &n_out, &c->err);
    }
    bson_destroy(&stats);
    if (src.sc != NULL) {
        txn_scan_close(src.sc);
    }
    if (src.have_point_doc) {
        bson_destroy(&src.point_doc);
    }
    txn_read_end(src.rd);
    free_query(lead, NULL, NULL);
    qry_pipeline_free(p);
    if (rc != 0) {
        for (size_t i = 0; i < n_out; i++) {
            bson_destroy(out[i]);
        }
        free(out);
        return NET_CMD_ERROR;
    }
    struct net_cursor *cur = net_cursor_new(ns);
    if (cur == NULL) {
        for (size_t i = 0; i < n_out; i++) {
            bson_destroy(out[i]);
        }
        free(out);
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NET_CMD_ERROR;
    }
    net_cursor_set_docs(cur, out, n_out);
    cur->coll_id = src.have_coll ? src.cid : 0;
    if (net_cursor_charge_docs(cur, &c->err) != 0) {
        net_cursor_free(cur);
        return NET_CMD_ERROR;
    }
    return net_dc_reply_cursor(c, cur, batch, false);
}

const struct net_cmd_def net_cmds_read[] = {
    {"find", cmd_find, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    /* No secondaryOk check, as mongod (AllowedOnSecondary::kAlways): the
     * cursor was opened on this member, and drivers send no read
     * preference with getMore. */
    {"getMore", cmd_get_more, NET_CMD_F_NEEDS_CONFIG},
    {"killCursors", cmd_kill_cursors, NET_CMD_F_NEEDS_CONFIG},
    {"count", cmd_count, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {"distinct", cmd_distinct, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {"aggregate", cmd_aggregate, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
