/*
 * cmd_explain.c: the explain command for find and count: the plan the
 * server would run (queryPlanner.winningPlan: IDHACK, FETCH over IXSCAN,
 * PROJECTION_COVERED over IXSCAN (direction forward or backward, the
 * index hinted or chosen), or COLLSCAN, under SORT / COUNT / LIMIT / SKIP
 * as the command asks) and,
 * for the executionStats and allPlansExecution verbosities, the counters of
 * running it (nReturned, totalKeysExamined, totalDocsExamined). There is
 * one candidate plan, so rejectedPlans is always empty. A sort an index's
 * order gives has no SORT stage (the IXSCAN streams in that order). The other
 * explained commands are cmd_explain_write.c's, which builds on the plan
 * runner and stage builders here (explain_int.h).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "net/cursor.h"
#include "net/explain_int.h"
#include "net/net_int.h"
#include "net/txnctx.h"
#include "txn/txn.h"

static int get_doc_field(const bson_t *cmd, const char *name, bson_t *out, struct cairn_error *err)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;

    bson_init(out);
    if (!bson_iter_init_find(&it, cmd, name)) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field '%s' is the wrong type '%s', expected type 'object'",
                                 name, qry_type_name(bson_iter_type(&it)));
    }
    bson_iter_document(&it, &len, &data);
    bson_destroy(out);
    if (!bson_init_static(out, data, len)) {
        bson_init(out);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "invalid %s document", name);
    }
    return 0;
}

int net_explain_get_doc(const bson_t *cmd, const char *name, bson_t *out, struct cairn_error *err)
{
    return get_doc_field(cmd, name, out, err);
}

static int64_t get_int(const bson_t *cmd, const char *name)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, cmd, name) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

int net_explain_run(struct net_cmd *c, struct explain_req *req, struct explain_run *out)
{
    struct qry_matcher *m = NULL;
    struct txn_read *rd = NULL;
    struct txn_scan *sc = NULL;
    uint64_t cid = 0;
    uint64_t start = cairn_mono_ns();
    bson_value_t id;
    int rc;

    memset(out, 0, sizeof *out);
    bson_init(&out->key_pattern);
    rc = qry_matcher_compile(&req->filter, &m, &c->err);
    if (rc == 0) {
        rc = net_read_begin(c, &rd);
        rc = rc != 0 ? NET_CMD_ERROR : 0;
    }
    if (rc != 0 || txn_read_coll(rd, req->ns, &cid) != 0) {
        goto done; /* a missing collection: an empty COLLSCAN, as mongod's EOF */
    }
    if ((!qry_hint_given(&req->hint) || qry_hint_is_id(&req->hint)) &&
        qry_matcher_id_equality(m, &id)) {
        bson_t doc;
        out->idhack = true;
        if (!req->exec) {
            goto done;
        }
        out->keys = 1;
        if (txn_read_get(rd, cid, &id, &doc, &c->err) == 0) {
            out->docs = 1;
            out->returned = qry_matcher_match(m, &doc) ? 1 : 0;
            if (out->returned && req->on_match != NULL &&
                req->on_match(req->arg, &doc, &c->err) != 0) {
                rc = c->err.code ? c->err.code : CAIRN_EIO;
            }
            bson_destroy(&doc);
        }
        if (rc == 0) {
            cairn_error_clear(&c->err);
        }
        goto done;
    }
    struct txn_scan_req sreq = {.ns = req->ns,
                                .filter = &req->filter,
                                .sort = &req->sort,
                                .hint = &req->hint,
                                .projection = &req->projection,
                                .filter_only = strcmp(req->cmd, "count") == 0,
                                .need_sort_order = true};
    if (!bson_empty(&req->sort)) {
        rc = txn_scan_open_query(rd, cid, &sreq, &sc, &c->err);
        out->sorted_by_index = rc == 0 && sc != NULL;
    }
    if (rc == 0 && sc == NULL) {
        sreq.sort = NULL;
        sreq.need_sort_order = false;
        rc = txn_scan_open_query(rd, cid, &sreq, &sc, &c->err);
    }
    if (rc != 0) {
        goto done;
    }
    const struct txn_plan_info *pi = txn_scan_plan(sc);
    if (pi != NULL) {
        out->have_plan = true;
        snprintf(out->index_name, sizeof out->index_name, "%s", pi->index_name);
        bson_destroy(&out->key_pattern);
        bson_copy_to(&pi->key_pattern, &out->key_pattern);
        out->n_intervals = pi->n_intervals;
        out->backward = pi->backward;
        out->covered = pi->covered;
    }
    uint64_t skipped = 0;
    while (req->exec) {
        bson_t doc;
        int r = net_dc_scan_next(sc, &doc, &c->err);
        if (r < 0) {
            rc = c->err.code;
            break;
        }
        if (r == 0) {
            break;
        }
        if (!qry_matcher_match(m, &doc)) {
            continue;
        }
        if (req->on_match != NULL && req->on_match(req->arg, &doc, &c->err) != 0) {
            rc = c->err.code ? c->err.code : CAIRN_EIO;
            break;
        }
        bool streamed = bson_empty(&req->sort) || out->sorted_by_index;
        if (req->skip > 0 && skipped < (uint64_t)req->skip && streamed) {
            skipped++;
            continue;
        }
        out->returned++;
        if (req->limit > 0 && out->returned >= (uint64_t)req->limit && streamed) {
            break;
        }
    }
    if (pi != NULL) {
        out->keys = pi->keys_examined;
    }
    out->docs = txn_scan_docs_examined(sc);
done:
    out->millis = (int64_t)((cairn_mono_ns() - start) / 1000000u);
    txn_scan_close(sc);
    if (rd != NULL) {
        txn_read_end(rd);
    }
    qry_matcher_free(m);
    return rc;
}

void net_explain_append_access(bson_t *parent,
                               const char *key,
                               const struct explain_req *req,
                               const struct explain_run *r,
                               bool stats)
{
    bson_t st, in;
    bson_append_document_begin(parent, key, -1, &st);
    if (r->idhack) {
        BSON_APPEND_UTF8(&st, "stage", "IDHACK");
        if (stats) {
            BSON_APPEND_INT64(&st, "nReturned", (int64_t)r->returned);
            BSON_APPEND_INT64(&st, "keysExamined", (int64_t)r->keys);
            BSON_APPEND_INT64(&st, "docsExamined", (int64_t)r->docs);
        }
    } else if (r->have_plan && r->covered && strcmp(req->cmd, "count") == 0) {
        /* COUNT reads the index alone: no FETCH (mongod: COUNT_SCAN). */
        BSON_APPEND_UTF8(&st, "stage", "IXSCAN");
        BSON_APPEND_DOCUMENT(&st, "keyPattern", &r->key_pattern);
        BSON_APPEND_UTF8(&st, "indexName", r->index_name);
        BSON_APPEND_UTF8(&st, "direction", r->backward ? "backward" : "forward");
        BSON_APPEND_INT64(&st, "keyIntervals", (int64_t)r->n_intervals);
        if (stats) {
            BSON_APPEND_INT64(&st, "keysExamined", (int64_t)r->keys);
            BSON_APPEND_INT64(&st, "docsExamined", (int64_t)r->docs);
        }
    } else if (r->have_plan) {
        BSON_APPEND_UTF8(&st, "stage", r->covered ? "PROJECTION_COVERED" : "FETCH");
        if (r->covered) {
            BSON_APPEND_DOCUMENT(&st, "transformBy", &req->projection);
        } else if (!bson_empty(&req->filter)) {
            BSON_APPEND_DOCUMENT(&st, "filter", &req->filter);
        }
        if (stats) {
            BSON_APPEND_INT64(&st, "nReturned", (int64_t)r->returned);
            BSON_APPEND_INT64(&st, "docsExamined", (int64_t)r->docs);
        }
        BSON_APPEND_DOCUMENT_BEGIN(&st, "inputStage", &in);
        BSON_APPEND_UTF8(&in, "stage", "IXSCAN");
        BSON_APPEND_DOCUMENT(&in, "keyPattern", &r->key_pattern);
        BSON_APPEND_UTF8(&in, "indexName", r->index_name);
        BSON_APPEND_UTF8(&in, "direction", r->backward ? "backward" : "forward");
        BSON_APPEND_INT64(&in, "keyIntervals", (int64_t)r->n_intervals);
        if (stats) {
            BSON_APPEND_INT64(&in, "keysExamined", (int64_t)r->keys);
        }
        bson_append_document_end(&st, &in);
    } else {
        BSON_APPEND_UTF8(&st, "stage", "COLLSCAN");
        if (!bson_empty(&req->filter)) {
            BSON_APPEND_DOCUMENT(&st, "filter", &req->filter);
        }
        BSON_APPEND_UTF8(&st, "direction", "forward");
        if (stats) {
            BSON_APPEND_INT64(&st, "nReturned", (int64_t)r->returned);
            BSON_APPEND_INT64(&st, "docsExamined", (int64_t)r->docs);
        }
    }
    bson_append_document_end(parent, &st);
}

void net_explain_append_plan(bson_t *parent,
                             const char *key,
                             const struct explain_req *req,
                             const struct explain_run *r,
                             bool stats)
{
    const char *top = strcmp(req->cmd, "count") == 0                   ? "COUNT"
                      : !bson_empty(&req->sort) && !r->sorted_by_index ? "SORT"
                      : req->limit > 0                                 ? "LIMIT"
                      : req->skip > 0                                  ? "SKIP"
                                                                       : NULL;
    if (top == NULL) {
        net_explain_append_access(parent, key, req, r, stats);
        return;
    }
    bson_t st;
    bson_append_document_begin(parent, key, -1, &st);
    BSON_APPEND_UTF8(&st, "stage", top);
    if (strcmp(top, "SORT") == 0) {
        BSON_APPEND_DOCUMENT(&st, "sortPattern", &req->sort);
    } else if (strcmp(top, "LIMIT") == 0) {
        BSON_APPEND_INT64(&st, "limitAmount", req->limit);
    } else if (strcmp(top, "SKIP") == 0) {
        BSON_APPEND_INT64(&st, "skipAmount", req->skip);
    }
    net_explain_append_access(&st, "inputStage", req, r, stats);
    bson_append_document_end(parent, &st);
}

static int cmd_explain(struct net_cmd *c)
{
    struct explain_req req;
    struct explain_run r;
    bson_t inner, qp, es;
    bson_iter_t it;
    const char *verbosity = "allPlansExecution";

    memset(&req, 0, sizeof req);
    if (get_doc_field(c->body, "explain", &inner, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (bson_iter_init_find(&it, c->body, "verbosity")) {
        if (!BSON_ITER_HOLDS_UTF8(&it)) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                              "BSON field 'explain.verbosity' is the wrong type '%s', expected "
                              "type 'string'",
                              qry_type_name(bson_iter_type(&it)));
            return NET_CMD_ERROR;
        }
        verbosity = bson_iter_utf8(&it, NULL);
        if (strcmp(verbosity, "queryPlanner") != 0 && strcmp(verbosity, "executionStats") != 0 &&
            strcmp(verbosity, "allPlansExecution") != 0) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                              "Enumeration value '%s' for field 'explain.verbosity' is not a "
                              "valid value.",
                              verbosity);
            return NET_CMD_ERROR;
        }
    }
    req.exec = strcmp(verbosity, "queryPlanner") != 0;
    if (!bson_iter_init(&it, &inner) || !bson_iter_next(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                          "explain command requires a nested object");
        return NET_CMD_ERROR;
    }
    req.cmd = bson_iter_key(&it);
    if (strcmp(req.cmd, "find") != 0 && strcmp(req.cmd, "count") != 0) {
        /* aggregate, distinct and the writes (cmd_explain_write.c) */
        return net_explain_other(c, &inner, req.exec);
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                          "collection name has invalid type %s",
                          qry_type_name(bson_iter_type(&it)));
        return NET_CMD_ERROR;
    }
    snprintf(req.ns, sizeof req.ns, "%s.%s", c->db, bson_iter_utf8(&it, NULL));
    bool is_count = strcmp(req.cmd, "count") == 0;
    if (get_doc_field(&inner, is_count ? "query" : "filter", &req.filter, &c->err) != 0 ||
        get_doc_field(&inner, "sort", &req.sort, &c->err) != 0 ||
        get_doc_field(&inner, "projection", &req.projection, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (net_get_hint(&inner, &req.hint, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    req.limit = get_int(&inner, "limit");
    req.skip = get_int(&inner, "skip");
    if (req.limit < 0) {
        req.limit = -req.limit;
    }
    if (net_explain_run(c, &req, &r) != 0) {
        bson_destroy(&r.key_pattern);
        return NET_CMD_ERROR;
    }
    BSON_APPEND_UTF8(&c->reply, "explainVersion", "1");
    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "queryPlanner", &qp);
    BSON_APPEND_UTF8(&qp, "namespace", req.ns);
    BSON_APPEND_BOOL(&qp, "indexFilterSet", false);
    BSON_APPEND_DOCUMENT(&qp, "parsedQuery", &req.filter);
    net_explain_append_plan(&qp, "winningPlan", &req, &r, false);
    BSON_APPEND_ARRAY(&qp, "rejectedPlans", &(bson_t)BSON_INITIALIZER);
    bson_append_document_end(&c->reply, &qp);
    if (req.exec) {
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "executionStats", &es);
        BSON_APPEND_BOOL(&es, "executionSuccess", true);
        BSON_APPEND_INT64(&es, "nReturned", (int64_t)(is_count ? 0 : r.returned));
        BSON_APPEND_INT64(&es, "executionTimeMillis", r.millis);
        BSON_APPEND_INT64(&es, "totalKeysExamined", (int64_t)r.keys);
        BSON_APPEND_INT64(&es, "totalDocsExamined", (int64_t)r.docs);
        net_explain_append_plan(&es, "executionStages", &req, &r, true);
        bson_append_document_end(&c->reply, &es);
    }
    BSON_APPEND_DOCUMENT(&c->reply, "command", &inner);
    bson_destroy(&r.key_pattern);
    return NET_CMD_DONE;
}

const struct net_cmd_def net_cmds_explain[] = {
    {"explain", cmd_explain, NET_CMD_F_READ | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
