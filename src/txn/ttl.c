/*
 * ttl.c: the TTL monitor. Every ttlMonitorSleepSecs (60 by default, as
 * mongod) the reaper thread runs one pass, on the primary only: for every
 * ready index with expireAfterSeconds, it finds the documents whose indexed
 * field is a date (or an array holding a date) older than now minus
 * expireAfterSeconds, through the index, and deletes them with ordinary
 * statement writes, so the deletes are replicated, maintain every index and
 * meet intents as any client's deletes do. A document changed between the
 * find and its delete is checked again under its intent.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "query/query.h"
#include "txn/txn_int.h"

/* Most documents one pass deletes from one collection. */
#define TTL_MAX_PER_PASS 100000

/* One TTL index found in the catalog. */
struct ttl_job
{
    char ns[ENG_NS_MAX + 1]; /* the collection */
    char field[256];
    int32_t secs;
};

/* True when the value at `field` of `doc` is a date before `cutoff_ms`, or
 * an array holding one (mongod expires on the earliest date). */
static bool expired(const bson_t *doc, const char *field, int64_t cutoff_ms)
{
    bson_iter_t it;

    if (!qry_path_find(doc, field, &it)) {
        return false;
    }
    if (BSON_ITER_HOLDS_DATE_TIME(&it)) {
        return bson_iter_date_time(&it) < cutoff_ms;
    }
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t ai;
        bson_iter_recurse(&it, &ai);
        while (bson_iter_next(&ai)) {
            if (BSON_ITER_HOLDS_DATE_TIME(&ai) && bson_iter_date_time(&ai) < cutoff_ms) {
                return true;
            }
        }
    }
    return false;
}

/* The TTL indexes of the local catalog. *out is malloc'd. */
static int find_jobs(struct txn_mgr *m, struct ttl_job **out, size_t *n_out)
{
    struct eng_coll_info *infos = NULL;
    struct cairn_buf buf = CAIRN_BUF_INIT;
    struct ttl_job *jobs = NULL;
    size_t n = 0, n_jobs = 0;
    int rv = eng_catalog_list(m->eng, NULL, true, &infos, &n);

    *out = NULL;
    *n_out = 0;
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        const char *mark = strstr(infos[i].ns, ".$");
        struct qry_index *ix = NULL;
        bson_t wrap, spec;
        bson_iter_t it, ready;
        uint32_t len;
        const uint8_t *data;
        int32_t secs;
        cairn_ts ts;
        if (mark == NULL) {
            continue;
        }
        cairn_buf_reset(&buf);
        if (eng_latest(m->eng, infos[i].id, txn_ix_spec_key, TXN_IX_META_LEN, &buf, &ts, NULL) !=
                0 ||
            !bson_init_static(&wrap, buf.data, buf.len) ||
            !bson_iter_init_find(&ready, &wrap, "ready") || !bson_iter_as_bool(&ready) ||
            !bson_iter_init_find(&it, &wrap, "spec") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
            continue;
        }
        bson_iter_document(&it, &len, &data);
        if (!bson_init_static(&spec, data, len) || qry_index_compile(&spec, &ix, NULL) != 0) {
            continue;
        }
        if (qry_index_ttl(ix, &secs)) {
            struct ttl_job *p = realloc(jobs, (n_jobs + 1) * sizeof *p);
            if (p == NULL) {
                rv = CAIRN_ENOMEM;
            } else {
                jobs = p;
                size_t l = (size_t)(mark - infos[i].ns);
                memcpy(jobs[n_jobs].ns, infos[i].ns, l);
                jobs[n_jobs].ns[l] = '\0';
                snprintf(jobs[n_jobs].field, sizeof jobs[n_jobs].field, "%s",
                         qry_index_field(ix, 0, NULL));
                jobs[n_jobs].secs = secs;
                n_jobs++;
            }
        }
        qry_index_free(ix);
    }
    free(infos);
    cairn_buf_free(&buf);
    if (rv != 0) {
        free(jobs);
        return rv;
    }
    *out = jobs;
    *n_out = n_jobs;
    return 0;
}

/* The _ids of the expired documents of one job (copies in *ids). */
static int find_expired(struct txn_mgr *m,
                        const struct ttl_job *job,
                        int64_t cutoff_ms,
                        bson_value_t **ids_out,
                        size_t *n_out,
                        struct cairn_error *err)
{
    struct txn_read *rd = NULL;
    struct txn_scan *sc = NULL;
    bson_value_t *ids = NULL;
    size_t n = 0, cap = 0;
    uint64_t cid;
    bson_t filter = BSON_INITIALIZER, range;
    bson_t doc;
    int rv, r;

    *ids_out = NULL;
    *n_out = 0;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, job->field, &range);
    BSON_APPEND_DATE_TIME(&range, "$lt", cutoff_ms);
    bson_append_document_end(&filter, &range);
    rv = txn_read_begin(m, TXN_READ_LOCAL, &rd, err);
    if (rv == 0 && txn_read_coll(rd, job->ns, &cid) != 0) {
        goto out;
    }
    if (rv == 0) {
        rv = txn_scan_open_filter(rd, cid, job->ns, &filter, &sc, err);
    }
    while (rv == 0 && n < TTL_MAX_PER_PASS && (r = txn_scan_next(sc, &doc)) != 0) {
        bson_iter_t it;
        if (r < 0) {
            *err = *txn_scan_error(sc);
            rv = err->code ? err->code : CAIRN_EIO;
            break;
        }
        if (!expired(&doc, job->field, cutoff_ms) || !bson_iter_init_find(&it, &doc, "_id")) {
            continue;
        }
        if (n == cap) {
            size_t c2 = cap ? cap * 2 : 64;
            bson_value_t *p = realloc(ids, c2 * sizeof *p);
            if (p == NULL) {
                rv = cairn_error_setf(err, CAIRN_ENOMEM, "ttl: out of memory");
                break;
            }
            ids = p;
            cap = c2;
        }
        bson_value_copy(bson_iter_value(&it), &ids[n++]);
    }
out:
    txn_scan_close(sc);
    txn_read_end(rd);
    bson_destroy(&filter);
    *ids_out = ids;
    *n_out = n;
    return rv;
}

/* Deletes the documents `ids` of the job that are still expired. */
static int delete_expired(struct txn_mgr *m,
                          const struct ttl_job *job,
                          const bson_value_t *ids,
                          size_t n,
                          int64_t cutoff_ms,
                          size_t *deleted,
                          struct cairn_error *err)
{
    struct txn_write *w = NULL;
    uint64_t cid;
    cairn_ts ts;
    int rv = txn_write_begin(m, NULL, &w, err);

    if (rv != 0) {
        return rv;
    }
    rv = txn_write_coll(w, job->ns, false, &cid, NULL, err);
    for (size_t i = 0; i < n && rv == 0; i++) {
        bson_t cur;
        rv = txn_write_lock(w, cid, &ids[i], &cur, err);
        if (rv == CAIRN_ENOTFOUND) {
            rv = 0;
            continue;
        }
        if (rv != 0) {
            break;
        }
        bool still = expired(&cur, job->field, cutoff_ms);
        bson_destroy(&cur);
        if (still) {
            rv = txn_write_delete(w, cid, &ids[i], err);
            *deleted += rv == 0;
        }
        if (rv == 0 && txn_write_staged_bytes(w) > TXN_FLUSH_BYTES / 4) {
            rv = txn_write_flush(w, &ts, err);
        }
    }
    if (rv == 0) {
        return txn_write_commit(w, &ts, err);
    }
    txn_write_abort(w);
    return rv;
}

void txn_ttl_pass(struct txn_mgr *m)
{
    struct ttl_job *jobs = NULL;
    size_t n_jobs = 0;
    int64_t now_ms = cairn_wall_ms();

    if (repl_write_epoch(m->repl) == 0 || find_jobs(m, &jobs, &n_jobs) != 0) {
        return; /* not primary (a secondary applies the primary's deletes) */
    }
    for (size_t j = 0; j < n_jobs; j++) {
        struct cairn_error err = {0};
        bson_value_t *ids = NULL;
        size_t n = 0, deleted = 0;
        int64_t cutoff = now_ms - (int64_t)jobs[j].secs * 1000;
        int rv = find_expired(m, &jobs[j], cutoff, &ids, &n, &err);
        if (rv == 0 && n > 0) {
            rv = delete_expired(m, &jobs[j], ids, n, cutoff, &deleted, &err);
        }
        if (rv != 0) {
            cairn_log(CAIRN_LOG_WARN, "txn", "TTL pass on %s.%s: %s", jobs[j].ns, jobs[j].field,
                      err.msg);
        } else if (deleted > 0) {
            cairn_log(CAIRN_LOG_INFO, "txn", "TTL pass deleted %zu document(s) from %s", deleted,
                      jobs[j].ns);
        }
        for (size_t i = 0; i < n; i++) {
            bson_value_destroy(&ids[i]);
        }
        free(ids);
    }
    free(jobs);
}
