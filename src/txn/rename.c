/*
 * rename.c: renameCollection as one statement commit, under the exclusive
 * namespace intents of the source and the target (which wait for their
 * writers and open transactions).
 *
 * Within one database it is a catalog rename (docs/decisions.md §38): the
 * names of the collection and of each of its indexes are unbound
 * (ENG_OP_DROP with ENG_UNBIND_ID: the catalog entry goes, the documents
 * stay) and their ids bound to the new names (ENG_OP_CREATE of the
 * existing id), so the commit holds 2 ops per name whatever the size of
 * the collection, and every member applies it at once. Keeping the ids is
 * safe for what is keyed by them: writers' cached index sets are
 * revalidated by the catalog generation (which the binds bump), a writer
 * that resolved the old name fails its commit's check_colls (the name no
 * longer maps to its id), a cursor's getMore checks its name in the
 * newest catalog (killed, as mongod), the TTL monitor lists the catalog
 * each pass, and reads below the rename's ts resolve the old name through
 * the engine's rename aliases.
 *
 * Across databases it is a copy: it creates the target with a fresh id,
 * copies every visible version key of the source's documents and of each
 * of its indexes (the spec, the multikey marker and the entries, which do
 * not depend on the collection's id or name) under the target's ids, and
 * drops the source; a collection too large for one commit fails whole
 * (nothing changes). With dropTarget an existing target is dropped first,
 * in the same commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "txn/txn_int.h"

int txn_copy_space(struct txn_write *w,
                   struct txn_read *rd,
                   uint64_t from_id,
                   uint64_t to_id,
                   bool skip_spec,
                   struct cairn_error *err)
{
    struct eng_iter *it = NULL;
    int rv = eng_iter_open(rd->snap, from_id, NULL, 0, &it, err);

    while (rv == 0) {
        const uint8_t *k, *v;
        size_t klen, vlen;
        int r = eng_iter_next(it, &k, &klen, &v, &vlen);
        if (r < 0) {
            *err = *eng_iter_error(it);
            rv = err->code != 0 ? err->code : CAIRN_EIO;
            break;
        }
        if (r == 0) {
            break;
        }
        if (skip_spec && klen == TXN_IX_META_LEN && memcmp(k, txn_ix_spec_key, klen) == 0) {
            continue;
        }
        rv = txn_write_stage_raw(w, to_id, k, klen, v, vlen, err);
    }
    eng_iter_close(it);
    return rv;
}

static bool is_system(const char *ns)
{
    const char *dot = strchr(ns, '.');
    return dot != NULL && strncmp(dot + 1, "system.", 7) == 0;
}

static bool same_db(const char *a, const char *b)
{
    const char *da = strchr(a, '.'), *db = strchr(b, '.');
    return da != NULL && db != NULL && da - a == db - b && strncmp(a, b, (size_t)(da - a)) == 0;
}

/* Whether `ns` is an index namespace "<coll>.$<name>" of collection `coll`. */
static const char *index_name(const char *ns, const char *coll, size_t coll_len)
{
    if (strncmp(ns, coll, coll_len) != 0 || ns[coll_len] != '.' || ns[coll_len + 1] != '$') {
        return NULL;
    }
    return ns + coll_len + 2;
}

/* The catalog rename of `from` (id `src_id`) to `to`, within one database:
 * unbinds every name first, then binds the ids to the new names (the
 * order the engine's apply and the pending catalog replay). */
static int rename_in_db(struct txn_write *w,
                        const char *from,
                        const char *to,
                        uint64_t src_id,
                        struct cairn_error *err)
{
    char db[ENG_NS_MAX + 1];
    size_t from_len = strlen(from);
    struct eng_coll_info *infos = NULL;
    size_t n = 0;
    int rv;

    snprintf(db, sizeof db, "%.*s", (int)(strchr(from, '.') - from), from);
    rv = eng_catalog_list(w->m->eng, db, true, &infos, &n);
    if (rv != 0) {
        return cairn_error_setf(err, rv, "txn: listing indexes");
    }
    /* The new index names must fit before anything is staged. */
    for (size_t i = 0; i < n && rv == 0; i++) {
        const char *name = index_name(infos[i].ns, from, from_len);
        if (name != NULL && strlen(to) + 2 + strlen(name) > ENG_NS_MAX) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                   "renameCollection: index %s would make namespace %s.$%s "
                                   "too long",
                                   name, to, name);
        }
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        if (index_name(infos[i].ns, from, from_len) != NULL) {
            rv = txn_write_stage_drop(w, infos[i].ns, ENG_UNBIND_ID, err);
        }
    }
    rv = rv ? rv : txn_write_stage_drop(w, from, ENG_UNBIND_ID, err);
    rv = rv ? rv : txn_write_stage_bind(w, to, true, src_id, err);
    for (size_t i = 0; i < n && rv == 0; i++) {
        const char *name = index_name(infos[i].ns, from, from_len);
        char ns[ENG_NS_MAX + 2];
        if (name != NULL) {
            snprintf(ns, sizeof ns, "%s.$%s", to, name);
            rv = txn_write_stage_bind(w, ns, false, infos[i].id, err);
        }
    }
    free(infos);
    return rv;
}

int txn_rename_collection(struct txn_write *w,
                          const char *from,
                          const char *to,
                          bool drop_target,
                          struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    struct txn_read *rd = NULL;
    uint64_t src_id, dst_id, ix_id;
    bool created;
    int rv;

    if (is_system(from) || is_system(to)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_IllegalOperation,
                                 "error with %s namespace: cannot rename system collection %s",
                                 is_system(from) ? "source" : "target",
                                 is_system(from) ? from : to);
    }
    if (strcmp(from, to) == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_IllegalOperation,
                                 "Can't rename a collection to itself");
    }
    /* Both intents, in name order so two renames cannot wait on each
     * other; then a view that sees every writer that went before. */
    const char *first = strcmp(from, to) < 0 ? from : to;
    const char *second = first == from ? to : from;
    rv = txn_write_lock_key(w, 0, (const uint8_t *)first, strlen(first), false, err);
    if (rv == 0) {
        rv = txn_write_lock_key(w, 0, (const uint8_t *)second, strlen(second), false, err);
    }
    if (rv == 0) {
        rv = txn_write_refresh_view(w, err);
    }
    if (rv != 0) {
        return rv;
    }
    if (txn_write_coll(w, from, false, &src_id, &created, err) != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound,
                                 "Source collection %s does not exist", from);
    }
    if (txn_write_coll(w, to, false, &dst_id, &created, err) == 0) {
        if (!drop_target) {
            return cairn_error_mongo(err, CAIRN_EEXISTS, MONGO_NamespaceExists,
                                     "target namespace exists");
        }
        rv = txn_write_drop(w, to, err);
    } else {
        cairn_error_clear(err);
    }
    if (rv == 0 && same_db(from, to)) {
        return rename_in_db(w, from, to, src_id, err);
    }
    rv = rv ? rv : txn_write_create(w, to, err);
    rv = rv ? rv : txn_write_coll(w, to, false, &dst_id, &created, err);
    rv = rv ? rv : txn_write_reader(w, &rd, err);
    rv = rv ? rv : txn_copy_space(w, rd, src_id, dst_id, false, err);
    rv = rv ? rv : txn_ixset_load(w->m->eng, rd->snap, rd->local, src_id, from, &s, err);
    for (size_t i = 0; rv == 0 && i < s->n; i++) {
        char ns[ENG_NS_MAX + 2];
        const char *name = qry_index_name(s->v[i].ix);
        if ((size_t)snprintf(ns, sizeof ns, "%s.$%s", to, name) > ENG_NS_MAX) {
            rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidNamespace,
                                   "renameCollection: index %s would make namespace %s.$%s "
                                   "too long",
                                   name, to, name);
            break;
        }
        rv = txn_write_stage_create(w, ns, &ix_id, err);
        rv = rv ? rv : txn_copy_space(w, rd, s->v[i].id, ix_id, false, err);
    }
    txn_ixset_unref(s);
    return rv ? rv : txn_write_drop(w, from, err);
}
