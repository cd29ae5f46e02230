/*
 * stats.c: what dbStats and collStats report about one collection, read in
 * one snapshot: the count and summed BSON size of its visible documents,
 * and RocksDB's estimate of the bytes its key space and each of its
 * indexes' key spaces hold (every version, compressed, flushed files only).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "txn/txn_int.h"

int txn_read_coll_stats(struct txn_read *rd,
                        const char *ns,
                        struct txn_coll_stats *st,
                        struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    struct txn_scan *sc = NULL;
    uint64_t coll_id;
    bson_t doc;
    int rv, r;

    memset(st, 0, sizeof *st);
    if (txn_read_coll(rd, ns, &coll_id) != 0) {
        return 0; /* st->exists false: mongod answers zeros */
    }
    st->exists = true;
    rv = txn_scan_open(rd, coll_id, &sc, err);
    if (rv != 0) {
        return rv;
    }
    while ((r = txn_scan_next(sc, &doc)) == 1) {
        rv = cairn_op_poll(cairn_op_current(), err); /* maxTimeMS, killOp, disconnect */
        if (rv != 0) {
            goto out;
        }
        st->count++;
        st->size += doc.len;
    }
    if (r < 0) {
        *err = *txn_scan_error(sc);
        rv = err->code != 0 ? err->code : CAIRN_EIO;
        goto out;
    }
    rv = eng_approx_size(rd->m->eng, coll_id, &st->storage, err);
    if (rv != 0) {
        goto out;
    }
    rv = txn_ixset_load(rd->m->eng, rd->snap, rd->local, coll_id, ns, &s, err);
    if (rv != 0) {
        goto out;
    }
    st->ix = calloc(s->n ? s->n : 1, sizeof *st->ix);
    if (st->ix == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n; i++) {
        struct txn_ix_size *x = &st->ix[st->n_ix];
        if (!s->v[i].ready) {
            continue;
        }
        snprintf(x->name, sizeof x->name, "%s", qry_index_name(s->v[i].ix));
        rv = eng_approx_size(rd->m->eng, s->v[i].id, &x->bytes, err);
        if (rv != 0) {
            goto out;
        }
        st->n_ix++;
    }
out:
    txn_ixset_unref(s);
    txn_scan_close(sc);
    if (rv != 0) {
        txn_coll_stats_free(st);
    }
    return rv;
}

int txn_read_coll_storage(struct txn_read *rd,
                          const char *ns,
                          uint64_t *bytes,
                          struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    uint64_t coll_id;
    uint64_t b = 0;
    int rv;

    *bytes = 0;
    if (txn_read_coll(rd, ns, &coll_id) != 0) {
        return 0;
    }
    rv = eng_approx_size(rd->m->eng, coll_id, &b, err);
    if (rv != 0) {
        return rv;
    }
    *bytes += b;
    rv = txn_ixset_load(rd->m->eng, rd->snap, rd->local, coll_id, ns, &s, err);
    for (size_t i = 0; rv == 0 && i < s->n; i++) {
        rv = eng_approx_size(rd->m->eng, s->v[i].id, &b, err);
        *bytes += rv == 0 ? b : 0;
    }
    txn_ixset_unref(s);
    return rv;
}

int txn_flush(struct txn_mgr *m, struct cairn_error *err)
{
    return eng_flush(m->eng, err);
}

void txn_coll_stats_free(struct txn_coll_stats *st)
{
    if (st == NULL) {
        return;
    }
    free(st->ix);
    st->ix = NULL;
    st->n_ix = 0;
}
