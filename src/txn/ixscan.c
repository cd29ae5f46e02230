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
 *     key pattern with the same directions (a forward scan) or with every
 *     direction reversed (a backward scan), and it is not multikey in the
 *     snapshot; its intervals are disjoint and visited in key order (or in
 *     reverse key order), so the documents come out sorted.
 *  5. A backward scan visits the intervals from the last to the first and
 *     reads each interval whole before returning its entries from the
 *     last key down (the engine iterates forward only): memory grows with
 *     the entries of one interval, as the _id set does with the scan.
 *  6. A hint is resolved against the indexes before anything else (an
 *     unknown, building or hidden index is BadValue even where the read
 *     then scans the collection, invariant 3); the hinted index is scanned
 *     whatever the filter and kind (sparse: only the documents it has, as
 *     mongod); partial indexes cannot be hinted.
 *  7. A scan is covered (documents built from the entries, not fetched)
 *     only when qry_plan_covers says the filter, projection and sort use
 *     the index's fields and _id alone, and the index has no multikey
 *     marker in the snapshot (no document met an array on its paths, so
 *     each has one entry whose key holds its values); an entry whose key
 *     does not decode exactly (decimal128), or without type bits (written
 *     before them, when one-element arrays did not set the marker), is
 *     fetched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
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
    /* Backward scans: the current interval's entries, popped from the end
     * (at stk_off[i]: key length, key, value length, value). */
    struct cairn_buf stk;
    size_t *stk_off, n_stk, cap_stk;
    /* Encoded _ids already returned (open addressing over offsets+1 into ids). */
    struct cairn_buf ids;
    size_t *slots, n_slots, n_ids;
    struct txn_plan_info info;
    /* Covered (invariant 7): documents built from the entries. */
    struct txn_ixset *set; /* holds `ix` */
    const struct qry_index *ix;
    bson_t cov;
};

/* Stored as a 4-byte length then the bytes; slots hold offset + 1. */
static bool seen_lookup(const struct txn_ixscan *x, const uint8_t *k, size_t n, size_t *slot)
{
    size_t mask = x->n_slots - 1;
    size_t i = cairn_hash_fold(cairn_hash_bytes(CAIRN_HASH_SEED, k, n)) & mask;
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

/* 1 when `sort` is a prefix of index `ix`'s key pattern, field for field
 * and direction for direction (the index's order is the sort's), -1 when
 * every direction is the reverse (the backward order is), else 0. */
static int sort_direction(const struct qry_index *ix, const bson_t *sort)
{
    bson_iter_t it;
    size_t f = 0;
    int dir = 0;

    if (!bson_iter_init(&it, sort)) {
        return 0;
    }
    while (bson_iter_next(&it)) {
        bool desc;
        if (f >= qry_index_n_fields(ix) || !BSON_ITER_HOLDS_NUMBER(&it) ||
            strcmp(bson_iter_key(&it), qry_index_field(ix, f, &desc)) != 0) {
            return 0;
        }
        int d = (bson_iter_as_double(&it) < 0) == desc ? 1 : -1;
        if (dir != 0 && d != dir) {
            return 0;
        }
        dir = d;
        f++;
    }
    return dir;
}

static int hint_error(struct cairn_error *err, const char *ns, const char *why)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                             "error processing query: ns=%s planner returned error :: caused by "
                             ":: %s",
                             ns != NULL ? ns : "", why);
}

/* The position in `s` of the index the hint names. Errors: BadValue when
 * none ready and visible does, or when it is partial. */
static int resolve_hint(const struct txn_ixset *s,
                        const struct txn_scan_req *req,
                        int *pos,
                        struct cairn_error *err)
{
    for (size_t i = 0; s != NULL && i < s->n; i++) {
        const struct qry_index *ix = s->v[i].ix;
        if (!qry_hint_matches(req->hint, qry_index_name(ix), qry_index_key_pattern(ix))) {
            continue;
        }
        if (!s->v[i].ready || qry_index_hidden(ix)) {
            break; /* mongod's planner does not see building or hidden indexes */
        }
        if (qry_index_partial(ix)) {
            /* mongod uses it only when the filter implies the index's
             * filter, which is not decided here: refused, never a partial
             * answer. */
            return hint_error(err, req->ns,
                              "hinting a partial index (partialFilterExpression) is not supported");
        }
        *pos = (int)i;
        return 0;
    }
    return hint_error(err, req->ns, "hint provided does not correspond to an existing index");
}

int txn_ixscan_open(struct txn_read *rd,
                    uint64_t coll_id,
                    const struct txn_scan_req *req,
                    struct txn_ixscan **out,
                    bool *sorted,
                    struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    const struct qry_index **ixs = NULL;
    bool *mk = NULL;
    struct qry_plan *plan = NULL;
    struct txn_ixscan *x = NULL;
    struct cairn_buf spec = CAIRN_BUF_INIT;
    const bson_t *filter = req->filter != NULL && !bson_empty(req->filter) ? req->filter : NULL;
    const bson_t *sort = req->sort != NULL && !bson_empty(req->sort) ? req->sort : NULL;
    bool hinted = qry_hint_given(req->hint);
    int rv = 0, pos = -1, dir = 0;

    *out = NULL;
    *sorted = false;
    if (hinted && (qry_hint_natural(req->hint, NULL) || qry_hint_is_id(req->hint))) {
        return 0; /* the collection, in _id order */
    }
    if ((!hinted && filter == NULL && sort == NULL) || req->ns == NULL) {
        return 0;
    }
    rv = txn_ixset_get(rd->m, coll_id, req->ns, &s, err);
    if (rv != 0) {
        goto out;
    }
    if (hinted && (rv = resolve_hint(s, req, &pos, err)) != 0) {
        goto out;
    }
    if (s->n == 0 || (rd->w != NULL && rd->w->n_ops > 0)) {
        goto out; /* invariant 3 */
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
    if (hinted) {
        /* The hinted index, whatever the filter; its order when it is the
         * sort's (invariant 4). */
        dir = sort != NULL && !mk[pos] ? sort_direction(ixs[pos], sort) : 0;
        if (dir == 0 && req->need_sort_order) {
            goto out;
        }
        rv = qry_plan_one(filter, ixs[pos], mk[pos], &plan, err);
        if (rv != 0) {
            goto out;
        }
    } else {
        /* Invariant 4: the first index whose order (either way) is the
         * sort's, not multikey; its intervals for the filter, or all of it.
         * Else (when the order is not required) the planner's choice. */
        for (size_t i = 0; sort != NULL && i < s->n && pos < 0; i++) {
            if (ixs[i] != NULL && !mk[i] && !qry_index_sparse(ixs[i]) &&
                !qry_index_partial(ixs[i]) && !qry_index_hidden(ixs[i]) &&
                (dir = sort_direction(ixs[i], sort)) != 0) {
                pos = (int)i;
            }
        }
        if (pos >= 0) {
            rv = qry_plan_one(filter, ixs[pos], false, &plan, err);
        } else if (!req->need_sort_order) {
            rv = qry_plan_choose(filter, ixs, mk, s->n, &plan, err);
            pos = rv == 0 ? qry_plan_index(plan) : -1;
        }
        if (rv != 0 || pos < 0) {
            goto out;
        }
    }
    /* Invariant 1: ready as of this read's snapshot. */
    rv = eng_snap_get(rd->snap, s->v[pos].id, SPEC_KEY, TXN_IX_META_LEN, &spec, err);
    if (rv == CAIRN_ENOTFOUND) {
        cairn_error_clear(err);
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
    x->info.backward = dir < 0;
    x->info.hinted = hinted;
    bson_init(&x->cov);
    if (!mk[pos] &&
        (req->filter_only ? qry_plan_covers_filter(s->v[pos].ix, filter)
                          : qry_plan_covers(s->v[pos].ix, filter, req->projection, sort))) {
        x->info.covered = true; /* invariant 7 */
        x->ix = s->v[pos].ix;
        x->set = s;
        s = NULL;
    }
    x->iv = dir < 0 ? qry_plan_n_intervals(x->plan) : 0;
    *sorted = dir != 0;
    *out = x;
out:
    cairn_buf_free(&spec);
    qry_plan_free(plan);
    free(ixs);
    free(mk);
    txn_ixset_unref(s);
    return rv;
}

/* Invariant 7: `doc` built from entry key k (value vd, _id id): 1, or 0
 * when the key does not decode exactly (the caller fetches), -1 on error. */
static int cover(struct txn_ixscan *x,
                 const uint8_t *k,
                 size_t klen,
                 const bson_t *vd,
                 const bson_value_t *id,
                 bson_t *doc,
                 struct cairn_error *err)
{
    bson_iter_t it;
    const uint8_t *tb = NULL;
    uint32_t tb_len = 0;
    bson_subtype_t st;
    int r;

    if (!bson_iter_init_find(&it, vd, "t") || !BSON_ITER_HOLDS_BINARY(&it)) {
        x->info.cover_misses++;
        return 0; /* written before type bits: maybe an array (invariant 7) */
    }
    bson_iter_binary(&it, &st, &tb_len, &tb);
    bson_reinit(&x->cov);
    if (!BSON_APPEND_VALUE(&x->cov, "_id", id)) {
        cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        return -1;
    }
    r = qry_key_decode(x->ix, k, klen, tb, tb_len, &x->cov);
    if (r < 0) {
        cairn_error_setf(err, CAIRN_ECORRUPT, "index key does not decode");
        return -1;
    }
    if (r == 0) {
        x->info.cover_misses++;
        return 0;
    }
    bson_init_static(doc, bson_get_data(&x->cov), x->cov.len);
    return 1;
}

/* One index entry (key k, value v: {_id, t?}): 1 with `doc` its document
 * (once per scan), 0 to skip it, -1 on error. */
static int take_entry(struct txn_ixscan *x,
                      const uint8_t *k,
                      size_t klen,
                      const uint8_t *v,
                      size_t vlen,
                      bson_t *doc,
                      struct cairn_error *err)
{
    bson_t vd;
    bson_iter_t it;
    bool seen = false;
    int r;

    if (!bson_init_static(&vd, v, vlen) || !bson_iter_init_find(&it, &vd, "_id")) {
        cairn_error_setf(err, CAIRN_ECORRUPT, "index entry without _id");
        return -1;
    }
    cairn_buf_reset(&x->idk);
    if (qry_key_encode(bson_iter_value(&it), &x->idk, err) != 0) {
        return -1;
    }
    if (seen_add(x, x->idk.data, x->idk.len, &seen) != 0) {
        cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        return -1;
    }
    if (seen) {
        return 0; /* another key of a multikey document */
    }
    if (x->info.covered) {
        r = cover(x, k, klen, &vd, bson_iter_value(&it), doc, err);
        if (r != 0) {
            return r;
        }
    }
    cairn_buf_reset(&x->doc);
    r = eng_snap_get(x->rd->snap, x->coll_id, x->idk.data, x->idk.len, &x->doc, err);
    if (r == CAIRN_ENOTFOUND) {
        cairn_error_clear(err);
        return 0;
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

/* Reads the next entry of interval x->iv into k and v: 1, 0 when the
 * interval is done (its iterator closed), -1 on error. */
static int interval_next(struct txn_ixscan *x,
                         const uint8_t **k,
                         size_t *klen,
                         const uint8_t **v,
                         size_t *vlen,
                         struct cairn_error *err)
{
    const uint8_t *lo, *hi;
    size_t lo_len, hi_len;
    int r;

    qry_plan_interval(x->plan, x->iv, &lo, &lo_len, &hi, &hi_len);
    if (x->it == NULL) {
        /* First key >= lo: start after lo without its last byte (or after
         * the index's metadata keys) and skip what lies below lo. */
        r = lo_len > 1
                ? eng_iter_open_past(x->rd->snap, x->ix_id, lo, lo_len - 1, &x->it, err)
                : eng_iter_open_past(x->rd->snap, x->ix_id, SPEC_KEY, TXN_IX_META_LEN, &x->it, err);
        if (r != 0) {
            return -1;
        }
    }
    for (;;) {
        r = eng_iter_next(x->it, k, klen, v, vlen);
        if (r < 0) {
            *err = *eng_iter_error(x->it);
            return -1;
        }
        if (r > 0 && cmp_bytes(*k, *klen, lo, lo_len) < 0) {
            continue;
        }
        if (r == 0 || (hi_len > 0 && cmp_bytes(*k, *klen, hi, hi_len) >= 0)) {
            eng_iter_close(x->it);
            x->it = NULL;
            return 0;
        }
        x->info.keys_examined++;
        return 1;
    }
}

/* Invariant 5: reads all of interval x->iv onto the stack (pushed in key
 * order, popped from the last key down). */
static int fill_stack(struct txn_ixscan *x, struct cairn_error *err)
{
    const uint8_t *k, *v;
    size_t klen, vlen;
    int r;

    cairn_buf_reset(&x->stk);
    x->n_stk = 0;
    while ((r = interval_next(x, &k, &klen, &v, &vlen, err)) > 0) {
        uint32_t kl = (uint32_t)klen, l = (uint32_t)vlen;
        if (x->n_stk == x->cap_stk) {
            size_t cap = x->cap_stk ? x->cap_stk * 2 : 64;
            size_t *o = realloc(x->stk_off, cap * sizeof *o);
            if (o == NULL) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory"), -1;
            }
            x->stk_off = o;
            x->cap_stk = cap;
        }
        x->stk_off[x->n_stk++] = x->stk.len;
        if (cairn_buf_append(&x->stk, &kl, 4) != 0 || cairn_buf_append(&x->stk, k, klen) != 0 ||
            cairn_buf_append(&x->stk, &l, 4) != 0 || cairn_buf_append(&x->stk, v, vlen) != 0) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory"), -1;
        }
    }
    return r;
}

int txn_ixscan_next(struct txn_ixscan *x, bson_t *doc, struct cairn_error *err)
{
    const uint8_t *k, *v;
    size_t klen, vlen;
    int r;

    while (x->info.backward) {
        if (x->n_stk > 0) {
            uint32_t l;
            const uint8_t *e = x->stk.data + x->stk_off[--x->n_stk];
            memcpy(&l, e, 4);
            uint32_t vl;
            memcpy(&vl, e + 4 + l, 4);
            if ((r = take_entry(x, e + 4, l, e + 8 + l, vl, doc, err)) != 0) {
                return r;
            }
            continue;
        }
        if (x->iv == 0) {
            return 0;
        }
        x->iv--;
        if (fill_stack(x, err) < 0) {
            return -1;
        }
    }
    for (;;) {
        if (x->iv >= qry_plan_n_intervals(x->plan)) {
            return 0;
        }
        r = interval_next(x, &k, &klen, &v, &vlen, err);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            x->iv++;
            continue;
        }
        if ((r = take_entry(x, k, klen, v, vlen, doc, err)) != 0) {
            return r;
        }
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
    cairn_buf_free(&x->stk);
    free(x->stk_off);
    bson_destroy(&x->cov);
    txn_ixset_unref(x->set);
    cairn_buf_free(&x->ids);
    free(x->slots);
    bson_destroy(&x->info.key_pattern);
    free(x);
}
