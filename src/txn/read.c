/*
 * read.c: read views (txn_read) and scans (txn_scan).
 *
 * A view is an engine snapshot: "local" (newest, the primary's overlay
 * included), "majority" (applied) or at an explicit ts. A view of a
 * multi-document transaction also sees the transaction's own staged
 * writes: point reads look in the write set first; a scan copies the
 * staged writes of its collection when it opens (sorted by key) and merges
 * them with the engine iterator, a staged version replacing the stored one
 * of the same key and a staged delete hiding it. Because the copy is taken
 * at open, a scan running while the same transaction stages more writes
 * (a multi-update) visits each document once.
 */
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "txn/txn_int.h"

/* ---- Views ---------------------------------------------------------------- */

int txn_read_init(struct txn_mgr *m,
                  bool local,
                  cairn_ts read_ts,
                  struct txn_read *rd,
                  struct cairn_error *err)
{
    int rv;

    memset(rd, 0, sizeof *rd);
    rd->m = m;
    rd->local = local;
    rv = eng_snap_acquire(m->eng, local, read_ts, &rd->snap, err);
    if (rv != 0) {
        return cairn_error_wrapf(err, "begin read");
    }
    rd->ts = eng_snap_ts(rd->snap);
    return 0;
}

void txn_read_fini(struct txn_read *rd)
{
    if (rd->snap != NULL) {
        eng_snap_release(rd->snap);
        rd->snap = NULL;
    }
}

static int read_alloc(struct txn_mgr *m,
                      bool local,
                      cairn_ts read_ts,
                      struct txn_read **out,
                      struct cairn_error *err)
{
    struct txn_read *rd = malloc(sizeof *rd);
    int rv;

    if (rd == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    rv = txn_read_init(m, local, read_ts, rd, err);
    if (rv != 0) {
        free(rd);
        return rv;
    }
    *out = rd;
    return 0;
}

int txn_read_begin(struct txn_mgr *m, int level, struct txn_read **out, struct cairn_error *err)
{
    return read_alloc(m, level != TXN_READ_MAJORITY, CAIRN_TS_MAX, out, err);
}

int txn_read_begin_at(struct txn_mgr *m,
                      cairn_ts ts,
                      struct txn_read **out,
                      struct cairn_error *err)
{
    int rv;

    if (ts < txn_history_floor(m)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_SnapshotTooOld,
                                 "Read timestamp Timestamp(%u, %u) is older than the oldest "
                                 "available timestamp.",
                                 CAIRN_TS_SECS(ts), CAIRN_TS_INC(ts));
    }
    rv = read_alloc(m, false, ts, out, err);
    if (rv == 0) {
        (*out)->ts = ts;
    }
    return rv;
}

int txn_read_begin_local_at(struct txn_mgr *m,
                            cairn_ts ts,
                            struct txn_read **out,
                            struct cairn_error *err)
{
    if (ts < txn_history_floor(m)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_SnapshotTooOld,
                                 "Read timestamp Timestamp(%u, %u) is older than the oldest "
                                 "available timestamp.",
                                 CAIRN_TS_SECS(ts), CAIRN_TS_INC(ts));
    }
    return read_alloc(m, true, ts, out, err);
}

int txn_read_begin_txn(struct txn_write *w, struct txn_read **out, struct cairn_error *err)
{
    int rv = read_alloc(w->m, w->rd.local, w->read_ts, out, err);

    if (rv != 0) {
        return rv;
    }
    (*out)->ts = w->rd.ts;
    (*out)->w = w;
    txn_write_ref(w);
    return 0;
}

void txn_read_end(struct txn_read *rd)
{
    if (rd == NULL || rd->embedded) {
        return;
    }
    txn_read_fini(rd);
    if (rd->w != NULL) {
        txn_write_unref(rd->w);
    }
    free(rd);
}

uint64_t txn_read_overlay_token(const struct txn_read *rd)
{
    return rd->snap != NULL ? eng_snap_overlay_token(rd->snap) : 0;
}

bool txn_overlay_token_lost(struct txn_mgr *m, uint64_t token)
{
    return eng_overlay_token_lost(m->eng, token);
}

cairn_ts txn_read_ts(const struct txn_read *rd)
{
    return rd->ts;
}

static int read_coll(struct txn_read *rd, const char *ns, bool at_snap, uint64_t *coll_id)
{
    if (strstr(ns, ".$") != NULL) {
        return CAIRN_ENOTFOUND; /* an index namespace (index.c) */
    }
    if (rd->w != NULL) {
        int st = txn_write_staged_coll(rd->w, ns, coll_id);
        if (st != 0) {
            return st > 0 ? 0 : CAIRN_ENOTFOUND;
        }
    }
    /* At the snapshot's ts: a read below a rename sees the old name. */
    return eng_catalog_lookup_at(rd->m->eng, ns, rd->local,
                                 at_snap ? eng_snap_ts(rd->snap) : CAIRN_TS_MAX, coll_id);
}

int txn_read_coll(struct txn_read *rd, const char *ns, uint64_t *coll_id)
{
    return read_coll(rd, ns, true, coll_id);
}

int txn_read_coll_now(struct txn_read *rd, const char *ns, uint64_t *coll_id)
{
    return read_coll(rd, ns, false, coll_id);
}

int txn_read_list(struct txn_read *rd, const char *db, struct txn_coll **out, size_t *n)
{
    struct eng_coll_info *infos = NULL;
    size_t count = 0;
    struct txn_coll *colls;
    int rv;

    rv = eng_catalog_list(rd->m->eng, db, rd->local, &infos, &count);
    if (rv != 0) {
        return rv;
    }
    colls = calloc(count ? count : 1, sizeof *colls);
    if (colls == NULL) {
        free(infos);
        return CAIRN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        if (strstr(infos[i].ns, ".$") != NULL) {
            continue; /* an index namespace (index.c) */
        }
        colls[k].id = infos[i].id;
        memcpy(colls[k].ns, infos[i].ns, sizeof colls[k].ns);
        k++;
    }
    free(infos);
    *out = colls;
    *n = k;
    return 0;
}

int txn_bytes_to_doc(const uint8_t *data, size_t len, bson_t *doc, struct cairn_error *err)
{
    bson_t view;

    if (!bson_init_static(&view, data, len)) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "stored document is not valid BSON");
    }
    bson_copy_to(&view, doc);
    return 0;
}

int txn_read_get(struct txn_read *rd,
                 uint64_t coll_id,
                 const bson_value_t *id,
                 bson_t *doc,
                 struct cairn_error *err)
{
    struct cairn_buf key = CAIRN_BUF_INIT;
    struct cairn_buf buf = CAIRN_BUF_INIT;
    int rv = qry_key_encode(id, &key, err);

    if (rv != 0) {
        goto out;
    }
    if (rd->w != NULL) {
        const struct txn_staged *op = txn_write_staged(rd->w, coll_id, key.data, key.len);
        if (op != NULL) {
            rv = op->kind == ENG_OP_DELETE ? CAIRN_ENOTFOUND
                                           : txn_bytes_to_doc(op->doc, op->doc_len, doc, err);
            goto out;
        }
    }
    rv = eng_snap_get(rd->snap, coll_id, key.data, key.len, &buf, err);
    if (rv == 0) {
        rv = txn_bytes_to_doc(buf.data, buf.len, doc, err);
    }
out:
    cairn_buf_free(&buf);
    cairn_buf_free(&key);
    return rv;
}

/* ---- Scans ---------------------------------------------------------------- */

/* A staged write copied when the scan opened. */
struct scan_staged
{
    uint8_t *key;
    size_t key_len;
    uint8_t *doc; /* NULL: a delete */
    size_t doc_len;
};

struct txn_scan
{
    struct txn_mgr *m; /* counts what the scan examined when it closes */
    struct eng_iter *it;
    struct cairn_error err;
    struct scan_staged *st; /* sorted by key */
    size_t n_st, pos;
    bool e_valid; /* the engine's current document is not consumed */
    bool e_done;
    const uint8_t *ek, *ed;
    size_t ek_len, ed_len;
    struct txn_ixscan *ix; /* an index scan (ixscan.c) instead of the above */
    uint64_t n_docs;       /* documents returned (collection scans) */
    bool sorted;           /* in the order of the request's sort */
};

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;

    if (c != 0) {
        return c;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int staged_cmp(const void *pa, const void *pb)
{
    const struct scan_staged *a = pa, *b = pb;
    return key_cmp(a->key, a->key_len, b->key, b->key_len);
}

static void staged_free(struct scan_staged *st, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(st[i].key);
        free(st[i].doc);
    }
    free(st);
}

/* Copies the staged writes of `coll_id` (keys are unique in a write set). */
static int copy_staged(const struct txn_write *w,
                       uint64_t coll_id,
                       struct scan_staged **out,
                       size_t *n_out)
{
    struct scan_staged *st = NULL;
    size_t n = 0;

    *out = NULL;
    *n_out = 0;
    for (size_t i = 0; i < w->n_ops; i++) {
        const struct txn_staged *op = &w->ops[i];
        if (op->coll_id == coll_id && (op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE)) {
            n++;
        }
    }
    if (n == 0) {
        return 0;
    }
    st = calloc(n, sizeof *st);
    if (st == NULL) {
        return CAIRN_ENOMEM;
    }
    n = 0;
    for (size_t i = 0; i < w->n_ops; i++) {
        const struct txn_staged *op = &w->ops[i];
        if (op->coll_id != coll_id || (op->kind != ENG_OP_PUT && op->kind != ENG_OP_DELETE)) {
            continue;
        }
        st[n].key = malloc(op->key_len ? op->key_len : 1);
        st[n].key_len = op->key_len;
        if (st[n].key == NULL) {
            staged_free(st, n + 1);
            return CAIRN_ENOMEM;
        }
        memcpy(st[n].key, op->key, op->key_len);
        if (op->kind == ENG_OP_PUT) {
            st[n].doc = malloc(op->doc_len);
            st[n].doc_len = op->doc_len;
            if (st[n].doc == NULL) {
                staged_free(st, n + 1);
                return CAIRN_ENOMEM;
            }
            memcpy(st[n].doc, op->doc, op->doc_len);
        }
        n++;
    }
    qsort(st, n, sizeof *st, staged_cmp);
    *out = st;
    *n_out = n;
    return 0;
}

int txn_scan_open(struct txn_read *rd,
                  uint64_t coll_id,
                  struct txn_scan **out,
                  struct cairn_error *err)
{
    struct txn_scan *sc = calloc(1, sizeof *sc);
    int rv;

    if (sc == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    if (rd->w != NULL && copy_staged(rd->w, coll_id, &sc->st, &sc->n_st) != 0) {
        free(sc);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    rv = eng_iter_open(rd->snap, coll_id, NULL, 0, &sc->it, err);
    if (rv != 0) {
        staged_free(sc->st, sc->n_st);
        free(sc);
        return rv;
    }
    sc->m = rd->m;
    *out = sc;
    return 0;
}

int txn_scan_open_query(struct txn_read *rd,
                        uint64_t coll_id,
                        const struct txn_scan_req *req,
                        struct txn_scan **out,
                        struct cairn_error *err)
{
    struct txn_ixscan *ix = NULL;
    struct txn_scan *sc;
    bool sorted = false;
    int rv = txn_ixscan_open(rd, coll_id, req, &ix, &sorted, err);

    *out = NULL;
    if (rv != 0) {
        return rv;
    }
    if (ix == NULL) {
        return req->need_sort_order ? 0 : txn_scan_open(rd, coll_id, out, err);
    }
    sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        txn_ixscan_close(ix);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    sc->m = rd->m;
    sc->ix = ix;
    sc->sorted = sorted;
    *out = sc;
    return 0;
}

int txn_scan_open_filter(struct txn_read *rd,
                         uint64_t coll_id,
                         const char *ns,
                         const bson_t *filter,
                         struct txn_scan **out,
                         struct cairn_error *err)
{
    struct txn_scan_req req = {.ns = ns, .filter = filter};
    return txn_scan_open_query(rd, coll_id, &req, out, err);
}

int txn_scan_open_sorted(struct txn_read *rd,
                         uint64_t coll_id,
                         const char *ns,
                         const bson_t *filter,
                         const bson_t *sort,
                         struct txn_scan **out,
                         struct cairn_error *err)
{
    struct txn_scan_req req = {.ns = ns, .filter = filter, .sort = sort, .need_sort_order = true};
    return txn_scan_open_query(rd, coll_id, &req, out, err);
}

bool txn_scan_sorted(const struct txn_scan *sc)
{
    return sc->sorted;
}

const struct txn_plan_info *txn_scan_plan(const struct txn_scan *sc)
{
    return sc->ix != NULL ? txn_ixscan_info(sc->ix) : NULL;
}

uint64_t txn_scan_docs_examined(const struct txn_scan *sc)
{
    return sc->ix != NULL ? txn_ixscan_info(sc->ix)->docs_examined : sc->n_docs;
}

static int scan_next(struct txn_scan *sc, bson_t *doc);

int txn_scan_next(struct txn_scan *sc, bson_t *doc)
{
    int r;

    if (sc->ix != NULL) {
        return txn_ixscan_next(sc->ix, doc, &sc->err);
    }
    r = scan_next(sc, doc);
    sc->n_docs += r > 0;
    return r;
}

static int scan_next(struct txn_scan *sc, bson_t *doc)
{
    for (;;) {
        const struct scan_staged *s;
        int cmp;

        if (!sc->e_valid && !sc->e_done) {
            int rv = eng_iter_next(sc->it, &sc->ek, &sc->ek_len, &sc->ed, &sc->ed_len);
            if (rv < 0) {
                sc->err = *eng_iter_error(sc->it);
                return -1;
            }
            sc->e_valid = rv > 0;
            sc->e_done = rv == 0;
        }
        s = sc->pos < sc->n_st ? &sc->st[sc->pos] : NULL;
        if (!sc->e_valid && s == NULL) {
            return 0;
        }
        cmp = !sc->e_valid ? 1 : s == NULL ? -1 : key_cmp(sc->ek, sc->ek_len, s->key, s->key_len);
        if (cmp < 0) {
            sc->e_valid = false; /* consumed: the view stays valid until the next call */
            if (!bson_init_static(doc, sc->ed, sc->ed_len)) {
                cairn_error_setf(&sc->err, CAIRN_ECORRUPT, "stored document is not valid BSON");
                return -1;
            }
            return 1;
        }
        if (cmp == 0) {
            sc->e_valid = false; /* the staged version replaces it */
        }
        sc->pos++;
        if (s->doc == NULL) {
            continue; /* deleted by the transaction */
        }
        if (!bson_init_static(doc, s->doc, s->doc_len)) {
            cairn_error_setf(&sc->err, CAIRN_ECORRUPT, "staged document is not valid BSON");
            return -1;
        }
        return 1;
    }
}

const struct cairn_error *txn_scan_error(const struct txn_scan *sc)
{
    return &sc->err;
}

void txn_scan_close(struct txn_scan *sc)
{
    if (sc == NULL) {
        return;
    }
    if (sc->m != NULL) {
        /* serverStatus metrics.queryExecutor (scanned, scannedObjects). */
        const struct txn_plan_info *pi = txn_scan_plan(sc);
        atomic_fetch_add_explicit(&sc->m->n_keys_examined, pi ? (long long)pi->keys_examined : 0,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&sc->m->n_docs_examined, (long long)txn_scan_docs_examined(sc),
                                  memory_order_relaxed);
    }
    eng_iter_close(sc->it);
    txn_ixscan_close(sc->ix);
    staged_free(sc->st, sc->n_st);
    free(sc);
}
