/*
 * clone.c: checkpoints, i.e. copying one member's whole RocksDB state to
 * another (engine.h has the record format and the contracts).
 *
 * Source (eng_clone_*). RocksDB snapshots cannot be used here: the
 * sessions column family has in-place memtable updates, and with those
 * RocksDB hands out no snapshots at all (GetSnapshot answers null for the
 * whole database). So a checkpoint is "fuzzy" in the way mongod's initial
 * sync is, and becomes consistent once the target has applied the log up
 * to the source's applied index at the end of the copy (repl keeps the
 * member RECOVERING until then: its minValid):
 *   C1. The default column family (catalog, id counter, watermark W) is
 *       read whole at open under apply_mu, so it is the state after entry
 *       W exactly; it is small (one key per collection).
 *   C2. A GC read point at W's ts is registered from open to close, so no
 *       compaction drops a document version visible at W.
 *   C3. Document versions with ts > W are skipped: the target gets them
 *       from the log. A collection dropped after W may have lost versions
 *       (a drop deletes its range); the target applies that drop too.
 *   C4. Session records are unversioned and shipped as they are when read
 *       (possibly newer than W); replaying the entries above W rewrites
 *       each with the same final value.
 * Each chunk seeks to the resume position and reads on, so a chunk costs
 * O(log n + chunk) and a repeated request is answered again; the iterators
 * stay open between chunks. "meta/" keys are member-local (config,
 * bootstrap flag, marker) and are not shipped.
 *
 * Target (eng_install_*), and its invariants:
 *   I1. While ENG_KEY_INSTALLING is stored, the stored state is not a
 *       state of any member: begin writes the marker in the same synced
 *       batch as the wipe, finish deletes it only after the WAL holding
 *       every installed record is synced.
 *   I2. eng_open with the marker set wipes again and opens empty (applied
 *       0): a member never serves a partial install, and raft's snapshot
 *       (index > 0) makes the start-up restore install again.
 *   I3. From begin to finish e->installing is set and eng_apply refuses:
 *       no entry is applied over a partial state.
 *   I4. The in-memory state (catalog, watermark, P, overlay, GC floor) is
 *       reset at begin and reloaded at finish, under the engine's locks in
 *       their order (apply_mu, ovl.wmu, ovl.mu, cat.lock, wm_mu), so a
 *       reader sees the old state, empty, or the installed one.
 *
 * The wipe: range deletions on the docs and default column families (all
 * but "meta/"); the sessions column family has in-place memtable updates,
 * with which RocksDB does not combine range deletions, so its keys are
 * deleted one by one (one small record per session).
 *
 * Threads: a clone is used by one thread at a time; installs run on the
 * applying (raft) thread.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "lib/log.h"

#define N_CFS 3
#define META_NEXT "meta0" /* the first key above every "meta/" key */

/* Above every key of every column family: docs keys start with a
 * collection id far below 2^64 - 1, the others with ASCII. */
static const char KEY_END[9] = {'\xff', '\xff', '\xff', '\xff', '\xff',
                                '\xff', '\xff', '\xff', '\xff'};

struct eng_clone
{
    struct eng *e;
    struct cairn_buf defaults; /* default CF records as of the watermark */
    cairn_ts wm_ts;
    cairn_ts gc_point; /* registered read point (gc.c) */
    bool registered;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it[N_CFS]; /* docs and sessions (index 0 unused) */
};

static rocksdb_column_family_handle_t *cf_of(struct eng *e, int i)
{
    return i == 0 ? e->cf_default : i == 1 ? e->cf_docs : e->cf_sessions;
}

static bool is_meta(int cf, const char *k, size_t klen)
{
    size_t plen = strlen(ENG_META_PREFIX);
    return cf == 0 && klen >= plen && memcmp(k, ENG_META_PREFIX, plen) == 0;
}

static int put_u32(struct cairn_buf *b, size_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return cairn_buf_append(b, x, 4);
}

static size_t load_u32(const uint8_t *p)
{
    return ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
}

/* Appends one record. Returns 0 or CAIRN_ENOMEM. */
static int put_record(struct cairn_buf *out,
                      int cf,
                      const void *k,
                      size_t klen,
                      const void *v,
                      size_t vlen)
{
    if (cairn_buf_reserve(out, 9 + klen + vlen) != 0) {
        return CAIRN_ENOMEM;
    }
    (void)cairn_buf_push(out, (uint8_t)cf);
    (void)put_u32(out, klen);
    (void)cairn_buf_append(out, k, klen);
    (void)put_u32(out, vlen);
    (void)cairn_buf_append(out, v, vlen);
    return 0;
}

/* ---- Source ------------------------------------------------------------ */

/* Copies the default column family (but "meta/") into c->defaults and
 * reads the watermark, holding apply_mu so that both are as of one entry
 * (C1). */
static int capture_defaults(struct eng_clone *c, cairn_index *index, struct cairn_error *err)
{
    struct eng *e = c->e;
    rocksdb_iterator_t *it;
    char *msg = NULL;
    int rv = 0;

    pthread_mutex_lock(&e->apply_mu);
    it = rocksdb_create_iterator_cf(e->db, e->ro_plain, e->cf_default);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it) && rv == 0; rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (is_meta(0, k, klen)) {
            continue;
        }
        if (klen == strlen(ENG_KEY_APPLIED) && memcmp(k, ENG_KEY_APPLIED, klen) == 0) {
            if (vlen != 16) {
                rv = cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad applied watermark");
                break;
            }
            *index = cairn_load_be64((const uint8_t *)v);
            c->wm_ts = cairn_load_be64((const uint8_t *)v + 8);
        }
        if (put_record(&c->defaults, 0, k, klen, v, vlen) != 0) {
            rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
        }
    }
    if (rv == 0) {
        rocksdb_iter_get_error(it, &msg);
        if (msg != NULL) {
            rv = eng_rocks_error(err, msg, "clone: read the catalog");
        }
    }
    rocksdb_iter_destroy(it);
    /* C2: versions visible at the watermark stay until the clone closes. */
    if (rv == 0) {
        cairn_ts applied;
        if (eng_gc_snap_register(e, c->wm_ts, &applied, &c->gc_point) != 0) {
            rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
        } else {
            c->registered = true;
        }
    }
    pthread_mutex_unlock(&e->apply_mu);
    return rv;
}

int eng_clone_open(struct eng *e,
                   struct eng_clone **out,
                   cairn_index *index,
                   cairn_ts *ts,
                   struct cairn_error *err)
{
    struct eng_clone *c;
    cairn_index wm_index = 0;
    int rv;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    c->e = e;
    c->ro = rocksdb_readoptions_create();
    /* The docs column family has a prefix extractor: a whole scan must
     * ignore it. */
    rocksdb_readoptions_set_total_order_seek(c->ro, 1);
    rocksdb_readoptions_set_fill_cache(c->ro, 0);
    rv = capture_defaults(c, &wm_index, err);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (index != NULL) {
        *index = wm_index;
    }
    if (ts != NULL) {
        *ts = c->wm_ts;
    }
    *out = c;
    return 0;

err_after_alloc:
    eng_clone_close(c);
    assert(rv != 0);
    return rv;
}

/* Emits the captured default records after key `after` (NULL: all). */
static int next_defaults(struct eng_clone *c,
                         const uint8_t *after,
                         size_t after_len,
                         size_t start_len,
                         size_t max_bytes,
                         struct cairn_buf *out,
                         bool *more)
{
    const uint8_t *p = c->defaults.data;
    size_t off = 0, len = c->defaults.len;

    while (off < len) {
        size_t klen = load_u32(p + off + 1);
        size_t vlen = load_u32(p + off + 5 + klen);
        size_t rlen = 9 + klen + vlen;
        if (after == NULL || eng_key_cmp(p + off + 5, klen, after, after_len) > 0) {
            if (out->len > start_len && out->len - start_len + rlen > max_bytes) {
                *more = true;
                return 0;
            }
            if (cairn_buf_append(out, p + off, rlen) != 0) {
                return CAIRN_ENOMEM;
            }
        }
        off += rlen;
    }
    return 0;
}

int eng_clone_next(struct eng_clone *c,
                   const uint8_t *after,
                   size_t after_len,
                   size_t max_bytes,
                   struct cairn_buf *out,
                   bool *done,
                   struct cairn_error *err)
{
    size_t start_len = out->len;
    bool more = false;
    int cf = 0;
    char *msg = NULL;

    *done = false;
    if (after_len > 0) {
        cf = after[0];
        if (cf >= N_CFS) {
            return cairn_error_setf(err, CAIRN_EINVAL, "engine: bad clone position");
        }
    }
    if (cf == 0) {
        if (next_defaults(c, after_len > 0 ? after + 1 : NULL, after_len > 0 ? after_len - 1 : 0,
                          start_len, max_bytes, out, &more) != 0) {
            out->len = start_len;
            return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
        }
        if (more) {
            return 0;
        }
        cf = 1;
        after_len = 0;
    }
    for (; cf < N_CFS; cf++) {
        rocksdb_iterator_t *it = c->it[cf];
        if (it == NULL) {
            it = c->it[cf] = rocksdb_create_iterator_cf(c->e->db, c->ro, cf_of(c->e, cf));
        }
        if (after_len > 0 && after[0] == cf) {
            rocksdb_iter_seek(it, (const char *)after + 1, after_len - 1);
            if (rocksdb_iter_valid(it)) {
                size_t klen;
                const char *k = rocksdb_iter_key(it, &klen);
                if (klen == after_len - 1 && memcmp(k, after + 1, klen) == 0) {
                    rocksdb_iter_next(it);
                }
            }
        } else {
            rocksdb_iter_seek_to_first(it);
        }
        for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t klen, vlen;
            const char *k = rocksdb_iter_key(it, &klen);
            const char *v;
            /* C3: document versions newer than the watermark are left to
             * the log. */
            if (cf == 1 &&
                (klen < 17 || ~cairn_load_be64((const uint8_t *)k + klen - 8) > c->wm_ts)) {
                continue;
            }
            v = rocksdb_iter_value(it, &vlen);
            if (out->len > start_len && out->len - start_len + 9 + klen + vlen > max_bytes) {
                return 0; /* more follows, in the next chunk */
            }
            if (put_record(out, cf, k, klen, v, vlen) != 0) {
                out->len = start_len;
                return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
            }
        }
        rocksdb_iter_get_error(it, &msg);
        if (msg != NULL) {
            out->len = start_len;
            return eng_rocks_error(err, msg, "clone: scan");
        }
        after_len = 0; /* the next column family starts at its first key */
    }
    *done = true;
    return 0;
}

/* Walks the records of a chunk: returns the offset of the last one in
 * *last, or -1 when the chunk is malformed. */
static int walk_chunk(const uint8_t *recs, size_t len, size_t *last)
{
    size_t off = 0;

    while (off < len) {
        size_t klen, vlen;
        if (len - off < 5 || recs[off] >= N_CFS) {
            return -1;
        }
        klen = load_u32(recs + off + 1);
        if (klen > ENG_CLONE_FIELD_MAX || len - off - 5 < klen + 4) {
            return -1;
        }
        vlen = load_u32(recs + off + 5 + klen);
        if (vlen > ENG_CLONE_FIELD_MAX || len - off - 9 - klen < vlen) {
            return -1;
        }
        *last = off;
        off += 9 + klen + vlen;
    }
    return 0;
}

int eng_clone_chunk_position(const uint8_t *recs,
                             size_t len,
                             struct cairn_buf *pos,
                             struct cairn_error *err)
{
    size_t last = 0;

    if (walk_chunk(recs, len, &last) != 0) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "engine: malformed checkpoint chunk");
    }
    if (len == 0) {
        return 0;
    }
    cairn_buf_reset(pos);
    if (cairn_buf_push(pos, recs[last]) != 0 ||
        cairn_buf_append(pos, recs + last + 5, load_u32(recs + last + 1)) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    return 0;
}

void eng_clone_close(struct eng_clone *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < N_CFS; i++) {
        if (c->it[i] != NULL) {
            rocksdb_iter_destroy(c->it[i]);
        }
    }
    if (c->ro != NULL) {
        rocksdb_readoptions_destroy(c->ro);
    }
    if (c->registered) {
        eng_gc_snap_unregister(c->e, c->gc_point);
    }
    cairn_buf_free(&c->defaults);
    free(c);
}

/* ---- Target ------------------------------------------------------------ */

/* Adds deletions of every session record to `b`. */
static int delete_sessions(struct eng *e, rocksdb_writebatch_t *b, struct cairn_error *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro_plain, e->cf_sessions);
    char *msg = NULL;

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        rocksdb_writebatch_delete_cf(b, e->cf_sessions, k, klen);
    }
    rocksdb_iter_get_error(it, &msg);
    rocksdb_iter_destroy(it);
    return msg != NULL ? eng_rocks_error(err, msg, "install: list sessions") : 0;
}

/* Writes the marker and deletes everything but "meta/", in one synced
 * batch (I1). */
static int wipe(struct eng *e, struct cairn_error *err)
{
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    char *msg = NULL;
    int rv;

    rocksdb_writebatch_delete_range_cf(b, e->cf_docs, "", 0, KEY_END, sizeof KEY_END);
    rocksdb_writebatch_delete_range_cf(b, e->cf_default, "", 0, ENG_META_PREFIX,
                                       strlen(ENG_META_PREFIX));
    rocksdb_writebatch_delete_range_cf(b, e->cf_default, META_NEXT, strlen(META_NEXT), KEY_END,
                                       sizeof KEY_END);
    rv = delete_sessions(e, b, err);
    if (rv == 0) {
        rocksdb_writebatch_put_cf(b, e->cf_default, ENG_KEY_INSTALLING, strlen(ENG_KEY_INSTALLING),
                                  "1", 1);
        rocksdb_write(e->db, e->wo_sync, b, &msg);
        if (msg != NULL) {
            rv = eng_rocks_error(err, msg, "install: wipe");
        }
    }
    rocksdb_writebatch_destroy(b);
    return rv;
}

/* Resets (reload false) or reloads (true) the in-memory state (I4).
 * Caller holds apply_mu. */
static int reset_state(struct eng *e, bool reload, struct cairn_error *err)
{
    cairn_ts old_floor = atomic_load(&e->gc.floor);
    int rv = 0;

    eng_overlay_discard(e);
    pthread_rwlock_wrlock(&e->cat.lock);
    pthread_mutex_lock(&e->wm_mu);
    eng_cat_reset(&e->cat);
    e->applied_index = 0;
    e->applied_ts = 0;
    if (reload) {
        rv = eng_load_state(e, err);
    }
    /* P follows the watermark, also downwards (eng_gc_note_applied only
     * raises it). */
    atomic_store(&e->gc.applied_ts, e->applied_ts);
    /* What the source's compactions may have collected, as at open; never
     * lower than before. */
    eng_gc_open_floor(e, e->applied_ts);
    if (atomic_load(&e->gc.floor) < old_floor) {
        atomic_store(&e->gc.floor, old_floor);
    }
    pthread_mutex_unlock(&e->wm_mu);
    pthread_rwlock_unlock(&e->cat.lock);
    return rv;
}

int eng_install_begin(struct eng *e, struct cairn_error *err)
{
    int rv;

    pthread_mutex_lock(&e->apply_mu);
    rv = wipe(e, err);
    if (rv == 0) {
        atomic_store(&e->installing, true);
        rv = reset_state(e, false, err);
    }
    pthread_mutex_unlock(&e->apply_mu);
    return rv;
}

int eng_install_put(struct eng *e,
                    const uint8_t *recs,
                    size_t len,
                    uint64_t *n_keys,
                    struct cairn_error *err)
{
    rocksdb_writebatch_t *b;
    size_t off = 0;
    uint64_t n = 0;
    char *msg = NULL;
    int rv = 0;

    if (!atomic_load(&e->installing)) {
        return cairn_error_setf(err, CAIRN_ESTATE, "engine: no checkpoint install begun");
    }
    b = rocksdb_writebatch_create();
    while (off < len) {
        size_t klen, vlen;
        const uint8_t *k, *v;
        int cf;
        if (len - off < 5) {
            rv = CAIRN_ECORRUPT;
            break;
        }
        cf = recs[off];
        klen = load_u32(recs + off + 1);
        if (cf >= N_CFS || klen > ENG_CLONE_FIELD_MAX || len - off - 5 < klen + 4) {
            rv = CAIRN_ECORRUPT;
            break;
        }
        k = recs + off + 5;
        vlen = load_u32(k + klen);
        if (vlen > ENG_CLONE_FIELD_MAX || len - off - 9 - klen < vlen) {
            rv = CAIRN_ECORRUPT;
            break;
        }
        v = k + klen + 4;
        off += 9 + klen + vlen;
        if (is_meta(cf, (const char *)k, klen)) {
            continue;
        }
        rocksdb_writebatch_put_cf(b, cf_of(e, cf), (const char *)k, klen, (const char *)v, vlen);
        n++;
    }
    if (rv != 0) {
        cairn_error_setf(err, rv, "engine: malformed checkpoint chunk at byte %zu of %zu", off,
                         len);
    } else {
        rocksdb_write(e->db, e->wo_nosync, b, &msg);
        if (msg != NULL) {
            rv = eng_rocks_error(err, msg, "install: put");
        } else if (n_keys != NULL) {
            *n_keys += n;
        }
    }
    rocksdb_writebatch_destroy(b);
    return rv;
}

int eng_install_finish(struct eng *e, cairn_index index, cairn_ts ts, struct cairn_error *err)
{
    char *msg = NULL, *val;
    size_t vlen = 0;
    int rv = 0;

    if (!atomic_load(&e->installing)) {
        return cairn_error_setf(err, CAIRN_ESTATE, "engine: no checkpoint install begun");
    }
    pthread_mutex_lock(&e->apply_mu);
    val = rocksdb_get_cf(e->db, e->ro_plain, e->cf_default, ENG_KEY_APPLIED,
                         strlen(ENG_KEY_APPLIED), &vlen, &msg);
    if (msg != NULL) {
        rv = eng_rocks_error(err, msg, "install: read watermark");
        goto out;
    }
    if (val == NULL || vlen != 16 || cairn_load_be64((const uint8_t *)val) != index ||
        cairn_load_be64((const uint8_t *)val + 8) != ts) {
        rv = cairn_error_setf(err, CAIRN_ECORRUPT,
                              "engine: the installed checkpoint does not hold watermark %llu",
                              (unsigned long long)index);
        if (val != NULL) {
            rocksdb_free(val);
        }
        goto out;
    }
    rocksdb_free(val);
    /* I1: every installed record is durable before the marker goes. */
    rocksdb_flush_wal(e->db, 1, &msg);
    if (msg != NULL) {
        rv = eng_rocks_error(err, msg, "install: sync wal");
        goto out;
    }
    rocksdb_delete_cf(e->db, e->wo_sync, e->cf_default, ENG_KEY_INSTALLING,
                      strlen(ENG_KEY_INSTALLING), &msg);
    if (msg != NULL) {
        rv = eng_rocks_error(err, msg, "install: clear marker");
        goto out;
    }
    rv = reset_state(e, true, err);
    if (rv == 0) {
        atomic_store(&e->installing, false);
    }
out:
    pthread_mutex_unlock(&e->apply_mu);
    return rv;
}

bool eng_install_active(struct eng *e)
{
    return atomic_load(&e->installing);
}

int eng_install_check_open(struct eng *e, struct cairn_error *err)
{
    char *msg = NULL, *val;
    size_t vlen = 0;
    int rv;

    val = rocksdb_get_cf(e->db, e->ro_plain, e->cf_default, ENG_KEY_INSTALLING,
                         strlen(ENG_KEY_INSTALLING), &vlen, &msg);
    if (msg != NULL) {
        return eng_rocks_error(err, msg, "read install marker");
    }
    if (val == NULL) {
        return 0;
    }
    rocksdb_free(val);
    cairn_log(CAIRN_LOG_WARN, "engine",
              "a checkpoint install did not finish (applied index %llu was being replaced): "
              "starting empty, the member resyncs",
              (unsigned long long)e->applied_index);
    rv = wipe(e, err);
    if (rv == 0) {
        eng_cat_reset(&e->cat);
        e->applied_index = 0;
        e->applied_ts = 0;
    }
    return rv;
}
