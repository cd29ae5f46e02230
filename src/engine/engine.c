/*
 * engine.c: the RocksDB database: opening (options, column families,
 * loading the catalog and watermark), eng_apply, the watermark, flush and
 * metadata blobs.
 *
 * On-disk layout:
 *   default CF  "catalog/<ns>"      -> id (8 bytes BE) | ns
 *               "catalog_next_id"   -> 8 bytes BE, above every id ever used
 *               "catalog_alias/NN"  -> ts (8 BE) | id (8 BE) | from NUL to: one
 *                                      of the last 64 renames (slot NN,
 *                                      overwritten in turn; engine_int.h)
 *               "applied"           -> raft index (8 BE) | ts (8 BE)
 *               "meta/<name>"       -> blob
 *   sessions CF "session/<key>"     -> commit ts (8 BE) | record (session.c)
 *   docs CF     coll_id (8 BE) | encoded _id | ~ts (8 BE)
 *                                   -> flag byte | BSON (documents only)
 * The docs CF has a prefix extractor (the key without its ~ts suffix) and
 * a bloom filter on it, so point reads skip files that lack the document.
 *
 * eng_apply, in this order (snap.c argues why readers stay consistent):
 *   1. validate and build one batch: the docs, catalog changes, session
 *      records, the watermark and the id counter;
 *   2. write it, holding only apply_mu (no reader takes it);
 *   3. update the in-memory catalog (committed view, pending trimmed);
 *   4. publish the watermark: (index, ts) under wm_mu, P in gc.applied_ts;
 *   5. trim the overlay up to the entry's ts (never blocks on an add).
 * Everything that can fail (building the batch, reserving catalog room)
 * happens before the write; nothing after it can fail.
 */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "engine/engine_int.h"
#include "lib/log.h"

static int meta_key(const char *name, struct cairn_buf *k, struct cairn_error *err);

#define CAT_PREFIX "catalog/"
#define META_PREFIX ENG_META_PREFIX
#define KEY_APPLIED ENG_KEY_APPLIED
#define KEY_NEXT_ID "catalog_next_id"
#define ALIAS_PREFIX "catalog_alias/"
#define BLOCK_CACHE_BYTES ((size_t)128 << 20)

/* RocksDB keeps every table file open by default: bound its table cache to
 * an eighth of RLIMIT_NOFILE (at least 32, at most 16384), so that a large
 * database cannot take the descriptors client connections and the raft
 * log need (docs/decisions.md §36). -1 (all) when the limit is unbounded. */
static int table_files_cap(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return -1;
    }
    if (rl.rlim_cur / 8 < 32) {
        return 32;
    }
    return rl.rlim_cur / 8 > 16384 ? 16384 : (int)(rl.rlim_cur / 8);
}

int eng_rocks_error(struct cairn_error *err, char *rocks_msg, const char *what)
{
    cairn_error_setf(err, CAIRN_EIO, "rocksdb: %s: %s", what, rocks_msg ? rocks_msg : "error");
    if (rocks_msg != NULL) {
        rocksdb_free(rocks_msg);
    }
    return CAIRN_EIO;
}

void eng_docs_key(uint8_t *out, uint64_t coll_id, const uint8_t *key, size_t key_len, cairn_ts ts)
{
    cairn_store_be64(out, coll_id);
    if (key_len > 0) {
        memcpy(out + 8, key, key_len);
    }
    cairn_store_be64(out + 8 + key_len, ~ts);
}

/* ---- Docs prefix extractor: the key without its 8-byte ~ts suffix ------ */

static char *docs_prefix(void *state, const char *key, size_t len, size_t *dst_len)
{
    (void)state;
    *dst_len = len - 8;
    return (char *)key;
}

static unsigned char docs_in_domain(void *state, const char *key, size_t len)
{
    (void)state;
    (void)key;
    return len >= 17;
}

static unsigned char docs_in_range(void *state, const char *key, size_t len)
{
    (void)state;
    (void)key;
    (void)len;
    return 0;
}

static const char *docs_prefix_name(void *state)
{
    (void)state;
    return "cairn.docs.doc_prefix.v1";
}

static void docs_prefix_destroy(void *state)
{
    (void)state;
}

/* Options shared by both column families; `docs` adds the prefix bloom. */
static void set_cf_options(rocksdb_options_t *o, rocksdb_cache_t *cache, bool docs)
{
    rocksdb_block_based_table_options_t *bbo = rocksdb_block_based_options_create();

    rocksdb_block_based_options_set_block_cache(bbo, cache);
    rocksdb_block_based_options_set_filter_policy(bbo, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(bbo, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(bbo, 1);
    rocksdb_block_based_options_set_format_version(bbo, 5);
    if (docs) {
        rocksdb_block_based_options_set_whole_key_filtering(bbo, 0);
        rocksdb_options_set_prefix_extractor(
            o, rocksdb_slicetransform_create(NULL, docs_prefix_destroy, docs_prefix, docs_in_domain,
                                             docs_in_range, docs_prefix_name));
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.05);
    }
    rocksdb_options_set_block_based_table_factory(o, bbo);
    rocksdb_block_based_options_destroy(bbo);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
}

static int load_renames(struct eng *e, struct cairn_error *err);

int eng_load_state(struct eng *e, struct cairn_error *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro_plain, e->cf_default);
    size_t plen = strlen(CAT_PREFIX);
    char *msg = NULL;
    char *val;
    size_t vlen;
    int rv = 0;

    for (rocksdb_iter_seek(it, CAT_PREFIX, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        char ns[ENG_NS_MAX + 1];
        if (klen < plen || memcmp(k, CAT_PREFIX, plen) != 0) {
            break;
        }
        if (vlen < 8 || klen - plen > ENG_NS_MAX || vlen - 8 != klen - plen ||
            memcmp(v + 8, k + plen, klen - plen) != 0) {
            rv = cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad catalog entry '%.*s'",
                                  (int)(klen < 300 ? klen : 300), k);
            break;
        }
        memcpy(ns, k + plen, klen - plen);
        ns[klen - plen] = '\0';
        if (eng_cat_committed_create(&e->cat, ns, cairn_load_be64((const uint8_t *)v)) != 0) {
            rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: loading the catalog");
            break;
        }
    }
    if (rv == 0) {
        rocksdb_iter_get_error(it, &msg);
        if (msg != NULL) {
            rv = eng_rocks_error(err, msg, "load catalog");
        }
    }
    rocksdb_iter_destroy(it);
    rv = rv ? rv : load_renames(e, err);
    if (rv != 0) {
        return rv;
    }

    val = rocksdb_get_cf(e->db, e->ro_plain, e->cf_default, KEY_NEXT_ID, strlen(KEY_NEXT_ID), &vlen,
                         &msg);
    if (msg != NULL) {
        return eng_rocks_error(err, msg, "load id counter");
    }
    if (val != NULL) {
        if (vlen != 8) {
            rocksdb_free(val);
            return cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad %s", KEY_NEXT_ID);
        }
        uint64_t next = cairn_load_be64((const uint8_t *)val);
        if (next > 0) {
            eng_cat_note_id(&e->cat, next - 1);
        }
        rocksdb_free(val);
    }

    val = rocksdb_get_cf(e->db, e->ro_plain, e->cf_default, KEY_APPLIED, strlen(KEY_APPLIED), &vlen,
                         &msg);
    if (msg != NULL) {
        return eng_rocks_error(err, msg, "load watermark");
    }
    if (val != NULL) {
        if (vlen != 16) {
            rocksdb_free(val);
            return cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad applied watermark");
        }
        e->applied_index = cairn_load_be64((const uint8_t *)val);
        e->applied_ts = cairn_load_be64((const uint8_t *)val + 8);
        rocksdb_free(val);
    }
    return 0;
}

int eng_open(const char *dir, struct eng **out, struct cairn_error *err)
{
    struct eng *e;
    const char *cf_names[3] = {"default", "docs", "sessions"};
    const rocksdb_options_t *cf_opts[3];
    rocksdb_column_family_handle_t *handles[3] = {NULL, NULL, NULL};
    char *msg = NULL;
    int rv;

    *out = NULL;
    if (dir == NULL || dir[0] == '\0') {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: no database directory");
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    if (eng_cat_init(&e->cat) != 0) {
        free(e);
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    if (eng_gc_init(&e->gc) != 0) {
        eng_cat_destroy(&e->cat);
        free(e);
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    if (eng_ovl_init(&e->ovl) != 0) {
        eng_gc_destroy(&e->gc);
        eng_cat_destroy(&e->cat);
        free(e);
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    pthread_mutex_init(&e->apply_mu, NULL);
    pthread_mutex_init(&e->wm_mu, NULL);

    e->cache = rocksdb_cache_create_lru(BLOCK_CACHE_BYTES);
    e->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(e->opts, 1);
    rocksdb_options_set_create_missing_column_families(e->opts, 1);
    rocksdb_options_increase_parallelism(e->opts, 2);
    rocksdb_options_set_max_background_jobs(e->opts, 2);
    rocksdb_options_set_bytes_per_sync(e->opts, 1 << 20);
    rocksdb_options_set_max_open_files(e->opts, table_files_cap());
    set_cf_options(e->opts, e->cache, false);
    e->docs_opts = rocksdb_options_create_copy(e->opts);
    set_cf_options(e->docs_opts, e->cache, true);
    /* Only the docs column family collects old versions; the default one
     * (catalog, watermark, meta) is never filtered. */
    rocksdb_options_set_compaction_filter_factory(e->docs_opts, eng_gc_factory_create(e));
    /* Session records: one small value per session, overwritten by every
     * retryable write. Updated in place in the memtable, the column family
     * stays one entry per session instead of growing a version per write
     * (a random insert into a large skiplist cost ~5 us per write). Readers
     * take no snapshot of it, and applies are single-threaded, which is
     * what in-place updates require (no concurrent memtable writes). */
    e->sessions_opts = rocksdb_options_create_copy(e->opts);
    rocksdb_options_set_inplace_update_support(e->sessions_opts, 1);
    rocksdb_options_set_allow_concurrent_memtable_write(e->opts, 0);
    rocksdb_options_set_allow_concurrent_memtable_write(e->sessions_opts, 0);
    rocksdb_options_set_allow_concurrent_memtable_write(e->docs_opts, 0);

    e->wo_nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(e->wo_nosync, 0);
    e->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(e->wo_sync, 1);
    e->ro_plain = rocksdb_readoptions_create();

    cf_opts[0] = e->opts;
    cf_opts[1] = e->docs_opts;
    cf_opts[2] = e->sessions_opts;
    e->db = rocksdb_open_column_families(e->opts, dir, 3, cf_names, cf_opts, handles, &msg);
    if (msg != NULL || e->db == NULL) {
        rv = eng_rocks_error(err, msg, "open");
        cairn_error_wrapf(err, "engine: %s", dir);
        e->db = NULL;
        eng_close(e);
        return rv;
    }
    e->cf_default = handles[0];
    e->cf_docs = handles[1];
    e->cf_sessions = handles[2];
    rv = eng_load_state(e, err);
    if (rv == 0) {
        rv = eng_install_check_open(e, err);
    }
    if (rv != 0) {
        cairn_error_wrapf(err, "engine: %s", dir);
        eng_close(e);
        return rv;
    }
    eng_gc_note_applied(e, e->applied_ts);
    eng_gc_open_floor(e, e->applied_ts);
    cairn_log(CAIRN_LOG_INFO, "engine", "opened %s: %zu collections, applied index %llu", dir,
              e->cat.n, (unsigned long long)e->applied_index);
    *out = e;
    return 0;
}

void eng_close(struct eng *e)
{
    if (e == NULL) {
        return;
    }
    if (e->cf_default != NULL) {
        rocksdb_column_family_handle_destroy(e->cf_default);
    }
    if (e->cf_docs != NULL) {
        rocksdb_column_family_handle_destroy(e->cf_docs);
    }
    if (e->cf_sessions != NULL) {
        rocksdb_column_family_handle_destroy(e->cf_sessions);
    }
    if (e->db != NULL) {
        rocksdb_close(e->db);
    }
    if (e->wo_nosync != NULL) {
        rocksdb_writeoptions_destroy(e->wo_nosync);
    }
    if (e->wo_sync != NULL) {
        rocksdb_writeoptions_destroy(e->wo_sync);
    }
    if (e->ro_plain != NULL) {
        rocksdb_readoptions_destroy(e->ro_plain);
    }
    if (e->docs_opts != NULL) {
        rocksdb_options_destroy(e->docs_opts);
    }
    if (e->sessions_opts != NULL) {
        rocksdb_options_destroy(e->sessions_opts);
    }
    if (e->opts != NULL) {
        rocksdb_options_destroy(e->opts);
    }
    if (e->cache != NULL) {
        rocksdb_cache_destroy(e->cache);
    }
    eng_ovl_destroy(&e->ovl);
    eng_cat_destroy(&e->cat);
    eng_gc_destroy(&e->gc);
    pthread_mutex_destroy(&e->apply_mu);
    pthread_mutex_destroy(&e->wm_mu);
    free(e);
}

void eng_applied(struct eng *e, cairn_index *index, cairn_ts *ts)
{
    pthread_mutex_lock(&e->wm_mu);
    if (index != NULL) {
        *index = e->applied_index;
    }
    if (ts != NULL) {
        *ts = e->applied_ts;
    }
    pthread_mutex_unlock(&e->wm_mu);
}

cairn_ts eng_visible_ts(struct eng *e)
{
    cairn_ts v = atomic_load(&e->ovl.visible_ts);
    cairn_ts p = eng_gc_applied(e);

    return v > p ? v : p;
}

void eng_debug_set_hook(struct eng *e, eng_debug_hook_cb cb, void *arg)
{
    e->hook = cb;
    e->hook_arg = arg;
}

/* Checks the ops of an entry before anything is written. */
static int check_commits(const struct eng_commit *commits,
                         size_t n,
                         size_t *n_creates,
                         struct cairn_error *err)
{
    *n_creates = 0;
    for (size_t c = 0; c < n; c++) {
        if (commits[c].n_ops > 0 && commits[c].ops == NULL) {
            return cairn_error_setf(err, CAIRN_EINVAL, "engine: commit without ops array");
        }
        for (size_t i = 0; i < commits[c].n_ops; i++) {
            const struct eng_op *op = &commits[c].ops[i];
            switch (op->kind) {
                case ENG_OP_PUT:
                case ENG_OP_DELETE:
                    if (op->key == NULL || op->key_len == 0 ||
                        (op->kind == ENG_OP_PUT && op->doc == NULL && op->doc_len > 0)) {
                        return cairn_error_setf(err, CAIRN_EINVAL, "engine: op without key");
                    }
                    break;
                case ENG_OP_CREATE:
                    if (op->ns == NULL || op->ns[0] == '\0' || strlen(op->ns) > ENG_NS_MAX) {
                        return cairn_error_setf(err, CAIRN_EINVAL, "engine: bad namespace");
                    }
                    (*n_creates)++;
                    break;
                case ENG_OP_DROP:
                    if ((op->ns != NULL && strlen(op->ns) > ENG_NS_MAX) ||
                        (op->ns == NULL && op->coll_id == ENG_UNBIND_ID)) {
                        return cairn_error_setf(err, CAIRN_EINVAL, "engine: bad namespace");
                    }
                    break;
                case ENG_OP_CONFIG:
                    if (op->doc == NULL || op->doc_len < 5) {
                        return cairn_error_setf(err, CAIRN_EINVAL, "engine: config op without doc");
                    }
                    break;
                case ENG_OP_SESSION:
                    if (op->key == NULL || op->key_len == 0 || op->key_len > ENG_SESSION_KEY_MAX) {
                        return cairn_error_setf(err, CAIRN_EINVAL,
                                                "engine: session key of %zu bytes (1..%d)",
                                                op->key_len, ENG_SESSION_KEY_MAX);
                    }
                    if (op->doc == NULL && op->doc_len > 0) {
                        return cairn_error_setf(err, CAIRN_EINVAL,
                                                "engine: session record missing");
                    }
                    break;
                default:
                    return cairn_error_setf(err, CAIRN_EINVAL, "engine: unknown op kind %d",
                                            op->kind);
            }
        }
    }
    return 0;
}

/* One rename of an entry: name `from` (id `id`) became `to` at `ts`. The
 * names point into the entry's ops. */
struct rename_rec
{
    cairn_ts ts;
    uint64_t id;
    const char *from, *to;
};

/* The id `ns` names just before op `i` of commit `c`: the entry's own
 * creates and drops before it, else the committed catalog. */
static bool id_before(struct eng *e,
                      const struct eng_commit *commits,
                      size_t c,
                      size_t i,
                      const char *ns,
                      uint64_t *id)
{
    bool found;

    for (size_t cc = c + 1; cc-- > 0;) {
        for (size_t k = cc == c ? i : commits[cc].n_ops; k-- > 0;) {
            const struct eng_op *op = &commits[cc].ops[k];
            if ((op->kind == ENG_OP_CREATE || op->kind == ENG_OP_DROP) && op->ns != NULL &&
                strcmp(op->ns, ns) == 0) {
                *id = op->coll_id;
                return op->kind == ENG_OP_CREATE;
            }
        }
    }
    pthread_rwlock_rdlock(&e->cat.lock);
    found = eng_cat_committed_id(&e->cat, ns, id);
    pthread_rwlock_unlock(&e->cat.lock);
    return found;
}

/* The renames of the entry: an unbind whose id a later create of the same
 * commit binds to another name (a rebind of the same name, collMod's, is
 * none). *out is malloc'd (NULL when there is none). Returns 0 or
 * CAIRN_ENOMEM. Deterministic. */
static int collect_renames(struct eng *e,
                           const struct eng_commit *commits,
                           size_t n,
                           struct rename_rec **out,
                           size_t *n_out)
{
    size_t n_unbind = 0;

    *out = NULL;
    *n_out = 0;
    for (size_t c = 0; c < n; c++) {
        for (size_t i = 0; i < commits[c].n_ops; i++) {
            n_unbind +=
                commits[c].ops[i].kind == ENG_OP_DROP && commits[c].ops[i].coll_id == ENG_UNBIND_ID;
        }
    }
    if (n_unbind == 0) {
        return 0;
    }
    *out = malloc(n_unbind * sizeof **out);
    if (*out == NULL) {
        return CAIRN_ENOMEM;
    }
    for (size_t c = 0; c < n; c++) {
        for (size_t i = 0; i < commits[c].n_ops; i++) {
            const struct eng_op *op = &commits[c].ops[i];
            uint64_t id;
            if (op->kind != ENG_OP_DROP || op->coll_id != ENG_UNBIND_ID ||
                !id_before(e, commits, c, i, op->ns, &id)) {
                continue;
            }
            for (size_t j = i + 1; j < commits[c].n_ops; j++) {
                const struct eng_op *b = &commits[c].ops[j];
                if (b->kind == ENG_OP_CREATE && b->coll_id == id) {
                    if (strcmp(b->ns, op->ns) != 0) {
                        (*out)[(*n_out)++] = (struct rename_rec){commits[c].ts, id, op->ns, b->ns};
                    }
                    break;
                }
            }
        }
    }
    return 0;
}

/* Adds the renames to `b` under their slots (alias_seq onwards). */
static int batch_renames(struct eng *e,
                         rocksdb_writebatch_t *b,
                         const struct rename_rec *r,
                         size_t n)
{
    struct cairn_buf v = CAIRN_BUF_INIT;
    int rv = 0;

    for (size_t k = 0; k < n && rv == 0; k++) {
        char key[32];
        int klen = snprintf(key, sizeof key, "%s%02zu", ALIAS_PREFIX,
                            (e->cat.alias_seq + k) % CAT_ALIASES);
        cairn_buf_reset(&v);
        rv = cairn_buf_put_be64(&v, r[k].ts);
        rv = rv ? rv : cairn_buf_put_be64(&v, r[k].id);
        rv = rv ? rv : cairn_buf_append(&v, r[k].from, strlen(r[k].from) + 1);
        rv = rv ? rv : cairn_buf_append(&v, r[k].to, strlen(r[k].to));
        if (rv == 0) {
            rocksdb_writebatch_put_cf(b, e->cf_default, key, (size_t)klen, (const char *)v.data,
                                      v.len);
        }
    }
    cairn_buf_free(&v);
    return rv;
}

static int alias_ts_cmp(const void *pa, const void *pb)
{
    const struct cat_alias *a = pa, *b = pb;
    return a->ts < b->ts ? -1 : a->ts > b->ts;
}

/* Loads the persisted renames into the catalog's ring, oldest first. */
static int load_renames(struct eng *e, struct cairn_error *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(e->db, e->ro_plain, e->cf_default);
    size_t plen = strlen(ALIAS_PREFIX), n = 0, newest_slot = 0;
    struct cat_alias *v = calloc(CAT_ALIASES, sizeof *v);
    cairn_ts newest = 0;
    char *msg = NULL;
    int rv = 0;

    if (v == NULL) {
        rv = cairn_error_setf(err, CAIRN_ENOMEM, "engine: loading renames");
        goto out;
    }
    for (rocksdb_iter_seek(it, ALIAS_PREFIX, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen, vlen, flen;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);
        unsigned slot;
        if (klen < plen || memcmp(k, ALIAS_PREFIX, plen) != 0) {
            break;
        }
        flen = vlen > 16 ? strnlen(val + 16, vlen - 16) : 0;
        /* The key is not NUL-terminated: two digits, read by hand. */
        slot = klen == plen + 2 && isdigit((unsigned char)k[plen]) &&
                       isdigit((unsigned char)k[plen + 1])
                   ? (unsigned)(k[plen] - '0') * 10 + (unsigned)(k[plen + 1] - '0')
                   : CAT_ALIASES;
        if (slot >= CAT_ALIASES || n == CAT_ALIASES || vlen <= 16 || flen == vlen - 16 ||
            flen > ENG_NS_MAX || vlen - 17 - flen > ENG_NS_MAX) {
            rv = cairn_error_setf(err, CAIRN_ECORRUPT, "engine: bad rename record '%.*s'",
                                  (int)(klen < 300 ? klen : 300), k);
            goto out;
        }
        v[n].ts = cairn_load_be64((const uint8_t *)val);
        v[n].id = cairn_load_be64((const uint8_t *)val + 8);
        memcpy(v[n].from, val + 16, flen + 1);
        memcpy(v[n].to, val + 17 + flen, vlen - 17 - flen);
        v[n].to[vlen - 17 - flen] = '\0';
        if (n == 0 || v[n].ts > newest) {
            newest = v[n].ts;
            newest_slot = slot;
        }
        n++;
    }
    rocksdb_iter_get_error(it, &msg);
    if (msg != NULL) {
        rv = eng_rocks_error(err, msg, "load renames");
        goto out;
    }
    qsort(v, n, sizeof *v, alias_ts_cmp);
    for (size_t i = 0; i < n; i++) {
        eng_cat_alias_add(&e->cat, v[i].ts, v[i].id, v[i].from, v[i].to, 0);
    }
    e->cat.alias_seq = n > 0 ? (newest_slot + 1) % CAT_ALIASES : 0;
out:
    rocksdb_iter_destroy(it);
    free(v);
    return rv;
}

/* Adds the ops of the entry to `b`. `max_id` is raised to cover creates. */
static int fill_batch(struct eng *e,
                      rocksdb_writebatch_t *b,
                      const struct eng_commit *commits,
                      size_t n,
                      uint64_t *max_id)
{
    struct cairn_buf k = CAIRN_BUF_INIT, v = CAIRN_BUF_INIT;
    int rv = 0;

    for (size_t c = 0; c < n && rv == 0; c++) {
        for (size_t i = 0; i < commits[c].n_ops && rv == 0; i++) {
            const struct eng_op *op = &commits[c].ops[i];
            char ns[ENG_NS_MAX + 1];
            uint8_t lo[8], hi[8];
            cairn_buf_reset(&k);
            cairn_buf_reset(&v);
            switch (op->kind) {
                case ENG_OP_PUT:
                case ENG_OP_DELETE:
                    if ((rv = cairn_buf_reserve(&k, 16 + op->key_len)) != 0) {
                        break;
                    }
                    eng_docs_key(k.data, op->coll_id, op->key, op->key_len, commits[c].ts);
                    k.len = 16 + op->key_len;
                    if (op->kind == ENG_OP_PUT) {
                        rv = cairn_buf_push(&v, ENG_VERSION_DOC);
                        if (rv == 0 && op->doc_len > 0) {
                            rv = cairn_buf_append(&v, op->doc, op->doc_len);
                        }
                    } else {
                        rv = cairn_buf_push(&v, ENG_VERSION_TOMBSTONE);
                    }
                    if (rv == 0) {
                        rocksdb_writebatch_put_cf(b, e->cf_docs, (const char *)k.data, k.len,
                                                  (const char *)v.data, v.len);
                    }
                    break;
                case ENG_OP_CREATE:
                    if (op->coll_id > *max_id) {
                        *max_id = op->coll_id;
                    }
                    rv = cairn_buf_append(&k, CAT_PREFIX, strlen(CAT_PREFIX));
                    rv = rv ? rv : cairn_buf_append(&k, op->ns, strlen(op->ns));
                    rv = rv ? rv : cairn_buf_put_be64(&v, op->coll_id);
                    rv = rv ? rv : cairn_buf_append(&v, op->ns, strlen(op->ns));
                    if (rv == 0) {
                        rocksdb_writebatch_put_cf(b, e->cf_default, (const char *)k.data, k.len,
                                                  (const char *)v.data, v.len);
                    }
                    break;
                case ENG_OP_DROP:
                    if (op->ns != NULL) {
                        snprintf(ns, sizeof ns, "%s", op->ns);
                    } else {
                        pthread_rwlock_rdlock(&e->cat.lock);
                        if (!eng_cat_committed_ns(&e->cat, op->coll_id, ns)) {
                            ns[0] = '\0';
                        }
                        pthread_rwlock_unlock(&e->cat.lock);
                    }
                    if (ns[0] != '\0') {
                        rv = cairn_buf_append(&k, CAT_PREFIX, strlen(CAT_PREFIX));
                        rv = rv ? rv : cairn_buf_append(&k, ns, strlen(ns));
                        if (rv == 0) {
                            rocksdb_writebatch_delete_cf(b, e->cf_default, (const char *)k.data,
                                                         k.len);
                        }
                    }
                    if (op->coll_id == ENG_UNBIND_ID) {
                        break; /* a rename's unbind: the documents stay */
                    }
                    /* Ids are allocated from 1 upwards and never reach
                     * UINT64_MAX, so coll_id + 1 bounds the range. */
                    cairn_store_be64(lo, op->coll_id);
                    cairn_store_be64(hi, op->coll_id + 1);
                    rocksdb_writebatch_delete_range_cf(b, e->cf_docs, (const char *)lo, 8,
                                                       (const char *)hi, 8);
                    break;
                case ENG_OP_SESSION:
                    rv = eng_session_batch_put(e, b, op, commits[c].ts, &k, &v);
                    break;
                case ENG_OP_CONFIG:
                    /* Beside the data and the watermark: a member restarted
                     * after applying it starts with this config. */
                    cairn_buf_reset(&k);
                    rv = meta_key("rsconfig", &k, NULL);
                    if (rv == 0) {
                        rocksdb_writebatch_put_cf(b, e->cf_default, (const char *)k.data, k.len,
                                                  (const char *)op->doc, op->doc_len);
                    }
                    break;
                default:
                    break;
            }
        }
    }
    cairn_buf_free(&k);
    cairn_buf_free(&v);
    return rv;
}

/* Applies the entry's creates and drops to the committed catalog. Caller
 * holds cat.lock for writing and reserved room for the creates. */
static void apply_catalog(struct eng *e, const struct eng_commit *commits, size_t n)
{
    for (size_t c = 0; c < n; c++) {
        for (size_t i = 0; i < commits[c].n_ops; i++) {
            const struct eng_op *op = &commits[c].ops[i];
            char ns[ENG_NS_MAX + 1];
            if (op->kind == ENG_OP_CREATE) {
                eng_cat_committed_create(&e->cat, op->ns, op->coll_id);
            } else if (op->kind == ENG_OP_DROP) {
                if (op->ns != NULL) {
                    eng_cat_committed_drop(&e->cat, op->ns);
                } else if (eng_cat_committed_ns(&e->cat, op->coll_id, ns)) {
                    eng_cat_committed_drop(&e->cat, ns);
                }
            }
        }
    }
}

int eng_apply(struct eng *e,
              const struct eng_commit *commits,
              size_t n,
              cairn_index index,
              struct cairn_error *err)
{
    rocksdb_writebatch_t *b;
    cairn_index cur_index;
    cairn_ts cur_ts, last_ts;
    size_t n_creates;
    struct rename_rec *renames = NULL;
    size_t n_renames = 0;
    uint64_t max_id;
    uint8_t wm[16], idbuf[8];
    char *msg = NULL;
    int rv;

    if (n > 0 && commits == NULL) {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: apply without commits");
    }
    rv = check_commits(commits, n, &n_creates, err);
    if (rv != 0) {
        return rv;
    }

    pthread_mutex_lock(&e->apply_mu);
    if (atomic_load(&e->installing)) {
        pthread_mutex_unlock(&e->apply_mu);
        return cairn_error_setf(err, CAIRN_ESTATE, "engine: a checkpoint install is in progress");
    }
    eng_applied(e, &cur_index, &cur_ts);
    if (index <= cur_index) {
        pthread_mutex_unlock(&e->apply_mu);
        return 0; /* already applied (replay after restart) */
    }
    last_ts = n > 0 ? commits[n - 1].ts : cur_ts;

    pthread_rwlock_rdlock(&e->cat.lock);
    max_id = e->cat.max_id;
    pthread_rwlock_unlock(&e->cat.lock);

    /* 1. Everything that can fail, before the write. */
    b = rocksdb_writebatch_create();
    rv = fill_batch(e, b, commits, n, &max_id);
    rv = rv ? rv : collect_renames(e, commits, n, &renames, &n_renames);
    rv = rv ? rv : batch_renames(e, b, renames, n_renames);
    if (rv != 0) {
        cairn_error_setf(err, rv, "engine: building the write batch");
        goto err_after_batch;
    }
    cairn_store_be64(wm, index);
    cairn_store_be64(wm + 8, last_ts);
    rocksdb_writebatch_put_cf(b, e->cf_default, KEY_APPLIED, strlen(KEY_APPLIED), (const char *)wm,
                              sizeof wm);
    cairn_store_be64(idbuf, max_id + 1);
    rocksdb_writebatch_put_cf(b, e->cf_default, KEY_NEXT_ID, strlen(KEY_NEXT_ID),
                              (const char *)idbuf, sizeof idbuf);
    if (n_creates > 0) {
        pthread_rwlock_wrlock(&e->cat.lock);
        rv = eng_cat_reserve(&e->cat, n_creates);
        pthread_rwlock_unlock(&e->cat.lock);
        if (rv != 0) {
            cairn_error_setf(err, rv, "engine: out of memory applying entry %llu",
                             (unsigned long long)index);
            goto err_after_batch;
        }
    }

    /* 2. The write: no lock a reader or the overlay's writer takes. */
    rocksdb_write(e->db, e->wo_nosync, b, &msg);
    if (msg != NULL) {
        rv = eng_rocks_error(err, msg, "apply");
        goto err_after_batch;
    }
    rocksdb_writebatch_destroy(b);
    eng_debug_point(e, ENG_DEBUG_APPLY_WRITTEN);

    /* 3. The catalog follows what RocksDB now holds. */
    pthread_rwlock_wrlock(&e->cat.lock);
    apply_catalog(e, commits, n);
    {
        cairn_ts floor = eng_gc_floor(e);
        for (size_t k = 0; k < n_renames; k++) {
            eng_cat_alias_add(&e->cat, renames[k].ts, renames[k].id, renames[k].from, renames[k].to,
                              floor);
        }
        e->cat.alias_seq = (e->cat.alias_seq + n_renames) % CAT_ALIASES;
    }
    eng_cat_note_id(&e->cat, max_id);
    eng_cat_pending_trim(&e->cat, last_ts);
    pthread_rwlock_unlock(&e->cat.lock);

    /* 4. Publish P (snap.c S1: only after the write). */
    pthread_mutex_lock(&e->wm_mu);
    e->applied_index = index;
    e->applied_ts = last_ts;
    eng_gc_note_applied(e, last_ts);
    pthread_mutex_unlock(&e->wm_mu);

    /* 5. Retire what RocksDB now holds (overlay.c O6). */
    eng_ovl_trim(&e->ovl, last_ts);
    pthread_mutex_unlock(&e->apply_mu);
    free(renames);
    return 0;

err_after_batch:
    rocksdb_writebatch_destroy(b);
    pthread_mutex_unlock(&e->apply_mu);
    free(renames);
    assert(rv != 0);
    return rv;
}

int eng_approx_size(struct eng *e, uint64_t coll_id, uint64_t *bytes, struct cairn_error *err)
{
    char start[8];
    char limit[8];
    const char *starts[1] = {start};
    const char *limits[1] = {limit};
    size_t start_len[1] = {sizeof start};
    size_t limit_len[1] = {sizeof limit};
    uint64_t sizes[1] = {0};
    char *msg = NULL;

    cairn_store_be64((uint8_t *)start, coll_id);
    cairn_store_be64((uint8_t *)limit, coll_id + 1);
    rocksdb_approximate_sizes_cf(e->db, e->cf_docs, 1, starts, start_len, limits, limit_len, sizes,
                                 &msg);
    if (msg != NULL) {
        return eng_rocks_error(err, msg, "approximate sizes");
    }
    *bytes = sizes[0];
    return 0;
}

int eng_flush(struct eng *e, struct cairn_error *err)
{
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    char *msg = NULL;

    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush_wal(e->db, 1, &msg);
    if (msg == NULL) {
        rocksdb_flush_cf(e->db, fo, e->cf_docs, &msg);
    }
    if (msg == NULL) {
        rocksdb_flush_cf(e->db, fo, e->cf_sessions, &msg);
    }
    if (msg == NULL) {
        rocksdb_flush_cf(e->db, fo, e->cf_default, &msg);
    }
    rocksdb_flushoptions_destroy(fo);
    return msg != NULL ? eng_rocks_error(err, msg, "flush") : 0;
}

int eng_sync(struct eng *e, struct cairn_error *err)
{
    char *msg = NULL;

    rocksdb_flush_wal(e->db, 1, &msg);
    return msg != NULL ? eng_rocks_error(err, msg, "sync wal") : 0;
}

/* Builds "meta/<name>" into `k`. */
static int meta_key(const char *name, struct cairn_buf *k, struct cairn_error *err)
{
    if (name == NULL || name[0] == '\0') {
        return cairn_error_setf(err, CAIRN_EINVAL, "engine: empty meta name");
    }
    if (cairn_buf_append(k, META_PREFIX, strlen(META_PREFIX)) != 0 ||
        cairn_buf_append(k, name, strlen(name)) != 0) {
        return cairn_error_setf(err, CAIRN_ENOMEM, "engine: out of memory");
    }
    return 0;
}

int eng_meta_get(struct eng *e, const char *name, struct cairn_buf *out, struct cairn_error *err)
{
    struct cairn_buf k = CAIRN_BUF_INIT;
    char *msg = NULL, *val;
    size_t vlen = 0;
    int rv = meta_key(name, &k, err);

    if (rv != 0) {
        cairn_buf_free(&k);
        return rv;
    }
    val =
        rocksdb_get_cf(e->db, e->ro_plain, e->cf_default, (const char *)k.data, k.len, &vlen, &msg);
    cairn_buf_free(&k);
    if (msg != NULL) {
        return eng_rocks_error(err, msg, "meta get");
    }
    if (val == NULL) {
        return cairn_error_setf(err, CAIRN_ENOTFOUND, "engine: meta '%s' not found", name);
    }
    rv = cairn_buf_append(out, val, vlen);
    rocksdb_free(val);
    return rv ? cairn_error_setf(err, rv, "engine: out of memory") : 0;
}

int eng_meta_put(struct eng *e,
                 const char *name,
                 const void *val,
                 size_t len,
                 struct cairn_error *err)
{
    struct cairn_buf k = CAIRN_BUF_INIT;
    char *msg = NULL;
    int rv = meta_key(name, &k, err);

    if (rv == 0) {
        rocksdb_put_cf(e->db, e->wo_sync, e->cf_default, (const char *)k.data, k.len,
                       len ? (const char *)val : "", len, &msg);
        if (msg != NULL) {
            rv = eng_rocks_error(err, msg, "meta put");
        }
    }
    cairn_buf_free(&k);
    return rv;
}
