/*
 * cursor.c: the server-side cursor registry (ids in a hash table, busy
 * flag, idle expiry on the sweeper's ticks,
 * killCursors, the session and transaction a cursor belongs to), batch
 * production for find/aggregate/list replies, and the small document/field
 * helpers shared by cmd_crud.c, cmd_read.c and cmd_ddl.c.
 */
#include "net/cursor.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/op.h"
#include "net/net_int.h"
#include "net/server_int.h"
#include "net/txnctx.h"

/* ---- Cursors ------------------------------------------------------------ */

/* The registry: a chained hash table on the id (ids are random, so their
 * low bits spread evenly), doubled when it holds more cursors than
 * buckets, so that acquiring a cursor costs the same with 30,000 idle
 * ones as with none. Idle cursors are reaped by the sweeper's ticks
 * (net_cursor_reap), never by other cursors' commands. All under reg_lock;
 * a cursor's `next` chains its bucket. */
#define REG_MIN_BUCKETS 64

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct net_cursor *reg_initial[REG_MIN_BUCKETS];
static struct net_cursor **reg_buckets = reg_initial;
static size_t reg_n_buckets = REG_MIN_BUCKETS;
static size_t reg_count;
static size_t reg_no_timeout; /* registered with noCursorTimeout */
static uint64_t reg_timed_out;
static uint64_t reg_last_reap_ns;
static uint64_t reg_lookups; /* find_locked calls, and the cursors they compared */
static uint64_t reg_probes;
static uint64_t reg_rng;
static bool reg_seeded;

struct net_cursor *net_cursor_new(const char *ns)
{
    struct net_cursor *cur = calloc(1, sizeof *cur);
    if (cur == NULL) {
        return NULL;
    }
    size_t len = strlen(ns);
    if (len >= sizeof cur->ns) {
        len = sizeof cur->ns - 1;
    }
    memcpy(cur->ns, ns, len);
    cur->ns[len] = '\0';
    cur->limit_left = -1;
    return cur;
}

void net_cursor_free(struct net_cursor *cur)
{
    if (cur == NULL) {
        return;
    }
    if (cur->sc != NULL) {
        txn_scan_close(cur->sc);
    }
    if (cur->rd != NULL) {
        txn_read_end(cur->rd);
    }
    if (cur->matcher != NULL) {
        qry_matcher_free(cur->matcher);
    }
    if (cur->proj != NULL) {
        qry_projection_free(cur->proj);
    }
    for (size_t i = 0; i < cur->n_docs; i++) {
        if (cur->docs[i] != NULL) {
            bson_destroy(cur->docs[i]);
        }
    }
    free(cur->docs);
    qry_mem_release(cur->held_bytes);
    qry_sortbuf_free(cur->spilled);
    qry_sort_free(cur->spilled_sort);
    if (cur->pending != NULL) {
        bson_destroy(cur->pending);
    }
    free(cur);
}

void net_cursor_set_docs(struct net_cursor *cur, bson_t **docs, size_t n)
{
    cur->docs = docs;
    cur->n_docs = n;
    cur->pos = 0;
}

/* Memory one held document costs. */
static size_t held_cost(const bson_t *d)
{
    return d->len + sizeof(bson_t) + sizeof(bson_t *);
}

int net_cursor_charge_docs(struct net_cursor *cur, struct cairn_error *err)
{
    size_t bytes = 0;
    for (size_t i = cur->pos; i < cur->n_docs; i++) {
        if (cur->docs[i] != NULL) {
            bytes += held_cost(cur->docs[i]);
        }
    }
    int rv = qry_mem_charge(bytes, err);
    if (rv == 0) {
        cur->held_bytes += bytes;
    }
    return rv;
}

/* Closes the streaming source early once it is exhausted, so the read's
 * snapshot is not held by an idle cursor. */
static void close_source(struct net_cursor *cur)
{
    if (cur->sc != NULL) {
        txn_scan_close(cur->sc);
        cur->sc = NULL;
    }
    if (cur->rd != NULL) {
        txn_read_end(cur->rd);
        cur->rd = NULL;
    }
}

/* Produces the next document into `out` (initialised on 1). Returns 1, 0 at
 * the end, -1 on error. */
static int produce(struct net_cursor *cur, bson_t *out, struct cairn_error *err)
{
    while (cur->spilled != NULL) {
        bson_t *d = NULL;
        int r = qry_sortbuf_next(cur->spilled, &d, err);
        if (r <= 0) {
            return r;
        }
        if (cur->skip > 0) {
            cur->skip--;
            bson_destroy(d);
            continue;
        }
        if (cur->proj != NULL) {
            r = qry_projection_apply(cur->proj, d, out, err) != 0 ? -1 : 1;
        } else {
            bson_copy_to(d, out);
        }
        bson_destroy(d);
        return r;
    }
    if (cur->rd == NULL) {
        while (cur->pos < cur->n_docs) {
            bson_t *d = cur->docs[cur->pos];
            cur->docs[cur->pos] = NULL;
            cur->pos++;
            if (d == NULL) {
                continue;
            }
            if (cur->held_bytes > 0) {
                size_t c = held_cost(d);
                c = c < cur->held_bytes ? c : cur->held_bytes;
                qry_mem_release(c);
                cur->held_bytes -= c;
            }
            bson_copy_to(d, out);
            bson_destroy(d);
            return 1;
        }
        return 0;
    }
    if (cur->sc == NULL) {
        return 0;
    }
    for (;;) {
        bson_t view;
        struct cairn_error scan_err;
        cairn_error_clear(&scan_err);
        int r = net_dc_scan_next(cur->sc, &view, &scan_err);
        if (r == 0) {
            close_source(cur);
            return 0;
        }
        if (r < 0) {
            if (err != NULL) {
                *err = scan_err;
            }
            return -1;
        }
        if (cur->matcher != NULL && !qry_matcher_match(cur->matcher, &view)) {
            continue;
        }
        if (cur->skip > 0) {
            cur->skip--;
            continue;
        }
        if (cur->proj != NULL) {
            if (qry_projection_apply(cur->proj, &view, out, err) != 0) {
                return -1;
            }
        } else {
            bson_copy_to(&view, out);
        }
        return 1;
    }
}

int net_cursor_fill(struct net_cursor *cur, int64_t max_docs, bson_t *arr, struct cairn_error *err)
{
    int64_t n = 0;
    size_t bytes = 0;
    while (max_docs < 0 || n < max_docs) {
        if (cur->limit_left == 0) {
            cur->exhausted = true;
            break;
        }
        bson_t doc;
        if (cur->pending != NULL) {
            /* bson_t is not relocatable by assignment: copy it out. */
            bson_copy_to(cur->pending, &doc);
            bson_destroy(cur->pending);
            cur->pending = NULL;
        } else {
            int r = produce(cur, &doc, err);
            if (r < 0) {
                return err != NULL ? err->code : CAIRN_EIO;
            }
            if (r == 0) {
                cur->exhausted = true;
                break;
            }
        }
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string((uint32_t)n, &k, key, sizeof key);
        /* The array element costs its type byte and key besides the
         * document: with many small documents that adds up to more than
         * the reply's headroom above 16 MiB. */
        size_t elem = (size_t)doc.len + 2 + klen;
        if (n > 0 && bytes + elem > NET_BATCH_MAX_BYTES) {
            cur->pending = bson_copy(&doc);
            bson_destroy(&doc);
            if (cur->pending == NULL) {
                return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
            }
            break;
        }
        bson_append_document(arr, k, (int)klen, &doc);
        bytes += elem;
        bson_destroy(&doc);
        n++;
        if (cur->limit_left > 0) {
            cur->limit_left--;
        }
    }
    if (!cur->exhausted && cur->pending == NULL) {
        if (cur->limit_left == 0) {
            cur->exhausted = true;
        } else {
            bson_t next;
            int r = produce(cur, &next, err);
            if (r < 0) {
                return err != NULL ? err->code : CAIRN_EIO;
            }
            if (r == 0) {
                cur->exhausted = true;
            } else {
                cur->pending = bson_copy(&next);
                bson_destroy(&next);
                if (cur->pending == NULL) {
                    return cairn_error_setf(err, CAIRN_ENOMEM, "out of memory");
                }
            }
        }
    }
    if (cur->exhausted) {
        close_source(cur);
    }
    return 0;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t bucket_of(int64_t id)
{
    return (size_t)id & (reg_n_buckets - 1);
}

/* Under reg_lock. */
static struct net_cursor *find_locked(int64_t id, struct net_cursor ***link)
{
    struct net_cursor **pp = &reg_buckets[bucket_of(id)];
    reg_lookups++;
    while (*pp != NULL) {
        reg_probes++;
        if ((*pp)->id == id) {
            if (link != NULL) {
                *link = pp;
            }
            return *pp;
        }
        pp = &(*pp)->next;
    }
    return NULL;
}

/* Under reg_lock: doubles the table when it holds more cursors than
 * buckets. Out of memory, the chains just grow longer. */
static void grow_locked(void)
{
    size_t n = reg_n_buckets * 2;
    struct net_cursor **nb;

    if (reg_count <= reg_n_buckets) {
        return;
    }
    nb = calloc(n, sizeof *nb);
    if (nb == NULL) {
        return;
    }
    for (size_t i = 0; i < reg_n_buckets; i++) {
        struct net_cursor *cur = reg_buckets[i];
        while (cur != NULL) {
            struct net_cursor *next = cur->next;
            size_t b = (size_t)cur->id & (n - 1);
            cur->next = nb[b];
            nb[b] = cur;
            cur = next;
        }
    }
    if (reg_buckets != reg_initial) {
        free(reg_buckets);
    }
    reg_buckets = nb;
    reg_n_buckets = n;
}

/* Under reg_lock: takes `cur` (found through `link`) out of the table. */
static void unlink_locked(struct net_cursor *cur, struct net_cursor **link)
{
    *link = cur->next;
    cur->next = NULL;
    reg_count--;
    if (cur->no_timeout) {
        reg_no_timeout--;
    }
}

/* Under reg_lock: unlinks into *dead every cursor for which `pick` is
 * true. */
static void sweep_locked(bool (*pick)(const struct net_cursor *cur, uint64_t now, uint64_t idle),
                         uint64_t now,
                         uint64_t idle,
                         struct net_cursor **dead,
                         size_t *n)
{
    for (size_t i = 0; i < reg_n_buckets; i++) {
        struct net_cursor **pp = &reg_buckets[i];
        while (*pp != NULL) {
            struct net_cursor *cur = *pp;
            if (pick(cur, now, idle)) {
                unlink_locked(cur, pp);
                cur->next = *dead;
                *dead = cur;
                (*n)++;
            } else {
                pp = &cur->next;
            }
        }
    }
}

/* `now` may be older than a cursor's last use (the sweeper reads the clock
 * before its other work, and a getMore may release the cursor meanwhile):
 * such a cursor is not idle at all, rather than idle for 2^64 ns. */
static bool is_expired(const struct net_cursor *cur, uint64_t now, uint64_t idle)
{
    return !cur->busy && !cur->no_timeout && now > cur->last_used_ns &&
           now - cur->last_used_ns > idle;
}

static bool is_idle(const struct net_cursor *cur, uint64_t now, uint64_t idle)
{
    return !cur->busy;
}

static void free_list(struct net_cursor *dead)
{
    while (dead != NULL) {
        struct net_cursor *next = dead->next;
        net_cursor_free(dead);
        dead = next;
    }
}

size_t net_cursor_reap(uint64_t now_ns)
{
    uint64_t idle_ns = net_cursor_idle_ns(); /* cursorTimeoutMillis */
    /* A walk of every cursor at most every quarter of the timeout (and at
     * least once a second): an expired cursor lives at most a quarter
     * longer than its timeout, plus a sweeper tick. */
    uint64_t every = idle_ns / 4 < 1000000000ull ? idle_ns / 4 : 1000000000ull;
    struct net_cursor *dead = NULL;
    size_t n = 0;

    pthread_mutex_lock(&reg_lock);
    if (now_ns - reg_last_reap_ns >= every) {
        reg_last_reap_ns = now_ns;
        sweep_locked(is_expired, now_ns, idle_ns, &dead, &n);
        reg_timed_out += n;
    }
    pthread_mutex_unlock(&reg_lock);
    free_list(dead);
    return n;
}

int64_t net_cursor_register(struct net_cursor *cur)
{
    pthread_mutex_lock(&reg_lock);
    if (!reg_seeded) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
            seed = cairn_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
        }
        reg_rng = seed;
        reg_seeded = true;
    }
    int64_t id;
    do {
        id = (int64_t)(splitmix64(&reg_rng) & (uint64_t)INT64_MAX);
    } while (id == 0 || find_locked(id, NULL) != NULL);
    cur->id = id;
    cur->busy = false;
    cur->killed = false;
    cur->last_used_ns = cairn_mono_ns();
    reg_count++;
    if (cur->no_timeout) {
        reg_no_timeout++;
    }
    grow_locked();
    size_t b = bucket_of(id);
    cur->next = reg_buckets[b];
    reg_buckets[b] = cur;
    pthread_mutex_unlock(&reg_lock);
    return id;
}

int net_cursor_acquire(int64_t id, struct net_cursor **out, struct cairn_error *err)
{
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    struct net_cursor *cur = find_locked(id, NULL);
    if (cur == NULL || cur->killed) {
        rc = cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_CursorNotFound,
                               "cursor id %" PRId64 " not found", id);
    } else if (cur->busy) {
        rc = cairn_error_mongo(err, CAIRN_EBUSY, MONGO_CursorInUse,
                               "cursor id %" PRId64 " is already in use", id);
    } else {
        cur->busy = true;
        *out = cur;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

void net_cursor_release(struct net_cursor *cur)
{
    bool drop = false;
    pthread_mutex_lock(&reg_lock);
    cur->busy = false;
    cur->last_used_ns = cairn_mono_ns();
    if (cur->exhausted || cur->killed) {
        struct net_cursor **link = NULL;
        if (find_locked(cur->id, &link) == cur) {
            unlink_locked(cur, link);
        }
        drop = true;
    }
    pthread_mutex_unlock(&reg_lock);
    if (drop) {
        net_cursor_free(cur);
    }
}

bool net_cursor_kill(int64_t id, const char *ns)
{
    struct net_cursor *victim = NULL;
    bool killed = false;
    pthread_mutex_lock(&reg_lock);
    struct net_cursor **link = NULL;
    struct net_cursor *cur = find_locked(id, &link);
    if (cur != NULL && !cur->killed && (ns == NULL || strcmp(ns, cur->ns) == 0)) {
        killed = true;
        if (cur->busy) {
            cur->killed = true;
        } else {
            unlink_locked(cur, link);
            victim = cur;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (victim != NULL) {
        net_cursor_free(victim);
    }
    return killed;
}

size_t net_cursor_close_all(void)
{
    struct net_cursor *dead = NULL;
    size_t n = 0;
    pthread_mutex_lock(&reg_lock);
    sweep_locked(is_idle, 0, 0, &dead, &n);
    size_t left = reg_count;
    pthread_mutex_unlock(&reg_lock);
    free_list(dead);
    return left;
}

size_t net_cursor_count(void)
{
    pthread_mutex_lock(&reg_lock);
    size_t n = reg_count;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

void net_cursor_stats_get(struct net_cursor_stats *out)
{
    pthread_mutex_lock(&reg_lock);
    out->open = reg_count;
    out->no_timeout = reg_no_timeout;
    out->timed_out = reg_timed_out;
    out->buckets = reg_n_buckets;
    out->lookups = reg_lookups;
    out->probes = reg_probes;
    pthread_mutex_unlock(&reg_lock);
}

/* ---- Sessions of cursors -------------------------------------------------- */

/* The lsid of command `c` (its "lsid" field; dispatch validated it).
 * Returns false when it has none. */
static bool cmd_lsid(struct net_cmd *c, uint8_t lsid[TXN_LSID_LEN])
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->body, "lsid")) {
        return false;
    }
    struct cairn_error saved = c->err;
    if (net_parse_lsid(c, &it, lsid) != 0) {
        c->err = saved; /* not reached: dispatch refused a bad lsid */
        return false;
    }
    return true;
}

/* Records the session and transaction of the command creating `cur`: the
 * txnNumber only for a statement of a transaction (a read command takes a
 * txnNumber nowhere else). */
static void set_origin(struct net_cursor *cur, struct net_cmd *c)
{
    cur->has_lsid = cmd_lsid(c, cur->lsid);
    cur->has_txn = c->txn_mode == NET_TXN_MULTI;
    cur->txn_number = cur->has_txn ? c->txn_number : -1;
}

/* The SHA-256 digest of the empty user name in base64: the uid mongod puts
 * into every LogicalSessionId when authentication is off. */
#define NO_AUTH_UID "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

/* Formats a session as mongod's operator<< on a LogicalSessionId: "id -
 * uid - txnNumber - txnUUID", the last two empty for a client's session. */
static const char *lsid_str(const uint8_t lsid[TXN_LSID_LEN], char *buf, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    char uuid[37];
    size_t n = 0;
    for (size_t i = 0; i < TXN_LSID_LEN; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            uuid[n++] = '-';
        }
        uuid[n++] = hex[lsid[i] >> 4];
        uuid[n++] = hex[lsid[i] & 15];
    }
    uuid[n] = '\0';
    snprintf(buf, size, "%s - %s -  - ", uuid, NO_AUTH_UID);
    return buf;
}

#define LSID_STR_LEN 96

int net_cursor_check_session(const struct net_cursor *cur, int64_t id, struct net_cmd *c)
{
    uint8_t lsid[TXN_LSID_LEN];
    bool has_lsid = cmd_lsid(c, lsid);
    char mine[LSID_STR_LEN];
    char theirs[LSID_STR_LEN];

    /* validateLSID */
    if (has_lsid && !cur->has_lsid) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_GetMoreSessionNotInCursor,
                                 "Cannot run getMore on cursor %" PRId64
                                 ", which was not created in a session, in session %s",
                                 id, lsid_str(lsid, mine, sizeof mine));
    }
    if (!has_lsid && cur->has_lsid) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_GetMoreSessionMissing,
                                 "Cannot run getMore on cursor %" PRId64
                                 ", which was created in session %s, without an lsid",
                                 id, lsid_str(cur->lsid, theirs, sizeof theirs));
    }
    if (has_lsid && memcmp(lsid, cur->lsid, TXN_LSID_LEN) != 0) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_GetMoreSessionMismatch,
                                 "Cannot run getMore on cursor %" PRId64
                                 ", which was created in session %s, in session %s",
                                 id, lsid_str(cur->lsid, theirs, sizeof theirs),
                                 lsid_str(lsid, mine, sizeof mine));
    }

    /* validateTxnNumber: a getMore carries a txnNumber only as a statement
     * of a transaction (dispatch refuses it otherwise, 50768). */
    bool has_txn = c->txn_mode != NET_TXN_NONE;
    if (has_txn && !cur->has_txn) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_GetMoreTxnNotInCursor,
                                 "Cannot run getMore on cursor %" PRId64
                                 ", which was not created in a transaction, in transaction "
                                 "%" PRId64,
                                 id, c->txn_number);
    }
    if (!has_txn && cur->has_txn) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_GetMoreTxnMissing,
                                 "Cannot run getMore on cursor %" PRId64
                                 ", which was created in transaction %" PRId64
                                 ", without a txnNumber",
                                 id, cur->txn_number);
    }
    if (has_txn && c->txn_number != cur->txn_number) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_GetMoreTxnMismatch,
                                 "Cannot run getMore on cursor %" PRId64
                                 ", which was created in transaction %" PRId64
                                 ", in transaction %" PRId64,
                                 id, cur->txn_number, c->txn_number);
    }
    return 0;
}

/* ---- Field helpers ------------------------------------------------------ */

static int type_error(const char *path,
                      const char *field,
                      bson_type_t got,
                      const char *expected,
                      struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                             "BSON field '%s.%s' is the wrong type '%s', expected %s", path, field,
                             qry_type_name(got), expected);
}

int net_dc_get_bool(const bson_t *doc,
                    const char *path,
                    const char *field,
                    bool *out,
                    struct cairn_error *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field)) {
        return 0;
    }
    switch (bson_iter_type(&it)) {
        case BSON_TYPE_BOOL:
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128:
            *out = bson_iter_as_bool(&it);
            return 0;
        default:
            return type_error(path, field, bson_iter_type(&it),
                              "types '[bool, long, int, decimal, double]'", err);
    }
}

int net_dc_get_int64(const bson_t *doc,
                     const char *path,
                     const char *field,
                     int64_t *out,
                     struct cairn_error *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field)) {
        return 0;
    }
    switch (bson_iter_type(&it)) {
        case BSON_TYPE_INT32:
            *out = bson_iter_int32(&it);
            return 0;
        case BSON_TYPE_INT64:
            *out = bson_iter_int64(&it);
            return 0;
        case BSON_TYPE_DOUBLE: {
            double d = bson_iter_double(&it);
            if (!(d >= -9.2e18 && d <= 9.2e18) || d != (double)(int64_t)d) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "Expected an integer for '%s.%s', but found %g", path,
                                         field, d);
            }
            *out = (int64_t)d;
            return 0;
        }
        default:
            return type_error(path, field, bson_iter_type(&it),
                              "types '[long, int, decimal, double]'", err);
    }
}

int net_dc_get_doc(const bson_t *doc,
                   const char *path,
                   const char *field,
                   bson_t *out,
                   struct cairn_error *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field)) {
        return 0;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return type_error(path, field, bson_iter_type(&it), "type 'object'", err);
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(out, data, len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "BSON field '%s.%s' is not valid BSON", path, field);
    }
    return 0;
}

/* ---- Documents ------------------------------------------------------------ */

int net_dc_prepare_doc(const bson_t *in, bson_t *out, struct cairn_error *err)
{
    bson_iter_t it;
    bson_iter_t id_it;
    bool have_id = false;
    if (!bson_iter_init(&it, in)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue, "invalid BSON document");
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "_id") == 0) {
            if (!have_id) {
                id_it = it;
                have_id = true;
            }
            continue;
        }
        if (key[0] == '$') {
            return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                     "Document can't have $ prefixed field names: %s", key);
        }
    }
    if (have_id) {
        switch (bson_iter_type(&id_it)) {
            case BSON_TYPE_ARRAY:
                return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                         "can't use an array for _id");
            case BSON_TYPE_REGEX:
                return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                         "can't use a regex for _id");
            case BSON_TYPE_UNDEFINED:
                return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_BadValue,
                                         "can't use a undefined for _id");
            case BSON_TYPE_DOCUMENT: {
                bson_iter_t sub;
                if (bson_iter_recurse(&id_it, &sub)) {
                    while (bson_iter_next(&sub)) {
                        if (bson_iter_key(&sub)[0] == '$') {
                            return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_InvalidIdField,
                                                     "_id fields may not contain '$'-prefixed "
                                                     "fields: %s is not valid for "
                                                     "storage.",
                                                     bson_iter_key(&sub));
                        }
                    }
                }
                break;
            }
            default:
                break;
        }
    }
    bson_init(out);
    bool ok;
    if (have_id) {
        ok = bson_append_iter(out, "_id", 3, &id_it);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        ok = bson_append_oid(out, "_id", 3, &oid);
    }
    bool seen_id = false;
    bson_iter_init(&it, in);
    while (ok && bson_iter_next(&it)) {
        if (!seen_id && strcmp(bson_iter_key(&it), "_id") == 0) {
            seen_id = true;
            continue;
        }
        ok = bson_append_iter(out, NULL, 0, &it);
    }
    if (!ok) {
        bson_destroy(out);
        return cairn_error_mongo(err, CAIRN_ETOOBIG, MONGO_BSONObjectTooLarge,
                                 "object to insert too large");
    }
    return 0;
}

void net_dc_append_write_error(bson_t *arr,
                               uint32_t n,
                               int32_t index,
                               const struct cairn_error *err,
                               const bson_value_t *id)
{
    char key[16];
    const char *k;
    bson_uint32_to_string(n, &k, key, sizeof key);
    int code = net_mongo_code(err);
    bson_t e;
    bson_append_document_begin(arr, k, -1, &e);
    BSON_APPEND_INT32(&e, "index", index);
    BSON_APPEND_INT32(&e, "code", code);
    BSON_APPEND_UTF8(&e, "codeName", net_code_name(code));
    bson_t tp, tv;
    if (code == MONGO_DuplicateKey && txn_dup_info_take(&tp, &tv)) {
        BSON_APPEND_DOCUMENT(&e, "keyPattern", &tp);
        BSON_APPEND_DOCUMENT(&e, "keyValue", &tv);
        bson_destroy(&tp);
        bson_destroy(&tv);
    } else if (code == MONGO_DuplicateKey && id != NULL) {
        bson_t kp;
        bson_t kv;
        BSON_APPEND_DOCUMENT_BEGIN(&e, "keyPattern", &kp);
        BSON_APPEND_INT32(&kp, "_id", 1);
        bson_append_document_end(&e, &kp);
        BSON_APPEND_DOCUMENT_BEGIN(&e, "keyValue", &kv);
        BSON_APPEND_VALUE(&kv, "_id", id);
        bson_append_document_end(&e, &kv);
    }
    BSON_APPEND_UTF8(&e, "errmsg", err->msg);
    bson_append_document_end(arr, &e);
}

int net_dc_collation_unsupported(struct cairn_error *err)
{
    return cairn_error_mongo(err, CAIRN_EUNSUPPORTED, MONGO_NotImplemented,
                             "collations other than 'simple' are not supported yet");
}

bool net_dc_collation_is_simple(const bson_t *collation)
{
    if (collation == NULL || bson_empty(collation)) {
        return true;
    }
    bson_iter_t it;
    if (bson_iter_init_find(&it, collation, "locale") && BSON_ITER_HOLDS_UTF8(&it) &&
        strcmp(bson_iter_utf8(&it, NULL), "simple") == 0 && bson_count_keys(collation) == 1) {
        return true;
    }
    return false;
}

/* ---- Write concern ------------------------------------------------------ */

static void wc_done(void *arg, int status)
{
    struct net_cmd *c = arg;
    if (status != 0) {
        net_append_write_concern_error(&c->reply, status);
    }
    net_cmd_complete(c, false);
}

int net_dc_finish_write(struct net_cmd *c, cairn_ts ts, const struct repl_wc *wc)
{
    if (ts != 0) {
        c->operation_time = ts;
    }
    /* The session is given back before the wait, which holds no thread and
     * may complete (and free c) before txn_wait returns. */
    net_session_leave(c->sess, c->txn_mode, false);
    c->sess = NULL;
    struct cairn_error werr;
    cairn_error_clear(&werr);
    if (txn_wait(c->deps->txn, ts, wc, wc_done, c, &werr) != 0) {
        int code = net_mongo_code(&werr);
        bson_t wce;
        BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "writeConcernError", &wce);
        BSON_APPEND_INT32(&wce, "code", code);
        BSON_APPEND_UTF8(&wce, "codeName", net_code_name(code));
        BSON_APPEND_UTF8(&wce, "errmsg", werr.msg);
        bson_append_document_end(&c->reply, &wce);
        return NET_CMD_DONE;
    }
    return NET_CMD_PENDING;
}

/* ---- Cursor replies ----------------------------------------------------- */

int net_dc_reply_cursor(struct net_cmd *c, struct net_cursor *cur, int64_t batch, bool single_batch)
{
    bson_t cd;
    bson_t arr;
    BSON_APPEND_DOCUMENT_BEGIN(&c->reply, "cursor", &cd);
    BSON_APPEND_ARRAY_BEGIN(&cd, "firstBatch", &arr);
    int rc = net_cursor_fill(cur, batch, &arr, &c->err);
    bson_append_array_end(&cd, &arr);
    if (rc != 0) {
        bson_append_document_end(&c->reply, &cd);
        net_cursor_free(cur);
        return NET_CMD_ERROR;
    }
    int64_t id = 0;
    char ns[sizeof cur->ns];
    memcpy(ns, cur->ns, sizeof ns);
    if (cur->exhausted || single_batch) {
        net_cursor_free(cur);
    } else {
        set_origin(cur, c);
        cur->ovl_token = c->ovl_token;
        cur->linearizable = c->linearizable;
        id = net_cursor_register(cur);
    }
    BSON_APPEND_INT64(&cd, "id", id);
    BSON_APPEND_UTF8(&cd, "ns", ns);
    if (c->at_cluster_time != 0) {
        /* A snapshot read outside a transaction says where it read. */
        BSON_APPEND_TIMESTAMP(&cd, "atClusterTime", CAIRN_TS_SECS(c->at_cluster_time),
                              CAIRN_TS_INC(c->at_cluster_time));
    }
    bson_append_document_end(&c->reply, &cd);
    return NET_CMD_DONE;
}

int net_dc_check_deadline(struct cairn_error *err)
{
    return cairn_op_check(cairn_op_current(), err);
}

int net_dc_scan_next(struct txn_scan *sc, bson_t *doc, struct cairn_error *err)
{
    /* Before every document: a relaxed load and a coarse clock read, so a
     * kill or the deadline stops the scan within one document however
     * slow each is to match (a heavy $regex over large documents). */
    if (cairn_op_poll(cairn_op_current(), err) != 0) {
        return -1;
    }
    int r = txn_scan_next(sc, doc);
    if (r < 0) {
        *err = *txn_scan_error(sc);
        if (err->code == 0) {
            cairn_error_setf(err, CAIRN_EIO, "scan failed");
        }
    }
    return r;
}

int net_dc_visit_scan(struct txn_read *rd,
                      uint64_t cid,
                      const struct txn_scan_req *req,
                      const struct qry_matcher *m,
                      net_dc_visit_fn fn,
                      void *arg,
                      struct cairn_error *err)
{
    bson_value_t id;
    bool hinted = qry_hint_given(req->hint);
    if ((!hinted || qry_hint_is_id(req->hint)) && m != NULL && qry_matcher_id_equality(m, &id)) {
        bson_t doc;
        int rc = txn_read_get(rd, cid, &id, &doc, err);
        if (rc == CAIRN_ENOTFOUND) {
            cairn_error_clear(err);
            return 0;
        }
        if (rc != 0) {
            return rc;
        }
        int r = 0;
        if (qry_matcher_match(m, &doc)) {
            r = fn(arg, &doc, err);
        }
        bson_destroy(&doc);
        return r < 0 ? (err->code ? err->code : CAIRN_EIO) : 0;
    }
    struct txn_scan *sc = NULL;
    int rc = txn_scan_open_query(rd, cid, req, &sc, err);
    if (rc != 0) {
        return rc;
    }
    for (;;) {
        bson_t doc;
        int r = net_dc_scan_next(sc, &doc, err);
        if (r == 0) {
            break;
        }
        if (r < 0) {
            rc = err->code;
            break;
        }
        if (m != NULL && !qry_matcher_match(m, &doc)) {
            continue;
        }
        r = fn(arg, &doc, err);
        if (r < 0) {
            rc = err->code ? err->code : CAIRN_EIO;
            break;
        }
        if (r > 0) {
            break;
        }
    }
    txn_scan_close(sc);
    return rc;
}
