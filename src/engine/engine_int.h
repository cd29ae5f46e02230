/*
 * engine_int.h: private declarations shared by the files of src/engine.
 * Nothing outside src/engine includes this header (test_gc.c and
 * test_overlay.c do, as white-box tests).
 *
 * Threads
 * -------
 *   raft thread   eng_apply (RocksDB write, then watermark, catalog, trim),
 *                 eng_overlay_discard on leadership loss.
 *   commit section (client threads, one at a time, serialised by the txn
 *                 layer): eng_overlay_add, eng_overlay_discard_from.
 *   readers       (any thread, any number): eng_snap_*, eng_iter_*,
 *                 eng_latest, eng_visible_ts, catalog lookups.
 *   RocksDB       background threads: the compaction filter factory (gc.c).
 *
 * Locks (none is ever held across a RocksDB write except apply_mu, which
 * only eng_apply takes):
 *   apply_mu   serialises eng_apply calls. Nobody else takes it.
 *   ovl.wmu    serialises the overlay's writers: eng_overlay_add,
 *              eng_overlay_discard, eng_overlay_discard_from. eng_apply's trim
 *              only try-locks it (to retire the active segment when no add
 *              is running), so an apply never waits for an add. Readers never
 *              take it.
 *   ovl.mu     guards the published overlay: the segment list, the active
 *              segment pointer, the commit records and the visible ts. Held
 *              for O(1) (publish, capture: O(segments), trim: O(retired)).
 *   wm_mu      guards the (applied_index, applied_ts) pair for eng_applied.
 *   cat.lock   the catalog (rwlock, writer-preferring).
 *   gc.mu      the registry of live snapshot read points (gc.c); snapshots
 *              read the applied ts under it when they register.
 * Order: apply_mu, ovl.wmu, ovl.mu, cat.lock, wm_mu, gc.mu (a thread takes
 * a later lock only while holding earlier ones or none; trim's try-lock of
 * wmu cannot block).
 *
 * The overlay (overlay.c)
 * -----------------------
 * A list of segments, oldest first. A segment is a skiplist of version
 * nodes ordered by (coll_id, key ascending, ts descending), written by one
 * writer and read lock-free by any number of readers; its nodes live in the
 * segment's arena and are freed only with the whole segment, when its last
 * reference (the list's, or a reader view's) is dropped. Only the newest
 * segment, the active one, receives new nodes; past a size bound the writer
 * starts a new one. See overlay.c for the invariants.
 *
 * Snapshots (snap.c) see the overlay through a view: references to the
 * segments live at capture time plus the two bounds lo (the applied ts read
 * after the capture) and hi (the visible ts at capture). A view shows only
 * versions with lo < ts <= hi. See snap.c for why every version is then seen
 * exactly once (or identically twice).
 */
#ifndef CAIRN_ENGINE_ENGINE_INT_H
#define CAIRN_ENGINE_ENGINE_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "engine/engine.h"

/* ---- Overlay (overlay.c) ------------------------------------------------ */

/* Tallest skiplist tower. Levels are drawn with p = 1/4, so 12 levels
 * serve 4^12 = 16M nodes per segment, far above the segment bound. */
#define OVL_MAX_HEIGHT 12

/* Segments a view or an overlay iterator holds without allocating. */
#define OVL_VIEW_INLINE 8

/* One version. Immutable once linked (only its links change, and only to
 * point at newly inserted nodes). Allocated in its segment's arena. */
struct ovl_node
{
    uint64_t coll_id;
    cairn_ts ts;
    const uint8_t *key; /* after the links, in the same allocation */
    const uint8_t *doc; /* after the key; doc_len 0 for a tombstone */
    size_t key_len;
    size_t doc_len;
    uint8_t flag;   /* ENG_VERSION_DOC or ENG_VERSION_TOMBSTONE */
    uint8_t height; /* number of links, 1..OVL_MAX_HEIGHT */
    _Atomic(struct ovl_node *) next[];
};

struct ovl_chunk;

struct ovl_seg
{
    atomic_size_t ref;    /* the list's reference plus one per view */
    struct ovl_seg *next; /* the next newer segment; under ovl.mu */
    cairn_ts max_ts;      /* newest published commit ts in it; under ovl.mu */
    /* Writer state (under ovl.wmu; never read by readers): */
    size_t n_nodes;
    size_t bytes;
    uint64_t rng;
    struct ovl_chunk *chunks;
    _Atomic(struct ovl_node *) head[OVL_MAX_HEIGHT];
};

/* One added commit, for eng_overlay_size and eng_overlay_discard_from. */
struct ovl_rec
{
    cairn_ts ts;
    size_t n_versions;
    struct ovl_rec *next;
};

struct eng_ovl
{
    pthread_mutex_t wmu;
    pthread_mutex_t mu;
    struct ovl_seg *oldest, *newest; /* the list; under mu */
    struct ovl_seg *active;          /* newest segment if it still takes nodes */
    size_t n_segs;
    struct ovl_rec *rec_head, *rec_tail; /* added commits, ts ascending */
    size_t n_versions;                   /* sum of the records' n_versions */
    atomic_uint_least64_t visible_ts;    /* V: written under mu */
    atomic_uint_least64_t discards;      /* discards so far: written under mu */
    size_t seg_max_nodes;                /* seal bound (tests may lower it) */
    /* Debug counters (eng_debug_overlay_stats). */
    atomic_uint_least64_t n_visited;
    atomic_uint_least64_t n_allocated;
    atomic_uint_least64_t n_trim_steps;
    atomic_uint_least64_t n_segs_freed;
};

/* A reader's captured overlay: references to segments, newest first, and
 * the bounds of what it shows (lo < ts <= hi). Must not be copied once
 * captured (segs may point into inl). */
struct ovl_view
{
    struct eng_ovl *o;
    size_t n;
    struct ovl_seg **segs;
    struct ovl_seg *inl[OVL_VIEW_INLINE];
    cairn_ts lo;
    cairn_ts hi;
    uint64_t discards; /* o->discards at capture */
};

/* A merged walk over one collection of a view. */
struct ovl_iter
{
    const struct ovl_view *v;
    uint64_t coll;
    cairn_ts lo, hi;        /* shows versions with lo < ts <= hi */
    struct ovl_node **cand; /* per segment: newest shown version of its
                               next key, or NULL */
    struct ovl_node *inl[OVL_VIEW_INLINE];
    struct ovl_node *cur; /* the smallest candidate key's newest */
};

/* Initialises an empty overlay. Returns 0 or CAIRN_ENOMEM. At open. */
int eng_ovl_init(struct eng_ovl *o);

/* Frees the overlay. Every view must have been released. At close. */
void eng_ovl_destroy(struct eng_ovl *o);

/* Captures the overlay into `v` (uninitialised on entry): references to
 * the live segments and hi = the visible ts; lo = 0 (the caller sets it).
 * Returns 0 or CAIRN_ENOMEM (then `v` is empty and needs no release). Any
 * thread; O(segments) under ovl.mu. */
int eng_ovl_capture(struct eng_ovl *o, struct ovl_view *v);

/* An empty view (no overlay). */
void eng_ovl_view_empty(struct eng_ovl *o, struct ovl_view *v);

/* Drops the view's references (freeing segments no one else holds). */
void eng_ovl_view_release(struct ovl_view *v);

/* The newest version of (coll_id, key) the view shows with ts <= bound,
 * or NULL. Borrowed: valid while the view is held. */
const struct ovl_node *eng_ovl_view_get(const struct ovl_view *v,
                                        uint64_t coll_id,
                                        const uint8_t *key,
                                        size_t key_len,
                                        cairn_ts bound);

/* Starts a walk over collection `coll_id` of `v`, at the first key >
 * `after` (NULL = from the start), showing versions with ts <= bound.
 * Returns 0 or CAIRN_ENOMEM. */
int eng_ovl_iter_init(struct ovl_iter *it,
                      const struct ovl_view *v,
                      uint64_t coll_id,
                      const uint8_t *after,
                      size_t after_len,
                      cairn_ts bound);

/* The walk's current key: its newest shown version (a document or a
 * tombstone), or NULL at the end. Borrowed: valid while the view is. */
static inline const struct ovl_node *eng_ovl_iter_cur(const struct ovl_iter *it)
{
    return it->cur;
}

/* Moves the walk past its current key. */
void eng_ovl_iter_next(struct ovl_iter *it);

/* Frees the walk's memory (not the view). */
void eng_ovl_iter_free(struct ovl_iter *it);

/* Retires everything applied up to `applied_ts`: commit records with
 * ts <= it, and segments whose newest ts <= it (the active one only when
 * no add is running). Never fails, never blocks on an add. Called by
 * eng_apply after publishing the new watermark. */
void eng_ovl_trim(struct eng_ovl *o, cairn_ts applied_ts);

/* Bytewise comparison of two keys (memcmp, then the shorter first). */
int eng_key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* ---- Catalog (catalog.c) ------------------------------------------------ */

struct cat_ent
{
    uint64_t id;
    char ns[ENG_NS_MAX + 1];
};

struct cat_pending
{
    int kind; /* ENG_OP_CREATE or ENG_OP_DROP */
    cairn_ts ts;
    uint64_t id;
    char ns[ENG_NS_MAX + 1];
};

/* One applied rename: `from` meant collection (or index) `id` until `ts`,
 * when it became `to`. */
#define CAT_ALIASES 64
struct cat_alias
{
    cairn_ts ts;
    uint64_t id;
    char from[ENG_NS_MAX + 1];
    char to[ENG_NS_MAX + 1];
};

struct eng_catalog
{
    pthread_rwlock_t lock;
    struct cat_ent *ents; /* committed view, sorted by ns */
    size_t n, cap;
    struct cat_pending *pend; /* overlay creates/drops in ts order */
    size_t n_pend, cap_pend;
    uint64_t max_id; /* largest id ever seen or handed out */
    /* Applied renames (a name unbound and its id bound to another name in
     * one commit), newest last, a ring of the last CAT_ALIASES: what a
     * read below their ts resolves a name to (eng_catalog_lookup_at).
     * Persisted by eng_apply in the entry's batch under
     * "catalog_alias/<slot>", slot = alias_seq mod CAT_ALIASES (so the
     * keys overwrite themselves), and reloaded by eng_load_state. */
    struct cat_alias aliases[CAT_ALIASES];
    size_t n_alias, next_alias;
    size_t alias_seq; /* the slot the next persisted rename takes */
    /* Bumped (under lock, for writing) by every change to either view, so
     * callers can cache what they derive from the catalog. */
    _Atomic uint64_t gen;
};

/* Initialises an empty catalog. Returns 0 or CAIRN_ENOMEM. */
int eng_cat_init(struct eng_catalog *c);

/* Frees the catalog's memory. */
void eng_cat_destroy(struct eng_catalog *c);

/* Committed view mutators. The caller holds c->lock for writing (or is
 * single-threaded at open). Create replaces an entry with the same ns.
 * Returns 0 or CAIRN_ENOMEM (create only; eng_cat_reserve avoids it). */
int eng_cat_committed_create(struct eng_catalog *c, const char *ns, uint64_t id);
void eng_cat_committed_drop(struct eng_catalog *c, const char *ns);

/* Ensures `extra` more committed entries fit without allocation. Caller
 * holds c->lock for writing. Returns 0 or CAIRN_ENOMEM. */
int eng_cat_reserve(struct eng_catalog *c, size_t extra);

/* The committed namespace of id `id` copied into ns (ENG_NS_MAX + 1
 * bytes). Returns true when found. Caller holds c->lock. */
bool eng_cat_committed_ns(const struct eng_catalog *c, uint64_t id, char *ns);

/* The committed id of `ns` in *id. Returns true when found. Caller holds
 * c->lock. */
bool eng_cat_committed_id(const struct eng_catalog *c, const char *ns, uint64_t *id);

/* Appends a pending create/drop. Caller holds c->lock for writing.
 * Returns 0 or CAIRN_ENOMEM. */
int eng_cat_pending_add(struct eng_catalog *c, int kind, cairn_ts ts, uint64_t id, const char *ns);

/* Drops pending ops with ts <= `ts` (all when ts is CAIRN_TS_MAX). Caller
 * holds c->lock for writing. */
void eng_cat_pending_trim(struct eng_catalog *c, cairn_ts ts);

/* Drops pending ops with ts >= `ts` (all when ts is 0). Caller holds
 * c->lock for writing. */
void eng_cat_pending_cut(struct eng_catalog *c, cairn_ts ts);

/* Records an applied rename (see struct cat_alias), forgetting the oldest
 * when the ring is full and any at or below `floor` (no read that old is
 * served). Caller holds c->lock for writing. Never fails. */
void eng_cat_alias_add(struct eng_catalog *c,
                       cairn_ts ts,
                       uint64_t id,
                       const char *from,
                       const char *to,
                       cairn_ts floor);

/* Empties the committed view and the pending ops (max_id stays). Caller
 * holds c->lock for writing. */
void eng_cat_reset(struct eng_catalog *c);

/* Records that `id` is in use. Caller holds c->lock for writing. */
void eng_cat_note_id(struct eng_catalog *c, uint64_t id);

/* ---- Garbage collection (gc.c) ----------------------------------------- */

/* A read point held by `count` live snapshots. */
struct gc_point
{
    cairn_ts ts;
    size_t count;
};

struct eng_gc
{
    pthread_mutex_t mu;
    struct gc_point *pts; /* sorted by ts ascending, counts > 0; under mu */
    size_t n, cap;
    atomic_uint_least64_t applied_ts; /* P: the applied ts readers and the factory use */
    atomic_uint_least64_t history;    /* history window as a ts delta */
    atomic_uint_least64_t floor;      /* largest horizon handed to a filter */
};

/* Initialises the registry (window = the default). Returns 0 or
 * CAIRN_ENOMEM. Before the database is opened. */
int eng_gc_init(struct eng_gc *g);

/* Frees the registry. After the database is closed. */
void eng_gc_destroy(struct eng_gc *g);

/* Publishes the applied ts P to readers and the filter factory. Called by
 * eng_apply after its RocksDB write returned (and once at open). */
void eng_gc_note_applied(struct eng *e, cairn_ts ts);

/* The published applied ts P. Any thread. */
cairn_ts eng_gc_applied(struct eng *e);

/* At open: sets the floor to what compactions before the restart may have
 * used, applied_ts - the default window (clamped at 0). */
void eng_gc_open_floor(struct eng *e, cairn_ts applied_ts);

/* Registers one snapshot: under gc.mu reads the applied ts P into
 * *applied and registers read point min(read_ts, P), returned in *point.
 * Returns 0 or CAIRN_ENOMEM (nothing registered). Unregister takes a
 * point that was registered. Any thread. */
int eng_gc_snap_register(struct eng *e, cairn_ts read_ts, cairn_ts *applied, cairn_ts *point);
void eng_gc_snap_unregister(struct eng *e, cairn_ts point);

/* The compaction filter factory for the docs column family; `e` is
 * borrowed and must outlive the database. Owned by the options it is set
 * on. */
rocksdb_compactionfilterfactory_t *eng_gc_factory_create(struct eng *e);

/* ---- Session records (session.c) ---------------------------------------- */

/* Adds the ENG_OP_SESSION op `op` of a commit at `ts` to batch `b`, using
 * `k` and `v` as scratch. The op was validated. Returns 0 or CAIRN_ENOMEM. */
int eng_session_batch_put(struct eng *e,
                          rocksdb_writebatch_t *b,
                          const struct eng_op *op,
                          cairn_ts ts,
                          struct cairn_buf *k,
                          struct cairn_buf *v);

/* ---- The engine object (engine.c) ------------------------------------------ */

struct eng
{
    rocksdb_t *db;
    rocksdb_options_t *opts;      /* DB and default column family */
    rocksdb_options_t *docs_opts; /* "docs" column family */
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf_default;
    rocksdb_column_family_handle_t *cf_docs;
    rocksdb_column_family_handle_t *cf_sessions;
    rocksdb_options_t *sessions_opts; /* "sessions" column family */
    rocksdb_writeoptions_t *wo_nosync;
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_readoptions_t *ro_plain; /* no snapshot; shared, never modified */

    pthread_mutex_t apply_mu;
    pthread_mutex_t wm_mu;
    cairn_index applied_index; /* under wm_mu */
    cairn_ts applied_ts;       /* under wm_mu; also published in gc.applied_ts */

    struct eng_ovl ovl;
    struct eng_catalog cat;
    struct eng_gc gc;

    atomic_bool installing; /* eng_install_begin .. finish (clone.c) */

    eng_debug_hook_cb hook; /* tests: eng_debug_set_hook */
    void *hook_arg;
};

/* Default column family keys shared by engine.c and clone.c. */
#define ENG_KEY_APPLIED "applied"
#define ENG_META_PREFIX "meta/"
/* The install marker (clone.c): under "meta/", so a wipe keeps it. */
#define ENG_KEY_INSTALLING "meta/installing"

/* Loads the catalog, the id counter and the watermark from RocksDB into
 * the (empty) in-memory catalog and e->applied_*. The caller is alone (at
 * open) or holds cat.lock for writing and wm_mu (clone.c). */
int eng_load_state(struct eng *e, struct cairn_error *err);

/* At open, after eng_load_state: when the install marker is set, wipes
 * the partial install and resets the loaded state to empty (logged).
 * Errors: CAIRN_EIO, CAIRN_ENOMEM. Single-threaded (at open). */
int eng_install_check_open(struct eng *e, struct cairn_error *err);

/* Calls the test hook, if any, at `point`. */
static inline void eng_debug_point(struct eng *e, enum eng_debug_point point)
{
    if (e->hook != NULL) {
        e->hook(e->hook_arg, point);
    }
}

/* Sets `err` from a RocksDB error string (freed here) and returns
 * CAIRN_EIO. `what` names the failed operation. */
int eng_rocks_error(struct cairn_error *err, char *rocks_msg, const char *what);

/* Writes the docs column family key coll_id | key | ~ts into `out` (which
 * must hold 16 + key_len bytes). */
void eng_docs_key(uint8_t *out, uint64_t coll_id, const uint8_t *key, size_t key_len, cairn_ts ts);

/* Decodes a stored version value. Returns 1 for a document (*doc,
 * *doc_len set), 0 for a tombstone, -1 when the value is malformed. */
int eng_decode_value(const char *v, size_t vlen, const uint8_t **doc, size_t *doc_len);

#endif /* CAIRN_ENGINE_ENGINE_INT_H */
