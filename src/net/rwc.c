/*
 * rwc.c: the cluster-wide read/write concern defaults (mongod's
 * ReadWriteConcernDefaults). It owns setDefaultRWConcern and
 * getDefaultRWConcern, the document that holds the defaults
 * (config.settings {_id: "ReadWriteConcernDefaults", defaultReadConcern?,
 * defaultWriteConcern?, updateOpTime, updateWallClockTime}, written as any
 * replicated write, so every member applies it and a new primary has it),
 * the in-memory cache of that document and the application of the defaults
 * to commands that name no read or write concern (net_rwc_write_concern,
 * net_rwc_read_level).
 *
 * Invariants:
 * 1. The cache holds the applied (majority-committed) document as of the
 *    settings generation it records (repl_settings_generation, bumped by
 *    the apply path after it applied a write to config.settings). A reload
 *    reads the generation first and the document second, so the cache is
 *    never older than the generation it records; a newer document under an
 *    older generation only costs one more reload.
 * 2. A use that finds the generation unchanged costs one atomic load and
 *    one uncontended mutex: the commit path pays nothing more.
 * 3. The document is validated when set; a document written some other way
 *    that does not parse is ignored field by field (logged), never trusted
 *    half-way.
 * One cache per process (as the cursor table): a cairnd serves one set.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/op.h"

#include "net/net_int.h"
#include "net/server_int.h"

#define RWC_DOC_ID "ReadWriteConcernDefaults"

/* The defaults as stored; absent parts are the implicit ones. */
struct rwc_defaults
{
    bool has_rc;
    int rc_level;     /* TXN_READ_* */
    char rc_name[16]; /* "local", "majority", "available" */
    bool has_wc;
    struct repl_wc wc;       /* w 0 = "majority" */
    bool wc_j_set;           /* j (or fsync) was given: shown in replies */
    cairn_ts update_ts;      /* 0: never set */
    int64_t update_wall_ms;  /* with update_ts */
    int64_t local_update_ms; /* when this member last loaded them */
};

static struct
{
    pthread_mutex_t mu;
    bool loaded;
    uint64_t gen;
    struct rwc_defaults d;
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* ---- Parsing ------------------------------------------------------------- */

/* A read concern level name usable as a default: 0 with *level set;
 * BadValue for snapshot / linearizable; FailedToParse for unknown names. */
static int rc_level_of(const char *name, int *level, struct cairn_error *err)
{
    if (strcmp(name, "local") == 0 || strcmp(name, "available") == 0) {
        *level = TXN_READ_LOCAL;
        return 0;
    }
    if (strcmp(name, "majority") == 0) {
        *level = TXN_READ_MAJORITY;
        return 0;
    }
    if (strcmp(name, "snapshot") == 0 || strcmp(name, "linearizable") == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                 "level: '%s' is not suitable for the default read concern", name);
    }
    return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_FailedToParse,
                             "readConcern level must be either 'local', 'majority', "
                             "'linearizable', 'available', or 'snapshot'; found '%s'",
                             name);
}

/* Parses a defaultReadConcern document into d (has_rc false for {}). */
static int parse_rc(const bson_t *doc, struct rwc_defaults *d, struct cairn_error *err)
{
    bson_iter_t it;

    d->has_rc = false;
    if (!bson_iter_init(&it, doc)) {
        return cairn_error_mongo(err, CAIRN_EBADDOC, MONGO_FailedToParse,
                                 "defaultReadConcern is not a valid document");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "level") == 0) {
            const char *name;
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field 'readConcern.level' is the wrong type '%s', "
                                         "expected type 'string'",
                                         qry_type_name(bson_iter_type(&it)));
            }
            name = bson_iter_utf8(&it, NULL);
            if (rc_level_of(name, &d->rc_level, err) != 0) {
                return err->code;
            }
            snprintf(d->rc_name, sizeof d->rc_name, "%s", name);
            d->has_rc = true;
        } else if (strcmp(k, "afterClusterTime") == 0 || strcmp(k, "atClusterTime") == 0 ||
                   strcmp(k, "afterOpTime") == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "'%s' is not suitable for the default read concern", k);
        } else if (strcmp(k, "provenance") == 0) {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                     "'provenance' must be unset in default read concern");
        } else {
            return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                     "Unrecognized option in readConcern: %s", k);
        }
    }
    return 0;
}

/* Parses a defaultWriteConcern document into d (has_wc false for {}),
 * with the write-concern parser every command uses, refusing what mongod
 * refuses as a default: w: 0 and provenance. */
static int parse_wc(const bson_t *doc, struct rwc_defaults *d, struct cairn_error *err)
{
    bson_t wrap = BSON_INITIALIZER;
    bson_iter_t it;
    int rv;

    d->has_wc = false;
    d->wc_j_set = false;
    if (bson_empty(doc)) {
        return 0;
    }
    if (bson_iter_init(&it, doc)) {
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            if (strcmp(k, "w") == 0 && BSON_ITER_HOLDS_NUMBER(&it) &&
                bson_iter_as_double(&it) < 1 && bson_iter_as_double(&it) >= 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "Unacknowledged write concern is not suitable for the "
                                         "default write concern");
            }
            if (strcmp(k, "provenance") == 0) {
                return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue,
                                         "'provenance' must be unset in default write concern");
            }
            if (strcmp(k, "j") == 0 || strcmp(k, "fsync") == 0) {
                d->wc_j_set = true;
            }
        }
    }
    BSON_APPEND_DOCUMENT(&wrap, "writeConcern", doc);
    rv = net_parse_write_concern(&wrap, &d->wc, err);
    bson_destroy(&wrap);
    if (rv != 0) {
        return rv;
    }
    if (!bson_has_field(doc, "w")) {
        d->wc.w = 1; /* a write concern without w means w: 1, as in mongod */
    }
    d->has_wc = true;
    return 0;
}

static void append_wc(bson_t *out, const char *key, const struct rwc_defaults *d)
{
    bson_t sub;

    BSON_APPEND_DOCUMENT_BEGIN(out, key, &sub);
    if (!d->has_wc || d->wc.w == 0) {
        BSON_APPEND_UTF8(&sub, "w", "majority");
    } else {
        BSON_APPEND_INT32(&sub, "w", d->wc.w);
    }
    if (d->has_wc && d->wc_j_set) {
        BSON_APPEND_BOOL(&sub, "j", d->wc.j);
    }
    BSON_APPEND_INT32(
        &sub, "wtimeout",
        d->has_wc ? (int32_t)(d->wc.wtimeout_ms > INT32_MAX ? INT32_MAX : d->wc.wtimeout_ms) : 0);
    bson_append_document_end(out, &sub);
}

/* The stored document of `d` (caller destroys `out`). */
static void build_doc(const struct rwc_defaults *d, bson_t *out)
{
    bson_t sub;

    bson_init(out);
    BSON_APPEND_UTF8(out, "_id", RWC_DOC_ID);
    if (d->has_rc) {
        BSON_APPEND_DOCUMENT_BEGIN(out, "defaultReadConcern", &sub);
        BSON_APPEND_UTF8(&sub, "level", d->rc_name);
        bson_append_document_end(out, &sub);
    }
    if (d->has_wc) {
        append_wc(out, "defaultWriteConcern", d);
    }
    BSON_APPEND_TIMESTAMP(out, "updateOpTime", CAIRN_TS_SECS(d->update_ts),
                          CAIRN_TS_INC(d->update_ts));
    BSON_APPEND_DATE_TIME(out, "updateWallClockTime", d->update_wall_ms);
}

/* Reads a stored document into d, ignoring (and logging) parts that do not
 * parse (invariant 3). */
static void parse_stored(const bson_t *doc, struct rwc_defaults *d)
{
    bson_iter_t it;
    struct cairn_error err;

    memset(d, 0, sizeof *d);
    if (!bson_iter_init(&it, doc)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bson_t sub;
        const uint8_t *data;
        uint32_t len;

        if ((strcmp(k, "defaultReadConcern") == 0 || strcmp(k, "defaultWriteConcern") == 0) &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&sub, data, len)) {
                continue;
            }
            if ((k[7] == 'R' ? parse_rc(&sub, d, &err) : parse_wc(&sub, d, &err)) != 0) {
                cairn_log(CAIRN_LOG_WARN, "net", "ignoring the stored %s: %s", k, err.msg);
            }
        } else if (strcmp(k, "updateOpTime") == 0 && BSON_ITER_HOLDS_TIMESTAMP(&it)) {
            uint32_t t, i;
            bson_iter_timestamp(&it, &t, &i);
            d->update_ts = CAIRN_TS(t, i);
        } else if (strcmp(k, "updateWallClockTime") == 0 && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            d->update_wall_ms = bson_iter_date_time(&it);
        }
    }
}

/* ---- The cache ------------------------------------------------------------ */

/* Reads the applied document into d (all absent when there is none). */
static int load(struct net_cmd *c, struct rwc_defaults *d, struct cairn_error *err)
{
    struct txn_mgr *m = c->deps->txn;
    struct txn_read *rd = NULL;
    bson_value_t id;
    bson_t doc;
    uint64_t coll;
    int rv;

    memset(d, 0, sizeof *d);
    if (m == NULL) {
        return 0;
    }
    rv = txn_read_begin(m, TXN_READ_MAJORITY, &rd, err);
    if (rv != 0) {
        return rv;
    }
    if (txn_read_coll(rd, REPL_SETTINGS_NS, &coll) == 0) {
        id.value_type = BSON_TYPE_UTF8;
        id.value.v_utf8.str = (char *)RWC_DOC_ID;
        id.value.v_utf8.len = (uint32_t)strlen(RWC_DOC_ID);
        rv = txn_read_get(rd, coll, &id, &doc, err);
        if (rv == 0) {
            parse_stored(&doc, d);
            bson_destroy(&doc);
        } else if (rv == CAIRN_ENOTFOUND) {
            rv = 0;
        }
    }
    txn_read_end(rd);
    return rv;
}

/* The current defaults (reloaded when the settings generation moved). */
static int get_defaults(struct net_cmd *c, struct rwc_defaults *out, struct cairn_error *err)
{
    uint64_t gen = c->deps->repl != NULL ? repl_settings_generation(c->deps->repl) : 0;
    struct rwc_defaults d;
    int rv;

    pthread_mutex_lock(&cache.mu);
    if (cache.loaded && cache.gen == gen) {
        *out = cache.d;
        pthread_mutex_unlock(&cache.mu);
        return 0;
    }
    pthread_mutex_unlock(&cache.mu);
    rv = load(c, &d, err);
    if (rv != 0) {
        return rv;
    }
    d.local_update_ms = cairn_wall_ms();
    pthread_mutex_lock(&cache.mu);
    if (!cache.loaded || gen >= cache.gen) {
        cache.d = d;
        cache.gen = gen;
        cache.loaded = true;
    }
    *out = d;
    pthread_mutex_unlock(&cache.mu);
    return 0;
}

/* ---- Applying the defaults ---------------------------------------------------- */

int net_rwc_write_concern(struct net_cmd *c, struct repl_wc *wc)
{
    struct rwc_defaults d;
    bson_iter_t it;
    bool whole = true, no_j = true;

    if (net_parse_write_concern(c->body, wc, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (bson_iter_init_find(&it, c->body, "writeConcern") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t sub;
        if (bson_iter_recurse(&it, &sub)) {
            while (bson_iter_next(&sub)) {
                const char *k = bson_iter_key(&sub);
                whole = false;
                if (strcmp(k, "w") == 0) {
                    return 0; /* the command's own w */
                }
                if (strcmp(k, "j") == 0 || strcmp(k, "fsync") == 0) {
                    no_j = false;
                }
            }
        }
    }
    if (get_defaults(c, &d, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (!d.has_wc) {
        return 0; /* the implicit default, {w: "majority"}, is what the parse gave */
    }
    if (whole) {
        *wc = d.wc;
        return 0;
    }
    /* A write concern without w takes w (and j, when it sets none) from
     * the default and keeps its own wtimeout. */
    wc->w = d.wc.w;
    if (no_j) {
        wc->j = d.wc.j;
    }
    return 0;
}

int net_rwc_read_level(struct net_cmd *c, int *level)
{
    struct rwc_defaults d;

    *level = -1;
    if (get_defaults(c, &d, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (d.has_rc) {
        *level = d.rc_level;
    }
    return 0;
}

/* ---- Commands ------------------------------------------------------------------ */

static void append_defaults(bson_t *reply, const struct rwc_defaults *d, bool in_memory)
{
    bson_t sub;

    BSON_APPEND_DOCUMENT_BEGIN(reply, "defaultReadConcern", &sub);
    BSON_APPEND_UTF8(&sub, "level", d->has_rc ? d->rc_name : "local");
    bson_append_document_end(reply, &sub);
    append_wc(reply, "defaultWriteConcern", d);
    if (d->update_ts != 0) {
        BSON_APPEND_TIMESTAMP(reply, "updateOpTime", CAIRN_TS_SECS(d->update_ts),
                              CAIRN_TS_INC(d->update_ts));
        BSON_APPEND_DATE_TIME(reply, "updateWallClockTime", d->update_wall_ms);
    }
    BSON_APPEND_UTF8(reply, "defaultWriteConcernSource", d->has_wc ? "global" : "implicit");
    BSON_APPEND_UTF8(reply, "defaultReadConcernSource", d->has_rc ? "global" : "implicit");
    BSON_APPEND_DATE_TIME(reply, "localUpdateWallClockTime", d->local_update_ms);
    if (in_memory) {
        BSON_APPEND_BOOL(reply, "inMemory", true);
    }
}

/* getDefaultRWConcern [inMemory]: the defaults this member applies. The
 * cache follows every applied change, so inMemory changes only the
 * reply's inMemory field. */
int net_cmd_get_default_rw_concern(struct net_cmd *c)
{
    struct rwc_defaults d;
    bool in_memory = false;

    if (net_get_bool(c, "inMemory", &in_memory) != 0 || get_defaults(c, &d, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    append_defaults(&c->reply, &d, in_memory);
    return NET_CMD_DONE;
}

/* Commits `doc` as the defaults document and waits until it is
 * majority-committed and applied here (so the cache then holds it). */
static int store(struct net_cmd *c, const bson_t *doc)
{
    struct txn_mgr *m = c->deps->txn;
    struct txn_write *w = NULL;
    uint64_t coll;
    bool created = false;
    cairn_ts ts = 0;

    if (txn_write_begin(m, NULL, &w, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (txn_write_coll(w, REPL_SETTINGS_NS, true, &coll, &created, &c->err) != 0 ||
        txn_write_put(w, coll, doc, &c->err) != 0) {
        txn_write_abort(w);
        return NET_CMD_ERROR;
    }
    if (txn_write_commit(w, &ts, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    c->operation_time = ts;
    if (txn_wait_majority(m, ts, cairn_op_current(), 0, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    return 0;
}

/* setDefaultRWConcern {defaultReadConcern?, defaultWriteConcern?}: checks
 * them as mongod does, keeps the current value of the one not given, and
 * replaces the document through the replicated write path. Waits for
 * majority whatever its own writeConcern says (the cache reads
 * majority-committed state; docs/decisions.md). */
int net_cmd_set_default_rw_concern(struct net_cmd *c)
{
    struct rwc_defaults cur, next;
    struct repl_status st;
    struct repl_wc own;
    bson_t rc_doc, wc_doc, doc;
    bson_iter_t it;
    bool has_rc = false, has_wc = false;

    if (!bson_iter_init(&it, c->body) || !bson_iter_next(&it)) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_FailedToParse, "empty command");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool rc = strcmp(k, "defaultReadConcern") == 0;
        if (rc || strcmp(k, "defaultWriteConcern") == 0) {
            const uint8_t *data;
            uint32_t len;
            if (BSON_ITER_HOLDS_NULL(&it)) {
                continue;
            }
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_TypeMismatch,
                                         "BSON field 'setDefaultRWConcern.%s' is the wrong type "
                                         "'%s', expected type 'object'",
                                         k, qry_type_name(bson_iter_type(&it)));
            }
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(rc ? &rc_doc : &wc_doc, data, len)) {
                return cairn_error_mongo(&c->err, CAIRN_EBADDOC, MONGO_FailedToParse,
                                         "%s is not a valid document", k);
            }
            *(rc ? &has_rc : &has_wc) = true;
        } else if (!net_is_generic_arg(k)) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_LOC_IdlUnknownField,
                                     "BSON field 'setDefaultRWConcern.%s' is an unknown field.", k);
        }
    }
    if (!has_rc && !has_wc) {
        return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_BadValue,
                                 "At least one of the \"defaultReadConcern\" or "
                                 "\"defaultWriteConcern\" fields must be present");
    }
    if (net_rwc_write_concern(c, &own) != 0 || get_defaults(c, &cur, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    next = cur;
    if (has_rc && parse_rc(&rc_doc, &next, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    if (has_wc) {
        if (bson_empty(&wc_doc) && cur.has_wc) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_IllegalOperation,
                                     "The global default write concern cannot be unset once it "
                                     "is set.");
        }
        if (parse_wc(&wc_doc, &next, &c->err) != 0) {
            return NET_CMD_ERROR;
        }
        repl_status_get(c->deps->repl, &st);
        if (next.has_wc && next.wc.w > 1 && (size_t)next.wc.w > st.n_members) {
            return cairn_error_mongo(&c->err, CAIRN_EINVAL, MONGO_UnsatisfiableWriteConcern,
                                     "Not enough data-bearing nodes (w: %d, members: %zu)",
                                     next.wc.w, st.n_members);
        }
    }
    next.update_ts = txn_cluster_time(c->deps->txn);
    if (next.update_ts == 0 && txn_noop_write(c->deps->txn, &next.update_ts, &c->err) != 0) {
        /* A set that has written nothing has no cluster time yet: a no-op
         * gives it one, so updateOpTime is always a real cluster time. */
        return NET_CMD_ERROR;
    }
    next.update_wall_ms = cairn_wall_ms();
    build_doc(&next, &doc);
    if (store(c, &doc) != 0) {
        bson_destroy(&doc);
        return NET_CMD_ERROR;
    }
    bson_destroy(&doc);
    net_log_event(net_conn_server(c->conn), "setDefaultRWConcern from conn%llu: defaults set",
                  (unsigned long long)c->conn_id);
    if (get_defaults(c, &next, &c->err) != 0) {
        return NET_CMD_ERROR;
    }
    append_defaults(&c->reply, &next, false);
    return NET_CMD_DONE;
}
