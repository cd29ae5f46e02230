/*
 * snap.c: read views. A snapshot is a RocksDB snapshot plus, when local, a
 * reference to the overlay state captured under e->mu together with it
 * (see engine_int.h for why that makes every version visible exactly once
 * after merging). Point reads and iterators filter versions by read_ts and
 * let an overlay version win over RocksDB for the same key (overlay
 * versions are always newer than the applied ones).
 *
 * Iterators merge two sorted sources. The RocksDB source keeps its
 * iterator positioned on the visible version of its current key until
 * that key is consumed, so the views it returns stay valid until the next
 * call. It skips versions newer than read_ts and the older versions of a
 * key by stepping a few times and then seeking, so a key with a long
 * history costs one seek, not a walk.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "lib/log.h"

/* Steps taken with Next before falling back to a Seek. */
#define STEPS_BEFORE_SEEK 3

struct eng_snap
{
    struct eng *e;
    const rocksdb_snapshot_t *rs;
    rocksdb_readoptions_t *ro_get;
    rocksdb_iterator_t *get_it; /* created on first point read, reused */
    struct ovl_state *ovl;      /* captured overlay (local only), may be NULL */
    cairn_ts read_ts;
    cairn_ts snap_ts;
    cairn_ts gc_point; /* read point registered with the GC (gc.c) */
    struct cairn_buf kbuf;
    int n_iters;
};

int eng_snap_acquire(struct eng *e,
                     bool local,
                     cairn_ts read_ts,
                     struct eng_snap **out,
                     struct cairn_error *err)
{
    struct eng_snap *s = calloc(1, sizeof *s);

    *out = NULL;
    if (s == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    s->e = e;
    s->read_ts = read_ts;
    s->ro_get = rocksdb_readoptions_create();

    pthread_mutex_lock(&e->mu);
    /* The read point is registered in the same critical section that reads
     * the applied ts, so no compaction can collect what it needs (gc.c). */
    s->gc_point = read_ts < e->applied_ts ? read_ts : e->applied_ts;
    if (eng_gc_snap_register(e, s->gc_point) != 0) {
        pthread_mutex_unlock(&e->mu);
        rocksdb_readoptions_destroy(s->ro_get);
        free(s);
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    s->rs = rocksdb_create_snapshot(e->db);
    s->ovl = local ? eng_ovl_state_ref(e->ovl) : NULL;
    s->snap_ts = e->applied_ts;
    if (s->ovl != NULL && s->ovl->max_ts > s->snap_ts) {
        s->snap_ts = s->ovl->max_ts;
    }
    pthread_mutex_unlock(&e->mu);

    if (s->snap_ts > read_ts) {
        s->snap_ts = read_ts;
    }
    rocksdb_readoptions_set_snapshot(s->ro_get, s->rs);
    *out = s;
    return 0;
}

void eng_snap_release(struct eng_snap *s)
{
    if (s == NULL) {
        return;
    }
    if (s->n_iters != 0) {
        cairn_log(CAIRN_LOG_ERROR, "engine", "snapshot released with %d open iterators",
                  s->n_iters);
    }
    if (s->get_it != NULL) {
        rocksdb_iter_destroy(s->get_it);
    }
    rocksdb_readoptions_destroy(s->ro_get);
    rocksdb_release_snapshot(s->e->db, s->rs);
    eng_gc_snap_unregister(s->e, s->gc_point);
    eng_ovl_state_unref(s->ovl);
    cairn_buf_free(&s->kbuf);
    free(s);
}

cairn_ts eng_snap_ts(const struct eng_snap *s)
{
    return s->snap_ts;
}

/* Decodes a stored version. Returns 1 for a document, 0 for a tombstone,
 * -1 when the value is malformed. */
static int decode_value(const char *v, size_t vlen, const uint8_t **doc, size_t *doc_len)
{
    if (vlen < 1) {
        return -1;
    }
    if ((uint8_t)v[0] == ENG_VERSION_DOC) {
        *doc = (const uint8_t *)v + 1;
        *doc_len = vlen - 1;
        return 1;
    }
    return (uint8_t)v[0] == ENG_VERSION_TOMBSTONE && vlen == 1 ? 0 : -1;
}

int eng_snap_get(struct eng_snap *s,
                 uint64_t coll_id,
                 const uint8_t *key,
                 size_t key_len,
                 struct cairn_buf *doc,
                 struct cairn_error *err)
{
    const struct ovl_coll *oc;
    const uint8_t *d = NULL;
    size_t dlen = 0;
    char *msg = NULL;
    int r;

    if (key == NULL || key_len == 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: empty key");
    }
    oc = eng_ovl_coll(s->ovl, coll_id);
    if (oc != NULL) {
        size_t i = eng_ovl_lower_bound(oc, key, key_len, false);
        if (i < oc->n && eng_key_cmp(oc->v[i]->key, oc->v[i]->key_len, key, key_len) == 0) {
            const struct ovl_ver *v = eng_ovl_pick(oc, &i, s->read_ts);
            if (v != NULL) {
                if (v->flag != ENG_VERSION_DOC) {
                    return CAIRN_ENOTFOUND;
                }
                if (cairn_buf_append(doc, v->doc, v->doc_len) != 0) {
                    return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
                }
                return 0;
            }
        }
    }

    cairn_buf_reset(&s->kbuf);
    if (cairn_buf_reserve(&s->kbuf, 16 + key_len) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    eng_docs_key(s->kbuf.data, coll_id, key, key_len, s->read_ts);
    s->kbuf.len = 16 + key_len;
    if (s->get_it == NULL) {
        s->get_it = rocksdb_create_iterator_cf(s->e->db, s->ro_get, s->e->cf_docs);
    }
    rocksdb_iter_seek(s->get_it, (const char *)s->kbuf.data, s->kbuf.len);
    if (!rocksdb_iter_valid(s->get_it)) {
        rocksdb_iter_get_error(s->get_it, &msg);
        return msg != NULL ? eng_rocks_error(err, msg, "get") : CAIRN_ENOTFOUND;
    }
    {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(s->get_it, &klen);
        const char *v;
        if (klen != 16 + key_len || memcmp(k, s->kbuf.data, 8 + key_len) != 0) {
            return CAIRN_ENOTFOUND;
        }
        v = rocksdb_iter_value(s->get_it, &vlen);
        r = decode_value(v, vlen, &d, &dlen);
    }
    if (r < 0) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad version in collection %llu",
                                (unsigned long long)coll_id);
    }
    if (r == 0) {
        return CAIRN_ENOTFOUND;
    }
    if (cairn_buf_append(doc, d, dlen) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    return 0;
}

/* ---- Iterators ---------------------------------------------------------- */

struct eng_iter
{
    struct eng_snap *s;
    uint64_t coll;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    uint8_t hi[8];         /* upper bound; RocksDB keeps a pointer to it */
    struct cairn_buf seek; /* scratch for seek keys */
    bool r_ready;          /* it is on the visible version of a key */
    bool r_consumed;       /* that key was returned or superseded */
    bool r_done;
    const struct ovl_coll *oc; /* may be NULL */
    size_t oi;                 /* first version of the next overlay key */
    const struct ovl_ver *ov;  /* overlay candidate, NULL when none */
    bool o_consumed;
    bool failed;
    struct cairn_error err;
};

/* The current RocksDB entry's doc key and ts; false when the key is not a
 * version of this collection (then the source is done). */
static bool r_parse(struct eng_iter *it, const uint8_t **dk, size_t *dk_len, cairn_ts *ts)
{
    size_t klen;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it->it, &klen);

    if (klen < 17 || cairn_load_be64(k) != it->coll) {
        return false;
    }
    *dk = k + 8;
    *dk_len = klen - 16;
    *ts = ~cairn_load_be64(k + klen - 8);
    return true;
}

/* Fails the iterator on a RocksDB iterator error; returns true when set. */
static bool r_check_error(struct eng_iter *it)
{
    char *msg = NULL;

    rocksdb_iter_get_error(it->it, &msg);
    if (msg != NULL) {
        eng_rocks_error(&it->err, msg, "iterate");
        it->failed = true;
        return true;
    }
    return false;
}

/* Seeks to coll | dk | ~ts. dk may point into the iterator's own key. */
static int r_seek(struct eng_iter *it, const uint8_t *dk, size_t dk_len, cairn_ts ts)
{
    cairn_buf_reset(&it->seek);
    if (cairn_buf_reserve(&it->seek, 16 + dk_len) != 0) {
        cairn_error_setf(&it->err, CAIRN_ENOMEM, "engine: out of memory");
        it->failed = true;
        return -1;
    }
    eng_docs_key(it->seek.data, it->coll, dk, dk_len, ts);
    it->seek.len = 16 + dk_len;
    rocksdb_iter_seek(it->it, (const char *)it->seek.data, it->seek.len);
    return 0;
}

/* From the current raw position, finds the next key with a version
 * visible at read_ts and stays on that version. */
static int r_settle(struct eng_iter *it)
{
    int steps = 0;
    const uint8_t *dk;
    size_t dk_len;
    cairn_ts ts;

    it->r_ready = false;
    for (;;) {
        if (!rocksdb_iter_valid(it->it)) {
            it->r_done = true;
            return r_check_error(it) ? -1 : 0;
        }
        if (!r_parse(it, &dk, &dk_len, &ts)) {
            it->r_done = true;
            return 0;
        }
        if (ts <= it->s->read_ts) {
            it->r_ready = true;
            return 0;
        }
        if (++steps <= STEPS_BEFORE_SEEK) {
            rocksdb_iter_next(it->it);
        } else {
            steps = 0;
            if (r_seek(it, dk, dk_len, it->s->read_ts) != 0) {
                return -1;
            }
        }
    }
}

/* Moves past every version of the current key, then settles. */
static int r_skip_key(struct eng_iter *it)
{
    const uint8_t *dk, *dk2;
    size_t dk_len, dk2_len;
    cairn_ts ts;

    if (!r_parse(it, &dk, &dk_len, &ts)) {
        it->r_done = true;
        return 0;
    }
    /* Remember the key: the iterator's memory changes as it moves. */
    cairn_buf_reset(&it->seek);
    if (cairn_buf_append(&it->seek, dk, dk_len) != 0) {
        cairn_error_setf(&it->err, CAIRN_ENOMEM, "engine: out of memory");
        it->failed = true;
        return -1;
    }
    for (int steps = 0;; steps++) {
        rocksdb_iter_next(it->it);
        if (!rocksdb_iter_valid(it->it) || !r_parse(it, &dk2, &dk2_len, &ts) ||
            eng_key_cmp(dk2, dk2_len, it->seek.data, it->seek.len) != 0) {
            return r_settle(it);
        }
        if (steps >= STEPS_BEFORE_SEEK) {
            break;
        }
    }
    {
        /* Many versions: seek to the oldest possible one (ts 0). */
        struct cairn_buf key = it->seek;
        it->seek = (struct cairn_buf)CAIRN_BUF_INIT;
        int r = r_seek(it, key.data, key.len, 0);
        if (r == 0 && rocksdb_iter_valid(it->it) && r_parse(it, &dk2, &dk2_len, &ts) &&
            eng_key_cmp(dk2, dk2_len, key.data, key.len) == 0) {
            rocksdb_iter_next(it->it);
        }
        cairn_buf_free(&key);
        return r == 0 ? r_settle(it) : -1;
    }
}

/* Finds the next overlay key with a visible version (it->ov, or NULL). */
static void o_settle(struct eng_iter *it)
{
    it->ov = NULL;
    while (it->oc != NULL && it->oi < it->oc->n && it->ov == NULL) {
        it->ov = eng_ovl_pick(it->oc, &it->oi, it->s->read_ts);
    }
    it->o_consumed = false;
}

int eng_iter_open(struct eng_snap *s,
                  uint64_t coll_id,
                  const uint8_t *after,
                  size_t after_len,
                  struct eng_iter **out,
                  struct cairn_error *err)
{
    struct eng_iter *it = calloc(1, sizeof *it);

    *out = NULL;
    if (it == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    it->s = s;
    it->coll = coll_id;
    it->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(it->ro, s->rs);
    rocksdb_readoptions_set_total_order_seek(it->ro, 1);
    if (coll_id != UINT64_MAX) {
        cairn_store_be64(it->hi, coll_id + 1);
        rocksdb_readoptions_set_iterate_upper_bound(it->ro, (const char *)it->hi, sizeof it->hi);
    }
    it->it = rocksdb_create_iterator_cf(s->e->db, it->ro, s->e->cf_docs);
    s->n_iters++;

    it->oc = eng_ovl_coll(s->ovl, coll_id);
    if (after == NULL) {
        uint8_t lo[8];
        cairn_store_be64(lo, coll_id);
        rocksdb_iter_seek(it->it, (const char *)lo, sizeof lo);
        it->oi = 0;
    } else {
        const uint8_t *dk;
        size_t dk_len;
        cairn_ts ts;
        if (r_seek(it, after, after_len, 0) == 0 && rocksdb_iter_valid(it->it) &&
            r_parse(it, &dk, &dk_len, &ts) && eng_key_cmp(dk, dk_len, after, after_len) == 0) {
            rocksdb_iter_next(it->it);
        }
        it->oi = it->oc ? eng_ovl_lower_bound(it->oc, after, after_len, true) : 0;
    }
    if (!it->failed) {
        r_settle(it);
    }
    if (it->failed) {
        if (err != NULL) {
            *err = it->err;
        }
        int rv = it->err.code;
        eng_iter_close(it);
        return rv;
    }
    o_settle(it);
    *out = it;
    return 0;
}

int eng_iter_next(struct eng_iter *it,
                  const uint8_t **key,
                  size_t *key_len,
                  const uint8_t **doc,
                  size_t *doc_len)
{
    if (it->failed) {
        return -1;
    }
    if (it->r_consumed) {
        it->r_consumed = false;
        if (r_skip_key(it) != 0) {
            return -1;
        }
    }
    if (it->o_consumed) {
        o_settle(it);
    }
    for (;;) {
        bool r_has = it->r_ready && !it->r_done;
        const uint8_t *rk = NULL;
        size_t rk_len = 0;
        cairn_ts ts;
        int cmp;

        if (!r_has && it->ov == NULL) {
            return 0;
        }
        if (r_has && !r_parse(it, &rk, &rk_len, &ts)) {
            it->r_done = true;
            continue;
        }
        if (!r_has) {
            cmp = 1;
        } else if (it->ov == NULL) {
            cmp = -1;
        } else {
            cmp = eng_key_cmp(rk, rk_len, it->ov->key, it->ov->key_len);
        }
        if (cmp >= 0) {
            /* The overlay's version wins; RocksDB's older one is skipped. */
            const struct ovl_ver *v = it->ov;
            if (cmp == 0 && r_skip_key(it) != 0) {
                return -1;
            }
            if (v->flag != ENG_VERSION_DOC) {
                o_settle(it);
                continue;
            }
            *key = v->key;
            *key_len = v->key_len;
            *doc = v->doc;
            *doc_len = v->doc_len;
            it->o_consumed = true;
            return 1;
        }
        {
            size_t vlen;
            const char *val = rocksdb_iter_value(it->it, &vlen);
            int r = decode_value(val, vlen, doc, doc_len);
            if (r < 0) {
                cairn_error_setf(&it->err, CAIRN_ECORRUPT, "engine: bad version in collection %llu",
                                 (unsigned long long)it->coll);
                it->failed = true;
                return -1;
            }
            if (r == 0) {
                if (r_skip_key(it) != 0) {
                    return -1;
                }
                continue;
            }
            *key = rk;
            *key_len = rk_len;
            it->r_consumed = true;
            return 1;
        }
    }
}

const struct cairn_error *eng_iter_error(const struct eng_iter *it)
{
    return &it->err;
}

void eng_iter_close(struct eng_iter *it)
{
    if (it == NULL) {
        return;
    }
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ro);
    cairn_buf_free(&it->seek);
    it->s->n_iters--;
    free(it);
}
