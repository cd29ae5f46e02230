/*
 * engine_int.h: private declarations shared by the files of src/engine.
 * Nothing outside src/engine includes this header.
 *
 * Locks (build_mu always first; mu and cat.lock are held together only by a
 * thread that holds build_mu, so their relative order cannot deadlock):
 *   build_mu  serialises the builders of a new overlay state (eng_overlay_add,
 *             eng_apply's trim, eng_overlay_discard). Readers never take it.
 *   mu        guards the published overlay state pointer and the applied
 *             watermark. eng_apply holds it across its RocksDB write and the
 *             overlay swap; eng_snap_acquire holds it across the RocksDB
 *             snapshot and the overlay capture, so a snapshot sees every
 *             version exactly in RocksDB, in the overlay, or in both (the
 *             overlay copy then wins and is identical).
 *   cat.lock  the catalog (rwlock, writer-preferring).
 *   gc.mu     the registry of live snapshot read points (gc.c). Taken inside
 *             mu by eng_snap_acquire, alone by eng_snap_release and by the
 *             compaction filter factory on RocksDB threads; never held while
 *             calling RocksDB. Order: mu before gc.mu.
 *
 * Overlay representation: an immutable, refcounted `struct ovl_state`
 * (sorted array of per-collection `struct ovl_coll`, each a sorted array of
 * refcounted immutable `struct ovl_ver`, ordered by key ascending then ts
 * descending). Writers build a new state copying pointers (copy-on-write);
 * readers capture the current state with one reference increment, so a
 * capture is O(1) and free when the overlay is empty (state NULL).
 */
#ifndef CAIRN_ENGINE_ENGINE_INT_H
#define CAIRN_ENGINE_ENGINE_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>

#include "engine/engine.h"

/* ---- Overlay (overlay.c) ------------------------------------------------ */

struct ovl_ver
{
    atomic_size_t ref;
    cairn_ts ts;
    uint8_t flag; /* ENG_VERSION_DOC or ENG_VERSION_TOMBSTONE */
    size_t key_len;
    size_t doc_len;
    const uint8_t *key; /* points into data */
    const uint8_t *doc; /* points into data after the key */
    uint8_t data[];
};

struct ovl_coll
{
    atomic_size_t ref;
    uint64_t coll_id;
    size_t n;
    struct ovl_ver *v[]; /* key ascending, then ts descending */
};

struct ovl_state
{
    atomic_size_t ref;
    cairn_ts max_ts;   /* newest version ts in the state */
    size_t n_versions; /* total over all collections */
    size_t n_colls;
    struct ovl_coll *c[]; /* coll_id ascending, none empty */
};

/* Adds a reference to `s` (may be NULL) and returns it. Any thread. */
struct ovl_state *eng_ovl_state_ref(struct ovl_state *s);

/* Drops a reference to `s` (may be NULL), freeing it and whatever only it
 * referenced when it was the last. Any thread. */
void eng_ovl_state_unref(struct ovl_state *s);

/* Builds the state `old` (may be NULL, borrowed) plus the PUT/DELETE ops of
 * `c` (copied; a key written twice in the commit keeps its last op). On
 * success returns 0 and *out is a new state with one reference (NULL when
 * the result is empty). Returns CAIRN_ENOMEM or CAIRN_EINVAL (empty key).
 * Caller holds build_mu. */
int eng_ovl_state_add(struct ovl_state *old, const struct eng_commit *c, struct ovl_state **out);

/* Builds the state `old` (borrowed) without versions of ts <= `ts`. Returns
 * 0 with *out a new reference (NULL when empty; `old` itself, referenced
 * again, when nothing is removed), or CAIRN_ENOMEM. Caller holds build_mu. */
int eng_ovl_state_trim(struct ovl_state *old, cairn_ts ts, struct ovl_state **out);

/* The collection `coll_id` of `s` (may be NULL), or NULL. Borrowed. */
const struct ovl_coll *eng_ovl_coll(const struct ovl_state *s, uint64_t coll_id);

/* Index of the first version of `c` whose key is >= (or, with `strict`,
 * > ) `key`. */
size_t eng_ovl_lower_bound(const struct ovl_coll *c,
                           const uint8_t *key,
                           size_t key_len,
                           bool strict);

/* From *i, the first version of a key's run, returns the newest version of
 * that key with ts <= read_ts (NULL when none) and moves *i to the first
 * version of the next key. */
const struct ovl_ver *eng_ovl_pick(const struct ovl_coll *c, size_t *i, cairn_ts read_ts);

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

struct eng_catalog
{
    pthread_rwlock_t lock;
    struct cat_ent *ents; /* committed view, sorted by ns */
    size_t n, cap;
    struct cat_pending *pend; /* overlay creates/drops in ts order */
    size_t n_pend, cap_pend;
    uint64_t max_id; /* largest id ever seen or handed out */
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

/* Appends a pending create/drop. Caller holds c->lock for writing.
 * Returns 0 or CAIRN_ENOMEM. */
int eng_cat_pending_add(struct eng_catalog *c, int kind, cairn_ts ts, uint64_t id, const char *ns);

/* Drops pending ops with ts <= `ts` (all when ts is CAIRN_TS_MAX). Caller
 * holds c->lock for writing. */
void eng_cat_pending_trim(struct eng_catalog *c, cairn_ts ts);

/* Drops pending ops with ts >= `ts` (all when ts is 0). Caller holds
 * c->lock for writing. */
void eng_cat_pending_cut(struct eng_catalog *c, cairn_ts ts);

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
    atomic_uint_least64_t applied_ts; /* the applied ts, published for the factory */
    atomic_uint_least64_t history;    /* history window as a ts delta */
    atomic_uint_least64_t floor;      /* largest horizon handed to a filter */
};

/* Initialises the registry (window = the default). Returns 0 or
 * CAIRN_ENOMEM. Before the database is opened. */
int eng_gc_init(struct eng_gc *g);

/* Frees the registry. After the database is closed. */
void eng_gc_destroy(struct eng_gc *g);

/* Publishes the applied ts for the filter factory. Called under e->mu
 * after the applied watermark changed (and once at open). */
void eng_gc_note_applied(struct eng *e, cairn_ts ts);

/* At open: sets the floor to what compactions before the restart may have
 * used, applied_ts - the default window (clamped at 0). */
void eng_gc_open_floor(struct eng *e, cairn_ts applied_ts);

/* Adds / removes one snapshot at read point `point`. Register is called
 * with e->mu held, in the same critical section that read the applied ts;
 * returns 0 or CAIRN_ENOMEM. Unregister takes a point that was registered. */
int eng_gc_snap_register(struct eng *e, cairn_ts point);
void eng_gc_snap_unregister(struct eng *e, cairn_ts point);

/* The compaction filter factory for the docs column family; `e` is
 * borrowed and must outlive the database. Owned by the options it is set
 * on. */
rocksdb_compactionfilterfactory_t *eng_gc_factory_create(struct eng *e);

/* ---- The engine object (engine.c) ------------------------------------------ */

struct eng
{
    rocksdb_t *db;
    rocksdb_options_t *opts;      /* DB and default column family */
    rocksdb_options_t *docs_opts; /* "docs" column family */
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf_default;
    rocksdb_column_family_handle_t *cf_docs;
    rocksdb_writeoptions_t *wo_nosync;
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_readoptions_t *ro_plain;

    pthread_mutex_t build_mu;
    pthread_mutex_t mu;
    struct ovl_state *ovl; /* guarded by mu; replaced under build_mu + mu */
    cairn_index applied_index;
    cairn_ts applied_ts;

    struct eng_catalog cat;
    struct eng_gc gc;
};

/* Sets `err` from a RocksDB error string (freed here) and returns
 * CAIRN_EIO. `what` names the failed operation. */
int eng_rocks_error(struct cairn_error *err, char *rocks_msg, const char *what);

/* Writes the docs column family key coll_id | key | ~ts into `out` (which
 * must hold 16 + key_len bytes). */
void eng_docs_key(uint8_t *out, uint64_t coll_id, const uint8_t *key, size_t key_len, cairn_ts ts);

#endif /* CAIRN_ENGINE_ENGINE_INT_H */
