/*
 * session.c: logical sessions and their txnNumber state machine (mongod's
 * TransactionParticipant::beginOrContinue; wire-protocol.md §4.3).
 *
 * A session is checked out by one command at a time. Its state:
 *
 *   active_txn  the highest txnNumber seen (-1: none)
 *   is_txn      whether that number is a multi-document transaction
 *   state       NONE (retryable write) | OPEN | COMMITTED | ABORTED
 *   stmts       the executed statements of the active retryable write,
 *               with their results (for answering retries)
 *
 * Transitions (function):
 *   NONE/any --retryable write n > active--> NONE, stmts cleared
 *                                              (txn_session_retryable_begin)
 *   any --startTransaction n > active--> OPEN   (txn_session_txn_begin)
 *   OPEN --commit--> COMMITTED                  (txn_session_txn_commit)
 *   OPEN --abort, error, reaper, killSessions, step-down--> ABORTED
 *                                               (txn_session_txn_abort/fail, abort_txn)
 * A higher txnNumber of either kind first aborts an open transaction.
 *
 * Durable state: every commit of a retryable write or a transaction
 * carries the session records (see txn_session_recs_build for their
 * format) in the same oplog entry as its writes, stored by the engine under
 * the lsid. On the primary the in-memory session is authoritative within a
 * write epoch (it includes records of commits not yet applied); at the
 * first use in a new epoch the durable record is loaded instead (records
 * of commits a leadership change discarded are gone with them).
 *
 * Invariants:
 *  1. Only the command that has a session checked out changes its txn
 *     state or write set; other threads (reaper, killSessions, step-down)
 *     abort a checked-out session's transaction by setting abort_wanted and
 *     interrupting its command, and the abort happens at checkin or at the
 *     next commit/statement. An idle session's transaction is aborted
 *     directly under sess_mu.
 *  2. A session is forgotten only while idle, with no open transaction and
 *     with its last commit applied (so that reloading the durable record
 *     loses nothing).
  3. s->txn and s->state change only under sess_mu (by the owner, or by
     another thread while the session is idle), so that the threads that
     look at other sessions (reaper, currentOp, step-down) read them under
     sess_mu and never see a freed write set.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "txn/txn_int.h"

#define SESS_BUCKETS_INIT 256
#define RECORD_RETRYABLE 1
#define RECORD_COMMITTED 2

/* ---- Table ---------------------------------------------------------------- */

static uint64_t lsid_hash(const uint8_t *lsid)
{
    return cairn_hash_bytes(CAIRN_HASH_SEED, lsid, TXN_LSID_LEN);
}

int txn_sessions_init(struct txn_sessions *t)
{
    memset(t, 0, sizeof *t);
    t->buckets = calloc(SESS_BUCKETS_INIT, sizeof *t->buckets);
    if (t->buckets == NULL) {
        return CAIRN_ENOMEM;
    }
    t->n_buckets = SESS_BUCKETS_INIT;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    return 0;
}

static struct txn_session *find(struct txn_sessions *t, const uint8_t *lsid)
{
    struct txn_session *s = t->buckets[lsid_hash(lsid) & (t->n_buckets - 1)];
    while (s != NULL && memcmp(s->lsid, lsid, TXN_LSID_LEN) != 0) {
        s = s->next;
    }
    return s;
}

static void grow(struct txn_sessions *t)
{
    size_t n = t->n_buckets * 2;
    struct txn_session **b;

    if (t->n < t->n_buckets * 2) {
        return;
    }
    b = calloc(n, sizeof *b);
    if (b == NULL) {
        return; /* longer chains */
    }
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct txn_session *s = t->buckets[i];
        while (s != NULL) {
            struct txn_session *next = s->next;
            size_t j = lsid_hash(s->lsid) & (n - 1);
            s->next = b[j];
            b[j] = s;
            s = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

static void stmts_clear(struct txn_session *s)
{
    for (size_t i = 0; i < s->n_stmts; i++) {
        bson_destroy(s->stmts[i].result);
    }
    s->n_stmts = 0;
}

static void session_free(struct txn_session *s)
{
    stmts_clear(s);
    free(s->stmts);
    free(s);
}

/* Unlinks `s` from the table (sess_mu held). */
static void unlink_session(struct txn_sessions *t, struct txn_session *s)
{
    struct txn_session **pp = &t->buckets[lsid_hash(s->lsid) & (t->n_buckets - 1)];
    while (*pp != NULL && *pp != s) {
        pp = &(*pp)->next;
    }
    if (*pp == s) {
        *pp = s->next;
        t->n--;
    }
}

static void lsid_hex(const uint8_t *lsid, char out[2 * TXN_LSID_LEN + 1])
{
    for (int i = 0; i < TXN_LSID_LEN; i++) {
        snprintf(out + 2 * i, 3, "%02x", lsid[i]);
    }
}

/* ---- Transactions ending ---------------------------------------------- */

/* Detaches the open transaction from `s` (sess_mu held: other threads
 * read s->txn and s->state under it, invariant 3). Returns it, or NULL. */
static struct txn_write *detach_txn_locked(struct txn_session *s)
{
    struct txn_mgr *m = s->m;
    struct txn_write *w = s->txn;

    if (w == NULL) {
        return NULL;
    }
    s->txn = NULL;
    s->state = TXN_STATE_ABORTED;
    atomic_fetch_add_explicit(&m->n_aborted, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&m->n_open, 1, memory_order_relaxed);
    return w;
}

/* Aborts the open transaction of an idle session (sess_mu held). */
static void abort_txn_locked(struct txn_session *s)
{
    txn_write_release(detach_txn_locked(s));
}

/* Aborts the open transaction of the session the calling command has
 * checked out (sess_mu not held). */
static void abort_txn(struct txn_session *s)
{
    struct txn_write *w;

    pthread_mutex_lock(&s->m->sessions.mu);
    w = detach_txn_locked(s);
    pthread_mutex_unlock(&s->m->sessions.mu);
    txn_write_release(w);
}

/* Sets the state of the checked-out session (invariant 3). */
static void set_state(struct txn_session *s, int state)
{
    pthread_mutex_lock(&s->m->sessions.mu);
    s->state = state;
    pthread_mutex_unlock(&s->m->sessions.mu);
}

/* ---- Durable records ---------------------------------------------------- */

static int stmt_insert(struct txn_session *s, int32_t stmt_id, cairn_ts ts, bson_t *result)
{
    size_t lo = 0, hi = s->n_stmts;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->stmts[mid].stmt_id < stmt_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < s->n_stmts && s->stmts[lo].stmt_id == stmt_id) {
        bson_destroy(result); /* already recorded */
        return 0;
    }
    if (s->n_stmts == s->cap_stmts) {
        size_t cap = s->cap_stmts ? s->cap_stmts * 2 : 8;
        struct txn_stmt *p = realloc(s->stmts, cap * sizeof *p);
        if (p == NULL) {
            bson_destroy(result);
            return CAIRN_ENOMEM;
        }
        s->stmts = p;
        s->cap_stmts = cap;
    }
    memmove(&s->stmts[lo + 1], &s->stmts[lo], (s->n_stmts - lo) * sizeof *s->stmts);
    s->stmts[lo] = (struct txn_stmt){stmt_id, ts, result};
    s->n_stmts++;
    return 0;
}

/* Appends one statement (or a run of statements with empty results) to
 * the array builder `arr` as element *k. */
static void append_stmt(bson_t *arr,
                        uint32_t *k,
                        int32_t first,
                        int32_t count,
                        const bson_t *result)
{
    char key[16];
    const char *ks;
    bson_t e;

    bson_uint32_to_string((*k)++, &ks, key, sizeof key);
    bson_append_document_begin(arr, ks, -1, &e);
    BSON_APPEND_INT32(&e, "i", first);
    if (result != NULL) {
        BSON_APPEND_DOCUMENT(&e, "r", result);
    } else {
        BSON_APPEND_INT32(&e, "c", count);
    }
    bson_append_document_end(arr, &e);
}

/* Whether the session has recorded `stmt_id`. */
static bool stmt_known(const struct txn_session *s, int32_t stmt_id)
{
    size_t lo = 0, hi = s->n_stmts;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->stmts[mid].stmt_id < stmt_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < s->n_stmts && s->stmts[lo].stmt_id == stmt_id;
}

/* The key of statement record `ord` of session `lsid`. */
static void stmts_key(const uint8_t *lsid, uint32_t ord, uint8_t out[TXN_LSID_LEN + 4])
{
    memcpy(out, lsid, TXN_LSID_LEN);
    out[TXN_LSID_LEN] = (uint8_t)(ord >> 24);
    out[TXN_LSID_LEN + 1] = (uint8_t)(ord >> 16);
    out[TXN_LSID_LEN + 2] = (uint8_t)(ord >> 8);
    out[TXN_LSID_LEN + 3] = (uint8_t)ord;
}

/* Records (BSON, in the engine's session column family):
 *   header, under the lsid, written by the first commit of a txnNumber:
 *     {t: Int64 txnNumber, k: Int32 1 (retryable write) | 2 (committed
 *      transaction), s: statements (k 1)}
 *   statement record i, under lsid | BE32(i), written by each later commit
 *   of a retryable write (i = 0, 1, ...):
 *     {t: Int64 txnNumber, s: statements}
 *   statements: [{i: stmtId, r: result} | {i: first stmtId, c: count of
 *   consecutive statements with empty results}]
 * So every commit carries one record with only the statements it ran, and
 * the bytes a batch logs grow with the batch, not with its square.
 * Loading reads the header and then the statement records of its
 * txnNumber (a prefix scan); those of an older txnNumber are ignored and
 * overwritten as the ordinals are reused. */
int txn_session_recs_build(struct txn_session *s,
                           const struct txn_write *w,
                           struct txn_session_recs *out)
{
    bson_t arr, *rec;
    uint32_t k = 0;
    int32_t run_first = 0, run_count = 0;
    bool first = s->durable_txn != w->txn_number;

    out->have_header = out->have_stmts = false;
    if (w->multi) {
        bson_init(&out->header);
        BSON_APPEND_INT64(&out->header, "t", w->txn_number);
        BSON_APPEND_INT32(&out->header, "k", RECORD_COMMITTED);
        out->have_header = true;
        return 0;
    }
    rec = first ? &out->header : &out->stmts;
    bson_init(rec);
    BSON_APPEND_INT64(rec, "t", w->txn_number);
    if (first) {
        BSON_APPEND_INT32(rec, "k", RECORD_RETRYABLE);
    }
    BSON_APPEND_ARRAY_BEGIN(rec, "s", &arr);
    for (size_t j = 0; j < w->n_pend; j++) {
        int32_t id = w->pend[j].stmt_id;
        const bson_t *r = w->pend[j].result;
        if (stmt_known(s, id)) {
            continue;
        }
        if (bson_empty(r)) {
            if (run_count > 0 && (int64_t)run_first + run_count == id) {
                run_count++;
                continue;
            }
            if (run_count > 0) {
                append_stmt(&arr, &k, run_first, run_count, NULL);
            }
            run_first = id;
            run_count = 1;
            continue;
        }
        if (run_count > 0) {
            append_stmt(&arr, &k, run_first, run_count, NULL);
            run_count = 0;
        }
        append_stmt(&arr, &k, id, 1, r);
    }
    if (run_count > 0) {
        append_stmt(&arr, &k, run_first, run_count, NULL);
    }
    bson_append_array_end(rec, &arr);
    if (first) {
        out->have_header = true;
    } else if (k > 0) {
        out->have_stmts = true;
        stmts_key(s->lsid, s->n_recs, out->stmts_key);
    } else {
        bson_destroy(rec);
    }
    return 0;
}

void txn_session_recs_fini(struct txn_session_recs *r)
{
    if (r->have_header) {
        bson_destroy(&r->header);
    }
    if (r->have_stmts) {
        bson_destroy(&r->stmts);
    }
}

/* Adds the statements of record `rec` (its array `s`), committed at `ts`,
 * to the session's. */
static int load_stmts(struct txn_session *s,
                      const bson_t *rec,
                      cairn_ts ts,
                      struct cairn_error *err)
{
    bson_iter_t it, arr;
    int rv = 0;

    if (!bson_iter_init_find(&it, rec, "s") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr)) {
        return cairn_error_setf(err, CAIRN_ECORRUPT, "session record has no statements");
    }
    while (rv == 0 && bson_iter_next(&arr)) {
        bson_iter_t e;
        int32_t first = 0, count = 1;
        bson_t *result = NULL;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &e)) {
            continue;
        }
        while (bson_iter_next(&e)) {
            const char *k = bson_iter_key(&e);
            if (strcmp(k, "i") == 0 && BSON_ITER_HOLDS_INT32(&e)) {
                first = bson_iter_int32(&e);
            } else if (strcmp(k, "c") == 0 && BSON_ITER_HOLDS_INT32(&e)) {
                count = bson_iter_int32(&e);
            } else if (strcmp(k, "r") == 0 && BSON_ITER_HOLDS_DOCUMENT(&e) && result == NULL) {
                const uint8_t *data;
                uint32_t len;
                bson_iter_document(&e, &len, &data);
                result = bson_new_from_data(data, len);
            }
        }
        if (count < 1 || (int64_t)first + count - 1 > INT32_MAX) {
            rv = cairn_error_setf(err, CAIRN_ECORRUPT, "session record has a bad run");
        }
        for (int32_t n = 0; n < count && rv == 0; n++) {
            bson_t *r = result != NULL ? result : bson_new();
            result = NULL;
            rv = stmt_insert(s, first + n, ts, r) != 0
                     ? cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory")
                     : 0;
        }
        if (result != NULL) {
            bson_destroy(result);
        }
    }
    return rv;
}

struct load_walk
{
    struct txn_session *s;
    struct cairn_error *err;
    int rv;
};

/* eng_session_foreach callback: one statement record of the session. */
static int load_walk_one(void *arg,
                         const uint8_t *key,
                         size_t key_len,
                         const uint8_t *data,
                         size_t len,
                         cairn_ts ts)
{
    struct load_walk *lw = arg;
    struct txn_session *s = lw->s;
    bson_t rec;
    bson_iter_t it;
    uint32_t ord;

    if (key_len != TXN_LSID_LEN + 4) {
        return 0; /* the header */
    }
    if (!bson_init_static(&rec, data, len) || !bson_iter_init_find(&it, &rec, "t") ||
        !BSON_ITER_HOLDS_INT64(&it)) {
        lw->rv = cairn_error_setf(lw->err, CAIRN_ECORRUPT, "session statement record is malformed");
        return 1;
    }
    if (bson_iter_int64(&it) != s->active_txn) {
        return 0; /* of an older txnNumber */
    }
    ord = (uint32_t)key[TXN_LSID_LEN] << 24 | (uint32_t)key[TXN_LSID_LEN + 1] << 16 |
          (uint32_t)key[TXN_LSID_LEN + 2] << 8 | key[TXN_LSID_LEN + 3];
    if (ord >= s->n_recs) {
        s->n_recs = ord + 1;
    }
    if (ts > s->commit_ts) {
        s->commit_ts = ts;
    }
    lw->rv = load_stmts(s, &rec, ts, lw->err);
    return lw->rv != 0;
}

/* Loads the durable records of `s` (it is checked out by the caller). */
static int load_record(struct txn_session *s, struct cairn_error *err)
{
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct load_walk lw = {s, err, 0};
    cairn_ts ts = 0;
    bson_t rec;
    bson_iter_t it;
    int rv;

    stmts_clear(s);
    s->active_txn = -1;
    s->is_txn = false;
    set_state(s, TXN_STATE_NONE);
    s->commit_ts = 0;
    s->n_recs = 0;
    s->durable_txn = -1;
    rv = eng_session_get(s->m->eng, s->lsid, TXN_LSID_LEN, &buf, &ts, err);
    if (rv == CAIRN_ENOTFOUND) {
        rv = 0;
        goto out;
    }
    if (rv != 0) {
        goto out;
    }
    if (!bson_init_static(&rec, buf.data, buf.len) || !bson_iter_init_find(&it, &rec, "t") ||
        !BSON_ITER_HOLDS_INT64(&it)) {
        rv = cairn_error_setf(err, CAIRN_ECORRUPT, "session record is malformed");
        goto out;
    }
    s->active_txn = bson_iter_int64(&it);
    s->durable_txn = s->active_txn;
    s->commit_ts = ts;
    if (bson_iter_init_find(&it, &rec, "k") && BSON_ITER_HOLDS_INT32(&it) &&
        bson_iter_int32(&it) == RECORD_COMMITTED) {
        s->is_txn = true;
        set_state(s, TXN_STATE_COMMITTED);
        goto out;
    }
    rv = load_stmts(s, &rec, ts, err);
    if (rv == 0) {
        rv = eng_session_foreach(s->m->eng, s->lsid, TXN_LSID_LEN, load_walk_one, &lw, err);
    }
    if (rv == 0) {
        rv = lw.rv;
    }
out:
    cairn_buf_free(&buf);
    return rv;
}

/* Loads the durable state when this is the session's first use in the
 * current write epoch (see the essay). Errors: 10107 when not primary. */
static int ensure_loaded(struct txn_session *s, struct cairn_error *err)
{
    uint64_t epoch = repl_write_epoch(s->m->repl);
    int rv;

    if (epoch == 0) {
        return cairn_error_mongo(err, CAIRN_ENOTLEADER, MONGO_NotWritablePrimary,
                                 "Not primary so we cannot begin or continue a transaction");
    }
    if (s->loaded_epoch == epoch) {
        return 0;
    }
    abort_txn(s); /* from an earlier epoch: it can never commit */
    rv = load_record(s, err);
    if (rv == 0) {
        s->loaded_epoch = epoch;
    }
    return rv;
}

void txn_session_note_commit(struct txn_session *s,
                             struct txn_write *w,
                             const struct txn_session_recs *recs,
                             cairn_ts ts)
{
    if (recs != NULL && (recs->have_header || recs->have_stmts)) {
        s->durable_txn = w->txn_number; /* its header is written */
    }
    if (w->multi) {
        set_state(s, TXN_STATE_COMMITTED);
        s->commit_ts = ts != 0 ? ts : w->read_ts;
        return;
    }
    for (size_t i = 0; i < w->n_pend; i++) {
        bson_t *r = w->pend[i].result;
        w->pend[i].result = NULL;
        if (stmt_insert(s, w->pend[i].stmt_id, ts, r) != 0) {
            /* Out of memory: the durable record has it; a retry in this
             * epoch would re-execute this statement. */
            cairn_log(CAIRN_LOG_WARN, "txn", "out of memory recording a retryable statement");
        }
    }
    w->n_pend = 0;
    if (recs != NULL && recs->have_stmts) {
        s->n_recs++;
    }
    if (ts > s->commit_ts) {
        s->commit_ts = ts;
    }
}

/* ---- Checkout ------------------------------------------------------------- */

int txn_session_checkout(struct txn_mgr *m,
                         const uint8_t lsid[TXN_LSID_LEN],
                         struct cairn_op *op,
                         struct txn_session **out,
                         struct cairn_error *err)
{
    struct txn_sessions *t = &m->sessions;
    struct txn_session *s;
    int rv = 0;

    pthread_mutex_lock(&t->mu);
    s = find(t, lsid);
    if (s == NULL && (int64_t)t->n >= txn_max_sessions(m)) {
        pthread_mutex_unlock(&t->mu);
        return cairn_error_mongo(err, CAIRN_EBUSY, MONGO_TooManyLogicalSessions,
                                 "Unable to add session into the cache because the number of "
                                 "active sessions is too high");
    }
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL) {
            pthread_mutex_unlock(&t->mu);
            return cairn_error_setf(err, CAIRN_ENOMEM, "txn: out of memory");
        }
        memcpy(s->lsid, lsid, TXN_LSID_LEN);
        s->m = m;
        s->active_txn = -1;
        s->durable_txn = -1;
        grow(t);
        s->next = t->buckets[lsid_hash(lsid) & (t->n_buckets - 1)];
        t->buckets[lsid_hash(lsid) & (t->n_buckets - 1)] = s;
        t->n++;
    }
    s->waiters++; /* it may not be forgotten under us (invariant 2) */
    while (s->checked_out && rv == 0) {
        rv = cairn_op_wait(op, &t->mu, &t->cv, 0, err);
    }
    s->waiters--;
    if (rv != 0) {
        pthread_mutex_unlock(&t->mu);
        return rv;
    }
    s->checked_out = true;
    s->op = op;
    s->ended = false;
    s->last_use_ms = cairn_wall_ms();
    s->counted_active = s->txn != NULL;
    if (s->counted_active) {
        atomic_fetch_add_explicit(&m->n_active, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&t->mu);
    *out = s;
    return 0;
}

void txn_session_checkin(struct txn_session *s)
{
    struct txn_mgr *m;
    struct txn_sessions *t;

    if (s == NULL) {
        return;
    }
    m = s->m;
    t = &m->sessions;
    pthread_mutex_lock(&t->mu);
    if (s->abort_wanted) {
        abort_txn_locked(s);
        s->abort_wanted = false;
    }
    if (s->counted_active) {
        atomic_fetch_sub_explicit(&m->n_active, 1, memory_order_relaxed);
        s->counted_active = false;
    }
    s->checked_out = false;
    s->op = NULL;
    s->last_use_ms = cairn_wall_ms();
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Set by another thread: abort at the next opportunity (invariant 1). */
static bool abort_pending(struct txn_session *s)
{
    bool want;
    pthread_mutex_lock(&s->m->sessions.mu);
    want = s->abort_wanted;
    s->abort_wanted = false;
    pthread_mutex_unlock(&s->m->sessions.mu);
    return want;
}

/* ---- The state machine ------------------------------------------------------ */

static int too_old(struct txn_session *s, int64_t n, bool retryable, struct cairn_error *err)
{
    char hex[2 * TXN_LSID_LEN + 1];

    lsid_hex(s->lsid, hex);
    if (retryable) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TransactionTooOld,
                                 "Retryable write with txnNumber %" PRId64
                                 " is prohibited on session %s because a newer retryable write "
                                 "with txnNumber %" PRId64 " has already started on this session.",
                                 n, hex, s->active_txn);
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TransactionTooOld,
                             "Cannot start transaction %" PRId64
                             " on session %s because a newer transaction %" PRId64
                             " has already started.",
                             n, hex, s->active_txn);
}

int txn_session_retryable_begin(struct txn_session *s, int64_t n, struct cairn_error *err)
{
    int rv = ensure_loaded(s, err);

    if (rv != 0) {
        return rv;
    }
    if (n < s->active_txn) {
        return too_old(s, n, true, err);
    }
    if (n == s->active_txn) {
        if (s->is_txn) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_IncompleteTransactionHistory,
                                     "Cannot retry a retryable write that has been converted "
                                     "into a transaction");
        }
        if (s->n_stmts > 0) {
            atomic_fetch_add_explicit(&s->m->n_retried_cmds, 1, memory_order_relaxed);
        }
        return 0;
    }
    abort_txn(s); /* a kill mark set meanwhile stays, for checkin */
    s->active_txn = n;
    s->is_txn = false;
    set_state(s, TXN_STATE_NONE);
    s->commit_ts = 0;
    s->n_recs = 0;
    stmts_clear(s);
    return 0;
}

bool txn_session_stmt_executed(struct txn_session *s, int32_t stmt_id, bson_t *result, cairn_ts *ts)
{
    size_t lo = 0, hi = s->n_stmts;

    if (s->is_txn) {
        return false;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->stmts[mid].stmt_id < stmt_id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo >= s->n_stmts || s->stmts[lo].stmt_id != stmt_id) {
        return false;
    }
    bson_init_static(result, bson_get_data(s->stmts[lo].result), s->stmts[lo].result->len);
    *ts = s->stmts[lo].ts;
    atomic_fetch_add_explicit(&s->m->n_retried_stmts, 1, memory_order_relaxed);
    return true;
}

int txn_session_txn_begin(struct txn_session *s,
                          int64_t n,
                          const struct txn_read_concern *rc,
                          struct cairn_op *op,
                          struct cairn_error *err)
{
    struct txn_mgr *m = s->m;
    struct txn_write *w = NULL;
    bool local = rc->level == TXN_READ_LOCAL && !rc->snapshot;
    cairn_ts read_ts = CAIRN_TS_MAX;
    int rv = ensure_loaded(s, err);

    if (rv != 0) {
        return rv;
    }
    if (n < s->active_txn) {
        return too_old(s, n, false, err);
    }
    if (n == s->active_txn) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_ConflictingOperationInProgress,
                                 "Only servers in a sharded cluster can start a new transaction "
                                 "at the active transaction number");
    }
    abort_txn(s); /* a kill mark set meanwhile stays, for checkin */
    stmts_clear(s);
    s->n_recs = 0;
    s->active_txn = n;
    s->is_txn = true;
    set_state(s, TXN_STATE_ABORTED); /* until it is really set up */
    s->commit_ts = 0;
    if (rc->at_ts != 0) {
        rv = txn_wait_cluster_time(m, rc->at_ts, TXN_READ_MAJORITY, op, err);
        local = false;
        read_ts = rc->at_ts;
    } else {
        if (rc->after_ts != 0) {
            rv = txn_wait_cluster_time(m, rc->after_ts, local ? TXN_READ_LOCAL : TXN_READ_MAJORITY,
                                       op, err);
        }
        if (!local) {
            read_ts = repl_applied_ts(m->repl);
        }
    }
    if (rv == 0) {
        rv = txn_write_begin_multi(m, s, local, read_ts, &w, err);
    }
    if (rv != 0) {
        return rv;
    }
    pthread_mutex_lock(&m->sessions.mu);
    s->txn = w;
    s->state = TXN_STATE_OPEN;
    s->txn_start_ms = cairn_wall_ms();
    s->txn_expire_ms = s->txn_start_ms + txn_lifetime_limit_secs(m) * 1000;
    pthread_mutex_unlock(&m->sessions.mu);
    atomic_fetch_add_explicit(&m->n_started, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->n_open, 1, memory_order_relaxed);
    if (!s->counted_active) { /* checked out now */
        s->counted_active = true;
        atomic_fetch_add_explicit(&m->n_active, 1, memory_order_relaxed);
    }
    rv = cairn_op_check(op, err); /* killed while it started: fail now */
    if (rv != 0) {
        abort_txn(s);
    }
    return rv;
}

static int aborted_error(struct txn_session *s, int64_t n, struct cairn_error *err)
{
    (void)s;
    return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_NoSuchTransaction,
                             "Transaction %" PRId64 " has been aborted.", n);
}

int txn_session_txn_continue(struct txn_session *s,
                             int64_t n,
                             bool for_commit,
                             int *state,
                             struct cairn_error *err)
{
    int rv = ensure_loaded(s, err);

    if (rv != 0) {
        return rv;
    }
    if (n < s->active_txn) {
        return too_old(s, n, false, err);
    }
    if (n > s->active_txn || !s->is_txn) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_NoSuchTransaction,
                                 "Given transaction number %" PRId64
                                 " does not match any in-progress transactions. The active "
                                 "transaction number is %" PRId64,
                                 n, s->active_txn);
    }
    if (s->state == TXN_STATE_OPEN &&
        (abort_pending(s) || s->txn == NULL || s->txn->epoch != repl_write_epoch(s->m->repl))) {
        abort_txn(s);
    }
    switch (s->state) {
        case TXN_STATE_OPEN:
            *state = TXN_STATE_OPEN;
            return 0;
        case TXN_STATE_COMMITTED:
            if (for_commit) {
                *state = TXN_STATE_COMMITTED;
                return 0;
            }
            return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_TransactionCommitted,
                                     "Transaction %" PRId64 " has been committed.", n);
        default:
            return aborted_error(s, n, err);
    }
}

struct txn_write *txn_session_txn(struct txn_session *s)
{
    return s->state == TXN_STATE_OPEN ? s->txn : NULL;
}

int txn_session_txn_commit(struct txn_session *s, cairn_ts *ts, struct cairn_error *err)
{
    struct txn_mgr *m = s->m;
    struct txn_write *w;
    int rv;

    *ts = 0;
    if (s->state == TXN_STATE_COMMITTED) {
        *ts = s->commit_ts;
        return 0;
    }
    if (s->state != TXN_STATE_OPEN || s->txn == NULL) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_NoSuchTransaction,
                                 "Transaction isn't in progress");
    }
    if (abort_pending(s)) {
        abort_txn(s);
        return aborted_error(s, s->active_txn, err);
    }
    rv = txn_write_commit_multi(s->txn, ts, err);
    if (rv != 0) {
        abort_txn(s);
        return rv;
    }
    if (*ts == 0) {
        *ts = s->commit_ts; /* read-only: its read ts */
    }
    pthread_mutex_lock(&m->sessions.mu);
    w = s->txn;
    s->txn = NULL;
    pthread_mutex_unlock(&m->sessions.mu);
    txn_write_release(w);
    atomic_fetch_add_explicit(&m->n_committed, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&m->n_open, 1, memory_order_relaxed);
    return 0;
}

int txn_session_txn_abort(struct txn_session *s, struct cairn_error *err)
{
    if (s->state == TXN_STATE_COMMITTED) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_TransactionCommitted,
                                 "Transaction %" PRId64 " has been committed.", s->active_txn);
    }
    if (s->state != TXN_STATE_OPEN) {
        return cairn_error_mongo(err, CAIRN_ESTATE, MONGO_NoSuchTransaction,
                                 "Transaction isn't in progress");
    }
    abort_txn(s);
    abort_pending(s);
    return 0;
}

void txn_session_txn_fail(struct txn_session *s)
{
    if (s->state == TXN_STATE_OPEN) {
        abort_txn(s);
    }
}

int64_t txn_session_txn_number(const struct txn_session *s)
{
    return s->active_txn;
}

const uint8_t *txn_session_lsid(const struct txn_session *s)
{
    return s->lsid;
}

/* ---- Other threads: end, kill, reap, step-down ------------------------------ */

/* Aborts `s`'s transaction now (idle) or at checkin (checked out,
 * interrupting its command with `code` when not 0). sess_mu held. */
static void abort_or_mark(struct txn_session *s, int code)
{
    if (s->checked_out) {
        /* Even with no transaction yet: the command may be starting one. */
        s->abort_wanted = true;
        if (code != 0 && s->op != NULL) {
            cairn_op_interrupt(s->op, code);
        }
        return;
    }
    abort_txn_locked(s);
}

/* Forgets an idle session when nothing of it can be lost (invariant 2);
 * `expired`: unused for logicalSessionTimeoutMinutes. sess_mu held. */
static bool forget_if_idle(struct txn_mgr *m, struct txn_session *s, bool expired)
{
    if (s->checked_out || s->waiters > 0 || s->txn != NULL ||
        s->commit_ts > repl_applied_ts(m->repl)) {
        return false;
    }
    if (!expired && s->active_txn != s->durable_txn) {
        /* Its txnNumber is known only here (an aborted transaction, a
         * retryable write that wrote nothing): reloading would let the
         * number name a second transaction. */
        return false;
    }
    unlink_session(&m->sessions, s);
    session_free(s);
    return true;
}

void txn_sessions_end(struct txn_mgr *m, const uint8_t (*lsids)[TXN_LSID_LEN], size_t n, bool kill)
{
    struct txn_sessions *t = &m->sessions;

    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < n; i++) {
        struct txn_session *s = find(t, lsids[i]);
        if (s == NULL) {
            continue;
        }
        abort_or_mark(s, kill ? MONGO_Interrupted : 0);
        s->ended = true;
        (void)forget_if_idle(m, s, false);
    }
    pthread_mutex_unlock(&t->mu);
}

void txn_sessions_kill_all(struct txn_mgr *m)
{
    struct txn_sessions *t = &m->sessions;

    pthread_mutex_lock(&t->mu);
    for (size_t b = 0; b < t->n_buckets; b++) {
        struct txn_session *s = t->buckets[b];
        while (s != NULL) {
            struct txn_session *next = s->next;
            abort_or_mark(s, MONGO_Interrupted);
            s->ended = true;
            (void)forget_if_idle(m, s, false);
            s = next;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void txn_sessions_refresh(struct txn_mgr *m, const uint8_t (*lsids)[TXN_LSID_LEN], size_t n)
{
    struct txn_sessions *t = &m->sessions;
    int64_t now = cairn_wall_ms();

    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < n; i++) {
        struct txn_session *s = find(t, lsids[i]);
        if (s != NULL) {
            s->last_use_ms = now;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void txn_sessions_reap(struct txn_mgr *m, int64_t now_ms)
{
    struct txn_sessions *t = &m->sessions;
    int64_t idle_ms = (int64_t)TXN_SESSION_TIMEOUT_MINUTES * 60 * 1000;

    pthread_mutex_lock(&t->mu);
    for (size_t b = 0; b < t->n_buckets; b++) {
        struct txn_session *s = t->buckets[b];
        while (s != NULL) {
            struct txn_session *next = s->next;
            if (s->txn != NULL && s->state == TXN_STATE_OPEN && s->txn_expire_ms <= now_ms) {
                char hex[2 * TXN_LSID_LEN + 1];
                lsid_hex(s->lsid, hex);
                cairn_log(CAIRN_LOG_INFO, "txn",
                          "aborting transaction %" PRId64
                          " on session %s: it passed "
                          "transactionLifetimeLimitSeconds",
                          s->active_txn, hex);
                abort_or_mark(s, MONGO_TransactionExceededLifetimeLimitSeconds);
            }
            if (s->ended || s->last_use_ms + idle_ms <= now_ms) {
                (void)forget_if_idle(m, s, s->last_use_ms + idle_ms <= now_ms);
            }
            s = next;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void txn_sessions_on_leadership(struct txn_mgr *m, bool writable)
{
    struct txn_sessions *t = &m->sessions;

    if (writable) {
        return; /* state is reloaded per session at its first use (ensure_loaded) */
    }
    pthread_mutex_lock(&t->mu);
    for (size_t b = 0; b < t->n_buckets; b++) {
        for (struct txn_session *s = t->buckets[b]; s != NULL; s = s->next) {
            if (s->txn != NULL) {
                abort_or_mark(s, MONGO_InterruptedDueToReplStateChange);
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void txn_sessions_destroy(struct txn_mgr *m)
{
    struct txn_sessions *t = &m->sessions;

    if (t->buckets == NULL) {
        return;
    }
    for (size_t b = 0; b < t->n_buckets; b++) {
        struct txn_session *s = t->buckets[b];
        while (s != NULL) {
            struct txn_session *next = s->next;
            abort_txn_locked(s);
            session_free(s);
            s = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

void txn_foreach_open(struct txn_mgr *m,
                      void (*fn)(const struct txn_open_info *info, void *arg),
                      void *arg)
{
    struct txn_sessions *t = &m->sessions;

    pthread_mutex_lock(&t->mu);
    for (size_t b = 0; b < t->n_buckets; b++) {
        for (struct txn_session *s = t->buckets[b]; s != NULL; s = s->next) {
            struct txn_open_info info;
            if (s->txn == NULL || s->state != TXN_STATE_OPEN) {
                continue;
            }
            memcpy(info.lsid, s->lsid, TXN_LSID_LEN);
            info.txn_number = s->active_txn;
            info.active = s->checked_out;
            info.start_wall_ms = s->txn_start_ms;
            info.expire_wall_ms = s->txn_expire_ms;
            info.read_ts = s->txn->read_ts;
            info.op_id = s->checked_out && s->op != NULL ? s->op->id : 0;
            fn(&info, arg);
        }
    }
    pthread_mutex_unlock(&t->mu);
}
