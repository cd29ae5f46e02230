/*
 * pipeline_group.c: $group in the aggregation pipeline: parsing the stage
 * (also the $group that $sortByCount expands to), the accumulators ($sum
 * $avg $min $max $push $first $last $addToSet $count), the group table of
 * a run, and the groups' output documents.
 *
 * $group keys are hashed with qry_value_hash (valueset.c), consistent
 * with qry_cmp equality (1, 1.0 and NumberLong(1) share a group), and
 * kept in a chained hash table; groups are emitted in order of first
 * appearance. $addToSet looks its values up in a qry_valueset.
 */
#include <math.h>
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

void pl_gtab_free(struct gtab *t, size_t nacc)
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
    memset(t, 0, sizeof *t);
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
    if (!rv && t->bytes > STAGE_MEM_LIMIT) {
        rv = cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_QueryExceededMemoryLimitNoDiskUseAllowed,
                               t->disk_use ? "Exceeded memory limit for $group; allowDiskUse "
                                             "cannot lift it because Cairn does not spill $group "
                                             "to disk."
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
