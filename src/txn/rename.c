/*
 * rename.c: renameCollection as one statement commit. Under the exclusive
 * namespace intents of the source and the target (which wait for their
 * writers), it creates the target with a fresh id, copies every visible
 * version key of the source's documents and of each of its indexes (the
 * spec, the multikey marker and the entries, which do not depend on the
 * collection's id or name) under the target's ids, and drops the source
 * (and, with dropTarget, an existing target first). The copy rides the
 * ordinary create/put/drop ops, so it replicates as any commit and every
 * member sees the rename at once; a collection too large for one commit
 * fails whole (nothing changes). Same and cross database alike.
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
