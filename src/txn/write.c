/*
 * write.c: write sets and the commit section.
 *
 * A write set (struct txn_write) is what one statement, or one
 * multi-document transaction, stages: resolved, idempotent ops (full
 * post-images, tombstones, catalog changes) in staging order, with a hash
 * index on (collection id, encoded _id) so that large batches check
 * duplicates in O(1); staging the same key twice replaces the earlier op.
 *
 * Life of a write set:
 *
 *   begin (statement: txn_write_begin; transaction: txn_write_begin_multi)
 *     -> stage* (each keyed op first takes its intent: lock_key)
 *     -> [statements: flush*] -> commit | abort
 *
 * Invariants:
 *  1. Every staged PUT/DELETE, and every staged CREATE/DROP (on its
 *     namespace), is covered by an intent this write holds (locks.c); no
 *     other write can commit a version of that key until this one commits
 *     or aborts.
 *  2. A statement builds each new version on the newest one (eng_latest,
 *     read after taking the intent, so it cannot change under it). A
 *     transaction builds on its snapshot, after checking that no version
 *     newer than its read ts exists (else WriteConflict): with (1), the
 *     snapshot version stays the newest until the transaction ends.
 *  3. The commit section (commit_mu) checks the write epoch and that every
 *     collection written still exists, assigns the timestamp, adds the
 *     versions to the overlay and enqueues the pre-encoded entry. Nothing
 *     else runs in it: encoding happens before, releasing intents after.
 *     Timestamps are assigned in it, so overlay order, ts order and log
 *     order agree.
 *  4. A statement waits for an intent only with nothing staged and no
 *     intent held but shared namespace intents (it flushes first), and
 *     transactions never wait, so no wait cycle can form (locks.c, 2).
 *     One exception, for unique index keys (index.c): while resolving one
 *     document a statement may wait for a unique-key intent holding
 *     *pinned* intents: that document's own, taken first, and the unique
 *     keys it took before, in (index id, key) order. Such a wait is always
 *     for a unique key above every unique key the waiter holds, and a
 *     document intent is only ever waited for with nothing pinned, so the
 *     waits still cannot close a cycle.
 *  6. A write holds a namespace intent on every collection it writes, from
 *     resolving it (txn_write_coll) to its end: shared for an existing
 *     collection, exclusive to create it (made shared once the create
 *     commits) or drop it. So a drop waits for the writers of its
 *     collection, and a statement never finds its collection dropped at
 *     its commit (check_colls is a safety net).
 *  5. A transaction's write set is referenced by its owner (the session)
 *     and by reads that see its writes (cursors); its staging is freed
 *     with the last reference, its intents and view when it ends.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "query/query.h"
#include "txn/txn_int.h"

/* What an op costs in the staging besides its key and document. */
#define TXN_STAGED_OVERHEAD 64

static int conflict(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_ECONFLICT, MONGO_WriteConflict,
                             "Caused by :: Write conflict during plan execution and yielding is "
                             "disabled. :: Please retry your operation or multi-document "
                             "transaction.");
}

/* ---- Staging ---------------------------------------------------------------- */

static uint64_t hash_key(uint64_t coll_id, const uint8_t *key, size_t len)
{
    return cairn_hash_fold(cairn_hash_bytes(CAIRN_HASH_SEED ^ coll_id, key, len));
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
        const struct txn_staged *op = &w->ops[s - 1];
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
            const struct txn_staged *op = &w->ops[old[i] - 1];
            w->slots[slot_find(w, op->coll_id, op->key, op->key_len)] = old[i];
        }
    }
    free(old);
    return 0;
}

const struct txn_staged *txn_write_staged(const struct txn_write *w,
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

static void staged_free(struct txn_staged *op)
{
    free(op->key);
    free(op->doc);
    free(op->ns);
    memset(op, 0, sizeof *op);
}

static int ops_reserve(struct txn_write *w, struct cairn_error *err)
{
    if (w->n_ops == w->cap_ops) {
        size_t cap = w->cap_ops ? w->cap_ops * 2 : 16;
        struct txn_staged *ops = realloc(w->ops, cap * sizeof *ops);
        if (ops == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        w->ops = ops;
        w->cap_ops = cap;
    }
    return 0;
}

/* Appends (or replaces) an op. Takes ownership of key/doc/ns on success. */
static int stage(struct txn_write *w, struct txn_staged *op, struct cairn_error *err)
{
    bool keyed = op->kind == ENG_OP_PUT || op->kind == ENG_OP_DELETE;
    size_t bytes = op->doc_len + op->key_len + TXN_STAGED_OVERHEAD;

    if (w->multi && w->total_bytes + bytes > TXN_MAX_TXN_BYTES) {
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_TransactionTooLarge,
                                 "Total size of all transaction operations must be less than "
                                 "%zu. Actual size is %zu",
                                 TXN_MAX_TXN_BYTES, w->total_bytes + bytes);
    }
    if (keyed) {
        if ((w->n_ops + 1) * 2 > w->n_slots && slots_grow(w) != 0) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        size_t slot = slot_find(w, op->coll_id, op->key, op->key_len);
        if (w->slots[slot] != 0) {
            struct txn_staged *prev = &w->ops[w->slots[slot] - 1];
            staged_free(prev);
            *prev = *op;
            goto counted;
        }
        if (ops_reserve(w, err) != 0) {
            return err != NULL ? err->code : CAIRN_ENOMEM;
        }
        w->ops[w->n_ops] = *op;
        w->n_ops++;
        w->slots[slot] = w->n_ops;
        goto counted;
    }
    if (ops_reserve(w, err) != 0) {
        return err != NULL ? err->code : CAIRN_ENOMEM;
    }
    w->ops[w->n_ops++] = *op;
counted:
    w->staged_bytes += bytes;
    w->total_bytes += bytes;
    return 0;
}

/* Drops every staged op (after a commit of a statement's part). */
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

int txn_write_staged_coll(const struct txn_write *w, const char *ns, uint64_t *id)
{
    for (size_t i = w->n_ops; i-- > 0;) {
        const struct txn_staged *op = &w->ops[i];
        if ((op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) && strcmp(op->ns, ns) == 0) {
            *id = op->coll_id;
            return op->kind == ENG_OP_CREATE ? 1 : -1;
        }
    }
    return 0;
}

static bool staged_creates(const struct txn_write *w, uint64_t id)
{
    for (size_t i = 0; i < w->n_ops; i++) {
        if (w->ops[i].kind == ENG_OP_CREATE && w->ops[i].coll_id == id) {
            return true;
        }
    }
    return false;
}

/* ---- Intents ---------------------------------------------------------------- */

static void release_intents(struct txn_write *w)
{
    txn_locks_release(&w->m->locks, w->locks, w->n_locks);
    w->n_locks = 0;
}

/* After a statement's commit: releases its document intents and keeps its
 * namespace intents, shared (invariant 6), and its pinned intents (those of
 * the document being resolved, invariant 4). */
static void release_doc_intents(struct txn_write *w)
{
    size_t kept = 0, n = 0;

    for (size_t i = 0; i < w->n_locks; i++) {
        struct txn_lock *l = w->locks[i];
        if (l->coll_id == 0) {
            txn_locks_downgrade(&w->m->locks, l);
        }
        if (l->coll_id == 0 || l->pinned) {
            w->locks[i] = w->locks[kept];
            w->locks[kept++] = l;
        }
    }
    n = w->n_locks - kept;
    txn_locks_release(&w->m->locks, w->locks + kept, n);
    w->n_locks = kept;
}

/* Releases the namespace intent this write holds on `ns`, if any. */
static void release_ns(struct txn_write *w, const char *ns)
{
    size_t len = strlen(ns);

    for (size_t i = 0; i < w->n_locks; i++) {
        struct txn_lock *l = w->locks[i];
        if (l->coll_id == 0 && l->key_len == len && memcmp(l->key, ns, len) == 0) {
            w->locks[i] = w->locks[--w->n_locks];
            txn_locks_release(&w->m->locks, &l, 1);
            return;
        }
    }
}

static int commit_staged(struct txn_write *w, cairn_ts *ts, struct cairn_error *err);
static void pend_clear(struct txn_write *w);

/* Takes the intent on (coll_id, key) (invariant 1). A transaction that
 * meets another holder, or (for a document) a version newer than its
 * snapshot, fails with WriteConflict; a statement commits what it staged,
 * waits for the holder and tries again (invariant 4). */
static int lock_key(struct txn_write *w,
                    uint64_t coll_id,
                    const uint8_t *key,
                    size_t len,
                    bool shared,
                    struct cairn_error *err)
{
    struct txn_lock *lk;
    int rv;

    for (;;) {
        rv = txn_locks_try(&w->m->locks, coll_id, key, len, w, shared, &lk);
        if (rv == CAIRN_ENOMEM) {
            return cairn_error_setf(err, rv, "txn: out of memory");
        }
        if (rv == 0) {
            break;
        }
        if (w->multi) {
            return conflict(err);
        }
        if (w->n_ops > 0 || w->n_locks > 0 || w->n_pend > 0) {
            cairn_ts ts;
            rv = commit_staged(w, &ts, err);
            if (rv != 0) {
                return rv;
            }
        }
        rv = txn_locks_wait_free(&w->m->locks, coll_id, key, len, w, shared, cairn_op_current(),
                                 &lk, err);
        if (rv != 0) {
            return rv;
        }
        if (lk != NULL) {
            break; /* a queued namespace intent, taken as the wait ended */
        }
    }
    if (lk == NULL) {
        return 0; /* already ours */
    }
    if (w->n_locks == w->cap_locks) {
        size_t cap = w->cap_locks ? w->cap_locks * 2 : 8;
        struct txn_lock **l = realloc(w->locks, cap * sizeof *l);
        if (l == NULL) {
            txn_locks_release(&w->m->locks, &lk, 1);
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        w->locks = l;
        w->cap_locks = cap;
    }
    w->locks[w->n_locks++] = lk;
    if (w->multi && coll_id != 0) {
        /* First committer wins: a version newer than the snapshot means
         * another write committed this document after we started. */
        cairn_ts newest = 0;
        rv = eng_latest(w->m->eng, coll_id, key, len, NULL, &newest, err);
        if (rv != 0 && rv != CAIRN_ENOTFOUND) {
            return rv;
        }
        if (newest > w->read_ts) {
            return conflict(err);
        }
    }
    return 0;
}

/* ---- Begin and end ------------------------------------------------------- */

static struct txn_write *write_alloc(struct txn_mgr *m, struct cairn_error *err)
{
    struct txn_write *w = calloc(1, sizeof *w);

    if (w == NULL) {
        cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        return NULL;
    }
    w->m = m;
    atomic_init(&w->ref, 1);
    return w;
}

int txn_write_begin(struct txn_mgr *m,
                    struct txn_session *sess,
                    struct txn_write **out,
                    struct cairn_error *err)
{
    uint64_t epoch = repl_write_epoch(m->repl);
    struct txn_write *w;

    if (epoch == 0 || (sess != NULL && sess->loaded_epoch != epoch)) {
        /* A session loaded in an earlier epoch may have missed what
         * another primary committed for it: the retry must come back. */
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
    }
    w = write_alloc(m, err);
    if (w == NULL) {
        return CAIRN_ENOMEM;
    }
    w->epoch = epoch;
    /* The view is taken when first needed (txn_write_reader). */
    w->rd.m = m;
    w->rd.embedded = true;
    if (sess != NULL) {
        w->sess = sess;
        w->txn_number = sess->active_txn;
    }
    *out = w;
    return 0;
}

int txn_write_begin_multi(struct txn_mgr *m,
                          struct txn_session *s,
                          bool local,
                          cairn_ts read_ts,
                          struct txn_write **out,
                          struct cairn_error *err)
{
    uint64_t epoch = repl_write_epoch(m->repl);
    struct txn_write *w;
    int rv;

    if (epoch == 0 || s->loaded_epoch != epoch) {
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                                 "Not primary so we cannot begin or continue a transaction");
    }
    if (read_ts != CAIRN_TS_MAX && read_ts < txn_history_floor(m)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_SnapshotTooOld,
                                 "Read timestamp Timestamp(%u, %u) is older than the oldest "
                                 "available timestamp.",
                                 CAIRN_TS_SECS(read_ts), CAIRN_TS_INC(read_ts));
    }
    w = write_alloc(m, err);
    if (w == NULL) {
        return CAIRN_ENOMEM;
    }
    w->multi = true;
    w->epoch = epoch;
    w->sess = s;
    w->txn_number = s->active_txn;
    rv = txn_read_init(m, local, read_ts, &w->rd, err);
    if (rv != 0) {
        free(w);
        return rv;
    }
    w->rd.embedded = true;
    w->rd.w = w; /* the transaction reads its own writes */
    w->read_ts = read_ts != CAIRN_TS_MAX ? read_ts : w->rd.ts;
    w->rd.ts = w->read_ts;
    *out = w;
    return 0;
}

static void write_free(struct txn_write *w)
{
    for (size_t i = 0; i < w->n_ops; i++) {
        staged_free(&w->ops[i]);
    }
    for (size_t i = 0; i < w->n_colls; i++) {
        free(w->colls[i].ns);
    }
    pend_clear(w);
    free(w->ops);
    free(w->slots);
    free(w->locks);
    free(w->colls);
    free(w->pend);
    cairn_buf_free(&w->key);
    txn_read_fini(&w->rd);
    free(w);
}

void txn_write_ref(struct txn_write *w)
{
    atomic_fetch_add(&w->ref, 1);
}

void txn_write_unref(struct txn_write *w)
{
    if (atomic_fetch_sub(&w->ref, 1) == 1) {
        write_free(w);
    }
}

void txn_write_release(struct txn_write *w)
{
    if (w == NULL) {
        return;
    }
    release_intents(w);
    txn_read_fini(&w->rd); /* cursors have views of their own */
    txn_write_unref(w);
}

/* A statement's view: the newest local state, taken at the first use. */
static int ensure_view(struct txn_write *w, struct cairn_error *err)
{
    int rv;

    if (w->rd.snap != NULL) {
        return 0;
    }
    rv = txn_read_init(w->m, true, CAIRN_TS_MAX, &w->rd, err);
    w->rd.embedded = true;
    w->read_ts = w->rd.ts;
    return rv;
}

int txn_write_reader(struct txn_write *w, struct txn_read **rd, struct cairn_error *err)
{
    int rv = ensure_view(w, err);

    *rd = rv == 0 ? &w->rd : NULL;
    return rv;
}

int txn_write_refresh_view(struct txn_write *w, struct cairn_error *err)
{
    if (w->multi) {
        return 0;
    }
    txn_read_fini(&w->rd);
    return ensure_view(w, err);
}

bool txn_write_is_multi(const struct txn_write *w)
{
    return w->multi;
}

size_t txn_write_n_ops(const struct txn_write *w)
{
    return w->n_ops;
}

size_t txn_write_staged_bytes(const struct txn_write *w)
{
    return w->staged_bytes;
}

cairn_ts txn_write_last_ts(const struct txn_write *w)
{
    return w->last_ts;
}

/* ---- Collections ------------------------------------------------------------ */

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

/* Remembers that this write writes collection (id, ns). */
static int note_coll(struct txn_write *w, uint64_t id, const char *ns, struct cairn_error *err)
{
    for (size_t i = 0; i < w->n_colls; i++) {
        if (w->colls[i].id == id) {
            return 0;
        }
    }
    if (w->n_colls == w->cap_colls) {
        size_t cap = w->cap_colls ? w->cap_colls * 2 : 4;
        struct txn_wcoll *c = realloc(w->colls, cap * sizeof *c);
        if (c == NULL) {
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        w->colls = c;
        w->cap_colls = cap;
    }
    w->colls[w->n_colls].ns = strdup(ns);
    if (w->colls[w->n_colls].ns == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    w->colls[w->n_colls++].id = id;
    return 0;
}

static int lookup_coll(struct txn_write *w, const char *ns, uint64_t *id)
{
    int st = txn_write_staged_coll(w, ns, id);
    if (st != 0) {
        return st > 0 ? 0 : CAIRN_ENOTFOUND;
    }
    return eng_catalog_lookup(w->m->eng, ns, true, id);
}

static int lock_ns(struct txn_write *w, const char *ns, bool shared, struct cairn_error *err)
{
    return lock_key(w, 0, (const uint8_t *)ns, strlen(ns), shared, err);
}

/* Stages the create of `ns` under a fresh id, or under `bind_id` when it
 * is not 0 (a rename's bind of an existing id); a collection (`coll`
 * true) has its name checked and is remembered as written, an index
 * namespace neither. */
static int stage_create_ns(struct txn_write *w,
                           const char *ns,
                           bool coll_ns,
                           uint64_t bind_id,
                           uint64_t *id,
                           struct cairn_error *err)
{
    char db[ENG_NS_MAX + 1];
    const char *coll;
    struct txn_staged op = {0};
    uint64_t next;
    int rv;

    if (strlen(ns) > ENG_NS_MAX || split_ns(ns, db, sizeof db, &coll) != 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified '%s'", ns);
    }
    rv = coll_ns ? txn_check_ns(db, coll, err) : 0;
    if (rv != 0) {
        return rv;
    }
    if (bind_id != 0) {
        next = bind_id;
    } else {
        next = eng_catalog_next_id(w->m->eng);
        if (w->next_coll_id > next) {
            next = w->next_coll_id;
        }
        w->next_coll_id = next + 1;
    }
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
    return coll_ns ? note_coll(w, next, ns, err) : 0;
}

static int stage_create(struct txn_write *w, const char *ns, uint64_t *id, struct cairn_error *err)
{
    return stage_create_ns(w, ns, true, 0, id, err);
}

int txn_write_coll(struct txn_write *w,
                   const char *ns,
                   bool create,
                   uint64_t *coll_id,
                   bool *created,
                   struct cairn_error *err)
{
    int rv;

    if (created != NULL) {
        *created = false;
    }
    if (strstr(ns, ".$") != NULL) {
        /* Index namespaces (index.c) are never written as collections. */
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                 "Invalid namespace specified '%s'", ns);
    }
    if (txn_write_staged_coll(w, ns, coll_id) > 0) {
        return 0; /* created by this write: its intent is held */
    }
    if (lookup_coll(w, ns, coll_id) == 0) {
        /* Invariant 6; looked up again under the intent: a drop may have
         * committed before it was taken. */
        rv = lock_ns(w, ns, true, err);
        if (rv != 0) {
            return rv;
        }
        if (lookup_coll(w, ns, coll_id) == 0) {
            return note_coll(w, *coll_id, ns, err);
        }
        release_ns(w, ns); /* dropped meanwhile: exclusive below */
    }
    if (!create) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found: %s",
                                 ns);
    }
    rv = lock_ns(w, ns, false, err);
    if (rv != 0) {
        return rv;
    }
    if (lookup_coll(w, ns, coll_id) == 0) {
        /* Created by another write while we waited for the namespace. */
        return note_coll(w, *coll_id, ns, err);
    }
    rv = stage_create(w, ns, coll_id, err);
    if (rv == 0 && created != NULL) {
        *created = true;
    }
    return rv;
}

int txn_write_create(struct txn_write *w, const char *ns, struct cairn_error *err)
{
    uint64_t id;
    int rv;

    if (lookup_coll(w, ns, &id) == 0) {
        return cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_NamespaceExists,
                                 "Collection %s already exists.", ns);
    }
    rv = lock_ns(w, ns, false, err);
    if (rv != 0) {
        return rv;
    }
    if (lookup_coll(w, ns, &id) == 0) {
        return cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_NamespaceExists,
                                 "Collection %s already exists.", ns);
    }
    return stage_create(w, ns, &id, err);
}

int txn_write_drop(struct txn_write *w, const char *ns, struct cairn_error *err)
{
    uint64_t id;
    int rv;

    rv = lock_ns(w, ns, false, err);
    if (rv != 0) {
        return rv;
    }
    if (lookup_coll(w, ns, &id) != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound, "ns not found");
    }
    rv = txn_ix_drop_all(w, ns, err);
    if (rv != 0) {
        return rv;
    }
    return txn_write_stage_drop(w, ns, id, err);
}

/* ---- Documents -------------------------------------------------------------- */

static int encode_id(const bson_value_t *id, struct cairn_buf *key, struct cairn_error *err)
{
    cairn_buf_reset(key);
    return qry_key_encode(id, key, err);
}

/* The version this write builds on for the key in w->key, after its intent
 * is held (invariant 2). Appends the document to `buf`; CAIRN_ENOTFOUND
 * when there is none. */
static int current_version(struct txn_write *w,
                           uint64_t coll_id,
                           struct cairn_buf *buf,
                           struct cairn_error *err)
{
    const struct txn_staged *op = txn_write_staged(w, coll_id, w->key.data, w->key.len);
    cairn_ts ts;

    if (op != NULL) {
        if (op->kind == ENG_OP_DELETE) {
            return CAIRN_ENOTFOUND;
        }
        return cairn_buf_append(buf, op->doc, op->doc_len) == 0
                   ? 0
                   : cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    if (w->multi) {
        return eng_snap_get(w->rd.snap, coll_id, w->key.data, w->key.len, buf, err);
    }
    return eng_latest(w->m->eng, coll_id, w->key.data, w->key.len, buf, &ts, err);
}

int txn_write_lock(struct txn_write *w,
                   uint64_t coll_id,
                   const bson_value_t *id,
                   bson_t *doc,
                   struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    int rv = encode_id(id, &w->key, err);

    if (rv == 0) {
        rv = lock_key(w, coll_id, w->key.data, w->key.len, false, err);
    }
    if (rv == 0) {
        rv = current_version(w, coll_id, &buf, err);
    }
    if (rv == 0) {
        rv = txn_bytes_to_doc(buf.data, buf.len, doc, err);
    }
    cairn_buf_free(&buf);
    return rv;
}

int txn_write_get(struct txn_write *w,
                  uint64_t coll_id,
                  const bson_value_t *id,
                  bson_t *doc,
                  struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    const struct txn_staged *op;
    int rv = encode_id(id, &w->key, err);

    if (rv != 0) {
        return rv;
    }
    op = txn_write_staged(w, coll_id, w->key.data, w->key.len);
    if (op != NULL) {
        return op->kind == ENG_OP_DELETE ? CAIRN_ENOTFOUND
                                         : txn_bytes_to_doc(op->doc, op->doc_len, doc, err);
    }
    rv = ensure_view(w, err);
    if (rv != 0) {
        return rv;
    }
    rv = eng_snap_get(w->rd.snap, coll_id, w->key.data, w->key.len, &buf, err);
    if (rv == 0) {
        rv = txn_bytes_to_doc(buf.data, buf.len, doc, err);
    }
    cairn_buf_free(&buf);
    return rv;
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
    for (size_t i = 0; i < w->n_colls; i++) {
        if (w->colls[i].id == coll_id) {
            snprintf(buf, size, "%s", w->colls[i].ns);
            return buf;
        }
    }
    snprintf(buf, size, "?");
    return buf;
}

static int stage_put(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_t *doc,
                     struct cairn_error *err)
{
    struct txn_staged op = {0};
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

/* Statements: commits what is staged first when `doc` would take the
 * staging past TXN_FLUSH_BYTES, so that no commit outgrows a raft entry
 * (a single document of the largest size still fits alone). */
static int make_room(struct txn_write *w, const bson_t *doc, struct cairn_error *err)
{
    cairn_ts ts;

    if (w->multi || w->staged_bytes == 0 ||
        w->staged_bytes + doc->len + TXN_STAGED_OVERHEAD <= TXN_FLUSH_BYTES) {
        return 0;
    }
    return commit_staged(w, &ts, err);
}

int txn_write_insert(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_t *doc,
                     struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    bson_value_t id;
    int rv = make_room(w, doc, err);

    if (rv == 0) {
        rv = doc_key(w, doc, &id, err);
    }
    if (rv != 0) {
        return rv;
    }
    rv = lock_key(w, coll_id, w->key.data, w->key.len, false, err);
    if (rv != 0) {
        return rv;
    }
    rv = current_version(w, coll_id, &buf, err);
    cairn_buf_free(&buf);
    if (rv == 0) {
        char ns[ENG_NS_MAX + 1];
        char dup[160];
        bson_t kp = BSON_INITIALIZER, kv = BSON_INITIALIZER;
        BSON_APPEND_INT32(&kp, "_id", 1);
        BSON_APPEND_VALUE(&kv, "_id", &id);
        txn_write_set_dup(w, &kp, &kv);
        bson_destroy(&kp);
        bson_destroy(&kv);
        format_dup_key(&id, dup, sizeof dup);
        return cairn_error_mongo(
            err, CAIRN_EEXISTS, MONGO_DuplicateKey,
            "E11000 duplicate key error collection: %s index: _id_ dup key: %s",
            coll_ns_of(w, coll_id, ns, sizeof ns), dup);
    }
    if (rv != CAIRN_ENOTFOUND) {
        return rv;
    }
    rv = txn_ix_maintain(w, coll_id, NULL, doc, err);
    if (rv != 0) {
        return rv;
    }
    return stage_put(w, coll_id, doc, err);
}

/* Index maintenance for the document whose key is in w->key and whose
 * intent is held, changing to `new_doc` (NULL: deleted). */
static int maintain_indexes(struct txn_write *w,
                            uint64_t coll_id,
                            const bson_t *new_doc,
                            struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    bool any = false;
    bson_t old;
    int rv = txn_ix_any(w, coll_id, &any, err);

    if (rv != 0 || !any) {
        return rv;
    }
    rv = current_version(w, coll_id, &buf, err);
    if (rv == CAIRN_ENOTFOUND) {
        rv = txn_ix_maintain(w, coll_id, NULL, new_doc, err);
    } else if (rv == 0) {
        if (!bson_init_static(&old, buf.data, buf.len)) {
            rv = cairn_error_setf(err, CAIRN_ECORRUPT, "stored document is not valid BSON");
        } else {
            rv = txn_ix_maintain(w, coll_id, &old, new_doc, err);
        }
    }
    cairn_buf_free(&buf);
    return rv;
}

int txn_write_put(struct txn_write *w, uint64_t coll_id, const bson_t *doc, struct cairn_error *err)
{
    bson_value_t id;
    int rv = make_room(w, doc, err);

    if (rv == 0) {
        rv = doc_key(w, doc, &id, err);
    }
    if (rv == 0) {
        rv = lock_key(w, coll_id, w->key.data, w->key.len, false, err);
    }
    if (rv == 0) {
        rv = maintain_indexes(w, coll_id, doc, err);
    }
    if (rv == 0) {
        rv = stage_put(w, coll_id, doc, err);
    }
    return rv;
}

int txn_write_delete(struct txn_write *w,
                     uint64_t coll_id,
                     const bson_value_t *id,
                     struct cairn_error *err)
{
    struct txn_staged op = {0};
    int rv = encode_id(id, &w->key, err);

    if (rv == 0) {
        rv = lock_key(w, coll_id, w->key.data, w->key.len, false, err);
    }
    if (rv == 0) {
        rv = maintain_indexes(w, coll_id, NULL, err);
    }
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

static void pend_clear(struct txn_write *w)
{
    for (size_t i = 0; i < w->n_pend; i++) {
        bson_destroy(w->pend[i].result);
    }
    w->n_pend = 0;
}

bool txn_write_failed(const struct txn_write *w)
{
    return w->failed;
}

int txn_write_record_stmt(struct txn_write *w, int32_t stmt_id, const bson_t *result)
{
    if (w->sess == NULL) {
        return 0;
    }
    if (w->n_pend == w->cap_pend) {
        size_t cap = w->cap_pend ? w->cap_pend * 2 : 8;
        struct txn_pending_stmt *p = realloc(w->pend, cap * sizeof *p);
        if (p == NULL) {
            return CAIRN_ENOMEM;
        }
        w->pend = p;
        w->cap_pend = cap;
    }
    w->pend[w->n_pend].stmt_id = stmt_id;
    w->pend[w->n_pend].result = bson_copy(result);
    if (w->pend[w->n_pend].result == NULL) {
        return CAIRN_ENOMEM;
    }
    w->n_pend++;
    return 0;
}

/* ---- The commit section ---------------------------------------------------- */

/* Checks that every collection written still exists as the one resolved
 * (a concurrent drop would leave versions in a dead collection). */
static int check_colls(struct txn_write *w, struct cairn_error *err)
{
    for (size_t i = 0; i < w->n_colls; i++) {
        uint64_t id;
        if (staged_creates(w, w->colls[i].id)) {
            continue;
        }
        if (eng_catalog_lookup(w->m->eng, w->colls[i].ns, true, &id) != 0 || id != w->colls[i].id) {
            return cairn_error_mongo(err, CAIRN_ECONFLICT, MONGO_WriteConflict,
                                     "collection %s was dropped or recreated during the write",
                                     w->colls[i].ns);
        }
    }
    return 0;
}

/* Whether a commit only drops collections or indexes (or is empty). */
static bool only_drops(const struct eng_op *ops, size_t n_ops)
{
    for (size_t i = 0; i < n_ops; i++) {
        if (ops[i].kind != ENG_OP_DROP) {
            return false;
        }
    }
    return true;
}

/* Proposes one commit (invariant 3): `ops`, already encoded in `enc` with
 * a placeholder ts. On success *ts is set and repl owns enc's bytes. */
static int commit_section(struct txn_write *w,
                          struct eng_op *ops,
                          size_t n_ops,
                          struct cairn_buf *enc,
                          cairn_ts *ts,
                          struct cairn_error *err)
{
    struct txn_mgr *m = w->m;
    struct eng_commit commit;
    int rv;

    pthread_mutex_lock(&m->commit_mu);
    if (repl_write_epoch(m->repl) != w->epoch) {
        rv = cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary, "not primary");
        goto out;
    }
    rv = check_colls(w, err);
    if (rv != 0) {
        goto out;
    }
    /* Below the free-space floor nothing new is accepted (14031), except
     * empty commits (no-op writes that reads with afterClusterTime wait
     * for) and drops (the way to free space): docs/decisions.md §36. */
    if (!only_drops(ops, n_ops)) {
        rv = repl_disk_check(m->repl, enc->len, err);
        if (rv != 0) {
            goto out;
        }
    }
    commit.ts = txn_clock_next(m);
    commit.ops = ops;
    commit.n_ops = n_ops;
    repl_oplog_patch_ts(enc->data, commit.ts);
    rv = eng_overlay_add(m->eng, &commit);
    if (rv != 0) {
        /* It may have left pending catalog changes behind. */
        eng_overlay_discard_from(m->eng, commit.ts);
        cairn_error_setf(err, rv, "commit: overlay: %s", cairn_strerror(rv));
        goto out;
    }
    rv = repl_propose_encoded(m->repl, w->epoch, commit.ts, enc->data, enc->len, err);
    if (rv != 0) {
        /* Not proposed: nothing of it may stay visible, but earlier commits
         * still queued or in flight must. */
        eng_overlay_discard_from(m->eng, commit.ts);
        goto out;
    }
    *enc = (struct cairn_buf)CAIRN_BUF_INIT; /* repl owns the bytes */
    *ts = commit.ts;
out:
    pthread_mutex_unlock(&m->commit_mu);
    return rv;
}

/* Commits the staged ops (and, with a session, its record) as one commit;
 * releases the intents and clears the staging. *ts = 0 when there was
 * nothing to commit. On error nothing of it is visible. */
static int commit_staged(struct txn_write *w, cairn_ts *ts, struct cairn_error *err)
{
    struct cairn_buf enc = CAIRN_BUF_INIT;
    struct eng_op *ops = NULL;
    size_t n = 0;
    struct txn_session_recs recs;
    bool have_recs = false;
    int rv = 0;

    *ts = 0;
    if (w->n_ops == 0 && w->n_pend == 0 && !w->multi) {
        goto done;
    }
    ops = calloc(w->n_ops + 2, sizeof *ops);
    if (ops == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        goto done;
    }
    for (size_t i = 0; i < w->n_ops; i++) {
        const struct txn_staged *s = &w->ops[i];
        ops[n++] =
            (struct eng_op){s->kind, s->coll_id, s->ns, s->key, s->key_len, s->doc, s->doc_len};
    }
    if (w->sess != NULL && (w->multi || w->n_pend > 0)) {
        rv = txn_session_recs_build(w->sess, w, &recs);
        if (rv != 0) {
            cairn_error_setf(err, rv, "txn: building the session record");
            goto done;
        }
        have_recs = true;
        if (recs.have_header) {
            ops[n++] = (struct eng_op){
                ENG_OP_SESSION, 0, NULL, w->sess->lsid, TXN_LSID_LEN, bson_get_data(&recs.header),
                recs.header.len};
        }
        if (recs.have_stmts) {
            ops[n++] = (struct eng_op){ENG_OP_SESSION,
                                       0,
                                       NULL,
                                       recs.stmts_key,
                                       sizeof recs.stmts_key,
                                       bson_get_data(&recs.stmts),
                                       recs.stmts.len};
        }
    }
    rv = repl_oplog_encode(&(struct eng_commit){0, ops, n}, &enc);
    if (rv != 0) {
        cairn_error_setf(err, rv, "commit: encode: %s", cairn_strerror(rv));
        goto done;
    }
    if (enc.len > REPL_MAX_COMMIT_BYTES) {
        /* Refused before the commit section: never briefly visible. */
        rv = w->multi ? cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_TransactionTooLarge,
                                          "Total size of all transaction operations must be "
                                          "less than %zu",
                                          REPL_MAX_COMMIT_BYTES)
                      : cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                          "write of %zu bytes is larger than the largest "
                                          "replicated entry (%zu)",
                                          enc.len, REPL_MAX_COMMIT_BYTES);
        goto done;
    }
    rv = commit_section(w, ops, n, &enc, ts, err);
    if (rv == 0) {
        w->last_ts = *ts;
        if (w->sess != NULL) {
            txn_session_note_commit(w->sess, w, have_recs ? &recs : NULL, *ts);
        }
    }
done:
    if (rv != 0 && !w->multi) {
        /* What the statement held is lost: its results must not be
         * recorded by a later commit of this write. */
        w->failed = true;
        pend_clear(w);
    }
    if (have_recs) {
        txn_session_recs_fini(&recs);
    }
    cairn_buf_free(&enc);
    free(ops);
    if (!w->multi) {
        /* A statement's part is done either way: on error the caller
         * aborts, and nothing of it is visible. */
        staging_clear(w);
        release_doc_intents(w);
    }
    return rv;
}

int txn_write_flush(struct txn_write *w, cairn_ts *ts, struct cairn_error *err)
{
    return commit_staged(w, ts, err);
}

int txn_write_commit(struct txn_write *w, cairn_ts *ts, struct cairn_error *err)
{
    cairn_ts t = 0;
    int rv = commit_staged(w, &t, err);

    *ts = rv == 0 ? w->last_ts : 0;
    txn_write_release(w);
    return rv;
}

void txn_write_abort(struct txn_write *w)
{
    txn_write_release(w);
}

int txn_write_commit_multi(struct txn_write *w, cairn_ts *ts, struct cairn_error *err)
{
    bool wrote = w->n_ops > 0;
    int rv;

    *ts = 0;
    if (!wrote) {
        /* Read-only: only the session record would be written; the state
         * is kept in memory (as mongod, which writes nothing either). */
        txn_session_note_commit(w->sess, w, NULL, 0);
        return 0;
    }
    rv = commit_staged(w, ts, err);
    if (rv == 0) {
        release_intents(w);
    }
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

int txn_write_config(struct txn_mgr *m,
                     const uint8_t *doc,
                     size_t len,
                     cairn_ts *ts,
                     struct cairn_error *err)
{
    struct eng_op op = {ENG_OP_CONFIG, 0, NULL, NULL, 0, doc, len};
    struct eng_commit commit = {0, &op, 1};
    struct cairn_buf enc = CAIRN_BUF_INIT;
    struct txn_write *w;
    int rv = txn_write_begin(m, NULL, &w, err);

    if (rv != 0) {
        return rv;
    }
    rv = repl_oplog_encode(&commit, &enc);
    if (rv != 0) {
        rv = cairn_error_setf(err, rv, "reconfig: encode: %s", cairn_strerror(rv));
    } else {
        rv = commit_section(w, &op, 1, &enc, ts, err);
    }
    cairn_buf_free(&enc);
    txn_write_release(w);
    return rv;
}

int txn_noop_write(struct txn_mgr *m, cairn_ts *ts, struct cairn_error *err)
{
    struct txn_write *w;
    struct cairn_buf enc = CAIRN_BUF_INIT;
    int rv = txn_write_begin(m, NULL, &w, err);

    if (rv != 0) {
        return rv;
    }
    rv = repl_oplog_encode(&(struct eng_commit){0, NULL, 0}, &enc);
    if (rv != 0) {
        rv = cairn_error_setf(err, rv, "noop: encode: %s", cairn_strerror(rv));
    } else {
        rv = commit_section(w, NULL, 0, &enc, ts, err);
    }
    cairn_buf_free(&enc);
    txn_write_release(w);
    return rv;
}

/* ---- Internals for index.c ------------------------------------------------ */

int txn_write_lock_key(struct txn_write *w,
                       uint64_t coll_id,
                       const uint8_t *key,
                       size_t len,
                       bool shared,
                       struct cairn_error *err)
{
    return lock_key(w, coll_id, key, len, shared, err);
}

struct txn_lock *txn_write_held(struct txn_write *w,
                                uint64_t coll_id,
                                const uint8_t *key,
                                size_t len)
{
    for (size_t i = w->n_locks; i-- > 0;) {
        struct txn_lock *l = w->locks[i];
        if (l->coll_id == coll_id && l->key_len == len && memcmp(l->key, key, len) == 0) {
            return l;
        }
    }
    return NULL;
}

void txn_write_unpin(struct txn_write *w)
{
    for (size_t i = 0; i < w->n_locks; i++) {
        w->locks[i]->pinned = false;
    }
}

int txn_write_stage_raw(struct txn_write *w,
                        uint64_t coll_id,
                        const uint8_t *key,
                        size_t key_len,
                        const uint8_t *doc,
                        size_t doc_len,
                        struct cairn_error *err)
{
    struct txn_staged op = {0};
    int rv;

    op.kind = doc != NULL ? ENG_OP_PUT : ENG_OP_DELETE;
    op.coll_id = coll_id;
    op.key_len = key_len;
    op.key = malloc(key_len ? key_len : 1);
    if (doc != NULL) {
        op.doc_len = doc_len;
        op.doc = malloc(doc_len ? doc_len : 1);
    }
    if (op.key == NULL || (doc != NULL && op.doc == NULL)) {
        staged_free(&op);
        return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
    }
    memcpy(op.key, key, key_len);
    if (doc != NULL && doc_len > 0) {
        memcpy(op.doc, doc, doc_len);
    }
    rv = stage(w, &op, err);
    if (rv != 0) {
        staged_free(&op);
    }
    return rv;
}

int txn_write_stage_create(struct txn_write *w,
                           const char *ns,
                           uint64_t *id,
                           struct cairn_error *err)
{
    return stage_create_ns(w, ns, false, 0, id, err);
}

int txn_write_stage_bind(struct txn_write *w,
                         const char *ns,
                         bool coll_ns,
                         uint64_t id,
                         struct cairn_error *err)
{
    uint64_t got;

    return stage_create_ns(w, ns, coll_ns, id, &got, err);
}

int txn_write_stage_drop(struct txn_write *w, const char *ns, uint64_t id, struct cairn_error *err)
{
    struct txn_staged op = {0};
    int rv;

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

const char *txn_write_coll_ns(const struct txn_write *w, uint64_t coll_id)
{
    for (size_t i = 0; i < w->n_colls; i++) {
        if (w->colls[i].id == coll_id) {
            return w->colls[i].ns;
        }
    }
    return NULL;
}

void txn_write_discard_staged(struct txn_write *w)
{
    staging_clear(w);
    pend_clear(w);
    txn_write_unpin(w);
    release_doc_intents(w); /* nothing left to cover: may now wait (4) */
}
