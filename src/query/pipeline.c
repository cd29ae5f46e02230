/*
 * pipeline.c: the aggregation pipeline (qry_pipeline_*): compiling a
 * pipeline into its stages (struct stage, pipeline_int.h) and the
 * compiled pipeline's life. $project/$addFields/$unset are parsed in
 * pipeline_project.c, $group in pipeline_group.c; the executor is in
 * pipeline_run.c. The compiled pipeline is immutable, so one pipeline may
 * run on many threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/pipeline_int.h"
#include "query/query.h"
#include "query/query_int.h"

/* ---- helpers ------------------------------------------------------------- */

int pl_oom(struct cairn_error *err)
{
    return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory in aggregation");
}

int pl_doc_value_from_iter(const bson_iter_t *it, bson_t *out)
{
    const uint8_t *data = NULL;
    uint32_t len = 0;
    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_document(it, &len, &data);
    } else if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_array(it, &len, &data);
    }
    return data && bson_init_static(out, data, len) ? 0 : -1;
}

/* ---- stages ---------------------------------------------------------------- */

static void free_parts(char **parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(parts[i]);
    }
    free(parts);
}

static void stage_free(struct stage *s)
{
    if (s->matcher) {
        qry_matcher_free(s->matcher);
    }
    qry_expr_free(s->expr);
    for (size_t i = 0; i < s->nacc; i++) {
        free(s->accs[i].name);
        qry_expr_free(s->accs[i].expr);
    }
    free(s->accs);
    pl_pnode_free(s->proj);
    if (s->sort) {
        qry_sort_free(s->sort);
    }
    free(s->name);
    free_parts(s->upath, s->nupath);
    free_parts(s->uidx, s->nuidx);
}

void qry_pipeline_set_result_limit(struct qry_pipeline *p, size_t bytes)
{
    p->result_limit = bytes;
}

void qry_pipeline_set_disk_use(struct qry_pipeline *p, bool requested)
{
    p->disk_use = requested;
}

void qry_pipeline_free(struct qry_pipeline *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        stage_free(&p->st[i]);
    }
    free(p->st);
    if (p->leading_match) {
        bson_destroy(p->leading_match);
    }
    if (p->leading_sort) {
        bson_destroy(p->leading_sort);
    }
    free(p);
}

const bson_t *qry_pipeline_leading_match(const struct qry_pipeline *p)
{
    return p->leading_match;
}

const bson_t *qry_pipeline_leading_sort(const struct qry_pipeline *p)
{
    return p->leading_sort;
}

/* Which stages stream: those before the first blocking one (a $sort
 * whose input comes in its order does not block). */
static void mark_stream_prefix(struct qry_pipeline *p)
{
    bool blocked = false;
    for (size_t i = 0; i < p->n; i++) {
        p->st[i].stream_prefix = !blocked;
        if (p->st[i].type == ST_GROUP || p->st[i].type == ST_COUNT ||
            (p->st[i].type == ST_SORT && !p->st[i].presorted)) {
            blocked = true;
        }
    }
}

void qry_pipeline_set_sorted_input(struct qry_pipeline *p)
{
    if (p->leading_sort != NULL) {
        p->st[p->leading_sort_at].presorted = true;
        mark_stream_prefix(p);
    }
}

static int split_path(const char *path, char ***parts, size_t *n, struct cairn_error *err)
{
    int rv = pl_check_path(path, err);
    if (rv) {
        return rv;
    }
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char **np = realloc(*parts, (*n + 1) * sizeof *np);
        if (!np) {
            return pl_oom(err);
        }
        *parts = np;
        np[(*n)++] = bson_strndup(p, len);
        if (!dot) {
            return 0;
        }
        p = dot + 1;
    }
}

bool pl_iter_doc(const bson_iter_t *it, bson_t *out)
{
    return BSON_ITER_HOLDS_DOCUMENT(it) && pl_doc_value_from_iter(it, out) == 0;
}

const char *pl_iter_type_name(const bson_iter_t *it)
{
    return qry_type_name(bson_iter_type(it));
}

static int parse_match(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    bson_t f;
    if (!pl_iter_doc(it, &f)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_MatchNotObject,
                                 "the match filter must be an expression in an object");
    }
    s->type = ST_MATCH;
    return qry_matcher_compile(&f, &s->matcher, err);
}

static int parse_count(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldNotString,
                                 "the count field must be a non-empty string");
    }
    uint32_t len = 0;
    const char *name = bson_iter_utf8(it, &len);
    if (len == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldEmpty,
                                 "the count field must be a non-empty string");
    }
    if (name[0] == '$') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldDollarPrefix,
                                 "the count field cannot be a $-prefixed path");
    }
    if (strlen(name) != len) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldNulByte,
                                 "the count field cannot contain a null byte");
    }
    if (strchr(name, '.')) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_CountFieldDot,
                                 "the count field cannot contain '.'");
    }
    if (strcmp(name, "_id") == 0) { /* mongod expands to {$group: {_id: null, _id: ...}} */
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupIdTwice,
                                 "a group's _id may only be specified once");
    }
    s->type = ST_COUNT;
    s->name = bson_strdup(name);
    return 0;
}

static int parse_sort_doc(struct stage *s, const bson_t *spec, struct cairn_error *err)
{
    s->type = ST_SORT;
    if (bson_empty(spec)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SortEmpty,
                                 "$sort stage must have at least one sort key");
    }
    return qry_sort_compile(spec, &s->sort, err);
}

static int parse_sort(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    bson_t spec;
    if (!pl_iter_doc(it, &spec)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SortNotObject,
                                 "the $sort key specification must be an object");
    }
    return parse_sort_doc(s, &spec, err);
}

static int parse_skip_limit(struct stage *s,
                            const bson_iter_t *it,
                            bool limit,
                            struct cairn_error *err)
{
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    const char *stage = limit ? "$limit" : "$skip";
    double d;
    if (!qry_is_number(v->value_type)) {
        return limit ? cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_LimitNotNumber,
                                         "the limit must be specified as a number")
                     : cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SkipNotNumber,
                                         "Argument to $skip must be a number");
    }
    d = qry_number_as_double(v);
    if (v->value_type == BSON_TYPE_INT64) {
        s->n = v->value.v_int64;
    } else if (v->value_type == BSON_TYPE_INT32) {
        s->n = v->value.v_int32;
    } else {
        if (d != floor(d) || !(d >= -9.2e18 && d <= 9.2e18)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "invalid argument to %s stage: Cannot represent as a 64-bit "
                                     "integer: %s: %g",
                                     stage, stage, d);
        }
        s->n = (int64_t)d;
    }
    if (limit && s->n <= 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_LimitNotPositive,
                                 "the limit must be positive");
    }
    if (!limit && s->n < 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SkipNegative,
                                 "Argument to $skip cannot be negative");
    }
    s->type = limit ? ST_LIMIT : ST_SKIP;
    return 0;
}

static int parse_unwind(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    const char *path = NULL;
    const char *idx = NULL;
    s->type = ST_UNWIND;
    if (BSON_ITER_HOLDS_UTF8(it)) {
        path = bson_iter_utf8(it, NULL);
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        bson_iter_t oi;
        bson_iter_recurse(it, &oi);
        while (bson_iter_next(&oi)) {
            const char *k = bson_iter_key(&oi);
            if (strcmp(k, "path") == 0) {
                if (!BSON_ITER_HOLDS_UTF8(&oi)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindPathNotString,
                                             "expected a string as the path for $unwind stage, "
                                             "got %s",
                                             pl_iter_type_name(&oi));
                }
                path = bson_iter_utf8(&oi, NULL);
            } else if (strcmp(k, "includeArrayIndex") == 0) {
                if (!BSON_ITER_HOLDS_UTF8(&oi)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindIndexFieldNotString,
                                             "expected a non-empty string for the "
                                             "includeArrayIndex option to $unwind stage, got %s",
                                             pl_iter_type_name(&oi));
                }
                idx = bson_iter_utf8(&oi, NULL);
                if (idx[0] == '\0') {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindIndexFieldNotString,
                                             "expected a non-empty string for the "
                                             "includeArrayIndex option to $unwind stage");
                }
                if (idx[0] == '$') {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindIndexFieldDollar,
                                             "includeArrayIndex option to $unwind stage should "
                                             "not be prefixed with a '$': %s",
                                             idx);
                }
            } else if (strcmp(k, "preserveNullAndEmptyArrays") == 0) {
                if (!BSON_ITER_HOLDS_BOOL(&oi)) {
                    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindPreserveNotBool,
                                             "expected a boolean for the "
                                             "preserveNullAndEmptyArrays option to $unwind "
                                             "stage, got %s",
                                             pl_iter_type_name(&oi));
                }
                s->preserve = bson_iter_bool(&oi);
            } else {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindUnknownOption,
                                         "unrecognized option to $unwind stage: %s", k);
            }
        }
        if (!path) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindMissingPath,
                                     "no path specified to $unwind stage");
        }
    } else {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindSpecBadType,
                                 "expected either a string or an object as specification for "
                                 "$unwind stage, got %s",
                                 pl_iter_type_name(it));
    }
    if (path[0] != '$') {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_UnwindPathNoDollar,
                                 "path option to $unwind stage should be prefixed with a '$': %s",
                                 path);
    }
    int rv = split_path(path + 1, &s->upath, &s->nupath, err);
    if (!rv && idx) {
        rv = split_path(idx, &s->uidx, &s->nuidx, err);
    }
    return rv;
}

static int parse_replace(struct stage *s, const bson_iter_t *it, bool with, struct cairn_error *err)
{
    s->type = ST_REPLACE;
    if (with) {
        return qry_expr_compile(bson_iter_value((bson_iter_t *)it), &s->expr, err);
    }
    bson_iter_t oi;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &oi)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootSpecNotObject,
                                 "expected an object as specification for $replaceRoot stage, "
                                 "got %s",
                                 pl_iter_type_name(it));
    }
    while (bson_iter_next(&oi)) {
        if (strcmp(bson_iter_key(&oi), "newRoot") != 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootUnknownOption,
                                     "unrecognized option to $replaceRoot stage: %s",
                                     bson_iter_key(&oi));
        }
        qry_expr_free(s->expr);
        s->expr = NULL;
        int rv = qry_expr_compile(bson_iter_value(&oi), &s->expr, err);
        if (rv) {
            return rv;
        }
    }
    if (!s->expr) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_ReplaceRootMissingNewRoot,
                                 "no newRoot specified for the $replaceRoot stage");
    }
    return 0;
}

static const char *const unsupported[] = {
    "$lookup",
    "$out",
    "$merge",
    "$facet",
    "$bucket",
    "$bucketAuto",
    "$sample",
    "$graphLookup",
    "$geoNear",
    "$indexStats",
    "$collStats",
    "$currentOp",
    "$listSessions",
    "$listLocalSessions",
    "$redact",
    "$unionWith",
    "$densify",
    "$fill",
    "$setWindowFields",
    "$documents",
    "$changeStream",
    "$search",
    "$searchMeta",
    "$planCacheStats",
    "$listSearchIndexes",
    "$changeStreamSplitLargeEvent",
    "$shardedDataDistribution",
    "$queryStats",
};

/* Appends a zeroed stage to p. */
static struct stage *add_stage(struct qry_pipeline *p, size_t *cap)
{
    if (p->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct stage *ns = realloc(p->st, nc * sizeof *ns);
        if (!ns) {
            return NULL;
        }
        p->st = ns;
        *cap = nc;
    }
    struct stage *s = &p->st[p->n++];
    memset(s, 0, sizeof *s);
    return s;
}

/* $sortByCount: expr -> {$group: {_id: expr, count: {$sum: 1}}}, {$sort: {count: -1}} */
static int parse_sort_by_count(struct qry_pipeline *p,
                               size_t *cap,
                               const bson_iter_t *it,
                               struct cairn_error *err)
{
    bool ok = (BSON_ITER_HOLDS_UTF8(it) && bson_iter_utf8(it, NULL)[0] == '$') ||
              BSON_ITER_HOLDS_DOCUMENT(it);
    if (!ok) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_SortByCountBadField,
                                 "the sortByCount field must be specified as a string or an "
                                 "object expression starting with '$'");
    }
    bson_t g = BSON_INITIALIZER, sort = BSON_INITIALIZER, cnt;
    bson_append_value(&g, "_id", 3, bson_iter_value((bson_iter_t *)it));
    bson_append_document_begin(&g, "count", 5, &cnt);
    bson_append_int32(&cnt, "$sum", 4, 1);
    bson_append_document_end(&g, &cnt);
    bson_append_int32(&sort, "count", 5, -1);
    struct stage *s = add_stage(p, cap);
    int rv = s ? pl_parse_group_body(s, &g, err) : pl_oom(err);
    if (!rv) {
        s = add_stage(p, cap);
        rv = s ? parse_sort_doc(s, &sort, err) : pl_oom(err);
    }
    bson_destroy(&g);
    bson_destroy(&sort);
    return rv;
}

static int parse_stage(struct qry_pipeline *p,
                       size_t *cap,
                       const char *name,
                       const bson_iter_t *it,
                       struct cairn_error *err)
{
    if (strcmp(name, "$sortByCount") == 0) {
        return parse_sort_by_count(p, cap, it, err);
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        if (strcmp(name, unsupported[i]) == 0) {
            return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                                     "%s is not supported yet", name);
        }
    }
    struct stage *s = add_stage(p, cap);
    if (!s) {
        return pl_oom(err);
    }
    if (strcmp(name, "$match") == 0) {
        return parse_match(s, it, err);
    }
    if (strcmp(name, "$group") == 0) {
        return pl_parse_group(s, it, err);
    }
    if (strcmp(name, "$count") == 0) {
        return parse_count(s, it, err);
    }
    if (strcmp(name, "$project") == 0) {
        return pl_parse_project(s, it, false, err);
    }
    if (strcmp(name, "$addFields") == 0 || strcmp(name, "$set") == 0) {
        return pl_parse_project(s, it, true, err);
    }
    if (strcmp(name, "$unset") == 0) {
        return pl_parse_unset(s, it, err);
    }
    if (strcmp(name, "$sort") == 0) {
        return parse_sort(s, it, err);
    }
    if (strcmp(name, "$skip") == 0) {
        return parse_skip_limit(s, it, false, err);
    }
    if (strcmp(name, "$limit") == 0) {
        return parse_skip_limit(s, it, true, err);
    }
    if (strcmp(name, "$unwind") == 0) {
        return parse_unwind(s, it, err);
    }
    if (strcmp(name, "$replaceRoot") == 0) {
        return parse_replace(s, it, false, err);
    }
    if (strcmp(name, "$replaceWith") == 0) {
        return parse_replace(s, it, true, err);
    }
    p->n--; /* nothing was parsed into it */
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_StageUnknown,
                             "Unrecognized pipeline stage name: '%s'", name);
}

int qry_pipeline_compile(const bson_t *stages, struct qry_pipeline **out, struct cairn_error *err)
{
    bson_iter_t it;
    size_t cap = 0;
    int rv = 0;
    *out = NULL;
    struct qry_pipeline *p = calloc(1, sizeof *p);
    if (p != NULL) {
        p->result_limit = QRY_PIPELINE_RESULT_LIMIT;
    }
    if (!p) {
        return pl_oom(err);
    }
    if (!bson_iter_init(&it, stages)) {
        free(p);
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_TypeMismatch, "malformed pipeline");
    }
    size_t raw = 0;
    while (bson_iter_next(&it)) {
        raw++;
    }
    if (raw > PIPELINE_MAX_STAGES) {
        free(p);
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_PipelineTooLong,
                                 "Pipeline length must be no longer than %d stages.",
                                 PIPELINE_MAX_STAGES);
    }
    bson_iter_init(&it, stages);
    while (!rv && bson_iter_next(&it)) {
        bson_iter_t si;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &si)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                   "Each element of the 'pipeline' array must be an object");
            break;
        }
        bson_iter_t cnt = si;
        int nkeys = 0;
        while (bson_iter_next(&cnt)) {
            nkeys++;
        }
        if (nkeys != 1 || !bson_iter_next(&si)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_StageNotOneField,
                                   "A pipeline stage specification object must contain exactly "
                                   "one field.");
            break;
        }
        bool first = p->n == 0;
        rv = parse_stage(p, &cap, bson_iter_key(&si), &si, err);
        if (!rv && first && p->n > 0 && p->st[0].type == ST_MATCH) {
            bson_t f;
            pl_iter_doc(&si, &f);
            p->leading_match = bson_copy(&f);
            if (!p->leading_match) {
                rv = pl_oom(err);
            }
        }
        size_t at = p->n - 1;
        if (!rv && p->n > 0 && p->st[at].type == ST_SORT && p->leading_sort == NULL &&
            (at == 0 || (at == 1 && p->st[0].type == ST_MATCH))) {
            bson_t f;
            pl_iter_doc(&si, &f);
            p->leading_sort = bson_copy(&f);
            p->leading_sort_at = at;
            if (!p->leading_sort) {
                rv = pl_oom(err);
            }
        }
    }
    if (rv) {
        qry_pipeline_free(p);
        return rv;
    }
    for (size_t i = 0; i + 1 < p->n; i++) {
        /* $sort then $limit k (or $skip s, $limit k): the sort need only
         * keep its k (s + k) first. */
        const struct stage *nx = &p->st[i + 1];
        if (p->st[i].type != ST_SORT) {
            continue;
        }
        if (nx->type == ST_LIMIT && nx->n > 0) {
            p->st[i].topk = (uint64_t)nx->n;
        } else if (nx->type == ST_SKIP && i + 2 < p->n && p->st[i + 2].type == ST_LIMIT &&
                   p->st[i + 2].n > 0 && nx->n <= INT64_MAX - p->st[i + 2].n) {
            p->st[i].topk = (uint64_t)(nx->n + p->st[i + 2].n);
        }
    }
    bool blocked = false;
    for (size_t i = 0; i < p->n; i++) {
        p->st[i].stream_prefix = !blocked;
        if (p->st[i].type == ST_GROUP || p->st[i].type == ST_SORT || p->st[i].type == ST_COUNT) {
            blocked = true;
        }
    }
    *out = p;
    return 0;
}
