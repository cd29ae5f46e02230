/*
 * cmd_fam.c: the findAndModify command. It picks the first document that
 * `query` matches (in `sort` order), removes it or applies `update` to it
 * (or upserts one), and replies {lastErrorObject, value} with the document
 * as it was before or after (`new`), projected by `fields`; then waits for
 * the write concern like the other writes (net_dc_finish_write).
 *
 * Retryable findAndModify: the session record keeps the reply without its
 * value and, where the value is a document, a reference to the version it
 * was: {"$img": {p: true (pre-image) | false (post-image), c: collection
 * id, i: _id}}. A retry reads that version at the commit's timestamp
 * (post-image) or just before it (pre-image) and projects it with the
 * retry's `fields`. So the record stays small whatever the document's size
 * (mongod keeps images apart from the write too, in
 * config.image_collection). An image older than the history kept answers
 * 217 IncompleteTransactionHistory.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/op.h"
#include "net/crud_int.h"
#include "net/cursor.h"
#include "net/net_int.h"
#include "net/txnctx.h"
#include "txn/txn.h"

#define IMAGE_FIELD "$img"

/* The command's arguments, views into its body. */
struct fam_args
{
    char ns[NS_BUF];
    struct repl_wc wc;
    bson_t query, sort_spec, fields, collation, update_doc, af_arr;
    bool remove, want_new, upsert, has_update, has_af;
    int32_t stmt;
};

/* What the arguments compile to. */
struct fam_plan
{
    struct qry_matcher *m;
    struct qry_sort *sort;
    struct qry_projection *proj;
    struct qry_update *u;
};

static void plan_free(struct fam_plan *p)
{
    qry_matcher_free(p->m);
    if (p->sort != NULL) {
        qry_sort_free(p->sort);
    }
    if (p->proj != NULL) {
        qry_projection_free(p->proj);
    }
    if (p->u != NULL) {
        qry_update_free(p->u);
    }
}

static int parse_fail(struct net_cmd *c, int code, int mongo, const char *msg)
{
    cairn_error_mongo(&c->err, code, mongo, "%s", msg);
    return NET_CMD_ERROR;
}

/* Parses and checks the arguments as mongod does. Returns 0 or
 * NET_CMD_ERROR with c->err set. */
static int parse_args(struct net_cmd *c, struct fam_args *a)
{
    bson_iter_t it;
    int32_t *ids;

    memset(a, 0, sizeof *a);
    bson_init(&a->query);
    bson_init(&a->sort_spec);
    bson_init(&a->fields);
    bson_init(&a->collation);
    bson_init(&a->update_doc);
    bson_init(&a->af_arr);
    if (net_cmd_namespace(c, a->ns, sizeof a->ns) != 0 ||
        net_rwc_write_concern(c, &a->wc) != 0 ||
        net_get_doc(c, "query", &a->query) != 0 || net_get_doc(c, "sort", &a->sort_spec) != 0 ||
        net_get_doc(c, "fields", &a->fields) != 0 ||
        net_get_doc(c, "collation", &a->collation) != 0 ||
        net_get_bool(c, "remove", &a->remove) != 0 || net_get_bool(c, "new", &a->want_new) != 0 ||
        net_get_bool(c, "upsert", &a->upsert) != 0) {
        return NET_CMD_ERROR;
    }
    a->has_af = bson_iter_init_find(&it, c->body, "arrayFilters");
    if (a->has_af) {
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_ARRAY(&it)) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                              "BSON field 'findAndModify.arrayFilters' is the wrong type '%s', "
                              "expected type 'array'",
                              qry_type_name(bson_iter_type(&it)));
            return NET_CMD_ERROR;
        }
        bson_iter_array(&it, &len, &data);
        if (!bson_init_static(&a->af_arr, data, len)) {
            return parse_fail(c, CAIRN_EINVAL, MONGO_BadValue,
                              "findAndModify.arrayFilters is invalid");
        }
        if (crud_check_array_filters(&a->af_arr, "findAndModify.arrayFilters", &c->err) != 0) {
            return NET_CMD_ERROR;
        }
    }
    a->has_update = bson_iter_init_find(&it, c->body, "update");
    if (a->has_update) {
        if (BSON_ITER_HOLDS_ARRAY(&it) && a->has_af) {
            return parse_fail(c, CAIRN_EINVAL, MONGO_FailedToParse,
                              "Cannot specify arrayFilters and a pipeline update");
        }
        if (BSON_ITER_HOLDS_ARRAY(&it)) {
            return parse_fail(c, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                              "pipeline-style updates are not supported yet");
        }
        if (net_get_doc(c, "update", &a->update_doc) != 0) {
            return NET_CMD_ERROR;
        }
    }
    if (a->has_update && a->remove) {
        return parse_fail(c, CAIRN_EINVAL, MONGO_FailedToParse,
                          "Cannot specify both an update and remove=true");
    }
    if (!a->has_update && !a->remove) {
        return parse_fail(c, CAIRN_EINVAL, MONGO_FailedToParse,
                          "Either an update or remove=true must be specified");
    }
    if (a->remove && a->upsert) {
        return parse_fail(c, CAIRN_EINVAL, MONGO_FailedToParse,
                          "Cannot specify both upsert=true and remove=true");
    }
    if (a->remove && a->want_new) {
        return parse_fail(c, CAIRN_EINVAL, MONGO_FailedToParse,
                          "Cannot specify both new=true and remove=true; 'remove' always "
                          "returns the deleted document");
    }
    if (a->remove && a->has_af) {
        return parse_fail(c, CAIRN_EINVAL, MONGO_FailedToParse,
                          "Cannot specify arrayFilters and remove=true");
    }
    if (!net_dc_collation_is_simple(&a->collation)) {
        net_dc_collation_unsupported(&c->err);
        return NET_CMD_ERROR;
    }
    ids = net_stmt_ids(c, 1);
    if (ids == NULL) {
        return NET_CMD_ERROR;
    }
    a->stmt = ids[0];
    free(ids);
    return 0;
}

/* Compiles the query, sort, projection and update. Returns 0 or
 * NET_CMD_ERROR with c->err set (plan_free either way). */
static int compile(struct net_cmd *c, const struct fam_args *a, struct fam_plan *p)
{
    int rc;

    memset(p, 0, sizeof *p);
    rc = qry_matcher_compile(&a->query, &p->m, &c->err);
    if (rc == 0 && !bson_empty(&a->sort_spec)) {
        rc = qry_sort_compile(&a->sort_spec, &p->sort, &c->err);
    }
    if (rc == 0 && !bson_empty(&a->fields)) {
        rc = qry_projection_compile(&a->fields, &p->proj, &c->err);
    }
    if (rc == 0 && a->has_update) {
        rc = qry_update_compile_af(&a->update_doc, a->has_af ? &a->af_arr : NULL, &p->u, &c->err);
    }
    return rc == 0 ? 0 : NET_CMD_ERROR;
}

/* Appends the reply's `value`: `doc` projected, or null. */
static int append_value(struct net_cmd *c,
                        bson_t *reply,
                        const struct qry_projection *proj,
                        const bson_t *doc)
{
    bson_t out;

    if (doc == NULL) {
        BSON_APPEND_NULL(reply, "value");
        return 0;
    }
    if (proj == NULL) {
        BSON_APPEND_DOCUMENT(reply, "value", doc);
        return 0;
    }
    if (qry_projection_apply(proj, doc, &out, &c->err) != 0) {
        return c->err.code;
    }
    BSON_APPEND_DOCUMENT(reply, "value", &out);
    bson_destroy(&out);
    return 0;
}

/* ---- A retry ------------------------------------------------------------ */

static int image_lost(struct net_cmd *c, const char *why)
{
    return cairn_error_mongo(&c->err, CAIRN_ESTATE, MONGO_IncompleteTransactionHistory,
                             "Incomplete history detected for the retried findAndModify: %s", why);
}

/* Reads the image `img` ({p, c, i}) of the commit at `ts` and appends it,
 * projected, as the reply's value. */
static int append_image(struct net_cmd *c,
                        bson_t *reply,
                        const struct qry_projection *proj,
                        const bson_t *img,
                        cairn_ts ts)
{
    bson_iter_t it;
    bool pre = false;
    uint64_t cid = 0;
    bson_value_t id = {.value_type = BSON_TYPE_EOD};
    struct txn_read *rd = NULL;
    bson_t doc;
    int rc;

    if (bson_iter_init(&it, img)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strcmp(k, "p") == 0 && BSON_ITER_HOLDS_BOOL(&it)) {
                pre = bson_iter_bool(&it);
            } else if (strcmp(k, "c") == 0 && BSON_ITER_HOLDS_INT64(&it)) {
                cid = (uint64_t)bson_iter_int64(&it);
            } else if (strcmp(k, "i") == 0) {
                id = *bson_iter_value(&it);
            }
        }
    }
    if (cid == 0 || id.value_type == BSON_TYPE_EOD || ts == 0) {
        return image_lost(c, "its image reference is malformed");
    }
    rc = txn_read_begin_local_at(c->deps->txn, pre ? ts - 1 : ts, &rd, &c->err);
    if (rc == CAIRN_EINVAL) {
        return image_lost(c, "the document's version is older than the history kept");
    }
    if (rc != 0) {
        return rc;
    }
    rc = txn_read_get(rd, cid, &id, &doc, &c->err);
    if (rc == 0) {
        rc = append_value(c, reply, proj, &doc);
        bson_destroy(&doc);
    } else if (rc == CAIRN_ENOTFOUND) {
        rc = image_lost(c, "the document's version is gone (its collection was dropped)");
    }
    txn_read_end(rd);
    return rc;
}

/* Answers a retry from the record `prior` of the commit at `ts`: the
 * recorded reply with its image read back. */
static int answer_retry(struct net_cmd *c,
                        const struct fam_plan *p,
                        const bson_t *prior,
                        cairn_ts ts,
                        bson_t *reply)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, prior)) {
        return image_lost(c, "its record is malformed");
    }
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), IMAGE_FIELD) == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_t img;
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&img, data, len)) {
                return image_lost(c, "its image reference is malformed");
            }
            if (append_image(c, reply, p->proj, &img, ts) != 0) {
                return c->err.code;
            }
        } else {
            bson_append_iter(reply, NULL, 0, &it);
        }
    }
    return 0;
}

/* ---- A first execution ---------------------------------------------------- */

struct pick
{
    const struct qry_sort *sort;
    bson_t best;
    bool found;
    bool in_order; /* the documents come in sort order: the first is the one */
};

static int pick_one(void *arg, const bson_t *doc, bool *stop, struct cairn_error *err)
{
    struct pick *x = arg;

    (void)err;
    if (!x->found) {
        bson_copy_to(doc, &x->best);
        x->found = true;
    } else if (x->sort != NULL && qry_sort_cmp(x->sort, doc, &x->best) < 0) {
        bson_destroy(&x->best);
        bson_copy_to(doc, &x->best);
    }
    *stop = x->sort == NULL || x->in_order;
    return 0;
}

/* Finds and locks the document to modify: *found with *cur its newest
 * version, or not found. A document that changed under the statement so
 * that it no longer matches is chosen again on a fresh view. */
static int find_target(struct txn_write *w,
                       uint64_t cid,
                       const struct fam_args *a,
                       const struct fam_plan *p,
                       bson_t *cur,
                       bool *found,
                       struct cairn_error *err)
{
    struct pick x = {p->sort, BSON_INITIALIZER, false, false};
    int rc = 0;

    *found = false;
    for (int attempt = 0;; attempt++) {
        bool skip;
        rc = crud_for_each_match(w, cid, false, a->ns, &a->query,
                                 p->sort != NULL ? &a->sort_spec : NULL, p->m, pick_one, &x,
                                 &x.in_order, err);
        if (rc != 0 || !x.found) {
            break;
        }
        rc = crud_lock_matched(w, cid, p->m, &x.best, cur, &skip, err);
        if (rc != 0 || !skip) {
            *found = rc == 0;
            break;
        }
        /* Statements only: a transaction's view cannot change under it. */
        bson_destroy(&x.best);
        x.found = false;
        if (attempt >= 100) {
            rc = cairn_error_mongo(err, CAIRN_ECONFLICT, MONGO_WriteConflict,
                                   "findAndModify: the documents matched kept changing");
            break;
        }
        rc = txn_write_refresh_view(w, err);
        if (rc != 0) {
            break;
        }
    }
    if (x.found) {
        bson_destroy(&x.best);
    }
    return rc;
}

/* The outcome of a first execution. */
struct fam_outcome
{
    bson_t cur, newdoc; /* before / after, when have_cur / have_new */
    bool have_cur, have_new, upserted;
};

static void outcome_fini(struct fam_outcome *o)
{
    if (o->have_cur) {
        bson_destroy(&o->cur);
    }
    if (o->have_new) {
        bson_destroy(&o->newdoc);
    }
}

/* Modifies (or removes, or upserts) within write `w`. */
static int modify(struct txn_write *w,
                  uint64_t cid,
                  bool coll_is_new,
                  const struct fam_args *a,
                  const struct fam_plan *p,
                  struct fam_outcome *o,
                  struct cairn_error *err)
{
    int64_t now = cairn_wall_ms();
    bson_value_t id;
    int rc = 0;

    for (int attempt = 0;; attempt++) {
        if (!coll_is_new) {
            rc = find_target(w, cid, a, p, &o->cur, &o->have_cur, err);
            if (rc != 0) {
                return rc;
            }
        }
        if (o->have_cur || !a->upsert) {
            break;
        }
        rc = crud_do_upsert(w, cid, &a->query, p->u, now, &o->newdoc, err);
        if (rc == CAIRN_EEXISTS && crud_upsert_may_retry(w, attempt)) {
            cairn_error_clear(err);
            rc = txn_write_refresh_view(w, err);
            if (rc == 0) {
                continue;
            }
        }
        if (rc == 0) {
            o->have_new = o->upserted = true;
        }
        return rc;
    }
    if (!o->have_cur) {
        return 0;
    }
    if (a->remove) {
        crud_doc_id(&o->cur, &id);
        return txn_write_delete(w, cid, &id, err);
    }
    long pos = -1;
    bool modified = false;
    if (qry_update_needs_match_pos(p->u)) {
        (void)qry_matcher_match_pos(p->m, &o->cur, &pos);
    }
    rc = qry_update_apply_pos(p->u, &o->cur, false, now, pos, &o->newdoc, &modified, err);
    if (rc == 0) {
        o->have_new = true;
        if (modified) {
            rc = crud_put_updated(w, cid, &o->newdoc, err);
        }
    }
    return rc;
}

/* Builds the reply (into `reply`) and, for a retryable write, the record
 * (into `rec`: the reply with an image reference for its value). */
static int build_reply(struct net_cmd *c,
                       const struct fam_args *a,
                       const struct fam_plan *p,
                       const struct fam_outcome *o,
                       uint64_t cid,
                       bson_t *reply,
                       bson_t *rec)
{
    const bson_t *value = a->remove || !a->want_new ? (o->have_cur ? &o->cur : NULL)
                                                    : (o->have_new ? &o->newdoc : NULL);
    bson_t leo, img;
    bson_value_t id;

    BSON_APPEND_DOCUMENT_BEGIN(reply, "lastErrorObject", &leo);
    BSON_APPEND_INT32(&leo, "n", (o->have_cur || o->upserted) ? 1 : 0);
    if (!a->remove) {
        BSON_APPEND_BOOL(&leo, "updatedExisting", o->have_cur);
        if (o->upserted && crud_doc_id(&o->newdoc, &id)) {
            BSON_APPEND_VALUE(&leo, "upserted", &id);
        }
    }
    bson_append_document_end(reply, &leo);
    bson_copy_to(reply, rec);
    if (value == NULL || !crud_doc_id(value, &id)) {
        BSON_APPEND_NULL(rec, "value");
    } else {
        BSON_APPEND_DOCUMENT_BEGIN(rec, IMAGE_FIELD, &img);
        BSON_APPEND_BOOL(&img, "p", value == &o->cur);
        BSON_APPEND_INT64(&img, "c", (int64_t)cid);
        BSON_APPEND_VALUE(&img, "i", &id);
        bson_append_document_end(rec, &img);
    }
    return append_value(c, reply, p->proj, value);
}

/* Runs the command for the first time: *ts is its commit (0 when it
 * wrote nothing). */
static int execute(struct net_cmd *c,
                   const struct fam_args *a,
                   const struct fam_plan *p,
                   bson_t *reply,
                   cairn_ts *ts)
{
    struct txn_write *w = NULL;
    struct fam_outcome o = {.have_cur = false};
    bson_t rec = BSON_INITIALIZER;
    uint64_t cid = 0;
    bool created = false;
    int rc;

    *ts = 0;
    rc = net_write_begin(c, &w);
    if (rc != 0) {
        goto out;
    }
    rc = txn_write_coll(w, a->ns, a->upsert, &cid, &created, &c->err);
    if (rc == CAIRN_ENOTFOUND && !a->upsert) {
        cairn_error_clear(&c->err);
        rc = 0;
    } else if (rc == 0) {
        rc = modify(w, cid, created, a, p, &o, &c->err);
    }
    if (rc != 0) {
        goto out_write;
    }
    bson_destroy(&rec);
    rc = build_reply(c, a, p, &o, cid, reply, &rec);
    if (rc == 0) {
        rc = net_stmt_record(c, w, a->stmt, &rec);
    }
out_write:
    if (net_write_end(c, w, rc == 0, ts) != 0 && rc == 0) {
        rc = NET_CMD_ERROR;
    }
out:
    bson_destroy(&rec);
    outcome_fini(&o);
    return rc == 0 ? 0 : NET_CMD_ERROR;
}

int crud_cmd_find_and_modify(struct net_cmd *c)
{
    struct fam_args a;
    struct fam_plan p = {NULL};
    bson_t prior, reply = BSON_INITIALIZER;
    cairn_ts ts = 0;
    int rc;

    rc = parse_args(c, &a);
    if (rc == 0) {
        rc = compile(c, &a, &p);
    }
    if (rc != 0) {
        goto out;
    }
    if (net_stmt_executed(c, a.stmt, &prior, &ts)) {
        /* A retry: answer what the first execution answered. */
        rc = answer_retry(c, &p, &prior, ts, &reply) == 0 ? 0 : NET_CMD_ERROR;
        if (rc == 0) {
            BSON_APPEND_INT32(&reply, "retriedStmtId", a.stmt);
        }
    } else {
        rc = execute(c, &a, &p, &reply, &ts);
    }
    if (rc == 0) {
        bson_concat(&c->reply, &reply);
    }
out:
    bson_destroy(&reply);
    plan_free(&p);
    return rc == 0 ? net_dc_finish_write(c, ts, &a.wc) : NET_CMD_ERROR;
}
