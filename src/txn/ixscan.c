/*
 * ixscan.c: index scans. Given a filter, picks an index with the planner
 * (query/plan.c) and yields the documents whose entries lie in the plan's
 * key intervals, fetched through the read's snapshot, each document once.
 * The caller still applies the whole filter (the intervals are a superset).
 *
 * Invariants:
 *  1. An index is scanned only when its spec is ready in the read's own
 *     snapshot: then every document of the snapshot has all its entries
 *     there (entries commit with documents; the build committed before
 *     "ready").
 *  2. Ranges are bounded on both sides only on an index without the
 *     multikey marker in the snapshot (index.c writes it in the commit of
 *     the first document with several keys).
 *  3. A read that sees a transaction's staged writes never uses an index
 *     (staged entries are not merged): it scans the collection.
 *  4. An index gives a sort's order only when the sort is a prefix of its
 *     key pattern with the same directions and it is not multikey in the
 *     snapshot; its intervals are disjoint and visited in key order, so the
 *     documents come out sorted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "txn/txn_int.h"

#define SPEC_KEY txn_ix_spec_key

struct txn_ixscan
{
    struct txn_read *rd;
    uint64_t coll_id, ix_id;
    struct qry_plan *plan;
    size_t iv;           /* current interval */
    struct eng_iter *it; /* open on interval iv, or NULL */
    struct cairn_buf doc, idk, value;
    /* Encoded _ids already returned (open addressing over offsets+1 into ids). */
    struct cairn_buf ids;
    size_t *slots, n_slots, n_ids;
    struct txn_plan_info info;
};

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* Stored as a 4-byte length then the bytes; slots hold offset + 1. */
static bool seen_lookup(const struct txn_ixscan *x, const uint8_t *k, size_t n, size_t *slot)
{
    size_t mask = x->n_slots - 1, i = hash_bytes(k, n) & mask;
    for (;; i = (i + 1) & mask) {
        size_t s = x->slots[i];
        if (s == 0) {
            *slot = i;
            return false;
        }
        const uint8_t *e = x->ids.data + s - 1;
        uint32_t len;
        memcpy(&len, e, 4);
        if (len == n && memcmp(e + 4, k, n) == 0) {
            *slot = i;
            return true;
        }
    }
}

static int seen_grow(struct txn_ixscan *x)
{
    size_t n = x->n_slots ? x->n_slots * 2 : 256;
    size_t *old = x->slots, old_n = x->n_slots;
    x->slots = calloc(n, sizeof *x->slots);
    if (x->slots == NULL) {
        x->slots = old;
        return CAIRN_ENOMEM;
    }
    x->n_slots = n;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i] != 0) {
            const uint8_t *e = x->ids.data + old[i] - 1;
            uint32_t len;
            size_t slot;
            memcpy(&len, e, 4);
            seen_lookup(x, e + 4, len, &slot);
            x->slots[slot] = old[i];
        }
    }
    free(old);
    return 0;
}

/* True when the id was returned already; else remembers it. */
static int seen_add(struct txn_ixscan *x, const uint8_t *k, size_t n, bool *seen)
{
    size_t slot;
    uint32_t len = (uint32_t)n;
    if ((x->n_ids + 1) * 2 > x->n_slots && seen_grow(x) != 0) {
        return CAIRN_ENOMEM;
    }
    *seen = seen_lookup(x, k, n, &slot);
    if (*seen) {
        return 0;
    }
    size_t off = x->ids.len;
    if (cairn_buf_append(&x->ids, &len, 4) != 0 || cairn_buf_append(&x->ids, k, n) != 0) {
        return CAIRN_ENOMEM;
    }
    x->slots[slot] = off + 1;
    x->n_ids++;
    return 0;
}

static int cmp_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

/* True when `sort` is a prefix of index `ix`'s key pattern, field for
 * field and direction for direction: the index's order is the sort's. */
static bool sort_matches(const struct qry_index *ix, const bson_t *sort)
{
    bson_iter_t it;
    size_t f = 0;

    if (!bson_iter_init(&it, sort)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        bool desc;
        if (f >= qry_index_n_fields(ix) || !BSON_ITER_HOLDS_NUMBER(&it) ||
            strcmp(bson_iter_key(&it), qry_index_field(ix, f, &desc)) != 0 ||
            (bson_iter_as_double(&it) < 0) != desc) {
            return false;
        }
        f++;
    }
    return f > 0;
}

int txn_ixscan_open(struct txn_read *rd,
                    uint64_t coll_id,
                    const char *ns,
                    const bson_t *filter,
                    const bson_t *sort,
                    struct txn_ixscan **out,
                    struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    const struct qry_index **ixs = NULL;
    bool *mk = NULL;
    struct qry_plan *plan = NULL;
    struct txn_ixscan *x = NULL;
    struct cairn_buf spec = CAIRN_BUF_INIT;
    int rv, pos;

    *out = NULL;
    if ((filter == NULL && sort == NULL) || ns == NULL || (rd->w != NULL && rd->w->n_ops > 0)) {
        return 0; /* invariant 3 */
    }
    rv = txn_ixset_get(rd->m, coll_id, ns, &s, err);
    if (rv != 0 || s->n == 0) {
        goto out;
    }
    ixs = calloc(s->n, sizeof *ixs);
    if (ixs == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    mk = calloc(s->n, sizeof *mk);
    if (mk == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n && rv == 0; i++) {
        ixs[i] = s->v[i].ready ? s->v[i].ix : NULL;
        /* The marker as of this snapshot (written with the first
         * multikey document). */
        rv = eng_snap_get(rd->snap, s->v[i].id, txn_ix_multikey_key, TXN_IX_META_LEN, NULL, err);
        mk[i] = rv == 0;
        rv = rv == CAIRN_ENOTFOUND ? 0 : rv;
    }
    if (rv != 0) {
        goto out;
    }
    if (sort != NULL) {
        /* Invariant 4: the first index whose order is the sort's, not
         * multikey; its intervals for the filter, or all of it. */
        pos = -1;
        for (size_t i = 0; i < s->n && pos < 0; i++) {
            if (ixs[i] != NULL && !mk[i] && !qry_index_sparse(ixs[i]) &&
                !qry_index_partial(ixs[i]) && !qry_index_hidden(ixs[i]) &&
                sort_matches(ixs[i], sort)) {
                pos = (int)i;
            }
        }
        if (pos < 0) {
            goto out;
        }
        const struct qry_index *one[1] = {ixs[pos]};
        const bool not_mk[1] = {false};
        rv = qry_plan_choose(filter, one, not_mk, 1, &plan, err);
        if (rv == 0 && qry_plan_index(plan) < 0) {
            qry_plan_free(plan);
            plan = NULL;
            rv = qry_plan_full(&plan, err);
        }
        if (rv != 0) {
            goto out;
        }
    } else {
        rv = qry_plan_choose(filter, ixs, mk, s->n, &plan, err);
        if (rv != 0 || (pos = qry_plan_index(plan)) < 0) {
            goto out;
        }
    }
    /* Invariant 1: ready as of this read's snapshot. */
    rv = eng_snap_get(rd->snap, s->v[pos].id, SPEC_KEY, TXN_IX_META_LEN, &spec, err);
    if (rv == CAIRN_ENOTFOUND) {
        rv = 0;
        goto out;
    }
    if (rv != 0) {
        goto out;
    }
    bson_t wrap;
    bson_iter_t it;
    if (!bson_init_static(&wrap, spec.data, spec.len) ||
        !bson_iter_init_find(&it, &wrap, "ready") || !bson_iter_as_bool(&it)) {
        goto out;
    }
    x = calloc(1, sizeof *x);
    if (x == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    x->rd = rd;
    x->coll_id = coll_id;
    x->ix_id = s->v[pos].id;
    x->plan = plan;
    plan = NULL;
    snprintf(x->info.index_name, sizeof x->info.index_name, "%s", qry_index_name(s->v[pos].ix));
    bson_copy_to(qry_index_key_pattern(s->v[pos].ix), &x->info.key_pattern);
    x->info.n_intervals = qry_plan_n_intervals(x->plan);
    *out = x;
out:
    cairn_buf_free(&spec);
    qry_plan_free(plan);
    free(ixs);
    free(mk);
    txn_ixset_unref(s);
    return rv;
}

int txn_ixscan_next(struct txn_ixscan *x, bson_t *doc, struct cairn_error *err)
{
    for (;;) {
        const uint8_t *lo, *hi, *k, *v;
        size_t lo_len, hi_len, klen, vlen;
        int r;

        if (x->iv >= qry_plan_n_intervals(x->plan)) {
            return 0;
        }
        qry_plan_interval(x->plan, x->iv, &lo, &lo_len, &hi, &hi_len);
        if (x->it == NULL) {
            /* First key >= lo: start after lo without its last byte (or
             * after the index's metadata keys) and skip what lies below lo. */
            r = lo_len > 1 ? eng_iter_open_past(x->rd->snap, x->ix_id, lo, lo_len - 1, &x->it, err)
                           : eng_iter_open_past(x->rd->snap, x->ix_id, SPEC_KEY, TXN_IX_META_LEN,
                                                &x->it, err);
            if (r != 0) {
                return -1;
            }
        }
        r = eng_iter_next(x->it, &k, &klen, &v, &vlen);
        if (r < 0) {
            *err = *eng_iter_error(x->it);
            return -1;
        }
        if (r > 0 && cmp_bytes(k, klen, lo, lo_len) < 0) {
            continue;
        }
        if (r == 0 || (hi_len > 0 && cmp_bytes(k, klen, hi, hi_len) >= 0)) {
            eng_iter_close(x->it);
            x->it = NULL;
            x->iv++;
            continue;
        }
        x->info.keys_examined++;
        bson_t vd;
        bson_iter_t it;
        if (!bson_init_static(&vd, v, vlen) || !bson_iter_init_find(&it, &vd, "_id")) {
            cairn_error_setf(err, CAIRN_ECORRUPT, "index entry without _id");
            return -1;
        }
        cairn_buf_reset(&x->idk);
        if (qry_key_encode(bson_iter_value(&it), &x->idk, err) != 0) {
            return -1;
        }
        bool seen = false;
        if (seen_add(x, x->idk.data, x->idk.len, &seen) != 0) {
            cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
            return -1;
        }
        if (seen) {
            continue; /* another key of a multikey document */
        }
        cairn_buf_reset(&x->doc);
        r = eng_snap_get(x->rd->snap, x->coll_id, x->idk.data, x->idk.len, &x->doc, err);
        if (r == CAIRN_ENOTFOUND) {
            cairn_error_clear(err);
            continue;
        }
        if (r != 0) {
            return -1;
        }
        x->info.docs_examined++;
        if (!bson_init_static(doc, x->doc.data, x->doc.len)) {
            cairn_error_setf(err, CAIRN_ECORRUPT, "stored document is not valid BSON");
            return -1;
        }
        return 1;
    }
}

const struct txn_plan_info *txn_ixscan_info(const struct txn_ixscan *x)
{
    return &x->info;
}

void txn_ixscan_close(struct txn_ixscan *x)
{
    if (x == NULL) {
        return;
    }
    eng_iter_close(x->it);
    qry_plan_free(x->plan);
    cairn_buf_free(&x->doc);
    cairn_buf_free(&x->idk);
    cairn_buf_free(&x->value);
    cairn_buf_free(&x->ids);
    free(x->slots);
    bson_destroy(&x->info.key_pattern);
    free(x);
}
