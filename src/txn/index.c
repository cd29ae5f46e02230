/*
 * index.c: secondary indexes in the transaction layer: the index catalog
 * (which indexes a collection has), index maintenance inside write sets,
 * index builds, createIndexes / dropIndexes / listIndexes semantics.
 *
 * Storage (docs/decisions.md §26): an index is a catalog entry named
 * "<db>.<coll>.$<name>" (created and dropped by the ordinary ENG_OP_CREATE
 * and ENG_OP_DROP ops, so ids, persistence, the overlay and replication are
 * the collections' own). Under its id, in the docs column family, live:
 *   key 0x00 's'                -> {spec: <normalised spec>, ready: bool}
 *   key 0x00 'm'                -> {} once a document had several keys or
 *                                  met an array on an indexed path
 *   key K | encoded _id         -> {_id: <id>, t: <type bits>} (non-unique)
 *   key K                       -> {_id: <id>, t: <type bits>} (unique)
 * where K is the document's key (qry_index_keys; never starts with 0x00)
 * and t the type bits that make K decode exactly (query/keydec.c; covered
 * projections): empty unless K holds numbers, strings or nulls.
 * Entries are MVCC versions written in the same commit as the documents
 * they describe, so every snapshot sees indexes consistent with documents.
 *
 * Invariants:
 *  1. The set of indexes of a collection changes only under the exclusive
 *     namespace intent on the collection, and every writer of a
 *     collection holds the shared one from resolving it to its end
 *     (write.c, 6): a write set maintains exactly the indexes that exist
 *     when it commits.
 *  2. A unique entry K is written (put or deleted) only by a write set
 *     holding the intent on (index id, K); so two writers cannot both find
 *     K free and both take it: the second waits (statement) or fails with
 *     WriteConflict (transaction), then sees the first's entry.
 *  3. A build reads each document's newest version under the document's
 *     intent, so entries it writes are never older than the document; every
 *     write committed after the index entered the catalog maintains it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "query/query.h"
#include "txn/txn_int.h"

/* mongod's limit of indexes per collection, the _id index included. */
#define MAX_INDEXES 64

/* A build commits what it staged past this many bytes: the first commit
 * lets the collection's writers go on (they wait for the build's
 * exclusive intent until then), later ones bound each log entry. */
#define BUILD_CHUNK_BYTES ((size_t)1 << 20)

const uint8_t txn_ix_spec_key[TXN_IX_META_LEN] = {0x00, 's'};
const uint8_t txn_ix_multikey_key[TXN_IX_META_LEN] = {0x00, 'm'};
#define SPEC_KEY txn_ix_spec_key

/* ---- The index catalog ------------------------------------------------------ */

int txn_ixcache_init(struct txn_ixcache *c)
{
    memset(c, 0, sizeof *c);
    return pthread_mutex_init(&c->mu, NULL) == 0 ? 0 : CAIRN_ENOMEM;
}

static void ixset_free(struct txn_ixset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        qry_index_free(s->v[i].ix);
    }
    free(s->v);
    free(s);
}

void txn_ixset_unref(struct txn_ixset *s)
{
    if (s != NULL && atomic_fetch_sub(&s->ref, 1) == 1) {
        ixset_free(s);
    }
}

void txn_ixcache_destroy(struct txn_ixcache *c)
{
    for (size_t i = 0; i < c->n; i++) {
        txn_ixset_unref(c->sets[i]);
    }
    free(c->sets);
    pthread_mutex_destroy(&c->mu);
}

/* Parses a stored spec wrapper into `d` (d->id set by the caller). */
static int parse_stored(const uint8_t *data,
                        size_t len,
                        struct txn_ixdesc *d,
                        struct cairn_error *err)
{
    bson_t wrap, spec;
    bson_iter_t it;
    uint32_t slen;
    const uint8_t *sdata;

    if (!bson_init_static(&wrap, data, len) || !bson_iter_init_find(&it, &wrap, "spec") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "index %s: bad stored spec", d->ns);
    }
    bson_iter_document(&it, &slen, &sdata);
    if (!bson_init_static(&spec, sdata, slen)) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "index %s: bad stored spec", d->ns);
    }
    d->ready = bson_iter_init_find(&it, &wrap, "ready") && bson_iter_as_bool(&it);
    if (qry_index_compile(&spec, &d->ix, err) != 0) {
        return cairn_error_wrapf(err, "index %s: stored spec", d->ns);
    }
    return 0;
}

/* Gives `d` (a copy of another set's descriptor) a compiled index of its
 * own, from that descriptor's normalised spec. */
static int parse_stored_spec_of(struct txn_ixdesc *d, const bson_t *spec, struct cairn_error *err)
{
    d->ix = NULL;
    return qry_index_compile(spec, &d->ix, err);
}

static int desc_cmp(const void *pa, const void *pb)
{
    const struct txn_ixdesc *a = pa, *b = pb;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Copies the database part of `ns` into db. */
static void ns_db(const char *ns, char *db, size_t size)
{
    const char *dot = strchr(ns, '.');
    size_t n = dot ? (size_t)(dot - ns) : strlen(ns);
    if (n >= size) {
        n = size - 1;
    }
    memcpy(db, ns, n);
    db[n] = '\0';
}

/* True when `ix_ns` names an index of collection `ns`. */
static bool index_of(const char *ix_ns, const char *ns)
{
    size_t n = strlen(ns);
    return strncmp(ix_ns, ns, n) == 0 && ix_ns[n] == '.' && ix_ns[n + 1] == '$';
}

int txn_ixset_load(struct eng *e,
                   struct eng_snap *snap,
                   bool local,
                   uint64_t coll_id,
                   const char *ns,
                   struct txn_ixset **out,
                   struct cairn_error *err)
{
    char db[ENG_NS_MAX + 1];
    struct eng_coll_info *infos = NULL;
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct txn_ixset *s = calloc(1, sizeof *s);
    size_t n = 0;
    int rv;

    if (s == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    atomic_init(&s->ref, 1);
    s->coll_id = coll_id;
    snprintf(s->ns, sizeof s->ns, "%s", ns);
    s->gen = eng_catalog_gen(e);
    ns_db(ns, db, sizeof db);
    rv = eng_catalog_list(e, db, local, &infos, &n);
    if (rv != 0) {
        rv = cairn_error_setf(err, rv, "txn: listing indexes");
        goto fail;
    }
    s->v = calloc(n ? n : 1, sizeof *s->v);
    if (s->v == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto fail;
    }
    /* A read below a rename resolved the old name to the id (the engine's
     * rename aliases): its indexes are named after the id's current name,
     * in the same database. */
    for (size_t i = 0; i < n; i++) {
        if (infos[i].id == coll_id && strcmp(infos[i].ns, ns) != 0) {
            ns = infos[i].ns;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct txn_ixdesc *d = &s->v[s->n];
        cairn_ts ts;
        if (!index_of(infos[i].ns, ns)) {
            continue;
        }
        cairn_buf_reset(&buf);
        rv = snap != NULL ? eng_snap_get(snap, infos[i].id, SPEC_KEY, TXN_IX_META_LEN, &buf, err)
                          : eng_latest(e, infos[i].id, SPEC_KEY, TXN_IX_META_LEN, &buf, &ts, err);
        if (rv == CAIRN_ENOTFOUND) {
            continue; /* created after the snapshot */
        }
        if (rv != 0) {
            goto fail;
        }
        d->id = infos[i].id;
        memcpy(d->ns, infos[i].ns, sizeof d->ns);
        rv = parse_stored(buf.data, buf.len, d, err);
        if (rv != 0) {
            goto fail;
        }
        s->n++;
    }
    qsort(s->v, s->n, sizeof *s->v, desc_cmp);
    free(infos);
    cairn_buf_free(&buf);
    *out = s;
    return 0;
fail:
    free(infos);
    cairn_buf_free(&buf);
    if (s->v == NULL) {
        free(s);
    } else {
        ixset_free(s);
    }
    return rv;
}

int txn_ixset_get(struct txn_mgr *m,
                  uint64_t coll_id,
                  const char *ns,
                  struct txn_ixset **out,
                  struct cairn_error *err)
{
    struct txn_ixcache *c = &m->ixcache;
    uint64_t gen = eng_catalog_gen(m->eng);
    struct txn_ixset *s = NULL;
    size_t i;
    int rv;

    /* A hit needs the name too: a read below a rename resolves the old
     * name to the same id, and its set (listed under that name) must not
     * serve the writers of the new one. */
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < c->n; i++) {
        if (c->sets[i]->coll_id == coll_id && strcmp(c->sets[i]->ns, ns) == 0) {
            break;
        }
    }
    if (i < c->n && c->sets[i]->gen == gen) {
        s = c->sets[i];
        atomic_fetch_add(&s->ref, 1);
    }
    pthread_mutex_unlock(&c->mu);
    if (s != NULL) {
        *out = s;
        return 0;
    }
    rv = txn_ixset_load(m->eng, NULL, true, coll_id, ns, &s, err);
    if (rv != 0) {
        return rv;
    }
    pthread_mutex_lock(&c->mu);
    for (i = 0; i < c->n; i++) {
        if (c->sets[i]->coll_id == coll_id) { /* one set per id: it replaces */
            break;
        }
    }
    if (i == c->n && c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct txn_ixset **p = realloc(c->sets, cap * sizeof *p);
        if (p != NULL) {
            c->sets = p;
            c->cap = cap;
        }
    }
    if (i < c->n) {
        txn_ixset_unref(c->sets[i]);
        c->sets[i] = s;
        atomic_fetch_add(&s->ref, 1);
    } else if (c->n < c->cap) {
        c->sets[c->n++] = s;
        atomic_fetch_add(&s->ref, 1);
    }
    pthread_mutex_unlock(&c->mu);
    *out = s;
    return 0;
}

/* ---- Maintenance ------------------------------------------------------------ */

/* The indexes write `w` maintains on (coll_id, ns): the catalog's, plus
 * those a transaction created itself (staged, not yet in the catalog). */
static int ixset_for_write(struct txn_write *w,
                           uint64_t coll_id,
                           const char *ns,
                           struct txn_ixset **out,
                           struct cairn_error *err)
{
    struct txn_ixset *base = NULL, *s = NULL;
    size_t n_staged = 0;
    int rv = txn_ixset_get(w->m, coll_id, ns, &base, err);

    if (rv != 0 || !w->multi) {
        *out = base;
        return rv;
    }
    for (size_t i = 0; i < w->n_ops; i++) {
        n_staged += w->ops[i].kind == ENG_OP_CREATE && index_of(w->ops[i].ns, ns);
    }
    if (n_staged == 0) {
        *out = base;
        return 0;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->v = calloc(base->n + n_staged, sizeof *s->v)) == NULL) {
        free(s);
        txn_ixset_unref(base);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    atomic_init(&s->ref, 1);
    s->coll_id = coll_id;
    for (size_t i = 0; i < base->n + w->n_ops && rv == 0; i++) {
        struct txn_ixdesc *d = &s->v[s->n];
        const struct txn_staged *spec;
        if (i < base->n) {
            *d = base->v[i];
            rv = parse_stored_spec_of(d, qry_index_spec(base->v[i].ix), err);
        } else {
            const struct txn_staged *op = &w->ops[i - base->n];
            if (op->kind != ENG_OP_CREATE || !index_of(op->ns, ns)) {
                continue;
            }
            spec = txn_write_staged(w, op->coll_id, SPEC_KEY, TXN_IX_META_LEN);
            if (spec == NULL || spec->doc == NULL) {
                continue;
            }
            d->id = op->coll_id;
            snprintf(d->ns, sizeof d->ns, "%s", op->ns);
            rv = parse_stored(spec->doc, spec->doc_len, d, err);
        }
        s->n += rv == 0;
    }
    txn_ixset_unref(base);
    if (rv != 0) {
        ixset_free(s);
        return rv;
    }
    qsort(s->v, s->n, sizeof *s->v, desc_cmp);
    *out = s;
    return 0;
}

int txn_ix_any(struct txn_write *w, uint64_t coll_id, bool *any, struct cairn_error *err)
{
    const char *ns = txn_write_coll_ns(w, coll_id);
    struct txn_ixset *s = NULL;
    int rv;

    *any = false;
    if (ns == NULL) {
        return 0;
    }
    rv = ixset_for_write(w, coll_id, ns, &s, err);
    if (rv == 0) {
        *any = s->n > 0;
        txn_ixset_unref(s);
    }
    return rv;
}

/* Formats "{ a: 1, b: \"x\" }" from {a: 1, b: "x"}. */
static void format_key_value(const bson_t *vals, char *out, size_t size)
{
    bson_iter_t it;
    size_t at = 0;
    bool first = true;

    at += (size_t)snprintf(out + at, size - at, "{ ");
    bson_iter_init(&it, vals);
    while (bson_iter_next(&it) && at < size) {
        bson_t one = BSON_INITIALIZER;
        char *json;
        const char *v = "?";
        bson_append_value(&one, "v", 1, bson_iter_value(&it));
        json = bson_as_relaxed_extended_json(&one, NULL);
        if (json != NULL && strncmp(json, "{ \"v\" : ", 8) == 0) {
            size_t l = strlen(json);
            if (l >= 10) {
                json[l - 2] = '\0'; /* " }" */
            }
            v = json + 8;
        }
        at += (size_t)snprintf(out + at, size - at, "%s%s: %s", first ? "" : ", ",
                               bson_iter_key(&it), v);
        first = false;
        bson_free(json);
        bson_destroy(&one);
    }
    if (at < size) {
        snprintf(out + at, size - at, " }");
    }
}

static int dup_error(struct txn_write *w,
                     uint64_t coll_id,
                     const struct txn_ixdesc *d,
                     const bson_t *vals,
                     struct cairn_error *err)
{
    const char *ns = txn_write_coll_ns(w, coll_id);
    char kv[160];

    format_key_value(vals, kv, sizeof kv);
    txn_write_set_dup(w, qry_index_key_pattern(d->ix), vals);
    return cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_DuplicateKey,
                             "E11000 duplicate key error collection: %s index: %s dup key: %s",
                             ns ? ns : "?", qry_index_name(d->ix), kv);
}

/* Whether the unique entry K of index `d` belongs to a document other
 * than the one whose encoded _id is `idkey`: checks the write's staging,
 * then its snapshot (transactions: the intent made it current) or the
 * newest version (statements). */
static int unique_taken(struct txn_write *w,
                        const struct txn_ixdesc *d,
                        const uint8_t *k,
                        size_t klen,
                        const bson_value_t *my_id,
                        bool *taken,
                        struct cairn_error *err)
{
    const struct txn_staged *op = txn_write_staged(w, d->id, k, klen);
    struct cairn_buf buf = CAIRN_BUF_INIT;
    const uint8_t *data;
    size_t len;
    bson_t doc;
    bson_iter_t it;
    cairn_ts ts;
    int rv = 0;

    *taken = false;
    if (op != NULL) {
        if (op->kind == ENG_OP_DELETE) {
            return 0;
        }
        data = op->doc;
        len = op->doc_len;
    } else {
        rv = w->multi ? eng_snap_get(w->rd.snap, d->id, k, klen, &buf, err)
                      : eng_latest(w->m->eng, d->id, k, klen, &buf, &ts, err);
        if (rv == CAIRN_ENOTFOUND) {
            return 0;
        }
        if (rv != 0) {
            return rv;
        }
        data = buf.data;
        len = buf.len;
    }
    if (bson_init_static(&doc, data, len) && bson_iter_init_find(&it, &doc, "_id")) {
        *taken = qry_cmp(bson_iter_value(&it), my_id) != 0;
    }
    cairn_buf_free(&buf);
    return rv;
}

/* One key that changes in a unique index, for ordered intents. */
struct ukey
{
    const uint8_t *k;
    size_t len;
};

static int ukey_cmp(const void *pa, const void *pb)
{
    const struct ukey *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->k, b->k, n);
    return c != 0 ? c : (a->len > b->len) - (a->len < b->len);
}

/* Takes, pinned and in key order, the intents on the keys of unique index
 * `d` that differ between `oldk` and `newk`. */
static int lock_unique_changes(struct txn_write *w,
                               const struct txn_ixdesc *d,
                               const struct qry_ixkeys *oldk,
                               const struct qry_ixkeys *newk,
                               struct cairn_error *err)
{
    struct ukey *v = malloc((oldk->n + newk->n + 1) * sizeof *v);
    size_t n = 0;
    int rv = 0;

    if (v == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    for (size_t i = 0; i < newk->n; i++) {
        const uint8_t *k = newk->buf.data + newk->off[i];
        if (!qry_ixkeys_has_same(oldk, newk, i)) { /* rewritten: new key or type bits */
            v[n++] = (struct ukey){k, newk->len[i]};
        }
    }
    for (size_t i = 0; i < oldk->n; i++) {
        const uint8_t *k = oldk->buf.data + oldk->off[i];
        if (!qry_ixkeys_has(newk, k, oldk->len[i])) {
            v[n++] = (struct ukey){k, oldk->len[i]};
        }
    }
    qsort(v, n, sizeof *v, ukey_cmp);
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = txn_write_lock_key(w, d->id, v[i].k, v[i].len, false, err);
        if (rv == 0) {
            struct txn_lock *l = txn_write_held(w, d->id, v[i].k, v[i].len);
            if (l != NULL) {
                l->pinned = true;
            }
        }
    }
    free(v);
    return rv;
}

/* Builds the entry key of key i of `keys` for the document `idkey`. */
static int entry_key(const struct txn_ixdesc *d,
                     const struct qry_ixkeys *keys,
                     size_t i,
                     const struct cairn_buf *idkey,
                     struct cairn_buf *out)
{
    cairn_buf_reset(out);
    int rv = cairn_buf_append(out, keys->buf.data + keys->off[i], keys->len[i]);
    if (rv == 0 && !qry_index_unique(d->ix)) {
        rv = cairn_buf_append(out, idkey->data, idkey->len);
    }
    return rv;
}

/* Stages the multikey marker of index `d` unless it is there already (in
 * the staging or the newest state). A marker seen in the overlay that is
 * later discarded takes every later commit with it, this one included. */
static int mark_multikey(struct txn_write *w, const struct txn_ixdesc *d, struct cairn_error *err)
{
    static const uint8_t empty_doc[5] = {5, 0, 0, 0, 0};
    const struct txn_staged *op = txn_write_staged(w, d->id, txn_ix_multikey_key, TXN_IX_META_LEN);
    cairn_ts ts;
    int rv;

    if (op != NULL && op->kind == ENG_OP_PUT) {
        return 0;
    }
    rv = eng_latest(w->m->eng, d->id, txn_ix_multikey_key, TXN_IX_META_LEN, NULL, &ts, err);
    if (rv == 0) {
        return 0;
    }
    if (rv != CAIRN_ENOTFOUND) {
        return rv;
    }
    return txn_write_stage_raw(w, d->id, txn_ix_multikey_key, TXN_IX_META_LEN, empty_doc,
                               sizeof empty_doc, err);
}

/* Maintenance of the indexes v[0..n) (see txn_ix_maintain). */
static int maintain_set(struct txn_write *w,
                        uint64_t coll_id,
                        const struct txn_ixdesc *v,
                        size_t n,
                        const bson_t *old,
                        const bson_t *new_doc,
                        struct cairn_error *err)
{
    struct qry_ixkeys *oldk = calloc(n ? n : 1, sizeof *oldk);
    struct qry_ixkeys *newk = calloc(n ? n : 1, sizeof *newk);
    struct cairn_buf idkey = CAIRN_BUF_INIT, ek = CAIRN_BUF_INIT;
    bson_t entry = BSON_INITIALIZER;
    const bson_t *src = new_doc != NULL ? new_doc : old;
    bson_iter_t it;
    const bson_value_t *id;
    struct txn_lock *doclock;
    int rv = 0;

    if (oldk == NULL || newk == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    if (src == NULL || !bson_iter_init_find(&it, src, "_id")) {
        rv = cairn_error_setf(err, CAIRN_EINVAL, "index maintenance: document without _id");
        goto out;
    }
    id = bson_iter_value(&it);
    if (cairn_buf_append(&idkey, w->key.data, w->key.len) != 0) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    /* The document's intent stays ours if a unique wait flushes (write.c, 4). */
    doclock = txn_write_held(w, coll_id, idkey.data, idkey.len);
    if (doclock != NULL) {
        doclock->pinned = true;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (old != NULL && qry_index_keys(v[i].ix, old, &oldk[i], err) != 0) {
            /* Indexed once, so it cannot fail but for memory: then its
             * entries would stay behind. */
            rv = err != NULL ? err->code : CAIRN_ENOMEM;
        }
        if (rv == 0 && new_doc != NULL) {
            rv = qry_index_keys(v[i].ix, new_doc, &newk[i], err);
        }
    }
    /* Unique keys: intents in (index id, key) order, then the checks. */
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (!qry_index_unique(v[i].ix)) {
            continue;
        }
        rv = lock_unique_changes(w, &v[i], &oldk[i], &newk[i], err);
        for (size_t j = 0; j < newk[i].n && rv == 0; j++) {
            const uint8_t *k = newk[i].buf.data + newk[i].off[j];
            bool taken = false;
            if (qry_ixkeys_has(&oldk[i], k, newk[i].len[j])) {
                continue;
            }
            rv = unique_taken(w, &v[i], k, newk[i].len[j], id, &taken, err);
            if (rv == 0 && taken) {
                rv = dup_error(w, coll_id, &v[i], newk[i].vals[j], err);
            }
        }
    }
    /* Stage: deleted entries, then added ones (and the multikey marker). */
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (newk[i].n > 1 || newk[i].arrays) {
            rv = mark_multikey(w, &v[i], err);
        }
        for (size_t j = 0; j < oldk[i].n && rv == 0; j++) {
            if (qry_ixkeys_has(&newk[i], oldk[i].buf.data + oldk[i].off[j], oldk[i].len[j])) {
                continue;
            }
            rv = entry_key(&v[i], &oldk[i], j, &idkey, &ek);
            rv = rv ? cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory")
                    : txn_write_stage_raw(w, v[i].id, ek.data, ek.len, NULL, 0, err);
        }
        for (size_t j = 0; j < newk[i].n && rv == 0; j++) {
            /* Same key and type bits: the entry stands. Same key with
             * other type bits (1 became 1.0): rewritten for its value. */
            if (qry_ixkeys_has_same(&oldk[i], &newk[i], j)) {
                continue;
            }
            rv = entry_key(&v[i], &newk[i], j, &idkey, &ek);
            if (rv != 0) {
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
                break;
            }
            bson_reinit(&entry);
            BSON_APPEND_VALUE(&entry, "_id", id);
            /* Always there (maybe empty): an entry without it predates
             * type bits and the multikey rule for arrays (never covered). */
            static const uint8_t none[1] = {0};
            bson_append_binary(&entry, "t", 1, BSON_SUBTYPE_BINARY,
                               newk[i].tb_len[j] > 0 ? newk[i].tb.data + newk[i].tb_off[j] : none,
                               (uint32_t)newk[i].tb_len[j]);
            rv = txn_write_stage_raw(w, v[i].id, ek.data, ek.len, bson_get_data(&entry), entry.len,
                                     err);
        }
    }
out:
    txn_write_unpin(w);
    for (size_t i = 0; i < n && oldk != NULL && newk != NULL; i++) {
        qry_ixkeys_fini(&oldk[i]);
        qry_ixkeys_fini(&newk[i]);
    }
    free(oldk);
    free(newk);
    cairn_buf_free(&idkey);
    cairn_buf_free(&ek);
    bson_destroy(&entry);
    return rv;
}

int txn_ix_maintain(struct txn_write *w,
                    uint64_t coll_id,
                    const bson_t *old,
                    const bson_t *new_doc,
                    struct cairn_error *err)
{
    const char *ns = txn_write_coll_ns(w, coll_id);
    struct txn_ixset *s = NULL;
    int rv;

    if (ns == NULL) {
        return 0;
    }
    rv = ixset_for_write(w, coll_id, ns, &s, err);
    if (rv != 0) {
        return rv;
    }
    if (s->n > 0) {
        rv = maintain_set(w, coll_id, s->v, s->n, old, new_doc, err);
    }
    txn_ixset_unref(s);
    return rv;
}

int txn_ix_drop_all(struct txn_write *w, const char *ns, struct cairn_error *err)
{
    char db[ENG_NS_MAX + 1];
    struct eng_coll_info *infos = NULL;
    size_t n = 0;
    int rv;

    ns_db(ns, db, sizeof db);
    rv = eng_catalog_list(w->m->eng, db, true, &infos, &n);
    if (rv != 0) {
        return cairn_error_setf(err, rv, "txn: listing indexes");
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (index_of(infos[i].ns, ns)) {
            rv = txn_write_stage_drop(w, infos[i].ns, infos[i].id, err);
        }
    }
    free(infos);
    return rv;
}

/* ---- listIndexes ------------------------------------------------------------ */

int txn_read_indexes(struct txn_read *rd,
                     const char *ns,
                     bson_t ***out,
                     size_t *n_out,
                     struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    bson_t **v;
    uint64_t coll_id;
    size_t n = 0;
    int rv;

    *out = NULL;
    *n_out = 0;
    rv = txn_read_coll(rd, ns, &coll_id);
    if (rv != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound,
                                 "ns does not exist: %s", ns);
    }
    rv = txn_ixset_load(rd->m->eng, rd->snap, rd->local, coll_id, ns, &s, err);
    if (rv != 0) {
        return rv;
    }
    v = calloc(s->n + 1, sizeof *v);
    if (v == NULL) {
        txn_ixset_unref(s);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].ready) {
            v[n++] = bson_copy(qry_index_spec(s->v[i].ix));
        }
    }
    txn_ixset_unref(s);
    *out = v;
    *n_out = n;
    return 0;
}

/* ---- Builds ----------------------------------------------------------------- */

static bool build_running(struct txn_mgr *m, uint64_t id)
{
    bool found = false;
    pthread_mutex_lock(&m->builds_mu);
    for (size_t i = 0; i < m->n_builds && !found; i++) {
        found = m->builds[i] == id;
    }
    pthread_mutex_unlock(&m->builds_mu);
    return found;
}

static int builds_add(struct txn_mgr *m, uint64_t id)
{
    int rv = 0;
    pthread_mutex_lock(&m->builds_mu);
    if (m->n_builds == m->cap_builds) {
        size_t cap = m->cap_builds ? m->cap_builds * 2 : 8;
        uint64_t *p = realloc(m->builds, cap * sizeof *p);
        if (p == NULL) {
            rv = CAIRN_ENOMEM;
        } else {
            m->builds = p;
            m->cap_builds = cap;
        }
    }
    if (rv == 0) {
        m->builds[m->n_builds++] = id;
    }
    pthread_mutex_unlock(&m->builds_mu);
    return rv;
}

static void builds_remove(struct txn_mgr *m, uint64_t id)
{
    pthread_mutex_lock(&m->builds_mu);
    for (size_t i = 0; i < m->n_builds; i++) {
        if (m->builds[i] == id) {
            m->builds[i] = m->builds[--m->n_builds];
            break;
        }
    }
    pthread_mutex_unlock(&m->builds_mu);
}

/* Stages the spec wrapper of index `d`. */
static int stage_spec(struct txn_write *w,
                      const struct txn_ixdesc *d,
                      bool ready,
                      struct cairn_error *err)
{
    bson_t wrap = BSON_INITIALIZER;
    int rv;

    BSON_APPEND_DOCUMENT(&wrap, "spec", qry_index_spec(d->ix));
    BSON_APPEND_BOOL(&wrap, "ready", ready);
    rv = txn_write_stage_raw(w, d->id, SPEC_KEY, TXN_IX_META_LEN, bson_get_data(&wrap), wrap.len,
                             err);
    bson_destroy(&wrap);
    return rv;
}

static bool is_id_pattern(const struct qry_index *ix)
{
    const bson_t *k = qry_index_key_pattern(ix);
    bson_iter_t it;
    return bson_count_keys(k) == 1 && bson_iter_init_find(&it, k, "_id") &&
           BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_double(&it) > 0;
}

static int spec_conflict(struct cairn_error *err,
                         int code,
                         const char *what,
                         const struct qry_index *req,
                         const struct qry_index *have)
{
    char *a = bson_as_relaxed_extended_json(qry_index_spec(req), NULL);
    char *b = bson_as_relaxed_extended_json(qry_index_spec(have), NULL);
    cairn_error_mongo(err, CAIRN_EINVAL, code, "%s Requested index: %s, existing index: %s", what,
                      a ? a : "{}", b ? b : "{}");
    bson_free(a);
    bson_free(b);
    return CAIRN_EINVAL;
}

/* Checks requested index `req` against the indexes `have` (n_have) and the
 * ones accepted before it in the same command; *exists when an identical
 * index is already there (nothing to do). */
static int check_request(const struct qry_index *req,
                         const struct txn_ixdesc *have,
                         size_t n_have,
                         const struct txn_ixdesc *accepted,
                         size_t n_acc,
                         bool *exists,
                         struct cairn_error *err)
{
    *exists = false;
    if (is_id_pattern(req)) {
        if (strcmp(qry_index_name(req), "_id_") == 0) {
            *exists = true;
            return 0;
        }
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_IndexOptionsConflict,
                                 "Index already exists with a different name: _id_");
    }
    if (strcmp(qry_index_name(req), "_id_") == 0) {
        char *a = bson_as_relaxed_extended_json(qry_index_spec(req), NULL);
        cairn_error_mongo(err, CAIRN_EINVAL, MONGO_IndexKeySpecsConflict,
                          "An existing index has the same name as the requested index. Requested "
                          "index: %s, existing index: { v: 2, key: { _id: 1 }, name: \"_id_\" }",
                          a ? a : "{}");
        bson_free(a);
        return CAIRN_EINVAL;
    }
    for (size_t i = 0; i < n_have + n_acc; i++) {
        const struct qry_index *ix = i < n_have ? have[i].ix : accepted[i - n_have].ix;
        enum qry_index_cmp c = qry_index_compare(req, ix);
        if (strcmp(qry_index_name(ix), qry_index_name(req)) == 0) {
            if (c == QRY_INDEX_DIFFERENT) {
                return spec_conflict(err, MONGO_IndexKeySpecsConflict,
                                     "An existing index has the same name as the requested index.",
                                     req, ix);
            }
            if (c == QRY_INDEX_EQUIVALENT) {
                return spec_conflict(err, MONGO_IndexOptionsConflict,
                                     "An equivalent index already exists with the same name but "
                                     "different options.",
                                     req, ix);
            }
            *exists = true;
            return 0;
        }
        if (c == QRY_INDEX_EQUIVALENT) {
            return spec_conflict(err, MONGO_IndexOptionsConflict,
                                 "An equivalent index already exists with a different name and "
                                 "options.",
                                 req, ix);
        }
        if (c == QRY_INDEX_SAME) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_IndexOptionsConflict,
                                     "Index already exists with a different name: %s",
                                     qry_index_name(ix));
        }
    }
    return 0;
}

/* Writes the entries of indexes v[0..n) for every document of `coll_id`
 * (invariant 3). Statements commit every BUILD_CHUNK_BYTES. */
static int build_entries(struct txn_write *w,
                         uint64_t coll_id,
                         const struct txn_ixdesc *v,
                         size_t n,
                         struct cairn_error *err)
{
    struct txn_read *rd = NULL;
    struct txn_scan *sc = NULL;
    bson_t doc;
    int rv, r;

    rv = txn_write_reader(w, &rd, err);
    if (rv == 0) {
        rv = txn_scan_open(rd, coll_id, &sc, err);
    }
    while (rv == 0 && (r = txn_scan_next(sc, &doc)) != 0) {
        bson_iter_t it;
        bson_t cur;
        if (r < 0) {
            const struct cairn_error *se = txn_scan_error(sc);
            rv = cairn_error_setf(err, se->code ? se->code : CAIRN_EIO, "%s", se->msg);
            break;
        }
        rv = cairn_op_poll(cairn_op_current(), err);
        if (rv != 0) {
            break;
        }
        if (!bson_iter_init_find(&it, &doc, "_id")) {
            continue;
        }
        bson_value_t id;
        bson_value_copy(bson_iter_value(&it), &id);
        rv = txn_write_lock(w, coll_id, &id, &cur, err);
        bson_value_destroy(&id);
        if (rv == CAIRN_ENOTFOUND) {
            rv = 0; /* deleted since the scan's view */
            continue;
        }
        if (rv != 0) {
            break;
        }
        rv = maintain_set(w, coll_id, v, n, NULL, &cur, err);
        bson_destroy(&cur);
        if (rv == 0 && !w->multi && txn_write_staged_bytes(w) > BUILD_CHUNK_BYTES) {
            cairn_ts ts;
            rv = txn_write_flush(w, &ts, err);
        }
    }
    txn_scan_close(sc);
    return rv;
}

/* Discards what a failed build staged and, when parts of it were
 * committed already, drops the indexes it created (nothing left behind). */
static void build_undo(struct txn_write *w,
                       const char *ns,
                       const struct txn_ixdesc *v,
                       size_t n,
                       bool flushed)
{
    struct cairn_error e2;
    cairn_ts ts;
    int rv;

    txn_write_discard_staged(w);
    if (!flushed) {
        return;
    }
    rv = txn_write_lock_key(w, 0, (const uint8_t *)ns, strlen(ns), false, &e2);
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = txn_write_stage_drop(w, v[i].ns, v[i].id, &e2);
    }
    if (rv == 0) {
        rv = txn_write_flush(w, &ts, &e2);
    }
    if (rv != 0) {
        cairn_log(CAIRN_LOG_ERROR, "txn",
                  "index build on %s failed and its partial indexes could not be dropped: %s", ns,
                  e2.msg);
    }
}

int txn_index_create(struct txn_write *w,
                     const char *ns,
                     const bson_t *const *specs,
                     size_t n_specs,
                     struct txn_index_result *res,
                     struct cairn_error *err)
{
    struct qry_index **req = calloc(n_specs + 1, sizeof *req);
    struct txn_ixdesc *nv = calloc(n_specs + 1, sizeof *nv);
    struct txn_ixset *have = NULL;
    size_t n_new = 0, n_building = 0;
    cairn_ts before = txn_write_last_ts(w);
    uint64_t coll_id = 0;
    int rv = 0;

    memset(res, 0, sizeof *res);
    if (req == NULL || nv == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_specs && rv == 0; i++) {
        rv = qry_index_compile(specs[i], &req[i], err);
    }
    if (rv != 0) {
        goto out;
    }
    /* Invariant 1: the exclusive intent waits for the collection's writers. */
    if (strstr(ns, ".$") == NULL) {
        rv = txn_write_lock_key(w, 0, (const uint8_t *)ns, strlen(ns), false, err);
    }
    if (rv == 0) {
        rv = txn_write_coll(w, ns, true, &coll_id, &res->created_collection, err);
    }
    if (rv == 0) {
        rv = txn_write_refresh_view(w, err); /* sees everything before the intent */
    }
    if (rv == 0) {
        rv = txn_ixset_load(w->m->eng, NULL, true, coll_id, ns, &have, err);
    }
    if (rv != 0) {
        goto out;
    }
    res->n_before = 1;
    for (size_t i = 0; i < have->n; i++) {
        res->n_before += have->v[i].ready ? 1 : 0;
    }
    for (size_t i = 0; i < n_specs && rv == 0; i++) {
        bool exists = false;
        /* An unfinished index no build here is working on was left by a
         * build that died with its primary: build it again. */
        for (size_t j = 0; j < have->n; j++) {
            if (!have->v[j].ready &&
                strcmp(qry_index_name(have->v[j].ix), qry_index_name(req[i])) == 0) {
                if (build_running(w->m, have->v[j].id)) {
                    rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_CannotCreateIndex,
                                           "an index build of %s on %s is already running",
                                           qry_index_name(req[i]), ns);
                } else {
                    rv = txn_write_stage_drop(w, have->v[j].ns, have->v[j].id, err);
                    qry_index_free(have->v[j].ix);
                    have->v[j] = have->v[--have->n];
                }
                break;
            }
        }
        if (rv == 0) {
            rv = check_request(req[i], have->v, have->n, nv, n_new, &exists, err);
        }
        if (rv != 0 || exists) {
            if (exists) {
                qry_index_free(req[i]);
                req[i] = NULL;
            }
            continue;
        }
        if (1 + have->n + n_new >= MAX_INDEXES) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_CannotCreateIndex,
                                   "add index fails, too many indexes for %s", ns);
            break;
        }
        struct txn_ixdesc *d = &nv[n_new];
        int len = snprintf(d->ns, sizeof d->ns, "%s.$%s", ns, qry_index_name(req[i]));
        if (len < 0 || (size_t)len > ENG_NS_MAX) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_CannotCreateIndex,
                                   "namespace name generated from index name is too long: %s.$%s",
                                   ns, qry_index_name(req[i]));
            break;
        }
        d->ix = req[i];
        req[i] = NULL;
        n_new++;
    }
    if (rv != 0) {
        goto out;
    }
    res->n_after = res->n_before + (int)n_new;
    if (n_new == 0) {
        res->all_existed = true;
        goto out;
    }
    for (size_t i = 0; i < n_new && rv == 0; i++) {
        rv = txn_write_stage_create(w, nv[i].ns, &nv[i].id, err);
        if (rv == 0) {
            rv = stage_spec(w, &nv[i], false, err);
        }
        if (rv == 0) {
            rv = builds_add(w->m, nv[i].id);
            n_building += rv == 0;
        }
    }
    if (rv == 0) {
        rv = build_entries(w, coll_id, nv, n_new, err);
    }
    for (size_t i = 0; i < n_new && rv == 0; i++) {
        rv = stage_spec(w, &nv[i], true, err);
    }
    if (rv != 0 && !w->multi) {
        build_undo(w, ns, nv, n_new, txn_write_last_ts(w) != before);
    }
out:
    for (size_t i = 0; i < n_building; i++) {
        builds_remove(w->m, nv[i].id);
    }
    for (size_t i = 0; i < n_specs && req != NULL; i++) {
        qry_index_free(req[i]);
    }
    for (size_t i = 0; i < n_new; i++) {
        qry_index_free(nv[i].ix);
    }
    free(req);
    free(nv);
    txn_ixset_unref(have);
    return rv;
}

/* ---- dropIndexes ------------------------------------------------------------ */

static bool pattern_equal(const struct qry_index *ix, const bson_t *key)
{
    return qry_cmp_docs(qry_index_key_pattern(ix), key) == 0 &&
           bson_count_keys(qry_index_key_pattern(ix)) == bson_count_keys(key);
}

/* Finds the index named by `target` (a name or a key pattern). */
static int find_target(const struct txn_ixset *s,
                       const bson_value_t *target,
                       const struct txn_ixdesc **out,
                       struct cairn_error *err)
{
    *out = NULL;
    if (target->value_type == BSON_TYPE_UTF8) {
        const char *name = target->value.v_utf8.str;
        if (strcmp(name, "_id_") == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                     "cannot drop _id index");
        }
        for (size_t i = 0; i < s->n; i++) {
            if (strcmp(qry_index_name(s->v[i].ix), name) == 0) {
                *out = &s->v[i];
                return 0;
            }
        }
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_IndexNotFound,
                                 "index not found with name [%s]", name);
    }
    bson_t key;
    if (!bson_init_static(&key, target->value.v_doc.data, target->value.v_doc.data_len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "bad index key pattern");
    }
    bson_iter_t it;
    if (bson_count_keys(&key) == 1 && bson_iter_init_find(&it, &key, "_id")) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions, "cannot drop _id index");
    }
    for (size_t i = 0; i < s->n; i++) {
        if (pattern_equal(s->v[i].ix, &key)) {
            *out = &s->v[i];
            return 0;
        }
    }
    char *json = bson_as_relaxed_extended_json(&key, NULL);
    cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_IndexNotFound, "can't find index with key: %s",
                      json ? json : "{}");
    bson_free(json);
    return CAIRN_ENOTFOUND;
}

int txn_index_drop(struct txn_write *w,
                   const char *ns,
                   const bson_value_t *target,
                   int *n_was,
                   struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    uint64_t coll_id;
    int rv;

    *n_was = 0;
    if (strstr(ns, ".$") != NULL) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found %s",
                                 ns);
    }
    rv = txn_write_lock_key(w, 0, (const uint8_t *)ns, strlen(ns), false, err);
    if (rv == 0 && txn_write_coll(w, ns, false, &coll_id, NULL, err) != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found %s",
                                 ns);
    }
    if (rv == 0) {
        rv = txn_ixset_load(w->m->eng, NULL, true, coll_id, ns, &s, err);
    }
    if (rv != 0) {
        return rv;
    }
    *n_was = 1;
    for (size_t i = 0; i < s->n; i++) {
        *n_was += s->v[i].ready ? 1 : 0;
    }
    if (target->value_type == BSON_TYPE_UTF8 && strcmp(target->value.v_utf8.str, "*") == 0) {
        for (size_t i = 0; i < s->n && rv == 0; i++) {
            rv = txn_write_stage_drop(w, s->v[i].ns, s->v[i].id, err);
        }
    } else if (target->value_type == BSON_TYPE_ARRAY) {
        bson_t arr;
        bson_iter_t it;
        const struct txn_ixdesc *d;
        if (!bson_init_static(&arr, target->value.v_doc.data, target->value.v_doc.data_len) ||
            !bson_iter_init(&it, &arr)) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "bad index list");
        }
        /* All names first: a missing one drops nothing. */
        while (rv == 0 && bson_iter_next(&it)) {
            rv = find_target(s, bson_iter_value(&it), &d, err);
        }
        if (rv == 0) {
            bson_iter_init(&it, &arr);
        }
        bool *done = calloc(s->n + 1, sizeof *done);
        if (done == NULL && rv == 0) {
            rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        while (rv == 0 && bson_iter_next(&it)) {
            rv = find_target(s, bson_iter_value(&it), &d, err);
            if (rv == 0 && !done[d - s->v]) {
                done[d - s->v] = true; /* a repeated name is dropped once */
                rv = txn_write_stage_drop(w, d->ns, d->id, err);
            }
        }
        free(done);
    } else {
        const struct txn_ixdesc *d;
        rv = find_target(s, target, &d, err);
        if (rv == 0) {
            rv = txn_write_stage_drop(w, d->ns, d->id, err);
        }
    }
    txn_ixset_unref(s);
    return rv;
}
