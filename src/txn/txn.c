/*
 * txn.c: reads, single-writer writes and the cluster clock (see txn.h).
 *
 * Invariants:
 *  1. At most one txn_write exists at a time (the manager's write lock is
 *     held from txn_write_begin to commit/abort). Its view is taken under
 *     the lock, so it sees every earlier commit, applied or in the overlay.
 *  2. Timestamps are assigned under the write lock, strictly increasing:
 *     ts = max(cluster time + 1, Timestamp(wall seconds, 1)); the cluster
 *     time is then raised to ts. Commits are added to the overlay and
 *     proposed in that order, so raft order == ts order.
 *  3. The cluster time never goes below the applied watermark (which after
 *     a leader's barrier covers its whole log) nor below gossip received.
 *
 * Staged ops live in an array in staging order with a hash index on
 * (collection id, encoded _id) so that inserts of large batches check
 * duplicates in O(1). Staging the same key twice replaces the earlier op.
 */
#include "txn.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/clock.h"
#include "query/query.h"

struct txn_mgr
{
    struct eng *eng;
    struct repl *repl;
    pthread_mutex_t write_lock;
    _Atomic uint64_t cluster_ts;
    _Atomic int64_t lifetime_secs;
};

struct txn_read
{
    struct txn_mgr *m;
    struct eng_snap *snap;
    bool local;
};

struct txn_scan
{
    struct eng_iter *it;
    struct cairn_error err;
};

/* One staged op; buffers are owned by the write. */
struct staged
{
    int kind;
    uint64_t coll_id;
    uint8_t *key;
    size_t key_len;
    uint8_t *doc;
    size_t doc_len;
    char *ns;
};

struct txn_write
{
    struct txn_mgr *m;
    struct txn_read rd;
    struct staged *ops;
    size_t n_ops;
    size_t cap_ops;
    /* Open-addressing index into ops for PUT/DELETE: slot = op index + 1. */
    size_t *slots;
    size_t n_slots;
    uint64_t next_coll_id; /* 0 = ask the engine */
    size_t staged_bytes;   /* since the last flush */
    struct cairn_buf key;  /* scratch for key encoding */
};

/* ---- Manager and clock ------------------------------------------------- */

int txn_mgr_open(struct eng *e, struct repl *r, struct txn_mgr **out, struct cairn_error *err)
{
    struct txn_mgr *m = calloc(1, sizeof *m);
    cairn_index idx;
    cairn_ts ts;

    if (m == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    m->eng = e;
    m->repl = r;
    pthread_mutex_init(&m->write_lock, NULL);
    eng_applied(e, &idx, &ts);
    atomic_store(&m->cluster_ts, ts);
    atomic_store(&m->lifetime_secs, TXN_DEFAULT_LIFETIME_SECS);
    *out = m;
    return 0;
}

void txn_mgr_close(struct txn_mgr *m)
{
    if (m == NULL) {
        return;
    }
    pthread_mutex_destroy(&m->write_lock);
    free(m);
}

int64_t txn_lifetime_limit_secs(struct txn_mgr *m)
{
    return atomic_load(&m->lifetime_secs);
}

int txn_set_lifetime_limit_secs(struct txn_mgr *m, int64_t secs, struct cairn_error *err)
{
    if (secs < 1) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "transactionLifetimeLimitSeconds must be greater than or equal "
                                 "to 1s");
    }
    atomic_store(&m->lifetime_secs, secs);
    return 0;
}

static void clock_raise(struct txn_mgr *m, cairn_ts ts)
{
    uint64_t cur = atomic_load(&m->cluster_ts);
    while (cur < ts && !atomic_compare_exchange_weak(&m->cluster_ts, &cur, ts)) {
    }
}

cairn_ts txn_cluster_time(struct txn_mgr *m)
{
    cairn_index idx;
    cairn_ts applied;

    eng_applied(m->eng, &idx, &applied);
    clock_raise(m, applied);
    return atomic_load(&m->cluster_ts);
}

int txn_cluster_time_advance(struct txn_mgr *m, cairn_ts ts, struct cairn_error *err)
{
    const int64_t year_secs = 365LL * 24 * 3600;
    int64_t now_secs = cairn_wall_ms() / 1000;

    if ((int64_t)CAIRN_TS_SECS(ts) > now_secs + year_secs) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ClusterTimeFailsRateLimiter,
                                 "clusterTime %u is too far ahead of the wall clock",
                                 CAIRN_TS_SECS(ts));
    }
    clock_raise(m, ts);
    return 0;
}

/* Assigns the next commit timestamp. Write lock held. */
static cairn_ts clock_next(struct txn_mgr *m)
{
    cairn_ts cur = txn_cluster_time(m);
    cairn_ts wall = CAIRN_TS((uint64_t)(cairn_wall_ms() / 1000), 1);
    cairn_ts ts = cur + 1 > wall ? cur + 1 : wall;
    clock_raise(m, ts);
    return ts;
}

int txn_check_ns(const char *db, const char *coll, struct cairn_error *err)
{
    size_t dl = db ? strlen(db) : 0;
    size_t cl = coll ? strlen(coll) : 0;

    if (dl == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified: empty database name");
    }
    if (strpbrk(db, "/\\. \"$") != NULL || dl > 63) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid database name: '%s'", db);
    }
    if (cl == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified '%s.'", db);
    }
    if (dl + 1 + cl > ENG_NS_MAX) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Fully qualified namespace is too long. Namespace: %s.%s Max: %d",
                                 db, coll, ENG_NS_MAX);
    }
    if (coll[0] == '.' || strchr(coll, '$') != NULL) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid collection name: %s", coll);
    }
    if (strncmp(coll, "system.", 7) == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid system namespace: %s.%s (system collections are not "
                                 "supported)",
                                 db, coll);
    }
    return 0;
}

/* ---- Reads ------------------------------------------------------------- */

static int read_init(struct txn_mgr *m, bool local, struct txn_read *rd, struct cairn_error *err)
{
    int rv;

    rd->m = m;
    rd->local = local;
    rv = eng_snap_acquire(m->eng, local, CAIRN_TS_MAX, &rd->snap, err);
    if (rv != 0) {
        return cairn_error_wrapf(err, "begin read");
    }
    return 0;
}

int txn_read_begin(struct txn_mgr *m, int level, struct txn_read **out, struct cairn_error *err)
{
    struct txn_read *rd = calloc(1, sizeof *rd);
    int rv;

    if (rd == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    rv = read_init(m, level != TXN_READ_MAJORITY, rd, err);
    if (rv != 0) {
        free(rd);
        return rv;
    }
    *out = rd;
    return 0;
}

void txn_read_end(struct txn_read *rd)
{
    if (rd == NULL) {
        return;
    }
    eng_snap_release(rd->snap);
    free(rd);
}

cairn_ts txn_read_ts(const struct txn_read *rd)
{
    return eng_snap_ts(rd->snap);
}

int txn_read_coll(struct txn_read *rd, const char *ns, uint64_t *coll_id)
{
    return eng_catalog_lookup(rd->m->eng, ns, rd->local, coll_id);
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
    for (size_t i = 0; i < count; i++) {
        colls[i].id = infos[i].id;
        memcpy(colls[i].ns, infos[i].ns, sizeof colls[i].ns);
    }
    free(infos);
    *out = colls;
    *n = count;
    return 0;
}

static int encode_id(const bson_value_t *id, struct cairn_buf *key, struct cairn_error *err)
{
    cairn_buf_reset(key);
    return qry_key_encode(id, key, err);
}

/* Copies BSON bytes into `doc` after validating their framing. */
static int bytes_to_doc(const uint8_t *data, size_t len, bson_t *doc, struct cairn_error *err)
{
    bson_t view;

    if (!bson_init_static(&view, data, len)) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "stored document is not valid BSON");
    }
    bson_copy_to(&view, doc);
    return 0;
}

static int snap_get(struct eng_snap *snap,
                    uint64_t coll_id,
                    const uint8_t *key,
                    size_t key_len,
                    bson_t *doc,
                    struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    int rv = eng_snap_get(snap, coll_id, key, key_len, &buf, err);

    if (rv == 0) {
        rv = bytes_to_doc(buf.data, buf.len, doc, err);
    }
    cairn_buf_free(&buf);
    return rv;
}

int txn_read_get(struct txn_read *rd,
                 uint64_t coll_id,
                 const bson_value_t *id,
                 bson_t *doc,
                 struct cairn_error *err)
{
    struct cairn_buf key = CAIRN_BUF_INIT;
    int rv = encode_id(id, &key, err);

    if (rv == 0) {
        rv = snap_get(rd->snap, coll_id, key.data, key.len, doc, err);
    }
    cairn_buf_free(&key);
    return rv;
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
    rv = eng_iter_open(rd->snap, coll_id, NULL, 0, &sc->it, err);
    if (rv != 0) {
        free(sc);
        return rv;
    }
    *out = sc;
    return 0;
}

int txn_scan_next(struct txn_scan *sc, bson_t *doc)
{
    const uint8_t *key;
    const uint8_t *data;
    size_t key_len;
    size_t len;
    int rv = eng_iter_next(sc->it, &key, &key_len, &data, &len);

    if (rv < 0) {
        sc->err = *eng_iter_error(sc->it);
        return -1;
    }
    if (rv == 0) {
        return 0;
    }
    if (!bson_init_static(doc, data, len)) {
        cairn_error_setf(&sc->err, CAIRN_ECORRUPT, "stored document is not valid BSON");
        return -1;
    }
    return 1;
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
    eng_iter_close(sc->it);
    free(sc);
}

/* ---- Writes: staging --------------------------------------------------- */

static uint64_t hash_key(uint64_t coll_id, const uint8_t *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ coll_id;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ key[i]) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* Returns the slot holding (coll_id, key) or the empty slot where it goes. */
static size_t slot_find(const struct txn_write *w, uint64_t coll_id, const uint8_t *key, size_t len)
{
    size_t mask = w->n_slots - 1;
    size_t i = hash_key(coll_id, key, len) & mask;

    for (;;) {
        size_t s = w->slots[i];
        if (s == 0) {
            return i;
        }
        const struct staged *op = &w->ops[s - 1];
        if (op->coll_id == coll_id && op->key_len == len && memcmp(op->key, key, len) == 0) {
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int slots_grow(struct txn_write *w)
{
    size_t n = w->n_slots ? w->n_slots * 2 : 64;
    size_t *old = w->slots;
    size_t old_n = w->n_slots;

    w->slots = calloc(n, sizeof *w->slots);
    if (w->slots == NULL) {
        w->slots = old;
        return CAIRN_ENOMEM;
    }
    w->n_slots = n;
    for (size_t i = 0; i < old_n; i++) {
        if (old[i] != 0) {
            const struct staged *op = &w->ops[old[i] - 1];
            w->slots[slot_find(w, op->coll_id, op->key, op->key_len)] = old[i];
        }
    }
    free(old);
    return 0;
}

static const struct staged *staged_lookup(const struct txn_write *w,
                                          uint64_t coll_id,
                                          const uint8_t *key,
                                          size_t len)
{
    size_t s;

    if (w->n_slots == 0) {
        return NULL;
    }
    s = w->slots[slot_find(w, coll_id, key, len)];
    return s ? &w->ops[s - 1] : NULL;
}

static void staged_free(struct staged *op)
{
    free(op->key);
    free(op->doc);
    free(op->ns);
    memset(op, 0, sizeof *op);
}

/* Appends (or replaces) an op. Takes ownership of key/doc/ns on success. */
static int stage(struct txn_write *w, struct staged *op, struct cairn_error *err)
{
    bool keyed = op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE;

    w->staged_bytes += op->doc_len + op->key_len + 64;
    if (keyed) {
        if ((w->n_ops + 1) * 2 > w->n_slots && slots_grow(w) != 0) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        size_t slot = slot_find(w, op->coll_id, op->key, op->key_len);
        if (w->slots[slot] != 0) {
            struct staged *prev = &w->ops[w->slots[slot] - 1];
            staged_free(prev);
            *prev = *op;
            return 0;
        }
        if (w->n_ops == w->cap_ops) {
            size_t cap = w->cap_ops ? w->cap_ops * 2 : 16;
            struct staged *ops = realloc(w->ops, cap * sizeof *ops);
            if (ops == NULL) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
            }
            w->ops = ops;
            w->cap_ops = cap;
        }
        w->ops[w->n_ops] = *op;
        w->n_ops++;
        w->slots[slot] = w->n_ops;
        return 0;
    }
    if (w->n_ops == w->cap_ops) {
        size_t cap = w->cap_ops ? w->cap_ops * 2 : 16;
        struct staged *ops = realloc(w->ops, cap * sizeof *ops);
        if (ops == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        w->ops = ops;
        w->cap_ops = cap;
    }
    w->ops[w->n_ops++] = *op;
    return 0;
}

int txn_write_begin(struct txn_mgr *m, struct txn_write **out, struct cairn_error *err)
{
    struct txn_write *w;
    int rv;

    pthread_mutex_lock(&m->write_lock);
    if (!repl_is_writable(m->repl)) {
        pthread_mutex_unlock(&m->write_lock);
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        pthread_mutex_unlock(&m->write_lock);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    w->m = m;
    rv = read_init(m, true, &w->rd, err);
    if (rv != 0) {
        free(w);
        pthread_mutex_unlock(&m->write_lock);
        return rv;
    }
    *out = w;
    return 0;
}

struct txn_read *txn_write_reader(struct txn_write *w)
{
    return &w->rd;
}

/* Finds a collection created or dropped by this write: 1 created (id set),
 * -1 dropped, 0 not touched. The last op on the namespace wins. */
static int staged_coll(const struct txn_write *w, const char *ns, uint64_t *id)
{
    for (size_t i = w->n_ops; i-- > 0;) {
        const struct staged *op = &w->ops[i];
        if ((op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) && strcmp(op->ns, ns) == 0) {
            *id = op->coll_id;
            return op->kind == ENG_OP_CREATE ? 1 : -1;
        }
    }
    return 0;
}

static int lookup_coll(struct txn_write *w, const char *ns, uint64_t *id)
{
    int st = staged_coll(w, ns, id);
    if (st != 0) {
        return st > 0 ? 0 : CAIRN_ENOTFOUND;
    }
    return eng_catalog_lookup(w->m->eng, ns, true, id);
}

static int split_ns(const char *ns, char *db, size_t dbsize, const char **coll)
{
    const char *dot = strchr(ns, '.');
    size_t dl;

    if (dot == NULL) {
        return -1;
    }
    dl = (size_t)(dot - ns);
    if (dl >= dbsize) {
        dl = dbsize - 1;
    }
    memcpy(db, ns, dl);
    db[dl] = '\0';
    *coll = dot + 1;
    return 0;
}

static int stage_create(struct txn_write *w, const char *ns, uint64_t *id, struct cairn_error *err)
{
    char db[ENG_NS_MAX + 1];
    const char *coll;
    struct staged op = {0};
    uint64_t next;
    int rv;

    if (strlen(ns) > ENG_NS_MAX || split_ns(ns, db, sizeof db, &coll) != 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified '%s'", ns);
    }
    rv = txn_check_ns(db, coll, err);
    if (rv != 0) {
        return rv;
    }
    next = eng_catalog_next_id(w->m->eng);
    if (w->next_coll_id > next) {
        next = w->next_coll_id;
    }
    w->next_coll_id = next + 1;
    op.kind = ENG_OP_CREATE;
    op.coll_id = next;
    op.ns = strdup(ns);
    if (op.ns == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    rv = stage(w, &op, err);
    if (rv != 0) {
        staged_free(&op);
        return rv;
    }
    *id = next;
    return 0;
}

int txn_write_coll(struct txn_write *w,
                   const char *ns,
                   bool create,
                   uint64_t *coll_id,
                   bool *created,
                   struct cairn_error *err)
{
    if (created != NULL) {
        *created = false;
    }
    if (lookup_coll(w, ns, coll_id) == 0) {
        return 0;
    }
    if (!create) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found: %s",
                                 ns);
    }
    int rv = stage_create(w, ns, coll_id, err);
    if (rv == 0 && created != NULL) {
        *created = true;
    }
    return rv;
}

int txn_write_create(struct txn_write *w, const char *ns, struct cairn_error *err)
{
    uint64_t id;

    if (lookup_coll(w, ns, &id) == 0) {
        return cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_NamespaceExists,
                                 "Collection %s already exists.", ns);
    }
    return stage_create(w, ns, &id, err);
}

int txn_write_drop(struct txn_write *w, const char *ns, struct cairn_error *err)
{
    struct staged op = {0};
    uint64_t id;
    int rv;

    if (lookup_coll(w, ns, &id) != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found");
    }
    op.kind = ENG_OP_DROP;
    op.coll_id = id;
    op.ns = strdup(ns);
    if (op.ns == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    rv = stage(w, &op, err);
    if (rv != 0) {
        staged_free(&op);
    }
    return rv;
}

static int write_get_key(struct txn_write *w,
                         uint64_t coll_id,
                         const uint8_t *key,
                         size_t len,
                         bson_t *doc,
                         struct cairn_error *err)
{
    const struct staged *op = staged_lookup(w, coll_id, key, len);

    if (op != NULL) {
        if (op->kind == ENG_OP_DELETE) {
            return CAIRN_ENOTFOUND;
        }
        return bytes_to_doc(op->doc, op->doc_len, doc, err);
    }
    return snap_get(w->rd.snap, coll_id, key, len, doc, err);
}

int txn_write_get(struct txn_write *w,
                  uint64_t coll_id,
                  const bson_value_t *id,
                  bson_t *doc,
                  struct cairn_error *err)
{
    int rv = encode_id(id, &w->key, err);
    if (rv != 0) {
        return rv;
    }
    return write_get_key(w, coll_id, w->key.data, w->key.len, doc, err);
}

/* Encodes the _id of `doc` into w->key and checks the size limit. */
static int doc_key(struct txn_write *w,
                   const bson_t *doc,
                   bson_value_t *idval,
                   struct cairn_error *err)
{
    bson_iter_t it;

    if (doc->len > TXN_MAX_DOC_SIZE) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                 "object to insert too large. size in bytes: %u, max size: %d",
                                 doc->len, TXN_MAX_DOC_SIZE);
    }
    if (!bson_iter_init_find(&it, doc, "_id")) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "document has no _id field");
    }
    *idval = *bson_iter_value(&it);
    return encode_id(idval, &w->key, err);
}

/* Formats "{ _id: <value> }" for duplicate key messages. */
static void format_dup_key(const bson_value_t *id, char *out, size_t size)
{
    bson_t tmp = BSON_INITIALIZER;
    char *json;

    bson_append_value(&tmp, "_id", 3, id);
    json = bson_as_relaxed_extended_json(&tmp, NULL);
    if (json != NULL && strncmp(json, "{ \"_id\" : ", 10) == 0) {
        snprintf(out, size, "{ _id: %s", json + 10);
    } else {
        snprintf(out, size, "%s", json ? json : "{}");
    }
    bson_free(json);
    bson_destroy(&tmp);
}

static const char *coll_ns_of(struct txn_write *w, uint64_t coll_id, char *buf, size_t size)
{
    struct eng_coll_info *infos = NULL;
    size_t n = 0;

    for (size_t i = 0; i < w->n_ops; i++) {
        if (w->ops[i].kind == ENG_OP_CREATE && w->ops[i].coll_id == coll_id) {
            snprintf(buf, size, "%s", w->ops[i].ns);
            return buf;
        }
    }
    snprintf(buf, size, "?");
    if (eng_catalog_list(w->m->eng, NULL, true, &infos, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (infos[i].id == coll_id) {
                snprintf(buf, size, "%s", infos[i].ns);
                break;
            }
        }
        free(infos);
    }
    return buf;
}

static int stage_put(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_t *doc,
                     struct cairn_error *err)
{
    struct staged op = {0};
    int rv;

    op.kind = ENG_OP_PUT;
    op.coll_id = coll_id;
    op.key_len = w->key.len;
    op.key = malloc(op.key_len ? op.key_len : 1);
    op.doc_len = doc->len;
    op.doc = malloc(op.doc_len);
    if (op.key == NULL || op.doc == NULL) {
        staged_free(&op);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    memcpy(op.key, w->key.data, op.key_len);
    memcpy(op.doc, bson_get_data(doc), op.doc_len);
    rv = stage(w, &op, err);
    if (rv != 0) {
        staged_free(&op);
    }
    return rv;
}

int txn_write_insert(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_t *doc,
                     struct cairn_error *err)
{
    bson_value_t id;
    bson_t existing;
    int rv = doc_key(w, doc, &id, err);

    if (rv != 0) {
        return rv;
    }
    rv = write_get_key(w, coll_id, w->key.data, w->key.len, &existing, err);
    if (rv == 0) {
        char ns[ENG_NS_MAX + 1];
        char dup[160];
        bson_destroy(&existing);
        format_dup_key(&id, dup, sizeof dup);
        return cairn_error_mongo(
            err, CAIRN_EEXISTS, MONGO_DuplicateKey,
            "E11000 duplicate key error collection: %s index: _id_ dup key: %s",
            coll_ns_of(w, coll_id, ns, sizeof ns), dup);
    }
    if (rv != CAIRN_ENOTFOUND) {
        return rv;
    }
    return stage_put(w, coll_id, doc, err);
}

int txn_write_put(struct txn_write *w, uint64_t coll_id, const bson_t *doc, struct cairn_error *err)
{
    bson_value_t id;
    int rv = doc_key(w, doc, &id, err);

    if (rv != 0) {
        return rv;
    }
    return stage_put(w, coll_id, doc, err);
}

int txn_write_delete(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_value_t *id,
                     struct cairn_error *err)
{
    struct staged op = {0};
    int rv = encode_id(id, &w->key, err);

    if (rv != 0) {
        return rv;
    }
    op.kind = ENG_OP_DELETE;
    op.coll_id = coll_id;
    op.key_len = w->key.len;
    op.key = malloc(op.key_len ? op.key_len : 1);
    if (op.key == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    memcpy(op.key, w->key.data, op.key_len);
    rv = stage(w, &op, err);
    if (rv != 0) {
        staged_free(&op);
    }
    return rv;
}

size_t txn_write_n_ops(const struct txn_write *w)
{
    return w->n_ops;
}

static void write_free(struct txn_write *w)
{
    for (size_t i = 0; i < w->n_ops; i++) {
        staged_free(&w->ops[i]);
    }
    free(w->ops);
    free(w->slots);
    cairn_buf_free(&w->key);
    if (w->rd.snap != NULL) {
        eng_snap_release(w->rd.snap);
    }
    free(w);
}

void txn_write_abort(struct txn_write *w)
{
    struct txn_mgr *m;

    if (w == NULL) {
        return;
    }
    m = w->m;
    write_free(w);
    pthread_mutex_unlock(&m->write_lock);
}

size_t txn_write_staged_bytes(const struct txn_write *w)
{
    return w->staged_bytes;
}

/* Drops every staged op, keeping the lock and the view. */
static void staging_clear(struct txn_write *w)
{
    for (size_t i = 0; i < w->n_ops; i++) {
        staged_free(&w->ops[i]);
    }
    w->n_ops = 0;
    if (w->slots != NULL) {
        memset(w->slots, 0, w->n_slots * sizeof *w->slots);
    }
    w->next_coll_id = 0;
    w->staged_bytes = 0;
}

/* Proposes the staged ops as one commit (timestamp, overlay, raft) and
 * clears the staging; the lock and view stay. *ts = 0 when nothing was
 * staged. On error nothing of it is visible. */
static int propose_staged(struct txn_write *w, cairn_ts *ts, struct cairn_error *err)
{
    struct txn_mgr *m = w->m;
    struct eng_commit commit;
    struct eng_op *ops;
    int rv;

    *ts = 0;
    if (w->n_ops == 0) {
        return 0;
    }
    ops = calloc(w->n_ops, sizeof *ops);
    if (ops == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    for (size_t i = 0; i < w->n_ops; i++) {
        const struct staged *s = &w->ops[i];
        ops[i].kind = s->kind;
        ops[i].coll_id = s->coll_id;
        ops[i].ns = s->ns;
        ops[i].key = s->key;
        ops[i].key_len = s->key_len;
        ops[i].doc = s->doc;
        ops[i].doc_len = s->doc_len;
    }
    commit.ts = clock_next(m);
    commit.ops = ops;
    commit.n_ops = w->n_ops;
    rv = eng_overlay_add(m->eng, &commit);
    if (rv != 0) {
        /* It may have left pending catalog changes behind. */
        eng_overlay_discard_from(m->eng, commit.ts);
        cairn_error_setf(err, rv, "commit: overlay: %s", cairn_strerror(rv));
    } else {
        rv = repl_propose(m->repl, &commit, err);
        if (rv != 0) {
            /* Not proposed: nothing of it may stay visible, but earlier
             * commits still queued or in flight must: the next writer
             * resolves against them (discarding them too lost updates). */
            eng_overlay_discard_from(m->eng, commit.ts);
            if (rv == CAIRN_ENOTLEADER && err != NULL && err->mongo_code == 0) {
                err->mongo_code = MONGO_NotWritablePrimary;
            }
        } else {
            *ts = commit.ts;
        }
    }
    free(ops);
    staging_clear(w);
    return rv;
}

int txn_write_flush(struct txn_write *w, bool refresh_view, cairn_ts *ts, struct cairn_error *err)
{
    int rv = propose_staged(w, ts, err);

    if (rv != 0 || !refresh_view || *ts == 0) {
        return rv;
    }
    eng_snap_release(w->rd.snap);
    w->rd.snap = NULL;
    return read_init(w->m, true, &w->rd, err);
}

int txn_write_commit(struct txn_write *w, cairn_ts *ts, struct cairn_error *err)
{
    int rv = propose_staged(w, ts, err);

    txn_write_abort(w);
    return rv;
}

int txn_wait(struct txn_mgr *m,
             cairn_ts ts,
             const struct repl_wc *wc,
             repl_wait_cb cb,
             void *arg,
             struct cairn_error *err)
{
    return repl_wait(m->repl, ts, wc, cb, arg, err);
}
