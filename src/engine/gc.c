/*
 * gc.c: garbage collection of old MVCC versions in the "docs" column
 * family, by a RocksDB compaction filter; the registry of live snapshots
 * that bounds it; eng_compact and the debug version counter.
 *
 * Why dropping a version is safe
 * ------------------------------
 * A reader at read point R sees, for each document, the newest version with
 * ts <= R (a tombstone meaning "absent"). Call H the horizon:
 *
 *     H = min( oldest read point of any live eng_snap,
 *              applied_ts - history window (clamped at 0) )
 *
 * The read point of a snapshot is min(read_ts, P), P the applied ts it read
 * when it was taken (the overlay is in memory and never touched by
 * compaction, so it does not matter here); the snapshot reads at S >= it.
 * Every live reader has R >= H by construction, and every reader created
 * later has R >= H too: with read_ts = MAX it reads at the applied ts at that
 * moment, which only grows and was >= H already; with an explicit read_ts
 * the caller must refuse read points older than the history window
 * (SnapshotTooOld), and eng_gc_floor() tells the oldest read point that is
 * still guaranteed complete.
 *
 * For each document, the filter keeps every version with ts > H, keeps the
 * NEWEST version with ts <= H (V0), and drops the versions older than V0
 * that the compaction sees. A reader with R >= H wants the newest version
 * with ts <= R: either that version has ts > H (kept), or it is the newest
 * with ts <= H, i.e. V0 (kept). No reader with R >= H ever wants a version
 * older than V0. Versions older than V0 that live in files outside this
 * compaction are left alone; keeping extra versions is always safe, and a
 * later compaction that sees V0 (or any version <= its horizon newer than
 * them) removes them.
 *
 * Tombstones: a tombstone that is V0 is never dropped. An older version of
 * the document may live in a lower level this compaction does not see; if
 * the tombstone went away, that version would come back to life. A
 * tombstone older than V0 is dropped like any other version.
 *
 * When H is computed: when RocksDB creates the filter for a compaction (the
 * factory callback), and fixed for that compaction. eng_apply publishes the
 * applied ts P (gc.applied_ts, an atomic that only grows) after its RocksDB
 * write. A snapshot registers in one gc.mu critical section: it reads P
 * there and registers the read point R = min(read_ts, P). The factory reads
 * the applied ts A and the registry in one gc.mu critical section too. The
 * two sections are ordered by the mutex:
 *   - registration first: the factory sees R in the registry, so H <= R;
 *   - factory first: its load of A precedes the snapshot's load of P, so
 *     A <= P (coherence of one atomic that only grows), and H <= A - window
 *     <= P; so H <= R when read_ts >= P, and when read_ts < P the caller's
 *     check read_ts >= eng_gc_floor() (>= H, raised in that section) holds.
 * Either way the compaction keeps what a read at R or later needs, and a
 * snapshot reads at S >= R (snap.c S7). A snapshot taken during a
 * compaction is covered the same way, so a fixed H stays safe.
 *
 * RocksDB snapshots do not protect anything here: RocksDB 7.8 forces
 * IgnoreSnapshots on compaction filters, so a filter may drop keys that a
 * RocksDB snapshot could still see. That is why the engine keeps its own
 * registry of live eng_snap read points and bounds H with it.
 *
 * Per-compaction state: keys reach the filter in key order, all versions of
 * one document adjacent, newest first (the ~ts suffix). The filter object
 * remembers the previous document prefix (the key minus its 8-byte ~ts) and
 * whether V0 was seen for it. RocksDB runs compactions (and sub-
 * compactions) concurrently, each with its own filter from the factory, so
 * that state lives in the filter object, never in a global. A document
 * split between two sub-compactions only makes the second one keep one
 * extra version (it treats its first version <= H as V0): safe.
 *
 * Documents are compared by their full prefix (coll_id, encoded _id) with
 * its length, so a version of one document never counts as V0 of another,
 * even when one _id's bytes are a prefix of another's.
 *
 * Only the "docs" column family gets the factory; the default column family
 * (catalog, watermark, meta) is never filtered. Flushes are not filtered
 * (RocksDB applies factories to compactions only).
 *
 * Threads: the factory and filters run on RocksDB background threads. The
 * factory takes only gc.mu and reads atomics; it never takes a lock that
 * eng_apply holds across rocksdb_write (a write stalled on compaction would
 * otherwise deadlock), and gc.mu is never held while calling RocksDB.
 * gc.mu is the last lock in the engine's order (engine_int.h).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "lib/log.h"

/* MongoDB's minSnapshotHistoryWindowInSeconds default: versions stay
 * readable for this much cluster time behind the applied ts, so snapshot
 * reads at a slightly old atClusterTime (or the majority point of a
 * lagging member) still find them. */
#define GC_HISTORY_WINDOW_SECS 300u

/* Value of rocksdb::BottommostLevelCompaction::kForce for the C API. */
#define GC_BOTTOMMOST_FORCE 2

int eng_gc_init(struct eng_gc *g)
{
    memset(g, 0, sizeof *g);
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        return CAIRN_ENOMEM;
    }
    atomic_init(&g->applied_ts, 0);
    atomic_init(&g->history, CAIRN_TS(GC_HISTORY_WINDOW_SECS, 0));
    atomic_init(&g->floor, 0);
    return 0;
}

void eng_gc_destroy(struct eng_gc *g)
{
    if (g->n != 0) {
        cairn_log(CAIRN_LOG_ERROR, "engine", "closing with %zu snapshot read points live", g->n);
    }
    free(g->pts);
    g->pts = NULL;
    g->n = g->cap = 0;
    pthread_mutex_destroy(&g->mu);
}

void eng_gc_note_applied(struct eng *e, cairn_ts ts)
{
    /* Only grows (replays and zero-op entries never move it back). */
    if (ts > atomic_load(&e->gc.applied_ts)) {
        atomic_store(&e->gc.applied_ts, ts);
    }
}

cairn_ts eng_gc_applied(struct eng *e)
{
    return atomic_load(&e->gc.applied_ts);
}

void eng_gc_open_floor(struct eng *e, cairn_ts applied_ts)
{
    cairn_ts window = CAIRN_TS(GC_HISTORY_WINDOW_SECS, 0);
    atomic_store(&e->gc.floor, applied_ts > window ? applied_ts - window : 0);
}

/* Index of the first point with ts >= `ts`. Caller holds gc.mu. */
static size_t point_lower_bound(const struct eng_gc *g, cairn_ts ts)
{
    size_t lo = 0, hi = g->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g->pts[mid].ts < ts) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int eng_gc_snap_register(struct eng *e, cairn_ts read_ts, cairn_ts *applied, cairn_ts *point_out)
{
    struct eng_gc *g = &e->gc;
    cairn_ts point;
    int rv = 0;

    pthread_mutex_lock(&g->mu);
    /* P and the registration in one critical section (see above). */
    *applied = atomic_load(&g->applied_ts);
    point = read_ts < *applied ? read_ts : *applied;
    *point_out = point;
    size_t i = point_lower_bound(g, point);
    if (i < g->n && g->pts[i].ts == point) {
        g->pts[i].count++;
    } else {
        if (g->n == g->cap) {
            size_t cap = g->cap ? g->cap * 2 : 16;
            struct gc_point *p = realloc(g->pts, cap * sizeof *p);
            if (p == NULL) {
                rv = CAIRN_ENOMEM;
                goto out;
            }
            g->pts = p;
            g->cap = cap;
        }
        memmove(&g->pts[i + 1], &g->pts[i], (g->n - i) * sizeof g->pts[0]);
        g->pts[i].ts = point;
        g->pts[i].count = 1;
        g->n++;
    }
out:
    pthread_mutex_unlock(&g->mu);
    return rv;
}

void eng_gc_snap_unregister(struct eng *e, cairn_ts point)
{
    struct eng_gc *g = &e->gc;

    pthread_mutex_lock(&g->mu);
    size_t i = point_lower_bound(g, point);
    if (i < g->n && g->pts[i].ts == point) {
        if (--g->pts[i].count == 0) {
            memmove(&g->pts[i], &g->pts[i + 1], (g->n - i - 1) * sizeof g->pts[0]);
            g->n--;
        }
    } else {
        cairn_log(CAIRN_LOG_ERROR, "engine", "released an unregistered snapshot read point");
    }
    pthread_mutex_unlock(&g->mu);
}

/* Computes the horizon for a new compaction and raises the floor. */
static cairn_ts gc_horizon_now(struct eng *e)
{
    struct eng_gc *g = &e->gc;
    cairn_ts h;

    pthread_mutex_lock(&g->mu);
    cairn_ts applied = atomic_load(&g->applied_ts);
    cairn_ts window = atomic_load(&g->history);
    h = applied > window ? applied - window : 0;
    if (g->n > 0 && g->pts[0].ts < h) {
        h = g->pts[0].ts;
    }
    if (h > atomic_load(&g->floor)) {
        atomic_store(&g->floor, h);
    }
    pthread_mutex_unlock(&g->mu);
    return h;
}

void eng_gc_set_history_secs(struct eng *e, uint32_t secs)
{
    atomic_store(&e->gc.history, CAIRN_TS(secs, 0));
}

cairn_ts eng_gc_floor(struct eng *e)
{
    return atomic_load(&e->gc.floor);
}

cairn_ts eng_gc_horizon(struct eng *e)
{
    struct eng_gc *g = &e->gc;
    cairn_ts h;

    pthread_mutex_lock(&g->mu);
    cairn_ts applied = atomic_load(&g->applied_ts);
    cairn_ts window = atomic_load(&g->history);
    h = applied > window ? applied - window : 0;
    if (g->n > 0 && g->pts[0].ts < h) {
        h = g->pts[0].ts;
    }
    pthread_mutex_unlock(&g->mu);
    return h;
}

/* ---- The per-compaction filter ----------------------------------------- */

struct gc_filter
{
    cairn_ts horizon;
    struct cairn_buf prev; /* prefix of the document being scanned */
    bool have_prev;
    bool seen_v0; /* the newest version <= horizon of `prev` was seen */
    uint64_t kept, dropped;
};

static void gc_filter_destroy(void *state)
{
    struct gc_filter *f = state;

    if (f->dropped > 0) {
        cairn_log(CAIRN_LOG_DEBUG, "engine", "gc: horizon %u.%u, kept %llu, dropped %llu versions",
                  CAIRN_TS_SECS(f->horizon), CAIRN_TS_INC(f->horizon), (unsigned long long)f->kept,
                  (unsigned long long)f->dropped);
    }
    cairn_buf_free(&f->prev);
    free(f);
}

static const char *gc_filter_name(void *state)
{
    (void)state;
    return "cairn.docs.mvcc_gc.v1";
}

/* Returns 1 to drop the version, 0 to keep it. Never changes values. */
static unsigned char gc_filter_filter(void *state,
                                      int level,
                                      const char *key,
                                      size_t key_len,
                                      const char *value,
                                      size_t value_len,
                                      char **new_value,
                                      size_t *new_value_len,
                                      unsigned char *value_changed)
{
    struct gc_filter *f = state;
    size_t plen;
    cairn_ts ts;

    (void)level;
    (void)value;
    (void)value_len;
    (void)new_value;
    (void)new_value_len;
    *value_changed = 0;
    if (key_len < 17) {
        /* Not a version key: keep what we do not understand. */
        f->have_prev = false;
        f->kept++;
        return 0;
    }
    plen = key_len - 8;
    ts = ~cairn_load_be64((const uint8_t *)key + plen);
    if (!f->have_prev || f->prev.len != plen || memcmp(f->prev.data, key, plen) != 0) {
        cairn_buf_reset(&f->prev);
        f->seen_v0 = false;
        f->have_prev = cairn_buf_append(&f->prev, key, plen) == 0;
        if (!f->have_prev) {
            /* Out of memory: cannot tell documents apart, keep. */
            f->kept++;
            return 0;
        }
    }
    if (ts > f->horizon || !f->seen_v0) {
        /* Newer than the horizon, or V0 itself (even a tombstone). */
        if (ts <= f->horizon) {
            f->seen_v0 = true;
        }
        f->kept++;
        return 0;
    }
    f->dropped++;
    return 1;
}

static rocksdb_compactionfilter_t *gc_create_filter(void *state,
                                                    rocksdb_compactionfiltercontext_t *ctx)
{
    struct eng *e = state;
    struct gc_filter *f;
    rocksdb_compactionfilter_t *cf;

    (void)ctx;
    f = calloc(1, sizeof *f);
    if (f == NULL) {
        return NULL; /* no filter: this compaction keeps everything */
    }
    f->horizon = gc_horizon_now(e);
    f->prev = (struct cairn_buf)CAIRN_BUF_INIT;
    cf = rocksdb_compactionfilter_create(f, gc_filter_destroy, gc_filter_filter, gc_filter_name);
    /* 7.8 only supports ignore_snapshots = true (the C API's default); the
     * engine's own registry protects snapshots (see above). */
    rocksdb_compactionfilter_set_ignore_snapshots(cf, 1);
    return cf;
}

static void gc_factory_destroy(void *state)
{
    (void)state; /* the engine is owned by its caller */
}

static const char *gc_factory_name(void *state)
{
    (void)state;
    return "cairn.docs.mvcc_gc_factory.v1";
}

rocksdb_compactionfilterfactory_t *eng_gc_factory_create(struct eng *e)
{
    return rocksdb_compactionfilterfactory_create(e, gc_factory_destroy, gc_create_filter,
                                                  gc_factory_name);
}

/* ---- Manual compaction and debugging ----------------------------------- */

int eng_compact(struct eng *e, struct cairn_error *err)
{
    rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
    uint64_t before = 0, after = 0;
    bool have_before;

    rocksdb_compactoptions_set_bottommost_level_compaction(co, GC_BOTTOMMOST_FORCE);
    have_before = rocksdb_property_int(e->db, "rocksdb.background-errors", &before) == 0;
    rocksdb_compact_range_cf_opt(e->db, e->cf_docs, co, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(co);
    if (have_before && rocksdb_property_int(e->db, "rocksdb.background-errors", &after) == 0 &&
        after > before) {
        return cairn_error_setf(err, CAIRN_EIO, "rocksdb: compaction of the docs failed");
    }
    return 0;
}

int eng_debug_count_versions(struct eng *e,
                             uint64_t coll_id,
                             const uint8_t *key,
                             size_t key_len,
                             size_t *n,
                             struct cairn_error *err)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it;
    uint8_t lo[8], hi[8];
    char *msg = NULL;
    size_t count = 0;

    *n = 0;
    rocksdb_readoptions_set_total_order_seek(ro, 1);
    cairn_store_be64(lo, coll_id);
    if (coll_id != UINT64_MAX) {
        cairn_store_be64(hi, coll_id + 1);
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, sizeof hi);
    }
    it = rocksdb_create_iterator_cf(e->db, ro, e->cf_docs);
    for (rocksdb_iter_seek(it, (const char *)lo, sizeof lo); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen < 17 || cairn_load_be64(k) != coll_id) {
            break;
        }
        if (key == NULL || (klen == 16 + key_len && memcmp(k + 8, key, key_len) == 0)) {
            count++;
        }
    }
    rocksdb_iter_get_error(it, &msg);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (msg != NULL) {
        return eng_rocks_error(err, msg, "count versions");
    }
    *n = count;
    return 0;
}
