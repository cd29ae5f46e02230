/*
 * cmd_explain_write.c: explain of aggregate, distinct, update, delete and
 * findAndModify (the explain command's other commands; cmd_explain.c has
 * find and count, the plan runner and the stage builders: explain_int.h),
 * and aggregate's own `explain: true` option.
 *
 * The plans are the ones the commands run: an update, delete or
 * findAndModify visits its matches through the planner (cmd_crud.c,
 * crud_for_each_match); an aggregation reads its collection through an
 * index for its leading $match and $sort (cmd_read.c). Explaining a write
 * never writes: it plans and, for executionStats, runs the scan in a read
 * and counts what the write would do (nMatched, nWouldModify, nWouldUpsert,
 * nWouldDelete), applying an update to a copy it discards.
 *
 * Shapes, as mongod 7.0's classic engine: a write is UPDATE or DELETE over
 * the access stage (under SORT for a findAndModify whose sort no index
 * gives); distinct is the access stage; an aggregation whose stages are all
 * absorbed by the scan (a leading $match and $sort) answers queryPlanner /
 * executionStats at the top level, otherwise `stages`: [{$cursor:
 * {queryPlanner, executionStats}}, the remaining stages as given].
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "net/cursor.h"
#include "net/explain_int.h"
#include "net/net_int.h"
#include "query/query.h"

/* ---- Shared ---------------------------------------------------------------- */

static int collection_name(struct net_cmd *c, const bson_t *inner, char *ns)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, inner) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "collection name has invalid type %s",
                                 qry_type_name(bson_iter_type(&it)));
    }
    snprintf(ns, NS_BUF, "%s.%s", c->db, bson_iter_utf8(&it, NULL));
    return 0;
}

/* Appends {stage: top, <top_stats when stats>, inputStage: plan} under
 * `key`, or the plan alone when top is NULL. */
static void append_stage(bson_t *parent,
                         const char *key,
                         const char *top,
                         const struct explain_req *req,
                         const struct explain_run *r,
                         bool stats,
                         const bson_t *top_stats)
{
    bson_t st;

    if (top == NULL) {
        net_explain_append_plan(parent, key, req, r, stats);
        return;
    }
    bson_append_document_begin(parent, key, -1, &st);
    BSON_APPEND_UTF8(&st, "stage", top);
    if (stats && top_stats != NULL) {
        bson_iter_t it;
        if (bson_iter_init(&it, top_stats)) {
            while (bson_iter_next(&it)) {
                bson_append_iter(&st, NULL, 0, &it);
            }
        }
    }
    net_explain_append_plan(&st, "inputStage", req, r, stats);
    bson_append_document_end(parent, &st);
}

/* Appends queryPlanner and, when req->exec, executionStats. */
static void append_explain(bson_t *out,
                           const struct explain_req *req,
                           const struct explain_run *r,
                           const char *top,
                           const bson_t *top_stats,
                           int64_t n_returned)
{
    bson_t qp, es;

    BSON_APPEND_DOCUMENT_BEGIN(out, "queryPlanner", &qp);
    BSON_APPEND_UTF8(&qp, "namespace", req->ns);
    BSON_APPEND_BOOL(&qp, "indexFilterSet", false);
    BSON_APPEND_DOCUMENT(&qp, "parsedQuery", &req->filter);
    append_stage(&qp, "winningPlan", top, req, r, false, NULL);
    BSON_APPEND_ARRAY(&qp, "rejectedPlans", &(bson_t)BSON_INITIALIZER);
    bson_append_document_end(out, &qp);
    if (req->exec) {
        BSON_APPEND_DOCUMENT_BEGIN(out, "executionStats", &es);
        BSON_APPEND_BOOL(&es, "executionSuccess", true);
        BSON_APPEND_INT64(&es, "nReturned", n_returned);
        BSON_APPEND_INT64(&es, "executionTimeMillis", r->millis);
        BSON_APPEND_INT64(&es, "totalKeysExamined", (int64_t)r->keys);
        BSON_APPEND_INT64(&es, "totalDocsExamined", (int64_t)r->docs);
        append_stage(&es, "executionStages", top, req, r, true, top_stats);
        bson_append_document_end(out, &es);
    }
}

static void finish(struct net_cmd *c, const bson_t *inner)
{
    BSON_APPEND_DOCUMENT(&c->reply, "command", inner);
}

/* ---- Writes ---------------------------------------------------------------- */

/* What a write would do, counted on copies. */
struct would
{
    const struct qry_matcher *m;
    const struct qry_update *u; /* NULL: a delete */
    const struct qry_sort *sort;
    bool multi;
    int64_t now_ms;
    uint64_t matched, modified;
    bson_t best; /* !multi: the one document the write picks */
    bool have_best;
};

static int would_apply(struct would *x, const bson_t *doc, struct cairn_error *err)
{
    bson_t out;
    bool modified = false;
    long pos = -1;

    if (x->u == NULL) {
        return 0;
    }
    if (qry_update_needs_match_pos(x->u)) {
        (void)qry_matcher_match_pos(x->m, doc, &pos);
    }
    if (qry_update_apply_pos(x->u, doc, false, x->now_ms, pos, &out, &modified, err) != 0) {
        return err->code ? err->code : CAIRN_EINVAL;
    }
    bson_destroy(&out);
    x->modified += modified;
    return 0;
}

static int would_match(void *arg, const bson_t *doc, struct cairn_error *err)
{
    struct would *x = arg;

    if (x->multi) {
        x->matched++;
        return would_apply(x, doc, err);
    }
    /* The first match, or the least in sort order (an index's order gives
     * it first). */
    if (!x->have_best || (x->sort != NULL && qry_sort_cmp(x->sort, doc, &x->best) < 0)) {
        if (x->have_best) {
            bson_destroy(&x->best);
        }
        bson_copy_to(doc, &x->best);
        x->have_best = true;
    }
    return 0;
}

/* Runs req for a write of `u` (NULL: a delete) and appends its explain. */
static int explain_write(struct net_cmd *c,
                         const bson_t *inner,
                         struct explain_req *req,
                         const struct qry_update *u,
                         const struct qry_sort *sort,
                         bool multi,
                         bool upsert)
{
    struct qry_matcher *m = NULL;
    struct explain_run r;
    struct would x = {0};
    bson_t ts = BSON_INITIALIZER;
    int rc;

    memset(&r, 0, sizeof r);
    bson_init(&r.key_pattern);
    rc = qry_matcher_compile(&req->filter, &m, &c->err);
    if (rc != 0) {
        goto out;
    }
    x.m = m;
    x.u = u;
    x.sort = sort;
    x.multi = multi;
    x.now_ms = cairn_wall_ms();
    req->on_match = would_match;
    req->arg = &x;
    if (!multi) {
        req->limit = 1; /* the write stops at its first match (in an index's
                         * order; else the run counts every match, and
                         * would_match keeps the least) */
    }
    bson_destroy(&r.key_pattern);
    rc = net_explain_run(c, req, &r);
    if (rc != 0) {
        goto out;
    }
    if (x.have_best) {
        x.matched = 1;
        rc = would_apply(&x, &x.best, &c->err);
        if (rc != 0) {
            goto out;
        }
    }
    req->limit = 0; /* not a stage of a write's plan */
    if (u != NULL) {
        BSON_APPEND_INT64(&ts, "nReturned", 0);
        BSON_APPEND_INT64(&ts, "nMatched", (int64_t)x.matched);
        BSON_APPEND_INT64(&ts, "nWouldModify", (int64_t)x.modified);
        BSON_APPEND_INT64(&ts, "nWouldUpsert", upsert && x.matched == 0 ? 1 : 0);
    } else {
        BSON_APPEND_INT64(&ts, "nReturned", 0);
        BSON_APPEND_INT64(&ts, "nWouldDelete", (int64_t)x.matched);
    }
    BSON_APPEND_UTF8(&c->reply, "explainVersion", "1");
    append_explain(&c->reply, req, &r, u != NULL ? "UPDATE" : "DELETE", &ts, 0);
    finish(c, inner);
out:
    bson_destroy(&ts);
    if (x.have_best) {
        bson_destroy(&x.best);
    }
    bson_destroy(&r.key_pattern);
    qry_matcher_free(m);
    return rc == 0 ? NET_CMD_DONE : NET_CMD_ERROR;
}

/* The one statement of an explained update or delete. */
static int one_statement(struct net_cmd *c, const bson_t *inner, const char *field, bson_t *stmt)
{
    bson_iter_t it, el;
    uint32_t len;
    const uint8_t *data;
    int n = 0;

    if (!bson_iter_init_find(&it, inner, field)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                                 "BSON field '%s.%s' is missing but a required field",
                                 strcmp(field, "updates") == 0 ? "update" : "delete", field);
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &el)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field '%s' is the wrong type '%s', expected type 'array'",
                                 field, qry_type_name(bson_iter_type(&it)));
    }
    while (bson_iter_next(&el)) {
        if (n++ == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&el)) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field '%s.0' is the wrong type '%s', expected "
                                         "type 'object'",
                                         field, qry_type_name(bson_iter_type(&el)));
            }
            bson_iter_document(&el, &len, &data);
            if (!bson_init_static(stmt, data, len)) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                         "invalid BSON in %s", field);
            }
        }
    }
    if (n != 1) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidLength,
                                 "explained write batches must be of size 1");
    }
    return 0;
}

static bool get_bool(const bson_t *doc, const char *name)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, name) && bson_iter_as_bool(&it);
}

static int refuse_collation(struct net_cmd *c, const bson_t *doc)
{
    bson_t coll;
    if (net_explain_get_doc(doc, "collation", &coll, &c->err) != 0) {
        return c->err.code;
    }
    if (!net_dc_collation_is_simple(&coll)) {
        return net_dc_collation_unsupported(&c->err);
    }
    return 0;
}

/* Compiles the update document (or pipeline) `name` of `doc`, with the
 * arrayFilters `af_name` (NULL: none). */
static int compile_update(struct net_cmd *c,
                          const bson_t *doc,
                          const char *name,
                          struct qry_update **u)
{
    bson_iter_t it;
    bson_t ud, af;
    uint32_t len;
    const uint8_t *data;
    bool have_af = false;

    if (!bson_iter_init_find(&it, doc, name) ||
        (!BSON_ITER_HOLDS_DOCUMENT(&it) && !BSON_ITER_HOLDS_ARRAY(&it))) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_FailedToParse,
                                 "the '%s' field of the explained command must be an object", name);
    }
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "pipeline-style updates are not supported yet");
    }
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&ud, data, len)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue, "invalid update");
    }
    if (bson_iter_init_find(&it, doc, "arrayFilters") && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_array(&it, &len, &data);
        have_af = bson_init_static(&af, data, len);
    }
    return qry_update_compile_af(&ud, have_af ? &af : NULL, u, &c->err);
}

static int explain_update(struct net_cmd *c, const bson_t *inner, struct explain_req *req)
{
    struct qry_update *u = NULL;
    bson_t stmt;
    int rc;

    if (one_statement(c, inner, "updates", &stmt) != 0 || refuse_collation(c, &stmt) != 0 ||
        net_explain_get_doc(&stmt, "q", &req->filter, &c->err) != 0 ||
        net_get_hint(&stmt, &req->hint, &c->err) != 0 || compile_update(c, &stmt, "u", &u) != 0) {
        return NET_CMD_ERROR;
    }
    bool multi = get_bool(&stmt, "multi");
    if (multi && qry_update_is_replacement(u)) {
        qry_update_free(u);
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_FailedToParse,
                          "multi update is not supported for replacement-style update");
        return NET_CMD_ERROR;
    }
    rc = explain_write(c, inner, req, u, NULL, multi, get_bool(&stmt, "upsert"));
    qry_update_free(u);
    return rc;
}

static int explain_delete(struct net_cmd *c, const bson_t *inner, struct explain_req *req)
{
    bson_t stmt;
    bson_iter_t it;

    if (one_statement(c, inner, "deletes", &stmt) != 0 || refuse_collation(c, &stmt) != 0 ||
        net_explain_get_doc(&stmt, "q", &req->filter, &c->err) != 0 ||
        net_get_hint(&stmt, &req->hint, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    bool multi = !(bson_iter_init_find(&it, &stmt, "limit") && BSON_ITER_HOLDS_NUMBER(&it) &&
                   bson_iter_as_int64(&it) == 1);
    return explain_write(c, inner, req, NULL, NULL, multi, false);
}

static int explain_fam(struct net_cmd *c, const bson_t *inner, struct explain_req *req)
{
    struct qry_update *u = NULL;
    struct qry_sort *sort = NULL;
    bool remove = get_bool(inner, "remove");
    int rc = NET_CMD_ERROR;

    if (refuse_collation(c, inner) != 0 ||
        net_explain_get_doc(inner, "query", &req->filter, &c->err) != 0 ||
        net_explain_get_doc(inner, "sort", &req->sort, &c->err) != 0 ||
        net_get_hint(inner, &req->hint, &c->err) != 0) {
        goto out;
    }
    if (!bson_empty(&req->sort) && qry_sort_compile(&req->sort, &sort, &c->err) != 0) {
        goto out;
    }
    if (!remove && compile_update(c, inner, "update", &u) != 0) {
        goto out;
    }
    rc = explain_write(c, inner, req, u, sort, false, !remove && get_bool(inner, "upsert"));
out:
    if (u != NULL) {
        qry_update_free(u);
    }
    if (sort != NULL) {
        qry_sort_free(sort);
    }
    return rc;
}

/* ---- Reads ----------------------------------------------------------------- */

static int explain_distinct(struct net_cmd *c, const bson_t *inner, struct explain_req *req)
{
    struct explain_run r;

    if (refuse_collation(c, inner) != 0 ||
        net_explain_get_doc(inner, "query", &req->filter, &c->err) != 0 ||
        net_get_hint(inner, &req->hint, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    memset(&r, 0, sizeof r);
    if (net_explain_run(c, req, &r) != 0) {
        bson_destroy(&r.key_pattern);
        return NET_CMD_ERROR;
    }
    BSON_APPEND_UTF8(&c->reply, "explainVersion", "1");
    append_explain(&c->reply, req, &r, NULL, NULL, (int64_t)r.returned);
    finish(c, inner);
    bson_destroy(&r.key_pattern);
    return NET_CMD_DONE;
}

int net_explain_aggregate(struct net_cmd *c,
                          const char *ns,
                          const bson_t *inner,
                          const bson_t *pipeline,
                          bool exec)
{
    struct qry_pipeline *p = NULL;
    struct explain_req req;
    struct explain_run r;
    bson_iter_t it;
    bson_t stages, cursor_st, cur;
    const bson_t *lm, *ls;
    uint32_t absorbed = 0, n = 0;
    bool rest = false;
    int rc = NET_CMD_ERROR;

    memset(&req, 0, sizeof req);
    memset(&r, 0, sizeof r);
    bson_init(&r.key_pattern);
    bson_init(&req.filter);
    bson_init(&req.sort);
    bson_init(&req.projection);
    req.cmd = "aggregate";
    req.exec = exec;
    snprintf(req.ns, sizeof req.ns, "%s", ns);
    if (refuse_collation(c, inner) != 0 || net_get_hint(inner, &req.hint, &c->err) != 0) {
        goto out;
    }
    if (bson_iter_init(&it, pipeline) && bson_iter_next(&it) && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t st;
        if (bson_iter_recurse(&it, &st) && bson_iter_next(&st) &&
            strcmp(bson_iter_key(&st), "$collStats") == 0) {
            cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                              "explain of a $collStats pipeline is not supported yet");
            goto out;
        }
    }
    if (qry_pipeline_compile(pipeline, &p, &c->err) != 0) {
        goto out;
    }
    /* The scan absorbs the leading $match and $sort (cmd_read.c). */
    lm = qry_pipeline_leading_match(p);
    ls = qry_pipeline_leading_sort(p);
    /* Views into `p`, which outlives req. */
    if (lm != NULL) {
        bson_init_static(&req.filter, bson_get_data(lm), lm->len);
        absorbed = 1;
    }
    if (ls != NULL) {
        bson_init_static(&req.sort, bson_get_data(ls), ls->len);
        absorbed = lm != NULL ? 2 : 1;
    }
    bson_destroy(&r.key_pattern);
    if (net_explain_run(c, &req, &r) != 0) {
        goto out;
    }
    BSON_APPEND_UTF8(&c->reply, "explainVersion", "1");
    if (bson_iter_init(&it, pipeline)) {
        while (bson_iter_next(&it)) {
            rest = rest || n >= absorbed;
            n++;
        }
    }
    if (!rest) {
        append_explain(&c->reply, &req, &r, NULL, NULL, (int64_t)r.returned);
    } else {
        BSON_APPEND_ARRAY_BEGIN(&c->reply, "stages", &stages);
        BSON_APPEND_DOCUMENT_BEGIN(&stages, "0", &cursor_st);
        BSON_APPEND_DOCUMENT_BEGIN(&cursor_st, "$cursor", &cur);
        append_explain(&cur, &req, &r, NULL, NULL, (int64_t)r.returned);
        bson_append_document_end(&cursor_st, &cur);
        if (exec) {
            BSON_APPEND_INT64(&cursor_st, "nReturned", (int64_t)r.returned);
        }
        bson_append_document_end(&stages, &cursor_st);
        uint32_t k = 0, out_k = 1;
        bson_iter_init(&it, pipeline);
        while (bson_iter_next(&it)) {
            if (k++ < absorbed) {
                continue;
            }
            char buf[16];
            const char *key;
            bson_uint32_to_string(out_k++, &key, buf, sizeof buf);
            bson_append_iter(&stages, key, -1, &it);
        }
        bson_append_array_end(&c->reply, &stages);
    }
    finish(c, inner);
    rc = NET_CMD_DONE;
out:
    bson_destroy(&r.key_pattern);
    qry_pipeline_free(p);
    return rc;
}

static int explain_aggregate_cmd(struct net_cmd *c, const bson_t *inner, struct explain_req *req)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    bson_t pipeline;

    if (net_find_pipeline(c, inner, &it) != 0) {
        return NET_CMD_ERROR;
    }
    bson_iter_array(&it, &len, &data);
    if (!bson_init_static(&pipeline, data, len)) {
        cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue, "invalid pipeline");
        return NET_CMD_ERROR;
    }
    return net_explain_aggregate(c, req->ns, inner, &pipeline, req->exec);
}

int net_explain_other(struct net_cmd *c, const bson_t *inner, bool exec)
{
    struct explain_req req;
    bson_iter_t it;
    int rc;

    memset(&req, 0, sizeof req);
    bson_init(&req.filter);
    bson_init(&req.sort);
    bson_init(&req.projection);
    req.exec = exec;
    if (!bson_iter_init(&it, inner) || !bson_iter_next(&it)) {
        return NET_CMD_ERROR;
    }
    req.cmd = bson_iter_key(&it);
    if (strcmp(req.cmd, "aggregate") != 0 && strcmp(req.cmd, "distinct") != 0 &&
        strcmp(req.cmd, "update") != 0 && strcmp(req.cmd, "delete") != 0 &&
        strcmp(req.cmd, "findAndModify") != 0 && strcmp(req.cmd, "findandmodify") != 0) {
        cairn_error_mongo(&c->err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                          "explain of %s is not supported yet", req.cmd);
        return NET_CMD_ERROR;
    }
    if (collection_name(c, inner, req.ns) != 0) {
        return NET_CMD_ERROR;
    }
    if (strcmp(req.cmd, "aggregate") == 0) {
        rc = explain_aggregate_cmd(c, inner, &req);
    } else if (strcmp(req.cmd, "distinct") == 0) {
        rc = explain_distinct(c, inner, &req);
    } else if (strcmp(req.cmd, "update") == 0) {
        rc = explain_update(c, inner, &req);
    } else if (strcmp(req.cmd, "delete") == 0) {
        rc = explain_delete(c, inner, &req);
    } else {
        rc = explain_fam(c, inner, &req);
    }
    return rc;
}
