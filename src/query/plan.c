/*
 * plan.c: the query planner's choice of an index and of the key intervals
 * to scan for a filter. Pure logic over the filter and the compiled index
 * specs; scanning the intervals belongs to txn (txn/ixscan.c).
 *
 * Predicates used (top-level fields of the filter, or of a top-level $and):
 * equality to a value that is not an array, regex or null ({f: v}, $eq),
 * $in of such values, and $gt/$gte/$lt/$lte to a scalar that is not null.
 * An index qualifies when its leading fields have equality or $in
 * predicates, optionally followed by one range field; the most such fields
 * wins (ties: fewer index fields, then the earlier index). Sparse, partial
 * and hidden indexes are never chosen; qry_plan_one plans a given (hinted)
 * index whatever its kind, over all of it when the filter has no predicate
 * on its first field.
 *
 * Invariant: the intervals cover every key a matching document has, so
 * scanning them and filtering the fetched documents with the full matcher
 * returns exactly the matches. Hence:
 *  - point values cover all keys whose field encodes to them (the encoding
 *    is prefix-free, so "starts with the encoding" selects one value);
 *  - on a multikey index (or when the caller does not know), a range uses
 *    one side only (plus the value's type bracket, as mongod's comparisons
 *    do), because a multikey document may match a two-sided range through
 *    two different elements, neither inside it;
 *  - on a descending field the keys hold the complemented encoding (still
 *    prefix-free, so the order is exactly reversed): a range's bounds swap
 *    sides and the type bracket of rank r is the keys starting with ~r.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "query/query_int.h"

/* Most point prefixes a plan expands to ($in on several fields). */
#define MAX_POINTS 4096

/* The usable predicates on one field. */
struct fpred
{
    const char *path;
    /* Values are shallow copies (their data stays in the filter): a
     * bson_iter_value pointer dies with its iterator. */
    const bson_value_t *eq; /* equality (or NULL): points at eq_v */
    bson_value_t eq_v;
    bson_t in; /* $in values, when has_in */
    bool has_in;
    const bson_value_t *lo, *hi; /* range sides (scanned inclusively): lo_v, hi_v */
    bson_value_t lo_v, hi_v;
};

struct qry_plan
{
    int ix_pos;     /* -1: collection scan */
    bool two_sided; /* the index is not multikey: ranges use both sides */
    struct cairn_buf buf;
    size_t *lo_off, *lo_len, *hi_off, *hi_len;
    size_t n, cap;
    char *bounds; /* JSON-ish description for explain */
};

static bool usable_value(const bson_value_t *v)
{
    switch (v->value_type) {
        case BSON_TYPE_ARRAY:
        case BSON_TYPE_REGEX:
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED:
        case BSON_TYPE_MINKEY:
        case BSON_TYPE_MAXKEY:
        case BSON_TYPE_EOD:
            return false;
        default:
            return true;
    }
}

static bool is_operator_doc(const bson_value_t *v)
{
    bson_t d;
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_init(&it, &d) || !bson_iter_next(&it)) {
        return false;
    }
    return bson_iter_key(&it)[0] == '$';
}

static struct fpred *pred_for(struct fpred *p, size_t *n, size_t cap, const char *path)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(p[i].path, path) == 0) {
            return &p[i];
        }
    }
    if (*n == cap) {
        return NULL;
    }
    memset(&p[*n], 0, sizeof p[*n]);
    p[*n].path = path;
    return &p[(*n)++];
}

/* Collects usable predicates from `filter` (recursing into $and). */
static void collect_preds(const bson_t *filter, struct fpred *p, size_t *n, size_t cap, int depth)
{
    bson_iter_t it;
    if (depth > 4 || !bson_iter_init(&it, filter)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$and") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            bson_iter_recurse(&it, &ai);
            while (bson_iter_next(&ai)) {
                const bson_value_t *e = bson_iter_value(&ai);
                bson_t sub;
                if (e->value_type == BSON_TYPE_DOCUMENT &&
                    bson_init_static(&sub, e->value.v_doc.data, e->value.v_doc.data_len)) {
                    collect_preds(&sub, p, n, cap, depth + 1);
                }
            }
            continue;
        }
        if (k[0] == '$') {
            continue;
        }
        if (!is_operator_doc(v)) {
            struct fpred *f;
            if (usable_value(v) && (f = pred_for(p, n, cap, k)) != NULL) {
                f->eq_v = *v;
                f->eq = &f->eq_v;
            }
            continue;
        }
        bson_iter_t oi;
        bson_iter_recurse(&it, &oi);
        while (bson_iter_next(&oi)) {
            const char *op = bson_iter_key(&oi);
            const bson_value_t *ov = bson_iter_value(&oi);
            struct fpred *f = NULL;
            if (strcmp(op, "$eq") == 0 && usable_value(ov)) {
                if ((f = pred_for(p, n, cap, k)) != NULL) {
                    f->eq_v = *ov;
                    f->eq = &f->eq_v;
                }
            } else if (strcmp(op, "$in") == 0 && ov->value_type == BSON_TYPE_ARRAY) {
                bson_t arr;
                bson_iter_t ai;
                bool ok = bson_init_static(&arr, ov->value.v_doc.data, ov->value.v_doc.data_len) &&
                          bson_iter_init(&ai, &arr) && bson_count_keys(&arr) > 0;
                while (ok && bson_iter_next(&ai)) {
                    ok = usable_value(bson_iter_value(&ai));
                }
                if (ok && (f = pred_for(p, n, cap, k)) != NULL && !f->has_in) {
                    f->has_in = true;
                    bson_init_static(&f->in, ov->value.v_doc.data, ov->value.v_doc.data_len);
                }
            } else if ((strcmp(op, "$gt") == 0 || strcmp(op, "$gte") == 0) && usable_value(ov)) {
                if ((f = pred_for(p, n, cap, k)) != NULL) {
                    f->lo_v = *ov;
                    f->lo = &f->lo_v;
                }
            } else if ((strcmp(op, "$lt") == 0 || strcmp(op, "$lte") == 0) && usable_value(ov)) {
                if ((f = pred_for(p, n, cap, k)) != NULL) {
                    f->hi_v = *ov;
                    f->hi = &f->hi_v;
                }
            }
        }
    }
}

/* The smallest byte string above every string that starts with `b`:
 * drops trailing 0xFF bytes and increments the last; false when none
 * exists (all 0xFF: no upper bound). */
static bool prefix_successor(struct cairn_buf *b)
{
    while (b->len > 0 && b->data[b->len - 1] == 0xFF) {
        b->len--;
    }
    if (b->len == 0) {
        return false;
    }
    b->data[b->len - 1]++;
    return true;
}

static int plan_add(struct qry_plan *p,
                    const uint8_t *lo,
                    size_t lo_len,
                    const uint8_t *hi,
                    size_t hi_len)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        size_t *a = realloc(p->lo_off, cap * sizeof *a);
        if (a == NULL) {
            return CAIRN_ENOMEM;
        }
        p->lo_off = a;
        if ((a = realloc(p->lo_len, cap * sizeof *a)) == NULL) {
            return CAIRN_ENOMEM;
        }
        p->lo_len = a;
        if ((a = realloc(p->hi_off, cap * sizeof *a)) == NULL) {
            return CAIRN_ENOMEM;
        }
        p->hi_off = a;
        if ((a = realloc(p->hi_len, cap * sizeof *a)) == NULL) {
            return CAIRN_ENOMEM;
        }
        p->hi_len = a;
        p->cap = cap;
    }
    p->lo_off[p->n] = p->buf.len;
    p->lo_len[p->n] = lo_len;
    if (cairn_buf_append(&p->buf, lo, lo_len) != 0) {
        return CAIRN_ENOMEM;
    }
    p->hi_off[p->n] = p->buf.len;
    p->hi_len[p->n] = hi_len;
    if (hi_len > 0 && cairn_buf_append(&p->buf, hi, hi_len) != 0) {
        return CAIRN_ENOMEM;
    }
    p->n++;
    return 0;
}

/* Encodes `v` for field direction `desc`. */
static int enc_field(const bson_value_t *v, bool desc, struct cairn_buf *out)
{
    size_t at = out->len;
    int rv = qry_key_encode_any(v, out, NULL);
    if (rv == 0 && desc) {
        for (size_t i = at; i < out->len; i++) {
            out->data[i] = (uint8_t)~out->data[i];
        }
    }
    return rv;
}

/* Appends the intervals for point prefixes over fields [0, n_pts) (each
 * with its values) and an optional range on field n_pts. */
static int expand(struct qry_plan *p,
                  const struct fpred *const *fp,
                  const bool *desc,
                  size_t n_pts,
                  const struct fpred *range,
                  size_t level,
                  struct cairn_buf *prefix)
{
    int rv = 0;
    if (level == n_pts) {
        struct cairn_buf lo = CAIRN_BUF_INIT, hi = CAIRN_BUF_INIT;
        bool has_hi;
        rv = cairn_buf_append(&lo, prefix->data, prefix->len);
        rv = rv ? rv : cairn_buf_append(&hi, prefix->data, prefix->len);
        bool rdesc = range != NULL && desc[n_pts];
        bool two_sided =
            range != NULL && p->two_sided && range->lo != NULL && range->hi != NULL &&
            qry_type_rank(range->lo->value_type) == qry_type_rank(range->hi->value_type);
        if (rv == 0 && range == NULL) {
            has_hi = prefix_successor(&hi);
        } else if (rv == 0 && !rdesc) {
            /* One side (see the invariant) unless the index is not
             * multikey; the type bracket bounds the other. */
            const bson_value_t *v = range->lo != NULL ? range->lo : range->hi;
            uint8_t rank = (uint8_t)qry_type_rank(v->value_type);
            if (two_sided) {
                rv = enc_field(range->lo, false, &lo);
                rv = rv ? rv : enc_field(range->hi, false, &hi);
                if (rv == 0) {
                    prefix_successor(&hi); /* inclusive, as below */
                }
            } else if (range->lo != NULL) {
                /* Inclusive even for $gt: decimals close to the bound share
                 * its encoding; the matcher drops what is not above it. */
                rv = enc_field(range->lo, false, &lo);
                rv = rv ? rv : cairn_buf_push(&hi, (uint8_t)(rank + 1));
            } else {
                rv = cairn_buf_push(&lo, rank);
                rv = rv ? rv : enc_field(range->hi, false, &hi);
                if (rv == 0) {
                    prefix_successor(&hi); /* inclusive, as above */
                }
            }
            has_hi = true;
        } else if (rv == 0) {
            /* A descending field: keys hold the complemented encoding, so
             * larger values come first and the type bracket of rank r is
             * the keys starting with ~r. Same inclusiveness as above. */
            const bson_value_t *v = range->lo != NULL ? range->lo : range->hi;
            uint8_t crank = (uint8_t) ~(uint8_t)qry_type_rank(v->value_type);
            if (two_sided) {
                rv = enc_field(range->hi, true, &lo);
                rv = rv ? rv : enc_field(range->lo, true, &hi);
                if (rv == 0) {
                    prefix_successor(&hi);
                }
            } else if (range->lo != NULL) {
                rv = cairn_buf_push(&lo, crank);
                rv = rv ? rv : enc_field(range->lo, true, &hi);
                if (rv == 0) {
                    prefix_successor(&hi);
                }
            } else {
                rv = enc_field(range->hi, true, &lo);
                rv = rv ? rv : cairn_buf_push(&hi, (uint8_t)(crank + 1));
            }
            has_hi = true;
        } else {
            has_hi = false;
        }
        if (rv == 0) {
            rv = plan_add(p, lo.data, lo.len, hi.data, has_hi ? hi.len : 0);
        }
        cairn_buf_free(&lo);
        cairn_buf_free(&hi);
        return rv;
    }
    const struct fpred *f = fp[level];
    size_t keep = prefix->len;
    if (f->eq != NULL) {
        rv = enc_field(f->eq, desc[level], prefix);
        rv = rv ? rv : expand(p, fp, desc, n_pts, range, level + 1, prefix);
        prefix->len = keep;
        return rv;
    }
    bson_iter_t it;
    bson_iter_init(&it, &f->in);
    while (rv == 0 && bson_iter_next(&it) && p->n < MAX_POINTS) {
        rv = enc_field(bson_iter_value(&it), desc[level], prefix);
        rv = rv ? rv : expand(p, fp, desc, n_pts, range, level + 1, prefix);
        prefix->len = keep;
    }
    return rv;
}

static int iv_cmp(const void *a, const void *b, void *arg)
{
    const struct qry_plan *p = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    size_t li = p->lo_len[i], lj = p->lo_len[j];
    int c = memcmp(p->buf.data + p->lo_off[i], p->buf.data + p->lo_off[j], li < lj ? li : lj);
    return c != 0 ? c : (li > lj) - (li < lj);
}

/* Fills p's intervals for index `ix` from the predicates (no predicate on
 * its first field: one interval over the whole index). two_sided: the index
 * is not multikey. Returns 0 or CAIRN_ENOMEM. */
static int build_intervals(struct qry_plan *p,
                           const struct fpred *preds,
                           size_t n_preds,
                           const struct qry_index *ix,
                           bool two_sided)
{
    const struct fpred *fp[QRY_INDEX_MAX_FIELDS];
    bool desc[QRY_INDEX_MAX_FIELDS];
    const struct fpred *range = NULL;
    size_t n_pts = 0;
    for (size_t f = 0; f < qry_index_n_fields(ix); f++) {
        const struct fpred *q = NULL;
        const char *path = qry_index_field(ix, f, &desc[f]);
        for (size_t k = 0; k < n_preds && q == NULL; k++) {
            if (strcmp(preds[k].path, path) == 0) {
                q = &preds[k];
            }
        }
        if (q == NULL) {
            break;
        }
        if (q->eq != NULL || q->has_in) {
            fp[n_pts++] = q;
            continue;
        }
        if (q->lo != NULL || q->hi != NULL) {
            range = q;
        }
        break;
    }
    struct cairn_buf prefix = CAIRN_BUF_INIT;
    p->two_sided = two_sided;
    int rv = expand(p, fp, desc, n_pts, range, 0, &prefix);
    cairn_buf_free(&prefix);
    if (rv == 0 && p->n >= MAX_POINTS) {
        /* Too many point prefixes: the expansion stopped short, so its
         * intervals might miss matches. The whole index instead. */
        p->n = 0;
        cairn_buf_reset(&p->buf);
        rv = plan_add(p, (const uint8_t *)"", 0, NULL, 0);
    }
    if (rv != 0) {
        return rv;
    }
    /* Sorted by lower bound ($in values in any order), so the scan visits
     * the index in order. */
    size_t *order = malloc((p->n + 1) * sizeof *order);
    if (order != NULL) {
        size_t *lo = malloc((p->n + 1) * sizeof *lo), *ll = malloc((p->n + 1) * sizeof *ll);
        size_t *ho = malloc((p->n + 1) * sizeof *ho), *hl = malloc((p->n + 1) * sizeof *hl);
        for (size_t i = 0; i < p->n; i++) {
            order[i] = i;
        }
        qsort_r(order, p->n, sizeof *order, iv_cmp, p);
        if (lo != NULL && ll != NULL && ho != NULL && hl != NULL) {
            for (size_t i = 0; i < p->n; i++) {
                lo[i] = p->lo_off[order[i]];
                ll[i] = p->lo_len[order[i]];
                ho[i] = p->hi_off[order[i]];
                hl[i] = p->hi_len[order[i]];
            }
            memcpy(p->lo_off, lo, p->n * sizeof *lo);
            memcpy(p->lo_len, ll, p->n * sizeof *ll);
            memcpy(p->hi_off, ho, p->n * sizeof *ho);
            memcpy(p->hi_len, hl, p->n * sizeof *hl);
        }
        free(lo);
        free(ll);
        free(ho);
        free(hl);
        free(order);
    }
    return 0;
}

int qry_plan_choose(const bson_t *filter,
                    const struct qry_index *const *ixs,
                    const bool *multikey,
                    size_t n_ix,
                    struct qry_plan **out,
                    struct cairn_error *err)
{
    struct fpred preds[QRY_INDEX_MAX_FIELDS];
    size_t n_preds = 0;
    struct qry_plan *p = calloc(1, sizeof *p);
    int best = -1;
    size_t best_score = 0, best_fields = 0;
    int rv = 0;

    if (p == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    p->ix_pos = -1;
    *out = p;
    if (filter == NULL) {
        return 0;
    }
    collect_preds(filter, preds, &n_preds, QRY_INDEX_MAX_FIELDS, 0);
    for (size_t i = 0; i < n_ix; i++) {
        const struct qry_index *ix = ixs[i];
        size_t score = 0, nf;
        if (ix == NULL || qry_index_hidden(ix) || qry_index_sparse(ix) || qry_index_partial(ix)) {
            continue;
        }
        nf = qry_index_n_fields(ix);
        for (size_t f = 0; f < nf; f++) {
            const struct fpred *fp = NULL;
            for (size_t k = 0; k < n_preds && fp == NULL; k++) {
                if (strcmp(preds[k].path, qry_index_field(ix, f, NULL)) == 0) {
                    fp = &preds[k];
                }
            }
            if (fp == NULL) {
                break;
            }
            if (fp->eq != NULL || fp->has_in) {
                score += 2;
                continue;
            }
            if (fp->lo != NULL || fp->hi != NULL) {
                score += 1;
            }
            break;
        }
        if (score > best_score || (score == best_score && score > 0 && nf < best_fields)) {
            best = (int)i;
            best_score = score;
            best_fields = nf;
        }
    }
    if (best < 0) {
        return 0;
    }
    rv = build_intervals(p, preds, n_preds, ixs[best], multikey != NULL && !multikey[best]);
    if (rv != 0) {
        qry_plan_free(p);
        *out = NULL;
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory planning");
    }
    p->ix_pos = best;
    return 0;
}

int qry_plan_one(const bson_t *filter,
                 const struct qry_index *ix,
                 bool multikey,
                 struct qry_plan **out,
                 struct cairn_error *err)
{
    struct fpred preds[QRY_INDEX_MAX_FIELDS];
    size_t n_preds = 0;
    struct qry_plan *p = calloc(1, sizeof *p);

    *out = NULL;
    if (p == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    if (filter != NULL) {
        collect_preds(filter, preds, &n_preds, QRY_INDEX_MAX_FIELDS, 0);
    }
    if (build_intervals(p, preds, n_preds, ix, !multikey) != 0) {
        qry_plan_free(p);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory planning");
    }
    p->ix_pos = 0;
    *out = p;
    return 0;
}

int qry_plan_full(struct qry_plan **out, struct cairn_error *err)
{
    static const uint8_t first[1] = {0x01}; /* every entry (type ranks start at 1) */
    struct qry_plan *p = calloc(1, sizeof *p);

    *out = NULL;
    if (p == NULL || plan_add(p, first, sizeof first, NULL, 0) != 0) {
        qry_plan_free(p);
        return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
    }
    p->ix_pos = 0;
    *out = p;
    return 0;
}

int qry_plan_index(const struct qry_plan *p)
{
    return p->ix_pos;
}

size_t qry_plan_n_intervals(const struct qry_plan *p)
{
    return p->n;
}

void qry_plan_interval(const struct qry_plan *p,
                       size_t i,
                       const uint8_t **lo,
                       size_t *lo_len,
                       const uint8_t **hi,
                       size_t *hi_len)
{
    *lo = p->buf.data + p->lo_off[i];
    *lo_len = p->lo_len[i];
    *hi = p->buf.data + p->hi_off[i];
    *hi_len = p->hi_len[i];
}

void qry_plan_free(struct qry_plan *p)
{
    if (p == NULL) {
        return;
    }
    cairn_buf_free(&p->buf);
    free(p->lo_off);
    free(p->lo_len);
    free(p->hi_off);
    free(p->hi_len);
    free(p->bounds);
    free(p);
}
