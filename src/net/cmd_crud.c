/*
 * cmd_crud.c: the write commands insert, update and delete, and the
 * helpers they share with findAndModify (cmd_fam.c, crud_int.h).
 * Each parses its statements, runs them through a write set (txn.h): a
 * statement write (one per insert batch, one per update/delete statement)
 * or the session's open transaction; builds mongod's reply ({n, nModified,
 * upserted, writeErrors}) and then waits for the write concern without
 * holding a thread (NET_CMD_PENDING, completed from the wait callback).
 *
 * Every document a statement changes is first locked (txn_write_lock): a
 * statement then builds on its newest version, re-checking the filter when
 * it changed since the scan saw it. In a retryable write each statement's
 * result is recorded with its commit and a retried statement is answered
 * from the record instead of running again. In a transaction an error that
 * is transient or an interruption fails the whole command; others are
 * writeErrors (and the transaction is aborted after the command either way).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "net/crud_int.h"
#include "net/cursor.h"
#include "net/net_int.h"
#include "net/txnctx.h"
#include "txn/txn.h"

#define MAX_WRITE_BATCH 100000

/* ---- Shared helpers ----------------------------------------------------- */

static int missing_field(struct cairn_error *err, const char *cmd, const char *field)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_IdlMissingField,
                             "BSON field '%s.%s' is missing but a required field", cmd, field);
}

/* Reads the required array of statements `field` of the command: every
 * element must be a document; 1..100000 of them. */
static int get_statements(struct net_cmd *c,
                          const char *cmd,
                          const char *field,
                          bson_t *arr,
                          uint32_t *count)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, field)) {
        return missing_field(&c->err, cmd, field);
    }
    if (net_get_array(c, field, arr) != 0) {
        return c->err.code ? c->err.code : CAIRN_EINVAL;
    }
    uint32_t n = 0;
    if (!bson_iter_init(&it, arr)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "BSON field '%s.%s' is not valid BSON", cmd, field);
    }
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field '%s.%s.%" PRIu32
                                     "' is the wrong type '%s', expected type 'object'",
                                     cmd, field, n, qry_type_name(bson_iter_type(&it)));
        }
        n++;
    }
    if (n == 0 || n > MAX_WRITE_BATCH) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_InvalidLength,
                                 "Write batch sizes must be between 1 and %d. Got %" PRIu32
                                 " operations.",
                                 MAX_WRITE_BATCH, n);
    }
    *count = n;
    return 0;
}

static void append_count(bson_t *b, const char *key, int64_t n)
{
    if (n <= INT32_MAX) {
        bson_append_int32(b, key, -1, (int32_t)n);
    } else {
        bson_append_int64(b, key, -1, n);
    }
}

struct match_adapter
{
    crud_match_fn fn;
    void *arg;
};

static int adapt_match(void *arg, const bson_t *doc, struct cairn_error *err)
{
    struct match_adapter *a = arg;
    bool stop = false;

    if (a->fn(a->arg, doc, &stop, err) != 0) {
        return -1;
    }
    return stop ? 1 : 0;
}

/* Visits the matches in the order of an index that gives `sort`'s (the
 * hinted one, when `hint` names one): *in_order false (nothing visited)
 * when none does; set before the first document is visited, so a callback
 * may look at it. */
static int visit_sorted(struct txn_read *rd,
                        uint64_t cid,
                        const char *ns,
                        const bson_t *filter,
                        const bson_t *sort,
                        const bson_value_t *hint,
                        const struct qry_matcher *m,
                        struct match_adapter *a,
                        bool *in_order,
                        struct cairn_error *err)
{
    struct txn_scan *sc = NULL;
    struct txn_scan_req req = {.ns = ns,
                               .filter = filter == NULL || bson_empty(filter) ? NULL : filter,
                               .sort = sort,
                               .hint = hint,
                               .need_sort_order = true};
    int rc = txn_scan_open_query(rd, cid, &req, &sc, err);

    *in_order = rc == 0 && sc != NULL;
    if (!*in_order) {
        return rc;
    }
    for (;;) {
        bson_t doc;
        int r = net_dc_scan_next(sc, &doc, err);
        if (r <= 0) {
            rc = r < 0 ? err->code : 0;
            break;
        }
        if (!qry_matcher_match(m, &doc)) {
            continue;
        }
        r = adapt_match(a, &doc, err);
        if (r != 0) {
            rc = r < 0 ? (err->code ? err->code : CAIRN_EIO) : 0;
            break;
        }
    }
    txn_scan_close(sc);
    return rc;
}

/* A collection this write creates has the _id index alone: a hint naming
 * any other is refused as the planner refuses it (txn/ixscan.c). */
static int check_hint_new_coll(const char *ns, const bson_value_t *hint, struct cairn_error *err)
{
    if (!qry_hint_given(hint) || qry_hint_natural(hint, NULL) || qry_hint_is_id(hint)) {
        return 0;
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                             "error processing query: ns=%s planner returned error :: caused by "
                             ":: hint provided does not correspond to an existing index",
                             ns);
}

int crud_for_each_match(struct txn_write *w,
                        uint64_t cid,
                        bool coll_is_new,
                        const char *ns,
                        const bson_t *filter,
                        const bson_t *sort,
                        const bson_value_t *hint,
                        const struct qry_matcher *m,
                        crud_match_fn fn,
                        void *arg,
                        bool *in_order,
                        struct cairn_error *err)
{
    struct match_adapter a = {fn, arg};
    bson_value_t id;

    if (in_order != NULL) {
        *in_order = false;
    }
    if (coll_is_new) {
        return check_hint_new_coll(ns, hint, err);
    }
    struct txn_read *rd;
    if (txn_write_reader(w, &rd, err) != 0) {
        return err->code;
    }
    /* A hint other than the _id index bypasses the point lookup. */
    bool id_point =
        (!qry_hint_given(hint) || qry_hint_is_id(hint)) && qry_matcher_id_equality(m, &id);
    if (sort != NULL && !bson_empty(sort) && !id_point) {
        bool local = false, *sorted = in_order != NULL ? in_order : &local;
        int rc = visit_sorted(rd, cid, ns, filter, sort, hint, m, &a, sorted, err);
        if (rc != 0 || *sorted) {
            return rc;
        }
    }
    struct txn_scan_req req = {.ns = ns, .filter = m != NULL ? filter : NULL, .hint = hint};
    return net_dc_visit_scan(rd, cid, &req, m, adapt_match, &a, err);
}

bool crud_doc_id(const bson_t *doc, bson_value_t *id)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id")) {
        return false;
    }
    *id = *bson_iter_value(&it);
    return true;
}

/* The arguments every write command starts with: its namespace, write
 * concern, `ordered` (default true) and its array of statements `field`.
 * Returns 0 or NET_CMD_ERROR with c->err set. */
struct write_args
{
    char ns[NS_BUF];
    struct repl_wc wc;
    bool ordered;
    bson_t stmts;
    uint32_t count;
    int32_t *stmt_ids; /* one per statement (malloc'd: write_args_free) */
};

static int get_write_args(struct net_cmd *c, const char *field, struct write_args *a)
{
    a->ordered = true;
    a->count = 0;
    a->stmt_ids = NULL;
    if (net_cmd_namespace(c, a->ns, sizeof a->ns) != 0 || net_rwc_write_concern(c, &a->wc) != 0 ||
        net_get_bool(c, "ordered", &a->ordered) != 0 ||
        get_statements(c, c->name, field, &a->stmts, &a->count) != 0) {
        return NET_CMD_ERROR;
    }
    a->stmt_ids = net_stmt_ids(c, a->count);
    return a->stmt_ids != NULL ? 0 : NET_CMD_ERROR;
}

static void write_args_free(struct write_args *a)
{
    free(a->stmt_ids);
    a->stmt_ids = NULL;
}

typedef int (*stmt_parse_fn)(const bson_t *stmt, void *out, struct cairn_error *err);

/* Parses every statement of a->stmts (already checked to be documents by
 * get_statements) with `parse` into a calloc'd array of elem_size entries,
 * before any statement runs: a malformed statement fails the whole command
 * as in mongod. `what` names the array in errors ("update.updates").
 * Returns the array (caller frees) or NULL with c->err set. */
static void *parse_stmts(struct net_cmd *c,
                         const struct write_args *a,
                         const char *what,
                         size_t elem_size,
                         stmt_parse_fn parse)
{
    uint8_t *parsed = calloc(a->count ? a->count : 1, elem_size);
    if (parsed == NULL) {
        cairn_error_setf(&c->err, CAIRN_ENOMEM, "out of memory");
        return NULL;
    }
    bson_iter_t it;
    bson_iter_init(&it, &a->stmts);
    for (uint32_t i = 0; i < a->count && bson_iter_next(&it); i++) {
        uint32_t len;
        const uint8_t *data;
        bson_t stmt;
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&stmt, data, len)) {
            cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue, "invalid BSON in %s", what);
            free(parsed);
            return NULL;
        }
        if (parse(&stmt, parsed + (size_t)i * elem_size, &c->err) != 0) {
            free(parsed);
            return NULL;
        }
    }
    return parsed;
}

/* Statements only: flushes the write's staged changes as a commit of their
 * own once they pass TXN_FLUSH_BYTES, so that no commit outgrows a raft
 * entry (txn_write_last_ts follows the newest one). A transaction commits
 * once, whole. */
static int flush_if_large(struct txn_write *w, struct cairn_error *err)
{
    cairn_ts ts = 0;

    if (txn_write_is_multi(w) || txn_write_staged_bytes(w) < TXN_FLUSH_BYTES) {
        return 0;
    }
    return txn_write_flush(w, &ts, err);
}

int crud_put_updated(struct txn_write *w, uint64_t cid, const bson_t *doc, struct cairn_error *err)
{
    if (doc->len > TXN_MAX_DOC_SIZE) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_LOC_UpdateResultTooLarge,
                                 "Resulting document after update is larger than %d",
                                 TXN_MAX_DOC_SIZE);
    }
    return txn_write_put(w, cid, doc, err);
}

/* ---- insert ------------------------------------------------------------- */

/* Whether a statement error fails the whole command (see the essay). */
static bool top_level(const struct net_cmd *c, const struct cairn_error *e)
{
    (void)c;
    return net_txn_error_is_top_level(net_mongo_code(e));
}

/* The statements a retry answered from the session record, for the reply's
 * retriedStmtIds (mongod 6.0+). */
struct retried
{
    bson_t ids; /* an array being built */
    uint32_t n;
};

static void retried_add(struct retried *r, int32_t stmt)
{
    char key[16];
    const char *k;

    bson_uint32_to_string(r->n++, &k, key, sizeof key);
    bson_append_int32(&r->ids, k, -1, stmt);
}

static void retried_finish(struct net_cmd *c, struct retried *r)
{
    if (r->n > 0) {
        BSON_APPEND_ARRAY(&c->reply, "retriedStmtIds", &r->ids);
    }
    bson_destroy(&r->ids);
}

/* Any error inside a transaction aborts it, writeErrors too (mongod's
 * write_ops_exec). Done here, before the reply is handed on: dispatch
 * cannot look at a reply once it is sent. */
static void abort_txn_on_write_errors(struct net_cmd *c, uint32_t n_err)
{
    if (n_err > 0 && c->txn_mode == NET_TXN_MULTI) {
        txn_session_txn_fail(c->sess);
    }
}

static int cmd_insert(struct net_cmd *c)
{
    struct write_args a;
    struct txn_write *w = NULL;
    uint64_t cid = 0;
    bool created = false, have_coll = false;
    bson_t werrs;
    uint32_t n_err = 0;
    int64_t n = 0;
    cairn_ts ts = 0, retry_ts = 0;
    bson_iter_t it;
    int result = NET_CMD_DONE;
    bson_t empty = BSON_INITIALIZER;
    struct retried retried = {BSON_INITIALIZER, 0};

    if (get_write_args(c, "documents", &a) != 0) {
        return NET_CMD_ERROR;
    }
    if (net_write_begin(c, &w) != 0) {
        write_args_free(&a);
        return NET_CMD_ERROR;
    }
    bson_init(&werrs);
    bson_iter_init(&it, &a.stmts);
    for (uint32_t idx = 0; bson_iter_next(&it); idx++) {
        int32_t stmt = a.stmt_ids[idx];
        uint32_t len;
        const uint8_t *data;
        bson_t in, doc, prior;
        bool have_doc = false;
        struct cairn_error e;
        int rc;

        if (net_stmt_executed(c, stmt, &prior, &retry_ts)) {
            n++;
            retried_add(&retried, stmt);
            continue;
        }
        if (!have_coll) {
            /* Resolved at the first statement that runs: a retry answered
             * whole from the record must not recreate a dropped collection. */
            if (txn_write_coll(w, a.ns, true, &cid, &created, &c->err) != 0) {
                result = NET_CMD_ERROR;
                break;
            }
            have_coll = true;
        }
        cairn_error_clear(&e);
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&in, data, len)) {
            rc = cairn_error_mongo(&e, CAIRN_EBADDOC, MONGO_BadValue, "invalid BSON document");
        } else if (len > TXN_MAX_DOC_SIZE) {
            rc = cairn_error_mongo(&e, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                   "object to insert too large. size in bytes: %" PRIu32
                                   ", max size: %d",
                                   len, TXN_MAX_DOC_SIZE);
        } else if ((rc = net_dc_prepare_doc(&in, &doc, &e)) == 0) {
            have_doc = true;
            rc = txn_write_insert(w, cid, &doc, &e);
        }
        if (rc == 0) {
            n++;
            if (net_stmt_record(c, w, stmt, &empty) != 0 || flush_if_large(w, &c->err) != 0) {
                result = NET_CMD_ERROR;
            }
        } else if (top_level(c, &e) || txn_write_failed(w)) {
            /* A commit of this write failed (while it waited for a
             * document): what it held is lost, the command fails. */
            c->err = e;
            result = NET_CMD_ERROR;
        } else {
            bson_value_t id;
            bool has_id = have_doc && crud_doc_id(&doc, &id);
            net_dc_append_write_error(&werrs, n_err++, (int32_t)idx, &e, has_id ? &id : NULL);
        }
        if (have_doc) {
            bson_destroy(&doc);
        }
        if (result != NET_CMD_DONE || (rc != 0 && (a.ordered || c->txn_mode == NET_TXN_MULTI))) {
            break;
        }
    }
    if (net_write_end(c, w, result == NET_CMD_DONE, &ts) != 0) {
        result = NET_CMD_ERROR;
    }
    if (result == NET_CMD_DONE) {
        append_count(&c->reply, "n", n);
        if (n_err > 0) {
            BSON_APPEND_ARRAY(&c->reply, "writeErrors", &werrs);
        }
    }
    retried_finish(c, &retried);
    bson_destroy(&werrs);
    write_args_free(&a);
    if (result != NET_CMD_DONE) {
        return result;
    }
    abort_txn_on_write_errors(c, n_err);
    return net_dc_finish_write(c, ts > retry_ts ? ts : retry_ts, &a.wc);
}

/* ---- update ------------------------------------------------------------- */

struct upd_ctx
{
    struct txn_write *w;
    uint64_t cid;
    const struct qry_matcher *m; /* for the position "$" refers to, and re-checks */
    const struct qry_update *u;
    bool multi;
    int64_t now_ms;
    int64_t matched;
    int64_t modified;
};

int crud_lock_matched(struct txn_write *w,
                      uint64_t cid,
                      const struct qry_matcher *m,
                      const bson_t *seen,
                      bson_t *cur,
                      bool *skip,
                      struct cairn_error *err)
{
    bson_value_t id;
    int rc;

    *skip = false;
    if (!crud_doc_id(seen, &id)) {
        return cairn_error_mongo(err, CAIRN_ECORRUPT, MONGO_InternalError,
                                 "stored document has no _id");
    }
    rc = txn_write_lock(w, cid, &id, cur, err);
    if (rc == CAIRN_ENOTFOUND) {
        cairn_error_clear(err);
        *skip = true;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    if ((cur->len != seen->len || memcmp(bson_get_data(cur), bson_get_data(seen), cur->len) != 0) &&
        (m != NULL && !qry_matcher_match(m, cur))) {
        bson_destroy(cur);
        *skip = true;
    }
    return 0;
}

static int upd_one(void *arg, const bson_t *seen, bool *stop, struct cairn_error *err)
{
    struct upd_ctx *x = arg;
    bson_t cur, out;
    bool modified = false, skip;
    long pos = -1;
    int rc = crud_lock_matched(x->w, x->cid, x->m, seen, &cur, &skip, err);

    if (rc != 0 || skip) {
        return rc;
    }
    if (qry_update_needs_match_pos(x->u)) {
        (void)qry_matcher_match_pos(x->m, &cur, &pos);
    }
    rc = qry_update_apply_pos(x->u, &cur, false, x->now_ms, pos, &out, &modified, err);
    bson_destroy(&cur);
    if (rc != 0) {
        return rc;
    }
    if (modified) {
        rc = crud_put_updated(x->w, x->cid, &out, err);
    }
    bson_destroy(&out);
    if (rc == 0 && modified) {
        /* The view stays: the scan runs on it and visits each document once. */
        rc = flush_if_large(x->w, err);
    }
    if (rc != 0) {
        return rc;
    }
    x->matched++;
    if (modified) {
        x->modified++;
    }
    *stop = !x->multi;
    return 0;
}

int crud_do_upsert(struct txn_write *w,
                   uint64_t cid,
                   const bson_t *q,
                   const struct qry_update *u,
                   int64_t now_ms,
                   bson_t *final,
                   struct cairn_error *err)
{
    bson_t seed;
    int rc = qry_upsert_seed(q, &seed, err);
    if (rc != 0) {
        return rc;
    }
    bson_t applied;
    bool modified = false;
    rc = qry_update_apply(u, &seed, true, now_ms, &applied, &modified, err);
    bson_destroy(&seed);
    if (rc != 0) {
        return rc;
    }
    rc = net_dc_prepare_doc(&applied, final, err);
    bson_destroy(&applied);
    if (rc != 0) {
        return rc;
    }
    rc = txn_write_insert(w, cid, final, err);
    if (rc != 0) {
        bson_destroy(final);
    }
    return rc;
}

bool crud_upsert_may_retry(const struct txn_write *w, int attempt)
{
    return !txn_write_is_multi(w) && attempt < 1;
}

/* The parsed shape of one update statement. */
struct upd_stmt
{
    /* Views into the command (bson_t is over-aligned: not kept in calloc'd arrays). */
    const uint8_t *q_data;
    uint32_t q_len;
    const uint8_t *u_data;
    uint32_t u_len;
    bool u_is_pipeline;
    bool upsert;
    bool multi;
    bool has_array_filters; /* the option is present */
    const uint8_t *af_data; /* its array, when present */
    uint32_t af_len;
    bool collation_simple;
    bson_value_t hint; /* a view; BSON_TYPE_EOD: none */
};

int crud_check_array_filters(const bson_t *af, const char *field, struct cairn_error *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, af)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "%s is not valid BSON", field);
    }
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field '%s.%s' is the wrong type '%s', expected type "
                                     "'object'",
                                     field, bson_iter_key(&it), qry_type_name(bson_iter_type(&it)));
        }
    }
    return 0;
}

static int parse_update_stmt(const bson_t *stmt, void *out, struct cairn_error *err)
{
    struct upd_stmt *s = out;
    bson_iter_t it;
    memset(s, 0, sizeof *s);
    s->collation_simple = true;
    if (!bson_iter_init_find(&it, stmt, "q")) {
        return missing_field(err, "update.updates", "q");
    }
    bson_t q;
    if (net_dc_get_doc(stmt, "update.updates", "q", &q, err) != 0) {
        return err->code;
    }
    s->q_data = bson_get_data(&q);
    s->q_len = q.len;
    if (!bson_iter_init_find(&it, stmt, "u")) {
        return missing_field(err, "update.updates", "u");
    }
    uint32_t len;
    const uint8_t *data;
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, &len, &data);
    } else if (BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_array(&it, &len, &data);
        s->u_is_pipeline = true;
    } else {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                 "BSON field 'update.updates.u' is the wrong type '%s', expected "
                                 "types '[object, array]'",
                                 qry_type_name(bson_iter_type(&it)));
    }
    bson_t u_doc;
    if (!bson_init_static(&u_doc, data, len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "update.updates.u is not valid BSON");
    }
    s->u_data = data;
    s->u_len = len;
    if (net_dc_get_bool(stmt, "update.updates", "upsert", &s->upsert, err) != 0 ||
        net_dc_get_bool(stmt, "update.updates", "multi", &s->multi, err) != 0) {
        return err->code;
    }
    if (bson_iter_init_find(&it, stmt, "arrayFilters")) {
        if (!BSON_ITER_HOLDS_ARRAY(&it)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                     "BSON field 'update.updates.arrayFilters' is the wrong type "
                                     "'%s', expected type 'array'",
                                     qry_type_name(bson_iter_type(&it)));
        }
        bson_iter_array(&it, &len, &data);
        bson_t af;
        if (!bson_init_static(&af, data, len)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "update.updates.arrayFilters is not valid BSON");
        }
        if (crud_check_array_filters(&af, "update.updates.arrayFilters", err) != 0) {
            return err->code;
        }
        s->has_array_filters = true;
        s->af_data = data;
        s->af_len = len;
    }
    bson_t coll;
    bson_init(&coll);
    if (net_dc_get_doc(stmt, "update.updates", "collation", &coll, err) != 0) {
        return err->code;
    }
    s->collation_simple = net_dc_collation_is_simple(&coll);
    return net_get_hint(stmt, &s->hint, err);
}

/* The result of one update statement. */
struct upd_result
{
    int64_t matched;
    int64_t modified;
    bool upserted;
    bson_value_t upserted_id; /* valid while `upserted_doc` lives */
    bson_t upserted_doc;      /* initialised when upserted */
};

/* Runs one update statement (in its own write, or in the transaction). */
static int run_update_stmt(struct net_cmd *c,
                           const char *ns,
                           const struct upd_stmt *s,
                           int32_t stmt_id,
                           struct upd_result *res,
                           cairn_ts *ts,
                           struct cairn_error *err)
{
    struct qry_matcher *m = NULL;
    struct qry_update *u = NULL;
    struct txn_write *w = NULL;
    bson_t q, u_doc, af;
    uint64_t cid = 0;
    bool created = false;
    int rc;

    memset(res, 0, sizeof *res);
    *ts = 0;
    if (s->u_is_pipeline && s->has_array_filters && s->af_len > 5) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                 "arrayFilters may not be specified for pipeline-style updates");
    }
    if (s->u_is_pipeline) {
        return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                 "pipeline-style updates are not supported yet");
    }
    if (!s->collation_simple) {
        return net_dc_collation_unsupported(err);
    }
    if (!bson_init_static(&q, s->q_data, s->q_len) ||
        !bson_init_static(&u_doc, s->u_data, s->u_len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "invalid BSON in update.updates");
    }
    rc = qry_matcher_compile(&q, &m, err);
    if (rc == 0 && s->has_array_filters && !bson_init_static(&af, s->af_data, s->af_len)) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                               "invalid BSON in update.updates.arrayFilters");
    }
    if (rc == 0) {
        rc = qry_update_compile_af(&u_doc, s->has_array_filters ? &af : NULL, &u, err);
    }
    if (rc == 0 && s->multi && qry_update_is_replacement(u)) {
        rc = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                               "multi update is not supported for replacement-style update");
    }
    if (rc != 0) {
        goto out;
    }
    if (net_write_begin(c, &w) != 0) {
        *err = c->err;
        rc = err->code;
        goto out;
    }
    rc = txn_write_coll(w, ns, s->upsert, &cid, &created, err);
    if (rc == CAIRN_ENOTFOUND && !s->upsert) {
        cairn_error_clear(err);
        rc = 0;
        goto record;
    }
    if (rc != 0) {
        goto out;
    }
    for (int attempt = 0;; attempt++) {
        struct upd_ctx x = {w, cid, m, u, s->multi, cairn_wall_ms(), 0, 0};
        rc =
            crud_for_each_match(w, cid, created, ns, &q, NULL, &s->hint, m, upd_one, &x, NULL, err);
        if (rc == 0 && x.matched == 0 && s->upsert) {
            rc = crud_do_upsert(w, cid, &q, u, x.now_ms, &res->upserted_doc, err);
            if (rc == CAIRN_EEXISTS && crud_upsert_may_retry(w, attempt)) {
                cairn_error_clear(err);
                rc = txn_write_refresh_view(w, err);
                if (rc == 0) {
                    continue;
                }
            }
            if (rc == 0) {
                res->upserted = true;
                if (!crud_doc_id(&res->upserted_doc, &res->upserted_id)) {
                    res->upserted_id.value_type = BSON_TYPE_NULL;
                }
            }
        }
        res->matched = x.matched;
        res->modified = x.modified;
        break;
    }
record:
    if (rc == 0 && c->txn_mode == NET_TXN_RETRYABLE) {
        bson_t r = BSON_INITIALIZER;
        BSON_APPEND_INT64(&r, "n", res->matched + (res->upserted ? 1 : 0));
        BSON_APPEND_INT64(&r, "m", res->modified);
        if (res->upserted) {
            BSON_APPEND_VALUE(&r, "u", &res->upserted_id);
        }
        if (net_stmt_record(c, w, stmt_id, &r) != 0) {
            *err = c->err;
            rc = err->code;
        }
        bson_destroy(&r);
    }
out:
    if (w != NULL) {
        int erc = net_write_end(c, w, rc == 0, ts);
        if (rc == 0 && erc != 0) {
            *err = c->err;
            rc = erc;
        }
    }
    if (rc != 0 && res->upserted) {
        bson_destroy(&res->upserted_doc);
        res->upserted = false;
    }
    if (rc != 0) {
        res->matched = res->modified = 0;
    }
    if (u != NULL) {
        qry_update_free(u);
    }
    if (m != NULL) {
        qry_matcher_free(m);
    }
    return rc;
}

/* A retried update statement: its recorded result. */
static void update_result_from_record(const bson_t *rec, struct upd_result *res)
{
    bson_iter_t it;

    memset(res, 0, sizeof *res);
    if (bson_iter_init_find(&it, rec, "n") && BSON_ITER_HOLDS_INT64(&it)) {
        res->matched = bson_iter_int64(&it);
    }
    if (bson_iter_init_find(&it, rec, "m") && BSON_ITER_HOLDS_INT64(&it)) {
        res->modified = bson_iter_int64(&it);
    }
    if (bson_iter_init_find(&it, rec, "u")) {
        res->upserted = true;
        res->matched--; /* n counted the upsert */
        bson_init(&res->upserted_doc);
        bson_append_iter(&res->upserted_doc, "_id", 3, &it);
        crud_doc_id(&res->upserted_doc, &res->upserted_id);
    }
}

/* A statement that changes several documents cannot be a retryable write:
 * its parts may commit one by one (a statement commits what it staged
 * before it waits for a document), so a retry could not tell which ran.
 * mongod refuses it the same way, as that statement's writeError. */
static int not_retryable(struct cairn_error *e, const char *what)
{
    return cairn_error_mongo(e, CAIRN_EINVAL, MONGO_InvalidOptions,
                             "Cannot use (or request) retryable writes with %s", what);
}

/* What a failed statement of a write command does to the batch, as mongod:
 * an error that is top-level (interruptions, not primary; in a transaction
 * also transient errors) fails the command; otherwise it is a writeError at
 * its index, and the batch stops when ordered or in a transaction. */
enum stmt_outcome { STMT_TOP_ERROR, STMT_STOP, STMT_CONTINUE };

static enum stmt_outcome stmt_failed(struct net_cmd *c,
                                     bson_t *werrs,
                                     uint32_t *n_err,
                                     uint32_t i,
                                     const struct cairn_error *e,
                                     bool ordered)
{
    if (top_level(c, e)) {
        c->err = *e;
        return STMT_TOP_ERROR;
    }
    net_dc_append_write_error(werrs, (*n_err)++, (int32_t)i, e, NULL);
    return ordered || c->txn_mode == NET_TXN_MULTI ? STMT_STOP : STMT_CONTINUE;
}

static int cmd_update(struct net_cmd *c)
{
    struct write_args a;
    struct upd_stmt *parsed;
    int64_t n = 0, n_modified = 0;
    bson_t werrs, upserts;
    uint32_t n_err = 0, n_ups = 0;
    cairn_ts last_ts = 0;
    int result = NET_CMD_DONE;
    struct retried retried = {BSON_INITIALIZER, 0};

    if (get_write_args(c, "updates", &a) != 0) {
        return NET_CMD_ERROR;
    }
    parsed = parse_stmts(c, &a, "update.updates", sizeof *parsed, parse_update_stmt);
    if (parsed == NULL) {
        write_args_free(&a);
        return NET_CMD_ERROR;
    }
    bson_init(&werrs);
    bson_init(&upserts);
    for (uint32_t i = 0; i < a.count; i++) {
        int32_t stmt = a.stmt_ids[i];
        struct upd_result res;
        bson_t prior;
        cairn_ts ts = 0;
        struct cairn_error e;

        cairn_error_clear(&e);
        if (net_stmt_executed(c, stmt, &prior, &last_ts)) {
            update_result_from_record(&prior, &res);
            retried_add(&retried, stmt);
        } else {
            int rc = c->txn_mode == NET_TXN_RETRYABLE && parsed[i].multi
                         ? not_retryable(&e, "multi=true")
                         : run_update_stmt(c, a.ns, &parsed[i], stmt, &res, &ts, &e);
            if (rc != 0) {
                enum stmt_outcome o = stmt_failed(c, &werrs, &n_err, i, &e, a.ordered);
                if (o == STMT_TOP_ERROR) {
                    result = NET_CMD_ERROR;
                }
                if (o != STMT_CONTINUE) {
                    break;
                }
                continue;
            }
        }
        if (ts > last_ts) {
            last_ts = ts;
        }
        n += res.matched;
        n_modified += res.modified;
        if (res.upserted) {
            char key[16];
            const char *k;
            bson_t entry;
            n++;
            bson_uint32_to_string(n_ups++, &k, key, sizeof key);
            bson_append_document_begin(&upserts, k, -1, &entry);
            BSON_APPEND_INT32(&entry, "index", (int32_t)i);
            BSON_APPEND_VALUE(&entry, "_id", &res.upserted_id);
            bson_append_document_end(&upserts, &entry);
            bson_destroy(&res.upserted_doc);
        }
    }
    free(parsed);
    if (result == NET_CMD_DONE) {
        append_count(&c->reply, "n", n);
        append_count(&c->reply, "nModified", n_modified);
        if (n_ups > 0) {
            BSON_APPEND_ARRAY(&c->reply, "upserted", &upserts);
        }
        if (n_err > 0) {
            BSON_APPEND_ARRAY(&c->reply, "writeErrors", &werrs);
        }
    }
    retried_finish(c, &retried);
    bson_destroy(&werrs);
    bson_destroy(&upserts);
    write_args_free(&a);
    if (result != NET_CMD_DONE) {
        return result;
    }
    abort_txn_on_write_errors(c, n_err);
    return net_dc_finish_write(c, last_ts, &a.wc);
}

/* ---- delete ------------------------------------------------------------- */

struct del_ctx
{
    struct txn_write *w;
    uint64_t cid;
    const struct qry_matcher *m;
    bool multi;
    int64_t n;
};

static int del_one(void *arg, const bson_t *seen, bool *stop, struct cairn_error *err)
{
    struct del_ctx *x = arg;
    bson_value_t id;
    bson_t cur;
    bool skip;
    int rc = crud_lock_matched(x->w, x->cid, x->m, seen, &cur, &skip, err);

    if (rc != 0 || skip) {
        return rc;
    }
    crud_doc_id(&cur, &id);
    rc = txn_write_delete(x->w, x->cid, &id, err);
    bson_destroy(&cur);
    if (rc == 0) {
        rc = flush_if_large(x->w, err);
    }
    if (rc != 0) {
        return rc;
    }
    x->n++;
    *stop = !x->multi;
    return 0;
}

struct del_stmt
{
    const uint8_t *q_data; /* view into the command */
    uint32_t q_len;
    bool multi;
    bool collation_simple;
    bson_value_t hint; /* a view; BSON_TYPE_EOD: none */
};

/* Parses one delete statement {q, limit, collation?, hint?} into *out
 * (struct del_stmt; views into the command). */
static int parse_delete_stmt(const bson_t *stmt, void *out, struct cairn_error *err)
{
    struct del_stmt *s = out;
    bson_iter_t f;
    int64_t limit = 0;
    bson_t q;
    bson_t coll;
    bson_init(&coll);
    if (!bson_iter_init_find(&f, stmt, "q")) {
        return missing_field(err, "delete.deletes", "q");
    }
    if (!bson_iter_init_find(&f, stmt, "limit")) {
        return missing_field(err, "delete.deletes", "limit");
    }
    if (net_dc_get_doc(stmt, "delete.deletes", "q", &q, err) != 0 ||
        net_dc_get_int64(stmt, "delete.deletes", "limit", &limit, err) != 0 ||
        net_dc_get_doc(stmt, "delete.deletes", "collation", &coll, err) != 0) {
        return err->code ? err->code : CAIRN_EINVAL;
    }
    if (limit != 0 && limit != 1) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                                 "The limit field in delete objects must be 0 or 1. Got %" PRId64,
                                 limit);
    }
    s->q_data = bson_get_data(&q);
    s->q_len = q.len;
    s->multi = limit == 0;
    s->collation_simple = net_dc_collation_is_simple(&coll);
    return net_get_hint(stmt, &s->hint, err);
}

static int run_delete_stmt(struct net_cmd *c,
                           const char *ns,
                           const struct del_stmt *s,
                           int32_t stmt_id,
                           int64_t *n,
                           cairn_ts *ts,
                           struct cairn_error *err)
{
    struct qry_matcher *m = NULL;
    struct txn_write *w = NULL;
    bson_t q;
    uint64_t cid = 0;
    bool created = false;
    int rc;

    *n = 0;
    *ts = 0;
    if (!s->collation_simple) {
        return net_dc_collation_unsupported(err);
    }
    if (!bson_init_static(&q, s->q_data, s->q_len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "invalid BSON in delete.deletes");
    }
    rc = qry_matcher_compile(&q, &m, err);
    if (rc != 0) {
        return rc;
    }
    if (net_write_begin(c, &w) != 0) {
        *err = c->err;
        rc = err->code;
        goto out;
    }
    rc = txn_write_coll(w, ns, false, &cid, &created, err);
    if (rc == CAIRN_ENOTFOUND) {
        cairn_error_clear(err);
        rc = 0;
    } else if (rc == 0) {
        struct del_ctx x = {w, cid, m, s->multi, 0};
        rc =
            crud_for_each_match(w, cid, created, ns, &q, NULL, &s->hint, m, del_one, &x, NULL, err);
        *n = x.n;
    }
    if (rc == 0 && c->txn_mode == NET_TXN_RETRYABLE) {
        bson_t r = BSON_INITIALIZER;
        BSON_APPEND_INT64(&r, "n", *n);
        if (net_stmt_record(c, w, stmt_id, &r) != 0) {
            *err = c->err;
            rc = err->code;
        }
        bson_destroy(&r);
    }
out:
    if (w != NULL) {
        int erc = net_write_end(c, w, rc == 0, ts);
        if (rc == 0 && erc != 0) {
            *err = c->err;
            rc = erc;
        }
    }
    if (rc != 0) {
        *n = 0;
    }
    qry_matcher_free(m);
    return rc;
}

static int cmd_delete(struct net_cmd *c)
{
    struct write_args a;
    struct del_stmt *parsed;
    int64_t n = 0;
    bson_t werrs;
    uint32_t n_err = 0;
    cairn_ts last_ts = 0;
    int result = NET_CMD_DONE;
    struct retried retried = {BSON_INITIALIZER, 0};

    if (get_write_args(c, "deletes", &a) != 0) {
        return NET_CMD_ERROR;
    }
    parsed = parse_stmts(c, &a, "delete.deletes", sizeof *parsed, parse_delete_stmt);
    if (parsed == NULL) {
        write_args_free(&a);
        return NET_CMD_ERROR;
    }
    bson_init(&werrs);
    for (uint32_t i = 0; i < a.count; i++) {
        int32_t stmt = a.stmt_ids[i];
        int64_t deleted = 0;
        bson_t prior;
        bson_iter_t it;
        cairn_ts ts = 0;
        struct cairn_error e;

        if (net_stmt_executed(c, stmt, &prior, &last_ts)) {
            if (bson_iter_init_find(&it, &prior, "n") && BSON_ITER_HOLDS_INT64(&it)) {
                n += bson_iter_int64(&it);
            }
            retried_add(&retried, stmt);
            continue;
        }
        cairn_error_clear(&e);
        if ((c->txn_mode == NET_TXN_RETRYABLE && parsed[i].multi
                 ? not_retryable(&e, "limit=0")
                 : run_delete_stmt(c, a.ns, &parsed[i], stmt, &deleted, &ts, &e)) != 0) {
            enum stmt_outcome o = stmt_failed(c, &werrs, &n_err, i, &e, a.ordered);
            if (o == STMT_TOP_ERROR) {
                result = NET_CMD_ERROR;
            }
            if (o != STMT_CONTINUE) {
                break;
            }
            continue;
        }
        if (ts > last_ts) {
            last_ts = ts;
        }
        n += deleted;
    }
    free(parsed);
    if (result == NET_CMD_DONE) {
        append_count(&c->reply, "n", n);
        if (n_err > 0) {
            BSON_APPEND_ARRAY(&c->reply, "writeErrors", &werrs);
        }
    }
    retried_finish(c, &retried);
    bson_destroy(&werrs);
    write_args_free(&a);
    if (result != NET_CMD_DONE) {
        return result;
    }
    abort_txn_on_write_errors(c, n_err);
    return net_dc_finish_write(c, last_ts, &a.wc);
}

const struct net_cmd_def net_cmds_crud[] = {
    {"insert", cmd_insert, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"update", cmd_update, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"delete", cmd_delete, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"findAndModify", crud_cmd_find_and_modify, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {"findandmodify", crud_cmd_find_and_modify, NET_CMD_F_WRITE | NET_CMD_F_NEEDS_CONFIG},
    {NULL, NULL, 0},
};
