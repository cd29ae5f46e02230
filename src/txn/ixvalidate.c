/*
 * ixvalidate.c: the validate command's check of secondary indexes: every
 * index of a collection, read in one snapshot, must hold exactly the
 * entries its documents give (extra and missing entries are counted per
 * index), as mongod's validate reports index inconsistencies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "txn/txn_int.h"

#define SPEC_KEY txn_ix_spec_key

/* ---- validate --------------------------------------------------------------- */

/* A sorted list of byte strings (expected entries of one index). */
struct keylist
{
    struct cairn_buf buf;
    size_t *off, *len;
    size_t n, cap;
};

static int keylist_add(struct keylist *l,
                       const uint8_t *a,
                       size_t alen,
                       const uint8_t *b,
                       size_t blen)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (o == NULL) {
            return CAIRN_ENOMEM;
        }
        l->off = o;
        size_t *n = realloc(l->len, cap * sizeof *n);
        if (n == NULL) {
            return CAIRN_ENOMEM;
        }
        l->len = n;
        l->cap = cap;
    }
    l->off[l->n] = l->buf.len;
    if (cairn_buf_append(&l->buf, a, alen) != 0 ||
        (blen > 0 && cairn_buf_append(&l->buf, b, blen) != 0)) {
        return CAIRN_ENOMEM;
    }
    l->len[l->n++] = alen + blen;
    return 0;
}

static int keylist_cmp(const void *pa, const void *pb, void *arg)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    const struct keylist *l = arg;
    size_t la = l->len[a], lb = l->len[b];
    int c = memcmp(l->buf.data + l->off[a], l->buf.data + l->off[b], la < lb ? la : lb);
    return c != 0 ? c : (la > lb) - (la < lb);
}

static void keylist_free(struct keylist *l)
{
    cairn_buf_free(&l->buf);
    free(l->off);
    free(l->len);
}

/* The expected entries of every index of `s`, from the documents. */
static int expected_entries(struct txn_read *rd,
                            uint64_t coll_id,
                            const struct txn_ixset *s,
                            struct keylist *lists,
                            int64_t *nrecords,
                            int64_t *n_bad_docs,
                            struct cairn_error *err)
{
    struct txn_scan *sc = NULL;
    struct qry_ixkeys keys = QRY_IXKEYS_INIT;
    struct cairn_buf idkey = CAIRN_BUF_INIT;
    bson_t doc;
    int rv = txn_scan_open(rd, coll_id, &sc, err), r;

    while (rv == 0 && (r = txn_scan_next(sc, &doc)) != 0) {
        bson_iter_t it;
        if (r < 0) {
            const struct cairn_error *se = txn_scan_error(sc);
            rv = cairn_error_setf(err, se->code ? se->code : CAIRN_EIO, "%s", se->msg);
            break;
        }
        rv = cairn_op_poll(cairn_op_current(), err); /* maxTimeMS, killOp, disconnect */
        if (rv != 0) {
            break;
        }
        (*nrecords)++;
        cairn_buf_reset(&idkey);
        if (!bson_iter_init_find(&it, &doc, "_id") ||
            qry_key_encode(bson_iter_value(&it), &idkey, NULL) != 0) {
            (*n_bad_docs)++;
            continue;
        }
        for (size_t i = 0; i < s->n && rv == 0; i++) {
            if (qry_index_keys(s->v[i].ix, &doc, &keys, NULL) != 0) {
                (*n_bad_docs)++;
                continue;
            }
            for (size_t j = 0; j < keys.n && rv == 0; j++) {
                /* Unique entries are compared as K | _id too (their _id from
                 * the value). */
                rv = keylist_add(&lists[i], keys.buf.data + keys.off[j], keys.len[j], idkey.data,
                                 idkey.len);
            }
            if (rv != 0) {
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "validate: out of memory");
            }
        }
    }
    txn_scan_close(sc);
    qry_ixkeys_fini(&keys);
    cairn_buf_free(&idkey);
    return rv;
}

/* Compares index `d`'s stored entries with `want`; counts keys, extra and
 * missing entries. */
static int compare_entries(struct txn_read *rd,
                           const struct txn_ixdesc *d,
                           struct keylist *want,
                           int64_t *n_keys,
                           int64_t *extra,
                           int64_t *missing,
                           struct cairn_error *err)
{
    size_t *order = malloc((want->n + 1) * sizeof *order);
    struct eng_iter *it = NULL;
    size_t w = 0;
    int rv;

    if (order == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "validate: out of memory");
    }
    for (size_t i = 0; i < want->n; i++) {
        order[i] = i;
    }
    qsort_r(order, want->n, sizeof *order, keylist_cmp, want);
    rv = eng_iter_open(rd->snap, d->id, SPEC_KEY, TXN_IX_META_LEN, &it, err);
    while (rv == 0) {
        const uint8_t *k, *v;
        size_t klen, vlen;
        int r = eng_iter_next(it, &k, &klen, &v, &vlen);
        if (r < 0) {
            *err = *eng_iter_error(it);
            rv = err->code;
            break;
        }
        if (r == 0) {
            break;
        }
        rv = cairn_op_poll(cairn_op_current(), err);
        if (rv != 0) {
            break;
        }
        (*n_keys)++;
        /* A unique entry's key is K alone: compare K | _id from its value. */
        struct cairn_buf full = CAIRN_BUF_INIT;
        const uint8_t *cmp = k;
        size_t cmplen = klen;
        if (qry_index_unique(d->ix)) {
            bson_t vd;
            bson_iter_t vi;
            cairn_buf_append(&full, k, klen);
            if (bson_init_static(&vd, v, vlen) && bson_iter_init_find(&vi, &vd, "_id")) {
                qry_key_encode(bson_iter_value(&vi), &full, NULL);
            }
            cmp = full.data;
            cmplen = full.len;
        }
        for (;;) {
            int c = 1;
            if (w < want->n) {
                size_t o = order[w], l = want->len[o];
                c = memcmp(want->buf.data + want->off[o], cmp, l < cmplen ? l : cmplen);
                c = c != 0 ? c : (l > cmplen) - (l < cmplen);
            }
            if (c < 0) {
                (*missing)++;
                w++;
                continue;
            }
            if (c == 0) {
                w++;
            } else {
                (*extra)++;
            }
            break;
        }
        cairn_buf_free(&full);
    }
    if (rv == 0) {
        *missing += (int64_t)(want->n - w);
    }
    eng_iter_close(it);
    free(order);
    return rv;
}

int txn_index_validate(struct txn_read *rd, const char *ns, bson_t *reply, struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    struct keylist *lists = NULL;
    int64_t nrecords = 0, bad_docs = 0;
    uint64_t coll_id;
    bool valid = true;
    bson_t kpi, details, errors;
    int rv;

    if (txn_read_coll(rd, ns, &coll_id) != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound,
                                 "Collection '%s' does not exist to validate.", ns);
    }
    rv = txn_ixset_load(rd->m->eng, rd->snap, rd->local, coll_id, ns, &s, err);
    if (rv != 0) {
        return rv;
    }
    lists = calloc(s->n + 1, sizeof *lists);
    if (lists == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "validate: out of memory");
        goto out;
    }
    rv = expected_entries(rd, coll_id, s, lists, &nrecords, &bad_docs, err);
    if (rv != 0) {
        goto out;
    }
    BSON_APPEND_UTF8(reply, "ns", ns);
    BSON_APPEND_INT64(reply, "nInvalidDocuments", bad_docs);
    BSON_APPEND_INT64(reply, "nrecords", nrecords);
    BSON_APPEND_INT32(reply, "nIndexes", (int32_t)(s->n + 1));
    bson_init(&errors);
    bson_init(&details);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "keysPerIndex", &kpi);
    BSON_APPEND_INT64(&kpi, "_id_", nrecords);
    for (size_t i = 0; i < s->n && rv == 0; i++) {
        int64_t n_keys = 0, extra = 0, missing = 0;
        bson_t one;
        rv = compare_entries(rd, &s->v[i], &lists[i], &n_keys, &extra, &missing, err);
        if (rv != 0) {
            break;
        }
        BSON_APPEND_INT64(&kpi, qry_index_name(s->v[i].ix), n_keys);
        BSON_APPEND_DOCUMENT_BEGIN(&details, qry_index_name(s->v[i].ix), &one);
        BSON_APPEND_BOOL(&one, "valid", extra == 0 && missing == 0);
        BSON_APPEND_BOOL(&one, "ready", s->v[i].ready);
        BSON_APPEND_INT64(&one, "extraIndexEntries", extra);
        BSON_APPEND_INT64(&one, "missingIndexEntries", missing);
        bson_append_document_end(&details, &one);
        if (extra != 0 || missing != 0) {
            char msg[256], k[16];
            const char *key;
            valid = false;
            snprintf(msg, sizeof msg, "index %s has %lld extra and %lld missing entries",
                     qry_index_name(s->v[i].ix), (long long)extra, (long long)missing);
            bson_uint32_to_string(bson_count_keys(&errors), &key, k, sizeof k);
            bson_append_utf8(&errors, key, -1, msg, -1);
        }
    }
    bson_append_document_end(reply, &kpi);
    if (rv == 0) {
        BSON_APPEND_DOCUMENT(reply, "indexDetails", &details);
        BSON_APPEND_BOOL(reply, "valid", valid && bad_docs == 0);
        BSON_APPEND_BOOL(reply, "repaired", false);
        BSON_APPEND_ARRAY(reply, "warnings", &(bson_t)BSON_INITIALIZER);
        BSON_APPEND_ARRAY(reply, "errors", &errors);
    }
    bson_destroy(&errors);
    bson_destroy(&details);
out:
    for (size_t i = 0; lists != NULL && i < s->n; i++) {
        keylist_free(&lists[i]);
    }
    free(lists);
    txn_ixset_unref(s);
    return rv;
}
