/*
 * snap.c: read views: snapshots (eng_snap_*), their point reads and
 * iterators (eng_iter_*), and the snapshot-less eng_latest.
 *
 * A snapshot is a RocksDB snapshot R, a captured overlay view (local
 * snapshots only) and a bound S; every read shows, per key, the newest
 * version with ts <= S across R and the view.
 *
 * Taking a snapshot (eng_snap_acquire):
 *   A1. (local only) capture the overlay: segment references and the
 *       visible ts V, under ovl.mu (overlay.c);
 *   A2. under gc.mu, read the applied ts P and register the read point
 *       min(read_ts, P) (gc.c);
 *   A3. create R;
 *   A4. the view shows overlay versions with P < ts <= V; S = min(read_ts,
 *       max(V, P)), V = 0 when not local.
 * eng_apply, for its entry with newest ts T: W. writes the batch (every
 * commit <= T, its session records, the watermark); C. updates the
 * catalog; P. publishes P = T (wm_mu, gc.applied_ts); T. trims the overlay
 * up to T. It holds no lock a reader takes while writing, so A1-A3 never
 * wait for a RocksDB write. The orders the argument below needs: W before
 * P (S1), W before T (S3), A1 before A3 (S3), and, in eng_overlay_add,
 * every link before V is published (overlay.c O3).
 *
 * Why every version is seen exactly once (or identically twice)
 * --------------------------------------------------------------
 *  S1. P is published only after the batch of every commit <= P was
 *      written (W before P), so R, created after P was read, holds every
 *      applied version with ts <= P. R may hold more (entries whose write
 *      finished between A2 and A3); those have ts > P.
 *  S2. No read shows a version with ts > S: RocksDB reads are bounded by S,
 *      overlay reads by min(S, V). What R holds beyond S and what the
 *      overlay gains after A1 (ts > V, overlay.c O5) stays invisible, so a
 *      snapshot shows a prefix of the commits in ts order.
 *  S3. Every commit C with ts <= S that was added and not discarded, or
 *      applied, is wholly visible. If C.ts <= P, C is in R (S1).
 *      Otherwise P < C.ts <= V (S <= max(V, P)), so C was added (all its
 *      nodes linked, O3) before V was published, hence before A1. Either
 *      its segment was still listed at A1, and C's nodes are in the view
 *      and shown (P < C.ts <= min(S, V)); or a trim had retired it before
 *      A1, which happens only after the batch holding C was written (O6),
 *      so that write precedes A1 and hence A3: C is in R, read up to S.
 *  S4. The same (key, ts) in both sources is the same version: one commit
 *      writes a key once (the overlay keeps a commit's last op for a key,
 *      as the batch's last write wins). Picking per key the newest ts
 *      across both sources returns it once.
 *  S5. Overlay versions with ts <= P are ignored: R holds every entry up
 *      to P (S1), so it decides, even where the log superseded them (a
 *      later version, a drop's range deletion, or an entry of a new primary
 *      that replaced this one's unapplied commit). So a version is never
 *      shown from a stale overlay copy.
 *  S6. Reads pick per key the newest version across both sources, never
 *      "the overlay wins": R may hold a version of a key newer than the
 *      captured overlay's (an entry applied between A1 and A2; P then
 *      covers it), and S3/S4 need the newer one.
 *  S7. GC: the registered read point min(read_ts, P) <= S bounds the
 *      horizon of every compaction that starts after A2, and one that
 *      started before saw an applied ts <= P (gc.c), so nothing a read at
 *      ts <= S needs (versions above the horizon, and the newest at or
 *      below it) is collected.
 * Drops are not versioned: a DROP's range deletion removes every version
 * of the collection, so a snapshot whose R was created after the drop's
 * write sees the collection empty whatever its S (as before).
 *
 * eng_latest captures the overlay (A1), reads P, then reads RocksDB's
 * newest state (which holds every commit <= P, S1) and picks the newest
 * version across both with the same rule (overlay versions with
 * P < ts <= V). It needs no GC registration: compactions always keep the
 * newest version of every document.
 *
 * Iterators merge two sorted sources. The RocksDB source keeps its
 * iterator positioned on the visible version of its current key until
 * that key is consumed, so the views it returns stay valid until the next
 * call. It skips versions newer than S and the older versions of a key by
 * stepping a few times and then seeking, so a key with a long history
 * costs one seek, not a walk; the overlay source (overlay.c) does the same
 * with skiplist searches.
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
    struct ovl_view ovl;        /* captured overlay (empty unless local) */
    cairn_ts bound;             /* S: reads show versions with ts <= S */
    cairn_ts gc_point;          /* read point registered with the GC (gc.c) */
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
    cairn_ts applied, bound;
    int rv;

    *out = NULL;
    if (s == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    s->e = e;
    eng_ovl_view_empty(&e->ovl, &s->ovl);
    s->ro_get = rocksdb_readoptions_create();
    if (local) {
        /* A1 */
        rv = eng_ovl_capture(&e->ovl, &s->ovl);
        if (rv != 0) {
            cairn_error_setf(err, rv, "engine: out of memory");
            goto err_after_alloc;
        }
    }
    eng_debug_point(e, ENG_DEBUG_SNAP_CAPTURED);
    /* A2 */
    rv = eng_gc_snap_register(e, read_ts, &applied, &s->gc_point);
    if (rv != 0) {
        cairn_error_setf(err, rv, "engine: out of memory");
        goto err_after_capture;
    }
    eng_debug_point(e, ENG_DEBUG_SNAP_REGISTERED);
    /* A3 */
    s->rs = rocksdb_create_snapshot(e->db);
    rocksdb_readoptions_set_snapshot(s->ro_get, s->rs);
    /* A4 */
    s->ovl.lo = applied;
    bound = local && s->ovl.hi > applied ? s->ovl.hi : applied;
    s->bound = bound < read_ts ? bound : read_ts;
    *out = s;
    return 0;

err_after_capture:
    eng_ovl_view_release(&s->ovl);
err_after_alloc:
    rocksdb_readoptions_destroy(s->ro_get);
    free(s);
    return rv;
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
    eng_ovl_view_release(&s->ovl);
    cairn_buf_free(&s->kbuf);
    free(s);
}

uint64_t eng_snap_overlay_token(const struct eng_snap *s)
{
    const struct ovl_view *v = &s->ovl;

    if (v->o == NULL || v->hi <= v->lo || s->bound <= v->lo) {
        return 0; /* it showed nothing of the overlay */
    }
    return v->discards + 1;
}

bool eng_overlay_token_lost(struct eng *e, uint64_t token)
{
    return token != 0 && atomic_load_explicit(&e->ovl.discards, memory_order_acquire) + 1 != token;
}

cairn_ts eng_snap_ts(const struct eng_snap *s)
{
    return s->bound;
}

int eng_decode_value(const char *v, size_t vlen, const uint8_t **doc, size_t *doc_len)
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

/* ---- Point reads --------------------------------------------------------- */

/* A version found in RocksDB (views into the iterator, valid until it
 * moves). */
struct rver
{
    bool found;
    bool is_doc;
    cairn_ts ts;
    const uint8_t *doc;
    size_t doc_len;
};

/* Positions `it` on the newest version of (coll_id, key) with ts <= bound
 * and describes it in *rv (found = false when there is none). `kbuf` is
 * scratch. Returns 0, CAIRN_ENOMEM, CAIRN_ECORRUPT or CAIRN_EIO. */
static int rocks_version(rocksdb_iterator_t *it,
                         struct cairn_buf *kbuf,
                         uint64_t coll_id,
                         const uint8_t *key,
                         size_t key_len,
                         cairn_ts bound,
                         struct rver *rv,
                         struct cairn_error *err)
{
    const char *k, *v;
    size_t klen, vlen;
    char *msg = NULL;
    int r;

    rv->found = false;
    cairn_buf_reset(kbuf);
    if (cairn_buf_reserve(kbuf, 16 + key_len) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    eng_docs_key(kbuf->data, coll_id, key, key_len, bound);
    kbuf->len = 16 + key_len;
    rocksdb_iter_seek(it, (const char *)kbuf->data, kbuf->len);
    if (!rocksdb_iter_valid(it)) {
        rocksdb_iter_get_error(it, &msg);
        return msg != NULL ? eng_rocks_error(err, msg, "get") : 0;
    }
    k = rocksdb_iter_key(it, &klen);
    if (klen != 16 + key_len || memcmp(k, kbuf->data, 8 + key_len) != 0) {
        return 0;
    }
    v = rocksdb_iter_value(it, &vlen);
    r = eng_decode_value(v, vlen, &rv->doc, &rv->doc_len);
    if (r < 0) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad version in collection %llu",
                                (unsigned long long)coll_id);
    }
    rv->found = true;
    rv->is_doc = r == 1;
    rv->ts = ~cairn_load_be64((const uint8_t *)k + klen - 8);
    return 0;
}

/* Returns the newer of overlay version `o` (may be NULL) and RocksDB
 * version `r` (S4, S6): appends its document to `doc` (may be NULL) and
 * sets *ts. Returns 0, CAIRN_ENOTFOUND (tombstone or none) or
 * CAIRN_ENOMEM. */
static int pick_version(const struct ovl_node *o,
                        const struct rver *r,
                        struct cairn_buf *doc,
                        cairn_ts *ts,
                        struct cairn_error *err)
{
    const uint8_t *d;
    size_t dlen;

    if (o != NULL && (!r->found || o->ts >= r->ts)) {
        *ts = o->ts;
        if (o->flag != ENG_VERSION_DOC) {
            return CAIRN_ENOTFOUND;
        }
        d = o->doc;
        dlen = o->doc_len;
    } else if (r->found) {
        *ts = r->ts;
        if (!r->is_doc) {
            return CAIRN_ENOTFOUND;
        }
        d = r->doc;
        dlen = r->doc_len;
    } else {
        *ts = 0;
        return CAIRN_ENOTFOUND;
    }
    if (doc != NULL && cairn_buf_append(doc, d, dlen) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    return 0;
}

int eng_snap_get_version(struct eng_snap *s,
                         uint64_t coll_id,
                         const uint8_t *key,
                         size_t key_len,
                         struct cairn_buf *doc,
                         cairn_ts *ts,
                         struct cairn_error *err)
{
    const struct ovl_node *o;
    struct rver r;
    cairn_ts dummy;
    int rv;

    if (ts == NULL) {
        ts = &dummy;
    }
    *ts = 0;
    if (key == NULL || key_len == 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: empty key");
    }
    o = eng_ovl_view_get(&s->ovl, coll_id, key, key_len, s->bound);
    if (s->get_it == NULL) {
        s->get_it = rocksdb_create_iterator_cf(s->e->db, s->ro_get, s->e->cf_docs);
    }
    rv = rocks_version(s->get_it, &s->kbuf, coll_id, key, key_len, s->bound, &r, err);
    if (rv != 0) {
        return rv;
    }
    return pick_version(o, &r, doc, ts, err);
}

int eng_snap_get(struct eng_snap *s,
                 uint64_t coll_id,
                 const uint8_t *key,
                 size_t key_len,
                 struct cairn_buf *doc,
                 struct cairn_error *err)
{
    return eng_snap_get_version(s, coll_id, key, key_len, doc, NULL, err);
}

int eng_latest(struct eng *e,
               uint64_t coll_id,
               const uint8_t *key,
               size_t key_len,
               struct cairn_buf *doc,
               cairn_ts *ts,
               struct cairn_error *err)
{
    struct ovl_view v;
    struct cairn_buf kbuf = CAIRN_BUF_INIT;
    const struct ovl_node *o;
    rocksdb_iterator_t *it;
    struct rver r;
    cairn_ts dummy;
    int rv;

    if (ts == NULL) {
        ts = &dummy;
    }
    *ts = 0;
    if (key == NULL || key_len == 0) {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: empty key");
    }
    /* The overlay first, then P, then RocksDB (S1, S3). */
    rv = eng_ovl_capture(&e->ovl, &v);
    if (rv != 0) {
        return cairn_error_setf(err, rv, "engine: out of memory");
    }
    eng_debug_point(e, ENG_DEBUG_SNAP_CAPTURED);
    v.lo = eng_gc_applied(e);
    eng_debug_point(e, ENG_DEBUG_SNAP_REGISTERED);
    o = eng_ovl_view_get(&v, coll_id, key, key_len, CAIRN_TS_MAX);
    it = rocksdb_create_iterator_cf(e->db, e->ro_plain, e->cf_docs);
    rv = rocks_version(it, &kbuf, coll_id, key, key_len, CAIRN_TS_MAX, &r, err);
    if (rv == 0) {
        rv = pick_version(o, &r, doc, ts, err);
    }
    rocksdb_iter_destroy(it);
    cairn_buf_free(&kbuf);
    eng_ovl_view_release(&v);
    return rv;
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
    bool r_consumed;       /* that key was returned: skip it on the next call */
    bool r_done;
    struct ovl_iter oi; /* the overlay source */
    bool o_consumed;    /* its current key was returned: move on next call */
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
 * visible at the snapshot's bound and stays on that version. */
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
        if (ts <= it->s->bound) {
            it->r_ready = true;
            return 0;
        }
        if (++steps <= STEPS_BEFORE_SEEK) {
            rocksdb_iter_next(it->it);
        } else {
            steps = 0;
            if (r_seek(it, dk, dk_len, it->s->bound) != 0) {
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

static int iter_open(struct eng_snap *s,
                     uint64_t coll_id,
                     const uint8_t *after,
                     size_t after_len,
                     bool partial,
                     struct eng_iter **out,
                     struct cairn_error *err);

int eng_iter_open(struct eng_snap *s,
                  uint64_t coll_id,
                  const uint8_t *after,
                  size_t after_len,
                  struct eng_iter **out,
                  struct cairn_error *err)
{
    return iter_open(s, coll_id, after, after_len, false, out, err);
}

int eng_iter_open_past(struct eng_snap *s,
                       uint64_t coll_id,
                       const uint8_t *after,
                       size_t after_len,
                       struct eng_iter **out,
                       struct cairn_error *err)
{
    return iter_open(s, coll_id, after, after_len, true, out, err);
}

/* `partial`: `after` may be a proper prefix of keys (eng_iter_open_past):
 * seek to the raw key without a ts suffix, at or before every key that
 * extends it, and skip the versions of `after` itself. */
static int iter_open(struct eng_snap *s,
                     uint64_t coll_id,
                     const uint8_t *after,
                     size_t after_len,
                     bool partial,
                     struct eng_iter **out,
                     struct cairn_error *err)
{
    struct eng_iter *it = calloc(1, sizeof *it);
    int rv;

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
    rv = eng_ovl_iter_init(&it->oi, &s->ovl, coll_id, after, after_len, s->bound);
    if (rv != 0) {
        cairn_error_setf(&it->err, rv, "engine: out of memory");
        it->failed = true;
    } else if (after == NULL) {
        uint8_t lo[8];
        cairn_store_be64(lo, coll_id);
        rocksdb_iter_seek(it->it, (const char *)lo, sizeof lo);
    } else if (partial) {
        const uint8_t *dk;
        size_t dk_len;
        cairn_ts ts;
        if (r_seek(it, after, after_len, 0) == 0) {
            it->seek.len -= 8; /* no ts suffix */
            rocksdb_iter_seek(it->it, (const char *)it->seek.data, it->seek.len);
            while (rocksdb_iter_valid(it->it) && r_parse(it, &dk, &dk_len, &ts) &&
                   eng_key_cmp(dk, dk_len, after, after_len) == 0) {
                rocksdb_iter_next(it->it);
            }
        }
    } else {
        const uint8_t *dk;
        size_t dk_len;
        cairn_ts ts;
        if (r_seek(it, after, after_len, 0) == 0 && rocksdb_iter_valid(it->it) &&
            r_parse(it, &dk, &dk_len, &ts) && eng_key_cmp(dk, dk_len, after, after_len) == 0) {
            rocksdb_iter_next(it->it);
        }
    }
    if (!it->failed) {
        r_settle(it);
    }
    if (it->failed) {
        if (err != NULL) {
            *err = it->err;
        }
        rv = it->err.code;
        eng_iter_close(it);
        return rv;
    }
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
        it->o_consumed = false;
        eng_ovl_iter_next(&it->oi);
    }
    for (;;) {
        const struct ovl_node *ov = eng_ovl_iter_cur(&it->oi);
        bool r_has = it->r_ready && !it->r_done;
        const uint8_t *rk = NULL;
        size_t rk_len = 0;
        cairn_ts r_ts = 0;
        int cmp;

        if (r_has && !r_parse(it, &rk, &rk_len, &r_ts)) {
            it->r_done = true;
            r_has = false;
        }
        if (!r_has && ov == NULL) {
            return 0;
        }
        if (!r_has) {
            cmp = 1;
        } else if (ov == NULL) {
            cmp = -1;
        } else {
            cmp = eng_key_cmp(rk, rk_len, ov->key, ov->key_len);
        }
        if (cmp > 0 || (cmp == 0 && ov->ts >= r_ts)) {
            /* The overlay's version is the newest of its key (S6). */
            if (cmp == 0 && r_skip_key(it) != 0) {
                return -1;
            }
            if (ov->flag != ENG_VERSION_DOC) {
                eng_ovl_iter_next(&it->oi);
                continue;
            }
            *key = ov->key;
            *key_len = ov->key_len;
            *doc = ov->doc;
            *doc_len = ov->doc_len;
            it->o_consumed = true;
            return 1;
        }
        /* RocksDB's version is the newest of its key. */
        if (cmp == 0) {
            eng_ovl_iter_next(&it->oi); /* its older overlay version */
        }
        {
            size_t vlen;
            const char *val = rocksdb_iter_value(it->it, &vlen);
            int r = eng_decode_value(val, vlen, doc, doc_len);
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
    eng_ovl_iter_free(&it->oi);
    it->s->n_iters--;
    free(it);
}
