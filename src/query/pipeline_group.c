/*
 * pipeline_group.c: $group in the aggregation pipeline: parsing the stage
 * (also the $group that $sortByCount expands to), the accumulators ($sum
 * $avg $min $max $push $first $last $addToSet $count), the group table of
 * a run, and the groups' output documents.
 *
 * $group keys are hashed with qry_value_hash (valueset.c), consistent
 * with qry_cmp equality (1, 1.0 and NumberLong(1) share a group), and
 * kept in a chained hash table; groups are emitted in order of first
 * appearance. $addToSet looks its values up in a qry_valueset. Past
 * qry_group_mem_limit, with allowDiskUse, the table is spilled
 * (pipeline_groupspill.c); a group's partial state is then written and
 * merged back with pl_group_state_append / pl_group_state_merge.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "query/expr.h"
#include "query/pipeline_int.h"
#include "query/query.h"
#include "query/query_int.h"
#include "query/valueset.h"

/* ---- parsing $group ------------------------------------------------------ */

enum acc_op {
    ACC_SUM,
    ACC_AVG,
    ACC_MIN,
    ACC_MAX,
    ACC_PUSH,
    ACC_FIRST,
    ACC_LAST,
    ACC_ADDTOSET,
    ACC_COUNT,
};

static const struct
{
    const char *name;
    int op;
} accs[] = {
    {"$sum", ACC_SUM},   {"$avg", ACC_AVG},           {"$min", ACC_MIN},
    {"$max", ACC_MAX},   {"$push", ACC_PUSH},         {"$first", ACC_FIRST},
    {"$last", ACC_LAST}, {"$addToSet", ACC_ADDTOSET}, {"$count", ACC_COUNT},
};

int pl_parse_group_body(struct stage *s, const bson_t *spec, struct cairn_error *err)
{
    bson_iter_t it;
    int rv;
    bool have_id = false;
    s->type = ST_GROUP;
    if (!bson_iter_init(&it, spec)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                 "malformed $group specification");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0) {
            if (have_id) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupIdTwice,
                                         "a group's _id may only be specified once");
            }
            have_id = true;
            rv = qry_expr_compile(bson_iter_value(&it), &s->expr, err);
            if (rv) {
                return rv;
            }
            continue;
        }
        if (k[0] == '$') {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldDollarPrefix,
                                     "The field name '%s' cannot be an operator name", k);
        }
        if (strchr(k, '.')) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldDot,
                                     "The field name '%s' cannot contain '.'", k);
        }
        for (size_t i = 0; i < s->nacc; i++) {
            if (strcmp(s->accs[i].name, k) == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupDuplicateField,
                                         "duplicate field name: %s", k);
            }
        }
        bson_iter_t ai;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldNotAccumulator,
                                     "The field '%s' must be an accumulator object", k);
        }
        bson_iter_t c2 = ai;
        int cnt = 0;
        while (bson_iter_next(&c2)) {
            cnt++;
        }
        if (cnt != 1 || !bson_iter_next(&ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupFieldAccumulatorCount,
                                     "The field '%s' must specify one accumulator", k);
        }
        const char *an = bson_iter_key(&ai);
        int op = -1;
        for (size_t i = 0; i < sizeof accs / sizeof accs[0]; i++) {
            if (strcmp(accs[i].name, an) == 0) {
                op = accs[i].op;
            }
        }
        if (op < 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupUnknownAccumulator,
                                     "unknown group operator '%s'", an);
        }
        struct gacc *na = realloc(s->accs, (s->nacc + 1) * sizeof *na);
        if (!na) {
            return pl_oom(err);
        }
        s->accs = na;
        struct gacc *a = &na[s->nacc++];
        a->name = bson_strdup(k);
        a->op = op;
        a->expr = NULL;
        if (op == ACC_COUNT) {
            bson_t empty;
            if (!pl_iter_doc(&ai, &empty) || !bson_empty(&empty)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "$count takes no arguments, i.e. $count:{}");
            }
            continue;
        }
        if (BSON_ITER_HOLDS_ARRAY(&ai)) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_AccumulatorNotUnary,
                                     "The %s accumulator is a unary operator", an);
        }
        rv = qry_expr_compile(bson_iter_value(&ai), &a->expr, err);
        if (rv) {
            return rv;
        }
    }
    if (!have_id) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupMissingId,
                                 "a group specification must include an _id");
    }
    return 0;
}

int pl_parse_group(struct stage *s, const bson_iter_t *it, struct cairn_error *err)
{
    bson_t spec;
    if (!pl_iter_doc(it, &spec)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_LOC_GroupSpecNotObject,
                                 "a group's fields must be specified in an object");
    }
    return pl_parse_group_body(s, &spec, err);
}

/* ---- group state ------------------------------------------------------------ */

static atomic_size_t group_mem_limit = QRY_GROUP_MEM_DEFAULT;

size_t qry_group_mem_limit(void)
{
    return atomic_load(&group_mem_limit);
}

void qry_set_group_mem_limit(size_t bytes)
{
    atomic_store(&group_mem_limit, bytes);
}

struct accstate
{
    struct qry_numsum sum;
    int64_t cnt;
    bson_value_t v; /* min/max/first/last; EOD = none/missing */
    bool has;
    bson_value_t *vals; /* push/addToSet (owned) */
    size_t nv, cap;
    struct qry_valueset seen; /* addToSet: views of vals, for O(1) lookups */
};

static void accstate_clear(struct accstate *a)
{
    if (a->v.value_type != BSON_TYPE_EOD) {
        bson_value_destroy(&a->v);
    }
    for (size_t i = 0; i < a->nv; i++) {
        bson_value_destroy(&a->vals[i]);
    }
    free(a->vals);
    qry_valueset_fini(&a->seen);
}

void pl_gtab_clear_groups(struct gtab *t, size_t nacc)
{
    for (size_t i = 0; i < t->n; i++) {
        struct grp *g = &t->g[i];
        if (g->key.value_type != BSON_TYPE_EOD) {
            bson_value_destroy(&g->key);
        }
        if (g->st) {
            for (size_t j = 0; j < nacc; j++) {
                accstate_clear(&g->st[j]);
            }
            free(g->st);
        }
    }
    free(t->g);
    free(t->buckets);
    t->g = NULL;
    t->buckets = NULL;
    t->n = t->cap = t->nb = 0;
    t->bytes = 0;
}

void pl_gtab_free(struct gtab *t, size_t nacc)
{
    pl_gtab_clear_groups(t, nacc);
    for (size_t i = 0; i < t->nruns; i++) {
        qry_run_free(t->runs[i]);
    }
    qry_spill_free(t->spill);
    free(t->runs);
    memset(t, 0, sizeof *t);
}

struct accstate *pl_accstates_new(const struct stage *s)
{
    return calloc(s->nacc ? s->nacc : 1, sizeof(struct accstate));
}

void pl_accstates_free(const struct stage *s, struct accstate *st)
{
    if (st == NULL) {
        return;
    }
    for (size_t j = 0; j < s->nacc; j++) {
        accstate_clear(&st[j]);
    }
    free(st);
}

static size_t value_bytes(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY:
            return sizeof *v + v->value.v_doc.data_len;
        case BSON_TYPE_UTF8:
            return sizeof *v + v->value.v_utf8.len;
        case BSON_TYPE_BINARY:
            return sizeof *v + v->value.v_binary.data_len;
        default:
            return sizeof *v;
    }
}

static int gtab_rehash(struct gtab *t)
{
    size_t nb = t->nb ? t->nb * 2 : 64;
    size_t *b = calloc(nb, sizeof *b);
    if (!b) {
        return CAIRN_ENOMEM;
    }
    free(t->buckets);
    t->buckets = b;
    t->nb = nb;
    for (size_t i = 0; i < t->n; i++) {
        size_t slot = t->g[i].hash & (nb - 1);
        t->g[i].next = b[slot];
        b[slot] = i + 1;
    }
    return 0;
}

/* Finds or creates the group for `key` (taking ownership of it). */
static int gtab_get(struct gtab *t,
                    bson_value_t *key,
                    size_t nacc,
                    struct grp **out,
                    struct cairn_error *err)
{
    uint64_t h = qry_value_hash(key);
    if (t->nb) {
        for (size_t i = t->buckets[h & (t->nb - 1)]; i; i = t->g[i - 1].next) {
            struct grp *g = &t->g[i - 1];
            if (g->hash == h && qry_cmp(&g->key, key) == 0) {
                bson_value_destroy(key);
                *out = g;
                return 0;
            }
        }
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        struct grp *ng = realloc(t->g, nc * sizeof *ng);
        if (!ng) {
            bson_value_destroy(key);
            return pl_oom(err);
        }
        t->g = ng;
        t->cap = nc;
    }
    struct grp *g = &t->g[t->n];
    memset(g, 0, sizeof *g);
    g->st = calloc(nacc ? nacc : 1, sizeof *g->st);
    if (!g->st) {
        bson_value_destroy(key);
        return pl_oom(err);
    }
    g->key = *key;
    g->hash = h;
    t->n++;
    t->bytes += sizeof *g + nacc * sizeof *g->st + value_bytes(key);
    if (t->n * 4 > t->nb * 3) {
        if (gtab_rehash(t)) {
            return pl_oom(err);
        }
    } else {
        size_t slot = h & (t->nb - 1);
        g->next = t->buckets[slot];
        t->buckets[slot] = t->n;
    }
    *out = g;
    return 0;
}

static int vals_push(struct accstate *a, bson_value_t *v, struct cairn_error *err)
{
    if (a->nv == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 4;
        bson_value_t *nv = realloc(a->vals, nc * sizeof *nv);
        if (!nv) {
            bson_value_destroy(v);
            return pl_oom(err);
        }
        a->vals = nv;
        a->cap = nc;
    }
    a->vals[a->nv++] = *v;
    return 0;
}

/* Feeds value `v` (owned; consumed) to accumulator state `a`. */
static int acc_update(int op, struct accstate *a, bson_value_t *v, struct cairn_error *err)
{
    int rv = 0;
    bool keep = false;
    bool nullish = v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
                   v->value_type == BSON_TYPE_UNDEFINED;
    switch (op) {
        case ACC_SUM:
        case ACC_AVG:
            if (qry_is_number(v->value_type)) {
                rv = qry_numsum_add(&a->sum, v, err);
                a->cnt++;
            }
            break;
        case ACC_MIN:
        case ACC_MAX:
            if (!nullish) {
                int c = a->has ? qry_cmp(v, &a->v) : 0;
                if (!a->has || (op == ACC_MIN ? c < 0 : c > 0)) {
                    if (a->has) {
                        bson_value_destroy(&a->v);
                    }
                    a->v = *v;
                    a->has = true;
                    keep = true;
                }
            }
            break;
        case ACC_FIRST:
            if (!a->has) {
                a->v = *v;
                a->has = true;
                keep = true;
            }
            break;
        case ACC_LAST:
            if (a->v.value_type != BSON_TYPE_EOD) {
                bson_value_destroy(&a->v);
            }
            a->v = *v;
            a->has = true;
            keep = true;
            break;
        case ACC_ADDTOSET:
            if (v->value_type != BSON_TYPE_EOD) {
                if (qry_valueset_has(&a->seen, v)) {
                    goto done;
                }
                keep = true;
                rv = vals_push(a, v, err);
                if (!rv && qry_valueset_add(&a->seen, &a->vals[a->nv - 1], NULL) != 0) {
                    rv = pl_oom(err);
                }
            }
            break;
        case ACC_PUSH:
            if (v->value_type != BSON_TYPE_EOD) {
                keep = true;
                rv = vals_push(a, v, err);
            }
            break;
        default: /* ACC_COUNT */
        {
            bson_value_t one = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
            rv = qry_numsum_add(&a->sum, &one, err);
            break;
        }
    }
done:
    if (!keep && v->value_type != BSON_TYPE_EOD) {
        bson_value_destroy(v);
    }
    return rv;
}

int pl_group_add(const struct stage *s, struct gtab *t, const bson_t *doc, struct cairn_error *err)
{
    bson_value_t key;
    struct grp *g = NULL;
    int rv = qry_expr_eval(s->expr, doc, &key, err);
    if (rv) {
        return rv;
    }
    if (key.value_type == BSON_TYPE_EOD) {
        key.value_type = BSON_TYPE_NULL;
    }
    rv = gtab_get(t, &key, s->nacc, &g, err);
    for (size_t i = 0; !rv && i < s->nacc; i++) {
        bson_value_t v = {.value_type = BSON_TYPE_EOD};
        if (s->accs[i].expr) {
            rv = qry_expr_eval(s->accs[i].expr, doc, &v, err);
        }
        if (!rv) {
            if (s->accs[i].op == ACC_PUSH || s->accs[i].op == ACC_ADDTOSET) {
                t->bytes += value_bytes(&v);
            }
            rv = acc_update(s->accs[i].op, &g->st[i], &v, err);
        }
    }
    if (!rv && t->bytes > qry_group_mem_limit()) {
        if (t->disk_use && qry_spill_enabled()) {
            return pl_group_spill(s, t, err);
        }
        rv = cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                               t->disk_use ? "Exceeded memory limit for $group, and this server "
                                             "has no directory to spill to."
                                           : "Exceeded memory limit for $group, but didn't allow "
                                             "external sort. Pass allowDiskUse:true to opt in.");
    }
    return rv;
}

static void append_vals(bson_t *out, const char *name, const struct accstate *a)
{
    bson_t arr;
    bson_append_array_begin(out, name, -1, &arr);
    for (size_t i = 0; i < a->nv; i++) {
        char buf[16];
        const char *key;
        size_t kl = bson_uint32_to_string((uint32_t)i, &key, buf, sizeof buf);
        bson_append_value(&arr, key, (int)kl, &a->vals[i]);
    }
    bson_append_array_end(out, &arr);
}

void pl_group_output(const struct stage *s, const struct grp *g, bson_t *out)
{
    bson_append_value(out, "_id", 3, &g->key);
    for (size_t i = 0; i < s->nacc; i++) {
        const struct accstate *a = &g->st[i];
        const char *name = s->accs[i].name;
        bson_value_t v;
        switch (s->accs[i].op) {
            case ACC_SUM:
            case ACC_COUNT:
                qry_numsum_value(&a->sum, &v);
                bson_append_value(out, name, -1, &v);
                break;
            case ACC_AVG:
                if (a->cnt == 0) {
                    bson_append_null(out, name, -1);
                } else {
                    bson_append_double(out, name, -1, qry_numsum_double(&a->sum) / (double)a->cnt);
                }
                break;
            case ACC_PUSH:
            case ACC_ADDTOSET:
                append_vals(out, name, a);
                break;
            default:
                if (a->v.value_type == BSON_TYPE_EOD) {
                    bson_append_null(out, name, -1);
                } else {
                    bson_append_value(out, name, -1, &a->v);
                }
                break;
        }
    }
}

/* ---- partial states (spilling) ------------------------------------------ */

static void append_partial(bson_t *out, const char *name, int op, const struct accstate *a)
{
    bson_t d;
    bson_append_document_begin(out, name, -1, &d);
    switch (op) {
        case ACC_SUM:
        case ACC_AVG:
        case ACC_COUNT:
            bson_append_int32(&d, "t", 1, a->sum.type);
            bson_append_int64(&d, "i", 1, a->sum.i);
            bson_append_double(&d, "d", 1, a->sum.d);
            bson_append_int64(&d, "c", 1, a->cnt);
            break;
        case ACC_PUSH:
        case ACC_ADDTOSET:
            append_vals(&d, "a", a);
            break;
        default:
            bson_append_bool(&d, "h", 1, a->has);
            if (a->v.value_type != BSON_TYPE_EOD) {
                bson_append_value(&d, "v", 1, &a->v);
            }
            break;
    }
    bson_append_document_end(out, &d);
}

void pl_group_state_append(const struct stage *s, const struct grp *g, bson_t *out)
{
    bson_append_value(out, "k", 1, &g->key);
    for (size_t i = 0; i < s->nacc; i++) {
        char buf[16];
        const char *key;
        bson_uint32_to_string((uint32_t)i, &key, buf, sizeof buf);
        append_partial(out, key, s->accs[i].op, &g->st[i]);
    }
}

static int bad_run(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_EIO, MONGO_InternalError,
                             "$group read back a malformed spilled group");
}

/* Feeds a copy of the value at `it` to `a` (acc_update consumes it). */
static int feed_copy(int op, struct accstate *a, const bson_iter_t *it, struct cairn_error *err)
{
    bson_value_t v;
    bson_value_copy(bson_iter_value((bson_iter_t *)it), &v);
    return acc_update(op, a, &v, err);
}

static int merge_one(int op, struct accstate *a, bson_iter_t *d, struct cairn_error *err)
{
    bson_iter_t f;
    int rv = 0;
    switch (op) {
        case ACC_SUM:
        case ACC_AVG:
        case ACC_COUNT: {
            struct qry_numsum part = {0};
            while (bson_iter_next(d)) {
                const char *k = bson_iter_key(d);
                if (strcmp(k, "t") == 0) {
                    part.type = bson_iter_int32(d);
                } else if (strcmp(k, "i") == 0) {
                    part.i = bson_iter_int64(d);
                } else if (strcmp(k, "d") == 0) {
                    part.d = bson_iter_double(d);
                } else if (strcmp(k, "c") == 0) {
                    a->cnt += bson_iter_int64(d);
                }
            }
            /* The partial sum added as a sum, not as a value: an int32 sum
             * whose partial total left the int32 range is still an int32
             * sum (its total may fit again), as in memory. */
            if (part.type < 0 || part.type > 2) {
                return bad_run(err);
            }
            qry_numsum_merge(&a->sum, &part);
            return 0;
        }
        case ACC_PUSH:
        case ACC_ADDTOSET:
            if (!bson_iter_find(d, "a") || !BSON_ITER_HOLDS_ARRAY(d) || !bson_iter_recurse(d, &f)) {
                return bad_run(err);
            }
            while (!rv && bson_iter_next(&f)) {
                rv = feed_copy(op, a, &f, err);
            }
            return rv;
        default: {
            bool has = false;
            bool got_v = false;
            bson_value_t v = {.value_type = BSON_TYPE_EOD};
            while (bson_iter_next(d)) {
                if (strcmp(bson_iter_key(d), "h") == 0) {
                    has = bson_iter_as_bool(d);
                } else if (strcmp(bson_iter_key(d), "v") == 0) {
                    bson_value_copy(bson_iter_value(d), &v);
                    got_v = true;
                }
            }
            if (!has || (op == ACC_FIRST && a->has) ||
                ((op == ACC_MIN || op == ACC_MAX) && !got_v)) {
                if (got_v) {
                    bson_value_destroy(&v);
                }
                return 0;
            }
            /* min/max compare; first (none yet) and last (later wins) take
             * it, a missing value included. */
            return acc_update(op, a, &v, err);
        }
    }
}

int pl_group_state_merge(const struct stage *s,
                         struct accstate *st,
                         const bson_t *doc,
                         struct cairn_error *err)
{
    bson_iter_t it;
    int rv = 0;
    if (!bson_iter_init(&it, doc) || !bson_iter_next(&it) || strcmp(bson_iter_key(&it), "k") != 0) {
        return bad_run(err);
    }
    for (size_t i = 0; !rv && i < s->nacc; i++) {
        bson_iter_t d;
        if (!bson_iter_next(&it) || !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &d)) {
            return bad_run(err);
        }
        rv = merge_one(s->accs[i].op, &st[i], &d, err);
    }
    return rv;
}
