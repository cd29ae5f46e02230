/*
 * ixmod.c: collMod's index changes (hidden, expireAfterSeconds). The spec
 * is rewritten in place (a new MVCC version of the index's spec key, same
 * id, entries untouched: O(1) whatever the index's size), in one statement
 * commit under the collection's exclusive intent. Writers and the planner
 * cache a collection's index set until the catalog generation changes
 * (index.c), which a spec write alone would not change; so the same commit
 * rebinds the index's name to its own id (an unbind and a bind, as a
 * rename's: ENG_UNBIND_ID), which bumps the generation on the primary's
 * pending catalog and on every member's apply. Neither option changes the
 * entries writers maintain, so a reader that reloads the set between that
 * bump and the spec's visibility only plans with the previous options
 * until the apply bumps the generation again. Reads below the commit see
 * the old spec (it is versioned like any key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query/query.h"
#include "txn/txn_int.h"

static bool pattern_equal(const struct qry_index *ix, const bson_t *key)
{
    return qry_cmp_docs(qry_index_key_pattern(ix), key) == 0 &&
           bson_count_keys(qry_index_key_pattern(ix)) == bson_count_keys(key);
}

/* The ready index `target` names (a name or a key pattern) in `s`. */
static int find_index(const struct txn_ixset *s,
                      const char *ns,
                      const bson_value_t *target,
                      const struct txn_ixdesc **out,
                      struct cairn_error *err)
{
    bson_t key;
    const char *name = target->value_type == BSON_TYPE_UTF8 ? target->value.v_utf8.str : NULL;

    if (name == NULL &&
        !bson_init_static(&key, target->value.v_doc.data, target->value.v_doc.data_len)) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_BadValue, "bad index key pattern");
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].ready && (name != NULL ? strcmp(qry_index_name(s->v[i].ix), name) == 0
                                           : pattern_equal(s->v[i].ix, &key))) {
            *out = &s->v[i];
            return 0;
        }
    }
    if (name != NULL && strcmp(name, "_id_") == 0) {
        return cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                                 "cannot modify the _id index");
    }
    if (name != NULL) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_IndexNotFound,
                                 "cannot find index %s for ns %s", name, ns);
    }
    char *json = bson_as_relaxed_extended_json(&key, NULL);
    cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_IndexNotFound, "cannot find index %s for ns %s",
                      json ? json : "{}", ns);
    bson_free(json);
    return CAIRN_ENOTFOUND;
}

/* Compiles `old`'s spec with the changes of `mod` into *out. */
static int new_spec(const struct qry_index *old,
                    const struct txn_index_mod *mod,
                    struct qry_index **out,
                    struct cairn_error *err)
{
    bson_t spec = BSON_INITIALIZER;
    bson_iter_t it;
    int32_t secs = 0;
    bool ttl = qry_index_ttl(old, &secs);
    bool hidden = mod->has_hidden ? mod->hidden : qry_index_hidden(old);
    int rv;

    bson_iter_init(&it, qry_index_spec(old));
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "hidden") != 0 && strcmp(k, "expireAfterSeconds") != 0) {
            bson_append_iter(&spec, k, -1, &it);
        }
    }
    if (mod->has_ttl) {
        BSON_APPEND_INT64(&spec, "expireAfterSeconds", mod->ttl);
    } else if (ttl) {
        BSON_APPEND_INT32(&spec, "expireAfterSeconds", secs);
    }
    if (hidden) {
        BSON_APPEND_BOOL(&spec, "hidden", true);
    }
    rv = qry_index_compile(&spec, out, err);
    bson_destroy(&spec);
    if (rv != 0 && err->mongo_code == MONGO_CannotCreateIndex) {
        err->mongo_code = MONGO_InvalidOptions; /* collMod's code for a bad option */
    }
    return rv;
}

int txn_index_modify(struct txn_write *w,
                     const char *ns,
                     const bson_value_t *target,
                     const struct txn_index_mod *mod,
                     struct txn_index_mod_result *res,
                     struct cairn_error *err)
{
    struct txn_ixset *s = NULL;
    struct qry_index *nix = NULL;
    const struct txn_ixdesc *d = NULL;
    uint64_t coll_id;
    bool created;
    int32_t old_secs = 0, new_secs = 0;
    int rv;

    memset(res, 0, sizeof *res);
    /* Invariant 1 of index.c: the index set changes only under the
     * collection's exclusive intent. */
    rv = txn_write_lock_key(w, 0, (const uint8_t *)ns, strlen(ns), false, err);
    rv = rv ? rv : txn_write_refresh_view(w, err);
    if (rv != 0) {
        return rv;
    }
    if (txn_write_coll(w, ns, false, &coll_id, &created, err) != 0) {
        return cairn_error_mongo(err, CAIRN_ENOTFOUND, MONGO_NamespaceNotFound,
                                 "ns does not exist: %s", ns);
    }
    rv = txn_ixset_load(w->m->eng, NULL, true, coll_id, ns, &s, err);
    rv = rv ? rv : find_index(s, ns, target, &d, err);
    if (rv != 0) {
        goto out;
    }
    bool old_ttl = qry_index_ttl(d->ix, &old_secs);
    if (mod->has_ttl && !old_ttl) {
        rv = cairn_error_mongo(err, CAIRN_EINVAL, MONGO_InvalidOptions,
                               "no expireAfterSeconds field to update");
        goto out;
    }
    rv = new_spec(d->ix, mod, &nix, err);
    if (rv != 0) {
        goto out;
    }
    qry_index_ttl(nix, &new_secs);
    res->hidden_old = qry_index_hidden(d->ix);
    res->hidden_new = qry_index_hidden(nix);
    res->hidden_changed = mod->has_hidden && res->hidden_old != res->hidden_new;
    res->ttl_old = old_secs;
    res->ttl_new = new_secs;
    res->ttl_changed = mod->has_ttl && old_secs != new_secs;
    if (!res->hidden_changed && !res->ttl_changed) {
        goto out; /* nothing to commit */
    }
    bson_t wrap = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&wrap, "spec", qry_index_spec(nix));
    BSON_APPEND_BOOL(&wrap, "ready", true);
    rv = txn_write_stage_drop(w, d->ns, ENG_UNBIND_ID, err);
    rv = rv ? rv : txn_write_stage_bind(w, d->ns, false, d->id, err);
    rv = rv ? rv
            : txn_write_stage_raw(w, d->id, txn_ix_spec_key, TXN_IX_META_LEN, bson_get_data(&wrap),
                                  wrap.len, err);
    bson_destroy(&wrap);
out:
    qry_index_free(nix);
    txn_ixset_unref(s);
    return rv;
}
