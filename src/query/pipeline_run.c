/*
 * pipeline_run.c: the executor of the aggregation pipeline
 * (qry_pipeline_run).
 *
 * Execution model: input documents are pushed through the stages one at a
 * time (push()); streaming stages ($match, $project, $addFields, $unset,
 * $skip, $limit, $unwind, $replaceRoot) transform and pass them on at once,
 * blocking stages ($group, $sort, $count) keep state in their per-run
 * `struct rstage` and emit everything when the input ends (flush(), run in
 * stage order). A $sort followed by $limit k keeps only its k first
 * (sortbuf.c's heap). Each stage a document enters checks for
 * interruption (maxTimeMS, killOp), so costly expressions stop in time.
 * When a $limit preceded only by streaming stages is full, the source is
 * no longer pulled. The compiled pipeline is immutable; all run state
 * lives in `struct run`, so one pipeline may run on many threads.
 */
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/pipeline_int.h"
#include "query/query.h"
#include "query/query_int.h"

/* ---- execution ---------------------------------------------------------------- */

/* The output is charged to the server-wide budget in steps of this. */
#define OUT_CHARGE_STEP ((size_t)256 * 1024)

struct rstage
{
    int64_t seen;
    struct qry_sortbuf *sb; /* $sort: the documents held (a top-k heap before $limit) */
    struct gtab tab;
};

struct run
{
    const struct qry_pipeline *p;
    struct rstage *rs;
    bson_t **out;
    size_t nout, cap;
    size_t out_bytes; /* held by out, against p->result_limit */
    size_t charged;   /* of out_bytes, to the server-wide budget (in steps) */
    bool stop;
};

static int keep_doc(bson_t ***arr,
                    size_t *n,
                    size_t *cap,
                    const bson_t *doc,
                    struct cairn_error *err)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        bson_t **na = realloc(*arr, nc * sizeof *na);
        if (!na) {
            return pl_oom(err);
        }
        *arr = na;
        *cap = nc;
    }
    bson_t *c = bson_copy(doc);
    if (!c) {
        return pl_oom(err);
    }
    (*arr)[(*n)++] = c;
    return 0;
}

/* Finds the value at path `parts` following embedded documents only. */
static bool find_doc_path(const bson_t *doc, char *const *parts, size_t n, bson_iter_t *out)
{
    bson_t cur = *doc;
    bson_t sub;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, &cur, parts[i])) {
            return false;
        }
        if (i + 1 == n) {
            *out = it;
            return true;
        }
        if (!pl_iter_doc(&it, &sub)) {
            return false;
        }
        cur = sub;
    }
    return false;
}

/* Copies `src` to `dst`, setting path `parts` to `v` (NULL: removing it).
 * Intermediate non-documents are replaced by documents when setting. */
static void doc_set(const bson_t *src,
                    char *const *parts,
                    size_t n,
                    const bson_value_t *v,
                    bson_t *dst)
{
    bson_iter_t it;
    bool found = false;
    bson_t child, sub, empty = BSON_INITIALIZER;
    if (src && bson_iter_init(&it, src)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (found || strcmp(k, parts[0]) != 0) {
                bson_append_iter(dst, NULL, 0, &it);
                continue;
            }
            found = true;
            if (n == 1) {
                if (v) {
                    bson_append_value(dst, k, -1, v);
                }
                continue;
            }
            bool is_doc = pl_iter_doc(&it, &sub);
            if (!is_doc && !v) {
                bson_append_iter(dst, NULL, 0, &it);
                continue;
            }
            bson_append_document_begin(dst, k, -1, &child);
            doc_set(is_doc ? &sub : &empty, parts + 1, n - 1, v, &child);
            bson_append_document_end(dst, &child);
        }
    }
    if (!found && v) {
        if (n == 1) {
            bson_append_value(dst, parts[0], -1, v);
        } else {
            bson_append_document_begin(dst, parts[0], -1, &child);
            doc_set(&empty, parts + 1, n - 1, v, &child);
            bson_append_document_end(dst, &child);
        }
    }
}

static int push(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err);

/* Emits `doc` with the unwound field set to `v` (NULL: removed) and the
 * index field (if any) set to `idx` (NULL: null). */
static int unwind_emit(struct run *r,
                       size_t i,
                       const bson_t *doc,
                       const bson_value_t *v,
                       bool set_field,
                       const int64_t *idx,
                       struct cairn_error *err)
{
    const struct stage *s = &r->p->st[i];
    bson_t a = BSON_INITIALIZER, b = BSON_INITIALIZER;
    const bson_t *cur = doc;
    int rv;
    if (set_field) {
        doc_set(doc, s->upath, s->nupath, v, &a);
        cur = &a;
    }
    if (s->nuidx) {
        bson_value_t iv = {.value_type = BSON_TYPE_NULL};
        if (idx) {
            iv.value_type = BSON_TYPE_INT64;
            iv.value.v_int64 = *idx;
        }
        doc_set(cur, s->uidx, s->nuidx, &iv, &b);
        cur = &b;
    }
    rv = push(r, i + 1, cur, err);
    bson_destroy(&a);
    bson_destroy(&b);
    return rv;
}

static int do_unwind(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err)
{
    const struct stage *s = &r->p->st[i];
    bson_iter_t it;
    bson_t arr;
    if (!find_doc_path(doc, s->upath, s->nupath, &it) || BSON_ITER_HOLDS_NULL(&it) ||
        bson_iter_type(&it) == BSON_TYPE_UNDEFINED) {
        return s->preserve ? unwind_emit(r, i, doc, NULL, false, NULL, err) : 0;
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return unwind_emit(r, i, doc, NULL, false, NULL, err);
    }
    if (pl_doc_value_from_iter(&it, &arr) != 0 || bson_empty(&arr)) {
        return s->preserve ? unwind_emit(r, i, doc, NULL, true, NULL, err) : 0;
    }
    bson_iter_t ai;
    int64_t k = 0;
    int rv = 0;
    bson_iter_init(&ai, &arr);
    while (!rv && !r->stop && bson_iter_next(&ai)) {
        rv = unwind_emit(r, i, doc, bson_iter_value(&ai), true, &k, err);
        k++;
    }
    return rv;
}

static int do_replace(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err)
{
    bson_value_t v;
    bson_t nd;
    int rv = qry_expr_eval(r->p->st[i].expr, doc, &v, err);
    if (rv) {
        return rv;
    }
    if (v.value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&nd, v.value.v_doc.data, v.value.v_doc.data_len)) {
        char *json = bson_as_relaxed_extended_json(doc, NULL);
        rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootNotObject,
                               "'newRoot' expression must evaluate to an object, but resulting "
                               "value was of type: %s. Input document: %s",
                               qry_type_name(v.value_type), json ? json : "{...}");
        bson_free(json);
    } else {
        rv = push(r, i + 1, &nd, err);
    }
    if (v.value_type != BSON_TYPE_EOD) {
        bson_value_destroy(&v);
    }
    return rv;
}

static int push(struct run *r, size_t i, const bson_t *doc, struct cairn_error *err)
{
    if (doc->len > QRY_MAX_VALUE_BYTES) { /* a stage built too large a document */
        return qry_too_large(err);
    }
    /* Every stage a document passes may cost much (expressions): maxTimeMS
     * and killOp are noticed between stages, not only between inputs. */
    int irv = qry_check_interrupt(err);
    if (irv) {
        return irv;
    }
    if (i == r->p->n) {
        r->out_bytes += doc->len + sizeof(bson_t) + sizeof(bson_t *);
        if (r->out_bytes > r->p->result_limit) {
            return cairn_error_mongo(err, CAIRN_ETOOBIG,
                                     MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                                     "Aggregation results exceeded the memory limit of %zu bytes "
                                     "(Cairn holds a pipeline's output in memory); narrow the "
                                     "pipeline or add $limit",
                                     r->p->result_limit);
        }
        if (r->out_bytes > r->charged) {
            size_t step = r->out_bytes - r->charged;
            step = step < OUT_CHARGE_STEP ? OUT_CHARGE_STEP : step;
            int crv = qry_mem_charge(step, err);
            if (crv) {
                return crv;
            }
            r->charged += step;
        }
        return keep_doc(&r->out, &r->nout, &r->cap, doc, err);
    }
    const struct stage *s = &r->p->st[i];
    struct rstage *rs = &r->rs[i];
    int rv;
    if (s->presorted) {
        return push(r, i + 1, doc, err); /* a $sort whose input is in its order */
    }
    switch (s->type) {
        case ST_MATCH:
            return qry_matcher_match(s->matcher, doc) ? push(r, i + 1, doc, err) : 0;
        case ST_SKIP:
            if (rs->seen < s->n) {
                rs->seen++;
                return 0;
            }
            return push(r, i + 1, doc, err);
        case ST_LIMIT:
            if (rs->seen >= s->n) {
                return 0;
            }
            rs->seen++;
            rv = push(r, i + 1, doc, err);
            if (rs->seen >= s->n && s->stream_prefix) {
                r->stop = true;
            }
            return rv;
        case ST_PROJECT: {
            bson_t o = BSON_INITIALIZER;
            rv = pl_papply_doc(s->proj, s->pmode, doc, doc, &o, err);
            if (!rv) {
                rv = push(r, i + 1, &o, err);
            }
            bson_destroy(&o);
            return rv;
        }
        case ST_REPLACE:
            return do_replace(r, i, doc, err);
        case ST_UNWIND:
            return do_unwind(r, i, doc, err);
        case ST_GROUP:
            return pl_group_add(s, &rs->tab, doc, err);
        case ST_SORT:
            if (rs->sb == NULL) {
                rv = qry_sortbuf_new(s->sort, s->topk, qry_sort_mem_limit(), NULL, &rs->sb, err);
                if (rv) {
                    return rv;
                }
                qry_sortbuf_set_disk_use(rs->sb, r->p->disk_use);
            }
            return qry_sortbuf_add(rs->sb, doc, err);
        default: /* ST_COUNT */
            rs->seen++;
            return 0;
    }
}

static void free_docs(bson_t **docs, size_t from, size_t n)
{
    for (size_t k = from; k < n; k++) {
        bson_destroy(docs[k]);
    }
    free(docs);
}

/* Where a $group's output documents go: stage `next` of the run. */
struct group_emit
{
    struct run *r;
    size_t next;
};

static int emit_group(void *arg, bson_t *doc, struct cairn_error *err)
{
    struct group_emit *ge = arg;
    return push(ge->r, ge->next, doc, err);
}

static int flush(struct run *r, size_t i, struct cairn_error *err)
{
    const struct stage *s = &r->p->st[i];
    struct rstage *rs = &r->rs[i];
    int rv = 0;
    switch (s->type) {
        case ST_GROUP: {
            struct group_emit ge = {r, i + 1};
            rv = pl_group_flush(s, &rs->tab, emit_group, &ge, err);
            pl_gtab_free(&rs->tab, s->nacc);
            return rv;
        }
        case ST_SORT:
            /* One document at a time: a spilled sort is merged from disk. */
            if (rs->sb != NULL) {
                rv = qry_sortbuf_done(rs->sb, err);
            }
            while (!rv && rs->sb != NULL) {
                bson_t *d = NULL;
                int got = qry_sortbuf_next(rs->sb, &d, err);
                if (got <= 0) {
                    rv = got < 0 ? (err->code ? err->code : CAIRN_EIO) : 0;
                    break;
                }
                rv = push(r, i + 1, d, err);
                bson_destroy(d);
            }
            return rv;
        case ST_COUNT:
            if (rs->seen > 0) {
                bson_t o = BSON_INITIALIZER;
                if (rs->seen <= INT32_MAX) {
                    bson_append_int32(&o, s->name, -1, (int32_t)rs->seen);
                } else {
                    bson_append_int64(&o, s->name, -1, rs->seen);
                }
                rv = push(r, i + 1, &o, err);
                bson_destroy(&o);
            }
            return rv;
        default:
            return 0;
    }
}

int qry_pipeline_run(const struct qry_pipeline *p,
                     qry_source_fn next,
                     void *arg,
                     bson_t ***out,
                     size_t *n_out,
                     struct cairn_error *err)
{
    struct run r;
    int rv = 0;
    memset(&r, 0, sizeof r);
    *out = NULL;
    *n_out = 0;
    r.p = p;
    r.rs = calloc(p->n ? p->n : 1, sizeof *r.rs);
    if (!r.rs) {
        return pl_oom(err);
    }
    for (size_t i = 0; i < p->n; i++) {
        r.rs[i].tab.disk_use = p->disk_use;
    }
    while (!r.stop) {
        bson_t doc;
        int got = next(arg, &doc, err);
        if (got < 0) {
            rv = err && err->code ? err->code : CAIRN_EIO;
            break;
        }
        if (got == 0) {
            break;
        }
        rv = push(&r, 0, &doc, err);
        if (rv) {
            break;
        }
    }
    for (size_t i = 0; !rv && i < p->n; i++) {
        rv = flush(&r, i, err);
    }
    for (size_t i = 0; i < p->n; i++) {
        pl_gtab_free(&r.rs[i].tab, p->st[i].nacc);
        qry_sortbuf_free(r.rs[i].sb);
    }
    free(r.rs);
    qry_mem_release(r.charged); /* the caller holds (and charges) the output now */
    if (rv) {
        free_docs(r.out, 0, r.nout);
        return rv;
    }
    *out = r.out;
    *n_out = r.nout;
    return 0;
}
