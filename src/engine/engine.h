/*
 * engine.h: the storage engine, the only layer that includes RocksDB.
 *
 * It owns:
 *  - MVCC document versions in column family "docs", keyed by
 *      coll_id (8 bytes big-endian) | encoded _id | ~ts (8 bytes big-endian)
 *    so that all versions of one document are adjacent, newest first. The
 *    encoded _id is produced by qry_key_encode() (order-preserving and
 *    self-delimiting); the engine treats it as opaque bytes. A value is one
 *    flag byte (ENG_VERSION_DOC or ENG_VERSION_TOMBSTONE) followed, for a
 *    document, by its BSON bytes.
 *  - The catalog of collections (namespace "db.coll" -> collection id), in
 *    the default column family under "catalog/<ns>". Collection ids are
 *    never reused.
 *  - The applied watermark (raft index and cluster timestamp of the last
 *    applied commit), written in the same RocksDB batch as the data.
 *  - Small metadata blobs (replica-set config) under "meta/<name>".
 *  - Session records (ENG_OP_SESSION) under "session/<key>", written in
 *    the same batch as the data and the watermark.
 *  - The overlay: the primary's proposed-but-not-yet-applied versions,
 *    in memory, which "local" reads on the primary see on top of RocksDB.
 *
 * RocksDB holds only committed state; writes are not synced (recovery
 * replays the raft log above the applied watermark).
 *
 * Threads: eng_apply runs on one applying thread (raft). eng_overlay_add
 * and eng_overlay_discard_from run in the txn layer's commit section on
 * client threads, one at a time (the caller serialises them), concurrently
 * with eng_apply, eng_overlay_discard and any number of readers.
 * Snapshots, gets, eng_latest and iterators may be used from any thread,
 * each object by one thread at a time. No reader ever waits for a RocksDB
 * write, and eng_apply never waits for an overlay add.
 */
#ifndef CAIRN_ENGINE_ENGINE_H
#define CAIRN_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/cairn.h"
#include "lib/buf.h"

/* A cluster timestamp: Timestamp(secs, inc) packed as secs << 32 | inc. */
typedef uint64_t cairn_ts;
/* A raft log index. */
typedef uint64_t cairn_index;

#define CAIRN_TS(secs, inc) (((uint64_t)(secs) << 32) | (uint32_t)(inc))
#define CAIRN_TS_SECS(ts) ((uint32_t)((ts) >> 32))
#define CAIRN_TS_INC(ts) ((uint32_t)((ts)&0xffffffffu))
#define CAIRN_TS_MAX UINT64_MAX

#define ENG_VERSION_DOC 0x01
#define ENG_VERSION_TOMBSTONE 0x02

/* Longest namespace "db.coll" the engine accepts (MongoDB's limit). */
#define ENG_NS_MAX 255

struct eng;

/* One resolved, idempotent change. Pointers are borrowed for the call. */
enum eng_op_kind {
    ENG_OP_PUT = 1,     /* write `doc` as the new version of (coll_id, key) */
    ENG_OP_DELETE = 2,  /* write a tombstone for (coll_id, key) */
    ENG_OP_CREATE = 3,  /* create collection `ns` with id `coll_id` */
    ENG_OP_DROP = 4,    /* drop collection `ns` (id `coll_id`) and its documents;
                           with coll_id ENG_UNBIND_ID only the name's catalog
                           entry (an unbind: the documents stay, see below) */
    ENG_OP_SESSION = 5, /* store session record `doc` under session key `key` (coll_id unused) */
    ENG_OP_CONFIG = 6, /* store `doc` as the replica-set config (meta "rsconfig"; coll_id unused) */
};

/* A rename is an unbind and a bind in one commit: ENG_OP_DROP of the old
 * name with coll_id ENG_UNBIND_ID (0, never a collection id: ids start at
 * 1, and the docs range of id 0 is empty) removes only its catalog entry,
 * and ENG_OP_CREATE of the new name with the old id binds it. The
 * documents, index entries and ids are untouched, so the commit is
 * O(number of names). Members of any version decode and apply it alike
 * (an older engine's drop of the empty range of id 0 deletes nothing). */
#define ENG_UNBIND_ID 0

/* Longest session key ENG_OP_SESSION accepts. */
#define ENG_SESSION_KEY_MAX 64

struct eng_op
{
    int kind;
    uint64_t coll_id;
    const char *ns;     /* CREATE/DROP: the namespace; PUT/DELETE: may be NULL */
    const uint8_t *key; /* PUT/DELETE: encoded _id; SESSION: the opaque session
                           key, 1..ENG_SESSION_KEY_MAX bytes */
    size_t key_len;
    const uint8_t *doc; /* PUT: BSON document; SESSION: the opaque record */
    size_t doc_len;
};

/* One commit: its ops all become visible at `ts`. A commit may have no ops
 * (ops NULL, n_ops 0): it only advances the watermark (eng_apply) or the
 * visible ts (eng_overlay_add). */
struct eng_commit
{
    cairn_ts ts;
    const struct eng_op *ops;
    size_t n_ops;
};

/* Opens (creating if needed) the database in directory `dir`, loads the
 * catalog and the watermark. On success *out is owned by the caller and
 * freed with eng_close. Errors: CAIRN_EIO (RocksDB could not open; message
 * from RocksDB), CAIRN_ECORRUPT, CAIRN_ENOMEM. Any thread, once. */
int eng_open(const char *dir, struct eng **out, struct cairn_error *err);

/* Closes the database. All snapshots and iterators must be released. */
void eng_close(struct eng *e);

/* The applied watermark persisted with the last eng_apply (0, 0 when
 * nothing was ever applied). Either pointer may be NULL. Any thread. */
void eng_applied(struct eng *e, cairn_index *index, cairn_ts *ts);

/* The newest ts a local snapshot taken now would reflect: the larger of
 * the overlay's visible ts (newest added commit not discarded) and the
 * applied ts. Never blocks. Any thread. */
cairn_ts eng_visible_ts(struct eng *e);

/* Applies `n` commits of raft entry `index` in one RocksDB batch together
 * with their session records and the new watermark (index, last commit's
 * ts; with n == 0 the ts stays). Skips the entry when index <= the current
 * watermark (replay after restart). After the write it updates the
 * in-memory catalog, publishes the watermark, then retires the overlay's
 * versions with ts <= the last commit's ts; no lock a reader needs is held
 * across the RocksDB write, and no reader ever misses or duplicates a
 * version (snap.c). Deterministic. Errors: CAIRN_EINVAL (a bad op: no key,
 * bad namespace, session key empty or longer than ENG_SESSION_KEY_MAX,
 * unknown kind; nothing written), CAIRN_ENOMEM, CAIRN_EIO. Called by the one
 * applying thread (raft), concurrently with overlay adds and readers. */
int eng_apply(struct eng *e,
              const struct eng_commit *commits,
              size_t n,
              cairn_index index,
              struct cairn_error *err);

/* Syncs RocksDB's WAL/memtables to disk (used before raft snapshots and at
 * shutdown). Errors: CAIRN_EIO. */
int eng_flush(struct eng *e, struct cairn_error *err);

/* Syncs RocksDB's write-ahead log, making every applied batch durable
 * (one fsync; memtables stay in memory). Used before a raft snapshot lets
 * raft delete the log segments those batches came from. Errors: CAIRN_EIO.
 * Any thread. */
int eng_sync(struct eng *e, struct cairn_error *err);

/* ---- Metadata blobs ---------------------------------------------------- */

/* Reads meta blob `name` into `out` (appended). Returns 0, CAIRN_ENOTFOUND
 * or CAIRN_EIO. Any thread. */
int eng_meta_get(struct eng *e, const char *name, struct cairn_buf *out, struct cairn_error *err);

/* Writes meta blob `name`, synced to disk. Returns 0 or CAIRN_EIO. */
int eng_meta_put(struct eng *e,
                 const char *name,
                 const void *val,
                 size_t len,
                 struct cairn_error *err);

/* ---- Catalog ----------------------------------------------------------- */

struct eng_coll_info
{
    uint64_t id;
    char ns[ENG_NS_MAX + 1];
};

/* Looks up `ns`. With `local` true the overlay's pending creates and drops
 * count (what the primary's local reads and its writer see); with false only
 * applied state. Returns 0 with *id set, or CAIRN_ENOTFOUND. Any thread. */
int eng_catalog_lookup(struct eng *e, const char *ns, bool local, uint64_t *id);

/* As eng_catalog_lookup, for a read at `read_ts` (CAIRN_TS_MAX: the
 * newest): a name renamed by a commit after read_ts (applied, or with
 * `local` still in the overlay's pending catalog) resolves to what it
 * meant at read_ts (the source's name to its id, the target's name to
 * CAIRN_ENOTFOUND). Remembers the last 64 renames applied (kept across
 * restarts and shipped with checkpoints) above the snapshot-history
 * floor: a read below a forgotten rename resolves by the oldest one
 * remembered after it that touched the name, else by the current
 * catalog. Any thread. */
int eng_catalog_lookup_at(struct eng *e,
                          const char *ns,
                          bool local,
                          cairn_ts read_ts,
                          uint64_t *id);

/* Lists collections whose ns starts with "<db>." (db NULL = all), sorted by
 * ns. *out is malloc'd (free with free()), *n its length. Returns 0 or
 * CAIRN_ENOMEM. Any thread. */
int eng_catalog_list(struct eng *e,
                     const char *db,
                     bool local,
                     struct eng_coll_info **out,
                     size_t *n);

/* A number that changes whenever either view of the catalog changes
 * (creates, drops, overlay adds, trims and discards), for callers that
 * cache what they derive from it: a value read before looking at the
 * catalog that still holds afterwards means nothing changed in between.
 * Any thread. */
uint64_t eng_catalog_gen(struct eng *e);

/* Returns a collection id never used before (monotonic, survives restart
 * because ids of created collections are persisted). Any thread (the
 * commit section in practice). */
uint64_t eng_catalog_next_id(struct eng *e);

/* An estimate of the bytes RocksDB's files hold for key space `coll_id`
 * (a collection's documents or an index's entries, every version): the
 * approximate size of its docs column family range. Data still in the
 * memtable is not counted, so a collection written since the last flush
 * may read low (0 before any flush). Returns 0 or CAIRN_EIO. Any thread. */
int eng_approx_size(struct eng *e, uint64_t coll_id, uint64_t *bytes, struct cairn_error *err);

/* ---- Overlay (primary only) -------------------------------------------- */

/* Adds the commit's versions (copied; a key written twice in the commit
 * keeps its last op) to the overlay and applies its CREATE/DROP ops to the
 * pending catalog; SESSION ops are validated and ignored (the txn layer
 * keeps the primary's session state). Then publishes the commit's ts as
 * the visible ts, so local snapshots taken afterwards see the whole commit
 * and snapshots taken before see none of it. A commit without ops only
 * advances the visible ts. Costs O(k log n) for k changed keys (n = size
 * of the active segment), never O(pending versions).
 * Preconditions: ts is above the applied ts and not below any commit still
 * in the overlay (adds with an equal ts extend one commit: a concurrent
 * reader may see the earlier adds without the later). Errors: CAIRN_EINVAL
 * (a bad op; nothing added), CAIRN_ENOMEM (nothing of the commit is
 * visible, nothing stays in the pending catalog).
 * Thread: the commit section (client threads, at most one add or
 * discard_from at a time, serialised by the caller), concurrently with
 * eng_apply, eng_overlay_discard and readers. */
int eng_overlay_add(struct eng *e, const struct eng_commit *commit);

/* Discards the whole overlay and pending catalog (leadership lost).
 * Snapshots taken before keep what they captured. Waits for a running add
 * to finish (short). Any thread (the raft thread in practice). */
void eng_overlay_discard(struct eng *e);

/* Discards the overlay versions and pending catalog changes with ts >= `ts`
 * and keeps the older ones: undoes the newest commit(s) when they could not
 * be proposed while earlier commits stay proposed (and must stay visible to
 * the writer resolving the next commit). Rare: rebuilds the kept part,
 * O(n log n) in the pending versions. On ENOMEM it discards everything,
 * as eng_overlay_discard. The commit section or the raft thread (it waits
 * for a running add). */
void eng_overlay_discard_from(struct eng *e, cairn_ts ts);

/* Number of versions added and not yet applied or discarded (for status
 * and tests). Any thread. */
size_t eng_overlay_size(struct eng *e);

/* ---- Snapshots and reads ----------------------------------------------- */

struct eng_snap;

/* Takes a consistent read view at S = min(read_ts, max(V, P)) where P is
 * the applied ts and V, when `local` is true, the overlay's visible ts
 * (otherwise V = 0): every read through it sees, per key, the newest
 * version with ts <= S, across RocksDB and (when local) the overlay, and
 * every commit with ts <= S is wholly visible. A concurrent eng_apply can
 * neither hide nor duplicate a version (snap.c). Never waits for a RocksDB
 * write or an overlay add: it takes ovl.mu and gc.mu briefly. Returns 0 or
 * CAIRN_ENOMEM. On success *out is owned by the caller and released with
 * eng_snap_release. Any thread. */
int eng_snap_acquire(struct eng *e,
                     bool local,
                     cairn_ts read_ts,
                     struct eng_snap **out,
                     struct cairn_error *err);

/* Releases a snapshot; all its iterators must be closed first. */
void eng_snap_release(struct eng_snap *s);

/* A token for what the snapshot showed of the overlay: 0 when nothing (not
 * a local view, or the primary had no commit pending), else a value that
 * eng_overlay_token_lost compares with the overlay's discards. Any thread. */
uint64_t eng_snap_overlay_token(const struct eng_snap *s);

/* True when the overlay has been discarded, wholly or in part, since the
 * snapshot of `token` was taken (and it showed overlay versions): what it
 * showed may never commit (a step-down, a failed proposal). Conservative:
 * a discard of versions it did not show counts too. Any thread. */
bool eng_overlay_token_lost(struct eng *e, uint64_t token);

/* The snapshot's ts S (see eng_snap_acquire): the newest ts it reflects.
 * Useful as operationTime. */
cairn_ts eng_snap_ts(const struct eng_snap *s);

/* Point read of the visible version of (coll_id, key). On success appends
 * the BSON bytes to `doc` and returns 0; returns CAIRN_ENOTFOUND when there
 * is no visible document (absent or tombstone), CAIRN_EIO on failure. */
int eng_snap_get(struct eng_snap *s,
                 uint64_t coll_id,
                 const uint8_t *key,
                 size_t key_len,
                 struct cairn_buf *doc,
                 struct cairn_error *err);

/* Like eng_snap_get, and also reports the version: returns 0 with the
 * document appended to `doc` (doc may be NULL: then only *ts) and *ts its
 * version ts; CAIRN_ENOTFOUND when the visible version is a tombstone
 * (*ts = the tombstone's ts) or there is none (*ts = 0); CAIRN_EINVAL
 * (empty key), CAIRN_ENOMEM, CAIRN_ECORRUPT, CAIRN_EIO. The snapshot's
 * thread. */
int eng_snap_get_version(struct eng_snap *s,
                         uint64_t coll_id,
                         const uint8_t *key,
                         size_t key_len,
                         struct cairn_buf *doc,
                         cairn_ts *ts,
                         struct cairn_error *err);

/* The newest version of (coll_id, key) across the overlay (as published
 * now) and RocksDB's newest applied state, without taking a snapshot:
 * cheap enough for writers to read the current version of each document
 * they write and to detect write conflicts. Returns 0 with the document
 * appended to `doc` (doc may be NULL: then only *ts) and *ts its version
 * ts; CAIRN_ENOTFOUND when the newest version is a tombstone (*ts = the
 * tombstone's ts) or there is none (*ts = 0); CAIRN_EINVAL (empty key),
 * CAIRN_ENOMEM, CAIRN_ECORRUPT, CAIRN_EIO. The answer was the newest
 * version at some instant during the call (it captures the overlay before
 * reading RocksDB, so a concurrent apply and trim cannot hide a version).
 * Any thread. */
int eng_latest(struct eng *e,
               uint64_t coll_id,
               const uint8_t *key,
               size_t key_len,
               struct cairn_buf *doc,
               cairn_ts *ts,
               struct cairn_error *err);

struct eng_iter;

/* Opens an iterator over the visible documents of `coll_id` in key order,
 * starting at the first key > `after` (after NULL = from the start).
 * Returns 0, CAIRN_ENOMEM. Close before releasing the snapshot. */
int eng_iter_open(struct eng_snap *s,
                  uint64_t coll_id,
                  const uint8_t *after,
                  size_t after_len,
                  struct eng_iter **out,
                  struct cairn_error *err);

/* Like eng_iter_open, also when `after` is not itself a key but a proper
 * prefix of keys (an index scan's lower bound): starts at the first key >
 * `after` in byte order (keys extending `after` included). Only for key
 * spaces where no key is a proper prefix of another (index entries), so
 * that the versions of two keys never interleave. Returns 0, CAIRN_ENOMEM. */
int eng_iter_open_past(struct eng_snap *s,
                       uint64_t coll_id,
                       const uint8_t *after,
                       size_t after_len,
                       struct eng_iter **out,
                       struct cairn_error *err);

/* Moves to the next visible document. Returns 1 and sets the views (valid
 * until the next call or close), 0 at the end, or -1 on an I/O error (then
 * eng_iter_error tells which). */
int eng_iter_next(struct eng_iter *it,
                  const uint8_t **key,
                  size_t *key_len,
                  const uint8_t **doc,
                  size_t *doc_len);

/* The error that made eng_iter_next return -1. */
const struct cairn_error *eng_iter_error(const struct eng_iter *it);

void eng_iter_close(struct eng_iter *it);

/* ---- Session records ------------------------------------------------------ */

/* Reads the session record stored under `key` (1..ENG_SESSION_KEY_MAX
 * bytes) by the newest applied ENG_OP_SESSION op for it: appends the record
 * to `rec` (may be NULL) and sets *ts (may be NULL) to the ts of the commit
 * that wrote it. Returns 0, CAIRN_ENOTFOUND, CAIRN_EINVAL (bad key),
 * CAIRN_ENOMEM, CAIRN_ECORRUPT or CAIRN_EIO. Reads applied state only (the
 * overlay ignores session ops). Any thread. */
int eng_session_get(struct eng *e,
                    const uint8_t *key,
                    size_t key_len,
                    struct cairn_buf *rec,
                    cairn_ts *ts,
                    struct cairn_error *err);

/* Calls fn for every stored session record whose key starts with
 * `prefix` (prefix_len 0: every record), in key order, from one
 * consistent view of the applied state. The views passed to fn are valid
 * only during the call. fn returns non-zero to stop the walk early (then
 * eng_session_foreach still returns 0). Returns 0, CAIRN_ECORRUPT (a
 * malformed record) or CAIRN_EIO. Any thread. */
int eng_session_foreach(struct eng *e,
                        const uint8_t *prefix,
                        size_t prefix_len,
                        int (*fn)(void *arg,
                                  const uint8_t *key,
                                  size_t key_len,
                                  const uint8_t *rec,
                                  size_t rec_len,
                                  cairn_ts ts),
                        void *arg,
                        struct cairn_error *err);

/* ---- Checkpoints: copying a member's whole state (clone.c) --------------- */
/*
 * A checkpoint is every key and value of every column family at one RocksDB
 * snapshot, except the member-local metadata under "meta/" (replica-set
 * config, bootstrap flag, install marker). A source streams it as chunks of
 * records; a target deletes its own state and writes the records. The
 * record format (one chunk is a run of records):
 *   OFFSET SIZE DESCRIPTION
 *   0      1    column family: 0 default, 1 docs, 2 sessions
 *   1      4    key length k (big-endian)
 *   5      k    key
 *   5+k    4    value length v (big-endian)
 *   9+k    v    value
 * A resume position is the column family byte followed by the key of the
 * last record received (empty: from the start).
 */

/* Largest key or value a record may carry. */
#define ENG_CLONE_FIELD_MAX ((size_t)32 << 20)

struct eng_clone;

/* Source side. Captures the catalog and the watermark (index, ts) as of
 * one applied entry into *index and *ts (either may be NULL), and keeps
 * every document version visible at that ts from garbage collection until
 * closed. The copy is fuzzy (clone.c C1-C4): documents as of the
 * watermark, session records as of when they are read; it is consistent
 * once the target has applied the log up to the source's applied index at
 * the end of the copy. On success *out is the caller's, freed with
 * eng_clone_close.
 * Errors: CAIRN_ENOMEM, CAIRN_EIO, CAIRN_ECORRUPT. Any thread. */
int eng_clone_open(struct eng *e,
                   struct eng_clone **out,
                   cairn_index *index,
                   cairn_ts *ts,
                   struct cairn_error *err);

/* Appends to `out` the records that follow resume position `after`
 * (after_len 0: from the start) in (column family, key) order, stopping
 * before a record that would take the chunk past `max_bytes` (a chunk
 * holds at least one record when any is left, however large).
 * Sets *done when no record follows the last one appended. `after` may be
 * any position (a repeated request after a lost reply is answered again).
 * Errors: CAIRN_EINVAL (a malformed position), CAIRN_ENOMEM, CAIRN_EIO.
 * The clone's thread (one call at a time). */
int eng_clone_next(struct eng_clone *c,
                   const uint8_t *after,
                   size_t after_len,
                   size_t max_bytes,
                   struct cairn_buf *out,
                   bool *done,
                   struct cairn_error *err);

/* Replaces `pos` with the resume position after the last record of chunk
 * `recs` (unchanged when the chunk is empty). Errors: CAIRN_ECORRUPT (a
 * malformed chunk), CAIRN_ENOMEM. Any thread. */
int eng_clone_chunk_position(const uint8_t *recs,
                             size_t len,
                             struct cairn_buf *pos,
                             struct cairn_error *err);

/* Releases the clone and its GC read point. eng_clone_close(NULL) is a
 * no-op. */
void eng_clone_close(struct eng_clone *c);

/* Target side, in this order: begin, put (any number), finish.
 *
 * eng_install_begin persists an "install in progress" marker and, in the
 * same synced batch, deletes every key but the "meta/" ones; then the
 * in-memory state says empty (applied 0, empty catalog, no overlay) and
 * eng_apply refuses (CAIRN_ESTATE) until finish. A database opened with
 * the marker set holds a partial install: eng_open wipes it the same way,
 * logs it, and opens it empty (applied 0), so that the member resyncs.
 * Errors: CAIRN_EIO, CAIRN_ENOMEM. The applying thread (raft) or a thread
 * it waits for, with no apply running; readers may run (they see what
 * they pinned, or nothing). */
int eng_install_begin(struct eng *e, struct cairn_error *err);

/* Writes one chunk of records (the format above; not synced). Records
 * under "meta/" in the default column family are skipped. Adds the
 * number of records written to *n_keys (may be NULL). Errors:
 * CAIRN_ECORRUPT (malformed chunk: nothing of it is written), CAIRN_ESTATE
 * (no install begun), CAIRN_ENOMEM, CAIRN_EIO. Same thread as begin. */
int eng_install_put(struct eng *e,
                    const uint8_t *recs,
                    size_t len,
                    uint64_t *n_keys,
                    struct cairn_error *err);

/* Ends the install: checks that the installed watermark is (index, ts),
 * syncs the WAL, clears the marker (synced), and reloads every in-memory
 * state from what is now stored: catalog, id counter, watermark, visible
 * ts, GC floor (raised to the installed ts minus the history window, as
 * at open). Errors: CAIRN_ECORRUPT (watermark missing or different; the
 * marker stays), CAIRN_ESTATE, CAIRN_EIO, CAIRN_ENOMEM. Same thread. */
int eng_install_finish(struct eng *e, cairn_index index, cairn_ts ts, struct cairn_error *err);

/* Whether an install is in progress (begun, not finished). Any thread. */
bool eng_install_active(struct eng *e);

/* ---- Garbage collection of old versions ------------------------------- */
/*
 * A compaction filter on the docs column family drops versions no reader
 * can need: for each document it keeps every version newer than the
 * horizon H = min(oldest read point of a live snapshot, applied ts - history
 * window) and the newest version at or below H (even a tombstone), and
 * drops the older ones. See gc.c for the argument. The history window is
 * 300 s of cluster time by default.
 */

/* Test-only: sets the history window to `secs` seconds of cluster time
 * (0 = keep only what live snapshots need). Affects compactions that start
 * afterwards. Any thread. */
void eng_gc_set_history_secs(struct eng *e, uint32_t secs);

/* The horizon a compaction starting now would use. Any thread. */
cairn_ts eng_gc_horizon(struct eng *e);

/* The largest horizon any compaction has used since open (at open:
 * applied ts - the default 300 s window, which bounds what compactions
 * before a restart used unless a test shrank the window). A snapshot taken with an explicit read_ts
 * below it may miss versions that were collected: callers reading at an explicit timestamp must
 * refuse (SnapshotTooOld, 239) when read_ts < eng_gc_floor(). Snapshots at CAIRN_TS_MAX are always
 * complete. Any thread. */
cairn_ts eng_gc_floor(struct eng *e);

/* Runs a full manual compaction of the docs column family (all levels,
 * the bottommost level included), which also collects old versions. Blocks
 * until done. Returns 0, or CAIRN_EIO when RocksDB reported a background
 * error during it. For tests and tools; any thread. */
int eng_compact(struct eng *e, struct cairn_error *err);

/* Debug/test: counts the raw version keys (documents and tombstones, every
 * ts) stored in RocksDB for collection `coll_id`, or only for document
 * `key` when key is not NULL. Ignores the overlay and snapshots (reads the
 * newest RocksDB state). Scans the whole collection. Returns 0 with *n set,
 * or CAIRN_EIO. Any thread. */
int eng_debug_count_versions(struct eng *e,
                             uint64_t coll_id,
                             const uint8_t *key,
                             size_t key_len,
                             size_t *n,
                             struct cairn_error *err);

/* ---- Debugging and tests ----------------------------------------------- */

/* Overlay counters for tests and status. */
struct eng_overlay_stats
{
    size_t n_versions;   /* as eng_overlay_size */
    size_t n_segments;   /* live segments in the overlay's list */
    uint64_t visited;    /* skiplist nodes visited by adds and rebuilds, since open */
    uint64_t allocated;  /* nodes allocated by adds and rebuilds, since open */
    uint64_t trim_steps; /* records and segments examined by trims, since open */
    uint64_t segs_freed; /* segments freed, since open */
};

/* Fills *st. Any thread. */
void eng_debug_overlay_stats(struct eng *e, struct eng_overlay_stats *st);

/* Points where a test hook runs. */
enum eng_debug_point {
    /* eng_snap_acquire and eng_latest: the overlay was captured, the
     * applied ts not yet read. */
    ENG_DEBUG_SNAP_CAPTURED = 1,
    /* eng_apply: the RocksDB batch was written, the catalog and watermark
     * not yet published nor the overlay trimmed. */
    ENG_DEBUG_APPLY_WRITTEN = 2,
    /* eng_snap_acquire and eng_latest: the applied ts was read (and the
     * snapshot registered), RocksDB not yet read (no snapshot taken). */
    ENG_DEBUG_SNAP_REGISTERED = 3,
    /* eng_overlay_add: the commit's nodes are allocated, none linked yet
     * (the overlay's writer lock is held). */
    ENG_DEBUG_ADD_LINKING = 4,
};

typedef void (*eng_debug_hook_cb)(void *arg, enum eng_debug_point point);

/* Test-only: installs `cb` (NULL = none), called with `arg` at each debug
 * point on the thread passing it. At ENG_DEBUG_APPLY_WRITTEN eng_apply
 * holds only its own serialising lock (so the hook may take snapshots and
 * add to the overlay, but not apply); at ENG_DEBUG_ADD_LINKING the overlay's
 * writer lock (the hook may apply and read, but not add or discard); at the
 * ENG_DEBUG_SNAP_* points nothing (the hook may apply). Set while no other
 * thread uses the engine. */
void eng_debug_set_hook(struct eng *e, eng_debug_hook_cb cb, void *arg);

#endif /* CAIRN_ENGINE_ENGINE_H */
